//! The VFIO type1 sequence a VMM runs to give its guest's device the
//! guest's RAM, IOVA = guest-physical address, in the order QEMU's
//! hw/vfio/container.c runs it (docs/vm.md has the two side by side):
//!
//! 1. VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION(TYPE1v2);
//! 2. the device joins the container: VFIO_DEVICE_BIND_IOMMUFD, then an
//!    attach through the compat path (`pt_id` 0), which makes the compat
//!    IOAS the VFIO calls act on (QEMU: VFIO_GROUP_SET_CONTAINER). Its
//!    IOAS is empty: the device reaches nothing yet;
//! 3. VFIO_SET_IOMMU(TYPE1v2);
//! 4. VFIO_IOMMU_GET_INFO: 4 KiB must be among the page sizes, and every
//!    RAM region the VMM maps for DMA must lie inside one IOVA range
//!    (the device's reserved windows, the PCIe host bridge's among them,
//!    are holes between them). Anything else is refused here, before a
//!    single mapping;
//! 5. VFIO_IOMMU_MAP_DMA per RAM region: `iova` = its guest-physical
//!    address, `vaddr` = where the VMM maps it. If one fails, everything
//!    mapped is unmapped again.

use iommu_client::{Device, Iommu, Transport};
use iommu_proto::vfio::*;
use iommu_proto::Errno;
use iommu_types::IovaRange;
use zerocopy::FromBytes;

use crate::error::{Cause, Error, Request};
use crate::map::{GuestMap, PAGE};

/// Bytes given to GET_INFO: the struct, DMA_AVAIL and an IOVA_RANGE
/// capability of up to [`MAX_IOVA_RANGES`] ranges fit.
pub const INFO_ROOM: usize = 256;
/// IOVA ranges the VMM keeps from GET_INFO.
pub const MAX_IOVA_RANGES: usize = 8;
/// Capabilities followed before the chain counts as looping.
const MAX_CAPS: usize = 8;

/// What GET_INFO said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IommuInfo {
    /// `iova_pgsizes`.
    pub pgsizes: u64,
    ranges: [IovaRange; MAX_IOVA_RANGES],
    count: usize,
    /// DMA_AVAIL's count of further mappings, when the chain has it.
    pub dma_avail: Option<u32>,
}

impl IommuInfo {
    /// The valid IOVA ranges, inclusive.
    pub fn ranges(&self) -> &[IovaRange] {
        &self.ranges[..self.count]
    }

    /// The range that holds all of `r`, if one does.
    pub fn containing(&self, r: &IovaRange) -> Option<&IovaRange> {
        self.ranges()
            .iter()
            .find(|x| x.start <= r.start && r.last <= x.last)
    }

    /// Decodes GET_INFO's struct and the `bytes` it wrote (the struct, then
    /// its capability chain; offsets count from the start of `bytes`).
    pub fn parse(head: &vfio_iommu_type1_info, bytes: &[u8]) -> Result<IommuInfo, Cause> {
        if u64::from(head.argsz) > bytes.len() as u64 {
            return Err(Cause::InfoTooLarge {
                needed: u64::from(head.argsz),
            });
        }
        let mut info = IommuInfo {
            pgsizes: if head.flags & VFIO_IOMMU_INFO_PGSIZES != 0 {
                head.iova_pgsizes
            } else {
                0
            },
            ranges: [IovaRange::new(0, 0); MAX_IOVA_RANGES],
            count: 0,
            dma_avail: None,
        };
        let mut ranges_seen = false;
        let mut at = if head.flags & VFIO_IOMMU_INFO_CAPS != 0 {
            head.cap_offset as usize
        } else {
            0
        };
        let mut caps = 0;
        while at != 0 {
            caps += 1;
            if caps > MAX_CAPS {
                return Err(Cause::MalformedInfo);
            }
            let rest = bytes.get(at..).ok_or(Cause::MalformedInfo)?;
            let (header, _) =
                vfio_info_cap_header::read_from_prefix(rest).map_err(|_| Cause::MalformedInfo)?;
            match header.id {
                VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                    let (cap, mut tail) =
                        vfio_iommu_type1_info_cap_iova_range::read_from_prefix(rest)
                            .map_err(|_| Cause::MalformedInfo)?;
                    let n = cap.nr_iovas as usize;
                    if n > MAX_IOVA_RANGES {
                        return Err(Cause::InfoTooLarge {
                            needed: u64::from(cap.nr_iovas),
                        });
                    }
                    for slot in info.ranges.iter_mut().take(n) {
                        let (r, more) = vfio_iova_range::read_from_prefix(tail)
                            .map_err(|_| Cause::MalformedInfo)?;
                        if r.start > r.end {
                            return Err(Cause::MalformedInfo);
                        }
                        *slot = IovaRange::new(r.start, r.end);
                        tail = more;
                    }
                    info.count = n;
                    ranges_seen = true;
                }
                VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL => {
                    let (cap, _) = vfio_iommu_type1_info_dma_avail::read_from_prefix(rest)
                        .map_err(|_| Cause::MalformedInfo)?;
                    info.dma_avail = Some(cap.avail);
                }
                _ => {}
            }
            let next = header.next as usize;
            // Forward only: a chain that points back loops.
            if next != 0 && next <= at {
                return Err(Cause::MalformedInfo);
            }
            at = next;
        }
        if !ranges_seen {
            return Err(Cause::NoIovaRanges);
        }
        Ok(info)
    }
}

/// The guest's device, joined to the VMM's container with the guest's
/// RAM mapped for it.
#[derive(Debug)]
pub struct Passthrough {
    pub device: Device,
    /// The HWPT the compat attach made.
    pub hwpt: u32,
    pub info: IommuInfo,
    /// RAM regions mapped (those the map marks for DMA).
    pub mapped: usize,
}

/// Checks GET_INFO's answer against the map: 4 KiB pages, each DMA
/// region inside one IOVA range, mappings enough.
pub fn check_info(info: &IommuInfo, map: &GuestMap<'_>) -> Result<(), Error> {
    let refuse = |cause| Error::new(Request::GetInfo, Errno::EINVAL, cause);
    if info.pgsizes & PAGE == 0 {
        return Err(refuse(Cause::No4KPages {
            pgsizes: info.pgsizes,
        }));
    }
    let mut needed = 0;
    for (region, r) in map.ram.iter().enumerate().filter(|(_, r)| r.dma) {
        let ram = r
            .iova_range()
            .ok_or(refuse(Cause::Map(crate::map::MapError::Empty {
                ram: true,
                index: region,
            })))?;
        if info.containing(&ram).is_none() {
            return Err(refuse(Cause::OutsideIovaRanges { region, ram }));
        }
        needed += 1;
    }
    match info.dma_avail {
        Some(avail) if (avail as usize) < needed => Err(Error::new(
            Request::GetInfo,
            Errno::ENOSPC,
            Cause::TooFewMappings { avail, needed },
        )),
        _ => Ok(()),
    }
}

/// Runs the sequence for the device at `device_index` of the VMM's
/// configuration: see the module's documentation.
pub fn pass_through<T: Transport>(
    iommu: &mut Iommu<T>,
    map: &GuestMap<'_>,
    device_index: u32,
) -> Result<Passthrough, Error> {
    map.check()
        .map_err(|e| Error::new(Request::CheckMap, Errno::EINVAL, Cause::Map(e)))?;
    let version = iommu
        .vfio_get_api_version()
        .map_err(|e| Error::refused(Request::GetApiVersion, e))?;
    if version != VFIO_API_VERSION {
        return Err(Error::new(
            Request::GetApiVersion,
            Errno::EINVAL,
            Cause::ApiVersion(version),
        ));
    }
    let type1v2 = iommu
        .vfio_check_extension(VFIO_TYPE1v2_IOMMU)
        .map_err(|e| Error::refused(Request::CheckExtension, e))?;
    if !type1v2 {
        return Err(Error::new(
            Request::CheckExtension,
            Errno::EINVAL,
            Cause::NoType1v2,
        ));
    }
    let device = iommu
        .bind(device_index)
        .map_err(|e| Error::refused(Request::Bind, e))?;
    let hwpt = iommu
        .attach_compat(&device)
        .map_err(|e| Error::refused(Request::AttachCompat, e))?;
    iommu
        .vfio_set_iommu(VFIO_TYPE1v2_IOMMU)
        .map_err(|e| Error::refused(Request::SetIommu, e))?;
    let mut bytes = [0u8; INFO_ROOM];
    let head = iommu
        .vfio_iommu_get_info(&mut bytes)
        .map_err(|e| Error::refused(Request::GetInfo, e))?;
    let info = IommuInfo::parse(&head, &bytes)
        .map_err(|cause| Error::new(Request::GetInfo, Errno::EINVAL, cause))?;
    check_info(&info, map)?;
    let flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    let mut mapped = 0;
    for (region, r) in map.ram.iter().enumerate().filter(|(_, r)| r.dma) {
        if let Err(e) = iommu.vfio_map_dma(r.vmm_vaddr, r.gpa, r.size, flags) {
            // Fail closed: the device keeps nothing of a half-made map.
            if mapped > 0 {
                iommu
                    .vfio_unmap_dma(0, 0, VFIO_DMA_UNMAP_FLAG_ALL)
                    .map_err(|e| Error::refused(Request::UnmapDma, e))?;
            }
            return Err(Error::refused(Request::MapDma { region }, e));
        }
        mapped += 1;
    }
    Ok(Passthrough {
        device,
        hwpt,
        info,
        mapped,
    })
}
