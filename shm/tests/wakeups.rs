//! Blocking ping-pong across processes, on an SPSC queue and on an MPMC
//! queue: each side sleeps on every message, so every message needs a
//! wake-up that works. Their notifiers use the cheap side of an asymmetric
//! barrier (`shmipc_core::barrier`) when the kernel allows; a wake-up the
//! protocol failed to deliver would be rescued only by the 50 ms liveness
//! re-check, and shows up here as a slow trip.

mod common;

use std::time::{Duration, Instant};

use common::join;
use shmipc::{fork, ExitStatus, Queue, RingConfig, SpscQueue, Unlinker};

#[test]
fn every_blocking_round_trip_is_woken_by_its_message() {
    let names = Unlinker::new("test");
    let (ping, pong) = (names.name("ping"), names.name("pong"));
    let _a = SpscQueue::<u64>::create(&ping, RingConfig::new(4)).unwrap();
    let _b = SpscQueue::<u64>::create(&pong, RingConfig::new(4)).unwrap();
    let rounds = 3_000u64;
    let mut echo = fork({
        let (ping, pong) = (ping.clone(), pong.clone());
        move || {
            let mut rx = SpscQueue::<u64>::consumer(&ping).unwrap();
            let mut tx = SpscQueue::<u64>::producer(&pong).unwrap();
            for _ in 0..rounds {
                let Ok(v) = rx.pop_timeout(Duration::from_secs(30)) else {
                    return 2;
                };
                if tx.push_timeout(v + 1, Duration::from_secs(30)).is_err() {
                    return 3;
                }
            }
            0
        }
    })
    .unwrap();
    let mut tx = SpscQueue::<u64>::producer(&ping).unwrap();
    let mut rx = SpscQueue::<u64>::consumer(&pong).unwrap();
    let mut slow = 0;
    for i in 0..rounds {
        let t = Instant::now();
        tx.push_timeout(i, Duration::from_secs(30)).unwrap();
        assert_eq!(rx.pop_timeout(Duration::from_secs(30)).unwrap(), i + 1);
        // Not a timing test: a trip is normally tens of microseconds; only
        // one that waited out a liveness re-check (50 ms) is counted.
        if t.elapsed() >= Duration::from_millis(45) {
            slow += 1;
        }
    }
    assert_eq!(join(&mut echo), ExitStatus::Code(0));
    assert!(
        slow * 100 < rounds,
        "{slow} of {rounds} round trips were only rescued by the liveness re-check"
    );
}

#[test]
fn every_blocking_mpmc_round_trip_is_woken_by_its_message() {
    let names = Unlinker::new("test");
    let (ping_name, pong_name) = (names.name("ping"), names.name("pong"));
    let ping = Queue::<u64>::create(&ping_name, RingConfig::new(4)).unwrap();
    let pong = Queue::<u64>::create(&pong_name, RingConfig::new(4)).unwrap();
    let rounds = 3_000u64;
    let mut echo = fork({
        let (ping_name, pong_name) = (ping_name.clone(), pong_name.clone());
        move || {
            let rx = Queue::<u64>::open(&ping_name).unwrap();
            let tx = Queue::<u64>::open(&pong_name).unwrap();
            for _ in 0..rounds {
                let Ok(v) = rx.pop_timeout(Duration::from_secs(30)) else {
                    return 2;
                };
                if tx.push_timeout(v + 1, Duration::from_secs(30)).is_err() {
                    return 3;
                }
            }
            0
        }
    })
    .unwrap();
    let mut slow = 0;
    for i in 0..rounds {
        let t = Instant::now();
        ping.push_timeout(i, Duration::from_secs(30)).unwrap();
        assert_eq!(pong.pop_timeout(Duration::from_secs(30)).unwrap(), i + 1);
        if t.elapsed() >= Duration::from_millis(45) {
            slow += 1;
        }
    }
    assert_eq!(join(&mut echo), ExitStatus::Code(0));
    assert!(
        slow * 100 < rounds,
        "{slow} of {rounds} round trips were only rescued by the liveness re-check"
    );
}
