//! IOVA ranges, allowed ranges and reserved ranges of an IOAS.

mod common;

use common::fixture::*;
use common::*;
use iopt::{DomainId, Errno, IovaRange, ReservedOwner, StreamId, MAX_ALLOWED};

// ---- iova_ranges ------------------------------------------------------------

#[test]
fn iova_ranges_are_the_holes_between_reserved_ranges() {
    let mut fx = Fx::new();
    assert_eq!(fx.ranges(), vec![(0, u64::MAX)]);
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0x800_0000, 0x8ff_ffff),
            ReservedOwner::SwMsi(0),
        )
        .unwrap();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0, 0xfff),
            ReservedOwner::Device(StreamId(3)),
        )
        .unwrap();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0x880_0000, 0x9ff_ffff),
            ReservedOwner::Device(StreamId(3)),
        )
        .unwrap();
    assert_eq!(
        fx.ranges(),
        vec![(0x1000, 0x7ff_ffff), (0xa00_0000, u64::MAX)]
    );
    let mut one = [IovaRange::ALL; 1];
    let info = fx.ioas.iova_ranges(&mut one);
    assert_eq!(
        (info.total, info.alignment),
        (2, 1),
        "no domain: byte granular"
    );
    assert_eq!(info.fits(1), Err(Errno::EMSGSIZE));
    assert_eq!(
        one[0],
        IovaRange::new(0x1000, 0x7ff_ffff),
        "filled as far as it reaches"
    );
    assert_eq!(info.fits(2), Ok(()));
    fx.ioas
        .unreserve(ReservedOwner::Device(StreamId(3)))
        .unwrap();
    assert_eq!(fx.ranges(), vec![(0, 0x7ff_ffff), (0x900_0000, u64::MAX)]);
}

#[test]
fn iova_ranges_follow_domain_apertures() {
    let mut fx = Fx::new();
    fx.doms = Domains::with([MockDomain::new(ARM_4K).with_aperture(0, (1 << 48) - 1)]);
    fx.attach(0).unwrap();
    assert_eq!(fx.ranges(), vec![(0, (1 << 48) - 1)]);
    fx.detach(0).unwrap();
    assert_eq!(fx.ranges(), vec![(0, u64::MAX)]);
}

// ---- allow_iovas ------------------------------------------------------------

#[test]
fn allow_iovas_errnos() {
    let mut fx = Fx::new();
    fx.ioas
        .reserve(
            &fx.store,
            IovaRange::new(0x10_0000, 0x10_ffff),
            ReservedOwner::Device(StreamId(1)),
        )
        .unwrap();
    let r = IovaRange::new;
    assert_eq!(
        fx.ioas.set_allowed(&[r(0x2000, 0x2000)]),
        Err(Errno::EINVAL),
        "start == last"
    );
    assert_eq!(
        fx.ioas.set_allowed(&[r(0x3000, 0x2000)]),
        Err(Errno::EINVAL),
        "start > last"
    );
    assert_eq!(
        fx.ioas.set_allowed(&[r(0x1000, 0x4fff), r(0x4000, 0x8fff)]),
        Err(Errno::EINVAL),
        "overlap"
    );
    assert_eq!(
        fx.ioas.set_allowed(&[r(0x1000, 0x10_0000)]),
        Err(Errno::EADDRINUSE),
        "reserved"
    );
    let many: Vec<IovaRange> = (0..=MAX_ALLOWED as u64)
        .map(|i| r(i * 0x1_0000 + 0x100_0000, i * 0x1_0000 + 0x100_ffff))
        .collect();
    assert_eq!(fx.ioas.set_allowed(&many), Err(Errno::ENOMEM));
    assert!(fx.ioas.allowed().is_empty(), "failures change nothing");
    fx.ioas
        .set_allowed(&[r(0x30_0000, 0x3f_ffff), r(0x20_0000, 0x2f_ffff)])
        .unwrap();
    assert_eq!(
        fx.ioas.allowed(),
        &[r(0x20_0000, 0x2f_ffff), r(0x30_0000, 0x3f_ffff)]
    );
    fx.ioas.set_allowed(&[]).unwrap();
    assert!(fx.ioas.allowed().is_empty());
}

// ---- reserve ----------------------------------------------------------------

#[test]
fn reserve_is_refused_over_areas_and_allowed_ranges() {
    let mut fx = Fx::new();
    fx.map_fixed(0x10_0000, K4).unwrap();
    fx.ioas
        .set_allowed(&[IovaRange::new(0x40_0000, 0x4f_ffff)])
        .unwrap();
    let owner = ReservedOwner::Device(StreamId(9));
    assert_eq!(
        fx.ioas
            .reserve(&fx.store, IovaRange::new(0x10_0fff, 0x10_1fff), owner),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(
        fx.ioas
            .reserve(&fx.store, IovaRange::new(0x4f_f000, 0x5f_ffff), owner),
        Err(Errno::EADDRINUSE)
    );
    assert_eq!(
        fx.ioas.reserve(&fx.store, IovaRange::new(5, 4), owner),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        fx.ioas
            .reserve(&fx.store, IovaRange::new(0x20_0000, 0x2f_ffff), owner),
        Ok(())
    );
    // Reserved ranges of different owners may overlap.
    assert_eq!(
        fx.ioas.reserve(
            &fx.store,
            IovaRange::new(0x28_0000, 0x3f_ffff),
            ReservedOwner::SwMsi(0)
        ),
        Ok(())
    );
    fx.ioas.unreserve(owner).unwrap();
    assert_eq!(fx.ioas.reserved().count(), 1);
    // Aperture reservations come and go only with their domain.
    let aperture = ReservedOwner::Aperture(DomainId(0));
    assert_eq!(
        fx.ioas
            .reserve(&fx.store, IovaRange::new(1 << 60, 1 << 61), aperture),
        Err(Errno::EINVAL)
    );
    assert_eq!(fx.ioas.unreserve(aperture), Err(Errno::EINVAL));
}

#[test]
fn reserved_list_full_is_enomem() {
    let mut fx = Fx::new();
    let mut i = 0;
    while fx
        .ioas
        .reserve(
            &fx.store,
            IovaRange::new(i * K64, i * K64 + 0xfff),
            ReservedOwner::Device(StreamId(i as u32)),
        )
        .is_ok()
    {
        i += 1;
    }
    assert_eq!(i as usize, iopt::MAX_RESERVED);
    assert_eq!(
        fx.ioas.reserve(
            &fx.store,
            IovaRange::new(G1, G1),
            ReservedOwner::Device(StreamId(0))
        ),
        Err(Errno::ENOMEM)
    );
}
