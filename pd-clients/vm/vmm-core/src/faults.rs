//! The guest device's DMA faults, as the server records them for the VMM
//! (its client): each IOVA is a guest-physical address, so the VMM can
//! say what the guest's device tried to reach.

use core::fmt;

use iommu_client::{Iommu, Transport};
use iommu_types::fault::{kind_name, IOMMU_FAULT_ACCESS_WRITE};

use crate::error::{Error, Request};
use crate::map::{GuestMap, Place};

/// Reads of the fault queue one report makes at most: the server's queue
/// is bounded, and a guest's device must not keep the VMM reading.
pub const MAX_READS: u32 = 256;

/// One DMA fault of the guest's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaFault {
    /// The SMMUv3 event type (`IOMMU_FAULT_KIND_*`).
    pub kind: u32,
    /// The guest-physical address, when the IOMMU gave one.
    pub gpa: Option<u64>,
    pub write: bool,
    /// What the address is in the guest's map; RAM here is RAM the VMM
    /// did not map for DMA, or a fault while the device was quarantined.
    pub place: Option<Place>,
}

impl DmaFault {
    /// Whether this is a DMA to the page of `gpa` where the guest's map
    /// has nothing: what a guest's stray DMA aimed at `gpa` gives.
    pub fn is_stray_to(&self, gpa: u64) -> bool {
        const PAGE_MASK: u64 = !(crate::map::PAGE - 1);
        self.place == Some(Place::Outside)
            && self.gpa.is_some_and(|at| at & PAGE_MASK == gpa & PAGE_MASK)
    }
}

impl fmt::Display for DmaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = if self.write { "writing" } else { "reading" };
        match (self.gpa, self.place) {
            (Some(gpa), Some(place)) => {
                write!(
                    f,
                    "{} {access} GPA {gpa:#x} ({place})",
                    kind_name(self.kind)
                )
            }
            _ => write!(f, "{}, no address", kind_name(self.kind)),
        }
    }
}

/// What the queue held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultReport {
    /// Records read.
    pub records: u64,
    /// The first of them.
    pub first: Option<DmaFault>,
    /// Records dropped for the VMM (its queue full, its device storming).
    pub dropped: u64,
    /// The IOMMU lost records that may have been the VMM's.
    pub lost: bool,
    /// The server stopped the device (an invalidation it could not
    /// confirm).
    pub stopped: bool,
}

/// Reads the VMM's fault queue to its end (at most [`MAX_READS`] reads),
/// placing each fault in the guest's map.
pub fn read<T: Transport>(iommu: &mut Iommu<T>, map: &GuestMap<'_>) -> Result<FaultReport, Error> {
    let mut report = FaultReport::default();
    for _ in 0..MAX_READS {
        let r = iommu
            .read_fault()
            .map_err(|e| Error::refused(Request::ReadFault, e))?;
        if let Some(f) = r.fault {
            report.records += 1;
            report.first = report.first.or(Some(DmaFault {
                kind: f.kind,
                gpa: f.iova,
                write: f.access & IOMMU_FAULT_ACCESS_WRITE != 0,
                place: f.iova.map(|gpa| map.place(gpa)),
            }));
        }
        report.dropped += r.dropped + r.storm_dropped;
        report.lost |= r.lost;
        report.stopped |= r.stopped;
        if r.remaining == 0 {
            break;
        }
    }
    Ok(report)
}
