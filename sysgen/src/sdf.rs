//! The parts of a Microkit system description the IOMMU configuration
//! depends on. Elements and attributes this does not use are left for the
//! Microkit tool to judge.

use crate::error::{Error, Source};
use crate::xml::Element;

/// Microkit's highest channel / IRQ id (ids run 0..=61).
pub const MAX_CHANNEL_ID: u64 = 61;

#[derive(Clone, Debug)]
pub struct MemoryRegion {
    pub name: String,
    pub size: u64,
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
pub fn parse(src: Source<'_>, root: &Element) -> Result<System, Error> {
    if root.name != "system" {
        return Err(src.element(root, "the root element must be <system>"));
    }
    let mut system = System {
        memory_regions: Vec::new(),
        pds: Vec::new(),
        channels: Vec::new(),
    };
    for e in &root.children {
        match e.name.as_str() {
            "memory_region" => {
                let name = src.required(e, "name")?.to_string();
                if system.mr(&name).is_some() {
                    return Err(src.attr(e, "name", "a memory region of this name exists"));
                }
                system.memory_regions.push(MemoryRegion {
                    name,
                    size: src.required_number(e, "size")?,
                    phys_addr: src.number(e, "phys_addr")?,
                    element: e.clone(),
                });
            }
            "protection_domain" => collect_pd(src, e, &mut system.pds)?,
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
    Ok(system)
}

/// A PD and, recursively, its child PDs.
fn collect_pd(src: Source<'_>, e: &Element, pds: &mut Vec<ProtectionDomain>) -> Result<(), Error> {
    let name = src.required(e, "name")?.to_string();
    if pds.iter().any(|p| p.name == name) {
        return Err(src.attr(e, "name", "a protection domain of this name exists"));
    }
    let mut pd = ProtectionDomain {
        name,
        priority: src.number(e, "priority")?.unwrap_or(0),
        stack_size: src.number(e, "stack_size")?.unwrap_or(0x2000),
        program_image: None,
        maps: Vec::new(),
        irqs: Vec::new(),
        setvars: Vec::new(),
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
            _ => {}
        }
    }
    pds.push(pd);
    for c in children {
        collect_pd(src, c, pds)?;
    }
    Ok(())
}
