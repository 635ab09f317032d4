//! The coverage-guided fuzz targets build and run through `make fuzz` for
//! a few seconds each, every execution checking the server's invariants,
//! and find nothing (a finding exits non-zero and leaves a crash file).
//! The `steps` target starts with its regression inputs (inputs that once
//! made the server panic), so each of those passes too.
//!
//! Without make or a C++ compiler (libFuzzer is built from source) the test
//! fails when `CI` is set and is skipped, saying what to install, otherwise.

use iommu_testkit::tools;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tools::{missing, run_with_timeout, runs};

const SECONDS: u32 = 15;

/// Runs `make fuzz` for `targets` with extra make variables; returns the
/// executions libFuzzer reports, one per target, after asserting success.
fn make_fuzz(targets: &str, vars: &[&str]) -> Vec<u64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("target/fuzz-corpus-test");
    let mut make = Command::new("make");
    make.arg("fuzz")
        .arg(format!("FUZZ_TARGETS={targets}"))
        .arg(format!("FUZZ_CORPUS={}", corpus.display()))
        .args(vars)
        .current_dir(root)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let (status, out) = run_with_timeout(make, Duration::from_secs(900));
    println!("{out}");
    assert_eq!(
        status,
        Some(0),
        "make fuzz of {targets} failed or found something:\n{out}"
    );
    out.lines()
        .filter_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map(|n| n.trim().parse().expect("an execution count"))
        .collect()
}

#[test]
fn the_fuzz_targets_run_and_find_nothing() {
    for (tool, install) in [
        ("make", "apt-get install make"),
        ("c++", "apt-get install g++"),
    ] {
        if !runs(tool) && missing(&format!("{tool} ({install})")) {
            return;
        }
    }
    let runs = make_fuzz("serve steps", &[&format!("FUZZ_SECONDS={SECONDS}")]);
    assert!(
        matches!(runs[..], [serve, steps] if serve > 1000 && steps > 1000),
        "executions {runs:?} in {SECONDS} s each"
    );
}
