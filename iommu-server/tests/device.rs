//! Devices and hardware page tables through the byte-level path, against
//! the recording mock IOMMU.

mod common;

use common::MockHw;
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{Errno, Op};
use iommu_types::config::{ClientConfig, DeviceConfig, Perms, Quota, Region};
use iommu_types::StreamId;
use iopt::IovaRange;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use common::PAGE_VA;
const K4: u64 = 0x1000;
const MSI: IovaRange = IovaRange::new(0x800_0000, 0x80f_ffff);
const MASK_40: u64 = (1 << 40) - 1;

static REGIONS_A: [Region; 1] = [Region {
    vaddr: 0x10_0000,
    size: 0x10_0000,
    paddr: 0x8000_0000,
    perms: Perms::RW,
}];
static REGIONS_B: [Region; 1] = [Region {
    vaddr: 0x10_0000,
    size: 0x10_0000,
    paddr: 0x9000_0000,
    perms: Perms::RW,
}];
static MSI_WINDOW: [IovaRange; 1] = [MSI];
static DEVICES_A: [DeviceConfig; 2] = [
    DeviceConfig {
        name: "edu0",
        stream_id: StreamId(0x8),
        dma_mask: MASK_40,
        reserved: &MSI_WINDOW,
    },
    DeviceConfig {
        name: "edu1",
        stream_id: StreamId(0x10),
        dma_mask: u64::MAX,
        reserved: &[],
    },
];
static DEVICES_B: [DeviceConfig; 1] = [DeviceConfig {
    name: "edu2",
    stream_id: StreamId(0x18),
    dma_mask: u64::MAX,
    reserved: &[],
}];

struct Sys {
    rig: common::Rig,
}

fn configs(objects: usize) -> [ClientConfig; 2] {
    let quota = Quota {
        objects,
        ioases: 4,
        mapped_pages: 4096,
        table_pages: 64,
        hwpts: 8,
        mappings: 100,
    };
    [
        ClientConfig {
            name: "a",
            command_page_vaddr: PAGE_VA,
            regions: &REGIONS_A,
            devices: &DEVICES_A,
            quota,
            manager: false,
        },
        ClientConfig {
            name: "b",
            command_page_vaddr: PAGE_VA,
            regions: &REGIONS_B,
            devices: &DEVICES_B,
            quota,
            manager: false,
        },
    ]
}

impl Sys {
    fn build(objects: usize, hw: MockHw) -> Sys {
        Sys {
            rig: common::Rig::new(hw, &configs(objects)),
        }
    }

    fn with_quota(objects: usize) -> Sys {
        Sys::build(objects, MockHw::new())
    }

    fn new() -> Sys {
        Sys::with_quota(16)
    }

    fn hw(&self) -> &MockHw {
        self.rig.server.hardware()
    }

    fn call<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        client: usize,
        op: Op,
        req: &mut T,
        mr1: u64,
    ) -> Result<(), Errno> {
        let size = std::mem::size_of::<T>() as u64;
        self.rig.call_with(client, op, req, size, mr1).map(|_| ())
    }

    fn alloc(&mut self, client: usize) -> u32 {
        self.rig.alloc(client).unwrap()
    }

    fn map(
        &mut self,
        client: usize,
        ioas: u32,
        va: u64,
        len: u64,
        fixed: Option<u64>,
    ) -> Result<u64, Errno> {
        self.rig.map(client, ioas, va, len, fixed)
    }

    fn bind(&mut self, client: usize, index: u64) -> Result<u32, Errno> {
        self.rig.bind(client, index)
    }

    fn attach(&mut self, client: usize, dev: u32, pt: u32) -> Result<u32, Errno> {
        self.rig.attach(client, dev, pt)
    }

    fn detach(&mut self, client: usize, dev: u32) -> Result<(), Errno> {
        let mut cmd = vfio_device_detach_iommufd_pt {
            argsz: 12,
            flags: 0,
            pasid: 0,
        };
        self.call(
            client,
            Op::VfioDeviceDetachIommufdPt,
            &mut cmd,
            u64::from(dev),
        )
    }

    fn destroy(&mut self, client: usize, id: u32) -> Result<(), Errno> {
        self.call(client, Op::Destroy, &mut iommu_destroy { size: 8, id }, 0)
    }

    fn ranges(&mut self, client: usize, ioas: u32) -> Vec<(u64, u64)> {
        let mut cmd = iommu_ioas_iova_ranges {
            size: 32,
            ioas_id: ioas,
            num_iovas: 8,
            reserved: 0,
            allowed_iovas: PAGE_VA + 2048,
            out_iova_alignment: 0,
        };
        self.call(client, Op::IoasIovaRanges, &mut cmd, 0).unwrap();
        (0..cmd.num_iovas as usize)
            .map(|i| {
                let r =
                    iommu_iova_range::read_from_prefix(&self.rig.pages[client][2048 + 16 * i..])
                        .unwrap()
                        .0;
                (r.start, r.last)
            })
            .collect()
    }
}

#[test]
fn attached_device_dma_follows_the_ioas() {
    let mut s = Sys::new();
    let dev = s.bind(0, 0).unwrap();
    let ioas = s.alloc(0);
    let before = s.map(0, ioas, 0x10_0000, 4 * K4, None).unwrap();
    assert_eq!(
        s.hw().dma(StreamId(0x8), before),
        None,
        "not attached yet: abort"
    );
    let hwpt = s.attach(0, dev, ioas).unwrap();
    assert_ne!(hwpt, ioas, "the HWPT used comes back in pt_id");
    assert_eq!(
        s.hw().dma(StreamId(0x8), before + 0x10),
        Some(0x8000_0010),
        "existing mappings filled in"
    );
    let after = s.map(0, ioas, 0x10_8000, K4, None).unwrap();
    assert_eq!(
        s.hw().dma(StreamId(0x8), after),
        Some(0x8000_8000),
        "later maps mirrored"
    );
    s.detach(0, dev).unwrap();
    assert_eq!(s.hw().dma(StreamId(0x8), before), None, "quarantined");
    assert_eq!(
        s.hw().live_domains(),
        0,
        "the automatic HWPT went with its last device"
    );
}

#[test]
fn devices_on_one_ioas_share_its_automatic_hwpt() {
    let mut s = Sys::new();
    let (d0, d1) = (s.bind(0, 0).unwrap(), s.bind(0, 1).unwrap());
    let ioas = s.alloc(0);
    let h0 = s.attach(0, d0, ioas).unwrap();
    let h1 = s.attach(0, d1, ioas).unwrap();
    assert_eq!(h0, h1);
    assert_eq!(s.hw().live_domains(), 1);
    assert_eq!(s.destroy(0, h0), Err(Errno::EBUSY), "HWPT with devices");
    assert_eq!(s.destroy(0, ioas), Err(Errno::EBUSY), "IOAS with a HWPT");
    assert_eq!(s.destroy(0, d0), Err(Errno::EBUSY), "attached device");
    s.detach(0, d0).unwrap();
    assert_eq!(s.hw().live_domains(), 1, "still used by the second device");
    s.detach(0, d1).unwrap();
    assert_eq!(s.hw().live_domains(), 0);
    assert_eq!(
        s.hw().log,
        ["attach 0x8 0", "attach 0x10 0", "detach 0x8", "detach 0x10"]
    );
    s.destroy(0, ioas).unwrap();
    s.destroy(0, d0).unwrap();
    assert_eq!(
        s.bind(0, 0).map(|id| id != d0),
        Ok(true),
        "rebinding gives a fresh ID"
    );
}

#[test]
fn device_windows_narrow_the_ioas_while_attached() {
    let mut s = Sys::new();
    let dev = s.bind(0, 0).unwrap();
    let ioas = s.alloc(0);
    assert_eq!(s.ranges(0, ioas), [(0, u64::MAX)]);
    s.attach(0, dev, ioas).unwrap();
    // The domain's own aperture (48 bits) lies above the DMA mask anyway.
    assert_eq!(
        s.ranges(0, ioas),
        [(0, MSI.start - 1), (MSI.last + 1, MASK_40)]
    );
    assert_eq!(
        s.map(0, ioas, 0x10_0000, K4, Some(MSI.start)),
        Err(Errno::EINVAL),
        "reserved for the doorbell"
    );
    s.detach(0, dev).unwrap();
    assert_eq!(s.ranges(0, ioas), [(0, u64::MAX)]);
}

#[test]
fn a_colliding_attach_changes_nothing() {
    let mut s = Sys::new();
    let dev = s.bind(0, 0).unwrap();
    let ioas = s.alloc(0);
    s.map(0, ioas, 0x10_0000, K4, Some(MSI.start)).unwrap();
    let objects = s.rig.server.object_count(common::id(0));
    assert_eq!(s.attach(0, dev, ioas), Err(Errno::EADDRINUSE));
    assert_eq!(
        s.rig.server.object_count(common::id(0)),
        objects,
        "no HWPT left behind"
    );
    assert_eq!(s.hw().live_domains(), 0);
    assert_eq!(s.hw().dma(StreamId(0x8), MSI.start), None);
    assert_eq!(
        s.ranges(0, ioas),
        [(0, u64::MAX)],
        "no window left reserved"
    );
}

#[test]
fn a_hardware_failure_during_attach_unwinds() {
    let mut s = Sys::build(
        16,
        MockHw {
            fail_attach: true,
            ..MockHw::new()
        },
    );
    let dev = s.bind(0, 0).unwrap();
    let ioas = s.alloc(0);
    let objects = s.rig.server.object_count(common::id(0));
    assert_eq!(s.attach(0, dev, ioas), Err(Errno::ENOMEM));
    assert_eq!(s.rig.server.object_count(common::id(0)), objects);
    assert_eq!(s.hw().live_domains(), 0);
    assert_eq!(s.ranges(0, ioas), [(0, u64::MAX)]);
}

#[test]
fn binding_names_only_the_callers_own_devices() {
    let mut s = Sys::new();
    assert_eq!(s.bind(0, 2), Err(Errno::ENODEV));
    assert_eq!(
        s.bind(1, 1),
        Err(Errno::ENODEV),
        "B has one device; A's second is not B's"
    );
    let a = s.bind(0, 0).unwrap();
    assert_eq!(s.bind(0, 0), Err(Errno::EINVAL), "bound twice");
    let b = s.bind(1, 0).unwrap();
    let ioas_b = s.alloc(1);
    s.attach(1, b, ioas_b).unwrap();
    assert!(
        s.hw()
            .streams
            .get(&StreamId(0x18))
            .copied()
            .flatten()
            .is_some(),
        "B's own stream"
    );
    // A's device ID means nothing in B's table beyond what B created.
    assert_eq!(s.attach(1, a + 0x1000, ioas_b), Err(Errno::ENOENT));
    assert_eq!(s.detach(1, a + 0x1000), Err(Errno::ENOENT));
}

#[test]
fn explicit_hwpts_are_never_reused_by_attach() {
    let mut s = Sys::new();
    let (d0, d1) = (s.bind(0, 0).unwrap(), s.bind(0, 1).unwrap());
    let ioas = s.alloc(0);
    let mut cmd = iommu_hwpt_alloc {
        size: 48,
        flags: 0,
        dev_id: d0,
        pt_id: ioas,
        out_hwpt_id: 0,
        reserved: 0,
        data_type: 0,
        data_len: 0,
        data_uptr: 0,
        fault_id: 0,
        reserved2: 0,
    };
    s.call(0, Op::HwptAlloc, &mut cmd, 0).unwrap();
    let explicit = cmd.out_hwpt_id;
    assert_eq!(s.attach(0, d0, explicit), Ok(explicit));
    let auto = s.attach(0, d1, ioas).unwrap();
    assert_ne!(auto, explicit);
    assert_eq!(s.hw().live_domains(), 2);
    s.detach(0, d0).unwrap();
    assert_eq!(
        s.hw().live_domains(),
        2,
        "explicit HWPT outlives its devices"
    );
    s.destroy(0, explicit).unwrap();
    assert_eq!(s.hw().live_domains(), 1);
    let mut nested = iommu_hwpt_alloc {
        flags: IOMMU_HWPT_ALLOC_NEST_PARENT,
        ..cmd
    };
    assert_eq!(
        s.call(0, Op::HwptAlloc, &mut nested, 0),
        Err(Errno::EOPNOTSUPP)
    );
    let mut no_dev = iommu_hwpt_alloc {
        dev_id: 0x7777,
        ..cmd
    };
    assert_eq!(s.call(0, Op::HwptAlloc, &mut no_dev, 0), Err(Errno::ENOENT));
}

#[test]
fn hw_info_reports_the_smmu_id_registers() {
    let mut s = Sys::new();
    let dev = s.bind(0, 0).unwrap();
    let mut cmd = iommu_hw_info {
        size: 40,
        flags: 0,
        dev_id: dev,
        data_len: 64,
        data_uptr: PAGE_VA + 1024,
        out_data_type: 0,
        out_max_pasid_log2: 0,
        reserved: [0; 3],
        out_capabilities: 7,
    };
    s.rig.pages[0][1024..1088].fill(0xaa);
    s.call(0, Op::GetHwInfo, &mut cmd, 0).unwrap();
    assert_eq!(
        (cmd.data_len, cmd.out_data_type, cmd.out_capabilities),
        (40, IOMMU_HW_INFO_TYPE_ARM_SMMUV3, 0)
    );
    let info = iommu_hw_info_arm_smmuv3::read_from_prefix(&s.rig.pages[0][1024..])
        .unwrap()
        .0;
    assert_eq!(info.idr[0], 0x0d40_101a);
    assert_eq!(info.aidr, 1);
    assert!(
        s.rig.pages[0][1064..1088].iter().all(|&b| b == 0),
        "the rest of the buffer zeroed"
    );
    let mut outside = iommu_hw_info {
        data_uptr: 0x10_0000,
        data_len: 40,
        ..cmd
    };
    assert_eq!(
        s.call(0, Op::GetHwInfo, &mut outside, 0),
        Err(Errno::EFAULT)
    );
    let mut unbound = iommu_hw_info {
        dev_id: 0x5555,
        ..cmd
    };
    assert_eq!(
        s.call(0, Op::GetHwInfo, &mut unbound, 0),
        Err(Errno::ENOENT)
    );
}

#[test]
fn object_quota_stops_an_automatic_hwpt_cleanly() {
    let mut s = Sys::with_quota(2);
    let dev = s.bind(0, 0).unwrap();
    let ioas = s.alloc(0);
    assert_eq!(
        s.attach(0, dev, ioas),
        Err(Errno::ENOMEM),
        "no slot for the HWPT"
    );
    assert_eq!(s.rig.server.object_count(common::id(0)), 2);
    assert_eq!(s.hw().live_domains(), 0);
}

#[test]
fn linux_errnos_for_device_corner_cases() {
    let mut s = Sys::new();
    let dev = s.bind(0, 0).unwrap();
    let ioas = s.alloc(0);
    assert_eq!(
        s.detach(0, dev),
        Ok(()),
        "detaching what is not attached succeeds"
    );
    s.attach(0, dev, ioas).unwrap();
    assert_eq!(
        s.attach(0, dev, ioas),
        Err(Errno::EBUSY),
        "no replace: detach first"
    );
    // An ID naming another kind of object is ENOENT to IOAS operations.
    assert_eq!(s.map(0, dev, 0x10_0000, K4, None), Err(Errno::ENOENT));
    let mut cmd = iommu_hwpt_alloc {
        size: 48,
        flags: 0,
        dev_id: dev,
        pt_id: 0x7777,
        out_hwpt_id: 0,
        reserved: 0,
        data_type: 0,
        data_len: 0,
        data_uptr: 0,
        fault_id: 0,
        reserved2: 0,
    };
    assert_eq!(
        s.call(0, Op::HwptAlloc, &mut cmd, 0),
        Err(Errno::EINVAL),
        "pt_id names nothing"
    );
}

#[test]
fn too_many_device_windows_are_refused_at_configuration() {
    static MANY: [IovaRange; 9] = [IovaRange::new(0x1000, 0x1fff); 9];
    static DEVS: [DeviceConfig; 1] = [DeviceConfig {
        name: "d",
        stream_id: StreamId(0x40),
        dma_mask: u64::MAX,
        reserved: &MANY,
    }];
    let quota = Quota {
        objects: 4,
        ioases: 4,
        mapped_pages: 16,
        table_pages: 8,
        hwpts: 8,
        mappings: 4,
    };
    let config = ClientConfig {
        name: "c",
        command_page_vaddr: PAGE_VA,
        regions: &REGIONS_A,
        devices: &DEVS,
        quota,
        manager: false,
    };
    let r = common::Rig::try_new(MockHw::new(), &[config], 4);
    let err = r.expect_err("refused");
    assert_eq!(
        err,
        iommu_server::ConfigError::BadDeviceWindows {
            client: common::id(0),
            device: 0
        }
    );
    // What the server PD logs before it stops.
    assert_eq!(err.client(), Some(common::id(0)));
    assert_eq!(
        err.to_string(),
        "client 0: device 0's reserved windows are too many or inverted"
    );
}

#[test]
fn overcommitted_mapping_quotas_are_refused() {
    let quota = Quota {
        objects: 4,
        ioases: 4,
        mapped_pages: 16,
        table_pages: 8,
        hwpts: 8,
        mappings: 3,
    };
    let config = ClientConfig {
        name: "c",
        command_page_vaddr: PAGE_VA,
        regions: &REGIONS_A,
        devices: &[],
        quota,
        manager: false,
    };
    // 3 + 3 mappings promised, 5 nodes to keep the promise with.
    let r = common::Rig::try_new(MockHw::new(), &[config, config], 5);
    assert_eq!(r.err(), Some(iommu_server::ConfigError::PoolsOvercommitted));
}
