//! The seL4 benchmark PDs' arithmetic (`benchkit::icount`), on the host:
//! counter ticks to instructions under `-icount shift=0`.

use benchkit::icount::{per_call, per_tick, Tenths};

/// QEMU virt's generic timer.
const QEMU_VIRT_HZ: u64 = 62_500_000;

#[test]
fn a_tick_is_sixteen_instructions_on_qemu_virt() {
    assert_eq!(per_tick(QEMU_VIRT_HZ), Some(16));
    assert_eq!(per_tick(1_000_000_000), Some(1));
    // 24 MHz does not divide 1 GHz: no whole number of instructions.
    assert_eq!(per_tick(24_000_000), None);
    assert_eq!(per_tick(0), None);
}

#[test]
fn ticks_become_tenths_of_an_instruction_per_call() {
    // The figures of a run: 1 691 116 ticks over 10 000 null requests.
    assert_eq!(
        per_call(1_691_116, QEMU_VIRT_HZ, 10_000),
        Some(Tenths(27058))
    );
    assert_eq!(Tenths(27058).to_string(), "2705.8");
    assert_eq!(Tenths(7).to_string(), "0.7");
    // Rounded to the nearest tenth: 16 instructions over 3 calls is 5.33.
    assert_eq!(per_call(1, QEMU_VIRT_HZ, 3), Some(Tenths(53)));
    // 16 over 32 calls is 0.5, not 0.4.
    assert_eq!(per_call(1, QEMU_VIRT_HZ, 32), Some(Tenths(5)));
}

#[test]
fn no_figure_without_calls_or_frequency_and_no_overflow() {
    assert_eq!(per_call(100, QEMU_VIRT_HZ, 0), None);
    assert_eq!(per_call(100, 0, 10), None);
    // u64::MAX ticks of a 1 Hz counter is 1.8e29 tenths: past u64, refused
    // rather than wrapped.
    assert_eq!(per_call(u64::MAX, 1, 1), None);
    // The largest product still fits: u64::MAX ticks at 1 GHz.
    assert_eq!(
        per_call(u64::MAX, 1_000_000_000, 10),
        Some(Tenths(u64::MAX))
    );
}
