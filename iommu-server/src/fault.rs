//! DMA faults: attributed to the client that owns the stream, queued in
//! that client's bounded queue (overflow counted), read with FAULT read.

use iommu_proto::decode::check_reserved;
use iommu_proto::fault::*;
use iommu_types::config::ClientConfig;
use iommu_types::{ClientId, Errno, Fault};
use iopt::Hardware;

use crate::client::{Client, Ctx, QueuedFault};

/// Queues `fault` with the client whose configuration owns its stream;
/// returns that client (to notify), or `None` for a stream no client owns.
pub(crate) fn report(
    clients: &mut [Client],
    configs: &[ClientConfig],
    fault: Fault,
) -> Option<ClientId> {
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
    ClientId::from_index(index)
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
    rec.overflow = core::mem::take(&mut client.faults.dropped);
    if let Some(f) = next {
        rec.out_flags = IOMMU_FAULT_RECORD_VALID;
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
