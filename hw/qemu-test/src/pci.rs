//! Just enough PCI: find devices on bus 0, give each a BAR0 window and let
//! it master the bus.

use hw::mmio::RegisterBlock;

use crate::platform;

#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub devfn: u8,
    /// Requester ID, which is the SMMU stream ID: bus << 8 | devfn.
    pub sid: u32,
    pub bar0: usize,
}

const COMMAND: usize = 0x04;
const BAR0: usize = 0x10;
const CMD_MEMORY: u32 = 1 << 1;
const CMD_BUS_MASTER: u32 = 1 << 2;

/// Every function 0 on bus 0 with `vendor:device`, each given a 1 MiB BAR0
/// window in the 32-bit MMIO range.
pub fn find(vendor: u16, device: u16, out: &mut [Function]) -> usize {
    let ecam = platform::ecam_bus0();
    let mut found = 0;
    for slot in 0..32u8 {
        let cfg = (slot as usize) << 15;
        let id = ecam.read32(cfg);
        if id == u32::MAX
            || id as u16 != vendor
            || (id >> 16) as u16 != device
            || found == out.len()
        {
            continue;
        }
        let bar0 = platform::PCI_MMIO_BASE + found * 0x10_0000;
        ecam.write32(cfg + BAR0, bar0 as u32);
        let command = ecam.read32(cfg + COMMAND) & 0xffff;
        ecam.write32(cfg + COMMAND, command | CMD_MEMORY | CMD_BUS_MASTER);
        out[found] = Function {
            devfn: slot << 3,
            sid: (slot as u32) << 3,
            bar0,
        };
        found += 1;
    }
    found
}
