//! Just enough PCI: find devices on bus 0, give each a BAR0 window and let
//! it master the bus.

use mmio::{Mmio, RegisterBlock};

use crate::platform::{self, ECAM_BASE};

#[derive(Clone, Copy, Debug)]
pub struct Function {
    pub devfn: u8,
    /// Requester ID, which is the SMMU stream ID: bus << 8 | devfn.
    pub sid: u32,
    /// Where its BAR0 was programmed: a [`platform::BAR_WINDOW_SIZE`]
    /// window for [`platform::DeviceWindows::bar`].
    pub bar0: u64,
}

const COMMAND: usize = 0x04;
const BAR0: usize = 0x10;
const CMD_MEMORY: u32 = 1 << 1;
const CMD_BUS_MASTER: u32 = 1 << 2;

/// Every function 0 on bus 0 with `vendor:device`, each given BAR window
/// `found` (the n-th function found gets the n-th window of the PCI MMIO
/// window); enumeration happens once per image, so the first call finds
/// devices and later ones none. Bus 0's configuration space is claimed
/// from the board's `windows` for good, so no configuration page of it
/// is handed out beside the enumeration.
pub fn find(
    windows: &mut platform::DeviceWindows,
    vendor: u16,
    device: u16,
    out: &mut [Function],
) -> usize {
    static ENUMERATED: mmio::ConstStaticCell<()> = mmio::ConstStaticCell::new(());
    if ENUMERATED.take().is_none()
        || windows
            .claim(ECAM_BASE as u64, platform::ECAM_BUS0_SIZE as u64)
            .is_err()
    {
        return 0;
    }
    // SAFETY: bus 0's configuration space; this runs once (above), and
    // the claim keeps any of its pages from being handed out.
    let ecam = unsafe { Mmio::new(ECAM_BASE, platform::ECAM_BUS0_SIZE) };
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
        let bar0 = platform::PCI_MMIO_BASE as u64 + found as u64 * platform::BAR_WINDOW_SIZE;
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
