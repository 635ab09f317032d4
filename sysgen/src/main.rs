//! Checks a system description and its IOMMU policy sidecar without
//! building anything: `cargo run -p sysgen -- system.xml iommu.xml`.
//! Prints what the server would serve, or the one located error and exits
//! with status 1.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [system, policy] = args.as_slice() else {
        eprintln!("usage: sysgen SYSTEM.xml IOMMU.xml");
        return ExitCode::from(2);
    };
    match sysgen::load(system, policy) {
        Ok((_, config)) => {
            println!(
                "{} and {}: server `{}`, {} clients",
                system.display(),
                policy.display(),
                config.server,
                config.clients.len()
            );
            for c in &config.clients {
                println!(
                    "  {} on server channel {}: {} DMA regions, {} devices{}",
                    c.pd,
                    c.server_channel,
                    c.regions.len(),
                    c.devices.len(),
                    if c.manager { ", manager" } else { "" }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
