//! `iommu-proto`: the IPC protocol between the IOMMU server and its clients.
//!
//! One request is one Microkit protected procedure call:
//!
//! - the message label is the operation number ([`Op::label`]), Linux's
//!   ioctl `_IOC_NR` wherever Linux has the operation;
//! - MR0 ([`MR_SIZE`]) is the size of the request struct, which the client
//!   has written at offset 0 of its command page (a page shared only by that
//!   client and the server). The scalar VFIO ops carry their integer argument
//!   in MR0 instead and use no struct ([`Framing::Scalar`]);
//! - the device ops name their device in MR1 ([`MR_DEVICE`], [`DeviceArg`]),
//!   because Linux issues them on a device file descriptor and there is none;
//! - the server copies the struct out of the page before validating anything
//!   ([`decode`]), executes, writes the output fields back and replies with
//!   label 0 or a positive [`Errno`], plus a value in MR0 ([`MR_VALUE`]) for
//!   the ops that return one ([`Op::returns_value`]).
//!
//! The structs are laid out exactly like Linux's `include/uapi/linux/iommufd.h`
//! and `vfio.h` (field names, offsets, sizes; `tests/layout.rs` asserts every
//! one), so code written against iommufd or VFIO ports by changing only the
//! transport. `__reserved` is spelled `reserved`, `__aligned_u64` is `u64`.
//! The one struct of this project's own is [`iommu_fault_record`].

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, missing_docs)]

/// `offsetofend(T, field)`: the end of a field, Linux's way of stating the
/// minimum size of an extensible struct.
macro_rules! offset_of_end {
    ($t:ty, $field:ident) => {{
        const fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
            core::mem::size_of::<F>()
        }
        core::mem::offset_of!($t, $field) + field_size(|s: &$t| &s.$field)
    }};
}

/// A wire struct: `#[repr(C)]` plain old data with no padding (the
/// `IntoBytes` derive refuses padding at compile time), described to C by
/// [`c::CStruct`] from the same declaration.
macro_rules! wire_struct {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(
            Clone,
            Copy,
            Debug,
            Default,
            PartialEq,
            Eq,
            zerocopy::FromBytes,
            zerocopy::IntoBytes,
            zerocopy::KnownLayout,
            zerocopy::Immutable,
        )]
        pub struct $name { $($body)* }

        wire_struct!(@c $name { $($body)* });
    };
    (@c $name:ident { $( $(#[$fmeta:meta])* pub $field:ident : $fty:ty ),* $(,)? }) => {
        impl $crate::c::CType for $name {
            const NAME: &'static str = concat!("struct ", stringify!($name));
        }

        impl $crate::c::CStruct for $name {
            const NAME: &'static str = stringify!($name);
            const SIZE: usize = core::mem::size_of::<$name>();
            const FIELDS: &'static [$crate::c::CField] = &[$(
                $crate::c::CField {
                    name: stringify!($field),
                    ty: <$fty as $crate::c::CType>::NAME,
                    len: <$fty as $crate::c::CType>::LEN,
                    offset: core::mem::offset_of!($name, $field),
                }
            ),*];
        }
    };
}

pub mod c;
pub mod decode;
pub mod dump;
pub mod fault;
pub mod iommufd;
pub mod op;
mod transport;
pub mod vfio;

pub use fault::iommu_fault_record;
pub use iommu_types::{Errno, Result};
pub use op::{
    DeviceArg, Framing, Op, Request, IOMMUFD_CMD_BASE, IOMMU_QUARANTINE_STATIC, MR_DEVICE, MR_SIZE,
    MR_VALUE, PRIVATE_LABEL_BASE, VFIO_BASE,
};
pub use transport::Transport;
