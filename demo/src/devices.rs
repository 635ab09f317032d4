//! Where each driver's device is: its configuration page and its BAR
//! window, both from the generated configuration (system.xml's maps whose
//! addresses the PDs' `pci_config` and `*_regs` setvars patch, at their
//! regions' `phys_addr`), checked against the board, never computed.

use iommu_system::{map_by_setvar, MapSpec};
use mmio::Mmio;
use pci_function::PciFunction;
use qemu_virt::platform::DeviceWindows;

/// The setvars through which a driver PD finds its configuration page
/// and an edu or NVMe BAR window (pd-support's `PCI_CONFIG`, `EDU_REGS`,
/// `NVME_REGS`).
pub const PCI_CONFIG: &str = "pci_config";
pub const EDU_REGS: &str = "edu_regs";
pub const NVME_REGS: &str = "nvme_regs";
/// The VMM maps its guest's device's BAR window too (vmm-pd's
/// `GUEST_EDU_REGS`), though the guest is the one that drives it.
pub const GUEST_EDU_REGS: &str = "guest_edu_regs";

/// A driver's device as its configuration places it.
pub struct Device {
    pub config: PciFunction<Mmio>,
    pub regs: Mmio,
    /// Where BAR0 goes: the BAR window's physical address.
    pub bar: u32,
    /// The BAR window's region, and its size.
    pub bar_mr: &'static str,
    pub bar_size: u64,
}

/// `pd`'s device: its configuration page and its BAR window (the map
/// whose address `regs` patches). A window the board cannot honour is
/// refused, saying which region and why.
pub fn of(windows: &mut DeviceWindows, pd: &str, regs: &str) -> Result<Device, &'static str> {
    let config = map(pd, PCI_CONFIG, "configuration page")?;
    let bar = map(pd, regs, "BAR window")?;
    let config_page = windows
        .config_page(config.0, config.1.size)
        .map_err(|e| refused(pd, "configuration page", config, e))?;
    let regs = windows
        .bar(bar.0, bar.1.size)
        .map_err(|e| refused(pd, "BAR window", bar, e))?;
    Ok(Device {
        config: PciFunction(config_page),
        regs,
        // The board's check keeps a BAR window in the 32-bit window.
        bar: bar.0 as u32,
        bar_mr: bar.1.mr,
        bar_size: bar.1.size,
    })
}

/// `pd`'s map that `symbol` patches, with its region's physical address.
fn map(pd: &str, symbol: &str, what: &str) -> Result<(u64, &'static MapSpec), &'static str> {
    let Some(m) = map_by_setvar(pd, symbol) else {
        say!("demo: {pd} maps no region with setvar_vaddr=\"{symbol}\": it has no {what}\n");
        return Err("a driver without its device's windows");
    };
    let Some(paddr) = m.paddr else {
        say!(
            "demo: {mr} ({pd}'s {what}) has no phys_addr: a device window is where the board decodes it, never placed by the tool ({at}: <memory_region name=\"{mr}\">)\n",
            mr = m.mr,
            at = m.memory_region,
        );
        return Err("a device window without its phys_addr");
    };
    Ok((paddr, m))
}

fn refused(
    pd: &str,
    what: &str,
    (paddr, m): (u64, &MapSpec),
    why: qemu_virt::platform::WindowRefused,
) -> &'static str {
    say!(
        "demo: refused {mr} ({pd}'s {what}, {paddr:#x}, {size:#x} bytes): {why} ({at}: <memory_region name=\"{mr}\">)\n",
        mr = m.mr,
        size = m.size,
        at = m.memory_region,
    );
    "a device window the board cannot honour"
}
