//! Memory the system description gives a PD: regions shared with other
//! PDs and symbols the Microkit tool patches (`setvar`). The `unsafe`
//! behind them lives here.
#![allow(unsafe_code)]

use core::cell::UnsafeCell;

/// A region mapped into this PD and possibly others (a command page, a
/// DMA buffer). Every access is a volatile copy: another PD or a device
/// may change it at any time, so nothing is ever read twice and trusted.
#[derive(Debug)]
pub struct SharedMemory {
    base: usize,
    len: usize,
}

impl SharedMemory {
    /// # Safety
    /// `[base, base + len)` must stay mapped readable and writable in this
    /// PD for as long as the handle lives, and no Rust reference may point
    /// into it.
    pub const unsafe fn new(base: usize, len: usize) -> SharedMemory {
        SharedMemory { base, len }
    }

    pub fn base(&self) -> usize {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, n: usize) -> bool {
        offset.checked_add(n).is_some_and(|end| end <= self.len)
    }

    /// Copies out `out.len()` bytes from `offset`, a word at a time where
    /// aligned; false (and nothing copied) when that leaves the region.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        if !self.check(offset, out.len()) {
            return false;
        }
        let mut at = self.base + offset;
        let mut i = 0;
        while i < out.len() {
            if at.is_multiple_of(8) && out.len() - i >= 8 {
                // SAFETY: inside the region (checked above), which `new`'s
                // contract keeps mapped; `at` is 8-byte aligned.
                let word = unsafe { core::ptr::read_volatile(at as *const u64) };
                out[i..i + 8].copy_from_slice(&word.to_ne_bytes());
                i += 8;
                at += 8;
            } else {
                // SAFETY: as above; bytes have no alignment needs.
                out[i] = unsafe { core::ptr::read_volatile(at as *const u8) };
                i += 1;
                at += 1;
            }
        }
        true
    }

    /// Copies `bytes` in at `offset`, a word at a time where aligned;
    /// false (and nothing written) when that leaves the region.
    pub fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if !self.check(offset, bytes.len()) {
            return false;
        }
        let mut at = self.base + offset;
        let mut i = 0;
        while i < bytes.len() {
            if at.is_multiple_of(8) && bytes.len() - i >= 8 {
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[i..i + 8]);
                // SAFETY: as in `read`.
                unsafe { core::ptr::write_volatile(at as *mut u64, u64::from_ne_bytes(word)) };
                i += 8;
                at += 8;
            } else {
                // SAFETY: as in `read`.
                unsafe { core::ptr::write_volatile(at as *mut u8, bytes[i]) };
                i += 1;
                at += 1;
            }
        }
        true
    }
}

/// The copies above, for the server, the client library and the device
/// libraries alike.
impl mmio::Memory for SharedMemory {
    fn len(&self) -> usize {
        SharedMemory::len(self)
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        SharedMemory::read(self, offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        SharedMemory::write(self, offset, bytes)
    }
}

/// An 8-byte value the Microkit tool writes into the ELF (a `<setvar>`
/// or a map's `setvar_vaddr`); declare one with [`setvar!`](crate::setvar).
#[repr(transparent)]
pub struct SetVar(UnsafeCell<u64>);

// SAFETY: written only by the tool, before the PD runs; read-only after.
unsafe impl Sync for SetVar {}

impl SetVar {
    #[doc(hidden)]
    pub const fn zero() -> SetVar {
        SetVar(UnsafeCell::new(0))
    }

    /// The patched value; volatile, so the compiler cannot fold in the
    /// zero the source initialises it with.
    pub fn get(&self) -> u64 {
        // SAFETY: a valid, aligned u64 nothing writes at run time.
        unsafe { core::ptr::read_volatile(self.0.get()) }
    }
}

/// Declares a symbol the Microkit tool patches:
/// `setvar!(pub DMA_BUFFER = "dma_buffer");` then `DMA_BUFFER.get()`.
#[macro_export]
macro_rules! setvar {
    ($vis:vis $name:ident = $symbol:literal) => {
        #[allow(unsafe_code)]
        #[export_name = $symbol]
        #[used]
        #[link_section = ".data"]
        $vis static $name: $crate::SetVar = $crate::SetVar::zero();
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_memory_copies_inside_its_bounds_only() {
        let backing: &'static mut [u8] = Box::leak(vec![0u8; 64].into_boxed_slice());
        // SAFETY: a leaked buffer nothing else references.
        let m = unsafe { SharedMemory::new(backing.as_mut_ptr() as usize, 64) };
        assert!(m.write(60, &[1, 2, 3, 4]));
        assert!(!m.write(61, &[1, 2, 3, 4]));
        assert!(!m.write(usize::MAX, &[1]));
        let mut out = [0u8; 4];
        assert!(m.read(60, &mut out));
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(!m.read(62, &mut out));
        // Words where aligned, bytes around them: every byte lands.
        let bytes: Vec<u8> = (0..29).collect();
        assert!(m.write(3, &bytes));
        let mut back = [0u8; 29];
        assert!(m.read(3, &mut back));
        assert_eq!(&back[..], &bytes[..]);
    }

    setvar!(PATCHED = "test_setvar_symbol");

    #[test]
    fn setvar_reads_the_value_in_the_image() {
        assert_eq!(PATCHED.get(), 0);
    }
}
