//! Operations: their labels and how each one's arguments travel.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::fault::iommu_fault_record;
use crate::iommufd::{
    iommu_destroy, iommu_hw_info, iommu_hwpt_alloc, iommu_ioas_alloc, iommu_ioas_allow_iovas,
    iommu_ioas_copy, iommu_ioas_iova_ranges, iommu_ioas_map, iommu_ioas_unmap, iommu_option,
    iommu_vfio_ioas,
};
use crate::vfio::{
    vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
    vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
};

/// Request message register: the request struct's size, or the integer
/// argument of a [`Framing::Scalar`] op.
pub const MR_SIZE: usize = 0;
/// Request message register naming the device of a device op ([`DeviceArg`]).
pub const MR_DEVICE: usize = 1;
/// Reply message register carrying the value of an op that returns one.
pub const MR_VALUE: usize = 0;

/// QUARANTINE's MR0 names a static IO address space (system.xml's
/// `<io_address_space>`, by its index among them) rather than a client.
pub const IOMMU_QUARANTINE_STATIC: u64 = 1 << 32;

/// `IOMMUFD_CMD_BASE`: iommufd's first ioctl number.
pub const IOMMUFD_CMD_BASE: u64 = 0x80;
/// `VFIO_BASE`: VFIO's first ioctl number.
pub const VFIO_BASE: u64 = 100;
/// First label of this project's own operations. `_IOC_NR` is 8 bits wide,
/// so no Linux ioctl number can ever reach it.
pub const PRIVATE_LABEL_BASE: u64 = 0x100;

/// Every operation the server understands. The discriminant is the label.
///
/// An operation has six parts, kept in step by `tests/op_parts.rs` (which
/// fails when one is missing) and `iommu-server/tests/ops.rs`:
/// 1. its variant here, in [`Op::ALL`] and [`Op::name`];
/// 2. its request struct (a [`Request`], in `with_request!`), or
///    [`Framing::Scalar`];
/// 3. its handler in the server's op table (`iommu-server/src/ucmd.rs`);
/// 4. a method of the Rust client (`pd-clients/iommu-client`);
/// 5. a function of the C client (`iommu_client.h`; the label and the
///    struct reach C through the generated `iommu_proto.h`);
/// 6. a test of each client (`tests/client.rs`, `tests/c/header_test.c`)
///    and of its semantics in the server's tests.
///
/// Any other label is ENOTTY, among them VFIO_IOMMU_DIRTY_PAGES
/// (`VFIO_BASE + 17`), which iommufd's VFIO compatibility does not implement
/// either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Op {
    /// IOMMU_DESTROY: destroy any object by ID.
    Destroy = 0x80,
    /// IOMMU_IOAS_ALLOC.
    IoasAlloc = 0x81,
    /// IOMMU_IOAS_ALLOW_IOVAS.
    IoasAllowIovas = 0x82,
    /// IOMMU_IOAS_COPY.
    IoasCopy = 0x83,
    /// IOMMU_IOAS_IOVA_RANGES.
    IoasIovaRanges = 0x84,
    /// IOMMU_IOAS_MAP.
    IoasMap = 0x85,
    /// IOMMU_IOAS_UNMAP.
    IoasUnmap = 0x86,
    /// IOMMU_OPTION (HUGE_PAGES per IOAS, RLIMIT_MODE).
    Option = 0x87,
    /// IOMMU_VFIO_IOAS: get, set or clear the VFIO compatibility IOAS.
    VfioIoas = 0x88,
    /// IOMMU_HWPT_ALLOC.
    HwptAlloc = 0x89,
    /// IOMMU_GET_HW_INFO: the SMMUv3 ID registers.
    GetHwInfo = 0x8a,
    /// VFIO_GET_API_VERSION: no argument, returns VFIO_API_VERSION in MR0.
    VfioGetApiVersion = 100,
    /// VFIO_CHECK_EXTENSION: the extension in MR0, returns 0 or 1 in MR0.
    VfioCheckExtension = 101,
    /// VFIO_SET_IOMMU: the IOMMU type in MR0.
    VfioSetIommu = 102,
    /// VFIO_IOMMU_GET_INFO (`VFIO_BASE + 12`).
    VfioIommuGetInfo = 112,
    /// VFIO_IOMMU_MAP_DMA (`VFIO_BASE + 13`).
    VfioIommuMapDma = 113,
    /// VFIO_IOMMU_UNMAP_DMA (`VFIO_BASE + 14`).
    VfioIommuUnmapDma = 114,
    /// VFIO_DEVICE_BIND_IOMMUFD (`VFIO_BASE + 18`).
    VfioDeviceBindIommufd = 118,
    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT (`VFIO_BASE + 19`): attach to an IOAS
    /// or a HWPT; `pt_id` returns the HWPT used.
    VfioDeviceAttachIommufdPt = 119,
    /// VFIO_DEVICE_DETACH_IOMMUFD_PT (`VFIO_BASE + 20`).
    VfioDeviceDetachIommufdPt = 120,
    /// Read one queued DMA fault. Linux has no ioctl for this (it reads a
    /// fault file descriptor), so it takes the first private label. Returns
    /// in MR0 how many faults are still queued after this one.
    FaultRead = 0x100,
    /// Revoke everything a client holds: its streams are quarantined, then
    /// its objects torn down. MR0 is the target's index in the server's
    /// configuration; only a manager may name another client, anyone may
    /// name itself (close). A scalar op: no struct.
    ResetClient = 0x101,
    /// Hold a client's devices in quarantine, or release them: MR0 is the
    /// target's index, MR1 1 to hold and 0 to release. Holding resets the
    /// target (as RESET_CLIENT) and, until a release, refuses (EPERM)
    /// every op of the target that could give a device a translation again:
    /// BIND, ATTACH, HWPT_ALLOC, IOAS_MAP, IOAS_COPY, VFIO MAP_DMA. Only a
    /// manager may call it. A scalar op. With [`IOMMU_QUARANTINE_STATIC`]
    /// in MR0 the target is a static IO address space (its index among
    /// them): holding aborts its stream, releasing points it at its domain
    /// again.
    Quarantine = 0x102,
    /// A text report on one client or the whole server (a manager only):
    /// see [`crate::dump::iommu_dump`].
    Dump = 0x103,
    /// Record the caller's device's DMA faults again after its records were
    /// stopped for storming (see `IOMMU_FAULT_RECORD_STORMING`): MR0 is the
    /// device's index in the caller's configuration. The caller's fault
    /// queue must be drained first (EBUSY otherwise). A scalar op.
    FaultResume = 0x104,
}

/// How an operation's argument travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// iommufd rules: the struct starts with `size`; a longer struct than
    /// the server knows must be zero beyond what it knows, else E2BIG.
    Size,
    /// VFIO rules: the struct starts with `argsz`; bytes beyond what the
    /// server knows are ignored, as VFIO ignores them.
    Argsz,
    /// No struct: MR0 is the integer argument Linux passes in place of a
    /// pointer, and the command page is neither read nor written.
    Scalar,
}

/// Which device a device op acts on, carried in MR1 ([`MR_DEVICE`]).
///
/// Linux issues these ioctls on the device's own file descriptor, which has
/// no counterpart here, and the Linux structs have no field for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceArg {
    /// The op names no device outside its struct; MR1 is ignored.
    None,
    /// MR1 is the device's index in the calling client's static
    /// configuration: before BIND there is no object to name it by.
    ConfigIndex,
    /// MR1 is the device object ID that BIND returned in `out_devid`.
    ObjectId,
}

/// A request struct: the operation it belongs to and its minimum size.
pub trait Request: FromBytes + IntoBytes + KnownLayout + Immutable {
    /// The operation this struct is the argument of.
    const OP: Op;
    /// Linux's `minsz`: the end of the last field every caller must pass.
    /// Shorter requests are EINVAL; fields beyond it read as zero when absent.
    const MIN_SIZE: usize;
}

/// Expands `$body` with `$T` bound to `$op`'s request struct, or evaluates
/// `$scalar` for the ops without one. The single op-to-struct table.
macro_rules! with_request {
    ($op:expr, |$T:ident| $body:expr, scalar => $scalar:expr) => {
        match $op {
            Op::Destroy => {
                type $T = iommu_destroy;
                $body
            }
            Op::IoasAlloc => {
                type $T = iommu_ioas_alloc;
                $body
            }
            Op::IoasAllowIovas => {
                type $T = iommu_ioas_allow_iovas;
                $body
            }
            Op::IoasCopy => {
                type $T = iommu_ioas_copy;
                $body
            }
            Op::IoasIovaRanges => {
                type $T = iommu_ioas_iova_ranges;
                $body
            }
            Op::IoasMap => {
                type $T = iommu_ioas_map;
                $body
            }
            Op::IoasUnmap => {
                type $T = iommu_ioas_unmap;
                $body
            }
            Op::Option => {
                type $T = iommu_option;
                $body
            }
            Op::VfioIoas => {
                type $T = iommu_vfio_ioas;
                $body
            }
            Op::HwptAlloc => {
                type $T = iommu_hwpt_alloc;
                $body
            }
            Op::GetHwInfo => {
                type $T = iommu_hw_info;
                $body
            }
            Op::VfioIommuGetInfo => {
                type $T = vfio_iommu_type1_info;
                $body
            }
            Op::VfioIommuMapDma => {
                type $T = vfio_iommu_type1_dma_map;
                $body
            }
            Op::VfioIommuUnmapDma => {
                type $T = vfio_iommu_type1_dma_unmap;
                $body
            }
            Op::VfioDeviceBindIommufd => {
                type $T = vfio_device_bind_iommufd;
                $body
            }
            Op::VfioDeviceAttachIommufdPt => {
                type $T = vfio_device_attach_iommufd_pt;
                $body
            }
            Op::VfioDeviceDetachIommufdPt => {
                type $T = vfio_device_detach_iommufd_pt;
                $body
            }
            Op::FaultRead => {
                type $T = iommu_fault_record;
                $body
            }
            Op::Dump => {
                type $T = $crate::dump::iommu_dump;
                $body
            }
            Op::VfioGetApiVersion
            | Op::VfioCheckExtension
            | Op::VfioSetIommu
            | Op::ResetClient
            | Op::Quarantine
            | Op::FaultResume => $scalar,
        }
    };
}

// Each struct bound to its operation and Linux's minimum size: the
// other half of the table [`with_request!`] reads.

impl Request for iommu_destroy {
    const OP: Op = Op::Destroy;
    const MIN_SIZE: usize = offset_of_end!(iommu_destroy, id);
}
impl Request for iommu_ioas_alloc {
    const OP: Op = Op::IoasAlloc;
    const MIN_SIZE: usize = offset_of_end!(iommu_ioas_alloc, out_ioas_id);
}
impl Request for iommu_ioas_allow_iovas {
    const OP: Op = Op::IoasAllowIovas;
    const MIN_SIZE: usize = offset_of_end!(iommu_ioas_allow_iovas, allowed_iovas);
}
impl Request for iommu_ioas_copy {
    const OP: Op = Op::IoasCopy;
    const MIN_SIZE: usize = offset_of_end!(iommu_ioas_copy, src_iova);
}
impl Request for iommu_ioas_iova_ranges {
    const OP: Op = Op::IoasIovaRanges;
    const MIN_SIZE: usize = offset_of_end!(iommu_ioas_iova_ranges, out_iova_alignment);
}
impl Request for iommu_ioas_map {
    const OP: Op = Op::IoasMap;
    const MIN_SIZE: usize = offset_of_end!(iommu_ioas_map, iova);
}
impl Request for iommu_ioas_unmap {
    const OP: Op = Op::IoasUnmap;
    const MIN_SIZE: usize = offset_of_end!(iommu_ioas_unmap, length);
}
impl Request for iommu_option {
    const OP: Op = Op::Option;
    const MIN_SIZE: usize = offset_of_end!(iommu_option, val64);
}
impl Request for iommu_vfio_ioas {
    const OP: Op = Op::VfioIoas;
    const MIN_SIZE: usize = offset_of_end!(iommu_vfio_ioas, reserved);
}
impl Request for iommu_hwpt_alloc {
    const OP: Op = Op::HwptAlloc;
    /// Linux's minimum stops at `reserved`: `data_type` onwards came later.
    const MIN_SIZE: usize = offset_of_end!(iommu_hwpt_alloc, reserved);
}
impl Request for iommu_hw_info {
    const OP: Op = Op::GetHwInfo;
    /// Linux's minimum stops at `reserved`: `out_capabilities` came later.
    const MIN_SIZE: usize = offset_of_end!(iommu_hw_info, reserved);
}

impl Request for vfio_iommu_type1_info {
    const OP: Op = Op::VfioIommuGetInfo;
    const MIN_SIZE: usize = offset_of_end!(vfio_iommu_type1_info, iova_pgsizes);
}
impl Request for vfio_iommu_type1_dma_map {
    const OP: Op = Op::VfioIommuMapDma;
    const MIN_SIZE: usize = offset_of_end!(vfio_iommu_type1_dma_map, size);
}
impl Request for vfio_iommu_type1_dma_unmap {
    const OP: Op = Op::VfioIommuUnmapDma;
    const MIN_SIZE: usize = offset_of_end!(vfio_iommu_type1_dma_unmap, size);
}
impl Request for vfio_device_bind_iommufd {
    const OP: Op = Op::VfioDeviceBindIommufd;
    /// Linux's minimum stops at `out_devid`; `token_uuid_ptr` is needed
    /// only with VFIO_DEVICE_BIND_FLAG_TOKEN.
    const MIN_SIZE: usize = offset_of_end!(vfio_device_bind_iommufd, out_devid);
}
impl Request for vfio_device_attach_iommufd_pt {
    const OP: Op = Op::VfioDeviceAttachIommufdPt;
    /// `pasid` is needed only with VFIO_DEVICE_ATTACH_PASID.
    const MIN_SIZE: usize = offset_of_end!(vfio_device_attach_iommufd_pt, pt_id);
}
impl Request for vfio_device_detach_iommufd_pt {
    const OP: Op = Op::VfioDeviceDetachIommufdPt;
    /// `pasid` is needed only with VFIO_DEVICE_DETACH_PASID.
    const MIN_SIZE: usize = offset_of_end!(vfio_device_detach_iommufd_pt, flags);
}

impl Request for iommu_fault_record {
    const OP: Op = Op::FaultRead;
    const MIN_SIZE: usize = offset_of_end!(iommu_fault_record, overflow);
}
impl Request for crate::dump::iommu_dump {
    const OP: Op = Op::Dump;
    const MIN_SIZE: usize = offset_of_end!(crate::dump::iommu_dump, out_total);
}

impl Op {
    /// Every operation, in label order (VFIO's 100.. before iommufd's 0x80..).
    pub const ALL: [Op; 25] = [
        Op::VfioGetApiVersion,
        Op::VfioCheckExtension,
        Op::VfioSetIommu,
        Op::VfioIommuGetInfo,
        Op::VfioIommuMapDma,
        Op::VfioIommuUnmapDma,
        Op::VfioDeviceBindIommufd,
        Op::VfioDeviceAttachIommufdPt,
        Op::VfioDeviceDetachIommufdPt,
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
        Op::FaultRead,
        Op::ResetClient,
        Op::Quarantine,
        Op::Dump,
        Op::FaultResume,
    ];

    /// The message label of this operation.
    pub const fn label(self) -> u64 {
        self as u64
    }

    /// The operation a label names; `None` (ENOTTY) for any other label.
    pub fn from_label(label: u64) -> Option<Op> {
        Self::ALL.iter().copied().find(|op| op.label() == label)
    }

    /// How the argument travels.
    pub const fn framing(self) -> Framing {
        match self {
            Op::VfioGetApiVersion
            | Op::VfioCheckExtension
            | Op::VfioSetIommu
            | Op::ResetClient
            | Op::Quarantine
            | Op::FaultResume => Framing::Scalar,
            Op::VfioIommuGetInfo
            | Op::VfioIommuMapDma
            | Op::VfioIommuUnmapDma
            | Op::VfioDeviceBindIommufd
            | Op::VfioDeviceAttachIommufdPt
            | Op::VfioDeviceDetachIommufdPt => Framing::Argsz,
            _ => Framing::Size,
        }
    }

    /// The request struct's minimum size ([`Request::MIN_SIZE`]); 0 for a
    /// [`Framing::Scalar`] op.
    pub const fn min_size(self) -> usize {
        with_request!(self, |T| <T as Request>::MIN_SIZE, scalar => 0)
    }

    /// The size of the request struct as this crate knows it; 0 for a
    /// [`Framing::Scalar`] op.
    pub const fn struct_size(self) -> usize {
        with_request!(self, |T| core::mem::size_of::<T>(), scalar => 0)
    }

    /// What MR1 carries.
    pub const fn device_arg(self) -> DeviceArg {
        match self {
            Op::VfioDeviceBindIommufd => DeviceArg::ConfigIndex,
            Op::VfioDeviceAttachIommufdPt | Op::VfioDeviceDetachIommufdPt => DeviceArg::ObjectId,
            _ => DeviceArg::None,
        }
    }

    /// Whether a successful reply carries a value in MR0 (the ioctl's
    /// positive return value in Linux, or the fault queue's remaining count).
    pub const fn returns_value(self) -> bool {
        matches!(
            self,
            Op::VfioGetApiVersion | Op::VfioCheckExtension | Op::FaultRead
        )
    }

    /// The Linux ioctl name (this project's own name for [`Op::FaultRead`]).
    pub const fn name(self) -> &'static str {
        match self {
            Op::Destroy => "IOMMU_DESTROY",
            Op::IoasAlloc => "IOMMU_IOAS_ALLOC",
            Op::IoasAllowIovas => "IOMMU_IOAS_ALLOW_IOVAS",
            Op::IoasCopy => "IOMMU_IOAS_COPY",
            Op::IoasIovaRanges => "IOMMU_IOAS_IOVA_RANGES",
            Op::IoasMap => "IOMMU_IOAS_MAP",
            Op::IoasUnmap => "IOMMU_IOAS_UNMAP",
            Op::Option => "IOMMU_OPTION",
            Op::VfioIoas => "IOMMU_VFIO_IOAS",
            Op::HwptAlloc => "IOMMU_HWPT_ALLOC",
            Op::GetHwInfo => "IOMMU_GET_HW_INFO",
            Op::VfioGetApiVersion => "VFIO_GET_API_VERSION",
            Op::VfioCheckExtension => "VFIO_CHECK_EXTENSION",
            Op::VfioSetIommu => "VFIO_SET_IOMMU",
            Op::VfioIommuGetInfo => "VFIO_IOMMU_GET_INFO",
            Op::VfioIommuMapDma => "VFIO_IOMMU_MAP_DMA",
            Op::VfioIommuUnmapDma => "VFIO_IOMMU_UNMAP_DMA",
            Op::VfioDeviceBindIommufd => "VFIO_DEVICE_BIND_IOMMUFD",
            Op::VfioDeviceAttachIommufdPt => "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            Op::VfioDeviceDetachIommufdPt => "VFIO_DEVICE_DETACH_IOMMUFD_PT",
            Op::FaultRead => "IOMMU_FAULT_READ",
            Op::ResetClient => "IOMMU_RESET_CLIENT",
            Op::Quarantine => "IOMMU_QUARANTINE",
            Op::Dump => "IOMMU_DUMP",
            Op::FaultResume => "IOMMU_FAULT_RESUME",
        }
    }
}
