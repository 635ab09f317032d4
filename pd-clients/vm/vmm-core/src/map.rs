//! The guest's memory map as data: where its RAM is (and where the VMM
//! maps it), where its device BARs are. Everything the VMM decides about
//! a guest-physical address — map it for DMA, read the console from it,
//! stop the guest for touching it — comes from here.

use core::fmt;

use iommu_types::IovaRange;
use mmio::Memory;

/// The guest's page, and the IOMMU page every region must be made of.
pub const PAGE: u64 = 0x1000;
/// Regions of each kind a map may hold: the checks are quadratic in
/// them, and a VMM has a handful.
pub const MAX_REGIONS: usize = 8;

/// A region of guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRegion {
    /// Guest-physical address: the IOVA the guest's device uses for it.
    pub gpa: u64,
    pub size: u64,
    /// Where the VMM maps it (the `vaddr` of VFIO_IOMMU_MAP_DMA).
    pub vmm_vaddr: u64,
    /// Whether the VMM maps it for the guest's device; a region it does
    /// not map is RAM the device's DMA never reaches.
    pub dma: bool,
}

impl RamRegion {
    /// Its guest-physical range (= its IOVA range for the device); `None`
    /// when it is empty or wraps.
    pub fn iova_range(&self) -> Option<IovaRange> {
        range(self.gpa, self.size)
    }
}

/// A passed-through device's BAR in the guest's physical space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub gpa: u64,
    pub size: u64,
}

/// What an address of the guest is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// RAM region `region`, `offset` bytes in.
    Ram { region: usize, offset: u64 },
    /// BAR `bar`, `offset` bytes in.
    Bar { bar: usize, offset: u64 },
    /// Nothing: the guest has no memory or device there.
    Outside,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Ram { region, .. } => write!(f, "guest RAM region {region}"),
            Place::Bar { bar, .. } => write!(f, "device BAR {bar}"),
            Place::Outside => write!(f, "outside the guest's memory map"),
        }
    }
}

/// Why a map is unsound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No RAM, or more regions than [`MAX_REGIONS`].
    Count,
    /// A region of no bytes, or one that wraps the address space (its
    /// guest-physical or its VMM range).
    Empty { ram: bool, index: usize },
    /// A RAM region whose address, size or VMM address is not a multiple
    /// of [`PAGE`].
    Unaligned { index: usize },
    /// Two regions (RAM or BAR) overlap in guest-physical space.
    Overlap { gpa: u64 },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Count => write!(f, "no RAM, or more than {MAX_REGIONS} regions of a kind"),
            MapError::Empty { ram, index } => write!(
                f,
                "{} {index} is empty or wraps",
                if *ram { "RAM region" } else { "BAR" }
            ),
            MapError::Unaligned { index } => {
                write!(f, "RAM region {index} is not made of 4 KiB pages")
            }
            MapError::Overlap { gpa } => write!(f, "two regions overlap at {gpa:#x}"),
        }
    }
}

/// The guest's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestMap<'a> {
    pub ram: &'a [RamRegion],
    pub bars: &'a [Bar],
}

fn range(gpa: u64, size: u64) -> Option<IovaRange> {
    IovaRange::from_start_len(gpa, size)
}

impl GuestMap<'_> {
    /// Every region non-empty and not wrapping, RAM in whole pages,
    /// nothing overlapping.
    pub fn check(&self) -> Result<(), MapError> {
        if self.ram.is_empty() || self.ram.len() > MAX_REGIONS || self.bars.len() > MAX_REGIONS {
            return Err(MapError::Count);
        }
        for (index, r) in self.ram.iter().enumerate() {
            if range(r.gpa, r.size).is_none() || range(r.vmm_vaddr, r.size).is_none() {
                return Err(MapError::Empty { ram: true, index });
            }
            if (r.gpa | r.size | r.vmm_vaddr) % PAGE != 0 {
                return Err(MapError::Unaligned { index });
            }
        }
        for (index, b) in self.bars.iter().enumerate() {
            if range(b.gpa, b.size).is_none() {
                return Err(MapError::Empty { ram: false, index });
            }
        }
        let all = || {
            self.ram
                .iter()
                .filter_map(|r| range(r.gpa, r.size))
                .chain(self.bars.iter().filter_map(|b| range(b.gpa, b.size)))
        };
        for (i, a) in all().enumerate() {
            if let Some(b) = all().skip(i + 1).find(|b| a.overlaps(b)) {
                return Err(MapError::Overlap {
                    gpa: a.start.max(b.start),
                });
            }
        }
        Ok(())
    }

    /// What `gpa` is.
    pub fn place(&self, gpa: u64) -> Place {
        for (region, r) in self.ram.iter().enumerate() {
            if range(r.gpa, r.size).is_some_and(|x| x.contains(gpa)) {
                return Place::Ram {
                    region,
                    offset: gpa - r.gpa,
                };
            }
        }
        for (bar, b) in self.bars.iter().enumerate() {
            if range(b.gpa, b.size).is_some_and(|x| x.contains(gpa)) {
                return Place::Bar {
                    bar,
                    offset: gpa - b.gpa,
                };
            }
        }
        Place::Outside
    }

    /// The guest's console page: the last page of its first RAM region,
    /// where the guest writes a NUL-terminated line before `hvc #1`.
    pub fn console_gpa(&self) -> Option<u64> {
        let r = self.ram.first()?;
        r.gpa.checked_add(r.size.checked_sub(PAGE)?)
    }

    /// Reads `out.len()` bytes of guest RAM at `gpa` through the VMM's
    /// mappings (`ram[i]` is RAM region `i`); false when they are not all
    /// in one RAM region.
    pub fn read(&self, ram: &[impl Memory], gpa: u64, out: &mut [u8]) -> bool {
        let Place::Ram { region, offset } = self.place(gpa) else {
            return false;
        };
        let fits = offset
            .checked_add(out.len() as u64)
            .is_some_and(|end| end <= self.ram[region].size);
        let Ok(offset) = usize::try_from(offset) else {
            return false;
        };
        fits && ram.get(region).is_some_and(|m| m.read(offset, out))
    }
}
