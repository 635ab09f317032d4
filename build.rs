//! Turns system.xml and its IOMMU policy sidecar into the server's static
//! configuration (`$OUT_DIR/system_config.rs`, included by src/lib.rs).
//! An inconsistent pair fails the build with one line, `file:line:col:
//! <element> attribute `x`: reason` (cargo's `cargo::error=`), and the
//! same check runs alone with `cargo run -p sysgen -- system.xml
//! iommu.xml`.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let (system, policy) = sysgen::inputs(&root);
    let config = match sysgen::load(&system, &policy) {
        Ok((_, config)) => config,
        Err(e) => {
            println!("cargo::error={e}");
            return;
        }
    };
    let names = [&system, &policy].map(|p| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    });
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("system_config.rs");
    std::fs::write(&out, sysgen::gen::rust(&config, &[&names[0], &names[1]]))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
