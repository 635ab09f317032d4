//! A simulated NVMe controller for host tests (feature `sim`): QEMU's nvme
//! device as far as the driver uses it. Its registers implement `RegisterBlock` (on `&SimNvme`, state
//! behind a `RefCell`); its DMA goes to `SimMemory` windows, each at an
//! IOVA, and any address outside them fails the way a DMA the IOMMU
//! stops does. A doorbell write runs the queue at once; completions are
//! posted with the phase tag and held back while the CQ is full.
//!
//! Hostile behaviours, each switched on by a flag: a completion with a
//! wrong command id, one posted twice, one with a stale phase tag, a
//! controller that stops completing I/O until it is reset (and then may
//! post the completions it owed, late), and one that does not stop when
//! CC.EN is cleared.

#![allow(dead_code)]
#![allow(missing_docs)]

extern crate std;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use mmio::Memory;
use mmio::RegisterBlock;

pub const PAGE: u64 = 4096;

/// Memory at an IOVA, seen by the driver at offsets from its start.
pub struct SimMemory {
    pub iova: u64,
    bytes: RefCell<Vec<u8>>,
    /// Reads by the driver (through `Memory`): the work its polling costs.
    reads: Cell<u64>,
}

impl SimMemory {
    pub fn new(iova: u64, len: usize) -> SimMemory {
        SimMemory {
            iova,
            bytes: RefCell::new(vec![0; len]),
            reads: Cell::new(0),
        }
    }

    /// How many times the driver has read this memory.
    pub fn reads(&self) -> u64 {
        self.reads.get()
    }

    pub fn len(&self) -> usize {
        self.bytes.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn range(&self, offset: usize, len: usize) -> Option<std::ops::Range<usize>> {
        let end = offset.checked_add(len)?;
        (end <= self.len()).then_some(offset..end)
    }

    /// The offset of `iova..iova + len` in this memory, if it lies inside.
    fn locate(&self, iova: u64, len: usize) -> Option<usize> {
        let offset = usize::try_from(iova.checked_sub(self.iova)?).ok()?;
        self.range(offset, len).map(|r| r.start)
    }

    pub fn fill(&self, offset: usize, bytes: &[u8]) {
        assert!(self.write(offset, bytes));
    }

    pub fn get(&self, offset: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        assert!(self.read(offset, &mut out));
        out
    }
}

impl Memory for SimMemory {
    fn len(&self) -> usize {
        SimMemory::len(self)
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        self.reads.set(self.reads.get() + 1);
        match self.range(offset, out.len()) {
            Some(r) => {
                out.copy_from_slice(&self.bytes.borrow()[r]);
                true
            }
            None => false,
        }
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        match self.range(offset, bytes.len()) {
            Some(r) => {
                self.bytes.borrow_mut()[r].copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// What the controller reports and how it misbehaves.
#[derive(Clone)]
pub struct Config {
    pub cap: u64,
    pub blocks: u64,
    pub block_shift: u8,
    pub metadata: u16,
    pub mdts: u8,
    pub sqes: u8,
    pub cqes: u8,
}

impl Default for Config {
    /// QEMU 7.2's nvme device: MQES 0x7ff, CQR, TO 0xf, DSTRD 0, CSS NVM
    /// (plus I/O command set and admin-only bits), MPSMIN 0, MPSMAX 4;
    /// 512-byte blocks, MDTS 7 (512 KiB).
    fn default() -> Config {
        Config {
            cap: 0x7ff | (1 << 16) | (0xf << 24) | (0xc1 << 37) | (4 << 52),
            blocks: 4096,
            block_shift: 9,
            metadata: 0,
            mdts: 7,
            sqes: 0x66,
            cqes: 0x44,
        }
    }
}

pub const SERIAL: &str = "SIM0001";
pub const MODEL: &str = "QEMU NVMe Ctrl (simulated)";
pub const FIRMWARE: &str = "7.2";

// Status codes (type 0 unless noted).
const SC_SUCCESS: u16 = 0x00;
const SC_INVALID_OPCODE: u16 = 0x01;
const SC_INVALID_FIELD: u16 = 0x02;
const SC_DATA_TRANSFER_ERROR: u16 = 0x04;
const SC_INVALID_NAMESPACE: u16 = 0x0b;
const SC_INVALID_PRP_OFFSET: u16 = 0x13;
const SC_LBA_OUT_OF_RANGE: u16 = 0x80;
/// Type 1 (command specific), code 1: invalid queue identifier.
const SC_INVALID_QID: u16 = 0x101;

#[derive(Clone, Copy, Debug)]
struct Sq {
    base: u64,
    size: u16,
    head: u16,
    cq: u16,
}

#[derive(Clone, Copy, Debug)]
struct Cq {
    base: u64,
    size: u16,
    head: u16,
    tail: u16,
    phase: bool,
}

/// The data pointer of the last I/O command, for the tests to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenIo {
    pub opcode: u8,
    pub prp1: u64,
    pub prp2: u64,
    pub slba: u64,
    pub nlb: u32,
}

/// A completion waiting for room in its CQ.
#[derive(Clone, Copy, Debug)]
struct Posting {
    cq: u16,
    dw0: u32,
    sq: u16,
    cid: u16,
    status: u16,
    /// Posted with the phase tag of the CQ's previous pass.
    stale_phase: bool,
}

struct State {
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    sqs: [Option<Sq>; 2],
    cqs: [Option<Cq>; 2],
    pending: VecDeque<Posting>,
    /// I/O completions owed by an unresponsive controller.
    owed: Vec<Posting>,
    disk: Vec<u8>,
}

pub struct SimNvme<'a> {
    windows: Vec<&'a SimMemory>,
    pub config: Config,
    state: RefCell<State>,
    /// CSTS.RDY never rises.
    pub never_ready: Cell<bool>,
    /// Enabling fails with CSTS.CFS.
    pub fatal_on_enable: Cell<bool>,
    /// The next I/O completion carries this command id instead.
    pub wrong_cid: Cell<Option<u16>>,
    /// I/O commands are taken and never completed.
    pub swallow: Cell<bool>,
    /// The next admin completion carries another command id.
    pub wrong_admin_cid: Cell<bool>,
    /// The next I/O completion is posted twice.
    pub duplicate: Cell<bool>,
    /// The next I/O completion is posted with a stale phase tag.
    pub stale_phase: Cell<bool>,
    /// I/O commands are taken and not completed until the controller is
    /// reset (CC.EN cleared), which clears this.
    pub unresponsive: Cell<bool>,
    /// With `unresponsive`: the completions owed are posted after the
    /// reset, late, before the first new one.
    pub late_completions: Cell<bool>,
    /// Clearing CC.EN does not stop the controller: CSTS.RDY stays set
    /// and the queues run on.
    pub stuck_enabled: Cell<bool>,
    /// Times the controller was reset (CC.EN cleared while it ran, and
    /// not stuck).
    pub resets: Cell<u64>,
    pub last_io: Cell<Option<SeenIo>>,
    pub io_commands: Cell<u64>,
    /// IOVA ranges `[start, end)` the "IOMMU" stops, inside the windows.
    pub blocked: RefCell<Vec<(u64, u64)>>,
}

impl<'a> SimNvme<'a> {
    pub fn new(windows: &[&'a SimMemory], config: Config) -> SimNvme<'a> {
        let disk = vec![0; (config.blocks << config.block_shift) as usize];
        SimNvme {
            windows: windows.to_vec(),
            config,
            state: RefCell::new(State {
                cc: 0,
                csts: 0,
                aqa: 0,
                asq: 0,
                acq: 0,
                sqs: [None; 2],
                cqs: [None; 2],
                pending: VecDeque::new(),
                owed: Vec::new(),
                disk,
            }),
            never_ready: Cell::new(false),
            fatal_on_enable: Cell::new(false),
            wrong_cid: Cell::new(None),
            swallow: Cell::new(false),
            wrong_admin_cid: Cell::new(false),
            duplicate: Cell::new(false),
            stale_phase: Cell::new(false),
            unresponsive: Cell::new(false),
            late_completions: Cell::new(false),
            stuck_enabled: Cell::new(false),
            resets: Cell::new(0),
            last_io: Cell::new(None),
            io_commands: Cell::new(0),
            blocked: RefCell::new(Vec::new()),
        }
    }

    pub fn disk(&self, offset: usize, len: usize) -> Vec<u8> {
        self.state.borrow().disk[offset..offset + len].to_vec()
    }

    pub fn cc(&self) -> u32 {
        self.state.borrow().cc
    }

    fn block_size(&self) -> u64 {
        1 << self.config.block_shift
    }

    fn stride(&self) -> u64 {
        4 << ((self.config.cap >> 32) & 0xf)
    }

    fn stopped(&self, iova: u64, len: usize) -> bool {
        let end = iova.saturating_add(len as u64);
        self.blocked
            .borrow()
            .iter()
            .any(|&(start, stop)| iova < stop && start < end)
    }

    fn dma_read(&self, iova: u64, out: &mut [u8]) -> bool {
        if self.stopped(iova, out.len()) {
            return false;
        }
        self.windows
            .iter()
            .any(|w| match w.locate(iova, out.len()) {
                Some(offset) => {
                    out.copy_from_slice(&w.bytes.borrow()[offset..offset + out.len()]);
                    true
                }
                None => false,
            })
    }

    fn dma_write(&self, iova: u64, bytes: &[u8]) -> bool {
        if self.stopped(iova, bytes.len()) {
            return false;
        }
        self.windows
            .iter()
            .any(|w| match w.locate(iova, bytes.len()) {
                Some(offset) => w.write(offset, bytes),
                None => false,
            })
    }

    fn enable(&self, st: &mut State) {
        let page_aligned = |a: u64| a != 0 && a.is_multiple_of(PAGE);
        let admin_sizes = [st.aqa & 0xfff, (st.aqa >> 16) & 0xfff];
        let ok = page_aligned(st.asq)
            && page_aligned(st.acq)
            && admin_sizes.iter().all(|s| *s >= 1)
            && (st.cc >> 7) & 0xf == 0
            && !self.fatal_on_enable.get();
        if !ok {
            st.csts = 2;
            return;
        }
        st.sqs = [
            Some(Sq {
                base: st.asq,
                size: admin_sizes[0] as u16 + 1,
                head: 0,
                cq: 0,
            }),
            None,
        ];
        st.cqs = [
            Some(Cq {
                base: st.acq,
                size: admin_sizes[1] as u16 + 1,
                head: 0,
                tail: 0,
                phase: true,
            }),
            None,
        ];
        if !self.never_ready.get() {
            st.csts = 1;
        }
    }

    fn reset(&self, st: &mut State) {
        self.resets.set(self.resets.get() + 1);
        st.sqs = [None; 2];
        st.cqs = [None; 2];
        st.pending.clear();
        st.csts = 0;
        self.unresponsive.set(false);
        if !self.late_completions.get() {
            st.owed.clear();
        }
    }

    fn doorbell(&self, st: &mut State, offset: u64, value: u32) {
        let index = (offset - 0x1000) / self.stride();
        let qid = (index / 2) as usize;
        if qid >= 2 || st.csts & 1 == 0 {
            return;
        }
        if index % 2 == 1 {
            if let Some(cq) = st.cqs[qid].as_mut() {
                if value < u32::from(cq.size) {
                    cq.head = value as u16;
                }
            }
            self.flush(st);
            return;
        }
        let Some(mut sq) = st.sqs[qid] else { return };
        if value >= u32::from(sq.size) {
            return;
        }
        let tail = value as u16;
        if qid != 0 && !self.unresponsive.get() {
            // What a controller that stopped answering owed, late.
            let owed = core::mem::take(&mut st.owed);
            st.pending.extend(owed);
        }
        while sq.head != tail {
            let mut entry = [0u8; 64];
            if !self.dma_read(sq.base + u64::from(sq.head) * 64, &mut entry) {
                st.csts |= 2;
                return;
            }
            sq.head = (sq.head + 1) % sq.size;
            st.sqs[qid] = Some(sq);
            let cid = u16::from_le_bytes([entry[2], entry[3]]);
            let (status, dw0) = if qid == 0 {
                self.admin(st, &entry)
            } else {
                self.io(st, &entry)
            };
            if qid != 0 && self.swallow.get() {
                continue;
            }
            let mut posting = Posting {
                cq: sq.cq,
                dw0,
                sq: qid as u16,
                cid,
                status,
                stale_phase: false,
            };
            if qid != 0 && self.unresponsive.get() {
                st.owed.push(posting);
                continue;
            }
            if qid == 0 && self.wrong_admin_cid.take() {
                posting.cid ^= 0x8000;
            }
            if qid != 0 {
                if let Some(wrong) = self.wrong_cid.take() {
                    posting.cid = wrong;
                }
                posting.stale_phase = self.stale_phase.take();
                if self.duplicate.take() {
                    st.pending.push_back(posting);
                }
            }
            st.pending.push_back(posting);
            self.flush(st);
        }
    }

    /// Posts held completions while their CQs have room.
    fn flush(&self, st: &mut State) {
        while let Some(&posting) = st.pending.front() {
            let Posting {
                cq: cqid,
                dw0,
                sq: sqid,
                cid,
                status,
                stale_phase,
            } = posting;
            let sq_head = st.sqs[sqid as usize].map_or(0, |s| s.head);
            let Some(cq) = st.cqs[cqid as usize].as_mut() else {
                st.pending.pop_front();
                continue;
            };
            if (cq.tail + 1) % cq.size == cq.head {
                return;
            }
            let mut entry = [0u8; 16];
            entry[0..4].copy_from_slice(&dw0.to_le_bytes());
            entry[8..10].copy_from_slice(&sq_head.to_le_bytes());
            entry[10..12].copy_from_slice(&sqid.to_le_bytes());
            entry[12..14].copy_from_slice(&cid.to_le_bytes());
            let field = (status << 1) | u16::from(cq.phase != stale_phase);
            entry[14..16].copy_from_slice(&field.to_le_bytes());
            let at = cq.base + u64::from(cq.tail) * 16;
            cq.tail = (cq.tail + 1) % cq.size;
            if cq.tail == 0 {
                cq.phase = !cq.phase;
            }
            st.pending.pop_front();
            if !self.dma_write(at, &entry) {
                st.csts |= 2;
                return;
            }
        }
    }

    fn admin(&self, st: &mut State, e: &[u8; 64]) -> (u16, u32) {
        let dw =
            |i: usize| u32::from_le_bytes([e[i * 4], e[i * 4 + 1], e[i * 4 + 2], e[i * 4 + 3]]);
        let prp1 = u64::from(dw(6)) | (u64::from(dw(7)) << 32);
        let prp2 = u64::from(dw(8)) | (u64::from(dw(9)) << 32);
        let (cdw10, cdw11) = (dw(10), dw(11));
        let qid = (cdw10 & 0xffff) as usize;
        let size = (cdw10 >> 16) as u16;
        let mqes = self.config.cap as u16;
        match e[0] {
            0x06 => {
                let mut data = match cdw10 & 0xff {
                    1 => self.identify_controller(),
                    0 if dw(1) == 1 => self.identify_namespace(),
                    0 => vec![0; 4096],
                    _ => return (SC_INVALID_FIELD, 0),
                };
                (self.transfer(prp1, prp2, &mut data, true), 0)
            }
            0x05 => {
                if qid != 1 || st.cqs[1].is_some() {
                    return (SC_INVALID_QID, 0);
                }
                if size == 0 || size > mqes || cdw11 & 1 == 0 || prp1 % PAGE != 0 {
                    return (SC_INVALID_FIELD, 0);
                }
                st.cqs[1] = Some(Cq {
                    base: prp1,
                    size: size + 1,
                    head: 0,
                    tail: 0,
                    phase: true,
                });
                (SC_SUCCESS, 0)
            }
            0x01 => {
                let cq = (cdw11 >> 16) as u16;
                if qid != 1 || st.sqs[1].is_some() || cq != 1 || st.cqs[1].is_none() {
                    return (SC_INVALID_QID, 0);
                }
                if size == 0 || size > mqes || cdw11 & 1 == 0 || prp1 % PAGE != 0 {
                    return (SC_INVALID_FIELD, 0);
                }
                st.sqs[1] = Some(Sq {
                    base: prp1,
                    size: size + 1,
                    head: 0,
                    cq,
                });
                (SC_SUCCESS, 0)
            }
            _ => (SC_INVALID_OPCODE, 0),
        }
    }

    fn identify_controller(&self) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        let text = |d: &mut Vec<u8>, at: usize, len: usize, s: &str| {
            d[at..at + len].fill(b' ');
            d[at..at + s.len()].copy_from_slice(s.as_bytes());
        };
        d[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        text(&mut d, 4, 20, SERIAL);
        text(&mut d, 24, 40, MODEL);
        text(&mut d, 64, 8, FIRMWARE);
        d[77] = self.config.mdts;
        d[512] = self.config.sqes;
        d[513] = self.config.cqes;
        d[516..520].copy_from_slice(&1u32.to_le_bytes());
        d
    }

    fn identify_namespace(&self) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        for at in [0, 8, 16] {
            d[at..at + 8].copy_from_slice(&self.config.blocks.to_le_bytes());
        }
        d[25] = 0;
        d[26] = 0;
        let lbaf = u32::from(self.config.metadata) | (u32::from(self.config.block_shift) << 16);
        d[128..132].copy_from_slice(&lbaf.to_le_bytes());
        d
    }

    /// The (IOVA, length) pieces PRP1/PRP2 describe for `len` bytes, as
    /// QEMU walks them (a list's last entry chains when more remain).
    fn segments(&self, prp1: u64, prp2: u64, len: u64) -> Result<Vec<(u64, u64)>, u16> {
        let first = len.min(PAGE - prp1 % PAGE);
        let mut segments = vec![(prp1, first)];
        let mut left = len - first;
        if left == 0 {
            return Ok(segments);
        }
        if left <= PAGE {
            if !prp2.is_multiple_of(PAGE) {
                return Err(SC_INVALID_PRP_OFFSET);
            }
            segments.push((prp2, left));
            return Ok(segments);
        }
        let mut list = prp2;
        let mut entries = self.read_list(list)?;
        let mut i = 0;
        while left > 0 {
            if i == entries.len() - 1 && left > PAGE {
                list = entries[i];
                if !list.is_multiple_of(PAGE) {
                    return Err(SC_INVALID_PRP_OFFSET);
                }
                entries = self.read_list(list)?;
                i = 0;
            }
            let page = entries[i];
            if page % PAGE != 0 {
                return Err(SC_INVALID_PRP_OFFSET);
            }
            let take = left.min(PAGE);
            segments.push((page, take));
            left -= take;
            i += 1;
        }
        Ok(segments)
    }

    fn read_list(&self, list: u64) -> Result<Vec<u64>, u16> {
        let count = ((PAGE - list % PAGE) / 8) as usize;
        let mut bytes = vec![0u8; count * 8];
        if !self.dma_read(list, &mut bytes) {
            return Err(SC_DATA_TRANSFER_ERROR);
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect())
    }

    /// Moves `data` to (`to_memory`) or from memory through PRPs.
    fn transfer(&self, prp1: u64, prp2: u64, data: &mut [u8], to_memory: bool) -> u16 {
        let segments = match self.segments(prp1, prp2, data.len() as u64) {
            Ok(s) => s,
            Err(status) => return status,
        };
        let mut at = 0usize;
        for (iova, len) in segments {
            let piece = &mut data[at..at + len as usize];
            let ok = if to_memory {
                self.dma_write(iova, piece)
            } else {
                self.dma_read(iova, piece)
            };
            if !ok {
                return SC_DATA_TRANSFER_ERROR;
            }
            at += len as usize;
        }
        SC_SUCCESS
    }

    fn io(&self, st: &mut State, e: &[u8; 64]) -> (u16, u32) {
        let dw =
            |i: usize| u32::from_le_bytes([e[i * 4], e[i * 4 + 1], e[i * 4 + 2], e[i * 4 + 3]]);
        let prp1 = u64::from(dw(6)) | (u64::from(dw(7)) << 32);
        let prp2 = u64::from(dw(8)) | (u64::from(dw(9)) << 32);
        let slba = u64::from(dw(10)) | (u64::from(dw(11)) << 32);
        let nlb = (dw(12) & 0xffff) + 1;
        self.io_commands.set(self.io_commands.get() + 1);
        self.last_io.set(Some(SeenIo {
            opcode: e[0],
            prp1,
            prp2,
            slba,
            nlb,
        }));
        if dw(1) != 1 {
            return (SC_INVALID_NAMESPACE, 0);
        }
        if slba
            .checked_add(u64::from(nlb))
            .is_none_or(|end| end > self.config.blocks)
        {
            return (SC_LBA_OUT_OF_RANGE, 0);
        }
        let len = u64::from(nlb) << self.config.block_shift;
        if self.config.mdts != 0 && len > PAGE << self.config.mdts {
            return (SC_INVALID_FIELD, 0);
        }
        let start = (slba * self.block_size()) as usize;
        let range = start..start + len as usize;
        match e[0] {
            0x02 => {
                let mut data = st.disk[range].to_vec();
                (self.transfer(prp1, prp2, &mut data, true), 0)
            }
            0x01 => {
                let mut data = vec![0u8; len as usize];
                let status = self.transfer(prp1, prp2, &mut data, false);
                if status == SC_SUCCESS {
                    st.disk[range].copy_from_slice(&data);
                }
                (status, 0)
            }
            _ => (SC_INVALID_OPCODE, 0),
        }
    }
}

impl RegisterBlock for &SimNvme<'_> {
    fn read32(&self, offset: usize) -> u32 {
        let st = self.state.borrow();
        match offset {
            0x00 => self.config.cap as u32,
            0x04 => (self.config.cap >> 32) as u32,
            0x08 => 0x0001_0400,
            0x14 => st.cc,
            0x1c => st.csts,
            0x24 => st.aqa,
            _ => 0,
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let mut st = self.state.borrow_mut();
        match offset {
            0x14 => {
                let was = st.cc & 1;
                if was == 1 && value & 1 == 0 && self.stuck_enabled.get() {
                    // The write is lost: CC.EN reads 1 and nothing stops.
                    return;
                }
                st.cc = value;
                match (was, value & 1) {
                    (0, 1) => self.enable(&mut st),
                    (1, 0) => self.reset(&mut st),
                    _ => {}
                }
            }
            0x24 => st.aqa = value,
            o if o >= 0x1000 => self.doorbell(&mut st, o as u64, value),
            _ => {}
        }
    }

    fn read64(&self, offset: usize) -> u64 {
        let st = self.state.borrow();
        match offset {
            0x00 => self.config.cap,
            0x28 => st.asq,
            0x30 => st.acq,
            _ => u64::from(self.read32(offset)) | (u64::from(self.read32(offset + 4)) << 32),
        }
    }

    fn write64(&self, offset: usize, value: u64) {
        let mut st = self.state.borrow_mut();
        match offset {
            0x28 => st.asq = value,
            0x30 => st.acq = value,
            _ => {}
        }
    }
}

/// Registers of a device that is not there: every read is all ones.
pub struct Absent;

impl RegisterBlock for Absent {
    fn read32(&self, _: usize) -> u32 {
        u32::MAX
    }
    fn write32(&self, _: usize, _: u32) {}
    fn read64(&self, _: usize) -> u64 {
        u64::MAX
    }
    fn write64(&self, _: usize, _: u64) {}
}
