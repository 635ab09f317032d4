//! The area tree: an AVL tree of non-overlapping IOVA areas living in one
//! fixed node arena shared by every IOAS.
//!
//! AVL balance bounds the height by 1.44 log2(n + 2) whatever order areas
//! arrive in, so no client can shape the tree into a chain: every update
//! and lookup costs O(log n), and every recursion (each at most one frame
//! per level) uses O(log n) stack. Each node caches the lowest start and
//! highest last of its subtree and, for every power-of-two alignment, the
//! most bytes a request so aligned could use in one gap between
//! consecutive areas of the subtree, so first-fit allocation enters only
//! subtrees that hold a fit (see [`AreaArena::first_fit`]).

use core::cell::Cell;

use crate::range::{align_up, fit_in, Placement};
use crate::Prot;
use iommu_types::{Errno, IovaRange, Result};

/// Index of a node in the arena; `NIL` is the empty tree.
pub(crate) type NodeIdx = u32;
pub(crate) const NIL: NodeIdx = u32::MAX;

/// What an update moved in a subtree's summary: its parent recomputes its
/// room only when the child's room or the child's bound beside the
/// parent's own piece moved, so an insertion or removal recomputes figures
/// only up to where they stop changing (and at rotations).
#[derive(Clone, Copy, Debug)]
struct Moved {
    room: bool,
    min_start: bool,
    max_last: bool,
    height: bool,
}

impl Moved {
    /// The subtree itself is new or gone.
    const ALL: Moved = Moved {
        room: true,
        min_start: true,
        max_last: true,
        height: true,
    };

    /// Only what a parent copies: its height, balance and figures stand
    /// as they were (a rotation below changes none of them: figures do
    /// not depend on the shape).
    const NOTHING: Moved = Moved {
        room: false,
        min_start: false,
        max_last: false,
        height: false,
    };

    /// For a left child: what its parent's room depends on.
    fn faces_right(self) -> bool {
        self.room || self.max_last
    }

    /// For a right child.
    fn faces_left(self) -> bool {
        self.room || self.min_start
    }
}

/// Alignment classes: class `k` is alignment `2^k`, for every `k` a u64
/// IOVA can have.
pub(crate) const CLASSES: usize = 64;

/// Per alignment class `k`, the most bytes a request aligned to `2^k` can
/// use in one free piece of a set of pieces: `last + 1 - align_up(start,
/// 2^k)` of the best piece, 0 when none has an aligned byte.
///
/// A request of class `k >= 1` is longer than `2^(k-1)` (its alignment is
/// at most its length rounded up to a power of two), so a class whose
/// room cannot exceed `2^(k-1)` holds no request: classes above `top`,
/// where `2^(k-1) >= widest`, read 0 and are not kept. Every kept class is
/// exact; a class above `top` reads at most its true room, which is below
/// any request of that class. Classes up to `low` lose nothing to
/// alignment in any piece (every piece starts `2^low`-aligned), so they
/// read `widest` without being computed: a tree of page-aligned areas
/// merges only the classes between its pieces' alignment and the width
/// of its widest piece, not all 64.
///
/// Stored short and exact: class 0 (the widest piece) in full, and for
/// each kept class `k >= 1` how far it falls short of class 0. That
/// shortfall is below `2^k`, since the widest piece loses less than `2^k`
/// to aligning its start, so class `k` takes `k` bits, packed one after
/// the other (2016 bits for classes 1-63). Shortfalls outside `(low, top]`
/// are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Room {
    widest: u64,
    /// Highest class kept: the largest `k` with `2^(k-1) < widest`.
    top: u8,
    /// Every piece starts `2^low`-aligned (0 when there is no piece).
    low: u8,
    /// Class `k`'s shortfall in bits `[k(k-1)/2, k(k+1)/2)`, little
    /// endian; one byte of slack after the last class lets every read and
    /// write touch a fixed nine bytes.
    short: [u8; PACKED_BYTES],
}

/// Bytes of packed shortfalls: `sum(1..=63)` bits, plus one byte of slack.
const PACKED_BYTES: usize = (CLASSES * (CLASSES - 1) / 2).div_ceil(8) + 1;

/// Bit offset of class `k`'s shortfall.
#[inline(always)]
const fn packed_offset(k: usize) -> usize {
    k * (k - 1) / 2
}

/// The highest class a piece set whose widest piece is `widest` bytes can
/// hold a request of: the largest `k` with `2^(k-1) < widest`.
#[inline]
fn top_class(widest: u64) -> u8 {
    if widest == 0 {
        0
    } else {
        (64 - (widest - 1).leading_zeros()).min(CLASSES as u32 - 1) as u8
    }
}

impl Room {
    /// No free piece.
    pub const NONE: Room = Room {
        widest: 0,
        top: 0,
        low: 0,
        short: [0; PACKED_BYTES],
    };

    /// The room of class `k`.
    #[inline]
    pub fn get(&self, k: usize) -> u64 {
        if k > usize::from(self.top) {
            return 0;
        }
        if k <= usize::from(self.low) {
            return self.widest;
        }
        self.widest - self.short_of(k)
    }

    #[inline]
    fn short_of(&self, k: usize) -> u64 {
        if k == 0 {
            return 0;
        }
        self.short_at(packed_offset(k), k)
    }

    /// The `k` bits at bit `offset`: one unaligned load, and the slack
    /// byte above it only when they reach past it (classes above 56).
    #[inline(always)]
    fn short_at(&self, offset: usize, k: usize) -> u64 {
        let (byte, shift) = (offset / 8, (offset % 8) as u32);
        let mut word = [0; 8];
        word.copy_from_slice(&self.short[byte..byte + 8]);
        let mut value = u64::from_le_bytes(word) >> shift;
        if k + shift as usize > 64 {
            value |= u64::from(self.short[byte + 8]) << (64 - shift);
        }
        value & ((1u64 << k) - 1)
    }

    /// Writes class `k`'s shortfall (below `2^k`); returns whether it
    /// changed.
    #[cfg(test)]
    fn set_short(&mut self, k: usize, value: u64) -> bool {
        self.set_short_at(packed_offset(k), k, value)
    }

    /// Writes the `k` bits at bit `offset`; returns whether they changed.
    #[inline(always)]
    fn set_short_at(&mut self, offset: usize, k: usize, value: u64) -> bool {
        let mask = (1u64 << k) - 1;
        debug_assert!(value <= mask);
        let (byte, shift) = (offset / 8, (offset % 8) as u32);
        let mut word = [0; 8];
        word.copy_from_slice(&self.short[byte..byte + 8]);
        let word = u64::from_le_bytes(word);
        let mut old = word >> shift;
        if k + shift as usize > 64 {
            old |= u64::from(self.short[byte + 8]) << (64 - shift);
        }
        if old & mask == value {
            return false;
        }
        let word = (word & !(mask << shift)) | (value << shift);
        self.short[byte..byte + 8].copy_from_slice(&word.to_le_bytes());
        if k + shift as usize > 64 {
            // What does not fit the word goes to the slack byte above it.
            let (high_mask, high) = (mask >> (64 - shift), value >> (64 - shift));
            let above = &mut self.short[byte + 8];
            *above = ((u64::from(*above) & !high_mask) | high) as u8;
        }
        true
    }

    /// Recomputes, in place, the room of the children's pieces (`children`)
    /// and the free pieces `pieces` (`(lo, hi)`, empty when `lo > hi`):
    /// nothing of a room's size is built on the stack. Returns whether any
    /// class changed (possibly true when none did, never false when one
    /// did), so that an update can stop where nothing did.
    ///
    /// The figures are those of [`Room::rebuild_by_class`], which defines
    /// them, computed from the input that holds the widest piece: its
    /// shortfalls, copied whole (a child's packed bytes) or in closed form
    /// (a piece's), are every class's answer but where another input
    /// falls shorter. Another input whose widest is `d` bytes narrower
    /// falls at least `d` short, and every answer of class `k` is below
    /// `2^k`, so it can only win in the classes from `bitlen(d)` up to its
    /// own top: only those are merged, a few on a random layout rather
    /// than every kept class of every input.
    // Out of line: the many updates that merge no figures stay small.
    #[inline(never)]
    pub fn rebuild(&mut self, children: [Option<&Room>; 2], pieces: &[(u64, u64); 2]) -> bool {
        // Missing inputs read as no piece: width 0, top 0 (nothing to
        // merge) and no say in `low`.
        let [left, right] = children.map(|c| c.unwrap_or(&Room::NONE));
        let [first, second] = pieces.map(|(lo, hi)| Piece::new(lo, hi));
        let widest = (left.widest.max(right.widest)).max(first.width.max(second.width));
        let low_of = |c: &Room| if c.widest > 0 { c.low } else { u8::MAX };
        let low = (low_of(left).min(low_of(right))).min(first.low.min(second.low));
        let (top, low) = if widest == 0 {
            (0, 0)
        } else {
            (top_class(widest), low)
        };
        let (old_top, old_low) = (usize::from(self.top), self.low);
        let mut changed = (widest, top, low) != (self.widest, self.top, self.low);
        self.widest = widest;
        self.top = top;
        self.low = low;
        let top = usize::from(top);
        if widest == 0 {
            return self.clear_bits(0, packed_offset(old_top + 1)) || changed;
        }
        // The input to copy: a child holding the widest piece, else a
        // piece. Classes up to both its low and the old one are 0 before
        // and after.
        let copied = if left.widest == widest {
            changed |= self.copy_packed(left, usize::from(left.low.min(old_low)) + 1, top);
            0
        } else if right.widest == widest {
            changed |= self.copy_packed(right, usize::from(right.low.min(old_low)) + 1, top);
            1
        } else if first.width == widest {
            changed |= self.write_piece(&first, usize::from(first.low.min(old_low)) + 1, top);
            2
        } else {
            changed |= self.write_piece(&second, usize::from(second.low.min(old_low)) + 1, top);
            3
        };
        changed |= self.clear_bits(packed_offset(top + 1), packed_offset(old_top + 1));
        let merged = usize::from(low) + 1;
        for (i, c) in [(0, left), (1, right)] {
            if i != copied && c.widest > 0 {
                let narrower = widest - c.widest;
                changed |= self.merge(narrower, merged, usize::from(c.top), |offset, k| {
                    c.short_at(offset, k)
                });
            }
        }
        for (i, p) in [(2, first), (3, second)] {
            if i != copied && p.width > 0 {
                let narrower = widest - p.width;
                changed |= self.merge(narrower, merged, usize::from(p.top), |_, k| p.short(k));
            }
        }
        changed
    }

    /// Lowers each class from `from` to `top` (at most this room's top)
    /// to `narrower` plus `short` of the class where that falls less
    /// short, for an input whose widest piece is `narrower` bytes below
    /// this room's: only classes `k` with `2^k > narrower` can change.
    /// Returns whether any did.
    #[inline(always)]
    fn merge(
        &mut self,
        narrower: u64,
        from: usize,
        top: usize,
        short: impl Fn(usize, usize) -> u64,
    ) -> bool {
        let from = from.max((64 - narrower.leading_zeros()) as usize).max(1);
        let to = top.min(usize::from(self.top));
        let mut changed = false;
        let mut offset = packed_offset(from);
        for k in from..=to {
            let offered = narrower + short(offset, k);
            if offered < self.short_at(offset, k) {
                self.set_short_at(offset, k, offered);
                changed = true;
            }
            offset += k;
        }
        changed
    }

    /// Writes the shortfalls of `piece` (whose top is `top`) for classes
    /// `from` to `top`, streamed a word at a time rather than read and
    /// written class by class; the bits below `from` in its first byte
    /// must be 0 before and after. Returns whether any byte changed.
    fn write_piece(&mut self, piece: &Piece, from: usize, top: usize) -> bool {
        if from > top {
            return false;
        }
        let start = packed_offset(from);
        let mut words = PackedWriter {
            byte: start / 8,
            fill: (start % 8) as u32,
            pending: 0,
            changed: false,
        };
        // Below its top class a piece loses less than its span to
        // alignment, so its shortfall is the bytes lost: the low `k` bits
        // of `-start` (a piece of all 2^64 bytes, whose width saturates,
        // starts at 0 and loses nothing).
        let lost = piece.start.wrapping_neg();
        let mut mask = (1u64 << from) - 1;
        for k in from..top {
            words.push(self, lost & mask, k as u32);
            mask = (mask << 1) | 1;
        }
        words.push(self, piece.short(top), top as u32);
        words.finish(self)
    }

    /// The eight packed bytes from byte `at` (at most `PACKED_BYTES - 8`).
    #[inline(always)]
    fn word(&self, at: usize) -> u64 {
        let mut word = [0; 8];
        word.copy_from_slice(&self.short[at..at + 8]);
        u64::from_le_bytes(word)
    }

    /// Writes the eight packed bytes from byte `at`; returns whether they
    /// changed.
    #[inline(always)]
    fn put_word(&mut self, at: usize, value: u64) -> bool {
        let changed = self.word(at) != value;
        self.short[at..at + 8].copy_from_slice(&value.to_le_bytes());
        changed
    }

    /// Copies the packed shortfalls of `source`, whose top is `top`, from
    /// class `from` to that top, a word at a time; returns whether any
    /// byte changed. The bits below `from` in its first byte must be 0 in
    /// both, and bits above the top are 0 in every room, so whole bytes
    /// are copied.
    fn copy_packed(&mut self, source: &Room, from: usize, top: usize) -> bool {
        if from > top {
            return false;
        }
        let (mut at, end) = (packed_offset(from) / 8, packed_offset(top + 1).div_ceil(8));
        let mut changed = false;
        while at < end {
            // A word reaching past the array is taken from its end
            // instead: the bytes it repeats are copied already or below
            // `from`, and bytes past the top are 0 in `source`, as they
            // must become here.
            let at_word = at.min(PACKED_BYTES - 8);
            changed |= self.put_word(at_word, source.word(at_word));
            at = at_word + 8;
        }
        changed
    }

    /// Zeroes bits `[from, to)` of the packed shortfalls; returns whether
    /// any was set.
    fn clear_bits(&mut self, from: usize, to: usize) -> bool {
        if from >= to {
            return false;
        }
        let (first, shift) = (from / 8, from % 8);
        let high = !((1u8 << shift) - 1);
        let mut changed = self.short[first] & high != 0;
        self.short[first] &= !high;
        for byte in &mut self.short[first + 1..to.div_ceil(8)] {
            changed |= *byte != 0;
            *byte = 0;
        }
        changed
    }

    /// The figures [`Room::rebuild`] computes, by their definition: one
    /// pass over the classes kept before or now, each merged from every
    /// input. The invariant checks compare each node with it.
    ///
    /// Each class is merged without a branch: a missing child reads as no
    /// piece, a child's class above its top as 0 (its stored shortfall
    /// there is 0), and a piece counts in a class only up to its own top
    /// class, as it would inside a child: the figures then depend on the
    /// set of pieces alone, not on the tree's shape, so a rotation leaves
    /// them as they were.
    pub fn rebuild_by_class(
        &mut self,
        children: [Option<&Room>; 2],
        pieces: &[(u64, u64); 2],
    ) -> bool {
        let mut widest = 0;
        let mut low = (CLASSES - 1) as u8;
        for c in children.iter().flatten().filter(|c| c.widest > 0) {
            widest = widest.max(c.widest);
            low = low.min(c.low);
        }
        for &(lo, hi) in pieces.iter().filter(|(lo, hi)| lo <= hi) {
            widest = widest.max((hi - lo).saturating_add(1));
            low = low.min(lo.trailing_zeros().min(CLASSES as u32 - 1) as u8);
        }
        let top = top_class(widest);
        if widest == 0 {
            low = 0;
        }
        let mut changed = (widest, top, low) != (self.widest, self.top, self.low);
        // Classes kept before or now; the rest are 0 on both sides.
        let from = usize::from(low.min(self.low)) + 1;
        let to = usize::from(top.max(self.top));
        self.widest = widest;
        self.top = top;
        self.low = low;
        let (keep_from, keep_to) = (usize::from(low) + 1, usize::from(top));
        let [left, right] = children.map(|c| c.unwrap_or(&Room::NONE));
        // (start, bytes - 1, top class); an empty piece has top class 0.
        let pieces = pieces.map(|(lo, hi)| {
            if lo <= hi {
                (
                    lo,
                    hi - lo,
                    usize::from(top_class((hi - lo).saturating_add(1))),
                )
            } else {
                (0, 0, 0)
            }
        });
        let mut offset = packed_offset(from);
        for k in from..=to {
            let mask = (1u64 << k) - 1;
            let child = |c: &Room| {
                let room = c.widest - c.short_at(offset, k);
                if k <= usize::from(c.top) {
                    room
                } else {
                    0
                }
            };
            let mut room = child(left).max(child(right));
            for &(lo, span, piece_top) in &pieces {
                let lost = lo.wrapping_neg() & mask;
                let fits = lost <= span && k <= piece_top;
                let piece = (span.wrapping_sub(lost)).saturating_add(1);
                room = room.max(if fits { piece } else { 0 });
            }
            let short = if k < keep_from || k > keep_to {
                0
            } else {
                widest - room
            };
            changed |= self.set_short_at(offset, k, short);
            offset += k;
        }
        changed
    }
}

/// Appends packed shortfalls to a [`Room`] a 64-bit word at a time.
struct PackedWriter {
    /// Byte of the word being filled.
    byte: usize,
    /// Bits of it filled so far.
    fill: u32,
    pending: u64,
    changed: bool,
}

impl PackedWriter {
    /// Appends the `k` bits of `short`.
    #[inline(always)]
    fn push(&mut self, room: &mut Room, short: u64, k: u32) {
        self.pending |= short << self.fill;
        self.fill += k;
        if self.fill >= 64 {
            self.changed |= room.put_word(self.byte, self.pending);
            self.byte += 8;
            self.fill -= 64;
            // The bits of `short` that did not fit (none when it ended
            // the word exactly).
            self.pending = if self.fill == 0 {
                0
            } else {
                short >> (k - self.fill)
            };
        }
    }

    /// Writes the last, partial word; returns whether any byte changed.
    fn finish(self, room: &mut Room) -> bool {
        let mut changed = self.changed;
        if self.fill > 0 && self.byte + 8 <= PACKED_BYTES {
            // The rest of the word holds classes above the top: 0.
            changed |= room.put_word(self.byte, self.pending);
        } else if self.fill > 0 {
            let count = self.fill.div_ceil(8) as usize;
            let bytes = &self.pending.to_le_bytes()[..count];
            changed |= room.short[self.byte..self.byte + count] != *bytes;
            room.short[self.byte..self.byte + count].copy_from_slice(bytes);
        }
        changed
    }
}

/// One free piece as an input to [`Room::rebuild`].
#[derive(Clone, Copy)]
struct Piece {
    start: u64,
    /// Bytes less one.
    span: u64,
    /// Bytes (saturated: a piece of all 2^64 bytes cannot lie beside an
    /// area).
    width: u64,
    top: u8,
    low: u8,
}

impl Piece {
    /// The piece `[lo, hi]`; when `lo > hi`, no piece: width 0, and
    /// alignment too high to lower anything's `low`.
    fn new(lo: u64, hi: u64) -> Piece {
        if lo > hi {
            return Piece {
                start: 0,
                span: 0,
                width: 0,
                top: 0,
                low: u8::MAX,
            };
        }
        let width = (hi - lo).saturating_add(1);
        Piece {
            start: lo,
            span: hi - lo,
            width,
            top: top_class(width),
            low: lo.trailing_zeros().min(CLASSES as u32 - 1) as u8,
        }
    }

    /// How far the piece's room in class `k` (at most its top) falls
    /// short of its width: the bytes lost to aligning its start, or all
    /// of it when it has no aligned byte.
    #[inline(always)]
    fn short(&self, k: usize) -> u64 {
        let lost = self.start.wrapping_neg() & ((1u64 << k) - 1);
        if lost <= self.span {
            self.width - (self.span - lost).saturating_add(1)
        } else {
            self.width
        }
    }
}

/// Room of `[lo, hi]` in class `k` alone.
#[inline]
fn room_in_class(lo: u64, hi: u64, k: u32) -> u64 {
    if lo > hi {
        return 0;
    }
    match align_up(lo, 1 << k) {
        // A piece of all 2^64 bytes has no room count; it cannot exist
        // beside an area, and AUTO windows exclude both ends.
        Some(start) if start <= hi => (hi - start).saturating_add(1),
        _ => 0,
    }
}

/// One area's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Area {
    pub start: u64,
    pub last: u64,
    /// Backing storage slot in the pages pool.
    pub pages: u32,
    /// Byte offset of `start` inside the backing.
    pub offset: u64,
    pub prot: Prot,
}

/// Storage for one area node. Allocate as many as the system may ever hold
/// areas, e.g. `[AreaSlot::EMPTY; N]` in a static, and hand them to
/// [`crate::Store::new`], which links them into its free list.
#[derive(Clone, Copy, Debug)]
pub struct AreaSlot {
    area: Area,
    left: NodeIdx,
    right: NodeIdx,
    /// Levels of the subtree rooted here (a leaf is 1).
    height: u32,
    min_start: u64,
    max_last: u64,
    /// Per alignment class, the best room in a gap between two consecutive
    /// areas of the subtree (class 0: the widest gap).
    room: Room,
}

impl AreaSlot {
    /// A free node: all zero bytes, so a static array of them sits in
    /// `.bss`. A free node's links mean nothing until the arena sets them.
    pub const EMPTY: AreaSlot = AreaSlot {
        area: Area {
            start: 0,
            last: 0,
            pages: 0,
            offset: 0,
            prot: Prot::empty(),
        },
        left: 0,
        right: 0,
        height: 0,
        min_start: 0,
        max_last: 0,
        room: Room::NONE,
    };
}

/// Fixed arena of area nodes with a free list threaded through `left`.
pub(crate) struct AreaArena<'s> {
    nodes: &'s mut [AreaSlot],
    free_head: NodeIdx,
    free: usize,
    /// Nodes visited by searches and updates, for tests that bound work.
    visits: Cell<u64>,
    /// Insertions, removals and rewrites so far: an answer computed from
    /// the trees stays valid while this does not move.
    changes: u64,
}

impl<'s> AreaArena<'s> {
    pub fn new(nodes: &'s mut [AreaSlot]) -> AreaArena<'s> {
        // Indices must fit NodeIdx with NIL left over.
        let usable = nodes.len().min(NIL as usize);
        let nodes = &mut nodes[..usable];
        for (i, slot) in nodes.iter_mut().enumerate() {
            *slot = AreaSlot::EMPTY;
            slot.left = if i + 1 < usable {
                (i + 1) as NodeIdx
            } else {
                NIL
            };
        }
        AreaArena {
            free_head: if usable > 0 { 0 } else { NIL },
            free: usable,
            nodes,
            visits: Cell::new(0),
            changes: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.nodes.len()
    }

    pub fn into_slots(self) -> &'s mut [AreaSlot] {
        self.nodes
    }

    pub fn free(&self) -> usize {
        self.free
    }

    /// Nodes visited so far.
    pub fn visits(&self) -> u64 {
        self.visits.get()
    }

    /// Changes made to any tree of the arena so far.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    fn visit(&self) {
        self.visits.set(self.visits.get().wrapping_add(1));
    }

    /// Levels of the tree rooted at `t`.
    pub fn height(&self, t: NodeIdx) -> u32 {
        if t == NIL {
            0
        } else {
            self.n(t).height
        }
    }

    fn alloc(&mut self, area: Area) -> Result<NodeIdx> {
        let idx = self.free_head;
        if idx == NIL {
            return Err(Errno::ENOMEM);
        }
        let slot = &mut self.nodes[idx as usize];
        self.free_head = slot.left;
        self.free -= 1;
        self.changes = self.changes.wrapping_add(1);
        // Field by field: the node is rewritten where it lies.
        slot.area = area;
        slot.left = NIL;
        slot.right = NIL;
        slot.height = 1;
        slot.min_start = area.start;
        slot.max_last = area.last;
        slot.room = Room::NONE;
        Ok(idx)
    }

    fn release(&mut self, idx: NodeIdx) {
        let slot = &mut self.nodes[idx as usize];
        slot.left = self.free_head;
        self.free_head = idx;
        self.free += 1;
        self.changes = self.changes.wrapping_add(1);
    }

    pub fn get(&self, idx: NodeIdx) -> &Area {
        &self.nodes[idx as usize].area
    }

    fn n(&self, idx: NodeIdx) -> &AreaSlot {
        &self.nodes[idx as usize]
    }

    /// The free pieces between `node` and its children's subtrees, empty
    /// (`lo > hi`) where a child is missing.
    fn inner_pieces(&self, node: &AreaSlot) -> [(u64, u64); 2] {
        let mut pieces = [(1, 0); 2];
        if node.left != NIL {
            pieces[0] = (self.n(node.left).max_last + 1, node.area.start - 1);
        }
        if node.right != NIL {
            pieces[1] = (node.area.last + 1, self.n(node.right).min_start - 1);
        }
        pieces
    }

    /// `idx` and, read-only, its children (`None` for a missing one).
    fn with_children(&mut self, idx: NodeIdx) -> (&mut AreaSlot, [Option<&AreaSlot>; 2]) {
        let node = &self.nodes[idx as usize];
        let children = [node.left, node.right];
        let (below, rest) = self.nodes.split_at_mut(idx as usize);
        let (slot, above) = rest.split_first_mut().expect("node index in the arena");
        let (below, above): (&[AreaSlot], &[AreaSlot]) = (below, above);
        let child = |c: NodeIdx| match c {
            NIL => None,
            c if c < idx => Some(&below[c as usize]),
            c => Some(&above[(c - idx - 1) as usize]),
        };
        (slot, [child(children[0]), child(children[1])])
    }

    /// Recomputes the subtree bounds and height of `idx` from its
    /// children, and its per-class room too when `figures` (a child's room
    /// or the bound facing `idx` moved, or the children changed), writing
    /// into the node: one node's worth of figures is never copied through
    /// the stack of the recursive walks that call this. Returns whether the
    /// room changed.
    #[inline(never)]
    fn update(&mut self, idx: NodeIdx, figures: bool) -> bool {
        self.visit();
        let node = self.n(idx);
        let (left, right) = (node.left, node.right);
        let pieces = self.inner_pieces(node);
        let min_start = if left != NIL {
            self.n(left).min_start
        } else {
            node.area.start
        };
        let max_last = if right != NIL {
            self.n(right).max_last
        } else {
            node.area.last
        };
        let height = 1 + self.height(left).max(self.height(right));
        let slot = &mut self.nodes[idx as usize];
        slot.min_start = min_start;
        slot.max_last = max_last;
        slot.height = height;
        if !figures {
            return false;
        }
        let (slot, [l, r]) = self.with_children(idx);
        slot.room
            .rebuild([l.map(|n| &n.room), r.map(|n| &n.room)], &pieces)
    }

    fn rotate_right(&mut self, t: NodeIdx) -> NodeIdx {
        let l = self.n(t).left;
        self.nodes[t as usize].left = self.n(l).right;
        self.update(t, true);
        self.nodes[l as usize].right = t;
        self.update(l, true);
        l
    }

    fn rotate_left(&mut self, t: NodeIdx) -> NodeIdx {
        let r = self.n(t).right;
        self.nodes[t as usize].right = self.n(r).left;
        self.update(t, true);
        self.nodes[r as usize].left = t;
        self.update(r, true);
        r
    }

    /// Refreshes `t` after a change below it (its figures only when
    /// `figures`) and restores the AVL balance (children's heights differ
    /// by at most one) with at most two rotations; returns the subtree's
    /// new root and what moved in its summary. A rotation rearranges the
    /// subtree's areas without changing them, so its summary is the one
    /// `t` had before rotating.
    fn rebalance(&mut self, t: NodeIdx, figures: bool) -> (NodeIdx, Moved) {
        let (min_start, max_last, height) =
            (self.n(t).min_start, self.n(t).max_last, self.n(t).height);
        let room = self.update(t, figures);
        let mut moved = Moved {
            room,
            min_start: self.n(t).min_start != min_start,
            max_last: self.n(t).max_last != max_last,
            height: false,
        };
        let (l, r) = (self.n(t).left, self.n(t).right);
        let (hl, hr) = (self.height(l), self.height(r));
        let root = if hl > hr + 1 {
            if self.height(self.n(l).left) < self.height(self.n(l).right) {
                let nl = self.rotate_left(l);
                self.nodes[t as usize].left = nl;
            }
            self.rotate_right(t)
        } else if hr > hl + 1 {
            if self.height(self.n(r).right) < self.height(self.n(r).left) {
                let nr = self.rotate_right(r);
                self.nodes[t as usize].right = nr;
            }
            self.rotate_left(t)
        } else {
            t
        };
        moved.height = self.n(root).height != height;
        (root, moved)
    }

    /// A child of `t` changed below without changing its height or
    /// anything `t`'s figures read (`!figures`): at most the child's bound
    /// on the far side from `t`'s own area moved, so `t` copies it and is
    /// otherwise as it was, with no update and no rebalancing. The common
    /// case above the few nodes an insertion or removal reshapes, and on
    /// the whole path when it takes or adds a subtree's lowest or highest
    /// area (as first fit at the bottom of the space does).
    fn carry(&mut self, t: NodeIdx, moved: Moved, figures: bool, left: bool) -> Option<Moved> {
        if moved.height || figures {
            return None;
        }
        let mut carried = Moved::NOTHING;
        let node = self.n(t);
        if left && moved.min_start {
            let min_start = self.n(node.left).min_start;
            self.nodes[t as usize].min_start = min_start;
            carried.min_start = true;
        } else if !left && moved.max_last {
            let max_last = self.n(node.right).max_last;
            self.nodes[t as usize].max_last = max_last;
            carried.max_last = true;
        }
        Some(carried)
    }

    fn insert_node(&mut self, t: NodeIdx, x: NodeIdx) -> (NodeIdx, Moved) {
        if t == NIL {
            return (x, Moved::ALL);
        }
        let went_left = self.n(x).area.start < self.n(t).area.start;
        let (moved, figures) = if went_left {
            let (left, moved) = self.insert_node(self.n(t).left, x);
            self.nodes[t as usize].left = left;
            (moved, moved.faces_right())
        } else {
            let (right, moved) = self.insert_node(self.n(t).right, x);
            self.nodes[t as usize].right = right;
            (moved, moved.faces_left())
        };
        if let Some(carried) = self.carry(t, moved, figures, went_left) {
            return (t, carried);
        }
        self.rebalance(t, figures)
    }

    /// Takes the lowest node out of `t`: (that node, the rest, what moved).
    fn remove_min(&mut self, t: NodeIdx) -> (NodeIdx, NodeIdx, Moved) {
        let left = self.n(t).left;
        if left == NIL {
            return (t, self.n(t).right, Moved::ALL);
        }
        let (min, rest, moved) = self.remove_min(left);
        self.nodes[t as usize].left = rest;
        let figures = moved.faces_right();
        if let Some(carried) = self.carry(t, moved, figures, true) {
            return (min, t, carried);
        }
        let (root, moved) = self.rebalance(t, figures);
        (min, root, moved)
    }

    fn remove_node(&mut self, t: NodeIdx, start: u64) -> (NodeIdx, Moved) {
        debug_assert!(t != NIL, "removing an area that is not in the tree");
        if t == NIL {
            return (NIL, Moved::ALL);
        }
        let here = self.n(t).area.start;
        let went_left = start < here;
        let (moved, figures) = if went_left {
            let (left, moved) = self.remove_node(self.n(t).left, start);
            self.nodes[t as usize].left = left;
            (moved, moved.faces_right())
        } else if start > here {
            let (right, moved) = self.remove_node(self.n(t).right, start);
            self.nodes[t as usize].right = right;
            (moved, moved.faces_left())
        } else {
            let (left, right) = (self.n(t).left, self.n(t).right);
            if left == NIL {
                return (right, Moved::ALL);
            }
            if right == NIL {
                return (left, Moved::ALL);
            }
            let (successor, rest, _) = self.remove_min(right);
            let slot = &mut self.nodes[successor as usize];
            slot.left = left;
            slot.right = rest;
            let (root, _) = self.rebalance(successor, true);
            return (root, Moved::ALL);
        };
        if let Some(carried) = self.carry(t, moved, figures, went_left) {
            return (t, carried);
        }
        self.rebalance(t, figures)
    }

    /// Inserts an area that overlaps nothing in `root` (checked by callers).
    pub fn insert(&mut self, root: &mut NodeIdx, area: Area) -> Result<NodeIdx> {
        let idx = self.alloc(area)?;
        *root = self.insert_node(*root, idx).0;
        Ok(idx)
    }

    /// Removes the area starting at `start` and returns its payload.
    pub fn remove(&mut self, root: &mut NodeIdx, idx: NodeIdx) -> Area {
        let area = *self.get(idx);
        *root = self.remove_node(*root, area.start).0;
        self.release(idx);
        area
    }

    /// Rewrites an area in place; its start and last must not change order
    /// relative to neighbours (used only to shrink an area from the right).
    pub fn set_last(&mut self, root: NodeIdx, idx: NodeIdx, last: u64) {
        self.nodes[idx as usize].area.last = last;
        self.changes = self.changes.wrapping_add(1);
        // Cached bounds live on the path from the root; refresh it.
        let start = self.get(idx).start;
        self.refresh_path(root, start);
    }

    fn refresh_path(&mut self, t: NodeIdx, start: u64) {
        if t == NIL {
            return;
        }
        let here = self.n(t).area.start;
        if start < here {
            self.refresh_path(self.n(t).left, start);
        } else if start > here {
            self.refresh_path(self.n(t).right, start);
        }
        self.update(t, true);
    }

    /// The area with the greatest start `<= key`.
    pub fn find_le(&self, root: NodeIdx, key: u64) -> Option<NodeIdx> {
        let (mut t, mut best) = (root, None);
        while t != NIL {
            self.visit();
            let node = self.n(t);
            if node.area.start <= key {
                best = Some(t);
                t = node.right;
            } else {
                t = node.left;
            }
        }
        best
    }

    /// The area with the smallest start `> key`.
    pub fn find_gt(&self, root: NodeIdx, key: u64) -> Option<NodeIdx> {
        let (mut t, mut best) = (root, None);
        while t != NIL {
            self.visit();
            let node = self.n(t);
            if node.area.start > key {
                best = Some(t);
                t = node.left;
            } else {
                t = node.right;
            }
        }
        best
    }

    /// The area containing `iova`.
    pub fn containing(&self, root: NodeIdx, iova: u64) -> Option<NodeIdx> {
        self.find_le(root, iova)
            .filter(|&i| self.get(i).last >= iova)
    }

    /// The lowest area overlapping `range`.
    pub fn first_overlap(&self, root: NodeIdx, range: IovaRange) -> Option<NodeIdx> {
        if let Some(i) = self.containing(root, range.start) {
            return Some(i);
        }
        self.find_gt(root, range.start)
            .filter(|&i| self.get(i).start <= range.last)
    }

    /// The highest area overlapping `range`.
    pub fn last_overlap(&self, root: NodeIdx, range: IovaRange) -> Option<NodeIdx> {
        self.find_le(root, range.last)
            .filter(|&i| self.get(i).last >= range.start)
    }

    /// The area following `idx` in IOVA order.
    pub fn next(&self, root: NodeIdx, idx: NodeIdx) -> Option<NodeIdx> {
        self.find_gt(root, self.get(idx).start)
    }

    /// The lowest area of the tree.
    pub fn first(&self, root: NodeIdx) -> Option<NodeIdx> {
        if root == NIL {
            return None;
        }
        self.find_le(root, self.n(root).min_start)
    }

    /// The highest area of the tree.
    pub fn last(&self, root: NodeIdx) -> Option<NodeIdx> {
        self.find_le(root, u64::MAX)
    }

    /// The lowest IOVA Linux's first fit picks for `length` bytes placed by
    /// `place` inside `[lo, hi]` without touching an area: the first free
    /// piece (clipped to the range) whose placed start leaves `length`
    /// bytes. A subtree is entered only when its room in `place`'s class
    /// says it holds such a piece; the room is exact for a subtree inside
    /// the range, so the search costs one path down plus the two paths
    /// along the range's ends, O(height). (An offset or'ed into the start
    /// can defeat a piece the room admits; then the search goes on.)
    pub fn first_fit(
        &self,
        root: NodeIdx,
        lo: u64,
        hi: u64,
        length: u64,
        place: Placement,
    ) -> Option<u64> {
        debug_assert!(length > 0 && place.align.is_power_of_two());
        self.first_fit_in(root, lo, hi, length, place)
    }

    fn first_fit_in(
        &self,
        t: NodeIdx,
        lo: u64,
        hi: u64,
        length: u64,
        place: Placement,
    ) -> Option<u64> {
        if lo > hi || hi - lo < length - 1 {
            return None;
        }
        if t == NIL {
            return fit_in(
                IovaRange {
                    start: lo,
                    last: hi,
                },
                length,
                place,
            );
        }
        self.visit();
        let node = self.n(t);
        let class = place.align.trailing_zeros();
        let before = if node.min_start > lo {
            room_in_class(lo, node.min_start - 1, class)
        } else {
            0
        };
        let after = if node.max_last < hi {
            room_in_class(node.max_last + 1, hi, class)
        } else {
            0
        };
        let room = node.room.get(class as usize).max(before).max(after);
        if room < length {
            return None;
        }
        let area = node.area;
        if area.start > lo {
            let below = hi.min(area.start - 1);
            if let Some(found) = self.first_fit_in(node.left, lo, below, length, place) {
                return Some(found);
            }
        }
        if area.last < hi {
            return self.first_fit_in(node.right, lo.max(area.last + 1), hi, length, place);
        }
        None
    }

    /// The room in class `k` of the free pieces of `[lo, hi]` (the range
    /// less the areas), exact wherever it exceeds `2^(k-1)` (see [`Room`]),
    /// in O(height): subtrees inside the range answer from their figures.
    pub fn class_room_in(&self, t: NodeIdx, lo: u64, hi: u64, k: u32) -> u64 {
        if lo > hi {
            return 0;
        }
        if t == NIL {
            return room_in_class(lo, hi, k);
        }
        self.visit();
        let node = self.n(t);
        if lo <= node.min_start && node.max_last <= hi {
            let before = if node.min_start > lo {
                room_in_class(lo, node.min_start - 1, k)
            } else {
                0
            };
            let after = if node.max_last < hi {
                room_in_class(node.max_last + 1, hi, k)
            } else {
                0
            };
            return node.room.get(k as usize).max(before).max(after);
        }
        let area = node.area;
        let mut room = 0;
        if area.start > lo {
            room = self.class_room_in(node.left, lo, hi.min(area.start - 1), k);
        }
        if area.last < hi {
            room = room.max(self.class_room_in(node.right, lo.max(area.last + 1), hi, k));
        }
        room
    }

    /// Checks the order, balance and cache invariants of one tree; used by
    /// tests.
    pub fn check(&self, root: NodeIdx) -> core::result::Result<usize, &'static str> {
        self.check_node(root, None, None)
    }

    fn check_node(
        &self,
        t: NodeIdx,
        above: Option<u64>,
        below: Option<u64>,
    ) -> core::result::Result<usize, &'static str> {
        if t == NIL {
            return Ok(0);
        }
        let node = self.n(t);
        let area = node.area;
        if area.start > area.last {
            return Err("area with start > last");
        }
        if above.is_some_and(|a| area.start <= a) || below.is_some_and(|b| area.last >= b) {
            return Err("areas overlap or are out of order");
        }
        let lc = self.check_node(node.left, above, Some(area.start))?;
        let rc = self.check_node(node.right, Some(area.last), below)?;
        let mut room = Room::NONE;
        let child = |c: NodeIdx| (c != NIL).then(|| &self.n(c).room);
        room.rebuild_by_class(
            [child(node.left), child(node.right)],
            &self.inner_pieces(node),
        );
        let min_start = if node.left != NIL {
            self.n(node.left).min_start
        } else {
            area.start
        };
        let max_last = if node.right != NIL {
            self.n(node.right).max_last
        } else {
            area.last
        };
        if (min_start, max_last) != (node.min_start, node.max_last) {
            return Err("stale subtree bounds");
        }
        if room != node.room {
            return Err("stale subtree cache");
        }
        let (hl, hr) = (self.height(node.left), self.height(node.right));
        if node.height != 1 + hl.max(hr) {
            return Err("stale height");
        }
        if hl.abs_diff(hr) > 1 {
            return Err("AVL balance violated");
        }
        Ok(lc + rc + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*, so a failure replays.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Every class's packed shortfall reads back what was written, up to
    /// its widest value `2^k - 1`, and writing one class leaves every
    /// other as it was.
    #[test]
    fn packed_shortfalls_keep_every_class_apart() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for round in 0..200 {
            let mut room = Room::NONE;
            let mut want = [0u64; CLASSES];
            for (k, slot) in want.iter_mut().enumerate().skip(1) {
                let mask = (1u64 << k) - 1;
                *slot = match round % 3 {
                    0 => mask,
                    1 => 0,
                    _ => next(&mut state) & mask,
                };
                room.set_short(k, *slot);
            }
            for _ in 0..64 {
                let k = 1 + (next(&mut state) % (CLASSES as u64 - 1)) as usize;
                want[k] = next(&mut state) & ((1u64 << k) - 1);
                room.set_short(k, want[k]);
                for (j, &w) in want.iter().enumerate().skip(1) {
                    assert_eq!(room.short_of(j), w, "class {j} after writing class {k}");
                }
            }
        }
    }

    /// The best room of class `k` among `pieces`, by definition.
    fn brute_room(pieces: &[(u64, u64)], k: u32) -> u64 {
        pieces
            .iter()
            .map(|&(lo, hi)| room_in_class(lo, hi, k))
            .max()
            .unwrap_or(0)
    }

    /// Figures merged from random pieces anywhere in the 64-bit space
    /// (every class, the widest included) answer exactly wherever a
    /// request of the class could fit (room above `2^(k-1)`) and never
    /// more than the pieces hold: the packed encoding never refuses a
    /// request a piece can take, nor admits one none can.
    #[test]
    fn merged_figures_are_exact_wherever_a_request_fits() {
        let mut state = 0x1234_5678_9abc_def1;
        for _ in 0..2000 {
            let piece = |state: &mut u64| {
                let width_bits = next(state) % 64;
                let lo = next(state) >> (next(state) % 64);
                let width = next(state) >> (64 - width_bits.max(1));
                (lo, lo.saturating_add(width))
            };
            let pieces: [(u64, u64); 6] = core::array::from_fn(|_| piece(&mut state));
            let mut left = Room::NONE;
            left.rebuild([None, None], &[pieces[0], pieces[1]]);
            let mut right = Room::NONE;
            right.rebuild([None, None], &[pieces[2], pieces[3]]);
            let mut root = Room::NONE;
            root.rebuild([Some(&left), Some(&right)], &[pieces[4], pieces[5]]);
            for k in 0..CLASSES as u32 {
                let truth = brute_room(&pieces, k);
                let got = root.get(k as usize);
                assert!(got <= truth, "class {k}: {got} above the true {truth}");
                if k == 0 || truth > 1u64 << (k - 1) {
                    assert_eq!(got, truth, "class {k} of {pieces:x?}");
                }
            }
        }
    }

    /// A piece for the fast-path tests: widths drawn so that inputs often
    /// tie or differ by a few bytes (the cases where every class is
    /// merged), starts at every alignment, anywhere in the space.
    fn close_piece(state: &mut u64, base_width: u64) -> (u64, u64) {
        if next(state).is_multiple_of(64) {
            // All of the space: its byte count saturates.
            return (0, u64::MAX);
        }
        let width = match next(state) % 4 {
            0 => base_width,
            1 => base_width.saturating_sub(next(state) % 64),
            2 => base_width >> (next(state) % 8),
            _ => next(state) >> (next(state) % 64),
        }
        .max(1);
        let lo = (next(state) >> (next(state) % 64)) & !((1u64 << (next(state) % 40)) - 1);
        let lo = lo.min(u64::MAX - (width - 1));
        (lo, lo + (width - 1))
    }

    fn random_inputs(state: &mut u64) -> ([Option<Room>; 2], [(u64, u64); 2]) {
        let base_width = (next(state) >> (next(state) % 64)).max(1);
        let piece = |state: &mut u64| {
            if next(state).is_multiple_of(5) {
                (1, 0)
            } else {
                close_piece(state, base_width)
            }
        };
        let child = |state: &mut u64| {
            (!next(state).is_multiple_of(5)).then(|| {
                let mut room = Room::NONE;
                room.rebuild_by_class([None, None], &[piece(state), piece(state)]);
                room
            })
        };
        let children = [child(state), child(state)];
        (children, [piece(state), piece(state)])
    }

    /// The fast merge equals the figures by definition from any figures
    /// the node held before (its old top and low bound what it clears and
    /// skips), and it reports a change whenever one happened.
    #[test]
    fn fast_rebuild_matches_the_definition_from_any_previous_figures() {
        let mut state = 0x0dd_b1a5_e5ca_1ab1;
        for round in 0..20_000 {
            let (children, pieces) = random_inputs(&mut state);
            let children = [children[0].as_ref(), children[1].as_ref()];
            let (old_children, old_pieces) = random_inputs(&mut state);
            let mut before = Room::NONE;
            before.rebuild_by_class(
                [old_children[0].as_ref(), old_children[1].as_ref()],
                &old_pieces,
            );
            let mut want = Room::NONE;
            want.rebuild_by_class(children, &pieces);
            let mut got = before;
            let changed = got.rebuild(children, &pieces);
            assert_eq!(
                got, want,
                "round {round}: {children:x?} {pieces:x?} from {before:x?}"
            );
            assert!(
                changed || got == before,
                "round {round}: change not reported"
            );
            // Again from its own result: nothing changes.
            let mut again = got;
            again.rebuild(children, &pieces);
            assert_eq!(again, want, "round {round}: rebuilt twice");
        }
    }

    /// Random insertions and removals of areas (byte granular, often
    /// leaving equal or nearly equal gaps) keep every node's figures equal
    /// to the ones rebuilt from scratch by definition
    /// ([`AreaArena::check`]), and the root's figures equal the best gap
    /// of every class counted directly.
    #[test]
    fn figures_after_inserts_and_removals_equal_those_rebuilt_from_scratch() {
        let mut state = 0x005e_ed0f_a5ea_u64;
        for round in 0..40 {
            let mut slots = vec![AreaSlot::EMPTY; 300];
            let mut arena = AreaArena::new(&mut slots);
            let mut root = NIL;
            let mut live: Vec<(u64, NodeIdx)> = Vec::new();
            // A few spaces: tiny (many equal gaps), page-sized, the whole.
            let (unit, spread) = match round % 3 {
                0 => (1u64, 1u64 << 12),
                1 => (1 << 12, 1 << 20),
                _ => (1 << (next(&mut state) % 40), u64::MAX >> 4),
            };
            for _ in 0..600 {
                if live.len() < 200 && !next(&mut state).is_multiple_of(3) {
                    let start = (next(&mut state) % spread) / unit * unit;
                    let last = start.saturating_add(unit * (1 + next(&mut state) % 3) - 1);
                    let overlaps = live.iter().any(|&(s, i)| {
                        let a = arena.get(i);
                        debug_assert_eq!(a.start, s);
                        a.start <= last && start <= a.last
                    });
                    if overlaps {
                        continue;
                    }
                    let area = Area {
                        start,
                        last,
                        pages: 0,
                        offset: 0,
                        prot: Prot::empty(),
                    };
                    let idx = arena.insert(&mut root, area).unwrap();
                    live.push((start, idx));
                } else if !live.is_empty() {
                    let at = (next(&mut state) % live.len() as u64) as usize;
                    let (_, idx) = live.swap_remove(at);
                    arena.remove(&mut root, idx);
                }
                assert_eq!(arena.check(root), Ok(live.len()), "round {round}");
                let mut areas: Vec<(u64, u64)> = live
                    .iter()
                    .map(|&(_, i)| (arena.get(i).start, arena.get(i).last))
                    .collect();
                areas.sort_unstable();
                let gaps: Vec<(u64, u64)> = areas
                    .windows(2)
                    .filter(|w| w[0].1 + 1 < w[1].0)
                    .map(|w| (w[0].1 + 1, w[1].0 - 1))
                    .collect();
                let figures = if root == NIL {
                    Room::NONE
                } else {
                    arena.n(root).room
                };
                for k in 0..CLASSES as u32 {
                    let truth = brute_room(&gaps, k);
                    if k == 0 || truth > 1u64 << (k - 1) {
                        assert_eq!(figures.get(k as usize), truth, "round {round}, class {k}");
                    }
                }
            }
        }
    }
}
