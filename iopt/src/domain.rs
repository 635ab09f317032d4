//! The hardware side: IO page tables ("domains") that mirror an IOAS.

use iommu_types::{IovaRange, Prot, Result};

/// Names a domain to the engine. The engine never dereferences it; the
/// caller resolves it through a [`DomainTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u32);

/// An IO page table that can be attached to an IOAS.
///
/// Contract the engine relies on:
/// - `map_pages` is all or nothing: on error nothing of that call remains.
/// - `unmap_pages` never allocates and never fails; the engine only asks it
///   to unmap whole runs it mapped earlier, so no block is ever split.
pub trait IoDomain {
    /// Supported page sizes: bit `n` set means pages of `2^n` bytes.
    fn page_sizes(&self) -> u64;

    /// The IOVAs this domain can translate.
    fn aperture(&self) -> IovaRange;

    /// Maps `count` consecutive pages of `page_size` bytes from `iova` to
    /// `phys`. `iova`, `phys` are `page_size` aligned.
    fn map_pages(
        &mut self,
        iova: u64,
        phys: u64,
        page_size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<()>;

    /// Unmaps every page inside `[iova, iova + length)`; returns the bytes
    /// unmapped. [`Unconfirmed`] when the entries are gone from the table
    /// but the IOMMU did not confirm that it forgot them (its TLB
    /// invalidation did not complete): a device may still reach the pages.
    fn unmap_pages(&mut self, iova: u64, length: u64) -> core::result::Result<u64, Unconfirmed>;

    /// Translates one IOVA, for diagnostics and tests.
    fn iova_to_phys(&self, iova: u64) -> Option<u64>;
}

/// An unmap whose table entries are gone but whose invalidation the IOMMU
/// did not confirm: `bytes` were unmapped from the table, and a device may
/// still reach them through what the IOMMU cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unconfirmed {
    pub bytes: u64,
}

/// Resolves the domains an IOAS has attached. Ids handed to
/// [`crate::Ioas::attach_domain`] must resolve until they are detached.
pub trait DomainTable {
    fn domain(&mut self, id: DomainId) -> Option<&mut dyn IoDomain>;
}

/// The page size and count for the next chunk of a mapping, after Linux's
/// `iommu_pgsize()`: the largest size that `iova`, `phys` and `remaining`
/// all allow, and as many such pages as fit before a larger size becomes
/// usable. `sizes` must contain a size dividing `iova`, `phys`, `remaining`.
pub fn next_chunk(sizes: u64, iova: u64, phys: u64, remaining: u64) -> (u64, u64) {
    debug_assert!(remaining > 0);
    let merged = iova | phys;
    // Sizes no larger than `remaining` and no larger than the alignment.
    let mut usable = sizes & low_mask(63 - remaining.leading_zeros());
    if merged != 0 {
        usable &= low_mask(merged.trailing_zeros());
    }
    debug_assert!(
        usable != 0,
        "no page size fits iova {iova:#x} phys {phys:#x} len {remaining:#x}"
    );
    if usable == 0 {
        return (remaining, 0);
    }
    let size_shift = 63 - usable.leading_zeros();
    let size = 1u64 << size_shift;
    let mut span = remaining;
    let larger = sizes & !low_mask(size_shift);
    if larger != 0 {
        let next = 1u64 << larger.trailing_zeros();
        // A larger page only helps when iova and phys share the offset.
        if (iova ^ phys) & (next - 1) == 0 {
            let to_boundary = next - (merged & (next - 1));
            if to_boundary
                .checked_add(next)
                .is_some_and(|need| need <= remaining)
            {
                span = to_boundary;
            }
        }
    }
    (size, span >> size_shift)
}

/// Bits `0..=bit` set.
const fn low_mask(bit: u32) -> u64 {
    if bit >= 63 {
        u64::MAX
    } else {
        (1u64 << (bit + 1)) - 1
    }
}

/// The smallest page size in `sizes`.
pub const fn min_page(sizes: u64) -> u64 {
    sizes & sizes.wrapping_neg()
}

/// The largest page size in `sizes` (0 when empty).
pub const fn max_page(sizes: u64) -> u64 {
    if sizes == 0 {
        0
    } else {
        1u64 << (63 - sizes.leading_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARM_4K: u64 = (1 << 12) | (1 << 21) | (1 << 30);

    /// Expands a whole mapping into (iova, size) pages.
    fn chunks(sizes: u64, mut iova: u64, mut phys: u64, mut len: u64) -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        while len > 0 {
            let (size, count) = next_chunk(sizes, iova, phys, len);
            assert!(count > 0);
            out.push((iova, size, count));
            iova += size * count;
            phys += size * count;
            len -= size * count;
        }
        out
    }

    #[test]
    fn small_unaligned_run_is_all_4k() {
        assert_eq!(
            chunks(ARM_4K, 0x1000, 0x5000, 0x3000),
            vec![(0x1000, 0x1000, 3)]
        );
    }

    #[test]
    fn run_climbs_to_blocks_and_back() {
        let start = 0x20_0000 - 0x2000;
        let len = 0x2000 + 0x40_0000 + 0x1000;
        assert_eq!(
            chunks(ARM_4K, start, start + 0x4000_0000, len),
            vec![
                (start, 0x1000, 2),
                (0x20_0000, 0x20_0000, 2),
                (0x60_0000, 0x1000, 1)
            ]
        );
    }

    #[test]
    fn mismatched_offsets_never_use_blocks() {
        assert_eq!(
            chunks(ARM_4K, 0x20_0000, 0x20_1000, 0x40_0000),
            vec![(0x20_0000, 0x1000, 0x400)]
        );
    }

    #[test]
    fn gigabyte_block_when_everything_allows() {
        assert_eq!(
            chunks(ARM_4K, 1 << 30, 1 << 31, 1 << 30),
            vec![(1 << 30, 1 << 30, 1)]
        );
    }

    #[test]
    fn page_size_helpers() {
        assert_eq!(min_page(ARM_4K), 0x1000);
        assert_eq!(max_page(ARM_4K), 1 << 30);
        assert_eq!(max_page(0), 0);
    }
}
