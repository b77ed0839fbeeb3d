//! Loom models of the Semaphore: it never grants more permits than it has,
//! and a sleeping acquirer is always woken by a release.
#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmipc_core::Semaphore;

/// `threads` threads each take a permit of a `permits`-permit semaphore,
/// hold it and give it back: never more than `permits` hold one at once,
/// and every permit is back at the end.
fn never_more_holders_than(permits: u32, threads: usize) {
    loom::model(move || {
        let sem = Arc::new(Semaphore::new(permits));
        let holders = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (sem, holders) = (sem.clone(), holders.clone());
                thread::spawn(move || {
                    sem.acquire();
                    let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                    assert!(
                        now <= permits as usize,
                        "{now} holders of a {permits}-permit semaphore"
                    );
                    holders.fetch_sub(1, Ordering::SeqCst);
                    sem.release().unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(sem.value(), permits);
    });
}

#[test]
fn never_more_holders_than_permits() {
    never_more_holders_than(1, 2);
}

#[test]
fn two_permits_three_threads() {
    never_more_holders_than(2, 3);
}

#[test]
fn release_wakes_a_sleeping_acquirer() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let s2 = sem.clone();
        let t = thread::spawn(move || s2.acquire());
        sem.release().unwrap();
        t.join().unwrap();
        assert_eq!(sem.value(), 0);
    });
}

#[test]
fn two_sleepers_two_releases() {
    loom::model(|| {
        let sem = Arc::new(Semaphore::new(0));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let s = sem.clone();
                thread::spawn(move || s.acquire())
            })
            .collect();
        sem.release().unwrap();
        sem.release().unwrap();
        for w in waiters {
            w.join().unwrap();
        }
        assert_eq!(sem.value(), 0);
    });
}
