//! Hardware domains attached to an IOAS: filled, mirrored, rolled back,
//! detached.

mod common;

use common::fixture::*;
use common::*;
use iopt::{ClientId, DomainId, DstIova, Errno, IoDomain, IovaRange};

// ---- domains ----------------------------------------------------------------

#[test]
fn attach_fills_existing_areas_with_the_largest_pages() {
    let mut fx = Fx::new();
    fx.map_at(PHYS, 2 * M2 + K4, DstIova::Fixed(G1 - K4))
        .unwrap();
    fx.map_at(PHYS + G1, G1, DstIova::Fixed(4 * G1)).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    let d = fx.doms.get(0);
    // IOVA G1-4K and phys PHYS share no 2 MiB offset: all 4 KiB pages.
    assert_eq!(
        d.pages.range(..4 * G1).count(),
        (2 * M2 + K4) as usize / K4 as usize
    );
    assert_eq!(d.pages[&(4 * G1)].size, G1);
    assert_eq!(d.iova_to_phys(4 * G1 + 0x1234), Some(PHYS + G1 + 0x1234));
    fx.doms.assert_clean();
}

#[test]
fn maps_and_unmaps_are_mirrored_into_every_domain() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K), MockDomain::new(K4)]);
    fx.attach(0).unwrap();
    fx.attach(1).unwrap();
    fx.map_at(PHYS + M2 - K4, 2 * M2 + 2 * K4, DstIova::Fixed(M2 - K4))
        .unwrap();
    assert_eq!(
        fx.doms.get(0).layout(),
        vec![(M2 - K4, K4), (M2, M2), (2 * M2, M2), (3 * M2, K4)],
        "blocks where IOVA and phys allow"
    );
    assert_eq!(
        fx.doms.get(1).pages.len(),
        (2 * M2 + 2 * K4) as usize / K4 as usize
    );
    fx.unmap(M2 - K4, 2 * M2 + 2 * K4).unwrap();
    assert!(fx.doms.get(0).pages.is_empty() && fx.doms.get(1).pages.is_empty());
    assert_eq!(
        fx.doms.get(0).unmap_calls,
        1,
        "one unmap call per domain and request"
    );
    fx.doms.assert_clean();
}

#[test]
fn fixed_map_phys_block_alignment_decides_page_size() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.map_at(PHYS + K4, M2, DstIova::Fixed(M2)).unwrap();
    assert_eq!(
        fx.doms.get(0).pages.len(),
        512,
        "phys not 2 MiB aligned: no block"
    );
}

#[test]
fn failure_in_the_second_domain_rolls_back_the_first() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([
        MockDomain::new(ARM_4K),
        MockDomain::new(K4).with_page_limit(3),
    ]);
    fx.attach(0).unwrap();
    fx.attach(1).unwrap();
    fx.map_fixed(0x10_0000, 2 * K4).unwrap();
    let before = fx.snapshot();
    assert_eq!(fx.map_fixed(0x20_0000, 2 * K4), Err(Errno::ENOMEM));
    assert_eq!(fx.snapshot(), before);
    // Copies roll back the same way.
    let r = fx.ioas.copy_from(
        &mut fx.store,
        &mut fx.doms,
        None,
        0x10_0000,
        2 * K4,
        DstIova::Auto,
        RW,
    );
    assert_eq!(r, Err(Errno::ENOMEM));
    assert_eq!(fx.snapshot(), before);
    fx.doms.assert_clean();
}

#[test]
fn attach_failure_leaves_domain_and_ioas_unchanged() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, 2 * K4).unwrap();
    fx.map_fixed(0x20_0000, 2 * K4).unwrap();
    fx.doms = Domains::with([MockDomain::new(K4)
        .with_aperture(0, (1 << 48) - 1)
        .with_page_limit(3)]);
    let reserved_before = fx.ioas.reserved().count();
    assert_eq!(fx.attach(0), Err(Errno::ENOMEM));
    assert!(fx.doms.get(0).pages.is_empty());
    assert_eq!(fx.ioas.reserved().count(), reserved_before);
    assert_eq!(fx.ioas.domains().count(), 0);
    fx.doms.get_mut(0).page_limit = 4;
    fx.attach(0).unwrap();
    assert_eq!(fx.doms.get(0).pages.len(), 4);
    fx.doms.assert_clean();
}

#[test]
fn attach_errnos() {
    let mut fx = Fx::new();
    fx.map_fixed(1 << 50, K4).unwrap();
    fx.doms = Domains::with([
        MockDomain::new(ARM_4K).with_aperture(0, (1 << 48) - 1),
        MockDomain::new(0),
        MockDomain::new(K64),
        MockDomain::new(ARM_4K),
    ]);
    assert_eq!(
        fx.attach(0),
        Err(Errno::EADDRINUSE),
        "an area lies outside the aperture"
    );
    assert_eq!(fx.attach(1), Err(Errno::EINVAL), "no page sizes");
    assert_eq!(
        fx.attach(2),
        Err(Errno::EINVAL),
        "smallest page above the CPU page"
    );
    assert_eq!(fx.attach(9), Err(Errno::ENODEV));
    fx.attach(3).unwrap();
    assert_eq!(fx.attach(3), Err(Errno::EEXIST));
    assert_eq!(fx.detach(0), Err(Errno::ENOENT));
    assert_eq!(fx.ioas.domains().collect::<Vec<_>>(), vec![DomainId(3)]);
}

#[test]
fn aperture_limit_blocks_allowed_ranges_beyond_it() {
    let mut fx = Fx::new();
    fx.ioas
        .set_allowed(&[IovaRange::new(1 << 50, (1 << 50) + 0xffff)])
        .unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K).with_aperture(0, (1 << 48) - 1)]);
    assert_eq!(fx.attach(0), Err(Errno::EADDRINUSE));
}

#[test]
fn alignment_follows_the_attached_domains() {
    const HALF: u64 = K4 / 2;
    let mut fx = Fx::new();
    assert_eq!(fx.ioas.alignment(), 1, "software alone: byte granular");
    fx.map_fixed(0x10_0000, K64).unwrap();
    fx.doms = Domains::with([
        MockDomain::new(HALF | K4 | (1 << 21)),
        MockDomain::new(ARM_4K),
    ]);
    fx.attach(0).unwrap();
    assert_eq!(
        fx.ioas.alignment(),
        HALF,
        "half a CPU page, as Linux's mock"
    );
    fx.attach(1).unwrap();
    assert_eq!(fx.ioas.alignment(), K4);
    assert_eq!(
        fx.map_fixed(0x20_0800, K4),
        Err(Errno::EINVAL),
        "IOVA below the new alignment"
    );
    assert_eq!(
        fx.map_fixed(0x20_0000, HALF),
        Err(Errno::EINVAL),
        "length below the new alignment"
    );
    fx.detach(1).unwrap();
    assert_eq!(fx.ioas.alignment(), HALF);
    // Half a CPU page maps into the half-page domain, exactly.
    fx.map_fixed(0x20_0000, HALF).unwrap();
    assert_eq!(fx.doms.get(0).layout()[16..], [(0x20_0000, HALF)]);
    fx.detach(0).unwrap();
    assert_eq!(fx.ioas.alignment(), 1);
    assert!(fx.doms.get(0).pages.is_empty() && fx.doms.get(1).pages.is_empty());
    fx.doms.assert_clean();
    // Re-attaching meets an area whose length is not a CPU page multiple.
    assert_eq!(fx.attach(1), Err(Errno::EADDRINUSE));
    fx.unmap(0x20_0000, HALF).unwrap();
    fx.attach(1).unwrap();
}

#[test]
fn sub_page_areas_refuse_a_domain_until_gone() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    // Without a domain any byte range maps, its offset in the page kept.
    fx.map_at(PHYS + 0x123, 0x10, DstIova::Fixed(0x5123))
        .unwrap();
    assert_eq!(fx.used(), 1, "the CPU page it touches");
    assert_eq!(fx.attach(0), Err(Errno::EADDRINUSE));
    fx.unmap(0x5123, 0x10).unwrap();
    assert_eq!(fx.used(), 0);
    fx.attach(0).unwrap();
    assert_eq!(
        fx.map_at(PHYS + 0x123, 0x10, DstIova::Fixed(0x5000)),
        Err(Errno::EINVAL),
        "offset in the page below the alignment"
    );
}

#[test]
fn huge_pages_off_maps_everything_at_the_smallest_page() {
    let mut fx = Fx::new();
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.map_at(PHYS, M2, DstIova::Fixed(M2)).unwrap();
    assert_eq!(fx.doms.get(0).pages.len(), 512);
    assert!(fx.doms.get(0).pages.values().all(|p| p.size == K4));
}

#[test]
fn huge_pages_cannot_be_disabled_under_mapped_domains() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
    fx.ioas.set_huge_pages(&fx.store, true).unwrap();
    fx.map_fixed(M2, M2).unwrap();
    assert_eq!(fx.ioas.set_huge_pages(&fx.store, false), Err(Errno::EINVAL));
    assert!(fx.ioas.huge_pages());
    // Re-enabling after small mappings is fine and unmaps cleanly.
    fx.unmap(M2, M2).unwrap();
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
    fx.map_fixed(M2, M2).unwrap();
    fx.ioas.set_huge_pages(&fx.store, true).unwrap();
    fx.unmap(M2, M2).unwrap();
    assert!(fx.doms.get(0).pages.is_empty());
    fx.doms.assert_clean();
}

#[test]
fn detach_unfills_and_destroy_returns_everything() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K), MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.attach(1).unwrap();
    fx.map_fixed(0x10_0000, 3 * K4).unwrap();
    fx.map_auto(M2).unwrap();
    fx.detach(0).unwrap();
    assert!(fx.doms.get(0).pages.is_empty());
    assert_eq!(fx.doms.get(1).pages.len(), 4);
    let Fx {
        mut store,
        mut doms,
        ioas,
    } = fx;
    ioas.destroy(&mut store, &mut doms);
    assert!(doms.get(1).pages.is_empty());
    assert_eq!((store.areas_free(), store.pages_free()), (256, 256));
    assert_eq!(store.account(ClientId(0)).unwrap().used, 0);
    doms.assert_clean();
}

#[test]
fn unmap_granularity_after_cut_with_domain() {
    // iommufd.c "unmap" selftests: after type1-style cuts, partial unmaps
    // remove exactly the pages asked for from the domain.
    let mut fx = Fx::new();
    fx.ioas.set_huge_pages(&fx.store, false).unwrap();
    fx.doms = Domains::with([MockDomain::new(ARM_4K)]);
    fx.attach(0).unwrap();
    fx.map_fixed(0x10_0000, 16 * K4).unwrap();
    fx.ioas.cut(&mut fx.store, &[0x10_3fff, 0x10_7fff]).unwrap();
    assert_eq!(fx.unmap(0x10_4000, 4 * K4), Ok(4 * K4));
    let d = fx.doms.get(0);
    assert_eq!(d.pages.len(), 12);
    assert!(
        !d.pages.contains_key(&0x10_4000)
            && d.pages.contains_key(&0x10_3000)
            && d.pages.contains_key(&0x10_8000)
    );
    fx.doms.assert_clean();
}
