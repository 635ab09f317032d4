//! ARM SMMUv3 driver: stage-1 translation for a set of streams, default
//! deny for everything else.
//!
//! Everything the SMMU reads (stream table, context descriptors, command
//! queue) and writes (event queue) lives in one [`DmaRegion`] handed over at
//! [`Smmu::init`]. Streams are attached to *contexts*: one context
//! descriptor with its own ASID per hardware page table.

pub mod cmd;
pub mod desc;
pub mod event;
pub mod features;
pub mod regs;

use core::fmt;

use iommu_types::{Errno, StreamId};

use crate::pgtable::{Gather, TlbFlush};
use cmd::Command;
use desc::{CdConfig, CD_WORDS, STE_WORDS, STRTAB_SPLIT};
use event::{Event, EVENT_WORDS};
pub use features::{Features, IdRegs, ProbeError};
use mmio::{dma_mb, dma_rmb, dsb_sy, DmaRegion, RegisterBlock};
use regs::*;

/// Most level-2 stream tables (256 streams each) the driver manages.
pub const MAX_L2_TABLES: usize = 16;
/// Most contexts (hardware page tables) at a time.
pub const MAX_CONTEXTS: usize = 64;
/// Polls of an acknowledge or consumer register before giving up.
const POLL_LIMIT: u32 = 1_000_000;
/// Most streams whose fault records are stopped at once
/// ([`Smmu::set_recording`]).
pub const MAX_SILENCED: usize = 64;
/// Stream IDs per level-2 table.
const L2_STREAMS: usize = 1 << STRTAB_SPLIT;
/// Largest linear stream table used when two levels are unsupported.
const LINEAR_MAX_SID_BITS: u32 = 8;

/// Sizes of what [`Smmu::init`] carves out of its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmmuConfig {
    /// log2 of command queue entries, capped by IDR1.CMDQS.
    pub cmdq_log2: u32,
    /// Bytes the event queue may take: it gets as many 32-byte records as
    /// fit (a power of two), capped by what IDR1.EVENTQS offers.
    pub event_queue_bytes: usize,
    /// Level-2 stream tables (at most [`MAX_L2_TABLES`]).
    pub l2_tables: usize,
    /// Context descriptors (at most [`MAX_CONTEXTS`]).
    pub contexts: usize,
    /// Stream ID bits used, capped by IDR1.SIDSIZE.
    pub sid_bits: u32,
}

impl SmmuConfig {
    pub const DEFAULT: SmmuConfig = SmmuConfig {
        cmdq_log2: 8,
        // 4096 records: four times the largest burst a device in the
        // shipped systems makes before the server can stop its records (a
        // 4 KiB transfer faulting once per 4 bytes, as on QEMU), within a
        // quarter of the SMMU's 512 KiB.
        event_queue_bytes: 128 * 1024,
        l2_tables: 4,
        contexts: 16,
        sid_bits: 16,
    };
}

/// A command the SMMU refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdError {
    /// SMMU_CMDQ_CONS.ERR: 1 illegal command, 2 abort reading it, 3 ATC sync.
    pub code: u32,
    pub opcode: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmmuError {
    Probe(ProbeError),
    /// The DMA region is too small for the named structure.
    NoMemory(&'static str),
    /// The named acknowledge register never matched.
    AckTimeout(&'static str),
    /// CMD_SYNC did not complete.
    SyncTimeout,
    Command(CmdError),
    /// Stream ID beyond the stream table or with no level-2 table left.
    NoStream(StreamId),
    /// No free context descriptor.
    NoContext,
    /// The context still has streams attached.
    ContextBusy,
    /// Unknown context, or not the one the stream uses.
    BadContext,
    /// A context's translation parameters are out of range.
    BadFormat,
    /// Translation is off for good ([`Smmu::abort_all`]): nothing attaches.
    Disabled,
}

impl fmt::Display for SmmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmmuError::Probe(p) => write!(f, "{p}"),
            SmmuError::NoMemory(what) => write!(f, "DMA region too small for the {what}"),
            SmmuError::AckTimeout(reg) => write!(f, "{reg} never acknowledged"),
            SmmuError::SyncTimeout => write!(f, "CMD_SYNC did not complete"),
            SmmuError::Command(e) => write!(
                f,
                "command {:#04x} refused, CMDQ_CONS.ERR={}",
                e.opcode, e.code
            ),
            SmmuError::NoStream(StreamId(sid)) => {
                write!(f, "stream {sid:#x} has no stream table entry")
            }
            SmmuError::NoContext => write!(f, "no free context descriptor"),
            SmmuError::ContextBusy => write!(f, "context still has streams attached"),
            SmmuError::BadContext => write!(f, "unknown context, or not the stream's"),
            SmmuError::BadFormat => write!(f, "T0SZ or TTB0 out of range for the context"),
            SmmuError::Disabled => write!(f, "translation is off: every stream aborts"),
        }
    }
}

impl From<SmmuError> for Errno {
    fn from(e: SmmuError) -> Errno {
        match e {
            SmmuError::Probe(_) => Errno::ENODEV,
            SmmuError::NoMemory(_) | SmmuError::NoContext => Errno::ENOMEM,
            SmmuError::NoStream(_) => Errno::ENODEV,
            SmmuError::ContextBusy => Errno::EBUSY,
            SmmuError::BadContext | SmmuError::BadFormat => Errno::EINVAL,
            SmmuError::AckTimeout(_) | SmmuError::SyncTimeout | SmmuError::Command(_) => {
                Errno::EBUSY
            }
            SmmuError::Disabled => Errno::EIO,
        }
    }
}

/// A context descriptor slot; its ASID is `index + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContextId(pub u16);

impl ContextId {
    pub fn asid(self) -> u16 {
        self.0 + 1
    }
}

/// Event queue bookkeeping reported by [`Smmu::drain_events`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventStatus {
    pub delivered: usize,
    /// The SMMU signalled that records were lost since the last drain.
    pub overflowed: bool,
    /// Records were left in the queue for the next drain.
    pub pending: bool,
}

/// A circular queue in DMA memory with PROD/CONS wrap-bit arithmetic.
#[derive(Debug)]
struct Queue {
    mem: DmaRegion,
    log2: u32,
    /// Our copy of the index we own (PROD for the command queue, CONS for
    /// the event queue), including the wrap bit.
    index: u32,
}

impl Queue {
    fn mask(&self) -> u32 {
        (1 << self.log2) - 1
    }

    /// Index and wrap bits only.
    fn wrap_index(&self, reg: u32) -> u32 {
        reg & ((2 << self.log2) - 1)
    }

    fn advance(&self, index: u32) -> u32 {
        self.wrap_index(index + 1)
    }

    /// Same index, different wrap bit. CONS may carry ERR bits; ignore them.
    fn full(&self, prod: u32, cons: u32) -> bool {
        let (prod, cons) = (self.wrap_index(prod), self.wrap_index(cons));
        prod & self.mask() == cons & self.mask() && prod != cons
    }

    fn base_reg(&self) -> u64 {
        Q_BASE_RA | (self.mem.pa() & Q_BASE_ADDR_MASK) | self.log2 as u64
    }
}

// One instance per SMMU, never moved: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum StreamTable {
    Linear {
        table: DmaRegion,
        sid_bits: u32,
    },
    TwoLevel {
        l1: DmaRegion,
        l2: [Option<DmaRegion>; MAX_L2_TABLES],
        owner: [Option<u32>; MAX_L2_TABLES],
        sid_bits: u32,
    },
}

pub struct Smmu<R: RegisterBlock> {
    regs: R,
    features: Features,
    cmdq: Queue,
    evtq: Queue,
    strtab: StreamTable,
    cds: DmaRegion,
    /// Streams attached per context; `None` = slot free.
    contexts: [Option<u32>; MAX_CONTEXTS],
    context_count: usize,
    overflows: u32,
    /// Streams whose fault records are stopped: their STE aborts silently
    /// when unattached, their context records nothing when attached.
    silenced: [Option<StreamId>; MAX_SILENCED],
    /// The last asynchronous failure (a flush cannot return one).
    last_error: Option<SmmuError>,
    /// [`Smmu::abort_all`] turned translation off.
    disabled: bool,
}

impl<R: RegisterBlock> fmt::Debug for Smmu<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smmu")
            .field("features", &self.features)
            .field("overflows", &self.overflows)
            .finish()
    }
}

/// Reads the ID registers.
pub fn read_ids(regs: &impl RegisterBlock) -> IdRegs {
    let mut ids = IdRegs {
        iidr: regs.read32(IIDR),
        aidr: regs.read32(AIDR),
        ..IdRegs::default()
    };
    for (i, idr) in ids.idr.iter_mut().enumerate() {
        *idr = regs.read32(IDR0 + 4 * i);
    }
    ids
}

impl<R: RegisterBlock> Smmu<R> {
    /// Probes, builds every structure in `mem` with every stream aborting,
    /// and enables translation. `streams` get level-2 tables up front so
    /// that each has a valid abort STE from the start.
    pub fn init(
        regs: R,
        mem: DmaRegion,
        config: SmmuConfig,
        streams: &[StreamId],
    ) -> Result<Smmu<R>, SmmuError> {
        let mut smmu = Smmu::new(regs, mem, config)?;
        smmu.start(streams)?;
        Ok(smmu)
    }

    /// [`Smmu::init`]'s first half: probes and lays the queues and tables
    /// out in `mem`, touching no register but the ID registers. A caller
    /// that keeps the SMMU in a static builds it there with this, then
    /// calls [`Smmu::start`] on it in place.
    pub fn new(regs: R, mut mem: DmaRegion, config: SmmuConfig) -> Result<Smmu<R>, SmmuError> {
        let features = Features::decode(read_ids(&regs)).map_err(SmmuError::Probe)?;
        mem.zero();

        let cmdq_log2 = config.cmdq_log2.min(features.cmdq_log2).max(1);
        let evtq_log2 = event_queue_log2(config.event_queue_bytes, features.evtq_log2);
        let cmdq_bytes = 16usize << cmdq_log2;
        let evtq_bytes = 32usize << evtq_log2;
        // The event queue first: it is the largest and aligned to its size,
        // so carved first it wastes the least of the region.
        let evtq = mem
            .carve(evtq_bytes, evtq_bytes.max(32))
            .ok_or(SmmuError::NoMemory("event queue"))?;
        let cmdq = mem
            .carve(cmdq_bytes, cmdq_bytes.max(32))
            .ok_or(SmmuError::NoMemory("command queue"))?;
        let contexts = config.contexts.min(MAX_CONTEXTS);
        let cds = mem
            .carve(contexts * CD_WORDS * 8, 64)
            .ok_or(SmmuError::NoMemory("context descriptors"))?;

        let sid_bits = config.sid_bits.min(features.sid_bits);
        let strtab = if features.two_level_strtab && sid_bits > STRTAB_SPLIT {
            let l1_bytes = 8usize << (sid_bits - STRTAB_SPLIT);
            let l1 = mem
                .carve(l1_bytes, l1_bytes.max(64))
                .ok_or(SmmuError::NoMemory("level-1 stream table"))?;
            let mut l2: [Option<DmaRegion>; MAX_L2_TABLES] = Default::default();
            let l2_bytes = L2_STREAMS * STE_WORDS * 8;
            for slot in l2.iter_mut().take(config.l2_tables.min(MAX_L2_TABLES)) {
                *slot = Some(
                    mem.carve(l2_bytes, l2_bytes)
                        .ok_or(SmmuError::NoMemory("level-2 stream table"))?,
                );
            }
            StreamTable::TwoLevel {
                l1,
                l2,
                owner: [None; MAX_L2_TABLES],
                sid_bits,
            }
        } else {
            let sid_bits = sid_bits.min(LINEAR_MAX_SID_BITS);
            let bytes = (STE_WORDS * 8) << sid_bits;
            let table = mem
                .carve(bytes, bytes)
                .ok_or(SmmuError::NoMemory("linear stream table"))?;
            for sid in 0..(1usize << sid_bits) {
                write_words(&table, sid * STE_WORDS, &desc::ste_abort());
            }
            StreamTable::Linear { table, sid_bits }
        };

        Ok(Smmu {
            regs,
            features,
            cmdq: Queue {
                mem: cmdq,
                log2: cmdq_log2,
                index: 0,
            },
            evtq: Queue {
                mem: evtq,
                log2: evtq_log2,
                index: 0,
            },
            strtab,
            cds,
            contexts: [None; MAX_CONTEXTS],
            context_count: contexts,
            overflows: 0,
            silenced: [None; MAX_SILENCED],
            last_error: None,
            disabled: false,
        })
    }

    /// [`Smmu::init`]'s second half: resets the SMMU onto the structures
    /// [`Smmu::new`] laid out, prepares `streams` and enables translation.
    pub fn start(&mut self, streams: &[StreamId]) -> Result<(), SmmuError> {
        self.reset()?;
        for &sid in streams {
            self.ensure_stream(sid)?;
        }
        Ok(())
    }

    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Context descriptors (one per page table in use) this SMMU was set up
    /// with.
    pub fn contexts(&self) -> usize {
        self.context_count
    }

    /// Records the event queue holds.
    pub fn event_queue_entries(&self) -> usize {
        1 << self.evtq.log2
    }

    pub fn regs(&self) -> &R {
        &self.regs
    }

    fn clean(&self, region: &DmaRegion) {
        if !self.features.coherent {
            region.clean();
        }
    }

    fn clean_words(&self, region: &DmaRegion, at: usize, count: usize) {
        if !self.features.coherent {
            region.clean_words(at, count);
        }
    }

    fn set_cr0(&mut self, value: u32) -> Result<(), SmmuError> {
        self.regs.write32(CR0, value);
        poll(|| self.regs.read32(CR0ACK) == value).ok_or(SmmuError::AckTimeout("SMMU_CR0ACK"))
    }

    /// The architected bring-up: abort while disabled, disable, silence
    /// interrupts and MSIs, program tables and queues, invalidate
    /// everything, enable.
    fn reset(&mut self) -> Result<(), SmmuError> {
        let gbpa_idle = |regs: &R| regs.read32(GBPA) & GBPA_UPDATE == 0;
        poll(|| gbpa_idle(&self.regs)).ok_or(SmmuError::AckTimeout("SMMU_GBPA.UPDATE"))?;
        // Abort first: were translation on (a restarted server), turning it
        // off must not open a bypass window.
        self.regs.write32(GBPA, GBPA_ABORT | GBPA_UPDATE);
        poll(|| gbpa_idle(&self.regs)).ok_or(SmmuError::AckTimeout("SMMU_GBPA.UPDATE"))?;
        self.set_cr0(0)?;
        self.regs.write32(IRQ_CTRL, 0);
        poll(|| self.regs.read32(IRQ_CTRLACK) == 0)
            .ok_or(SmmuError::AckTimeout("SMMU_IRQ_CTRLACK"))?;
        // MSI addresses reset to UNKNOWN; zero means "no MSI" (wired
        // interrupts only), so no stray write leaves the SMMU.
        for cfg0 in [GERROR_IRQ_CFG0, EVENTQ_IRQ_CFG0, PRIQ_IRQ_CFG0] {
            self.regs.write64(cfg0, 0);
        }
        self.regs.write32(CR1, CR1_VALUE);
        self.regs.write32(CR2, CR2_RECINVSID);

        let (base, cfg) = match &self.strtab {
            StreamTable::Linear { table, sid_bits } => {
                self.clean(table);
                (
                    table.pa(),
                    (STRTAB_FMT_LINEAR << STRTAB_FMT_SHIFT) | sid_bits,
                )
            }
            StreamTable::TwoLevel { l1, sid_bits, .. } => {
                self.clean(l1);
                let cfg = (STRTAB_FMT_2LVL << STRTAB_FMT_SHIFT)
                    | (STRTAB_SPLIT << STRTAB_SPLIT_SHIFT)
                    | sid_bits;
                (l1.pa(), cfg)
            }
        };
        self.regs.write64(
            STRTAB_BASE,
            STRTAB_BASE_RA | (base & Q_BASE_ADDR_MASK & !0x3f),
        );
        self.regs.write32(STRTAB_BASE_CFG, cfg);

        self.regs.write64(CMDQ_BASE, self.cmdq.base_reg());
        self.regs.write32(CMDQ_PROD, 0);
        self.regs.write32(CMDQ_CONS, 0);
        self.cmdq.index = 0;
        self.set_cr0(CR0_CMDQEN)?;
        self.submit(&[cmd::cfgi_all(), cmd::tlbi_nsnh_all()])?;
        self.sync()?;

        self.regs.write64(EVENTQ_BASE, self.evtq.base_reg());
        self.regs.write32(EVENTQ_PROD, 0);
        self.regs.write32(EVENTQ_CONS, 0);
        self.evtq.index = 0;
        self.set_cr0(CR0_CMDQEN | CR0_EVENTQEN)?;
        // Global-error and event-queue interrupts; the PD decides whether to
        // route them.
        self.regs.write32(IRQ_CTRL, 0b101);
        poll(|| self.regs.read32(IRQ_CTRLACK) == 0b101)
            .ok_or(SmmuError::AckTimeout("SMMU_IRQ_CTRLACK"))?;
        self.set_cr0(CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN)
    }

    // ---- command queue ----------------------------------------------------

    /// Queues `cmds`, waiting for space, and publishes them with one PROD
    /// write per batch that fits.
    pub fn submit(&mut self, cmds: &[Command]) -> Result<(), SmmuError> {
        let mut pending = cmds;
        while !pending.is_empty() {
            let mut written = 0;
            while written < pending.len() {
                let cons = self.regs.read32(CMDQ_CONS);
                if self.cmdq.full(self.cmdq.index, cons) {
                    if written > 0 {
                        break;
                    }
                    self.check_cmdq_error()?;
                    if poll(|| !self.cmdq.full(self.cmdq.index, self.regs.read32(CMDQ_CONS)))
                        .is_none()
                    {
                        return Err(SmmuError::SyncTimeout);
                    }
                    continue;
                }
                let slot = (self.cmdq.index & self.cmdq.mask()) as usize;
                write_words(&self.cmdq.mem, slot * 2, &pending[written]);
                self.cmdq.index = self.cmdq.advance(self.cmdq.index);
                written += 1;
            }
            self.clean(&self.cmdq.mem);
            // Commands must be in memory before the SMMU sees the new PROD.
            dsb_sy();
            self.regs.write32(CMDQ_PROD, self.cmdq.index);
            pending = &pending[written..];
        }
        Ok(())
    }

    /// Issues CMD_SYNC and waits, bounded, until the SMMU consumed every
    /// command; reports (and skips) a refused command.
    pub fn sync(&mut self) -> Result<(), SmmuError> {
        self.submit(&[cmd::sync()])?;
        let target = self.cmdq.index;
        for _ in 0..POLL_LIMIT {
            self.check_cmdq_error()?;
            if self.cmdq.wrap_index(self.regs.read32(CMDQ_CONS)) == target {
                return Ok(());
            }
        }
        Err(SmmuError::SyncTimeout)
    }

    /// A pending CMDQ_ERR: the command at CONS is replaced by a SYNC, the
    /// error acknowledged, and the queue resumes (as Linux does).
    fn check_cmdq_error(&mut self) -> Result<(), SmmuError> {
        let active = self.regs.read32(GERROR) ^ self.regs.read32(GERRORN);
        if active & GERROR_CMDQ_ERR == 0 {
            return Ok(());
        }
        let cons = self.regs.read32(CMDQ_CONS);
        let slot = (cons & self.cmdq.mask()) as usize;
        let opcode = self.cmdq.mem.read(slot * 2) as u8;
        let code = (cons >> CMDQ_CONS_ERR_SHIFT) & CMDQ_CONS_ERR_MASK;
        write_words(&self.cmdq.mem, slot * 2, &cmd::sync());
        self.clean(&self.cmdq.mem);
        dsb_sy();
        self.regs
            .write32(GERRORN, self.regs.read32(GERRORN) ^ GERROR_CMDQ_ERR);
        let error = SmmuError::Command(CmdError { code, opcode });
        self.last_error = Some(error);
        Err(error)
    }

    /// Global errors other than command errors and event-queue aborts
    /// (which [`Smmu::sync`] and [`Smmu::drain_events`] own), acknowledged;
    /// returns the SMMU_GERROR bits that were active.
    pub fn take_global_errors(&mut self) -> u32 {
        let active = (self.regs.read32(GERROR) ^ self.regs.read32(GERRORN))
            & GERROR_ALL
            & !(GERROR_CMDQ_ERR | GERROR_EVTQ_ABT_ERR);
        if active != 0 {
            self.regs
                .write32(GERRORN, self.regs.read32(GERRORN) ^ active);
        }
        active
    }

    /// The last failure of a call that could not return it (a flush).
    pub fn take_last_error(&mut self) -> Option<SmmuError> {
        self.last_error.take()
    }

    /// Stops all DMA without the command queue: translation off, so every
    /// transaction takes SMMU_GBPA, set to abort (again, as at reset). The
    /// last resort when a stream's abort could not be confirmed because a
    /// CMD_SYNC never completes: it needs only register writes and their
    /// acknowledgements. Nothing attaches afterwards (until a new init).
    pub fn abort_all(&mut self) -> Result<(), SmmuError> {
        self.disabled = true;
        let gbpa_idle = |regs: &R| regs.read32(GBPA) & GBPA_UPDATE == 0;
        poll(|| gbpa_idle(&self.regs)).ok_or(SmmuError::AckTimeout("SMMU_GBPA.UPDATE"))?;
        self.regs.write32(GBPA, GBPA_ABORT | GBPA_UPDATE);
        poll(|| gbpa_idle(&self.regs)).ok_or(SmmuError::AckTimeout("SMMU_GBPA.UPDATE"))?;
        // The queues stay on: the event queue still reports.
        self.set_cr0(CR0_CMDQEN | CR0_EVENTQEN)
    }

    /// Whether [`Smmu::abort_all`] turned translation off.
    pub fn disabled(&self) -> bool {
        self.disabled
    }

    // ---- stream table -------------------------------------------------------

    /// Makes sure `sid` has a stream table entry (a level-2 table covering
    /// it, full of abort STEs).
    pub fn ensure_stream(&mut self, stream: StreamId) -> Result<(), SmmuError> {
        let sid = stream.0;
        let StreamTable::TwoLevel {
            l1,
            l2,
            owner,
            sid_bits,
        } = &mut self.strtab
        else {
            return self.ste_location(sid).map(|_| ());
        };
        if sid >> *sid_bits != 0 {
            return Err(SmmuError::NoStream(StreamId(sid)));
        }
        let span = sid >> STRTAB_SPLIT;
        if owner.contains(&Some(span)) {
            return Ok(());
        }
        let slot = owner
            .iter()
            .zip(l2.iter())
            .position(|(o, t)| o.is_none() && t.is_some())
            .ok_or(SmmuError::NoStream(StreamId(sid)))?;
        let table = l2[slot]
            .as_ref()
            .ok_or(SmmuError::NoStream(StreamId(sid)))?;
        for i in 0..L2_STREAMS {
            write_words(table, i * STE_WORDS, &desc::ste_abort());
        }
        let table_pa = table.pa();
        if !self.features.coherent {
            table.clean();
        }
        dsb_sy();
        l1.write(span as usize, desc::l1_desc(table_pa));
        if !self.features.coherent {
            l1.clean();
        }
        owner[slot] = Some(span);
        // Range = SPLIT - 1 covers the 2^SPLIT streams of the span.
        self.submit(&[[
            cmd::OP_CFGI_STE_RANGE as u64 | (((span << STRTAB_SPLIT) as u64) << 32),
            (STRTAB_SPLIT - 1) as u64,
        ]])?;
        self.sync()
    }

    /// (table, first word) of `sid`'s STE.
    fn ste_location(&self, sid: u32) -> Result<(&DmaRegion, usize), SmmuError> {
        match &self.strtab {
            StreamTable::Linear { table, sid_bits } => {
                if sid >> sid_bits != 0 {
                    return Err(SmmuError::NoStream(StreamId(sid)));
                }
                Ok((table, sid as usize * STE_WORDS))
            }
            StreamTable::TwoLevel { l2, owner, .. } => {
                let span = sid >> STRTAB_SPLIT;
                let slot = owner
                    .iter()
                    .position(|o| *o == Some(span))
                    .ok_or(SmmuError::NoStream(StreamId(sid)))?;
                let table = l2[slot]
                    .as_ref()
                    .ok_or(SmmuError::NoStream(StreamId(sid)))?;
                Ok((table, (sid as usize & (L2_STREAMS - 1)) * STE_WORDS))
            }
        }
    }

    /// Replaces an STE break-before-make: abort first (and make the SMMU
    /// forget the old entry), then the body, then the valid first word.
    fn write_ste(&mut self, sid: u32, words: [u64; STE_WORDS]) -> Result<(), SmmuError> {
        let abort = desc::ste_abort();
        let (table, at) = self.ste_location(sid)?;
        if table.read(at) != abort[0] {
            table.write(at, abort[0]);
            self.clean_words(table, at, 1);
            self.submit(&[cmd::cfgi_ste(sid, false)])?;
            self.sync()?;
        }
        let (table, at) = self.ste_location(sid)?;
        write_words(table, at + 1, &words[1..]);
        // The body must reach the SMMU before the word that makes it valid.
        self.clean_words(table, at + 1, STE_WORDS - 1);
        dsb_sy();
        table.write(at, words[0]);
        self.clean_words(table, at, 1);
        self.submit(&[cmd::cfgi_ste(sid, false)])?;
        self.sync()
    }

    /// Whether `sid`'s STE currently aborts every transaction.
    pub fn stream_aborts(&self, stream: StreamId) -> bool {
        self.ste_location(stream.0)
            .map_or(true, |(table, at)| desc::ste_aborts(table.read(at)))
    }

    // ---- fault records --------------------------------------------------------

    /// Starts or stops recording `stream`'s faults in the event queue. The
    /// SMMU records per stream only while a stream is unattached (an
    /// invalid STE records `C_BAD_STE`, a valid abort STE nothing); once
    /// attached, the context decides (CD.R), so stopping one stream's
    /// records stops those of every stream on its context until none of
    /// them is stopped. Attaching or detaching keeps the choice
    /// ([`Smmu::apply_recording`]).
    pub fn set_recording(&mut self, stream: StreamId, record: bool) -> Result<(), SmmuError> {
        let at = self.silenced.iter().position(|s| *s == Some(stream));
        match (record, at) {
            (true, Some(i)) => self.silenced[i] = None,
            (false, None) => {
                let free = self
                    .silenced
                    .iter()
                    .position(Option::is_none)
                    .ok_or(SmmuError::NoMemory("list of silenced streams"))?;
                self.silenced[free] = Some(stream);
            }
            _ => {}
        }
        self.apply_recording(stream)
    }

    /// Whether `stream`'s faults were stopped with [`Smmu::set_recording`].
    pub fn silenced(&self, stream: StreamId) -> bool {
        self.silenced.contains(&Some(stream))
    }

    /// Makes the SMMU's structures say what [`Smmu::set_recording`] chose
    /// for `stream`, wherever it now points: its context when attached, its
    /// STE otherwise. Call after the stream is attached or detached.
    pub fn apply_recording(&mut self, stream: StreamId) -> Result<(), SmmuError> {
        match self.stream_context(stream) {
            Some(ctx) => self.refresh_context_recording(ctx),
            None => {
                let (table, at) = self.ste_location(stream.0)?;
                let word0 = table.read(at);
                let want = if self.silenced(stream) {
                    desc::ste_silent_abort()
                } else {
                    desc::ste_abort()
                };
                if desc::ste_aborts(word0) && word0 != want[0] {
                    self.write_ste(stream.0, want)?;
                }
                Ok(())
            }
        }
    }

    /// Sets CD.R of `ctx`: records unless a stream on it is silenced.
    pub fn refresh_context_recording(&mut self, ctx: ContextId) -> Result<(), SmmuError> {
        let index = ctx.0 as usize;
        if index >= self.context_count || self.contexts[index].is_none() {
            return Ok(());
        }
        let quiet = self
            .silenced
            .iter()
            .flatten()
            .any(|&s| self.stream_context(s) == Some(ctx));
        let at = index * CD_WORDS;
        let word0 = self.cds.read(at);
        let want = if quiet {
            word0 & !desc::CD0_R
        } else {
            word0 | desc::CD0_R
        };
        if want == word0 {
            return Ok(());
        }
        // One 64-bit write: the CD stays valid throughout, only R changes.
        self.cds.write(at, want);
        self.clean_words(&self.cds, at, 1);
        // The streams using the context are not known one by one here.
        self.submit(&[cmd::cfgi_all()])?;
        self.sync()
    }

    /// Whether a fault of `stream` would be recorded now, read back from the
    /// structures the SMMU reads.
    pub fn records(&self, stream: StreamId) -> bool {
        let Ok((table, at)) = self.ste_location(stream.0) else {
            return true;
        };
        let word0 = table.read(at);
        if word0 == desc::ste_silent_abort()[0] {
            return false;
        }
        match self.stream_context(stream) {
            Some(ctx) => self.cds.read(ctx.0 as usize * CD_WORDS) & desc::CD0_R != 0,
            None => true,
        }
    }

    // ---- contexts -------------------------------------------------------------

    /// A context descriptor for a page table rooted at `ttb0`.
    pub fn alloc_context(
        &mut self,
        ttb0: u64,
        t0sz: u32,
        mair: u64,
    ) -> Result<ContextId, SmmuError> {
        let index = self.contexts[..self.context_count]
            .iter()
            .position(Option::is_none)
            .ok_or(SmmuError::NoContext)?;
        let id = ContextId(index as u16);
        if id.asid() > self.features.max_asid() {
            return Err(SmmuError::NoContext);
        }
        // 4 KiB granule: 16..=39 (48- to 25-bit inputs); TTB0 a table page.
        if !(16..=39).contains(&t0sz)
            || !ttb0.is_multiple_of(4096)
            || ttb0 >> self.features.oas != 0
        {
            return Err(SmmuError::BadFormat);
        }
        let words = desc::cd(CdConfig {
            asid: id.asid(),
            ttb0,
            t0sz,
            ips: self.features.ips(),
            mair,
            cacheable_walk: self.features.coherent,
        });
        let at = index * CD_WORDS;
        write_words(&self.cds, at + 1, &words[1..]);
        self.clean_words(&self.cds, at + 1, CD_WORDS - 1);
        dsb_sy();
        self.cds.write(at, words[0]);
        self.clean_words(&self.cds, at, 1);
        // A previous user of this ASID may have left TLB entries.
        self.submit(&[cmd::tlbi_nh_asid(id.asid())])?;
        self.sync()?;
        self.contexts[index] = Some(0);
        Ok(id)
    }

    /// Releases a context with no streams left; its TLB entries go too.
    pub fn free_context(&mut self, id: ContextId) -> Result<(), SmmuError> {
        let index = id.0 as usize;
        match self.contexts.get(index).copied().flatten() {
            None => return Err(SmmuError::BadContext),
            Some(n) if n > 0 => return Err(SmmuError::ContextBusy),
            Some(_) => {}
        }
        for word in 0..CD_WORDS {
            self.cds.write(index * CD_WORDS + word, 0);
        }
        self.clean_words(&self.cds, index * CD_WORDS, CD_WORDS);
        self.submit(&[cmd::tlbi_nh_asid(id.asid())])?;
        self.sync()?;
        self.contexts[index] = None;
        Ok(())
    }

    fn cd_pa(&self, id: ContextId) -> u64 {
        self.cds.pa() + (id.0 as u64) * (CD_WORDS as u64 * 8)
    }

    /// The context `sid`'s STE points at, read back from the stream table,
    /// so accounting can never drift from what the SMMU uses.
    pub fn stream_context(&self, stream: StreamId) -> Option<ContextId> {
        let (table, at) = self.ste_location(stream.0).ok()?;
        let cd = desc::ste_context(table.read(at))?;
        let offset = cd.checked_sub(self.cds.pa())?;
        let index = offset / (CD_WORDS as u64 * 8);
        (offset % (CD_WORDS as u64 * 8) == 0 && (index as usize) < self.context_count)
            .then_some(ContextId(index as u16))
    }

    /// Moves the stream counts from `before` to whatever `sid` uses now.
    fn recount(&mut self, sid: StreamId, before: Option<ContextId>) {
        let after = self.stream_context(sid);
        if before == after {
            return;
        }
        if let Some(Some(n)) = before.and_then(|c| self.contexts.get_mut(c.0 as usize)) {
            *n = n.saturating_sub(1);
        }
        if let Some(Some(n)) = after.and_then(|c| self.contexts.get_mut(c.0 as usize)) {
            *n += 1;
        }
    }

    /// Points `sid` at a context (from abort or from another context); the
    /// stream translates through it from then on.
    pub fn attach(&mut self, sid: StreamId, id: ContextId) -> Result<(), SmmuError> {
        let index = id.0 as usize;
        if index >= self.context_count || self.contexts[index].is_none() {
            return Err(SmmuError::BadContext);
        }
        if self.disabled {
            return Err(SmmuError::Disabled);
        }
        self.ensure_stream(sid)?;
        let before = self.stream_context(sid);
        let result = self.write_ste(sid.0, desc::ste_s1(self.cd_pa(id)));
        // Even a failed write may have left a live STE: count what is there.
        self.recount(sid, before);
        result
    }

    /// Puts `sid` back to abort (quarantine): no transaction of it reaches
    /// memory once this returns. `id` must be the context it uses.
    pub fn detach(&mut self, sid: StreamId, id: ContextId) -> Result<(), SmmuError> {
        let before = self.stream_context(sid);
        if before != Some(id) {
            return Err(SmmuError::BadContext);
        }
        let result = self.write_ste(sid.0, desc::ste_abort());
        self.recount(sid, before);
        result
    }

    // ---- TLB ------------------------------------------------------------------

    /// Queues invalidation of `[iova, iova + len)` for `asid`: range
    /// commands when the SMMU has them, per-page ones for short runs
    /// otherwise, else the whole ASID.
    pub fn queue_tlb_range(
        &mut self,
        asid: u16,
        iova: u64,
        len: u64,
        leaf_only: bool,
    ) -> Result<(), SmmuError> {
        let pages = len.div_ceil(4096);
        let mut batch: heapless::Vec<Command, 16> = heapless::Vec::new();
        let mut result = Ok(());
        if self.features.range_invalidation {
            let mut overflow = false;
            cmd::range_chunks(iova, pages, |at, num, scale| {
                overflow |= batch
                    .push(cmd::tlbi_nh_va_range(asid, at, num, scale, leaf_only))
                    .is_err();
            });
            // Never drop an invalidation: fall back to the whole ASID.
            result = if overflow {
                self.submit(&[cmd::tlbi_nh_asid(asid)])
            } else {
                self.submit(&batch)
            };
        } else if pages <= 64 {
            for page in 0..pages {
                let c = cmd::tlbi_nh_va(asid, iova + page * 4096, leaf_only);
                if batch.push(c).is_err() {
                    result = result.and(self.submit(&batch));
                    batch.clear();
                    let _ = batch.push(c);
                }
            }
            result = result.and(self.submit(&batch));
        } else {
            result = self.submit(&[cmd::tlbi_nh_asid(asid)]);
        }
        result
    }

    /// Invalidates what `gather` collected for `asid`, with one SYNC.
    pub fn flush_gather(&mut self, asid: u16, gather: &Gather) -> Result<(), SmmuError> {
        if gather.overflowed() {
            self.submit(&[cmd::tlbi_nh_asid(asid)])?;
        } else {
            for run in gather.runs() {
                self.queue_tlb_range(asid, run.iova, run.len, run.leaf_only)?;
            }
        }
        self.sync()
    }

    // ---- events ---------------------------------------------------------------

    /// Hands every pending event record to `f` and notes lost records:
    /// either the architected overflow flag (PROD.OVFLG differs from our
    /// CONS.OVACKFLG) or an event-queue abort in GERROR, which is how some
    /// implementations (QEMU among them) report writes into a full queue.
    pub fn drain_events(&mut self, f: impl FnMut(Event)) -> EventStatus {
        self.drain_events_max(usize::MAX, f)
    }

    /// [`Smmu::drain_events`], handing over at most `max` records; the
    /// rest stay queued (`pending`) for the next call.
    pub fn drain_events_max(&mut self, max: usize, mut f: impl FnMut(Event)) -> EventStatus {
        let prod_reg = self.regs.read32(EVENTQ_PROD);
        // Records up to PROD are complete; read none of them before PROD.
        dma_rmb();
        let prod = self.evtq.wrap_index(prod_reg);
        let ack = self.evtq.index & Q_OVF;
        let gerrorn = self.regs.read32(GERRORN);
        let aborted = (self.regs.read32(GERROR) ^ gerrorn) & GERROR_EVTQ_ABT_ERR != 0;
        let overflowed = prod_reg & Q_OVF != ack || aborted;
        let mut cons = self.evtq.wrap_index(self.evtq.index);
        let mut delivered = 0;
        while cons != prod && delivered < max {
            let slot = (cons & self.evtq.mask()) as usize;
            // A walker that does not snoop wrote the record to memory: drop
            // any stale line before reading it.
            if !self.features.coherent {
                self.evtq
                    .mem
                    .invalidate_words(slot * EVENT_WORDS, EVENT_WORDS);
            }
            let mut raw = [0u64; EVENT_WORDS];
            for (i, word) in raw.iter_mut().enumerate() {
                *word = self.evtq.mem.read(slot * EVENT_WORDS + i);
            }
            f(Event::decode(raw));
            delivered += 1;
            cons = self.evtq.advance(cons);
        }
        if overflowed {
            self.overflows += 1;
        }
        // Finish reading the slots before handing them back; then consume
        // and acknowledge overflow in one write, and the abort after it so
        // new records find room.
        dma_mb();
        self.evtq.index = cons | (prod_reg & Q_OVF);
        self.regs.write32(EVENTQ_CONS, self.evtq.index);
        if aborted {
            self.regs.write32(GERRORN, gerrorn ^ GERROR_EVTQ_ABT_ERR);
        }
        EventStatus {
            delivered,
            overflowed,
            pending: cons != prod,
        }
    }

    /// How many event queue overflows were seen.
    pub fn overflows(&self) -> u32 {
        self.overflows
    }
}

/// One SMMU context as a page-table flusher: one SYNC per flush. A failed
/// flush is retried once as a whole-ASID invalidation; if that fails too
/// the error is returned (and kept for [`Smmu::take_last_error`]).
pub struct ContextTlb<'s, R: RegisterBlock> {
    smmu: &'s mut Smmu<R>,
    asid: u16,
}

impl<'s, R: RegisterBlock> ContextTlb<'s, R> {
    pub fn new(smmu: &'s mut Smmu<R>, id: ContextId) -> ContextTlb<'s, R> {
        ContextTlb {
            smmu,
            asid: id.asid(),
        }
    }
}

impl<R: RegisterBlock> TlbFlush for ContextTlb<'_, R> {
    fn flush(&mut self, gather: &Gather) -> Result<(), Errno> {
        let first = match self.smmu.flush_gather(self.asid, gather) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        self.smmu.last_error = Some(first);
        let retry = self
            .smmu
            .submit(&[cmd::tlbi_nh_asid(self.asid)])
            .and_then(|()| self.smmu.sync());
        retry.map_err(|e| {
            self.smmu.last_error = Some(e);
            Errno::from(e)
        })
    }
}

fn write_words(region: &DmaRegion, at: usize, words: &[u64]) {
    for (i, &w) in words.iter().enumerate() {
        region.write(at + i, w);
    }
}

/// log2 of the event queue's records: as many as `budget` bytes hold,
/// at most `offered` (IDR1.EVENTQS), at least 2 records.
fn event_queue_log2(budget: usize, offered: u32) -> u32 {
    let records = budget / (8 * EVENT_WORDS);
    let fits = usize::BITS - 1 - records.max(1).leading_zeros();
    fits.min(offered).max(1)
}

/// Polls `done` up to [`POLL_LIMIT`] times.
fn poll(mut done: impl FnMut() -> bool) -> Option<()> {
    (0..POLL_LIMIT).any(|_| done()).then_some(())
}
