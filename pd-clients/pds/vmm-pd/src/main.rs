//! The VMM PD (`vmm.elf`): the monitor of one guest VM (system.xml's
//! `<virtual_machine>`, one vCPU) and the IOMMU server's client for the
//! edu device passed through to it. Before the guest runs it programs the
//! device's configuration space (BAR0 where the tool put the BAR window,
//! memory space and bus master on), then maps the guest's RAM for the
//! device as QEMU does on Linux, with VFIO type1 calls: the device bound
//! and attached to the compat IOAS (QEMU's group joining its container),
//! VFIO_SET_IOMMU, VFIO_IOMMU_GET_INFO (4 KiB pages, guest RAM inside an
//! IOVA range), VFIO_IOMMU_MAP_DMA at IOVA = GPA. It loads the guest (embedded, built by build.rs) into
//! guest RAM and starts the vCPU.
//!
//! The guest calls it with `hvc` (the call's number in x0): 1 prints the
//! line in the console page, 0 ends the guest; any other call or exit
//! stops the guest, and the VMM says why.
//! The server tells it of its device's faults: the guest's DMA aimed
//! past its RAM must be one. Then the guest is reset, which revokes what
//! its device could reach: the vCPU stopped, the manager has the server
//! quarantine and tear down everything this client holds, the VMM maps
//! guest RAM again, reloads and restarts the guest, whose DMA works again,
//! and the manager checks that the server's pools are back where they
//! were.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod memory;

use core::fmt::Write;

use iommu_client::{Device, Iommu, MicrokitTransport};
use iommu_proto::vfio::{
    VFIO_TYPE1v2_IOMMU, VFIO_API_VERSION, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
};
use microkit::{
    fault, unknown_syscall, vcpu_fault, vm_fault, Channel, Child, Handler, Hsr, MessageInfo,
    SharedMemory, Vcpu, VcpuReg,
};
use pci_function::PciFunction;
use pd_support::Out;

/// The guest, as build.rs laid it out from the base of guest RAM.
static GUEST_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/edu_guest.bin"));

/// The guest-physical map (edu-guest's `layout`, system.xml's
/// `<virtual_machine>` maps).
const RAM_GPA: u64 = 0x4000_0000;
const CONSOLE_GPA: u64 = RAM_GPA + 0x20_0000 - 0x1000;
const BAR_GPA: u64 = 0x1000_0000;
/// The guest's calls: `hvc #0` with the number in x0 (edu-guest's
/// platform.rs).
const CALL_DONE: u64 = 0;
const CALL_CONSOLE: u64 = 1;
const CALL_EXCEPTION: u64 = 2;
/// The one vCPU of the guest (`<vcpu id="0">`).
const VCPU: usize = 0;

/// The guest's device: the VMM client's first (only) device.
const DEVICE_INDEX: u32 = 0;

/// What the VMM is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The guest runs its first life.
    FirstLife,
    /// The guest is stopped; the manager is resetting this client.
    Resetting,
    /// The guest runs again after its reset.
    SecondLife,
    /// Over (or stopped on a failure).
    Over,
}

struct Vmm {
    iommu: Iommu<MicrokitTransport>,
    ram: SharedMemory,
    ram_vaddr: u64,
    server: Channel,
    manager: Option<Channel>,
    vcpu: Vcpu,
    device: Option<Device>,
    stage: Stage,
    /// The guest said it is done in this life.
    guest_done: bool,
    /// The server reported the stray DMA of this life.
    stray_reported: bool,
}

fn init() -> Vmm {
    let mut out = Out::new();
    let spec = pd_support::spec();
    let region = spec.regions[0];
    let (cfg, ram) = memory::take(region.size).expect("the regions are handed out once");
    assert_eq!(
        memory::GUEST_RAM.get(),
        region.vaddr,
        "guest RAM where iommu.xml says"
    );
    let mut vmm = Vmm {
        iommu: pd_support::iommu(spec),
        ram,
        ram_vaddr: region.vaddr,
        server: spec.client_channel,
        manager: pd_support::channel_to_manager(),
        vcpu: Vcpu::new(VCPU).expect("a vCPU id in range"),
        device: None,
        stage: Stage::FirstLife,
        guest_done: false,
        stray_reported: false,
    };
    if !program_config(&cfg, &mut out) {
        vmm.stage = Stage::Over;
        return vmm;
    }
    if let Err(e) = vmm.map_guest(&mut out) {
        let _ = writeln!(out, "FAILED - VFIO type1 setup: {e}");
        vmm.stage = Stage::Over;
        return vmm;
    }
    vmm.start_guest(&mut out);
    vmm
}

/// The VMM, not the guest, owns the function's configuration space.
fn program_config(cfg: &PciFunction<mmio::Mmio>, out: &mut Out) -> bool {
    match cfg.ids() {
        Some((edu_device::VENDOR, edu_device::DEVICE)) => {
            let bar = memory::GUEST_EDU_BAR_PADDR.get();
            cfg.enable(bar as u32);
            let _ = writeln!(
                out,
                "edu for the guest: BAR0 at {bar:#x} (guest-physical {BAR_GPA:#x}), memory space and bus master on"
            );
            true
        }
        _ => {
            let _ = writeln!(out, "FAILED - no edu device in my configuration page");
            false
        }
    }
}

/// The byte range `[start, last]` of a VFIO_IOMMU_GET_INFO answer's IOVA
/// ranges (its capability chain) that holds all of `[lo, hi]`, if one.
fn range_holding(info: &[u8], first_cap: usize, lo: u64, hi: u64) -> Option<(u64, u64)> {
    let u32_at = |at: usize| Some(u32::from_ne_bytes(info.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_ne_bytes(info.get(at..at + 8)?.try_into().ok()?));
    let mut cap = first_cap;
    // A chain visits each capability once; more hops than bytes is a loop.
    for _ in 0..info.len() {
        if cap == 0 {
            return None;
        }
        let header = u32_at(cap)?;
        if header & 0xffff == u32::from(iommu_proto::vfio::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
            let count = u32_at(cap + 8)? as usize;
            for i in 0..count.min(info.len() / 16) {
                let (start, end) = (u64_at(cap + 16 + 16 * i)?, u64_at(cap + 24 + 16 * i)?);
                if start <= lo && hi <= end {
                    return Some((start, end));
                }
            }
            return None;
        }
        cap = u32_at(cap + 4)? as usize;
    }
    None
}

impl Vmm {
    /// QEMU's VFIO type1 container sequence (hw/vfio/container.c), then
    /// the device bound and attached to the compat IOAS.
    fn map_guest(&mut self, out: &mut Out) -> Result<(), &'static str> {
        let size = self.ram.len() as u64;
        let api = self
            .iommu
            .vfio_get_api_version()
            .map_err(|_| "VFIO_GET_API_VERSION")?;
        if api != VFIO_API_VERSION {
            return Err("VFIO_GET_API_VERSION: not VFIO_API_VERSION");
        }
        if !self
            .iommu
            .vfio_check_extension(VFIO_TYPE1v2_IOMMU)
            .map_err(|_| "VFIO_CHECK_EXTENSION")?
        {
            return Err("VFIO_CHECK_EXTENSION: no VFIO_TYPE1v2_IOMMU");
        }
        // QEMU puts the group in the container here
        // (VFIO_GROUP_SET_CONTAINER), which makes iommufd's compat IOAS;
        // binding the device and attaching it through the compat path
        // does the same. It reaches nothing until the map below.
        let device = self
            .iommu
            .bind(DEVICE_INDEX)
            .map_err(|_| "VFIO_DEVICE_BIND_IOMMUFD")?;
        self.iommu
            .attach_compat(&device)
            .map_err(|_| "VFIO_DEVICE_ATTACH_IOMMUFD_PT")?;
        self.device = Some(device);
        self.iommu
            .vfio_set_iommu(VFIO_TYPE1v2_IOMMU)
            .map_err(|_| "VFIO_SET_IOMMU")?;
        let mut info = [0u8; 256];
        let head = self
            .iommu
            .vfio_iommu_get_info(&mut info)
            .map_err(|_| "VFIO_IOMMU_GET_INFO")?;
        if head.iova_pgsizes & 0x1000 == 0 {
            return Err("VFIO_IOMMU_GET_INFO: no 4 KiB pages");
        }
        let last = RAM_GPA + size - 1;
        let Some((start, end)) = range_holding(&info, head.cap_offset as usize, RAM_GPA, last)
        else {
            let _ = writeln!(
                out,
                "guest RAM [{RAM_GPA:#x}, {last:#x}] lies in no IOVA range the server reports"
            );
            return Err("VFIO_IOMMU_GET_INFO: guest RAM outside the IOVA ranges");
        };
        self.iommu
            .vfio_map_dma(
                self.ram_vaddr,
                RAM_GPA,
                size,
                VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
            )
            .map_err(|_| "VFIO_IOMMU_MAP_DMA")?;
        let _ = writeln!(
            out,
            "ok - VFIO type1: device bound and attached to the compat IOAS, guest RAM mapped at IOVA = GPA {RAM_GPA:#x}..{last:#x} (4 KiB pages, inside IOVA range [{start:#x}, {end:#x}])"
        );
        Ok(())
    }

    /// Loads a fresh copy of the guest into its RAM (the rest zeroed),
    /// puts its EL1 state back as a CPU leaves reset, and starts it.
    fn start_guest(&mut self, out: &mut Out) {
        let zero = [0u8; 512];
        let mut at = 0;
        while at < self.ram.len() {
            let n = zero.len().min(self.ram.len() - at);
            self.ram.write(at, &zero[..n]);
            at += n;
        }
        if !self.ram.write(0, GUEST_IMAGE) {
            let _ = writeln!(out, "FAILED - the guest image does not fit its RAM");
            self.stage = Stage::Over;
            return;
        }
        // The EL1 state a reset gives: the MMU off, no vectors, FP traps.
        let sctlr = microkit::vcpu_read_reg(self.vcpu, VcpuReg::Sctlr).unwrap_or(0);
        let regs = [
            (VcpuReg::Sctlr, sctlr & !1),
            (VcpuReg::Vbar, 0),
            (VcpuReg::Cpacr, 0),
        ];
        for (reg, value) in regs {
            if let Err(e) = microkit::vcpu_write_reg(self.vcpu, reg, value) {
                let _ = writeln!(out, "FAILED - write the guest's {reg:?}: seL4 error {e}");
            }
        }
        self.guest_done = false;
        self.stray_reported = false;
        match microkit::vcpu_restart(self.vcpu, RAM_GPA) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "guest loaded ({} bytes at GPA {RAM_GPA:#x}), vCPU {} started",
                    GUEST_IMAGE.len(),
                    self.vcpu.index()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "FAILED - start the guest: seL4 error {e}");
                self.stage = Stage::Over;
            }
        }
    }

    fn stop_guest(&mut self, out: &mut Out, why: core::fmt::Arguments) {
        let _ = microkit::vcpu_stop(self.vcpu);
        let _ = writeln!(out, "FAILED - guest stopped: {why}");
        self.stage = Stage::Over;
    }

    /// The guest's console line, up to its NUL (or the page's end).
    fn console_line<'b>(&self, buf: &'b mut [u8; 256]) -> &'b str {
        let at = (CONSOLE_GPA - RAM_GPA) as usize;
        if !self.ram.read(at, buf) {
            return "";
        }
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        core::str::from_utf8(&buf[..len]).unwrap_or("(not UTF-8)")
    }

    /// Both ends of a life are in: the guest said it is done and the
    /// server reported its stray DMA.
    fn life_over(&mut self, out: &mut Out) {
        if !(self.guest_done && self.stray_reported) {
            return;
        }
        let Some(manager) = self.manager else {
            let _ = writeln!(out, "FAILED - no channel to the manager: no reset");
            self.stage = Stage::Over;
            return;
        };
        match self.stage {
            Stage::FirstLife => {
                let _ = microkit::vcpu_stop(self.vcpu);
                let _ = writeln!(
                    out,
                    "guest stopped; asking the manager to reset its device's DMA"
                );
                self.device = None;
                self.stage = Stage::Resetting;
                microkit::notify(manager);
            }
            Stage::SecondLife => {
                let _ = microkit::vcpu_stop(self.vcpu);
                let _ = writeln!(
                    out,
                    "ok - guest reset and restarted: its DMA works again through the new mappings"
                );
                self.stage = Stage::Over;
                microkit::notify(manager);
            }
            Stage::Resetting | Stage::Over => {}
        }
    }

    fn read_faults(&mut self, out: &mut Out) {
        let stray = RAM_GPA + self.ram.len() as u64;
        while let Ok(read) = self.iommu.read_fault() {
            let Some(f) = read.fault else {
                break;
            };
            let access = if f.access & iommu_proto::fault::IOMMU_FAULT_ACCESS_WRITE != 0 {
                "write"
            } else {
                "read"
            };
            let kind = iommu_proto::fault::kind_name(f.kind);
            let strayed = f.device == DEVICE_INDEX && f.iova.map(|a| a & !0xfff) == Some(stray);
            if strayed && self.stray_reported {
                // The same transfer's next access.
            } else if strayed {
                let _ = writeln!(
                    out,
                    "ok - the server reported the guest's stray DMA: device {}, IOVA (= GPA) {:#x}, {access}, {kind}",
                    f.device,
                    f.iova.unwrap_or(0)
                );
                self.stray_reported = true;
            } else {
                let _ = writeln!(
                    out,
                    "FAILED - unexpected fault: device {}, IOVA {:?}, {access}, {kind}",
                    f.device, f.iova
                );
            }
        }
        self.life_over(out);
    }
}

impl Handler for Vmm {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(u64::from(iommu_proto::Errno::ENOTTY.code()), 0)
    }

    fn notified(&mut self, channel: Channel) {
        let mut out = Out::new();
        if channel == self.server {
            self.read_faults(&mut out);
        } else if Some(channel) == self.manager && self.stage == Stage::Resetting {
            // The manager reset this client: nothing it held remains.
            match self.map_guest(&mut out) {
                Ok(()) => {
                    self.stage = Stage::SecondLife;
                    self.start_guest(&mut out);
                }
                Err(e) => {
                    let _ = writeln!(out, "FAILED - VFIO type1 setup after the reset: {e}");
                    self.stage = Stage::Over;
                }
            }
        }
    }

    fn fault(&mut self, child: Child, msg: MessageInfo) -> Option<MessageInfo> {
        let mut out = Out::new();
        if Vcpu::of_fault(child) != self.vcpu {
            let _ = writeln!(out, "FAILED - fault of an unknown child {}", child.index());
            return None;
        }
        match msg.label() {
            // The guest's `hvc` (this kernel's way of delivering it).
            fault::UNKNOWN_SYSCALL => {
                let regs: [u64; 8] =
                    core::array::from_fn(|i| microkit::get_mr(unknown_syscall::X0 + i));
                let fault_ip = microkit::get_mr(unknown_syscall::FAULT_IP);
                match regs[0] {
                    CALL_CONSOLE => {
                        let mut buf = [0u8; 256];
                        let _ = writeln!(out, "guest: {}", self.console_line(&mut buf));
                        // Resume after the `hvc`, its registers as they were.
                        for (i, r) in regs.into_iter().enumerate() {
                            microkit::set_mr(unknown_syscall::X0 + i, r);
                        }
                        microkit::set_mr(
                            unknown_syscall::FAULT_IP,
                            unknown_syscall::resume_pc(fault_ip),
                        );
                        return Some(MessageInfo::new(0, unknown_syscall::RESUME_LENGTH));
                    }
                    CALL_DONE => {
                        let _ = writeln!(out, "guest: done");
                        self.guest_done = true;
                        let _ = microkit::vcpu_stop(self.vcpu);
                        self.life_over(&mut out);
                    }
                    CALL_EXCEPTION => {
                        let reg = |r| microkit::vcpu_read_reg(self.vcpu, r).unwrap_or(0);
                        let (esr, elr, far) =
                            (reg(VcpuReg::Esr), reg(VcpuReg::ElrEl1), reg(VcpuReg::Far));
                        self.stop_guest(
                            &mut out,
                            format_args!(
                                "it took an exception: ESR_EL1 {esr:#x} ({}), ELR_EL1 {elr:#x}, FAR_EL1 {far:#x}",
                                Hsr(esr).class_name()
                            ),
                        );
                    }
                    call => self.stop_guest(
                        &mut out,
                        format_args!("unknown call {call:#x} at pc {fault_ip:#x}"),
                    ),
                }
            }
            fault::VCPU_FAULT => {
                let hsr = Hsr(microkit::get_mr(vcpu_fault::HSR));
                self.stop_guest(
                    &mut out,
                    format_args!("unexpected exit: {} (HSR {:#x})", hsr.class_name(), hsr.0),
                );
            }
            fault::VM_FAULT => {
                let (ip, addr) = (
                    microkit::get_mr(vm_fault::IP),
                    microkit::get_mr(vm_fault::ADDR),
                );
                self.stop_guest(
                    &mut out,
                    format_args!("it touched GPA {addr:#x} (pc {ip:#x}), which it is not given"),
                );
            }
            label => self.stop_guest(&mut out, format_args!("{}", fault::name(label))),
        }
        None
    }
}

microkit::declare_pd!(init);
