//! What went wrong, naming the request, the errno and the cause.

use core::fmt;

use iommu_proto::Errno;
use iommu_types::IovaRange;

use crate::map::MapError;
use crate::phase::Phase;

/// A request the VMM makes, of the server or of its own vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Checking the guest's memory map before anything else.
    CheckMap,
    GetApiVersion,
    CheckExtension,
    /// VFIO_DEVICE_BIND_IOMMUFD of the guest's device.
    Bind,
    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT with `pt_id` 0: the device joins the
    /// compat IOAS, the container (QEMU's VFIO_GROUP_SET_CONTAINER).
    AttachCompat,
    SetIommu,
    GetInfo,
    /// VFIO_IOMMU_MAP_DMA of guest RAM region `region`.
    MapDma {
        region: usize,
    },
    /// VFIO_IOMMU_UNMAP_DMA of everything, undoing a sequence that failed.
    UnmapDma,
    /// IOMMU_FAULT read of the device's DMA faults.
    ReadFault,
    /// RESET_CLIENT of the VMM itself: the server quarantines the
    /// device's stream, then revokes everything the VMM held.
    ResetClient,
    StopVcpu,
    StartVcpu,
}

impl Request {
    pub const fn name(&self) -> &'static str {
        match self {
            Request::CheckMap => "guest memory map",
            Request::GetApiVersion => "VFIO_GET_API_VERSION",
            Request::CheckExtension => "VFIO_CHECK_EXTENSION(VFIO_TYPE1v2_IOMMU)",
            Request::Bind => "VFIO_DEVICE_BIND_IOMMUFD",
            Request::AttachCompat => "VFIO_DEVICE_ATTACH_IOMMUFD_PT (compat IOAS)",
            Request::SetIommu => "VFIO_SET_IOMMU(VFIO_TYPE1v2_IOMMU)",
            Request::GetInfo => "VFIO_IOMMU_GET_INFO",
            Request::MapDma { .. } => "VFIO_IOMMU_MAP_DMA",
            Request::UnmapDma => "VFIO_IOMMU_UNMAP_DMA",
            Request::ReadFault => "IOMMU_FAULT read",
            Request::ResetClient => "RESET_CLIENT",
            Request::StopVcpu => "vCPU stop",
            Request::StartVcpu => "vCPU start",
        }
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The server refused it (the errno is its answer).
    Refused,
    /// The guest's memory map is unsound.
    Map(MapError),
    /// An API version other than VFIO's 0.
    ApiVersion(u64),
    /// No VFIO type1v2 IOMMU.
    NoType1v2,
    /// GET_INFO's page sizes lack 4 KiB, the guest's page.
    No4KPages { pgsizes: u64 },
    /// GET_INFO's answer has no IOVA_RANGE capability.
    NoIovaRanges,
    /// More IOVA ranges than the VMM keeps, or an answer bigger than the
    /// room it gives GET_INFO.
    InfoTooLarge { needed: u64 },
    /// A capability lies outside the answer, or the chain loops.
    MalformedInfo,
    /// Guest RAM region `region` (`ram`, guest-physical = IOVA) lies in
    /// no single IOVA range the IOMMU reported: refused before any
    /// mapping (VFIO type1 refuses such a MAP_DMA with EINVAL).
    OutsideIovaRanges { region: usize, ram: IovaRange },
    /// The server allows fewer further mappings (DMA_AVAIL) than guest
    /// RAM regions.
    TooFewMappings { avail: u32, needed: usize },
    /// A step of the reset path out of order.
    Phase { expected: Phase, found: Phase },
    /// The vCPU could not be started (the kernel's error).
    Vcpu(u64),
}

/// A failed request: which, the errno, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub request: Request,
    pub errno: Errno,
    pub cause: Cause,
}

impl Error {
    /// The server refused `request` with `errno`.
    pub fn refused(request: Request, errno: impl Into<Errno>) -> Error {
        Error {
            request,
            errno: errno.into(),
            cause: Cause::Refused,
        }
    }

    /// The VMM refuses `request` for `cause`, with the errno the
    /// interface it speaks gives for it.
    pub const fn new(request: Request, errno: Errno, cause: Cause) -> Error {
        Error {
            request,
            errno,
            cause,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.request.name())?;
        if let Request::MapDma { region } = self.request {
            write!(f, " of guest RAM region {region}")?;
        }
        write!(f, ": {}", self.errno.name())?;
        match self.cause {
            Cause::Refused => write!(f, " from the server"),
            Cause::Map(e) => write!(f, ": {e}"),
            Cause::ApiVersion(v) => write!(f, ": API version {v}, not 0"),
            Cause::NoType1v2 => write!(f, ": no type1v2 IOMMU"),
            Cause::No4KPages { pgsizes } => {
                write!(f, ": page sizes {pgsizes:#x} lack 4 KiB")
            }
            Cause::NoIovaRanges => write!(f, ": no IOVA_RANGE capability"),
            Cause::InfoTooLarge { needed } => {
                write!(f, ": the answer needs {needed} bytes, more than the VMM keeps")
            }
            Cause::MalformedInfo => write!(f, ": malformed capability chain"),
            Cause::OutsideIovaRanges { region, ram } => write!(
                f,
                ": guest RAM region {region} at {:#x}..={:#x} lies in no IOVA range of the device's IOMMU",
                ram.start, ram.last
            ),
            Cause::TooFewMappings { avail, needed } => write!(
                f,
                ": {avail} more mappings allowed, {needed} guest RAM regions"
            ),
            Cause::Phase { expected, found } => {
                write!(f, ": the guest is {found:?}, not {expected:?}")
            }
            Cause::Vcpu(e) => write!(f, ": kernel error {e}"),
        }
    }
}
