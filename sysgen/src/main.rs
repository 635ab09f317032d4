//! Checks a system description and its IOMMU policy sidecar without
//! building anything: `cargo run -p sysgen -- system.xml iommu.xml`.
//! Prints what the server would serve, or the one located error and exits
//! with status 1. With `--qemu-devices` first, prints instead the QEMU
//! arguments that place the configured devices (`make run` uses them).
//! `--c-header` alone prints `iommu_proto.h`, the protocol for C clients.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.len() == 1 && args[0].as_os_str() == "--c-header" {
        let mut header = String::new();
        iommu_proto::c::header(&mut header).expect("writing to a String");
        print!("{header}");
        return ExitCode::SUCCESS;
    }
    let qemu = args.first().is_some_and(|a| a == "--qemu-devices");
    if qemu {
        args.remove(0);
    }
    let [system, policy] = args.as_slice() else {
        eprintln!("usage: sysgen [--qemu-devices] SYSTEM.xml IOMMU.xml | sysgen --c-header");
        return ExitCode::from(2);
    };
    match sysgen::load(system, policy) {
        Ok((_, config)) if qemu => {
            println!("{}", sysgen::qemu_devices(&config).join(" "));
            ExitCode::SUCCESS
        }
        Ok((_, config)) => {
            println!(
                "{} and {}: server `{}`, {} clients",
                system.display(),
                policy.display(),
                config.server,
                config.clients.len()
            );
            for c in &config.clients {
                let child = c
                    .child_of
                    .as_ref()
                    .map(|(parent, id)| format!(", child {id} of {parent}"))
                    .unwrap_or_default();
                println!(
                    "  {} on server channel {}: {} DMA regions, {} devices{}{child}",
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
