//! A recording mock IOMMU for the server's system tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use iommu_proto::Errno;
use iommu_server::Hardware;
use iopt::{DomainId, DomainTable, IoDomain, IovaRange, Prot};

/// A domain that records its pages as hardware would hold them.
#[derive(Debug, Default, Clone)]
pub struct MockDomain {
    /// iova -> (phys, size, prot)
    pub pages: BTreeMap<u64, (u64, u64, Prot)>,
    pub owner: usize,
}

impl IoDomain for MockDomain {
    fn page_sizes(&self) -> u64 {
        (1 << 12) | (1 << 21) | (1 << 30)
    }

    fn aperture(&self) -> IovaRange {
        IovaRange::new(0, (1 << 48) - 1)
    }

    fn map_pages(
        &mut self,
        iova: u64,
        phys: u64,
        size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        for i in 0..count {
            let prev = self
                .pages
                .insert(iova + i * size, (phys + i * size, size, prot));
            assert!(prev.is_none(), "mapped twice at {:#x}", iova + i * size);
        }
        Ok(())
    }

    fn unmap_pages(&mut self, iova: u64, length: u64) -> u64 {
        let last = iova + (length - 1);
        let keys: Vec<u64> = self.pages.range(iova..=last).map(|(&k, _)| k).collect();
        keys.iter().map(|k| self.pages.remove(k).unwrap().1).sum()
    }

    fn iova_to_phys(&self, iova: u64) -> Option<u64> {
        let (&start, &(phys, size, _)) = self.pages.range(..=iova).next_back()?;
        (iova - start < size).then(|| phys + (iova - start))
    }
}

/// Domains by ID and every stream's current target (`None` = abort).
#[derive(Debug, Default)]
pub struct MockHw {
    pub domains: Vec<Option<MockDomain>>,
    pub streams: BTreeMap<u32, Option<DomainId>>,
    /// Every attach/detach in order, to check quarantine ordering.
    pub log: Vec<String>,
    /// Domains a client may hold at once.
    pub domain_limit: usize,
    pub fail_attach: bool,
    /// Fail the n-th allocation (domain or page-table work), counting from
    /// 0; for fail-nth sweeps.
    pub fail_at: Option<usize>,
    pub allocations: usize,
    /// Streams whose detach fails (a wedged SMMU).
    pub stuck: Vec<u32>,
    /// The domain the last `DomainTable::domain` call selected.
    pub current: Option<DomainId>,
}

impl MockHw {
    /// Counts an allocation; true when this one is to fail.
    fn inject(&mut self) -> bool {
        let n = self.allocations;
        self.allocations += 1;
        self.fail_at == Some(n)
    }

    pub fn new() -> MockHw {
        MockHw {
            domain_limit: 8,
            ..MockHw::default()
        }
    }

    fn current_domain(&self) -> &MockDomain {
        self.domain(self.current.expect("a domain was selected"))
    }

    pub fn live_domains(&self) -> usize {
        self.domains.iter().flatten().count()
    }

    pub fn domain(&self, id: DomainId) -> &MockDomain {
        self.domains[id.0 as usize].as_ref().expect("live domain")
    }

    /// Where a stream's DMA to `iova` would land.
    pub fn dma(&self, stream: u32, iova: u64) -> Option<u64> {
        let domain = (*self.streams.get(&stream)?)?;
        self.domain(domain).iova_to_phys(iova)
    }
}

impl DomainTable for MockHw {
    fn domain(&mut self, id: DomainId) -> Option<&mut dyn IoDomain> {
        // Domains share the mock's failure injection: route through it.
        self.domains.get(id.0 as usize)?.as_ref()?;
        self.current = Some(id);
        Some(self)
    }
}

impl IoDomain for MockHw {
    fn page_sizes(&self) -> u64 {
        self.current_domain().page_sizes()
    }

    fn aperture(&self) -> IovaRange {
        self.current_domain().aperture()
    }

    fn map_pages(
        &mut self,
        iova: u64,
        phys: u64,
        size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        if self.inject() {
            return Err(Errno::ENOMEM);
        }
        let id = self.current.expect("a domain was selected").0 as usize;
        self.domains[id]
            .as_mut()
            .expect("live domain")
            .map_pages(iova, phys, size, count, prot)
    }

    fn unmap_pages(&mut self, iova: u64, length: u64) -> u64 {
        let id = self.current.expect("a domain was selected").0 as usize;
        self.domains[id]
            .as_mut()
            .expect("live domain")
            .unmap_pages(iova, length)
    }

    fn iova_to_phys(&self, iova: u64) -> Option<u64> {
        self.current_domain().iova_to_phys(iova)
    }
}

impl Hardware for MockHw {
    fn domain_alloc(&mut self, client: usize, _table_pages: usize) -> Result<DomainId, Errno> {
        if self.inject() {
            return Err(Errno::ENOMEM);
        }
        let held = self
            .domains
            .iter()
            .flatten()
            .filter(|d| d.owner == client)
            .count();
        if held >= self.domain_limit {
            return Err(Errno::ENOMEM);
        }
        let slot = self
            .domains
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.domains.len());
        if slot == self.domains.len() {
            self.domains.push(None);
        }
        self.domains[slot] = Some(MockDomain {
            owner: client,
            ..MockDomain::default()
        });
        Ok(DomainId(slot as u32))
    }

    fn domain_free(&mut self, domain: DomainId) {
        let d = self.domains[domain.0 as usize]
            .take()
            .expect("freeing a live domain");
        assert!(d.pages.is_empty(), "domain freed with mappings");
        assert!(
            !self.streams.values().any(|s| *s == Some(domain)),
            "domain freed while a stream uses it"
        );
    }

    fn domains(&mut self) -> &mut dyn DomainTable {
        self
    }

    fn attach(&mut self, stream: u32, domain: DomainId) -> Result<(), Errno> {
        if self.fail_attach {
            return Err(Errno::ENOMEM);
        }
        self.log.push(format!("attach {stream:#x} {}", domain.0));
        self.streams.insert(stream, Some(domain));
        Ok(())
    }

    fn detach(&mut self, stream: u32) -> Result<(), Errno> {
        if self.stuck.contains(&stream) {
            return Err(Errno::EBUSY);
        }
        self.log.push(format!("detach {stream:#x}"));
        self.streams.insert(stream, None);
        Ok(())
    }

    fn id_regs(&self) -> ([u32; 6], u32, u32) {
        ([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 0, 1)
    }

    fn coherent(&self) -> bool {
        true
    }
}

/// Client storage for `n` clients, on the heap.
pub fn clients(n: usize) -> &'static mut [iommu_server::Client] {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(iommu_server::Client::EMPTY);
    }
    Box::leak(v.into_boxed_slice())
}

/// Where every test client sees its command page.
pub const PAGE_VA: u64 = 0x7000_0000;

/// A server over a fresh store and `hw`, and one command page per client.
pub struct Rig<H: Hardware = MockHw> {
    pub server: iommu_server::Server<'static, H>,
    pub pages: Vec<Vec<u8>>,
}

impl<H: Hardware> Rig<H> {
    pub fn new(hw: H, configs: &[iommu_server::config::ClientConfig]) -> Rig<H> {
        use iopt::{Account, AreaSlot, PagesSlot, Store};
        let areas = Box::leak(vec![AreaSlot::EMPTY; 256].into_boxed_slice());
        let pages = Box::leak(vec![PagesSlot::EMPTY; 256].into_boxed_slice());
        let accounts = Box::leak(vec![Account::UNLIMITED; configs.len()].into_boxed_slice());
        let store = Store::new(areas, pages, accounts);
        let server = iommu_server::Server::new(store, hw, clients(configs.len()), configs).unwrap();
        Rig {
            server,
            pages: vec![vec![0; 4096]; configs.len()],
        }
    }

    /// Puts `req` at the start of the client's command page, calls with
    /// MR0 = `size` and MR1 = `mr1`, and reads the struct back.
    pub fn call_with<T>(
        &mut self,
        client: usize,
        op: iommu_proto::Op,
        req: &mut T,
        size: u64,
        mr1: u64,
    ) -> Result<u64, Errno>
    where
        T: zerocopy::IntoBytes + zerocopy::FromBytes + zerocopy::Immutable,
    {
        let page = &mut self.pages[client];
        let bytes = req.as_bytes();
        page[..bytes.len()].copy_from_slice(bytes);
        let reply = self.server.handle(client, op.label(), [size, mr1], page);
        *req = T::read_from_prefix(page).unwrap().0;
        match reply.errno() {
            None => Ok(reply.mr0),
            Some(e) => Err(e),
        }
    }
}

/// The requests most tests make, built the one way.
impl<H: Hardware> Rig<H> {
    pub fn alloc(&mut self, client: usize) -> Result<u32, Errno> {
        let mut cmd = iommu_proto::iommufd::iommu_ioas_alloc {
            size: 12,
            flags: 0,
            out_ioas_id: 0,
        };
        self.call_with(client, iommu_proto::Op::IoasAlloc, &mut cmd, 12, 0)?;
        Ok(cmd.out_ioas_id)
    }

    /// Maps read-write, at `iova` when given, else where the server picks.
    pub fn map(
        &mut self,
        client: usize,
        ioas: u32,
        va: u64,
        len: u64,
        iova: Option<u64>,
    ) -> Result<u64, Errno> {
        use iommu_proto::iommufd::*;
        let fixed = if iova.is_some() {
            IOMMU_IOAS_MAP_FIXED_IOVA
        } else {
            0
        };
        let flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | fixed;
        let mut cmd = iommu_ioas_map {
            size: 40,
            flags,
            ioas_id: ioas,
            reserved: 0,
            user_va: va,
            length: len,
            iova: iova.unwrap_or(0),
        };
        self.call_with(client, iommu_proto::Op::IoasMap, &mut cmd, 40, 0)?;
        Ok(cmd.iova)
    }

    pub fn bind(&mut self, client: usize, index: u64) -> Result<u32, Errno> {
        let mut cmd = iommu_proto::vfio::vfio_device_bind_iommufd {
            argsz: 24,
            flags: 0,
            iommufd: -1,
            out_devid: 0,
            token_uuid_ptr: 0,
        };
        self.call_with(
            client,
            iommu_proto::Op::VfioDeviceBindIommufd,
            &mut cmd,
            24,
            index,
        )?;
        Ok(cmd.out_devid)
    }

    /// Attaches to `pt` (0: the VFIO compat path); returns the HWPT used.
    pub fn attach(&mut self, client: usize, dev: u32, pt: u32) -> Result<u32, Errno> {
        let mut cmd = iommu_proto::vfio::vfio_device_attach_iommufd_pt {
            argsz: 16,
            flags: 0,
            pt_id: pt,
            pasid: 0,
        };
        self.call_with(
            client,
            iommu_proto::Op::VfioDeviceAttachIommufdPt,
            &mut cmd,
            16,
            u64::from(dev),
        )?;
        Ok(cmd.pt_id)
    }
}

/// The server's hardware with hw's real stage-1 page tables (one shared
/// pool) and a recording stream table: the tests' stand-in for the SMMU.
pub struct PtHw {
    pub pool: hw::pgtable::TablePool<'static>,
    /// Tables by domain ID, with their owner and the owner's quota.
    pub tables: Vec<Option<(hw::pgtable::IoPageTable, usize, usize)>>,
    pub streams: BTreeMap<u32, Option<DomainId>>,
    pub flushes: usize,
    current: Option<DomainId>,
}

/// Counts flushes; the tables' invalidation always succeeds here.
pub struct CountingFlush<'a>(&'a mut usize);

impl hw::pgtable::TlbFlush for CountingFlush<'_> {
    fn flush(&mut self, _: &hw::pgtable::Gather) -> Result<(), Errno> {
        *self.0 += 1;
        Ok(())
    }
}

impl PtHw {
    pub fn new(pool_pages: usize) -> PtHw {
        let pages = Box::leak(vec![hw::pgtable::TablePage::ZERO; pool_pages].into_boxed_slice());
        let pool = hw::pgtable::TablePool::new(pages, 0x4000_0000, &hw::pgtable::Coherent);
        PtHw {
            pool,
            tables: Vec::new(),
            streams: BTreeMap::new(),
            flushes: 0,
            current: None,
        }
    }

    /// Table pages `owner` holds over all its tables.
    pub fn owned_tables(&self, owner: usize) -> usize {
        self.tables
            .iter()
            .flatten()
            .filter(|t| t.1 == owner)
            .map(|t| t.0.tables_used())
            .sum()
    }

    /// Where a stream's DMA to `iova` lands, read from the real tables.
    pub fn dma(&self, stream: u32, iova: u64) -> Option<u64> {
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
        let table = &mut tables[id].as_mut().unwrap().0;
        table.set_table_limit(quota.saturating_sub(others));
        let mut tlb = CountingFlush(flushes);
        let mut domain = hw::pgtable::PtDomain {
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

    fn unmap_pages(&mut self, iova: u64, length: u64) -> u64 {
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
    fn domain_alloc(&mut self, client: usize, table_pages: usize) -> Result<DomainId, Errno> {
        if self.owned_tables(client) + 1 > table_pages {
            return Err(Errno::ENOMEM);
        }
        let format = hw::pgtable::Format {
            ias: 48,
            oas: 48,
            mem: hw::pgtable::MemAttr::WriteBack,
        };
        let table = hw::pgtable::IoPageTable::new(&mut self.pool, format)?;
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

    fn attach(&mut self, stream: u32, domain: DomainId) -> Result<(), Errno> {
        self.streams.insert(stream, Some(domain));
        Ok(())
    }

    fn detach(&mut self, stream: u32) -> Result<(), Errno> {
        self.streams.insert(stream, None);
        Ok(())
    }

    fn id_regs(&self) -> ([u32; 6], u32, u32) {
        ([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 0, 1)
    }

    fn coherent(&self) -> bool {
        true
    }
}

/// The setvar address the tests give region symbol `i`, as the Microkit
/// tool would patch it.
pub fn symbol_paddr(i: usize) -> u64 {
    0x6000_0000 + 0x100_0000 * i as u64
}

/// A server over the mock IOMMU configured by this repository's
/// system.xml and iommu.xml (what build.rs generated), pools sized as the
/// server PD sizes them.
pub fn system_server() -> iommu_server::Server<'static, MockHw> {
    use iommu_system::{client_configs, Perms, Region, CLIENTS, TOTAL_MAPPINGS, TOTAL_REGIONS};
    use iopt::{Account, AreaSlot, PagesSlot, Store};
    let storage = Box::leak(Box::new(
        [Region {
            vaddr: 0,
            size: 0,
            paddr: 0,
            perms: Perms::RO,
        }; TOTAL_REGIONS],
    ));
    let configs = client_configs(storage, symbol_paddr);
    let store = Store::new(
        Box::leak(vec![AreaSlot::EMPTY; TOTAL_MAPPINGS].into_boxed_slice()),
        Box::leak(vec![PagesSlot::EMPTY; TOTAL_MAPPINGS].into_boxed_slice()),
        Box::leak(vec![Account::UNLIMITED; CLIENTS.len()].into_boxed_slice()),
    );
    iommu_server::Server::new(store, MockHw::new(), clients(CLIENTS.len()), &configs)
        .expect("the generated configuration is accepted")
}
