//! What the iopt benches share: an engine with no domain attached, so they
//! measure the IOVA bookkeeping alone.

use iopt::{Account, AreaSlot, ClientId, DomainId, DomainTable, IoDomain, Ioas, PagesSlot, Store};

/// No domain attached.
pub struct NoDomains;

impl DomainTable for NoDomains {
    fn domain(&mut self, _: DomainId) -> Option<&mut dyn IoDomain> {
        None
    }
}

/// A store for `live` areas (and a little headroom) with one unlimited
/// account, and one IOAS in it. A run builds several: their storage lives
/// as long as the process.
pub fn leaked_engine(live: usize) -> (Store<'static>, Ioas) {
    let store = Store::new(
        Box::leak(vec![AreaSlot::EMPTY; live + 8].into_boxed_slice()),
        Box::leak(vec![PagesSlot::EMPTY; live + 8].into_boxed_slice()),
        Box::leak(vec![Account::UNLIMITED; 1].into_boxed_slice()),
    );
    let ioas = store.new_ioas(ClientId(0)).unwrap();
    (store, ioas)
}
