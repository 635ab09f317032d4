//! Fixtures for the tests of every crate, written once:
//!
//! - [`MockDomain`]: an IO page table that records every page exactly as
//!   hardware would hold it, with any page-size bitmap, aperture and page
//!   limit, and that records every request a correct engine never makes;
//! - [`MockHw`]: the server's [`Hardware`](iopt::Hardware) over mock
//!   domains, with failure injection, wedged streams and an attach log;
//! - [`PtHw`]: the server's hardware over `hw`'s real page tables;
//! - [`Rig`]: a server with N clients and their command pages, with the
//!   requests most tests make; [`store`] for the engine alone;
//! - [`RigTransport`], [`HeapMemory`]: a client library's transport into
//!   a rig's server and its memory, for the tests of the client library
//!   and of the drivers on it ([`local`]);
//! - [`edu::SimEdu`]: QEMU's edu device, its DMA translated by a rig's
//!   mock IOMMU, what does not translate reported as a fault;
//! - [`tools`]: what the tests that build images or boot QEMU need.
//!
//! Storage is given back: a rig or store returns its pools to a
//! per-thread spare list when dropped ([`recycle`]), so a property test
//! runs any number of cases in the memory of one.

pub mod domain;
pub mod edu;
pub mod hardware;
pub mod local;
pub mod pagetables;
pub mod recycle;
pub mod rig;
pub mod tools;

pub use domain::{Domains, MockDomain, Page, ARM_4K, G1, K4, K64, M2};
pub use hardware::MockHw;
pub use local::{HeapMemory, RigTransport};
pub use pagetables::PtHw;
pub use recycle::{GiveBack, Lent};
pub use rig::{store, Rig, PAGE_VA};
