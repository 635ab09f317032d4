//! Unmapping from stage-1 page tables: refusals, freed tables, and frees
//! deferred until the invalidation covering them completed.

mod common;

use common::fixture::*;
use common::*;
use hw::pgtable::{Gather, IoPageTable, TablePool, GRANULE};
use iopt::Errno;

// ---- unmap ----------------------------------------------------------------

#[test]
fn unmap_refuses_to_split_blocks_and_changes_nothing() {
    let mut fx = Fx::new(48);
    fx.map_rw(K4, PHYS, K4, 1);
    fx.map_rw(M2, PHYS, M2, 1);
    fx.map_rw(G1, PHYS, G1, 1);
    let splits = [
        (M2 + K4, K4),      // inside the block
        (M2, K4),           // its first page only
        (M2 + M2 - K4, K4), // its last page only
        (0, M2 + K4),       // takes the page, then half the block
        (M2 + K4, 4 * M2),  // from inside the block onwards
        (G1 + M2, M2),      // a 2 MiB piece of the 1 GiB block
        (G1 - K4, 2 * K4),  // the 1 GiB block's first page
        (0, G1 + K4),       // everything up to one page into it
    ];
    for (iova, len) in splits {
        fx.refused(Errno::EINVAL, |fx| {
            fx.pt.unmap(&mut fx.pool, iova, len, &mut Gather::new())
        });
    }
    let (bytes, gather) = fx.unmap(0, 2 * G1);
    assert_eq!(bytes, Ok(K4 + M2 + G1));
    assert_eq!(
        gather.runs(),
        &[run(K4, K4, false), run(M2, M2, false), run(G1, G1, false)]
    );
    assert_eq!(fx.pool.used(), 1);
}

#[test]
fn unmap_arguments() {
    let mut fx = Fx::new(39);
    fx.map_rw(0, PHYS, K4, 8);
    for (iova, len) in [
        (0, 0),
        (0x800, K4),
        (0, 0x800),
        (0, u64::MAX),
        (0xffff_ffff_ffff_f000, 2 * K4),
    ] {
        fx.refused(Errno::EINVAL, |fx| {
            fx.pt.unmap(&mut fx.pool, iova, len, &mut Gather::new())
        });
    }
    // Past the aperture there is nothing to unmap; ranges reaching 2^64,
    // as the IOAS engine sends for "everything", are fine.
    let (bytes, gather) = fx.unmap(1 << 39, K4);
    assert_eq!(bytes, Ok(0));
    assert!(gather.is_empty());
    let (bytes, gather) = fx.unmap(1 << 63, 1 << 63);
    assert_eq!(bytes, Ok(0));
    assert!(gather.is_empty());
    // A hole unmaps nothing and gathers nothing.
    let (bytes, gather) = fx.unmap(G1, G1);
    assert_eq!(bytes, Ok(0));
    assert!(gather.is_empty());
    let (bytes, gather) = fx.unmap(0, 1 << 63);
    assert_eq!(bytes, Ok(8 * K4));
    assert_eq!(gather.runs(), &[run(0, 8 * K4, false)]);
    assert_eq!(fx.pool.used(), 1);
}

#[test]
fn unmap_frees_every_empty_table() {
    let mut fx = Fx::new(48);
    let maps = [
        (0, K4, 1),
        (M2 - 4 * K4, K4, 8),
        (G1 - K4, K4, 2),
        (3 * G1, M2, 3),
        (5 * G1, G1, 1),
        ((1 << 39) - K4, K4, 2),
        ((1 << 47) + 7 * G1, K4, 300),
    ];
    let mut total = 0;
    for &(iova, size, count) in &maps {
        fx.map_rw(iova, PHYS, size, count);
        total += size * count;
    }
    assert!(fx.pool.used() > 10);
    let (bytes, _) = fx.unmap(0, 1 << 48);
    assert_eq!(bytes, Ok(total));
    assert!(fx.layout().is_empty());
    assert_eq!((fx.pool.used(), fx.pt.tables_used()), (1, 1));

    // Page by page, in an order that empties tables from both ends.
    for &(iova, size, count) in &maps {
        fx.map_rw(iova, PHYS, size, count);
    }
    for &(iova, size, count) in maps.iter().rev() {
        for i in (0..count).rev() {
            assert_eq!(fx.unmap(iova + i * size, size).0, Ok(size));
        }
    }
    assert_eq!(fx.pool.used(), 1);
    assert!(fx.layout().is_empty());
}

#[test]
fn partial_unmap_keeps_shared_tables() {
    let mut fx = Fx::new(48);
    fx.map_rw(0, PHYS, K4, 512);
    let (bytes, gather) = fx.unmap(128 * K4, 256 * K4);
    assert_eq!(bytes, Ok(256 * K4));
    assert_eq!(gather.runs(), &[run(128 * K4, 256 * K4, true)]);
    assert_eq!(fx.pt.tables_used(), 4);
    let (_, gather) = fx.unmap(0, 128 * K4);
    assert_eq!(gather.runs(), &[run(0, 128 * K4, true)]);
    // The last page empties every table below the root.
    let (_, gather) = fx.unmap(384 * K4, 128 * K4);
    assert_eq!(gather.runs(), &[run(384 * K4, 128 * K4, false)]);
    assert_eq!(fx.pt.tables_used(), 1);
}

// ---- deferred frees -----------------------------------------------------------

/// Every word of the page at `pa` reads as an invalid descriptor, in the
/// cache and in the memory the SMMU reads.
fn assert_invalid(pool: &TablePool<'_>, ram: &Ram, pa: u64) {
    let cached = pool.table_at(pa).unwrap();
    for i in 0..512u64 {
        let mem = ram.read(pa + i * 8).unwrap();
        assert_eq!(
            (cached.0[i as usize] | mem) & 1,
            0,
            "word {i} of {pa:#x} valid"
        );
    }
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

#[test]
fn freed_tables_are_pending_until_committed() {
    // Root plus three: one 4 KiB page's worth of tables, nothing spare.
    let mut fx = Fx::with(format(48), 4);
    fx.map_rw(0, PHYS, K4, 1);
    let freed = sorted(fx.tables()[1..].to_vec());
    assert_eq!(freed.len(), 3);

    let mut gather = Gather::new();
    assert_eq!(fx.pt.unmap(&mut fx.pool, 0, K4, &mut gather), Ok(K4));
    fx.check();
    assert_eq!(gather.runs(), &[run(0, K4, false)]);
    assert_eq!(fx.pt.tables_used(), 1);
    // Neither in a table nor free: still used.
    let counts = |fx: &Fx| (fx.pool.pending(), fx.pool.free(), fx.pool.used());
    assert_eq!(counts(&fx), (3, 0, 4));
    // While pending they read as invalid descriptors only, memory included.
    for &pa in &freed {
        assert_invalid(&fx.pool, fx.ram, pa);
    }
    // The next map must not take them, and there is nothing else.
    fx.refused(Errno::ENOMEM, |fx| {
        fx.pt.map(&mut fx.pool, G1, PHYS, K4, 1, RW)
    });
    fx.refused(Errno::ENOMEM, |fx| {
        fx.pt.map(&mut fx.pool, 0, PHYS, K4, 1, RW)
    });

    // The flush completed: now they are free and the map reuses them.
    fx.pool.commit_pending();
    fx.check();
    assert_eq!(counts(&fx), (0, 3, 1));
    fx.map_rw(G1, PHYS, K4, 1);
    assert_eq!(sorted(fx.tables()[1..].to_vec()), freed);
    assert_eq!(counts(&fx), (0, 0, 4));
    // Committing with nothing pending changes nothing.
    let before = fx.snapshot();
    fx.pool.commit_pending();
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn pending_tables_are_not_handed_out_by_the_next_map() {
    // Two tables sharing a pool, as domains do: what one frees must not
    // reach the other before the flush, whether the other allocates fresh
    // pages or pages from the free list.
    let (mut pool, ram) = ram_pool(8);
    let mut a = IoPageTable::new(&mut pool, format(48)).unwrap();
    let mut b = IoPageTable::new(&mut pool, format(48)).unwrap();
    ram.roots.lock().unwrap().push((a.root_phys(), 48, 48));
    ram.roots.lock().unwrap().push((b.root_phys(), 48, 48));
    let below_root = |pool: &TablePool<'_>, pt: &IoPageTable| {
        let (_, tables) = Walker::new(pool, pt.root_phys(), 48, 48)
            .enumerate()
            .unwrap();
        sorted(tables[1..].to_vec())
    };
    let mut g = Gather::new();

    a.map(&mut pool, 0, PHYS, K4, 1, RW).unwrap();
    let a_tables = below_root(&pool, &a);
    a.unmap(&mut pool, 0, K4, &mut g).unwrap();
    assert_eq!((pool.pending(), pool.free()), (3, 3));
    // b takes the three fresh pages, not a's pending ones.
    b.map(&mut pool, 0, PHYS, K4, 1, RW).unwrap();
    let b_tables = below_root(&pool, &b);
    assert!(b_tables.iter().all(|t| !a_tables.contains(t)));
    assert_eq!(b.map(&mut pool, G1, PHYS, K4, 1, RW), Err(Errno::ENOMEM));
    for &pa in &a_tables {
        assert_invalid(&pool, ram, pa);
    }
    pool.commit_pending();
    ram.assert_matches(&pool);

    // Now the free list holds a's old tables; b's freed ones go pending
    // and the next map takes from the free list only.
    b.unmap(&mut pool, 0, K4, &mut g).unwrap();
    assert_eq!((pool.pending(), pool.free()), (3, 3));
    a.map(&mut pool, 5 * G1, PHYS, K4, 1, RW).unwrap();
    assert_eq!(below_root(&pool, &a), a_tables);
    assert_eq!(
        a.map(&mut pool, 1 << 40, PHYS, K4, 1, RW),
        Err(Errno::ENOMEM)
    );
    for &pa in &b_tables {
        assert_invalid(&pool, ram, pa);
    }
    pool.commit_pending();
    a.map(&mut pool, 1 << 40, PHYS, K4, 1, RW).unwrap();
    assert_eq!(pool.free(), 0);
    ram.assert_matches(&pool);
    assert_eq!(pool.used(), a.tables_used() + b.tables_used());
}

#[test]
fn a_failed_flush_leaks_the_pending_tables_for_good() {
    let mut fx = Fx::with(format(48), 6);
    fx.map_rw(0, PHYS, K4, 1);
    let freed = sorted(fx.tables()[1..].to_vec());
    let mut gather = Gather::new();
    fx.pt.unmap(&mut fx.pool, 0, K4, &mut gather).unwrap();
    // The flush failed: give them up.
    assert_eq!(fx.pool.leak_pending(), 3);
    fx.check();
    assert_eq!(
        (fx.pool.pending(), fx.pool.leaked(), fx.pool.free()),
        (0, 3, 2)
    );
    assert_eq!(fx.pool.used(), 4);
    // Nothing brings them back: a later commit has nothing to commit.
    fx.pool.commit_pending();
    assert_eq!((fx.pool.free(), fx.pool.leaked()), (2, 3));
    for round in 0..3 {
        fx.refused(Errno::ENOMEM, |fx| {
            fx.pt.map(&mut fx.pool, round * G1, PHYS, K4, 1, RW)
        });
        // A block under the root's level-1 table fits in what is free.
        fx.map_rw(G1, PHYS, G1, 1);
        assert!(fx.tables().iter().all(|t| !freed.contains(t)));
        assert_eq!(fx.unmap(G1, G1).0, Ok(G1));
        assert_eq!(fx.pool.free(), 2);
    }
    for &pa in &freed {
        assert_invalid(&fx.pool, fx.ram, pa);
    }
    // Leaking with nothing pending leaks nothing.
    assert_eq!(fx.pool.leak_pending(), 0);
    assert_eq!(fx.pool.leaked(), 3);

    // Destroying the table frees its own pages, never the leaked ones.
    let Fx { mut pool, ram, pt } = fx;
    ram.roots.lock().unwrap().clear();
    pt.destroy(&mut pool);
    assert_eq!((pool.used(), pool.free(), pool.leaked()), (3, 3, 3));
    let mut pt = IoPageTable::new(&mut pool, format(48)).unwrap();
    pt.map(&mut pool, 0, PHYS, K4, 1, RW).unwrap_err();
    pt.map(&mut pool, G1, PHYS, M2, 1, RW).unwrap();
    let (_, tables) = Walker::new(&pool, pt.root_phys(), 48, 48)
        .enumerate()
        .unwrap();
    assert!(tables.iter().all(|t| !freed.contains(t)));
}

#[test]
fn commit_pending_keeps_every_page() {
    // Pending pages from several unmaps, spliced in front of a non-empty
    // free list: afterwards every page of the pool can still be handed out,
    // each once.
    let pages = 32;
    let mut fx = Fx::with(format(48), pages);
    let region = |i: u64| i << 39;
    for i in 0..6 {
        fx.map_rw(region(i), PHYS, K4, 1);
    }
    assert_eq!(fx.unmap(region(0), K4).0, Ok(K4));
    assert_eq!(fx.pool.free(), pages - 1 - 5 * 3);
    let mut g = Gather::new();
    for i in [3, 1, 5] {
        fx.pt.unmap(&mut fx.pool, region(i), K4, &mut g).unwrap();
    }
    assert_eq!(fx.pool.pending(), 9);
    fx.check();
    fx.pool.commit_pending();
    fx.check();
    assert_eq!(fx.pool.pending(), 0);
    assert_eq!(fx.pool.free(), pages - 1 - 2 * 3);
    // Fill the pool: three tables per 512 GiB region.
    let mut i = 6;
    while fx.pool.free() >= 3 {
        fx.map_rw(region(i), PHYS, K4, 1);
        i += 1;
    }
    assert_eq!(fx.pool.free(), (pages - 1) % 3);
    assert_eq!(fx.tables().len(), pages - fx.pool.free());
}

#[test]
fn map_refuses_to_expose_the_page_table_pool() {
    let mut fx = Fx::new(48);
    let base = fx.pool.phys_base();
    let end = fx.pool.phys_end();
    assert_eq!(end, base + 64 * GRANULE);
    // (phys, size, count): any overlap with [base, end) is refused.
    let overlapping = [
        (base, K4, 1),
        (end - K4, K4, 1),
        (base - K4, K4, 2),
        (end - K4, K4, 2),
        (base - 4 * K4, K4, 100),
        (base, M2, 1),
        (base & !(G1 - 1), G1, 1),
        (0, G1, 4),
    ];
    for (phys, size, count) in overlapping {
        fx.refused(Errno::EINVAL, |fx| {
            fx.pt.map(&mut fx.pool, 0, phys, size, count, RW)
        });
    }
    // Right up to either edge is fine.
    fx.map_rw(0, base - K4, K4, 1);
    fx.map_rw(K4, end, K4, 1);
    fx.map_rw(M2, base - M2, M2, 1);
    fx.map_rw(G1, base - G1, G1, 1);
    assert_eq!(fx.layout().len(), 4);
}
