//! The errno type: Linux's numbers and names, a lossless wire encoding.

use std::collections::HashSet;

use iommu_types::Errno;

#[test]
fn codes_are_linux_numbers() {
    let expected = [
        (Errno::EPERM, 1),
        (Errno::ENOENT, 2),
        (Errno::EIO, 5),
        (Errno::E2BIG, 7),
        (Errno::ENOMEM, 12),
        (Errno::EFAULT, 14),
        (Errno::EBUSY, 16),
        (Errno::EEXIST, 17),
        (Errno::ENODEV, 19),
        (Errno::EINVAL, 22),
        (Errno::ENOTTY, 25),
        (Errno::ENOSPC, 28),
        (Errno::EOVERFLOW, 75),
        (Errno::EMSGSIZE, 90),
        (Errno::EOPNOTSUPP, 95),
        (Errno::EADDRINUSE, 98),
    ];
    assert_eq!(expected.len(), Errno::ALL.len());
    for (errno, code) in expected {
        assert_eq!(errno.code(), code, "{errno:?}");
    }
}

#[test]
fn all_is_complete_and_round_trips() {
    // A new variant fails to compile here until it is listed.
    for e in Errno::ALL {
        match e {
            Errno::EPERM
            | Errno::ENOENT
            | Errno::EIO
            | Errno::E2BIG
            | Errno::ENOMEM
            | Errno::EFAULT
            | Errno::EBUSY
            | Errno::EEXIST
            | Errno::ENODEV
            | Errno::EINVAL
            | Errno::ENOTTY
            | Errno::ENOSPC
            | Errno::EOVERFLOW
            | Errno::EMSGSIZE
            | Errno::EOPNOTSUPP
            | Errno::EADDRINUSE => {}
        }
        assert_eq!(Errno::from_code(u64::from(e.code())), Some(e));
    }
    let codes: HashSet<u16> = Errno::ALL.iter().map(|e| e.code()).collect();
    assert_eq!(codes.len(), Errno::ALL.len());
}

#[test]
fn unknown_codes_are_none() {
    for code in [0, 3, 11, 99, 0x1_0000 + 22, u64::MAX] {
        assert_eq!(Errno::from_code(code), None, "{code}");
    }
}

#[test]
fn names_match_the_variants() {
    for e in Errno::ALL {
        assert_eq!(e.name(), format!("{e:?}"));
        assert_eq!(e.to_string(), format!("{} ({})", e.name(), e.code()));
    }
    assert_eq!(Errno::EINVAL.to_string(), "EINVAL (22)");
}
