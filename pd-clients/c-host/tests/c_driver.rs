//! The example C driver PD (pd-clients/pds/c-driver/) run on the host by
//! the `c-host` binary, as `make c-run` runs it: compiled against the
//! stand-in microkit.h and the headers generated for edu_a of the checker's
//! fixture system, its protected calls served by the server core.
//!
//! - It binds, attaches and maps as on seL4, and reports the DMA fault the
//!   harness has its device raise, its lines and the server's results in
//!   order; the same as C99 and as C11.
//! - A refusal reaches the driver with its errno's name (a DMA region
//!   mapped read-only into the PD cannot be mapped writeable for devices).
//! - A PD that cannot run as configured (a `setvar_vaddr` variable the
//!   program lacks, which the Microkit tool refuses too) is an error, not a
//!   run with the variable left 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    repository().join("tests/fixtures").join(name)
}

/// Runs c-host with `args` then `PD_DIR edu_a SYSTEM POLICY`, its output
/// under target/c-host-test/`out`.
fn c_host(out: &str, args: &[&str], pd_dir: &Path, system: &Path, policy: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_c-host"))
        .args(args)
        .arg("--out")
        .arg(repository().join("target/c-host-test").join(out))
        .arg(pd_dir)
        .arg("edu_a")
        .arg(system)
        .arg(policy)
        .output()
        .expect("run c-host")
}

fn lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn example() -> PathBuf {
    repository().join("pd-clients/pds/c-driver")
}

#[test]
fn the_example_c_driver_runs_against_the_server_core() {
    for std in ["c11", "c99"] {
        let output = c_host(
            &format!("example-{std}"),
            &["--std", std, "--fault", "0xdead000"],
            &example(),
            &fixture("system.xml"),
            &fixture("iommu.xml"),
        );
        assert!(
            output.status.success(),
            "{std}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let first = format!(
            "c-host: {} as `edu_a`: client 0 of the server core, on channel 0",
            example().display()
        );
        assert_eq!(
            lines(&output),
            [
                first.as_str(),
                "c-host: init",
                "c-host: VFIO_DEVICE_BIND_IOMMUFD: ok",
                "c-host: IOMMU_IOAS_ALLOC: ok",
                "c-host: VFIO_DEVICE_ATTACH_IOMMUFD_PT: ok",
                "c-host: IOMMU_IOAS_IOVA_RANGES: ok",
                "c-host: IOMMU_IOAS_MAP: ok",
                // The IOVA the server chose (page 0 is never handed out).
                "c_driver: buffer mapped at IOVA 0x0000000000001000",
                "c-host: device `edu_a` (stream 0x8) writes IOVA 0xdead000, which nothing maps: a fault",
                "c-host: notified 0",
                "c-host: IOMMU_FAULT_READ: ok",
                "c_driver: DMA fault, kind 0x0000000000000010 write at IOVA 0x000000000dead000",
                "c-host: 6 calls served, 0 refused",
            ],
            "{std}"
        );
    }
}

/// Writes the fixture system with `from` replaced by `to` in system.xml
/// into target/c-host-test/`name`; returns its system.xml and iommu.xml.
fn edited_fixture(name: &str, from: &str, to: &str) -> (PathBuf, PathBuf) {
    let dir = repository().join("target/c-host-test").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let system = std::fs::read_to_string(fixture("system.xml")).unwrap();
    let edited = system.replace(from, to);
    assert_ne!(system, edited, "`{from}` is not in the fixture");
    std::fs::write(dir.join("system.xml"), edited).unwrap();
    std::fs::copy(fixture("iommu.xml"), dir.join("iommu.xml")).unwrap();
    (dir.join("system.xml"), dir.join("iommu.xml"))
}

#[test]
fn a_refusal_reaches_the_c_driver_by_name() {
    let (system, policy) = edited_fixture(
        "read-only",
        r#"<map mr="edu_a_dma" vaddr="0x30000000" perms="rw""#,
        r#"<map mr="edu_a_dma" vaddr="0x30000000" perms="r""#,
    );
    let output = c_host("read-only/out", &[], &example(), &system, &policy);
    assert!(output.status.success());
    let lines = lines(&output);
    assert_eq!(
        lines[lines.len() - 3..],
        [
            "c-host: IOMMU_IOAS_MAP: EFAULT",
            "c_driver: FAILED - MAP of the DMA buffer's first page, for the device to read and write: EFAULT",
            "c-host: 5 calls served, 1 refused",
        ]
    );
}

#[test]
fn a_setvar_the_program_lacks_stops_the_run() {
    let dir = repository().join("target/c-host-test/no-setvar");
    let pd_dir = dir.join("src");
    std::fs::create_dir_all(&pd_dir).unwrap();
    std::fs::write(
        pd_dir.join("pd.c"),
        "#include <microkit.h>\n\
         void init(void) { microkit_dbg_puts(\"init ran\\n\"); }\n\
         void notified(microkit_channel ch) { (void)ch; }\n",
    )
    .unwrap();
    let output = c_host(
        "no-setvar/out",
        &[],
        &pd_dir,
        &fixture("system.xml"),
        &fixture("iommu.xml"),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "c-host: error: setvar_vaddr without its variable in the program: command_page"
        ),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("init ran"));
}
