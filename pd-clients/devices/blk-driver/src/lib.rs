//! A block driver over NVMe through the IOMMU server, and the block
//! client's side of the story. The driver serves each block client's
//! request ring (`blk_queue`) from that client's data region, which it
//! reaches through IOVAs the server mapped in one of two modes:
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

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod story;

use blk_queue::{Driver as Ring, Malformed, Request, RequestCode, Response, ResponseStatus};
use core::fmt::{self, Write};

use iommu_client::{Access, Device, DmaBuffer, Fault, Ioas, Iommu, Mapping, Memory, Transport};
use iommu_proto::fault::IOMMU_FAULT_KIND_F_TRANSLATION;
use iommu_proto::Errno;
use mmio::RegisterBlock;
use nvme_driver::{Completion, IoOp, Nvme, QueueMemory, Status, PAGE};

/// Where the device sees its queues.
pub const QUEUE_IOVA: u64 = 0x4000_0000;
/// Where the device sees client k's data region: this plus k * [`DATA_STRIDE`].
pub const DATA_IOVA: u64 = 0x5000_0000;
pub const DATA_STRIDE: u64 = 0x100_0000;
/// I/O queue entries (DEPTH - 1 commands in flight).
pub const DEPTH: u16 = 8;
/// Block clients one driver serves.
pub const MAX_CLIENTS: usize = 4;
const SLOTS: usize = DEPTH as usize;

/// Response error codes (`ResponseStatus::Error`): the range leaves the
/// data region; the device failed the command; the buffer could not be
/// mapped, or could not be unmapped (then the client must not reuse it).
pub const ERR_RANGE: u32 = 1;
pub const ERR_DEVICE: u32 = 2;
pub const ERR_MAP: u32 = 3;
pub const ERR_MALFORMED: u32 = 4;

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
    Server(Errno),
    Device(nvme_driver::Error),
    Ring(Malformed),
    TooManyClients,
    /// The device's blocks are not the size the story's clients use.
    BlockSize(u32),
}

/// Server calls and I/Os, for the cost a driver author cares about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub ios: u64,
    pub maps: u64,
    pub unmaps: u64,
    pub errors: u64,
}

/// A block client as the driver sees it.
pub struct Client<'b, D: Memory, Q: Memory> {
    pub ring: Ring<'b, Q>,
    pub data: &'b DmaBuffer<D>,
    pub mode: Mode,
    data_iova: u64,
    /// The static mode's mapping of the whole region.
    whole: Option<Mapping<'b>>,
}

struct InFlight<'b> {
    client: usize,
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

fn server(e: Errno) -> Error {
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
        if nvme.block_size() != story::BLOCK {
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

    /// Serves a block client whose ring is in `ring` and whose data region
    /// is `data`, in `mode` (static maps the region now). Returns its index.
    pub fn add_client(
        &mut self,
        ring: &'b Q,
        data: &'b DmaBuffer<D>,
        mode: Mode,
    ) -> Result<usize, Error> {
        let k = self
            .clients
            .iter()
            .position(Option::is_none)
            .ok_or(Error::TooManyClients)?;
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
            data_iova,
            whole,
        });
        Ok(k)
    }

    /// Takes every request client `k` has queued and submits what the
    /// device has room for (the rest wait in the ring); then completes
    /// what the device has finished. Returns how many requests completed.
    pub fn serve(&mut self, k: usize) -> u32 {
        while self.nvme.in_flight() < DEPTH - 1 {
            let next = match self.clients.get_mut(k).and_then(Option::as_mut) {
                Some(c) => c.ring.dequeue_request(),
                None => return 0,
            };
            match next {
                Ok(Some(req)) => {
                    if let Err(code) = self.submit(k, req) {
                        self.respond(k, req.id, ResponseStatus::Error(code), 0);
                    }
                }
                Ok(None) => break,
                // A malformed entry was consumed: answer it, go on.
                Err(Malformed::Request { id }) => {
                    self.respond(k, id, ResponseStatus::Error(ERR_MALFORMED), 0)
                }
                Err(_) => break,
            }
        }
        self.complete_all()
    }

    fn submit(&mut self, k: usize, req: Request) -> Result<(), u32> {
        let Some(c) = self.clients.get(k).and_then(Option::as_ref) else {
            return Err(ERR_RANGE);
        };
        let range = req
            .data_range(story::BLOCK)
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
                self.stats.maps += 1;
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
                self.stats.ios += 1;
                self.in_flight[usize::from(cid)] = Some(InFlight {
                    client: k,
                    id: req.id,
                    count: req.count,
                    mapping,
                });
                Ok(())
            }
            Err(_) => {
                if let Some(m) = mapping {
                    self.unmap(m);
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
        let unmapped = f.mapping.is_none_or(|m| self.unmap(m));
        let (status, count) = match c.status {
            _ if !unmapped => {
                self.stats.errors += 1;
                (ResponseStatus::Error(ERR_MAP), 0)
            }
            Status::Success => (ResponseStatus::Ok, f.count),
            _ => {
                self.stats.errors += 1;
                (ResponseStatus::Error(ERR_DEVICE), 0)
            }
        };
        self.respond(f.client, f.id, status, count);
    }

    /// Whether the mapping is gone. An unmap of what this driver mapped
    /// fails only on a server fault; the mapping is then left for the
    /// server's reset of this client to revoke.
    fn unmap(&mut self, m: Mapping<'b>) -> bool {
        self.stats.unmaps += 1;
        self.iommu.unmap(m).is_ok()
    }

    fn respond(&mut self, k: usize, id: u32, status: ResponseStatus, success_count: u32) {
        if let Some(c) = self.clients.get_mut(k).and_then(Option::as_mut) {
            // A full response ring is the client's own doing: it queued more
            // than it can take back.
            let _ = c.ring.enqueue_response(Response {
                id,
                status,
                success_count,
            });
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
        let blocks = 3 * PAGE as u32 / story::BLOCK;
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
