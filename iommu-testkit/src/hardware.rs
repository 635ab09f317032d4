//! The server's hardware over mock domains: a recording stream table,
//! failure injection and wedged streams, for the server's tests.

use std::collections::BTreeMap;

use iommu_types::{ClientId, Errno, IovaRange, Prot, StreamId};
use iopt::{DomainId, DomainTable, Hardware, IoDomain, Unconfirmed};

use crate::domain::{MockDomain, ARM_4K};

/// Domains by ID (with their owner) and every stream's current target
/// (`None` = abort). Every request a domain records as one no correct
/// engine makes fails the test at once.
#[derive(Debug)]
pub struct MockHw {
    /// What every new domain looks like: page sizes, aperture, page limit.
    pub template: MockDomain,
    pub domains: Vec<Option<(MockDomain, ClientId)>>,
    pub streams: BTreeMap<StreamId, Option<DomainId>>,
    /// Every attach/detach in order, to check quarantine ordering.
    pub log: Vec<String>,
    /// What the hardware reports as its page-table pool and its domain
    /// slots (the server refuses quotas that add up to more).
    pub table_pages: usize,
    pub max_domains: usize,
    pub fail_attach: bool,
    /// Fail the n-th allocation (domain or page-table work), counting from
    /// 0; for fail-nth sweeps.
    pub fail_at: Option<usize>,
    pub allocations: usize,
    /// Streams whose detach fails (a wedged SMMU).
    pub stuck: Vec<StreamId>,
    /// Every unmap removes its pages but reports its invalidation
    /// unconfirmed (a command queue that no longer completes a sync).
    pub unconfirmed: bool,
    /// Whether `abort_all` stopped every stream; `fail_abort_all` makes it
    /// fail too.
    pub all_aborted: bool,
    pub fail_abort_all: bool,
    /// The coherency new domains report (each keeps its own).
    pub coherent: bool,
    /// The domain the last `DomainTable::domain` call selected.
    pub current: Option<DomainId>,
    /// Streams whose fault records are stopped. As on an SMMUv3, an
    /// attached stream records what its domain records: nothing while a
    /// stopped stream is attached to it.
    pub silenced: Vec<StreamId>,
    /// Calls of `set_recording`, each a hardware operation.
    pub recording_calls: usize,
}

impl Default for MockHw {
    fn default() -> Self {
        MockHw::new()
    }
}

impl MockHw {
    /// Domains of the VMSAv8-64 4 KiB granule over a 48-bit aperture, at
    /// most 8 per client.
    pub fn new() -> MockHw {
        MockHw::with_domains(MockDomain::new(ARM_4K).with_aperture(0, (1 << 48) - 1))
    }

    /// New domains are copies of `template`.
    pub fn with_domains(template: MockDomain) -> MockHw {
        MockHw {
            template,
            domains: Vec::new(),
            streams: BTreeMap::new(),
            log: Vec::new(),
            table_pages: 1 << 20,
            max_domains: 64,
            fail_attach: false,
            fail_at: None,
            allocations: 0,
            stuck: Vec::new(),
            unconfirmed: false,
            all_aborted: false,
            fail_abort_all: false,
            coherent: true,
            current: None,
            silenced: Vec::new(),
            recording_calls: 0,
        }
    }

    /// Counts an allocation; true when this one is to fail.
    fn inject(&mut self) -> bool {
        let n = self.allocations;
        self.allocations += 1;
        self.fail_at == Some(n)
    }

    fn selected(&self) -> &MockDomain {
        self.domain(self.current.expect("a domain was selected"))
    }

    fn selected_mut(&mut self) -> &mut MockDomain {
        let id = self.current.expect("a domain was selected").0 as usize;
        &mut self.domains[id].as_mut().expect("live domain").0
    }

    pub fn live_domains(&self) -> usize {
        self.domains.iter().flatten().count()
    }

    pub fn domain(&self, id: DomainId) -> &MockDomain {
        &self.domains[id.0 as usize].as_ref().expect("live domain").0
    }

    /// Where a stream's DMA to `iova` would land.
    pub fn dma(&self, stream: StreamId, iova: u64) -> Option<u64> {
        if self.all_aborted {
            return None;
        }
        let domain = (*self.streams.get(&stream)?)?;
        self.domain(domain).iova_to_phys(iova)
    }

    /// The domain a stream points at, for `Server::check`.
    pub fn attached(&self, stream: StreamId) -> Option<DomainId> {
        self.streams.get(&stream).copied().flatten()
    }

    fn assert_clean(&self) {
        let d = self.selected();
        assert!(
            d.violations.is_empty(),
            "engine misused a domain: {:?}",
            d.violations
        );
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
        self.selected().page_sizes()
    }

    fn aperture(&self) -> IovaRange {
        self.selected().aperture()
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
        let result = self.selected_mut().map_pages(iova, phys, size, count, prot);
        self.assert_clean();
        result
    }

    fn unmap_pages(&mut self, iova: u64, length: u64) -> Result<u64, Unconfirmed> {
        let unmapped = self.selected_mut().unmap_pages(iova, length);
        self.assert_clean();
        match unmapped {
            Ok(bytes) if self.unconfirmed && bytes > 0 => Err(Unconfirmed { bytes }),
            other => other,
        }
    }

    fn iova_to_phys(&self, iova: u64) -> Option<u64> {
        self.selected().iova_to_phys(iova)
    }
}

impl Hardware for MockHw {
    fn domain_alloc(&mut self, client: ClientId, _table_pages: usize) -> Result<DomainId, Errno> {
        if self.inject() {
            return Err(Errno::ENOMEM);
        }
        if self.live_domains() >= self.max_domains {
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
        let mut domain = self.template.clone();
        domain.coherent = self.coherent;
        self.domains[slot] = Some((domain, client));
        Ok(DomainId(slot as u32))
    }

    fn table_pages(&self) -> usize {
        self.table_pages
    }

    fn max_domains(&self) -> usize {
        self.max_domains
    }

    fn domain_free(&mut self, domain: DomainId) {
        let (d, _) = self.domains[domain.0 as usize]
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

    fn attach(&mut self, stream: StreamId, domain: DomainId) -> Result<(), Errno> {
        if self.fail_attach {
            return Err(Errno::ENOMEM);
        }
        self.log
            .push(format!("attach {:#x} {}", stream.0, domain.0));
        self.streams.insert(stream, Some(domain));
        Ok(())
    }

    fn detach(&mut self, stream: StreamId) -> Result<(), Errno> {
        if self.stuck.contains(&stream) {
            return Err(Errno::EBUSY);
        }
        self.log.push(format!("detach {:#x}", stream.0));
        self.streams.insert(stream, None);
        Ok(())
    }

    fn abort_all(&mut self) -> Result<(), Errno> {
        if self.fail_abort_all {
            return Err(Errno::EIO);
        }
        self.log.push("abort all".into());
        self.all_aborted = true;
        Ok(())
    }

    fn id_regs(&self) -> ([u32; 6], u32, u32) {
        ([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 0, 1)
    }

    fn set_recording(&mut self, stream: StreamId, record: bool) -> Result<(), Errno> {
        self.recording_calls += 1;
        self.silenced.retain(|&s| s != stream);
        if !record {
            self.silenced.push(stream);
        }
        Ok(())
    }

    fn recording(&self, stream: StreamId) -> bool {
        match self.attached(stream) {
            Some(domain) => !self
                .silenced
                .iter()
                .any(|&s| self.attached(s) == Some(domain)),
            None => !self.silenced.contains(&stream),
        }
    }

    fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        write!(out, "mock IOMMU, domains {}", self.live_domains())
    }

    fn coherent(&self, domain: DomainId) -> bool {
        self.domains
            .get(domain.0 as usize)
            .and_then(Option::as_ref)
            .is_some_and(|(d, _)| d.coherent)
    }
}
