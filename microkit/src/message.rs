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
}

/// What a received badge means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A protected procedure call from this channel (answer with a reply).
    Protected(Channel),
    /// Notifications and IRQs: bit n set means channel n.
    Notified(u64),
}

/// Decodes a badge: bit 63 marks a protected call from channel `badge & 0x3f`.
pub const fn decode_badge(badge: u64) -> Delivery {
    if badge >> 63 != 0 {
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
        let chans: Vec<usize> = notified_channels((1 << 62) | 0b1010)
            .map(Channel::index)
            .collect();
        assert_eq!(chans, [1, 3, 62]);
        assert_eq!(notified_channels(1 << 63).count(), 0, "no channel 63");
    }

    #[test]
    fn slots_and_channels() {
        assert_eq!(
            (slot::notification(3), slot::endpoint(3), slot::irq(3)),
            (13, 77, 141)
        );
        assert!(Channel::new(62).is_some() && Channel::new(63).is_none());
    }
}
