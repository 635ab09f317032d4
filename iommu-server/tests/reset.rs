//! Revocation: a manager resets a client (or a client closes itself):
//! streams are quarantined before anything is released, and every pool
//! entry and quota comes back.

mod common;

use common::{client, device, MockHw, Rig, PAGE_VA};
use iommu_proto::{Errno, Op};
use iommu_server::Fault;
use iommu_types::config::{ClientConfig, DeviceConfig, Perms, Quota, Region};
use iommu_types::ClientId;
use iommu_types::StreamId;

static REGIONS: [Region; 1] = [Region {
    vaddr: 0x10_0000,
    size: 0x10_0000,
    paddr: 0x8000_0000,
    perms: Perms::RW,
}];
static DEV_A: [DeviceConfig; 1] = [device("a0", 0x8)];

fn rig() -> Rig {
    let client = |name| client(name).regions(&REGIONS).objects(8).mapped_pages(256);
    Rig::new(
        MockHw::new(),
        &[
            client("driver").devices(&DEV_A).build(),
            client("manager").manager(true).build(),
        ],
    )
}

/// A client with a bound, attached device, mappings in two IOASes and a
/// queued fault.
fn busy(r: &mut Rig) {
    let dev = r.bind(0, 0).unwrap();
    let ids: Vec<u32> = (0..2).map(|_| r.alloc(0).unwrap()).collect();
    for &id in &ids {
        r.map(0, id, 0x10_0000, 0x8000, None).unwrap();
    }
    r.attach(0, dev, ids[0]).unwrap();
    r.server.report_fault(Fault {
        stream: StreamId(0x8),
        kind: 0x10,
        iova: Some(0x1000),
        access: 2,
    });
}

fn reset(r: &mut Rig, caller: usize, target: u64) -> Result<u64, Errno> {
    let reply = r.server.handle(
        common::id(caller),
        Op::ResetClient.label(),
        [target, 0],
        &mut r.pages[caller],
    );
    reply.errno().map_or(Ok(reply.mr0), Err)
}

fn assert_clean(r: &Rig) {
    assert_eq!(r.server.object_count(common::id(0)), 0);
    assert_eq!(
        r.server.region_users(common::id(0), 0),
        0,
        "no region in use"
    );
    assert_eq!(r.server.faults_pending(common::id(0)), 0);
    assert_eq!(
        r.server.store().account(ClientId(0)).unwrap().used,
        0,
        "quota back"
    );
    assert_eq!(r.server.store().areas_free(), 256, "every area node back");
    assert_eq!(r.server.store().pages_free(), 256, "every backing back");
    assert_eq!(r.server.hardware().live_domains(), 0, "every domain freed");
    assert_eq!(
        r.server.hardware().dma(StreamId(0x8), 0x8000),
        None,
        "the device reaches nothing"
    );
}

#[test]
fn a_manager_reset_quarantines_then_returns_everything() {
    let mut r = rig();
    busy(&mut r);
    assert!(r.server.hardware().dma(StreamId(0x8), 0x8000).is_some());
    assert!(r.server.region_users(common::id(0), 0) > 0);
    reset(&mut r, 1, 0).unwrap();
    assert_clean(&r);
    // Quarantine happened before the domain was emptied and freed (the mock
    // refuses to free a domain a stream still uses).
    assert_eq!(
        r.server.hardware().log.last().map(String::as_str),
        Some("detach 0x8")
    );
    // The client starts over with fresh IDs.
    busy(&mut r);
    assert!(r.server.hardware().dma(StreamId(0x8), 0x8000).is_some());
}

#[test]
fn a_client_may_close_itself_but_not_reset_others() {
    let mut r = rig();
    busy(&mut r);
    assert_eq!(reset(&mut r, 0, 1), Err(Errno::EPERM), "not a manager");
    assert_eq!(reset(&mut r, 1, 7), Err(Errno::EINVAL), "no such client");
    assert!(
        r.server.hardware().dma(StreamId(0x8), 0x8000).is_some(),
        "refusals change nothing"
    );
    reset(&mut r, 0, 0).unwrap();
    assert_clean(&r);
}

#[test]
fn a_reset_that_cannot_stop_a_stream_stays_consistent() {
    static TWO: [DeviceConfig; 2] = [
        DeviceConfig {
            name: "a0",
            stream_id: StreamId(0x8),
            dma_mask: u64::MAX,
            reserved: &[],
        },
        DeviceConfig {
            name: "a1",
            stream_id: StreamId(0x10),
            dma_mask: u64::MAX,
            reserved: &[],
        },
    ];
    let quota = Quota {
        objects: 8,
        ioases: 4,
        mapped_pages: 256,
        table_pages: 64,
        hwpts: 8,
        mappings: 100,
    };
    let config = ClientConfig {
        name: "c",
        command_page_vaddr: PAGE_VA,
        regions: &REGIONS,
        devices: &TWO,
        quota,
        manager: false,
    };
    let mut r = Rig::new(
        MockHw {
            stuck: vec![StreamId(0x10)],
            ..MockHw::new()
        },
        &[config],
    );
    let (d0, d1) = (r.bind(0, 0).unwrap(), r.bind(0, 1).unwrap());
    let ioas = r.alloc(0).unwrap();
    r.map(0, ioas, 0x10_0000, 0x2000, None).unwrap();
    r.attach(0, d0, ioas).unwrap();
    r.attach(0, d1, ioas).unwrap();
    assert_eq!(reset(&mut r, 0, 0), Err(Errno::EBUSY));
    let hw = r.server.hardware();
    r.server
        .check(|s| hw.streams.get(&s).copied().flatten())
        .unwrap();
    assert_eq!(
        hw.streams.get(&StreamId(0x8)).copied().flatten(),
        None,
        "the stoppable stream stopped"
    );
    assert!(
        hw.streams.get(&StreamId(0x10)).copied().flatten().is_some(),
        "the stuck one keeps its memory"
    );
    assert!(
        r.server.region_users(common::id(0), 0) > 0,
        "nothing a device can reach was released"
    );
}

fn quarantine(r: &mut Rig, caller: usize, target: u64, hold: u64) -> Result<u64, Errno> {
    let reply = r.server.handle(
        common::id(caller),
        Op::Quarantine.label(),
        [target, hold],
        &mut r.pages[caller],
    );
    reply.errno().map_or(Ok(reply.mr0), Err)
}

/// A manager holds a driver's devices in quarantine: the driver is reset
/// (its stream aborts, its objects go) and cannot bind until released;
/// only a manager may hold or release.
#[test]
fn a_manager_holds_a_clients_devices_until_it_releases_them() {
    let mut r = rig();
    busy(&mut r);
    assert_eq!(
        quarantine(&mut r, 0, 0, 1),
        Err(Errno::EPERM),
        "not a manager"
    );
    assert_eq!(
        quarantine(&mut r, 1, 7, 1),
        Err(Errno::EINVAL),
        "no such client"
    );
    assert_eq!(
        quarantine(&mut r, 1, 0, 2),
        Err(Errno::EINVAL),
        "hold is 0 or 1"
    );
    quarantine(&mut r, 1, 0, 1).unwrap();
    assert_clean(&r);
    assert_eq!(
        r.server.hardware().attached(StreamId(0x8)),
        None,
        "aborting"
    );
    assert_eq!(r.bind(0, 0), Err(Errno::EPERM), "held");
    // A reset does not end the hold. An IOAS may be made, but nothing
    // mapped until the release (tests/quarantine.rs has every refusal).
    reset(&mut r, 0, 0).unwrap();
    assert_eq!(r.bind(0, 0), Err(Errno::EPERM));
    let ioas = r.alloc(0).unwrap();
    assert_eq!(r.map(0, ioas, 0x10_0000, 0x1000, None), Err(Errno::EPERM));
    assert_eq!(
        quarantine(&mut r, 0, 0, 0),
        Err(Errno::EPERM),
        "no self-release"
    );
    quarantine(&mut r, 1, 0, 0).unwrap();
    r.map(0, ioas, 0x10_0000, 0x1000, None).unwrap();
    let dev = r.bind(0, 0).unwrap();
    r.attach(0, dev, ioas).unwrap();
    assert!(r.check().is_ok());
}

/// A hold whose reset meets a stream that will not stop is EBUSY, and the
/// hold stands: nothing binds while the manager retries.
#[test]
fn a_hold_stands_when_its_reset_is_ebusy() {
    let client = |name| client(name).regions(&REGIONS).objects(8).mapped_pages(256);
    let mut r = Rig::new(
        MockHw {
            stuck: vec![StreamId(0x8)],
            ..MockHw::new()
        },
        &[
            client("driver").devices(&DEV_A).build(),
            client("manager").manager(true).build(),
        ],
    );
    busy(&mut r);
    assert_eq!(quarantine(&mut r, 1, 0, 1), Err(Errno::EBUSY));
    assert_eq!(
        r.bind(0, 0),
        Err(Errno::EPERM),
        "held although the reset could not finish"
    );
    assert!(r.check().is_ok());
}
