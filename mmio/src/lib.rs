//! `mmio`: the memory primitives bare-metal drivers rest on, and the
//! `unsafe` behind them: device registers ([`Mmio`]), memory devices reach
//! by DMA ([`DmaRegion`], [`DmaMemory`]), the AArch64 barriers and cache
//! maintenance a driver needs, statics handed out once
//! ([`StaticCell`], [`ConstStaticCell`]), and the one trait for memory
//! reached only by bounded byte copies ([`Memory`]: command pages, DMA
//! buffers, shared rings). Each `unsafe` constructor states its contract; every
//! block says why it is sound.
//!
//! It sits at the bottom of the ladder with no dependencies, so a device
//! driver that only needs register access (an edu or NVMe driver PD) does
//! not pull in the SMMU driver.

#![cfg_attr(not(test), no_std)]
#![allow(unsafe_code)]
#![warn(missing_debug_implementations)]

mod barrier;
mod cache;
mod cell;
mod copy;
mod dma;
mod regs;

pub use barrier::{dma_mb, dma_rmb, dma_wmb, dsb_sy};
#[cfg(feature = "maintenance-log")]
pub use cache::maintenance;
pub use cache::{CacheClean, Coherent, DcacheClean};
pub use cell::{ConstStaticCell, StaticCell};
pub use copy::{cells, Memory};
pub use dma::{DmaMemory, DmaRegion};
pub use regs::{Mmio, RegisterBlock};
