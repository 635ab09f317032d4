//! One submission/completion queue pair: entry encoding, the SQ tail and
//! CQ head with its phase tag, and the doorbells.

use mmio::Memory;
use mmio::RegisterBlock;

use crate::error::Error;
use crate::memory::QueueMemory;

const SQE_BYTES: usize = 64;
const CQE_BYTES: usize = 16;
/// Doorbell registers start here in BAR0; their stride is CAP.DSTRD's.
const DOORBELLS: usize = 0x1000;

/// A submission queue entry as the caller fills it; the driver adds the
/// command id, and the data pointer is PRP1/PRP2 (PSDT = 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    pub opcode: u8,
    pub nsid: u32,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
}

impl Command {
    fn encode(&self, cid: u16) -> [u8; SQE_BYTES] {
        let mut entry = [0u8; SQE_BYTES];
        let dw0 = u32::from(self.opcode) | (u32::from(cid) << 16);
        let words = [
            (0, u64::from(dw0), 4),
            (4, u64::from(self.nsid), 4),
            (24, self.prp1, 8),
            (32, self.prp2, 8),
            (40, u64::from(self.cdw10), 4),
            (44, u64::from(self.cdw11), 4),
            (48, u64::from(self.cdw12), 4),
            (52, u64::from(self.cdw13), 4),
            (56, u64::from(self.cdw14), 4),
            (60, u64::from(self.cdw15), 4),
        ];
        for (at, value, width) in words {
            entry[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        entry
    }
}

/// A completion queue entry, copied out of memory once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cqe {
    /// DW0, command specific.
    pub result: u32,
    pub sq_id: u16,
    pub cid: u16,
    /// The status field without the phase tag.
    pub status: u16,
}

fn le32(bytes: &[u8; CQE_BYTES], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[derive(Debug)]
pub(crate) struct QueuePair {
    pub id: u16,
    depth: u16,
    /// Byte offsets of the queues in the queue memory.
    sq: usize,
    cq: usize,
    sq_tail: u16,
    cq_head: u16,
    /// The phase tag a new entry at `cq_head` carries: 1 on the first
    /// pass over the zeroed CQ, flipped at every wrap.
    phase: bool,
    sq_doorbell: usize,
    cq_doorbell: usize,
}

impl QueuePair {
    /// Queue `id` of `depth` entries at byte offsets `sq` and `cq`, with
    /// doorbells `stride` bytes apart (4 << CAP.DSTRD, at most 128 KiB).
    pub fn new(id: u16, depth: u16, sq: usize, cq: usize, stride: usize) -> QueuePair {
        let sq_index = 2 * usize::from(id);
        QueuePair {
            id,
            depth,
            sq,
            cq,
            sq_tail: 0,
            cq_head: 0,
            phase: true,
            sq_doorbell: DOORBELLS + sq_index * stride,
            cq_doorbell: DOORBELLS + (sq_index + 1) * stride,
        }
    }

    /// Back to the state of a freshly created queue pair, as the
    /// controller is after a reset: both indices 0, phase tag 1.
    pub fn restart(&mut self) {
        self.sq_tail = 0;
        self.cq_head = 0;
        self.phase = true;
    }

    fn next(&self, index: u16) -> u16 {
        if index + 1 >= self.depth {
            0
        } else {
            index + 1
        }
    }

    /// Writes `cmd` at the SQ tail and rings the doorbell. The caller
    /// makes sure the SQ has room (fewer than `depth - 1` in flight).
    pub fn push<M: Memory>(
        &mut self,
        regs: &impl RegisterBlock,
        mem: &QueueMemory<'_, M>,
        cmd: &Command,
        cid: u16,
    ) -> Result<(), Error> {
        let at = self.sq + usize::from(self.sq_tail) * SQE_BYTES;
        mem.write(at, &cmd.encode(cid))?;
        self.sq_tail = self.next(self.sq_tail);
        // The entry must be visible to the device before the doorbell.
        mmio::dma_wmb();
        regs.write32(self.sq_doorbell, u32::from(self.sq_tail));
        Ok(())
    }

    /// The entry at the CQ head if its phase tag says it is new; the head
    /// then advances and the CQ doorbell hands the slot back.
    pub fn pop<M: Memory>(
        &mut self,
        regs: &impl RegisterBlock,
        mem: &QueueMemory<'_, M>,
    ) -> Result<Option<Cqe>, Error> {
        let at = self.cq + usize::from(self.cq_head) * CQE_BYTES;
        let mut status = [0u8; 2];
        mem.read(at + 14, &mut status)?;
        if ((status[0] & 1) == 1) != self.phase {
            return Ok(None);
        }
        // The rest of the entry is read only after its phase tag.
        mmio::dma_rmb();
        let mut entry = [0u8; CQE_BYTES];
        mem.read(at, &mut entry)?;
        self.cq_head = self.next(self.cq_head);
        if self.cq_head == 0 {
            self.phase = !self.phase;
        }
        // The entry is read before the device may reuse its slot.
        mmio::dma_mb();
        regs.write32(self.cq_doorbell, u32::from(self.cq_head));
        let dw3 = le32(&entry, 12);
        Ok(Some(Cqe {
            result: le32(&entry, 0),
            sq_id: (le32(&entry, 8) >> 16) as u16,
            cid: dw3 as u16,
            status: (dw3 >> 17) as u16,
        }))
    }
}
