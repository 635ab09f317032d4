//! The layouts the automatic-IOVA cost is counted on, as fixed maps and
//! allowed windows, for the engine (`iopt/examples/auto_churn.rs`) and for
//! the server (`examples/serve_churn.rs`) alike. The window and
//! tight-hole layouts are those of `iopt/tests/adversary.rs`.

const K4: u64 = 0x1000;
const K8: u64 = 0x2000;
const K16: u64 = 0x4000;

/// Every layout, by the name the examples take.
pub const NAMES: [&str; 5] = ["random", "ascending", "misaligned", "windows", "tight"];

/// One layout of `live` areas: the fixed maps that build it, in order,
/// and the allowed windows to set afterwards (none: the whole space).
pub struct Layout {
    /// `(iova, len)`, each of which must succeed but for the random
    /// layout's, which are tried until `live` succeed.
    pub maps: Box<dyn Iterator<Item = (u64, u64)>>,
    /// Whether a refused candidate (an overlap) is skipped rather than a
    /// bug.
    pub may_collide: bool,
    /// `(start, last)` of each allowed window.
    pub windows: Vec<(u64, u64)>,
}

/// The layout called `name` with `live` areas of 8 KiB or 12 KiB:
/// - random: 8 KiB at random 4 KiB-aligned IOVAs below 1 TiB;
/// - ascending: 8 KiB areas back to back from 16 KiB;
/// - misaligned: every hole 8 KiB long but at 4 KiB mod 8 KiB;
/// - windows: 15 allowed windows, each exactly covering a run of 12 KiB
///   areas with 4 KiB holes, and one empty window above them;
/// - tight: `live / 2` misaligned 8 KiB holes, then 12 KiB holes at 4 KiB
///   mod 8 KiB, each fitting one aligned 8 KiB map, inside one window
///   ending at the last area.
pub fn layout(name: &str, live: usize) -> Option<Layout> {
    let n = live as u64;
    let mut windows = Vec::new();
    let maps: Box<dyn Iterator<Item = (u64, u64)>> = match name {
        "random" => {
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            Box::new(core::iter::repeat_with(move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (K4 + (rng % (1 << 28)) * K4, K8)
            }))
        }
        "ascending" => Box::new((0..n).map(|i| (2 * K8 + i * K8, K8))),
        "misaligned" => Box::new((0..n).map(|i| (K16 * i + 3 * K4, K8))),
        "windows" => {
            let per_run = n / 15;
            let mut maps = Vec::new();
            let mut base = K16;
            for _ in 0..15 {
                maps.extend((0..per_run).map(|i| (base + K16 * i, 3 * K4)));
                let last = base + K16 * (per_run - 1) + 3 * K4 - 1;
                windows.push((base, last));
                base = last + 1 + 4 * K16;
            }
            windows.push((base, base + 64 * K16 - 1));
            Box::new(maps.into_iter())
        }
        "tight" => {
            let defeated = n / 2;
            let tight_base = K16 * (defeated + 1);
            let last = tight_base + 5 * K4 * (n - defeated - 1) + K8 - 1;
            windows.push((K4, last));
            Box::new(
                (0..defeated)
                    .map(|i| (K16 * i + 3 * K4, K8))
                    .chain((0..n - defeated).map(move |j| (tight_base + 5 * K4 * j, K8))),
            )
        }
        _ => return None,
    };
    Some(Layout {
        maps,
        may_collide: name == "random",
        windows,
    })
}
