//! What can go wrong. Device faults and caller mistakes are distinct
//! variants so a driver PD can tell "reset the device" from "fix the
//! request".

use crate::status::Status;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    // The device.
    /// Registers read all ones: nothing answers at this BAR any more.
    NoDevice,
    /// The controller cannot use 4 KiB memory pages (CAP.MPSMIN).
    PageSize,
    /// The controller lacks the NVM command set (CAP.CSS).
    CommandSet,
    /// Queue entry sizes, block size or metadata this driver does not
    /// handle (from the identify data).
    Unsupported,
    /// Namespace 1 is absent or has no blocks.
    NoNamespace,
    /// A bounded wait ran out: the device did not answer in time.
    Timeout,
    /// The controller reports a fatal status (CSTS.CFS).
    Fatal,
    /// An admin command failed.
    Command(Status),
    /// The controller did not come back from a reset (it did not stop,
    /// or did not come up again). Commands that were in flight when it
    /// stopped answering stay unanswered, their slots, command ids and
    /// PRP lists out of use, since the device may still reach their
    /// buffers; [`crate::Nvme::reset`] tries again.
    Down,

    // The caller.
    /// Queue depth outside `2..=min(MAX_DEPTH, CAP.MQES + 1)`.
    Depth,
    /// The queue memory is smaller than [`crate::QueueMemory::bytes_needed`],
    /// its IOVA is not page aligned, or its range wraps.
    QueueMemory,
    /// The queue memory refused a read or write (out of its range).
    Memory,
    /// Every command slot is in use: poll for completions first.
    QueueFull,
    /// `wait` on a command id that is not in flight.
    NotInFlight(u16),
    /// A transfer of zero blocks.
    ZeroBlocks,
    /// Blocks beyond the end of the namespace.
    OutOfRange,
    /// More than the device's maximum transfer, 65536 blocks, or more pages
    /// than one PRP list holds.
    TooLarge,
    /// The pages given do not cover exactly the transfer.
    PageCount,
    /// The first page's IOVA is not 4-byte aligned, or a later page's is
    /// not page aligned.
    Misaligned,
}
