//! The physical addresses the system depends on, checked against the
//! board (QEMU virt's map, from qemu-virt-layout, which the board crate
//! uses too) and against each other, each refusal naming both ends:
//!
//! - a device's configuration page (`config_mr`) is one page at the ECAM
//!   address of the function its stream ID (the requester ID, bus << 8 |
//!   devfn) names, is no other device's, and no PD but the server and the
//!   device's client maps it;
//! - every BAR window (a memory region named `*_bar`) has a fixed
//!   address inside the PCI MMIO window and overlaps no other; a device's
//!   BAR0 window (`<device>_bar`, or the one `*_bar` region its client
//!   maps when the client has one device) is at least as large as the
//!   QEMU device needs where the model is known, and aligned to that size
//!   as PCI places BARs;
//! - the QEMU placement of a device (`-device …,addr=SS.F`) gives back
//!   its stream ID, and a slot shared by several QEMU functions has a
//!   function 0 that says `multifunction=on`, which QEMU requires;
//! - a command page is one page: said before the Microkit tool's overlap
//!   rule would report an oversized one as an overlap with the next map.

use qemu_virt_layout::{Bdf, CONFIG_PAGE_SIZE, ECAM_BASE, ECAM_SIZE, PCI_MMIO_BASE, PCI_MMIO_SIZE};

use crate::error::{Error, Source};
use crate::policy::{command_page_size, qemu_devices, Client, Config, Device};
use crate::sdf::{MemoryRegion, System};
use crate::xml::Element;

/// `PCI 00:03.0`, as QEMU and lspci write a function.
fn pci(f: Bdf) -> String {
    format!("PCI {:02x}:{:02x}.{}", f.bus, f.device, f.function)
}

/// What BAR0 of a QEMU device model with these `-device` options needs,
/// where the model is known: edu decodes 1 MiB; QEMU's NVMe controller
/// (hw/nvme/ctrl.c, `nvme_bar_size`) its registers and doorbells, then
/// its MSI-X table and pending bits, each 4 KiB aligned, rounded up to a
/// power of two.
pub fn bar0_size(qemu: &str) -> Option<u64> {
    let mut parts = qemu.split(',');
    let option = |name: &str| {
        qemu.split(',')
            .skip(1)
            .find_map(|o| o.strip_prefix(name)?.strip_prefix('='))
            .and_then(crate::error::parse_number)
    };
    match parts.next()? {
        "edu" => Some(0x10_0000),
        "nvme" => {
            // QEMU's defaults: 64 I/O queue pairs and 65 MSI-X vectors;
            // the older num_queues counts the admin queue pair too.
            let io_pairs = option("max_ioqpairs")
                .or_else(|| option("num_queues").map(|n| n.saturating_sub(1)))
                .unwrap_or(64);
            let vectors = option("msix_qsize").unwrap_or(65);
            let align = |n: u64| n.checked_add(0xfff).map(|n| n & !0xfff);
            // sizeof(NvmeBar), then a submission and a completion doorbell
            // of 4 bytes per queue pair, the admin pair included.
            let registers = io_pairs
                .checked_add(1)?
                .checked_mul(8)?
                .checked_add(0x1000)?;
            let table = align(registers)?.checked_add(vectors.checked_mul(16)?)?;
            let pending = vectors.checked_add(63)? / 64 * 8;
            align(table)?
                .checked_add(pending)?
                .checked_next_power_of_two()
        }
        _ => None,
    }
}

/// A command page is one page: checked before the Microkit tool's rule
/// on overlapping maps, which would otherwise report an oversized page
/// as its map overlapping the next one.
pub fn check_command_pages(
    sys: &System,
    sdf: Source<'_>,
    side: Source<'_>,
    policy: &Element,
) -> Result<(), Error> {
    for client in policy.children.iter().filter(|c| c.name == "client") {
        let (Some(pd), Some(page)) = (client.attr("pd"), client.attr("command_page")) else {
            continue;
        };
        if let Some(mr) = sys.mr(&page.value) {
            command_page_size(sdf, side, mr, client, &pd.value)?;
        }
    }
    Ok(())
}

/// One device of the checked configuration with the elements that
/// declare it and its client.
struct Declared<'a> {
    client: &'a Client,
    device: &'a Device,
    /// The `-device` options of the QEMU device simulating it, if one.
    qemu: Option<&'a str>,
    element: &'a Element,
}

/// Checks the addresses of a configuration `policy` (the sidecar's root)
/// has produced from `sys`.
pub fn check(
    sys: &System,
    sdf: Source<'_>,
    side: Source<'_>,
    policy: &Element,
    config: &Config,
) -> Result<(), Error> {
    let clients = policy.children.iter().filter(|c| c.name == "client");
    let mut devices: Vec<Declared<'_>> = Vec::new();
    for (client, e) in config.clients.iter().zip(clients) {
        let elements = e.children.iter().filter(|c| c.name == "device");
        for (device, element) in client.devices.iter().zip(elements) {
            devices.push(Declared {
                client,
                device,
                qemu: config.qemu_of(device.stream_id).map(|q| q.options.as_str()),
                element,
            });
        }
    }
    let c = Checker { sys, sdf, side };
    for (i, d) in devices.iter().enumerate() {
        c.config_page(d, &devices[..i], &config.server.pd)?;
    }
    c.bar_windows()?;
    for d in &devices {
        c.bar0(d)?;
    }
    c.qemu_placement(config, &devices)
}

struct Checker<'a> {
    sys: &'a System,
    sdf: Source<'a>,
    side: Source<'a>,
}

impl Checker<'_> {
    /// `d`'s configuration page is its function's page of the ECAM
    /// window, and its client's alone.
    fn config_page(
        &self,
        d: &Declared<'_>,
        earlier: &[Declared<'_>],
        server: &str,
    ) -> Result<(), Error> {
        let (s, name) = (self.side, &d.device.name);
        let Some(attr) = d.element.attr("config_mr") else {
            return Ok(());
        };
        let page = &attr.value;
        if let Some(other) = earlier.iter().find(|o| {
            o.element
                .attr("config_mr")
                .is_some_and(|a| a.value == *page)
        }) {
            return Err(s.attr(
                d.element,
                "config_mr",
                format!(
                    "`{page}` is already the configuration page of device `{}` of `{}` ({})",
                    other.device.name,
                    other.client.pd,
                    s.line(other.element)
                ),
            ));
        }
        if let Some((pd, map)) = self.sys.pds.iter().find_map(|p| {
            let foreign = p.name != server && p.name != d.client.pd;
            foreign.then(|| p.map_of(page).map(|m| (p, m))).flatten()
        }) {
            return Err(s.attr(
                d.element,
                "config_mr",
                format!(
                    "`{page}` is mapped into `{}` ({}): the configuration page of device `{name}` is its client `{}`'s alone",
                    pd.name,
                    self.sdf.line(&map.element),
                    d.client.pd
                ),
            ));
        }
        let mr = self.sys.mr(page).expect("the policy found it mapped");
        let at = format!(
            "`{page}` is the configuration page of device `{name}` ({})",
            s.line(d.element)
        );
        if mr.size != CONFIG_PAGE_SIZE {
            return Err(self.sdf.attr(
                &mr.element,
                "size",
                format!("{at}: one {CONFIG_PAGE_SIZE:#x}-byte page"),
            ));
        }
        let Ok(rid) = u16::try_from(d.device.stream_id.0) else {
            return Err(s.attr(
                d.element,
                "stream_id",
                format!(
                    "stream {:#x} is no PCI requester ID (bus << 8 | devfn), so device `{name}` has no configuration page for config_mr to be",
                    d.device.stream_id.0
                ),
            ));
        };
        let function = Bdf::from_requester_id(rid);
        let want = function.config_page();
        let Some(paddr) = mr.phys_addr else {
            return Err(self.sdf.element(
                &mr.element,
                format!(
                    "{at}: give it phys_addr=\"{want:#x}\", {}'s page of the ECAM window",
                    pci(function)
                ),
            ));
        };
        if paddr != want {
            let window = if (ECAM_BASE..ECAM_BASE + ECAM_SIZE).contains(&paddr) {
                let other = Bdf::from_requester_id(((paddr - ECAM_BASE) >> 12) as u16);
                format!(", which is {}'s", pci(other))
            } else {
                format!(
                    ", which is outside the ECAM window {ECAM_BASE:#x}..{:#x}",
                    ECAM_BASE + ECAM_SIZE
                )
            };
            return Err(self.sdf.attr(
                &mr.element,
                "phys_addr",
                format!(
                    "{at}: stream {:#x} is {}, whose page is {want:#x}, not {paddr:#x}{window}",
                    d.device.stream_id.0,
                    pci(function)
                ),
            ));
        }
        Ok(())
    }

    /// Every `*_bar` region is at a fixed address in the PCI MMIO window,
    /// overlapping no other.
    fn bar_windows(&self) -> Result<(), Error> {
        let window = format!(
            "QEMU virt's PCI MMIO window {PCI_MMIO_BASE:#x}..{:#x}",
            PCI_MMIO_BASE + PCI_MMIO_SIZE
        );
        let mut placed: Vec<(&MemoryRegion, u64, u64)> = Vec::new();
        for mr in self
            .sys
            .memory_regions
            .iter()
            .filter(|m| m.name.ends_with("_bar"))
        {
            let Some(base) = mr.phys_addr else {
                return Err(self.sdf.element(
                    &mr.element,
                    format!(
                        "`{}` is a BAR window (a region named *_bar): device registers at a fixed address, so give it a phys_addr in {window}",
                        mr.name
                    ),
                ));
            };
            let end = base
                .checked_add(mr.size)
                .filter(|_| qemu_virt_layout::in_pci_mmio_window(base, mr.size));
            let Some(end) = end else {
                return Err(self.sdf.attr(
                    &mr.element,
                    "phys_addr",
                    format!(
                        "`{}` is a BAR window, {base:#x} + {:#x} bytes: not inside {window}",
                        mr.name, mr.size
                    ),
                ));
            };
            if let Some((other, o_base, o_end)) = placed
                .iter()
                .find(|(_, o_base, o_end)| *o_base < end && base < *o_end)
            {
                return Err(self.sdf.attr(
                    &mr.element,
                    "phys_addr",
                    format!(
                        "BAR window `{}` ({base:#x}..{end:#x}) overlaps BAR window `{}` ({o_base:#x}..{o_end:#x}, {})",
                        mr.name,
                        other.name,
                        self.sdf.line(&other.element)
                    ),
                ));
            }
            placed.push((mr, base, end));
        }
        Ok(())
    }

    /// `d`'s BAR0 window (see [`bar_window`]).
    fn bar_of(&self, d: &Declared<'_>) -> Option<&MemoryRegion> {
        bar_window(self.sys, d.client, d.device)
    }

    /// A known QEMU model's BAR0 fits its window and is aligned as PCI
    /// aligns a BAR: to its size.
    fn bar0(&self, d: &Declared<'_>) -> Result<(), Error> {
        let Some(qemu) = d.qemu else {
            return Ok(());
        };
        let (Some(need), Some(mr)) = (bar0_size(qemu), self.bar_of(d)) else {
            return Ok(());
        };
        let model = qemu.split(',').next().unwrap_or_default();
        let at = format!(
            "`{}` is BAR0 of device `{}`, QEMU's `{model}` ({})",
            mr.name,
            d.device.name,
            self.side.line(d.element)
        );
        if mr.size < need {
            return Err(self.sdf.attr(
                &mr.element,
                "size",
                format!("{at}: it decodes {need:#x} bytes, more than {:#x}", mr.size),
            ));
        }
        let base = mr.phys_addr.expect("bar_windows checked it");
        if base % need != 0 {
            return Err(self.sdf.attr(
                &mr.element,
                "phys_addr",
                format!(
                    "{at}: a BAR of {need:#x} bytes starts on a multiple of its size, and {base:#x} is not"
                ),
            ));
        }
        Ok(())
    }

    /// Where QEMU puts each device is where its stream ID says, and a
    /// slot of several QEMU functions is one QEMU accepts.
    fn qemu_placement(&self, config: &Config, devices: &[Declared<'_>]) -> Result<(), Error> {
        let args = qemu_devices(config);
        let placed = devices.iter().filter(|d| d.qemu.is_some());
        for (d, arg) in placed.clone().zip(args.iter().skip(1).step_by(2)) {
            let rid = qemu_address(arg);
            if rid != Some(d.device.stream_id.0) {
                return Err(self.side.attr(
                    d.element,
                    "qemu",
                    format!(
                        "QEMU would be given `{arg}`, which is not stream {:#x}",
                        d.device.stream_id.0
                    ),
                ));
            }
        }
        for d in placed.clone().filter(|d| d.device.stream_id.0 & 7 != 0) {
            let slot = d.device.stream_id.0 & !7;
            let Some(first) = placed.clone().find(|f| f.device.stream_id.0 == slot) else {
                continue;
            };
            let qemu = first.qemu.unwrap_or_default();
            if !qemu.split(',').any(|o| o == "multifunction=on") {
                let f = Bdf::from_requester_id(d.device.stream_id.0 as u16);
                return Err(self.side.attr(
                    first.element,
                    "qemu",
                    format!(
                        "device `{}` shares its slot as {} ({}): QEMU takes a second function only beside a function 0 with multifunction=on",
                        d.device.name,
                        pci(f),
                        self.side.line(d.element)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The requester ID a `-device …,addr=SS.F` argument places its device at
/// on QEMU virt's root bus.
fn qemu_address(arg: &str) -> Option<u32> {
    let addr = arg.rsplit(',').next()?.strip_prefix("addr=")?;
    let (slot, function) = addr.split_once('.')?;
    let slot = u32::from_str_radix(slot, 16).ok().filter(|s| *s < 32)?;
    let function = function.parse::<u32>().ok().filter(|f| *f < 8)?;
    Some(slot << 3 | function)
}

/// `device`'s BAR0 window: `<device>_bar`, else the one `*_bar` region
/// its client maps if the client has no other device.
fn bar_window<'s>(sys: &'s System, client: &Client, device: &Device) -> Option<&'s MemoryRegion> {
    let named = format!("{}_bar", device.name);
    if let Some(mr) = sys.mr(&named) {
        return Some(mr);
    }
    let pd = sys.pd(&client.pd)?;
    let mapped: Vec<&MemoryRegion> = pd
        .maps
        .iter()
        .filter(|m| m.mr.ends_with("_bar"))
        .filter_map(|m| sys.mr(&m.mr))
        .collect();
    match (client.devices.len(), mapped.as_slice()) {
        (1, [only]) => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar0_sizes_of_known_models() {
        assert_eq!(
            bar0_size("edu,dma_mask=0xffffffffffffffff"),
            Some(0x10_0000)
        );
        // QEMU 7.2's defaults: 0x1000 + 65 * 8 -> 0x2000, + 65 * 16 ->
        // 0x3000, + 16 bytes of pending bits -> 0x4000.
        assert_eq!(bar0_size("nvme,serial=x,drive=disk0"), Some(0x4000));
        assert_eq!(bar0_size("nvme,max_ioqpairs=1,msix_qsize=1"), Some(0x4000));
        assert_eq!(bar0_size("nvme,max_ioqpairs=1024"), Some(0x8000));
        assert_eq!(bar0_size("nvme,num_queues=1025"), Some(0x8000));
        assert_eq!(bar0_size("nvme,msix_qsize=2048"), Some(0x10000));
        assert_eq!(bar0_size("nvme,max_ioqpairs=0xffffffffffffffff"), None);
        assert_eq!(bar0_size("e1000"), None);
    }

    #[test]
    fn qemu_addresses_give_back_the_requester_id() {
        assert_eq!(qemu_address("edu,addr=01.0"), Some(0x8));
        assert_eq!(qemu_address("nvme,serial=a,addr=1f.7"), Some(0xff));
        assert_eq!(qemu_address("edu,addr=20.0"), None);
        assert_eq!(qemu_address("edu,addr=01.8"), None);
        assert_eq!(qemu_address("edu"), None);
    }
}
