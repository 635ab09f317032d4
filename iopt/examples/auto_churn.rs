//! Automatic 8 KiB map + unmap on a layout of `live` areas (one of
//! `common::layouts::NAMES`), on the engine with no domain, for an
//! instruction count under callgrind (deterministic, unlike wall-clock on
//! a shared machine): only `churn` is collected. `examples/serve_churn.rs`
//! counts the same through the server's `serve`.
//!
//! Run: `cargo build --release -p iopt --example auto_churn && valgrind
//! --tool=callgrind --collect-atstart=no --toggle-collect='auto_churn::churn'
//! target/release/examples/auto_churn 10000 1000 random`, then divide the
//! instructions by the rounds.

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "../benches/common/layouts.rs"]
mod layouts;

use common::{leaked_engine, NoDomains};
use iopt::{DstIova, Extent, Ioas, IovaRange, Prot, Store};

const K8: u64 = 0x2000;
const PHYS: u64 = 0x40_0000_0000;

fn map(store: &mut Store<'static>, ioas: &mut Ioas, dst: DstIova, len: u64) -> iopt::Result<u64> {
    let ext = [Extent { phys: PHYS, len }];
    ioas.map(store, &mut NoDomains, &ext, PHYS, true, dst, Prot::READ)
}

/// The counted rounds; returns the sum of the IOVAs they got.
#[inline(never)]
fn churn(store: &mut Store<'static>, ioas: &mut Ioas, rounds: usize) -> u64 {
    let mut sum = 0u64;
    for _ in 0..rounds {
        sum = sum.wrapping_add(round(store, ioas));
    }
    sum
}

fn round(store: &mut Store<'static>, ioas: &mut Ioas) -> u64 {
    let iova = map(store, ioas, DstIova::Auto, K8).unwrap();
    ioas.unmap(store, &mut NoDomains, iova, K8).unwrap();
    iova
}

fn main() {
    let mut args = std::env::args().skip(1);
    let live: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let name = args.next().unwrap_or_else(|| "random".into());
    let Some(layout) = layouts::layout(&name, live) else {
        panic!("layout: one of {:?}", layouts::NAMES);
    };
    eprintln!(
        "area node {} bytes, IOAS {} bytes",
        core::mem::size_of::<iopt::AreaSlot>(),
        core::mem::size_of::<Ioas>()
    );
    let (mut store, mut ioas) = leaked_engine(live);
    let mut placed = 0;
    for (iova, len) in layout.maps {
        if placed == live {
            break;
        }
        match map(&mut store, &mut ioas, DstIova::Fixed(iova), len) {
            Ok(_) => placed += 1,
            Err(e) => assert!(layout.may_collide, "{name}: {iova:#x}: {e:?}"),
        }
    }
    if !layout.windows.is_empty() {
        let windows: Vec<IovaRange> = layout
            .windows
            .iter()
            .map(|&(start, last)| IovaRange::new(start, last))
            .collect();
        ioas.set_allowed(&windows).unwrap();
    }
    // One round outside the count, so caches built on first use are not.
    round(&mut store, &mut ioas);
    let sum = churn(&mut store, &mut ioas, rounds);
    println!(
        "{name}, {live} areas: first automatic IOVA {:#x}",
        sum / rounds as u64
    );
}
