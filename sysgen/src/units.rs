//! The sizes a system description counts in.

/// The page Microkit maps and the SMMU translates in.
pub const PAGE: u64 = 0x1000;
