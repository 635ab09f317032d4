//! The block client's side of the story: it writes distinct patterns to
//! blocks (one block, two pages, and a transfer from the middle of a page
//! that needs a PRP list), reads them back into other buffers and checks
//! them. Before that, optionally, it tries to read and to write a block of
//! another client's share of the disk and sees both refused
//! ([`Story::trying`]), and leaves requests in flight for its driver to
//! die with, which come back as errors ([`Story::through_a_crash`]). A
//! step at a time, since on seL4 the driver runs in another PD:
//! [`Story::step`] queues requests, the client notifies the driver, and
//! when the driver notifies back the next step reads the responses.
//!
//! The client waits for its answers a bounded number of steps: after
//! [`MAX_WAITS`] steps in a row (driver notifications on seL4, polls in
//! the demo) that bring none of the answers it is owed, it gives up and
//! the story fails, saying how many never came.
//!
//! The byte at disk offset `x` is [`pattern`]`(x)`, so a host can check a
//! disk image after the run.

use blk_queue::{Client, Request, RequestCode, ResponseStatus};
use core::fmt::Write;
use core::ops::Range;
use mmio::Memory;

use blk_driver::{error_name, ERR_ABANDONED, ERR_BLOCKS};

pub use blk_driver::BLOCK;
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
/// The buffer the read of another client's block would land in, filled
/// with [`UNTOUCHED`] first: still so after the refusal.
const FOREIGN_READ: u64 = READ_BACK + 0xf000;
const UNTOUCHED: u8 = 0xa5;
/// Steps in a row without an awaited answer before the client gives up.
pub const MAX_WAITS: u32 = 8;
/// The data region the story needs.
pub const DATA_BYTES: u64 = 2 * READ_BACK;

/// Where the demo's second story for a client writes, after the driver's
/// stray command: the middle of its share.
pub fn second_story(share: Range<u64>) -> u64 {
    share.start + (share.end - share.start) / 2
}

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
    /// A read and a write of another client's block, to be refused.
    Foreign,
    /// Requests the driver is to die with.
    InFlight,
    Writing,
    Reading,
    Done,
}

/// A client's story: where on the disk it writes and how far it got.
#[derive(Debug)]
pub struct Story {
    first_block: u64,
    /// A block of another client's share, to try.
    foreign: Option<u64>,
    crash: bool,
    phase: Phase,
    /// Answers the phase awaits, and how many came.
    expected: u32,
    answered: u32,
    /// The status every answer of the phase must have.
    expect: ResponseStatus,
    /// The phase's answers all had it.
    as_expected: bool,
    /// Steps in a row that brought no answer.
    waits: u32,
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
            foreign: None,
            crash: false,
            phase: Phase::Start,
            expected: 0,
            answered: 0,
            expect: ResponseStatus::Ok,
            as_expected: true,
            waits: 0,
            failed: false,
        }
    }

    /// First tries to read and to write `block`, another client's: both
    /// must be refused (`ERR_BLOCKS`) and the read's buffer left as it was.
    pub const fn trying(mut self, block: u64) -> Story {
        self.foreign = Some(block);
        self
    }

    /// Then queues a write and a read its driver is to die with: both must
    /// come back `ERR_ABANDONED` from the driver's next life, which must
    /// serve the rest of the story.
    pub const fn through_a_crash(mut self) -> Story {
        self.crash = true;
        self
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
                    if let Some(block) = self.foreign {
                        self.begin(Phase::Foreign, ResponseStatus::Error(ERR_BLOCKS));
                        self.mark_untouched(data);
                        // The write's buffer: this client's own data, which
                        // must not reach the other's blocks.
                        let write = Transfer {
                            what: "",
                            offset: 0,
                            block,
                            count: 1,
                        };
                        let read = Transfer { ..write };
                        self.fill(data, &WRITES[0]);
                        self.queue_at(ring, RequestCode::Read, &read, block, FOREIGN_READ, 20, out);
                        self.queue_at(ring, RequestCode::Write, &write, block, 0, 21, out);
                        return Next::Notify;
                    }
                    self.phase = Phase::Foreign;
                }
                Phase::Foreign if self.expected > 0 => {
                    if !self.take_responses(ring, out) {
                        return self.wait(out);
                    }
                    let block = self.foreign.unwrap_or(0);
                    let refused = self.as_expected;
                    let untouched = self.untouched(data);
                    self.report(
                        out,
                        refused && untouched,
                        format_args!(
                            "read of block {block}, another client's, refused ({}); my buffer untouched",
                            error_name(ERR_BLOCKS)
                        ),
                    );
                    self.report(
                        out,
                        refused,
                        format_args!(
                            "write to block {block}, another client's, refused ({})",
                            error_name(ERR_BLOCKS)
                        ),
                    );
                    self.expected = 0;
                    self.phase = Phase::InFlight;
                }
                Phase::Foreign => self.phase = Phase::InFlight,
                Phase::InFlight if self.expected == 0 => {
                    if !self.crash {
                        self.phase = Phase::Writing;
                        continue;
                    }
                    self.begin(Phase::InFlight, ResponseStatus::Error(ERR_ABANDONED));
                    // Data it will write again once the driver is back:
                    // whatever of it reached the disk is what belongs there.
                    self.fill(data, &WRITES[0]);
                    let (w, r) = (&WRITES[0], &WRITES[1]);
                    self.queue(ring, RequestCode::Write, w, w.offset, 30, out);
                    self.queue(ring, RequestCode::Read, r, r.offset + READ_BACK, 31, out);
                    return Next::Notify;
                }
                Phase::InFlight => {
                    if !self.take_responses(ring, out) {
                        return self.wait(out);
                    }
                    let (ok, n) = (self.as_expected, self.expected);
                    self.report(
                        out,
                        ok,
                        format_args!(
                            "{n} requests in flight when the driver died: answered {}",
                            error_name(ERR_ABANDONED)
                        ),
                    );
                    self.expected = 0;
                    self.phase = Phase::Writing;
                }
                Phase::Writing if self.expected == 0 => {
                    self.begin(Phase::Writing, ResponseStatus::Ok);
                    for (i, t) in WRITES.iter().enumerate() {
                        self.fill(data, t);
                        self.queue(ring, RequestCode::Write, t, t.offset, i as u32, out);
                    }
                    return Next::Notify;
                }
                Phase::Writing => {
                    if !self.take_responses(ring, out) {
                        return self.wait(out);
                    }
                    let _ = writeln!(out, "wrote 3 transfers: {}", self.describe());
                    self.begin(Phase::Reading, ResponseStatus::Ok);
                    for (i, t) in WRITES.iter().enumerate() {
                        let at = t.offset + READ_BACK;
                        self.queue(ring, RequestCode::Read, t, at, 10 + i as u32, out);
                    }
                    return Next::Notify;
                }
                Phase::Reading => {
                    if !self.take_responses(ring, out) {
                        return self.wait(out);
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

    fn report(&mut self, out: &mut impl Write, ok: bool, what: core::fmt::Arguments<'_>) {
        let _ = writeln!(out, "{} - {what}", if ok { "ok" } else { "FAILED" });
        self.failed |= !ok;
    }

    /// Starts a phase whose answers must all be `expect`.
    fn begin(&mut self, phase: Phase, expect: ResponseStatus) {
        self.phase = phase;
        self.expected = 0;
        self.answered = 0;
        self.expect = expect;
        self.as_expected = true;
        self.waits = 0;
    }

    /// One more step without the answers: past [`MAX_WAITS`], the client
    /// gives up on them.
    fn wait(&mut self, out: &mut impl Write) -> Next {
        self.waits += 1;
        if self.waits < MAX_WAITS {
            return Next::Wait;
        }
        let _ = writeln!(
            out,
            "FAILED - {} of {} requests unanswered after {MAX_WAITS} waits: giving up on the driver",
            self.expected - self.answered,
            self.expected
        );
        self.failed = true;
        self.phase = Phase::Done;
        Next::Done(false)
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
        let block = self.first_block + t.block;
        self.queue_at(ring, code, t, block, offset, id, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_at(
        &mut self,
        ring: &mut Client<'_, impl Memory>,
        code: RequestCode,
        t: &Transfer,
        block: u64,
        offset: u64,
        id: u32,
        out: &mut impl Write,
    ) {
        let req = Request {
            code,
            offset,
            block,
            count: t.count,
            id,
        };
        self.expected += 1;
        if ring.enqueue(req).is_err() {
            let _ = writeln!(out, "FAILED - the request ring refused request {id}");
            self.failed = true;
            self.answered += 1;
        }
    }

    /// Reads responses; true once the phase's are all in.
    fn take_responses(&mut self, ring: &mut Client<'_, impl Memory>, out: &mut impl Write) -> bool {
        while let Ok(Some(r)) = ring.dequeue_response() {
            self.answered += 1;
            self.waits = 0;
            if r.status != self.expect {
                let _ = writeln!(
                    out,
                    "FAILED - request {} answered {:?}, not {:?}",
                    r.id, r.status, self.expect
                );
                self.failed = true;
                self.as_expected = false;
            }
        }
        self.answered >= self.expected
    }

    fn mark_untouched<D: Memory>(&mut self, data: &D) {
        if !data.write(FOREIGN_READ as usize, &[UNTOUCHED; BLOCK as usize]) {
            self.failed = true;
        }
    }

    fn untouched<D: Memory>(&self, data: &D) -> bool {
        let mut block = [0u8; BLOCK as usize];
        data.read(FOREIGN_READ as usize, &mut block) && block.iter().all(|&b| b == UNTOUCHED)
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

/// Says why the block driver of `client` could not do `step` of
/// `object` (its DMA region `region`, or its device for bring-up): a
/// server refusal with the request, errno and, when `client`'s
/// configuration is the reason, the cause and where it says so; else the
/// driver's own reason.
pub fn say_driver_error<S: iommu_types::config::Storage, C>(
    out: &mut impl Write,
    client: &iommu_types::system::ClientSpec<S, C>,
    region: usize,
    step: &str,
    object: &str,
    e: blk_driver::Error,
) {
    match e {
        blk_driver::Error::Server(e) => crate::cause::say_refused(
            out,
            client,
            crate::cause::Subject::of_driver_request(e.op, region),
            step,
            object,
            e,
        ),
        other => {
            let _ = writeln!(out, "failed: {step} of {object}: {other}");
        }
    }
}
