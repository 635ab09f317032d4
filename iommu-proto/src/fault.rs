//! The fault record of FAULT read: this project's own layout.
//!
//! Linux has no struct for this: its `iommu_hwpt_pgfault` describes PRI page
//! requests a handler may resolve, while the faults here are unrecoverable
//! DMA faults the hardware already aborted. The record carries only what the
//! client may see: its own names for the device, never the stream ID or a
//! physical address.

#![allow(non_camel_case_types)]

use core::mem::align_of;

/// `out_flags`: a fault was dequeued into this record. Clear when the queue
/// was empty; `overflow` is valid either way.
pub const IOMMU_FAULT_RECORD_VALID: u32 = 1 << 0;
/// `out_flags`: `iova` and `access` are valid (translation faults carry
/// them, configuration errors do not).
pub const IOMMU_FAULT_RECORD_ADDR_VALID: u32 = 1 << 1;
/// `out_flags`: the IOMMU's own event queue overflowed since the previous
/// read, so records of this client's devices may have been lost (how many
/// is unknown; every client owning a stream is told).
pub const IOMMU_FAULT_RECORD_LOST: u32 = 1 << 2;
/// `out_flags`: since the previous read the server stopped (put back to
/// abort, detached) streams of this client's devices because the IOMMU did
/// not confirm an invalidation, or, when one would not stop, stopped all
/// DMA. A map, copy or unmap of the caller that saw this was EIO.
pub const IOMMU_FAULT_RECORD_STOPPED: u32 = 1 << 3;
/// `out_flags`: some of this client's devices are not recording faults
/// (`silenced`): one of them faulted more than the server's budget in one
/// interrupt, and its further records are dropped (`storm_dropped`) and
/// stopped in the IOMMU until the client drains its queue and asks for
/// them again (IOMMU_FAULT_RESUME).
pub const IOMMU_FAULT_RECORD_STORMING: u32 = 1 << 4;

/// Records of one device the server queues per interrupt; the next one
/// makes the device storming (`IOMMU_FAULT_RECORD_STORMING`).
pub const IOMMU_FAULT_STORM_BUDGET: u32 = 16;

pub use iommu_types::fault::*;

wire_struct! {
    /// FAULT read: dequeue the caller's oldest DMA fault into this record.
    /// Size-prefixed like an iommufd struct; the reply's MR0 is how many
    /// faults remain queued.
    pub struct iommu_fault_record {
        /// sizeof(struct iommu_fault_record).
        pub size: u32,
        /// Must be 0 (EOPNOTSUPP otherwise).
        pub flags: u32,
        /// Out: `IOMMU_FAULT_RECORD_*`.
        pub out_flags: u32,
        /// Out: the device's object ID in the caller's table, 0 when the
        /// device is not bound.
        pub dev_id: u32,
        /// Out: the device's index in the caller's static configuration,
        /// the name BIND takes, valid whether or not it is bound.
        pub dev_index: u32,
        /// Out: `IOMMU_FAULT_KIND_*`, the SMMUv3 event type.
        pub kind: u32,
        /// Out: the faulting IOVA, with IOMMU_FAULT_RECORD_ADDR_VALID.
        pub iova: u64,
        /// Out: `IOMMU_FAULT_ACCESS_*`, with IOMMU_FAULT_RECORD_ADDR_VALID.
        pub access: u32,
        /// Must be 0.
        pub reserved: u32,
        /// Out: faults dropped because the queue was full since the previous
        /// FAULT read; this read resets it.
        pub overflow: u64,
        /// Out: bit i set when device i (configuration index) records no
        /// faults now: it stormed, or shares the IOMMU's recording switch
        /// with a device that did (an SMMUv3 context: its HWPT).
        pub silenced: u64,
        /// Out: records of this client's storming devices dropped since the
        /// previous FAULT read; this read resets it.
        pub storm_dropped: u64,
    }
}

const _: () = assert!(align_of::<iommu_fault_record>() == 8);
