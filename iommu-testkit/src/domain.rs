//! A mock IO page table, and a table of them.

use std::collections::BTreeMap;

use iommu_types::{Errno, IovaRange, Prot};
use iopt::{DomainId, DomainTable, IoDomain, Unconfirmed};

pub const K4: u64 = 0x1000;
pub const K64: u64 = 0x1_0000;
pub const M2: u64 = 0x20_0000;
pub const G1: u64 = 0x4000_0000;
/// The VMSAv8-64 4 KiB granule: 4 KiB pages, 2 MiB and 1 GiB blocks.
pub const ARM_4K: u64 = K4 | M2 | G1;

/// One page a mock domain was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub phys: u64,
    pub size: u64,
    pub prot: Prot,
}

/// A domain that records every page exactly as hardware would see it and
/// flags any request a real page table would have to refuse.
#[derive(Debug, Clone)]
pub struct MockDomain {
    pub sizes: u64,
    pub aperture: IovaRange,
    /// Keyed by IOVA.
    pub pages: BTreeMap<u64, Page>,
    /// Map calls fail with ENOMEM once this many pages would be held.
    pub page_limit: usize,
    pub map_calls: usize,
    pub unmap_calls: usize,
    /// Requests no correct engine makes (overlaps, split blocks, ...).
    pub violations: Vec<String>,
    /// Whether DMA through it is cache coherent (Linux: enforces cache
    /// coherency).
    pub coherent: bool,
}

impl MockDomain {
    pub fn new(sizes: u64) -> MockDomain {
        MockDomain {
            sizes,
            aperture: IovaRange::ALL,
            pages: BTreeMap::new(),
            page_limit: usize::MAX,
            map_calls: 0,
            unmap_calls: 0,
            violations: Vec::new(),
            coherent: true,
        }
    }

    pub fn with_aperture(mut self, start: u64, last: u64) -> MockDomain {
        self.aperture = IovaRange::new(start, last);
        self
    }

    pub fn with_page_limit(mut self, limit: usize) -> MockDomain {
        self.page_limit = limit;
        self
    }

    /// (iova, size) of every page, in order.
    pub fn layout(&self) -> Vec<(u64, u64)> {
        self.pages.iter().map(|(&iova, p)| (iova, p.size)).collect()
    }

    fn overlapping(&self, start: u64, last: u64) -> Vec<(u64, Page)> {
        let mut out: Vec<(u64, Page)> = Vec::new();
        if let Some((&iova, page)) = self.pages.range(..start).next_back() {
            if iova + (page.size - 1) >= start {
                out.push((iova, *page));
            }
        }
        out.extend(self.pages.range(start..=last).map(|(&i, &p)| (i, p)));
        out
    }
}

impl IoDomain for MockDomain {
    fn page_sizes(&self) -> u64 {
        self.sizes
    }

    fn aperture(&self) -> IovaRange {
        self.aperture
    }

    fn map_pages(
        &mut self,
        iova: u64,
        phys: u64,
        page_size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        self.map_calls += 1;
        if count == 0
            || self.sizes & page_size == 0
            || !iova.is_multiple_of(page_size)
            || !phys.is_multiple_of(page_size)
        {
            self.violations.push(format!(
                "bad map {iova:#x} {phys:#x} size {page_size:#x} x{count}"
            ));
            return Err(Errno::EINVAL);
        }
        let last = iova + (page_size * count - 1);
        if !self.aperture.contains(iova) || !self.aperture.contains(last) {
            self.violations
                .push(format!("map outside aperture {iova:#x}..={last:#x}"));
            return Err(Errno::EINVAL);
        }
        if !self.overlapping(iova, last).is_empty() {
            self.violations
                .push(format!("map over existing pages {iova:#x}..={last:#x}"));
            return Err(Errno::EEXIST);
        }
        if self.pages.len() + count as usize > self.page_limit {
            return Err(Errno::ENOMEM);
        }
        for i in 0..count {
            self.pages.insert(
                iova + i * page_size,
                Page {
                    phys: phys + i * page_size,
                    size: page_size,
                    prot,
                },
            );
        }
        Ok(())
    }

    fn unmap_pages(&mut self, iova: u64, length: u64) -> Result<u64, Unconfirmed> {
        self.unmap_calls += 1;
        let last = iova + (length - 1);
        let mut unmapped = 0;
        for (page_iova, page) in self.overlapping(iova, last) {
            if page_iova < iova || page_iova + (page.size - 1) > last {
                self.violations.push(format!(
                    "unmap {iova:#x}..={last:#x} splits page {page_iova:#x}"
                ));
                continue;
            }
            self.pages.remove(&page_iova);
            unmapped += page.size;
        }
        Ok(unmapped)
    }

    fn iova_to_phys(&self, iova: u64) -> Option<u64> {
        let (&start, page) = self.pages.range(..=iova).next_back()?;
        (iova - start < page.size).then(|| page.phys + (iova - start))
    }
}

/// Mock domains addressed by `DomainId(index)`.
#[derive(Debug, Default, Clone)]
pub struct Domains(pub Vec<MockDomain>);

impl Domains {
    pub fn none() -> Domains {
        Domains(Vec::new())
    }

    pub fn with(doms: impl IntoIterator<Item = MockDomain>) -> Domains {
        Domains(doms.into_iter().collect())
    }

    pub fn get(&self, id: u32) -> &MockDomain {
        &self.0[id as usize]
    }

    pub fn get_mut(&mut self, id: u32) -> &mut MockDomain {
        &mut self.0[id as usize]
    }

    pub fn assert_clean(&self) {
        for (i, d) in self.0.iter().enumerate() {
            assert!(d.violations.is_empty(), "domain {i}: {:?}", d.violations);
        }
    }
}

impl DomainTable for Domains {
    fn domain(&mut self, id: DomainId) -> Option<&mut dyn IoDomain> {
        self.0
            .get_mut(id.0 as usize)
            .map(|d| d as &mut dyn IoDomain)
    }
}
