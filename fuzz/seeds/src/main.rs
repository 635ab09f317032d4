//! Writes a fuzz target's seed inputs: `iommu-fuzz-seeds TARGET DIR`.
//! Short well-formed sessions (allocate, map, copy, query, bind, attach,
//! VFIO calls, faults, unmap, destroy, quarantine, dump, reset), so the
//! fuzzer starts from requests that pass the checks and mutates from there:
//! - `serve`: records in the byte-level target's format (see serve.rs),
//!   with inputs that once found a panic (regressions);
//! - `steps`: typed steps in the `steps` target's format (see step.rs);
//! - `steps-regressions`: inputs of the `steps` target that once made the
//!   server panic, kept so that every fix stays fixed (`steps` writes them
//!   too).
//!
//! `iommu-fuzz-seeds decode FILE` prints a `steps` input, one step a line.

use std::path::PathBuf;

#[path = "../../src/step.rs"]
#[allow(dead_code)] // the decoding half is the target's
mod step;

use step::{Iova, Kind, Obj, Output, Setup, Step};

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
    const USAGE: &str = "usage: iommu-fuzz-seeds serve|steps|steps-regressions DIR | decode FILE";
    let mut args = std::env::args().skip(1);
    let (what, path) = (args.next().expect(USAGE), args.next().expect(USAGE));
    let seeds = match what.as_str() {
        "serve" => serve_seeds(),
        // The regression inputs too: every run of the target starts by
        // checking that they still pass.
        "steps" => [steps_seeds(), steps_regressions()].concat(),
        "steps-regressions" => steps_regressions(),
        "decode" => {
            let data = std::fs::read(&path).expect("read the input");
            let (setup, steps) = step::decode(&data);
            print!("{}", step::Listing(setup, &steps));
            return;
        }
        _ => panic!("{USAGE}"),
    };
    let dir = PathBuf::from(path);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    for (name, bytes) in seeds {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
    }
}

fn serve_seeds() -> Vec<(&'static str, Vec<u8>)> {
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
    seeds
}

const A: u8 = 0;
const B: u8 = 1;
const MANAGER: u8 = 2;
const RW: u8 = (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE) as u8;
const FIXED: u8 = IOMMU_IOAS_MAP_FIXED_IOVA as u8;
/// The 4 KiB granule with no page limit.
const PLAIN: Setup = Setup(0);

fn steps_input(setup: Setup, steps: &[Step]) -> Vec<u8> {
    let mut out = Output::new(setup);
    for step in steps {
        out.step(step);
    }
    out.0
}

fn steps_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let map = |client, ioas, va, length, iova| Step::Map {
        client,
        ioas,
        flags: RW | FIXED,
        va,
        length,
        iova: Iova::At(iova),
    };
    let ioas = [
        Step::Alloc { client: A },
        Step::Alloc { client: A },
        map(A, Obj::IOAS0, 0x10_0000, 0x2000, 0),
        Step::Copy {
            client: A,
            dst: Obj::IOAS1,
            src: Obj::IOAS0,
            flags: RW,
            src_iova: Iova::At(0x1000),
            length: 0x1000,
            dst_iova: Iova::At(0),
        },
        Step::IovaRanges {
            client: A,
            ioas: Obj::IOAS0,
            capacity: 4,
        },
        Step::AllowIovas {
            client: A,
            ioas: Obj::IOAS1,
            ranges: vec![(0x10_0000, 0x20_0000 - 1)],
        },
        Step::Option {
            client: A,
            option_id: IOMMU_OPTION_HUGE_PAGES as u8,
            op: IOMMU_OPTION_OP_SET as u8,
            object: Obj::IOAS0,
            value: 0,
        },
        Step::Unmap {
            client: A,
            ioas: Obj::IOAS0,
            iova: Iova::At(0),
            length: u64::MAX,
        },
    ];
    // Three buffers mapped back to back, the first two copied (two
    // segments) into an IOAS a device uses, and the device's DMA there.
    let after = |i| Step::Map {
        client: A,
        ioas: Obj::IOAS0,
        flags: RW | FIXED,
        va: 0x10_2000,
        length: 0x1000,
        iova: Iova::MappedEnd(i),
    };
    let copy_to_device = [
        Step::Alloc { client: A },
        Step::Alloc { client: A },
        Step::Bind {
            client: A,
            index: 0,
        },
        Step::Attach {
            client: A,
            dev: Obj::DEV0,
            pt: Obj::IOAS1,
        },
        map(A, Obj::IOAS0, 0x10_0000, 0x1000, 0),
        after(0),
        after(1),
        Step::Copy {
            client: A,
            dst: Obj::IOAS1,
            src: Obj::IOAS0,
            flags: RW,
            src_iova: Iova::Mapped(0),
            length: 0x2000,
            dst_iova: Iova::At(0),
        },
        Step::Dma {
            stream: 0,
            iova: Iova::Mapped(3),
        },
        Step::Unmap {
            client: A,
            ioas: Obj::IOAS1,
            iova: Iova::Mapped(3),
            length: 0x2000,
        },
    ];
    let device = [
        Step::Alloc { client: A },
        Step::Bind {
            client: A,
            index: 0,
        },
        Step::Attach {
            client: A,
            dev: Obj::DEV0,
            pt: Obj::IOAS0,
        },
        map(A, Obj::IOAS0, 0x10_0000, 0x4000, 0x10_0000),
        Step::Dma {
            stream: 0,
            iova: Iova::At(0x10_0000),
        },
        Step::Fault {
            stream: 0,
            iova: 0x20_0000,
        },
        Step::FaultRead { client: A },
        Step::Bind {
            client: A,
            index: 1,
        },
        Step::HwptAlloc {
            client: A,
            flags: 0,
            dev: Obj::Known(Kind::Device, 1),
            pt: Obj::IOAS0,
        },
        Step::Attach {
            client: A,
            dev: Obj::Known(Kind::Device, 1),
            pt: Obj::HWPT0,
        },
        Step::HwInfo {
            client: A,
            dev: Obj::DEV0,
            data_len: 32,
        },
        Step::Detach {
            client: A,
            dev: Obj::DEV0,
        },
        Step::Destroy {
            client: A,
            object: Obj::DEV0,
        },
        Step::Reset {
            client: A,
            target: A,
        },
    ];
    let vfio = [
        Step::Bind {
            client: B,
            index: 0,
        },
        // pt 0: the compatibility IOAS, made here.
        Step::Attach {
            client: B,
            dev: Obj::DEV0,
            pt: Obj::Raw(0),
        },
        Step::VfioScalar {
            client: B,
            which: 2,
            arg: VFIO_TYPE1v2_IOMMU as u8,
        },
        Step::VfioMapDma {
            client: B,
            flags: (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) as u8,
            va: 0x10_0000,
            iova: 0x10_0000,
            length: 0x2000,
        },
        Step::VfioIoas {
            client: B,
            ioas: Obj::Raw(0),
            op: IOMMU_VFIO_IOAS_GET as u8,
        },
        Step::Dma {
            stream: 2,
            iova: Iova::At(0x10_1000),
        },
        Step::VfioGetInfo {
            client: B,
            argsz: 200,
        },
        Step::VfioScalar {
            client: B,
            which: 1,
            arg: VFIO_DMA_CC_IOMMU as u8,
        },
        Step::VfioUnmapDma {
            client: B,
            flags: 0,
            iova: 0x10_0000,
            length: 0x2000,
        },
    ];
    let manager = [
        Step::Alloc { client: B },
        Step::Bind {
            client: B,
            index: 0,
        },
        Step::Attach {
            client: B,
            dev: Obj::DEV0,
            pt: Obj::IOAS0,
        },
        map(B, Obj::IOAS0, 0x10_0000, 0x1000, 0),
        Step::Dump {
            client: MANAGER,
            target: B,
            offset: 0,
            length: 0x800,
            at: 0x100,
        },
        Step::Quarantine {
            client: MANAGER,
            target: B,
            hold: 1,
        },
        Step::Bind {
            client: B,
            index: 0,
        },
        Step::Dump {
            client: MANAGER,
            target: 0xff,
            offset: 0,
            length: 0x800,
            at: 0x100,
        },
        Step::Quarantine {
            client: MANAGER,
            target: B,
            hold: 0,
        },
        Step::Reset {
            client: MANAGER,
            target: B,
        },
    ];
    vec![
        ("ioas", steps_input(PLAIN, &ioas)),
        ("copy-to-device", steps_input(PLAIN, &copy_to_device)),
        ("device", steps_input(PLAIN, &device)),
        ("vfio", steps_input(PLAIN, &vfio)),
        ("manager", steps_input(PLAIN, &manager)),
        // The same sessions on domains that run out of pages at once.
        ("device-tight", steps_input(Setup(0xc), &device)),
    ]
}

/// Inputs that once made the server panic (debug builds), found by
/// `make fuzz FUZZ_TARGETS=steps` and cut to the step that panicked.
fn steps_regressions() -> Vec<(&'static str, Vec<u8>)> {
    let map = |length, iova| Step::Map {
        client: A,
        ioas: Obj::IOAS0,
        flags: RW | FIXED,
        va: 0x10_0000,
        length,
        iova,
    };
    // A copy into an IOAS with a domain of a range whose first segment is
    // half a page (its source IOAS, without a domain, takes any length):
    // the engine asked the domain to map 0x800 bytes.
    let half_page_segment = [
        Step::Alloc { client: A },
        Step::Alloc { client: A },
        Step::Bind {
            client: A,
            index: 0,
        },
        Step::Attach {
            client: A,
            dev: Obj::DEV0,
            pt: Obj::IOAS1,
        },
        map(0x800, Iova::At(0)),
        map(0x1000, Iova::MappedEnd(0)),
        map(0x1000, Iova::MappedEnd(1)),
        Step::Copy {
            client: A,
            dst: Obj::IOAS1,
            src: Obj::IOAS0,
            flags: RW,
            src_iova: Iova::Mapped(0),
            length: 0x2000,
            dst_iova: Iova::At(0),
        },
    ];
    // A manager's DUMP from an offset near u64::MAX: the end of the window
    // overflowed.
    let dump_near_the_top = [Step::Dump {
        client: MANAGER,
        target: 0xff,
        offset: u64::MAX - 1,
        length: 0x100,
        at: 0x100,
    }];
    vec![
        ("half-page-segment", steps_input(PLAIN, &half_page_segment)),
        ("dump-near-the-top", steps_input(PLAIN, &dump_near_the_top)),
    ]
}
