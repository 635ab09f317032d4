//! `iommu-types`: the vocabulary shared by every layer of the IOMMU server
//! and its clients, and nothing else: no logic, no dependencies beyond
//! `bitflags`.
//!
//! - [`Errno`]: the only error currency, with Linux's stable numbers;
//! - [`IovaRange`], [`Prot`]: IO address ranges and the access a mapping
//!   grants;
//! - [`ClientId`], [`StreamId`]: who asks and which device emits;
//! - [`Fault`] and the fault kinds and access bits a client reads back;
//! - [`config`]: what the static configuration says about each client;
//! - [`system`]: the system description it comes from, modelled once
//!   for the build-time checker and the PDs.
//!
//! The crates above build on it in one ladder: `iopt` (the engine and the
//! traits hardware implements), `hw` (page tables and the SMMUv3 driver),
//! `iommu-server` (the core), and the PDs on top.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod config;
pub mod errno;
pub mod fault;
mod id;
mod range;
pub mod system;

pub use errno::{Errno, Result};
pub use fault::Fault;
pub use id::{ClientId, StreamId};
pub use range::IovaRange;

bitflags::bitflags! {
    /// DMA access a mapping grants to devices.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Prot: u8 {
        /// Devices may read the memory (DMA to the device).
        const READ = 1 << 0;
        /// Devices may write the memory (DMA from the device).
        const WRITE = 1 << 1;
    }
}
