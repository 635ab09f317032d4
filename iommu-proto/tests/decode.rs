//! The copy-in / copy-out rules and the array-pointer check, errno by errno.

use core::mem::size_of;

use iommu_proto::decode::{
    array_range, check_flags, check_reserved, copy_in, copy_in_argsz, copy_out, read_at,
    read_request, write_at,
};
use iommu_proto::iommufd::{iommu_hwpt_alloc, iommu_ioas_map, iommu_iova_range};
use iommu_proto::vfio::{vfio_iommu_type1_dma_map, vfio_iommu_type1_info};
use iommu_proto::{iommu_fault_record, Errno, Request};
use mmio::cells;
use zerocopy::IntoBytes;

const PAGE: usize = 4096;
const PAGE_VA: u64 = 0x20_0000;

fn page_with<T: IntoBytes + zerocopy::Immutable>(value: &T) -> Vec<u8> {
    let mut page = vec![0u8; PAGE];
    page[..size_of::<T>()].copy_from_slice(value.as_bytes());
    page
}

fn map_request(size: u32) -> iommu_ioas_map {
    iommu_ioas_map {
        size,
        flags: 6,
        ioas_id: 3,
        reserved: 0,
        user_va: 0x1000,
        length: 0x2000,
        iova: 0x4000,
    }
}

#[test]
fn exact_size_copies_the_struct() {
    let req = map_request(40);
    let page = page_with(&req);
    assert_eq!(copy_in::<iommu_ioas_map>(&page[..], 40, 40), Ok(req));
    assert_eq!(read_request::<iommu_ioas_map>(&page[..], 40), Ok(req));
}

#[test]
fn shorter_than_minimum_is_einval() {
    let page = page_with(&map_request(32));
    assert_eq!(
        copy_in::<iommu_ioas_map>(&page[..], 32, 40),
        Err(Errno::EINVAL)
    );
    // Even a zero minimum needs the size field itself.
    let mut page = vec![0u8; PAGE];
    page[0] = 3;
    assert_eq!(
        copy_in::<iommu_ioas_map>(&page[..], 3, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        copy_in::<iommu_ioas_map>(&page[..], 0, 0),
        Err(Errno::EINVAL)
    );
}

#[test]
fn size_beyond_the_page_is_efault() {
    let page = page_with(&map_request(40));
    for claimed in [PAGE as u64 + 1, u64::from(u32::MAX), u64::MAX] {
        assert_eq!(
            copy_in::<iommu_ioas_map>(&page[..], claimed, 40),
            Err(Errno::EFAULT),
            "{claimed:#x}"
        );
        assert_eq!(
            copy_in_argsz::<vfio_iommu_type1_info>(&page[..], claimed, 16),
            Err(Errno::EFAULT),
            "{claimed:#x}"
        );
    }
    // A page shorter than the struct is no different.
    assert_eq!(
        copy_in::<iommu_ioas_map>(&page[..39], 40, 40),
        Err(Errno::EFAULT)
    );
}

#[test]
fn mr0_disagreeing_with_the_size_field_is_einval() {
    let page = page_with(&map_request(48));
    assert_eq!(
        copy_in::<iommu_ioas_map>(&page[..], 40, 40),
        Err(Errno::EINVAL)
    );
    let page = page_with(&map_request(40));
    assert_eq!(
        copy_in::<iommu_ioas_map>(&page[..], 48, 40),
        Err(Errno::EINVAL)
    );
    let info = vfio_iommu_type1_info {
        argsz: 24,
        ..Default::default()
    };
    let page = page_with(&info);
    assert_eq!(
        copy_in_argsz::<vfio_iommu_type1_info>(&page[..], 16, 16),
        Err(Errno::EINVAL)
    );
}

#[test]
fn zero_trailing_bytes_are_accepted() {
    let req = map_request(64);
    let page = page_with(&req);
    let got = copy_in::<iommu_ioas_map>(&page[..], 64, 40).unwrap();
    assert_eq!(got, req, "size stays what the client sent");
}

#[test]
fn non_zero_trailing_bytes_are_e2big() {
    let mut page = page_with(&map_request(64));
    page[63] = 1;
    assert_eq!(
        copy_in::<iommu_ioas_map>(&page[..], 64, 40),
        Err(Errno::E2BIG)
    );
    page[63] = 0;
    page[40] = 0x80;
    assert_eq!(
        copy_in::<iommu_ioas_map>(&page[..], 64, 40),
        Err(Errno::E2BIG)
    );
    // Beyond the claimed size is not the request's business.
    page[40] = 0;
    page[64] = 0xff;
    assert!(copy_in::<iommu_ioas_map>(&page[..], 64, 40).is_ok());
}

#[test]
fn missing_tail_reads_as_zero() {
    // An older client's iommu_hwpt_alloc stops at `reserved` (24 bytes);
    // the page holds junk after it that must not leak into the copy.
    let mut page = vec![0xaau8; PAGE];
    let old = iommu_hwpt_alloc {
        size: 24,
        flags: 0,
        dev_id: 5,
        pt_id: 6,
        out_hwpt_id: 0,
        reserved: 0,
        ..Default::default()
    };
    page[..24].copy_from_slice(&old.as_bytes()[..24]);
    let got = read_request::<iommu_hwpt_alloc>(&page[..], 24).unwrap();
    assert_eq!(got, old);
    assert_eq!(
        (got.data_type, got.data_len, got.data_uptr, got.fault_id),
        (0, 0, 0, 0)
    );
    assert_eq!(
        read_request::<iommu_hwpt_alloc>(&page[..], 20),
        Err(Errno::EINVAL)
    );
}

#[test]
fn vfio_ignores_trailing_bytes() {
    // GET_INFO's argsz covers the capability buffer after the struct.
    let mut page = page_with(&vfio_iommu_type1_info {
        argsz: 256,
        ..Default::default()
    });
    page[100] = 0xff;
    let got = read_request::<vfio_iommu_type1_info>(&page[..], 256).unwrap();
    assert_eq!(got.argsz, 256);
    // Older VFIO users pass only minsz; the rest reads as zero.
    let mut page = vec![0x55u8; PAGE];
    page[..4].copy_from_slice(&16u32.to_ne_bytes());
    let got = read_request::<vfio_iommu_type1_info>(&page[..], 16).unwrap();
    assert_eq!((got.argsz, got.cap_offset, got.pad), (16, 0, 0));
    assert_eq!(
        read_request::<vfio_iommu_type1_info>(&page[..], 12),
        Err(Errno::EINVAL)
    );
    let map = vfio_iommu_type1_dma_map {
        argsz: 32,
        flags: 3,
        vaddr: 0x1000,
        iova: 0x2000,
        size: 0x3000,
    };
    let page = page_with(&map);
    assert_eq!(
        read_request::<vfio_iommu_type1_dma_map>(&page[..], 32),
        Ok(map)
    );
}

#[test]
fn fault_read_is_size_framed() {
    let page = page_with(&iommu_fault_record {
        size: 48,
        ..Default::default()
    });
    assert!(read_request::<iommu_fault_record>(&page[..], 48).is_ok());
    assert_eq!(
        read_request::<iommu_fault_record>(&page[..], 40),
        Err(Errno::EINVAL)
    );
    assert_eq!(iommu_fault_record::MIN_SIZE, 48);
}

#[test]
fn copy_out_writes_only_what_the_client_passed() {
    let mut page = vec![0xeeu8; PAGE];
    let reply = map_request(40);
    copy_out(&cells(&mut page), 32, &reply).unwrap();
    assert_eq!(&page[..32], &reply.as_bytes()[..32]);
    assert!(page[32..].iter().all(|&b| b == 0xee));

    let mut page = vec![0xeeu8; PAGE];
    copy_out(&cells(&mut page), 64, &reply).unwrap();
    assert_eq!(&page[..40], reply.as_bytes());
    assert!(page[40..].iter().all(|&b| b == 0xee));

    copy_out(&cells(&mut page), u64::MAX, &reply).unwrap();
    assert_eq!(
        copy_out(&cells(&mut page[..39]), 40, &reply),
        Err(Errno::EFAULT)
    );
}

#[test]
fn array_range_inside_the_page() {
    let elem = size_of::<iommu_iova_range>();
    assert_eq!(array_range(PAGE_VA, PAGE, PAGE_VA, 1, elem), Ok(0..16));
    assert_eq!(
        array_range(PAGE_VA, PAGE, PAGE_VA + 64, 3, elem),
        Ok(64..112)
    );
    // Exactly filling the page is fine; one byte more is not.
    assert_eq!(
        array_range(PAGE_VA, PAGE, PAGE_VA + 4096 - 32, 2, elem),
        Ok(4064..4096)
    );
    assert_eq!(
        array_range(PAGE_VA, PAGE, PAGE_VA + 4096 - 31, 2, elem),
        Err(Errno::EFAULT)
    );
}

#[test]
fn array_range_outside_the_page_is_efault() {
    let elem = size_of::<iommu_iova_range>();
    // Below the page, at its end, far beyond it.
    for ptr in [0, PAGE_VA - 1, PAGE_VA - 16, PAGE_VA + 4096, u64::MAX] {
        assert_eq!(
            array_range(PAGE_VA, PAGE, ptr, 1, elem),
            Err(Errno::EFAULT),
            "{ptr:#x}"
        );
    }
    // Too many elements.
    assert_eq!(
        array_range(PAGE_VA, PAGE, PAGE_VA, 257, elem),
        Err(Errno::EFAULT)
    );
}

#[test]
fn array_range_overflow_is_efault() {
    // count * elem overflows.
    assert_eq!(
        array_range(PAGE_VA, PAGE, PAGE_VA, u64::MAX, 16),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        array_range(PAGE_VA, PAGE, PAGE_VA, 1 << 60, 16),
        Err(Errno::EFAULT)
    );
    // offset + len overflows.
    assert_eq!(
        array_range(0, PAGE, u64::MAX - 8, 1, 16),
        Err(Errno::EFAULT)
    );
    // A page mapped at the top of the address space.
    let top = u64::MAX - 4095;
    assert_eq!(array_range(top, PAGE, top + 4080, 1, 16), Ok(4080..4096));
    assert_eq!(
        array_range(top, PAGE, top + 4088, 1, 16),
        Err(Errno::EFAULT)
    );
}

#[test]
fn empty_arrays_never_fault() {
    assert_eq!(array_range(PAGE_VA, PAGE, 0, 0, 16), Ok(0..0));
    assert_eq!(array_range(PAGE_VA, PAGE, u64::MAX, 0, 16), Ok(0..0));
    assert_eq!(array_range(PAGE_VA, PAGE, u64::MAX, 5, 0), Ok(0..0));
}

#[test]
fn read_and_write_at_offsets() {
    let mut page = vec![0u8; PAGE];
    let r = iommu_iova_range {
        start: 0x1000,
        last: 0x1fff,
    };
    // Unaligned offsets are fine: the page is bytes.
    write_at(&cells(&mut page), 3, &r).unwrap();
    assert_eq!(read_at::<iommu_iova_range>(&page[..], 3), Ok(r));
    write_at(&cells(&mut page), PAGE - 16, &r).unwrap();
    assert_eq!(
        write_at(&cells(&mut page), PAGE - 15, &r),
        Err(Errno::EFAULT)
    );
    assert_eq!(
        read_at::<iommu_iova_range>(&page[..], usize::MAX),
        Err(Errno::EFAULT)
    );
}

#[test]
fn flag_and_reserved_checks_are_eopnotsupp() {
    assert_eq!(check_flags(0b101, 0b111), Ok(()));
    assert_eq!(check_flags(0b1000, 0b111), Err(Errno::EOPNOTSUPP));
    assert_eq!(check_reserved(&0u32), Ok(()));
    assert_eq!(check_reserved(&[0u8, 0, 0]), Ok(()));
    assert_eq!(check_reserved(&[0u8, 1, 0]), Err(Errno::EOPNOTSUPP));
    assert_eq!(check_reserved(&0x100u16), Err(Errno::EOPNOTSUPP));
}

/// Arbitrary pages, sizes and minimums never panic, and every success obeys
/// the rules.
#[test]
fn arbitrary_inputs_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let page_len = (next() % 80) as usize;
        let mut page: Vec<u8> = (0..page_len).map(|_| (next() % 3) as u8).collect();
        let claimed = match next() % 4 {
            0 => next(),
            _ => next() % 96,
        };
        if page_len >= 4 && next() % 2 == 0 {
            page[..4].copy_from_slice(&(claimed as u32).to_ne_bytes());
        }
        let min = (next() % 64) as usize;
        if let Ok(v) = copy_in::<iommu_ioas_map>(&page[..], claimed, min) {
            assert!(claimed as usize >= min.max(4) && claimed as usize <= page_len);
            assert_eq!(u64::from(v.size), claimed);
        }
        let _ = copy_in_argsz::<vfio_iommu_type1_info>(&page[..], claimed, min);
        let _ = copy_out(&cells(&mut page), claimed, &map_request(1));
        let _ = array_range(
            next(),
            page_len,
            next(),
            next() % 1024,
            (next() % 64) as usize,
        );
    }
}
