//! RESET_CLIENT: revocation of everything a client holds.

use iommu_types::Errno;
use iopt::Hardware;

use crate::client::Ctx;
use crate::object::{Object, ObjectId, MAX_OBJECTS};

/// Quarantine then teardown of everything the client holds; see
/// [`crate::Server::reset_client`].
pub(crate) fn revoke<H: Hardware>(ctx: &mut Ctx<'_, '_, H>) -> Result<(), Errno> {
    let mut stuck = false;
    let ids: heapless::Vec<ObjectId, MAX_OBJECTS> = ctx.client.objects.ids().collect();
    for &id in &ids {
        let Ok(d) = ctx.client.objects.device(id) else {
            continue;
        };
        let (stream, hwpt) = (d.stream, d.hwpt);
        if let Some(hwpt) = hwpt {
            // Each stream that stops is released at once, so a reset that
            // fails part way leaves consistent records to retry from.
            match ctx.hw.detach(stream) {
                Ok(()) => crate::stream::release(ctx, id, stream, hwpt),
                Err(_) => stuck = true,
            }
        }
    }
    if stuck {
        return Err(Errno::EBUSY);
    }
    // Every stream is stopped: now nothing can reach what goes next.
    for &id in &ids {
        if ctx.client.objects.device(id).is_ok() {
            let _ = ctx.client.objects.remove(id);
        }
    }
    for &id in &ids {
        if let Ok(h) = ctx.client.objects.hwpt_mut(id) {
            h.devices = 0;
            ctx.client
                .objects
                .destroy_hwpt(id, ctx.store, ctx.pool, ctx.hw);
        }
    }
    for &id in &ids {
        if let Ok(Object::Ioas(o)) = ctx.client.objects.remove(id) {
            ctx.pool.destroy(o.slot, ctx.store, ctx.hw.domains());
        }
    }
    ctx.client.compat = None;
    ctx.client.faults.clear();
    Ok(())
}
