//! The DMA memory the driver lays its queues in, and where each part goes.

use mmio::Memory;

use crate::error::Error;

/// The memory page size the driver programs (CC.MPS = 0), and the unit
/// of PRP entries.
pub const PAGE: usize = 4096;

const SQE_BYTES: usize = 64;
const CQE_BYTES: usize = 16;

/// A piece of the driver's DMA memory that the caller has mapped for the
/// device, readable and writable, at `iova`: `len` bytes of `mem` from
/// `offset`. The driver lays out in it, page by page, the admin SQ, the
/// admin CQ, the I/O SQ, the I/O CQ, a page for IDENTIFY data, then one
/// PRP-list page per I/O command slot.
#[derive(Debug)]
pub struct QueueMemory<'m, M> {
    pub mem: &'m M,
    pub offset: usize,
    pub iova: u64,
    pub len: usize,
}

/// Page indices of each part of the queue memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub admin_sq: usize,
    pub admin_cq: usize,
    pub io_sq: usize,
    pub io_cq: usize,
    pub identify: usize,
    pub prp_lists: usize,
    pub pages: usize,
}

impl Layout {
    /// The layout for an I/O queue of `depth` entries: `depth - 1` command
    /// slots, as many as can be in flight without the SQ or CQ filling.
    pub const fn new(depth: u16) -> Layout {
        let depth = depth as usize;
        let io_sq = 2;
        let io_cq = io_sq + pages_for(depth * SQE_BYTES);
        let identify = io_cq + pages_for(depth * CQE_BYTES);
        let prp_lists = identify + 1;
        Layout {
            admin_sq: 0,
            admin_cq: 1,
            io_sq,
            io_cq,
            identify,
            prp_lists,
            pages: prp_lists + depth.saturating_sub(1),
        }
    }
}

/// Whole pages holding `bytes`, at least one.
const fn pages_for(bytes: usize) -> usize {
    if bytes == 0 {
        1
    } else {
        bytes.div_ceil(PAGE)
    }
}

impl<M: Memory> QueueMemory<'_, M> {
    /// Bytes of queue memory an I/O queue of `depth` entries needs.
    pub const fn bytes_needed(depth: u16) -> usize {
        Layout::new(depth).pages * PAGE
    }

    /// The memory can hold `layout` and every IOVA in it is computable
    /// without overflow.
    pub(crate) fn check(&self, layout: &Layout) -> Result<(), Error> {
        let big_enough = self.len >= layout.pages * PAGE;
        let aligned = self.iova.is_multiple_of(PAGE as u64);
        let no_wrap = self.iova.checked_add(self.len as u64).is_some()
            && self.offset.checked_add(self.len).is_some();
        if !big_enough || !aligned || !no_wrap {
            return Err(Error::QueueMemory);
        }
        Ok(())
    }

    /// The device's address of page `page` (checked by `check`).
    pub(crate) fn page_iova(&self, page: usize) -> u64 {
        self.iova + (page * PAGE) as u64
    }

    pub(crate) fn read(&self, at: usize, out: &mut [u8]) -> Result<(), Error> {
        let offset = self.offset.checked_add(at).ok_or(Error::Memory)?;
        self.mem
            .read(offset, out)
            .then_some(())
            .ok_or(Error::Memory)
    }

    pub(crate) fn write(&self, at: usize, bytes: &[u8]) -> Result<(), Error> {
        let offset = self.offset.checked_add(at).ok_or(Error::Memory)?;
        self.mem
            .write(offset, bytes)
            .then_some(())
            .ok_or(Error::Memory)
    }

    /// Zeroes whole pages: a fresh CQ must hold phase tags of 0.
    pub(crate) fn zero_pages(&self, first: usize, count: usize) -> Result<(), Error> {
        const CHUNK: [u8; 512] = [0; 512];
        for page in first..first + count {
            for piece in 0..PAGE / CHUNK.len() {
                self.write(page * PAGE + piece * CHUNK.len(), &CHUNK)?;
            }
        }
        Ok(())
    }
}
