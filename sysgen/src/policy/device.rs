//! `<device name stream_id dma_mask config_mr qemu disk_blocks>` with its
//! `<reserved start last>` windows: a name and a stream no other device
//! has, a stream within the SMMU's stream ID bits, a DMA mask of 2^n - 1,
//! a configuration page the server maps uncached, and at most
//! `MAX_DEVICE_WINDOWS` page-aligned windows, within the mask and not
//! overlapping.

use super::{qemu_device, Checker};
use crate::error::Error;
use crate::model::{Client, Device, IovaRange, StreamId};
use crate::sdf::ProtectionDomain;
use crate::units::PAGE;
use crate::xml::Element;
use iommu_types::config::MAX_DEVICE_WINDOWS;

/// What one `<device>` element says: the device as the server takes it,
/// and what the client and QEMU take of it.
pub(super) struct DeviceElement {
    pub device: Device,
    pub config_page: Option<u64>,
    pub qemu: Option<String>,
    pub disk_blocks: Option<u64>,
}

impl Checker<'_> {
    /// Every device of `client` (declared by `e`) has a stream ID the
    /// SMMU decodes in `sid_bits`.
    pub(super) fn streams_fit(
        &self,
        client: &Client,
        e: &Element,
        sid_bits: u64,
    ) -> Result<(), Error> {
        let s = self.side;
        for d in &client.devices {
            if u64::from(d.stream_id.0) >> sid_bits != 0 {
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
                        d.stream_id.0
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn device(
        &self,
        server: &ProtectionDomain,
        e: &Element,
        earlier: &[Client],
        this: &Client,
    ) -> Result<DeviceElement, Error> {
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
        let stream = StreamId(stream_id);
        let owner = earlier.iter().chain(std::iter::once(this)).find_map(|c| {
            c.devices
                .iter()
                .find(|d| d.stream_id == stream)
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
        let config_page = match e.attr("config_mr") {
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
        let mut reserved: Vec<IovaRange> = Vec::new();
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
            let window = IovaRange::new(start, last);
            if let Some(o) = reserved.iter().find(|o| o.overlaps(&window)) {
                return Err(s.attr(
                    w,
                    "start",
                    format!("overlaps the window {:#x}..={:#x}", o.start, o.last),
                ));
            }
            reserved.push(window);
        }
        Ok(DeviceElement {
            device: Device {
                name,
                stream_id: stream,
                dma_mask,
                reserved,
            },
            config_page,
            qemu,
            disk_blocks,
        })
    }
}
