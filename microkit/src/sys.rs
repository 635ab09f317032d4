//! seL4 syscalls, the IPC buffer and the symbols the Microkit tool patches:
//! every `unsafe` of the PDs. aarch64, MCS kernel.
#![allow(unsafe_code)]

use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::MessageInfo;

const SYS_CALL: i64 = -1;
const SYS_REPLY_RECV: i64 = -2;
const SYS_SEND: i64 = -5;
const SYS_RECV: i64 = -7;
const SYS_DEBUG_PUT_CHAR: i64 = -12;
/// Invocation labels (pinned in build.rs against the SDK). The TCB ones
/// are the same in every configuration; the vCPU ones come after the
/// debug-only invocations and so move between debug and release.
const TCB_WRITE_REGISTERS: u64 = 3;
const TCB_SUSPEND: u64 = 12;
#[cfg(microkit_debug)]
const VCPU_INJECT_IRQ: u64 = 60;
#[cfg(not(microkit_debug))]
const VCPU_INJECT_IRQ: u64 = 56;
#[cfg(microkit_debug)]
const VCPU_READ_REG: u64 = 61;
#[cfg(not(microkit_debug))]
const VCPU_READ_REG: u64 = 57;
#[cfg(microkit_debug)]
const VCPU_WRITE_REG: u64 = 62;
#[cfg(not(microkit_debug))]
const VCPU_WRITE_REG: u64 = 58;
#[cfg(microkit_debug)]
const VCPU_ACK_VPPI: u64 = 63;
#[cfg(not(microkit_debug))]
const VCPU_ACK_VPPI: u64 = 59;

/// The IPC buffer: the page below the top of the user address space.
const IPC_BUFFER: usize = 0xff_ffff_f000;
/// Message registers live after the tag word.
const MR_OFFSET: usize = 8;
const MR_COUNT: usize = 120;
/// Message registers passed in x2..x5.
const REG_MRS: usize = 4;

/// The top of a PD's stack: Microkit leaves one guard page between it and
/// the IPC buffer.
const STACK_TOP: usize = IPC_BUFFER - 0x1000;
/// What unused stack is painted with, so the deepest word written shows.
const STACK_PAINT: u64 = 0x5717_c0de_5717_c0de;
/// Bytes left unpainted below the painting frame's own stack pointer.
const PAINT_MARGIN: usize = 256;

/// Paints the part of a `stack_size`-byte stack below the caller's frame.
/// `stack_size` must be the PD's `stack_size` in system.xml.
pub fn paint_stack(stack_size: usize) {
    let sp: usize;
    // SAFETY: reading the stack pointer has no side effects.
    unsafe { asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    let bottom = STACK_TOP - stack_size;
    let mut at = bottom;
    while at + 8 <= sp.saturating_sub(PAINT_MARGIN) {
        // SAFETY: [bottom, STACK_TOP) is this PD's stack (the caller passes
        // the size system.xml gives it), mapped read-write; the words below
        // the live frames hold nothing anyone reads.
        unsafe { core::ptr::write_volatile(at as *mut u64, STACK_PAINT) };
        at += 8;
    }
}

/// Bytes between the top of a stack painted by [`paint_stack`] and the
/// deepest word written since.
pub fn stack_high_water(stack_size: usize) -> usize {
    let bottom = STACK_TOP - stack_size;
    let mut at = bottom;
    // SAFETY: as in `paint_stack`; reading never disturbs a frame.
    while at < STACK_TOP && unsafe { core::ptr::read_volatile(at as *const u64) } == STACK_PAINT {
        at += 8;
    }
    STACK_TOP - at
}

fn mr_ptr(i: usize) -> *mut u64 {
    (IPC_BUFFER + MR_OFFSET + 8 * i) as *mut u64
}

pub fn mr(i: usize) -> u64 {
    if i >= MR_COUNT {
        return 0;
    }
    // SAFETY: the kernel maps this PD's IPC buffer at IPC_BUFFER for its
    // whole life; `i` is inside the message-register array.
    unsafe { core::ptr::read_volatile(mr_ptr(i)) }
}

pub fn set_mr(i: usize, value: u64) {
    if i < MR_COUNT {
        // SAFETY: as in `mr`.
        unsafe { core::ptr::write_volatile(mr_ptr(i), value) }
    }
}

fn load_regs() -> [u64; REG_MRS] {
    [mr(0), mr(1), mr(2), mr(3)]
}

fn store_regs(regs: [u64; REG_MRS]) {
    for (i, v) in regs.into_iter().enumerate() {
        set_mr(i, v);
    }
}

pub fn call(cap: u64, msg: MessageInfo) -> MessageInfo {
    let [mut m0, mut m1, mut m2, mut m3] = load_regs();
    let info: u64;
    // SAFETY: seL4_Call: x0 = capability, x1 = message info, x2..x5 = the
    // first message registers; the kernel writes the reply into the same
    // registers and clobbers nothing else the compiler uses.
    unsafe {
        asm!("svc #0",
            inout("x0") cap => _,
            inout("x1") msg.0 => info,
            inout("x2") m0, inout("x3") m1, inout("x4") m2, inout("x5") m3,
            in("x7") SYS_CALL,
            options(nostack));
    }
    store_regs([m0, m1, m2, m3]);
    MessageInfo(info)
}

pub fn signal(cap: u64) {
    // SAFETY: seL4_Signal is seL4_Send with an empty message info.
    unsafe {
        asm!("svc #0", in("x0") cap, in("x1") 0u64, in("x7") SYS_SEND, options(nostack));
    }
}

/// Waits on `src`; returns (badge, message info).
pub fn recv(src: u64, reply: u64) -> (u64, MessageInfo) {
    let (badge, info): (u64, u64);
    let (m0, m1, m2, m3): (u64, u64, u64, u64);
    // SAFETY: seL4_Recv (MCS): x0 = source, x6 = reply object; returns
    // badge, info and the first message registers.
    unsafe {
        asm!("svc #0",
            inout("x0") src => badge,
            out("x1") info,
            out("x2") m0, out("x3") m1, out("x4") m2, out("x5") m3,
            in("x6") reply,
            in("x7") SYS_RECV,
            options(nostack));
    }
    store_regs([m0, m1, m2, m3]);
    (badge, MessageInfo(info))
}

/// Replies with `msg`, then waits on `src`; returns (badge, message info).
pub fn reply_recv(src: u64, msg: MessageInfo, reply: u64) -> (u64, MessageInfo) {
    let [mut m0, mut m1, mut m2, mut m3] = load_regs();
    let (badge, info): (u64, u64);
    // SAFETY: seL4_ReplyRecv (MCS): x0 = source, x1 = reply info, x2..x5 =
    // reply registers, x6 = reply object; returns like `recv`.
    unsafe {
        asm!("svc #0",
            inout("x0") src => badge,
            inout("x1") msg.0 => info,
            inout("x2") m0, inout("x3") m1, inout("x4") m2, inout("x5") m3,
            in("x6") reply,
            in("x7") SYS_REPLY_RECV,
            options(nostack));
    }
    store_regs([m0, m1, m2, m3]);
    (badge, MessageInfo(info))
}

pub fn debug_put_char(c: u8) {
    // SAFETY: seL4_DebugPutChar: x0 = the character; debug kernels only,
    // which the caller checks.
    unsafe {
        asm!("svc #0", in("x0") u64::from(c), in("x7") SYS_DEBUG_PUT_CHAR, options(nostack));
    }
}

/// The values the Microkit tool patched into this PD.
pub struct Symbols {
    pub name: &'static [u8; 64],
    pub irqs: u64,
}

#[no_mangle]
#[used]
#[link_section = ".data"]
static mut microkit_name: [u8; 64] = [0; 64];
#[no_mangle]
#[used]
#[link_section = ".data"]
static mut microkit_passive: u8 = 0;
#[no_mangle]
#[used]
#[link_section = ".data"]
static mut microkit_irqs: u64 = 0;
#[no_mangle]
#[used]
#[link_section = ".data"]
static mut microkit_notifications: u64 = 0;
#[no_mangle]
#[used]
#[link_section = ".data"]
static mut microkit_pps: u64 = 0;
#[no_mangle]
#[used]
#[link_section = ".data"]
static mut microkit_ioports: u64 = 0;

pub fn symbols() -> Symbols {
    // SAFETY: the Microkit tool writes these into the ELF before the PD
    // starts, and nothing writes them at run time: shared reads are sound.
    unsafe {
        Symbols {
            name: &*core::ptr::addr_of!(microkit_name),
            irqs: core::ptr::read_volatile(core::ptr::addr_of!(microkit_irqs)),
        }
    }
}

extern "Rust" {
    fn __microkit_pd_main() -> !;
}

/// Starts of this PD, kept in .data: the entry code zeroes .bss at every
/// start, restarts included, so this is the one count that survives.
#[link_section = ".data"]
static STARTS: AtomicU32 = AtomicU32::new(0);

pub fn starts() -> u32 {
    STARTS.load(Ordering::Relaxed)
}

// The entry point, first in .text (pd.ld): Microkit starts a PD here with
// only PC and SP set, and a parent restarts a child here. .bss is zeroed
// before any Rust code runs, so a restarted PD starts from the state its
// image describes (link script pd.ld aligns the bounds to 8 bytes).
core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    adrp x0, __bss_start",
    "    add x0, x0, :lo12:__bss_start",
    "    adrp x1, __bss_end",
    "    add x1, x1, :lo12:__bss_end",
    "1:  cmp x0, x1",
    "    b.hs 2f",
    "    str xzr, [x0], #8",
    "    b 1b",
    "2:  b {rust_start}",
    rust_start = sym rust_start,
);

extern "C" fn rust_start() -> ! {
    STARTS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: `declare_pd!` defines this symbol with exactly this signature.
    unsafe { __microkit_pd_main() }
}

/// seL4's answer to an invocation: label 0 is success, any other its error.
fn result(reply: MessageInfo) -> Result<(), u64> {
    match reply.label() {
        0 => Ok(()),
        e => Err(e),
    }
}

/// seL4_TCB_WriteRegisters: writes the first `regs.len()` registers in
/// seL4_UserContext order (pc, sp, spsr, x0, ...), then resumes the
/// thread, whatever state it was in.
fn write_registers_and_resume(tcb: u64, regs: &[u64]) -> Result<(), u64> {
    // libsel4's marshalling: resume in bit 0 (no arch flags in 15:8),
    // the count, then the registers.
    set_mr(0, 1);
    set_mr(1, regs.len() as u64);
    for (i, &v) in regs.iter().enumerate() {
        set_mr(2 + i, v);
    }
    result(call(
        tcb,
        MessageInfo::new(TCB_WRITE_REGISTERS, 2 + regs.len() as u64),
    ))
}

/// Writes a child's PC and SP through its TCB capability and resumes it.
pub fn restart(tcb: u64, pc: u64) -> Result<(), u64> {
    write_registers_and_resume(tcb, &[pc, STACK_TOP as u64])
}

/// Starts a vCPU's thread at `regs` (pc, sp, spsr) and resumes it.
pub fn vcpu_start(tcb: u64, regs: [u64; 3]) -> Result<(), u64> {
    write_registers_and_resume(tcb, &regs)
}

/// seL4_TCB_Suspend: the thread runs no more until written and resumed.
pub fn suspend(tcb: u64) -> Result<(), u64> {
    result(call(tcb, MessageInfo::new(TCB_SUSPEND, 0)))
}

/// seL4_ARM_VCPU_ReadRegs: one EL1 register of a vCPU.
pub fn vcpu_read_reg(vcpu: u64, reg: u64) -> Result<u64, u64> {
    set_mr(0, reg);
    result(call(vcpu, MessageInfo::new(VCPU_READ_REG, 1)))?;
    Ok(mr(0))
}

/// seL4_ARM_VCPU_WriteRegs.
pub fn vcpu_write_reg(vcpu: u64, reg: u64, value: u64) -> Result<(), u64> {
    set_mr(0, reg);
    set_mr(1, value);
    result(call(vcpu, MessageInfo::new(VCPU_WRITE_REG, 2)))
}

/// seL4_ARM_VCPU_InjectIRQ, its arguments packed in one word.
pub fn vcpu_inject_irq(vcpu: u64, word: u64) -> Result<(), u64> {
    set_mr(0, word);
    result(call(vcpu, MessageInfo::new(VCPU_INJECT_IRQ, 1)))
}

/// seL4_ARM_VCPU_AckVPPI: the guest's per-CPU interrupt `irq` may be
/// delivered again.
pub fn vcpu_ack_vppi(vcpu: u64, irq: u64) -> Result<(), u64> {
    set_mr(0, irq);
    result(call(vcpu, MessageInfo::new(VCPU_ACK_VPPI, 1)))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let _ = writeln!(crate::DebugOut, "{}: panic: {info}", crate::name());
    loop {
        // SAFETY: an undefined instruction faults; Microkit's monitor
        // reports the fault and the PD stops running.
        unsafe { asm!("udf #0", options(nomem, nostack)) };
    }
}
