//! What an unmap leaves for the TLB: the IOVA runs whose translations must
//! be invalidated before the IOVA (or a freed table page) is reused.

use heapless::Vec;

/// Most runs a [`Gather`] keeps before falling back to invalidating the
/// whole ASID.
pub const GATHER_RUNS: usize = 16;

/// Invalidation work produced by unmap: one entry per contiguous run of
/// cleared IOVA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvRange {
    pub iova: u64,
    pub len: u64,
    /// True when only leaf entries were cleared (no table freed) in that
    /// run, so a leaf-only TLBI suffices; false means walk caches may hold
    /// a freed table and the invalidation must cover them too.
    pub leaf_only: bool,
}

/// Bounded list of [`InvRange`]; when full it sets an overflow flag that
/// means "invalidate the whole ASID".
#[derive(Clone, Debug, Default)]
pub struct Gather {
    runs: Vec<InvRange, GATHER_RUNS>,
    overflowed: bool,
}

impl Gather {
    pub const fn new() -> Gather {
        Gather {
            runs: Vec::new(),
            overflowed: false,
        }
    }

    pub fn runs(&self) -> &[InvRange] {
        &self.runs
    }

    /// More runs were cleared than fit: invalidate the whole ASID instead.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Nothing needs invalidating.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && !self.overflowed
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.overflowed = false;
    }

    /// Records `[iova, iova + len)`, extending the last run when it ends
    /// exactly at `iova`.
    pub fn add(&mut self, iova: u64, len: u64, leaf_only: bool) {
        if let Some(last) = self.runs.last_mut() {
            if last.iova.checked_add(last.len) == Some(iova) {
                if let Some(merged) = last.len.checked_add(len) {
                    last.len = merged;
                    last.leaf_only &= leaf_only;
                    return;
                }
            }
        }
        if self
            .runs
            .push(InvRange {
                iova,
                len,
                leaf_only,
            })
            .is_err()
        {
            self.overflowed = true;
        }
    }

    /// A table whose last leaf was just recorded has been freed. Once the
    /// list overflowed this may mark an older run, which is harmless: the
    /// whole ASID is invalidated anyway.
    pub(super) fn table_freed(&mut self) {
        if let Some(last) = self.runs.last_mut() {
            last.leaf_only = false;
        }
    }
}

/// Anything that can make unmapped IOVA unreachable (the SMMU driver
/// implements it with TLBI + one CMD_SYNC).
pub trait TlbFlush {
    /// Invalidates everything `gather` lists and waits for completion.
    /// `Ok` promises the walker can no longer reach any of it, nor any table
    /// freed by the unmaps gathered; an error means that promise cannot be
    /// made (the invalidation may not have happened or completed), so pages
    /// freed by those unmaps must never be reused
    /// (see [`TablePool::leak_pending`](super::TablePool::leak_pending)).
    fn flush(&mut self, gather: &Gather) -> Result<(), iommu_types::Errno>;
}
