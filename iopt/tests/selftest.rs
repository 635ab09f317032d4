//! Cases after tools/testing/selftests/iommu/iommufd.c, and the limits
//! they lead to.

mod common;

use common::fixture::*;
use common::*;
use iopt::{ClientId, DstIova, Errno, Extent, IoDomain, IovaRange, Prot, ReservedOwner, StreamId};

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
    // IOMMU_IOAS_UNMAP(0, U64_MAX) is unmap_all, which succeeds empty too.
    let mut fx = Fx::new();
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.ioas.unmap_all(&mut fx.store, &mut fx.doms), Ok(K4));
    assert_eq!(fx.ioas.unmap_all(&mut fx.store, &mut fx.doms), Ok(0));
    // As a range, [0, U64_MAX - 1] (VFIO's unmap), nothing there is ENOENT.
    fx.map_auto(K4).unwrap();
    assert_eq!(fx.unmap(0, u64::MAX), Ok(K4));
    assert_eq!(fx.unmap(0, u64::MAX), Err(Errno::ENOENT));
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
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
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
