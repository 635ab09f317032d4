//! IOAS map: automatic and fixed IOVAs, argument errnos, resources and
//! accounting, after Linux's io_pagetable.c.

mod common;

use common::fixture::*;
use common::*;
use iopt::{
    ClientId, DstIova, Errno, Extent, IovaRange, Prot, ReservedOwner, StreamId, MAX_EXTENTS,
};

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
fn auto_alignment_has_no_cap() {
    // Linux v6.6: min(roundup_pow_of_two(length), the source's lowest set
    // bit), whatever page sizes the domains have.
    let mut fx = Fx::new();
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.map_auto(4 * G1), Ok(4 * G1));
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(K4 | M2)]);
    fx.attach(0).unwrap();
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.map_auto(4 * G1), Ok(4 * G1));
    let mut fx = Fx::new();
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.map_auto(M2), Ok(M2));
}

#[test]
fn auto_alignment_is_at_least_the_ioas_alignment() {
    let mut fx = Fx::new();
    // No domain: a byte-granular source keeps its offset in the page
    // (aligned to min(16, 4), 0x234 or'ed in above IOVA 4096).
    assert_eq!(fx.map_at(PHYS + 0x234, 0x10, DstIova::Auto), Ok(0x1234));
    fx.unmap(0x1234, 0x10).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    assert_eq!(
        fx.map_at(PHYS + 0x800, K4, DstIova::Auto),
        Err(Errno::EINVAL),
        "the source allows only 2 KiB alignment"
    );
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
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
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
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
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
        "length not a multiple of the alignment"
    );
    assert_eq!(
        fx.map_at(PHYS + 0x800, K4, DstIova::Fixed(K4)),
        Err(Errno::EINVAL),
        "offset in the page not a multiple of the alignment"
    );
    let holey = [
        Extent {
            phys: PHYS,
            len: 0x800,
        },
        Extent {
            phys: PHYS + 2 * K4,
            len: K4,
        },
    ];
    assert_eq!(
        fx.map_full(&holey, PHYS, true, DstIova::Auto, RW),
        Err(Errno::EINVAL),
        "a break between extents inside a CPU page"
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
fn a_copy_shares_its_sources_charge() {
    // Linux pins a page once per backing: a copy refers to the same one.
    let mut fx = Fx::new();
    let iova = fx.map_auto(2 * K4).unwrap();
    let copy = fx
        .ioas
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
    assert_eq!(fx.used(), 2);
    fx.unmap(iova, 2 * K4).unwrap();
    assert_eq!(fx.used(), 2, "the copy still holds the pages");
    fx.unmap(copy, 2 * K4).unwrap();
    assert_eq!(fx.used(), 0);
}
