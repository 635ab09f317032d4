//! Every crate the server PD links must build for its target,
//! `aarch64-unknown-none`: no std, no allocator.

use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "aarch64-unknown-none";

fn target_installed() -> bool {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    let Ok(out) = sysroot else { return false };
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    root.join("lib/rustlib").join(TARGET).exists()
}

#[test]
fn server_crates_build_for_aarch64_unknown_none() {
    if !target_installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the {TARGET} target (rustup target add {TARGET})"
        );
        eprintln!("skipping: rustup target add {TARGET} to run this test");
        return;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // A separate target directory keeps clear of the outer cargo's lock.
    let target_dir = manifest.join("target/bare-metal-check");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--lib",
            "--target",
            TARGET,
            "--manifest-path",
        ])
        .arg(manifest.join("Cargo.toml"))
        .args([
            "-p",
            "iommu-proto",
            "-p",
            "iopt",
            "-p",
            "hw",
            "-p",
            "iommu-server",
            "-p",
            "microkit",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "the server's crates do not build for {TARGET}"
    );
    for lib in ["iommu_proto", "iopt", "hw", "iommu_server", "microkit"] {
        let rlib = target_dir
            .join(TARGET)
            .join(format!("release/lib{lib}.rlib"));
        assert!(rlib.exists(), "no {} after the build", rlib.display());
    }
}
