//! The iommufd structs and constants of `include/uapi/linux/iommufd.h`.
//!
//! Every struct starts with `size` and follows iommufd's extensibility
//! rules ([`Framing::Size`](crate::Framing::Size)). Pointer fields
//! (`allowed_iovas`, `data_uptr`) are client virtual addresses that must lie
//! inside the caller's command page ([`decode::array_range`]).
//!
//! [`decode::array_range`]: crate::decode::array_range

#![allow(non_camel_case_types)]

use core::mem::align_of;

wire_struct! {
    /// IOMMU_DESTROY: destroy any object of the caller's.
    pub struct iommu_destroy {
        /// sizeof(struct iommu_destroy).
        pub size: u32,
        /// The object to destroy.
        pub id: u32,
    }
}

wire_struct! {
    /// IOMMU_IOAS_ALLOC.
    pub struct iommu_ioas_alloc {
        /// sizeof(struct iommu_ioas_alloc).
        pub size: u32,
        /// Must be 0.
        pub flags: u32,
        /// Output: the new IOAS.
        pub out_ioas_id: u32,
    }
}

wire_struct! {
    /// An inclusive interval of IOVA, the element of `allowed_iovas` arrays.
    pub struct iommu_iova_range {
        /// First IOVA.
        pub start: u64,
        /// Inclusive last IOVA.
        pub last: u64,
    }
}

wire_struct! {
    /// IOMMU_IOAS_IOVA_RANGES: the usable IOVA ranges of an IOAS.
    pub struct iommu_ioas_iova_ranges {
        /// sizeof(struct iommu_ioas_iova_ranges).
        pub size: u32,
        /// The IOAS to read.
        pub ioas_id: u32,
        /// In: capacity of `allowed_iovas`; out: ranges there are
        /// (EMSGSIZE when more than the capacity).
        pub num_iovas: u32,
        /// Must be 0.
        pub reserved: u32,
        /// Client VA of an `iommu_iova_range` array in the command page.
        pub allowed_iovas: u64,
        /// Output: the alignment every IOVA and length must have.
        pub out_iova_alignment: u64,
    }
}

wire_struct! {
    /// IOMMU_IOAS_ALLOW_IOVAS: replace the ranges automatic IOVA may use.
    pub struct iommu_ioas_allow_iovas {
        /// sizeof(struct iommu_ioas_allow_iovas).
        pub size: u32,
        /// The IOAS to change.
        pub ioas_id: u32,
        /// Number of ranges in `allowed_iovas`.
        pub num_iovas: u32,
        /// Must be 0.
        pub reserved: u32,
        /// Client VA of an `iommu_iova_range` array in the command page.
        pub allowed_iovas: u64,
    }
}

/// Map or copy at the given `iova` instead of choosing one.
pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
/// Devices may write the mapping.
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
/// Devices may read the mapping.
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

wire_struct! {
    /// IOMMU_IOAS_MAP: map the caller's own memory into an IOAS.
    pub struct iommu_ioas_map {
        /// sizeof(struct iommu_ioas_map).
        pub size: u32,
        /// `IOMMU_IOAS_MAP_*`.
        pub flags: u32,
        /// The IOAS to map into.
        pub ioas_id: u32,
        /// Must be 0.
        pub reserved: u32,
        /// The caller's virtual address of the memory to map.
        pub user_va: u64,
        /// Bytes to map.
        pub length: u64,
        /// In with FIXED_IOVA, else out: where the mapping is.
        pub iova: u64,
    }
}

wire_struct! {
    /// IOMMU_IOAS_COPY: map an existing mapping of one IOAS into another.
    pub struct iommu_ioas_copy {
        /// sizeof(struct iommu_ioas_copy).
        pub size: u32,
        /// `IOMMU_IOAS_MAP_*`.
        pub flags: u32,
        /// The IOAS to map into.
        pub dst_ioas_id: u32,
        /// The IOAS to copy from.
        pub src_ioas_id: u32,
        /// Bytes to copy.
        pub length: u64,
        /// In with FIXED_IOVA, else out: where the copy is.
        pub dst_iova: u64,
        /// Start of the source range.
        pub src_iova: u64,
    }
}

wire_struct! {
    /// IOMMU_IOAS_UNMAP: unmap whole mappings; (0, u64::MAX) unmaps all.
    pub struct iommu_ioas_unmap {
        /// sizeof(struct iommu_ioas_unmap).
        pub size: u32,
        /// The IOAS to unmap from.
        pub ioas_id: u32,
        /// Start of the range.
        pub iova: u64,
        /// In: bytes to unmap; out: bytes unmapped.
        pub length: u64,
    }
}

/// Option: the accounting mode. Here it selects nothing the server
/// does not already do per client (the quota); the value is still checked.
pub const IOMMU_OPTION_RLIMIT_MODE: u32 = 0;
/// Option: whether an IOAS may combine pages into huge mappings.
pub const IOMMU_OPTION_HUGE_PAGES: u32 = 1;
/// Option op: set `val64`.
pub const IOMMU_OPTION_OP_SET: u16 = 0;
/// Option op: read into `val64`.
pub const IOMMU_OPTION_OP_GET: u16 = 1;

wire_struct! {
    /// IOMMU_OPTION: get or set a simple option.
    pub struct iommu_option {
        /// sizeof(struct iommu_option).
        pub size: u32,
        /// `IOMMU_OPTION_*`.
        pub option_id: u32,
        /// `IOMMU_OPTION_OP_*`.
        pub op: u16,
        /// Must be 0.
        pub reserved: u16,
        /// The IOAS for HUGE_PAGES; 0 for RLIMIT_MODE.
        pub object_id: u32,
        /// The value set, or the value read.
        pub val64: u64,
    }
}

/// VFIO_IOAS op: return the compatibility IOAS.
pub const IOMMU_VFIO_IOAS_GET: u16 = 0;
/// VFIO_IOAS op: make `ioas_id` the compatibility IOAS.
pub const IOMMU_VFIO_IOAS_SET: u16 = 1;
/// VFIO_IOAS op: forget the compatibility IOAS (destroys nothing).
pub const IOMMU_VFIO_IOAS_CLEAR: u16 = 2;

wire_struct! {
    /// IOMMU_VFIO_IOAS: select the IOAS the VFIO type1 ops act on.
    pub struct iommu_vfio_ioas {
        /// sizeof(struct iommu_vfio_ioas).
        pub size: u32,
        /// In for SET, out for GET.
        pub ioas_id: u32,
        /// `IOMMU_VFIO_IOAS_*`.
        pub op: u16,
        /// Must be 0.
        pub reserved: u16,
    }
}

/// HWPT flag: a nesting parent.
pub const IOMMU_HWPT_ALLOC_NEST_PARENT: u32 = 1 << 0;
/// HWPT flag: dirty tracking enforced on attach.
pub const IOMMU_HWPT_ALLOC_DIRTY_TRACKING: u32 = 1 << 1;
/// HWPT flag: `fault_id` is valid.
pub const IOMMU_HWPT_FAULT_ID_VALID: u32 = 1 << 2;
/// HWPT flag: usable with PASIDs.
pub const IOMMU_HWPT_ALLOC_PASID: u32 = 1 << 3;

/// HWPT data type: a kernel-managed (here: server-managed) page table.
pub const IOMMU_HWPT_DATA_NONE: u32 = 0;
/// HWPT data type: Intel VT-d stage 1.
pub const IOMMU_HWPT_DATA_VTD_S1: u32 = 1;
/// HWPT data type: ARM SMMUv3 nested STE.
pub const IOMMU_HWPT_DATA_ARM_SMMUV3: u32 = 2;

wire_struct! {
    /// IOMMU_HWPT_ALLOC: allocate a hardware page table for a device over an
    /// IOAS. Fields after `reserved` were added later and read as zero when a
    /// shorter struct is passed.
    pub struct iommu_hwpt_alloc {
        /// sizeof(struct iommu_hwpt_alloc).
        pub size: u32,
        /// `IOMMU_HWPT_ALLOC_*`.
        pub flags: u32,
        /// The device the HWPT must suit.
        pub dev_id: u32,
        /// The IOAS whose mappings the HWPT mirrors.
        pub pt_id: u32,
        /// Output: the new HWPT.
        pub out_hwpt_id: u32,
        /// Must be 0.
        pub reserved: u32,
        /// `IOMMU_HWPT_DATA_*`.
        pub data_type: u32,
        /// Length of the type-specific data.
        pub data_len: u32,
        /// Client VA of the type-specific data.
        pub data_uptr: u64,
        /// The fault object, when IOMMU_HWPT_FAULT_ID_VALID.
        pub fault_id: u32,
        /// Must be 0.
        pub reserved2: u32,
    }
}

/// HW info type: no type-specific data.
pub const IOMMU_HW_INFO_TYPE_NONE: u32 = 0;
/// HW info type requested: whatever the IOMMU reports by default.
pub const IOMMU_HW_INFO_TYPE_DEFAULT: u32 = 0;
/// HW info type: Intel VT-d.
pub const IOMMU_HW_INFO_TYPE_INTEL_VTD: u32 = 1;
/// HW info type: ARM SMMUv3, data is [`iommu_hw_info_arm_smmuv3`].
pub const IOMMU_HW_INFO_TYPE_ARM_SMMUV3: u32 = 2;
/// HW info type: NVIDIA Tegra241 CMDQV.
pub const IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV: u32 = 3;

/// HW info flag: `in_data_type` requests a specific type.
pub const IOMMU_HW_INFO_FLAG_INPUT_TYPE: u32 = 1 << 0;

/// HW capability: dirty tracking.
pub const IOMMU_HW_CAP_DIRTY_TRACKING: u64 = 1 << 0;
/// HW capability: PCI PASID execute permission.
pub const IOMMU_HW_CAP_PCI_PASID_EXEC: u64 = 1 << 1;
/// HW capability: PCI PASID privileged mode.
pub const IOMMU_HW_CAP_PCI_PASID_PRIV: u64 = 1 << 2;

wire_struct! {
    /// IOMMU_GET_HW_INFO: the IOMMU behind a device, with type-specific data
    /// written to `data_uptr`.
    pub struct iommu_hw_info {
        /// sizeof(struct iommu_hw_info).
        pub size: u32,
        /// `IOMMU_HW_INFO_FLAG_*`.
        pub flags: u32,
        /// The device whose IOMMU to describe.
        pub dev_id: u32,
        /// In: room at `data_uptr`; out: length of the data the IOMMU has.
        pub data_len: u32,
        /// Client VA of the buffer for the type-specific data.
        pub data_uptr: u64,
        /// Out: `IOMMU_HW_INFO_TYPE_*` of the data. Linux declares this as a
        /// union with `in_data_type` ([`Self::in_data_type`]).
        pub out_data_type: u32,
        /// Out: PASID width, 0 for none.
        pub out_max_pasid_log2: u8,
        /// Must be 0.
        pub reserved: [u8; 3],
        /// Out: `IOMMU_HW_CAP_*`.
        pub out_capabilities: u64,
    }
}

impl iommu_hw_info {
    /// The requested type, valid with IOMMU_HW_INFO_FLAG_INPUT_TYPE: Linux's
    /// union member sharing `out_data_type`'s four bytes.
    pub const fn in_data_type(&self) -> u32 {
        self.out_data_type
    }
}

wire_struct! {
    /// The SMMUv3 ID registers, the data of IOMMU_HW_INFO_TYPE_ARM_SMMUV3.
    pub struct iommu_hw_info_arm_smmuv3 {
        /// Must be 0.
        pub flags: u32,
        /// Must be 0.
        pub reserved: u32,
        /// SMMU_IDR0..SMMU_IDR5.
        pub idr: [u32; 6],
        /// SMMU_IIDR.
        pub iidr: u32,
        /// SMMU_AIDR.
        pub aidr: u32,
    }
}

// The C structs with a `__aligned_u64` are 8-aligned on every ABI; the
// #[repr(C)] ones must be too, or an array of them would be laid out
// differently.
const _: () = {
    assert!(align_of::<iommu_iova_range>() == 8);
    assert!(align_of::<iommu_ioas_iova_ranges>() == 8);
    assert!(align_of::<iommu_ioas_allow_iovas>() == 8);
    assert!(align_of::<iommu_ioas_map>() == 8);
    assert!(align_of::<iommu_ioas_copy>() == 8);
    assert!(align_of::<iommu_ioas_unmap>() == 8);
    assert!(align_of::<iommu_option>() == 8);
    assert!(align_of::<iommu_hwpt_alloc>() == 8);
    assert!(align_of::<iommu_hw_info>() == 8);
};
