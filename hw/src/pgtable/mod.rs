//! AArch64 VMSAv8-64 stage-1 IO page tables for the ARM SMMUv3, 4 KiB
//! granule, after Linux's io-pgtable-arm (ARM_64_LPAE_S1).
//!
//! Tables come from a [`TablePool`] the caller owns; an [`IoPageTable`] is
//! just a root and a [`Format`], so one pool serves every domain. No heap,
//! no `unsafe`: the pool is a plain slice whose physical address is known.
//!
//! Every operation is all or nothing. `map` first surveys the range without
//! writing (conflicts, tables needed) and only then installs it, so a failed
//! map never exposes a descriptor that would have to be withdrawn behind the
//! TLB's back. `unmap` refuses to split a block or page before it clears
//! anything, frees tables that became empty and reports what the TLB must
//! forget in a [`Gather`].
//!
//! Table pages `unmap` frees do not go straight back to the pool: until the
//! TLB invalidation covering them has completed, the SMMU's walk caches may
//! still point at them, so they wait on the pool's pending list, reading as
//! invalid descriptors. After a successful flush of the gather (see
//! [`TlbFlush`]) the caller commits them ([`TablePool::commit_pending`]);
//! after a failed one it leaks them ([`TablePool::leak_pending`]) so that
//! no later `map`, in any table sharing the pool, can reuse a page a stale
//! walk cache entry still reaches. [`PtDomain`] does exactly that inside
//! `unmap_pages`.
//!
//! On coherent SMMUs there is no cache maintenance to order the writes, so
//! a new table's zeroing is published with [`mmio::dma_wmb`] before
//! the table descriptor linking it, and every descriptor is written with a
//! single 64-bit store.

mod desc;
mod gather;
mod pool;

pub use desc::{MemAttr, ENTRIES, MAIR};
pub use gather::{Gather, InvRange, TlbFlush, GATHER_RUNS};
pub use pool::{TablePage, TablePool, GRANULE};

use desc::{entry_size, index, kind, level_shift, Kind, LEAF_LEVEL};
use iommu_types::{Errno, IovaRange, Prot};
use iopt::{IoDomain, Unconfirmed};
use mmio::dma_wmb;

/// Page sizes of the 4 KiB granule: pages, level-2 and level-1 blocks.
pub const SIZE_4K: u64 = 1 << 12;
pub const SIZE_2M: u64 = 1 << 21;
pub const SIZE_1G: u64 = 1 << 30;

/// Input address bits an SMMUv3 stage-1 table with the 4 KiB granule can
/// use: T0SZ 16..=39 (smaller tables need SMMUv3.1 TTST).
const IAS_RANGE: core::ops::RangeInclusive<u32> = 25..=48;
/// Output address bits: 32 up to 48 (52-bit LPA is not supported).
const OAS_RANGE: core::ops::RangeInclusive<u32> = 32..=48;

/// Shape of one page table.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    /// Input (IOVA) address bits, 25..=48.
    pub ias: u32,
    /// Output (physical) address bits, 32..=48.
    pub oas: u32,
    /// Memory type of every mapping.
    pub mem: MemAttr,
}

impl Format {
    /// CD.T0SZ.
    pub const fn t0sz(&self) -> u32 {
        64u32.saturating_sub(self.ias)
    }

    /// The level the walk starts at: as few levels as cover `ias` bits, nine
    /// bits per level above the 12-bit page offset.
    pub const fn start_level(&self) -> u32 {
        if self.ias > 39 {
            0
        } else if self.ias > 30 {
            1
        } else if self.ias > 21 {
            2
        } else {
            3
        }
    }

    /// EINVAL unless `ias` and `oas` are within what this module supports.
    pub fn validate(&self) -> Result<(), Errno> {
        if IAS_RANGE.contains(&self.ias) && OAS_RANGE.contains(&self.oas) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// One past the highest IOVA; `validate` keeps it at or below 2^48.
    const fn iova_end(&self) -> u64 {
        1 << self.ias
    }

    const fn phys_end(&self) -> u64 {
        1 << self.oas
    }
}

/// One stage-1 page table: a root page in a [`TablePool`] and its format.
#[derive(Debug)]
pub struct IoPageTable {
    /// The pool the tables come from (see `TablePool::identity`).
    pool: usize,
    root: usize,
    root_phys: u64,
    format: Format,
    /// Pages this table holds, root included.
    tables: usize,
    /// Most pages this table may hold (a share of its owner's quota).
    table_limit: usize,
    /// Unmaps [`PtDomain::unmap_pages`] had to refuse, and the last one.
    unmap_refusals: u64,
    last_unmap_refusal: Option<UnmapRefusal>,
}

/// An unmap [`PtDomain::unmap_pages`] refused (it would have split a block
/// or page, or was malformed): the IOAS engine believes the range unmapped
/// while the table still maps it. The engine never asks for that, so a
/// refusal means the engine and the table disagree; treat it as fatal for
/// the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapRefusal {
    pub iova: u64,
    pub length: u64,
    pub errno: Errno,
}

/// One map request after validation.
struct MapRequest {
    iova: u64,
    phys: u64,
    leaf_level: u32,
    attrs: u64,
}

impl IoPageTable {
    /// An empty table. ENOMEM if the pool has no page; EINVAL for an
    /// unsupported format or a pool the format's `oas` cannot address.
    pub fn new(pool: &mut TablePool<'_>, format: Format) -> Result<IoPageTable, Errno> {
        format.validate()?;
        if pool.capacity() > 0 && pool.phys_end() > format.phys_end() {
            return Err(Errno::EINVAL);
        }
        let root = pool.alloc().ok_or(Errno::ENOMEM)?;
        Ok(IoPageTable {
            pool: pool.identity(),
            root,
            root_phys: pool.phys_of(root),
            format,
            tables: 1,
            table_limit: usize::MAX,
            unmap_refusals: 0,
            last_unmap_refusal: None,
        })
    }

    /// For CD.TTB0.
    pub fn root_phys(&self) -> u64 {
        self.root_phys
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// 4 KiB and 2 MiB always; 1 GiB when the walk has a level 1.
    pub fn page_sizes(&self) -> u64 {
        let mut sizes = SIZE_4K | SIZE_2M;
        if self.format.start_level() <= 1 {
            sizes |= SIZE_1G;
        }
        sizes
    }

    /// `[0, 2^ias - 1]`.
    pub fn aperture(&self) -> IovaRange {
        IovaRange::new(0, self.format.iova_end() - 1)
    }

    /// Pages this table currently holds, root included.
    pub fn tables_used(&self) -> usize {
        self.tables
    }

    /// Caps the pages this table may hold (root included): a map needing
    /// more is ENOMEM and changes nothing. Lets an owner's page-table quota
    /// be split over its tables. No cap by default.
    pub fn set_table_limit(&mut self, limit: usize) {
        self.table_limit = limit;
    }

    /// How many unmaps [`PtDomain::unmap_pages`] refused on this table
    /// (it cannot return an error). Nonzero means the table maps IOVA the
    /// IOAS engine believes unmapped: stop using the domain.
    pub fn unmap_refusals(&self) -> u64 {
        self.unmap_refusals
    }

    /// The last unmap [`PtDomain::unmap_pages`] refused on this table.
    pub fn last_unmap_refusal(&self) -> Option<UnmapRefusal> {
        self.last_unmap_refusal
    }

    /// EINVAL when `pool` is not the pool this table lives in.
    fn check_pool(&self, pool: &TablePool<'_>) -> Result<(), Errno> {
        if pool.identity() == self.pool && pool.index_of(self.root_phys) == Some(self.root) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        }
    }

    /// The level whose leaves are `page_size` bytes.
    fn leaf_level(&self, page_size: u64) -> Option<u32> {
        let level = match page_size {
            SIZE_4K => LEAF_LEVEL,
            SIZE_2M => LEAF_LEVEL - 1,
            SIZE_1G => LEAF_LEVEL - 2,
            _ => return None,
        };
        // A block needs a table of its level below or at the root.
        (level >= self.format.start_level()).then_some(level)
    }

    // ---- map ----------------------------------------------------------

    /// Maps `count` pages of `page_size` (4K, 2M or 1G) at `iova` ->
    /// `phys`, in one walk after a read-only survey. All or nothing:
    /// ENOMEM when the pool cannot supply every table needed, EEXIST if any
    /// target slot (or a block covering it) is in use, EINVAL for
    /// misalignment, an unsupported size, `iova` outside the aperture,
    /// `phys` beyond `oas`, a physical range overlapping the page-table pool
    /// itself (a device must never reach its own tables), `count` 0 or no
    /// access in `prot`. On error the tables are exactly as before.
    pub fn map(
        &mut self,
        pool: &mut TablePool<'_>,
        iova: u64,
        phys: u64,
        page_size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), Errno> {
        self.check_pool(pool)?;
        if !prot.intersects(Prot::READ | Prot::WRITE) || count == 0 {
            return Err(Errno::EINVAL);
        }
        let leaf_level = self.leaf_level(page_size).ok_or(Errno::EINVAL)?;
        // A power of two (leaf_level checked): masks, not divisions.
        if (iova | phys) & (page_size - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_size.checked_mul(count).ok_or(Errno::EINVAL)?;
        let end = iova
            .checked_add(len)
            .filter(|&end| end <= self.format.iova_end())
            .ok_or(Errno::EINVAL)?;
        let phys_end = phys
            .checked_add(len)
            .filter(|&end| end <= self.format.phys_end())
            .ok_or(Errno::EINVAL)?;
        if phys < pool.phys_end() && pool.phys_base() < phys_end {
            return Err(Errno::EINVAL);
        }

        let start_level = self.format.start_level();
        let attrs = desc::leaf_attrs(self.format.mem, prot);
        // The common case: every page lands in one table that exists. One
        // descent, one branch-free check of the slots, one fill; nothing
        // is written unless every slot is free.
        if let Some(table) =
            existing_leaf_table(pool, self.root, start_level, iova, end, leaf_level)
        {
            let slots = index(iova, leaf_level)..index(end - 1, leaf_level) + 1;
            let first = desc::leaf(phys, leaf_level, attrs);
            if !fill_if_empty(pool.page_mut(table), slots.clone(), first, page_size) {
                return Err(Errno::EEXIST);
            }
            pool.clean(table, slots);
            return Ok(());
        }
        let needed = survey(pool, self.root, start_level, iova, end, leaf_level)?;
        if needed > pool.free() || self.tables.saturating_add(needed) > self.table_limit {
            return Err(Errno::ENOMEM);
        }
        let request = MapRequest {
            iova,
            phys,
            leaf_level,
            attrs,
        };
        let allocated = install(pool, self.root, start_level, iova, end, &request);
        debug_assert_eq!(allocated, needed);
        self.tables += allocated;
        Ok(())
    }

    // ---- unmap --------------------------------------------------------

    /// Unmaps every leaf inside `[iova, iova + len)` in one walk, frees
    /// tables that became empty (never the root) and records one
    /// [`InvRange`] per contiguous cleared run into `gather`. The range may
    /// extend past the aperture (`[2^63, 2^64)` is accepted). EINVAL for a
    /// misaligned or empty range, or one that would split a block or page;
    /// then nothing changes. Returns the bytes unmapped.
    ///
    /// Freed tables go to the pool's pending list, not its free list: a
    /// caller using `unmap` directly (rather than through [`PtDomain`])
    /// must flush `gather` and then call [`TablePool::commit_pending`], or
    /// [`TablePool::leak_pending`] if the flush failed. Until then those
    /// pages are neither free nor reusable.
    pub fn unmap(
        &mut self,
        pool: &mut TablePool<'_>,
        iova: u64,
        len: u64,
        gather: &mut Gather,
    ) -> Result<u64, Errno> {
        self.check_pool(pool)?;
        if len == 0 || !iova.is_multiple_of(GRANULE) || !len.is_multiple_of(GRANULE) {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(len - 1).ok_or(Errno::EINVAL)?;
        if iova >= self.format.iova_end() {
            return Ok(0);
        }
        let end = last.min(self.format.iova_end() - 1) + 1;

        // Only the leaves holding the first and the last byte can straddle
        // the range's edges.
        if let Some((leaf_iova, _)) = self.leaf(pool, iova) {
            if leaf_iova < iova {
                return Err(Errno::EINVAL);
            }
        }
        if let Some((leaf_iova, size)) = self.leaf(pool, end - 1) {
            if leaf_iova + size > end {
                return Err(Errno::EINVAL);
            }
        }

        let mut freed = 0;
        let start_level = self.format.start_level();
        let cleared = clear(pool, self.root, start_level, iova, end, gather, &mut freed);
        self.tables -= freed;
        Ok(cleared.bytes)
    }

    // ---- lookups ------------------------------------------------------

    /// The leaf translating `iova`: its first IOVA and its size.
    fn leaf(&self, pool: &TablePool<'_>, iova: u64) -> Option<(u64, u64)> {
        self.leaf_desc(pool, iova)
            .map(|(_, level)| (iova & !(entry_size(level) - 1), entry_size(level)))
    }

    /// The leaf descriptor translating `iova` and its level.
    fn leaf_desc(&self, pool: &TablePool<'_>, iova: u64) -> Option<(u64, u32)> {
        if iova >= self.format.iova_end() {
            return None;
        }
        let mut table = self.root;
        for level in self.format.start_level()..=LEAF_LEVEL {
            let desc = pool.entries(table)[index(iova, level)];
            match kind(desc, level) {
                Kind::Invalid => return None,
                Kind::Leaf => return Some((desc, level)),
                Kind::Table(next) => table = pool.child(next),
            }
        }
        None
    }

    /// Translates one IOVA as the SMMU would; `None` when nothing maps it
    /// or `pool` is not this table's.
    pub fn iova_to_phys(&self, pool: &TablePool<'_>, iova: u64) -> Option<u64> {
        self.check_pool(pool).ok()?;
        let (desc, level) = self.leaf_desc(pool, iova)?;
        Some(desc::leaf_phys(desc, level) | (iova & (entry_size(level) - 1)))
    }

    /// Frees every table including the root, straight to the free list: the
    /// caller has made the SMMU stop using it and invalidated its ASID.
    /// Pending pages stay pending. A pool other than the table's own is
    /// left untouched.
    pub fn destroy(self, pool: &mut TablePool<'_>) {
        if self.check_pool(pool).is_err() {
            debug_assert!(false, "destroying a page table with the wrong pool");
            return;
        }
        free_tree(pool, self.root, self.format.start_level());
    }
}

// ---- walks ------------------------------------------------------------
//
// Each walk visits the entries of one table that overlap [start, end) and
// recurses into the next level at most once per entry; the depth is at most
// four. `start` and `end` always lie within the table's span.

/// The table at `leaf_level` holding every slot of `[start, end)`, when
/// the tables down to it exist and one table holds the whole range.
#[inline(always)]
fn existing_leaf_table(
    pool: &TablePool<'_>,
    root: usize,
    start_level: u32,
    start: u64,
    end: u64,
    leaf_level: u32,
) -> Option<usize> {
    // One entry of the level above the leaves (and so of every level
    // above that) covers it all; a root holding the leaves spans it all.
    if leaf_level > start_level
        && (end - 1) >> level_shift(leaf_level - 1) != start >> level_shift(leaf_level - 1)
    {
        return None;
    }
    let mut table = root;
    for level in start_level..leaf_level {
        match kind(pool.entries(table)[index(start, level)], level) {
            Kind::Table(child) => table = pool.child(child),
            Kind::Invalid | Kind::Leaf => return None,
        }
    }
    Some(table)
}

/// Writes consecutive leaves from `first_leaf` into `slots` of `table`,
/// each `size` further on (the address field is the low bits of the
/// output address), and has them cleaned.
fn fill(
    pool: &mut TablePool<'_>,
    table: usize,
    slots: core::ops::Range<usize>,
    first_leaf: u64,
    size: u64,
) {
    write_run(
        &mut pool.entries_mut(table)[slots.clone()],
        first_leaf,
        size,
    );
    pool.clean(table, slots);
}

/// Stores `first`, `first + size`, ... into `entries`, each descriptor
/// one 64-bit lane of a store from registers (vectorised: two leaves a
/// 128-bit store), never a `memcpy`, so that a concurrent walker sees it
/// whole or still zero.
#[inline(always)]
fn write_run(entries: &mut [u64], first: u64, size: u64) {
    let mut leaf = first;
    for slot in entries.iter_mut() {
        *slot = leaf;
        leaf = leaf.wrapping_add(size);
    }
}

/// Writes leaves `first`, `first + size`, ... into `slots` of `page` if
/// every one is empty (zero: `alloc` and unmap leave a live table's free
/// slots so); else returns false with `page` untouched. Nothing is written
/// before every slot is known free.
///
/// The check ORs whole blocks of slots, unrolled (no loop control), from
/// an even slot: the page is 4 KiB-aligned, so each pair of slots is an
/// aligned 128-bit word the OR reads straight from memory, one instruction
/// a pair; an odd slot at either end is ORed alone. The slots, at most one
/// table of 4 KiB, are still in L1 when the fill loop writes them.
#[inline(always)]
fn fill_if_empty(
    page: &mut TablePage,
    slots: core::ops::Range<usize>,
    first: u64,
    size: u64,
) -> bool {
    let entries = &mut page.0;
    let (lo, hi) = (slots.start, slots.end);
    debug_assert!(lo < hi && hi <= ENTRIES);
    let (pairs_lo, pairs_hi) = ((lo + 1) & !1, hi & !1);
    let mut ends = 0;
    if lo != pairs_lo {
        ends |= entries[lo];
    }
    if hi != pairs_hi {
        ends |= entries[hi - 1];
    }
    if ends != 0 {
        return false;
    }
    // An index stepping from an even slot by an even block (rather than a
    // chunk iterator) keeps the evenness, and so the alignment, visible.
    let mut at = pairs_lo;
    while at + BLOCK <= pairs_hi {
        let block: &[u64; BLOCK] = entries[at..at + BLOCK]
            .try_into()
            .unwrap_or_else(|_| unreachable!());
        if block.iter().fold(0, |acc, &d| acc | d) != 0 {
            return false;
        }
        at += BLOCK;
    }
    if entries[at..pairs_hi].iter().fold(0, |acc, &d| acc | d) != 0 {
        return false;
    }
    write_run(&mut entries[slots], first, size);
    true
}

/// Slots `fill_if_empty` checks at a time: eight cache lines, a block the
/// compiler unrolls whole.
const BLOCK: usize = 128;

/// One past the last IOVA the entry holding `addr` translates, capped at
/// `end`. Cannot overflow: addresses stay below 2^48.
fn entry_end(addr: u64, level: u32, end: u64) -> u64 {
    let size = entry_size(level);
    ((addr & !(size - 1)) + size).min(end)
}

/// Read-only pass of `map`: EEXIST when a leaf or table is already in the
/// way, else how many tables the install pass will allocate.
fn survey(
    pool: &TablePool<'_>,
    table: usize,
    level: u32,
    start: u64,
    end: u64,
    leaf_level: u32,
) -> Result<usize, Errno> {
    let entries = pool.entries(table);
    if level == leaf_level {
        let last = index(end - 1, level);
        return if desc::all_invalid(&entries[index(start, level)..=last]) {
            Ok(0)
        } else {
            Err(Errno::EEXIST)
        };
    }
    let mut needed = 0;
    let mut addr = start;
    while addr < end {
        let next = entry_end(addr, level, end);
        needed += match kind(entries[index(addr, level)], level) {
            Kind::Invalid => tables_to_build(level + 1, leaf_level, addr, next),
            Kind::Table(child) => {
                survey(pool, pool.child(child), level + 1, addr, next, leaf_level)?
            }
            // A block already covers part of the range.
            Kind::Leaf => return Err(Errno::EEXIST),
        };
        addr = next;
    }
    Ok(needed)
}

/// Tables of levels `first..=leaf_level` needed to map `[start, end)` below
/// an empty slot: at each level, one per table-sized span the range touches.
fn tables_to_build(first: u32, leaf_level: u32, start: u64, end: u64) -> usize {
    (first..=leaf_level)
        .map(|level| {
            // A table of `level` spans one entry of the level above.
            let shift = level_shift(level - 1);
            (((end - 1) >> shift) - (start >> shift) + 1) as usize
        })
        .sum()
}

/// Write pass of `map`; the survey has guaranteed every slot is free and
/// the pool holds every table needed. Returns the tables allocated.
///
/// Each table's written descriptors are cleaned once, after everything
/// below them: a walker that sees a new table descriptor finds the table
/// already filled (or, earlier, zero).
fn install(
    pool: &mut TablePool<'_>,
    table: usize,
    level: u32,
    start: u64,
    end: u64,
    request: &MapRequest,
) -> usize {
    if level == request.leaf_level {
        let first_leaf = desc::leaf(request.phys + (start - request.iova), level, request.attrs);
        let slots = index(start, level)..index(end - 1, level) + 1;
        fill(pool, table, slots, first_leaf, entry_size(level));
        return 0;
    }

    let mut allocated = 0;
    let mut written: Option<(usize, usize)> = None;
    let mut addr = start;
    while addr < end {
        let next = entry_end(addr, level, end);
        let i = index(addr, level);
        let child = match kind(pool.entries(table)[i], level) {
            Kind::Table(child) => pool.child(child),
            // The survey ruled out a block here.
            Kind::Invalid | Kind::Leaf => {
                let child = pool.alloc().expect("survey counted every table");
                allocated += 1;
                // The zeroed page before the descriptor that links it, for
                // a coherent walker (a non-coherent one only sees either
                // once cleaned, and the cleaner waits for completion).
                dma_wmb();
                pool.entries_mut(table)[i] = desc::table(pool.phys_of(child));
                written = Some(written.map_or((i, i), |(lo, _)| (lo, i)));
                child
            }
        };
        allocated += install(pool, child, level + 1, addr, next, request);
        addr = next;
    }
    if let Some((lo, hi)) = written {
        pool.clean(table, lo..hi + 1);
    }
    allocated
}

/// What [`clear`] did to one table.
struct Cleared {
    bytes: u64,
    /// No entry for the cleared range is valid any more: every one was a
    /// leaf or a table that was freed.
    emptied: bool,
}

/// Leaves cleared back to back, handed to the gather as one run so that
/// the gather is touched once per run, not once per leaf.
#[derive(Default)]
struct PendingRun {
    start: u64,
    len: u64,
}

impl PendingRun {
    fn extend(&mut self, gather: &mut Gather, at: u64, size: u64) {
        if self.len != 0 && self.start + self.len == at {
            self.len += size;
        } else {
            self.flush(gather);
            *self = PendingRun {
                start: at,
                len: size,
            };
        }
    }

    fn flush(&mut self, gather: &mut Gather) {
        if self.len != 0 {
            gather.add(self.start, self.len, true);
            self.len = 0;
        }
    }
}

/// Clears every leaf inside `[start, end)` below `table` (the caller has
/// checked none straddles the edges), frees tables left empty and counts
/// them in `freed`.
fn clear(
    pool: &mut TablePool<'_>,
    table: usize,
    level: u32,
    start: u64,
    end: u64,
    gather: &mut Gather,
    freed: &mut usize,
) -> Cleared {
    let size = entry_size(level);
    let (first, last) = (index(start, level), index(end - 1, level));
    let first_entry = start & !(size - 1);
    let entry_start = |i: usize| first_entry + (i - first) as u64 * size;
    let mut cleared = Cleared {
        bytes: 0,
        emptied: true,
    };
    let mut written: Option<(usize, usize)> = None;
    let mut run = PendingRun::default();

    let entries = &mut pool.entries_mut(table)[first..=last];
    if entries.iter().all(|&d| kind(d, level) == Kind::Leaf) {
        // The common case, unmapping exactly what was mapped: one run.
        invalidate_all(entries);
        written = Some((first, last));
        cleared.bytes = entries.len() as u64 * size;
        run.extend(gather, entry_start(first), cleared.bytes);
    } else {
        for i in first..=last {
            match kind(pool.entries(table)[i], level) {
                Kind::Invalid => {}
                Kind::Leaf => {
                    debug_assert!(entry_start(i) >= start && entry_start(i) + size <= end);
                    pool.entries_mut(table)[i] = 0;
                    written = Some(written.map_or((i, i), |(lo, _)| (lo, i)));
                    run.extend(gather, entry_start(i), size);
                    cleared.bytes += size;
                }
                Kind::Table(child) => {
                    // Keep the gather in IOVA order.
                    run.flush(gather);
                    let child = pool.child(child);
                    let lo = start.max(entry_start(i));
                    let hi = end.min(entry_start(i) + size);
                    let below = clear(pool, child, level + 1, lo, hi, gather, freed);
                    cleared.bytes += below.bytes;
                    // A linked table is never empty, so one this call did
                    // not touch stays; one covered whole is empty once its
                    // range is.
                    let covered = lo == entry_start(i) && hi == entry_start(i) + size;
                    if below.bytes > 0
                        && below.emptied
                        && (covered || is_empty_outside(pool, child, level + 1, lo, hi))
                    {
                        pool.entries_mut(table)[i] = 0;
                        written = Some(written.map_or((i, i), |(lo, _)| (lo, i)));
                        pool.retire(child);
                        *freed += 1;
                        // The child's last run is the gather's last.
                        gather.table_freed();
                    } else {
                        cleared.emptied = false;
                    }
                }
            }
        }
    }
    run.flush(gather);
    if let Some((lo, hi)) = written {
        pool.clean(table, lo..hi + 1);
    }
    cleared
}

/// Zeroes live descriptors with one 64-bit store each, so that a concurrent
/// walker sees every descriptor either whole or zero. `fill(0)`, or a loop
/// storing a literal 0, may become a `memset`, which promises no store
/// width; hiding the zero from the optimizer keeps this a loop of 64-bit
/// stores (vectorised: 128-bit stores, each two single-copy atomic 64-bit
/// halves).
fn invalidate_all(entries: &mut [u64]) {
    let zero = core::hint::black_box(0u64);
    for entry in entries {
        *entry = zero;
    }
}

/// Whether `table` of `level` holds nothing outside the entries for
/// `[start, end)`, which are known to be empty.
fn is_empty_outside(pool: &TablePool<'_>, table: usize, level: u32, start: u64, end: u64) -> bool {
    let entries = pool.entries(table);
    let (first, last) = (index(start, level), index(end - 1, level));
    all_zero(&entries[..first]) && all_zero(&entries[last + 1..])
}

/// Ors eight descriptors at a time so the common all-empty case is a few
/// vector operations rather than 512 branches.
fn all_zero(entries: &[u64]) -> bool {
    let chunks = entries.chunks_exact(8);
    let tail = chunks.remainder().iter().fold(0, |acc, &d| acc | d);
    tail == 0
        && chunks
            .into_iter()
            .all(|c| c.iter().fold(0, |acc, &d| acc | d) == 0)
}

/// Frees `table` and every table below it, scrubbing pages that still hold
/// descriptors.
fn free_tree(pool: &mut TablePool<'_>, table: usize, level: u32) {
    if level < LEAF_LEVEL {
        for i in 0..ENTRIES {
            if let Kind::Table(child) = kind(pool.entries(table)[i], level) {
                let child = pool.child(child);
                free_tree(pool, child, level + 1);
            }
        }
    }
    pool.scrub_and_release(table);
}

// ---- iopt adapter -------------------------------------------------------

/// One page table with its pool and flusher, as an [`iopt::IoDomain`].
/// `unmap_pages` is `unmap` + one `flush`, skipped when nothing was
/// unmapped, + committing the freed tables (or leaking them and reporting
/// the unmap unconfirmed when the flush failed).
pub struct PtDomain<'x, 'a> {
    pub pt: &'x mut IoPageTable,
    pub pool: &'x mut TablePool<'a>,
    pub tlb: &'x mut dyn TlbFlush,
}

impl core::fmt::Debug for PtDomain<'_, '_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PtDomain")
            .field("pt", &self.pt)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl IoDomain for PtDomain<'_, '_> {
    fn page_sizes(&self) -> u64 {
        self.pt.page_sizes()
    }

    fn aperture(&self) -> IovaRange {
        self.pt.aperture()
    }

    fn map_pages(
        &mut self,
        iova: u64,
        phys: u64,
        page_size: u64,
        count: u64,
        prot: Prot,
    ) -> iommu_types::Result<()> {
        self.pt.map(self.pool, iova, phys, page_size, count, prot)
    }

    /// Cannot fail: the engine only unmaps whole runs it mapped. A refused
    /// request unmaps nothing, returns 0 and is recorded on the table (see
    /// [`IoPageTable::unmap_refusals`]; debug builds also panic).
    ///
    /// Table pages the unmap freed become free only after the flush
    /// succeeded; when it fails they are leaked ([`TablePool::leaked`])
    /// and the unmap is [`Unconfirmed`]: the entries are gone from the
    /// table, but the walker may still hold them.
    fn unmap_pages(&mut self, iova: u64, length: u64) -> Result<u64, Unconfirmed> {
        if self.pool.pending() != 0 {
            // Someone unmapped directly and has not flushed yet; our flush
            // does not cover their ASID, so their pages must never be
            // committed by us. Leaking them is the safe side.
            let stale = self.pool.leak_pending();
            debug_assert!(false, "unmap_pages found {stale} uncommitted pages");
        }
        let mut gather = Gather::new();
        match self.pt.unmap(self.pool, iova, length, &mut gather) {
            Ok(0) => {
                debug_assert_eq!(self.pool.pending(), 0);
                Ok(0)
            }
            Ok(bytes) => match self.tlb.flush(&gather) {
                Ok(()) => {
                    self.pool.commit_pending();
                    Ok(bytes)
                }
                Err(_) => {
                    self.pool.leak_pending();
                    Err(Unconfirmed { bytes })
                }
            },
            Err(errno) => {
                self.pt.unmap_refusals += 1;
                self.pt.last_unmap_refusal = Some(UnmapRefusal {
                    iova,
                    length,
                    errno,
                });
                debug_assert!(
                    false,
                    "unmap_pages({iova:#x}, {length:#x}) refused: {errno}"
                );
                Ok(0)
            }
        }
    }

    fn iova_to_phys(&self, iova: u64) -> Option<u64> {
        self.pt.iova_to_phys(self.pool, iova)
    }
}
