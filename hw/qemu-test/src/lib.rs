//! Bare-metal images on QEMU virt with its SMMUv3: the platform they share
//! (boot, console, exit, device windows) and just enough PCI. The images:
//! `hw-qemu-test` (the SMMUv3 driver's cases) and `demo` (the whole
//! system without seL4: the server core and the edu drivers in one image).

#![no_std]

pub mod pci;
pub mod platform;
