//! `<dma mr mode first_block blocks>`: a DMA region of its client's
//! alone (never the server's), whole pages, with a physical address the
//! server can learn; `mode` static or strict; a block client's share of
//! its driver's disk given whole and not wrapping.

use super::Checker;
use crate::error::Error;
use crate::model::{Perms, Region, Share};
use crate::sdf::ProtectionDomain;
use crate::units::PAGE;
use crate::xml::Element;

impl Checker<'_> {
    pub(super) fn region(
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
            perms: Perms {
                read: map.read,
                write: map.write,
            },
            paddr,
            strict,
            shared_with,
            share,
            origin: s.origin(e),
            memory_region: self.sdf.origin(&mr.element),
            map: self.sdf.origin(&map.element),
        })
    }
}
