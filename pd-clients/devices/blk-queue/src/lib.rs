//! An sDDF-style block protocol between a client PD and a block driver PD
//! over one shared region: a request ring the client produces and the
//! driver consumes, and a response ring the other way. Requests name
//! data by byte offset into a separate shared data region.
//!
//! Each side owns one index of each ring (the producer its tail, the
//! consumer its head), keeps it privately and only ever writes it to the
//! region; the peer's index is copied out once per operation and checked,
//! because the peer may be broken or hostile. An impossible index or
//! entry is an error, never a panic, and never makes a side read or write
//! outside its region. Signalling the peer (a Microkit notification) is
//! the caller's. The region is any [`Memory`] (bounded byte copies): the
//! rings know nothing of the IOMMU, of Microkit or of the device behind
//! the driver.
//!
//! Layout (`format` writes it; every field little endian):
//!
//! | offset | what |
//! | --- | --- |
//! | 0x000 | magic `"BLKQ"`, version, capacity (entries per ring, a power of two) |
//! | 0x040 | request tail (client) |
//! | 0x080 | request head (driver) |
//! | 0x0c0 | response tail (driver) |
//! | 0x100 | response head (client) |
//! | 0x140 | `capacity` requests of [`REQUEST_BYTES`] |
//! | then | `capacity` responses of [`RESPONSE_BYTES`] |
//!
//! The driver answers requests in the order it took them, so its two
//! indices say what it owes: the requests between the response tail and
//! the request head were taken and not answered. A client keeps at most
//! `capacity` requests unanswered (it counts from its own response head),
//! so those requests' slots still hold them: a restarted driver reads
//! them back and answers each with an error
//! ([`Driver::answer_unanswered`]) rather than leave it unanswered forever.
//!
//! Indices are free-running u64 words, each on its own 64-byte line and
//! 8-byte aligned: `microkit::SharedMemory` copies an aligned word in one
//! access, so a peer never sees one torn (the region must be 8-byte
//! aligned, as a mapped region is).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::ops::Range;
use core::sync::atomic::{fence, Ordering};

use mmio::Memory;

/// "BLKQ", little endian.
const MAGIC: u32 = u32::from_le_bytes(*b"BLKQ");
const VERSION: u32 = 1;
/// Largest ring: bounds the region at about 3 MiB.
pub const MAX_CAPACITY: u32 = 1 << 16;
pub const REQUEST_BYTES: usize = 32;
pub const RESPONSE_BYTES: usize = 16;

const CAPACITY_AT: usize = 8;
const REQUEST_TAIL: usize = 0x40;
const REQUEST_HEAD: usize = 0x80;
const RESPONSE_TAIL: usize = 0xc0;
const RESPONSE_HEAD: usize = 0x100;
const REQUESTS: usize = 0x140;

/// Bytes of shared region rings of `capacity` entries need.
pub const fn region_bytes(capacity: u32) -> usize {
    REQUESTS + capacity as usize * (REQUEST_BYTES + RESPONSE_BYTES)
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestCode {
    Read,
    Write,
}

impl RequestCode {
    fn wire(self) -> u32 {
        match self {
            RequestCode::Read => 0,
            RequestCode::Write => 1,
        }
    }

    fn from_wire(code: u32) -> Option<RequestCode> {
        match code {
            0 => Some(RequestCode::Read),
            1 => Some(RequestCode::Write),
            _ => None,
        }
    }
}

/// Move `count` blocks from `block` of the device to (`Read`) or from
/// (`Write`) the data region at byte `offset`; `id` comes back in the
/// response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub code: RequestCode,
    pub offset: u64,
    pub block: u64,
    pub count: u32,
    pub id: u32,
}

impl Request {
    /// The bytes of the data region the request covers with blocks of
    /// `block_size` bytes; `None` when that overflows. Nothing here says
    /// they lie inside the data region: the driver checks that.
    pub fn data_range(&self, block_size: u32) -> Option<Range<u64>> {
        let len = u64::from(self.count).checked_mul(u64::from(block_size))?;
        let end = self.offset.checked_add(len)?;
        Some(self.offset..end)
    }

    // Wire: code u32, id u32, offset u64, block u64, count u32, 0 u32.
    fn encode(&self) -> [u8; REQUEST_BYTES] {
        let mut bytes = [0u8; REQUEST_BYTES];
        bytes[0..4].copy_from_slice(&self.code.wire().to_le_bytes());
        bytes[4..8].copy_from_slice(&self.id.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.offset.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.block.to_le_bytes());
        bytes[24..28].copy_from_slice(&self.count.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8; REQUEST_BYTES]) -> Result<Request, Malformed> {
        let id = le32(bytes, 4);
        let code = RequestCode::from_wire(le32(bytes, 0)).ok_or(Malformed::Request { id })?;
        Ok(Request {
            code,
            id,
            offset: le64(bytes, 8),
            block: le64(bytes, 16),
            count: le32(bytes, 24),
        })
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseStatus {
    Ok,
    /// Failed with a driver-defined code.
    Error(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: u32,
    pub status: ResponseStatus,
    /// Blocks moved before the request ended.
    pub success_count: u32,
}

impl Response {
    // Wire: id u32, status u32 (0 ok, 1 error), error code u32 (0 when
    // ok), success count u32.
    fn encode(&self) -> [u8; RESPONSE_BYTES] {
        let (status, code) = match self.status {
            ResponseStatus::Ok => (0u32, 0u32),
            ResponseStatus::Error(code) => (1, code),
        };
        let mut bytes = [0u8; RESPONSE_BYTES];
        bytes[0..4].copy_from_slice(&self.id.to_le_bytes());
        bytes[4..8].copy_from_slice(&status.to_le_bytes());
        bytes[8..12].copy_from_slice(&code.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.success_count.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8; RESPONSE_BYTES]) -> Result<Response, Malformed> {
        let id = le32(bytes, 0);
        let status = match (le32(bytes, 4), le32(bytes, 8)) {
            (0, 0) => ResponseStatus::Ok,
            (1, code) => ResponseStatus::Error(code),
            _ => return Err(Malformed::Response { id }),
        };
        Ok(Response {
            id,
            status,
            success_count: le32(bytes, 12),
        })
    }
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The region or the peer broke the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Not a region `format` wrote: wrong magic or version, a capacity
    /// that is not a power of two up to [`MAX_CAPACITY`], or memory too
    /// small for it.
    Header,
    /// The peer's index is more than a ring's capacity from ours: nothing
    /// is read or written until it is sane again.
    Index,
    /// A request with an unknown code; consumed, so the driver can answer
    /// `id` with an error and go on.
    Request { id: u32 },
    /// A response with an unknown status; consumed.
    Response { id: u32 },
    /// The memory refused an access inside the region.
    Memory,
}

/// Why an entry was not enqueued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnqueueError {
    /// The ring is full: try again after the peer consumes.
    Full,
    /// A response when every request taken is answered: nothing asked it.
    NotOwed,
    Malformed(Malformed),
}

impl From<Malformed> for EnqueueError {
    fn from(m: Malformed) -> Self {
        EnqueueError::Malformed(m)
    }
}

/// Writes an empty pair of rings of `capacity` entries at the start of
/// `mem`; done once, by whoever sets the region up, before either side
/// attaches.
pub fn format<M: Memory>(mem: &M, capacity: u32) -> Result<(), Malformed> {
    if !valid_capacity(capacity) || !fits(mem, capacity) {
        return Err(Malformed::Header);
    }
    let mut header = [0u8; REQUESTS];
    header[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&VERSION.to_le_bytes());
    header[CAPACITY_AT..CAPACITY_AT + 4].copy_from_slice(&capacity.to_le_bytes());
    mem.write(0, &header).then_some(()).ok_or(Malformed::Memory)
}

fn valid_capacity(capacity: u32) -> bool {
    capacity.is_power_of_two() && capacity <= MAX_CAPACITY
}

/// The memory holds the whole layout: its last byte can be read.
fn fits<M: Memory>(mem: &M, capacity: u32) -> bool {
    mem.read(region_bytes(capacity) - 1, &mut [0u8; 1])
}

/// The shared region as both sides see it.
#[derive(Debug)]
struct Rings<'m, M> {
    mem: &'m M,
    /// Copied out of the header once, at attach.
    capacity: u32,
}

impl<'m, M: Memory> Rings<'m, M> {
    /// Checks the header and that the rings are consistent; returns the
    /// rings and the four indices (request tail and head, response tail
    /// and head).
    fn attach(mem: &'m M) -> Result<(Self, [u64; 4]), Malformed> {
        let mut header = [0u8; 12];
        if !mem.read(0, &mut header) {
            return Err(Malformed::Header);
        }
        let capacity = le32(&header, CAPACITY_AT);
        let ok = le32(&header, 0) == MAGIC
            && le32(&header, 4) == VERSION
            && valid_capacity(capacity)
            && fits(mem, capacity);
        if !ok {
            return Err(Malformed::Header);
        }
        let rings = Rings { mem, capacity };
        let indices = [REQUEST_TAIL, REQUEST_HEAD, RESPONSE_TAIL, RESPONSE_HEAD];
        let mut values = [0u64; 4];
        for (value, at) in values.iter_mut().zip(indices) {
            *value = rings.index(at)?;
        }
        rings.used(values[0], values[1])?;
        rings.used(values[2], values[3])?;
        Ok((rings, values))
    }

    fn index(&self, at: usize) -> Result<u64, Malformed> {
        let mut word = [0u8; 8];
        if !self.mem.read(at, &mut word) {
            return Err(Malformed::Memory);
        }
        Ok(u64::from_le_bytes(word))
    }

    fn set_index(&self, at: usize, value: u64) -> Result<(), Malformed> {
        self.mem
            .write(at, &value.to_le_bytes())
            .then_some(())
            .ok_or(Malformed::Memory)
    }

    /// Entries between `head` and `tail`; more than the capacity means one
    /// of them is garbage.
    fn used(&self, tail: u64, head: u64) -> Result<u64, Malformed> {
        let used = tail.wrapping_sub(head);
        if used > u64::from(self.capacity) {
            return Err(Malformed::Index);
        }
        Ok(used)
    }

    /// The byte offset of entry `index` in a ring at `base` of `size`-byte
    /// entries; below `region_bytes` since the slot is below the capacity.
    fn slot(&self, base: usize, size: usize, index: u64) -> usize {
        let slot = (index & u64::from(self.capacity - 1)) as usize;
        base + slot * size
    }

    fn responses(&self) -> usize {
        REQUESTS + self.capacity as usize * REQUEST_BYTES
    }

    /// Produces one entry: room is checked against the consumer's head,
    /// read once; the entry is written before the tail that publishes it.
    fn produce(
        &self,
        tail: &mut u64,
        (tail_at, head_at): (usize, usize),
        at: usize,
        entry: &[u8],
    ) -> Result<(), EnqueueError> {
        let head = self.index(head_at)?;
        if self.used(*tail, head)? == u64::from(self.capacity) {
            return Err(EnqueueError::Full);
        }
        // The consumer is done with the slot before it is overwritten.
        fence(Ordering::Acquire);
        if !self.mem.write(at, entry) {
            return Err(Malformed::Memory.into());
        }
        let next = tail.wrapping_add(1);
        fence(Ordering::Release);
        self.set_index(tail_at, next)?;
        *tail = next;
        Ok(())
    }

    /// Consumes one entry into `out` if the producer's tail, read once,
    /// says there is one; the head that frees its slot is written after
    /// the entry is read.
    fn consume(
        &self,
        head: &mut u64,
        (tail_at, head_at): (usize, usize),
        at: usize,
        out: &mut [u8],
    ) -> Result<bool, Malformed> {
        let tail = self.index(tail_at)?;
        if self.used(tail, *head)? == 0 {
            return Ok(false);
        }
        fence(Ordering::Acquire);
        if !self.mem.read(at, out) {
            return Err(Malformed::Memory);
        }
        let next = head.wrapping_add(1);
        fence(Ordering::Release);
        self.set_index(head_at, next)?;
        *head = next;
        Ok(true)
    }
}

/// The client's end: produces requests, consumes responses.
#[derive(Debug)]
pub struct Client<'m, M> {
    rings: Rings<'m, M>,
    request_tail: u64,
    response_head: u64,
}

impl<'m, M: Memory> Client<'m, M> {
    /// Attaches to a region `format` wrote, resuming at its indices.
    pub fn new(mem: &'m M) -> Result<Self, Malformed> {
        let (rings, [request_tail, _, _, response_head]) = Rings::attach(mem)?;
        Ok(Client {
            rings,
            request_tail,
            response_head,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.rings.capacity
    }

    /// Queues a request; `Full` while `capacity` requests are
    /// unanswered (whatever the driver has consumed), so a request's slot
    /// is reused only once its answer is in: a restarted driver can still
    /// read every request it owes an answer.
    pub fn enqueue(&mut self, request: Request) -> Result<(), EnqueueError> {
        if self.unanswered() >= u64::from(self.rings.capacity) {
            return Err(EnqueueError::Full);
        }
        let at = self.rings.slot(REQUESTS, REQUEST_BYTES, self.request_tail);
        self.rings.produce(
            &mut self.request_tail,
            (REQUEST_TAIL, REQUEST_HEAD),
            at,
            &request.encode(),
        )
    }

    /// Requests queued whose responses this side has not dequeued.
    pub fn unanswered(&self) -> u64 {
        self.request_tail.wrapping_sub(self.response_head)
    }

    pub fn dequeue_response(&mut self) -> Result<Option<Response>, Malformed> {
        let at = self
            .rings
            .slot(self.rings.responses(), RESPONSE_BYTES, self.response_head);
        let mut entry = [0u8; RESPONSE_BYTES];
        let found = self.rings.consume(
            &mut self.response_head,
            (RESPONSE_TAIL, RESPONSE_HEAD),
            at,
            &mut entry,
        )?;
        if !found {
            return Ok(None);
        }
        Response::decode(&entry).map(Some)
    }
}

/// The driver's end: consumes requests, produces responses.
#[derive(Debug)]
pub struct Driver<'m, M> {
    rings: Rings<'m, M>,
    request_head: u64,
    response_tail: u64,
}

impl<'m, M: Memory> Driver<'m, M> {
    /// Attaches to a region `format` wrote, resuming at its indices; more
    /// requests taken and unanswered than a ring holds means an index is
    /// garbage.
    pub fn new(mem: &'m M) -> Result<Self, Malformed> {
        let (rings, [_, request_head, response_tail, _]) = Rings::attach(mem)?;
        rings.used(request_head, response_tail)?;
        Ok(Driver {
            rings,
            request_head,
            response_tail,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.rings.capacity
    }

    pub fn dequeue_request(&mut self) -> Result<Option<Request>, Malformed> {
        let at = self.rings.slot(REQUESTS, REQUEST_BYTES, self.request_head);
        let mut entry = [0u8; REQUEST_BYTES];
        let found = self.rings.consume(
            &mut self.request_head,
            (REQUEST_TAIL, REQUEST_HEAD),
            at,
            &mut entry,
        )?;
        if !found {
            return Ok(None);
        }
        Request::decode(&entry).map(Some)
    }

    /// Requests taken and not answered: the next response answers the
    /// oldest of them.
    pub fn unanswered(&self) -> u64 {
        self.request_head.wrapping_sub(self.response_tail)
    }

    /// Answers every request taken and not answered (by a previous life of
    /// the driver: call it on attach) with `Error(code)`, in order, each
    /// with the id its slot holds; returns how many. At most `capacity`
    /// entries, each read once. Stops at the first response that cannot
    /// be produced (a client that stopped taking its responses), leaving
    /// the rest owed.
    pub fn answer_unanswered(&mut self, code: u32) -> Result<u32, EnqueueError> {
        let mut answered = 0;
        while self.unanswered() > 0 {
            let at = self.rings.slot(REQUESTS, REQUEST_BYTES, self.response_tail);
            let mut entry = [0u8; REQUEST_BYTES];
            if !self.rings.mem.read(at, &mut entry) {
                return Err(Malformed::Memory.into());
            }
            // The id whatever the rest says: the client matches on it.
            let id = le32(&entry, 4);
            self.enqueue_response(Response {
                id,
                status: ResponseStatus::Error(code),
                success_count: 0,
            })?;
            answered += 1;
        }
        Ok(answered)
    }

    /// Produces the answer to the oldest unanswered request (answers go in
    /// the order requests were taken).
    pub fn enqueue_response(&mut self, response: Response) -> Result<(), EnqueueError> {
        if self.unanswered() == 0 {
            return Err(EnqueueError::NotOwed);
        }
        let at = self
            .rings
            .slot(self.rings.responses(), RESPONSE_BYTES, self.response_tail);
        self.rings.produce(
            &mut self.response_tail,
            (RESPONSE_TAIL, RESPONSE_HEAD),
            at,
            &response.encode(),
        )
    }
}
