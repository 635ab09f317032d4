//! Bare-metal test image: drives QEMU's SMMUv3 model with the `hw` driver
//! and page tables while two `edu` devices do real DMA. Prints one line per
//! case, then `N passed, M failed`, and exits (semihosting) with the number
//! of failures.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod memory;

use qemu_virt::{pci, platform};

use core::fmt::Write;

use edu_device::Edu;
use hw::domains::SmmuDomains;
use hw::pgtable::{Format, IoPageTable, MemAttr, PtDomain, TablePool, MAIR};
use hw::smmu::event::{Access, Event, EventKind};
use hw::smmu::{ContextId, ContextTlb, EventStatus, Smmu, SmmuConfig, SmmuError};
use iommu_types::{ClientId, Prot, StreamId};
use iopt::{DstIova, Extent, IoDomain, Store};
use mmio::{CacheClean, Coherent, DcacheClean, DmaRegion, Mmio};

macro_rules! say {
    ($($arg:tt)*) => {{ let _ = write!(platform::Uart, $($arg)*); }};
}

const RW: Prot = Prot::READ.union(Prot::WRITE);
const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
/// Event queue of 2^7 records, so one faulting 2 KiB transfer overflows it.
const EVTQ_LOG2: u32 = 7;

// Offsets of the test pages inside the DMA memory (which is 2 MiB aligned).
const BLOCK: u64 = 0;
const P_SRC: u64 = M2;
const P_DST: u64 = M2 + K4;
const P_CANARY: u64 = M2 + 2 * K4;
const P_RO: u64 = M2 + 3 * K4;
const P_UNMAP: u64 = M2 + 4 * K4;
const P_A: u64 = M2 + 5 * K4;
const P_B: u64 = M2 + 6 * K4;

static COHERENT: Coherent = Coherent;
static NON_COHERENT: DcacheClean = DcacheClean;

struct Domain {
    pt: IoPageTable,
    ctx: ContextId,
}

/// The device-visible test memory, addressed by offset.
struct Mem(DmaRegion);

impl Mem {
    fn pa(&self, offset: u64) -> u64 {
        self.0.pa() + offset
    }

    fn zero(&self, offset: u64, len: u64) {
        for i in 0..len / 8 {
            self.0.write(((offset / 8) + i) as usize, 0);
        }
    }

    fn is_zero(&self, offset: u64, len: u64) -> bool {
        (0..len / 8).all(|i| self.0.read(((offset / 8) + i) as usize) == 0)
    }

    fn fill(&self, offset: u64, len: u64, seed: u64) {
        for i in 0..len / 8 {
            self.0.write(((offset / 8) + i) as usize, pattern(seed, i));
        }
    }

    fn holds(&self, offset: u64, len: u64, seed: u64) -> bool {
        (0..len / 8).all(|i| self.0.read(((offset / 8) + i) as usize) == pattern(seed, i))
    }
}

struct Rig {
    /// iopt storage for the last case.
    store: Option<Store<'static>>,
    smmu: Smmu<Mmio>,
    pool: TablePool<'static>,
    mem: Mem,
    edu: [Edu<Mmio>; 2],
    sid: [StreamId; 2],
    dom: [Option<Domain>; 2],
}

/// One test case: `Err` says what went wrong.
type Case = fn(&mut Rig) -> Result<(), &'static str>;

/// Collected events of one drain.
struct Events {
    status: EventStatus,
    first: Option<Event>,
    all_match: bool,
}

impl Rig {
    fn pa(&self, offset: u64) -> u64 {
        self.mem.pa(offset)
    }

    fn zero(&self, offset: u64, len: u64) {
        self.mem.zero(offset, len)
    }

    fn is_zero(&self, offset: u64, len: u64) -> bool {
        self.mem.is_zero(offset, len)
    }

    fn fill(&self, offset: u64, len: u64, seed: u64) {
        self.mem.fill(offset, len, seed)
    }

    fn holds(&self, offset: u64, len: u64, seed: u64) -> bool {
        self.mem.holds(offset, len, seed)
    }

    fn new_domain(&mut self, which: usize) -> Result<(), &'static str> {
        let format = Format {
            ias: self.smmu.features().ias,
            oas: self.smmu.features().oas,
            mem: MemAttr::WriteBack,
        };
        let pt = IoPageTable::new(&mut self.pool, format).map_err(|_| "page table")?;
        let ctx = self
            .smmu
            .alloc_context(pt.root_phys(), format.t0sz(), MAIR)
            .map_err(|_| "context")?;
        self.dom[which] = Some(Domain { pt, ctx });
        Ok(())
    }

    fn attach(&mut self, which: usize) -> Result<(), &'static str> {
        let ctx = self.dom[which].as_ref().ok_or("no domain")?.ctx;
        self.smmu.attach(self.sid[which], ctx).map_err(|_| "attach")
    }

    /// Runs `f` on domain `which` as an iopt domain flushed through its
    /// own context.
    fn with_domain<T>(
        &mut self,
        which: usize,
        f: impl FnOnce(&mut PtDomain<'_, 'static>) -> T,
    ) -> Result<T, &'static str> {
        let Rig {
            smmu, pool, dom, ..
        } = self;
        let d = dom[which].as_mut().ok_or("no domain")?;
        let mut tlb = ContextTlb::new(smmu, d.ctx);
        Ok(f(&mut PtDomain {
            pt: &mut d.pt,
            pool,
            tlb: &mut tlb,
        }))
    }

    fn map(
        &mut self,
        which: usize,
        iova: u64,
        offset: u64,
        size: u64,
        count: u64,
        prot: Prot,
    ) -> Result<(), &'static str> {
        let phys = self.pa(offset);
        self.with_domain(which, |d| d.map_pages(iova, phys, size, count, prot))?
            .map_err(|_| "map")
    }

    fn unmap(&mut self, which: usize, iova: u64, len: u64) -> Result<u64, &'static str> {
        let done = self.with_domain(which, |d| d.unmap_pages(iova, len))?;
        match (smmu_error(&mut self.smmu), done) {
            (Some(e), _) => Err(e),
            (None, Ok(bytes)) => Ok(bytes),
            (None, Err(_)) => Err("unmap unconfirmed"),
        }
    }

    /// Drains the event queue; `expect` must hold for every record.
    fn events(&mut self, expect: impl Fn(&Event) -> bool) -> Events {
        let mut first = None;
        let mut all_match = true;
        let status = self.smmu.drain_events(|e| {
            first.get_or_insert(e);
            all_match &= expect(&e);
        });
        Events {
            status,
            first,
            all_match,
        }
    }

    fn quiet(&mut self) -> usize {
        self.events(|_| true).status.delivered
    }
}

fn smmu_error(smmu: &mut Smmu<Mmio>) -> Option<&'static str> {
    smmu.take_last_error().map(|_| "SMMU command failed")
}

fn pattern(seed: u64, i: u64) -> u64 {
    (seed << 56) ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) ^ 0x5a5a
}

fn fault(kind: EventKind, sid: StreamId, iova: u64, access: Access) -> impl Fn(&Event) -> bool {
    move |e: &Event| {
        e.kind == kind
            && e.sid == sid
            && e.access == Some(access)
            && e.iova.is_some_and(|a| a & !0xfff == iova & !0xfff)
    }
}

fn check(cond: bool, what: &'static str) -> Result<(), &'static str> {
    if cond {
        Ok(())
    } else {
        Err(what)
    }
}

fn dma<T>(r: Result<T, edu_device::Timeout>) -> Result<T, &'static str> {
    r.map_err(|_| "edu DMA timed out")
}

// ---- the cases ---------------------------------------------------------------

/// Case 1: RAM -> edu -> RAM through two mapped IOVAs.
fn dma_round_trip(r: &mut Rig) -> Result<(), &'static str> {
    r.map(0, 0x10_0000, P_SRC, K4, 1, RW)?;
    r.map(0, 0x11_0000, P_DST, K4, 1, RW)?;
    r.fill(P_SRC, K4, 1);
    r.zero(P_DST, K4);
    dma(r.edu[0].read_from(0x10_0000, 0, 1024))?;
    dma(r.edu[0].write_to(0, 0x11_0000, 1024))?;
    check(r.holds(P_DST, 1024, 1), "data did not round-trip")?;
    check(
        r.is_zero(P_DST + 1024, K4 - 1024),
        "DMA wrote past its length",
    )?;
    check(r.quiet() == 0, "unexpected events")
}

/// Case 2: A write to an unmapped IOVA faults, naming stream and address.
fn unmapped_write_faults(r: &mut Rig) -> Result<(), &'static str> {
    // Were the SMMU bypassing, this IOVA would hit the canary.
    let iova = r.pa(P_CANARY);
    r.fill(P_CANARY, K4, 2);
    dma(r.edu[0].write_to(0, iova, 64))?;
    let ev = r.events(fault(EventKind::Translation, r.sid[0], iova, Access::Write));
    check(ev.status.delivered > 0, "no event")?;
    check(
        ev.all_match,
        "events are not F_TRANSLATION/write for this stream and IOVA",
    )?;
    check(r.holds(P_CANARY, K4, 2), "memory changed")
}

/// Case 3: A write to a read-only mapping is a permission fault; reads work.
fn read_only_mapping(r: &mut Rig) -> Result<(), &'static str> {
    r.map(0, 0x12_0000, P_RO, K4, 1, Prot::READ)?;
    r.fill(P_RO, K4, 3);
    dma(r.edu[0].read_from(0x12_0000, 0, 256))?;
    check(r.quiet() == 0, "reading a read-only mapping faulted")?;
    dma(r.edu[0].write_to(0, 0x12_0000, 64))?;
    let ev = r.events(fault(
        EventKind::Permission,
        r.sid[0],
        0x12_0000,
        Access::Write,
    ));
    check(ev.status.delivered > 0, "no event")?;
    check(ev.all_match, "events are not F_PERMISSION/write")?;
    check(r.holds(P_RO, K4, 3), "read-only memory changed")
}

/// Case 4: After unmap the old IOVA faults: the TLB really was invalidated.
fn unmap_invalidates(r: &mut Rig) -> Result<(), &'static str> {
    r.map(0, 0x13_0000, P_UNMAP, K4, 1, RW)?;
    r.fill(P_SRC, K4, 4);
    dma(r.edu[0].read_from(0x10_0000, 0, 256))?;
    r.zero(P_UNMAP, K4);
    dma(r.edu[0].write_to(0, 0x13_0000, 256))?;
    check(r.holds(P_UNMAP, 256, 4), "mapped write did not land")?;
    check(r.unmap(0, 0x13_0000, K4)? == K4, "unmap size")?;
    r.zero(P_UNMAP, K4);
    dma(r.edu[0].write_to(0, 0x13_0000, 256))?;
    let ev = r.events(fault(
        EventKind::Translation,
        r.sid[0],
        0x13_0000,
        Access::Write,
    ));
    check(
        ev.status.delivered > 0 && ev.all_match,
        "no F_TRANSLATION after unmap",
    )?;
    check(r.is_zero(P_UNMAP, K4), "stale translation used after unmap")
}

/// Case 5: A stream never attached reaches nothing.
fn unattached_stream_blocked(r: &mut Rig) -> Result<(), &'static str> {
    check(
        r.smmu.stream_aborts(r.sid[1]),
        "second stream's STE does not abort",
    )?;
    let iova = r.pa(P_CANARY);
    r.fill(P_CANARY, K4, 5);
    dma(r.edu[1].write_to(0, iova, 64))?;
    r.quiet();
    check(r.holds(P_CANARY, K4, 5), "unattached stream wrote memory")
}

/// Case 6: A 2 MiB block carries DMA; unmapping it frees its tables.
fn block_mapping(r: &mut Rig) -> Result<(), &'static str> {
    let before = r.pool.used();
    r.map(0, 0x4000_0000, BLOCK, M2, 1, RW)?;
    let pt = &r.dom[0].as_ref().ok_or("no domain")?.pt;
    check(
        pt.iova_to_phys(&r.pool, 0x401f_f123) == Some(r.pa(BLOCK) + 0x1f_f123),
        "block translation",
    )?;
    check(
        r.pool.used() > before,
        "a 1 GiB-region table should have been added",
    )?;
    r.fill(BLOCK + 0x1000, K4, 6);
    r.zero(BLOCK + 0x1f_f000, K4);
    dma(r.edu[0].read_from(0x4000_1000, 0, 512))?;
    dma(r.edu[0].write_to(0, 0x401f_f000, 512))?;
    check(
        r.holds(BLOCK + 0x1f_f000, 512, 6),
        "DMA through the block did not land",
    )?;
    check(r.unmap(0, 0x4000_0000, M2)? == M2, "unmap size")?;
    check(r.pool.used() == before, "tables not freed")?;
    dma(r.edu[0].read_from(0x4000_1000, 0, 64))?;
    let ev = r.events(fault(
        EventKind::Translation,
        r.sid[0],
        0x4000_1000,
        Access::Read,
    ));
    check(
        ev.status.delivered > 0 && ev.all_match,
        "no F_TRANSLATION/read after block unmap",
    )
}

/// Case 7: Two devices in two page tables cannot reach each other's windows.
fn isolation(r: &mut Rig) -> Result<(), &'static str> {
    r.new_domain(1)?;
    r.attach(1)?;
    r.map(0, 0x15_0000, P_A, K4, 1, RW)?;
    r.map(1, 0x25_0000, P_B, K4, 1, RW)?;
    // B works in its own window.
    r.fill(P_B, K4, 7);
    dma(r.edu[1].read_from(0x25_0000, 0, 256))?;
    r.zero(P_B, K4);
    dma(r.edu[1].write_to(0, 0x25_0000, 256))?;
    check(r.holds(P_B, 256, 7), "device B cannot use its own window")?;
    check(r.quiet() == 0, "unexpected events")?;
    // Each is refused in the other's.
    r.fill(P_A, K4, 8);
    r.fill(P_B, K4, 9);
    dma(r.edu[0].write_to(0, 0x25_0000, 64))?;
    let ev = r.events(fault(
        EventKind::Translation,
        r.sid[0],
        0x25_0000,
        Access::Write,
    ));
    check(
        ev.status.delivered > 0 && ev.all_match,
        "A's access to B's window was not a fault of A",
    )?;
    dma(r.edu[1].write_to(0, 0x15_0000, 64))?;
    let ev = r.events(fault(
        EventKind::Translation,
        r.sid[1],
        0x15_0000,
        Access::Write,
    ));
    check(
        ev.status.delivered > 0 && ev.all_match,
        "B's access to A's window was not a fault of B",
    )?;
    check(
        r.holds(P_A, K4, 8) && r.holds(P_B, K4, 9),
        "a window was written across domains",
    )
}

/// Case 8: More faults than the event queue holds: overflow is reported and
/// the queue keeps working.
fn event_overflow(r: &mut Rig) -> Result<(), &'static str> {
    r.quiet();
    // One event per 4 bytes: 512 records into a 128-entry queue.
    dma(r.edu[0].write_to(0, 0x50_0000, 2048))?;
    let burst = r.events(fault(
        EventKind::Translation,
        r.sid[0],
        0x50_0000,
        Access::Write,
    ));
    check(burst.status.overflowed, "overflow not reported")?;
    check(
        burst.status.delivered <= 1 << EVTQ_LOG2,
        "more records than the queue holds",
    )?;
    check(burst.all_match, "garbled records in the burst")?;
    dma(r.edu[0].write_to(0, 0x51_0000, 4))?;
    let after = r.events(fault(
        EventKind::Translation,
        r.sid[0],
        0x51_0000,
        Access::Write,
    ));
    check(
        after.status.delivered == 1 && !after.status.overflowed,
        "queue did not recover after overflow",
    )?;
    check(
        after.first.is_some_and(|e| e.iova == Some(0x51_0000)),
        "wrong record after overflow",
    )?;
    check(r.smmu.overflows() == 1, "overflow count")
}

/// Case 9: A command the SMMU refuses is reported with its error code and
/// the queue keeps working.
fn command_error_reported(r: &mut Rig) -> Result<(), &'static str> {
    // Opcode 0x07 is not a command.
    r.smmu.submit(&[[0x07, 0]]).map_err(|_| "submit")?;
    match r.smmu.sync() {
        Err(SmmuError::Command(e)) => check(
            e.code == 1 && e.opcode == 0x07,
            "wrong CMDQ_CONS.ERR or opcode",
        )?,
        _ => return Err("illegal command not reported"),
    }
    if let Err(e) = r.smmu.sync() {
        say!("  second sync: {e}\n");
        return Err("queue did not recover");
    }
    // Translation still works afterwards.
    r.fill(P_SRC, K4, 10);
    dma(r.edu[0].read_from(0x10_0000, 0, 128))?;
    r.zero(P_DST, K4);
    dma(r.edu[0].write_to(0, 0x11_0000, 128))?;
    check(r.holds(P_DST, 128, 10), "DMA after the command error")
}

/// Case 10: the io_pagetable engine drives the SMMU. An IOAS with an SMMU
/// domain attached maps through automatic IOVAs, DMA flows, an iopt unmap
/// stops it (the flush really happened), and teardown returns every table
/// page. Takes the SMMU and the pool over, so it runs last.
fn iopt_drives_the_smmu(rig: Rig) -> Result<(), &'static str> {
    let Rig {
        store,
        mut smmu,
        pool,
        mem,
        edu,
        sid,
        dom,
    } = rig;
    let mut store = store.ok_or("no store")?;
    // Stream A leaves the earlier cases' domain for one iopt fills.
    let old = dom[0].as_ref().ok_or("no domain")?.ctx;
    smmu.detach(sid[0], old).map_err(|_| "detach")?;
    let tables_before = pool.used();
    let mut doms = SmmuDomains::new(&mut smmu, pool);
    let mut ioas = store.new_ioas(ClientId(0)).map_err(|_| "ioas")?;
    let id = doms.alloc(ClientId(0), 64).map_err(|_| "domain")?;
    ioas.attach_domain(&mut store, &mut doms, id)
        .map_err(|_| "attach domain")?;
    doms.attach(sid[0], id).map_err(|_| "attach stream")?;
    let mut map = |offset: u64| {
        let ext = [Extent {
            phys: mem.pa(offset),
            len: K4,
        }];
        ioas.map(
            &mut store,
            &mut doms,
            &ext,
            mem.pa(offset),
            true,
            DstIova::Auto,
            RW,
        )
    };
    let src = map(P_SRC).map_err(|_| "map source")?;
    let dst = map(P_DST).map_err(|_| "map destination")?;
    mem.fill(P_SRC, K4, 11);
    mem.zero(P_DST, K4);
    dma(edu[0].read_from(src, 0, 512))?;
    dma(edu[0].write_to(0, dst, 512))?;
    check(
        mem.holds(P_DST, 512, 11),
        "DMA through iopt's mappings did not land",
    )?;
    check(
        ioas.unmap(&mut store, &mut doms, dst, K4) == Ok(K4),
        "unmap",
    )?;
    mem.zero(P_DST, K4);
    dma(edu[0].write_to(0, dst, 64))?;
    let mut faults = 0;
    let mut right = true;
    doms.drain_events(|e| {
        faults += 1;
        right &= e.kind == EventKind::Translation && e.iova.is_some_and(|a| a & !0xfff == dst);
    });
    check(faults > 0 && right, "no F_TRANSLATION after the iopt unmap")?;
    check(
        mem.is_zero(P_DST, K4),
        "stale translation after the iopt unmap",
    )?;
    doms.detach(sid[0]).map_err(|_| "detach stream")?;
    ioas.destroy(&mut store, &mut doms);
    doms.free(id).map_err(|_| "free domain")?;
    check(
        doms.pool().used() == tables_before,
        "table pages not all returned",
    )?;
    check(
        store.areas_free() == store.areas_capacity(),
        "areas not all returned",
    )
}

qemu_virt::image_main!(main_entry);

/// Runs every case; the number of failures becomes the exit status.
fn main_entry() -> u32 {
    say!("hw-qemu-test: SMMUv3 driver against QEMU's SMMUv3 with edu DMA\n");
    match setup() {
        Ok(rig) => run(rig),
        Err(e) => {
            say!("setup failed: {e}\n0 passed, 1 failed\n");
            1
        }
    }
}

fn setup() -> Result<Rig, &'static str> {
    let mem = memory::take().ok_or("memory taken twice")?;
    let mut found = [pci::Function {
        devfn: 0,
        sid: 0,
        bar0: 0,
    }; 2];
    let mut windows = platform::device_windows().ok_or("device windows taken twice")?;
    if pci::find(
        &mut windows,
        edu_device::VENDOR,
        edu_device::DEVICE,
        &mut found,
    ) != 2
    {
        return Err("need two edu devices on PCI bus 0");
    }
    let config = SmmuConfig {
        event_queue_bytes: 32 << EVTQ_LOG2,
        ..SmmuConfig::DEFAULT
    };
    let sid = [StreamId(found[0].sid), StreamId(found[1].sid)];
    let regs = platform::smmu_regs().ok_or("SMMU registers taken twice")?;
    let smmu = Smmu::init(regs, mem.smmu, config, &sid).map_err(|e| {
        say!("SMMU: {e}\n");
        "SMMU init"
    })?;
    let f = smmu.features();
    say!(
        "SMMU: oas {} ias {} sid bits {} 2-level {} range-inval {} asid16 {} coherent {}\n",
        f.oas,
        f.ias,
        f.sid_bits,
        f.two_level_strtab,
        f.range_invalidation,
        f.asid16,
        f.coherent
    );
    let cleaner: &'static dyn CacheClean = if f.coherent { &COHERENT } else { &NON_COHERENT };
    let pool = TablePool::new(mem.table_pages, cleaner);
    let mut bar = |f: &pci::Function| {
        windows
            .bar(f.bar0, platform::BAR_WINDOW_SIZE)
            .map_err(|_| "BAR window refused")
    };
    let edus = [Edu(bar(&found[0])?), Edu(bar(&found[1])?)];
    for (e, fun) in edus.iter().zip(found.iter()) {
        say!(
            "edu {:02x}.{} stream {:#x} id {:#010x}\n",
            fun.devfn >> 3,
            fun.devfn & 7,
            fun.sid,
            e.id()
        );
    }
    let store = Some(Store::new(mem.areas, mem.pages, mem.accounts));
    let mut rig = Rig {
        store,
        smmu,
        pool,
        mem: Mem(mem.dma),
        edu: edus,
        sid,
        dom: [None, None],
    };
    rig.new_domain(0)?;
    rig.attach(0)?;
    Ok(rig)
}

fn run(mut rig: Rig) -> u32 {
    let cases: [(&str, Case); 9] = [
        ("DMA through a mapped IOVA round-trips", dma_round_trip),
        (
            "write to an unmapped IOVA is F_TRANSLATION",
            unmapped_write_faults,
        ),
        (
            "write to a read-only mapping is F_PERMISSION",
            read_only_mapping,
        ),
        ("unmap invalidates: the old IOVA faults", unmap_invalidates),
        (
            "a never-attached stream cannot reach memory",
            unattached_stream_blocked,
        ),
        ("2 MiB block DMA; unmap frees its tables", block_mapping),
        ("two devices in two page tables are isolated", isolation),
        (
            "event queue overflow is survived and reported",
            event_overflow,
        ),
        (
            "an illegal command is reported, not hung on",
            command_error_reported,
        ),
    ];
    let (mut passed, mut failed) = (0u32, 0u32);
    for (i, (name, case)) in cases.iter().enumerate() {
        match case(&mut rig) {
            Ok(()) => {
                passed += 1;
                say!("ok {} - {}\n", i + 1, name);
            }
            Err(why) => {
                failed += 1;
                say!("not ok {} - {}: {}\n", i + 1, name, why);
            }
        }
        let gerror = rig.smmu.take_global_errors();
        if gerror != 0 {
            say!("  SMMU_GERROR {gerror:#x}\n");
        }
    }
    let last = cases.len() + 1;
    let name = "iopt drives the SMMU: auto-IOVA DMA, unmap flushes, teardown returns all";
    match iopt_drives_the_smmu(rig) {
        Ok(()) => {
            passed += 1;
            say!("ok {last} - {name}\n");
        }
        Err(why) => {
            failed += 1;
            say!("not ok {last} - {name}: {why}\n");
        }
    }
    say!("{passed} passed, {failed} failed\n");
    failed
}
