//! IOAS unmap, cut and copy, after Linux's io_pagetable.c.

mod common;

use common::fixture::*;
use common::*;
use iopt::{ClientId, DstIova, Errno, Extent, Prot};

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
fn zero_and_max_is_a_range_and_unmap_all_is_everything() {
    let mut fx = Fx::new();
    fx.map_fixed(0, K4).unwrap();
    fx.map_fixed(u64::MAX - K4 + 1, K4).unwrap();
    fx.map_auto(M2).unwrap();
    // [0, u64::MAX - 1] would split the area that ends at u64::MAX.
    let before = fx.snapshot();
    assert_eq!(fx.unmap(0, u64::MAX), Err(Errno::ENOENT));
    assert_eq!(fx.snapshot(), before, "a refused unmap changes nothing");
    assert_eq!(
        fx.ioas.unmap_all(&mut fx.store, &mut fx.doms),
        Ok(2 * K4 + M2)
    );
    assert!(fx.areas().is_empty());
    assert_eq!(fx.used(), 0);
    assert_eq!(fx.store.pages_free(), 256);
}

// ---- cut ------------------------------------------------------------------

#[test]
fn cut_needs_huge_pages_disabled_under_a_domain() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, 4 * K4).unwrap();
    // No domain holds the area in blocks: it may be cut (Linux checks the
    // area's storage domain).
    fx.ioas.cut(&mut fx.store, &[0x10_0fff]).unwrap();
    fx.unmap(0x10_0000, 4 * K4).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.map_fixed(0x10_0000, 4 * K4).unwrap();
    assert_eq!(fx.ioas.cut(&mut fx.store, &[0x10_0fff]), Err(Errno::EINVAL));
    fx.ioas.set_huge_pages(&fx.store, true).unwrap();
    fx.unmap(0x10_0000, 4 * K4).unwrap();
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
    fx.map_fixed(0x10_0000, 4 * K4).unwrap();
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
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
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
    // Without a domain and with huge pages on (off, every area is whole
    // CPU pages) areas are byte granular, and so are cuts; the page both
    // halves touch stays charged once.
    fx.detach(0).unwrap();
    assert_eq!(fx.ioas.cut(&mut fx.store, &[0x10_1800]), Err(Errno::EINVAL));
    fx.ioas.set_huge_pages(&fx.store, true).unwrap();
    fx.ioas.cut(&mut fx.store, &[0x10_1800]).unwrap();
    assert_eq!(
        fx.areas(),
        vec![(0x10_0000, 0x10_1800), (0x10_1801, 0x10_3fff)]
    );
    assert_eq!(fx.used(), 4);
    fx.unmap(0x10_1801, 0x27ff).unwrap();
    assert_eq!(fx.used(), 4, "the backing goes with its last area");
    fx.unmap(0x10_0000, 0x1801).unwrap();
    assert_eq!(fx.used(), 0);
}

#[test]
fn cut_runs_out_of_nodes_atomically() {
    let mut fx = Fx::with_store(store(2, 4, 1));
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
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
