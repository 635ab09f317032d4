//! Device registers.

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
        (fits && offset.is_multiple_of(width)).then(|| self.base + offset)
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
