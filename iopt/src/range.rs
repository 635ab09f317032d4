//! The holes between sorted lists of IOVA ranges, and fitting into them.

use iommu_types::IovaRange;

/// The holes of `within` not covered by any of `used`, in ascending order.
/// `used` must be sorted by `start`; its ranges may overlap each other.
#[derive(Clone, Debug)]
pub struct Holes<I> {
    used: I,
    /// Next candidate hole start; `None` once the walk passed `within.last`.
    cursor: Option<u64>,
    last: u64,
}

impl<I: Iterator<Item = IovaRange>> Holes<I> {
    pub fn new(within: IovaRange, used: impl IntoIterator<IntoIter = I>) -> Holes<I> {
        Holes {
            used: used.into_iter(),
            cursor: Some(within.start),
            last: within.last,
        }
    }
}

impl<I: Iterator<Item = IovaRange>> Iterator for Holes<I> {
    type Item = IovaRange;

    fn next(&mut self) -> Option<IovaRange> {
        loop {
            let cursor = self.cursor?;
            let Some(used) = self.used.next() else {
                self.cursor = None;
                return Some(IovaRange {
                    start: cursor,
                    last: self.last,
                });
            };
            if used.last < cursor {
                continue;
            }
            if used.start > self.last {
                self.cursor = None;
                return Some(IovaRange {
                    start: cursor,
                    last: self.last,
                });
            }
            // The hole (if any) ends before `used`; the next starts after it.
            self.cursor = if used.last >= self.last {
                None
            } else {
                Some(used.last + 1)
            };
            if used.start > cursor {
                return Some(IovaRange {
                    start: cursor,
                    last: used.start - 1,
                });
            }
        }
    }
}

/// Rounds `value` up to a power-of-two `align`; `None` on overflow.
pub(crate) fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// The lowest `align`-aligned start of `length` bytes inside `hole`.
/// Where an automatic IOVA may start: aligned to `align`, then with the
/// source's offset in its CPU page or'ed in (Linux's `ALIGN(start, align) |
/// page_offset`, which keeps that offset whenever `align` is a page or
/// more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub align: u64,
    pub offset: u64,
}

impl Placement {
    pub(crate) fn start(&self, from: u64) -> Option<u64> {
        align_up(from, self.align).map(|s| s | self.offset)
    }
}

pub(crate) fn fit_in(hole: IovaRange, length: u64, place: Placement) -> Option<u64> {
    let start = place.start(hole.start)?;
    if start > hole.last || hole.last - start < length - 1 {
        return None;
    }
    Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holes(within: IovaRange, used: &[IovaRange]) -> Vec<(u64, u64)> {
        Holes::new(within, used.iter().copied())
            .map(|r| (r.start, r.last))
            .collect()
    }

    #[test]
    fn holes_of_nothing_is_everything() {
        assert_eq!(holes(IovaRange::ALL, &[]), vec![(0, u64::MAX)]);
    }

    #[test]
    fn holes_skip_overlapping_and_edge_ranges() {
        let used = [
            IovaRange::new(0, 9),
            IovaRange::new(5, 19),
            IovaRange::new(30, 39),
            IovaRange::new(35, 36),
            IovaRange::new(90, u64::MAX),
        ];
        assert_eq!(holes(IovaRange::ALL, &used), vec![(20, 29), (40, 89)]);
        assert_eq!(
            holes(IovaRange::new(25, 95), &used),
            vec![(25, 29), (40, 89)]
        );
        assert_eq!(holes(IovaRange::new(31, 33), &used), vec![]);
        assert_eq!(holes(IovaRange::new(21, 22), &used), vec![(21, 22)]);
    }

    #[test]
    fn fit_respects_alignment_and_end() {
        let hole = IovaRange::new(0x1001, 0x4fff);
        let page = Placement {
            align: 0x1000,
            offset: 0,
        };
        assert_eq!(fit_in(hole, 0x1000, page), Some(0x2000));
        assert_eq!(fit_in(hole, 0x3000, page), Some(0x2000));
        assert_eq!(fit_in(hole, 0x3001, page), None);
        let offset = Placement {
            align: 0x100,
            offset: 0x300,
        };
        assert_eq!(fit_in(hole, 0x10, offset), Some(0x1300), "or'ed, not added");
        assert_eq!(
            fit_in(IovaRange::new(u64::MAX - 5, u64::MAX), 1, page),
            None
        );
    }
}
