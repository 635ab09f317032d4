//! Device registers, device-visible memory and the AArch64 barrier and
//! cache instructions the driver needs. This is the only module of the
//! crate with `unsafe`; every block says why it is sound.
#![allow(unsafe_code)]

/// 32- and 64-bit register access. [`Mmio`] is the real thing; tests may
/// supply a simulated register file.
pub trait RegisterBlock {
    fn read32(&self, offset: usize) -> u32;
    fn write32(&self, offset: usize, value: u32);
    fn read64(&self, offset: usize) -> u64;
    fn write64(&self, offset: usize, value: u64);
}

/// A window of memory-mapped device registers.
#[derive(Debug)]
pub struct Mmio {
    base: usize,
    size: usize,
}

impl Mmio {
    /// # Safety
    /// `base..base + size` must be mapped as device memory, belong to one
    /// device, and be accessed through nothing but this `Mmio` while it
    /// lives.
    pub const unsafe fn new(base: usize, size: usize) -> Mmio {
        Mmio { base, size }
    }

    pub fn base(&self) -> usize {
        self.base
    }

    /// The address of a naturally aligned register inside the window.
    fn reg(&self, offset: usize, width: usize) -> Option<usize> {
        let fits = offset
            .checked_add(width)
            .is_some_and(|end| end <= self.size);
        (fits && offset % width == 0).then(|| self.base + offset)
    }
}

impl RegisterBlock for Mmio {
    fn read32(&self, offset: usize) -> u32 {
        match self.reg(offset, 4) {
            // SAFETY: in bounds and aligned (checked by `reg`), and `new`'s
            // contract makes the window device memory we own.
            Some(addr) => unsafe { core::ptr::read_volatile(addr as *const u32) },
            None => {
                debug_assert!(false, "register {offset:#x} outside window");
                u32::MAX
            }
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        match self.reg(offset, 4) {
            // SAFETY: as in `read32`.
            Some(addr) => unsafe { core::ptr::write_volatile(addr as *mut u32, value) },
            None => debug_assert!(false, "register {offset:#x} outside window"),
        }
    }

    fn read64(&self, offset: usize) -> u64 {
        match self.reg(offset, 8) {
            // SAFETY: as in `read32`.
            Some(addr) => unsafe { core::ptr::read_volatile(addr as *const u64) },
            None => {
                debug_assert!(false, "register {offset:#x} outside window");
                u64::MAX
            }
        }
    }

    fn write64(&self, offset: usize, value: u64) {
        match self.reg(offset, 8) {
            // SAFETY: as in `read32`.
            Some(addr) => unsafe { core::ptr::write_volatile(addr as *mut u64, value) },
            None => debug_assert!(false, "register {offset:#x} outside window"),
        }
    }
}

/// Memory the device reads or writes by DMA (queues, stream and context
/// tables), seen through its CPU mapping and known by its physical address.
/// Every access is volatile: the device changes it behind the compiler's
/// back. Not `Sync`: accesses are unsynchronised.
///
/// With a non-coherent SMMU (IDR0.COHACC = 0) the mapping must be Normal
/// non-cacheable (Microkit: `cached="false"`): records the SMMU writes are
/// then never shadowed by stale cache lines.
#[derive(Debug)]
pub struct DmaRegion {
    va: usize,
    pa: u64,
    len: usize,
    _not_sync: core::marker::PhantomData<*mut u64>,
}

// SAFETY: a region is exclusively owned memory; moving the owner to another
// thread moves the only way to reach it.
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    /// # Safety
    /// `va..va + len` must be mapped, readable and writable, `va` and `pa`
    /// 8-byte aligned, backed by physical memory starting at `pa`, used by
    /// nothing else (besides the device this region is handed to) while it
    /// lives, and mapped non-cacheable when the device is not coherent.
    pub const unsafe fn new(va: usize, pa: u64, len: usize) -> DmaRegion {
        DmaRegion {
            va,
            pa,
            len: len & !7,
            _not_sync: core::marker::PhantomData,
        }
    }

    /// Memory given up for good, at physical address `pa` (8-byte aligned,
    /// else `None`): identity-mapped boot memory, or host tests where no
    /// device reads it.
    pub fn from_leaked(buf: &'static mut [u64], pa: u64) -> Option<DmaRegion> {
        if pa % 8 != 0 {
            return None;
        }
        let len = core::mem::size_of_val(buf);
        // SAFETY: the exclusive 'static borrow moves into the region, so
        // nothing else can reach the memory; u64 slices are 8-byte aligned.
        Some(unsafe { DmaRegion::new(buf.as_mut_ptr() as usize, pa, len) })
    }

    pub fn pa(&self) -> u64 {
        self.pa
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of 64-bit words.
    pub fn words(&self) -> usize {
        self.len / 8
    }

    pub fn read(&self, word: usize) -> u64 {
        if word >= self.words() {
            debug_assert!(false, "DMA word {word} outside region");
            return 0;
        }
        // SAFETY: in bounds and 8-byte aligned (`new`'s contract, and carve
        // keeps 8-byte alignment); volatile because the device writes it.
        unsafe { core::ptr::read_volatile((self.va as *const u64).add(word)) }
    }

    pub fn write(&self, word: usize, value: u64) {
        if word >= self.words() {
            debug_assert!(false, "DMA word {word} outside region");
            return;
        }
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.va as *mut u64).add(word), value) }
    }

    pub fn zero(&self) {
        for word in 0..self.words() {
            self.write(word, 0);
        }
    }

    /// Splits off the first `len` bytes (rounded up to whole words) at the
    /// next `align`-aligned physical address (a power of two; at least 8 is
    /// used); `None` when it does not fit.
    pub fn carve(&mut self, len: usize, align: usize) -> Option<DmaRegion> {
        if !align.is_power_of_two() {
            return None;
        }
        let align = align.max(8);
        let len = len.checked_add(7)? & !7;
        let pad = (self.pa.wrapping_neg() as usize) & (align - 1);
        let total = pad.checked_add(len)?;
        if total > self.len {
            return None;
        }
        let piece = DmaRegion {
            va: self.va + pad,
            pa: self.pa + pad as u64,
            len,
            _not_sync: core::marker::PhantomData,
        };
        self.va += total;
        self.pa += total as u64;
        self.len -= total;
        Some(piece)
    }

    /// Makes CPU writes to the whole region visible to a non-coherent
    /// device.
    pub fn clean(&self) {
        clean_dcache(self.va, self.len);
    }

    /// Makes CPU writes to `count` words from `word` visible to a
    /// non-coherent device.
    pub fn clean_words(&self, word: usize, count: usize) {
        let Some(end) = word.checked_add(count).filter(|&e| e <= self.words()) else {
            debug_assert!(false, "clean of words {word}+{count} outside region");
            return;
        };
        clean_dcache(self.va + word * 8, (end - word) * 8);
    }
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
fn clean_dcache(va: usize, len: usize) {
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
    dsb_sy();
}

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

/// A page-table cleaner for non-coherent SMMUs: cleans every descriptor the
/// page-table code reports as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct DcacheClean;

impl crate::pgtable::CacheClean for DcacheClean {
    fn clean(&self, descriptors: &[u64]) {
        clean_dcache(
            descriptors.as_ptr() as usize,
            core::mem::size_of_val(descriptors),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(words: usize, pa: u64) -> DmaRegion {
        DmaRegion::from_leaked(Box::leak(vec![0u64; words].into_boxed_slice()), pa).unwrap()
    }

    #[test]
    fn carve_keeps_pieces_word_aligned_and_in_bounds() {
        let mut r = region(64, 0x1000);
        let a = r.carve(4, 8).unwrap();
        assert_eq!((a.pa(), a.len()), (0x1000, 8), "rounded up to a word");
        let b = r.carve(16, 64).unwrap();
        assert_eq!(b.pa(), 0x1040, "aligned by physical address");
        assert_eq!(b.va % 8, 0);
        assert!(r.carve(4096, 8).is_none(), "does not fit");
        assert!(r.carve(8, 3).is_none(), "alignment not a power of two");
        assert!(r.carve(usize::MAX, 8).is_none(), "length overflow");
        let odd = Box::leak(vec![0u64; 1].into_boxed_slice());
        assert!(
            DmaRegion::from_leaked(odd, 0x1004).is_none(),
            "misaligned physical address"
        );
    }

    #[test]
    fn reads_and_writes_stay_inside() {
        let r = region(4, 0x2000);
        r.write(3, 7);
        assert_eq!(r.read(3), 7);
        r.zero();
        assert_eq!(r.read(3), 0);
        r.clean_words(0, 4);
    }
}
