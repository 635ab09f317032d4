//! A PCI function's 4 KiB configuration page (its ECAM page, which the
//! system description maps into the driver and the server): identify the
//! function, place BAR0 and let it decode and master the bus. Enough for a
//! driver that owns one function on QEMU virt, where no firmware assigns
//! BARs.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use mmio::RegisterBlock;

const PCI_COMMAND: usize = 0x04;
const PCI_BAR0: usize = 0x10;
const PCI_BAR1: usize = 0x14;
const CMD_MEMORY: u32 = 1 << 1;
const CMD_BUS_MASTER: u32 = 1 << 2;
/// BAR type bits 2:1 = 0b10: a 64-bit memory BAR, its upper half in BAR1.
const BAR_TYPE_MASK: u32 = 0b110;
const BAR_TYPE_64: u32 = 0b100;

/// One PCI function's configuration page.
#[derive(Debug)]
pub struct PciFunction<R>(pub R);

impl<R: RegisterBlock> PciFunction<R> {
    /// (vendor, device), or `None` when no function answers.
    pub fn ids(&self) -> Option<(u16, u16)> {
        let id = self.0.read32(0);
        (id != u32::MAX).then_some((id as u16, (id >> 16) as u16))
    }

    /// Places BAR0 at `bus_addr` (the 32-bit window; a 64-bit BAR gets 0
    /// as its upper half) and lets the function decode it and master the
    /// bus.
    pub fn enable(&self, bus_addr: u32) {
        let wide = self.0.read32(PCI_BAR0) & BAR_TYPE_MASK == BAR_TYPE_64;
        self.0.write32(PCI_BAR0, bus_addr);
        if wide {
            self.0.write32(PCI_BAR1, 0);
        }
        let command = self.0.read32(PCI_COMMAND) & 0xffff;
        self.0
            .write32(PCI_COMMAND, command | CMD_MEMORY | CMD_BUS_MASTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A configuration page as a word array.
    struct Page(RefCell<[u32; 1024]>);

    impl RegisterBlock for Page {
        fn read32(&self, offset: usize) -> u32 {
            self.0.borrow()[offset / 4]
        }
        fn write32(&self, offset: usize, value: u32) {
            self.0.borrow_mut()[offset / 4] = value;
        }
        fn read64(&self, offset: usize) -> u64 {
            u64::from(self.read32(offset)) | u64::from(self.read32(offset + 4)) << 32
        }
        fn write64(&self, offset: usize, value: u64) {
            self.write32(offset, value as u32);
            self.write32(offset + 4, (value >> 32) as u32);
        }
    }

    fn page(id: u32, bar0: u32, bar1: u32) -> PciFunction<Page> {
        let mut words = [0u32; 1024];
        words[0] = id;
        words[4] = bar0;
        words[5] = bar1;
        PciFunction(Page(RefCell::new(words)))
    }

    #[test]
    fn identifies_and_enables_32_and_64_bit_bars() {
        let edu = page(0x11e8_1234, 0, 0xdead);
        assert_eq!(edu.ids(), Some((0x1234, 0x11e8)));
        edu.enable(0x1010_0000);
        assert_eq!(edu.0.read32(PCI_BAR0), 0x1010_0000);
        assert_eq!(
            edu.0.read32(PCI_BAR1),
            0xdead,
            "a 32-bit BAR leaves BAR1 alone"
        );
        assert_eq!(edu.0.read32(PCI_COMMAND), CMD_MEMORY | CMD_BUS_MASTER);

        let nvme = page(0x0010_1b36, BAR_TYPE_64, 0xffff_ffff);
        nvme.enable(0x1020_0000);
        assert_eq!(nvme.0.read32(PCI_BAR1), 0, "the upper half of a 64-bit BAR");
        assert_eq!(page(u32::MAX, 0, 0).ids(), None);
    }
}
