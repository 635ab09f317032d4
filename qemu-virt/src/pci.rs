//! Just enough PCI: find devices on bus 0, give each a BAR0 window and let
//! it master the bus.

use mmio::{Mmio, RegisterBlock};

use crate::platform::{self, ECAM_BASE};

#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub devfn: u8,
    /// Requester ID, which is the SMMU stream ID: bus << 8 | devfn.
    pub sid: u32,
    /// The BAR window (`platform::bar`) its BAR0 was programmed to.
    pub bar_slot: usize,
}

const COMMAND: usize = 0x04;
const BAR0: usize = 0x10;
const CMD_MEMORY: u32 = 1 << 1;
const CMD_BUS_MASTER: u32 = 1 << 2;

/// Every function 0 on bus 0 with `vendor:device`, each given BAR window
/// `found` (the n-th function found gets window n); enumeration happens
/// once per image, so the first call finds devices and later ones none.
pub fn find(vendor: u16, device: u16, out: &mut [Function]) -> usize {
    static ENUMERATED: mmio::ConstStaticCell<()> = mmio::ConstStaticCell::new(());
    if ENUMERATED.take().is_none() {
        return 0;
    }
    // SAFETY: bus 0's configuration space; this runs once (above), before
    // any function's configuration page is handed out.
    let ecam = unsafe { Mmio::new(ECAM_BASE, platform::ECAM_BUS0_SIZE) };
    let mut found = 0;
    for slot in 0..32u8 {
        let cfg = (slot as usize) << 15;
        let id = ecam.read32(cfg);
        if id == u32::MAX
            || id as u16 != vendor
            || (id >> 16) as u16 != device
            || found == out.len()
            || found == platform::BAR_WINDOWS
        {
            continue;
        }
        let bar0 = platform::bar_base(found);
        ecam.write32(cfg + BAR0, bar0 as u32);
        let command = ecam.read32(cfg + COMMAND) & 0xffff;
        ecam.write32(cfg + COMMAND, command | CMD_MEMORY | CMD_BUS_MASTER);
        out[found] = Function {
            devfn: slot << 3,
            sid: (slot as u32) << 3,
            bar_slot: found,
        };
        found += 1;
    }
    found
}
