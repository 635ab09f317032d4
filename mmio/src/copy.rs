//! Memory reached only by bounded byte copies.
#![forbid(unsafe_code)]

use core::cell::{Cell, RefCell};

/// Memory reached only by copies in and out of byte ranges: a command
/// page, a DMA buffer, a ring shared with another PD, or a test's stand-in
/// for one. Another PD or a device may change shared memory at any
/// moment, so its users never hold a reference into it: they copy out
/// what they use once and check their copy.
///
/// One trait serves the server (command pages), the client library (DMA
/// buffers) and the device libraries (queues and rings), none of which
/// needs to know who else shares the memory.
pub trait Memory {
    /// Bytes in the memory.
    fn len(&self) -> usize;

    /// Copies `out.len()` bytes from `offset`; false (nothing copied) when
    /// that leaves the memory.
    fn read(&self, offset: usize, out: &mut [u8]) -> bool;

    /// Copies `bytes` in at `offset`; false (nothing written) when that
    /// leaves the memory.
    fn write(&self, offset: usize, bytes: &[u8]) -> bool;

    /// Whether the memory has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reference reaches the same memory (a buffer lent to a driver).
impl<M: Memory + ?Sized> Memory for &M {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        (**self).read(offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        (**self).write(offset, bytes)
    }
}

/// `len` items of `slice` from `offset`; None if any lies past the end
/// (or the end overflows).
fn span<T>(slice: &[T], offset: usize, len: usize) -> Option<&[T]> {
    slice.get(offset..offset.checked_add(len)?)
}

/// Private bytes another part of the program may also write (see
/// [`cells`]).
impl Memory for [Cell<u8>] {
    fn len(&self) -> usize {
        <[Cell<u8>]>::len(self)
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        let Some(src) = span(self, offset, out.len()) else {
            return false;
        };
        for (o, c) in out.iter_mut().zip(src) {
            *o = c.get();
        }
        true
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        let Some(dst) = span(self, offset, bytes.len()) else {
            return false;
        };
        for (c, b) in dst.iter().zip(bytes) {
            c.set(*b);
        }
        true
    }
}

/// A byte buffer as [`Memory`] (a transport that already holds a private
/// copy of a page, and tests).
pub fn cells(bytes: &mut [u8]) -> &[Cell<u8>] {
    Cell::from_mut(bytes).as_slice_of_cells()
}

/// Memory held in a `RefCell` (a client and a server in one program, as
/// in the bare-metal demo and the tests): each copy borrows it for the
/// copy alone.
impl<const N: usize> Memory for RefCell<[u8; N]> {
    fn len(&self) -> usize {
        N
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        cells(&mut *self.borrow_mut()).read(offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        cells(&mut *self.borrow_mut()).write(offset, bytes)
    }
}

/// Bytes that are only read (tests of the server's copy-in rules): every
/// write fails.
impl Memory for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        match span(self, offset, out.len()) {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => false,
        }
    }

    fn write(&self, _: usize, _: &[u8]) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_stay_inside_the_memory() {
        let mut backing = [0u8; 8];
        let mem = cells(&mut backing);
        assert!(mem.write(4, &[1, 2, 3, 4]));
        assert!(!mem.write(5, &[9, 9, 9, 9]), "past the end");
        assert!(!mem.write(usize::MAX, &[9]), "the end overflows");
        let mut out = [0u8; 4];
        assert!(mem.read(4, &mut out));
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(!mem.read(6, &mut out));
        assert_eq!(out, [1, 2, 3, 4], "a refused read copies nothing");
        assert_eq!(backing, [0, 0, 0, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn read_only_bytes_refuse_writes() {
        let bytes = [7u8; 4];
        let mem: &[u8] = &bytes;
        assert!(!mem.write(0, &[1]));
        let mut out = [0u8; 2];
        assert!(mem.read(2, &mut out));
        assert_eq!(out, [7, 7]);
        assert_eq!(Memory::len(&mem), 4);
    }

    #[test]
    fn a_refcell_page_is_borrowed_per_copy() {
        let page = RefCell::new([0u8; 16]);
        assert!(page.write(0, &[5; 16]));
        let mut out = [0u8; 16];
        assert!(page.read(0, &mut out));
        assert_eq!(out, [5; 16]);
        assert!(page.try_borrow_mut().is_ok(), "no borrow outlives a copy");
        assert!(!page.read(1, &mut out));
    }
}
