//! How the clients reach the server: a direct call stands in for the
//! protected call, each client's command page is a static as the page the
//! Microkit tool maps is, and draining the SMMU's event queue stands in
//! for its interrupt.

use core::cell::RefCell;

use hw::domains::SmmuDomains;
use iommu_client::{DmaBuffer, Iommu, Transport};
use iommu_server::{Collected, Drained, LogRuns, Server, COMMAND_PAGE};
use iommu_system::{ClientId, CLIENTS};
use mmio::{ConstStaticCell, DmaRegion, Memory, Mmio};

/// DMA regions per client the demo places.
pub const MAX_REGIONS: usize = 4;

pub type Hw = SmmuDomains<'static, Mmio>;
pub type Shared<'a> = &'a RefCell<Server<'static, Hw>>;

/// A client's calls, arriving as from its channel.
pub struct Direct<'a> {
    server: Shared<'a>,
    client: ClientId,
    page: &'a RefCell<[u8; COMMAND_PAGE]>,
}

/// Each client's command page, shared with the server: a static, as the
/// page the Microkit tool maps is, so that a restarted client finds the
/// same page and no page sits in the frame of the story that nests the
/// server's calls.
static COMMAND_PAGES: ConstStaticCell<[RefCell<[u8; COMMAND_PAGE]>; CLIENTS.len()]> =
    ConstStaticCell::new([const { RefCell::new([0; COMMAND_PAGE]) }; CLIENTS.len()]);

impl Transport for Direct<'_> {
    fn write_page(&mut self, bytes: &[u8]) {
        self.page.borrow_mut()[..bytes.len()].copy_from_slice(bytes);
    }

    fn read_page(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&self.page.borrow()[..out.len()]);
    }

    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64) {
        let reply = self
            .server
            .borrow_mut()
            .serve(self.client, label, mrs, self.page);
        (reply.label, reply.mr0)
    }
}

/// Every client's connection to the server.
pub struct Clients<'a> {
    pub server: Shared<'a>,
    pages: &'a [RefCell<[u8; COMMAND_PAGE]>; CLIENTS.len()],
    pub iommus: [Iommu<Direct<'a>>; CLIENTS.len()],
    /// The client that supervises the others.
    pub manager: usize,
}

impl<'a> Clients<'a> {
    /// Each client connected through its command page, the first time.
    pub fn connect(server: Shared<'a>) -> Result<Clients<'a>, &'static str> {
        let manager = CLIENTS
            .iter()
            .position(|c| c.manager)
            .ok_or("the story needs a manager")?;
        let pages = COMMAND_PAGES.take().ok_or("command pages taken twice")?;
        let iommus = core::array::from_fn(|i| connection(server, pages, i));
        Ok(Clients {
            server,
            pages,
            iommus,
            manager,
        })
    }

    /// Client `i`'s connection anew, as a restarted life of it opens it.
    pub fn reconnect(&self, i: usize) -> Iommu<Direct<'a>> {
        connection(self.server, self.pages, i)
    }

    /// Client `i`'s command page.
    pub fn page(&self, i: usize) -> &'a RefCell<[u8; COMMAND_PAGE]> {
        &self.pages[i]
    }
}

fn connection<'a>(
    server: Shared<'a>,
    pages: &'a [RefCell<[u8; COMMAND_PAGE]>; CLIENTS.len()],
    client: usize,
) -> Iommu<Direct<'a>> {
    Iommu::new(Direct {
        server,
        client: ClientId::from_index(client).expect("a client index"),
        page: &pages[client],
    })
}

/// A connection for client `client` through `page` (a driver's life that
/// owns its connection).
pub fn direct<'a>(
    server: Shared<'a>,
    client: ClientId,
    page: &'a RefCell<[u8; COMMAND_PAGE]>,
) -> Iommu<Direct<'a>> {
    Iommu::new(Direct {
        server,
        client,
        page,
    })
}

/// A client's DMA region in the shared physical memory.
pub struct RegionMemory(pub DmaRegion);

impl Memory for RegionMemory {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        if offset
            .checked_add(out.len())
            .is_none_or(|end| end > self.0.len())
        {
            return false;
        }
        for (i, b) in out.iter_mut().enumerate() {
            let at = offset + i;
            *b = (self.0.read(at / 8) >> (8 * (at % 8))) as u8;
        }
        true
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset
            .checked_add(bytes.len())
            .is_none_or(|end| end > self.0.len())
        {
            return false;
        }
        for (i, b) in bytes.iter().enumerate() {
            let at = offset + i;
            let shift = 8 * (at % 8);
            let word = self.0.read(at / 8) & !(0xff << shift);
            self.0.write(at / 8, word | (u64::from(*b) << shift));
        }
        true
    }
}

/// Every client's DMA regions as the client sees them.
pub type Buffers = [[Option<DmaBuffer<RegionMemory>>; MAX_REGIONS]; CLIENTS.len()];

/// The placed regions as their clients see them.
pub fn buffers(regions: &mut [[Option<DmaRegion>; MAX_REGIONS]; CLIENTS.len()]) -> Buffers {
    core::array::from_fn(|i| {
        core::array::from_fn(|k| {
            let r = CLIENTS[i].regions.get(k)?;
            Some(DmaBuffer::new(
                r.vaddr,
                r.size,
                RegionMemory(regions[i][k].take()?),
            ))
        })
    })
}

/// One SMMU interrupt: at most EVENTS_PER_INTERRUPT records queued with
/// their clients (the interrupt handler's work in the PD); a burst of one
/// device's records said as one line.
pub fn interrupt(server: Shared<'_>) -> Collected {
    let mut runs = LogRuns::new();
    let say = &mut |line| say!("server: {line}\n");
    let collected = server.borrow_mut().collect_faults(
        |hw, max, report| {
            let status = hw.drain_faults(max, report);
            Drained {
                lost: status.overflowed,
                global_errors: hw.smmu().take_global_errors(),
                pending: status.pending,
            }
        },
        &mut |event| runs.push(event, say),
    );
    runs.flush(say);
    collected
}

/// The SMMU's pending events, an interrupt's batch at a time until none
/// is left (as the PD's interrupts and calls take them); returns the
/// clients notified.
pub fn take_faults(server: Shared<'_>) -> u64 {
    let mut notify = 0;
    loop {
        let collected = interrupt(server);
        notify |= collected.notify;
        if !collected.pending {
            return notify;
        }
    }
}

/// A driver's fault once the server has notified it, whoever else it
/// notified (a flood overflowing the SMMU's queue tells every owner).
pub fn notified_fault<'a>(
    server: Shared<'a>,
    client: usize,
) -> impl FnMut(&mut Iommu<Direct<'a>>) -> Option<iommu_client::Fault> + 'a {
    move |iommu| {
        if take_faults(server) & (1 << client) == 0 {
            return None;
        }
        iommu.read_fault().ok().and_then(|r| r.fault)
    }
}

/// Whether a reset client holds nothing: no object, no page charged.
pub fn returned(server: Shared<'_>, client: usize) -> Result<(), &'static str> {
    let s = server.borrow();
    let id = ClientId(client as u16);
    if s.object_count(id) == 0 && s.store().account(id).is_some_and(|acc| acc.used == 0) {
        Ok(())
    } else {
        Err("objects or pages left after the reset")
    }
}
