//! The static configuration of each client, as the server holds it:
//! generated from system.xml and iommu.xml for the PDs (the
//! `iommu-system` crate), written by hand in tests. The description it
//! comes from is modelled in [`crate::system`], whose types take their
//! names and lists in a [`Storage`]: [`Static`] here and in the PDs,
//! owned strings and vectors in the build-time checker.

use core::fmt::Debug;
use core::ops::Deref;

use crate::{IovaRange, StreamId};

/// How the configuration model holds its names, lists and the server's
/// setvar symbols: borrowed for the life of the program in the server and
/// the PDs ([`Static`]), owned while the build-time checker reads
/// system.xml. One model, two ways of holding it.
pub trait Storage: Clone + Copy + Debug + PartialEq + Eq + 'static {
    /// A name from the description (a PD, a memory region, a device).
    type Text: Clone + Debug + PartialEq + Eq + AsRef<str> + 'static;
    /// A list of items.
    type List<T: Clone + Debug + PartialEq + Eq + 'static>: Clone
        + Debug
        + PartialEq
        + Eq
        + Deref<Target = [T]>;
    /// How the server names a setvar that patches a physical address into
    /// it.
    type Symbol: Clone + Debug + PartialEq + Eq + 'static;
}

/// The configuration compiled into a program: `&'static` names and
/// slices; a setvar symbol is its index in the server's table of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Static;

impl Storage for Static {
    type Text = &'static str;
    type List<T: Clone + Debug + PartialEq + Eq + 'static> = &'static [T];
    type Symbol = usize;
}

/// Access a client itself has to one of its memory regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
}

impl Perms {
    pub const NONE: Perms = Perms {
        read: false,
        write: false,
    };
    pub const RW: Perms = Perms {
        read: true,
        write: true,
    };
    pub const RO: Perms = Perms {
        read: true,
        write: false,
    };
}

/// A memory region mapped into a client: its virtual address there, its
/// physical address, and the client's own rights to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub vaddr: u64,
    pub size: u64,
    pub paddr: u64,
    pub perms: Perms,
}

impl Region {
    /// Nothing: a placeholder for region storage filled at start.
    pub const NONE: Region = Region {
        vaddr: 0,
        size: 0,
        paddr: 0,
        perms: Perms::NONE,
    };
}

/// Most reserved windows one device may have (its DMA-mask limit comes on
/// top).
pub const MAX_DEVICE_WINDOWS: usize = 8;

/// Object slots per client: the server's object tables hold this many, and
/// a client's object quota may not exceed it.
pub const MAX_OBJECTS: usize = 64;

/// Devices one client may have: the server tracks each one's fault
/// budget.
pub const MAX_CLIENT_DEVICES: usize = 64;

/// Static IO address spaces one server holds.
pub const MAX_STATIC_SPACES: usize = 8;

/// A device a client drives: its stream ID (never named by the client),
/// the widest address it can emit, and IOVA windows it must never be
/// given (MSI doorbells, PCIe host-bridge windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceConfig<S: Storage = Static> {
    pub name: S::Text,
    pub stream_id: StreamId,
    pub dma_mask: u64,
    pub reserved: S::List<IovaRange>,
}

/// Per-client limits; exceeding one is ENOMEM and changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Live objects (IOAS, devices, HWPTs).
    pub objects: usize,
    /// IOASes among them; the clients' sum sizes the server's IOAS pool,
    /// so only configured IOASes cost an IOAS's memory.
    pub ioases: usize,
    /// 4 KiB pages mapped across all of the client's IOASes.
    pub mapped_pages: u64,
    /// Page-table pages its hardware page tables may hold together; the
    /// clients' sum may not exceed the page-table pool.
    pub table_pages: usize,
    /// Hardware page tables (HWPTs, each an SMMU context) it may hold at
    /// once; the clients' sum may not exceed what the hardware has.
    pub hwpts: usize,
    /// Mappings (IOAS areas) it may hold at once, VFIO's dma_entry_limit;
    /// the clients' sum may not exceed the store's pools.
    pub mappings: usize,
}

/// One client's configuration. The client is identified by the channel
/// its calls arrive on; its [`ClientId`](crate::ClientId) is its position
/// in the configuration.
#[derive(Clone, Copy, Debug)]
pub struct ClientConfig {
    pub name: &'static str,
    /// Where the client sees its command page (array pointers must point
    /// inside it).
    pub command_page_vaddr: u64,
    pub regions: &'static [Region],
    pub devices: &'static [DeviceConfig],
    pub quota: Quota,
    /// May reset other clients (IOMMU_RESET_CLIENT); every client may
    /// reset itself.
    pub manager: bool,
}

impl ClientConfig {
    /// No memory, no devices, no quota: an unused client slot.
    pub const NONE: ClientConfig = ClientConfig {
        name: "",
        command_page_vaddr: 0,
        regions: &[],
        devices: &[],
        quota: Quota {
            objects: 0,
            ioases: 0,
            mapped_pages: 0,
            table_pages: 0,
            hwpts: 0,
            mappings: 0,
        },
        manager: false,
    };
}

/// One `<iomap>` of a static IO address space: the device sees `size`
/// bytes of physical memory from `paddr` at `iova`, with `perms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoMap {
    pub iova: u64,
    pub paddr: u64,
    pub size: u64,
    pub perms: Perms,
}

impl IoMap {
    /// Nothing: a placeholder for iomap storage filled at start.
    pub const NONE: IoMap = IoMap {
        iova: 0,
        paddr: 0,
        size: 0,
        perms: Perms::NONE,
    };
}

/// A static IO address space (system.xml's `<io_address_space>`): a
/// device whose DMA the server confines at start to exactly its iomaps,
/// for a driver that never calls the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticSpace {
    /// The `<io_address_space name>`.
    pub name: &'static str,
    pub stream_id: StreamId,
    /// Microkit's `domain_id`: unique among the spaces, shown in the dump.
    pub domain_id: u16,
    pub iomaps: &'static [IoMap],
    /// Page-table pages its iomaps need at most (4 KiB pages throughout,
    /// root included): what the server sets aside for it from the pool.
    pub table_pages: usize,
}
