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

/// Cleans data cache lines covering `[va, va + len)` to the point of
/// coherency, then waits for completion.
pub(crate) fn clean_dcache(va: usize, len: usize) {
    #[cfg(target_arch = "aarch64")]
    {
        let step = dcache_line();
        let end = va.saturating_add(len);
        let mut line = va & !(step - 1);
        while line < end {
            // SAFETY: DC CVAC only writes back a cache line of memory the
            // caller owns; it changes no architectural state. (At EL0 it
            // needs SCTLR_EL1.UCI, which seL4 sets.)
            unsafe {
                core::arch::asm!("dc cvac, {0}", in(reg) line, options(nostack, preserves_flags))
            };
            line += step;
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (va, len, dcache_line());
    crate::barrier::dsb_sy();
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
