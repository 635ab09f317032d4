//! QEMU's `edu` device programmed with bus addresses: its identification
//! register and its DMA engine, which moves bytes between its internal
//! buffer and whatever bus address it is given. Nothing here knows of an
//! IOMMU: a driver over the server gives it IOVAs it mapped, a driver
//! written sDDF's way the addresses its configuration names (the two are
//! the story's `scenarios::edu` and `scenarios::edu_static`).

#![no_std]
#![forbid(unsafe_code)]

use mmio::RegisterBlock;

pub const VENDOR: u16 = 0x1234;
pub const DEVICE: u16 = 0x11e8;
/// The identification register's value.
pub const ID: u32 = 0x0100_00ed;
/// Device-side address of the internal 4 KiB buffer.
pub const BUFFER: u64 = 0x4_0000;
/// Bytes of the internal buffer.
pub const BUFFER_SIZE: usize = 4096;
/// A transfer must end strictly below BUFFER + 4096 or QEMU aborts.
pub const MAX_TRANSFER: u64 = 4095;
/// Register reads to wait for a transfer (QEMU runs it from a 100 ms
/// timer) before giving up.
pub const POLL_LIMIT: u64 = 50_000_000;

/// The DMA engine's registers (byte offsets in BAR0) and its command
/// bits: what a driver programs and a simulation of the device decodes.
pub mod reg {
    pub const DMA_SRC: usize = 0x80;
    pub const DMA_DST: usize = 0x88;
    pub const DMA_COUNT: usize = 0x90;
    pub const DMA_CMD: usize = 0x98;
    pub const CMD_RUN: u64 = 1;
    pub const CMD_TO_RAM: u64 = 2;
}

use reg::{CMD_RUN, CMD_TO_RAM, DMA_CMD, DMA_COUNT, DMA_DST, DMA_SRC};

/// A transfer did not finish within [`POLL_LIMIT`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout;

/// The device's BAR0 registers.
#[derive(Debug)]
pub struct Edu<R>(pub R);

impl<R: RegisterBlock> Edu<R> {
    pub fn id(&self) -> u32 {
        self.0.read32(0)
    }

    /// Bus memory at `iova` into the device buffer at `offset`.
    pub fn read_from(&self, iova: u64, offset: u64, len: u64) -> Result<(), Timeout> {
        self.run(iova, BUFFER + offset, len, 0)
    }

    /// The device buffer at `offset` out to bus memory at `iova`.
    pub fn write_to(&self, offset: u64, iova: u64, len: u64) -> Result<(), Timeout> {
        self.run(BUFFER + offset, iova, len, CMD_TO_RAM)
    }

    /// Starts the device writing its buffer at `offset` to bus memory at
    /// `iova`, and returns while the transfer is in flight.
    pub fn start_write_to(&self, offset: u64, iova: u64, len: u64) {
        self.start(BUFFER + offset, iova, len, CMD_TO_RAM)
    }

    /// Waits for the device's transfer, if one runs, to end.
    pub fn wait(&self) -> Result<(), Timeout> {
        for _ in 0..POLL_LIMIT {
            if self.0.read64(DMA_CMD) & CMD_RUN == 0 {
                return Ok(());
            }
        }
        Err(Timeout)
    }

    fn start(&self, src: u64, dst: u64, len: u64, direction: u64) {
        let len = len.clamp(1, MAX_TRANSFER - 1);
        self.0.write64(DMA_SRC, src);
        self.0.write64(DMA_DST, dst);
        self.0.write64(DMA_COUNT, len);
        self.0.write64(DMA_CMD, CMD_RUN | direction);
    }

    fn run(&self, src: u64, dst: u64, len: u64, direction: u64) -> Result<(), Timeout> {
        self.start(src, dst, len, direction);
        self.wait()
    }
}

/// The byte an edu transfer's test pattern `seed` has at `i`.
pub fn pattern(seed: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(seed)
}
