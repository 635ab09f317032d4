//! A VMM's side of passing a PCI device to a guest, as QEMU does with
//! VFIO type1 on Linux, over the IOMMU server (docs/vm.md):
//!
//! - [`map`]: the guest's memory map as data: RAM regions (guest-physical
//!   address, size, where the VMM maps them) and device BARs;
//! - [`vfio`]: the VFIO sequence that gives the guest's device its guest's
//!   RAM and nothing else, IOVA = guest-physical address, with GET_INFO's
//!   answer checked before anything is mapped;
//! - [`exit`]: the guest's exits as seL4 delivers them (its `hvc` calls
//!   as unknown-syscall faults, vCPU faults, stage-2 aborts) decoded into
//!   what the VMM does: print a console line and resume, or stop;
//! - [`faults`]: the guest device's DMA faults, each placed in the
//!   guest's map;
//! - [`reset`]: the guest reset path as a state machine: stop the vCPU,
//!   have the server quarantine and revoke the device, forget the VMM's
//!   device state, map again, restart.
//!
//! Every failure is an [`Error`] naming the request, the errno and the
//! cause. Nothing here touches hardware or a kernel: the vCPU is a
//! [`reset::Vcpu`], the server an `iommu_client::Iommu` over any
//! transport, guest RAM an [`mmio::Memory`], so every part runs in host
//! tests against the server core.

#![no_std]
#![forbid(unsafe_code)]

pub mod error;
pub mod exit;
pub mod faults;
pub mod map;
pub mod phase;
pub mod reset;
pub mod vfio;

pub use error::{Cause, Error, Request};
pub use exit::{Action, ConsoleLine, El1Exception, GuestCall, Resume, Stop};
pub use map::{Bar, GuestMap, Place, RamRegion};
pub use phase::Phase;
pub use reset::{Guest, Vcpu};
pub use vfio::{IommuInfo, Passthrough};

/// The VMM PD's program image (system.xml's `<program_image>`): the
/// clients running it are VMMs.
pub const IMAGE: &str = "vmm.elf";

/// The guest-physical layout of the example's guest (system.xml's
/// `guest_ram`, and the VM's view of it): RAM where QEMU virt puts RAM,
/// the passed-through device's BAR0 in the guest's PCI window.
pub mod layout {
    /// Guest RAM's guest-physical address.
    pub const GUEST_RAM_GPA: u64 = 0x4000_0000;
    /// BAR0 of the guest's edu device, guest-physical.
    pub const GUEST_BAR_GPA: u64 = 0x1000_0000;
    /// Bytes of the edu device's BAR0.
    pub const GUEST_BAR_SIZE: u64 = 0x10_0000;
}
