//! Loom models of the RLock: threads that each take it twice (re-entering)
//! exclude each other, and the last release wakes a waiter.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmipc-core --release --test 'loom_*'`.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use shmipc_core::RLock;

struct Guarded {
    lock: RLock,
    value: UnsafeCell<u32>,
}

// SAFETY: `value` is only touched while `lock` is held; loom checks exactly that.
unsafe impl Sync for Guarded {}

#[test]
fn reentering_threads_exclude_each_other() {
    loom::model(|| {
        let shared = Arc::new(Guarded {
            lock: RLock::new(),
            value: UnsafeCell::new(0),
        });
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let shared = shared.clone();
                thread::spawn(move || {
                    let outer = shared.lock.lock().unwrap();
                    let inner = shared.lock.lock().unwrap();
                    assert_eq!(inner.depth(), 2);
                    drop(inner);
                    // Still held at depth 1: a data race here (another
                    // thread got in at the inner release) is a loom error.
                    // SAFETY: the lock is held, so no one else touches it.
                    shared.value.with_mut(|v| unsafe { *v += 1 });
                    drop(outer);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // SAFETY: every other thread has been joined.
        assert_eq!(shared.value.with(|v| unsafe { *v }), 2);
        assert!(!shared.lock.is_locked());
    });
}

#[test]
fn the_last_release_wakes_a_waiter() {
    loom::model(|| {
        let lock = Arc::new(RLock::new());
        let outer = lock.lock().unwrap();
        let inner = lock.lock().unwrap();
        let l2 = lock.clone();
        let t = thread::spawn(move || {
            let g = l2.lock().unwrap();
            assert_eq!(g.depth(), 1);
        });
        thread::yield_now();
        drop(inner);
        drop(outer);
        t.join().unwrap();
        assert!(!lock.is_locked());
    });
}
