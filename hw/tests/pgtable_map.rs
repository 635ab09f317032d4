//! Stage-1 page tables checked against an independent walker: formats,
//! every leaf's address, size and attributes, and every map errno.

mod common;

use common::fixture::*;
use common::*;
use hw::pgtable::{Format, IoPageTable, MemAttr, GRANULE, MAIR};
use iopt::{Errno, IovaRange, Prot};
use std::sync::atomic::Ordering::Relaxed;

// ---- format ---------------------------------------------------------------

#[test]
fn geometry_follows_ias() {
    // ias, T0SZ, start level, page sizes
    let cases = [
        (48, 16, 0, K4 | M2 | G1),
        (40, 24, 0, K4 | M2 | G1),
        (39, 25, 1, K4 | M2 | G1),
        (31, 33, 1, K4 | M2 | G1),
        (30, 34, 2, K4 | M2),
        (25, 39, 2, K4 | M2),
    ];
    for (ias, t0sz, start, sizes) in cases {
        let f = format(ias);
        assert_eq!((f.t0sz(), f.start_level()), (t0sz, start), "ias {ias}");
        let mut pool = coherent_pool(1);
        let pt = IoPageTable::new(&mut pool, f).unwrap();
        assert_eq!(pt.page_sizes(), sizes, "ias {ias}");
        assert_eq!(pt.aperture(), IovaRange::new(0, (1 << ias) - 1));
        assert_eq!(pt.tables_used(), 1);
        assert_eq!(pt.root_phys(), POOL_PA);
    }
    let mut pool = coherent_pool(2);
    assert_eq!(
        IoPageTable::new(&mut pool, format(48)).unwrap().aperture(),
        IovaRange::new(0, 0xffff_ffff_ffff)
    );
    assert_eq!(
        IoPageTable::new(&mut pool, format(39)).unwrap().aperture(),
        IovaRange::new(0, 0x7f_ffff_ffff)
    );
}

#[test]
fn mair_holds_the_three_memory_types() {
    assert_eq!(MAIR & 0xff_ffff, 0x04_44ff);
    assert_eq!(MAIR >> 24, 0, "unused attributes must be zero");
    for mem in [MemAttr::WriteBack, MemAttr::NonCacheable, MemAttr::Device] {
        let mut fx = Fx::with(
            Format {
                ias: 48,
                oas: 48,
                mem,
            },
            8,
        );
        fx.map_rw(0x10_0000, PHYS, K4, 1);
        fx.map(0x20_0000, PHYS, M2, 1, Prot::READ).unwrap();
        let leaves = fx.leaves();
        assert_attrs(&leaves[0], RW, mem);
        assert_attrs(&leaves[1], Prot::READ, mem);
    }
}

#[test]
fn unsupported_formats_and_pools() {
    let mut pool = coherent_pool(4);
    for (ias, oas) in [(24, 48), (49, 48), (48, 31), (48, 49), (0, 0), (64, 64)] {
        let f = Format {
            ias,
            oas,
            mem: MemAttr::WriteBack,
        };
        assert_eq!(f.validate(), Err(Errno::EINVAL));
        assert_eq!(IoPageTable::new(&mut pool, f).unwrap_err(), Errno::EINVAL);
    }
    assert_eq!(pool.used(), 0);

    let mut empty = coherent_pool(0);
    assert_eq!(
        IoPageTable::new(&mut empty, format(48)).unwrap_err(),
        Errno::ENOMEM
    );
    let mut one = coherent_pool(1);
    IoPageTable::new(&mut one, format(48)).unwrap();
    assert_eq!(
        IoPageTable::new(&mut one, format(48)).unwrap_err(),
        Errno::ENOMEM
    );

    // A pool the walker could not address under oas 40.
    let mut high = pool_at(pages(2, 0), (1 << 40) - GRANULE);
    let f40 = Format {
        ias: 48,
        oas: 40,
        mem: MemAttr::WriteBack,
    };
    assert_eq!(IoPageTable::new(&mut high, f40).unwrap_err(), Errno::EINVAL);
    assert_eq!(high.used(), 0);
    let f41 = Format { oas: 41, ..f40 };
    assert!(IoPageTable::new(&mut high, f41).is_ok());
}

#[test]
fn pool_accounting_and_bounds() {
    let mut pool = coherent_pool(3);
    assert_eq!((pool.capacity(), pool.free(), pool.used()), (3, 3, 0));
    assert_eq!(pool.phys_base(), POOL_PA);
    assert!(pool.table_at(POOL_PA - 1).is_none());
    assert!(pool.table_at(POOL_PA).is_some());
    assert!(pool.table_at(POOL_PA + 3 * GRANULE - 1).is_some());
    assert!(pool.table_at(POOL_PA + 3 * GRANULE).is_none());
    assert!(pool.table_at(u64::MAX).is_none());
    let pt = IoPageTable::new(&mut pool, format(48)).unwrap();
    assert_eq!((pool.free(), pool.used()), (2, 1));
    pt.destroy(&mut pool);
    assert_eq!((pool.free(), pool.used()), (3, 0));

    // Pages a table descriptor could not reach are not used.
    let top = pool_at(pages(4, 0), (1 << 48) - 2 * GRANULE);
    assert_eq!(top.capacity(), 2);
}

// ---- map ------------------------------------------------------------------

#[test]
fn single_page_with_every_attribute() {
    let mut fx = Fx::new(48);
    let iova = 0x1234_5000;
    let pa = PHYS + 0x8765_4000;
    fx.map_rw(iova, pa, K4, 1);

    let leaf = fx.walker().translate(iova + 0x123).unwrap();
    assert_eq!(
        (leaf.iova, leaf.pa, leaf.size, leaf.level),
        (iova, pa, K4, 3)
    );
    assert_attrs(&leaf, RW, MemAttr::WriteBack);
    assert_eq!(fx.leaves(), vec![leaf]);
    // Root, level 1, level 2, level 3.
    assert_eq!(fx.pt.tables_used(), 4);

    assert_eq!(fx.pt.iova_to_phys(&fx.pool, iova + 0x123), Some(pa + 0x123));
    assert_eq!(fx.pt.iova_to_phys(&fx.pool, iova + K4), None);
    assert_eq!(fx.pt.iova_to_phys(&fx.pool, iova - 1), None);
    assert_eq!(
        fx.walker().translate(iova + K4),
        Err(Fault::Translation { level: 3 })
    );
    assert_eq!(
        fx.walker().translate(1 << 40),
        Err(Fault::Translation { level: 0 })
    );

    let (bytes, gather) = fx.unmap(iova, K4);
    assert_eq!(bytes, Ok(K4));
    assert_eq!(gather.runs(), &[run(iova, K4, false)]);
    assert!(!gather.overflowed());
    assert!(fx.layout().is_empty());
    assert_eq!((fx.pt.tables_used(), fx.pool.used()), (1, 1));
    assert_eq!(fx.pt.iova_to_phys(&fx.pool, iova), None);
}

#[test]
fn access_permissions() {
    let mut fx = Fx::new(48);
    fx.map(0, PHYS, K4, 1, Prot::READ).unwrap();
    // Write-only cannot be expressed: it maps read-write.
    fx.map(K4, PHYS, K4, 1, Prot::WRITE).unwrap();
    fx.map(2 * K4, PHYS, K4, 1, RW).unwrap();
    let leaves = fx.leaves();
    assert!(leaves[0].read_only);
    assert!(!leaves[1].read_only);
    assert!(!leaves[2].read_only);
    for (leaf, prot) in leaves.iter().zip([Prot::READ, RW, RW]) {
        assert_attrs(leaf, prot, MemAttr::WriteBack);
    }
    fx.refused(Errno::EINVAL, |fx| {
        fx.pt.map(&mut fx.pool, 3 * K4, PHYS, K4, 1, Prot::empty())
    });
}

#[test]
fn many_pages_in_one_call() {
    let mut fx = Fx::new(48);
    let cleans = fx.ram.cleans.load(Relaxed);
    fx.map_rw(G1, PHYS, K4, 256);
    let want: Vec<_> = (0..256).map(|i| (G1 + i * K4, PHYS + i * K4, K4)).collect();
    assert_eq!(fx.layout(), want);
    assert_eq!(fx.pt.tables_used(), 4);
    // One walk: three new tables zeroed, the page run, and one table
    // descriptor per level; a walk per page would clean 256 times or more.
    assert_eq!(fx.ram.cleans.load(Relaxed) - cleans, 3 + 1 + 3);
    for leaf in fx.leaves() {
        assert_attrs(&leaf, RW, MemAttr::WriteBack);
    }
    assert_eq!(
        fx.pt.iova_to_phys(&fx.pool, G1 + 255 * K4 + 7),
        Some(PHYS + 255 * K4 + 7)
    );
}

#[test]
fn runs_crossing_table_boundaries() {
    // (start, extra tables beyond the root): across a level-3 table edge
    // (2 MiB), a level-2 edge (1 GiB) and a level-1 edge (512 GiB).
    for (start, tables) in [
        (M2 - 128 * K4, 1 + 1 + 2),
        (G1 - 128 * K4, 1 + 2 + 2),
        ((1 << 39) - 128 * K4, 2 + 2 + 2),
    ] {
        let mut fx = Fx::new(48);
        fx.map_rw(start, PHYS, K4, 256);
        let want: Vec<_> = (0..256)
            .map(|i| (start + i * K4, PHYS + i * K4, K4))
            .collect();
        assert_eq!(fx.layout(), want, "start {start:#x}");
        assert_eq!(fx.pt.tables_used(), 1 + tables, "start {start:#x}");

        let (bytes, gather) = fx.unmap(start, 256 * K4);
        assert_eq!(bytes, Ok(256 * K4));
        assert_eq!(gather.runs(), &[run(start, 256 * K4, false)]);
        assert_eq!(fx.pool.used(), 1);
    }
}

#[test]
fn runs_into_one_existing_table_check_every_slot_and_no_other() {
    // One level-3 table, pinned by its last page: every run below goes
    // through the one-table path, whatever its parity at either end.
    let mut fx = Fx::new(48);
    let pin = M2 - K4;
    fx.map_rw(pin, PHYS, K4, 1);
    let tables = fx.pt.tables_used();
    for (first, count) in [
        (0, 1),
        (1, 1),
        (0, 2),
        (1, 2),
        (3, 4),
        (2, 5),
        (1, 128),
        (0, 129),
        (127, 130),
        (5, 256),
        (0, 511),
        (1, 510),
    ] {
        let end = first + count;
        let start = first * K4;
        // A page in each slot at or next to the run's edges and in its
        // middle: inside the run it is EEXIST with nothing changed, outside
        // it must not stop the run.
        let neighbours = [first.wrapping_sub(1), first, first + 1, first + count / 2]
            .into_iter()
            .chain([end.wrapping_sub(2), end - 1, end]);
        for taken in neighbours.filter(|&s| s < 511) {
            fx.map_rw(taken * K4, PHYS + (1 << 30), K4, 1);
            if (first..end).contains(&taken) {
                fx.refused(Errno::EEXIST, |fx| {
                    fx.pt.map(&mut fx.pool, start, PHYS, K4, count, RW)
                });
            } else {
                fx.map_rw(start, PHYS, K4, count);
                let leaves = fx.layout();
                for i in 0..count {
                    assert!(
                        leaves.contains(&(start + i * K4, PHYS + i * K4, K4)),
                        "run {first}+{count}, page {i}, slot {taken} taken"
                    );
                }
                assert_eq!(leaves.len() as u64, count + 2);
                assert_eq!(fx.unmap(start, count * K4).0, Ok(count * K4));
            }
            assert_eq!(fx.unmap(taken * K4, K4).0, Ok(K4));
            assert_eq!(fx.layout(), vec![(pin, PHYS, K4)]);
            assert_eq!(fx.pt.tables_used(), tables);
        }
    }
}

#[test]
fn runs_across_existing_tables() {
    // Two level-3 tables under one level-2 table and a run of 256 pages
    // across their edge, half in each: the tables are reused, and a page
    // already in the second table stops the run before anything of it is
    // written into the first.
    let mut fx = Fx::new(48);
    let edge = G1 + M2;
    fx.map_rw(edge - M2, PHYS, K4, 1);
    fx.map_rw(edge + M2 - K4, PHYS, K4, 1);
    let tables = fx.pt.tables_used();
    let start = edge - 128 * K4;
    for taken in [edge, edge + 127 * K4] {
        fx.map_rw(taken, PHYS, K4, 1);
        fx.refused(Errno::EEXIST, |fx| {
            fx.pt.map(&mut fx.pool, start, PHYS + M2, K4, 256, RW)
        });
        assert_eq!(fx.unmap(taken, K4).0, Ok(K4));
    }
    fx.map_rw(start, PHYS + M2, K4, 256);
    assert_eq!(fx.pt.tables_used(), tables);
    let leaves = fx.layout();
    assert_eq!(leaves.len(), 2 + 256);
    for i in 0..256 {
        assert!(leaves.contains(&(start + i * K4, PHYS + M2 + i * K4, K4)));
    }
}

#[test]
fn two_megabyte_blocks() {
    let mut fx = Fx::new(48);
    fx.map_rw(G1 + M2, PHYS + 4 * M2, M2, 3);
    let leaves = fx.leaves();
    assert_eq!(leaves.len(), 3);
    for (i, leaf) in leaves.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            (leaf.iova, leaf.pa, leaf.size, leaf.level),
            (G1 + (1 + i) * M2, PHYS + (4 + i) * M2, M2, 2)
        );
        assert_attrs(leaf, RW, MemAttr::WriteBack);
    }
    // Root, level 1, level 2: blocks need no level-3 table.
    assert_eq!(fx.pt.tables_used(), 3);
    assert_eq!(
        fx.pt.iova_to_phys(&fx.pool, G1 + 2 * M2 + 0x1_2345),
        Some(PHYS + 5 * M2 + 0x1_2345)
    );
    assert_eq!(
        fx.walker().translate(G1 + 2 * M2 + 0x1_2345).unwrap().pa,
        PHYS + 5 * M2
    );

    // The middle block alone: the level-2 table still holds the others.
    let (bytes, gather) = fx.unmap(G1 + 2 * M2, M2);
    assert_eq!(bytes, Ok(M2));
    assert_eq!(gather.runs(), &[run(G1 + 2 * M2, M2, true)]);
    assert_eq!(fx.pt.tables_used(), 3);
}

#[test]
fn one_gigabyte_blocks() {
    let mut fx = Fx::new(48);
    fx.map_rw(G1, PHYS, G1, 2);
    let leaves = fx.leaves();
    assert_eq!(
        leaves
            .iter()
            .map(|l| (l.iova, l.pa, l.size, l.level))
            .collect::<Vec<_>>(),
        vec![(G1, PHYS, G1, 1), (2 * G1, PHYS + G1, G1, 1)]
    );
    assert_eq!(fx.pt.tables_used(), 2);
    assert_eq!(
        fx.pt.iova_to_phys(&fx.pool, 2 * G1 + 0x3456_7890),
        Some(PHYS + G1 + 0x3456_7890)
    );

    // ias 39 starts at level 1: the root itself holds the block.
    let mut fx = Fx::new(39);
    fx.map_rw(0, PHYS, G1, 1);
    assert_eq!(fx.layout(), vec![(0, PHYS, G1)]);
    assert_eq!(fx.pt.tables_used(), 1);

    // ias 30 starts at level 2: there is no 1 GiB block.
    let mut fx = Fx::new(30);
    fx.refused(Errno::EINVAL, |fx| {
        fx.pt.map(&mut fx.pool, 0, PHYS, G1, 1, RW)
    });
    fx.map_rw(0, PHYS, M2, 1);
    assert_eq!(fx.pt.tables_used(), 1);
}

#[test]
fn small_roots_reach_their_last_entry() {
    // ias 44: a 32-entry level-0 root; ias 25: a 16-entry level-2 root.
    for ias in [44, 25, 39, 30] {
        let mut fx = Fx::new(ias);
        let top = (1u64 << ias) - K4;
        fx.map_rw(top, PHYS, K4, 1);
        fx.map_rw(0, PHYS + K4, K4, 1);
        assert_eq!(fx.layout(), vec![(0, PHYS + K4, K4), (top, PHYS, K4)]);
        fx.refused(Errno::EINVAL, |fx| {
            fx.pt.map(&mut fx.pool, top + K4, PHYS, K4, 1, RW)
        });
        let (bytes, _) = fx.unmap(0, 1 << ias);
        assert_eq!(bytes, Ok(2 * K4));
        assert_eq!(fx.pool.used(), 1);
    }
}

// ---- map errors -----------------------------------------------------------

#[test]
fn eexist_over_pages_blocks_and_tables() {
    let mut fx = Fx::new(48);
    fx.map_rw(0x10_0000, PHYS, K4, 4); // pages in [1 MiB, 1 MiB + 16 KiB)
    fx.map_rw(4 * M2, PHYS, M2, 1); // block at 8 MiB
    fx.map_rw(2 * G1, PHYS, G1, 1); // block at 2 GiB

    let eexist: [(u64, u64, u64); 9] = [
        (0x10_0000, K4, 1),          // the same page
        (0x10_0000 - 8 * K4, K4, 9), // a run whose last page collides
        // ... and one checked over two blocks of slots, the collision
        // in the second: nothing of the first is written.
        (0x10_0000 - 200 * K4, K4, 201),
        (0x10_3000, K4, 100),     // a run whose first page collides
        (4 * M2 + 5 * K4, K4, 1), // a page inside a 2 MiB block
        (0, M2, 1),               // a block over a table with pages
        (0, G1, 1),               // a 1 GiB block over tables
        (2 * G1 + M2, M2, 1),     // a 2 MiB block inside a 1 GiB block
        (2 * G1 - 2 * M2, M2, 3), // a block run ending inside one
    ];
    for (iova, size, count) in eexist {
        fx.refused(Errno::EEXIST, |fx| {
            fx.pt.map(&mut fx.pool, iova, PHYS, size, count, RW)
        });
    }
    // Neighbours of existing leaves are free.
    fx.map_rw(0x10_0000 - K4, PHYS, K4, 1);
    fx.map_rw(0x10_4000, PHYS, K4, 1);
    fx.map_rw(5 * M2, PHYS, M2, 1);
    fx.map_rw(3 * G1, PHYS, G1, 1);
}

#[test]
fn enomem_is_decided_before_writing() {
    // Root plus three: exactly one 4 KiB page's worth of tables.
    let mut fx = Fx::with(format(48), 4);
    fx.map_rw(0, PHYS, K4, 1);
    assert_eq!(fx.pool.free(), 0);
    // Needs a new level-2 and level-3 table.
    fx.refused(Errno::ENOMEM, |fx| {
        fx.pt.map(&mut fx.pool, G1, PHYS, K4, 1, RW)
    });
    // Needs nothing new: the existing level-3 table takes it.
    fx.map_rw(K4, PHYS, K4, 511);
    // A 2 MiB block under the existing level-2 table needs nothing either.
    fx.map_rw(M2, PHYS, M2, 1);

    // A run whose first half fits in what is free and whose second half
    // does not: nothing of it may appear.
    let mut fx = Fx::with(format(48), 6);
    fx.map_rw(0, PHYS, K4, 1); // 4 tables, 2 free
    let start = G1 - 128 * K4; // new L3 below the old L2, then new L2 + L3
    fx.refused(Errno::ENOMEM, |fx| {
        fx.pt.map(&mut fx.pool, start, PHYS, K4, 256, RW)
    });
    // With exactly enough it succeeds.
    let mut fx = Fx::with(format(48), 7);
    fx.map_rw(0, PHYS, K4, 1);
    fx.map_rw(start, PHYS, K4, 256);
    assert_eq!(fx.pool.free(), 0);
}

#[test]
fn einval_for_bad_requests() {
    let mut fx = Fx::with(
        Format {
            ias: 39,
            oas: 40,
            mem: MemAttr::WriteBack,
        },
        16,
    );
    fx.map_rw(0x100_0000, PHYS, K4, 1);
    let top = 1u64 << 39;
    let phys_top = 1u64 << 40;
    let bad: &[(u64, u64, u64, u64)] = &[
        // iova, phys, size, count
        (0x800, PHYS, K4, 1),                 // iova misaligned
        (0, PHYS + 0x800, K4, 1),             // phys misaligned
        (K4, PHYS, M2, 1),                    // iova not block aligned
        (0, PHYS + K4, M2, 1),                // phys not block aligned
        (0, PHYS, 2 * K4, 1),                 // unsupported size
        (0, PHYS, 64 * 1024, 1),              // unsupported size
        (0, PHYS, 0, 1),                      // size zero
        (0, PHYS, 3, 1),                      // not a power of two
        (0, PHYS, K4 | M2, 1),                // two sizes
        (0, PHYS, 1 << 39, 1),                // a 512 GiB "block"
        (0, PHYS, K4, 0),                     // nothing to map
        (0, PHYS, K4, u64::MAX),              // length overflows
        (0, PHYS, K4, 1 << 52),               // length is 2^64
        (top - K4, PHYS, K4, 2),              // runs past the aperture
        (top, PHYS, K4, 1),                   // starts past the aperture
        (0xffff_ffff_ffff_f000, PHYS, K4, 2), // wraps
        (0, phys_top - K4, K4, 2),            // phys past oas
        (0, phys_top, K4, 1),                 // phys past oas
        (0, 0xffff_ffff_ffff_f000, K4, 2),    // phys wraps
    ];
    for &(iova, phys, size, count) in bad {
        fx.refused(Errno::EINVAL, |fx| {
            fx.pt.map(&mut fx.pool, iova, phys, size, count, RW)
        });
    }
    // The edges themselves are fine.
    fx.map_rw(top - K4, phys_top - K4, K4, 1);
    assert_eq!(fx.walker().translate(top - 1).unwrap().pa, phys_top - K4);
}
