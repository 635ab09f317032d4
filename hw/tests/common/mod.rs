//! Test support for the page tables: an SMMU-style walker written from the
//! Arm ARM (it shares no code with `hw::pgtable`), a cleaner that models
//! the memory a non-coherent walker sees, and pool constructors.
#![allow(dead_code)]

pub mod fixture;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Mutex;

use hw::pgtable::{MemAttr, TablePage, TablePool, MAIR};
use iommu_testkit::recycle::{self, GiveBack, Lent};
use iommu_types::Prot;
use mmio::{CacheClean, Coherent, DmaMemory};

pub const K4: u64 = 0x1000;
pub const M2: u64 = 0x20_0000;
pub const G1: u64 = 0x4000_0000;
pub const RW: Prot = Prot::READ.union(Prot::WRITE);

/// Where test pools live in the SMMU's physical address space.
pub const POOL_PA: u64 = 0x8000_0000;
/// What a pool page holds before the page-table code touches it: all ones
/// reads as a valid table pointing far outside the pool, so a table that
/// was linked in without being zeroed shows up as a walk fault.
pub const GARBAGE: u64 = u64::MAX;

/// Memory a walker reads 64-bit descriptors from, by physical address.
pub trait PhysMem {
    fn read(&self, pa: u64) -> Option<u64>;
}

impl PhysMem for TablePool<'_> {
    fn read(&self, pa: u64) -> Option<u64> {
        let page = self.table_at(pa)?;
        Some(page.0[(pa % 4096 / 8) as usize])
    }
}

/// Why a walk stopped without a translation, as the SMMU reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Invalid or reserved descriptor, or IOVA beyond T0SZ.
    Translation { level: u32 },
    /// An output or table address at or beyond 2^oas.
    AddressSize { level: u32 },
    /// A descriptor read outside the table memory.
    External { pa: u64 },
    /// A descriptor with RES0 bits set, or features this format never uses
    /// (contiguous hint, DBM, NS, software or PBHA bits).
    Malformed { level: u32, desc: u64 },
}

/// One leaf, decoded field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub iova: u64,
    pub pa: u64,
    pub size: u64,
    pub level: u32,
    pub attr_indx: u64,
    /// AP[2]
    pub read_only: bool,
    /// AP[1]
    pub unprivileged: bool,
    pub sh: u64,
    pub af: bool,
    pub ng: bool,
    pub pxn: bool,
    pub uxn: bool,
}

/// A stage-1 walk with the 4 KiB granule over TTB0, as SMMUv3 performs it.
pub struct Walker<'m, M: PhysMem + ?Sized> {
    pub mem: &'m M,
    pub ttb: u64,
    pub ias: u32,
    pub oas: u32,
    /// Whether a linked non-root table without any valid entry is an error
    /// (it is once an operation has returned: empty tables are freed).
    pub forbid_empty: bool,
}

/// The initial lookup level for the 4 KiB granule from T0SZ (Arm ARM
/// D8.2.7, table "Translation table levels"). T0SZ above 39 needs TTST.
fn initial_level(t0sz: u32) -> u32 {
    match t0sz {
        16..=24 => 0,
        25..=33 => 1,
        34..=39 => 2,
        _ => panic!("T0SZ {t0sz} not valid for a 4 KiB granule without TTST"),
    }
}

/// Bit position of the lowest IOVA bit a level resolves.
fn lsb(level: u32) -> u32 {
    match level {
        0 => 39,
        1 => 30,
        2 => 21,
        3 => 12,
        _ => unreachable!(),
    }
}

const OA_BITS: u64 = 0x0000_ffff_ffff_f000;

impl<'m, M: PhysMem + ?Sized> Walker<'m, M> {
    pub fn new(mem: &'m M, ttb: u64, ias: u32, oas: u32) -> Self {
        Walker {
            mem,
            ttb,
            ias,
            oas,
            forbid_empty: true,
        }
    }

    fn first_level(&self) -> u32 {
        initial_level(64 - self.ias)
    }

    fn fetch(&self, table: u64, idx: u64, level: u32) -> Result<u64, Fault> {
        if table >> self.oas != 0 {
            return Err(Fault::AddressSize { level });
        }
        let pa = table + idx * 8;
        self.mem.read(pa).ok_or(Fault::External { pa })
    }

    /// Index of `iova` in a table of `level`.
    fn idx(&self, iova: u64, level: u32) -> u64 {
        let top = if level == self.first_level() {
            self.ias
        } else {
            lsb(level) + 9
        };
        (iova >> lsb(level)) & ((1u64 << (top - lsb(level))) - 1)
    }

    pub fn translate(&self, iova: u64) -> Result<Leaf, Fault> {
        let mut level = self.first_level();
        if iova >> self.ias != 0 {
            return Err(Fault::Translation { level });
        }
        let mut table = self.ttb;
        loop {
            let desc = self.fetch(table, self.idx(iova, level), level)?;
            match self.classify(desc, level)? {
                Some(next) => {
                    table = next;
                    level += 1;
                }
                None => {
                    let size = 1u64 << lsb(level);
                    let mut leaf = self.decode_leaf(desc, level)?;
                    leaf.iova = iova & !(size - 1);
                    return Ok(leaf);
                }
            }
        }
    }

    /// `Some(next table)` for a table descriptor, `None` for a leaf.
    fn classify(&self, desc: u64, level: u32) -> Result<Option<u64>, Fault> {
        match (desc & 0b11, level) {
            (0b00 | 0b10, _) => Err(Fault::Translation { level }),
            // Block encodings do not exist at level 0 (no LPA2) or 3.
            (0b01, 0 | 3) => Err(Fault::Translation { level }),
            (0b01, _) | (0b11, 3) => Ok(None),
            (0b11, _) => {
                // Bits [58:51] and [11:2] of a table descriptor are ignored
                // by the walker but this format never sets them, nor the
                // APTable/XNTable/PXNTable/NSTable bits [63:59].
                if desc & !OA_BITS & !0b11 != 0 {
                    return Err(Fault::Malformed { level, desc });
                }
                let next = desc & OA_BITS;
                if next >> self.oas != 0 {
                    return Err(Fault::AddressSize { level });
                }
                Ok(Some(next))
            }
            _ => unreachable!(),
        }
    }

    fn decode_leaf(&self, desc: u64, level: u32) -> Result<Leaf, Fault> {
        let size = 1u64 << lsb(level);
        let pa = desc & OA_BITS & !(size - 1);
        // RES0 below the output address of a block, bits [51:48] (no LPA),
        // NS (bit 5), contiguous (52), software (58:55), PBHA (62:59).
        let res0_low = (size - 1) & !0xfff & OA_BITS;
        let forbidden =
            res0_low | (0xf << 48) | (1 << 5) | (1 << 52) | (0xf << 55) | (0xf << 59) | (1 << 63);
        if desc & forbidden != 0 {
            return Err(Fault::Malformed { level, desc });
        }
        if pa >> self.oas != 0 {
            return Err(Fault::AddressSize { level });
        }
        let bit = |n: u32| desc >> n & 1 == 1;
        Ok(Leaf {
            iova: 0,
            pa,
            size,
            level,
            attr_indx: desc >> 2 & 0b111,
            read_only: bit(7),
            unprivileged: bit(6),
            sh: desc >> 8 & 0b11,
            af: bit(10),
            ng: bit(11),
            pxn: bit(53),
            uxn: bit(54),
        })
    }

    /// Every valid leaf in IOVA order, and every table reached (root
    /// included). Fails on any fault, on a table reached twice, or on a
    /// non-root table with no valid entry (it should have been freed).
    pub fn enumerate(&self) -> Result<(Vec<Leaf>, Vec<u64>), String> {
        let mut leaves = Vec::new();
        let mut tables = Vec::new();
        let mut seen = BTreeSet::new();
        let level = self.first_level();
        let entries = 1u64 << (self.ias - lsb(level));
        self.walk_table(
            self.ttb,
            level,
            0,
            entries,
            &mut leaves,
            &mut tables,
            &mut seen,
        )?;
        Ok((leaves, tables))
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_table(
        &self,
        table: u64,
        level: u32,
        base: u64,
        entries: u64,
        leaves: &mut Vec<Leaf>,
        tables: &mut Vec<u64>,
        seen: &mut BTreeSet<u64>,
    ) -> Result<(), String> {
        if !seen.insert(table) {
            return Err(format!("table {table:#x} reached twice"));
        }
        tables.push(table);
        let mut valid = 0;
        for i in 0..entries {
            let iova = base + (i << lsb(level));
            let desc = self.fetch(table, i, level).map_err(|f| format!("{f:?}"))?;
            if desc & 1 == 0 {
                continue;
            }
            valid += 1;
            match self.classify(desc, level) {
                Err(f) => return Err(format!("iova {iova:#x}: {f:?} (desc {desc:#x})")),
                Ok(Some(next)) => {
                    self.walk_table(next, level + 1, iova, 512, leaves, tables, seen)?
                }
                Ok(None) => {
                    let mut leaf = self
                        .decode_leaf(desc, level)
                        .map_err(|f| format!("iova {iova:#x}: {f:?}"))?;
                    leaf.iova = iova;
                    leaves.push(leaf);
                }
            }
        }
        if valid == 0 && table != self.ttb && self.forbid_empty {
            return Err(format!(
                "empty table {table:#x} left linked at level {level}"
            ));
        }
        Ok(())
    }
}

/// The MAIR byte each memory type must select (Arm ARM D19.2, MAIR_ELx).
pub fn mair_byte(mem: MemAttr) -> u64 {
    match mem {
        MemAttr::WriteBack => 0xff,
        MemAttr::NonCacheable => 0x44,
        MemAttr::Device => 0x04,
    }
}

/// Checks every attribute of a leaf mapped with `prot` in a `mem` table.
pub fn assert_attrs(leaf: &Leaf, prot: Prot, mem: MemAttr) {
    let ctx = format!("{leaf:x?}");
    assert_eq!(MAIR >> (8 * leaf.attr_indx) & 0xff, mair_byte(mem), "{ctx}");
    assert_eq!(leaf.read_only, !prot.contains(Prot::WRITE), "{ctx}");
    assert!(leaf.unprivileged, "AP[1] clear: {ctx}");
    assert!(leaf.af, "AF clear: {ctx}");
    assert!(leaf.ng, "nG clear: {ctx}");
    assert!(leaf.uxn && leaf.pxn, "executable: {ctx}");
    let sh = if mem == MemAttr::WriteBack {
        0b11
    } else {
        0b10
    };
    assert_eq!(leaf.sh, sh, "{ctx}");
}

/// A cleaner that keeps the memory image a non-coherent SMMU would read:
/// a word reaches it only when cleaned.
pub struct Ram {
    base_ptr: AtomicUsize,
    phys_base: AtomicU64,
    pub words: Mutex<Vec<u64>>,
    pub cleans: AtomicUsize,
    /// Page tables (ttb, ias, oas) to walk in memory after every clean:
    /// the walker must never meet garbage, whatever moment it walks at.
    pub roots: Mutex<Vec<(u64, u32, u32)>>,
}

impl PhysMem for Ram {
    fn read(&self, pa: u64) -> Option<u64> {
        let i = usize::try_from(pa.checked_sub(self.phys_base.load(Relaxed))? / 8).ok()?;
        self.words.lock().unwrap().get(i).copied()
    }
}

impl CacheClean for Ram {
    fn clean(&self, descriptors: &[u64]) {
        let off = (descriptors.as_ptr() as usize)
            .checked_sub(self.base_ptr.load(Relaxed))
            .expect("clean below the pool");
        assert_eq!(off % 8, 0);
        let first = off / 8;
        {
            let mut words = self.words.lock().unwrap();
            assert!(
                first + descriptors.len() <= words.len(),
                "clean beyond the pool"
            );
            words[first..first + descriptors.len()].copy_from_slice(descriptors);
        }
        self.cleans.store(self.cleans.load(Relaxed) + 1, Relaxed);
        for &(ttb, ias, oas) in self.roots.lock().unwrap().iter() {
            let mut walker = Walker::new(self, ttb, ias, oas);
            // Mid-operation, memory may hold a table about to be filled or
            // freed.
            walker.forbid_empty = false;
            if let Err(e) = walker.enumerate() {
                panic!("walker reading memory after a clean: {e}");
            }
        }
    }
}

impl Ram {
    /// Panics unless memory equals the pool's (cached) contents word for word.
    pub fn assert_matches(&self, pool: &TablePool<'_>) {
        let words = self.words.lock().unwrap();
        for page in 0..pool.capacity() {
            let pa = pool.phys_base() + page as u64 * 4096;
            let cached = pool.table_at(pa).unwrap();
            for (i, &d) in cached.0.iter().enumerate() {
                let ram = words[page * 512 + i];
                assert_eq!(
                    ram,
                    d,
                    "word {i} of page {page} (pa {:#x}) written but never cleaned",
                    pa + i as u64 * 8
                );
            }
        }
    }
}

/// `n` pages filled with `fill` (given back when their pool goes).
pub fn pages(n: usize, fill: u64) -> &'static mut [TablePage] {
    recycle::slice(n, TablePage([fill; 512]))
}

/// A pool over `pages`, which the SMMU sees at `pa`.
pub fn pool_at(pages: &'static mut [TablePage], pa: u64) -> Lent<TablePool<'static>> {
    Lent::new(TablePool::new(DmaMemory::host(pages, pa), &Coherent))
}

/// A pool of `n` pages at [`POOL_PA`] for a coherent SMMU.
pub fn coherent_pool(n: usize) -> Lent<TablePool<'static>> {
    pool_at(pages(n, GARBAGE), POOL_PA)
}

thread_local! {
    /// Memory images of pools already dropped, for the next `ram_pool`.
    static SPARE_RAMS: RefCell<Vec<&'static Ram>> = const { RefCell::new(Vec::new()) };
}

/// A pool whose cleaner is a [`Ram`]: gives its pages and its memory image
/// back when dropped.
pub struct RamPool {
    pool: TablePool<'static>,
    ram: &'static Ram,
}

impl GiveBack for RamPool {
    fn give_back(self) {
        self.pool.give_back();
        self.ram.words.lock().unwrap().clear();
        self.ram.words.lock().unwrap().shrink_to_fit();
        self.ram.roots.lock().unwrap().clear();
        SPARE_RAMS.with(|s| s.borrow_mut().push(self.ram));
    }
}

impl std::ops::Deref for RamPool {
    type Target = TablePool<'static>;
    fn deref(&self) -> &TablePool<'static> {
        &self.pool
    }
}

impl std::ops::DerefMut for RamPool {
    fn deref_mut(&mut self) -> &mut TablePool<'static> {
        &mut self.pool
    }
}

impl PhysMem for Lent<RamPool> {
    fn read(&self, pa: u64) -> Option<u64> {
        self.pool.read(pa)
    }
}

impl PhysMem for Lent<TablePool<'static>> {
    fn read(&self, pa: u64) -> Option<u64> {
        (**self).read(pa)
    }
}

/// A pool of `n` garbage-filled pages whose cleaner records memory.
pub fn ram_pool(n: usize) -> (Lent<RamPool>, &'static Ram) {
    let pages = pages(n, GARBAGE);
    let ram = SPARE_RAMS
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| {
            Box::leak(Box::new(Ram {
                base_ptr: AtomicUsize::new(0),
                phys_base: AtomicU64::new(0),
                words: Mutex::new(Vec::new()),
                cleans: AtomicUsize::new(0),
                roots: Mutex::new(Vec::new()),
            }))
        });
    ram.base_ptr.store(pages.as_ptr() as usize, Relaxed);
    ram.phys_base.store(POOL_PA, Relaxed);
    *ram.words.lock().unwrap() = vec![GARBAGE; n * 512];
    ram.cleans.store(0, Relaxed);
    ram.roots.lock().unwrap().clear();
    let pool = TablePool::new(DmaMemory::host(pages, POOL_PA), ram);
    (Lent::new(RamPool { pool, ram }), ram)
}

/// (iova, pa, size, read_only) of every leaf the walker finds.
pub fn layout(pool: &TablePool<'_>, ttb: u64, ias: u32, oas: u32) -> Vec<(u64, u64, u64, bool)> {
    let (leaves, _) = Walker::new(pool, ttb, ias, oas)
        .enumerate()
        .unwrap_or_else(|e| panic!("walk failed: {e}"));
    leaves
        .iter()
        .map(|l| (l.iova, l.pa, l.size, l.read_only))
        .collect()
}

/// How many tables the walker reaches from `ttb`, root included.
pub fn tables_reached(pool: &TablePool<'_>, ttb: u64, ias: u32, oas: u32) -> usize {
    let (_, tables) = Walker::new(pool, ttb, ias, oas)
        .enumerate()
        .unwrap_or_else(|e| panic!("walk failed: {e}"));
    tables.len()
}
