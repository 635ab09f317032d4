//! Failure injection in the spirit of Linux's iommufd_fail_nth: a scripted
//! workload runs again and again, the n-th allocation (a domain, or the
//! page-table work of a map) failing on run n, until a run completes with
//! nothing injected. Every request that fails must leave the server
//! exactly as it was, and at the end every pool entry must come back.

mod common;

use std::collections::BTreeMap;

use common::{client, device, region, MockHw, Rig};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{Errno, Op};
use iommu_types::config::{DeviceConfig, Region};
use iommu_types::ClientId;
use iommu_types::StreamId;
use iopt::DomainId;
use zerocopy::{FromBytes, Immutable, IntoBytes};

static REGIONS: [Region; 1] = [region(0x10_0000, 0x40_0000, 0x8000_0000)];
static DEVICES: [DeviceConfig; 2] = [device("d0", 0x8), device("d1", 0x10)];

type Pages = BTreeMap<u64, iommu_testkit::Page>;

/// Everything a failed request must not have changed.
#[derive(Debug, PartialEq)]
struct Snapshot {
    objects: usize,
    areas_free: usize,
    pages_free: usize,
    used: u64,
    /// Live domains and their pages.
    domains: Vec<(usize, Pages)>,
    streams: BTreeMap<StreamId, Option<DomainId>>,
}

fn snapshot(r: &Rig) -> Snapshot {
    let hw = r.server.hardware();
    Snapshot {
        objects: r.server.object_count(common::id(0)),
        areas_free: r.server.store().areas_free(),
        pages_free: r.server.store().pages_free(),
        used: r.server.store().account(ClientId(0)).unwrap().used,
        domains: hw
            .domains
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, d.as_ref()?.0.pages.clone())))
            .collect(),
        streams: hw.streams.clone(),
    }
}

struct Run {
    rig: Rig,
    injected: bool,
}

impl Run {
    /// One request; a failure must have changed nothing.
    fn call<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        op: Op,
        req: &mut T,
        mr0: u64,
        mr1: u64,
    ) -> Result<u64, Errno> {
        let before = snapshot(&self.rig);
        let allocations = self.rig.server.hardware().allocations;
        let result = self.rig.call_with(0, op, req, mr0, mr1);
        let hw = self.rig.server.hardware();
        if hw
            .fail_at
            .is_some_and(|n| allocations <= n && n < hw.allocations)
        {
            self.injected = true;
            assert!(
                result.is_err(),
                "{} swallowed an injected failure",
                op.name()
            );
        }
        if result.is_err() {
            assert_eq!(
                snapshot(&self.rig),
                before,
                "{} failed with {result:?} but changed state",
                op.name()
            );
        }
        result
    }

    fn sized<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        op: Op,
        req: &mut T,
        mr1: u64,
    ) -> Result<u64, Errno> {
        self.call(op, req, std::mem::size_of::<T>() as u64, mr1)
    }

    fn alloc(&mut self) -> u32 {
        let mut cmd = iommu_ioas_alloc {
            size: 12,
            flags: 0,
            out_ioas_id: 0,
        };
        self.sized(Op::IoasAlloc, &mut cmd, 0)
            .map_or(0, |_| cmd.out_ioas_id)
    }

    fn map(&mut self, ioas: u32, va: u64, len: u64) -> u64 {
        let flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
        let mut cmd = iommu_ioas_map {
            size: 40,
            flags,
            ioas_id: ioas,
            reserved: 0,
            user_va: va,
            length: len,
            iova: 0,
        };
        self.sized(Op::IoasMap, &mut cmd, 0).map_or(0, |_| cmd.iova)
    }

    fn bind(&mut self, index: u64) -> u32 {
        let mut cmd = vfio_device_bind_iommufd {
            argsz: 24,
            flags: 0,
            iommufd: -1,
            out_devid: 0,
            token_uuid_ptr: 0,
        };
        self.sized(Op::VfioDeviceBindIommufd, &mut cmd, index)
            .map_or(0, |_| cmd.out_devid)
    }

    fn attach(&mut self, dev: u32, pt: u32) {
        let mut cmd = vfio_device_attach_iommufd_pt {
            argsz: 16,
            flags: 0,
            pt_id: pt,
            pasid: 0,
        };
        let _ = self.sized(Op::VfioDeviceAttachIommufdPt, &mut cmd, u64::from(dev));
    }
}

fn workload(run: &mut Run) {
    let d0 = run.bind(0);
    let a = run.alloc();
    let first = run.map(a, 0x10_0000, 0x4000);
    run.attach(d0, a);
    run.map(a, 0x20_0000, 0x20_0000);
    let b = run.alloc();
    let flags = IOMMU_IOAS_MAP_READABLE;
    let mut copy = iommu_ioas_copy {
        size: 40,
        flags,
        dst_ioas_id: b,
        src_ioas_id: a,
        length: 0x4000,
        dst_iova: 0,
        src_iova: first,
    };
    let _ = run.sized(Op::IoasCopy, &mut copy, 0);
    let d1 = run.bind(1);
    let mut hwpt = iommu_hwpt_alloc {
        size: 48,
        flags: 0,
        dev_id: d1,
        pt_id: b,
        out_hwpt_id: 0,
        reserved: 0,
        data_type: 0,
        data_len: 0,
        data_uptr: 0,
        fault_id: 0,
        reserved2: 0,
    };
    let explicit = run
        .sized(Op::HwptAlloc, &mut hwpt, 0)
        .map_or(0, |_| hwpt.out_hwpt_id);
    run.attach(d1, explicit);
    let mut again = iommu_ioas_copy {
        dst_ioas_id: a,
        src_ioas_id: a,
        ..copy
    };
    let _ = run.sized(Op::IoasCopy, &mut again, 0);
    let mut unmap = iommu_ioas_unmap {
        size: 24,
        ioas_id: a,
        iova: first,
        length: 0x4000,
    };
    let _ = run.sized(Op::IoasUnmap, &mut unmap, 0);
    let mut detach = vfio_device_detach_iommufd_pt {
        argsz: 12,
        flags: 0,
        pasid: 0,
    };
    let _ = run.sized(Op::VfioDeviceDetachIommufdPt, &mut detach, u64::from(d0));
    // Through the VFIO compat path.
    run.attach(d0, 0);
    let _ = run.call(Op::VfioSetIommu, &mut [0u8; 0], VFIO_TYPE1_IOMMU, 0);
    let flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    let mut map = vfio_iommu_type1_dma_map {
        argsz: 32,
        flags,
        vaddr: 0x10_0000,
        iova: 0x100_0000,
        size: 0x8000,
    };
    let _ = run.sized(Op::VfioIommuMapDma, &mut map, 0);
    let mut cut = vfio_iommu_type1_dma_unmap {
        argsz: 24,
        flags: 0,
        iova: 0x100_2000,
        size: 0x2000,
        data: [],
    };
    let _ = run.sized(Op::VfioIommuUnmapDma, &mut cut, 0);
}

#[test]
fn every_injected_failure_changes_nothing() {
    let config = client("c").regions(&REGIONS).devices(&DEVICES).build();
    let mut swept = 0;
    for n in 0.. {
        let hw = MockHw {
            fail_at: Some(n),
            ..MockHw::new()
        };
        let mut run = Run {
            rig: Rig::new(hw, &[config]),
            injected: false,
        };
        workload(&mut run);
        let reply = run.rig.server.handle(
            common::id(0),
            Op::ResetClient.label(),
            [0, 0],
            &mut run.rig.pages[0],
        );
        assert_eq!(reply.errno(), None);
        assert_eq!(
            (
                run.rig.server.store().areas_free(),
                run.rig.server.store().pages_free()
            ),
            (256, 256),
            "leak at n = {n}"
        );
        assert_eq!(
            run.rig.server.hardware().live_domains(),
            0,
            "domain leak at n = {n}"
        );
        if !run.injected {
            // Every allocation of a clean run was an injection point once.
            assert_eq!(run.rig.server.hardware().allocations, swept);
            break;
        }
        swept += 1;
    }
    // Three domains and their fills, mirrored maps and copies.
    assert!(swept >= 8, "only {swept} injection points");
}
