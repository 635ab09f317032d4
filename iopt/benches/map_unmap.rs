//! Automatic-IOVA map + unmap with 10^3, 10^4 and 10^5 live areas, on the
//! engine and on the naive reference model, then a table of per-operation
//! cost, the model/engine ratio and the engine's scaling from 10^3 to 10^5.
//!
//! Run: `cargo bench -p iopt --bench map_unmap`

mod common;
#[path = "../tests/common/model.rs"]
mod model;

use std::hint::black_box;
use std::time::Duration;

use common::{leaked_engine, NoDomains};
use criterion::{BenchmarkId, Criterion};
use iopt::{DstIova, Extent, Ioas, Prot, Store};
use model::{Caps, Model};

const LIVE: [usize; 3] = [1_000, 10_000, 100_000];
const SIZES: [(u64, &str); 2] = [(0x1000, "4KiB"), (0x20_0000, "2MiB")];
const GROUP: &str = "auto_map_unmap";
const PHYS: u64 = 0x40_0000_0000;

struct Engine {
    store: Store<'static>,
    doms: NoDomains,
    ioas: Ioas,
}

impl Engine {
    fn with_live(live: usize, size: u64) -> Engine {
        let (store, ioas) = leaked_engine(live);
        let mut e = Engine {
            store,
            doms: NoDomains,
            ioas,
        };
        for _ in 0..live {
            e.map(size);
        }
        e
    }

    fn map(&mut self, size: u64) -> u64 {
        let ext = [Extent {
            phys: PHYS,
            len: size,
        }];
        self.ioas
            .map(
                &mut self.store,
                &mut self.doms,
                &ext,
                PHYS,
                true,
                DstIova::Auto,
                Prot::READ,
            )
            .unwrap()
    }

    fn map_unmap(&mut self, size: u64) {
        let iova = self.map(size);
        self.ioas
            .unmap(&mut self.store, &mut self.doms, black_box(iova), size)
            .unwrap();
    }
}

fn model_like(e: &Engine, live: usize) -> Model {
    let caps = Caps {
        areas: live + 8,
        backings: live + 8,
        quota_pages: u64::MAX,
    };
    let mut m = Model::new(caps, 1, vec![]);
    m.preload(
        0,
        e.ioas
            .areas(&e.store)
            .map(|a| (a.iova, a.last, PHYS, a.prot)),
    );
    m
}

fn model_map_unmap(m: &mut Model, size: u64) {
    let ext = [Extent {
        phys: PHYS,
        len: size,
    }];
    let iova = m
        .map(0, &ext, PHYS, true, DstIova::Auto, Prot::READ)
        .unwrap();
    m.unmap(0, black_box(iova), size).unwrap();
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    for (size, name) in SIZES {
        for live in LIVE {
            let mut engine = Engine::with_live(live, size);
            let mut model = model_like(&engine, live);
            // Both must make the same choice before their speed matters.
            let probe = engine.map(size);
            assert_eq!(
                model.map(
                    0,
                    &[Extent {
                        phys: PHYS,
                        len: size
                    }],
                    PHYS,
                    true,
                    DstIova::Auto,
                    Prot::READ
                ),
                Ok(probe)
            );
            engine
                .ioas
                .unmap(&mut engine.store, &mut engine.doms, probe, size)
                .unwrap();
            model.unmap(0, probe, size).unwrap();

            group
                .sample_size(50)
                .measurement_time(Duration::from_secs(2));
            group.bench_with_input(
                BenchmarkId::new(format!("engine/{name}"), live),
                &size,
                |b, &size| b.iter(|| engine.map_unmap(size)),
            );
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(1));
            group.bench_with_input(
                BenchmarkId::new(format!("model/{name}"), live),
                &size,
                |b, &size| b.iter(|| model_map_unmap(&mut model, size)),
            );
        }
    }
    group.finish();
}

/// Mean ns per iteration that criterion recorded for one benchmark.
fn mean_ns(function: &str, live: usize) -> Option<f64> {
    benchkit::mean_ns(GROUP, &[function, &live.to_string()])
}

fn report() {
    println!("\nautomatic-IOVA map + unmap, ns per pair (criterion mean)");
    println!(
        "{:>6} {:>8} {:>12} {:>14} {:>12}",
        "size", "live", "engine", "model", "model/engine"
    );
    for (_, name) in SIZES {
        for live in LIVE {
            let engine = mean_ns(&format!("engine/{name}"), live);
            let model = mean_ns(&format!("model/{name}"), live);
            let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
            let ratio = engine
                .zip(model)
                .map_or("-".to_string(), |(e, m)| format!("{:.1}x", m / e));
            println!(
                "{name:>6} {live:>8} {:>12} {:>14} {ratio:>12}",
                fmt(engine),
                fmt(model)
            );
        }
        if let (Some(small), Some(big)) = (
            mean_ns(&format!("engine/{name}"), LIVE[0]),
            mean_ns(&format!("engine/{name}"), LIVE[2]),
        ) {
            println!(
                "{name:>6} engine cost at 10^5 / cost at 10^3: {:.2} (bound: 2.00)",
                big / small
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    // `cargo test` runs each benchmark once without measuring; no table then.
    if std::env::args().any(|a| a == "--bench") {
        report();
    }
}
