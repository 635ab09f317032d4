//! SMMUv3 register offsets and fields (Arm IHI 0070, chapter 6).

pub const IDR0: usize = 0x00;
pub const IDR1: usize = 0x04;
pub const IDR2: usize = 0x08;
pub const IDR3: usize = 0x0c;
pub const IDR4: usize = 0x10;
pub const IDR5: usize = 0x14;
pub const IIDR: usize = 0x18;
pub const AIDR: usize = 0x1c;
pub const CR0: usize = 0x20;
pub const CR0ACK: usize = 0x24;
pub const CR1: usize = 0x28;
pub const CR2: usize = 0x2c;
pub const GBPA: usize = 0x44;
pub const IRQ_CTRL: usize = 0x50;
pub const IRQ_CTRLACK: usize = 0x54;
pub const GERROR: usize = 0x60;
pub const GERRORN: usize = 0x64;
pub const GERROR_IRQ_CFG0: usize = 0x68;
pub const STRTAB_BASE: usize = 0x80;
pub const STRTAB_BASE_CFG: usize = 0x88;
pub const CMDQ_BASE: usize = 0x90;
pub const CMDQ_PROD: usize = 0x98;
pub const CMDQ_CONS: usize = 0x9c;
pub const EVENTQ_BASE: usize = 0xa0;
pub const EVENTQ_IRQ_CFG0: usize = 0xb0;
pub const PRIQ_IRQ_CFG0: usize = 0xd0;
/// The event queue indices live in register page 1.
pub const EVENTQ_PROD: usize = 0x1_00a8;
pub const EVENTQ_CONS: usize = 0x1_00ac;

pub const IDR0_S1P: u32 = 1 << 1;
pub const IDR0_TTF_AARCH64: u32 = 1 << 3;
pub const IDR0_COHACC: u32 = 1 << 4;
pub const IDR0_ASID16: u32 = 1 << 12;
pub const IDR0_TTENDIAN_SHIFT: u32 = 21;
pub const IDR0_TTENDIAN_BIG: u32 = 3;
pub const IDR0_ST_LEVEL_SHIFT: u32 = 27;
pub const IDR0_ST_LEVEL_2: u32 = 1;

pub const IDR1_SIDSIZE_MASK: u32 = 0x3f;
pub const IDR1_EVENTQS_SHIFT: u32 = 16;
pub const IDR1_CMDQS_SHIFT: u32 = 21;
pub const IDR1_QS_MASK: u32 = 0x1f;
pub const IDR1_QUEUES_PRESET: u32 = 1 << 29;
pub const IDR1_TABLES_PRESET: u32 = 1 << 30;

pub const IDR3_RIL: u32 = 1 << 10;

pub const IDR5_OAS_MASK: u32 = 0x7;
pub const IDR5_GRAN4K: u32 = 1 << 4;
pub const IDR5_VAX_SHIFT: u32 = 10;

pub const CR0_SMMUEN: u32 = 1 << 0;
pub const CR0_EVENTQEN: u32 = 1 << 2;
pub const CR0_CMDQEN: u32 = 1 << 3;

/// Inner-shareable, write-back cacheable table and queue accesses.
pub const CR1_VALUE: u32 = (3 << 10) | (1 << 8) | (1 << 6) | (3 << 4) | (1 << 2) | 1;
/// Record C_BAD_STREAMID for streams outside the table.
pub const CR2_RECINVSID: u32 = 1 << 1;

pub const GBPA_ABORT: u32 = 1 << 20;
pub const GBPA_UPDATE: u32 = 1 << 31;

pub const GERROR_CMDQ_ERR: u32 = 1 << 0;
pub const GERROR_EVTQ_ABT_ERR: u32 = 1 << 2;
/// Every GERROR bit the architecture defines.
pub const GERROR_ALL: u32 = 0x1fd;

pub const STRTAB_BASE_RA: u64 = 1 << 62;
pub const STRTAB_FMT_LINEAR: u32 = 0;
pub const STRTAB_FMT_2LVL: u32 = 1;
pub const STRTAB_FMT_SHIFT: u32 = 16;
pub const STRTAB_SPLIT_SHIFT: u32 = 6;

pub const Q_BASE_RA: u64 = 1 << 62;
pub const Q_BASE_ADDR_MASK: u64 = ((1 << 52) - 1) & !0x1f;
pub const Q_OVF: u32 = 1 << 31;
pub const CMDQ_CONS_ERR_SHIFT: u32 = 24;
pub const CMDQ_CONS_ERR_MASK: u32 = 0x7f;
