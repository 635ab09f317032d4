//! The SMMU's hardware page tables as the engine's domains, and the
//! SMMUv3 as the server's [`Hardware`]: each domain is one [`IoPageTable`]
//! from a shared [`TablePool`] plus one SMMU context (CD and ASID); unmaps
//! flush that context's TLB before freed tables can be reused. The server
//! PD and the bare-metal demo both run the server on this.

use iommu_types::{ClientId, Errno, Fault, IovaRange, Prot, StreamId};
use iopt::{DomainId, DomainTable, Hardware, IoDomain, Unconfirmed};
use mmio::RegisterBlock;

use crate::pgtable::{Format, IoPageTable, MemAttr, PtDomain, TablePool, MAIR};
use crate::smmu::event::Event;
use crate::smmu::features::Features;
use crate::smmu::{ContextId, ContextTlb, EventStatus, Smmu};

/// Most domains at a time.
pub const MAX_DOMAINS: usize = 16;

#[derive(Debug)]
struct Slot {
    table: IoPageTable,
    ctx: ContextId,
    owner: ClientId,
    /// The owner's table-page quota over all its domains.
    quota: usize,
}

/// Domains backed by an SMMUv3 and its page tables.
pub struct SmmuDomains<'a, R: RegisterBlock> {
    /// Borrowed, so a PD keeps the SMMU's state in a static of its own and
    /// building the domains copies none of it.
    smmu: &'a mut Smmu<R>,
    pool: TablePool<'a>,
    slots: [Option<Slot>; MAX_DOMAINS],
    format: Format,
    current: Option<usize>,
    /// Domains whose release failed (their context could not be
    /// invalidated): their tables stay allocated rather than be reused
    /// while a walker may still hold them.
    leaked: usize,
}

impl<R: RegisterBlock> core::fmt::Debug for SmmuDomains<'_, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SmmuDomains")
            .field("smmu", &self.smmu)
            .field("slots", &self.slots)
            .field("leaked", &self.leaked)
            .finish()
    }
}

impl<'a, R: RegisterBlock> SmmuDomains<'a, R> {
    /// Tables take the SMMU's input and output sizes and write-back memory.
    pub fn new(smmu: &'a mut Smmu<R>, pool: TablePool<'a>) -> SmmuDomains<'a, R> {
        let features = smmu.features();
        let format = Format {
            ias: features.ias,
            oas: features.oas,
            mem: MemAttr::WriteBack,
        };
        SmmuDomains {
            smmu,
            pool,
            slots: Default::default(),
            format,
            current: None,
            leaked: 0,
        }
    }

    pub fn smmu(&mut self) -> &mut Smmu<R> {
        self.smmu
    }

    pub fn features(&self) -> &Features {
        self.smmu.features()
    }

    pub fn pool(&self) -> &TablePool<'a> {
        &self.pool
    }

    /// Table pages `owner` holds over all its domains.
    pub fn owned_tables(&self, owner: ClientId) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.owner == owner)
            .map(|s| s.table.tables_used())
            .sum()
    }

    /// A new empty domain charged to `owner`, which may hold `quota` table
    /// pages in all; ENOMEM past that, the pool, the contexts or the slots.
    pub fn alloc(&mut self, owner: ClientId, quota: usize) -> Result<DomainId, Errno> {
        if self.owned_tables(owner) + 1 > quota {
            return Err(Errno::ENOMEM);
        }
        let index = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(Errno::ENOMEM)?;
        let table = IoPageTable::new(&mut self.pool, self.format)?;
        let ctx = match self
            .smmu
            .alloc_context(table.root_phys(), self.format.t0sz(), MAIR)
        {
            Ok(ctx) => ctx,
            Err(e) => {
                table.destroy(&mut self.pool);
                return Err(e.into());
            }
        };
        self.slots[index] = Some(Slot {
            table,
            ctx,
            owner,
            quota,
        });
        Ok(DomainId(index as u32))
    }

    /// Frees a domain no stream uses (EBUSY otherwise); its context goes
    /// first, with its TLB entries, then its tables.
    pub fn free(&mut self, id: DomainId) -> Result<(), Errno> {
        let index = id.0 as usize;
        let ctx = self
            .slots
            .get(index)
            .and_then(Option::as_ref)
            .ok_or(Errno::ENOENT)?
            .ctx;
        self.smmu.free_context(ctx)?;
        if let Some(slot) = self.slots[index].take() {
            slot.table.destroy(&mut self.pool);
        }
        Ok(())
    }

    /// Points a stream at a domain.
    pub fn attach(&mut self, stream: StreamId, id: DomainId) -> Result<(), Errno> {
        let ctx = self
            .slots
            .get(id.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(Errno::ENOENT)?
            .ctx;
        self.smmu.attach(stream, ctx).map_err(Errno::from)?;
        // The context decides what the stream records from now on: one of
        // the silenced streams now on it silences it. The attach stands
        // either way; a failure here leaves the records on, which the
        // server's own budget still bounds.
        let _ = self.smmu.apply_recording(stream);
        Ok(())
    }

    /// Quarantines a stream (abort); a stream already aborting is fine.
    pub fn detach(&mut self, stream: StreamId) -> Result<(), Errno> {
        match self.smmu.stream_context(stream) {
            Some(ctx) => {
                self.smmu.detach(stream, ctx).map_err(Errno::from)?;
                // The stream left its context (which may record again) and
                // aborts; silenced, it aborts without records.
                let _ = self.smmu.refresh_context_recording(ctx);
                let _ = self.smmu.apply_recording(stream);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Hands every pending SMMU event to `f`.
    pub fn drain_events(&mut self, f: impl FnMut(Event)) -> EventStatus {
        self.smmu.drain_events(f)
    }

    /// Hands at most `max` pending SMMU events to `f` as the faults the
    /// server reports; the rest stay queued (`pending`).
    pub fn drain_faults(&mut self, max: usize, mut f: impl FnMut(Fault)) -> EventStatus {
        self.smmu.drain_events_max(max, |e| f(e.fault()))
    }

    /// Event queue overflows the SMMU signalled so far.
    pub fn event_overflows(&self) -> u32 {
        self.smmu.overflows()
    }

    /// Domains that could not be released.
    pub fn leaked(&self) -> usize {
        self.leaked
    }

    /// The domain `stream`'s STE points at, as the stream table in memory
    /// says (not what the SMMU may have cached).
    pub fn stream_domain(&self, stream: StreamId) -> Option<DomainId> {
        let ctx = self.smmu.stream_context(stream)?;
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.ctx == ctx))
            .map(|i| DomainId(i as u32))
    }

    /// Where `stream`'s DMA to `iova` lands by a walk of the stream table
    /// and page tables in memory: what the SMMU finds once its caches are
    /// invalidated. For diagnostics and tests.
    pub fn walk(&self, stream: StreamId, iova: u64) -> Option<u64> {
        let slot = self.slots[self.stream_domain(stream)?.0 as usize].as_ref()?;
        slot.table.iova_to_phys(&self.pool, iova)
    }

    fn selected(&self) -> Option<&Slot> {
        self.slots.get(self.current?)?.as_ref()
    }

    /// Runs `f` on the selected domain as a [`PtDomain`], its table capped
    /// to what its owner's quota leaves after the owner's other tables.
    fn with_selected<T>(&mut self, fallback: T, f: impl FnOnce(&mut PtDomain<'_, 'a>) -> T) -> T {
        let Some(index) = self.current else {
            return fallback;
        };
        let Some(slot) = self.slots[index].as_ref() else {
            return fallback;
        };
        let others = self.owned_tables(slot.owner) - slot.table.tables_used();
        let limit = slot.quota.saturating_sub(others);
        let SmmuDomains {
            smmu, pool, slots, ..
        } = self;
        let Some(slot) = slots[index].as_mut() else {
            return fallback;
        };
        slot.table.set_table_limit(limit);
        let mut tlb = ContextTlb::new(smmu, slot.ctx);
        let mut domain = PtDomain {
            pt: &mut slot.table,
            pool,
            tlb: &mut tlb,
        };
        f(&mut domain)
    }
}

impl<R: RegisterBlock> DomainTable for SmmuDomains<'_, R> {
    fn domain(&mut self, id: DomainId) -> Option<&mut dyn IoDomain> {
        self.slots.get(id.0 as usize)?.as_ref()?;
        self.current = Some(id.0 as usize);
        Some(self)
    }
}

impl<R: RegisterBlock> IoDomain for SmmuDomains<'_, R> {
    fn page_sizes(&self) -> u64 {
        self.selected().map_or(0, |s| s.table.page_sizes())
    }

    fn aperture(&self) -> IovaRange {
        self.selected()
            .map_or(IovaRange::new(0, 0), |s| s.table.aperture())
    }

    fn map_pages(
        &mut self,
        iova: u64,
        phys: u64,
        page_size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        self.with_selected(Err(Errno::ENODEV), |d| {
            d.map_pages(iova, phys, page_size, count, prot)
        })
    }

    fn unmap_pages(&mut self, iova: u64, length: u64) -> Result<u64, Unconfirmed> {
        self.with_selected(Ok(0), |d| d.unmap_pages(iova, length))
    }

    fn iova_to_phys(&self, iova: u64) -> Option<u64> {
        self.selected()?.table.iova_to_phys(&self.pool, iova)
    }
}

impl<R: RegisterBlock> Hardware for SmmuDomains<'_, R> {
    fn domain_alloc(&mut self, client: ClientId, table_pages: usize) -> Result<DomainId, Errno> {
        self.alloc(client, table_pages)
    }

    fn table_pages(&self) -> usize {
        self.pool.capacity()
    }

    fn max_domains(&self) -> usize {
        MAX_DOMAINS.min(self.smmu.contexts())
    }

    fn domain_free(&mut self, domain: DomainId) {
        if self.free(domain).is_err() {
            self.leaked += 1;
        }
    }

    fn domains(&mut self) -> &mut dyn DomainTable {
        self
    }

    fn attach(&mut self, stream: StreamId, domain: DomainId) -> Result<(), Errno> {
        SmmuDomains::attach(self, stream, domain)
    }

    fn detach(&mut self, stream: StreamId) -> Result<(), Errno> {
        SmmuDomains::detach(self, stream)
    }

    fn abort_all(&mut self) -> Result<(), Errno> {
        self.smmu.abort_all().map_err(Errno::from)
    }

    fn set_recording(&mut self, stream: StreamId, record: bool) -> Result<(), Errno> {
        self.smmu.set_recording(stream, record).map_err(Errno::from)
    }

    fn recording(&self, stream: StreamId) -> bool {
        self.smmu.records(stream)
    }

    fn id_regs(&self) -> ([u32; 6], u32, u32) {
        let ids = self.features().ids;
        (ids.idr, ids.iidr, ids.aidr)
    }

    /// Every domain maps write-back cacheable; a walker and devices that
    /// snoop (IDR0.COHACC) make all of them coherent.
    fn coherent(&self, _domain: DomainId) -> bool {
        self.features().coherent
    }

    fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let f = self.features();
        write!(
            out,
            "SMMUv3, coherent {}, OAS {} IAS {} SID bits {}, 2-level stream table {}, range invalidation {}; domains {}/{}, leaked {}, table pages {}/{}, event queue {} records, overflows {}",
            f.coherent,
            f.oas,
            f.ias,
            f.sid_bits,
            f.two_level_strtab,
            f.range_invalidation,
            self.slots.iter().flatten().count(),
            Hardware::max_domains(self),
            self.leaked,
            self.pool.used(),
            self.pool.capacity(),
            self.smmu.event_queue_entries(),
            self.smmu.overflows()
        )?;
        if self.smmu.disabled() {
            write!(out, "; translation off (an invalidation was not confirmed)")?;
        }
        Ok(())
    }
}
