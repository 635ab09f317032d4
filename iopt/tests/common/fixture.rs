//! The fixture of the IOAS tests: one IOAS over a fresh store and a
//! table of mock domains, and the calls every test makes.

use iommu_testkit::Lent;
use iopt::{ClientId, DomainId, DstIova, Errno, Extent, Ioas, IovaRange, Prot, Store};

use super::*;

pub const RW: Prot = Prot::READ.union(Prot::WRITE);
/// Physical memory the tests map; 1 GiB aligned so blocks are possible.
pub const PHYS: u64 = 0x80_0000_0000;

/// Areas, quota used, each domain's layout, free nodes, free backings.
pub type Snapshot = (Vec<(u64, u64)>, u64, Vec<Vec<(u64, u64)>>, usize, usize);

pub struct Fx {
    pub store: Lent<Store<'static>>,
    pub doms: Domains,
    pub ioas: Ioas,
}

impl Fx {
    pub fn new() -> Fx {
        Fx::with_store(store(256, 256, 2))
    }

    pub fn with_store(store: Lent<Store<'static>>) -> Fx {
        let ioas = store.new_ioas(ClientId(0)).unwrap();
        Fx {
            store,
            doms: Domains::none(),
            ioas,
        }
    }

    pub fn map_at(&mut self, phys: u64, len: u64, dst: DstIova) -> Result<u64, Errno> {
        self.map_full(&[Extent { phys, len }], phys, true, dst, RW)
    }

    pub fn map_full(
        &mut self,
        ext: &[Extent],
        source: u64,
        writable: bool,
        dst: DstIova,
        prot: Prot,
    ) -> Result<u64, Errno> {
        self.ioas.map(
            &mut self.store,
            &mut self.doms,
            ext,
            source,
            writable,
            dst,
            prot,
        )
    }

    pub fn map_fixed(&mut self, iova: u64, len: u64) -> Result<u64, Errno> {
        self.map_at(PHYS + iova % G1, len, DstIova::Fixed(iova))
    }

    pub fn map_auto(&mut self, len: u64) -> Result<u64, Errno> {
        self.map_at(PHYS, len, DstIova::Auto)
    }

    pub fn unmap(&mut self, iova: u64, len: u64) -> Result<u64, Errno> {
        self.ioas.unmap(&mut self.store, &mut self.doms, iova, len)
    }

    pub fn attach(&mut self, id: u32) -> Result<(), Errno> {
        self.ioas
            .attach_domain(&mut self.store, &mut self.doms, DomainId(id))
    }

    pub fn detach(&mut self, id: u32) -> Result<(), Errno> {
        self.ioas
            .detach_domain(&mut self.store, &mut self.doms, DomainId(id))
    }

    pub fn areas(&self) -> Vec<(u64, u64)> {
        self.ioas
            .areas(&self.store)
            .map(|a| (a.iova, a.last))
            .collect()
    }

    pub fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out = [IovaRange::ALL; 16];
        let info = self.ioas.iova_ranges(&mut out);
        out[..info.total]
            .iter()
            .map(|r| (r.start, r.last))
            .collect()
    }

    pub fn used(&self) -> u64 {
        self.store.account(ClientId(0)).unwrap().used
    }

    /// Asserts a failed call left areas, quota and domains untouched.
    pub fn snapshot(&self) -> Snapshot {
        (
            self.areas(),
            self.used(),
            self.doms.0.iter().map(|d| d.layout()).collect(),
            self.store.areas_free(),
            self.store.pages_free(),
        )
    }
}
