//! What an SMMU can do, read once from its ID registers.

use core::fmt;

use super::regs::*;

/// The raw ID registers, kept for GET_HW_INFO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRegs {
    pub idr: [u32; 6],
    pub iidr: u32,
    pub aidr: u32,
}

/// The capabilities this driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Two-level stream tables are supported.
    pub two_level_strtab: bool,
    /// TLBI_NH_VA takes ranges (IDR3.RIL).
    pub range_invalidation: bool,
    /// 16-bit ASIDs; otherwise 8.
    pub asid16: bool,
    /// Table walks and queue accesses are cache coherent (IDR0.COHACC).
    pub coherent: bool,
    /// Output address bits.
    pub oas: u32,
    /// Input (virtual) address bits for stage 1.
    pub ias: u32,
    pub sid_bits: u32,
    pub cmdq_log2: u32,
    pub evtq_log2: u32,
    pub ids: IdRegs,
}

/// Why an SMMU cannot be used; each names the register field at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// IDR0.S1P = 0: no stage-1 translation.
    NoStage1,
    /// IDR0.TTF lacks AArch64 tables.
    NoAArch64Tables,
    /// IDR0.TTENDIAN: big-endian walks only.
    BigEndianOnly,
    /// IDR5.GRAN4K = 0.
    No4KGranule,
    /// IDR5.OAS holds a reserved encoding.
    BadOas(u32),
    /// IDR1.TABLES_PRESET or QUEUES_PRESET: fixed tables/queues, unsupported.
    Preset,
    /// IDR1.CMDQS / EVENTQS is zero.
    NoQueues,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::NoStage1 => {
                write!(f, "SMMU_IDR0.S1P=0: stage 1 translation not implemented")
            }
            ProbeError::NoAArch64Tables => {
                write!(f, "SMMU_IDR0.TTF: AArch64 translation tables not supported")
            }
            ProbeError::BigEndianOnly => {
                write!(f, "SMMU_IDR0.TTENDIAN: only big-endian table walks")
            }
            ProbeError::No4KGranule => write!(
                f,
                "SMMU_IDR5.GRAN4K=0: 4 KiB translation granule not supported"
            ),
            ProbeError::BadOas(v) => write!(f, "SMMU_IDR5.OAS={v}: reserved output address size"),
            ProbeError::Preset => write!(
                f,
                "SMMU_IDR1.TABLES_PRESET/QUEUES_PRESET: fixed tables are not supported"
            ),
            ProbeError::NoQueues => {
                write!(f, "SMMU_IDR1.CMDQS/EVENTQS=0: no command or event queue")
            }
        }
    }
}

impl Features {
    pub fn decode(ids: IdRegs) -> Result<Features, ProbeError> {
        let [idr0, idr1, _, idr3, _, idr5] = ids.idr;
        if idr0 & IDR0_S1P == 0 {
            return Err(ProbeError::NoStage1);
        }
        if idr0 & IDR0_TTF_AARCH64 == 0 {
            return Err(ProbeError::NoAArch64Tables);
        }
        if (idr0 >> IDR0_TTENDIAN_SHIFT) & 3 == IDR0_TTENDIAN_BIG {
            return Err(ProbeError::BigEndianOnly);
        }
        if idr5 & IDR5_GRAN4K == 0 {
            return Err(ProbeError::No4KGranule);
        }
        if idr1 & (IDR1_TABLES_PRESET | IDR1_QUEUES_PRESET) != 0 {
            return Err(ProbeError::Preset);
        }
        let oas = match idr5 & IDR5_OAS_MASK {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            // 52-bit output needs 64 KiB-granule tables; 48 is all 4 KiB uses.
            6 => 48,
            v => return Err(ProbeError::BadOas(v)),
        };
        let cmdq_log2 = (idr1 >> IDR1_CMDQS_SHIFT) & IDR1_QS_MASK;
        let evtq_log2 = (idr1 >> IDR1_EVENTQS_SHIFT) & IDR1_QS_MASK;
        if cmdq_log2 == 0 || evtq_log2 == 0 {
            return Err(ProbeError::NoQueues);
        }
        Ok(Features {
            two_level_strtab: (idr0 >> IDR0_ST_LEVEL_SHIFT) & 3 == IDR0_ST_LEVEL_2,
            range_invalidation: idr3 & IDR3_RIL != 0,
            asid16: idr0 & IDR0_ASID16 != 0,
            coherent: idr0 & IDR0_COHACC != 0,
            oas,
            // 52-bit VAs (IDR5.VAX) need 64 KiB granules; 4 KiB tops out at 48.
            ias: 48,
            sid_bits: idr1 & IDR1_SIDSIZE_MASK,
            cmdq_log2,
            evtq_log2,
            ids,
        })
    }

    /// Highest ASID usable.
    pub fn max_asid(&self) -> u16 {
        if self.asid16 {
            u16::MAX
        } else {
            u8::MAX as u16
        }
    }

    /// IDR5.OAS encoding of `oas`, for the CD's IPS field.
    pub fn ips(&self) -> u64 {
        match self.oas {
            32 => 0,
            36 => 1,
            40 => 2,
            42 => 3,
            44 => 4,
            _ => 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stage 1, AArch64 tables, 2-level stream tables, COHACC, ASID16;
    /// SIDSIZE 16, EVENTQS 19, CMDQS 19; RIL; OAS 44 bits, 4 KiB granule.
    fn good() -> IdRegs {
        IdRegs {
            idr: [
                (1 << 27) | (1 << 12) | (1 << 4) | (2 << 2) | 2,
                (19 << 21) | (19 << 16) | 16,
                0,
                1 << 10,
                0,
                (1 << 4) | 4,
            ],
            iidr: 0,
            aidr: 0,
        }
    }

    #[test]
    fn decodes_what_the_driver_uses() {
        let f = Features::decode(good()).unwrap();
        assert!(f.two_level_strtab && f.range_invalidation && f.asid16 && f.coherent);
        assert_eq!(
            (f.oas, f.ias, f.sid_bits, f.cmdq_log2, f.evtq_log2),
            (44, 48, 16, 19, 19)
        );
        assert_eq!(f.ips(), 4);
        assert_eq!(f.max_asid(), u16::MAX);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        let with = |i: usize, clear: u32, set: u32| {
            let mut ids = good();
            ids.idr[i] = (ids.idr[i] & !clear) | set;
            Features::decode(ids)
        };
        assert_eq!(with(0, 2, 0), Err(ProbeError::NoStage1));
        assert_eq!(with(0, 3 << 2, 1 << 2), Err(ProbeError::NoAArch64Tables));
        assert_eq!(with(0, 0, 3 << 21), Err(ProbeError::BigEndianOnly));
        assert_eq!(with(5, 1 << 4, 0), Err(ProbeError::No4KGranule));
        assert_eq!(with(5, 7, 7), Err(ProbeError::BadOas(7)));
        assert_eq!(with(1, 0, 1 << 30), Err(ProbeError::Preset));
        assert_eq!(with(1, 0x1f << 21, 0), Err(ProbeError::NoQueues));
        assert!(!with(0, 3 << 27, 0).unwrap().two_level_strtab);
        assert!(!with(3, 1 << 10, 0).unwrap().range_invalidation);
        assert_eq!(with(0, 1 << 12, 0).unwrap().max_asid(), 255);
        for e in [ProbeError::NoStage1, ProbeError::BadOas(7)] {
            let mut s = std::string::String::new();
            core::fmt::write(&mut s, format_args!("{e}")).unwrap();
            assert!(s.contains("SMMU_IDR"), "{s}");
        }
    }
}
