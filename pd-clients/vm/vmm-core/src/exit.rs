//! The guest's exits decoded into what the VMM does, as seL4 (Microkit
//! 2.3.0's hypervisor kernel) delivers them:
//!
//! - the guest's calls: it executes `hvc #0` with the call's number in
//!   x0 (as SMCCC passes a function ID) and x7 zero. The kernel takes a
//!   vCPU's `hvc` for a system call numbered by x7, and 0 is none of its
//!   own, so the call reaches the VMM as an unknown-syscall fault carrying
//!   x0..x7 and the PC of the `hvc` itself (the immediate is not
//!   delivered). The VMM resumes the guest by replying with x0..x7 and
//!   the PC past the `hvc`; a reply without the PC would run the `hvc`
//!   again. [`GuestCall`] is that fault, [`guest_call`] its decoding;
//! - a vCPU fault: an instruction of the guest trapped to the hypervisor
//!   (a WFI, a system register); its syndrome is ESR_EL2 (seL4's HSR).
//!   This guest traps nothing on purpose, so each stops it;
//! - a VM fault: a stage-2 abort, an access to a guest-physical address
//!   nothing is mapped at, with the address and ESR_EL2.
//!
//! The console: the guest writes a NUL-terminated line into the last
//! page of its RAM ([`GuestMap::console_gpa`]) and makes call
//! [`CALL_CONSOLE`]. The VMM reads nothing else of the guest's memory.

use core::fmt;

use microkit::{unknown_syscall, Hsr};
use mmio::Memory;

use crate::map::{GuestMap, Place};

/// The guest's calls (x0 of its `hvc #0`): it is done.
pub const CALL_DONE: u64 = 0;
/// The console page holds a line for the VMM to print.
pub const CALL_CONSOLE: u64 = 1;
/// The guest took an exception it does not handle (its vectors make this
/// call); why is in its EL1 syndrome registers ([`El1Exception`]).
pub const CALL_EXCEPTION: u64 = 2;

/// ISS of a data abort: the access was a write (WnR).
const ISS_WNR: u32 = 1 << 6;

/// Bytes of a console line the VMM reads at most.
pub const CONSOLE_BYTES: usize = 200;

/// A guest's call as an unknown-syscall fault carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestCall {
    /// x0..x7 at the `hvc`.
    pub x: [u64; 8],
    /// The PC of the `hvc` itself.
    pub pc: u64,
}

impl GuestCall {
    /// The call from the fault's message registers, `mr(i)` reading
    /// register `i` (microkit's `unknown_syscall` numbering).
    pub fn from_message(mr: impl Fn(usize) -> u64) -> GuestCall {
        GuestCall {
            x: core::array::from_fn(|i| mr(unknown_syscall::X0 + i)),
            pc: mr(unknown_syscall::FAULT_IP),
        }
    }

    /// The reply that resumes the guest after its `hvc`, x0..x7 as they
    /// were.
    pub fn resume(&self) -> Resume {
        Resume {
            x: self.x,
            pc: unknown_syscall::resume_pc(self.pc),
        }
    }
}

/// A reply to an unknown-syscall fault that resumes the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// x0..x7 the guest resumes with.
    pub x: [u64; 8],
    /// Where it resumes.
    pub pc: u64,
}

impl Resume {
    /// Writes the reply's message registers with `set_mr(i, value)` and
    /// returns the reply's length: x0..x7, then the PC.
    pub fn to_message(&self, mut set_mr: impl FnMut(usize, u64)) -> u64 {
        for (i, &x) in self.x.iter().enumerate() {
            set_mr(unknown_syscall::X0 + i, x);
        }
        set_mr(unknown_syscall::FAULT_IP, self.pc);
        unknown_syscall::RESUME_LENGTH
    }
}

/// The guest's EL1 syndrome registers at an exception it took: what its
/// call [`CALL_EXCEPTION`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El1Exception {
    pub esr: u64,
    pub elr: u64,
    pub far: u64,
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
    /// Call [`CALL_DONE`]: the guest says it is done.
    Done,
    /// Call [`CALL_EXCEPTION`]: an exception the guest does not handle.
    Exception(El1Exception),
    /// A call this protocol does not have (x0 `number`, or x7 not zero),
    /// made by the `hvc` at `pc`.
    UnknownCall { number: u64, x7: u64, pc: u64 },
    /// The console page is not RAM the VMM can read.
    ConsoleUnreadable,
    /// It touched `gpa`, where its map has nothing.
    OutsideMap {
        gpa: u64,
        pc: u64,
        write: bool,
        fetch: bool,
    },
    /// A stage-2 abort inside its map (RAM or a BAR mapped for it): the
    /// VM's mappings are not what the map says.
    InsideMap { gpa: u64, pc: u64, place: Place },
    /// An instruction trapped to the hypervisor (a vCPU fault), or a VM
    /// fault that is not an abort: ESR_EL2.
    Trapped { hsr: u64 },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Done => write!(f, "the guest is done"),
            Stop::Exception(e) => write!(
                f,
                "the guest took an exception: ESR_EL1 {:#x} ({}), ELR_EL1 {:#x}, FAR_EL1 {:#x}",
                e.esr,
                Hsr(e.esr).class_name(),
                e.elr,
                e.far
            ),
            Stop::UnknownCall { number, x7, pc } => write!(
                f,
                "the guest made call {number:#x} (x7 {x7:#x}) at pc {pc:#x}, not one of its VMM's"
            ),
            Stop::ConsoleUnreadable => write!(f, "the console page is not guest RAM"),
            Stop::OutsideMap {
                gpa,
                pc,
                write,
                fetch,
            } => write!(
                f,
                "the guest {} {gpa:#x} (pc {pc:#x}), outside its memory map",
                if *fetch {
                    "executed at"
                } else if *write {
                    "wrote"
                } else {
                    "read"
                }
            ),
            Stop::InsideMap { gpa, pc, place } => {
                write!(
                    f,
                    "stage-2 abort at {gpa:#x} (pc {pc:#x}) inside the map ({place})"
                )
            }
            Stop::Trapped { hsr } => write!(
                f,
                "the guest trapped: {} (HSR {hsr:#x})",
                Hsr(*hsr).class_name()
            ),
        }
    }
}

/// What the VMM does about an exit.
// The console line is carried by value: no_std has no box, and an action
// lives on the stack for one exit.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Print the line (`guest: <line>`) and resume the guest with
    /// `resume`.
    Console { line: ConsoleLine, resume: Resume },
    /// Stop the guest, for this cause.
    Stop(Stop),
}

/// The guest's call `call`; `ram[i]` is the VMM's mapping of RAM region
/// `i`, from which a console line is read, and `exception` reads the
/// vCPU's EL1 syndrome registers (only for [`CALL_EXCEPTION`]).
pub fn guest_call(
    map: &GuestMap<'_>,
    ram: &[impl Memory],
    call: &GuestCall,
    exception: impl FnOnce() -> El1Exception,
) -> Action {
    let (number, x7) = (call.x[0], call.x[7]);
    if x7 != 0 {
        return Action::Stop(Stop::UnknownCall {
            number,
            x7,
            pc: call.pc,
        });
    }
    match number {
        CALL_DONE => Action::Stop(Stop::Done),
        CALL_CONSOLE => console(map, ram).map_or(Action::Stop(Stop::ConsoleUnreadable), |line| {
            Action::Console {
                line,
                resume: call.resume(),
            }
        }),
        CALL_EXCEPTION => Action::Stop(Stop::Exception(exception())),
        number => Action::Stop(Stop::UnknownCall {
            number,
            x7,
            pc: call.pc,
        }),
    }
}

/// A vCPU fault with syndrome `hsr`: the guest trapped an instruction it
/// is not meant to, and stops.
pub fn vcpu_fault(hsr: u64) -> Action {
    Action::Stop(Stop::Trapped { hsr })
}

/// A VM fault (stage-2 abort) at guest-physical `gpa` by the instruction
/// at `pc`, with syndrome `fsr` (ESR_EL2): the guest always stops, told
/// why.
pub fn vm_fault(map: &GuestMap<'_>, gpa: u64, pc: u64, fsr: u64) -> Action {
    let hsr = Hsr(fsr);
    let fetch = hsr.ec() == Hsr::EC_IABT_LOWER;
    if hsr.ec() != Hsr::EC_DABT_LOWER && !fetch {
        return Action::Stop(Stop::Trapped { hsr: fsr });
    }
    Action::Stop(match map.place(gpa) {
        Place::Outside => Stop::OutsideMap {
            gpa,
            pc,
            write: !fetch && hsr.iss() & ISS_WNR != 0,
            fetch,
        },
        place => Stop::InsideMap { gpa, pc, place },
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
