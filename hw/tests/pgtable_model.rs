//! Random map / unmap sequences against a plain model of the leaves (a
//! BTreeMap) and of the tables they imply; after every step the independent
//! walker must find exactly the model's leaves, the pool must hold exactly
//! the implied tables plus the freed ones still pending or leaked, memory
//! must equal the cache, and errors and gathered runs must be what the
//! model predicts. Each unmap is followed by a successful flush (commit), a
//! flush still to come (the pages stay pending across later maps) or a
//! failed one (leak).
//!
//! `PGTABLE_MODEL_CASES=20000 cargo test --release -p hw --test pgtable_model`
//! searches harder than the default 256 cases.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use hw::pgtable::{Format, Gather, InvRange, IoPageTable, MemAttr, TablePool, GATHER_RUNS};
use iommu_testkit::Lent;
use iopt::{Errno, Prot};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MLeaf {
    pa: u64,
    size: u64,
    prot: Prot,
}

/// A table below the root, named by its level and the index of the span it
/// covers (IOVA >> bits covered by one table of that level).
type TableKey = (u32, u64);

struct Model {
    ias: u32,
    oas: u32,
    start_level: u32,
    leaves: BTreeMap<u64, MLeaf>,
    /// Leaves under each table; a table exists exactly while this is > 0.
    tables: BTreeMap<TableKey, usize>,
    free: usize,
    /// Freed tables waiting for their flush, and those given up.
    pending: usize,
    leaked: usize,
    /// Physical range of the page-table pool, which no map may reach.
    pool: (u64, u64),
}

/// log2 of the bytes one entry of `level` maps.
fn entry_bits(level: u32) -> u32 {
    [39, 30, 21, 12][level as usize]
}

fn leaf_level(size: u64) -> u32 {
    match size {
        K4 => 3,
        M2 => 2,
        G1 => 1,
        _ => unreachable!(),
    }
}

impl Model {
    /// Tables holding a leaf of `size` at `iova`: one per level below the
    /// root down to the leaf's level.
    fn ancestors(&self, iova: u64, size: u64) -> impl Iterator<Item = TableKey> {
        let start = self.start_level;
        (start + 1..=leaf_level(size)).map(move |level| (level, iova >> entry_bits(level - 1)))
    }

    fn translate(&self, iova: u64) -> Option<u64> {
        let (&start, leaf) = self.leaves.range(..=iova).next_back()?;
        (iova - start < leaf.size).then(|| leaf.pa + (iova - start))
    }

    fn map(
        &mut self,
        iova: u64,
        phys: u64,
        size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        let sizes = if self.start_level <= 1 {
            K4 | M2 | G1
        } else {
            K4 | M2
        };
        if !prot.intersects(RW) || count == 0 || ![K4, M2, G1].contains(&size) {
            return Err(Errno::EINVAL);
        }
        if sizes & size == 0 || !iova.is_multiple_of(size) || !phys.is_multiple_of(size) {
            return Err(Errno::EINVAL);
        }
        let len = size.checked_mul(count).ok_or(Errno::EINVAL)?;
        match iova.checked_add(len) {
            Some(end) if end <= 1 << self.ias => {}
            _ => return Err(Errno::EINVAL),
        }
        match phys.checked_add(len) {
            Some(end) if end <= 1 << self.oas => {
                if phys < self.pool.1 && self.pool.0 < end {
                    return Err(Errno::EINVAL);
                }
            }
            _ => return Err(Errno::EINVAL),
        }
        let last = iova + len - 1;
        let before = self.leaves.range(..iova).next_back();
        if before.is_some_and(|(&s, l)| s + l.size > iova)
            || self.leaves.range(iova..=last).next().is_some()
        {
            return Err(Errno::EEXIST);
        }
        let new: BTreeSet<TableKey> = (0..count)
            .flat_map(|i| self.ancestors(iova + i * size, size))
            .filter(|key| !self.tables.contains_key(key))
            .collect();
        if new.len() > self.free {
            return Err(Errno::ENOMEM);
        }
        self.free -= new.len();
        for i in 0..count {
            let at = iova + i * size;
            for key in self.ancestors(at, size).collect::<Vec<_>>() {
                *self.tables.entry(key).or_default() += 1;
            }
            self.leaves.insert(
                at,
                MLeaf {
                    pa: phys + i * size,
                    size,
                    prot,
                },
            );
        }
        Ok(())
    }

    /// Bytes unmapped, the runs a gather must hold and the IOVA spans of the
    /// tables freed.
    #[allow(clippy::type_complexity)]
    fn unmap(
        &mut self,
        iova: u64,
        len: u64,
    ) -> Result<(u64, Vec<(u64, u64)>, Vec<(u64, u64)>), Errno> {
        if len == 0 || !iova.is_multiple_of(K4) || !len.is_multiple_of(K4) {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(len - 1).ok_or(Errno::EINVAL)?;
        if iova >= 1 << self.ias {
            return Ok((0, vec![], vec![]));
        }
        let last = last.min((1 << self.ias) - 1);
        let mut hit: Vec<(u64, MLeaf)> = Vec::new();
        if let Some((&s, &l)) = self.leaves.range(..iova).next_back() {
            if s + l.size > iova {
                return Err(Errno::EINVAL);
            }
        }
        for (&s, &l) in self.leaves.range(iova..=last) {
            if s + (l.size - 1) > last {
                return Err(Errno::EINVAL);
            }
            hit.push((s, l));
        }
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut freed = Vec::new();
        let mut bytes = 0;
        for (s, l) in hit {
            self.leaves.remove(&s);
            bytes += l.size;
            match runs.last_mut() {
                Some(r) if r.0 + r.1 == s => r.1 += l.size,
                _ => runs.push((s, l.size)),
            }
            for key in self.ancestors(s, l.size).collect::<Vec<_>>() {
                let n = self.tables.get_mut(&key).unwrap();
                *n -= 1;
                if *n == 0 {
                    self.tables.remove(&key);
                    self.pending += 1;
                    let bits = entry_bits(key.0 - 1);
                    freed.push((key.1 << bits, 1u64 << bits));
                }
            }
        }
        Ok((bytes, runs, freed))
    }
}

#[derive(Clone, Debug)]
enum Op {
    Map {
        iova: u64,
        phys: u64,
        size: u64,
        count: u64,
        prot: Prot,
    },
    Unmap {
        iova: u64,
        len: u64,
        then: Flush,
    },
    /// `n` single-page maps with a hole after each: unmapping them later
    /// gathers `n` runs, enough to overflow a gather.
    Scatter {
        iova: u64,
        n: u64,
    },
}

/// What follows an unmap.
#[derive(Clone, Copy, Debug)]
enum Flush {
    /// The flush succeeded: commit the pending tables.
    Commit,
    /// Not flushed yet: the tables stay pending across later operations.
    Later,
    /// The flush failed: leak the pending tables.
    Leak,
}

impl Model {
    fn flushed(&mut self, then: Flush) {
        match then {
            Flush::Commit => self.free += std::mem::take(&mut self.pending),
            Flush::Later => {}
            Flush::Leak => self.leaked += std::mem::take(&mut self.pending),
        }
    }
}

/// IOVAs cluster around table edges of every level so that runs cross
/// them, collide and free tables in every order.
const REGIONS: [u64; 6] = [
    0,
    M2 - 0x10_0000,
    G1 - 0x40_0000,
    3 * G1,
    (1 << 39) - 0x40_0000,
    (1 << 40) - G1,
];

fn op() -> impl Strategy<Value = Op> {
    // Mostly a dense megabyte, so that maps collide and unmaps span many
    // separate runs; sometimes further out.
    let offset = prop_oneof![3 => 0u64..0x10_0000, 1 => 0u64..0x80_0000];
    let iova = (0..REGIONS.len(), offset).prop_map(|(r, off)| REGIONS[r] + off);
    let size_count = prop_oneof![
        6 => (Just(K4), 1u64..=40),
        2 => (Just(K4), 1u64..=700),
        3 => (Just(M2), 1u64..=4),
        1 => (Just(G1), 1u64..=2),
        1 => (prop_oneof![Just(0u64), Just(2 * K4), Just(K4 | M2), Just(1 << 39)], 0u64..=2),
    ];
    let prot = prop_oneof![
        4 => Just(RW),
        2 => Just(Prot::READ),
        1 => Just(Prot::WRITE),
        1 => Just(Prot::empty()),
    ];
    let phys = prop_oneof![
        8 => (0u64..1 << 28).prop_map(|p| p << 12),
        1 => (0u64..4).prop_map(|p| (1 << 40) - (p << 30)),
        // Around the page-table pool, which maps must never reach.
        1 => (0u64..96).prop_map(|p| POOL_PA - 32 * K4 + p * K4),
        1 => any::<u64>(),
    ];
    let map = (iova.clone(), phys, size_count, prot, 0u32..20).prop_map(
        |(iova, phys, (size, count), prot, misalign)| {
            // Mostly aligned to the page size, sometimes not.
            let align = match misalign {
                0 => K4,
                1 => 1,
                _ => size.max(K4),
            };
            let phys_align = if misalign == 2 { K4 } else { size.max(K4) };
            Op::Map {
                iova: iova & !(align - 1),
                phys: phys & !(phys_align - 1),
                size,
                count,
                prot,
            }
        },
    );
    let len = prop_oneof![
        4 => (1u64..=16).prop_map(|n| n * K4),
        3 => (1u64..=1024).prop_map(|n| n * K4),
        2 => (1u64..=1 << 19).prop_map(|n| n * K4),
        1 => prop_oneof![Just(0u64), Just(0x800), Just(u64::MAX), Just(1 << 63)],
    ];
    let then = prop_oneof![
        6 => Just(Flush::Commit),
        3 => Just(Flush::Later),
        1 => Just(Flush::Leak),
    ];
    let unmap =
        (iova, len, any::<bool>(), then).prop_map(|(iova, len, from_edge, then)| Op::Unmap {
            iova: if from_edge {
                iova & !(M2 - 1)
            } else {
                iova & !(K4 - 1)
            },
            len,
            then,
        });
    let scatter = (0..REGIONS.len(), 0u64..0x100, 1u64..=24).prop_map(|(r, page, n)| Op::Scatter {
        iova: REGIONS[r] + page * K4,
        n,
    });
    prop_oneof![6 => map, 4 => unmap, 1 => scatter]
}

fn format_strategy() -> impl Strategy<Value = (u32, u32)> {
    // (ias, oas): level-0, level-1 and level-2 roots.
    prop_oneof![
        Just((48, 48)),
        Just((41, 40)),
        Just((39, 40)),
        Just((32, 44)),
        Just((30, 40))
    ]
}

struct Engine {
    pool: Lent<RamPool>,
    ram: &'static Ram,
    pt: IoPageTable,
}

fn snapshot(pool: &TablePool<'_>) -> Vec<u64> {
    (0..pool.capacity())
        .flat_map(|i| pool.table_at(pool.phys_base() + i as u64 * 4096).unwrap().0)
        .collect()
}

fn compare(e: &Engine, m: &Model, op: &Op) -> Result<(), TestCaseError> {
    e.ram.assert_matches(&e.pool);
    let walker = Walker::new(&e.pool, e.pt.root_phys(), m.ias, m.oas);
    let (leaves, tables) = walker
        .enumerate()
        .map_err(|err| TestCaseError::fail(format!("walk after {op:x?}: {err}")))?;
    let got: Vec<(u64, MLeaf)> = leaves
        .iter()
        .map(|l| {
            (
                l.iova,
                MLeaf {
                    pa: l.pa,
                    size: l.size,
                    prot: if l.read_only { Prot::READ } else { RW },
                },
            )
        })
        .collect();
    let want: Vec<(u64, MLeaf)> = m
        .leaves
        .iter()
        .map(|(&i, &l)| {
            // Write-only is mapped read-write.
            let prot = if l.prot.contains(Prot::WRITE) {
                RW
            } else {
                Prot::READ
            };
            (i, MLeaf { prot, ..l })
        })
        .collect();
    prop_assert!(
        got == want,
        "leaves differ after {:x?}: walker {} model {}",
        op,
        got.len(),
        want.len()
    );
    for (leaf, (_, ml)) in leaves.iter().zip(&m.leaves) {
        assert_attrs(leaf, ml.prot, MemAttr::WriteBack);
    }
    prop_assert_eq!(tables.len(), 1 + m.tables.len(), "tables after {:x?}", op);
    prop_assert_eq!(e.pt.tables_used(), tables.len());
    prop_assert_eq!(e.pool.free(), m.free);
    prop_assert_eq!(e.pool.pending(), m.pending);
    prop_assert_eq!(e.pool.leaked(), m.leaked);
    prop_assert_eq!(e.pool.used(), tables.len() + m.pending + m.leaked);
    let probe = match *op {
        Op::Map { iova, .. } | Op::Unmap { iova, .. } | Op::Scatter { iova, .. } => iova,
    };
    for at in [probe, probe + 0x1234, probe.wrapping_add(M2 + 0x10)] {
        prop_assert_eq!(
            e.pt.iova_to_phys(&e.pool, at),
            m.translate(at),
            "iova_to_phys({:#x})",
            at
        );
    }
    Ok(())
}

/// The gather must list the model's runs, and mark as non-leaf exactly the
/// runs that overlap a freed table.
fn check_gather(
    g: &Gather,
    runs: &[(u64, u64)],
    freed: &[(u64, u64)],
) -> Result<(), TestCaseError> {
    let overlaps = |r: &InvRange, &(s, l): &(u64, u64)| r.iova < s + l && s < r.iova + r.len;
    if runs.len() > GATHER_RUNS {
        prop_assert!(g.overflowed());
        return Ok(());
    }
    prop_assert!(!g.overflowed());
    let got: Vec<(u64, u64)> = g.runs().iter().map(|r| (r.iova, r.len)).collect();
    prop_assert_eq!(&got, &runs.to_vec());
    for table in freed {
        prop_assert!(
            g.runs().iter().any(|r| !r.leaf_only && overlaps(r, table)),
            "freed table {:x?} not covered by a non-leaf run: {:x?}",
            table,
            g.runs()
        );
    }
    for r in g.runs().iter().filter(|r| !r.leaf_only) {
        prop_assert!(
            freed.iter().any(|t| overlaps(r, t)),
            "run {:x?} marked non-leaf but frees no table",
            r
        );
    }
    Ok(())
}

fn run(ias: u32, oas: u32, pages: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (mut pool, ram) = ram_pool(pages);
    let format = Format {
        ias,
        oas,
        mem: MemAttr::WriteBack,
    };
    let pt = IoPageTable::new(&mut pool, format).unwrap();
    let mut m = Model {
        ias,
        oas,
        start_level: format.start_level(),
        leaves: BTreeMap::new(),
        tables: BTreeMap::new(),
        free: pages - 1,
        pending: 0,
        leaked: 0,
        pool: (pool.phys_base(), pool.phys_end()),
    };
    let mut e = Engine { pool, ram, pt };
    for op in &ops {
        let before = snapshot(&e.pool);
        let failed = match *op {
            Op::Map {
                iova,
                phys,
                size,
                count,
                prot,
            } => {
                let want = m.map(iova, phys, size, count, prot);
                let got = e.pt.map(&mut e.pool, iova, phys, size, count, prot);
                prop_assert_eq!(got, want, "{:x?}", op);
                got.is_err()
            }
            Op::Unmap { iova, len, .. } => {
                let want = m.unmap(iova, len);
                let mut g = Gather::new();
                let got = e.pt.unmap(&mut e.pool, iova, len, &mut g);
                prop_assert_eq!(got, want.as_ref().map(|w| w.0).map_err(|e| *e), "{:x?}", op);
                if let Ok((_, runs, freed)) = &want {
                    check_gather(&g, runs, freed)?;
                } else {
                    prop_assert!(g.is_empty());
                }
                got.is_err()
            }
            Op::Scatter { iova, n } => {
                for i in 0..n {
                    let at = iova + 2 * i * K4;
                    let want = m.map(at, at, K4, 1, RW);
                    let got = e.pt.map(&mut e.pool, at, at, K4, 1, RW);
                    prop_assert_eq!(got, want, "{:x?} page {}", op, i);
                }
                false
            }
        };
        if failed {
            prop_assert!(
                snapshot(&e.pool) == before,
                "failed {:x?} changed memory",
                op
            );
        }
        if let Op::Unmap { then, .. } = *op {
            m.flushed(then);
            match then {
                Flush::Commit => e.pool.commit_pending(),
                Flush::Later => {}
                Flush::Leak => {
                    e.pool.leak_pending();
                }
            }
        }
        compare(&e, &m, op)?;
    }
    // Unmapping everything and flushing leaves the root and the leaked
    // pages; destroying frees the root.
    let mut g = Gather::new();
    e.pt.unmap(&mut e.pool, 0, 1 << 63, &mut g).unwrap();
    e.pool.commit_pending();
    prop_assert_eq!(e.pool.used(), 1 + m.leaked);
    let Engine { mut pool, pt, .. } = e;
    pt.destroy(&mut pool);
    prop_assert_eq!(pool.used(), m.leaked);
    ram.assert_matches(&pool);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PGTABLE_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn page_table_matches_model(
        (ias, oas) in format_strategy(),
        pages in 5usize..40,
        ops in prop::collection::vec(op(), 1..48),
    ) {
        run(ias, oas, pages, ops)?;
    }
}

/// The comparison can fail: a leaf the model does not know is caught.
#[test]
fn comparison_catches_a_divergence() {
    let (mut pool, ram) = ram_pool(8);
    let format = Format {
        ias: 48,
        oas: 48,
        mem: MemAttr::WriteBack,
    };
    let mut pt = IoPageTable::new(&mut pool, format).unwrap();
    let m = Model {
        ias: 48,
        oas: 48,
        start_level: 0,
        leaves: BTreeMap::new(),
        tables: BTreeMap::new(),
        free: 7,
        pending: 0,
        leaked: 0,
        pool: (pool.phys_base(), pool.phys_end()),
    };
    pt.map(&mut pool, 0, 0, K4, 1, RW).unwrap();
    let e = Engine { pool, ram, pt };
    let op = Op::Unmap {
        iova: 0,
        len: K4,
        then: Flush::Commit,
    };
    assert!(compare(&e, &m, &op).is_err());
}
