//! Microkit's `<io_address_space>` in system.xml: parsed and checked as
//! strictly as the Microkit tool checks it on x86 (each refusal against
//! its whole located message), cross-checked against iommu.xml, handed
//! to the server's configuration, and taken out of the description the
//! Microkit tool is given with every other byte as it was.

mod common;

use common::{edit, exactly, load};

const SYSTEM: &str = include_str!("../../tests/fixtures/system.xml");
const POLICY: &str = include_str!("../../tests/fixtures/iommu.xml");

/// The fixture pair with a PD driving two devices it never tells the
/// server about, each confined by a static space: one at its region's
/// physical address, one elsewhere.
fn system() -> String {
    let s = SYSTEM.replacen(
        "        <setvar symbol=\"edu_b_dma_paddr\" region_paddr=\"edu_b_dma\" />\n",
        "        <setvar symbol=\"edu_b_dma_paddr\" region_paddr=\"edu_b_dma\" />\n        <setvar symbol=\"far_dma_paddr\" region_paddr=\"far_dma\" />\n",
        1,
    );
    s.replacen(
        "</system>",
        r#"    <memory_region name="near_dma" size="0x10000" phys_addr="0x5f000000" />
    <memory_region name="far_dma" size="0x210000" />
    <protection_domain name="sddf" priority="50">
        <program_image path="sddf.elf" />
        <map mr="near_dma" vaddr="0x30000000" perms="rw" />
        <map mr="far_dma" vaddr="0x31000000" perms="rw" />
    </protection_domain>
    <channel>
        <end pd="iommu_server" id="9" />
        <end pd="sddf" id="0" />
    </channel>
    <io_address_space name="near_space" peripheral_id="00:04.0" domain_id="1">
        <iomap mr="near_dma" iovaddr="0x5f000000" perms="rw" />
    </io_address_space>
    <io_address_space name="far_space" peripheral_id="0x28" domain_id="2">
        <iomap mr="far_dma" iovaddr="0x100000000" perms="r" />
    </io_address_space>
</system>"#,
        1,
    )
}

fn policy() -> String {
    POLICY.replacen(
        "</iommu>",
        "    <static_device space=\"near_space\" faults=\"sddf\" qemu=\"edu,dma_mask=0xffffffffffffffff\" />\n</iommu>",
        1,
    )
}

#[test]
fn the_spaces_reach_the_servers_configuration() {
    let config = load(&system(), &policy()).unwrap();
    use sysgen::model::{Paddr, Perms, QemuDevice, StaticIoMap, StaticSpace, StreamId};
    assert_eq!(
        config.static_spaces,
        [
            StaticSpace {
                name: "near_space".into(),
                peripheral: "00:04.0".into(),
                stream_id: StreamId(0x20),
                domain_id: 1,
                iomaps: vec![StaticIoMap {
                    mr: "near_dma".into(),
                    iovaddr: 0x5f00_0000,
                    size: 0x1_0000,
                    perms: Perms::RW,
                    paddr: Paddr::Fixed(0x5f00_0000),
                    identity: true,
                }],
                // Root, L1, L2, one L3.
                table_pages: 4,
                fault_pd: Some("sddf".into()),
                fault_channel: Some(9),
            },
            StaticSpace {
                name: "far_space".into(),
                peripheral: "0x28".into(),
                stream_id: StreamId(0x28),
                domain_id: 2,
                iomaps: vec![StaticIoMap {
                    mr: "far_dma".into(),
                    iovaddr: 0x1_0000_0000,
                    size: 0x21_0000,
                    perms: Perms::RO,
                    paddr: Paddr::Symbol("far_dma_paddr".into()),
                    identity: false,
                }],
                // Root, L1, L2, two L3 (the region crosses a 2 MiB line).
                table_pages: 5,
                fault_pd: Some("manager".into()),
                fault_channel: Some(3),
            },
        ]
    );
    assert_eq!(
        config.qemu_of(StreamId(0x20)),
        Some(&QemuDevice {
            stream_id: StreamId(0x20),
            options: "edu,dma_mask=0xffffffffffffffff".into()
        })
    );
    assert_eq!(config.qemu_of(StreamId(0x28)), None);
    assert!(sysgen::model::server_symbols(&config).contains(&"far_dma_paddr".to_string()));
    assert_eq!(
        sysgen::qemu_devices(&config),
        ["-device", "edu,dma_mask=0xffffffffffffffff,addr=04.0"]
    );
}

#[test]
fn the_microkit_tools_rules() {
    let sys = |from: &str, to: &str| edit(&system(), from, to);
    let near = "<io_address_space name=\"near_space\" peripheral_id=\"00:04.0\" domain_id=\"1\">";
    let iomap = "<iomap mr=\"near_dma\" iovaddr=\"0x5f000000\" perms=\"rw\" />";
    exactly(&[
        (
            "an attribute the tool does not know",
            sys(near, "<io_address_space name=\"near_space\" peripheral_id=\"00:04.0\" domain_id=\"1\" asid=\"3\">"),
            policy(),
            "system.xml:105:79: <io_address_space name=\"near_space\"> attribute `asid`: unknown attribute (the Microkit tool knows: name, peripheral_id, domain_id)",
        ),
        (
            "an iomap attribute the tool does not know",
            sys(iomap, "<iomap mr=\"near_dma\" iovaddr=\"0x5f000000\" perm=\"rw\" />"),
            policy(),
            "system.xml:106:51: <iomap mr=\"near_dma\"> attribute `perm`: unknown attribute (the Microkit tool knows: mr, iovaddr, perms)",
        ),
        (
            "a child that is not an iomap",
            sys(iomap, "<map mr=\"near_dma\" vaddr=\"0x5f000000\" />"),
            policy(),
            "system.xml:106:9: <map mr=\"near_dma\">: not an element an <io_address_space> has (expected iomap)",
        ),
        (
            "a name given twice",
            sys("name=\"far_space\"", "name=\"near_space\""),
            policy(),
            "system.xml:108:23: <io_address_space name=\"near_space\"> attribute `name`: an io address space of this name exists",
        ),
        (
            "no name",
            sys("name=\"far_space\" ", ""),
            policy(),
            "system.xml:108:5: <io_address_space> attribute `name`: missing",
        ),
        (
            "a malformed PCI function",
            sys("peripheral_id=\"00:04.0\"", "peripheral_id=\"00:04\""),
            policy(),
            "system.xml:105:41: <io_address_space name=\"near_space\"> attribute `peripheral_id`: failed to parse `00:04`: expected PCI address in bus:device.function form",
        ),
        (
            "a PCI device out of range",
            sys("peripheral_id=\"00:04.0\"", "peripheral_id=\"00:20.0\""),
            policy(),
            "system.xml:105:41: <io_address_space name=\"near_space\"> attribute `peripheral_id`: failed to parse `00:20.0`: PCI device must be within [0..31]",
        ),
        (
            "a PCI function out of range",
            sys("peripheral_id=\"00:04.0\"", "peripheral_id=\"00:04.8\""),
            policy(),
            "system.xml:105:41: <io_address_space name=\"near_space\"> attribute `peripheral_id`: failed to parse `00:04.8`: PCI function must be within [0..7]",
        ),
        (
            "neither form",
            sys("peripheral_id=\"00:04.0\"", "peripheral_id=\"nvme0\""),
            policy(),
            "system.xml:105:41: <io_address_space name=\"near_space\"> attribute `peripheral_id`: failed to parse `nvme0`: neither a PCI function bus:device.function nor a stream ID",
        ),
        (
            "one device in two spaces, written two ways",
            sys("peripheral_id=\"0x28\"", "peripheral_id=\"0x20\""),
            policy(),
            "system.xml:108:40: <io_address_space name=\"far_space\"> attribute `peripheral_id`: duplicate device: stream 0x20 is already `near_space`'s (system.xml:105)",
        ),
        (
            "a domain id reused",
            sys("domain_id=\"2\"", "domain_id=\"1\""),
            policy(),
            "system.xml:108:61: <io_address_space name=\"far_space\"> attribute `domain_id`: reusing a domain id is forbidden: `near_space` has domain_id 1 (system.xml:105)",
        ),
        (
            "a domain id wider than an ASID",
            sys("domain_id=\"2\"", "domain_id=\"0x10000\""),
            policy(),
            "system.xml:108:61: <io_address_space name=\"far_space\"> attribute `domain_id`: must be 0..=0xffff (an ASID)",
        ),
        (
            "no domain id",
            sys(" domain_id=\"2\"", ""),
            policy(),
            "system.xml:108:5: <io_address_space name=\"far_space\"> attribute `domain_id`: missing",
        ),
        (
            "perms other than r and w",
            sys("perms=\"r\" />", "perms=\"rx\" />"),
            policy(),
            "system.xml:109:51: <iomap mr=\"far_dma\"> attribute `perms`: perms for io mapped memory must only be a combination of 'r' and 'w'",
        ),
        (
            "empty perms",
            sys("perms=\"r\" />", "perms=\"\" />"),
            policy(),
            "system.xml:109:51: <iomap mr=\"far_dma\"> attribute `perms`: perms for io mapped memory must only be a combination of 'r' and 'w'",
        ),
        (
            "write-only",
            sys("perms=\"r\" />", "perms=\"w\" />"),
            policy(),
            "system.xml:109:51: <iomap mr=\"far_dma\"> attribute `perms`: a write-only iomap cannot be enforced: an SMMU stage-1 page the device may write it may also read (give rw)",
        ),
        (
            "a region that does not exist",
            sys("<iomap mr=\"far_dma\"", "<iomap mr=\"far_dam\""),
            policy(),
            "system.xml:109:16: <iomap mr=\"far_dam\"> attribute `mr`: no <memory_region name=\"far_dam\">; system.xml has `far_dma` (system.xml:95)",
        ),
        (
            "an iovaddr off a page",
            sys("iovaddr=\"0x100000000\"", "iovaddr=\"0x100000800\""),
            policy(),
            "system.xml:109:29: <iomap mr=\"far_dma\"> attribute `iovaddr`: invalid iovaddr alignment: 0x100000800 is not a multiple of 0x1000",
        ),
        (
            "an iovaddr beyond the SMMU's input range",
            sys("iovaddr=\"0x100000000\"", "iovaddr=\"0xfffffff00000\""),
            policy(),
            "system.xml:109:29: <iomap mr=\"far_dma\"> attribute `iovaddr`: iomap for `far_dma` has io address range [0xfffffff00000..0x1000000110000) which exceeds the SMMU's input range [0x0..0x1000000000000)",
        ),
        (
            "a range that wraps",
            sys("iovaddr=\"0x100000000\"", "iovaddr=\"0xfffffffffff00000\""),
            policy(),
            "system.xml:109:29: <iomap mr=\"far_dma\"> attribute `iovaddr`: iomap for `far_dma` has an address range that overflows",
        ),
        (
            "two iomaps of one space overlapping",
            sys(
                "        <iomap mr=\"far_dma\" iovaddr=\"0x100000000\" perms=\"r\" />\n",
                "        <iomap mr=\"far_dma\" iovaddr=\"0x100000000\" perms=\"r\" />\n        <iomap mr=\"near_dma\" iovaddr=\"0x100200000\" />\n",
            ),
            policy(),
            "system.xml:110:30: <iomap mr=\"near_dma\"> attribute `iovaddr`: iomap for `near_dma` has io address range [0x100200000..0x100210000) which overlaps with iomap for `far_dma` [0x100000000..0x100210000) in `far_space`",
        ),
    ]);
}

#[test]
fn what_the_server_needs() {
    let sys = |from: &str, to: &str| edit(&system(), from, to);
    let pol = |from: &str, to: &str| edit(&policy(), from, to);
    exactly(&[
        (
            "a device a client binds",
            sys("peripheral_id=\"0x28\"", "peripheral_id=\"00:02.0\""),
            policy(),
            "system.xml:108:40: <io_address_space name=\"far_space\"> attribute `peripheral_id`: PCI device 00:02.0 (stream 0x10) is device `edu_b` of client `edu_b` (iommu.xml:29): a device is confined by an io address space or bound by a client, not both",
        ),
        (
            "a stream wider than the SMMU decodes",
            sys("peripheral_id=\"0x28\"", "peripheral_id=\"0x10028\""),
            policy(),
            "system.xml:108:40: <io_address_space name=\"far_space\"> attribute `peripheral_id`: stream 0x10028 is wider than the SMMU's 16 stream ID bits",
        ),
        (
            "a region whose address the server cannot learn",
            sys("        <setvar symbol=\"far_dma_paddr\" region_paddr=\"far_dma\" />\n", ""),
            policy(),
            "system.xml:108:16: <iomap mr=\"far_dma\"> attribute `mr`: the server `iommu_server` cannot learn the physical address of `far_dma`: give it a phys_addr or add <setvar symbol=\"...\" region_paddr=\"far_dma\"/> to the server",
        ),
        (
            "the server's own page tables",
            sys("<iomap mr=\"far_dma\"", "<iomap mr=\"iommu_page_tables\""),
            policy(),
            "system.xml:109:16: <iomap mr=\"iommu_page_tables\"> attribute `mr`: `iommu_page_tables` is the server's own memory (its SMMU, page tables or a command page): no device may reach it",
        ),
        (
            "a client's command page",
            sys("<iomap mr=\"far_dma\"", "<iomap mr=\"edu_a_command\""),
            policy(),
            "system.xml:109:16: <iomap mr=\"edu_a_command\"> attribute `mr`: `edu_a_command` is the server's own memory (its SMMU, page tables or a command page): no device may reach it",
        ),
        (
            "more table pages than the pool",
            sys("name=\"iommu_page_tables\" size=\"0x40000\"", "name=\"iommu_page_tables\" size=\"0x28000\""),
            policy(),
            "iommu.xml:14:18: <page_tables mr=\"iommu_page_tables\"> attribute `mr`: the clients' table_pages quotas (32 pages) and the static io address spaces' page tables (9 pages) add up to 41, more than the 40 of region `iommu_page_tables` (system.xml:13)",
        ),
        (
            "a static device for no space",
            system(),
            pol("space=\"near_space\"", "space=\"near_spcae\""),
            "iommu.xml:39:20: <static_device> attribute `space`: no <io_address_space name=\"near_spcae\"> in system.xml; system.xml has `near_space` (system.xml:105)",
        ),
        (
            "two static devices for one space",
            system(),
            pol("</iommu>", "    <static_device space=\"near_space\" />\n</iommu>"),
            "iommu.xml:40:20: <static_device> attribute `space`: `near_space` already has its <static_device> (iommu.xml:39)",
        ),
        (
            "faults to a PD without a channel to the server",
            sys("        <end pd=\"iommu_server\" id=\"9\" />\n        <end pd=\"sddf\" id=\"0\" />\n", "        <end pd=\"edu_a\" id=\"9\" />\n        <end pd=\"sddf\" id=\"0\" />\n"),
            policy(),
            "iommu.xml:39:39: <static_device> attribute `faults`: no <channel> between the server `iommu_server` and `sddf` in system.xml: the server notifies `sddf` of the space's faults on it",
        ),
        (
            "faults to a PD that does not exist",
            system(),
            pol("faults=\"sddf\"", "faults=\"sdf\""),
            "iommu.xml:39:39: <static_device> attribute `faults`: no <protection_domain name=\"sdf\"> in system.xml; system.xml has `sddf` (system.xml:96)",
        ),
        (
            "a QEMU device placed by hand",
            system(),
            pol("qemu=\"edu,dma_mask", "qemu=\"edu,addr=04.0,dma_mask"),
            "iommu.xml:39:53: <static_device> attribute `qemu`: `addr=04.0`: the stream ID places the device (bus 0, devfn = stream_id & 0xff)",
        ),
        (
            "an attribute the sidecar does not know",
            system(),
            pol("<static_device space", "<static_device stream=\"0x20\" space"),
            "iommu.xml:39:20: <static_device> attribute `stream`: unknown attribute (expected one of space, faults, qemu)",
        ),
    ]);
}

#[test]
fn the_microkit_tool_gets_the_description_without_the_spaces() {
    let with = system();
    let stripped = sysgen::strip::microkit_sdf(&with).unwrap();
    let spaces_start = with.find("    <io_address_space").unwrap();
    let spaces_end = with.find("</system>").unwrap();
    assert_eq!(
        stripped,
        format!("{}{}", &with[..spaces_start], &with[spaces_end..]),
        "the spaces' lines go, every other byte stays"
    );
    assert!(!stripped.contains("iomap"));
    // What the tool is given still describes the same PDs, maps and
    // channels: it checks as the original does, without the spaces.
    let (without, _) = sysgen::load_str("system.xml", &stripped, "iommu.xml", POLICY).unwrap();
    let (original, _) = sysgen::load_str("system.xml", &with, "iommu.xml", POLICY).unwrap();
    assert!(without.io_address_spaces.is_empty());
    assert_eq!(without.pds.len(), original.pds.len());
    // A description without spaces is handed over byte for byte.
    assert_eq!(sysgen::strip::microkit_sdf(SYSTEM).unwrap(), SYSTEM);
    let shipped = include_str!("../../system.xml");
    let stripped = sysgen::strip::microkit_sdf(shipped).unwrap();
    let root = sysgen::xml::parse(&stripped).unwrap();
    assert!(root.children.iter().all(|e| e.name != "io_address_space"));
    let element = |l: &&str| {
        let t = l.trim_start();
        t.starts_with("<io_address_space")
            || t.starts_with("</io_address_space")
            || t.starts_with("<iomap")
    };
    assert_eq!(
        shipped.lines().filter(|l| !element(l)).collect::<Vec<_>>(),
        stripped.lines().collect::<Vec<_>>(),
        "the shipped description loses its spaces' lines and nothing else"
    );
}

#[test]
fn page_tables_needed_are_counted_per_span() {
    use sysgen::io_address_space::table_pages;
    assert_eq!(table_pages([(0x5f00_0000, 0x1_0000)]), 4);
    assert_eq!(table_pages([(0x1_0000_0000, 0x21_0000)]), 5);
    assert_eq!(
        table_pages([(0x5f00_0000, 0x1000), (0x5f00_1000, 0x1000)]),
        4,
        "tables shared within a space"
    );
    assert_eq!(table_pages([(0x3f_ffff_f000, 0x2000)]), 1 + 1 + 2 + 2);
    assert_eq!(
        table_pages([(0x7f_ffff_f000, 0x2000)]),
        1 + 2 + 2 + 2,
        "across 512 GiB"
    );
}

/// The server holds at most `MAX_STATIC_SPACES` static spaces (its own
/// constant): one more is refused at the space in system.xml.
#[test]
fn at_most_the_servers_static_spaces() {
    let spaces = |n: u32| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "    <io_address_space name=\"space{i}\" peripheral_id=\"{:#x}\" domain_id=\"{}\" />\n",
                    0x40 + 8 * i,
                    10 + i
                )
            })
            .collect()
    };
    let with = |n: u32| edit(SYSTEM, "</system>", &format!("{}</system>", spaces(n)));
    let bound = iommu_types::config::MAX_STATIC_SPACES as u32;
    load(&with(bound), POLICY).expect("as many spaces as the server holds");
    let lines = SYSTEM.lines().count();
    exactly(&[(
        "one space more than the server holds",
        with(bound + 1),
        POLICY.into(),
        &format!("system.xml:{}:5: <io_address_space name=\"space8\">: more than 8 io address spaces (the server's bound)", lines + 8),
    )]);
}
