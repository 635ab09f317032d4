//! The build-time side of the system description: reads system.xml and
//! the IOMMU policy sidecar next to it, checks them against each other
//! and generates the server's static configuration (see [`policy`] for
//! the sidecar's schema). Used by the root package's build.rs and by the
//! tests; errors read like the Microkit tool's: `file:line:col: <element
//! name="..."> attribute `x`: what is wrong`.

pub mod addresses;
pub mod error;
pub mod gen;
pub mod guest_ram;
pub mod io_address_space;
pub mod model;
pub mod policy;
pub mod sdf;
pub mod static_space;
pub mod strip;
pub mod units;
pub mod virtual_machine;
pub mod xml;

use std::path::Path;

pub use error::Error;
pub use model::{qemu_devices, Config};
pub use sdf::System;

/// Parses and cross-checks the two documents; the names are for errors.
pub fn load_str(
    system_name: &str,
    system_src: &str,
    policy_name: &str,
    policy_src: &str,
) -> Result<(System, Config), Error> {
    let sdf = error::Source { file: system_name };
    let side = error::Source { file: policy_name };
    let syntax = |file: &str, e: xml::SyntaxError| Error {
        file: file.to_string(),
        pos: e.pos,
        element: "document".into(),
        attribute: None,
        message: e.message,
    };
    let sys_root = xml::parse(system_src).map_err(|e| syntax(system_name, e))?;
    let pol_root = xml::parse(policy_src).map_err(|e| syntax(policy_name, e))?;
    let system = sdf::parse(sdf, &sys_root)?;
    // An oversized command page would otherwise read as an overlap of
    // its map with the next.
    addresses::check_command_pages(&system, sdf, side, &pol_root)?;
    sdf::check_overlaps(sdf, &system)?;
    let mut config = policy::check(&system, sdf, side, &pol_root)?;
    addresses::check(&system, sdf, side, &pol_root, &config)?;
    let (spaces, simulated) = static_space::check(&system, &config, sdf, side, &pol_root)?;
    config.static_spaces = spaces;
    config.qemu.extend(simulated);
    guest_ram::check(&system, &config, sdf, side, &pol_root)?;
    Ok((system, config))
}

/// The description a build uses: `IOMMU_SYSTEM_XML` and
/// `IOMMU_POLICY_XML` when set, else system.xml and iommu.xml in `root`
/// (for build scripts, which also tell cargo to watch them).
pub fn inputs(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let path = |var: &str, default: &str| {
        println!("cargo:rerun-if-env-changed={var}");
        let p = std::env::var_os(var).map_or_else(|| root.join(default), std::path::PathBuf::from);
        println!("cargo:rerun-if-changed={}", p.display());
        p
    };
    (
        path("IOMMU_SYSTEM_XML", "system.xml"),
        path("IOMMU_POLICY_XML", "iommu.xml"),
    )
}

/// [`load_str`] on files; I/O errors come back as text.
pub fn load(system: &Path, policy: &Path) -> Result<(System, Config), String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let name = |p: &Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    load_str(&name(system), &read(system)?, &name(policy), &read(policy)?)
        .map_err(|e| e.to_string())
}
