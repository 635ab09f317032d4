//! Links the VMM at Microkit's layout (pd.ld) and builds its guest: the
//! `edu-guest` crate of this workspace, compiled by a cargo of its own
//! into this build's OUT_DIR, its loadable segments laid out flat from
//! the base of guest RAM into `edu_guest.bin`, which the VMM embeds
//! (`include_bytes!`). No guest binary is ever committed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the guest is linked and loaded (edu-guest's guest.ld), and how
/// much RAM it has.
const RAM_GPA: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 0x20_0000;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    println!(
        "cargo:rustc-link-arg=-T{}",
        dir.join("../../../microkit/pd.ld").display()
    );
    println!("cargo:rerun-if-changed=../../../microkit/pd.ld");
    for watched in [
        "../edu-guest",
        "../../devices/edu-device",
        "../../vm/edu-guest-driver",
        "../../../mmio",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }

    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = out.join("guest-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The guest's own build: the outer build's flags and target are the
    // VMM's, not the guest's, so none of them is passed on.
    let status = Command::new(cargo)
        .current_dir(dir.join(".."))
        .args(["build", "--release", "-p", "edu-guest"])
        .args(["--target", "aarch64-unknown-none"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("cargo runs to build the guest");
    assert!(status.success(), "building the guest (edu-guest) failed");
    let elf = target_dir.join("aarch64-unknown-none/release/edu-guest");
    let image = flat_image(&elf);
    std::fs::write(out.join("edu_guest.bin"), image).unwrap();
}

fn u16_at(b: &[u8], at: usize) -> u64 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap()).into()
}

fn u32_at(b: &[u8], at: usize) -> u64 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()).into()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The guest's PT_LOAD segments' file bytes, each at its address less
/// the base of guest RAM; refuses an entry point other than that base and
/// any segment outside guest RAM.
fn flat_image(elf: &Path) -> Vec<u8> {
    let b = std::fs::read(elf).unwrap_or_else(|e| panic!("{}: {e}", elf.display()));
    assert!(
        b.len() > 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1,
        "{}: not a little-endian ELF64",
        elf.display()
    );
    let entry = u64_at(&b, 24);
    assert_eq!(
        entry, RAM_GPA,
        "the guest must start at the base of its RAM"
    );
    let (phoff, phentsize, phnum) = (
        u64_at(&b, 32) as usize,
        u16_at(&b, 54) as usize,
        u16_at(&b, 56) as usize,
    );
    let mut image = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(&b, ph) != 1 {
            continue; // not PT_LOAD
        }
        let (offset, vaddr, filesz, memsz) = (
            u64_at(&b, ph + 8) as usize,
            u64_at(&b, ph + 16),
            u64_at(&b, ph + 32) as usize,
            u64_at(&b, ph + 40),
        );
        assert!(
            vaddr >= RAM_GPA && vaddr + memsz <= RAM_GPA + RAM_SIZE,
            "guest segment at {vaddr:#x} is outside guest RAM"
        );
        let at = (vaddr - RAM_GPA) as usize;
        if image.len() < at + filesz {
            image.resize(at + filesz, 0);
        }
        image[at..at + filesz].copy_from_slice(&b[offset..offset + filesz]);
    }
    image
}
