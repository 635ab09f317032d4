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

/// The device's configuration page and BAR0, and the DMA region of
/// `size` bytes; `None` after the first call.
pub fn take(size: u64) -> Option<(PciFunction<Mmio>, Edu<Mmio>, SharedMemory)> {
    TAKEN.take()?;
    // SAFETY: this PD's system.xml entry maps its function's configuration
    // page and BAR0 window uncached, and its DMA region (`size` bytes, as
    // the generated configuration gives the map) read-write, at these
    // patched addresses; the claim above makes these the only handles.
    unsafe {
        Some((
            PciFunction(Mmio::new(PCI_CONFIG.get() as usize, 0x1000)),
            Edu(Mmio::new(EDU_REGS.get() as usize, 0x10_0000)),
            SharedMemory::new(DMA_BUFFER.get() as usize, size as usize),
        ))
    }
}
