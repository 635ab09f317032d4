//! The NVMe drivers and their block clients.

use core::fmt::Write;

use blk_driver::{BlockDriver, Mode};
use iommu_client::DmaBuffer;
use iommu_system::{ClientId, CLIENTS};
use mmio::{DmaRegion, Mmio};
use qemu_virt::platform::{self, DeviceWindows};
use scenarios::blk::{Next, Story};

use crate::devices;
use crate::output::{refused, Join, Prefix, Tally};
use crate::transport::{
    direct, returned, take_faults, Buffers, Clients, RegionMemory, MAX_REGIONS,
};

/// Every NVMe driver's story, in turn, its supervisor the manager.
pub fn story(
    tally: &mut Tally,
    clients: &mut Clients<'_>,
    buffers: &Buffers,
    spare: &mut DmaRegion,
    windows: &mut DeviceWindows,
) -> Result<(), &'static str> {
    for i in (0..CLIENTS.len()).filter(|&i| CLIENTS[i].runs(NVME_IMAGE)) {
        let device = devices::of(windows, CLIENTS[i].pd, devices::NVME_REGS)?;
        nvme_story(tally, clients, i, device, &buffers[i], spare)?;
    }
    Ok(())
}

/// The NVMe driver's program image: the clients running it drive NVMe
/// controllers for block clients.
const NVME_IMAGE: &str = "nvme_driver.elf";
/// QEMU's nvme: vendor and device.
const NVME_IDS: (u16, u16) = (0x1b36, 0x0010);
/// How long the stray command's fault record is waited for, in ms.
const STRAY_RECORD_WAIT_MS: u64 = 250;
/// Requests a block ring holds.
const RING_CAPACITY: u32 = 16;

/// The NVMe controller's registers, lent to each life of its driver (a
/// crashed life's handle dies with it; the restarted one borrows again).
struct Regs<'a>(&'a Mmio);

impl mmio::RegisterBlock for Regs<'_> {
    fn read32(&self, offset: usize) -> u32 {
        self.0.read32(offset)
    }
    fn write32(&self, offset: usize, value: u32) {
        self.0.write32(offset, value)
    }
    fn read64(&self, offset: usize) -> u64 {
        self.0.read64(offset)
    }
    fn write64(&self, offset: usize, value: u64) {
        self.0.write64(offset, value)
    }
}

/// A block client of the NVMe driver: its data region's index among the
/// driver's regions, its name, and its share of the disk.
#[derive(Clone)]
struct BlockClient {
    region: usize,
    who: &'static str,
    strict: bool,
    share: core::ops::Range<u64>,
}

/// Client `i` drives an NVMe controller for the block clients whose data
/// regions are its DMA regions after the first (its queues), each with
/// its share of the disk. Every block client runs its story in turn, as
/// the PDs would: it tries to read and to write the next client's blocks
/// (refused), leaves a write and a read in flight, and, once every client
/// has, the driver crashes; its supervisor revokes its DMA and restarts
/// it, the restarted driver answers what its previous life owed with an
/// error, and each client writes, reads back and checks through it, in
/// the mode iommu.xml gives its region. Then the driver shows a stray
/// DMA stopped and serves on.
fn nvme_story(
    tally: &mut Tally,
    clients: &mut Clients<'_>,
    i: usize,
    device: devices::Device,
    regions: &[Option<DmaBuffer<RegionMemory>>; MAX_REGIONS],
    spare: &mut DmaRegion,
) -> Result<(), &'static str> {
    let (server, page) = (clients.server, clients.page(i));
    let supervisor = &mut clients.iommus[clients.manager];
    let spec = &CLIENTS[i];
    let name = spec.pd;
    let mut out = Prefix(name, true);
    let (cfg, regs, bar) = (device.config, device.regs, device.bar);
    if cfg.ids() != Some(NVME_IDS) {
        tally.check(
            name,
            "finds its NVMe controller",
            Err("no nvme device there"),
        );
        return Ok(());
    }
    cfg.enable(bar);
    let queues = regions[0].as_ref().ok_or("no queue memory")?;
    let regs = &regs;
    let client = ClientId::from_index(i).ok_or("a client index")?;
    // One life of the driver.
    let start = || BlockDriver::start(direct(server, client, page), Regs(regs), queues);
    let mut driver = match start() {
        Ok(d) => d,
        Err(e) => {
            let device = spec.devices.first().map_or("its device", |d| d.name);
            scenarios::blk::say_driver_error(&mut out, spec, 0, "bring-up", device, e);
            tally.check(
                name,
                "brings its NVMe controller up",
                Err("bring-up failed"),
            );
            return Ok(());
        }
    };
    let _ = driver.describe(&mut out);
    let _ = writeln!(out, ", BAR0 {bar:#x} ({})", device.bar_mr);
    tally.check(
        name,
        "brings its NVMe controller up through the IOMMU",
        Ok(()),
    );

    // Each block client: its ring (plain shared memory), data region and
    // share of the disk.
    let ring_bytes = blk_queue::region_bytes(RING_CAPACITY);
    let mut rings: [Option<RegionMemory>; MAX_REGIONS] = [const { None }; MAX_REGIONS];
    let mut blocks: [Option<BlockClient>; MAX_REGIONS] = [const { None }; MAX_REGIONS];
    for k in 1..spec.regions.len().min(MAX_REGIONS) {
        let r = RegionMemory(
            spare
                .carve(ring_bytes, 0x1000)
                .ok_or("no room for a ring")?,
        );
        blk_queue::format(&r, RING_CAPACITY).map_err(|_| "ring format")?;
        rings[k] = Some(r);
        let region = &spec.regions[k];
        let share = region
            .share
            .ok_or("a block client's data region without its share of the disk")?;
        blocks[k] = Some(BlockClient {
            region: k,
            who: region.shared_with.unwrap_or("block client"),
            strict: region.strict,
            share: share.range(),
        });
    }
    let add_clients = |driver: &mut _| -> Result<[usize; MAX_REGIONS], &'static str> {
        let driver: &mut BlockDriver<_, _, _, _, _> = driver;
        let mut served = [usize::MAX; MAX_REGIONS];
        for b in blocks.iter().flatten() {
            let (Some(ring), Some(data)) = (rings[b.region].as_ref(), regions[b.region].as_ref())
            else {
                continue;
            };
            served[b.region] = driver
                .add_client(ring, data, Mode::of(b.strict), b.share.clone())
                .map_err(|e| {
                    let mr = spec.regions[b.region].mr;
                    let mut out = Prefix(name, true);
                    scenarios::blk::say_driver_error(&mut out, spec, b.region, "serving", mr, e);
                    "a block client's data region could not be served"
                })?;
        }
        Ok(served)
    };
    let mut served = add_clients(&mut driver)?;

    let mut clients: [Option<blk_queue::Client<'_, RegionMemory>>; MAX_REGIONS] =
        [const { None }; MAX_REGIONS];
    let mut stories: [Option<Story>; MAX_REGIONS] = [const { None }; MAX_REGIONS];
    for b in blocks.iter().flatten() {
        let k = b.region;
        let ring = rings[k].as_ref().ok_or("ring")?;
        clients[k] = Some(blk_queue::Client::new(ring).map_err(|_| "ring")?);
        // The next client's share is the one it tries.
        let next = blocks
            .iter()
            .flatten()
            .map(|o| o.share.start)
            .find(|&s| s > b.share.start)
            .or_else(|| blocks.iter().flatten().map(|o| o.share.start).next())
            .filter(|&s| s != b.share.start);
        let story = Story::new(b.share.start).through_a_crash();
        stories[k] = Some(match next {
            Some(other) => story.trying(other),
            None => story,
        });
        let mode = Mode::of(b.strict).name();
        let region = &spec.regions[k];
        let _ = writeln!(
            Prefix(b.who, true),
            "{mode} mode: data region {} ({} KiB) at IOVA {:#x}, blocks {}..{}",
            region.mr,
            region.size / 1024,
            blk_driver::DATA_IOVA + (served[k] as u64) * blk_driver::DATA_STRIDE,
            b.share.start,
            b.share.end
        );
    }

    // The stories, a step of each client in turn; the first life of the
    // driver takes requests and sends them without waiting, until every
    // client has some in flight: then it dies.
    let mut dies = true;
    let mut done: [Option<bool>; MAX_REGIONS] = [None; MAX_REGIONS];
    let mut restarted_cost = [blk_driver::Stats::default(); MAX_REGIONS];
    for _ in 0..4 * scenarios::blk::MAX_WAITS {
        for b in blocks.iter().flatten() {
            let k = b.region;
            let (Some(client), Some(story), Some(data)) = (
                clients[k].as_mut(),
                stories[k].as_mut(),
                regions[k].as_ref(),
            ) else {
                continue;
            };
            if done[k].is_some() {
                continue;
            }
            match story.step(client, data.memory(), &mut Prefix(b.who, true)) {
                Next::Done(ok) => done[k] = Some(ok),
                _ if dies => {
                    driver.take(served[k]);
                }
                _ => {
                    driver.serve(served[k]);
                    if b.strict && driver.data_mappings(served[k]) != 0 {
                        tally.check(
                            b.who,
                            "strict: nothing mapped once requests complete",
                            Err("a mapping is left"),
                        );
                    }
                }
            }
        }
        let every = blocks
            .iter()
            .flatten()
            .all(|b| driver.unanswered(served[b.region]) > 0);
        if dies && every {
            dies = false;
            let owed: u64 = blocks
                .iter()
                .flatten()
                .map(|b| driver.unanswered(served[b.region]))
                .sum();
            let _ = writeln!(
                out,
                "{owed} requests of its block clients in flight: crashing on purpose"
            );
            // The device finishes what it was given first (its completions
            // are never taken, so the requests stay unanswered): QEMU 7.2's
            // nvme can crash when reset with a command still in progress.
            let _ = driver.nvme.settle();
            // Its state dies with it: nothing is completed or unmapped.
            #[allow(
                clippy::drop_non_drop,
                reason = "the driver dies here: its state is not used again"
            )]
            drop(driver);
            say!("supervisor: {name} faulted (simulated): resetting it and restarting it\n");
            tally.check(
                "supervisor",
                Join(&["revokes ", name, "'s DMA when it dies"]),
                supervisor
                    .reset(i as u64)
                    .map_err(|e| refused("supervisor", "RESET_CLIENT", name, e)),
            );
            tally.check(name, "resources all returned", returned(server, i));
            driver = start().map_err(|e| {
                let device = spec.devices.first().map_or("its device", |d| d.name);
                scenarios::blk::say_driver_error(
                    &mut out,
                    spec,
                    0,
                    "bring-up after the restart",
                    device,
                    e,
                );
                "the restarted driver did not come up"
            })?;
            // What its previous life's stopped commands left in its fault
            // queue, read before anything new can fault.
            take_faults(server);
            let left = driver.iommu.drain_faults();
            let _ = writeln!(
                out,
                "restarted: {left} faults from my previous life's commands read"
            );
            served = add_clients(&mut driver)?;
            for b in blocks.iter().flatten() {
                restarted_cost[b.region] = driver.client_stats(served[b.region]);
            }
            let answered = driver.stats.abandoned;
            let _ = writeln!(
                out,
                "restarted: answered {answered} requests its previous life took and never answered: {}",
                blk_driver::error_name(blk_driver::ERR_ABANDONED)
            );
            tally.check(
                name,
                "restarted: every request its previous life took is answered with an error",
                if answered == owed && owed > 0 {
                    Ok(())
                } else {
                    Err("not every request it owed")
                },
            );
        }
        if blocks.iter().flatten().all(|b| done[b.region].is_some()) {
            break;
        }
    }

    for b in blocks.iter().flatten() {
        let k = b.region;
        let mode = Mode::of(b.strict).name();
        let cost = driver.client_stats(served[k]);
        let since = restarted_cost[k];
        let _ = writeln!(
            out,
            "{} ({mode}): {} I/Os, {} maps and {} unmaps",
            b.who,
            cost.ios - since.ios,
            cost.maps - since.maps,
            cost.unmaps - since.unmaps
        );
        tally.check(
            b.who,
            Join(&[
                mode,
                ": refused another's blocks; an error for each request its driver died with; then writes, reads back and verifies through ",
                name,
            ]),
            match done[k] {
                Some(true) => Ok(()),
                Some(false) => Err("a check failed"),
                None => Err("the story did not finish"),
            },
        );
        if b.strict {
            tally.check(
                b.who,
                "strict: no mapping left once every request completed",
                if driver.data_mappings(served[k]) == 0 && cost.maps == cost.unmaps {
                    Ok(())
                } else {
                    Err("a mapping outlived its request")
                },
            );
        }
    }

    // A stray DMA from a real device: a command whose PRPs name an IOVA
    // the driver never mapped.
    let Some(first) = blocks.iter().flatten().next().cloned() else {
        return Ok(());
    };
    let k = served[first.region];
    let stray = driver
        .stray(k)
        .map_err(|_| "the stray command did not complete")?;
    // The SMMU's record of the stopped read can land a moment after the
    // command completes (QEMU runs the controller and the SMMU apart):
    // wait for it, a bounded time.
    let deadline = platform::ticks() + platform::ticks_per_second() * STRAY_RECORD_WAIT_MS / 1000;
    let fault = loop {
        if take_faults(server) & (1 << i) != 0 {
            break driver.iommu.read_fault().ok().and_then(|r| r.fault);
        }
        if platform::ticks() > deadline {
            break None;
        }
        core::hint::spin_loop();
    };
    driver.iommu.drain_faults();
    let _ = writeln!(
        out,
        "stray command to IOVA {:#x} (its PRP list one page on): completed with {:?}; reported to me: {} at IOVA {:#x}",
        stray.iova,
        stray.status,
        fault.map_or("nothing", |f| iommu_proto::fault::kind_name(f.kind)),
        fault.and_then(|f| f.iova).unwrap_or(0)
    );
    tally.check(
        name,
        "a command naming an unmapped IOVA is stopped, reported, and fails",
        if stray.stopped(fault) {
            Ok(())
        } else {
            Err("not stopped, not reported, or not failed")
        },
    );
    // And the driver goes on serving: the first client again, in the
    // middle of its share.
    if let (Some(ring), Some(data)) = (rings[first.region].as_ref(), regions[first.region].as_ref())
    {
        let mut client = blk_queue::Client::new(ring).map_err(|_| "ring")?;
        let mut story = Story::new(scenarios::blk::second_story(first.share.clone()));
        let mut cout = Prefix(first.who, true);
        let mut ok = false;
        for _ in 0..8 {
            match story.step(&mut client, data.memory(), &mut cout) {
                Next::Done(passed) => {
                    ok = passed;
                    break;
                }
                _ => {
                    driver.serve(k);
                }
            }
        }
        tally.check(
            name,
            "serves on after the stray command",
            if ok { Ok(()) } else { Err("it did not") },
        );
    }
    // What a broken or hostile controller would have cost: none of it here.
    let _ = writeln!(out, "device misbehaviour: {}", driver.nvme.counters());
    Ok(())
}
