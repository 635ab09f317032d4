//! `iopt`: the io_pagetable engine of the IOMMU server.
//!
//! A heap-free, `no_std` implementation of Linux iommufd's IO address space
//! (drivers/iommu/iommufd/io_pagetable.c): areas of mapped IOVA with their
//! physical backing, reserved and allowed ranges, attached hardware page
//! tables ([`IoDomain`]) kept in lockstep with the areas, and per-owner
//! accounting per client. Every capacity is fixed by the storage the
//! caller hands to [`Store::new`]; running out is an errno, never a panic.
//!
//! It also owns the traits the hardware implements: [`IoDomain`] and
//! [`DomainTable`] for the page tables it fills, and [`Hardware`], the
//! whole of what the server core knows of an IOMMU. It depends on
//! `iommu-types` alone: not on the wire protocol, not on any driver.
//!
//! Areas are byte granular as in Linux v6.6: the IOAS alignment is 1 until
//! a domain raises it to its smallest page (never above [`PAGE_SIZE`]).
//! Differences from Linux, all deliberate:
//! - A failing unmap or cut changes nothing (Linux may have done a prefix).
//! - Extents are physical from the start (the caller resolves its memory
//!   when it maps; Linux pins only once a domain exists).
//! - A backing is charged the CPU pages it touches when it is made, and
//!   until its last area goes; a copy shares its source's charge.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

mod domain;
mod hardware;
mod ioas;
mod pages;
mod range;
mod tree;

pub use domain::{max_page, min_page, next_chunk, DomainId, DomainTable, IoDomain, Unconfirmed};
pub use hardware::Hardware;
pub use ioas::{
    AreaInfo, DstIova, Ioas, IovaRanges, ReservedOwner, FIRST_FIT_BUDGET_PER_LEVEL, MAX_ALLOWED,
    MAX_DOMAINS, MAX_RESERVED,
};
pub use iommu_types::{ClientId, Errno, IovaRange, Prot, Result, StreamId};
pub use pages::{PagesSlot, MAX_EXTENTS};
pub use range::Holes;
pub use tree::AreaSlot;

use pages::PagesPool;
use tree::AreaArena;

/// The granule of every IOVA, length and physical address: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;

/// A physically contiguous run of memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Extent {
    pub phys: u64,
    pub len: u64,
}

/// One owner's quotas: mapped pages (in [`PAGE_SIZE`] units) and area
/// nodes (mappings; backings never outnumber them). Limiting nodes per
/// owner keeps one owner from draining the shared node pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub limit: u64,
    pub used: u64,
    pub area_limit: usize,
    pub areas: usize,
}

impl Account {
    /// No quota: may map nothing until its limits are set. All zero bytes,
    /// so accounts kept in a static sit in `.bss`.
    pub const NONE: Account = Account {
        limit: 0,
        used: 0,
        area_limit: 0,
        areas: 0,
    };

    pub const UNLIMITED: Account = Account {
        limit: u64::MAX,
        used: 0,
        area_limit: usize::MAX,
        areas: 0,
    };

    pub const fn with_limit(limit: u64) -> Account {
        Account {
            limit,
            used: 0,
            area_limit: usize::MAX,
            areas: 0,
        }
    }
}

/// The pools every IOAS draws from: area nodes, backing objects and the
/// owners' accounts.
pub struct Store<'s> {
    pub(crate) areas: AreaArena<'s>,
    pub(crate) pages: PagesPool<'s>,
    accounts: &'s mut [Account],
}

impl core::fmt::Debug for Store<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Store")
            .field("areas_free", &self.areas.free())
            .field("pages_free", &self.pages.free())
            .field("accounts", &self.accounts)
            .finish()
    }
}

impl<'s> Store<'s> {
    /// Takes ownership of the storage; all of it starts free.
    pub fn new(
        areas: &'s mut [AreaSlot],
        pages: &'s mut [PagesSlot],
        accounts: &'s mut [Account],
    ) -> Store<'s> {
        Store {
            areas: AreaArena::new(areas),
            pages: PagesPool::new(pages),
            accounts,
        }
    }

    /// Gives the storage back, for reuse by a later [`Store::new`] (which
    /// resets it). IOASes still holding areas must not be used after.
    pub fn into_parts(self) -> (&'s mut [AreaSlot], &'s mut [PagesSlot], &'s mut [Account]) {
        (
            self.areas.into_slots(),
            self.pages.into_slots(),
            self.accounts,
        )
    }

    /// A new, empty IOAS charged to `client`'s account.
    pub fn new_ioas(&self, client: ClientId) -> Result<Ioas> {
        if client.index() >= self.accounts.len() {
            return Err(Errno::EINVAL);
        }
        Ok(Ioas::new(client))
    }

    pub fn account(&self, id: ClientId) -> Option<Account> {
        self.accounts.get(id.index()).copied()
    }

    /// Sets an owner's limit. Lowering it below the current use is allowed:
    /// later maps fail until enough is unmapped.
    pub fn set_limit(&mut self, id: ClientId, limit: u64) -> Result<()> {
        let account = self.accounts.get_mut(id.index()).ok_or(Errno::EINVAL)?;
        account.limit = limit;
        Ok(())
    }

    pub(crate) fn charge(&mut self, id: ClientId, pages: u64) -> Result<()> {
        let account = self.accounts.get_mut(id.index()).ok_or(Errno::ENOMEM)?;
        match account.used.checked_add(pages) {
            Some(used) if used <= account.limit => {
                account.used = used;
                Ok(())
            }
            _ => Err(Errno::ENOMEM),
        }
    }

    /// Sets an owner's limit of area nodes (mappings).
    pub fn set_area_limit(&mut self, id: ClientId, limit: usize) -> Result<()> {
        let account = self.accounts.get_mut(id.index()).ok_or(Errno::EINVAL)?;
        account.area_limit = limit;
        Ok(())
    }

    /// Claims `n` area nodes for an owner: ENOMEM past its limit or the pool.
    pub(crate) fn take_nodes(&mut self, id: ClientId, n: usize) -> Result<()> {
        let free = self.areas.free();
        let account = self.accounts.get_mut(id.index()).ok_or(Errno::ENOMEM)?;
        match account.areas.checked_add(n) {
            Some(areas) if areas <= account.area_limit && n <= free => {
                account.areas = areas;
                Ok(())
            }
            _ => Err(Errno::ENOMEM),
        }
    }

    pub(crate) fn give_nodes(&mut self, id: ClientId, n: usize) {
        if let Some(account) = self.accounts.get_mut(id.index()) {
            debug_assert!(account.areas >= n);
            account.areas = account.areas.saturating_sub(n);
        }
    }

    pub(crate) fn uncharge(&mut self, id: ClientId, pages: u64) {
        if let Some(account) = self.accounts.get_mut(id.index()) {
            debug_assert!(account.used >= pages);
            account.used = account.used.saturating_sub(pages);
        }
    }

    /// CPU pages `owner`'s live backings are charged for: what its
    /// account's `used` must be (for checks; O(pool)).
    pub fn charged_pages(&self, owner: ClientId) -> u64 {
        self.pages.charged(owner)
    }

    /// Area-tree nodes visited by every search and update since the store
    /// was made: work, counted, for tests that bound it.
    pub fn tree_visits(&self) -> u64 {
        self.areas.visits()
    }

    pub fn areas_capacity(&self) -> usize {
        self.areas.capacity()
    }

    pub fn areas_free(&self) -> usize {
        self.areas.free()
    }

    pub fn pages_capacity(&self) -> usize {
        self.pages.capacity()
    }

    pub fn pages_free(&self) -> usize {
        self.pages.free()
    }
}
