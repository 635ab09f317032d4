//! The driver against the simulated controller in `sim`: bring-up and
//! identify, data round trips through PRP1, PRP2 and PRP lists, a DMA
//! the "IOMMU" stops, phase-tag wrap, and broken or hostile devices:
//! completions with a wrong id, duplicated or with a stale phase tag, a
//! controller that stops answering (reset, and serving again) or does not
//! stop (the driver down, the command's slot held); the polls each costs.

use nvme_driver::sim::{Absent, Config, SimMemory, SimNvme, FIRMWARE, MODEL, PAGE, SERIAL};
use nvme_driver::{
    Completion, Error, IoOp, Limits, Nvme, QueueMemory, Status, COMMAND_POLLS, MAX_DEPTH,
    PRP_LIST_ENTRIES,
};

const QUEUE_IOVA: u64 = 0x10_0000;
const DATA_IOVA: u64 = 0x800_0000;
/// Nothing is mapped here.
const UNMAPPED: u64 = 0xdead_0000;
/// Enough for tests that expect a wait to run out.
const SHORT: u32 = 1000;

type Driver<'m, 'a> = Nvme<'m, &'a SimNvme<'a>, SimMemory>;

fn queue_memory(depth: u16) -> SimMemory {
    SimMemory::new(QUEUE_IOVA, QueueMemory::<SimMemory>::bytes_needed(depth))
}

fn whole(mem: &SimMemory) -> QueueMemory<'_, SimMemory> {
    QueueMemory {
        mem,
        offset: 0,
        iova: mem.iova,
        len: mem.len(),
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

/// IOVAs of the 4 KiB pages holding `len` bytes at `offset` of the data
/// memory: the first as it is, the rest page aligned.
fn pages(offset: u64, len: u64) -> Vec<u64> {
    let start = DATA_IOVA + offset;
    let end = start + len;
    let mut pages = vec![start];
    let mut page = (start & !(PAGE - 1)) + PAGE;
    while page < end {
        pages.push(page);
        page += PAGE;
    }
    pages
}

fn ok(cid: u16) -> Completion {
    Completion {
        cid,
        status: Status::Success,
    }
}

/// Writes a pattern from data offset `from` to `lba`, reads it back into
/// offset `to`, and checks the memory and the disk.
fn round_trip(
    nvme: &mut Driver<'_, '_>,
    dev: &SimNvme<'_>,
    data: &SimMemory,
    lba: u64,
    blocks: u32,
    (from, to): (u64, u64),
    seed: u8,
) {
    let len = u64::from(blocks) * u64::from(nvme.block_size());
    let bytes = pattern(seed, len as usize);
    data.fill(from as usize, &bytes);
    let cid = nvme
        .submit(IoOp::Write, lba, blocks, &pages(from, len))
        .unwrap();
    assert_eq!(nvme.wait(cid), Ok(ok(cid)));
    let block = u64::from(nvme.block_size());
    assert_eq!(dev.disk((lba * block) as usize, len as usize), bytes);

    data.fill(to as usize, &vec![0; len as usize]);
    let cid = nvme
        .submit(IoOp::Read, lba, blocks, &pages(to, len))
        .unwrap();
    assert_eq!(nvme.wait(cid), Ok(ok(cid)));
    assert_eq!(data.get(to as usize, len as usize), bytes);
}

#[test]
fn init_reads_identify_and_creates_queues() {
    let queues = queue_memory(16);
    let dev = SimNvme::new(&[&queues], Config::default());
    let nvme = Nvme::init(&dev, whole(&queues), 16).unwrap();
    assert_eq!(nvme.model(), MODEL);
    assert_eq!(nvme.serial(), SERIAL);
    assert_eq!(nvme.firmware(), FIRMWARE);
    assert_eq!(nvme.blocks(), 4096);
    assert_eq!(nvme.block_size(), 512);
    assert_eq!(nvme.max_transfer(), 512 * 1024);
    assert_eq!(nvme.depth(), 16);
    assert_eq!(nvme.in_flight(), 0);
    // Enabled with 64-byte SQ entries, 16-byte CQ entries, 4 KiB pages, NVM.
    assert_eq!(dev.cc(), 1 | (6 << 16) | (4 << 20));
    let (regs, result) = nvme.disable();
    assert_eq!(result, Ok(()));
    assert_eq!(regs.cc() & 1, 0);
}

#[test]
fn one_block_round_trip() {
    let queues = queue_memory(8);
    let data = SimMemory::new(DATA_IOVA, 16 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init(&dev, whole(&queues), 8).unwrap();
    round_trip(&mut nvme, &dev, &data, 0, 1, (0, PAGE), 1);
    round_trip(&mut nvme, &dev, &data, 4095, 1, (0x200, 0x1e00), 2);
    let seen = dev.last_io.get().unwrap();
    assert_eq!((seen.prp1, seen.prp2), (DATA_IOVA + 0x1e00, 0));
}

#[test]
fn two_page_transfers_use_prp2_directly() {
    let queues = queue_memory(8);
    let data = SimMemory::new(DATA_IOVA, 16 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init(&dev, whole(&queues), 8).unwrap();
    // Two whole pages.
    round_trip(&mut nvme, &dev, &data, 10, 16, (0, 4 * PAGE), 3);
    let seen = dev.last_io.get().unwrap();
    assert_eq!(
        (seen.prp1, seen.prp2),
        (DATA_IOVA + 4 * PAGE, DATA_IOVA + 5 * PAGE)
    );
    assert_eq!((seen.slba, seen.nlb), (10, 16));
    // One page's worth starting mid-page: still two pages.
    round_trip(&mut nvme, &dev, &data, 100, 8, (0x600, 8 * PAGE + 0xa00), 4);
    let seen = dev.last_io.get().unwrap();
    assert_eq!(
        (seen.prp1, seen.prp2),
        (DATA_IOVA + 8 * PAGE + 0xa00, DATA_IOVA + 9 * PAGE)
    );
}

#[test]
fn longer_transfers_use_the_slots_prp_list() {
    let depth = 8;
    let queues = queue_memory(depth);
    let data = SimMemory::new(DATA_IOVA, 32 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init(&dev, whole(&queues), depth).unwrap();
    // 20 KiB from an unaligned start: 6 pages, PRP2 -> a list of 5.
    round_trip(&mut nvme, &dev, &data, 7, 40, (0x200, 12 * PAGE + 0x400), 5);
    let seen = dev.last_io.get().unwrap();
    assert_eq!(seen.prp1, DATA_IOVA + 12 * PAGE + 0x400);
    // The list lies in the queue memory's PRP-list pages (after the admin
    // and I/O queues and the identify page), one page per slot.
    let lists = QUEUE_IOVA + QueueMemory::<SimMemory>::bytes_needed(depth) as u64
        - u64::from(depth - 1) * PAGE;
    assert!(
        seen.prp2 >= lists && seen.prp2.is_multiple_of(PAGE),
        "{seen:?}"
    );
    let list = queues.get((seen.prp2 - QUEUE_IOVA) as usize, 5 * 8);
    let entries: Vec<u64> = list
        .chunks(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(entries, pages(12 * PAGE + 0x400, 40 * 512)[1..]);
}

#[test]
fn largest_transfers_with_4k_blocks() {
    let queues = queue_memory(4);
    let data = SimMemory::new(DATA_IOVA, 260 * PAGE as usize);
    let config = Config {
        block_shift: 12,
        blocks: 1024,
        ..Config::default()
    };
    let dev = SimNvme::new(&[&queues, &data], config);
    let mut nvme = Nvme::init(&dev, whole(&queues), 4).unwrap();
    assert_eq!(nvme.block_size(), 4096);
    // MDTS 7: 128 pages, 512 KiB.
    round_trip(&mut nvme, &dev, &data, 800, 128, (0, 130 * PAGE), 6);
    assert_eq!(
        nvme.submit(IoOp::Read, 0, 129, &pages(0, 129 * PAGE)),
        Err(Error::TooLarge)
    );
}

#[test]
fn one_prp_list_holds_512_entries_and_no_more() {
    let queues = queue_memory(4);
    let data = SimMemory::new(DATA_IOVA, 1030 * PAGE as usize);
    // No MDTS: the PRP list is the only limit.
    let config = Config {
        block_shift: 12,
        blocks: 2048,
        mdts: 0,
        ..Config::default()
    };
    let dev = SimNvme::new(&[&queues, &data], config);
    let mut nvme = Nvme::init(&dev, whole(&queues), 4).unwrap();
    assert_eq!(nvme.max_transfer(), (PRP_LIST_ENTRIES as u64) * PAGE);
    // 512 pages from an unaligned start: 513 pages, a full list.
    let len = 512 * PAGE;
    let bytes = pattern(7, len as usize);
    data.fill(0x800, &bytes);
    let cid = nvme
        .submit(IoOp::Write, 3, 512, &pages(0x800, len))
        .unwrap();
    assert_eq!(nvme.wait(cid), Ok(ok(cid)));
    assert_eq!(dev.disk(3 * 4096, len as usize), bytes);
    // One block more: beyond one list.
    assert_eq!(
        nvme.submit(IoOp::Write, 3, 513, &pages(0, 513 * PAGE)),
        Err(Error::TooLarge)
    );
}

#[test]
fn a_dma_the_iommu_stops_is_a_data_transfer_error_and_the_driver_goes_on() {
    let queues = queue_memory(8);
    let data = SimMemory::new(DATA_IOVA, 16 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init(&dev, whole(&queues), 8).unwrap();
    let before = dev.disk(0, 512);
    // The data page itself is unmapped.
    let cid = nvme.submit(IoOp::Write, 0, 1, &[UNMAPPED]).unwrap();
    let done = nvme.wait(cid).unwrap();
    assert_eq!(done.status, Status::DataTransferError);
    assert_eq!(dev.disk(0, 512), before);
    // A page in the middle of a PRP list.
    let mut list = pages(0, 4 * PAGE);
    list[2] = UNMAPPED;
    let cid = nvme.submit(IoOp::Read, 0, 32, &list).unwrap();
    assert_eq!(nvme.wait(cid).unwrap().status, Status::DataTransferError);
    // The driver and device carry on.
    round_trip(&mut nvme, &dev, &data, 1, 24, (0x100, 8 * PAGE), 8);
    assert_eq!(nvme.in_flight(), 0);
}

/// What QEMU reports as a data transfer error for certain: a PRP list it
/// cannot fetch (its data-page DMA goes through a bounce buffer instead).
#[test]
fn an_unreachable_prp_list_is_a_data_transfer_error() {
    let depth = 4;
    let queues = queue_memory(depth);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init(&dev, whole(&queues), depth).unwrap();
    let end = QUEUE_IOVA + queues.len() as u64;
    let lists = end - u64::from(depth - 1) * PAGE;
    dev.blocked.borrow_mut().push((lists, end));
    let cid = nvme
        .submit(IoOp::Write, 0, 24, &pages(0, 24 * 512))
        .unwrap();
    assert_eq!(nvme.wait(cid).unwrap().status, Status::DataTransferError);
    assert_eq!(dev.last_io.get().unwrap().prp2 / PAGE, lists / PAGE);
    // Two pages need no list.
    round_trip(&mut nvme, &dev, &data, 0, 16, (0, 2 * PAGE), 10);
    dev.blocked.borrow_mut().clear();
    round_trip(&mut nvme, &dev, &data, 0, 24, (0, 4 * PAGE), 11);
}

#[test]
fn the_cq_phase_wraps_over_many_more_commands_than_the_depth() {
    let depth = 4;
    let queues = queue_memory(depth);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init(&dev, whole(&queues), depth).unwrap();
    // One at a time: the CQ wraps every 4 commands.
    for i in 0..50u64 {
        round_trip(&mut nvme, &dev, &data, i, 1, (0, PAGE), i as u8);
    }
    // Batches that fill every slot; completions come back through poll.
    for round in 0..20u64 {
        let mut cids = Vec::new();
        for slot in 0..3u64 {
            let lba = round * 3 + slot;
            let cid = nvme
                .submit(IoOp::Write, lba, 1, &[DATA_IOVA + slot * 512])
                .unwrap();
            cids.push(cid);
        }
        assert_eq!(nvme.in_flight(), 3);
        assert_eq!(
            nvme.submit(IoOp::Write, 0, 1, &[DATA_IOVA]),
            Err(Error::QueueFull)
        );
        let mut done = Vec::new();
        while let Some(c) = nvme.poll().unwrap() {
            assert_eq!(c.status, Status::Success);
            done.push(c.cid);
        }
        done.sort();
        cids.sort();
        assert_eq!(done, cids);
        assert_eq!(nvme.in_flight(), 0);
    }
    assert_eq!(dev.io_commands.get(), 100 + 60);
}

#[test]
fn wait_keeps_other_completions_for_poll() {
    let queues = queue_memory(8);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init(&dev, whole(&queues), 8).unwrap();
    let a = nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]).unwrap();
    let b = nvme.submit(IoOp::Read, 1, 1, &[DATA_IOVA + 512]).unwrap();
    let c = nvme.submit(IoOp::Read, 2, 1, &[DATA_IOVA + 1024]).unwrap();
    assert_eq!(nvme.wait(c), Ok(ok(c)));
    assert_eq!(nvme.wait(c), Err(Error::NotInFlight(c)));
    assert_eq!(nvme.poll(), Ok(Some(ok(a))));
    assert_eq!(nvme.wait(b), Ok(ok(b)));
    assert_eq!(nvme.poll(), Ok(None));
    assert_eq!(nvme.wait(200), Err(Error::NotInFlight(200)));
}

#[test]
fn bad_requests_are_refused_before_the_device_sees_them() {
    let queues = queue_memory(8);
    let dev = SimNvme::new(&[&queues], Config::default());
    let mut nvme = Nvme::init(&dev, whole(&queues), 8).unwrap();
    let page = DATA_IOVA;
    let cases: &[(u64, u32, &[u64], Error)] = &[
        (0, 0, &[page], Error::ZeroBlocks),
        (4096, 1, &[page], Error::OutOfRange),
        (4090, 7, &[page, page + PAGE], Error::OutOfRange),
        (u64::MAX, 1, &[page], Error::OutOfRange),
        (0, 65537, &[page], Error::TooLarge),
        (0, 1, &[], Error::PageCount),
        (0, 1, &[page, page + PAGE], Error::PageCount),
        (0, 9, &[page], Error::PageCount),
        (0, 1, &[page + 2], Error::Misaligned),
        (0, 9, &[page, page + 0x200], Error::Misaligned),
        // 512 bytes from the last 256 of a page: two pages needed.
        (0, 1, &[page + 0xf00], Error::PageCount),
    ];
    for (lba, blocks, pages, error) in cases {
        assert_eq!(
            nvme.submit(IoOp::Write, *lba, *blocks, pages),
            Err(*error),
            "lba {lba} blocks {blocks} pages {pages:x?}"
        );
    }
    assert_eq!(dev.io_commands.get(), 0);
    assert_eq!(nvme.in_flight(), 0);
}

#[test]
fn queue_memory_and_depth_are_checked() {
    let queues = queue_memory(8);
    let dev = SimNvme::new(&[&queues], Config::default());
    let short = QueueMemory {
        len: queues.len() - 1,
        ..whole(&queues)
    };
    assert_eq!(Nvme::init(&dev, short, 8).err(), Some(Error::QueueMemory));
    let unaligned = QueueMemory {
        iova: QUEUE_IOVA + 0x200,
        ..whole(&queues)
    };
    assert_eq!(
        Nvme::init(&dev, unaligned, 8).err(),
        Some(Error::QueueMemory)
    );
    let wraps = QueueMemory {
        iova: !(PAGE - 1),
        ..whole(&queues)
    };
    assert_eq!(Nvme::init(&dev, wraps, 8).err(), Some(Error::QueueMemory));
    for depth in [0, 1, MAX_DEPTH + 1] {
        assert_eq!(
            Nvme::init(&dev, whole(&queues), depth).err(),
            Some(Error::Depth)
        );
    }
    // MQES bounds the depth too.
    let small = SimNvme::new(
        &[&queues],
        Config {
            cap: Config::default().cap & !0xffff | 3,
            ..Config::default()
        },
    );
    assert_eq!(
        Nvme::init(&small, whole(&queues), 8).err(),
        Some(Error::Depth)
    );
    assert!(Nvme::init(&small, whole(&queues), 4).is_ok());
    // The queue memory may start anywhere in the driver's memory.
    let big = SimMemory::new(QUEUE_IOVA - 0x3000, queues.len() + 0x3000);
    let dev = SimNvme::new(&[&big], Config::default());
    let shifted = QueueMemory {
        mem: &big,
        offset: 0x3000,
        iova: QUEUE_IOVA,
        len: queues.len(),
    };
    assert!(Nvme::init(&dev, shifted, 8).is_ok());
}

#[test]
fn doorbell_stride_follows_cap_dstrd() {
    let queues = queue_memory(4);
    let data = SimMemory::new(DATA_IOVA, 4 * PAGE as usize);
    let config = Config {
        cap: Config::default().cap | (3 << 32),
        ..Config::default()
    };
    let dev = SimNvme::new(&[&queues, &data], config);
    let mut nvme = Nvme::init(&dev, whole(&queues), 4).unwrap();
    for i in 0..10 {
        round_trip(&mut nvme, &dev, &data, i, 2, (0, PAGE), i as u8);
    }
}

#[test]
fn controllers_the_driver_cannot_use_are_refused() {
    let queues = queue_memory(4);
    let default = Config::default();
    let cases = [
        (
            Config {
                cap: default.cap | (1 << 48),
                ..default.clone()
            },
            Error::PageSize,
        ),
        (
            Config {
                cap: default.cap & !(0xff << 37),
                ..default.clone()
            },
            Error::CommandSet,
        ),
        (
            Config {
                sqes: 0x77,
                ..default.clone()
            },
            Error::Unsupported,
        ),
        (
            Config {
                cqes: 0x55,
                ..default.clone()
            },
            Error::Unsupported,
        ),
        (
            Config {
                metadata: 8,
                ..default.clone()
            },
            Error::Unsupported,
        ),
        (
            Config {
                block_shift: 8,
                ..default.clone()
            },
            Error::Unsupported,
        ),
        (
            Config {
                blocks: 0,
                ..default.clone()
            },
            Error::NoNamespace,
        ),
    ];
    for (config, error) in cases {
        let dev = SimNvme::new(&[&queues], config);
        assert_eq!(Nvme::init(&dev, whole(&queues), 4).err(), Some(error));
    }
    assert_eq!(
        Nvme::init(Absent, whole(&queues), 4).err(),
        Some(Error::NoDevice)
    );
}

#[test]
fn a_controller_that_never_becomes_ready_times_out() {
    let queues = queue_memory(4);
    let dev = SimNvme::new(&[&queues], Config::default());
    dev.never_ready.set(true);
    assert_eq!(
        Nvme::init_with_poll_limit(&dev, whole(&queues), 4, SHORT).err(),
        Some(Error::Timeout)
    );
    // Left disabled: it must not keep using the memory.
    assert_eq!(dev.cc() & 1, 0);
}

#[test]
fn a_fatal_controller_is_an_error() {
    let queues = queue_memory(4);
    let dev = SimNvme::new(&[&queues], Config::default());
    dev.fatal_on_enable.set(true);
    assert_eq!(
        Nvme::init_with_poll_limit(&dev, whole(&queues), 4, SHORT).err(),
        Some(Error::Fatal)
    );
}

/// The I/O CQ: the fourth page (after the admin SQ and CQ and the I/O SQ).
const IO_CQ: usize = 3 * PAGE as usize;
/// The I/O SQ, where the device reads the command ids.
const IO_SQ: usize = 2 * PAGE as usize;

fn timed_out(cid: u16) -> Completion {
    Completion {
        cid,
        status: Status::TimedOut,
    }
}

/// Serves as a block driver does: waits for every command it has
/// outstanding, keeping those the driver does not answer. Returns the
/// queue memory reads it cost.
fn serve(nvme: &mut Driver<'_, '_>, queues: &SimMemory, outstanding: &mut Vec<u16>) -> u64 {
    let before = queues.reads();
    outstanding.retain(|&cid| nvme.wait(cid).is_err());
    queues.reads() - before
}

#[test]
fn a_completion_with_a_wrong_id_is_ignored_and_its_command_fails_at_its_deadline() {
    let queues = queue_memory(8);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), 8, SHORT).unwrap();
    let before = nvme.counters();
    // Unknown slots, a slot with nothing in flight, and slot 0 (the one
    // in flight) under another generation.
    for (round, wrong) in [6, 0x1234, u16::MAX, 0x0300].into_iter().enumerate() {
        dev.wrong_cid.set(Some(wrong));
        let cid = nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]).unwrap();
        assert_eq!(nvme.wait(cid), Ok(timed_out(cid)), "id {wrong:#x}");
        assert_eq!(nvme.in_flight(), 0);
        let counters = nvme.counters();
        let round = round as u64 + 1;
        assert_eq!(counters.ignored - before.ignored, round);
        assert_eq!(counters.timed_out, round);
        assert_eq!(counters.resets, round);
        assert_eq!(dev.resets.get(), round);
        // The wait ended at the deadline, not before it.
        assert!(counters.polls >= before.polls + u64::from(SHORT) * round);
    }
    // The reset brought the queues back: the driver serves on.
    round_trip(&mut nvme, &dev, &data, 0, 1, (0, PAGE), 9);
    assert!(!nvme.is_down());
}

#[test]
fn a_duplicated_completion_is_ignored_and_does_not_complete_the_next_command() {
    let queues = queue_memory(8);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), 8, SHORT).unwrap();
    dev.duplicate.set(true);
    let first = nvme.submit(IoOp::Write, 0, 1, &[DATA_IOVA]).unwrap();
    assert_eq!(nvme.wait(first), Ok(ok(first)));
    // The next command takes the same slot; the device fails it. The
    // success still in the CQ is the first command's, posted again.
    let next = nvme.submit(IoOp::Read, 0, 1, &[UNMAPPED]).unwrap();
    assert_eq!(next, first);
    assert_eq!(nvme.wait(next).unwrap().status, Status::DataTransferError);
    assert_eq!(nvme.counters().ignored, 1);
    assert_eq!(nvme.poll(), Ok(None));
    // The same through poll: the duplicate arrives while the slot is done
    // and not yet taken.
    dev.duplicate.set(true);
    let a = nvme.submit(IoOp::Write, 1, 1, &[DATA_IOVA]).unwrap();
    assert_eq!(nvme.poll(), Ok(Some(ok(a))));
    assert_eq!(nvme.poll(), Ok(None));
    assert_eq!(nvme.counters().ignored, 2);
    assert_eq!(nvme.counters().resets, 0);
    round_trip(&mut nvme, &dev, &data, 2, 1, (0, PAGE), 3);
}

#[test]
fn a_completion_with_a_stale_phase_is_not_taken_and_the_reset_restarts_the_queue() {
    let depth = 4;
    let queues = queue_memory(depth);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), depth, SHORT).unwrap();
    // Around the CQ once, so that the stale tag is the first pass's.
    for i in 0..5u64 {
        round_trip(&mut nvme, &dev, &data, i, 1, (0, PAGE), i as u8);
    }
    dev.stale_phase.set(true);
    let stale = nvme.submit(IoOp::Write, 7, 1, &[DATA_IOVA]).unwrap();
    // Completed on the device, posted where the driver looks next, but
    // with the tag of the previous pass: it is not new.
    assert_eq!(dev.disk(7 * 512, 512), data.get(0, 512));
    assert_eq!(nvme.poll(), Ok(None));
    // One poll later, due one poll later.
    let behind = nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA + 512]).unwrap();
    assert_eq!(nvme.wait(stale), Ok(timed_out(stale)));
    // The command behind it completed too, but its entry sat beyond the
    // stale one: the reset failed it.
    assert_eq!(
        nvme.wait(behind),
        Ok(Completion {
            cid: behind,
            status: Status::Reset
        })
    );
    let counters = nvme.counters();
    assert_eq!((counters.timed_out, counters.resets), (1, 1));
    // The queue starts afresh: phase 1 at entry 0, many times around.
    for i in 0..10u64 {
        round_trip(&mut nvme, &dev, &data, i, 1, (0, PAGE), 20 + i as u8);
    }
    assert_eq!(nvme.counters().resets, 1);
}

#[test]
fn a_controller_that_stops_answering_is_reset_and_serves_again() {
    let depth = 4;
    let queues = queue_memory(depth);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), depth, SHORT).unwrap();
    dev.unresponsive.set(true);
    dev.late_completions.set(true);
    let cids: Vec<u16> = (0..3)
        .map(|i| nvme.submit(IoOp::Read, i, 1, &[DATA_IOVA]).unwrap())
        .collect();
    assert_eq!(
        nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]),
        Err(Error::QueueFull)
    );
    // Submitted together, due together: all three time out at once.
    for &cid in &cids {
        assert_eq!(nvme.wait(cid), Ok(timed_out(cid)));
    }
    assert_eq!(nvme.in_flight(), 0);
    assert_eq!(dev.resets.get(), 1);
    assert!(!dev.unresponsive.get(), "the reset cures the controller");
    // It now posts the three completions it owed, late, ahead of the new
    // command's; they name the slots' previous generation.
    let next = nvme.submit(IoOp::Read, 0, 1, &[UNMAPPED]).unwrap();
    assert_eq!(nvme.wait(next).unwrap().status, Status::DataTransferError);
    let counters = nvme.counters();
    assert_eq!(counters.ignored, 3);
    assert_eq!((counters.timed_out, counters.resets), (3, 1));
    for i in 0..6u64 {
        round_trip(&mut nvme, &dev, &data, i, 1, (0, PAGE), i as u8);
    }
}

/// Fail closed: until the controller has stopped, a command that timed
/// out keeps its slot, its command id and its PRP list, and its caller
/// hears nothing (the device may still reach its buffers).
#[test]
fn a_controller_that_does_not_stop_leaves_the_driver_down_and_the_slot_held() {
    let depth = 4;
    let queues = queue_memory(depth);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), depth, SHORT).unwrap();
    dev.unresponsive.set(true);
    dev.stuck_enabled.set(true);
    // Three pages: its PRP2 is the slot's PRP list.
    let cid = nvme.submit(IoOp::Read, 0, 24, &pages(0, 24 * 512)).unwrap();
    let list_at = (dev.last_io.get().unwrap().prp2 - QUEUE_IOVA) as usize;
    let list = queues.get(list_at, PAGE as usize);
    assert_eq!(nvme.wait(cid), Err(Error::Down));
    assert!(nvme.is_down());
    assert_eq!(nvme.in_flight(), 1);
    assert_eq!(dev.cc() & 1, 1, "the controller did not stop");
    // Nothing goes to the device, nothing costs a poll.
    let reads = queues.reads();
    let commands = dev.io_commands.get();
    assert_eq!(
        nvme.submit(IoOp::Read, 0, 24, &pages(0x800, 24 * 512)),
        Err(Error::Down)
    );
    assert_eq!(nvme.poll(), Err(Error::Down));
    assert_eq!(nvme.wait(cid), Err(Error::Down));
    assert_eq!((queues.reads(), dev.io_commands.get()), (reads, commands));
    assert_eq!(queues.get(list_at, PAGE as usize), list);
    // Still stuck: a reset fails again and changes nothing.
    assert_eq!(nvme.reset(), Err(Error::Timeout));
    assert_eq!(nvme.in_flight(), 1);
    // The controller stops now: the command fails, its slot is free.
    dev.stuck_enabled.set(false);
    assert_eq!(nvme.reset(), Ok(()));
    assert!(!nvme.is_down());
    assert_eq!(nvme.wait(cid), Ok(timed_out(cid)));
    assert_eq!(nvme.counters().resets, 3);
    round_trip(&mut nvme, &dev, &data, 0, 24, (0, 4 * PAGE), 1);
}

/// Counting work: a command whose completion never comes costs the serve
/// that reaches its deadline, and no serve after it.
#[test]
fn later_serves_do_not_pay_for_a_stuck_command() {
    let queues = queue_memory(8);
    let data = SimMemory::new(DATA_IOVA, 8 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), 8, SHORT).unwrap();
    let mut outstanding = Vec::new();
    dev.wrong_cid.set(Some(0x77));
    outstanding.push(nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]).unwrap());
    let first = serve(&mut nvme, &queues, &mut outstanding);
    let mut later = Vec::new();
    for i in 0..20u64 {
        for j in 0..3 {
            let lba = i * 3 + j;
            outstanding.push(
                nvme.submit(IoOp::Write, lba, 1, &[DATA_IOVA + j * 512])
                    .unwrap(),
            );
        }
        later.push(serve(&mut nvme, &queues, &mut outstanding));
    }
    // A status read and an entry read per completion, and a read that
    // finds nothing new now and then: no serve waits for the stuck one.
    assert!(
        later.iter().all(|&cost| cost <= 3 * 3),
        "reads per later serve: {later:?}"
    );
    assert!(outstanding.is_empty(), "every command was answered");
    assert!(first >= u64::from(SHORT), "the deadline is {SHORT} polls");
    assert_eq!(nvme.counters().timed_out, 1);
}

#[test]
fn a_device_that_never_completes_fails_each_command_at_its_deadline() {
    let queues = queue_memory(4);
    let dev = SimNvme::new(&[&queues], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), 4, SHORT).unwrap();
    dev.swallow.set(true);
    for round in 1..=5u64 {
        let cid = nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]).unwrap();
        assert_eq!(nvme.wait(cid), Ok(timed_out(cid)));
        assert_eq!(nvme.poll(), Ok(None));
        // Each reset gives the slots back: the queue never fills.
        assert_eq!(nvme.in_flight(), 0);
        assert_eq!(nvme.counters().resets, round);
    }
    // Through poll alone, too: the deadline counts its reads.
    let cid = nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]).unwrap();
    let mut polls = 0;
    let done = loop {
        polls += 1;
        if let Some(done) = nvme.poll().unwrap() {
            break done;
        }
    };
    assert_eq!(done, timed_out(cid));
    assert!(polls <= SHORT + 1, "{polls} polls");
}

/// An admin command whose completion never comes leaves bring-up failed
/// and the controller disabled; after bring-up, it resets the controller.
#[test]
fn an_admin_command_that_never_completes_is_bounded() {
    let queues = queue_memory(4);
    let dev = SimNvme::new(&[&queues], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), 4, SHORT).unwrap();
    // An opcode the controller refuses: answered, no reset.
    let vendor = nvme_driver::Command {
        opcode: 0xc0,
        ..Default::default()
    };
    assert!(matches!(nvme.admin(&vendor), Err(Error::Command(_))));
    assert_eq!(nvme.counters().resets, 0);
    // Admin completions with a wrong id are ignored: the command times out.
    dev.wrong_admin_cid.set(true);
    assert_eq!(nvme.admin(&vendor), Err(Error::Timeout));
    assert!(nvme.counters().ignored >= 1);
    assert_eq!(nvme.counters().resets, 1);
    assert!(!nvme.is_down());
}

/// Garbage completion entries written straight into the I/O CQ with the
/// phase tag the driver expects: completions or ignored, never a panic.
#[test]
fn garbage_completions_never_panic() {
    let depth = 4;
    let queues = queue_memory(depth);
    let data = SimMemory::new(DATA_IOVA, 4 * PAGE as usize);
    let dev = SimNvme::new(&[&queues, &data], Config::default());
    // Deadlines far off: no reset restarts the CQ under the garbage.
    let limits = Limits {
        command: COMMAND_POLLS,
        ..Limits::all(SHORT)
    };
    let mut nvme = Nvme::init_with_limits(&dev, whole(&queues), depth, limits).unwrap();
    // The device takes commands and completes none: only garbage arrives.
    dev.swallow.set(true);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut head = 0usize;
    let mut phase = 1u8;
    let mut completed = 0u64;
    for _ in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut entry = [0u8; 16];
        entry[..8].copy_from_slice(&seed.to_le_bytes());
        entry[8..].copy_from_slice(&seed.rotate_left(29).to_le_bytes());
        // Now and then an id the driver gave out, on the right queue, as
        // a device that reads the SQ knows them: some match.
        if seed.is_multiple_of(3) {
            let at = IO_SQ + (seed >> 40) as usize % usize::from(depth) * 64 + 2;
            let cid = queues.get(at, 2);
            entry[10..14].copy_from_slice(&[1, 0, cid[0], cid[1]]);
        }
        entry[14] = (entry[14] & !1) | phase;
        queues.fill(IO_CQ + head * 16, &entry);
        head = (head + 1) % usize::from(depth);
        if head == 0 {
            phase ^= 1;
        }
        if seed.is_multiple_of(5) {
            let _ = nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]);
        }
        match nvme.poll() {
            Ok(Some(_)) => completed += 1,
            Ok(None) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let ignored = nvme.counters().ignored;
    assert_eq!(completed + ignored, 2000, "every garbage entry is consumed");
    assert!(completed > 0 && ignored > 0, "{completed} {ignored}");
    assert_eq!(nvme.counters().resets, 0);
}

/// Settling leaves the device holding nothing of the driver's: every
/// command in flight completes (its completion kept for poll, not taken)
/// or is failed at its deadline, in a bounded number of CQ reads.
#[test]
fn settle_waits_for_every_command_and_takes_no_completion() {
    let queues = queue_memory(4);
    let dev = SimNvme::new(&[&queues], Config::default());
    let mut nvme = Nvme::init_with_poll_limit(&dev, whole(&queues), 4, SHORT).unwrap();
    let a = nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]).unwrap();
    let b = nvme.submit(IoOp::Read, 1, 1, &[DATA_IOVA]).unwrap();
    assert_eq!(nvme.settle(), Ok(()));
    // Nothing was taken: both completions are still there to poll.
    let mut done = [nvme.poll().unwrap(), nvme.poll().unwrap()].map(|c| c.map(|c| c.cid));
    done.sort();
    assert_eq!(done, [Some(a), Some(b)]);
    assert_eq!(nvme.poll(), Ok(None));

    // A device that never answers: settled by its deadline, bounded.
    dev.swallow.set(true);
    let c = nvme.submit(IoOp::Read, 0, 1, &[DATA_IOVA]).unwrap();
    assert_eq!(nvme.settle(), Ok(()));
    assert_eq!(nvme.in_flight(), 0);
    assert_eq!(nvme.poll(), Ok(Some(timed_out(c))));
}
