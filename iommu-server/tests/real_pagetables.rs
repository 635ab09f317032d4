//! The server over hw's real stage-1 page tables (one shared pool) instead
//! of the recording mock: what devices would see, table-page quotas, and
//! every table page back after a reset.

mod common;

use common::{client, device, region, PtHw, Rig, DEFAULT_QUOTA};
use iommu_proto::iommufd::*;
use iommu_proto::{Errno, Op};
use iommu_types::config::{DeviceConfig, Quota, Region};
use iommu_types::StreamId;

const M2: u64 = 0x20_0000;
static REGIONS: [Region; 1] = [region(0x20_0000, 0x40_0000, 0x8000_0000)];
static DEVICES: [DeviceConfig; 1] = [device("edu", 0x8)];

fn rig(table_pages: usize) -> Rig<PtHw> {
    let quota = Quota {
        table_pages,
        objects: 8,
        ..DEFAULT_QUOTA
    };
    let c = client("c").regions(&REGIONS).devices(&DEVICES).quota(quota);
    Rig::new(PtHw::new(64), &[c.build()])
}

fn attach(r: &mut Rig<PtHw>, ioas: u32) -> Result<u32, Errno> {
    let dev = r.bind(0, 0)?;
    r.attach(0, dev, ioas)
}

#[test]
fn devices_see_exactly_what_the_ioas_maps() {
    let mut r = rig(64);
    let ioas = r.alloc(0).unwrap();
    let block = r.map(0, ioas, 0x20_0000, M2, None).unwrap();
    let small = r.map(0, ioas, 0x40_3000, 0x3000, None).unwrap();
    attach(&mut r, ioas).unwrap();
    let late = r
        .map(0, ioas, 0x40_0000, 0x1000, Some(0x1_0000_0000))
        .unwrap();
    for (iova, len) in [(block, M2), (small, 0x3000), (late, 0x1000)] {
        for offset in (0..len).step_by(0x1000) {
            let want = r.server.translate(common::id(0), ioas, iova + offset);
            assert!(want.is_some());
            assert_eq!(
                r.server.hardware().dma(StreamId(0x8), iova + offset + 0x10),
                want.map(|p| p + 0x10)
            );
        }
    }
    let flushes = r.server.hardware().flushes;
    let mut unmap = iommu_ioas_unmap {
        size: 24,
        ioas_id: ioas,
        iova: block,
        length: M2,
    };
    r.call_with(0, Op::IoasUnmap, &mut unmap, 24, 0).unwrap();
    assert_eq!(r.server.hardware().dma(StreamId(0x8), block), None);
    assert_eq!(
        r.server.hardware().flushes,
        flushes + 1,
        "one flush for the unmap"
    );
}

#[test]
fn table_page_quota_is_enomem_and_changes_nothing() {
    // Root plus three tables: enough for one corner of the IOVA space.
    let mut r = rig(4);
    let ioas = r.alloc(0).unwrap();
    r.map(0, ioas, 0x20_0000, 0x1000, Some(0x1000)).unwrap();
    attach(&mut r, ioas).unwrap();
    assert_eq!(r.server.hardware().owned_tables(common::id(0)), 4);
    let used = r.server.store().account(common::id(0)).unwrap().used;
    // Far away: three more tables would be needed.
    assert_eq!(
        r.map(0, ioas, 0x20_1000, 0x1000, Some(1 << 40)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(r.server.translate(common::id(0), ioas, 1 << 40), None);
    assert_eq!(r.server.store().account(common::id(0)).unwrap().used, used);
    assert_eq!(r.server.hardware().owned_tables(common::id(0)), 4);
    // Next to the first page: no new table, fine.
    r.map(0, ioas, 0x20_1000, 0x1000, Some(0x2000)).unwrap();
    assert_eq!(
        r.server.hardware().dma(StreamId(0x8), 0x2000),
        Some(0x8000_1000)
    );
}

#[test]
fn reset_returns_every_table_page() {
    let mut r = rig(64);
    let ioas = r.alloc(0).unwrap();
    r.map(0, ioas, 0x20_0000, 0x40_0000, None).unwrap();
    attach(&mut r, ioas).unwrap();
    assert!(r.server.hardware().pool.used() > 0);
    let reply = r.server.handle(
        common::id(0),
        Op::ResetClient.label(),
        [0, 0],
        &mut r.pages[0],
    );
    assert_eq!(reply.errno(), None);
    assert_eq!(r.server.hardware().pool.used(), 0);
    assert_eq!(r.server.hardware().live_domains(), 0);
    assert_eq!(r.server.hardware().dma(StreamId(0x8), 0x20_0000), None);
}
