//! A hostile client's layouts cost what their work costs: O(log n) nodes
//! visited per request at 10^4 and 10^5 areas, counted (not timed), and a
//! tree no insertion order can make deeper than AVL's bound.

mod common;

use common::fixture::*;
use common::model::{Caps, Model};
use common::*;
use iopt::{DstIova, Errno, Extent, IovaRange, ReservedOwner};

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
/// the per-alignment room in the tree skips them all, and the map lands
/// where Linux's first fit puts it.
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

/// Among a few defeated holes, placement is Linux's first fit.
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

/// Automatic maps among defeated holes never overlap each other or an
/// area.
#[test]
fn placement_among_defeated_holes_never_overlaps() {
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

/// 15 allowed windows, each exactly covering a run of 12 KiB areas with
/// 4 KiB holes between them (no room for 8 KiB), and one empty window
/// above them: 16 windows in all. Returns the empty window.
fn windowed_runs(fx: &mut Fx, n: usize) -> IovaRange {
    let per_run = (n / 15) as u64;
    let mut windows = Vec::new();
    let mut base = K16;
    for _ in 0..15 {
        for i in 0..per_run {
            fx.map_fixed(base + K16 * i, 3 * K4).unwrap();
        }
        let last = base + K16 * (per_run - 1) + 3 * K4 - 1;
        windows.push(IovaRange::new(base, last));
        base = last + 1 + K16 * 4;
    }
    let empty = IovaRange::new(base, base + 64 * K16 - 1);
    windows.push(empty);
    fx.ioas.set_allowed(&windows).unwrap();
    empty
}

/// Tree nodes one call visits.
fn visits(fx: &mut Fx, call: impl FnOnce(&mut Fx)) -> u64 {
    let before = fx.store.tree_visits();
    call(fx);
    fx.store.tree_visits() - before
}

/// Allowed windows cost a constant, not a search each: with 15 windows
/// full and one empty, an automatic map lands in the empty one, and with
/// all 16 full it is ENOSPC, each within 16 log2 n nodes visited.
#[test]
fn allowed_windows_cost_log_n() {
    for n in [10_000usize, 100_000] {
        let bound = (16.0 * log2(n)) as u64;
        let mut fx = fixture(n);
        let empty = windowed_runs(&mut fx, n);
        // The first request after the windows change builds the holes'
        // room; it is ALLOW_IOVAS's work, paid once.
        let iova = fx.map_auto(K8).unwrap();
        fx.unmap(iova, K8).unwrap();
        for round in 0..4 {
            let mut iova = 0;
            let map = visits(&mut fx, |fx| iova = fx.map_auto(K8).unwrap());
            let first = empty.start.next_multiple_of(K8);
            assert_eq!(iova, first + K8 * round, "the empty window's first fit");
            assert!(map <= bound, "{n} areas: map visited {map} > {bound}");
            eprintln!("{n} areas, 16 windows: map {map}");
            // Keep one mapped each round, so that the next lands above it.
            let extra = fx.map_auto(K8).unwrap();
            let unmap = visits(&mut fx, |fx| {
                fx.unmap(extra, K8).unwrap();
            });
            assert!(unmap <= bound, "{n} areas: unmap visited {unmap} > {bound}");
        }
        // Fill the last window too: every request is ENOSPC, and refusing
        // costs what placing does.
        let mut all: Vec<IovaRange> = fx.ioas.allowed().to_vec();
        let top = all.pop().unwrap();
        all.push(IovaRange::new(top.start, top.start + 3 * K4 - 1));
        fx.ioas.set_allowed(&all).unwrap();
        let mut refused = Ok(0);
        let _ = visits(&mut fx, |fx| refused = fx.map_auto(K8));
        assert_eq!(refused, Err(Errno::ENOSPC));
        for _ in 0..4 {
            let cost = visits(&mut fx, |fx| refused = fx.map_auto(K8));
            assert_eq!(refused, Err(Errno::ENOSPC));
            assert!(cost <= bound, "{n} areas: ENOSPC visited {cost} > {bound}");
            eprintln!("{n} areas, 16 full windows: ENOSPC {cost}");
        }
        fx.ioas.check(&fx.store).unwrap();
    }
}

/// Areas of the tight-hole layout: `n / 2` areas of 8 KiB at 16K i + 12K
/// (8 KiB holes at 4 KiB mod 8 KiB: long enough, misaligned), then areas
/// of 8 KiB every 20 KiB (12 KiB holes at 4 KiB mod 8 KiB, each fitting one
/// aligned 8 KiB map and none 16 KiB - 1 bytes).
fn tight_holes(n: usize) -> Vec<(u64, u64)> {
    let defeated = (n / 2) as u64;
    let mut areas: Vec<(u64, u64)> = (0..defeated).map(|i| (K16 * i + 3 * K4, K8)).collect();
    let tight_base = K16 * (defeated + 1);
    areas.extend((0..n as u64 - defeated).map(|j| (tight_base + 5 * K4 * j, K8)));
    areas
}

/// A model holding the same areas, reserved ranges and windows as `fx`.
fn model_of(fx: &Fx) -> Model {
    let caps = Caps {
        areas: usize::MAX,
        backings: usize::MAX,
        quota_pages: u64::MAX,
    };
    let mut model = Model::new(caps, 1, vec![]);
    model.preload(
        0,
        fx.ioas
            .areas(&fx.store)
            .map(|a| (a.iova, a.last, PHYS, a.prot)),
    );
    model.ioas[0].reserved = fx.ioas.reserved().collect();
    model.ioas[0].allowed = fx.ioas.allowed().to_vec();
    model.ioas[0].alignment = fx.ioas.alignment();
    model
}

/// Holes long enough and misaligned, then holes just long enough, inside
/// a window that ends at the last area: every automatic map takes Linux's
/// first fit (the budgeted search gave up and answered ENOSPC), until the
/// window is full and the answer is ENOSPC, each within 16 log2 n nodes.
#[test]
fn tight_holes_place_as_linux_in_log_n() {
    for n in [10_000usize, 100_000] {
        let bound = (16.0 * log2(n)) as u64;
        let mut fx = fixture(n + 64);
        let areas = tight_holes(n);
        for &(iova, len) in &areas {
            fx.map_fixed(iova, len).unwrap();
        }
        let (last_iova, last_len) = *areas.last().unwrap();
        fx.ioas
            .set_allowed(&[IovaRange::new(K4, last_iova + last_len - 1)])
            .unwrap();
        let mut model = model_of(&fx);
        for request in 0..40 {
            let expected = model.first_fit(0, PHYS, K8);
            let mut got = Ok(0);
            let cost = visits(&mut fx, |fx| got = fx.map_auto(K8));
            assert_eq!(got, expected, "{n} areas, request {request}");
            assert!(
                cost <= bound,
                "{n} areas, request {request}: visited {cost} > {bound}"
            );
            eprintln!("{n} areas, tight holes: map {cost}");
            let iova = got.unwrap();
            model.preload(0, [(iova, iova + K8 - 1, PHYS, RW)]);
        }
        // A 16 KiB map fits no hole anywhere in the window: ENOSPC, as
        // Linux answers, for no more work.
        let source = PHYS;
        let mut got = Ok(0);
        let cost = visits(&mut fx, |fx| got = fx.map_at(source, K16, DstIova::Auto));
        assert_eq!(got, Err(Errno::ENOSPC));
        assert_eq!(model.first_fit(0, source, K16), Err(Errno::ENOSPC));
        assert!(cost <= bound, "{n} areas: ENOSPC visited {cost} > {bound}");
        // Without the window the same layout places at Linux's first fit
        // too, not at the top of the space.
        fx.ioas.set_allowed(&[]).unwrap();
        model.ioas[0].allowed.clear();
        assert_eq!(fx.map_auto(K8), model.first_fit(0, PHYS, K8));
        fx.ioas.check(&fx.store).unwrap();
    }
}

/// A small deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A source address whose lowest set bit and offset in its page vary:
/// the alignment and the or'ed offset of every class the uAPI allows.
fn random_source(rng: &mut Rng) -> u64 {
    let low = 1u64 << rng.below(24);
    (PHYS + rng.below(1 << 16) * (low << 1)) | low
}

/// The engine against a Linux-style exact first fit (the reference model)
/// over random byte-granular layouts, reserved ranges, allowed windows,
/// lengths and sources: the same IOVA or the same ENOSPC on every request.
#[test]
fn automatic_placement_matches_linux_first_fit() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..400 {
        let mut fx = fixture(256);
        let space = K4 << rng.below(10);
        for _ in 0..rng.below(120) {
            let iova = rng.below(space);
            let most = if rng.below(2) == 0 { 64 } else { 3 * K4 };
            let len = 1 + rng.below(most);
            let _ = fx.map_fixed(iova, len);
        }
        for _ in 0..rng.below(4) {
            let start = rng.below(space);
            let range = IovaRange::new(start, start + rng.below(K16));
            let _ = fx
                .ioas
                .reserve(&fx.store, range, ReservedOwner::SwMsi(rng.below(4) as u32));
        }
        let windows: Vec<IovaRange> = (0..rng.below(5))
            .map(|_| {
                let start = rng.below(space);
                IovaRange::new(start, start + 1 + rng.below(space / 2 + K4))
            })
            .collect();
        let _ = fx.ioas.set_allowed(&windows);
        let mut model = model_of(&fx);
        for request in 0..24 {
            let source = random_source(&mut rng);
            let most = if rng.below(2) == 0 { 256 } else { 5 * K4 };
            let length = 1 + rng.below(most);
            let expected = model.first_fit(0, source, length);
            let got = fx.map_full(
                &[Extent {
                    phys: source,
                    len: length,
                }],
                source,
                true,
                DstIova::Auto,
                RW,
            );
            assert_eq!(
                got,
                expected,
                "case {case}, request {request}: {length} bytes from {source:#x}, \
                 windows {:x?}",
                fx.ioas.allowed()
            );
            if let Ok(iova) = got {
                model.preload(0, [(iova, iova + length - 1, source, RW)]);
                // Unmap some again, so holes reopen.
                if rng.below(3) == 0 {
                    fx.unmap(iova, length).unwrap();
                    model.ioas[0].areas.retain(|a| a.start != iova);
                }
            }
        }
        fx.ioas.check(&fx.store).unwrap();
    }
}

/// The same across the whole 64-bit space: areas scattered up to 2^63,
/// gaps of every width up to 2^62, requests of every alignment class up
/// to 2^61 and lengths up to 2^62, so the per-class figures of every
/// class (the widest, packed in the most bits) decide: the same IOVA or
/// the same ENOSPC as Linux's first fit on every request.
#[test]
fn automatic_placement_matches_linux_first_fit_across_the_whole_space() {
    let mut rng = Rng(0x0ddb_a11c_afe5_eed5);
    for case in 0..300 {
        let mut fx = fixture(256);
        let top = 1u64 << (20 + rng.below(44));
        for _ in 0..rng.below(120) {
            let iova = rng.below(top) >> rng.below(40);
            let len = 1 + (rng.next() >> (64 - 1 - rng.below(40)));
            let _ = fx.map_fixed(iova, len);
        }
        let windows: Vec<IovaRange> = (0..rng.below(4))
            .map(|_| {
                let start = rng.below(top);
                IovaRange::new(start, start.saturating_add(1 + rng.below(top)))
            })
            .collect();
        let _ = fx.ioas.set_allowed(&windows);
        let mut model = model_of(&fx);
        for request in 0..24 {
            let source = 1u64 << rng.below(62);
            let length = 1 + (rng.next() >> (64 - 1 - rng.below(62)));
            let expected = model.first_fit(0, source, length);
            let got = fx.map_full(
                &[Extent {
                    phys: source,
                    len: length,
                }],
                source,
                true,
                DstIova::Auto,
                RW,
            );
            assert_eq!(
                got, expected,
                "case {case}, request {request}: {length:#x} bytes from {source:#x}"
            );
            if let Ok(iova) = got {
                model.preload(0, [(iova, iova + length - 1, source, RW)]);
                if rng.below(3) == 0 {
                    fx.unmap(iova, length).unwrap();
                    model.ioas[0].areas.retain(|a| a.start != iova);
                }
            }
        }
        fx.ioas.check(&fx.store).unwrap();
    }
}

/// The same with a 4 KiB-page domain attached: page-granular areas and
/// every alignment from a page up.
#[test]
fn automatic_placement_matches_linux_first_fit_with_a_domain() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for case in 0..200 {
        let mut fx = fixture(256);
        fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
        fx.attach(0).unwrap();
        let space = K4 << (4 + rng.below(8));
        for _ in 0..rng.below(120) {
            let iova = rng.below(space / K4) * K4;
            let _ = fx.map_fixed(iova, K4 * (1 + rng.below(4)));
        }
        let windows: Vec<IovaRange> = (0..rng.below(17))
            .map(|_| {
                let start = rng.below(space);
                IovaRange::new(start, start + 1 + rng.below(space / 4 + K4))
            })
            .collect();
        let _ = fx.ioas.set_allowed(&windows);
        let mut model = model_of(&fx);
        for request in 0..24 {
            let source = PHYS + K4 * (1 + rng.below(1 << 12)) * (1 << rng.below(6));
            let length = K4 * (1 + rng.below(12));
            let expected = model.first_fit(0, source, length);
            let got = fx.map_at(source, length, DstIova::Auto);
            assert_eq!(got, expected, "case {case}, request {request}");
            if let Ok(iova) = got {
                model.preload(0, [(iova, iova + length - 1, source, RW)]);
            }
        }
        fx.ioas.check(&fx.store).unwrap();
    }
}

/// What the exact search costs in memory, printed: each mapping the
/// server is configured for holds one area node (with its per-class
/// figures) and one backing slot, and each IOAS its hole rooms.
#[test]
fn memory_per_mapping() {
    let node = core::mem::size_of::<iopt::AreaSlot>();
    let backing = core::mem::size_of::<iopt::PagesSlot>();
    let ioas = core::mem::size_of::<iopt::Ioas>();
    println!(
        "area node {node} bytes + backing slot {backing} bytes = {} bytes per mapping; IOAS {ioas} bytes",
        node + backing
    );
    assert!(node <= 328, "an area node is {node} bytes");
    assert!(ioas <= 1680, "an IOAS is {ioas} bytes");
}
