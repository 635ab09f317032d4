//! The IOMMU server in an sdfgen system description (the iommu_sdf
//! package, sdf/): its own tests pass, sdf/example.py, which builds the
//! shipped example with it, writes a pair that configures the server
//! exactly as the shipped pair does (the same generated configuration,
//! byte for byte), and a driver added with the package's API as docs/guide.md
//! shows runs in the demo. Needs Python 3 with sdfgen and the package
//! (`make sdfgen-venv`): `make test` makes that venv and names its
//! interpreter in `SDFGEN_PYTHON`; elsewhere the tests are skipped, saying
//! so.

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
            "Python 3 with sdfgen (make sdfgen-venv; SDFGEN_PYTHON names the interpreter)",
        );
        None
    }
}

/// `python`, run isolated (`-I`: neither the script's directory nor
/// PYTHONPATH on its path) in `dir`: what it imports is installed.
fn isolated(python: &str, dir: &Path) -> Command {
    let mut command = Command::new(python);
    command.arg("-I").current_dir(dir);
    command
}

/// The server's configuration, the QEMU devices and the virtual machines
/// a pair gives, without where each element stands in its file: two pairs
/// written differently configure the same system.
fn generated(system: &Path, policy: &Path) -> (String, Vec<String>, Vec<String>) {
    let (sdf, mut config) = sysgen::load(system, policy)
        .unwrap_or_else(|e| panic!("{} / {}: {e}", system.display(), policy.display()));
    let nowhere = |o: &mut sysgen::model::Origin| o.line = 0;
    for c in &mut config.clients {
        nowhere(&mut c.origin);
        nowhere(&mut c.quota_origin);
        c.device_origins.iter_mut().for_each(nowhere);
        for r in &mut c.regions {
            nowhere(&mut r.origin);
            nowhere(&mut r.memory_region);
            nowhere(&mut r.map);
        }
    }
    for m in &mut config.maps {
        nowhere(&mut m.origin);
        nowhere(&mut m.memory_region);
    }
    (
        sysgen::gen::rust(&config, &["system.xml", "iommu.xml"]),
        sysgen::qemu_devices(&config),
        virtual_machines(&sdf),
    )
}

/// Each PD's `<virtual_machine>`, every attribute the tool reads: its
/// name, scheduling, vCPUs and guest-physical maps.
fn virtual_machines(sdf: &sysgen::sdf::System) -> Vec<String> {
    sdf.pds
        .iter()
        .filter_map(|pd| Some((pd, pd.virtual_machine.as_ref()?)))
        .map(|(pd, vm)| {
            let vcpus: Vec<_> = vm.vcpus.iter().map(|v| v.id).collect();
            let maps: Vec<_> = vm
                .maps
                .iter()
                .map(|m| {
                    format!(
                        "{} at {:#x} {}{} cached {}",
                        m.mr,
                        m.vaddr,
                        if m.read { "r" } else { "-" },
                        if m.write { "w" } else { "-" },
                        m.cached
                    )
                })
                .collect();
            format!(
                "{}: {} priority {} budget {} period {} vcpus {vcpus:?} maps {maps:?}",
                pd.name, vm.name, vm.priority, vm.budget, vm.period
            )
        })
        .collect()
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
    let shipped = generated(&root.join("system.xml"), &root.join("iommu.xml"));
    assert_eq!(
        shipped.2,
        ["vmm: edu_guest priority 105 budget 1000 period 1000 vcpus [0] maps [\"guest_ram at 0x40000000 rw cached true\", \"guest_edu_bar at 0x10000000 rw cached false\"]"],
        "the shipped guest"
    );
    assert_eq!(
        generated(&out.join("system.xml"), &out.join("iommu.xml")),
        shipped,
        "the sdfgen pair configures the server, or its guest, differently"
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
    // Three edu drivers, the NVMe driver, the manager and the VMM.
    assert_eq!(config.clients.len(), 6);
    assert_eq!(
        sysgen::qemu_devices(&config).len(),
        14,
        "seven -device arguments: five clients' devices and two static devices"
    );
    // The static drivers follow the dynamic ones.
    let spaces: Vec<_> = config
        .static_spaces
        .iter()
        .map(|s| (s.name.as_str(), s.stream_id.0))
        .collect();
    assert_eq!(spaces, [("edu_d_space", 0x28), ("edu_e_space", 0x30)]);

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
        "6 clients from system.xml + iommu.xml",
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
        // And the drivers under static IO address spaces, after them.
        "ok - edu_d: released: DMA works again, still no server call",
        "ok - edu_d: restarted under my static IO address space: DMA works, no server call",
        "ok - edu_e: DMA with no IOMMU client, confined by system.xml alone",
        "ok - manager: the server told me of the fault on edu_e_space",
        "demo: 54 passed, 0 failed",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}

/// The guide's walk-through as a user runs it: its script, taken from
/// docs/guide.md, run by the venv's Python outside sdf/ and isolated, so the
/// package is imported as installed; it adds a driver of its own in one
/// call, and the pair it writes checks, places the driver as the PDs and
/// the demo expect, and runs in the demo, where that driver is exercised.
#[test]
fn the_readme_walk_through_adds_a_driver_that_runs_in_the_demo() {
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
    let dir = root.join("target/sdfgen-walk-through");
    std::fs::create_dir_all(&dir).unwrap();
    let installed = isolated(&python, &dir)
        .args(["-c", "import iommu_sdf"])
        .output()
        .expect("run python");
    if !installed.status.success()
        && tools::missing("the iommu_sdf package in the sdfgen venv (make sdfgen-venv)")
    {
        return;
    }
    let readme = std::fs::read_to_string(root.join("docs/guide.md")).unwrap();
    let section = &readme[readme
        .find("## Your own system, with sdfgen")
        .expect("the guide's sdfgen section")..];
    let script = section
        .split_once("```python\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a Python block in the guide's sdfgen section")
        .0;
    assert!(
        script.contains("from iommu_sdf import") && !script.contains("sys.path"),
        "the walk-through imports the package as installed:\n{script}"
    );
    std::fs::write(dir.join("my_system.py"), script).unwrap();
    let out = isolated(&python, &dir)
        .arg("my_system.py")
        .output()
        .expect("run my_system.py");
    assert!(
        out.status.success(),
        "the walk-through failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (system, policy) = (
        dir.join("my-system/system.xml"),
        dir.join("my-system/iommu.xml"),
    );
    let (sdf, config) = sysgen::load(&system, &policy).expect("the walk-through's pair checks");
    let clients: Vec<_> = config.clients.iter().map(|c| c.pd.as_str()).collect();
    assert_eq!(clients, ["edu_a", "edu_b", "camera", "manager"]);
    // The added driver, as the PDs and the demo expect it: a child of the
    // manager, its device at 00:07.0, BAR0 in client 2's window, its
    // setvars, and the manager's channel to it.
    let camera = &config.clients[2];
    assert_eq!(
        camera.child_of.as_ref().map(|o| (o.parent.as_str(), o.id)),
        Some(("manager", 2))
    );
    assert_eq!(camera.program_image, "edu_driver.elf");
    assert_eq!(camera.devices[0].stream_id.0, 0x38);
    assert_eq!(sdf.mr("camera_bar").unwrap().phys_addr, Some(0x1020_0000));
    assert_eq!(
        sdf.mr("camera_config").unwrap().phys_addr,
        Some(0x40_1003_8000)
    );
    let setvars: Vec<_> = config
        .maps
        .iter()
        .filter(|m| m.pd == "camera")
        .map(|m| (m.mr.as_str(), m.setvar_vaddr.as_deref()))
        .collect();
    assert_eq!(
        setvars,
        [
            ("camera_command", Some("command_page")),
            ("camera_config", Some("pci_config")),
            ("camera_bar", Some("edu_regs")),
            ("camera_dma", Some("dma_buffer")),
        ]
    );
    assert!(config
        .channels
        .iter()
        .any(|(pd, peer, _)| pd == "camera" && peer == "manager"));
    assert!(
        sysgen::qemu_devices(&config)
            .iter()
            .any(|a| a.ends_with("addr=07.0")),
        "camera's QEMU device at 00:07.0"
    );

    let mut make = Command::new("make");
    make.arg("run")
        .arg(format!("SYSTEM_XML={}", system.display()))
        .arg(format!("IOMMU_XML={}", policy.display()))
        .arg(format!("DEMO_TARGET_DIR={}", dir.join("demo").display()))
        .current_dir(root)
        .env_remove("MICROKIT_SDK")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let (status, out) = tools::run_with_timeout(make, std::time::Duration::from_secs(900));
    assert_eq!(status, Some(0), "make run:\n{out}");
    for line in [
        "4 clients from system.xml + iommu.xml",
        "demo: 3 drivers (edu_a crashes and is restarted, camera is reset), manager supervises",
        "camera: edu at stream 0x38, BAR0 0x10200000",
        "ok - camera: finds its edu device in its configuration page",
        "ok - camera: DMA through its mappings",
        "ok - camera: stray DMA faulted and reported to it alone",
        "ok - camera: cannot bind edu_a's device, map edu_a's memory or reset edu_a",
        "ok - manager: resets camera",
        "ok - camera: device can no longer reach memory",
        "ok - edu_a: restarted: binds, maps and does DMA again",
        "ok - edu_a: its one stray DMA during camera's storm is reported to it exactly, nothing lost",
        "demo: 25 passed, 0 failed",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}
