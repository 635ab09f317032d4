//! The VFIO type1 container set over the compat IOAS, after Linux's
//! vfio_compat.c.

mod common;

use common::{client, device, region, MockHw, Rig};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{Errno, Op};
use iommu_testkit::MockDomain;
use iommu_types::config::{DeviceConfig, Region};
use iommu_types::StreamId;
use zerocopy::{FromBytes, Immutable, IntoBytes};

const K4: u64 = 0x1000;
static REGIONS: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8000_0000)];
static DEVICES: [DeviceConfig; 1] = [device("edu", 0x8)];

fn rig() -> Rig {
    let vfio = client("vfio")
        .regions(&REGIONS)
        .devices(&DEVICES)
        .objects(8)
        .mapped_pages(1024);
    Rig::new(MockHw::new(), &[vfio.build()])
}

fn call<T: IntoBytes + FromBytes + Immutable>(
    r: &mut Rig,
    op: Op,
    req: &mut T,
) -> Result<u64, Errno> {
    r.call_with(0, op, req, std::mem::size_of::<T>() as u64, 0)
}

/// A scalar call: the argument travels in MR0.
fn scalar(r: &mut Rig, op: Op, arg: u64) -> Result<u64, Errno> {
    let reply = r
        .server
        .handle(common::id(0), op.label(), [arg, 0], &mut r.pages[0]);
    reply.errno().map_or(Ok(reply.mr0), Err)
}

fn map_dma(r: &mut Rig, vaddr: u64, iova: u64, size: u64) -> Result<u64, Errno> {
    let mut m = vfio_iommu_type1_dma_map {
        argsz: 32,
        flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        vaddr,
        iova,
        size,
    };
    call(r, Op::VfioIommuMapDma, &mut m)
}

fn unmap_dma(r: &mut Rig, iova: u64, size: u64, flags: u32) -> Result<u64, Errno> {
    let mut u = vfio_iommu_type1_dma_unmap {
        argsz: 24,
        flags,
        iova,
        size,
        data: [],
    };
    call(r, Op::VfioIommuUnmapDma, &mut u)?;
    Ok(u.size)
}

/// Binds the device and attaches it through the compat path.
fn open_container(r: &mut Rig) -> u32 {
    let dev = r.bind(0, 0).unwrap();
    r.attach(0, dev, 0).unwrap()
}

#[test]
fn without_a_compat_ioas_everything_is_enodev() {
    let mut r = rig();
    assert_eq!(
        scalar(&mut r, Op::VfioGetApiVersion, 0),
        Ok(VFIO_API_VERSION)
    );
    assert_eq!(
        scalar(&mut r, Op::VfioCheckExtension, VFIO_TYPE1v2_IOMMU),
        Ok(1)
    );
    assert_eq!(
        scalar(&mut r, Op::VfioCheckExtension, VFIO_DMA_CC_IOMMU),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        scalar(&mut r, Op::VfioSetIommu, VFIO_TYPE1v2_IOMMU),
        Err(Errno::ENODEV)
    );
    assert_eq!(map_dma(&mut r, 0x10_0000, 0x1000, K4), Err(Errno::ENODEV));
    assert_eq!(
        unmap_dma(&mut r, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL),
        Err(Errno::ENODEV)
    );
    let mut get = iommu_vfio_ioas {
        size: 12,
        ioas_id: 0,
        op: IOMMU_VFIO_IOAS_GET,
        reserved: 0,
    };
    assert_eq!(call(&mut r, Op::VfioIoas, &mut get), Err(Errno::ENODEV));
}

#[test]
fn extensions() {
    let mut r = rig();
    open_container(&mut r);
    for (ext, want) in [
        (VFIO_TYPE1_IOMMU, 1),
        (VFIO_TYPE1v2_IOMMU, 1),
        (VFIO_UNMAP_ALL, 1),
        (VFIO_DMA_CC_IOMMU, 1),
        (VFIO_TYPE1_NESTING_IOMMU, 0),
        (VFIO_UPDATE_VADDR, 0),
        (12345, 0),
    ] {
        assert_eq!(
            scalar(&mut r, Op::VfioCheckExtension, ext),
            Ok(want),
            "extension {ext}"
        );
    }
    assert_eq!(scalar(&mut r, Op::VfioSetIommu, 7), Err(Errno::EINVAL));
}

#[test]
fn the_compat_path_makes_and_reports_the_compat_ioas() {
    let mut r = rig();
    let hwpt = open_container(&mut r);
    let mut get = iommu_vfio_ioas {
        size: 12,
        ioas_id: 0,
        op: IOMMU_VFIO_IOAS_GET,
        reserved: 0,
    };
    call(&mut r, Op::VfioIoas, &mut get).unwrap();
    assert_ne!(get.ioas_id, hwpt);
    assert_eq!(map_dma(&mut r, 0x10_0000, 0x20_0000, 2 * K4), Ok(0));
    assert_eq!(
        r.server.translate(common::id(0), get.ioas_id, 0x20_1000),
        Some(0x8000_1000)
    );
    assert_eq!(
        r.server.hardware().dma(StreamId(0x8), 0x20_1000),
        Some(0x8000_1000),
        "the device sees it"
    );
    let mut clear = iommu_vfio_ioas {
        op: IOMMU_VFIO_IOAS_CLEAR,
        ..get
    };
    call(&mut r, Op::VfioIoas, &mut clear).unwrap();
    assert_eq!(
        map_dma(&mut r, 0x10_0000, 0x30_0000, K4),
        Err(Errno::ENODEV)
    );
    let mut set = iommu_vfio_ioas {
        op: IOMMU_VFIO_IOAS_SET,
        ..get
    };
    call(&mut r, Op::VfioIoas, &mut set).unwrap();
    assert_eq!(map_dma(&mut r, 0x10_0000, 0x30_0000, K4), Ok(0));
    let mut bad = iommu_vfio_ioas { op: 9, ..get };
    assert_eq!(call(&mut r, Op::VfioIoas, &mut bad), Err(Errno::EOPNOTSUPP));
}

#[test]
fn type1_unmaps_may_cut_type1v2_may_not() {
    let mut r = rig();
    open_container(&mut r);
    scalar(&mut r, Op::VfioSetIommu, VFIO_TYPE1v2_IOMMU).unwrap();
    map_dma(&mut r, 0x10_0000, 0x40_0000, 4 * K4).unwrap();
    assert_eq!(
        unmap_dma(&mut r, 0x40_1000, K4, 0),
        Err(Errno::ENOENT),
        "v2 never splits"
    );

    let mut r = rig();
    open_container(&mut r);
    scalar(&mut r, Op::VfioSetIommu, VFIO_TYPE1_IOMMU).unwrap();
    map_dma(&mut r, 0x10_0000, 0x40_0000, 4 * K4).unwrap();
    assert_eq!(unmap_dma(&mut r, 0x40_1000, K4, 0), Ok(K4), "type1 cuts");
    assert_eq!(r.server.hardware().dma(StreamId(0x8), 0x40_1000), None);
    assert_eq!(
        r.server.hardware().dma(StreamId(0x8), 0x40_2000),
        Some(0x8000_2000),
        "the rest stays"
    );
    assert_eq!(
        unmap_dma(&mut r, 0, 1, VFIO_DMA_UNMAP_FLAG_ALL),
        Err(Errno::EINVAL),
        "ALL needs iova = size = 0"
    );
    assert_eq!(unmap_dma(&mut r, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL), Ok(3 * K4));
    assert_eq!(
        unmap_dma(&mut r, 0, 0, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        scalar(&mut r, Op::VfioCheckExtension, VFIO_TYPE1_IOMMU),
        Ok(1)
    );
    // The dirty-pages ioctl does not exist here.
    let reply = r.server.handle(common::id(0), 117, [8, 0], &mut r.pages[0]);
    assert_eq!(reply.errno(), Some(Errno::ENOTTY));
}

#[test]
fn map_dma_rules() {
    let mut r = rig();
    open_container(&mut r);
    let mut m = vfio_iommu_type1_dma_map {
        argsz: 32,
        flags: 0,
        vaddr: 0x10_0000,
        iova: 0x1000,
        size: K4,
    };
    assert_eq!(
        call(&mut r, Op::VfioIommuMapDma, &mut m),
        Err(Errno::EINVAL),
        "no access"
    );
    m.flags = VFIO_DMA_MAP_FLAG_VADDR;
    assert_eq!(
        call(&mut r, Op::VfioIommuMapDma, &mut m),
        Err(Errno::EINVAL),
        "unsupported flag"
    );
    assert_eq!(
        map_dma(&mut r, 0x30_0000, 0x1000, K4),
        Err(Errno::EFAULT),
        "not the client's memory"
    );
    assert_eq!(map_dma(&mut r, 0x10_0000, 0x1000, K4), Ok(0));
    assert_eq!(map_dma(&mut r, 0x10_0000, 0x1000, K4), Err(Errno::EEXIST));
}

#[test]
fn get_info_follows_the_argsz_protocol() {
    let mut r = rig();
    open_container(&mut r);
    // Too small for any capability: none written, argsz says what is needed.
    let mut info = vfio_iommu_type1_info {
        argsz: 24,
        flags: 0,
        iova_pgsizes: 0,
        cap_offset: 7,
        pad: 0,
    };
    r.pages[0][24..128].fill(0xee);
    call(&mut r, Op::VfioIommuGetInfo, &mut info).unwrap();
    let needed = info.argsz;
    assert_eq!(
        needed,
        24 + 16 + 16 + 16,
        "DMA_AVAIL (16) then IOVA_RANGE with one range (16 + 16)"
    );
    assert_eq!(info.cap_offset, 0);
    assert_eq!(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
    assert_eq!(
        info.iova_pgsizes & 0xfff,
        0,
        "nothing below the IOAS alignment"
    );
    assert_ne!(info.iova_pgsizes & 0x1000, 0, "4 KiB pages");
    assert!(
        r.pages[0][24..128].iter().all(|&b| b == 0xee),
        "no capability written"
    );
    // Large enough: the whole chain.
    let mut big = vfio_iommu_type1_info {
        argsz: needed,
        ..info
    };
    let mut bytes = vec![0u8; needed as usize];
    bytes[..24].copy_from_slice(big.as_bytes());
    r.pages[0][..needed as usize].copy_from_slice(&bytes);
    let reply = r.server.handle(
        common::id(0),
        Op::VfioIommuGetInfo.label(),
        [u64::from(needed), 0],
        &mut r.pages[0],
    );
    assert_eq!(reply.errno(), None);
    big = vfio_iommu_type1_info::read_from_prefix(&r.pages[0])
        .unwrap()
        .0;
    assert_eq!(big.cap_offset, 24);
    let dma = vfio_iommu_type1_info_dma_avail::read_from_prefix(&r.pages[0][24..])
        .unwrap()
        .0;
    assert_eq!(
        (dma.header.id, dma.header.version, dma.header.next),
        (VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, 40)
    );
    assert!(dma.avail > 0);
    let iova = vfio_iommu_type1_info_cap_iova_range::read_from_prefix(&r.pages[0][40..])
        .unwrap()
        .0;
    assert_eq!(
        (iova.header.id, iova.header.next, iova.nr_iovas),
        (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 0, 1)
    );
    let range = vfio_iova_range::read_from_prefix(&r.pages[0][56..])
        .unwrap()
        .0;
    assert_eq!(
        (range.start, range.end),
        (0, (1 << 48) - 1),
        "the domain's aperture"
    );
}

#[test]
fn a_refused_type1_unmap_cuts_nothing() {
    let mut r = rig();
    open_container(&mut r);
    scalar(&mut r, Op::VfioSetIommu, VFIO_TYPE1_IOMMU).unwrap();
    map_dma(&mut r, 0x10_0000, 0x40_0000, 4 * K4).unwrap();
    let free = r.server.store().areas_free();
    assert_eq!(
        unmap_dma(&mut r, 0x40_1000, 0, 0),
        Err(Errno::EINVAL),
        "size 0"
    );
    assert_eq!(
        unmap_dma(&mut r, 0x40_1000, u64::MAX, 0),
        Err(Errno::EOVERFLOW),
        "wraps"
    );
    assert_eq!(r.server.store().areas_free(), free, "no area was split");
}

#[test]
fn dma_avail_is_the_callers_own_quota() {
    let mut r = rig();
    open_container(&mut r);
    map_dma(&mut r, 0x10_0000, 0x40_0000, 4 * K4).unwrap();
    let mut info = vfio_iommu_type1_info {
        argsz: 72,
        flags: 0,
        iova_pgsizes: 0,
        cap_offset: 0,
        pad: 0,
    };
    let mut bytes = vec![0u8; 72];
    bytes[..24].copy_from_slice(info.as_bytes());
    r.pages[0][..72].copy_from_slice(&bytes);
    let reply = r.server.handle(
        common::id(0),
        Op::VfioIommuGetInfo.label(),
        [72, 0],
        &mut r.pages[0],
    );
    assert_eq!(reply.errno(), None);
    info = vfio_iommu_type1_info::read_from_prefix(&r.pages[0])
        .unwrap()
        .0;
    assert_eq!(info.cap_offset, 24);
    let dma = vfio_iommu_type1_info_dma_avail::read_from_prefix(&r.pages[0][24..])
        .unwrap()
        .0;
    assert_eq!(
        dma.avail,
        100 - 1,
        "mapping quota minus this client's mappings"
    );
}

/// Only IOMMU_IOAS_UNMAP takes (0, U64_MAX) as "everything": without
/// VFIO_DMA_UNMAP_FLAG_ALL it is the range [0, U64_MAX - 1] like any
/// other, so an empty one is ENOENT, as iopt_unmap_iova answers in Linux.
#[test]
fn unmap_dma_of_zero_and_max_is_a_range() {
    let mut r = rig();
    open_container(&mut r);
    map_dma(&mut r, 0x10_0000, 0x20_0000, 0x2000).unwrap();
    map_dma(&mut r, 0x10_2000, 0x40_0000, 0x1000).unwrap();
    assert_eq!(unmap_dma(&mut r, 0, u64::MAX, 0), Ok(0x3000));
    assert_eq!(unmap_dma(&mut r, 0, u64::MAX, 0), Err(Errno::ENOENT));
    assert_eq!(
        unmap_dma(&mut r, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL),
        Ok(0),
        "ALL on nothing unmaps nothing"
    );
}

/// VFIO_DMA_CC_IOMMU asks whether every HWPT over the compat IOAS enforces
/// cache coherency, as Linux's iommufd_vfio_cc_iommu: 1 with none, then
/// what the hardware says of each domain.
#[test]
fn cache_coherency_is_each_hwpts() {
    for coherent in [true, false] {
        let vfio = client("vfio")
            .regions(&REGIONS)
            .devices(&DEVICES)
            .objects(8);
        let hw = MockHw {
            coherent,
            ..MockHw::new()
        };
        let mut r = Rig::new(hw, &[vfio.build()]);
        let ioas = r.alloc(0).unwrap();
        let mut set = iommu_vfio_ioas {
            size: 12,
            ioas_id: ioas,
            op: IOMMU_VFIO_IOAS_SET,
            reserved: 0,
        };
        call(&mut r, Op::VfioIoas, &mut set).unwrap();
        assert_eq!(
            scalar(&mut r, Op::VfioCheckExtension, VFIO_DMA_CC_IOMMU),
            Ok(1),
            "no HWPT yet"
        );
        open_container(&mut r);
        assert_eq!(
            scalar(&mut r, Op::VfioCheckExtension, VFIO_DMA_CC_IOMMU),
            Ok(u64::from(coherent))
        );
    }
}

/// GET_INFO's page sizes are Linux's iommufd_get_pagesizes: the sizes every
/// domain has, those below a CPU page replaced by the CPU page, never below
/// the IOAS alignment; with no domain every size from a page up.
#[test]
fn get_info_page_sizes_follow_linuxs_rule() {
    const HALF: u64 = 0x800;
    const M2: u64 = 0x20_0000;
    let vfio = client("vfio")
        .regions(&REGIONS)
        .devices(&DEVICES)
        .objects(8);
    let hw = MockHw::with_domains(MockDomain::new(HALF | M2));
    let mut r = Rig::new(hw, &[vfio.build()]);
    let ioas = r.alloc(0).unwrap();
    let mut set = iommu_vfio_ioas {
        size: 12,
        ioas_id: ioas,
        op: IOMMU_VFIO_IOAS_SET,
        reserved: 0,
    };
    call(&mut r, Op::VfioIoas, &mut set).unwrap();
    let mut info = vfio_iommu_type1_info {
        argsz: 16,
        flags: 0,
        iova_pgsizes: 0,
        cap_offset: 0,
        pad: 0,
    };
    let mut page_sizes = |r: &mut Rig| {
        info.argsz = 16;
        r.call_with(0, Op::VfioIommuGetInfo, &mut info, 16, 0)
            .unwrap();
        info.iova_pgsizes
    };
    assert_eq!(page_sizes(&mut r), !0xfff, "no domain");
    open_container(&mut r);
    assert_eq!(page_sizes(&mut r), K4 | M2, "half a page counts as a page");
}

/// VFIO type1 on byte-granular areas: with no domain on the compat IOAS a
/// MAP_DMA of any length at any IOVA works and unmaps exactly; TYPE1v2's
/// unmap may not split it, TYPE1 (huge pages off) makes the alignment a
/// CPU page, so the same map is then EINVAL.
#[test]
fn vfio_maps_are_byte_granular_until_type1_asks_for_pages() {
    let mut r = rig();
    let ioas = r.alloc(0).unwrap();
    let mut set = iommu_vfio_ioas {
        size: 12,
        ioas_id: ioas,
        op: IOMMU_VFIO_IOAS_SET,
        reserved: 0,
    };
    call(&mut r, Op::VfioIoas, &mut set).unwrap();
    scalar(&mut r, Op::VfioSetIommu, VFIO_TYPE1v2_IOMMU).unwrap();
    map_dma(&mut r, 0x10_0123, 0x5123, 0x45).unwrap();
    assert_eq!(
        r.server.translate(common::id(0), ioas, 0x5123),
        Some(0x8000_0123)
    );
    assert_eq!(unmap_dma(&mut r, 0x5123, 0x20, 0), Err(Errno::ENOENT));
    assert_eq!(unmap_dma(&mut r, 0x5123, 0x45, 0), Ok(0x45));
    scalar(&mut r, Op::VfioSetIommu, VFIO_TYPE1_IOMMU).unwrap();
    assert_eq!(map_dma(&mut r, 0x10_0123, 0x5123, 0x45), Err(Errno::EINVAL));
    map_dma(&mut r, 0x10_0000, 0x5000, K4).unwrap();
}
