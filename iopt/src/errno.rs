//! The errno type lives in `iommu-proto`, shared with the server and its clients.
pub use iommu_proto::errno::{Errno, Result};
