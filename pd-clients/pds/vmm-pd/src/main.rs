//! The VMM PD (`vmm.elf`): the monitor of one guest VM (system.xml's
//! `<virtual_machine>`, one vCPU) and the IOMMU server's client for the
//! edu device passed through to it, a shell over `vmm-core` (docs/vm.md):
//! its VFIO sequence maps the guest's RAM for the device at IOVA = GPA,
//! its exit decoding answers the guest's calls and faults, its fault
//! reader places the device's DMA faults in the guest's map, and its
//! `Guest` state machine carries the guest through its reset. What is the
//! PD's own: programming the device's configuration space before the
//! guest runs, loading the guest (embedded, built by build.rs) and the
//! vCPU's registers, and the story's two lives: the guest's DMA aimed
//! past its RAM must be reported, then the manager resets this client
//! (RESET_CLIENT: the device's stream quarantined, everything it held
//! revoked), the VMM maps guest RAM again and restarts the guest, whose
//! DMA works again, and the manager checks that the server's pools are
//! back where they were.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod memory;

use core::fmt::{Display, Write};

use edu_device::Edu;
use edu_guest_driver::GuestRam;
use iommu_client::{Iommu, MicrokitTransport};
use microkit::{
    fault, vcpu_fault, vm_fault, Channel, Child, Handler, MessageInfo, SharedMemory, Vcpu, VcpuReg,
};
use pci_function::PciFunction;
use pd_support::Out;
use vmm_core::exit::{self, Action, El1Exception, GuestCall, Stop};
use vmm_core::layout::{GUEST_BAR_GPA, GUEST_RAM_GPA};
use vmm_core::{faults, Guest, GuestMap, Phase};

/// The guest, as build.rs laid it out from the base of guest RAM.
static GUEST_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/edu_guest.bin"));

/// The one vCPU of the guest (`<vcpu id="0">`).
const VCPU: usize = 0;

/// The guest's device: the VMM client's first (only) device.
const DEVICE_INDEX: u32 = 0;

/// Round trips the VMM times, as many as the guest times (edu-guest).
const BENCH_ROUNDS: u32 = 10;

/// The pattern the guest's RAM holds under the transfer left in flight
/// across the reset: still there afterwards, or the DMA landed.
const IN_FLIGHT_SEED: u8 = 0x33;

/// Where the story is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// The guest runs its first life.
    First,
    /// The guest is stopped; the manager is resetting this client.
    Resetting,
    /// The guest runs again after its reset.
    Second,
    /// Over (or stopped on a failure).
    Over,
}

/// The guest's vCPU as `vmm_core::Guest` drives it: a start loads a
/// fresh copy of the guest and puts its EL1 state back as a CPU leaves
/// reset.
struct GuestVcpu {
    vcpu: Vcpu,
    ram: SharedMemory,
}

impl vmm_core::Vcpu for GuestVcpu {
    fn stop(&mut self) {
        // Fails only for a vCPU the tool did not create, which `init`
        // would not have got.
        let _ = microkit::vcpu_stop(self.vcpu);
    }

    fn start(&mut self) -> Result<(), u64> {
        let zero = [0u8; 512];
        for at in (0..self.ram.len()).step_by(zero.len()) {
            let n = zero.len().min(self.ram.len() - at);
            self.ram.write(at, &zero[..n]);
        }
        // `init` checked that the image fits the RAM.
        self.ram.write(0, GUEST_IMAGE);
        // The EL1 state a reset gives: the MMU off, no vectors, FP traps.
        let sctlr = microkit::vcpu_read_reg(self.vcpu, VcpuReg::Sctlr)?;
        microkit::vcpu_write_reg(self.vcpu, VcpuReg::Sctlr, sctlr & !1)?;
        microkit::vcpu_write_reg(self.vcpu, VcpuReg::Vbar, 0)?;
        microkit::vcpu_write_reg(self.vcpu, VcpuReg::Cpacr, 0)?;
        microkit::vcpu_restart(self.vcpu, GUEST_RAM_GPA)
    }
}

struct Vmm {
    iommu: Iommu<MicrokitTransport>,
    server: Channel,
    manager: Option<Channel>,
    guest: Guest<'static>,
    vcpu: GuestVcpu,
    /// The guest's device through its BAR, which the VMM maps too.
    edu: Edu<mmio::Mmio>,
    life: Life,
    /// The guest said it is done in this life.
    guest_done: bool,
    /// The server reported the stray DMA of this life.
    stray_reported: bool,
    /// The transfer left in flight across the reset: the server's record
    /// of it is still to come.
    in_flight_unreported: bool,
}

fn init() -> Vmm {
    let mut out = Out::new();
    let spec = pd_support::spec();
    let region = spec.regions[0];
    let memory::Regions {
        config,
        edu,
        ram,
        map,
    } = memory::take(region.size).expect("the regions are handed out once");
    assert_eq!(
        memory::GUEST_RAM.get(),
        region.vaddr,
        "guest RAM where iommu.xml says"
    );
    let client_index = pd_support::index().expect("the VMM is a client in iommu.xml");
    let mut vmm = Vmm {
        iommu: pd_support::iommu(spec),
        server: spec.client_channel,
        manager: pd_support::channel_to_manager(),
        guest: Guest::new(map, DEVICE_INDEX, client_index as u64),
        vcpu: GuestVcpu {
            vcpu: Vcpu::new(VCPU).expect("a vCPU id in range"),
            ram,
        },
        edu,
        life: Life::First,
        guest_done: false,
        stray_reported: false,
        in_flight_unreported: false,
    };
    if GUEST_IMAGE.len() > vmm.vcpu.ram.len() {
        let _ = writeln!(out, "FAILED - the guest image does not fit its RAM");
        vmm.life = Life::Over;
    } else if program_config(&config, &mut out) {
        vmm.map_and_start(&mut out, true);
    } else {
        vmm.life = Life::Over;
    }
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
                "edu for the guest: BAR0 at {bar:#x} (guest-physical {GUEST_BAR_GPA:#x}), memory space and bus master on"
            );
            true
        }
        _ => {
            let _ = writeln!(out, "FAILED - no edu device in my configuration page");
            false
        }
    }
}

impl Vmm {
    fn map(&self) -> &GuestMap<'static> {
        self.guest.map_of()
    }

    /// The guest's RAM through the VMM's own mapping, by guest-physical
    /// address.
    fn guest_ram(&self) -> GuestRam<&SharedMemory> {
        GuestRam {
            gpa: GUEST_RAM_GPA,
            mem: &self.vcpu.ram,
        }
    }

    /// The VFIO sequence (QEMU's, hw/vfio/container.c), then, given the
    /// device (before the guest first runs), the VMM's timed round trips,
    /// then a fresh guest started.
    fn map_and_start(&mut self, out: &mut Out, timed: bool) {
        let ram = self.map().ram[0];
        let mapped = self.guest.map(&mut self.iommu).map(|p| {
            let range = ram.iova_range().and_then(|r| Some((r, *p.info.containing(&r)?)));
            if let Some((r, holds)) = range {
                let _ = writeln!(
                    out,
                    "ok - VFIO type1: device bound and attached to the compat IOAS, guest RAM mapped at IOVA = GPA {:#x}..{:#x} (4 KiB pages, inside IOVA range [{:#x}, {:#x}])",
                    r.start, r.last, holds.start, holds.last
                );
            }
        });
        if let Err(e) = mapped {
            let _ = writeln!(out, "FAILED - VFIO type1 setup: {e}");
            self.life = Life::Over;
            return;
        }
        if timed {
            self.time_round_trips(out);
        }
        self.guest_done = false;
        self.stray_reported = false;
        match self.guest.start(&mut self.vcpu) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "guest loaded ({} bytes at GPA {GUEST_RAM_GPA:#x}), vCPU {} started",
                    GUEST_IMAGE.len(),
                    self.vcpu.vcpu.index()
                );
            }
            Err(e) => {
                let _ = writeln!(out, "FAILED - {e}");
                self.life = Life::Over;
            }
        }
    }

    /// The figure of docs/benchmarks.md outside the VM: the guest's own
    /// round trip code (edu-guest-driver), its guest-physical addresses
    /// the IOVAs just mapped, run by this plain PD on the guest's RAM
    /// through its own mapping.
    fn time_round_trips(&self, out: &mut Out) {
        let (edu, ram) = (&self.edu, self.guest_ram());
        let (timed, frequency) = (
            edu_guest_driver::timed_round_trips(edu, &ram, BENCH_ROUNDS, microkit::counter::ticks),
            microkit::counter::frequency(),
        );
        let each = |ticks| benchkit::icount::per_call(ticks, frequency, BENCH_ROUNDS.into());
        let _ = match timed.map(|t| (t, each(t.total), each(t.total - t.transfers))) {
            Ok((t, Some(all), Some(own))) => writeln!(
                out,
                "bench: {BENCH_ROUNDS} edu DMA round trips outside a VM (the VMM itself, the guest's code and mappings): {} ticks at {frequency} Hz; under -icount shift=0, a trip of {all} instructions, {own} outside the transfers",
                t.total
            ),
            Ok(_) => writeln!(out, "FAILED - no counter frequency"),
            Err(why) => writeln!(out, "FAILED - timed DMA round trips: {why}"),
        };
    }

    fn stop_guest(&mut self, out: &mut Out, why: impl Display) {
        if self.guest.phase() == Phase::Running {
            let _ = self.guest.stop(&mut self.vcpu);
        }
        let _ = writeln!(out, "FAILED - guest stopped: {why}");
        self.life = Life::Over;
    }

    /// Both ends of a life are in: the guest said it is done and the
    /// server reported its stray DMA.
    fn life_over(&mut self, out: &mut Out) {
        if !(self.guest_done && self.stray_reported) {
            return;
        }
        let Some(manager) = self.manager else {
            let _ = writeln!(out, "FAILED - no channel to the manager: no reset");
            self.life = Life::Over;
            return;
        };
        match self.life {
            Life::First => {
                // A transfer the reset must cut off: the device's DMA is
                // still running when the manager revokes this client.
                if let Err(why) =
                    edu_guest_driver::start_dma(&self.edu, &self.guest_ram(), IN_FLIGHT_SEED)
                {
                    let _ = writeln!(out, "FAILED - a DMA to leave in flight: {why}");
                    self.life = Life::Over;
                    return;
                }
                self.in_flight_unreported = true;
                let _ = writeln!(
                    out,
                    "guest stopped, a DMA of its device in flight to GPA {:#x}; asking the manager to reset its device's DMA",
                    self.guest_ram().dst()
                );
                self.life = Life::Resetting;
                microkit::notify(manager);
            }
            Life::Second => {
                let _ = writeln!(
                    out,
                    "ok - guest reset and restarted: its DMA works again through the new mappings"
                );
                self.life = Life::Over;
                microkit::notify(manager);
            }
            Life::Resetting | Life::Over => {}
        }
    }

    fn read_faults(&mut self, out: &mut Out) {
        let ram = self.map().ram[0];
        let stray = ram.gpa + ram.size;
        let report = match faults::read(&mut self.iommu, self.guest.map_of()) {
            Ok(report) => report,
            Err(e) => {
                let _ = writeln!(out, "FAILED - {e}");
                return;
            }
        };
        // The transfer left in flight across the reset: while the
        // manager holds this client the device's stream has no valid
        // entry (C_BAD_STE, no address); otherwise its records are at its
        // destination's page.
        let in_flight_page = self.guest_ram().dst() & !0xfff;
        let of_in_flight = |f: &faults::DmaFault| match f.gpa {
            None => f.kind == iommu_proto::fault::IOMMU_FAULT_KIND_C_BAD_STE,
            Some(at) => at & !0xfff == in_flight_page,
        };
        match report.first {
            Some(f) if of_in_flight(&f) && self.in_flight_unreported => {
                let _ = writeln!(
                    out,
                    "ok - the server reported the DMA in flight across the reset, which reached nothing: {f}"
                );
                self.in_flight_unreported = false;
            }
            // The same transfer's next record.
            Some(f) if of_in_flight(&f) && self.life != Life::First => {}
            Some(f) if f.is_stray_to(stray) && self.stray_reported => {}
            Some(f) if f.is_stray_to(stray) => {
                let _ = writeln!(out, "ok - the server reported the guest's stray DMA: {f}");
                self.stray_reported = true;
            }
            Some(f) => {
                let _ = writeln!(
                    out,
                    "FAILED - unexpected DMA fault of the guest's device: {f}"
                );
            }
            None => {}
        }
        self.life_over(out);
    }

    /// The guest's call (an unknown-syscall fault): `Some(reply)` resumes
    /// it.
    fn guest_call(&mut self, out: &mut Out) -> Option<MessageInfo> {
        let call = GuestCall::from_message(microkit::get_mr);
        let vcpu = self.vcpu.vcpu;
        let exception = || {
            let reg = |r| microkit::vcpu_read_reg(vcpu, r).unwrap_or(0);
            El1Exception {
                esr: reg(VcpuReg::Esr),
                elr: reg(VcpuReg::ElrEl1),
                far: reg(VcpuReg::Far),
            }
        };
        let ram = core::slice::from_ref(&self.vcpu.ram);
        match exit::guest_call(self.guest.map_of(), ram, &call, exception) {
            Action::Console { line, resume } => {
                let _ = writeln!(out, "guest: {}", line.as_str());
                let length = resume.to_message(microkit::set_mr);
                Some(MessageInfo::new(0, length))
            }
            Action::Stop(Stop::Done) => {
                let _ = writeln!(out, "guest: done");
                self.guest_done = true;
                if let Err(e) = self.guest.stop(&mut self.vcpu) {
                    let _ = writeln!(out, "FAILED - {e}");
                }
                self.life_over(out);
                None
            }
            Action::Stop(why) => {
                self.stop_guest(out, why);
                None
            }
        }
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
        } else if Some(channel) == self.manager && self.life == Life::Resetting {
            // The manager reset this client: nothing it held remains.
            match self.guest.revoked() {
                Ok(()) => {
                    // The transfer must be over before guest RAM is
                    // mapped again, or it could land in the new mapping.
                    let cut_off = self
                        .edu
                        .wait()
                        .map_err(|_| "the device is still busy")
                        .and_then(|()| {
                            edu_guest_driver::untouched(&self.guest_ram(), IN_FLIGHT_SEED)
                        });
                    let _ = match cut_off {
                        Ok(()) => writeln!(
                            out,
                            "ok - the DMA in flight at the reset is over and the guest's RAM untouched"
                        ),
                        Err(why) => writeln!(out, "FAILED - the DMA in flight at the reset: {why}"),
                    };
                    self.life = Life::Second;
                    self.map_and_start(&mut out, false);
                }
                Err(e) => {
                    let _ = writeln!(out, "FAILED - {e}");
                    self.life = Life::Over;
                }
            }
        }
    }

    fn fault(&mut self, child: Child, msg: MessageInfo) -> Option<MessageInfo> {
        let mut out = Out::new();
        if Vcpu::of_fault(child) != self.vcpu.vcpu {
            let _ = writeln!(out, "FAILED - fault of an unknown child {}", child.index());
            return None;
        }
        let action = match msg.label() {
            fault::UNKNOWN_SYSCALL => return self.guest_call(&mut out),
            fault::VCPU_FAULT => exit::vcpu_fault(microkit::get_mr(vcpu_fault::HSR)),
            fault::VM_FAULT => exit::vm_fault(
                self.map(),
                microkit::get_mr(vm_fault::ADDR),
                microkit::get_mr(vm_fault::IP),
                microkit::get_mr(vm_fault::FSR),
            ),
            label => {
                self.stop_guest(&mut out, fault::name(label));
                return None;
            }
        };
        if let Action::Stop(why) = action {
            self.stop_guest(&mut out, why);
        }
        None
    }
}

microkit::declare_pd!(init);
