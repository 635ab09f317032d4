//! `make pds` builds every PD image system.xml names, for
//! aarch64-unknown-none (so every crate a PD links builds there: no std,
//! no allocator), and each image carries what the Microkit tool patches:
//! the six symbols every PD defines and each of its setvar symbols, all
//! of the right size, with its entry point at `_start`, at
//! `microkit::ENTRY`; a child PD keeps its state in .bss, so a restart
//! (which zeroes .bss) starts it afresh.
//!
//! Without make or the target the test fails when `CI` is set and is
//! skipped, saying what to install, otherwise.

use iommu_testkit::tools;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use tools::have_all;

/// An ELF64 little-endian image's entry point, symbols (name → value,
/// size) and sections.
struct Elf {
    entry: u64,
    symbols: HashMap<String, (u64, u64)>,
    sections: Vec<Section>,
}

#[derive(Debug)]
struct Section {
    name: String,
    kind: usize,
    flags: u64,
    addr: u64,
    size: u64,
}

const SHT_PROGBITS: usize = 1;
const SHT_NOBITS: usize = 8;
const SHF_WRITE: u64 = 1;

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
    let names = u64_at(&b, section(u16_at(&b, 62)) + 24) as usize;
    let sections = (0..shnum)
        .map(section)
        .map(|s| {
            let at = names + u32_at(&b, s);
            let end = b[at..].iter().position(|&c| c == 0).unwrap() + at;
            Section {
                name: String::from_utf8_lossy(&b[at..end]).into_owned(),
                kind: u32_at(&b, s + 4),
                flags: u64_at(&b, s + 8),
                addr: u64_at(&b, s + 16),
                size: u64_at(&b, s + 32),
            }
        })
        .collect();
    Elf {
        entry,
        symbols,
        sections,
    }
}

/// The server PD keeps its state (the engine's pools, every client's
/// objects, the SMMU's and the domains' state) in `.bss`: all zero until
/// it starts, so it costs the image nothing. Its initialised writable data
/// is only what the Microkit tool patches.
/// Writable initialised data is only what the Microkit tool patches (and
/// the start count): all state is in .bss. For a child PD this is what
/// makes a restart start afresh, as its entry code zeroes .bss.
fn state_is_in_bss(elf: &Elf, image: &str) {
    let data: u64 = elf
        .sections
        .iter()
        .filter(|s| s.kind == SHT_PROGBITS && s.flags & SHF_WRITE != 0)
        .map(|s| s.size)
        .sum();
    assert!(
        data <= 512,
        "{image}: {data} bytes of initialised writable data: {:?}",
        elf.sections
    );
    let bss = elf
        .sections
        .iter()
        .find(|s| s.name == ".bss")
        .unwrap_or_else(|| panic!("{image}: no .bss"));
    let bound = |name: &str| {
        elf.symbols
            .get(name)
            .unwrap_or_else(|| panic!("{image}: no `{name}`"))
            .0
    };
    assert!(
        bound("__bss_start") <= bss.addr && bss.addr + bss.size <= bound("__bss_end"),
        "{image}: the entry code's bounds do not cover .bss"
    );
}

fn server_state_is_in_bss(elf: &Elf, image: &str) {
    state_is_in_bss(elf, image);
    // Mangled paths: iommu_server_pd::platform::STATICS, ::SMMU, ::HW,
    // ::CONFIGS.
    for state in ["8platform7STATICS", "4SMMU", "2HW", "7CONFIGS"] {
        let (addr, size) = elf
            .symbols
            .iter()
            .find(|(name, _)| name.contains(&format!("15iommu_server_pd{state}17h")))
            .map(|(_, &v)| v)
            .unwrap_or_else(|| panic!("{image}: no server state `{state}`"));
        let home = elf
            .sections
            .iter()
            .find(|s| s.addr <= addr && addr + size <= s.addr + s.size && s.size > 0)
            .unwrap_or_else(|| panic!("{image}: `{state}` in no section"));
        assert_eq!(
            home.kind, SHT_NOBITS,
            "{image}: `{state}` ({size} bytes) is in {}, not .bss",
            home.name
        );
    }
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
    let (system, config) = sysgen::load(&root.join("system.xml"), &root.join("iommu.xml")).unwrap();
    let fixed = [
        ("microkit_name", 64),
        ("microkit_passive", 1),
        ("microkit_irqs", 8),
        ("microkit_notifications", 8),
        ("microkit_pps", 8),
        ("microkit_ioports", 8),
    ];
    assert!(!system.pds.is_empty());
    let mut all_setvars = 0;
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
        all_setvars += setvars;
        assert_eq!(elf.entry, sym("_start").0, "{image}: entry is not _start");
        // Where a parent restarts a child.
        assert_eq!(
            elf.entry,
            microkit::ENTRY,
            "{image}: entry is not microkit::ENTRY"
        );
        if pd.name == config.server.pd {
            server_state_is_in_bss(&elf, image);
        }
        if pd.parent.is_some() {
            state_is_in_bss(&elf, image);
        }
    }
    assert!(all_setvars > 0, "no setvar checked in any image");
}
