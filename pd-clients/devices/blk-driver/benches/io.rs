//! What a 4 KiB I/O costs in each mapping mode: the driver writes one
//! page-sized block run through the simulated controller, the server core
//! answering its requests through the byte-level path. Prints the server
//! requests per I/O and the strict / static ratio of this run's means.
//! (`cargo bench -p blk-driver --bench io`.)

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use blk_driver::Mode;
use criterion::Criterion;
use support::one_io;

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut rows = Vec::new();
    for (name, mode) in [("static", Mode::Static), ("strict", Mode::Strict)] {
        support::with_driver(mode, |driver, k, ring, _, _, calls| {
            let mut client = blk_queue::Client::new(ring).unwrap();
            let mut serve = || driver.serve(k);
            let before = calls.get();
            one_io(&mut client, &mut serve, 1);
            let per_io = calls.get() - before;
            let mut group = c.benchmark_group("blk_io");
            group
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(2));
            group.bench_function(name, |b| b.iter(|| one_io(&mut client, &mut serve, 1)));
            group.finish();
            rows.push((name, per_io, benchkit::mean_ns("blk_io", &[name])));
        });
    }
    println!("\n4 KiB write through the driver, this run (criterion means):");
    let base = rows[0].2;
    for (name, requests, ns) in &rows {
        match (ns, base) {
            (Some(ns), Some(base)) => println!(
                "{name:>8}: {requests} server requests per I/O, {ns:>8.0} ns, {:.2}x static",
                ns / base
            ),
            _ => println!("{name:>8}: {requests} server requests per I/O"),
        }
    }
}
