//! The static IO address spaces checked against the IOMMU policy: what
//! the server needs to build them at start. A space's device is no
//! client's (a device is confined by the description or bound by a
//! client, not both) and within the SMMU's stream ID bits; every iomapped
//! region has a physical address the server can learn and is none of the
//! server's own memory; the pool holds the clients' table pages and every
//! space's; faults go to the PD iommu.xml's `<static_device faults>`
//! names (over a channel with the server), else to the manager.
//!
//! iommu.xml's optional `<static_device space faults qemu>` says what
//! Microkit's element has no attribute for: who hears of the space's
//! faults, and the QEMU device simulating it (placed by its stream ID,
//! as a client device's is).

use crate::error::{Error, Source};
use crate::io_address_space::{self, IoAddressSpace};
use crate::model::{Perms, QemuDevice, StreamId};
use crate::policy::{qemu_device, Config, Paddr, PAGE};
use crate::sdf::System;
use crate::xml::Element;
use iommu_types::config::MAX_STATIC_SPACES;

pub use crate::policy::{StaticIoMap, StaticSpace};

/// Checks every space of `sys` against the policy `root` and the
/// configuration built from it: the spaces, and the QEMU devices that
/// simulate theirs.
pub fn check(
    sys: &System,
    config: &Config,
    sdf: Source<'_>,
    side: Source<'_>,
    root: &Element,
) -> Result<(Vec<StaticSpace>, Vec<QemuDevice>), Error> {
    let mut devices: Vec<(&IoAddressSpace, &Element)> = Vec::new();
    for e in root.children.iter().filter(|e| e.name == "static_device") {
        side.only_attrs(e, &["space", "faults", "qemu"])?;
        let name = side.required(e, "space")?;
        let space = sys
            .io_address_spaces
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                let hint = sdf.hint(
                    name,
                    sys.io_address_spaces
                        .iter()
                        .map(|s| (s.name.as_str(), &s.element)),
                );
                side.attr(
                    e,
                    "space",
                    format!(
                        "no <io_address_space name=\"{name}\"> in {}{hint}",
                        sdf.file
                    ),
                )
            })?;
        if let Some((_, first)) = devices.iter().find(|(s, _)| s.name == name) {
            return Err(side.attr(
                e,
                "space",
                format!(
                    "`{name}` already has its <static_device> ({})",
                    side.line(first)
                ),
            ));
        }
        devices.push((space, e));
    }
    let sid_bits = root
        .children
        .iter()
        .find(|e| e.name == "smmu")
        .map(|e| side.number(e, "sid_bits"))
        .transpose()?
        .flatten()
        .unwrap_or(16);
    let server = sys.pd(&config.server.pd).expect("the policy found it");
    let private: Vec<&str> = [
        &config.server.smmu_regs.mr,
        &config.server.smmu_memory.mr,
        &config.server.page_tables.mr,
    ]
    .into_iter()
    .map(String::as_str)
    .chain(config.clients.iter().map(|c| c.command_page.as_str()))
    .collect();
    if let Some(extra) = sys.io_address_spaces.get(MAX_STATIC_SPACES) {
        return Err(sdf.element(
            &extra.element,
            format!("more than {MAX_STATIC_SPACES} io address spaces (the server's bound)"),
        ));
    }
    let manager = config.clients.iter().find(|c| c.manager);
    let mut out = Vec::new();
    let mut simulated = Vec::new();
    for space in &sys.io_address_spaces {
        let e = &space.element;
        let stream = space.stream_id();
        if u64::from(stream) >> sid_bits != 0 {
            return Err(sdf.attr(
                e,
                "peripheral_id",
                format!(
                    "{} is wider than the SMMU's {sid_bits} stream ID bits",
                    space.peripheral.describe()
                ),
            ));
        }
        if let Some((client, device)) = config.clients.iter().find_map(|c| {
            c.devices
                .iter()
                .find(|d| d.stream_id == StreamId(stream))
                .map(|d| (c, d))
        }) {
            let at = client_device_line(root, side, &device.name);
            return Err(sdf.attr(
                e,
                "peripheral_id",
                format!(
                    "{} is device `{}` of client `{}` ({at}): a device is confined by an io address space or bound by a client, not both",
                    space.peripheral.describe(), device.name, client.pd
                ),
            ));
        }
        let mut iomaps = Vec::new();
        for m in &space.iomaps {
            let mr = sys.mr(&m.mr).expect("checked with the description");
            if private.contains(&m.mr.as_str()) {
                return Err(sdf.attr(
                    &m.element,
                    "mr",
                    format!(
                        "`{}` is the server's own memory (its SMMU, page tables or a command page): no device may reach it",
                        m.mr
                    ),
                ));
            }
            if !mr.size.is_multiple_of(PAGE) || mr.size == 0 {
                return Err(sdf.attr(
                    &mr.element,
                    "size",
                    format!(
                        "`{}` is iomapped ({}): an iomapped region is whole pages",
                        m.mr,
                        sdf.line(&m.element)
                    ),
                ));
            }
            let paddr = match mr.phys_addr {
                Some(p) => Paddr::Fixed(p),
                None => server
                    .setvars
                    .iter()
                    .find(|v| v.region_paddr == m.mr)
                    .map(|v| Paddr::Symbol(v.symbol.clone()))
                    .ok_or_else(|| {
                        sdf.attr(
                            &m.element,
                            "mr",
                            format!(
                                "the server `{}` cannot learn the physical address of `{}`: give it a phys_addr or add <setvar symbol=\"...\" region_paddr=\"{}\"/> to the server",
                                server.name, m.mr, m.mr
                            ),
                        )
                    })?,
            };
            iomaps.push(StaticIoMap {
                mr: m.mr.clone(),
                iovaddr: m.iovaddr,
                size: mr.size,
                perms: Perms {
                    read: m.read,
                    write: m.write,
                },
                identity: mr.phys_addr == Some(m.iovaddr),
                paddr,
            });
        }
        let device = devices
            .iter()
            .find(|(s, _)| s.name == space.name)
            .map(|(_, d)| *d);
        let named = device.and_then(|d| d.attr("faults").map(|a| a.value.as_str()));
        let (fault_pd, fault_channel) = match (named, manager) {
            (Some(pd), _) => {
                let d = device.expect("named by it");
                if sys.pd(pd).is_none() {
                    let hint = sdf.hint(pd, sys.pds.iter().map(|p| (p.name.as_str(), &p.element)));
                    return Err(side.attr(
                        d,
                        "faults",
                        format!("no <protection_domain name=\"{pd}\"> in {}{hint}", sdf.file),
                    ));
                }
                let (end, _) = sys.channel(&server.name, pd).ok_or_else(|| {
                    side.attr(
                        d,
                        "faults",
                        format!(
                            "no <channel> between the server `{}` and `{pd}` in {}: the server notifies `{pd}` of the space's faults on it",
                            server.name, sdf.file
                        ),
                    )
                })?;
                (Some(pd.to_string()), Some(end.id))
            }
            (None, Some(m)) => (Some(m.pd.clone()), Some(m.server_channel)),
            (None, None) => (None, None),
        };
        if let Some((d, a)) = device.and_then(|d| d.attr("qemu").map(|a| (d, a))) {
            simulated.push(QemuDevice {
                stream_id: StreamId(stream),
                options: qemu_device(&a.value, stream).map_err(|m| side.attr(d, "qemu", m))?,
            });
        }
        out.push(StaticSpace {
            name: space.name.clone(),
            peripheral: space
                .element
                .attr("peripheral_id")
                .map_or_else(String::new, |a| a.value.clone()),
            stream_id: StreamId(stream),
            domain_id: space.domain_id,
            table_pages: io_address_space::table_pages(iomaps.iter().map(|m| (m.iovaddr, m.size))),
            iomaps,
            fault_pd,
            fault_channel,
        });
    }
    let promised: usize = config.clients.iter().map(|c| c.quota.table_pages).sum();
    let tables: usize = out.iter().map(|s| s.table_pages).sum();
    let pool = config.server.page_tables.size / PAGE;
    if (promised + tables) as u64 > pool {
        let element = root
            .children
            .iter()
            .find(|e| e.name == "page_tables")
            .expect("the policy found it");
        let mr = sys.mr(&config.server.page_tables.mr).expect("checked");
        return Err(side.attr(
            element,
            "mr",
            format!(
                "the clients' table_pages quotas ({promised} pages) and the static io address spaces' page tables ({tables} pages) add up to {}, more than the {pool} of region `{}` ({})",
                promised + tables,
                config.server.page_tables.mr,
                sdf.line(&mr.element)
            ),
        ));
    }
    Ok((out, simulated))
}

/// `iommu.xml:LINE` of the client device named `name`.
fn client_device_line(root: &Element, side: Source<'_>, name: &str) -> String {
    root.children
        .iter()
        .flat_map(|c| &c.children)
        .find(|d| d.name == "device" && d.attr("name").is_some_and(|a| a.value == name))
        .map_or_else(|| side.file.to_string(), |d| side.line(d))
}
