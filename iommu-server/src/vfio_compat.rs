//! VFIO type1 container compatibility over the compat IOAS, with the
//! semantics of Linux's drivers/iommu/iommufd/vfio_compat.c.
//!
//! A client's compat IOAS is made by its first device attach through the
//! compat path (ATTACH with `pt_id` 0: object ID 0 is never valid, so it
//! cannot name anything else) or chosen with IOMMU_VFIO_IOAS SET. Without
//! one, every operation that needs it is ENODEV.

use iommu_proto::decode::{check_reserved, write_at};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_types::{Errno, IovaRange, Prot};
use iopt::{DstIova, Hardware, MAX_RESERVED};

use crate::client::Ctx;
use crate::ioas::{contained, ioas_mut, map_user, new_ioas, slot_of, unmap_gate};
use crate::object::{Object, ObjectId};

type Result<T> = core::result::Result<T, Errno>;

/// The compat IOAS, if one is set and still alive.
fn compat(ctx: &mut Ctx<'_, '_, impl Hardware>) -> Result<ObjectId> {
    let id = ctx.client.compat.ok_or(Errno::ENODEV)?;
    ctx.client.objects.ioas(id).map_err(|_| Errno::ENODEV)?;
    Ok(id)
}

/// The compat IOAS for a compat-path attach, made if there is none.
/// Returns it and whether this call made it.
pub(crate) fn compat_for_attach(ctx: &mut Ctx<'_, '_, impl Hardware>) -> Result<(ObjectId, bool)> {
    if let Ok(id) = compat(ctx) {
        return Ok((id, false));
    }
    let id = new_ioas(ctx)?;
    ctx.client.compat = Some(id);
    Ok((id, true))
}

/// Undoes [`compat_for_attach`] when the attach it served failed.
pub(crate) fn drop_new_compat(ctx: &mut Ctx<'_, '_, impl Hardware>, id: ObjectId) {
    if let Ok(Object::Ioas(o)) = ctx.client.objects.remove(id) {
        if let Some(ioas) = ctx.pool.take(o.slot) {
            ioas.destroy(ctx.store, ctx.hw.domains());
        }
    }
    ctx.client.compat = None;
}

/// IOMMU_VFIO_IOAS: GET, SET or CLEAR the compat IOAS.
pub(crate) fn vfio_ioas<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_vfio_ioas,
) -> Result<u64> {
    check_reserved(&cmd.reserved)?;
    match cmd.op {
        IOMMU_VFIO_IOAS_GET => cmd.ioas_id = compat(ctx)?.0,
        IOMMU_VFIO_IOAS_SET => {
            ioas_mut(ctx, cmd.ioas_id)?;
            ctx.client.compat = Some(ObjectId(cmd.ioas_id));
        }
        IOMMU_VFIO_IOAS_CLEAR => ctx.client.compat = None,
        _ => return Err(Errno::EOPNOTSUPP),
    }
    Ok(0)
}

/// VFIO_GET_API_VERSION.
pub(crate) fn api_version(_: &mut Ctx<'_, '_, impl Hardware>, _: u64) -> Result<u64> {
    Ok(VFIO_API_VERSION)
}

/// VFIO_CHECK_EXTENSION(`extension` in MR0).
pub(crate) fn check_extension(ctx: &mut Ctx<'_, '_, impl Hardware>, extension: u64) -> Result<u64> {
    if [VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL].contains(&extension) {
        return Ok(1);
    }
    if extension == VFIO_DMA_CC_IOMMU {
        // Linux's iommufd_vfio_cc_iommu: 1 unless a HWPT over the compat
        // IOAS does not enforce coherency (so 1 with none).
        let ioas = compat(ctx)?;
        let objects = &ctx.client.objects;
        let coherent = objects.ids().all(|id| match objects.get(id) {
            Ok(Object::Hwpt(h)) if h.ioas == ioas => ctx.hw.coherent(h.domain),
            _ => true,
        });
        return Ok(u64::from(coherent));
    }
    // NESTING is obsolete, UPDATE_VADDR unsafe to emulate.
    Ok(0)
}

/// VFIO_SET_IOMMU(`kind` in MR0): TYPE1 turns huge pages off so that
/// unmaps may cut mappings; TYPE1v2 changes nothing.
pub(crate) fn set_iommu(ctx: &mut Ctx<'_, '_, impl Hardware>, kind: u64) -> Result<u64> {
    if kind != VFIO_TYPE1_IOMMU && kind != VFIO_TYPE1v2_IOMMU {
        return Err(Errno::EINVAL);
    }
    let id = compat(ctx)?;
    let slot = slot_of(ctx, id)?;
    let ioas = ctx.pool.get_mut(slot)?;
    if kind == VFIO_TYPE1_IOMMU {
        ioas.set_huge_pages(ctx.store, false)?;
    }
    Ok(0)
}

/// VFIO_IOMMU_MAP_DMA: always at the given IOVA.
pub(crate) fn map_dma<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    map: &mut vfio_iommu_type1_dma_map,
) -> Result<u64> {
    if map.flags & !(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) != 0 {
        return Err(Errno::EINVAL);
    }
    let mut prot = Prot::empty();
    prot.set(Prot::READ, map.flags & VFIO_DMA_MAP_FLAG_READ != 0);
    prot.set(Prot::WRITE, map.flags & VFIO_DMA_MAP_FLAG_WRITE != 0);
    let id = compat(ctx)?;
    map_user(
        ctx,
        id.0,
        map.vaddr,
        map.size,
        DstIova::Fixed(map.iova),
        prot,
    )?;
    Ok(0)
}

/// VFIO_IOMMU_UNMAP_DMA: with huge pages off (TYPE1) the range is cut out
/// of larger mappings first; ALL needs iova = size = 0. EIO as
/// IOMMU_IOAS_UNMAP when the IOMMU cannot confirm it.
pub(crate) fn unmap_dma<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    unmap: &mut vfio_iommu_type1_dma_unmap,
) -> Result<u64> {
    if unmap.flags & !VFIO_DMA_UNMAP_FLAG_ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let id = compat(ctx)?;
    let slot = slot_of(ctx, id)?;
    let all = unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL != 0;
    if all && (unmap.iova != 0 || unmap.size != 0) {
        return Err(Errno::EINVAL);
    }
    unmap_gate(ctx, id)?;
    let store = &mut *ctx.store;
    let ioas = ctx.pool.get_mut(slot)?;
    let unmapped = if all {
        ioas.unmap_all(store, ctx.hw.domains())
    } else {
        // Validate before cutting: once the range is sound, every cut lies
        // inside an area the unmap then removes, so a failure cuts nothing.
        if unmap.size == 0 {
            return Err(Errno::EINVAL);
        }
        let range = IovaRange::from_start_len(unmap.iova, unmap.size).ok_or(Errno::EOVERFLOW)?;
        if !ioas.huge_pages() {
            let cuts = [range.last, range.start.wrapping_sub(1)];
            ioas.cut(store, if range.start != 0 { &cuts } else { &cuts[..1] })?;
        }
        ioas.unmap(store, ctx.hw.domains(), unmap.iova, unmap.size)
    };
    unmap.size = contained(ctx, id, unmapped)?;
    Ok(0)
}

/// VFIO's page-size bitmap as Linux's compat layer computes it: the sizes
/// every domain supports, with those below a CPU page replaced by the CPU
/// page (vfio_update_pgsize_bitmap), and never below the IOAS alignment.
fn page_sizes(ioas: &iopt::Ioas) -> u64 {
    let mut sizes = ioas.common_page_sizes();
    if sizes & (iopt::PAGE_SIZE - 1) != 0 {
        sizes = (sizes & !(iopt::PAGE_SIZE - 1)) | iopt::PAGE_SIZE;
    }
    sizes.max(ioas.alignment())
}

/// VFIO_IOMMU_GET_INFO: page sizes and the capability chain DMA_AVAIL then
/// IOVA_RANGE, following the argsz protocol: capabilities that do not fit
/// are not written, `argsz` says how much the whole answer needs and
/// `cap_offset` stays 0 unless all of it fit.
pub(crate) fn get_info<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    info: &mut vfio_iommu_type1_info,
) -> Result<u64> {
    // The caller's own remaining mappings (VFIO's dma_entry_limit): no other
    // client's use shows.
    let account = ctx.store.account(ctx.id);
    let avail = account.map_or(0, |a| a.area_limit.saturating_sub(a.areas));
    let id = compat(ctx)?;
    let ioas = ctx.pool.get(slot_of(ctx, id)?)?;
    let page = ctx.page;
    let given = info.argsz as usize;
    info.flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
    info.iova_pgsizes = page_sizes(ioas);
    info.cap_offset = 0;

    let mut holes = [IovaRange::ALL; MAX_RESERVED + 1];
    let ranges = ioas.iova_ranges(&mut holes);
    let info_size = core::mem::size_of::<vfio_iommu_type1_info>();
    let dma_size = core::mem::size_of::<vfio_iommu_type1_info_dma_avail>().next_multiple_of(8);
    let range_size = core::mem::size_of::<vfio_iova_range>();
    let iova_cap = core::mem::size_of::<vfio_iommu_type1_info_cap_iova_range>();
    let iova_size = (iova_cap + ranges.total * range_size).next_multiple_of(8);
    let (dma_at, iova_at) = (info_size, info_size + dma_size);
    let total = iova_at + iova_size;

    // Each capability is written only where it fits inside argsz.
    if given >= dma_at + dma_size {
        let next = iova_at as u32;
        let header = vfio_info_cap_header {
            id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
            version: 1,
            next,
        };
        let cap = vfio_iommu_type1_info_dma_avail {
            header,
            avail: u32::try_from(avail).unwrap_or(u32::MAX),
        };
        write_at(page, dma_at, &cap)?;
    }
    for (i, hole) in holes.iter().take(ranges.total).enumerate() {
        let at = iova_at + iova_cap + i * range_size;
        if given >= at + range_size {
            write_at(
                page,
                at,
                &vfio_iova_range {
                    start: hole.start,
                    end: hole.last,
                },
            )?;
        }
    }
    if given >= iova_at + iova_cap + ranges.total * range_size {
        let header = vfio_info_cap_header {
            id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
            version: 1,
            next: 0,
        };
        let cap = vfio_iommu_type1_info_cap_iova_range {
            header,
            nr_iovas: ranges.total as u32,
            reserved: 0,
            iova_ranges: [],
        };
        write_at(page, iova_at, &cap)?;
    }
    if given >= total {
        info.cap_offset = info_size as u32;
    }
    info.argsz = total as u32;
    Ok(0)
}
