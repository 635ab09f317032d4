//! What the example client PDs share: the symbols the Microkit tool
//! patches (system.xml's `setvar_vaddr`s and `setvar`s), the regions they
//! name, and the way to the server. The `unsafe` of these PDs is here, and
//! rests on system.xml mapping each region where its symbol says (build.rs
//! of the root package checks the IOMMU side of that description).

#![no_std]
#![allow(unsafe_code)]

use core::fmt::Write;

use iommu_client::{Iommu, MicrokitTransport, COMMAND_PAGE};
use iommu_system::ClientSpec;
use microkit::{DebugOut, SharedMemory};
use mmio::{ConstStaticCell, Mmio};

microkit::setvar!(pub COMMAND_PAGE_VADDR = "command_page");
// A PCI driver's configuration page (edu and NVMe alike).
microkit::setvar!(PCI_CONFIG = "pci_config");

/// This PD's map whose address the setvar `symbol` patches, as the
/// generated configuration gives it, checked against the patched address
/// `vaddr`: where a device window is and how big.
pub fn window(symbol: &str, vaddr: u64) -> Option<&'static iommu_system::MapSpec> {
    let map = iommu_system::map_by_setvar(microkit::name(), symbol)?;
    assert_eq!(map.vaddr, vaddr, "{symbol} where system.xml maps it");
    Some(map)
}

/// The client's entry in the generated configuration, by PD name.
pub fn spec() -> &'static ClientSpec {
    let name = microkit::name();
    iommu_system::client(name).unwrap_or_else(|| panic!("{name} is not a client in iommu.xml"))
}

/// This PD's client index (its position in the configuration).
pub fn index() -> Option<usize> {
    let name = microkit::name();
    iommu_system::CLIENTS.iter().position(|c| c.pd == name)
}

/// This PD's channel to the manager client (system.xml), if it has one.
pub fn channel_to_manager() -> Option<microkit::Channel> {
    let manager = iommu_system::CLIENTS.iter().find(|c| c.manager)?;
    iommu_system::channel_to(microkit::name(), manager.pd)
}

/// The story's roles among the configured drivers.
pub fn roles() -> Option<scenarios::edu::Roles> {
    scenarios::edu::Roles::of(
        iommu_system::CLIENTS
            .iter()
            .enumerate()
            .filter(|(_, c)| c.runs(scenarios::edu::IMAGE))
            .map(|(i, _)| i),
    )
}

/// The server, through this PD's command page and channel.
pub fn iommu(spec: &ClientSpec) -> Iommu<MicrokitTransport> {
    let vaddr = COMMAND_PAGE_VADDR.get();
    assert_eq!(
        vaddr, spec.command_page_client,
        "command page where iommu.xml says"
    );
    Iommu::new(MicrokitTransport {
        channel: spec.client_channel,
        // SAFETY: system.xml maps this PD's command page read-write at the
        // patched address (the same build.rs checked), one page long.
        page: unsafe { SharedMemory::new(vaddr as usize, COMMAND_PAGE) },
    })
}

/// The edu driver's regions, by the symbols its system.xml entries patch.
pub mod edu {
    use super::*;
    use edu_device::Edu;
    use pci_function::PciFunction;

    microkit::setvar!(EDU_REGS = "edu_regs");
    microkit::setvar!(DMA_BUFFER = "dma_buffer");
    microkit::setvar!(pub EDU_BAR_PADDR = "edu_bar_paddr");

    static DEVICE: ConstStaticCell<()> = ConstStaticCell::new(());

    /// The device's configuration page and BAR0 registers, the first time
    /// (`None` after: there is one handle to each register window), as
    /// big as the generated configuration says.
    pub fn device() -> Option<(PciFunction<Mmio>, Edu<Mmio>)> {
        let config = window("pci_config", PCI_CONFIG.get())?;
        let bar = window("edu_regs", EDU_REGS.get())?;
        DEVICE.take()?;
        // SAFETY: an edu driver PD's system.xml entry maps its function's
        // configuration page and its BAR0 window uncached at these
        // patched addresses, each as big as its map (checked above); the
        // claim above makes these the only handles.
        unsafe {
            Some((
                PciFunction(Mmio::new(config.vaddr as usize, config.size as usize)),
                Edu(Mmio::new(bar.vaddr as usize, bar.size as usize)),
            ))
        }
    }

    static BUFFER: ConstStaticCell<()> = ConstStaticCell::new(());

    /// The DMA buffer: the client's first region in iommu.xml, which
    /// system.xml maps at the patched `dma_buffer`; `None` after the first
    /// call.
    pub fn dma_buffer(spec: &ClientSpec) -> Option<SharedMemory> {
        let region = spec.regions[0];
        assert_eq!(
            DMA_BUFFER.get(),
            region.vaddr,
            "DMA buffer where iommu.xml says"
        );
        BUFFER.take()?;
        // SAFETY: the region is mapped read-write at that address, checked
        // against the configuration just above; the claim makes this its
        // only handle.
        unsafe {
            Some(SharedMemory::new(
                region.vaddr as usize,
                region.size as usize,
            ))
        }
    }
}

/// A region this PD maps read-write, as the generated configuration says
/// (`iommu_system::MAPS`, from system.xml).
fn shared_memory(map: &iommu_system::MapSpec) -> Option<SharedMemory> {
    (map.pd == microkit::name() && map.write).then_some(())?;
    // SAFETY: the Microkit tool maps `map.mr` read-write at `map.vaddr`,
    // `map.size` bytes, into this PD, as the system description the
    // configuration was generated from says; each caller below claims a
    // region once, so this is its only handle.
    Some(unsafe { SharedMemory::new(map.vaddr as usize, map.size as usize) })
}

/// The NVMe driver's regions: its configuration page and BAR0 window (by
/// their setvars), its DMA regions and, per block client, the ring it
/// shares with it, all where and as big as the generated configuration
/// says.
pub mod nvme {
    use super::*;
    use pci_function::PciFunction;

    microkit::setvar!(NVME_REGS = "nvme_regs");
    microkit::setvar!(pub NVME_BAR_PADDR = "nvme_bar_paddr");

    /// DMA regions of the driver the PD handles: its queues and up to
    /// three block clients' data regions.
    pub const REGIONS: usize = 4;

    static DEVICE: ConstStaticCell<()> = ConstStaticCell::new(());
    static REGIONS_TAKEN: ConstStaticCell<()> = ConstStaticCell::new(());
    static RINGS_TAKEN: ConstStaticCell<()> = ConstStaticCell::new(());

    /// The configuration page and BAR0 registers, the first time.
    pub fn device() -> Option<(PciFunction<Mmio>, Mmio)> {
        let config = window("pci_config", PCI_CONFIG.get())?;
        let bar = window("nvme_regs", NVME_REGS.get())?;
        DEVICE.take()?;
        // SAFETY: the driver's system.xml entry maps its function's
        // configuration page and its BAR0 window uncached at these
        // patched addresses, each as big as its map (checked above); the
        // claim above makes these the only handles.
        unsafe {
            Some((
                PciFunction(Mmio::new(config.vaddr as usize, config.size as usize)),
                Mmio::new(bar.vaddr as usize, bar.size as usize),
            ))
        }
    }

    /// Every DMA region of the client entry (queues first, then the block
    /// clients' data regions), the first time.
    pub fn regions(spec: &ClientSpec) -> Option<[Option<SharedMemory>; REGIONS]> {
        REGIONS_TAKEN.take()?;
        let me = microkit::name();
        Some(core::array::from_fn(|k| {
            shared_memory(iommu_system::map_of(me, spec.regions.get(k)?.mr)?)
        }))
    }

    /// Per data region k (k >= 1), the ring the driver shares with that
    /// region's block client: the one other region both map. The first
    /// time.
    pub fn rings(spec: &ClientSpec) -> Option<[Option<SharedMemory>; REGIONS]> {
        RINGS_TAKEN.take()?;
        let me = microkit::name();
        Some(core::array::from_fn(|k| {
            let data = spec.regions.get(k).filter(|_| k > 0)?;
            let mut others =
                iommu_system::shared(me, data.shared_with?).filter(|m| m.mr != data.mr);
            match (others.next(), others.next()) {
                (Some(ring), None) => shared_memory(ring),
                _ => None,
            }
        }))
    }
}

/// A block client's regions: its data region (which its driver shares
/// with it as DMA memory) and its ring (the other region both map).
pub mod blk {
    use super::*;

    static TAKEN: ConstStaticCell<()> = ConstStaticCell::new(());

    /// (data region, ring), the first time.
    pub fn regions(driver: &'static str, data_mr: &str) -> Option<(SharedMemory, SharedMemory)> {
        let me = microkit::name();
        let data = iommu_system::map_of(me, data_mr)?;
        let mut others = iommu_system::shared(me, driver).filter(|m| m.mr != data_mr);
        let ring = match (others.next(), others.next()) {
            (Some(ring), None) => ring,
            _ => return None,
        };
        TAKEN.take()?;
        Some((shared_memory(data)?, shared_memory(ring)?))
    }
}

/// Debug output prefixed with the PD's name.
pub struct Out(bool);

impl Out {
    pub fn new() -> Out {
        Out(true)
    }
}

impl Default for Out {
    fn default() -> Self {
        Out::new()
    }
}

impl Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if core::mem::replace(&mut self.0, c == '\n') {
                write!(DebugOut, "{}: ", microkit::name())?;
            }
            DebugOut.write_char(c)?;
        }
        Ok(())
    }
}
