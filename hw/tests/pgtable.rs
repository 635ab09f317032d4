//! Stage-1 page tables checked against an independent walker: every leaf's
//! address, size and attributes, table allocation and freeing, every
//! errno, invalidation gathering and cache maintenance.

mod common;

use common::*;
use hw::pgtable::{
    Format, Gather, InvRange, IoPageTable, MemAttr, TablePool, GATHER_RUNS, GRANULE, MAIR,
};
use iommu_testkit::Lent;
use iopt::{Errno, IovaRange, Prot};

/// Physical memory the tests map: 1 GiB aligned so any block fits.
const PHYS: u64 = 0x40_0000_0000;

fn format(ias: u32) -> Format {
    Format {
        ias,
        oas: 48,
        mem: MemAttr::WriteBack,
    }
}

/// Pool memory, free, pending and leaked pages and tables held: everything
/// a failed call must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    words: Vec<u64>,
    free: usize,
    pending: usize,
    leaked: usize,
    tables: usize,
}

struct Fx {
    pool: Lent<RamPool>,
    ram: &'static Ram,
    pt: IoPageTable,
}

impl Fx {
    fn new(ias: u32) -> Fx {
        Fx::with(format(ias), 64)
    }

    fn with(format: Format, pages: usize) -> Fx {
        let (mut pool, ram) = ram_pool(pages);
        let pt = IoPageTable::new(&mut pool, format).unwrap();
        ram.roots
            .borrow_mut()
            .push((pt.root_phys(), format.ias, format.oas));
        Fx { pool, ram, pt }
    }

    fn map(
        &mut self,
        iova: u64,
        phys: u64,
        size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        let result = self.pt.map(&mut self.pool, iova, phys, size, count, prot);
        self.check();
        result
    }

    fn map_rw(&mut self, iova: u64, phys: u64, size: u64, count: u64) {
        self.map(iova, phys, size, count, RW).unwrap();
    }

    /// Unmaps, then stands for a successful flush of the gather: commits
    /// the freed tables.
    fn unmap(&mut self, iova: u64, len: u64) -> (Result<u64, Errno>, Gather) {
        let mut gather = Gather::new();
        let result = self.pt.unmap(&mut self.pool, iova, len, &mut gather);
        self.check();
        self.pool.commit_pending();
        self.check();
        (result, gather)
    }

    fn walker(&self) -> Walker<'_, TablePool<'static>> {
        let f = self.pt.format();
        Walker::new(&self.pool, self.pt.root_phys(), f.ias, f.oas)
    }

    fn leaves(&self) -> Vec<Leaf> {
        self.walker().enumerate().unwrap().0
    }

    /// (iova, pa, size) of every leaf.
    fn layout(&self) -> Vec<(u64, u64, u64)> {
        self.leaves()
            .iter()
            .map(|l| (l.iova, l.pa, l.size))
            .collect()
    }

    /// The invariants after every call: memory as the SMMU sees it equals
    /// the cache, the walker reaches exactly the tables the pool handed
    /// out and not yet freed, and no empty table stays linked.
    fn check(&self) {
        self.ram.assert_matches(&self.pool);
        let (_, tables) = self.walker().enumerate().unwrap();
        assert_eq!(tables.len(), self.pt.tables_used());
        assert_eq!(
            self.pool.used(),
            self.pt.tables_used() + self.pool.pending() + self.pool.leaked()
        );
    }

    /// The pages of the tables the walker reaches, root included.
    fn tables(&self) -> Vec<u64> {
        self.walker().enumerate().unwrap().1
    }

    fn snapshot(&self) -> Snapshot {
        let words = (0..self.pool.capacity())
            .flat_map(|i| {
                self.pool
                    .table_at(self.pool.phys_base() + i as u64 * GRANULE)
                    .unwrap()
                    .0
            })
            .collect();
        Snapshot {
            words,
            free: self.pool.free(),
            pending: self.pool.pending(),
            leaked: self.pool.leaked(),
            tables: self.pt.tables_used(),
        }
    }

    /// `op` fails with `errno` and changes nothing.
    fn refused<T: std::fmt::Debug>(
        &mut self,
        errno: Errno,
        op: impl FnOnce(&mut Fx) -> Result<T, Errno>,
    ) {
        let before = self.snapshot();
        let cleans = self.ram.cleans.get();
        assert_eq!(op(self).unwrap_err(), errno);
        assert_eq!(self.snapshot(), before, "a failed call changed the tables");
        assert_eq!(self.ram.cleans.get(), cleans, "a failed call cleaned");
    }
}

fn run(iova: u64, len: u64, leaf_only: bool) -> InvRange {
    InvRange {
        iova,
        len,
        leaf_only,
    }
}

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
    let cleans = fx.ram.cleans.get();
    fx.map_rw(G1, PHYS, K4, 256);
    let want: Vec<_> = (0..256).map(|i| (G1 + i * K4, PHYS + i * K4, K4)).collect();
    assert_eq!(fx.layout(), want);
    assert_eq!(fx.pt.tables_used(), 4);
    // One walk: three new tables zeroed, the page run, and one table
    // descriptor per level; a walk per page would clean 256 times or more.
    assert_eq!(fx.ram.cleans.get() - cleans, 3 + 1 + 3);
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

    let eexist: [(u64, u64, u64); 8] = [
        (0x10_0000, K4, 1),          // the same page
        (0x10_0000 - 8 * K4, K4, 9), // a run whose last page collides
        (0x10_3000, K4, 100),        // a run whose first page collides
        (4 * M2 + 5 * K4, K4, 1),    // a page inside a 2 MiB block
        (0, M2, 1),                  // a block over a table with pages
        (0, G1, 1),                  // a 1 GiB block over tables
        (2 * G1 + M2, M2, 1),        // a 2 MiB block inside a 1 GiB block
        (2 * G1 - 2 * M2, M2, 3),    // a block run ending inside one
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
    ram.roots.borrow_mut().push((a.root_phys(), 48, 48));
    ram.roots.borrow_mut().push((b.root_phys(), 48, 48));
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
    ram.roots.borrow_mut().clear();
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
    ram.roots.borrow_mut().push((a.root_phys(), 48, 48));
    ram.roots.borrow_mut().push((b.root_phys(), 39, 48));
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
    ram.roots.borrow_mut().remove(0);
    a.destroy(&mut pool);
    ram.assert_matches(&pool);
    assert_eq!(pool.used(), b.tables_used());
    // Pages freed by destroy are reused by a new table: still zero in memory.
    let mut c = IoPageTable::new(&mut pool, f).unwrap();
    ram.roots.borrow_mut().push((c.root_phys(), 48, 48));
    c.map(&mut pool, 0, PHYS, K4, 1024, RW).unwrap();
    c.map(&mut pool, 1 << 40, PHYS, K4, 1, RW).unwrap();
    ram.assert_matches(&pool);
    let words = ram.words.borrow().len();
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
    ram.roots.borrow_mut().clear();
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
