//! Microkit's `<virtual_machine>` inside a VMM protection domain: parsed
//! and checked as the Microkit tool (2.3.0, aarch64) checks it, each
//! refusal against its whole located message, and cross-checked against
//! iommu.xml where the VMM gives guest RAM to a device. The fixtures are
//! the example pair (tests/fixtures/) with a VMM added: a client of the
//! server whose guest's RAM is the VMM's DMA memory, at IOVA =
//! guest-physical address.

mod common;

use common::{edit, exactly, load};

const SYSTEM: &str = include_str!("../../tests/fixtures/system.xml");
const POLICY: &str = include_str!("../../tests/fixtures/iommu.xml");

/// The VMM and its guest, appended to the fixtures' system.xml (line 94
/// on); the VM element is at line 105.
const VMM: &str = r#"    <memory_region name="guest_ram" size="0x200000" page_size="0x200000" phys_addr="0x70000000" />
    <memory_region name="vmm_command" size="0x1000" />
    <memory_region name="edu_c_bar" size="0x100000" phys_addr="0x10200000" />
    <protection_domain name="vmm" priority="80">
        <program_image path="vmm.elf" />
        <map mr="vmm_command" vaddr="0x20000000" perms="rw" setvar_vaddr="command_page" />
        <map mr="guest_ram" vaddr="0x40000000" perms="rw" />
        <virtual_machine name="guest" priority="70">
            <vcpu id="0" />
            <map mr="guest_ram" vaddr="0x40000000" perms="rwx" />
            <map mr="edu_c_bar" vaddr="0x10000000" perms="rw" cached="false" />
        </virtual_machine>
    </protection_domain>
    <channel>
        <end pd="iommu_server" id="4" />
        <end pd="vmm" id="0" pp="true" />
    </channel>
</system>"#;

fn system() -> String {
    let s = edit(
        SYSTEM,
        "        <map mr=\"manager_command\" vaddr=\"0x13002000\" perms=\"rw\" />\n",
        "        <map mr=\"manager_command\" vaddr=\"0x13002000\" perms=\"rw\" />\n        <map mr=\"vmm_command\" vaddr=\"0x13003000\" perms=\"rw\" />\n",
    );
    edit(&s, "</system>", VMM)
}

fn policy() -> String {
    edit(
        POLICY,
        "</iommu>",
        r#"    <client pd="vmm" command_page="vmm_command">
        <quota objects="8" ioases="1" mapped_pages="512" table_pages="8" hwpts="1" mappings="8" />
        <dma mr="guest_ram" />
        <device name="edu_c" stream_id="0x18" dma_mask="0xffffffff">
            <reserved start="0x08000000" last="0x0803ffff" />
        </device>
    </client>
</iommu>"#,
    )
}

#[test]
fn a_vmm_and_its_guest_are_accepted() {
    let (sdf, config) =
        sysgen::load_str("system.xml", &system(), "iommu.xml", &policy()).expect("the VMM pair");
    let vm = sdf
        .pd("vmm")
        .and_then(|p| p.virtual_machine.as_ref())
        .expect("the VMM's guest");
    assert_eq!(vm.name, "guest");
    assert_eq!((vm.priority, vm.budget, vm.period), (70, 1000, 1000));
    assert_eq!(vm.vcpus.iter().map(|v| v.id).collect::<Vec<_>>(), [0]);
    let maps: Vec<_> = vm
        .maps
        .iter()
        .map(|m| (m.mr.as_str(), m.vaddr, m.write, m.cached))
        .collect();
    assert_eq!(
        maps,
        [
            ("guest_ram", 0x4000_0000, true, true),
            ("edu_c_bar", 0x1000_0000, true, false)
        ]
    );
    let vmm = config.clients.iter().find(|c| c.pd == "vmm").unwrap();
    assert_eq!(vmm.regions[0].mr, "guest_ram");
    // Budget and period as given; period defaults to the budget.
    let timed = edit(
        &system(),
        "priority=\"70\"",
        "priority=\"70\" budget=\"500\"",
    );
    let (s, _) = sysgen::load_str("system.xml", &timed, "iommu.xml", &policy()).unwrap();
    let vm = s.pd("vmm").unwrap().virtual_machine.as_ref().unwrap();
    assert_eq!((vm.budget, vm.period), (500, 500));
}

#[test]
fn the_elements_and_attributes_the_tool_knows() {
    let sys = |from: &str, to: &str| edit(&system(), from, to);
    exactly(&[
        (
            "a virtual machine outside a protection domain",
            edit(SYSTEM, "</system>", "    <virtual_machine name=\"guest\">\n        <vcpu id=\"0\" />\n    </virtual_machine>\n</system>"),
            POLICY.into(),
            "system.xml:93:5: <virtual_machine name=\"guest\">: virtual machine must be a child of a protection domain",
        ),
        (
            "two virtual machines in one PD",
            sys("        </virtual_machine>\n", "        </virtual_machine>\n        <virtual_machine name=\"other\">\n            <vcpu id=\"1\" />\n        </virtual_machine>\n"),
            policy(),
            "system.xml:106:9: <virtual_machine name=\"other\">: virtual_machine must only be specified once",
        ),
        (
            "an attribute a virtual machine does not have",
            sys("<virtual_machine name=\"guest\"", "<virtual_machine id=\"1\" name=\"guest\""),
            policy(),
            "system.xml:101:26: <virtual_machine name=\"guest\"> attribute `id`: unknown attribute (the Microkit tool knows: name, budget, period, priority)",
        ),
        (
            "an attribute a vcpu does not have",
            sys("<vcpu id=\"0\" />", "<vcpu id=\"0\" priority=\"1\" />"),
            policy(),
            "system.xml:102:26: <vcpu> attribute `priority`: unknown attribute (the Microkit tool knows: id, setvar_id, cpu)",
        ),
        (
            "a setvar on a guest's map",
            sys("perms=\"rwx\" />", "perms=\"rwx\" setvar_vaddr=\"ram\" />"),
            policy(),
            "system.xml:103:64: <map mr=\"guest_ram\"> attribute `setvar_vaddr`: unknown attribute (the Microkit tool knows: mr, vaddr, perms, cached)",
        ),
        (
            "a virtual machine without a name",
            sys("<virtual_machine name=\"guest\"", "<virtual_machine"),
            policy(),
            "system.xml:101:9: <virtual_machine> attribute `name`: missing",
        ),
        (
            "an element a virtual machine does not have",
            sys("            <vcpu id=\"0\" />\n", "            <vcpu id=\"0\" />\n            <irq irq=\"40\" id=\"1\" />\n"),
            policy(),
            "system.xml:103:13: <irq irq=\"40\">: invalid XML element 'irq'",
        ),
        (
            "a memory region in a page size aarch64 lacks",
            sys("page_size=\"0x200000\"", "page_size=\"0x10000\""),
            policy(),
            "system.xml:94:53: <memory_region name=\"guest_ram\"> attribute `page_size`: page size 0x10000 not supported",
        ),
    ]);
}

#[test]
fn scheduling_and_priorities() {
    let sys = |from: &str, to: &str| edit(&system(), from, to);
    exactly(&[
        (
            "a budget above the period",
            sys("priority=\"70\"", "priority=\"70\" budget=\"2000\" period=\"1000\""),
            policy(),
            "system.xml:101:53: <virtual_machine name=\"guest\"> attribute `budget`: budget (2000) must be less than, or equal to, period (1000)",
        ),
        (
            "a budget above the default period",
            sys("priority=\"70\"", "priority=\"70\" period=\"500\""),
            policy(),
            "system.xml:101:9: <virtual_machine name=\"guest\"> attribute `budget`: budget (1000) must be less than, or equal to, period (500)",
        ),
        (
            "a priority past the tool's",
            sys("name=\"vmm\" priority=\"80\"", "name=\"vmm\" priority=\"80\"").replace("<virtual_machine name=\"guest\" priority=\"70\">", "<virtual_machine name=\"guest\" priority=\"255\">"),
            policy(),
            "system.xml:101:39: <virtual_machine name=\"guest\"> attribute `priority`: priority must be between 0 and 254",
        ),
        (
            "a guest above its VMM",
            sys("<virtual_machine name=\"guest\" priority=\"70\">", "<virtual_machine name=\"guest\" priority=\"81\">"),
            policy(),
            "system.xml:101:39: <virtual_machine name=\"guest\"> attribute `priority`: 81 is above its VMM `vmm`'s priority (80): the VMM handles the guest's faults and must not be starved by it",
        ),
    ]);
    let level = edit(
        &system(),
        "<virtual_machine name=\"guest\" priority=\"70\">",
        "<virtual_machine name=\"guest\" priority=\"80\">",
    );
    load(&level, &policy()).expect("a guest at its VMM's priority");
}

#[test]
fn vcpus() {
    let sys = |from: &str, to: &str| edit(&system(), from, to);
    let many = |first: u64, n: u64| -> String {
        (first..first + n)
            .map(|i| format!("            <vcpu id=\"{i}\" />\n"))
            .collect()
    };
    // A second VMM with a guest of two vCPUs, besides 62 in the first.
    let crowded = sys("            <vcpu id=\"0\" />\n", &many(0, 62)).replace(
        "</system>",
        "    <protection_domain name=\"vmm2\" priority=\"60\">\n        <virtual_machine name=\"guest2\">\n            <vcpu id=\"0\" />\n            <vcpu id=\"1\" />\n        </virtual_machine>\n    </protection_domain>\n</system>",
    );
    exactly(&[
        (
            "a vcpu id past the tool's",
            sys("<vcpu id=\"0\" />", "<vcpu id=\"62\" />"),
            policy(),
            "system.xml:102:19: <vcpu> attribute `id`: id must be < 62",
        ),
        (
            "one vcpu id twice",
            sys("            <vcpu id=\"0\" />\n", "            <vcpu id=\"0\" />\n            <vcpu id=\"0\" />\n"),
            policy(),
            "system.xml:103:19: <vcpu> attribute `id`: duplicate vcpu id 0 in virtual machine 'guest'",
        ),
        (
            "a core the board lacks",
            sys("<vcpu id=\"0\" />", "<vcpu id=\"0\" cpu=\"1\" />"),
            policy(),
            "system.xml:102:26: <vcpu> attribute `cpu`: cpu core must be less than 1, got 1",
        ),
        (
            "no vcpu",
            sys("            <vcpu id=\"0\" />\n", ""),
            policy(),
            "system.xml:101:9: <virtual_machine name=\"guest\">: missing 'vcpu' element on virtual_machine: 'guest'",
        ),
        (
            "a child PD with a vcpu's id",
            sys("    </protection_domain>\n    <channel>\n        <end pd=\"iommu_server\" id=\"4\" />", "        <protection_domain name=\"helper\" id=\"0\" priority=\"60\" />\n    </protection_domain>\n    <channel>\n        <end pd=\"iommu_server\" id=\"4\" />"),
            policy(),
            "system.xml:106:42: <protection_domain name=\"helper\"> attribute `id`: duplicate id: 0 clashes with virtual machine vcpu id in protection domain: 'vmm'",
        ),
        (
            "one name for two virtual machines",
            sys("</system>", "    <protection_domain name=\"vmm2\" priority=\"60\">\n        <virtual_machine name=\"guest\">\n            <vcpu id=\"0\" />\n        </virtual_machine>\n    </protection_domain>\n</system>"),
            policy(),
            "system.xml:112:26: <virtual_machine name=\"guest\"> attribute `name`: duplicate virtual machine name 'guest'",
        ),
        (
            "more vCPUs than the monitor names",
            crowded,
            policy(),
            "system.xml:175:13: <vcpu>: more than 63 vCPUs in the system (the Microkit tool's MAX_VMS)",
        ),
    ]);
}

#[test]
fn guest_maps() {
    let sys = |from: &str, to: &str| edit(&system(), from, to);
    exactly(&[
        (
            "a region that does not exist",
            sys("<map mr=\"edu_c_bar\" vaddr=\"0x10000000\"", "<map mr=\"edu_c_bra\" vaddr=\"0x10000000\""),
            policy(),
            "system.xml:104:18: <map mr=\"edu_c_bra\"> attribute `mr`: invalid memory region name 'edu_c_bra' on 'map'; system.xml has `edu_c_bar` (system.xml:96)",
        ),
        (
            "perms not of r, w, x",
            sys("perms=\"rwx\"", "perms=\"rwq\""),
            policy(),
            "system.xml:103:52: <map mr=\"guest_ram\"> attribute `perms`: perms must only be a combination of 'r', 'w', and 'x'",
        ),
        (
            "a write-only map",
            sys("perms=\"rwx\"", "perms=\"w\""),
            policy(),
            "system.xml:103:52: <map mr=\"guest_ram\"> attribute `perms`: perms must not be 'w', write-only mappings are not allowed",
        ),
        (
            "caching neither true nor false",
            sys("perms=\"rw\" cached=\"false\" />\n        </virtual_machine>", "perms=\"rw\" cached=\"no\" />\n        </virtual_machine>"),
            policy(),
            "system.xml:104:63: <map mr=\"edu_c_bar\"> attribute `cached`: cached must be 'true' or 'false'",
        ),
        (
            "a vaddr past the guest's address space",
            sys("<map mr=\"edu_c_bar\" vaddr=\"0x10000000\"", "<map mr=\"edu_c_bar\" vaddr=\"0x10000000000\""),
            policy(),
            "system.xml:104:33: <map mr=\"edu_c_bar\"> attribute `vaddr`: vaddr (0x10000000000) must be less than 0x10000000000",
        ),
        (
            "a range past the guest's address space",
            sys("<map mr=\"edu_c_bar\" vaddr=\"0x10000000\"", "<map mr=\"edu_c_bar\" vaddr=\"0xfffff80000\""),
            policy(),
            "system.xml:104:33: <map mr=\"edu_c_bar\"> attribute `vaddr`: map for 'edu_c_bar' has virtual address range [0xfffff80000..0x10000080000) which exceeds valid address space [0x0..0x10000000000)",
        ),
        (
            "a vaddr off the region's page size",
            sys("<map mr=\"guest_ram\" vaddr=\"0x40000000\" perms=\"rwx\"", "<map mr=\"guest_ram\" vaddr=\"0x40001000\" perms=\"rwx\""),
            policy(),
            "system.xml:103:33: <map mr=\"guest_ram\"> attribute `vaddr`: invalid vaddr alignment on 'map': 0x40001000 is not a multiple of `guest_ram`'s page size 0x200000",
        ),
        (
            "two maps overlapping",
            sys("<map mr=\"edu_c_bar\" vaddr=\"0x10000000\"", "<map mr=\"edu_c_bar\" vaddr=\"0x40100000\""),
            policy(),
            "system.xml:104:33: <map mr=\"edu_c_bar\"> attribute `vaddr`: map for 'edu_c_bar' has virtual address range [0x40100000..0x40200000) which overlaps with map for 'guest_ram' [0x40000000..0x40200000) in virtual machine 'guest'",
        ),
    ]);
}

/// Guest RAM a client gives a device is its VMM's, and its
/// guest-physical range (the IOVAs the VMM maps it at) is one the VMM's
/// devices can be given.
#[test]
fn guest_ram_for_dma() {
    let pol = |from: &str, to: &str| edit(&policy(), from, to);
    let shared = edit(
        &system(),
        "        <map mr=\"edu_b_dma\" vaddr=\"0x30000000\" perms=\"rw\" setvar_vaddr=\"dma_buffer\" />\n",
        "        <map mr=\"edu_b_dma\" vaddr=\"0x30000000\" perms=\"rw\" setvar_vaddr=\"dma_buffer\" />\n        <map mr=\"guest_ram\" vaddr=\"0x40000000\" perms=\"rw\" />\n",
    );
    exactly(&[
        (
            "another client gives the guest's RAM to its device",
            shared,
            edit(&policy(), "        <dma mr=\"edu_b_dma\" />\n", "        <dma mr=\"edu_b_dma\" />\n        <dma mr=\"guest_ram\" />\n"),
            "iommu.xml:29:14: <dma mr=\"guest_ram\"> attribute `mr`: `guest_ram` is guest RAM of virtual machine `guest` (system.xml:104): only its VMM `vmm` gives it to a device",
        ),
        (
            "guest RAM beyond the device's DMA mask",
            system(),
            pol("dma_mask=\"0xffffffff\"", "dma_mask=\"0x3fffffff\""),
            "system.xml:103:33: <map mr=\"guest_ram\"> attribute `vaddr`: guest RAM `guest_ram` is at guest-physical 0x40000000..=0x401fffff, the IOVAs its VMM maps it at for device `edu_c` (iommu.xml:42): beyond its DMA mask 0x3fffffff",
        ),
        (
            "guest RAM over a reserved window",
            system(),
            pol("<reserved start=\"0x08000000\" last=\"0x0803ffff\" />\n        </device>\n    </client>\n</iommu>", "<reserved start=\"0x40100000\" last=\"0x4013ffff\" />\n        </device>\n    </client>\n</iommu>"),
            "system.xml:103:33: <map mr=\"guest_ram\"> attribute `vaddr`: guest RAM `guest_ram` is at guest-physical 0x40000000..=0x401fffff, the IOVAs its VMM maps it at for device `edu_c` (iommu.xml:42): overlapping its reserved window 0x40100000..=0x4013ffff, which the server never maps",
        ),
    ]);
}
