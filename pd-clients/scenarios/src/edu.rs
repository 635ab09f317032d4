//! The edu driver's story over the IOMMU server: bind the device, give it
//! an IOAS, map a DMA buffer, move data both ways and check it, then show
//! that a stray DMA is stopped and reported, that a reset or a crash in
//! the middle of a DMA leaves the device reaching nothing, and that a
//! restarted driver starts clean. The edu driver PDs and the bare-metal
//! demo run these steps; only the transport and the memory differ.

use core::fmt::Write;

use edu_device::Edu;
use iommu_client::{Access, Device, DmaBuffer, Fault, Ioas, Iommu, Mapping, Transport};
use iommu_proto::fault::IOMMU_FAULT_KIND_F_TRANSLATION;
use iommu_proto::Errno;
use mmio::{Memory, RegisterBlock};

use crate::cause::{say_refused, Subject};
use crate::{pattern, Step};
use iommu_types::config::Storage;
use iommu_types::system::ClientSpec;

/// The driver PDs' program image (system.xml's `<program_image>`): the
/// clients running it are the edu story's drivers.
pub const IMAGE: &str = "edu_driver.elf";

fn fill<M: Memory>(buf: &DmaBuffer<M>, offset: usize, len: usize, seed: u8) -> Step {
    let mut chunk = [0u8; 64];
    for start in (0..len).step_by(chunk.len()) {
        let n = chunk.len().min(len - start);
        for (i, b) in chunk[..n].iter_mut().enumerate() {
            *b = pattern(seed, start + i);
        }
        if !buf.memory().write(offset + start, &chunk[..n]) {
            return Err("buffer write out of range");
        }
    }
    Ok(())
}

fn holds<M: Memory>(buf: &DmaBuffer<M>, offset: usize, len: usize, seed: u8) -> bool {
    let mut chunk = [0u8; 64];
    (0..len).step_by(chunk.len()).all(|start| {
        let n = chunk.len().min(len - start);
        buf.memory().read(offset + start, &mut chunk[..n])
            && chunk[..n]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(seed, start + i))
    })
}

/// Says which request the server refused (`step` of `object`), with what
/// and, when `client`'s configuration is the reason, why and where it
/// says so; then names the failed step (`<step> refused`).
macro_rules! refused {
    ($out:expr, $client:expr, $subject:expr, $step:literal, $object:expr) => {
        refused(
            $out,
            $client,
            $subject,
            $step,
            $object,
            concat!($step, " refused"),
        )
    };
}

fn refused<'a, S: Storage, C>(
    out: &'a mut impl Write,
    client: &'a ClientSpec<S, C>,
    subject: Subject,
    step: &'static str,
    object: &'a str,
    failed: &'static str,
) -> impl FnOnce(iommu_client::Error) -> &'static str + 'a {
    move |e| {
        say_refused(out, client, subject, step, object, e);
        failed
    }
}

/// Bytes each transfer of the story moves.
pub const STORY_BYTES: usize = 1024;
/// Offsets in the DMA buffer: the source, the destination, and a page the
/// device is never given.
pub const SRC: u64 = 0;
pub const DST: u64 = 0x1000;
pub const UNMAPPED: u64 = 0x2000;

/// A driver whose device is attached to its own IOAS with its buffer's
/// first two pages mapped.
#[derive(Debug)]
pub struct Session<'b> {
    pub device: Device,
    pub ioas: Ioas,
    pub src: Mapping<'b>,
    pub dst: Mapping<'b>,
}

/// Checks the device, binds it (`client`'s device 0), gives it an IOAS
/// and maps the first two pages of `buf`, `client`'s first DMA region; a
/// refusal names the request, the region or device, and what in
/// `client`'s configuration caused it.
pub fn setup<'b, T: Transport, M: Memory, R: RegisterBlock, S: Storage, C>(
    iommu: &mut Iommu<T>,
    edu: &Edu<R>,
    buf: &'b DmaBuffer<M>,
    client: &ClientSpec<S, C>,
    out: &mut impl Write,
) -> Result<Session<'b>, &'static str> {
    if edu.id() != edu_device::ID {
        return Err("the device does not identify as edu");
    }
    let device_name = client
        .devices
        .first()
        .map_or("device 0", |d| d.name.as_ref());
    let region = client
        .regions
        .first()
        .map_or("its DMA region", |r| r.mr.as_ref());
    let device = iommu.bind(0).map_err(refused!(
        out,
        client,
        Subject::Device(0),
        "BIND",
        device_name
    ))?;
    let ioas = iommu.ioas_alloc().map_err(refused!(
        out,
        client,
        Subject::Object,
        "IOAS_ALLOC",
        "an IOAS"
    ))?;
    let hwpt = iommu.attach(&device, &ioas).map_err(refused!(
        out,
        client,
        Subject::Object,
        "ATTACH",
        device_name
    ))?;
    let read = Subject::Map {
        region: 0,
        write: false,
    };
    let write = Subject::Map {
        region: 0,
        write: true,
    };
    let src = iommu
        .map(&ioas, buf, SRC, 0x1000, Access::Read, None)
        .map_err(refused!(
            out,
            client,
            read,
            "MAP of the source page",
            region
        ))?;
    let dst = iommu
        .map(&ioas, buf, DST, 0x1000, Access::Write, None)
        .map_err(refused!(
            out,
            client,
            write,
            "MAP of the destination page",
            region
        ))?;
    let _ = writeln!(
        out,
        "device {} attached through HWPT {hwpt}; buffer mapped: source at IOVA {:#x} (device reads), destination at IOVA {:#x} (device writes)",
        device.id(),
        src.iova(),
        dst.iova()
    );
    Ok(Session {
        device,
        ioas,
        src,
        dst,
    })
}

/// Device reads the source page into its buffer and writes it back to the
/// destination page; the destination must then hold the pattern.
pub fn round_trip<M: Memory, R: RegisterBlock>(
    s: &Session<'_>,
    edu: &Edu<R>,
    buf: &DmaBuffer<M>,
    seed: u8,
    out: &mut impl Write,
) -> Step {
    fill(buf, SRC as usize, STORY_BYTES, seed)?;
    fill(buf, DST as usize, STORY_BYTES, !seed)?;
    edu.read_from(s.src.iova(), 0, STORY_BYTES as u64)
        .map_err(|_| "DMA read timed out")?;
    edu.write_to(0, s.dst.iova(), STORY_BYTES as u64)
        .map_err(|_| "DMA write timed out")?;
    if !holds(buf, DST as usize, STORY_BYTES, seed) {
        return Err("the data did not arrive");
    }
    let _ = writeln!(
        out,
        "DMA verified: {STORY_BYTES} bytes through the IOMMU and back"
    );
    Ok(())
}

/// The device writes to an IOVA nothing is mapped at: the data must not
/// land, and `wait_fault` (which the caller runs after letting the server
/// see the SMMU's event) must deliver F_TRANSLATION at that IOVA.
pub fn stray_dma<T: Transport, M: Memory, R: RegisterBlock>(
    iommu: &mut Iommu<T>,
    s: &Session<'_>,
    edu: &Edu<R>,
    buf: &DmaBuffer<M>,
    out: &mut impl Write,
    mut wait_fault: impl FnMut(&mut Iommu<T>) -> Option<Fault>,
) -> Step {
    // Right after the destination mapping, where nothing is mapped.
    let stray = s.dst.iova() + 0x10_0000;
    fill(buf, UNMAPPED as usize, STORY_BYTES, 0x5a)?;
    edu.write_to(0, stray, 64)
        .map_err(|_| "stray DMA timed out")?;
    if !holds(buf, UNMAPPED as usize, STORY_BYTES, 0x5a) {
        return Err("a stray DMA reached memory");
    }
    let fault = wait_fault(iommu).ok_or("no fault was reported")?;
    if fault.kind != IOMMU_FAULT_KIND_F_TRANSLATION || fault.iova.map(|a| a & !0xfff) != Some(stray)
    {
        return Err("the fault reported is not the stray DMA's");
    }
    let _ = writeln!(
        out,
        "stray DMA to IOVA {stray:#x} stopped by the SMMU and reported: F_TRANSLATION, device {}",
        fault.device
    );
    // One event per beat of the transfer: drain the rest.
    iommu.drain_faults();
    Ok(())
}

/// After a reset: the device's old IOVAs must reach nothing, and the
/// client's old IDs must be dead. The DMA is shown attempted (the device
/// ran the transfer to completion) and stopped (the SMMU reported a fault
/// on the device, which `wait_fault` waits for, and the memory is as it
/// was).
pub fn after_reset<T: Transport, M: Memory, R: RegisterBlock>(
    iommu: &mut Iommu<T>,
    s: &Session<'_>,
    edu: &Edu<R>,
    buf: &DmaBuffer<M>,
    out: &mut impl Write,
    mut wait_fault: impl FnMut(&mut Iommu<T>) -> Option<Fault>,
) -> Step {
    fill(buf, SRC as usize, STORY_BYTES, 0x11)?;
    fill(buf, DST as usize, STORY_BYTES, 0x22)?;
    // Whatever the device holds, it must not reach the destination now.
    edu.write_to(0, s.dst.iova(), STORY_BYTES as u64)
        .map_err(|_| "the DMA after the reset never ran")?;
    if !holds(buf, DST as usize, STORY_BYTES, 0x22) {
        return Err("the device reached memory after its client was reset");
    }
    let fault = wait_fault(iommu).ok_or("the stopped DMA was not reported")?;
    // One event per beat of the transfer: drain the rest.
    iommu.drain_faults();
    if iommu.detach(&s.device).map_err(|e| e.errno) != Err(Errno::ENOENT) {
        return Err("an ID survived the reset");
    }
    let _ = writeln!(
        out,
        "after reset: DMA to the old IOVA {:#x} ran, reached nothing and faulted ({}), old device ID {} is ENOENT",
        s.dst.iova(),
        iommu_proto::fault::kind_name(fault.kind),
        s.device.id()
    );
    Ok(())
}

/// Who does what in the example's story, by position among the clients
/// that drive a device (configuration order): the first crashes in the
/// middle of a DMA and is restarted by its supervisor, the last is reset
/// by the manager. The PDs and the demo follow the same rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub crashes: usize,
    pub reset: usize,
}

impl Roles {
    /// `None` with fewer than two drivers.
    pub fn of(mut drivers: impl Iterator<Item = usize>) -> Option<Roles> {
        let crashes = drivers.next()?;
        let reset = drivers.last()?;
        Some(Roles { crashes, reset })
    }
}

/// What a driver writes before it crashes: the pattern the destination
/// page holds while the crashed transfer is in flight.
const BEFORE_CRASH: u8 = 0x33;

/// The first half of a crash in the middle of DMA: the device is told to
/// write to the destination page and the driver stops before the
/// transfer ends (the caller then faults, or simulates it).
pub fn start_dma_and_crash<M: Memory, R: RegisterBlock>(
    s: &Session<'_>,
    edu: &Edu<R>,
    buf: &DmaBuffer<M>,
    out: &mut impl Write,
) -> Step {
    fill(buf, DST as usize, STORY_BYTES, BEFORE_CRASH)?;
    // Short: one event per beat, and the story's queue need not overflow.
    edu.start_write_to(0, s.dst.iova(), 64);
    let _ = writeln!(
        out,
        "DMA to IOVA {:#x} in flight: crashing on purpose",
        s.dst.iova()
    );
    Ok(())
}

/// A restarted driver's first step, before it binds again: it lets its
/// device's last transfer end and checks that the transfer its previous
/// life left in flight was stopped (the memory as it was, a fault on
/// record, which `wait_fault` waits for).
pub fn after_restart<T: Transport, M: Memory, R: RegisterBlock>(
    iommu: &mut Iommu<T>,
    edu: &Edu<R>,
    buf: &DmaBuffer<M>,
    out: &mut impl Write,
    mut wait_fault: impl FnMut(&mut Iommu<T>) -> Option<Fault>,
) -> Step {
    edu.wait().map_err(|_| "the device is still busy")?;
    if !holds(buf, DST as usize, STORY_BYTES, BEFORE_CRASH) {
        return Err("the crashed driver's DMA reached memory after its revocation");
    }
    let fault = wait_fault(iommu).ok_or("the stopped DMA was not reported")?;
    iommu.drain_faults();
    let _ = writeln!(
        out,
        "restarted: my previous life's DMA was stopped ({}) and reached nothing",
        iommu_proto::fault::kind_name(fault.kind)
    );
    Ok(())
}
