//! Loom models of the Event: no lost wake-up when `set` races `wait`, even
//! when a `clear` follows at once.
#![cfg(loom)]

mod loom_support;

use loom::sync::Arc;
use loom::thread;
use loom_support::model_with_preemptions;
use shmipc_core::futex::model::until_sleeping;
use shmipc_core::Event;

#[test]
fn set_racing_wait_is_never_lost() {
    model_with_preemptions(3, || {
        let event = Arc::new(Event::new());
        let e2 = event.clone();
        let t = thread::spawn(move || e2.wait());
        event.set();
        t.join().unwrap();
        assert!(event.is_set());
    });
}

#[test]
fn set_wakes_every_waiter() {
    model_with_preemptions(3, || {
        let event = Arc::new(Event::new());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let e = event.clone();
                thread::spawn(move || e.wait())
            })
            .collect();
        event.set();
        for w in waiters {
            w.join().unwrap();
        }
    });
}

#[test]
fn clear_then_set_wakes_a_waiter() {
    // A clear that races the waiter must not strand it: the next set wakes it.
    model_with_preemptions(3, || {
        let event = Arc::new(Event::new());
        event.set();
        let e2 = event.clone();
        let t = thread::spawn(move || e2.wait());
        event.clear();
        event.set();
        t.join().unwrap();
    });
}

#[test]
fn a_set_then_clear_still_releases_a_sleeping_waiter() {
    // A pulse, set and at once clear, while the waiter sleeps: it must
    // return, though the flag is down again by the time it looks (the
    // generation says a set happened), with no later set to help it.
    model_with_preemptions(3, || {
        let event = Arc::new(Event::new());
        let e2 = event.clone();
        let t = thread::spawn(move || e2.wait());
        until_sleeping(1);
        event.set();
        event.clear();
        assert!(!event.is_set());
        t.join().unwrap();
    });
}

#[test]
fn a_set_then_clear_racing_the_arrival() {
    // The same pulse while the waiter may still be on its way: one that
    // saw the flag down before the set returns; one that arrives after the
    // clear waits for the next set. Neither hangs nor misreads the word.
    model_with_preemptions(3, || {
        let event = Arc::new(Event::new());
        let e2 = event.clone();
        let t = thread::spawn(move || e2.wait());
        event.set();
        event.clear();
        event.set();
        t.join().unwrap();
    });
}
