//! Counter ticks to instructions. Under QEMU's `-icount shift=0` every
//! guest instruction advances virtual time by exactly 1 ns, and the generic
//! timer counts virtual time at its frequency (CNTFRQ_EL0): a tick is
//! 10^9 / CNTFRQ instructions (16 at QEMU virt's 62.5 MHz). Plain
//! arithmetic, host-tested (tests/bench_figures.rs).

use core::fmt;

/// Instructions per call, in tenths, rounded to the nearest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenths(pub u64);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// Instructions per call that `ticks` of a counter at `frequency` Hz
/// stand for over `calls` calls; `None` for no calls, a zero frequency or
/// a result past u64.
pub fn per_call(ticks: u64, frequency: u64, calls: u64) -> Option<Tenths> {
    if frequency == 0 || calls == 0 {
        return None;
    }
    // ticks * 10^9 / frequency instructions, times 10 for the tenths; in
    // u128, where the product of two u64 and 10^10 cannot overflow.
    let scaled = u128::from(ticks) * 10_000_000_000;
    let divisor = u128::from(frequency) * u128::from(calls);
    let tenths = (scaled + divisor / 2) / divisor;
    u64::try_from(tenths).ok().map(Tenths)
}

/// Instructions one tick stands for, when that is a whole number.
pub fn per_tick(frequency: u64) -> Option<u64> {
    (frequency != 0 && 1_000_000_000 % frequency == 0).then(|| 1_000_000_000 / frequency)
}
