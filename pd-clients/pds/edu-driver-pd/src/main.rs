//! The edu driver PD (one image, an instance per driver client): finds its
//! device in its PCI configuration page, gives it its BAR, maps its DMA
//! buffer through the IOMMU server, checks DMA both ways and shows a stray
//! DMA stopped and reported, then tells its manager (its parent) it is
//! ready. What follows is its role in the story (`scenarios::edu::Roles`):
//! the first driver crashes in the middle of a DMA when told to, and its
//! restarted life checks that the DMA was stopped before it binds again;
//! the last one, once reset, shows its device can reach nothing. Then a
//! fault storm: the reset driver's device faults on every beat of its
//! transfers, and the restarted driver's single stray DMA in the middle
//! of it is reported to it exactly, nothing lost.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt::Write;

use edu_device::Edu;
use iommu_client::{DmaBuffer, Iommu, MicrokitTransport};
use microkit::{Channel, Handler, MessageInfo, SharedMemory};
use mmio::{Mmio, StaticCell};
use pd_support::edu::{device, dma_buffer, EDU_BAR_PADDR};
use pd_support::{iommu, roles, spec, Out};
use scenarios::edu::Session;
use scenarios::{edu, storm};

static BUFFER: StaticCell<DmaBuffer<SharedMemory>> = StaticCell::new();

struct Driver {
    iommu: Iommu<MicrokitTransport>,
    edu: Edu<Mmio>,
    buffer: &'static DmaBuffer<SharedMemory>,
    session: Option<Session<'static>>,
    server: Channel,
    /// The channel to the manager, as system.xml gives it.
    manager: Option<Channel>,
    /// Notifications from the manager so far in this life.
    told: u32,
}

fn report(out: &mut Out, what: &str, r: Result<(), &'static str>) {
    match r {
        Ok(()) => {
            let _ = writeln!(out, "ok - {what}");
        }
        Err(e) => {
            let _ = writeln!(out, "FAILED - {what}: {e}");
        }
    }
}

/// A fault record, polled: the server runs at a higher priority, so by
/// the time a transfer has ended its interrupt handler has queued it.
fn poll_fault(iommu: &mut Iommu<MicrokitTransport>) -> Option<iommu_client::Fault> {
    (0..1000).find_map(|_| iommu.read_fault().ok().and_then(|r| r.fault))
}

fn init() -> Driver {
    let spec = spec();
    let mut out = Out::new();
    let iommu = iommu(spec);
    let (cfg, edu) = device().expect("the device is handed out once");
    let region = spec.regions[0];
    let memory = dma_buffer(spec).expect("the buffer is handed out once");
    let buffer: &'static DmaBuffer<SharedMemory> = BUFFER
        .init(DmaBuffer::new(region.vaddr, region.size, memory))
        .expect("initialised once");
    let mut driver = Driver {
        iommu,
        edu,
        buffer,
        session: None,
        server: spec.client_channel,
        manager: pd_support::channel_to_manager(),
        told: 0,
    };
    match cfg.ids() {
        Some((edu_device::VENDOR, edu_device::DEVICE)) => {
            cfg.enable(EDU_BAR_PADDR.get() as u32);
            let _ = writeln!(out, "edu found, BAR0 at {:#x}", EDU_BAR_PADDR.get());
        }
        _ => {
            let _ = writeln!(out, "FAILED - no edu device in my configuration page");
            return driver;
        }
    }
    let restarted = microkit::starts() > 1;
    if restarted {
        let r = edu::after_restart(&mut driver.iommu, &driver.edu, buffer, &mut out, poll_fault);
        report(&mut out, "restarted: the crashed life's DMA was stopped", r);
    }
    let session = match edu::setup(&mut driver.iommu, &driver.edu, buffer, spec, &mut out) {
        Ok(s) => s,
        Err(e) => {
            report(&mut out, "setup", Err(e));
            return driver;
        }
    };
    let r = edu::round_trip(&session, &driver.edu, buffer, 7, &mut out);
    report(&mut out, "DMA through my mappings", r);
    if !restarted {
        let r = edu::stray_dma(
            &mut driver.iommu,
            &session,
            &driver.edu,
            buffer,
            &mut out,
            poll_fault,
        );
        report(&mut out, "stray DMA faulted and reported", r);
    }
    driver.session = Some(session);
    match driver.manager {
        Some(manager) => microkit::notify(manager),
        None => {
            let _ = writeln!(out, "no channel to a manager: nothing more to do");
        }
    }
    driver
}

impl Handler for Driver {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(u64::from(iommu_proto::Errno::ENOTTY.code()), 0)
    }

    fn notified(&mut self, channel: Channel) {
        let mut out = Out::new();
        if channel == self.server {
            let _ = writeln!(out, "the server notified a DMA fault");
            return;
        }
        let (Some(session), Some(roles), Some(me)) = (&self.session, roles(), pd_support::index())
        else {
            return;
        };
        if Some(channel) != self.manager {
            return;
        }
        self.told += 1;
        let restarted = microkit::starts() > 1;
        if me == roles.crashes && restarted && self.told == 1 {
            // Before the storm: its crash's flood stopped its records.
            let r = storm::record_again(&mut self.iommu);
            report(
                &mut out,
                "drains its faults and has its device's faults recorded",
                r,
            );
            if let Some(manager) = self.manager {
                microkit::notify(manager);
            }
            return;
        }
        if me == roles.crashes && restarted {
            // Told mid-storm: one stray DMA, whose record must reach this
            // driver exactly.
            let r = storm::lone_stray(session, &self.edu).and_then(|stray| {
                // The server runs at a higher priority, a batch of records
                // per interrupt and per call: each read lets it take the
                // next until it reaches this driver's record.
                storm::exactly_the_stray(&mut self.iommu, stray, 1000, &mut out)
            });
            report(
                &mut out,
                "my one stray DMA during the storm reported to me exactly, nothing lost",
                r,
            );
            return;
        }
        if me == roles.reset && self.told > 1 {
            let r = storm::record_again(&mut self.iommu);
            report(
                &mut out,
                "drains its faults and has its device's faults recorded",
                r,
            );
            let manager = self.manager;
            let r = storm::storm(&self.edu, session.dst.iova(), |transfer| {
                if transfer == STRAY_DURING {
                    if let Some(m) = manager {
                        microkit::notify(m);
                    }
                }
                Ok(())
            })
            .and_then(|()| {
                storm::told_storming(
                    &mut self.iommu,
                    u64::from(iommu_proto::fault::IOMMU_FAULT_STORM_BUDGET),
                    &mut out,
                )
            });
            report(
                &mut out,
                "told it is storming: its records stopped after its budget, its drops counted",
                r,
            );
            return;
        }
        if me == roles.crashes {
            let r = edu::start_dma_and_crash(session, &self.edu, self.buffer, &mut out);
            report(&mut out, "DMA started", r);
            // A fault like any driver bug: the manager, this PD's parent,
            // receives it.
            panic!("crashing on purpose in the middle of a DMA");
        }
        if me == roles.reset {
            let r = edu::after_reset(
                &mut self.iommu,
                session,
                &self.edu,
                self.buffer,
                &mut out,
                poll_fault,
            );
            report(&mut out, "my device can no longer reach memory", r);
            // The manager starts the storm once this check is over.
            if let Some(manager) = self.manager {
                microkit::notify(manager);
            }
        }
    }
}

/// The transfer of the storm after which the other driver strays.
const STRAY_DURING: u32 = 3;

microkit::declare_pd!(init);
