//! The IOMMU policy sidecar (next to system.xml, whose schema Microkit
//! owns): which PD is the server, where its SMMU, memory and IRQs are, and
//! per client its command page, DMA memory, devices, quota and whether it
//! is the manager. A driver of a disk (`<device disk_blocks>`) gives each
//! block client, on that client's data region, its share of the disk
//! (`<dma first_block blocks>`): shares are present for every block
//! client (every DMA region another PD maps), on the disk, not wrapping,
//! and disjoint. Checked against the system description here; every
//! refusal names the element and attribute at fault, in the file a user
//! most likely got wrong: a map's perms or caching, a channel end, a PD's
//! priority or a memory region's size is refused at its element in
//! system.xml (saying where in iommu.xml it is used); a name iommu.xml
//! gives that system.xml lacks is refused in iommu.xml, pointing at a
//! near miss in system.xml when there is one.
//!
//! One file per element of the sidecar, as the Microkit tool parses one
//! element per file: `server` (`<iommu server>`, `<smmu>`,
//! `<page_tables>`), `client` (`<client>`, its `<quota>` and the
//! block clients' shares), `region` (`<dma>`), `device` (`<device>`
//! and its `<reserved>` windows) and `qemu` (the `qemu` attribute).
//! System.xml's own elements are checked beside them:
//! `crate::io_address_space`, `crate::virtual_machine`, and against
//! iommu.xml `crate::static_space`.

mod client;
mod device;
mod qemu;
mod region;
mod server;

use crate::error::{Error, Source};
use crate::sdf::{MemoryRegion, ProtectionDomain, System};
use crate::xml::Element;

pub use crate::units::PAGE;
pub use client::command_page_size;
/// The server's bounds, defined once where both see them.
pub use iommu_types::config::{MAX_CLIENT_DEVICES, MAX_DEVICE_WINDOWS, MAX_OBJECTS};
pub use server::SMMU_FRAME;

pub use crate::model::{
    qemu_devices, server_symbols, Client, Config, Device, MapEntry, Paddr, QemuDevice, Region,
    Server, ServerMemory, Share, StaticIoMap, StaticSpace,
};
pub(crate) use qemu::qemu_device;

struct Checker<'a> {
    sys: &'a System,
    /// Errors about system.xml.
    sdf: Source<'a>,
    /// Errors about the sidecar.
    side: Source<'a>,
}

/// Checks the sidecar `root` against `sys`.
pub fn check(
    sys: &System,
    sdf: Source<'_>,
    side: Source<'_>,
    root: &Element,
) -> Result<Config, Error> {
    let c = Checker { sys, sdf, side };
    c.config(root)
}

impl Checker<'_> {
    /// A PD of system.xml nearly named `name`, as a hint.
    fn pd_hint(&self, name: &str) -> String {
        self.sdf.hint(
            name,
            self.sys.pds.iter().map(|p| (p.name.as_str(), &p.element)),
        )
    }

    /// A memory region of system.xml nearly named `name`, as a hint.
    fn mr_hint(&self, name: &str) -> String {
        self.sdf.hint(
            name,
            self.sys
                .memory_regions
                .iter()
                .map(|m| (m.name.as_str(), &m.element)),
        )
    }

    /// A map of `pd` of a region nearly named `name`, as a hint.
    fn map_hint(&self, pd: &ProtectionDomain, name: &str) -> String {
        self.sdf
            .hint(name, pd.maps.iter().map(|m| (m.mr.as_str(), &m.element)))
    }

    /// The `<iommu>` root: its server, then each element in its file.
    fn config(&self, root: &Element) -> Result<Config, Error> {
        let s = self.side;
        if root.name != "iommu" {
            return Err(s.element(root, "the root element must be <iommu>"));
        }
        let server = self.server_pd(root)?;
        let mut smmu = None;
        let mut page_tables = None;
        let mut clients: Vec<Client> = Vec::new();
        let mut qemu: Vec<QemuDevice> = Vec::new();
        let mut client_elements: Vec<&Element> = Vec::new();
        for e in &root.children {
            match e.name.as_str() {
                "smmu" if smmu.is_none() => smmu = Some(e),
                "page_tables" if page_tables.is_none() => page_tables = Some(e),
                "smmu" | "page_tables" => {
                    return Err(s.element(e, "given twice"));
                }
                "client" => {
                    let (client, simulated) = self.client(server, e, &clients)?;
                    clients.push(client);
                    qemu.extend(simulated);
                    client_elements.push(e);
                }
                // Checked with the spaces it names (crate::static_space).
                "static_device" => {}
                _ => {
                    return Err(s.element(
                        e,
                        "unknown element (expected smmu, page_tables, client or static_device)",
                    ))
                }
            }
        }
        let smmu = smmu.ok_or_else(|| s.element(root, "missing <smmu>"))?;
        let page_tables = page_tables.ok_or_else(|| s.element(root, "missing <page_tables>"))?;
        let sid_bits = self.sid_bits(smmu)?;
        for (client, e) in clients.iter().zip(&client_elements) {
            self.streams_fit(client, e, sid_bits)?;
        }
        let config = Config {
            server: self.server(server, smmu, page_tables)?,
            clients,
            channels: self
                .sys
                .channels
                .iter()
                .flat_map(|c| {
                    let [a, b] = &c.ends;
                    [
                        (a.pd.clone(), b.pd.clone(), a.id),
                        (b.pd.clone(), a.pd.clone(), b.id),
                    ]
                })
                .collect(),
            children: self
                .sys
                .pds
                .iter()
                .filter_map(|pd| {
                    let (parent, id) = pd.parent.clone()?;
                    Some((parent, id, pd.name.clone()))
                })
                .collect(),
            maps: self
                .sys
                .pds
                .iter()
                .flat_map(|pd| {
                    pd.maps.iter().map(|m| MapEntry {
                        pd: pd.name.clone(),
                        mr: m.mr.clone(),
                        vaddr: m.vaddr,
                        size: self.sys.mr(&m.mr).map_or(0, |r| r.size),
                        write: m.write,
                        setvar_vaddr: m.setvar_vaddr.clone(),
                        paddr: self.sys.mr(&m.mr).and_then(|r| r.phys_addr),
                        origin: self.sdf.origin(&m.element),
                        memory_region: self.sys.mr(&m.mr).map_or_else(
                            || self.sdf.origin(&m.element),
                            |r| self.sdf.origin(&r.element),
                        ),
                    })
                })
                .collect(),
            static_spaces: Vec::new(),
            qemu,
        };
        self.pool_holds_quotas(&config, page_tables)?;
        self.server_memory_is_private(&config, &client_elements, smmu, page_tables)?;
        Ok(config)
    }

    /// How the server learns `mr`'s physical address: its `phys_addr`, or
    /// a `<setvar region_paddr>` of the server; else an error about the
    /// region in system.xml, which lacks both (saying where `e` names it).
    pub(super) fn paddr(
        &self,
        server: &ProtectionDomain,
        e: &Element,
        mr: &MemoryRegion,
    ) -> Result<Paddr, Error> {
        if let Some(p) = mr.phys_addr {
            return Ok(Paddr::Fixed(p));
        }
        let name = &mr.name;
        server
            .setvars
            .iter()
            .find(|v| v.region_paddr == *name)
            .map(|v| Paddr::Symbol(v.symbol.clone()))
            .ok_or_else(|| {
                self.sdf.element(
                    &mr.element,
                    format!(
                        "the server `{}` cannot learn the physical address of `{name}`, named at {}: give it a phys_addr or add <setvar symbol=\"...\" region_paddr=\"{name}\"/> to the server",
                        server.name,
                        self.side.line(e),
                    ),
                )
            })
    }
}
