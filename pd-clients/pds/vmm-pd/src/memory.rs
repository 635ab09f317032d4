//! The regions system.xml maps into the VMM, at the addresses the
//! Microkit tool patches, handed out once: its device's configuration
//! page and its guest's RAM.
#![allow(unsafe_code)]

use microkit::SharedMemory;
use mmio::{ConstStaticCell, Mmio};
use pci_function::PciFunction;

microkit::setvar!(pub GUEST_RAM = "guest_ram");
// Where the tool placed the device's BAR0 window: what the VMM programs
// into the function's configuration space.
microkit::setvar!(pub GUEST_EDU_BAR_PADDR = "guest_edu_bar_paddr");

static TAKEN: ConstStaticCell<()> = ConstStaticCell::new(());

/// The device's configuration page and the guest's RAM (`ram_size`
/// bytes, as the generated configuration gives the map); `None` after the
/// first call. The configuration page is where the generated
/// configuration says system.xml maps it (pd-support owns the
/// `pci_config` symbol every PCI driver PD shares).
pub fn take(ram_size: u64) -> Option<(PciFunction<Mmio>, SharedMemory)> {
    let config = iommu_system::map_by_setvar(microkit::name(), "pci_config")?;
    TAKEN.take()?;
    // SAFETY: the VMM's system.xml entry maps its function's
    // configuration page uncached, and guest RAM (`ram_size` bytes, as
    // the generated configuration gives the map) read-write, at these
    // patched addresses; the claim above makes these the only handles in
    // this PD (the guest reaches the same RAM through its own stage-2
    // mapping, which is why every access is a copy).
    unsafe {
        Some((
            PciFunction(Mmio::new(config.vaddr as usize, 0x1000)),
            SharedMemory::new(GUEST_RAM.get() as usize, ram_size as usize),
        ))
    }
}
