//! The block driver on the server core and the simulated controller, for
//! tests/modes.rs and benches/io.rs: one driver client with its queues
//! and one block client's data region, its calls counted.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use blk_driver::{BlockDriver, Mode, DATA_IOVA, QUEUE_IOVA};
use iommu_client::{DmaBuffer, Iommu};
use iommu_testkit::rig::{client, device, region};
use iommu_testkit::{MockHw, Rig, RigTransport};
use iommu_types::config::{DeviceConfig, Region};
use mmio::Memory;
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

/// What a test or benchmark gets: the driver serving one block client in
/// `mode`, that client's ring and data memory, the rig and the call count.
pub fn with_driver<T>(
    mode: Mode,
    body: impl FnOnce(
        &mut BlockDriver<'_, RigTransport, &SimNvme<'_>, &SimMemory, &SimMemory, SimMemory>,
        usize,
        &SimMemory,
        &SimMemory,
        &RefCell<Rig>,
        &Cell<u64>,
    ) -> T,
) -> T {
    let rig = Rc::new(RefCell::new(Rig::new(
        MockHw::new(),
        &[client("nvme_driver")
            .regions(&REGIONS)
            .devices(&DEVICES)
            .build()],
    )));
    let queues = SimMemory::new(QUEUE_IOVA, QUEUE_BYTES as usize);
    let data = SimMemory::new(DATA_IOVA, DATA_BYTES as usize);
    let nvme = SimNvme::new(&[&queues, &data], Config::default());
    let calls = Rc::new(Cell::new(0));
    let iommu = Iommu::new(RigTransport::counted(&rig, 0, &calls));
    let queue_buf = DmaBuffer::new(QUEUE_VA, QUEUE_BYTES, &queues);
    let data_buf = DmaBuffer::new(DATA_VA, DATA_BYTES, &data);
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
