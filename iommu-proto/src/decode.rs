//! Copying requests out of and replies into a client's command page.
//!
//! The page is shared with the client, which may change it at any moment,
//! so the server copies the struct out once ([`copy_in`], [`copy_in_argsz`],
//! [`read_request`]) and validates only its copy, the size field included.
//! The struct sits at offset 0 of the page; `claimed_size` is the request's
//! MR0. The page is reached as [`Memory`], in byte ranges: a request
//! costs copies of what it names (its struct, the arrays it points at),
//! never of the whole page.
//!
//! Decisions beyond Linux, which trusts only the struct's own size field:
//! - MR0 and the struct's leading `size` / `argsz` field must agree, else
//!   EINVAL: two sizes that differ mean a confused or hostile client, and
//!   either choice would read bytes the other one did not mean.
//! - A size beyond the command page is EFAULT: those bytes are not memory
//!   the request may name, as with Linux's failing `copy_from_user`.
//! - Array pointers must point inside the command page ([`array_range`]),
//!   else EFAULT.

use core::mem::size_of;
use core::ops::Range;

use mmio::Memory;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::op::{Framing, Request};
use crate::{Errno, Result};

/// Every struct starts with a u32 `size` or `argsz`.
const SIZE_FIELD: usize = size_of::<u32>();

/// Copies an iommufd-style struct out of `page` under iommufd's rules:
///
/// - `claimed_size` below `min_size` (or below the size field): EINVAL;
/// - beyond the page: EFAULT;
/// - differing from the struct's `size` field: EINVAL;
/// - longer than `T` with a non-zero byte past `size_of::<T>()`: E2BIG
///   (zero bytes are accepted: a newer client's unused fields);
/// - shorter than `T`: the missing tail reads as zero.
pub fn copy_in<T: FromBytes + IntoBytes + Immutable>(
    page: &(impl Memory + ?Sized),
    claimed_size: u64,
    min_size: usize,
) -> Result<T> {
    let (value, len) = checked_copy(page, claimed_size, min_size)?;
    // The bytes past the struct, read once in chunks and never kept.
    let mut chunk = [0u8; 64];
    let mut at = size_of::<T>();
    while at < len {
        let n = (len - at).min(chunk.len());
        if !page.read(at, &mut chunk[..n]) {
            return Err(Errno::EFAULT);
        }
        if chunk[..n].iter().any(|&b| b != 0) {
            return Err(Errno::E2BIG);
        }
        at += n;
    }
    Ok(value)
}

/// Copies a VFIO-style struct out of `page` under VFIO's `argsz` rules: as
/// [`copy_in`] except that bytes beyond `size_of::<T>()` are ignored, as
/// VFIO ignores them (they may hold a GET_INFO capability buffer).
pub fn copy_in_argsz<T: FromBytes + IntoBytes + Immutable>(
    page: &(impl Memory + ?Sized),
    claimed_size: u64,
    min_size: usize,
) -> Result<T> {
    checked_copy(page, claimed_size, min_size).map(|(value, _)| value)
}

/// Copies `T`'s request out of `page` with the rules of its operation's
/// framing and its own minimum size.
pub fn read_request<T: Request>(page: &(impl Memory + ?Sized), claimed_size: u64) -> Result<T> {
    match T::OP.framing() {
        Framing::Size => copy_in(page, claimed_size, T::MIN_SIZE),
        Framing::Argsz => copy_in_argsz(page, claimed_size, T::MIN_SIZE),
        // No Request type belongs to a scalar op; refuse rather than guess.
        Framing::Scalar => Err(Errno::EINVAL),
    }
}

/// Writes `value` back over the request: only its first
/// min(`claimed_size`, `size_of::<T>()`) bytes, so a client that passed an
/// older, shorter struct gets nothing written past it (Linux's
/// `iommufd_ucmd_respond`, VFIO's `copy_to_user(arg, &info, minsz)`).
/// EFAULT if that does not fit in the page.
pub fn copy_out<T: IntoBytes + Immutable>(
    page: &(impl Memory + ?Sized),
    claimed_size: u64,
    value: &T,
) -> Result<()> {
    let bytes = value.as_bytes();
    let len = usize::try_from(claimed_size).map_or(bytes.len(), |c| c.min(bytes.len()));
    if !page.write(0, &bytes[..len]) {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

/// Where an array named by a pointer field lies in the command page.
///
/// `ptr` is the client's virtual address of the array, `page_va` the
/// client's virtual address of its command page, `count` elements of
/// `elem_size` bytes each. Returns the byte range inside the page, or EFAULT
/// when any byte would lie outside it or the arithmetic overflows. An empty
/// array is never dereferenced, as in Linux, so it is `0..0` whatever `ptr`
/// holds.
pub fn array_range(
    page_va: u64,
    page_len: usize,
    ptr: u64,
    count: u64,
    elem_size: usize,
) -> Result<Range<usize>> {
    let elem = u64::try_from(elem_size).map_err(|_| Errno::EFAULT)?;
    let len = count.checked_mul(elem).ok_or(Errno::EFAULT)?;
    if len == 0 {
        return Ok(0..0);
    }
    let start = ptr.checked_sub(page_va).ok_or(Errno::EFAULT)?;
    let end = start.checked_add(len).ok_or(Errno::EFAULT)?;
    let end = usize::try_from(end).map_err(|_| Errno::EFAULT)?;
    if end > page_len {
        return Err(Errno::EFAULT);
    }
    // start < end <= page_len, so it fits in usize too.
    let start = usize::try_from(start).map_err(|_| Errno::EFAULT)?;
    Ok(start..end)
}

/// Reads a `T` at `offset` of the page (an array element, a capability),
/// once, into the server's own copy: EFAULT when it does not fit. No
/// alignment is required.
pub fn read_at<T: FromBytes + IntoBytes>(
    page: &(impl Memory + ?Sized),
    offset: usize,
) -> Result<T> {
    let mut value = T::new_zeroed();
    if !page.read(offset, value.as_mut_bytes()) {
        return Err(Errno::EFAULT);
    }
    Ok(value)
}

/// Writes `value` at `offset` of the page: EFAULT when it does not fit.
pub fn write_at<T: IntoBytes + Immutable>(
    page: &(impl Memory + ?Sized),
    offset: usize,
    value: &T,
) -> Result<()> {
    if !page.write(offset, value.as_bytes()) {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

/// iommufd's unknown-flag rule: any bit outside `supported` is EOPNOTSUPP.
/// (VFIO structs answer EINVAL instead, as Linux's VFIO does.)
pub fn check_flags(flags: u32, supported: u32) -> Result<()> {
    if flags & !supported != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

/// iommufd's reserved-field rule: any non-zero byte is EOPNOTSUPP.
pub fn check_reserved<T: IntoBytes + Immutable + ?Sized>(field: &T) -> Result<()> {
    if field.as_bytes().iter().any(|&b| b != 0) {
        return Err(Errno::EOPNOTSUPP);
    }
    Ok(())
}

/// The copy and the checks every framing shares; returns the copy and the
/// claimed length in bytes. The size field is checked in the copy, not in
/// the page, which the client may rewrite at any moment.
fn checked_copy<T: FromBytes + IntoBytes + Immutable>(
    page: &(impl Memory + ?Sized),
    claimed_size: u64,
    min_size: usize,
) -> Result<(T, usize)> {
    const {
        assert!(
            size_of::<T>() >= SIZE_FIELD,
            "a request starts with its size"
        )
    };
    let min = min_size.max(SIZE_FIELD);
    if claimed_size < min as u64 {
        return Err(Errno::EINVAL);
    }
    let len = usize::try_from(claimed_size)
        .ok()
        .filter(|&len| len <= page.len())
        .ok_or(Errno::EFAULT)?;
    // The first `len` bytes as a `T`, zero past them.
    let mut value = T::new_zeroed();
    let dst = value.as_mut_bytes();
    let n = len.min(dst.len());
    if !page.read(0, &mut dst[..n]) {
        return Err(Errno::EFAULT);
    }
    let size_field = u32::from_ne_bytes([dst[0], dst[1], dst[2], dst[3]]);
    if u64::from(size_field) != claimed_size {
        return Err(Errno::EINVAL);
    }
    Ok((value, len))
}
