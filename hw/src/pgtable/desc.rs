//! VMSAv8-64 descriptors of the 4 KiB granule (Arm ARM D8.3), as the SMMUv3
//! stage-1 walker reads them and as Linux's io-pgtable-arm writes them for
//! ARM_64_LPAE_S1.

use iommu_types::Prot;

/// Descriptors per table: 4 KiB of 8-byte entries.
pub const ENTRIES: usize = 512;
/// Deepest lookup level; it holds pages, the levels above hold tables or blocks.
pub(super) const LEAF_LEVEL: u32 = 3;

/// bit 0: the descriptor is valid.
const VALID: u64 = 1 << 0;
/// bit 1: table (levels 0..2) or page (level 3); clear for a block.
const TABLE_OR_PAGE: u64 = 1 << 1;
/// Output or next-table address, bits [47:12].
pub(super) const ADDR_MASK: u64 = ((1 << 48) - 1) & !0xfff;

const ATTR_INDX_SHIFT: u32 = 2;
/// AP[1]: unprivileged access. Device transactions are unprivileged, so a
/// mapping without it would be unusable (Linux's ARM_LPAE_PTE_AP_UNPRIV).
const AP_UNPRIV: u64 = 1 << 6;
/// AP[2]: read-only.
const AP_RDONLY: u64 = 1 << 7;
const SH_OUTER: u64 = 0b10 << 8;
const SH_INNER: u64 = 0b11 << 8;
/// Access flag: set up front, the SMMU is not asked to manage it.
const AF: u64 = 1 << 10;
/// Not global: the entry belongs to the context's ASID.
const NG: u64 = 1 << 11;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

/// Memory type of a table's mappings; the discriminant is the MAIR index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemAttr {
    /// Normal, inner and outer write-back read/write-allocate: DMA that
    /// snoops the CPU caches on a coherent interconnect.
    WriteBack = 0,
    /// Normal, inner and outer non-cacheable.
    NonCacheable = 1,
    /// Device-nGnRE, for peer-to-peer access to another device's registers.
    Device = 2,
}

const MAIR_WRITE_BACK: u64 = 0xff;
const MAIR_NON_CACHEABLE: u64 = 0x44;
const MAIR_DEVICE_NGNRE: u64 = 0x04;

/// The MAIR the context descriptor must carry: attribute `i` of byte `i`
/// is the memory type of [`MemAttr`] with discriminant `i`.
pub const MAIR: u64 = MAIR_WRITE_BACK << (8 * MemAttr::WriteBack as u64)
    | MAIR_NON_CACHEABLE << (8 * MemAttr::NonCacheable as u64)
    | MAIR_DEVICE_NGNRE << (8 * MemAttr::Device as u64);

/// Right shift that turns an IOVA into the entry index of `level`.
pub(super) const fn level_shift(level: u32) -> u32 {
    12 + 9 * (LEAF_LEVEL - level)
}

/// Bytes one entry of `level` translates.
pub(super) const fn entry_size(level: u32) -> u64 {
    1 << level_shift(level)
}

/// The entry of `level` that translates `iova`.
pub(super) const fn index(iova: u64, level: u32) -> usize {
    ((iova >> level_shift(level)) as usize) & (ENTRIES - 1)
}

/// What one descriptor is, at the level it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Invalid,
    /// A next-level table at this physical address.
    Table(u64),
    /// A block (levels 1, 2) or a page (level 3).
    Leaf,
}

/// The lowest level with block descriptors: the 4 KiB granule has none at
/// level 0 (without FEAT_LPA2).
const FIRST_BLOCK_LEVEL: u32 = 1;

pub(super) const fn kind(desc: u64, level: u32) -> Kind {
    if desc & VALID == 0 {
        Kind::Invalid
    } else if desc & TABLE_OR_PAGE == 0 {
        // 0b01 is a block at levels 1 and 2 and a fault at levels 0 and 3;
        // this module never writes the latter.
        if level >= FIRST_BLOCK_LEVEL && level < LEAF_LEVEL {
            Kind::Leaf
        } else {
            Kind::Invalid
        }
    } else if level == LEAF_LEVEL {
        Kind::Leaf
    } else {
        Kind::Table(desc & ADDR_MASK)
    }
}

/// A table descriptor. APTable, XNTable and PXNTable stay zero: every
/// restriction is expressed in the leaves.
pub(super) const fn table(next_table: u64) -> u64 {
    (next_table & ADDR_MASK) | TABLE_OR_PAGE | VALID
}

/// The attribute bits shared by every leaf of one map call.
pub(super) fn leaf_attrs(mem: MemAttr, prot: Prot) -> u64 {
    let shareability = match mem {
        MemAttr::WriteBack => SH_INNER,
        // Ignored for Device memory; outer shareable as Linux does.
        MemAttr::NonCacheable | MemAttr::Device => SH_OUTER,
    };
    // The format cannot express write-only: WRITE alone maps read-write.
    let read_only = if prot.contains(Prot::WRITE) {
        0
    } else {
        AP_RDONLY
    };
    ((mem as u64) << ATTR_INDX_SHIFT) | AP_UNPRIV | read_only | shareability | AF | NG | PXN | UXN
}

/// A leaf at `level` mapping `phys` (aligned to the level's entry size).
pub(super) const fn leaf(phys: u64, level: u32, attrs: u64) -> u64 {
    let kind = if level == LEAF_LEVEL {
        TABLE_OR_PAGE | VALID
    } else {
        VALID
    };
    phys | attrs | kind
}

/// Whether no descriptor of `entries` has its valid bit set: then every
/// one is invalid at any level, as [`kind`] says. (Stricter than `kind`
/// at levels 0 and 3, where 0b01 is a fault this module never writes.)
/// One OR over the slots, no branch per descriptor: the check runs over
/// every slot a map is about to fill.
pub(super) fn all_invalid(entries: &[u64]) -> bool {
    // A cache line (eight descriptors) per step: the ORs of a line are
    // independent, so the loop runs at load bandwidth.
    let lines = entries.chunks_exact(8);
    let tail = lines.remainder().iter().fold(0, |acc, &d| acc | d);
    let used = lines.fold(tail, |acc, line| {
        acc | line.iter().fold(0, |line_acc, &d| line_acc | d)
    });
    used & VALID == 0
}

/// The output address of a leaf at `level`.
pub(super) const fn leaf_phys(desc: u64, level: u32) -> u64 {
    desc & ADDR_MASK & !(entry_size(level) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_invalid_never_passes_a_live_descriptor() {
        for level in 0..=LEAF_LEVEL {
            for low in 0..4u64 {
                let d = 0x40_0000_0000 | AF | low;
                let alone = [0, 0, d, 0];
                if kind(d, level) != Kind::Invalid {
                    assert!(!all_invalid(&alone), "level {level}, low bits {low:#b}");
                }
                // Free-list links (bit 0 clear) read as free.
                assert_eq!(all_invalid(&alone), low & 1 == 0);
            }
        }
        assert!(all_invalid(&[]));
    }

    #[test]
    fn kind_by_level() {
        let addr = 0x40_0000_0000;
        let block = addr | AF | VALID;
        // 0b01: a block at levels 1 and 2 only.
        assert_eq!(kind(block, 0), Kind::Invalid);
        assert_eq!(kind(block, 1), Kind::Leaf);
        assert_eq!(kind(block, 2), Kind::Leaf);
        assert_eq!(kind(block, 3), Kind::Invalid);
        // 0b11: a table above level 3, a page at level 3.
        for level in 0..LEAF_LEVEL {
            assert_eq!(kind(table(addr), level), Kind::Table(addr));
        }
        assert_eq!(kind(table(addr), 3), Kind::Leaf);
        // Bit 0 clear: invalid whatever else is set, as free-list links are.
        for level in 0..=LEAF_LEVEL {
            assert_eq!(kind(0, level), Kind::Invalid);
            assert_eq!(kind(!VALID, level), Kind::Invalid);
        }
    }

    #[test]
    fn leaf_round_trips() {
        let attrs = leaf_attrs(MemAttr::WriteBack, Prot::READ | Prot::WRITE);
        for level in 1..=LEAF_LEVEL {
            let phys = entry_size(level) * 3;
            let d = leaf(phys, level, attrs);
            assert_eq!(kind(d, level), Kind::Leaf);
            assert_eq!(leaf_phys(d, level), phys);
        }
    }
}
