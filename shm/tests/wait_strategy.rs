//! Wait strategies across processes: what an idle waiter costs in
//! processor time (getrusage, a bound on CPU, not on time), that every
//! strategy delivers and honours deadlines, and that a waiter that never
//! sleeps still makes its owner checks (a dead producer's claim is
//! skipped).

mod common;

use std::time::{Duration, Instant};

use common::{join, CHILD_TIMEOUT};
use shmipc::{
    fork, BytesConfig, Event, ExitStatus, Named, Pipe, PopError, Queue, RecvError, RingConfig,
    Shared, SpscQueue, WaitStrategy,
};

/// How long the waiter is left idle.
const IDLE: Duration = Duration::from_secs(1);

/// The share of one core (in percent) `wait` used while it ran, and how
/// long it ran.
fn cpu_share(wait: impl FnOnce() -> bool) -> Option<(f64, Duration)> {
    let (cpu, wall) = (common::cpu_time(libc::RUSAGE_THREAD), Instant::now());
    if !wait() {
        return None;
    }
    let (cpu, wall) = (common::cpu_time(libc::RUSAGE_THREAD) - cpu, wall.elapsed());
    Some((100.0 * cpu.as_secs_f64() / wall.as_secs_f64(), wall))
}

/// Exit code of a waiter child: 0 if it used at most `max_percent` of a
/// core (or, with `at_least`, at least that much) while blocked for at
/// least [`IDLE`]; 2 if its wait returned the wrong thing; 3 if it
/// returned too early; 4 if the bound failed.
fn judge(share: Option<(f64, Duration)>, percent: f64, at_least: bool) -> i32 {
    let Some((used, wall)) = share else {
        return 2;
    };
    if wall < IDLE {
        return 3;
    }
    eprintln!("waiter used {used:.2}% of a core over {wall:?}");
    let ok = if at_least {
        used >= percent
    } else {
        used <= percent
    };
    if ok {
        0
    } else {
        4
    }
}

const CODES: &str = "2: wrong result; 3: returned before the idle time; 4: CPU bound failed";

/// Starts a child that opens its waiter (`open`) and waits with it
/// (`wait`, which reports whether it got what it expected) while the
/// parent stays idle for [`IDLE`] and then calls `wake`; asserts that the
/// child used at most `percent` of a core (or, with `at_least`, at least
/// that much) while it waited.
fn idle_waiter<W>(
    open: impl FnOnce() -> W,
    wait: impl FnOnce(&mut W) -> bool,
    (percent, at_least): (f64, bool),
    wake: impl FnOnce(),
) {
    let ready = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let mut waiter = open();
        ready.set();
        judge(cpu_share(|| wait(&mut waiter)), percent, at_least)
    })
    .unwrap();
    assert!(
        ready.wait_timeout(CHILD_TIMEOUT),
        "the waiter never started"
    );
    std::thread::sleep(IDLE + Duration::from_millis(50));
    wake();
    match join(&mut child) {
        ExitStatus::Code(c) => assert_eq!(c, 0, "{CODES}"),
        other => panic!("waiter ended with {other:?}"),
    }
}

/// A sleeping waiter's bound: at most 2% of a core.
const AT_MOST_2: (f64, bool) = (2.0, false);

#[test]
fn an_idle_spsc_consumer_with_the_default_strategy_uses_at_most_2_percent_of_a_core() {
    let (_names, name) = common::segment_name("wait-idle-spsc", "q");
    let q = SpscQueue::<u64>::create(&name, RingConfig::new(16)).unwrap();
    let mut tx = q.take_producer().unwrap();
    idle_waiter(
        || {
            let rx = SpscQueue::<u64>::consumer(&name).unwrap();
            assert_eq!(rx.wait_strategy(), WaitStrategy::DEFAULT);
            rx
        },
        |rx| rx.pop() == Ok(7),
        AT_MOST_2,
        || tx.push(7).unwrap(),
    );
}

#[test]
fn an_idle_mpmc_consumer_with_the_default_strategy_uses_at_most_2_percent_of_a_core() {
    let (_names, name) = common::segment_name("wait-idle-mpmc", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(16)).unwrap();
    idle_waiter(
        || Queue::<u64>::open(&name).unwrap(),
        |q| q.pop() == Ok(7),
        AT_MOST_2,
        || q.push(7).unwrap(),
    );
}

#[test]
fn an_idle_pipe_end_with_the_default_strategy_uses_at_most_2_percent_of_a_core() {
    let (_names, name) = common::segment_name("wait-idle-pipe", "p");
    let a = Pipe::create(&name, BytesConfig::for_max_message(64).unwrap()).unwrap();
    idle_waiter(
        || Pipe::open(&name).unwrap(),
        |b| {
            let mut buf = [0u8; 8];
            b.recv_into(&mut buf) == Ok(3) && &buf[..3] == b"abc"
        },
        AT_MOST_2,
        || a.send(b"abc").unwrap(),
    );
}

/// The measurement can tell a spinning waiter from a sleeping one: a
/// waiter that spins for the whole idle second is seen using a large share
/// of a core (at least 10%, allowing for a machine shared with other
/// work).
#[test]
fn an_idle_spinning_waiter_is_seen_using_a_core() {
    let (_names, name) = common::segment_name("wait-idle-spin", "q");
    let q = SpscQueue::<u64>::create(&name, RingConfig::new(16)).unwrap();
    let mut tx = q.take_producer().unwrap();
    idle_waiter(
        || {
            SpscQueue::<u64>::consumer(&name)
                .unwrap()
                .with_wait_strategy(WaitStrategy::Spin)
        },
        |rx| rx.pop() == Ok(7),
        (10.0, true),
        || tx.push(7).unwrap(),
    );
}

const STRATEGIES: [WaitStrategy; 4] = [
    WaitStrategy::Spin,
    WaitStrategy::Park,
    WaitStrategy::DEFAULT,
    // A spin shorter than a round trip, then mostly yields.
    WaitStrategy::Adaptive {
        spin: Duration::from_nanos(100),
        window: Duration::from_millis(2),
    },
];

/// Every strategy carries a ping-pong across processes through the
/// blocking calls of all three queues, and every one times out.
#[test]
fn every_strategy_delivers_across_processes_and_times_out() {
    const ROUNDS: u64 = 2000;
    for (i, s) in STRATEGIES.into_iter().enumerate() {
        let (_names, [ping, pong, pipe]) =
            common::segment_names("wait-pingpong", ["ping", "pong", "pipe"]);
        let q_ping = Queue::<u64>::create(&ping, RingConfig::new(4)).unwrap();
        let q_pong = SpscQueue::<u64>::create(&pong, RingConfig::new(4)).unwrap();
        let p = Pipe::create(&pipe, BytesConfig::for_max_message(64).unwrap()).unwrap();
        let mut child = fork(|| {
            let mut rx = Queue::<u64>::open(&ping).unwrap();
            rx.set_wait_strategy(s);
            let mut tx = SpscQueue::<u64>::producer(&pong)
                .unwrap()
                .with_wait_strategy(s);
            let mut end = Pipe::open(&pipe).unwrap();
            end.set_wait_strategy(s);
            for _ in 0..ROUNDS {
                let Ok(v) = rx.pop() else { return 2 };
                if tx.push(v + 1).is_err() {
                    return 3;
                }
                let mut buf = [0u8; 8];
                if end.recv_into(&mut buf) != Ok(8) || end.send(&buf).is_err() {
                    return 4;
                }
            }
            0
        })
        .unwrap();
        let mut rx = q_pong.take_consumer().unwrap().with_wait_strategy(s);
        let mut tx = q_ping;
        tx.set_wait_strategy(s);
        let mut end = p;
        end.set_wait_strategy(s);
        for v in 0..ROUNDS {
            tx.push(v).unwrap();
            assert_eq!(rx.pop(), Ok(v + 1), "strategy #{i}");
            end.send(&v.to_ne_bytes()).unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(end.recv_into(&mut buf), Ok(8), "strategy #{i}");
            assert_eq!(u64::from_ne_bytes(buf), v, "strategy #{i}");
        }
        assert_eq!(join(&mut child), ExitStatus::Code(0), "strategy #{i}");
        // Nothing more comes. The child has exited, so the SPSC queue and
        // the pipe it sent on are at end-of-stream; the MPMC queue, which
        // this process pushed on, times out. Each within its timeout and a
        // generous second.
        let t = Duration::from_millis(100);
        let start = Instant::now();
        assert_eq!(
            rx.pop_timeout(t),
            Err(PopError::Disconnected),
            "strategy #{i}"
        );
        assert_eq!(tx.pop_timeout(t), Err(PopError::Timeout), "strategy #{i}");
        let mut buf = [0u8; 8];
        assert_eq!(
            end.recv_into_timeout(&mut buf, t),
            Err(RecvError::Disconnected),
            "strategy #{i}"
        );
        assert!(
            start.elapsed() >= t && start.elapsed() < 3 * t + Duration::from_secs(1),
            "strategy #{i}: {:?}",
            start.elapsed()
        );
    }
}

/// A consumer that never sleeps (spins) still looks for dead claimants: a
/// producer killed between its claim and its publish is skipped, and the
/// item after it arrives. The consumer waits with no deadline, in a child
/// (a deadline would make one owner check when it passes, and hide a
/// spinner that makes none).
#[test]
fn a_spinning_consumer_skips_a_dead_producers_claim() {
    let (_names, name) = common::segment_name("wait-spin-dead", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let claimed = Shared::<Event>::anon(()).unwrap();
    let mut producer = fork(|| {
        let q = Queue::<u64>::open(&name).unwrap();
        let _ = q.push_pausing(5, CHILD_TIMEOUT, || {
            claimed.set();
            std::thread::sleep(CHILD_TIMEOUT);
        });
        1
    })
    .unwrap();
    assert!(claimed.wait_timeout(CHILD_TIMEOUT));
    producer.kill().unwrap();
    assert_eq!(join(&mut producer), ExitStatus::Signal(libc::SIGKILL));
    q.push(7).unwrap();
    let mut consumer = fork(|| {
        let mut rx = Queue::<u64>::open(&name).unwrap();
        rx.set_wait_strategy(WaitStrategy::Spin);
        i32::from(rx.pop() != Ok(7))
    })
    .unwrap();
    assert_eq!(
        join(&mut consumer),
        ExitStatus::Code(0),
        "1: the spinning consumer did not get the item after the dead claim"
    );
}
