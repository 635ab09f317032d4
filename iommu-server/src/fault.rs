//! DMA faults: attributed to the client that owns the stream, queued in
//! that client's bounded queue (overflow counted), read with FAULT read.

use heapless::Deque;
use iommu_proto::decode::{check_reserved, copy_out, read_request};
use iommu_proto::fault::*;
use iommu_proto::Errno;

use crate::{Client, Ctx, Hardware, Object};

/// Faults a client can have queued before further ones are only counted.
pub const FAULT_QUEUE: usize = 16;

/// A fault as the hardware reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub stream: u32,
    /// The SMMUv3 event type (`IOMMU_FAULT_KIND_*`).
    pub kind: u32,
    /// The faulting IOVA, when the event carries one.
    pub iova: Option<u64>,
    /// `IOMMU_FAULT_ACCESS_*` bits.
    pub access: u32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Queued {
    device: u32,
    kind: u32,
    iova: Option<u64>,
    access: u32,
}

/// A client's pending faults.
#[derive(Debug)]
pub struct FaultQueue {
    queue: Deque<Queued, FAULT_QUEUE>,
    dropped: u64,
}

impl FaultQueue {
    pub const EMPTY: FaultQueue = FaultQueue {
        queue: Deque::new(),
        dropped: 0,
    };

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.dropped = 0;
    }
}

/// Queues `fault` with the client whose configuration owns its stream;
/// returns that client's index (to notify), or `None` for a stream no
/// client owns.
pub(crate) fn report(clients: &mut [Client], fault: Fault) -> Option<usize> {
    let (index, device) = clients.iter().enumerate().find_map(|(i, c)| {
        c.config
            .devices
            .iter()
            .position(|d| d.stream_id == fault.stream)
            .map(|d| (i, d as u32))
    })?;
    let faults = &mut clients[index].faults;
    let queued = Queued {
        device,
        kind: fault.kind,
        iova: fault.iova,
        access: fault.access,
    };
    if faults.queue.push_back(queued).is_err() {
        faults.dropped = faults.dropped.saturating_add(1);
    }
    Some(index)
}

/// FAULT read: the oldest fault into the record (VALID clear when none);
/// MR0 = how many remain.
pub(crate) fn read<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    page: &mut [u8],
    size: u64,
) -> Result<u64, Errno> {
    let mut rec: iommu_fault_record = read_request(page, size)?;
    if rec.flags != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    check_reserved(&rec.reserved)?;
    let client = &mut *ctx.client;
    let next = client.faults.queue.pop_front();
    rec.out_flags = 0;
    let dropped = core::mem::take(&mut client.faults.dropped);
    rec.overflow = dropped;
    if let Some(f) = next {
        rec.out_flags = IOMMU_FAULT_RECORD_VALID;
        let objects = &client.objects;
        rec.dev_id = objects
            .ids()
            .find(|&id| matches!(objects.get(id), Ok(Object::Device(d)) if d.index == f.device as usize))
            .map_or(0, |id| id.0);
        rec.dev_index = f.device;
        rec.kind = f.kind;
        rec.access = f.access;
        rec.iova = f.iova.unwrap_or(0);
        if f.iova.is_some() {
            rec.out_flags |= IOMMU_FAULT_RECORD_ADDR_VALID;
        }
    }
    if let Err(e) = copy_out(page, size, &rec) {
        // Put it back: a fault is never lost to a bad reply buffer.
        if let Some(f) = next {
            let _ = client.faults.queue.push_front(f);
        }
        client.faults.dropped = dropped;
        return Err(e);
    }
    Ok(client.faults.queue.len() as u64)
}
