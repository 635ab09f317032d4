//! `<virtual_machine name priority budget period>` inside a protection
//! domain (its VMM), with `<vcpu id setvar_id cpu>` and `<map mr vaddr
//! perms cached>` children (guest RAM and device memory at guest-physical
//! addresses), as Microkit 2.3.0 defines them on aarch64 (its manual,
//! `tool/microkit/src/sdf.rs`), checked by the tool's own rules with its
//! messages: known attributes and elements only; only inside a PD, at
//! most one per PD, names unique in the system; budget not above period;
//! at least one vCPU, ids 0..=61, unique in the VM and among the PD's
//! child PD ids, on a core the board has; at most `MAX_VMS` vCPUs in all;
//! a map's region exists, its perms are r, w and x and not write-only,
//! its vaddr aligned to the region's page size, inside the guest's
//! address space, and no two maps of the VM overlap.
//!
//! One rule is the project's: a VM's priority is at most its VMM's (the
//! VMM handles the guest's faults and must not be starved by it). What
//! iommu.xml asks of guest RAM is checked in `crate::guest_ram`.

use crate::error::{Error, Source};
use crate::xml::Element;

/// Highest vCPU id: the tool's VCPU_MAX_ID, its PD_MAX_ID.
pub const MAX_VCPU_ID: u64 = 61;
/// vCPUs in the whole system: the tool's MAX_VMS (the monitor's table of
/// their names on aarch64).
pub const MAX_VCPUS: usize = 63;
/// CPU cores of the board (QEMU virt as the SDK builds it:
/// CONFIG_MAX_NUM_NODES = 1).
pub const CORES: u64 = 1;
/// The end of a guest's address space: seL4's `vspace_user_top` + 1 for
/// the hypervisor with 40-bit physical addresses (the SDK's
/// address_space_constants.json), the tool's `vm_map_max_vaddr`.
pub const GUEST_ADDRESS_END: u64 = 1 << 40;
/// The tool's default budget (and so period), in microseconds.
pub const BUDGET_DEFAULT: u64 = 1000;
/// Highest priority (the tool's PD_MAX_PRIORITY).
const MAX_PRIORITY: u64 = 254;

/// Attributes the tool knows on a VM's elements (aarch64).
const VM_ATTRIBUTES: &[&str] = &["name", "budget", "period", "priority"];
const VCPU_ATTRIBUTES: &[&str] = &["id", "setvar_id", "cpu"];
/// A guest has no program image, so no setvar on its maps.
const MAP_ATTRIBUTES: &[&str] = &["mr", "vaddr", "perms", "cached"];

#[derive(Clone, Debug)]
pub struct Vcpu {
    pub id: u64,
    pub element: Element,
}

/// One `<map>` of a guest: a region at a guest-physical address.
#[derive(Clone, Debug)]
pub struct GuestMap {
    pub mr: String,
    pub vaddr: u64,
    pub read: bool,
    pub write: bool,
    pub cached: bool,
    pub element: Element,
}

#[derive(Clone, Debug)]
pub struct VirtualMachine {
    pub name: String,
    pub priority: u64,
    pub budget: u64,
    pub period: u64,
    pub vcpus: Vec<Vcpu>,
    pub maps: Vec<GuestMap>,
    pub element: Element,
}

/// Refuses `e`'s attributes outside `known`, as the tool does.
fn known_attributes(src: Source<'_>, e: &Element, known: &[&str]) -> Result<(), Error> {
    match e.attrs.iter().find(|a| !known.contains(&a.name.as_str())) {
        Some(a) => Err(src.attr(
            e,
            &a.name,
            format!(
                "unknown attribute (the Microkit tool knows: {})",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Reads the `<virtual_machine>` `e` of the PD named `pd` (priority
/// `pd_priority`): the rules that need nothing but the element.
pub fn parse(
    src: Source<'_>,
    e: &Element,
    pd: &str,
    pd_priority: u64,
) -> Result<VirtualMachine, Error> {
    known_attributes(src, e, VM_ATTRIBUTES)?;
    let name = src.required(e, "name")?.to_string();
    let budget = src.number(e, "budget")?.unwrap_or(BUDGET_DEFAULT);
    let period = src.number(e, "period")?.unwrap_or(budget);
    if budget > period {
        return Err(src.attr(
            e,
            "budget",
            format!("budget ({budget}) must be less than, or equal to, period ({period})"),
        ));
    }
    let priority = src.number(e, "priority")?.unwrap_or(0);
    if priority > MAX_PRIORITY {
        return Err(src.attr(
            e,
            "priority",
            format!("priority must be between 0 and {MAX_PRIORITY}"),
        ));
    }
    if priority > pd_priority {
        return Err(src.attr(
            e,
            "priority",
            format!(
                "{priority} is above its VMM `{pd}`'s priority ({pd_priority}): the VMM handles the guest's faults and must not be starved by it"
            ),
        ));
    }
    let mut vcpus: Vec<Vcpu> = Vec::new();
    let mut maps = Vec::new();
    for c in &e.children {
        match c.name.as_str() {
            "vcpu" => {
                known_attributes(src, c, VCPU_ATTRIBUTES)?;
                let id = src.required_number(c, "id")?;
                if id > MAX_VCPU_ID {
                    return Err(src.attr(c, "id", format!("id must be < {}", MAX_VCPU_ID + 1)));
                }
                if vcpus.iter().any(|v| v.id == id) {
                    return Err(src.attr(
                        c,
                        "id",
                        format!("duplicate vcpu id {id} in virtual machine '{name}'"),
                    ));
                }
                if let Some(cpu) = src.number(c, "cpu")? {
                    if cpu >= CORES {
                        return Err(src.attr(
                            c,
                            "cpu",
                            format!("cpu core must be less than {CORES}, got {cpu}"),
                        ));
                    }
                }
                vcpus.push(Vcpu {
                    id,
                    element: c.clone(),
                });
            }
            "map" => maps.push(guest_map(src, c)?),
            other => {
                return Err(src.element(c, format!("invalid XML element '{other}'")));
            }
        }
    }
    if vcpus.is_empty() {
        return Err(src.element(
            e,
            format!("missing 'vcpu' element on virtual_machine: '{name}'"),
        ));
    }
    Ok(VirtualMachine {
        name,
        priority,
        budget,
        period,
        vcpus,
        maps,
        element: e.clone(),
    })
}

fn guest_map(src: Source<'_>, c: &Element) -> Result<GuestMap, Error> {
    known_attributes(src, c, MAP_ATTRIBUTES)?;
    let mr = src.required(c, "mr")?.to_string();
    let vaddr = src.required_number(c, "vaddr")?;
    if vaddr >= GUEST_ADDRESS_END {
        return Err(src.attr(
            c,
            "vaddr",
            format!("vaddr ({vaddr:#x}) must be less than {GUEST_ADDRESS_END:#x}"),
        ));
    }
    let perms = c.attr("perms").map_or("rw", |a| a.value.as_str());
    if perms.is_empty() || perms.chars().any(|p| !"rwx".contains(p)) {
        return Err(src.attr(
            c,
            "perms",
            "perms must only be a combination of 'r', 'w', and 'x'",
        ));
    }
    if perms.chars().all(|p| p == 'w') {
        return Err(src.attr(
            c,
            "perms",
            "perms must not be 'w', write-only mappings are not allowed",
        ));
    }
    let cached = match c.attr("cached").map(|a| a.value.as_str()) {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(src.attr(c, "cached", "cached must be 'true' or 'false'")),
    };
    Ok(GuestMap {
        mr,
        vaddr,
        read: perms.contains('r'),
        write: perms.contains('w'),
        cached,
        element: c.clone(),
    })
}

/// A VM with its VMM, as [`check`] sees the description.
pub struct Hosted<'a> {
    /// The VMM PD's name.
    pub pd: &'a str,
    pub vm: &'a VirtualMachine,
    /// The VMM's child PDs: each one's id and element.
    pub children: Vec<(u64, &'a Element)>,
}

/// A memory region as a guest's map needs it: its size and page size.
pub struct Region {
    pub size: u64,
    pub page_size: u64,
}

/// The rules that need the whole description: names unique, the vCPUs'
/// total, ids apart from the child PDs', and each map against its
/// region (`region` looks one up, `hint` names a near miss).
pub fn check<'a>(
    src: Source<'_>,
    vms: impl IntoIterator<Item = Hosted<'a>>,
    region: impl Fn(&str) -> Option<Region>,
    hint: impl Fn(&str) -> String,
) -> Result<(), Error> {
    let mut vcpus = 0;
    let mut named: Vec<&str> = Vec::new();
    for Hosted { pd, vm, children } in vms {
        if named.contains(&vm.name.as_str()) {
            return Err(src.attr(
                &vm.element,
                "name",
                format!("duplicate virtual machine name '{}'", vm.name),
            ));
        }
        named.push(&vm.name);
        for v in &vm.vcpus {
            vcpus += 1;
            if vcpus > MAX_VCPUS {
                return Err(src.element(
                    &v.element,
                    format!(
                        "more than {MAX_VCPUS} vCPUs in the system (the Microkit tool's MAX_VMS)"
                    ),
                ));
            }
        }
        for (id, child) in children {
            if vm.vcpus.iter().any(|v| v.id == id) {
                return Err(src.attr(
                    child,
                    "id",
                    format!(
                        "duplicate id: {id} clashes with virtual machine vcpu id in protection domain: '{pd}'"
                    ),
                ));
            }
        }
        check_maps(src, vm, &region, &hint)?;
    }
    Ok(())
}

/// The tool's `check_maps` for a guest: each region exists, the vaddr is
/// aligned to the region's page size, the range neither wraps nor leaves
/// the guest's address space, and no two maps overlap.
fn check_maps(
    src: Source<'_>,
    vm: &VirtualMachine,
    region: impl Fn(&str) -> Option<Region>,
    hint: impl Fn(&str) -> String,
) -> Result<(), Error> {
    let mut checked: Vec<(&str, u64, u64)> = Vec::new();
    for m in &vm.maps {
        let e = &m.element;
        let Some(mr) = region(&m.mr) else {
            return Err(src.attr(
                e,
                "mr",
                format!(
                    "invalid memory region name '{}' on 'map'{}",
                    m.mr,
                    hint(&m.mr)
                ),
            ));
        };
        if m.vaddr % mr.page_size != 0 {
            return Err(src.attr(
                e,
                "vaddr",
                format!(
                    "invalid vaddr alignment on 'map': {:#x} is not a multiple of `{}`'s page size {:#x}",
                    m.vaddr, m.mr, mr.page_size
                ),
            ));
        }
        let Some(end) = m.vaddr.checked_add(mr.size) else {
            return Err(src.attr(
                e,
                "vaddr",
                format!("map for '{}' has address range that overflows", m.mr),
            ));
        };
        if end > GUEST_ADDRESS_END {
            return Err(src.attr(
                e,
                "vaddr",
                format!(
                    "map for '{}' has virtual address range [{:#x}..{end:#x}) which exceeds valid address space [0x0..{GUEST_ADDRESS_END:#x})",
                    m.mr, m.vaddr
                ),
            ));
        }
        if let Some((other, start, stop)) = checked
            .iter()
            .find(|(_, start, stop)| m.vaddr < *stop && *start < end)
        {
            return Err(src.attr(
                e,
                "vaddr",
                format!(
                    "map for '{}' has virtual address range [{:#x}..{end:#x}) which overlaps with map for '{other}' [{start:#x}..{stop:#x}) in virtual machine '{}'",
                    m.mr, m.vaddr, vm.name
                ),
            ));
        }
        checked.push((&m.mr, m.vaddr, end));
    }
    Ok(())
}
