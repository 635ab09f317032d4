//! The op table (Linux's iommufd `IOCTL_OP` and `ucmd`): each operation
//! bound to its request struct and handler. The table copies the struct
//! out of the command page once, under its framing's rules and its
//! minimum size ([`iommu_proto::Request`]), hands the handler that copy
//! and a [`Ctx`], and writes the output fields back: after success, and
//! with EMSGSIZE, whose point is the count it reports.

use iommu_proto::decode::{copy_out, read_request};
use iommu_proto::{Op, Request};
use iommu_types::Errno;
use iopt::Hardware;

use crate::client::Ctx;
use crate::{device, fault, hwpt, ioas, vfio_compat};

type Result<T> = core::result::Result<T, Errno>;

/// A handler of a request with a struct: the decoded struct in, its
/// output fields set; MR0 of the reply out.
type Handler<T, H> = fn(&mut Ctx<'_, '_, H>, &mut T) -> Result<u64>;

/// Runs `op` for the caller in `ctx`; `arg` is MR0 (the struct's size, or
/// a scalar op's argument). RESET_CLIENT acts on another client and is the
/// server's, not the table's.
pub(crate) fn dispatch<H: Hardware>(ctx: &mut Ctx<'_, '_, H>, op: Op, arg: u64) -> Result<u64> {
    match op {
        Op::Destroy => request(ctx, op, arg, destroy),
        Op::IoasAlloc => request(ctx, op, arg, ioas::alloc),
        Op::IoasAllowIovas => request(ctx, op, arg, ioas::allow_iovas),
        Op::IoasCopy => request(ctx, op, arg, ioas::copy),
        Op::IoasIovaRanges => request(ctx, op, arg, ioas::iova_ranges),
        Op::IoasMap => request(ctx, op, arg, ioas::map),
        Op::IoasUnmap => request(ctx, op, arg, ioas::unmap),
        Op::Option => request(ctx, op, arg, ioas::option),
        Op::VfioIoas => request(ctx, op, arg, vfio_compat::vfio_ioas),
        Op::HwptAlloc => request(ctx, op, arg, hwpt::alloc),
        Op::GetHwInfo => request(ctx, op, arg, device::hw_info),
        // Scalar: MR0 is the argument, the page is neither read nor written.
        Op::VfioGetApiVersion => vfio_compat::api_version(ctx, arg),
        Op::VfioCheckExtension => vfio_compat::check_extension(ctx, arg),
        Op::VfioSetIommu => vfio_compat::set_iommu(ctx, arg),
        Op::VfioIommuGetInfo => request(ctx, op, arg, vfio_compat::get_info),
        Op::VfioIommuMapDma => request(ctx, op, arg, vfio_compat::map_dma),
        Op::VfioIommuUnmapDma => request(ctx, op, arg, vfio_compat::unmap_dma),
        Op::VfioDeviceBindIommufd => request(ctx, op, arg, device::bind),
        Op::VfioDeviceAttachIommufdPt => request(ctx, op, arg, device::attach),
        Op::VfioDeviceDetachIommufdPt => request(ctx, op, arg, device::detach),
        Op::FaultRead => request(ctx, op, arg, fault::read),
        // They act on, or read, other clients: Server::dispatch has them.
        // FAULT_RESUME waits on the IOMMU's backlog, the server's own.
        Op::ResetClient | Op::Quarantine | Op::Dump | Op::FaultResume => Err(Errno::EINVAL),
    }
}

/// Whether `op` could give one of the caller's devices a translation
/// again: what a manager's hold (quarantine) refuses, EPERM once the
/// request is decoded, whatever state a reset left behind (a stream that
/// would not stop keeps its domain, and a map or copy into that domain's
/// IOAS would reach it). The match names every op, so a new one must be
/// decided here.
pub(crate) fn could_translate_again(op: Op) -> bool {
    match op {
        // A device bound, attached (to an IOAS, a HWPT or the compat IOAS;
        // an attached one is EBUSY, there is no replace), a new domain.
        Op::VfioDeviceBindIommufd | Op::VfioDeviceAttachIommufdPt | Op::HwptAlloc => true,
        // New IOVA in an IOAS a stuck stream's domain may mirror.
        Op::IoasMap | Op::IoasCopy | Op::VfioIommuMapDma => true,
        // They take translations away, only read, or shape an IOAS without
        // mapping anything into it.
        Op::Destroy
        | Op::IoasAlloc
        | Op::IoasAllowIovas
        | Op::IoasIovaRanges
        | Op::IoasUnmap
        | Op::Option
        | Op::VfioIoas
        | Op::GetHwInfo
        | Op::VfioGetApiVersion
        | Op::VfioCheckExtension
        | Op::VfioSetIommu
        | Op::VfioIommuGetInfo
        | Op::VfioIommuUnmapDma
        | Op::VfioDeviceDetachIommufdPt
        | Op::FaultRead
        | Op::ResetClient
        | Op::Quarantine
        | Op::Dump
        // Records a storming device's faults again; translates nothing.
        | Op::FaultResume => false,
    }
}

/// Decode, handle, respond. The struct's type comes from the handler, and
/// must be the one `op` is declared with: a table entry pairing an op with
/// another op's handler is refused (and caught by the tests).
fn request<T: Request, H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    op: Op,
    size: u64,
    handler: Handler<T, H>,
) -> Result<u64> {
    if T::OP != op {
        return Err(Errno::ENOTTY);
    }
    let mut cmd: T = read_request(ctx.page, size)?;
    if ctx.client.held && could_translate_again(op) {
        return Err(Errno::EPERM);
    }
    let result = handler(ctx, &mut cmd);
    if matches!(result, Ok(_) | Err(Errno::EMSGSIZE)) {
        // read_request checked that `size` bytes fit in the page, so this
        // cannot fail.
        copy_out(ctx.page, size, &cmd)?;
    }
    result
}

/// IOMMU_DESTROY (see [`crate::object`]).
fn destroy<H: Hardware>(
    ctx: &mut Ctx<'_, '_, H>,
    cmd: &mut iommu_proto::iommufd::iommu_destroy,
) -> Result<u64> {
    let id = crate::object::ObjectId(cmd.id);
    ctx.client
        .objects
        .destroy(id, ctx.store, ctx.pool, ctx.hw)?;
    Ok(0)
}
