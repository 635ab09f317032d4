//! Automatic-IOVA map + unmap of 8 KiB (8 KiB-aligned source) with 10^3,
//! 10^4 and 10^5 live areas laid out three ways: at random, in ascending
//! order (the layout that once shaped the tree into a chain), with every
//! hole long enough but misaligned (8 KiB holes at 4 KiB mod 8 KiB), in 16
//! allowed windows (15 exactly covering runs of 12 KiB areas with 4 KiB
//! holes, one empty), and with tight holes (misaligned 8 KiB holes, then
//! 12 KiB holes each fitting one aligned 8 KiB map, in a window ending at
//! the last area). One run prints each layout's cost against the random
//! one.
//!
//! Run: `cargo bench -p iopt --bench layouts`

use std::hint::black_box;
use std::time::Duration;

mod common;

use common::{leaked_engine, NoDomains};
use criterion::{BenchmarkId, Criterion};
use iopt::{DstIova, Extent, Ioas, IovaRange, Prot, Store};

const LIVE: [usize; 3] = [1_000, 10_000, 100_000];
const LAYOUTS: [&str; 5] = ["random", "ordered", "misaligned", "windows", "tight"];
const GROUP: &str = "auto_map_unmap_layouts";
const K4: u64 = 0x1000;
const K8: u64 = 0x2000;
const K16: u64 = 0x4000;
/// 8 KiB aligned and more, so the request's alignment is 8 KiB.
const PHYS: u64 = 0x40_0000_0000;

struct Engine {
    store: Store<'static>,
    ioas: Ioas,
}

impl Engine {
    fn new(live: usize) -> Engine {
        let (store, ioas) = leaked_engine(live);
        Engine { store, ioas }
    }

    fn map(&mut self, len: u64, dst: DstIova) -> iopt::Result<u64> {
        let ext = [Extent { phys: PHYS, len }];
        self.ioas.map(
            &mut self.store,
            &mut NoDomains,
            &ext,
            PHYS,
            true,
            dst,
            Prot::READ,
        )
    }

    fn unmap(&mut self, iova: u64, len: u64) {
        self.ioas
            .unmap(&mut self.store, &mut NoDomains, iova, len)
            .unwrap();
    }

    fn with_layout(layout: &str, live: usize) -> Engine {
        match layout {
            "windows" => return Engine::windowed(live),
            "tight" => return Engine::tight(live),
            _ => {}
        }
        let mut e = Engine::new(live);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut placed = 0;
        while placed < live {
            let iova = match layout {
                "random" => {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    K4 + (rng % (1 << 28)) * K4
                }
                "ordered" => K16 + placed as u64 * K8,
                _ => K16 * placed as u64 + 3 * K4,
            };
            let len = if layout == "misaligned" { K8 } else { K4 };
            if e.map(len, DstIova::Fixed(iova)).is_ok() {
                placed += 1;
            }
        }
        e
    }
}

impl Engine {
    fn fixed(&mut self, iova: u64, len: u64) {
        self.map(len, DstIova::Fixed(iova)).unwrap();
    }

    fn windowed(live: usize) -> Engine {
        let mut e = Engine::new(live);
        let per_run = (live / 15) as u64;
        let mut windows = Vec::new();
        let mut base = K16;
        for _ in 0..15 {
            for i in 0..per_run {
                e.fixed(base + K16 * i, 3 * K4);
            }
            let last = base + K16 * (per_run - 1) + 3 * K4 - 1;
            windows.push(IovaRange::new(base, last));
            base = last + 1 + 4 * K16;
        }
        windows.push(IovaRange::new(base, base + 64 * K16 - 1));
        e.ioas.set_allowed(&windows).unwrap();
        e
    }

    fn tight(live: usize) -> Engine {
        let mut e = Engine::new(live);
        let defeated = (live / 2) as u64;
        for i in 0..defeated {
            e.fixed(K16 * i + 3 * K4, K8);
        }
        let base = K16 * (defeated + 1);
        let mut last = 0;
        for j in 0..live as u64 - defeated {
            e.fixed(base + 5 * K4 * j, K8);
            last = base + 5 * K4 * j + K8 - 1;
        }
        e.ioas.set_allowed(&[IovaRange::new(K4, last)]).unwrap();
        e
    }
}

fn mean_ns(layout: &str, live: usize) -> Option<f64> {
    benchkit::mean_ns(GROUP, &[layout, &live.to_string()])
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for layout in LAYOUTS {
        for live in LIVE {
            let mut e = Engine::with_layout(layout, live);
            group.bench_with_input(BenchmarkId::new(layout, live), &live, |b, _| {
                b.iter(|| {
                    let iova = e.map(K8, DstIova::Auto).unwrap();
                    e.unmap(black_box(iova), K8);
                })
            });
        }
    }
    group.finish();
    println!("\nautomatic-IOVA map + unmap of 8 KiB, ns per pair (criterion means)");
    println!(
        "{:>12} {:>8} {:>10} {:>10}",
        "layout", "live", "ns", "/random"
    );
    for layout in LAYOUTS {
        for live in LIVE {
            let ns = mean_ns(layout, live);
            let random = mean_ns("random", live);
            let ratio = ns
                .zip(random)
                .map_or("-".to_string(), |(n, r)| format!("{:.2}x", n / r));
            let ns = ns.map_or("-".to_string(), |v| format!("{v:.0}"));
            println!("{layout:>12} {live:>8} {ns:>10} {ratio:>10}");
        }
    }
}
