//! A block driver over NVMe through the IOMMU server. The driver serves
//! each block client's request ring (`blk_queue`) from that client's data
//! region, which it reaches through IOVAs the server mapped in one of two
//! modes:
//!
//! - **static**: the whole data region mapped once at start, as sDDF
//!   drivers do: no server call per I/O;
//! - **strict**: only a request's own pages, mapped when it is submitted
//!   (device-read for a WRITE, device-write for a READ) and unmapped, with
//!   the IOTLB invalidation, when its completion arrives, before the
//!   client hears of it: the device can never touch a buffer the client
//!   has got back.
//!
//! Either way a request's pages sit at the same IOVAs (the client's data
//! IOVA base plus the offset), so the two modes differ only in when the
//! mappings exist. A consequence in strict mode: two requests in flight
//! may not share a page (the second one's map is EEXIST, answered
//! `ERR_MAP`); a client that packs buffers into shared pages waits for
//! the first. The device's queues live in the driver's own DMA
//! region, mapped at [`QUEUE_IOVA`]. The same code runs in the NVMe driver
//! PD and in the bare-metal demo.
//!
//! Each client owns a share of the disk, a block range iommu.xml gives
//! (`RegionSpec::share`): a request for any block outside it is answered
//! [`ERR_BLOCKS`] before anything is mapped or sent to the device, so one
//! client can neither read nor overwrite another's blocks.
//!
//! Answers go back in the order requests were taken (`blk_queue`): a
//! request finished early waits, in a window of [`WINDOW`] per client,
//! for those before it. So when the driver dies, the requests it owed
//! answers for are exactly those its ring's indices say, and the next
//! life answers each [`ERR_ABANDONED`] when it takes the ring up
//! ([`BlockDriver::add_client`]).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::ops::Range;

use blk_queue::{Driver as Ring, Malformed, Request, RequestCode, Response, ResponseStatus};
use core::fmt::{self, Write};

use iommu_client::{Access, Device, DmaBuffer, Fault, Ioas, Iommu, Mapping, Transport};
use iommu_proto::fault::IOMMU_FAULT_KIND_F_TRANSLATION;
use mmio::{Memory, RegisterBlock};
use nvme_driver::{Completion, IoOp, Nvme, QueueMemory, Status, PAGE};

/// The block size requests count in (QEMU nvme's default logical block);
/// the driver refuses a device whose blocks differ.
pub const BLOCK: u32 = 512;
/// Where the device sees its queues.
pub const QUEUE_IOVA: u64 = 0x4000_0000;
/// Where the device sees client k's data region: this plus k * [`DATA_STRIDE`].
pub const DATA_IOVA: u64 = 0x5000_0000;
pub const DATA_STRIDE: u64 = 0x100_0000;
/// I/O queue entries (DEPTH - 1 commands in flight).
pub const DEPTH: u16 = 8;
/// Block clients one driver serves.
pub const MAX_CLIENTS: usize = 4;
/// Requests of one client taken and not yet answered, at most: a request
/// finished while an earlier one is in flight waits here for it.
pub const WINDOW: usize = 16;
const SLOTS: usize = DEPTH as usize;

/// Response error codes (`ResponseStatus::Error`): the range leaves the
/// data region; the device failed the command; the buffer could not be
/// mapped, or could not be unmapped (then the client must not reuse it);
/// the request is not one; its blocks leave the client's share of the
/// disk (nothing was mapped or sent); the driver died with the request
/// taken (the device may have done all, part or none of it: a READ's
/// buffer holds nothing to trust, a WRITE's blocks old data, new data or
/// a mix).
pub const ERR_RANGE: u32 = 1;
pub const ERR_DEVICE: u32 = 2;
pub const ERR_MAP: u32 = 3;
pub const ERR_MALFORMED: u32 = 4;
pub const ERR_BLOCKS: u32 = 5;
pub const ERR_ABANDONED: u32 = 6;

/// The name of a response error code, for logs.
pub const fn error_name(code: u32) -> &'static str {
    match code {
        ERR_RANGE => "ERR_RANGE",
        ERR_DEVICE => "ERR_DEVICE",
        ERR_MAP => "ERR_MAP",
        ERR_MALFORMED => "ERR_MALFORMED",
        ERR_BLOCKS => "ERR_BLOCKS",
        ERR_ABANDONED => "ERR_ABANDONED",
        _ => "unknown",
    }
}

/// How a client's data region is exposed to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Static,
    Strict,
}

impl Mode {
    /// The mode iommu.xml's `<dma mode>` gives (`RegionSpec::strict`).
    pub const fn of(strict: bool) -> Mode {
        if strict {
            Mode::Strict
        } else {
            Mode::Static
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Mode::Static => "static",
            Mode::Strict => "strict",
        }
    }
}

/// The stray command's outcome: the IOVA it named and how it completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stray {
    pub iova: u64,
    pub status: Status,
}

impl Stray {
    /// Whether the command was stopped as it must be: `fault` (the
    /// driver's fault record) is a translation fault at the command's
    /// PRP1 page or its PRP list's, and the command failed.
    pub fn stopped(&self, fault: Option<Fault>) -> bool {
        let page = PAGE as u64;
        !self.status.is_success()
            && fault.is_some_and(|f| {
                f.kind == IOMMU_FAULT_KIND_F_TRANSLATION
                    && f.iova
                        .is_some_and(|a| (self.iova..self.iova + 2 * page).contains(&a))
            })
    }
}

/// What went wrong bringing the driver up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The server refused a request (which, and its errno).
    Server(iommu_client::Error),
    Device(nvme_driver::Error),
    Ring(Malformed),
    TooManyClients,
    /// The device's blocks are not [`BLOCK`] bytes.
    BlockSize(u32),
    /// A client's share of the disk is empty or not all on the namespace
    /// (its blocks).
    Share {
        start: u64,
        end: u64,
        blocks: u64,
    },
}

/// What went wrong, for a person: a server refusal as its request, errno
/// name and meaning (`IOMMU_IOAS_MAP: ENOMEM: ...`), the rest in words.
impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Server(e) => write!(f, "{e}"),
            Error::Device(e) => write!(f, "the controller: {e:?}"),
            Error::Ring(m) => write!(f, "the ring is malformed: {m:?}"),
            Error::TooManyClients => write!(
                f,
                "more block clients than the driver holds ({MAX_CLIENTS})"
            ),
            Error::BlockSize(n) => write!(f, "the device's blocks are {n} bytes, not {BLOCK}"),
            Error::Share { start, end, blocks } => write!(
                f,
                "blocks {start}..{end} are empty or not all on the disk's {blocks}"
            ),
        }
    }
}

/// Server calls and I/Os, for the cost a driver author cares about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub ios: u64,
    pub maps: u64,
    pub unmaps: u64,
    pub errors: u64,
    /// Requests refused for blocks outside their client's share.
    pub foreign: u64,
    /// Requests a previous life took and never answered, answered
    /// [`ERR_ABANDONED`] by this one.
    pub abandoned: u64,
}

/// A block client as the driver sees it.
pub struct Client<'b, D: Memory, Q: Memory> {
    pub ring: Ring<'b, Q>,
    pub data: &'b DmaBuffer<D>,
    pub mode: Mode,
    /// The blocks of the disk that are the client's.
    pub share: Range<u64>,
    data_iova: u64,
    /// The static mode's mapping of the whole region.
    whole: Option<Mapping<'b>>,
    /// The part of the driver's stats this client's requests made.
    stats: Stats,
    /// Whether answers a previous life owed are still to be given.
    owes_previous: bool,
    /// Requests taken, and answers published, by this life: the request
    /// numbered `n` is answered in `held[n % WINDOW]` until it is its turn.
    taken: u64,
    published: u64,
    held: [Option<Response>; WINDOW],
}

struct InFlight<'b> {
    client: usize,
    /// Its number among its client's requests (`Client::taken`).
    seq: u64,
    id: u32,
    count: u32,
    mapping: Option<Mapping<'b>>,
}

/// The driver: one NVMe controller, its clients' rings and data regions.
pub struct BlockDriver<'b, T: Transport, R: RegisterBlock, M: Memory, D: Memory, Q: Memory> {
    pub iommu: Iommu<T>,
    pub nvme: Nvme<'b, R, M>,
    pub ioas: Ioas,
    pub device: Device,
    clients: [Option<Client<'b, D, Q>>; MAX_CLIENTS],
    in_flight: [Option<InFlight<'b>>; SLOTS],
    _queues: Mapping<'b>,
    pub stats: Stats,
    /// The device's last failure to complete a command.
    pub last_error: Option<nvme_driver::Error>,
}

fn server(e: iommu_client::Error) -> Error {
    Error::Server(e)
}

impl<'b, T: Transport, R: RegisterBlock, M: Memory, D: Memory, Q: Memory>
    BlockDriver<'b, T, R, M, D, Q>
{
    /// Binds device 0 of the driver's configuration, gives it an IOAS,
    /// maps `queues` (its own DMA region) at [`QUEUE_IOVA`] and brings the
    /// controller up in it.
    pub fn start(mut iommu: Iommu<T>, regs: R, queues: &'b DmaBuffer<M>) -> Result<Self, Error> {
        let device = iommu.bind(0).map_err(server)?;
        let ioas = iommu.ioas_alloc().map_err(server)?;
        iommu.attach(&device, &ioas).map_err(server)?;
        let map = iommu
            .map(
                &ioas,
                queues,
                0,
                queues.len(),
                Access::ReadWrite,
                Some(QUEUE_IOVA),
            )
            .map_err(server)?;
        let memory = QueueMemory {
            mem: queues.memory(),
            offset: 0,
            iova: QUEUE_IOVA,
            len: queues.len() as usize,
        };
        let nvme = Nvme::init(regs, memory, DEPTH).map_err(Error::Device)?;
        if nvme.block_size() != BLOCK {
            return Err(Error::BlockSize(nvme.block_size()));
        }
        Ok(BlockDriver {
            iommu,
            nvme,
            ioas,
            device,
            clients: [const { None }; MAX_CLIENTS],
            in_flight: [const { None }; SLOTS],
            _queues: map,
            stats: Stats::default(),
            last_error: None,
        })
    }

    /// Serves a block client whose ring is in `ring`, whose data region
    /// is `data` and whose blocks are `share`, in `mode` (static maps the
    /// region now). Returns its index. Requests a previous life of the
    /// driver took from the ring and never answered are answered
    /// [`ERR_ABANDONED`] now (or, if the client's response ring is full,
    /// before anything else is taken from it).
    pub fn add_client(
        &mut self,
        ring: &'b Q,
        data: &'b DmaBuffer<D>,
        mode: Mode,
        share: Range<u64>,
    ) -> Result<usize, Error> {
        let k = self
            .clients
            .iter()
            .position(Option::is_none)
            .ok_or(Error::TooManyClients)?;
        let blocks = self.nvme.blocks();
        if share.is_empty() || share.end > blocks {
            return Err(Error::Share {
                start: share.start,
                end: share.end,
                blocks,
            });
        }
        let ring = Ring::new(ring).map_err(Error::Ring)?;
        let data_iova = DATA_IOVA + k as u64 * DATA_STRIDE;
        let whole = match mode {
            Mode::Static => {
                self.stats.maps += 1;
                Some(
                    self.iommu
                        .map(
                            &self.ioas,
                            data,
                            0,
                            data.len(),
                            Access::ReadWrite,
                            Some(data_iova),
                        )
                        .map_err(server)?,
                )
            }
            Mode::Strict => None,
        };
        self.clients[k] = Some(Client {
            ring,
            data,
            mode,
            share,
            data_iova,
            whole,
            stats: Stats::default(),
            owes_previous: true,
            taken: 0,
            published: 0,
            held: [None; WINDOW],
        });
        self.settle_previous(k);
        Ok(k)
    }

    /// Answers what a previous life owed client `k`; true once done.
    fn settle_previous(&mut self, k: usize) -> bool {
        let Some(c) = self.clients.get_mut(k).and_then(Option::as_mut) else {
            return false;
        };
        if !c.owes_previous {
            return true;
        }
        let before = c.ring.unanswered();
        let settled = c.ring.answer_unanswered(ERR_ABANDONED).is_ok();
        let answered = before - c.ring.unanswered();
        c.stats.abandoned += answered;
        self.stats.abandoned += answered;
        c.owes_previous = !settled;
        settled
    }

    /// Takes every request client `k` has queued and submits what the
    /// device has room for (the rest wait in the ring); then completes
    /// what the device has finished. Returns how many requests completed.
    pub fn serve(&mut self, k: usize) -> u32 {
        self.take(k);
        self.complete_all()
    }

    /// The first half of [`serve`](Self::serve): takes client `k`'s
    /// queued requests, answers those refused, and submits the rest to the
    /// device without waiting for them. Returns how many it took. At most
    /// a ring's worth per call, and at most [`WINDOW`] unanswered.
    pub fn take(&mut self, k: usize) -> u32 {
        if !self.settle_previous(k) {
            return 0;
        }
        self.publish(k);
        let mut took = 0;
        let Some(limit) = self
            .clients
            .get(k)
            .and_then(Option::as_ref)
            .map(|c| c.ring.capacity())
        else {
            return 0;
        };
        while took < limit && self.nvme.in_flight() < DEPTH - 1 {
            let Some(c) = self.clients.get_mut(k).and_then(Option::as_mut) else {
                break;
            };
            if c.taken - c.published >= WINDOW as u64 {
                break;
            }
            let seq = c.taken;
            let next = c.ring.dequeue_request();
            if matches!(next, Ok(Some(_)) | Err(Malformed::Request { .. })) {
                c.taken += 1;
                took += 1;
            }
            match next {
                Ok(Some(req)) => {
                    if let Err(code) = self.submit(k, seq, req) {
                        self.respond(k, seq, req.id, ResponseStatus::Error(code), 0);
                    }
                }
                Ok(None) => break,
                // A malformed entry was consumed: answer it, go on.
                Err(Malformed::Request { id }) => {
                    self.respond(k, seq, id, ResponseStatus::Error(ERR_MALFORMED), 0)
                }
                Err(_) => break,
            }
        }
        took
    }

    /// Requests of client `k` taken and not yet answered (in flight on the
    /// device, or finished and waiting for an earlier one).
    pub fn unanswered(&self, k: usize) -> u64 {
        self.clients
            .get(k)
            .and_then(Option::as_ref)
            .map_or(0, |c| c.ring.unanswered())
    }

    fn submit(&mut self, k: usize, seq: u64, req: Request) -> Result<(), u32> {
        let Some(c) = self.clients.get(k).and_then(Option::as_ref) else {
            return Err(ERR_RANGE);
        };
        // The blocks first, before anything is mapped or sent, whatever
        // the buffer: the end computed without wrapping, the whole run
        // inside the share.
        let inside = req
            .block
            .checked_add(u64::from(req.count))
            .is_some_and(|end| c.share.start <= req.block && end <= c.share.end);
        if !inside {
            self.count(k, |s| s.foreign += 1);
            return Err(ERR_BLOCKS);
        }
        let range = req
            .data_range(BLOCK)
            .filter(|r| r.start < r.end && r.end <= c.data.len())
            .ok_or(ERR_RANGE)?;
        let page = PAGE as u64;
        let first_page = range.start / page * page;
        let last_page = (range.end - 1) / page * page;
        // At most the PRP list's reach; the device refuses longer anyway.
        let mut pages = [0u64; 64];
        let n = ((last_page - first_page) / page + 1) as usize;
        if n > pages.len() {
            return Err(ERR_RANGE);
        }
        pages[0] = c.data_iova + range.start;
        for (i, p) in pages[1..n].iter_mut().enumerate() {
            *p = c.data_iova + first_page + (i as u64 + 1) * page;
        }
        let (op, access) = match req.code {
            RequestCode::Read => (IoOp::Read, Access::Write),
            RequestCode::Write => (IoOp::Write, Access::Read),
        };
        let (mode, data, data_iova) = (c.mode, c.data, c.data_iova);
        let mapping = match mode {
            Mode::Static => None,
            Mode::Strict => {
                self.count(k, |s| s.maps += 1);
                let len = last_page + page - first_page;
                Some(
                    self.iommu
                        .map(
                            &self.ioas,
                            data,
                            first_page,
                            len,
                            access,
                            Some(data_iova + first_page),
                        )
                        .map_err(|_| ERR_MAP)?,
                )
            }
        };
        match self.nvme.submit(op, req.block, req.count, &pages[..n]) {
            Ok(cid) => {
                self.count(k, |s| s.ios += 1);
                self.in_flight[usize::from(cid)] = Some(InFlight {
                    client: k,
                    seq,
                    id: req.id,
                    count: req.count,
                    mapping,
                });
                Ok(())
            }
            Err(_) => {
                if let Some(m) = mapping {
                    self.unmap(k, m);
                }
                Err(ERR_DEVICE)
            }
        }
    }

    fn complete_all(&mut self) -> u32 {
        let mut done = 0;
        // Ours, not the device's count: `wait` keeps completions of other
        // commands it reaps, which the device no longer counts in flight.
        while let Some(cid) = self.in_flight.iter().position(Option::is_some) {
            match self.nvme.wait(cid as u16) {
                Ok(c) => {
                    self.finish(c);
                    done += 1;
                }
                // A device that stops completing: nothing more to do here.
                Err(e) => {
                    self.last_error = Some(e);
                    break;
                }
            }
        }
        done
    }

    fn finish(&mut self, c: Completion) {
        let Some(f) = self
            .in_flight
            .get_mut(usize::from(c.cid))
            .and_then(Option::take)
        else {
            return;
        };
        // Unmapped before the client hears: it gets its buffer back only
        // once the device can no longer reach it. If the unmap failed it
        // has not got it back, and the answer says so.
        let unmapped = f.mapping.is_none_or(|m| self.unmap(f.client, m));
        let (status, count) = match c.status {
            _ if !unmapped => (ResponseStatus::Error(ERR_MAP), 0),
            Status::Success => (ResponseStatus::Ok, f.count),
            _ => (ResponseStatus::Error(ERR_DEVICE), 0),
        };
        if status != ResponseStatus::Ok {
            self.count(f.client, |s| s.errors += 1);
        }
        self.respond(f.client, f.seq, f.id, status, count);
    }

    /// Whether the mapping is gone. An unmap of what this driver mapped
    /// fails only on a server fault; the mapping is then left for the
    /// server's reset of this client to revoke.
    fn unmap(&mut self, k: usize, m: Mapping<'b>) -> bool {
        self.count(k, |s| s.unmaps += 1);
        self.iommu.unmap(m).is_ok()
    }

    /// Counts in the driver's stats and client `k`'s.
    fn count(&mut self, k: usize, add: impl Fn(&mut Stats)) {
        add(&mut self.stats);
        if let Some(c) = self.clients.get_mut(k).and_then(Option::as_mut) {
            add(&mut c.stats);
        }
    }

    /// What client `k`'s requests cost (its part of [`stats`](Self::stats);
    /// the static mode's map of the whole region is the driver's own).
    pub fn client_stats(&self, k: usize) -> Stats {
        self.clients
            .get(k)
            .and_then(Option::as_ref)
            .map_or(Stats::default(), |c| c.stats)
    }

    /// Answers client `k`'s request number `seq`: now if every earlier one
    /// is answered, else once they are.
    fn respond(&mut self, k: usize, seq: u64, id: u32, status: ResponseStatus, success_count: u32) {
        if let Some(c) = self.clients.get_mut(k).and_then(Option::as_mut) {
            c.held[(seq % WINDOW as u64) as usize] = Some(Response {
                id,
                status,
                success_count,
            });
        }
        self.publish(k);
    }

    /// Produces client `k`'s answers that are their turn. One the ring
    /// will not take (a client that stopped taking its responses, or
    /// broke its ring) stays held, and so does the client's window.
    fn publish(&mut self, k: usize) {
        let Some(c) = self.clients.get_mut(k).and_then(Option::as_mut) else {
            return;
        };
        while c.published < c.taken {
            let slot = (c.published % WINDOW as u64) as usize;
            let Some(answer) = c.held[slot] else {
                break;
            };
            if c.ring.enqueue_response(answer).is_err() {
                break;
            }
            c.held[slot] = None;
            c.published += 1;
        }
    }

    /// A command whose PRPs name IOVAs nothing is mapped at (just past
    /// client `k`'s data region): the SMMU stops the device's accesses, and
    /// the command completes with an error status.
    pub fn stray(&mut self, k: usize) -> Result<Stray, Error> {
        let c = self
            .clients
            .get(k)
            .and_then(Option::as_ref)
            .ok_or(Error::TooManyClients)?;
        let page = PAGE as u64;
        let stray = c.data_iova + c.data.len().div_ceil(page) * page;
        // Three pages read from the device, PRP1 and the PRP list (PRP2)
        // both where nothing is mapped: nothing can land anywhere.
        let blocks = 3 * PAGE as u32 / BLOCK;
        let cid = self
            .nvme
            .submit_prps(IoOp::Read, 0, blocks, stray, stray + page)
            .map_err(Error::Device)?;
        let done = self.nvme.wait(cid).map_err(Error::Device)?;
        Ok(Stray {
            iova: stray,
            status: done.status,
        })
    }

    /// What the controller is: model, serial, namespace size and where
    /// its queues are.
    pub fn describe(&self, out: &mut impl Write) -> fmt::Result {
        write!(
            out,
            "{} (serial {}), {} blocks of {} bytes, queues at IOVA {QUEUE_IOVA:#x}",
            self.nvme.model(),
            self.nvme.serial(),
            self.nvme.blocks(),
            self.nvme.block_size(),
        )
    }

    /// IOVA mappings the driver holds for client `k`'s data (0 for a
    /// strict client with nothing in flight).
    pub fn data_mappings(&self, k: usize) -> usize {
        let whole = self
            .clients
            .get(k)
            .and_then(Option::as_ref)
            .map_or(0, |c| usize::from(c.whole.is_some()));
        whole
            + self
                .in_flight
                .iter()
                .flatten()
                .filter(|f| f.client == k && f.mapping.is_some())
                .count()
    }
}
