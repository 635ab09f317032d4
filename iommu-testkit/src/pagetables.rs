//! The server's hardware over `hw`'s real stage-1 page tables (one
//! shared pool) and a recording stream table: the tests' stand-in for the
//! SMMU where the page tables themselves are under test.

use std::collections::BTreeMap;

use hw::pgtable::{Format, Gather, IoPageTable, MemAttr, PtDomain, TablePage, TablePool, TlbFlush};
use iommu_types::{ClientId, Errno, IovaRange, Prot, StreamId};
use iopt::{DomainId, DomainTable, Hardware, IoDomain, Unconfirmed};
use mmio::{Coherent, DmaMemory};

use crate::recycle::{self, Lent};

/// The server's hardware with hw's real stage-1 page tables (one shared
/// pool) and a recording stream table: the tests' stand-in for the SMMU.
pub struct PtHw {
    pub pool: Lent<TablePool<'static>>,
    /// Tables by domain ID, with their owner and the owner's quota.
    pub tables: Vec<Option<(IoPageTable, ClientId, usize)>>,
    pub streams: BTreeMap<StreamId, Option<DomainId>>,
    pub flushes: usize,
    /// Whether `abort_all` stopped every stream.
    pub all_aborted: bool,
    current: Option<DomainId>,
}

/// Counts flushes; the tables' invalidation always succeeds here.
pub struct CountingFlush<'a>(&'a mut usize);

impl TlbFlush for CountingFlush<'_> {
    fn flush(&mut self, _: &Gather) -> Result<(), Errno> {
        *self.0 += 1;
        Ok(())
    }
}

impl PtHw {
    pub fn new(pool_pages: usize) -> PtHw {
        let pages = recycle::slice(pool_pages, TablePage::ZERO);
        let pool = Lent::new(TablePool::new(
            DmaMemory::host(pages, 0x4000_0000),
            &Coherent,
        ));
        PtHw {
            pool,
            tables: Vec::new(),
            streams: BTreeMap::new(),
            flushes: 0,
            all_aborted: false,
            current: None,
        }
    }

    /// Table pages `owner` holds over all its tables.
    pub fn owned_tables(&self, owner: ClientId) -> usize {
        self.tables
            .iter()
            .flatten()
            .filter(|t| t.1 == owner)
            .map(|t| t.0.tables_used())
            .sum()
    }

    /// Where a stream's DMA to `iova` lands, read from the real tables.
    pub fn dma(&self, stream: StreamId, iova: u64) -> Option<u64> {
        if self.all_aborted {
            return None;
        }
        let id = (*self.streams.get(&stream)?)?;
        self.tables[id.0 as usize]
            .as_ref()?
            .0
            .iova_to_phys(&self.pool, iova)
    }

    pub fn live_domains(&self) -> usize {
        self.tables.iter().flatten().count()
    }

    /// The selected table as a domain, its cap set to what its owner's
    /// quota leaves after the owner's other tables.
    fn with_domain<R>(&mut self, f: impl FnOnce(&mut dyn IoDomain) -> R) -> R {
        let id = self.current.expect("a domain was selected").0 as usize;
        let (owner, quota) = self.tables[id]
            .as_ref()
            .map(|t| (t.1, t.2))
            .expect("live domain");
        let others = self.owned_tables(owner) - self.tables[id].as_ref().unwrap().0.tables_used();
        let PtHw {
            pool,
            tables,
            flushes,
            ..
        } = self;
        let pool: &mut TablePool<'static> = pool;
        let table = &mut tables[id].as_mut().unwrap().0;
        table.set_table_limit(quota.saturating_sub(others));
        let mut tlb = CountingFlush(flushes);
        let mut domain = PtDomain {
            pt: table,
            pool,
            tlb: &mut tlb,
        };
        f(&mut domain)
    }
}

impl DomainTable for PtHw {
    fn domain(&mut self, id: DomainId) -> Option<&mut dyn IoDomain> {
        self.tables.get(id.0 as usize)?.as_ref()?;
        self.current = Some(id);
        Some(self)
    }
}

impl IoDomain for PtHw {
    fn page_sizes(&self) -> u64 {
        let id = self.current.expect("a domain was selected").0 as usize;
        self.tables[id].as_ref().unwrap().0.page_sizes()
    }

    fn aperture(&self) -> IovaRange {
        let id = self.current.expect("a domain was selected").0 as usize;
        self.tables[id].as_ref().unwrap().0.aperture()
    }

    fn map_pages(
        &mut self,
        iova: u64,
        phys: u64,
        size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        self.with_domain(|d| d.map_pages(iova, phys, size, count, prot))
    }

    fn unmap_pages(&mut self, iova: u64, length: u64) -> Result<u64, Unconfirmed> {
        self.with_domain(|d| d.unmap_pages(iova, length))
    }

    fn iova_to_phys(&self, iova: u64) -> Option<u64> {
        let id = self.current.expect("a domain was selected").0 as usize;
        self.tables[id]
            .as_ref()
            .unwrap()
            .0
            .iova_to_phys(&self.pool, iova)
    }
}

impl Hardware for PtHw {
    fn domain_alloc(&mut self, client: ClientId, table_pages: usize) -> Result<DomainId, Errno> {
        if self.owned_tables(client) + 1 > table_pages {
            return Err(Errno::ENOMEM);
        }
        let format = Format {
            ias: 48,
            oas: 48,
            mem: MemAttr::WriteBack,
        };
        let table = IoPageTable::new(&mut self.pool, format)?;
        let slot = self
            .tables
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.tables.len());
        if slot == self.tables.len() {
            self.tables.push(None);
        }
        self.tables[slot] = Some((table, client, table_pages));
        Ok(DomainId(slot as u32))
    }

    fn table_pages(&self) -> usize {
        self.pool.capacity()
    }

    fn max_domains(&self) -> usize {
        usize::MAX
    }

    fn domain_free(&mut self, domain: DomainId) {
        assert!(
            !self.streams.values().any(|s| *s == Some(domain)),
            "domain freed while a stream uses it"
        );
        let (table, _, _) = self.tables[domain.0 as usize]
            .take()
            .expect("freeing a live domain");
        table.destroy(&mut self.pool);
    }

    fn domains(&mut self) -> &mut dyn DomainTable {
        self
    }

    fn attach(&mut self, stream: StreamId, domain: DomainId) -> Result<(), Errno> {
        self.streams.insert(stream, Some(domain));
        Ok(())
    }

    fn detach(&mut self, stream: StreamId) -> Result<(), Errno> {
        self.streams.insert(stream, None);
        Ok(())
    }

    fn abort_all(&mut self) -> Result<(), Errno> {
        self.all_aborted = true;
        Ok(())
    }

    fn id_regs(&self) -> ([u32; 6], u32, u32) {
        ([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 0, 1)
    }

    fn coherent(&self, _domain: DomainId) -> bool {
        true
    }
}
