//! What the device says about a finished command.

/// Status code type 0, status code 0x04: QEMU's answer when its own DMA
/// for a command fails (for example a PRP list the IOMMU does not let it
/// read).
const SC_DATA_TRANSFER_ERROR: u8 = 0x04;

/// A command's completion status, decoded from the completion entry's
/// status field (SCT and SC), the rest kept raw for the caller; or how
/// the driver ended a command whose completion never came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    /// Generic "data transfer error": the device could not move the data.
    DataTransferError,
    /// Any other status: its status code type and status code.
    Other {
        sct: u8,
        sc: u8,
    },
    /// No completion came within [`crate::COMMAND_POLLS`] polls: the
    /// driver reset the controller, so the device can no longer reach the
    /// command's buffers. Whether it ran is unknown.
    TimedOut,
    /// In flight when the controller was reset because another command
    /// timed out: stopped, whether it ran is unknown.
    Reset,
}

impl Status {
    /// From the completion's 15-bit status field (phase tag removed).
    pub(crate) fn from_field(field: u16) -> Status {
        let sc = (field & 0xff) as u8;
        let sct = ((field >> 8) & 0x7) as u8;
        match (sct, sc) {
            (0, 0) => Status::Success,
            (0, SC_DATA_TRANSFER_ERROR) => Status::DataTransferError,
            (sct, sc) => Status::Other { sct, sc },
        }
    }

    pub fn is_success(self) -> bool {
        self == Status::Success
    }
}

/// One finished I/O command: the id [`crate::Nvme::submit`] returned and
/// how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub cid: u16,
    pub status: Status,
}
