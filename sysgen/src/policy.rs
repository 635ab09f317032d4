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

use std::collections::BTreeMap;

use crate::error::{Error, Source};
use crate::sdf::{MemoryRegion, ProtectionDomain, System, MAX_CHANNEL_ID};
use crate::xml::Element;

/// The server's bounds, defined once where both see them.
pub use iommu_types::config::{MAX_DEVICE_WINDOWS, MAX_OBJECTS};
/// The SMMUv3 register frame: two 64 KiB pages.
pub const SMMU_FRAME: u64 = 0x2_0000;
pub use crate::units::PAGE;

/// Where the server finds a physical address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Paddr {
    /// The memory region's `phys_addr`.
    Fixed(u64),
    /// Patched by the Microkit tool into this symbol of the server.
    Symbol(String),
}

/// Memory the server maps: where, how big, and how it learns the physical
/// address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMemory {
    pub mr: String,
    pub vaddr: u64,
    pub size: u64,
    pub paddr: Paddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub mr: String,
    /// In the client.
    pub vaddr: u64,
    pub size: u64,
    pub read: bool,
    pub write: bool,
    pub paddr: Paddr,
    /// `<dma mode="strict">`: the driver maps only in-flight buffers of
    /// it (the server does not enforce this; the driver reads it).
    pub strict: bool,
    /// The one other PD (not the client, not the server) that maps the
    /// region, if exactly one: whose buffers they are.
    pub shared_with: Option<String>,
    /// `<dma first_block blocks>`: the blocks of its client's disk that
    /// are the block client's whose data region this is.
    pub share: Option<Share>,
}

/// A block client's blocks of its driver's disk: `first_block` up to,
/// not including, `first_block + blocks` (which does not wrap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub first_block: u64,
    pub blocks: u64,
}

impl Share {
    pub fn end(&self) -> u64 {
        self.first_block + self.blocks
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub stream_id: u32,
    pub dma_mask: u64,
    /// Inclusive IOVA windows.
    pub reserved: Vec<(u64, u64)>,
    /// The server's mapping of its PCI configuration page, if any.
    pub config_vaddr: Option<u64>,
    /// The QEMU device that simulates it (`-device` options without
    /// `addr`), if the system runs on QEMU.
    pub qemu: Option<String>,
    /// `disk_blocks`: the device is a disk of this many 512-byte blocks
    /// (its namespace at least that large), shared among block clients.
    pub disk_blocks: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub objects: u64,
    pub ioases: u64,
    pub mapped_pages: u64,
    pub table_pages: u64,
    pub hwpts: u64,
    pub mappings: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub pd: String,
    /// The channel id at the server's end: identifies the client there.
    pub server_channel: u64,
    /// The channel id at the client's end: where it calls the server.
    pub client_channel: u64,
    pub command_page: String,
    pub command_page_server: u64,
    pub command_page_client: u64,
    pub regions: Vec<Region>,
    pub devices: Vec<Device>,
    pub quota: Quota,
    pub manager: bool,
    /// For a child PD: its parent and its id there.
    pub child_of: Option<(String, u64)>,
    /// The PD's program image (`<program_image path>`), empty if none.
    pub program_image: String,
    /// The blocks of the disk one of its devices is (`disk_blocks`).
    pub disk_blocks: Option<u64>,
}

/// The checked configuration the generator emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub server: String,
    pub smmu_regs: ServerMemory,
    /// Stream table, queues and context descriptors.
    pub smmu_memory: ServerMemory,
    pub page_tables: ServerMemory,
    pub event_irq_channel: u64,
    pub gerror_irq_channel: u64,
    /// The server PD's stack size in system.xml.
    pub stack_size: u64,
    pub clients: Vec<Client>,
    /// Every channel end of system.xml: (PD, the PD at the other end, the
    /// id at this end), in document order. PDs find their channels here,
    /// by peer, rather than by hand-written numbers.
    pub channels: Vec<(String, String, u64)>,
    /// Every map of system.xml, in document order: PDs find their shared
    /// memory here (where, how big) rather than by hand-written sizes.
    pub maps: Vec<MapEntry>,
    /// Every child PD of system.xml: (parent, id, child), in document
    /// order. A parent names a faulting child by its id alone; this is
    /// how it learns which PD that is, client of the server or not.
    pub children: Vec<(String, u64, String)>,
    /// The static IO address spaces (`crate::static_space`).
    pub static_spaces: Vec<StaticSpace>,
    /// Each client device's BAR0 window with a fixed address: (device,
    /// physical address, size) (`crate::addresses::device_bars`).
    pub device_bars: Vec<(String, u64, u64)>,
}

/// A static IO address space (an `<io_address_space>` of system.xml)
/// as the server builds it at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticIoMap {
    pub mr: String,
    pub iovaddr: u64,
    pub size: u64,
    pub read: bool,
    pub write: bool,
    pub paddr: Paddr,
    /// The region's fixed phys_addr is its iovaddr: the device sees it
    /// where the CPU's physical address says.
    pub identity: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticSpace {
    pub name: String,
    /// `peripheral_id` as written.
    pub peripheral: String,
    pub stream_id: u32,
    pub domain_id: u16,
    pub iomaps: Vec<StaticIoMap>,
    /// Page-table pages its iomaps need at most.
    pub table_pages: u64,
    /// Who hears of its faults, and the server's channel to it.
    pub fault_pd: Option<String>,
    pub fault_channel: Option<u64>,
    pub qemu: Option<String>,
}

/// One `<map>` of a PD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub pd: String,
    pub mr: String,
    pub vaddr: u64,
    pub size: u64,
    pub write: bool,
    pub setvar_vaddr: Option<String>,
}

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

impl<'a> Checker<'a> {
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

    fn config(&self, root: &Element) -> Result<Config, Error> {
        let s = self.side;
        if root.name != "iommu" {
            return Err(s.element(root, "the root element must be <iommu>"));
        }
        s.only_attrs(root, &["server"])?;
        let server_name = s.required(root, "server")?;
        let server = self.sys.pd(server_name).ok_or_else(|| {
            s.attr(
                root,
                "server",
                format!(
                    "no <protection_domain name=\"{server_name}\"> in {}{}",
                    self.sdf.file,
                    self.pd_hint(server_name)
                ),
            )
        })?;
        let mut smmu = None;
        let mut page_tables = None;
        let mut clients: Vec<Client> = Vec::new();
        let mut client_elements: Vec<&Element> = Vec::new();
        for e in &root.children {
            match e.name.as_str() {
                "smmu" if smmu.is_none() => smmu = Some(e),
                "page_tables" if page_tables.is_none() => page_tables = Some(e),
                "smmu" | "page_tables" => {
                    return Err(s.element(e, "given twice"));
                }
                "client" => {
                    let client = self.client(server, e, &clients)?;
                    clients.push(client);
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
        s.only_attrs(
            smmu,
            &["mr", "memory", "event_irq", "gerror_irq", "sid_bits"],
        )?;
        // Stream IDs the SMMU decodes: PCI requester IDs unless said.
        let sid_bits = s.number(smmu, "sid_bits")?.unwrap_or(16);
        if !(1..=32).contains(&sid_bits) {
            return Err(s.attr(smmu, "sid_bits", "an SMMUv3 decodes 1 to 32 stream ID bits"));
        }
        for (client, e) in clients.iter().zip(&client_elements) {
            for d in &client.devices {
                if u64::from(d.stream_id) >> sid_bits != 0 {
                    let element = e
                        .children
                        .iter()
                        .find(|c| {
                            c.name == "device" && c.attr("name").is_some_and(|n| n.value == d.name)
                        })
                        .unwrap_or(e);
                    return Err(s.attr(
                        element,
                        "stream_id",
                        format!(
                            "stream {:#x} is wider than the SMMU's {sid_bits} stream ID bits",
                            d.stream_id
                        ),
                    ));
                }
            }
        }
        s.only_attrs(page_tables, &["mr"])?;
        let smmu_regs = self.server_memory(server, smmu, "mr", false)?;
        if smmu_regs.size < SMMU_FRAME {
            let mr = self.sys.mr(&smmu_regs.mr).expect("server_memory found it");
            return Err(self.sdf.attr(
                &mr.element,
                "size",
                format!(
                    "`{}` is the SMMUv3 register frame ({}): {SMMU_FRAME:#x} bytes, not {:#x}",
                    smmu_regs.mr,
                    s.line(smmu),
                    smmu_regs.size
                ),
            ));
        }
        let smmu_memory = self.server_memory(server, smmu, "memory", true)?;
        let page_tables_element = page_tables;
        let page_tables = self.server_memory(server, page_tables, "mr", true)?;
        let event_irq_channel = self.server_irq(server, smmu, "event_irq")?;
        let gerror_irq_channel = self.server_irq(server, smmu, "gerror_irq")?;
        let config = Config {
            server: server.name.clone(),
            smmu_regs,
            smmu_memory,
            page_tables,
            event_irq_channel,
            gerror_irq_channel,
            stack_size: server.stack_size,
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
                    })
                })
                .collect(),
            static_spaces: Vec::new(),
            device_bars: Vec::new(),
        };
        // Every client's table pages are promised: the pool must hold them
        // all, or one client's use could take what another was given.
        let promised: u64 = config.clients.iter().map(|c| c.quota.table_pages).sum();
        let pool = config.page_tables.size / PAGE;
        if promised > pool {
            let mr = self.sys.mr(&config.page_tables.mr).expect("checked");
            return Err(s.attr(
                page_tables_element,
                "mr",
                format!(
                    "the clients' table_pages quotas add up to {promised} pages, more than the {pool} of region `{}` ({})",
                    config.page_tables.mr,
                    self.sdf.line(&mr.element)
                ),
            ));
        }
        // Server memory must not be handed to any client: the client's
        // map in system.xml is at fault.
        let private = [
            (&config.smmu_regs, smmu),
            (&config.smmu_memory, smmu),
            (&config.page_tables, page_tables_element),
        ];
        for (client, e) in config.clients.iter().zip(&client_elements) {
            let pd = self.sys.pd(&client.pd).expect("checked");
            for (m, named) in private {
                if let Some(map) = pd.map_of(&m.mr) {
                    return Err(self.sdf.attr(
                        &map.element,
                        "mr",
                        format!(
                            "`{}` is a client ({}) and `{}` the server's own memory ({}): no client maps it",
                            client.pd,
                            s.line(e),
                            m.mr,
                            s.line(named)
                        ),
                    ));
                }
            }
        }
        Ok(config)
    }

    /// A region the server maps, with the attribute that names it.
    fn server_memory(
        &self,
        server: &ProtectionDomain,
        e: &Element,
        attr: &str,
        cached: bool,
    ) -> Result<ServerMemory, Error> {
        let s = self.side;
        let name = s.required(e, attr)?;
        let mr = self.sys.mr(name).ok_or_else(|| {
            s.attr(
                e,
                attr,
                format!(
                    "no <memory_region name=\"{name}\"> in {}{}",
                    self.sdf.file,
                    self.mr_hint(name)
                ),
            )
        })?;
        let map = server.map_of(name).ok_or_else(|| {
            s.attr(
                e,
                attr,
                format!(
                    "`{name}` is not mapped into the server `{}`{}",
                    server.name,
                    self.map_hint(server, name)
                ),
            )
        })?;
        if !(map.read && map.write) {
            return Err(self.sdf.attr(&map.element, "perms", "the server needs rw"));
        }
        if map.cached != cached {
            let want = if cached {
                "true (normal memory)"
            } else {
                "false (device registers)"
            };
            return Err(self
                .sdf
                .attr(&map.element, "cached", format!("must be {want}")));
        }
        let paddr = self.paddr(server, e, mr)?;
        Ok(ServerMemory {
            mr: name.to_string(),
            vaddr: map.vaddr,
            size: mr.size,
            paddr,
        })
    }

    /// How the server learns `mr`'s physical address: its `phys_addr`, or
    /// a `<setvar region_paddr>` of the server; else an error about the
    /// region in system.xml, which lacks both (saying where `e` names it).
    fn paddr(
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

    /// The channel id of the server's `<irq>` with the number in `attr`.
    fn server_irq(&self, server: &ProtectionDomain, e: &Element, attr: &str) -> Result<u64, Error> {
        let number = self.side.required_number(e, attr)?;
        let irq = server
            .irqs
            .iter()
            .find(|i| i.irq == number)
            .ok_or_else(|| {
                self.side.attr(
                    e,
                    attr,
                    format!("the server `{}` has no <irq irq=\"{number}\">", server.name),
                )
            })?;
        if !irq.edge {
            return Err(self.sdf.attr(
                &irq.element,
                "trigger",
                "the SMMUv3's interrupts are edge-triggered",
            ));
        }
        Ok(irq.id)
    }

    fn client(
        &self,
        server: &ProtectionDomain,
        e: &Element,
        earlier: &[Client],
    ) -> Result<Client, Error> {
        let s = self.side;
        s.only_attrs(e, &["pd", "command_page", "manager"])?;
        let name = s.required(e, "pd")?;
        let pd = self.sys.pd(name).ok_or_else(|| {
            s.attr(
                e,
                "pd",
                format!(
                    "no <protection_domain name=\"{name}\"> in {}{}",
                    self.sdf.file,
                    self.pd_hint(name)
                ),
            )
        })?;
        if name == server.name {
            return Err(s.attr(e, "pd", "the server is not its own client"));
        }
        if earlier.iter().any(|c| c.pd == name) {
            return Err(s.attr(e, "pd", "this PD is already a client"));
        }
        let (server_end, client_end) = self.sys.channel(&server.name, name).ok_or_else(|| {
            s.attr(
                e,
                "pd",
                format!("no <channel> between `{}` and `{name}`", server.name),
            )
        })?;
        if !client_end.pp {
            return Err(self.sdf.attr(
                &client_end.element,
                "pp",
                "the client calls the server: its end needs pp=\"true\"",
            ));
        }
        for end in [server_end, client_end] {
            if end.id > MAX_CHANNEL_ID {
                return Err(self.sdf.attr(
                    &end.element,
                    "id",
                    format!("ids run 0..={MAX_CHANNEL_ID}"),
                ));
            }
        }
        if pd.priority >= server.priority {
            return Err(self.sdf.attr(
                &pd.element,
                "priority",
                format!(
                    "a client calls the server, so its priority must be below the server's ({})",
                    server.priority
                ),
            ));
        }
        let page_name = s.required(e, "command_page")?;
        let page = self.sys.mr(page_name).ok_or_else(|| {
            s.attr(
                e,
                "command_page",
                format!(
                    "no <memory_region name=\"{page_name}\"> in {}{}",
                    self.sdf.file,
                    self.mr_hint(page_name)
                ),
            )
        })?;
        command_page_size(self.sdf, s, page, e, name)?;
        if let Some(other) = earlier.iter().find(|c| c.command_page == page_name) {
            return Err(s.attr(
                e,
                "command_page",
                format!(
                    "`{page_name}` is already the command page of `{}`",
                    other.pd
                ),
            ));
        }
        let mapped_rw = |pd: &ProtectionDomain| -> Result<u64, Error> {
            let m = pd.map_of(page_name).ok_or_else(|| {
                s.attr(
                    e,
                    "command_page",
                    format!(
                        "`{page_name}` is not mapped into `{}`{}",
                        pd.name,
                        self.map_hint(pd, page_name)
                    ),
                )
            })?;
            if !(m.read && m.write) {
                return Err(self
                    .sdf
                    .attr(&m.element, "perms", "a command page is mapped rw"));
            }
            Ok(m.vaddr)
        };
        let command_page_server = mapped_rw(server)?;
        let command_page_client = mapped_rw(pd)?;
        // The client library finds its page through this setvar.
        let client_map = pd.map_of(page_name).expect("mapped_rw found it");
        if client_map.setvar_vaddr.as_deref() != Some("command_page") {
            return Err(self.sdf.attr(
                &client_map.element,
                "setvar_vaddr",
                "a client finds its command page through setvar_vaddr=\"command_page\"",
            ));
        }
        let mut client = Client {
            child_of: pd.parent.clone(),
            program_image: pd.program_image.clone().unwrap_or_default(),
            pd: name.to_string(),
            server_channel: server_end.id,
            client_channel: client_end.id,
            command_page: page_name.to_string(),
            command_page_server,
            command_page_client,
            regions: Vec::new(),
            devices: Vec::new(),
            quota: Quota {
                objects: 0,
                ioases: 0,
                mapped_pages: 0,
                table_pages: 0,
                hwpts: 0,
                mappings: 0,
            },
            manager: s.boolean(e, "manager", false)?,
            disk_blocks: None,
        };
        let mut quota_seen = false;
        let mut dma_elements: Vec<&Element> = Vec::new();
        let mut disk: Option<&Element> = None;
        for c in &e.children {
            match c.name.as_str() {
                "quota" if !quota_seen => {
                    quota_seen = true;
                    s.only_attrs(
                        c,
                        &[
                            "objects",
                            "ioases",
                            "mapped_pages",
                            "table_pages",
                            "hwpts",
                            "mappings",
                        ],
                    )?;
                    client.quota = Quota {
                        objects: s.required_number(c, "objects")?,
                        ioases: s.required_number(c, "ioases")?,
                        mapped_pages: s.required_number(c, "mapped_pages")?,
                        table_pages: s.required_number(c, "table_pages")?,
                        hwpts: s.required_number(c, "hwpts")?,
                        mappings: s.required_number(c, "mappings")?,
                    };
                    if client.quota.objects > MAX_OBJECTS as u64 {
                        return Err(s.attr(c, "objects", format!("at most {MAX_OBJECTS}")));
                    }
                }
                "quota" => return Err(s.element(c, "given twice")),
                "dma" => {
                    client.regions.push(self.region(server, pd, c)?);
                    dma_elements.push(c);
                }
                "device" => {
                    let device = self.device(server, c, earlier, &client)?;
                    if let Some(blocks) = device.disk_blocks {
                        if let Some(first) = disk {
                            return Err(s.attr(
                                c,
                                "disk_blocks",
                                format!(
                                    "`{name}` already drives a disk, device `{}` ({})",
                                    first.attr("name").map_or("", |a| a.value.as_str()),
                                    s.line(first)
                                ),
                            ));
                        }
                        disk = Some(c);
                        client.disk_blocks = Some(blocks);
                    }
                    client.devices.push(device);
                }
                _ => return Err(s.element(c, "unknown element (expected quota, dma or device)")),
            }
        }
        if !quota_seen {
            return Err(s.element(e, "missing <quota>"));
        }
        self.shares(&client, &dma_elements, disk)?;
        Ok(client)
    }

    /// The block clients' shares of `client`'s disk (`disk`, its device
    /// element): one on every region another PD maps, none elsewhere, each
    /// on the disk and none overlapping another.
    fn shares(
        &self,
        client: &Client,
        dma: &[&Element],
        disk: Option<&Element>,
    ) -> Result<(), Error> {
        let s = self.side;
        let mut seen: Vec<(&Region, &Element)> = Vec::new();
        for (r, &e) in client.regions.iter().zip(dma) {
            let (Some(disk), Some(blocks)) = (disk, client.disk_blocks) else {
                if r.share.is_some() {
                    return Err(s.attr(
                        e,
                        "first_block",
                        format!(
                            "a share of a disk, but `{}` drives none (no <device disk_blocks>)",
                            client.pd
                        ),
                    ));
                }
                continue;
            };
            let Some(share) = r.share else {
                if let Some(peer) = &r.shared_with {
                    return Err(s.element(
                        e,
                        format!(
                            "`{}` is block client `{peer}`'s data region: give its share of the disk ({}) as first_block and blocks",
                            r.mr,
                            s.line(disk)
                        ),
                    ));
                }
                continue;
            };
            if r.shared_with.is_none() {
                return Err(s.attr(
                    e,
                    "first_block",
                    format!(
                        "`{}` is no block client's data region (no other PD maps it): a share of the disk is a block client's",
                        r.mr
                    ),
                ));
            }
            if share.end() > blocks {
                return Err(s.attr(
                    e,
                    "blocks",
                    format!(
                        "blocks {}..{} end past the disk's {blocks} ({})",
                        share.first_block,
                        share.end(),
                        s.line(disk)
                    ),
                ));
            }
            if let Some((other, at)) = seen.iter().find(|(o, _)| {
                o.share
                    .is_some_and(|o| o.first_block < share.end() && share.first_block < o.end())
            }) {
                let o = other.share.expect("found by its share");
                return Err(s.attr(
                    e,
                    "first_block",
                    format!(
                        "blocks {}..{} overlap `{}`'s share, blocks {}..{} ({})",
                        share.first_block,
                        share.end(),
                        other.mr,
                        o.first_block,
                        o.end(),
                        s.line(at)
                    ),
                ));
            }
            seen.push((r, e));
        }
        Ok(())
    }

    fn region(
        &self,
        server: &ProtectionDomain,
        pd: &ProtectionDomain,
        e: &Element,
    ) -> Result<Region, Error> {
        let s = self.side;
        s.only_attrs(e, &["mr", "mode", "first_block", "blocks"])?;
        let name = s.required(e, "mr")?;
        let share = match (s.number(e, "first_block")?, s.number(e, "blocks")?) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(s.attr(
                    e,
                    "blocks",
                    "missing: a share of the disk is first_block and blocks",
                ))
            }
            (None, Some(_)) => {
                return Err(s.attr(
                    e,
                    "first_block",
                    "missing: a share of the disk is first_block and blocks",
                ))
            }
            (Some(_), Some(0)) => {
                return Err(s.attr(e, "blocks", "a share of the disk is at least one block"))
            }
            (Some(first_block), Some(blocks)) => {
                if first_block.checked_add(blocks).is_none() {
                    return Err(s.attr(
                        e,
                        "blocks",
                        format!("{first_block:#x} + {blocks:#x} blocks wraps past 2^64"),
                    ));
                }
                Some(Share {
                    first_block,
                    blocks,
                })
            }
        };
        let strict = match e.attr("mode").map(|a| a.value.as_str()) {
            None | Some("static") => false,
            Some("strict") => true,
            Some(other) => {
                return Err(s.attr(e, "mode", format!("`{other}` is neither static nor strict")))
            }
        };
        let mr = self.sys.mr(name).ok_or_else(|| {
            s.attr(
                e,
                "mr",
                format!(
                    "no <memory_region name=\"{name}\"> in {}{}",
                    self.sdf.file,
                    self.mr_hint(name)
                ),
            )
        })?;
        let map = pd.map_of(name).ok_or_else(|| {
            s.attr(
                e,
                "mr",
                format!(
                    "`{name}` is not mapped into `{}`{}",
                    pd.name,
                    self.map_hint(pd, name)
                ),
            )
        })?;
        if let Some(server_map) = server.map_of(name) {
            return Err(self.sdf.attr(
                &server_map.element,
                "mr",
                format!(
                    "`{name}` is DMA memory of `{}` ({}): a DMA region must be the client's memory only, not mapped into the server",
                    pd.name,
                    s.line(e)
                ),
            ));
        }
        let paddr = self.paddr(server, e, mr)?;
        if map.vaddr % PAGE != 0 {
            return Err(self.sdf.attr(
                &map.element,
                "vaddr",
                format!(
                    "`{name}` is DMA memory of `{}` ({}): DMA regions are whole pages",
                    pd.name,
                    s.line(e)
                ),
            ));
        }
        if mr.size % PAGE != 0 || mr.size == 0 {
            return Err(self.sdf.attr(
                &mr.element,
                "size",
                format!(
                    "`{name}` is DMA memory of `{}` ({}): DMA regions are whole pages",
                    pd.name,
                    s.line(e)
                ),
            ));
        }
        let mut others = self
            .sys
            .pds
            .iter()
            .filter(|p| p.name != pd.name && p.name != server.name && p.map_of(name).is_some());
        let shared_with = match (others.next(), others.next()) {
            (Some(one), None) => Some(one.name.clone()),
            _ => None,
        };
        Ok(Region {
            mr: name.to_string(),
            vaddr: map.vaddr,
            size: mr.size,
            read: map.read,
            write: map.write,
            paddr,
            strict,
            shared_with,
            share,
        })
    }

    fn device(
        &self,
        server: &ProtectionDomain,
        e: &Element,
        earlier: &[Client],
        this: &Client,
    ) -> Result<Device, Error> {
        let s = self.side;
        s.only_attrs(
            e,
            &[
                "name",
                "stream_id",
                "dma_mask",
                "config_mr",
                "qemu",
                "disk_blocks",
            ],
        )?;
        let name = s.required(e, "name")?.to_string();
        let named = earlier
            .iter()
            .chain(std::iter::once(this))
            .find(|c| c.devices.iter().any(|d| d.name == name));
        if let Some(c) = named {
            return Err(s.attr(
                e,
                "name",
                format!("client `{}` already has a device named `{name}`", c.pd),
            ));
        }
        let stream = s.required_number(e, "stream_id")?;
        let stream_id =
            u32::try_from(stream).map_err(|_| s.attr(e, "stream_id", "stream IDs are 32 bits"))?;
        let owner = earlier.iter().chain(std::iter::once(this)).find_map(|c| {
            c.devices
                .iter()
                .find(|d| d.stream_id == stream_id)
                .map(|d| (c, d))
        });
        if let Some((c, d)) = owner {
            return Err(s.attr(
                e,
                "stream_id",
                format!(
                    "stream {stream_id:#x} already belongs to device `{}` of `{}`",
                    d.name, c.pd
                ),
            ));
        }
        let dma_mask = s.required_number(e, "dma_mask")?;
        if dma_mask < PAGE - 1 || dma_mask & dma_mask.wrapping_add(1) != 0 {
            return Err(s.attr(e, "dma_mask", "a DMA mask is 2^n - 1, at least a page"));
        }
        let config_vaddr = match e.attr("config_mr") {
            None => None,
            Some(a) => {
                let map = server.map_of(&a.value).ok_or_else(|| {
                    s.attr(
                        e,
                        "config_mr",
                        format!(
                            "`{}` is not mapped into the server{}",
                            a.value,
                            self.map_hint(server, &a.value)
                        ),
                    )
                })?;
                if map.cached {
                    return Err(self.sdf.attr(
                        &map.element,
                        "cached",
                        "configuration space is device memory: cached=\"false\"",
                    ));
                }
                Some(map.vaddr)
            }
        };
        let disk_blocks = s.number(e, "disk_blocks")?;
        if disk_blocks == Some(0) {
            return Err(s.attr(e, "disk_blocks", "a disk has at least one block"));
        }
        let qemu = match e.attr("qemu") {
            None => None,
            Some(a) => Some(qemu_device(&a.value, stream_id).map_err(|m| s.attr(e, "qemu", m))?),
        };
        let mut reserved: Vec<(u64, u64)> = Vec::new();
        for w in &e.children {
            if w.name != "reserved" {
                return Err(s.element(w, "unknown element (expected reserved)"));
            }
            s.only_attrs(w, &["start", "last"])?;
            let start = s.required_number(w, "start")?;
            let last = s.required_number(w, "last")?;
            if start > last {
                return Err(s.attr(w, "last", format!("below start {start:#x}")));
            }
            // IOVAs are mapped in whole pages, so a window is whole pages.
            if start % PAGE != 0 {
                return Err(s.attr(w, "start", "a reserved window starts on a page"));
            }
            if last.checked_add(1).is_some_and(|end| end % PAGE != 0) {
                return Err(s.attr(w, "last", "a reserved window ends on a page's last byte"));
            }
            if last > dma_mask {
                return Err(s.attr(
                    w,
                    "last",
                    format!("beyond the device's DMA mask {dma_mask:#x}: it can never emit it"),
                ));
            }
            if reserved.len() == MAX_DEVICE_WINDOWS {
                return Err(s.element(w, format!("more than {MAX_DEVICE_WINDOWS} windows")));
            }
            if let Some(&(a, b)) = reserved.iter().find(|&&(a, b)| start <= b && a <= last) {
                return Err(s.attr(w, "start", format!("overlaps the window {a:#x}..={b:#x}")));
            }
            reserved.push((start, last));
        }
        Ok(Device {
            name,
            stream_id,
            dma_mask,
            reserved,
            config_vaddr,
            qemu,
            disk_blocks,
        })
    }
}

/// Checks a `qemu` attribute: a device model and its options, placed by
/// the stream ID on QEMU virt's root bus.
pub(crate) fn qemu_device(value: &str, stream_id: u32) -> Result<String, String> {
    let model = value.split(',').next().unwrap_or("");
    if model.is_empty() {
        return Err("a QEMU device model first (such as `edu`), then its options".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ",=._-".contains(*c)))
    {
        return Err(format!("`{c}` is not allowed in a QEMU device's options"));
    }
    if let Some(o) = value
        .split(',')
        .skip(1)
        .find(|o| o.starts_with("addr=") || o.starts_with("bus="))
    {
        return Err(format!(
            "`{o}`: the stream ID places the device (bus 0, devfn = stream_id & 0xff)"
        ));
    }
    if stream_id > 0xff {
        return Err(format!(
            "stream {stream_id:#x} is not on bus 0, the only bus of QEMU virt's PCI host"
        ));
    }
    if stream_id >> 3 == 0 {
        return Err("device 0 of bus 0 is QEMU virt's host bridge".into());
    }
    Ok(value.to_string())
}

/// The QEMU command line arguments that put every device with a `qemu`
/// attribute where its stream ID says.
pub fn qemu_devices(config: &Config) -> Vec<String> {
    let statics = config
        .static_spaces
        .iter()
        .map(|s| (s.qemu.as_ref(), s.stream_id));
    config
        .clients
        .iter()
        .flat_map(|c| &c.devices)
        .map(|d| (d.qemu.as_ref(), d.stream_id))
        .chain(statics)
        .filter_map(|(qemu, stream_id)| {
            let model = qemu?;
            Some([
                "-device".to_string(),
                format!(
                    "{model},addr={:02x}.{}",
                    stream_id >> 3 & 0x1f,
                    stream_id & 7
                ),
            ])
        })
        .flatten()
        .collect()
}

/// The symbols every setvar of the server names, in a stable order.
pub fn server_symbols(config: &Config) -> Vec<String> {
    let mut out: BTreeMap<String, ()> = BTreeMap::new();
    let all = [&config.smmu_regs, &config.smmu_memory, &config.page_tables]
        .into_iter()
        .map(|m| &m.paddr)
        .chain(
            config
                .clients
                .iter()
                .flat_map(|c| c.regions.iter().map(|r| &r.paddr)),
        )
        .chain(
            config
                .static_spaces
                .iter()
                .flat_map(|s| s.iomaps.iter().map(|m| &m.paddr)),
        );
    for p in all {
        if let Paddr::Symbol(s) = p {
            out.insert(s.clone(), ());
        }
    }
    out.into_keys().collect()
}

/// `mr`, the command page `client` (of PD `pd`) names, is one page.
pub fn command_page_size(
    sdf: Source<'_>,
    side: Source<'_>,
    mr: &MemoryRegion,
    client: &Element,
    pd: &str,
) -> Result<(), Error> {
    if mr.size == PAGE {
        return Ok(());
    }
    Err(sdf.attr(
        &mr.element,
        "size",
        format!(
            "`{}` is the command page of `{pd}` ({}): one {PAGE:#x}-byte page",
            mr.name,
            side.line(client)
        ),
    ))
}
