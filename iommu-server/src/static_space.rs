//! Static IO address spaces (system.xml's `<io_address_space>`, as
//! Microkit defines it): a device confined by the system description
//! alone, for a driver that never calls the server. At start, before any
//! request is served, the server builds one stage-1 domain per space,
//! maps each iomap (the region's physical pages at its IOVA, with its
//! permissions, in the largest pages that fit) and points the device's
//! stream at it. From then on the driver's I/O costs the server nothing;
//! the server only attributes the space's faults, shows it in the dump,
//! and lets a manager hold it in quarantine (its stream aborts) and
//! release it.
//!
//! A space's tables are charged to an owner no client has (the index
//! after the last client's), with exactly the pages the configuration set
//! aside for it; the clients' promised table pages and HWPTs come first,
//! so no client can take what a space needs, nor a space a client's.

use iommu_types::config::{IoMap, StaticSpace};
use iommu_types::{ClientId, Errno, Fault, Prot, StreamId};
use iopt::{next_chunk, DomainId, Hardware};

pub use iommu_types::config::MAX_STATIC_SPACES;

/// A static-space configuration the server refuses at start; nothing of
/// it (nor of any space before it) stays established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaticError {
    /// Spaces were established already, or more than
    /// [`MAX_STATIC_SPACES`] are configured.
    TooMany,
    /// The space's stream belongs to a client's device, or to an earlier
    /// space.
    StreamOwned { space: usize },
    /// The space's `domain_id` is an earlier space's.
    DomainIdTwice { space: usize },
    /// The iomap (index) of the space is empty, misaligned, wrapping,
    /// without permissions, outside the domain's aperture or overlapping
    /// an earlier iomap of the space.
    BadIoMap { space: usize, iomap: usize },
    /// The clients' table-page quotas and the spaces' table pages add up
    /// to more than the page-table pool.
    TablePagesOvercommitted,
    /// The clients' HWPT quotas and the spaces add up to more domains
    /// than the hardware holds.
    DomainsOvercommitted,
    /// The hardware refused the space's domain, a mapping (ENOMEM: more
    /// table pages than it was given) or the attach.
    Hardware { space: usize, errno: Errno },
}

impl core::fmt::Display for StaticError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            StaticError::TooMany => write!(
                f,
                "static IO address spaces given twice or more than {MAX_STATIC_SPACES}"
            ),
            StaticError::StreamOwned { space } => write!(
                f,
                "static space {space}: its stream belongs to a client's device or another space"
            ),
            StaticError::DomainIdTwice { space } => {
                write!(f, "static space {space}: its domain_id is another space's")
            }
            StaticError::BadIoMap { space, iomap } => write!(
                f,
                "static space {space}: iomap {iomap} is empty, misaligned, wrapping, without permissions, outside the aperture or overlaps another"
            ),
            StaticError::TablePagesOvercommitted => f.write_str(
                "the table-page quotas and the static spaces' tables add up to more than the page-table pool",
            ),
            StaticError::DomainsOvercommitted => f.write_str(
                "the HWPT quotas and the static spaces add up to more domains than the SMMU holds",
            ),
            StaticError::Hardware { space, errno } => {
                write!(f, "static space {space}: the hardware refused it ({errno:?})")
            }
        }
    }
}

/// What the server keeps of one established space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpaceState {
    pub domain: DomainId,
    /// Held in quarantine by a manager: the stream aborts.
    pub held: bool,
    /// Faults seen on its stream, and the last of them.
    pub faults: u64,
    pub last: Option<Fault>,
    /// A fault (or lost records) not yet handed to the transport to
    /// notify the space's fault PD.
    pub pending: bool,
}

/// The established spaces.
#[derive(Debug)]
pub(crate) struct StaticSpaces<'s> {
    pub configs: &'s [StaticSpace],
    pub state: [Option<SpaceState>; MAX_STATIC_SPACES],
}

impl<'s> StaticSpaces<'s> {
    pub const NONE: StaticSpaces<'static> = StaticSpaces {
        configs: &[],
        state: [None; MAX_STATIC_SPACES],
    };

    /// The space whose stream `stream` is.
    pub fn of_stream(&self, stream: StreamId) -> Option<usize> {
        self.configs.iter().position(|s| s.stream_id == stream)
    }

    /// Records a fault on a space's stream; `None` when no space has it.
    pub fn report(&mut self, fault: Fault) -> Option<(usize, &'s StaticSpace)> {
        let index = self.of_stream(fault.stream)?;
        let state = self.state[index].as_mut()?;
        state.faults = state.faults.saturating_add(1);
        state.last = Some(fault);
        state.pending = true;
        Some((index, &self.configs[index]))
    }

    /// Every space is told the IOMMU lost records (some may be its own).
    pub fn lost(&mut self) {
        for state in self.state.iter_mut().flatten() {
            state.pending = true;
        }
    }

    /// The spaces with faults not yet notified (bit i = space i), cleared.
    pub fn take_pending(&mut self) -> u64 {
        let mut bits = 0u64;
        for (i, state) in self.state.iter_mut().enumerate() {
            if let Some(s) = state.as_mut().filter(|s| s.pending) {
                s.pending = false;
                bits |= 1 << i;
            }
        }
        bits
    }
}

/// Checks one space's iomaps against each other and the aperture `[0,
/// last]`; the first bad one's index.
fn check_iomaps(iomaps: &[IoMap], last: u64, page: u64) -> Result<(), usize> {
    for (i, m) in iomaps.iter().enumerate() {
        let aligned = m.iova % page == 0 && m.paddr % page == 0 && m.size % page == 0;
        let end = m.iova.checked_add(m.size.wrapping_sub(1));
        let fits = m.size > 0
            && end.is_some_and(|e| e <= last)
            && m.paddr.checked_add(m.size - 1).is_some();
        let overlaps = iomaps[..i]
            .iter()
            .any(|o| m.iova <= o.iova + (o.size - 1) && o.iova <= m.iova + (m.size - 1));
        if !aligned || !fits || overlaps || !(m.perms.read || m.perms.write) {
            return Err(i);
        }
    }
    Ok(())
}

fn prot(m: &IoMap) -> Prot {
    let mut p = Prot::empty();
    if m.perms.read {
        p |= Prot::READ;
    }
    if m.perms.write {
        p |= Prot::WRITE;
    }
    p
}

/// Maps one iomap into the selected domain `id`, in the largest pages
/// that fit; on failure nothing of it stays mapped.
fn map_one<H: Hardware>(hw: &mut H, id: DomainId, m: &IoMap) -> Result<(), Errno> {
    let domain = hw.domains().domain(id).ok_or(Errno::ENODEV)?;
    let sizes = domain.page_sizes();
    let (mut iova, mut phys, mut left) = (m.iova, m.paddr, m.size);
    while left > 0 {
        let (size, count) = next_chunk(sizes, iova, phys, left);
        let done = if count == 0 {
            Err(Errno::EINVAL)
        } else {
            domain.map_pages(iova, phys, size, count, prot(m))
        };
        if let Err(e) = done {
            // No stream points at the domain yet, and a domain whose unmap
            // the IOMMU did not confirm is never freed (see `undo`).
            if iova > m.iova && domain.unmap_pages(m.iova, iova - m.iova).is_err() {
                return Err(Errno::EIO);
            }
            return Err(e);
        }
        iova += size * count;
        phys += size * count;
        left -= size * count;
    }
    Ok(())
}

/// Undoes one established space: stream to abort, mappings out, domain
/// freed. A stream that will not stop keeps its domain (nothing it may
/// reach is released), and so does a domain whose unmap the IOMMU did not
/// confirm (its walker may still hold the pages).
fn undo<H: Hardware>(hw: &mut H, space: &StaticSpace, domain: DomainId, mapped: &[IoMap]) {
    if hw.detach(space.stream_id).is_err() {
        return;
    }
    free_unmapped(hw, domain, mapped);
}

/// Unmaps `mapped` from `domain` and frees it, unless an unmap is
/// unconfirmed: then the domain is kept, its pages never reused.
fn free_unmapped<H: Hardware>(hw: &mut H, domain: DomainId, mapped: &[IoMap]) {
    if let Some(d) = hw.domains().domain(domain) {
        let mut confirmed = true;
        for m in mapped {
            confirmed &= d.unmap_pages(m.iova, m.size).is_ok();
        }
        if !confirmed {
            return;
        }
    }
    hw.domain_free(domain);
}

/// Builds every space of `spaces` on `hw`: domains, mappings, attaches;
/// `first_owner` is the table-page owner of space 0 (the index after the
/// last client's), `promised` the clients' table pages and HWPTs. All or
/// nothing.
pub(crate) fn establish<'s, H: Hardware>(
    hw: &mut H,
    spaces: &'s [StaticSpace],
    first_owner: usize,
    promised_tables: usize,
    promised_domains: usize,
    client_owns: impl Fn(StreamId) -> bool,
) -> Result<StaticSpaces<'s>, StaticError> {
    if spaces.len() > MAX_STATIC_SPACES {
        return Err(StaticError::TooMany);
    }
    let tables = spaces
        .iter()
        .try_fold(promised_tables, |sum, s| sum.checked_add(s.table_pages));
    if tables.is_none_or(|t| t > hw.table_pages()) {
        return Err(StaticError::TablePagesOvercommitted);
    }
    if promised_domains
        .checked_add(spaces.len())
        .is_none_or(|d| d > hw.max_domains())
    {
        return Err(StaticError::DomainsOvercommitted);
    }
    for (i, s) in spaces.iter().enumerate() {
        if client_owns(s.stream_id) || spaces[..i].iter().any(|o| o.stream_id == s.stream_id) {
            return Err(StaticError::StreamOwned { space: i });
        }
        if spaces[..i].iter().any(|o| o.domain_id == s.domain_id) {
            return Err(StaticError::DomainIdTwice { space: i });
        }
    }
    let mut built = StaticSpaces {
        configs: spaces,
        state: [None; MAX_STATIC_SPACES],
    };
    for (i, s) in spaces.iter().enumerate() {
        match establish_one(hw, s, i, first_owner) {
            Ok(domain) => {
                built.state[i] = Some(SpaceState {
                    domain,
                    held: false,
                    faults: 0,
                    last: None,
                    pending: false,
                })
            }
            Err(e) => {
                for (j, done) in spaces[..i].iter().enumerate() {
                    if let Some(state) = built.state[j].take() {
                        undo(hw, done, state.domain, done.iomaps);
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(built)
}

fn establish_one<H: Hardware>(
    hw: &mut H,
    s: &StaticSpace,
    i: usize,
    first_owner: usize,
) -> Result<DomainId, StaticError> {
    let refused = |errno| StaticError::Hardware { space: i, errno };
    let owner = first_owner
        .checked_add(i)
        .and_then(ClientId::from_index)
        .ok_or(StaticError::TooMany)?;
    let domain = hw.domain_alloc(owner, s.table_pages).map_err(refused)?;
    let Some(d) = hw.domains().domain(domain) else {
        hw.domain_free(domain);
        return Err(refused(Errno::ENODEV));
    };
    let aperture = d.aperture();
    let page = iopt::min_page(d.page_sizes()).max(1);
    let bad = if aperture.start != 0 {
        Some(0)
    } else {
        check_iomaps(s.iomaps, aperture.last, page).err()
    };
    if let Some(iomap) = bad {
        hw.domain_free(domain);
        return Err(StaticError::BadIoMap { space: i, iomap });
    }
    for (k, m) in s.iomaps.iter().enumerate() {
        if let Err(errno) = map_one(hw, domain, m) {
            if errno != Errno::EIO {
                free_unmapped(hw, domain, &s.iomaps[..k]);
            }
            return Err(refused(errno));
        }
    }
    if let Err(errno) = hw.attach(s.stream_id, domain) {
        undo(hw, s, domain, s.iomaps);
        return Err(refused(errno));
    }
    Ok(domain)
}
