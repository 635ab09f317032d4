//! What a request costs on its way through the server: IOMMU_IOAS_MAP and
//! IOMMU_IOAS_UNMAP of one 4 KiB page, through `Server::handle` (a private
//! page), through `Server::serve` over a page shared with the client (each
//! range the request names copied once), and, for comparison, through a
//! transport that copies the whole page in and back out per call (what
//! `serve` did before it copied only what a request names). One run
//! prints the three and their ratios.
//!
//! Run: `cargo bench --bench request_path`

use std::cell::RefCell;
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use iommu_proto::iommufd::*;
use iommu_proto::Op;
use iommu_server::COMMAND_PAGE;
use iommu_testkit::rig::{client, id, region};
use iommu_testkit::{MockHw, Rig};
use iommu_types::config::Region;
use mmio::Memory;
use zerocopy::IntoBytes;

static REGIONS: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8000_0000)];

/// A page the client shares: every access goes through a borrow, as every
/// access to shared memory goes through a volatile copy.
type Shared = RefCell<[u8; COMMAND_PAGE]>;

#[derive(Clone, Copy)]
enum Path {
    Handle,
    Serve,
    WholePage,
}

fn call(rig: &mut Rig, path: Path, shared: &Shared, op: Op, request: &[u8]) {
    let size = request.len() as u64;
    match path {
        Path::Handle => {
            let page = &mut rig.pages[0];
            page[..request.len()].copy_from_slice(request);
            black_box(rig.server.handle(id(0), op.label(), [size, 0], page));
        }
        Path::Serve => {
            shared.borrow_mut()[..request.len()].copy_from_slice(request);
            black_box(rig.server.serve(id(0), op.label(), [size, 0], shared));
        }
        Path::WholePage => {
            shared.borrow_mut()[..request.len()].copy_from_slice(request);
            let mut private = [0u8; COMMAND_PAGE];
            shared.read(0, &mut private);
            black_box(
                rig.server
                    .handle(id(0), op.label(), [size, 0], &mut private),
            );
            shared.write(0, &private);
        }
    }
}

fn map_unmap(rig: &mut Rig, path: Path, shared: &Shared, ioas: u32) {
    let map = iommu_ioas_map {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
        ioas_id: ioas,
        user_va: 0x10_0000,
        length: 0x1000,
        iova: 0x4000_0000,
        ..Default::default()
    };
    call(rig, path, shared, Op::IoasMap, map.as_bytes());
    let unmap = iommu_ioas_unmap {
        size: 24,
        ioas_id: ioas,
        iova: 0x4000_0000,
        length: 0x1000,
    };
    call(rig, path, shared, Op::IoasUnmap, unmap.as_bytes());
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut means = Vec::new();
    for (name, path) in [
        ("handle", Path::Handle),
        ("serve", Path::Serve),
        ("whole_page", Path::WholePage),
    ] {
        let mut rig = Rig::new(MockHw::new(), &[client("a").regions(&REGIONS).build()]);
        let ioas = rig.alloc(0).unwrap();
        let shared: Shared = RefCell::new([0; COMMAND_PAGE]);
        // Each pair really maps and unmaps.
        map_unmap(&mut rig, path, &shared, ioas);
        assert_eq!(rig.server.store().account(id(0)).unwrap().used, 0);
        let mut group = c.benchmark_group("request_path");
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        group.bench_function(name, |b| {
            b.iter(|| map_unmap(&mut rig, path, &shared, ioas))
        });
        group.finish();
        means.push((name, benchkit::mean_ns("request_path", &[name])));
    }
    println!("\nIOAS_MAP + IOAS_UNMAP of 4 KiB, this run (criterion means):");
    let handle = means[0].1;
    for (name, ns) in &means {
        match (ns, handle) {
            (Some(ns), Some(handle)) => {
                println!(
                    "{name:>12} {ns:>8.0} ns per pair {:>6.2}x handle",
                    ns / handle
                )
            }
            _ => println!("{name:>12} -"),
        }
    }
}
