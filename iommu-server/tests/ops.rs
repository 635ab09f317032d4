//! The op table binds every operation to its own struct and handler: a
//! request too short for its struct is EINVAL (the table read it with the
//! op's minimum size), never ENOTTY (which the table answers when an op is
//! paired with another op's handler), and the scalar ops answer without a
//! struct.

mod common;

use common::{client, MockHw, Rig};
use iommu_proto::{Errno, Framing, Op};

#[test]
fn every_op_reaches_its_own_handler() {
    let mut rig = Rig::new(MockHw::new(), &[client("a").build()]);
    for op in Op::ALL {
        let mut page = vec![0u8; 4096];
        let reply = rig
            .server
            .handle(common::id(0), op.label(), [0, 0], &mut page);
        match op.framing() {
            Framing::Size | Framing::Argsz => assert_eq!(
                reply.errno(),
                Some(Errno::EINVAL),
                "{}: a zero-length request",
                op.name()
            ),
            // GET_API_VERSION and CHECK_EXTENSION answer, SET_IOMMU(0) is
            // EINVAL, RESET_CLIENT(0) resets the caller.
            Framing::Scalar => assert_ne!(reply.errno(), Some(Errno::ENOTTY), "{}", op.name()),
        }
    }
    let mut page = vec![0u8; 4096];
    let unknown = rig.server.handle(common::id(0), 0x7f, [0, 0], &mut page);
    assert_eq!(unknown.errno(), Some(Errno::ENOTTY));
}

/// A command page that counts every read of every byte.
struct Counting {
    bytes: std::cell::RefCell<Vec<u8>>,
    reads: std::cell::RefCell<Vec<u32>>,
}

impl mmio::Memory for Counting {
    fn len(&self) -> usize {
        self.bytes.borrow().len()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        let bytes = self.bytes.borrow();
        let Some(src) = bytes.get(offset..offset + out.len()) else {
            return false;
        };
        out.copy_from_slice(src);
        for r in &mut self.reads.borrow_mut()[offset..offset + out.len()] {
            *r += 1;
        }
        true
    }

    fn write(&self, offset: usize, data: &[u8]) -> bool {
        let mut bytes = self.bytes.borrow_mut();
        match bytes.get_mut(offset..offset + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// Double-fetch protection: whatever a request names (its struct, the
/// bytes past it, its arrays), the server reads each byte at most once,
/// so nothing a client changes during a call can pass validation in one
/// read and act differently in another.
#[test]
fn every_byte_of_a_request_is_read_at_most_once() {
    use iommu_proto::iommufd::*;
    use zerocopy::IntoBytes;

    static REGIONS: [iommu_types::config::Region; 1] =
        [common::region(0x10_0000, 0x10_0000, 0x8000_0000)];
    let mut rig = Rig::new(MockHw::new(), &[client("a").regions(&REGIONS).build()]);
    let ioas = rig.alloc(0).unwrap();
    let page_va = common::PAGE_VA;
    let mut run = |op: Op, request: &[u8], size: u64| {
        let page = Counting {
            bytes: std::cell::RefCell::new(vec![0; 4096]),
            reads: std::cell::RefCell::new(vec![0; 4096]),
        };
        page.bytes.borrow_mut()[..request.len()].copy_from_slice(request);
        // Two ranges for ALLOW_IOVAS to read, room for IOVA_RANGES to write.
        let ranges = [
            iommu_iova_range {
                start: 0x1000,
                last: 0xffff,
            },
            iommu_iova_range {
                start: 0x10_0000,
                last: 0x1f_ffff,
            },
        ];
        page.bytes.borrow_mut()[256..256 + 32].copy_from_slice(ranges.as_bytes());
        let _ = rig
            .server
            .serve(common::id(0), op.label(), [size, 0], &page);
        let reads = page.reads.borrow();
        let most = reads.iter().copied().max().unwrap();
        assert!(most <= 1, "{}: a byte was read {most} times", op.name());
        assert!(
            reads[..size as usize].iter().all(|&r| r == 1),
            "{}: the struct is read, all of it",
            op.name()
        );
        reads[256..288].iter().all(|&r| r == 1)
    };
    let map = iommu_ioas_map {
        size: 40,
        flags: IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
        ioas_id: ioas,
        user_va: 0x10_0000,
        length: 0x1000,
        ..Default::default()
    };
    assert!(!run(Op::IoasMap, map.as_bytes(), 40), "nothing else is");
    // A longer struct than the server knows: the zero tail is read once.
    let mut long = map.as_bytes().to_vec();
    long.resize(128, 0);
    long[..4].copy_from_slice(&128u32.to_ne_bytes());
    run(Op::IoasMap, &long, 128);
    let allow = iommu_ioas_allow_iovas {
        size: 24,
        ioas_id: ioas,
        num_iovas: 2,
        allowed_iovas: page_va + 256,
        ..Default::default()
    };
    assert!(
        run(Op::IoasAllowIovas, allow.as_bytes(), 24),
        "the array is read"
    );
    let ranges = iommu_ioas_iova_ranges {
        size: 32,
        ioas_id: ioas,
        num_iovas: 4,
        allowed_iovas: page_va + 512,
        ..Default::default()
    };
    run(Op::IoasIovaRanges, ranges.as_bytes(), 32);
    let unmap = iommu_ioas_unmap {
        size: 24,
        ioas_id: ioas,
        iova: 0,
        length: u64::MAX,
    };
    run(Op::IoasUnmap, unmap.as_bytes(), 24);
}
