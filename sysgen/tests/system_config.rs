//! The configuration checker: each kind of inconsistency between a
//! system.xml and its iommu.xml is refused with an error naming the file,
//! element and attribute at fault. The fixtures are a pair of this test's
//! own (the repository's tests/fixtures/, a copy of the example at the
//! time, which the C PD's tests read too), so editing
//! the shipped system.xml changes nothing here. Every refusal is checked
//! against its whole message: file:line:col, element, attribute, reason.

mod common;

use common::{edit, exactly, load};

const SYSTEM: &str = include_str!("../../tests/fixtures/system.xml");
const POLICY: &str = include_str!("../../tests/fixtures/iommu.xml");

#[test]
fn names_that_do_not_exist() {
    let pol = |from: &str, to: &str| edit(POLICY, from, to);
    exactly(&[
        (
            "a server system.xml lacks",
            SYSTEM.into(),
            pol("server=\"iommu_server\"", "server=\"iommu\""),
            "iommu.xml:12:8: <iommu> attribute `server`: no <protection_domain name=\"iommu\"> in system.xml",
        ),
        (
            "a DMA region system.xml lacks",
            SYSTEM.into(),
            pol("<dma mr=\"edu_a_dma\" />", "<dma mr=\"edu_a_buf\" />"),
            "iommu.xml:18:14: <dma mr=\"edu_a_buf\"> attribute `mr`: no <memory_region name=\"edu_a_buf\"> in system.xml; system.xml has `edu_a_bar` (system.xml:18)",
        ),
        (
            "a client PD system.xml lacks",
            SYSTEM.into(),
            pol("<client pd=\"edu_b\"", "<client pd=\"edu_c\""),
            "iommu.xml:26:13: <client pd=\"edu_c\"> attribute `pd`: no <protection_domain name=\"edu_c\"> in system.xml; system.xml has `edu_a` (system.xml:57)",
        ),
        (
            "an event interrupt the server lacks",
            SYSTEM.into(),
            pol("event_irq=\"106\"", "event_irq=\"107\""),
            "iommu.xml:13:47: <smmu mr=\"smmu_regs\"> attribute `event_irq`: the server `iommu_server` has no <irq irq=\"107\">",
        ),
    ]);
}

#[test]
fn a_device_owned_twice() {
    exactly(&[(
        "one stream ID for two devices",
        SYSTEM.into(),
        edit(POLICY, "stream_id=\"0x10\"", "stream_id=\"0x8\""),
        "iommu.xml:29:30: <device name=\"edu_b\"> attribute `stream_id`: stream 0x8 already belongs to device `edu_a` of `edu_a`",
    )]);
}

#[test]
fn overlapping_or_inverted_windows() {
    exactly(&[
        (
            "two reserved windows overlapping",
            SYSTEM.into(),
            edit(
                POLICY,
                "start=\"0x10000000\" last=\"0x3efeffff\"",
                "start=\"0x08030000\" last=\"0x3efeffff\"",
            ),
            "iommu.xml:21:23: <reserved> attribute `start`: overlaps the window 0x8000000..=0x803ffff",
        ),
        (
            "a reserved window ending before it starts",
            SYSTEM.into(),
            edit(
                POLICY,
                "start=\"0x08000000\" last=\"0x0803ffff\"",
                "start=\"0x08040000\" last=\"0x0803ffff\"",
            ),
            "iommu.xml:20:42: <reserved> attribute `last`: below start 0x8040000",
        ),
    ]);
}

#[test]
fn memory_the_server_cannot_place_or_must_keep() {
    let sys = |from: &str, to: &str| edit(SYSTEM, from, to);
    exactly(&[
        (
            "no setvar and no phys_addr: the server cannot learn where it is",
            sys(
                "<setvar symbol=\"edu_a_dma_paddr\" region_paddr=\"edu_a_dma\" />",
                "",
            ),
            POLICY.into(),
            "system.xml:25:5: <memory_region name=\"edu_a_dma\">: the server `iommu_server` cannot learn the physical address of `edu_a_dma`, named at iommu.xml:18: give it a phys_addr or add <setvar symbol=\"...\" region_paddr=\"edu_a_dma\"/> to the server",
        ),
        (
            "a client's DMA memory mapped into the server",
            sys(
                "<map mr=\"smmu_regs\"",
                "<map mr=\"edu_a_dma\" vaddr=\"0x15000000\" />\n<map mr=\"smmu_regs\"",
            ),
            POLICY.into(),
            "system.xml:35:14: <map mr=\"edu_a_dma\"> attribute `mr`: `edu_a_dma` is DMA memory of `edu_a` (iommu.xml:18): a DMA region must be the client's memory only, not mapped into the server",
        ),
        (
            "a client mapping the server's page-table pool",
            sys(
                "<map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
                "<map mr=\"iommu_page_tables\" vaddr=\"0x40000000\" />\n<map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
            ),
            POLICY.into(),
            "system.xml:62:14: <map mr=\"iommu_page_tables\"> attribute `mr`: `edu_a` is a client (iommu.xml:16) and `iommu_page_tables` the server's own memory (iommu.xml:14): no client maps it",
        ),
        (
            "registers mapped cached",
            sys(
                "vaddr=\"0x10000000\" perms=\"rw\" cached=\"false\"",
                "vaddr=\"0x10000000\" perms=\"rw\"",
            ),
            POLICY.into(),
            "system.xml:35:9: <map mr=\"smmu_regs\"> attribute `cached`: must be false (device registers)",
        ),
    ]);
}

#[test]
fn channels_pages_and_priorities() {
    let sys = |from: &str, to: &str| edit(SYSTEM, from, to);
    // A two-page command page overlaps the server's next map: the size is
    // what is wrong, not the map after it...
    let two_pages = sys(
        "name=\"edu_a_command\" size=\"0x1000\"",
        "name=\"edu_a_command\" size=\"0x2000\"",
    );
    // ... and, moved out of the way in both PDs, is still not one page.
    let moved = edit(
        &edit(
            &two_pages,
            "mr=\"edu_a_command\" vaddr=\"0x13000000\"",
            "mr=\"edu_a_command\" vaddr=\"0x13100000\"",
        ),
        "<map mr=\"edu_a_command\" vaddr=\"0x20000000\"",
        "<map mr=\"edu_a_command\" vaddr=\"0x21000000\"",
    );
    exactly(&[
        (
            "a client's end of its channel without pp",
            sys(
                "<end pd=\"edu_a\" id=\"0\" pp=\"true\" />",
                "<end pd=\"edu_a\" id=\"0\" />",
            ),
            POLICY.into(),
            "system.xml:78:9: <end pd=\"edu_a\"> attribute `pp`: the client calls the server: its end needs pp=\"true\"",
        ),
        (
            "a client at the server's priority",
            sys(
                "name=\"edu_a\" priority=\"100\"",
                "name=\"edu_a\" priority=\"200\"",
            ),
            POLICY.into(),
            "system.xml:57:37: <protection_domain name=\"edu_a\"> attribute `priority`: a client calls the server, so its priority must be below the server's (200)",
        ),
        (
            "one command page for two clients",
            SYSTEM.into(),
            edit(
                POLICY,
                "command_page=\"edu_b_command\"",
                "command_page=\"edu_a_command\"",
            ),
            "iommu.xml:26:24: <client pd=\"edu_b\"> attribute `command_page`: `edu_a_command` is already the command page of `edu_a`",
        ),
        (
            "a two-page command page over the server's next map",
            two_pages,
            POLICY.into(),
            "system.xml:22:41: <memory_region name=\"edu_a_command\"> attribute `size`: `edu_a_command` is the command page of `edu_a` (iommu.xml:16): one 0x1000-byte page",
        ),
        (
            "a two-page command page out of the way",
            moved,
            POLICY.into(),
            "system.xml:22:41: <memory_region name=\"edu_a_command\"> attribute `size`: `edu_a_command` is the command page of `edu_a` (iommu.xml:16): one 0x1000-byte page",
        ),
    ]);
}

/// The Microkit tool's own rules on system.xml, each refused where the
/// tool refuses it.
#[test]
fn the_microkit_tools_rules() {
    let sys = |from: &str, to: &str| edit(SYSTEM, from, to);
    exactly(&[
        (
            "an attribute the tool does not know (a typo for `perms`)",
            sys(
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\" perms=\"rw\" />",
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\" perm=\"rw\" />",
            ),
            POLICY.into(),
            "system.xml:38:52: <map mr=\"edu_a_command\"> attribute `perm`: unknown attribute (the Microkit tool knows: mr, vaddr, perms, cached, setvar_vaddr, setvar_size)",
        ),
        (
            "an element the tool does not know",
            sys(
                "<memory_region name=\"edu_a_command\"",
                "<memory_regio name=\"edu_a_command\"",
            ),
            POLICY.into(),
            "system.xml:22:5: <memory_regio name=\"edu_a_command\">: not an element a Microkit system description has",
        ),
        (
            "a priority above 254",
            sys(
                "name=\"edu_a\" priority=\"100\"",
                "name=\"edu_a\" priority=\"255\"",
            ),
            POLICY.into(),
            "system.xml:57:37: <protection_domain name=\"edu_a\"> attribute `priority`: must be 0..=254",
        ),
        (
            "two maps overlapping in one PD",
            sys(
                "mr=\"edu_b_command\" vaddr=\"0x13001000\"",
                "mr=\"edu_b_command\" vaddr=\"0x13000000\"",
            ),
            POLICY.into(),
            "system.xml:39:33: <map mr=\"edu_b_command\"> attribute `vaddr`: overlaps the map of `edu_a_command` in `iommu_server`",
        ),
        // The XML rules the tool's parser keeps, in its words.
        (
            "`--` inside a comment in system.xml",
            sys(
                "<!-- The server's own memory. -->",
                "<!-- The server's own memory -- its pools. -->",
            ),
            POLICY.into(),
            "system.xml:10:5: document: comment contains '--'",
        ),
        (
            "`--` inside a comment in iommu.xml",
            SYSTEM.into(),
            edit(
                POLICY,
                "DMA addresses (peer-to-peer would bypass the IOMMU).",
                "DMA addresses -- peer-to-peer would bypass the IOMMU.",
            ),
            "iommu.xml:2:1: document: comment contains '--'",
        ),
        (
            "a map left unclosed, located where it starts, not at the next tag",
            sys(
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\" perms=\"rw\" />",
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\" perms=\"rw\"\n",
            ),
            POLICY.into(),
            "system.xml:38:9: document: `<map` is never closed: no `>` or `/>` before the next tag at 40:9",
        ),
        (
            "a mismatched end tag",
            sys("</system>", "</sys>"),
            POLICY.into(),
            "system.xml:93:1: document: expected 'system' tag, not 'sys'",
        ),
    ]);
}

/// Syntax mistakes are located where they are, not where the parser
/// notices them: a value missing its closing quote at the quote's place
/// (not at the next attribute), a stray `>` at that `>` (not at the
/// parent's end tag), in either file.
#[test]
fn syntax_mistakes_are_located_where_they_are() {
    let sys = |from: &str, to: &str| edit(SYSTEM, from, to);
    let pol = |from: &str, to: &str| edit(POLICY, from, to);
    exactly(&[
        (
            "a value missing its closing quote",
            sys(
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\"",
                "<map mr=\"edu_a_command vaddr=\"0x13000000\"",
            ),
            POLICY.into(),
            "system.xml:38:31: document: the value of `mr` has no closing `\"`: `vaddr=` reads as part of it",
        ),
        (
            "a value missing its closing quote before the last attribute",
            sys(
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\" perms",
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000 perms",
            ),
            POLICY.into(),
            "system.xml:38:50: document: the value of `vaddr` has no closing `\"`: `perms=` reads as part of it",
        ),
        (
            "a stray `>` inside a start tag",
            sys(
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\"",
                "<map mr=\"edu_a_command\" > vaddr=\"0x13000000\"",
            ),
            POLICY.into(),
            "system.xml:38:33: document: this `>` ends `<map` (at 38:9), and `vaddr=` after it reads as one of its attributes: a stray `>`?",
        ),
        (
            "a duplicate attribute, at the second",
            sys(
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\" perms=\"rw\"",
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\" perms=\"rw\" vaddr=\"0x1\"",
            ),
            POLICY.into(),
            "system.xml:38:63: document: attribute 'vaddr' is already defined",
        ),
        (
            "a bad attribute value, at the attribute",
            sys(
                "<map mr=\"edu_a_command\" vaddr=\"0x13000000\"",
                "<map mr=\"edu_a_command\" vaddr=\"0x1300zz00\"",
            ),
            POLICY.into(),
            "system.xml:38:33: <map mr=\"edu_a_command\"> attribute `vaddr`: `0x1300zz00` is not a number",
        ),
        (
            "a value missing its closing quote in iommu.xml",
            SYSTEM.into(),
            pol(
                "<client pd=\"edu_a\" command_page",
                "<client pd=\"edu_a command_page",
            ),
            "iommu.xml:16:22: document: the value of `pd` has no closing `\"`: `command_page=` reads as part of it",
        ),
        (
            "a stray `>` in iommu.xml",
            SYSTEM.into(),
            pol("<dma mr=\"edu_a_dma\" />", "<dma > mr=\"edu_a_dma\" />"),
            "iommu.xml:18:14: document: this `>` ends `<dma` (at 18:9), and `mr=` after it reads as one of its attributes: a stray `>`?",
        ),
    ]);
}

/// What the tool's parser accepts (a UTF-8 byte-order mark, character
/// references, CDATA) reads as the plain fixtures do, in both files; and
/// after the first line, a byte-order mark moves no error's position.
#[test]
fn what_the_tool_accepts_reads_the_same() {
    let system = format!(
        "\u{feff}{}",
        edit(
            &edit(
                SYSTEM,
                "<memory_region name=\"edu_a_dma\" size",
                "<memory_region name=\"edu_a&#x5f;dma\" size",
            ),
            "<!-- The server's own memory. -->",
            "<![CDATA[ <memory_region name=\"not_an_element\" /> ]]>",
        )
    );
    let policy = format!(
        "\u{feff}{}",
        edit(
            POLICY,
            "<dma mr=\"edu_a_dma\" />",
            "<dma mr=\"edu&#95;a_dma\" /><![CDATA[ <dma mr=\"nope\" /> ]]>",
        )
    );
    let accepted = load(&system, &policy).expect("a BOM, character references and CDATA");
    assert_eq!(accepted, load(SYSTEM, POLICY).unwrap());
    exactly(&[(
        "a register frame too small, after a byte-order mark",
        edit(
            &system,
            "name=\"smmu_regs\" size=\"0x20000\"",
            "name=\"smmu_regs\" size=\"0x10000\"",
        ),
        policy,
        "system.xml:11:37: <memory_region name=\"smmu_regs\"> attribute `size`: `smmu_regs` is the SMMUv3 register frame (iommu.xml:13): 0x20000 bytes, not 0x10000",
    )]);
}

/// Two channels giving one PD the same id: two clients on one server
/// channel would share one identity.
#[test]
fn one_channel_id_per_channel() {
    let doubled = SYSTEM.replacen(
        "<end pd=\"iommu_server\" id=\"2\"",
        "<end pd=\"iommu_server\" id=\"1\"",
        1,
    );
    assert_ne!(
        doubled, SYSTEM,
        "the shipped system gives the server channel 2"
    );
    exactly(&[(
        "two clients on server channel 1",
        doubled,
        POLICY.into(),
        "system.xml:81:32: <end pd=\"iommu_server\"> attribute `id`: `iommu_server` already uses id 1 for a channel",
    )]);
}

#[test]
fn sidecar_schema_is_strict() {
    let pol = |from: &str, to: &str| edit(POLICY, from, to);
    exactly(&[
        (
            "an attribute the sidecar does not know",
            SYSTEM.into(),
            pol("<quota objects=\"4\"", "<quota objcts=\"4\""),
            "iommu.xml:37:16: <quota> attribute `objcts`: unknown attribute (expected one of objects, ioases, mapped_pages, table_pages, hwpts, mappings)",
        ),
        (
            "more objects than a client may have",
            SYSTEM.into(),
            pol("objects=\"16\" ioases", "objects=\"65\" ioases"),
            "iommu.xml:17:16: <quota> attribute `objects`: at most 64",
        ),
        (
            "a DMA mask that is not 2^n - 1",
            SYSTEM.into(),
            pol("dma_mask=\"0xffffffffff\"", "dma_mask=\"0xfffffffff0\""),
            "iommu.xml:19:46: <device name=\"edu_a\"> attribute `dma_mask`: a DMA mask is 2^n - 1, at least a page",
        ),
        (
            "an element the sidecar does not know",
            SYSTEM.into(),
            pol("<page_tables", "<pagetables"),
            "iommu.xml:14:5: <pagetables mr=\"iommu_page_tables\">: unknown element (expected smmu, page_tables, client or static_device)",
        ),
    ]);
}

#[test]
fn table_page_quotas_must_fit_the_pool() {
    // 64 pages of page tables; 16 + 16 promised. 40 + 16 still fit, 50 + 16
    // do not.
    let fits = edit(POLICY, "table_pages=\"16\"", "table_pages=\"40\"");
    assert!(load(SYSTEM, &fits).is_ok());
    exactly(&[(
        "66 table pages promised from a pool of 64",
        SYSTEM.into(),
        edit(POLICY, "table_pages=\"16\"", "table_pages=\"50\""),
        "iommu.xml:14:18: <page_tables mr=\"iommu_page_tables\"> attribute `mr`: the clients' table_pages quotas add up to 66 pages, more than the 64 of region `iommu_page_tables` (system.xml:13)",
    )]);
}

#[test]
fn every_quota_names_its_hwpts_and_ioases() {
    exactly(&[
        (
            "a quota without hwpts",
            SYSTEM.into(),
            edit(POLICY, " hwpts=\"4\"", ""),
            "iommu.xml:17:9: <quota> attribute `hwpts`: missing",
        ),
        (
            "a quota without ioases",
            SYSTEM.into(),
            edit(POLICY, " ioases=\"4\"", ""),
            "iommu.xml:17:9: <quota> attribute `ioases`: missing",
        ),
    ]);
}

/// The IOMMU policy's own rules, each refused in the file and at the
/// element that breaks it.
#[test]
fn policy_rules_the_running_system_needs() {
    let pol = |from: &str, to: &str| edit(POLICY, from, to);
    // A stream ID wider than the SMMU decodes (16 bits unless said).
    let wide = pol("stream_id=\"0x8\"", "stream_id=\"0x10008\"");
    exactly(&[
        (
            "a client without the setvar its library finds the page through",
            edit(
                SYSTEM,
                "<map mr=\"edu_a_command\" vaddr=\"0x20000000\" perms=\"rw\" setvar_vaddr=\"command_page\" />",
                "<map mr=\"edu_a_command\" vaddr=\"0x20000000\" perms=\"rw\" />",
            ),
            POLICY.into(),
            "system.xml:59:9: <map mr=\"edu_a_command\"> attribute `setvar_vaddr`: a client finds its command page through setvar_vaddr=\"command_page\"",
        ),
        (
            "one device name in two clients",
            SYSTEM.into(),
            pol("<device name=\"edu_b\"", "<device name=\"edu_a\""),
            "iommu.xml:29:17: <device name=\"edu_a\"> attribute `name`: client `edu_a` already has a device named `edu_a`",
        ),
        // Reserved windows in whole pages, within the device's DMA mask.
        (
            "a reserved window starting off a page boundary",
            SYSTEM.into(),
            pol("start=\"0x08000000\"", "start=\"0x08000100\""),
            "iommu.xml:20:23: <reserved> attribute `start`: a reserved window starts on a page",
        ),
        (
            "a reserved window ending off a page boundary",
            SYSTEM.into(),
            pol("last=\"0x0803ffff\"", "last=\"0x0803fffe\""),
            "iommu.xml:20:42: <reserved> attribute `last`: a reserved window ends on a page's last byte",
        ),
        (
            "a reserved window beyond the DMA mask",
            SYSTEM.into(),
            pol("last=\"0xffffffffff\"", "last=\"0x1ffffffffff\""),
            "iommu.xml:22:44: <reserved> attribute `last`: beyond the device's DMA mask 0xffffffffff: it can never emit it",
        ),
        (
            "a stream ID wider than the default 16 bits",
            SYSTEM.into(),
            wide.clone(),
            "iommu.xml:19:30: <device name=\"edu_a\"> attribute `stream_id`: stream 0x10008 is wider than the SMMU's 16 stream ID bits",
        ),
        (
            "a stream ID wider than the SMMU's sid_bits",
            SYSTEM.into(),
            pol(
                "<smmu mr=\"smmu_regs\"",
                "<smmu sid_bits=\"4\" mr=\"smmu_regs\"",
            ),
            "iommu.xml:29:30: <device name=\"edu_b\"> attribute `stream_id`: stream 0x10 is wider than the SMMU's 4 stream ID bits",
        ),
        (
            "sid_bits an SMMUv3 cannot have",
            SYSTEM.into(),
            pol(
                "<smmu mr=\"smmu_regs\"",
                "<smmu sid_bits=\"0\" mr=\"smmu_regs\"",
            ),
            "iommu.xml:13:11: <smmu mr=\"smmu_regs\"> attribute `sid_bits`: an SMMUv3 decodes 1 to 32 stream ID bits",
        ),
    ]);
    // A stream beyond 16 bits is no PCI requester ID, so that device has
    // no configuration page (tests/address_checks.rs).
    load(
        SYSTEM,
        &edit(
            &edit(
                &wide,
                "<smmu mr=\"smmu_regs\"",
                "<smmu sid_bits=\"17\" mr=\"smmu_regs\"",
            ),
            " config_mr=\"edu_a_config\"",
            "",
        ),
    )
    .expect("17 stream ID bits hold it");
}

/// `qemu="MODEL,options"` puts a device on QEMU virt's root bus where its
/// stream ID says, for `make run`; a value that cannot be placed there or
/// would fight that placement is refused.
#[test]
fn qemu_devices_follow_the_stream_ids() {
    let with = |a: &str, b: &str| {
        edit(
            &edit(
                POLICY,
                "stream_id=\"0x8\"",
                &format!("stream_id=\"0x8\" qemu=\"{a}\""),
            ),
            "stream_id=\"0x10\"",
            &format!("stream_id=\"0x10\" qemu=\"{b}\""),
        )
    };
    let config = load(SYSTEM, &with("edu,dma_mask=0xffffffffff", "e1000")).unwrap();
    assert_eq!(
        sysgen::qemu_devices(&config),
        [
            "-device",
            "edu,dma_mask=0xffffffffff,addr=01.0",
            "-device",
            "e1000,addr=02.0"
        ]
    );
    // Without the attribute a device is real hardware: nothing to add.
    assert!(sysgen::qemu_devices(&load(SYSTEM, POLICY).unwrap()).is_empty());

    exactly(&[
        (
            "no model",
            SYSTEM.into(),
            with("", "edu"),
            "iommu.xml:19:46: <device name=\"edu_a\"> attribute `qemu`: a QEMU device model first (such as `edu`), then its options",
        ),
        (
            "options but no model",
            SYSTEM.into(),
            with(",addr=01.0", "edu"),
            "iommu.xml:19:46: <device name=\"edu_a\"> attribute `qemu`: a QEMU device model first (such as `edu`), then its options",
        ),
        (
            "an address of its own",
            SYSTEM.into(),
            with("edu,addr=03.0", "edu"),
            "iommu.xml:19:46: <device name=\"edu_a\"> attribute `qemu`: `addr=03.0`: the stream ID places the device (bus 0, devfn = stream_id & 0xff)",
        ),
        (
            "a bus of its own",
            SYSTEM.into(),
            with("edu,bus=pcie.1", "edu"),
            "iommu.xml:19:46: <device name=\"edu_a\"> attribute `qemu`: `bus=pcie.1`: the stream ID places the device (bus 0, devfn = stream_id & 0xff)",
        ),
        (
            "a space in the options",
            SYSTEM.into(),
            with("edu dma_mask=1", "edu"),
            "iommu.xml:19:46: <device name=\"edu_a\"> attribute `qemu`: ` ` is not allowed in a QEMU device's options",
        ),
        (
            "a semicolon in the options",
            SYSTEM.into(),
            with("edu;reboot", "edu"),
            "iommu.xml:19:46: <device name=\"edu_a\"> attribute `qemu`: `;` is not allowed in a QEMU device's options",
        ),
        (
            "a stream off bus 0",
            SYSTEM.into(),
            edit(
                POLICY,
                "stream_id=\"0x8\"",
                "stream_id=\"0x108\" qemu=\"edu\"",
            ),
            "iommu.xml:19:48: <device name=\"edu_a\"> attribute `qemu`: stream 0x108 is not on bus 0, the only bus of QEMU virt's PCI host",
        ),
        (
            "the host bridge's place",
            SYSTEM.into(),
            edit(
                POLICY,
                "stream_id=\"0x8\"",
                "stream_id=\"0x1\" qemu=\"edu\"",
            ),
            "iommu.xml:19:46: <device name=\"edu_a\"> attribute `qemu`: device 0 of bus 0 is QEMU virt's host bridge",
        ),
    ]);
}

/// Child PDs as the Microkit tool takes them: an `id` on children only,
/// distinct among a parent's children; here also 0..=61 (the tool does
/// not bound it; a parent's TCB capabilities are a block of 64) and at
/// most 63 PDs in all. A client that is a child knows its parent.
#[test]
fn child_protection_domains() {
    const EDU_B: &str = r#"    <protection_domain name="edu_b" priority="90">
        <program_image path="edu_driver.elf" />
        <map mr="edu_b_command" vaddr="0x20000000" perms="rw" setvar_vaddr="command_page" />
        <map mr="edu_b_config" vaddr="0x20001000" perms="rw" cached="false" setvar_vaddr="pci_config" />
        <map mr="edu_b_bar" vaddr="0x20100000" perms="rw" cached="false" setvar_vaddr="edu_regs" />
        <map mr="edu_b_dma" vaddr="0x30000000" perms="rw" setvar_vaddr="dma_buffer" />
        <setvar symbol="edu_bar_paddr" region_paddr="edu_b_bar" />
    </protection_domain>
"#;
    const MANAGER_IMAGE: &str = r#"<program_image path="manager.elf" />"#;
    let nested = |id: &str| {
        edit(
            &edit(SYSTEM, EDU_B, ""),
            MANAGER_IMAGE,
            &format!(
                "{MANAGER_IMAGE}\n{}",
                EDU_B.replacen("priority=\"90\"", &format!("priority=\"90\" {id}"), 1)
            ),
        )
    };
    let config = load(&nested("id=\"5\""), POLICY).expect("a client nested in the manager");
    let edu_b = config.clients.iter().find(|c| c.pd == "edu_b").unwrap();
    assert_eq!(
        edu_b.child_of.as_ref().map(|o| (o.parent.as_str(), o.id)),
        Some(("manager", 5))
    );
    assert!(config
        .clients
        .iter()
        .filter(|c| c.pd != "edu_b")
        .all(|c| c.child_of.is_none()));

    let twins = edit(
        &nested("id=\"5\""),
        MANAGER_IMAGE,
        &format!(
            "{MANAGER_IMAGE}\n<protection_domain name=\"twin\" id=\"5\"><program_image path=\"t.elf\" /></protection_domain>"
        ),
    );
    let crowd: String = (0..60)
        .map(|i| format!("<protection_domain name=\"pd{i}\"><program_image path=\"x.elf\" /></protection_domain>\n"))
        .collect();
    exactly(&[
        (
            "a child without an id",
            nested(""),
            POLICY.into(),
            "system.xml:54:5: <protection_domain name=\"edu_b\">: a child protection domain needs an id",
        ),
        (
            "a child id beyond 61",
            nested("id=\"62\""),
            POLICY.into(),
            "system.xml:54:51: <protection_domain name=\"edu_b\"> attribute `id`: must be 0..=61",
        ),
        (
            "an id on a top-level PD",
            edit(
                SYSTEM,
                "<protection_domain name=\"manager\" priority=\"150\"",
                "<protection_domain name=\"manager\" priority=\"150\" id=\"1\"",
            ),
            POLICY.into(),
            "system.xml:52:54: <protection_domain name=\"manager\"> attribute `id`: only a child protection domain has an id",
        ),
        (
            "two children with one id",
            twins,
            POLICY.into(),
            "system.xml:55:51: <protection_domain name=\"edu_b\"> attribute `id`: `manager` already has child `twin` with id 5",
        ),
        (
            "64 protection domains",
            edit(SYSTEM, "</system>", &format!("{crowd}</system>")),
            POLICY.into(),
            "system.xml:152:1: <protection_domain name=\"pd59\">: more than 63 protection domains (the Microkit tool's limit)",
        ),
    ]);
}

/// An error about an element of system.xml (a memory region's size, a
/// map, a channel end) is reported there, saying where iommu.xml uses it,
/// not at the iommu.xml element that refers to it; and a name system.xml
/// itself gets wrong is refused in system.xml before iommu.xml looks it
/// up.
#[test]
fn errors_point_at_the_file_at_fault() {
    let sys = |from: &str, to: &str| edit(SYSTEM, from, to);
    let pol = |from: &str, to: &str| edit(POLICY, from, to);
    exactly(&[
        (
            "a register frame too small",
            sys(
                "name=\"smmu_regs\" size=\"0x20000\"",
                "name=\"smmu_regs\" size=\"0x10000\"",
            ),
            POLICY.into(),
            "system.xml:11:37: <memory_region name=\"smmu_regs\"> attribute `size`: `smmu_regs` is the SMMUv3 register frame (iommu.xml:13): 0x20000 bytes, not 0x10000",
        ),
        (
            "a command page of two pages",
            // Moved out of the way of the maps after it in both PDs.
            edit(
                &edit(
                    &sys(
                        "name=\"edu_a_command\" size=\"0x1000\"",
                        "name=\"edu_a_command\" size=\"0x2000\"",
                    ),
                    "mr=\"edu_a_command\" vaddr=\"0x13000000\"",
                    "mr=\"edu_a_command\" vaddr=\"0x13100000\"",
                ),
                "mr=\"edu_a_command\" vaddr=\"0x20000000\"",
                "mr=\"edu_a_command\" vaddr=\"0x21000000\"",
            ),
            POLICY.into(),
            "system.xml:22:41: <memory_region name=\"edu_a_command\"> attribute `size`: `edu_a_command` is the command page of `edu_a` (iommu.xml:16): one 0x1000-byte page",
        ),
        (
            "a client mapping the server's page tables",
            sys(
                "<map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
                "<map mr=\"iommu_page_tables\" vaddr=\"0x40000000\" /><map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
            ),
            POLICY.into(),
            "system.xml:62:14: <map mr=\"iommu_page_tables\"> attribute `mr`: `edu_a` is a client (iommu.xml:16) and `iommu_page_tables` the server's own memory (iommu.xml:14): no client maps it",
        ),
        (
            "a DMA region without a way to its physical address",
            sys(
                "<setvar symbol=\"edu_a_dma_paddr\" region_paddr=\"edu_a_dma\" />",
                "",
            ),
            POLICY.into(),
            "system.xml:25:5: <memory_region name=\"edu_a_dma\">: the server `iommu_server` cannot learn the physical address of `edu_a_dma`, named at iommu.xml:18: give it a phys_addr or add <setvar symbol=\"...\" region_paddr=\"edu_a_dma\"/> to the server",
        ),
        (
            "a DMA region mapped into the server",
            sys(
                "<map mr=\"edu_b_config\" vaddr=\"0x14001000\" perms=\"rw\" cached=\"false\" />",
                "<map mr=\"edu_b_config\" vaddr=\"0x14001000\" perms=\"rw\" cached=\"false\" /><map mr=\"edu_a_dma\" vaddr=\"0x15000000\" />",
            ),
            POLICY.into(),
            "system.xml:42:84: <map mr=\"edu_a_dma\"> attribute `mr`: `edu_a_dma` is DMA memory of `edu_a` (iommu.xml:18): a DMA region must be the client's memory only, not mapped into the server",
        ),
        (
            "a DMA region mapped off a page boundary",
            sys(
                "<map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
                "<map mr=\"edu_a_dma\" vaddr=\"0x30000800\"",
            ),
            POLICY.into(),
            "system.xml:62:29: <map mr=\"edu_a_dma\"> attribute `vaddr`: `edu_a_dma` is DMA memory of `edu_a` (iommu.xml:18): DMA regions are whole pages",
        ),
        (
            "a DMA region of part of a page",
            sys(
                "name=\"edu_a_dma\" size=\"0x10000\"",
                "name=\"edu_a_dma\" size=\"0x10800\"",
            ),
            POLICY.into(),
            "system.xml:25:37: <memory_region name=\"edu_a_dma\"> attribute `size`: `edu_a_dma` is DMA memory of `edu_a` (iommu.xml:18): DMA regions are whole pages",
        ),
        (
            "a map of a region system.xml misspells",
            sys(
                "<map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
                "<map mr=\"edu_a_dam\" vaddr=\"0x30000000\"",
            ),
            POLICY.into(),
            "system.xml:62:14: <map mr=\"edu_a_dam\"> attribute `mr`: no <memory_region name=\"edu_a_dam\">; system.xml has `edu_a_dma` (system.xml:25)",
        ),
        (
            "a setvar of a region system.xml misspells",
            sys("region_paddr=\"edu_a_dma\"", "region_paddr=\"edu_a_dm\""),
            POLICY.into(),
            "system.xml:45:42: <setvar symbol=\"edu_a_dma_paddr\"> attribute `region_paddr`: no <memory_region name=\"edu_a_dm\">; system.xml has `edu_a_dma` (system.xml:25)",
        ),
        (
            "a channel end naming a PD system.xml misspells",
            sys(
                "<end pd=\"edu_a\" id=\"0\" pp=\"true\" />",
                "<end pd=\"edu_aa\" id=\"0\" pp=\"true\" />",
            ),
            POLICY.into(),
            "system.xml:78:14: <end pd=\"edu_aa\"> attribute `pd`: no <protection_domain name=\"edu_aa\">; system.xml has `edu_a` (system.xml:57)",
        ),
        (
            "more table pages promised than the pool holds",
            SYSTEM.into(),
            pol("table_pages=\"16\"", "table_pages=\"50\""),
            "iommu.xml:14:18: <page_tables mr=\"iommu_page_tables\"> attribute `mr`: the clients' table_pages quotas add up to 66 pages, more than the 64 of region `iommu_page_tables` (system.xml:13)",
        ),
    ]);
}

/// A name iommu.xml gives that system.xml lacks is refused at the
/// reference in iommu.xml; when system.xml has a near miss (two edits
/// away, or the same but for case) the error says where, since the typo
/// may well be system.xml's.
#[test]
fn lookups_point_at_near_misses_in_system_xml() {
    let pol = |from: &str, to: &str| edit(POLICY, from, to);
    exactly(&[
        (
            "a server system.xml misspells everywhere",
            SYSTEM.replace("iommu_server", "iommu_sever"),
            POLICY.into(),
            "iommu.xml:12:8: <iommu> attribute `server`: no <protection_domain name=\"iommu_server\"> in system.xml; system.xml has `iommu_sever` (system.xml:33)",
        ),
        (
            "a client PD iommu.xml spells in capitals",
            SYSTEM.into(),
            pol("<client pd=\"edu_a\"", "<client pd=\"EDU_A\""),
            "iommu.xml:16:13: <client pd=\"EDU_A\"> attribute `pd`: no <protection_domain name=\"EDU_A\"> in system.xml; system.xml has `edu_a` (system.xml:57)",
        ),
        (
            "server memory system.xml misspells everywhere",
            SYSTEM.replace("\"smmu_memory\"", "\"smmu_memry\""),
            POLICY.into(),
            "iommu.xml:13:26: <smmu mr=\"smmu_regs\"> attribute `memory`: no <memory_region name=\"smmu_memory\"> in system.xml; system.xml has `smmu_memry` (system.xml:12)",
        ),
        (
            "a command page iommu.xml misspells",
            SYSTEM.into(),
            pol(
                "command_page=\"edu_a_command\"",
                "command_page=\"edu_a_comand\"",
            ),
            "iommu.xml:16:24: <client pd=\"edu_a\"> attribute `command_page`: no <memory_region name=\"edu_a_comand\"> in system.xml; system.xml has `edu_a_command` (system.xml:22)",
        ),
        (
            "a DMA region iommu.xml misspells",
            SYSTEM.into(),
            pol("<dma mr=\"edu_a_dma\" />", "<dma mr=\"edu_a_dma_\" />"),
            "iommu.xml:18:14: <dma mr=\"edu_a_dma_\"> attribute `mr`: no <memory_region name=\"edu_a_dma_\"> in system.xml; system.xml has `edu_a_dma` (system.xml:25)",
        ),
        (
            "a client mapping another's DMA region",
            edit(
                SYSTEM,
                "<map mr=\"edu_a_dma\" vaddr=\"0x30000000\"",
                "<map mr=\"edu_b_dma\" vaddr=\"0x30000000\"",
            ),
            POLICY.into(),
            "iommu.xml:18:14: <dma mr=\"edu_a_dma\"> attribute `mr`: `edu_a_dma` is not mapped into `edu_a`; system.xml has `edu_b_dma` (system.xml:62)",
        ),
        (
            "a client mapping another's command page",
            edit(
                SYSTEM,
                "<map mr=\"edu_a_command\" vaddr=\"0x20000000\"",
                "<map mr=\"edu_b_command\" vaddr=\"0x20000000\"",
            ),
            POLICY.into(),
            "iommu.xml:16:24: <client pd=\"edu_a\"> attribute `command_page`: `edu_a_command` is not mapped into `edu_a`; system.xml has `edu_b_command` (system.xml:59)",
        ),
        (
            "the server mapping a near namesake of its page tables",
            edit(
                &edit(
                    SYSTEM,
                    "<map mr=\"iommu_page_tables\" vaddr=\"0x12000000\"",
                    "<map mr=\"iommu_page_table\" vaddr=\"0x12000000\"",
                ),
                "<memory_region name=\"iommu_page_tables\" size=\"0x40000\" />",
                "<memory_region name=\"iommu_page_tables\" size=\"0x40000\" /><memory_region name=\"iommu_page_table\" size=\"0x40000\" />",
            ),
            POLICY.into(),
            "iommu.xml:14:18: <page_tables mr=\"iommu_page_tables\"> attribute `mr`: `iommu_page_tables` is not mapped into the server `iommu_server`; system.xml has `iommu_page_table` (system.xml:37)",
        ),
        (
            "a configuration page iommu.xml misspells",
            SYSTEM.into(),
            pol("config_mr=\"edu_a_config\"", "config_mr=\"edu_a_confg\""),
            "iommu.xml:19:70: <device name=\"edu_a\"> attribute `config_mr`: `edu_a_confg` is not mapped into the server; system.xml has `edu_a_config` (system.xml:41)",
        ),
    ]);
}

/// A DMA region the client maps read-only is accepted, as sDDF's transmit
/// data regions are: the client's rights bound the device's, so the
/// server gives its devices read access alone (MAP with WRITEABLE is
/// EFAULT there: iommu-server/tests/ioas.rs).
#[test]
fn a_read_only_dma_region_is_read_only_for_devices() {
    let config = load(
        &edit(
            SYSTEM,
            r#"<map mr="edu_a_dma" vaddr="0x30000000" perms="rw""#,
            r#"<map mr="edu_a_dma" vaddr="0x30000000" perms="r""#,
        ),
        POLICY,
    )
    .expect("a read-only DMA region");
    let region = &config.clients[0].regions[0];
    assert_eq!(
        (region.mr.as_str(), region.perms.read, region.perms.write),
        ("edu_a_dma", true, false)
    );
    let rust = sysgen::gen::rust(&config, &["system.xml", "iommu.xml"]);
    assert!(rust.contains(
        r#"RegionSpec { mr: "edu_a_dma", vaddr: 0x30000000, size: 0x10000, perms: Perms { read: true, write: false }"#
    ));
}

/// A C PD's `iommu_config.h`: its channels by peer and its client entry,
/// from the description (never copied by hand).
#[test]
fn a_c_pd_gets_its_configuration_as_a_header() {
    let config = load(SYSTEM, POLICY).unwrap();
    let header = sysgen::gen::c_config(&config, "edu_b").expect("edu_b is a PD with channels");
    for line in [
        "#define CHANNEL_TO_IOMMU_SERVER 0\n",
        "#define CHANNEL_TO_MANAGER 1\n",
        "#define IOMMU_CLIENT_INDEX 1\n",
        "#define IOMMU_SERVER_CHANNEL 0\n",
        "#define IOMMU_COMMAND_PAGE_VADDR 0x20000000\n",
        "#define IOMMU_DMA_EDU_B_DMA_VADDR 0x30000000\n",
        "#define IOMMU_DMA_EDU_B_DMA_SIZE 0x10000\n",
        "#define IOMMU_DEVICE_EDU_B 0\n",
        "#define IOMMU_DEVICE_EDU_B_STREAM_ID 0x10\n",
    ] {
        assert!(header.contains(line), "no `{}` in:\n{header}", line.trim());
    }
    // Renumbering a channel in system.xml renumbers the header.
    let renumbered = load(
        &edit(
            SYSTEM,
            "<end pd=\"manager\" id=\"1\" />\n        <end pd=\"edu_b\" id=\"1\" />",
            "<end pd=\"manager\" id=\"1\" />\n        <end pd=\"edu_b\" id=\"7\" />",
        ),
        POLICY,
    )
    .unwrap();
    assert!(sysgen::gen::c_config(&renumbered, "edu_b")
        .unwrap()
        .contains("#define CHANNEL_TO_MANAGER 7\n"));
    // And the Rust PDs' table, which `iommu_system::channel_to` reads.
    let rust = sysgen::gen::rust(&renumbered, &["system.xml", "iommu.xml"]);
    assert!(rust.contains("(\"edu_b\", \"manager\", channel(7)),"));
    assert!(rust.contains("(\"manager\", \"edu_b\", channel(1)),"));
    assert_eq!(sysgen::gen::c_config(&config, "nobody"), None);
}

/// The NVMe system's pair (sysgen/tests/fixtures/nvme_*.xml, a copy of the
/// example with its block clients' shares of the disk).
const NVME_SYSTEM: &str = include_str!("fixtures/nvme_system.xml");
const NVME_POLICY: &str = include_str!("fixtures/nvme_iommu.xml");

/// Each block client's share of its driver's disk is checked: present on
/// every block client's data region and only there, given whole, at
/// least a block, not wrapping, on the disk, and disjoint from the
/// others; the disk is one per driver and not empty.
#[test]
fn block_clients_shares_of_the_disk() {
    let pol = |from: &str, to: &str| edit(NVME_POLICY, from, to);
    let strict =
        "<dma mr=\"blk_strict_data\" mode=\"strict\" first_block=\"4096\" blocks=\"4096\" />";
    let with = |attrs: &str| {
        pol(
            strict,
            &format!("<dma mr=\"blk_strict_data\" mode=\"strict\" {attrs} />"),
        )
    };
    exactly(&[
        (
            "a block client without a share",
            NVME_SYSTEM.into(),
            with(""),
            "iommu.xml:49:9: <dma mr=\"blk_strict_data\">: `blk_strict_data` is block client `blk_strict`'s data region: give its share of the disk (iommu.xml:50) as first_block and blocks",
        ),
        (
            "two shares overlapping",
            NVME_SYSTEM.into(),
            with("first_block=\"4000\" blocks=\"100\""),
            "iommu.xml:49:49: <dma mr=\"blk_strict_data\"> attribute `first_block`: blocks 4000..4100 overlap `blk_static_data`'s share, blocks 0..4096 (iommu.xml:48)",
        ),
        (
            "a share past the end of the disk",
            NVME_SYSTEM.into(),
            with("first_block=\"4096\" blocks=\"4097\""),
            "iommu.xml:49:68: <dma mr=\"blk_strict_data\"> attribute `blocks`: blocks 4096..8193 end past the disk's 8192 (iommu.xml:50)",
        ),
        (
            "a share whose end wraps",
            NVME_SYSTEM.into(),
            with("first_block=\"0xffffffffffffff00\" blocks=\"0x100\""),
            "iommu.xml:49:82: <dma mr=\"blk_strict_data\"> attribute `blocks`: 0xffffffffffffff00 + 0x100 blocks wraps past 2^64",
        ),
        (
            "an empty share",
            NVME_SYSTEM.into(),
            with("first_block=\"4096\" blocks=\"0\""),
            "iommu.xml:49:68: <dma mr=\"blk_strict_data\"> attribute `blocks`: a share of the disk is at least one block",
        ),
        (
            "half a share",
            NVME_SYSTEM.into(),
            with("first_block=\"4096\""),
            "iommu.xml:49:9: <dma mr=\"blk_strict_data\"> attribute `blocks`: missing: a share of the disk is first_block and blocks",
        ),
        (
            "the other half",
            NVME_SYSTEM.into(),
            with("blocks=\"4096\""),
            "iommu.xml:49:9: <dma mr=\"blk_strict_data\"> attribute `first_block`: missing: a share of the disk is first_block and blocks",
        ),
        (
            "a share on the driver's own memory",
            NVME_SYSTEM.into(),
            pol(
                "<dma mr=\"nvme_queues\" />",
                "<dma mr=\"nvme_queues\" first_block=\"8000\" blocks=\"10\" />",
            ),
            "iommu.xml:47:31: <dma mr=\"nvme_queues\"> attribute `first_block`: `nvme_queues` is no block client's data region (no other PD maps it): a share of the disk is a block client's",
        ),
        (
            "shares of a disk the driver does not have",
            NVME_SYSTEM.into(),
            pol(" disk_blocks=\"8192\"", ""),
            "iommu.xml:48:49: <dma mr=\"blk_static_data\"> attribute `first_block`: a share of a disk, but `nvme_driver` drives none (no <device disk_blocks>)",
        ),
        (
            "a second disk for one driver",
            NVME_SYSTEM.into(),
            pol(
                "        </device>\n    </client>\n\n    <client pd=\"manager\"",
                "        </device>\n        <device name=\"nvme2\" stream_id=\"0x20\" dma_mask=\"0xffffffffff\" disk_blocks=\"16\" />\n    </client>\n\n    <client pd=\"manager\"",
            ),
            "iommu.xml:56:71: <device name=\"nvme2\"> attribute `disk_blocks`: `nvme_driver` already drives a disk, device `nvme` (iommu.xml:50)",
        ),
        (
            "an empty disk",
            NVME_SYSTEM.into(),
            pol("disk_blocks=\"8192\"", "disk_blocks=\"0\""),
            "iommu.xml:51:59: <device name=\"nvme\"> attribute `disk_blocks`: a disk has at least one block",
        ),
    ]);
    // The shipped shares reach the generated configuration.
    let config = load(NVME_SYSTEM, NVME_POLICY).unwrap();
    let rust = sysgen::gen::rust(&config, &["system.xml", "iommu.xml"]);
    assert!(rust.contains("shared_with: Some(\"blk_strict\"), share: Some(Share { first_block: 0x1000, blocks: 0x1000 }), origin: Origin { file: \"iommu.xml\", line: "));
    assert!(rust.contains("disk_blocks: Some(8192),"));
    let header = sysgen::gen::c_config(&config, "nvme_driver").unwrap();
    assert!(header.contains("#define IOMMU_DMA_BLK_STRICT_DATA_FIRST_BLOCK 0x1000\n"));
}

/// `iommu_config.h` says what `RegionSpec` tells Rust PDs about a DMA
/// region: its mode and the one other PD that maps it.
#[test]
fn a_c_pd_learns_each_regions_mode_and_sharer() {
    let config = load(SYSTEM, POLICY).unwrap();
    let header = sysgen::gen::c_config(&config, "edu_b").unwrap();
    assert!(header.contains("#define IOMMU_DMA_EDU_B_DMA_MODE IOMMU_DMA_MODE_STATIC\n"));
    assert!(header.contains("#define IOMMU_DMA_MODE_STATIC 0\n#define IOMMU_DMA_MODE_STRICT 1\n"));
    assert!(!header.contains("SHARED_WITH "), "{header}");

    // Strict, and mapped by the manager too.
    let shared = load(
        &edit(
            SYSTEM,
            r#"<map mr="manager_command" vaddr="0x20000000" perms="rw" setvar_vaddr="command_page" />"#,
            r#"<map mr="manager_command" vaddr="0x20000000" perms="rw" setvar_vaddr="command_page" />
        <map mr="edu_b_dma" vaddr="0x50000000" perms="rw" />"#,
        ),
        &edit(POLICY, r#"<dma mr="edu_b_dma" />"#, r#"<dma mr="edu_b_dma" mode="strict" />"#),
    )
    .unwrap();
    let region = &shared.clients[1].regions[0];
    assert_eq!(
        (region.strict, region.shared_with.as_deref()),
        (true, Some("manager"))
    );
    let header = sysgen::gen::c_config(&shared, "edu_b").unwrap();
    for line in [
        "#define IOMMU_DMA_EDU_B_DMA_VADDR 0x30000000\n",
        "#define IOMMU_DMA_EDU_B_DMA_SIZE 0x10000\n",
        "#define IOMMU_DMA_EDU_B_DMA_MODE IOMMU_DMA_MODE_STRICT\n",
        "#define IOMMU_DMA_EDU_B_DMA_SHARED_WITH \"manager\"\n",
    ] {
        assert!(header.contains(line), "no `{}` in:\n{header}", line.trim());
    }
    // edu_a's own region stays its own.
    let header = sysgen::gen::c_config(&shared, "edu_a").unwrap();
    assert!(header.contains("#define IOMMU_DMA_EDU_A_DMA_MODE IOMMU_DMA_MODE_STATIC\n"));
    assert!(!header.contains("SHARED_WITH "), "{header}");
}

/// A client has at most as many devices as the server tracks faults for
/// (`MAX_CLIENT_DEVICES`, the server's own constant).
#[test]
fn a_client_has_at_most_the_servers_devices() {
    let extra = |n: u32| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "        <device name=\"extra{i}\" stream_id=\"{:#x}\" dma_mask=\"0xffffffff\" />\n",
                    0x100 + i
                )
            })
            .collect()
    };
    let with = |n: u32| {
        edit(
            POLICY,
            "        <dma mr=\"edu_b_dma\" />\n",
            &format!("        <dma mr=\"edu_b_dma\" />\n{}", extra(n)),
        )
    };
    let bound = iommu_types::config::MAX_CLIENT_DEVICES as u32;
    load(SYSTEM, &with(bound - 1)).expect("edu_b's own device and 63 more");
    exactly(&[(
        "one device more than the server tracks",
        SYSTEM.into(),
        with(bound),
        "iommu.xml:93:9: <device name=\"edu_b\">: more than 64 devices for one client (the server's bound)",
    )]);
}
