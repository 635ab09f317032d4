//! The parts of a Microkit system description the IOMMU configuration
//! depends on, and the Microkit tool's own rules on them: known elements
//! and attributes only, priorities 0..=254, distinct channel and IRQ ids
//! per PD, no overlapping maps in a PD, child PDs with distinct ids and
//! at most 63 PDs in all, maps, setvars and channel ends naming what
//! exists, memory regions in the page sizes aarch64 has. A PD's
//! `<virtual_machine>` is checked in `crate::virtual_machine`, a top-level
//! `<io_address_space>` in `crate::io_address_space`.

use crate::error::{Error, Source};
use crate::io_address_space::{self, IoAddressSpace};
use crate::virtual_machine::{self, VirtualMachine};
use crate::xml::Element;

/// Microkit's highest channel / IRQ id (ids run 0..=61).
pub const MAX_CHANNEL_ID: u64 = 61;
/// Highest child PD id. The tool does not bound it, but a parent holds its
/// children's TCB capabilities in a block of 64 slots; like channel ids,
/// child ids run 0..=61 here.
pub const MAX_CHILD_ID: u64 = 61;
/// Most PDs in a system, children included (the tool's MAX_PDS).
pub const MAX_PDS: usize = 63;

#[derive(Clone, Debug)]
pub struct MemoryRegion {
    pub name: String,
    pub size: u64,
    /// The page size it is mapped in (`page_size`, 4 KiB when absent).
    pub page_size: u64,
    pub phys_addr: Option<u64>,
    pub element: Element,
}

#[derive(Clone, Debug)]
pub struct Map {
    pub mr: String,
    pub vaddr: u64,
    pub read: bool,
    pub write: bool,
    pub cached: bool,
    pub setvar_vaddr: Option<String>,
    pub element: Element,
}

#[derive(Clone, Debug)]
pub struct Irq {
    pub irq: u64,
    pub id: u64,
    pub edge: bool,
    pub element: Element,
}

#[derive(Clone, Debug)]
pub struct SetVar {
    pub symbol: String,
    pub region_paddr: String,
    pub element: Element,
}

#[derive(Clone, Debug)]
pub struct ProtectionDomain {
    pub name: String,
    pub priority: u64,
    /// Bytes of stack (Microkit's default 0x2000 when absent).
    pub stack_size: u64,
    pub program_image: Option<String>,
    pub maps: Vec<Map>,
    pub irqs: Vec<Irq>,
    pub setvars: Vec<SetVar>,
    /// For a child PD: its parent's name and its id there.
    pub parent: Option<(String, u64)>,
    /// The guest this PD runs as its VMM, if one.
    pub virtual_machine: Option<VirtualMachine>,
    pub element: Element,
}

impl ProtectionDomain {
    pub fn map_of(&self, mr: &str) -> Option<&Map> {
        self.maps.iter().find(|m| m.mr == mr)
    }

    /// Every symbol the Microkit tool will patch in this PD's image.
    pub fn setvar_symbols(&self) -> impl Iterator<Item = &str> {
        self.maps
            .iter()
            .filter_map(|m| m.setvar_vaddr.as_deref())
            .chain(self.setvars.iter().map(|s| s.symbol.as_str()))
    }
}

#[derive(Clone, Debug)]
pub struct End {
    pub pd: String,
    pub id: u64,
    pub pp: bool,
    pub element: Element,
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub ends: [End; 2],
    pub element: Element,
}

#[derive(Clone, Debug)]
pub struct System {
    pub memory_regions: Vec<MemoryRegion>,
    pub pds: Vec<ProtectionDomain>,
    pub channels: Vec<Channel>,
    /// The `<io_address_space>` elements: static IO address spaces.
    pub io_address_spaces: Vec<IoAddressSpace>,
}

impl System {
    pub fn mr(&self, name: &str) -> Option<&MemoryRegion> {
        self.memory_regions.iter().find(|m| m.name == name)
    }

    pub fn pd(&self, name: &str) -> Option<&ProtectionDomain> {
        self.pds.iter().find(|p| p.name == name)
    }

    /// The channel between `a` and `b`: (a's end, b's end).
    pub fn channel(&self, a: &str, b: &str) -> Option<(&End, &End)> {
        self.channels.iter().find_map(|c| {
            let [x, y] = &c.ends;
            if x.pd == a && y.pd == b {
                Some((x, y))
            } else if y.pd == a && x.pd == b {
                Some((y, x))
            } else {
                None
            }
        })
    }
}

/// Reads the description; `src` names the file in errors.
/// The attributes the Microkit tool (2.3.0) knows on each element it
/// reads; any other is refused there, so here too (a `perm=` for `perms=`
/// would otherwise read as the default).
const ATTRIBUTES: &[(&str, &[&str])] = &[
    ("memory_region", &["name", "size", "page_size", "phys_addr"]),
    (
        "protection_domain",
        &[
            "name",
            "priority",
            "pp",
            "budget",
            "period",
            "passive",
            "stack_size",
            "smc",
            "cpu",
            "id",
        ],
    ),
    ("program_image", &["path"]),
    (
        "map",
        &[
            "mr",
            "vaddr",
            "perms",
            "cached",
            "setvar_vaddr",
            "setvar_size",
        ],
    ),
    ("irq", &["irq", "id", "trigger"]),
    ("setvar", &["symbol", "region_paddr"]),
    ("channel", &[]),
    ("end", &["pd", "id", "pp", "notify"]),
    ("io_address_space", &["name", "peripheral_id", "domain_id"]),
    ("iomap", &["mr", "iovaddr", "perms"]),
];

/// Highest priority a PD may have (the Microkit tool's bound).
const MAX_PRIORITY: u64 = 254;
/// The page sizes an aarch64 memory region may be mapped in.
const PAGE_SIZES: [u64; 2] = [0x1000, 0x20_0000];

/// Refuses attributes the tool does not know on `e`, and `e` itself
/// inside a PD or channel when the tool does not know it.
fn check_attributes(src: Source<'_>, e: &Element) -> Result<(), Error> {
    let Some((_, known)) = ATTRIBUTES.iter().find(|(name, _)| *name == e.name) else {
        return Err(src.element(e, "not an element a Microkit system description has"));
    };
    if let Some(a) = e.attrs.iter().find(|a| !known.contains(&a.name.as_str())) {
        return Err(src.attr(
            e,
            &a.name,
            format!(
                "unknown attribute (the Microkit tool knows: {})",
                known.join(", ")
            ),
        ));
    }
    e.children
        .iter()
        .try_for_each(|c| match (e.name.as_str(), c.name.as_str()) {
            ("protection_domain", "virtual_machine") => Ok(()),
            ("protection_domain" | "channel" | "io_address_space", _) => check_attributes(src, c),
            _ => Ok(()),
        })
}

pub fn parse(src: Source<'_>, root: &Element) -> Result<System, Error> {
    if root.name != "system" {
        return Err(src.element(root, "the root element must be <system>"));
    }
    for e in &root.children {
        if e.name == "virtual_machine" {
            return Err(src.element(e, "virtual machine must be a child of a protection domain"));
        }
        if e.name != "domain_schedule" {
            check_attributes(src, e)?;
        }
    }
    let mut system = System {
        memory_regions: Vec::new(),
        pds: Vec::new(),
        channels: Vec::new(),
        io_address_spaces: Vec::new(),
    };
    for e in &root.children {
        match e.name.as_str() {
            "memory_region" => {
                let name = src.required(e, "name")?.to_string();
                if system.mr(&name).is_some() {
                    return Err(src.attr(e, "name", "a memory region of this name exists"));
                }
                let page_size = src.number(e, "page_size")?.unwrap_or(PAGE_SIZES[0]);
                if !PAGE_SIZES.contains(&page_size) {
                    return Err(src.attr(
                        e,
                        "page_size",
                        format!("page size {page_size:#x} not supported"),
                    ));
                }
                system.memory_regions.push(MemoryRegion {
                    name,
                    size: src.required_number(e, "size")?,
                    page_size,
                    phys_addr: src.number(e, "phys_addr")?,
                    element: e.clone(),
                });
            }
            "protection_domain" => collect_pd(src, e, None, &mut system.pds)?,
            "io_address_space" => {
                let space = io_address_space::parse(src, e, &system.io_address_spaces)?;
                system.io_address_spaces.push(space);
            }
            "channel" => {
                let ends: Vec<&Element> = e.children.iter().filter(|c| c.name == "end").collect();
                if ends.len() != 2 {
                    return Err(src.element(e, "a channel has exactly two <end> elements"));
                }
                let end = |x: &Element| -> Result<End, Error> {
                    Ok(End {
                        pd: src.required(x, "pd")?.to_string(),
                        id: src.required_number(x, "id")?,
                        pp: src.boolean(x, "pp", false)?,
                        element: x.clone(),
                    })
                };
                system.channels.push(Channel {
                    ends: [end(ends[0])?, end(ends[1])?],
                    element: e.clone(),
                });
            }
            _ => {}
        }
    }
    check_references(src, &system)?;
    check_ids(src, &system)?;
    let hosted = system.pds.iter().filter_map(|pd| {
        let vm = pd.virtual_machine.as_ref()?;
        let children = system
            .pds
            .iter()
            .filter_map(|c| match &c.parent {
                Some((parent, id)) if *parent == pd.name => Some((*id, &c.element)),
                _ => None,
            })
            .collect();
        Some(virtual_machine::Hosted {
            pd: &pd.name,
            vm,
            children,
        })
    });
    virtual_machine::check(
        src,
        hosted,
        |mr| {
            system.mr(mr).map(|m| virtual_machine::Region {
                size: m.size,
                page_size: m.page_size,
            })
        },
        |mr| {
            src.hint(
                mr,
                system
                    .memory_regions
                    .iter()
                    .map(|m| (m.name.as_str(), &m.element)),
            )
        },
    )?;
    io_address_space::check(
        src,
        &system.io_address_spaces,
        |mr| system.mr(mr).map(|m| m.size),
        |mr| {
            src.hint(
                mr,
                system
                    .memory_regions
                    .iter()
                    .map(|m| (m.name.as_str(), &m.element)),
            )
        },
    )?;
    Ok(system)
}

/// Every map and `region_paddr` names a memory region and every channel
/// end a PD of this file, as the tool requires: a typo here must not
/// surface as a name the IOMMU policy cannot find.
fn check_references(src: Source<'_>, system: &System) -> Result<(), Error> {
    let mr = |e: &Element, attr: &str, name: &str| -> Result<(), Error> {
        if system.mr(name).is_some() {
            return Ok(());
        }
        let hint = src.hint(
            name,
            system
                .memory_regions
                .iter()
                .map(|m| (m.name.as_str(), &m.element)),
        );
        Err(src.attr(e, attr, format!("no <memory_region name=\"{name}\">{hint}")))
    };
    for pd in &system.pds {
        for m in &pd.maps {
            mr(&m.element, "mr", &m.mr)?;
        }
        for v in &pd.setvars {
            mr(&v.element, "region_paddr", &v.region_paddr)?;
        }
    }
    for end in system.channels.iter().flat_map(|c| &c.ends) {
        if system.pd(&end.pd).is_none() {
            let hint = src.hint(
                &end.pd,
                system.pds.iter().map(|p| (p.name.as_str(), &p.element)),
            );
            return Err(src.attr(
                &end.element,
                "pd",
                format!("no <protection_domain name=\"{}\">{hint}", end.pd),
            ));
        }
    }
    Ok(())
}

/// Each PD's channel and IRQ ids are distinct and in 0..=62, as the tool
/// requires: two clients on one server channel id would share one
/// identity.
fn check_ids(src: Source<'_>, system: &System) -> Result<(), Error> {
    for pd in &system.pds {
        let mut used: Vec<(u64, &str)> = Vec::new();
        let ends = system
            .channels
            .iter()
            .flat_map(|c| c.ends.iter())
            .filter(|e| e.pd == pd.name)
            .map(|e| (e.id, &e.element, "channel"));
        let irqs = pd.irqs.iter().map(|i| (i.id, &i.element, "IRQ"));
        for (id, element, what) in ends.chain(irqs) {
            if id > MAX_CHANNEL_ID {
                return Err(src.attr(element, "id", format!("must be 0..={MAX_CHANNEL_ID}")));
            }
            if let Some((_, other)) = used.iter().find(|(u, _)| *u == id) {
                return Err(src.attr(
                    element,
                    "id",
                    format!(
                        "`{}` already uses id {id} for a{} {other}",
                        pd.name,
                        if *other == "IRQ" { "n" } else { "" }
                    ),
                ));
            }
            used.push((id, what));
        }
    }
    Ok(())
}

/// No two maps of one PD overlap in its address space (the tool refuses
/// them). Not part of [`parse`]: what a map's size says about the region
/// (a command page of two pages) is said first, by its own rule.
pub fn check_overlaps(src: Source<'_>, system: &System) -> Result<(), Error> {
    for pd in &system.pds {
        let span = |m: &Map| {
            let size = system.mr(&m.mr).map_or(0, |r| r.size);
            (m.vaddr, m.vaddr.saturating_add(size.max(1) - 1))
        };
        for (i, m) in pd.maps.iter().enumerate() {
            let (start, last) = span(m);
            if let Some(o) = pd.maps[..i].iter().find(|o| {
                let (s, l) = span(o);
                s <= last && start <= l
            }) {
                return Err(src.attr(
                    &m.element,
                    "vaddr",
                    format!("overlaps the map of `{}` in `{}`", o.mr, pd.name),
                ));
            }
        }
    }
    Ok(())
}

/// A PD and, recursively, its child PDs (`parent` is the PD `e` is
/// nested in).
fn collect_pd(
    src: Source<'_>,
    e: &Element,
    parent: Option<&str>,
    pds: &mut Vec<ProtectionDomain>,
) -> Result<(), Error> {
    let name = src.required(e, "name")?.to_string();
    if pds.iter().any(|p| p.name == name) {
        return Err(src.attr(e, "name", "a protection domain of this name exists"));
    }
    if pds.len() == MAX_PDS {
        return Err(src.element(
            e,
            format!("more than {MAX_PDS} protection domains (the Microkit tool's limit)"),
        ));
    }
    let parent = match (parent, e.attr("id")) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(src.attr(e, "id", "only a child protection domain has an id"))
        }
        (Some(_), None) => return Err(src.element(e, "a child protection domain needs an id")),
        (Some(p), Some(_)) => {
            let id = src.required_number(e, "id")?;
            if id > MAX_CHILD_ID {
                return Err(src.attr(e, "id", format!("must be 0..={MAX_CHILD_ID}")));
            }
            if let Some(sibling) = pds.iter().find(|q| {
                q.parent
                    .as_ref()
                    .is_some_and(|(qp, qid)| qp == p && *qid == id)
            }) {
                return Err(src.attr(
                    e,
                    "id",
                    format!("`{p}` already has child `{}` with id {id}", sibling.name),
                ));
            }
            Some((p.to_string(), id))
        }
    };
    let mut pd = ProtectionDomain {
        name,
        priority: match src.number(e, "priority")?.unwrap_or(0) {
            p if p > MAX_PRIORITY => {
                return Err(src.attr(e, "priority", format!("must be 0..={MAX_PRIORITY}")))
            }
            p => p,
        },
        stack_size: src.number(e, "stack_size")?.unwrap_or(0x2000),
        program_image: None,
        maps: Vec::new(),
        irqs: Vec::new(),
        setvars: Vec::new(),
        parent,
        virtual_machine: None,
        element: e.clone(),
    };
    let mut children = Vec::new();
    for c in &e.children {
        match c.name.as_str() {
            "program_image" => pd.program_image = Some(src.required(c, "path")?.to_string()),
            "map" => {
                let perms = c.attr("perms").map_or("rw", |a| a.value.as_str());
                if perms.is_empty() || perms.chars().any(|p| !"rwx".contains(p)) {
                    return Err(src.attr(c, "perms", format!("`{perms}` is not a mix of r, w, x")));
                }
                pd.maps.push(Map {
                    mr: src.required(c, "mr")?.to_string(),
                    vaddr: src.required_number(c, "vaddr")?,
                    read: perms.contains('r'),
                    write: perms.contains('w'),
                    cached: src.boolean(c, "cached", true)?,
                    setvar_vaddr: c.attr("setvar_vaddr").map(|a| a.value.clone()),
                    element: c.clone(),
                });
            }
            "irq" => {
                let edge = match c.attr("trigger").map_or("level", |a| a.value.as_str()) {
                    "edge" => true,
                    "level" => false,
                    other => {
                        return Err(src.attr(
                            c,
                            "trigger",
                            format!("`{other}` is neither edge nor level"),
                        ))
                    }
                };
                pd.irqs.push(Irq {
                    irq: src.required_number(c, "irq")?,
                    id: src.required_number(c, "id")?,
                    edge,
                    element: c.clone(),
                });
            }
            "setvar" => pd.setvars.push(SetVar {
                symbol: src.required(c, "symbol")?.to_string(),
                region_paddr: src.required(c, "region_paddr")?.to_string(),
                element: c.clone(),
            }),
            "protection_domain" => children.push(c),
            "virtual_machine" => {
                if pd.virtual_machine.is_some() {
                    return Err(src.element(c, "virtual_machine must only be specified once"));
                }
                pd.virtual_machine = Some(virtual_machine::parse(src, c, &pd.name, pd.priority)?);
            }
            _ => {}
        }
    }
    let name = pd.name.clone();
    pds.push(pd);
    for c in children {
        collect_pd(src, c, Some(&name), pds)?;
    }
    Ok(())
}
