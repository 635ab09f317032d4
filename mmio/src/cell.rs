//! Statics handed out once: the one home of the pattern every image and
//! PD needs for state that outlives its entry point, with no heap.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

const EMPTY: u8 = 0;
const FULL: u8 = 1;
const TAKEN: u8 = 2;

/// A static handed out once as `&'static mut`. Either built empty
/// ([`new`](Self::new)) and filled at run time ([`init`](Self::init)), or
/// built full at compile time ([`with`](Self::with), so a large value
/// lives in `.data`/`.bss` and never passes through the stack) and claimed
/// at run time ([`take`](Self::take)).
pub struct StaticCell<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is reachable only through the single `&mut` that
// `init` or `take` returns, after an atomic claim.
unsafe impl<T: Send> Sync for StaticCell<T> {}

impl<T> StaticCell<T> {
    /// An empty cell, for [`init`](Self::init).
    pub const fn new() -> StaticCell<T> {
        StaticCell {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// A cell holding `value` from the start, for [`take`](Self::take).
    pub const fn with(value: T) -> StaticCell<T> {
        StaticCell {
            state: AtomicU8::new(FULL),
            value: UnsafeCell::new(MaybeUninit::new(value)),
        }
    }

    fn claim(&self, from: u8) -> bool {
        self.state
            .compare_exchange(from, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Stores `value` in an empty cell and returns it, the first time;
    /// `None` after, or for a cell built full.
    // The atomic claim makes the `&mut` unique, as in the static_cell crate.
    #[allow(clippy::mut_from_ref)]
    pub fn init(&'static self, value: T) -> Option<&'static mut T> {
        if !self.claim(EMPTY) {
            return None;
        }
        // SAFETY: the claim above lets exactly one caller here, so this is
        // the only reference to the value, for the rest of the program.
        Some(unsafe { (*self.value.get()).write(value) })
    }

    /// The value of a cell built full, the first time; `None` after, or
    /// for a cell built empty.
    #[allow(clippy::mut_from_ref)]
    pub fn take(&'static self) -> Option<&'static mut T> {
        if !self.claim(FULL) {
            return None;
        }
        // SAFETY: a full cell was initialised by `with`, and the claim lets
        // exactly one caller here, so this is the only reference to it.
        Some(unsafe { (*self.value.get()).assume_init_mut() })
    }
}

impl<T> core::fmt::Debug for StaticCell<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let state = match self.state.load(Ordering::Acquire) {
            EMPTY => "empty",
            FULL => "full",
            _ => "taken",
        };
        f.debug_struct("StaticCell").field("state", &state).finish()
    }
}

impl<T> Default for StaticCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_cells_are_filled_once() {
        static CELL: StaticCell<u32> = StaticCell::new();
        assert!(CELL.take().is_none(), "nothing to take yet");
        let v = CELL.init(7).unwrap();
        *v += 1;
        assert_eq!(*v, 8);
        assert!(CELL.init(9).is_none());
        assert!(CELL.take().is_none());
    }

    #[test]
    fn full_cells_are_taken_once() {
        static CELL: StaticCell<[u64; 4]> = StaticCell::with([1, 2, 3, 4]);
        assert!(CELL.init([0; 4]).is_none(), "already full");
        let v = CELL.take().unwrap();
        v[0] = 9;
        assert_eq!(*v, [9, 2, 3, 4]);
        assert!(CELL.take().is_none());
    }
}
