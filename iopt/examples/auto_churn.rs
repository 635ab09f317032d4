//! Automatic 8 KiB map + unmap on a layout of `live` 8 KiB areas (random,
//! ascending, or every hole long enough but misaligned), for an
//! instruction count under callgrind (deterministic, unlike wall-clock on
//! a shared machine): only `churn` is collected.
//!
//! Run: `cargo build --release -p iopt --example auto_churn && valgrind
//! --tool=callgrind --collect-atstart=no --toggle-collect='auto_churn::churn'
//! target/release/examples/auto_churn 10000 1000 random`, then divide the
//! instructions by the rounds.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{leaked_engine, NoDomains};
use iopt::{DstIova, Extent, Ioas, Prot, Store};

const K4: u64 = 0x1000;
const K8: u64 = 0x2000;
const PHYS: u64 = 0x40_0000_0000;

fn map(store: &mut Store<'static>, ioas: &mut Ioas, dst: DstIova, len: u64) -> iopt::Result<u64> {
    let ext = [Extent { phys: PHYS, len }];
    ioas.map(store, &mut NoDomains, &ext, PHYS, true, dst, Prot::READ)
}

#[inline(never)]
fn churn(store: &mut Store<'static>, ioas: &mut Ioas, rounds: usize) -> u64 {
    let mut sum = 0;
    for _ in 0..rounds {
        let iova = map(store, ioas, DstIova::Auto, K8).unwrap();
        ioas.unmap(store, &mut NoDomains, iova, K8).unwrap();
        sum ^= iova;
    }
    sum
}

fn main() {
    let mut args = std::env::args().skip(1);
    let live: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let layout = args.next().unwrap_or_else(|| "random".into());
    eprintln!(
        "area node {} bytes, IOAS {} bytes",
        core::mem::size_of::<iopt::AreaSlot>(),
        core::mem::size_of::<Ioas>()
    );
    let (mut store, mut ioas) = leaked_engine(live);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut placed = 0;
    while placed < live {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let iova = match layout.as_str() {
            "random" => K4 + (rng % (1 << 28)) * K4,
            "ascending" => 2 * K8 + placed as u64 * K8,
            "misaligned" => 2 * K8 * placed as u64 + 3 * K4,
            _ => panic!("layout: random, ascending or misaligned"),
        };
        if map(&mut store, &mut ioas, DstIova::Fixed(iova), K8).is_ok() {
            placed += 1;
        }
    }
    // One round outside the count, so caches built on first use are not.
    churn(&mut store, &mut ioas, 1);
    println!("{}", churn(&mut store, &mut ioas, rounds));
}
