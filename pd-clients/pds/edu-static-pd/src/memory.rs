//! The regions system.xml maps into this PD, at the addresses the Microkit
//! tool patches, each handed out once.
#![allow(unsafe_code)]

use edu_device::Edu;
use microkit::SharedMemory;
use mmio::{ConstStaticCell, Mmio};
use pci_function::PciFunction;

microkit::setvar!(PCI_CONFIG = "pci_config");
microkit::setvar!(EDU_REGS = "edu_regs");
microkit::setvar!(DMA_BUFFER = "dma_buffer");
// Where the tool placed the DMA region: learnt as sDDF's drivers learn
// it (`<setvar region_paddr>`).
microkit::setvar!(pub DMA_PADDR = "dma_paddr");
microkit::setvar!(pub EDU_BAR_PADDR = "edu_bar_paddr");

static TAKEN: ConstStaticCell<()> = ConstStaticCell::new(());

/// This PD's map whose address the setvar `symbol` patches, as the
/// generated configuration gives it, checked against the patched `vaddr`.
fn window(symbol: &str, vaddr: u64) -> Option<&'static iommu_system::MapSpec> {
    let map = iommu_system::map_by_setvar(microkit::name(), symbol)?;
    assert_eq!(map.vaddr, vaddr, "{symbol} where system.xml maps it");
    Some(map)
}

/// The device's configuration page and BAR0, and the DMA region of
/// `size` bytes; `None` after the first call.
pub fn take(size: u64) -> Option<(PciFunction<Mmio>, Edu<Mmio>, SharedMemory)> {
    let config = window("pci_config", PCI_CONFIG.get())?;
    let bar = window("edu_regs", EDU_REGS.get())?;
    TAKEN.take()?;
    // SAFETY: this PD's system.xml entry maps its function's configuration
    // page and BAR0 window uncached (each as big as its map, checked
    // above), and its DMA region (`size` bytes, as the generated
    // configuration gives the map) read-write, at these patched addresses;
    // the claim above makes these the only handles.
    unsafe {
        Some((
            PciFunction(Mmio::new(config.vaddr as usize, config.size as usize)),
            Edu(Mmio::new(bar.vaddr as usize, bar.size as usize)),
            SharedMemory::new(DMA_BUFFER.get() as usize, size as usize),
        ))
    }
}
