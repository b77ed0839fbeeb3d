//! Blocking ping-pong across processes, on an SPSC queue, an MPMC queue
//! and a byte queue: each side sleeps on every message, so every message
//! needs a wake-up that works. Their notifiers use the cheap side of an
//! asymmetric barrier (`shmipc_core::membarrier`) when the kernel allows.
//!
//! In a plain build a wake-up the protocol failed to deliver is rescued by
//! the 50 ms liveness re-check, and shows up here only as a slow trip (at
//! most 1% are tolerated, for a loaded machine). Built with the
//! `strict-wakes` feature (`.ci/run` has a step for it), sleeps have no
//! such slice: every blocking call here has a one-second timeout and a
//! single timeout fails the test, so one lost wake-up fails it.

mod common;

use std::time::{Duration, Instant};

use common::join;
use shmipc::{fork, ByteQueue, BytesConfig, ExitStatus, Named, Queue, RingConfig, SpscQueue};

const ROUNDS: u64 = 3_000;
/// Whether sleeps end only when woken or at their deadline.
const STRICT: bool = cfg!(feature = "strict-wakes");
/// Every blocking call's timeout. Strict: one second, ample for a trip of
/// tens of microseconds, and far more than a lost wake-up could cost
/// anywhere but in a strict build. Otherwise only a hang detector.
const PATIENCE: Duration = if STRICT {
    Duration::from_secs(1)
} else {
    Duration::from_secs(30)
};

/// The echoing child's loop: receive `v`, send `v + 1`, `ROUNDS` times.
/// Exits 2 if a receive fails (a timeout included), 3 if a send fails.
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

/// Runs `ROUNDS` round trips through `trip` (send `i`, expect `i + 1` back;
/// `Err` for a failed or timed-out call, which fails the test at once).
/// In a plain build it also asserts that fewer than 1% waited out a
/// liveness re-check.
fn assert_every_trip_is_woken(mut trip: impl FnMut(u64) -> Result<u64, String>) {
    let mut slow = 0;
    for i in 0..ROUNDS {
        let t = Instant::now();
        match trip(i) {
            Ok(v) => assert_eq!(v, i + 1, "round trip {i}"),
            Err(e) => panic!("round trip {i} of {ROUNDS} (strict: {STRICT}): {e}"),
        }
        // A call whose wake-up was lost can still succeed at its deadline
        // (its last look finds the item), so a trip that took a whole
        // timeout fails too.
        assert!(
            t.elapsed() < PATIENCE,
            "round trip {i} of {ROUNDS} took {:?}, a whole timeout (strict: {STRICT})",
            t.elapsed()
        );
        // Not a timing test: a trip is normally tens of microseconds; only
        // one that waited out a liveness re-check (50 ms) is counted.
        if t.elapsed() >= Duration::from_millis(45) {
            slow += 1;
        }
    }
    assert!(
        STRICT || slow * 100 < ROUNDS,
        "{slow} of {ROUNDS} round trips were only rescued by the liveness re-check"
    );
}

#[test]
fn every_blocking_round_trip_is_woken_by_its_message() {
    let (_names, [ping, pong]) = common::segment_names("test", ["ping", "pong"]);
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
        tx.push_timeout(i, PATIENCE)
            .map_err(|e| format!("push: {e}"))?;
        rx.pop_timeout(PATIENCE).map_err(|e| format!("pop: {e}"))
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn every_blocking_mpmc_round_trip_is_woken_by_its_message() {
    let (_names, [ping_name, pong_name]) = common::segment_names("test", ["ping", "pong"]);
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
        ping.push_timeout(i, PATIENCE)
            .map_err(|e| format!("push: {e}"))?;
        pong.pop_timeout(PATIENCE).map_err(|e| format!("pop: {e}"))
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

/// Receives one 8-byte message as a `u64`.
fn recv_u64(q: &ByteQueue) -> Result<u64, String> {
    let mut buf = [0u8; 8];
    match q.recv_into_timeout(&mut buf, PATIENCE) {
        Ok(8) => Ok(u64::from_le_bytes(buf)),
        Ok(n) => Err(format!("received {n} bytes, sent 8")),
        Err(e) => Err(format!("receive: {e}")),
    }
}

#[test]
fn every_blocking_byte_queue_round_trip_is_woken_by_its_message() {
    let (_names, [ping_name, pong_name]) = common::segment_names("test", ["ping", "pong"]);
    // Room for two messages: senders sleep too, on a full queue.
    let ping = ByteQueue::create(&ping_name, BytesConfig::new(64, 8)).unwrap();
    let pong = ByteQueue::create(&pong_name, BytesConfig::new(64, 8)).unwrap();
    let mut child = fork({
        let (ping_name, pong_name) = (ping_name.clone(), pong_name.clone());
        move || {
            let rx = ByteQueue::open(&ping_name).unwrap();
            let tx = ByteQueue::open(&pong_name).unwrap();
            echo(
                || recv_u64(&rx).ok(),
                |v| tx.send_timeout(&v.to_le_bytes(), PATIENCE).is_ok(),
            )
        }
    })
    .unwrap();
    assert_every_trip_is_woken(|i| {
        ping.send_timeout(&i.to_le_bytes(), PATIENCE)
            .map_err(|e| format!("send: {e}"))?;
        recv_u64(&pong)
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

/// `membarrier(MEMBARRIER_CMD_QUERY)`: the commands this kernel supports
/// (0 if it has no `membarrier` or a filter refuses it).
fn membarrier_commands() -> i64 {
    // SAFETY: MEMBARRIER_CMD_QUERY (0) takes two integers and touches no
    // memory.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, 0 as libc::c_long, 0 as libc::c_long) };
    r.max(0)
}

/// Where the kernel offers global expedited barriers (and lets us register
/// for them), the queues' notifiers must use the light path: a plain load
/// of the sleeper count. Where it does not, they must not (a sleeper could
/// not make the heavy barrier that path needs). Either way the answer is
/// checked, in this process and in a forked child (which registers again).
#[test]
fn notifiers_use_the_membarrier_light_path_where_the_kernel_allows() {
    const GLOBAL_EXPEDITED: i64 = 1 << 1;
    const REGISTER_GLOBAL_EXPEDITED: i64 = 1 << 2;
    let cmds = membarrier_commands();
    let supported = cmds & GLOBAL_EXPEDITED != 0 && cmds & REGISTER_GLOBAL_EXPEDITED != 0;
    eprintln!("membarrier commands: {cmds:#x}; global expedited supported: {supported}");

    let (_names, [mpmc_name, spsc_name]) = common::segment_names("test", ["mpmc", "spsc"]);
    let q = Queue::<u64>::create(&mpmc_name, RingConfig::new(4)).unwrap();
    let _s = SpscQueue::<u64>::create(&spsc_name, RingConfig::new(4)).unwrap();
    let mut tx = SpscQueue::<u64>::producer(&spsc_name).unwrap();
    // A notify on each side, then ask.
    q.push(1).unwrap();
    assert_eq!(q.pop(), Ok(1));
    tx.try_push(1).unwrap();
    assert_eq!(q.light_notify(), supported, "MPMC queue, this process");
    assert_eq!(tx.light_notify(), supported, "SPSC producer, this process");
    drop(tx);

    let mut child = fork({
        let (mpmc_name, spsc_name) = (mpmc_name.clone(), spsc_name.clone());
        move || {
            let q = Queue::<u64>::open(&mpmc_name).unwrap();
            let mut tx = SpscQueue::<u64>::producer(&spsc_name).unwrap();
            if q.push(2).is_err() || tx.try_push(2).is_err() {
                return 2;
            }
            match (q.light_notify(), tx.light_notify()) {
                (a, b) if a == supported && b == supported => 0,
                _ => 3,
            }
        }
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0), "in a forked child");
}
