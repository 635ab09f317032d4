//! The guest VM's story without a VM: with no Microkit SDK there is no
//! hypervisor, so the guest's driver logic (`edu-guest-driver`) runs as a
//! plain driver, and it says so. Everything else is the VMM's, as on
//! seL4: the VMM programs the device's configuration page, runs the VFIO
//! type1 sequence over the server (`vmm-core`: guest RAM mapped with IOVA
//! = guest-physical address), and resets the guest by the same path
//! (stop, quarantine and revoke, map again, start). The guest's driver
//! gives its device guest-physical addresses, which here are IOVAs the
//! VMM mapped, exactly as a guest's would be. What needs a VM (a vCPU's
//! faults: the hvc console, stage-2 aborts) runs on seL4 only.

use core::fmt::Write;

use edu_guest_driver::GuestRam;
use iommu_client::{DmaBuffer, Iommu};
use iommu_system::{ClientId, CLIENTS};
use qemu_virt::platform::DeviceWindows;
use vmm_core::layout::{GUEST_BAR_GPA, GUEST_RAM_GPA};
use vmm_core::{faults, Bar, Guest, GuestMap, RamRegion, Vcpu};

use crate::devices;
use crate::output::{Prefix, Tally};
use crate::transport::{take_faults, Buffers, Clients, Direct, RegionMemory, Shared};

/// The plain driver in the vCPU's place: started and stopped by the VMM,
/// it runs only while started.
struct PlainDriver {
    runs: bool,
}

impl Vcpu for PlainDriver {
    fn stop(&mut self) {
        self.runs = false;
    }

    fn start(&mut self) -> Result<(), u64> {
        self.runs = true;
        Ok(())
    }
}

/// Each VMM's guest (the clients running vmm.elf).
pub fn story(
    tally: &mut Tally,
    clients: &mut Clients<'_>,
    buffers: &Buffers,
    windows: &mut DeviceWindows,
) -> Result<(), &'static str> {
    let server = clients.server;
    for v in (0..CLIENTS.len()).filter(|&i| CLIENTS[i].runs(vmm_core::IMAGE)) {
        let ram = buffers[v][0].as_ref().ok_or("a VMM without guest RAM")?;
        let iommu = clients.iommus.get_mut(v).ok_or("no VMM client")?;
        guest(tally, server, iommu, v, ram, windows)?;
    }
    Ok(())
}

/// The server's figures for client `v`: free mappings, its objects, its
/// pages.
fn pools(server: Shared<'_>, v: usize) -> (usize, usize, Option<u64>) {
    let s = server.borrow();
    let id = ClientId(v as u16);
    (
        s.store().areas_free(),
        s.object_count(id),
        s.store().account(id).map(|a| a.used),
    )
}

fn guest(
    tally: &mut Tally,
    server: Shared<'_>,
    iommu: &mut Iommu<Direct<'_>>,
    v: usize,
    ram: &DmaBuffer<RegionMemory>,
    windows: &mut DeviceWindows,
) -> Result<(), &'static str> {
    let spec = &CLIENTS[v];
    let device = spec.devices.first().ok_or("a VMM without a device")?;
    let (vmm, name) = (spec.pd, device.name);
    let mut out = Prefix(name, true);
    let _ = writeln!(
        out,
        "no VM without an SDK: the guest's driver runs as a plain driver, its guest-physical addresses the IOVAs its VMM maps"
    );
    // The VMM programs the configuration page before the guest runs: BAR0
    // where system.xml puts the device's window, memory and bus master on.
    let device_windows = devices::of(windows, vmm, devices::GUEST_EDU_REGS)?;
    let bar_size = device_windows.bar_size;
    let cfg = device_windows.config;
    if cfg.ids() != Some((edu_device::VENDOR, edu_device::DEVICE)) {
        return Err("no edu device at the guest's stream");
    }
    cfg.enable(device_windows.bar);
    let edu = edu_device::Edu(device_windows.regs);

    let rams = [RamRegion {
        gpa: GUEST_RAM_GPA,
        size: ram.len(),
        vmm_vaddr: ram.vaddr(),
        dma: true,
    }];
    let bars = [Bar {
        gpa: GUEST_BAR_GPA,
        size: bar_size,
    }];
    let map = GuestMap {
        ram: &rams,
        bars: &bars,
    };
    let mut vcpu = PlainDriver { runs: false };
    let mut vm = Guest::new(map, 0, v as u64);
    let mapped = vm.map(iommu).map(|p| {
        let mut vout = Prefix(vmm, true);
        let _ = writeln!(
            vout,
            "{name} bound and attached to the container (HWPT {}); GET_INFO: page sizes {:#x}, {} IOVA ranges; MAP_DMA iova {GUEST_RAM_GPA:#x} <- vaddr {:#x}, {:#x} bytes",
            p.hwpt,
            p.info.pgsizes,
            p.info.ranges().len(),
            ram.vaddr(),
            ram.len()
        );
    });
    let mapped = mapped.map_err(|e| {
        let _ = writeln!(Prefix(vmm, true), "{e}");
        "the VFIO sequence failed"
    });
    tally.check(
        vmm,
        "VFIO type1 as QEMU runs it: guest RAM mapped at its guest-physical address",
        mapped,
    );
    vm.start(&mut vcpu).map_err(|_| "the guest did not start")?;

    let guest_ram = GuestRam {
        gpa: GUEST_RAM_GPA,
        mem: ram.memory(),
    };
    tally.check(
        name,
        "DMA round trip into its own RAM at guest-physical addresses",
        edu_guest_driver::round_trip(&edu, &guest_ram, 17, &mut out),
    );
    let stray = guest_ram.end();
    let strayed = edu_guest_driver::stray(&edu, &guest_ram, stray, 0x5a, &mut out);
    let told = strayed.and_then(|()| {
        if take_faults(server) & (1 << v) == 0 {
            return Err("the VMM was not told");
        }
        let report = faults::read(iommu, &map).map_err(|_| "FAULT read refused")?;
        let first = report.first.ok_or("no fault recorded")?;
        let _ = writeln!(Prefix(vmm, true), "{name}: {first}");
        iommu.drain_faults();
        if first.is_stray_to(stray) {
            Ok(())
        } else {
            Err("the fault is not the stray DMA's")
        }
    });
    tally.check(
        name,
        "DMA aimed outside its RAM reached nothing; its VMM is told where",
        told,
    );

    // The reset path, with a transfer in flight.
    let before = pools(server, v);
    edu_guest_driver::start_dma(&edu, &guest_ram, 0x33)?;
    let held = vm
        .stop(&mut vcpu)
        .and_then(|()| vm.quarantine(iommu))
        .map_err(|e| {
            let _ = writeln!(Prefix(vmm, true), "{e}");
            "the reset path failed"
        })
        .and_then(|()| {
            edu.wait().map_err(|_| "the device is still busy")?;
            edu_guest_driver::untouched(&guest_ram, 0x33)?;
            if take_faults(server) & (1 << v) == 0 {
                return Err("the VMM was not told");
            }
            let report = faults::read(iommu, &map).map_err(|_| "FAULT read refused")?;
            let first = report.first.ok_or("no fault recorded")?;
            let _ = writeln!(Prefix(vmm, true), "{name} while quarantined: {first}");
            Ok(())
        });
    tally.check(
        vmm,
        "reset: stopped, quarantined; the DMA in flight reached nothing and faulted",
        held,
    );
    let again = vm
        .map(iommu)
        .map(|_| ())
        .and_then(|()| vm.start(&mut vcpu))
        .map_err(|e| {
            let _ = writeln!(Prefix(vmm, true), "{e}");
            "the reset path failed"
        })
        .and_then(|()| edu_guest_driver::round_trip(&edu, &guest_ram, 19, &mut out))
        .and_then(|()| {
            if pools(server, v) == before {
                Ok(())
            } else {
                Err("the server's pools differ")
            }
        });
    tally.check(
        vmm,
        "reset: mapped again, the guest's DMA works, the server's pools as before",
        again,
    );
    if vcpu.runs {
        Ok(())
    } else {
        Err("the guest is not running")
    }
}
