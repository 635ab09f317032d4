//! QEMU virt's physical address map, as far as the system depends on it:
//! where a PCI function's configuration page is and where its BARs may
//! go. The board crate (qemu-virt) hands these windows out and sysgen
//! checks system.xml's device memory against them, so the two can never
//! disagree. Values are QEMU's `hw/arm/virt.c` (`VIRT_HIGH_PCIE_ECAM`,
//! `VIRT_PCIE_MMIO`) with highmem on, as `make run` starts it.
#![no_std]

/// The PCIe ECAM window: buses 0..=255, each 32 devices of 8 functions,
/// one 4 KiB configuration page per function.
pub const ECAM_BASE: u64 = 0x40_1000_0000;
pub const ECAM_SIZE: u64 = 0x1000_0000;
/// One function's configuration page.
pub const CONFIG_PAGE_SIZE: u64 = 0x1000;

/// The 32-bit PCI MMIO window, where BARs are placed (CPU and PCI
/// addresses are identical). It ends where the PCI I/O window starts.
pub const PCI_MMIO_BASE: u64 = 0x1000_0000;
pub const PCI_MMIO_SIZE: u64 = 0x2eff_0000;

/// A PCI function's address: bus, device (slot) and function, which as a
/// requester ID (`bus << 8 | device << 3 | function`) is also the stream
/// ID QEMU virt's SMMUv3 sees for its DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    /// The function whose requester ID is `rid`.
    pub const fn from_requester_id(rid: u16) -> Self {
        Self {
            bus: (rid >> 8) as u8,
            device: (rid >> 3 & 0x1f) as u8,
            function: (rid & 7) as u8,
        }
    }

    pub const fn requester_id(self) -> u16 {
        (self.bus as u16) << 8 | ((self.device & 0x1f) as u16) << 3 | (self.function & 7) as u16
    }

    /// The physical address of its configuration page in the ECAM window.
    pub const fn config_page(self) -> u64 {
        ECAM_BASE + ((self.requester_id() as u64) << 12)
    }
}

/// Whether `[base, base + size)` lies inside the 32-bit PCI MMIO window.
pub const fn in_pci_mmio_window(base: u64, size: u64) -> bool {
    match base.checked_add(size) {
        Some(end) => base >= PCI_MMIO_BASE && end <= PCI_MMIO_BASE + PCI_MMIO_SIZE,
        None => false,
    }
}

/// Why a device window a configuration gives cannot be honoured on this
/// board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowRefused {
    /// A configuration page is one [`CONFIG_PAGE_SIZE`] page, page-aligned.
    NotOnePage,
    /// A configuration page lies in the ECAM window.
    OutsideEcam,
    /// A BAR window lies in the 32-bit PCI MMIO window.
    OutsidePciWindow,
    /// A BAR window is a power of two of at least a page, aligned to its
    /// size (as a BAR is decoded).
    NotNaturallyAligned,
    /// The window overlaps one handed out before.
    Overlaps,
    /// More windows than the board keeps track of.
    TooMany,
}

impl core::fmt::Display for WindowRefused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WindowRefused::NotOnePage => "a configuration page is one 4 KiB page, page-aligned",
            WindowRefused::OutsideEcam => "outside the PCIe ECAM window 0x4010000000..0x4020000000",
            WindowRefused::OutsidePciWindow => {
                "outside the 32-bit PCI MMIO window 0x10000000..0x3eff0000"
            }
            WindowRefused::NotNaturallyAligned => {
                "a BAR window is a power of two of at least 4 KiB, aligned to its size"
            }
            WindowRefused::Overlaps => "overlaps a device window handed out before",
            WindowRefused::TooMany => "more device windows than the board keeps",
        })
    }
}

/// Whether `[paddr, paddr + size)` can be a function's configuration
/// page: one page of the ECAM window.
pub const fn check_config_page(paddr: u64, size: u64) -> Result<(), WindowRefused> {
    if size != CONFIG_PAGE_SIZE || !paddr.is_multiple_of(CONFIG_PAGE_SIZE) {
        return Err(WindowRefused::NotOnePage);
    }
    if paddr < ECAM_BASE || paddr > ECAM_BASE + ECAM_SIZE - CONFIG_PAGE_SIZE {
        return Err(WindowRefused::OutsideEcam);
    }
    Ok(())
}

/// Whether `[paddr, paddr + size)` can be a BAR window: inside the PCI
/// MMIO window, a power of two of at least a page, aligned to its size.
pub const fn check_bar(paddr: u64, size: u64) -> Result<(), WindowRefused> {
    if !in_pci_mmio_window(paddr, size) {
        return Err(WindowRefused::OutsidePciWindow);
    }
    if !size.is_power_of_two() || size < CONFIG_PAGE_SIZE || !paddr.is_multiple_of(size) {
        return Err(WindowRefused::NotNaturallyAligned);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_pages_are_ecam_pages() {
        assert_eq!(check_config_page(0x40_1000_8000, 0x1000), Ok(()));
        assert_eq!(check_config_page(0x40_1fff_f000, 0x1000), Ok(()));
        assert_eq!(
            check_config_page(0x40_1000_8000, 0x2000),
            Err(WindowRefused::NotOnePage)
        );
        assert_eq!(
            check_config_page(0x40_1000_8800, 0x1000),
            Err(WindowRefused::NotOnePage)
        );
        assert_eq!(
            check_config_page(0x40_2000_0000, 0x1000),
            Err(WindowRefused::OutsideEcam)
        );
        assert_eq!(
            check_config_page(0x1000_0000, 0x1000),
            Err(WindowRefused::OutsideEcam)
        );
    }

    #[test]
    fn bar_windows_are_decodable_pci_windows() {
        assert_eq!(check_bar(0x1030_0000, 0x10_0000), Ok(()));
        assert_eq!(check_bar(0x1000_4000, 0x4000), Ok(()));
        assert_eq!(
            check_bar(0x1008_0000, 0x10_0000),
            Err(WindowRefused::NotNaturallyAligned)
        );
        assert_eq!(
            check_bar(0x1000_0000, 0x18_0000),
            Err(WindowRefused::NotNaturallyAligned)
        );
        assert_eq!(
            check_bar(0x1000_0000, 0x800),
            Err(WindowRefused::NotNaturallyAligned)
        );
        assert_eq!(
            check_bar(0x0ff0_0000, 0x10_0000),
            Err(WindowRefused::OutsidePciWindow)
        );
        assert_eq!(
            check_bar(!0xfff, 0x1000),
            Err(WindowRefused::OutsidePciWindow)
        );
    }

    #[test]
    fn every_requester_id_is_one_function_and_one_page() {
        for rid in 0..=u16::MAX {
            let f = Bdf::from_requester_id(rid);
            assert_eq!(f.requester_id(), rid);
            assert!(f.device < 32 && f.function < 8);
            let page = f.config_page();
            assert!(page >= ECAM_BASE && page + CONFIG_PAGE_SIZE <= ECAM_BASE + ECAM_SIZE);
        }
        let edu = Bdf {
            bus: 0,
            device: 1,
            function: 0,
        };
        assert_eq!(edu.config_page(), 0x40_1000_8000);
    }

    #[test]
    fn the_mmio_window() {
        assert!(in_pci_mmio_window(0x1000_0000, 0x10_0000));
        assert!(in_pci_mmio_window(0x3eef_0000, 0x10_0000));
        assert!(
            !in_pci_mmio_window(0x3ef0_0000, 0x10_0000),
            "into the I/O window"
        );
        assert!(!in_pci_mmio_window(0x0ff0_0000, 0x10_0000));
        assert!(!in_pci_mmio_window(u64::MAX, 2), "wraps");
    }
}
