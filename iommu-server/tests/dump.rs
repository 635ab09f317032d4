//! DUMP: a manager reads the server's state as text, in pieces through
//! its command page; the report matches the server's state after a
//! scripted workload.

mod common;

use common::{client, device, id, region, MockHw, Rig, PAGE_VA};
use iommu_proto::dump::{iommu_dump, IOMMU_DUMP_SERVER};
use iommu_proto::{Errno, Op};
use iommu_server::Fault;
use iommu_types::config::{DeviceConfig, Region};
use iommu_types::StreamId;

static REGIONS: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8000_0000)];
static DEVICES: [DeviceConfig; 1] = [device("nic", 0x8)];

fn rig() -> Rig {
    Rig::new(
        MockHw::new(),
        &[
            client("driver").regions(&REGIONS).devices(&DEVICES).build(),
            client("boss").manager(true).build(),
        ],
    )
}

/// One DUMP call by `caller` for bytes [offset, offset + room) of the
/// report on `target`; returns the bytes and the report's length.
fn dump_piece(
    r: &mut Rig,
    caller: usize,
    target: u32,
    offset: u64,
    room: u32,
) -> Result<(Vec<u8>, u64), Errno> {
    const AT: usize = 64;
    let mut cmd = iommu_dump {
        size: 40,
        target,
        length: room,
        reserved: 0,
        offset,
        data_uptr: PAGE_VA + AT as u64,
        out_total: 0,
    };
    r.call(caller, Op::Dump, &mut cmd, 0)?;
    let bytes = r.pages[caller][AT..AT + cmd.length as usize].to_vec();
    Ok((bytes, cmd.out_total))
}

/// The whole report, read in pieces of `room` bytes.
fn dump(r: &mut Rig, target: u32, room: u32) -> String {
    let mut text = Vec::new();
    loop {
        let (piece, total) = dump_piece(r, 1, target, text.len() as u64, room).unwrap();
        text.extend_from_slice(&piece);
        if piece.is_empty() || text.len() as u64 >= total {
            assert_eq!(text.len() as u64, total);
            return String::from_utf8(text).unwrap();
        }
    }
}

#[test]
fn the_report_is_the_servers_state() {
    let mut r = rig();
    let ioas = r.alloc(0).unwrap();
    let a = r.map(0, ioas, 0x10_0000, 0x2000, None).unwrap();
    let b = r.map(0, ioas, 0x10_4000, 0x1000, Some(0x40_0000)).unwrap();
    let dev = r.bind(0, 0).unwrap();
    let hwpt = r.attach(0, dev, ioas).unwrap();
    r.server.report_fault(Fault {
        stream: StreamId(0x8),
        kind: 0x10,
        iova: Some(0x9000),
        access: 2,
    });
    let want = format!(
        "client 0 driver: objects 3/16, IOASes 1/4, HWPTs 1/8, pages 3/4096, mappings 2/100, faults 1 queued 0 dropped\n\
         \x20 IOAS {ioas}: alignment 4096, huge pages on, 2 areas, 1 HWPTs\n\
         \x20   {a:#x}-{:#x} rw\n\
         \x20   {b:#x}-{:#x} rw\n\
         \x20 device {dev}: nic, stream 0x8, attached to HWPT {hwpt}\n\
         \x20 HWPT {hwpt}: IOAS {ioas}, automatic, 1 devices\n",
        a + 0x1fff,
        b + 0xfff,
    );
    let got = dump(&mut r, 0, 4000);
    // Objects are listed in slot order: compare as a set of lines after
    // the header.
    let mut got_lines: Vec<&str> = got.lines().collect();
    let mut want_lines: Vec<&str> = want.lines().collect();
    assert_eq!(got_lines.remove(0), want_lines.remove(0));
    got_lines.sort_unstable();
    want_lines.sort_unstable();
    assert_eq!(got_lines, want_lines, "report:\n{got}");
    // Read a few bytes at a time, it is the same report.
    assert_eq!(dump(&mut r, 0, 7), got);
    // The server's side.
    let server = dump(&mut r, IOMMU_DUMP_SERVER, 4000);
    let pool = iommu_testkit::rig::POOL;
    assert_eq!(
        server,
        format!("server: 2 clients; areas 2/{pool}, backings 2/{pool}, IOASes 1/8\nhardware: mock IOMMU, domains 1\n")
    );
    // After a reset the client holds nothing.
    r.server.reset_client(id(0)).unwrap();
    assert_eq!(
        dump(&mut r, 0, 4000),
        "client 0 driver: objects 0/16, IOASes 0/4, HWPTs 0/8, pages 0/4096, mappings 0/100, faults 0 queued 0 dropped\n"
    );
}

#[test]
fn only_a_manager_dumps_and_only_what_is_there() {
    let mut r = rig();
    assert_eq!(dump_piece(&mut r, 0, 0, 0, 100).err(), Some(Errno::EPERM));
    assert_eq!(dump_piece(&mut r, 1, 2, 0, 100).err(), Some(Errno::EINVAL));
    // A buffer reaching past the command page is EFAULT.
    assert_eq!(dump_piece(&mut r, 1, 0, 0, 4096).err(), Some(Errno::EFAULT));
    // An offset past the end writes nothing and says how long it is.
    let (piece, total) = dump_piece(&mut r, 1, 0, 1 << 20, 100).unwrap();
    assert!(piece.is_empty() && total > 0);
}

/// The offset is a file position, judged as Linux's rw_verify_area judges
/// a read's: EINVAL once it, or its end, is past i64::MAX (loff_t is
/// signed); anywhere else past the report an empty read. Near U64_MAX
/// the end used to overflow.
#[test]
fn an_offset_past_any_file_position_is_einval() {
    let mut r = rig();
    let top = i64::MAX as u64;
    for offset in [u64::MAX, u64::MAX - 10, 1 << 63, top, top - 99] {
        assert_eq!(
            dump_piece(&mut r, 1, 0, offset, 100).err(),
            Some(Errno::EINVAL),
            "offset {offset:#x}"
        );
    }
    for target in [0, IOMMU_DUMP_SERVER] {
        let (piece, total) = dump_piece(&mut r, 1, target, top - 100, 100).unwrap();
        assert!(piece.is_empty() && total > 0);
        let (piece, _) = dump_piece(&mut r, 1, target, top, 0).unwrap();
        assert!(piece.is_empty());
    }
    // A refused read wrote nothing back: the struct is as it was sent.
    let mut cmd = iommu_dump {
        size: 40,
        target: 0,
        length: 100,
        reserved: 0,
        offset: u64::MAX,
        data_uptr: PAGE_VA + 64,
        out_total: 7,
    };
    assert_eq!(r.call(1, Op::Dump, &mut cmd, 0), Err(Errno::EINVAL));
    assert_eq!((cmd.length, cmd.out_total), (100, 7));
}

/// A VMM's client as the manager dumps it before resetting it: its device
/// joined the compat IOAS (made by that attach, with its HWPT) before
/// VFIO_SET_IOMMU, and guest RAM mapped with VFIO_IOMMU_MAP_DMA. The
/// report lists the IOAS, its area and the HWPT, not the device alone.
#[test]
fn a_vmms_compat_container_is_reported_whole() {
    use iommu_proto::vfio::*;
    let mut r = rig();
    let dev = r.bind(0, 0).unwrap();
    let hwpt = r.attach(0, dev, 0).unwrap();
    let reply = r.server.handle(
        id(0),
        Op::VfioSetIommu.label(),
        [VFIO_TYPE1v2_IOMMU, 0],
        &mut r.pages[0],
    );
    assert_eq!(reply.errno(), None);
    let mut map = vfio_iommu_type1_dma_map {
        argsz: 32,
        flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        vaddr: 0x10_0000,
        iova: 0x4000_0000,
        size: 0x10_0000,
    };
    r.call(0, Op::VfioIommuMapDma, &mut map, 0).unwrap();
    let got = dump(&mut r, 0, 512);
    let ioas = hwpt - 1;
    assert_eq!(
        got,
        format!(
            "client 0 driver: objects 3/16, IOASes 1/4, HWPTs 1/8, pages 256/4096, mappings 1/100, faults 0 queued 0 dropped\n\
             \x20 device {dev}: nic, stream 0x8, attached to HWPT {hwpt}\n\
             \x20 IOAS {ioas}: alignment 4096, huge pages on, 1 areas, 1 HWPTs\n\
             \x20   0x40000000-0x400fffff rw\n\
             \x20 HWPT {hwpt}: IOAS {ioas}, automatic, 1 devices\n"
        )
    );
}
