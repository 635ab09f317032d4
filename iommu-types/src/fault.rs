//! DMA faults: what the hardware reports, and the kinds and access bits
//! a client reads back in its fault record.

use crate::StreamId;

/// A DMA fault as the hardware reported it, before the server attributes
/// it to the client owning the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub stream: StreamId,
    /// The SMMUv3 event type (`IOMMU_FAULT_KIND_*`).
    pub kind: u32,
    /// The faulting IOVA, when the event carries one.
    pub iova: Option<u64>,
    /// `IOMMU_FAULT_ACCESS_*` bits.
    pub access: u32,
}

/// The faulting transaction read (same bit as IOMMU_PGFAULT_PERM_READ).
pub const IOMMU_FAULT_ACCESS_READ: u32 = 1 << 0;
/// The faulting transaction wrote.
pub const IOMMU_FAULT_ACCESS_WRITE: u32 = 1 << 1;
/// It was an instruction fetch.
pub const IOMMU_FAULT_ACCESS_EXEC: u32 = 1 << 2;
/// It was privileged.
pub const IOMMU_FAULT_ACCESS_PRIV: u32 = 1 << 3;

// Fault kinds: the SMMUv3 event type numbers (IHI 0070, 7.3), since that is
// the only IOMMU this server drives and GET_HW_INFO already says so.
/// F_UUT: unsupported upstream transaction.
pub const IOMMU_FAULT_KIND_F_UUT: u32 = 0x01;
/// C_BAD_STREAMID: the stream is outside the stream table.
pub const IOMMU_FAULT_KIND_C_BAD_STREAMID: u32 = 0x02;
/// F_STE_FETCH: external abort fetching the stream table entry.
pub const IOMMU_FAULT_KIND_F_STE_FETCH: u32 = 0x03;
/// C_BAD_STE: malformed stream table entry.
pub const IOMMU_FAULT_KIND_C_BAD_STE: u32 = 0x04;
/// F_BAD_ATS_TREQ: ATS translation request not allowed.
pub const IOMMU_FAULT_KIND_F_BAD_ATS_TREQ: u32 = 0x05;
/// F_STREAM_DISABLED: the stream is disabled (not attached).
pub const IOMMU_FAULT_KIND_F_STREAM_DISABLED: u32 = 0x06;
/// F_TRANSL_FORBIDDEN: untranslated access while translation is forbidden.
pub const IOMMU_FAULT_KIND_F_TRANSL_FORBIDDEN: u32 = 0x07;
/// C_BAD_SUBSTREAMID: bad substream ID.
pub const IOMMU_FAULT_KIND_C_BAD_SUBSTREAMID: u32 = 0x08;
/// F_CD_FETCH: external abort fetching the context descriptor.
pub const IOMMU_FAULT_KIND_F_CD_FETCH: u32 = 0x09;
/// C_BAD_CD: malformed context descriptor.
pub const IOMMU_FAULT_KIND_C_BAD_CD: u32 = 0x0a;
/// F_WALK_EABT: external abort during the page-table walk.
pub const IOMMU_FAULT_KIND_F_WALK_EABT: u32 = 0x0b;
/// F_TRANSLATION: nothing mapped at the IOVA.
pub const IOMMU_FAULT_KIND_F_TRANSLATION: u32 = 0x10;
/// F_ADDR_SIZE: address beyond the configured size.
pub const IOMMU_FAULT_KIND_F_ADDR_SIZE: u32 = 0x11;
/// F_ACCESS: access flag fault.
pub const IOMMU_FAULT_KIND_F_ACCESS: u32 = 0x12;
/// F_PERMISSION: the mapping does not permit the access (e.g. write to a
/// read-only mapping).
pub const IOMMU_FAULT_KIND_F_PERMISSION: u32 = 0x13;
/// F_TLB_CONFLICT: TLB conflict.
pub const IOMMU_FAULT_KIND_F_TLB_CONFLICT: u32 = 0x20;
/// F_CFG_CONFLICT: configuration cache conflict.
pub const IOMMU_FAULT_KIND_F_CFG_CONFLICT: u32 = 0x21;

/// The SMMUv3 name of a fault kind, for logs.
pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        IOMMU_FAULT_KIND_F_UUT => "F_UUT",
        IOMMU_FAULT_KIND_C_BAD_STREAMID => "C_BAD_STREAMID",
        IOMMU_FAULT_KIND_F_STE_FETCH => "F_STE_FETCH",
        IOMMU_FAULT_KIND_C_BAD_STE => "C_BAD_STE",
        IOMMU_FAULT_KIND_F_BAD_ATS_TREQ => "F_BAD_ATS_TREQ",
        IOMMU_FAULT_KIND_F_STREAM_DISABLED => "F_STREAM_DISABLED",
        IOMMU_FAULT_KIND_F_TRANSL_FORBIDDEN => "F_TRANSL_FORBIDDEN",
        IOMMU_FAULT_KIND_C_BAD_SUBSTREAMID => "C_BAD_SUBSTREAMID",
        IOMMU_FAULT_KIND_F_CD_FETCH => "F_CD_FETCH",
        IOMMU_FAULT_KIND_C_BAD_CD => "C_BAD_CD",
        IOMMU_FAULT_KIND_F_WALK_EABT => "F_WALK_EABT",
        IOMMU_FAULT_KIND_F_TRANSLATION => "F_TRANSLATION",
        IOMMU_FAULT_KIND_F_ADDR_SIZE => "F_ADDR_SIZE",
        IOMMU_FAULT_KIND_F_ACCESS => "F_ACCESS",
        IOMMU_FAULT_KIND_F_PERMISSION => "F_PERMISSION",
        IOMMU_FAULT_KIND_F_TLB_CONFLICT => "F_TLB_CONFLICT",
        IOMMU_FAULT_KIND_F_CFG_CONFLICT => "F_CFG_CONFLICT",
        _ => "unknown event",
    }
}
