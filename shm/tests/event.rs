//! An Event wakes every waiting process.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{eventually, join, join_all_ok};
use shmipc::{fork, AtomicU32, Child, Event, ExitStatus, Named, Shared};

#[test]
fn set_wakes_four_waiting_processes() {
    let (names, event_name) = common::segment_name("test", "event");
    let waiting_name = names.name("waiting");
    let event = Shared::<Event>::create(&event_name, ()).unwrap();
    let waiting = Shared::<AtomicU32>::create(&waiting_name, 0).unwrap();

    let mut children: Vec<Child> = (0..4)
        .map(|_| {
            fork(|| {
                let (Ok(event), Ok(waiting)) = (
                    Shared::<Event>::open(&event_name),
                    Shared::<AtomicU32>::open(&waiting_name),
                ) else {
                    return 2;
                };
                waiting.fetch_add(1, Ordering::SeqCst);
                if event.wait_timeout(Duration::from_secs(10)) {
                    0
                } else {
                    1
                }
            })
            .unwrap()
        })
        .collect();
    assert!(eventually(Duration::from_secs(10), || waiting
        .load(Ordering::SeqCst)
        == 4));
    // Give them time to fall asleep, so the set really has to wake them.
    std::thread::sleep(Duration::from_millis(50));
    assert!(children.iter_mut().all(|c| c.is_alive()));
    event.set();
    join_all_ok(&mut children);
}

#[test]
fn wait_timeout_returns_false_after_its_timeout() {
    let (_names, name) = common::segment_name("test", "timeout");
    let event = Shared::<Event>::create(&name, ()).unwrap();
    let timeout = Duration::from_millis(200);
    let start = Instant::now();
    assert!(!event.wait_timeout(timeout));
    let took = start.elapsed();
    assert!(took >= timeout, "returned after {took:?}");
    assert!(
        took < timeout + Duration::from_secs(2),
        "returned after {took:?}"
    );

    // The same in another process.
    let mut child = fork(|| {
        let event = Shared::<Event>::open(&name).unwrap();
        let start = Instant::now();
        let woke = event.wait_timeout(timeout);
        let took = start.elapsed();
        match (
            woke,
            took >= timeout,
            took < timeout + Duration::from_secs(2),
        ) {
            (false, true, true) => 0,
            (true, _, _) => 1,
            _ => 2,
        }
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn clear_rearms_the_event() {
    let (_names, name) = common::segment_name("test", "rearm");
    let event = Shared::<Event>::create(&name, ()).unwrap();
    event.set();
    assert!(event.is_set());
    event.clear();
    assert!(!event.is_set());

    // A child now waits in vain...
    let mut child = fork(|| {
        let event = Shared::<Event>::open(&name).unwrap();
        if event.wait_timeout(Duration::from_millis(100)) {
            1
        } else {
            0
        }
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));

    // ...until it is set again.
    let mut child = fork(|| {
        let event = Shared::<Event>::open(&name).unwrap();
        if event.wait_timeout(Duration::from_secs(10)) {
            0
        } else {
            1
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    event.set();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}
