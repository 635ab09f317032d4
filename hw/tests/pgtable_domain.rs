//! `PtDomain` as an `iopt::IoDomain`: attached to an IOAS, every map, unmap,
//! attach and detach of the engine must land in the page table as the
//! walker sees it, with one TLB flush per unmap that removed something;
//! freed tables become free only when that flush succeeded.

mod common;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::*;
use hw::pgtable::{
    Format, Gather, InvRange, IoPageTable, MemAttr, PtDomain, TablePool, TlbFlush, UnmapRefusal,
};
use iommu_testkit::Lent;
use iopt::{
    ClientId, DomainId, DomainTable, DstIova, Errno, Extent, IoDomain, Ioas, IovaRange, Prot,
    Store, Unconfirmed,
};

const PHYS: u64 = 0x40_0000_0000;
const DOM: DomainId = DomainId(0);

/// Every flush: the runs and the overflow flag.
type Flushes = RefCell<Vec<(Vec<InvRange>, bool)>>;

struct Recorder<'r>(&'r Flushes);

impl TlbFlush for Recorder<'_> {
    fn flush(&mut self, gather: &Gather) -> Result<(), Errno> {
        self.0
            .borrow_mut()
            .push((gather.runs().to_vec(), gather.overflowed()));
        Ok(())
    }
}

/// A flusher whose invalidation never completes (a CMD_SYNC timeout, say).
struct Failing<'r>(&'r Flushes);

impl TlbFlush for Failing<'_> {
    fn flush(&mut self, gather: &Gather) -> Result<(), Errno> {
        self.0
            .borrow_mut()
            .push((gather.runs().to_vec(), gather.overflowed()));
        Err(Errno::EBUSY)
    }
}

/// The tables the walker reaches from the domain's root, root included.
fn tables(dom: &PtDomain<'_, '_>) -> Vec<u64> {
    let f = dom.pt.format();
    Walker::new(&*dom.pool, dom.pt.root_phys(), f.ias, f.oas)
        .enumerate()
        .unwrap()
        .1
}

/// The single domain of these tests, as the engine resolves it.
struct One<'x, 'a>(PtDomain<'x, 'a>);

impl DomainTable for One<'_, '_> {
    fn domain(&mut self, id: DomainId) -> Option<&mut dyn IoDomain> {
        (id == DOM).then_some(&mut self.0 as &mut dyn IoDomain)
    }
}

fn store() -> Lent<Store<'static>> {
    iommu_testkit::store(64, 64, 1)
}

fn map(
    ioas: &mut Ioas,
    store: &mut Store<'_>,
    doms: &mut One<'_, '_>,
    iova: u64,
    phys: u64,
    len: u64,
    prot: Prot,
) -> Result<u64, Errno> {
    ioas.map(
        store,
        doms,
        &[Extent { phys, len }],
        phys,
        true,
        DstIova::Fixed(iova),
        prot,
    )
}

/// (iova, pa, size) of every leaf in the domain's table.
fn leaves(doms: &One<'_, '_>) -> Vec<(u64, u64, u64)> {
    let d = &doms.0;
    let f = d.pt.format();
    layout(d.pool, d.pt.root_phys(), f.ias, f.oas)
        .into_iter()
        .map(|(iova, pa, size, _)| (iova, pa, size))
        .collect()
}

fn table(pool: &mut TablePool<'_>, ias: u32) -> IoPageTable {
    IoPageTable::new(
        pool,
        Format {
            ias,
            oas: 48,
            mem: MemAttr::WriteBack,
        },
    )
    .unwrap()
}

#[test]
fn engine_maps_and_unmaps_through_the_table() {
    let (mut pool, ram) = ram_pool(32);
    let mut pt = table(&mut pool, 48);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut doms = One(PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    });
    let mut store = store();
    let mut ioas = store.new_ioas(ClientId(0)).unwrap();

    assert_eq!(doms.0.page_sizes(), K4 | M2 | G1);
    assert_eq!(doms.0.aperture(), IovaRange::new(0, (1 << 48) - 1));
    ioas.attach_domain(&mut store, &mut doms, DOM).unwrap();

    // 8 KiB, two 2 MiB blocks, 4 KiB: the engine picks the largest page
    // each stretch allows and the table holds exactly those leaves.
    let iova = 3 * M2 - 2 * K4;
    let len = 2 * K4 + 2 * M2 + K4;
    let phys = PHYS + iova;
    map(
        &mut ioas,
        &mut store,
        &mut doms,
        iova,
        phys,
        len,
        Prot::READ,
    )
    .unwrap();
    assert_eq!(
        leaves(&doms),
        vec![
            (iova, phys, K4),
            (iova + K4, phys + K4, K4),
            (3 * M2, PHYS + 3 * M2, M2),
            (4 * M2, PHYS + 4 * M2, M2),
            (5 * M2, PHYS + 5 * M2, K4),
        ]
    );
    let f = doms.0.pt.format();
    let walker = Walker::new(&*doms.0.pool, doms.0.pt.root_phys(), f.ias, f.oas);
    for leaf in walker.enumerate().unwrap().0 {
        assert_attrs(&leaf, Prot::READ, MemAttr::WriteBack);
    }
    for probe in [iova, 3 * M2 + 0x1_2345, 5 * M2 + 0xfff] {
        let want = ioas.translate(&store, probe);
        assert_eq!(want, Some(PHYS + probe));
        assert_eq!(doms.0.iova_to_phys(probe), want);
        let leaf = walker.translate(probe).unwrap();
        assert_eq!(leaf.pa + (probe - leaf.iova), PHYS + probe);
    }
    assert!(flushes.borrow().is_empty());

    // A second area, then unmapping the first: one flush with one run.
    let other = 1 << 40;
    map(&mut ioas, &mut store, &mut doms, other, PHYS, 16 * K4, RW).unwrap();
    assert_eq!(ioas.unmap(&mut store, &mut doms, iova, len), Ok(len));
    assert_eq!(
        *flushes.borrow(),
        vec![(
            vec![InvRange {
                iova,
                len,
                leaf_only: false
            }],
            false
        )]
    );
    assert_eq!(leaves(&doms).len(), 16);
    ram.assert_matches(doms.0.pool);

    // Unmapping everything: one more flush; only the root remains.
    assert_eq!(ioas.unmap(&mut store, &mut doms, 0, u64::MAX), Ok(16 * K4));
    assert_eq!(flushes.borrow().len(), 2);
    assert_eq!(
        flushes.borrow()[1].0,
        vec![InvRange {
            iova: other,
            len: 16 * K4,
            leaf_only: false
        }]
    );
    assert!(leaves(&doms).is_empty());
    assert_eq!(doms.0.pool.used(), 1);
    assert_eq!(doms.0.pt.tables_used(), 1);
}

#[test]
fn attach_fills_and_detach_empties() {
    let (mut pool, ram) = ram_pool(32);
    let mut pt = table(&mut pool, 39);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut doms = One(PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    });
    let mut store = store();
    let mut ioas = store.new_ioas(ClientId(0)).unwrap();

    // Areas first, then the domain: attach maps them all.
    map(&mut ioas, &mut store, &mut doms, G1, PHYS, G1, RW).unwrap();
    map(&mut ioas, &mut store, &mut doms, 4 * G1, PHYS, 3 * K4, RW).unwrap();
    ioas.attach_domain(&mut store, &mut doms, DOM).unwrap();
    assert_eq!(
        leaves(&doms),
        vec![
            (G1, PHYS, G1),
            (4 * G1, PHYS, K4),
            (4 * G1 + K4, PHYS + K4, K4),
            (4 * G1 + 2 * K4, PHYS + 2 * K4, K4),
        ]
    );
    // The aperture ends at 2^39: the engine reserves what lies beyond.
    assert_eq!(
        map(&mut ioas, &mut store, &mut doms, 1 << 39, PHYS, K4, RW),
        Err(Errno::EINVAL)
    );

    ioas.detach_domain(&mut store, &mut doms, DOM).unwrap();
    assert!(leaves(&doms).is_empty());
    assert_eq!(doms.0.pool.used(), 1);
    assert_eq!(flushes.borrow().len(), 1, "one unmap_pages, one flush");
    assert!(flushes.borrow()[0].0.iter().any(|r| !r.leaf_only));
    ram.assert_matches(doms.0.pool);
}

#[test]
fn table_out_of_memory_rolls_the_engine_back() {
    // Root plus three tables: one 4 KiB region's worth.
    let (mut pool, _ram) = ram_pool(4);
    let mut pt = table(&mut pool, 48);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut doms = One(PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    });
    let mut store = store();
    let mut ioas = store.new_ioas(ClientId(0)).unwrap();
    ioas.attach_domain(&mut store, &mut doms, DOM).unwrap();

    map(&mut ioas, &mut store, &mut doms, 0, PHYS, K4, RW).unwrap();
    let before = leaves(&doms);
    // Needs new level-2 and level-3 tables.
    assert_eq!(
        map(&mut ioas, &mut store, &mut doms, 2 * G1, PHYS, K4, RW),
        Err(Errno::ENOMEM)
    );
    assert_eq!(leaves(&doms), before);
    assert_eq!(ioas.area_count(), 1);
    // A failed map was never visible, so nothing was flushed.
    assert!(flushes.borrow().is_empty());
    // Fits in the existing level-3 table.
    map(&mut ioas, &mut store, &mut doms, K4, PHYS, 4 * K4, RW).unwrap();
    assert_eq!(leaves(&doms).len(), 5);
}

#[test]
fn unmap_pages_flushes_once_and_only_when_needed() {
    let (mut pool, _ram) = ram_pool(16);
    let mut pt = table(&mut pool, 48);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut dom = PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    };
    for i in 0..20 {
        dom.map_pages(2 * i * K4, PHYS, K4, 1, RW).unwrap();
    }
    // Nothing there: no flush.
    assert_eq!(dom.unmap_pages(G1, G1), Ok(0));
    assert!(flushes.borrow().is_empty());
    // Twenty separate runs in one call: one flush, overflowed.
    assert_eq!(dom.unmap_pages(0, M2), Ok(20 * K4));
    assert_eq!(flushes.borrow().len(), 1);
    assert!(flushes.borrow()[0].1);
    // Everything past the aperture, as the engine sends for "all".
    assert_eq!(dom.unmap_pages(1 << 63, 1 << 63), Ok(0));
    assert_eq!(flushes.borrow().len(), 1);
    // The flush succeeded: the freed tables are free again.
    assert_eq!(dom.pool.used(), 1);
    assert_eq!((dom.pool.pending(), dom.pool.leaked()), (0, 0));
    assert_eq!(dom.pool.free(), 15);
    assert_eq!(dom.pt.unmap_refusals(), 0);
    assert_eq!(
        dom.map_pages(0, PHYS, K4, 1, Prot::empty()),
        Err(Errno::EINVAL)
    );
}

/// The engine never splits a block; if asked to, `unmap_pages` changes
/// nothing and, in debug builds, says so loudly (in every build it records
/// the refusal: see the next test).
#[test]
#[cfg_attr(debug_assertions, should_panic(expected = "refused"))]
fn unmap_pages_splitting_a_block_is_a_caller_bug() {
    let (mut pool, _ram) = ram_pool(8);
    let mut pt = table(&mut pool, 48);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut dom = PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    };
    dom.map_pages(0, PHYS, M2, 1, RW).unwrap();
    assert_eq!(dom.unmap_pages(0, K4), Ok(0));
    assert_eq!(dom.iova_to_phys(K4), Some(PHYS + K4));
    assert!(flushes.borrow().is_empty());
}

#[test]
fn huge_pages_off_maps_only_pages() {
    let (mut pool, _ram) = ram_pool(16);
    let mut pt = table(&mut pool, 48);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut doms = One(PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    });
    let mut store = store();
    let mut ioas = store.new_ioas(ClientId(0)).unwrap();
    ioas.set_huge_pages(&store, false).unwrap();
    ioas.attach_domain(&mut store, &mut doms, DOM).unwrap();
    map(&mut ioas, &mut store, &mut doms, M2, PHYS, M2, RW).unwrap();
    let got = leaves(&doms);
    assert_eq!(got.len(), 512);
    assert!(got.iter().all(|&(_, _, size)| size == K4));
    assert_eq!(ioas.unmap(&mut store, &mut doms, M2, M2), Ok(M2));
    assert_eq!(flushes.borrow().len(), 1);
    assert_eq!(
        flushes.borrow()[0].0,
        vec![InvRange {
            iova: M2,
            len: M2,
            leaf_only: false
        }]
    );
}

/// A refused unmap returns 0 in every build, and the table records it so
/// that the caller can notice the engine and the table disagree.
#[test]
fn unmap_pages_records_every_refusal() {
    let (mut pool, _ram) = ram_pool(8);
    let mut pt = table(&mut pool, 48);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut dom = PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    };
    dom.map_pages(0, PHYS, M2, 1, RW).unwrap();
    dom.map_pages(M2, PHYS, K4, 1, RW).unwrap();
    assert_eq!(
        (dom.pt.unmap_refusals(), dom.pt.last_unmap_refusal()),
        (0, None)
    );

    // Debug builds panic after recording; release builds return 0.
    fn refuse(dom: &mut PtDomain<'_, '_>, iova: u64, length: u64) {
        let outcome = catch_unwind(AssertUnwindSafe(|| dom.unmap_pages(iova, length)));
        assert_eq!(outcome.is_err(), cfg!(debug_assertions), "{outcome:?}");
        if let Ok(bytes) = outcome {
            assert_eq!(bytes, Ok(0));
        }
    }
    refuse(&mut dom, K4, K4);
    assert_eq!(dom.pt.unmap_refusals(), 1);
    assert_eq!(
        dom.pt.last_unmap_refusal(),
        Some(UnmapRefusal {
            iova: K4,
            length: K4,
            errno: Errno::EINVAL
        })
    );
    // Takes the page at 2 MiB and would split nothing there, but starts
    // inside the block: refused whole.
    refuse(&mut dom, M2 - K4, 2 * K4);
    assert_eq!(dom.pt.unmap_refusals(), 2);
    assert_eq!(
        dom.pt.last_unmap_refusal(),
        Some(UnmapRefusal {
            iova: M2 - K4,
            length: 2 * K4,
            errno: Errno::EINVAL
        })
    );
    // Malformed requests are refusals too.
    refuse(&mut dom, 0x800, K4);
    assert_eq!(dom.pt.unmap_refusals(), 3);
    assert_eq!(dom.pt.last_unmap_refusal().unwrap().iova, 0x800);

    // Nothing changed and nothing was flushed.
    assert_eq!(dom.iova_to_phys(K4), Some(PHYS + K4));
    assert_eq!(dom.iova_to_phys(M2), Some(PHYS));
    assert!(flushes.borrow().is_empty());
    // A good unmap afterwards works and keeps the record.
    assert_eq!(dom.unmap_pages(0, 2 * M2), Ok(M2 + K4));
    assert_eq!(dom.pt.unmap_refusals(), 3);
    assert_eq!(dom.pool.used(), 1);
}

/// When the invalidation fails, the table pages that unmap freed may still
/// be reachable through the walk caches: they are leaked, never reused, and
/// only they are.
#[test]
fn a_failed_flush_leaks_exactly_the_freed_tables() {
    let (mut pool, ram) = ram_pool(12);
    let mut pt = table(&mut pool, 48);
    ram.roots.lock().unwrap().push((pt.root_phys(), 48, 48));
    let flushes = Flushes::default();
    let mut tlb = Failing(&flushes);
    let mut dom = PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    };
    // Root, level 1; level 2 + 3 under 0 and another pair under 1 GiB.
    dom.map_pages(0, PHYS, K4, 2, RW).unwrap();
    dom.map_pages(G1, PHYS, K4, 1, RW).unwrap();
    assert_eq!(dom.pool.used(), 6);

    // Frees no table: nothing to leak, though the flush failed.
    assert_eq!(dom.unmap_pages(0, K4), Err(Unconfirmed { bytes: K4 }));
    assert_eq!(flushes.borrow().len(), 1);
    assert_eq!((dom.pool.pending(), dom.pool.leaked()), (0, 0));

    // Frees the level-3 and level-2 tables under 0: exactly those leak,
    // and the unmapped bytes are still reported, as unconfirmed.
    let before = tables(&dom);
    assert_eq!(dom.unmap_pages(K4, K4), Err(Unconfirmed { bytes: K4 }));
    assert_eq!(flushes.borrow().len(), 2);
    let after = tables(&dom);
    let freed: Vec<u64> = before
        .iter()
        .copied()
        .filter(|t| !after.contains(t))
        .collect();
    assert_eq!(freed.len(), 2);
    assert_eq!((dom.pool.pending(), dom.pool.leaked()), (0, 2));
    assert_eq!(dom.pt.tables_used(), 4);
    assert_eq!(dom.pool.used(), 6);
    assert_eq!(dom.pool.free(), 6);
    assert_eq!(dom.iova_to_phys(K4), None);
    assert_eq!(dom.pt.unmap_refusals(), 0);
    ram.assert_matches(dom.pool);

    // Maps until the pool is exhausted never get a leaked page back.
    let mut at = 0;
    while dom.map_pages(at, PHYS, K4, 1, RW).is_ok() {
        at += G1 << 9;
    }
    assert!(dom.pool.free() < 3);
    let now = tables(&dom);
    assert!(now.iter().all(|t| !freed.contains(t)), "leaked page reused");
    assert_eq!(now.len() + 2 + dom.pool.free(), 12);
    // Later failed flushes leak only what they free.
    assert_eq!(dom.unmap_pages(0, K4), Err(Unconfirmed { bytes: K4 }));
    assert_eq!(dom.pool.leaked(), 4);
}

#[test]
fn the_engine_cannot_map_the_page_table_pool() {
    let (mut pool, _ram) = ram_pool(8);
    let mut pt = table(&mut pool, 48);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut doms = One(PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    });
    let mut store = store();
    let mut ioas = store.new_ioas(ClientId(0)).unwrap();
    ioas.attach_domain(&mut store, &mut doms, DOM).unwrap();
    let base = doms.0.pool.phys_base();
    // Some ordinary memory first, then the pool in the same request.
    assert_eq!(
        map(
            &mut ioas,
            &mut store,
            &mut doms,
            0,
            base - 4 * K4,
            5 * K4,
            RW
        ),
        Err(Errno::EINVAL)
    );
    assert_eq!(ioas.area_count(), 0);
    assert!(leaves(&doms).is_empty());
    map(
        &mut ioas,
        &mut store,
        &mut doms,
        0,
        base - 4 * K4,
        4 * K4,
        RW,
    )
    .unwrap();
    assert_eq!(leaves(&doms).len(), 4);
}

/// Pages another caller freed with a direct `unmap` and has not flushed are
/// not covered by this domain's flush: `unmap_pages` leaks them rather than
/// commit them (debug builds also panic: it is a caller bug).
#[test]
fn unmap_pages_never_commits_someone_elses_pending_pages() {
    let (mut pool, _ram) = ram_pool(16);
    let mut other = table(&mut pool, 48);
    other.map(&mut pool, 0, PHYS, K4, 1, RW).unwrap();
    other.unmap(&mut pool, 0, K4, &mut Gather::new()).unwrap();
    assert_eq!(pool.pending(), 3);

    let mut pt = table(&mut pool, 48);
    let flushes = Flushes::default();
    let mut tlb = Recorder(&flushes);
    let mut dom = PtDomain {
        pt: &mut pt,
        pool: &mut pool,
        tlb: &mut tlb,
    };
    dom.map_pages(G1, PHYS, K4, 1, RW).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| dom.unmap_pages(G1, K4)));
    assert_eq!(outcome.is_err(), cfg!(debug_assertions), "{outcome:?}");
    assert_eq!((dom.pool.pending(), dom.pool.leaked()), (0, 3));
    if let Ok(bytes) = outcome {
        // Release builds go on with the unmap, whose own tables are
        // committed after the flush.
        assert_eq!(bytes, Ok(K4));
        assert_eq!(dom.pool.used(), 2 + 3);
    }
}
