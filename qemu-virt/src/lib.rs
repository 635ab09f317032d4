//! Bare-metal images on QEMU virt with its SMMUv3: the platform they share
//! (boot, console, exit, device windows) and just enough PCI. Used by
//! `hw-qemu-test` (the SMMUv3 driver's cases) and `demo` (the whole system
//! without seL4). Each image links with `link.x` beside this crate.

#![no_std]

pub mod pci;
pub mod platform;
