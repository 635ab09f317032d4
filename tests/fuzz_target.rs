//! The coverage-guided fuzz target builds and runs: `make fuzz` for a few
//! seconds, every execution checking the server's invariants, and nothing
//! found (a finding exits non-zero and leaves a crash file).
//!
//! Without make or a C++ compiler (libFuzzer is built from source) the test
//! fails when `CI` is set and is skipped, saying what to install, otherwise.

#[path = "support/tools.rs"]
mod tools;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tools::{missing, run_with_timeout, runs};

const SECONDS: u32 = 15;

#[test]
fn the_fuzz_target_runs_and_finds_nothing() {
    for (tool, install) in [
        ("make", "apt-get install make"),
        ("c++", "apt-get install g++"),
    ] {
        if !runs(tool) && missing(&format!("{tool} ({install})")) {
            return;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("target/fuzz-corpus-test");
    let mut make = Command::new("make");
    make.arg("fuzz")
        .arg(format!("FUZZ_SECONDS={SECONDS}"))
        .arg(format!("FUZZ_CORPUS={}", corpus.display()))
        .current_dir(root)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let (status, out) = run_with_timeout(make, Duration::from_secs(900));
    println!("{out}");
    assert_eq!(
        status,
        Some(0),
        "make fuzz failed or found something:\n{out}"
    );
    let runs: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no execution count in:\n{out}"));
    assert!(runs > 1000, "only {runs} executions in {SECONDS} s");
}
