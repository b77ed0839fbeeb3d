//! Loom models of the Event: no lost wake-up when `set` races `wait`, even
//! when a `clear` follows at once.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shmipc_core::Event;

#[test]
fn set_racing_wait_is_never_lost() {
    loom::model(|| {
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
    loom::model(|| {
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
    loom::model(|| {
        let event = Arc::new(Event::new());
        event.set();
        let e2 = event.clone();
        let t = thread::spawn(move || e2.wait());
        event.clear();
        event.set();
        t.join().unwrap();
    });
}
