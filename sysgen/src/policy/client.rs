//! `<client pd command_page manager>` with its `<quota>`, `<dma>` and
//! `<device>` children: a PD with a pp channel to the server, below its
//! priority, a command page of one page mapped rw by both and found
//! through `setvar_vaddr="command_page"`, a quota within the server's
//! bounds, and the block clients' shares of a disk it drives.

use super::Checker;
use crate::error::{Error, Source};
use crate::model::{ChildOf, Client, QemuDevice, Quota, Region};
use crate::sdf::{MemoryRegion, ProtectionDomain, MAX_CHANNEL_ID};
use crate::units::PAGE;
use crate::xml::Element;
use iommu_types::config::{MAX_CLIENT_DEVICES, MAX_OBJECTS};

impl Checker<'_> {
    pub(super) fn client(
        &self,
        server: &ProtectionDomain,
        e: &Element,
        earlier: &[Client],
    ) -> Result<(Client, Vec<QemuDevice>), Error> {
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
            child_of: pd.parent.as_ref().map(|(parent, id)| ChildOf {
                parent: parent.clone(),
                id: u8::try_from(*id).expect("child ids run 0..=MAX_CHILD_ID"),
            }),
            program_image: pd.program_image.clone().unwrap_or_default(),
            pd: name.to_string(),
            server_channel: server_end.id,
            client_channel: client_end.id,
            command_page: page_name.to_string(),
            command_page_server,
            command_page_client,
            regions: Vec::new(),
            devices: Vec::new(),
            device_config_pages: Vec::new(),
            device_origins: Vec::new(),
            // Replaced by the `<quota>` element, which is required.
            quota_origin: s.origin(e),
            origin: s.origin(e),
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
        let mut qemu = Vec::new();
        let mut dma_elements: Vec<&Element> = Vec::new();
        let mut disk: Option<&Element> = None;
        for c in &e.children {
            match c.name.as_str() {
                "quota" if !quota_seen => {
                    quota_seen = true;
                    client.quota_origin = s.origin(c);
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
                        objects: s.required_count(c, "objects")?,
                        ioases: s.required_count(c, "ioases")?,
                        mapped_pages: s.required_number(c, "mapped_pages")?,
                        table_pages: s.required_count(c, "table_pages")?,
                        hwpts: s.required_count(c, "hwpts")?,
                        mappings: s.required_count(c, "mappings")?,
                    };
                    if client.quota.objects > MAX_OBJECTS {
                        return Err(s.attr(c, "objects", format!("at most {MAX_OBJECTS}")));
                    }
                }
                "quota" => return Err(s.element(c, "given twice")),
                "dma" => {
                    client.regions.push(self.region(server, pd, c)?);
                    dma_elements.push(c);
                }
                "device" => {
                    if client.devices.len() == MAX_CLIENT_DEVICES {
                        return Err(s.element(
                            c,
                            format!("more than {MAX_CLIENT_DEVICES} devices for one client (the server's bound)"),
                        ));
                    }
                    let parsed = self.device(server, c, earlier, &client)?;
                    if let Some(blocks) = parsed.disk_blocks {
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
                    if let Some(options) = parsed.qemu {
                        qemu.push(QemuDevice {
                            stream_id: parsed.device.stream_id,
                            options,
                        });
                    }
                    client.devices.push(parsed.device);
                    client.device_config_pages.push(parsed.config_page);
                    client.device_origins.push(s.origin(c));
                }
                _ => return Err(s.element(c, "unknown element (expected quota, dma or device)")),
            }
        }
        if !quota_seen {
            return Err(s.element(e, "missing <quota>"));
        }
        self.shares(&client, &dma_elements, disk)?;
        Ok((client, qemu))
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
