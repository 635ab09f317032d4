//! Statics handed out once: the one home of the pattern every image and
//! PD needs for state that outlives its entry point, with no heap.
//!
//! Two kinds, because a cell's unclaimed state must be all zero bytes: a
//! static whose value is zeros (or uninitialised) then lands in `.bss` and
//! costs the image nothing. [`StaticCell`] starts empty and is filled at
//! run time; [`ConstStaticCell`] is built full at compile time, so a large
//! value never passes through the stack.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

/// One atomic claim: false (zero) until the first `claim`.
struct Claim(AtomicBool);

impl Claim {
    const fn new() -> Claim {
        Claim(AtomicBool::new(false))
    }

    fn claim(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    fn claimed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A static built empty and filled once at run time ([`init`](Self::init)),
/// which hands it out as `&'static mut`.
pub struct StaticCell<T> {
    claim: Claim,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is reachable only through the single `&mut` that
// `init` returns, after an atomic claim.
unsafe impl<T: Send> Sync for StaticCell<T> {}

impl<T> StaticCell<T> {
    pub const fn new() -> StaticCell<T> {
        StaticCell {
            claim: Claim::new(),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `value` and returns it, the first time; `None` after.
    // The atomic claim makes the `&mut` unique, as in the static_cell crate.
    #[allow(clippy::mut_from_ref)]
    pub fn init(&'static self, value: T) -> Option<&'static mut T> {
        if !self.claim.claim() {
            return None;
        }
        // SAFETY: the claim above lets exactly one caller here, so this is
        // the only reference to the value, for the rest of the program.
        Some(unsafe { (*self.value.get()).write(value) })
    }
}

impl<T> Default for StaticCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> core::fmt::Debug for StaticCell<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StaticCell")
            .field("filled", &self.claim.claimed())
            .finish()
    }
}

/// A static holding its value from compile time, handed out once as
/// `&'static mut` ([`take`](Self::take)).
pub struct ConstStaticCell<T> {
    claim: Claim,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reachable only through the single `&mut` that
// `take` returns, after an atomic claim.
unsafe impl<T: Send> Sync for ConstStaticCell<T> {}

impl<T> ConstStaticCell<T> {
    pub const fn new(value: T) -> ConstStaticCell<T> {
        ConstStaticCell {
            claim: Claim::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// The value, the first time; `None` after.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut T> {
        if !self.claim.claim() {
            return None;
        }
        // SAFETY: the claim lets exactly one caller here, so this is the
        // only reference to the value, for the rest of the program.
        Some(unsafe { &mut *self.value.get() })
    }
}

impl<T> core::fmt::Debug for ConstStaticCell<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConstStaticCell")
            .field("taken", &self.claim.claimed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cells_are_filled_once() {
        static CELL: StaticCell<u32> = StaticCell::new();
        let v = CELL.init(7).unwrap();
        *v += 1;
        assert_eq!(*v, 8);
        assert!(CELL.init(9).is_none());
    }

    #[test]
    fn full_cells_are_taken_once() {
        static CELL: ConstStaticCell<[u64; 4]> = ConstStaticCell::new([1, 2, 3, 4]);
        let v = CELL.take().unwrap();
        v[0] = 9;
        assert_eq!(*v, [9, 2, 3, 4]);
        assert!(CELL.take().is_none());
    }
}
