//! Builds the bare-metal test image (hw/qemu-test) and boots it on QEMU's
//! SMMUv3 model with two edu devices; every case must pass.
//!
//! Without QEMU or the aarch64-unknown-none target the test fails when `CI`
//! is set and is skipped, saying what to install, otherwise.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: &str = "aarch64-unknown-none";
const QEMU: &str = "qemu-system-aarch64";
const CASES: usize = 10;
const TIMEOUT: Duration = Duration::from_secs(120);

fn missing(what: &str) -> bool {
    assert!(std::env::var_os("CI").is_none(), "CI must provide {what}");
    eprintln!("skipping: {what} is not installed");
    true
}

fn have_qemu() -> bool {
    Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn have_target() -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
}

/// Builds the image; returns the ELF path.
fn build_image() -> PathBuf {
    let hw = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crate_dir = hw.join("qemu-test");
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
    assert!(status.success(), "building hw/qemu-test failed");
    target_dir.join(TARGET).join("release/hw-qemu-test")
}

/// Boots `image`; returns (exit status, console output).
fn boot(image: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(QEMU)
        .args([
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
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu");
    // Drain both pipes while QEMU runs so a chatty run cannot block it.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for qemu") {
            break status.code();
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = out_reader.join().unwrap_or_default();
    out.push_str(&err_reader.join().unwrap_or_default());
    (status, out)
}

#[test]
fn smmu_driver_passes_every_case_on_qemu() {
    if (!have_target() && missing(&format!("the {TARGET} target (rustup target add {TARGET})")))
        || (!have_qemu() && missing(&format!("{QEMU} (apt-get install qemu-system-arm)")))
    {
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
