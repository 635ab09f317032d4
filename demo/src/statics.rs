//! The drivers under static IO address spaces: no client of the server,
//! confined by system.xml alone.

use core::fmt::Write;

use edu_device::Edu;
use iommu_client::Iommu;
use iommu_system::{Paddr, CLIENTS, SERVER_SYMBOLS, STATIC_SPACES};
use mmio::{DmaRegion, Memory, Mmio, StaticCell};
use qemu_virt::platform::DeviceWindows;
use scenarios::edu_static;

use crate::output::{refused, Join, Prefix, Tally};
use crate::transport::{take_faults, Clients, Direct, RegionMemory, Shared};
use crate::{devices, memory};

/// Before its io address space exists, a static driver's DMA reaches
/// nothing.
#[inline(never)]
pub fn default_deny(tally: &mut Tally, d: &StaticDriver) {
    let r = edu_static::stopped(
        &d.edu,
        &d.region,
        d.device_address,
        &mut Prefix(d.name, true),
    );
    tally.check(
        d.name,
        "before its io address space exists, its DMA reaches nothing (default deny)",
        r,
    );
}

/// A driver under a static IO address space: its device, its region and
/// where its device sees the region.
pub struct StaticDriver {
    name: &'static str,
    space: usize,
    edu: Edu<Mmio>,
    region: StaticRegion,
    paddr: u64,
    size: u64,
    device_address: u64,
}

/// A static driver's region as its CPU sees it.
struct StaticRegion(RegionMemory);

impl edu_static::Buffer for StaticRegion {
    fn len(&self) -> usize {
        (self.0).0.len()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        self.0.read(offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        self.0.write(offset, bytes)
    }
}

/// The static drivers, kept out of the stack.
static STATIC_DRIVERS: StaticCell<Drivers> = StaticCell::new();

/// Each static space's driver (the PD mapping its region as its
/// `dma_buffer`): its region placed like the clients' when the server
/// learns it by setvar (`symbols`), at its phys_addr when system.xml pins
/// it; its device found where the configuration places it and given its
/// BAR.
#[inline(never)]
pub fn place(
    spare: &mut DmaRegion,
    pinned: &mut memory::Pinned,
    symbols: &mut [u64; SERVER_SYMBOLS.len()],
    windows: &mut DeviceWindows,
) -> Result<&'static Drivers, &'static str> {
    let out = STATIC_DRIVERS
        .init(Drivers::new())
        .ok_or("static drivers set up twice")?;
    for (i, s) in STATIC_SPACES.iter().enumerate() {
        let [m] = s.iomaps else {
            return Err("the demo's static drivers have one region each");
        };
        let region = match m.paddr {
            Paddr::Symbol(k) => {
                let r = spare
                    .carve(m.size as usize, 0x1000)
                    .ok_or("client memory too small for the static regions")?;
                symbols[k] = r.pa();
                r
            }
            Paddr::Fixed(p) => pinned
                .region(p, m.size)
                .ok_or("a pinned region outside the demo's window")?,
        };
        let name = iommu_system::MAPS
            .iter()
            .find(|x| x.mr == m.mr && x.setvar_vaddr == Some("dma_buffer"))
            .map_or("static driver", |x| x.pd);
        let device = devices::of(windows, name, devices::EDU_REGS)?;
        if device.config.ids() != Some((edu_device::VENDOR, edu_device::DEVICE)) {
            return Err("no edu device at a static space's peripheral");
        }
        device.config.enable(device.bar);
        let paddr = region.pa();
        out.push(StaticDriver {
            name,
            space: i,
            edu: Edu(device.regs),
            region: StaticRegion(RegionMemory(region)),
            paddr,
            size: m.size,
            // sDDF's way: the physical address, unless the space moved it.
            device_address: iommu_system::remapped(m.mr).unwrap_or(paddr),
        })
        .map_err(|_| "more static drivers than the demo holds")?;
    }
    Ok(out)
}

/// Fixed room for the static drivers.
pub struct Drivers {
    items: [Option<StaticDriver>; 4],
    len: usize,
}

impl Drivers {
    fn new() -> Drivers {
        Drivers {
            items: [const { None }; 4],
            len: 0,
        }
    }

    fn push(&mut self, d: StaticDriver) -> Result<(), ()> {
        *self.items.get_mut(self.len).ok_or(())? = Some(d);
        self.len += 1;
        Ok(())
    }

    pub fn first(&self) -> Option<&StaticDriver> {
        self.items[0].as_ref()
    }

    fn iter(&self) -> impl Iterator<Item = &StaticDriver> {
        self.items.iter().flatten()
    }
}

/// The drivers under static spaces: DMA works with no server call; DMA
/// outside the iomaps reaches nothing, is logged, and reaches the fault PD
/// the description names (the driver, or the manager); the manager holds
/// a static device in quarantine and releases it.
#[inline(never)]
pub fn story(tally: &mut Tally, clients: &mut Clients<'_>, drivers: &Drivers) {
    let server = clients.server;
    let manager = &mut clients.iommus[clients.manager];
    for d in drivers.iter() {
        let spec = &STATIC_SPACES[d.space];
        let mut out = Prefix(d.name, true);
        let _ = writeln!(
            out,
            "{} at physical {:#x}, device address {:#x} ({}), no IOMMU client",
            spec.iomaps[0].mr, d.paddr, d.device_address, spec.name
        );
        tally.check(
            d.name,
            "DMA with no IOMMU client, confined by system.xml alone",
            edu_static::round_trip(&d.edu, &d.region, d.device_address, 7, &mut out),
        );
        let stray = if d.device_address == d.paddr {
            d.paddr + d.size
        } else {
            d.paddr
        };
        tally.check(
            d.name,
            "DMA outside my iomaps reaches nothing",
            edu_static::stray(&d.edu, &d.region, stray, 0x5a, &mut out),
        );
        take_faults(server);
        let told = server.borrow_mut().take_static_faults() & (1 << d.space) != 0;
        let who = spec.fault_pd.unwrap_or("nobody");
        tally.check(
            who,
            Join(&["the server told me of the fault on ", spec.name]),
            if told { Ok(()) } else { Err("not notified") },
        );
        if spec.fault_pd != Some(d.name) {
            continue;
        }
        // The manager holds the device in quarantine, then releases it.
        let held = manager.hold_static(d.space as u64).map_err(|e| {
            refused(
                "manager",
                "QUARANTINE (hold)",
                Join(&[spec.name, "'s static space"]),
                e,
            )
        });
        tally.check(
            "manager",
            Join(&["holds ", spec.name, ": its stream aborts"]),
            held,
        );
        tally.check(
            d.name,
            "held by the manager: my device reaches nothing",
            edu_static::stopped(&d.edu, &d.region, d.device_address, &mut out),
        );
        take_faults(server);
        server.borrow_mut().take_static_faults();
        let released = manager.release_static(d.space as u64).map_err(|e| {
            refused(
                "manager",
                "QUARANTINE (release)",
                Join(&[spec.name, "'s static space"]),
                e,
            )
        });
        tally.check(
            "manager",
            Join(&[
                "released ",
                spec.name,
                ": its stream points at its domain again",
            ]),
            released,
        );
        tally.check(
            d.name,
            "released: DMA works again, still no server call",
            edu_static::round_trip(&d.edu, &d.region, d.device_address, 9, &mut out),
        );
        if iommu_system::CHILDREN
            .iter()
            .any(|&(_, _, pd)| pd == d.name)
        {
            restart(tally, server, manager, d, &mut out);
        }
    }
    let mut report = Prefix("manager", true);
    let _ = manager.dump(
        CLIENTS
            .iter()
            .find(|c| c.manager)
            .map_or(0, |c| c.command_page_client),
        iommu_proto::dump::IOMMU_DUMP_SERVER,
        |piece| {
            let _ = report.write_str(core::str::from_utf8(piece).unwrap_or("?\n"));
        },
    );
}

/// A static driver, the manager's child, crashes (simulated: on seL4 the
/// manager hears of it as a fault and restarts it with `pd_restart`). It
/// is no client of the server: the manager resets nothing, but holds its
/// space across the restart, so whatever its dead life left in flight
/// reaches nothing, and releases it when the restarted driver is ready;
/// the restarted driver asks the server for nothing.
fn restart(
    tally: &mut Tally,
    server: Shared<'_>,
    manager: &mut Iommu<Direct<'_>>,
    d: &StaticDriver,
    out: &mut Prefix,
) {
    let spec = &STATIC_SPACES[d.space];
    say!(
        "manager: {} faulted (simulated): no client of the server; holding {}, then restarting it\n",
        d.name,
        spec.name
    );
    tally.check(
        "manager",
        Join(&[
            "holds ",
            spec.name,
            " across ",
            d.name,
            "'s restart: its stream aborts",
        ]),
        manager.hold_static(d.space as u64).map_err(|e| {
            refused(
                "manager",
                "QUARANTINE (hold)",
                Join(&[spec.name, "'s static space"]),
                e,
            )
        }),
    );
    tally.check(
        d.name,
        "restarted: my space held across the restart, my device reaches nothing",
        edu_static::stopped(&d.edu, &d.region, d.device_address, out),
    );
    take_faults(server);
    server.borrow_mut().take_static_faults();
    tally.check(
        "manager",
        Join(&[
            "released ",
            spec.name,
            ": its stream points at its domain again",
        ]),
        manager.release_static(d.space as u64).map_err(|e| {
            refused(
                "manager",
                "QUARANTINE (release)",
                Join(&[spec.name, "'s static space"]),
                e,
            )
        }),
    );
    tally.check(
        d.name,
        "restarted under my static IO address space: DMA works, no server call",
        edu_static::round_trip(&d.edu, &d.region, d.device_address, 11, out),
    );
}
