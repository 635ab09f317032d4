//! An operation is whole only with every part: its label in `Op` (and
//! `Op::ALL`), its request struct and handler in the server's op table
//! (`iommu-server/tests/ops.rs` drives every op of `Op::ALL` to its own handler), a
//! method of the Rust client library, a function of the C client, and a
//! test of each client. This test fails when an op lacks any of them; the
//! checklist is in `iommu_proto::Op`'s documentation.

use std::collections::BTreeSet;
use std::path::Path;

use iommu_proto::Op;

/// Each op: the Rust client's method(s) and the C client's function(s).
const PARTS: &[(Op, &[&str], &[&str])] = &[
    (
        Op::Destroy,
        &["destroy_ioas", "destroy_hwpt", "unbind"],
        &["iommu_destroy"],
    ),
    (Op::IoasAlloc, &["ioas_alloc"], &["iommu_ioas_alloc"]),
    (Op::IoasAllowIovas, &["allow_iovas"], &["iommu_allow_iovas"]),
    (Op::IoasCopy, &["copy"], &["iommu_copy"]),
    (Op::IoasIovaRanges, &["iova_ranges"], &["iommu_iova_ranges"]),
    (Op::IoasMap, &["map"], &["iommu_map"]),
    (Op::IoasUnmap, &["unmap", "unmap_range"], &["iommu_unmap"]),
    (
        Op::Option,
        &["option_get", "option_set"],
        &["iommu_option_get", "iommu_option_set"],
    ),
    (Op::VfioIoas, &["vfio_ioas"], &["iommu_vfio_ioas"]),
    (Op::HwptAlloc, &["hwpt_alloc"], &["iommu_hwpt_alloc"]),
    (Op::GetHwInfo, &["hw_info"], &["iommu_get_hw_info"]),
    (
        Op::VfioGetApiVersion,
        &["vfio_get_api_version"],
        &["vfio_get_api_version"],
    ),
    (
        Op::VfioCheckExtension,
        &["vfio_check_extension"],
        &["vfio_check_extension"],
    ),
    (Op::VfioSetIommu, &["vfio_set_iommu"], &["vfio_set_iommu"]),
    (
        Op::VfioIommuGetInfo,
        &["vfio_iommu_get_info"],
        &["vfio_iommu_get_info"],
    ),
    (Op::VfioIommuMapDma, &["vfio_map_dma"], &["vfio_map_dma"]),
    (
        Op::VfioIommuUnmapDma,
        &["vfio_unmap_dma"],
        &["vfio_unmap_dma"],
    ),
    (Op::VfioDeviceBindIommufd, &["bind"], &["iommu_bind"]),
    (
        Op::VfioDeviceAttachIommufdPt,
        &["attach", "attach_hwpt", "attach_compat"],
        &["iommu_attach"],
    ),
    (
        Op::VfioDeviceDetachIommufdPt,
        &["detach"],
        &["iommu_detach"],
    ),
    (Op::FaultRead, &["read_fault"], &["iommu_read_fault"]),
    (Op::ResetClient, &["reset"], &["iommu_reset_client"]),
    (Op::Quarantine, &["hold", "release"], &["iommu_quarantine"]),
    (Op::Dump, &["dump"], &["iommu_dump"]),
    (Op::FaultResume, &["resume_faults"], &["iommu_fault_resume"]),
];

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The body of the C function `name` in `header` (to its closing brace at
/// the start of a line).
fn c_body<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    let start = header.find(&format!("static inline int {name}("))?;
    let len = header[start..].find("\n}")?;
    Some(&header[start..start + len])
}

/// Whether `text` has `word` with no identifier character either side.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word)
        .any(|(at, _)| !text[..at].ends_with(ident) && !text[at + word.len()..].starts_with(ident))
}

#[test]
fn every_op_has_every_part() {
    let listed: BTreeSet<Op> = PARTS.iter().map(|&(op, _, _)| op).collect();
    let all: BTreeSet<Op> = Op::ALL.into_iter().collect();
    assert_eq!(listed, all, "PARTS lists exactly Op::ALL, each op once");
    assert_eq!(listed.len(), PARTS.len(), "an op listed twice");

    let client = read("pd-clients/iommu-client/src/lib.rs");
    let header = read("pd-clients/iommu-client/include/iommu_client.h");
    let client_tests = read("tests/client.rs");
    let c_tests = read("tests/c/header_test.c");
    let mut missing = Vec::new();
    for &(op, methods, functions) in PARTS {
        for m in methods {
            let declared = ["(", "<"]
                .iter()
                .any(|next| client.contains(&format!("pub fn {m}{next}")));
            if !declared {
                missing.push(format!("{op:?}: Rust client method `{m}`"));
            }
            if !client_tests.contains(&format!(".{m}(")) {
                missing.push(format!("{op:?}: tests/client.rs never calls `{m}`"));
            }
        }
        let mut label = String::new();
        iommu_proto::c::label_name(op, &mut label).unwrap();
        for f in functions {
            match c_body(&header, f) {
                None => missing.push(format!("{op:?}: C function `{f}`")),
                Some(body) if !has_word(body, &label) => {
                    missing.push(format!("{op:?}: C function `{f}` does not send {label}"))
                }
                Some(_) => {}
            }
            if !c_tests.contains(&format!("{f}(")) {
                missing.push(format!("{op:?}: tests/c/header_test.c never calls `{f}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ops missing parts:\n{}",
        missing.join("\n")
    );
}
