//! Attack on the close line with several consumers: once any consumer has
//! been told `Closed`, no pop that starts later may return an item, and
//! every push that returned `Ok` has been (or is being) received by some
//! consumer. The single-consumer case is `shm/tests/close_race.rs`; here
//! two consumers race each other and a third party's close, while three
//! producers push.
//!
//! Each consumer reads the shared `told_closed` flag before every pop. A
//! pop that began after the flag was raised and still returned an item is
//! an item that arrived after a consumer was told `Closed`.

// Thread stress: hundreds of rounds of five threads, which Miri would take
// hours over; the accesses it checks are the unit tests'.
#![cfg(not(any(loom, miri)))]

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use shmipc_core::sync::{AtomicBool, AtomicU64, Ordering};
use shmipc_core::{
    ByteQueue, BytesConfig, Mpmc, PopError, PushError, RecvError, RingConfig, SendError,
};

const ROUNDS: u64 = 300;
const PRODUCERS: u64 = 3;
const CONSUMERS: usize = 2;
const PER_PRODUCER: u64 = 400;
const LONG: Duration = Duration::from_secs(30);

/// Zeroed memory for one queue, freed on drop.
struct Mem(*mut u8, Layout);

impl Mem {
    fn new(layout: Layout) -> Mem {
        // SAFETY: the layout has a non-zero size (a queue's).
        let p = unsafe { alloc_zeroed(layout) };
        assert!(!p.is_null());
        Mem(p, layout)
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: our allocation of `self.1.size()` bytes.
        unsafe { std::slice::from_raw_parts_mut(self.0, self.1.size()) }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { dealloc(self.0, self.1) };
    }
}

/// A tiny random number source (xorshift), seeded per round.
fn rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// What one round saw.
#[derive(Default)]
struct Books {
    acked: Mutex<HashSet<u64>>,
    refused: Mutex<HashSet<u64>>,
    received: Mutex<Vec<u64>>,
    late: Mutex<Vec<u64>>,
}

impl Books {
    fn check(&self, round: u64) {
        let acked = self.acked.lock().unwrap();
        let refused = self.refused.lock().unwrap();
        let received = self.received.lock().unwrap();
        let late = self.late.lock().unwrap();
        assert!(
            late.is_empty(),
            "round {round}: {:?} popped by a pop that began after a consumer was told Closed",
            &late[..late.len().min(8)]
        );
        let got: HashSet<u64> = received.iter().copied().collect();
        assert_eq!(got.len(), received.len(), "round {round}: an item twice");
        let lost: Vec<_> = acked.difference(&got).take(8).collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged items never received: {lost:?}"
        );
        let ghost: Vec<_> = got.intersection(&refused).take(8).collect();
        assert!(
            ghost.is_empty(),
            "round {round}: items whose push returned Closed were received: {ghost:?}"
        );
    }
}

/// One round: producers push with `push` until it fails, consumers pop with
/// `pop` until `Closed`, and a closer calls `close` after a random delay.
fn round(
    seed: u64,
    push: &(dyn Fn(u64) -> Result<(), bool> + Sync),
    pop: &(dyn Fn() -> Result<u64, bool> + Sync),
    close: &(dyn Fn() + Sync),
) -> Books {
    let books = Books::default();
    let told_closed = AtomicBool::new(false);
    let pushed = AtomicU64::new(0);
    let mut r = seed | 1;
    let close_after = rand(&mut r) % (PRODUCERS * PER_PRODUCER);
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (books, pushed) = (&books, &pushed);
            s.spawn(move || {
                for i in 0..PER_PRODUCER {
                    let v = p << 32 | i;
                    match push(v) {
                        Ok(()) => {
                            books.acked.lock().unwrap().insert(v);
                            pushed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(true) => {
                            books.refused.lock().unwrap().insert(v);
                            return;
                        }
                        Err(false) => panic!("push {v:#x} failed"),
                    }
                }
            });
        }
        for _ in 0..CONSUMERS {
            let (books, told_closed) = (&books, &told_closed);
            s.spawn(move || loop {
                let after_close = told_closed.load(Ordering::SeqCst);
                match pop() {
                    Ok(v) => {
                        books.received.lock().unwrap().push(v);
                        if after_close {
                            books.late.lock().unwrap().push(v);
                        }
                    }
                    Err(true) => {
                        told_closed.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(false) => panic!("pop failed"),
                }
            });
        }
        let pushed = &pushed;
        s.spawn(move || {
            while pushed.load(Ordering::SeqCst) < close_after {
                std::hint::spin_loop();
            }
            close();
        });
    });
    books
}

#[test]
fn mpmc_close_with_two_consumers_is_a_line() {
    let config = RingConfig::new(4);
    let mut mem = Mem::new(Mpmc::<u64>::layout(config).unwrap());
    for k in 0..ROUNDS {
        mem.bytes().fill(0);
        let q = Mpmc::<u64>::new_in(mem.bytes(), config).unwrap();
        let books = round(
            k.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            &|v| match q.push_timeout(v, LONG) {
                Ok(()) => Ok(()),
                Err(PushError::Closed) => Err(true),
                Err(_) => Err(false),
            },
            &|| match q.pop_timeout(LONG) {
                Ok(v) => Ok(v),
                Err(PopError::Closed) => Err(true),
                Err(_) => Err(false),
            },
            &|| q.close(),
        );
        books.check(k);
    }
}

#[test]
fn byte_queue_close_with_two_consumers_is_a_line() {
    let config = BytesConfig::new(256, 16);
    let mut mem = Mem::new(ByteQueue::layout(config).unwrap());
    for k in 0..ROUNDS {
        mem.bytes().fill(0);
        let q = ByteQueue::new_in(mem.bytes(), config).unwrap();
        let books = round(
            k.wrapping_mul(0x9e37_79b9_7f4a_7c15) + 1,
            &|v| match q.send_timeout(&v.to_le_bytes(), LONG) {
                Ok(()) => Ok(()),
                Err(SendError::Closed) => Err(true),
                Err(_) => Err(false),
            },
            &|| {
                let mut b = [0u8; 8];
                match q.recv_into_timeout(&mut b, LONG) {
                    Ok(8) => Ok(u64::from_le_bytes(b)),
                    Err(RecvError::Closed) => Err(true),
                    _ => Err(false),
                }
            },
            &|| q.close(),
        );
        books.check(k);
    }
}
