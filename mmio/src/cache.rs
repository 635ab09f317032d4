//! Cache maintenance for devices that do not snoop the CPU's caches.

/// Cache maintenance for a non-coherent walker: called with every run of
/// descriptors just written, before the device may see them.
pub trait CacheClean: Sync {
    fn clean(&self, descriptors: &[u64]);
}

/// For coherent devices (an SMMU with IDR0.COHACC=1): does nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coherent;

impl CacheClean for Coherent {
    #[inline]
    fn clean(&self, _descriptors: &[u64]) {}
}

/// The smallest data cache line of this CPU (CTR_EL0.DminLine).
fn dcache_line() -> usize {
    #[cfg(target_arch = "aarch64")]
    {
        let ctr: u64;
        // SAFETY: reading CTR_EL0 has no side effects (at EL0 it needs
        // SCTLR_EL1.UCT, which seL4 sets).
        unsafe {
            core::arch::asm!("mrs {0}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags))
        };
        4 << ((ctr >> 16) & 0xf)
    }
    #[cfg(not(target_arch = "aarch64"))]
    64
}

/// Runs `op` on the address of each data cache line covering
/// `[va, va + len)`.
#[cfg(target_arch = "aarch64")]
fn for_each_line(va: usize, len: usize, mut op: impl FnMut(usize)) {
    let step = dcache_line();
    let end = va.saturating_add(len);
    let mut line = va & !(step - 1);
    while line < end {
        op(line);
        line += step;
    }
}

/// Cleans data cache lines covering `[va, va + len)` to the point of
/// coherency, then waits for completion.
pub(crate) fn clean_dcache(va: usize, len: usize) {
    #[cfg(feature = "maintenance-log")]
    maintenance::record(maintenance::Maintenance::Clean { va, len });
    #[cfg(target_arch = "aarch64")]
    for_each_line(va, len, |line| {
        // SAFETY: DC CVAC only writes back a cache line of memory the
        // caller owns; it changes no architectural state. (At EL0 it needs
        // SCTLR_EL1.UCI, which seL4 sets.)
        unsafe {
            core::arch::asm!("dc cvac, {0}", in(reg) line, options(nostack, preserves_flags))
        };
    });
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (va, len, dcache_line());
    crate::barrier::dsb_sy();
}

/// Cleans and invalidates data cache lines covering `[va, va + len)` to
/// the point of coherency, then waits for completion: after it, the CPU
/// reads what a non-coherent device wrote there. (DC CIVAC, since EL0 may
/// not invalidate without cleaning.)
pub(crate) fn invalidate_dcache(va: usize, len: usize) {
    #[cfg(feature = "maintenance-log")]
    maintenance::record(maintenance::Maintenance::Invalidate { va, len });
    #[cfg(target_arch = "aarch64")]
    for_each_line(va, len, |line| {
        // SAFETY: DC CIVAC writes back and drops a cache line of memory the
        // caller owns; it changes no architectural state. (At EL0 it needs
        // SCTLR_EL1.UCI, which seL4 sets.)
        unsafe {
            core::arch::asm!("dc civac, {0}", in(reg) line, options(nostack, preserves_flags))
        };
    });
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (va, len, dcache_line());
    crate::barrier::dsb_sy();
}

/// Host tests' record of cache maintenance, in the order it was asked for
/// (feature `maintenance-log`; on the host the operations themselves do
/// nothing).
#[cfg(feature = "maintenance-log")]
pub mod maintenance {
    extern crate std;
    use std::cell::RefCell;
    use std::vec::Vec;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Maintenance {
        Clean { va: usize, len: usize },
        Invalidate { va: usize, len: usize },
    }

    std::thread_local! {
        static LOG: RefCell<Vec<Maintenance>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(m: Maintenance) {
        LOG.with(|l| l.borrow_mut().push(m));
    }

    /// Everything recorded on this thread since the last call.
    pub fn take() -> Vec<Maintenance> {
        LOG.with(|l| core::mem::take(&mut *l.borrow_mut()))
    }
}

/// A page-table cleaner for non-coherent SMMUs: cleans every descriptor the
/// page-table code reports as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct DcacheClean;

impl CacheClean for DcacheClean {
    fn clean(&self, descriptors: &[u64]) {
        clean_dcache(
            descriptors.as_ptr() as usize,
            core::mem::size_of_val(descriptors),
        );
    }
}
