//! An edu driver written the way sDDF writes its drivers: it links no
//! IOMMU client and never calls the server. It gives its device the
//! address of its DMA region its configuration names (the physical
//! address, learnt through `<setvar region_paddr>`, unless a static IO
//! address space puts the region elsewhere) and moves data. Whether that
//! DMA reaches memory is the system description's business alone: with
//! an `<io_address_space>` iomapping the region it does, without one the
//! SMMU's default deny stops it.

use core::fmt::Write;

use mmio::RegisterBlock;

use edu_device::Edu;

use crate::{pattern, Step};

/// The driver's DMA region as its CPU sees it.
pub trait Buffer {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// False when `[offset, offset + out.len())` is not in the region.
    fn read(&self, offset: usize, out: &mut [u8]) -> bool;
    fn write(&self, offset: usize, bytes: &[u8]) -> bool;
}

/// Bytes each transfer moves.
pub const BYTES: usize = 1024;
/// Offsets in the region: where the device reads, where it writes.
pub const SRC: usize = 0;
pub const DST: usize = 0x1000;

fn fill(buf: &impl Buffer, offset: usize, seed: u8) -> Step {
    let mut chunk = [0u8; 64];
    for start in (0..BYTES).step_by(chunk.len()) {
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = pattern(seed, start + i);
        }
        if !buf.write(offset + start, &chunk) {
            return Err("the region is smaller than the story");
        }
    }
    Ok(())
}

/// Whether `[offset, offset + BYTES)` holds pattern `seed`.
pub fn holds(buf: &impl Buffer, offset: usize, seed: u8) -> bool {
    let mut chunk = [0u8; 64];
    (0..BYTES).step_by(chunk.len()).all(|start| {
        buf.read(offset + start, &mut chunk)
            && chunk
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(seed, start + i))
    })
}

/// The device reads the source into its buffer and writes it back to the
/// destination, both at `device_address` (where the device sees the
/// region); the destination must then hold the pattern.
pub fn round_trip<R: RegisterBlock>(
    edu: &Edu<R>,
    buf: &impl Buffer,
    device_address: u64,
    seed: u8,
    out: &mut impl Write,
) -> Step {
    if edu.id() != edu_device::ID {
        return Err("the device does not identify as edu");
    }
    fill(buf, SRC, seed)?;
    fill(buf, DST, !seed)?;
    edu.read_from(device_address + SRC as u64, 0, BYTES as u64)
        .map_err(|_| "DMA read timed out")?;
    edu.write_to(0, device_address + DST as u64, BYTES as u64)
        .map_err(|_| "DMA write timed out")?;
    if !holds(buf, DST, seed) {
        return Err("the data did not arrive");
    }
    let _ = writeln!(
        out,
        "DMA verified at device address {device_address:#x}: {BYTES} bytes out and back, no call to the IOMMU server"
    );
    Ok(())
}

/// The device writes to `stray`, an address its iomaps do not cover; the
/// destination, which the pattern `seed` fills, must stay as it was (the
/// caller then waits for the server's fault notification).
pub fn stray<R: RegisterBlock>(
    edu: &Edu<R>,
    buf: &impl Buffer,
    stray: u64,
    seed: u8,
    out: &mut impl Write,
) -> Step {
    fill(buf, DST, seed)?;
    edu.write_to(0, stray, 64)
        .map_err(|_| "stray DMA timed out")?;
    if !holds(buf, DST, seed) {
        return Err("the stray DMA reached the region");
    }
    let _ = writeln!(out, "DMA to {stray:#x}, outside my iomaps, reached nothing");
    Ok(())
}

/// While the device's stream aborts (held in quarantine, or no IO
/// address space yet): its DMA to the region must not land.
pub fn stopped<R: RegisterBlock>(
    edu: &Edu<R>,
    buf: &impl Buffer,
    device_address: u64,
    out: &mut impl Write,
) -> Step {
    fill(buf, DST, 0x44)?;
    edu.write_to(0, device_address + DST as u64, 64)
        .map_err(|_| "DMA timed out")?;
    if !holds(buf, DST, 0x44) {
        return Err("the device reached memory");
    }
    let _ = writeln!(
        out,
        "DMA to {:#x} reached nothing",
        device_address + DST as u64
    );
    Ok(())
}
