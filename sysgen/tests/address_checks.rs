//! The physical addresses a system depends on, cross-checked by sysgen
//! against QEMU virt's address map and against each other: a device's
//! configuration page against the ECAM page of its stream ID, BAR windows
//! against each other, the PCI MMIO window and what the device decodes, a
//! configuration page against the client that owns the device, and the
//! QEMU placement against the stream ID. Every refusal is checked against
//! its whole message, which names both ends. The fixtures are
//! the repository's tests/fixtures/ (see tests/system_config.rs).

mod common;

use common::{edit, edits, exactly, load};

const SYSTEM: &str = include_str!("../../tests/fixtures/system.xml");
const POLICY: &str = include_str!("../../tests/fixtures/iommu.xml");
const NVME_SYSTEM: &str = include_str!("fixtures/nvme_system.xml");
const NVME_POLICY: &str = include_str!("fixtures/nvme_iommu.xml");

#[test]
fn the_examples_and_fixtures_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    sysgen::load(&root.join("system.xml"), &root.join("iommu.xml")).expect("the shipped example");
    load(SYSTEM, POLICY).expect("the fixtures");
    load(NVME_SYSTEM, NVME_POLICY).expect("the NVMe fixtures");
}

/// A device's configuration page is the ECAM page of the function its
/// stream ID names, one page, at a fixed address.
#[test]
fn a_configuration_page_is_its_functions_ecam_page() {
    let pol = |from: &str, to: &str| edit(POLICY, from, to);
    let sys = |from: &str, to: &str| edit(SYSTEM, from, to);
    // edu_b moved to 00:03.0 in iommu.xml, its page where 00:03.0's is.
    let moved = pol("stream_id=\"0x10\"", "stream_id=\"0x18\"");
    load(
        &sys("phys_addr=\"0x4010010000\"", "phys_addr=\"0x4010018000\""),
        &moved,
    )
    .expect("page and stream moved together");
    exactly(&[
        (
            "a configuration page left at the old address after the stream ID changed",
            SYSTEM.into(),
            moved,
            "system.xml:17:54: <memory_region name=\"edu_b_config\"> attribute `phys_addr`: `edu_b_config` is the configuration page of device `edu_b` (iommu.xml:29): stream 0x18 is PCI 00:03.0, whose page is 0x4010018000, not 0x4010010000, which is PCI 00:02.0's",
        ),
        (
            "a configuration page outside the ECAM window",
            sys("phys_addr=\"0x4010010000\"", "phys_addr=\"0x3f010000\""),
            POLICY.into(),
            "system.xml:17:54: <memory_region name=\"edu_b_config\"> attribute `phys_addr`: `edu_b_config` is the configuration page of device `edu_b` (iommu.xml:29): stream 0x10 is PCI 00:02.0, whose page is 0x4010010000, not 0x3f010000, which is outside the ECAM window 0x4010000000..0x4020000000",
        ),
        (
            "a configuration page without a fixed address",
            sys(" phys_addr=\"0x4010010000\"", ""),
            POLICY.into(),
            "system.xml:17:5: <memory_region name=\"edu_b_config\">: `edu_b_config` is the configuration page of device `edu_b` (iommu.xml:29): give it phys_addr=\"0x4010010000\", PCI 00:02.0's page of the ECAM window",
        ),
        (
            "a configuration page of two pages",
            edits(
                SYSTEM,
                &[
                    (
                        "name=\"edu_b_config\" size=\"0x1000\"",
                        "name=\"edu_b_config\" size=\"0x2000\"",
                    ),
                    // Out of the way of the maps after it.
                    (
                        "mr=\"edu_b_config\" vaddr=\"0x14001000\"",
                        "mr=\"edu_b_config\" vaddr=\"0x14100000\"",
                    ),
                ],
            ),
            POLICY.into(),
            "system.xml:17:40: <memory_region name=\"edu_b_config\"> attribute `size`: `edu_b_config` is the configuration page of device `edu_b` (iommu.xml:29): one 0x1000-byte page",
        ),
        (
            "a stream ID that is no requester ID, with a configuration page",
            SYSTEM.into(),
            edits(
                POLICY,
                &[
                    ("<smmu mr=\"smmu_regs\"", "<smmu sid_bits=\"20\" mr=\"smmu_regs\""),
                    ("stream_id=\"0x10\"", "stream_id=\"0x10010\""),
                ],
            ),
            "iommu.xml:29:30: <device name=\"edu_b\"> attribute `stream_id`: stream 0x10010 is no PCI requester ID (bus << 8 | devfn), so device `edu_b` has no configuration page for config_mr to be",
        ),
    ]);
}

/// A device's configuration page is its client's: no other device's, and
/// mapped by no PD but the server and that client.
#[test]
fn a_configuration_page_belongs_to_the_devices_client() {
    exactly(&[
        (
            "a device whose configuration page is another client's page",
            SYSTEM.into(),
            edit(
                POLICY,
                "config_mr=\"edu_b_config\"",
                "config_mr=\"edu_a_config\"",
            ),
            "iommu.xml:29:71: <device name=\"edu_b\"> attribute `config_mr`: `edu_a_config` is already the configuration page of device `edu_a` of `edu_a` (iommu.xml:19)",
        ),
        (
            "another client's page, that client naming none",
            SYSTEM.into(),
            edits(
                POLICY,
                &[
                    (" config_mr=\"edu_a_config\"", ""),
                    ("config_mr=\"edu_b_config\"", "config_mr=\"edu_a_config\""),
                ],
            ),
            "iommu.xml:29:71: <device name=\"edu_b\"> attribute `config_mr`: `edu_a_config` is mapped into `edu_a` (system.xml:60): the configuration page of device `edu_b` is its client `edu_b`'s alone",
        ),
        (
            "its own page mapped into another client too",
            edit(
                SYSTEM,
                "<map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
                "<map mr=\"edu_b_config\" vaddr=\"0x20002000\" perms=\"r\" cached=\"false\" /><map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
            ),
            POLICY.into(),
            "iommu.xml:29:71: <device name=\"edu_b\"> attribute `config_mr`: `edu_b_config` is mapped into `edu_a` (system.xml:62): the configuration page of device `edu_b` is its client `edu_b`'s alone",
        ),
    ]);
}

/// BAR windows (`*_bar` regions) are at fixed addresses in the PCI MMIO
/// window and disjoint; BAR0 of a known QEMU model is as large as the
/// device decodes and aligned to that size.
#[test]
fn bar_windows_are_placed_in_the_window_and_apart() {
    let sys = |from: &str, to: &str| edit(SYSTEM, from, to);
    let edu = |policy: &str| {
        edits(
            policy,
            &[
                ("stream_id=\"0x8\"", "stream_id=\"0x8\" qemu=\"edu\""),
                ("stream_id=\"0x10\"", "stream_id=\"0x10\" qemu=\"edu\""),
            ],
        )
    };
    load(SYSTEM, &edu(POLICY)).expect("edu's 1 MiB BAR0 windows");
    exactly(&[
        (
            "two BAR regions at one physical address",
            sys("phys_addr=\"0x10100000\"", "phys_addr=\"0x10000000\""),
            POLICY.into(),
            "system.xml:19:53: <memory_region name=\"edu_b_bar\"> attribute `phys_addr`: BAR window `edu_b_bar` (0x10000000..0x10100000) overlaps BAR window `edu_a_bar` (0x10000000..0x10100000, system.xml:18)",
        ),
        (
            "two BAR regions overlapping in part",
            sys("phys_addr=\"0x10100000\"", "phys_addr=\"0x100ff000\""),
            POLICY.into(),
            "system.xml:19:53: <memory_region name=\"edu_b_bar\"> attribute `phys_addr`: BAR window `edu_b_bar` (0x100ff000..0x101ff000) overlaps BAR window `edu_a_bar` (0x10000000..0x10100000, system.xml:18)",
        ),
        (
            "a BAR region below the PCI MMIO window",
            sys("phys_addr=\"0x10100000\"", "phys_addr=\"0x0ff00000\""),
            POLICY.into(),
            "system.xml:19:53: <memory_region name=\"edu_b_bar\"> attribute `phys_addr`: `edu_b_bar` is a BAR window, 0xff00000 + 0x100000 bytes: not inside QEMU virt's PCI MMIO window 0x10000000..0x3eff0000",
        ),
        (
            "a BAR region running into the PCI I/O window",
            sys("phys_addr=\"0x10100000\"", "phys_addr=\"0x3ef00000\""),
            POLICY.into(),
            "system.xml:19:53: <memory_region name=\"edu_b_bar\"> attribute `phys_addr`: `edu_b_bar` is a BAR window, 0x3ef00000 + 0x100000 bytes: not inside QEMU virt's PCI MMIO window 0x10000000..0x3eff0000",
        ),
        (
            "a BAR region wrapping past 2^64",
            sys("phys_addr=\"0x10100000\"", "phys_addr=\"0xfffffffffff00001\""),
            POLICY.into(),
            "system.xml:19:53: <memory_region name=\"edu_b_bar\"> attribute `phys_addr`: `edu_b_bar` is a BAR window, 0xfffffffffff00001 + 0x100000 bytes: not inside QEMU virt's PCI MMIO window 0x10000000..0x3eff0000",
        ),
        (
            "a BAR region without a fixed address",
            sys(" phys_addr=\"0x10100000\"", ""),
            POLICY.into(),
            "system.xml:19:5: <memory_region name=\"edu_b_bar\">: `edu_b_bar` is a BAR window (a region named *_bar): device registers at a fixed address, so give it a phys_addr in QEMU virt's PCI MMIO window 0x10000000..0x3eff0000",
        ),
        (
            "edu's BAR0 in half its size",
            sys(
                "name=\"edu_b_bar\" size=\"0x100000\"",
                "name=\"edu_b_bar\" size=\"0x80000\"",
            ),
            edu(POLICY),
            "system.xml:19:37: <memory_region name=\"edu_b_bar\"> attribute `size`: `edu_b_bar` is BAR0 of device `edu_b`, QEMU's `edu` (iommu.xml:29): it decodes 0x100000 bytes, more than 0x80000",
        ),
        (
            "edu's BAR0 off its 1 MiB alignment",
            sys("phys_addr=\"0x10100000\"", "phys_addr=\"0x10180000\""),
            edu(POLICY),
            "system.xml:19:53: <memory_region name=\"edu_b_bar\"> attribute `phys_addr`: `edu_b_bar` is BAR0 of device `edu_b`, QEMU's `edu` (iommu.xml:29): a BAR of 0x100000 bytes starts on a multiple of its size, and 0x10180000 is not",
        ),
    ]);
}

/// QEMU's NVMe controller decodes 16 KiB with its default options and
/// more with more queues or vectors; a BAR window under that is refused,
/// found by its client when its name is not the device's.
#[test]
fn an_nvme_bar_holds_what_qemu_decodes() {
    let nvme_bar = "name=\"nvme_bar\" size=\"0x100000\"";
    let renamed = |size: &str| {
        NVME_SYSTEM
            .replace("nvme_bar\"", "nvme_registers_bar\"")
            .replacen(
                "size=\"0x100000\" phys_addr=\"0x10200000\"",
                &format!("size=\"{size}\" phys_addr=\"0x10200000\""),
                1,
            )
    };
    load(
        &edit(NVME_SYSTEM, nvme_bar, "name=\"nvme_bar\" size=\"0x4000\""),
        NVME_POLICY,
    )
    .expect("16 KiB is what the default controller decodes");
    load(&renamed("0x4000"), NVME_POLICY).expect("the one BAR window its client maps");
    let line = NVME_SYSTEM
        .lines()
        .position(|l| l.contains(nvme_bar))
        .unwrap()
        + 1;
    let device = NVME_POLICY
        .lines()
        .position(|l| l.contains("<device name=\"nvme\""))
        .unwrap()
        + 1;
    let refused = |size: &str, name: &str, col: u32| {
        format!(
            "system.xml:{line}:{col}: <memory_region name=\"{name}\"> attribute `size`: `{name}` is BAR0 of device `nvme`, QEMU's `nvme` (iommu.xml:{device}): it decodes {size} bytes, more than {}",
            if size == "0x8000" { "0x4000" } else { "0x2000" }
        )
    };
    exactly(&[
        (
            "an NVMe BAR0 window of 8 KiB",
            edit(NVME_SYSTEM, nvme_bar, "name=\"nvme_bar\" size=\"0x2000\""),
            NVME_POLICY.into(),
            &refused("0x4000", "nvme_bar", 36),
        ),
        (
            "a 16 KiB window for a controller of 1024 queue pairs",
            edit(NVME_SYSTEM, nvme_bar, "name=\"nvme_bar\" size=\"0x4000\""),
            edit(
                NVME_POLICY,
                "qemu=\"nvme,",
                "qemu=\"nvme,max_ioqpairs=1024,",
            ),
            &refused("0x8000", "nvme_bar", 36),
        ),
        (
            "an 8 KiB window not named after the device",
            renamed("0x2000"),
            NVME_POLICY.into(),
            &refused("0x4000", "nvme_registers_bar", 46),
        ),
    ]);
}

/// Where QEMU puts a device is where its stream ID says; functions
/// sharing a slot need a function 0 that says so, or QEMU refuses to
/// start.
#[test]
fn qemu_placement_agrees_with_the_stream_ids() {
    let with = |a: &str, b: &str, b_stream: &str| {
        edits(
            POLICY,
            &[
                (
                    "stream_id=\"0x8\"",
                    &format!("stream_id=\"0x8\" qemu=\"{a}\""),
                ),
                (
                    "stream_id=\"0x10\"",
                    &format!("stream_id=\"{b_stream}\" qemu=\"{b}\""),
                ),
            ],
        )
    };
    // edu_b as function 1 of edu_a's slot, its page there.
    let shared = edit(
        SYSTEM,
        "phys_addr=\"0x4010010000\"",
        "phys_addr=\"0x4010009000\"",
    );
    let config =
        load(&shared, &with("edu,multifunction=on", "edu", "0x9")).expect("a multifunction slot");
    assert_eq!(
        sysgen::qemu_devices(&config),
        [
            "-device",
            "edu,multifunction=on,addr=01.0",
            "-device",
            "edu,addr=01.1"
        ]
    );
    exactly(&[(
        "two functions in a slot whose function 0 is single-function",
        shared,
        with("edu", "edu", "0x9"),
        "iommu.xml:19:46: <device name=\"edu_a\"> attribute `qemu`: device `edu_b` shares its slot as PCI 00:01.1 (iommu.xml:29): QEMU takes a second function only beside a function 0 with multifunction=on",
    )]);
}
