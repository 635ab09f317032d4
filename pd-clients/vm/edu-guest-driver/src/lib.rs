//! The edu driver of a guest VM whose VMM passed the device through. The
//! guest knows nothing of an IOMMU: it gives its device guest-physical
//! addresses of its own RAM, which its VMM mapped as the device's IOVAs
//! (IOVA = GPA), and the device reaches that RAM and nothing else.
//!
//! Guest RAM is any [`mmio::Memory`] holding the bytes from a
//! guest-physical address on ([`GuestRam`]): the guest's own RAM with its
//! MMU off, or, where no VM runs, the same RAM as a plain driver sees it.
//! The guest sees its device's BAR0 and never its configuration space,
//! which the VMM programmed before the guest ran.

#![no_std]
#![forbid(unsafe_code)]

use core::fmt::Write;

use edu_device::{pattern, Edu, ID};
use mmio::{Memory, RegisterBlock};

/// What went wrong, for the guest's console.
pub type Step = Result<(), &'static str>;

/// Bytes each transfer moves.
pub const BYTES: usize = 1024;
/// Where in its RAM the guest keeps the transfer's source and
/// destination: past its image and stack, below its console page.
pub const SRC_OFFSET: u64 = 0x10_0000;
pub const DST_OFFSET: u64 = 0x10_1000;

/// Guest RAM: `mem` holds the bytes from guest-physical `gpa` on.
#[derive(Debug)]
pub struct GuestRam<M> {
    pub gpa: u64,
    pub mem: M,
}

impl<M: Memory> GuestRam<M> {
    /// Bytes of RAM.
    pub fn size(&self) -> u64 {
        self.mem.len() as u64
    }

    /// The guest-physical address just past the RAM: the first a stray
    /// DMA may aim at.
    pub fn end(&self) -> u64 {
        self.gpa.saturating_add(self.size())
    }

    fn offset(&self, gpa: u64, len: usize) -> Option<usize> {
        let offset = gpa.checked_sub(self.gpa)?;
        let end = offset.checked_add(len as u64)?;
        (end <= self.size()).then_some(offset as usize)
    }

    /// Reads `out.len()` bytes at `gpa`; false outside the RAM.
    pub fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        self.offset(gpa, out.len())
            .is_some_and(|o| self.mem.read(o, out))
    }

    /// Writes `bytes` at `gpa`; false outside the RAM.
    pub fn write(&self, gpa: u64, bytes: &[u8]) -> bool {
        self.offset(gpa, bytes.len())
            .is_some_and(|o| self.mem.write(o, bytes))
    }

    /// The transfer's source and destination, guest-physical.
    pub fn src(&self) -> u64 {
        self.gpa + SRC_OFFSET
    }

    pub fn dst(&self) -> u64 {
        self.gpa + DST_OFFSET
    }
}

fn fill<M: Memory>(ram: &GuestRam<M>, gpa: u64, seed: u8) -> Step {
    let mut chunk = [0u8; 64];
    for start in (0..BYTES).step_by(chunk.len()) {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = pattern(seed, start + i);
        }
        if !ram.write(gpa + start as u64, &chunk) {
            return Err("the transfer's buffers are not in my RAM");
        }
    }
    Ok(())
}

/// Whether `[gpa, gpa + BYTES)` holds pattern `seed`.
pub fn holds<M: Memory>(ram: &GuestRam<M>, gpa: u64, seed: u8) -> bool {
    let mut chunk = [0u8; 64];
    (0..BYTES).step_by(chunk.len()).all(|start| {
        ram.read(gpa + start as u64, &mut chunk)
            && chunk
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(seed, start + i))
    })
}

/// The device reads the source into its buffer and writes it back to the
/// destination, both guest-physical addresses of this RAM; the
/// destination must then hold the pattern.
pub fn round_trip<M: Memory, R: RegisterBlock>(
    edu: &Edu<R>,
    ram: &GuestRam<M>,
    seed: u8,
    out: &mut impl Write,
) -> Step {
    trip(edu, ram, seed, |dma| dma())?;
    let _ = writeln!(
        out,
        "DMA at GPA {:#x} -> {:#x}: {BYTES} bytes out of my RAM and back, verified",
        ram.src(),
        ram.dst()
    );
    Ok(())
}

/// The round trip's steps, each of the device's two transfers (started,
/// then waited for) run by `transfer`, which may time it.
fn trip<M: Memory, R: RegisterBlock>(
    edu: &Edu<R>,
    ram: &GuestRam<M>,
    seed: u8,
    mut transfer: impl FnMut(&mut dyn FnMut() -> Step) -> Step,
) -> Step {
    if edu.id() != ID {
        return Err("the device does not identify as edu");
    }
    fill(ram, ram.src(), seed)?;
    fill(ram, ram.dst(), !seed)?;
    transfer(&mut || {
        edu.read_from(ram.src(), 0, BYTES as u64)
            .map_err(|_| "DMA read timed out")
    })?;
    transfer(&mut || {
        edu.write_to(0, ram.dst(), BYTES as u64)
            .map_err(|_| "DMA write timed out")
    })?;
    if !holds(ram, ram.dst(), seed) {
        return Err("the data did not arrive");
    }
    Ok(())
}

/// Counter ticks over timed round trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// In all.
    pub total: u64,
    /// In the device's transfers: starting each and waiting for it. The
    /// rest is the driver's own work: writing the patterns, checking the
    /// destination.
    pub transfers: u64,
}

/// Runs one round trip untimed, then `rounds` more timed with `counter`.
/// The same code times the round trip in a guest and in a plain driver,
/// so the two figures differ only by where the code runs (and by how each
/// copies bytes into its RAM). Each trip is checked; the first that fails
/// ends the timing with its cause.
pub fn timed_round_trips<M: Memory, R: RegisterBlock>(
    edu: &Edu<R>,
    ram: &GuestRam<M>,
    rounds: u32,
    mut counter: impl FnMut() -> u64,
) -> Result<Timing, &'static str> {
    trip(edu, ram, 0x11, |dma| dma())?;
    let mut transfers = 0u64;
    let start = counter();
    for round in 0..rounds {
        trip(edu, ram, round as u8, |dma| {
            let before = counter();
            let done = dma();
            transfers = transfers.wrapping_add(counter().wrapping_sub(before));
            done
        })?;
    }
    Ok(Timing {
        total: counter().wrapping_sub(start),
        transfers,
    })
}

/// The device writes to `stray`, a guest-physical address outside this
/// RAM; the destination, filled with pattern `seed`, must stay as it was
/// (what the DMA did elsewhere only the VMM and the IOMMU can tell).
pub fn stray<M: Memory, R: RegisterBlock>(
    edu: &Edu<R>,
    ram: &GuestRam<M>,
    stray: u64,
    seed: u8,
    out: &mut impl Write,
) -> Step {
    if ram.offset(stray, 1).is_some() {
        return Err("the stray address is in my RAM");
    }
    fill(ram, ram.dst(), seed)?;
    edu.write_to(0, stray, 64)
        .map_err(|_| "stray DMA timed out")?;
    if !holds(ram, ram.dst(), seed) {
        return Err("the stray DMA landed in my RAM");
    }
    let _ = writeln!(
        out,
        "DMA aimed at GPA {stray:#x}, outside my RAM: done, my RAM untouched"
    );
    Ok(())
}

/// Starts the device writing to the destination and returns while the
/// transfer is in flight (the guest is then stopped under it).
pub fn start_dma<M: Memory, R: RegisterBlock>(edu: &Edu<R>, ram: &GuestRam<M>, seed: u8) -> Step {
    fill(ram, ram.dst(), seed)?;
    edu.start_write_to(0, ram.dst(), 64);
    Ok(())
}

/// After its in-flight transfer ran: the destination must still hold
/// pattern `seed` (the transfer reached nothing).
pub fn untouched<M: Memory>(ram: &GuestRam<M>, seed: u8) -> Step {
    if holds(ram, ram.dst(), seed) {
        Ok(())
    } else {
        Err("the DMA landed in guest RAM")
    }
}
