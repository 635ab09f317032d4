//! Writes the fuzz target's seed inputs into the directory given: short
//! well-formed sessions (allocate, map, copy, query, bind, attach, VFIO
//! calls, unmap, destroy, reset), so the fuzzer starts from requests that
//! pass the size checks and mutates from there, and inputs that once found
//! a panic (regressions). Records are in the
//! target's input format (see serve.rs).

use std::path::PathBuf;

use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::Op;
use zerocopy::IntoBytes;

/// The first object IDs a client gets: generation 1, slots 0, 1, 2.
const FIRST: u32 = 0x100;
const SECOND: u32 = 0x101;
const THIRD: u32 = 0x102;
/// Where clients see their command page (the testkit's PAGE_VA).
const PAGE_VA: u64 = 0x7000_0000;

/// One record: client, the op's index in `Op::ALL`, MR0, MR1, the struct.
fn record(out: &mut Vec<u8>, client: u8, op: Op, mr0: u16, mr1: u32, body: &[u8]) {
    let index = Op::ALL.iter().position(|&o| o == op).unwrap() as u16;
    out.push(client);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&mr0.to_le_bytes());
    out.extend_from_slice(&(mr1 as u16).to_le_bytes());
    out.push(body.len() as u8);
    out.extend_from_slice(body);
}

fn request(out: &mut Vec<u8>, client: u8, op: Op, mr1: u32, body: &[u8]) {
    record(out, client, op, body.len() as u16, mr1, body);
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: seeds DIR"));
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let alloc = iommu_ioas_alloc {
        size: 12,
        ..Default::default()
    };
    let map = iommu_ioas_map {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: FIRST,
        user_va: 0x10_0000,
        length: 0x2000,
        ..Default::default()
    };
    let unmap = iommu_ioas_unmap {
        size: 24,
        ioas_id: FIRST,
        iova: 0,
        length: u64::MAX,
    };
    let copy = iommu_ioas_copy {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE,
        dst_ioas_id: SECOND,
        src_ioas_id: FIRST,
        length: 0x1000,
        src_iova: 0x1000,
        ..Default::default()
    };
    let ranges = iommu_ioas_iova_ranges {
        size: 32,
        ioas_id: FIRST,
        num_iovas: 4,
        allowed_iovas: PAGE_VA + 128,
        ..Default::default()
    };
    let mut allow = iommu_ioas_allow_iovas {
        size: 24,
        ioas_id: FIRST,
        num_iovas: 1,
        allowed_iovas: PAGE_VA + 24,
        ..Default::default()
    }
    .as_bytes()
    .to_vec();
    allow.extend_from_slice(
        iommu_iova_range {
            start: 0x10_0000,
            last: 0xff_ffff,
        }
        .as_bytes(),
    );
    let option = iommu_option {
        size: 24,
        option_id: IOMMU_OPTION_HUGE_PAGES,
        op: IOMMU_OPTION_OP_SET,
        object_id: FIRST,
        val64: 0,
        ..Default::default()
    };
    let bind = vfio_device_bind_iommufd {
        argsz: 24,
        iommufd: -1,
        ..Default::default()
    };
    let attach = vfio_device_attach_iommufd_pt {
        argsz: 16,
        pt_id: FIRST,
        ..Default::default()
    };
    let detach = vfio_device_detach_iommufd_pt {
        argsz: 12,
        ..Default::default()
    };
    let hwpt = iommu_hwpt_alloc {
        size: 48,
        dev_id: SECOND,
        pt_id: FIRST,
        ..Default::default()
    };
    let info = iommu_hw_info {
        size: 32,
        dev_id: SECOND,
        data_len: 32,
        data_uptr: PAGE_VA + 128,
        ..Default::default()
    };
    let dma_map = vfio_iommu_type1_dma_map {
        argsz: 32,
        flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        vaddr: 0x10_0000,
        iova: 0x10_0000,
        size: 0x1000,
    };
    let get_info = vfio_iommu_type1_info {
        argsz: 200,
        ..Default::default()
    };
    let destroy = iommu_destroy { size: 8, id: THIRD };

    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut s = Vec::new();
    request(&mut s, 0, Op::IoasAlloc, 0, alloc.as_bytes());
    request(&mut s, 0, Op::IoasMap, 0, map.as_bytes());
    request(&mut s, 0, Op::IoasAlloc, 0, alloc.as_bytes());
    request(&mut s, 0, Op::IoasCopy, 0, copy.as_bytes());
    request(&mut s, 0, Op::IoasIovaRanges, 0, ranges.as_bytes());
    request(&mut s, 0, Op::IoasAllowIovas, 0, &allow);
    request(&mut s, 0, Op::Option, 0, option.as_bytes());
    request(&mut s, 0, Op::IoasUnmap, 0, unmap.as_bytes());
    seeds.push(("ioas", s));
    let mut s = Vec::new();
    request(&mut s, 0, Op::IoasAlloc, 0, alloc.as_bytes());
    request(&mut s, 0, Op::VfioDeviceBindIommufd, 0, bind.as_bytes());
    request(&mut s, 0, Op::HwptAlloc, 0, hwpt.as_bytes());
    request(
        &mut s,
        0,
        Op::VfioDeviceAttachIommufdPt,
        SECOND,
        attach.as_bytes(),
    );
    request(&mut s, 0, Op::IoasMap, 0, map.as_bytes());
    request(&mut s, 0, Op::GetHwInfo, 0, info.as_bytes());
    // A fault on stream 0x8 (client 3 stands for the SMMU), then its read.
    record(&mut s, 3, Op::ALL[8], 0x20, 0, &[]);
    let fault = iommu_proto::iommu_fault_record {
        size: 48,
        ..Default::default()
    };
    request(&mut s, 0, Op::FaultRead, 0, fault.as_bytes());
    request(
        &mut s,
        0,
        Op::VfioDeviceDetachIommufdPt,
        SECOND,
        detach.as_bytes(),
    );
    request(&mut s, 0, Op::Destroy, 0, destroy.as_bytes());
    request(&mut s, 2, Op::ResetClient, 0, &[]);
    seeds.push(("device", s));
    let mut s = Vec::new();
    request(&mut s, 1, Op::VfioDeviceBindIommufd, 0, bind.as_bytes());
    let compat = vfio_device_attach_iommufd_pt { pt_id: 0, ..attach };
    request(
        &mut s,
        1,
        Op::VfioDeviceAttachIommufdPt,
        FIRST,
        compat.as_bytes(),
    );
    record(&mut s, 1, Op::VfioSetIommu, VFIO_TYPE1_IOMMU as u16, 0, &[]);
    request(&mut s, 1, Op::VfioIommuMapDma, 0, dma_map.as_bytes());
    request(&mut s, 1, Op::VfioIommuGetInfo, 0, get_info.as_bytes());
    record(&mut s, 1, Op::VfioCheckExtension, 3, 0, &[]);
    seeds.push(("vfio", s));
    // Regressions. Two half-page areas of an IOAS without a domain copied
    // into one with a domain: each segment is shorter than the domain's
    // page (EINVAL; it once reached a debug assertion in iopt).
    let mut s = Vec::new();
    request(&mut s, 0, Op::IoasAlloc, 0, alloc.as_bytes());
    for (va, iova) in [(0x10_0000, 0x1000), (0x10_2000, 0x1800)] {
        let half = iommu_ioas_map {
            flags: map.flags | IOMMU_IOAS_MAP_FIXED_IOVA,
            user_va: va,
            length: 0x800,
            iova,
            ..map
        };
        request(&mut s, 0, Op::IoasMap, 0, half.as_bytes());
    }
    request(&mut s, 0, Op::IoasAlloc, 0, alloc.as_bytes());
    request(&mut s, 0, Op::VfioDeviceBindIommufd, 0, bind.as_bytes());
    let to_second = vfio_device_attach_iommufd_pt {
        pt_id: SECOND,
        ..attach
    };
    request(
        &mut s,
        0,
        Op::VfioDeviceAttachIommufdPt,
        THIRD,
        to_second.as_bytes(),
    );
    let halves = iommu_ioas_copy {
        flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
        length: 0x1000,
        dst_iova: 0x1000,
        ..copy
    };
    request(&mut s, 0, Op::IoasCopy, 0, halves.as_bytes());
    seeds.push(("copy-half-pages", s));
    // The manager's DUMP at an offset near U64_MAX (EINVAL; the window's
    // end once overflowed).
    let mut s = Vec::new();
    let dump = iommu_proto::dump::iommu_dump {
        size: 40,
        target: 0,
        length: 100,
        reserved: 0,
        offset: u64::MAX - 10,
        data_uptr: PAGE_VA + 64,
        out_total: 0,
    };
    request(&mut s, 2, Op::Dump, 0, dump.as_bytes());
    seeds.push(("dump-offset", s));
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
    }
}
