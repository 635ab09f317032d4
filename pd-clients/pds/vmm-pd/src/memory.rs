//! The regions system.xml maps into the VMM, at the addresses the
//! Microkit tool patches, handed out once: its device's configuration
//! page, its BAR0 (for the VMM's own timed round trips before the guest
//! first runs) and its guest's RAM, and the guest's memory map over them.
#![allow(unsafe_code)]

use edu_device::Edu;
use microkit::SharedMemory;
use mmio::{ConstStaticCell, Mmio};
use pci_function::PciFunction;
use vmm_core::layout::{GUEST_BAR_GPA, GUEST_BAR_SIZE, GUEST_RAM_GPA};
use vmm_core::{Bar, GuestMap, RamRegion};

microkit::setvar!(pub GUEST_RAM = "guest_ram");
// Where the tool placed the device's BAR0 window: what the VMM programs
// into the function's configuration space.
microkit::setvar!(pub GUEST_EDU_BAR_PADDR = "guest_edu_bar_paddr");

microkit::setvar!(GUEST_EDU_REGS = "guest_edu_regs");

static TAKEN: ConstStaticCell<()> = ConstStaticCell::new(());

/// The guest's RAM as the guest's map holds it: filled in once, at
/// `take`, with where the tool mapped it into the VMM.
static GUEST_RAM_REGIONS: ConstStaticCell<[RamRegion; 1]> = ConstStaticCell::new([RamRegion {
    gpa: GUEST_RAM_GPA,
    size: 0,
    vmm_vaddr: 0,
    dma: true,
}]);

/// The edu device's BAR0 where system.xml's `<virtual_machine>` maps it.
static GUEST_BARS: [Bar; 1] = [Bar {
    gpa: GUEST_BAR_GPA,
    size: GUEST_BAR_SIZE,
}];

/// What the VMM holds: the device's configuration page and BAR0, the
/// guest's RAM, the guest's memory map.
pub struct Regions {
    pub config: PciFunction<Mmio>,
    pub edu: Edu<Mmio>,
    pub ram: SharedMemory,
    pub map: GuestMap<'static>,
}

/// The regions, guest RAM `ram_size` bytes (as the generated configuration
/// gives the map); `None` after the first call. The configuration page is
/// where the generated configuration says system.xml maps it (pd-support
/// owns the `pci_config` symbol every PCI driver PD shares).
pub fn take(ram_size: u64) -> Option<Regions> {
    let config = iommu_system::map_by_setvar(microkit::name(), "pci_config")?;
    let bar = pd_support::window("guest_edu_regs", GUEST_EDU_REGS.get())?;
    TAKEN.take()?;
    let ram = GUEST_RAM_REGIONS.take()?;
    ram[0].size = ram_size;
    ram[0].vmm_vaddr = GUEST_RAM.get();
    let map = GuestMap {
        ram: &*ram,
        bars: &GUEST_BARS,
    };
    // SAFETY: the VMM's system.xml entry maps its function's
    // configuration page and BAR0 uncached, and guest RAM (`ram_size`
    // bytes, as the generated configuration gives the map) read-write, at
    // these patched addresses; the claim above makes these the only
    // handles in this PD (the guest reaches the same RAM and BAR through
    // its own stage-2 mappings, which is why every RAM access is a copy
    // and the VMM drives the device only while the guest does not run).
    unsafe {
        Some(Regions {
            config: PciFunction(Mmio::new(config.vaddr as usize, 0x1000)),
            edu: Edu(Mmio::new(bar.vaddr as usize, bar.size as usize)),
            ram: SharedMemory::new(GUEST_RAM.get() as usize, ram_size as usize),
            map,
        })
    }
}
