//! Loom models of the Lock: mutual exclusion, and no lost wake-up when a
//! waiter sleeps on a contended lock.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmipc-core --release --test 'loom_*'`.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use shmipc_core::Lock;

struct Guarded {
    lock: Lock,
    value: UnsafeCell<u32>,
}

// SAFETY: `value` is only touched while `lock` is held; loom checks exactly that.
unsafe impl Sync for Guarded {}

fn run(threads: usize, rounds: u32) {
    loom::model(move || {
        let shared = Arc::new(Guarded {
            lock: Lock::new(),
            value: UnsafeCell::new(0),
        });
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let shared = shared.clone();
                thread::spawn(move || {
                    for _ in 0..rounds {
                        let _guard = shared.lock.lock().unwrap();
                        // A data race here (two holders at once) is a loom error.
                        // SAFETY: the lock is held, so no one else touches it.
                        shared.value.with_mut(|v| unsafe { *v += 1 });
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // SAFETY: every other thread has been joined.
        let total = shared.value.with(|v| unsafe { *v });
        assert_eq!(total, threads as u32 * rounds);
        assert!(!shared.lock.is_locked());
    });
}

#[test]
fn two_threads_exclude_each_other() {
    run(2, 2);
}

#[test]
fn three_threads_exclude_each_other() {
    run(3, 1);
}

#[test]
fn contended_waiter_is_woken() {
    // The main thread holds the lock while the other blocks; if unlock failed
    // to wake the sleeper, loom reports a deadlock.
    loom::model(|| {
        let lock = Arc::new(Lock::new());
        let guard = lock.lock().unwrap();
        let l2 = lock.clone();
        let t = thread::spawn(move || {
            let _g = l2.lock().unwrap();
        });
        thread::yield_now();
        drop(guard);
        t.join().unwrap();
        assert!(!lock.is_locked());
    });
}
