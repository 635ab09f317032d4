//! Operation labels: Linux's ioctl numbers, unique, round-tripping.

use std::collections::HashSet;

use iommu_proto::{DeviceArg, Framing, Op, IOMMUFD_CMD_BASE, PRIVATE_LABEL_BASE, VFIO_BASE};

#[test]
fn labels_round_trip() {
    for op in Op::ALL {
        assert_eq!(Op::from_label(op.label()), Some(op), "{}", op.name());
    }
}

#[test]
fn labels_and_names_are_unique() {
    let labels: HashSet<u64> = Op::ALL.iter().map(|op| op.label()).collect();
    let names: HashSet<&str> = Op::ALL.iter().map(|op| op.name()).collect();
    assert_eq!(labels.len(), Op::ALL.len());
    assert_eq!(names.len(), Op::ALL.len());
}

#[test]
fn all_is_in_label_order() {
    assert!(Op::ALL.windows(2).all(|w| w[0].label() < w[1].label()));
}

/// The ioctl numbers of iommufd.h's command enum and vfio.h's
/// `VFIO_BASE + n` definitions.
#[test]
fn labels_are_linux_ioctl_numbers() {
    let iommufd = [
        Op::Destroy,
        Op::IoasAlloc,
        Op::IoasAllowIovas,
        Op::IoasCopy,
        Op::IoasIovaRanges,
        Op::IoasMap,
        Op::IoasUnmap,
        Op::Option,
        Op::VfioIoas,
        Op::HwptAlloc,
        Op::GetHwInfo,
    ];
    for (i, op) in iommufd.iter().enumerate() {
        assert_eq!(op.label(), IOMMUFD_CMD_BASE + i as u64, "{}", op.name());
    }
    assert_eq!(Op::GetHwInfo.label(), 0x8a);
    let vfio = [
        (Op::VfioGetApiVersion, 0),
        (Op::VfioCheckExtension, 1),
        (Op::VfioSetIommu, 2),
        (Op::VfioIommuGetInfo, 12),
        (Op::VfioIommuMapDma, 13),
        (Op::VfioIommuUnmapDma, 14),
        (Op::VfioDeviceBindIommufd, 18),
        (Op::VfioDeviceAttachIommufdPt, 19),
        (Op::VfioDeviceDetachIommufdPt, 20),
    ];
    for (op, n) in vfio {
        assert_eq!(op.label(), VFIO_BASE + n, "{}", op.name());
    }
}

#[test]
fn fault_read_is_outside_every_linux_range() {
    let label = Op::FaultRead.label();
    assert!(label >= PRIVATE_LABEL_BASE);
    assert!(label > 0xff, "_IOC_NR is 8 bits");
}

#[test]
fn unknown_labels_are_none() {
    // VFIO_IOMMU_DIRTY_PAGES and the next iommufd commands are ENOTTY.
    for label in [
        0,
        VFIO_BASE + 17,
        0x8b,
        0x8c,
        0x8d,
        0x8e,
        0xff,
        0x105,
        u64::MAX,
    ] {
        assert_eq!(Op::from_label(label), None, "{label:#x}");
    }
    let known = Op::ALL.iter().filter(|op| op.label() <= 0x200).count();
    let found = (0..=0x200).filter_map(Op::from_label).count();
    assert_eq!(found, known);
}

#[test]
fn framing_per_op() {
    for op in Op::ALL {
        let expected = match op {
            Op::VfioGetApiVersion
            | Op::VfioCheckExtension
            | Op::VfioSetIommu
            | Op::ResetClient
            | Op::Quarantine
            | Op::FaultResume => Framing::Scalar,
            op if op.name().starts_with("VFIO_") => Framing::Argsz,
            _ => Framing::Size,
        };
        assert_eq!(op.framing(), expected, "{}", op.name());
        assert_eq!(op.framing() == Framing::Scalar, op.struct_size() == 0);
    }
}

#[test]
fn device_args_and_returned_values() {
    for op in Op::ALL {
        let device = match op {
            Op::VfioDeviceBindIommufd => DeviceArg::ConfigIndex,
            Op::VfioDeviceAttachIommufdPt | Op::VfioDeviceDetachIommufdPt => DeviceArg::ObjectId,
            _ => DeviceArg::None,
        };
        assert_eq!(op.device_arg(), device, "{}", op.name());
    }
    let returning: Vec<Op> = Op::ALL
        .into_iter()
        .filter(|op| op.returns_value())
        .collect();
    assert_eq!(
        returning,
        [Op::VfioGetApiVersion, Op::VfioCheckExtension, Op::FaultRead]
    );
}
