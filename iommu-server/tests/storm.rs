//! Fault storms are contained: a device faulting 10^5 times costs the
//! server at most EVENTS_PER_INTERRUPT records per interrupt, its records
//! stop reaching the IOMMU's event queue once it is over its budget, the
//! queue never overflows, and another client's single stray DMA in the
//! middle of it is reported to that client exactly, with no LOST flag.
//!
//! The IOMMU's event queue is modelled as the SMMUv3's: a ring of
//! `QUEUE` records every stream shares, written only for streams the
//! hardware records (`Hardware::recording`, which MockHw answers as an
//! SMMUv3 does: an attached stream records what its domain records), and
//! losing records without saying whose when full.

mod common;

use std::collections::VecDeque;

use common::{client, device, MockHw, Rig};
use iommu_proto::fault::*;
use iommu_proto::{Errno, Op};
use iommu_server::{Drained, Fault, EVENTS_PER_INTERRUPT, STORM_BUDGET};
use iommu_types::config::{DeviceConfig, Perms, Region};
use iommu_types::StreamId;

static REGIONS: [Region; 1] = [Region {
    vaddr: 0x10_0000,
    size: 0x4000,
    paddr: 0x8000_0000,
    perms: Perms::RW,
}];
static STORMER: [DeviceConfig; 2] = [device("storm", 0x8), device("quiet", 0x9)];
static BYSTANDER: [DeviceConfig; 1] = [device("stray", 0x10)];

/// Records the hardware queue holds: the driver's default (4096 records
/// within 128 KiB).
const QUEUE: usize = 4096;
/// Faulting transactions the storming device attempts.
const STORM: usize = 100_000;
/// Of them, per interrupt window.
const PER_TICK: usize = 100;

/// The SMMU's event queue.
#[derive(Default)]
struct EventQueue {
    records: VecDeque<Fault>,
    /// Set when a record found the queue full; cleared by a drain.
    overflowed: bool,
    /// Records that reached the queue, per stream.
    written: std::collections::BTreeMap<u32, usize>,
    /// Faults the hardware did not record (their stream's records stopped).
    unrecorded: usize,
}

impl EventQueue {
    /// A faulting transaction on `fault.stream`.
    fn fault(&mut self, hw: &MockHw, fault: Fault) {
        use iopt::Hardware;
        if !hw.recording(fault.stream) {
            self.unrecorded += 1;
        } else if self.records.len() == QUEUE {
            self.overflowed = true;
        } else {
            *self.written.entry(fault.stream.0).or_default() += 1;
            self.records.push_back(fault);
        }
    }
}

fn translation(stream: u32, iova: u64) -> Fault {
    Fault {
        stream: StreamId(stream),
        kind: IOMMU_FAULT_KIND_F_TRANSLATION,
        iova: Some(iova),
        access: IOMMU_FAULT_ACCESS_WRITE,
    }
}

fn read(r: &mut Rig, client: usize) -> (iommu_fault_record, u64) {
    let size = core::mem::size_of::<iommu_fault_record>();
    let mut rec = iommu_fault_record {
        size: size as u32,
        ..Default::default()
    };
    let remaining = r
        .call_with(client, Op::FaultRead, &mut rec, size as u64, 0)
        .unwrap();
    (rec, remaining)
}

fn resume(r: &mut Rig, client: usize, device: u64) -> Result<u64, Errno> {
    let reply = r.server.handle(
        common::id(client),
        Op::FaultResume.label(),
        [device, 0],
        &mut [0u8; 64],
    );
    match reply.errno() {
        None => Ok(reply.mr0),
        Some(e) => Err(e),
    }
}

/// What one interrupt cost the server.
struct Work {
    records: usize,
    hardware_calls: usize,
    notify: u64,
}

fn interrupt(r: &mut Rig, queue: &mut EventQueue) -> Work {
    let calls = r.server.hardware().recording_calls;
    let collected = r.server.collect_faults(
        |_, max, report| {
            let mut n = 0;
            while n < max {
                let Some(f) = queue.records.pop_front() else {
                    break;
                };
                report(f);
                n += 1;
            }
            Drained {
                lost: std::mem::take(&mut queue.overflowed),
                global_errors: 0,
                pending: !queue.records.is_empty(),
            }
        },
        &mut |_| {},
    );
    Work {
        records: collected.handled,
        hardware_calls: r.server.hardware().recording_calls - calls,
        notify: collected.notify,
    }
}

/// Client 0 ("a") owns the storming device (and a quiet one on the same
/// IOAS), client 1 ("b") a device that strays once.
fn rig() -> Rig {
    let build = |name, devices| {
        client(name)
            .regions(&REGIONS)
            .devices(devices)
            .objects(8)
            .mapped_pages(16)
            .build()
    };
    let mut r = Rig::new(
        MockHw::new(),
        &[build("a", &STORMER), build("b", &BYSTANDER)],
    );
    for (client, devices) in [(0, 2), (1, 1)] {
        let ioas = r.alloc(client).unwrap();
        for index in 0..devices {
            let dev = r.bind(client, index).unwrap();
            r.attach(client, dev, ioas).unwrap();
        }
    }
    r
}

#[test]
fn a_storm_of_100_000_faults_costs_a_bounded_batch_per_interrupt_and_loses_no_other_record() {
    let mut r = rig();
    let mut queue = EventQueue::default();
    let mut attempted = 0;
    let mut interrupts = 0;
    let (mut a_queued, mut a_dropped, mut a_told_storming) = (0u64, 0u64, 0);
    let (mut resumes, mut refused) = (0, 0);
    let mut most_records = 0;
    let mut b_records = Vec::new();
    while attempted < STORM || !queue.records.is_empty() {
        // The window: the device faults until the server next runs.
        for _ in 0..PER_TICK.min(STORM - attempted) {
            let iova = 0x4000_0000 + (attempted as u64 % 512) * 0x1000;
            queue.fault(r.server.hardware(), translation(0x8, iova));
            attempted += 1;
        }
        if attempted == STORM / 2 {
            // The other client's device strays once, mid-storm.
            queue.fault(r.server.hardware(), translation(0x10, 0xdead_0000));
        }
        let work = interrupt(&mut r, &mut queue);
        interrupts += 1;
        assert!(
            work.records <= EVENTS_PER_INTERRUPT,
            "interrupt {interrupts} handled {} records",
            work.records
        );
        assert!(
            work.hardware_calls <= 1,
            "interrupt {interrupts} stopped {} streams' records: one device can storm",
            work.hardware_calls
        );
        most_records = most_records.max(work.records);
        if work.notify & 0b10 != 0 {
            loop {
                let (rec, remaining) = read(&mut r, 1);
                if rec.out_flags & IOMMU_FAULT_RECORD_VALID != 0 {
                    b_records.push(rec);
                }
                assert_eq!(
                    rec.out_flags & (IOMMU_FAULT_RECORD_LOST | IOMMU_FAULT_RECORD_STORMING),
                    0,
                    "b is told nothing of a's storm"
                );
                assert_eq!((rec.overflow, rec.storm_dropped, rec.silenced), (0, 0, 0));
                if remaining == 0 {
                    break;
                }
            }
        }
        // A hostile owner: drains and asks for its records again at once,
        // every time it is told of them.
        if work.notify & 0b01 != 0 {
            loop {
                let (rec, remaining) = read(&mut r, 0);
                assert_eq!(rec.out_flags & IOMMU_FAULT_RECORD_LOST, 0);
                if rec.out_flags & IOMMU_FAULT_RECORD_VALID != 0 {
                    a_queued += 1;
                }
                if rec.out_flags & IOMMU_FAULT_RECORD_STORMING != 0 {
                    a_told_storming += 1;
                    // Its quiet device shares the storming one's domain,
                    // so the hardware stopped its records too: it is told.
                    assert_eq!(rec.silenced, 0b11);
                }
                a_dropped += rec.storm_dropped;
                if remaining == 0 {
                    break;
                }
            }
            match resume(&mut r, 0, 0) {
                Ok(_) => resumes += 1,
                Err(Errno::EBUSY) => refused += 1,
                Err(e) => panic!("FAULT_RESUME: {e:?}"),
            }
        }
        assert!(interrupts < 10 * STORM, "the storm never ends");
    }
    // The backlog is gone: the last resume goes through.
    if r.server.hardware().silenced.contains(&StreamId(0x8)) {
        let _ = read(&mut r, 0);
        resume(&mut r, 0, 0).unwrap();
        resumes += 1;
    }

    assert!(!queue.overflowed, "the event queue never overflowed");
    // b's one stray DMA, exactly.
    assert_eq!(b_records.len(), 1, "b's single record");
    let rec = &b_records[0];
    assert_eq!(
        (rec.kind, rec.iova, rec.access, rec.dev_index),
        (
            IOMMU_FAULT_KIND_F_TRANSLATION,
            0xdead_0000,
            IOMMU_FAULT_ACCESS_WRITE,
            0
        )
    );
    // Every record of a's that reached the queue was handed to a or
    // dropped and counted for it; at most its budget per re-arm reached
    // its queue; the rest never reached the queue at all.
    let written = queue.written[&0x8] as u64;
    assert_eq!(a_queued + a_dropped, written);
    assert!(a_queued <= u64::from(STORM_BUDGET) * (resumes + 1));
    assert_eq!(written as usize + queue.unrecorded, STORM);
    // Each resume lets in at most one window of the storm: the owner can
    // resume only once the server has handled the backlog.
    assert!(
        written <= PER_TICK as u64 * (resumes + 1),
        "{written} records written for {resumes} resumes"
    );
    assert!(a_told_storming > 0 && refused > 0);
    assert_eq!(most_records, EVENTS_PER_INTERRUPT);
    println!(
        "{STORM} faults in {interrupts} interrupts: {written} records written, {a_queued} queued for a, {a_dropped} dropped for a, {} never recorded; a resumed {resumes} times, refused {refused}",
        queue.unrecorded
    );
}

#[test]
fn resume_waits_for_a_drained_queue_and_names_a_configured_device() {
    let mut r = rig();
    let mut queue = EventQueue::default();
    for i in 0..u64::from(STORM_BUDGET) + 1 {
        queue.fault(r.server.hardware(), translation(0x8, i * 0x1000));
    }
    interrupt(&mut r, &mut queue);
    assert!(r.server.hardware().silenced.contains(&StreamId(0x8)));
    assert_eq!(resume(&mut r, 0, 2), Err(Errno::ENODEV));
    assert_eq!(resume(&mut r, 0, u64::MAX), Err(Errno::ENODEV));
    assert_eq!(resume(&mut r, 0, 0), Err(Errno::EBUSY), "queue not drained");
    assert!(r.server.hardware().silenced.contains(&StreamId(0x8)));
    // Later records of the storming device are dropped for a alone.
    queue.fault(r.server.hardware(), translation(0x8, 0x9000));
    assert!(queue.records.is_empty(), "the hardware records none");
    for _ in 0..STORM_BUDGET {
        let (rec, _) = read(&mut r, 0);
        assert_ne!(rec.out_flags & IOMMU_FAULT_RECORD_STORMING, 0);
    }
    let (rec, remaining) = read(&mut r, 0);
    assert_eq!(
        (rec.out_flags & IOMMU_FAULT_RECORD_VALID, remaining),
        (0, 0)
    );
    // b's device is not a's to resume.
    assert_eq!(resume(&mut r, 1, 0), Ok(0));
    assert!(r.server.hardware().silenced.contains(&StreamId(0x8)));
    assert_eq!(resume(&mut r, 0, 0), Ok(0));
    assert!(r.server.hardware().silenced.is_empty());
    let (rec, _) = read(&mut r, 0);
    assert_eq!((rec.out_flags, rec.silenced), (0, 0), "recording again");
    r.check().unwrap();
}

#[test]
fn a_reset_client_records_again() {
    let mut r = rig();
    let mut queue = EventQueue::default();
    for i in 0..u64::from(STORM_BUDGET) + 1 {
        queue.fault(r.server.hardware(), translation(0x8, i * 0x1000));
    }
    interrupt(&mut r, &mut queue);
    assert!(r.server.hardware().silenced.contains(&StreamId(0x8)));
    r.server.reset_client(common::id(0)).unwrap();
    assert!(r.server.hardware().silenced.is_empty());
    // Its previous life's DMA is told to its next life.
    queue.fault(r.server.hardware(), translation(0x8, 0x1000));
    assert_eq!(interrupt(&mut r, &mut queue).notify, 0b01);
}
