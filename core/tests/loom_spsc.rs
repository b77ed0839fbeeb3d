//! Loom models of the SPSC ring: order across the wrap, both directions of
//! sleep/wake, batch copies, and close waking a sleeper.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmipc-core --release --test loom_spsc`
#![cfg(loom)]

use loom::thread;
use shmipc_core::spsc::Spsc;
use shmipc_core::{PopError, PushError, RingConfig};

/// Three items through two slots: the producer must sleep on "full" and the
/// consumer on "empty"; a lost wake-up is a loom deadlock.
#[test]
fn order_across_the_wrap_with_blocking() {
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::<u32>::new_boxed(RingConfig::new(2));
        let t = thread::spawn(move || {
            for i in 0..3 {
                tx.push(i).unwrap();
            }
        });
        for i in 0..3 {
            assert_eq!(rx.pop().unwrap(), i);
        }
        t.join().unwrap();
    });
}

/// Batch copies across the wrap keep order and never expose a slot early.
#[test]
fn slices() {
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::<u32>::new_boxed(RingConfig::new(2));
        let t = thread::spawn(move || {
            let items = [1, 2, 3];
            let mut sent = 0;
            while sent < items.len() {
                match tx.push_slice(&items[sent..]) {
                    Ok(n) => sent += n,
                    Err(PushError::Full) => loom::thread::yield_now(),
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut got = [0u32; 3];
        let mut n = 0;
        while n < 3 {
            match rx.pop_slice(&mut got[n..]) {
                Ok(k) => n += k,
                Err(PopError::Empty) => loom::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, [1, 2, 3]);
        t.join().unwrap();
    });
}

/// A consumer asleep on an empty queue wakes for the last item or for the
/// close, and never misses the item pushed before the close.
#[test]
fn close_wakes_and_drains() {
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::<u32>::new_boxed(RingConfig::new(2));
        let t = thread::spawn(move || {
            tx.push(7).unwrap();
            tx.close();
        });
        assert_eq!(rx.pop(), Ok(7));
        assert_eq!(rx.pop(), Err(PopError::Closed));
        t.join().unwrap();
    });
}
