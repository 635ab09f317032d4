//! The IOMMU server in an sdfgen system description (sdf/iommu_sdf.py):
//! its own tests pass, and sdf/example.py, which builds the shipped
//! example with it, writes a pair that configures the server exactly as
//! the shipped pair does (the same generated configuration, byte for
//! byte). Needs Python 3 with sdfgen (`pip install sdfgen`): CI installs
//! it and names the interpreter in `SDFGEN_PYTHON`; elsewhere the test is
//! skipped, saying so.

#[path = "support/tools.rs"]
mod tools;

use std::path::Path;
use std::process::Command;

fn python() -> Option<String> {
    let python = std::env::var("SDFGEN_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import sdfgen"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(python)
    } else {
        tools::missing(
            "Python 3 with sdfgen (pip install sdfgen; SDFGEN_PYTHON names the interpreter)",
        );
        None
    }
}

fn generated(system: &Path, policy: &Path) -> String {
    let (_, config) = sysgen::load(system, policy)
        .unwrap_or_else(|e| panic!("{} / {}: {e}", system.display(), policy.display()));
    sysgen::gen::rust(&config, &["system.xml", "iommu.xml"])
}

#[test]
fn the_module_builds_the_shipped_example() {
    let Some(python) = python() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests = Command::new(&python)
        .args(["-m", "unittest", "discover", "-s", "sdf", "-p", "test_*.py"])
        .current_dir(root)
        .output()
        .expect("run python");
    assert!(
        tests.status.success(),
        "the module's tests failed:\n{}",
        String::from_utf8_lossy(&tests.stderr)
    );
    let out = root.join("target/sdfgen-example");
    let status = Command::new(&python)
        .arg("sdf/example.py")
        .arg(&out)
        .current_dir(root)
        .status()
        .expect("run sdf/example.py");
    assert!(status.success(), "sdf/example.py failed");
    assert_eq!(
        generated(&out.join("system.xml"), &out.join("iommu.xml")),
        generated(&root.join("system.xml"), &root.join("iommu.xml")),
        "the sdfgen pair configures the server differently"
    );
}
