//! QEMU's `edu` teaching device: a 4 KiB buffer at device address 0x40000
//! and a DMA engine between it and bus addresses (IOVAs).

use hw::mmio::{Mmio, RegisterBlock};

use crate::platform;

pub const VENDOR: u16 = 0x1234;
pub const DEVICE: u16 = 0x11e8;
/// Device-side address of the internal buffer.
pub const BUFFER: u64 = 0x4_0000;
/// A transfer must end strictly below buffer + 4096 or QEMU aborts.
pub const BUFFER_USABLE: u64 = 4095;

const DMA_SRC: usize = 0x80;
const DMA_DST: usize = 0x88;
const DMA_COUNT: usize = 0x90;
const DMA_CMD: usize = 0x98;
const CMD_RUN: u64 = 1;
const CMD_TO_RAM: u64 = 2;

pub struct Edu {
    regs: Mmio,
}

#[derive(Debug)]
pub struct Timeout;

impl Edu {
    pub fn new(bar0: usize) -> Edu {
        Edu {
            regs: platform::bar(bar0, 0x10_0000),
        }
    }

    /// Liveness check: the identification register reads 0x010000ed.
    pub fn id(&self) -> u32 {
        self.regs.read32(0)
    }

    /// Bus memory at `iova` into the buffer at `offset`.
    pub fn read_from(&self, iova: u64, offset: u64, len: u64) -> Result<(), Timeout> {
        self.run(iova, BUFFER + offset, len, 0)
    }

    /// The buffer at `offset` out to bus memory at `iova`.
    pub fn write_to(&self, offset: u64, iova: u64, len: u64) -> Result<(), Timeout> {
        self.run(BUFFER + offset, iova, len, CMD_TO_RAM)
    }

    fn run(&self, src: u64, dst: u64, len: u64, direction: u64) -> Result<(), Timeout> {
        assert!(
            len > 0 && len < BUFFER_USABLE,
            "edu transfer of {len} bytes"
        );
        self.regs.write64(DMA_SRC, src);
        self.regs.write64(DMA_DST, dst);
        self.regs.write64(DMA_COUNT, len);
        self.regs.write64(DMA_CMD, CMD_RUN | direction);
        // QEMU runs the transfer from a 100 ms timer.
        let deadline = platform::ticks() + 3 * platform::ticks_per_second();
        while self.regs.read64(DMA_CMD) & CMD_RUN != 0 {
            if platform::ticks() > deadline {
                return Err(Timeout);
            }
        }
        Ok(())
    }
}
