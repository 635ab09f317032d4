//! `static_io_count N`: N DMA round trips (1 KiB from memory into the
//! device, 1 KiB back) of the edu driver written sDDF's way, under a
//! static IO address space the server established: the driver has no
//! IOMMU client, and the simulated device's every DMA walks the server's
//! real page tables. For counting instructions per I/O with callgrind,
//! beside the block driver's static and strict modes (docs/benchmarks.md gives
//! the commands and the figures): run it with two N and divide the
//! difference. It checks that the server was never asked anything.

use std::cell::{Cell, RefCell};

use edu_device::Edu;
use iommu_testkit::rig::{client, DEFAULT_QUOTA};
use iommu_testkit::{PtHw, Rig};
use iommu_types::config::{IoMap, Perms, Quota, StaticSpace};
use iommu_types::StreamId;
use mmio::RegisterBlock;
use scenarios::edu_static::{self, Buffer};

/// Where the region is, and where the device sees it (sDDF's identity).
const REGION: u64 = 0x5f00_0000;
const REGION_BYTES: usize = 0x1_0000;
const STREAM: StreamId = StreamId(0x20);

static IOMAPS: [IoMap; 1] = [IoMap {
    iova: REGION,
    paddr: REGION,
    size: REGION_BYTES as u64,
    perms: Perms::RW,
}];
static SPACES: [StaticSpace; 1] = [StaticSpace {
    name: "edu_space",
    stream_id: STREAM,
    domain_id: 1,
    iomaps: &IOMAPS,
    table_pages: 4,
}];

/// The driver's region: physical memory at `REGION`.
struct Ram(RefCell<Vec<u8>>);

impl Buffer for &Ram {
    fn len(&self) -> usize {
        REGION_BYTES
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        let ram = self.0.borrow();
        match ram.get(offset..offset.saturating_add(out.len())) {
            Some(bytes) => {
                out.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        let mut ram = self.0.borrow_mut();
        match ram.get_mut(offset..offset.saturating_add(bytes.len())) {
            Some(at) => {
                at.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// QEMU's edu device: its DMA engine translated through the stream's
/// page tables, a page at a time; a DMA reaching an unmapped IOVA stops.
struct SimEdu<'a> {
    hw: &'a PtHw,
    ram: &'a Ram,
    buffer: RefCell<[u8; 4096]>,
    src: Cell<u64>,
    dst: Cell<u64>,
    count: Cell<u64>,
    stopped: Cell<u64>,
}

impl SimEdu<'_> {
    /// The offset in `ram` the device's `iova` reaches, or `None`.
    fn bus(&self, iova: u64) -> Option<usize> {
        let pa = self.hw.dma(STREAM, iova)?;
        pa.checked_sub(REGION)
            .map(|o| o as usize)
            .filter(|&o| o < REGION_BYTES)
    }

    fn run(&self, to_ram: bool) {
        let (src, dst, len) = (self.src.get(), self.dst.get(), self.count.get());
        let mut done = 0;
        while done < len {
            let (bus, local) = if to_ram {
                (dst + done, src - edu_device::BUFFER + done)
            } else {
                (src + done, dst - edu_device::BUFFER + done)
            };
            let chunk = (0x1000 - (bus & 0xfff)).min(len - done);
            let Some(at) = self.bus(bus) else {
                self.stopped.set(self.stopped.get() + 1);
                return;
            };
            let (local, chunk) = (local as usize, chunk as usize);
            let mut ram = self.ram.0.borrow_mut();
            let mut buffer = self.buffer.borrow_mut();
            if to_ram {
                ram[at..at + chunk].copy_from_slice(&buffer[local..local + chunk]);
            } else {
                buffer[local..local + chunk].copy_from_slice(&ram[at..at + chunk]);
            }
            done += chunk as u64;
        }
    }
}

impl RegisterBlock for SimEdu<'_> {
    fn read32(&self, offset: usize) -> u32 {
        if offset == 0 {
            edu_device::ID
        } else {
            0
        }
    }

    fn write32(&self, _: usize, _: u32) {}

    fn read64(&self, _: usize) -> u64 {
        // The transfer ran when it was started: never busy.
        0
    }

    fn write64(&self, offset: usize, value: u64) {
        match offset {
            0x80 => self.src.set(value),
            0x88 => self.dst.set(value),
            0x90 => self.count.set(value),
            0x98 if value & 1 != 0 => self.run(value & 2 != 0),
            _ => {}
        }
    }
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    // The manager's quota holds no tables: the pool is the space's.
    let manager = client("manager")
        .manager(true)
        .quota(Quota {
            table_pages: 0,
            hwpts: 0,
            ..DEFAULT_QUOTA
        })
        .build();
    let mut rig = Rig::new(PtHw::new(16), &[manager]);
    rig.server
        .establish(&SPACES)
        .expect("the static space is established");
    let ram = Ram(RefCell::new(vec![0; REGION_BYTES]));
    let edu = Edu(SimEdu {
        hw: rig.server.hardware(),
        ram: &ram,
        buffer: RefCell::new([0; 4096]),
        src: Cell::new(0),
        dst: Cell::new(0),
        count: Cell::new(0),
        stopped: Cell::new(0),
    });
    let mut out = String::new();
    for i in 0..n {
        out.clear();
        edu_static::round_trip(&edu, &&ram, REGION, i as u8, &mut out).expect("a round trip");
    }
    assert_eq!(edu.0.stopped.get(), 0);
    // The device held the server by a shared reference throughout, so
    // nothing could have called it (serve and handle take it mutably):
    // the borrow ends at its last use above.
    rig.check().expect("the server's state is consistent");
    println!("{n} round trips, 0 server requests");
}
