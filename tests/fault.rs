//! Fault delivery: attribution by stream, bounded queues, FAULT read.

mod common;

use common::{client, device, MockHw, Rig};
use iommu_proto::fault::*;
use iommu_proto::vfio::vfio_device_bind_iommufd;
use iommu_proto::{Errno, Op};
use iommu_server::{Fault, FAULT_QUEUE};
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
        size: 48,
        flags: 0,
        out_flags: 0,
        dev_id: 0,
        dev_index: 0,
        kind: 0,
        iova: 0,
        access: 0,
        reserved: 0,
        overflow: 0,
    };
    let remaining = r.call_with(client, Op::FaultRead, &mut rec, 48, 0)?;
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
