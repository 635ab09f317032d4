//! `io_count MODE N`: N 4 KiB writes through the driver in MODE (static or
//! strict), for counting instructions per I/O with callgrind (docs/benchmarks.md
//! gives the commands and the figures): run it with two N and divide the
//! difference.

#[path = "../tests/support/mod.rs"]
mod support;

use blk_driver::Mode;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = match args.get(1).map(String::as_str) {
        Some("static") => Mode::Static,
        Some("strict") => Mode::Strict,
        _ => {
            eprintln!("usage: io_count static|strict N");
            std::process::exit(2);
        }
    };
    let n: u32 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    support::with_driver(mode, |driver, k, ring, _, _, calls| {
        let mut client = blk_queue::Client::new(ring).unwrap();
        let mut serve = || driver.serve(k);
        for i in 0..n {
            support::one_io(&mut client, &mut serve, i);
        }
        println!("{n} I/Os, {} server requests", calls.get());
    });
}
