//! Pins the seL4 invocation labels this crate encodes, and checks them
//! against the Microkit SDK when one is configured.
//!
//! MICROKIT_CONFIG=debug|release picks the kernel flavour (default debug);
//! with MICROKIT_SDK and MICROKIT_BOARD set, the SDK's
//! board/$BOARD/$CONFIG/invocations_all.json must give the pinned numbers,
//! or the build fails naming the file and the label.

use std::path::PathBuf;

/// seL4 16.0.0 as Microkit 2.3.0 builds it: (name, debug, release).
const PINNED: &[(&str, u64, u64)] = &[("IRQAckIRQ", 31, 27), ("TCBWriteRegisters", 3, 3)];

fn main() {
    println!("cargo:rerun-if-env-changed=MICROKIT_SDK");
    println!("cargo:rerun-if-env-changed=MICROKIT_BOARD");
    println!("cargo:rerun-if-env-changed=MICROKIT_CONFIG");
    println!("cargo::rustc-check-cfg=cfg(microkit_debug)");
    let config = std::env::var("MICROKIT_CONFIG").unwrap_or_else(|_| "debug".into());
    let debug = match config.as_str() {
        "debug" => true,
        "release" | "benchmark" => false,
        other => panic!("MICROKIT_CONFIG={other}: expected debug, release or benchmark"),
    };
    if debug {
        println!("cargo:rustc-cfg=microkit_debug");
    }
    if let (Ok(sdk), Ok(board)) = (
        std::env::var("MICROKIT_SDK"),
        std::env::var("MICROKIT_BOARD"),
    ) {
        let path = PathBuf::from(sdk)
            .join("board")
            .join(board)
            .join(&config)
            .join("invocations_all.json");
        println!("cargo:rerun-if-changed={}", path.display());
        let json =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for &(name, in_debug, in_release) in PINNED {
            let pinned = if debug { in_debug } else { in_release };
            let found =
                label(&json, name).unwrap_or_else(|| panic!("{}: no \"{name}\"", path.display()));
            assert_eq!(
                found,
                pinned,
                "{}: \"{name}\" is {found}, this crate encodes {pinned}",
                path.display()
            );
        }
    }
}

/// The number after `"name":` in the SDK's flat JSON object.
fn label(json: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\"");
    let rest = &json[json.find(&key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
