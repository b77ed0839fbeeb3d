//! Loom models of the n-party Barrier: every round releases all parties
//! with exactly one leader, a party that times out breaks the barrier for
//! everyone waiting (and no release is undone), and `reset` wakes those
//! asleep in the old generation without passing them.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmipc-core --release --test 'loom_*'`.
#![cfg(loom)]

mod loom_support;

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use loom_support::model_with_preemptions;
use shmipc_core::futex::model::{fire, stop_timers};
use shmipc_core::{Barrier, BarrierError};

#[test]
fn three_parties_one_leader() {
    model_with_preemptions(3, || {
        let barrier = Arc::new(Barrier::new(3));
        let others: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                thread::spawn(move || b.wait().unwrap())
            })
            .collect();
        let mut leaders = barrier.wait().unwrap() as u32;
        for t in others {
            leaders += t.join().unwrap() as u32;
        }
        assert_eq!(leaders, 1);
        assert_eq!(barrier.n_waiting(), 0);
    });
}

#[test]
fn two_rounds_each_with_one_leader() {
    // A fast party arrives for round two while the other is still waking
    // from round one: the generation keeps the rounds apart.
    model_with_preemptions(3, || {
        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        let other = thread::spawn(move || [b.wait().unwrap(), b.wait().unwrap()]);
        let mine = [barrier.wait().unwrap(), barrier.wait().unwrap()];
        let theirs = other.join().unwrap();
        assert!(mine[0] != theirs[0], "round one: exactly one leader");
        assert!(mine[1] != theirs[1], "round two: exactly one leader");
    });
}

#[test]
fn a_timed_out_party_breaks_the_barrier_for_everyone() {
    // Three parties, one of them with a timeout that a timer may end at
    // any moment. Either the round passes for all three (one leader), or
    // the timed party gets Timeout and the others Broken: a release and a
    // timeout at the same moment never give both answers, and a party
    // asleep when the barrier breaks is woken.
    loom::model(|| {
        let barrier = Arc::new(Barrier::new(3));
        let b = barrier.clone();
        let timed = thread::spawn(move || b.wait_timeout(Duration::from_millis(10)));
        let b = barrier.clone();
        let patient = thread::spawn(move || b.wait());
        let timer = thread::spawn(|| {
            fire();
        });
        let mine = barrier.wait();
        let results = [timed.join().unwrap(), patient.join().unwrap(), mine];
        stop_timers();
        timer.join().unwrap();
        match results {
            [Ok(a), Ok(b), Ok(c)] => {
                assert_eq!(a as u32 + b as u32 + c as u32, 1, "one leader");
                assert!(!barrier.is_broken());
            }
            [Err(BarrierError::Timeout), Err(BarrierError::Broken), Err(BarrierError::Broken)] => {
                assert!(barrier.is_broken());
            }
            other => panic!("a round both passed and broke: {other:?}"),
        }
    });
}

#[test]
fn reset_wakes_a_waiter_of_the_old_generation_without_passing_it() {
    // A party waits alone; `reset` races its arrival. If it arrived first,
    // it must wake with Broken (not pass: no one else arrived); either way
    // it then meets this thread in the new generation.
    model_with_preemptions(3, || {
        let barrier = Arc::new(Barrier::new(2));
        let b = barrier.clone();
        let waiter = thread::spawn(move || {
            let mut broken = 0;
            loop {
                match b.wait() {
                    Ok(leader) => return (leader, broken),
                    Err(BarrierError::Broken) => broken += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        barrier.reset();
        let mine = barrier.wait().unwrap();
        let (theirs, broken) = waiter.join().unwrap();
        assert!(mine != theirs, "exactly one leader");
        assert!(broken <= 1, "woken as broken more than once");
        assert!(!barrier.is_broken());
    });
}
