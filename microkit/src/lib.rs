//! The seL4 Microkit ABI for this project's protection domains, modelled on
//! rust-sel4's `sel4-microkit`: a [`Handler`] with `protected` and
//! `notified`, a typed [`Channel`], `pp_call`, `notify`, `irq_ack`, and
//! debug output. All of the project's syscall code lives here, in
//! [`sys`](crate) (aarch64 only); the data encodings are host-tested.
//!
//! The runtime (entry point, event loop, syscalls, panic handler, the six
//! symbols) is the `pd` feature, on aarch64 bare metal only: PD images
//! enable it, anything else linking this crate gets the data types alone.
//!
//! Facts relied on (Microkit 2.3.0, seL4 16.0.0, MCS, aarch64): syscalls
//! are `svc #0` with the number in x7; the IPC buffer is the page below the
//! top of the user address space; every PD defines the six symbols the
//! Microkit tool patches; capability slots are those of [`slot`].

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

mod memory;
mod message;
mod vm;

pub use memory::{SetVar, SharedMemory};

pub use message::{
    decode_badge, fault, notified_channels, slot, Channel, Child, Delivery, MessageInfo, ENTRY,
};
pub use vm::{
    inject_irq_word, start_registers, unknown_syscall, vcpu_fault, vm_fault, Hsr, Vcpu, VcpuReg,
    SPSR_EL1H_MASKED,
};

/// A VMM's capability slots for its vCPUs.
pub mod vm_slot {
    pub use crate::vm::slot::{vcpu, vm_tcb};
}

/// Whether this build targets a debug kernel (debug console, and the
/// diagnostics that print on it).
pub const DEBUG: bool = cfg!(microkit_debug);

/// Invocation label of IRQHandler_Ack in the kernel this build targets
/// (checked against the SDK by build.rs when one is configured).
#[cfg(microkit_debug)]
pub const IRQ_ACK_LABEL: u64 = 31;
#[cfg(not(microkit_debug))]
pub const IRQ_ACK_LABEL: u64 = 27;

/// A protection domain's event handlers.
pub trait Handler {
    /// A protected procedure call arrived on `channel`; the returned
    /// message is the reply. Message registers are read and written with
    /// `get_mr` and `set_mr`.
    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo;

    /// A notification (or an IRQ) arrived on `channel`.
    fn notified(&mut self, channel: Channel);

    /// Child `child` faulted; `msg` is seL4's fault message (its label a
    /// [`fault`] type, its registers read with `get_mr`). `Some(reply)`
    /// resumes the child; `None` leaves it stopped, unless the handler
    /// restarted it (`pd_restart`). A PD without children never gets
    /// here; the default leaves the child stopped.
    fn fault(&mut self, child: Child, msg: MessageInfo) -> Option<MessageInfo> {
        let _ = (child, msg);
        None
    }
}

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "pd"))]
mod sys;

/// The generic timer as a PD reads it.
#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "pd"))]
pub mod counter;

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "pd"))]
pub use runtime::*;

#[cfg(all(target_arch = "aarch64", target_os = "none", feature = "pd"))]
mod runtime {
    use super::*;

    pub use crate::sys::{paint_stack, stack_high_water};

    /// Serves events forever: acknowledges the PD's IRQs once, then waits,
    /// answering each protected call through the reply capability.
    pub fn run<H: Handler>(mut handler: H) -> ! {
        let irqs = sys::symbols().irqs;
        for ch in notified_channels(irqs) {
            irq_ack(ch);
        }
        let mut reply: Option<MessageInfo> = None;
        loop {
            let (badge, msg) = match reply.take() {
                Some(answer) => sys::reply_recv(slot::INPUT, answer, slot::REPLY),
                None => sys::recv(slot::INPUT, slot::REPLY),
            };
            match decode_badge(badge) {
                Delivery::Protected(ch) => reply = Some(handler.protected(ch, msg)),
                Delivery::Notified(bits) => {
                    notified_channels(bits).for_each(|ch| handler.notified(ch))
                }
                Delivery::Fault(child) => reply = handler.fault(child, msg),
            }
        }
    }

    /// Signals the PD at the other end of `channel`.
    pub fn notify(channel: Channel) {
        sys::signal(slot::notification(channel.index()));
    }

    /// Calls the PD at the other end of `channel` and waits for its reply.
    pub fn pp_call(channel: Channel, msg: MessageInfo) -> MessageInfo {
        sys::call(slot::endpoint(channel.index()), msg)
    }

    /// Acknowledges the IRQ delivered on `channel`, so it can fire again.
    pub fn irq_ack(channel: Channel) {
        sys::call(
            slot::irq(channel.index()),
            MessageInfo::new(IRQ_ACK_LABEL, 0),
        );
    }

    /// Starts child `child` afresh: at [`ENTRY`] with its stack empty,
    /// whatever it was doing (a faulted child included). Its image is not
    /// reloaded: its `.bss` is zeroed again by its entry code, and its
    /// `.data` keeps what it held. Err carries seL4's error.
    pub fn pd_restart(child: Child) -> Result<(), u64> {
        sys::restart(slot::tcb(child), ENTRY)
    }

    /// Starts (or starts again) vCPU `vcpu` of this PD's virtual machine
    /// at guest address `entry`, in EL1h with interrupts masked
    /// ([`start_registers`]), whatever it was doing. Its general
    /// registers and EL1 state are as it left them: a VMM that resets a
    /// guest writes the EL1 registers it relies on first
    /// ([`vcpu_write_reg`]). microkit.h's `microkit_vcpu_restart`, with
    /// the PSTATE written too. Err carries seL4's error.
    pub fn vcpu_restart(vcpu: Vcpu, entry: u64) -> Result<(), u64> {
        sys::vcpu_start(vm_slot::vm_tcb(vcpu), start_registers(entry))
    }

    /// Stops vCPU `vcpu`: it runs no more until [`vcpu_restart`]
    /// (microkit.h's `microkit_vcpu_stop`). A fault it had pending is
    /// dropped with it.
    pub fn vcpu_stop(vcpu: Vcpu) -> Result<(), u64> {
        sys::suspend(vm_slot::vm_tcb(vcpu))
    }

    /// One of `vcpu`'s EL1 registers (`microkit_vcpu_arm_read_reg`).
    pub fn vcpu_read_reg(vcpu: Vcpu, reg: VcpuReg) -> Result<u64, u64> {
        sys::vcpu_read_reg(vm_slot::vcpu(vcpu), reg.number())
    }

    /// Sets one of `vcpu`'s EL1 registers (`microkit_vcpu_arm_write_reg`).
    pub fn vcpu_write_reg(vcpu: Vcpu, reg: VcpuReg, value: u64) -> Result<(), u64> {
        sys::vcpu_write_reg(vm_slot::vcpu(vcpu), reg.number(), value)
    }

    /// Injects virtual interrupt `virq` into `vcpu` through list register
    /// `index` (`microkit_vcpu_arm_inject_irq`).
    pub fn vcpu_inject_irq(
        vcpu: Vcpu,
        virq: u16,
        priority: u8,
        group: u8,
        index: u8,
    ) -> Result<(), u64> {
        sys::vcpu_inject_irq(
            vm_slot::vcpu(vcpu),
            inject_irq_word(virq, priority, group, index),
        )
    }

    /// Lets `vcpu`'s per-CPU interrupt `irq` fire again
    /// (`microkit_vcpu_arm_ack_vppi`).
    pub fn vcpu_ack_vppi(vcpu: Vcpu, irq: u64) -> Result<(), u64> {
        sys::vcpu_ack_vppi(vm_slot::vcpu(vcpu), irq)
    }

    /// How many times this PD has started: 1 in its first life, more once
    /// its parent has restarted it.
    pub fn starts() -> u32 {
        sys::starts()
    }

    /// Message register `i` of this PD's IPC buffer (0 past the last).
    pub fn get_mr(i: usize) -> u64 {
        sys::mr(i)
    }

    /// Sets message register `i` (ignored past the last).
    pub fn set_mr(i: usize, value: u64) {
        sys::set_mr(i, value)
    }

    /// This PD's name, as the system description gives it.
    pub fn name() -> &'static str {
        let name = sys::symbols().name;
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        core::str::from_utf8(&name[..len]).unwrap_or("?")
    }

    /// Writes to the kernel's debug console (debug kernels only; nothing on
    /// others).
    pub fn debug_print(s: &str) {
        if cfg!(microkit_debug) {
            s.bytes().for_each(sys::debug_put_char);
        }
    }

    /// `core::fmt` over [`debug_print`].
    pub struct DebugOut;

    impl core::fmt::Write for DebugOut {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            debug_print(s);
            Ok(())
        }
    }

    /// The entry point: `declare_pd!(init)` makes `init()`'s handler run.
    #[macro_export]
    macro_rules! declare_pd {
        ($init:expr) => {
            #[allow(unsafe_code)]
            #[export_name = "__microkit_pd_main"]
            fn __microkit_pd_main() -> ! {
                $crate::run($init())
            }
        };
    }
}
