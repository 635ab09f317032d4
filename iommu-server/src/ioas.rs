//! IOAS operations (Linux's drivers/iommu/iommufd/ioas.c). Each handler
//! gets its request already copied out of the command page and validated
//! for size by the op table, which writes the output fields back.

use heapless::Vec;
use iommu_proto::decode::{array_range, check_flags, check_reserved, read_at, write_at};
use iommu_proto::iommufd::*;
use iommu_types::{Errno, IovaRange, Prot};
use iopt::{DstIova, Hardware, MAX_ALLOWED, MAX_RESERVED};

use crate::client::Ctx;
use crate::object::{IoasObject, Object, ObjectId};
use crate::region::resolve;

type Result<T> = core::result::Result<T, Errno>;

const MAP_FLAGS: u32 =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;

fn prot(flags: u32) -> Prot {
    let mut prot = Prot::empty();
    prot.set(Prot::READ, flags & IOMMU_IOAS_MAP_READABLE != 0);
    prot.set(Prot::WRITE, flags & IOMMU_IOAS_MAP_WRITEABLE != 0);
    prot
}

fn dst(flags: u32, iova: u64) -> DstIova {
    if flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0 {
        DstIova::Fixed(iova)
    } else {
        DstIova::Auto
    }
}

/// The pool slot of the IOAS an ID names (ENOENT for anything else).
pub(crate) fn slot_of(ctx: &Ctx<'_, '_, impl Hardware>, id: ObjectId) -> Result<usize> {
    Ok(ctx.client.objects.ioas(id)?.slot)
}

/// EIO while a domain of IOAS `id` that an unconfirmed unmap tainted still
/// has a device attached (its stream would not stop): what that unmap kept
/// may still be reachable, so no unmap in the IOAS may hand anything back
/// (the domain would be asked to unmap nothing and confirm it). Once every
/// such stream is stopped an unmap proceeds (a tainted domain is never
/// attached to again, and its context is invalidated when it is freed, or
/// never reused).
pub(crate) fn unmap_gate(ctx: &Ctx<'_, '_, impl Hardware>, id: ObjectId) -> Result<()> {
    let ioas = ctx.pool.get(slot_of(ctx, id)?)?;
    let objects = &ctx.client.objects;
    let reachable = objects.ids().any(|h| {
        matches!(objects.get(h), Ok(Object::Hwpt(x))
            if x.ioas == id && x.devices > 0 && ioas.tainted(x.domain))
    });
    if reachable {
        return Err(Errno::EIO);
    }
    Ok(())
}

/// The result of an engine call that may unmap from domains in use, after
/// stopping the streams an unconfirmed unmap left reaching IOAS `id` (EIO:
/// see [`crate::stream::stop_tainted`]).
pub(crate) fn contained<T>(
    ctx: &mut Ctx<'_, '_, impl Hardware>,
    id: ObjectId,
    result: Result<T>,
) -> Result<T> {
    if result.as_ref().is_err_and(|&e| e == Errno::EIO) {
        crate::stream::stop_tainted(ctx, id);
    }
    result
}

/// The IOAS an ID names (ENOENT for anything else).
pub(crate) fn ioas_mut<'c>(
    ctx: &'c mut Ctx<'_, '_, impl Hardware>,
    id: u32,
) -> Result<&'c mut iopt::Ioas> {
    let slot = slot_of(ctx, ObjectId(id))?;
    ctx.pool.get_mut(slot)
}

/// A new IOAS object: an object slot and an empty IOAS in the pool, or
/// nothing (ENOMEM past the client's `objects` or `ioases` quota).
pub(crate) fn new_ioas(ctx: &mut Ctx<'_, '_, impl Hardware>) -> Result<ObjectId> {
    if ctx.client.objects.ioases() >= ctx.config.quota.ioases {
        return Err(Errno::ENOMEM);
    }
    let slot = ctx.pool.free_slot()?;
    let reservation = ctx.client.objects.reserve()?;
    match ctx.pool.create(slot, ctx.store, ctx.id) {
        Ok(()) => {}
        Err(e) => {
            ctx.client.objects.abort(reservation);
            return Err(e);
        }
    }
    Ok(ctx
        .client
        .objects
        .finalize(reservation, Object::Ioas(IoasObject { slot, hwpts: 0 })))
}

pub(crate) fn alloc<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_ioas_alloc,
) -> Result<u64> {
    check_flags(cmd.flags, 0)?;
    cmd.out_ioas_id = new_ioas(ctx)?.0;
    Ok(0)
}

/// Maps `[user_va, user_va + length)` of the caller's own memory into IOAS
/// `id`: ENOENT for no such IOAS, then the length (EINVAL, EOVERFLOW), then
/// the region checks (EFAULT, EPERM), then iopt's. Shared by
/// IOMMU_IOAS_MAP and VFIO_IOMMU_MAP_DMA.
pub(crate) fn map_user(
    ctx: &mut Ctx<'_, '_, impl Hardware>,
    id: u32,
    user_va: u64,
    length: u64,
    dst: DstIova,
    prot: Prot,
) -> Result<u64> {
    let regions = ctx.config.regions;
    let writable = prot.contains(Prot::WRITE);
    let slot = slot_of(ctx, ObjectId(id))?;
    // Linux's iopt_alloc_pages, before any memory is looked at: no length
    // or one within a page of 2^64 is EINVAL, a wrapping end EOVERFLOW.
    if length == 0 || length > u64::MAX - iopt::PAGE_SIZE {
        return Err(Errno::EINVAL);
    }
    user_va.checked_add(length).ok_or(Errno::EOVERFLOW)?;
    let ioas = ctx.pool.get_mut(slot)?;
    ioas.check_map(ctx.store, user_va, length, dst)?;
    let extents = resolve(
        regions,
        user_va,
        length,
        prot.contains(Prot::READ),
        writable,
    )
    .map_err(|e| if e == Errno::EPERM { Errno::EFAULT } else { e })?;
    let mapped = ioas.map(
        ctx.store,
        ctx.hw.domains(),
        &extents,
        user_va,
        writable,
        dst,
        prot,
    );
    contained(ctx, ObjectId(id), mapped)
}

pub(crate) fn map<H: Hardware>(ctx: &mut Ctx<'_, '_, H>, cmd: &mut iommu_ioas_map) -> Result<u64> {
    check_flags(cmd.flags, MAP_FLAGS)?;
    check_reserved(&cmd.reserved)?;
    // Linux's order: EOVERFLOW before EINVAL for no access.
    if cmd.length == u64::MAX || cmd.iova == u64::MAX {
        return Err(Errno::EOVERFLOW);
    }
    let prot = prot(cmd.flags);
    if prot.is_empty() {
        return Err(Errno::EINVAL);
    }
    cmd.iova = map_user(
        ctx,
        cmd.ioas_id,
        cmd.user_va,
        cmd.length,
        dst(cmd.flags, cmd.iova),
        prot,
    )?;
    Ok(0)
}

/// IOMMU_IOAS_UNMAP. EIO when the IOMMU cannot confirm it: the areas
/// stay mapped in the accounting (IOVA taken, pages charged), the streams
/// of the domains concerned are stopped and the caller's fault record says
/// STOPPED; and EIO, changing nothing, while such a stream would not stop
/// ([`unmap_gate`]).
pub(crate) fn unmap<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_ioas_unmap,
) -> Result<u64> {
    let id = ObjectId(cmd.ioas_id);
    let slot = slot_of(ctx, id)?;
    // Linux's order: the everything form, then EOVERFLOW for an iova or
    // length at U64_MAX, then the range's own checks.
    let everything = cmd.iova == 0 && cmd.length == u64::MAX;
    if !everything && (cmd.iova == u64::MAX || cmd.length == u64::MAX) {
        return Err(Errno::EOVERFLOW);
    }
    unmap_gate(ctx, id)?;
    let ioas = ctx.pool.get_mut(slot)?;
    let unmapped = if everything {
        ioas.unmap_all(ctx.store, ctx.hw.domains())
    } else {
        ioas.unmap(ctx.store, ctx.hw.domains(), cmd.iova, cmd.length)
    };
    cmd.length = contained(ctx, id, unmapped)?;
    Ok(0)
}

pub(crate) fn copy<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_ioas_copy,
) -> Result<u64> {
    check_flags(cmd.flags, MAP_FLAGS)?;
    if cmd.length == u64::MAX || cmd.src_iova == u64::MAX || cmd.dst_iova == u64::MAX {
        return Err(Errno::EOVERFLOW);
    }
    let (src, dst_id) = (ObjectId(cmd.src_ioas_id), ObjectId(cmd.dst_ioas_id));
    let (prot, dst) = (prot(cmd.flags), dst(cmd.flags, cmd.dst_iova));
    let copied = if src == dst_id {
        let ioas = ctx.pool.get_mut(slot_of(ctx, dst_id)?)?;
        ioas.copy_from(
            ctx.store,
            ctx.hw.domains(),
            None,
            cmd.src_iova,
            cmd.length,
            dst,
            prot,
        )
    } else {
        let (to, from) = (slot_of(ctx, dst_id)?, slot_of(ctx, src)?);
        let (to, from) = ctx.pool.get_pair_mut(to, from)?;
        to.copy_from(
            ctx.store,
            ctx.hw.domains(),
            Some(from),
            cmd.src_iova,
            cmd.length,
            dst,
            prot,
        )
    };
    cmd.dst_iova = contained(ctx, dst_id, copied)?;
    Ok(0)
}

pub(crate) fn iova_ranges<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_ioas_iova_ranges,
) -> Result<u64> {
    check_reserved(&cmd.reserved)?;
    let page_va = ctx.config.command_page_vaddr;
    let ioas = ctx.pool.get(slot_of(ctx, ObjectId(cmd.ioas_id))?)?;
    let elem = core::mem::size_of::<iommu_iova_range>();
    // Holes between reserved ranges: at most one more than there are ranges.
    let mut holes = [IovaRange::ALL; MAX_RESERVED + 1];
    let info = ioas.iova_ranges(&mut holes);
    let capacity = cmd.num_iovas as usize;
    // Only the entries written must lie in the page, as Linux writes only
    // those.
    let written = info.total.min(capacity);
    let out = array_range(
        page_va,
        ctx.page.len(),
        cmd.allowed_iovas,
        written as u64,
        elem,
    )?;
    for (i, hole) in holes.iter().take(written).enumerate() {
        let range = iommu_iova_range {
            start: hole.start,
            last: hole.last,
        };
        write_at(ctx.page, out.start + i * elem, &range)?;
    }
    cmd.num_iovas = info.total as u32;
    cmd.out_iova_alignment = info.alignment;
    // EMSGSIZE still reports the counts: the op table writes them back.
    info.fits(capacity)?;
    Ok(0)
}

pub(crate) fn allow_iovas<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_ioas_allow_iovas,
) -> Result<u64> {
    check_reserved(&cmd.reserved)?;
    let page_va = ctx.config.command_page_vaddr;
    let slot = slot_of(ctx, ObjectId(cmd.ioas_id))?;
    let elem = core::mem::size_of::<iommu_iova_range>();
    let input = array_range(
        page_va,
        ctx.page.len(),
        cmd.allowed_iovas,
        u64::from(cmd.num_iovas),
        elem,
    )?;
    // Malformed entries are EINVAL before too many are ENOMEM, as in iopt.
    let mut ranges: Vec<IovaRange, MAX_ALLOWED> = Vec::new();
    let mut too_many = false;
    for i in 0..cmd.num_iovas as usize {
        let r: iommu_iova_range = read_at(ctx.page, input.start + i * elem)?;
        if r.start >= r.last {
            return Err(Errno::EINVAL);
        }
        too_many |= ranges.push(IovaRange::new(r.start, r.last)).is_err();
    }
    if too_many {
        return Err(Errno::ENOMEM);
    }
    ctx.pool.get_mut(slot)?.set_allowed(&ranges)?;
    Ok(0)
}

pub(crate) fn option<H: Hardware>(ctx: &mut Ctx<'_, '_, H>, cmd: &mut iommu_option) -> Result<u64> {
    check_reserved(&cmd.reserved)?;
    match cmd.option_id {
        IOMMU_OPTION_HUGE_PAGES => {
            let slot = slot_of(ctx, ObjectId(cmd.object_id))?;
            let ioas = ctx.pool.get_mut(slot)?;
            match (cmd.op, cmd.val64) {
                (IOMMU_OPTION_OP_GET, _) => cmd.val64 = u64::from(ioas.huge_pages()),
                (IOMMU_OPTION_OP_SET, v @ (0 | 1)) => ioas.set_huge_pages(ctx.store, v == 1)?,
                (IOMMU_OPTION_OP_SET, _) => return Err(Errno::EINVAL),
                _ => return Err(Errno::EOPNOTSUPP),
            }
        }
        // Accounting is a per-client quota fixed by the configuration:
        // readable (user-based, 0), never changeable by a client.
        IOMMU_OPTION_RLIMIT_MODE => {
            if cmd.object_id != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            match cmd.op {
                IOMMU_OPTION_OP_GET => cmd.val64 = 0,
                IOMMU_OPTION_OP_SET => return Err(Errno::EPERM),
                _ => return Err(Errno::EOPNOTSUPP),
            }
        }
        _ => return Err(Errno::EOPNOTSUPP),
    }
    Ok(0)
}
