//! Static IO address spaces (system.xml's `<io_address_space>`): the
//! server builds them at start, before serving, so a driver that never
//! calls it is confined to exactly its iomaps; their faults reach the
//! space's fault PD; a manager holds and releases them; a refused
//! configuration leaves nothing behind.

mod common;

use common::{client, device, region, MockHw, PtHw, Rig, PAGE_VA};
use iommu_proto::dump::{iommu_dump, IOMMU_DUMP_SERVER};
use iommu_proto::fault::*;
use iommu_proto::{Errno, Op, IOMMU_QUARANTINE_STATIC};
use iommu_server::{Drained, Fault, LogEvent, StaticError};
use iommu_types::config::{DeviceConfig, IoMap, Perms, Quota, Region, StaticSpace};
use iommu_types::{ClientId, Prot, StreamId};

const M2: u64 = 0x20_0000;
static REGIONS: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8000_0000)];
static DEVICES: [DeviceConfig; 1] = [device("edu_a", 0x8)];

/// An identity iomap (sDDF's drivers give devices physical addresses),
/// and one placing a 2 MiB + 8 KiB region elsewhere, read-only.
static IOMAPS: [IoMap; 2] = [
    IoMap {
        iova: 0x5f00_0000,
        paddr: 0x5f00_0000,
        size: 0x1_0000,
        perms: Perms::RW,
    },
    IoMap {
        iova: 0x1_0000_0000,
        paddr: 0x9000_0000,
        size: M2 + 0x2000,
        perms: Perms::RO,
    },
];
/// Root, one L1, two L2 (0x5f00_0000 and 0x1_0000_0000 lie in different
/// GiBs), three L3 (the identity map's 2 MiB, and the block's tail).
const TABLES: usize = 1 + 1 + 2 + 2;
static SPACES: [StaticSpace; 1] = [StaticSpace {
    name: "edu_c_space",
    stream_id: StreamId(0x20),
    domain_id: 7,
    iomaps: &IOMAPS,
    table_pages: TABLES,
}];

fn quota(table_pages: usize) -> Quota {
    Quota {
        table_pages,
        objects: 8,
        ..common::DEFAULT_QUOTA
    }
}

fn rig<H: iopt::Hardware + 'static>(hw: H, table_pages: usize) -> Rig<H> {
    Rig::new(
        hw,
        &[
            client("edu_a")
                .regions(&REGIONS)
                .devices(&DEVICES)
                .quota(quota(table_pages))
                .build(),
            client("manager")
                .manager(true)
                .quota(Quota {
                    hwpts: 0,
                    ..quota(0)
                })
                .build(),
        ],
    )
}

#[test]
fn the_device_sees_exactly_its_iomaps_in_real_page_tables() {
    let mut r = rig(PtHw::new(64), 16);
    r.server.establish(&SPACES).unwrap();
    let hw = r.server.hardware();
    let sid = StreamId(0x20);
    for m in &IOMAPS {
        for offset in (0..m.size).step_by(0x1000) {
            assert_eq!(
                hw.dma(sid, m.iova + offset + 0x18),
                Some(m.paddr + offset + 0x18)
            );
        }
        assert_eq!(
            hw.dma(sid, m.iova - 1),
            None,
            "nothing before {:#x}",
            m.iova
        );
        assert_eq!(hw.dma(sid, m.iova + m.size), None, "nothing after");
    }
    // The physical address of the remapped region is not an IOVA of it:
    // the iomap, not the physical layout, decides what the device sees.
    assert_eq!(hw.dma(sid, 0x9000_0000), None);
    // Its tables are charged to the owner after the last client's, within
    // what the configuration set aside.
    let owner = ClientId(2);
    assert!(hw.owned_tables(owner) <= TABLES);
    assert_eq!(hw.owned_tables(ClientId(0)), 0);
    r.check().unwrap();
}

#[test]
fn iomaps_go_in_with_their_permissions_in_the_largest_pages() {
    let mut r = rig(MockHw::new(), 16);
    r.server.establish(&SPACES).unwrap();
    let hw = r.server.hardware();
    let domain = hw
        .attached(StreamId(0x20))
        .expect("attached before serving");
    let pages = &hw.domain(domain).pages;
    let rw = Prot::READ | Prot::WRITE;
    // 64 KiB at 0x5f00_0000: sixteen 4 KiB pages; 2 MiB + 8 KiB at a
    // 2 MiB-aligned IOVA and address: one block and two pages.
    let want: Vec<(u64, u64, u64, Prot)> = (0..16)
        .map(|i| {
            (
                0x5f00_0000 + i * 0x1000,
                0x5f00_0000 + i * 0x1000,
                0x1000,
                rw,
            )
        })
        .chain([(0x1_0000_0000, 0x9000_0000, M2, Prot::READ)])
        .chain((0..2).map(|i| {
            (
                0x1_0020_0000 + i * 0x1000,
                0x9020_0000 + i * 0x1000,
                0x1000,
                Prot::READ,
            )
        }))
        .collect();
    let got: Vec<(u64, u64, u64, Prot)> = pages
        .iter()
        .map(|(&iova, p)| (iova, p.phys, p.size, p.prot))
        .collect();
    assert_eq!(got, want);
    r.check().unwrap();
}

/// One interrupt's worth of hardware events.
fn interrupt<H: iopt::Hardware>(
    r: &mut Rig<H>,
    faults: &[Fault],
    lost: bool,
) -> (u64, Vec<LogEvent>) {
    let mut log = Vec::new();
    let notify = r.server.collect_faults(
        |_, _, report| {
            faults.iter().for_each(|&f| report(f));
            Drained {
                lost,
                global_errors: 0,
                pending: false,
            }
        },
        &mut |event| log.push(event),
    );
    (notify.notify, log)
}

fn translation(stream: u32, iova: u64) -> Fault {
    Fault {
        stream: StreamId(stream),
        kind: IOMMU_FAULT_KIND_F_TRANSLATION,
        iova: Some(iova),
        access: IOMMU_FAULT_ACCESS_WRITE,
    }
}

#[test]
fn a_static_space_fault_is_logged_and_reaches_its_fault_pd_only() {
    let mut r = rig(MockHw::new(), 16);
    r.server.establish(&SPACES).unwrap();
    let stray = translation(0x20, 0x9000_0000);
    let (clients, log) = interrupt(&mut r, &[stray], false);
    assert_eq!(clients, 0, "no client is told of a static space's fault");
    assert_eq!(
        log,
        [LogEvent::StaticFault {
            space: "edu_c_space",
            domain_id: 7,
            fault: stray
        }]
    );
    assert_eq!(
        log[0].to_string(),
        "DMA fault F_TRANSLATION on stream 0x20 (static space edu_c_space, domain_id 7), IOVA 0x90000000 write"
    );
    assert_eq!(r.server.take_static_faults(), 1, "space 0's fault PD");
    assert_eq!(r.server.take_static_faults(), 0, "told once");
    assert_eq!(r.server.static_faults(0), Some((1, Some(stray))));
    assert_eq!(r.server.faults_pending(common::id(0)), 0);
    // A client's fault still goes to the client alone.
    let (clients, _) = interrupt(&mut r, &[translation(0x8, 0x1000)], false);
    assert_eq!(clients, 1);
    assert_eq!(r.server.take_static_faults(), 0);
    // Lost records may have been the space's: it is told too.
    interrupt(&mut r, &[], true);
    assert_eq!(r.server.take_static_faults(), 1);
}

fn quarantine<H: iopt::Hardware>(
    r: &mut Rig<H>,
    caller: usize,
    target: u64,
    hold: u64,
) -> Result<u64, Errno> {
    r.call_with(caller, Op::Quarantine, &mut [0u8; 0], target, hold)
}

#[test]
fn a_manager_holds_a_static_device_and_releases_it() {
    let mut r = rig(PtHw::new(64), 16);
    r.server.establish(&SPACES).unwrap();
    let sid = StreamId(0x20);
    let target = IOMMU_QUARANTINE_STATIC;
    assert_eq!(
        quarantine(&mut r, 0, target, 1),
        Err(Errno::EPERM),
        "managers only"
    );
    assert_eq!(
        quarantine(&mut r, 1, target | 1, 1),
        Err(Errno::EINVAL),
        "no space 1"
    );
    assert_eq!(quarantine(&mut r, 1, target, 2), Err(Errno::EINVAL));
    assert!(r.server.hardware().dma(sid, 0x5f00_0000).is_some());

    quarantine(&mut r, 1, target, 1).unwrap();
    assert_eq!(
        r.server.hardware().streams.get(&sid),
        Some(&None),
        "stream aborts"
    );
    assert_eq!(r.server.hardware().dma(sid, 0x5f00_0000), None);
    assert_eq!(r.server.static_held(0), Some(true));
    r.check().unwrap();
    // The dynamic client is untouched by it.
    assert!(r.server.object_count(common::id(0)) == 0);

    quarantine(&mut r, 1, target, 0).unwrap();
    assert_eq!(r.server.hardware().dma(sid, 0x5f00_0010), Some(0x5f00_0010));
    assert_eq!(r.server.static_held(0), Some(false));
    r.check().unwrap();
    // Releasing what is not held changes nothing.
    quarantine(&mut r, 1, target, 0).unwrap();
    r.check().unwrap();
}

#[test]
fn resetting_every_client_leaves_a_static_space_attached() {
    let mut r = rig(MockHw::new(), 16);
    r.server.establish(&SPACES).unwrap();
    let ioas = r.alloc(0).unwrap();
    let dev = r.bind(0, 0).unwrap();
    r.attach(0, dev, ioas).unwrap();
    r.server.reset_client(common::id(0)).unwrap();
    r.server.reset_client(common::id(1)).unwrap();
    assert!(r
        .server
        .hardware()
        .dma(StreamId(0x20), 0x5f00_0000)
        .is_some());
    r.check().unwrap();
}

#[test]
fn the_dump_shows_static_spaces() {
    let mut r = rig(MockHw::new(), 16);
    r.server.establish(&SPACES).unwrap();
    interrupt(&mut r, &[translation(0x20, 0x9000_0000)], false);
    quarantine(&mut r, 1, IOMMU_QUARANTINE_STATIC, 1).unwrap();
    let mut cmd = iommu_dump {
        size: 40,
        target: IOMMU_DUMP_SERVER,
        length: 2000,
        reserved: 0,
        offset: 0,
        data_uptr: PAGE_VA + 64,
        out_total: 0,
    };
    r.call(1, Op::Dump, &mut cmd, 0).unwrap();
    let text = String::from_utf8(r.pages[1][64..64 + cmd.length as usize].to_vec()).unwrap();
    let statics: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("static"))
        .collect();
    assert_eq!(
        statics,
        [
            "static space edu_c_space (domain_id 7): stream 0x20, 2 iomaps, 6 table pages, held, 1 faults",
            "  0x5f000000-0x5f00ffff -> 0x5f000000 rw",
            "  0x100000000-0x100201fff -> 0x90000000 r-",
        ]
    );
}

/// A refused configuration: the error, and nothing of it left.
fn refused(spaces: &'static [StaticSpace], hw: MockHw, table_pages: usize) -> StaticError {
    let mut r = rig(hw, table_pages);
    let e = r.server.establish(spaces).unwrap_err();
    let hw = r.server.hardware();
    assert_eq!(hw.live_domains(), 0, "{e:?}: a domain left behind");
    assert!(
        hw.streams.values().all(Option::is_none),
        "{e:?}: a stream left attached"
    );
    e
}

#[test]
fn a_bad_configuration_is_refused_and_leaves_nothing() {
    static OWNED: [StaticSpace; 1] = [StaticSpace {
        stream_id: StreamId(0x8),
        ..SPACES[0]
    }];
    assert_eq!(
        refused(&OWNED, MockHw::new(), 16),
        StaticError::StreamOwned { space: 0 },
        "a client's device is not also a static one"
    );
    static TWICE: [StaticSpace; 2] = [
        SPACES[0],
        StaticSpace {
            stream_id: StreamId(0x20),
            domain_id: 8,
            ..SPACES[0]
        },
    ];
    assert_eq!(
        refused(&TWICE, MockHw::new(), 16),
        StaticError::StreamOwned { space: 1 }
    );
    static SAME_DOMAIN: [StaticSpace; 2] = [
        SPACES[0],
        StaticSpace {
            stream_id: StreamId(0x28),
            ..SPACES[0]
        },
    ];
    assert_eq!(
        refused(&SAME_DOMAIN, MockHw::new(), 16),
        StaticError::DomainIdTwice { space: 1 }
    );
    static OVERLAP: [IoMap; 2] = [
        IOMAPS[0],
        IoMap {
            iova: 0x5f00_f000,
            ..IOMAPS[1]
        },
    ];
    static OVERLAPPING: [StaticSpace; 2] = [
        StaticSpace {
            stream_id: StreamId(0x28),
            domain_id: 9,
            ..SPACES[0]
        },
        StaticSpace {
            iomaps: &OVERLAP,
            ..SPACES[0]
        },
    ];
    assert_eq!(
        refused(&OVERLAPPING, MockHw::new(), 16),
        StaticError::BadIoMap { space: 1, iomap: 1 },
        "space 0 was built, then taken down again"
    );
    static BEYOND: [IoMap; 1] = [IoMap {
        iova: (1 << 48) - 0x1000,
        size: 0x2000,
        ..IOMAPS[0]
    }];
    static OUTSIDE: [StaticSpace; 1] = [StaticSpace {
        iomaps: &BEYOND,
        ..SPACES[0]
    }];
    assert_eq!(
        refused(&OUTSIDE, MockHw::new(), 16),
        StaticError::BadIoMap { space: 0, iomap: 0 }
    );
    static NO_PERMS: [IoMap; 1] = [IoMap {
        perms: Perms::NONE,
        ..IOMAPS[0]
    }];
    static NONE: [StaticSpace; 1] = [StaticSpace {
        iomaps: &NO_PERMS,
        ..SPACES[0]
    }];
    assert_eq!(
        refused(&NONE, MockHw::new(), 16),
        StaticError::BadIoMap { space: 0, iomap: 0 }
    );
    let mut small = MockHw::new();
    small.table_pages = 16 + TABLES - 1;
    assert_eq!(
        refused(&SPACES, small, 16),
        StaticError::TablePagesOvercommitted,
        "the clients' table pages are promised first"
    );
    let mut few = MockHw::new();
    few.max_domains = common::DEFAULT_QUOTA.hwpts;
    assert_eq!(refused(&SPACES, few, 16), StaticError::DomainsOvercommitted);
}

#[test]
fn a_space_needing_more_tables_than_it_was_given_is_undone() {
    static SHORT: [StaticSpace; 1] = [StaticSpace {
        table_pages: TABLES - 1,
        ..SPACES[0]
    }];
    let mut r = rig(PtHw::new(64), 16);
    assert_eq!(
        r.server.establish(&SHORT),
        Err(StaticError::Hardware {
            space: 0,
            errno: Errno::ENOMEM
        })
    );
    let hw = r.server.hardware();
    assert_eq!(hw.live_domains(), 0);
    assert_eq!(hw.owned_tables(ClientId(2)), 0, "every table page back");
    assert_eq!(hw.dma(StreamId(0x20), 0x5f00_0000), None);
    // And the right count is exactly enough.
    let mut r = rig(PtHw::new(64), 16);
    r.server.establish(&SPACES).unwrap();
    assert_eq!(r.server.hardware().owned_tables(ClientId(2)), TABLES);
}

#[test]
fn spaces_are_established_once() {
    let mut r = rig(MockHw::new(), 16);
    r.server.establish(&SPACES).unwrap();
    assert_eq!(r.server.establish(&SPACES), Err(StaticError::TooMany));
    r.check().unwrap();
}
