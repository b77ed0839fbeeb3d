//! "Within about 50 ms": how long a blocked waiter takes to recover from a
//! holder SIGKILLed in front of it, for a Lock, an MPMC slot and a byte
//! queue reservation.
//!
//! The promise (README, docs/DESIGN.md) is one owner-check interval,
//! 50 ms. Tests do not time things, so the bound asserted here is a
//! generous 1 s (twenty intervals: only a recovery that waits for something
//! else, such as a caller's timeout, breaks it); the measured figure is
//! printed for the log.

mod common;

use std::time::Duration;

use common::{join, now_ns};
use shmipc::{
    fork, ByteQueue, BytesConfig, Event, ExitStatus, Lock, Named, Queue, RingConfig, Shared,
};

/// Twenty owner-check intervals.
const BOUND: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(30);

/// Forks a holder that runs `hold` (taking something and signalling
/// `held`), then waits to be killed.
fn holder(held: &Shared<Event>, hold: impl FnOnce()) -> shmipc::Child {
    fork(|| {
        hold();
        held.set();
        std::thread::sleep(LONG);
        1
    })
    .unwrap()
}

/// Kills `holder` once `waiter_ready` says the waiter sleeps behind it,
/// prints how long after the kill the waiter (of a `what`, held by its
/// `holder_is`) recovered (it stores the monotonic time of its recovery in
/// `recovered`), and checks that it was within [`BOUND`].
fn kill_and_time(
    mut holder: shmipc::Child,
    mut waiter: shmipc::Child,
    recovered: &Shared<shmipc::AtomicU64>,
    what: &str,
    holder_is: &str,
) {
    // Let the waiter go to sleep behind the holder.
    std::thread::sleep(Duration::from_millis(150));
    let killed = now_ns();
    holder.kill().unwrap();
    assert_eq!(join(&mut holder), ExitStatus::Signal(libc::SIGKILL));
    assert_eq!(join(&mut waiter), ExitStatus::Code(0), "the waiter failed");
    let at = recovered.load(std::sync::atomic::Ordering::SeqCst);
    let took = Duration::from_nanos(at.saturating_sub(killed));
    eprintln!("{what}: recovered {took:?} after the {holder_is}'s SIGKILL");
    assert!(took < BOUND, "{took:?}");
}

#[test]
fn a_lock_waiter_recovers_within_the_bound() {
    let (_names, [n, h, r]) = common::segment_names("bound-lock", ["lock", "held", "at"]);
    let _lock = Shared::<Lock>::create(&n, ()).unwrap();
    let held = Shared::<Event>::create(&h, ()).unwrap();
    let recovered = Shared::<shmipc::AtomicU64>::create(&r, 0).unwrap();
    let holder = holder(&held, || {
        let lock = Shared::<Lock>::open(&n).unwrap();
        std::mem::forget(lock.lock().unwrap());
        std::mem::forget(lock);
    });
    assert!(held.wait_timeout(LONG));
    let waiter = fork(|| {
        let lock = Shared::<Lock>::open(&n).unwrap();
        let Ok(mut g) = lock.lock_timeout(LONG) else {
            return 2;
        };
        recovered.store(now_ns(), std::sync::atomic::Ordering::SeqCst);
        if !g.owner_died() {
            return 3;
        }
        g.mark_consistent();
        0
    })
    .unwrap();
    kill_and_time(holder, waiter, &recovered, "Lock", "holder");
}

#[test]
fn an_mpmc_consumer_recovers_within_the_bound() {
    let (_names, [n, h, r]) = common::segment_names("bound-mpmc", ["q", "held", "at"]);
    let q = Queue::<u64>::create(&n, RingConfig::new(4)).unwrap();
    let held = Shared::<Event>::create(&h, ()).unwrap();
    let recovered = Shared::<shmipc::AtomicU64>::create(&r, 0).unwrap();
    let holder = holder(&held, || {
        let q = Queue::<u64>::open(&n).unwrap();
        // Claims a slot and dies before publishing it.
        q.claim_push_and_stop().unwrap();
        std::mem::forget(q);
    });
    assert!(held.wait_timeout(LONG));
    q.push(7).unwrap(); // behind the dead claim
    let waiter = fork(|| {
        let q = Queue::<u64>::open(&n).unwrap();
        let got = q.pop_timeout(LONG);
        recovered.store(now_ns(), std::sync::atomic::Ordering::SeqCst);
        if got == Ok(7) {
            0
        } else {
            2
        }
    })
    .unwrap();
    kill_and_time(holder, waiter, &recovered, "MPMC", "producer");
}

#[test]
fn a_byte_queue_reader_recovers_within_the_bound() {
    let (_names, [n, h, r]) = common::segment_names("bound-bytes", ["q", "held", "at"]);
    let q = ByteQueue::create(&n, BytesConfig::new(1024, 64)).unwrap();
    let held = Shared::<Event>::create(&h, ()).unwrap();
    let recovered = Shared::<shmipc::AtomicU64>::create(&r, 0).unwrap();
    let holder = holder(&held, || {
        let q = ByteQueue::open(&n).unwrap();
        // Reserves and dies before committing.
        std::mem::forget(q.reserve(5).unwrap());
        std::mem::forget(q);
    });
    assert!(held.wait_timeout(LONG));
    q.send(b"after").unwrap();
    let waiter = fork(|| {
        let q = ByteQueue::open(&n).unwrap();
        let mut buf = [0u8; 64];
        let got = q.recv_into_timeout(&mut buf, LONG);
        recovered.store(now_ns(), std::sync::atomic::Ordering::SeqCst);
        if got == Ok(5) && &buf[..5] == b"after" {
            0
        } else {
            2
        }
    })
    .unwrap();
    kill_and_time(holder, waiter, &recovered, "ByteQueue", "writer");
}
