//! Condition and Barrier across real processes.

mod common;

use std::time::{Duration, Instant};

use common::{join, join_all_ok, CHILD_TIMEOUT};
use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{fork, Barrier, BarrierError, Condition, ExitStatus, Named, Shared};

#[test]
fn notify_all_wakes_every_waiting_process() {
    let (_names, name) = common::segment_name("par-cond", "cond");
    let cond = Shared::<Condition>::create(&name, ()).unwrap();
    let go = Shared::<AtomicU32>::anon(0).unwrap();
    let waiting = Shared::<AtomicU32>::anon(0).unwrap();
    let mut children = Vec::new();
    for _ in 0..4 {
        let name = name.clone();
        let (go, waiting) = (&go, &waiting);
        children.push(
            fork(move || {
                let Ok(cond) = Shared::<Condition>::open(&name) else {
                    return 1;
                };
                let guard = cond.lock().unwrap();
                waiting.fetch_add(1, Ordering::SeqCst);
                let (_guard, ok) = guard
                    .wait_timeout_while(CHILD_TIMEOUT, || go.load(Ordering::SeqCst) == 0)
                    .unwrap();
                if ok {
                    0
                } else {
                    2
                }
            })
            .unwrap(),
        );
    }
    assert!(common::eventually(CHILD_TIMEOUT, || waiting
        .load(Ordering::SeqCst)
        == 4));
    {
        let _guard = cond.lock().unwrap();
        go.store(1, Ordering::SeqCst);
        cond.notify_all();
    }
    join_all_ok(&mut children);
}

#[test]
fn notify_one_hands_out_tokens_one_at_a_time() {
    let cond = Shared::<Condition>::anon(()).unwrap();
    let tokens = Shared::<AtomicU32>::anon(0).unwrap();
    let taken = Shared::<AtomicU32>::anon(0).unwrap();
    let mut children = Vec::new();
    for _ in 0..3 {
        let (cond, tokens, taken) = (&cond, &tokens, &taken);
        children.push(
            fork(move || {
                let guard = cond.lock().unwrap();
                let guard = guard
                    .wait_while(|| tokens.load(Ordering::SeqCst) == 0)
                    .unwrap();
                tokens.fetch_sub(1, Ordering::SeqCst);
                taken.fetch_add(1, Ordering::SeqCst);
                drop(guard);
                0
            })
            .unwrap(),
        );
    }
    for round in 1..=3 {
        {
            let _guard = cond.lock().unwrap();
            tokens.fetch_add(1, Ordering::SeqCst);
            cond.notify_one();
        }
        assert!(
            common::eventually(CHILD_TIMEOUT, || taken.load(Ordering::SeqCst) == round),
            "token {round} was not taken"
        );
    }
    join_all_ok(&mut children);
    assert_eq!(tokens.load(Ordering::SeqCst), 0);
}

#[test]
fn wait_timeout_without_a_notify_times_out() {
    let cond = Shared::<Condition>::anon(()).unwrap();
    let guard = cond.lock().unwrap();
    let t = Instant::now();
    let (guard, notified) = guard.wait_timeout(Duration::from_millis(50)).unwrap();
    assert!(!notified);
    assert!(t.elapsed() >= Duration::from_millis(50));
    drop(guard);
    assert!(!cond.raw_lock().is_locked());
}

const PARTIES: u32 = 4;
const ROUNDS: usize = 30;

#[test]
fn a_barrier_releases_all_parties_together_round_after_round() {
    let (_names, name) = common::segment_name("par-barrier", "barrier");
    let barrier = Shared::<Barrier>::create(&name, PARTIES).unwrap();
    // Per round: arrivals, then leaders.
    let arrivals: Vec<Shared<AtomicU32>> = (0..ROUNDS).map(|_| Shared::anon(0).unwrap()).collect();
    let leaders: Vec<Shared<AtomicU32>> = (0..ROUNDS).map(|_| Shared::anon(0).unwrap()).collect();
    let party = |b: &Barrier| -> i32 {
        for r in 0..ROUNDS {
            arrivals[r].fetch_add(1, Ordering::SeqCst);
            match b.wait_timeout(CHILD_TIMEOUT) {
                Ok(leader) => {
                    leaders[r].fetch_add(leader as u32, Ordering::SeqCst);
                }
                Err(_) => return 1,
            }
            // Released only once everyone had arrived in this round.
            if arrivals[r].load(Ordering::SeqCst) != PARTIES {
                return 2;
            }
        }
        0
    };
    let mut children = Vec::new();
    for _ in 1..PARTIES {
        let name = name.clone();
        let party = &party;
        children.push(
            fork(move || match Shared::<Barrier>::open(&name) {
                Ok(b) => party(&b),
                Err(_) => 3,
            })
            .unwrap(),
        );
    }
    assert_eq!(party(&barrier), 0);
    join_all_ok(&mut children);
    for (r, leader) in leaders.iter().enumerate() {
        assert_eq!(leader.load(Ordering::SeqCst), 1, "round {r}: one leader");
    }
    assert_eq!(barrier.n_waiting(), 0);
}

#[test]
fn a_barrier_timeout_breaks_it_for_everyone_until_reset() {
    let barrier = Shared::<Barrier>::anon(3).unwrap();
    let mut waiter = fork(|| match barrier.wait() {
        Err(BarrierError::Broken) => 0,
        Ok(_) => 1,
        Err(_) => 2,
    })
    .unwrap();
    while barrier.n_waiting() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    assert_eq!(
        barrier.wait_timeout(Duration::from_millis(100)),
        Err(BarrierError::Timeout)
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(
        join(&mut waiter),
        ExitStatus::Code(0),
        "the waiter saw Broken"
    );
    assert!(barrier.is_broken());
    assert_eq!(barrier.wait(), Err(BarrierError::Broken));

    barrier.reset();
    assert!(!barrier.is_broken());
    let mut a = fork(|| barrier.wait().map_or(9, |l| l as i32)).unwrap();
    let mut b = fork(|| barrier.wait().map_or(9, |l| l as i32)).unwrap();
    let me = barrier.wait().unwrap() as i32;
    let total = me + join(&mut a).code().unwrap() + join(&mut b).code().unwrap();
    assert_eq!(total, 1, "one leader after the reset");

    // Zero parties is refused when the barrier is made; a party count
    // found in memory (a hostile write) fails every wait instead.
    let e = Shared::<Barrier>::anon(0).unwrap_err();
    assert!(
        e.to_string().contains("parties 0 must be from 1 to 65535"),
        "{e}"
    );
    assert_eq!(Barrier::new(0).wait(), Err(BarrierError::InvalidParties(0)));
}
