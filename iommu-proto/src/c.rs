//! The protocol in C: `iommu_proto.h`, written from the same declarations
//! the server decodes (the structs' fields come from `wire_struct!`, the
//! labels from [`Op::ALL`], the constants' values from their Rust
//! definitions), for C clients: `pd-clients/iommu-client/include/iommu_client.h`
//! includes it. `cargo run -p sysgen -- --c-header` prints it, and `make`
//! writes it to `build/include/`. The header checks itself: every struct's
//! size and every field's offset is an `IOMMU_STATIC_ASSERT`, which is
//! C11's `_Static_assert` and, in C99 (which has none), a typedef of an
//! array whose size is negative when the condition fails: the header is
//! C99 and C11 (and later) alike.

use core::fmt::{self, Write};

use crate::dump::*;
use crate::fault::*;
use crate::iommufd::*;
use crate::op::{Op, IOMMU_QUARANTINE_STATIC, MR_DEVICE, MR_SIZE, MR_VALUE};
use crate::vfio::*;

/// A C type a wire field can have.
pub trait CType {
    /// Its C spelling (element type for arrays).
    const NAME: &'static str;
    /// For arrays, the element count (0 is C's flexible array member).
    const LEN: Option<usize> = None;
}

impl CType for u8 {
    const NAME: &'static str = "uint8_t";
}
impl CType for u16 {
    const NAME: &'static str = "uint16_t";
}
impl CType for u32 {
    const NAME: &'static str = "uint32_t";
}
impl CType for u64 {
    const NAME: &'static str = "uint64_t";
}
impl CType for i32 {
    const NAME: &'static str = "int32_t";
}
impl<T: CType, const N: usize> CType for [T; N] {
    const NAME: &'static str = T::NAME;
    const LEN: Option<usize> = Some(N);
}

/// One field of a wire struct, as C lays it out.
#[derive(Clone, Copy, Debug)]
pub struct CField {
    /// The field's name (Linux's, with `__reserved` spelled `reserved`).
    pub name: &'static str,
    /// Its C type.
    pub ty: &'static str,
    /// Its element count, for arrays.
    pub len: Option<usize>,
    /// Its offset in the struct.
    pub offset: usize,
}

/// A wire struct described to C.
pub trait CStruct {
    /// The struct's tag.
    const NAME: &'static str;
    /// `sizeof`.
    const SIZE: usize;
    /// The fields in order.
    const FIELDS: &'static [CField];
}

/// An integer constant of the protocol: its name, value and width.
#[derive(Clone, Copy, Debug)]
pub struct CConst {
    /// The C name (the Rust constant's).
    pub name: &'static str,
    /// The value, widened.
    pub value: u64,
    /// Whether it is a 64-bit constant (`ull` suffix) rather than 32.
    pub wide: bool,
}

macro_rules! consts {
    ($($name:ident),* $(,)?) => {
        &[$(CConst {
            name: stringify!($name),
            value: $name as u64,
            wide: core::mem::size_of_val(&$name) == 8,
        }),*]
    };
}

/// Every constant a C client uses, by group (header order).
pub const CONSTANTS: &[(&str, &[CConst])] = &[
    (
        "IOMMU_IOAS_MAP flags",
        consts!(
            IOMMU_IOAS_MAP_FIXED_IOVA,
            IOMMU_IOAS_MAP_WRITEABLE,
            IOMMU_IOAS_MAP_READABLE
        ),
    ),
    (
        "IOMMU_OPTION",
        consts!(
            IOMMU_OPTION_RLIMIT_MODE,
            IOMMU_OPTION_HUGE_PAGES,
            IOMMU_OPTION_OP_SET,
            IOMMU_OPTION_OP_GET
        ),
    ),
    (
        "IOMMU_VFIO_IOAS",
        consts!(
            IOMMU_VFIO_IOAS_GET,
            IOMMU_VFIO_IOAS_SET,
            IOMMU_VFIO_IOAS_CLEAR
        ),
    ),
    (
        "IOMMU_HWPT_ALLOC",
        consts!(
            IOMMU_HWPT_ALLOC_NEST_PARENT,
            IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
            IOMMU_HWPT_FAULT_ID_VALID,
            IOMMU_HWPT_ALLOC_PASID,
            IOMMU_HWPT_DATA_NONE,
            IOMMU_HWPT_DATA_VTD_S1,
            IOMMU_HWPT_DATA_ARM_SMMUV3
        ),
    ),
    (
        "IOMMU_GET_HW_INFO",
        consts!(
            IOMMU_HW_INFO_TYPE_NONE,
            IOMMU_HW_INFO_TYPE_DEFAULT,
            IOMMU_HW_INFO_TYPE_INTEL_VTD,
            IOMMU_HW_INFO_TYPE_ARM_SMMUV3,
            IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV,
            IOMMU_HW_INFO_FLAG_INPUT_TYPE,
            IOMMU_HW_CAP_DIRTY_TRACKING,
            IOMMU_HW_CAP_PCI_PASID_EXEC,
            IOMMU_HW_CAP_PCI_PASID_PRIV
        ),
    ),
    (
        "FAULT read: record flags",
        consts!(
            IOMMU_FAULT_RECORD_VALID,
            IOMMU_FAULT_RECORD_ADDR_VALID,
            IOMMU_FAULT_RECORD_LOST,
            IOMMU_FAULT_RECORD_STOPPED,
            IOMMU_FAULT_RECORD_STORMING
        ),
    ),
    (
        "FAULT read: the storm budget",
        consts!(IOMMU_FAULT_STORM_BUDGET),
    ),
    (
        "FAULT read: access flags",
        consts!(
            IOMMU_FAULT_ACCESS_READ,
            IOMMU_FAULT_ACCESS_WRITE,
            IOMMU_FAULT_ACCESS_EXEC,
            IOMMU_FAULT_ACCESS_PRIV
        ),
    ),
    (
        "FAULT read: kinds (the SMMUv3 event types)",
        consts!(
            IOMMU_FAULT_KIND_F_UUT,
            IOMMU_FAULT_KIND_C_BAD_STREAMID,
            IOMMU_FAULT_KIND_F_STE_FETCH,
            IOMMU_FAULT_KIND_C_BAD_STE,
            IOMMU_FAULT_KIND_F_BAD_ATS_TREQ,
            IOMMU_FAULT_KIND_F_STREAM_DISABLED,
            IOMMU_FAULT_KIND_F_TRANSL_FORBIDDEN,
            IOMMU_FAULT_KIND_C_BAD_SUBSTREAMID,
            IOMMU_FAULT_KIND_F_CD_FETCH,
            IOMMU_FAULT_KIND_C_BAD_CD,
            IOMMU_FAULT_KIND_F_WALK_EABT,
            IOMMU_FAULT_KIND_F_TRANSLATION,
            IOMMU_FAULT_KIND_F_ADDR_SIZE,
            IOMMU_FAULT_KIND_F_ACCESS,
            IOMMU_FAULT_KIND_F_PERMISSION,
            IOMMU_FAULT_KIND_F_TLB_CONFLICT,
            IOMMU_FAULT_KIND_F_CFG_CONFLICT
        ),
    ),
    ("DUMP", consts!(IOMMU_DUMP_SERVER)),
    ("QUARANTINE", consts!(IOMMU_QUARANTINE_STATIC)),
    (
        "VFIO",
        consts!(
            VFIO_API_VERSION,
            VFIO_TYPE1_IOMMU,
            VFIO_SPAPR_TCE_IOMMU,
            VFIO_TYPE1v2_IOMMU,
            VFIO_DMA_CC_IOMMU,
            VFIO_EEH,
            VFIO_TYPE1_NESTING_IOMMU,
            VFIO_SPAPR_TCE_v2_IOMMU,
            VFIO_NOIOMMU_IOMMU,
            VFIO_UNMAP_ALL,
            VFIO_UPDATE_VADDR,
            VFIO_IOMMU_INFO_PGSIZES,
            VFIO_IOMMU_INFO_CAPS,
            VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
            VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
            VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
            VFIO_DMA_MAP_FLAG_READ,
            VFIO_DMA_MAP_FLAG_WRITE,
            VFIO_DMA_MAP_FLAG_VADDR,
            VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
            VFIO_DMA_UNMAP_FLAG_ALL,
            VFIO_DMA_UNMAP_FLAG_VADDR,
            VFIO_DEVICE_BIND_FLAG_TOKEN,
            VFIO_DEVICE_ATTACH_PASID,
            VFIO_DEVICE_DETACH_PASID
        ),
    ),
];

/// The C name of an operation's label: `IOMMU_OP_` and Linux's name
/// without its `IOMMU_` (`IOMMU_OP_IOAS_MAP`, `IOMMU_OP_VFIO_IOMMU_MAP_DMA`).
pub fn label_name(op: Op, out: &mut dyn Write) -> fmt::Result {
    let name = op.name();
    write!(
        out,
        "IOMMU_OP_{}",
        name.strip_prefix("IOMMU_").unwrap_or(name)
    )
}

fn write_struct<T: CStruct>(out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "struct {} {{", T::NAME)?;
    for f in T::FIELDS {
        match f.len {
            None => writeln!(out, "    {} {};", f.ty, f.name)?,
            // C's flexible array member, as Linux declares it.
            Some(0) => writeln!(out, "    {} {}[];", f.ty, f.name)?,
            Some(n) => writeln!(out, "    {} {}[{n}];", f.ty, f.name)?,
        }
    }
    writeln!(out, "}};")?;
    // C99's typedef needs a name of its own per assertion; the name is
    // also what a failing assertion reports.
    writeln!(
        out,
        "IOMMU_STATIC_ASSERT(sizeof(struct {0}) == {1}, {0}_size);",
        T::NAME,
        T::SIZE
    )?;
    for f in T::FIELDS {
        writeln!(
            out,
            "IOMMU_STATIC_ASSERT(offsetof(struct {0}, {1}) == {2}, {0}_{1}_offset);",
            T::NAME,
            f.name,
            f.offset
        )?;
    }
    writeln!(out)
}

/// Writes `iommu_proto.h`.
pub fn header(out: &mut dyn Write) -> fmt::Result {
    out.write_str(
        "/* Generated from the iommu-proto crate (cargo run -p sysgen -- --c-header);\n \
         * do not edit. The IPC protocol of the seL4 IOMMU server: operation\n \
         * labels, the request structs (laid out like Linux's iommufd.h and\n \
         * vfio.h) and their constants. iommu_client.h is the C API over it.\n \
         * C99 or C11 and later; freestanding (stddef.h and stdint.h only). */\n\
         #ifndef IOMMU_PROTO_H\n#define IOMMU_PROTO_H\n\n\
         #include <stddef.h>\n#include <stdint.h>\n\n",
    )?;
    out.write_str(
        "/* A compile-time check: C11's _Static_assert, or in C99 (which has\n \
         * none) a typedef of an array whose size is negative when `cond` fails.\n \
         * `name` must be unique: the error names it. */\n\
         #if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L\n\
         #define IOMMU_STATIC_ASSERT(cond, name) _Static_assert(cond, #name)\n\
         #else\n\
         #define IOMMU_STATIC_ASSERT(cond, name) \\\n    \
         typedef char iommu_static_assert_##name[(cond) ? 1 : -1]\n\
         #endif\n\n",
    )?;
    writeln!(
        out,
        "/* Message registers: the struct's size (or the scalar argument), the\n * device of a device op; the reply's value. */"
    )?;
    writeln!(out, "#define IOMMU_MR_SIZE {MR_SIZE}")?;
    writeln!(out, "#define IOMMU_MR_DEVICE {MR_DEVICE}")?;
    writeln!(out, "#define IOMMU_MR_VALUE {MR_VALUE}\n")?;
    writeln!(
        out,
        "/* The errnos the server replies with (Linux's numbers), as IOMMU_<name>. */"
    )?;
    for e in crate::Errno::ALL {
        writeln!(out, "#define IOMMU_{} {}", e.name(), e.code())?;
    }
    writeln!(
        out,
        "\n/* The name of errno `err` (\"EINVAL\"), for messages; \"unknown\" for a\n * number the server never replies with (0 included). */"
    )?;
    writeln!(out, "static inline const char *iommu_strerror(int err)\n{{")?;
    writeln!(out, "    switch (err) {{")?;
    for e in crate::Errno::ALL {
        writeln!(
            out,
            "    case IOMMU_{0}:\n        return \"{0}\";",
            e.name()
        )?;
    }
    writeln!(
        out,
        "    default:\n        return \"unknown\";\n    }}\n}}\n"
    )?;
    writeln!(out, "/* Operation labels. */")?;
    for op in Op::ALL {
        out.write_str("#define ")?;
        label_name(op, out)?;
        writeln!(out, " {:#x}", op.label())?;
    }
    for (group, consts) in CONSTANTS {
        writeln!(out, "\n/* {group} */")?;
        for c in *consts {
            let suffix = if c.wide { "ull" } else { "u" };
            writeln!(out, "#define {} {:#x}{suffix}", c.name, c.value)?;
        }
    }
    writeln!(out)?;
    // Dependencies first.
    write_struct::<iommu_destroy>(out)?;
    write_struct::<iommu_ioas_alloc>(out)?;
    write_struct::<iommu_iova_range>(out)?;
    write_struct::<iommu_ioas_iova_ranges>(out)?;
    write_struct::<iommu_ioas_allow_iovas>(out)?;
    write_struct::<iommu_ioas_map>(out)?;
    write_struct::<iommu_ioas_copy>(out)?;
    write_struct::<iommu_ioas_unmap>(out)?;
    write_struct::<iommu_option>(out)?;
    write_struct::<iommu_vfio_ioas>(out)?;
    write_struct::<iommu_hwpt_alloc>(out)?;
    write_struct::<iommu_hw_info>(out)?;
    write_struct::<iommu_hw_info_arm_smmuv3>(out)?;
    write_struct::<iommu_fault_record>(out)?;
    write_struct::<iommu_dump>(out)?;
    write_struct::<vfio_info_cap_header>(out)?;
    write_struct::<vfio_iommu_type1_info>(out)?;
    write_struct::<vfio_iova_range>(out)?;
    write_struct::<vfio_iommu_type1_info_cap_iova_range>(out)?;
    write_struct::<vfio_iommu_type1_info_dma_avail>(out)?;
    write_struct::<vfio_iommu_type1_dma_map>(out)?;
    write_struct::<vfio_iommu_type1_dma_unmap>(out)?;
    write_struct::<vfio_device_bind_iommufd>(out)?;
    write_struct::<vfio_device_attach_iommufd_pt>(out)?;
    write_struct::<vfio_device_detach_iommufd_pt>(out)?;
    writeln!(out, "#endif /* IOMMU_PROTO_H */")
}
