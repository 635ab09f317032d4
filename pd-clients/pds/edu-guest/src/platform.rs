//! The guest's platform: boot code, exception vectors, the calls to its
//! VMM (`hvc`), and handles on its RAM and its device's BAR. Every
//! `unsafe` of the guest is here.
//!
//! The guest runs at EL1 with its MMU off: every data access is to
//! Device memory, which faults on a misaligned access and is no place
//! for exclusives. The target keeps the compiler to aligned accesses
//! (aarch64-unknown-none is strict-align); the guest itself uses no
//! atomics and copies guest RAM a byte at a time.
#![allow(unsafe_code)]

use core::arch::{asm, global_asm};

use edu_device::Edu;
use mmio::{Memory, Mmio};

use crate::layout::{
    BAR_GPA, BAR_SIZE, CONSOLE_GPA, CONSOLE_SIZE, DMA_OFFSET, DMA_SIZE, RAM_GPA, RAM_SIZE,
};

// The VMM starts the vCPU at `_start` (the base of guest RAM) in EL1h,
// interrupts masked, with nothing else set: the boot code turns on
// FP/SIMD (compiled code may use the vector registers), installs the
// vectors, takes the stack below the console page, and zeroes .bss (a
// restart after a reset runs from a fresh copy of the image, but .bss is
// not in the image).
global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mov x0, #(3 << 20)
    msr cpacr_el1, x0
    isb
    adrp x0, vectors
    add x0, x0, :lo12:vectors
    msr vbar_el1, x0
    isb
    adrp x0, __stack_top
    add x0, x0, :lo12:__stack_top
    mov sp, x0
    adrp x0, __bss_start
    add x0, x0, :lo12:__bss_start
    adrp x1, __bss_end
    add x1, x1, :lo12:__bss_end
1:  cmp x0, x1
    b.hs 2f
    str xzr, [x0], #8
    b 1b
2:  bl guest_main
3:  mov x0, #{done}
    mov x7, #0
    hvc #0
    b 3b

    .balign 2048
vectors:
    .rept 16
    .balign 128
    mov x0, #{exception}
    mov x7, #0
    hvc #0
    b .
    .endr
"#,
    done = const CALL_DONE,
    exception = const CALL_EXCEPTION,
);

// A call to the VMM is `hvc #0` with the call's number in x0 (as SMCCC
// puts a function ID in w0) and x7 zero: seL4 takes a guest's `hvc` for
// a system call numbered by x7, and 0 is none of its own, so the call
// reaches the VMM as an unknown-syscall fault carrying x0..x7.

// The numbers are vmm_core::exit's CALL_*: the guest cannot link vmm-core
// (its microkit dependency brings a PD's runtime into this workspace's
// builds).

/// The guest is done.
pub const CALL_DONE: u64 = 0;
/// The console page holds a line for the VMM to print.
pub const CALL_CONSOLE: u64 = 1;
/// The guest took an exception it does not handle (its vectors make this
/// call); the VMM finds why in the vCPU's ESR_EL1, ELR_EL1 and FAR_EL1.
pub const CALL_EXCEPTION: u64 = 2;

/// Calls the VMM with `number`; it resumes the guest after the `hvc`.
fn call(number: u64) {
    // SAFETY: `hvc #0` traps to the VMM, which resumes the guest after
    // the instruction with x0..x7 as they were (its reply writes them
    // back); the VMM reads guest memory, which the compiler must have
    // written out first (no `nomem`).
    unsafe { asm!("hvc #0", inout("x0") number => _, inout("x7") 0u64 => _, options(nostack)) };
}

#[no_mangle]
extern "C" fn guest_main() {
    crate::guest_story()
}

/// Tells the VMM the guest is done; the VMM stops it there.
pub fn done() -> ! {
    loop {
        call(CALL_DONE);
    }
}

/// The guest's RAM from its base, `RAM_SIZE` bytes, reached by volatile
/// byte copies (Device memory with the MMU off; the device writes it
/// behind the CPU's back). Only the DMA area is open to it: the rest holds
/// the guest's image, stack and console page, which nothing may write
/// through this handle; an access there is refused like one past the end.
pub struct DmaArea;

impl DmaArea {
    /// The address of `len` bytes at `offset`, when they lie in the DMA
    /// area.
    fn at(offset: usize, len: usize) -> Option<usize> {
        let (start, size) = (DMA_OFFSET as usize, DMA_SIZE as usize);
        let end = offset.checked_add(len)?;
        (offset >= start && end <= start + size).then_some(RAM_GPA as usize + offset)
    }
}

impl Memory for DmaArea {
    fn len(&self) -> usize {
        RAM_SIZE as usize
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        let Some(base) = Self::at(offset, out.len()) else {
            return false;
        };
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: inside the DMA area of guest RAM, which `take` handed
            // out once and which nothing else in the guest uses.
            *b = unsafe { core::ptr::read_volatile((base + i) as *const u8) };
        }
        true
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        let Some(base) = Self::at(offset, bytes.len()) else {
            return false;
        };
        for (i, &b) in bytes.iter().enumerate() {
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile((base + i) as *mut u8, b) };
        }
        true
    }
}

/// The console: a NUL-terminated line in the console page, then `hvc #1`.
pub struct Console;

impl Console {
    /// Sends `line` (cut to the page, less its NUL).
    pub fn send(&self, line: &[u8]) {
        let line = &line[..line.len().min(CONSOLE_SIZE - 1)];
        let page = CONSOLE_GPA as usize;
        for (i, &b) in line.iter().chain(&[0]).enumerate() {
            // SAFETY: the console page is the last page of guest RAM, used
            // for nothing else (guest.ld ends the stack below it); `i` stays
            // inside it.
            unsafe { core::ptr::write_volatile((page + i) as *mut u8, b) };
        }
        call(CALL_CONSOLE);
    }
}

/// Guest RAM's DMA area and the device, each handed out once: the
/// guest's one claim, made at the start of its single thread.
pub fn take() -> (DmaArea, Edu<Mmio>) {
    // SAFETY: the VMM maps the edu BAR at BAR_GPA (system.xml's
    // <virtual_machine> map, uncached), BAR_SIZE bytes; the guest makes
    // this handle once and no other.
    let edu = Edu(unsafe { Mmio::new(BAR_GPA as usize, BAR_SIZE) });
    (DmaArea, edu)
}

/// CNTVCT_EL0, the virtual count, after every earlier instruction has
/// completed: EL1 reads it without a trap (the physical count minus
/// CNTVOFF, which is constant, so differences are the physical ones).
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: reads a system register EL1 may always read; the ISB keeps
    // the read from being taken before the code it times. No memory, no
    // stack, no flags touched.
    unsafe {
        asm!("isb", "mrs {0}, cntvct_el0", out(reg) t, options(nomem, nostack, preserves_flags))
    };
    t
}

/// CNTFRQ_EL0, in Hz.
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: CNTFRQ_EL0 is readable at EL1; reading it touches nothing
    // else.
    unsafe { asm!("mrs {0}, cntfrq_el0", out(reg) f, options(nomem, nostack, preserves_flags)) };
    f
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let mut line = crate::Line::new();
    let _ = write!(line, "FAILED - guest panic: {info}");
    line.send();
    done()
}
