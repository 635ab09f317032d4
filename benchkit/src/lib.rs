//! What the benchmarks share: the mean criterion recorded for one
//! benchmark of this run, read back from its output directory, so a bench
//! can print its figures side by side with their ratios (feature `std`);
//! and, without std for the seL4 benchmark PDs and the guest, counter
//! ticks to instructions under QEMU's `-icount` ([`icount`]).

#![cfg_attr(not(feature = "std"), no_std)]

pub mod icount;

#[cfg(feature = "std")]
use std::path::PathBuf;

#[cfg(feature = "std")]
/// Criterion's output directory: `CRITERION_HOME`, else `target/criterion`
/// beside the running bench binary (`target/<profile>/deps/<bench>`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

#[cfg(feature = "std")]
/// The mean ns per iteration of benchmark `group/id...` (the path criterion
/// writes it under, `/` in a name written as `_`), or `None` when this run
/// did not measure it.
pub fn mean_ns(group: &str, id: &[&str]) -> Option<f64> {
    let mut path = criterion_dir()?.join(group);
    for part in id {
        path.push(part.replace('/', "_"));
    }
    let json = std::fs::read_to_string(path.join("new/estimates.json")).ok()?;
    let mean = &json[json.find("\"mean\"")?..];
    let value = &mean[mean.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    value[..value.find([',', '}'])?].trim().parse().ok()
}
