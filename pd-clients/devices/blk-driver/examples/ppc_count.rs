//! `ppc_count null|map N`: N null requests (VFIO_GET_API_VERSION) or N
//! IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of the data region's first 4 KiB at
//! its strict-mode IOVA, device-read, through the block driver's client of
//! the server core, as the seL4 benchmark PD (pd-clients/pds/bench-pd)
//! makes them: for counting the server's instructions per request with
//! callgrind (docs/benchmarks.md, "On seL4, end to end"): run it with two N and divide
//! the difference.

#[path = "../tests/support/mod.rs"]
mod support;

use blk_driver::{Mode, DATA_IOVA};
use iommu_client::{Access, DmaBuffer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let map = match args.get(1).map(String::as_str) {
        Some("null") => false,
        Some("map") => true,
        _ => {
            eprintln!("usage: ppc_count null|map N");
            std::process::exit(2);
        }
    };
    let n: u32 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    support::with_driver(Mode::Strict, |driver, _, _, data, _, calls| {
        let buffer = DmaBuffer::new(support::DATA_VA, support::DATA_BYTES, data);
        for _ in 0..n {
            if map {
                let m = driver
                    .iommu
                    .map(
                        &driver.ioas,
                        &buffer,
                        0,
                        0x1000,
                        Access::Read,
                        Some(DATA_IOVA),
                    )
                    .expect("map");
                driver.iommu.unmap(m).expect("unmap");
            } else {
                driver.iommu.vfio_get_api_version().expect("null request");
            }
        }
        println!("{n} round trips, {} server requests", calls.get());
    });
}
