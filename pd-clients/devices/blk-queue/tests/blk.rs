//! The block rings between a client and a driver over test memory: round
//! trips, wrap-around, full and empty, the wire layout, and a hostile
//! peer scribbling over indices and entries.

use std::cell::{Cell, RefCell};

use blk_queue::{
    format, region_bytes, Client, Driver, EnqueueError, Malformed, Request, RequestCode, Response,
    ResponseStatus, MAX_CAPACITY,
};
use mmio::Memory;

const REQUEST_TAIL: usize = 0x40;
const REQUEST_HEAD: usize = 0x80;
const RESPONSE_TAIL: usize = 0xc0;
const RESPONSE_HEAD: usize = 0x100;
const REQUESTS: usize = 0x140;

/// Shared memory both sides (and the test, as the hostile peer) see;
/// counts accesses it refused, which a correct side never makes.
struct Shared {
    bytes: RefCell<Vec<u8>>,
    refused: Cell<u32>,
}

impl Shared {
    fn new(len: usize) -> Shared {
        Shared {
            bytes: RefCell::new(vec![0; len]),
            refused: Cell::new(0),
        }
    }

    fn formatted(capacity: u32) -> Shared {
        let shared = Shared::new(region_bytes(capacity));
        format(&shared, capacity).unwrap();
        shared
    }

    fn poke(&self, at: usize, bytes: &[u8]) {
        self.bytes.borrow_mut()[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn poke64(&self, at: usize, value: u64) {
        self.poke(at, &value.to_le_bytes());
    }

    fn peek64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.bytes.borrow()[at..at + 8].try_into().unwrap())
    }
}

impl Memory for Shared {
    fn len(&self) -> usize {
        self.bytes.borrow().len()
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> bool {
        let bytes = self.bytes.borrow();
        match bytes.get(offset..offset.saturating_add(out.len())) {
            Some(src) => {
                out.copy_from_slice(src);
                true
            }
            None => {
                self.refused.set(self.refused.get() + 1);
                false
            }
        }
    }

    fn write(&self, offset: usize, src: &[u8]) -> bool {
        let mut bytes = self.bytes.borrow_mut();
        match bytes.get_mut(offset..offset.saturating_add(src.len())) {
            Some(dst) => {
                dst.copy_from_slice(src);
                true
            }
            None => {
                self.refused.set(self.refused.get() + 1);
                false
            }
        }
    }
}

fn request(id: u32) -> Request {
    Request {
        code: if id.is_multiple_of(2) {
            RequestCode::Read
        } else {
            RequestCode::Write
        },
        offset: u64::from(id) * 4096,
        block: u64::from(id) * 8 + 0x1_0000_0000,
        count: id % 7 + 1,
        id,
    }
}

fn response(id: u32) -> Response {
    Response {
        id,
        status: if id.is_multiple_of(3) {
            ResponseStatus::Error(id + 100)
        } else {
            ResponseStatus::Ok
        },
        success_count: id % 7,
    }
}

#[test]
fn requests_and_responses_round_trip() {
    let shared = Shared::formatted(8);
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    assert_eq!((client.capacity(), driver.capacity()), (8, 8));
    for id in 0..5 {
        client.enqueue(request(id)).unwrap();
    }
    for id in 0..5 {
        let got = driver.dequeue_request().unwrap().unwrap();
        assert_eq!(got, request(id));
        driver.enqueue_response(response(got.id)).unwrap();
    }
    assert_eq!(driver.dequeue_request(), Ok(None));
    for id in 0..5 {
        assert_eq!(client.dequeue_response(), Ok(Some(response(id))));
    }
    assert_eq!(client.dequeue_response(), Ok(None));
    assert_eq!(shared.refused.get(), 0);
}

#[test]
fn entries_have_a_fixed_little_endian_layout() {
    let shared = Shared::formatted(4);
    assert_eq!(&shared.bytes.borrow()[0..12], b"BLKQ\x01\0\0\0\x04\0\0\0");
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    client
        .enqueue(Request {
            code: RequestCode::Write,
            offset: 0x1122_3344_5566_7788,
            block: 0x0102_0304_0506_0708,
            count: 0xa0b0_c0d0,
            id: 0xdead_beef,
        })
        .unwrap();
    let expected: [u8; 32] = [
        1, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 8, 7,
        6, 5, 4, 3, 2, 1, 0xd0, 0xc0, 0xb0, 0xa0, 0, 0, 0, 0,
    ];
    assert_eq!(&shared.bytes.borrow()[REQUESTS..REQUESTS + 32], &expected);
    assert_eq!(shared.peek64(REQUEST_TAIL), 1);
    driver.dequeue_request().unwrap().unwrap();
    assert_eq!(shared.peek64(REQUEST_HEAD), 1);
    driver
        .enqueue_response(Response {
            id: 7,
            status: ResponseStatus::Error(0x55),
            success_count: 3,
        })
        .unwrap();
    let responses = REQUESTS + 4 * 32;
    assert_eq!(
        &shared.bytes.borrow()[responses..responses + 16],
        &[7, 0, 0, 0, 1, 0, 0, 0, 0x55, 0, 0, 0, 3, 0, 0, 0]
    );
    assert_eq!(shared.peek64(RESPONSE_TAIL), 1);
}

#[test]
fn rings_wrap_around_many_times() {
    let shared = Shared::formatted(4);
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    let mut next = 0u32;
    let mut expected_request = 0u32;
    let mut expected_response = 0u32;
    for round in 0..500u32 {
        for _ in 0..round % 4 + 1 {
            client.enqueue(request(next)).unwrap();
            next += 1;
        }
        while let Some(got) = driver.dequeue_request().unwrap() {
            assert_eq!(got, request(expected_request));
            expected_request += 1;
            driver.enqueue_response(response(got.id)).unwrap();
        }
        while let Some(got) = client.dequeue_response().unwrap() {
            assert_eq!(got, response(expected_response));
            expected_response += 1;
        }
    }
    assert_eq!((expected_request, expected_response), (next, next));
    assert_eq!(shared.peek64(REQUEST_TAIL), u64::from(next));
    assert_eq!(shared.refused.get(), 0);
}

#[test]
fn indices_wrap_at_the_top_of_u64() {
    let shared = Shared::formatted(4);
    let start = u64::MAX - 2;
    for at in [REQUEST_TAIL, REQUEST_HEAD, RESPONSE_TAIL, RESPONSE_HEAD] {
        shared.poke64(at, start);
    }
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    for id in 0..40 {
        client.enqueue(request(id)).unwrap();
        assert_eq!(driver.dequeue_request(), Ok(Some(request(id))));
        driver.enqueue_response(response(id)).unwrap();
        assert_eq!(client.dequeue_response(), Ok(Some(response(id))));
    }
    assert_eq!(shared.peek64(REQUEST_TAIL), start.wrapping_add(40));
}

#[test]
fn full_and_empty() {
    let shared = Shared::formatted(2);
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    assert_eq!(driver.dequeue_request(), Ok(None));
    assert_eq!(client.dequeue_response(), Ok(None));
    client.enqueue(request(1)).unwrap();
    client.enqueue(request(2)).unwrap();
    assert_eq!(client.enqueue(request(3)), Err(EnqueueError::Full));
    // Taken is not answered: the slot still holds what the driver owes.
    assert_eq!(driver.dequeue_request(), Ok(Some(request(1))));
    assert_eq!(client.enqueue(request(3)), Err(EnqueueError::Full));
    driver.enqueue_response(response(1)).unwrap();
    assert_eq!(client.enqueue(request(3)), Err(EnqueueError::Full));
    assert_eq!(client.dequeue_response(), Ok(Some(response(1))));
    client.enqueue(request(3)).unwrap();
    assert_eq!(driver.dequeue_request(), Ok(Some(request(2))));
    assert_eq!(driver.dequeue_request(), Ok(Some(request(3))));
    driver.enqueue_response(response(2)).unwrap();
    driver.enqueue_response(response(3)).unwrap();
    // Nothing more was asked.
    assert_eq!(
        driver.enqueue_response(response(4)),
        Err(EnqueueError::NotOwed)
    );
    assert_eq!(client.dequeue_response(), Ok(Some(response(2))));
    assert_eq!(client.dequeue_response(), Ok(Some(response(3))));
}

/// A client that scribbles its response head back makes the ring look
/// full: the driver's answer waits (`Full`), still owed, not dropped.
#[test]
fn a_full_response_ring_holds_the_answer_back() {
    let shared = Shared::formatted(2);
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    client.enqueue(request(1)).unwrap();
    client.enqueue(request(2)).unwrap();
    driver.dequeue_request().unwrap();
    driver.dequeue_request().unwrap();
    driver.enqueue_response(response(1)).unwrap();
    shared.poke64(RESPONSE_HEAD, u64::MAX);
    assert_eq!(
        driver.enqueue_response(response(2)),
        Err(EnqueueError::Full)
    );
    assert_eq!(driver.unanswered(), 1);
    shared.poke64(RESPONSE_HEAD, 0);
    driver.enqueue_response(response(2)).unwrap();
    assert_eq!(driver.unanswered(), 0);
}

/// A client never has more than `capacity` requests unanswered, whatever
/// the driver consumed, so a request's slot outlives its answer.
#[test]
fn a_client_waits_for_answers_not_for_consumption() {
    let shared = Shared::formatted(4);
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    for id in 0..4 {
        client.enqueue(request(id)).unwrap();
    }
    while driver.dequeue_request().unwrap().is_some() {}
    assert_eq!(driver.unanswered(), 4);
    assert_eq!(client.unanswered(), 4);
    assert_eq!(client.enqueue(request(4)), Err(EnqueueError::Full));
    // The requests the driver owes answers for are still in their slots.
    let mut restarted = Driver::new(&shared).unwrap();
    assert_eq!(restarted.answer_unanswered(9), Ok(4));
    for id in 0..4 {
        assert_eq!(client.dequeue_response().unwrap().map(|r| r.id), Some(id));
    }
    client.enqueue(request(4)).unwrap();
}

/// A restarted driver answers every request its previous life took and
/// did not answer, with an error, in order, each with its own id; those
/// answered before, and those not yet taken, are left alone.
#[test]
fn a_restarted_driver_answers_what_its_previous_life_owed() {
    let shared = Shared::formatted(8);
    let mut client = Client::new(&shared).unwrap();
    for id in 10..16 {
        client.enqueue(request(id)).unwrap();
    }
    let mut first_life = Driver::new(&shared).unwrap();
    for _ in 0..4 {
        first_life.dequeue_request().unwrap().unwrap();
    }
    first_life.enqueue_response(response(10)).unwrap();
    // It dies here, owing answers to 11, 12 and 13.
    let mut restarted = Driver::new(&shared).unwrap();
    assert_eq!(restarted.unanswered(), 3);
    assert_eq!(restarted.answer_unanswered(42), Ok(3));
    assert_eq!(restarted.unanswered(), 0);
    assert_eq!(restarted.answer_unanswered(42), Ok(0));
    let answers: Vec<Response> =
        std::iter::from_fn(|| client.dequeue_response().unwrap()).collect();
    let failed = |id| Response {
        id,
        status: ResponseStatus::Error(42),
        success_count: 0,
    };
    assert_eq!(answers, [response(10), failed(11), failed(12), failed(13)]);
    // The requests not taken are served as usual.
    assert_eq!(restarted.dequeue_request(), Ok(Some(request(14))));
    assert_eq!(shared.refused.get(), 0);
}

/// The driver's own indices, scribbled by the client, cannot make a
/// restarted driver answer more than a ring holds.
#[test]
fn a_restart_owes_at_most_a_ring() {
    let shared = Shared::formatted(4);
    shared.poke64(REQUEST_TAIL, 1000);
    shared.poke64(REQUEST_HEAD, 1000);
    assert_eq!(Driver::new(&shared).err(), Some(Malformed::Index));
    shared.poke64(RESPONSE_TAIL, 996);
    shared.poke64(RESPONSE_HEAD, 996);
    let mut driver = Driver::new(&shared).unwrap();
    assert_eq!(driver.answer_unanswered(1), Ok(4));
    assert_eq!(shared.refused.get(), 0);
}

#[test]
fn a_hostile_client_index_is_an_error_until_it_is_sane() {
    let shared = Shared::formatted(4);
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    client.enqueue(request(1)).unwrap();
    for garbage in [5, 1000, u64::MAX, u64::MAX / 2] {
        shared.poke64(REQUEST_TAIL, garbage);
        assert_eq!(driver.dequeue_request(), Err(Malformed::Index));
    }
    // The driver's head did not move.
    assert_eq!(shared.peek64(REQUEST_HEAD), 0);
    shared.poke64(REQUEST_TAIL, 1);
    assert_eq!(driver.dequeue_request(), Ok(Some(request(1))));
    // The client's response head, ahead of the driver's tail.
    shared.poke64(RESPONSE_HEAD, 3);
    assert_eq!(
        driver.enqueue_response(response(1)),
        Err(EnqueueError::Malformed(Malformed::Index))
    );
    assert_eq!(shared.refused.get(), 0);
}

#[test]
fn a_hostile_driver_index_is_an_error() {
    let shared = Shared::formatted(4);
    let mut client = Client::new(&shared).unwrap();
    // The driver's request head ahead of the client's tail.
    shared.poke64(REQUEST_HEAD, 1);
    assert_eq!(
        client.enqueue(request(1)),
        Err(EnqueueError::Malformed(Malformed::Index))
    );
    shared.poke64(REQUEST_HEAD, 0);
    client.enqueue(request(1)).unwrap();
    shared.poke64(RESPONSE_TAIL, 9);
    assert_eq!(client.dequeue_response(), Err(Malformed::Index));
    assert_eq!(shared.peek64(RESPONSE_HEAD), 0);
}

#[test]
fn malformed_entries_are_consumed_and_reported() {
    let shared = Shared::formatted(4);
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    client.enqueue(request(5)).unwrap();
    client.enqueue(request(6)).unwrap();
    // The client rewrites the first request's code after publishing it.
    shared.poke(REQUESTS, &7u32.to_le_bytes());
    assert_eq!(driver.dequeue_request(), Err(Malformed::Request { id: 5 }));
    assert_eq!(driver.dequeue_request(), Ok(Some(request(6))));
    driver.enqueue_response(response(1)).unwrap();
    driver.enqueue_response(response(2)).unwrap();
    let responses = REQUESTS + 4 * 32;
    // Status 2 is no status; "ok" with an error code is no status either.
    shared.poke(responses + 4, &2u32.to_le_bytes());
    shared.poke(responses + 16 + 8, &1u32.to_le_bytes());
    assert_eq!(
        client.dequeue_response(),
        Err(Malformed::Response { id: 1 })
    );
    assert_eq!(
        client.dequeue_response(),
        Err(Malformed::Response { id: 2 })
    );
    assert_eq!(client.dequeue_response(), Ok(None));
}

#[test]
fn headers_are_checked() {
    assert_eq!(format(&Shared::new(4096), 0), Err(Malformed::Header));
    assert_eq!(format(&Shared::new(4096), 3), Err(Malformed::Header));
    assert_eq!(
        format(&Shared::new(region_bytes(8) - 1), 8),
        Err(Malformed::Header)
    );
    assert_eq!(
        format(&Shared::new(1 << 24), MAX_CAPACITY * 2),
        Err(Malformed::Header)
    );
    assert_eq!(
        Client::new(&Shared::new(4096)).err(),
        Some(Malformed::Header)
    );
    let shared = Shared::formatted(8);
    // A capacity the memory cannot hold, one that is no power of two,
    // another magic.
    for (at, value) in [(8, 1u32 << 16), (8, 6), (0, 0x1234)] {
        let copy = Shared::new(region_bytes(8));
        copy.poke(0, &shared.bytes.borrow());
        copy.poke(at, &value.to_le_bytes());
        assert_eq!(Driver::new(&copy).err(), Some(Malformed::Header));
    }
    // Indices that cannot both be right.
    shared.poke64(RESPONSE_TAIL, 100);
    assert_eq!(Client::new(&shared).err(), Some(Malformed::Index));
}

#[test]
fn sides_resume_where_the_region_says() {
    let shared = Shared::formatted(4);
    let mut client = Client::new(&shared).unwrap();
    client.enqueue(request(1)).unwrap();
    client.enqueue(request(2)).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    assert_eq!(driver.dequeue_request(), Ok(Some(request(1))));
    // A restarted driver picks up after what its previous life consumed.
    let mut driver = Driver::new(&shared).unwrap();
    assert_eq!(driver.dequeue_request(), Ok(Some(request(2))));
}

#[test]
fn data_range_is_checked_arithmetic() {
    let r = Request {
        code: RequestCode::Read,
        offset: 0x1000,
        block: 0,
        count: 4,
        id: 0,
    };
    assert_eq!(r.data_range(512), Some(0x1000..0x1800));
    let far = Request {
        offset: u64::MAX - 100,
        ..r
    };
    assert_eq!(far.data_range(512), None);
}

/// A peer writing random indices and entries at random: every operation
/// returns, no side touches memory outside the region, and the sides keep
/// working once the peer behaves.
#[test]
fn random_scribbling_never_panics() {
    let shared = Shared::formatted(8);
    let mut client = Client::new(&shared).unwrap();
    let mut driver = Driver::new(&shared).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut errors = 0;
    for step in 0..20_000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        match seed % 8 {
            0 => {
                let at = [REQUEST_TAIL, REQUEST_HEAD, RESPONSE_TAIL, RESPONSE_HEAD]
                    [(seed >> 8) as usize % 4];
                let value = match (seed >> 16) % 3 {
                    0 => seed >> 20,
                    1 => shared.peek64(at).wrapping_add((seed >> 24) % 12),
                    _ => shared.peek64(at).wrapping_sub((seed >> 24) % 12),
                };
                shared.poke64(at, value);
            }
            1 => {
                let at = REQUESTS + (seed >> 8) as usize % (8 * 48 - 8);
                shared.poke64(at, seed);
            }
            _ => {}
        }
        let results = [
            client.enqueue(request(step)).err().map(|_| ()),
            driver.dequeue_request().err().map(|_| ()),
            driver.enqueue_response(response(step)).err().map(|_| ()),
            client.dequeue_response().err().map(|_| ()),
        ];
        errors += results.iter().filter(|r| r.is_some()).count();
    }
    assert!(errors > 0);
    assert_eq!(shared.refused.get(), 0);
    // A fresh, sane region: the same code works.
    let clean = Shared::formatted(8);
    let mut client = Client::new(&clean).unwrap();
    let mut driver = Driver::new(&clean).unwrap();
    client.enqueue(request(1)).unwrap();
    assert_eq!(driver.dequeue_request(), Ok(Some(request(1))));
}
