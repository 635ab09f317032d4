//! QEMU's edu device as a rig's client sees it, for the host tests of
//! drivers that program it with bus addresses: its DMA engine translates
//! each page of a transfer through the rig's mock IOMMU, lands in the
//! physical memory the test gave it, and reports every page that does not
//! translate to the server as a fault of its stream, as the SMMU's event
//! queue would. A transfer runs when the driver polls for its end, or
//! when the test says ([`SimEdu::finish`]): until then it is in flight.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use edu_device::reg::{CMD_RUN, CMD_TO_RAM, DMA_CMD, DMA_COUNT, DMA_DST, DMA_SRC};
use edu_device::{BUFFER, BUFFER_SIZE, ID};
use iommu_server::Fault;
use iommu_types::fault::{
    IOMMU_FAULT_ACCESS_READ, IOMMU_FAULT_ACCESS_WRITE, IOMMU_FAULT_KIND_F_TRANSLATION,
};
use iommu_types::StreamId;
use mmio::{Memory, RegisterBlock};

use crate::{HeapMemory, MockHw, Rig};

const PAGE: u64 = 0x1000;

/// Physical memory at `paddr`.
#[derive(Clone, Debug)]
pub struct PhysRam {
    pub paddr: u64,
    pub mem: Rc<HeapMemory>,
}

/// One edu device on stream `stream` of a rig with mock hardware.
pub struct SimEdu {
    rig: Rc<RefCell<Rig<MockHw>>>,
    stream: StreamId,
    ram: Vec<PhysRam>,
    regs: RefCell<[u64; 4]>,
    buffer: RefCell<[u8; BUFFER_SIZE]>,
    faults: Cell<u64>,
    /// Bytes that translated to physical memory the test gave no RAM for.
    pub elsewhere: Cell<u64>,
}

impl std::fmt::Debug for SimEdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEdu")
            .field("stream", &self.stream)
            .field("faults", &self.faults.get())
            .finish()
    }
}

impl SimEdu {
    pub fn new(rig: &Rc<RefCell<Rig<MockHw>>>, stream: StreamId, ram: Vec<PhysRam>) -> SimEdu {
        SimEdu {
            rig: rig.clone(),
            stream,
            ram,
            regs: RefCell::new([0; 4]),
            buffer: RefCell::new([0; BUFFER_SIZE]),
            faults: Cell::new(0),
            elsewhere: Cell::new(0),
        }
    }

    /// Faults the device's transfers reported to the server so far.
    pub fn faults(&self) -> u64 {
        self.faults.get()
    }

    /// Whether a transfer is in flight.
    pub fn busy(&self) -> bool {
        self.regs.borrow()[3] & CMD_RUN != 0
    }

    /// Runs the transfer in flight, if one.
    pub fn finish(&self) {
        if !self.busy() {
            return;
        }
        let [src, dst, count, cmd] = *self.regs.borrow();
        if cmd & CMD_TO_RAM != 0 {
            self.write_ram(src.wrapping_sub(BUFFER), dst, count);
        } else {
            self.read_ram(src, dst.wrapping_sub(BUFFER), count);
        }
        self.regs.borrow_mut()[3] &= !CMD_RUN;
    }

    fn phys(&self, pa: u64, len: usize) -> Option<(&PhysRam, usize)> {
        self.ram.iter().find_map(|r| {
            let offset = pa.checked_sub(r.paddr)?;
            (offset + len as u64 <= r.mem.len() as u64).then_some((r, offset as usize))
        })
    }

    /// Each page-bounded piece of `[iova, iova + count)`, translated.
    fn pieces(
        &self,
        iova: u64,
        count: u64,
        access: u32,
        mut each: impl FnMut(u64, Option<u64>, usize),
    ) {
        let mut at = 0;
        while at < count {
            let a = iova.wrapping_add(at);
            let len = (PAGE - a % PAGE).min(count - at);
            let pa = self.rig.borrow().server.hardware().dma(self.stream, a);
            if pa.is_none() {
                self.faults.set(self.faults.get() + 1);
                self.rig.borrow_mut().server.report_fault(Fault {
                    stream: self.stream,
                    kind: IOMMU_FAULT_KIND_F_TRANSLATION,
                    iova: Some(a),
                    access,
                });
            }
            each(at, pa, len as usize);
            at += len;
        }
    }

    fn write_ram(&self, offset: u64, iova: u64, count: u64) {
        let buffer = *self.buffer.borrow();
        self.pieces(iova, count, IOMMU_FAULT_ACCESS_WRITE, |at, pa, len| {
            let Some(pa) = pa else { return };
            let from = (offset + at) as usize;
            match self.phys(pa, len) {
                Some((r, o)) => {
                    r.mem.write(o, &buffer[from..from + len]);
                }
                None => self.elsewhere.set(self.elsewhere.get() + len as u64),
            }
        });
    }

    fn read_ram(&self, iova: u64, offset: u64, count: u64) {
        let mut buffer = *self.buffer.borrow();
        self.pieces(iova, count, IOMMU_FAULT_ACCESS_READ, |at, pa, len| {
            let Some(pa) = pa else { return };
            let to = (offset + at) as usize;
            match self.phys(pa, len) {
                Some((r, o)) => {
                    r.mem.read(o, &mut buffer[to..to + len]);
                }
                None => self.elsewhere.set(self.elsewhere.get() + len as u64),
            }
        });
        *self.buffer.borrow_mut() = buffer;
    }
}

impl RegisterBlock for &SimEdu {
    fn read32(&self, offset: usize) -> u32 {
        match offset {
            0 => ID,
            _ => self.read64(offset) as u32,
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        self.write64(offset, u64::from(value));
    }

    fn read64(&self, offset: usize) -> u64 {
        match offset {
            DMA_CMD => {
                // A driver polling for the end sees it: the transfer runs.
                self.finish();
                self.regs.borrow()[3]
            }
            DMA_SRC | DMA_DST | DMA_COUNT => self.regs.borrow()[(offset - DMA_SRC) / 8],
            _ => 0,
        }
    }

    fn write64(&self, offset: usize, value: u64) {
        if let DMA_SRC | DMA_DST | DMA_COUNT | DMA_CMD = offset {
            self.regs.borrow_mut()[(offset - DMA_SRC) / 8] = value;
        }
    }
}
