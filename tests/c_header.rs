//! The C client: `iommu_proto.h`, generated from the protocol crate, and
//! `pd-clients/iommu-client/include/iommu_client.h` over it.
//!
//! - The generated header is complete (every operation label, wire struct
//!   and protocol constant) and checks its own layouts: compiled with the
//!   host compiler, every struct size and field offset the Rust crate
//!   computed is a static assertion, in C99 as in C11: both headers compile
//!   without a warning as either, freestanding (where no libc header
//!   hides C99's lack of `_Static_assert`).
//! - `iommu_strerror` names every errno of the protocol, and only those.
//! - Every function of iommu_client.h works against the real server: a C
//!   program (tests/c/) calls each one through a stand-in microkit.h whose
//!   protected calls this test serves, live, with the server core, and the
//!   results are what the server's semantics give.
//! - The example C driver PD (pd-clients/pds/c-driver/), with its generated
//!   per-PD `iommu_config.h`, compiles for aarch64 against the freestanding
//!   stand-in for libmicrokit (pd-clients/c-host/standin/), and against the
//!   SDK's libmicrokit into a PD image when `MICROKIT_SDK` is set. (c-host's
//!   own tests run it on the host against the server core.)

mod common;

use iommu_testkit::tools;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use iommu_proto::Op;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Writes the generated header into `dir/include` and returns that.
fn generated_include(dir: &Path) -> PathBuf {
    let include = dir.join("include");
    std::fs::create_dir_all(&include).unwrap();
    let mut header = String::new();
    iommu_proto::c::header(&mut header).unwrap();
    std::fs::write(include.join("iommu_proto.h"), header).unwrap();
    include
}

#[test]
fn the_generated_header_names_the_whole_protocol() {
    let mut header = String::new();
    iommu_proto::c::header(&mut header).unwrap();
    for op in Op::ALL {
        let mut name = String::new();
        iommu_proto::c::label_name(op, &mut name).unwrap();
        assert!(
            header.contains(&format!("#define {name} {:#x}\n", op.label())),
            "{name}"
        );
    }
    // Every wire struct and every constant the protocol sources declare.
    for file in [
        "iommu-proto/src/iommufd.rs",
        "iommu-proto/src/vfio.rs",
        "iommu-proto/src/fault.rs",
        "iommu-proto/src/dump.rs",
        "iommu-types/src/fault.rs",
    ] {
        let src = std::fs::read_to_string(root().join(file)).unwrap();
        for line in src.lines().map(str::trim) {
            // iommu-types/ holds the server's own types besides the constants.
            let wire = file.starts_with("iommu-proto/");
            if let Some(rest) = line.strip_prefix("pub struct ").filter(|_| wire) {
                let name = rest.split([' ', '{']).next().unwrap();
                assert!(
                    header.contains(&format!("struct {name} {{")),
                    "{file}: struct {name} is not in the header"
                );
            }
            if let Some(rest) = line
                .strip_prefix("pub const ")
                .filter(|r| !r.starts_with("fn "))
            {
                let name = rest.split(':').next().unwrap();
                assert!(
                    header.contains(&format!("#define {name} ")),
                    "{file}: {name} is not in the header"
                );
            }
        }
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn host_cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// Builds tests/c/header_test.c as C `std` and runs it, serving its calls
/// with a server whose one client is the C program; returns its lines.
fn run_the_c_program(std: &str) -> Vec<String> {
    let dir = root().join("target/c-header-test").join(std);
    let include = generated_include(&dir);
    let exe = dir.join("header_test");
    let cc = host_cc();
    let status = Command::new(&cc)
        .arg(format!("-std={std}"))
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(&include)
        .arg("-I")
        .arg(root().join("pd-clients/iommu-client/include"))
        .arg("-I")
        .arg(root().join("tests/c"))
        .arg(root().join("tests/c/header_test.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    assert!(
        status.success(),
        "the headers do not compile cleanly (or a layout assertion failed)"
    );
    let mut child = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the C program");
    let mut to_c = child.stdin.take().unwrap();
    let mut from_c = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    from_c.read_line(&mut line).unwrap();
    let page_va = u64::from_str_radix(
        line.trim()
            .strip_prefix("page 0x")
            .unwrap_or_else(|| panic!("no page address: {line}")),
        16,
    )
    .unwrap();

    static REGIONS: [iommu_types::config::Region; 1] =
        [common::region(0x3000_0000, 0x10000, 0x6000_0000)];
    static DEVICES: [iommu_types::config::DeviceConfig; 1] = [common::device("dev", 0x8)];
    let c_client = common::client("c_driver")
        .command_page(page_va)
        .regions(&REGIONS)
        .devices(&DEVICES)
        .manager(true)
        .build();
    let mut rig = common::Rig::new(common::MockHw::new(), &[c_client]);
    let mut checks = Vec::new();
    loop {
        line.clear();
        if from_c.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(call) = line.trim().strip_prefix("call ") {
            let f: Vec<&str> = call.split(' ').collect();
            let label: u64 = f[1].parse().unwrap();
            let mrs = [f[2].parse().unwrap(), f[3].parse().unwrap()];
            let mut page = hex(f[4]);
            assert_eq!(page.len(), 4096);
            let reply = rig.server.handle(common::id(0), label, mrs, &mut page);
            let text: String = page.iter().map(|b| format!("{b:02x}")).collect();
            writeln!(to_c, "reply {} {} {text}", reply.label, reply.mr0).unwrap();
            to_c.flush().unwrap();
        } else {
            checks.push(line.trim().to_string());
        }
    }
    assert!(child.wait().unwrap().success(), "the C program failed");
    // The last call closed the client: nothing is left.
    assert_eq!(rig.server.object_count(common::id(0)), 0);
    checks
}

fn every_c_call_works_on_the_server_as(std: &str) {
    let lines = run_the_c_program(std);
    let checks: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("check "))
        .collect();
    let expected = [
        "check bind err=0 dev=256",
        "check ioas_alloc err=0 ioas=257",
        // The whole IOVA space is one range: no room for it says so.
        "check iova_ranges_sizing err=90 num=1",
        // No domain yet: byte alignment, as Linux.
        "check iova_ranges err=0 num=1 start=0 last=0xffffffffffffffff align=1",
        "check attach err=0 hwpt=258",
        "check iova_ranges_attached err=0 align=4096",
        "check allow_iovas err=0 -",
        // Automatic IOVAs come from the allowed range.
        "check map err=0 iova=0x100000",
        "check map_fixed err=0 iova=0x180000",
        "check ioas_alloc_2 err=0 ioas=259",
        "check copy err=0 iova=0x1000",
        "check option_get err=0 huge=1",
        "check option_set err=0 -",
        "check option_get_again err=0 huge=0",
        "check hwpt_alloc err=0 hwpt=260",
        "check hw_info err=0 len=40 type=2 caps=0",
        "check unmap err=0 length=0x1000",
        "check unmap_all err=0 length=0x2000",
        "check read_fault err=0 valid=0 remaining=0",
        "check fault_resume err=0 -",
        "check fault_resume_nodev err=19 -",
        "check vfio_api_version err=0 version=0",
        "check vfio_check_extension err=0 present=1",
        "check vfio_ioas_set err=0 -",
        "check vfio_ioas_get err=0 same=1",
        "check vfio_set_iommu err=0 -",
        "check vfio_map_dma err=0 -",
        // Linux chains DMA_AVAIL first, then IOVA_RANGE.
        "check vfio_get_info err=0 pgsizes=1 caps=1 first_cap=3",
        "check vfio_unmap_dma err=0 size=0x1000",
        "check dump err=0 got=63 more=1 head=server:",
        // No client 7: nothing to hold.
        "check quarantine_nobody err=22 EINVAL",
        "check detach err=0 -",
        "check destroy_hwpt err=0 -",
        "check destroy err=0 -",
        "check destroy_again err=2 ENOENT",
        "check reset_self err=0 -",
    ];
    assert_eq!(checks, expected);

    // iommu_strerror names exactly the protocol's errnos, each by its name.
    let named: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("strerror"))
        .collect();
    let mut errnos = iommu_proto::Errno::ALL.to_vec();
    errnos.sort_by_key(|e| e.code());
    let mut expected: Vec<String> = errnos
        .iter()
        .map(|e| format!("strerror {} {}", e.code(), e.name()))
        .collect();
    expected.push("strerror_unknown unknown unknown unknown".into());
    assert_eq!(named, expected);
}

#[test]
fn every_c_call_works_on_the_server() {
    every_c_call_works_on_the_server_as("c11");
}

/// The same program as C99: the headers need nothing C11 has.
#[test]
fn every_c_call_works_on_the_server_in_c99() {
    every_c_call_works_on_the_server_as("c99");
}

/// Compiles `driver.c` against the stand-in microkit.h with `cc` and
/// `flags`, into `object`; `Err` holds the compiler's messages.
fn compile_the_c_driver(
    cc: &str,
    flags: &[&str],
    include: &Path,
    object: &Path,
) -> Result<(), String> {
    let driver = root().join("pd-clients/pds/c-driver");
    let output = Command::new(cc)
        .args(flags)
        .arg("-I")
        .arg(include)
        .arg("-I")
        .arg(root().join("pd-clients/iommu-client/include"))
        .arg("-I")
        .arg(root().join("pd-clients/c-host/standin"))
        .arg("-c")
        .arg(driver.join("driver.c"))
        .arg("-o")
        .arg(object)
        .output()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    let messages = String::from_utf8_lossy(&output.stderr).into_owned();
    match (output.status.success(), messages.is_empty()) {
        (true, true) => Ok(()),
        _ => Err(messages),
    }
}

/// Writes the example driver's `iommu_config.h`, as for edu_a of the
/// checker's fixture system, beside the generated protocol header.
fn driver_include(dir: &Path) -> PathBuf {
    let include = generated_include(dir);
    let (_, config) = sysgen::load(
        &root().join("tests/fixtures/system.xml"),
        &root().join("tests/fixtures/iommu.xml"),
    )
    .unwrap();
    std::fs::write(
        include.join("iommu_config.h"),
        sysgen::gen::c_config(&config, "edu_a").unwrap(),
    )
    .unwrap();
    include
}

/// Freestanding, no libc header is there to define `_Static_assert` for
/// C99 (glibc's sys/cdefs.h does): the headers' own static assertions are
/// what is compiled, and they are clean as C99 and as C11.
#[test]
fn the_headers_are_c99_and_c11() {
    let dir = root().join("target/c-standards-test");
    let include = driver_include(&dir);
    for std in ["c99", "c11"] {
        let standard = format!("-std={std}");
        let flags = [
            standard.as_str(),
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-ffreestanding",
        ];
        if let Err(messages) =
            compile_the_c_driver(&host_cc(), &flags, &include, &dir.join(format!("{std}.o")))
        {
            panic!("the headers do not compile cleanly as {std}:\n{messages}");
        }
    }
    // A failing assertion stops the build in either standard.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let header = std::fs::read_to_string(include.join("iommu_proto.h")).unwrap();
    let wrong = header.replace(
        "IOMMU_STATIC_ASSERT(sizeof(struct iommu_destroy) == 8,",
        "IOMMU_STATIC_ASSERT(sizeof(struct iommu_destroy) == 9,",
    );
    assert_ne!(header, wrong);
    std::fs::write(broken.join("iommu_proto.h"), wrong).unwrap();
    std::fs::copy(
        include.join("iommu_config.h"),
        broken.join("iommu_config.h"),
    )
    .unwrap();
    for std in ["c99", "c11"] {
        let flag = format!("-std={std}");
        let refused = compile_the_c_driver(
            &host_cc(),
            &[&flag, "-ffreestanding"],
            &broken,
            &dir.join("broken.o"),
        )
        .expect_err("a wrong layout compiles");
        assert!(
            refused.contains("iommu_destroy_size"),
            "the error does not name the assertion ({std}):\n{refused}"
        );
    }
}

/// An aarch64 C compiler: `CC_AARCH64`, else the Debian cross compiler.
fn aarch64_cc() -> Option<String> {
    let cc = std::env::var("CC_AARCH64").unwrap_or_else(|_| "aarch64-linux-gnu-gcc".into());
    if tools::runs(&cc) {
        Some(cc)
    } else {
        tools::missing(&format!(
            "an aarch64 C compiler ({cc}: apt-get install gcc-aarch64-linux-gnu)"
        ));
        None
    }
}

#[test]
fn the_c_driver_pd_compiles_for_aarch64() {
    let Some(cc) = aarch64_cc() else {
        return;
    };
    let dir = root().join("target/c-driver-test");
    let include = driver_include(&dir);
    let driver = root().join("pd-clients/pds/c-driver");
    let flags = [
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-ffreestanding",
        "-nostdlib",
        "-O2",
        "-mstrict-align",
    ];
    let object = dir.join("driver.o");
    if let Err(messages) = compile_the_c_driver(&cc, &flags, &include, &object) {
        panic!("the C driver PD does not compile for aarch64:\n{messages}");
    }
    assert!(std::fs::metadata(&object).unwrap().len() > 0);

    // With an SDK: the same source against its libmicrokit, linked into a
    // PD image as the Microkit tool takes it.
    let (Ok(sdk), board, config) = (
        std::env::var("MICROKIT_SDK"),
        std::env::var("MICROKIT_BOARD").unwrap_or_else(|_| "qemu_virt_aarch64".into()),
        std::env::var("MICROKIT_CONFIG").unwrap_or_else(|_| "debug".into()),
    ) else {
        eprintln!("MICROKIT_SDK is not set: the C driver is compiled, not linked");
        return;
    };
    let board_dir = Path::new(&sdk).join("board").join(board).join(config);
    let image = dir.join("c_driver.elf");
    // The SDK's seL4 headers are GNU C (register asm, 64-bit enumerators).
    let status = Command::new(&cc)
        .args(
            flags
                .iter()
                .filter(|f| !["-pedantic", "-std=c11"].contains(f)),
        )
        .arg("-std=gnu11")
        .arg("-I")
        .arg(&include)
        .arg("-I")
        .arg(root().join("pd-clients/iommu-client/include"))
        .arg("-I")
        .arg(board_dir.join("include"))
        .arg(driver.join("driver.c"))
        .arg("-L")
        .arg(board_dir.join("lib"))
        .args(["-lmicrokit", "-Tmicrokit.ld", "-static"])
        .arg("-o")
        .arg(&image)
        .status()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    assert!(
        status.success(),
        "the C driver PD does not link against the SDK"
    );
}
