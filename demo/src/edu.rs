//! The edu story: each edu driver finds its device, maps its buffer and
//! does DMA; a stray DMA is reported to it alone; no driver can name
//! another's device, memory or state; the manager resets one driver, and
//! the first crashes mid-DMA and is restarted with the server's pools
//! back where they were.

use core::fmt::Write;

use edu_device::Edu;
use iommu_client::{DmaBuffer, Iommu};
use iommu_proto::Errno;
use iommu_system::{resolve, CLIENTS, SERVER_SYMBOLS};
use mmio::Mmio;
use qemu_virt::platform::DeviceWindows;
use scenarios::edu::{Roles, Session};
use scenarios::report::server_report;

use crate::devices;
use crate::output::{refused, Join, Prefix, Tally};
use crate::transport::{
    notified_fault, returned, take_faults, Buffers, Clients, Direct, RegionMemory,
};

/// The edu drivers once their story is told: their devices and sessions,
/// and which crashed and which was reset.
pub struct EduDrivers<'b> {
    pub edus: [Option<Edu<Mmio>>; CLIENTS.len()],
    pub sessions: [Option<Session<'b>>; CLIENTS.len()],
    pub roles: Roles,
}

/// The edu drivers are the clients running edu_driver.elf with a device
/// and a DMA region; the first is crashed and restarted by the supervisor
/// (the manager), the last is reset by it.
fn drivers() -> impl Iterator<Item = usize> + Clone {
    CLIENTS
        .iter()
        .enumerate()
        .filter(|(_, c)| c.runs(scenarios::edu::IMAGE))
        .map(|(i, _)| i)
}

pub fn story<'b>(
    tally: &mut Tally,
    clients: &mut Clients<'_>,
    buffers: &'b Buffers,
    symbols: &[u64; SERVER_SYMBOLS.len()],
    windows: &mut DeviceWindows,
) -> Result<EduDrivers<'b>, &'static str> {
    let server = clients.server;
    let m = clients.manager;
    let Some(Roles {
        crashes: first,
        reset: target,
    }) = Roles::of(drivers())
    else {
        return Err("the story needs two driver clients and a manager");
    };
    say!(
        "demo: {} drivers ({} crashes and is restarted, {} is reset), {} supervises\n",
        drivers().count(),
        CLIENTS[first].pd,
        CLIENTS[target].pd,
        CLIENTS[m].pd
    );
    let iommus = &mut clients.iommus;
    let bufs: [Option<&DmaBuffer<RegionMemory>>; CLIENTS.len()] =
        core::array::from_fn(|i| buffers[i][0].as_ref());
    let mut edus: [Option<Edu<Mmio>>; CLIENTS.len()] = [const { None }; CLIENTS.len()];
    let mut sessions: [Option<Session<'_>>; CLIENTS.len()] = [const { None }; CLIENTS.len()];
    // A driver's fault queue, after the server has taken the SMMU's events:
    // only the driver's own DMA may have notified it.
    let own_fault = |i: usize| {
        move |iommu: &mut Iommu<Direct<'_>>| {
            let notified = take_faults(server);
            if notified & (1 << i) == 0 || notified & !(1 << i) != 0 {
                return None;
            }
            iommu.read_fault().ok().and_then(|r| r.fault)
        }
    };
    // Each driver finds its device, gives it its BAR, maps its buffer and
    // does DMA; a stray DMA is stopped and reported to that driver alone.
    for i in drivers() {
        let name = CLIENTS[i].pd;
        let mut out = Prefix(name, true);
        let device = devices::of(windows, name, devices::EDU_REGS)?;
        let (cfg, bar) = (&device.config, device.bar);
        let edu = Edu(device.regs);
        let found = if cfg.ids() == Some((edu_device::VENDOR, edu_device::DEVICE)) {
            cfg.enable(bar);
            if edu.id() == edu_device::ID {
                let _ = writeln!(
                    out,
                    "edu at stream {:#x}, BAR0 {bar:#x} ({})",
                    CLIENTS[i].devices[0].stream_id.0, device.bar_mr
                );
                Ok(())
            } else {
                Err("BAR0 does not answer")
            }
        } else {
            Err("no edu device there")
        };
        tally.check(
            name,
            "finds its edu device in its configuration page",
            found,
        );
        let buf = bufs[i].ok_or("client without a DMA region")?;
        let session = scenarios::edu::setup(&mut iommus[i], &edu, buf, &CLIENTS[i], &mut out)?;
        tally.check(
            name,
            "DMA through its mappings",
            scenarios::edu::round_trip(&session, &edu, buf, 7 + i as u8, &mut out),
        );
        tally.check(
            name,
            "stray DMA faulted and reported to it alone",
            scenarios::edu::stray_dma(&mut iommus[i], &session, &edu, buf, &mut out, own_fault(i)),
        );
        edus[i] = Some(edu);
        sessions[i] = Some(session);
    }
    let (fname, tname) = (CLIENTS[first].pd, CLIENTS[target].pd);

    // Everything a driver names is relative to itself: it has no way to
    // name another's device, memory or state.
    let mut foreign_map = iommu_proto::iommufd::iommu_ioas_map {
        size: core::mem::size_of::<iommu_proto::iommufd::iommu_ioas_map>() as u32,
        flags: iommu_proto::iommufd::IOMMU_IOAS_MAP_READABLE,
        ioas_id: sessions[target].as_ref().ok_or("no session")?.ioas.id(),
        reserved: 0,
        user_va: resolve(CLIENTS[first].regions[0].paddr, |s| symbols[s]),
        length: 0x1000,
        iova: 0,
    };
    let foreign_device = CLIENTS[target].devices.len() as u32;
    let it = &mut iommus[target];
    let isolated = match (
        it.bind(foreign_device).map_err(|e| e.errno),
        it.call(&mut foreign_map, 0).map_err(|e| e.errno),
        it.reset(first as u64).map_err(|e| e.errno),
    ) {
        (Err(Errno::ENODEV), Err(Errno::EFAULT), Err(Errno::EPERM)) => Ok(()),
        _ => Err("a foreign device, memory or reset was accepted"),
    };
    tally.check(
        tname,
        Join(&[
            "cannot bind ",
            fname,
            "'s device, map ",
            fname,
            "'s memory or reset ",
            fname,
        ]),
        isolated,
    );
    // The manager resets the target: what the server holds for it first,
    // then its streams quarantined and its objects torn down.
    let mut report = Prefix(CLIENTS[m].pd, true);
    let page_va = CLIENTS[m].command_page_client;
    let dumped = iommus[m]
        .dump(page_va, target as u32, |piece| {
            let _ = report.write_str(core::str::from_utf8(piece).unwrap_or("?\n"));
        })
        .map(|_| ())
        .map_err(|e| refused("manager", "DUMP", Join(&[tname, "'s state"]), e));
    tally.check("manager", Join(&["dumps ", tname, "'s state"]), dumped);
    tally.check(
        "manager",
        Join(&["resets ", tname]),
        iommus[m]
            .reset(target as u64)
            .map_err(|e| refused("manager", "RESET_CLIENT", tname, e)),
    );
    say!("manager: reset {tname}: its streams quarantined, its objects torn down\n");
    let mut out = Prefix(tname, true);
    let (Some(session), Some(edu), Some(buf)) = (&sessions[target], &edus[target], bufs[target])
    else {
        return Err("the target never set up");
    };
    let stopped = scenarios::edu::after_reset(
        &mut iommus[target],
        session,
        edu,
        buf,
        &mut out,
        notified_fault(server, target),
    );
    tally.check(tname, "device can no longer reach memory", stopped);
    tally.check(tname, "resources all returned", returned(server, target));
    // The first driver crashes in the middle of a DMA. Its supervisor, told
    // of the fault (here a call stands in for seL4's fault message), resets
    // it, so the transfer in flight reaches nothing, and restarts it.
    let pools_before = server_report(&mut iommus[m], page_va)
        .map_err(|e| refused("supervisor", "DUMP", "the server's report", e))?;
    let mut out = Prefix(fname, true);
    let (Some(edu), Some(buf)) = (&edus[first], bufs[first]) else {
        return Err("the first driver never set up");
    };
    // The crashed life's state is gone with it.
    let session = sessions[first].take().ok_or("no session")?;
    scenarios::edu::start_dma_and_crash(&session, edu, buf, &mut out)?;
    say!("supervisor: {fname} faulted (simulated): resetting it and restarting it\n");
    tally.check(
        "supervisor",
        Join(&["revokes ", fname, "'s DMA when it dies"]),
        iommus[m]
            .reset(first as u64)
            .map_err(|e| refused("supervisor", "RESET_CLIENT", fname, e)),
    );
    tally.check(fname, "resources all returned", returned(server, first));
    let reconnected = clients.reconnect(first);
    clients.iommus[first] = reconnected;
    let iommus = &mut clients.iommus;
    let restarted = scenarios::edu::after_restart(
        &mut iommus[first],
        edu,
        buf,
        &mut out,
        notified_fault(server, first),
    )
    .and_then(|()| scenarios::edu::setup(&mut iommus[first], edu, buf, &CLIENTS[first], &mut out))
    .and_then(|session| {
        scenarios::edu::round_trip(&session, edu, buf, 21, &mut out)?;
        sessions[first] = Some(session);
        Ok(())
    });
    tally.check(
        fname,
        "restarted: binds, maps and does DMA again",
        restarted,
    );
    let pools_after = server_report(&mut iommus[m], page_va)
        .map_err(|e| refused("supervisor", "DUMP", "the server's report", e))?;
    say!("supervisor: {}", pools_after.as_str());
    tally.check(
        "supervisor",
        "the server's pools are back where they were before the crash",
        if pools_before.pools() == pools_after.pools() {
            Ok(())
        } else {
            say!("supervisor: before the crash: {}", pools_before.as_str());
            Err("the pools differ")
        },
    );
    // The other drivers are untouched by all of it.
    for i in drivers().filter(|&i| i != target) {
        let (Some(session), Some(edu), Some(buf)) = (&sessions[i], &edus[i], bufs[i]) else {
            return Err("a driver lost its session");
        };
        let mut out = Prefix(CLIENTS[i].pd, true);
        let works = scenarios::edu::round_trip(session, edu, buf, 13, &mut out);
        tally.check(CLIENTS[i].pd, "still works at the end", works);
    }
    Ok(EduDrivers {
        edus,
        sessions,
        roles: Roles {
            crashes: first,
            reset: target,
        },
    })
}
