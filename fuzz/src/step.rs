//! The `steps` target's input: a hardware choice, then a sequence of typed
//! steps (requests of every operation, manager operations, device faults
//! and device DMA), decoded from bytes so that libFuzzer's mutations stay
//! meaningful, and encoded back by the seed writer. Shared by the target
//! and `fuzz/seeds` (which includes this file), so it uses std alone.
//!
//! Each value a request carries is one tag byte and what it selects:
//! - a number ([`Input::num`]): a tag below [`RAW_HALF_PAGES`] (most of
//!   them) picks from the field's palette of values that matter (region edges, half and
//!   whole pages, values near `u64::MAX`); up to [`RAW_U64`] it is a u16
//!   count of half pages; above, a raw u64 follows.
//! - an IOVA ([`Iova`]): a number, or where a mapping the server made for
//!   the client starts or ends.
//! - an object ([`Obj`]): an ID the server handed out earlier in the run,
//!   mostly of the kind the field expects, by index; or a raw u32.
//!
//! A step's first byte picks its kind, the second its client; a decoded
//! input always makes sense, and running out of bytes ends it.

use std::fmt;

/// Tags at and above this select a count of half pages (a u16 follows).
pub const RAW_HALF_PAGES: u8 = 0xc0;
/// Tags at and above this select a raw little-endian u64.
pub const RAW_U64: u8 = 0xe0;
/// IOVA tags from here name the start of a mapping the server made for
/// the client (low four bits: which), from [`MAPPED_END`] its end, up to
/// [`RAW_HALF_PAGES`]; below, an IOVA is a number.
pub const MAPPED_IOVA: u8 = 0xa0;
pub const MAPPED_END: u8 = 0xb0;
/// Object tags below this index the IDs of the kind the field expects.
pub const FOREIGN_OBJECT: u8 = 0xb0;
/// Object tags from here index another client's IOASes (low four bits).
pub const OTHER_OBJECT: u8 = 0xc0;
/// Object tags from here to [`RAW_OBJECT`] index the caller's IOASes,
/// HWPTs and devices, 16 tags each: a field naming the wrong kind.
pub const RAW_OBJECT: u8 = 0xf0;
const HALF_PAGE: u64 = 0x800;

/// Virtual addresses: the clients' regions, their edges and halves, the
/// command page (which no region holds), and the top of the address space.
pub const VAS: &[u64] = &[
    0x10_0000,
    0x10_0800,
    0x10_1000,
    0x10_2000,
    0x1f_f000,
    0x20_0000,
    0x40_0000,
    0x40_0800,
    0x40_3000,
    0x7000_0000,
    0,
    u64::MAX - 0xfff,
];
/// Lengths: half pages and small runs of pages, whole regions, a 2 MiB
/// block, and lengths whose end overflows.
pub const LENGTHS: &[u64] = &[
    0x800,
    0x1000,
    0x1800,
    0x2000,
    0x3000,
    0x4000,
    0x8000,
    0x10_0000,
    0x20_0000,
    1,
    0,
    u64::MAX,
    u64::MAX - 0xfff,
];
/// IOVAs: the bottom, half and whole pages, block boundaries, the MSI
/// window of iommu-server/tests/fuzz.rs, the edges of a 40- and a 48-bit space, and the
/// top.
pub const IOVAS: &[u64] = &[
    0,
    0x800,
    0x1000,
    0x1800,
    0x2000,
    0x10_0000,
    0x20_0000,
    0x800_0000,
    1 << 40,
    (1 << 48) - 0x1000,
    u64::MAX - 0xfff,
    u64::MAX,
];
/// Offsets into a report: the start, small, one page, and near the top.
pub const OFFSETS: &[u64] = &[
    0,
    1,
    100,
    0x1000,
    1 << 63,
    u64::MAX - 0x100,
    u64::MAX - 1,
    u64::MAX,
];
/// Option values and other plain numbers.
pub const VALUES: &[u64] = &[0, 1, 2, u64::MAX];

/// The streams a fault or a DMA can come from: each client device's, and
/// one no client owns.
pub const STREAMS: [u32; 4] = [0x8, 0x10, 0x18, 0x20];

/// A flags field from its byte: mostly the three low bits alone (every
/// known flag of map, copy and VFIO's map lies there), sometimes the
/// fourth (HWPT_ALLOC's last) and sometimes an unknown flag above, so that
/// most bytes make requests that pass the flag check and the rest test it.
pub fn flags(byte: u8) -> u32 {
    let low = u32::from(byte & 0xf);
    match byte {
        0..0x80 => low & 0x7,
        0x80..0xc0 => low,
        _ => low | 1 << (4 + (byte >> 4 & 3)),
    }
}

/// What kind of object an [`Obj::Known`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ioas,
    Hwpt,
    Device,
    /// An IOAS of the next client (by index): someone else's ID.
    Foreign,
}

const KINDS: [Kind; 3] = [Kind::Ioas, Kind::Hwpt, Kind::Device];

/// An IOVA a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Iova {
    At(u64),
    /// Where the `index`-th mapping the server made for the client
    /// (modulo how many; 0 when none) starts, or just past its end: where
    /// a copy or unmap of it, or a mapping right after it, goes.
    Mapped(u8),
    MappedEnd(u8),
}

/// An object ID a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Obj {
    /// The `index`-th ID of this kind the server handed the client
    /// (modulo how many it has; 0 when none), live or destroyed since.
    Known(Kind, u8),
    Raw(u32),
}

impl Obj {
    /// The client's first IOAS, HWPT, device.
    pub const IOAS0: Obj = Obj::Known(Kind::Ioas, 0);
    pub const IOAS1: Obj = Obj::Known(Kind::Ioas, 1);
    pub const HWPT0: Obj = Obj::Known(Kind::Hwpt, 0);
    pub const DEV0: Obj = Obj::Known(Kind::Device, 0);
}

/// One thing that happens to the server. `client` is an index into the
/// target's clients (modulo their number); `flags` go through [`flags`];
/// `op` and the like are passed as they are, so unknown values get their
/// errno.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Alloc {
        client: u8,
    },
    Map {
        client: u8,
        ioas: Obj,
        flags: u8,
        va: u64,
        length: u64,
        iova: Iova,
    },
    Copy {
        client: u8,
        dst: Obj,
        src: Obj,
        flags: u8,
        src_iova: Iova,
        length: u64,
        dst_iova: Iova,
    },
    Unmap {
        client: u8,
        ioas: Obj,
        iova: Iova,
        length: u64,
    },
    IovaRanges {
        client: u8,
        ioas: Obj,
        capacity: u8,
    },
    AllowIovas {
        client: u8,
        ioas: Obj,
        ranges: Vec<(u64, u64)>,
    },
    Option {
        client: u8,
        option_id: u8,
        op: u8,
        object: Obj,
        value: u64,
    },
    VfioIoas {
        client: u8,
        ioas: Obj,
        op: u8,
    },
    HwptAlloc {
        client: u8,
        flags: u8,
        dev: Obj,
        pt: Obj,
    },
    HwInfo {
        client: u8,
        dev: Obj,
        data_len: u8,
    },
    Bind {
        client: u8,
        index: u8,
    },
    Attach {
        client: u8,
        dev: Obj,
        pt: Obj,
    },
    Detach {
        client: u8,
        dev: Obj,
    },
    Destroy {
        client: u8,
        object: Obj,
    },
    FaultRead {
        client: u8,
    },
    /// VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION or VFIO_SET_IOMMU
    /// (`which` modulo 3) with `arg` in MR0.
    VfioScalar {
        client: u8,
        which: u8,
        arg: u8,
    },
    VfioGetInfo {
        client: u8,
        argsz: u8,
    },
    VfioMapDma {
        client: u8,
        flags: u8,
        va: u64,
        iova: u64,
        length: u64,
    },
    VfioUnmapDma {
        client: u8,
        flags: u8,
        iova: u64,
        length: u64,
    },
    Reset {
        client: u8,
        target: u8,
    },
    Quarantine {
        client: u8,
        target: u8,
        hold: u8,
    },
    /// DUMP of client `target` (0xff: the server) from `offset`, `length`
    /// bytes into the command page at `at`.
    Dump {
        client: u8,
        target: u8,
        offset: u64,
        length: u16,
        at: u16,
    },
    /// The SMMU reports a fault on `STREAMS[stream % 4]`.
    Fault {
        stream: u8,
        iova: u64,
    },
    /// A device on `STREAMS[stream % 4]` reaches for `iova`.
    Dma {
        stream: u8,
        iova: Iova,
    },
    /// Any label, registers and page bytes, as the byte-level target sends.
    Raw {
        client: u8,
        label: u16,
        mr0: u16,
        mr1: u16,
        bytes: Vec<u8>,
    },
}

const STEP_KINDS: u8 = 25;

/// The hardware an input runs on: `MockDomain` page sizes and page limit,
/// picked by [`Setup::page_sizes`] and [`Setup::page_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup(pub u8);

impl Setup {
    /// The VMSAv8-64 4 KiB granule (twice as likely), 4 KiB pages alone, or
    /// without 1 GiB blocks. Larger granules than the CPU page are refused
    /// at attach, so they would only hide the domain paths.
    pub fn page_sizes(self) -> u64 {
        [
            0x1000 | 0x20_0000 | 0x4000_0000,
            0x1000,
            0x1000 | 0x20_0000,
            0x1000 | 0x20_0000 | 0x4000_0000,
        ][usize::from(self.0 & 3)]
    }

    /// Pages a domain holds before mapping fails with ENOMEM.
    pub fn page_limit(self) -> usize {
        [usize::MAX, usize::MAX, 64, 3][usize::from(self.0 >> 2 & 3)]
    }
}

/// Reads an input a field at a time; zeros once it runs out.
pub struct Input<'a>(pub &'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }

    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }

    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | u32::from(self.u16()) << 16
    }

    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    fn num(&mut self, palette: &[u64]) -> u64 {
        match self.u8() {
            t if t < RAW_HALF_PAGES => palette[usize::from(t) % palette.len()],
            t if t < RAW_U64 => u64::from(self.u16()) * HALF_PAGE,
            _ => self.u64(),
        }
    }

    fn iova(&mut self) -> Iova {
        let reference = self.0.first().copied().unwrap_or(0);
        if (MAPPED_IOVA..RAW_HALF_PAGES).contains(&reference) {
            self.u8();
            if reference < MAPPED_END {
                Iova::Mapped(reference & 0xf)
            } else {
                Iova::MappedEnd(reference & 0xf)
            }
        } else {
            Iova::At(self.num(IOVAS))
        }
    }

    /// An object for a field that usually names an `expected` kind.
    fn obj(&mut self, expected: Kind) -> Obj {
        match self.u8() {
            t if t < FOREIGN_OBJECT => Obj::Known(expected, t),
            t if t < OTHER_OBJECT => Obj::Known(Kind::Foreign, t & 0xf),
            t if t < RAW_OBJECT => Obj::Known(KINDS[usize::from((t - OTHER_OBJECT) >> 4)], t & 0xf),
            _ => Obj::Raw(self.u32()),
        }
    }

    fn step(&mut self) -> Step {
        let kind = self.u8() % STEP_KINDS;
        let client = self.u8();
        match kind {
            0 => Step::Alloc { client },
            1 => Step::Map {
                client,
                ioas: self.obj(Kind::Ioas),
                flags: self.u8(),
                va: self.num(VAS),
                length: self.num(LENGTHS),
                iova: self.iova(),
            },
            2 => Step::Copy {
                client,
                dst: self.obj(Kind::Ioas),
                src: self.obj(Kind::Ioas),
                flags: self.u8(),
                src_iova: self.iova(),
                length: self.num(LENGTHS),
                dst_iova: self.iova(),
            },
            3 => Step::Unmap {
                client,
                ioas: self.obj(Kind::Ioas),
                iova: self.iova(),
                length: self.num(LENGTHS),
            },
            4 => Step::IovaRanges {
                client,
                ioas: self.obj(Kind::Ioas),
                capacity: self.u8(),
            },
            5 => {
                let ioas = self.obj(Kind::Ioas);
                let count = self.u8() % 5;
                let ranges = (0..count)
                    .map(|_| (self.num(IOVAS), self.num(IOVAS)))
                    .collect();
                Step::AllowIovas {
                    client,
                    ioas,
                    ranges,
                }
            }
            6 => Step::Option {
                client,
                option_id: self.u8(),
                op: self.u8(),
                object: self.obj(Kind::Ioas),
                value: self.num(VALUES),
            },
            7 => Step::VfioIoas {
                client,
                ioas: self.obj(Kind::Ioas),
                op: self.u8(),
            },
            8 => Step::HwptAlloc {
                client,
                flags: self.u8(),
                dev: self.obj(Kind::Device),
                pt: self.obj(Kind::Ioas),
            },
            9 => Step::HwInfo {
                client,
                dev: self.obj(Kind::Device),
                data_len: self.u8(),
            },
            10 => Step::Bind {
                client,
                index: self.u8(),
            },
            11 => Step::Attach {
                client,
                dev: self.obj(Kind::Device),
                pt: self.obj(Kind::Ioas),
            },
            12 => Step::Detach {
                client,
                dev: self.obj(Kind::Device),
            },
            13 => Step::Destroy {
                client,
                object: self.obj(Kind::Ioas),
            },
            14 => Step::FaultRead { client },
            15 => Step::VfioScalar {
                client,
                which: self.u8(),
                arg: self.u8(),
            },
            16 => Step::VfioGetInfo {
                client,
                argsz: self.u8(),
            },
            17 => Step::VfioMapDma {
                client,
                flags: self.u8(),
                va: self.num(VAS),
                iova: self.num(IOVAS),
                length: self.num(LENGTHS),
            },
            18 => Step::VfioUnmapDma {
                client,
                flags: self.u8(),
                iova: self.num(IOVAS),
                length: self.num(LENGTHS),
            },
            19 => Step::Reset {
                client,
                target: self.u8(),
            },
            20 => Step::Quarantine {
                client,
                target: self.u8(),
                hold: self.u8(),
            },
            21 => Step::Dump {
                client,
                target: self.u8(),
                offset: self.num(OFFSETS),
                length: self.u16(),
                at: self.u16(),
            },
            22 => Step::Fault {
                stream: client,
                iova: self.num(IOVAS),
            },
            23 => Step::Dma {
                stream: client,
                iova: self.iova(),
            },
            _ => {
                let (label, mr0, mr1) = (self.u16(), self.u16(), self.u16());
                let len = usize::from(self.u8());
                Step::Raw {
                    client,
                    label,
                    mr0,
                    mr1,
                    bytes: self.bytes(len).to_vec(),
                }
            }
        }
    }
}

/// An input's setup and its steps, decoded.
pub fn decode(data: &[u8]) -> (Setup, Vec<Step>) {
    let mut input = Input(data);
    let setup = Setup(input.u8());
    let mut steps = Vec::new();
    while !input.0.is_empty() {
        steps.push(input.step());
    }
    (setup, steps)
}

/// Builds an input for [`decode`] (the seed writer's side).
pub struct Output(pub Vec<u8>);

impl Output {
    pub fn new(setup: Setup) -> Output {
        Output(vec![setup.0])
    }

    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn num(&mut self, palette: &[u64], v: u64) {
        if let Some(i) = palette.iter().position(|&p| p == v) {
            self.u8(i as u8);
        } else if v.is_multiple_of(HALF_PAGE) && v / HALF_PAGE <= u64::from(u16::MAX) {
            self.u8(RAW_HALF_PAGES);
            self.u16((v / HALF_PAGE) as u16);
        } else {
            self.u8(RAW_U64);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn iova(&mut self, iova: Iova) {
        match iova {
            Iova::At(v) => self.num(IOVAS, v),
            Iova::Mapped(i) if i < 0x10 => self.u8(MAPPED_IOVA | i),
            Iova::MappedEnd(i) if i < 0x10 => self.u8(MAPPED_END | i),
            _ => panic!("{iova:?}: index too large"),
        }
    }

    fn obj(&mut self, expected: Kind, o: Obj) {
        match o {
            Obj::Known(kind, index) if kind == expected && index < FOREIGN_OBJECT => self.u8(index),
            Obj::Known(Kind::Foreign, index) if index < 0x10 => self.u8(FOREIGN_OBJECT | index),
            Obj::Known(kind, index) if index < 0x10 => {
                let k = KINDS.iter().position(|&k| k == kind).unwrap() as u8;
                self.u8(OTHER_OBJECT + (k << 4) + index);
            }
            Obj::Known(..) => panic!("{o:?}: index too large for its field"),
            Obj::Raw(id) => {
                self.u8(RAW_OBJECT);
                self.u32(id);
            }
        }
    }

    /// Appends one step.
    pub fn step(&mut self, step: &Step) -> &mut Self {
        let (kind, client) = step.kind_and_client();
        self.u8(kind);
        self.u8(client);
        match *step {
            Step::Alloc { .. } | Step::FaultRead { .. } => {}
            Step::Map {
                ioas,
                flags,
                va,
                length,
                iova,
                ..
            } => {
                self.obj(Kind::Ioas, ioas);
                self.u8(flags);
                self.num(VAS, va);
                self.num(LENGTHS, length);
                self.iova(iova);
            }
            Step::Copy {
                dst,
                src,
                flags,
                src_iova,
                length,
                dst_iova,
                ..
            } => {
                self.obj(Kind::Ioas, dst);
                self.obj(Kind::Ioas, src);
                self.u8(flags);
                self.iova(src_iova);
                self.num(LENGTHS, length);
                self.iova(dst_iova);
            }
            Step::Unmap {
                ioas, iova, length, ..
            } => {
                self.obj(Kind::Ioas, ioas);
                self.iova(iova);
                self.num(LENGTHS, length);
            }
            Step::IovaRanges { ioas, capacity, .. } => {
                self.obj(Kind::Ioas, ioas);
                self.u8(capacity);
            }
            Step::AllowIovas {
                ioas, ref ranges, ..
            } => {
                self.obj(Kind::Ioas, ioas);
                assert!(ranges.len() < 5, "at most 4 ranges");
                self.u8(ranges.len() as u8);
                for &(start, last) in ranges {
                    self.num(IOVAS, start);
                    self.num(IOVAS, last);
                }
            }
            Step::Option {
                option_id,
                op,
                object,
                value,
                ..
            } => {
                self.u8(option_id);
                self.u8(op);
                self.obj(Kind::Ioas, object);
                self.num(VALUES, value);
            }
            Step::VfioIoas { ioas, op, .. } => {
                self.obj(Kind::Ioas, ioas);
                self.u8(op);
            }
            Step::HwptAlloc { flags, dev, pt, .. } => {
                self.u8(flags);
                self.obj(Kind::Device, dev);
                self.obj(Kind::Ioas, pt);
            }
            Step::HwInfo { dev, data_len, .. } => {
                self.obj(Kind::Device, dev);
                self.u8(data_len);
            }
            Step::Bind { index, .. } => self.u8(index),
            Step::Attach { dev, pt, .. } => {
                self.obj(Kind::Device, dev);
                self.obj(Kind::Ioas, pt);
            }
            Step::Detach { dev, .. } => self.obj(Kind::Device, dev),
            Step::Destroy { object, .. } => self.obj(Kind::Ioas, object),
            Step::VfioScalar { which, arg, .. } => {
                self.u8(which);
                self.u8(arg);
            }
            Step::VfioGetInfo { argsz, .. } => self.u8(argsz),
            Step::VfioMapDma {
                flags,
                va,
                iova,
                length,
                ..
            } => {
                self.u8(flags);
                self.num(VAS, va);
                self.num(IOVAS, iova);
                self.num(LENGTHS, length);
            }
            Step::VfioUnmapDma {
                flags,
                iova,
                length,
                ..
            } => {
                self.u8(flags);
                self.num(IOVAS, iova);
                self.num(LENGTHS, length);
            }
            Step::Reset { target, .. } => self.u8(target),
            Step::Quarantine { target, hold, .. } => {
                self.u8(target);
                self.u8(hold);
            }
            Step::Dump {
                target,
                offset,
                length,
                at,
                ..
            } => {
                self.u8(target);
                self.num(OFFSETS, offset);
                self.u16(length);
                self.u16(at);
            }
            Step::Fault { iova, .. } => self.num(IOVAS, iova),
            Step::Dma { iova, .. } => self.iova(iova),
            Step::Raw {
                label,
                mr0,
                mr1,
                ref bytes,
                ..
            } => {
                self.u16(label);
                self.u16(mr0);
                self.u16(mr1);
                self.u8(bytes.len().try_into().expect("at most 255 page bytes"));
                self.0.extend_from_slice(bytes);
            }
        }
        self
    }
}

impl Step {
    /// The kind byte [`Input::step`] decodes, and the client (or stream)
    /// byte.
    fn kind_and_client(&self) -> (u8, u8) {
        match *self {
            Step::Alloc { client } => (0, client),
            Step::Map { client, .. } => (1, client),
            Step::Copy { client, .. } => (2, client),
            Step::Unmap { client, .. } => (3, client),
            Step::IovaRanges { client, .. } => (4, client),
            Step::AllowIovas { client, .. } => (5, client),
            Step::Option { client, .. } => (6, client),
            Step::VfioIoas { client, .. } => (7, client),
            Step::HwptAlloc { client, .. } => (8, client),
            Step::HwInfo { client, .. } => (9, client),
            Step::Bind { client, .. } => (10, client),
            Step::Attach { client, .. } => (11, client),
            Step::Detach { client, .. } => (12, client),
            Step::Destroy { client, .. } => (13, client),
            Step::FaultRead { client } => (14, client),
            Step::VfioScalar { client, .. } => (15, client),
            Step::VfioGetInfo { client, .. } => (16, client),
            Step::VfioMapDma { client, .. } => (17, client),
            Step::VfioUnmapDma { client, .. } => (18, client),
            Step::Reset { client, .. } => (19, client),
            Step::Quarantine { client, .. } => (20, client),
            Step::Dump { client, .. } => (21, client),
            Step::Fault { stream, .. } => (22, stream),
            Step::Dma { stream, .. } => (23, stream),
            Step::Raw { client, .. } => (24, client),
        }
    }
}

/// A decoded input, one step a line (for reading a crash file).
pub struct Listing<'a>(pub Setup, pub &'a [Step]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "setup: page sizes {:#x}, domain page limit {}",
            self.0.page_sizes(),
            self.0.page_limit()
        )?;
        for step in self.1 {
            writeln!(f, "{step:x?}")?;
        }
        Ok(())
    }
}
