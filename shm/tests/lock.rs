//! A Lock shared by ten processes makes a non-atomic read-modify-write
//! exact.

mod common;

use std::sync::atomic::Ordering;

use common::join_all_ok;
use shmipc::{fork, AtomicU64, Child, Lock, Named, Shared};

const PROCESSES: u64 = 10;
const ROUNDS: u64 = 1_000;

/// Decrements `counter` ROUNDS times with a load and a separate store: two
/// processes interleaving here lose updates unless the lock excludes them.
fn decrement_under_lock(lock: &Lock, counter: &AtomicU64) -> i32 {
    for i in 0..ROUNDS {
        let Ok(_guard) = lock.lock() else {
            return 3;
        };
        let v = counter.load(Ordering::Relaxed);
        if i % 64 == 0 {
            // Widen the window between load and store now and then.
            std::thread::yield_now();
        }
        counter.store(v.wrapping_sub(1), Ordering::Relaxed);
    }
    0
}

/// Joins the [`decrement_under_lock`] children, and checks that every one
/// of their decrements landed and that the lock was left free.
fn no_update_lost(children: &mut [Child], lock: &Lock, counter: &AtomicU64) {
    join_all_ok(children);
    assert_eq!(counter.load(Ordering::Relaxed), 0);
    assert!(!lock.is_locked());
}

#[test]
fn ten_processes_open_the_lock_by_name() {
    let (names, lock_name) = common::segment_name("test", "lock");
    let counter_name = names.name("counter");
    let lock = Shared::<Lock>::create(&lock_name, ()).unwrap();
    let counter = Shared::<AtomicU64>::create(&counter_name, PROCESSES * ROUNDS).unwrap();

    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|_| {
            fork(|| {
                // Open by name, as an unrelated process would.
                let Ok(lock) = Shared::<Lock>::open(&lock_name) else {
                    return 1;
                };
                let Ok(counter) = Shared::<AtomicU64>::open(&counter_name) else {
                    return 2;
                };
                decrement_under_lock(&lock, &counter)
            })
            .unwrap()
        })
        .collect();
    no_update_lost(&mut children, &lock, &counter);
}

#[test]
fn ten_processes_inherit_an_anonymous_lock() {
    let lock = Shared::<Lock>::anon(()).unwrap();
    let counter = Shared::<AtomicU64>::anon(PROCESSES * ROUNDS).unwrap();
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|_| fork(|| decrement_under_lock(&lock, &counter)).unwrap())
        .collect();
    no_update_lost(&mut children, &lock, &counter);
}

#[test]
fn a_lock_held_in_another_process_times_out_here() {
    let (_names, name) = common::segment_name("test", "held");
    let lock = Shared::<Lock>::create(&name, ()).unwrap();
    let holding = Shared::<shmipc::Event>::anon(()).unwrap();
    let release = Shared::<shmipc::Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let lock = Shared::<Lock>::open(&name).unwrap();
        let _guard = lock.lock().unwrap();
        holding.set();
        if release.wait_timeout(std::time::Duration::from_secs(30)) {
            0
        } else {
            1
        }
    })
    .unwrap();
    assert!(holding.wait_timeout(std::time::Duration::from_secs(30)));
    assert!(lock.is_locked());
    let owner = lock.owner().expect("held");
    assert_eq!(owner.tid, child.pid(), "the owner's thread is the child's");
    assert!(owner.token.slot().is_some(), "the owner has a peer slot");
    assert_eq!(
        lock.lock_timeout(std::time::Duration::from_millis(50))
            .unwrap_err(),
        shmipc::LockError::Timeout
    );
    release.set();
    assert_eq!(common::join(&mut child), shmipc::ExitStatus::Code(0));
    assert!(lock.try_lock().is_ok());
}
