//! Loom models of the Condition: a notify that races a wait is never lost,
//! and `notify_all` wakes every waiter.
//!
//! Notifiers notify with the lock held, as the documentation asks. A lost
//! wake-up is a waiter asleep for ever, which loom reports as a deadlock.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmipc-core --release --test 'loom_*'`.
#![cfg(loom)]

mod loom_support;

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use loom_support::model_with_preemptions;
use shmipc_core::Condition;

/// A condition and the state it is about, guarded by its lock.
struct Shared {
    cond: Condition,
    /// How many notifies have been sent and not yet taken.
    tokens: UnsafeCell<u32>,
}

// SAFETY: `tokens` is only touched while `cond`'s lock is held; loom
// reports any access that is not so ordered.
unsafe impl Sync for Shared {}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        cond: Condition::new(),
        tokens: UnsafeCell::new(0),
    })
}

/// Waits until a token is there, then takes it.
fn take_token(s: &Shared) {
    let guard = s.cond.lock().unwrap();
    // SAFETY: the lock is held while the predicate runs.
    let guard = guard
        .wait_while(|| s.tokens.with(|t| unsafe { *t }) == 0)
        .unwrap();
    // SAFETY: the lock is held.
    s.tokens.with_mut(|t| unsafe { *t -= 1 });
    drop(guard);
}

/// Adds `n` tokens and notifies, with the lock held.
fn give_tokens(s: &Shared, n: u32, all: bool) {
    let _guard = s.cond.lock().unwrap();
    // SAFETY: the lock is held.
    s.tokens.with_mut(|t| unsafe { *t += n });
    if all {
        s.cond.notify_all();
    } else {
        s.cond.notify_one();
    }
}

/// `waiters` threads each wait for a token while this thread gives
/// `gifts` in order (`(tokens, notify_all)`); every waiter must get
/// through, and every token be taken.
fn waiters_take_every_gift(waiters: usize, gifts: &[(u32, bool)]) {
    let s = shared();
    let waiters: Vec<_> = (0..waiters)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || take_token(&s))
        })
        .collect();
    for &(n, all) in gifts {
        give_tokens(&s, n, all);
    }
    for w in waiters {
        w.join().unwrap();
    }
    // SAFETY: every other thread has been joined.
    assert_eq!(s.tokens.with(|t| unsafe { *t }), 0);
}

#[test]
fn notify_one_racing_wait_is_never_lost() {
    model_with_preemptions(3, || waiters_take_every_gift(1, &[(1, false)]));
}

#[test]
fn two_notify_ones_wake_two_waiters() {
    // Each notify_one wakes one waiter (the futex model wakes exactly
    // one): two waiters, two notifies, and both waiters get through.
    loom::model(|| waiters_take_every_gift(2, &[(1, false), (1, false)]));
}

#[test]
fn notify_all_wakes_every_waiter() {
    loom::model(|| waiters_take_every_gift(2, &[(2, true)]));
}
