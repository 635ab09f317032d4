//! A client in the same program as a [`Rig`]'s server: its transport
//! ([`RigTransport`]) and its memory ([`HeapMemory`]), for every host test
//! of the client library and the drivers built on it.
//!
//! The bare-metal demo has a transport of its own (`Direct` in
//! demo/src/main.rs) for the same job: it is `no_std` with no allocator,
//! and its server runs on QEMU's SMMUv3 rather than in a [`Rig`], so it
//! cannot use this one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use iommu_proto::Transport;
use iommu_server::COMMAND_PAGE;
use iommu_types::ClientId;
use iopt::Hardware;
use mmio::Memory;

use crate::rig::id;
use crate::{MockHw, Rig};

/// One client's calls into a rig's server, along the PDs' path: the
/// request in a command page of the client's own, which
/// [`Server::serve`](iommu_server::Server::serve) copies in and out range
/// by range, as the server PD does over a shared page. Counts its calls,
/// so a test can say what an operation costs in server requests.
pub struct RigTransport<H: Hardware + 'static = MockHw> {
    rig: Rc<RefCell<Rig<H>>>,
    client: ClientId,
    page: RefCell<[u8; COMMAND_PAGE]>,
    calls: Rc<Cell<u64>>,
}

impl<H: Hardware + 'static> RigTransport<H> {
    /// Client `client` of `rig` (its index in the rig's configurations),
    /// counting its calls afresh.
    pub fn new(rig: &Rc<RefCell<Rig<H>>>, client: usize) -> Self {
        Self::counted(rig, client, &Rc::new(Cell::new(0)))
    }

    /// Client `client` of `rig`, adding its calls to `calls`: one count
    /// across the transports a test makes for one client in turn (a
    /// driver restarted after a reset).
    pub fn counted(rig: &Rc<RefCell<Rig<H>>>, client: usize, calls: &Rc<Cell<u64>>) -> Self {
        RigTransport {
            rig: rig.clone(),
            client: id(client),
            page: RefCell::new([0; COMMAND_PAGE]),
            calls: calls.clone(),
        }
    }

    /// Calls made through this transport's count so far.
    pub fn calls(&self) -> u64 {
        self.calls.get()
    }
}

impl<H: Hardware + 'static> std::fmt::Debug for RigTransport<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RigTransport")
            .field("client", &self.client)
            .field("calls", &self.calls.get())
            .finish()
    }
}

impl<H: Hardware + 'static> Transport for RigTransport<H> {
    fn write_page(&mut self, bytes: &[u8]) {
        self.page.borrow_mut()[..bytes.len()].copy_from_slice(bytes);
    }

    fn read_page(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&self.page.borrow()[..out.len()]);
    }

    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64) {
        self.calls.set(self.calls.get() + 1);
        let reply = self
            .rig
            .borrow_mut()
            .server
            .serve(self.client, label, mrs, &self.page);
        (reply.label, reply.mr0)
    }
}

/// A client's memory on the heap (a DMA buffer's CPU side in a test).
#[derive(Debug)]
pub struct HeapMemory(RefCell<Vec<u8>>);

impl HeapMemory {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> HeapMemory {
        HeapMemory(RefCell::new(vec![0; len]))
    }
}

impl Memory for HeapMemory {
    fn len(&self) -> usize {
        self.0.borrow().len()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        mmio::cells(&mut self.0.borrow_mut()).read(offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        mmio::cells(&mut self.0.borrow_mut()).write(offset, bytes)
    }
}
