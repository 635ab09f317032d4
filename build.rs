//! Turns system.xml and its IOMMU policy sidecar into the server's static
//! configuration (`$OUT_DIR/system_config.rs`, included by src/lib.rs).
//! An inconsistent pair fails the build with `file:line:col: <element>
//! attribute `x`: reason`.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let path = |var: &str, default: &str| {
        println!("cargo:rerun-if-env-changed={var}");
        std::env::var_os(var).map_or_else(|| root.join(default), PathBuf::from)
    };
    let system = path("IOMMU_SYSTEM_XML", "system.xml");
    let policy = path("IOMMU_POLICY_XML", "iommu.xml");
    println!("cargo:rerun-if-changed={}", system.display());
    println!("cargo:rerun-if-changed={}", policy.display());
    let config = match sysgen::load(&system, &policy) {
        Ok((_, config)) => config,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let names = [system.display().to_string(), policy.display().to_string()];
    let names: Vec<&str> = names
        .iter()
        .map(|n| n.rsplit('/').next().unwrap_or(n))
        .collect();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("system_config.rs");
    std::fs::write(&out, sysgen::gen::rust(&config, &names))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
