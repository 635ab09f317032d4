//! The checked configuration: the system model of `iommu_types::system`,
//! the one the server's generated configuration is written in, held here
//! in owned storage ([`Owned`]) while the description is read. Channels
//! are their ids in system.xml.

use std::collections::BTreeMap;

use iommu_types::config::{self, Storage};
use iommu_types::system;

/// Names and lists as the checker builds them: owned. A setvar symbol is
/// its name (the generator numbers them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned;

impl Storage for Owned {
    type Text = String;
    type List<T: Clone + std::fmt::Debug + PartialEq + Eq + 'static> = Vec<T>;
    type Symbol = String;
}

pub type Paddr = system::Paddr<Owned>;
pub type ServerMemory = system::ServerMemory<Owned>;
pub type Server = system::ServerSpec<Owned, u64>;
pub type Region = system::RegionSpec<Owned>;
pub type Device = config::DeviceConfig<Owned>;
pub type Client = system::ClientSpec<Owned, u64>;
pub type ChildOf = system::ChildOf<Owned>;
pub type StaticIoMap = system::IoMapSpec<Owned>;
pub type StaticSpace = system::StaticSpaceSpec<Owned, u64>;
pub type MapEntry = system::MapSpec<Owned>;
pub type Origin = system::Origin<Owned>;
pub use iommu_types::config::{Perms, Quota};
pub use iommu_types::system::Share;
pub use iommu_types::{IovaRange, StreamId};

/// A device QEMU simulates: its `-device` options without `addr`, placed
/// by its stream ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QemuDevice {
    pub stream_id: StreamId,
    pub options: String,
}

/// The checked configuration the generator emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub server: Server,
    pub clients: Vec<Client>,
    /// Every channel end of system.xml: (PD, the PD at the other end, the
    /// id at this end), in document order. PDs find their channels here,
    /// by peer, rather than by hand-written numbers.
    pub channels: Vec<(String, String, u64)>,
    /// Every map of system.xml, in document order: PDs find their shared
    /// memory here (where, how big) rather than by hand-written sizes.
    pub maps: Vec<MapEntry>,
    /// Every child PD of system.xml: (parent, id, child), in document
    /// order. A parent names a faulting child by its id alone; this is
    /// how it learns which PD that is, client of the server or not.
    pub children: Vec<(String, u64, String)>,
    /// The static IO address spaces (`crate::static_space`).
    pub static_spaces: Vec<StaticSpace>,
    /// The devices QEMU simulates: the clients' devices in order, then
    /// the static spaces'.
    pub qemu: Vec<QemuDevice>,
}

impl Config {
    /// The QEMU device simulating the device of `stream`, if one does.
    pub fn qemu_of(&self, stream: StreamId) -> Option<&QemuDevice> {
        self.qemu.iter().find(|q| q.stream_id == stream)
    }
}

/// The QEMU command line arguments that put every device with a `qemu`
/// attribute where its stream ID says.
pub fn qemu_devices(config: &Config) -> Vec<String> {
    config
        .qemu
        .iter()
        .flat_map(|q| {
            let s = q.stream_id.0;
            [
                "-device".to_string(),
                format!("{},addr={:02x}.{}", q.options, s >> 3 & 0x1f, s & 7),
            ]
        })
        .collect()
}

/// The symbols every setvar of the server names, in a stable order.
pub fn server_symbols(config: &Config) -> Vec<String> {
    let mut out: BTreeMap<String, ()> = BTreeMap::new();
    let server = &config.server;
    let all = [&server.smmu_regs, &server.smmu_memory, &server.page_tables]
        .into_iter()
        .map(|m| &m.paddr)
        .chain(
            config
                .clients
                .iter()
                .flat_map(|c| c.regions.iter().map(|r| &r.paddr)),
        )
        .chain(
            config
                .static_spaces
                .iter()
                .flat_map(|s| s.iomaps.iter().map(|m| &m.paddr)),
        );
    for p in all {
        if let Paddr::Symbol(s) = p {
            out.insert(s.clone(), ());
        }
    }
    out.into_keys().collect()
}
