//! A client's memory regions: resolving its addresses to physical
//! extents, and checking the configured regions.

use heapless::Vec;
use iommu_types::config::Region;
use iommu_types::Errno;
use iopt::{Extent, MAX_EXTENTS, PAGE_SIZE};

/// Physical extents behind `[va, va + len)` of the client's regions.
///
/// EFAULT when any byte lies outside every region, EPERM when the access
/// asked for exceeds the client's own rights there, EOVERFLOW when the
/// range wraps, ENOMEM past [`MAX_EXTENTS`] discontiguous pieces. Pieces that
/// are physically contiguous are merged.
pub fn resolve(
    regions: &[Region],
    va: u64,
    len: u64,
    read: bool,
    write: bool,
) -> Result<Vec<Extent, MAX_EXTENTS>, Errno> {
    let mut out: Vec<Extent, MAX_EXTENTS> = Vec::new();
    if len == 0 {
        return Ok(out);
    }
    let last = va.checked_add(len - 1).ok_or(Errno::EOVERFLOW)?;
    let mut cursor = va;
    loop {
        let region = regions
            .iter()
            .find(|r| r.vaddr <= cursor && cursor - r.vaddr < r.size)
            .ok_or(Errno::EFAULT)?;
        if (write && !region.perms.write) || (read && !region.perms.read) {
            return Err(Errno::EPERM);
        }
        let offset = cursor - region.vaddr;
        let region_last = region.vaddr + (region.size - 1);
        let piece_last = region_last.min(last);
        let piece = Extent {
            phys: region.paddr + offset,
            len: piece_last - cursor + 1,
        };
        match out.last_mut() {
            Some(prev) if prev.phys.checked_add(prev.len) == Some(piece.phys) => {
                prev.len += piece.len
            }
            _ => out.push(piece).map_err(|_| Errno::ENOMEM)?,
        }
        if piece_last == last {
            return Ok(out);
        }
        cursor = piece_last + 1;
    }
}

/// Checks a configuration's regions: page aligned, non-empty, no wrap, no
/// overlap in the client's address space. Returns the index of the first
/// bad region.
pub fn check_regions(regions: &[Region]) -> Result<(), usize> {
    for (i, r) in regions.iter().enumerate() {
        let aligned =
            r.vaddr % PAGE_SIZE == 0 && r.paddr % PAGE_SIZE == 0 && r.size % PAGE_SIZE == 0;
        let fits = r.size > 0
            && r.vaddr.checked_add(r.size - 1).is_some()
            && r.paddr.checked_add(r.size - 1).is_some();
        let overlaps = regions[..i]
            .iter()
            .any(|o| r.vaddr <= o.vaddr + (o.size - 1) && o.vaddr <= r.vaddr + (r.size - 1));
        if !aligned || !fits || overlaps {
            return Err(i);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_types::config::Perms;

    const REGIONS: [Region; 3] = [
        Region {
            vaddr: 0x10_0000,
            size: 0x2000,
            paddr: 0x8000_0000,
            perms: Perms::RW,
        },
        // Virtually and physically adjacent to the first: merges.
        Region {
            vaddr: 0x10_2000,
            size: 0x1000,
            paddr: 0x8000_2000,
            perms: Perms::RW,
        },
        Region {
            vaddr: 0x10_3000,
            size: 0x1000,
            paddr: 0x9000_0000,
            perms: Perms::RO,
        },
    ];

    #[test]
    fn resolves_across_regions_and_merges_contiguous_pieces() {
        let ext = resolve(&REGIONS, 0x10_1000, 0x3000, true, false).unwrap();
        assert_eq!(
            &ext[..],
            &[
                Extent {
                    phys: 0x8000_1000,
                    len: 0x2000
                },
                Extent {
                    phys: 0x9000_0000,
                    len: 0x1000
                }
            ]
        );
    }

    #[test]
    fn refuses_foreign_memory_and_excess_rights() {
        assert_eq!(
            resolve(&REGIONS, 0x10_3000, 0x2000, true, false).err(),
            Some(Errno::EFAULT)
        );
        assert_eq!(
            resolve(&REGIONS, 0xf_f000, 0x2000, true, false).err(),
            Some(Errno::EFAULT)
        );
        assert_eq!(
            resolve(&REGIONS, 0x10_3000, 0x1000, true, true).err(),
            Some(Errno::EPERM)
        );
        assert_eq!(
            resolve(&REGIONS, u64::MAX - 0xfff, 0x2000, true, false).err(),
            Some(Errno::EOVERFLOW)
        );
        assert!(resolve(&REGIONS, 0x10_0000, 0, true, true)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn region_checks_name_the_bad_one() {
        assert_eq!(check_regions(&REGIONS), Ok(()));
        let mut bad = REGIONS;
        bad[2].vaddr = 0x10_1000;
        assert_eq!(check_regions(&bad), Err(2));
        bad[2] = Region {
            vaddr: 0x20_0800,
            ..REGIONS[2]
        };
        assert_eq!(check_regions(&bad), Err(2));
    }
}
