//! Barriers ordering CPU accesses against a device's.

/// Orders earlier writes to DMA memory before later ones, as seen by a
/// device (Linux's `dma_wmb`, DMB OSHST): e.g. a zeroed table before the
/// descriptor that links it.
pub fn dma_wmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier has no operands and no effect but ordering; no
    // `nomem`, so the compiler does not move memory accesses across it.
    unsafe {
        core::arch::asm!("dmb oshst", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
}

/// Orders an earlier read of a device register (a producer index) before
/// later reads of the DMA memory it covers (Linux's `dma_rmb`, DMB OSHLD).
pub fn dma_rmb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as in `dma_wmb`.
    unsafe {
        core::arch::asm!("dmb oshld", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
}

/// Orders all earlier DMA-memory accesses before later ones, reads and
/// writes (DMB OSH): e.g. reading event records before handing their slots
/// back through CONS.
pub fn dma_mb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as in `dma_wmb`.
    unsafe {
        core::arch::asm!("dmb osh", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Orders all earlier memory writes before later ones and before any
/// device access (DSB SY).
pub fn dsb_sy() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier has no operands and no effect but ordering.
    unsafe {
        core::arch::asm!("dsb sy", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
