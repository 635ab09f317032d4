//! The block client's story against a driver that never answers.

use nvme_driver::sim::SimMemory;
use scenarios::blk::{Next, Story, DATA_BYTES, MAX_WAITS};

/// A driver that takes requests and never answers (dead for good): the
/// story's client gives up after MAX_WAITS steps and says so, rather
/// than waiting forever.
#[test]
fn a_client_waits_a_bounded_number_of_steps() {
    let ring_mem = SimMemory::new(0, blk_queue::region_bytes(16));
    blk_queue::format(&ring_mem, 16).unwrap();
    let data = SimMemory::new(0, DATA_BYTES as usize);
    let mut ring = blk_queue::Client::new(&ring_mem).unwrap();
    let mut dead = blk_queue::Driver::new(&ring_mem).unwrap();
    let mut story = Story::new(0);
    let mut out = String::new();
    assert_eq!(story.step(&mut ring, &data, &mut out), Next::Notify);
    while dead.dequeue_request().unwrap().is_some() {}
    let mut steps = 0;
    let last = loop {
        steps += 1;
        match story.step(&mut ring, &data, &mut out) {
            Next::Wait if steps < 1000 => continue,
            other => break other,
        }
    };
    assert_eq!(last, Next::Done(false));
    assert_eq!(steps, MAX_WAITS);
    assert!(
        out.contains(&format!(
            "FAILED - 3 of 3 requests unanswered after {MAX_WAITS} waits: giving up on the driver"
        )),
        "{out}"
    );
}
