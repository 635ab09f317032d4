//! Command queue entries (IHI 0070 4.1-4.7). Each is two 64-bit words.

pub type Command = [u64; 2];

pub const OP_CFGI_STE: u8 = 0x03;
pub const OP_CFGI_STE_RANGE: u8 = 0x04;
pub const OP_CFGI_CD: u8 = 0x05;
pub const OP_CFGI_CD_ALL: u8 = 0x06;
pub const OP_TLBI_NH_ASID: u8 = 0x11;
pub const OP_TLBI_NH_VA: u8 = 0x12;
pub const OP_TLBI_NSNH_ALL: u8 = 0x30;
pub const OP_SYNC: u8 = 0x46;

const LEAF: u64 = 1;

pub const fn cfgi_ste(sid: u32, leaf: bool) -> Command {
    [OP_CFGI_STE as u64 | ((sid as u64) << 32), leaf as u64]
}

/// Every STE: CFGI_STE_RANGE with Range = 31, which is CFGI_ALL.
pub const fn cfgi_all() -> Command {
    [OP_CFGI_STE_RANGE as u64, 31]
}

/// The CD of `sid` (substream 0).
pub const fn cfgi_cd(sid: u32, leaf: bool) -> Command {
    [OP_CFGI_CD as u64 | ((sid as u64) << 32), leaf as u64]
}

pub const fn cfgi_cd_all(sid: u32) -> Command {
    [OP_CFGI_CD_ALL as u64 | ((sid as u64) << 32), 0]
}

pub const fn tlbi_nh_asid(asid: u16) -> Command {
    [OP_TLBI_NH_ASID as u64 | ((asid as u64) << 48), 0]
}

pub const fn tlbi_nsnh_all() -> Command {
    [OP_TLBI_NSNH_ALL as u64, 0]
}

/// One 4 KiB page (no range).
pub const fn tlbi_nh_va(asid: u16, iova: u64, leaf: bool) -> Command {
    [
        OP_TLBI_NH_VA as u64 | ((asid as u64) << 48),
        (iova & !0xfff) | if leaf { LEAF } else { 0 },
    ]
}

/// The range form: `(num + 1) << scale` 4 KiB pages from `iova`
/// (TG = 4 KiB, TTL = 0: entries at any level).
pub const fn tlbi_nh_va_range(asid: u16, iova: u64, num: u8, scale: u8, leaf: bool) -> Command {
    const TG_4K: u64 = 1 << 10;
    [
        OP_TLBI_NH_VA as u64
            | (((num & 0x1f) as u64) << 12)
            | (((scale & 0x1f) as u64) << 20)
            | ((asid as u64) << 48),
        (iova & !0xfff) | TG_4K | if leaf { LEAF } else { 0 },
    ]
}

/// Completion barrier; completion is observed by polling CONS.
pub const fn sync() -> Command {
    [OP_SYNC as u64, 0]
}

pub const fn opcode(cmd: &Command) -> u8 {
    cmd[0] as u8
}

/// Splits `pages` 4 KiB pages from `iova` into range invalidations, each
/// covering `num * 2^scale` pages with `num` in 1..=32 (Linux's algorithm):
/// at most one command per set bit group of five, so a run of any length
/// costs a handful of commands.
pub fn range_chunks(mut iova: u64, mut pages: u64, mut emit: impl FnMut(u64, u8, u8)) {
    while pages > 0 {
        let scale = pages.trailing_zeros().min(31);
        let num = (pages >> scale) & 0x1f;
        let num = if num == 0 { 0x20 } else { num };
        emit(iova, (num - 1) as u8, scale as u8);
        let covered = num << scale;
        pages -= covered;
        iova = iova.wrapping_add(covered << 12);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(pages: u64) -> (u64, usize) {
        let (mut total, mut count, mut next) = (0, 0, 0x10_0000u64);
        range_chunks(0x10_0000, pages, |iova, num, scale| {
            assert_eq!(iova, next, "chunks are contiguous");
            let n = (num as u64 + 1) << scale;
            next = iova + (n << 12);
            total += n;
            count += 1;
        });
        (total, count)
    }

    #[test]
    fn range_chunks_cover_exactly() {
        for pages in [
            1,
            2,
            3,
            31,
            32,
            33,
            64,
            511,
            512,
            513,
            1000,
            262_144,
            0xffff_ffff,
        ] {
            let (total, count) = covered(pages);
            assert_eq!(total, pages);
            assert!(count <= 8, "{pages} pages took {count} commands");
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(cfgi_all(), [0x04, 31]);
        assert_eq!(cfgi_ste(0x10, true), [0x10_0000_0003, 1]);
        let c = tlbi_nh_va_range(7, 0x20_0000, 31, 9, true);
        assert_eq!(c[0], 0x12 | (31 << 12) | (9 << 20) | (7 << 48));
        assert_eq!(c[1], 0x20_0000 | (1 << 10) | 1);
        assert_eq!(opcode(&sync()), 0x46);
    }
}
