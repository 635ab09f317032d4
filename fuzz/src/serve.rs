//! libFuzzer target: arbitrary requests from three clients (one a manager)
//! through `Server::serve`, with the invariants of `Server::check` after
//! each, and hardware faults on arbitrary streams in between. A panic, a
//! broken invariant or an out-of-bounds access is a finding.
//!
//! Input: a sequence of records, each
//! `[client][label (2)][mr0 (2)][mr1 (2)][len (1)][page bytes (len)]`,
//! read until the input runs out; a label byte pair outside the protocol
//! is kept (ENOTTY is an answer too).

#![no_main]

use iommu_proto::Op;
use iommu_testkit::rig::{client, device, id, region, DEFAULT_QUOTA};
use iommu_testkit::{MockHw, Rig};
use iommu_types::config::{DeviceConfig, Quota, Region};
use iommu_types::{Fault, StreamId};
use libfuzzer_sys::fuzz_target;
use mmio::cells;

static REGIONS: [Region; 2] = [
    region(0x10_0000, 0x10_0000, 0x8000_0000),
    region(0x40_0000, 0x4000, 0x8100_0000),
];
static DEV_A: [DeviceConfig; 2] = [device("a0", 0x8), device("a1", 0x10)];
static DEV_B: [DeviceConfig; 1] = [device("b0", 0x18)];
/// Small enough that every quota is reached within an input.
const QUOTA: Quota = Quota {
    objects: 12,
    mapped_pages: 200,
    mappings: 64,
    ..DEFAULT_QUOTA
};

/// Reads the input a field at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }

    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }
}

fuzz_target!(|data: &[u8]| {
    let configs = [
        client("a")
            .regions(&REGIONS)
            .devices(&DEV_A)
            .quota(QUOTA)
            .build(),
        client("b")
            .regions(&REGIONS[..1])
            .devices(&DEV_B)
            .quota(QUOTA)
            .build(),
        client("m").quota(QUOTA).manager(true).build(),
    ];
    let mut rig = Rig::new(MockHw::new(), &configs);
    let mut input = Input(data);
    let mut page = vec![0u8; iommu_server::COMMAND_PAGE];
    while !input.0.is_empty() {
        let who = usize::from(input.u8() % 4);
        let raw = input.u16();
        // Mostly real operations, sometimes any label at all.
        let label = if raw & 0x8000 == 0 {
            Op::ALL[usize::from(raw) % Op::ALL.len()].label()
        } else {
            u64::from(raw & 0x1ff)
        };
        let mr0 = u64::from(input.u16());
        let mr1 = u64::from(input.u16());
        let len = usize::from(input.u8());
        let body = input.bytes(len);
        page[..body.len()].copy_from_slice(body);
        if who == 3 {
            // Not a request: a fault on an arbitrary stream, as the SMMU
            // would report it.
            let _ = rig.server.report_fault(Fault {
                stream: StreamId(u32::from(raw & 0x1f)),
                kind: 0x10,
                iova: Some(mr0 << 12),
                access: 1,
            });
            continue;
        }
        let _ = rig
            .server
            .serve(id(who), label, [mr0, mr1], &cells(&mut page));
        if let Err(e) = rig.check() {
            panic!("invariant broken after label {label:#x} from client {who}: {e}");
        }
    }
});
