//! Builds the bare-metal test image (hw-qemu-test) and boots it on QEMU's
//! SMMUv3 model with two edu devices; every case must pass.
//!
//! Without QEMU or the aarch64-unknown-none target the test fails when `CI`
//! is set and is skipped, saying what to install, otherwise.

use iommu_testkit::tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tools::{have_all, run_with_timeout, TARGET};

const QEMU: &str = "qemu-system-aarch64";
const CASES: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(120);

/// Builds the image; returns the ELF path.
fn build_image() -> PathBuf {
    let hw = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crate_dir = hw.join("../hw-qemu-test");
    let target_dir = hw.join("../target/qemu-test");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Run inside the crate so its .cargo/config.toml (target, strict-align)
    // applies; a separate target directory avoids the outer cargo's lock.
    let status = Command::new(cargo)
        .current_dir(&crate_dir)
        .args(["build", "--release", "--target-dir"])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(status.success(), "building hw-qemu-test failed");
    target_dir.join(TARGET).join("release/hw-qemu-test")
}

/// Boots `image`; returns (exit status, console output).
fn boot(image: &Path) -> (Option<i32>, String) {
    let mut qemu = Command::new(QEMU);
    qemu.args([
        "-M",
        "virt,iommu=smmuv3",
        "-cpu",
        "cortex-a57",
        "-m",
        "512M",
    ])
    .args(["-nographic", "-nic", "none", "-semihosting", "-kernel"])
    .arg(image)
    .args([
        "-device",
        "edu,dma_mask=0xffffffffffffffff",
        "-device",
        "edu,dma_mask=0xffffffffffffffff",
    ]);
    run_with_timeout(qemu, TIMEOUT)
}

#[test]
fn smmu_driver_passes_every_case_on_qemu() {
    if !have_all(&[(QEMU, "apt-get install qemu-system-arm")]) {
        return;
    }
    let image = build_image();
    let (status, out) = boot(&image);
    println!("{out}");
    assert!(
        status.is_some(),
        "QEMU did not finish within {TIMEOUT:?}:\n{out}"
    );
    for case in 1..=CASES {
        assert!(
            out.contains(&format!("\nok {case} - ")),
            "case {case} did not pass:\n{out}"
        );
    }
    assert!(
        out.contains(&format!("{CASES} passed, 0 failed")),
        "summary missing:\n{out}"
    );
    assert_eq!(status, Some(0), "exit status:\n{out}");
}
