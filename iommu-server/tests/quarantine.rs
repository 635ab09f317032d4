//! A quarantine that holds: while a manager holds a client, no request of
//! it can give one of its devices a translation again, whatever state a
//! reset that met a stream that would not stop left behind (a device bound
//! but released, a stuck stream still on its domain, IOASes and a compat
//! IOAS). Each refused op is EPERM and changes nothing; after the release
//! the same request works.

mod common;

use common::{client, MockHw, Rig, DEFAULT_QUOTA};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{Errno, Op};
use iommu_types::config::{DeviceConfig, Perms, Quota, Region};
use iommu_types::StreamId;

static REGIONS: [Region; 1] = [Region {
    vaddr: 0x10_0000,
    size: 0x10_0000,
    paddr: 0x8000_0000,
    perms: Perms::RW,
}];
static DEVICES: [DeviceConfig; 3] = [
    common::device("a0", 0x8),
    common::device("a1", 0x10),
    common::device("a2", 0x18),
];
const DRIVER: usize = 0;
const MANAGER: usize = 1;
const STOPPED: StreamId = StreamId(0x8);
const STUCK: StreamId = StreamId(0x10);
/// Where the driver's first mapping lands: what the stuck stream reaches.
const MAPPED: u64 = 0x10_0000;
/// An IOVA nothing maps before the hold.
const FRESH: u64 = 0x80_0000;

/// What the hold left behind, by object ID.
struct Left {
    /// Bound, released by the reset (its stream stopped).
    released: u32,
    /// Still attached: its stream would not stop.
    stuck: u32,
    /// The stuck stream's IOAS, also the compat IOAS.
    ioas: u32,
    /// Another IOAS, with an explicit HWPT over it.
    other: u32,
    hwpt: u32,
}

fn rig() -> Rig {
    let quota = Quota {
        objects: 16,
        ioases: 4,
        hwpts: 8,
        ..DEFAULT_QUOTA
    };
    let driver = client("driver")
        .regions(&REGIONS)
        .devices(&DEVICES)
        .quota(quota);
    Rig::new(
        MockHw {
            stuck: vec![STUCK],
            ..MockHw::new()
        },
        &[driver.build(), client("manager").manager(true).build()],
    )
}

fn quarantine(r: &mut Rig, target: usize, hold: u64) -> Result<u64, Errno> {
    let reply = r.server.handle(
        common::id(MANAGER),
        Op::Quarantine.label(),
        [target as u64, hold],
        &mut r.pages[MANAGER],
    );
    reply.errno().map_or(Ok(reply.mr0), Err)
}

fn reset(r: &mut Rig, target: usize) -> Result<u64, Errno> {
    let reply = r.server.handle(
        common::id(MANAGER),
        Op::ResetClient.label(),
        [target as u64, 0],
        &mut r.pages[MANAGER],
    );
    reply.errno().map_or(Ok(reply.mr0), Err)
}

/// A driver with both devices attached to one IOAS (also its compat IOAS),
/// an explicit HWPT over another, then held: the reset stops one stream
/// and is EBUSY on the other.
fn held() -> (Rig, Left) {
    let mut r = rig();
    let released = r.bind(DRIVER, 0).unwrap();
    let stuck = r.bind(DRIVER, 1).unwrap();
    let ioas = r.alloc(DRIVER).unwrap();
    let other = r.alloc(DRIVER).unwrap();
    r.map(DRIVER, ioas, 0x10_0000, 0x2000, Some(MAPPED))
        .unwrap();
    r.attach(DRIVER, released, ioas).unwrap();
    r.attach(DRIVER, stuck, ioas).unwrap();
    let mut set = iommu_vfio_ioas {
        size: 12,
        ioas_id: ioas,
        op: IOMMU_VFIO_IOAS_SET,
        reserved: 0,
    };
    r.call(DRIVER, Op::VfioIoas, &mut set, 0).unwrap();
    let mut alloc = iommu_hwpt_alloc {
        size: 48,
        dev_id: released,
        pt_id: other,
        ..Default::default()
    };
    r.call(DRIVER, Op::HwptAlloc, &mut alloc, 0).unwrap();
    assert!(r.server.hardware().dma(STUCK, MAPPED).is_some());
    assert_eq!(quarantine(&mut r, DRIVER, 1), Err(Errno::EBUSY));
    assert_eq!(r.server.hardware().attached(STOPPED), None);
    let left = Left {
        released,
        stuck,
        ioas,
        other,
        hwpt: alloc.out_hwpt_id,
    };
    (r, left)
}

/// Every stream of the driver reaches nothing it did not reach when the
/// hold began: the stopped one nothing at all, the stuck one only
/// [`MAPPED`].
fn assert_no_new_translation(r: &Rig) {
    let hw = r.server.hardware();
    for stream in [STOPPED, StreamId(0x18)] {
        assert_eq!(hw.attached(stream), None, "stream {:#x}", stream.0);
    }
    for iova in (0..0x100_0000u64).step_by(0x1000) {
        let reached = hw.dma(STUCK, iova);
        if (MAPPED..MAPPED + 0x2000).contains(&iova) {
            assert!(reached.is_some());
        } else {
            assert_eq!(reached, None, "the stuck stream reaches {iova:#x}");
        }
    }
    r.check().unwrap();
}

/// Runs `op` held (EPERM, nothing changes), then after the release (Ok).
fn refused_then_allowed(op: impl Fn(&mut Rig, &Left) -> Result<u64, Errno>) {
    let (mut r, left) = held();
    let log = r.server.hardware().log.len();
    let objects = r.server.object_count(common::id(DRIVER));
    let pages = r.server.store().account(common::id(DRIVER)).unwrap().used;
    assert_eq!(op(&mut r, &left), Err(Errno::EPERM));
    assert_eq!(r.server.hardware().log.len(), log, "no stream moved");
    assert_eq!(r.server.object_count(common::id(DRIVER)), objects);
    assert_eq!(
        r.server.store().account(common::id(DRIVER)).unwrap().used,
        pages
    );
    assert_no_new_translation(&r);
    quarantine(&mut r, DRIVER, 0).unwrap();
    op(&mut r, &left).unwrap();
}

fn attach(r: &mut Rig, dev: u32, pt: u32) -> Result<u64, Errno> {
    r.attach(DRIVER, dev, pt).map(u64::from)
}

#[test]
fn held_bind_is_eperm() {
    refused_then_allowed(|r, _| r.bind(DRIVER, 2).map(u64::from));
}

#[test]
fn held_attach_to_an_ioas_is_eperm() {
    // The IOAS's automatic HWPT is the stuck stream's domain.
    refused_then_allowed(|r, l| attach(r, l.released, l.ioas));
}

#[test]
fn held_attach_to_a_hwpt_is_eperm() {
    refused_then_allowed(|r, l| attach(r, l.released, l.hwpt));
}

#[test]
fn held_attach_through_the_compat_path_is_eperm() {
    refused_then_allowed(|r, l| attach(r, l.released, 0));
}

/// An attached device cannot be moved (no replace): EBUSY unheld, EPERM
/// held, before anything looks at its state.
#[test]
fn held_replace_is_eperm() {
    let (mut r, l) = held();
    assert_eq!(attach(&mut r, l.stuck, l.other), Err(Errno::EPERM));
    assert_no_new_translation(&r);
    quarantine(&mut r, DRIVER, 0).unwrap();
    assert_eq!(attach(&mut r, l.stuck, l.other), Err(Errno::EBUSY));
}

#[test]
fn held_hwpt_alloc_is_eperm() {
    refused_then_allowed(|r, l| {
        let mut alloc = iommu_hwpt_alloc {
            size: 48,
            dev_id: l.released,
            pt_id: l.ioas,
            ..Default::default()
        };
        r.call(DRIVER, Op::HwptAlloc, &mut alloc, 0)
    });
}

/// A map into the IOAS whose domain the stuck stream still uses would
/// reach that stream at once.
#[test]
fn held_map_is_eperm() {
    refused_then_allowed(|r, l| r.map(DRIVER, l.ioas, 0x10_4000, 0x1000, Some(FRESH)));
}

#[test]
fn held_copy_is_eperm() {
    refused_then_allowed(|r, l| {
        let mut copy = iommu_ioas_copy {
            size: 40,
            flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
            dst_ioas_id: l.ioas,
            src_ioas_id: l.ioas,
            length: 0x1000,
            dst_iova: FRESH,
            src_iova: MAPPED,
        };
        r.call(DRIVER, Op::IoasCopy, &mut copy, 0)
    });
}

#[test]
fn held_vfio_map_dma_is_eperm() {
    refused_then_allowed(|r, _| {
        let mut map = vfio_iommu_type1_dma_map {
            argsz: 32,
            flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: 0x10_4000,
            iova: FRESH,
            size: 0x1000,
        };
        r.call(DRIVER, Op::VfioIommuMapDma, &mut map, 0)
    });
}

/// What a held client may still do takes translations away or only looks:
/// unmap (the stuck stream loses MAPPED), detach (the stuck stream still
/// will not stop: EBUSY), read its faults.
#[test]
fn a_held_client_may_still_take_translations_away() {
    let (mut r, l) = held();
    let mut unmap = iommu_ioas_unmap {
        size: 24,
        ioas_id: l.ioas,
        iova: MAPPED,
        length: 0x2000,
    };
    r.call(DRIVER, Op::IoasUnmap, &mut unmap, 0).unwrap();
    assert_eq!(r.server.hardware().dma(STUCK, MAPPED), None);
    let mut detach = vfio_device_detach_iommufd_pt {
        argsz: 12,
        ..Default::default()
    };
    assert_eq!(
        r.call(
            DRIVER,
            Op::VfioDeviceDetachIommufdPt,
            &mut detach,
            u64::from(l.stuck)
        ),
        Err(Errno::EBUSY)
    );
    let mut fault = iommu_proto::iommu_fault_record {
        size: core::mem::size_of::<iommu_proto::iommu_fault_record>() as u32,
        ..Default::default()
    };
    r.call(DRIVER, Op::FaultRead, &mut fault, 0).unwrap();
    r.check().unwrap();
}

/// The manager's retry loop: RESET_CLIENT is EBUSY while a stream will not
/// stop; between retries the held client tries everything that could
/// translate again and gets none of it. Once the stream stops the reset
/// finishes, the hold still stands, and after the release the client binds,
/// attaches and maps again.
#[test]
fn a_held_client_never_translates_again_between_reset_retries() {
    let (mut r, l) = held();
    let mut retries = 0;
    loop {
        for (dev, pt) in [(l.released, l.ioas), (l.released, 0), (l.released, l.hwpt)] {
            assert_eq!(attach(&mut r, dev, pt), Err(Errno::EPERM));
        }
        assert_eq!(r.bind(DRIVER, 2), Err(Errno::EPERM));
        assert_eq!(
            r.map(DRIVER, l.ioas, 0x10_4000, 0x1000, Some(FRESH)),
            Err(Errno::EPERM)
        );
        assert_no_new_translation(&r);
        retries += 1;
        if retries == 3 {
            // The wedged stream finally stops.
            r.server.hardware_mut().stuck.clear();
        }
        match reset(&mut r, DRIVER) {
            Err(Errno::EBUSY) => continue,
            Ok(_) => break,
            Err(e) => panic!("reset: {e}"),
        }
    }
    assert_eq!(retries, 3);
    let hw = r.server.hardware();
    assert_eq!(hw.attached(STUCK), None);
    assert_eq!(hw.live_domains(), 0);
    assert_eq!(r.server.object_count(common::id(DRIVER)), 0);
    // Reset, still held.
    assert_eq!(r.bind(DRIVER, 0), Err(Errno::EPERM));
    let ioas = r.alloc(DRIVER).unwrap();
    assert_eq!(
        r.map(DRIVER, ioas, 0x10_0000, 0x1000, Some(MAPPED)),
        Err(Errno::EPERM)
    );
    quarantine(&mut r, DRIVER, 0).unwrap();
    let dev = r.bind(DRIVER, 1).unwrap();
    r.attach(DRIVER, dev, ioas).unwrap();
    r.map(DRIVER, ioas, 0x10_0000, 0x1000, Some(MAPPED))
        .unwrap();
    assert_eq!(r.server.hardware().dma(STUCK, MAPPED), Some(0x8000_0000));
    r.check().unwrap();
}
