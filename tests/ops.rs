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
