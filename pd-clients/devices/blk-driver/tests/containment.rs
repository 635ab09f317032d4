//! What one block client cannot do to another, and what a client sees
//! when its driver dies, on the server core and the simulated controller:
//!
//! - a request for blocks outside the client's share (below it, past it,
//!   straddling its end, or whose end wraps past 2^64) is answered
//!   `ERR_BLOCKS` with no device command, no server call and no byte of
//!   the disk or the data region changed;
//! - a driver that dies with requests taken and unanswered leaves them to
//!   its next life, which answers each `ERR_ABANDONED` when it takes the
//!   ring up, then serves on;
//! - answers go back in the order requests were taken.

mod support;

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use blk_driver::{
    BlockDriver, Error, Mode, DATA_IOVA, DATA_STRIDE, ERR_ABANDONED, ERR_BLOCKS, QUEUE_IOVA,
};
use blk_queue::{Request, RequestCode, Response, ResponseStatus};
use iommu_client::{DmaBuffer, Iommu};
use iommu_testkit::rig::{client, id, region};
use iommu_testkit::{MockHw, Rig, RigTransport};
use iommu_types::config::Region;
use nvme_driver::sim::{Config, SimMemory, SimNvme};
use scenarios::blk::{Next, Story};
use support::{DATA_BYTES, DATA_VA, DEVICES, QUEUE_BYTES, QUEUE_VA};

const BLOCK: usize = 512;
/// The simulated disk's blocks (Config::default()).
const DISK_BLOCKS: u64 = 4096;
/// The two clients' shares.
const SHARES: [Range<u64>; 2] = [100..200, 200..1200];

static REGIONS: [Region; 3] = [
    region(QUEUE_VA, QUEUE_BYTES, 0x8000_0000),
    region(DATA_VA, DATA_BYTES, 0x8100_0000),
    region(DATA_VA + 0x100_0000, DATA_BYTES, 0x8200_0000),
];

type Driver<'b> =
    BlockDriver<'b, RigTransport, &'b SimNvme<'b>, &'b SimMemory, &'b SimMemory, SimMemory>;

/// Two block clients' rings and data on one simulated controller and one
/// server; a driver can be started (and started again) over them.
struct Bench<'b> {
    rig: Rc<RefCell<Rig>>,
    calls: Rc<Cell<u64>>,
    nvme: &'b SimNvme<'b>,
    queues: DmaBuffer<&'b SimMemory>,
    data: [DmaBuffer<&'b SimMemory>; 2],
    data_mem: [&'b SimMemory; 2],
    rings: &'b [SimMemory; 2],
}

impl<'b> Bench<'b> {
    /// A driver's life: bring-up, then both clients with their shares.
    fn start(&'b self, mode: Mode) -> Driver<'b> {
        let iommu = Iommu::new(RigTransport::counted(&self.rig, 0, &self.calls));
        let mut driver = BlockDriver::start(iommu, self.nvme, &self.queues).expect("bring-up");
        for (k, share) in SHARES.iter().enumerate() {
            let got = driver
                .add_client(&self.rings[k], &self.data[k], mode, share.clone())
                .unwrap();
            assert_eq!(got, k);
        }
        driver
    }

    /// What the driver's supervisor does when it dies: everything the
    /// server holds for it revoked.
    fn revoke(&self) {
        self.rig.borrow_mut().server.reset_client(id(0)).unwrap();
    }
}

fn with_bench<T>(body: impl for<'b> FnOnce(&'b Bench<'b>) -> T) -> T {
    let rig = Rc::new(RefCell::new(Rig::new(
        MockHw::new(),
        &[client("nvme_driver")
            .regions(&REGIONS)
            .devices(&DEVICES)
            .build()],
    )));
    let queues = SimMemory::new(QUEUE_IOVA, QUEUE_BYTES as usize);
    let data = [
        SimMemory::new(DATA_IOVA, DATA_BYTES as usize),
        SimMemory::new(DATA_IOVA + DATA_STRIDE, DATA_BYTES as usize),
    ];
    let nvme = SimNvme::new(&[&queues, &data[0], &data[1]], Config::default());
    assert_eq!(nvme.config.blocks, DISK_BLOCKS);
    let rings = [
        SimMemory::new(0, blk_queue::region_bytes(16)),
        SimMemory::new(0, blk_queue::region_bytes(16)),
    ];
    for r in &rings {
        blk_queue::format(r, 16).unwrap();
    }
    let bench = Bench {
        rig,
        calls: Rc::new(Cell::new(0)),
        nvme: &nvme,
        queues: DmaBuffer::new(QUEUE_VA, QUEUE_BYTES, &queues),
        data: [
            DmaBuffer::new(DATA_VA, DATA_BYTES, &data[0]),
            DmaBuffer::new(DATA_VA + 0x100_0000, DATA_BYTES, &data[1]),
        ],
        data_mem: [&data[0], &data[1]],
        rings: &rings,
    };
    body(&bench)
}

fn request(code: RequestCode, block: u64, count: u32, id: u32) -> Request {
    Request {
        code,
        offset: 0,
        block,
        count,
        id,
    }
}

/// Every request that leaves client 0's share (100..200), in either
/// mode: refused with ERR_BLOCKS, no device command, no server call, the
/// disk and the client's buffer as they were.
#[test]
fn a_request_outside_its_share_touches_nothing() {
    let outside = [
        (99, 1, "just below"),
        (99, 2, "from below into it"),
        (199, 2, "from inside past its end"),
        (200, 1, "the next client's first block"),
        (150, 4000, "past the disk"),
        (u64::MAX, 2, "whose end wraps"),
        (u64::MAX - 100, 200, "whose end wraps past 0 into it"),
    ];
    for mode in [Mode::Static, Mode::Strict] {
        with_bench(|bench| {
            let mut driver = bench.start(mode);
            let mut ring = blk_queue::Client::new(&bench.rings[0]).unwrap();
            // The other client's blocks and the client's buffer hold marks.
            let mark = vec![0x5a; DATA_BYTES as usize];
            bench.data_mem[0].fill(0, &mark);
            let disk = bench.nvme.disk(0, DISK_BLOCKS as usize * BLOCK);
            let before = (bench.nvme.io_commands.get(), bench.calls.get());
            for code in [RequestCode::Read, RequestCode::Write] {
                for (i, &(block, count, what)) in outside.iter().enumerate() {
                    ring.enqueue(request(code, block, count, i as u32)).unwrap();
                    driver.serve(0);
                    assert_eq!(
                        ring.dequeue_response().unwrap(),
                        Some(Response {
                            id: i as u32,
                            status: ResponseStatus::Error(ERR_BLOCKS),
                            success_count: 0,
                        }),
                        "{mode:?} {code:?} of {count} blocks at {block} ({what})"
                    );
                }
            }
            assert_eq!(
                (bench.nvme.io_commands.get(), bench.calls.get()),
                before,
                "{mode:?}: a refused request reached the device or the server"
            );
            assert_eq!(bench.nvme.disk(0, DISK_BLOCKS as usize * BLOCK), disk);
            assert_eq!(bench.data_mem[0].get(0, DATA_BYTES as usize), mark);
            assert_eq!(driver.stats.foreign, 2 * outside.len() as u64);
            // Its share's edges are its own.
            ring.enqueue(request(RequestCode::Write, 100, 1, 90))
                .unwrap();
            // (Its own page: strict mode maps a page for one request.)
            let last = Request {
                offset: 0x1000,
                ..request(RequestCode::Write, 199, 1, 91)
            };
            ring.enqueue(last).unwrap();
            driver.serve(0);
            for id in [90, 91] {
                let r = ring.dequeue_response().unwrap().unwrap();
                assert_eq!((r.id, r.status), (id, ResponseStatus::Ok));
            }
            assert_eq!(&bench.nvme.disk(100 * BLOCK, BLOCK), &mark[..BLOCK]);
            assert_eq!(&bench.nvme.disk(199 * BLOCK, BLOCK), &mark[..BLOCK]);
        });
    }
}

/// A share the namespace does not hold, or an empty one, is refused when
/// the client is added.
#[test]
fn a_share_must_be_on_the_disk() {
    with_bench(|bench| {
        let iommu = Iommu::new(RigTransport::counted(&bench.rig, 0, &bench.calls));
        let mut driver = BlockDriver::start(iommu, bench.nvme, &bench.queues).unwrap();
        macro_rules! refused {
            ($driver:expr, $share:expr) => {
                $driver
                    .add_client(&bench.rings[0], &bench.data[0], Mode::Strict, $share)
                    .err()
            };
        }
        assert_eq!(
            refused!(driver, 4000..4097),
            Some(Error::Share {
                start: 4000,
                end: 4097,
                blocks: DISK_BLOCKS
            })
        );
        assert_eq!(
            refused!(driver, 10..10),
            Some(Error::Share {
                start: 10,
                end: 10,
                blocks: DISK_BLOCKS
            })
        );
        assert_eq!(refused!(driver, 0..DISK_BLOCKS), None);
    });
}

/// The driver dies with requests of both clients in flight (the device
/// never completes them); its supervisor revokes its DMA and it starts
/// again: the new life answers every request the old one took and did
/// not answer with ERR_ABANDONED, each with its id, in order, and serves
/// everything after. Requests queued and not yet taken are served.
#[test]
fn a_restarted_driver_answers_every_request_its_previous_life_took() {
    for mode in [Mode::Static, Mode::Strict] {
        with_bench(|bench| {
            let mut rings = [
                blk_queue::Client::new(&bench.rings[0]).unwrap(),
                blk_queue::Client::new(&bench.rings[1]).unwrap(),
            ];
            let mut driver = bench.start(mode);
            bench.nvme.swallow.set(true);
            for (k, ring) in rings.iter_mut().enumerate() {
                let at = SHARES[k].start;
                ring.enqueue(request(RequestCode::Write, at, 8, 1)).unwrap();
                ring.enqueue(request(RequestCode::Read, at, 8, 2)).unwrap();
                // Taken and sent; the device will never complete them.
                driver.take(k);
                assert_eq!(driver.unanswered(k), 2, "{mode:?}");
                assert_eq!(ring.dequeue_response(), Ok(None));
            }
            // Queued after the death: never taken by the old life.
            rings[0]
                .enqueue(request(RequestCode::Write, 100, 1, 3))
                .unwrap();
            #[allow(
                clippy::drop_non_drop,
                reason = "the driver dies here: its state is not used again"
            )]
            drop(driver);
            bench.revoke();
            bench.nvme.swallow.set(false);
            let mut driver = bench.start(mode);
            assert_eq!(driver.stats.abandoned, 4);
            for ring in &mut rings {
                for id in [1, 2] {
                    assert_eq!(
                        ring.dequeue_response(),
                        Ok(Some(Response {
                            id,
                            status: ResponseStatus::Error(ERR_ABANDONED),
                            success_count: 0
                        })),
                        "{mode:?}"
                    );
                }
                assert_eq!(ring.dequeue_response(), Ok(None));
            }
            driver.serve(0);
            let r = rings[0].dequeue_response().unwrap().unwrap();
            assert_eq!((r.id, r.status), (3, ResponseStatus::Ok));
            assert_eq!(driver.unanswered(0), 0);
            assert_eq!(driver.data_mappings(0), usize::from(mode == Mode::Static));
        });
    }
}

/// A refused request behind one in flight is answered after it: answers
/// keep the order requests were taken in, which is what lets the ring's
/// indices say what a dead driver owed.
#[test]
fn answers_keep_the_order_requests_were_taken_in() {
    with_bench(|bench| {
        let mut ring = blk_queue::Client::new(&bench.rings[0]).unwrap();
        let mut driver = bench.start(Mode::Strict);
        bench.nvme.swallow.set(true);
        ring.enqueue(request(RequestCode::Write, 100, 1, 1))
            .unwrap();
        ring.enqueue(request(RequestCode::Write, 5000, 1, 2))
            .unwrap();
        driver.take(0);
        // The refusal of 2 waits for 1.
        assert_eq!(ring.dequeue_response(), Ok(None));
        assert_eq!(driver.unanswered(0), 2);
        #[allow(
            clippy::drop_non_drop,
            reason = "the driver dies here: its state is not used again"
        )]
        drop(driver);
        bench.revoke();
        bench.nvme.swallow.set(false);
        let _driver = bench.start(Mode::Strict);
        let ids: Vec<(u32, ResponseStatus)> =
            std::iter::from_fn(|| ring.dequeue_response().unwrap())
                .map(|r| (r.id, r.status))
                .collect();
        assert_eq!(
            ids,
            [
                (1, ResponseStatus::Error(ERR_ABANDONED)),
                (2, ResponseStatus::Error(ERR_ABANDONED))
            ]
        );
    });
}

/// The whole story for both clients, each trying the other's blocks, with
/// the driver dying while both have requests in flight: every check
/// passes, and the disk holds each client's writes in its own share.
#[test]
fn the_story_survives_its_driver() {
    with_bench(|bench| {
        let mut rings = [
            blk_queue::Client::new(&bench.rings[0]).unwrap(),
            blk_queue::Client::new(&bench.rings[1]).unwrap(),
        ];
        let mut stories = [0, 1].map(|k| {
            Story::new(SHARES[k].start)
                .trying(SHARES[1 - k].start)
                .through_a_crash()
        });
        let mut out = [String::new(), String::new()];
        let mut driver = Some(bench.start(Mode::Strict));
        let mut armed = true;
        let mut done = [None, None];
        for _ in 0..32 {
            for k in 0..2 {
                if done[k].is_some() {
                    continue;
                }
                let data = bench.data_mem[k];
                match stories[k].step(&mut rings[k], data, &mut out[k]) {
                    Next::Done(ok) => done[k] = Some(ok),
                    _ => {
                        let d = driver.as_mut().unwrap();
                        if armed {
                            d.take(k);
                        } else {
                            d.serve(k);
                        }
                    }
                }
            }
            let d = driver.as_ref().unwrap();
            if armed && (0..2).all(|k| d.unanswered(k) > 0) {
                armed = false;
                drop(driver.take());
                bench.revoke();
                driver = Some(bench.start(Mode::Strict));
            }
        }
        assert_eq!(done, [Some(true), Some(true)], "{out:?}");
        for (k, out) in out.iter().enumerate() {
            let other = SHARES[1 - k].start;
            for line in [
                format!("ok - read of block {other}, another client's, refused (ERR_BLOCKS); my buffer untouched"),
                format!("ok - write to block {other}, another client's, refused (ERR_BLOCKS)"),
                "ok - 2 requests in flight when the driver died: answered ERR_ABANDONED".into(),
            ] {
                assert!(out.contains(&line), "missing `{line}` in:\n{out}");
            }
        }
        // What each wrote, in its own share, and nothing anywhere else.
        let disk = bench.nvme.disk(0, DISK_BLOCKS as usize * BLOCK);
        let mut expected = vec![0u8; disk.len()];
        for share in &SHARES {
            for range in scenarios::blk::written(share.start) {
                assert!(range.end <= share.end * BLOCK as u64);
                for x in range {
                    expected[x as usize] = scenarios::blk::pattern(x);
                }
            }
        }
        assert!(disk == expected, "the disk holds something no client wrote");
    });
}
