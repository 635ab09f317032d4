//! The guest of the VMM PD (`vmm-pd`): a bare-metal program at EL1 with
//! the MMU off, loaded by its VMM at the base of guest RAM. It knows only
//! guest-physical addresses: its RAM, the console page at the top of it,
//! and the edu device's BAR where the VMM mapped it (the VMM programmed
//! the device's configuration space; the guest never sees it). It
//! identifies the device, then runs `edu-guest-driver`'s round trip (the
//! device copies a pattern through its own RAM, checked) and its stray
//! DMA, aimed just past its RAM, which the SMMU must stop (the VMM hears
//! of that fault from the IOMMU server), and says it is done.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod platform;

use core::fmt::Write;

use edu_device::ID;
use edu_guest_driver::{GuestRam, Step};
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
    /// Guest RAM the guest gives its device: edu-guest-driver's source
    /// and destination (guest.ld keeps the image below it and the stack
    /// above it).
    pub const DMA_OFFSET: u64 = edu_guest_driver::SRC_OFFSET;
    pub const DMA_SIZE: u64 = 0x2000;
}

use layout::{BAR_GPA, RAM_GPA, RAM_SIZE};

/// Bytes of a console line: with its NUL, as many as its VMM reads
/// (vmm_core::exit::CONSOLE_BYTES).
const LINE_BYTES: usize = 199;

/// One console line, formatted in place and sent whole.
pub struct Line {
    bytes: [u8; LINE_BYTES],
    len: usize,
}

impl Line {
    pub fn new() -> Line {
        Line {
            bytes: [0; LINE_BYTES],
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
    /// A console line is one line: a newline the driver ends its report
    /// with is dropped.
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for &b in s.as_bytes().iter().filter(|&&b| b != b'\n') {
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

/// Round trips timed for docs/benchmarks.md (each two of the edu
/// device's DMAs, which complete 100 ms of virtual time after they start).
const BENCH_ROUNDS: u32 = 10;

/// Sends `ok - guest: <what the step wrote>` when `step` succeeds,
/// `FAILED - guest: <what>: <why>` when it fails.
fn check(what: &str, step: impl FnOnce(&mut Line) -> Step) {
    let mut line = Line::new();
    let _ = write!(line, "ok - guest: ");
    match step(&mut line) {
        Ok(()) => line.send(),
        Err(why) => say!("FAILED - guest: {what}: {why}"),
    }
}

fn guest_story() {
    say!(
        "up at EL1, MMU off, {} KiB of RAM at GPA {RAM_GPA:#x}",
        RAM_SIZE >> 10
    );
    let (mem, edu) = platform::take();
    let id = edu.id();
    if id == ID {
        say!("ok - guest: edu at BAR GPA {BAR_GPA:#x} says {id:#x} (its VMM set up the configuration space; the guest sees the BAR alone)");
    } else {
        say!("FAILED - guest: edu at BAR GPA {BAR_GPA:#x} says {id:#x}, not {ID:#x}");
        platform::done();
    }
    let ram = GuestRam { gpa: RAM_GPA, mem };
    check("DMA round trip through its own RAM", |line| {
        edu_guest_driver::round_trip(&edu, &ram, 0x5a, line)
    });
    // The figure of docs/benchmarks.md: its VMM times the same round
    // trips outside the VM.
    let (timed, frequency) = (
        edu_guest_driver::timed_round_trips(&edu, &ram, BENCH_ROUNDS, platform::ticks),
        platform::frequency(),
    );
    let each = |ticks| benchkit::icount::per_call(ticks, frequency, BENCH_ROUNDS.into());
    match timed.map(|t| (t, each(t.total), each(t.total - t.transfers))) {
        Ok((t, Some(all), Some(own))) => say!(
            "bench: {BENCH_ROUNDS} edu DMA round trips inside the VM: {} ticks at {frequency} Hz; under -icount shift=0, a trip of {all} instructions, {own} outside the transfers",
            t.total
        ),
        Ok(_) => say!("FAILED - guest: no counter frequency"),
        Err(why) => say!("FAILED - guest: timed DMA round trips: {why}"),
    }
    // Past its RAM: nothing is mapped there for its device.
    check("DMA outside its RAM", |line| {
        edu_guest_driver::stray(&edu, &ram, ram.end(), 0xa5, line)
    });
}
