//! Devices (Linux's iommufd device.c and the VFIO device calls): binding a
//! configured device, attaching it to an IOAS (through an automatic HWPT)
//! or to an explicit HWPT, detaching it, and its hardware information.
//!
//! A device's stream ID never leaves the server: clients name devices by
//! their index in the client's configuration (BIND) and then by object ID.

use iommu_proto::decode::{array_range, check_reserved};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_types::config::MAX_DEVICE_WINDOWS;
use iommu_types::{Errno, IovaRange, StreamId};
use iopt::{Hardware, ReservedOwner};
use zerocopy::IntoBytes;

use crate::client::Ctx;
use crate::hwpt;
use crate::object::{DeviceObject, Object, ObjectId};
use crate::stream::release;
use crate::vfio_compat;

type Result<T> = core::result::Result<T, Errno>;

/// The device object MR1 names.
fn named_device(ctx: &Ctx<'_, '_, impl Hardware>) -> Result<ObjectId> {
    Ok(ObjectId(
        u32::try_from(ctx.device).map_err(|_| Errno::ENOENT)?,
    ))
}

/// VFIO_DEVICE_BIND_IOMMUFD: MR1 is the device's index in the client's
/// configuration; EINVAL if already bound, ENODEV if there is no such device.
pub(crate) fn bind<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut vfio_device_bind_iommufd,
) -> Result<u64> {
    if cmd.flags != 0 {
        return Err(Errno::EINVAL);
    }
    let index = usize::try_from(ctx.device).map_err(|_| Errno::ENODEV)?;
    let config = *ctx.config.devices.get(index).ok_or(Errno::ENODEV)?;
    // One device cannot be bound twice (Linux: EINVAL).
    if ctx.client.objects.bound_device(index).is_some() {
        return Err(Errno::EINVAL);
    }
    let reservation = ctx.client.objects.reserve()?;
    let object = DeviceObject {
        index,
        stream: config.stream_id,
        hwpt: None,
    };
    cmd.out_devid = ctx
        .client
        .objects
        .finalize(reservation, Object::Device(object))
        .0;
    Ok(0)
}

/// The IOVA a device must never be given: its configured windows and
/// everything above its DMA mask.
fn device_windows(
    ctx: &Ctx<'_, '_, impl Hardware>,
    index: usize,
) -> impl Iterator<Item = IovaRange> {
    let config = ctx.config.devices[index];
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
    cmd: &mut vfio_device_attach_iommufd_pt,
) -> Result<u64> {
    // `pasid` is read only with VFIO_DEVICE_ATTACH_PASID, which this SMMU
    // model does not offer.
    if cmd.flags != 0 {
        return Err(Errno::EINVAL);
    }
    let dev = named_device(ctx)?;
    let device = ctx.client.objects.device(dev)?;
    let (index, stream) = (device.index, device.stream);
    // No replace: detach first.
    if device.hwpt.is_some() {
        return Err(Errno::EBUSY);
    }
    // pt_id 0 is the VFIO compat path: the compat IOAS, made if need be.
    let (pt, new_compat) = if cmd.pt_id == 0 {
        let (id, made) = vfio_compat::compat_for_attach(ctx)?;
        (id, made.then_some(id))
    } else {
        (ObjectId(cmd.pt_id), None)
    };
    match attach_to(ctx, dev, index, stream, pt) {
        Ok(hwpt) => {
            cmd.pt_id = hwpt.0;
            Ok(0)
        }
        Err(e) => {
            if let Some(id) = new_compat {
                vfio_compat::drop_new_compat(ctx, id);
            }
            Err(e)
        }
    }
}

fn attach_to<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    dev: ObjectId,
    index: usize,
    stream: StreamId,
    pt: ObjectId,
) -> Result<ObjectId> {
    let (hwpt_id, created) = match ctx.client.objects.get(pt)? {
        Object::Hwpt(_) => (pt, false),
        Object::Ioas(_) => match ctx.client.objects.auto_hwpt(pt) {
            Some(id) => (id, false),
            None => (hwpt::create(ctx, pt, true)?, true),
        },
        Object::Device(_) => return Err(Errno::EINVAL),
    };
    let (ioas, domain) = {
        let h = ctx.client.objects.hwpt_mut(hwpt_id)?;
        (h.ioas, h.domain)
    };
    let owner = ReservedOwner::Device(stream);
    let slot = crate::ioas::slot_of(ctx, ioas)?;
    // The domain may still hold translations the IOMMU never confirmed it
    // forgot: no stream may use it again (a new HWPT gets a new domain).
    if ctx.pool.get(slot)?.tainted(domain) {
        return Err(Errno::EIO);
    }
    let undo = |ctx: &mut Ctx<'_, '_, H>| {
        if let Ok(target) = ctx.pool.get_mut(slot) {
            let _ = target.unreserve(owner);
        }
        if created {
            hwpt::destroy(ctx, hwpt_id);
        }
    };
    let mut windows: heapless::Vec<IovaRange, { MAX_DEVICE_WINDOWS + 1 }> = heapless::Vec::new();
    for window in device_windows(ctx, index) {
        // Server::new refused configurations with more windows.
        windows.push(window).map_err(|_| Errno::ENOMEM)?;
    }
    for window in windows {
        let reserved = match ctx.pool.get_mut(slot) {
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
    ctx.client.objects.hwpt_mut(hwpt_id)?.devices += 1;
    ctx.client.objects.device_mut(dev)?.hwpt = Some(hwpt_id);
    Ok(hwpt_id)
}

/// VFIO_DEVICE_DETACH_IOMMUFD_PT: the stream is quarantined (abort) first;
/// only then are its windows released and an automatic HWPT it leaves
/// empty freed.
pub(crate) fn detach<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut vfio_device_detach_iommufd_pt,
) -> Result<u64> {
    if cmd.flags != 0 {
        return Err(Errno::EINVAL);
    }
    let dev = named_device(ctx)?;
    let device = ctx.client.objects.device(dev)?;
    let (stream, attached) = (device.stream, device.hwpt);
    // Detaching what is not attached succeeds, as in Linux.
    if let Some(hwpt_id) = attached {
        ctx.hw.detach(stream)?;
        release(ctx, dev, stream, hwpt_id);
    }
    Ok(0)
}

/// IOMMU_GET_HW_INFO: the SMMUv3 ID registers behind a bound device,
/// truncated to the caller's buffer (which must lie in its command page)
/// and zero-filled beyond what the server has.
pub(crate) fn hw_info<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_hw_info,
) -> Result<u64> {
    if cmd.flags != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    check_reserved(&cmd.reserved)?;
    ctx.client.objects.device(ObjectId(cmd.dev_id))?;
    let (idr, iidr, aidr) = ctx.hw.id_regs();
    let info = iommu_hw_info_arm_smmuv3 {
        flags: 0,
        reserved: 0,
        idr,
        iidr,
        aidr,
    };
    let bytes = info.as_bytes();
    let page_va = ctx.config.command_page_vaddr;
    let out = array_range(
        page_va,
        ctx.page.len(),
        cmd.data_uptr,
        u64::from(cmd.data_len),
        1,
    )?;
    let copied = out.len().min(bytes.len());
    let zeros = [0u8; 64];
    let mut written = ctx.page.write(out.start, &bytes[..copied]);
    let mut at = out.start + copied;
    while written && at < out.end {
        let n = (out.end - at).min(zeros.len());
        written = ctx.page.write(at, &zeros[..n]);
        at += n;
    }
    if !written {
        return Err(Errno::EFAULT);
    }
    cmd.data_len = bytes.len() as u32;
    cmd.out_data_type = IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
    cmd.out_max_pasid_log2 = 0;
    cmd.out_capabilities = 0;
    Ok(0)
}
