//! Test support: the shared fixtures (testkit) and the reference model.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use iommu_testkit::{store, Domains, MockDomain, Page, ARM_4K, G1, K4, K64, M2};

pub mod fixture;
pub mod model;
