//! The example system's story, step by step: what each client does to
//! show what the IOMMU server and the system description contain, and
//! what it checks and says. The client PDs (`pd-clients/pds/*`) and the
//! bare-metal demo (`demo/`) run the same steps, each over its own
//! transport and memory, so the two tell the same story; the device
//! libraries below hold only what drives a device.
//!
//! - [`edu`]: an edu driver over the server: bind, map, DMA both ways,
//!   a stray DMA stopped and reported, a reset and a crash mid-DMA;
//! - [`storm`]: one device's fault storm and another client's single
//!   fault, which still reaches it exactly;
//! - [`report`]: the manager's copy of the server's own report;
//! - [`cause`]: what in the configuration makes the server refuse a
//!   request, and where the configuration says it;
//! - [`edu_static`]: an edu driver written sDDF's way, which never calls
//!   the server (the system description alone confines its device);
//! - [`blk`]: a block client of the NVMe driver, confined to its share of
//!   the disk and surviving its driver's crash.

#![no_std]
#![forbid(unsafe_code)]

pub mod blk;
pub mod cause;
pub mod edu;
pub mod edu_static;
pub mod report;
pub mod storm;

/// A step's outcome: what went wrong, for the story's output.
pub type Step = Result<(), &'static str>;

/// The byte an edu transfer's test pattern `seed` has at `i` (a guest's
/// driver checks the same pattern, so it lives with the device).
pub use edu_device::pattern;
