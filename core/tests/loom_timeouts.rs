//! Loom models of timeouts racing the wake that would satisfy them: a wake
//! that comes with the deadline is never stranded, and a waiter that gives
//! up passes on a wake it took.
//!
//! Time is the futex model's clock. `advance` moves it on at a point of one
//! thread's program (so "the unlock, then the deadline" is an order loom
//! keeps); `fire` is a timer that ends a sleep at whatever point loom
//! chooses.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmipc-core --release --test 'loom_*'`.
#![cfg(loom)]

mod loom_support;

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use loom_support::model_with_preemptions;
use shmipc_core::futex::model::{advance, fire, stop_timers};
use shmipc_core::{Condition, Deadline, Event, Lock, LockError};

const TIMEOUT: Duration = Duration::from_millis(10);

#[test]
fn a_lock_released_before_the_deadline_is_taken() {
    // The holder releases, then the deadline passes. The waiter, whether
    // it is woken by the unlock or first notices its deadline, must take
    // the lock: it was free before the time ran out.
    model_with_preemptions(3, || {
        let lock = Arc::new(Lock::new());
        let guard = lock.lock().unwrap();
        let l = lock.clone();
        let waiter = thread::spawn(move || {
            let deadline = Deadline::after(TIMEOUT);
            l.lock_until(Some(&deadline)).map(drop)
        });
        drop(guard);
        advance(TIMEOUT);
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert!(!lock.is_locked());
    });
}

#[test]
fn a_sleeper_that_times_out_passes_the_wake_on() {
    // Two sleepers, one with a deadline. The unlock's single wake may go
    // to that one; this thread takes the lock again at once (no WAITERS
    // bit: the unlock cleared it), and only then does the deadline pass.
    // The woken sleeper finds the lock held and gives up; it must pass the
    // wake on (`Lock::pass_wake_on`), or the other sleeps on a lock whose
    // next unlock will not wake it.
    loom::model(|| {
        let lock = Arc::new(Lock::new());
        let guard = lock.lock().unwrap();
        let l = lock.clone();
        let timed = thread::spawn(move || {
            let deadline = Deadline::after(TIMEOUT);
            match l.lock_until(Some(&deadline)) {
                Ok(g) => drop(g),
                Err(e) => assert_eq!(e, LockError::Timeout),
            }
        });
        let l = lock.clone();
        let patient = thread::spawn(move || drop(l.lock().unwrap()));
        drop(guard);
        let again = lock.lock().unwrap();
        advance(TIMEOUT);
        drop(again);
        timed.join().unwrap();
        patient.join().unwrap();
        assert!(!lock.is_locked());
    });
}

#[test]
fn an_event_set_before_the_deadline_is_seen() {
    // Set, then the deadline passes: the waiter reports the set, whether
    // it was asleep, about to sleep, or woken by the clock first.
    model_with_preemptions(3, || {
        let event = Arc::new(Event::new());
        let e = event.clone();
        let waiter = thread::spawn(move || e.wait_timeout(TIMEOUT));
        event.set();
        advance(TIMEOUT);
        assert!(waiter.join().unwrap(), "a set before the deadline was lost");
    });
}

#[test]
fn a_condition_notified_before_the_deadline_reports_it() {
    // The notifier notifies under the lock, then the deadline passes. A
    // waiter that was already waiting when the notify came must report it
    // (`true`), even if it looks at the clock only after the deadline.
    model_with_preemptions(3, || {
        let cond = Arc::new(Condition::new());
        let waiting = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let (c, w) = (cond.clone(), waiting.clone());
        let waiter = thread::spawn(move || {
            let guard = c.lock().unwrap();
            // Under the lock, so the notifier reads it under the lock too.
            w.store(true, loom::sync::atomic::Ordering::Relaxed);
            let (_guard, notified) = guard.wait_timeout(TIMEOUT).unwrap();
            notified
        });
        let saw_waiter = {
            let _guard = cond.lock().unwrap();
            cond.notify_one();
            waiting.load(loom::sync::atomic::Ordering::Relaxed)
        };
        advance(TIMEOUT);
        // A waiter that began after the notify (and after the clock moved)
        // has a later deadline: a timer, started only now, ends its wait.
        let late = thread::spawn(|| {
            fire();
        });
        let notified = waiter.join().unwrap();
        stop_timers();
        late.join().unwrap();
        if saw_waiter {
            assert!(
                notified,
                "a notify before the deadline was reported as a timeout"
            );
        } else {
            // It began to wait after the notify: nothing can wake it but
            // the clock.
            assert!(!notified);
        }
    });
}
