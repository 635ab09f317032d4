//! The whole system without seL4: the server core on QEMU's SMMUv3 and the
//! edu drivers and the manager as its clients, all in one bare-metal
//! image, configured from system.xml and iommu.xml like the PDs. Requests
//! take the PDs' path (a command page copied in and out by
//! `Server::serve`); a direct call stands in for the protected call, and
//! draining the SMMU's event queue stands in for its interrupt.
//!
//! It says so: nothing here is isolated, every part shares one address
//! space. `make run` with a Microkit SDK runs the real system.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod guest;
mod memory;

use core::cell::RefCell;
use core::fmt::Write;

use blk_driver::story::{Next, Story};
use blk_driver::{BlockDriver, Mode};
use edu_driver::{server_report, Edu, Roles, Session};
use hw::domains::SmmuDomains;
use hw::pgtable::TablePool;
use hw::smmu::{Smmu, SmmuConfig};
use iommu_client::{DmaBuffer, Iommu, Transport};
use iommu_proto::Errno;
use iommu_server::{Collected, Drained, Server, COMMAND_PAGE, EVENTS_PER_INTERRUPT};
use iommu_system::{
    client_configs, resolve, static_spaces, ClientConfig, ClientId, Paddr, StaticSpace, StreamId,
    CLIENTS, SERVER_SYMBOLS, STATIC_SPACES, TOTAL_DEVICES,
};
use mmio::{
    CacheClean, Coherent, ConstStaticCell, DcacheClean, DmaRegion, Memory, Mmio, StaticCell,
};
use pci_function::PciFunction;
use qemu_virt::platform::{self, Uart};

qemu_virt::image_main!(main);

static COHERENT: Coherent = Coherent;
static NON_COHERENT: DcacheClean = DcacheClean;

type Hw = SmmuDomains<'static, Mmio>;

/// DMA regions per client the demo places.
const MAX_REGIONS: usize = 4;

// As in the server PD: the SMMU's state and the configurations live in
// statics the server borrows.
static SMMU: StaticCell<Smmu<Mmio>> = StaticCell::new();
static CONFIGS: StaticCell<[ClientConfig; CLIENTS.len()]> = StaticCell::new();
static SPACES: StaticCell<[StaticSpace; STATIC_SPACES.len()]> = StaticCell::new();
type Shared<'a> = &'a RefCell<Server<'static, Hw>>;

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = write!(Uart, $($arg)*); }};
}

/// A client's calls, arriving as from its channel.
struct Direct<'a> {
    server: Shared<'a>,
    client: ClientId,
    page: &'a RefCell<[u8; COMMAND_PAGE]>,
}

/// Each client's command page, shared with the server: a static, as the
/// page the Microkit tool maps is, so that a restarted client finds the
/// same page and no page sits in the frame of the story that nests the
/// server's calls.
static COMMAND_PAGES: ConstStaticCell<[RefCell<[u8; COMMAND_PAGE]>; CLIENTS.len()]> =
    ConstStaticCell::new([const { RefCell::new([0; COMMAND_PAGE]) }; CLIENTS.len()]);

impl Transport for Direct<'_> {
    fn write_page(&mut self, bytes: &[u8]) {
        self.page.borrow_mut()[..bytes.len()].copy_from_slice(bytes);
    }

    fn read_page(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&self.page.borrow()[..out.len()]);
    }

    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64) {
        let reply = self
            .server
            .borrow_mut()
            .serve(self.client, label, mrs, self.page);
        (reply.label, reply.mr0)
    }
}

/// A client's DMA region in the shared physical memory.
struct RegionMemory(DmaRegion);

impl Memory for RegionMemory {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        if offset
            .checked_add(out.len())
            .is_none_or(|end| end > self.0.len())
        {
            return false;
        }
        for (i, b) in out.iter_mut().enumerate() {
            let at = offset + i;
            *b = (self.0.read(at / 8) >> (8 * (at % 8))) as u8;
        }
        true
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset
            .checked_add(bytes.len())
            .is_none_or(|end| end > self.0.len())
        {
            return false;
        }
        for (i, b) in bytes.iter().enumerate() {
            let at = offset + i;
            let shift = 8 * (at % 8);
            let word = self.0.read(at / 8) & !(0xff << shift);
            self.0.write(at / 8, word | (u64::from(*b) << shift));
        }
        true
    }
}

/// One SMMU interrupt: at most EVENTS_PER_INTERRUPT records queued with
/// their clients (the interrupt handler's work in the PD).
fn interrupt(server: Shared<'_>) -> Collected {
    server.borrow_mut().collect_faults(
        |hw, max, report| {
            let status = hw.drain_faults(max, report);
            Drained {
                lost: status.overflowed,
                global_errors: hw.smmu().take_global_errors(),
                pending: status.pending,
            }
        },
        &mut |event| say!("server: {event}\n"),
    )
}

/// The SMMU's pending events, an interrupt's batch at a time until none
/// is left (as the PD's interrupts and calls take them); returns the
/// clients notified.
fn take_faults(server: Shared<'_>) -> u64 {
    let mut notify = 0;
    loop {
        let collected = interrupt(server);
        notify |= collected.notify;
        if !collected.pending {
            return notify;
        }
    }
}

/// Counts the story's checks.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    /// A check of `who`'s (`who: what`).
    fn check(
        &mut self,
        who: &str,
        what: impl core::fmt::Display,
        result: Result<(), &'static str>,
    ) {
        match result {
            Ok(()) => {
                self.passed += 1;
                say!("ok - {who}: {what}\n");
            }
            Err(e) => {
                self.failed += 1;
                say!("FAILED - {who}: {what}: {e}\n");
            }
        }
    }
}

/// The device of a client: stream ID bus << 8 | devfn, BAR0 in the
/// 32-bit window at the client's slot (as system.xml's `*_bar` regions).
/// Each handle exists once: a second call for the same client is `None`.
fn device_of(client_index: usize) -> Option<(PciFunction<Mmio>, Mmio, u32)> {
    let sid = CLIENTS[client_index].devices[0].stream_id;
    Some((
        PciFunction(platform::config_page(sid.0 as u8)?),
        platform::bar(client_index)?,
        platform::bar_base(client_index) as u32,
    ))
}

fn main() -> u32 {
    say!("iommu demo: the IOMMU server core and the edu drivers in one bare-metal image on QEMU's SMMUv3\n");
    say!("iommu demo: running WITHOUT seL4 isolation (no Microkit SDK): every part shares one address space\n");
    let mut tally = Tally::default();
    match run(&mut tally) {
        Ok(()) => {}
        Err(e) => {
            tally.failed += 1;
            say!("FAILED - demo: {e}\n");
        }
    }
    let (size, used) = platform::stack_use();
    say!(
        "demo: stack high-water mark {} KiB of {} KiB\n",
        used.div_ceil(1024),
        size / 1024
    );
    say!("demo: {} passed, {} failed\n", tally.passed, tally.failed);
    tally.failed
}

fn run(tally: &mut Tally) -> Result<(), &'static str> {
    let mut mem = memory::take().ok_or("memory taken twice")?;
    // Place every client's DMA region; the setvar symbols get their
    // addresses, as the Microkit tool would patch them into the server.
    let mut symbols = [0u64; SERVER_SYMBOLS.len()];
    let mut pinned = memory::pinned().ok_or("pinned memory taken twice")?;
    let mut regions: [[Option<DmaRegion>; MAX_REGIONS]; CLIENTS.len()] =
        [const { [const { None }; MAX_REGIONS] }; CLIENTS.len()];
    for (i, c) in CLIENTS.iter().enumerate() {
        for (k, r) in c.regions.iter().enumerate() {
            let region = match r.paddr {
                Paddr::Symbol(s) => {
                    let region = mem
                        .client
                        .carve(r.size as usize, 0x1000)
                        .ok_or("client memory too small for the configured regions")?;
                    symbols[s] = region.pa();
                    region
                }
                Paddr::Fixed(p) => pinned
                    .region(p, r.size)
                    .ok_or("a pinned DMA region outside the demo's window")?,
            };
            *regions[i]
                .get_mut(k)
                .ok_or("more DMA regions in a client than the demo holds")? = Some(region);
        }
    }
    let statics = static_drivers(&mut mem.client, &mut pinned, &mut symbols)?;
    let configs = CONFIGS
        .init(client_configs(mem.regions, |s| symbols[s]))
        .ok_or("configured twice")?;
    let spaces: &'static [StaticSpace] = SPACES
        .init(static_spaces(mem.iomaps, |s| symbols[s]))
        .ok_or("configured twice")?;

    let mut streams = [StreamId(0); TOTAL_DEVICES + STATIC_SPACES.len()];
    for (slot, sid) in streams.iter_mut().zip(
        CLIENTS
            .iter()
            .flat_map(|c| c.devices)
            .map(|d| d.stream_id)
            .chain(STATIC_SPACES.iter().map(|s| s.stream_id)),
    ) {
        *slot = sid;
    }
    let regs = platform::smmu_regs().ok_or("SMMU registers taken twice")?;
    let smmu =
        Smmu::init(regs, mem.smmu, SmmuConfig::DEFAULT, &streams).map_err(|_| "SMMUv3 bring-up")?;
    let smmu = SMMU.init(smmu).ok_or("SMMU brought up twice")?;
    let coherent = smmu.features().coherent;
    let cleaner: &'static dyn CacheClean = if coherent { &COHERENT } else { &NON_COHERENT };
    let pool = TablePool::new(mem.table_pages, cleaner);
    let hw = SmmuDomains::new(smmu, pool);
    let (store, ioases, clients) = mem.server.split();
    let mut server = Server::new(store, ioases, hw, clients, configs).map_err(|e| {
        say!("server: configuration refused: {e}\n");
        "configuration refused"
    })?;
    // Before its io address space exists, a static driver's DMA meets the
    // default deny (its stream's STE is invalid), as it would without the
    // element.
    if let Some(d) = statics.first() {
        default_deny(tally, d);
    }
    establish(&mut server, spaces)?;
    let server = RefCell::new(server);
    // What the server says of the stopped DMA, now that it looks.
    take_faults(&server);
    server.borrow_mut().take_static_faults();
    say!(
        "server: SMMUv3 up (coherent {coherent}), {} clients from system.xml + iommu.xml\n",
        CLIENTS.len()
    );
    // The edu drivers are the clients running edu_driver.elf with a device
    // and a DMA region; the first is crashed and restarted by the
    // supervisor (the manager), the last is reset by it.
    let drivers = || {
        CLIENTS
            .iter()
            .enumerate()
            .filter(|(_, c)| c.runs(edu_driver::IMAGE))
            .map(|(i, _)| i)
    };
    let (
        Some(Roles {
            crashes: first,
            reset: target,
        }),
        Some(m),
    ) = (Roles::of(drivers()), CLIENTS.iter().position(|c| c.manager))
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
    let pages: &[RefCell<[u8; COMMAND_PAGE]>; CLIENTS.len()] =
        COMMAND_PAGES.take().ok_or("command pages taken twice")?;
    let iommu = |client: usize| {
        Iommu::new(Direct {
            server: &server,
            client: ClientId::from_index(client).expect("a client index"),
            page: &pages[client],
        })
    };
    let mut iommus: [_; CLIENTS.len()] = core::array::from_fn(iommu);
    // Every DMA region as its client sees it.
    let all: [[Option<DmaBuffer<RegionMemory>>; MAX_REGIONS]; CLIENTS.len()] =
        core::array::from_fn(|i| {
            core::array::from_fn(|k| {
                let r = CLIENTS[i].regions.get(k)?;
                Some(DmaBuffer::new(
                    r.vaddr,
                    r.size,
                    RegionMemory(regions[i][k].take()?),
                ))
            })
        });
    let bufs: [Option<&DmaBuffer<RegionMemory>>; CLIENTS.len()] =
        core::array::from_fn(|i| all[i][0].as_ref());
    let mut edus: [Option<Edu<Mmio>>; CLIENTS.len()] = [const { None }; CLIENTS.len()];
    let mut sessions: [Option<Session<'_>>; CLIENTS.len()] = [const { None }; CLIENTS.len()];
    // A driver's fault queue, after the server has taken the SMMU's events:
    // only the driver's own DMA may have notified it.
    let own_fault = |i: usize| {
        let server = &server;
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
        let (cfg, regs, bar) = device_of(i).ok_or("device handed out twice")?;
        let edu = Edu(regs);
        let found = if cfg.ids() == Some((edu_driver::VENDOR, edu_driver::DEVICE)) {
            cfg.enable(bar);
            if edu.id() == edu_driver::ID {
                let _ = writeln!(
                    out,
                    "edu at stream {:#x}, BAR0 {bar:#x}",
                    CLIENTS[i].devices[0].stream_id.0
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
        let session = edu_driver::setup(&mut iommus[i], &edu, buf, &mut out)?;
        tally.check(
            name,
            "DMA through its mappings",
            edu_driver::round_trip(&session, &edu, buf, 7 + i as u8, &mut out),
        );
        tally.check(
            name,
            "stray DMA faulted and reported to it alone",
            edu_driver::stray_dma(&mut iommus[i], &session, &edu, buf, &mut out, own_fault(i)),
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
        it.bind(foreign_device),
        it.call(&mut foreign_map, 0),
        it.reset(first as u64),
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
        .map_err(|_| "DUMP refused");
    tally.check("manager", Join(&["dumps ", tname, "'s state"]), dumped);
    tally.check(
        "manager",
        Join(&["resets ", tname]),
        iommus[m]
            .reset(target as u64)
            .map_err(|_| "RESET_CLIENT refused"),
    );
    say!("manager: reset {tname}: its streams quarantined, its objects torn down\n");
    let mut out = Prefix(tname, true);
    let (Some(session), Some(edu), Some(buf)) = (&sessions[target], &edus[target], bufs[target])
    else {
        return Err("the target never set up");
    };
    let stopped = edu_driver::after_reset(
        &mut iommus[target],
        session,
        edu,
        buf,
        &mut out,
        notified_fault(&server, target),
    );
    tally.check(tname, "device can no longer reach memory", stopped);
    tally.check(tname, "resources all returned", returned(&server, target));
    // The first driver crashes in the middle of a DMA. Its supervisor, told
    // of the fault (here a call stands in for seL4's fault message), resets
    // it, so the transfer in flight reaches nothing, and restarts it.
    let pools_before = server_report(&mut iommus[m], page_va).map_err(|_| "DUMP refused")?;
    let mut out = Prefix(fname, true);
    let (Some(edu), Some(buf)) = (&edus[first], bufs[first]) else {
        return Err("the first driver never set up");
    };
    // The crashed life's state is gone with it.
    let session = sessions[first].take().ok_or("no session")?;
    edu_driver::start_dma_and_crash(&session, edu, buf, &mut out)?;
    say!("supervisor: {fname} faulted (simulated): resetting it and restarting it\n");
    tally.check(
        "supervisor",
        Join(&["revokes ", fname, "'s DMA when it dies"]),
        iommus[m]
            .reset(first as u64)
            .map_err(|_| "RESET_CLIENT refused"),
    );
    tally.check(fname, "resources all returned", returned(&server, first));
    iommus[first] = iommu(first);
    let restarted = edu_driver::after_restart(
        &mut iommus[first],
        edu,
        buf,
        &mut out,
        notified_fault(&server, first),
    )
    .and_then(|()| edu_driver::setup(&mut iommus[first], edu, buf, &mut out))
    .and_then(|session| {
        edu_driver::round_trip(&session, edu, buf, 21, &mut out)?;
        sessions[first] = Some(session);
        Ok(())
    });
    tally.check(
        fname,
        "restarted: binds, maps and does DMA again",
        restarted,
    );
    let pools_after = server_report(&mut iommus[m], page_va).map_err(|_| "DUMP refused")?;
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
        let works = edu_driver::round_trip(session, edu, buf, 13, &mut out);
        tally.check(CLIENTS[i].pd, "still works at the end", works);
    }
    // The server nested in its clients, as far as the edu story: what
    // tests/demo.rs holds against the server PD's stack.
    let (_, used) = platform::stack_use();
    say!(
        "demo: stack high-water mark through the edu story {} KiB\n",
        used.div_ceil(1024)
    );

    storm_story(
        tally,
        &server,
        &mut iommus,
        &edus,
        &sessions,
        Roles {
            crashes: first,
            reset: target,
        },
    )?;

    // The NVMe drivers and their block clients.
    for i in (0..CLIENTS.len()).filter(|&i| CLIENTS[i].runs(NVME_IMAGE)) {
        let (supervisor, _) = iommus[m..].split_first_mut().ok_or("no supervisor")?;
        nvme_story(
            tally,
            &server,
            i,
            &all[i],
            &mut mem.client,
            supervisor,
            &pages[i],
        )?;
    }

    // The drivers that never call the server.
    static_story(tally, &server, &mut iommus[m], statics);

    // A guest's passed-through device, its VMM a client.
    guest::story(tally, &server, &mut iommus, &all)
}

/// The static IO address spaces, built before anything is served.
#[inline(never)]
fn establish(
    server: &mut Server<'static, Hw>,
    spaces: &'static [StaticSpace],
) -> Result<(), &'static str> {
    server.establish(spaces).map_err(|e| {
        say!("server: static IO address spaces refused: {e}\n");
        "static spaces refused"
    })?;
    for s in &STATIC_SPACES {
        say!(
            "server: static IO address space {} (peripheral {}, stream {:#x}, domain_id {}): {} iomaps, {} table pages, attached\n",
            s.name,
            s.peripheral,
            s.stream_id.0,
            s.domain_id,
            s.iomaps.len(),
            s.table_pages
        );
    }
    Ok(())
}

/// Before its io address space exists, a static driver's DMA reaches
/// nothing.
#[inline(never)]
fn default_deny(tally: &mut Tally, d: &StaticDriver) {
    let r = edu_device::sddf::stopped(
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
struct StaticDriver {
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

impl edu_device::sddf::Buffer for StaticRegion {
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
static STATIC_DRIVERS: StaticCell<heapless_drivers::Drivers> = StaticCell::new();

/// Each static space's driver (the PD mapping its region as its
/// `dma_buffer`): its region placed like the clients' when the server
/// learns it by setvar (`symbols`), at its phys_addr when system.xml pins
/// it; its device found and given its BAR (the window after the
/// clients').
#[inline(never)]
fn static_drivers(
    spare: &mut DmaRegion,
    pinned: &mut memory::Pinned,
    symbols: &mut [u64; SERVER_SYMBOLS.len()],
) -> Result<&'static heapless_drivers::Drivers, &'static str> {
    let out = STATIC_DRIVERS
        .init(heapless_drivers::Drivers::new())
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
        let slot = CLIENTS.len() + i;
        let cfg = PciFunction(
            platform::config_page(s.stream_id.0 as u8).ok_or("device handed out twice")?,
        );
        let regs = platform::bar(slot).ok_or("no BAR window left")?;
        if cfg.ids() != Some((edu_driver::VENDOR, edu_driver::DEVICE)) {
            return Err("no edu device at a static space's peripheral");
        }
        cfg.enable(platform::bar_base(slot) as u32);
        let paddr = region.pa();
        out.push(StaticDriver {
            name,
            space: i,
            edu: Edu(regs),
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
mod heapless_drivers {
    pub struct Drivers {
        items: [Option<super::StaticDriver>; 4],
        len: usize,
    }

    impl Drivers {
        pub fn new() -> Drivers {
            Drivers {
                items: [const { None }; 4],
                len: 0,
            }
        }

        pub fn push(&mut self, d: super::StaticDriver) -> Result<(), ()> {
            *self.items.get_mut(self.len).ok_or(())? = Some(d);
            self.len += 1;
            Ok(())
        }

        pub fn first(&self) -> Option<&super::StaticDriver> {
            self.items[0].as_ref()
        }

        pub fn iter(&self) -> impl Iterator<Item = &super::StaticDriver> {
            self.items.iter().flatten()
        }
    }
}

/// The drivers under static spaces: DMA works with no server call; DMA
/// outside the iomaps reaches nothing, is logged, and reaches the fault PD
/// the description names (the driver, or the manager); the manager holds
/// a static device in quarantine and releases it.
#[inline(never)]
fn static_story(
    tally: &mut Tally,
    server: Shared<'_>,
    manager: &mut Iommu<Direct<'_>>,
    drivers: &heapless_drivers::Drivers,
) {
    use edu_device::sddf;
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
            sddf::round_trip(&d.edu, &d.region, d.device_address, 7, &mut out),
        );
        let stray = if d.device_address == d.paddr {
            d.paddr + d.size
        } else {
            d.paddr
        };
        tally.check(
            d.name,
            "DMA outside my iomaps reaches nothing",
            sddf::stray(&d.edu, &d.region, stray, 0x5a, &mut out),
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
        let held = manager
            .hold_static(d.space as u64)
            .map_err(|_| "QUARANTINE refused");
        tally.check(
            "manager",
            Join(&["holds ", spec.name, ": its stream aborts"]),
            held,
        );
        tally.check(
            d.name,
            "held by the manager: my device reaches nothing",
            sddf::stopped(&d.edu, &d.region, d.device_address, &mut out),
        );
        take_faults(server);
        server.borrow_mut().take_static_faults();
        let released = manager
            .release_static(d.space as u64)
            .map_err(|_| "QUARANTINE refused");
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
            sddf::round_trip(&d.edu, &d.region, d.device_address, 9, &mut out),
        );
        if iommu_system::CHILDREN
            .iter()
            .any(|&(_, _, pd)| pd == d.name)
        {
            static_restart(tally, server, manager, d, &mut out);
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
fn static_restart(
    tally: &mut Tally,
    server: Shared<'_>,
    manager: &mut Iommu<Direct<'_>>,
    d: &StaticDriver,
    out: &mut Prefix,
) {
    use edu_device::sddf;
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
        manager
            .hold_static(d.space as u64)
            .map_err(|_| "QUARANTINE refused"),
    );
    tally.check(
        d.name,
        "restarted: my space held across the restart, my device reaches nothing",
        sddf::stopped(&d.edu, &d.region, d.device_address, out),
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
        manager
            .release_static(d.space as u64)
            .map_err(|_| "QUARANTINE refused"),
    );
    tally.check(
        d.name,
        "restarted under my static IO address space: DMA works, no server call",
        sddf::round_trip(&d.edu, &d.region, d.device_address, 11, out),
    );
}

/// The transfer after which the other driver's device strays.
const STRAY_DURING: u32 = 3;

/// A fault storm contained: the reset driver's device, which has no
/// translation left, DMAs without end and faults on every beat; the
/// server stops its records after its budget, and the other driver's
/// single stray DMA in the middle of it reaches that driver exactly, no
/// record lost.
fn storm_story(
    tally: &mut Tally,
    server: Shared<'_>,
    iommus: &mut [Iommu<Direct<'_>>],
    edus: &[Option<Edu<Mmio>>],
    sessions: &[Option<Session<'_>>],
    roles: Roles,
) -> Result<(), &'static str> {
    let (storming, stray) = (roles.reset, roles.crashes);
    let (sname, bname) = (CLIENTS[storming].pd, CLIENTS[stray].pd);
    let (Some(storm_edu), Some(stray_edu), Some(old), Some(session)) = (
        &edus[storming],
        &edus[stray],
        &sessions[storming],
        &sessions[stray],
    ) else {
        return Err("the storm needs both drivers' devices");
    };
    // Earlier floods stopped both devices' records: each driver drains its
    // queue and asks for them again.
    for i in [storming, stray] {
        tally.check(
            CLIENTS[i].pd,
            "drains its faults and has its device's faults recorded",
            edu_driver::record_again(&mut iommus[i]),
        );
    }

    let overflows = server.borrow().hardware().event_overflows();
    let (mut interrupts, mut most) = (0u32, 0usize);
    let mut stray_iova = None;
    let mut run_server = |interrupts: &mut u32| {
        let c = interrupt(server);
        *interrupts += 1;
        most = most.max(c.handled);
    };
    let stormed = edu_driver::storm(storm_edu, old.dst.iova(), |transfer| {
        if transfer == STRAY_DURING {
            stray_iova = Some(edu_driver::lone_stray(session, stray_edu)?);
        }
        // The server runs once between transfers: one interrupt's batch.
        run_server(&mut interrupts);
        Ok(())
    });
    while server.borrow().backlog() {
        run_server(&mut interrupts);
    }
    stormed?;
    say!(
        "demo: {sname}'s device made {} faulting transfers of {} bytes, {bname}'s one stray DMA of 4 bytes in between; the server took {interrupts} interrupts, at most {most} records each\n",
        edu_driver::STORM_TRANSFERS,
        edu_driver::STORM_BYTES
    );
    let stray_iova = stray_iova.ok_or("no stray DMA")?;
    tally.check(
        bname,
        Join(&[
            "its one stray DMA during ",
            sname,
            "'s storm is reported to it exactly, nothing lost",
        ]),
        edu_driver::exactly_the_stray(&mut iommus[stray], stray_iova, 1, &mut Prefix(bname, true)),
    );
    tally.check(
        sname,
        "told it is storming: its records stopped after its budget, its drops counted",
        edu_driver::told_storming(
            &mut iommus[storming],
            u64::from(iommu_proto::fault::IOMMU_FAULT_STORM_BUDGET),
            &mut Prefix(sname, true),
        ),
    );
    tally.check(
        "server",
        Join(&[
            "the storm cost at most ",
            EVENTS_PER_INTERRUPT_TEXT,
            " records per interrupt and the event queue never overflowed",
        ]),
        if most <= EVENTS_PER_INTERRUPT && server.borrow().hardware().event_overflows() == overflows
        {
            Ok(())
        } else {
            Err("an interrupt did more, or the queue overflowed")
        },
    );
    Ok(())
}

/// [`EVENTS_PER_INTERRUPT`] as the story says it.
const EVENTS_PER_INTERRUPT_TEXT: &str = "64";
const _: () = assert!(EVENTS_PER_INTERRUPT == 64);

/// The NVMe driver's program image: the clients running it drive NVMe
/// controllers for block clients.
const NVME_IMAGE: &str = "nvme_driver.elf";
/// QEMU's nvme: vendor and device.
const NVME_IDS: (u16, u16) = (0x1b36, 0x0010);
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
    server: Shared<'_>,
    i: usize,
    regions: &[Option<DmaBuffer<RegionMemory>>; MAX_REGIONS],
    spare: &mut DmaRegion,
    supervisor: &mut Iommu<Direct<'_>>,
    page: &RefCell<[u8; COMMAND_PAGE]>,
) -> Result<(), &'static str> {
    let spec = &CLIENTS[i];
    let name = spec.pd;
    let mut out = Prefix(name, true);
    let (cfg, regs, bar) = device_of(i).ok_or("device handed out twice")?;
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
    let start = || {
        let iommu = Iommu::new(Direct {
            server,
            client,
            page,
        });
        BlockDriver::start(iommu, Regs(regs), queues)
    };
    let mut driver = match start() {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "bring-up failed: {e:?}");
            tally.check(
                name,
                "brings its NVMe controller up",
                Err("bring-up failed"),
            );
            return Ok(());
        }
    };
    let _ = driver.describe(&mut out);
    let _ = writeln!(out, ", BAR0 {bar:#x}");
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
                .map_err(|_| "the driver refused a block client")?;
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
    for _ in 0..4 * blk_driver::story::MAX_WAITS {
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
                    .map_err(|_| "RESET_CLIENT refused"),
            );
            tally.check(name, "resources all returned", returned(server, i));
            driver = start().map_err(|_| "the restarted driver did not come up")?;
            // What its previous life's stopped commands left in its fault
            // queue, read before anything new can fault.
            take_faults(server);
            let mut left = 0;
            while let Ok(r) = driver.iommu.read_fault() {
                left += u32::from(r.fault.is_some());
                if r.remaining == 0 {
                    break;
                }
            }
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
    let notified = take_faults(server);
    let fault = if notified & (1 << i) != 0 {
        driver.iommu.read_fault().ok().and_then(|r| r.fault)
    } else {
        None
    };
    while driver.iommu.read_fault().is_ok_and(|r| r.remaining > 0) {}
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
        let mut story = Story::new(blk_driver::story::second_story(first.share.clone()));
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

/// A driver's fault once the server has notified it, whoever else it
/// notified (a flood overflowing the SMMU's queue tells every owner).
fn notified_fault<'a>(
    server: Shared<'a>,
    client: usize,
) -> impl FnMut(&mut Iommu<Direct<'a>>) -> Option<iommu_client::Fault> + 'a {
    move |iommu| {
        if take_faults(server) & (1 << client) == 0 {
            return None;
        }
        iommu.read_fault().ok().and_then(|r| r.fault)
    }
}

/// Whether a reset client holds nothing: no object, no page charged.
fn returned(server: Shared<'_>, client: usize) -> Result<(), &'static str> {
    let s = server.borrow();
    let id = ClientId(client as u16);
    if s.object_count(id) == 0 && s.store().account(id).is_some_and(|acc| acc.used == 0) {
        Ok(())
    } else {
        Err("objects or pages left after the reset")
    }
}

/// Pieces of a message written one after another.
struct Join<'a>(&'a [&'a str]);

impl core::fmt::Display for Join<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|p| f.write_str(p))
    }
}

/// Console output with each line prefixed by the speaking client.
struct Prefix(&'static str, bool);

impl Write for Prefix {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if core::mem::replace(&mut self.1, c == '\n') {
                write!(Uart, "{}: ", self.0)?;
            }
            Uart.write_char(c)?;
        }
        Ok(())
    }
}
