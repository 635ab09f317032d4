//! What the tests that build images or boot QEMU share: checking the tools
//! they need (missing ones fail under `CI`, else skip saying what to
//! install) and running a command with a time limit.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const TARGET: &str = "aarch64-unknown-none";

/// Reports a missing tool: fails when `CI` is set, else says the test is
/// skipped. Returns true, for `if !have && missing(..) { return }`.
pub fn missing(what: &str) -> bool {
    assert!(std::env::var_os("CI").is_none(), "CI must provide {what}");
    eprintln!("skipping: {what} is not installed");
    true
}

/// Whether `cmd --version` runs and succeeds.
pub fn runs(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the aarch64-unknown-none standard library is installed.
pub fn have_target() -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
}

/// True when the target, and each of `tools`, is there (see [`missing`]).
pub fn have_all(tools: &[(&str, &str)]) -> bool {
    if !have_target() && missing(&format!("the {TARGET} target (rustup target add {TARGET})")) {
        return false;
    }
    tools
        .iter()
        .all(|&(tool, install)| runs(tool) || !missing(&format!("{tool} ({install})")))
}

/// Runs `cmd` with stdin closed, draining its output while it runs (so a
/// chatty child cannot block), and kills it after `limit`. Returns its exit
/// status (`None` if killed) and stdout followed by stderr.
pub fn run_with_timeout(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
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
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = out.join().unwrap_or_default();
    text.push_str(&err.join().unwrap_or_default());
    (status, text)
}
