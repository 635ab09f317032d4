//! Checks a system description and its IOMMU policy sidecar without
//! building anything: `cargo run -p sysgen -- system.xml iommu.xml`.
//! Prints what the server would serve, or the one located error and exits
//! with status 1. With `--qemu-devices` first, prints instead the QEMU
//! arguments that place the configured devices (`make run` uses them).
//! `--c-header` alone prints `iommu_proto.h`, the protocol for C clients;
//! `--c-config PD` first prints `iommu_config.h` for that PD (its channels,
//! command page, DMA regions and devices). `--microkit-sdf` first prints
//! the system description the Microkit tool is given: SYSTEM.xml without
//! its `<io_address_space>` elements (the server builds them), every
//! other byte as it is.
//!
//! When the reader of its output goes away first (`sysgen ... | head`), it
//! stops without a message and exits with status 141, what a shell shows
//! for a program that SIGPIPE ended: the output was cut short, and a
//! script with `set -o pipefail` sees that as it would for `cat`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// The status of a program its closed output pipe ended (128 + SIGPIPE).
const BROKEN_PIPE: u8 = 141;

/// Writes `text` to stdout.
fn emit(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(BROKEN_PIPE),
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.len() == 1 && args[0].as_os_str() == "--c-header" {
        let mut header = String::new();
        iommu_proto::c::header(&mut header).expect("writing to a String");
        return emit(&header);
    }
    let qemu = args.first().is_some_and(|a| a == "--qemu-devices");
    if qemu {
        args.remove(0);
    }
    let microkit_sdf = args.first().is_some_and(|a| a == "--microkit-sdf");
    if microkit_sdf {
        args.remove(0);
    }
    let c_config = if args.first().is_some_and(|a| a == "--c-config") && args.len() == 4 {
        args.remove(0);
        Some(args.remove(0))
    } else {
        None
    };
    let [system, policy] = args.as_slice() else {
        eprintln!(
            "usage: sysgen [--qemu-devices | --microkit-sdf | --c-config PD] SYSTEM.xml IOMMU.xml | sysgen --c-header"
        );
        return ExitCode::from(2);
    };
    match sysgen::load(system, policy) {
        Ok((_, config)) if c_config.is_some() => {
            let pd = c_config.unwrap_or_default();
            let pd = pd.to_string_lossy();
            match sysgen::gen::c_config(&config, &pd) {
                Some(header) => emit(&header),
                None => {
                    eprintln!("error: no PD `{pd}` with channels or an IOMMU client entry");
                    ExitCode::FAILURE
                }
            }
        }
        Ok(_) if microkit_sdf => {
            let stripped = std::fs::read_to_string(system)
                .map_err(|e| e.to_string())
                .and_then(|src| sysgen::strip::microkit_sdf(&src).map_err(|e| e.message));
            match stripped {
                Ok(text) => emit(&text),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Ok((_, config)) if qemu => emit(&format!("{}\n", sysgen::qemu_devices(&config).join(" "))),
        Ok((_, config)) => {
            let mut text = String::new();
            let _ = writeln!(
                text,
                "{} and {}: server `{}`, {} clients",
                system.display(),
                policy.display(),
                config.server.pd,
                config.clients.len()
            );
            for c in &config.clients {
                let child = c
                    .child_of
                    .as_ref()
                    .map(|o| format!(", child {} of {}", o.id, o.parent))
                    .unwrap_or_default();
                let _ = writeln!(
                    text,
                    "  {} on server channel {}: {} DMA regions, {} devices{}{child}",
                    c.pd,
                    c.server_channel,
                    c.regions.len(),
                    c.devices.len(),
                    if c.manager { ", manager" } else { "" }
                );
            }
            for s in &config.static_spaces {
                let _ = writeln!(
                    text,
                    "  static io address space {} ({}, stream {:#x}, domain_id {}): {} iomaps, {} table pages, faults to {}",
                    s.name,
                    s.peripheral,
                    s.stream_id.0,
                    s.domain_id,
                    s.iomaps.len(),
                    s.table_pages,
                    s.fault_pd.as_deref().unwrap_or("the log only")
                );
            }
            emit(&text)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
