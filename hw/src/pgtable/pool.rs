//! The memory page tables are built from: a fixed run of physically
//! contiguous 4 KiB pages handed over at start, and the cache maintenance a
//! non-coherent walker needs.

use core::fmt;
use core::ops::Range;

use mmio::{CacheClean, DmaMemory};

use super::desc::ENTRIES;

/// The translation granule, and the size of every table.
pub const GRANULE: u64 = 4096;

/// Table descriptors hold bits [47:12] of the next table's address, so no
/// table can live at or above 2^48.
const TABLE_PA_LIMIT: u64 = 1 << 48;

/// One 4 KiB table page: 512 descriptors.
#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug)]
pub struct TablePage(pub [u64; ENTRIES]);

impl TablePage {
    pub const ZERO: TablePage = TablePage([0; ENTRIES]);
}

/// Fixed pool of table pages with known physical addresses: page `i` of the
/// slice is at `phys_base + i * GRANULE`.
///
/// Invariant the page-table code relies on: every page handed out is zero
/// both in the cache and in memory, so linking it into a live table exposes
/// nothing but invalid descriptors. Freed pages are kept that way (they are
/// empty when freed, or scrubbed) apart from word 0, which links the free or
/// the pending list and always has bit 0 clear: to a walker it is still an
/// invalid descriptor. Every word the pool writes goes through the cleaner.
///
/// A table page that `unmap` frees may still be reachable through the SMMU's
/// walk caches until the invalidation covering it has completed, so it is
/// not free yet but *pending*: [`commit_pending`](Self::commit_pending)
/// makes the pending pages free once that invalidation succeeded,
/// [`leak_pending`](Self::leak_pending) gives them up for good when it
/// failed. Pending and leaked pages count as [`used`](Self::used).
pub struct TablePool<'a> {
    pages: DmaMemory<'a, TablePage>,
    phys_base: u64,
    cleaner: &'a dyn CacheClean,
    /// First page of the free list, linked through word 0 (see `link`).
    free_head: Option<usize>,
    /// Pages from here on were never handed out and hold whatever the
    /// memory held at start; they are zeroed on first use, which keeps
    /// `new` O(1).
    fresh: usize,
    free: usize,
    /// Pages freed by `unmap` whose invalidation is not confirmed yet,
    /// linked through word 0 like the free list; the tail is kept so that
    /// `commit_pending` splices the whole list in O(1).
    pending_head: Option<usize>,
    pending_tail: Option<usize>,
    pending: usize,
    /// Pages given up by `leak_pending`: never handed out again.
    leaked: usize,
}

impl fmt::Debug for TablePool<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TablePool")
            .field("phys_base", &format_args!("{:#x}", self.phys_base))
            .field("capacity", &self.capacity())
            .field("free", &self.free)
            .field("pending", &self.pending)
            .field("leaked", &self.leaked)
            .finish()
    }
}

/// Free- or pending-list link stored in word 0 of a free or pending page:
/// `(next + 1) << 1`, zero at the end of the list. Bit 0 stays clear so the
/// word reads as invalid.
const fn link(next: Option<usize>) -> u64 {
    match next {
        Some(index) => ((index as u64) + 1) << 1,
        None => 0,
    }
}

const fn unlink(word: u64) -> Option<usize> {
    match word >> 1 {
        0 => None,
        next => Some((next - 1) as usize),
    }
}

impl<'a> TablePool<'a> {
    /// Takes over `memory`, whose physical address is the one the SMMU
    /// sees it at (the promise [`DmaMemory`] holds). Pages that would lie
    /// at or above 2^48, unreachable from a table descriptor, are left
    /// unused; a misaligned physical address gives an empty pool.
    pub fn new(memory: DmaMemory<'a, TablePage>, cleaner: &'a dyn CacheClean) -> TablePool<'a> {
        let phys_base = memory.pa();
        debug_assert!(
            phys_base % GRANULE == 0,
            "pool base {phys_base:#x} misaligned"
        );
        let reachable = if phys_base % GRANULE == 0 {
            TABLE_PA_LIMIT.saturating_sub(phys_base) / GRANULE
        } else {
            0
        };
        let usable = usize::try_from(reachable).map_or(memory.len(), |r| r.min(memory.len()));
        let pages = memory.truncate(usable);
        TablePool {
            free: pages.len(),
            pages,
            phys_base,
            cleaner,
            free_head: None,
            fresh: 0,
            pending_head: None,
            pending_tail: None,
            pending: 0,
            leaked: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.pages.len()
    }

    /// Gives the memory back (the pages the pool could use), whatever
    /// tables it holds.
    pub fn into_memory(self) -> DmaMemory<'a, TablePage> {
        self.pages
    }

    /// Pages `alloc` can hand out: never used, or freed and committed.
    pub fn free(&self) -> usize {
        self.free
    }

    /// Pages not free: in tables, pending or leaked.
    pub fn used(&self) -> usize {
        self.capacity() - self.free
    }

    /// Table pages freed by `unmap` and not yet committed or leaked.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Pages given up by [`leak_pending`](Self::leak_pending) so far.
    pub fn leaked(&self) -> usize {
        self.leaked
    }

    /// Makes every pending page free. Call it only once the invalidation
    /// covering *every* unmap since the last commit or leak has completed
    /// (a successful [`TlbFlush::flush`](super::TlbFlush::flush) of their
    /// gathers), whichever table freed the pages: before that the SMMU's
    /// walk caches may still reach them.
    pub fn commit_pending(&mut self) {
        let (Some(head), Some(tail)) = (self.pending_head.take(), self.pending_tail.take()) else {
            debug_assert_eq!(self.pending, 0);
            return;
        };
        self.pages[tail].0[0] = link(self.free_head);
        self.clean(tail, 0..1);
        self.free_head = Some(head);
        self.free += self.pending;
        self.pending = 0;
    }

    /// Gives up every pending page for good, for when the invalidation
    /// covering them failed: they are never handed out again, so no walk
    /// cache entry left behind can reach a reused page. They keep reading
    /// as invalid descriptors. Returns how many pages were leaked now.
    pub fn leak_pending(&mut self) -> usize {
        let leaked = self.pending;
        self.pending_head = None;
        self.pending_tail = None;
        self.pending = 0;
        self.leaked += leaked;
        leaked
    }

    pub fn phys_base(&self) -> u64 {
        self.phys_base
    }

    /// One past the highest physical address of the pool.
    pub fn phys_end(&self) -> u64 {
        // Cannot overflow: `new` keeps the pool below 2^48.
        self.phys_base + self.capacity() as u64 * GRANULE
    }

    /// The table page at a physical address inside the pool, for walkers and
    /// diagnostics. This is what the SMMU would read there, whether or not
    /// the page is currently part of a table.
    pub fn table_at(&self, phys: u64) -> Option<&TablePage> {
        let offset = phys.checked_sub(self.phys_base)?;
        let index = usize::try_from(offset / GRANULE).ok()?;
        self.pages.get(index)
    }

    // ---- for the page-table code ----------------------------------------

    /// Tells pools apart: where the pool's memory is mapped in this PD.
    pub(super) fn identity(&self) -> usize {
        self.pages.as_ptr() as usize
    }

    pub(super) fn phys_of(&self, index: usize) -> u64 {
        self.phys_base + index as u64 * GRANULE
    }

    /// The page a table descriptor of this pool points at.
    pub(super) fn index_of(&self, phys: u64) -> Option<usize> {
        let offset = phys.checked_sub(self.phys_base)?;
        if offset % GRANULE != 0 {
            return None;
        }
        let index = usize::try_from(offset / GRANULE).ok()?;
        (index < self.pages.len()).then_some(index)
    }

    /// The page behind a table descriptor this module wrote. Only this
    /// module writes tables, so a miss means corrupted memory: stop rather
    /// than walk garbage.
    ///
    /// `phys` comes masked out of a descriptor, so it is page-aligned, and
    /// so is the base of any pool with pages: the offset needs no
    /// alignment check, and one below the base wraps far past the end.
    #[inline]
    pub(super) fn child(&self, phys: u64) -> usize {
        debug_assert_eq!(phys % GRANULE, 0);
        let index = phys.wrapping_sub(self.phys_base) / GRANULE;
        match usize::try_from(index) {
            Ok(index) if index < self.pages.len() => index,
            _ => panic!("table descriptor {phys:#x} points outside the pool"),
        }
    }

    pub(super) fn entries(&self, index: usize) -> &[u64; ENTRIES] {
        &self.pages[index].0
    }

    pub(super) fn entries_mut(&mut self, index: usize) -> &mut [u64; ENTRIES] {
        &mut self.pages[index].0
    }

    /// The whole page, whose alignment the type carries.
    pub(super) fn page_mut(&mut self, index: usize) -> &mut TablePage {
        &mut self.pages[index]
    }

    /// Makes `range` of page `index` visible to the walker.
    pub(super) fn clean(&self, index: usize, range: Range<usize>) {
        self.cleaner.clean(&self.pages[index].0[range]);
    }

    /// A zeroed page, or `None` when the pool is exhausted.
    pub(super) fn alloc(&mut self) -> Option<usize> {
        let index = if let Some(index) = self.free_head {
            let entries = &mut self.pages[index].0;
            self.free_head = unlink(entries[0]);
            entries[0] = 0;
            self.clean(index, 0..1);
            index
        } else if self.fresh < self.pages.len() {
            let index = self.fresh;
            self.fresh += 1;
            self.pages[index] = TablePage::ZERO;
            self.clean(index, 0..ENTRIES);
            index
        } else {
            return None;
        };
        self.free -= 1;
        Some(index)
    }

    /// Puts a page whose descriptors are all zero (and clean), just
    /// unlinked from a live table, on the pending list: it becomes free only
    /// with `commit_pending`.
    pub(super) fn retire(&mut self, index: usize) {
        debug_assert!(self.pages[index].0.iter().all(|&d| d == 0));
        self.pages[index].0[0] = link(self.pending_head);
        self.clean(index, 0..1);
        if self.pending_head.is_none() {
            self.pending_tail = Some(index);
        }
        self.pending_head = Some(index);
        self.pending += 1;
    }

    /// Returns a page whose descriptors are all zero (and clean) and which
    /// no walker can reach any more to the free list.
    fn release(&mut self, index: usize) {
        debug_assert!(self.pages[index].0.iter().all(|&d| d == 0));
        self.pages[index].0[0] = link(self.free_head);
        self.clean(index, 0..1);
        self.free_head = Some(index);
        self.free += 1;
    }

    /// Zeroes a page that may still hold descriptors and no walker can
    /// reach any more, and returns it to the free list.
    pub(super) fn scrub_and_release(&mut self, index: usize) {
        self.pages[index] = TablePage::ZERO;
        self.clean(index, 0..ENTRIES);
        self.release(index);
    }
}
