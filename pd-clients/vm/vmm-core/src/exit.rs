//! A vCPU's faults decoded into what the VMM does. seL4 gives the VMM a
//! vCPU fault with the HSR (ESR_EL2) for an exception the guest raised at
//! EL1 that traps to the hypervisor (`hvc` among them), and a VM fault
//! with the guest-physical address and the same syndrome for a stage-2
//! abort: an access to a guest-physical address nothing is mapped at.
//!
//! The guest's console: it writes a NUL-terminated line into the last
//! page of its RAM ([`GuestMap::console_gpa`]) and executes `hvc #1`; `hvc
//! #0` says it is done. The VMM reads nothing else of the guest.

use core::fmt;

use mmio::Memory;

use crate::map::{GuestMap, Place};

/// ESR_EL2.EC: HVC from AArch64.
pub const EC_HVC64: u8 = 0x16;
/// ESR_EL2.EC: instruction abort from a lower exception level.
pub const EC_IABT_LOWER: u8 = 0x20;
/// ESR_EL2.EC: data abort from a lower exception level.
pub const EC_DABT_LOWER: u8 = 0x24;
/// ISS of a data abort: the access was a write (WnR).
const ISS_WNR: u64 = 1 << 6;

/// `hvc` immediates of the guest's console protocol.
pub const HVC_DONE: u16 = 0;
pub const HVC_CONSOLE: u16 = 1;

/// Bytes of a console line the VMM reads at most.
pub const CONSOLE_BYTES: usize = 120;

/// ESR_EL2's exception class.
pub const fn exception_class(hsr: u64) -> u8 {
    ((hsr >> 26) & 0x3f) as u8
}

/// A console line, bytes the guest wrote: anything not printable ASCII is
/// shown as `?`, since the guest chooses them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConsoleLine {
    bytes: [u8; CONSOLE_BYTES],
    len: usize,
    /// No NUL within [`CONSOLE_BYTES`]: the line was cut there.
    pub truncated: bool,
}

impl ConsoleLine {
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is kept, so this never fails.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }
}

impl fmt::Debug for ConsoleLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Why the guest stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `hvc #0`: the guest says it is done.
    Done,
    /// It touched `gpa`, where its map has nothing.
    OutsideMap { gpa: u64, write: bool, fetch: bool },
    /// A stage-2 abort inside its map (RAM or a BAR mapped for it): the
    /// VM's mappings are not what the map says.
    InsideMap { gpa: u64, place: Place },
    /// An `hvc` immediate the console protocol does not have.
    UnknownHvc(u16),
    /// The console page is not RAM the VMM can read.
    ConsoleUnreadable,
    /// An exception class the VMM does not handle.
    Unhandled { ec: u8, hsr: u64 },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Done => write!(f, "the guest is done (hvc #0)"),
            Stop::OutsideMap { gpa, write, fetch } => write!(
                f,
                "the guest {} {gpa:#x}, outside its memory map",
                if *fetch {
                    "executed at"
                } else if *write {
                    "wrote"
                } else {
                    "read"
                }
            ),
            Stop::InsideMap { gpa, place } => {
                write!(f, "stage-2 abort at {gpa:#x} inside the map ({place})")
            }
            Stop::UnknownHvc(imm) => write!(f, "hvc #{imm}, not a console call"),
            Stop::ConsoleUnreadable => write!(f, "the console page is not guest RAM"),
            Stop::Unhandled { ec, hsr } => {
                write!(f, "unhandled exception class {ec:#x} (HSR {hsr:#x})")
            }
        }
    }
}

/// What the VMM does about a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Print the line (`guest: <line>`) and resume the guest: for `hvc`
    /// the return address is already the next instruction.
    Console(ConsoleLine),
    /// Stop the guest, for this cause.
    Stop(Stop),
}

/// A vCPU fault with syndrome `hsr`; `ram[i]` is the VMM's mapping of RAM
/// region `i`, from which a console line is read.
pub fn vcpu_fault(map: &GuestMap<'_>, ram: &[impl Memory], hsr: u64) -> Action {
    let ec = exception_class(hsr);
    if ec != EC_HVC64 {
        return Action::Stop(Stop::Unhandled { ec, hsr });
    }
    match hsr as u16 {
        HVC_DONE => Action::Stop(Stop::Done),
        HVC_CONSOLE => {
            console(map, ram).map_or(Action::Stop(Stop::ConsoleUnreadable), Action::Console)
        }
        imm => Action::Stop(Stop::UnknownHvc(imm)),
    }
}

/// A VM fault (stage-2 abort) at guest-physical `gpa` with syndrome
/// `fsr`: the guest always stops, told why.
pub fn vm_fault(map: &GuestMap<'_>, gpa: u64, fsr: u64) -> Action {
    let ec = exception_class(fsr);
    let fetch = ec == EC_IABT_LOWER;
    if ec != EC_DABT_LOWER && !fetch {
        return Action::Stop(Stop::Unhandled { ec, hsr: fsr });
    }
    Action::Stop(match map.place(gpa) {
        Place::Outside => Stop::OutsideMap {
            gpa,
            write: !fetch && fsr & ISS_WNR != 0,
            fetch,
        },
        place => Stop::InsideMap { gpa, place },
    })
}

/// The console line, up to its NUL or [`CONSOLE_BYTES`].
fn console(map: &GuestMap<'_>, ram: &[impl Memory]) -> Option<ConsoleLine> {
    let gpa = map.console_gpa()?;
    let mut raw = [0u8; CONSOLE_BYTES];
    if !map.read(ram, gpa, &mut raw) {
        return None;
    }
    let end = raw.iter().position(|&b| b == 0);
    let len = end.unwrap_or(CONSOLE_BYTES);
    let mut line = ConsoleLine {
        bytes: [0; CONSOLE_BYTES],
        len,
        truncated: end.is_none(),
    };
    for (out, &b) in line.bytes.iter_mut().zip(&raw[..len]) {
        *out = if b == b' ' || b.is_ascii_graphic() {
            b
        } else {
            b'?'
        };
    }
    Some(line)
}
