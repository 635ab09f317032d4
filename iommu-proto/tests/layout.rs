//! Every wire struct against Linux's layout, numbers written by hand from
//! include/uapi/linux/iommufd.h and vfio.h (field by field: u32 = 4,
//! __aligned_u64 = 8 at an 8-aligned offset).

use core::mem::{align_of, offset_of, size_of};

use iommu_proto::fault::*;
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{Op, Request};

/// Asserts size, alignment and each field's offset.
macro_rules! layout {
    ($t:ty, size $size:expr, align $align:expr, { $($field:ident: $off:expr),* $(,)? }) => {
        assert_eq!(size_of::<$t>(), $size, "sizeof({})", stringify!($t));
        assert_eq!(align_of::<$t>(), $align, "alignof({})", stringify!($t));
        $(assert_eq!(
            offset_of!($t, $field), $off,
            "offsetof({}, {})", stringify!($t), stringify!($field)
        );)*
    };
}

#[test]
fn iommufd_structs_match_linux() {
    layout!(iommu_destroy, size 8, align 4, { size: 0, id: 4 });
    layout!(iommu_ioas_alloc, size 12, align 4, { size: 0, flags: 4, out_ioas_id: 8 });
    layout!(iommu_iova_range, size 16, align 8, { start: 0, last: 8 });
    layout!(iommu_ioas_iova_ranges, size 32, align 8, {
        size: 0, ioas_id: 4, num_iovas: 8, reserved: 12, allowed_iovas: 16,
        out_iova_alignment: 24,
    });
    layout!(iommu_ioas_allow_iovas, size 24, align 8, {
        size: 0, ioas_id: 4, num_iovas: 8, reserved: 12, allowed_iovas: 16,
    });
    layout!(iommu_ioas_map, size 40, align 8, {
        size: 0, flags: 4, ioas_id: 8, reserved: 12, user_va: 16, length: 24, iova: 32,
    });
    layout!(iommu_ioas_copy, size 40, align 8, {
        size: 0, flags: 4, dst_ioas_id: 8, src_ioas_id: 12, length: 16, dst_iova: 24,
        src_iova: 32,
    });
    layout!(iommu_ioas_unmap, size 24, align 8, { size: 0, ioas_id: 4, iova: 8, length: 16 });
    layout!(iommu_option, size 24, align 8, {
        size: 0, option_id: 4, op: 8, reserved: 10, object_id: 12, val64: 16,
    });
    layout!(iommu_vfio_ioas, size 12, align 4, { size: 0, ioas_id: 4, op: 8, reserved: 10 });
    layout!(iommu_hwpt_alloc, size 48, align 8, {
        size: 0, flags: 4, dev_id: 8, pt_id: 12, out_hwpt_id: 16, reserved: 20,
        data_type: 24, data_len: 28, data_uptr: 32, fault_id: 40, reserved2: 44,
    });
    layout!(iommu_hw_info, size 40, align 8, {
        size: 0, flags: 4, dev_id: 8, data_len: 12, data_uptr: 16, out_data_type: 24,
        out_max_pasid_log2: 28, reserved: 29, out_capabilities: 32,
    });
    layout!(iommu_hw_info_arm_smmuv3, size 40, align 4, {
        flags: 0, reserved: 4, idr: 8, iidr: 32, aidr: 36,
    });
}

#[test]
fn vfio_structs_match_linux() {
    layout!(vfio_info_cap_header, size 8, align 4, { id: 0, version: 2, next: 4 });
    layout!(vfio_iommu_type1_info, size 24, align 8, {
        argsz: 0, flags: 4, iova_pgsizes: 8, cap_offset: 16, pad: 20,
    });
    layout!(vfio_iova_range, size 16, align 8, { start: 0, end: 8 });
    layout!(vfio_iommu_type1_info_cap_iova_range, size 16, align 8, {
        header: 0, nr_iovas: 8, reserved: 12, iova_ranges: 16,
    });
    layout!(vfio_iommu_type1_info_dma_avail, size 12, align 4, { header: 0, avail: 8 });
    layout!(vfio_iommu_type1_dma_map, size 32, align 8, {
        argsz: 0, flags: 4, vaddr: 8, iova: 16, size: 24,
    });
    layout!(vfio_iommu_type1_dma_unmap, size 24, align 8, {
        argsz: 0, flags: 4, iova: 8, size: 16, data: 24,
    });
    layout!(vfio_device_bind_iommufd, size 24, align 8, {
        argsz: 0, flags: 4, iommufd: 8, out_devid: 12, token_uuid_ptr: 16,
    });
    layout!(vfio_device_attach_iommufd_pt, size 16, align 4, {
        argsz: 0, flags: 4, pt_id: 8, pasid: 12,
    });
    layout!(vfio_device_detach_iommufd_pt, size 12, align 4, { argsz: 0, flags: 4, pasid: 8 });
}

#[test]
fn fault_record_layout_is_fixed() {
    // This project's own layout: pinned so clients and server never drift.
    // The storm fields extend it; a 48-byte caller is still served (its
    // minimum ends at `overflow`) and sees STORMING in `out_flags`.
    layout!(iommu_fault_record, size 64, align 8, {
        size: 0, flags: 4, out_flags: 8, dev_id: 12, dev_index: 16, kind: 20, iova: 24,
        access: 32, reserved: 36, overflow: 40, silenced: 48, storm_dropped: 56,
    });
}

/// Linux's `minsz` per op: iommufd's IOCTL_OP table (drivers/iommu/iommufd/
/// main.c) and the `offsetofend` in each VFIO handler (vfio_compat.c,
/// device_cdev.c).
#[test]
fn minimum_sizes_match_linux() {
    let expected: [(Op, usize); 18] = [
        (Op::Destroy, 8),                    // id
        (Op::IoasAlloc, 12),                 // out_ioas_id
        (Op::IoasAllowIovas, 24),            // allowed_iovas
        (Op::IoasCopy, 40),                  // src_iova
        (Op::IoasIovaRanges, 32),            // out_iova_alignment
        (Op::IoasMap, 40),                   // iova
        (Op::IoasUnmap, 24),                 // length
        (Op::Option, 24),                    // val64
        (Op::VfioIoas, 12),                  // __reserved
        (Op::HwptAlloc, 24),                 // __reserved
        (Op::GetHwInfo, 32),                 // __reserved
        (Op::VfioIommuGetInfo, 16),          // iova_pgsizes
        (Op::VfioIommuMapDma, 32),           // size
        (Op::VfioIommuUnmapDma, 24),         // size
        (Op::VfioDeviceBindIommufd, 16),     // out_devid
        (Op::VfioDeviceAttachIommufdPt, 12), // pt_id
        (Op::VfioDeviceDetachIommufdPt, 8),  // flags
        (Op::FaultRead, 48),                 // overflow (ours)
    ];
    for (op, min) in expected {
        assert_eq!(op.min_size(), min, "{}", op.name());
        assert!(op.min_size() <= op.struct_size(), "{}", op.name());
    }
    for op in [
        Op::VfioGetApiVersion,
        Op::VfioCheckExtension,
        Op::VfioSetIommu,
    ] {
        assert_eq!((op.min_size(), op.struct_size()), (0, 0), "{}", op.name());
    }
}

/// Each struct's `Request::OP` names the op whose table entry is that struct.
#[test]
fn request_types_agree_with_the_op_table() {
    fn check<T: Request>() {
        assert_eq!(T::OP.min_size(), T::MIN_SIZE, "{}", T::OP.name());
        assert_eq!(T::OP.struct_size(), size_of::<T>(), "{}", T::OP.name());
    }
    check::<iommu_destroy>();
    check::<iommu_ioas_alloc>();
    check::<iommu_ioas_allow_iovas>();
    check::<iommu_ioas_copy>();
    check::<iommu_ioas_iova_ranges>();
    check::<iommu_ioas_map>();
    check::<iommu_ioas_unmap>();
    check::<iommu_option>();
    check::<iommu_vfio_ioas>();
    check::<iommu_hwpt_alloc>();
    check::<iommu_hw_info>();
    check::<vfio_iommu_type1_info>();
    check::<vfio_iommu_type1_dma_map>();
    check::<vfio_iommu_type1_dma_unmap>();
    check::<vfio_device_bind_iommufd>();
    check::<vfio_device_attach_iommufd_pt>();
    check::<vfio_device_detach_iommufd_pt>();
    check::<iommu_fault_record>();
}

#[test]
fn constants_match_linux() {
    // iommufd.h
    assert_eq!(
        [
            IOMMU_IOAS_MAP_FIXED_IOVA,
            IOMMU_IOAS_MAP_WRITEABLE,
            IOMMU_IOAS_MAP_READABLE
        ],
        [1, 2, 4]
    );
    assert_eq!([IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_HUGE_PAGES], [0, 1]);
    assert_eq!([IOMMU_OPTION_OP_SET, IOMMU_OPTION_OP_GET], [0, 1]);
    assert_eq!(
        [
            IOMMU_VFIO_IOAS_GET,
            IOMMU_VFIO_IOAS_SET,
            IOMMU_VFIO_IOAS_CLEAR
        ],
        [0, 1, 2]
    );
    assert_eq!(
        [
            IOMMU_HWPT_ALLOC_NEST_PARENT,
            IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
            IOMMU_HWPT_FAULT_ID_VALID,
            IOMMU_HWPT_ALLOC_PASID
        ],
        [1, 2, 4, 8]
    );
    assert_eq!(
        [
            IOMMU_HWPT_DATA_NONE,
            IOMMU_HWPT_DATA_VTD_S1,
            IOMMU_HWPT_DATA_ARM_SMMUV3
        ],
        [0, 1, 2]
    );
    assert_eq!(
        [
            IOMMU_HW_INFO_TYPE_NONE,
            IOMMU_HW_INFO_TYPE_DEFAULT,
            IOMMU_HW_INFO_TYPE_INTEL_VTD,
            IOMMU_HW_INFO_TYPE_ARM_SMMUV3,
            IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV
        ],
        [0, 0, 1, 2, 3]
    );
    assert_eq!(IOMMU_HW_INFO_FLAG_INPUT_TYPE, 1);
    assert_eq!(
        [
            IOMMU_HW_CAP_DIRTY_TRACKING,
            IOMMU_HW_CAP_PCI_PASID_EXEC,
            IOMMU_HW_CAP_PCI_PASID_PRIV
        ],
        [1, 2, 4]
    );

    // vfio.h
    assert_eq!(VFIO_API_VERSION, 0);
    assert_eq!(
        [
            VFIO_TYPE1_IOMMU,
            VFIO_SPAPR_TCE_IOMMU,
            VFIO_TYPE1v2_IOMMU,
            VFIO_DMA_CC_IOMMU,
            VFIO_EEH,
            VFIO_TYPE1_NESTING_IOMMU,
            VFIO_SPAPR_TCE_v2_IOMMU,
            VFIO_NOIOMMU_IOMMU,
            VFIO_UNMAP_ALL,
            VFIO_UPDATE_VADDR
        ],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    );
    assert_eq!([VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_INFO_CAPS], [1, 2]);
    assert_eq!(
        [
            VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
            VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
            VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
        ],
        [1, 2, 3]
    );
    assert_eq!(
        [
            VFIO_DMA_MAP_FLAG_READ,
            VFIO_DMA_MAP_FLAG_WRITE,
            VFIO_DMA_MAP_FLAG_VADDR
        ],
        [1, 2, 4]
    );
    assert_eq!(
        [
            VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
            VFIO_DMA_UNMAP_FLAG_ALL,
            VFIO_DMA_UNMAP_FLAG_VADDR
        ],
        [1, 2, 4]
    );
    assert_eq!(
        [
            VFIO_DEVICE_BIND_FLAG_TOKEN,
            VFIO_DEVICE_ATTACH_PASID,
            VFIO_DEVICE_DETACH_PASID
        ],
        [1, 1, 1]
    );
}
