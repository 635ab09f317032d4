//! DMA faults: attributed to the client that owns the stream, queued in
//! that client's bounded queue (overflow counted), read with FAULT read;
//! records the IOMMU itself lost are reported to every client owning a
//! stream. What happens is also said on the server's log, a bounded number
//! of lines per interrupt.

use iommu_proto::decode::check_reserved;
use iommu_proto::fault::*;
use iommu_types::config::ClientConfig;
use iommu_types::{ClientId, Errno, Fault};
use iopt::Hardware;

use crate::client::{Client, Ctx, QueuedFault};

/// What the server says on its log (the PD prints it on the debug console).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// A DMA fault queued for `client`, from its device `device`.
    Fault {
        client: ClientId,
        client_name: &'static str,
        device: u32,
        device_name: &'static str,
        fault: Fault,
    },
    /// A DMA fault from a stream no client owns: nobody is told but the log.
    Unowned(Fault),
    /// A DMA fault on a static IO address space's stream: recorded for the
    /// PD the description names for its faults.
    StaticFault {
        space: &'static str,
        domain_id: u16,
        fault: Fault,
    },
    /// The IOMMU's event queue overflowed: records were lost, and every
    /// client owning a stream was told.
    LostRecords,
    /// Global error bits the hardware raised (and the server acknowledged).
    GlobalErrors(u32),
    /// Lines left out by the per-interrupt limit.
    Suppressed(u32),
}

impl core::fmt::Display for LogEvent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // ", IOVA 0x... read|write" when the event carries an address.
        let address = |f: &mut core::fmt::Formatter<'_>, fault: &Fault| match fault.iova {
            Some(iova) => {
                let rw = if fault.access & IOMMU_FAULT_ACCESS_WRITE != 0 {
                    "write"
                } else {
                    "read"
                };
                write!(f, ", IOVA {iova:#x} {rw}")
            }
            None => Ok(()),
        };
        match self {
            LogEvent::Fault {
                client_name,
                device_name,
                fault,
                ..
            } => {
                write!(
                    f,
                    "DMA fault {} on stream {:#x} ({client_name}'s {device_name})",
                    kind_name(fault.kind),
                    fault.stream.0
                )?;
                address(f, fault)
            }
            LogEvent::Unowned(fault) => {
                write!(
                    f,
                    "DMA fault {} on stream {:#x}, which no client owns",
                    kind_name(fault.kind),
                    fault.stream.0
                )?;
                address(f, fault)
            }
            LogEvent::StaticFault {
                space,
                domain_id,
                fault,
            } => {
                write!(
                    f,
                    "DMA fault {} on stream {:#x} (static space {space}, domain_id {domain_id})",
                    kind_name(fault.kind),
                    fault.stream.0
                )?;
                address(f, fault)
            }
            LogEvent::LostRecords => write!(
                f,
                "SMMU event queue overflowed: records lost; every client with a device is told"
            ),
            LogEvent::GlobalErrors(bits) => {
                write!(f, "SMMU global errors {bits:#x} (acknowledged)")
            }
            LogEvent::Suppressed(n) => write!(f, "{n} more log lines left out this interrupt"),
        }
    }
}

/// Log lines one interrupt may produce, beyond which they are counted in
/// one `Suppressed` line: a fault flood cannot stall the server on the
/// console.
pub const LOG_PER_INTERRUPT: u32 = 8;

/// What draining the hardware found besides the faults it handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// The IOMMU lost records (its event queue overflowed).
    pub lost: bool,
    /// Global error bits raised, already acknowledged.
    pub global_errors: u32,
}

/// A log with a budget of lines.
pub(crate) struct Budget<'l> {
    pub log: &'l mut dyn FnMut(LogEvent),
    pub left: u32,
    pub suppressed: u32,
}

impl Budget<'_> {
    pub(crate) fn say(&mut self, event: LogEvent) {
        if self.left > 0 {
            self.left -= 1;
            (self.log)(event);
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
        }
    }

    pub(crate) fn finish(self) {
        if self.suppressed > 0 {
            (self.log)(LogEvent::Suppressed(self.suppressed));
        }
    }
}

/// Tells every client owning a stream that the IOMMU lost records; returns
/// them (bit i = client i) to notify.
pub(crate) fn lost(clients: &mut [Client], configs: &[ClientConfig]) -> u64 {
    let mut notify = 0u64;
    for (i, (client, config)) in clients.iter_mut().zip(configs).enumerate() {
        if !config.devices.is_empty() {
            client.faults.lost = true;
            notify |= 1u64.checked_shl(i as u32).unwrap_or(0);
        }
    }
    notify
}

/// Queues `fault` with the client whose configuration owns its stream;
/// returns what the log says of it, or `None` for a stream no client owns.
pub(crate) fn report(
    clients: &mut [Client],
    configs: &[ClientConfig],
    fault: Fault,
) -> Option<LogEvent> {
    let (index, device) = configs.iter().enumerate().find_map(|(i, c)| {
        c.devices
            .iter()
            .position(|d| d.stream_id == fault.stream)
            .map(|d| (i, d as u32))
    })?;
    clients[index].faults.push(QueuedFault {
        device,
        kind: fault.kind,
        iova: fault.iova,
        access: fault.access,
    });
    Some(LogEvent::Fault {
        client: ClientId::from_index(index)?,
        client_name: configs[index].name,
        device,
        device_name: configs[index].devices[device as usize].name,
        fault,
    })
}

/// FAULT read: the oldest fault into the record (VALID clear when none);
/// MR0 = how many remain.
pub(crate) fn read<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    rec: &mut iommu_fault_record,
) -> Result<u64, Errno> {
    if rec.flags != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    check_reserved(&rec.reserved)?;
    let client = &mut *ctx.client;
    let next = client.faults.queue.pop_front();
    rec.out_flags = 0;
    if core::mem::take(&mut client.faults.lost) {
        rec.out_flags |= IOMMU_FAULT_RECORD_LOST;
    }
    rec.overflow = core::mem::take(&mut client.faults.dropped);
    if let Some(f) = next {
        rec.out_flags |= IOMMU_FAULT_RECORD_VALID;
        rec.dev_id = client
            .objects
            .bound_device(f.device as usize)
            .map_or(0, |id| id.0);
        rec.dev_index = f.device;
        rec.kind = f.kind;
        rec.access = f.access;
        rec.iova = f.iova.unwrap_or(0);
        if f.iova.is_some() {
            rec.out_flags |= IOMMU_FAULT_RECORD_ADDR_VALID;
        }
    }
    Ok(client.faults.queue.len() as u64)
}
