//! Property test: long random sequences of every operation run against the
//! engine and against a deliberately naive reference model (sorted vectors,
//! linear scans, page-by-page chunking). After every step both must agree
//! on the result or errno, the areas, the quota, the pool usage, the usable
//! ranges, and each mock domain must hold exactly the pages the model says.

mod common;

use common::model::{Caps, DomSpec, Model};
use common::*;
use iommu_testkit::Lent;
use iopt::{
    ClientId, DomainId, DstIova, Errno, Extent, IoDomain, Ioas, IovaRange, Prot, ReservedOwner,
    Store, PAGE_SIZE,
};
use proptest::prelude::*;

const AREA_CAP: usize = 40;
const PAGES_CAP: usize = 16;
const QUOTA_PAGES: u64 = 6000;
const CAPS: Caps = Caps {
    areas: AREA_CAP,
    backings: PAGES_CAP,
    quota_pages: QUOTA_PAGES,
};

// ---- operations -------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Map {
        ioas: usize,
        extents: Vec<Extent>,
        source: u64,
        writable: bool,
        dst: DstIova,
        prot: Prot,
    },
    Unmap {
        ioas: usize,
        iova: u64,
        length: u64,
    },
    Copy {
        dst_ioas: usize,
        src_ioas: usize,
        iova: u64,
        length: u64,
        dst: DstIova,
        prot: Prot,
    },
    Cut {
        ioas: usize,
        iovas: Vec<u64>,
    },
    Reserve {
        ioas: usize,
        range: IovaRange,
        owner: ReservedOwner,
    },
    Unreserve {
        ioas: usize,
        owner: ReservedOwner,
    },
    Allow {
        ioas: usize,
        ranges: Vec<IovaRange>,
    },
    Attach {
        ioas: usize,
        domain: usize,
    },
    Detach {
        ioas: usize,
        domain: usize,
    },
    HugePages {
        ioas: usize,
        on: bool,
    },
}

/// Raw randomness, turned into a concrete operation against the current
/// model state so that most operations touch existing areas.
#[derive(Clone, Debug)]
struct Seed {
    kind: u8,
    a: u64,
    b: u64,
    c: u64,
    d: u64,
}

fn seed() -> impl Strategy<Value = Seed> {
    (
        any::<u8>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(kind, a, b, c, d)| Seed { kind, a, b, c, d })
}

const PROTS: [Prot; 4] = [
    Prot::READ,
    Prot::WRITE,
    Prot::READ.union(Prot::WRITE),
    Prot::empty(),
];
const PAGE_COUNTS: [u64; 10] = [1, 2, 3, 4, 16, 32, 512, 513, 1024, 7];

fn pick_len(x: u64) -> u64 {
    if x.is_multiple_of(13) {
        // Byte granular: any length up to two pages.
        return 1 + (x >> 8) % (2 * PAGE_SIZE);
    }
    let pages = if x.is_multiple_of(3) {
        1 + (x >> 8) % 64
    } else {
        PAGE_COUNTS[(x >> 8) as usize % PAGE_COUNTS.len()]
    };
    pages * PAGE_SIZE
}

fn pick_iova(x: u64) -> u64 {
    match x % 8 {
        0 => 0,
        1 => u64::MAX - ((x >> 8) % 4 + 1) * PAGE_SIZE + 1,
        2 => ((x >> 8) % 64) * M2,
        3 => ((x >> 8) % 4096) * PAGE_SIZE + if x & (1 << 60) != 0 { 0x800 } else { 0x234 },
        4 => ((x >> 8) % 16) * G1 + ((x >> 20) % 4) * K64,
        _ => ((x >> 8) % 8192) * PAGE_SIZE,
    }
}

fn pick_dst(x: u64) -> DstIova {
    if x.is_multiple_of(3) {
        DstIova::Fixed(pick_iova(x >> 2))
    } else {
        DstIova::Auto
    }
}

fn pick_range(x: u64) -> IovaRange {
    let start = pick_iova(x);
    let len = if x.is_multiple_of(7) {
        0
    } else {
        pick_len(x >> 16)
    };
    IovaRange::new(start, start.wrapping_add(len).wrapping_sub(1))
}

fn owner(x: u64) -> ReservedOwner {
    match x % 3 {
        0 => ReservedOwner::Device(iopt::StreamId((x >> 4) as u32 % 3)),
        1 => ReservedOwner::SwMsi((x >> 4) as u32 % 2),
        _ => ReservedOwner::Aperture(DomainId((x >> 4) as u32 % 4)),
    }
}

/// An (iova, length) that lines up with existing areas most of the time.
fn area_span(m: &Model, i: usize, x: u64, y: u64) -> (u64, u64) {
    let areas = &m.ioas[i].areas;
    if areas.is_empty() || x.is_multiple_of(5) {
        return (pick_iova(x), pick_len(y));
    }
    let first = (x >> 4) as usize % areas.len();
    let count = 1 + (y % 3) as usize;
    let last = areas[(first + count - 1).min(areas.len() - 1)];
    let mut start = areas[first].start;
    let mut end = last.last;
    match y % 11 {
        0 => start = start.wrapping_add(PAGE_SIZE),
        1 => end = end.wrapping_sub(PAGE_SIZE),
        _ => {}
    }
    (start, end.wrapping_sub(start).wrapping_add(1))
}

fn concretize(m: &Model, s: &Seed) -> Op {
    let ioas = (s.a & 1) as usize;
    match s.kind % 16 {
        0..=4 => {
            let n = 1 + (s.b % 4) as usize;
            let base = 0x8000_0000
                + ((s.b >> 8) % 8) * M2
                + if s.b.is_multiple_of(5) {
                    (s.b >> 16) % 16 * PAGE_SIZE
                } else {
                    0
                }
                // A buffer starting inside a page: half a page (what a
                // half-page domain can map) or any byte.
                + match s.b % 7 {
                    0 => 0x800,
                    1 => (s.b >> 24) % PAGE_SIZE,
                    _ => 0,
                };
            let mut extents = vec![];
            let mut phys = base;
            for k in 0..n {
                let len = pick_len(s.c.rotate_left(k as u32 * 13));
                let len = if s.d.is_multiple_of(17) && k == 0 {
                    len + 0x800
                } else {
                    len
                };
                extents.push(Extent { phys, len });
                phys += len + if (s.c >> (k * 3)) & 1 == 1 { M2 } else { 0 };
            }
            if n > 1 && !s.d.is_multiple_of(4) {
                extents.truncate(1);
            }
            // Extents after the first start where a page does.
            if !s.d.is_multiple_of(23) {
                for e in extents.iter_mut().skip(1) {
                    e.phys = e.phys.next_multiple_of(PAGE_SIZE);
                }
            }
            if s.c.is_multiple_of(5) {
                // The buffer ends inside its last page.
                let last = extents.last_mut().unwrap();
                last.len -= (s.c >> 40) % last.len.min(PAGE_SIZE);
            }
            let source = if s.d.is_multiple_of(2) {
                base
            } else {
                (s.d >> 8) & !0xfff
            };
            Op::Map {
                ioas,
                extents,
                source,
                writable: !s.d.is_multiple_of(7),
                dst: pick_dst(s.a >> 1),
                prot: PROTS[if s.d.is_multiple_of(29) {
                    3
                } else {
                    (s.d >> 4) as usize % 3
                }],
            }
        }
        5..=7 => {
            if s.b.is_multiple_of(13) {
                return Op::Unmap {
                    ioas,
                    iova: 0,
                    length: u64::MAX,
                };
            }
            let (iova, length) = area_span(m, ioas, s.b, s.c);
            Op::Unmap { ioas, iova, length }
        }
        8 | 9 => {
            let src_ioas = (s.d & 1) as usize;
            let (mut iova, mut length) = area_span(m, src_ioas, s.b, s.c);
            if s.d.is_multiple_of(3) && length > PAGE_SIZE {
                iova = iova.wrapping_add(PAGE_SIZE);
                length -= PAGE_SIZE;
            }
            Op::Copy {
                dst_ioas: ioas,
                src_ioas,
                iova,
                length,
                dst: pick_dst(s.a >> 1),
                prot: PROTS[(s.d >> 4) as usize % 4],
            }
        }
        10 => {
            let (iova, length) = area_span(m, ioas, s.b, s.c);
            let mut iovas = vec![
                iova.wrapping_sub(1),
                iova.wrapping_add(length).wrapping_sub(1),
            ];
            if s.d.is_multiple_of(3) {
                iovas.push(
                    iova.wrapping_add((s.d >> 8) % 8 * PAGE_SIZE)
                        .wrapping_sub(1),
                );
            }
            if s.d.is_multiple_of(5) {
                iovas[0] = iovas[0].wrapping_add(0x800);
            }
            Op::Cut { ioas, iovas }
        }
        11 => {
            if s.d.is_multiple_of(4) {
                Op::Unreserve {
                    ioas,
                    owner: owner(s.b),
                }
            } else {
                Op::Reserve {
                    ioas,
                    range: pick_range(s.c),
                    owner: owner(s.b),
                }
            }
        }
        12 => {
            let n = (s.b % 4) as usize;
            let ranges = (0..n)
                .map(|k| pick_range(s.c.rotate_left(k as u32 * 17) ^ s.d))
                .collect();
            Op::Allow { ioas, ranges }
        }
        13 | 14 => {
            let domain = (s.b % 4) as usize;
            // A domain belongs to at most one IOAS, as the server ensures.
            let owner = (0..2).find(|&i| m.ioas[i].domains.contains(&domain));
            match owner {
                Some(i) if s.c.is_multiple_of(2) || i != ioas => Op::Detach { ioas: i, domain },
                _ => Op::Attach { ioas, domain },
            }
        }
        _ => Op::HugePages {
            ioas,
            on: s.b.is_multiple_of(3),
        },
    }
}

// ---- the engine side ----------------------------------------------------------

struct Engine {
    store: Lent<Store<'static>>,
    doms: Domains,
    ioas: Vec<Option<Ioas>>,
}

/// Runs `f` on IOAS `i` with the other one available as a copy source.
fn with_ioas<R>(
    e: &mut Engine,
    i: usize,
    f: impl FnOnce(&mut Ioas, Option<&Ioas>, &mut Store<'static>, &mut Domains) -> R,
) -> R {
    let mut this = e.ioas[i].take().unwrap();
    let other = e.ioas[1 - i].as_ref();
    let r = f(&mut this, other, &mut e.store, &mut e.doms);
    e.ioas[i] = Some(this);
    r
}

fn run_engine(e: &mut Engine, op: &Op) -> Result<u64, Errno> {
    match op.clone() {
        Op::Map {
            ioas,
            extents,
            source,
            writable,
            dst,
            prot,
        } => with_ioas(e, ioas, |io, _, st, d| {
            io.map(st, d, &extents, source, writable, dst, prot)
        }),
        Op::Unmap { ioas, iova, length } => {
            with_ioas(e, ioas, |io, _, st, d| io.unmap(st, d, iova, length))
        }
        Op::Copy {
            dst_ioas,
            src_ioas,
            iova,
            length,
            dst,
            prot,
        } => with_ioas(e, dst_ioas, |io, other, st, d| {
            let src = if src_ioas == dst_ioas { None } else { other };
            io.copy_from(st, d, src, iova, length, dst, prot)
        }),
        Op::Cut { ioas, iovas } => with_ioas(e, ioas, |io, _, st, _| io.cut(st, &iovas).map(|_| 0)),
        Op::Reserve { ioas, range, owner } => with_ioas(e, ioas, |io, _, st, _| {
            io.reserve(st, range, owner).map(|_| 0)
        }),
        Op::Unreserve { ioas, owner } => {
            with_ioas(e, ioas, |io, _, _, _| io.unreserve(owner).map(|_| 0))
        }
        Op::Allow { ioas, ranges } => {
            with_ioas(e, ioas, |io, _, _, _| io.set_allowed(&ranges).map(|_| 0))
        }
        Op::Attach { ioas, domain } => with_ioas(e, ioas, |io, _, st, d| {
            io.attach_domain(st, d, DomainId(domain as u32)).map(|_| 0)
        }),
        Op::Detach { ioas, domain } => with_ioas(e, ioas, |io, _, st, d| {
            io.detach_domain(st, d, DomainId(domain as u32)).map(|_| 0)
        }),
        Op::HugePages { ioas, on } => {
            with_ioas(e, ioas, |io, _, st, _| io.set_huge_pages(st, on).map(|_| 0))
        }
    }
}

fn run_model(m: &mut Model, op: &Op) -> Result<u64, Errno> {
    match op.clone() {
        Op::Map {
            ioas,
            extents,
            source,
            writable,
            dst,
            prot,
        } => m.map(ioas, &extents, source, writable, dst, prot),
        Op::Unmap { ioas, iova, length } => m.unmap(ioas, iova, length),
        Op::Copy {
            dst_ioas,
            src_ioas,
            iova,
            length,
            dst,
            prot,
        } => m.copy(dst_ioas, src_ioas, iova, length, dst, prot),
        Op::Cut { ioas, iovas } => m.cut(ioas, &iovas).map(|_| 0),
        Op::Reserve { ioas, range, owner } => m.reserve(ioas, range, owner).map(|_| 0),
        Op::Unreserve { ioas, owner } => {
            if matches!(owner, ReservedOwner::Aperture(_)) {
                return Err(Errno::EINVAL);
            }
            m.ioas[ioas].reserved.retain(|r| r.1 != owner);
            Ok(0)
        }
        Op::Allow { ioas, ranges } => m.allow(ioas, &ranges).map(|_| 0),
        Op::Attach { ioas, domain } => m.attach(ioas, domain).map(|_| 0),
        Op::Detach { ioas, domain } => m.detach(ioas, domain).map(|_| 0),
        Op::HugePages { ioas, on } => m.set_huge(ioas, on).map(|_| 0),
    }
}

fn compare(e: &Engine, m: &Model, step: usize, op: &Op) -> Result<(), TestCaseError> {
    let ctx = || format!("after step {step}: {op:?}");
    for i in 0..2 {
        let io = e.ioas[i].as_ref().unwrap();
        io.check(&e.store)
            .map_err(|s| TestCaseError::fail(format!("{s} {}", ctx())))?;
        let got: Vec<(u64, u64, Prot)> = io
            .areas(&e.store)
            .map(|a| (a.iova, a.last, a.prot))
            .collect();
        let want: Vec<(u64, u64, Prot)> = m.ioas[i]
            .areas
            .iter()
            .map(|a| (a.start, a.last, a.prot))
            .collect();
        prop_assert_eq!(&got, &want, "areas of IOAS {} {}", i, ctx());
        for a in &m.ioas[i].areas {
            let b = m.backing(a.backing);
            for probe in [a.start, a.start.max(a.last & !(PAGE_SIZE - 1)), a.last] {
                let want = b.phys_at(a.offset + (probe - a.start));
                prop_assert_eq!(
                    io.translate(&e.store, probe),
                    Some(want),
                    "translate {:#x} {}",
                    probe,
                    ctx()
                );
            }
        }
        prop_assert_eq!(io.alignment(), m.ioas[i].alignment, "{}", ctx());
        prop_assert_eq!(io.huge_pages(), m.ioas[i].huge, "{}", ctx());
        let mut out = [IovaRange::ALL; 40];
        let info = io.iova_ranges(&mut out);
        prop_assert_eq!(
            &out[..info.total],
            &m.holes(i, IovaRange::ALL)[..],
            "{}",
            ctx()
        );
        prop_assert_eq!(
            io.domains().map(|d| d.0 as usize).collect::<Vec<_>>(),
            m.ioas[i].domains.clone(),
            "{}",
            ctx()
        );
    }
    prop_assert_eq!(
        e.store.account(ClientId(0)).unwrap().used,
        m.used,
        "quota {}",
        ctx()
    );
    prop_assert_eq!(
        e.store.areas_free(),
        AREA_CAP - m.area_count(),
        "nodes {}",
        ctx()
    );
    prop_assert_eq!(
        e.store.pages_free(),
        PAGES_CAP - m.live_backings(),
        "backings {}",
        ctx()
    );
    for (d, mirror) in m.mirrors.iter().enumerate() {
        let dom = e.doms.get(d as u32);
        prop_assert!(
            dom.violations.is_empty(),
            "domain {} violations {:?} {}",
            d,
            dom.violations,
            ctx()
        );
        let got: Vec<(u64, (u64, u64, Prot))> = dom
            .pages
            .iter()
            .map(|(&k, p)| (k, (p.phys, p.size, p.prot)))
            .collect();
        let want: Vec<(u64, (u64, u64, Prot))> = mirror.iter().map(|(&k, &v)| (k, v)).collect();
        if got != want {
            return Err(TestCaseError::fail(format!(
                "domain {d} holds {} pages, model {} {}",
                got.len(),
                want.len(),
                ctx()
            )));
        }
        // Independent of chunking: every area's pages translate in its domains.
        for (i, io) in m.ioas.iter().enumerate() {
            if !io.domains.contains(&d) {
                continue;
            }
            for a in &io.areas {
                let probe = a.start + (((a.last - a.start) / 2) & !(PAGE_SIZE - 1));
                let want = m.backing(a.backing).phys_at(a.offset + (probe - a.start));
                prop_assert_eq!(
                    dom.iova_to_phys(probe),
                    Some(want),
                    "domain {} ioas {} {}",
                    d,
                    i,
                    ctx()
                );
            }
        }
    }
    Ok(())
}

fn specs() -> Vec<DomSpec> {
    vec![
        DomSpec {
            sizes: ARM_4K,
            aperture: IovaRange::ALL,
            limit: 3000,
        },
        DomSpec {
            sizes: K4,
            aperture: IovaRange::new(0, (1 << 40) - 1),
            limit: 2500,
        },
        // Half a CPU page, as Linux's selftest mock domain.
        DomSpec {
            sizes: (PAGE_SIZE / 2) | M2,
            aperture: IovaRange::new(0x1_0000, (1 << 48) - 1),
            limit: 4000,
        },
        // A smallest page above the CPU page: refused.
        DomSpec {
            sizes: K64 | (1 << 29),
            aperture: IovaRange::new(0x1_0000, (1 << 48) - 1),
            limit: 400,
        },
    ]
}

fn run(seeds: Vec<Seed>) -> Result<(), TestCaseError> {
    let specs = specs();
    let mut m = Model::new(CAPS, 2, specs.clone());
    let doms = specs.iter().map(|s| {
        MockDomain::new(s.sizes)
            .with_aperture(s.aperture.start, s.aperture.last)
            .with_page_limit(s.limit)
    });
    let mut store = store(AREA_CAP, PAGES_CAP, 1);
    store.set_limit(ClientId(0), QUOTA_PAGES).unwrap();
    let ioas = vec![
        Some(store.new_ioas(ClientId(0)).unwrap()),
        Some(store.new_ioas(ClientId(0)).unwrap()),
    ];
    let mut e = Engine {
        store,
        doms: Domains::with(doms),
        ioas,
    };
    for (step, s) in seeds.iter().enumerate() {
        let op = concretize(&m, s);
        let want = run_model(&mut m, &op);
        let got = run_engine(&mut e, &op);
        prop_assert_eq!(got, want, "result of step {}: {:?}", step, op);
        compare(&e, &m, step, &op)?;
    }
    // Tearing everything down returns every pool entry.
    for i in 0..2 {
        let io = e.ioas[i].take().unwrap();
        io.destroy(&mut e.store, &mut e.doms);
    }
    prop_assert_eq!(e.store.areas_free(), AREA_CAP);
    prop_assert_eq!(e.store.pages_free(), PAGES_CAP);
    prop_assert_eq!(e.store.account(ClientId(0)).unwrap().used, 0);
    for d in &e.doms.0 {
        prop_assert!(d.pages.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("IOPT_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_reference_model(seeds in prop::collection::vec(seed(), 1..160)) {
        run(seeds)?;
    }
}

/// The model must itself be able to fail: a deliberately wrong expectation
/// is caught by the comparison.
#[test]
fn comparison_catches_a_divergence() {
    let specs = specs();
    let mut m = Model::new(CAPS, 2, specs.clone());
    let mut store = store(AREA_CAP, PAGES_CAP, 1);
    store.set_limit(ClientId(0), QUOTA_PAGES).unwrap();
    let ioas = vec![
        Some(store.new_ioas(ClientId(0)).unwrap()),
        Some(store.new_ioas(ClientId(0)).unwrap()),
    ];
    let doms = specs.iter().map(|s| MockDomain::new(s.sizes));
    let mut e = Engine {
        store,
        doms: Domains::with(doms),
        ioas,
    };
    let op = Op::Map {
        ioas: 0,
        extents: vec![Extent {
            phys: 0x8000_0000,
            len: PAGE_SIZE,
        }],
        source: 0,
        writable: true,
        dst: DstIova::Auto,
        prot: Prot::READ,
    };
    run_engine(&mut e, &op).unwrap();
    run_model(&mut m, &op).unwrap();
    compare(&e, &m, 0, &op).unwrap();
    m.ioas[0].areas[0].last += PAGE_SIZE;
    assert!(compare(&e, &m, 1, &op).is_err());
}
