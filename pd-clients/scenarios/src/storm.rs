//! A storm and the fault a storm must not hide: one device faults on
//! every beat of its transfers until the server stops recording its
//! stream and tells its client so, while another client's single stray
//! DMA is still reported to it exactly. The edu driver PDs and the
//! bare-metal demo run these steps.

use core::fmt::Write;

use edu_device::Edu;
use iommu_client::{Fault, Iommu, Transport};
use iommu_proto::fault::IOMMU_FAULT_KIND_F_TRANSLATION;
use mmio::RegisterBlock;

use crate::edu::Session;
use crate::Step;

fn errno(what: &'static str) -> impl Fn(iommu_client::Error) -> &'static str {
    move |_| what
}

/// Transfers a storming device makes, 4 KiB each: one record per 4 bytes
/// while its stream records.
pub const STORM_TRANSFERS: u32 = 8;
/// Bytes of each storm transfer.
pub const STORM_BYTES: u64 = 4096;

/// A client's fault queue, read to its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Records read.
    pub records: u64,
    /// The first of them.
    pub first: Option<Fault>,
    /// Records dropped for this client: its queue full, or its devices
    /// storming.
    pub dropped: u64,
    /// Devices recording nothing (bit i = device i).
    pub silenced: u64,
    /// The IOMMU lost records that may have been this client's.
    pub lost: bool,
}

/// Reads every queued fault.
pub fn read_faults<T: Transport>(iommu: &mut Iommu<T>) -> Result<Faults, &'static str> {
    let mut seen = Faults::default();
    loop {
        let r = iommu.read_fault().map_err(errno("FAULT read"))?;
        if let Some(f) = r.fault {
            seen.records += 1;
            seen.first = seen.first.or(Some(f));
        }
        seen.dropped += r.dropped + r.storm_dropped;
        seen.silenced |= r.silenced;
        seen.lost |= r.lost;
        if r.remaining == 0 {
            return Ok(seen);
        }
    }
}

/// Drains the fault queue and has the device's faults recorded again: a
/// flood earlier in the story may have stopped them (it stormed).
pub fn record_again<T: Transport>(iommu: &mut Iommu<T>) -> Step {
    read_faults(iommu)?;
    iommu.resume_faults(0).map_err(errno("FAULT_RESUME"))?;
    match read_faults(iommu)? {
        Faults {
            records: 0,
            silenced: 0,
            ..
        } => Ok(()),
        _ => Err("the device still records nothing"),
    }
}

/// The device faults on every beat of [`STORM_TRANSFERS`] transfers to
/// `iova`, where nothing translates for it (a reset driver's old
/// destination); `between(i)` runs after transfer `i`.
pub fn storm<R: RegisterBlock>(
    edu: &Edu<R>,
    iova: u64,
    mut between: impl FnMut(u32) -> Step,
) -> Step {
    for transfer in 0..STORM_TRANSFERS {
        edu.write_to(0, iova, STORM_BYTES)
            .map_err(|_| "storm DMA timed out")?;
        between(transfer)?;
    }
    Ok(())
}

/// After its storm: the client was told, its records stopped after the
/// server's budget (`budget`), its drops counted, nothing lost.
pub fn told_storming<T: Transport>(
    iommu: &mut Iommu<T>,
    budget: u64,
    out: &mut impl Write,
) -> Step {
    let seen = read_faults(iommu)?;
    let _ = writeln!(
        out,
        "told it is storming: {} records queued, {} more dropped for it alone, the rest of its transfers never recorded",
        seen.records, seen.dropped
    );
    if seen.silenced & 1 != 0 && seen.records == budget && seen.dropped > 0 && !seen.lost {
        Ok(())
    } else {
        Err("not told, or records lost")
    }
}

/// One 4-byte DMA to an IOVA after the session's destination, where
/// nothing is mapped: one record. Returns its IOVA.
pub fn lone_stray<R: RegisterBlock>(s: &Session<'_>, edu: &Edu<R>) -> Result<u64, &'static str> {
    let stray = s.dst.iova() + 0x10_0000;
    edu.write_to(0, stray, 4)
        .map_err(|_| "stray DMA timed out")?;
    Ok(stray)
}

/// The lone stray's record, and only it, with nothing lost or dropped;
/// the queue is read up to `polls` times until the record is there (the
/// server may still be working through a storm's backlog).
pub fn exactly_the_stray<T: Transport>(
    iommu: &mut Iommu<T>,
    stray: u64,
    polls: u32,
    out: &mut impl Write,
) -> Step {
    let mut seen = Faults::default();
    for _ in 0..polls.max(1) {
        let more = read_faults(iommu)?;
        seen = Faults {
            records: seen.records + more.records,
            first: seen.first.or(more.first),
            dropped: seen.dropped + more.dropped,
            silenced: seen.silenced | more.silenced,
            lost: seen.lost | more.lost,
        };
        if seen.records > 0 {
            break;
        }
    }
    let _ = writeln!(
        out,
        "during the storm: {} record, {} at IOVA {stray:#x}, lost {}",
        seen.records,
        seen.first
            .map_or("nothing", |f| iommu_proto::fault::kind_name(f.kind)),
        seen.lost
    );
    let exact = matches!(
        seen.first,
        Some(f) if f.kind == IOMMU_FAULT_KIND_F_TRANSLATION
            && f.iova == Some(stray)
            && f.access & iommu_proto::fault::IOMMU_FAULT_ACCESS_WRITE != 0
    );
    if seen.records == 1 && exact && !seen.lost && seen.dropped == 0 && seen.silenced == 0 {
        Ok(())
    } else {
        Err("not exactly its record, or told of lost records")
    }
}
