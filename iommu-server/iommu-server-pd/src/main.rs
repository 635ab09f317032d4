//! The IOMMU server PD: owns the SMMUv3 and every IO page table, and
//! serves its clients' protected calls with the `iommu-server` core. A
//! client is the channel its call arrives on; its request is copied out
//! of its command page once, handled, and the page written back once.
//! SMMU event interrupts become fault records queued with the client that
//! owns the stream, which is then notified.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod platform;

use core::fmt::Write;

use hw::domains::SmmuDomains;
use hw::pgtable::TablePool;
use hw::smmu::{Smmu, SmmuConfig};
use iommu_server::{Drained, LogLine, LogRuns, Server};
use iommu_system::{
    client_configs, client_on, static_spaces, ClientConfig, StaticSpace, StreamId, CLIENTS, SERVER,
    STATIC_SPACES, TOTAL_DEVICES,
};
use microkit::{Channel, DebugOut, Handler, MessageInfo, SharedMemory};
use mmio::{CacheClean, Coherent, DcacheClean, DmaMemory, DmaRegion, Mmio, StaticCell};

include!(concat!(env!("OUT_DIR"), "/setvars.rs"));

static COHERENT: Coherent = Coherent;
static NON_COHERENT: DcacheClean = DcacheClean;

type Hw = SmmuDomains<'static, Mmio>;

// Built in place at start, outside the stack: the server holds
// references, so neither init nor serving carries them in a frame.
static SMMU: StaticCell<Smmu<Mmio>> = StaticCell::new();
static HW: StaticCell<Hw> = StaticCell::new();
static CONFIGS: StaticCell<[ClientConfig; CLIENTS.len()]> = StaticCell::new();
static SPACES: StaticCell<[StaticSpace; STATIC_SPACES.len()]> = StaticCell::new();

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = write!(DebugOut, "iommu_server: "); let _ = writeln!(DebugOut, $($arg)*); }};
}

struct IommuServer {
    server: Server<'static, &'static mut Hw>,
    pages: [SharedMemory; CLIENTS.len()],
    /// The deepest stack use reported so far.
    stack_reported: usize,
}

impl IommuServer {
    /// Says how deep the stack has been, each time that grew by a KiB.
    /// Debug kernels only: it scans the unused stack from its bottom.
    fn report_stack(&mut self) {
        if !microkit::DEBUG {
            return;
        }
        let used = microkit::stack_high_water(SERVER.stack_size as usize);
        if used >= self.stack_reported + 1024 {
            self.stack_reported = used;
            say!(
                "stack high-water mark while serving {} KiB of {} KiB",
                used.div_ceil(1024),
                SERVER.stack_size / 1024
            );
        }
    }
}

fn init() -> IommuServer {
    microkit::paint_stack(SERVER.stack_size as usize);
    let p = platform::take(|i| SERVER_SETVARS[i].get()).expect("platform taken once");

    let configs = client_configs(p.regions, |i| SERVER_SETVARS[i].get());
    let configs = CONFIGS.init(configs).expect("configured once");
    let spaces = static_spaces(p.iomaps, |i| SERVER_SETVARS[i].get());
    let spaces: &'static [StaticSpace] = SPACES.init(spaces).expect("configured once");

    let hw = domains(smmu(p.smmu_regs, p.smmu_memory), p.table_pages);
    start(hw);

    let coherent = hw.features().coherent;
    let (store, ioases, clients) = p.storage.split();
    let server = Server::new(store, ioases, hw, clients, configs).unwrap_or_else(|e| {
        // Logged as the server's own line; the server cannot serve.
        match e.client().and_then(|c| CLIENTS.get(c.index())) {
            Some(c) => say!("configuration refused: {e} ({})", c.pd),
            None => say!("configuration refused: {e}"),
        }
        panic!("configuration refused")
    });

    // The static IO address spaces, before anything is served: their
    // drivers never call, so their devices are confined from the start.
    let mut server = server;
    if let Err(e) = server.establish(spaces) {
        say!("static IO address spaces refused: {e}");
        panic!("configuration refused")
    }
    for s in &STATIC_SPACES {
        say!(
            "static IO address space {} (peripheral {}, stream {:#x}, domain_id {}): {} iomaps, {} table pages, attached",
            s.name,
            s.peripheral,
            s.stream_id.0,
            s.domain_id,
            s.iomaps.len(),
            s.table_pages
        );
    }
    say!(
        "SMMUv3 up (coherent {coherent}); serving {} clients",
        CLIENTS.len()
    );
    if microkit::DEBUG {
        // Init's mark, then a fresh coat: serving is measured on its own.
        let used = microkit::stack_high_water(SERVER.stack_size as usize);
        say!(
            "stack used by init {} KiB of {} KiB",
            used.div_ceil(1024),
            SERVER.stack_size / 1024
        );
        microkit::paint_stack(SERVER.stack_size as usize);
    }
    IommuServer {
        server,
        pages: p.command_pages,
        stack_reported: 0,
    }
}

// Bring-up in three frames of their own, side by side under `init`: the
// SMMU's state and the domains' are each built in one and moved into its
// static, so init's deepest point is one of them, not their sum.

/// Lays the SMMU's queues and tables out in `memory`, in its static.
#[inline(never)]
fn smmu(regs: Mmio, memory: DmaRegion) -> &'static mut Smmu<Mmio> {
    match Smmu::new(regs, memory, SmmuConfig::DEFAULT) {
        Ok(smmu) => SMMU.init(smmu).expect("SMMU laid out once"),
        Err(e) => panic!("SMMUv3 probe: {e}"),
    }
}

/// The domains over the SMMU and the page-table pool, in their static.
#[inline(never)]
fn domains(
    smmu: &'static mut Smmu<Mmio>,
    tables: DmaMemory<'static, hw::pgtable::TablePage>,
) -> &'static mut Hw {
    let cleaner: &'static dyn CacheClean = if smmu.features().coherent {
        &COHERENT
    } else {
        &NON_COHERENT
    };
    let pool = TablePool::new(tables, cleaner);
    HW.init(SmmuDomains::new(smmu, pool))
        .expect("domains built once")
}

/// Enables the SMMU with every configured stream prepared (aborting).
#[inline(never)]
fn start(hw: &mut Hw) {
    let mut streams = [StreamId(0); TOTAL_DEVICES + STATIC_SPACES.len()];
    let mut n = 0;
    for (c, spec) in CLIENTS.iter().enumerate() {
        for (d, device) in spec.devices.iter().enumerate() {
            if let Some(present) = platform::device_present(c, d) {
                say!(
                    "{}: device {} at stream {:#x}: {}",
                    spec.pd,
                    device.name,
                    device.stream_id.0,
                    if present { "present" } else { "absent" }
                );
            }
            streams[n] = device.stream_id;
            n += 1;
        }
    }
    for s in &STATIC_SPACES {
        streams[n] = s.stream_id;
        n += 1;
    }
    hw.smmu()
        .start(&streams[..n])
        .unwrap_or_else(|e| panic!("SMMUv3 bring-up: {e}"));
}

impl Handler for IommuServer {
    fn protected(&mut self, channel: Channel, msg: MessageInfo) -> MessageInfo {
        let Some(client) = client_on(channel) else {
            return MessageInfo::new(
                iommu_server::Reply::error(iommu_server::Errno::EPERM).label,
                0,
            );
        };
        let mrs = [microkit::get_mr(0), microkit::get_mr(1)];
        let reply = self
            .server
            .serve(client, msg.label(), mrs, &self.pages[client.index()]);
        microkit::set_mr(0, reply.mr0);
        // Records the last interrupt left: the next batch, each time the
        // server runs, so no interrupt costs more than one.
        if self.server.backlog() {
            self.take_faults();
        }
        self.report_stack();
        MessageInfo::new(reply.label, 1)
    }

    fn notified(&mut self, channel: Channel) {
        if channel != SERVER.event_irq && channel != SERVER.gerror_irq {
            return;
        }
        self.take_faults();
        microkit::irq_ack(channel);
    }
}

impl IommuServer {
    /// One interrupt's work: at most EVENTS_PER_INTERRUPT event records
    /// queued with their clients, who are notified.
    fn take_faults(&mut self) {
        // A burst of one device's records is said as one line.
        let mut runs = LogRuns::new();
        let say = &mut |line: LogLine| say!("{line}");
        let collected = self.server.collect_faults(
            |hw, max, report| {
                let status = hw.drain_faults(max, report);
                Drained {
                    lost: status.overflowed,
                    global_errors: hw.smmu().take_global_errors(),
                    pending: status.pending,
                }
            },
            &mut |event| runs.push(event, say),
        );
        runs.flush(say);
        for (i, c) in CLIENTS.iter().enumerate() {
            if collected.notify & (1 << i) != 0 {
                microkit::notify(c.server_channel);
            }
        }
        let statics = self.server.take_static_faults();
        for (i, s) in STATIC_SPACES.iter().enumerate() {
            if let (true, Some(ch)) = (statics & (1 << i) != 0, s.fault_channel) {
                microkit::notify(ch);
            }
        }
    }
}

microkit::declare_pd!(init);
