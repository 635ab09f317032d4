//! Memory devices reach by DMA.

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

    /// Host memory no device can reach, labelled with physical address
    /// `pa` (8-byte aligned, else `None`): for tests of the code that
    /// builds device structures. Only on hosted targets, where nothing in
    /// this project can point a device at memory, so the label cannot be
    /// wrong in any way that matters.
    #[cfg(not(target_os = "none"))]
    pub fn host(buf: &'static mut [u64], pa: u64) -> Option<DmaRegion> {
        if !pa.is_multiple_of(8) {
            return None;
        }
        let len = core::mem::size_of_val(buf);
        // SAFETY: the exclusive 'static borrow moves into the region, so
        // nothing else can reach the memory; u64 slices are 8-byte aligned;
        // no device exists on a hosted target (see above).
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
        crate::cache::clean_dcache(self.va, self.len);
    }

    /// Makes what a non-coherent device wrote to `count` words from `word`
    /// visible to the CPU's next reads.
    pub fn invalidate_words(&self, word: usize, count: usize) {
        let Some(end) = word.checked_add(count).filter(|&e| e <= self.words()) else {
            debug_assert!(false, "invalidate of words {word}+{count} outside region");
            return;
        };
        crate::cache::invalidate_dcache(self.va + word * 8, (end - word) * 8);
    }

    /// Makes CPU writes to `count` words from `word` visible to a
    /// non-coherent device.
    pub fn clean_words(&self, word: usize, count: usize) {
        let Some(end) = word.checked_add(count).filter(|&e| e <= self.words()) else {
            debug_assert!(false, "clean of words {word}+{count} outside region");
            return;
        };
        crate::cache::clean_dcache(self.va + word * 8, (end - word) * 8);
    }
}

/// Memory a device reads by DMA that the CPU writes as ordinary memory
/// (page tables): a slice and the physical address the device sees it at.
/// Holding one is the claim that the address is right, so the only way to
/// make one on the target is [`DmaMemory::new`], which is `unsafe`.
#[derive(Debug)]
pub struct DmaMemory<'a, T> {
    mem: &'a mut [T],
    pa: u64,
}

impl<'a, T> DmaMemory<'a, T> {
    /// # Safety
    /// `mem` must be backed by physically contiguous memory starting at
    /// `pa`, used by nothing else (besides the device it is handed to)
    /// while it lives, and either reached coherently by that device or
    /// cleaned by its user before the device reads it.
    pub const unsafe fn new(mem: &'a mut [T], pa: u64) -> DmaMemory<'a, T> {
        DmaMemory { mem, pa }
    }

    /// Host memory no device can reach, labelled with physical address
    /// `pa`: for tests of the code that builds device structures. Only on
    /// hosted targets, where nothing in this project can point a device
    /// at memory.
    #[cfg(not(target_os = "none"))]
    pub fn host(mem: &'a mut [T], pa: u64) -> DmaMemory<'a, T> {
        DmaMemory { mem, pa }
    }

    /// The physical address of the first element.
    pub fn pa(&self) -> u64 {
        self.pa
    }

    /// The first `len` elements (all of them if fewer): the promise holds
    /// for any prefix.
    pub fn truncate(self, len: usize) -> DmaMemory<'a, T> {
        let len = len.min(self.mem.len());
        DmaMemory {
            mem: &mut self.mem[..len],
            pa: self.pa,
        }
    }

    /// The memory and its physical address.
    pub fn into_parts(self) -> (&'a mut [T], u64) {
        (self.mem, self.pa)
    }
}

impl<T> core::ops::Deref for DmaMemory<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.mem
    }
}

impl<T> core::ops::DerefMut for DmaMemory<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(words: usize, pa: u64) -> DmaRegion {
        DmaRegion::host(Box::leak(vec![0u64; words].into_boxed_slice()), pa).unwrap()
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
            DmaRegion::host(odd, 0x1004).is_none(),
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
