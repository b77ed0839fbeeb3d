//! Blocking ping-pong across processes, on an SPSC queue and on an MPMC
//! queue: each side sleeps on every message, so every message needs a
//! wake-up that works. Their notifiers use the cheap side of an asymmetric
//! barrier (`shmipc_core::membarrier`) when the kernel allows; a wake-up the
//! protocol failed to deliver would be rescued only by the 50 ms liveness
//! re-check, and shows up here as a slow trip.

mod common;

use std::time::{Duration, Instant};

use common::join;
use shmipc::{fork, ExitStatus, Named, Queue, RingConfig, SpscQueue, Unlinker};

const ROUNDS: u64 = 3_000;
const PATIENCE: Duration = Duration::from_secs(30);

/// The echoing child's loop: receive `v`, send `v + 1`, `ROUNDS` times.
/// Exits 2 if a receive fails, 3 if a send fails.
fn echo(mut recv: impl FnMut() -> Option<u64>, mut send: impl FnMut(u64) -> bool) -> i32 {
    for _ in 0..ROUNDS {
        let Some(v) = recv() else {
            return 2;
        };
        if !send(v + 1) {
            return 3;
        }
    }
    0
}

/// Runs `ROUNDS` round trips through `trip` (send `i`, expect `i + 1` back)
/// and asserts that fewer than 1% waited out a liveness re-check.
fn assert_every_trip_is_woken(mut trip: impl FnMut(u64) -> u64) {
    let mut slow = 0;
    for i in 0..ROUNDS {
        let t = Instant::now();
        assert_eq!(trip(i), i + 1);
        // Not a timing test: a trip is normally tens of microseconds; only
        // one that waited out a liveness re-check (50 ms) is counted.
        if t.elapsed() >= Duration::from_millis(45) {
            slow += 1;
        }
    }
    assert!(
        slow * 100 < ROUNDS,
        "{slow} of {ROUNDS} round trips were only rescued by the liveness re-check"
    );
}

#[test]
fn every_blocking_round_trip_is_woken_by_its_message() {
    let names = Unlinker::new("test");
    let (ping, pong) = (names.name("ping"), names.name("pong"));
    let _a = SpscQueue::<u64>::create(&ping, RingConfig::new(4)).unwrap();
    let _b = SpscQueue::<u64>::create(&pong, RingConfig::new(4)).unwrap();
    let mut child = fork({
        let (ping, pong) = (ping.clone(), pong.clone());
        move || {
            let mut rx = SpscQueue::<u64>::consumer(&ping).unwrap();
            let mut tx = SpscQueue::<u64>::producer(&pong).unwrap();
            echo(
                || rx.pop_timeout(PATIENCE).ok(),
                |v| tx.push_timeout(v, PATIENCE).is_ok(),
            )
        }
    })
    .unwrap();
    let mut tx = SpscQueue::<u64>::producer(&ping).unwrap();
    let mut rx = SpscQueue::<u64>::consumer(&pong).unwrap();
    assert_every_trip_is_woken(|i| {
        tx.push_timeout(i, PATIENCE).unwrap();
        rx.pop_timeout(PATIENCE).unwrap()
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn every_blocking_mpmc_round_trip_is_woken_by_its_message() {
    let names = Unlinker::new("test");
    let (ping_name, pong_name) = (names.name("ping"), names.name("pong"));
    let ping = Queue::<u64>::create(&ping_name, RingConfig::new(4)).unwrap();
    let pong = Queue::<u64>::create(&pong_name, RingConfig::new(4)).unwrap();
    let mut child = fork({
        let (ping_name, pong_name) = (ping_name.clone(), pong_name.clone());
        move || {
            let rx = Queue::<u64>::open(&ping_name).unwrap();
            let tx = Queue::<u64>::open(&pong_name).unwrap();
            echo(
                || rx.pop_timeout(PATIENCE).ok(),
                |v| tx.push_timeout(v, PATIENCE).is_ok(),
            )
        }
    })
    .unwrap();
    assert_every_trip_is_woken(|i| {
        ping.push_timeout(i, PATIENCE).unwrap();
        pong.pop_timeout(PATIENCE).unwrap()
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}
