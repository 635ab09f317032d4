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

mod memory;

use core::cell::RefCell;
use core::fmt::Write;

use edu_driver::{Edu, PciFunction};
use hw::domains::SmmuDomains;
use hw::pgtable::TablePool;
use hw::smmu::{Smmu, SmmuConfig};
use iommu_client::{DmaBuffer, Iommu, Memory, Transport};
use iommu_proto::Errno;
use iommu_server::{Drained, Server, COMMAND_PAGE};
use iommu_system::{
    client, client_configs, resolve, ClientConfig, ClientId, Paddr, StreamId, CLIENTS,
    SERVER_SYMBOLS,
};
use mmio::{CacheClean, Coherent, DcacheClean, DmaRegion, Mmio, StaticCell};
use qemu_virt::platform::{self, Uart};

qemu_virt::image_main!(main);

static COHERENT: Coherent = Coherent;
static NON_COHERENT: DcacheClean = DcacheClean;

type Hw = SmmuDomains<'static, Mmio>;

// As in the server PD: the SMMU's state and the configurations live in
// statics the server borrows.
static SMMU: StaticCell<Smmu<Mmio>> = StaticCell::new();
static CONFIGS: StaticCell<[ClientConfig; CLIENTS.len()]> = StaticCell::new();
type Shared<'a> = &'a RefCell<Server<'static, Hw>>;

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = write!(Uart, $($arg)*); }};
}

/// A client's calls, arriving as from its channel.
struct Direct<'a> {
    server: Shared<'a>,
    client: ClientId,
    page: RefCell<[u8; COMMAND_PAGE]>,
}

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
            .serve(self.client, label, mrs, &self.page);
        (reply.label, reply.mr0)
    }
}

/// A client's DMA region in the shared physical memory.
struct RegionMemory(DmaRegion);

impl Memory for RegionMemory {
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

/// The SMMU's pending events, queued with their clients (the interrupt
/// handler's work in the PD).
fn take_faults(server: Shared<'_>) -> u64 {
    server.borrow_mut().collect_faults(
        |hw, report| {
            let status = hw.drain_faults(report);
            Drained {
                lost: status.overflowed,
                global_errors: hw.smmu().take_global_errors(),
            }
        },
        &mut |event| say!("server: {event}\n"),
    )
}

/// Counts the story's checks.
#[derive(Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check(&mut self, what: &str, result: Result<(), &'static str>) -> bool {
        match result {
            Ok(()) => {
                self.passed += 1;
                say!("ok - {what}\n");
                true
            }
            Err(e) => {
                self.failed += 1;
                say!("FAILED - {what}: {e}\n");
                false
            }
        }
    }
}

/// The device of a client: stream ID bus << 8 | devfn, BAR0 in the
/// 32-bit window at the client's slot (as system.xml's `*_bar` regions).
/// Each handle exists once: a second call for the same client is `None`.
fn device_of(client_index: usize) -> Option<(PciFunction<Mmio>, Edu<Mmio>, u32)> {
    let sid = CLIENTS[client_index].devices[0].stream_id;
    Some((
        PciFunction(platform::config_page(sid.0 as u8)?),
        Edu(platform::bar(client_index)?),
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
            say!("FAILED - {e}\n");
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
    let mut buffers: [Option<DmaRegion>; CLIENTS.len()] = Default::default();
    for (i, c) in CLIENTS.iter().enumerate() {
        for (k, r) in c.regions.iter().enumerate() {
            let region = mem
                .client
                .carve(r.size as usize, 0x1000)
                .ok_or("client memory too small for the configured regions")?;
            match r.paddr {
                Paddr::Symbol(s) => symbols[s] = region.pa(),
                Paddr::Fixed(_) => return Err("the demo places DMA regions itself (no phys_addr)"),
            }
            if k == 0 {
                buffers[i] = Some(region);
            }
        }
    }
    let configs = CONFIGS
        .init(client_configs(mem.regions, |s| symbols[s]))
        .ok_or("configured twice")?;

    let streams: [StreamId; 2] = [
        CLIENTS[0].devices[0].stream_id,
        CLIENTS[1].devices[0].stream_id,
    ];
    let regs = platform::smmu_regs().ok_or("SMMU registers taken twice")?;
    let smmu =
        Smmu::init(regs, mem.smmu, SmmuConfig::DEFAULT, &streams).map_err(|_| "SMMUv3 bring-up")?;
    let smmu = SMMU.init(smmu).ok_or("SMMU brought up twice")?;
    let coherent = smmu.features().coherent;
    let cleaner: &'static dyn CacheClean = if coherent { &COHERENT } else { &NON_COHERENT };
    let pool = TablePool::new(mem.table_pages, cleaner);
    let hw = SmmuDomains::new(smmu, pool);
    let (store, ioases, clients) = mem.server.split();
    let server =
        Server::new(store, ioases, hw, clients, configs).map_err(|_| "configuration refused")?;
    let server = RefCell::new(server);
    say!(
        "server: SMMUv3 up (coherent {coherent}), {} clients from system.xml + iommu.xml\n",
        CLIENTS.len()
    );

    let index = |pd: &str| CLIENTS.iter().position(|c| c.pd == pd);
    let (a, b, m) = match (
        index("edu_a"),
        index("edu_b"),
        client("manager").and_then(|c| index(c.pd)),
    ) {
        (Some(a), Some(b), Some(m)) => (a, b, m),
        _ => return Err("the system needs clients edu_a, edu_b and manager"),
    };
    let iommu = |client: usize| {
        Iommu::new(Direct {
            server: &server,
            client: ClientId::from_index(client).expect("a client index"),
            page: RefCell::new([0; COMMAND_PAGE]),
        })
    };
    let (mut ia, mut ib, mut im) = (iommu(a), iommu(b), iommu(m));
    let mut take = |i: usize| -> Result<DmaBuffer<RegionMemory>, &'static str> {
        let r = &CLIENTS[i].regions[0];
        let region = buffers[i].take().ok_or("client without a DMA region")?;
        Ok(DmaBuffer::new(r.vaddr, r.size, RegionMemory(region)))
    };
    let buf_a = take(a)?;
    let buf_b = take(b)?;

    // Each driver finds its device and gives it its BAR.
    let mut edus = [None, None];
    for (slot, (i, name)) in [(a, "edu_a"), (b, "edu_b")].into_iter().enumerate() {
        let (cfg, edu, bar) = device_of(i).ok_or("device handed out twice")?;
        tally.check(
            "driver finds its edu device in its configuration page",
            if cfg.ids() == Some((edu_driver::VENDOR, edu_driver::DEVICE)) {
                cfg.enable(bar);
                if edu.id() == edu_driver::ID {
                    say!(
                        "{name}: edu at stream {:#x}, BAR0 {bar:#x}\n",
                        CLIENTS[i].devices[0].stream_id.0
                    );
                    Ok(())
                } else {
                    Err("BAR0 does not answer")
                }
            } else {
                Err("no edu device there")
            },
        );
        edus[slot] = Some(edu);
    }
    let [Some(edu_a), Some(edu_b)] = edus else {
        return Err("no edu device");
    };

    // edu_a: map, DMA, verify, then a stray DMA is stopped and reported.
    let mut out = Prefix("edu_a", true);
    let session_a = edu_driver::setup(&mut ia, &edu_a, &buf_a, &mut out)?;
    tally.check(
        "edu_a: DMA through its mappings",
        edu_driver::round_trip(&session_a, &edu_a, &buf_a, 7, &mut out),
    );
    tally.check(
        "edu_a: stray DMA faulted and reported to edu_a alone",
        edu_driver::stray_dma(&mut ia, &session_a, &edu_a, &buf_a, &mut out, |iommu| {
            let notified = take_faults(&server);
            if notified & (1 << a) == 0 || notified & !(1 << a) != 0 {
                return None;
            }
            iommu.read_fault().ok().and_then(|r| r.fault)
        }),
    );

    // edu_b: isolated from edu_a; then the manager resets it.
    let mut out = Prefix("edu_b", true);
    let session_b = edu_driver::setup(&mut ib, &edu_b, &buf_b, &mut out)?;
    tally.check(
        "edu_b: DMA through its mappings",
        edu_driver::round_trip(&session_b, &edu_b, &buf_b, 9, &mut out),
    );
    // Everything edu_b names is relative to itself: it has no way to name
    // edu_a's device, memory or state.
    let mut foreign_map = iommu_proto::iommufd::iommu_ioas_map {
        size: core::mem::size_of::<iommu_proto::iommufd::iommu_ioas_map>() as u32,
        flags: iommu_proto::iommufd::IOMMU_IOAS_MAP_READABLE,
        ioas_id: session_b.ioas.id(),
        reserved: 0,
        user_va: resolve(CLIENTS[a].regions[0].paddr, |s| symbols[s]),
        length: 0x1000,
        iova: 0,
    };
    tally.check(
        "edu_b cannot bind edu_a's device, map edu_a's memory or reset edu_a",
        match (ib.bind(1), ib.call(&mut foreign_map, 0), ib.reset(a as u64)) {
            (Err(Errno::ENODEV), Err(Errno::EFAULT), Err(Errno::EPERM)) => Ok(()),
            _ => Err("a foreign device, memory or reset was accepted"),
        },
    );
    // What the server holds for edu_b, as the manager reads it.
    let mut report = Prefix("manager", true);
    let page_va = CLIENTS[m].command_page_client;
    tally.check(
        "manager dumps edu_b's state",
        im.dump(page_va, b as u32, |piece| {
            let _ = report.write_str(core::str::from_utf8(piece).unwrap_or("?\n"));
        })
        .map(|_| ())
        .map_err(|_| "DUMP refused"),
    );
    tally.check(
        "manager resets edu_b",
        im.reset(b as u64).map_err(|_| "RESET_CLIENT refused"),
    );
    say!("manager: reset edu_b: its streams quarantined, its objects torn down\n");
    let mut out = Prefix("edu_b", true);
    tally.check(
        "edu_b's device can no longer reach memory",
        edu_driver::after_reset(&mut ib, &session_b, &edu_b, &buf_b, &mut out, |iommu| {
            let notified = take_faults(&server);
            if notified & (1 << b) == 0 {
                return None;
            }
            iommu.read_fault().ok().and_then(|r| r.fault)
        }),
    );
    let s = server.borrow();
    tally.check(
        "edu_b's resources all returned",
        if s.object_count(ClientId(b as u16)) == 0
            && s.store()
                .account(ClientId(b as u16))
                .is_some_and(|acc| acc.used == 0)
        {
            Ok(())
        } else {
            Err("objects or pages left after the reset")
        },
    );
    drop(s);
    // edu_a is untouched by all of it.
    let mut out = Prefix("edu_a", true);
    tally.check(
        "edu_a still works after edu_b's reset",
        edu_driver::round_trip(&session_a, &edu_a, &buf_a, 13, &mut out),
    );
    Ok(())
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
