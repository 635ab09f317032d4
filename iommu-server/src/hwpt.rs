//! Hardware page tables (Linux's iommufd hw_pagetable.c): a HWPT is one
//! hardware domain mirroring an IOAS. Automatic HWPTs are made by an
//! attach to an IOAS and go with their last device; HWPT_ALLOC makes
//! explicit ones, which attaches never reuse and only DESTROY removes.

use iommu_proto::decode::check_reserved;
use iommu_proto::iommufd::*;
use iommu_types::Errno;
use iopt::Hardware;

use crate::client::Ctx;
use crate::object::{HwptObject, Object, ObjectId};

type Result<T> = core::result::Result<T, Errno>;

/// A new HWPT over IOAS `ioas`: an object slot, a domain, every area
/// mapped into it. Nothing remains if any step fails.
pub(crate) fn create<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    ioas: ObjectId,
    auto: bool,
) -> Result<ObjectId> {
    ctx.client.objects.ioas(ioas)?;
    // Each HWPT is a hardware context, a per-client quota (ENOMEM as for
    // any exhausted one) so that no client's use can reduce or reveal
    // another's.
    if ctx.client.objects.hwpts() >= ctx.config.quota.hwpts {
        return Err(Errno::ENOMEM);
    }
    let reservation = ctx.client.objects.reserve()?;
    let domain = match ctx.hw.domain_alloc(ctx.id, ctx.config.quota.table_pages) {
        Ok(domain) => domain,
        Err(e) => {
            ctx.client.objects.abort(reservation);
            return Err(e);
        }
    };
    let filled = match ctx.client.objects.ioas_mut(ioas) {
        Ok(target) => {
            let filled = match ctx.pool.get_mut(target.slot) {
                Ok(io) => io.attach_domain(ctx.store, ctx.hw.domains(), domain),
                Err(e) => Err(e),
            };
            if filled.is_ok() {
                target.hwpts += 1;
            }
            filled
        }
        Err(e) => Err(e),
    };
    if let Err(e) = filled {
        ctx.hw.domain_free(domain);
        ctx.client.objects.abort(reservation);
        return Err(e);
    }
    Ok(ctx.client.objects.finalize(
        reservation,
        Object::Hwpt(HwptObject {
            ioas,
            domain,
            auto,
            devices: 0,
        }),
    ))
}

/// Removes a HWPT no device uses (see [`crate::object`]).
pub(crate) fn destroy<H: Hardware>(ctx: &mut Ctx<'_, '_, H>, id: ObjectId) {
    ctx.client
        .objects
        .destroy_hwpt(id, ctx.store, ctx.pool, ctx.hw);
}

/// IOMMU_HWPT_ALLOC: an explicit HWPT over an IOAS for a bound device.
pub(crate) fn alloc<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_hwpt_alloc,
) -> Result<u64> {
    // No nesting, dirty tracking, PASID or fault objects on this SMMU model.
    if cmd.flags != 0 || cmd.data_type != IOMMU_HWPT_DATA_NONE {
        return Err(Errno::EOPNOTSUPP);
    }
    check_reserved(&cmd.reserved)?;
    check_reserved(&cmd.reserved2)?;
    // data_len/data_uptr go with a data type and fault_id with its flag,
    // neither of which is offered: ignored, as Linux ignores them.
    ctx.client.objects.device(ObjectId(cmd.dev_id))?;
    match ctx
        .client
        .objects
        .get(ObjectId(cmd.pt_id))
        .map_err(|_| Errno::EINVAL)?
    {
        Object::Ioas(_) => {}
        Object::Hwpt(_) => return Err(Errno::EOPNOTSUPP),
        Object::Device(_) => return Err(Errno::EINVAL),
    }
    cmd.out_hwpt_id = create(ctx, ObjectId(cmd.pt_id), false)?.0;
    Ok(0)
}
