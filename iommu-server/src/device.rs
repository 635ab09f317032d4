//! Devices and hardware page tables (Linux's iommufd device.c and
//! hw_pagetable.c): binding a configured device, attaching it to an IOAS
//! (through an automatic HWPT) or to an explicit HWPT, detaching it.
//!
//! A device's stream ID never leaves the server: clients name devices by
//! their index in the client's configuration (BIND) and then by object ID.

use iommu_proto::decode::{array_range, check_reserved, copy_out, read_request};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::Errno;
use iopt::{IovaRange, ReservedOwner};
use zerocopy::IntoBytes;

use crate::ioas::ioas_mut;
use crate::object::ObjectId;
use crate::{Ctx, DeviceObject, Hardware, HwptObject, Object};

type Result<T> = core::result::Result<T, Errno>;

fn device(
    ctx: &Ctx<'_, '_, impl Hardware>,
    id: ObjectId,
) -> Result<(usize, u32, Option<ObjectId>)> {
    match ctx.client.objects.get(id)? {
        Object::Device(d) => Ok((d.index, d.stream, d.hwpt)),
        _ => Err(Errno::ENOENT),
    }
}

fn hwpt_mut<'c>(
    ctx: &'c mut Ctx<'_, '_, impl Hardware>,
    id: ObjectId,
) -> Result<&'c mut HwptObject> {
    match ctx.client.objects.get_mut(id)? {
        Object::Hwpt(h) => Ok(h),
        _ => Err(Errno::ENOENT),
    }
}

fn ioas_hwpts<'c>(ctx: &'c mut Ctx<'_, '_, impl Hardware>, id: ObjectId) -> Result<&'c mut u32> {
    match ctx.client.objects.get_mut(id)? {
        Object::Ioas(o) => Ok(&mut o.hwpts),
        _ => Err(Errno::ENOENT),
    }
}

/// A new HWPT over IOAS `ioas`: an object slot, a domain, every area
/// mapped into it. Nothing remains if any step fails.
pub(crate) fn create_hwpt<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    ioas: ObjectId,
    auto: bool,
) -> Result<ObjectId> {
    ioas_hwpts(ctx, ioas)?;
    let reservation = ctx.client.objects.reserve()?;
    let domain = match ctx
        .hw
        .domain_alloc(ctx.index, ctx.client.config.quota.table_pages)
    {
        Ok(domain) => domain,
        Err(e) => {
            ctx.client.objects.abort(reservation);
            return Err(e);
        }
    };
    let filled = match ioas_mut(ctx.client, ioas.0) {
        Ok(target) => target.attach_domain(ctx.store, ctx.hw.domains(), domain),
        Err(e) => Err(e),
    };
    if let Err(e) = filled {
        ctx.hw.domain_free(domain);
        ctx.client.objects.abort(reservation);
        return Err(e);
    }
    if let Ok(count) = ioas_hwpts(ctx, ioas) {
        *count += 1;
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

/// Removes a HWPT no device uses: its domain is emptied, detached from the
/// IOAS and freed.
pub(crate) fn destroy_hwpt<H: Hardware>(ctx: &mut Ctx<'_, '_, H>, id: ObjectId) {
    let Ok(Object::Hwpt(hwpt)) = ctx.client.objects.remove(id) else {
        return;
    };
    if let Ok(ioas) = ioas_mut(ctx.client, hwpt.ioas.0) {
        let _ = ioas.detach_domain(ctx.store, ctx.hw.domains(), hwpt.domain);
    }
    ctx.hw.domain_free(hwpt.domain);
    if let Ok(count) = ioas_hwpts(ctx, hwpt.ioas) {
        *count = count.saturating_sub(1);
    }
}

/// VFIO_DEVICE_BIND_IOMMUFD: MR1 is the device's index in the client's
/// configuration; EINVAL if already bound, ENODEV if there is no such device.
pub(crate) fn bind<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    page: &mut [u8],
    size: u64,
    index: u64,
) -> Result<u64> {
    let mut cmd: vfio_device_bind_iommufd = read_request(page, size)?;
    if cmd.flags != 0 {
        return Err(Errno::EINVAL);
    }
    let index = usize::try_from(index).map_err(|_| Errno::ENODEV)?;
    let config = *ctx.client.config.devices.get(index).ok_or(Errno::ENODEV)?;
    let objects = &ctx.client.objects;
    let bound = objects
        .ids()
        .any(|id| matches!(objects.get(id), Ok(Object::Device(d)) if d.index == index));
    // One device cannot be bound twice (Linux: EINVAL).
    if bound {
        return Err(Errno::EINVAL);
    }
    let reservation = ctx.client.objects.reserve()?;
    cmd.out_devid = reservation.id().0;
    if let Err(e) = copy_out(page, size, &cmd) {
        ctx.client.objects.abort(reservation);
        return Err(e);
    }
    let object = DeviceObject {
        index,
        stream: config.stream_id,
        hwpt: None,
    };
    ctx.client
        .objects
        .finalize(reservation, Object::Device(object));
    Ok(0)
}

/// The IOVA a device must never be given: its configured windows and
/// everything above its DMA mask.
fn device_windows(
    ctx: &Ctx<'_, '_, impl Hardware>,
    index: usize,
) -> impl Iterator<Item = IovaRange> {
    let config = ctx.client.config.devices[index];
    let above_mask = config
        .dma_mask
        .checked_add(1)
        .map(|start| IovaRange::new(start, u64::MAX));
    config.reserved.iter().copied().chain(above_mask)
}

/// VFIO_DEVICE_ATTACH_IOMMUFD_PT: MR1 names the device object; `pt_id` an
/// IOAS (the first automatic HWPT of it is reused, else one is made) or a
/// HWPT, and returns the HWPT used. The device's windows become reserved
/// in the IOAS; a collision with mappings or allowed ranges fails the
/// attach and changes nothing.
pub(crate) fn attach<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    page: &mut [u8],
    size: u64,
    dev: u64,
) -> Result<u64> {
    let mut cmd: vfio_device_attach_iommufd_pt = read_request(page, size)?;
    // `pasid` is read only with VFIO_DEVICE_ATTACH_PASID, which this SMMU
    // model does not offer.
    if cmd.flags != 0 {
        return Err(Errno::EINVAL);
    }
    let dev = ObjectId(u32::try_from(dev).map_err(|_| Errno::ENOENT)?);
    let (index, stream, attached) = device(ctx, dev)?;
    // No replace: detach first.
    if attached.is_some() {
        return Err(Errno::EBUSY);
    }
    // pt_id 0 is the VFIO compat path: the compat IOAS, made if need be.
    let (pt, new_compat) = if cmd.pt_id == 0 {
        let (id, made) = crate::vfio_compat::compat_for_attach(ctx)?;
        (id, made.then_some(id))
    } else {
        (ObjectId(cmd.pt_id), None)
    };
    let result = attach_to(ctx, dev, index, stream, pt);
    match result {
        Ok(hwpt) => {
            cmd.pt_id = hwpt.0;
            copy_out(page, size, &cmd)?;
            Ok(0)
        }
        Err(e) => {
            if let Some(id) = new_compat {
                crate::vfio_compat::drop_new_compat(ctx, id);
            }
            Err(e)
        }
    }
}

fn attach_to<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    dev: ObjectId,
    index: usize,
    stream: u32,
    pt: ObjectId,
) -> Result<ObjectId> {
    let (hwpt_id, created) = match ctx.client.objects.get(pt)? {
        Object::Hwpt(_) => (pt, false),
        Object::Ioas(_) => {
            let objects = &ctx.client.objects;
            let reuse = objects.ids().find(
                |&id| matches!(objects.get(id), Ok(Object::Hwpt(h)) if h.auto && h.ioas == pt),
            );
            match reuse {
                Some(id) => (id, false),
                None => (create_hwpt(ctx, pt, true)?, true),
            }
        }
        Object::Device(_) => return Err(Errno::EINVAL),
    };
    let (ioas, domain) = {
        let h = hwpt_mut(ctx, hwpt_id)?;
        (h.ioas, h.domain)
    };
    let owner = ReservedOwner::Device(stream);
    let undo = |ctx: &mut Ctx<'_, '_, H>| {
        if let Ok(target) = ioas_mut(ctx.client, ioas.0) {
            let _ = target.unreserve(owner);
        }
        if created {
            destroy_hwpt(ctx, hwpt_id);
        }
    };
    let mut windows: heapless::Vec<IovaRange, { crate::config::MAX_DEVICE_WINDOWS + 1 }> =
        heapless::Vec::new();
    for window in device_windows(ctx, index) {
        // Server::new refused configurations with more windows.
        windows.push(window).map_err(|_| Errno::ENOMEM)?;
    }
    for window in windows {
        let reserved = match ioas_mut(ctx.client, ioas.0) {
            Ok(target) => target.reserve(ctx.store, window, owner),
            Err(e) => Err(e),
        };
        if let Err(e) = reserved {
            undo(ctx);
            return Err(e);
        }
    }
    if let Err(e) = ctx.hw.attach(stream, domain) {
        undo(ctx);
        return Err(e);
    }
    hwpt_mut(ctx, hwpt_id)?.devices += 1;
    if let Ok(Object::Device(d)) = ctx.client.objects.get_mut(dev) {
        d.hwpt = Some(hwpt_id);
    }
    Ok(hwpt_id)
}

/// VFIO_DEVICE_DETACH_IOMMUFD_PT: the stream is quarantined (abort) first;
/// only then are its windows released and an automatic HWPT it leaves
/// empty freed.
pub(crate) fn detach<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    page: &mut [u8],
    size: u64,
    dev: u64,
) -> Result<u64> {
    let cmd: vfio_device_detach_iommufd_pt = read_request(page, size)?;
    if cmd.flags != 0 {
        return Err(Errno::EINVAL);
    }
    let dev = ObjectId(u32::try_from(dev).map_err(|_| Errno::ENOENT)?);
    let (_, stream, attached) = device(ctx, dev)?;
    // Detaching what is not attached succeeds, as in Linux.
    if let Some(hwpt_id) = attached {
        detach_device(ctx, dev, stream, hwpt_id)?;
    }
    Ok(0)
}

pub(crate) fn detach_device<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    dev: ObjectId,
    stream: u32,
    hwpt_id: ObjectId,
) -> Result<()> {
    ctx.hw.detach(stream)?;
    release_device(ctx, dev, stream, hwpt_id);
    Ok(())
}

/// The bookkeeping after a stream was quarantined: the device is detached,
/// its windows released, an automatic HWPT it leaves empty freed.
fn release_device<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    dev: ObjectId,
    stream: u32,
    hwpt_id: ObjectId,
) {
    if let Ok(Object::Device(d)) = ctx.client.objects.get_mut(dev) {
        d.hwpt = None;
    }
    let Ok(hwpt) = hwpt_mut(ctx, hwpt_id) else {
        return;
    };
    hwpt.devices = hwpt.devices.saturating_sub(1);
    let (ioas, auto, devices) = (hwpt.ioas, hwpt.auto, hwpt.devices);
    if let Ok(target) = ioas_mut(ctx.client, ioas.0) {
        let _ = target.unreserve(ReservedOwner::Device(stream));
    }
    if auto && devices == 0 {
        destroy_hwpt(ctx, hwpt_id);
    }
}

/// IOMMU_HWPT_ALLOC: an explicit HWPT over an IOAS for a bound device.
/// Never reused by attaches to the IOAS; destroyed only by DESTROY.
pub(crate) fn hwpt_alloc<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    page: &mut [u8],
    size: u64,
) -> Result<u64> {
    let mut cmd: iommu_hwpt_alloc = read_request(page, size)?;
    // No nesting, dirty tracking, PASID or fault objects on this SMMU model.
    if cmd.flags != 0 || cmd.data_type != IOMMU_HWPT_DATA_NONE {
        return Err(Errno::EOPNOTSUPP);
    }
    check_reserved(&cmd.reserved)?;
    check_reserved(&cmd.reserved2)?;
    // data_len/data_uptr go with a data type and fault_id with its flag,
    // neither of which is offered: ignored, as Linux ignores them.
    device(ctx, ObjectId(cmd.dev_id))?;
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
    let id = create_hwpt(ctx, ObjectId(cmd.pt_id), false)?;
    cmd.out_hwpt_id = id.0;
    if let Err(e) = copy_out(page, size, &cmd) {
        destroy_hwpt(ctx, id);
        return Err(e);
    }
    Ok(0)
}

/// IOMMU_GET_HW_INFO: the SMMUv3 ID registers behind a bound device,
/// truncated to the caller's buffer (which must lie in its command page)
/// and zero-filled beyond what the server has.
pub(crate) fn hw_info<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    page: &mut [u8],
    size: u64,
) -> Result<u64> {
    let mut cmd: iommu_hw_info = read_request(page, size)?;
    if cmd.flags != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    check_reserved(&cmd.reserved)?;
    device(ctx, ObjectId(cmd.dev_id))?;
    let (idr, iidr, aidr) = ctx.hw.id_regs();
    let info = iommu_hw_info_arm_smmuv3 {
        flags: 0,
        reserved: 0,
        idr,
        iidr,
        aidr,
    };
    let bytes = info.as_bytes();
    let page_va = ctx.client.config.command_page_vaddr;
    let out = array_range(
        page_va,
        page.len(),
        cmd.data_uptr,
        u64::from(cmd.data_len),
        1,
    )?;
    let copied = out.len().min(bytes.len());
    page[out.start..out.start + copied].copy_from_slice(&bytes[..copied]);
    page[out.start + copied..out.end].fill(0);
    cmd.data_len = bytes.len() as u32;
    cmd.out_data_type = IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
    cmd.out_max_pasid_log2 = 0;
    cmd.out_capabilities = 0;
    copy_out(page, size, &cmd)?;
    Ok(0)
}

/// Quarantine then teardown of everything the client holds; see
/// [`crate::Server::reset_client`].
pub(crate) fn revoke<H: Hardware>(ctx: &mut Ctx<'_, '_, H>) -> Result<()> {
    let mut stuck = false;
    let ids: heapless::Vec<ObjectId, { crate::MAX_OBJECTS }> = ctx.client.objects.ids().collect();
    for &id in &ids {
        let Ok(Object::Device(d)) = ctx.client.objects.get(id) else {
            continue;
        };
        let (stream, hwpt) = (d.stream, d.hwpt);
        if let Some(hwpt) = hwpt {
            // Each stream that stops is released at once, so a reset that
            // fails part way leaves consistent records to retry from.
            match ctx.hw.detach(stream) {
                Ok(()) => release_device(ctx, id, stream, hwpt),
                Err(_) => stuck = true,
            }
        }
    }
    if stuck {
        return Err(Errno::EBUSY);
    }
    // Every stream is stopped: now nothing can reach what goes next.
    for &id in &ids {
        if let Ok(Object::Device(_)) = ctx.client.objects.get(id) {
            let _ = ctx.client.objects.remove(id);
        }
    }
    for &id in &ids {
        if let Ok(Object::Hwpt(h)) = ctx.client.objects.get_mut(id) {
            h.devices = 0;
            destroy_hwpt(ctx, id);
        }
    }
    for &id in &ids {
        if let Ok(Object::Ioas(o)) = ctx.client.objects.remove(id) {
            o.ioas.destroy(ctx.store, ctx.hw.domains());
        }
    }
    ctx.client.compat = None;
    ctx.client.faults.clear();
    Ok(())
}
