//! `<iommu server>`, `<smmu mr memory event_irq gerror_irq sid_bits>` and
//! `<page_tables mr>`: the server PD, the memory it maps (rw, registers
//! uncached, normal memory cached, each with a physical address it can
//! learn), its edge-triggered SMMU interrupts, a pool that holds every
//! client's table pages, and none of its memory mapped by a client.

use super::Checker;
use crate::error::Error;
use crate::model::{Config, Server, ServerMemory};
use crate::sdf::ProtectionDomain;
use crate::units::PAGE;
use crate::xml::Element;

/// The SMMUv3 register frame: two 64 KiB pages.
pub const SMMU_FRAME: u64 = 0x2_0000;

impl<'a> Checker<'a> {
    /// The PD `<iommu server>` names.
    pub(super) fn server_pd(&self, root: &Element) -> Result<&'a ProtectionDomain, Error> {
        let s = self.side;
        s.only_attrs(root, &["server"])?;
        let server_name = s.required(root, "server")?;
        self.sys.pd(server_name).ok_or_else(|| {
            s.attr(
                root,
                "server",
                format!(
                    "no <protection_domain name=\"{server_name}\"> in {}{}",
                    self.sdf.file,
                    self.pd_hint(server_name)
                ),
            )
        })
    }

    /// `<smmu>`'s attributes, and the stream ID bits it decodes.
    pub(super) fn sid_bits(&self, smmu: &Element) -> Result<u64, Error> {
        let s = self.side;
        s.only_attrs(
            smmu,
            &["mr", "memory", "event_irq", "gerror_irq", "sid_bits"],
        )?;
        // Stream IDs the SMMU decodes: PCI requester IDs unless said.
        let sid_bits = s.number(smmu, "sid_bits")?.unwrap_or(16);
        if !(1..=32).contains(&sid_bits) {
            return Err(s.attr(smmu, "sid_bits", "an SMMUv3 decodes 1 to 32 stream ID bits"));
        }
        Ok(sid_bits)
    }

    /// The server's memory and interrupts.
    pub(super) fn server(
        &self,
        server: &ProtectionDomain,
        smmu: &Element,
        page_tables: &Element,
    ) -> Result<Server, Error> {
        let s = self.side;
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
        let page_tables = self.server_memory(server, page_tables, "mr", true)?;
        let event_irq = self.server_irq(server, smmu, "event_irq")?;
        let gerror_irq = self.server_irq(server, smmu, "gerror_irq")?;
        Ok(Server {
            pd: server.name.clone(),
            smmu_regs,
            smmu_memory,
            page_tables,
            event_irq,
            gerror_irq,
            stack_size: server.stack_size,
        })
    }

    /// Every client's table pages are promised: the pool must hold them
    /// all, or one client's use could take what another was given.
    pub(super) fn pool_holds_quotas(
        &self,
        config: &Config,
        page_tables_element: &Element,
    ) -> Result<(), Error> {
        let s = self.side;
        let promised: usize = config.clients.iter().map(|c| c.quota.table_pages).sum();
        let pool = config.server.page_tables.size / PAGE;
        if promised as u64 > pool {
            let mr = self.sys.mr(&config.server.page_tables.mr).expect("checked");
            return Err(s.attr(
                page_tables_element,
                "mr",
                format!(
                    "the clients' table_pages quotas add up to {promised} pages, more than the {pool} of region `{}` ({})",
                    config.server.page_tables.mr,
                    self.sdf.line(&mr.element)
                ),
            ));
        }
        Ok(())
    }

    /// Server memory must not be handed to any client: the client's map
    /// in system.xml is at fault.
    pub(super) fn server_memory_is_private(
        &self,
        config: &Config,
        client_elements: &[&Element],
        smmu: &Element,
        page_tables_element: &Element,
    ) -> Result<(), Error> {
        let s = self.side;
        let private = [
            (&config.server.smmu_regs, smmu),
            (&config.server.smmu_memory, smmu),
            (&config.server.page_tables, page_tables_element),
        ];
        for (client, e) in config.clients.iter().zip(client_elements) {
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
        Ok(())
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
}
