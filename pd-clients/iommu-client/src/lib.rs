//! The IOMMU server's client library: typed objects over the protocol of
//! `iommu-proto`, for driver PDs.
//!
//! [`Iommu`] speaks to the server through a [`Transport`]: the Microkit
//! one ([`MicrokitTransport`]: a command page and a protected call on a
//! channel), or any other that moves the same bytes (the bare-metal demo
//! calls the server core directly). Object handles are the server's IDs,
//! meaningful only to this client; a [`Mapping`] borrows the
//! [`DmaBuffer`] it maps, so the buffer cannot go away while a device can
//! reach it. A buffer's memory is any [`mmio::Memory`] (bounded byte
//! copies), as the server's command pages and the device libraries'
//! queues are.
//!
//! # Example
//!
//! A driver gives its device a DMA window onto its buffer: bind the
//! device, allocate an IO address space, attach the device to it, map the
//! buffer, tell the device the IO address, unmap when done. Here the
//! server core runs in the same program, in a testkit rig with mock
//! hardware, so the example can check what the device would reach; a
//! driver PD does the same over a [`MicrokitTransport`].
//!
//! ```
//! use std::cell::RefCell;
//! use std::rc::Rc;
//!
//! use iommu_client::{Access, DmaBuffer, Iommu};
//! use iommu_testkit::rig::{client, device, region};
//! use iommu_testkit::{HeapMemory, MockHw, Rig, RigTransport};
//! use iommu_types::config::{DeviceConfig, Region};
//! use iommu_types::{Errno, StreamId};
//!
//! // What sysgen generates from iommu.xml: one driver whose 64 KiB DMA
//! // region it sees at 0x3000_0000 (physical 0x6000_0000), and its one
//! // device, which emits stream 8.
//! static REGIONS: [Region; 1] = [region(0x3000_0000, 0x1_0000, 0x6000_0000)];
//! static DEVICES: [DeviceConfig; 1] = [device("edu", 8)];
//! let driver = client("driver").regions(&REGIONS).devices(&DEVICES).build();
//! let rig = Rc::new(RefCell::new(Rig::new(MockHw::new(), &[driver])));
//!
//! let mut iommu = Iommu::new(RigTransport::new(&rig, 0));
//! let buffer = DmaBuffer::new(0x3000_0000, 0x1_0000, HeapMemory::zeroed(0x1_0000));
//!
//! let device = iommu.bind(0)?; // the first device of the configuration
//! let ioas = iommu.ioas_alloc()?;
//! iommu.attach(&device, &ioas)?;
//! // 8 KiB of the buffer from offset 0x1000, anywhere the server finds room.
//! let mapping = iommu.map(&ioas, &buffer, 0x1000, 0x2000, Access::ReadWrite, None)?;
//! let dma_address = mapping.iova(); // what the driver programs into the device
//!
//! // The device now reaches the buffer's physical pages, and only those.
//! let reach = |iova| rig.borrow().server.hardware().dma(StreamId(8), iova);
//! assert_eq!(reach(dma_address), Some(0x6000_1000));
//! assert_eq!(reach(dma_address + 0x1fff), Some(0x6000_2fff));
//! assert_eq!(reach(dma_address + 0x2000), None);
//!
//! iommu.unmap(mapping).map_err(|(error, _)| error)?;
//! assert_eq!(reach(dma_address), None);
//!
//! // A refusal says which request and which errno.
//! let refusal = iommu.bind(7).unwrap_err();
//! assert_eq!(refusal.errno, Errno::ENODEV);
//! assert_eq!(refusal.to_string(), "VFIO_DEVICE_BIND_IOMMUFD: ENODEV: no such device");
//! # Ok::<(), iommu_client::Error>(())
//! ```

#![no_std]
#![forbid(unsafe_code)]

use core::marker::PhantomData;

use zerocopy::{FromBytes, IntoBytes};

use iommu_proto::fault::{
    IOMMU_FAULT_RECORD_ADDR_VALID, IOMMU_FAULT_RECORD_LOST, IOMMU_FAULT_RECORD_STOPPED,
    IOMMU_FAULT_RECORD_VALID,
};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{iommu_fault_record, Errno, Op, Request, MR_DEVICE, MR_SIZE};
use mmio::Memory;

pub use iommu_proto::Transport;

/// Bytes of the command page.
pub const COMMAND_PAGE: usize = 4096;
/// Where in the command page the arrays a request points at travel (after
/// the request struct), as in the C client's `IOMMU_ARRAY_AT`; the server
/// refuses pointers outside the page.
pub const ARRAY_AT: usize = 64;
/// Bytes of the command page left for those arrays.
pub const ARRAY_ROOM: usize = COMMAND_PAGE - ARRAY_AT;

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
    /// The server stopped streams of this client's devices (or all DMA)
    /// since the last read: the IOMMU did not confirm an invalidation, and
    /// the unmap or map that met it was EIO.
    pub stopped: bool,
    /// Bit i: device i records no faults now (it stormed, or shares the
    /// IOMMU's switch with one that did) until [`Iommu::resume_faults`].
    pub silenced: u64,
    /// Records of this client's storming devices dropped since the last
    /// read.
    pub storm_dropped: u64,
    /// Faults still queued.
    pub remaining: u64,
}

/// What IOMMU_IOAS_IOVA_RANGES returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRanges {
    /// How many ranges the IOAS has. More than the caller had room for
    /// means none were written: call again with room for this many (the
    /// server's EMSGSIZE, turned into the number it reports).
    pub total: usize,
    /// The alignment every IOVA and length must have.
    pub alignment: u64,
}

/// What IOMMU_GET_HW_INFO returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwInfo {
    /// The SMMUv3's ID registers.
    pub data: iommu_hw_info_arm_smmuv3,
    /// `IOMMU_HW_INFO_TYPE_ARM_SMMUV3`.
    pub data_type: u32,
    /// `IOMMU_HW_CAP_*`.
    pub capabilities: u64,
}

/// The server, as seen by one client.
#[derive(Debug)]
pub struct Iommu<T> {
    transport: T,
}

/// A request the server (or the library, before sending it) refused:
/// which request and which errno. Its [`Display`](core::fmt::Display)
/// says both, by name, and what the errno means, e.g.
/// `IOMMU_IOAS_MAP: EFAULT: bad address (outside the caller's memory or
/// its rights)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub op: Op,
    pub errno: Errno,
}

impl Error {
    /// A refusal of `op` with `errno`.
    pub const fn new(op: Op, errno: Errno) -> Error {
        Error { op, errno }
    }
}

impl From<Error> for Errno {
    fn from(e: Error) -> Errno {
        e.errno
    }
}

impl PartialEq<Errno> for Error {
    fn eq(&self, errno: &Errno) -> bool {
        self.errno == *errno
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.op.name(),
            self.errno.name(),
            self.errno.meaning()
        )
    }
}

/// What the client's calls return.
pub type Result<T> = core::result::Result<T, Error>;

/// The refusal of `op` a reply's label carries.
fn refused(op: Op, label: u64) -> Error {
    Error::new(op, Errno::from_code(label).unwrap_or(Errno::EINVAL))
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
            return Err(refused(R::OP, label));
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
            return Err(refused(op, label));
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
    pub fn destroy_ioas(&mut self, ioas: Ioas) -> core::result::Result<(), (Error, Ioas)> {
        self.destroy_id(ioas.0).map_err(|e| (e, ioas))
    }

    pub fn destroy_hwpt(&mut self, hwpt: Hwpt) -> core::result::Result<(), (Error, Hwpt)> {
        self.destroy_id(hwpt.0).map_err(|e| (e, hwpt))
    }

    /// Unbinds a device (detach it first).
    pub fn unbind(&mut self, device: Device) -> core::result::Result<(), (Error, Device)> {
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
        let end = offset
            .checked_add(len)
            .ok_or(Error::new(Op::IoasMap, Errno::EOVERFLOW))?;
        if end > buffer.len {
            return Err(Error::new(Op::IoasMap, Errno::EFAULT));
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
    ) -> core::result::Result<(), (Error, Mapping<'b>)> {
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

    /// Attaches a device through the VFIO compatibility path (`pt_id` 0):
    /// to the compat IOAS, made by the first such attach, which the VFIO
    /// type1 calls act on. Returns the HWPT's ID.
    pub fn attach_compat(&mut self, device: &Device) -> Result<u32> {
        self.attach_pt(device, 0)
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
            stopped: rec.out_flags & IOMMU_FAULT_RECORD_STOPPED != 0,
            silenced: rec.silenced,
            storm_dropped: rec.storm_dropped,
            remaining,
        })
    }

    /// Reads the fault queue to its end (or to the first refused read):
    /// the number of fault records it held.
    pub fn drain_faults(&mut self) -> u32 {
        let mut records = 0;
        while let Ok(r) = self.read_fault() {
            records += u32::from(r.fault.is_some());
            if r.remaining == 0 {
                break;
            }
        }
        records
    }

    /// Records device `index`'s (configuration index) faults again after
    /// it stormed: EBUSY until this client's fault queue is drained and the
    /// server has handled the IOMMU's backlog.
    pub fn resume_faults(&mut self, index: u32) -> Result<()> {
        self.call_scalar(Op::FaultResume, u64::from(index))
            .map(|_| ())
    }

    /// Resets client `target` (the manager), or this client itself: its
    /// devices are quarantined, then everything it holds is torn down.
    pub fn reset(&mut self, target: u64) -> Result<()> {
        self.call_scalar(Op::ResetClient, target).map(|_| ())
    }

    /// Holds client `target`'s devices in quarantine (a manager): it is
    /// reset and may not bind, attach or map until [`Iommu::release`].
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

    /// Sends `bytes` as an op's argument (MR0 the size the op's framing
    /// wants, MR1 `mr1`); on success the page holds the server's answer.
    fn call_bytes(&mut self, op: Op, bytes: &[u8], size: u64, mr1: u64) -> Result<u64> {
        self.transport.write_page(bytes);
        let (label, mr0) = self.transport.call(op.label(), [size, mr1]);
        if label != 0 {
            return Err(refused(op, label));
        }
        Ok(mr0)
    }

    /// Maps what `[src_iova, src_iova + len)` of `src` maps into `dst`, at
    /// `dst_iova` or wherever the server finds room; returns the IOVA in
    /// `dst`. The copy stays until unmapped from `dst` by [`Iommu::unmap_range`].
    pub fn copy(
        &mut self,
        dst: &Ioas,
        src: &Ioas,
        src_iova: u64,
        len: u64,
        access: Access,
        dst_iova: Option<u64>,
    ) -> Result<u64> {
        let mut flags = access.flags();
        if dst_iova.is_some() {
            flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
        }
        let mut req = iommu_ioas_copy {
            size: core::mem::size_of::<iommu_ioas_copy>() as u32,
            flags,
            dst_ioas_id: dst.0,
            src_ioas_id: src.0,
            length: len,
            dst_iova: dst_iova.unwrap_or(0),
            src_iova,
        };
        self.call(&mut req, 0)?;
        Ok(req.dst_iova)
    }

    /// Unmaps every area inside `[iova, iova + len)` of `ioas` (IOMMU_IOAS_UNMAP
    /// by range: `(0, u64::MAX)` is everything); returns the bytes unmapped.
    pub fn unmap_range(&mut self, ioas: &Ioas, iova: u64, len: u64) -> Result<u64> {
        let mut req = iommu_ioas_unmap {
            size: core::mem::size_of::<iommu_ioas_unmap>() as u32,
            ioas_id: ioas.0,
            iova,
            length: len,
        };
        self.call(&mut req, 0)?;
        Ok(req.length)
    }

    /// The IOVA ranges usable in `ioas`, into `out`, through the command
    /// page whose client address is `page_va`. At most
    /// [`ARRAY_ROOM`] / 16 ranges travel in one call.
    pub fn iova_ranges(
        &mut self,
        page_va: u64,
        ioas: &Ioas,
        out: &mut [iommu_iova_range],
    ) -> Result<IovaRanges> {
        const RANGE: usize = core::mem::size_of::<iommu_iova_range>();
        let room = out.len().min(ARRAY_ROOM / RANGE);
        let mut req = iommu_ioas_iova_ranges {
            size: core::mem::size_of::<iommu_ioas_iova_ranges>() as u32,
            ioas_id: ioas.0,
            num_iovas: room as u32,
            reserved: 0,
            allowed_iovas: page_va + ARRAY_AT as u64,
            out_iova_alignment: 0,
        };
        match self.call(&mut req, 0) {
            Ok(_) => {}
            Err(e) if e.errno == Errno::EMSGSIZE => {
                self.transport.read_page(req.as_mut_bytes());
                return Ok(IovaRanges {
                    total: req.num_iovas as usize,
                    alignment: req.out_iova_alignment,
                });
            }
            Err(e) => return Err(e),
        }
        let total = req.num_iovas as usize;
        let mut page = [0u8; COMMAND_PAGE];
        let end = ARRAY_AT + total.min(room) * RANGE;
        self.transport.read_page(&mut page[..end]);
        for (range, bytes) in out.iter_mut().zip(page[ARRAY_AT..end].chunks_exact(RANGE)) {
            *range = iommu_iova_range::read_from_bytes(bytes)
                .map_err(|_| Error::new(Op::IoasIovaRanges, Errno::EFAULT))?;
        }
        Ok(IovaRanges {
            total,
            alignment: req.out_iova_alignment,
        })
    }

    /// Replaces the ranges automatic IOVAs of `ioas` may come from (none:
    /// anywhere), through the command page whose client address is
    /// `page_va`; more ranges than [`ARRAY_ROOM`] holds are E2BIG here.
    pub fn allow_iovas(
        &mut self,
        page_va: u64,
        ioas: &Ioas,
        ranges: &[iommu_iova_range],
    ) -> Result<()> {
        let bytes = ranges.as_bytes();
        if bytes.len() > ARRAY_ROOM {
            return Err(Error::new(Op::IoasAllowIovas, Errno::E2BIG));
        }
        let req = iommu_ioas_allow_iovas {
            size: core::mem::size_of::<iommu_ioas_allow_iovas>() as u32,
            ioas_id: ioas.0,
            num_iovas: ranges.len() as u32,
            reserved: 0,
            allowed_iovas: page_va + ARRAY_AT as u64,
        };
        let mut page = [0u8; COMMAND_PAGE];
        page[..core::mem::size_of_val(&req)].copy_from_slice(req.as_bytes());
        page[ARRAY_AT..ARRAY_AT + bytes.len()].copy_from_slice(bytes);
        let size = core::mem::size_of_val(&req) as u64;
        self.call_bytes(Op::IoasAllowIovas, &page[..ARRAY_AT + bytes.len()], size, 0)
            .map(|_| ())
    }

    /// IOMMU_OPTION's value: `IOMMU_OPTION_HUGE_PAGES` of an IOAS
    /// (`object` its ID), or `IOMMU_OPTION_RLIMIT_MODE` (object 0).
    pub fn option_get(&mut self, option: u32, object: u32) -> Result<u64> {
        let mut req = iommu_option {
            size: core::mem::size_of::<iommu_option>() as u32,
            option_id: option,
            op: IOMMU_OPTION_OP_GET,
            reserved: 0,
            object_id: object,
            val64: 0,
        };
        self.call(&mut req, 0)?;
        Ok(req.val64)
    }

    /// Sets an IOMMU_OPTION (see [`Iommu::option_get`]).
    pub fn option_set(&mut self, option: u32, object: u32, value: u64) -> Result<()> {
        let mut req = iommu_option {
            size: core::mem::size_of::<iommu_option>() as u32,
            option_id: option,
            op: IOMMU_OPTION_OP_SET,
            reserved: 0,
            object_id: object,
            val64: value,
        };
        self.call(&mut req, 0).map(|_| ())
    }

    /// IOMMU_VFIO_IOAS: `IOMMU_VFIO_IOAS_GET` returns the IOAS the VFIO
    /// type1 calls act on; `_SET` makes it `ioas_id`; `_CLEAR` forgets it.
    pub fn vfio_ioas(&mut self, op: u16, ioas_id: u32) -> Result<u32> {
        let mut req = iommu_vfio_ioas {
            size: core::mem::size_of::<iommu_vfio_ioas>() as u32,
            ioas_id,
            op,
            reserved: 0,
        };
        self.call(&mut req, 0)?;
        Ok(req.ioas_id)
    }

    /// IOMMU_GET_HW_INFO: the SMMUv3's ID registers behind `device`,
    /// through the command page whose client address is `page_va`, with
    /// the data type and capabilities.
    pub fn hw_info(&mut self, page_va: u64, device: &Device) -> Result<HwInfo> {
        const DATA: usize = core::mem::size_of::<iommu_hw_info_arm_smmuv3>();
        let mut req = iommu_hw_info {
            size: core::mem::size_of::<iommu_hw_info>() as u32,
            dev_id: device.id,
            data_len: DATA as u32,
            data_uptr: page_va + ARRAY_AT as u64,
            ..Default::default()
        };
        self.call(&mut req, 0)?;
        let mut page = [0u8; ARRAY_AT + DATA];
        self.transport.read_page(&mut page);
        let got = (req.data_len as usize).min(DATA);
        let mut data = iommu_hw_info_arm_smmuv3::default();
        data.as_mut_bytes()[..got].copy_from_slice(&page[ARRAY_AT..ARRAY_AT + got]);
        Ok(HwInfo {
            data,
            data_type: req.out_data_type,
            capabilities: req.out_capabilities,
        })
    }

    /// VFIO_GET_API_VERSION.
    pub fn vfio_get_api_version(&mut self) -> Result<u64> {
        self.call_scalar(Op::VfioGetApiVersion, 0)
    }

    /// VFIO_CHECK_EXTENSION: whether `extension` (`VFIO_TYPE1v2_IOMMU`,
    /// `VFIO_DMA_CC_IOMMU`, ...) is there.
    pub fn vfio_check_extension(&mut self, extension: u64) -> Result<bool> {
        self.call_scalar(Op::VfioCheckExtension, extension)
            .map(|present| present != 0)
    }

    /// VFIO_SET_IOMMU: the type1 flavour the VFIO calls speak.
    pub fn vfio_set_iommu(&mut self, iommu_type: u64) -> Result<()> {
        self.call_scalar(Op::VfioSetIommu, iommu_type).map(|_| ())
    }

    /// VFIO_IOMMU_GET_INFO into `out` (its length is `argsz`, at most a
    /// command page): the struct, then the capability chain the server
    /// writes after it when `out` leaves room (`cap_offset` counts from the
    /// start of `out`). Returns the struct.
    pub fn vfio_iommu_get_info(&mut self, out: &mut [u8]) -> Result<vfio_iommu_type1_info> {
        const INFO: usize = core::mem::size_of::<vfio_iommu_type1_info>();
        if out.len() > COMMAND_PAGE {
            return Err(Error::new(Op::VfioIommuGetInfo, Errno::E2BIG));
        }
        let mut head = vfio_iommu_type1_info {
            argsz: out.len() as u32,
            ..Default::default()
        };
        let sent = INFO.min(out.len());
        self.call_bytes(
            Op::VfioIommuGetInfo,
            &head.as_bytes()[..sent],
            out.len() as u64,
            0,
        )?;
        self.transport.read_page(out);
        head.as_mut_bytes()[..sent].copy_from_slice(&out[..sent]);
        Ok(head)
    }

    /// VFIO_IOMMU_MAP_DMA: `size` bytes at this client's `vaddr`, at `iova`
    /// of the VFIO IOAS (`VFIO_DMA_MAP_FLAG_READ` / `_WRITE`).
    pub fn vfio_map_dma(&mut self, vaddr: u64, iova: u64, size: u64, flags: u32) -> Result<()> {
        let mut req = vfio_iommu_type1_dma_map {
            argsz: core::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
            flags,
            vaddr,
            iova,
            size,
        };
        self.call(&mut req, 0).map(|_| ())
    }

    /// VFIO_IOMMU_UNMAP_DMA of `[iova, iova + size)` (or everything, with
    /// `VFIO_DMA_UNMAP_FLAG_ALL`); returns the bytes unmapped.
    pub fn vfio_unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<u64> {
        let mut req = vfio_iommu_type1_dma_unmap {
            argsz: core::mem::size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            flags,
            iova,
            size,
            ..Default::default()
        };
        self.call(&mut req, 0)?;
        Ok(req.size)
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
