//! The block client's side of the story: it writes distinct patterns to
//! blocks (one block, two pages, and a transfer from the middle of a page
//! that needs a PRP list), reads them back into other buffers and checks
//! them. A step at a time, since on seL4 the driver runs in another PD:
//! [`Story::step`] queues requests, the client notifies the driver, and
//! when the driver notifies back the next step reads the responses.
//!
//! The byte at disk offset `x` is [`pattern`]`(x)`, so a host can check a
//! disk image after the run.

use blk_queue::{Client, Request, RequestCode, ResponseStatus};
use core::fmt::Write;
use iommu_client::Memory;

/// The block size the story's requests count in (QEMU nvme's default
/// logical block).
pub const BLOCK: u32 = 512;
const B: u64 = BLOCK as u64;

/// The byte the story writes at disk offset `x`.
pub fn pattern(x: u64) -> u8 {
    (x ^ (x >> 9) ^ (x >> 17)).wrapping_mul(0x9d) as u8
}

/// One transfer: data region offset, first block, blocks.
struct Transfer {
    what: &'static str,
    offset: u64,
    block: u64,
    count: u32,
}

const WRITES: [Transfer; 3] = [
    Transfer {
        what: "1 block",
        offset: 0,
        block: 0,
        count: 1,
    },
    Transfer {
        what: "2 pages",
        offset: 0x1000,
        block: 8,
        count: 16,
    },
    Transfer {
        what: "20 KiB from mid-page (PRP list)",
        offset: 0x3200,
        block: 32,
        count: 40,
    },
];
/// Reads land this far above the writes' buffers.
const READ_BACK: u64 = 0x10000;
/// The data region the story needs.
pub const DATA_BYTES: u64 = 2 * READ_BACK;

/// The disk byte ranges a story starting at `first_block` writes.
pub fn written(first_block: u64) -> impl Iterator<Item = core::ops::Range<u64>> {
    WRITES.iter().map(move |t| {
        let start = (first_block + t.block) * B;
        start..start + u64::from(t.count) * B
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start,
    Writing,
    Reading,
    Done,
}

/// A client's story: where on the disk it writes and how far it got.
#[derive(Debug)]
pub struct Story {
    first_block: u64,
    phase: Phase,
    answered: u32,
    failed: bool,
}

/// What the client does after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Requests are queued: notify the driver and wait.
    Notify,
    /// Nothing new yet: keep waiting.
    Wait,
    /// The story is over; true when every check passed.
    Done(bool),
}

impl Story {
    pub const fn new(first_block: u64) -> Story {
        Story {
            first_block,
            phase: Phase::Start,
            answered: 0,
            failed: false,
        }
    }

    /// Runs the story as far as it can without the driver.
    pub fn step<Q: Memory, D: Memory>(
        &mut self,
        ring: &mut Client<'_, Q>,
        data: &D,
        out: &mut impl Write,
    ) -> Next {
        loop {
            match self.phase {
                Phase::Start => {
                    for (i, t) in WRITES.iter().enumerate() {
                        self.fill(data, t);
                        self.queue(ring, RequestCode::Write, t, t.offset, i as u32, out);
                    }
                    self.phase = Phase::Writing;
                    return Next::Notify;
                }
                Phase::Writing | Phase::Reading => {
                    if !self.take_responses(ring, out) {
                        return Next::Wait;
                    }
                    if self.phase == Phase::Writing {
                        let _ = writeln!(out, "wrote 3 transfers: {}", self.describe());
                        for (i, t) in WRITES.iter().enumerate() {
                            let at = t.offset + READ_BACK;
                            self.queue(ring, RequestCode::Read, t, at, 10 + i as u32, out);
                        }
                        self.phase = Phase::Reading;
                        return Next::Notify;
                    }
                    for t in &WRITES {
                        let ok = self.holds(data, t, t.offset + READ_BACK);
                        let _ = writeln!(
                            out,
                            "{} - read back {} at block {}: {}",
                            if ok { "ok" } else { "FAILED" },
                            t.what,
                            self.first_block + t.block,
                            if ok {
                                "the data written"
                            } else {
                                "different data"
                            }
                        );
                        self.failed |= !ok;
                    }
                    self.phase = Phase::Done;
                }
                Phase::Done => return Next::Done(!self.failed),
            }
        }
    }

    fn describe(&self) -> &'static str {
        if self.failed {
            "some failed"
        } else {
            "all completed"
        }
    }

    fn queue(
        &mut self,
        ring: &mut Client<'_, impl Memory>,
        code: RequestCode,
        t: &Transfer,
        offset: u64,
        id: u32,
        out: &mut impl Write,
    ) {
        let req = Request {
            code,
            offset,
            block: self.first_block + t.block,
            count: t.count,
            id,
        };
        if ring.enqueue(req).is_err() {
            let _ = writeln!(out, "FAILED - the request ring refused request {id}");
            self.failed = true;
            self.answered += 1;
        }
    }

    /// Reads responses; true once the phase's three are in.
    fn take_responses(&mut self, ring: &mut Client<'_, impl Memory>, out: &mut impl Write) -> bool {
        while let Ok(Some(r)) = ring.dequeue_response() {
            self.answered += 1;
            if r.status != ResponseStatus::Ok {
                let _ = writeln!(out, "FAILED - request {} answered {:?}", r.id, r.status);
                self.failed = true;
            }
        }
        if self.answered >= WRITES.len() as u32 {
            self.answered = 0;
            true
        } else {
            false
        }
    }

    fn fill<D: Memory>(&mut self, data: &D, t: &Transfer) {
        let disk = (self.first_block + t.block) * B;
        let mut chunk = [0u8; 256];
        for start in (0..u64::from(t.count) * B).step_by(chunk.len()) {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = pattern(disk + start + i as u64);
            }
            if !data.write((t.offset + start) as usize, &chunk) {
                self.failed = true;
            }
        }
    }

    fn holds<D: Memory>(&self, data: &D, t: &Transfer, at: u64) -> bool {
        let disk = (self.first_block + t.block) * B;
        let mut chunk = [0u8; 256];
        (0..u64::from(t.count) * B)
            .step_by(chunk.len())
            .all(|start| {
                data.read((at + start) as usize, &mut chunk)
                    && chunk
                        .iter()
                        .enumerate()
                        .all(|(i, b)| *b == pattern(disk + start + i as u64))
            })
    }
}
