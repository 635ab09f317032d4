//! `serve_churn LIVE ROUNDS LAYOUT`: automatic 8 KiB IOMMU_IOAS_MAP +
//! IOMMU_IOAS_UNMAP through `Server::serve` over a shared command page, on
//! an IOAS holding `LIVE` mappings laid out as `LAYOUT` (one of
//! `iopt/benches/common/layouts.rs`'s, the same the engine's
//! `iopt/examples/auto_churn.rs` counts; the windows are set with
//! IOMMU_IOAS_ALLOW_IOVAS). No device is attached, as in the engine's
//! count, so the two differ by the server's request path alone. For an
//! instruction count under callgrind:
//!
//! ```sh
//! cargo build --release --example serve_churn
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     --toggle-collect='*counted_serve*' \
//!     target/release/examples/serve_churn 100000 1000 windows
//! ```
//!
//! and the total divided by the rounds: only the rounds' two `serve`
//! calls each are counted, not building the layout.

#[path = "../iopt/benches/common/layouts.rs"]
mod layouts;

use std::cell::RefCell;

use iommu_proto::iommufd::*;
use iommu_proto::Op;
use iommu_server::{Reply, COMMAND_PAGE};
use iommu_testkit::rig::{client, id, region, PAGE_VA};
use iommu_testkit::{MockHw, Rig};
use iommu_types::config::{Quota, Region};
use iommu_types::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes};

const K8: u64 = 0x2000;
/// The client's memory: 1 MiB at VA 1 MiB, so every source is 8 KiB
/// aligned (the automatic IOVA's alignment, as the engine's count).
static REGIONS: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8000_0000)];
const SOURCE: u64 = 0x10_0000;
/// Where in the command page the ALLOW_IOVAS ranges go.
const RANGES_AT: usize = 2048;

type Shared = RefCell<[u8; COMMAND_PAGE]>;

/// One request through `serve`: `req` at the start of the page, read back
/// after.
fn call<T: IntoBytes + FromBytes + Immutable>(
    rig: &mut Rig,
    shared: &Shared,
    op: Op,
    req: &mut T,
    counted: bool,
) -> Result<u64, Errno> {
    let bytes = req.as_bytes();
    shared.borrow_mut()[..bytes.len()].copy_from_slice(bytes);
    let mrs = [bytes.len() as u64, 0];
    let reply = if counted {
        counted_serve(rig, op, mrs, shared)
    } else {
        rig.server.serve(id(0), op.label(), mrs, shared)
    };
    *req = T::read_from_prefix(&shared.borrow()[..]).unwrap().0;
    match reply.errno() {
        None => Ok(reply.mr0),
        Some(e) => Err(e),
    }
}

fn map(
    rig: &mut Rig,
    shared: &Shared,
    ioas: u32,
    iova: Option<u64>,
    len: u64,
    counted: bool,
) -> Result<u64, Errno> {
    let fixed = iova.map_or(0, |_| IOMMU_IOAS_MAP_FIXED_IOVA);
    let mut cmd = iommu_ioas_map {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE | fixed,
        ioas_id: ioas,
        reserved: 0,
        user_va: SOURCE,
        length: len,
        iova: iova.unwrap_or(0),
    };
    call(rig, shared, Op::IoasMap, &mut cmd, counted)?;
    Ok(cmd.iova)
}

fn unmap(rig: &mut Rig, shared: &Shared, ioas: u32, iova: u64, len: u64, counted: bool) {
    let mut cmd = iommu_ioas_unmap {
        size: 24,
        ioas_id: ioas,
        iova,
        length: len,
    };
    call(rig, shared, Op::IoasUnmap, &mut cmd, counted).unwrap();
}

/// `serve` as the churn calls it: the only calls callgrind counts.
#[inline(never)]
fn counted_serve(rig: &mut Rig, op: Op, mrs: [u64; 2], shared: &Shared) -> Reply {
    rig.server.serve(id(0), op.label(), mrs, shared)
}

/// Automatic maps + unmaps, each `serve` counted when `counted`; returns
/// the sum of the IOVAs it got.
fn churn(rig: &mut Rig, shared: &Shared, ioas: u32, rounds: usize, counted: bool) -> u64 {
    let mut sum = 0u64;
    for _ in 0..rounds {
        let iova = map(rig, shared, ioas, None, K8, counted).unwrap();
        unmap(rig, shared, ioas, iova, K8, counted);
        sum = sum.wrapping_add(iova);
    }
    sum
}

fn main() {
    let mut args = std::env::args().skip(1);
    let live: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let name = args.next().unwrap_or_else(|| "random".into());
    let Some(layout) = layouts::layout(&name, live) else {
        panic!("layout: one of {:?}", layouts::NAMES);
    };
    let quota = Quota {
        mappings: live + 8,
        mapped_pages: 4 * live as u64 + 64,
        ..client("a").build().quota
    };
    let config = client("a").regions(&REGIONS).quota(quota).build();
    let mut rig = Rig::try_new(MockHw::new(), &[config], live + 8).unwrap();
    let shared: Shared = RefCell::new([0; COMMAND_PAGE]);
    let ioas = {
        let mut cmd = iommu_ioas_alloc {
            size: 12,
            flags: 0,
            out_ioas_id: 0,
        };
        call(&mut rig, &shared, Op::IoasAlloc, &mut cmd, false).unwrap();
        cmd.out_ioas_id
    };
    let mut placed = 0;
    for (iova, len) in layout.maps {
        if placed == live {
            break;
        }
        match map(&mut rig, &shared, ioas, Some(iova), len, false) {
            Ok(_) => placed += 1,
            Err(e) => assert!(layout.may_collide, "{name}: {iova:#x}: {e:?}"),
        }
    }
    if !layout.windows.is_empty() {
        let ranges: Vec<iommu_iova_range> = layout
            .windows
            .iter()
            .map(|&(start, last)| iommu_iova_range { start, last })
            .collect();
        let bytes = ranges.as_bytes();
        shared.borrow_mut()[RANGES_AT..RANGES_AT + bytes.len()].copy_from_slice(bytes);
        let mut cmd = iommu_ioas_allow_iovas {
            size: 24,
            ioas_id: ioas,
            num_iovas: ranges.len() as u32,
            reserved: 0,
            allowed_iovas: PAGE_VA + RANGES_AT as u64,
        };
        call(&mut rig, &shared, Op::IoasAllowIovas, &mut cmd, false).unwrap();
    }
    // One round outside the count, so caches built on first use are not.
    churn(&mut rig, &shared, ioas, 1, false);
    let sum = churn(&mut rig, &shared, ioas, rounds, true);
    println!(
        "{name}, {live} mappings: first automatic IOVA {:#x}",
        sum / rounds as u64
    );
}
