//! Stream table entries and context descriptors (IHI 0070 5.2, 5.4).

/// One STE: 64 bytes.
pub const STE_WORDS: usize = 8;
/// One CD: 64 bytes.
pub const CD_WORDS: usize = 8;
/// Stream IDs per level-2 stream table (SPLIT = 8, as Linux).
pub const STRTAB_SPLIT: u32 = 8;

const STE_V: u64 = 1;
const STE_CFG_S1_TRANS: u64 = 0b101 << 1;
const STE_S1_CTX_MASK: u64 = ((1 << 52) - 1) & !0x3f;
/// Write-back read-allocate CD fetches, inner shareable (word 1).
const STE1_S1CIR_WBRA: u64 = 1 << 2;
const STE1_S1COR_WBRA: u64 = 1 << 4;
const STE1_S1CSH_ISH: u64 = 3 << 6;
/// Use the incoming shareability.
const STE1_SHCFG_INCOMING: u64 = 1 << 44;

/// Words of an STE that terminates every transaction (default deny): an
/// invalid one (V = 0) rather than Config = abort, because the SMMU
/// records a C_BAD_STE event for each transaction an invalid STE stops,
/// while an abort STE stops them silently; a quarantined device's stray
/// DMA is then seen (and logged, and told to its client).
pub const fn ste_abort() -> [u64; STE_WORDS] {
    [0; STE_WORDS]
}

/// Config = abort (0b100) with V set.
const STE_CFG_ABORT: u64 = 0b100 << 1;

/// Words of an STE that terminates every transaction and records nothing:
/// a valid Config = abort entry. Only for a stream whose records were
/// stopped because it stormed: the stream is as closed as with
/// [`ste_abort`], but its DMA no longer fills the event queue.
pub const fn ste_silent_abort() -> [u64; STE_WORDS] {
    [STE_V | STE_CFG_ABORT, 0, 0, 0, 0, 0, 0, 0]
}

/// Whether an STE whose first word is `word0` terminates every transaction
/// (invalid, or valid with Config = abort).
pub const fn ste_aborts(word0: u64) -> bool {
    word0 == ste_abort()[0] || word0 == ste_silent_abort()[0]
}

/// Words of an STE that translates through the single CD at `cd_pa`.
pub const fn ste_s1(cd_pa: u64) -> [u64; STE_WORDS] {
    [
        STE_V | STE_CFG_S1_TRANS | (cd_pa & STE_S1_CTX_MASK),
        STE1_S1CIR_WBRA | STE1_S1COR_WBRA | STE1_S1CSH_ISH | STE1_SHCFG_INCOMING,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
}

/// The CD address of a valid stage-1 STE's first word, else `None`.
pub const fn ste_context(word0: u64) -> Option<u64> {
    if word0 & STE_V != 0 && word0 & (0b111 << 1) == STE_CFG_S1_TRANS {
        Some(word0 & STE_S1_CTX_MASK)
    } else {
        None
    }
}

/// A level-1 stream table descriptor pointing at `2^SPLIT` STEs.
pub const fn l1_desc(l2_pa: u64) -> u64 {
    // Span = SPLIT + 1 encodes 2^(Span-1) entries.
    (l2_pa & STE_S1_CTX_MASK) | (STRTAB_SPLIT as u64 + 1)
}

/// What a context descriptor describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdConfig {
    pub asid: u16,
    /// Physical address of the level-0/1 table.
    pub ttb0: u64,
    /// 64 - input address bits.
    pub t0sz: u32,
    /// IDR5.OAS encoding.
    pub ips: u64,
    pub mair: u64,
    /// Walks are cacheable and inner shareable (coherent SMMU).
    pub cacheable_walk: bool,
}

const CD0_TG0_4K: u64 = 0 << 6;
const CD0_IRGN0_WBRA: u64 = 1 << 8;
const CD0_ORGN0_WBRA: u64 = 1 << 10;
const CD0_SH0_ISH: u64 = 3 << 12;
const CD0_EPD1: u64 = 1 << 30;
const CD0_V: u64 = 1 << 31;
const CD0_IPS_SHIFT: u32 = 32;
const CD0_AA64: u64 = 1 << 41;
/// Record faults as events (translation, permission, access and address
/// size faults of the streams using this CD).
pub const CD0_R: u64 = 1 << 45;
/// Abort (rather than stall) faulting transactions.
const CD0_A: u64 = 1 << 46;
/// Non-shared ASID set: broadcast CPU TLBIs do not touch it.
const CD0_ASET: u64 = 1 << 47;
const CD0_ASID_SHIFT: u32 = 48;
const CD1_TTB0_MASK: u64 = ((1 << 52) - 1) & !0xf;

/// Words of a valid stage-1 CD; TTB1 is disabled (EPD1).
pub const fn cd(c: CdConfig) -> [u64; CD_WORDS] {
    let walk = if c.cacheable_walk {
        CD0_IRGN0_WBRA | CD0_ORGN0_WBRA | CD0_SH0_ISH
    } else {
        0
    };
    [
        (c.t0sz as u64 & 0x3f)
            | CD0_TG0_4K
            | walk
            | CD0_EPD1
            | CD0_V
            | ((c.ips & 7) << CD0_IPS_SHIFT)
            | CD0_AA64
            | CD0_R
            | CD0_A
            | CD0_ASET
            | ((c.asid as u64) << CD0_ASID_SHIFT),
        c.ttb0 & CD1_TTB0_MASK,
        0,
        c.mair,
        0,
        0,
        0,
        0,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abort_ste_is_invalid() {
        assert_eq!(ste_abort()[0] & 1, 0, "V = 0: aborts and records C_BAD_STE");
    }

    #[test]
    fn s1_ste_points_at_its_cd() {
        let ste = ste_s1(0x4321_0040);
        assert_eq!((ste[0] >> 1) & 7, 0b101);
        assert_eq!(ste[0] & STE_S1_CTX_MASK, 0x4321_0040);
        assert_eq!((ste[0] >> 59) & 0x1f, 0, "S1CDMax: one CD");
        assert_eq!((ste[0] >> 4) & 3, 0, "S1Fmt linear");
        assert_eq!(ste_context(ste[0]), Some(0x4321_0040));
        assert_eq!(ste_context(ste_abort()[0]), None);
    }

    #[test]
    fn cd_fields_land_where_the_spec_puts_them() {
        let w = cd(CdConfig {
            asid: 0x1234,
            ttb0: 0x8765_4000,
            t0sz: 16,
            ips: 4,
            mair: 0x44ff,
            cacheable_walk: true,
        });
        assert_eq!(w[0] & 0x3f, 16);
        assert_eq!((w[0] >> 6) & 3, 0, "TG0 4K");
        assert_eq!((w[0] >> 31) & 1, 1, "V");
        assert_eq!((w[0] >> 32) & 7, 4, "IPS");
        assert_eq!((w[0] >> 41) & 1, 1, "AA64");
        assert_eq!((w[0] >> 46) & 1, 1, "A");
        assert_eq!(w[0] >> 48, 0x1234);
        assert_eq!(w[1], 0x8765_4000);
        assert_eq!(w[3], 0x44ff);
    }

    #[test]
    fn silent_abort_is_a_valid_abort_ste() {
        let w = ste_silent_abort()[0];
        assert_eq!((w & 1, (w >> 1) & 7), (1, 0b100), "V = 1, Config = abort");
        assert!(ste_aborts(w) && ste_aborts(ste_abort()[0]));
        assert!(!ste_aborts(ste_s1(0x4000)[0]));
        assert_eq!(ste_context(w), None);
    }

    #[test]
    fn cds_record_faults_from_the_start() {
        let w = cd(CdConfig {
            asid: 1,
            ttb0: 0x1000,
            t0sz: 16,
            ips: 4,
            mair: 0,
            cacheable_walk: true,
        });
        assert_eq!(w[0] & CD0_R, CD0_R);
    }

    #[test]
    fn l1_descriptor_span() {
        assert_eq!(l1_desc(0x1000_4000) & 0x1f, 9);
        assert_eq!(l1_desc(0x1000_4000) & !0x1f, 0x1000_4000);
    }
}
