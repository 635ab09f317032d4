//! The VFIO type1 container and device-cdev structs and constants of
//! `include/uapi/linux/vfio.h`.
//!
//! Every struct starts with `argsz` and follows VFIO's rules
//! ([`Framing::Argsz`](crate::Framing::Argsz)): shorter than the minimum is
//! EINVAL, bytes beyond what the server knows are ignored. Linux's VFIO
//! answers an unknown flag with EINVAL, not iommufd's EOPNOTSUPP.

#![allow(non_camel_case_types, non_upper_case_globals)]

use core::mem::align_of;

/// The answer of VFIO_GET_API_VERSION.
pub const VFIO_API_VERSION: u64 = 0;

// Extensions, as VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU take them in MR0.
/// Type1 IOMMU: unmaps may split mappings (the server disables huge pages).
pub const VFIO_TYPE1_IOMMU: u64 = 1;
/// SPAPR TCE IOMMU (POWER); never supported here.
pub const VFIO_SPAPR_TCE_IOMMU: u64 = 2;
/// Type1v2 IOMMU: unmaps cover whole mappings.
pub const VFIO_TYPE1v2_IOMMU: u64 = 3;
/// The IOMMU enforces DMA cache coherence.
pub const VFIO_DMA_CC_IOMMU: u64 = 4;
/// EEH (POWER); never supported here.
pub const VFIO_EEH: u64 = 5;
/// Obsolete two-stage type1; always answered 0. Linux now spells it
/// `__VFIO_RESERVED_TYPE1_NESTING_IOMMU`.
pub const VFIO_TYPE1_NESTING_IOMMU: u64 = 6;
/// SPAPR TCE v2 IOMMU (POWER); never supported here.
pub const VFIO_SPAPR_TCE_v2_IOMMU: u64 = 7;
/// No-IOMMU mode; never supported here.
pub const VFIO_NOIOMMU_IOMMU: u64 = 8;
/// VFIO_DMA_UNMAP_FLAG_ALL is supported.
pub const VFIO_UNMAP_ALL: u64 = 9;
/// The VADDR map/unmap flags are supported (never, as in iommufd).
pub const VFIO_UPDATE_VADDR: u64 = 10;

wire_struct! {
    /// Header of every capability in an INFO capability chain.
    pub struct vfio_info_cap_header {
        /// Capability ID, per INFO ioctl.
        pub id: u16,
        /// Version of that capability's layout.
        pub version: u16,
        /// Offset of the next capability from the start of the INFO struct,
        /// 0 at the end of the chain.
        pub next: u32,
    }
}

/// `iova_pgsizes` is valid.
pub const VFIO_IOMMU_INFO_PGSIZES: u32 = 1 << 0;
/// `cap_offset` is valid (0 when `argsz` was too small for the chain).
pub const VFIO_IOMMU_INFO_CAPS: u32 = 1 << 1;

wire_struct! {
    /// VFIO_IOMMU_GET_INFO: page sizes and a capability chain written after
    /// this struct, inside the `argsz` bytes the caller passed. `cap_offset`
    /// and each header's `next` count from the start of this struct, which
    /// is the start of the command page.
    pub struct vfio_iommu_type1_info {
        /// In: bytes available; out: bytes needed for the whole chain.
        pub argsz: u32,
        /// Out: `VFIO_IOMMU_INFO_*`.
        pub flags: u32,
        /// Out: bitmap of supported page sizes.
        pub iova_pgsizes: u64,
        /// Out: offset of the first capability, 0 when it did not fit.
        pub cap_offset: u32,
        /// Padding.
        pub pad: u32,
    }
}

/// Capability ID: the valid IOVA ranges.
pub const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;
/// Capability ID: dirty-page migration support (never reported here).
pub const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION: u16 = 2;
/// Capability ID: how many more DMA mappings are allowed.
pub const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL: u16 = 3;

wire_struct! {
    /// An inclusive IOVA range of the IOVA_RANGE capability.
    pub struct vfio_iova_range {
        /// First IOVA.
        pub start: u64,
        /// Inclusive last IOVA.
        pub end: u64,
    }
}

wire_struct! {
    /// The IOVA_RANGE capability (version 1): `nr_iovas` ranges follow.
    pub struct vfio_iommu_type1_info_cap_iova_range {
        /// id VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version 1.
        pub header: vfio_info_cap_header,
        /// Number of ranges that follow.
        pub nr_iovas: u32,
        /// Must be 0.
        pub reserved: u32,
        /// Linux's flexible array member: zero-sized, it only places and
        /// aligns the ranges as C does.
        pub iova_ranges: [vfio_iova_range; 0],
    }
}

wire_struct! {
    /// The DMA_AVAIL capability (version 1).
    pub struct vfio_iommu_type1_info_dma_avail {
        /// id VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version 1.
        pub header: vfio_info_cap_header,
        /// How many more mappings may be made.
        pub avail: u32,
    }
}

/// Devices may read the mapping.
pub const VFIO_DMA_MAP_FLAG_READ: u32 = 1 << 0;
/// Devices may write the mapping.
pub const VFIO_DMA_MAP_FLAG_WRITE: u32 = 1 << 1;
/// Update the vaddr of an existing mapping (unsupported, as in iommufd).
pub const VFIO_DMA_MAP_FLAG_VADDR: u32 = 1 << 2;

wire_struct! {
    /// VFIO_IOMMU_MAP_DMA: map the caller's memory at a fixed IOVA of the
    /// compatibility IOAS.
    pub struct vfio_iommu_type1_dma_map {
        /// sizeof(struct vfio_iommu_type1_dma_map) or more.
        pub argsz: u32,
        /// `VFIO_DMA_MAP_FLAG_*`.
        pub flags: u32,
        /// The caller's virtual address of the memory.
        pub vaddr: u64,
        /// Where to map it.
        pub iova: u64,
        /// Bytes to map.
        pub size: u64,
    }
}

/// Return a dirty bitmap while unmapping. Unsupported, as in iommufd, so
/// EINVAL like any unknown flag; the VFIO_IOMMU_DIRTY_PAGES op is ENOTTY.
pub const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: u32 = 1 << 0;
/// Unmap everything; `iova` and `size` must be 0.
pub const VFIO_DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;
/// Invalidate vaddrs instead of unmapping (unsupported, as in iommufd).
pub const VFIO_DMA_UNMAP_FLAG_VADDR: u32 = 1 << 2;

wire_struct! {
    /// VFIO_IOMMU_UNMAP_DMA.
    pub struct vfio_iommu_type1_dma_unmap {
        /// sizeof(struct vfio_iommu_type1_dma_unmap) or more.
        pub argsz: u32,
        /// `VFIO_DMA_UNMAP_FLAG_*`.
        pub flags: u32,
        /// Start of the range.
        pub iova: u64,
        /// In: bytes to unmap; out: bytes unmapped.
        pub size: u64,
        /// Linux's flexible array member for the dirty bitmap: zero-sized.
        pub data: [u8; 0],
    }
}

/// Bind with a VF token at `token_uuid_ptr`.
pub const VFIO_DEVICE_BIND_FLAG_TOKEN: u32 = 1 << 0;

wire_struct! {
    /// VFIO_DEVICE_BIND_IOMMUFD: make one of the caller's configured devices
    /// an object. The device is named in MR1 ([`DeviceArg::ConfigIndex`]).
    ///
    /// [`DeviceArg::ConfigIndex`]: crate::DeviceArg::ConfigIndex
    pub struct vfio_device_bind_iommufd {
        /// sizeof(struct vfio_device_bind_iommufd) or more.
        pub argsz: u32,
        /// `VFIO_DEVICE_BIND_*`.
        pub flags: u32,
        /// Linux's iommufd file descriptor. The context here is the calling
        /// client, so it names nothing; Linux rejects a negative one.
        pub iommufd: i32,
        /// Out: the device object ID.
        pub out_devid: u32,
        /// Client VA of a 16-byte UUID, with VFIO_DEVICE_BIND_FLAG_TOKEN.
        pub token_uuid_ptr: u64,
    }
}

/// Attach a PASID of the device rather than the device.
pub const VFIO_DEVICE_ATTACH_PASID: u32 = 1 << 0;

wire_struct! {
    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach the device named in MR1
    /// ([`DeviceArg::ObjectId`]) to an IOAS or a HWPT.
    ///
    /// [`DeviceArg::ObjectId`]: crate::DeviceArg::ObjectId
    pub struct vfio_device_attach_iommufd_pt {
        /// sizeof(struct vfio_device_attach_iommufd_pt) or more.
        pub argsz: u32,
        /// `VFIO_DEVICE_ATTACH_*`.
        pub flags: u32,
        /// In: an IOAS or a HWPT; out: the HWPT the device is attached to.
        pub pt_id: u32,
        /// The PASID, with VFIO_DEVICE_ATTACH_PASID.
        pub pasid: u32,
    }
}

/// Detach a PASID of the device rather than the device.
pub const VFIO_DEVICE_DETACH_PASID: u32 = 1 << 0;

wire_struct! {
    /// VFIO_DEVICE_DETACH_IOMMUFD_PT: detach the device named in MR1
    /// ([`DeviceArg::ObjectId`]).
    ///
    /// [`DeviceArg::ObjectId`]: crate::DeviceArg::ObjectId
    pub struct vfio_device_detach_iommufd_pt {
        /// sizeof(struct vfio_device_detach_iommufd_pt) or more.
        pub argsz: u32,
        /// `VFIO_DEVICE_DETACH_*`.
        pub flags: u32,
        /// The PASID, with VFIO_DEVICE_DETACH_PASID.
        pub pasid: u32,
    }
}

// Alignment as C gives it: 8 wherever a u64 (or an array of them) is a
// member, so capability structs land where Linux puts them.
const _: () = {
    assert!(align_of::<vfio_iommu_type1_info>() == 8);
    assert!(align_of::<vfio_iova_range>() == 8);
    assert!(align_of::<vfio_iommu_type1_info_cap_iova_range>() == 8);
    assert!(align_of::<vfio_iommu_type1_dma_map>() == 8);
    assert!(align_of::<vfio_iommu_type1_dma_unmap>() == 8);
    assert!(align_of::<vfio_device_bind_iommufd>() == 8);
};
