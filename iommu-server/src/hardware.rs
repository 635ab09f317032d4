//! What the server needs from the IOMMU, behind one small trait: the
//! SMMUv3 driver and its page tables implement it in the PD, a recording
//! mock in the tests.

use iommu_proto::Errno;
use iopt::{DomainId, DomainTable};

pub trait Hardware {
    /// A new, empty hardware page table whose table pages are charged to
    /// `client`, which may hold at most `table_pages` of them over all its
    /// domains; ENOMEM when that quota or the pool is exhausted, now or
    /// when a later map needs more tables.
    fn domain_alloc(&mut self, client: usize, table_pages: usize) -> Result<DomainId, Errno>;

    /// Frees a domain that no stream uses and that holds no mappings.
    fn domain_free(&mut self, domain: DomainId);

    /// The live domains, for iopt to fill and empty.
    fn domains(&mut self) -> &mut dyn DomainTable;

    /// Points a stream at a domain: its DMA translates there from now on.
    fn attach(&mut self, stream: u32, domain: DomainId) -> Result<(), Errno>;

    /// Puts a stream back to abort; once this returns, none of its DMA
    /// reaches memory (quarantine).
    fn detach(&mut self, stream: u32) -> Result<(), Errno>;

    /// SMMU_IDR0..5, SMMU_IIDR, SMMU_AIDR, for IOMMU_GET_HW_INFO.
    fn id_regs(&self) -> ([u32; 6], u32, u32);

    /// Whether DMA is cache coherent (VFIO_DMA_CC_IOMMU).
    fn coherent(&self) -> bool;
}
