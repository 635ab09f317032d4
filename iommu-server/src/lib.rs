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
//! Served so far: DESTROY (IOAS), IOAS_ALLOC, IOAS_MAP, IOAS_UNMAP,
//! IOAS_COPY, IOAS_IOVA_RANGES, IOAS_ALLOW_IOVAS and OPTION. Devices,
//! hardware page tables, VFIO compatibility and faults answer ENOTTY until
//! they land.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod config;
mod ioas;
pub mod object;

use heapless::Vec;
use iommu_proto::{Errno, Op};
use iopt::{AccountId, DomainId, DomainTable, IoDomain, Store};

use config::{check_regions, ClientConfig};
use object::ObjectTable;

/// Object slots per client (the quota may allow fewer).
pub const MAX_OBJECTS: usize = 64;

/// What an object ID can name.
#[derive(Debug)]
pub enum Object {
    Ioas(iopt::Ioas),
}

/// One client's state.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    objects: ObjectTable<Object, MAX_OBJECTS>,
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
}

/// No hardware page tables yet: every IOAS runs without domains.
struct NoDomains;

impl DomainTable for NoDomains {
    fn domain(&mut self, _: DomainId) -> Option<&mut dyn IoDomain> {
        None
    }
}

/// The server: the engine's store and every client's object table.
pub struct Server<'s, const CLIENTS: usize> {
    store: Store<'s>,
    clients: Vec<Client, CLIENTS>,
}

impl<'s, const CLIENTS: usize> core::fmt::Debug for Server<'s, CLIENTS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server")
            .field("store", &self.store)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl<'s, const CLIENTS: usize> Server<'s, CLIENTS> {
    /// Client `i` of `configs` is the client on channel `i`; its quota of
    /// mapped pages becomes account `i` of the store.
    pub fn new(mut store: Store<'s>, configs: &[ClientConfig]) -> Result<Self, ConfigError> {
        let mut clients = Vec::new();
        for (i, config) in configs.iter().enumerate() {
            check_regions(config.regions)
                .map_err(|region| ConfigError::BadRegion { client: i, region })?;
            let account = AccountId(u16::try_from(i).map_err(|_| ConfigError::TooManyClients)?);
            store
                .set_limit(account, config.quota.mapped_pages)
                .map_err(|_| ConfigError::TooManyClients)?;
            let client = Client {
                config: *config,
                objects: ObjectTable::new(config.quota.objects),
            };
            clients
                .push(client)
                .map_err(|_| ConfigError::TooManyClients)?;
        }
        Ok(Server { store, clients })
    }

    pub fn store(&self) -> &Store<'s> {
        &self.store
    }

    /// The physical address an IOVA of one of a client's IOASes reaches,
    /// for diagnostics and tests.
    pub fn translate(&self, client: usize, ioas: u32, iova: u64) -> Option<u64> {
        match self
            .clients
            .get(client)?
            .objects
            .get(object::ObjectId(ioas))
            .ok()?
        {
            Object::Ioas(ioas) => ioas.translate(&self.store, iova),
        }
    }

    /// Live objects of a client.
    pub fn object_count(&self, client: usize) -> usize {
        self.clients.get(client).map_or(0, |c| c.objects.len())
    }

    /// Serves one call from the client on channel `client`.
    pub fn handle(&mut self, client: usize, label: u64, mrs: [u64; 2], page: &mut [u8]) -> Reply {
        match self.dispatch(client, label, mrs, page) {
            Ok(mr0) => Reply { label: 0, mr0 },
            Err(e) => Reply::error(e),
        }
    }

    fn dispatch(
        &mut self,
        client: usize,
        label: u64,
        mrs: [u64; 2],
        page: &mut [u8],
    ) -> Result<u64, Errno> {
        let op = Op::from_label(label).ok_or(Errno::ENOTTY)?;
        // A channel without a configured client cannot call; be explicit.
        let Some(c) = self.clients.get_mut(client) else {
            return Err(Errno::EPERM);
        };
        let mut ctx = ioas::Ctx {
            store: &mut self.store,
            doms: &mut NoDomains,
            client: c,
            account: AccountId(client as u16),
        };
        let size = mrs[iommu_proto::MR_SIZE];
        match op {
            Op::Destroy => ioas::destroy(&mut ctx, page, size),
            Op::IoasAlloc => ioas::alloc(&mut ctx, page, size),
            Op::IoasMap => ioas::map(&mut ctx, page, size),
            Op::IoasUnmap => ioas::unmap(&mut ctx, page, size),
            Op::IoasCopy => ioas::copy(&mut ctx, page, size),
            Op::IoasIovaRanges => ioas::iova_ranges(&mut ctx, page, size),
            Op::IoasAllowIovas => ioas::allow_iovas(&mut ctx, page, size),
            Op::Option => ioas::option(&mut ctx, page, size),
            _ => Err(Errno::ENOTTY),
        }
    }
}
