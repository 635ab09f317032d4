//! The block driver on the server core and the simulated controller, for
//! tests/modes.rs and benches/io.rs: one driver client with its queues
//! and one block client's data region, its calls counted.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};

use blk_driver::{BlockDriver, Mode, DATA_IOVA, QUEUE_IOVA};
use iommu_client::{DmaBuffer, Iommu, Memory, Transport};
use iommu_testkit::rig::{client, device, id, region};
use iommu_testkit::{MockHw, Rig};
use iommu_types::config::{DeviceConfig, Region};
use nvme_driver::sim::{Config, SimMemory, SimNvme};

pub const QUEUE_VA: u64 = 0x3000_0000;
pub const DATA_VA: u64 = 0x3100_0000;
pub const QUEUE_BYTES: u64 = 0x10000;
pub const DATA_BYTES: u64 = 0x20000;
/// The block client's share of the simulated disk (4096 blocks).
pub const SHARE: core::ops::Range<u64> = 0..1024;

pub static REGIONS: [Region; 2] = [
    region(QUEUE_VA, QUEUE_BYTES, 0x8000_0000),
    region(DATA_VA, DATA_BYTES, 0x8100_0000),
];
pub static DEVICES: [DeviceConfig; 1] = [device("nvme", 0x18)];

/// The driver's calls, into the rig's server; counted.
pub struct RigTransport<'r> {
    pub rig: &'r RefCell<Rig>,
    pub page: Vec<u8>,
    pub calls: &'r Cell<u64>,
}

impl Transport for RigTransport<'_> {
    fn write_page(&mut self, bytes: &[u8]) {
        self.page[..bytes.len()].copy_from_slice(bytes);
    }

    fn read_page(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&self.page[..out.len()]);
    }

    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64) {
        self.calls.set(self.calls.get() + 1);
        let reply = self
            .rig
            .borrow_mut()
            .server
            .handle(id(0), label, mrs, &mut self.page);
        (reply.label, reply.mr0)
    }
}

/// A simulated memory seen through a shared reference.
pub struct View<'a>(pub &'a SimMemory);

impl Memory for View<'_> {
    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        self.0.read(offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        self.0.write(offset, bytes)
    }
}

/// What a test or benchmark gets: the driver serving one block client in
/// `mode`, that client's ring and data memory, the rig and the call count.
pub fn with_driver<T>(
    mode: Mode,
    body: impl FnOnce(
        &mut BlockDriver<'_, RigTransport<'_>, &SimNvme<'_>, View<'_>, View<'_>, SimMemory>,
        usize,
        &SimMemory,
        &SimMemory,
        &RefCell<Rig>,
        &Cell<u64>,
    ) -> T,
) -> T {
    let rig = RefCell::new(Rig::new(
        MockHw::new(),
        &[client("nvme_driver")
            .regions(&REGIONS)
            .devices(&DEVICES)
            .build()],
    ));
    let queues = SimMemory::new(QUEUE_IOVA, QUEUE_BYTES as usize);
    let data = SimMemory::new(DATA_IOVA, DATA_BYTES as usize);
    let nvme = SimNvme::new(&[&queues, &data], Config::default());
    let calls = Cell::new(0);
    let iommu = Iommu::new(RigTransport {
        rig: &rig,
        page: vec![0; 4096],
        calls: &calls,
    });
    let queue_buf = DmaBuffer::new(QUEUE_VA, QUEUE_BYTES, View(&queues));
    let data_buf = DmaBuffer::new(DATA_VA, DATA_BYTES, View(&data));
    let ring = SimMemory::new(0, blk_queue::region_bytes(16));
    blk_queue::format(&ring, 16).unwrap();
    let mut driver = BlockDriver::start(iommu, &nvme, &queue_buf).expect("bring-up");
    let k = driver.add_client(&ring, &data_buf, mode, SHARE).unwrap();
    body(&mut driver, k, &ring, &data, &rig, &calls)
}

/// One 4 KiB write (eight 512-byte blocks from the start of the data
/// region) with id `id` through the ring, served and answered.
pub fn one_io<Q: Memory>(
    client: &mut blk_queue::Client<'_, Q>,
    serve: &mut impl FnMut() -> u32,
    id: u32,
) {
    client
        .enqueue(blk_queue::Request {
            code: blk_queue::RequestCode::Write,
            offset: 0,
            block: 0,
            count: 8,
            id,
        })
        .unwrap();
    assert_eq!(serve(), 1);
    assert!(client.dequeue_response().unwrap().is_some());
}
