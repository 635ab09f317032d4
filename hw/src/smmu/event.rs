//! Event queue records (IHI 0070 7.3), decoded into typed events, and
//! those as the fault records the server hands to clients.

use iommu_types::fault::{
    Fault, IOMMU_FAULT_ACCESS_EXEC, IOMMU_FAULT_ACCESS_PRIV, IOMMU_FAULT_ACCESS_READ,
    IOMMU_FAULT_ACCESS_WRITE,
};
use iommu_types::StreamId;

/// One record: 32 bytes.
pub const EVENT_WORDS: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Unsupported upstream transaction.
    UnsupportedUpstream,
    /// StreamID outside the stream table.
    BadStreamId,
    /// External abort fetching an STE.
    SteFetch,
    /// The STE is malformed.
    BadSte,
    BadAtsTreq,
    /// The STE disables the stream.
    StreamDisabled,
    TranslationForbidden,
    BadSubstreamId,
    /// External abort fetching a CD.
    CdFetch,
    /// The CD is malformed.
    BadCd,
    /// External abort during a table walk.
    WalkExternalAbort,
    /// No valid translation for the address.
    Translation,
    /// Output address beyond the configured size.
    AddressSize,
    /// Access flag fault.
    Access,
    /// The access is not permitted by the translation.
    Permission,
    TlbConflict,
    ConfigCacheConflict,
    PageRequest,
    VmsFetch,
    /// A type this driver does not know.
    Unknown(u8),
}

impl EventKind {
    pub fn from_code(code: u8) -> EventKind {
        match code {
            0x01 => EventKind::UnsupportedUpstream,
            0x02 => EventKind::BadStreamId,
            0x03 => EventKind::SteFetch,
            0x04 => EventKind::BadSte,
            0x05 => EventKind::BadAtsTreq,
            0x06 => EventKind::StreamDisabled,
            0x07 => EventKind::TranslationForbidden,
            0x08 => EventKind::BadSubstreamId,
            0x09 => EventKind::CdFetch,
            0x0a => EventKind::BadCd,
            0x0b => EventKind::WalkExternalAbort,
            0x10 => EventKind::Translation,
            0x11 => EventKind::AddressSize,
            0x12 => EventKind::Access,
            0x13 => EventKind::Permission,
            0x20 => EventKind::TlbConflict,
            0x21 => EventKind::ConfigCacheConflict,
            0x24 => EventKind::PageRequest,
            0x25 => EventKind::VmsFetch,
            other => EventKind::Unknown(other),
        }
    }

    /// The architecture's name, as in the specification.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::UnsupportedUpstream => "F_UUT",
            EventKind::BadStreamId => "C_BAD_STREAMID",
            EventKind::SteFetch => "F_STE_FETCH",
            EventKind::BadSte => "C_BAD_STE",
            EventKind::BadAtsTreq => "F_BAD_ATS_TREQ",
            EventKind::StreamDisabled => "F_STREAM_DISABLED",
            EventKind::TranslationForbidden => "F_TRANSL_FORBIDDEN",
            EventKind::BadSubstreamId => "C_BAD_SUBSTREAMID",
            EventKind::CdFetch => "F_CD_FETCH",
            EventKind::BadCd => "C_BAD_CD",
            EventKind::WalkExternalAbort => "F_WALK_EABT",
            EventKind::Translation => "F_TRANSLATION",
            EventKind::AddressSize => "F_ADDR_SIZE",
            EventKind::Access => "F_ACCESS",
            EventKind::Permission => "F_PERMISSION",
            EventKind::TlbConflict => "F_TLB_CONFLICT",
            EventKind::ConfigCacheConflict => "F_CFG_CONFLICT",
            EventKind::PageRequest => "E_PAGE_REQUEST",
            EventKind::VmsFetch => "F_VMS_FETCH",
            EventKind::Unknown(_) => "UNKNOWN",
        }
    }

    /// Whether the record carries the faulting input address and access.
    fn has_address(&self) -> bool {
        matches!(
            self,
            EventKind::UnsupportedUpstream
                | EventKind::TranslationForbidden
                | EventKind::WalkExternalAbort
                | EventKind::Translation
                | EventKind::AddressSize
                | EventKind::Access
                | EventKind::Permission
                | EventKind::TlbConflict
        )
    }
}

/// Read or write, as the faulting transaction was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    Write,
}

/// A decoded event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub sid: StreamId,
    pub ssid: Option<u32>,
    /// The input address, for the kinds that carry one.
    pub iova: Option<u64>,
    pub access: Option<Access>,
    /// Instruction (not data) access.
    pub instruction: bool,
    /// Privileged access.
    pub privileged: bool,
    pub raw: [u64; EVENT_WORDS],
}

impl Event {
    pub fn decode(raw: [u64; EVENT_WORDS]) -> Event {
        let kind = EventKind::from_code(raw[0] as u8);
        let ssv = raw[0] & (1 << 11) != 0;
        let with_address = kind.has_address();
        Event {
            kind,
            sid: StreamId((raw[0] >> 32) as u32),
            ssid: ssv.then_some(((raw[0] >> 12) & 0xf_ffff) as u32),
            iova: with_address.then_some(raw[2]),
            access: with_address.then_some(if raw[1] & (1 << 35) != 0 {
                Access::Read
            } else {
                Access::Write
            }),
            // PnU is bit 33 and InD bit 34 of the second word (IHI 0070 7.3).
            instruction: with_address && raw[1] & (1 << 34) != 0,
            privileged: with_address && raw[1] & (1 << 33) != 0,
            raw,
        }
    }

    /// The fault as the server reports it: the protocol's kinds are the
    /// architecture's event codes.
    pub fn fault(&self) -> Fault {
        let mut access = match self.access {
            Some(Access::Read) => IOMMU_FAULT_ACCESS_READ,
            Some(Access::Write) => IOMMU_FAULT_ACCESS_WRITE,
            None => 0,
        };
        if self.instruction {
            access |= IOMMU_FAULT_ACCESS_EXEC;
        }
        if self.privileged {
            access |= IOMMU_FAULT_ACCESS_PRIV;
        }
        Fault {
            stream: self.sid,
            kind: (self.raw[0] & 0xff) as u32,
            iova: self.iova,
            access,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_fault_fields() {
        let e = Event::decode([0x10 | (8u64 << 32), 1 << 35, 0xdead_b000, 0]);
        assert_eq!(e.kind, EventKind::Translation);
        assert_eq!(e.kind.name(), "F_TRANSLATION");
        assert_eq!(
            (e.sid, e.iova, e.access),
            (StreamId(8), Some(0xdead_b000), Some(Access::Read))
        );
        let w = Event::decode([0x13 | (16u64 << 32), 0, 0x1000, 0]);
        assert_eq!(
            (w.kind, w.access),
            (EventKind::Permission, Some(Access::Write))
        );
    }

    #[test]
    fn configuration_errors_carry_no_address() {
        let e = Event::decode([0x04 | (3u64 << 32), 0, 0x1234, 0]);
        assert_eq!(
            (e.kind, e.sid, e.iova, e.access),
            (EventKind::BadSte, StreamId(3), None, None)
        );
        assert_eq!(
            Event::decode([0x7f, 0, 0, 0]).kind,
            EventKind::Unknown(0x7f)
        );
        for code in 0..=0xffu8 {
            let kind = EventKind::from_code(code);
            if let EventKind::Unknown(c) = kind {
                assert_eq!(c, code);
            } else {
                assert_ne!(kind.name(), "UNKNOWN");
            }
        }
    }

    #[test]
    fn events_become_protocol_faults() {
        use iommu_types::fault::{IOMMU_FAULT_KIND_F_PERMISSION, IOMMU_FAULT_KIND_F_TRANSLATION};
        let read = Event::decode([0x10 | (8u64 << 32), 1 << 35, 0xdead_b000, 0]);
        assert_eq!(
            read.fault(),
            Fault {
                stream: StreamId(8),
                kind: IOMMU_FAULT_KIND_F_TRANSLATION,
                iova: Some(0xdead_b000),
                access: IOMMU_FAULT_ACCESS_READ,
            }
        );
        let priv_exec_write = Event::decode([0x13 | (16u64 << 32), 3 << 33, 0x1000, 0]);
        assert_eq!(
            priv_exec_write.fault(),
            Fault {
                stream: StreamId(16),
                kind: IOMMU_FAULT_KIND_F_PERMISSION,
                iova: Some(0x1000),
                access: IOMMU_FAULT_ACCESS_WRITE
                    | IOMMU_FAULT_ACCESS_EXEC
                    | IOMMU_FAULT_ACCESS_PRIV,
            }
        );
    }
}
