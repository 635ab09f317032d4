//! What the system tests share: the testkit's rig, builders and mocks.
//! Each test builds its own configuration; only the tests about the
//! shipped example read system.xml and iommu.xml.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use iommu_testkit::rig::{client, device, id, region, ClientBuilder, DEFAULT_QUOTA};
#[allow(unused_imports)]
pub use iommu_testkit::{MockHw, PtHw, Rig, PAGE_VA};
