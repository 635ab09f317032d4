//! The guest of the VMM PD (`vmm-pd`): a bare-metal program at EL1 with
//! the MMU off, loaded by its VMM at the base of guest RAM. It knows only
//! guest-physical addresses: its RAM, the console page at the top of it,
//! and the edu device's BAR where the VMM mapped it (the VMM programmed
//! the device's configuration space; the guest never sees it). It
//! identifies the device, has it copy a pattern through its own RAM and
//! checks it, then aims a DMA just past its RAM, which the SMMU must
//! stop (the VMM hears of that fault from the IOMMU server), and says it
//! is done.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod platform;

use core::fmt::Write;

use edu_device::{pattern, ID};
use mmio::Memory;

/// The guest-physical map the VMM and its system description give this
/// guest.
pub mod layout {
    /// Guest RAM: where the image is loaded and runs.
    pub const RAM_GPA: u64 = 0x4000_0000;
    pub const RAM_SIZE: u64 = 0x20_0000;
    /// The console page: the last page of guest RAM.
    pub const CONSOLE_GPA: u64 = RAM_GPA + RAM_SIZE - 0x1000;
    pub const CONSOLE_SIZE: usize = 0x1000;
    /// The edu device's BAR0 in the guest's PCI window.
    pub const BAR_GPA: u64 = 0x1000_0000;
    pub const BAR_SIZE: usize = 0x10_0000;
    /// Guest RAM the guest gives its device (guest.ld keeps the image
    /// below it and the stack above it).
    pub const DMA_GPA: u64 = RAM_GPA + 0x10_0000;
    pub const DMA_SIZE: usize = 0x2000;
}

use layout::{BAR_GPA, DMA_GPA, DMA_SIZE, RAM_GPA, RAM_SIZE};

/// One console line, formatted in place and sent whole.
pub struct Line {
    bytes: [u8; 200],
    len: usize,
}

impl Line {
    pub fn new() -> Line {
        Line {
            bytes: [0; 200],
            len: 0,
        }
    }

    pub fn send(&self) {
        platform::Console.send(&self.bytes[..self.len]);
    }
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes() {
            if self.len < self.bytes.len() {
                self.bytes[self.len] = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Formats and sends one console line.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = Line::new();
        let _ = write!(line, $($arg)*);
        line.send();
    }};
}

/// Bytes each DMA moves.
const LEN: usize = 256;
/// Where the stray DMA goes: the first byte past guest RAM.
const STRAY_GPA: u64 = RAM_GPA + RAM_SIZE;

fn guest_story() {
    say!(
        "up at EL1, MMU off, {} KiB of RAM at GPA {RAM_GPA:#x}",
        RAM_SIZE >> 10
    );
    let (ram, edu) = platform::take(DMA_GPA, DMA_SIZE);
    let id = edu.id();
    if id == ID {
        say!("ok - guest: edu at BAR GPA {BAR_GPA:#x} says {id:#x} (its VMM set up the configuration space; the guest sees the BAR alone)");
    } else {
        say!("FAILED - guest: edu at BAR GPA {BAR_GPA:#x} says {id:#x}, not {ID:#x}");
        platform::done();
    }

    // A pattern into the device from one page of its RAM and back out to
    // the next page, cleared first so that stale bytes cannot pass.
    let (src, dst) = (0, 0x1000);
    let mut bytes = [0u8; LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = pattern(0x5a, i);
    }
    let written = ram.write(src, &bytes) && ram.write(dst, &[0; LEN]);
    let moved = written
        && edu
            .read_from(ram.base() + src as u64, 0, LEN as u64)
            .is_ok()
        && edu.write_to(0, ram.base() + dst as u64, LEN as u64).is_ok();
    let mut back = [0u8; LEN];
    if moved && ram.read(dst, &mut back) && back == bytes {
        say!(
            "ok - guest: DMA round trip through its own RAM (GPA {:#x} -> device -> GPA {:#x}), {LEN} bytes verified",
            ram.base() + src as u64,
            ram.base() + dst as u64
        );
    } else {
        say!(
            "FAILED - guest: DMA round trip through GPA {:#x}",
            ram.base()
        );
    }

    // Outside its RAM: nothing is mapped there for its device.
    // One word: one access for the SMMU to stop, one record of it.
    let finished = edu.write_to(0, STRAY_GPA, 4).is_ok();
    say!(
        "aimed a 4-byte DMA at GPA {STRAY_GPA:#x}, past its RAM ({}); the SMMU must stop it",
        if finished {
            "the device says it finished"
        } else {
            "the device did not finish"
        }
    );
}
