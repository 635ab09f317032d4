//! Fault delivery: attribution by stream, bounded queues, FAULT read.

mod common;

use common::{client, device, id, MockHw, Rig};
use iommu_proto::fault::*;
use iommu_proto::vfio::vfio_device_bind_iommufd;
use iommu_proto::{Errno, Op};
use iommu_server::{
    Drained, Fault, LogEvent, LogRuns, EVENTS_PER_INTERRUPT, FAULT_QUEUE, LOG_PER_INTERRUPT,
    STORM_BUDGET,
};
use iommu_types::config::{DeviceConfig, Perms, Region};
use iommu_types::StreamId;

static REGIONS: [Region; 1] = [Region {
    vaddr: 0x10_0000,
    size: 0x1000,
    paddr: 0x8000_0000,
    perms: Perms::RW,
}];
static DEV_A: [DeviceConfig; 2] = [device("a0", 0x8), device("a1", 0x10)];
static DEV_B: [DeviceConfig; 1] = [device("b0", 0x18)];

fn rig() -> Rig {
    let client = |name, devices| {
        client(name)
            .regions(&REGIONS)
            .devices(devices)
            .objects(8)
            .mapped_pages(16)
            .build()
    };
    Rig::new(MockHw::new(), &[client("a", &DEV_A), client("b", &DEV_B)])
}

fn read(r: &mut Rig, client: usize) -> Result<(iommu_fault_record, u64), Errno> {
    let mut rec = iommu_fault_record {
        size: 64,
        flags: 0,
        out_flags: 0,
        dev_id: 0,
        dev_index: 0,
        kind: 0,
        iova: 0,
        access: 0,
        reserved: 0,
        overflow: 0,
        silenced: 0,
        storm_dropped: 0,
    };
    let remaining = r.call_with(client, Op::FaultRead, &mut rec, 64, 0)?;
    Ok((rec, remaining))
}

fn translation(stream: u32, iova: u64) -> Fault {
    Fault {
        stream: StreamId(stream),
        kind: IOMMU_FAULT_KIND_F_TRANSLATION,
        iova: Some(iova),
        access: IOMMU_FAULT_ACCESS_WRITE,
    }
}

#[test]
fn faults_go_to_the_streams_owner_only() {
    let mut r = rig();
    let mut bind = vfio_device_bind_iommufd {
        argsz: 24,
        flags: 0,
        iommufd: -1,
        out_devid: 0,
        token_uuid_ptr: 0,
    };
    r.call_with(0, Op::VfioDeviceBindIommufd, &mut bind, 24, 1)
        .unwrap();
    assert_eq!(
        r.server.report_fault(translation(0x10, 0x5000)),
        Some(common::id(0))
    );
    assert_eq!(
        r.server.report_fault(translation(0x8, 0x6000)),
        Some(common::id(0))
    );
    assert_eq!(
        r.server.report_fault(translation(0x99, 0x7000)),
        None,
        "nobody's stream"
    );
    let (rec, left) = read(&mut r, 1).unwrap();
    assert_eq!((rec.out_flags, left), (0, 0), "B sees none of A's faults");
    let (rec, left) = read(&mut r, 0).unwrap();
    assert_eq!(
        rec.out_flags,
        IOMMU_FAULT_RECORD_VALID | IOMMU_FAULT_RECORD_ADDR_VALID
    );
    assert_eq!(
        (rec.dev_index, rec.dev_id, rec.iova, rec.kind),
        (1, bind.out_devid, 0x5000, IOMMU_FAULT_KIND_F_TRANSLATION)
    );
    assert_eq!((rec.access, left), (IOMMU_FAULT_ACCESS_WRITE, 1));
    let (rec, left) = read(&mut r, 0).unwrap();
    assert_eq!(
        (rec.dev_index, rec.dev_id, left),
        (0, 0, 0),
        "unbound device: index only"
    );
    let (rec, _) = read(&mut r, 0).unwrap();
    assert_eq!(rec.out_flags, 0, "empty");
}

#[test]
fn a_full_queue_counts_what_it_drops() {
    let mut r = rig();
    for i in 0..FAULT_QUEUE as u64 + 5 {
        r.server.report_fault(translation(0x18, i * 0x1000));
    }
    assert_eq!(r.server.faults_pending(common::id(1)), FAULT_QUEUE);
    let (rec, left) = read(&mut r, 1).unwrap();
    assert_eq!(
        (rec.iova, rec.overflow, left),
        (0, 5, FAULT_QUEUE as u64 - 1),
        "oldest first, drops reported"
    );
    let (rec, _) = read(&mut r, 1).unwrap();
    assert_eq!(rec.overflow, 0, "reported once");
    let no_addr = Fault {
        stream: StreamId(0x18),
        kind: IOMMU_FAULT_KIND_C_BAD_STE,
        iova: None,
        access: 0,
    };
    let mut r = rig();
    r.server.report_fault(no_addr);
    let (rec, _) = read(&mut r, 1).unwrap();
    assert_eq!(rec.out_flags, IOMMU_FAULT_RECORD_VALID);
}

#[test]
fn fault_read_rules() {
    let mut r = rig();
    r.server.report_fault(translation(0x18, 0x1000));
    let mut rec = iommu_fault_record {
        size: 48,
        flags: 1,
        out_flags: 0,
        dev_id: 0,
        dev_index: 0,
        kind: 0,
        iova: 0,
        access: 0,
        reserved: 0,
        overflow: 0,
        silenced: 0,
        storm_dropped: 0,
    };
    assert_eq!(
        r.call_with(1, Op::FaultRead, &mut rec, 48, 0),
        Err(Errno::EOPNOTSUPP)
    );
    rec.flags = 0;
    assert_eq!(
        r.call_with(1, Op::FaultRead, &mut rec, 16, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        r.server.faults_pending(common::id(1)),
        1,
        "a refused read loses nothing"
    );
}

/// One interrupt's worth of hardware events: `faults`, then what draining
/// found; returns who is notified and what the log said.
/// As the hardware does, it hands over at most what the server asks for.
fn interrupt(r: &mut Rig, faults: &[Fault], drained: Drained) -> (u64, Vec<LogEvent>) {
    let mut log = Vec::new();
    let collected = r.server.collect_faults(
        |_, max, report| {
            faults.iter().take(max).for_each(|&f| report(f));
            Drained {
                pending: faults.len() > max,
                ..drained
            }
        },
        &mut |event| log.push(event),
    );
    (collected.notify, log)
}

/// A client with no device, beside the two with devices.
fn rig_with_a_bystander() -> Rig {
    let with = |name, devices| {
        client(name)
            .regions(&REGIONS)
            .devices(devices)
            .objects(8)
            .mapped_pages(16)
            .build()
    };
    let quota = iommu_types::config::Quota {
        mappings: 1,
        ..common::DEFAULT_QUOTA
    };
    let bystander = client("c").regions(&REGIONS).quota(quota).build();
    Rig::new(
        MockHw::new(),
        &[with("a", &DEV_A), with("b", &DEV_B), bystander],
    )
}

#[test]
fn a_fault_on_an_unowned_stream_is_logged_not_lost() {
    let mut r = rig();
    let (notify, log) = interrupt(&mut r, &[translation(0x99, 0x7000)], Drained::default());
    assert_eq!(notify, 0, "nobody to tell");
    assert_eq!(log, [LogEvent::Unowned(translation(0x99, 0x7000))]);
    assert_eq!(
        log[0].to_string(),
        "DMA fault F_TRANSLATION on stream 0x99, which no client owns, IOVA 0x7000 write"
    );
    // An owned one names its client and device.
    let (notify, log) = interrupt(&mut r, &[translation(0x10, 0x5000)], Drained::default());
    assert_eq!(notify, 1);
    assert_eq!(
        log[0].to_string(),
        "DMA fault F_TRANSLATION on stream 0x10 (a's a1), IOVA 0x5000 write"
    );
}

#[test]
fn lost_records_reach_every_client_owning_a_stream_once() {
    let mut r = rig_with_a_bystander();
    let lost = Drained {
        lost: true,
        global_errors: 0,
        pending: false,
    };
    let (notify, log) = interrupt(&mut r, &[], lost);
    assert_eq!(notify, 0b011, "a and b own streams; c owns none");
    assert_eq!(log, [LogEvent::LostRecords]);
    for client in 0..2 {
        let (rec, _) = read(&mut r, client).unwrap();
        assert_eq!(rec.out_flags, IOMMU_FAULT_RECORD_LOST, "client {client}");
        let (rec, _) = read(&mut r, client).unwrap();
        assert_eq!(rec.out_flags, 0, "reported once");
    }
    let (rec, _) = read(&mut r, 2).unwrap();
    assert_eq!(rec.out_flags, 0);
    // With a record in the queue, both show.
    interrupt(&mut r, &[translation(0x18, 0x1000)], lost);
    let (rec, _) = read(&mut r, 1).unwrap();
    assert_eq!(
        rec.out_flags,
        IOMMU_FAULT_RECORD_VALID | IOMMU_FAULT_RECORD_ADDR_VALID | IOMMU_FAULT_RECORD_LOST
    );
}

#[test]
fn a_fault_flood_logs_a_bounded_number_of_lines() {
    let mut r = rig();
    let flood: Vec<Fault> = (0..200).map(|i| translation(0x8, i * 0x1000)).collect();
    let errors = Drained {
        lost: true,
        global_errors: 0x4,
        pending: false,
    };
    let (notify, log) = interrupt(&mut r, &flood, errors);
    assert_eq!(notify, 0b11);
    // The storm is always said; the rest within the budget.
    assert_eq!(log.len() as u32, LOG_PER_INTERRUPT + 2);
    let storms: Vec<String> = log
        .iter()
        .filter(|e| matches!(e, LogEvent::Storming { .. }))
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        storms,
        ["stream 0x8 (a's a0) faulted more than 16 times in one interrupt: its records are stopped until a resumes them"]
    );
    // One interrupt's records: the device's budget of faults, then the
    // lost records and the global errors; the rest wait.
    let said = STORM_BUDGET as u32 + 2;
    assert_eq!(
        log.last(),
        Some(&LogEvent::Suppressed(said - LOG_PER_INTERRUPT))
    );
    // The device's budget reaches its queue; the rest of the interrupt's
    // records are dropped for it alone.
    let (rec, remaining) = read(&mut r, 0).unwrap();
    assert_eq!(remaining, u64::from(STORM_BUDGET) - 1);
    assert_eq!(rec.overflow, 0);
    assert_eq!(
        rec.storm_dropped as usize,
        EVENTS_PER_INTERRUPT - STORM_BUDGET as usize
    );
    // The next interrupt has its own budget.
    let (_, log) = interrupt(
        &mut r,
        &[],
        Drained {
            lost: false,
            global_errors: 0x4,
            pending: false,
        },
    );
    assert_eq!(log, [LogEvent::GlobalErrors(0x4)]);
    assert_eq!(log[0].to_string(), "SMMU global errors 0x4 (acknowledged)");
}

/// A burst of one device's faults reads as one line with its count and
/// its last IOVA; a record of another stream, kind or access starts a new
/// line, any other event ends the run; a device named as its client is
/// named once.
#[test]
fn a_burst_of_fault_records_is_one_line() {
    let owned = |fault, device_name| LogEvent::Fault {
        client: id(0),
        client_name: "edu_a",
        device: 256,
        device_name,
        fault,
    };
    let mut events: Vec<LogEvent> = (0..8)
        .map(|k| owned(translation(0x8, 0x10_2000 + 4 * k), "edu_a"))
        .collect();
    events.push(owned(translation(0x8, 0x10_3000), "edu_a"));
    events[8] = LogEvent::Unowned(translation(0x99, 0x7000));
    events.push(owned(translation(0x10, 0x5000), "nvme"));
    events.push(LogEvent::LostRecords);
    events.push(owned(translation(0x10, 0x6000), "nvme"));
    let mut lines = Vec::new();
    let mut runs = LogRuns::new();
    for e in events {
        runs.push(e, &mut |l| lines.push(l.to_string()));
    }
    runs.flush(&mut |l| lines.push(l.to_string()));
    assert_eq!(
        lines,
        [
            "DMA fault F_TRANSLATION on stream 0x8 (edu_a), IOVA 0x102000 write; 8 records logged, the last at IOVA 0x10201c",
            "DMA fault F_TRANSLATION on stream 0x99, which no client owns, IOVA 0x7000 write",
            "DMA fault F_TRANSLATION on stream 0x10 (edu_a's nvme), IOVA 0x5000 write",
            "SMMU event queue overflowed: records lost; every client with a device is told",
            "DMA fault F_TRANSLATION on stream 0x10 (edu_a's nvme), IOVA 0x6000 write",
        ]
    );
}
