//! The NVMe driver PD: brings its controller up through the IOMMU server
//! (queues in its own DMA region), shows a command naming an unmapped IOVA
//! stopped, reported and failed, then serves its block clients: each of
//! its DMA regions after the first is a block client's data region (the
//! PD it shares it with), mapped as iommu.xml's `mode` says, and the ring
//! is the one other region the two map, and the client's blocks are the
//! share of the disk iommu.xml gives on that region. A client notifies
//! when it has queued requests; the driver serves them and notifies back.
//!
//! Its first life dies on purpose, as soon as every block client has
//! requests in flight (taken and sent to the device, not answered): its
//! parent, the manager, revokes its DMA and restarts it, and the next
//! life answers each of those requests `ERR_ABANDONED` when it takes the
//! rings up, tells the clients, and serves everything after.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt::Write;

use blk_driver::{BlockDriver, Mode};
use iommu_client::{DmaBuffer, MicrokitTransport};
use microkit::{Channel, Handler, MessageInfo, SharedMemory};
use mmio::{Mmio, StaticCell};
use pd_support::{iommu, spec, Out};

/// QEMU's nvme: vendor and device.
const NVME_IDS: (u16, u16) = (0x1b36, 0x0010);
const REGIONS: usize = pd_support::nvme::REGIONS;

type Driver =
    BlockDriver<'static, MicrokitTransport, Mmio, SharedMemory, SharedMemory, SharedMemory>;

static BUFFERS: StaticCell<[Option<DmaBuffer<SharedMemory>>; REGIONS]> = StaticCell::new();
static RINGS: StaticCell<[Option<SharedMemory>; REGIONS]> = StaticCell::new();

struct NvmeDriver {
    driver: Option<Driver>,
    /// Per data region: its block client's channel and index in the driver.
    clients: [Option<(Channel, usize)>; REGIONS],
    /// The device's misbehaviour as last printed: completions ignored,
    /// commands timed out, controller resets.
    reported: (u64, u64, u64),
    /// The first life: it dies once every block client has requests in
    /// flight.
    dies: bool,
}

fn init() -> NvmeDriver {
    let mut out = Out::new();
    let mut this = NvmeDriver {
        driver: None,
        clients: [None; REGIONS],
        reported: (0, 0, 0),
        dies: microkit::starts() == 1,
    };
    match start(&mut out, &mut this) {
        Ok(()) => {}
        Err(e) => {
            let _ = writeln!(out, "FAILED - {e}");
        }
    }
    this
}

fn start(out: &mut Out, this: &mut NvmeDriver) -> Result<(), &'static str> {
    let spec = spec();
    let (cfg, regs) = pd_support::nvme::device().ok_or("device handed out twice")?;
    if cfg.ids() != Some(NVME_IDS) {
        return Err("no NVMe controller in my configuration page");
    }
    let bar = pd_support::nvme::NVME_BAR_PADDR.get();
    cfg.enable(bar as u32);
    let memory = pd_support::nvme::regions(spec).ok_or("regions handed out twice")?;
    if spec.regions.len() > REGIONS {
        return Err("more DMA regions than the driver handles");
    }
    let mut memory = memory.into_iter();
    let buffers = BUFFERS
        .init(core::array::from_fn(|k| {
            let r = spec.regions.get(k)?;
            Some(DmaBuffer::new(r.vaddr, r.size, memory.next()??))
        }))
        .ok_or("buffers made twice")?;
    let buffers: &'static [Option<DmaBuffer<SharedMemory>>; REGIONS] = buffers;
    let queues = buffers[0].as_ref().ok_or("no queue memory")?;
    let device = spec.devices.first().map_or("its device", |d| d.name);
    let mut driver = BlockDriver::start(iommu(spec), regs, queues).map_err(|e| {
        scenarios::blk::say_driver_error(&mut Out::new(), spec, 0, "bring-up", device, e);
        "the controller did not come up"
    })?;
    let _ = driver.describe(out);
    let _ = writeln!(out, ", BAR0 {bar:#x}");
    let _ = writeln!(out, "ok - controller up through the IOMMU");
    let restarted = microkit::starts() > 1;
    if restarted {
        // What the previous life's commands, stopped by the revocation,
        // left in the fault queue: read before anything new can fault.
        let left = driver.iommu.drain_faults();
        let _ = writeln!(
            out,
            "restarted: {left} faults from my previous life's commands read"
        );
    }
    let rings = pd_support::nvme::rings(spec).ok_or("rings handed out twice")?;
    let rings: &'static [Option<SharedMemory>; REGIONS] =
        RINGS.init(rings).ok_or("rings made twice")?;
    for (k, ring) in rings.iter().enumerate().skip(1) {
        let (Some(region), Some(data)) = (spec.regions.get(k), buffers[k].as_ref()) else {
            continue;
        };
        let ring = ring.as_ref().ok_or("a data region without a ring")?;
        let peer = region
            .shared_with
            .ok_or("a data region shared with no client")?;
        let channel = iommu_system::channel_to(microkit::name(), peer)
            .ok_or("no channel to a block client")?;
        // A ring is formatted once; a restarted driver takes it up where
        // it stands, answering what its previous life owed.
        if blk_queue::Driver::new(ring).is_err() {
            blk_queue::format(ring, 16).map_err(|_| "ring format")?;
        }
        let mode = Mode::of(region.strict);
        let share = region
            .share
            .ok_or("a block client's data region without its share of the disk")?;
        let owed = driver.stats.abandoned;
        let index = driver
            .add_client(ring, data, mode, share.range())
            .map_err(|e| {
                scenarios::blk::say_driver_error(out, spec, k, "serving", region.mr, e);
                "a block client's data region could not be served"
            })?;
        this.clients[k] = Some((channel, index));
        let _ = writeln!(
            out,
            "serving {peer}: {} mode, data at IOVA {:#x}, blocks {}..{}",
            mode.name(),
            blk_driver::DATA_IOVA + index as u64 * blk_driver::DATA_STRIDE,
            share.first_block,
            share.range().end
        );
        let owed = driver.stats.abandoned - owed;
        if restarted {
            let _ = writeln!(
                out,
                "{} - answered the {owed} requests of {peer} my previous life took and never answered: {}",
                if owed > 0 { "ok" } else { "FAILED" },
                blk_driver::error_name(blk_driver::ERR_ABANDONED)
            );
            microkit::notify(channel);
        }
    }
    // A command naming an IOVA nothing is mapped at, before serving (the
    // first life shows it).
    if let Some(&(_, k)) = this.clients.iter().flatten().next().filter(|_| !restarted) {
        let stray = driver
            .stray(k)
            .map_err(|_| "the stray command never completed")?;
        // The server runs at a higher priority: by the time the command
        // has completed, its interrupt handler has queued the fault.
        let fault = (0..1000).find_map(|_| driver.iommu.read_fault().ok().and_then(|r| r.fault));
        driver.iommu.drain_faults();
        let _ = writeln!(
            out,
            "{} - stray command to IOVA {:#x}: completed with {:?}, reported to me: {}",
            if stray.stopped(fault) { "ok" } else { "FAILED" },
            stray.iova,
            stray.status,
            fault.map_or("nothing", |f| iommu_proto::fault::kind_name(f.kind))
        );
    }
    let _ = writeln!(out, "device misbehaviour: {}", driver.nvme.counters());
    this.driver = Some(driver);
    Ok(())
}

impl Handler for NvmeDriver {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(u64::from(iommu_proto::Errno::ENOTTY.code()), 0)
    }

    fn notified(&mut self, channel: Channel) {
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        for &(ch, k) in self.clients.iter().flatten() {
            if ch != channel {
                continue;
            }
            if !self.dies {
                driver.serve(k);
                microkit::notify(ch);
                continue;
            }
            // Taken and sent, never waited for; refusals are answered.
            driver.take(k);
            microkit::notify(ch);
            let all_in_flight = self
                .clients
                .iter()
                .flatten()
                .all(|&(_, k)| driver.unanswered(k) > 0);
            if all_in_flight {
                let _ = writeln!(
                    Out::new(),
                    "requests of every block client in flight: crashing on purpose"
                );
                // The device finishes what it was given first (its
                // completions are never taken, so the requests stay
                // unanswered): QEMU 7.2's nvme can crash when reset with a
                // command still in progress.
                let _ = driver.nvme.settle();
                panic!("crashing on purpose with requests in flight");
            }
        }
        // Said once each time the device misbehaves anew.
        let seen = driver.nvme.counters();
        let now = (seen.ignored, seen.timed_out, seen.resets);
        if now != self.reported {
            self.reported = now;
            let _ = writeln!(Out::new(), "device misbehaviour: {seen}");
        }
    }
}

microkit::declare_pd!(init);
