//! The bare-metal images, the PDs and the fuzz target are workspaces of
//! their own (each builds for its own target with its own profile), so
//! each has a lockfile. They must not drift: every crates.io package a
//! sub-workspace locks is locked at a version the root workspace locks
//! too, so a dependency is reviewed and updated once (`cargo update` in
//! the root, then `cargo update -p NAME --precise VERSION` in the others).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const WORKSPACES: &[&str] = &[
    "demo",
    "fuzz",
    "hw-qemu-test",
    "iommu-server/iommu-server-pd",
    "pd-clients/pds",
];

/// The crates.io packages of a lockfile: name to versions.
fn registry_packages(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(dir)
        .join("Cargo.lock");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut packages = BTreeMap::<String, BTreeSet<String>>::new();
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|line| {
                line.strip_prefix(key)
                    .and_then(|rest| rest.trim().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        let registry = field("source").is_some_and(|s| s.starts_with("registry+"));
        if let (true, Some(name), Some(version)) = (registry, field("name"), field("version")) {
            packages.entry(name).or_default().insert(version);
        }
    }
    packages
}

#[test]
fn every_workspace_locks_the_roots_versions() {
    let root = registry_packages(".");
    let mut drift = Vec::new();
    for dir in WORKSPACES {
        for (name, versions) in registry_packages(dir) {
            let Some(locked) = root.get(&name) else {
                // Used only there (libFuzzer's crates): nothing to agree with.
                continue;
            };
            for v in versions.difference(locked) {
                drift.push(format!(
                    "{dir}/Cargo.lock: {name} {v}, the root locks {locked:?}"
                ));
            }
        }
    }
    assert!(drift.is_empty(), "lockfiles drift:\n{}", drift.join("\n"));
}
