//! The edu driver PD (two instances, edu_a and edu_b, from one image):
//! finds its device in its PCI configuration page, gives it its BAR, maps
//! its DMA buffer through the IOMMU server and checks DMA both ways. edu_a
//! then shows a stray DMA stopped and reported; edu_b tells the manager it
//! is ready, and once reset shows its device can reach nothing.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt::Write;

use driver_pds::edu::{device, dma_buffer, EDU_BAR_PADDR};
use driver_pds::{iommu, spec, Out};
use edu_driver::{Edu, Session};
use iommu_client::{DmaBuffer, Iommu, MicrokitTransport};
use microkit::{Channel, Handler, MessageInfo, SharedMemory};
use mmio::{Mmio, StaticCell};

/// The channel to the manager (system.xml).
const MANAGER: Channel = match Channel::new(1) {
    Some(c) => c,
    None => panic!(),
};

static BUFFER: StaticCell<DmaBuffer<SharedMemory>> = StaticCell::new();

struct Driver {
    iommu: Iommu<MicrokitTransport>,
    edu: Edu<Mmio>,
    buffer: &'static DmaBuffer<SharedMemory>,
    session: Option<Session<'static>>,
    server: Channel,
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
    };
    match cfg.ids() {
        Some((edu_driver::VENDOR, edu_driver::DEVICE)) => {
            cfg.enable(EDU_BAR_PADDR.get() as u32);
            let _ = writeln!(out, "edu found, BAR0 at {:#x}", EDU_BAR_PADDR.get());
        }
        _ => {
            let _ = writeln!(out, "FAILED - no edu device in my configuration page");
            return driver;
        }
    }
    let report = |out: &mut Out, what: &str, r: Result<(), &'static str>| match r {
        Ok(()) => {
            let _ = writeln!(out, "ok - {what}");
        }
        Err(e) => {
            let _ = writeln!(out, "FAILED - {what}: {e}");
        }
    };
    let session = match edu_driver::setup(&mut driver.iommu, &driver.edu, buffer, &mut out) {
        Ok(s) => s,
        Err(e) => {
            report(&mut out, "setup", Err(e));
            return driver;
        }
    };
    let r = edu_driver::round_trip(&session, &driver.edu, buffer, 7, &mut out);
    report(&mut out, "DMA through my mappings", r);
    if microkit::name() == "edu_a" {
        // The server runs at a higher priority: by the time the transfer
        // has ended, its interrupt handler has queued the fault.
        let r = edu_driver::stray_dma(
            &mut driver.iommu,
            &session,
            &driver.edu,
            buffer,
            &mut out,
            |iommu| (0..1000).find_map(|_| iommu.read_fault().ok().and_then(|r| r.fault)),
        );
        report(&mut out, "stray DMA faulted and reported", r);
    } else {
        microkit::notify(MANAGER);
    }
    driver.session = Some(session);
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
        } else if channel == MANAGER {
            if let Some(session) = &self.session {
                // The server runs at a higher priority: by the time the
                // transfer has ended, its interrupt handler has queued the
                // fault.
                let r = edu_driver::after_reset(
                    &mut self.iommu,
                    session,
                    &self.edu,
                    self.buffer,
                    &mut out,
                    |iommu| (0..1000).find_map(|_| iommu.read_fault().ok().and_then(|r| r.fault)),
                );
                match r {
                    Ok(()) => {
                        let _ = writeln!(out, "ok - my device can no longer reach memory");
                    }
                    Err(e) => {
                        let _ = writeln!(out, "FAILED - after reset: {e}");
                    }
                }
            }
        }
    }
}

microkit::declare_pd!(init);
