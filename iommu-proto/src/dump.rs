//! The state dump of DUMP: this project's own operation, for a manager to
//! read the server's state as text (Linux keeps such state in debugfs).

#![allow(non_camel_case_types)]

use core::mem::align_of;

/// `target`: the server as a whole rather than one client.
pub const IOMMU_DUMP_SERVER: u32 = u32::MAX;

wire_struct! {
    /// DUMP: bytes `[offset, offset + length)` of a text report on one
    /// client or on the server, written at `data_uptr` in the command page.
    /// A manager reads a long report in pieces, moving `offset` on by the
    /// bytes written until it reaches `out_total`.
    pub struct iommu_dump {
        /// sizeof(struct iommu_dump).
        pub size: u32,
        /// The client's index in the configuration, or IOMMU_DUMP_SERVER.
        pub target: u32,
        /// In: room at `data_uptr`; out: bytes written.
        pub length: u32,
        /// Must be 0.
        pub reserved: u32,
        /// The report's byte to start at: a file position, so EINVAL when
        /// `offset + length` exceeds i64::MAX (Linux's loff_t); past the
        /// report's end nothing is written.
        pub offset: u64,
        /// Client VA of the buffer, in the command page.
        pub data_uptr: u64,
        /// Out: the whole report's length.
        pub out_total: u64,
    }
}

const _: () = assert!(align_of::<iommu_dump>() == 8);
