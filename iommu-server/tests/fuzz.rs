//! Arbitrary bytes, sizes and labels from arbitrary clients: the server
//! never panics, and after every request its objects, the engine and the
//! (mock) hardware agree. At the end every client resets itself and every
//! pool entry must be back.

mod common;

use common::{client, device, MockHw, Rig, PAGE_VA};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::Op;
use iommu_server::Fault;
use iommu_types::config::{DeviceConfig, Perms, Region};
use iommu_types::StreamId;
use iopt::IovaRange;
use proptest::prelude::*;
use zerocopy::IntoBytes;

static REGIONS: [Region; 2] = [
    Region {
        vaddr: 0x10_0000,
        size: 0x10_0000,
        paddr: 0x8000_0000,
        perms: Perms::RW,
    },
    Region {
        vaddr: 0x40_0000,
        size: 0x4000,
        paddr: 0x8100_0000,
        perms: Perms::RO,
    },
];
static MSI: [IovaRange; 1] = [IovaRange::new(0x800_0000, 0x80f_ffff)];
static DEV_A: [DeviceConfig; 2] = [
    DeviceConfig {
        name: "a0",
        stream_id: StreamId(0x8),
        dma_mask: (1 << 40) - 1,
        reserved: &MSI,
    },
    device("a1", 0x10),
];
static DEV_B: [DeviceConfig; 1] = [device("b0", 0x18)];

fn rig() -> Rig {
    let client = |name, devices| {
        client(name)
            .regions(&REGIONS)
            .devices(devices)
            .objects(12)
            .mapped_pages(200)
    };
    let b = client("b", &DEV_B).manager(true);
    Rig::new(MockHw::new(), &[client("a", &DEV_A).build(), b.build()])
}

#[derive(Clone, Debug)]
struct Req {
    client: usize,
    op: Option<usize>,
    label: u64,
    size: u8,
    mr1: u64,
    words: [u8; 6],
    quads: [u8; 3],
    raw: Vec<u8>,
    fault: Option<(u8, u64)>,
}

fn req() -> impl Strategy<Value = Req> {
    (
        (
            prop_oneof![10 => 0usize..2, 1 => Just(2usize)],
            prop::option::weighted(0.9, 0usize..Op::ALL.len()),
            any::<u64>(),
            any::<u8>(),
            any::<u64>(),
        ),
        (
            any::<[u8; 6]>(),
            any::<[u8; 3]>(),
            prop_oneof![4 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 0..96)],
            prop::option::weighted(0.1, (any::<u8>(), any::<u64>())),
        ),
    )
        .prop_map(
            |((client, op, label, size, mr1), (words, quads, raw, fault))| Req {
                client,
                op,
                label,
                size,
                mr1,
                words,
                quads,
                raw,
                fault,
            },
        )
}

/// The word after `size`: a flags field for most structs, an ID for some.
fn first_word(pick: u8) -> u32 {
    match pick % 8 {
        0 | 1 => 0,
        2 => 6,
        3 => 7,
        4 => 2,
        _ => word(pick),
    }
}

/// IDs the first objects of a table get, and other interesting values.
fn word(pick: u8) -> u32 {
    match pick % 8 {
        0 => 0,
        1..=4 => 0x100 + u32::from(pick >> 3) % 6,
        5 => 0x200 + u32::from(pick >> 3) % 4,
        6 => u32::from(pick >> 3) & 0x7,
        _ => (u32::from(pick) << 24) | 0x100,
    }
}

fn quad(pick: u8) -> u64 {
    match pick % 8 {
        0 => 0,
        1..=3 => 0x10_0000 + u64::from(pick >> 3) * 0x1000,
        4 => PAGE_VA + 1024,
        5 => u64::MAX,
        6 => u64::from(pick >> 3) * 0x2000,
        _ => 0x40_0000,
    }
}

fn va(pick: u8) -> u64 {
    match pick % 6 {
        0..=2 => 0x10_0000 + u64::from(pick >> 2) * 0x1000,
        3 => 0x40_0000,
        4 => 0x30_0000,
        _ => u64::from(pick) << 20,
    }
}

fn len(pick: u8) -> u64 {
    match pick % 5 {
        0..=2 => (1 + u64::from(pick >> 3) % 8) * 0x1000,
        3 => 0,
        _ => 0x20_0000,
    }
}

fn iova(pick: u8) -> u64 {
    match pick % 5 {
        0 | 1 => u64::from(pick >> 2) * 0x1000,
        2 => 0x800_0000,
        3 => u64::MAX - 0xfff,
        _ => 0,
    }
}

/// A well-formed-looking request for the ops worth reaching deeply, with
/// fields drawn from small sets so that IDs, addresses and ranges collide.
fn structured(op: Op, w: &[u8; 6], q: &[u8; 3], known: &[u32]) -> Option<Vec<u8>> {
    // Mostly IDs this client was really given, sometimes anything.
    let id = |i: usize| match known.len() {
        n if n > 0 && !w[i].is_multiple_of(4) => known[w[i] as usize / 4 % n],
        _ => word(w[i]),
    };
    let rw = [
        IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        IOMMU_IOAS_MAP_READABLE,
        IOMMU_IOAS_MAP_FIXED_IOVA | 6,
    ][w[0] as usize % 3];
    Some(match op {
        Op::IoasAlloc => iommu_ioas_alloc {
            size: 12,
            flags: 0,
            out_ioas_id: 0,
        }
        .as_bytes()
        .to_vec(),
        Op::Destroy => iommu_destroy { size: 8, id: id(1) }.as_bytes().to_vec(),
        Op::IoasMap => iommu_ioas_map {
            size: 40,
            flags: rw,
            ioas_id: id(1),
            reserved: 0,
            user_va: va(q[0]),
            length: len(q[1]),
            iova: iova(q[2]),
        }
        .as_bytes()
        .to_vec(),
        Op::IoasUnmap => {
            let (iova, length) = if w[2].is_multiple_of(4) {
                (0, u64::MAX)
            } else {
                (iova(q[2]), len(q[1]))
            };
            iommu_ioas_unmap {
                size: 24,
                ioas_id: id(1),
                iova,
                length,
            }
            .as_bytes()
            .to_vec()
        }
        Op::IoasCopy => iommu_ioas_copy {
            size: 40,
            flags: rw,
            dst_ioas_id: id(1),
            src_ioas_id: id(2),
            length: len(q[1]),
            dst_iova: iova(q[0]),
            src_iova: iova(q[2]),
        }
        .as_bytes()
        .to_vec(),
        Op::Option => {
            let option_id = u32::from(w[3] % 3);
            iommu_option {
                size: 24,
                option_id,
                op: u16::from(w[4] % 2),
                reserved: 0,
                object_id: id(1),
                val64: u64::from(w[5] % 3),
            }
            .as_bytes()
            .to_vec()
        }
        Op::HwptAlloc => iommu_hwpt_alloc {
            size: 48,
            flags: 0,
            dev_id: id(2),
            pt_id: id(1),
            out_hwpt_id: 0,
            reserved: 0,
            data_type: 0,
            data_len: 0,
            data_uptr: 0,
            fault_id: 0,
            reserved2: 0,
        }
        .as_bytes()
        .to_vec(),
        Op::VfioDeviceBindIommufd => vfio_device_bind_iommufd {
            argsz: 24,
            flags: 0,
            iommufd: -1,
            out_devid: 0,
            token_uuid_ptr: 0,
        }
        .as_bytes()
        .to_vec(),
        Op::VfioDeviceAttachIommufdPt => {
            let pt_id = if w[3].is_multiple_of(3) { 0 } else { id(1) };
            vfio_device_attach_iommufd_pt {
                argsz: 16,
                flags: 0,
                pt_id,
                pasid: 0,
            }
            .as_bytes()
            .to_vec()
        }
        Op::VfioDeviceDetachIommufdPt => vfio_device_detach_iommufd_pt {
            argsz: 12,
            flags: 0,
            pasid: 0,
        }
        .as_bytes()
        .to_vec(),
        Op::VfioIommuMapDma => vfio_iommu_type1_dma_map {
            argsz: 32,
            flags: u32::from(w[0] % 4),
            vaddr: va(q[0]),
            iova: iova(q[2]),
            size: len(q[1]),
        }
        .as_bytes()
        .to_vec(),
        Op::VfioIommuUnmapDma => {
            let all = w[0].is_multiple_of(4);
            let (iova, size) = if all { (0, 0) } else { (iova(q[2]), len(q[1])) };
            vfio_iommu_type1_dma_unmap {
                argsz: 24,
                flags: if all { VFIO_DMA_UNMAP_FLAG_ALL } else { 0 },
                iova,
                size,
                data: [],
            }
            .as_bytes()
            .to_vec()
        }
        Op::VfioIoas => iommu_vfio_ioas {
            size: 12,
            ioas_id: id(1),
            op: u16::from(w[0] % 3),
            reserved: 0,
        }
        .as_bytes()
        .to_vec(),
        _ => return None,
    })
}

/// The object ID a successful call handed out, read from its reply struct.
fn handed_out(op: Op, page: &[u8]) -> Option<u32> {
    let at = match op {
        Op::IoasAlloc | Op::VfioDeviceAttachIommufdPt => 8,
        Op::VfioDeviceBindIommufd => 12,
        Op::HwptAlloc => 16,
        _ => return None,
    };
    Some(u32::from_le_bytes(page[at..at + 4].try_into().unwrap()))
}

/// What a failed request must leave alone.
#[derive(Debug, PartialEq)]
struct Snapshot {
    objects: [usize; 2],
    areas_free: usize,
    pages_free: usize,
    used: [u64; 2],
    faults: [usize; 2],
    domains: Vec<(usize, usize)>,
    streams: Vec<(StreamId, Option<iopt::DomainId>)>,
}

fn snapshot(r: &Rig) -> Snapshot {
    let store = r.server.store();
    let hw = r.server.hardware();
    Snapshot {
        objects: [
            r.server.object_count(common::id(0)),
            r.server.object_count(common::id(1)),
        ],
        areas_free: store.areas_free(),
        pages_free: store.pages_free(),
        used: [0, 1].map(|a| store.account(common::id(a)).unwrap().used),
        faults: [
            r.server.faults_pending(common::id(0)),
            r.server.faults_pending(common::id(1)),
        ],
        domains: hw
            .domains
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, d.as_ref()?.0.pages.len())))
            .collect(),
        streams: hw.streams.iter().map(|(&s, &d)| (s, d)).collect(),
    }
}

fn run(reqs: Vec<Req>) -> Result<(), TestCaseError> {
    let mut r = rig();
    let mut known: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    let mut bound: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    for (step, q) in reqs.iter().enumerate() {
        if let Some((stream, iova)) = q.fault {
            r.server.report_fault(Fault {
                stream: StreamId(u32::from(stream % 0x20)),
                kind: 0x10,
                iova: Some(iova),
                access: 1,
            });
        }
        let (label, size) = match q.op {
            Some(i) => {
                let op = Op::ALL[i];
                let size = match q.size % 8 {
                    0..=4 => op.struct_size() as u64,
                    5 => op.min_size() as u64,
                    6 => u64::from(q.size),
                    _ => q.label % 8192,
                };
                (op.label(), size)
            }
            None => (q.label, u64::from(q.size)),
        };
        let page = &mut r.pages[q.client.min(1)];
        page.fill(0);
        let wellformed = q.raw.is_empty() && q.size % 8 < 5;
        let ids = &known[q.client.min(1)];
        let built =
            q.op.filter(|_| wellformed)
                .and_then(|i| structured(Op::ALL[i], &q.words, &q.quads, ids));
        let size = match &built {
            Some(bytes) => {
                page[..bytes.len()].copy_from_slice(bytes);
                bytes.len() as u64
            }
            None => {
                page[..q.raw.len()].copy_from_slice(&q.raw);
                page[..4].copy_from_slice(&(size as u32).to_le_bytes());
                for (i, &w) in q.words.iter().enumerate() {
                    let value = if i == 0 { first_word(w) } else { word(w) };
                    page[4 + 4 * i..8 + 4 * i].copy_from_slice(&value.to_le_bytes());
                }
                for (i, &w) in q.quads.iter().enumerate() {
                    page[24 + 8 * i..32 + 8 * i].copy_from_slice(&quad(w).to_le_bytes());
                }
                size
            }
        };
        // A scalar op carries its argument in MR0.
        let mr0 = if q.op.is_some_and(|i| Op::ALL[i].struct_size() == 0) {
            u64::from(q.size % 12)
        } else {
            size
        };
        let ids = &known[q.client.min(1)];
        let devices = &bound[q.client.min(1)];
        let device_op =
            q.op.is_some_and(|i| Op::ALL[i].device_arg() == iommu_proto::DeviceArg::ObjectId);
        let mr1 = match q.mr1 % 4 {
            _ if device_op && !devices.is_empty() && q.mr1 % 8 != 0 => {
                u64::from(devices[(q.mr1 / 8) as usize % devices.len()])
            }
            0 | 1 => q.mr1 / 4 % 3,
            2 if !ids.is_empty() => u64::from(ids[(q.mr1 / 4) as usize % ids.len()]),
            _ => u64::from(word(q.mr1 as u8)),
        };
        let before = snapshot(&r);
        let page = &mut r.pages[q.client.min(1)];
        let reply = r
            .server
            .handle(common::id(q.client), label, [mr0, mr1], page);
        if reply.errno().is_some() {
            prop_assert_eq!(
                &snapshot(&r),
                &before,
                "step {} failed with {:?} but changed state: {:?}",
                step,
                reply.errno(),
                q
            );
        }
        let page = &r.pages[q.client.min(1)];
        if reply.errno().is_none() && q.client < 2 {
            let op = q.op.map(|i| Op::ALL[i]);
            if let Some(id) = op.and_then(|op| handed_out(op, page)) {
                if op == Some(Op::VfioDeviceBindIommufd) {
                    bound[q.client].push(id);
                } else {
                    known[q.client].push(id);
                }
            }
        }
        let hw = r.server.hardware();
        r.server
            .check(|s| hw.streams.get(&s).copied().flatten())
            .map_err(|e| TestCaseError::fail(format!("step {step}: {e} after {q:?}")))?;
    }
    for client in 0..2u64 {
        let reply = r.server.handle(
            common::id(client as usize),
            Op::ResetClient.label(),
            [client, 0],
            &mut r.pages[client as usize],
        );
        prop_assert_eq!(reply.errno(), None);
    }
    prop_assert_eq!(r.server.store().areas_free(), 256);
    prop_assert_eq!(r.server.store().pages_free(), 256);
    prop_assert_eq!(r.server.hardware().live_domains(), 0);
    prop_assert!(r.server.hardware().streams.values().all(Option::is_none));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SERVER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_requests_never_break_the_server(reqs in prop::collection::vec(req(), 1..80)) {
        run(reqs)?;
    }
}
