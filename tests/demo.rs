//! `make run` without a Microkit SDK: the bare-metal demo boots on QEMU's
//! SMMUv3 and tells the whole story, every check passing, and says that
//! it runs without seL4 isolation.
//!
//! Without QEMU, make or the aarch64-unknown-none target the test fails
//! when `CI` is set and is skipped, saying what to install, otherwise.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: &str = "aarch64-unknown-none";
const TIMEOUT: Duration = Duration::from_secs(600);

fn missing(what: &str) -> bool {
    assert!(std::env::var_os("CI").is_none(), "CI must provide {what}");
    eprintln!("skipping: {what} is not installed");
    true
}

fn runs(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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

/// Runs `make run`; returns (exit status, output).
fn make_run(root: &Path) -> (Option<i32>, String) {
    let mut child = Command::new("make")
        .arg("run")
        .current_dir(root)
        .env_remove("MICROKIT_SDK")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start make");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for make") {
            break status.code();
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut text = out.join().unwrap_or_default();
    text.push_str(&err.join().unwrap_or_default());
    (status, text)
}

#[test]
fn make_run_without_an_sdk_tells_the_whole_story() {
    if (!have_target() && missing(&format!("the {TARGET} target (rustup target add {TARGET})")))
        || (!runs("qemu-system-aarch64")
            && missing("qemu-system-aarch64 (apt-get install qemu-system-arm)"))
        || (!runs("make") && missing("make"))
    {
        return;
    }
    let (status, out) = make_run(Path::new(env!("CARGO_MANIFEST_DIR")));
    println!("{out}");
    assert!(
        status.is_some(),
        "make run did not finish within {TIMEOUT:?}"
    );
    for line in [
        "running WITHOUT seL4 isolation",
        "3 clients from system.xml + iommu.xml",
        "edu_a: edu at stream 0x8",
        "edu_b: edu at stream 0x10",
        "ok - edu_a: DMA through its mappings",
        "ok - edu_a: stray DMA faulted and reported to edu_a alone",
        "stopped by the SMMU and reported: F_TRANSLATION",
        "ok - edu_b: DMA through its mappings",
        "ok - edu_b cannot bind edu_a's device, map edu_a's memory or reset edu_a",
        "ok - manager resets edu_b",
        "ok - edu_b's device can no longer reach memory",
        "ok - edu_b's resources all returned",
        "ok - edu_a still works after edu_b's reset",
        "demo: 10 passed, 0 failed",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(!out.contains("FAILED"), "a check failed:\n{out}");
    assert_eq!(status, Some(0), "exit status:\n{out}");
}
