//! The device logic of an NVMe driver for QEMU's `-device nvme` (a subset
//! of NVMe 1.4): bring the controller up, identify it and namespace 1,
//! create one polled I/O queue pair, and read and write blocks through
//! PRPs. It knows nothing of the IOMMU: the caller maps the memory the
//! device reaches and hands the driver IOVAs, so the same code runs
//! behind the IOMMU server or without one. The queues' memory is any
//! [`mmio::Memory`], the registers any [`mmio::RegisterBlock`].
//!
//! Everything the device writes (completions, identify data) is copied
//! out once and checked before use: a broken or hostile device gets an
//! [`Error`], never a panic.
//!
//! # A hostile device cannot stall the driver
//!
//! Every wait is bounded by a number of polls (reads of a register or of
//! a completion queue entry), never by time:
//!
//! - [`READY_POLLS`]: CSTS reads while the controller enables or disables;
//! - [`ADMIN_POLLS`]: completion queue reads for one admin command;
//! - [`COMMAND_POLLS`]: an I/O command's deadline, counted in completion
//!   queue reads from its submission, whoever does them ([`Nvme::wait`]
//!   for this command or another, [`Nvme::poll`]).
//!
//! When an I/O command's deadline passes, the driver resets the
//! controller (CC.EN = 0, at most [`READY_POLLS`] reads for CSTS.RDY to
//! drop, then the admin queues and the I/O queue pair again) and fails
//! every command that was in flight ([`Status::TimedOut`], or
//! [`Status::Reset`] for the others). Only then are their slots, command
//! ids and PRP-list pages used again, and only then does the caller hear
//! of them: a command the device may still complete keeps its buffers
//! out of use. If the controller does not stop, or does not come back,
//! the driver is [`Error::Down`]: those commands stay unanswered, nothing
//! is submitted, and every call returns at once until [`Nvme::reset`]
//! succeeds.
//!
//! The id the device sees carries the slot in its low byte and the
//! slot's generation in its high byte, so a completion for a command the
//! slot held before (a duplicate, or one late from before a reset) does
//! not complete the command it holds now. Completions with an id that is
//! in flight on no slot, or for the wrong queue, are consumed, ignored and
//! counted ([`Counters::ignored`]). A completion posted with a stale phase
//! tag looks old and is never read: its command runs out its deadline,
//! and the reset starts the queue afresh.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod error;
mod memory;
mod queue;
#[cfg(feature = "sim")]
pub mod sim;
mod status;

use core::fmt;

pub use error::Error;
pub use memory::{QueueMemory, PAGE};
pub use queue::Command;
pub use status::{Completion, Status};

use memory::Layout;
use mmio::{Memory, RegisterBlock};
use queue::{Cqe, QueuePair};

/// Deepest I/O queue: the command slots are a fixed array (no heap).
pub const MAX_DEPTH: u16 = 256;
/// Admin queue entries: the admin path runs one command at a time.
pub const ADMIN_DEPTH: u16 = 4;
/// CSTS reads while waiting for CSTS.RDY to rise after CC.EN is set, or
/// to drop after it is cleared. QEMU's controller answers CC at once.
pub const READY_POLLS: u32 = 50_000_000;
/// Completion queue reads while waiting for one admin command.
pub const ADMIN_POLLS: u32 = 50_000_000;
/// An I/O command's deadline: completion queue reads from its submission.
/// QEMU completes I/O from its event loop, which a polling vCPU does not
/// hold up; a command that takes longer is failed with a reset.
pub const COMMAND_POLLS: u32 = 50_000_000;
/// The namespace the driver serves.
pub const NAMESPACE: u32 = 1;
/// Entries in one PRP-list page; more would need chained lists.
pub const PRP_LIST_ENTRIES: usize = PAGE / 8;
/// Blocks one command moves at most (NLB is 16 bits, 0-based).
pub const MAX_BLOCKS: u32 = 1 << 16;

const SLOTS: usize = MAX_DEPTH as usize - 1;
const IO_QUEUE: u16 = 1;

// Controller registers, byte offsets in BAR0 (NVMe 1.4 §3.1).
const CAP: usize = 0x00;
const CC: usize = 0x14;
const CSTS: usize = 0x1c;
const AQA: usize = 0x24;
const ASQ: usize = 0x28;
const ACQ: usize = 0x30;

const CC_EN: u32 = 1;
/// IOSQES = 6 (64-byte SQ entries), IOCQES = 4 (16-byte CQ entries),
/// MPS = 0 (4 KiB pages), CSS = 0 (NVM command set), round robin.
const CC_CONFIG: u32 = (6 << 16) | (4 << 20);
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 1 << 1;
const SQ_ENTRY_SIZE: u8 = 6;
const CQ_ENTRY_SIZE: u8 = 4;

const ADMIN_CREATE_SQ: u8 = 0x01;
const ADMIN_CREATE_CQ: u8 = 0x05;
const ADMIN_IDENTIFY: u8 = 0x06;
const IO_WRITE: u8 = 0x01;
const IO_READ: u8 = 0x02;
const CNS_NAMESPACE: u32 = 0;
const CNS_CONTROLLER: u32 = 1;
/// CREATE I/O CQ/SQ CDW11: physically contiguous; interrupts off (IEN=0).
const QUEUE_CONTIGUOUS: u32 = 1;

/// Which way an I/O command moves data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoOp {
    /// Device to memory.
    Read,
    /// Memory to device.
    Write,
}

/// The bounds on the driver's waits, in polls ([`Limits::DEFAULT`]: the
/// crate's constants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CSTS reads for CSTS.RDY to change ([`READY_POLLS`]).
    pub ready: u32,
    /// Completion queue reads for an admin command ([`ADMIN_POLLS`]).
    pub admin: u32,
    /// Completion queue reads from an I/O command's submission to its
    /// deadline ([`COMMAND_POLLS`]).
    pub command: u32,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        ready: READY_POLLS,
        admin: ADMIN_POLLS,
        command: COMMAND_POLLS,
    };

    /// The same bound on every wait.
    pub const fn all(polls: u32) -> Limits {
        Limits {
            ready: polls,
            admin: polls,
            command: polls,
        }
    }
}

/// What the driver has seen the device do wrong, and the work it did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Reads in bounded waits since bring-up: CSTS while it changes, and
    /// the completion queues.
    pub polls: u64,
    /// Completion entries consumed and ignored: an id in flight on no
    /// slot (unknown, already completed, or from before a reset), or the
    /// wrong queue.
    pub ignored: u64,
    /// I/O commands failed because their deadline passed.
    pub timed_out: u64,
    /// Controller resets tried: after a deadline passed or an admin
    /// command did not complete, or on request.
    pub resets: u64,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} completions ignored, {} commands timed out, {} controller resets",
            self.ignored, self.timed_out, self.resets
        )
    }
}

/// A command slot: its PRP-list page and the low byte of its command id
/// are its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    /// Submitted with command id `index | generation << 8`; failed if no
    /// completion arrives by the time the poll count reaches `deadline`.
    InFlight {
        generation: u8,
        deadline: u64,
    },
    /// Completed or failed, not yet handed to the caller (reaped while
    /// waiting for another command, or failed by a reset).
    Done(Status),
}

/// What identify told about the controller and namespace 1.
#[derive(Debug)]
struct Identity {
    serial: [u8; 20],
    model: [u8; 40],
    firmware: [u8; 8],
    /// Largest transfer in bytes (MDTS), capped to what one PRP list
    /// carries from any first-page offset.
    max_transfer: u64,
    blocks: u64,
    block_size: u32,
}

/// An enabled controller with one I/O queue pair, polled.
#[derive(Debug)]
pub struct Nvme<'m, R, M> {
    regs: R,
    mem: QueueMemory<'m, M>,
    layout: Layout,
    admin: QueuePair,
    io: QueuePair,
    admin_cid: u16,
    slots: [Slot; SLOTS],
    /// Each slot's generation: the high byte of the command id it gave
    /// out last.
    generations: [u8; SLOTS],
    /// Slots in use: `depth - 1`, so neither queue can fill.
    slot_count: usize,
    in_flight: u16,
    done: u16,
    /// No in-flight command's deadline is earlier than this poll count.
    next_deadline: u64,
    /// A reset failed: nothing is submitted or polled until one succeeds.
    down: bool,
    identity: Identity,
    limits: Limits,
    counters: Counters,
}

impl<'m, R: RegisterBlock, M: Memory> Nvme<'m, R, M> {
    /// Brings the controller up with an I/O queue of `depth` entries
    /// (`depth - 1` commands in flight) in `mem`, each wait bounded by
    /// [`Limits::DEFAULT`].
    pub fn init(regs: R, mem: QueueMemory<'m, M>, depth: u16) -> Result<Self, Error> {
        Self::init_with_limits(regs, mem, depth, Limits::DEFAULT)
    }

    /// [`Nvme::init`] with `polls` as every bound, for devices slower or
    /// faster than QEMU's.
    pub fn init_with_poll_limit(
        regs: R,
        mem: QueueMemory<'m, M>,
        depth: u16,
        polls: u32,
    ) -> Result<Self, Error> {
        Self::init_with_limits(regs, mem, depth, Limits::all(polls))
    }

    /// [`Nvme::init`] with other bounds on the waits.
    pub fn init_with_limits(
        regs: R,
        mem: QueueMemory<'m, M>,
        depth: u16,
        limits: Limits,
    ) -> Result<Self, Error> {
        let cap = regs.read64(CAP);
        if cap == u64::MAX {
            return Err(Error::NoDevice);
        }
        if (cap >> 48) & 0xf != 0 {
            return Err(Error::PageSize);
        }
        if (cap >> 37) & 1 == 0 {
            return Err(Error::CommandSet);
        }
        // MQES is 0-based.
        let max_entries = u32::from(cap as u16) + 1;
        if !(2..=MAX_DEPTH).contains(&depth) || u32::from(depth) > max_entries {
            return Err(Error::Depth);
        }
        let layout = Layout::new(depth);
        mem.check(&layout)?;
        let stride = 4usize << ((cap >> 32) & 0xf);
        let mut nvme = Nvme {
            admin: QueuePair::new(
                0,
                ADMIN_DEPTH,
                layout.admin_sq * PAGE,
                layout.admin_cq * PAGE,
                stride,
            ),
            io: QueuePair::new(
                IO_QUEUE,
                depth,
                layout.io_sq * PAGE,
                layout.io_cq * PAGE,
                stride,
            ),
            regs,
            mem,
            layout,
            admin_cid: 0,
            slots: [Slot::Free; SLOTS],
            generations: [0; SLOTS],
            slot_count: usize::from(depth - 1),
            in_flight: 0,
            done: 0,
            next_deadline: u64::MAX,
            down: false,
            identity: Identity {
                serial: [0; 20],
                model: [0; 40],
                firmware: [0; 8],
                max_transfer: 0,
                blocks: 0,
                block_size: 0,
            },
            limits,
            counters: Counters::default(),
        };
        match nvme.bring_up() {
            Ok(()) => Ok(nvme),
            Err(e) => {
                // Whatever failed, the device must stop using our memory.
                nvme.regs.write32(CC, 0);
                Err(e)
            }
        }
    }

    fn bring_up(&mut self) -> Result<(), Error> {
        self.disable_and_wait()?;
        self.enable_admin()?;
        self.identify_controller()?;
        self.identify_namespace()?;
        self.create_io_queues()
    }

    /// With the controller disabled: fresh (zeroed) queues, the admin
    /// queues' registers, CC.EN, and the wait for CSTS.RDY.
    fn enable_admin(&mut self) -> Result<(), Error> {
        let layout = self.layout;
        self.mem
            .zero_pages(layout.admin_sq, layout.identify - layout.admin_sq)?;
        self.admin.restart();
        self.io.restart();
        let admin_size = u32::from(ADMIN_DEPTH - 1);
        self.regs.write32(AQA, (admin_size << 16) | admin_size);
        self.regs.write64(ASQ, self.mem.page_iova(layout.admin_sq));
        self.regs.write64(ACQ, self.mem.page_iova(layout.admin_cq));
        self.regs.write32(CC, CC_CONFIG | CC_EN);
        self.wait_ready(true)
    }

    /// Clears CC.EN and waits for CSTS.RDY to drop: the controller resets
    /// and forgets its queues.
    fn disable_and_wait(&mut self) -> Result<(), Error> {
        let cc = self.regs.read32(CC);
        if cc == u32::MAX {
            return Err(Error::NoDevice);
        }
        self.regs.write32(CC, cc & !CC_EN);
        self.wait_ready(false)
    }

    fn wait_ready(&mut self, ready: bool) -> Result<(), Error> {
        for _ in 0..self.limits.ready {
            self.count_poll();
            let csts = self.regs.read32(CSTS);
            if csts == u32::MAX {
                return Err(Error::NoDevice);
            }
            // A fatal status left from before clears with the reset.
            if ready && csts & CSTS_CFS != 0 {
                return Err(Error::Fatal);
            }
            if (csts & CSTS_RDY != 0) == ready {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }

    fn count_poll(&mut self) {
        self.counters.polls = self.counters.polls.saturating_add(1);
    }

    /// Why a wait ran out: the controller failed, vanished, or is slow.
    fn stalled(&self) -> Error {
        match self.regs.read32(CSTS) {
            u32::MAX => Error::NoDevice,
            csts if csts & CSTS_CFS != 0 => Error::Fatal,
            _ => Error::Timeout,
        }
    }

    /// Runs one admin command to completion, at most [`ADMIN_POLLS`]
    /// polls, and returns its DW0. The device reaches whatever `cmd`'s
    /// PRPs point at; if the command does not complete, the controller is
    /// reset (failing the I/O commands in flight) so that it no longer
    /// can.
    pub fn admin(&mut self, cmd: &Command) -> Result<u32, Error> {
        if self.down {
            return Err(Error::Down);
        }
        let result = self.run_admin(cmd);
        if let Err(e) = result {
            if !matches!(e, Error::Command(_)) {
                let _ = self.reset();
            }
        }
        result
    }

    /// One admin command, the only one outstanding: bring-up and reset
    /// leave none behind (a failure disables the controller), nor does
    /// [`Nvme::admin`].
    fn run_admin(&mut self, cmd: &Command) -> Result<u32, Error> {
        let cid = self.admin_cid;
        self.admin_cid = self.admin_cid.wrapping_add(1);
        self.admin.push(&self.regs, &self.mem, cmd, cid)?;
        for _ in 0..self.limits.admin {
            self.count_poll();
            let Some(cqe) = self.admin.pop(&self.regs, &self.mem)? else {
                continue;
            };
            if cqe.cid != cid || cqe.sq_id != 0 {
                self.counters.ignored += 1;
                continue;
            }
            return match Status::from_field(cqe.status) {
                Status::Success => Ok(cqe.result),
                status => Err(Error::Command(status)),
            };
        }
        Err(self.stalled())
    }

    /// Resets the controller: clears CC.EN and waits at most
    /// [`READY_POLLS`] reads for CSTS.RDY to drop; the device then no
    /// longer reaches any queue or buffer, so every command in flight is
    /// failed ([`Status::TimedOut`] if its deadline has passed,
    /// [`Status::Reset`] if not) and its slot will be used again. Then
    /// the admin queues and the I/O queue pair are set up again. If the
    /// controller does not stop, the commands stay in flight and
    /// unanswered; if it does not stop or does not come back, the driver
    /// is [`Error::Down`] until a reset succeeds.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.counters.resets = self.counters.resets.saturating_add(1);
        // Deadlines are judged as the reset begins; its own polls of CSTS
        // pass none.
        let began = self.counters.polls;
        self.down = true;
        self.disable_and_wait()?;
        self.fail_in_flight(began);
        match self.enable_admin().and_then(|()| self.create_io_queues()) {
            Ok(()) => {
                self.down = false;
                Ok(())
            }
            Err(e) => {
                // Whatever failed, the device must stop using our memory.
                let _ = self.disable_and_wait();
                Err(e)
            }
        }
    }

    /// Called once the controller has stopped: it can no longer complete
    /// anything in flight. Commands due by poll count `now` timed out.
    fn fail_in_flight(&mut self, now: u64) {
        for slot in &mut self.slots[..self.slot_count] {
            if let Slot::InFlight { deadline, .. } = *slot {
                let status = if deadline <= now {
                    self.counters.timed_out = self.counters.timed_out.saturating_add(1);
                    Status::TimedOut
                } else {
                    Status::Reset
                };
                *slot = Slot::Done(status);
                self.done += 1;
            }
        }
        self.in_flight = 0;
        self.next_deadline = u64::MAX;
    }

    /// Fails, with a reset, the commands whose deadline has passed. Scans
    /// the slots only when the poll count reaches the earliest deadline,
    /// at most once per submission.
    fn expire(&mut self) {
        if self.counters.polls < self.next_deadline {
            return;
        }
        let earliest = self.slots[..self.slot_count]
            .iter()
            .filter_map(|slot| match slot {
                Slot::InFlight { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
            .unwrap_or(u64::MAX);
        self.next_deadline = earliest;
        if earliest <= self.counters.polls {
            let _ = self.reset();
        }
    }

    fn identify(&mut self, cns: u32, nsid: u32, out: &mut [u8]) -> Result<(), Error> {
        let page = self.layout.identify;
        self.mem.zero_pages(page, 1)?;
        self.run_admin(&Command {
            opcode: ADMIN_IDENTIFY,
            nsid,
            prp1: self.mem.page_iova(page),
            cdw10: cns,
            ..Command::default()
        })?;
        self.mem.read(page * PAGE, out)
    }

    fn identify_controller(&mut self) -> Result<(), Error> {
        let mut data = [0u8; 520];
        self.identify(CNS_CONTROLLER, 0, &mut data)?;
        self.identity.serial.copy_from_slice(&data[4..24]);
        self.identity.model.copy_from_slice(&data[24..64]);
        self.identity.firmware.copy_from_slice(&data[64..72]);
        // Entry sizes are powers of two: required minimum low, maximum high.
        let allows = |sizes: u8, wanted: u8| sizes & 0xf <= wanted && wanted <= sizes >> 4;
        if !allows(data[512], SQ_ENTRY_SIZE) || !allows(data[513], CQ_ENTRY_SIZE) {
            return Err(Error::Unsupported);
        }
        let namespaces = u32::from_le_bytes([data[516], data[517], data[518], data[519]]);
        if namespaces < NAMESPACE {
            return Err(Error::NoNamespace);
        }
        // MDTS is a power of two of CAP.MPSMIN pages (4 KiB); 0 means no
        // limit. Any transfer up to 512 pages fits one PRP list whatever
        // the first page's offset.
        let prp_limit = (PRP_LIST_ENTRIES * PAGE) as u64;
        self.identity.max_transfer = match data[77] {
            0 => prp_limit,
            mdts => 1u64
                .checked_shl(u32::from(mdts))
                .and_then(|pages| pages.checked_mul(PAGE as u64))
                .map_or(prp_limit, |bytes| bytes.min(prp_limit)),
        };
        Ok(())
    }

    fn identify_namespace(&mut self) -> Result<(), Error> {
        let mut data = [0u8; 192];
        self.identify(CNS_NAMESPACE, NAMESPACE, &mut data)?;
        let mut size = [0u8; 8];
        size.copy_from_slice(&data[0..8]);
        let blocks = u64::from_le_bytes(size);
        let formats = data[25];
        let format = data[26] & 0xf;
        if format > formats {
            return Err(Error::Unsupported);
        }
        // LBA formats: 4 bytes each from byte 128; format <= 15 keeps it
        // inside `data`.
        let at = 128 + 4 * usize::from(format);
        let lbaf = u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let metadata = lbaf & 0xffff;
        let block_shift = (lbaf >> 16) & 0xff;
        // Metadata would need MPTR or interleaving; 512 B to 64 KiB blocks.
        if metadata != 0 || !(9..=16).contains(&block_shift) {
            return Err(Error::Unsupported);
        }
        if blocks == 0 {
            return Err(Error::NoNamespace);
        }
        self.identity.blocks = blocks;
        self.identity.block_size = 1 << block_shift;
        Ok(())
    }

    fn create_io_queues(&mut self) -> Result<(), Error> {
        // Queue sizes are 0-based.
        let size = u32::from(self.depth() - 1) << 16;
        let qid = u32::from(IO_QUEUE);
        self.run_admin(&Command {
            opcode: ADMIN_CREATE_CQ,
            prp1: self.mem.page_iova(self.layout.io_cq),
            cdw10: size | qid,
            cdw11: QUEUE_CONTIGUOUS,
            ..Command::default()
        })?;
        self.run_admin(&Command {
            opcode: ADMIN_CREATE_SQ,
            prp1: self.mem.page_iova(self.layout.io_sq),
            cdw10: size | qid,
            // Completions go to the CQ of the same id.
            cdw11: (qid << 16) | QUEUE_CONTIGUOUS,
            ..Command::default()
        })?;
        Ok(())
    }

    /// Starts moving `blocks` blocks at `lba` of namespace 1 between the
    /// device and the buffer whose 4 KiB pages are at IOVAs `pages`, in
    /// order (the first may start inside its page, 4-byte aligned; the
    /// rest are page aligned). Returns the command id to wait for.
    pub fn submit(&mut self, op: IoOp, lba: u64, blocks: u32, pages: &[u64]) -> Result<u16, Error> {
        self.check_transfer(lba, blocks, pages)?;
        let slot = self.free_slot()?;
        let (first, prp2) = match pages {
            [] => return Err(Error::PageCount),
            [first] => (*first, 0),
            [first, second] => (*first, *second),
            [first, rest @ ..] => (*first, self.write_prp_list(slot, rest)?),
        };
        self.push_io(slot, op, lba, blocks, first, prp2)
    }

    /// Submits a transfer with PRP1 and PRP2 as given, unchecked against
    /// any buffer: how a driver shows what the IOMMU does with a command
    /// whose PRP names an IOVA nothing is mapped at (a PRP2 that points at
    /// a PRP list makes the device fetch it). The range is still checked.
    pub fn submit_prps(
        &mut self,
        op: IoOp,
        lba: u64,
        blocks: u32,
        prp1: u64,
        prp2: u64,
    ) -> Result<u16, Error> {
        if blocks == 0 {
            return Err(Error::ZeroBlocks);
        }
        let end = lba
            .checked_add(u64::from(blocks))
            .ok_or(Error::OutOfRange)?;
        if blocks > MAX_BLOCKS || end > self.identity.blocks {
            return Err(Error::OutOfRange);
        }
        let slot = self.free_slot()?;
        self.push_io(slot, op, lba, blocks, prp1, prp2)
    }

    fn free_slot(&self) -> Result<usize, Error> {
        if self.down {
            return Err(Error::Down);
        }
        self.slots[..self.slot_count]
            .iter()
            .position(|slot| *slot == Slot::Free)
            .ok_or(Error::QueueFull)
    }

    fn push_io(
        &mut self,
        slot: usize,
        op: IoOp,
        lba: u64,
        blocks: u32,
        first: u64,
        prp2: u64,
    ) -> Result<u16, Error> {
        let cmd = Command {
            opcode: match op {
                IoOp::Read => IO_READ,
                IoOp::Write => IO_WRITE,
            },
            nsid: NAMESPACE,
            prp1: first,
            prp2,
            cdw10: lba as u32,
            cdw11: (lba >> 32) as u32,
            // NLB is 0-based; `check_transfer` bounds `blocks` to 1..=65536.
            cdw12: blocks - 1,
            ..Command::default()
        };
        // Below SLOTS (255), so the slot fits the low byte.
        let generation = self.generations[slot].wrapping_add(1);
        let device_cid = slot as u16 | (u16::from(generation) << 8);
        self.io.push(&self.regs, &self.mem, &cmd, device_cid)?;
        self.generations[slot] = generation;
        let deadline = self
            .counters
            .polls
            .saturating_add(u64::from(self.limits.command));
        self.slots[slot] = Slot::InFlight {
            generation,
            deadline,
        };
        self.next_deadline = self.next_deadline.min(deadline);
        self.in_flight += 1;
        Ok(slot as u16)
    }

    fn check_transfer(&self, lba: u64, blocks: u32, pages: &[u64]) -> Result<(), Error> {
        if blocks == 0 {
            return Err(Error::ZeroBlocks);
        }
        if blocks > MAX_BLOCKS {
            return Err(Error::TooLarge);
        }
        let end = lba
            .checked_add(u64::from(blocks))
            .ok_or(Error::OutOfRange)?;
        if end > self.identity.blocks {
            return Err(Error::OutOfRange);
        }
        let bytes = u64::from(blocks)
            .checked_mul(u64::from(self.identity.block_size))
            .ok_or(Error::TooLarge)?;
        if bytes > self.identity.max_transfer {
            return Err(Error::TooLarge);
        }
        let first = *pages.first().ok_or(Error::PageCount)?;
        if first % 4 != 0 {
            return Err(Error::Misaligned);
        }
        let page = PAGE as u64;
        // `first % page + bytes` cannot overflow: bytes <= 2^32.
        let needed = (first % page + bytes).div_ceil(page);
        if needed > PRP_LIST_ENTRIES as u64 + 1 {
            return Err(Error::TooLarge);
        }
        if pages.len() as u64 != needed {
            return Err(Error::PageCount);
        }
        if pages[1..].iter().any(|iova| iova % page != 0) {
            return Err(Error::Misaligned);
        }
        Ok(())
    }

    /// Fills `slot`'s PRP-list page with `entries` (at most 512, checked
    /// by `check_transfer`) and returns its IOVA.
    fn write_prp_list(&self, slot: usize, entries: &[u64]) -> Result<u64, Error> {
        let page = self.layout.prp_lists + slot;
        let mut chunk = [0u8; 512];
        for (i, group) in entries.chunks(chunk.len() / 8).enumerate() {
            for (bytes, iova) in chunk.chunks_exact_mut(8).zip(group) {
                bytes.copy_from_slice(&iova.to_le_bytes());
            }
            let at = page * PAGE + i * chunk.len();
            self.mem.write(at, &chunk[..group.len() * 8])?;
        }
        Ok(self.mem.page_iova(page))
    }

    /// One completion, if there is one: first any reaped while waiting for
    /// another command, then the next new CQ entry.
    /// One completion, if there is one: first any reaped while waiting for
    /// another command or failed by a reset, then the next new CQ entry
    /// (entries that are ignored are passed over, at most a queue's worth).
    /// Each CQ read counts towards the deadlines.
    pub fn poll(&mut self) -> Result<Option<Completion>, Error> {
        for _ in 0..self.depth() {
            if let Some(done) = self.take_any_done() {
                return Ok(Some(done));
            }
            if self.down {
                return Err(Error::Down);
            }
            let reaped = self.reap()?;
            self.expire();
            match reaped {
                Reaped::Completed(slot) => return Ok(self.take(slot)),
                Reaped::Ignored => {}
                Reaped::Empty => break,
            }
        }
        match self.take_any_done() {
            Some(done) => Ok(Some(done)),
            None if self.down => Err(Error::Down),
            None => Ok(None),
        }
    }

    /// Waits until the device holds no command of this driver: each in
    /// flight has completed (kept for [`Nvme::poll`], not taken) or been
    /// failed at its deadline. At most [`COMMAND_POLLS`] CQ reads, plus a
    /// reset. A driver about to stop (or to be stopped) calls it so that
    /// its next life's controller reset finds the device idle.
    pub fn settle(&mut self) -> Result<(), Error> {
        for _ in 0..=self.limits.command {
            let busy = self.slots[..self.slot_count]
                .iter()
                .any(|s| matches!(s, Slot::InFlight { .. }));
            if !busy {
                return Ok(());
            }
            if self.down {
                return Err(Error::Down);
            }
            self.reap()?;
            self.expire();
        }
        Err(Error::Timeout)
    }

    /// Waits for command `cid` to complete, or to be failed when its
    /// deadline passes ([`Status::TimedOut`]) or another's does
    /// ([`Status::Reset`]): at most [`COMMAND_POLLS`] CQ reads, however
    /// the device behaves, plus a reset. Completions of other commands
    /// meanwhile are kept for [`Nvme::poll`].
    pub fn wait(&mut self, cid: u16) -> Result<Completion, Error> {
        let slot = usize::from(cid);
        // The command's deadline is at most `command` polls away, and the
        // poll that reaches it resets the controller.
        for _ in 0..=self.limits.command {
            match self.slots[..self.slot_count].get(slot) {
                Some(Slot::InFlight { .. }) => {}
                Some(Slot::Done(_)) => return self.take(slot).ok_or(Error::NotInFlight(cid)),
                _ => return Err(Error::NotInFlight(cid)),
            }
            if self.down {
                return Err(Error::Down);
            }
            self.reap()?;
            self.expire();
        }
        Err(Error::Timeout)
    }

    /// Reads the I/O CQ once and consumes a new entry: a completion of an
    /// in-flight command goes into its slot; anything else is counted.
    fn reap(&mut self) -> Result<Reaped, Error> {
        self.count_poll();
        let Some(cqe) = self.io.pop(&self.regs, &self.mem)? else {
            return Ok(Reaped::Empty);
        };
        let Some(slot) = self.in_flight_slot(&cqe) else {
            self.counters.ignored = self.counters.ignored.saturating_add(1);
            return Ok(Reaped::Ignored);
        };
        self.slots[slot] = Slot::Done(Status::from_field(cqe.status));
        self.in_flight = self.in_flight.saturating_sub(1);
        self.done += 1;
        Ok(Reaped::Completed(slot))
    }

    /// The slot whose command `cqe` completes: on the I/O queue, its id's
    /// low byte a slot holding a command in flight, its high byte that
    /// command's generation.
    fn in_flight_slot(&self, cqe: &Cqe) -> Option<usize> {
        if cqe.sq_id != self.io.id {
            return None;
        }
        let slot = usize::from(cqe.cid & 0xff);
        let generation = (cqe.cid >> 8) as u8;
        match self.slots[..self.slot_count].get(slot)? {
            Slot::InFlight { generation: g, .. } if *g == generation => Some(slot),
            _ => None,
        }
    }

    fn take_any_done(&mut self) -> Option<Completion> {
        if self.done == 0 {
            return None;
        }
        let slot = self.slots[..self.slot_count]
            .iter()
            .position(|s| matches!(s, Slot::Done(_)))?;
        self.take(slot)
    }

    /// Hands a completed slot's result to the caller and frees the slot.
    fn take(&mut self, slot: usize) -> Option<Completion> {
        let entry = self.slots.get_mut(slot)?;
        let Slot::Done(status) = *entry else {
            return None;
        };
        *entry = Slot::Free;
        self.done = self.done.saturating_sub(1);
        Some(Completion {
            cid: slot as u16,
            status,
        })
    }

    /// Stops the controller (CC.EN = 0, waiting for RDY to drop) so it
    /// no longer touches the queue memory, and gives the registers back.
    pub fn disable(mut self) -> (R, Result<(), Error>) {
        let result = self.disable_and_wait();
        (self.regs, result)
    }

    /// What the device did wrong so far, and the polls it cost.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether a reset failed and none has succeeded since.
    pub fn is_down(&self) -> bool {
        self.down
    }

    pub fn model(&self) -> &str {
        ascii(&self.identity.model)
    }

    pub fn serial(&self) -> &str {
        ascii(&self.identity.serial)
    }

    pub fn firmware(&self) -> &str {
        ascii(&self.identity.firmware)
    }

    /// Namespace 1's size in blocks (NSZE).
    pub fn blocks(&self) -> u64 {
        self.identity.blocks
    }

    /// Namespace 1's block size in bytes, from the LBA format FLBAS selects.
    pub fn block_size(&self) -> u32 {
        self.identity.block_size
    }

    /// The largest transfer in bytes `submit` accepts.
    pub fn max_transfer(&self) -> u64 {
        self.identity.max_transfer
    }

    /// Entries of the I/O queue.
    pub fn depth(&self) -> u16 {
        // slot_count = depth - 1 <= 255.
        self.slot_count as u16 + 1
    }

    /// Commands submitted whose completion has not arrived.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    pub fn regs(&self) -> &R {
        &self.regs
    }
}

/// An identify string: ASCII padded with spaces; anything not UTF-8 cuts
/// it short rather than failing.
fn ascii(bytes: &[u8]) -> &str {
    let text = match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    };
    text.trim_end_matches([' ', '\0'])
}

/// What one read of the I/O completion queue found.
enum Reaped {
    Empty,
    Ignored,
    Completed(usize),
}
