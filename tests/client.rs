//! The client library (pd-clients/iommu-client) against the server core,
//! through the path the PDs use: the request in a shared command page that
//! `Server::serve` reads and writes. The system is this test's own (two
//! drivers with a device each and a manager), not the shipped example's.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{client, MockHw, Rig};
use iommu_client::{Access, DmaBuffer, Iommu};
use iommu_proto::fault::{IOMMU_FAULT_ACCESS_WRITE, IOMMU_FAULT_KIND_F_TRANSLATION};
use iommu_proto::Errno;
use iommu_server::Fault;
use iommu_testkit::{HeapMemory, RigTransport};
use iommu_types::config::{ClientConfig, DeviceConfig, Perms, Quota, Region};
use iommu_types::{IovaRange, StreamId};

const EDU_A: usize = 0;
const EDU_B: usize = 1;
const MANAGER: usize = 2;

/// Each driver's DMA buffer, where the edu driver PDs keep theirs.
const BUFFER_VA: u64 = 0x3000_0000;
const fn buffer_region(paddr: u64) -> [Region; 1] {
    [Region {
        vaddr: BUFFER_VA,
        size: 0x10000,
        paddr,
        perms: Perms::RW,
    }]
}
static REGIONS: [[Region; 1]; 2] = [buffer_region(0x6000_0000), buffer_region(0x6100_0000)];
/// The GIC's MSI frame and the PCIe windows, never DMA addresses.
static WINDOWS: [IovaRange; 2] = [
    IovaRange::new(0x0800_0000, 0x0803_ffff),
    IovaRange::new(0x1000_0000, 0x3efe_ffff),
];
const fn edu(name: &'static str, stream: u32) -> [DeviceConfig; 1] {
    [DeviceConfig {
        name,
        stream_id: StreamId(stream),
        dma_mask: (1 << 40) - 1,
        reserved: &WINDOWS,
    }]
}
static DEVICES: [[DeviceConfig; 1]; 2] = [edu("edu_a", 0x8), edu("edu_b", 0x10)];

fn configs() -> [ClientConfig; 3] {
    let quota = Quota {
        objects: 16,
        ioases: 4,
        mapped_pages: 64,
        table_pages: 16,
        hwpts: 4,
        mappings: 16,
    };
    let driver = |i: usize, name| {
        client(name)
            .regions(&REGIONS[i])
            .devices(&DEVICES[i])
            .quota(quota)
            .build()
    };
    let manager = Quota {
        objects: 4,
        ioases: 1,
        mapped_pages: 0,
        table_pages: 0,
        hwpts: 0,
        mappings: 0,
    };
    [
        driver(EDU_A, "edu_a"),
        driver(EDU_B, "edu_b"),
        client("manager").quota(manager).manager(true).build(),
    ]
}
type Shared = Rc<RefCell<Rig<MockHw>>>;

fn system() -> (Shared, Vec<Iommu<RigTransport>>) {
    let server = Rig::new(MockHw::new(), &configs());
    let server = Rc::new(RefCell::new(server));
    let clients = (0..configs().len())
        .map(|client| Iommu::new(RigTransport::new(&server, client)))
        .collect();
    (server, clients)
}

fn buffer(client: usize) -> DmaBuffer<HeapMemory> {
    let r = &REGIONS[client][0];
    DmaBuffer::new(r.vaddr, r.size, HeapMemory::zeroed(r.size as usize))
}

fn region_paddr(client: usize) -> u64 {
    REGIONS[client][0].paddr
}

#[test]
fn a_driver_maps_its_buffer_for_its_device() {
    let (server, mut c) = system();
    let buf = buffer(EDU_A);
    let a = &mut c[EDU_A];
    let dev = a.bind(0).unwrap();
    let ioas = a.ioas_alloc().unwrap();
    let hwpt = a.attach(&dev, &ioas).unwrap();
    assert_ne!(hwpt, 0);
    let m = a
        .map(&ioas, &buf, 0x1000, 0x2000, Access::ReadWrite, None)
        .unwrap();
    let stream = DEVICES[EDU_A][0].stream_id;
    {
        let s = server.borrow();
        let s = &s.server;
        let hw = s.hardware();
        assert_eq!(hw.dma(stream, m.iova()), Some(region_paddr(EDU_A) + 0x1000));
        assert_eq!(
            hw.dma(stream, m.iova() + 0x1fff),
            Some(region_paddr(EDU_A) + 0x2fff)
        );
        // The device's reserved windows are never handed out.
        for w in DEVICES[EDU_A][0].reserved {
            assert!(m.iova() + m.len() - 1 < w.start || m.iova() > w.last);
        }
    }
    let iova = m.iova();
    a.unmap(m).unwrap();
    assert_eq!(server.borrow().server.hardware().dma(stream, iova), None);
    // Outside the buffer: refused by the library before any call.
    assert_eq!(
        a.map(&ioas, &buf, 0xf000, 0x2000, Access::Read, None)
            .unwrap_err(),
        Errno::EFAULT
    );
    assert_eq!(a.destroy_ioas(ioas).unwrap_err().0, Errno::EBUSY);
    a.detach(&dev).unwrap();
    assert_eq!(server.borrow().server.hardware().dma(stream, iova), None);
}

#[test]
fn fixed_iovas_and_read_only_mappings() {
    let (server, mut c) = system();
    let buf = buffer(EDU_A);
    let a = &mut c[EDU_A];
    let dev = a.bind(0).unwrap();
    let ioas = a.ioas_alloc().unwrap();
    a.attach(&dev, &ioas).unwrap();
    let m = a
        .map(&ioas, &buf, 0, 0x1000, Access::Read, Some(0x4000_0000))
        .unwrap();
    assert_eq!(m.iova(), 0x4000_0000);
    // Inside the PCI MMIO window: reserved for this device.
    assert_eq!(
        a.map(&ioas, &buf, 0, 0x1000, Access::Read, Some(0x1000_0000))
            .unwrap_err(),
        Errno::EINVAL
    );
    let hwpt = a.hwpt_alloc(&dev, &ioas).unwrap();
    // No replace: a device is detached before it moves.
    assert_eq!(a.attach_hwpt(&dev, &hwpt).unwrap_err(), Errno::EBUSY);
    a.detach(&dev).unwrap();
    a.attach_hwpt(&dev, &hwpt).unwrap();
    a.detach(&dev).unwrap();
    a.destroy_hwpt(hwpt).unwrap();
    a.unmap(m).unwrap();
    a.destroy_ioas(ioas).unwrap();
    a.unbind(dev).unwrap();
    assert_eq!(server.borrow().server.object_count(common::id(EDU_A)), 0);
}

#[test]
fn clients_cannot_reach_each_other() {
    let (_server, mut c) = system();
    let buf_a = buffer(EDU_A);
    let ioas_a = c[EDU_A].ioas_alloc().unwrap();
    let m = c[EDU_A]
        .map(&ioas_a, &buf_a, 0, 0x1000, Access::ReadWrite, None)
        .unwrap();
    // B names A's IOAS: nothing by that ID in B's table.
    let b = &mut c[EDU_B];
    let forged = b.ioas_alloc().unwrap();
    b.destroy_ioas(forged).unwrap();
    let buf_b = buffer(EDU_B);
    let stale = iommu_client::Ioas::from_raw_for_tests(ioas_a.id());
    assert_eq!(
        b.map(&stale, &buf_b, 0, 0x1000, Access::Read, None)
            .unwrap_err(),
        Errno::ENOENT
    );
    // B's configuration has one device; A's device is not B's to bind.
    assert_eq!(b.bind(1).unwrap_err(), Errno::ENODEV);
    // The manager has no DMA memory at all.
    let buf_m = DmaBuffer::new(BUFFER_VA, 0x1000, HeapMemory::zeroed(0x1000));
    let m_ioas = c[MANAGER].ioas_alloc().unwrap();
    assert_eq!(
        c[MANAGER]
            .map(&m_ioas, &buf_m, 0, 0x1000, Access::Read, None)
            .unwrap_err(),
        Errno::EFAULT
    );
    c[EDU_A].unmap(m).unwrap();
}

#[test]
fn faults_reach_their_driver_and_reset_is_for_the_manager() {
    let (server, mut c) = system();
    let buf = buffer(EDU_B);
    let dev = c[EDU_B].bind(0).unwrap();
    let ioas = c[EDU_B].ioas_alloc().unwrap();
    c[EDU_B].attach(&dev, &ioas).unwrap();
    let m = c[EDU_B]
        .map(&ioas, &buf, 0, 0x1000, Access::ReadWrite, None)
        .unwrap();
    let stream = DEVICES[EDU_B][0].stream_id;
    let to = server.borrow_mut().server.report_fault(Fault {
        stream,
        kind: IOMMU_FAULT_KIND_F_TRANSLATION,
        iova: Some(0xdead_0000),
        access: IOMMU_FAULT_ACCESS_WRITE,
    });
    assert_eq!(to, Some(common::id(EDU_B)));
    assert_eq!(c[EDU_A].read_fault().unwrap().fault, None);
    let read = c[EDU_B].read_fault().unwrap();
    let f = read.fault.unwrap();
    assert_eq!(
        (f.device, f.kind, f.iova, read.remaining, read.lost),
        (
            0,
            IOMMU_FAULT_KIND_F_TRANSLATION,
            Some(0xdead_0000),
            0,
            false
        )
    );
    // Only the manager resets others.
    assert_eq!(c[EDU_A].reset(EDU_B as u64).unwrap_err(), Errno::EPERM);
    c[MANAGER].reset(EDU_B as u64).unwrap();
    assert_eq!(
        server.borrow().server.hardware().dma(stream, m.iova()),
        None
    );
    assert_eq!(server.borrow().server.object_count(common::id(EDU_B)), 0);
    // The driver's handles are dead: its IDs are never valid again.
    assert_eq!(c[EDU_B].detach(&dev).unwrap_err(), Errno::ENOENT);
    assert_eq!(c[EDU_B].unmap(m).unwrap_err().0, Errno::ENOENT);
    assert_eq!(
        server.borrow().server.store().areas_free(),
        server.borrow().server.store().areas_capacity()
    );
}

/// Where the clients of this system see their command page.
const PAGE_VA: u64 = common::PAGE_VA;

#[test]
fn the_library_speaks_every_iommufd_op() {
    use iommu_proto::iommufd::*;
    let (server, mut c) = system();
    let buf = buffer(EDU_A);
    let a = &mut c[EDU_A];
    let dev = a.bind(0).unwrap();
    let src = a.ioas_alloc().unwrap();
    let dst = a.ioas_alloc().unwrap();

    // IOVA_RANGES before any device: the whole space, page aligned; with
    // the device attached, its reserved windows are holes.
    let mut ranges = [iommu_iova_range::default(); 8];
    let before = a.iova_ranges(PAGE_VA, &dst, &mut ranges).unwrap();
    assert_eq!((before.total, before.alignment), (1, 1));
    a.attach(&dev, &dst).unwrap();
    let after = a.iova_ranges(PAGE_VA, &dst, &mut ranges).unwrap();
    assert_eq!((after.total, after.alignment), (3, 4096), "{ranges:x?}");
    assert_eq!(
        ranges[0],
        iommu_iova_range {
            start: 0,
            last: 0x07ff_ffff
        }
    );
    assert_eq!(ranges[1].start, 0x0804_0000);
    assert_eq!(ranges[2].start, 0x3eff_0000);
    // No room: the number needed, nothing written.
    let none = a.iova_ranges(PAGE_VA, &dst, &mut ranges[..1]).unwrap();
    assert_eq!(none.total, 3);

    // ALLOW_IOVAS confines automatic IOVAs: COPY lands in the window.
    let window = iommu_iova_range {
        start: 0x4000_0000,
        last: 0x4000_ffff,
    };
    a.allow_iovas(PAGE_VA, &dst, &[window]).unwrap();
    let m = a
        .map(&src, &buf, 0, 0x2000, Access::ReadWrite, Some(0x9000))
        .unwrap();
    let copied = a
        .copy(&dst, &src, 0x9000, 0x2000, Access::ReadWrite, None)
        .unwrap();
    assert!((window.start..=window.last).contains(&copied));
    let stream = DEVICES[EDU_A][0].stream_id;
    assert_eq!(
        server
            .borrow()
            .server
            .hardware()
            .dma(stream, copied + 0x1000),
        Some(region_paddr(EDU_A) + 0x1000)
    );
    assert_eq!(
        a.copy(&dst, &src, 0x9000, 0x2000, Access::Read, Some(copied))
            .unwrap_err(),
        Errno::EEXIST
    );

    // OPTION: huge pages of an IOAS, read back as set.
    assert_eq!(a.option_get(IOMMU_OPTION_HUGE_PAGES, dst.id()).unwrap(), 1);
    a.option_set(IOMMU_OPTION_HUGE_PAGES, src.id(), 0).unwrap();
    assert_eq!(a.option_get(IOMMU_OPTION_HUGE_PAGES, src.id()).unwrap(), 0);

    // VFIO_IOAS: none until set (ENODEV, as Linux's compat lookup).
    assert_eq!(
        a.vfio_ioas(IOMMU_VFIO_IOAS_GET, 0).unwrap_err(),
        Errno::ENODEV
    );
    a.vfio_ioas(IOMMU_VFIO_IOAS_SET, dst.id()).unwrap();
    assert_eq!(a.vfio_ioas(IOMMU_VFIO_IOAS_GET, 0).unwrap(), dst.id());

    // GET_HW_INFO: the SMMUv3's registers, as an SMMUv3.
    let info = a.hw_info(PAGE_VA, &dev).unwrap();
    assert_eq!(info.data_type, IOMMU_HW_INFO_TYPE_ARM_SMMUV3);

    // UNMAP by range: the bytes unmapped, and the device loses them.
    assert_eq!(a.unmap_range(&dst, copied, 0x2000).unwrap(), 0x2000);
    assert_eq!(server.borrow().server.hardware().dma(stream, copied), None);
    a.unmap(m).unwrap();
}

#[test]
fn the_library_speaks_vfio_type1() {
    use iommu_proto::vfio::*;
    let (server, mut c) = system();
    let a = &mut c[EDU_A];
    assert_eq!(a.vfio_get_api_version().unwrap(), VFIO_API_VERSION);
    // No container until a device attaches through the compat path.
    assert_eq!(
        a.vfio_set_iommu(VFIO_TYPE1v2_IOMMU).unwrap_err(),
        Errno::ENODEV
    );
    let dev = a.bind(0).unwrap();
    a.attach_compat(&dev).unwrap();
    assert!(a.vfio_check_extension(VFIO_TYPE1v2_IOMMU).unwrap());
    assert!(!a.vfio_check_extension(VFIO_SPAPR_TCE_IOMMU).unwrap());
    a.vfio_set_iommu(VFIO_TYPE1v2_IOMMU).unwrap();

    // GET_INFO with room for the capability chain after the struct.
    let mut info = [0u8; 256];
    let head = a.vfio_iommu_get_info(&mut info).unwrap();
    assert_ne!(head.flags & VFIO_IOMMU_INFO_PGSIZES, 0);
    assert_ne!(head.iova_pgsizes & 0x1000, 0);
    assert_ne!(head.flags & VFIO_IOMMU_INFO_CAPS, 0);
    let cap = head.cap_offset as usize;
    assert!(cap >= core::mem::size_of::<vfio_iommu_type1_info>() && cap < info.len());

    // A buffer mapped at the IOVA of the caller's choosing, as a VMM maps
    // guest RAM at its guest-physical address.
    let flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    a.vfio_map_dma(BUFFER_VA, 0x4000_0000, 0x4000, flags)
        .unwrap();
    let stream = DEVICES[EDU_A][0].stream_id;
    assert_eq!(
        server.borrow().server.hardware().dma(stream, 0x4000_3000),
        Some(region_paddr(EDU_A) + 0x3000)
    );
    assert_eq!(a.vfio_unmap_dma(0x4000_0000, 0x4000, 0).unwrap(), 0x4000);
    assert_eq!(
        server.borrow().server.hardware().dma(stream, 0x4000_0000),
        None
    );
    assert_eq!(a.vfio_unmap_dma(0, 0, VFIO_DMA_UNMAP_FLAG_ALL).unwrap(), 0);
}

#[test]
fn the_manager_holds_releases_and_reads_reports() {
    let (_server, mut c) = system();
    c[EDU_B].bind(0).unwrap();
    // Only a manager may hold another client.
    assert_eq!(c[EDU_A].hold(EDU_B as u64).unwrap_err(), Errno::EPERM);
    c[MANAGER].hold(EDU_B as u64).unwrap();
    // The hold reset edu_b (its device unbound) and refuses a new bind.
    assert_eq!(c[EDU_B].bind(0).unwrap_err(), Errno::EPERM);
    let mut report = Vec::new();
    let len = c[MANAGER]
        .dump(PAGE_VA, EDU_B as u32, |piece| {
            report.extend_from_slice(piece)
        })
        .unwrap();
    let report = String::from_utf8(report).unwrap();
    assert_eq!(len as usize, report.len());
    assert!(
        report.starts_with("client 1 edu_b (held): objects 0/16"),
        "{report}"
    );
    c[MANAGER].release(EDU_B as u64).unwrap();
    c[EDU_B].bind(0).unwrap();
    // The server's own report.
    let mut whole = Vec::new();
    let total = c[MANAGER]
        .dump(PAGE_VA, iommu_proto::dump::IOMMU_DUMP_SERVER, |piece| {
            whole.extend_from_slice(piece)
        })
        .unwrap();
    assert_eq!(total as usize, whole.len());
    let whole = String::from_utf8(whole).unwrap();
    assert!(whole.starts_with("server: 3 clients;"), "{whole}");
    assert!(whole.contains("hardware: mock IOMMU"), "{whole}");
}

#[test]
fn fault_recording_resumes_only_for_a_device_the_client_has() {
    let (_server, mut c) = system();
    let a = &mut c[EDU_A];
    // Nothing stormed: a no-op; an index past the client's devices: none.
    a.resume_faults(0).unwrap();
    assert_eq!(a.resume_faults(1).unwrap_err(), Errno::ENODEV);
    let read = a.read_fault().unwrap();
    assert_eq!(
        (read.fault, read.silenced, read.storm_dropped),
        (None, 0, 0)
    );
}
