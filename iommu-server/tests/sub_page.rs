//! Byte-granular IOAS areas through the byte-level request path, as Linux
//! v6.6 has them: an IOAS with no domain has alignment 1 and maps any
//! length from any offset, keeping the offset in the page; a domain raises
//! the alignment to its smallest page and is refused while an area does
//! not fit it.

mod common;

use common::{client, device, id, region, MockHw, Rig};
use iommu_proto::iommufd::*;
use iommu_proto::Op;
use iommu_types::config::{DeviceConfig, Region};
use iommu_types::Errno;

const K4: u64 = 0x1000;
const VA: u64 = 0x10_0000;
const PA: u64 = 0x8000_0000;

static REGIONS: [Region; 1] = [region(VA, 0x10_0000, PA)];
static DEVICES: [DeviceConfig; 1] = [device("dev", 0x8)];

fn rig() -> Rig<MockHw> {
    Rig::new(
        MockHw::new(),
        &[client("a").regions(&REGIONS).devices(&DEVICES).build()],
    )
}

fn alignment(r: &mut Rig<MockHw>, ioas: u32) -> u64 {
    let mut cmd = iommu_ioas_iova_ranges {
        size: 32,
        ioas_id: ioas,
        num_iovas: 0,
        reserved: 0,
        allowed_iovas: 0,
        out_iova_alignment: 0,
    };
    let _ = r.call(0, Op::IoasIovaRanges, &mut cmd, 0);
    cmd.out_iova_alignment
}

fn copy(r: &mut Rig<MockHw>, ioas: u32, src: u64, len: u64) -> Result<u64, Errno> {
    let mut cmd = iommu_ioas_copy {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE,
        dst_ioas_id: ioas,
        src_ioas_id: ioas,
        length: len,
        dst_iova: 0,
        src_iova: src,
    };
    r.call(0, Op::IoasCopy, &mut cmd, 0)?;
    Ok(cmd.dst_iova)
}

fn unmap(r: &mut Rig<MockHw>, ioas: u32, iova: u64, len: u64) -> Result<u64, Errno> {
    let mut cmd = iommu_ioas_unmap {
        size: 24,
        ioas_id: ioas,
        iova,
        length: len,
    };
    r.call(0, Op::IoasUnmap, &mut cmd, 0)?;
    Ok(cmd.length)
}

fn used(r: &Rig<MockHw>) -> u64 {
    r.server.store().account(id(0)).unwrap().used
}

#[test]
fn without_a_domain_any_byte_range_maps() {
    let mut r = rig();
    let ioas = r.alloc(0).unwrap();
    assert_eq!(alignment(&mut r, ioas), 1);
    // Aligned to min(roundup(0x45), lowest bit of the address) = 1, with
    // the offset in the page or'ed in, above the first page.
    let iova = r.map(0, ioas, VA + 0x123, 0x45, None).unwrap();
    assert_eq!(iova, 0x1123);
    assert_eq!(r.server.translate(id(0), ioas, iova), Some(PA + 0x123));
    assert_eq!(used(&r), 1, "the CPU page it touches");
    // Fixed at any byte, straddling a page: two pages.
    let fixed = r.map(0, ioas, VA + 0xff0, 0x20, Some(0x7_7ff0)).unwrap();
    assert_eq!(fixed, 0x7_7ff0);
    assert_eq!(r.server.translate(id(0), ioas, 0x7_8005), Some(PA + 0x1005));
    assert_eq!(used(&r), 3);
    // A copy of part of an area shares its pages and their charge.
    let copied = copy(&mut r, ioas, iova + 0x10, 0x11).unwrap();
    assert_eq!(r.server.translate(id(0), ioas, copied), Some(PA + 0x133));
    assert_eq!(used(&r), 3);
    assert_eq!(unmap(&mut r, ioas, iova, 0x45), Ok(0x45));
    assert_eq!(used(&r), 3, "the copy still holds the page");
    assert_eq!(unmap(&mut r, ioas, 0, u64::MAX), Ok(0x20 + 0x11));
    assert_eq!(used(&r), 0);
    assert!(r.check().is_ok());
}

#[test]
fn a_domain_raises_the_alignment_and_refuses_what_does_not_fit() {
    let mut r = rig();
    let ioas = r.alloc(0).unwrap();
    let dev = r.bind(0, 0).unwrap();
    let odd = r.map(0, ioas, VA + 0x800, K4, None).unwrap();
    assert_eq!(
        r.attach(0, dev, ioas),
        Err(Errno::EADDRINUSE),
        "an area starts inside a page"
    );
    assert_eq!(alignment(&mut r, ioas), 1, "nothing changed");
    unmap(&mut r, ioas, odd, K4).unwrap();
    r.attach(0, dev, ioas).unwrap();
    assert_eq!(alignment(&mut r, ioas), K4);
    assert_eq!(
        r.map(0, ioas, VA + 0x800, K4, None),
        Err(Errno::EINVAL),
        "the source allows 2 KiB alignment only"
    );
    assert_eq!(
        r.map(0, ioas, VA, 0x800, None),
        Err(Errno::EINVAL),
        "half a page"
    );
    assert_eq!(
        r.map(0, ioas, VA, K4, Some(0x10_0800)),
        Err(Errno::EINVAL),
        "an IOVA inside a page"
    );
    let iova = r.map(0, ioas, VA, 2 * K4, None).unwrap();
    assert_eq!(iova % K4, 0);
    assert!(r.check().is_ok());
}
