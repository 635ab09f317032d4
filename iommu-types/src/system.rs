//! The system's configuration, modelled once: what system.xml and its
//! IOMMU policy sidecar iommu.xml say about the server, each client, each
//! static IO address space and each PD's maps. The build-time checker
//! (`sysgen`) reads the two files into these types, held in owned
//! storage, and writes them out as constants of the same types in
//! [`Static`] storage (the `iommu-system` crate),
//! from which the server builds its [`ClientConfig`](crate::config::ClientConfig)s
//! and [`StaticSpace`](crate::config::StaticSpace)s.
//!
//! Channels are the one thing the two sides name differently (a number
//! while checking, Microkit's channel type in a PD), so the types holding
//! one take it as the parameter `C`.

use core::ops::Range;

use crate::config::{DeviceConfig, Perms, Quota, Static, Storage};
use crate::StreamId;

/// Where the description says something: the file and line of an
/// element, so that a refusal that stems from the configuration can cite
/// it (`iommu.xml:12`). A name and a number: cheap enough for every PD
/// image to carry one per element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin<S: Storage> {
    /// The file's name as the build was given it (`system.xml`).
    pub file: S::Text,
    /// 1-based.
    pub line: u32,
}

impl<S: Storage> core::fmt::Display for Origin<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.file.as_ref(), self.line)
    }
}

/// Where the server finds a physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paddr<S: Storage> {
    /// The memory region's fixed `phys_addr`.
    Fixed(u64),
    /// Patched by the Microkit tool into this symbol of the server (a
    /// `<setvar region_paddr>`).
    Symbol(S::Symbol),
}

/// A memory region the server maps: where, how big, and how it learns
/// the physical address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerMemory<S: Storage> {
    pub mr: S::Text,
    pub vaddr: u64,
    pub size: u64,
    pub paddr: Paddr<S>,
}

/// The server PD's resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec<S: Storage, C> {
    pub pd: S::Text,
    /// The SMMUv3 register frame (uncached).
    pub smmu_regs: ServerMemory<S>,
    /// Stream table, queues and context descriptors.
    pub smmu_memory: ServerMemory<S>,
    /// The pool every IO page table comes from.
    pub page_tables: ServerMemory<S>,
    pub event_irq: C,
    pub gerror_irq: C,
    /// Bytes of stack system.xml gives the server PD.
    pub stack_size: u64,
}

/// Blocks `first_block` up to, not including, `first_block + blocks` of a
/// disk (512-byte blocks; the sum does not wrap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    pub first_block: u64,
    pub blocks: u64,
}

impl Share {
    /// The first block past the share.
    pub const fn end(&self) -> u64 {
        self.first_block + self.blocks
    }

    pub const fn range(&self) -> Range<u64> {
        self.first_block..self.end()
    }
}

/// One DMA region of a client (`<dma>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSpec<S: Storage> {
    pub mr: S::Text,
    /// Where the client sees it.
    pub vaddr: u64,
    pub size: u64,
    /// The client's own rights: the most it may ask a device for.
    pub perms: Perms,
    pub paddr: Paddr<S>,
    /// `<dma mode="strict">`: the client's driver maps only in-flight
    /// buffers of it, and unmaps each on completion (the server does not
    /// enforce this; the driver reads it).
    pub strict: bool,
    /// The one other PD (not the client, not the server) that maps the
    /// region, if exactly one: whose buffers it holds.
    pub shared_with: Option<S::Text>,
    /// The block client's share of its driver's disk, when the region is
    /// a block client's data (`<dma first_block blocks>`; checked on the
    /// disk, not wrapping, disjoint from the other clients').
    pub share: Option<Share>,
    /// iommu.xml's `<dma>` for it.
    pub origin: Origin<S>,
    /// system.xml's `<memory_region>`: its size and physical address.
    pub memory_region: Origin<S>,
    /// system.xml's `<map>` of it into the client: its rights there, the
    /// most a device gets.
    pub map: Origin<S>,
}

/// Where a child PD sits: its parent and its id there (Microkit's `id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildOf<S: Storage> {
    pub parent: S::Text,
    pub id: u8,
}

/// One client: a PD that calls the server. Its
/// [`ClientId`](crate::ClientId) is its position among the clients (the
/// order of iommu.xml's `<client>` elements); its channels are whatever
/// system.xml gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSpec<S: Storage, C> {
    pub pd: S::Text,
    /// The channel at the server's end, which identifies the client.
    pub server_channel: C,
    /// The channel at the client's end, on which it calls the server.
    pub client_channel: C,
    /// The memory region of its command page.
    pub command_page: S::Text,
    /// Where the server sees the command page.
    pub command_page_server: u64,
    /// Where the client sees it.
    pub command_page_client: u64,
    pub regions: S::List<RegionSpec<S>>,
    pub devices: S::List<DeviceConfig<S>>,
    /// The server's mapping of each device's PCI configuration page, in
    /// `devices` order.
    pub device_config_pages: S::List<Option<u64>>,
    /// iommu.xml's `<device>` of each device, in `devices` order.
    pub device_origins: S::List<Origin<S>>,
    pub quota: Quota,
    /// iommu.xml's `<quota>`: what a refusal for running out cites.
    pub quota_origin: Origin<S>,
    /// May reset other clients.
    pub manager: bool,
    /// The 512-byte blocks of the disk one of its devices is
    /// (`<device disk_blocks>`), which its block clients share.
    pub disk_blocks: Option<u64>,
    /// For a child PD: its parent, which receives its faults and can
    /// restart it.
    pub child_of: Option<ChildOf<S>>,
    /// The PD's program image, as system.xml names it ("" if none): which
    /// driver it runs.
    pub program_image: S::Text,
    /// iommu.xml's `<client>`.
    pub origin: Origin<S>,
}

impl<S: Storage, C> ClientSpec<S, C> {
    /// Whether the client drives a device by DMA: it has a device and a
    /// DMA region.
    pub fn drives_dma(&self) -> bool {
        !self.devices.is_empty() && !self.regions.is_empty()
    }

    /// Whether the client runs `image` and drives a device with it.
    pub fn runs(&self, image: &str) -> bool {
        self.drives_dma() && self.program_image.as_ref() == image
    }
}

/// One `<iomap>` of a static IO address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoMapSpec<S: Storage> {
    pub mr: S::Text,
    /// Where the device sees the region.
    pub iovaddr: u64,
    pub size: u64,
    pub perms: Perms,
    pub paddr: Paddr<S>,
    /// The region's fixed phys_addr is its iovaddr: the device sees it
    /// where the CPU's physical address says.
    pub identity: bool,
}

/// A static IO address space: system.xml's `<io_address_space>`, which
/// the server builds at start (its device confined to its iomaps with no
/// call from its driver), and iommu.xml's `<static_device>` for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticSpaceSpec<S: Storage, C> {
    pub name: S::Text,
    /// `peripheral_id` as written (`bus:dev.fn` or a stream ID).
    pub peripheral: S::Text,
    pub stream_id: StreamId,
    pub domain_id: u16,
    pub iomaps: S::List<IoMapSpec<S>>,
    /// Page-table pages the server sets aside for it: what its iomaps
    /// need at most.
    pub table_pages: usize,
    /// The PD told of its faults (`<static_device faults>`, else the
    /// manager), and the server's channel to it.
    pub fault_pd: Option<S::Text>,
    pub fault_channel: Option<C>,
}

/// One `<map>` of a PD: where it sees a memory region, how big it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec<S: Storage> {
    pub pd: S::Text,
    pub mr: S::Text,
    pub vaddr: u64,
    pub size: u64,
    pub write: bool,
    pub setvar_vaddr: Option<S::Text>,
    /// The region's fixed physical address (`phys_addr`), if system.xml
    /// gives one: where a device's configuration page and BAR windows are.
    pub paddr: Option<u64>,
    /// system.xml's `<map>`.
    pub origin: Origin<S>,
    /// system.xml's `<memory_region>` it maps: its size and `phys_addr`.
    pub memory_region: Origin<S>,
}

// Compiled in, the model is plain data: copied as the constants it is.
impl Copy for ServerMemory<Static> {}
impl<C: Copy> Copy for ServerSpec<Static, C> {}
impl Copy for RegionSpec<Static> {}
impl<C: Copy> Copy for ClientSpec<Static, C> {}
impl Copy for IoMapSpec<Static> {}
impl<C: Copy> Copy for StaticSpaceSpec<Static, C> {}
