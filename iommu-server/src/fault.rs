//! DMA faults: attributed to the client that owns the stream, queued in
//! that client's bounded queue (overflow counted), read with FAULT read;
//! records the IOMMU itself lost are reported to every client owning a
//! stream. What happens is also said on the server's log, a bounded number
//! of lines per interrupt.
//!
//! Storms are contained: one interrupt handles at most
//! [`EVENTS_PER_INTERRUPT`] records, and a device with more than
//! [`STORM_BUDGET`] of them in one interrupt is *storming*: its further
//! records are dropped and counted for its owner alone, and the IOMMU is
//! told to stop recording them, so they stop filling the event queue every
//! other device's records go through. The owner reads that it is storming,
//! drains its queue and asks for records again with FAULT_RESUME.

use iommu_proto::decode::check_reserved;
use iommu_proto::fault::*;
use iommu_types::config::ClientConfig;
use iommu_types::{ClientId, Errno, Fault, StreamId};
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
    /// A device went over its budget: its records are dropped from now on
    /// and stopped in the IOMMU until its client resumes them.
    Storming {
        client: ClientId,
        client_name: &'static str,
        device: u32,
        device_name: &'static str,
        stream: StreamId,
    },
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
                    "DMA fault {} on stream {:#x} ({})",
                    kind_name(fault.kind),
                    fault.stream.0,
                    Owner(client_name, device_name)
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
            LogEvent::Storming {
                client_name,
                device_name,
                stream,
                ..
            } => write!(
                f,
                "stream {:#x} ({}) faulted more than {STORM_BUDGET} times in one interrupt: its records are stopped until {client_name} resumes them",
                stream.0,
                Owner(client_name, device_name)
            ),
            LogEvent::Suppressed(n) => write!(f, "{n} more log lines left out this interrupt"),
        }
    }
}

/// A device by its client's name and its own, the client's alone when
/// they are the same name.
struct Owner<'a>(&'a str, &'a str);

impl core::fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Owner(client, device) if client == device => f.write_str(client),
            Owner(client, device) => write!(f, "{client}'s {device}"),
        }
    }
}

impl LogEvent {
    /// The fault an event records, if it records one.
    fn fault(&self) -> Option<&Fault> {
        match self {
            LogEvent::Fault { fault, .. }
            | LogEvent::Unowned(fault)
            | LogEvent::StaticFault { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

/// One line of the log: an event, or a run of fault records of one
/// stream, kind and access said as its first record with the count and
/// the last record's IOVA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub first: LogEvent,
    pub records: u32,
    pub last_iova: Option<u64>,
}

impl core::fmt::Display for LogLine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.first)?;
        if self.records > 1 {
            write!(f, "; {} records logged", self.records)?;
            if let Some(iova) = self.last_iova {
                write!(f, ", the last at IOVA {iova:#x}")?;
            }
        }
        Ok(())
    }
}

/// Collapses consecutive fault records of one stream, kind and access
/// into one [`LogLine`]: a device's burst of faults reads as one line with
/// its count. It holds one line at most; [`LogRuns::flush`] says it.
#[derive(Debug, Default)]
pub struct LogRuns {
    held: Option<LogLine>,
}

impl LogRuns {
    pub const fn new() -> LogRuns {
        LogRuns { held: None }
    }

    /// Takes `event`: says (`say`) the run it ends, and the event itself
    /// unless it may start a run.
    pub fn push(&mut self, event: LogEvent, say: &mut dyn FnMut(LogLine)) {
        let joins = |held: &LogLine| match (held.first.fault(), event.fault()) {
            (Some(a), Some(b)) => {
                core::mem::discriminant(&held.first) == core::mem::discriminant(&event)
                    && (a.stream, a.kind, a.access) == (b.stream, b.kind, b.access)
            }
            _ => false,
        };
        match &mut self.held {
            Some(held) if joins(held) => {
                held.records = held.records.saturating_add(1);
                held.last_iova = event.fault().and_then(|f| f.iova);
            }
            _ => {
                self.flush(say);
                let line = LogLine {
                    first: event,
                    records: 1,
                    last_iova: event.fault().and_then(|f| f.iova),
                };
                if event.fault().is_some() {
                    self.held = Some(line);
                } else {
                    say(line);
                }
            }
        }
    }

    /// Says the run held, if any.
    pub fn flush(&mut self, say: &mut dyn FnMut(LogLine)) {
        if let Some(line) = self.held.take() {
            say(line);
        }
    }
}

/// Log lines one interrupt may produce, beyond which they are counted in
/// one `Suppressed` line: a fault flood cannot stall the server on the
/// console. Storms are said besides (at most [`NEW_STORMS`]).
pub const LOG_PER_INTERRUPT: u32 = 8;

/// Event records one interrupt handles; the rest stay in the IOMMU's queue
/// for the next, so an interrupt's work is bounded whatever devices do.
pub const EVENTS_PER_INTERRUPT: usize = 64;

/// Records of one device one interrupt queues for its client; the next
/// makes the device storming (the protocol's `IOMMU_FAULT_STORM_BUDGET`).
pub const STORM_BUDGET: u16 = IOMMU_FAULT_STORM_BUDGET as u16;
const _: () = assert!(IOMMU_FAULT_STORM_BUDGET <= u16::MAX as u32);

/// Devices that can start storming in one interrupt: each needs more than
/// [`STORM_BUDGET`] of its [`EVENTS_PER_INTERRUPT`] records.
pub const NEW_STORMS: usize = EVENTS_PER_INTERRUPT / (STORM_BUDGET as usize + 1);

/// What draining the hardware found besides the faults it handed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// The IOMMU lost records (its event queue overflowed).
    pub lost: bool,
    /// Global error bits raised, already acknowledged.
    pub global_errors: u32,
    /// Records were left in the IOMMU's queue for the next interrupt.
    pub pending: bool,
}

/// What one interrupt's [`crate::Server::collect_faults`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// The clients to notify (bit i = client i).
    pub notify: u64,
    /// Event records handled: at most [`EVENTS_PER_INTERRUPT`].
    pub handled: usize,
    /// Records wait in the IOMMU's queue: the next time the server runs
    /// it takes the next batch.
    pub pending: bool,
}

/// What became of a fault on a stream a client owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Queued with the client (or counted in its full queue).
    Queued,
    /// Over the device's budget with this one: dropped, the device is
    /// storming from now on and its records are to be stopped.
    Storm(StreamId),
    /// The device was storming already: dropped and counted.
    Dropped,
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

    /// A line outside the budget: for the few events an interrupt can
    /// have at most ([`NEW_STORMS`]), which must never be left out.
    pub(crate) fn always(&mut self, event: LogEvent) {
        (self.log)(event);
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

/// Queues `fault` with the client whose configuration owns its stream, if
/// its device is within its budget this interrupt (`budgeted`: faults
/// reported outside an interrupt have none); returns what the log says of
/// it (nothing for a storming device's) and what became of it, or `None`
/// for a stream no client owns.
pub(crate) fn report(
    clients: &mut [Client],
    configs: &[ClientConfig],
    fault: Fault,
    budgeted: bool,
) -> Option<(ClientId, Outcome, Option<LogEvent>)> {
    let (index, device) = configs.iter().enumerate().find_map(|(i, c)| {
        c.devices
            .iter()
            .position(|d| d.stream_id == fault.stream)
            .map(|d| (i, d as u32))
    })?;
    let client = ClientId::from_index(index)?;
    let (client_name, device_name) = (
        configs[index].name,
        configs[index].devices[device as usize].name,
    );
    let faults = &mut clients[index].faults;
    // Server::new refused clients with more devices than MAX_CLIENT_DEVICES.
    let bit = 1u64.checked_shl(device)?;
    let seen = faults.window.get_mut(device as usize)?;
    if faults.storming & bit != 0 {
        faults.storm_dropped = faults.storm_dropped.saturating_add(1);
        return Some((client, Outcome::Dropped, None));
    }
    if budgeted {
        *seen = seen.saturating_add(1);
        if *seen > STORM_BUDGET {
            faults.storming |= bit;
            faults.storm_dropped = faults.storm_dropped.saturating_add(1);
            let event = LogEvent::Storming {
                client,
                client_name,
                device,
                device_name,
                stream: fault.stream,
            };
            return Some((client, Outcome::Storm(fault.stream), Some(event)));
        }
    }
    faults.push(QueuedFault {
        device,
        kind: fault.kind,
        iova: fault.iova,
        access: fault.access,
    });
    let event = LogEvent::Fault {
        client,
        client_name,
        device,
        device_name,
        fault,
    };
    Some((client, Outcome::Queued, Some(event)))
}

/// The devices of a client that record no faults now (bit i = device i):
/// storming ones, and those the hardware stopped with them.
pub(crate) fn silenced<H: Hardware>(hw: &H, client: &Client, config: &ClientConfig) -> u64 {
    let mut bits = client.faults.storming;
    for (i, d) in config.devices.iter().enumerate() {
        if !hw.recording(d.stream_id) {
            bits |= 1u64.checked_shl(i as u32).unwrap_or(0);
        }
    }
    bits
}

/// FAULT_RESUME: records of the caller's device `index` again. ENODEV for
/// no such device, EBUSY while the caller's queue holds faults (it reads
/// them first) or while the IOMMU's queue holds records not yet handled
/// (`backlog`: some may be the storm's, which would count afresh). A
/// device not storming is left as it is.
pub(crate) fn resume<H: Hardware>(
    hw: &mut H,
    client: &mut Client,
    config: &ClientConfig,
    index: u64,
    backlog: bool,
) -> Result<u64, Errno> {
    let device = usize::try_from(index).map_err(|_| Errno::ENODEV)?;
    let stream = config.devices.get(device).ok_or(Errno::ENODEV)?.stream_id;
    if client.faults.len() != 0 || backlog {
        return Err(Errno::EBUSY);
    }
    let bit = 1u64.checked_shl(device as u32).ok_or(Errno::ENODEV)?;
    if client.faults.storming & bit == 0 && hw.recording(stream) {
        return Ok(0);
    }
    match hw.set_recording(stream, true) {
        Ok(()) | Err(Errno::EOPNOTSUPP) => {}
        Err(e) => return Err(e),
    }
    client.faults.storming &= !bit;
    if let Some(seen) = client.faults.window.get_mut(device) {
        *seen = 0;
    }
    Ok(0)
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
    rec.silenced = silenced(&*ctx.hw, ctx.client, ctx.config);
    let client = &mut *ctx.client;
    let next = client.faults.queue.pop_front();
    rec.out_flags = 0;
    if core::mem::take(&mut client.faults.lost) {
        rec.out_flags |= IOMMU_FAULT_RECORD_LOST;
    }
    if core::mem::take(&mut client.faults.stopped) {
        rec.out_flags |= IOMMU_FAULT_RECORD_STOPPED;
    }
    if rec.silenced != 0 {
        rec.out_flags |= IOMMU_FAULT_RECORD_STORMING;
    }
    rec.overflow = core::mem::take(&mut client.faults.dropped);
    rec.storm_dropped = core::mem::take(&mut client.faults.storm_dropped);
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
