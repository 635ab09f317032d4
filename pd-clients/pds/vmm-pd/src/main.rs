//! The VMM PD (`vmm.elf`): so far it carries the symbols system.xml has
//! the Microkit tool patch into it and says it is there; the guest's
//! monitor over `vmm-core` builds on it (docs/vm.md).

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use microkit::{Channel, Handler, MessageInfo};

// The regions system.xml maps into this PD, and the guest device's BAR0.
microkit::setvar!(COMMAND_PAGE = "command_page");
microkit::setvar!(PCI_CONFIG = "pci_config");
microkit::setvar!(GUEST_RAM = "guest_ram");
microkit::setvar!(GUEST_EDU_BAR_PADDR = "guest_edu_bar_paddr");

struct Vmm;

impl Handler for Vmm {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(0, 0)
    }

    fn notified(&mut self, _: Channel) {}
}

fn init() -> Vmm {
    microkit::debug_print(microkit::name());
    microkit::debug_print(": no guest runs yet\n");
    Vmm
}

microkit::declare_pd!(init);
