//! A device's stream once it has stopped: the bookkeeping of its release,
//! and stopping every stream a failed invalidation left on a tainted
//! domain. Below both the device and the IOAS operations, which call it.

use iommu_types::StreamId;
use iopt::{Hardware, ReservedOwner};

use crate::client::Ctx;
use crate::hwpt;
use crate::object::{DeviceObject, ObjectId, MAX_OBJECTS};

/// After the IOMMU did not confirm an unmap in IOAS `ioas`: every stream
/// attached to a domain of it the unmap tainted is put back to abort and
/// released as by DETACH; if one will not stop, all DMA is stopped
/// ([`iopt::Hardware::abort_all`]) and every client with a device is told.
/// The caller is told through its fault record's STOPPED flag.
pub(crate) fn stop_tainted<H: Hardware>(ctx: &mut Ctx<'_, '_, H>, ioas: ObjectId) {
    let Ok(slot) = ctx.client.objects.ioas(ioas).map(|o| o.slot) else {
        return;
    };
    let ids: heapless::Vec<ObjectId, MAX_OBJECTS> = ctx.client.objects.ids().collect();
    let mut stuck = false;
    for &id in &ids {
        let Ok(&DeviceObject {
            stream,
            hwpt: Some(hwpt_id),
            ..
        }) = ctx.client.objects.device(id)
        else {
            continue;
        };
        let Ok(h) = ctx.client.objects.hwpt_mut(hwpt_id) else {
            continue;
        };
        let tainted = h.ioas == ioas && ctx.pool.get(slot).is_ok_and(|i| i.tainted(h.domain));
        if !tainted {
            continue;
        }
        match ctx.hw.detach(stream) {
            Ok(()) => release(ctx, id, stream, hwpt_id),
            Err(_) => stuck = true,
        }
    }
    ctx.client.faults.stopped = true;
    if stuck {
        // Nothing narrower is known to hold. If even this fails, the
        // stream stays attached and its IOAS keeps every area a failed
        // unmap left (see `ioas::unmap_gate`).
        let _ = ctx.hw.abort_all();
        ctx.aborted_all = true;
    }
}

/// The bookkeeping after a stream was quarantined: the device is detached,
/// its windows released, an automatic HWPT it leaves empty freed.
pub(crate) fn release<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    dev: ObjectId,
    stream: StreamId,
    hwpt_id: ObjectId,
) {
    if let Ok(d) = ctx.client.objects.device_mut(dev) {
        d.hwpt = None;
    }
    let Ok(hwpt) = ctx.client.objects.hwpt_mut(hwpt_id) else {
        return;
    };
    hwpt.devices = hwpt.devices.saturating_sub(1);
    let (ioas, auto, devices) = (hwpt.ioas, hwpt.auto, hwpt.devices);
    if let Ok(slot) = ctx.client.objects.ioas(ioas).map(|o| o.slot) {
        if let Ok(target) = ctx.pool.get_mut(slot) {
            let _ = target.unreserve(ReservedOwner::Device(stream));
        }
    }
    if auto && devices == 0 {
        hwpt::destroy(ctx, hwpt_id);
    }
}
