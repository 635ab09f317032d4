//! DUMP: the server's state as text, for a manager (Linux keeps such
//! state in debugfs). One client's objects, IOASes with their areas,
//! HWPTs, devices and their streams, quota use and faults; or the server's
//! pools and hardware. The report is written in pieces into the caller's
//! command page, so any report fits a page in as many calls as it needs.
//!
//! It is built afresh on every call: O(the target's areas), which its
//! mapping quota bounds; only managers may ask.

use core::fmt::{self, Write};

use iommu_proto::decode::{array_range, check_reserved};
use iommu_proto::dump::{iommu_dump, IOMMU_DUMP_SERVER};
use iommu_types::{ClientId, Errno, Prot};
use iopt::Hardware;
use mmio::Memory;

use crate::object::Object;
use crate::Server;

/// Writes the bytes of a report that fall in `[from, end)` into the page
/// at `at`, counting them all.
struct Window<'p> {
    page: &'p dyn Memory,
    at: usize,
    from: u64,
    end: u64,
    total: u64,
    written: u64,
    failed: bool,
}

impl Write for Window<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let start = self.total;
        self.total = self.total.saturating_add(bytes.len() as u64);
        let lo = self.from.max(start);
        let hi = self.end.min(self.total);
        if lo < hi {
            let piece = &bytes[(lo - start) as usize..(hi - start) as usize];
            let to = self.at + (lo - self.from) as usize;
            self.failed |= !self.page.write(to, piece);
            self.written += piece.len() as u64;
        }
        Ok(())
    }
}

pub(crate) fn dump<H: Hardware>(
    server: &Server<'_, H>,
    caller: ClientId,
    page: &dyn Memory,
    cmd: &mut iommu_dump,
) -> Result<u64, Errno> {
    check_reserved(&cmd.reserved)?;
    // A read at a file position, as Linux's rw_verify_area judges it: the
    // position is a signed 64-bit loff_t, so one past LLONG_MAX, or one the
    // length would carry past it, is EINVAL; any other position past the
    // report's end reads nothing (simple_read_from_buffer).
    let end = cmd
        .offset
        .checked_add(u64::from(cmd.length))
        .filter(|&end| end <= i64::MAX as u64)
        .ok_or(Errno::EINVAL)?;
    let page_va = server.configs[caller.index()].command_page_vaddr;
    let out = array_range(page_va, page.len(), cmd.data_uptr, u64::from(cmd.length), 1)?;
    let mut window = Window {
        page,
        at: out.start,
        from: cmd.offset,
        end,
        total: 0,
        written: 0,
        failed: false,
    };
    let result = if cmd.target == IOMMU_DUMP_SERVER {
        server_report(server, &mut window)
    } else {
        let target = usize::try_from(cmd.target)
            .ok()
            .filter(|&t| t < server.clients.len())
            .ok_or(Errno::EINVAL)?;
        client_report(server, target, &mut window)
    };
    if result.is_err() || window.failed {
        return Err(Errno::EFAULT);
    }
    cmd.length = window.written as u32;
    cmd.out_total = window.total;
    Ok(0)
}

fn server_report<H: Hardware>(s: &Server<'_, H>, out: &mut dyn Write) -> fmt::Result {
    let store = &s.store;
    writeln!(
        out,
        "server: {} clients; areas {}/{}, backings {}/{}, IOASes {}/{}",
        s.clients.len(),
        store.areas_capacity() - store.areas_free(),
        store.areas_capacity(),
        store.pages_capacity() - store.pages_free(),
        store.pages_capacity(),
        s.pool.used(),
        s.pool.capacity()
    )?;
    write!(out, "hardware: ")?;
    s.hw.describe(out)?;
    writeln!(out)?;
    for (i, space) in s.statics.configs.iter().enumerate() {
        let Some(state) = s.statics.state[i].as_ref() else {
            continue;
        };
        writeln!(
            out,
            "static space {} (domain_id {}): stream {:#x}, {} iomaps, {} table pages, {}, {} faults",
            space.name,
            space.domain_id,
            space.stream_id.0,
            space.iomaps.len(),
            space.table_pages,
            if state.held { "held" } else { "attached" },
            state.faults
        )?;
        for m in space.iomaps {
            writeln!(
                out,
                "  {:#x}-{:#x} -> {:#x} {}{}",
                m.iova,
                m.iova + (m.size - 1),
                m.paddr,
                if m.perms.read { "r" } else { "-" },
                if m.perms.write { "w" } else { "-" }
            )?;
        }
    }
    Ok(())
}

fn client_report<H: Hardware>(s: &Server<'_, H>, index: usize, out: &mut dyn Write) -> fmt::Result {
    let (client, config) = (&s.clients[index], &s.configs[index]);
    let objects = &client.objects;
    let account = ClientId::from_index(index).and_then(|id| s.store.account(id));
    let (used, limit, areas, area_limit) =
        account.map_or((0, 0, 0, 0), |a| (a.used, a.limit, a.areas, a.area_limit));
    let q = &config.quota;
    writeln!(
        out,
        "client {index} {}{}{}: objects {}/{}, IOASes {}/{}, HWPTs {}/{}, pages {used}/{limit}, mappings {areas}/{area_limit}, faults {} queued {} dropped{}{}",
        config.name,
        if config.manager { " (manager)" } else { "" },
        if client.held { " (held)" } else { "" },
        objects.len(),
        q.objects,
        objects.ioases(),
        q.ioases,
        objects.hwpts(),
        q.hwpts,
        client.faults.len(),
        client.faults.dropped,
        if client.faults.lost { ", records lost" } else { "" },
        if client.faults.stopped {
            ", streams stopped (invalidation unconfirmed)"
        } else {
            ""
        },
    )?;
    for id in objects.ids() {
        match objects.get(id) {
            Ok(Object::Ioas(o)) => {
                let Ok(ioas) = s.pool.get(o.slot) else {
                    continue;
                };
                writeln!(
                    out,
                    "  IOAS {}: alignment {}, huge pages {}, {} areas, {} HWPTs",
                    id.0,
                    ioas.alignment(),
                    if ioas.huge_pages() { "on" } else { "off" },
                    ioas.area_count(),
                    o.hwpts
                )?;
                for a in ioas.areas(&s.store) {
                    writeln!(
                        out,
                        "    {:#x}-{:#x} {}{}",
                        a.iova,
                        a.last,
                        if a.prot.contains(Prot::READ) {
                            "r"
                        } else {
                            "-"
                        },
                        if a.prot.contains(Prot::WRITE) {
                            "w"
                        } else {
                            "-"
                        }
                    )?;
                }
            }
            Ok(Object::Hwpt(h)) => writeln!(
                out,
                "  HWPT {}: IOAS {}, {}, {} devices",
                id.0,
                h.ioas.0,
                if h.auto { "automatic" } else { "allocated" },
                h.devices
            )?,
            Ok(Object::Device(d)) => {
                let name = config.devices.get(d.index).map_or("?", |c| c.name);
                write!(out, "  device {}: {name}, stream {:#x}, ", id.0, d.stream.0)?;
                match d.hwpt {
                    Some(h) => writeln!(out, "attached to HWPT {}", h.0)?,
                    None => writeln!(out, "not attached")?,
                }
            }
            Err(_) => {}
        }
    }
    Ok(())
}
