//! The parts of the ABI that are plain data: message info words, channels,
//! badges. Host-tested.

/// seL4 message info: label in bits 63:12, caps unwrapped 11:9, extra caps
/// 8:7, length (message registers) 6:0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageInfo(pub u64);

impl MessageInfo {
    /// Most message registers a message can carry.
    pub const MAX_LENGTH: u64 = 120;

    /// A message with `label` and `length` message registers (clamped to
    /// 0..=MAX_LENGTH and the label to its 52 bits).
    pub const fn new(label: u64, length: u64) -> MessageInfo {
        let length = if length > Self::MAX_LENGTH {
            Self::MAX_LENGTH
        } else {
            length
        };
        MessageInfo(((label & ((1 << 52) - 1)) << 12) | length)
    }

    pub const fn label(self) -> u64 {
        self.0 >> 12
    }

    pub const fn length(self) -> u64 {
        self.0 & 0x7f
    }

    pub const fn extra_caps(self) -> u64 {
        (self.0 >> 7) & 0x3
    }

    pub const fn caps_unwrapped(self) -> u64 {
        (self.0 >> 9) & 0x7
    }
}

/// A Microkit channel of this PD (0..=62).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(u8);

impl Channel {
    /// Channels a PD can have.
    pub const COUNT: usize = 63;

    pub const fn new(index: usize) -> Option<Channel> {
        if index < Self::COUNT {
            Some(Channel(index as u8))
        } else {
            None
        }
    }

    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Capability slots Microkit gives every PD.
pub mod slot {
    /// The endpoint (or notification) the PD receives on.
    pub const INPUT: u64 = 1;
    /// Where the reply capability of a protected call lands.
    pub const REPLY: u64 = 4;
    const NOTIFICATION_BASE: u64 = 10;
    const ENDPOINT_BASE: u64 = 74;
    const IRQ_BASE: u64 = 138;
    const TCB_BASE: u64 = 202;

    /// Notification capability for signalling over a channel.
    pub const fn notification(index: usize) -> u64 {
        NOTIFICATION_BASE + index as u64
    }

    /// Endpoint capability for protected calls over a channel.
    pub const fn endpoint(index: usize) -> u64 {
        ENDPOINT_BASE + index as u64
    }

    /// IRQ handler capability of an IRQ channel.
    pub const fn irq(index: usize) -> u64 {
        IRQ_BASE + index as u64
    }

    /// A child PD's TCB capability, which its parent holds.
    pub const fn tcb(child: super::Child) -> u64 {
        TCB_BASE + child.index() as u64
    }
}

/// A child PD of this PD, by its `id` in the system description (0..=61,
/// the bound the project's configuration checker enforces).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Child(u8);

impl Child {
    /// Child ids a PD can use.
    pub const COUNT: usize = 62;

    pub const fn new(index: usize) -> Option<Child> {
        if index < Self::COUNT {
            Some(Child(index as u8))
        } else {
            None
        }
    }

    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where every PD image starts (link script pd.ld puts `_start` first in
/// .text), so a parent restarts any child there.
pub const ENTRY: u64 = 0x20_0000;

/// seL4 fault types: the label of the fault message a parent receives.
pub mod fault {
    pub const CAP_FAULT: u64 = 1;
    pub const UNKNOWN_SYSCALL: u64 = 2;
    pub const USER_EXCEPTION: u64 = 3;
    /// Debug kernels only.
    pub const DEBUG_EXCEPTION: u64 = 4;
    pub const TIMEOUT: u64 = 5;
    /// A PD's access outside its address space, or a guest's outside its
    /// stage-2 tables (message registers in [`crate::vm_fault`]).
    pub const VM_FAULT: u64 = 6;
    /// A guest's virtual GIC needs its VMM (hypervisor kernels only).
    pub const VGIC_MAINTENANCE: u64 = 7;
    /// A guest trapped to its VMM: `hvc`, `smc`, a trapped system register
    /// (the syndrome in [`crate::vcpu_fault`]).
    pub const VCPU_FAULT: u64 = 8;
    /// A per-CPU interrupt of the guest's (its virtual timer) fired.
    pub const VPPI_EVENT: u64 = 9;

    /// The fault type's name, for logs.
    pub const fn name(label: u64) -> &'static str {
        match label {
            CAP_FAULT => "capability fault",
            UNKNOWN_SYSCALL => "unknown syscall",
            USER_EXCEPTION => "user exception",
            DEBUG_EXCEPTION => "debug exception",
            TIMEOUT => "timeout",
            VM_FAULT => "VM fault",
            VGIC_MAINTENANCE => "VGIC maintenance",
            VCPU_FAULT => "vCPU fault",
            VPPI_EVENT => "VPPI event",
            _ => "fault",
        }
    }
}

/// What a received badge means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A protected procedure call from this channel (answer with a reply).
    Protected(Channel),
    /// Notifications and IRQs: bit n set means channel n.
    Notified(u64),
    /// A child faulted: the message is seL4's fault message.
    Fault(Child),
}

/// Decodes a badge as libmicrokit does: bit 62 marks a fault of child
/// `badge & 0xff`, bit 63 a protected call from channel `badge & 0x3f`.
pub const fn decode_badge(badge: u64) -> Delivery {
    if (badge >> 62) & 1 != 0 {
        // Ids above the range never come from the tool's badges; the mask
        // keeps a stray one in range rather than trusting it.
        Delivery::Fault(Child((badge & 0xff) as u8 % Child::COUNT as u8))
    } else if badge >> 63 != 0 {
        Delivery::Protected(Channel((badge & 0x3f) as u8))
    } else {
        Delivery::Notified(badge)
    }
}

/// The channels a notification badge names, lowest first.
pub fn notified_channels(mut bits: u64) -> impl Iterator<Item = Channel> {
    core::iter::from_fn(move || {
        while bits != 0 {
            let index = bits.trailing_zeros();
            bits &= bits - 1;
            if let Some(ch) = Channel::new(index as usize) {
                return Some(ch);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_info_fields() {
        let m = MessageInfo::new(0x85, 2);
        assert_eq!(m.0, (0x85 << 12) | 2);
        assert_eq!(
            (m.label(), m.length(), m.extra_caps(), m.caps_unwrapped()),
            (0x85, 2, 0, 0)
        );
        assert_eq!(MessageInfo::new(1, 500).length(), 120, "clamped");
        let raw = MessageInfo((7 << 12) | (5 << 9) | (2 << 7) | 3);
        assert_eq!(
            (
                raw.label(),
                raw.caps_unwrapped(),
                raw.extra_caps(),
                raw.length()
            ),
            (7, 5, 2, 3)
        );
    }

    #[test]
    fn badges() {
        assert_eq!(
            decode_badge((1 << 63) | 5),
            Delivery::Protected(Channel::new(5).unwrap())
        );
        assert_eq!(decode_badge(0b1010), Delivery::Notified(0b1010));
        assert_eq!(
            decode_badge((1 << 62) | 7),
            Delivery::Fault(Child::new(7).unwrap())
        );
        let chans: Vec<usize> = notified_channels((1 << 62) | 0b1010)
            .map(Channel::index)
            .collect();
        assert_eq!(chans, [1, 3, 62]);
        assert_eq!(notified_channels(1 << 63).count(), 0, "no channel 63");
    }

    #[test]
    fn fault_labels() {
        // seL4_Fault_tag of the hypervisor kernel (sel4_arch/types_gen.h).
        assert_eq!(
            (
                fault::VM_FAULT,
                fault::VGIC_MAINTENANCE,
                fault::VCPU_FAULT,
                fault::VPPI_EVENT
            ),
            (6, 7, 8, 9)
        );
        assert_eq!(fault::name(8), "vCPU fault");
        assert_eq!(fault::name(6), "VM fault");
        assert_eq!(fault::name(10), "fault");
    }

    #[test]
    fn slots_and_channels() {
        assert_eq!(
            (slot::notification(3), slot::endpoint(3), slot::irq(3)),
            (13, 77, 141)
        );
        assert!(Channel::new(62).is_some() && Channel::new(63).is_none());
        assert_eq!(slot::tcb(Child::new(3).unwrap()), 205);
        assert!(Child::new(61).is_some() && Child::new(62).is_none());
    }
}
