//! The IOMMU server's client library: typed objects over the protocol of
//! `iommu-proto`, for driver PDs.
//!
//! [`Iommu`] speaks to the server through a [`Transport`]: the Microkit
//! one ([`MicrokitTransport`]: a command page and a protected call on a
//! channel), or any other that moves the same bytes (the bare-metal demo
//! calls the server core directly). Object handles are the server's IDs,
//! meaningful only to this client; a [`Mapping`] borrows the
//! [`DmaBuffer`] it maps, so the buffer cannot go away while a device can
//! reach it.

#![no_std]
#![forbid(unsafe_code)]

use core::marker::PhantomData;

use iommu_proto::fault::{
    IOMMU_FAULT_RECORD_ADDR_VALID, IOMMU_FAULT_RECORD_LOST, IOMMU_FAULT_RECORD_VALID,
};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{iommu_fault_record, Errno, Op, Request, MR_DEVICE, MR_SIZE};

/// Bytes of the command page.
pub const COMMAND_PAGE: usize = 4096;

/// Moves one request to the server and its reply back.
pub trait Transport {
    /// Writes `bytes` at the start of the command page.
    fn write_page(&mut self, bytes: &[u8]);
    /// Reads the start of the command page into `out`.
    fn read_page(&mut self, out: &mut [u8]);
    /// One call: `label` and MR0, MR1 in; the reply label (0 or an errno)
    /// and MR0 out.
    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64);
}

/// Memory a client reads and writes besides the device (volatile for
/// shared memory).
pub trait Memory {
    /// Copies out from `offset`; false when that leaves the memory.
    fn read(&self, offset: usize, out: &mut [u8]) -> bool;
    /// Copies in at `offset`; false when that leaves the memory.
    fn write(&self, offset: usize, bytes: &[u8]) -> bool;
}

impl Memory for microkit::SharedMemory {
    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        microkit::SharedMemory::read(self, offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        microkit::SharedMemory::write(self, offset, bytes)
    }
}

/// A DMA region of this client: where the client sees it, and its memory.
#[derive(Debug)]
pub struct DmaBuffer<M> {
    vaddr: u64,
    len: u64,
    mem: M,
}

impl<M: Memory> DmaBuffer<M> {
    /// The region at `vaddr` in this client, `len` bytes of `mem`.
    pub fn new(vaddr: u64, len: u64, mem: M) -> Self {
        DmaBuffer { vaddr, len, mem }
    }

    pub fn vaddr(&self) -> u64 {
        self.vaddr
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn memory(&self) -> &M {
        &self.mem
    }
}

/// What a device may do to a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn flags(self) -> u32 {
        match self {
            Access::Read => IOMMU_IOAS_MAP_READABLE,
            Access::Write => IOMMU_IOAS_MAP_WRITEABLE,
            Access::ReadWrite => IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        }
    }
}

/// An IO address space.
#[derive(Debug, PartialEq, Eq)]
pub struct Ioas(u32);

/// A bound device: its object ID and its index in this client's
/// configuration.
#[derive(Debug, PartialEq, Eq)]
pub struct Device {
    id: u32,
    index: u32,
}

/// A hardware page table allocated with HWPT_ALLOC.
#[derive(Debug, PartialEq, Eq)]
pub struct Hwpt(u32);

impl Ioas {
    pub fn id(&self) -> u32 {
        self.0
    }

    /// A handle for an arbitrary ID, to show that one client's IDs mean
    /// nothing to another.
    #[doc(hidden)]
    pub fn from_raw_for_tests(id: u32) -> Ioas {
        Ioas(id)
    }
}

impl Device {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Hwpt {
    pub fn id(&self) -> u32 {
        self.0
    }
}

/// A range of a [`DmaBuffer`] mapped into an IOAS; cannot outlive the
/// buffer. Unmap it with [`Iommu::unmap`]; dropping it leaves the mapping
/// in place until the IOAS is destroyed or the client is reset.
#[derive(Debug)]
#[must_use = "a mapping stays until unmapped"]
pub struct Mapping<'b> {
    ioas: u32,
    iova: u64,
    len: u64,
    _buffer: PhantomData<&'b ()>,
}

impl Mapping<'_> {
    /// The device address of the mapped range.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A DMA fault the server attributed to this client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The device's index in this client's configuration.
    pub device: u32,
    /// The SMMUv3 event type (`IOMMU_FAULT_KIND_*`).
    pub kind: u32,
    pub iova: Option<u64>,
    /// `IOMMU_FAULT_ACCESS_*`.
    pub access: u32,
}

/// What one FAULT read returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRead {
    /// The oldest queued fault, if there was one.
    pub fault: Option<Fault>,
    /// Faults of this client lost to its full queue since the last read.
    pub dropped: u64,
    /// The IOMMU itself lost records since the last read; some may have
    /// been this client's (how many is unknown).
    pub lost: bool,
    /// Faults still queued.
    pub remaining: u64,
}

/// The server, as seen by one client.
#[derive(Debug)]
pub struct Iommu<T> {
    transport: T,
}

type Result<T> = core::result::Result<T, Errno>;

fn errno(label: u64) -> Errno {
    Errno::from_code(label).unwrap_or(Errno::EINVAL)
}

impl<T: Transport> Iommu<T> {
    pub fn new(transport: T) -> Self {
        Iommu { transport }
    }

    pub fn transport(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Sends `req` (size in MR0, `mr1` in MR1) and reads it back with the
    /// server's output fields; returns the reply's MR0.
    pub fn call<R: Request>(&mut self, req: &mut R, mr1: u64) -> Result<u64> {
        let mut mrs = [0u64; 2];
        mrs[MR_SIZE] = core::mem::size_of::<R>() as u64;
        mrs[MR_DEVICE] = mr1;
        self.transport.write_page(req.as_bytes());
        let (label, mr0) = self.transport.call(R::OP.label(), mrs);
        if label != 0 {
            return Err(errno(label));
        }
        self.transport.read_page(req.as_mut_bytes());
        Ok(mr0)
    }

    /// A scalar op: its argument in MR0, no struct.
    pub fn call_scalar(&mut self, op: Op, arg: u64) -> Result<u64> {
        self.call_scalar2(op, arg, 0)
    }

    /// A scalar op with a second argument in MR1.
    pub fn call_scalar2(&mut self, op: Op, arg: u64, arg1: u64) -> Result<u64> {
        let (label, mr0) = self.transport.call(op.label(), [arg, arg1]);
        if label != 0 {
            return Err(errno(label));
        }
        Ok(mr0)
    }

    pub fn ioas_alloc(&mut self) -> Result<Ioas> {
        let mut req = iommu_ioas_alloc {
            size: core::mem::size_of::<iommu_ioas_alloc>() as u32,
            ..Default::default()
        };
        self.call(&mut req, 0)?;
        Ok(Ioas(req.out_ioas_id))
    }

    fn destroy_id(&mut self, id: u32) -> Result<()> {
        let mut req = iommu_destroy {
            size: core::mem::size_of::<iommu_destroy>() as u32,
            id,
        };
        self.call(&mut req, 0).map(|_| ())
    }

    /// Destroys an IOAS; on failure (EBUSY while devices use it) it is
    /// handed back.
    pub fn destroy_ioas(&mut self, ioas: Ioas) -> core::result::Result<(), (Errno, Ioas)> {
        self.destroy_id(ioas.0).map_err(|e| (e, ioas))
    }

    pub fn destroy_hwpt(&mut self, hwpt: Hwpt) -> core::result::Result<(), (Errno, Hwpt)> {
        self.destroy_id(hwpt.0).map_err(|e| (e, hwpt))
    }

    /// Unbinds a device (detach it first).
    pub fn unbind(&mut self, device: Device) -> core::result::Result<(), (Errno, Device)> {
        self.destroy_id(device.id).map_err(|e| (e, device))
    }

    /// Maps `len` bytes of `buffer` from `offset`, at `iova` or wherever
    /// the server finds room.
    pub fn map<'b, M: Memory>(
        &mut self,
        ioas: &Ioas,
        buffer: &'b DmaBuffer<M>,
        offset: u64,
        len: u64,
        access: Access,
        iova: Option<u64>,
    ) -> Result<Mapping<'b>> {
        let end = offset.checked_add(len).ok_or(Errno::EOVERFLOW)?;
        if end > buffer.len {
            return Err(Errno::EFAULT);
        }
        let mut flags = access.flags();
        if iova.is_some() {
            flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
        }
        let mut req = iommu_ioas_map {
            size: core::mem::size_of::<iommu_ioas_map>() as u32,
            flags,
            ioas_id: ioas.0,
            reserved: 0,
            user_va: buffer.vaddr + offset,
            length: len,
            iova: iova.unwrap_or(0),
        };
        self.call(&mut req, 0)?;
        Ok(Mapping {
            ioas: ioas.0,
            iova: req.iova,
            len,
            _buffer: PhantomData,
        })
    }

    /// Unmaps a mapping; on failure it is handed back.
    pub fn unmap<'b>(
        &mut self,
        mapping: Mapping<'b>,
    ) -> core::result::Result<(), (Errno, Mapping<'b>)> {
        let mut req = iommu_ioas_unmap {
            size: core::mem::size_of::<iommu_ioas_unmap>() as u32,
            ioas_id: mapping.ioas,
            iova: mapping.iova,
            length: mapping.len,
        };
        match self.call(&mut req, 0) {
            Ok(_) => Ok(()),
            Err(e) => Err((e, mapping)),
        }
    }

    /// Binds the device at `index` of this client's configuration.
    pub fn bind(&mut self, index: u32) -> Result<Device> {
        let mut req = vfio_device_bind_iommufd {
            argsz: core::mem::size_of::<vfio_device_bind_iommufd>() as u32,
            ..Default::default()
        };
        self.call(&mut req, u64::from(index))?;
        Ok(Device {
            id: req.out_devid,
            index,
        })
    }

    fn attach_pt(&mut self, device: &Device, pt_id: u32) -> Result<u32> {
        let mut req = vfio_device_attach_iommufd_pt {
            argsz: core::mem::size_of::<vfio_device_attach_iommufd_pt>() as u32,
            flags: 0,
            pt_id,
            pasid: 0,
        };
        self.call(&mut req, u64::from(device.id))?;
        Ok(req.pt_id)
    }

    /// Attaches a device to an IOAS (through an automatic HWPT); returns
    /// the HWPT's ID.
    pub fn attach(&mut self, device: &Device, ioas: &Ioas) -> Result<u32> {
        self.attach_pt(device, ioas.0)
    }

    /// Attaches a device to a HWPT from [`Iommu::hwpt_alloc`].
    pub fn attach_hwpt(&mut self, device: &Device, hwpt: &Hwpt) -> Result<()> {
        self.attach_pt(device, hwpt.0).map(|_| ())
    }

    /// Detaches a device: its DMA is blocked from the moment this returns.
    pub fn detach(&mut self, device: &Device) -> Result<()> {
        let mut req = vfio_device_detach_iommufd_pt {
            argsz: core::mem::size_of::<vfio_device_detach_iommufd_pt>() as u32,
            ..Default::default()
        };
        self.call(&mut req, u64::from(device.id)).map(|_| ())
    }

    /// A HWPT for `device` mirroring `ioas`.
    pub fn hwpt_alloc(&mut self, device: &Device, ioas: &Ioas) -> Result<Hwpt> {
        let mut req = iommu_hwpt_alloc {
            size: core::mem::size_of::<iommu_hwpt_alloc>() as u32,
            dev_id: device.id,
            pt_id: ioas.0,
            ..Default::default()
        };
        self.call(&mut req, 0)?;
        Ok(Hwpt(req.out_hwpt_id))
    }

    /// The oldest queued DMA fault, if any, and what was lost.
    pub fn read_fault(&mut self) -> Result<FaultRead> {
        let mut rec = iommu_fault_record {
            size: core::mem::size_of::<iommu_fault_record>() as u32,
            ..Default::default()
        };
        let remaining = self.call(&mut rec, 0)?;
        let fault = (rec.out_flags & IOMMU_FAULT_RECORD_VALID != 0).then_some(Fault {
            device: rec.dev_index,
            kind: rec.kind,
            iova: (rec.out_flags & IOMMU_FAULT_RECORD_ADDR_VALID != 0).then_some(rec.iova),
            access: rec.access,
        });
        Ok(FaultRead {
            fault,
            dropped: rec.overflow,
            lost: rec.out_flags & IOMMU_FAULT_RECORD_LOST != 0,
            remaining,
        })
    }

    /// Resets client `target` (the manager), or this client itself: its
    /// devices are quarantined, then everything it holds is torn down.
    pub fn reset(&mut self, target: u64) -> Result<()> {
        self.call_scalar(Op::ResetClient, target).map(|_| ())
    }

    /// Holds client `target`'s devices in quarantine (a manager): it is
    /// reset and may not bind any device until [`Iommu::release`].
    pub fn hold(&mut self, target: u64) -> Result<()> {
        self.call_scalar2(Op::Quarantine, target, 1).map(|_| ())
    }

    /// The server's text report on client `target` (its index), or on the
    /// server with [`iommu_proto::dump::IOMMU_DUMP_SERVER`] (a manager):
    /// read through the command page, whose client address is `page_va`,
    /// a piece at a time, each piece handed to `sink`. Returns the
    /// report's length.
    pub fn dump(&mut self, page_va: u64, target: u32, mut sink: impl FnMut(&[u8])) -> Result<u64> {
        // The pieces follow the request struct in the page.
        const AT: usize = 64;
        const PIECE: usize = 512;
        let mut offset = 0;
        loop {
            let mut req = iommu_proto::dump::iommu_dump {
                size: core::mem::size_of::<iommu_proto::dump::iommu_dump>() as u32,
                target,
                length: PIECE as u32,
                reserved: 0,
                offset,
                data_uptr: page_va + AT as u64,
                out_total: 0,
            };
            self.call(&mut req, 0)?;
            let len = (req.length as usize).min(PIECE);
            let mut buf = [0u8; AT + PIECE];
            self.transport.read_page(&mut buf[..AT + len]);
            sink(&buf[AT..AT + len]);
            offset += len as u64;
            if len == 0 || offset >= req.out_total {
                return Ok(req.out_total);
            }
        }
    }

    /// Ends a hold on client `target` (a manager).
    pub fn release(&mut self, target: u64) -> Result<()> {
        self.call_scalar2(Op::Quarantine, target, 0).map(|_| ())
    }

    /// Holds static IO address space `space` (its index in the
    /// configuration) in quarantine (a manager): its device's stream
    /// aborts until [`Iommu::release_static`].
    pub fn hold_static(&mut self, space: u64) -> Result<()> {
        let target = space | iommu_proto::IOMMU_QUARANTINE_STATIC;
        self.call_scalar2(Op::Quarantine, target, 1).map(|_| ())
    }

    /// Ends a hold on static space `space`: its device's DMA reaches its
    /// iomaps again.
    pub fn release_static(&mut self, space: u64) -> Result<()> {
        let target = space | iommu_proto::IOMMU_QUARANTINE_STATIC;
        self.call_scalar2(Op::Quarantine, target, 0).map(|_| ())
    }
}

/// The Microkit transport: a command page shared with the server and a
/// protected call on the channel to it.
#[derive(Debug)]
pub struct MicrokitTransport {
    pub channel: microkit::Channel,
    pub page: microkit::SharedMemory,
}

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "microkit-pd"))]
impl Transport for MicrokitTransport {
    fn write_page(&mut self, bytes: &[u8]) {
        self.page.write(0, bytes);
    }

    fn read_page(&mut self, out: &mut [u8]) {
        self.page.read(0, out);
    }

    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64) {
        microkit::set_mr(0, mrs[0]);
        microkit::set_mr(1, mrs[1]);
        let reply = microkit::pp_call(self.channel, microkit::MessageInfo::new(label, 2));
        (reply.label(), microkit::get_mr(0))
    }
}
