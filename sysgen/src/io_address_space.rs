//! `<io_address_space name peripheral_id domain_id>` with `<iomap mr
//! iovaddr perms>` children, at the top level of system.xml, as Microkit
//! 2.3.0 defines it (its manual, `tool/microkit/src/sdf.rs`), and checked
//! by the tool's own rules as it applies them on x86: known attributes
//! only, unique names, unique device identifiers, unique domain ids, an
//! iomap's region exists, its perms are `r` and `w` only, its iovaddr is
//! page-aligned, its range neither wraps nor leaves the IO address range,
//! and no two iomaps of one space overlap.
//!
//! On this platform the SMMU is the IOMMU, so the differences are:
//! `peripheral_id` is a PCI function `bus:dev.fn` (its requester ID is
//! its stream ID, as on QEMU virt) or a raw stream ID (`0x18`); the IO
//! address range is the SMMU's 48-bit stage-1 input range; `domain_id`
//! (Microkit: an ASID) is a unique 16-bit number the dump shows, while
//! the server picks the context's ASID itself; and a write-only iomap is
//! refused, because a stage-1 page the device may write it may also read.

use crate::error::{Error, Source};
use crate::units::PAGE;
use crate::xml::Element;

/// The SMMU's stage-1 input range with 4 KiB granules: what an iovaddr
/// may reach (the hardware's IAS).
pub const IO_ADDRESS_BITS: u32 = 48;
/// Highest `domain_id` (a 16-bit ASID).
pub const MAX_DOMAIN_ID: u64 = 0xffff;

/// How `peripheral_id` named the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peripheral {
    Pci { bus: u8, device: u8, function: u8 },
    Stream(u32),
}

impl Peripheral {
    /// Its SMMU stream ID: a PCI function's requester ID.
    pub fn stream_id(&self) -> u32 {
        match *self {
            Peripheral::Pci {
                bus,
                device,
                function,
            } => u32::from(bus) << 8 | u32::from(device) << 3 | u32::from(function),
            Peripheral::Stream(s) => s,
        }
    }
}

impl Peripheral {
    /// How messages name it: its stream ID, and the PCI function it is.
    pub fn describe(&self) -> String {
        match self {
            Peripheral::Pci { .. } => format!("{self} (stream {:#x})", self.stream_id()),
            Peripheral::Stream(s) => format!("stream {s:#x}"),
        }
    }
}

impl std::fmt::Display for Peripheral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Peripheral::Pci {
                bus,
                device,
                function,
            } => write!(f, "PCI device {bus:02x}:{device:02x}.{function:x}"),
            Peripheral::Stream(s) => write!(f, "stream {s:#x}"),
        }
    }
}

/// Reads `bus:dev.fn` (hexadecimal fields, as the Microkit tool reads
/// them), with the tool's messages.
fn pci(s: &str) -> Result<Peripheral, String> {
    let malformed = || "expected PCI address in bus:device.function form".to_string();
    let (bus, rest) = s.split_once(':').ok_or_else(malformed)?;
    let (device, function) = rest.split_once('.').ok_or_else(malformed)?;
    let field = |text: &str, what: &str, max: u8| -> Result<u8, String> {
        let v = i64::from_str_radix(text.trim(), 16)
            .map_err(|_| format!("failed to parse PCI {what}"))?;
        u8::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| format!("PCI {what} must be within [0..{max}]"))
    };
    Ok(Peripheral::Pci {
        bus: field(bus, "bus", 255)?,
        device: field(device, "device", 31)?,
        function: field(function, "function", 7)?,
    })
}

/// A PCI function or a stream ID.
pub fn parse_peripheral(s: &str) -> Result<Peripheral, String> {
    if s.contains(':') {
        return pci(s);
    }
    let n = crate::error::parse_number(s)
        .ok_or_else(|| "neither a PCI function bus:device.function nor a stream ID".to_string())?;
    u32::try_from(n)
        .map(Peripheral::Stream)
        .map_err(|_| "stream IDs are 32 bits".to_string())
}

#[derive(Clone, Debug)]
pub struct IoMap {
    pub mr: String,
    pub iovaddr: u64,
    pub read: bool,
    pub write: bool,
    pub element: Element,
}

#[derive(Clone, Debug)]
pub struct IoAddressSpace {
    pub name: String,
    pub peripheral: Peripheral,
    pub domain_id: u16,
    pub iomaps: Vec<IoMap>,
    pub element: Element,
}

impl IoAddressSpace {
    pub fn stream_id(&self) -> u32 {
        self.peripheral.stream_id()
    }
}

/// Reads one `<io_address_space>`; `earlier` are the ones before it.
/// Attributes were checked against the tool's list already.
pub fn parse(
    src: Source<'_>,
    e: &Element,
    earlier: &[IoAddressSpace],
) -> Result<IoAddressSpace, Error> {
    let name = src.required(e, "name")?.to_string();
    if earlier.iter().any(|s| s.name == name) {
        return Err(src.attr(e, "name", "an io address space of this name exists"));
    }
    let id = src.required(e, "peripheral_id")?;
    let peripheral = parse_peripheral(id)
        .map_err(|m| src.attr(e, "peripheral_id", format!("failed to parse `{id}`: {m}")))?;
    if let Some(other) = earlier
        .iter()
        .find(|s| s.stream_id() == peripheral.stream_id())
    {
        return Err(src.attr(
            e,
            "peripheral_id",
            format!(
                "duplicate device: {} is already `{}`'s ({})",
                peripheral.describe(),
                other.name,
                src.line(&other.element)
            ),
        ));
    }
    let domain_id = src.required_number(e, "domain_id")?;
    if domain_id > MAX_DOMAIN_ID {
        return Err(src.attr(
            e,
            "domain_id",
            format!("must be 0..={MAX_DOMAIN_ID:#x} (an ASID)"),
        ));
    }
    if let Some(other) = earlier.iter().find(|s| u64::from(s.domain_id) == domain_id) {
        return Err(src.attr(
            e,
            "domain_id",
            format!(
                "reusing a domain id is forbidden: `{}` has domain_id {domain_id} ({})",
                other.name,
                src.line(&other.element)
            ),
        ));
    }
    let mut iomaps = Vec::new();
    for c in &e.children {
        if c.name != "iomap" {
            return Err(src.element(
                c,
                "not an element an <io_address_space> has (expected iomap)",
            ));
        }
        let perms = c.attr("perms").map_or("rw", |a| a.value.as_str());
        if perms.is_empty() || perms.chars().any(|p| !"rw".contains(p)) {
            return Err(src.attr(
                c,
                "perms",
                "perms for io mapped memory must only be a combination of 'r' and 'w'",
            ));
        }
        if !perms.contains('r') {
            return Err(src.attr(
                c,
                "perms",
                "a write-only iomap cannot be enforced: an SMMU stage-1 page the device may write it may also read (give rw)",
            ));
        }
        iomaps.push(IoMap {
            mr: src.required(c, "mr")?.to_string(),
            iovaddr: src.required_number(c, "iovaddr")?,
            read: true,
            write: perms.contains('w'),
            element: c.clone(),
        });
    }
    Ok(IoAddressSpace {
        name,
        peripheral,
        domain_id: domain_id as u16,
        iomaps,
        element: e.clone(),
    })
}

/// The rules that need the memory regions: each iomap's region exists,
/// its iovaddr is page-aligned, its range neither wraps nor leaves the
/// SMMU's input range, and no two iomaps of one space overlap.
pub fn check(
    src: Source<'_>,
    spaces: &[IoAddressSpace],
    size_of: impl Fn(&str) -> Option<u64>,
    hint: impl Fn(&str) -> String,
) -> Result<(), Error> {
    let limit = 1u64 << IO_ADDRESS_BITS;
    for space in spaces {
        let mut checked: Vec<(&str, u64, u64)> = Vec::new();
        for m in &space.iomaps {
            let e = &m.element;
            let size = size_of(&m.mr).ok_or_else(|| {
                src.attr(
                    e,
                    "mr",
                    format!("no <memory_region name=\"{}\">{}", m.mr, hint(&m.mr)),
                )
            })?;
            if m.iovaddr % PAGE != 0 {
                return Err(src.attr(
                    e,
                    "iovaddr",
                    format!(
                        "invalid iovaddr alignment: {:#x} is not a multiple of {PAGE:#x}",
                        m.iovaddr
                    ),
                ));
            }
            let Some(end) = m.iovaddr.checked_add(size) else {
                return Err(src.attr(
                    e,
                    "iovaddr",
                    format!("iomap for `{}` has an address range that overflows", m.mr),
                ));
            };
            if end > limit {
                return Err(src.attr(
                    e,
                    "iovaddr",
                    format!(
                        "iomap for `{}` has io address range [{:#x}..{end:#x}) which exceeds the SMMU's input range [0x0..{limit:#x})",
                        m.mr, m.iovaddr
                    ),
                ));
            }
            if let Some((other, start, stop)) = checked
                .iter()
                .find(|(_, start, stop)| m.iovaddr < *stop && *start < end)
            {
                return Err(src.attr(
                    e,
                    "iovaddr",
                    format!(
                        "iomap for `{}` has io address range [{:#x}..{end:#x}) which overlaps with iomap for `{other}` [{start:#x}..{stop:#x}) in `{}`",
                        m.mr, m.iovaddr, space.name
                    ),
                ));
            }
            checked.push((&m.mr, m.iovaddr, end));
        }
    }
    Ok(())
}

/// Page-table pages a space's iomaps need at most: the root, and one
/// table per 512 GiB, 1 GiB and 2 MiB span an iomap touches (4 KiB pages
/// throughout, which needs every table a block would and more), over the
/// 48-bit four-level walk.
pub fn table_pages(iomaps: impl IntoIterator<Item = (u64, u64)>) -> usize {
    let mut spans: [Vec<u64>; 3] = Default::default();
    for (iova, size) in iomaps {
        if size == 0 {
            continue;
        }
        let last = iova + (size - 1);
        for (level, shift) in [39u32, 30, 21].into_iter().enumerate() {
            for span in (iova >> shift)..=(last >> shift) {
                spans[level].push(span);
            }
        }
    }
    1 + spans
        .iter_mut()
        .map(|s| {
            s.sort_unstable();
            s.dedup();
            s.len()
        })
        .sum::<usize>()
}
