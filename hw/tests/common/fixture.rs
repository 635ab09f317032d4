//! The fixture of the page-table tests: one table over a pool whose
//! memory image a walker checks after every clean.

use hw::pgtable::{Format, Gather, InvRange, IoPageTable, MemAttr, GRANULE};
use iommu_testkit::Lent;
use iommu_types::Errno;

use super::*;

/// Physical memory the tests map: 1 GiB aligned so any block fits.
pub const PHYS: u64 = 0x40_0000_0000;

pub fn format(ias: u32) -> Format {
    Format {
        ias,
        oas: 48,
        mem: MemAttr::WriteBack,
    }
}

/// Pool memory, free, pending and leaked pages and tables held: everything
/// a failed call must leave alone.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    words: Vec<u64>,
    free: usize,
    pending: usize,
    leaked: usize,
    tables: usize,
}

pub struct Fx {
    pub pool: Lent<RamPool>,
    pub ram: &'static Ram,
    pub pt: IoPageTable,
}

impl Fx {
    pub fn new(ias: u32) -> Fx {
        Fx::with(format(ias), 64)
    }

    pub fn with(format: Format, pages: usize) -> Fx {
        let (mut pool, ram) = ram_pool(pages);
        let pt = IoPageTable::new(&mut pool, format).unwrap();
        ram.roots
            .lock()
            .unwrap()
            .push((pt.root_phys(), format.ias, format.oas));
        Fx { pool, ram, pt }
    }

    pub fn map(
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

    pub fn map_rw(&mut self, iova: u64, phys: u64, size: u64, count: u64) {
        self.map(iova, phys, size, count, RW).unwrap();
    }

    /// Unmaps, then stands for a successful flush of the gather: commits
    /// the freed tables.
    pub fn unmap(&mut self, iova: u64, len: u64) -> (Result<u64, Errno>, Gather) {
        let mut gather = Gather::new();
        let result = self.pt.unmap(&mut self.pool, iova, len, &mut gather);
        self.check();
        self.pool.commit_pending();
        self.check();
        (result, gather)
    }

    pub fn walker(&self) -> Walker<'_, TablePool<'static>> {
        let f = self.pt.format();
        Walker::new(&self.pool, self.pt.root_phys(), f.ias, f.oas)
    }

    pub fn leaves(&self) -> Vec<Leaf> {
        self.walker().enumerate().unwrap().0
    }

    /// (iova, pa, size) of every leaf.
    pub fn layout(&self) -> Vec<(u64, u64, u64)> {
        self.leaves()
            .iter()
            .map(|l| (l.iova, l.pa, l.size))
            .collect()
    }

    /// The invariants after every call: memory as the SMMU sees it equals
    /// the cache, the walker reaches exactly the tables the pool handed
    /// out and not yet freed, and no empty table stays linked.
    pub fn check(&self) {
        self.ram.assert_matches(&self.pool);
        let (_, tables) = self.walker().enumerate().unwrap();
        assert_eq!(tables.len(), self.pt.tables_used());
        assert_eq!(
            self.pool.used(),
            self.pt.tables_used() + self.pool.pending() + self.pool.leaked()
        );
    }

    /// The pages of the tables the walker reaches, root included.
    pub fn tables(&self) -> Vec<u64> {
        self.walker().enumerate().unwrap().1
    }

    pub fn snapshot(&self) -> Snapshot {
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
    pub fn refused<T: std::fmt::Debug>(
        &mut self,
        errno: Errno,
        op: impl FnOnce(&mut Fx) -> Result<T, Errno>,
    ) {
        let before = self.snapshot();
        let cleans = self.ram.cleans.load(Relaxed);
        assert_eq!(op(self).unwrap_err(), errno);
        assert_eq!(self.snapshot(), before, "a failed call changed the tables");
        assert_eq!(
            self.ram.cleans.load(Relaxed),
            cleans,
            "a failed call cleaned"
        );
    }
}

pub fn run(iova: u64, len: u64, leaf_only: bool) -> InvRange {
    InvRange {
        iova,
        len,
        leaf_only,
    }
}
