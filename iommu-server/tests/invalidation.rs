//! An invalidation the IOMMU never confirms fails closed (the end-to-end
//! run over the SMMU driver and a simulated SMMU is in hw/tests/smmu_sim.rs;
//! here the server's rules over the recording mock): the request is EIO,
//! the areas stay (IOVA taken, pages charged), every stream on a tainted
//! domain is stopped (or all DMA when one will not stop), the client is
//! told, a tainted domain takes no stream again, and nothing is handed back
//! while a stream that may reach it is not known stopped.

mod common;

use common::{client, device, id, region, MockHw, Rig, DEFAULT_QUOTA};
use iommu_proto::fault::IOMMU_FAULT_RECORD_STOPPED;
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{iommu_fault_record, Errno, Op};
use iommu_types::config::{DeviceConfig, Quota, Region};
use iommu_types::StreamId;

static REGIONS: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8000_0000)];
static DEVICES: [DeviceConfig; 2] = [device("a0", 0x8), device("a1", 0x10)];
static OTHER: [DeviceConfig; 1] = [device("b0", 0x18)];
const IOVA: u64 = 0x4_0000;

fn rig() -> Rig {
    let quota = Quota {
        objects: 16,
        mappings: 64,
        ..DEFAULT_QUOTA
    };
    Rig::new(
        MockHw::new(),
        &[
            client("a")
                .regions(&REGIONS)
                .devices(&DEVICES)
                .quota(quota)
                .build(),
            client("b")
                .regions(&REGIONS)
                .devices(&OTHER)
                .quota(quota)
                .build(),
            client("m").manager(true).quota(quota).build(),
        ],
    )
}

fn unmap(r: &mut Rig, ioas: u32, iova: u64, length: u64) -> Result<u64, Errno> {
    let mut cmd = iommu_ioas_unmap {
        size: 24,
        ioas_id: ioas,
        iova,
        length,
    };
    r.call(0, Op::IoasUnmap, &mut cmd, 0)?;
    Ok(cmd.length)
}

fn stopped(r: &mut Rig, client: usize) -> bool {
    let mut rec = iommu_fault_record {
        size: core::mem::size_of::<iommu_fault_record>() as u32,
        ..Default::default()
    };
    r.call(client, Op::FaultRead, &mut rec, 0).unwrap();
    rec.out_flags & IOMMU_FAULT_RECORD_STOPPED != 0
}

fn hwpt_alloc(r: &mut Rig, dev: u32, ioas: u32) -> u32 {
    let mut alloc = iommu_hwpt_alloc {
        size: 48,
        dev_id: dev,
        pt_id: ioas,
        ..Default::default()
    };
    r.call(0, Op::HwptAlloc, &mut alloc, 0).unwrap();
    alloc.out_hwpt_id
}

/// An explicit HWPT outlives its devices: once tainted, no device
/// attaches to it again (EIO), while the unmap that failed may be retried
/// as soon as no stream is on it; destroying it lets the IOAS have a new
/// domain.
#[test]
fn a_tainted_domain_takes_no_stream_again() {
    let mut r = rig();
    let ioas = r.alloc(0).unwrap();
    r.map(0, ioas, 0x10_0000, 0x2000, Some(IOVA)).unwrap();
    let (d0, d1) = (r.bind(0, 0).unwrap(), r.bind(0, 1).unwrap());
    let hwpt = hwpt_alloc(&mut r, d0, ioas);
    r.attach(0, d0, hwpt).unwrap();
    r.attach(0, d1, hwpt).unwrap();
    let used = r.server.store().account(id(0)).unwrap();
    r.server.hardware_mut().unconfirmed = true;
    assert_eq!(unmap(&mut r, ioas, IOVA, 0x2000), Err(Errno::EIO));
    let hw = r.server.hardware();
    for s in [0x8, 0x10] {
        assert_eq!(hw.attached(StreamId(s)), None, "stream {s:#x} stopped");
    }
    assert!(!hw.all_aborted, "nothing wider");
    assert_eq!(
        r.server.store().account(id(0)).unwrap(),
        used,
        "still charged"
    );
    assert_eq!(r.server.translate(id(0), ioas, IOVA), Some(0x8000_0000));
    assert!(stopped(&mut r, 0));
    assert!(!stopped(&mut r, 0), "told once");
    assert!(!stopped(&mut r, 1), "not b's business");
    r.check().unwrap();
    // The IOMMU works again; the tainted domain still takes no stream.
    r.server.hardware_mut().unconfirmed = false;
    assert_eq!(r.attach(0, d0, hwpt), Err(Errno::EIO));
    assert_eq!(r.server.hardware().attached(StreamId(0x8)), None);
    // No stream is on it: the unmap finishes.
    assert_eq!(unmap(&mut r, ioas, IOVA, 0x2000), Ok(0x2000));
    assert_eq!(r.server.store().account(id(0)).unwrap().used, 0);
    let mut destroy = iommu_destroy { size: 8, id: hwpt };
    r.call(0, Op::Destroy, &mut destroy, 0).unwrap();
    r.attach(0, d0, ioas).unwrap();
    r.map(0, ioas, 0x10_0000, 0x1000, Some(IOVA)).unwrap();
    assert_eq!(
        r.server.hardware().dma(StreamId(0x8), IOVA),
        Some(0x8000_0000)
    );
    r.check().unwrap();
}

/// A stream that will not stop: all DMA is stopped, every client with a
/// device is told, and no unmap in the IOAS hands anything back (EIO,
/// changing nothing) while the stream is on the tainted domain.
#[test]
fn a_stream_that_will_not_stop_stops_all_dma_and_keeps_the_pages() {
    let mut r = rig();
    let ioas = r.alloc(0).unwrap();
    r.map(0, ioas, 0x10_0000, 0x1000, Some(IOVA)).unwrap();
    r.map(0, ioas, 0x10_4000, 0x1000, Some(2 * IOVA)).unwrap();
    let dev = r.bind(0, 0).unwrap();
    r.attach(0, dev, ioas).unwrap();
    let hw = r.server.hardware_mut();
    hw.unconfirmed = true;
    hw.stuck = vec![StreamId(0x8)];
    assert_eq!(unmap(&mut r, ioas, IOVA, 0x1000), Err(Errno::EIO));
    let hw = r.server.hardware();
    assert!(hw.all_aborted);
    assert_eq!(hw.dma(StreamId(0x8), 2 * IOVA), None);
    assert!(
        stopped(&mut r, 0) && stopped(&mut r, 1),
        "every client with a device"
    );
    assert!(!stopped(&mut r, 2), "the manager has none");
    let before = r.server.store().account(id(0)).unwrap();
    r.server.hardware_mut().unconfirmed = false;
    for (iova, len) in [(IOVA, 0x1000), (2 * IOVA, 0x1000), (0, u64::MAX)] {
        assert_eq!(unmap(&mut r, ioas, iova, len), Err(Errno::EIO));
    }
    assert_eq!(r.server.store().account(id(0)).unwrap(), before);
    assert_eq!(r.server.translate(id(0), ioas, IOVA), Some(0x8000_0000));
    assert_eq!(
        r.map(0, ioas, 0x10_8000, 0x1000, Some(IOVA)),
        Err(Errno::EEXIST)
    );
    // The manager's reset cannot finish either: everything stays.
    let reply = r
        .server
        .handle(id(2), Op::ResetClient.label(), [0, 0], &mut r.pages[2]);
    assert_eq!(reply.errno(), Some(Errno::EBUSY));
    assert_eq!(r.server.region_users(id(0), 0), 2);
    r.check().unwrap();
}

/// A map whose fill of a second domain fails is undone in the first; when
/// that undo is not confirmed the map is EIO and its area stays, as after
/// an unconfirmed unmap.
#[test]
fn an_unconfirmed_undo_of_a_failed_map_keeps_the_area() {
    let mut r = rig();
    let ioas = r.alloc(0).unwrap();
    let (d0, d1) = (r.bind(0, 0).unwrap(), r.bind(0, 1).unwrap());
    r.attach(0, d0, ioas).unwrap();
    let second = hwpt_alloc(&mut r, d1, ioas);
    r.attach(0, d1, second).unwrap();
    let hw = r.server.hardware_mut();
    hw.unconfirmed = true;
    // The first domain's map succeeds, the second's fails.
    hw.fail_at = Some(hw.allocations + 1);
    assert_eq!(
        r.map(0, ioas, 0x10_0000, 0x1000, Some(IOVA)),
        Err(Errno::EIO)
    );
    assert_eq!(r.server.translate(id(0), ioas, IOVA), Some(0x8000_0000));
    assert_eq!(r.server.hardware().attached(StreamId(0x8)), None);
    assert!(stopped(&mut r, 0));
    r.check().unwrap();
}

/// VFIO_IOMMU_UNMAP_DMA fails the same way.
#[test]
fn vfio_unmap_dma_is_eio_too() {
    let mut r = rig();
    let dev = r.bind(0, 0).unwrap();
    r.attach(0, dev, 0).unwrap();
    let mut map = vfio_iommu_type1_dma_map {
        argsz: 32,
        flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        vaddr: 0x10_0000,
        iova: IOVA,
        size: 0x1000,
    };
    r.call(0, Op::VfioIommuMapDma, &mut map, 0).unwrap();
    r.server.hardware_mut().unconfirmed = true;
    let mut unmap = vfio_iommu_type1_dma_unmap {
        argsz: 24,
        flags: 0,
        iova: IOVA,
        size: 0x1000,
        ..Default::default()
    };
    assert_eq!(
        r.call(0, Op::VfioIommuUnmapDma, &mut unmap, 0),
        Err(Errno::EIO)
    );
    assert_eq!(r.server.hardware().attached(StreamId(0x8)), None);
    assert_eq!(r.server.region_users(id(0), 0), 1);
    assert!(stopped(&mut r, 0));
    r.check().unwrap();
}
