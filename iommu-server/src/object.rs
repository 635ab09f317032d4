//! Objects: the per-client table whose IDs are capabilities, the kinds of
//! object it holds, lookups by kind, and DESTROY (Linux's iommufd main.c
//! object layer).
//!
//! An ID is `generation << INDEX_BITS | index`. A slot's generation moves on
//! every time its object goes, so a destroyed ID never names anything
//! again; a slot whose generation would wrap is retired for good. ID 0 is
//! never valid. One client's IDs index only its own table.
//!
//! Objects are created in two phases: [`ObjectTable::reserve`] takes a slot
//! (invisible to lookups), the caller builds the object, then
//! [`ObjectTable::finalize`] publishes it or [`ObjectTable::abort`] frees
//! the slot, so a failing request leaves nothing behind.

use iommu_types::{Errno, StreamId};
use iopt::{DomainId, Hardware, Store};

/// Bits of an ID that select the slot; tables hold at most 2^8 objects.
pub const INDEX_BITS: u32 = 8;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
const MAX_GENERATION: u32 = u32::MAX >> INDEX_BITS;

/// An object ID as clients see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId(pub u32);

impl ObjectId {
    fn new(index: usize, generation: u32) -> ObjectId {
        ObjectId((generation << INDEX_BITS) | index as u32)
    }

    fn index(self) -> usize {
        (self.0 & INDEX_MASK) as usize
    }

    fn generation(self) -> u32 {
        self.0 >> INDEX_BITS
    }
}

// An explicit tag with Free = 0 (a niche could put Free anywhere): a free
// slot is zero bytes, so tables kept in a static sit in `.bss`.
#[derive(Debug)]
#[repr(u8)]
enum State<T> {
    Free = 0,
    /// Allocated but not finalized: invisible to lookups.
    Reserved = 1,
    Live(T) = 2,
    /// Generation exhausted; never handed out again.
    Retired = 3,
}

#[derive(Debug)]
struct Slot<T> {
    /// IDs this slot has handed out that have since died: the live or
    /// next ID's generation is one more, so no ID is 0.
    spent: u32,
    state: State<T>,
}

impl<T> Slot<T> {
    const FREE: Slot<T> = Slot {
        spent: 0,
        state: State::Free,
    };

    fn generation(&self) -> u32 {
        self.spent + 1
    }
}

/// A slot held between allocation and finalize/abort.
#[derive(Debug)]
#[must_use = "finalize or abort the reservation"]
pub struct Reservation {
    id: ObjectId,
}

impl Reservation {
    /// The ID the object will have once finalized.
    pub fn id(&self) -> ObjectId {
        self.id
    }
}

/// A bounded table of objects of type `T`.
#[derive(Debug)]
pub struct ObjectTable<T, const N: usize> {
    slots: [Slot<T>; N],
    live: usize,
    limit: usize,
}

impl<T, const N: usize> ObjectTable<T, N> {
    /// An empty table admitting at most `limit` (<= N, <= 256) objects.
    pub const fn new(limit: usize) -> ObjectTable<T, N> {
        const {
            assert!(
                N <= 1 << INDEX_BITS,
                "object table larger than the ID index"
            )
        };
        ObjectTable {
            slots: [const { Slot::FREE }; N],
            live: 0,
            limit: if limit < N { limit } else { N },
        }
    }

    /// Empties the table in place, now admitting at most `limit` objects:
    /// a table is as large as every object it may hold, so it is never
    /// built on the stack and moved.
    pub fn reset(&mut self, limit: usize) {
        for slot in &mut self.slots {
            *slot = Slot::FREE;
        }
        self.live = 0;
        self.limit = limit.min(N);
    }

    /// Objects live or reserved.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Phase one of creation: ENOMEM when the quota or the table is full.
    pub fn reserve(&mut self) -> Result<Reservation, Errno> {
        if self.live >= self.limit {
            return Err(Errno::ENOMEM);
        }
        let index = self
            .slots
            .iter()
            .position(|s| matches!(s.state, State::Free))
            .ok_or(Errno::ENOMEM)?;
        let slot = &mut self.slots[index];
        slot.state = State::Reserved;
        self.live += 1;
        Ok(Reservation {
            id: ObjectId::new(index, slot.generation()),
        })
    }

    /// Phase two: the object becomes visible under the reserved ID.
    pub fn finalize(&mut self, reservation: Reservation, object: T) -> ObjectId {
        self.slots[reservation.id.index()].state = State::Live(object);
        reservation.id
    }

    /// Phase two, failed: the slot is free again and the ID is spent.
    pub fn abort(&mut self, reservation: Reservation) {
        self.release(reservation.id.index());
    }

    fn release(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.generation() == MAX_GENERATION {
            slot.state = State::Retired;
        } else {
            slot.spent += 1;
            slot.state = State::Free;
        }
        self.live -= 1;
    }

    fn live_index(&self, id: ObjectId) -> Result<usize, Errno> {
        let index = id.index();
        match self.slots.get(index) {
            Some(slot)
                if slot.generation() == id.generation() && matches!(slot.state, State::Live(_)) =>
            {
                Ok(index)
            }
            _ => Err(Errno::ENOENT),
        }
    }

    pub fn get(&self, id: ObjectId) -> Result<&T, Errno> {
        match &self.slots[self.live_index(id)?].state {
            State::Live(object) => Ok(object),
            _ => Err(Errno::ENOENT),
        }
    }

    pub fn get_mut(&mut self, id: ObjectId) -> Result<&mut T, Errno> {
        let index = self.live_index(id)?;
        match &mut self.slots[index].state {
            State::Live(object) => Ok(object),
            _ => Err(Errno::ENOENT),
        }
    }

    /// Two distinct live objects at once (for copies between them).
    pub fn get_pair_mut(&mut self, a: ObjectId, b: ObjectId) -> Result<(&mut T, &T), Errno> {
        let (ia, ib) = (self.live_index(a)?, self.live_index(b)?);
        if ia == ib {
            return Err(Errno::EINVAL);
        }
        let (lo, hi) = self.slots.split_at_mut(ia.max(ib));
        let (first, second) = (&mut lo[ia.min(ib)], &mut hi[0]);
        let (sa, sb) = if ia < ib {
            (first, second)
        } else {
            (second, first)
        };
        match (&mut sa.state, &sb.state) {
            (State::Live(x), State::Live(y)) => Ok((x, y)),
            _ => Err(Errno::ENOENT),
        }
    }

    /// Takes the object out; its ID is dead from now on.
    pub fn remove(&mut self, id: ObjectId) -> Result<T, Errno> {
        let index = self.live_index(id)?;
        let state = core::mem::replace(&mut self.slots[index].state, State::Free);
        self.release(index);
        match state {
            State::Live(object) => Ok(object),
            _ => Err(Errno::ENOENT),
        }
    }

    /// IDs of every live object, for teardown.
    pub fn ids(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.state {
                State::Live(_) => Some(ObjectId::new(i, s.generation())),
                _ => None,
            })
    }
}

/// Object slots per client (the quota may allow fewer); defined with the
/// configuration so the configuration checker refuses a larger quota.
pub use iommu_types::config::MAX_OBJECTS;

/// What an object ID can name. Each is small: an IOAS lives in the
/// server's [`IoasPool`] and its object holds the slot.
#[derive(Debug)]
pub enum Object {
    Ioas(IoasObject),
    Device(DeviceObject),
    Hwpt(HwptObject),
}

/// An IO address space (its slot in the [`IoasPool`]) and how many HWPTs
/// hang off it.
#[derive(Debug)]
pub struct IoasObject {
    pub(crate) slot: usize,
    pub(crate) hwpts: u32,
}

/// Storage for one IOAS of the server's pool: all zero bytes while free.
/// The IOAS is set up and torn down where it lies, never moved: it is
/// larger than a request's stack should carry.
#[derive(Debug)]
pub struct IoasSlot {
    used: bool,
    ioas: iopt::Ioas,
}

impl IoasSlot {
    pub const EMPTY: IoasSlot = IoasSlot {
        used: false,
        ioas: iopt::Ioas::UNUSED,
    };

    fn ioas(&self) -> Option<&iopt::Ioas> {
        self.used.then_some(&self.ioas)
    }

    fn ioas_mut(&mut self) -> Option<&mut iopt::Ioas> {
        self.used.then_some(&mut self.ioas)
    }
}

/// Every client's IOASes, in one pool the clients' `ioases` quotas add up
/// to; a client's object table holds only the slot numbers.
#[derive(Debug)]
pub struct IoasPool<'s> {
    slots: &'s mut [IoasSlot],
}

impl<'s> IoasPool<'s> {
    /// Takes over `slots`, all free.
    pub fn new(slots: &'s mut [IoasSlot]) -> IoasPool<'s> {
        // A slot's contents mean nothing while it is free.
        slots.iter_mut().for_each(|s| s.used = false);
        IoasPool { slots }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slots holding an IOAS.
    pub fn used(&self) -> usize {
        self.slots.iter().filter(|s| s.ioas().is_some()).count()
    }

    /// The storage back.
    pub fn into_slots(self) -> &'s mut [IoasSlot] {
        self.slots
    }

    /// A free slot: ENOMEM when none is (the configuration keeps the pool
    /// as large as the quotas add up to, so only a client past its own
    /// quota could meet this).
    pub(crate) fn free_slot(&self) -> Result<usize, Errno> {
        self.slots
            .iter()
            .position(|s| s.ioas().is_none())
            .ok_or(Errno::ENOMEM)
    }

    /// Sets up a new, empty IOAS of `client` in `slot`, which
    /// [`IoasPool::free_slot`] gave; on an error the slot stays free.
    pub(crate) fn create(
        &mut self,
        slot: usize,
        store: &iopt::Store<'_>,
        client: iopt::ClientId,
    ) -> Result<(), Errno> {
        let held = self.slots.get_mut(slot).ok_or(Errno::ENOMEM)?;
        debug_assert!(!held.used);
        store.init_ioas(&mut held.ioas, client)?;
        held.used = true;
        Ok(())
    }

    /// Destroys the IOAS in `slot` (if any) where it lies: its areas and
    /// domains go back, and the slot is free.
    pub(crate) fn destroy(
        &mut self,
        slot: usize,
        store: &mut iopt::Store<'_>,
        doms: &mut dyn iopt::DomainTable,
    ) {
        if let Some(held) = self.slots.get_mut(slot).filter(|h| h.used) {
            held.ioas.tear_down(store, doms);
            held.used = false;
        }
    }

    pub(crate) fn get(&self, slot: usize) -> Result<&iopt::Ioas, Errno> {
        self.slots
            .get(slot)
            .and_then(IoasSlot::ioas)
            .ok_or(Errno::ENOENT)
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> Result<&mut iopt::Ioas, Errno> {
        self.slots
            .get_mut(slot)
            .and_then(IoasSlot::ioas_mut)
            .ok_or(Errno::ENOENT)
    }

    /// Two distinct IOASes at once (for copies between them).
    pub(crate) fn get_pair_mut(
        &mut self,
        a: usize,
        b: usize,
    ) -> Result<(&mut iopt::Ioas, &iopt::Ioas), Errno> {
        if a == b || a >= self.slots.len() || b >= self.slots.len() {
            return Err(Errno::EINVAL);
        }
        let (lo, hi) = self.slots.split_at_mut(a.max(b));
        let (first, second) = (&mut lo[a.min(b)], &mut hi[0]);
        let (sa, sb) = if a < b {
            (first, second)
        } else {
            (second, first)
        };
        match (sa.ioas_mut(), sb.ioas()) {
            (Some(x), Some(y)) => Ok((x, y)),
            _ => Err(Errno::ENOENT),
        }
    }
}

/// A bound device: which of the client's configured devices, and the HWPT
/// it is attached to.
#[derive(Debug)]
pub struct DeviceObject {
    /// Its index in the client's configuration, the name BIND takes.
    pub(crate) index: usize,
    pub(crate) stream: StreamId,
    pub(crate) hwpt: Option<ObjectId>,
}

/// A hardware page table mirroring one IOAS.
#[derive(Debug)]
pub struct HwptObject {
    pub(crate) ioas: ObjectId,
    pub(crate) domain: DomainId,
    /// Created by an attach to an IOAS (reused by later ones, freed with
    /// its last device) rather than by HWPT_ALLOC.
    pub(crate) auto: bool,
    pub(crate) devices: u32,
}

/// A client's objects.
pub type Objects = ObjectTable<Object, MAX_OBJECTS>;

// Lookups by kind: ENOENT when the ID names nothing of this client's or
// an object of another kind, as Linux's typed `iommufd_get_object`.
impl<const N: usize> ObjectTable<Object, N> {
    pub(crate) fn ioas(&self, id: ObjectId) -> Result<&IoasObject, Errno> {
        match self.get(id)? {
            Object::Ioas(o) => Ok(o),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn ioas_mut(&mut self, id: ObjectId) -> Result<&mut IoasObject, Errno> {
        match self.get_mut(id)? {
            Object::Ioas(o) => Ok(o),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn hwpt_mut(&mut self, id: ObjectId) -> Result<&mut HwptObject, Errno> {
        match self.get_mut(id)? {
            Object::Hwpt(h) => Ok(h),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn device(&self, id: ObjectId) -> Result<&DeviceObject, Errno> {
        match self.get(id)? {
            Object::Device(d) => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    pub(crate) fn device_mut(&mut self, id: ObjectId) -> Result<&mut DeviceObject, Errno> {
        match self.get_mut(id)? {
            Object::Device(d) => Ok(d),
            _ => Err(Errno::ENOENT),
        }
    }

    /// HWPTs the client holds.
    pub(crate) fn hwpts(&self) -> usize {
        self.ids()
            .filter(|&id| matches!(self.get(id), Ok(Object::Hwpt(_))))
            .count()
    }

    /// The bound device object for configured device `index`, if bound.
    pub(crate) fn bound_device(&self, index: usize) -> Option<ObjectId> {
        self.ids()
            .find(|&id| matches!(self.get(id), Ok(Object::Device(d)) if d.index == index))
    }

    /// The automatic HWPT over IOAS `ioas`, if there is one.
    pub(crate) fn auto_hwpt(&self, ioas: ObjectId) -> Option<ObjectId> {
        self.ids()
            .find(|&id| matches!(self.get(id), Ok(Object::Hwpt(h)) if h.auto && h.ioas == ioas))
    }

    /// IOASes the client holds.
    pub(crate) fn ioases(&self) -> usize {
        self.ids()
            .filter(|&id| matches!(self.get(id), Ok(Object::Ioas(_))))
            .count()
    }

    /// DESTROY: any object not in use (EBUSY otherwise: an IOAS with
    /// HWPTs, a HWPT or device with attachments). Destroying a device
    /// unbinds it.
    pub(crate) fn destroy(
        &mut self,
        id: ObjectId,
        store: &mut Store<'_>,
        pool: &mut IoasPool<'_>,
        hw: &mut impl Hardware,
    ) -> Result<(), Errno> {
        match self.get(id)? {
            Object::Ioas(o) if o.hwpts > 0 => Err(Errno::EBUSY),
            Object::Hwpt(h) if h.devices > 0 => Err(Errno::EBUSY),
            Object::Device(d) if d.hwpt.is_some() => Err(Errno::EBUSY),
            Object::Hwpt(_) => {
                self.destroy_hwpt(id, store, pool, hw);
                Ok(())
            }
            Object::Ioas(_) | Object::Device(_) => {
                if let Object::Ioas(o) = self.remove(id)? {
                    pool.destroy(o.slot, store, hw.domains());
                }
                Ok(())
            }
        }
    }

    /// Removes a HWPT no device uses: its domain is emptied, detached from
    /// the IOAS and freed.
    pub(crate) fn destroy_hwpt(
        &mut self,
        id: ObjectId,
        store: &mut Store<'_>,
        pool: &mut IoasPool<'_>,
        hw: &mut impl Hardware,
    ) {
        let Ok(Object::Hwpt(hwpt)) = self.remove(id) else {
            return;
        };
        if let Ok(o) = self.ioas_mut(hwpt.ioas) {
            if let Ok(ioas) = pool.get_mut(o.slot) {
                let _ = ioas.detach_domain(store, hw.domains(), hwpt.domain);
            }
            o.hwpts = o.hwpts.saturating_sub(1);
        }
        hw.domain_free(hwpt.domain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_die_with_their_objects() {
        let mut t: ObjectTable<u32, 4> = ObjectTable::new(4);
        let r = t.reserve().unwrap();
        assert_eq!(
            t.get(r.id()),
            Err(Errno::ENOENT),
            "invisible until finalized"
        );
        let a = t.finalize(r, 7);
        assert_ne!(a.0, 0);
        assert_eq!(t.get(a), Ok(&7));
        assert_eq!(t.remove(a), Ok(7));
        assert_eq!(t.get(a), Err(Errno::ENOENT));
        let b = {
            let r = t.reserve().unwrap();
            t.finalize(r, 8)
        };
        assert_eq!(b.index(), a.index(), "slot reused");
        assert_ne!(b, a, "but never the ID");
        assert_eq!(t.get(a), Err(Errno::ENOENT));
        assert_eq!(t.get(ObjectId(0)), Err(Errno::ENOENT));
        assert_eq!(t.get(ObjectId(0xffff_ff03)), Err(Errno::ENOENT));
    }

    #[test]
    fn quota_and_abort() {
        let mut t: ObjectTable<u32, 4> = ObjectTable::new(2);
        let a = t.reserve().unwrap();
        let b = t.reserve().unwrap();
        assert_eq!(t.reserve().err(), Some(Errno::ENOMEM));
        let spent = b.id();
        t.abort(b);
        assert_eq!(t.len(), 1);
        let c = {
            let r = t.reserve().unwrap();
            t.finalize(r, 3)
        };
        assert_ne!(c, spent, "an aborted ID is spent too");
        t.finalize(a, 1);
        assert_eq!(t.ids().count(), 2);
    }

    #[test]
    fn exhausted_slots_retire() {
        let mut t: ObjectTable<u32, 1> = ObjectTable::new(1);
        t.slots[0].spent = MAX_GENERATION - 1;
        let last = {
            let r = t.reserve().unwrap();
            t.finalize(r, 1)
        };
        t.remove(last).unwrap();
        assert_eq!(t.reserve().err(), Some(Errno::ENOMEM), "never reused");
    }

    #[test]
    fn pairs_are_distinct() {
        let mut t: ObjectTable<u32, 4> = ObjectTable::new(4);
        let a = {
            let r = t.reserve().unwrap();
            t.finalize(r, 1)
        };
        let b = {
            let r = t.reserve().unwrap();
            t.finalize(r, 2)
        };
        let (x, y) = t.get_pair_mut(b, a).unwrap();
        assert_eq!((*x, *y), (2, 1));
        assert_eq!(t.get_pair_mut(a, a).err(), Some(Errno::EINVAL));
    }
}
