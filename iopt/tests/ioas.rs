//! Behaviour of one IOAS: every success path and every errno, after Linux's
//! io_pagetable.c and the IOAS cases of tools/testing/selftests/iommu/iommufd.c.

mod common;

use common::*;
use iommu_testkit::Lent;
use iopt::{
    ClientId, DomainId, DstIova, Errno, Extent, IoDomain, Ioas, IovaRange, Prot, ReservedOwner,
    Store, StreamId, MAX_ALLOWED, MAX_EXTENTS, PAGE_SIZE,
};

const RW: Prot = Prot::READ.union(Prot::WRITE);
/// Physical memory the tests map; 1 GiB aligned so blocks are possible.
const PHYS: u64 = 0x80_0000_0000;

/// Areas, quota used, each domain's layout, free nodes, free backings.
type Snapshot = (Vec<(u64, u64)>, u64, Vec<Vec<(u64, u64)>>, usize, usize);

struct Fx {
    store: Lent<Store<'static>>,
    doms: Domains,
    ioas: Ioas,
}

impl Fx {
    fn new() -> Fx {
        Fx::with_store(store(256, 256, 2))
    }

    fn with_store(store: Lent<Store<'static>>) -> Fx {
        let ioas = store.new_ioas(ClientId(0)).unwrap();
        Fx {
            store,
            doms: Domains::none(),
            ioas,
        }
    }

    fn map_at(&mut self, phys: u64, len: u64, dst: DstIova) -> Result<u64, Errno> {
        self.map_full(&[Extent { phys, len }], phys, true, dst, RW)
    }

    fn map_full(
        &mut self,
        ext: &[Extent],
        source: u64,
        writable: bool,
        dst: DstIova,
        prot: Prot,
    ) -> Result<u64, Errno> {
        self.ioas.map(
            &mut self.store,
            &mut self.doms,
            ext,
            source,
            writable,
            dst,
            prot,
        )
    }

    fn map_fixed(&mut self, iova: u64, len: u64) -> Result<u64, Errno> {
        self.map_at(PHYS + iova % G1, len, DstIova::Fixed(iova))
    }

    fn map_auto(&mut self, len: u64) -> Result<u64, Errno> {
        self.map_at(PHYS, len, DstIova::Auto)
    }

    fn unmap(&mut self, iova: u64, len: u64) -> Result<u64, Errno> {
        self.ioas.unmap(&mut self.store, &mut self.doms, iova, len)
    }

    fn attach(&mut self, id: u32) -> Result<(), Errno> {
        self.ioas
            .attach_domain(&mut self.store, &mut self.doms, DomainId(id))
    }

    fn detach(&mut self, id: u32) -> Result<(), Errno> {
        self.ioas
            .detach_domain(&mut self.store, &mut self.doms, DomainId(id))
    }

    fn areas(&self) -> Vec<(u64, u64)> {
        self.ioas
            .areas(&self.store)
            .map(|a| (a.iova, a.last))
            .collect()
    }

    fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out = [IovaRange::ALL; 16];
        let info = self.ioas.iova_ranges(&mut out);
        out[..info.total]
            .iter()
            .map(|r| (r.start, r.last))
            .collect()
    }

    fn used(&self) -> u64 {
        self.store.account(ClientId(0)).unwrap().used
    }

    /// Asserts a failed call left areas, quota and domains untouched.
    fn snapshot(&self) -> Snapshot {
        (
            self.areas(),
            self.used(),
            self.doms.0.iter().map(|d| d.layout()).collect(),
            self.store.areas_free(),
            self.store.pages_free(),
        )
    }
}

// ---- map: automatic IOVA ------------------------------------------------

#[test]
fn auto_map_never_returns_iova_zero() {
    let mut fx = Fx::new();
    assert_eq!(fx.map_auto(K4), Ok(K4));
    assert_eq!(fx.map_auto(K4), Ok(2 * K4));
}

#[test]
fn auto_alignment_is_length_rounded_up_to_power_of_two() {
    let mut fx = Fx::new();
    fx.map_auto(K4).unwrap();
    // 3 pages align to 16 KiB when the source is aligned at least as much.
    assert_eq!(fx.map_auto(3 * K4), Ok(0x4000));
    assert_eq!(fx.map_auto(K4), Ok(2 * K4));
    assert_eq!(
        fx.areas(),
        vec![(K4, 2 * K4 - 1), (2 * K4, 3 * K4 - 1), (0x4000, 0x6fff)]
    );
}

#[test]
fn auto_alignment_follows_lowest_set_bit_of_source() {
    let mut fx = Fx::new();
    // Source only 4 KiB aligned: no reason to align the IOVA more.
    let iova = fx.map_at(PHYS + K4, 8 * K4, DstIova::Auto).unwrap();
    assert_eq!(iova, K4);
    // Source 64 KiB aligned, length 1 MiB: 64 KiB alignment.
    let iova = fx.map_at(PHYS + K64, 0x10_0000, DstIova::Auto).unwrap();
    assert_eq!(iova, K64);
}

#[test]
fn auto_alignment_is_capped_at_the_largest_page() {
    let mut fx = Fx::new();
    fx.map_auto(K4).unwrap();
    // No domain: the 4 KiB-granule sizes cap the alignment at 1 GiB.
    assert_eq!(fx.map_auto(4 * G1), Ok(G1));
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(K4 | M2)]);
    fx.attach(0).unwrap();
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.map_auto(4 * G1), Ok(M2));
    // Huge pages off: 4 KiB pages only, so no wider alignment.
    let mut fx = Fx::new();
    fx.ioas.set_huge_pages(false).unwrap();
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.map_auto(M2), Ok(2 * K4));
}

#[test]
fn auto_alignment_is_at_least_the_ioas_alignment() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(K64 | M2)]);
    fx.attach(0).unwrap();
    assert_eq!(fx.ioas.alignment(), K64);
    // Source 64 KiB aligned but length is 64 KiB: first fit above IOVA 0.
    assert_eq!(fx.map_at(PHYS + K64, K64, DstIova::Auto), Ok(K64));
    assert_eq!(fx.map_at(PHYS + K64, K64, DstIova::Auto), Ok(2 * K64));
}

#[test]
fn auto_map_stays_inside_allowed_ranges() {
    let mut fx = Fx::new();
    fx.ioas
        .set_allowed(&[
            IovaRange::new(0x10_0000, 0x10_ffff),
            IovaRange::new(0x40_0000, 0x4f_ffff),
        ])
        .unwrap();
    assert_eq!(fx.map_auto(K64), Ok(0x10_0000));
    // Does not fit the rest of the first window.
    assert_eq!(fx.map_auto(K64), Ok(0x40_0000));
    assert_eq!(fx.map_auto(0x10_0000), Err(Errno::ENOSPC));
    assert_eq!(fx.map_auto(0x8_0000), Ok(0x48_0000));
}

#[test]
fn auto_map_avoids_reserved_ranges() {
    let mut fx = Fx::new();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0, 0x7fff),
            ReservedOwner::Device(StreamId(1)),
        )
        .unwrap();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0x9000, 0xffff),
            ReservedOwner::SwMsi(1),
        )
        .unwrap();
    assert_eq!(fx.map_auto(K4), Ok(0x8000));
    assert_eq!(fx.map_auto(K4), Ok(0x1_0000));
}

#[test]
fn auto_map_enospc_when_nothing_fits() {
    let mut fx = Fx::new();
    fx.ioas
        .set_allowed(&[IovaRange::new(0x1000, 0x2fff)])
        .unwrap();
    assert_eq!(fx.map_auto(3 * K4), Err(Errno::ENOSPC));
    // Two pages align to 8 KiB, and 0x2000..=0x3fff leaves the window.
    assert_eq!(fx.map_auto(2 * K4), Err(Errno::ENOSPC));
    assert_eq!(fx.map_auto(K4), Ok(0x1000));
    assert_eq!(fx.map_auto(K4), Ok(0x2000));
    assert_eq!(fx.map_auto(K4), Err(Errno::ENOSPC));
}

#[test]
fn auto_map_fills_holes_left_by_unmap() {
    let mut fx = Fx::new();
    let ivs: Vec<u64> = (0..4).map(|_| fx.map_auto(K4).unwrap()).collect();
    assert_eq!(ivs, vec![K4, 2 * K4, 3 * K4, 4 * K4]);
    fx.unmap(2 * K4, K4).unwrap();
    assert_eq!(fx.map_auto(K4), Ok(2 * K4));
    assert_eq!(fx.map_auto(2 * K4), Ok(6 * K4));
}

#[test]
fn auto_map_huge_length_is_eoverflow() {
    let mut fx = Fx::new();
    assert_eq!(fx.map_at(0, 1 << 63, DstIova::Auto), Err(Errno::EOVERFLOW));
}

// ---- map: fixed IOVA ----------------------------------------------------

#[test]
fn fixed_map_lands_exactly_and_translates() {
    let mut fx = Fx::new();
    assert_eq!(
        fx.map_at(PHYS, 2 * K4, DstIova::Fixed(0x10_0000)),
        Ok(0x10_0000)
    );
    assert_eq!(fx.ioas.translate(&fx.store, 0x10_1234), Some(PHYS + 0x1234));
    assert_eq!(fx.ioas.translate(&fx.store, 0x10_2000), None);
}

#[test]
fn fixed_map_errnos() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, 0x4000).unwrap();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0x20_0000, 0x20_0fff),
            ReservedOwner::Device(StreamId(7)),
        )
        .unwrap();
    let before = fx.snapshot();
    assert_eq!(
        fx.map_fixed(0x10_0800, K4),
        Err(Errno::EINVAL),
        "misaligned iova"
    );
    assert_eq!(
        fx.map_fixed(0x1f_f000, 2 * K4),
        Err(Errno::EINVAL),
        "touches reserved"
    );
    assert_eq!(
        fx.map_fixed(0x10_3000, 2 * K4),
        Err(Errno::EEXIST),
        "overlaps an area"
    );
    assert_eq!(
        fx.map_fixed(0x0f_f000, 0x10_0000),
        Err(Errno::EEXIST),
        "covers an area"
    );
    assert_eq!(
        fx.map_at(PHYS, 2 * K4, DstIova::Fixed(u64::MAX - K4 + 1)),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn fixed_map_may_lie_outside_allowed_ranges() {
    let mut fx = Fx::new();
    fx.ioas
        .set_allowed(&[IovaRange::new(0x10_0000, 0x1f_ffff)])
        .unwrap();
    assert_eq!(fx.map_fixed(0x8000_0000, K4), Ok(0x8000_0000));
}

#[test]
fn map_argument_errnos() {
    let mut fx = Fx::new();
    let before = fx.snapshot();
    assert_eq!(
        fx.map_at(PHYS, 0, DstIova::Auto),
        Err(Errno::EINVAL),
        "zero length"
    );
    assert_eq!(
        fx.map_full(&[], 0, true, DstIova::Auto, RW),
        Err(Errno::EINVAL),
        "no extents"
    );
    assert_eq!(
        fx.map_at(PHYS, 0x1800, DstIova::Auto),
        Err(Errno::EINVAL),
        "unaligned length"
    );
    assert_eq!(
        fx.map_at(PHYS + 0x800, K4, DstIova::Fixed(K4)),
        Err(Errno::EINVAL),
        "unaligned phys"
    );
    assert_eq!(
        fx.map_full(
            &[Extent {
                phys: PHYS,
                len: K4
            }],
            PHYS,
            true,
            DstIova::Auto,
            Prot::empty()
        ),
        Err(Errno::EINVAL)
    );
    let wrap = [Extent {
        phys: u64::MAX - K4 + 1,
        len: 2 * K4,
    }];
    assert_eq!(
        fx.map_full(&wrap, 0, true, DstIova::Auto, RW),
        Err(Errno::EOVERFLOW),
        "phys wraps"
    );
    let sum = [
        Extent {
            phys: 0,
            len: 1 << 63,
        },
        Extent {
            phys: 0,
            len: 1 << 63,
        },
    ];
    assert_eq!(
        fx.map_full(&sum, 0, true, DstIova::Auto, RW),
        Err(Errno::EOVERFLOW),
        "length wraps"
    );
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn write_mapping_of_read_only_backing_is_eperm() {
    let mut fx = Fx::new();
    let ext = [Extent {
        phys: PHYS,
        len: K4,
    }];
    assert_eq!(
        fx.map_full(&ext, PHYS, false, DstIova::Auto, RW),
        Err(Errno::EPERM)
    );
    assert_eq!(
        fx.map_full(&ext, PHYS, false, DstIova::Auto, Prot::READ),
        Ok(K4)
    );
}

#[test]
fn multi_extent_map_is_one_area_over_all_runs() {
    let mut fx = Fx::new();
    let ext = [
        Extent {
            phys: PHYS,
            len: K4,
        },
        Extent {
            phys: PHYS + 0x10_0000,
            len: 2 * K4,
        },
    ];
    let iova = fx
        .map_full(&ext, 0x7000_0000, true, DstIova::Fixed(0x40_0000), RW)
        .unwrap();
    assert_eq!(fx.areas(), vec![(iova, iova + 3 * K4 - 1)]);
    assert_eq!(
        fx.ioas.translate(&fx.store, iova + K4),
        Some(PHYS + 0x10_0000)
    );
    assert_eq!(
        fx.ioas.translate(&fx.store, iova + 0x2abc),
        Some(PHYS + 0x10_1abc)
    );
    // Unmapping part of it is refused: it is one area.
    assert_eq!(fx.unmap(iova, K4), Err(Errno::ENOENT));
}

#[test]
fn resource_exhaustion_is_enomem_and_changes_nothing() {
    let mut fx = Fx::with_store(store(2, 1, 1));
    fx.map_auto(K4).unwrap();
    let before = fx.snapshot();
    assert_eq!(fx.map_auto(K4), Err(Errno::ENOMEM), "backing pool");
    assert_eq!(fx.snapshot(), before);

    let mut fx = Fx::with_store(store(1, 4, 1));
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.map_auto(K4), Err(Errno::ENOMEM), "area nodes");
    assert_eq!(fx.store.pages_free(), 3);

    let mut fx = Fx::new();
    let many: Vec<Extent> = (0..=MAX_EXTENTS as u64)
        .map(|i| Extent {
            phys: PHYS + 2 * i * K4,
            len: K4,
        })
        .collect();
    assert_eq!(
        fx.map_full(&many, PHYS, true, DstIova::Auto, RW),
        Err(Errno::ENOMEM),
        "too many extents"
    );
    assert_eq!(
        fx.map_full(&many[1..], PHYS, true, DstIova::Auto, RW),
        Ok(0x8000)
    );
}

// ---- accounting ---------------------------------------------------------

#[test]
fn accounting_limits_mapped_pages_per_owner() {
    let mut fx = Fx::new();
    fx.store.set_limit(ClientId(0), 4).unwrap();
    fx.map_auto(3 * K4).unwrap();
    assert_eq!(fx.used(), 3);
    let before = fx.snapshot();
    assert_eq!(fx.map_auto(2 * K4), Err(Errno::ENOMEM));
    assert_eq!(fx.snapshot(), before);
    let iova = fx.map_auto(K4).unwrap();
    assert_eq!(fx.used(), 4);
    fx.unmap(iova, K4).unwrap();
    assert_eq!(fx.used(), 3);
    // Another owner is not affected.
    let mut other = fx.store.new_ioas(ClientId(1)).unwrap();
    let ext = [Extent {
        phys: PHYS,
        len: 16 * K4,
    }];
    assert!(other
        .map(
            &mut fx.store,
            &mut Domains::none(),
            &ext,
            PHYS,
            true,
            DstIova::Auto,
            RW
        )
        .is_ok());
    assert_eq!(fx.store.account(ClientId(1)).unwrap().used, 16);
    assert_eq!(fx.store.new_ioas(ClientId(2)).err(), Some(Errno::EINVAL));
}

#[test]
fn copy_is_charged_again() {
    let mut fx = Fx::new();
    let iova = fx.map_auto(2 * K4).unwrap();
    fx.ioas
        .copy_from(
            &mut fx.store,
            &mut fx.doms,
            None,
            iova,
            2 * K4,
            DstIova::Auto,
            RW,
        )
        .unwrap();
    assert_eq!(fx.used(), 4);
}

// ---- unmap ----------------------------------------------------------------

#[test]
fn unmap_whole_areas_returns_bytes() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, 2 * K4).unwrap();
    fx.map_fixed(0x10_4000, K4).unwrap();
    fx.map_fixed(0x20_0000, K4).unwrap();
    // Covers two areas and the hole between them.
    assert_eq!(fx.unmap(0x10_0000, 0x8000), Ok(3 * K4));
    assert_eq!(fx.areas(), vec![(0x20_0000, 0x20_0fff)]);
    assert_eq!(fx.store.areas_free(), 255);
}

#[test]
fn unmap_never_splits_an_area() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, 4 * K4).unwrap();
    fx.map_fixed(0x20_0000, K4).unwrap();
    let before = fx.snapshot();
    assert_eq!(fx.unmap(0x10_1000, K4), Err(Errno::ENOENT), "middle");
    assert_eq!(fx.unmap(0x10_0000, 2 * K4), Err(Errno::ENOENT), "head");
    assert_eq!(
        fx.unmap(0x10_2000, 0x10_0000),
        Err(Errno::ENOENT),
        "tail plus a whole area"
    );
    assert_eq!(fx.unmap(0x30_0000, K4), Err(Errno::ENOENT), "nothing there");
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn unmap_argument_errnos() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, K4).unwrap();
    assert_eq!(fx.unmap(0x10_0000, 0), Err(Errno::EINVAL));
    assert_eq!(fx.unmap(0x10_0000, u64::MAX), Err(Errno::EOVERFLOW));
}

#[test]
fn unmap_all_with_zero_and_max() {
    let mut fx = Fx::new();
    assert_eq!(fx.unmap(0, u64::MAX), Ok(0), "empty IOAS");
    fx.map_fixed(0, K4).unwrap();
    fx.map_fixed(u64::MAX - K4 + 1, K4).unwrap();
    fx.map_auto(M2).unwrap();
    assert_eq!(fx.unmap(0, u64::MAX), Ok(2 * K4 + M2));
    assert!(fx.areas().is_empty());
    assert_eq!(fx.used(), 0);
    assert_eq!(fx.store.pages_free(), 256);
}

// ---- cut ------------------------------------------------------------------

#[test]
fn cut_needs_huge_pages_disabled() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, 4 * K4).unwrap();
    assert_eq!(fx.ioas.cut(&mut fx.store, &[0x10_0fff]), Err(Errno::EINVAL));
    fx.ioas.set_huge_pages(false).unwrap();
    fx.ioas.cut(&mut fx.store, &[0x10_0fff, 0x10_2fff]).unwrap();
    assert_eq!(
        fx.areas(),
        vec![
            (0x10_0000, 0x10_0fff),
            (0x10_1000, 0x10_2fff),
            (0x10_3000, 0x10_3fff)
        ]
    );
    // The pieces keep their backing.
    assert_eq!(
        fx.ioas.translate(&fx.store, 0x10_3010),
        Some(PHYS + 0x10_3010)
    );
    // VFIO type1: unmap the middle, the rest stays.
    assert_eq!(fx.unmap(0x10_1000, 2 * K4), Ok(2 * K4));
    assert_eq!(
        fx.ioas.translate(&fx.store, 0x10_0010),
        Some(PHYS + 0x10_0010)
    );
    assert_eq!(
        fx.ioas.translate(&fx.store, 0x10_3010),
        Some(PHYS + 0x10_3010)
    );
    // The backing is freed only with its last area.
    assert_eq!(fx.store.pages_free(), 255);
    fx.unmap(0, u64::MAX).unwrap();
    assert_eq!(fx.store.pages_free(), 256);
}

#[test]
fn cut_skips_edges_and_holes_and_checks_alignment() {
    let mut fx = Fx::new();
    fx.ioas.set_huge_pages(false).unwrap();
    fx.map_fixed(0x10_0000, 4 * K4).unwrap();
    fx.ioas
        .cut(&mut fx.store, &[0x10_0000, 0x10_3fff, 0x50_0000])
        .unwrap();
    assert_eq!(fx.areas(), vec![(0x10_0000, 0x10_3fff)]);
    let before = fx.snapshot();
    assert_eq!(
        fx.ioas.cut(&mut fx.store, &[0x10_0fff, 0x10_1800]),
        Err(Errno::EINVAL)
    );
    assert_eq!(fx.snapshot(), before, "a failing cut cuts nothing");
}

#[test]
fn cut_runs_out_of_nodes_atomically() {
    let mut fx = Fx::with_store(store(2, 4, 1));
    fx.ioas.set_huge_pages(false).unwrap();
    fx.map_fixed(0x10_0000, 4 * K4).unwrap();
    let before = fx.snapshot();
    assert_eq!(
        fx.ioas.cut(&mut fx.store, &[0x10_0fff, 0x10_1fff]),
        Err(Errno::ENOMEM)
    );
    assert_eq!(fx.snapshot(), before);
    // The same IOVA twice needs one node.
    fx.ioas.cut(&mut fx.store, &[0x10_0fff, 0x10_0fff]).unwrap();
    assert_eq!(fx.areas().len(), 2);
}

// ---- copy -----------------------------------------------------------------

#[test]
fn copy_shares_backing_between_ioas() {
    let mut store = store(64, 64, 1);
    let mut doms = Domains::none();
    let mut a = store.new_ioas(ClientId(0)).unwrap();
    let mut b = store.new_ioas(ClientId(0)).unwrap();
    let ext = [Extent {
        phys: PHYS,
        len: 4 * K4,
    }];
    let src = a
        .map(
            &mut store,
            &mut doms,
            &ext,
            PHYS,
            true,
            DstIova::Fixed(0x10_0000),
            RW,
        )
        .unwrap();
    // Partial copy of the middle two pages.
    let dst = b
        .copy_from(
            &mut store,
            &mut doms,
            Some(&a),
            src + K4,
            2 * K4,
            DstIova::Auto,
            Prot::READ,
        )
        .unwrap();
    assert_eq!(b.translate(&store, dst), Some(PHYS + K4));
    assert_eq!(store.pages_free(), 63, "one backing shared by both");
    a.unmap(&mut store, &mut doms, src, 4 * K4).unwrap();
    assert_eq!(b.translate(&store, dst + K4 + 5), Some(PHYS + 2 * K4 + 5));
    b.unmap(&mut store, &mut doms, dst, 2 * K4).unwrap();
    assert_eq!(store.pages_free(), 64);
}

#[test]
fn copy_spans_contiguous_areas_and_rejects_holes() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, K4).unwrap();
    fx.map_fixed(0x10_1000, 2 * K4).unwrap();
    fx.map_fixed(0x10_4000, K4).unwrap();
    let copy = |fx: &mut Fx, iova, len, dst| {
        fx.ioas
            .copy_from(&mut fx.store, &mut fx.doms, None, iova, len, dst, RW)
    };
    let dst = copy(&mut fx, 0x10_0000, 3 * K4, DstIova::Fixed(0x40_0000)).unwrap();
    assert_eq!(dst, 0x40_0000);
    assert_eq!(
        fx.areas()[3..],
        [(0x40_0000, 0x40_0fff), (0x40_1000, 0x40_2fff)]
    );
    let before = fx.snapshot();
    assert_eq!(
        copy(&mut fx, 0x10_0000, 5 * K4, DstIova::Auto),
        Err(Errno::ENOENT),
        "hole at 0x10_3000"
    );
    assert_eq!(
        copy(&mut fx, 0x30_0000, K4, DstIova::Auto),
        Err(Errno::ENOENT),
        "nothing mapped"
    );
    assert_eq!(
        copy(&mut fx, 0x10_0000, 0, DstIova::Auto),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        copy(&mut fx, u64::MAX, 2, DstIova::Auto),
        Err(Errno::EOVERFLOW)
    );
    assert_eq!(
        copy(&mut fx, 0x10_0000, K4, DstIova::Fixed(0x40_0000)),
        Err(Errno::EEXIST)
    );
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn copy_keeps_read_only_backing_read_only() {
    let mut fx = Fx::new();
    let ext = [Extent {
        phys: PHYS,
        len: K4,
    }];
    let iova = fx
        .map_full(&ext, PHYS, false, DstIova::Auto, Prot::READ)
        .unwrap();
    let r = fx.ioas.copy_from(
        &mut fx.store,
        &mut fx.doms,
        None,
        iova,
        K4,
        DstIova::Auto,
        RW,
    );
    assert_eq!(r, Err(Errno::EPERM));
}

#[test]
fn copy_auto_alignment_follows_the_source_address() {
    let mut fx = Fx::new();
    // Mapped from a 2 MiB aligned source: the copy is placed 2 MiB aligned.
    let src = fx.map_at(PHYS, M2, DstIova::Fixed(0x1000_0000)).unwrap();
    let r = fx.ioas.copy_from(
        &mut fx.store,
        &mut fx.doms,
        None,
        src,
        M2,
        DstIova::Auto,
        RW,
    );
    assert_eq!(r, Ok(M2));
}

// ---- iova_ranges ------------------------------------------------------------

#[test]
fn iova_ranges_are_the_holes_between_reserved_ranges() {
    let mut fx = Fx::new();
    assert_eq!(fx.ranges(), vec![(0, u64::MAX)]);
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0x800_0000, 0x8ff_ffff),
            ReservedOwner::SwMsi(0),
        )
        .unwrap();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0, 0xfff),
            ReservedOwner::Device(StreamId(3)),
        )
        .unwrap();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0x880_0000, 0x9ff_ffff),
            ReservedOwner::Device(StreamId(3)),
        )
        .unwrap();
    assert_eq!(
        fx.ranges(),
        vec![(0x1000, 0x7ff_ffff), (0xa00_0000, u64::MAX)]
    );
    let mut one = [IovaRange::ALL; 1];
    let info = fx.ioas.iova_ranges(&mut one);
    assert_eq!((info.total, info.alignment), (2, PAGE_SIZE));
    assert_eq!(info.fits(1), Err(Errno::EMSGSIZE));
    assert_eq!(
        one[0],
        IovaRange::new(0x1000, 0x7ff_ffff),
        "filled as far as it reaches"
    );
    assert_eq!(info.fits(2), Ok(()));
    fx.ioas
        .unreserve(ReservedOwner::Device(StreamId(3)))
        .unwrap();
    assert_eq!(fx.ranges(), vec![(0, 0x7ff_ffff), (0x900_0000, u64::MAX)]);
}

#[test]
fn iova_ranges_follow_domain_apertures() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K).with_aperture(0, (1 << 48) - 1)]);
    fx.attach(0).unwrap();
    assert_eq!(fx.ranges(), vec![(0, (1 << 48) - 1)]);
    fx.detach(0).unwrap();
    assert_eq!(fx.ranges(), vec![(0, u64::MAX)]);
}

// ---- allow_iovas ------------------------------------------------------------

#[test]
fn allow_iovas_errnos() {
    let mut fx = Fx::new();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0x10_0000, 0x10_ffff),
            ReservedOwner::Device(StreamId(1)),
        )
        .unwrap();
    let r = IovaRange::new;
    assert_eq!(
        fx.ioas.set_allowed(&[r(0x2000, 0x2000)]),
        Err(Errno::EINVAL),
        "start == last"
    );
    assert_eq!(
        fx.ioas.set_allowed(&[r(0x3000, 0x2000)]),
        Err(Errno::EINVAL),
        "start > last"
    );
    assert_eq!(
        fx.ioas.set_allowed(&[r(0x1000, 0x4fff), r(0x4000, 0x8fff)]),
        Err(Errno::EINVAL),
        "overlap"
    );
    assert_eq!(
        fx.ioas.set_allowed(&[r(0x1000, 0x10_0000)]),
        Err(Errno::EADDRINUSE),
        "reserved"
    );
    let many: Vec<IovaRange> = (0..=MAX_ALLOWED as u64)
        .map(|i| r(i * 0x1_0000 + 0x100_0000, i * 0x1_0000 + 0x100_ffff))
        .collect();
    assert_eq!(fx.ioas.set_allowed(&many), Err(Errno::ENOMEM));
    assert!(fx.ioas.allowed().is_empty(), "failures change nothing");
    fx.ioas
        .set_allowed(&[r(0x30_0000, 0x3f_ffff), r(0x20_0000, 0x2f_ffff)])
        .unwrap();
    assert_eq!(
        fx.ioas.allowed(),
        &[r(0x20_0000, 0x2f_ffff), r(0x30_0000, 0x3f_ffff)]
    );
    fx.ioas.set_allowed(&[]).unwrap();
    assert!(fx.ioas.allowed().is_empty());
}

// ---- reserve ----------------------------------------------------------------

#[test]
fn reserve_is_refused_over_areas_and_allowed_ranges() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, K4).unwrap();
    fx.ioas
        .set_allowed(&[IovaRange::new(0x40_0000, 0x4f_ffff)])
        .unwrap();
    let owner = ReservedOwner::Device(StreamId(9));
    assert_eq!(
        fx.ioas
            .reserve(&fx.store, IovaRange::new(0x10_0fff, 0x10_1fff), owner),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(
        fx.ioas
            .reserve(&fx.store, IovaRange::new(0x4f_f000, 0x5f_ffff), owner),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(
        fx.ioas.reserve(&fx.store, IovaRange::new(5, 4), owner),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        fx.ioas
            .reserve(&fx.store, IovaRange::new(0x20_0000, 0x2f_ffff), owner),
        Ok(())
    );
    // Reserved ranges of different owners may overlap.
    assert_eq!(
        fx.ioas.reserve(
            &fx.store,
            IovaRange::new(0x28_0000, 0x3f_ffff),
            ReservedOwner::SwMsi(0)
        ),
        Ok(())
    );
    fx.ioas.unreserve(owner).unwrap();
    assert_eq!(fx.ioas.reserved().count(), 1);
    // Aperture reservations come and go only with their domain.
    let aperture = ReservedOwner::Aperture(DomainId(0));
    assert_eq!(
        fx.ioas
            .reserve(&fx.store, IovaRange::new(1 << 60, 1 << 61), aperture),
        Err(Errno::EINVAL)
    );
    assert_eq!(fx.ioas.unreserve(aperture), Err(Errno::EINVAL));
}

#[test]
fn reserved_list_full_is_enomem() {
    let mut fx = Fx::new();
    let mut i = 0;
    while fx
        .ioas
        .reserve(
            &fx.store,
            IovaRange::new(i * K64, i * K64 + 0xfff),
            ReservedOwner::Device(StreamId(i as u32)),
        )
        .is_ok()
    {
        i += 1;
    }
    assert_eq!(i as usize, iopt::MAX_RESERVED);
    assert_eq!(
        fx.ioas.reserve(
            &fx.store,
            IovaRange::new(G1, G1),
            ReservedOwner::Device(StreamId(0))
        ),
        Err(Errno::ENOMEM)
    );
}

// ---- domains ----------------------------------------------------------------

#[test]
fn attach_fills_existing_areas_with_the_largest_pages() {
    let mut fx = Fx::new();
    fx.map_at(PHYS, 2 * M2 + K4, DstIova::Fixed(G1 - K4))
        .unwrap();
    fx.map_at(PHYS + G1, G1, DstIova::Fixed(4 * G1)).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    let d = fx.doms.get(0);
    // IOVA G1-4K and phys PHYS share no 2 MiB offset: all 4 KiB pages.
    assert_eq!(
        d.pages.range(..4 * G1).count(),
        (2 * M2 + K4) as usize / K4 as usize
    );
    assert_eq!(d.pages[&(4 * G1)].size, G1);
    assert_eq!(d.iova_to_phys(4 * G1 + 0x1234), Some(PHYS + G1 + 0x1234));
    fx.doms.assert_clean();
}

#[test]
fn maps_and_unmaps_are_mirrored_into_every_domain() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K), MockDomain::new(K4)]);
    fx.attach(0).unwrap();
    fx.attach(1).unwrap();
    fx.map_at(PHYS + M2 - K4, 2 * M2 + 2 * K4, DstIova::Fixed(M2 - K4))
        .unwrap();
    assert_eq!(
        fx.doms.get(0).layout(),
        vec![(M2 - K4, K4), (M2, M2), (2 * M2, M2), (3 * M2, K4)],
        "blocks where IOVA and phys allow"
    );
    assert_eq!(
        fx.doms.get(1).pages.len(),
        (2 * M2 + 2 * K4) as usize / K4 as usize
    );
    fx.unmap(M2 - K4, 2 * M2 + 2 * K4).unwrap();
    assert!(fx.doms.get(0).pages.is_empty() && fx.doms.get(1).pages.is_empty());
    assert_eq!(
        fx.doms.get(0).unmap_calls,
        1,
        "one unmap call per domain and request"
    );
    fx.doms.assert_clean();
}

#[test]
fn fixed_map_phys_block_alignment_decides_page_size() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.map_at(PHYS + K4, M2, DstIova::Fixed(M2)).unwrap();
    assert_eq!(
        fx.doms.get(0).pages.len(),
        512,
        "phys not 2 MiB aligned: no block"
    );
}

#[test]
fn failure_in_the_second_domain_rolls_back_the_first() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([
        MockDomain::new(ARM_4K),
        MockDomain::new(K4).with_page_limit(3),
    ]);
    fx.attach(0).unwrap();
    fx.attach(1).unwrap();
    fx.map_fixed(0x10_0000, 2 * K4).unwrap();
    let before = fx.snapshot();
    assert_eq!(fx.map_fixed(0x20_0000, 2 * K4), Err(Errno::ENOMEM));
    assert_eq!(fx.snapshot(), before);
    // Copies roll back the same way.
    let r = fx.ioas.copy_from(
        &mut fx.store,
        &mut fx.doms,
        None,
        0x10_0000,
        2 * K4,
        DstIova::Auto,
        RW,
    );
    assert_eq!(r, Err(Errno::ENOMEM));
    assert_eq!(fx.snapshot(), before);
    fx.doms.assert_clean();
}

#[test]
fn attach_failure_leaves_domain_and_ioas_unchanged() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, 2 * K4).unwrap();
    fx.map_fixed(0x20_0000, 2 * K4).unwrap();
    fx.doms = Domains::with([MockDomain::new(K4)
        .with_aperture(0, (1 << 48) - 1)
        .with_page_limit(3)]);
    let reserved_before = fx.ioas.reserved().count();
    assert_eq!(fx.attach(0), Err(Errno::ENOMEM));
    assert!(fx.doms.get(0).pages.is_empty());
    assert_eq!(fx.ioas.reserved().count(), reserved_before);
    assert_eq!(fx.ioas.domains().count(), 0);
    fx.doms.get_mut(0).page_limit = 4;
    fx.attach(0).unwrap();
    assert_eq!(fx.doms.get(0).pages.len(), 4);
    fx.doms.assert_clean();
}

#[test]
fn attach_errnos() {
    let mut fx = Fx::new();
    fx.map_fixed(1 << 50, K4).unwrap();
    fx.doms = Domains::with([
        MockDomain::new(ARM_4K).with_aperture(0, (1 << 48) - 1),
        MockDomain::new(0),
        MockDomain::new(K64),
        MockDomain::new(ARM_4K),
    ]);
    assert_eq!(
        fx.attach(0),
        Err(Errno::EADDRINUSE),
        "an area lies outside the aperture"
    );
    assert_eq!(fx.attach(1), Err(Errno::EINVAL), "no page sizes");
    fx.map_fixed(0x10_1000, K4).unwrap();
    assert_eq!(
        fx.attach(2),
        Err(Errno::EADDRINUSE),
        "area not 64 KiB aligned"
    );
    assert_eq!(fx.attach(9), Err(Errno::ENODEV));
    fx.attach(3).unwrap();
    assert_eq!(fx.attach(3), Err(Errno::EEXIST));
    assert_eq!(fx.detach(0), Err(Errno::ENOENT));
    assert_eq!(fx.ioas.domains().collect::<Vec<_>>(), vec![DomainId(3)]);
}

#[test]
fn aperture_limit_blocks_allowed_ranges_beyond_it() {
    let mut fx = Fx::new();
    fx.ioas
        .set_allowed(&[IovaRange::new(1 << 50, (1 << 50) + 0xffff)])
        .unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K).with_aperture(0, (1 << 48) - 1)]);
    assert_eq!(fx.attach(0), Err(Errno::EADDRINUSE));
}

#[test]
fn bigger_minimum_page_raises_alignment_until_detached() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, K64).unwrap();
    fx.doms = Domains::with([MockDomain::new(K64 | (1 << 29))]);
    fx.attach(0).unwrap();
    assert_eq!(fx.ioas.alignment(), K64);
    assert_eq!(
        fx.map_fixed(0x20_1000, K64),
        Err(Errno::EINVAL),
        "IOVA below the new alignment"
    );
    assert_eq!(
        fx.map_fixed(0x20_0000, K4),
        Err(Errno::EINVAL),
        "length below the new alignment"
    );
    assert_eq!(fx.doms.get(0).layout(), vec![(0x10_0000, K64)]);
    fx.detach(0).unwrap();
    assert_eq!(fx.ioas.alignment(), K4);
    assert!(fx.doms.get(0).pages.is_empty());
    fx.doms.assert_clean();
}

#[test]
fn huge_pages_off_maps_everything_at_the_smallest_page() {
    let mut fx = Fx::new();
    fx.ioas.set_huge_pages(false).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.map_at(PHYS, M2, DstIova::Fixed(M2)).unwrap();
    assert_eq!(fx.doms.get(0).pages.len(), 512);
    assert!(fx.doms.get(0).pages.values().all(|p| p.size == K4));
}

#[test]
fn huge_pages_cannot_be_disabled_under_mapped_domains() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.ioas.set_huge_pages(false).unwrap();
    fx.ioas.set_huge_pages(true).unwrap();
    fx.map_fixed(M2, M2).unwrap();
    assert_eq!(fx.ioas.set_huge_pages(false), Err(Errno::EINVAL));
    assert!(fx.ioas.huge_pages());
    // Re-enabling after small mappings is fine and unmaps cleanly.
    fx.unmap(M2, M2).unwrap();
    fx.ioas.set_huge_pages(false).unwrap();
    fx.map_fixed(M2, M2).unwrap();
    fx.ioas.set_huge_pages(true).unwrap();
    fx.unmap(M2, M2).unwrap();
    assert!(fx.doms.get(0).pages.is_empty());
    fx.doms.assert_clean();
}

#[test]
fn detach_unfills_and_destroy_returns_everything() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K), MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.attach(1).unwrap();
    fx.map_fixed(0x10_0000, 3 * K4).unwrap();
    fx.map_auto(M2).unwrap();
    fx.detach(0).unwrap();
    assert!(fx.doms.get(0).pages.is_empty());
    assert_eq!(fx.doms.get(1).pages.len(), 4);
    let Fx {
        mut store,
        mut doms,
        ioas,
    } = fx;
    ioas.destroy(&mut store, &mut doms);
    assert!(doms.get(1).pages.is_empty());
    assert_eq!((store.areas_free(), store.pages_free()), (256, 256));
    assert_eq!(store.account(ClientId(0)).unwrap().used, 0);
    doms.assert_clean();
}

#[test]
fn unmap_granularity_after_cut_with_domain() {
    // iommufd.c "unmap" selftests: after type1-style cuts, partial unmaps
    // remove exactly the pages asked for from the domain.
    let mut fx = Fx::new();
    fx.ioas.set_huge_pages(false).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.map_fixed(0x10_0000, 16 * K4).unwrap();
    fx.ioas.cut(&mut fx.store, &[0x10_3fff, 0x10_7fff]).unwrap();
    assert_eq!(fx.unmap(0x10_4000, 4 * K4), Ok(4 * K4));
    let d = fx.doms.get(0);
    assert_eq!(d.pages.len(), 12);
    assert!(
        !d.pages.contains_key(&0x10_4000)
            && d.pages.contains_key(&0x10_3000)
            && d.pages.contains_key(&0x10_8000)
    );
    fx.doms.assert_clean();
}

// ---- cases after tools/testing/selftests/iommu/iommufd.c ---------------------

#[test]
fn selftest_area_auto_iova() {
    for with_domain in [false, true] {
        let mut fx = Fx::new();
        if with_domain {
            fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
            fx.attach(0).unwrap();
        }
        // Lengths of 1..=10 pages from a 2 GiB-aligned source are aligned
        // to their lowest set bit.
        let mut iovas = vec![];
        for i in 1..=10u64 {
            let len = i * K4;
            let iova = fx.map_at(1 << 31, len, DstIova::Auto).unwrap();
            assert_eq!(
                iova % (1 << len.trailing_zeros()),
                0,
                "length {len:#x} at {iova:#x}"
            );
            iovas.push((iova, len));
        }
        for (iova, len) in iovas.drain(..) {
            fx.unmap(iova, len).unwrap();
        }
        // Avoids a reserved region.
        let reserved = IovaRange::new(4 * K4, 104 * K4 - 1);
        fx.ioas
            .reserve(&fx.store, reserved, ReservedOwner::SwMsi(0))
            .unwrap();
        for i in 1..=10u64 {
            let iova = fx.map_at(1 << 31, i * K4, DstIova::Auto).unwrap();
            assert!(!reserved.overlaps(&IovaRange::from_start_len(iova, i * K4).unwrap()));
            iovas.push((iova, i * K4));
        }
        for (iova, len) in iovas.drain(..) {
            fx.unmap(iova, len).unwrap();
        }
        // An allowed range may not intersect a reserved one.
        assert_eq!(
            fx.ioas.set_allowed(&[IovaRange::new(2 * K4, 10 * K4 - 1)]),
            Err(Errno::EADDRINUSE)
        );
        // Allowed above the reserved section: everything lands inside it.
        let allowed = IovaRange::new(200 * K4, 300 * K4 - 1);
        fx.ioas.set_allowed(&[allowed]).unwrap();
        for i in 1..=10u64 {
            let iova = fx.map_at(1 << 31, i * K4, DstIova::Auto).unwrap();
            assert!(allowed.contains(iova) && allowed.contains(iova + i * K4 - 1));
            iovas.push((iova, i * K4));
        }
        for (iova, len) in iovas.drain(..) {
            fx.unmap(iova, len).unwrap();
        }
        // Allowed below the reserved section is too small for 8 pages.
        fx.ioas
            .set_allowed(&[IovaRange::new(K4, 4 * K4 - 1)])
            .unwrap();
        assert_eq!(
            fx.map_at(1 << 31, 8 * K4, DstIova::Auto),
            Err(Errno::ENOSPC)
        );
        fx.doms.assert_clean();
    }
}

#[test]
fn selftest_reserved_overflow() {
    // A reservation reaching almost to the top must not make allocation wrap.
    let mut fx = Fx::new();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(6, 6 + 0xffff_ffff_ffff_8000),
            ReservedOwner::Device(StreamId(0)),
        )
        .unwrap();
    assert_eq!(fx.map_auto(0x5000), Err(Errno::ENOSPC));
}

#[test]
fn selftest_unmap_fully_contained_areas() {
    let mut fx = Fx::new();
    let base = 0x10_0000 + 4 * K4;
    for i in 0..4 {
        fx.map_fixed(base + i * 16 * K4, 8 * K4).unwrap();
    }
    assert_eq!(fx.unmap(base - 4 * K4, 8 * K4), Err(Errno::ENOENT));
    assert_eq!(
        fx.unmap(base + 3 * 16 * K4 + 8 * K4 - 4 * K4, 8 * K4),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        fx.unmap(base - 4 * K4, 3 * 16 * K4 + 8 * K4 + 4 * K4),
        Ok(32 * K4)
    );
}

#[test]
fn selftest_unmap_all_on_empty_ioas_succeeds() {
    let mut fx = Fx::new();
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.unmap(0, u64::MAX), Ok(K4));
    assert_eq!(fx.unmap(0, u64::MAX), Ok(0));
}

#[test]
fn attach_rollback_touches_only_what_it_mapped() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, K4).unwrap();
    fx.map_fixed(0x20_0000, K4).unwrap();
    // A page the domain already held (a caller bug, but not ours to undo).
    let mut dom = MockDomain::new(K4).with_page_limit(2);
    dom.map_pages(0x18_0000, PHYS, K4, 1, Prot::READ).unwrap();
    fx.doms = Domains::with([dom]);
    assert_eq!(fx.attach(0), Err(Errno::ENOMEM));
    assert_eq!(fx.doms.get(0).layout(), vec![(0x18_0000, K4)]);
    fx.doms.assert_clean();
}

#[test]
fn area_limit_per_owner_is_enomem_and_changes_nothing() {
    let mut fx = Fx::new();
    fx.store.set_area_limit(ClientId(0), 2).unwrap();
    fx.map_fixed(0x10_0000, 4 * K4).unwrap();
    fx.map_fixed(0x20_0000, K4).unwrap();
    let before = fx.snapshot();
    assert_eq!(
        fx.map_fixed(0x30_0000, K4),
        Err(Errno::ENOMEM),
        "a third mapping"
    );
    fx.ioas.set_huge_pages(false).unwrap();
    assert_eq!(
        fx.ioas.cut(&mut fx.store, &[0x10_0fff]),
        Err(Errno::ENOMEM),
        "a cut needs a node too"
    );
    assert_eq!(fx.snapshot(), before);
    // Another owner is not held back by this one.
    let mut other = fx.store.new_ioas(ClientId(1)).unwrap();
    let ext = [Extent {
        phys: PHYS,
        len: K4,
    }];
    for i in 0..3 {
        other
            .map(
                &mut fx.store,
                &mut Domains::none(),
                &ext,
                PHYS,
                true,
                DstIova::Fixed(0x100_0000 + i * K4),
                RW,
            )
            .unwrap();
    }
    fx.unmap(0x20_0000, K4).unwrap();
    assert_eq!(
        fx.map_fixed(0x30_0000, K4),
        Ok(0x30_0000),
        "unmapping gave the node back"
    );
    assert_eq!(fx.store.account(ClientId(0)).unwrap().areas, 2);
}
