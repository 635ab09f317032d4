//! `make run` without a Microkit SDK: the bare-metal demo boots on QEMU's
//! SMMUv3 and tells the whole story, every check passing, and says that
//! it runs without seL4 isolation.
//!
//! Without QEMU, make or the aarch64-unknown-none target the test fails
//! when `CI` is set and is skipped, saying what to install, otherwise.

#[path = "support/tools.rs"]
mod tools;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tools::{have_all, run_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn make_run_without_an_sdk_tells_the_whole_story() {
    if !have_all(&[
        ("qemu-system-aarch64", "apt-get install qemu-system-arm"),
        ("make", "apt-get install make"),
    ]) {
        return;
    }
    let mut make = Command::new("make");
    make.arg("run")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .env_remove("MICROKIT_SDK")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let (status, out) = run_with_timeout(make, TIMEOUT);
    println!("{out}");
    assert!(
        status.is_some(),
        "make run did not finish within {TIMEOUT:?}"
    );
    for line in [
        "running WITHOUT seL4 isolation",
        "3 clients from system.xml + iommu.xml",
        "demo: 2 drivers (edu_a crashes and is restarted, edu_b is reset), manager supervises",
        "edu_a: edu at stream 0x8",
        "edu_b: edu at stream 0x10",
        "ok - edu_a: DMA through its mappings",
        "ok - edu_a: stray DMA faulted and reported to it alone",
        "stopped by the SMMU and reported: F_TRANSLATION",
        "ok - edu_b: DMA through its mappings",
        "ok - edu_b: stray DMA faulted and reported to it alone",
        "ok - edu_b: cannot bind edu_a's device, map edu_a's memory or reset edu_a",
        "server: DMA fault F_TRANSLATION on stream 0x8 (edu_a's edu_a)",
        "ok - manager: dumps edu_b's state",
        "manager:   device 256: edu_b, stream 0x10, attached to HWPT",
        "ok - manager: resets edu_b",
        "server: DMA fault C_BAD_STE on stream 0x10 (edu_b's edu_b)",
        "ran, reached nothing and faulted (C_BAD_STE)",
        "ok - edu_b: device can no longer reach memory",
        "ok - edu_b: resources all returned",
        // The crash in the middle of a DMA, revoked and restarted.
        "edu_a: DMA to IOVA 0x2000 in flight: crashing on purpose",
        "ok - supervisor: revokes edu_a's DMA when it dies",
        "ok - edu_a: resources all returned",
        "server: DMA fault C_BAD_STE on stream 0x8 (edu_a's edu_a)",
        "edu_a: restarted: my previous life's DMA was stopped (C_BAD_STE) and reached nothing",
        "ok - edu_a: restarted: binds, maps and does DMA again",
        "ok - supervisor: the server's pools are back where they were before the crash",
        "ok - edu_a: still works at the end",
        "demo: 16 passed, 0 failed",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(!out.contains("FAILED"), "a check failed:\n{out}");
    assert_eq!(status, Some(0), "exit status:\n{out}");
    // The demo runs the server core nested inside its clients, on one
    // stack: its high-water mark bounds the server's, which must keep a
    // margin of two inside the stack system.xml gives the server PD.
    let used_kib: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("demo: stack high-water mark "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stack high-water mark in:\n{out}"));
    assert!(
        2 * used_kib * 1024 <= iommu_system::SERVER.stack_size,
        "the demo's stack peaked at {used_kib} KiB: not within half of the server's {} KiB",
        iommu_system::SERVER.stack_size / 1024
    );
}
