//! Guest RAM given to devices, against iommu.xml: a client's `<dma>` of
//! a region some virtual machine maps is guest RAM, and a VMM maps guest
//! RAM for DMA at IOVA = guest-physical address, as QEMU does with VFIO.
//! So the region is the client's own guest's (no other PD may hand a
//! guest's memory to a device), and its guest-physical range is one each
//! of the VMM's devices can be given: within the DMA mask, clear of the
//! reserved windows the server never maps.

use crate::error::{Error, Source};
use crate::model::{Client, Config};
use crate::sdf::System;
use crate::virtual_machine::GuestMap;
use crate::xml::Element;

/// The guest RAM a client gives its devices as DMA memory (a `<dma>` of
/// a region some VM maps) is the VMM's own guest's, and lies at its
/// guest-physical address, the IOVA the VMM maps it at, within each of
/// the VMM's devices' DMA mask and clear of their reserved windows.
pub fn check(
    system: &System,
    config: &Config,
    sdf: Source<'_>,
    side: Source<'_>,
    policy: &Element,
) -> Result<(), Error> {
    let clients = policy.children.iter().filter(|c| c.name == "client");
    for (client, e) in config.clients.iter().zip(clients) {
        let dma = e.children.iter().filter(|c| c.name == "dma");
        for (region, d) in client.regions.iter().zip(dma) {
            for pd in &system.pds {
                let Some(vm) = &pd.virtual_machine else {
                    continue;
                };
                let Some(map) = vm.maps.iter().find(|m| m.mr == region.mr) else {
                    continue;
                };
                if pd.name != client.pd {
                    return Err(side.attr(
                        d,
                        "mr",
                        format!(
                            "`{}` is guest RAM of virtual machine `{}` ({}): only its VMM `{}` gives it to a device",
                            region.mr,
                            vm.name,
                            sdf.line(&map.element),
                            pd.name
                        ),
                    ));
                }
                reachable(sdf, side, client, e, region.mr.as_str(), map, system)?;
            }
        }
    }
    Ok(())
}

/// Guest RAM `mr`, at guest-physical `map.vaddr`, is an IOVA range every
/// device of `client` (declared in `e`) can be given.
fn reachable(
    sdf: Source<'_>,
    side: Source<'_>,
    client: &Client,
    e: &Element,
    mr: &str,
    map: &GuestMap,
    system: &System,
) -> Result<(), Error> {
    let size = system.mr(mr).map_or(0, |r| r.size);
    let (start, last) = (map.vaddr, map.vaddr + (size.max(1) - 1));
    let devices = e.children.iter().filter(|c| c.name == "device");
    for (device, element) in client.devices.iter().zip(devices) {
        let at = format!(
            "guest RAM `{mr}` is at guest-physical {start:#x}..={last:#x}, the IOVAs its VMM maps it at for device `{}` ({})",
            device.name,
            side.line(element)
        );
        if last > device.dma_mask {
            return Err(sdf.attr(
                &map.element,
                "vaddr",
                format!("{at}: beyond its DMA mask {:#x}", device.dma_mask),
            ));
        }
        if let Some(w) = device
            .reserved
            .iter()
            .find(|w| w.start <= last && start <= w.last)
        {
            return Err(sdf.attr(
                &map.element,
                "vaddr",
                format!(
                    "{at}: overlapping its reserved window {:#x}..={:#x}, which the server never maps",
                    w.start, w.last
                ),
            ));
        }
    }
    Ok(())
}
