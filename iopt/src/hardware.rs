//! What the server needs from an IOMMU, behind one small trait: `hw`'s
//! SMMUv3 driver implements it, a recording mock in the tests. The engine
//! itself needs only [`DomainTable`]; the rest is for the server core,
//! which knows the hardware through nothing else.

use iommu_types::{ClientId, Errno, StreamId};

use crate::domain::{DomainId, DomainTable};

pub trait Hardware {
    /// A new, empty hardware page table whose table pages are charged to
    /// `client`, which may hold at most `table_pages` of them over all its
    /// domains; ENOMEM when that quota or the pool is exhausted, now or
    /// when a later map needs more tables.
    fn domain_alloc(&mut self, client: ClientId, table_pages: usize) -> Result<DomainId, Errno>;

    /// Page-table pages all domains together can ever hold: the pool the
    /// clients' `table_pages` quotas are promised from.
    fn table_pages(&self) -> usize;

    /// Domains that can exist at once (on an SMMUv3, contexts): what the
    /// clients' HWPT quotas are promised from.
    fn max_domains(&self) -> usize;

    /// Frees a domain that no stream uses and that holds no mappings.
    fn domain_free(&mut self, domain: DomainId);

    /// The live domains, for the engine to fill and empty.
    fn domains(&mut self) -> &mut dyn DomainTable;

    /// Points a stream at a domain: its DMA translates there from now on.
    fn attach(&mut self, stream: StreamId, domain: DomainId) -> Result<(), Errno>;

    /// Puts a stream back to abort; once this returns, none of its DMA
    /// reaches memory (quarantine).
    fn detach(&mut self, stream: StreamId) -> Result<(), Errno>;

    /// Stops every stream's DMA by a means that does not depend on what
    /// failed (on an SMMUv3: translation off with GBPA set to abort, no
    /// command queue involved): the last resort when a stream's abort
    /// cannot be confirmed. Once it returns Ok, no DMA reaches memory.
    fn abort_all(&mut self) -> Result<(), Errno>;

    /// SMMU_IDR0..5, SMMU_IIDR, SMMU_AIDR, for IOMMU_GET_HW_INFO.
    fn id_regs(&self) -> ([u32; 6], u32, u32);

    /// Whether DMA through `domain` is cache coherent whatever the device
    /// asks (Linux: the domain enforces cache coherency), for
    /// VFIO_DMA_CC_IOMMU.
    fn coherent(&self, domain: DomainId) -> bool;

    /// Starts or stops recording `stream`'s DMA faults. The hardware may
    /// stop more than the stream: on an SMMUv3 an attached stream's records
    /// are its context's, shared with every stream attached to the same
    /// domain ([`Hardware::recording`] says what each records). EOPNOTSUPP
    /// when the hardware cannot stop records.
    fn set_recording(&mut self, stream: StreamId, record: bool) -> Result<(), Errno> {
        let _ = (stream, record);
        Err(Errno::EOPNOTSUPP)
    }

    /// Whether a DMA fault of `stream` would be recorded now.
    fn recording(&self, stream: StreamId) -> bool {
        let _ = stream;
        true
    }

    /// One line on the hardware's state for a dump (features, domains in
    /// use, failures counted); nothing by default.
    fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let _ = out;
        Ok(())
    }
}

/// Hardware the caller keeps elsewhere (a PD's static), so the server
/// holding it stays small.
impl<H: Hardware + ?Sized> Hardware for &mut H {
    fn domain_alloc(&mut self, client: ClientId, table_pages: usize) -> Result<DomainId, Errno> {
        (**self).domain_alloc(client, table_pages)
    }

    fn table_pages(&self) -> usize {
        (**self).table_pages()
    }

    fn max_domains(&self) -> usize {
        (**self).max_domains()
    }

    fn domain_free(&mut self, domain: DomainId) {
        (**self).domain_free(domain)
    }

    fn domains(&mut self) -> &mut dyn DomainTable {
        (**self).domains()
    }

    fn attach(&mut self, stream: StreamId, domain: DomainId) -> Result<(), Errno> {
        (**self).attach(stream, domain)
    }

    fn detach(&mut self, stream: StreamId) -> Result<(), Errno> {
        (**self).detach(stream)
    }

    fn abort_all(&mut self) -> Result<(), Errno> {
        (**self).abort_all()
    }

    fn id_regs(&self) -> ([u32; 6], u32, u32) {
        (**self).id_regs()
    }

    fn coherent(&self, domain: DomainId) -> bool {
        (**self).coherent(domain)
    }

    fn set_recording(&mut self, stream: StreamId, record: bool) -> Result<(), Errno> {
        (**self).set_recording(stream, record)
    }

    fn recording(&self, stream: StreamId) -> bool {
        (**self).recording(stream)
    }

    fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        (**self).describe(out)
    }
}
