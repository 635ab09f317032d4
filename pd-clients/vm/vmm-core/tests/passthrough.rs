//! A VMM passing the guest's edu device through, against the server core
//! in a testkit rig: the VFIO sequence and GET_INFO's answers, guest RAM
//! the device's IOVA ranges cannot hold, RAM the VMM does not map, the
//! vCPU's faults, and the reset path. The device is the testkit's edu,
//! its DMA translated by the rig's mock IOMMU; the guest's driver is
//! `edu-guest-driver`, given guest-physical addresses.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use edu_device::Edu;
use edu_guest_driver::GuestRam;
use iommu_client::{Iommu, Transport};
use iommu_proto::{Errno, Op};
use iommu_testkit::edu::{PhysRam, SimEdu};
use iommu_testkit::rig::{client, id};
use iommu_testkit::{HeapMemory, MockHw, Rig, RigTransport};
use iommu_types::config::{DeviceConfig, Quota, Region};
use iommu_types::fault::IOMMU_FAULT_KIND_F_TRANSLATION;
use iommu_types::{IovaRange, StreamId};
use microkit::Hsr;
use mmio::Memory;
use vmm_core::exit::{self, Action, El1Exception, GuestCall, Stop};
use vmm_core::{faults, Bar, Cause, Error, GuestMap, Phase, Place, RamRegion, Request};

const MIB2: u64 = 0x20_0000;
const STREAM: StreamId = StreamId(0x30);
/// Guest RAM where QEMU virt puts RAM; where the VMM maps it; where it is.
const RAM_GPA: u64 = 0x4000_0000;
const RAM_VA: u64 = 0x3000_0000;
const RAM_PA: u64 = 0x5e00_0000;
/// A second 2 MiB the VMM maps after the first, and where it is.
const RAM2_VA: u64 = RAM_VA + MIB2;
const RAM2_PA: u64 = RAM_PA + MIB2;
const BAR_GPA: u64 = 0x1000_0000;

/// The windows iommu.xml gives every device: the GIC's MSI frame, the
/// PCIe host bridge's MMIO windows.
static WINDOWS: [IovaRange; 3] = [
    IovaRange::new(0x0800_0000, 0x0803_ffff),
    IovaRange::new(0x1000_0000, 0x3efe_ffff),
    IovaRange::new(0x80_0000_0000, 0xff_ffff_ffff),
];
static DEVICES: [DeviceConfig; 1] = [DeviceConfig {
    name: "guest_edu",
    stream_id: STREAM,
    dma_mask: (1 << 40) - 1,
    reserved: &WINDOWS,
}];
/// The VMM's two regions the server knows: each may be given to the device.
static REGIONS: [Region; 2] = [
    iommu_testkit::rig::region(RAM_VA, MIB2, RAM_PA),
    iommu_testkit::rig::region(RAM2_VA, MIB2, RAM2_PA),
];
/// As iommu.xml's vmm client, with room for both regions.
const QUOTA: Quota = Quota {
    objects: 8,
    ioases: 1,
    mapped_pages: 1024,
    table_pages: 8,
    hwpts: 1,
    mappings: 8,
};

const BARS: [Bar; 1] = [Bar {
    gpa: BAR_GPA,
    size: 0x10_0000,
}];

/// The guest's one region of RAM, mapped for DMA.
static ONE_RAM: [RamRegion; 1] = [RamRegion {
    gpa: RAM_GPA,
    size: MIB2,
    vmm_vaddr: RAM_VA,
    dma: true,
}];

/// The map of a guest with [`ONE_RAM`] and the BAR.
fn one_ram() -> GuestMap<'static> {
    GuestMap {
        ram: &ONE_RAM,
        bars: &BARS,
    }
}

fn ram(gpa: u64, vmm_vaddr: u64, dma: bool) -> RamRegion {
    RamRegion {
        gpa,
        size: MIB2,
        vmm_vaddr,
        dma,
    }
}

/// A transport that records each request's op.
struct Recording {
    inner: RigTransport,
    ops: Rc<RefCell<Vec<Op>>>,
}

impl Transport for Recording {
    fn write_page(&mut self, bytes: &[u8]) {
        self.inner.write_page(bytes)
    }
    fn read_page(&mut self, out: &mut [u8]) {
        self.inner.read_page(out)
    }
    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64) {
        self.ops.borrow_mut().push(Op::from_label(label).unwrap());
        self.inner.call(label, mrs)
    }
}

/// The system: the server with the VMM as its client 0 and the manager
/// as client 1, the guest's RAM (4 MiB of physical memory, and the page
/// after it), the device.
struct System {
    rig: Rc<RefCell<Rig<MockHw>>>,
    vmm: Iommu<Recording>,
    manager: Iommu<RigTransport>,
    ops: Rc<RefCell<Vec<Op>>>,
    /// The two 2 MiB of RAM, and the page of physical memory after them.
    ram: [Rc<HeapMemory>; 2],
    edu: SimEdu,
}

fn system() -> System {
    let vmm = client("vmm")
        .regions(&REGIONS)
        .devices(&DEVICES)
        .quota(QUOTA)
        .build();
    let manager = client("manager").manager(true).build();
    let rig = Rc::new(RefCell::new(Rig::new(MockHw::new(), &[vmm, manager])));
    let ops = Rc::new(RefCell::new(Vec::new()));
    let ram = [
        Rc::new(HeapMemory::zeroed(MIB2 as usize)),
        Rc::new(HeapMemory::zeroed(MIB2 as usize)),
    ];
    let phys = vec![
        PhysRam {
            paddr: RAM_PA,
            mem: ram[0].clone(),
        },
        PhysRam {
            paddr: RAM2_PA,
            mem: ram[1].clone(),
        },
        PhysRam {
            paddr: RAM2_PA + MIB2,
            mem: Rc::new(HeapMemory::zeroed(0x1000)),
        },
    ];
    let edu = SimEdu::new(&rig, STREAM, phys);
    let vmm = Iommu::new(Recording {
        inner: RigTransport::new(&rig, 0),
        ops: ops.clone(),
    });
    let manager = Iommu::new(RigTransport::new(&rig, 1));
    System {
        rig,
        vmm,
        manager,
        ops,
        ram,
        edu,
    }
}

impl System {
    fn reach(&self, gpa: u64) -> Option<u64> {
        self.rig.borrow().server.hardware().dma(STREAM, gpa)
    }

    /// Mappings, objects, domains and pages the server holds now.
    fn pools(&self) -> (usize, usize, usize, usize) {
        let rig = self.rig.borrow();
        let s = &rig.server;
        (
            s.store().areas_free(),
            s.object_count(id(0)),
            s.hardware().live_domains(),
            s.store().pages_free(),
        )
    }
}

/// The bytes of `mem` at `offset`.
fn bytes(mem: &HeapMemory, offset: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    assert!(mem.read(offset, &mut out));
    out
}

#[test]
fn the_vfio_sequence_maps_guest_ram_at_its_guest_physical_address() {
    let mut s = system();
    let map = one_ram();
    let mut guest = vmm_core::Guest::new(map, 0, 0);
    let p = guest.map(&mut s.vmm).unwrap();
    // QEMU's order: version, extension, the device into the container,
    // the IOMMU type, its info, then one MAP_DMA per RAM section.
    assert_eq!(
        *s.ops.borrow(),
        [
            Op::VfioGetApiVersion,
            Op::VfioCheckExtension,
            Op::VfioDeviceBindIommufd,
            Op::VfioDeviceAttachIommufdPt,
            Op::VfioSetIommu,
            Op::VfioIommuGetInfo,
            Op::VfioIommuMapDma,
        ]
    );
    // GET_INFO: 4 KiB pages, and the IOVA ranges are the device's DMA
    // mask with its reserved windows cut out.
    assert_ne!(p.info.pgsizes & 0x1000, 0);
    assert_eq!(
        p.info.ranges(),
        [
            IovaRange::new(0, 0x07ff_ffff),
            IovaRange::new(0x0804_0000, 0x0fff_ffff),
            IovaRange::new(0x3eff_0000, 0x7f_ffff_ffff),
        ]
    );
    assert_eq!(p.info.dma_avail, Some(QUOTA.mappings as u32));
    assert_eq!(p.mapped, 1);
    // IOVA = GPA: the device reaches guest RAM at its guest-physical
    // address, and nothing past it.
    assert_eq!(s.reach(RAM_GPA), Some(RAM_PA));
    assert_eq!(s.reach(RAM_GPA + MIB2 - 1), Some(RAM_PA + MIB2 - 1));
    assert_eq!(s.reach(RAM_GPA + MIB2), None);
    assert_eq!(s.reach(RAM_VA), None, "the VMM's address is no IOVA");

    // The guest's driver, with guest-physical addresses: a round trip
    // into its own RAM, verified; a DMA past its RAM lands nowhere and is
    // reported to the VMM, placed outside the guest's map.
    let g = GuestRam {
        gpa: RAM_GPA,
        mem: &*s.ram[0],
    };
    let edu = Edu(&s.edu);
    let mut out = String::new();
    edu_guest_driver::round_trip(&edu, &g, 5, &mut out).unwrap();
    assert!(out.contains("DMA at GPA 0x40100000 -> 0x40101000"), "{out}");
    assert_eq!(s.edu.faults(), 0);
    edu_guest_driver::stray(&edu, &g, g.end(), 9, &mut out).unwrap();
    assert_eq!(s.edu.faults(), 1);
    let report = faults::read(&mut s.vmm, &map).unwrap();
    let f = report.first.unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(
        (f.kind, f.gpa, f.write, f.place),
        (
            IOMMU_FAULT_KIND_F_TRANSLATION,
            Some(RAM_GPA + MIB2),
            true,
            Some(Place::Outside)
        )
    );
    assert_eq!(
        f.to_string(),
        "F_TRANSLATION writing GPA 0x40200000 (outside the guest's memory map)"
    );
    assert!(f.is_stray_to(g.end()));
    assert!(!f.is_stray_to(g.end() + 0x1000), "another page");
    assert_eq!(bytes(&s.ram[1], 0, 64), vec![0; 64]);
    assert_eq!(s.edu.elsewhere.get(), 0);
}

#[test]
fn guest_ram_over_the_pcie_window_is_refused_before_any_mapping() {
    let mut s = system();
    // The first region is sound; the second lies on the PCIe host
    // bridge's window, which no device may be given as a DMA address.
    let rams = [ram(RAM_GPA, RAM_VA, true), ram(0x1000_0000, RAM2_VA, true)];
    let map = GuestMap {
        ram: &rams,
        bars: &[],
    };
    let mut guest = vmm_core::Guest::new(map, 0, 0);
    let err = guest.map(&mut s.vmm).unwrap_err();
    assert_eq!(
        err,
        Error {
            request: Request::GetInfo,
            errno: Errno::EINVAL,
            cause: Cause::OutsideIovaRanges {
                region: 1,
                ram: IovaRange::new(0x1000_0000, 0x101f_ffff),
            },
        }
    );
    assert_eq!(
        err.to_string(),
        "VFIO_IOMMU_GET_INFO: EINVAL: guest RAM region 1 at 0x10000000..=0x101fffff lies in no IOVA range of the device's IOMMU"
    );
    // Refused before a single MAP_DMA: the sound region is not mapped
    // either, and the device reaches nothing.
    assert!(!s.ops.borrow().contains(&Op::VfioIommuMapDma));
    assert_eq!(guest.phase(), Phase::Unmapped);
    assert_eq!(s.reach(RAM_GPA), None);
    assert_eq!(s.reach(0x1000_0000), None);
    let rig = s.rig.borrow();
    assert_eq!(
        rig.server.store().areas_free(),
        rig.server.store().areas_capacity()
    );
}

#[test]
fn guest_ram_the_vmm_does_not_map_is_out_of_its_devices_reach() {
    let mut s = system();
    // 4 MiB of guest RAM; the VMM gives the device the first 2 MiB only.
    let rams = [
        ram(RAM_GPA, RAM_VA, true),
        ram(RAM_GPA + MIB2, RAM2_VA, false),
    ];
    let map = GuestMap {
        ram: &rams,
        bars: &BARS,
    };
    let mut guest = vmm_core::Guest::new(map, 0, 0);
    assert_eq!(guest.map(&mut s.vmm).unwrap().mapped, 1);
    assert_eq!(s.reach(RAM_GPA + MIB2), None);
    // The guest aims its device at its own, unmapped RAM: its driver sees
    // the write done; the RAM holds none of it; the VMM is told where.
    let g = GuestRam {
        gpa: RAM_GPA,
        mem: &*s.ram[0],
    };
    let edu = Edu(&s.edu);
    let mut out = String::new();
    edu_guest_driver::stray(&edu, &g, RAM_GPA + MIB2, 3, &mut out).unwrap();
    assert_eq!(bytes(&s.ram[1], 0, 64), vec![0; 64]);
    let report = faults::read(&mut s.vmm, &map).unwrap();
    let f = report.first.unwrap();
    assert_eq!(
        (report.records, f.gpa, f.place),
        (
            1,
            Some(RAM_GPA + MIB2),
            Some(Place::Ram {
                region: 1,
                offset: 0
            })
        )
    );
    assert!(!report.lost && report.dropped == 0);
}

/// ESR_EL2 of a data abort from the guest, a write or a read.
fn data_abort(write: bool) -> u64 {
    (u64::from(Hsr::EC_DABT_LOWER) << 26) | (1 << 25) | (u64::from(write) << 6)
}

/// The unknown-syscall fault of the guest's `hvc #0` at `pc`: call
/// `number` in x0, `x7` in x7, the other registers what the guest had.
fn call(number: u64, x7: u64, pc: u64) -> GuestCall {
    // As the kernel's message registers hold them: x0..x7, the PC, then
    // SP, LR, SPSR and the syscall number (x7 again).
    let mrs = [
        number,
        11,
        22,
        33,
        44,
        55,
        66,
        x7,
        pc,
        0x4010_0000,
        0x4000_0040,
        0x3c5,
        x7,
    ];
    GuestCall::from_message(|i| mrs[i])
}

#[test]
fn guest_calls_and_faults_decode_as_sel4_delivers_them() {
    let map = one_ram();
    let guest_ram = [HeapMemory::zeroed(MIB2 as usize)];
    let console = (map.console_gpa().unwrap() - RAM_GPA) as usize;
    assert_eq!(console as u64, MIB2 - 0x1000, "the last page of RAM");
    guest_ram[0].write(console, b"hello from the guest\0ignored");
    let no_exception = || panic!("only an exception call reads the EL1 syndrome");
    let hvc_pc = RAM_GPA + 0x1f0;
    let at_console = call(exit::CALL_CONSOLE, 0, hvc_pc);
    let Action::Console { line, resume } =
        exit::guest_call(&map, &guest_ram, &at_console, no_exception)
    else {
        panic!("call 1 is a console line");
    };
    assert_eq!(
        (line.as_str(), line.truncated),
        ("hello from the guest", false)
    );
    // The reply resumes the guest past its hvc (4 bytes), its registers
    // as they were; a reply without the PC would run the hvc again.
    assert_eq!(resume.pc, hvc_pc + 4);
    assert_eq!(resume.x, [exit::CALL_CONSOLE, 11, 22, 33, 44, 55, 66, 0]);
    let mut reply = [0u64; 9];
    let length = resume.to_message(|i, v| reply[i] = v);
    assert_eq!(length, 9, "x0..x7 and the PC");
    assert_eq!(reply, [1, 11, 22, 33, 44, 55, 66, 0, hvc_pc + 4]);

    // Bytes the guest chooses are shown, never trusted: no NUL within
    // the bound cuts the line there, and control bytes are `?`.
    guest_ram[0].write(console, &[b'x'; 300]);
    guest_ram[0].write(console, b"bell\x07\x1b[2J");
    let Action::Console { line, .. } =
        exit::guest_call(&map, &guest_ram, &at_console, no_exception)
    else {
        panic!("call 1 is a console line");
    };
    assert!(line.truncated);
    assert_eq!(line.as_str().len(), exit::CONSOLE_BYTES);
    assert!(line.as_str().starts_with("bell??[2Jxxx"), "{line:?}");

    assert_eq!(
        exit::guest_call(
            &map,
            &guest_ram,
            &call(exit::CALL_DONE, 0, hvc_pc),
            no_exception
        ),
        Action::Stop(Stop::Done)
    );
    // The exception call: the VMM reads the vCPU's EL1 syndrome.
    let taken = El1Exception {
        esr: u64::from(Hsr::EC_DABT_LOWER) << 26,
        elr: RAM_GPA + 0x88,
        far: 0x9000_0000,
    };
    let stop = exit::guest_call(
        &map,
        &guest_ram,
        &call(exit::CALL_EXCEPTION, 0, RAM_GPA + 0x800),
        || taken,
    );
    assert_eq!(stop, Action::Stop(Stop::Exception(taken)));
    let Action::Stop(why) = stop else {
        unreachable!()
    };
    assert_eq!(
        why.to_string(),
        "the guest took an exception: ESR_EL1 0x90000000 (data abort), ELR_EL1 0x40000088, FAR_EL1 0x90000000"
    );
    // A number the protocol lacks, or x7 not zero (a call meant for
    // someone else), stops the guest at that hvc.
    assert_eq!(
        exit::guest_call(&map, &guest_ram, &call(7, 0, hvc_pc), no_exception),
        Action::Stop(Stop::UnknownCall {
            number: 7,
            x7: 0,
            pc: hvc_pc
        })
    );
    assert_eq!(
        exit::guest_call(
            &map,
            &guest_ram,
            &call(exit::CALL_CONSOLE, 3, hvc_pc),
            no_exception
        ),
        Action::Stop(Stop::UnknownCall {
            number: 1,
            x7: 3,
            pc: hvc_pc
        })
    );
    // A console page that is not RAM the VMM holds stops the guest.
    let none: [HeapMemory; 0] = [];
    assert_eq!(
        exit::guest_call(&map, &none, &at_console, no_exception),
        Action::Stop(Stop::ConsoleUnreadable)
    );

    // A vCPU fault: an instruction trapped; the guest stops.
    let wfi = u64::from(Hsr::EC_WFX) << 26 | 1 << 25;
    let Action::Stop(why) = exit::vcpu_fault(wfi) else {
        panic!("a trapped WFI stops the guest");
    };
    assert_eq!(
        why.to_string(),
        "the guest trapped: WFI/WFE (HSR 0x6000000)"
    );
    // Stage-2 aborts: outside the map, the guest stops with the cause.
    let pc = RAM_GPA + 0x40;
    let stop = exit::vm_fault(&map, 0x9000_0000, pc, data_abort(true));
    assert_eq!(
        stop,
        Action::Stop(Stop::OutsideMap {
            gpa: 0x9000_0000,
            pc,
            write: true,
            fetch: false
        })
    );
    let Action::Stop(why) = stop else {
        unreachable!()
    };
    assert_eq!(
        why.to_string(),
        "the guest wrote 0x90000000 (pc 0x40000040), outside its memory map"
    );
    assert_eq!(
        exit::vm_fault(&map, 0x0, pc, data_abort(false)),
        Action::Stop(Stop::OutsideMap {
            gpa: 0,
            pc,
            write: false,
            fetch: false
        })
    );
    let fetch = u64::from(Hsr::EC_IABT_LOWER) << 26;
    assert_eq!(
        exit::vm_fault(&map, RAM_GPA + MIB2, RAM_GPA + MIB2, fetch),
        Action::Stop(Stop::OutsideMap {
            gpa: RAM_GPA + MIB2,
            pc: RAM_GPA + MIB2,
            write: false,
            fetch: true
        })
    );
    // Inside the map a stage-2 abort means the VM's mappings are wrong.
    assert_eq!(
        exit::vm_fault(&map, BAR_GPA + 8, pc, data_abort(true)),
        Action::Stop(Stop::InsideMap {
            gpa: BAR_GPA + 8,
            pc,
            place: Place::Bar { bar: 0, offset: 8 }
        })
    );
}

/// A vCPU that counts its starts and stops.
#[derive(Default)]
struct Counted {
    starts: Cell<u32>,
    stops: Cell<u32>,
    running: Cell<bool>,
}

impl vmm_core::Vcpu for &Counted {
    fn stop(&mut self) {
        self.stops.set(self.stops.get() + 1);
        self.running.set(false);
    }
    fn start(&mut self) -> Result<(), u64> {
        self.starts.set(self.starts.get() + 1);
        self.running.set(true);
        Ok(())
    }
}

/// A guest with map `map`, mapped and started on `vcpu`.
fn running<'m>(s: &mut System, map: GuestMap<'m>, vcpu: &Counted) -> vmm_core::Guest<'m> {
    let mut guest = vmm_core::Guest::new(map, 0, 0);
    guest.map(&mut s.vmm).unwrap();
    guest.start(&mut &*vcpu).unwrap();
    guest
}

#[test]
fn the_reset_path_quarantines_the_device_then_maps_it_again() {
    let mut s = system();
    let map = one_ram();
    let vcpu = Counted::default();
    let mut guest = running(&mut s, map, &vcpu);
    let first_device = guest.passthrough().unwrap().device.id();
    let pools = s.pools();

    // Steps out of order are refused, naming the step, without a call.
    let calls = s.ops.borrow().len();
    let early = guest.quarantine(&mut s.vmm).unwrap_err();
    assert_eq!(
        (early.request, early.errno, early.cause),
        (
            Request::ResetClient,
            Errno::EINVAL,
            Cause::Phase {
                expected: Phase::Stopped,
                found: Phase::Running
            }
        )
    );
    assert_eq!(guest.map(&mut s.vmm).unwrap_err().request, Request::Bind);
    assert_eq!(s.ops.borrow().len(), calls);

    // The guest starts a DMA into its RAM; the VMM resets it while the
    // transfer is in flight.
    let g = GuestRam {
        gpa: RAM_GPA,
        mem: &*s.ram[0],
    };
    let edu = Edu(&s.edu);
    edu_guest_driver::start_dma(&edu, &g, 0x33).unwrap();
    assert!(s.edu.busy());
    guest.stop(&mut &vcpu).unwrap();
    guest.quarantine(&mut s.vmm).unwrap();
    assert_eq!(guest.phase(), Phase::Quarantined);
    assert!(
        guest.passthrough().is_none(),
        "the VMM's device state is gone"
    );
    assert_eq!(s.reach(RAM_GPA), None);
    // Held: the transfer lands nowhere, faults, and is reported to the VMM.
    s.edu.finish();
    edu_guest_driver::untouched(&g, 0x33).unwrap();
    let report = faults::read(&mut s.vmm, &map).unwrap();
    assert_eq!(report.records, 1);
    assert_eq!(
        report.first.unwrap().place,
        Some(Place::Ram {
            region: 0,
            offset: edu_guest_driver::DST_OFFSET
        })
    );
    // Mapped again and restarted: DMA works as before, under a new
    // device ID (the old one is dead), and the server's pools are back
    // where they were.
    guest.map(&mut s.vmm).unwrap();
    guest.start(&mut &vcpu).unwrap();
    assert_eq!((vcpu.starts.get(), vcpu.stops.get()), (2, 1));
    assert_ne!(guest.passthrough().unwrap().device.id(), first_device);
    let mut out = String::new();
    edu_guest_driver::round_trip(&edu, &g, 21, &mut out).unwrap();
    assert_eq!(s.pools(), pools);

    // The whole path in one call, with what the VMM does while the device
    // is held.
    let mut held = 0;
    guest
        .reset(&mut s.vmm, &mut &vcpu, |iommu, map| {
            held = faults::read(iommu, map)?.records + 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(held, 1);
    assert_eq!(guest.phase(), Phase::Running);
    edu_guest_driver::round_trip(&edu, &g, 23, &mut out).unwrap();
    assert_eq!(s.pools(), pools);
}

#[test]
fn timed_round_trips_count_only_the_timed_trips_and_stop_on_a_failure() {
    let mut s = system();
    let map = one_ram();
    vmm_core::vfio::pass_through(&mut s.vmm, &map, 0).unwrap();
    let g = GuestRam {
        gpa: RAM_GPA,
        mem: &*s.ram[0],
    };
    let edu = Edu(&s.edu);
    // A counter that ticks once a read: the untimed trip is outside the
    // reads; each of 5 timed trips reads it around its two transfers (one
    // tick each), and the whole run once more at each end.
    let mut reads = 0;
    let timing = edu_guest_driver::timed_round_trips(&edu, &g, 5, || {
        reads += 1;
        reads
    });
    assert_eq!(
        timing,
        Ok(edu_guest_driver::Timing {
            total: 21,
            transfers: 10
        })
    );
    assert_eq!(reads, 22);
    assert_eq!(s.edu.faults(), 0);
    // Guest RAM the device cannot reach: the first trip fails, with its
    // cause, and the counter is never read.
    s.vmm
        .vfio_unmap_dma(0, 0, iommu_proto::vfio::VFIO_DMA_UNMAP_FLAG_ALL)
        .unwrap();
    let mut reads = 0;
    let failed = edu_guest_driver::timed_round_trips(&edu, &g, 5, || {
        reads += 1;
        0
    });
    assert_eq!((failed, reads), (Err("the data did not arrive"), 0));
}

#[test]
fn a_reset_its_manager_makes_is_followed_by_a_fresh_map() {
    let mut s = system();
    let map = one_ram();
    let vcpu = Counted::default();
    let mut guest = running(&mut s, map, &vcpu);
    let pools = s.pools();
    // Only a stopped guest's device can have been reset for it.
    let early = guest.revoked().unwrap_err();
    assert_eq!(
        early.cause,
        Cause::Phase {
            expected: Phase::Stopped,
            found: Phase::Running
        }
    );
    assert!(guest.passthrough().is_some());
    guest.stop(&mut &vcpu).unwrap();
    // The manager resets the VMM's client; the VMM makes no call of its
    // own for it and forgets its dead device state.
    let calls = s.ops.borrow().len();
    s.manager.reset(0).unwrap();
    guest.revoked().unwrap();
    assert_eq!(s.ops.borrow().len(), calls);
    assert_eq!(guest.phase(), Phase::Quarantined);
    assert!(guest.passthrough().is_none());
    assert_eq!(s.reach(RAM_GPA), None);
    guest.map(&mut s.vmm).unwrap();
    guest.start(&mut &vcpu).unwrap();
    let g = GuestRam {
        gpa: RAM_GPA,
        mem: &*s.ram[0],
    };
    let mut out = String::new();
    edu_guest_driver::round_trip(&Edu(&s.edu), &g, 29, &mut out).unwrap();
    assert_eq!(s.pools(), pools);
}

#[test]
fn a_reset_the_server_cannot_finish_names_its_errno_and_can_be_retried() {
    let mut s = system();
    let map = one_ram();
    let vcpu = Counted::default();
    let mut guest = running(&mut s, map, &vcpu);
    guest.stop(&mut &vcpu).unwrap();
    // The SMMU will not stop the stream: the server keeps every mapping
    // the device may still reach, and says EBUSY.
    s.rig.borrow_mut().server.hardware_mut().stuck.push(STREAM);
    let err = guest.quarantine(&mut s.vmm).unwrap_err();
    assert_eq!(err, Error::refused(Request::ResetClient, Errno::EBUSY));
    assert_eq!(err.to_string(), "RESET_CLIENT: EBUSY from the server");
    assert_eq!(guest.phase(), Phase::Stopped);
    assert!(guest.passthrough().is_some());
    assert_eq!(s.reach(RAM_GPA), Some(RAM_PA));
    s.rig.borrow_mut().server.hardware_mut().stuck.clear();
    guest.quarantine(&mut s.vmm).unwrap();
    assert_eq!(s.reach(RAM_GPA), None);
}

#[test]
fn a_map_that_fails_part_way_leaves_nothing_mapped() {
    let mut s = system();
    // The second region is not the VMM's memory as the server knows it:
    // its MAP_DMA is refused after the first succeeded.
    let rams = [
        ram(RAM_GPA, RAM_VA, true),
        ram(RAM_GPA + MIB2, 0x7000_0000, true),
    ];
    let map = GuestMap {
        ram: &rams,
        bars: &[],
    };
    let err = vmm_core::vfio::pass_through(&mut s.vmm, &map, 0).unwrap_err();
    assert_eq!(
        err,
        Error::refused(Request::MapDma { region: 1 }, Errno::EFAULT)
    );
    assert_eq!(
        err.to_string(),
        "VFIO_IOMMU_MAP_DMA of guest RAM region 1: EFAULT from the server"
    );
    assert_eq!(s.reach(RAM_GPA), None);
    assert_eq!(s.ops.borrow().last(), Some(&Op::VfioIommuUnmapDma));
}

#[test]
fn unsound_maps_and_info_answers_are_refused() {
    use vmm_core::map::MapError;
    let overlapping = [ram(RAM_GPA, RAM_VA, true)];
    let bar_on_ram = [Bar {
        gpa: RAM_GPA + 0x1000,
        size: 0x1000,
    }];
    let map = GuestMap {
        ram: &overlapping,
        bars: &bar_on_ram,
    };
    assert_eq!(
        map.check(),
        Err(MapError::Overlap {
            gpa: RAM_GPA + 0x1000
        })
    );
    let wraps = [RamRegion {
        gpa: u64::MAX - 0xfff,
        size: 0x2000,
        vmm_vaddr: 0,
        dma: true,
    }];
    let map = GuestMap {
        ram: &wraps,
        bars: &[],
    };
    assert_eq!(
        map.check(),
        Err(MapError::Empty {
            ram: true,
            index: 0
        })
    );
    // The sequence checks the map before its first call.
    let mut s = system();
    let err = vmm_core::vfio::pass_through(&mut s.vmm, &map, 0).unwrap_err();
    assert_eq!(err.request, Request::CheckMap);
    assert!(s.ops.borrow().is_empty());

    // GET_INFO answers: no 4 KiB page, no ranges, a looping chain.
    use iommu_proto::vfio::*;
    use vmm_core::IommuInfo;
    let head = |pgsizes, cap_offset| vfio_iommu_type1_info {
        argsz: 64,
        flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS,
        iova_pgsizes: pgsizes,
        cap_offset,
        pad: 0,
    };
    let bytes = [0u8; 64];
    assert_eq!(
        IommuInfo::parse(&head(0x1000, 0), &bytes),
        Err(Cause::NoIovaRanges)
    );
    let mut looping = [0u8; 64];
    // A header at 24 whose next points back at itself.
    looping[24..26].copy_from_slice(&VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL.to_le_bytes());
    looping[28..32].copy_from_slice(&24u32.to_le_bytes());
    assert_eq!(
        IommuInfo::parse(&head(0x1000, 24), &looping),
        Err(Cause::MalformedInfo)
    );
    let mut big = head(0x1000, 24);
    big.argsz = 4096;
    assert_eq!(
        IommuInfo::parse(&big, &bytes),
        Err(Cause::InfoTooLarge { needed: 4096 })
    );
    // One range holding all of RAM, but pages of 64 KiB only.
    let mut ranges = [0u8; 64];
    ranges[24..26].copy_from_slice(&VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE.to_le_bytes());
    ranges[32..36].copy_from_slice(&1u32.to_le_bytes());
    ranges[40..48].copy_from_slice(&0u64.to_le_bytes());
    ranges[48..56].copy_from_slice(&u64::MAX.to_le_bytes());
    let info = IommuInfo::parse(&head(0x1_0000, 24), &ranges).unwrap();
    assert_eq!(info.ranges(), [IovaRange::ALL]);
    let rams = [ram(RAM_GPA, RAM_VA, true)];
    let map = GuestMap {
        ram: &rams,
        bars: &[],
    };
    assert_eq!(
        vmm_core::vfio::check_info(&info, &map).unwrap_err().cause,
        Cause::No4KPages { pgsizes: 0x1_0000 }
    );
}
