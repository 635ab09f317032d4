//! Pins the seL4 invocation labels this crate encodes, and checks them
//! against the Microkit SDK when one is configured.
//!
//! MICROKIT_CONFIG=debug|release picks the kernel flavour (default debug);
//! with MICROKIT_SDK and MICROKIT_BOARD set, the SDK's
//! board/$BOARD/$CONFIG/invocations_all.json must give the pinned numbers,
//! or the build fails naming the file and the label.

use std::path::PathBuf;

/// seL4 16.0.0 as Microkit 2.3.0 builds it: (name, debug, release).
const PINNED: &[(&str, u64, u64)] = &[
    ("IRQAckIRQ", 31, 27),
    ("TCBWriteRegisters", 3, 3),
    ("TCBSuspend", 12, 12),
    ("ARMVCPUInjectIRQ", 60, 56),
    ("ARMVCPUReadReg", 61, 57),
    ("ARMVCPUWriteReg", 62, 58),
    ("ARMVCPUAckVPPI", 63, 59),
];

/// Numbers of the kernel's C enums this crate encodes, the same in every
/// configuration: (header under board/$BOARD/$CONFIG/include/sel4, name,
/// value). Fault labels (`fault`; DebugException, 4, exists in debug
/// kernels alone), the unknown-syscall, VM and vCPU fault messages'
/// registers, the vCPU registers (`VcpuReg`).
const ENUMS: &[(&str, &str, u64)] = &[
    ("sel4_arch/types_gen.h", "seL4_Fault_CapFault", 1),
    ("sel4_arch/types_gen.h", "seL4_Fault_UnknownSyscall", 2),
    ("sel4_arch/types_gen.h", "seL4_Fault_UserException", 3),
    ("sel4_arch/types_gen.h", "seL4_Fault_Timeout", 5),
    ("sel4_arch/types_gen.h", "seL4_Fault_VMFault", 6),
    ("sel4_arch/types_gen.h", "seL4_Fault_VGICMaintenance", 7),
    ("sel4_arch/types_gen.h", "seL4_Fault_VCPUFault", 8),
    ("sel4_arch/types_gen.h", "seL4_Fault_VPPIEvent", 9),
    ("sel4_arch/constants.h", "seL4_UnknownSyscall_X0", 0),
    ("sel4_arch/constants.h", "seL4_UnknownSyscall_X7", 7),
    ("sel4_arch/constants.h", "seL4_UnknownSyscall_FaultIP", 8),
    ("sel4_arch/constants.h", "seL4_UnknownSyscall_SP", 9),
    ("sel4_arch/constants.h", "seL4_UnknownSyscall_LR", 10),
    ("sel4_arch/constants.h", "seL4_UnknownSyscall_SPSR", 11),
    ("sel4_arch/constants.h", "seL4_UnknownSyscall_Syscall", 12),
    ("sel4_arch/constants.h", "seL4_UnknownSyscall_Length", 13),
    ("sel4_arch/constants.h", "seL4_VMFault_IP", 0),
    ("sel4_arch/constants.h", "seL4_VMFault_Addr", 1),
    ("sel4_arch/constants.h", "seL4_VMFault_PrefetchFault", 2),
    ("sel4_arch/constants.h", "seL4_VMFault_FSR", 3),
    ("sel4_arch/constants.h", "seL4_VMFault_Length", 4),
    ("sel4_arch/constants.h", "seL4_VCPUFault_HSR", 0),
    ("sel4_arch/constants.h", "seL4_VCPUReg_SCTLR", 0),
    ("sel4_arch/constants.h", "seL4_VCPUReg_CPACR", 1),
    ("sel4_arch/constants.h", "seL4_VCPUReg_TTBR0", 2),
    ("sel4_arch/constants.h", "seL4_VCPUReg_ESR", 11),
    ("sel4_arch/constants.h", "seL4_VCPUReg_FAR", 12),
    ("sel4_arch/constants.h", "seL4_VCPUReg_VBAR", 14),
    ("sel4_arch/constants.h", "seL4_VCPUReg_SP_EL1", 17),
    ("sel4_arch/constants.h", "seL4_VCPUReg_ELR_EL1", 18),
    ("sel4_arch/constants.h", "seL4_VCPUReg_SPSR_EL1", 19),
    ("sel4_arch/constants.h", "seL4_VCPUReg_CNTKCTL_EL1", 23),
    ("sel4_arch/constants.h", "seL4_VCPUReg_Num", 24),
];

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
        let include = PathBuf::from(std::env::var("MICROKIT_SDK").unwrap())
            .join("board")
            .join(std::env::var("MICROKIT_BOARD").unwrap())
            .join(&config)
            .join("include/sel4");
        for &(header, name, pinned) in ENUMS {
            let path = include.join(header);
            println!("cargo:rerun-if-changed={}", path.display());
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let found = enumerator(&text, name)
                .unwrap_or_else(|| panic!("{}: no enumerator {name}", path.display()));
            assert_eq!(
                found,
                pinned,
                "{}: {name} is {found}, this crate encodes {pinned}",
                path.display()
            );
        }
    }
}

/// The value of enumerator `name` in a C header: the enum holding it is
/// read from its `{` on, each enumerator one more than the last unless it
/// says `= number` or `= an earlier enumerator`.
fn enumerator(header: &str, name: &str) -> Option<u64> {
    let at = header
        .find(&format!("{name} "))
        .or_else(|| header.find(&format!("{name},")))?;
    let open = header[..at].rfind('{')?;
    let close = open + header[open..].find('}')?;
    let mut seen: Vec<(String, u64)> = Vec::new();
    let mut next = 0;
    for line in header[open + 1..close].lines() {
        let line = line.split("//").next()?.split("/*").next()?.trim();
        let item = line.trim_end_matches(',').trim();
        if item.is_empty() || item.starts_with("SEL4_FORCE_LONG_ENUM") || item.starts_with('#') {
            continue;
        }
        let (ident, value) = match item.split_once('=') {
            Some((ident, value)) => {
                let value = value.trim();
                let value = match value.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16).ok(),
                    None => value.parse().ok(),
                }
                .or_else(|| seen.iter().find(|(n, _)| n == value).map(|&(_, v)| v))?;
                (ident.trim(), value)
            }
            None => (item, next),
        };
        if ident == name {
            return Some(value);
        }
        seen.push((ident.to_string(), value));
        next = value + 1;
    }
    None
}

/// The number after `"name":` in the SDK's flat JSON object.
fn label(json: &str, name: &str) -> Option<u64> {
    let key = format!("\"{name}\"");
    let rest = &json[json.find(&key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
