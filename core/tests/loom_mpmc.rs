//! Loom models of the Vyukov MPMC queue.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmipc-core --release --test loom_mpmc`
#![cfg(loom)]

use loom::thread;
use shmipc_core::mpmc::Mpmc;
use shmipc_core::{PopError, RingConfig};

/// Two producers, two consumers, capacity 2: every item is taken exactly
/// once, and a consumer that finds the queue empty sleeps until a push
/// wakes it (a lost wake-up is a loom deadlock). To keep the model small
/// the main thread is both the second producer and the second consumer.
#[test]
fn two_by_two() {
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        let q1 = q.clone();
        let producer = thread::spawn(move || q1.push(10).unwrap());
        let q2 = q.clone();
        let consumer = thread::spawn(move || q2.pop().unwrap());
        q.push(11).unwrap();
        let mine = q.pop().unwrap();
        producer.join().unwrap();
        let mut got = [mine, consumer.join().unwrap()];
        got.sort_unstable();
        assert_eq!(got, [10, 11]);
        assert_eq!(q.try_pop(), Err(PopError::Empty));
    });
}

/// Two consumers asleep on an empty queue are both woken by the pushes
/// (a lost wake-up is a loom deadlock).
#[test]
fn sleeping_consumers_are_woken() {
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || q.pop().unwrap())
            })
            .collect();
        q.push(1).unwrap();
        q.push(2).unwrap();
        let mut got: Vec<u32> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

/// One slot's worth more than the capacity: the producer sleeps on full and
/// is woken by a pop; the slots are reused across a lap.
#[test]
fn full_then_wrap() {
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        let q2 = q.clone();
        let t = thread::spawn(move || {
            for i in 0..3 {
                q2.push(i).unwrap();
            }
        });
        for i in 0..3 {
            assert_eq!(q.pop().unwrap(), i);
        }
        t.join().unwrap();
    });
}

/// Two consumers race for three items across a lap of a two-slot queue.
/// A consumer moves `dequeue` with a plain store after its claim; that is
/// sound only if no rival moves it meanwhile (rivals wait for a claim,
/// never help it). A store that moved `dequeue` back would hand an item
/// out twice, or leave the queue unable to deliver the last one. (The
/// main thread is the producer and the second consumer, to keep the
/// model to two threads.)
#[test]
fn consumers_race_across_a_lap() {
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        let q2 = q.clone();
        let two = thread::spawn(move || [q2.pop().unwrap(), q2.pop().unwrap()]);
        for i in 0..3 {
            q.push(i).unwrap();
        }
        let mine = q.pop().unwrap();
        let [a, b] = two.join().unwrap();
        assert!(a < b, "one consumer's items arrive in order");
        let mut got = [mine, a, b];
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        // `dequeue` ended where the items did: the next lap works.
        q.push(3).unwrap();
        assert_eq!(q.try_pop(), Ok(3));
    });
}

/// Close while a consumer sleeps: it drains the pushed item, then sees Closed.
#[test]
fn close_drains() {
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        let q2 = q.clone();
        let t = thread::spawn(move || {
            q2.push(5).unwrap();
            q2.close();
        });
        assert_eq!(q.pop(), Ok(5));
        assert_eq!(q.pop(), Err(PopError::Closed));
        t.join().unwrap();
    });
}
