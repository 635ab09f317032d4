//! What the system tests share beyond the testkit: the server configured
//! by this repository's own system.xml and iommu.xml.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use iommu_testkit::rig::{client, device, id, region, ClientBuilder, DEFAULT_QUOTA};
#[allow(unused_imports)]
pub use iommu_testkit::{MockHw, PtHw, Rig, PAGE_VA};

/// The setvar address the tests give region symbol `i`, as the Microkit
/// tool would patch it.
pub fn symbol_paddr(i: usize) -> u64 {
    0x6000_0000 + 0x100_0000 * i as u64
}

/// A server over the mock IOMMU configured by this repository's
/// system.xml and iommu.xml (what build.rs generated), pools sized as the
/// server PD sizes them.
pub fn system_server() -> Rig<MockHw> {
    use iommu_system::{client_configs, Perms, Region, TOTAL_MAPPINGS, TOTAL_REGIONS};
    let regions = iommu_testkit::recycle::slice(
        TOTAL_REGIONS,
        Region {
            vaddr: 0,
            size: 0,
            paddr: 0,
            perms: Perms::RO,
        },
    );
    let regions: &'static mut [Region; TOTAL_REGIONS] =
        regions.try_into().expect("TOTAL_REGIONS long");
    let configs = client_configs(regions, symbol_paddr);
    Rig::try_new(MockHw::new(), &configs, TOTAL_MAPPINGS)
        .expect("the generated configuration is accepted")
}
