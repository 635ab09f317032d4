//! The IOMMU server's core: everything but the transport and the hardware.
//!
//! A request arrives as (client, label, message registers, the client's
//! command page); [`Server::handle`] copies the request struct out of the
//! page before looking at it, executes it against that client's own object
//! table, writes the output fields back and returns the reply label (0 or
//! a positive errno) and MR0. A client is nothing but the index of the
//! channel its call arrived on; object IDs mean something only in its own
//! table.
//!
//! Served so far: DESTROY, the IOAS operations, OPTION, device BIND /
//! ATTACH / DETACH, HWPT_ALLOC, GET_HW_INFO and the VFIO type1 container
//! set, and FAULT read of the faults [`Server::report_fault`] queued.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod config;
mod device;
pub mod fault;
pub mod hardware;
mod ioas;
pub mod object;
pub mod smmu;
mod vfio_compat;

pub use iommu_proto::Errno;
use iommu_proto::Op;
use iopt::{AccountId, DomainId, Store};

use config::{check_regions, ClientConfig};
pub use hardware::Hardware;
use object::{ObjectId, ObjectTable};

/// Bytes of a client's command page.
pub const COMMAND_PAGE: usize = 4096;

/// A client's command page as the transport holds it (memory the client
/// can write at any moment): [`Server::serve`] copies it whole, once in
/// and once out.
pub trait CommandPage {
    fn load(&self, into: &mut [u8; COMMAND_PAGE]);
    fn store(&self, from: &[u8; COMMAND_PAGE]);
}

/// Object slots per client (the quota may allow fewer).
pub const MAX_OBJECTS: usize = 64;

/// What an object ID can name. Every slot is sized for an IOAS: there is
/// no heap to box one into, and the tables are static storage.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Object {
    Ioas(IoasObject),
    Device(DeviceObject),
    Hwpt(HwptObject),
}

/// An IO address space and how many HWPTs hang off it.
#[derive(Debug)]
pub struct IoasObject {
    pub(crate) ioas: iopt::Ioas,
    pub(crate) hwpts: u32,
}

/// A bound device: which of the client's configured devices, and the HWPT
/// it is attached to.
#[derive(Debug)]
pub struct DeviceObject {
    pub(crate) index: usize,
    pub(crate) stream: u32,
    pub(crate) hwpt: Option<ObjectId>,
}

/// A hardware page table mirroring one IOAS.
#[derive(Debug)]
pub struct HwptObject {
    pub(crate) ioas: ObjectId,
    pub(crate) domain: DomainId,
    /// Created by an attach to an IOAS (reused by later ones, freed with
    /// its last device) rather than by HWPT_ALLOC.
    pub(crate) auto: bool,
    pub(crate) devices: u32,
}

/// One client's state. The server borrows a slice of these from its caller
/// (a static in the PD), like the store's pools, so its size never has to
/// travel through the stack.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    objects: ObjectTable<Object, MAX_OBJECTS>,
    /// The IOAS the VFIO compatibility calls act on.
    compat: Option<ObjectId>,
    faults: fault::FaultQueue,
}

impl Client {
    /// Storage for one client, configured by [`Server::new`].
    pub const EMPTY: Client = Client {
        config: ClientConfig::NONE,
        objects: ObjectTable::new(0),
        compat: None,
        faults: fault::FaultQueue::EMPTY,
    };
}

/// Everything one call works on.
pub(crate) struct Ctx<'a, 's, H: Hardware> {
    pub store: &'a mut Store<'s>,
    pub hw: &'a mut H,
    pub client: &'a mut Client,
    /// The client's channel, which is also its account in the store.
    pub index: usize,
}

impl<H: Hardware> Ctx<'_, '_, H> {
    pub fn account(&self) -> AccountId {
        AccountId(self.index as u16)
    }
}

/// A reply: label 0 or a positive errno, and MR0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub label: u64,
    pub mr0: u64,
}

impl Reply {
    pub const OK: Reply = Reply { label: 0, mr0: 0 };

    pub fn error(e: Errno) -> Reply {
        Reply {
            label: u64::from(e.code()),
            mr0: 0,
        }
    }

    /// The errno, if the call failed.
    pub fn errno(&self) -> Option<Errno> {
        (self.label != 0).then(|| Errno::from_code(self.label).unwrap_or(Errno::EINVAL))
    }
}

/// A configuration the server refuses, naming the client and region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// More clients than the server was built for, or than the store has
    /// accounts.
    TooManyClients,
    /// The region (index) of the client (index) is misaligned, empty,
    /// wrapping or overlapping another.
    BadRegion { client: usize, region: usize },
    /// The device (index) of the client (index) has a stream ID another
    /// device already has.
    DeviceOwnedTwice { client: usize, device: usize },
    /// The device (index) of the client (index) has more than
    /// MAX_DEVICE_WINDOWS windows, or one with start > last.
    BadDeviceWindows { client: usize, device: usize },
    /// The client's (index) object quota exceeds MAX_OBJECTS.
    TooManyObjects { client: usize },
    /// The clients' mapping quotas add up to more than the store's area or
    /// backing pool: one client could starve another.
    PoolsOvercommitted,
}

/// The server: the engine's store, the hardware and every client's object
/// table.
pub struct Server<'s, H: Hardware> {
    store: Store<'s>,
    hw: H,
    clients: &'s mut [Client],
}

impl<'s, H: Hardware> core::fmt::Debug for Server<'s, H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("store", &self.store)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl<'s, H: Hardware> Server<'s, H> {
    /// Client `i` of `configs` is the client on channel `i`; its quota of
    /// mapped pages becomes account `i` of the store and its state lives in
    /// `clients[i]`.
    pub fn new(
        mut store: Store<'s>,
        hw: H,
        clients: &'s mut [Client],
        configs: &[ClientConfig],
    ) -> Result<Self, ConfigError> {
        if configs.len() > clients.len() {
            return Err(ConfigError::TooManyClients);
        }
        let promised = configs
            .iter()
            .try_fold(0usize, |sum, c| sum.checked_add(c.quota.mappings));
        if promised.is_none_or(|p| p > store.areas_capacity() || p > store.pages_capacity()) {
            return Err(ConfigError::PoolsOvercommitted);
        }
        for (i, config) in configs.iter().enumerate() {
            check_regions(config.regions)
                .map_err(|region| ConfigError::BadRegion { client: i, region })?;
            if config.quota.objects > MAX_OBJECTS {
                return Err(ConfigError::TooManyObjects { client: i });
            }
            for (d, device) in config.devices.iter().enumerate() {
                let bad = device.reserved.len() > config::MAX_DEVICE_WINDOWS
                    || device.reserved.iter().any(|w| w.start > w.last);
                if bad {
                    return Err(ConfigError::BadDeviceWindows {
                        client: i,
                        device: d,
                    });
                }
                let mut earlier = configs[..i]
                    .iter()
                    .flat_map(|c| c.devices.iter())
                    .chain(&config.devices[..d]);
                if earlier.any(|o| o.stream_id == device.stream_id) {
                    return Err(ConfigError::DeviceOwnedTwice {
                        client: i,
                        device: d,
                    });
                }
            }
            let account = AccountId(u16::try_from(i).map_err(|_| ConfigError::TooManyClients)?);
            store
                .set_limit(account, config.quota.mapped_pages)
                .map_err(|_| ConfigError::TooManyClients)?;
            store
                .set_area_limit(account, config.quota.mappings)
                .map_err(|_| ConfigError::TooManyClients)?;
        }
        let clients = &mut clients[..configs.len()];
        for (slot, config) in clients.iter_mut().zip(configs) {
            slot.config = *config;
            slot.objects = ObjectTable::new(config.quota.objects);
            slot.compat = None;
            slot.faults.clear();
        }
        Ok(Server { store, hw, clients })
    }

    pub fn store(&self) -> &Store<'s> {
        &self.store
    }

    pub fn hardware(&self) -> &H {
        &self.hw
    }

    /// The physical address an IOVA of one of a client's IOASes reaches,
    /// for diagnostics and tests.
    pub fn translate(&self, client: usize, ioas: u32, iova: u64) -> Option<u64> {
        match self.clients.get(client)?.objects.get(ObjectId(ioas)).ok()? {
            Object::Ioas(o) => o.ioas.translate(&self.store, iova),
            _ => None,
        }
    }

    /// Revokes everything a client holds. Quarantine comes first: every
    /// stream it has attached goes back to abort, and if any of them cannot
    /// be stopped nothing is torn down (EBUSY: memory a device may still
    /// reach is not released). Then its objects go depth-first (devices,
    /// HWPTs, IOASes), returning every pool entry and its page quota, and
    /// its compat IOAS and fault queue are cleared.
    pub fn reset_client(&mut self, target: usize) -> Result<(), Errno> {
        let c = self.clients.get_mut(target).ok_or(Errno::EINVAL)?;
        let mut ctx = Ctx {
            store: &mut self.store,
            hw: &mut self.hw,
            client: c,
            index: target,
        };
        device::revoke(&mut ctx)
    }

    /// Checks the invariants tying objects, the engine and the hardware
    /// together; for tests and fuzzing. `attached(stream)` reports the
    /// domain the hardware has a stream pointed at.
    pub fn check(&self, attached: impl Fn(u32) -> Option<DomainId>) -> Result<(), &'static str> {
        for (index, client) in self.clients.iter().enumerate() {
            let objects = &client.objects;
            let mut pages = 0u64;
            for id in objects.ids() {
                match objects.get(id) {
                    Ok(Object::Ioas(o)) => {
                        o.ioas.check(&self.store)?;
                        pages += o
                            .ioas
                            .areas(&self.store)
                            .map(|a| (a.last - a.iova + 1) / iopt::PAGE_SIZE)
                            .sum::<u64>();
                        let hwpts = objects
                            .ids()
                            .filter(
                                |&h| matches!(objects.get(h), Ok(Object::Hwpt(x)) if x.ioas == id),
                            )
                            .count();
                        if hwpts != o.hwpts as usize {
                            return Err("IOAS HWPT count out of sync");
                        }
                    }
                    Ok(Object::Hwpt(h)) => {
                        match objects.get(h.ioas) {
                            Ok(Object::Ioas(o)) if o.ioas.is_attached(h.domain) => {}
                            _ => return Err("HWPT's domain not attached to its IOAS"),
                        }
                        let devices = objects
                            .ids()
                            .filter(|&d| matches!(objects.get(d), Ok(Object::Device(x)) if x.hwpt == Some(id)))
                            .count();
                        if devices != h.devices as usize {
                            return Err("HWPT device count out of sync");
                        }
                    }
                    Ok(Object::Device(d)) => {
                        let want = match d.hwpt.map(|h| objects.get(h)) {
                            None => None,
                            Some(Ok(Object::Hwpt(h))) => Some(h.domain),
                            Some(_) => return Err("device attached to a dead HWPT"),
                        };
                        if attached(d.stream) != want {
                            return Err("stream does not point where the device object says");
                        }
                    }
                    Err(_) => return Err("listed object not live"),
                }
            }
            let used = self
                .store
                .account(AccountId(index as u16))
                .map_or(0, |a| a.used);
            if used != pages {
                return Err("quota use differs from the pages mapped");
            }
        }
        Ok(())
    }

    /// Queues a DMA fault with the client owning its stream; returns that
    /// client (the transport notifies it), or `None` when no client owns
    /// the stream.
    pub fn report_fault(&mut self, fault: fault::Fault) -> Option<usize> {
        fault::report(self.clients, fault)
    }

    /// Runs `drain` on the hardware with a sink that queues each fault
    /// with the client owning its stream; returns the clients that got
    /// one (bit i = client i), for the transport to notify.
    pub fn collect_faults(
        &mut self,
        drain: impl FnOnce(&mut H, &mut dyn FnMut(fault::Fault)),
    ) -> u64 {
        let clients = &mut *self.clients;
        let mut notify = 0u64;
        drain(&mut self.hw, &mut |f| {
            if let Some(i) = fault::report(clients, f) {
                notify |= 1u64.checked_shl(i as u32).unwrap_or(0);
            }
        });
        notify
    }

    /// How many mapped runs (across the client's IOASes, copies included)
    /// reach into one of its regions. Computed from the live mappings, so
    /// the count can never drift from what devices can reach; zero once the
    /// region is unmapped everywhere or the client is reset.
    pub fn region_users(&self, client: usize, region: usize) -> usize {
        let Some(c) = self.clients.get(client) else {
            return 0;
        };
        let Some(r) = c.config.regions.get(region) else {
            return 0;
        };
        let (start, last) = (r.paddr, r.paddr + (r.size - 1));
        let mut users = 0;
        for id in c.objects.ids() {
            if let Ok(Object::Ioas(o)) = c.objects.get(id) {
                o.ioas.for_each_run(&self.store, |_, phys, len| {
                    if phys <= last && start <= phys + (len - 1) {
                        users += 1;
                    }
                });
            }
        }
        users
    }

    /// Faults queued for a client.
    pub fn faults_pending(&self, client: usize) -> usize {
        self.clients.get(client).map_or(0, |c| c.faults.len())
    }

    /// Live objects of a client.
    pub fn object_count(&self, client: usize) -> usize {
        self.clients.get(client).map_or(0, |c| c.objects.len())
    }

    /// Serves one call from the client on channel `client`.
    ///
    /// `page` must be the server's private copy of the client's command
    /// page (the transport copies it in with one volatile read and copies
    /// the reply back out): validation here assumes nothing else writes it
    /// during the call.
    pub fn handle(&mut self, client: usize, label: u64, mrs: [u64; 2], page: &mut [u8]) -> Reply {
        match self.dispatch(client, label, mrs, page) {
            Ok(mr0) => Reply { label: 0, mr0 },
            Err(e) => Reply::error(e),
        }
    }

    /// Serves one call whose request is in `page`: copies the page into a
    /// private buffer, handles the call there, and copies the buffer back
    /// (output fields are written on some failures too, as EMSGSIZE's
    /// counts). This is all a transport does besides moving registers.
    pub fn serve(
        &mut self,
        client: usize,
        label: u64,
        mrs: [u64; 2],
        page: &impl CommandPage,
    ) -> Reply {
        let mut private = [0u8; COMMAND_PAGE];
        page.load(&mut private);
        let reply = self.handle(client, label, mrs, &mut private);
        page.store(&private);
        reply
    }

    fn dispatch(
        &mut self,
        client: usize,
        label: u64,
        mrs: [u64; 2],
        page: &mut [u8],
    ) -> Result<u64, Errno> {
        let op = Op::from_label(label).ok_or(Errno::ENOTTY)?;
        if op == Op::ResetClient {
            let caller = self.clients.get(client).ok_or(Errno::EPERM)?;
            // A scalar op: MR0 carries the argument.
            let target = usize::try_from(mrs[iommu_proto::MR_SIZE]).map_err(|_| Errno::EINVAL)?;
            if target >= self.clients.len() {
                return Err(Errno::EINVAL);
            }
            if target != client && !caller.config.manager {
                return Err(Errno::EPERM);
            }
            return self.reset_client(target).map(|()| 0);
        }
        // A channel without a configured client cannot call; be explicit.
        let Some(c) = self.clients.get_mut(client) else {
            return Err(Errno::EPERM);
        };
        let mut ctx = Ctx {
            store: &mut self.store,
            hw: &mut self.hw,
            client: c,
            index: client,
        };
        let size = mrs[iommu_proto::MR_SIZE];
        let dev = mrs[iommu_proto::MR_DEVICE];
        match op {
            Op::Destroy => ioas::destroy(&mut ctx, page, size),
            Op::IoasAlloc => ioas::alloc(&mut ctx, page, size),
            Op::IoasMap => ioas::map(&mut ctx, page, size),
            Op::IoasUnmap => ioas::unmap(&mut ctx, page, size),
            Op::IoasCopy => ioas::copy(&mut ctx, page, size),
            Op::IoasIovaRanges => ioas::iova_ranges(&mut ctx, page, size),
            Op::IoasAllowIovas => ioas::allow_iovas(&mut ctx, page, size),
            Op::Option => ioas::option(&mut ctx, page, size),
            Op::VfioDeviceBindIommufd => device::bind(&mut ctx, page, size, dev),
            Op::VfioDeviceAttachIommufdPt => device::attach(&mut ctx, page, size, dev),
            Op::VfioDeviceDetachIommufdPt => device::detach(&mut ctx, page, size, dev),
            Op::HwptAlloc => device::hwpt_alloc(&mut ctx, page, size),
            Op::GetHwInfo => device::hw_info(&mut ctx, page, size),
            Op::VfioIoas => vfio_compat::vfio_ioas(&mut ctx, page, size),
            Op::VfioGetApiVersion => vfio_compat::api_version(),
            Op::VfioCheckExtension => vfio_compat::check_extension(&mut ctx, size),
            Op::VfioSetIommu => vfio_compat::set_iommu(&mut ctx, size),
            Op::VfioIommuGetInfo => vfio_compat::get_info(&mut ctx, page, size),
            Op::VfioIommuMapDma => vfio_compat::map_dma(&mut ctx, page, size),
            Op::VfioIommuUnmapDma => vfio_compat::unmap_dma(&mut ctx, page, size),
            Op::FaultRead => fault::read(&mut ctx, page, size),
            // Served above: it acts on another client's state.
            Op::ResetClient => Err(Errno::EINVAL),
        }
    }
}
