//! Storage handed back for reuse. The engine and the server borrow their
//! pools for `'static` (as from a PD's statics); a test makes them from
//! the heap, and a [`Lent`] value gives them back to a per-thread spare
//! list when dropped, where the next fixture of the same shape finds them.
//! Memory is then bounded by what one test holds at once, not by how many
//! cases a property test runs.

use std::any::Any;
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

thread_local! {
    static SPARE: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A slice of `n` copies of `fill`: a spare one of that length if the
/// thread has one, else a new one.
pub fn slice<T: Clone + 'static>(n: usize, fill: T) -> &'static mut [T] {
    slice_with(n, || fill.clone())
}

/// A slice of `n` values made by `make`, as [`slice()`].
pub fn slice_with<T: 'static>(n: usize, make: impl Fn() -> T) -> &'static mut [T] {
    let spare = SPARE.with(|s| {
        let mut s = s.borrow_mut();
        let at = s.iter().position(|b| {
            b.downcast_ref::<&'static mut [T]>()
                .is_some_and(|x| x.len() == n)
        })?;
        s.swap_remove(at).downcast::<&'static mut [T]>().ok()
    });
    match spare {
        Some(slice) => {
            let slice = *slice;
            slice.iter_mut().for_each(|x| *x = make());
            slice
        }
        None => Box::leak(
            (0..n)
                .map(|_| make())
                .collect::<Vec<T>>()
                .into_boxed_slice(),
        ),
    }
}

/// Gives a slice from [`slice()`] back.
pub fn give_back<T: 'static>(slice: &'static mut [T]) {
    SPARE.with(|s| s.borrow_mut().push(Box::new(slice)));
}

/// A value whose storage goes back to the spare list.
pub trait GiveBack {
    fn give_back(self);
}

/// `T`, lent for the life of a fixture: derefs to it, gives its storage
/// back when dropped.
pub struct Lent<T: GiveBack>(pub(crate) Option<T>);

impl<T: GiveBack> Lent<T> {
    pub fn new(value: T) -> Lent<T> {
        Lent(Some(value))
    }
}

impl<T: GiveBack> Deref for Lent<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("lent until dropped")
    }
}

impl<T: GiveBack> DerefMut for Lent<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_mut().expect("lent until dropped")
    }
}

impl<T: GiveBack> Drop for Lent<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            value.give_back();
        }
    }
}

impl<T: GiveBack + std::fmt::Debug> std::fmt::Debug for Lent<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl GiveBack for iopt::Store<'static> {
    fn give_back(self) {
        let (areas, pages, accounts) = self.into_parts();
        give_back(areas);
        give_back(pages);
        give_back(accounts);
    }
}

impl<H: iopt::Hardware> GiveBack for iommu_server::Server<'static, H> {
    fn give_back(self) {
        let (store, ioases, _, clients, configs) = self.into_parts();
        store.give_back();
        give_back(ioases);
        give_back(clients);
        give_back(configs);
    }
}

impl GiveBack for hw::pgtable::TablePool<'static> {
    fn give_back(self) {
        give_back(self.into_memory().into_parts().0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_come_back_for_the_next_fixture() {
        let a = slice(7, 1u32);
        let addr = a.as_ptr();
        a[0] = 5;
        give_back(a);
        let b = slice(7, 2u32);
        assert_eq!(b.as_ptr(), addr, "reused");
        assert!(b.iter().all(|&x| x == 2), "refilled");
        let c = slice(8, 2u32);
        assert_ne!(c.as_ptr(), addr, "other lengths are not");
    }
}
