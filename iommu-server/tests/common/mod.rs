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
    fn domain_alloc(&mut self, client: usize) -> Result<DomainId, Errno> {
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
pub struct Rig {
    pub server: iommu_server::Server<'static, MockHw>,
    pub pages: Vec<Vec<u8>>,
}

impl Rig {
    pub fn new(hw: MockHw, configs: &[iommu_server::config::ClientConfig]) -> Rig {
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
