//! A deliberately naive reference model of the engine: sorted vectors,
//! linear scans, page-by-page chunking. Shared by the property test and the
//! benchmark.
#![allow(dead_code)]

use std::collections::BTreeMap;

use iopt::{
    DomainId, DstIova, Errno, Extent, IovaRange, Prot, ReservedOwner, MAX_ALLOWED, MAX_DOMAINS,
    MAX_EXTENTS, MAX_RESERVED, PAGE_SIZE,
};

const AUTO_WINDOW: IovaRange = IovaRange {
    start: PAGE_SIZE,
    last: u64::MAX - PAGE_SIZE,
};

#[derive(Clone, Debug)]
pub struct MBacking {
    pub extents: Vec<Extent>,
    pub source: u64,
    pub writable: bool,
    pub refs: usize,
    /// CPU pages the extents touch, charged while any area refers to it.
    pub charged: u64,
}

impl MBacking {
    pub fn phys_at(&self, mut offset: u64) -> u64 {
        for e in &self.extents {
            if offset < e.len {
                return e.phys + offset;
            }
            offset -= e.len;
        }
        panic!("offset beyond backing");
    }

    /// Physically contiguous runs of [offset, offset+len) as (delta, phys,
    /// len), found byte by byte (in strides that cannot skip an extent
    /// edge).
    pub fn runs(&self, offset: u64, len: u64) -> Vec<(u64, u64, u64)> {
        let mut out: Vec<(u64, u64, u64)> = Vec::new();
        let mut pos = 0u64;
        while pos < len {
            let phys = self.phys_at(offset + pos);
            let step = self.left_in_extent(offset + pos).min(len - pos);
            match out.last_mut() {
                Some(run) if run.1 + run.2 == phys => run.2 += step,
                _ => out.push((pos, phys, step)),
            }
            pos += step;
        }
        out
    }

    fn left_in_extent(&self, mut offset: u64) -> u64 {
        for e in &self.extents {
            if offset < e.len {
                return e.len - offset;
            }
            offset -= e.len;
        }
        panic!("offset beyond backing");
    }

    /// Offset of byte `offset` in its CPU page.
    pub fn page_offset(&self, offset: u64) -> u64 {
        self.phys_at(offset) % PAGE_SIZE
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MArea {
    pub start: u64,
    pub last: u64,
    pub backing: usize,
    pub offset: u64,
    pub prot: Prot,
}

#[derive(Clone, Debug)]
pub struct MIoas {
    /// Sorted by start.
    pub areas: Vec<MArea>,
    pub reserved: Vec<(IovaRange, ReservedOwner)>,
    pub allowed: Vec<IovaRange>,
    pub domains: Vec<usize>,
    pub alignment: u64,
    pub huge: bool,
}

#[derive(Clone, Debug)]
pub struct DomSpec {
    pub sizes: u64,
    pub aperture: IovaRange,
    pub limit: usize,
}

/// Capacities the model enforces, matching the engine's store.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub areas: usize,
    pub backings: usize,
    pub quota_pages: u64,
}

#[derive(Clone, Debug)]
pub struct Model {
    pub caps: Caps,
    pub ioas: Vec<MIoas>,
    pub backings: Vec<Option<MBacking>>,
    free_backings: Vec<usize>,
    pub used: u64,
    pub specs: Vec<DomSpec>,
    /// What each domain should hold: iova -> (phys, size, prot).
    pub mirrors: Vec<BTreeMap<u64, (u64, u64, Prot)>>,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

fn min_page(sizes: u64) -> u64 {
    1 << sizes.trailing_zeros()
}

/// Page-by-page greedy chunking: at each step the largest size that the
/// IOVA, the physical address and the remaining length all allow.
fn greedy_pages(sizes: u64, mut iova: u64, mut phys: u64, mut len: u64) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    while len > 0 {
        let size = (0..64)
            .rev()
            .map(|b| 1u64 << b)
            .find(|&s| {
                sizes & s != 0 && iova.is_multiple_of(s) && phys.is_multiple_of(s) && s <= len
            })
            .expect("no page size fits");
        out.push((iova, phys, size));
        iova = iova.wrapping_add(size);
        phys = phys.wrapping_add(size);
        len -= size;
    }
    out
}

enum MSource<'a> {
    Extents {
        extents: &'a [Extent],
        source: u64,
        writable: bool,
    },
    Areas {
        src: usize,
        iova: u64,
    },
}

impl Model {
    /// `ioas` empty address spaces and the given domains, all detached.
    pub fn new(caps: Caps, ioas: usize, specs: Vec<DomSpec>) -> Model {
        let empty = MIoas {
            areas: vec![],
            reserved: vec![],
            allowed: vec![],
            domains: vec![],
            alignment: 1,
            huge: true,
        };
        Model {
            caps,
            ioas: vec![empty; ioas],
            backings: vec![],
            free_backings: vec![],
            used: 0,
            mirrors: vec![BTreeMap::new(); specs.len()],
            specs,
        }
    }

    pub fn area_count(&self) -> usize {
        self.ioas.iter().map(|i| i.areas.len()).sum()
    }

    pub fn live_backings(&self) -> usize {
        self.backings.len() - self.free_backings.len()
    }

    pub fn backing(&self, id: usize) -> &MBacking {
        self.backings[id].as_ref().unwrap()
    }

    fn new_backing(&mut self, b: MBacking) -> usize {
        match self.free_backings.pop() {
            Some(id) => {
                self.backings[id] = Some(b);
                id
            }
            None => {
                self.backings.push(Some(b));
                self.backings.len() - 1
            }
        }
    }

    fn drop_backing(&mut self, id: usize) {
        self.backings[id] = None;
        self.free_backings.push(id);
    }

    /// Drops a reference; the pages to uncharge when it was the last.
    fn put(&mut self, id: usize) -> u64 {
        let b = self.backings[id].as_mut().unwrap();
        b.refs -= 1;
        if b.refs > 0 {
            return 0;
        }
        let charged = b.charged;
        self.drop_backing(id);
        charged
    }

    /// Installs areas directly (sorted, non-overlapping, each with its own
    /// whole backing), bypassing the checks; for building large states.
    pub fn preload(&mut self, i: usize, areas: impl IntoIterator<Item = (u64, u64, u64, Prot)>) {
        for (start, last, phys, prot) in areas {
            let len = last - start + 1;
            let charged = (phys % PAGE_SIZE + len).div_ceil(PAGE_SIZE);
            let backing = self.new_backing(MBacking {
                extents: vec![Extent { phys, len }],
                source: phys,
                writable: true,
                refs: 1,
                charged,
            });
            self.ioas[i].areas.push(MArea {
                start,
                last,
                backing,
                offset: 0,
                prot,
            });
            self.used += charged;
        }
        self.ioas[i].areas.sort_by_key(|a| a.start);
    }

    pub fn pages_of(&self, i: usize, area: &MArea, sizes: u64) -> Vec<(u64, u64, u64)> {
        let huge = self.ioas[i].huge;
        let sizes = if huge { sizes } else { min_page(sizes) };
        let b = self.backing(area.backing);
        let mut out = vec![];
        for (delta, phys, len) in b.runs(area.offset, area.last - area.start + 1) {
            out.extend(greedy_pages(sizes, area.start + delta, phys, len));
        }
        out
    }

    pub fn holes(&self, i: usize, within: IovaRange) -> Vec<IovaRange> {
        let mut used: Vec<IovaRange> = self.ioas[i].reserved.iter().map(|r| r.0).collect();
        used.sort();
        iopt::Holes::new(within, used).collect()
    }

    fn overlaps_area(&self, i: usize, r: IovaRange) -> bool {
        self.ioas[i]
            .areas
            .iter()
            .any(|a| IovaRange::new(a.start, a.last).overlaps(&r))
    }

    pub fn map(
        &mut self,
        i: usize,
        extents: &[Extent],
        source: u64,
        writable: bool,
        dst: DstIova,
        prot: Prot,
    ) -> Result<u64, Errno> {
        let mut length = 0u64;
        for (k, e) in extents.iter().enumerate() {
            if e.len == 0 {
                return Err(Errno::EINVAL);
            }
            let end = e.phys.checked_add(e.len - 1).ok_or(Errno::EOVERFLOW)?;
            let inner_start = k > 0 && e.phys % PAGE_SIZE != 0;
            let inner_end = k + 1 < extents.len() && (end + 1) % PAGE_SIZE != 0;
            if inner_start || inner_end {
                return Err(Errno::EINVAL);
            }
            length = length.checked_add(e.len).ok_or(Errno::EOVERFLOW)?;
        }
        self.add(
            i,
            MSource::Extents {
                extents,
                source,
                writable,
            },
            length,
            dst,
            prot,
        )
    }

    pub fn copy(
        &mut self,
        i: usize,
        src: usize,
        iova: u64,
        length: u64,
        dst: DstIova,
        prot: Prot,
    ) -> Result<u64, Errno> {
        if prot.is_empty() || length == 0 {
            return Err(Errno::EINVAL);
        }
        IovaRange::from_start_len(iova, length).ok_or(Errno::EOVERFLOW)?;
        self.add(i, MSource::Areas { src, iova }, length, dst, prot)
    }

    fn add(
        &mut self,
        i: usize,
        source: MSource,
        length: u64,
        dst: DstIova,
        prot: Prot,
    ) -> Result<u64, Errno> {
        if prot.is_empty() || length == 0 {
            return Err(Errno::EINVAL);
        }
        let align = self.ioas[i].alignment;
        // (backing or None for new, offset, len)
        let mut segs: Vec<(Option<usize>, u64, u64)> = vec![];
        let (writable, misaligned, first_source);
        match source {
            MSource::Extents {
                extents,
                source,
                writable: w,
            } => {
                segs.push((None, 0, length));
                writable = w;
                first_source = source;
                misaligned = !(extents[0].phys % PAGE_SIZE).is_multiple_of(align);
            }
            MSource::Areas { src, iova } => {
                let (mut w, mut mis, mut first) = (true, false, 0);
                let mut cursor = iova;
                let last = iova + (length - 1);
                loop {
                    let a = *self.ioas[src]
                        .areas
                        .iter()
                        .find(|a| a.start <= cursor && cursor <= a.last)
                        .ok_or(Errno::ENOENT)?;
                    let seg_last = a.last.min(last);
                    let offset = a.offset + (cursor - a.start);
                    let b = self.backing(a.backing);
                    if segs.is_empty() {
                        first = b.source.wrapping_add(offset);
                    }
                    w &= b.writable;
                    mis |= !b.page_offset(offset).is_multiple_of(align);
                    segs.push((Some(a.backing), offset, seg_last - cursor + 1));
                    if seg_last == last {
                        break;
                    }
                    cursor = seg_last + 1;
                }
                writable = w;
                misaligned = mis;
                first_source = first;
            }
        }
        if !length.is_multiple_of(align) {
            return Err(Errno::EINVAL);
        }
        let iova = match dst {
            DstIova::Fixed(iova) => {
                if iova % align != 0 {
                    return Err(Errno::EINVAL);
                }
                let r = IovaRange::from_start_len(iova, length).ok_or(Errno::EOVERFLOW)?;
                if self.ioas[i].reserved.iter().any(|x| x.0.overlaps(&r)) {
                    return Err(Errno::EINVAL);
                }
                if self.overlaps_area(i, r) {
                    return Err(Errno::EEXIST);
                }
                iova
            }
            DstIova::Auto => self.first_fit(i, first_source, length)?,
        };
        if prot.contains(Prot::WRITE) && !writable {
            return Err(Errno::EPERM);
        }
        if misaligned {
            return Err(Errno::EINVAL);
        }
        let charged = match &source {
            MSource::Extents { extents, .. } => {
                (extents[0].phys % PAGE_SIZE + length).div_ceil(PAGE_SIZE)
            }
            MSource::Areas { .. } => 0,
        };
        if self.used + charged > self.caps.quota_pages {
            return Err(Errno::ENOMEM);
        }
        if self.area_count() + segs.len() > self.caps.areas {
            return Err(Errno::ENOMEM);
        }
        let new_backing = if let MSource::Extents {
            extents,
            source,
            writable,
        } = source
        {
            if extents.len() > MAX_EXTENTS || self.live_backings() == self.caps.backings {
                return Err(Errno::ENOMEM);
            }
            Some(self.new_backing(MBacking {
                extents: extents.to_vec(),
                source,
                writable,
                refs: 0,
                charged,
            }))
        } else {
            None
        };
        let mut new_areas = vec![];
        let mut at = iova;
        for (b, offset, len) in segs {
            let backing = b.or(new_backing).unwrap();
            new_areas.push(MArea {
                start: at,
                last: at + (len - 1),
                backing,
                offset,
                prot,
            });
            at = at.wrapping_add(len);
        }
        // Would any domain run out?
        for &d in &self.ioas[i].domains {
            let more: usize = new_areas
                .iter()
                .map(|a| self.pages_of(i, a, self.specs[d].sizes).len())
                .sum();
            if self.mirrors[d].len() + more > self.specs[d].limit {
                if let Some(b) = new_backing {
                    self.drop_backing(b);
                }
                return Err(Errno::ENOMEM);
            }
        }
        for a in &new_areas {
            self.backings[a.backing].as_mut().unwrap().refs += 1;
            for &d in &self.ioas[i].domains.clone() {
                for (iova, phys, size) in self.pages_of(i, a, self.specs[d].sizes) {
                    self.mirrors[d].insert(iova, (phys, size, a.prot));
                }
            }
            self.ioas[i].areas.push(*a);
        }
        self.ioas[i].areas.sort_by_key(|a| a.start);
        self.used += charged;
        Ok(iova)
    }

    pub fn first_fit(&self, i: usize, source: u64, length: u64) -> Result<u64, Errno> {
        if length >= u64::MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let io = &self.ioas[i];
        let mut align = length.next_power_of_two();
        if source != 0 {
            align = align.min(1 << source.trailing_zeros());
        }
        if align < io.alignment {
            return Err(Errno::EINVAL);
        }
        let offset = source % PAGE_SIZE;
        let mut blockers: Vec<IovaRange> = io.reserved.iter().map(|r| r.0).collect();
        blockers.extend(io.areas.iter().map(|a| IovaRange::new(a.start, a.last)));
        blockers.sort();
        let windows = if io.allowed.is_empty() {
            vec![AUTO_WINDOW]
        } else {
            io.allowed.clone()
        };
        let fits = |start: u64, last: u64| -> Option<u64> {
            let x = align_up(start, align)? | offset;
            (x <= last && last - x >= length - 1).then_some(x)
        };
        for w in windows {
            let Some(w) = w.intersect(&AUTO_WINDOW) else {
                continue;
            };
            // Linux places the window's start for the request first, skips
            // the window when too little is left, then walks the holes
            // from there left to right.
            let Some(from) = align_up(w.start, align).map(|s| s | offset) else {
                continue;
            };
            if from > w.last || w.last - from < length - 1 {
                continue;
            }
            let mut cursor = Some(from);
            for b in &blockers {
                let Some(c) = cursor else { break };
                if b.last < c {
                    continue;
                }
                if b.start > w.last {
                    break;
                }
                if b.start > c {
                    if let Some(x) = fits(c, b.start - 1) {
                        return Ok(x);
                    }
                }
                cursor = b.last.checked_add(1).filter(|&n| n <= w.last);
            }
            if let Some(x) = cursor.and_then(|c| fits(c, w.last)) {
                return Ok(x);
            }
        }
        Err(Errno::ENOSPC)
    }

    fn remove_where(&mut self, i: usize, pred: impl Fn(&MArea) -> bool) -> u64 {
        let (gone, keep): (Vec<MArea>, Vec<MArea>) =
            self.ioas[i].areas.iter().partition(|a| pred(a));
        self.ioas[i].areas = keep;
        let mut total = 0;
        for a in gone {
            for &d in &self.ioas[i].domains {
                let keys: Vec<u64> = self.mirrors[d]
                    .range(a.start..=a.last)
                    .map(|(&k, _)| k)
                    .collect();
                for k in keys {
                    self.mirrors[d].remove(&k);
                }
            }
            total += a.last - a.start + 1;
            let freed = self.put(a.backing);
            self.used -= freed;
        }
        total
    }

    pub fn unmap(&mut self, i: usize, iova: u64, length: u64) -> Result<u64, Errno> {
        if length == 0 {
            return Err(Errno::EINVAL);
        }
        let r = IovaRange::from_start_len(iova, length).ok_or(Errno::EOVERFLOW)?;
        let hit: Vec<MArea> = self.ioas[i]
            .areas
            .iter()
            .filter(|a| IovaRange::new(a.start, a.last).overlaps(&r))
            .copied()
            .collect();
        if hit.is_empty() || hit.iter().any(|a| a.start < r.start || a.last > r.last) {
            return Err(Errno::ENOENT);
        }
        Ok(self.remove_where(i, |a| r.contains(a.start)))
    }

    pub fn cut(&mut self, i: usize, iovas: &[u64]) -> Result<(), Errno> {
        let mut needed = std::collections::BTreeSet::new();
        for &iova in iovas {
            let Some(a) = self.ioas[i]
                .areas
                .iter()
                .find(|a| a.start <= iova && iova <= a.last)
            else {
                continue;
            };
            if iova == a.start || iova == a.last {
                continue;
            }
            let in_blocks = self.ioas[i].huge && !self.ioas[i].domains.is_empty();
            if in_blocks || (iova + 1) % self.ioas[i].alignment != 0 {
                return Err(Errno::EINVAL);
            }
            needed.insert(iova);
        }
        if self.area_count() + needed.len() > self.caps.areas {
            return Err(Errno::ENOMEM);
        }
        for iova in needed {
            let pos = self.ioas[i]
                .areas
                .iter()
                .position(|a| a.start <= iova && iova <= a.last)
                .unwrap();
            let a = self.ioas[i].areas[pos];
            self.ioas[i].areas[pos].last = iova;
            let right = MArea {
                start: iova + 1,
                offset: a.offset + (iova + 1 - a.start),
                ..a
            };
            self.ioas[i].areas.insert(pos + 1, right);
            self.backings[a.backing].as_mut().unwrap().refs += 1;
        }
        Ok(())
    }

    pub fn reserve(&mut self, i: usize, r: IovaRange, owner: ReservedOwner) -> Result<(), Errno> {
        if r.start > r.last || matches!(owner, ReservedOwner::Aperture(_)) {
            return Err(Errno::EINVAL);
        }
        if self.overlaps_area(i, r) || self.ioas[i].allowed.iter().any(|a| a.overlaps(&r)) {
            return Err(Errno::EADDRINUSE);
        }
        if self.ioas[i].reserved.len() == MAX_RESERVED {
            return Err(Errno::ENOMEM);
        }
        self.ioas[i].reserved.push((r, owner));
        Ok(())
    }

    pub fn allow(&mut self, i: usize, ranges: &[IovaRange]) -> Result<(), Errno> {
        if ranges.iter().any(|r| r.start >= r.last) {
            return Err(Errno::EINVAL);
        }
        if ranges.len() > MAX_ALLOWED {
            return Err(Errno::ENOMEM);
        }
        let mut sorted = ranges.to_vec();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0].overlaps(&w[1])) {
            return Err(Errno::EINVAL);
        }
        if sorted
            .iter()
            .any(|a| self.ioas[i].reserved.iter().any(|r| r.0.overlaps(a)))
        {
            return Err(Errno::EADDRINUSE);
        }
        self.ioas[i].allowed = sorted;
        Ok(())
    }

    pub fn attach(&mut self, i: usize, d: usize) -> Result<(), Errno> {
        if self.ioas[i].domains.contains(&d) {
            return Err(Errno::EEXIST);
        }
        if self.ioas[i].domains.len() == MAX_DOMAINS {
            return Err(Errno::ENOMEM);
        }
        let spec = self.specs[d].clone();
        if spec.sizes == 0 {
            return Err(Errno::EINVAL);
        }
        let align = self.ioas[i].alignment.max(min_page(spec.sizes));
        if align > PAGE_SIZE {
            return Err(Errno::EINVAL);
        }
        if align != self.ioas[i].alignment {
            for a in &self.ioas[i].areas {
                let b = self.backing(a.backing);
                let bad = a.start % align != 0
                    || (a.last - a.start + 1) % align != 0
                    || !b.page_offset(a.offset).is_multiple_of(align);
                if bad {
                    return Err(Errno::EADDRINUSE);
                }
            }
        }
        let mut outside = vec![];
        if spec.aperture.start > 0 {
            outside.push(IovaRange::new(0, spec.aperture.start - 1));
        }
        if spec.aperture.last < u64::MAX {
            outside.push(IovaRange::new(spec.aperture.last + 1, u64::MAX));
        }
        for r in &outside {
            if self.overlaps_area(i, *r) || self.ioas[i].allowed.iter().any(|a| a.overlaps(r)) {
                return Err(Errno::EADDRINUSE);
            }
        }
        if self.ioas[i].reserved.len() + outside.len() > MAX_RESERVED {
            return Err(Errno::ENOMEM);
        }
        let mut pages = vec![];
        for a in &self.ioas[i].areas {
            pages.extend(
                self.pages_of(i, a, spec.sizes)
                    .into_iter()
                    .map(|p| (p, a.prot)),
            );
        }
        if pages.len() > spec.limit {
            return Err(Errno::ENOMEM);
        }
        for ((iova, phys, size), prot) in pages {
            self.mirrors[d].insert(iova, (phys, size, prot));
        }
        for r in outside {
            self.ioas[i]
                .reserved
                .push((r, ReservedOwner::Aperture(DomainId(d as u32))));
        }
        self.ioas[i].domains.push(d);
        self.ioas[i].alignment = align;
        Ok(())
    }

    pub fn detach(&mut self, i: usize, d: usize) -> Result<(), Errno> {
        let pos = self.ioas[i]
            .domains
            .iter()
            .position(|&x| x == d)
            .ok_or(Errno::ENOENT)?;
        self.ioas[i].domains.remove(pos);
        self.mirrors[d].clear();
        self.ioas[i]
            .reserved
            .retain(|r| r.1 != ReservedOwner::Aperture(DomainId(d as u32)));
        let specs = &self.specs;
        let base = if self.ioas[i].huge { 1 } else { PAGE_SIZE };
        self.ioas[i].alignment = self.ioas[i]
            .domains
            .iter()
            .fold(base, |acc, &x| acc.max(min_page(specs[x].sizes)));
        Ok(())
    }

    pub fn set_huge(&mut self, i: usize, on: bool) -> Result<(), Errno> {
        let io = &self.ioas[i];
        if on == io.huge {
            return Ok(());
        }
        if !on && !io.domains.is_empty() && !io.areas.is_empty() {
            return Err(Errno::EINVAL);
        }
        let base = if on { 1 } else { PAGE_SIZE };
        let align = io
            .domains
            .iter()
            .fold(base, |acc, &d| acc.max(min_page(self.specs[d].sizes)));
        if align > io.alignment {
            for a in &io.areas {
                let b = self.backing(a.backing);
                if a.start % align != 0
                    || (a.last - a.start + 1) % align != 0
                    || !b.page_offset(a.offset).is_multiple_of(align)
                {
                    return Err(Errno::EADDRINUSE);
                }
            }
        }
        let io = &mut self.ioas[i];
        io.huge = on;
        io.alignment = align;
        Ok(())
    }
}
