//! Inclusive IOVA ranges.

/// An inclusive range of IO virtual addresses: `last` is the final byte, so
/// the whole 64-bit space `[0, u64::MAX]` is expressible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IovaRange {
    pub start: u64,
    pub last: u64,
}

impl IovaRange {
    /// The whole 64-bit IOVA space.
    pub const ALL: IovaRange = IovaRange {
        start: 0,
        last: u64::MAX,
    };

    pub const fn new(start: u64, last: u64) -> IovaRange {
        IovaRange { start, last }
    }

    /// `[start, start + length)`, or `None` when empty or wrapping.
    pub fn from_start_len(start: u64, length: u64) -> Option<IovaRange> {
        let last = start.checked_add(length.checked_sub(1)?)?;
        Some(IovaRange { start, last })
    }

    pub const fn overlaps(&self, other: &IovaRange) -> bool {
        self.start <= other.last && other.start <= self.last
    }

    pub const fn contains(&self, iova: u64) -> bool {
        self.start <= iova && iova <= self.last
    }

    /// Length in bytes; `None` only for the full 2^64 range.
    pub const fn length(&self) -> Option<u64> {
        (self.last - self.start).checked_add(1)
    }

    /// Intersection, or `None` when disjoint.
    pub fn intersect(&self, other: &IovaRange) -> Option<IovaRange> {
        let start = self.start.max(other.start);
        let last = self.last.min(other.last);
        (start <= last).then_some(IovaRange { start, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inclusive_ends_reach_the_top_of_the_space() {
        assert_eq!(IovaRange::ALL.length(), None);
        assert_eq!(
            IovaRange::from_start_len(u64::MAX, 1),
            Some(IovaRange::new(u64::MAX, u64::MAX))
        );
        assert_eq!(IovaRange::from_start_len(u64::MAX, 2), None);
        assert_eq!(IovaRange::from_start_len(5, 0), None);
        let a = IovaRange::new(0x1000, 0x1fff);
        assert!(a.overlaps(&IovaRange::new(0x1fff, 0x2fff)));
        assert!(!a.overlaps(&IovaRange::new(0x2000, 0x2fff)));
        assert_eq!(
            a.intersect(&IovaRange::new(0x1800, 0x5000)),
            Some(IovaRange::new(0x1800, 0x1fff))
        );
        assert_eq!(a.length(), Some(0x1000));
    }
}
