//! Loom models of the sleeper counts' recovery from a dead sleeper (the
//! "wipe" of `shmipc_core::queue`, "A sleeper that dies"): a sleeper killed
//! while blocked leaves its registration behind, notifiers that keep waking
//! nobody wipe the count, and live sleepers register again.
//!
//! A dead sleeper is a registration that never leaves
//! (`register_dead_sleeper`). Each model runs a live sleeper beside it,
//! with wipes after every missed wake (`set_miss_limit(1)`, the most wipes
//! a run can have), and checks that
//!
//! - no wake-up is lost: a lost one leaves a live sleeper asleep, which
//!   loom reports as a deadlock. The dangerous run is a wipe that comes
//!   with a wake whose item another live sleeper takes: the one left
//!   behind must have registered again before it sleeps, or the next
//!   notify finds the count at zero and wakes nobody. So the MPMC, byte
//!   queue and semaphore models have a thief: the notifying thread itself
//!   takes the first item back without waiting, if the sleeper has not
//!   yet, and then sends a second (an SPSC side has one consumer, which
//!   every wake brings what it waits for);
//! - the count recovers: once the live sleeper has gone, one more notify
//!   leaves the count at zero, so later notifies make no system call.
//!
//! The miss limit is process-wide and outside the model, so these models
//! live in a test binary of their own.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmipc-core --release --test loom_wipe`
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmipc_core::bytes::{ByteQueue, BytesConfig};
use shmipc_core::mpmc::Mpmc;
use shmipc_core::queue::set_miss_limit;
use shmipc_core::spsc::Spsc;
use shmipc_core::{RingConfig, Semaphore};

#[test]
fn mpmc_dead_consumer_is_wiped_and_live_one_woken() {
    set_miss_limit(1);
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        q.register_dead_sleeper(true);
        let q2 = q.clone();
        let live = thread::spawn(move || q2.pop().unwrap());
        q.push(1).unwrap();
        assert_eq!(live.join().unwrap(), 1);
        // Nobody lives on the consumers' side now: one more notify that
        // finds the count raised wakes nobody and wipes it.
        q.push(2).unwrap();
        assert_eq!(q.try_pop(), Ok(2));
        assert_eq!(q.counted_sleepers(true), 0, "the dead sleeper still counts");
    });
}

#[test]
fn mpmc_sleeper_robbed_after_a_wipe_is_still_woken() {
    set_miss_limit(1);
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        q.register_dead_sleeper(true);
        let q2 = q.clone();
        let live = thread::spawn(move || q2.pop().unwrap());
        q.push(1).unwrap();
        let stolen = q.try_pop().ok();
        q.push(2).unwrap();
        let mut got = vec![live.join().unwrap()];
        got.extend(stolen);
        got.extend(q.try_pop().ok());
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
    });
}

#[test]
fn spsc_dead_consumer_is_wiped_and_live_one_woken() {
    set_miss_limit(1);
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::<u32>::new_boxed(RingConfig::new(2));
        tx.register_dead_sleeper(true);
        let live = thread::spawn(move || {
            let v = rx.pop().unwrap();
            (v, rx)
        });
        tx.push(1).unwrap();
        let (v, mut rx) = live.join().unwrap();
        assert_eq!(v, 1);
        tx.push(2).unwrap();
        assert_eq!(rx.try_pop(), Ok(2));
        assert_eq!(
            tx.counted_sleepers(true),
            0,
            "the dead sleeper still counts"
        );
    });
}

#[test]
fn spsc_dead_producer_is_wiped_and_live_one_woken() {
    set_miss_limit(1);
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::<u32>::new_boxed(RingConfig::new(1));
        rx.register_dead_sleeper(false);
        tx.push(1).unwrap();
        let live = thread::spawn(move || {
            tx.push(2).unwrap(); // sleeps on full until the pop
            tx
        });
        assert_eq!(rx.pop(), Ok(1));
        let mut tx = live.join().unwrap();
        assert_eq!(rx.pop(), Ok(2));
        tx.push(3).unwrap();
        assert_eq!(rx.try_pop(), Ok(3));
        assert_eq!(
            rx.counted_sleepers(false),
            0,
            "the dead sleeper still counts"
        );
    });
}

#[test]
fn bytes_dead_reader_is_wiped_and_live_one_woken() {
    set_miss_limit(1);
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        q.register_dead_sleeper(true);
        let q2 = q.clone();
        let live = thread::spawn(move || {
            let mut out = [0u8; 8];
            let n = q2.recv_into(&mut out).unwrap();
            out[..n].to_vec()
        });
        q.send(b"a").unwrap();
        assert_eq!(live.join().unwrap(), b"a");
        q.send(b"b").unwrap();
        let mut out = [0u8; 8];
        assert_eq!(q.try_recv_into(&mut out), Ok(1));
        assert_eq!(q.counted_sleepers(true), 0, "the dead sleeper still counts");
    });
}

#[test]
fn bytes_reader_robbed_after_a_wipe_is_still_woken() {
    set_miss_limit(1);
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        q.register_dead_sleeper(true);
        let q2 = q.clone();
        let live = thread::spawn(move || {
            let mut out = [0u8; 8];
            assert_eq!(q2.recv_into(&mut out), Ok(1));
            out[0]
        });
        let mut out = [0u8; 8];
        q.send(b"a").unwrap();
        let stolen = q.try_recv_into(&mut out).ok().map(|_| out[0]);
        q.send(b"b").unwrap();
        let mut got = vec![live.join().unwrap()];
        got.extend(stolen);
        got.extend(q.try_recv_into(&mut out).ok().map(|_| out[0]));
        got.sort_unstable();
        assert_eq!(got, b"ab");
    });
}

#[test]
fn semaphore_acquirer_robbed_after_a_wipe_is_still_woken() {
    set_miss_limit(1);
    // The run that needs the re-registration takes three preemptions.
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let sem = Arc::new(Semaphore::new(0));
        sem.register_dead_sleeper();
        let s2 = sem.clone();
        let live = thread::spawn(move || s2.acquire());
        sem.release().unwrap();
        let stolen = sem.try_acquire();
        sem.release().unwrap();
        live.join().unwrap();
        assert_eq!(sem.value(), u32::from(!stolen));
    });
}

#[test]
fn semaphore_dead_acquirer_is_wiped_and_live_one_woken() {
    set_miss_limit(1);
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        sem.register_dead_sleeper();
        let s2 = sem.clone();
        let live = thread::spawn(move || s2.acquire());
        sem.release().unwrap();
        live.join().unwrap();
        sem.release().unwrap();
        assert!(sem.try_acquire());
        assert_eq!(sem.counted_sleepers(), 0, "the dead sleeper still counts");
    });
}
