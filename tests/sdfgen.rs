//! The IOMMU server in an sdfgen system description (sdf/iommu_sdf.py):
//! its own tests pass, and sdf/example.py, which builds the shipped
//! example with it, writes a pair that configures the server exactly as
//! the shipped pair does (the same generated configuration, byte for
//! byte). Needs Python 3 with sdfgen (`pip install sdfgen`): CI installs
//! it and names the interpreter in `SDFGEN_PYTHON`; elsewhere the test is
//! skipped, saying so.

use iommu_testkit::tools;

use std::path::Path;
use std::process::Command;

fn python() -> Option<String> {
    let python = std::env::var("SDFGEN_PYTHON").unwrap_or_else(|_| {
        // The venv `make setup` makes, when there is one.
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sdfgen-venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
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

/// The server's configuration and the QEMU devices a pair gives.
fn generated(system: &Path, policy: &Path) -> (String, Vec<String>) {
    let (_, config) = sysgen::load(system, policy)
        .unwrap_or_else(|e| panic!("{} / {}: {e}", system.display(), policy.display()));
    (
        sysgen::gen::rust(&config, &["system.xml", "iommu.xml"]),
        sysgen::qemu_devices(&config),
    )
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

/// A user's own system: three drivers, generated with the module, checked,
/// built into PD images and booted in the bare-metal demo, where every
/// driver is exercised (the configuration, not the example, decides the
/// QEMU devices and the demo's clients).
#[test]
fn a_three_driver_system_is_generated_built_and_run() {
    let Some(python) = python() else {
        return;
    };
    if !tools::have_all(&[
        ("qemu-system-aarch64", "apt-get install qemu-system-arm"),
        ("make", "apt-get install make"),
    ]) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/sdfgen-three");
    let status = Command::new(&python)
        .args(["sdf/example.py", "--drivers", "3"])
        .arg(&dir)
        .current_dir(root)
        .status()
        .expect("run sdf/example.py");
    assert!(status.success(), "sdf/example.py --drivers 3 failed");
    let (system, policy) = (dir.join("system.xml"), dir.join("iommu.xml"));
    let (sdf, config) = sysgen::load(&system, &policy).expect("the generated pair checks");
    // Three edu drivers, the NVMe driver and the manager.
    assert_eq!(config.clients.len(), 5);
    assert_eq!(
        sysgen::qemu_devices(&config).len(),
        8,
        "four -device arguments"
    );

    let make = |target: &str, extra: &[String]| {
        let mut make = Command::new("make");
        make.arg(target)
            .arg(format!("SYSTEM_XML={}", system.display()))
            .arg(format!("IOMMU_XML={}", policy.display()))
            .args(extra)
            .current_dir(root)
            .env_remove("MICROKIT_SDK")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        let (status, out) = tools::run_with_timeout(make, std::time::Duration::from_secs(900));
        assert_eq!(status, Some(0), "make {target}:\n{out}");
        out
    };
    let build = dir.join("build");
    make(
        "pds",
        &[
            format!("BUILD={}", build.display()),
            format!("PD_TARGET_DIR={}", dir.join("pds").display()),
        ],
    );
    for pd in &sdf.pds {
        let image = build.join(pd.program_image.as_deref().expect("an image"));
        assert!(image.is_file(), "{}: no {}", pd.name, image.display());
    }

    let out = make(
        "run",
        &[format!("DEMO_TARGET_DIR={}", dir.join("demo").display())],
    );
    for line in [
        "5 clients from system.xml + iommu.xml",
        "demo: 3 drivers (edu_a crashes and is restarted, edu_c is reset), manager supervises",
        "edu_c: edu at stream 0x18",
        "ok - edu_a: DMA through its mappings",
        "ok - edu_b: DMA through its mappings",
        "ok - edu_c: DMA through its mappings",
        "ok - edu_b: stray DMA faulted and reported to it alone",
        "ok - manager: resets edu_c",
        "ok - edu_a: restarted: binds, maps and does DMA again",
        "ok - edu_b: still works at the end",
        // And the NVMe driver, placed after them.
        "blk_static: ok - write to block 4096, another client's, refused (ERR_BLOCKS)",
        "ok - nvme_driver: restarted: every request its previous life took is answered with an error",
        "ok - blk_strict: strict: refused another's blocks; an error for each request its driver died with; then writes, reads back and verifies through nvme_driver",
        // The storm: the reset driver storms, the crashed one strays once.
        "ok - edu_a: its one stray DMA during edu_c's storm is reported to it exactly, nothing lost",
        "demo: 34 passed, 0 failed",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}
