//! Stage-1 page-table map + unmap: one 4 KiB page, 256 contiguous 4 KiB
//! pages in one call, and 1 GiB as 512 2 MiB blocks in one call, each
//! building and freeing its tables every time; then map alone and unmap
//! alone with the tables already in place, the case Linux's generic
//! page-table numbers describe (~65 ns for one 4 KiB map, ~380 ns for 256
//! pages in one call).
//!
//! The 256-page warm map is also counted in instructions against the
//! plain store loop, in the same run: the bench runs itself twice more
//! under callgrind (`--count map|stores`), each collecting only inside one
//! `#[inline(never)]` batch of calls; instruction counts do not depend on
//! what else the machine is doing, as time does.
//!
//! Run: `cargo bench -p hw --bench pgtable` (counts need valgrind)

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use hw::pgtable::{Format, Gather, IoPageTable, MemAttr, TablePage, TablePool};
use iopt::Prot;
use mmio::{Coherent, DmaMemory};

const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;
const PHYS: u64 = 0x40_0000_0000;
const POOL_PA: u64 = 0x8000_0000;
const GROUP: &str = "pgtable";
const RW: Prot = Prot::READ.union(Prot::WRITE);

/// (name, page size, pages per call).
const CASES: [(&str, u64, u64); 3] = [
    ("4KiB_x1", K4, 1),
    ("4KiB_x256", K4, 256),
    ("2MiB_x512", M2, 512),
];

/// Regions for the tables-in-place runs: one 2 MiB level-3 table each,
/// kept alive by a page in its last slot.
const WARM_REGIONS: u64 = 64;

struct Fixture {
    pool: TablePool<'static>,
    pt: IoPageTable,
    gather: Gather,
}

impl Fixture {
    fn new() -> Fixture {
        // A handful of fixtures per run: their pages live as long as the
        // process.
        let pages = Box::leak(vec![TablePage::ZERO; 256].into_boxed_slice());
        let mut pool = TablePool::new(DmaMemory::host(pages, POOL_PA), &Coherent);
        let format = Format {
            ias: 48,
            oas: 48,
            mem: MemAttr::WriteBack,
        };
        let pt = IoPageTable::new(&mut pool, format).unwrap();
        Fixture {
            pool,
            pt,
            gather: Gather::new(),
        }
    }

    fn map(&mut self, iova: u64, size: u64, count: u64) {
        self.pt
            .map(&mut self.pool, black_box(iova), PHYS, size, count, RW)
            .unwrap();
    }

    /// Unmaps; the flush (which a real SMMU would do here) is assumed to
    /// succeed, so the freed tables are committed back to the free list.
    fn unmap(&mut self, iova: u64, len: u64) {
        self.gather.clear();
        let bytes = self
            .pt
            .unmap(&mut self.pool, black_box(iova), len, &mut self.gather)
            .unwrap();
        self.pool.commit_pending();
        debug_assert_eq!(bytes, len);
    }

    /// Level-3 tables under `WARM_REGIONS` 2 MiB regions at 1 GiB, each
    /// pinned by its last page.
    fn warm(&mut self) {
        for r in 0..WARM_REGIONS {
            self.map(G1 + r * M2 + M2 - K4, K4, 1);
        }
    }
}

fn pairs(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (name, size, count) in CASES {
        let mut f = Fixture::new();
        let iova = G1;
        f.map(iova, size, count);
        println!(
            "{name}: {} page-table pages in use while mapped (root included)",
            f.pool.used()
        );
        f.unmap(iova, size * count);
        assert_eq!(f.pool.used(), 1);
        group.bench_function(BenchmarkId::new("map_unmap", name), |b| {
            b.iter(|| {
                f.map(iova, size, count);
                f.unmap(iova, size * count);
            })
        });
    }

    // Tables in place: time `iters` calls spread over the warm regions, so
    // no call allocates or frees a table and the clock is read once per
    // batch, not per call.
    for (name, count) in [("4KiB_x1", 1), ("4KiB_x256", 256)] {
        let mut f = Fixture::new();
        f.warm();
        let tables = f.pool.used();
        let slot = |i: u64| {
            let region = i % WARM_REGIONS;
            let offset = (i / WARM_REGIONS) * count * K4;
            G1 + region * M2 + offset
        };
        // How many calls fit below each region's pinned page.
        let per_batch = WARM_REGIONS * (511 / count);
        group.bench_function(BenchmarkId::new("map_warm", name), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = per_batch.min(iters - done);
                    let start = Instant::now();
                    for i in 0..n {
                        f.map(slot(i), K4, count);
                    }
                    spent += start.elapsed();
                    for i in 0..n {
                        f.unmap(slot(i), count * K4);
                    }
                    done += n;
                }
                spent
            })
        });
        group.bench_function(BenchmarkId::new("unmap_warm", name), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = per_batch.min(iters - done);
                    for i in 0..n {
                        f.map(slot(i), K4, count);
                    }
                    let start = Instant::now();
                    for i in 0..n {
                        f.unmap(slot(i), count * K4);
                    }
                    spent += start.elapsed();
                    done += n;
                }
                spent
            })
        });
        assert_eq!(f.pool.used(), tables, "warm tables must stay in place");
    }

    // The physical limit of a 256-page map: a plain loop storing 256 leaf
    // descriptors, nothing checked, into the same number of table pages the
    // warm map cycles through (so both touch the same memory).
    let mut tables = vec![TablePage::ZERO; WARM_REGIONS as usize];
    let mut next = 0;
    group.bench_function(BenchmarkId::new("stores", "4KiB_x256"), |b| {
        b.iter(|| {
            store_256(&mut tables[next % WARM_REGIONS as usize]);
            next += 1;
        })
    });
    group.finish();
}

/// 256 leaf descriptors stored into one table, nothing checked.
#[inline(never)]
fn store_256(table: &mut TablePage) {
    let mut leaf = black_box(PHYS | 0x743);
    for slot in &mut table.0[..256] {
        *slot = leaf;
        leaf += K4;
    }
    black_box(&mut *table);
}

/// Calls of each kind counted under callgrind.
const COUNTED_CALLS: u64 = 1000;

/// The 256 x 4 KiB warm maps counted: `n` calls over the warm regions.
#[inline(never)]
fn counted_maps(f: &mut Fixture, slots: &[u64]) {
    for &iova in slots {
        f.map(iova, K4, 256);
    }
}

/// The store loop counted: `n` calls over as many tables.
#[inline(never)]
fn counted_stores(tables: &mut [TablePage], n: u64) {
    for i in 0..n as usize {
        store_256(&mut tables[i % tables.len()]);
    }
}

/// `--count map|stores`: runs one kind of call `COUNTED_CALLS` times, for
/// callgrind to count.
fn count_mode(kind: &str) {
    match kind {
        "map" => {
            let mut f = Fixture::new();
            f.warm();
            // One call per warm region fits below its pinned page; unmap
            // (not counted) between batches.
            let slots: Vec<u64> = (0..WARM_REGIONS).map(|r| G1 + r * M2).collect();
            let mut done = 0;
            while done < COUNTED_CALLS {
                let n = (COUNTED_CALLS - done).min(WARM_REGIONS) as usize;
                counted_maps(&mut f, &slots[..n]);
                for &iova in &slots[..n] {
                    f.unmap(iova, 256 * K4);
                }
                done += n as u64;
            }
        }
        _ => {
            let mut tables = vec![TablePage::ZERO; WARM_REGIONS as usize];
            counted_stores(&mut tables, COUNTED_CALLS);
        }
    }
}

/// Instructions per call of one kind, from callgrind collecting only inside
/// its counted batch; `None` without valgrind.
fn instructions_per_call(kind: &str, batch: &str) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            &format!("--toggle-collect=*{batch}*"),
        ])
        .arg(exe)
        .args(["--count", kind])
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let collected: u64 = stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))?
        .trim()
        .parse()
        .ok()?;
    Some(collected as f64 / COUNTED_CALLS as f64)
}

/// Mean ns per iteration that criterion recorded for one benchmark.
fn mean_ns(function: &str, case: &str) -> Option<f64> {
    benchkit::mean_ns(GROUP, &[function, case])
}

fn report() {
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    println!("\nns per call (criterion mean)");
    println!(
        "{:>10} {:>16} {:>12} {:>12}",
        "case", "map+unmap", "map warm", "unmap warm"
    );
    for (name, _, _) in CASES {
        println!(
            "{name:>10} {:>16} {:>12} {:>12}",
            fmt(mean_ns("map_unmap", name)),
            fmt(mean_ns("map_warm", name)),
            fmt(mean_ns("unmap_warm", name)),
        );
    }
    println!("(map+unmap builds and frees the tables each time; warm: tables in place)");
    if let (Some(map), Some(stores)) = (
        mean_ns("map_warm", "4KiB_x256"),
        mean_ns("stores", "4KiB_x256"),
    ) {
        println!(
            "256 x 4 KiB in one call, tables in place: {map:.0} ns; 256 plain descriptor stores: {stores:.0} ns; time ratio {:.2} (bound: 2.00)",
            map / stores
        );
    }
    match (
        instructions_per_call("map", "counted_maps"),
        instructions_per_call("stores", "counted_stores"),
    ) {
        (Some(map), Some(stores)) => println!(
            "the same in instructions (callgrind, {COUNTED_CALLS} calls each): map {map:.0}, stores {stores:.0}; instruction ratio {:.2} (bound: 2.50)",
            map / stores
        ),
        _ => println!("instructions: valgrind not found, not counted"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--count") {
        count_mode(args.get(at + 1).map_or("stores", |k| k.as_str()));
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    pairs(&mut c);
    c.final_summary();
    // `cargo test` runs each benchmark once without measuring; no table then.
    if std::env::args().any(|a| a == "--bench") {
        report();
    }
}
