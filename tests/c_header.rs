//! pd-clients/include/iommu_client.h, the C client: compiled with the host
//! C compiler against a recording stand-in for libmicrokit's microkit.h
//! (tests/c/), its struct layouts and labels must be the Rust protocol's,
//! and the requests its functions send, replayed byte for byte into the
//! server core, must succeed and produce the replies the C program was
//! given. The server's client is this test's own: a driver with its buffer
//! at 0x3000_0000 and one device, as the C program assumes.

mod common;

use std::path::Path;
use std::process::Command;

use iommu_proto::fault::iommu_fault_record;
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::Op;

/// The C program's output; built and run once, as both tests read it (and
/// two builds writing one executable at once would race).
fn run_c_program() -> &'static str {
    static OUTPUT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OUTPUT.get_or_init(build_and_run)
}

fn build_and_run() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target/c-header-test");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join("header_test");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(root.join("pd-clients/include"))
        .arg("-I")
        .arg(root.join("tests/c"))
        .arg(root.join("tests/c/header_test.c"))
        .arg("-o")
        .arg(&exe)
        .status()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    assert!(status.success(), "iommu_client.h does not compile cleanly");
    let out = Command::new(&exe).output().expect("run the C program");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn c_layouts_and_labels_are_the_protocols() {
    let out = run_c_program();
    let value = |kind: &str, name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{kind} {name} ")))
            .unwrap_or_else(|| panic!("no `{kind} {name}` in:\n{out}"))
            .parse()
            .unwrap()
    };
    macro_rules! size {
        ($t:ident) => {
            assert_eq!(
                value("size", stringify!($t)),
                core::mem::size_of::<$t>() as u64,
                stringify!($t)
            );
        };
    }
    macro_rules! offset {
        ($t:ident, $f:ident) => {
            assert_eq!(
                value("offset", concat!(stringify!($t), ".", stringify!($f))),
                core::mem::offset_of!($t, $f) as u64,
                concat!(stringify!($t), ".", stringify!($f))
            );
        };
    }
    size!(iommu_destroy);
    size!(iommu_ioas_alloc);
    size!(iommu_ioas_map);
    size!(iommu_ioas_unmap);
    size!(iommu_hwpt_alloc);
    size!(vfio_device_bind_iommufd);
    size!(vfio_device_attach_iommufd_pt);
    size!(vfio_device_detach_iommufd_pt);
    size!(iommu_fault_record);
    offset!(iommu_ioas_map, user_va);
    offset!(iommu_ioas_map, iova);
    offset!(iommu_ioas_unmap, length);
    offset!(iommu_hwpt_alloc, data_uptr);
    offset!(iommu_hwpt_alloc, fault_id);
    offset!(vfio_device_bind_iommufd, token_uuid_ptr);
    offset!(iommu_fault_record, iova);
    offset!(iommu_fault_record, overflow);
    for (name, op) in [
        ("IOMMU_OP_DESTROY", Op::Destroy),
        ("IOMMU_OP_IOAS_ALLOC", Op::IoasAlloc),
        ("IOMMU_OP_IOAS_MAP", Op::IoasMap),
        ("IOMMU_OP_IOAS_UNMAP", Op::IoasUnmap),
        ("IOMMU_OP_HWPT_ALLOC", Op::HwptAlloc),
        ("IOMMU_OP_DEVICE_BIND", Op::VfioDeviceBindIommufd),
        ("IOMMU_OP_DEVICE_ATTACH", Op::VfioDeviceAttachIommufdPt),
        ("IOMMU_OP_DEVICE_DETACH", Op::VfioDeviceDetachIommufdPt),
        ("IOMMU_OP_FAULT_READ", Op::FaultRead),
        ("IOMMU_OP_RESET_CLIENT", Op::ResetClient),
        ("IOMMU_OP_QUARANTINE", Op::Quarantine),
    ] {
        assert_eq!(value("label", name), op.label(), "{name}");
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn c_requests_work_on_the_server() {
    let out = run_c_program();
    static REGIONS: [iommu_types::config::Region; 1] =
        [common::region(0x3000_0000, 0x10000, 0x6000_0000)];
    static DEVICES: [iommu_types::config::DeviceConfig; 1] = [common::device("dev", 0x8)];
    let driver = common::client("driver")
        .regions(&REGIONS)
        .devices(&DEVICES)
        .build();
    let mut rig = common::Rig::new(common::MockHw::new(), &[driver]);
    let server = &mut rig.server;
    let mut calls = 0;
    // (label, output offset, output width, value the C program was given)
    let canned = [
        (Op::VfioDeviceBindIommufd.label(), 12, 4, 256u64),
        (Op::IoasAlloc.label(), 8, 4, 257),
        (Op::VfioDeviceAttachIommufdPt.label(), 8, 4, 258),
        (Op::IoasMap.label(), 32, 8, 0x1000),
    ];
    for line in out.lines().filter_map(|l| l.strip_prefix("call ")) {
        let f: Vec<&str> = line.split(' ').collect();
        let (label, mr0, mr1): (u64, u64, u64) = (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        let mut page = vec![0u8; 4096];
        let req = hex(f[4].trim_end_matches('-'));
        page[..req.len()].copy_from_slice(&req);
        let reply = server.handle(common::id(0), label, [mr0, mr1], &mut page);
        assert_eq!(
            reply.errno(),
            None,
            "label {label:#x} from C refused: {line}"
        );
        if let Some(&(_, at, width, want)) = canned.iter().find(|c| c.0 == label) {
            let mut bytes = [0u8; 8];
            bytes[..width].copy_from_slice(&page[at..at + width]);
            assert_eq!(u64::from_le_bytes(bytes), want, "label {label:#x}'s output");
        }
        calls += 1;
    }
    assert_eq!(calls, 9);
    assert!(
        out.contains("results dev=256 ioas=257 hwpt=258 iova=0x1000 valid=0 err=0"),
        "{out}"
    );
    // The last call was the client closing itself: nothing is left.
    assert_eq!(server.object_count(common::id(0)), 0);
}
