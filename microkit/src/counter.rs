//! The generic timer's physical count, which this kernel lets user code
//! read (the SDK's seL4 configuration sets `CONFIG_EXPORT_PCNT_USER`; the
//! virtual count, CNTVCT_EL0, is not exported and would trap), and its
//! frequency.
#![allow(unsafe_code)]

/// CNTPCT_EL0, after every earlier instruction has completed.
#[inline(always)]
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: reads a system register the kernel makes readable at EL0
    // (CNTKCTL_EL1.EL0PCTEN, from CONFIG_EXPORT_PCNT_USER); the ISB keeps
    // the read from being taken before the code it times. No memory, no
    // stack, no flags touched.
    unsafe {
        core::arch::asm!("isb", "mrs {0}, cntpct_el0", out(reg) t, options(nomem, nostack, preserves_flags))
    };
    t
}

/// CNTFRQ_EL0, in Hz.
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: CNTFRQ_EL0 is readable at EL0 whenever a counter is (the
    // same EL0PCTEN); reading it touches nothing else.
    unsafe {
        core::arch::asm!("mrs {0}, cntfrq_el0", out(reg) f, options(nomem, nostack, preserves_flags))
    };
    f
}
