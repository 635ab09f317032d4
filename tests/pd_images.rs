//! `make pds` builds every PD image system.xml names, for
//! aarch64-unknown-none (so every crate a PD links builds there: no std,
//! no allocator), and each image carries what the Microkit tool patches:
//! the six symbols every PD defines and each of its setvar symbols, all
//! of the right size, with its entry point at `_start`.
//!
//! Without make or the target the test fails when `CI` is set and is
//! skipped, saying what to install, otherwise.

#[path = "support/tools.rs"]
mod tools;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use tools::have_all;

/// An ELF64 little-endian image's entry point and symbols (name → value,
/// size).
struct Elf {
    entry: u64,
    symbols: HashMap<String, (u64, u64)>,
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap()) as usize
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn read_elf(path: &Path) -> Elf {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&b[..4], b"\x7fELF", "{} is not an ELF", path.display());
    assert_eq!(
        (b[4], b[5]),
        (2, 1),
        "{}: not ELF64 little-endian",
        path.display()
    );
    assert_eq!(u16_at(&b, 18), 183, "{}: not AArch64", path.display());
    let entry = u64_at(&b, 24);
    let shoff = u64_at(&b, 40) as usize;
    let (shentsize, shnum) = (u16_at(&b, 58), u16_at(&b, 60));
    let section = |i: usize| shoff + i * shentsize;
    let symtab = (0..shnum)
        .map(section)
        .find(|&s| u32_at(&b, s + 4) == 2)
        .unwrap_or_else(|| panic!("{}: no symbol table (stripped?)", path.display()));
    let strtab = section(u32_at(&b, symtab + 40));
    let (str_off, sym_off) = (
        u64_at(&b, strtab + 24) as usize,
        u64_at(&b, symtab + 24) as usize,
    );
    let count = u64_at(&b, symtab + 32) as usize / 24;
    let mut symbols = HashMap::new();
    for i in 0..count {
        let s = sym_off + i * 24;
        let name_at = str_off + u32_at(&b, s);
        let end = b[name_at..].iter().position(|&c| c == 0).unwrap() + name_at;
        let name = String::from_utf8_lossy(&b[name_at..end]).into_owned();
        symbols.insert(name, (u64_at(&b, s + 8), u64_at(&b, s + 16)));
    }
    Elf { entry, symbols }
}

#[test]
fn every_pd_image_carries_what_microkit_patches() {
    if !have_all(&[("make", "apt-get install make")]) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = root.join("target/pd-images-test");
    let status = Command::new("make")
        .arg("pds")
        .arg(format!("BUILD={}", build.display()))
        .current_dir(root)
        .env_remove("MICROKIT_SDK")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run make");
    assert!(status.success(), "make pds failed");
    let (system, _) = sysgen::load(&root.join("system.xml"), &root.join("iommu.xml")).unwrap();
    let fixed = [
        ("microkit_name", 64),
        ("microkit_passive", 1),
        ("microkit_irqs", 8),
        ("microkit_notifications", 8),
        ("microkit_pps", 8),
        ("microkit_ioports", 8),
    ];
    assert_eq!(system.pds.len(), 4);
    for pd in &system.pds {
        let image = pd
            .program_image
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no program_image", pd.name));
        let elf = read_elf(&build.join(image));
        let sym = |name: &str| {
            *elf.symbols
                .get(name)
                .unwrap_or_else(|| panic!("{image} ({}) lacks `{name}`", pd.name))
        };
        for (name, size) in fixed {
            assert_eq!(sym(name).1, size, "{image}: `{name}` size");
        }
        let mut setvars = 0;
        for name in pd.setvar_symbols() {
            assert_eq!(
                sym(name).1,
                8,
                "{image} ({}): setvar `{name}` must be 8 bytes",
                pd.name
            );
            setvars += 1;
        }
        assert!(setvars > 0, "{}: no setvars checked", pd.name);
        assert_eq!(elf.entry, sym("_start").0, "{image}: entry is not _start");
    }
}
