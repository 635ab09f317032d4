//! Every shared resource is partitioned: the configuration is refused when
//! the clients' quotas add up to more than a pool holds, and one client
//! exhausting everything it may still leaves every other client its full
//! quota of every resource (objects, mapped pages, mappings, page-table
//! pages, HWPTs), so no client's use can reduce or reveal another's.

mod common;

use common::{client, device, region, MockHw, PtHw, Rig};
use iommu_proto::iommufd::iommu_hwpt_alloc;
use iommu_proto::{Errno, Op};
use iommu_server::ConfigError;
use iommu_types::config::{DeviceConfig, Quota, Region};

static REGIONS_A: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8000_0000)];
static REGIONS_B: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x9000_0000)];
static DEV_A: [DeviceConfig; 1] = [device("a", 0x8)];
static DEV_B: [DeviceConfig; 1] = [device("b", 0x10)];

const QUOTA: Quota = Quota {
    objects: 6,
    ioases: 6,
    mapped_pages: 16,
    table_pages: 8,
    hwpts: 2,
    mappings: 4,
};

#[test]
fn quotas_beyond_the_hardware_are_refused() {
    let two = |quota: Quota| {
        [
            client("a").quota(quota).build(),
            client("b").quota(quota).build(),
        ]
    };
    let hw = |table_pages, max_domains| MockHw {
        table_pages,
        max_domains,
        ..MockHw::new()
    };
    assert!(
        Rig::try_new(hw(16, 4), &two(QUOTA), 64).is_ok(),
        "8 + 8 pages, 2 + 2 HWPTs fit"
    );
    assert_eq!(
        Rig::try_new(hw(15, 4), &two(QUOTA), 64).err(),
        Some(ConfigError::TablePagesOvercommitted)
    );
    assert_eq!(
        Rig::try_new(hw(16, 3), &two(QUOTA), 64).err(),
        Some(ConfigError::HwptsOvercommitted)
    );
    let huge = Quota {
        table_pages: usize::MAX,
        ..QUOTA
    };
    assert_eq!(
        Rig::try_new(hw(16, 4), &two(huge), 64).err(),
        Some(ConfigError::TablePagesOvercommitted),
        "a sum that wraps is refused too"
    );
}

fn hwpt_alloc(r: &mut Rig<PtHw>, c: usize, dev: u32, ioas: u32) -> Result<u32, Errno> {
    let mut cmd = iommu_hwpt_alloc {
        size: 48,
        dev_id: dev,
        pt_id: ioas,
        ..Default::default()
    };
    r.call(c, Op::HwptAlloc, &mut cmd, 0)?;
    Ok(cmd.out_hwpt_id)
}

/// What one client got before each resource ran out.
#[derive(Debug, PartialEq, Eq)]
struct Got {
    hwpts: usize,
    mappings: usize,
    pages: u64,
    table_pages: usize,
    objects: usize,
}

/// Takes everything `c` may have, each until ENOMEM: HWPTs (two, each a
/// root table), then 16 KiB mappings side by side (the first adds three
/// tables to each HWPT, the rest none), then objects.
fn exhaust(r: &mut Rig<PtHw>, c: usize) -> Got {
    let ioas = r.alloc(c).unwrap();
    let dev = r.bind(c, 0).unwrap();
    let mut hwpts = 0;
    while hwpt_alloc(r, c, dev, ioas).is_ok() {
        hwpts += 1;
    }
    assert_eq!(hwpt_alloc(r, c, dev, ioas), Err(Errno::ENOMEM));
    let (mut mappings, mut pages) = (0, 0);
    for k in 0..64u64 {
        match r.map(
            c,
            ioas,
            0x10_0000 + k * 0x4000,
            0x4000,
            Some((k + 1) * 0x4000),
        ) {
            Ok(_) => {
                mappings += 1;
                pages += 4;
            }
            Err(e) => {
                assert_eq!(e, Errno::ENOMEM);
                break;
            }
        }
    }
    // Far away, new tables would be needed too: still ENOMEM.
    assert_eq!(
        r.map(c, ioas, 0x18_0000, 0x1000, Some(1 << 40)),
        Err(Errno::ENOMEM)
    );
    let mut objects = r.server.object_count(common::id(c));
    while r.alloc(c).is_ok() {
        objects += 1;
    }
    let table_pages = r.server.hardware().owned_tables(common::id(c));
    Got {
        hwpts,
        mappings,
        pages,
        table_pages,
        objects,
    }
}

#[test]
fn one_client_exhausting_everything_leaves_the_other_its_full_quota() {
    let configs = [
        client("a")
            .regions(&REGIONS_A)
            .devices(&DEV_A)
            .quota(QUOTA)
            .build(),
        client("b")
            .regions(&REGIONS_B)
            .devices(&DEV_B)
            .quota(QUOTA)
            .build(),
    ];
    // The pool holds exactly what the two quotas promise.
    let mut r = Rig::new(PtHw::new(2 * QUOTA.table_pages), &configs);
    let full = Got {
        hwpts: QUOTA.hwpts,
        mappings: QUOTA.mappings,
        pages: QUOTA.mapped_pages,
        table_pages: QUOTA.table_pages,
        objects: QUOTA.objects,
    };
    assert_eq!(exhaust(&mut r, 0), full, "a reaches every quota");
    assert_eq!(
        exhaust(&mut r, 1),
        full,
        "b reaches every quota too, a's use notwithstanding"
    );
    assert!(r.check().is_ok());
}

#[test]
fn ioases_come_from_a_pool_the_quotas_add_up_to() {
    let quota = Quota { ioases: 2, ..QUOTA };
    let mut r = Rig::new(MockHw::new(), &[client("a").quota(quota).build()]);
    let first = r.alloc(0).unwrap();
    r.alloc(0).unwrap();
    let objects = r.server.object_count(common::id(0));
    assert_eq!(
        r.alloc(0),
        Err(Errno::ENOMEM),
        "past the client's IOAS quota"
    );
    assert_eq!(
        r.server.object_count(common::id(0)),
        objects,
        "nothing left behind"
    );
    let mut destroy = iommu_proto::iommufd::iommu_destroy { size: 8, id: first };
    r.call(0, Op::Destroy, &mut destroy, 0).unwrap();
    r.alloc(0).expect("a destroyed IOAS's slot serves again");
    assert!(r.check().is_ok());

    // A pool smaller than the quotas promise is refused.
    let mut configs = [
        client("a").quota(quota).build(),
        client("b").quota(quota).build(),
    ];
    let store = iommu_testkit::store(64, 64, 2);
    let mut store = store;
    let refused = iommu_server::Server::new(
        store.take().unwrap(),
        iommu_testkit::recycle::slice_with(3, || iommu_server::IoasSlot::EMPTY),
        MockHw::new(),
        iommu_testkit::recycle::slice_with(2, || iommu_server::Client::EMPTY),
        &mut configs,
    );
    assert_eq!(refused.err(), Some(ConfigError::IoasesOvercommitted));
}

/// A client costs its object table, whose slots are small; an IOAS's
/// memory is spent only for the IOASes the quotas promise.
#[test]
fn a_client_costs_what_it_is_configured_for() {
    let client = std::mem::size_of::<iommu_server::Client>();
    let ioas = std::mem::size_of::<iommu_server::IoasSlot>();
    assert!(client <= 4096, "a client's state is {client} bytes");
    assert!(ioas >= 512, "an IOAS ({ioas} bytes) is what the pool saves");
    assert_eq!(
        std::mem::size_of::<iommu_server::Storage<0, 1, 4>>()
            - std::mem::size_of::<iommu_server::Storage<0, 1, 0>>(),
        4 * ioas,
        "each configured IOAS costs one slot"
    );
    println!("client {client} bytes, IOAS slot {ioas} bytes");
}
