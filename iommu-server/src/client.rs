//! A client's state, and the context every request of it runs in.

use heapless::Deque;
use iommu_types::config::ClientConfig;
use iommu_types::ClientId;
use iopt::{Hardware, Store};
use mmio::Memory;

use crate::object::{IoasPool, ObjectId, ObjectTable, Objects};

/// Faults a client can have queued before further ones are only counted.
pub const FAULT_QUEUE: usize = 16;
pub use iommu_types::config::MAX_CLIENT_DEVICES;

/// A fault attributed to one of the client's configured devices.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QueuedFault {
    /// The device's index in the client's configuration.
    pub device: u32,
    pub kind: u32,
    pub iova: Option<u64>,
    pub access: u32,
}

/// A client's pending faults, bounded; what does not fit is counted.
#[derive(Debug)]
pub(crate) struct FaultQueue {
    pub(crate) queue: Deque<QueuedFault, FAULT_QUEUE>,
    pub(crate) dropped: u64,
    /// The IOMMU lost records since the last read; some may be ours.
    pub(crate) lost: bool,
    /// Streams of ours were stopped since the last read: an invalidation
    /// was not confirmed.
    pub(crate) stopped: bool,
    /// Bit i: device i faulted beyond its budget; its records are dropped
    /// (and stopped in the IOMMU) until the client resumes them.
    pub(crate) storming: u64,
    /// Records of storming devices dropped since the last read.
    pub(crate) storm_dropped: u64,
    /// Records of each device in the current interrupt.
    pub(crate) window: [u16; MAX_CLIENT_DEVICES],
}

impl FaultQueue {
    pub(crate) const EMPTY: FaultQueue = FaultQueue {
        queue: Deque::new(),
        dropped: 0,
        lost: false,
        stopped: false,
        storming: 0,
        storm_dropped: 0,
        window: [0; MAX_CLIENT_DEVICES],
    };

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.dropped = 0;
        self.lost = false;
        self.stopped = false;
        self.storming = 0;
        self.storm_dropped = 0;
        self.window = [0; MAX_CLIENT_DEVICES];
    }

    pub(crate) fn push(&mut self, fault: QueuedFault) {
        if self.queue.push_back(fault).is_err() {
            self.dropped = self.dropped.saturating_add(1);
        }
    }
}

/// One client's state. The server borrows a slice of these from its caller
/// (a static in the PD), like the store's pools, so its size never has to
/// travel through the stack.
#[derive(Debug)]
pub struct Client {
    pub(crate) objects: Objects,
    /// The IOAS the VFIO compatibility calls act on.
    pub(crate) compat: Option<ObjectId>,
    /// A manager holds its devices in quarantine: every op that could give
    /// a device a translation again is EPERM (`ucmd::could_translate_again`).
    pub(crate) held: bool,
    pub(crate) faults: FaultQueue,
}

impl Client {
    /// Storage for one client, configured by [`crate::Server::new`]: all
    /// zero bytes, so the clients kept in a static sit in `.bss`.
    pub const EMPTY: Client = Client {
        objects: ObjectTable::new(0),
        compat: None,
        held: false,
        faults: FaultQueue::EMPTY,
    };
}

/// Everything one request works on: the engine's pools, the hardware, the
/// calling client and who it is, and the raw parts of the request beyond
/// the struct the op table already decoded (the command page, for the
/// arrays some requests name, and MR1).
pub(crate) struct Ctx<'a, 's, H: Hardware> {
    pub store: &'a mut Store<'s>,
    /// Every client's IOASes; this one's are those its objects name.
    pub pool: &'a mut IoasPool<'s>,
    pub hw: &'a mut H,
    pub client: &'a mut Client,
    pub config: &'a ClientConfig,
    pub id: ClientId,
    /// The client's command page, read and written in the ranges a request
    /// names (each byte read once).
    pub page: &'a dyn Memory,
    /// MR1: the device a device op names (`iommu_proto::DeviceArg`).
    pub device: u64,
    /// Set when this request had to stop all DMA (a stream would not stop
    /// after an unconfirmed invalidation): every client with a device is
    /// to be told.
    pub aborted_all: bool,
}
