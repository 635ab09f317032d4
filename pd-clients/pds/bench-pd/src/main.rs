//! The benchmark PD (bench/system.xml, `make bench-sel4`): times protected
//! calls to the IOMMU server against the generic timer, run under QEMU's
//! `-icount shift=0` so that a tick is a fixed number of instructions
//! (`benchkit::icount`) and every figure is the same from run to run. Three loops,
//! each after a warm-up: a null request (VFIO_GET_API_VERSION, the least a
//! call can cost the server), IOMMU_IOAS_MAP + IOMMU_IOAS_UNMAP of one
//! 4 KiB page at a fixed IOVA of an IOAS its nvme device is attached to
//! (page tables written, the IOTLB invalidated), and 4 KiB writes through
//! the block driver in strict mode, the PD its own block client (the same
//! code as blk-driver's `examples/io_count`, which the host measurement
//! runs). Each loop gives instructions per round trip in all, and those
//! spent between the PD's call and the server's reply (the kernel and the
//! server), timed around each call by the transport.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod console;

use core::fmt::Write;

use blk_driver::{BlockDriver, Mode, DATA_IOVA};
use console::Console;
use iommu_client::{Access, DmaBuffer, Iommu, MicrokitTransport, Transport};
use microkit::{Channel, Handler, MessageInfo};
use pd_support::{iommu, spec};

/// Timed round trips per loop, and untimed ones before each.
const ROUNDS: u64 = 10_000;
const IOS: u64 = 1_000;
const WARM_UP: u64 = 16;
/// QEMU's nvme.
const NVME_IDS: (u16, u16) = (0x1b36, 0x0010);
/// The block client's share of the disk (4 MiB of 512-byte blocks).
const SHARE: core::ops::Range<u64> = 0..8192;

/// The Microkit transport, with the ticks spent inside its calls summed.
struct Timed<'t> {
    inner: &'t mut MicrokitTransport,
    ticks: u64,
}

impl Transport for Timed<'_> {
    fn write_page(&mut self, bytes: &[u8]) {
        self.inner.write_page(bytes)
    }

    fn read_page(&mut self, out: &mut [u8]) {
        self.inner.read_page(out)
    }

    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64) {
        let start = microkit::counter::ticks();
        let reply = self.inner.call(label, mrs);
        self.ticks += microkit::counter::ticks().wrapping_sub(start);
        reply
    }
}

struct Done;

impl Handler for Done {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(u64::from(iommu_proto::Errno::ENOTTY.code()), 0)
    }

    fn notified(&mut self, _: Channel) {}
}

fn init() -> Done {
    let Some(mut out) = Console::take() else {
        return Done;
    };
    match run(&mut out) {
        Ok(()) => {
            let _ = writeln!(out, "done");
        }
        Err(e) => {
            let _ = writeln!(out, "FAILED - {e}");
        }
    }
    Done
}

/// One loop's figures: all its ticks and those inside its calls.
fn report(
    out: &mut Console,
    what: &str,
    calls: u64,
    ppcs: u64,
    ticks: u64,
    in_calls: u64,
) -> Result<(), &'static str> {
    let frequency = microkit::counter::frequency();
    let all = benchkit::icount::per_call(ticks, frequency, calls).ok_or("no figure")?;
    let inside = benchkit::icount::per_call(in_calls, frequency, calls).ok_or("no figure")?;
    let _ = writeln!(
        out,
        "{what}: {calls} round trips ({ppcs} server calls each), {all} instructions each, \
         {inside} of them in the calls (ticks {ticks}, in calls {in_calls})"
    );
    Ok(())
}

fn run(out: &mut Console) -> Result<(), &'static str> {
    let frequency = microkit::counter::frequency();
    let _ = writeln!(
        out,
        "generic timer at {frequency} Hz: one tick is {} instructions under -icount shift=0",
        benchkit::icount::per_tick(frequency).ok_or("a frequency that does not divide 1 GHz")?
    );
    let spec = spec();
    let (cfg, regs) = pd_support::nvme::device().ok_or("device handed out twice")?;
    if cfg.ids() != Some(NVME_IDS) {
        return Err("no NVMe controller in my configuration page");
    }
    cfg.enable(pd_support::nvme::NVME_BAR_PADDR.get() as u32);
    // iommu.xml: the queues, the data region, the ring.
    let [Some(queues), Some(data), Some(ring), _] =
        pd_support::nvme::regions(spec).ok_or("regions handed out twice")?
    else {
        return Err("iommu.xml names the queues, data and ring regions");
    };
    let buffer = |k: usize, memory| {
        let r = spec.regions[k];
        DmaBuffer::new(r.vaddr, r.size, memory)
    };
    let (queues, data) = (buffer(0, queues), buffer(1, data));
    let mut plain = iommu(spec);
    let timed = Iommu::new(Timed {
        inner: plain.transport(),
        ticks: 0,
    });
    let mut driver = BlockDriver::start(timed, regs, &queues).map_err(|_| "bring-up failed")?;

    // A null request.
    let null = |d: &mut Iommu<Timed>| d.vfio_get_api_version().map(|_| ());
    for _ in 0..WARM_UP {
        null(&mut driver.iommu).map_err(|_| "VFIO_GET_API_VERSION failed")?;
    }
    driver.iommu.transport().ticks = 0;
    let start = microkit::counter::ticks();
    for _ in 0..ROUNDS {
        null(&mut driver.iommu).map_err(|_| "VFIO_GET_API_VERSION failed")?;
    }
    let ticks = microkit::counter::ticks() - start;
    let in_calls = driver.iommu.transport().ticks;
    report(out, "null request", ROUNDS, 1, ticks, in_calls)?;

    // MAP + UNMAP of the page a strict write of the data region's first
    // page maps, device-read.
    let map_unmap = |d: &mut BlockDriver<_, _, _, _, _>| {
        let m = d
            .iommu
            .map(&d.ioas, &data, 0, 0x1000, Access::Read, Some(DATA_IOVA))
            .map_err(|_| "IOMMU_IOAS_MAP failed")?;
        d.iommu.unmap(m).map_err(|_| "IOMMU_IOAS_UNMAP failed")
    };
    for _ in 0..WARM_UP {
        map_unmap(&mut driver)?;
    }
    driver.iommu.transport().ticks = 0;
    let start = microkit::counter::ticks();
    for _ in 0..ROUNDS {
        map_unmap(&mut driver)?;
    }
    let ticks = microkit::counter::ticks() - start;
    let in_calls = driver.iommu.transport().ticks;
    report(out, "MAP + UNMAP 4 KiB", ROUNDS, 2, ticks, in_calls)?;

    // Strict-mode 4 KiB writes: the client queues, the driver maps, has
    // the device write, unmaps and answers.
    blk_queue::format(&ring, 16).map_err(|_| "ring format")?;
    let k = driver
        .add_client(&ring, &data, Mode::Strict, SHARE)
        .map_err(|_| "the block client refused")?;
    let mut client = blk_queue::Client::new(&ring).map_err(|_| "ring")?;
    let mut id = 0;
    let mut io = |d: &mut BlockDriver<_, _, _, _, _>| {
        id += 1;
        client
            .enqueue(blk_queue::Request {
                code: blk_queue::RequestCode::Write,
                offset: 0,
                block: 0,
                count: 8,
                id,
            })
            .map_err(|_| "enqueue")?;
        if d.serve(k) != 1 {
            return Err("the write did not complete");
        }
        match client.dequeue_response() {
            Ok(Some(r)) if r.id == id && r.status == blk_queue::ResponseStatus::Ok => Ok(()),
            _ => Err("the write failed"),
        }
    };
    for _ in 0..WARM_UP {
        io(&mut driver)?;
    }
    driver.iommu.transport().ticks = 0;
    let start = microkit::counter::ticks();
    for _ in 0..IOS {
        io(&mut driver)?;
    }
    let ticks = microkit::counter::ticks() - start;
    let in_calls = driver.iommu.transport().ticks;
    report(out, "strict 4 KiB write", IOS, 2, ticks, in_calls)?;
    let _ = writeln!(out, "device misbehaviour: {}", driver.nvme.counters());
    Ok(())
}

microkit::declare_pd!(init);
