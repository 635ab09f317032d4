//! A server with N clients and their command pages, built the one way,
//! and the engine's store alone; both give their storage back.

use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::Op;
use iommu_server::{Client, ConfigError, IoasSlot, Server};
use iommu_types::config::{ClientConfig, DeviceConfig, Perms, Quota, Region};
use iommu_types::{ClientId, Errno, StreamId};
use iopt::{Account, AreaSlot, Hardware, PagesSlot, Store};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::hardware::MockHw;
use crate::recycle::{self, GiveBack, Lent};

/// Where every test client sees its command page.
pub const PAGE_VA: u64 = 0x7000_0000;

/// Area nodes and backings of a rig's store unless told otherwise.
pub const POOL: usize = 256;

/// A store with `areas` nodes, `pages` backings and `accounts` unlimited
/// owners, its storage given back when dropped.
pub fn store(areas: usize, pages: usize, accounts: usize) -> Lent<Store<'static>> {
    Lent::new(Store::new(
        recycle::slice(areas, AreaSlot::EMPTY),
        recycle::slice(pages, PagesSlot::EMPTY),
        recycle::slice(accounts, Account::UNLIMITED),
    ))
}

/// A client's configuration, from sensible defaults: command page at
/// [`PAGE_VA`], no memory, no devices, a quota of 16 objects (4 IOASes), 4096 pages,
/// 64 table pages, 8 HWPTs and 100 mappings, not a manager.
#[derive(Clone, Copy, Debug)]
pub struct ClientBuilder(ClientConfig);

pub const DEFAULT_QUOTA: Quota = Quota {
    objects: 16,
    ioases: 4,
    mapped_pages: 4096,
    table_pages: 64,
    hwpts: 8,
    mappings: 100,
};

/// A device with the whole 64-bit DMA range and no reserved windows.
pub const fn device(name: &'static str, stream: u32) -> DeviceConfig {
    DeviceConfig {
        name,
        stream_id: StreamId(stream),
        dma_mask: u64::MAX,
        reserved: &[],
    }
}

/// A region the client may read and write.
pub const fn region(vaddr: u64, size: u64, paddr: u64) -> Region {
    Region {
        vaddr,
        size,
        paddr,
        perms: Perms::RW,
    }
}

/// Starts a client named `name`.
pub fn client(name: &'static str) -> ClientBuilder {
    ClientBuilder(ClientConfig {
        name,
        command_page_vaddr: PAGE_VA,
        regions: &[],
        devices: &[],
        quota: DEFAULT_QUOTA,
        manager: false,
    })
}

impl ClientBuilder {
    /// Where the client maps its command page (PAGE_VA by default).
    pub fn command_page(mut self, vaddr: u64) -> Self {
        self.0.command_page_vaddr = vaddr;
        self
    }

    pub fn regions(mut self, regions: &'static [Region]) -> Self {
        self.0.regions = regions;
        self
    }

    pub fn devices(mut self, devices: &'static [DeviceConfig]) -> Self {
        self.0.devices = devices;
        self
    }

    pub fn quota(mut self, quota: Quota) -> Self {
        self.0.quota = quota;
        self
    }

    pub fn objects(mut self, objects: usize) -> Self {
        self.0.quota.objects = objects;
        self
    }

    pub fn mapped_pages(mut self, pages: u64) -> Self {
        self.0.quota.mapped_pages = pages;
        self
    }

    pub fn manager(mut self, manager: bool) -> Self {
        self.0.manager = manager;
        self
    }

    pub fn build(self) -> ClientConfig {
        self.0
    }
}

/// A server over a fresh store and `hw`, and one command page per client.
/// Client `i` of the configurations is `ClientId(i)`; the methods taking a
/// `usize` client mean that.
pub struct Rig<H: Hardware + 'static = MockHw> {
    pub server: Lent<Server<'static, H>>,
    pub pages: Vec<Vec<u8>>,
}

impl<H: Hardware + 'static> std::fmt::Debug for Rig<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig")
            .field("server", &*self.server)
            .finish()
    }
}

/// The client with index `i`.
pub fn id(i: usize) -> ClientId {
    ClientId::from_index(i).expect("a client index")
}

impl<H: Hardware + 'static> Rig<H> {
    /// Panics if the server refuses the configuration.
    pub fn new(hw: H, configs: &[ClientConfig]) -> Rig<H> {
        Rig::try_new(hw, configs, POOL).expect("configuration accepted")
    }

    /// A rig whose store has `pool` area nodes and backings.
    pub fn try_new(hw: H, configs: &[ClientConfig], pool: usize) -> Result<Rig<H>, ConfigError> {
        let store = store(pool, pool, configs.len().max(1));
        let clients = recycle::slice_with(configs.len(), || Client::EMPTY);
        let ioases: usize = configs.iter().map(|c| c.quota.ioases).sum();
        let ioases = recycle::slice_with(ioases, || IoasSlot::EMPTY);
        let owned = recycle::slice(configs.len(), ClientConfig::NONE);
        owned.copy_from_slice(configs);
        match Server::new(take(store), ioases, hw, clients, owned) {
            Ok(server) => Ok(Rig {
                server: Lent::new(server),
                pages: vec![vec![0; iommu_server::COMMAND_PAGE]; configs.len()],
            }),
            Err(e) => Err(e),
        }
    }

    /// Puts `req` at the start of the client's command page, calls with
    /// MR0 = `size` and MR1 = `mr1`, and reads the struct back.
    pub fn call_with<T>(
        &mut self,
        client: usize,
        op: Op,
        req: &mut T,
        size: u64,
        mr1: u64,
    ) -> Result<u64, Errno>
    where
        T: IntoBytes + FromBytes + Immutable,
    {
        let page = &mut self.pages[client];
        let bytes = req.as_bytes();
        page[..bytes.len()].copy_from_slice(bytes);
        let reply = self
            .server
            .handle(id(client), op.label(), [size, mr1], page);
        *req = T::read_from_prefix(page).unwrap().0;
        match reply.errno() {
            None => Ok(reply.mr0),
            Some(e) => Err(e),
        }
    }

    /// [`Rig::call_with`] with MR0 the struct's own size.
    pub fn call<T>(&mut self, client: usize, op: Op, req: &mut T, mr1: u64) -> Result<u64, Errno>
    where
        T: IntoBytes + FromBytes + Immutable,
    {
        let size = std::mem::size_of::<T>() as u64;
        self.call_with(client, op, req, size, mr1)
    }

    /// `Server::check` against the hardware's streams.
    pub fn check(&self) -> Result<(), &'static str>
    where
        H: Attached,
    {
        self.server.check(|s| self.server.hardware().attached(s))
    }

    pub fn alloc(&mut self, client: usize) -> Result<u32, Errno> {
        let mut cmd = iommu_ioas_alloc {
            size: 12,
            flags: 0,
            out_ioas_id: 0,
        };
        self.call_with(client, Op::IoasAlloc, &mut cmd, 12, 0)?;
        Ok(cmd.out_ioas_id)
    }

    /// Maps read-write, at `iova` when given, else where the server picks.
    pub fn map(
        &mut self,
        client: usize,
        ioas: u32,
        va: u64,
        len: u64,
        iova: Option<u64>,
    ) -> Result<u64, Errno> {
        let fixed = if iova.is_some() {
            IOMMU_IOAS_MAP_FIXED_IOVA
        } else {
            0
        };
        let flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | fixed;
        let mut cmd = iommu_ioas_map {
            size: 40,
            flags,
            ioas_id: ioas,
            reserved: 0,
            user_va: va,
            length: len,
            iova: iova.unwrap_or(0),
        };
        self.call_with(client, Op::IoasMap, &mut cmd, 40, 0)?;
        Ok(cmd.iova)
    }

    pub fn bind(&mut self, client: usize, index: u64) -> Result<u32, Errno> {
        let mut cmd = vfio_device_bind_iommufd {
            argsz: 24,
            flags: 0,
            iommufd: -1,
            out_devid: 0,
            token_uuid_ptr: 0,
        };
        self.call_with(client, Op::VfioDeviceBindIommufd, &mut cmd, 24, index)?;
        Ok(cmd.out_devid)
    }

    /// Attaches to `pt` (0: the VFIO compat path); returns the HWPT used.
    pub fn attach(&mut self, client: usize, dev: u32, pt: u32) -> Result<u32, Errno> {
        let mut cmd = vfio_device_attach_iommufd_pt {
            argsz: 16,
            flags: 0,
            pt_id: pt,
            pasid: 0,
        };
        self.call_with(
            client,
            Op::VfioDeviceAttachIommufdPt,
            &mut cmd,
            16,
            u64::from(dev),
        )?;
        Ok(cmd.pt_id)
    }
}

/// Hardware that can say where a stream points, for `Server::check`.
pub trait Attached {
    fn attached(&self, stream: iommu_types::StreamId) -> Option<iopt::DomainId>;
}

impl Attached for MockHw {
    fn attached(&self, stream: iommu_types::StreamId) -> Option<iopt::DomainId> {
        MockHw::attached(self, stream)
    }
}

impl<R: mmio::RegisterBlock> Attached for hw::domains::SmmuDomains<'_, R> {
    fn attached(&self, stream: iommu_types::StreamId) -> Option<iopt::DomainId> {
        self.stream_domain(stream)
    }
}

impl Attached for crate::PtHw {
    fn attached(&self, stream: iommu_types::StreamId) -> Option<iopt::DomainId> {
        self.streams.get(&stream).copied().flatten()
    }
}

/// The store out of its lending, for the server to own (the server gives
/// it back in turn).
fn take(mut store: Lent<Store<'static>>) -> Store<'static> {
    store.take().expect("a fresh lending")
}

impl<T: GiveBack> Lent<T> {
    /// Takes the value out: its storage is no longer given back by this
    /// lending.
    pub fn take(&mut self) -> Option<T> {
        self.0.take()
    }
}
