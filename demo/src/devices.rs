//! Where each client's device is: its configuration page and its BAR
//! window.

use iommu_system::CLIENTS;
use mmio::Mmio;
use pci_function::PciFunction;
use qemu_virt::platform;

/// The device of a client: stream ID bus << 8 | devfn, BAR0 in the
/// 32-bit window at the client's slot (as system.xml's `*_bar` regions).
/// Each handle exists once: a second call for the same client is `None`.
pub fn device_of(client_index: usize) -> Option<(PciFunction<Mmio>, Mmio, u32)> {
    let sid = CLIENTS[client_index].devices[0].stream_id;
    Some((
        PciFunction(platform::config_page(sid.0 as u8)?),
        platform::bar(client_index)?,
        platform::bar_base(client_index) as u32,
    ))
}
