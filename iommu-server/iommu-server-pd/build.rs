//! Links the PD at Microkit's layout and declares the setvar symbols the
//! system description has the tool patch into the server.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = dir.join("../..");
    let script = root.join("microkit/pd.ld");
    println!("cargo:rustc-link-arg=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
    let (system, policy) = sysgen::inputs(&root);
    // One line, as the root package's build script gives it.
    let config = match sysgen::load(&system, &policy) {
        Ok(config) => config,
        Err(e) => {
            println!("cargo::error={e}");
            return;
        }
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("setvars.rs");
    std::fs::write(&out, sysgen::gen::server_setvars(&config.1))
        .unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
