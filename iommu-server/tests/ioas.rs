//! Several simulated clients drive the server through the byte-level path
//! a PD uses: request struct in the command page, label, MR0 = size.

mod common;

use common::MockHw;
use iommu_proto::iommufd::*;
use iommu_proto::{Errno, Op};
use iommu_types::config::{ClientConfig, Perms, Quota, Region};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use common::PAGE_VA;
const K4: u64 = 0x1000;

static REGIONS_A: [Region; 2] = [
    Region {
        vaddr: 0x10_0000,
        size: 0x20_0000,
        paddr: 0x8000_0000,
        perms: Perms::RW,
    },
    Region {
        vaddr: 0x40_0000,
        size: 0x1000,
        paddr: 0x8100_0000,
        perms: Perms::RO,
    },
];
static REGIONS_B: [Region; 1] = [Region {
    vaddr: 0x10_0000,
    size: 0x10_0000,
    paddr: 0x9000_0000,
    perms: Perms::RW,
}];

const QUOTA: Quota = Quota {
    objects: 4,
    ioases: 4,
    mapped_pages: 1024,
    table_pages: 64,
    hwpts: 8,
    mappings: 100,
};

struct Sys {
    rig: common::Rig,
}

impl Sys {
    fn new() -> Sys {
        let client = |name, regions| ClientConfig {
            name,
            command_page_vaddr: PAGE_VA,
            regions,
            devices: &[],
            quota: QUOTA,
            manager: false,
        };
        Sys {
            rig: common::Rig::new(
                MockHw::new(),
                &[client("a", &REGIONS_A), client("b", &REGIONS_B)],
            ),
        }
    }

    fn call_sized<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        client: usize,
        op: Op,
        req: &mut T,
        size: u64,
    ) -> Result<u64, Errno> {
        self.rig.call_with(client, op, req, size, 0)
    }

    fn call<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        client: usize,
        op: Op,
        req: &mut T,
    ) -> Result<u64, Errno> {
        self.call_sized(client, op, req, std::mem::size_of::<T>() as u64)
    }

    fn alloc(&mut self, client: usize) -> Result<u32, Errno> {
        let mut cmd = iommu_ioas_alloc {
            size: 12,
            flags: 0,
            out_ioas_id: 0,
        };
        self.call(client, Op::IoasAlloc, &mut cmd)?;
        Ok(cmd.out_ioas_id)
    }

    fn map(
        &mut self,
        client: usize,
        ioas: u32,
        va: u64,
        len: u64,
        flags: u32,
        iova: u64,
    ) -> Result<u64, Errno> {
        let mut cmd = iommu_ioas_map {
            size: 40,
            flags,
            ioas_id: ioas,
            reserved: 0,
            user_va: va,
            length: len,
            iova,
        };
        self.call(client, Op::IoasMap, &mut cmd)?;
        Ok(cmd.iova)
    }

    fn unmap(&mut self, client: usize, ioas: u32, iova: u64, len: u64) -> Result<u64, Errno> {
        let mut cmd = iommu_ioas_unmap {
            size: 24,
            ioas_id: ioas,
            iova,
            length: len,
        };
        self.call(client, Op::IoasUnmap, &mut cmd)?;
        Ok(cmd.length)
    }

    fn destroy(&mut self, client: usize, id: u32) -> Result<u64, Errno> {
        self.call(client, Op::Destroy, &mut iommu_destroy { size: 8, id })
    }
}

const RW: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
const FIXED: u32 = IOMMU_IOAS_MAP_FIXED_IOVA;

#[test]
fn map_and_unmap_through_the_command_page() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    let iova = s.map(0, ioas, 0x10_0000, 4 * K4, RW, 0).unwrap();
    assert_eq!(
        iova,
        4 * K4,
        "automatic IOVA (aligned to the length) written back"
    );
    assert_eq!(
        s.rig.server.translate(common::id(0), ioas, iova + 0x1234),
        Some(0x8000_1234)
    );
    assert_eq!(
        s.map(0, ioas, 0x10_4000, K4, RW | FIXED, 0x100_0000),
        Ok(0x100_0000)
    );
    assert_eq!(
        s.rig.server.translate(common::id(0), ioas, 0x100_0010),
        Some(0x8000_4010)
    );
    assert_eq!(
        s.unmap(0, ioas, iova, 4 * K4),
        Ok(4 * K4),
        "bytes unmapped written back"
    );
    assert_eq!(
        s.unmap(0, ioas, 0, u64::MAX),
        Ok(K4),
        "(0, max) unmaps everything"
    );
    assert_eq!(s.rig.server.store().account(common::id(0)).unwrap().used, 0);
}

/// IOMMU_IOAS_UNMAP in Linux's order: the IOAS first (ENOENT), then the
/// everything form (0, U64_MAX), then EOVERFLOW for an iova or a length at
/// U64_MAX, which must never reach the engine as a range.
#[test]
fn unmap_check_order_is_linuxs() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    s.map(0, ioas, 0x10_0000, K4, IOMMU_IOAS_MAP_READABLE, 0)
        .unwrap();
    assert_eq!(s.unmap(0, ioas + 0x100, u64::MAX, K4), Err(Errno::ENOENT));
    assert_eq!(s.unmap(0, ioas, u64::MAX, K4), Err(Errno::EOVERFLOW));
    assert_eq!(s.unmap(0, ioas, K4, u64::MAX), Err(Errno::EOVERFLOW));
    // [1, U64_MAX] does not wrap, and would cover the area: still refused.
    assert_eq!(s.unmap(0, ioas, 1, u64::MAX), Err(Errno::EOVERFLOW));
    assert_eq!(s.unmap(0, ioas, u64::MAX, u64::MAX), Err(Errno::EOVERFLOW));
    assert_eq!(
        s.rig.server.store().account(common::id(0)).unwrap().used,
        1,
        "nothing unmapped by a refused request"
    );
    assert_eq!(s.unmap(0, ioas, 0, u64::MAX), Ok(K4));
    assert_eq!(
        s.unmap(0, ioas, 0, u64::MAX),
        Ok(0),
        "everything of nothing"
    );
}

/// MAP judges the length and the IOVA before it looks at the caller's
/// memory, as Linux's iopt_alloc_pages and iopt_alloc_area_pages do before
/// pinning: a length within a page of 2^64 is EINVAL, a wrapping end
/// EOVERFLOW, an IOVA in use EEXIST, and only then is memory no region
/// holds EFAULT.
#[test]
fn map_judges_the_length_before_the_memory() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    let rw = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
    assert_eq!(
        s.map(0, ioas, 0, u64::MAX - 0xfff, rw, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        s.map(0, ioas, 0x10_0000, 1 << 60, rw, 0),
        Err(Errno::EFAULT),
        "a length pages can count: the memory decides"
    );
    let iova = s.map(0, ioas, 0x10_0000, K4, rw, 0).unwrap();
    assert_eq!(
        s.map(0, ioas, 0x30_0000, K4, rw | IOMMU_IOAS_MAP_FIXED_IOVA, iova),
        Err(Errno::EEXIST),
        "the IOVA before the memory"
    );
    assert_eq!(s.map(0, ioas, 0x10_0000, 0, rw, 0), Err(Errno::EINVAL));
    assert_eq!(
        s.map(0, ioas, u64::MAX - 0xfff, 0x2000, rw, 0),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        s.map(0, ioas + 0x100, 0x10_0000, 1 << 60, rw, 0),
        Err(Errno::ENOENT),
        "the IOAS comes first"
    );
}

#[test]
fn memory_is_checked_against_the_callers_regions() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    assert_eq!(
        s.map(0, ioas, 0x30_0000, K4, RW, 0),
        Err(Errno::EFAULT),
        "not a region of A"
    );
    assert_eq!(
        s.map(0, ioas, 0x2f_f000, 2 * K4, RW, 0),
        Err(Errno::EFAULT),
        "runs off the end"
    );
    assert_eq!(
        s.map(0, ioas, 0x40_0000, K4, RW, 0),
        Err(Errno::EFAULT),
        "DMA write into read-only memory: pinning it for write fails"
    );
    let ro = s
        .map(0, ioas, 0x40_0000, K4, IOMMU_IOAS_MAP_READABLE, 0)
        .unwrap();
    assert_eq!(
        s.rig.server.translate(common::id(0), ioas, ro),
        Some(0x8100_0000)
    );
    // B's region at the same virtual address is B's memory, not A's.
    let b = s.alloc(1).unwrap();
    let iova = s.map(1, b, 0x10_0000, K4, RW, 0).unwrap();
    assert_eq!(
        s.rig.server.translate(common::id(1), b, iova),
        Some(0x9000_0000)
    );
    assert_eq!(
        s.map(1, b, 0x40_0000, K4, IOMMU_IOAS_MAP_READABLE, 0),
        Err(Errno::EFAULT)
    );
}

#[test]
fn ids_are_per_client_capabilities() {
    let mut s = Sys::new();
    let a = s.alloc(0).unwrap();
    assert_eq!(
        s.map(1, a, 0x10_0000, K4, RW, 0),
        Err(Errno::ENOENT),
        "A's ID means nothing to B"
    );
    assert_eq!(s.destroy(1, a), Err(Errno::ENOENT));
    s.map(0, a, 0x10_0000, K4, RW, 0).unwrap();
    s.destroy(0, a).unwrap();
    assert_eq!(
        s.map(0, a, 0x10_0000, K4, RW, 0),
        Err(Errno::ENOENT),
        "stale after destroy"
    );
    let again = s.alloc(0).unwrap();
    assert_ne!(again, a, "a destroyed ID is never reissued");
    assert_eq!(s.destroy(0, a), Err(Errno::ENOENT));
    assert_eq!(
        s.rig.server.store().areas_free(),
        256,
        "destroy returned the areas"
    );
}

#[test]
fn extensible_struct_rules() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    let mut cmd = iommu_ioas_map {
        size: 40,
        flags: RW,
        ioas_id: ioas,
        reserved: 0,
        user_va: 0x10_0000,
        length: K4,
        iova: 0,
    };
    assert_eq!(
        s.call_sized(0, Op::IoasMap, &mut cmd.clone(), 16),
        Err(Errno::EINVAL),
        "shorter than the minimum"
    );
    assert_eq!(
        s.call_sized(0, Op::IoasMap, &mut cmd.clone(), 48),
        Err(Errno::EINVAL),
        "MR0 disagrees with size"
    );
    assert_eq!(
        s.call(
            0,
            Op::IoasMap,
            &mut iommu_ioas_map {
                flags: RW | 0x80,
                ..cmd
            }
        ),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        s.call(0, Op::IoasMap, &mut iommu_ioas_map { reserved: 1, ..cmd }),
        Err(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        s.call(
            0,
            Op::IoasMap,
            &mut iommu_ioas_map {
                flags: FIXED,
                ..cmd
            }
        ),
        Err(Errno::EINVAL),
        "no access"
    );
    // A newer client's longer struct: zero tail accepted, non-zero E2BIG.
    s.rig.pages[0][40..48].fill(0);
    cmd.size = 48;
    assert!(s.call_sized(0, Op::IoasMap, &mut cmd.clone(), 48).is_ok());
    s.rig.pages[0][40..48].fill(0xff);
    let bytes = cmd.as_bytes().to_vec();
    s.rig.pages[0][..40].copy_from_slice(&bytes);
    let reply = s.rig.server.handle(
        common::id(0),
        Op::IoasMap.label(),
        [48, 0],
        &mut s.rig.pages[0],
    );
    assert_eq!(reply.errno(), Some(Errno::E2BIG));
    assert_eq!(
        s.call_sized(0, Op::IoasMap, &mut cmd.clone(), 8192),
        Err(Errno::EFAULT),
        "larger than the page"
    );
    let reply = s
        .rig
        .server
        .handle(common::id(0), 0x7777, [8, 0], &mut s.rig.pages[0]);
    assert_eq!(reply.errno(), Some(Errno::ENOTTY));
    let reply = s.rig.server.handle(
        common::id(5),
        Op::IoasAlloc.label(),
        [12, 0],
        &mut s.rig.pages[0],
    );
    assert_eq!(
        reply.errno(),
        Some(Errno::EPERM),
        "no client on that channel"
    );
}

#[test]
fn iova_ranges_two_call_protocol_and_array_bounds() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    let mut cmd = iommu_ioas_iova_ranges {
        size: 32,
        ioas_id: ioas,
        num_iovas: 0,
        reserved: 0,
        allowed_iovas: 0,
        out_iova_alignment: 0,
    };
    assert_eq!(
        s.call(0, Op::IoasIovaRanges, &mut cmd),
        Err(Errno::EMSGSIZE)
    );
    assert_eq!(
        (cmd.num_iovas, cmd.out_iova_alignment),
        (1, 1),
        "needed count reported; no domain: byte granular"
    );
    cmd.allowed_iovas = PAGE_VA + 1024;
    s.call(0, Op::IoasIovaRanges, &mut cmd).unwrap();
    let range = iommu_iova_range::read_from_prefix(&s.rig.pages[0][1024..])
        .unwrap()
        .0;
    assert_eq!((range.start, range.last), (0, u64::MAX));
    cmd.allowed_iovas = PAGE_VA + 4090;
    assert_eq!(
        s.call(0, Op::IoasIovaRanges, &mut cmd),
        Err(Errno::EFAULT),
        "array leaves the page"
    );
    cmd.allowed_iovas = 0x10_0000;
    assert_eq!(
        s.call(0, Op::IoasIovaRanges, &mut cmd),
        Err(Errno::EFAULT),
        "array not in the page"
    );
}

#[test]
fn allow_iovas_steers_automatic_allocation() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    let ranges = [iommu_iova_range {
        start: 0x4000_0000,
        last: 0x4fff_ffff,
    }];
    s.rig.pages[0][2048..2064].copy_from_slice(ranges.as_bytes());
    let mut cmd = iommu_ioas_allow_iovas {
        size: 24,
        ioas_id: ioas,
        num_iovas: 1,
        reserved: 0,
        allowed_iovas: PAGE_VA + 2048,
    };
    s.call(0, Op::IoasAllowIovas, &mut cmd).unwrap();
    assert_eq!(s.map(0, ioas, 0x10_0000, K4, RW, 0), Ok(0x4000_0000));
    let bad = [iommu_iova_range { start: 5, last: 5 }];
    s.rig.pages[0][2048..2064].copy_from_slice(bad.as_bytes());
    assert_eq!(s.call(0, Op::IoasAllowIovas, &mut cmd), Err(Errno::EINVAL));
}

#[test]
fn copy_between_a_clients_ioases() {
    let mut s = Sys::new();
    let (a, b) = (s.alloc(0).unwrap(), s.alloc(0).unwrap());
    let src = s.map(0, a, 0x10_0000, 2 * K4, RW, 0).unwrap();
    let mut cmd = iommu_ioas_copy {
        size: 40,
        flags: RW,
        dst_ioas_id: b,
        src_ioas_id: a,
        length: 2 * K4,
        dst_iova: 0,
        src_iova: src,
    };
    s.call(0, Op::IoasCopy, &mut cmd).unwrap();
    assert_eq!(
        s.rig.server.translate(common::id(0), b, cmd.dst_iova + K4),
        Some(0x8000_1000)
    );
    // B's third IOAS has an ID A's table never issued.
    let other = (0..3).map(|_| s.alloc(1).unwrap()).last().unwrap();
    cmd.dst_ioas_id = other;
    assert_eq!(
        s.call(0, Op::IoasCopy, &mut cmd),
        Err(Errno::ENOENT),
        "B's IOAS is not A's to copy into"
    );
    cmd.dst_ioas_id = a;
    cmd.src_ioas_id = a;
    s.call(0, Op::IoasCopy, &mut cmd).unwrap();
}

#[test]
fn options() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    let mut cmd = iommu_option {
        size: 24,
        option_id: IOMMU_OPTION_HUGE_PAGES,
        op: IOMMU_OPTION_OP_GET,
        reserved: 0,
        object_id: ioas,
        val64: 9,
    };
    s.call(0, Op::Option, &mut cmd).unwrap();
    assert_eq!(cmd.val64, 1);
    cmd.op = IOMMU_OPTION_OP_SET;
    cmd.val64 = 0;
    s.call(0, Op::Option, &mut cmd).unwrap();
    cmd.op = IOMMU_OPTION_OP_GET;
    s.call(0, Op::Option, &mut cmd).unwrap();
    assert_eq!(cmd.val64, 0);
    cmd.op = IOMMU_OPTION_OP_SET;
    cmd.val64 = 2;
    assert_eq!(s.call(0, Op::Option, &mut cmd), Err(Errno::EINVAL));
    let mut rlimit = iommu_option {
        option_id: IOMMU_OPTION_RLIMIT_MODE,
        object_id: 0,
        val64: 1,
        ..cmd
    };
    assert_eq!(
        s.call(0, Op::Option, &mut rlimit),
        Err(Errno::EPERM),
        "the quota is the configuration's"
    );
    assert_eq!(
        s.call(
            0,
            Op::Option,
            &mut iommu_option {
                option_id: 7,
                ..cmd
            }
        ),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn quotas_are_enomem_and_change_nothing() {
    let mut s = Sys::new();
    let ids: Vec<u32> = (0..4).map(|_| s.alloc(0).unwrap()).collect();
    assert_eq!(s.alloc(0), Err(Errno::ENOMEM), "object quota");
    assert_eq!(s.rig.server.object_count(common::id(0)), 4);
    assert!(s.alloc(1).is_ok(), "B has its own quota");
    // 1024 pages in all: two 2 MiB maps use them up.
    assert_eq!(s.map(0, ids[0], 0x10_0000, 0x20_0000, RW, 0), Ok(0x10_0000));
    assert_eq!(s.map(0, ids[1], 0x10_0000, 0x20_0000, RW, 0), Ok(0x10_0000));
    assert_eq!(
        s.map(0, ids[2], 0x10_0000, K4, RW, 0),
        Err(Errno::ENOMEM),
        "mapped-page quota"
    );
    assert_eq!(
        s.rig.server.store().account(common::id(0)).unwrap().used,
        1024
    );
}

#[test]
fn regions_stay_counted_while_mapped() {
    let mut s = Sys::new();
    let (a, b) = (s.alloc(0).unwrap(), s.alloc(0).unwrap());
    assert_eq!(s.rig.server.region_users(common::id(0), 0), 0);
    let iova = s.map(0, a, 0x10_0000, 2 * K4, RW, 0).unwrap();
    s.map(0, a, 0x40_0000, K4, IOMMU_IOAS_MAP_READABLE, 0)
        .unwrap();
    assert_eq!(
        (
            s.rig.server.region_users(common::id(0), 0),
            s.rig.server.region_users(common::id(0), 1)
        ),
        (1, 1)
    );
    let mut copy = iommu_ioas_copy {
        size: 40,
        flags: RW,
        dst_ioas_id: b,
        src_ioas_id: a,
        length: 2 * K4,
        dst_iova: 0,
        src_iova: iova,
    };
    s.call(0, Op::IoasCopy, &mut copy).unwrap();
    assert_eq!(
        s.rig.server.region_users(common::id(0), 0),
        2,
        "the copy uses the region too"
    );
    s.unmap(0, a, iova, 2 * K4).unwrap();
    assert_eq!(s.rig.server.region_users(common::id(0), 0), 1);
    s.destroy(0, b).unwrap();
    assert_eq!(s.rig.server.region_users(common::id(0), 0), 0);
    assert_eq!(
        s.rig.server.region_users(common::id(1), 0),
        0,
        "B's region is B's"
    );
}

#[test]
fn iova_ranges_needs_room_only_for_what_it_writes() {
    let mut s = Sys::new();
    let ioas = s.alloc(0).unwrap();
    // Room for 255 entries claimed, one written: only that one must fit.
    let mut cmd = iommu_ioas_iova_ranges {
        size: 32,
        ioas_id: ioas,
        num_iovas: 255,
        reserved: 0,
        allowed_iovas: PAGE_VA + 4080,
        out_iova_alignment: 0,
    };
    s.call(0, Op::IoasIovaRanges, &mut cmd).unwrap();
    assert_eq!(cmd.num_iovas, 1);
}

/// A copy of areas that are each shorter than a page into an IOAS with a
/// domain (alignment 4 KiB): the start and the total are page multiples,
/// but each segment would become an area the domain cannot map (Linux:
/// iommu_map refuses it, EINVAL). Checked before anything changes; debug
/// builds used to panic in the domain's page-size choice.
#[test]
fn copy_of_segments_shorter_than_the_alignment_is_einval() {
    static DEVICES: [iommu_types::config::DeviceConfig; 1] = [common::device("d", 0x8)];
    let config = common::client("a")
        .regions(&REGIONS_A)
        .devices(&DEVICES)
        .quota(QUOTA)
        .build();
    let mut r = common::Rig::new(MockHw::new(), &[config]);
    // Without a domain areas are byte granular: two half pages, adjacent
    // in IOVA, each from the start of its own CPU page.
    let src = r.alloc(0).unwrap();
    r.map(0, src, 0x10_0000, 0x800, Some(0x1000)).unwrap();
    r.map(0, src, 0x10_2000, 0x800, Some(0x1800)).unwrap();
    let dst = r.alloc(0).unwrap();
    let dev = r.bind(0, 0).unwrap();
    r.attach(0, dev, dst).unwrap();
    let used = r.server.store().account(common::id(0)).unwrap();
    for flags in [IOMMU_IOAS_MAP_READABLE | FIXED, IOMMU_IOAS_MAP_READABLE] {
        let mut copy = iommu_ioas_copy {
            size: 40,
            flags,
            dst_ioas_id: dst,
            src_ioas_id: src,
            length: 2 * 0x800,
            dst_iova: 0x10_0000,
            src_iova: 0x1000,
        };
        assert_eq!(r.call(0, Op::IoasCopy, &mut copy, 0), Err(Errno::EINVAL));
        assert_eq!(copy.dst_iova, 0x10_0000, "nothing written back");
    }
    assert_eq!(r.server.store().account(common::id(0)).unwrap(), used);
    assert_eq!(r.server.translate(common::id(0), dst, 0x10_0000), None);
    assert_eq!(
        r.server
            .hardware()
            .dma(iommu_types::StreamId(0x8), 0x10_0000),
        None
    );
    r.check().unwrap();
    // A whole page's worth of one area copies.
    r.map(0, src, 0x10_4000, 0x1000, Some(0x4000)).unwrap();
    let mut copy = iommu_ioas_copy {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE | FIXED,
        dst_ioas_id: dst,
        src_ioas_id: src,
        length: 0x1000,
        dst_iova: 0x10_0000,
        src_iova: 0x4000,
    };
    r.call(0, Op::IoasCopy, &mut copy, 0).unwrap();
    assert_eq!(
        r.server
            .hardware()
            .dma(iommu_types::StreamId(0x8), 0x10_0010),
        Some(0x8000_4010)
    );
}
