//! The block driver against the server core (through the byte-level
//! request path) and the simulated NVMe controller: in strict mode the
//! server holds no mapping of a client's data once its requests have
//! completed, and costs two server requests (map, unmap) per I/O; static
//! mode holds the whole region mapped from the start and costs none.

mod support;

use blk_driver::{Mode, DATA_IOVA};
use iommu_testkit::rig::id;
use iommu_testkit::Rig;
use scenarios::blk::{Next, Story};
use support::{with_driver, DATA_BYTES};

/// Runs one block client's story in `mode`; after every round the driver
/// serves, `check` sees the server. Returns the server calls the I/O made
/// and the I/Os.
fn run(mode: Mode, mut check: impl FnMut(&Rig, u32)) -> (u64, u64) {
    with_driver(mode, |driver, k, ring, data, rig, calls| {
        let ioas = driver.ioas.id();
        let mut client_ring = blk_queue::Client::new(ring).unwrap();
        let mut story = Story::new(0);
        let before = (calls.get(), driver.stats.ios);
        let mut out = String::new();
        for _ in 0..8 {
            match story.step(&mut client_ring, data, &mut out) {
                Next::Done(ok) => {
                    assert!(ok, "{out}");
                    return (calls.get() - before.0, driver.stats.ios - before.1);
                }
                _ => {
                    driver.serve(k);
                    check(&rig.borrow(), ioas);
                }
            }
        }
        panic!("the story did not finish:\n{out}");
    })
}

/// Data-region pages the server translates for the device.
fn mapped_pages(rig: &Rig, ioas: u32) -> usize {
    (0..DATA_BYTES)
        .step_by(4096)
        .filter(|off| rig.server.translate(id(0), ioas, DATA_IOVA + off).is_some())
        .count()
}

#[test]
fn strict_mode_leaves_no_mapping_once_requests_complete() {
    let (calls, ios) = run(Mode::Strict, |rig, ioas| {
        assert_eq!(
            mapped_pages(rig, ioas),
            0,
            "a data page outlived its request"
        );
        // The queues' mapping alone.
        assert_eq!(rig.server.store().account(id(0)).unwrap().areas, 1);
    });
    assert_eq!(ios, 6);
    assert_eq!(calls, 2 * ios, "a map and an unmap per I/O");
}

#[test]
fn static_mode_maps_the_region_once() {
    let (calls, ios) = run(Mode::Static, |rig, ioas| {
        assert_eq!(mapped_pages(rig, ioas), (DATA_BYTES / 4096) as usize);
        assert_eq!(rig.server.store().account(id(0)).unwrap().areas, 2);
    });
    assert_eq!(ios, 6);
    assert_eq!(calls, 0, "no server request per I/O");
}
