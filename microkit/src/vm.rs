//! The virtual-machine half of the ABI that is plain data (host-tested):
//! a VMM's capability slots for its vCPUs, the fault messages a guest's
//! exits arrive as, the syndrome (HSR, the guest's ESR_EL2) of a vCPU
//! fault, the vCPU registers by seL4's numbering, and the words the
//! vCPU invocations carry. After Microkit 2.3.0's microkit.h and the
//! seL4 16.0.0 headers of its SDK (`sel4_arch/constants.h`,
//! `sel4_arch/types_gen.h`); build.rs checks the numbers against the SDK.

/// A vCPU of one of this PD's virtual machines, by its `<vcpu id>` in the
/// system description. The tool gives a vCPU's faults the badge a child
/// PD's would have with that id, so vCPU ids and child ids share one
/// range (the tool refuses a clash).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vcpu(u8);

impl Vcpu {
    /// vCPU ids a PD can use (the tool's 64 slots per kind; the badge keeps
    /// the same range as a child's).
    pub const COUNT: usize = crate::Child::COUNT;

    pub const fn new(index: usize) -> Option<Vcpu> {
        if index < Self::COUNT {
            Some(Vcpu(index as u8))
        } else {
            None
        }
    }

    /// The vCPU whose fault arrived under `child`'s badge.
    pub const fn of_fault(child: crate::Child) -> Vcpu {
        Vcpu(child.index() as u8)
    }

    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Capability slots a VMM holds for its vCPUs (microkit.h's
/// BASE_VM_TCB_CAP and BASE_VCPU_CAP).
pub mod slot {
    use super::Vcpu;

    const VM_TCB_BASE: u64 = 266;
    const VCPU_BASE: u64 = 330;

    /// The thread that runs the vCPU (write its registers, suspend it).
    pub const fn vm_tcb(vcpu: Vcpu) -> u64 {
        VM_TCB_BASE + vcpu.index() as u64
    }

    /// The vCPU object (its EL1 registers, its virtual interrupts).
    pub const fn vcpu(vcpu: Vcpu) -> u64 {
        VCPU_BASE + vcpu.index() as u64
    }
}

/// Message registers of a VM fault (seL4_VMFault_Msg): a guest access
/// outside what its stage-2 tables map arrives with these.
pub mod vm_fault {
    /// The guest's PC at the faulting access.
    pub const IP: usize = 0;
    /// The guest-physical address it touched.
    pub const ADDR: usize = 1;
    /// 1 for an instruction fetch, 0 for a data access.
    pub const PREFETCH_FAULT: usize = 2;
    /// The fault status (the syndrome's ISS).
    pub const FSR: usize = 3;
    pub const LENGTH: usize = 4;
}

/// Message registers of an unknown-syscall fault
/// (seL4_UnknownSyscall_Msg). This kernel takes a guest's `hvc` for a
/// system call (its number in x7): one it does not know reaches the VMM
/// as this fault, not as a vCPU fault, and without the `hvc` immediate;
/// the guest passes what it wants in its registers. A reply of
/// [`unknown_syscall::RESUME_LENGTH`] registers writes x0..x7 and the PC
/// back: the VMM resumes the guest past its `hvc` with
/// [`unknown_syscall::resume_pc`].
pub mod unknown_syscall {
    /// x0..x7 are message registers 0..=7.
    pub const X0: usize = 0;
    pub const X7: usize = 7;
    /// The PC of the trapping `hvc` (or `svc`) itself.
    pub const FAULT_IP: usize = 8;
    pub const SP: usize = 9;
    pub const LR: usize = 10;
    pub const SPSR: usize = 11;
    /// x7, the number the kernel did not know.
    pub const SYSCALL: usize = 12;
    pub const LENGTH: usize = 13;
    /// A reply this long writes x0..x7 and the PC; a shorter one keeps
    /// the PC, so the guest would trap on the same `hvc` again.
    pub const RESUME_LENGTH: u64 = FAULT_IP as u64 + 1;

    /// Where the guest resumes: the instruction after its `hvc`.
    pub const fn resume_pc(fault_ip: u64) -> u64 {
        fault_ip.wrapping_add(4)
    }
}

/// Message registers of a vCPU fault (seL4_VCPUFault_Msg).
pub mod vcpu_fault {
    /// The exception syndrome the guest's exit left in ESR_EL2.
    pub const HSR: usize = 0;
    pub const LENGTH: usize = 1;
}

/// The syndrome of a vCPU fault: why the guest trapped to the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hsr(pub u64);

impl Hsr {
    /// Exception classes (ESR_ELx.EC) a VMM sees from a guest.
    pub const EC_UNKNOWN: u8 = 0x00;
    pub const EC_WFX: u8 = 0x01;
    pub const EC_HVC64: u8 = 0x16;
    pub const EC_SMC64: u8 = 0x17;
    pub const EC_SYSREG: u8 = 0x18;
    pub const EC_IABT_LOWER: u8 = 0x20;
    pub const EC_DABT_LOWER: u8 = 0x24;

    /// The exception class, bits 31:26.
    pub const fn ec(self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    /// Whether the trapped instruction was 32 bits long (bit 25).
    pub const fn il32(self) -> bool {
        (self.0 >> 25) & 1 != 0
    }

    /// The instruction-specific syndrome, bits 24:0.
    pub const fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// The exception class's name, for logs.
    pub const fn class_name(self) -> &'static str {
        match self.ec() {
            Self::EC_UNKNOWN => "unknown instruction",
            Self::EC_WFX => "WFI/WFE",
            Self::EC_HVC64 => "HVC",
            Self::EC_SMC64 => "SMC",
            Self::EC_SYSREG => "system register access",
            Self::EC_IABT_LOWER => "instruction abort",
            Self::EC_DABT_LOWER => "data abort",
            _ => "other exception",
        }
    }
}

/// A vCPU's EL1 registers as seL4 numbers them (seL4_VCPUReg); the
/// general registers are the vCPU thread's and go through its TCB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum VcpuReg {
    Sctlr = 0,
    Cpacr = 1,
    Ttbr0 = 2,
    Ttbr1 = 3,
    Tcr = 4,
    Mair = 5,
    Amair = 6,
    Cidr = 7,
    Actlr = 8,
    Afsr0 = 9,
    Afsr1 = 10,
    Esr = 11,
    Far = 12,
    Par = 13,
    Vbar = 14,
    TpidrEl1 = 15,
    VmpidrEl2 = 16,
    SpEl1 = 17,
    ElrEl1 = 18,
    SpsrEl1 = 19,
    CntvCtl = 20,
    CntvCval = 21,
    Cntvoff = 22,
    CntkctlEl1 = 23,
}

impl VcpuReg {
    /// Registers seL4 keeps per vCPU (seL4_VCPUReg_Num).
    pub const COUNT: u64 = 24;

    pub const fn number(self) -> u64 {
        self as u64
    }
}

/// The register seL4_ARM_VCPU_InjectIRQ carries: a virtual interrupt
/// `virq` at `priority` in GIC `group`, into list register `index`.
pub const fn inject_irq_word(virq: u16, priority: u8, group: u8, index: u8) -> u64 {
    virq as u64 | (priority as u64) << 16 | (group as u64) << 24 | (index as u64) << 32
}

/// PSTATE a guest (re)starts with: EL1 on its own stack pointer (EL1h)
/// with debug, SError, IRQ and FIQ masked, as a CPU leaves reset. seL4
/// keeps an EL1 mode only for a thread bound to a vCPU (any other value
/// comes out as EL0).
pub const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// The registers a guest (re)start writes through the vCPU thread's TCB,
/// in seL4_UserContext order: pc, sp (the guest's SP_EL0: its boot code
/// sets its own SP_EL1), spsr. microkit.h's restart writes the pc alone
/// and keeps whatever PSTATE the thread had; the tool creates a VM's
/// threads with none (EL0), so a first start must write it.
pub const fn start_registers(entry: u64) -> [u64; 3] {
    [entry, 0, SPSR_EL1H_MASKED]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Child;

    #[test]
    fn slots_follow_the_pd_ones() {
        let v = Vcpu::new(0).unwrap();
        assert_eq!((slot::vm_tcb(v), slot::vcpu(v)), (266, 330));
        let v = Vcpu::new(5).unwrap();
        assert_eq!((slot::vm_tcb(v), slot::vcpu(v)), (271, 335));
        // Below the next kind's base (I/O ports at 394).
        let last = Vcpu::new(Vcpu::COUNT - 1).unwrap();
        assert!(slot::vcpu(last) < 394 && slot::vm_tcb(last) < 330);
        assert!(Vcpu::new(Vcpu::COUNT).is_none());
        assert_eq!(Vcpu::of_fault(Child::new(3).unwrap()).index(), 3);
    }

    #[test]
    fn syndromes() {
        // A trapped `hvc #1` would read EC 0x16, IL, imm16 in ISS (this
        // kernel delivers a guest's hvc as an unknown syscall instead).
        let hvc1 = Hsr(0x5a00_0001);
        assert_eq!((hvc1.ec(), hvc1.il32(), hvc1.iss()), (0x16, true, 1));
        assert_eq!(hvc1.class_name(), "HVC");
        assert_eq!(Hsr(0x5e00_0001).ec(), Hsr::EC_SMC64);
        assert_eq!(Hsr(0x0600_0000).ec(), Hsr::EC_WFX);
        let dabt = Hsr(0x9200_0046);
        assert_eq!((dabt.ec(), dabt.iss()), (Hsr::EC_DABT_LOWER, 0x46));
        assert_eq!(dabt.class_name(), "data abort");
        // Bits above the syndrome's 32 do not leak into the class.
        assert_eq!(Hsr(0xffff_ffff_5a00_0002).ec(), Hsr::EC_HVC64);
    }

    #[test]
    fn fault_message_registers() {
        assert_eq!(
            (
                vm_fault::IP,
                vm_fault::ADDR,
                vm_fault::PREFETCH_FAULT,
                vm_fault::FSR,
                vm_fault::LENGTH
            ),
            (0, 1, 2, 3, 4)
        );
        assert_eq!((vcpu_fault::HSR, vcpu_fault::LENGTH), (0, 1));
    }

    #[test]
    fn unknown_syscall_message() {
        use unknown_syscall::*;
        assert_eq!((X0, X7, FAULT_IP, SP, LR, SPSR), (0, 7, 8, 9, 10, 11));
        assert_eq!((SYSCALL, LENGTH), (12, 13));
        assert_eq!(RESUME_LENGTH, 9, "x0..x7 and the PC");
        assert_eq!(resume_pc(0x4000_1000), 0x4000_1004);
    }

    #[test]
    fn vcpu_registers() {
        assert_eq!(VcpuReg::Sctlr.number(), 0);
        assert_eq!(VcpuReg::Cpacr.number(), 1);
        assert_eq!(VcpuReg::Esr.number(), 11);
        assert_eq!(VcpuReg::Far.number(), 12);
        assert_eq!(VcpuReg::Vbar.number(), 14);
        assert_eq!(VcpuReg::ElrEl1.number(), 18);
        assert_eq!(VcpuReg::CntkctlEl1.number() + 1, VcpuReg::COUNT);
    }

    #[test]
    fn inject_irq_encoding() {
        // libsel4's marshalling: virq 15:0, priority 23:16, group 31:24,
        // list register 39:32.
        assert_eq!(inject_irq_word(27, 0, 1, 0), 0x0100_001b);
        assert_eq!(inject_irq_word(0xffff, 0xa0, 0, 3), 0x3_00a0_ffff);
    }

    #[test]
    fn a_start_enters_el1h_masked() {
        let [pc, sp, spsr] = start_registers(0x4000_0000);
        assert_eq!((pc, sp), (0x4000_0000, 0));
        assert_eq!(spsr & 0xf, 0b0101, "EL1h");
        assert_eq!(spsr >> 6 & 0xf, 0xf, "D, A, I, F masked");
    }
}
