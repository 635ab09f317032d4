//! `hw`: the server's hardware. VMSAv8-64 stage-1 IO page tables
//! ([`pgtable`], host testable, no MMIO), the ARM SMMUv3 driver
//! ([`smmu`]), and the two joined as the engine's domains and the server's
//! [`iopt::Hardware`] ([`domains::SmmuDomains`]).
//!
//! From `iopt` it takes only the traits it implements (`IoDomain`,
//! `DomainTable`, `Hardware`); register and DMA-memory access and every
//! `unsafe` come from the `mmio` crate below it.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod domains;
pub mod pgtable;
pub mod smmu;
