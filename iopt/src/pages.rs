//! Backing storage: the physical extents behind one map request, shared by
//! every area that copy or cut derives from it (Linux's `iopt_pages`).

use heapless::Vec;

use crate::{Extent, PAGE_SIZE};
use iommu_types::{ClientId, Errno, Result};

/// Most physically discontiguous extents one map request may carry. A map
/// spanning more of the caller's memory regions than this is ENOMEM.
pub const MAX_EXTENTS: usize = 8;

/// Storage for one backing object; allocate as many as there may be live
/// map requests, e.g. `[PagesSlot::EMPTY; N]`.
#[derive(Clone, Debug)]
pub struct PagesSlot {
    pages: Pages,
    /// 0 = free; otherwise the number of areas referring to it.
    refs: u32,
    next_free: u32,
}

impl PagesSlot {
    /// A free slot: all zero bytes, so a static array of them sits in
    /// `.bss`; the pool links it into its free list.
    pub const EMPTY: PagesSlot = PagesSlot {
        pages: Pages::EMPTY,
        refs: 0,
        next_free: 0,
    };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pages {
    pub extents: Vec<Extent, MAX_EXTENTS>,
    /// The caller's address for byte 0, used only to pick IOVA alignment.
    pub source: u64,
    pub writable: bool,
    /// CPU pages the extents touch: what the owner's quota is charged for
    /// as long as any area refers to them.
    pub charged: u64,
    pub owner: ClientId,
}

impl Pages {
    const EMPTY: Pages = Pages {
        extents: Vec::new(),
        source: 0,
        writable: false,
        charged: 0,
        owner: ClientId(0),
    };

    /// The byte offset of byte `offset` inside its CPU page.
    pub fn page_offset(&self, offset: u64) -> u64 {
        self.phys_at(offset).map_or(0, |p| p % PAGE_SIZE)
    }

    /// Calls `f(byte_offset, phys, len)` for each maximal physically
    /// contiguous run of `[offset, offset + length)`; extents that happen to
    /// be physically adjacent form one run so blocks can span them.
    pub fn for_each_run(
        &self,
        offset: u64,
        length: u64,
        mut f: impl FnMut(u64, u64, u64) -> Result<()>,
    ) -> Result<()> {
        let end = offset + length;
        let mut base = 0u64;
        let mut run: Option<(u64, u64, u64)> = None;
        for extent in &self.extents {
            let ext_end = base + extent.len;
            let from = offset.max(base);
            let to = end.min(ext_end);
            if from < to {
                let (delta, phys, len) = (from - offset, extent.phys + (from - base), to - from);
                run = match run {
                    Some((d, p, l)) if p.checked_add(l) == Some(phys) => Some((d, p, l + len)),
                    Some((d, p, l)) => {
                        f(d, p, l)?;
                        Some((delta, phys, len))
                    }
                    None => Some((delta, phys, len)),
                };
            }
            if ext_end >= end {
                break;
            }
            base = ext_end;
        }
        match run {
            Some((d, p, l)) => f(d, p, l),
            None => Ok(()),
        }
    }

    /// The physical address behind byte `offset`.
    pub fn phys_at(&self, offset: u64) -> Option<u64> {
        let mut base = 0u64;
        for extent in &self.extents {
            if offset < base + extent.len {
                return Some(extent.phys + (offset - base));
            }
            base += extent.len;
        }
        None
    }
}

/// Fixed pool of backing objects with reference counts.
pub(crate) struct PagesPool<'s> {
    slots: &'s mut [PagesSlot],
    free_head: u32,
    free: usize,
}

impl<'s> PagesPool<'s> {
    pub fn new(slots: &'s mut [PagesSlot]) -> PagesPool<'s> {
        let usable = slots.len().min(u32::MAX as usize);
        let slots = &mut slots[..usable];
        for (i, slot) in slots.iter_mut().enumerate() {
            *slot = PagesSlot::EMPTY;
            slot.next_free = if i + 1 < usable {
                (i + 1) as u32
            } else {
                u32::MAX
            };
        }
        PagesPool {
            free_head: if usable > 0 { 0 } else { u32::MAX },
            free: usable,
            slots,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn into_slots(self) -> &'s mut [PagesSlot] {
        self.slots
    }

    pub fn free(&self) -> usize {
        self.free
    }

    /// A new backing object with one reference, charged `charged` pages to
    /// `owner`.
    pub fn alloc(
        &mut self,
        extents: &[Extent],
        source: u64,
        writable: bool,
        charged: u64,
        owner: ClientId,
    ) -> Result<u32> {
        let extents = Vec::from_slice(extents).map_err(|_| Errno::ENOMEM)?;
        let idx = self.free_head;
        if idx == u32::MAX {
            return Err(Errno::ENOMEM);
        }
        let slot = &mut self.slots[idx as usize];
        self.free_head = slot.next_free;
        self.free -= 1;
        slot.pages = Pages {
            extents,
            source,
            writable,
            charged,
            owner,
        };
        slot.refs = 1;
        Ok(idx)
    }

    pub fn get(&self, idx: u32) -> &Pages {
        &self.slots[idx as usize].pages
    }

    pub fn get_ref(&mut self, idx: u32) {
        self.slots[idx as usize].refs += 1;
    }

    /// Drops a reference; the pages to uncharge when it was the last.
    pub fn put(&mut self, idx: u32) -> u64 {
        let slot = &mut self.slots[idx as usize];
        debug_assert!(slot.refs > 0);
        slot.refs -= 1;
        if slot.refs > 0 {
            return 0;
        }
        let charged = slot.pages.charged;
        slot.pages = Pages::EMPTY;
        slot.next_free = self.free_head;
        self.free_head = idx;
        self.free += 1;
        charged
    }

    /// Pages charged to `owner` by its live backings: what its account's
    /// `used` must be.
    pub fn charged(&self, owner: ClientId) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.refs > 0 && s.pages.owner == owner)
            .map(|s| s.pages.charged)
            .sum()
    }
}
