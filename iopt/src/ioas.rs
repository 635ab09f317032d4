//! One IO address space (Linux's `struct io_pagetable`).
//!
//! Every operation validates completely before it changes anything, and
//! every step that can fail after that (a domain running out of table
//! memory) is undone, so a failing call leaves the IOAS, the store and
//! every attached domain exactly as they were.

use heapless::Vec;

use crate::domain::{min_page, next_chunk, DomainId, DomainTable, IoDomain, Unconfirmed};
use crate::range::{Holes, Placement};
use crate::tree::{Area, NodeIdx, NIL};
use crate::{Extent, Store, PAGE_SIZE};
use iommu_types::{ClientId, Errno, IovaRange, Prot, Result, StreamId};

/// Most reserved ranges one IOAS holds (device windows, apertures).
pub const MAX_RESERVED: usize = 32;
/// Most allowed ranges one IOAS holds.
pub const MAX_ALLOWED: usize = 16;
/// Most holes automatic allocation searches: the allowed windows (or the
/// whole automatic range) less the reserved ranges, each of which splits
/// at most one hole in two.
const MAX_HOLES: usize = MAX_ALLOWED + MAX_RESERVED;
/// Most domains attached to one IOAS at a time.
pub const MAX_DOMAINS: usize = 8;

/// Lowest and highest IOVA automatic allocation may return: IOVA 0 is never
/// handed out, as in Linux.
const AUTO_WINDOW: IovaRange = IovaRange {
    start: PAGE_SIZE,
    last: u64::MAX - PAGE_SIZE,
};

/// Who put a reserved range in place; removal is by owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReservedOwner {
    /// A device's reserved windows (host-bridge windows, doorbells).
    Device(StreamId),
    /// IOVA outside an attached domain's aperture.
    Aperture(DomainId),
    /// A software-managed MSI window.
    SwMsi(u32),
    /// The server's own, for the IOAS's life (Linux's test-only
    /// IOMMU_TEST_OP_ADD_RESERVED, which the ported selftest uses).
    Server,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reserved {
    range: IovaRange,
    owner: ReservedOwner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Attached {
    id: DomainId,
    page_sizes: u64,
    /// An unmap from this domain was never confirmed by the IOMMU: it may
    /// still translate IOVA the engine no longer lists. Stays until the
    /// domain is detached.
    tainted: bool,
}

/// Why mirroring areas into a domain failed.
#[derive(Clone, Copy, Debug)]
struct FillError {
    /// What the domain refused with.
    errno: Errno,
    /// Whether undoing what was mapped was confirmed by the IOMMU.
    undone: bool,
}

impl From<Errno> for FillError {
    fn from(errno: Errno) -> FillError {
        FillError {
            errno,
            undone: true,
        }
    }
}

/// Per hole of the allowed windows (of the automatic range when none is
/// set) between reserved ranges, numbered in the order [`holes`] yields
/// them, the room of its free pieces (the hole less the areas) in the
/// alignment class last asked: automatic allocation skips a hole without
/// touching the tree while that room says a request of the class cannot
/// fit. The room is computed when first needed after the hole's areas or
/// the class changed, in O(height). The holes themselves are not kept:
/// they follow from the windows and reserved ranges in a few steps each.
#[derive(Clone, Copy, Debug)]
struct HoleRooms {
    /// Room of hole `i` in class `class[i]`, valid while bit `i` of
    /// `known` is set.
    room: [u64; MAX_HOLES],
    class: [u8; MAX_HOLES],
    known: u64,
}

impl HoleRooms {
    const UNKNOWN: HoleRooms = HoleRooms {
        room: [0; MAX_HOLES],
        class: [0; MAX_HOLES],
        known: 0,
    };

    fn forget_all(&mut self) {
        self.known = 0;
    }
}

const _: () = assert!(MAX_HOLES <= u64::BITS as usize);

/// The holes automatic allocation searches, in order, each with the window
/// it lies in: each window (the automatic range when none is set) within
/// the automatic range, less the reserved ranges (`reserved` sorted by
/// start).
fn holes<'a>(
    allowed: &'a [IovaRange],
    reserved: &'a [Reserved],
) -> impl Iterator<Item = (IovaRange, IovaRange)> + 'a {
    let windows: &'a [IovaRange] = if allowed.is_empty() {
        core::slice::from_ref(&AUTO_WINDOW)
    } else {
        allowed
    };
    windows
        .iter()
        .filter_map(|w| w.intersect(&AUTO_WINDOW))
        .flat_map(move |window| {
            Holes::new(window, reserved.iter().map(|r| r.range)).map(move |hole| (hole, window))
        })
        .take(MAX_HOLES)
}

/// An automatic IOVA found by [`Ioas::check_map`], kept for the
/// [`Ioas::map`] that follows, so that MAP searches once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    source: u64,
    length: u64,
    iova: u64,
    /// The arena's change count when found: any tree change voids it.
    changes: u64,
}

/// Where a new mapping goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DstIova {
    /// Exactly here; may lie outside the allowed ranges.
    Fixed(u64),
    /// Where Linux v6.6 puts it (`iopt_alloc_iova`): aligned to
    /// min(roundup_pow_of_two(length), the lowest set bit of the source
    /// address), with no cap, and the source's offset in its CPU page
    /// or'ed in; the first fit in the allowed ranges (anywhere when none is
    /// set), never in the first or last page, avoiding areas and reserved
    /// ranges. EOVERFLOW for a length of 2^63 or more, EINVAL when that
    /// alignment is below the IOAS's, ENOSPC exactly when Linux's is.
    Auto,
}

/// An area as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AreaInfo {
    pub iova: u64,
    pub last: u64,
    pub prot: Prot,
}

/// Result of [`Ioas::iova_ranges`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRanges {
    /// How many usable ranges exist (may exceed what was written).
    pub total: usize,
    /// The IOAS's IOVA alignment.
    pub alignment: u64,
}

impl IovaRanges {
    /// EMSGSIZE when the caller's array of `capacity` could not hold them all.
    pub fn fits(&self, capacity: usize) -> Result<()> {
        if self.total > capacity {
            Err(Errno::EMSGSIZE)
        } else {
            Ok(())
        }
    }
}

/// The bytes a new mapping is made of.
#[derive(Clone, Copy)]
enum Source<'a> {
    /// Fresh physical extents; `source` is the caller's address of byte 0.
    Extents {
        extents: &'a [Extent],
        source: u64,
        writable: bool,
    },
    /// The areas of an IOAS (`None`: this one) from `iova` onwards.
    Areas { src: Option<&'a Ioas>, iova: u64 },
}

/// A piece of backing that becomes one new area.
#[derive(Clone, Copy)]
struct Segment {
    pages: u32,
    offset: u64,
    length: u64,
}

/// An IO address space. Create through [`Store::new_ioas`], or in place
/// in storage that holds [`Ioas::UNUSED`] through [`Store::init_ioas`];
/// release with [`Ioas::destroy`] or [`Ioas::tear_down`] so its areas
/// return to the store. An IOAS is some 20 KiB (its hole cache), so the
/// server's never pass through the stack.
#[derive(Debug)]
pub struct Ioas {
    root: NodeIdx,
    areas: usize,
    client: ClientId,
    /// Sorted by start; may overlap each other.
    reserved: Vec<Reserved, MAX_RESERVED>,
    /// Sorted and disjoint.
    allowed: Vec<IovaRange, MAX_ALLOWED>,
    domains: Vec<Attached, MAX_DOMAINS>,
    alignment: u64,
    huge_pages: bool,
    hole_rooms: HoleRooms,
    plan: Option<Plan>,
}

impl Ioas {
    /// Storage for an IOAS, not yet one: all zero bytes, so a static pool
    /// of them sits in `.bss`. [`Store::init_ioas`] makes it an empty IOAS
    /// where it lies.
    pub const UNUSED: Ioas = Ioas {
        root: 0,
        areas: 0,
        client: ClientId(0),
        reserved: Vec::new(),
        allowed: Vec::new(),
        domains: Vec::new(),
        alignment: 0,
        huge_pages: false,
        hole_rooms: HoleRooms::UNKNOWN,
        plan: None,
    };

    /// Makes this storage an empty IOAS of `client`, field by field, as
    /// [`Ioas::new`] builds one.
    pub(crate) fn init(&mut self, client: ClientId) {
        self.root = NIL;
        self.areas = 0;
        self.client = client;
        self.reserved.clear();
        self.allowed.clear();
        self.domains.clear();
        self.alignment = 1;
        self.huge_pages = true;
        self.hole_rooms.forget_all();
        self.plan = None;
    }

    pub(crate) const fn new(client: ClientId) -> Ioas {
        Ioas {
            root: NIL,
            areas: 0,
            client,
            reserved: Vec::new(),
            allowed: Vec::new(),
            domains: Vec::new(),
            // Software alone has no alignment restriction.
            alignment: 1,
            huge_pages: true,
            hole_rooms: HoleRooms::UNKNOWN,
            plan: None,
        }
    }

    /// What every area's IOVA and offset within its CPU page must be a
    /// multiple of: 1 with no domain attached (areas are byte-granular),
    /// else the largest of the attached domains' smallest pages.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    pub fn client(&self) -> ClientId {
        self.client
    }

    /// Levels of the area tree: at most 1.44 log2(areas + 2) (AVL).
    pub fn tree_height(&self, store: &Store<'_>) -> u32 {
        store.areas.height(self.root)
    }

    pub fn area_count(&self) -> usize {
        self.areas
    }

    pub fn domains(&self) -> impl Iterator<Item = DomainId> + '_ {
        self.domains.iter().map(|d| d.id)
    }

    pub fn is_attached(&self, id: DomainId) -> bool {
        self.domains.iter().any(|d| d.id == id)
    }

    /// Whether an unmap from domain `id` was never confirmed by the IOMMU:
    /// it may still translate IOVA this IOAS no longer maps to a device
    /// using it. Until the domain is detached, the caller keeps streams
    /// off it.
    pub fn tainted(&self, id: DomainId) -> bool {
        self.domains.iter().any(|d| d.id == id && d.tainted)
    }

    /// The page sizes every attached domain supports (every size when none
    /// is attached).
    pub fn common_page_sizes(&self) -> u64 {
        self.domains
            .iter()
            .fold(u64::MAX, |acc, d| acc & d.page_sizes)
    }

    pub fn allowed(&self) -> &[IovaRange] {
        &self.allowed
    }

    pub fn reserved(&self) -> impl Iterator<Item = (IovaRange, ReservedOwner)> + '_ {
        self.reserved.iter().map(|r| (r.range, r.owner))
    }

    fn reserved_ranges(&self) -> impl Iterator<Item = IovaRange> + '_ {
        self.reserved.iter().map(|r| r.range)
    }

    /// The areas in IOVA order.
    pub fn areas<'a>(&'a self, store: &'a Store<'_>) -> impl Iterator<Item = AreaInfo> + 'a {
        let mut next = store.areas.first(self.root);
        core::iter::from_fn(move || {
            let idx = next?;
            next = store.areas.next(self.root, idx);
            let area = store.areas.get(idx);
            Some(AreaInfo {
                iova: area.start,
                last: area.last,
                prot: area.prot,
            })
        })
    }

    /// The physical address the areas give `iova`.
    pub fn translate(&self, store: &Store<'_>, iova: u64) -> Option<u64> {
        let area = store.areas.get(store.areas.containing(self.root, iova)?);
        store
            .pages
            .get(area.pages)
            .phys_at(area.offset + (iova - area.start))
    }

    /// Calls `f(iova, phys, len)` for every physically contiguous run of
    /// every area, in IOVA order: what the IOAS makes reachable.
    pub fn for_each_run(&self, store: &Store<'_>, mut f: impl FnMut(u64, u64, u64)) {
        let mut next = store.areas.first(self.root);
        while let Some(idx) = next {
            let area = store.areas.get(idx);
            let length = area.last - area.start + 1;
            let _ = store.pages.get(area.pages).for_each_run(
                area.offset,
                length,
                |delta, phys, len| {
                    f(area.start + delta, phys, len);
                    Ok(())
                },
            );
            next = store.areas.next(self.root, idx);
        }
    }

    /// Checks the area tree's internal invariants; for tests.
    pub fn check(&self, store: &Store<'_>) -> core::result::Result<(), &'static str> {
        let count = store.areas.check(self.root)?;
        if count != self.areas {
            return Err("area count out of sync");
        }
        Ok(())
    }

    /// From the first byte of the lowest area to the last of the highest.
    fn extent(&self, store: &Store<'_>) -> Option<IovaRange> {
        let first = store.areas.get(store.areas.first(self.root)?).start;
        let last = store.areas.get(store.areas.last(self.root)?).last;
        Some(IovaRange { start: first, last })
    }

    /// Page sizes used when filling a domain with `page_sizes`.
    fn fill_sizes(&self, page_sizes: u64) -> u64 {
        if self.huge_pages {
            page_sizes
        } else {
            min_page(page_sizes)
        }
    }

    // ---- map, copy ----------------------------------------------------

    /// Maps `extents` (in order, contiguous in IOVA) at `dst` with `prot`;
    /// returns the IOVA. `source` is the caller's address of the first byte,
    /// which only steers automatic alignment. `writable` says whether the
    /// caller may let devices write the memory.
    ///
    /// After [`Ioas::check_map`]'s checks: EPERM (write access to memory
    /// the caller may not let devices write), EINVAL (no access bits; the
    /// offset in the page not a multiple of the alignment; extents breaking
    /// inside a CPU page), ENOMEM (quota, area nodes, backings, more than
    /// [`MAX_EXTENTS`](crate::MAX_EXTENTS) extents, a domain out of
    /// memory), and EIO when undoing a domain's failure is not confirmed
    /// (the areas stay and the domain is tainted, as after an unconfirmed
    /// [`Ioas::unmap`]). The new backing is charged the CPU pages it
    /// touches.
    #[allow(clippy::too_many_arguments)]
    pub fn map(
        &mut self,
        store: &mut Store<'_>,
        doms: &mut dyn DomainTable,
        extents: &[Extent],
        source: u64,
        writable: bool,
        dst: DstIova,
        prot: Prot,
    ) -> Result<u64> {
        let mut length = 0u64;
        for (i, extent) in extents.iter().enumerate() {
            if extent.len == 0 {
                return Err(Errno::EINVAL);
            }
            let end = extent
                .phys
                .checked_add(extent.len - 1)
                .ok_or(Errno::EOVERFLOW)?;
            // The bytes of a caller's buffer over whole CPU pages: only the
            // first may start and only the last may end inside a page.
            let starts_inside = i > 0 && extent.phys % PAGE_SIZE != 0;
            let ends_inside = i + 1 < extents.len() && (end + 1) % PAGE_SIZE != 0;
            if starts_inside || ends_inside {
                return Err(Errno::EINVAL);
            }
            length = length.checked_add(extent.len).ok_or(Errno::EOVERFLOW)?;
        }
        self.add_mapping(
            store,
            doms,
            Source::Extents {
                extents,
                source,
                writable,
            },
            length,
            dst,
            prot,
        )
    }

    /// The checks [`Ioas::map`] makes of a buffer at caller address
    /// `source` before it looks at the memory, in Linux's order: the length
    /// (EINVAL when zero or not a multiple of the alignment), the IOVA
    /// (fixed: EINVAL misaligned, EOVERFLOW wrapping, EINVAL touching a
    /// reserved range, EEXIST overlapping an area; automatic: as
    /// [`DstIova::Auto`] says), then the offset in the page (EINVAL). Linux pins the memory only
    /// after these, so a caller resolving memory first asks this first.
    ///
    /// An automatic IOVA found here is kept and taken by the [`Ioas::map`]
    /// of the same source and length while no tree or window changed, so
    /// a MAP searches once.
    pub fn check_map(
        &mut self,
        store: &Store<'_>,
        source: u64,
        length: u64,
        dst: DstIova,
    ) -> Result<()> {
        let align = self.alignment;
        if length == 0 || !length.is_multiple_of(align) {
            return Err(Errno::EINVAL);
        }
        match dst {
            DstIova::Fixed(iova) => self.check_fixed(store, iova, length)?,
            DstIova::Auto => {
                self.alloc_iova(store, source, length)?;
            }
        }
        if !(source % PAGE_SIZE).is_multiple_of(align) {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// Maps `length` bytes found at `src_iova` of `src` (`None`: this IOAS)
    /// at `dst`, sharing their backing and its charge (IOMMU_IOAS_COPY).
    /// ENOENT for a hole in the source; then as [`Ioas::map`], each source
    /// area a segment judged as a map's memory: EINVAL for one whose
    /// length, like its offset in its page, is not a multiple of the
    /// destination's alignment (Linux's iommu_map refuses it).
    #[allow(clippy::too_many_arguments)]
    pub fn copy_from(
        &mut self,
        store: &mut Store<'_>,
        doms: &mut dyn DomainTable,
        src: Option<&Ioas>,
        src_iova: u64,
        length: u64,
        dst: DstIova,
        prot: Prot,
    ) -> Result<u64> {
        if prot.is_empty() {
            return Err(Errno::EINVAL);
        }
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        IovaRange::from_start_len(src_iova, length).ok_or(Errno::EOVERFLOW)?;
        self.add_mapping(
            store,
            doms,
            Source::Areas {
                src,
                iova: src_iova,
            },
            length,
            dst,
            prot,
        )
    }

    /// The segment of `source` starting `done` bytes in; `None` when the
    /// source areas have a hole there.
    fn segment(
        &self,
        store: &Store<'_>,
        source: Source<'_>,
        done: u64,
        length: u64,
    ) -> Option<Segment> {
        match source {
            Source::Extents { .. } => Some(Segment {
                pages: u32::MAX,
                offset: done,
                length: length - done,
            }),
            Source::Areas { src, iova } => {
                let root = src.map_or(self.root, |s| s.root);
                let cursor = iova + done;
                let area = store.areas.get(store.areas.containing(root, cursor)?);
                let last = area.last.min(iova + (length - 1));
                Some(Segment {
                    pages: area.pages,
                    offset: area.offset + (cursor - area.start),
                    length: last - cursor + 1,
                })
            }
        }
    }

    fn add_mapping(
        &mut self,
        store: &mut Store<'_>,
        doms: &mut dyn DomainTable,
        source: Source<'_>,
        length: u64,
        dst: DstIova,
        prot: Prot,
    ) -> Result<u64> {
        if prot.is_empty() || length == 0 {
            return Err(Errno::EINVAL);
        }
        let align = self.alignment;
        // Pass 1: walk the source once, gathering everything to validate.
        let (mut segments, mut writable, mut misaligned, mut first_source) =
            (0usize, true, false, 0u64);
        match source {
            Source::Extents {
                extents,
                source,
                writable: w,
            } => {
                segments = 1;
                writable = w;
                first_source = source;
                misaligned = extents
                    .first()
                    .is_some_and(|e| !(e.phys % PAGE_SIZE).is_multiple_of(align));
            }
            Source::Areas { .. } => {
                let mut done = 0;
                while done < length {
                    let seg = self
                        .segment(store, source, done, length)
                        .ok_or(Errno::ENOENT)?;
                    let pages = store.pages.get(seg.pages);
                    if segments == 0 {
                        first_source = pages.source.wrapping_add(seg.offset);
                    }
                    writable &= pages.writable;
                    // Each segment becomes an area the domains map on
                    // its own: its length must fit their smallest page
                    // as its start does (Linux's iommu_map refuses the
                    // piece, EINVAL).
                    misaligned |= !pages.page_offset(seg.offset).is_multiple_of(align)
                        || seg.length % align != 0;
                    segments += 1;
                    done += seg.length;
                }
            }
        }
        // Every area is a whole number of the domains' smallest pages, so
        // a domain maps exactly its bytes (Linux checks this first, too).
        if !length.is_multiple_of(align) {
            return Err(Errno::EINVAL);
        }
        let iova = match dst {
            DstIova::Fixed(iova) => {
                self.check_fixed(store, iova, length)?;
                iova
            }
            DstIova::Auto => self.alloc_iova(store, first_source, length)?,
        };
        if prot.contains(Prot::WRITE) && !writable {
            return Err(Errno::EPERM);
        }
        if misaligned {
            return Err(Errno::EINVAL);
        }

        // Resources: quota, nodes, backing. Nothing has changed yet. A new
        // backing is charged the CPU pages it touches; a copy shares its
        // source's backing and its charge (Linux pins a page once).
        let charged = match source {
            Source::Extents { extents, .. } => extents
                .first()
                .map_or(0, |e| (e.phys % PAGE_SIZE + length).div_ceil(PAGE_SIZE)),
            Source::Areas { .. } => 0,
        };
        store.charge(self.client, charged)?;
        if let Err(e) = store.take_nodes(self.client, segments) {
            store.uncharge(self.client, charged);
            return Err(e);
        }
        let new_pages = match source {
            Source::Extents {
                extents,
                source,
                writable,
            } => match store
                .pages
                .alloc(extents, source, writable, charged, self.client)
            {
                Ok(idx) => Some(idx),
                Err(e) => {
                    store.uncharge(self.client, charged);
                    store.give_nodes(self.client, segments);
                    return Err(e);
                }
            },
            Source::Areas { .. } => None,
        };

        // Pass 2: insert the areas; cannot fail now.
        let mut done = 0;
        while done < length {
            let Some(mut seg) = self.segment(store, source, done, length) else {
                break;
            };
            match new_pages {
                // The allocation's reference moves into the one area.
                Some(idx) => seg.pages = idx,
                None => store.pages.get_ref(seg.pages),
            }
            let start = iova + done;
            let area = Area {
                start,
                last: start + (seg.length - 1),
                pages: seg.pages,
                offset: seg.offset,
                prot,
            };
            let inserted = store.areas.insert(&mut self.root, area);
            debug_assert!(inserted.is_ok());
            self.areas += 1;
            done += seg.length;
        }

        let range = IovaRange {
            start: iova,
            last: iova + (length - 1),
        };
        self.refresh_holes(range);
        match self.fill_range(store, doms, range) {
            Ok(()) => Ok(iova),
            Err(FillError {
                errno,
                undone: true,
            }) => {
                self.remove_areas(store, range);
                Err(errno)
            }
            // A device may still reach what was mapped before the failure:
            // the areas stay, as after an unconfirmed unmap.
            Err(FillError { undone: false, .. }) => Err(Errno::EIO),
        }
    }

    /// Mirrors every area inside `range` into every attached domain, or
    /// into none of them. When undoing a failure is not confirmed, the
    /// domains concerned are tainted and the error says so.
    fn fill_range(
        &mut self,
        store: &Store<'_>,
        doms: &mut dyn DomainTable,
        range: IovaRange,
    ) -> core::result::Result<(), FillError> {
        for i in 0..self.domains.len() {
            let attached = self.domains[i];
            let Some(domain) = doms.domain(attached.id) else {
                continue;
            };
            let sizes = self.fill_sizes(attached.page_sizes);
            let mut next = store.areas.first_overlap(self.root, range);
            let mut result = Ok(());
            while let Some(idx) = next {
                let area = store.areas.get(idx);
                if area.start > range.last {
                    break;
                }
                result = self.fill_area(store, domain, sizes, area);
                if result.is_err() {
                    break;
                }
                next = store.areas.next(self.root, idx);
            }
            if let Err(mut e) = result {
                if !e.undone {
                    self.domains[i].tainted = true;
                }
                for undo in self.domains[..=i].iter_mut() {
                    if let Some(domain) = doms.domain(undo.id) {
                        if unmap_span(domain, range).is_err() {
                            undo.tainted = true;
                            e.undone = false;
                        }
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Maps one area into one domain; on failure removes what it mapped.
    fn fill_area(
        &self,
        store: &Store<'_>,
        domain: &mut dyn IoDomain,
        sizes: u64,
        area: &Area,
    ) -> core::result::Result<(), FillError> {
        let pages = store.pages.get(area.pages);
        let length = area.last - area.start + 1;
        let mut mapped = 0u64;
        let result = pages.for_each_run(area.offset, length, |delta, phys, len| {
            // Offsets, not end addresses: an area may end at u64::MAX.
            let iova = area.start + delta;
            let mut done = 0;
            while done < len {
                let (size, count) = next_chunk(sizes, iova + done, phys + done, len - done);
                if count == 0 {
                    return Err(Errno::EINVAL);
                }
                domain.map_pages(iova + done, phys + done, size, count, area.prot)?;
                done += size * count;
                mapped = delta + done;
            }
            Ok(())
        });
        let Err(errno) = result else {
            return Ok(());
        };
        let undone = mapped == 0 || domain.unmap_pages(area.start, mapped).is_ok();
        Err(FillError { errno, undone })
    }

    /// Removes every area inside `range` from the tree (not from domains),
    /// dropping backing references and quota.
    fn remove_areas(&mut self, store: &mut Store<'_>, range: IovaRange) -> u64 {
        let mut total = 0;
        let mut removed: Option<IovaRange> = None;
        while let Some(idx) = store.areas.first_overlap(self.root, range) {
            let area = store.areas.remove(&mut self.root, idx);
            removed = Some(removed.map_or(IovaRange::new(area.start, area.last), |r| {
                IovaRange::new(r.start.min(area.start), r.last.max(area.last))
            }));
            let length = area.last - area.start + 1;
            let freed = store.pages.put(area.pages);
            store.uncharge(self.client, freed);
            store.give_nodes(self.client, 1);
            self.areas -= 1;
            total += length;
        }
        if let Some(span) = removed {
            self.refresh_holes(span);
        }
        total
    }

    fn check_fixed(&self, store: &Store<'_>, iova: u64, length: u64) -> Result<()> {
        if !iova.is_multiple_of(self.alignment) {
            return Err(Errno::EINVAL);
        }
        let range = IovaRange::from_start_len(iova, length).ok_or(Errno::EOVERFLOW)?;
        if self.reserved_ranges().any(|r| r.overlaps(&range)) {
            return Err(Errno::EINVAL);
        }
        if store.areas.first_overlap(self.root, range).is_some() {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// An automatic IOVA in the allowed ranges (anywhere when none is set)
    /// that avoids areas and reserved ranges, as Linux v6.6 places it:
    /// aligned to min(roundup_pow_of_two(length), lowest set bit of
    /// `source`) (EINVAL when that is below the IOAS alignment, no cap),
    /// with the source's offset in its CPU page or'ed in, at Linux's first
    /// fit: windows in order, each searched from its start so placed, the
    /// first free piece whose placed start leaves `length` bytes.
    ///
    /// Holes whose room cannot hold the request are skipped from their
    /// cache without touching the tree; the first hole whose room can is
    /// searched in O(height) (see [`crate::tree`]). The search is exact:
    /// ENOSPC exactly when Linux's is.
    fn alloc_iova(&mut self, store: &Store<'_>, source: u64, length: u64) -> Result<u64> {
        if length >= u64::MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let mut align = length.next_power_of_two();
        if source != 0 {
            align = align.min(1 << source.trailing_zeros());
        }
        if align < self.alignment {
            return Err(Errno::EINVAL);
        }
        let place = Placement {
            align,
            offset: source % PAGE_SIZE,
        };
        let changes = store.areas.changes();
        if let Some(plan) = self
            .plan
            .filter(|p| p.source == source && p.length == length && p.changes == changes)
        {
            return Ok(plan.iova);
        }
        let class = align.trailing_zeros();
        let root = self.root;
        let rooms = &mut self.hole_rooms;
        for (i, (hole, window)) in holes(&self.allowed, &self.reserved).enumerate() {
            let bit = 1u64 << i;
            if rooms.known & bit == 0 || u32::from(rooms.class[i]) != class {
                rooms.room[i] = store
                    .areas
                    .class_room_in(root, hole.start, hole.last, class);
                rooms.class[i] = class as u8;
                rooms.known |= bit;
            }
            if rooms.room[i] < length {
                continue;
            }
            // Linux skips a window too short from its placed start.
            let Some(from) = place.start(window.start) else {
                continue;
            };
            if from > hole.last || window.last - from < length - 1 {
                continue;
            }
            let lo = hole.start.max(from);
            if let Some(iova) = store.areas.first_fit(root, lo, hole.last, length, place) {
                self.plan = Some(Plan {
                    source,
                    length,
                    iova,
                    changes,
                });
                return Ok(iova);
            }
        }
        Err(Errno::ENOSPC)
    }

    /// Forgets the room of the holes `span` overlaps after areas were
    /// inserted or removed there (other holes' pieces did not change).
    fn refresh_holes(&mut self, span: IovaRange) {
        if self.hole_rooms.known == 0 {
            return;
        }
        let mut overlapped = 0;
        // Holes come in ascending order: none after the span can overlap.
        for (i, (hole, _)) in holes(&self.allowed, &self.reserved).enumerate() {
            if hole.start > span.last {
                break;
            }
            if hole.overlaps(&span) {
                overlapped |= 1u64 << i;
            }
        }
        self.hole_rooms.known &= !overlapped;
    }

    /// The windows or reserved ranges changed: the holes, and so their
    /// numbering, changed with them.
    fn windows_changed(&mut self) {
        self.hole_rooms.forget_all();
        self.plan = None;
    }

    // ---- unmap, cut ---------------------------------------------------

    /// Unmaps `[iova, iova + length)`, which must cover whole areas; returns
    /// the bytes unmapped. EINVAL for a zero length, EOVERFLOW for a
    /// wrapping end, ENOENT when the range would split an area or holds
    /// none; then EIO when an attached domain could not confirm it
    /// ([`IoDomain::unmap_pages`](crate::IoDomain::unmap_pages) returned
    /// [`Unconfirmed`](crate::Unconfirmed)): the areas stay and that domain
    /// is tainted ([`Ioas::tainted`]) until it is detached. A failing unmap
    /// changes nothing. `(0, u64::MAX)` is the range `[0, u64::MAX - 1]`
    /// like any other (VFIO's unmap); IOMMU_IOAS_UNMAP's "everything" form
    /// is its caller's, through [`Ioas::unmap_all`].
    pub fn unmap(
        &mut self,
        store: &mut Store<'_>,
        doms: &mut dyn DomainTable,
        iova: u64,
        length: u64,
    ) -> Result<u64> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let range = IovaRange::from_start_len(iova, length).ok_or(Errno::EOVERFLOW)?;
        let first = store
            .areas
            .first_overlap(self.root, range)
            .ok_or(Errno::ENOENT)?;
        let last = store
            .areas
            .last_overlap(self.root, range)
            .ok_or(Errno::ENOENT)?;
        let (first, last) = (store.areas.get(first).start, store.areas.get(last).last);
        if first < range.start || last > range.last {
            return Err(Errno::ENOENT);
        }
        self.unmap_span(store, doms, IovaRange { start: first, last })
    }

    /// Unmaps every area; returns the bytes unmapped (EIO as
    /// [`Ioas::unmap`]).
    pub fn unmap_all(&mut self, store: &mut Store<'_>, doms: &mut dyn DomainTable) -> Result<u64> {
        match self.extent(store) {
            Some(span) => self.unmap_span(store, doms, span),
            None => Ok(0),
        }
    }

    /// Removes the whole areas inside `span` (which starts and ends on area
    /// edges) with one unmap call per domain. When a domain cannot confirm
    /// its unmap (the IOMMU did not complete the invalidation) a device
    /// may still reach the pages: that domain is tainted and the areas
    /// stay, their IOVA taken and their pages charged (EIO), so nothing a
    /// device may reach is handed back.
    fn unmap_span(
        &mut self,
        store: &mut Store<'_>,
        doms: &mut dyn DomainTable,
        span: IovaRange,
    ) -> Result<u64> {
        let mut confirmed = true;
        for attached in self.domains.iter_mut() {
            if let Some(domain) = doms.domain(attached.id) {
                if unmap_span(domain, span).is_err() {
                    attached.tainted = true;
                    confirmed = false;
                }
            }
        }
        if !confirmed {
            return Err(Errno::EIO);
        }
        Ok(self.remove_areas(store, span))
    }

    /// Splits areas so that each of `iovas` becomes the last byte of an area
    /// (VFIO type1 partial unmap). An IOVA outside every area or already at
    /// an area's edge is skipped. EINVAL with a domain attached and huge
    /// pages on, EINVAL for a cut not on the alignment, ENOMEM when the
    /// area nodes or the owner's quota run out; a failing cut changes
    /// nothing.
    pub fn cut(&mut self, store: &mut Store<'_>, iovas: &[u64]) -> Result<()> {
        let mut needed = 0;
        for (i, &iova) in iovas.iter().enumerate() {
            let Some(idx) = store.areas.containing(self.root, iova) else {
                continue;
            };
            let area = store.areas.get(idx);
            if iova == area.start || iova == area.last {
                continue;
            }
            // A domain may hold the area in blocks the cut would split
            // (Linux: a storage domain with large pages enabled).
            let in_blocks = self.huge_pages && !self.domains.is_empty();
            if in_blocks || (iova + 1) % self.alignment != 0 {
                return Err(Errno::EINVAL);
            }
            if !iovas[..i].contains(&iova) {
                needed += 1;
            }
        }
        store.take_nodes(self.client, needed)?;
        for &iova in iovas {
            let Some(idx) = store.areas.containing(self.root, iova) else {
                continue;
            };
            let area = *store.areas.get(idx);
            if iova == area.start || iova == area.last {
                continue;
            }
            let right = Area {
                start: iova + 1,
                offset: area.offset + (iova + 1 - area.start),
                ..area
            };
            store.areas.set_last(self.root, idx, iova);
            let inserted = store.areas.insert(&mut self.root, right);
            debug_assert!(inserted.is_ok());
            store.pages.get_ref(area.pages);
            self.areas += 1;
        }
        Ok(())
    }

    // ---- ranges ---------------------------------------------------------

    /// Writes the usable IOVA ranges (the holes between reserved ranges)
    /// into `out` as far as it reaches; see [`IovaRanges::fits`].
    pub fn iova_ranges(&self, out: &mut [IovaRange]) -> IovaRanges {
        let mut total = 0;
        for hole in Holes::new(IovaRange::ALL, self.reserved_ranges()) {
            if let Some(slot) = out.get_mut(total) {
                *slot = hole;
            }
            total += 1;
        }
        IovaRanges {
            total,
            alignment: self.alignment,
        }
    }

    /// Replaces the allowed ranges. An empty list allows everything. EINVAL
    /// for a range with start >= last, ENOMEM for more than
    /// [`MAX_ALLOWED`], EINVAL for ranges overlapping each other,
    /// EADDRINUSE for one over a reserved range.
    pub fn set_allowed(&mut self, ranges: &[IovaRange]) -> Result<()> {
        if ranges.iter().any(|r| r.start >= r.last) {
            return Err(Errno::EINVAL);
        }
        let mut sorted: Vec<IovaRange, MAX_ALLOWED> =
            Vec::from_slice(ranges).map_err(|_| Errno::ENOMEM)?;
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0].overlaps(&w[1])) {
            return Err(Errno::EINVAL);
        }
        if sorted
            .iter()
            .any(|a| self.reserved_ranges().any(|r| r.overlaps(a)))
        {
            return Err(Errno::EADDRINUSE);
        }
        self.allowed = sorted;
        self.windows_changed();
        Ok(())
    }

    /// Reserves `range` for `owner`; refused where areas or allowed ranges
    /// already are (EADDRINUSE), or past [`MAX_RESERVED`] ranges (ENOMEM).
    /// Aperture reservations belong to the engine (EINVAL).
    pub fn reserve(
        &mut self,
        store: &Store<'_>,
        range: IovaRange,
        owner: ReservedOwner,
    ) -> Result<()> {
        if range.start > range.last || matches!(owner, ReservedOwner::Aperture(_)) {
            return Err(Errno::EINVAL);
        }
        self.check_reservable(store, range)?;
        if self.reserved.is_full() {
            return Err(Errno::ENOMEM);
        }
        self.insert_reserved(Reserved { range, owner });
        self.windows_changed();
        Ok(())
    }

    fn check_reservable(&self, store: &Store<'_>, range: IovaRange) -> Result<()> {
        if store.areas.first_overlap(self.root, range).is_some()
            || self.allowed.iter().any(|a| a.overlaps(&range))
        {
            return Err(Errno::EADDRINUSE);
        }
        Ok(())
    }

    fn insert_reserved(&mut self, reserved: Reserved) {
        let at = self
            .reserved
            .iter()
            .position(|r| r.range.start > reserved.range.start)
            .unwrap_or(self.reserved.len());
        let inserted = self.reserved.insert(at, reserved);
        debug_assert!(inserted.is_ok());
    }

    /// Drops every reserved range of `owner`. Aperture reservations go only
    /// with their domain (EINVAL).
    pub fn unreserve(&mut self, owner: ReservedOwner) -> Result<()> {
        if matches!(owner, ReservedOwner::Aperture(_)) {
            return Err(Errno::EINVAL);
        }
        self.reserved.retain(|r| r.owner != owner);
        self.windows_changed();
        Ok(())
    }

    // ---- domains ----------------------------------------------------------

    /// Attaches a domain: reserves what lies outside its aperture, raises the
    /// IOVA alignment to its smallest page and maps every area into it.
    /// EEXIST when it is attached already, ENOMEM past [`MAX_DOMAINS`],
    /// ENODEV for no such domain, EINVAL for one with no page sizes or a
    /// smallest page above the CPU page, EADDRINUSE while an area's IOVA,
    /// length or offset in its page is misaligned for that page or areas
    /// or allowed ranges lie outside its aperture, ENOMEM when its
    /// reservations would not fit; then the domain's own error when
    /// filling it fails (what was mapped is undone).
    pub fn attach_domain(
        &mut self,
        store: &mut Store<'_>,
        doms: &mut dyn DomainTable,
        id: DomainId,
    ) -> Result<()> {
        if self.is_attached(id) {
            return Err(Errno::EEXIST);
        }
        if self.domains.is_full() {
            return Err(Errno::ENOMEM);
        }
        let domain = doms.domain(id).ok_or(Errno::ENODEV)?;
        let page_sizes = domain.page_sizes();
        if page_sizes == 0 {
            return Err(Errno::EINVAL);
        }
        // Areas are made of CPU pages: a domain whose smallest page is
        // larger could not map them (Linux refuses it too).
        let alignment = self.alignment.max(min_page(page_sizes));
        if alignment > PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        if alignment != self.alignment && !self.areas_aligned(store, alignment) {
            return Err(Errno::EADDRINUSE);
        }
        let aperture = domain.aperture();
        let mut outside: Vec<IovaRange, 2> = Vec::new();
        if aperture.start > 0 {
            let _ = outside.push(IovaRange {
                start: 0,
                last: aperture.start - 1,
            });
        }
        if aperture.last < u64::MAX {
            let _ = outside.push(IovaRange {
                start: aperture.last + 1,
                last: u64::MAX,
            });
        }
        for range in &outside {
            self.check_reservable(store, *range)?;
        }
        if self.reserved.capacity() - self.reserved.len() < outside.len() {
            return Err(Errno::ENOMEM);
        }

        let sizes = self.fill_sizes(page_sizes);
        let mut next = store.areas.first(self.root);
        while let Some(idx) = next {
            let area = store.areas.get(idx);
            if let Err(e) = self.fill_area(store, domain, sizes, area) {
                // Undo exactly the areas mapped so far (the failing one
                // undid itself): nothing else in the domain is touched.
                // No stream uses a domain being attached, and its caller
                // frees it, so an unconfirmed undo reaches no device.
                let failed = area.start;
                let mut undo = store.areas.first(self.root);
                while let Some(done) = undo.filter(|&i| store.areas.get(i).start < failed) {
                    let a = store.areas.get(done);
                    let _ = domain.unmap_pages(a.start, a.last - a.start + 1);
                    undo = store.areas.next(self.root, done);
                }
                return Err(e.errno);
            }
            next = store.areas.next(self.root, idx);
        }

        for range in outside {
            self.insert_reserved(Reserved {
                range,
                owner: ReservedOwner::Aperture(id),
            });
        }
        self.windows_changed();
        let pushed = self.domains.push(Attached {
            id,
            page_sizes,
            tainted: false,
        });
        debug_assert!(pushed.is_ok());
        self.alignment = alignment;
        Ok(())
    }

    /// Whether every area's IOVA, length and offset in its CPU page are
    /// multiples of `align` (what a domain with that smallest page needs).
    fn areas_aligned(&self, store: &Store<'_>, align: u64) -> bool {
        let mut next = store.areas.first(self.root);
        while let Some(idx) = next {
            let area = store.areas.get(idx);
            let offset = store.pages.get(area.pages).page_offset(area.offset);
            let length = area.last - area.start + 1;
            if !(area.start | length | offset).is_multiple_of(align) {
                return false;
            }
            next = store.areas.next(self.root, idx);
        }
        true
    }

    /// Detaches a domain: unmaps every area from it and drops its aperture
    /// reservations.
    pub fn detach_domain(
        &mut self,
        store: &mut Store<'_>,
        doms: &mut dyn DomainTable,
        id: DomainId,
    ) -> Result<()> {
        let at = self
            .domains
            .iter()
            .position(|d| d.id == id)
            .ok_or(Errno::ENOENT)?;
        if let (Some(span), Some(domain)) = (self.extent(store), doms.domain(id)) {
            // A domain is detached only once no stream uses it, and then
            // freed (an IOMMU invalidates its context then, or keeps the
            // context forever): an unconfirmed unmap here reaches nothing.
            let _ = unmap_span(domain, span);
        }
        self.domains.remove(at);
        self.reserved
            .retain(|r| r.owner != ReservedOwner::Aperture(id));
        self.windows_changed();
        self.alignment = self.alignment_for(self.huge_pages);
        Ok(())
    }

    /// IOMMU_OPTION_HUGE_PAGES. With huge pages off every area is a whole
    /// number of CPU pages (the alignment is at least [`PAGE_SIZE`]), so
    /// disabling is EADDRINUSE while an area is not, and EINVAL while a
    /// domain already holds mappings that may use blocks.
    pub fn set_huge_pages(&mut self, store: &Store<'_>, enabled: bool) -> Result<()> {
        if enabled == self.huge_pages {
            return Ok(());
        }
        if !enabled && !self.domains.is_empty() && self.areas > 0 {
            return Err(Errno::EINVAL);
        }
        let alignment = self.alignment_for(enabled);
        if alignment > self.alignment && !self.areas_aligned(store, alignment) {
            return Err(Errno::EADDRINUSE);
        }
        self.huge_pages = enabled;
        self.alignment = alignment;
        Ok(())
    }

    /// Linux's iopt_calculate_iova_alignment: the CPU page with huge pages
    /// off (1 with them on), raised to every domain's smallest page.
    fn alignment_for(&self, huge_pages: bool) -> u64 {
        let base = if huge_pages { 1 } else { PAGE_SIZE };
        self.domains
            .iter()
            .fold(base, |acc, d| acc.max(min_page(d.page_sizes)))
    }

    /// Unmaps everything, detaches every domain and returns all storage.
    /// The caller must have stopped every stream of every attached domain
    /// (the server destroys an IOAS only once no HWPT is left over it), so
    /// areas an unconfirmed unmap kept go too.
    pub fn destroy(mut self, store: &mut Store<'_>, doms: &mut dyn DomainTable) {
        self.tear_down(store, doms);
    }

    /// [`Ioas::destroy`] where the IOAS lies: afterwards it holds nothing
    /// of the store's and may be set up again by [`Store::init_ioas`].
    pub fn tear_down(&mut self, store: &mut Store<'_>, doms: &mut dyn DomainTable) {
        let _ = self.unmap_all(store, doms);
        while let Some(attached) = self.domains.last().copied() {
            let _ = self.detach_domain(store, doms, attached.id);
        }
        if let Some(span) = self.extent(store) {
            self.remove_areas(store, span);
        }
    }
}

/// Unmaps `span` from a domain, in two calls when it is all 2^64 bytes.
fn unmap_span(domain: &mut dyn IoDomain, span: IovaRange) -> core::result::Result<(), Unconfirmed> {
    match span.length() {
        Some(length) => domain.unmap_pages(span.start, length).map(|_| ()),
        None => {
            let low = domain.unmap_pages(0, 1 << 63);
            let high = domain.unmap_pages(1 << 63, 1 << 63);
            low.and(high).map(|_| ())
        }
    }
}
