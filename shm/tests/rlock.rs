//! RLock across real processes: the owning thread re-enters, other threads
//! and processes wait for the last release, an owner SIGKILLed at depth 3
//! is taken over with the owner-died report, and an unrepaired takeover
//! makes the lock not recoverable for everyone.

mod common;

use std::time::Duration;

use common::{eventually, join, CHILD_TIMEOUT};
use shmipc::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc::{fork, ExitStatus, LockError, Named, RLock, Shared, Unlinker};

const SHORT: Duration = Duration::from_millis(20);

#[test]
fn the_owner_reenters_and_others_wait_for_the_last_release() {
    let lock = Shared::<RLock>::anon(()).unwrap();
    let a = lock.lock().unwrap();
    let b = lock.lock().unwrap();
    let c = lock.try_lock().unwrap();
    assert_eq!(c.depth(), 3);
    assert!(!a.owner_died() && !b.owner_died() && !c.owner_died());
    std::thread::scope(|s| {
        // Another thread of this process waits.
        s.spawn(|| {
            assert_eq!(lock.try_lock().unwrap_err(), LockError::WouldBlock);
            assert_eq!(lock.lock_timeout(SHORT).unwrap_err(), LockError::Timeout);
        })
        .join()
        .unwrap();
    });
    // Another process waits too, until the third release.
    let got = Shared::<AtomicU32>::anon(0).unwrap();
    let mut child = fork(|| {
        if lock.try_lock().map(drop) != Err(LockError::WouldBlock) {
            return 2;
        }
        let Ok(g) = lock.lock_timeout(CHILD_TIMEOUT) else {
            return 3;
        };
        got.store(g.depth(), Ordering::SeqCst);
        0
    })
    .unwrap();
    drop(c);
    drop(b);
    std::thread::sleep(SHORT);
    assert_eq!(
        got.load(Ordering::SeqCst),
        0,
        "taken while still held at depth 1"
    );
    assert!(lock.is_locked());
    drop(a);
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(got.load(Ordering::SeqCst), 1);
    assert!(!lock.is_locked());
}

#[test]
fn an_inherited_guard_releases_nothing_in_the_child() {
    let lock = Shared::<RLock>::anon(()).unwrap();
    let g = lock.lock().unwrap();
    let _g2 = lock.lock().unwrap();
    let mut child = fork(|| {
        // The child has copies of both guards; dropping them (at _exit it
        // never does, so do it by hand) must not release the parent's hold.
        // SAFETY: a bitwise copy of the guard in the child's own memory; the
        // original is never dropped here (the child ends in _exit).
        let copy = unsafe { std::ptr::read(&g) };
        drop(copy);
        i32::from(!lock.is_locked())
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert!(lock.is_locked());
}

/// Forks a child that opens the lock by name, takes it three times, bumps
/// `half` (half of an update) and hangs until killed.
fn holder_at_depth_three(lock: &str, half: &str) -> shmipc::Child {
    let (lock, half) = (lock.to_owned(), half.to_owned());
    fork(move || {
        let lock = Shared::<RLock>::open(&lock).unwrap();
        let half = Shared::<AtomicU64>::open(&half).unwrap();
        let guards: Vec<_> = (0..3).map(|_| lock.lock().unwrap()).collect();
        assert_eq!(guards[2].depth(), 3);
        half.store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .unwrap()
}

/// A named RLock (and its name) whose holder, another process, took it
/// three times, was seen holding it, and was then SIGKILLed and reaped.
fn killed_at_depth_three(names: &Unlinker) -> (Shared<RLock>, Shared<AtomicU64>, String) {
    let (ln, hn) = (names.name("lock"), names.name("half"));
    let lock = Shared::<RLock>::create(&ln, ()).unwrap();
    let half = Shared::<AtomicU64>::create(&hn, 0).unwrap();
    let mut holder = holder_at_depth_three(&ln, &hn);
    assert!(eventually(CHILD_TIMEOUT, || half.load(Ordering::SeqCst) == 1));
    assert_eq!(lock.lock_timeout(SHORT).unwrap_err(), LockError::Timeout);
    holder.kill().unwrap();
    assert_eq!(join(&mut holder), ExitStatus::Signal(libc::SIGKILL));
    (lock, half, ln)
}

#[test]
fn an_owner_killed_at_depth_three_is_taken_over_and_repaired() {
    let names = Unlinker::new("rlock-death");
    let (lock, half, ln) = killed_at_depth_three(&names);

    // The next acquirer takes it over at depth 1, told that the owner died.
    let mut g = lock.lock_timeout(CHILD_TIMEOUT).unwrap();
    assert!(g.owner_died());
    assert_eq!(g.depth(), 1);
    let inner = lock.lock().unwrap();
    assert_eq!(inner.depth(), 2);
    assert!(!inner.owner_died());
    drop(inner);
    half.store(0, Ordering::SeqCst); // the repair
    g.mark_consistent();
    drop(g);
    assert!(!lock.is_locked());

    // Sound again: another process takes it without a report.
    let mut child = fork(|| {
        let lock = Shared::<RLock>::open(&ln).unwrap();
        let Ok(g) = lock.lock_timeout(CHILD_TIMEOUT) else {
            return 2;
        };
        i32::from(g.owner_died() || g.depth() != 1)
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn an_unrepaired_takeover_leaves_the_lock_not_recoverable() {
    let names = Unlinker::new("rlock-unrepaired");
    let (lock, _half, ln) = killed_at_depth_three(&names);
    let g = lock.lock_timeout(CHILD_TIMEOUT).unwrap();
    assert!(g.owner_died());
    drop(g); // without mark_consistent
    assert!(lock.is_unrecoverable());
    let mut child = fork(|| {
        let lock = Shared::<RLock>::open(&ln).unwrap();
        i32::from(lock.lock_timeout(SHORT).map(drop) != Err(LockError::Unrecoverable))
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn processes_exclude_each_other_while_reentering() {
    let lock = Shared::<RLock>::anon(()).unwrap();
    let counter = Shared::<AtomicU64>::anon(0).unwrap();
    const ROUNDS: u64 = 300;
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                for _ in 0..ROUNDS {
                    let Ok(outer) = lock.lock() else { return 2 };
                    let v = counter.load(Ordering::Relaxed);
                    let Ok(inner) = lock.lock() else { return 3 };
                    std::thread::yield_now();
                    counter.store(v + 1, Ordering::Relaxed);
                    drop(inner);
                    drop(outer);
                }
                0
            })
            .unwrap()
        })
        .collect();
    for c in &mut children {
        assert_eq!(join(c), ExitStatus::Code(0));
    }
    assert_eq!(counter.load(Ordering::SeqCst), 4 * ROUNDS);
}
