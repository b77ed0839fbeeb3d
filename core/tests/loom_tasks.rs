//! Loom model of the TaskCount behind a JoinableQueue: a waiter for zero
//! is never left asleep by the last `done`, and sees every consumer's
//! write once it returns.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmipc-core --release --test 'loom_*'`.
#![cfg(loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use shmipc_core::sync::AtomicU32;
use shmipc_core::TaskCount;

struct Work {
    word: AtomicU32,
    done: [UnsafeCell<u32>; 2],
}

// SAFETY: each `done` cell is written by one consumer before its `done()`
// and read by the joiner only after the count reached zero; loom checks it.
unsafe impl Sync for Work {}

#[test]
fn the_last_done_wakes_the_joiner_and_publishes_the_work() {
    loom::model(|| {
        let w = Arc::new(Work {
            word: AtomicU32::new(0),
            done: [UnsafeCell::new(0), UnsafeCell::new(0)],
        });
        let tasks = TaskCount::at(&w.word);
        tasks.add().unwrap();
        tasks.add().unwrap();
        let consumers: Vec<_> = (0..2)
            .map(|i| {
                let w = w.clone();
                thread::spawn(move || {
                    // SAFETY: only this thread writes cell `i` (see above).
                    w.done[i].with_mut(|v| unsafe { *v = 1 });
                    TaskCount::at(&w.word).done().unwrap();
                })
            })
            .collect();
        // A lost wake-up here is a loom deadlock.
        assert!(tasks.wait_until(None));
        for cell in &w.done {
            // SAFETY: the count is zero: both writers are done (Release/Acquire).
            assert_eq!(cell.with(|v| unsafe { *v }), 1);
        }
        for c in consumers {
            c.join().unwrap();
        }
        assert_eq!(tasks.done(), Err(shmipc_core::TaskCountError::TooManyDone));
    });
}
