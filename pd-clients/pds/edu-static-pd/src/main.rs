//! An edu driver PD written the way sDDF writes drivers (edu_c and edu_d
//! in the example): it links no IOMMU client and never calls the server.
//! It gives its device the physical address of its DMA region, learnt
//! through `<setvar region_paddr>`, or the address a static IO address
//! space puts the region at when that differs (from its configuration,
//! `iommu_system::remapped`), and moves data. system.xml's
//! `<io_address_space>` alone lets that DMA through; without it the
//! SMMU's default deny stops it.
//!
//! Then a DMA aimed outside its iomaps reaches nothing; if the server
//! tells this PD of its device's faults (iommu.xml's `<static_device
//! faults>`) it waits for that, then tells the manager, which holds the
//! device in quarantine (DMA reaches nothing) and releases it (DMA works
//! again).
//!
//! A driver that is the manager's child then crashes. The manager holds
//! its space in quarantine (whatever DMA the dead life left in flight
//! reaches nothing) and restarts it; restarted, it asks the server for
//! nothing: it tells the manager it is ready, and once the manager has
//! released its space, DMA works as before.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod memory;

use core::fmt::Write;

use edu_device::Edu;
use iommu_system::{channel_to, map_by_setvar, remapped, CHILDREN, SERVER, STATIC_SPACES};
use microkit::{Channel, DebugOut, Handler, MessageInfo, SharedMemory};
use mmio::Mmio;
use scenarios::edu_static::{self, Buffer};

struct Region(SharedMemory);

impl Buffer for Region {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        self.0.read(offset, out)
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        self.0.write(offset, bytes)
    }
}

/// Where the story stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The stray DMA ran: waiting for the server's fault notification.
    StrayFault,
    /// The manager was told: waiting for it to hold the device.
    Hold,
    /// Held and checked: waiting for the release.
    Release,
    /// Restarted and ready: waiting for the manager to release the space
    /// it held across the restart.
    Restarted,
    Done,
}

struct Driver {
    edu: Edu<Mmio>,
    region: Region,
    device_address: u64,
    server: Option<Channel>,
    manager: Option<Channel>,
    stage: Stage,
}

/// Debug output prefixed with the PD's name.
struct Out(bool);

impl Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if core::mem::replace(&mut self.0, c == '\n') {
                write!(DebugOut, "{}: ", microkit::name())?;
            }
            DebugOut.write_char(c)?;
        }
        Ok(())
    }
}

fn report(out: &mut Out, what: &str, r: scenarios::Step) {
    match r {
        Ok(()) => {
            let _ = writeln!(out, "ok - {what}");
        }
        Err(e) => {
            let _ = writeln!(out, "FAILED - {what}: {e}");
        }
    }
}

fn init() -> Driver {
    let me = microkit::name();
    let mut out = Out(true);
    let map = map_by_setvar(me, "dma_buffer").expect("system.xml maps dma_buffer");
    let (cfg, edu, memory) = memory::take(map.size).expect("taken once");
    let paddr = memory::DMA_PADDR.get();
    // sDDF's way: the physical address, unless the space puts it elsewhere.
    let device_address = remapped(map.mr).unwrap_or(paddr);
    let mine = STATIC_SPACES
        .iter()
        .find(|s| s.iomaps.iter().any(|m| m.mr == map.mr));
    let mut driver = Driver {
        edu,
        region: Region(memory),
        device_address,
        server: channel_to(me, SERVER.pd),
        manager: iommu_system::CLIENTS
            .iter()
            .find(|c| c.manager)
            .and_then(|m| channel_to(me, m.pd)),
        stage: Stage::Done,
    };
    match cfg.ids() {
        Some((edu_device::VENDOR, edu_device::DEVICE)) => {
            cfg.enable(memory::EDU_BAR_PADDR.get() as u32);
        }
        _ => {
            let _ = writeln!(out, "FAILED - no edu device in my configuration page");
            return driver;
        }
    }
    let _ = writeln!(
        out,
        "{} at physical {paddr:#x}, device address {device_address:#x} ({})",
        map.mr,
        mine.map_or("no io address space: default deny", |s| s.name)
    );
    if microkit::starts() > 1 {
        // The manager holds the space until this life says it is ready.
        let r = edu_static::stopped(&driver.edu, &driver.region, device_address, &mut out);
        report(
            &mut out,
            "restarted: my space held across the restart, my device reaches nothing",
            r,
        );
        if let Some(manager) = driver.manager {
            driver.stage = Stage::Restarted;
            microkit::notify(manager);
        }
        return driver;
    }
    let r = edu_static::round_trip(&driver.edu, &driver.region, device_address, 7, &mut out);
    report(
        &mut out,
        "DMA with no IOMMU client, confined by system.xml alone",
        r,
    );
    // Outside its iomaps: past the region when it sits at its physical
    // address, the physical address itself when the space moved it.
    let stray = if device_address == paddr {
        paddr + map.size
    } else {
        paddr
    };
    let r = edu_static::stray(&driver.edu, &driver.region, stray, 0x5a, &mut out);
    report(&mut out, "DMA outside my iomaps reaches nothing", r);
    if mine.is_some_and(|s| s.fault_pd == Some(me)) {
        driver.stage = Stage::StrayFault;
    }
    driver
}

impl Handler for Driver {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(0, 0)
    }

    fn notified(&mut self, channel: Channel) {
        let mut out = Out(true);
        match self.stage {
            Stage::StrayFault if Some(channel) == self.server => {
                let _ = writeln!(out, "ok - the server told me my device's DMA faulted");
                match self.manager {
                    Some(manager) => {
                        self.stage = Stage::Hold;
                        microkit::notify(manager);
                    }
                    None => self.stage = Stage::Done,
                }
            }
            Stage::Hold if Some(channel) == self.manager => {
                let r = edu_static::stopped(&self.edu, &self.region, self.device_address, &mut out);
                report(
                    &mut out,
                    "held by the manager: my device reaches nothing",
                    r,
                );
                self.stage = Stage::Release;
                microkit::notify(channel);
            }
            Stage::Release if Some(channel) == self.manager => {
                let r = edu_static::round_trip(
                    &self.edu,
                    &self.region,
                    self.device_address,
                    9,
                    &mut out,
                );
                report(
                    &mut out,
                    "released: DMA works again, still no server call",
                    r,
                );
                self.stage = Stage::Done;
                if CHILDREN.iter().any(|&(_, _, pd)| pd == microkit::name()) {
                    panic!("crashing on purpose: my parent restarts me");
                }
            }
            Stage::Restarted if Some(channel) == self.manager => {
                let r = edu_static::round_trip(
                    &self.edu,
                    &self.region,
                    self.device_address,
                    11,
                    &mut out,
                );
                report(
                    &mut out,
                    "restarted under my static IO address space: DMA works, no server call",
                    r,
                );
                self.stage = Stage::Done;
            }
            _ => {}
        }
    }
}

microkit::declare_pd!(init);
