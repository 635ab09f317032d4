//! Invalidation gathering and cache maintenance of stage-1 page tables,
//! and the pool's limits.

mod common;

use common::fixture::*;
use common::*;
use hw::pgtable::{Format, Gather, IoPageTable, GATHER_RUNS, GRANULE};
use iopt::Errno;

// ---- gather -----------------------------------------------------------------

#[test]
fn gather_one_run_per_contiguous_stretch() {
    let mut fx = Fx::new(48);
    // Pages 0, 1, 2, 4, 6, then pages up to a 2 MiB block and beyond it
    // into a new level-3 table.
    for page in [0, 1, 2, 4, 6] {
        fx.map_rw(page * K4, PHYS, K4, 1);
    }
    fx.map_rw(2 * M2 - 2 * K4, PHYS, K4, 2);
    fx.map_rw(2 * M2, PHYS, M2, 1);
    fx.map_rw(3 * M2, PHYS, K4, 1);
    // Keep one page so the first level-3 table survives.
    fx.map_rw(100 * K4, PHYS, K4, 1);

    let (bytes, gather) = fx.unmap(0, 100 * K4);
    assert_eq!(bytes, Ok(5 * K4));
    assert_eq!(
        gather.runs(),
        &[
            run(0, 3 * K4, true),
            run(4 * K4, K4, true),
            run(6 * K4, K4, true)
        ]
    );

    let (bytes, gather) = fx.unmap(101 * K4, G1);
    assert_eq!(bytes, Ok(2 * K4 + M2 + K4));
    // Pages and block are one stretch across two tables; both of its
    // level-3 tables were freed.
    assert_eq!(
        gather.runs(),
        &[run(2 * M2 - 2 * K4, 2 * K4 + M2 + K4, false)]
    );
    assert!(!gather.overflowed());
}

#[test]
fn gather_overflows_into_a_full_flush() {
    let mut fx = Fx::new(48);
    for i in 0..GATHER_RUNS as u64 {
        fx.map_rw(2 * i * K4, PHYS, K4, 1);
    }
    let (_, gather) = fx.unmap(0, M2);
    assert_eq!(gather.runs().len(), GATHER_RUNS);
    assert!(!gather.overflowed());

    for i in 0..=GATHER_RUNS as u64 {
        fx.map_rw(2 * i * K4, PHYS, K4, 1);
    }
    let (bytes, gather) = fx.unmap(0, M2);
    assert_eq!(bytes, Ok((GATHER_RUNS as u64 + 1) * K4));
    assert!(gather.overflowed());
    assert!(!gather.is_empty());
    assert_eq!(fx.pool.used(), 1);
}

#[test]
fn gather_accumulates_across_calls() {
    let mut fx = Fx::new(48);
    fx.map_rw(0, PHYS, K4, 8);
    let mut gather = Gather::new();
    assert!(gather.is_empty());
    fx.pt.unmap(&mut fx.pool, 0, K4, &mut gather).unwrap();
    fx.pt.unmap(&mut fx.pool, K4, K4, &mut gather).unwrap();
    fx.pt.unmap(&mut fx.pool, 3 * K4, K4, &mut gather).unwrap();
    assert_eq!(
        gather.runs(),
        &[run(0, 2 * K4, true), run(3 * K4, K4, true)]
    );
    // Continues the last run; the page at 8 KiB keeps the table.
    fx.pt
        .unmap(&mut fx.pool, 4 * K4, 4 * K4, &mut gather)
        .unwrap();
    assert_eq!(
        gather.runs(),
        &[run(0, 2 * K4, true), run(3 * K4, 5 * K4, true)]
    );
    // Not adjacent to the last run: a new one, which freed the tables.
    fx.pt.unmap(&mut fx.pool, 2 * K4, K4, &mut gather).unwrap();
    assert_eq!(
        gather.runs(),
        &[
            run(0, 2 * K4, true),
            run(3 * K4, 5 * K4, true),
            run(2 * K4, K4, false)
        ]
    );
    // The last unmap freed the level-1..3 tables; they wait for the flush.
    assert_eq!(fx.pool.pending(), 3);
    fx.check();
    fx.pool.commit_pending();
    fx.check();
    assert_eq!((fx.pool.pending(), fx.pool.used()), (0, 1));
    gather.clear();
    assert!(gather.is_empty() && !gather.overflowed());
}

#[test]
fn gather_add_merges_only_adjacent_runs() {
    let mut g = Gather::new();
    g.add(0, K4, true);
    g.add(K4, K4, false);
    g.add(3 * K4, K4, true);
    g.add(u64::MAX - K4 + 1, K4, true);
    assert_eq!(
        g.runs(),
        &[
            run(0, 2 * K4, false),
            run(3 * K4, K4, true),
            run(u64::MAX - K4 + 1, K4, true)
        ]
    );
    // A run that would wrap past 2^64 is not merged.
    g.add(0, K4, true);
    assert_eq!(g.runs().len(), 4);
}

// ---- cache maintenance ---------------------------------------------------------

#[test]
fn every_written_descriptor_is_cleaned_in_order() {
    // Two tables in one garbage-filled pool; after every clean the walker
    // reads memory only and must find well-formed tables (a table linked
    // before it was zeroed in memory would show garbage), and after every
    // call memory equals the cache.
    let (mut pool, ram) = ram_pool(32);
    let f = format(48);
    let mut a = IoPageTable::new(&mut pool, f).unwrap();
    let mut b = IoPageTable::new(&mut pool, Format { ias: 39, ..f }).unwrap();
    ram.roots.lock().unwrap().push((a.root_phys(), 48, 48));
    ram.roots.lock().unwrap().push((b.root_phys(), 39, 48));
    let mut g = Gather::new();
    let steps: &[(bool, u64, u64, u64)] = &[
        // map?, iova, size, count (or len for unmaps)
        (true, 0, K4, 3),
        (true, M2 - K4, K4, 2),
        (true, G1, M2, 2),
        (true, 4 * G1, G1, 1),
        (false, K4, K4, K4),
        (false, 0, G1, G1),
        (true, 0, K4, 700),
        (false, 0, 8 * G1, 8 * G1),
        (true, 0x7f_0000_0000, K4, 1),
    ];
    for &(map, iova, size, count) in steps {
        for pt in [&mut a, &mut b] {
            if map {
                pt.map(&mut pool, iova, PHYS, size, count, RW).unwrap();
            } else {
                pt.unmap(&mut pool, iova, count, &mut g).unwrap();
                // The flush: the freed tables become free.
                g.clear();
                pool.commit_pending();
                assert_eq!(pool.pending(), 0);
            }
            ram.assert_matches(&pool);
        }
    }
    assert_eq!(pool.used(), a.tables_used() + b.tables_used());
    ram.roots.lock().unwrap().remove(0);
    a.destroy(&mut pool);
    ram.assert_matches(&pool);
    assert_eq!(pool.used(), b.tables_used());
    // Pages freed by destroy are reused by a new table: still zero in memory.
    let mut c = IoPageTable::new(&mut pool, f).unwrap();
    ram.roots.lock().unwrap().push((c.root_phys(), 48, 48));
    c.map(&mut pool, 0, PHYS, K4, 1024, RW).unwrap();
    c.map(&mut pool, 1 << 40, PHYS, K4, 1, RW).unwrap();
    ram.assert_matches(&pool);
    let words = ram.words.lock().unwrap().len();
    assert_eq!(words, 32 * 512);
}

#[test]
fn destroy_returns_every_page() {
    let mut fx = Fx::new(48);
    fx.map_rw(0, PHYS, K4, 600);
    fx.map_rw(G1, PHYS, M2, 4);
    fx.map_rw(1 << 40, PHYS, K4, 1);
    let used = fx.pool.used();
    assert!(used >= 8);
    let Fx { mut pool, ram, pt } = fx;
    ram.roots.lock().unwrap().clear();
    pt.destroy(&mut pool);
    assert_eq!(pool.used(), 0);
    ram.assert_matches(&pool);
    // Every page is free again and reads as invalid descriptors only.
    for i in 0..used as u64 {
        let page = pool.table_at(POOL_PA + i * GRANULE).unwrap();
        assert!(page.0.iter().all(|&d| d & 1 == 0), "page {i}");
    }
    let pt = IoPageTable::new(&mut pool, format(48)).unwrap();
    assert_eq!(layout(&pool, pt.root_phys(), 48, 48), vec![]);
}

#[test]
fn the_wrong_pool_is_refused() {
    let mut fx = Fx::new(48);
    fx.map_rw(0, PHYS, K4, 1);
    let mut other = coherent_pool(8);
    let before = fx.snapshot();
    assert_eq!(
        fx.pt.map(&mut other, K4, PHYS, K4, 1, RW),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        fx.pt.unmap(&mut other, 0, K4, &mut Gather::new()),
        Err(Errno::EINVAL)
    );
    assert_eq!(fx.pt.iova_to_phys(&other, 0), None);
    assert_eq!(other.used(), 0);
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn a_table_limit_is_enomem_and_changes_nothing() {
    let mut fx = Fx::new(48);
    fx.pt.set_table_limit(3);
    // A first 4 KiB page needs three more tables below the root.
    assert_eq!(fx.map(0x1000, PHYS, K4, 1, RW), Err(Errno::ENOMEM));
    assert_eq!(fx.pt.tables_used(), 1);
    fx.pt.set_table_limit(4);
    fx.map_rw(0x1000, PHYS, K4, 1);
    assert_eq!(fx.pt.tables_used(), 4);
}
