//! The IOMMU server's core: everything but the transport and the hardware.
//!
//! A request arrives as (client, label, message registers, the client's
//! command page); [`Server::handle`] runs it through the op table
//! (`ucmd.rs`), which copies the request struct out of the page before
//! anything looks at it, against that client's own object table, and
//! writes the output fields back; the reply is a label (0 or a positive
//! errno) and MR0. A client is a [`ClientId`]: the transport attributes
//! each call to the client whose channel it arrived on, and nothing else
//! identifies it. Object IDs mean something only in their client's table.
//!
//! The hardware is known only through [`iopt::Hardware`]. Files follow
//! Linux's iommufd, each above the ones it uses: `object` (the table, the
//! kinds, DESTROY), `client` (a client's state and the request context),
//! `region`, `ioas`, `vfio_compat`, `hwpt`, `device`, `fault`, `reset`,
//! and `ucmd` (the op table) under this file.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod client;
mod device;
mod dump;
mod fault;
mod hwpt;
mod ioas;
pub mod object;
mod region;
mod reset;
mod static_space;
mod stream;
mod ucmd;
mod vfio_compat;

pub use client::{Client, FAULT_QUEUE, MAX_CLIENT_DEVICES};
pub use fault::{
    Collected, Drained, LogEvent, LogLine, LogRuns, EVENTS_PER_INTERRUPT, LOG_PER_INTERRUPT,
    NEW_STORMS, STORM_BUDGET,
};
pub use iommu_types::{ClientId, Errno, Fault};
pub use object::{IoasSlot, MAX_OBJECTS};
pub use region::{check_regions, resolve};
pub use static_space::{StaticError, MAX_STATIC_SPACES};

use iommu_proto::Op;
use iommu_types::config::{ClientConfig, StaticSpace, MAX_DEVICE_WINDOWS};
use iommu_types::StreamId;
use iopt::{Account, AreaSlot, DomainId, Hardware, PagesSlot, Store};
use mmio::Memory;

use client::Ctx;
use object::{IoasPool, Object, ObjectId};
use static_space::StaticSpaces;

/// Bytes of a client's command page.
pub const COMMAND_PAGE: usize = 4096;

/// Everything the server keeps, for `CLIENTS` clients whose mapping quotas
/// add up to `MAPPINGS` and IOAS quotas to `IOASES`: built at compile time
/// and all zero bytes, so a PD keeps it in `.bss` (no image space) and it
/// never passes through the stack; [`Server::new`] sets it up in place. A
/// client costs its object table (small objects) and whatever its quotas
/// promise; only configured IOASes cost an IOAS's memory.
#[derive(Debug)]
pub struct Storage<const MAPPINGS: usize, const CLIENTS: usize, const IOASES: usize> {
    areas: [AreaSlot; MAPPINGS],
    pages: [PagesSlot; MAPPINGS],
    accounts: [Account; CLIENTS],
    clients: [Client; CLIENTS],
    ioases: [IoasSlot; IOASES],
}

impl<const MAPPINGS: usize, const CLIENTS: usize, const IOASES: usize>
    Storage<MAPPINGS, CLIENTS, IOASES>
{
    pub const fn new() -> Self {
        Storage {
            areas: [AreaSlot::EMPTY; MAPPINGS],
            pages: [PagesSlot::EMPTY; MAPPINGS],
            accounts: [Account::NONE; CLIENTS],
            clients: [Client::EMPTY; CLIENTS],
            ioases: [IoasSlot::EMPTY; IOASES],
        }
    }

    /// The engine's store over the pools, the IOAS slots and the client
    /// slots: what [`Server::new`] takes.
    pub fn split(&mut self) -> (Store<'_>, &mut [IoasSlot], &mut [Client]) {
        (
            Store::new(&mut self.areas, &mut self.pages, &mut self.accounts),
            &mut self.ioases,
            &mut self.clients,
        )
    }
}

impl<const MAPPINGS: usize, const CLIENTS: usize, const IOASES: usize> Default
    for Storage<MAPPINGS, CLIENTS, IOASES>
{
    fn default() -> Self {
        Self::new()
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
    /// The region (index) of the client is misaligned, empty, wrapping or
    /// overlapping another.
    BadRegion { client: ClientId, region: usize },
    /// The device (index) of the client has a stream ID another device
    /// already has.
    DeviceOwnedTwice { client: ClientId, device: usize },
    /// The device (index) of the client has more than MAX_DEVICE_WINDOWS
    /// windows, or one with start > last.
    BadDeviceWindows { client: ClientId, device: usize },
    /// The client's object quota exceeds MAX_OBJECTS.
    TooManyObjects { client: ClientId },
    /// The client has more than MAX_CLIENT_DEVICES devices.
    TooManyDevices { client: ClientId },
    /// The clients' mapping quotas add up to more than the store's area or
    /// backing pool: one client could starve another.
    PoolsOvercommitted,
    /// The clients' table-page quotas add up to more than the hardware's
    /// page-table pool.
    TablePagesOvercommitted,
    /// The clients' HWPT quotas add up to more domains than the hardware
    /// can hold at once.
    HwptsOvercommitted,
    /// The clients' IOAS quotas add up to more than the IOAS pool.
    IoasesOvercommitted,
}

impl ConfigError {
    /// The client the refusal is about, if one.
    pub fn client(&self) -> Option<ClientId> {
        match *self {
            ConfigError::BadRegion { client, .. }
            | ConfigError::DeviceOwnedTwice { client, .. }
            | ConfigError::BadDeviceWindows { client, .. }
            | ConfigError::TooManyObjects { client }
            | ConfigError::TooManyDevices { client } => Some(client),
            _ => None,
        }
    }
}

/// What the server log says when it refuses its configuration at start.
impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ConfigError::TooManyClients => {
                f.write_str("more clients than the server was built for")
            }
            ConfigError::BadRegion { client, region } => write!(
                f,
                "client {}: DMA region {region} is misaligned, empty, wrapping or overlaps another",
                client.index()
            ),
            ConfigError::DeviceOwnedTwice { client, device } => write!(
                f,
                "client {}: device {device}'s stream ID belongs to another device",
                client.index()
            ),
            ConfigError::BadDeviceWindows { client, device } => write!(
                f,
                "client {}: device {device}'s reserved windows are too many or inverted",
                client.index()
            ),
            ConfigError::TooManyObjects { client } => write!(
                f,
                "client {}: its object quota exceeds what an object table holds",
                client.index()
            ),
            ConfigError::TooManyDevices { client } => write!(
                f,
                "client {}: more than {MAX_CLIENT_DEVICES} devices",
                client.index()
            ),
            ConfigError::PoolsOvercommitted => {
                f.write_str("the mapping quotas add up to more than the area pools")
            }
            ConfigError::TablePagesOvercommitted => {
                f.write_str("the table-page quotas add up to more than the page-table pool")
            }
            ConfigError::HwptsOvercommitted => {
                f.write_str("the HWPT quotas add up to more domains than the SMMU holds")
            }
            ConfigError::IoasesOvercommitted => {
                f.write_str("the IOAS quotas add up to more than the IOAS pool")
            }
        }
    }
}

/// The server: the engine's store, the hardware and every client's object
/// table.
pub struct Server<'s, H: Hardware> {
    store: Store<'s>,
    pool: IoasPool<'s>,
    hw: H,
    clients: &'s mut [Client],
    /// Client i's configuration; as many as `clients`.
    configs: &'s mut [ClientConfig],
    /// The static IO address spaces, once established.
    statics: StaticSpaces<'s>,
    /// The last interrupt left records in the IOMMU's event queue.
    backlog: bool,
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
    /// Client `i` of `configs` is [`ClientId`] `i`: its quota of mapped
    /// pages becomes account `i` of the store and its state lives in
    /// `clients[i]`.
    pub fn new(
        mut store: Store<'s>,
        ioases: &'s mut [IoasSlot],
        hw: H,
        clients: &'s mut [Client],
        configs: &'s mut [ClientConfig],
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
        let sum = |f: fn(&ClientConfig) -> usize| {
            configs
                .iter()
                .try_fold(0usize, |total, c| total.checked_add(f(c)))
        };
        if sum(|c| c.quota.table_pages).is_none_or(|p| p > hw.table_pages()) {
            return Err(ConfigError::TablePagesOvercommitted);
        }
        if sum(|c| c.quota.hwpts).is_none_or(|d| d > hw.max_domains()) {
            return Err(ConfigError::HwptsOvercommitted);
        }
        if sum(|c| c.quota.ioases).is_none_or(|n| n > ioases.len()) {
            return Err(ConfigError::IoasesOvercommitted);
        }
        for (i, config) in configs.iter().enumerate() {
            let client = ClientId::from_index(i).ok_or(ConfigError::TooManyClients)?;
            check_regions(config.regions)
                .map_err(|region| ConfigError::BadRegion { client, region })?;
            if config.quota.objects > MAX_OBJECTS {
                return Err(ConfigError::TooManyObjects { client });
            }
            if config.devices.len() > MAX_CLIENT_DEVICES {
                return Err(ConfigError::TooManyDevices { client });
            }
            for (device, d) in config.devices.iter().enumerate() {
                let bad = d.reserved.len() > MAX_DEVICE_WINDOWS
                    || d.reserved.iter().any(|w| w.start > w.last);
                if bad {
                    return Err(ConfigError::BadDeviceWindows { client, device });
                }
                let mut earlier = configs[..i]
                    .iter()
                    .flat_map(|c| c.devices.iter())
                    .chain(&config.devices[..device]);
                if earlier.any(|o| o.stream_id == d.stream_id) {
                    return Err(ConfigError::DeviceOwnedTwice { client, device });
                }
            }
            store
                .set_limit(client, config.quota.mapped_pages)
                .map_err(|_| ConfigError::TooManyClients)?;
            store
                .set_area_limit(client, config.quota.mappings)
                .map_err(|_| ConfigError::TooManyClients)?;
        }
        let clients = &mut clients[..configs.len()];
        for (slot, config) in clients.iter_mut().zip(configs.iter()) {
            slot.objects.reset(config.quota.objects);
            slot.compat = None;
            slot.faults.clear();
        }
        Ok(Server {
            store,
            pool: IoasPool::new(ioases),
            hw,
            clients,
            configs,
            statics: StaticSpaces::NONE,
            backlog: false,
        })
    }

    /// Establishes the static IO address spaces (system.xml's
    /// `<io_address_space>`) before anything is served: one domain per
    /// space with every iomap mapped, its stream attached. The clients'
    /// promised table pages and HWPTs come first; all or nothing (a
    /// refusal leaves no space established). Once only.
    pub fn establish(&mut self, spaces: &'s [StaticSpace]) -> Result<(), StaticError> {
        if !self.statics.configs.is_empty() {
            return Err(StaticError::TooMany);
        }
        let sum = |f: fn(&ClientConfig) -> usize| {
            self.configs
                .iter()
                .try_fold(0usize, |total, c| total.checked_add(f(c)))
        };
        let tables = sum(|c| c.quota.table_pages).ok_or(StaticError::TablePagesOvercommitted)?;
        let domains = sum(|c| c.quota.hwpts).ok_or(StaticError::DomainsOvercommitted)?;
        let configs = &*self.configs;
        self.statics = static_space::establish(
            &mut self.hw,
            spaces,
            configs.len(),
            tables,
            domains,
            |stream| {
                configs
                    .iter()
                    .any(|c| c.devices.iter().any(|d| d.stream_id == stream))
            },
        )?;
        Ok(())
    }

    /// The static spaces established.
    pub fn static_spaces(&self) -> &'s [StaticSpace] {
        self.statics.configs
    }

    /// Faults seen on static space `index`'s stream so far, and the last.
    pub fn static_faults(&self, index: usize) -> Option<(u64, Option<Fault>)> {
        let s = self.statics.state.get(index)?.as_ref()?;
        Some((s.faults, s.last))
    }

    /// The static spaces with faults the transport has not yet notified
    /// their fault PD of (bit i = space i); cleared.
    pub fn take_static_faults(&mut self) -> u64 {
        self.statics.take_pending()
    }

    /// Holds static space `index` in quarantine: its stream aborts (its
    /// device's DMA reaches nothing, and is reported) until
    /// [`Server::release_static`]. Its domain and mappings stay. EINVAL for
    /// no such space; a stream that will not stop is the hardware's errno
    /// and the space stays as it was.
    pub fn hold_static(&mut self, index: usize) -> Result<(), Errno> {
        let stream = self
            .statics
            .configs
            .get(index)
            .ok_or(Errno::EINVAL)?
            .stream_id;
        let state = self.statics.state[index].as_mut().ok_or(Errno::EINVAL)?;
        self.hw.detach(stream)?;
        state.held = true;
        Ok(())
    }

    /// Ends a hold: the stream points at the space's domain again.
    pub fn release_static(&mut self, index: usize) -> Result<(), Errno> {
        let stream = self
            .statics
            .configs
            .get(index)
            .ok_or(Errno::EINVAL)?
            .stream_id;
        let state = self.statics.state[index].as_mut().ok_or(Errno::EINVAL)?;
        if state.held {
            self.hw.attach(stream, state.domain)?;
            state.held = false;
        }
        Ok(())
    }

    /// Whether static space `index` is held in quarantine.
    pub fn static_held(&self, index: usize) -> Option<bool> {
        Some(self.statics.state.get(index)?.as_ref()?.held)
    }

    /// Gives the storage back: the store (whose own storage
    /// [`Store::into_parts`] returns), the hardware, the client slots and
    /// the configurations.
    #[allow(clippy::type_complexity)]
    pub fn into_parts(
        self,
    ) -> (
        Store<'s>,
        &'s mut [IoasSlot],
        H,
        &'s mut [Client],
        &'s mut [ClientConfig],
    ) {
        (
            self.store,
            self.pool.into_slots(),
            self.hw,
            self.clients,
            self.configs,
        )
    }

    pub fn store(&self) -> &Store<'s> {
        &self.store
    }

    pub fn hardware(&self) -> &H {
        &self.hw
    }

    /// The hardware, to change its behaviour between requests (tests
    /// inject failures: a stream that will not stop, an invalidation that
    /// is never confirmed).
    pub fn hardware_mut(&mut self) -> &mut H {
        &mut self.hw
    }

    fn client(&self, client: ClientId) -> Option<&Client> {
        self.clients.get(client.index())
    }

    /// The physical address an IOVA of one of a client's IOASes reaches,
    /// for diagnostics and tests.
    pub fn translate(&self, client: ClientId, ioas: u32, iova: u64) -> Option<u64> {
        let o = self.client(client)?.objects.ioas(ObjectId(ioas)).ok()?;
        self.pool.get(o.slot).ok()?.translate(&self.store, iova)
    }

    /// Holds a client's devices in quarantine until [`Server::release`]:
    /// from now on every request of it that could give a device a
    /// translation again is EPERM (BIND, ATTACH whatever it names, the
    /// compat IOAS included, HWPT_ALLOC, and IOAS_MAP, IOAS_COPY and
    /// VFIO MAP_DMA, which could reach a stream that would not stop through
    /// its domain), then the client is reset (its streams abort, its
    /// objects go). The hold stands even when the reset is EBUSY (a stream
    /// that would not stop): whatever that left behind, no device of the
    /// client regains a translation while the manager retries.
    pub fn hold(&mut self, target: ClientId) -> Result<(), Errno> {
        self.clients
            .get_mut(target.index())
            .ok_or(Errno::EINVAL)?
            .held = true;
        self.reset_client(target)
    }

    /// Ends a hold: the client may bind, attach and map again.
    pub fn release(&mut self, target: ClientId) -> Result<(), Errno> {
        self.clients
            .get_mut(target.index())
            .ok_or(Errno::EINVAL)?
            .held = false;
        Ok(())
    }

    /// Reserves `range` in IOAS `ioas` of `client` for the IOAS's life, as
    /// Linux's test-only IOMMU_TEST_OP_ADD_RESERVED does (no client can
    /// ask for it): EADDRINUSE where an area or allowed range lies, ENOENT
    /// for no such IOAS. For tests that port Linux's selftest.
    pub fn add_reserved(
        &mut self,
        client: ClientId,
        ioas: u32,
        range: iommu_types::IovaRange,
    ) -> Result<(), Errno> {
        let c = self.clients.get(client.index()).ok_or(Errno::EINVAL)?;
        let slot = c.objects.ioas(ObjectId(ioas))?.slot;
        self.pool
            .get_mut(slot)?
            .reserve(&self.store, range, iopt::ReservedOwner::Server)
    }

    /// Revokes everything a client holds. Quarantine comes first: each
    /// stream it has attached is put back to abort, and each that stops is
    /// released at once (its device left bound but unattached, an automatic
    /// HWPT it leaves empty freed). If any stream cannot be stopped the
    /// reset is EBUSY and stops there: the streams that stopped stay
    /// stopped and released, the others stay attached, and every IOAS and
    /// mapping stays (memory a device may still reach is never released),
    /// so a retry finishes the job. Once every stream is stopped the
    /// objects go depth-first (devices, HWPTs, IOASes), returning every
    /// pool entry and its page quota, and the compat IOAS and fault queue
    /// are cleared.
    pub fn reset_client(&mut self, target: ClientId) -> Result<(), Errno> {
        let client = self.clients.get_mut(target.index()).ok_or(Errno::EINVAL)?;
        let storming = client.faults.storming;
        let mut ctx = Ctx {
            store: &mut self.store,
            pool: &mut self.pool,
            hw: &mut self.hw,
            client,
            config: &self.configs[target.index()],
            id: target,
            page: &mmio::cells(&mut []),
            device: 0,
            aborted_all: false,
        };
        reset::revoke(&mut ctx)?;
        // A fresh start records again: what its previous life's devices
        // still do is told to the client's next life.
        for (i, d) in self.configs[target.index()].devices.iter().enumerate() {
            if storming & 1u64.checked_shl(i as u32).unwrap_or(0) != 0 {
                let _ = self.hw.set_recording(d.stream_id, true);
            }
        }
        Ok(())
    }

    /// Checks the invariants tying objects, the engine and the hardware
    /// together; for tests and fuzzing. `attached(stream)` reports the
    /// domain the hardware has a stream pointed at.
    pub fn check(
        &self,
        attached: impl Fn(iommu_types::StreamId) -> Option<DomainId>,
    ) -> Result<(), &'static str> {
        let ioas_objects: usize = self.clients.iter().map(|c| c.objects.ioases()).sum();
        if ioas_objects != self.pool.used() {
            return Err("IOAS pool slots and IOAS objects differ");
        }
        for (index, client) in self.clients.iter().enumerate() {
            let objects = &client.objects;
            for id in objects.ids() {
                match objects.get(id) {
                    Ok(Object::Ioas(o)) => {
                        let ioas = self.pool.get(o.slot).map_err(|_| "IOAS slot empty")?;
                        if ioas.client().index() != index {
                            return Err("IOAS charged to another client");
                        }
                        ioas.check(&self.store)?;
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
                        match objects.ioas(h.ioas).map(|o| self.pool.get(o.slot)) {
                            Ok(Ok(o)) if o.is_attached(h.domain) => {}
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
            let id = ClientId::from_index(index).ok_or("client index")?;
            let used = self.store.account(id).map_or(0, |a| a.used);
            if used != self.store.charged_pages(id) {
                return Err("quota use differs from the pages the live backings hold");
            }
        }
        for (space, state) in self.statics.configs.iter().zip(&self.statics.state) {
            let state = state.as_ref().ok_or("static space not established")?;
            let want = (!state.held).then_some(state.domain);
            if attached(space.stream_id) != want {
                return Err("a static space's stream does not point where its hold says");
            }
        }
        Ok(())
    }

    /// Queues a DMA fault with the client owning its stream; returns that
    /// client (the transport notifies it), or `None` when no client owns
    /// the stream.
    pub fn report_fault(&mut self, fault: Fault) -> Option<ClientId> {
        match fault::report(self.clients, self.configs, fault, false) {
            Some((client, ..)) => Some(client),
            None => {
                // A static space's stream: recorded for its fault PD.
                self.statics.report(fault);
                None
            }
        }
    }

    /// One interrupt: runs `drain` on the hardware, asking for at most
    /// [`EVENTS_PER_INTERRUPT`] records, with a sink that queues each fault
    /// with the client owning its stream. A device with more than
    /// [`STORM_BUDGET`] records in the interrupt is storming: its further
    /// records are dropped and counted for its client alone, and the
    /// hardware stops recording it until the client resumes it. What the
    /// hardware lost goes to every client owning a stream (the SMMU does not
    /// say whose). Says what happened on `log`, at most
    /// [`LOG_PER_INTERRUPT`] lines and a count of the rest. Returns the
    /// clients to notify, the records handled and whether more wait.
    pub fn collect_faults(
        &mut self,
        drain: impl FnOnce(&mut H, usize, &mut dyn FnMut(Fault)) -> Drained,
        log: &mut dyn FnMut(LogEvent),
    ) -> Collected {
        let (clients, configs) = (&mut *self.clients, &*self.configs);
        let statics = &mut self.statics;
        for client in clients.iter_mut() {
            client.faults.window = [0; MAX_CLIENT_DEVICES];
        }
        let mut notify = 0u64;
        let mut handled = 0usize;
        let mut storms: heapless::Vec<StreamId, { fault::NEW_STORMS }> = heapless::Vec::new();
        let mut budget = fault::Budget {
            log,
            left: LOG_PER_INTERRUPT,
            suppressed: 0,
        };
        let drained = drain(&mut self.hw, EVENTS_PER_INTERRUPT, &mut |f| {
            handled += 1;
            match fault::report(clients, configs, f, true) {
                Some((client, outcome, event)) => {
                    let bit = 1u64.checked_shl(u32::from(client.0)).unwrap_or(0);
                    match outcome {
                        fault::Outcome::Queued => notify |= bit,
                        fault::Outcome::Storm(stream) => {
                            notify |= bit;
                            // At most NEW_STORMS per interrupt; should the
                            // drain hand over more than it was asked, the
                            // extra storms are still dropped in software.
                            let _ = storms.push(stream);
                        }
                        // Told, so that it reads the count and can
                        // resume once the backlog is gone.
                        fault::Outcome::Dropped => notify |= bit,
                    }
                    match event {
                        Some(event @ LogEvent::Storming { .. }) => budget.always(event),
                        Some(event) => budget.say(event),
                        None => {}
                    }
                }
                None => match statics.report(f) {
                    Some((_, space)) => budget.say(LogEvent::StaticFault {
                        space: space.name,
                        domain_id: space.domain_id,
                        fault: f,
                    }),
                    None => budget.say(LogEvent::Unowned(f)),
                },
            }
        });
        for stream in storms {
            // Unable to stop them in the hardware, the server still drops
            // them; the records then keep reaching the event queue.
            let _ = self.hw.set_recording(stream, false);
        }
        if drained.lost {
            self.statics.lost();
            notify |= fault::lost(self.clients, self.configs);
            budget.say(LogEvent::LostRecords);
        }
        if drained.global_errors != 0 {
            budget.say(LogEvent::GlobalErrors(drained.global_errors));
        }
        budget.finish();
        self.backlog = drained.pending;
        Collected {
            notify,
            handled,
            pending: drained.pending,
        }
    }

    /// The last interrupt left records in the IOMMU's queue: the transport
    /// calls [`Server::collect_faults`] again the next time the server runs.
    pub fn backlog(&self) -> bool {
        self.backlog
    }

    /// How many mapped runs (across the client's IOASes, copies included)
    /// reach into one of its regions. Computed from the live mappings, so
    /// the count can never drift from what devices can reach; zero once the
    /// region is unmapped everywhere or the client is reset.
    pub fn region_users(&self, client: ClientId, region: usize) -> usize {
        let (Some(c), Some(config)) = (self.client(client), self.configs.get(client.index()))
        else {
            return 0;
        };
        let Some(r) = config.regions.get(region) else {
            return 0;
        };
        let (start, last) = (r.paddr, r.paddr + (r.size - 1));
        let mut users = 0;
        for id in c.objects.ids() {
            if let Ok(ioas) = c.objects.ioas(id).and_then(|o| self.pool.get(o.slot)) {
                ioas.for_each_run(&self.store, |_, phys, len| {
                    if phys <= last && start <= phys + (len - 1) {
                        users += 1;
                    }
                });
            }
        }
        users
    }

    /// Faults queued for a client.
    pub fn faults_pending(&self, client: ClientId) -> usize {
        self.client(client).map_or(0, |c| c.faults.len())
    }

    /// Live objects of a client.
    pub fn object_count(&self, client: ClientId) -> usize {
        self.client(client).map_or(0, |c| c.objects.len())
    }

    /// Serves one call from `client` whose request is in `page`, the
    /// client's command page (memory it may write at any moment). Only what
    /// the operation names is copied, each byte read once into the server's
    /// own memory before it is validated: the request struct (MR0 bytes)
    /// and the arrays it points at; only the output fields and arrays are
    /// written back (after success, and with EMSGSIZE's counts). This is
    /// all a transport does besides moving registers.
    pub fn serve(
        &mut self,
        client: ClientId,
        label: u64,
        mrs: [u64; 2],
        page: &impl Memory,
    ) -> Reply {
        match self.dispatch(client, label, mrs, page) {
            Ok(mr0) => Reply { label: 0, mr0 },
            Err(e) => Reply::error(e),
        }
    }

    /// [`Server::serve`] over a page the caller holds privately.
    pub fn handle(
        &mut self,
        client: ClientId,
        label: u64,
        mrs: [u64; 2],
        page: &mut [u8],
    ) -> Reply {
        self.serve(client, label, mrs, &mmio::cells(page))
    }

    fn dispatch(
        &mut self,
        client: ClientId,
        label: u64,
        mrs: [u64; 2],
        page: &impl Memory,
    ) -> Result<u64, Errno> {
        let op = Op::from_label(label).ok_or(Errno::ENOTTY)?;
        // A channel without a configured client cannot call; be explicit.
        let caller = self.configs.get(client.index()).ok_or(Errno::EPERM)?;
        if op == Op::ResetClient {
            // A scalar op: MR0 carries the target's index.
            let target = usize::try_from(mrs[iommu_proto::MR_SIZE])
                .ok()
                .filter(|&t| t < self.clients.len())
                .and_then(ClientId::from_index)
                .ok_or(Errno::EINVAL)?;
            if target != client && !caller.manager {
                return Err(Errno::EPERM);
            }
            return self.reset_client(target).map(|()| 0);
        }
        if op == Op::Dump {
            // Reads every client's state: the server's, not the table's.
            let size = mrs[iommu_proto::MR_SIZE];
            let mut cmd: iommu_proto::dump::iommu_dump =
                iommu_proto::decode::read_request(page, size)?;
            if !caller.manager {
                return Err(Errno::EPERM);
            }
            dump::dump(self, client, page, &mut cmd)?;
            iommu_proto::decode::copy_out(page, size, &cmd)?;
            return Ok(0);
        }
        if op == Op::FaultResume {
            // Waits for the IOMMU's backlog, which is the server's.
            return fault::resume(
                &mut self.hw,
                &mut self.clients[client.index()],
                caller,
                mrs[iommu_proto::MR_SIZE],
                self.backlog,
            );
        }
        if op == Op::Quarantine {
            if !caller.manager {
                return Err(Errno::EPERM);
            }
            let target = mrs[iommu_proto::MR_SIZE];
            if target & iommu_proto::IOMMU_QUARANTINE_STATIC != 0 {
                let index = usize::try_from(target & !iommu_proto::IOMMU_QUARANTINE_STATIC)
                    .map_err(|_| Errno::EINVAL)?;
                return match mrs[iommu_proto::MR_DEVICE] {
                    1 => self.hold_static(index).map(|()| 0),
                    0 => self.release_static(index).map(|()| 0),
                    _ => Err(Errno::EINVAL),
                };
            }
            let target = usize::try_from(target)
                .ok()
                .filter(|&t| t < self.clients.len())
                .and_then(ClientId::from_index)
                .ok_or(Errno::EINVAL)?;
            return match mrs[iommu_proto::MR_DEVICE] {
                1 => self.hold(target).map(|()| 0),
                0 => self.release(target).map(|()| 0),
                _ => Err(Errno::EINVAL),
            };
        }
        let mut ctx = Ctx {
            store: &mut self.store,
            pool: &mut self.pool,
            hw: &mut self.hw,
            client: &mut self.clients[client.index()],
            config: &self.configs[client.index()],
            id: client,
            page,
            device: mrs[iommu_proto::MR_DEVICE],
            aborted_all: false,
        };
        let result = ucmd::dispatch(&mut ctx, op, mrs[iommu_proto::MR_SIZE]);
        if ctx.aborted_all {
            // Every device of every client stopped with it.
            for (c, config) in self.clients.iter_mut().zip(self.configs.iter()) {
                if !config.devices.is_empty() {
                    c.faults.stopped = true;
                }
            }
        }
        result
    }
}
