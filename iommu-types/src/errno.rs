//! Linux errno values, the only error currency of the server.
//!
//! The numbers are Linux's (asm-generic/errno-base.h, errno.h) so that a
//! client ported from iommufd or VFIO sees exactly the codes it expects.

use core::fmt;

/// A Linux-compatible error number. The discriminant is the stable wire value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Errno {
    /// Operation not permitted (more access than the backing allows).
    EPERM = 1,
    /// No such mapping or object.
    ENOENT = 2,
    /// I/O error: the IOMMU did not confirm an invalidation (an unmap's
    /// pages may still be reachable, so they stay mapped).
    EIO = 5,
    /// Argument list too long (unknown non-zero trailing bytes).
    E2BIG = 7,
    /// Out of a bounded resource (pool, table, quota).
    ENOMEM = 12,
    /// Bad address (outside the caller's memory).
    EFAULT = 14,
    /// Object still in use.
    EBUSY = 16,
    /// Already exists (IOVA already mapped, domain already attached).
    EEXIST = 17,
    /// No such device (or no compat IOAS).
    ENODEV = 19,
    /// Invalid argument.
    EINVAL = 22,
    /// Inappropriate operation number.
    ENOTTY = 25,
    /// No free IOVA space.
    ENOSPC = 28,
    /// Arithmetic on the request would wrap.
    EOVERFLOW = 75,
    /// Output array too small; the needed count was reported.
    EMSGSIZE = 90,
    /// Unknown flag or non-zero reserved field.
    EOPNOTSUPP = 95,
    /// Range collides with mappings, reserved or allowed ranges.
    EADDRINUSE = 98,
}

impl Errno {
    /// Every errno this project can produce, for exhaustive tests.
    pub const ALL: [Errno; 16] = [
        Errno::EPERM,
        Errno::ENOENT,
        Errno::EIO,
        Errno::E2BIG,
        Errno::ENOMEM,
        Errno::EFAULT,
        Errno::EBUSY,
        Errno::EEXIST,
        Errno::ENODEV,
        Errno::EINVAL,
        Errno::ENOTTY,
        Errno::ENOSPC,
        Errno::EOVERFLOW,
        Errno::EMSGSIZE,
        Errno::EOPNOTSUPP,
        Errno::EADDRINUSE,
    ];

    /// The positive errno value as Linux numbers it.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// Decodes a wire value; `None` for a number this project never sends.
    pub fn from_code(code: u64) -> Option<Errno> {
        Self::ALL
            .iter()
            .copied()
            .find(|e| u64::from(e.code()) == code)
    }

    /// The symbolic name, as in errno.h.
    pub const fn name(self) -> &'static str {
        match self {
            Errno::EPERM => "EPERM",
            Errno::ENOENT => "ENOENT",
            Errno::EIO => "EIO",
            Errno::E2BIG => "E2BIG",
            Errno::ENOMEM => "ENOMEM",
            Errno::EFAULT => "EFAULT",
            Errno::EBUSY => "EBUSY",
            Errno::EEXIST => "EEXIST",
            Errno::ENODEV => "ENODEV",
            Errno::EINVAL => "EINVAL",
            Errno::ENOTTY => "ENOTTY",
            Errno::ENOSPC => "ENOSPC",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::EMSGSIZE => "EMSGSIZE",
            Errno::EOPNOTSUPP => "EOPNOTSUPP",
            Errno::EADDRINUSE => "EADDRINUSE",
        }
    }
}

impl Errno {
    /// What the server means by it, in a few words (the variants' docs).
    pub const fn meaning(self) -> &'static str {
        match self {
            Errno::EPERM => "operation not permitted",
            Errno::ENOENT => "no such mapping or object",
            Errno::EIO => "the IOMMU did not confirm an invalidation",
            Errno::E2BIG => "argument too long (unknown non-zero trailing bytes)",
            Errno::ENOMEM => "out of a bounded resource (pool, table, quota)",
            Errno::EFAULT => "bad address (outside the caller's memory or its rights)",
            Errno::EBUSY => "object still in use",
            Errno::EEXIST => "already exists",
            Errno::ENODEV => "no such device",
            Errno::EINVAL => "invalid argument",
            Errno::ENOTTY => "inappropriate operation",
            Errno::ENOSPC => "no free IOVA space",
            Errno::EOVERFLOW => "arithmetic on the request would wrap",
            Errno::EMSGSIZE => "output array too small",
            Errno::EOPNOTSUPP => "unknown flag or non-zero reserved field",
            Errno::EADDRINUSE => "range collides with mappings or reserved ranges",
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// Result type of every fallible operation in the server and the engine.
pub type Result<T> = core::result::Result<T, Errno>;
