//! The device logic of an NVMe driver for QEMU's `-device nvme` (a subset
//! of NVMe 1.4): bring the controller up, identify it and namespace 1,
//! create one polled I/O queue pair, and read and write blocks through
//! PRPs. It knows nothing of the IOMMU: the caller maps the memory the
//! device reaches and hands the driver IOVAs, so the same code runs
//! behind the IOMMU server or without one.
//!
//! Everything the device writes (completions, identify data) is copied
//! out once and checked before use: a broken or hostile device gets an
//! [`Error`], never a panic, and every wait is bounded by a poll count.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod error;
mod memory;
mod queue;
#[cfg(feature = "sim")]
pub mod sim;
mod status;

pub use error::Error;
pub use memory::{QueueMemory, PAGE};
pub use queue::Command;
pub use status::{Completion, Status};

use iommu_client::Memory;
use memory::Layout;
use mmio::RegisterBlock;
use queue::QueuePair;

/// Deepest I/O queue: the command slots are a fixed array (no heap).
pub const MAX_DEPTH: u16 = 256;
/// Admin queue entries: the admin path runs one command at a time.
pub const ADMIN_DEPTH: u16 = 4;
/// Register reads or completion polls before a wait gives up. QEMU's
/// controller answers CC at once but completes I/O from its event loop,
/// which a polling vCPU does not hold up.
pub const POLL_LIMIT: u32 = 50_000_000;
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

/// A command slot: its PRP-list page and its command id are its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    InFlight,
    /// Completed, not yet handed to the caller (reaped while waiting for
    /// another command).
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
    /// Admin commands submitted and not completed (after a timeout).
    admin_pending: u16,
    slots: [Slot; SLOTS],
    /// Slots in use: `depth - 1`, so neither queue can fill.
    slot_count: usize,
    in_flight: u16,
    done: u16,
    identity: Identity,
    poll_limit: u32,
}

impl<'m, R: RegisterBlock, M: Memory> Nvme<'m, R, M> {
    /// Brings the controller up with an I/O queue of `depth` entries
    /// (`depth - 1` commands in flight) in `mem`, waiting at most
    /// [`POLL_LIMIT`] polls for each step.
    pub fn init(regs: R, mem: QueueMemory<'m, M>, depth: u16) -> Result<Self, Error> {
        Self::init_with_poll_limit(regs, mem, depth, POLL_LIMIT)
    }

    /// [`Nvme::init`] with another bound on every wait, for devices
    /// slower or faster than QEMU's.
    pub fn init_with_poll_limit(
        regs: R,
        mem: QueueMemory<'m, M>,
        depth: u16,
        poll_limit: u32,
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
            admin_pending: 0,
            slots: [Slot::Free; SLOTS],
            slot_count: usize::from(depth - 1),
            in_flight: 0,
            done: 0,
            identity: Identity {
                serial: [0; 20],
                model: [0; 40],
                firmware: [0; 8],
                max_transfer: 0,
                blocks: 0,
                block_size: 0,
            },
            poll_limit,
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
        let layout = self.layout;
        self.mem
            .zero_pages(layout.admin_sq, layout.identify - layout.admin_sq)?;
        let admin_size = u32::from(ADMIN_DEPTH - 1);
        self.regs.write32(AQA, (admin_size << 16) | admin_size);
        self.regs.write64(ASQ, self.mem.page_iova(layout.admin_sq));
        self.regs.write64(ACQ, self.mem.page_iova(layout.admin_cq));
        self.regs.write32(CC, CC_CONFIG | CC_EN);
        self.wait_ready(true)?;
        self.identify_controller()?;
        self.identify_namespace()?;
        self.create_io_queues()
    }

    /// Clears CC.EN and waits for CSTS.RDY to drop: the controller resets
    /// and forgets its queues.
    fn disable_and_wait(&self) -> Result<(), Error> {
        let cc = self.regs.read32(CC);
        if cc == u32::MAX {
            return Err(Error::NoDevice);
        }
        self.regs.write32(CC, cc & !CC_EN);
        self.wait_ready(false)
    }

    fn wait_ready(&self, ready: bool) -> Result<(), Error> {
        for _ in 0..self.poll_limit {
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

    /// Why a wait ran out: the controller failed, vanished, or is slow.
    fn stalled(&self) -> Error {
        match self.regs.read32(CSTS) {
            u32::MAX => Error::NoDevice,
            csts if csts & CSTS_CFS != 0 => Error::Fatal,
            _ => Error::Timeout,
        }
    }

    /// Runs one admin command to completion and returns its DW0. The
    /// device reaches whatever `cmd`'s PRPs point at.
    pub fn admin(&mut self, cmd: &Command) -> Result<u32, Error> {
        // Commands that timed out may still hold SQ entries.
        if self.admin_pending >= ADMIN_DEPTH - 1 {
            return Err(Error::QueueFull);
        }
        let cid = self.admin_cid;
        self.admin_cid = self.admin_cid.wrapping_add(1);
        self.admin.push(&self.regs, &self.mem, cmd, cid)?;
        self.admin_pending += 1;
        for _ in 0..self.poll_limit {
            let Some(cqe) = self.admin.pop(&self.regs, &self.mem)? else {
                continue;
            };
            self.admin_pending = self.admin_pending.saturating_sub(1);
            if cqe.cid != cid || cqe.sq_id != 0 {
                return Err(Error::UnknownCompletion(cqe.cid));
            }
            return match Status::from_field(cqe.status) {
                Status::Success => Ok(cqe.result),
                status => Err(Error::Command(status)),
            };
        }
        Err(self.stalled())
    }

    /// Runs IDENTIFY into the identify page, zeroed first so a device that
    /// writes nothing reads as empty, and copies out its first bytes.
    fn identify(&mut self, cns: u32, nsid: u32, out: &mut [u8]) -> Result<(), Error> {
        let page = self.layout.identify;
        self.mem.zero_pages(page, 1)?;
        self.admin(&Command {
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
        self.admin(&Command {
            opcode: ADMIN_CREATE_CQ,
            prp1: self.mem.page_iova(self.layout.io_cq),
            cdw10: size | qid,
            cdw11: QUEUE_CONTIGUOUS,
            ..Command::default()
        })?;
        self.admin(&Command {
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
        // Below SLOTS (255), so the id fits and names the slot.
        let cid = slot as u16;
        self.io.push(&self.regs, &self.mem, &cmd, cid)?;
        self.slots[slot] = Slot::InFlight;
        self.in_flight += 1;
        Ok(cid)
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
    pub fn poll(&mut self) -> Result<Option<Completion>, Error> {
        if self.done > 0 {
            if let Some(cid) = self.slots.iter().position(|s| matches!(s, Slot::Done(_))) {
                return Ok(self.take(cid as u16));
            }
        }
        match self.reap()? {
            Some(cid) => Ok(self.take(cid)),
            None => Ok(None),
        }
    }

    /// Waits, at most the poll limit, for command `cid` to complete;
    /// completions of other commands meanwhile are kept for [`Nvme::poll`].
    pub fn wait(&mut self, cid: u16) -> Result<Completion, Error> {
        match self.slots.get(usize::from(cid)) {
            Some(Slot::InFlight) => {}
            Some(Slot::Done(_)) => return self.take(cid).ok_or(Error::NotInFlight(cid)),
            _ => return Err(Error::NotInFlight(cid)),
        }
        for _ in 0..self.poll_limit {
            if self.reap()? == Some(cid) {
                return self.take(cid).ok_or(Error::NotInFlight(cid));
            }
        }
        Err(self.stalled())
    }

    /// Consumes one new I/O completion into its slot and returns its id.
    fn reap(&mut self) -> Result<Option<u16>, Error> {
        let Some(cqe) = self.io.pop(&self.regs, &self.mem)? else {
            return Ok(None);
        };
        match self.slots.get_mut(usize::from(cqe.cid)) {
            Some(slot @ Slot::InFlight) if cqe.sq_id == self.io.id => {
                *slot = Slot::Done(Status::from_field(cqe.status));
                self.in_flight = self.in_flight.saturating_sub(1);
                self.done += 1;
                Ok(Some(cqe.cid))
            }
            _ => Err(Error::UnknownCompletion(cqe.cid)),
        }
    }

    /// Hands a completed slot's result to the caller and frees the slot.
    fn take(&mut self, cid: u16) -> Option<Completion> {
        let slot = self.slots.get_mut(usize::from(cid))?;
        let Slot::Done(status) = *slot else {
            return None;
        };
        *slot = Slot::Free;
        self.done = self.done.saturating_sub(1);
        Some(Completion { cid, status })
    }

    /// Stops the controller (CC.EN = 0, waiting for RDY to drop) so it
    /// no longer touches the queue memory, and gives the registers back.
    pub fn disable(self) -> (R, Result<(), Error>) {
        let result = self.disable_and_wait();
        (self.regs, result)
    }

    /// Model number, as the controller reports it, trailing spaces removed.
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
