//! Identities. Each is a newtype so that a client can never be passed
//! where a stream is expected, nor either where an index into some other
//! table is.

use core::fmt;

/// A client of the server: its position in the list of `<client>`
/// elements of iommu.xml (0, 1, 2, ...), which is also its index in every
/// per-client table of the server (object tables, quotas, fault queues).
///
/// It is *not* a Microkit channel id. A call is attributed to the client
/// whose configured server-end channel it arrived on; the generated
/// configuration maps channel to client (`iommu_system::client_on`), and
/// that mapping is the only way a request acquires an identity. Channel
/// ids are chosen in system.xml and need not follow the client order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u16);

impl ClientId {
    /// The client at `index` of the configuration; `None` past `u16`.
    pub fn from_index(index: usize) -> Option<ClientId> {
        u16::try_from(index).ok().map(ClientId)
    }

    /// Its index into per-client tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {}", self.0)
    }
}

/// A device's SMMU stream ID (for a PCI function, its requester ID). It
/// is configuration, known to the server and the hardware only: no client
/// ever sends or receives one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u32);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {:#x}", self.0)
    }
}
