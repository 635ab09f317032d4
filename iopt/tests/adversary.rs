//! A hostile client's layouts cost what their work costs: O(log n) nodes
//! visited per request at 10^4 and 10^5 areas, counted (not timed), and a
//! tree no insertion order can make deeper than AVL's bound.

mod common;

use common::fixture::*;
use common::*;
use iopt::DstIova;

const K8: u64 = 2 * K4;
const K16: u64 = 4 * K4;

fn log2(n: usize) -> f64 {
    (n as f64).log2()
}

/// AVL's height bound, 1.44 log2(n + 2).
fn assert_shallow(fx: &Fx, n: usize) {
    let height = fx.ioas.tree_height(&fx.store);
    let bound = 1.4405 * ((n + 2) as f64).log2();
    assert!(
        f64::from(height) <= bound,
        "{n} areas: height {height} above {bound:.1}"
    );
}

/// Visits of one fixed map + unmap pair and of one automatic map + unmap
/// pair on `fx` with `n` areas, each checked against c log2 n.
fn assert_requests_cost_log_n(fx: &mut Fx, n: usize, fixed_at: u64) {
    let bound = (16.0 * log2(n)) as u64;
    let before = fx.store.tree_visits();
    fx.map_fixed(fixed_at, K4).unwrap();
    fx.unmap(fixed_at, K4).unwrap();
    let fixed = fx.store.tree_visits() - before;
    assert!(
        fixed <= bound,
        "{n} areas: fixed map+unmap visited {fixed} > {bound}"
    );
    let before = fx.store.tree_visits();
    let iova = fx.map_auto(K4).unwrap();
    fx.unmap(iova, K4).unwrap();
    let auto = fx.store.tree_visits() - before;
    assert!(
        auto <= bound,
        "{n} areas: auto map+unmap visited {auto} > {bound}"
    );
}

fn fixture(n: usize) -> Fx {
    Fx::with_store(store(n + 16, n + 16, 2))
}

/// The layout that turned the old treap into a chain: fixed IOVAs in
/// order (ascending, descending and from both ends inwards).
#[test]
fn no_insertion_order_deepens_the_tree() {
    for n in [10_000usize, 100_000] {
        let orders: [Box<dyn Fn(usize) -> u64>; 3] = [
            Box::new(|i| i as u64),
            Box::new(move |i| (n - 1 - i) as u64),
            Box::new(move |i| {
                if i % 2 == 0 {
                    (i / 2) as u64
                } else {
                    (n - 1 - i / 2) as u64
                }
            }),
        ];
        for order in orders {
            let mut fx = fixture(n);
            for i in 0..n {
                fx.map_fixed(K16 + order(i) * K8, K4).unwrap();
            }
            assert_shallow(&fx, n);
            assert_requests_cost_log_n(&mut fx, n, K16 + (n as u64 + 8) * K8);
            // Removing every other area keeps the balance.
            for i in (0..n).step_by(2) {
                fx.unmap(K16 + i as u64 * K8, K4).unwrap();
            }
            assert_shallow(&fx, n / 2);
            fx.ioas.check(&fx.store).unwrap();
        }
    }
}

/// Every hole long enough for the request but misaligned for it (8 KiB
/// holes at 4 KiB mod 8 KiB, 8 KiB maps from an 8 KiB-aligned source):
/// exact first fit would visit every hole; the budget bounds the search and
/// the fallback finds the first hole that fits any alignment.
#[test]
fn alignment_defeating_holes_cost_log_n() {
    for n in [10_000usize, 100_000] {
        let mut fx = fixture(n);
        // Areas [16K i + 12K, 16K i + 20K): every hole is 8 KiB at 4 KiB
        // mod 8 KiB, the first one [4K, 12K) included.
        for i in 0..n as u64 {
            fx.map_fixed(K16 * i + 3 * K4, K8).unwrap();
        }
        // The tail hole starts at 16K n + 4K; its first 8 KiB-aligned start.
        let top = K16 * n as u64 + K8;
        let before = fx.store.tree_visits();
        let iova = fx.map_auto(K8).unwrap();
        let cost = fx.store.tree_visits() - before;
        let bound = (16.0 * log2(n)) as u64;
        assert!(
            cost <= bound,
            "{n} areas: auto map visited {cost} > {bound}"
        );
        assert_eq!(iova % K8, 0, "aligned");
        assert_eq!(
            iova, top,
            "the first place any 8 KiB-aligned map fits, as Linux picks"
        );
        fx.unmap(iova, K8).unwrap();
        fx.ioas.check(&fx.store).unwrap();
    }
}

/// Where few holes are defeated, placement is exactly Linux's first fit.
#[test]
fn a_few_defeated_holes_still_give_first_fit() {
    let mut fx = fixture(64);
    for i in 0..8u64 {
        fx.map_fixed(K16 * i + 3 * K4, K8).unwrap();
    }
    // An aligned 8 KiB hole after the defeated ones, and room at the top.
    // A 24 KiB hole after the defeated ones, then one more area.
    fx.map_fixed(K16 * 9 + 3 * K4, K8).unwrap();
    let iova = fx.map_auto(K8).unwrap();
    assert_eq!(iova, K16 * 8 + K8, "the lowest aligned fit");
}

/// The fallback answers only what fits: an IOAS whose free space is all
/// in defeated holes is ENOSPC, as it is for Linux once no hole fits.
#[test]
fn the_fallback_never_places_over_an_area() {
    let mut fx = fixture(300);
    for i in 0..256u64 {
        fx.map_fixed(K16 * i + 3 * K4, K8).unwrap();
    }
    let mut placed: Vec<u64> = Vec::new();
    for _ in 0..4 {
        let iova = fx
            .ioas
            .map(
                &mut fx.store,
                &mut fx.doms,
                &[iopt::Extent {
                    phys: PHYS,
                    len: K16,
                }],
                PHYS,
                true,
                DstIova::Auto,
                RW,
            )
            .unwrap();
        assert_eq!(iova % K16, 0);
        assert!(placed.iter().all(|&p| p.abs_diff(iova) >= K16));
        placed.push(iova);
    }
    fx.ioas.check(&fx.store).unwrap();
}
