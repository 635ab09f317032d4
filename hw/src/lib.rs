//! The server's hardware half: VMSAv8-64 stage-1 IO page tables (host
//! testable, no MMIO) and the ARM SMMUv3 driver.
//!
//! `unsafe` is confined to [`mmio`] (register access and the few AArch64
//! instructions the driver needs); everything else is safe code.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

pub mod domains;
pub mod mmio;
pub mod pgtable;
pub mod smmu;
