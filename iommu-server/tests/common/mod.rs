//! What the server core's tests share: the testkit's rig, builders and
//! mocks. Each test builds its own configuration.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use iommu_testkit::rig::{client, device, id, region, ClientBuilder, DEFAULT_QUOTA};
#[allow(unused_imports)]
pub use iommu_testkit::{MockHw, PtHw, Rig, PAGE_VA};
