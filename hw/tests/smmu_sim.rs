//! The SMMUv3 driver against a simulated register file: bring-up order,
//! probe refusals, and what each operation costs in commands and syncs.
//! (Behaviour against a real SMMU model is in tests/qemu.rs.)

use std::cell::RefCell;
use std::collections::BTreeMap;

use hw::pgtable::Gather;
use hw::smmu::regs::*;
use hw::smmu::{ProbeError, Smmu, SmmuConfig, SmmuError};
use iommu_types::StreamId;
use mmio::maintenance::{self, Maintenance};
use mmio::{DmaRegion, RegisterBlock};

/// QEMU 7.2's ID registers.
const QEMU_IDR: [u32; 6] = [0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74];

#[derive(Default)]
struct State {
    regs: BTreeMap<usize, u64>,
    /// Every register write in order.
    writes: Vec<(usize, u64)>,
    /// Commands published by CMDQ_PROD writes.
    commands: usize,
    prod_writes: usize,
    log2: u32,
    /// Event-queue register accesses and cache maintenance, interleaved in
    /// the order they happened.
    trace: Vec<Step>,
    /// CMD_SYNCs still to refuse (u32::MAX: all of them). A refused sync
    /// leaves CMDQ_CONS where it was, so neither it nor anything published
    /// since the last completed sync is consumed, until the driver gives up
    /// waiting (it publishes again after polling); then the next sync is
    /// refused, or, when none is left to refuse, everything is consumed.
    refuse_syncs: u32,
    /// Commands are published but not consumed.
    stalled: bool,
    /// CMDQ_CONS reads since the last PROD write: more than one is a wait.
    cons_polls: u32,
    /// Times the SMMU consumed everything published: what it cached before
    /// the last one may be stale, nothing else (the model of
    /// [`Device::dma`]).
    completions: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Cache(Maintenance),
    ReadProd,
    WriteCons,
}

impl State {
    /// Moves the maintenance recorded so far into the trace, then `step`.
    fn trace(&mut self, step: Step) {
        self.trace
            .extend(maintenance::take().into_iter().map(Step::Cache));
        self.trace.push(step);
    }
}

/// Acknowledges enables at once and consumes commands on every PROD write.
struct Sim {
    state: RefCell<State>,
    idr: [u32; 6],
    acks: bool,
}

impl Sim {
    fn new(idr: [u32; 6]) -> Sim {
        Sim {
            state: RefCell::new(State::default()),
            idr,
            acks: true,
        }
    }

    fn get(&self, offset: usize) -> u64 {
        *self.state.borrow().regs.get(&offset).unwrap_or(&0)
    }
}

impl RegisterBlock for Sim {
    fn read32(&self, offset: usize) -> u32 {
        match offset {
            IDR0..=IDR5 => self.idr[(offset - IDR0) / 4],
            CR0ACK if self.acks => self.get(CR0) as u32,
            IRQ_CTRLACK => self.get(IRQ_CTRL) as u32,
            EVENTQ_PROD => {
                self.state.borrow_mut().trace(Step::ReadProd);
                self.get(offset) as u32
            }
            CMDQ_CONS => {
                let mut s = self.state.borrow_mut();
                s.cons_polls = s.cons_polls.saturating_add(1);
                *s.regs.get(&offset).unwrap_or(&0) as u32
            }
            _ => self.get(offset) as u32,
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let mut s = self.state.borrow_mut();
        s.writes.push((offset, value as u64));
        if offset == EVENTQ_CONS {
            s.trace(Step::WriteCons);
        }
        if offset == CMDQ_PROD {
            let old = *s.regs.get(&CMDQ_PROD).unwrap_or(&0) as u32;
            let span = 2u32 << s.log2;
            s.commands += ((value + span - old) % span) as usize;
            s.prod_writes += 1;
            if s.stalled && s.cons_polls > 1 {
                // The driver waited for a sync and gave up.
                s.refuse_syncs = s.refuse_syncs.saturating_sub(1);
            }
            s.cons_polls = 0;
            s.stalled = s.refuse_syncs > 0;
            if !s.stalled {
                s.regs.insert(CMDQ_CONS, value as u64);
                s.completions += 1;
            }
        }
        // The update completes at once.
        let value = if offset == GBPA {
            value & !GBPA_UPDATE
        } else {
            value
        };
        s.regs.insert(offset, value as u64);
    }

    fn read64(&self, offset: usize) -> u64 {
        self.get(offset)
    }

    fn write64(&self, offset: usize, value: u64) {
        let mut s = self.state.borrow_mut();
        s.writes.push((offset, value));
        if offset == CMDQ_BASE {
            s.log2 = (value & 0x1f) as u32;
        }
        s.regs.insert(offset, value);
    }
}

fn memory() -> DmaRegion {
    let buf = Box::leak(vec![0u64; 512 * 1024 / 8].into_boxed_slice());
    DmaRegion::host(buf, 0x4800_0000).unwrap()
}

fn smmu(sim: Sim) -> Result<Smmu<Sim>, SmmuError> {
    Smmu::init(
        sim,
        memory(),
        SmmuConfig::DEFAULT,
        &[StreamId(0x8), StreamId(0x10)],
    )
}

#[test]
fn bring_up_follows_the_architected_order() {
    let s = smmu(Sim::new(QEMU_IDR)).unwrap();
    let st = s.regs().state.borrow();
    let pos = |reg: usize, pred: &dyn Fn(u64) -> bool| {
        st.writes
            .iter()
            .position(|&(r, v)| r == reg && pred(v))
            .unwrap()
    };
    let disabled = pos(CR0, &|v| v == 0);
    let strtab = pos(STRTAB_BASE_CFG, &|_| true);
    let cmdq_on = pos(CR0, &|v| v as u32 == CR0_CMDQEN);
    let evtq_on = pos(CR0, &|v| v as u32 == CR0_CMDQEN | CR0_EVENTQEN);
    let smmu_on = pos(CR0, &|v| v as u32 & CR0_SMMUEN != 0);
    assert!(disabled < strtab && strtab < cmdq_on && cmdq_on < evtq_on && evtq_on < smmu_on);
    assert!(
        pos(GBPA, &|v| v as u32 & GBPA_ABORT != 0) < smmu_on,
        "abort while disabled"
    );
    let cfg = st.regs[&STRTAB_BASE_CFG] as u32;
    assert_eq!((cfg >> 16) & 3, 1, "two-level");
    assert_eq!((cfg >> 6) & 0x1f, 8, "SPLIT");
    assert_eq!(cfg & 0x3f, 16, "LOG2SIZE = SIDSIZE");
    assert_eq!(st.regs[&CR2] as u32 & CR2_RECINVSID, CR2_RECINVSID);
}

#[test]
fn probe_refusals_name_the_field() {
    let mut idr = QEMU_IDR;
    idr[0] &= !IDR0_S1P;
    assert_eq!(
        smmu(Sim::new(idr)).err(),
        Some(SmmuError::Probe(ProbeError::NoStage1))
    );
    let mut idr = QEMU_IDR;
    idr[5] &= !IDR5_GRAN4K;
    let err = smmu(Sim::new(idr)).err().unwrap();
    assert!(format!("{err}").contains("SMMU_IDR5.GRAN4K"), "{err}");
}

#[test]
fn an_smmu_that_never_acknowledges_is_an_error_not_a_hang() {
    let mut sim = Sim::new(QEMU_IDR);
    sim.acks = false;
    // CR0 = 0 at reset reads back as acknowledged; enabling never does.
    assert_eq!(smmu(sim).err(), Some(SmmuError::AckTimeout("SMMU_CR0ACK")));
}

#[test]
fn a_too_small_region_names_the_structure() {
    let buf = Box::leak(vec![0u64; 512].into_boxed_slice());
    let r = Smmu::init(
        Sim::new(QEMU_IDR),
        DmaRegion::host(buf, 0x4800_0000).unwrap(),
        SmmuConfig::DEFAULT,
        &[],
    );
    assert!(matches!(r, Err(SmmuError::NoMemory(_))), "{r:?}");
}

fn gather(runs: &[(u64, u64)]) -> Gather {
    let mut g = Gather::new();
    for &(iova, len) in runs {
        g.add(iova, len, true);
    }
    g
}

/// (commands, PROD writes) spent by `f`.
fn cost(s: &mut Smmu<Sim>, f: impl FnOnce(&mut Smmu<Sim>)) -> (usize, usize) {
    let before = {
        let st = s.regs().state.borrow();
        (st.commands, st.prod_writes)
    };
    f(s);
    let st = s.regs().state.borrow();
    (st.commands - before.0, st.prod_writes - before.1)
}

#[test]
fn unmap_flush_is_one_range_command_per_run_and_one_sync() {
    let mut s = smmu(Sim::new(QEMU_IDR)).unwrap();
    // 256 contiguous pages: one TLBI_NH_VA range command, one CMD_SYNC.
    assert_eq!(
        cost(&mut s, |s| s
            .flush_gather(1, &gather(&[(0x10_0000, 256 * 4096)]))
            .unwrap()),
        (2, 2)
    );
    // Three runs: three range commands (one needs two chunks), one SYNC.
    let runs = [
        (0x10_0000, 4096),
        (0x40_0000, 1000 * 4096),
        (0x900_0000, 2 << 20),
    ];
    assert_eq!(
        cost(&mut s, |s| s.flush_gather(1, &gather(&runs)).unwrap()).0,
        1 + 2 + 1 + 1
    );
}

#[test]
fn without_range_invalidation_long_runs_flush_the_asid() {
    let mut idr = QEMU_IDR;
    idr[3] &= !IDR3_RIL;
    let mut s = smmu(Sim::new(idr)).unwrap();
    assert_eq!(
        cost(&mut s, |s| s
            .flush_gather(1, &gather(&[(0x10_0000, 16 * 4096)]))
            .unwrap())
        .0,
        16 + 1
    );
    assert_eq!(
        cost(&mut s, |s| s
            .flush_gather(1, &gather(&[(0x10_0000, 1024 * 4096)]))
            .unwrap())
        .0,
        1 + 1
    );
}

#[test]
fn attach_and_detach_are_break_before_make_with_syncs() {
    let mut s = smmu(Sim::new(QEMU_IDR)).unwrap();
    let ctx = s.alloc_context(0x4900_0000, 16, 0).unwrap();
    assert!(s.stream_aborts(StreamId(0x8)));
    // Already aborting: body, valid word, CFGI_STE + SYNC.
    assert_eq!(
        cost(&mut s, |s| s.attach(StreamId(0x8), ctx).unwrap()),
        (2, 2)
    );
    assert!(!s.stream_aborts(StreamId(0x8)));
    // Translating -> translating: abort + CFGI + SYNC first, then the same.
    assert_eq!(cost(&mut s, |s| s.attach(StreamId(0x8), ctx).unwrap()).0, 4);
    assert_eq!(s.free_context(ctx), Err(SmmuError::ContextBusy));
    s.detach(StreamId(0x8), ctx).unwrap();
    assert!(s.stream_aborts(StreamId(0x8)));
    s.free_context(ctx).unwrap();
    assert_eq!(s.free_context(ctx), Err(SmmuError::BadContext));
    assert_eq!(s.attach(StreamId(0x8), ctx), Err(SmmuError::BadContext));
    // Streams beyond the configured level-2 tables are refused.
    let ctx = s.alloc_context(0x4900_0000, 16, 0).unwrap();
    for span in 1..4u32 {
        s.ensure_stream(StreamId(span << 8)).unwrap();
    }
    assert_eq!(
        s.attach(StreamId(5 << 8), ctx),
        Err(SmmuError::NoStream(StreamId(5 << 8)))
    );
}

#[test]
fn interrupts_are_silenced_and_msis_disabled_before_enabling() {
    let s = smmu(Sim::new(QEMU_IDR)).unwrap();
    let st = s.regs().state.borrow();
    let at = |reg: usize, value: u64| st.writes.iter().position(|&w| w == (reg, value)).unwrap();
    let enable_irqs = at(IRQ_CTRL, 0b101);
    assert!(at(IRQ_CTRL, 0) < enable_irqs);
    assert!(at(GERROR_IRQ_CFG0, 0) < enable_irqs);
    assert!(at(EVENTQ_IRQ_CFG0, 0) < enable_irqs);
    // GBPA aborts before translation is ever switched off.
    assert!(at(GBPA, (GBPA_ABORT | GBPA_UPDATE) as u64) < at(CR0, 0));
}

#[test]
fn stream_counts_follow_the_stream_table() {
    let mut s = smmu(Sim::new(QEMU_IDR)).unwrap();
    let a = s.alloc_context(0x4900_0000, 16, 0).unwrap();
    let b = s.alloc_context(0x4a00_0000, 16, 0).unwrap();
    s.attach(StreamId(0x8), a).unwrap();
    s.attach(StreamId(0x10), a).unwrap();
    // Moving a stream to another context moves its count.
    s.attach(StreamId(0x8), b).unwrap();
    assert_eq!(s.stream_context(StreamId(0x8)), Some(b));
    assert_eq!(
        s.detach(StreamId(0x8), a),
        Err(SmmuError::BadContext),
        "not the stream's context"
    );
    s.detach(StreamId(0x8), b).unwrap();
    assert_eq!(
        s.detach(StreamId(0x8), b),
        Err(SmmuError::BadContext),
        "already detached"
    );
    s.free_context(b).unwrap();
    // Stream 0x10 still uses A: A cannot be freed, whatever was detached.
    assert_eq!(s.free_context(a), Err(SmmuError::ContextBusy));
    s.detach(StreamId(0x10), a).unwrap();
    s.free_context(a).unwrap();
    assert_eq!(
        s.alloc_context(0x4900_0000, 15, 0),
        Err(SmmuError::BadFormat),
        "T0SZ below 16"
    );
    assert_eq!(
        s.alloc_context(0x4900_0800, 16, 0),
        Err(SmmuError::BadFormat),
        "TTB0 not a page"
    );
}

#[test]
fn architected_overflow_flag_is_reported_and_acknowledged() {
    let mut s = smmu(Sim::new(QEMU_IDR)).unwrap();
    // The SMMU flips PROD.OVFLG; no records are pending.
    s.regs().write32(EVENTQ_PROD, Q_OVF);
    let status = s.drain_events(|_| panic!("no records"));
    assert!(status.overflowed && status.delivered == 0);
    assert_eq!(
        s.regs().read32(EVENTQ_CONS) & Q_OVF,
        Q_OVF,
        "OVACKFLG now matches"
    );
    assert!(!s.drain_events(|_| ()).overflowed, "reported once");
    assert_eq!(s.overflows(), 1);
}

/// With IDR0.COHACC clear the SMMU writes event records to memory past the
/// CPU's caches: each record's lines are invalidated after PROD is read
/// and before it is read, and all of them before CONS hands the slots
/// back. A coherent SMMU needs none.
#[test]
fn non_coherent_event_records_are_invalidated_before_they_are_read() {
    for coherent in [false, true] {
        let mut idr = QEMU_IDR;
        if !coherent {
            idr[0] &= !IDR0_COHACC;
        }
        let mut s = smmu(Sim::new(idr)).unwrap();
        assert_eq!(s.features().coherent, coherent);
        maintenance::take();
        s.regs().state.borrow_mut().trace.clear();
        // Two records published.
        s.regs().state.borrow_mut().regs.insert(EVENTQ_PROD, 2);
        let mut seen = 0;
        let status = s.drain_events(|_| seen += 1);
        assert_eq!((status.delivered, seen), (2, 2));
        let trace = std::mem::take(&mut s.regs().state.borrow_mut().trace);
        let invalidated: Vec<usize> = trace
            .iter()
            .filter_map(|step| match step {
                Step::Cache(Maintenance::Invalidate { va, len }) => Some(*va + *len),
                _ => None,
            })
            .collect();
        if coherent {
            assert_eq!(trace, [Step::ReadProd, Step::WriteCons]);
        } else {
            assert_eq!(trace.first(), Some(&Step::ReadProd));
            assert_eq!(trace.last(), Some(&Step::WriteCons));
            assert_eq!(invalidated.len(), 2, "one per record: {trace:?}");
            assert!(trace
                .iter()
                .all(|step| !matches!(step, Step::Cache(Maintenance::Clean { .. }))));
            let lens: Vec<usize> = trace
                .iter()
                .filter_map(|step| match step {
                    Step::Cache(Maintenance::Invalidate { len, .. }) => Some(*len),
                    _ => None,
                })
                .collect();
            assert_eq!(lens, [32, 32], "a whole record each");
        }
    }
}

// ---- the server over this SMMU: an invalidation that is never confirmed --

mod unconfirmed {
    use std::collections::BTreeMap;

    use hw::domains::SmmuDomains;
    use hw::pgtable::{TablePage, TablePool};
    use iommu_proto::fault::{IOMMU_FAULT_RECORD_STOPPED, IOMMU_FAULT_RECORD_VALID};
    use iommu_proto::iommufd::iommu_ioas_unmap;
    use iommu_proto::{iommu_fault_record, Op};
    use iommu_testkit::rig::{client, device, id, region};
    use iommu_testkit::Rig;
    use iommu_types::config::{DeviceConfig, Region};
    use iommu_types::{Errno, StreamId};
    use mmio::{Coherent, DmaMemory};

    use super::*;

    type Server = Rig<SmmuDomains<'static, Sim>>;

    static REGIONS: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8000_0000)];
    static DRIVER_DEVICES: [DeviceConfig; 1] = [device("dev", 0x8)];
    static BYSTANDER_DEVICES: [DeviceConfig; 1] = [device("other", 0x10)];
    const DRIVER: usize = 0;
    const BYSTANDER: usize = 1;
    const IOVA: u64 = 0x4_0000;

    /// The server PD's hardware: the SMMU driver over the simulation and
    /// real page tables; a driver and a bystander, each with a device
    /// attached and a page mapped at [`IOVA`] (the bystander's at
    /// 0x8001_0000).
    fn server() -> Server {
        let smmu = Box::leak(Box::new(smmu(Sim::new(QEMU_IDR)).unwrap()));
        let pages = Box::leak(vec![TablePage::ZERO; 128].into_boxed_slice());
        let pool = TablePool::new(DmaMemory::host(pages, 0x5000_0000), &Coherent);
        let configs = [
            client("driver")
                .regions(&REGIONS)
                .devices(&DRIVER_DEVICES)
                .build(),
            client("bystander")
                .regions(&REGIONS)
                .devices(&BYSTANDER_DEVICES)
                .build(),
        ];
        let mut r = Rig::new(SmmuDomains::new(smmu, pool), &configs);
        for (c, va) in [(DRIVER, 0x10_0000), (BYSTANDER, 0x11_0000)] {
            let ioas = r.alloc(c).unwrap();
            r.map(c, ioas, va, 0x1000, Some(IOVA)).unwrap();
            let dev = r.bind(c, 0).unwrap();
            r.attach(c, dev, ioas).unwrap();
        }
        r
    }

    fn sim(r: &mut Server) -> std::cell::RefMut<'_, State> {
        r.server.hardware_mut().smmu().regs().state.borrow_mut()
    }

    /// A device's DMA as the simulated SMMU serves it. The model: the SMMU
    /// caches every translation (and the stream's configuration) it used
    /// and forgets them only when it consumes a CMD_SYNC; otherwise it
    /// walks the stream table and page tables in memory. Translation off
    /// (SMMU_CR0.SMMUEN clear, GBPA abort) aborts everything.
    struct Device {
        stream: StreamId,
        tlb: BTreeMap<u64, u64>,
        completions: u64,
    }

    impl Device {
        fn new(stream: u32) -> Device {
            Device {
                stream: StreamId(stream),
                tlb: BTreeMap::new(),
                completions: 0,
            }
        }

        fn dma(&mut self, r: &mut Server, iova: u64) -> Option<u64> {
            let (enabled, completions) = {
                let st = sim(r);
                let cr0 = *st.regs.get(&CR0).unwrap_or(&0) as u32;
                (cr0 & CR0_SMMUEN != 0, st.completions)
            };
            if !enabled {
                return None;
            }
            if completions != self.completions {
                self.tlb.clear();
                self.completions = completions;
            }
            let page = iova & !0xfff;
            if let Some(pa) = self.tlb.get(&page) {
                return Some(pa + (iova & 0xfff));
            }
            let pa = r.server.hardware().walk(self.stream, page)?;
            self.tlb.insert(page, pa);
            Some(pa + (iova & 0xfff))
        }
    }

    fn unmap(r: &mut Server, client: usize, ioas: u32) -> Result<u64, Errno> {
        let mut cmd = iommu_ioas_unmap {
            size: 24,
            ioas_id: ioas,
            iova: IOVA,
            length: 0x1000,
        };
        r.call(client, Op::IoasUnmap, &mut cmd, 0)?;
        Ok(cmd.length)
    }

    fn fault_flags(r: &mut Server, client: usize) -> u32 {
        let mut rec = iommu_fault_record {
            size: core::mem::size_of::<iommu_fault_record>() as u32,
            ..Default::default()
        };
        r.call(client, Op::FaultRead, &mut rec, 0).unwrap();
        rec.out_flags
    }

    /// The first IOAS every client allocates.
    const IOAS: u32 = 0x100;

    /// The TLB invalidation of an unmap and its whole-ASID retry are never
    /// completed: the unmap is EIO, the stream is put back to abort (its
    /// CMD_SYNC completes), the page stays mapped in the accounting and is
    /// not handed out again, and the client learns why. The bystander's
    /// stream keeps translating. Once the stream is stopped the unmap can
    /// finish.
    #[test]
    fn an_unconfirmed_unmap_is_eio_and_stops_the_domains_streams() {
        let mut r = server();
        let mut dev = Device::new(0x8);
        let mut other = Device::new(0x10);
        assert_eq!(dev.dma(&mut r, IOVA + 0x10), Some(0x8000_0010));
        assert_eq!(other.dma(&mut r, IOVA), Some(0x8001_0000));
        sim(&mut r).refuse_syncs = 2;
        assert_eq!(unmap(&mut r, DRIVER, IOAS), Err(Errno::EIO));
        assert_eq!(sim(&mut r).refuse_syncs, 0, "both syncs were refused");
        assert_eq!(dev.dma(&mut r, IOVA + 0x10), None, "the stream aborts");
        let smmu = r.server.hardware_mut().smmu();
        assert!(smmu.stream_aborts(StreamId(0x8)));
        assert!(!smmu.disabled(), "nothing wider than the stream stopped");
        assert_eq!(other.dma(&mut r, IOVA), Some(0x8001_0000));
        assert_eq!(
            fault_flags(&mut r, DRIVER),
            IOMMU_FAULT_RECORD_STOPPED,
            "the client is told"
        );
        assert_eq!(fault_flags(&mut r, BYSTANDER), 0);
        // The page is still the IOAS's: its IOVA is taken, its region in use.
        assert_eq!(
            r.server.translate(id(DRIVER), IOAS, IOVA),
            Some(0x8000_0000)
        );
        assert_eq!(r.server.region_users(id(DRIVER), 0), 1);
        assert_eq!(
            r.map(DRIVER, IOAS, 0x10_2000, 0x1000, Some(IOVA)),
            Err(Errno::EEXIST)
        );
        let elsewhere = r.map(DRIVER, IOAS, 0x10_2000, 0x1000, None).unwrap();
        assert_ne!(elsewhere, IOVA);
        r.check().unwrap();
        // No stream can reach the tainted domain (it went with its last
        // device): the unmap now finishes, and the device works again.
        assert_eq!(unmap(&mut r, DRIVER, IOAS), Ok(0x1000));
        assert_eq!(r.server.region_users(id(DRIVER), 0), 1, "the other map");
        let devid = 0x101;
        r.attach(DRIVER, devid, IOAS).unwrap();
        assert_eq!(dev.dma(&mut r, elsewhere), Some(0x8000_2000));
        r.check().unwrap();
    }

    /// No CMD_SYNC completes at all: the stream's abort cannot be confirmed
    /// either, so translation is switched off (every stream aborts, every
    /// client with a device is told), and the page stays the IOAS's: no
    /// later unmap hands it back while the stream is not known stopped.
    #[test]
    fn when_no_sync_completes_all_dma_stops_and_the_page_stays() {
        let mut r = server();
        let mut dev = Device::new(0x8);
        let mut other = Device::new(0x10);
        assert!(dev.dma(&mut r, IOVA).is_some());
        assert!(other.dma(&mut r, IOVA).is_some());
        sim(&mut r).refuse_syncs = u32::MAX;
        assert_eq!(unmap(&mut r, DRIVER, IOAS), Err(Errno::EIO));
        assert_eq!(dev.dma(&mut r, IOVA), None);
        assert_eq!(other.dma(&mut r, IOVA), None);
        {
            let st = sim(&mut r);
            assert_eq!(st.regs[&CR0] as u32 & CR0_SMMUEN, 0);
            assert_ne!(st.regs[&GBPA] as u32 & GBPA_ABORT, 0);
        }
        assert!(r.server.hardware_mut().smmu().disabled());
        for c in [DRIVER, BYSTANDER] {
            assert_eq!(
                fault_flags(&mut r, c) & !IOMMU_FAULT_RECORD_VALID,
                IOMMU_FAULT_RECORD_STOPPED,
                "client {c}"
            );
        }
        assert_eq!(unmap(&mut r, DRIVER, IOAS), Err(Errno::EIO));
        assert_eq!(
            r.server.translate(id(DRIVER), IOAS, IOVA),
            Some(0x8000_0000)
        );
        assert_eq!(r.server.region_users(id(DRIVER), 0), 1);
        assert_eq!(
            r.map(DRIVER, IOAS, 0x10_2000, 0x1000, Some(IOVA)),
            Err(Errno::EEXIST)
        );
        let mut report = String::new();
        iopt::Hardware::describe(r.server.hardware(), &mut report).unwrap();
        assert!(report.contains("translation off"), "{report}");
    }
}

/// The event queue takes as many records as its memory budget holds, up to
/// what IDR1.EVENTQS offers, instead of a fixed count.
#[test]
fn event_queue_is_sized_by_its_budget_within_eventqs() {
    let log2 = |s: &Smmu<Sim>| (s.regs().read64(EVENTQ_BASE) & 0x1f) as u32;
    let s = smmu(Sim::new(QEMU_IDR)).unwrap();
    assert_eq!(s.event_queue_entries(), 4096, "128 KiB of 32-byte records");
    assert_eq!(log2(&s), 12);
    let with = |bytes: usize, idr: [u32; 6]| {
        Smmu::init(
            Sim::new(idr),
            memory(),
            SmmuConfig {
                event_queue_bytes: bytes,
                ..SmmuConfig::DEFAULT
            },
            &[StreamId(0x8)],
        )
    };
    let s = with(256 * 1024, QEMU_IDR).unwrap();
    assert_eq!((s.event_queue_entries(), log2(&s)), (8192, 13));
    // A budget between powers of two rounds down.
    assert_eq!(
        with(100 * 1024, QEMU_IDR).unwrap().event_queue_entries(),
        2048
    );
    // An SMMU offering 2^7 records caps whatever the budget.
    let mut idr = QEMU_IDR;
    idr[1] = (idr[1] & !(0x1f << IDR1_EVENTQS_SHIFT)) | (7 << IDR1_EVENTQS_SHIFT);
    assert_eq!(with(128 * 1024, idr).unwrap().event_queue_entries(), 128);
    // More than the SMMU's memory holds is refused, naming the queue.
    assert_eq!(
        with(1024 * 1024, QEMU_IDR).err(),
        Some(SmmuError::NoMemory("event queue"))
    );
}

/// One drain hands over at most what it is asked for; the rest stay for
/// the next, and CONS says how far the first got.
#[test]
fn a_bounded_drain_leaves_the_rest_queued() {
    let mut s = smmu(Sim::new(QEMU_IDR)).unwrap();
    s.regs().state.borrow_mut().regs.insert(EVENTQ_PROD, 100);
    let mut seen = 0;
    let first = s.drain_events_max(64, |_| seen += 1);
    assert_eq!((first.delivered, first.pending, seen), (64, true, 64));
    assert_eq!(s.regs().read32(EVENTQ_CONS), 64);
    let rest = s.drain_events_max(64, |_| seen += 1);
    assert_eq!((rest.delivered, rest.pending, seen), (36, false, 100));
    assert_eq!(s.regs().read32(EVENTQ_CONS), 100);
}

/// A stream whose records are stopped: unattached, its STE is a valid
/// abort (it still aborts everything, and records nothing); attached, its
/// context's CD.R is clear, for every stream on that context, until none
/// of them is stopped. Each change is invalidated with a SYNC.
#[test]
fn stopped_streams_record_nothing_and_still_abort() {
    let mut s = smmu(Sim::new(QEMU_IDR)).unwrap();
    let (a, b) = (StreamId(0x8), StreamId(0x10));
    assert!(s.records(a));
    // CFGI_STE and SYNC, as any STE change.
    assert_eq!(cost(&mut s, |s| s.set_recording(a, false).unwrap()), (2, 2));
    assert!(!s.records(a) && s.stream_aborts(a) && s.silenced(a));
    assert_eq!(s.stream_context(a), None);
    assert_eq!(cost(&mut s, |s| s.set_recording(a, false).unwrap()), (0, 0));
    s.set_recording(a, true).unwrap();
    assert!(s.records(a) && s.stream_aborts(a) && !s.silenced(a));

    let ctx = s.alloc_context(0x4900_0000, 16, 0).unwrap();
    s.attach(a, ctx).unwrap();
    s.attach(b, ctx).unwrap();
    assert!(s.records(a) && s.records(b));
    // CFGI_ALL and SYNC: the CD is not known by its streams.
    assert_eq!(cost(&mut s, |s| s.set_recording(b, false).unwrap()), (2, 2));
    assert!(!s.records(a) && !s.records(b), "one context, one switch");
    assert_eq!(s.stream_context(a), Some(ctx), "translation untouched");
    // b leaves the context: a records again; b aborts silently.
    s.detach(b, ctx).unwrap();
    s.refresh_context_recording(ctx).unwrap();
    s.apply_recording(b).unwrap();
    assert!(s.records(a) && !s.records(b) && s.stream_aborts(b));
    // b comes back: the context is silenced again.
    s.attach(b, ctx).unwrap();
    s.apply_recording(b).unwrap();
    assert!(!s.records(a) && !s.records(b));
    s.set_recording(b, true).unwrap();
    assert!(s.records(a) && s.records(b));
}
