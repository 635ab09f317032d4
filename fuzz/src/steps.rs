//! libFuzzer target: sequences of typed steps (see step.rs) from three
//! clients, one a manager, through `Server::serve` on mock hardware whose
//! page sizes and page limit the input picks. Where the byte-level target
//! (serve.rs) mostly meets the size checks, every request here is well
//! formed unless a field says otherwise, names objects the server handed
//! out, and uses addresses and lengths that matter, so sequences reach
//! multi-segment copies into IOASes with domains, attach and detach,
//! quarantine and reset, faults and DMA.
//!
//! After every step:
//! - `Server::check` (objects, engine, hardware and quota agree);
//! - a request that failed changed nothing: every client's and the
//!   server's DUMP report, the streams' targets and the pages every domain
//!   holds are as before;
//! - a DMA reaches only memory of the client owning the stream;
//! - a held client's streams are all stopped and it cannot bind;
//! - a successful reset leaves the client nothing: no objects, faults,
//!   charged pages or attached streams.
//!
//! At the end the manager resets every client and every pool entry and
//! domain must be back. A panic is a finding.

#![no_main]

// Shared with the seed writer, which uses the encoding half.
#[allow(dead_code)]
mod step;

use iommu_proto::dump::{iommu_dump, IOMMU_DUMP_SERVER};
use iommu_proto::iommufd::*;
use iommu_proto::vfio::*;
use iommu_proto::{iommu_fault_record, Op};
use iommu_server::COMMAND_PAGE;
use iommu_testkit::rig::{client, device, id, region, DEFAULT_QUOTA};
use iommu_testkit::{MockDomain, MockHw, Rig, PAGE_VA};
use iommu_types::config::{ClientConfig, DeviceConfig, Perms, Quota, Region};
use iommu_types::{Errno, Fault, IovaRange, StreamId};
use libfuzzer_sys::fuzz_target;
use std::mem::size_of;
use std::sync::OnceLock;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use step::{decode, Iova, Kind, Obj, Setup, Step, STREAMS};

/// Client a: read-write memory and a read-only region; two devices, one
/// with a 40-bit DMA mask and an MSI window.
static REGIONS_A: [Region; 2] = [
    region(0x10_0000, 0x10_0000, 0x8000_0000),
    Region {
        vaddr: 0x40_0000,
        size: 0x4000,
        paddr: 0x8100_0000,
        perms: Perms::RO,
    },
];
/// Client b's memory is its own: a DMA into a's would be a finding.
static REGIONS_B: [Region; 1] = [region(0x10_0000, 0x10_0000, 0x8200_0000)];
static REGIONS_M: [Region; 1] = [region(0x10_0000, 0x8000, 0x8300_0000)];
static MSI: [IovaRange; 1] = [IovaRange::new(0x800_0000, 0x80f_ffff)];
static DEV_A: [DeviceConfig; 2] = [
    DeviceConfig {
        name: "a0",
        stream_id: StreamId(STREAMS[0]),
        dma_mask: (1 << 40) - 1,
        reserved: &MSI,
    },
    device("a1", STREAMS[1]),
];
static DEV_B: [DeviceConfig; 1] = [device("b0", STREAMS[2])];
/// Small enough that every quota is reached within an input.
const QUOTA: Quota = Quota {
    objects: 12,
    mapped_pages: 200,
    mappings: 64,
    ..DEFAULT_QUOTA
};
const CLIENTS: usize = 3;
const MANAGER: usize = 2;
/// Where requests put the arrays they point at, in the command page.
const ARRAY_AT: usize = 256;
/// Where the harness's own DUMP reads land in its page.
const REPORT_AT: usize = 64;
const DUMP_SIZE: usize = size_of::<iommu_dump>();
/// IDs of each kind remembered per client (stale ones included).
const REMEMBERED: usize = 32;

fn configs() -> [ClientConfig; CLIENTS] {
    [
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
        client("m")
            .regions(&REGIONS_M)
            .quota(QUOTA)
            .manager(true)
            .build(),
    ]
}

/// The IDs the server handed one client, by kind, and the mappings
/// (IOVA, length) it made for it.
#[derive(Default)]
struct Known {
    ioases: Vec<u32>,
    hwpts: Vec<u32>,
    devices: Vec<u32>,
    mappings: Vec<(u64, u64)>,
}

fn remember<T: PartialEq>(list: &mut Vec<T>, id: T) {
    if !list.contains(&id) && list.len() < REMEMBERED {
        list.push(id);
    }
}

struct Run {
    rig: Rig,
    configs: [ClientConfig; CLIENTS],
    known: [Known; CLIENTS],
    held: [bool; CLIENTS],
    /// The harness's own page for its DUMP reads as the manager.
    scratch: Vec<u8>,
}

impl Run {
    fn new(setup: Setup) -> Run {
        let template = MockDomain::new(setup.page_sizes())
            .with_aperture(0, (1 << 48) - 1)
            .with_page_limit(setup.page_limit());
        let configs = configs();
        Run {
            rig: Rig::new(MockHw::with_domains(template), &configs),
            configs,
            known: Default::default(),
            held: [false; CLIENTS],
            scratch: vec![0; COMMAND_PAGE],
        }
    }

    fn resolve(&self, client: usize, obj: Obj) -> u32 {
        let (owner, kind) = match obj {
            Obj::Raw(id) => return id,
            Obj::Known(Kind::Foreign, _) => ((client + 1) % CLIENTS, Kind::Ioas),
            Obj::Known(kind, _) => (client, kind),
        };
        let Obj::Known(_, index) = obj else {
            unreachable!()
        };
        let known = &self.known[owner];
        let list = match kind {
            Kind::Hwpt => &known.hwpts,
            Kind::Device => &known.devices,
            _ => &known.ioases,
        };
        if list.is_empty() {
            0
        } else {
            list[usize::from(index) % list.len()]
        }
    }

    fn resolve_iova(&self, client: usize, iova: Iova) -> u64 {
        let mappings = &self.known[client].mappings;
        let nth = |i: u8| {
            mappings
                .get(usize::from(i) % mappings.len().max(1))
                .copied()
        };
        match iova {
            Iova::At(iova) => iova,
            Iova::Mapped(i) => nth(i).map_or(0, |(start, _)| start),
            Iova::MappedEnd(i) => nth(i).map_or(0, |(start, length)| start.wrapping_add(length)),
        }
    }

    fn call<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        client: usize,
        op: Op,
        req: &mut T,
        mr1: u64,
    ) -> Result<u64, Errno> {
        // Every struct starts with its u32 size (or argsz): make it agree
        // with MR0, or every request would be EINVAL at once.
        let size = size_of::<T>() as u32;
        req.as_mut_bytes()[..4].copy_from_slice(&size.to_ne_bytes());
        self.rig.call(client, op, req, mr1)
    }

    fn scalar(&mut self, client: usize, op: Op, mr0: u64, mr1: u64) -> Result<u64, Errno> {
        let reply = self.rig.server.handle(
            id(client),
            op.label(),
            [mr0, mr1],
            &mut self.rig.pages[client],
        );
        match reply.errno() {
            None => Ok(reply.mr0),
            Some(e) => Err(e),
        }
    }

    /// The whole DUMP report on `target`, read as the manager in pieces.
    fn report(&mut self, target: u32) -> String {
        let mut text = Vec::new();
        loop {
            let mut cmd = iommu_dump {
                size: DUMP_SIZE as u32,
                target,
                length: (COMMAND_PAGE - REPORT_AT) as u32,
                offset: text.len() as u64,
                data_uptr: PAGE_VA + REPORT_AT as u64,
                ..Default::default()
            };
            self.scratch[..DUMP_SIZE].copy_from_slice(cmd.as_bytes());
            let label = Op::Dump.label();
            let mrs = [DUMP_SIZE as u64, 0];
            let reply = self
                .rig
                .server
                .handle(id(MANAGER), label, mrs, &mut self.scratch);
            assert_eq!(
                reply.errno(),
                None,
                "the manager's DUMP of {target:#x} failed"
            );
            cmd = iommu_dump::read_from_prefix(&self.scratch).unwrap().0;
            let written = cmd.length as usize;
            text.extend_from_slice(&self.scratch[REPORT_AT..REPORT_AT + written]);
            if text.len() as u64 >= cmd.out_total || written == 0 {
                break;
            }
        }
        String::from_utf8(text).expect("a text report")
    }

    /// What a failed request must leave as it was: the DUMP reports of the
    /// clients it could touch and of the server (pool use), where streams
    /// point, and what every domain holds.
    fn state(&mut self, clients: &[usize]) -> String {
        let mut state = String::new();
        for &target in clients {
            state += &self.report(target as u32);
        }
        state += &self.report(IOMMU_DUMP_SERVER);
        let hw = self.rig.server.hardware();
        for (stream, domain) in &hw.streams {
            if let Some(domain) = domain {
                state += &format!("stream {:#x} -> {}\n", stream.0, domain.0);
            }
        }
        for (slot, domain) in hw.domains.iter().enumerate() {
            if let Some((domain, owner)) = domain {
                let bytes: u64 = domain.pages.values().map(|p| p.size).sum();
                let pages = domain.pages.len();
                state += &format!(
                    "domain {slot} of {}: {pages} pages, {bytes:#x} bytes\n",
                    owner.0
                );
            }
        }
        state
    }

    fn streams_of(&self, client: usize) -> impl Iterator<Item = StreamId> + '_ {
        self.configs[client].devices.iter().map(|d| d.stream_id)
    }

    fn owner_of(&self, stream: StreamId) -> Option<usize> {
        (0..CLIENTS).find(|&c| self.streams_of(c).any(|s| s == stream))
    }

    fn assert_stopped(&self, client: usize, why: &str) {
        for stream in self.streams_of(client) {
            let target = self.rig.server.hardware().attached(stream);
            assert_eq!(
                target, None,
                "{why}: client {client}'s stream {:#x} still attached",
                stream.0
            );
        }
    }

    fn assert_emptied(&self, client: usize, why: &str) {
        let server = &self.rig.server;
        assert_eq!(
            server.object_count(id(client)),
            0,
            "{why}: client {client} keeps objects"
        );
        assert_eq!(
            server.faults_pending(id(client)),
            0,
            "{why}: client {client} keeps faults"
        );
        let used = server.store().account(id(client)).map_or(0, |a| a.used);
        assert_eq!(used, 0, "{why}: client {client} keeps {used} charged pages");
        self.assert_stopped(client, why);
    }

    /// Runs one step; `Some` with the request's result when it was one.
    fn step(&mut self, step: &Step) -> Option<Result<u64, Errno>> {
        let client = |c: u8| usize::from(c) % CLIENTS;
        let result = match *step {
            Step::Alloc { client: c } => {
                let c = client(c);
                let mut cmd = iommu_ioas_alloc {
                    size: 0,
                    ..Default::default()
                };
                let r = self.call(c, Op::IoasAlloc, &mut cmd, 0);
                if r.is_ok() {
                    remember(&mut self.known[c].ioases, cmd.out_ioas_id);
                }
                r
            }
            Step::Map {
                client: c,
                ioas,
                flags,
                va,
                length,
                iova,
            } => {
                let c = client(c);
                let mut cmd = iommu_ioas_map {
                    size: 0,
                    flags: step::flags(flags),
                    ioas_id: self.resolve(c, ioas),
                    user_va: va,
                    length,
                    iova: self.resolve_iova(c, iova),
                    ..Default::default()
                };
                let r = self.call(c, Op::IoasMap, &mut cmd, 0);
                if r.is_ok() {
                    remember(&mut self.known[c].mappings, (cmd.iova, length));
                }
                r
            }
            Step::Copy {
                client: c,
                dst,
                src,
                flags,
                src_iova,
                length,
                dst_iova,
            } => {
                let c = client(c);
                let mut cmd = iommu_ioas_copy {
                    size: 0,
                    flags: step::flags(flags),
                    dst_ioas_id: self.resolve(c, dst),
                    src_ioas_id: self.resolve(c, src),
                    length,
                    dst_iova: self.resolve_iova(c, dst_iova),
                    src_iova: self.resolve_iova(c, src_iova),
                };
                let r = self.call(c, Op::IoasCopy, &mut cmd, 0);
                if r.is_ok() {
                    remember(&mut self.known[c].mappings, (cmd.dst_iova, length));
                }
                r
            }
            Step::Unmap {
                client: c,
                ioas,
                iova,
                length,
            } => {
                let c = client(c);
                let mut cmd = iommu_ioas_unmap {
                    size: 0,
                    ioas_id: self.resolve(c, ioas),
                    iova: self.resolve_iova(c, iova),
                    length,
                };
                self.call(c, Op::IoasUnmap, &mut cmd, 0)
            }
            Step::IovaRanges {
                client: c,
                ioas,
                capacity,
            } => {
                let c = client(c);
                let mut cmd = iommu_ioas_iova_ranges {
                    size: 0,
                    ioas_id: self.resolve(c, ioas),
                    num_iovas: u32::from(capacity),
                    allowed_iovas: PAGE_VA + ARRAY_AT as u64,
                    ..Default::default()
                };
                self.call(c, Op::IoasIovaRanges, &mut cmd, 0)
            }
            Step::AllowIovas {
                client: c,
                ioas,
                ref ranges,
            } => {
                let c = client(c);
                for (i, &(start, last)) in ranges.iter().enumerate() {
                    let at = ARRAY_AT + i * 16;
                    self.rig.pages[c][at..at + 16]
                        .copy_from_slice(iommu_iova_range { start, last }.as_bytes());
                }
                let mut cmd = iommu_ioas_allow_iovas {
                    size: 0,
                    ioas_id: self.resolve(c, ioas),
                    num_iovas: ranges.len() as u32,
                    allowed_iovas: PAGE_VA + ARRAY_AT as u64,
                    ..Default::default()
                };
                self.call(c, Op::IoasAllowIovas, &mut cmd, 0)
            }
            Step::Option {
                client: c,
                option_id,
                op,
                object,
                value,
            } => {
                let c = client(c);
                let mut cmd = iommu_option {
                    size: 0,
                    option_id: u32::from(option_id),
                    op: u16::from(op),
                    object_id: self.resolve(c, object),
                    val64: value,
                    ..Default::default()
                };
                self.call(c, Op::Option, &mut cmd, 0)
            }
            Step::VfioIoas {
                client: c,
                ioas,
                op,
            } => {
                let c = client(c);
                let mut cmd = iommu_vfio_ioas {
                    size: 0,
                    ioas_id: self.resolve(c, ioas),
                    op: u16::from(op),
                    ..Default::default()
                };
                let r = self.call(c, Op::VfioIoas, &mut cmd, 0);
                if r.is_ok() && cmd.ioas_id != 0 {
                    remember(&mut self.known[c].ioases, cmd.ioas_id);
                }
                r
            }
            Step::HwptAlloc {
                client: c,
                flags,
                dev,
                pt,
            } => {
                let c = client(c);
                let mut cmd = iommu_hwpt_alloc {
                    size: 0,
                    flags: step::flags(flags),
                    dev_id: self.resolve(c, dev),
                    pt_id: self.resolve(c, pt),
                    ..Default::default()
                };
                let r = self.call(c, Op::HwptAlloc, &mut cmd, 0);
                if r.is_ok() {
                    remember(&mut self.known[c].hwpts, cmd.out_hwpt_id);
                }
                r
            }
            Step::HwInfo {
                client: c,
                dev,
                data_len,
            } => {
                let c = client(c);
                let mut cmd = iommu_hw_info {
                    size: 0,
                    dev_id: self.resolve(c, dev),
                    data_len: u32::from(data_len),
                    data_uptr: PAGE_VA + ARRAY_AT as u64,
                    ..Default::default()
                };
                self.call(c, Op::GetHwInfo, &mut cmd, 0)
            }
            Step::Bind { client: c, index } => {
                let c = client(c);
                let mut cmd = vfio_device_bind_iommufd {
                    argsz: 0,
                    iommufd: -1,
                    ..Default::default()
                };
                let r = self.call(c, Op::VfioDeviceBindIommufd, &mut cmd, u64::from(index % 4));
                if r.is_ok() {
                    assert!(!self.held[c], "client {c} bound a device while held");
                    remember(&mut self.known[c].devices, cmd.out_devid);
                }
                r
            }
            Step::Attach { client: c, dev, pt } => {
                let c = client(c);
                let mut cmd = vfio_device_attach_iommufd_pt {
                    argsz: 0,
                    pt_id: self.resolve(c, pt),
                    ..Default::default()
                };
                let dev = self.resolve(c, dev);
                let r = self.call(c, Op::VfioDeviceAttachIommufdPt, &mut cmd, u64::from(dev));
                if r.is_ok() {
                    remember(&mut self.known[c].hwpts, cmd.pt_id);
                }
                r
            }
            Step::Detach { client: c, dev } => {
                let c = client(c);
                let mut cmd = vfio_device_detach_iommufd_pt {
                    argsz: 0,
                    ..Default::default()
                };
                let dev = self.resolve(c, dev);
                self.call(c, Op::VfioDeviceDetachIommufdPt, &mut cmd, u64::from(dev))
            }
            Step::Destroy { client: c, object } => {
                let c = client(c);
                let mut cmd = iommu_destroy {
                    size: 0,
                    id: self.resolve(c, object),
                };
                self.call(c, Op::Destroy, &mut cmd, 0)
            }
            Step::FaultRead { client: c } => {
                let mut cmd = iommu_fault_record {
                    size: 0,
                    ..Default::default()
                };
                self.call(client(c), Op::FaultRead, &mut cmd, 0)
            }
            Step::VfioScalar {
                client: c,
                which,
                arg,
            } => {
                let op = [
                    Op::VfioGetApiVersion,
                    Op::VfioCheckExtension,
                    Op::VfioSetIommu,
                ][usize::from(which % 3)];
                self.scalar(client(c), op, u64::from(arg), 0)
            }
            Step::VfioGetInfo { client: c, argsz } => {
                let mut cmd = vfio_iommu_type1_info {
                    argsz: u32::from(argsz),
                    ..Default::default()
                };
                let size = u64::from(argsz);
                self.rig
                    .call_with(client(c), Op::VfioIommuGetInfo, &mut cmd, size, 0)
            }
            Step::VfioMapDma {
                client: c,
                flags,
                va,
                iova,
                length,
            } => {
                let c = client(c);
                let mut cmd = vfio_iommu_type1_dma_map {
                    argsz: 0,
                    flags: step::flags(flags),
                    vaddr: va,
                    iova,
                    size: length,
                };
                let r = self.call(c, Op::VfioIommuMapDma, &mut cmd, 0);
                if r.is_ok() {
                    remember(&mut self.known[c].mappings, (iova, length));
                }
                r
            }
            Step::VfioUnmapDma {
                client: c,
                flags,
                iova,
                length,
            } => {
                let mut cmd = vfio_iommu_type1_dma_unmap {
                    argsz: 0,
                    flags: step::flags(flags),
                    iova,
                    size: length,
                    data: [],
                };
                self.call(client(c), Op::VfioIommuUnmapDma, &mut cmd, 0)
            }
            Step::Reset { client: c, target } => {
                let (c, target) = (client(c), usize::from(target % 4));
                let r = self.scalar(c, Op::ResetClient, target as u64, 0);
                if r.is_ok() {
                    self.assert_emptied(target, "after a reset");
                }
                r
            }
            Step::Quarantine {
                client: c,
                target,
                hold,
            } => {
                let (c, target) = (client(c), usize::from(target % 4));
                let hold = u64::from(hold % 3);
                let r = self.scalar(c, Op::Quarantine, target as u64, hold);
                if r.is_ok() {
                    self.held[target] = hold == 1;
                    if hold == 1 {
                        self.assert_emptied(target, "after a hold");
                    }
                }
                r
            }
            Step::Dump {
                client: c,
                target,
                offset,
                length,
                at,
            } => {
                let c = client(c);
                let mut cmd = iommu_dump {
                    size: DUMP_SIZE as u32,
                    target: if target == 0xff {
                        IOMMU_DUMP_SERVER
                    } else {
                        u32::from(target % 4)
                    },
                    length: u32::from(length % 0x1100),
                    offset,
                    data_uptr: PAGE_VA + u64::from(at % 0x1100),
                    ..Default::default()
                };
                self.call(c, Op::Dump, &mut cmd, 0)
            }
            Step::Fault { stream, iova } => {
                let stream = StreamId(STREAMS[usize::from(stream % 4)]);
                let queued_with = self.rig.server.report_fault(Fault {
                    stream,
                    kind: 0x10,
                    iova: Some(iova),
                    access: 1,
                });
                assert_eq!(
                    queued_with.map(|c| c.index()),
                    self.owner_of(stream),
                    "fault on {:#x} queued with the wrong client",
                    stream.0
                );
                return None;
            }
            Step::Dma { stream, iova } => {
                let stream = StreamId(STREAMS[usize::from(stream % 4)]);
                let iova = self.resolve_iova(self.owner_of(stream).unwrap_or(0), iova);
                let reached = self.rig.server.hardware().dma(stream, iova);
                if let Some(phys) = reached {
                    let owner = self.owner_of(stream);
                    let own = owner.is_some_and(|c| {
                        self.configs[c]
                            .regions
                            .iter()
                            .any(|r| phys >= r.paddr && phys - r.paddr < r.size)
                    });
                    assert!(
                        own,
                        "DMA by {:#x} at {iova:#x} reached {phys:#x}, outside its owner {owner:?}'s memory",
                        stream.0
                    );
                }
                return None;
            }
            Step::Raw {
                client: c,
                label,
                mr0,
                mr1,
                ref bytes,
            } => {
                let c = client(c);
                let label = if label & 0x8000 == 0 {
                    Op::ALL[usize::from(label) % Op::ALL.len()].label()
                } else {
                    u64::from(label & 0x1ff)
                };
                self.rig.pages[c][..bytes.len()].copy_from_slice(bytes);
                let reply = self.rig.server.handle(
                    id(c),
                    label,
                    [u64::from(mr0), u64::from(mr1)],
                    &mut self.rig.pages[c],
                );
                match reply.errno() {
                    None => Ok(reply.mr0),
                    Some(e) => Err(e),
                }
            }
        };
        Some(result)
    }

    fn finish(&mut self) {
        for target in 0..CLIENTS {
            let released = self.scalar(MANAGER, Op::Quarantine, target as u64, 0);
            assert_eq!(released, Ok(0), "release of client {target}");
            let reset = self.scalar(MANAGER, Op::ResetClient, target as u64, 0);
            assert_eq!(reset, Ok(0), "final reset of client {target}");
            self.assert_emptied(target, "at the end");
        }
        let store = self.rig.server.store();
        assert_eq!(
            store.areas_free(),
            store.areas_capacity(),
            "area nodes leaked"
        );
        assert_eq!(
            store.pages_free(),
            store.pages_capacity(),
            "backings leaked"
        );
        assert_eq!(
            self.rig.server.hardware().live_domains(),
            0,
            "domains leaked"
        );
    }
}

/// Whether to print each step and its result (FUZZ_STEPS_TRACE set), to
/// read what a crash input does.
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FUZZ_STEPS_TRACE").is_some())
}

/// The clients whose state a step may change: its caller, and the target
/// of a reset or a hold. None for what is not a request.
fn touched(step: &Step) -> Option<Vec<usize>> {
    let caller = |c: u8| usize::from(c) % CLIENTS;
    let target = |t: u8| Some(usize::from(t % 4)).filter(|&t| t < CLIENTS);
    match *step {
        Step::Fault { .. } | Step::Dma { .. } => None,
        Step::Reset { client, target: t }
        | Step::Quarantine {
            client, target: t, ..
        } => Some(
            [Some(caller(client)), target(t)]
                .into_iter()
                .flatten()
                .collect(),
        ),
        Step::Alloc { client } | Step::FaultRead { client } => Some(vec![caller(client)]),
        Step::Map { client, .. }
        | Step::Copy { client, .. }
        | Step::Unmap { client, .. }
        | Step::IovaRanges { client, .. }
        | Step::AllowIovas { client, .. }
        | Step::Option { client, .. }
        | Step::VfioIoas { client, .. }
        | Step::HwptAlloc { client, .. }
        | Step::HwInfo { client, .. }
        | Step::Bind { client, .. }
        | Step::Attach { client, .. }
        | Step::Detach { client, .. }
        | Step::Destroy { client, .. }
        | Step::VfioScalar { client, .. }
        | Step::VfioGetInfo { client, .. }
        | Step::VfioMapDma { client, .. }
        | Step::VfioUnmapDma { client, .. }
        | Step::Dump { client, .. }
        | Step::Raw { client, .. } => Some(vec![caller(client)]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (setup, steps) = decode(data);
    if tracing() {
        eprintln!("{setup:x?}");
    }
    let mut run = Run::new(setup);
    for (n, step) in steps.iter().enumerate() {
        let touched = touched(step);
        let before = touched.as_ref().map(|clients| run.state(clients));
        let result = run.step(step);
        if tracing() {
            eprintln!("{n}: {step:x?} -> {result:x?}");
        }
        if let Err(e) = run.rig.check() {
            panic!("invariant broken after step {n} {step:x?}: {e}");
        }
        if let (Some(Err(errno)), Some(before), Some(clients)) = (result, before, &touched) {
            let after = run.state(clients);
            assert!(
                before == after,
                "step {n} {step:x?} failed with {errno:?} but changed state:\n--- before\n{before}--- after\n{after}"
            );
        }
        for c in (0..CLIENTS).filter(|&c| run.held[c]) {
            run.assert_stopped(c, "while held");
        }
    }
    run.finish();
});
