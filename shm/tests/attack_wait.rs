//! Attacks on `shmipc::wait` and the async forms (`tokio` feature), across
//! real processes: wakes that land on a future that is already gone,
//! futures that wait for a periodic wake that never comes, peers that died
//! or stopped half-way through a change, and the edges of `wait` (duplicate
//! objects, extreme timeouts, the word limit, children reaped by someone
//! else, forked children).
//!
//! Several of these tests tell a lost wake-up from a late one only under
//! the `strict-wakes` feature (no periodic re-checks: a lost wake-up is a
//! timeout), as `tests/wait.rs` and `tests/aio.rs` do; they say so.

mod common;

use std::time::{Duration, Instant};

use common::{join, kill_after, CHILD_TIMEOUT, WAKE_PATIENCE};
use shmipc::wait::{wait, Interest, WaitError};
use shmipc::{
    fork, Child, Event, ExitStatus, Named, PopError, Queue, RingConfig, Semaphore, SemaphoreConfig,
    Shared, SpscQueue,
};
#[cfg(feature = "tokio")]
use shmipc::{ByteQueue, BytesConfig, RecvError};

fn no_permits() -> SemaphoreConfig {
    SemaphoreConfig {
        initial: 0,
        max: None,
    }
}

/// Whether process `pid` is asleep (state `S` in /proc/pid/stat).
#[cfg(feature = "tokio")]
fn sleeping(pid: u32) -> bool {
    common::proc_state(pid as libc::pid_t) == Some('S')
}

// ---------------------------------------------------------------------------
// wait(): duplicates, timeouts, limits, children
// ---------------------------------------------------------------------------

#[test]
fn duplicate_objects_in_one_wait_are_each_reported_and_woken() {
    let (_n, [qn, en, sn]) = common::segment_names("atkdup", ["q", "e", "s"]);
    let q = Queue::<u64>::create(&qn, RingConfig::new(4)).unwrap();
    let e = Shared::<Event>::create(&en, ()).unwrap();
    let s = Shared::<Semaphore>::create(&sn, no_permits()).unwrap();
    let cmd = Queue::<u64>::anon(RingConfig::new(4)).unwrap();
    let mut child = fork(|| {
        let (Ok(q), Ok(e), Ok(s)) = (
            Queue::<u64>::open(&qn),
            Shared::<Event>::open(&en),
            Shared::<Semaphore>::open(&sn),
        ) else {
            return 2;
        };
        for step in 0..3 {
            if cmd.pop_timeout(CHILD_TIMEOUT).is_err() {
                return 3;
            }
            // Let the parent fall asleep first.
            std::thread::sleep(Duration::from_millis(30));
            match step {
                0 => q.push(1).unwrap(),
                // One permit for two interests on the same semaphore (a
                // release wakes one sleeper).
                1 => s.release().unwrap(),
                _ => e.set(),
            }
        }
        // Live until told: our exit would leave `q` without producers,
        // and end-of-stream makes it readable.
        let _ = cmd.pop_timeout(CHILD_TIMEOUT);
        0
    })
    .unwrap();
    let interests = [
        Interest::readable(&q),
        Interest::event(&e),
        Interest::semaphore(&s),
        Interest::readable(&q),
        Interest::event(&e),
        Interest::semaphore(&s),
    ];
    assert_eq!(
        wait(&interests, Some(Duration::from_millis(10))).unwrap(),
        Vec::<usize>::new()
    );
    for (step, expect) in [[0, 3], [2, 5], [1, 4]].into_iter().enumerate() {
        cmd.push(step as u64).unwrap();
        let start = Instant::now();
        let ready = wait(&interests, Some(WAKE_PATIENCE)).unwrap();
        assert!(start.elapsed() < WAKE_PATIENCE, "step {step}: timeout only");
        assert_eq!(ready, expect, "step {step}");
        // Not ready again, for the next step.
        match step {
            0 => assert_eq!(q.try_pop(), Ok(1)),
            1 => assert!(s.try_acquire()),
            _ => e.clear(),
        }
    }
    cmd.push(3).unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    // The waits took every registration back.
    assert_eq!(q.counted_sleepers(true), 0);
    assert_eq!(s.counted_sleepers(), 0);
}

#[test]
fn duration_max_and_zero_timeouts() {
    let (_n, qn) = common::segment_name("atktmo", "q");
    let q = Queue::<u64>::create(&qn, RingConfig::new(4)).unwrap();
    let e = Shared::<Event>::anon(()).unwrap();
    // Zero: an immediate look, empty when nothing is ready, the ready ones
    // otherwise.
    let start = Instant::now();
    assert_eq!(
        wait(&[Interest::readable(&q)], Some(Duration::ZERO)).unwrap(),
        Vec::<usize>::new()
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    e.set();
    assert_eq!(
        wait(
            &[Interest::readable(&q), Interest::event(&e)],
            Some(Duration::ZERO)
        )
        .unwrap(),
        [1]
    );
    e.clear();
    // Duration::MAX is "never", and a wake still ends it.
    let mut child = fork(|| {
        let Ok(q) = Queue::<u64>::open(&qn) else {
            return 2;
        };
        std::thread::sleep(Duration::from_millis(100));
        q.push(5).map_or(3, |_| 0)
    })
    .unwrap();
    let start = Instant::now();
    let ready = wait(
        &[Interest::event(&e), Interest::readable(&q)],
        Some(Duration::MAX),
    )
    .unwrap();
    assert_eq!(ready, [1]);
    assert!(start.elapsed() < WAKE_PATIENCE, "woken late");
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    // With a child in the set too (the watcher's word).
    let mut quick = common::fork_sleeper(Duration::from_millis(100), 0);
    let ready = wait(
        &[Interest::event(&e), Interest::child(&quick)],
        Some(Duration::MAX),
    )
    .unwrap();
    assert_eq!(ready, [1]);
    assert_eq!(join(&mut quick), ExitStatus::Code(0));
}

#[test]
fn the_word_limit_counts_the_childrens_word_and_children_are_unlimited() {
    let events: Vec<Event> = (0..128).map(|_| Event::new()).collect();
    let mut child = common::fork_sleeper(Duration::from_secs(30), 0);
    // 128 words and a child: 129 futex words.
    let mut interests: Vec<Interest<'_>> = events.iter().map(Interest::event).collect();
    interests.push(Interest::child(&child));
    match wait(&interests, Some(Duration::ZERO)) {
        Err(WaitError::TooMany {
            words: 128,
            limit: 127,
        }) => {}
        other => panic!("{other:?}"),
    }
    // 127 words and a child fit, and the child's exit wakes the wait.
    interests.remove(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            // SAFETY: kill takes plain integers; the pid is our unreaped
            // child's.
            unsafe { libc::kill(child.pid() as libc::pid_t, libc::SIGKILL) };
        });
        let ready = wait(&interests, Some(WAKE_PATIENCE)).unwrap();
        assert_eq!(ready, [127]);
    });
    assert!(start.elapsed() < WAKE_PATIENCE, "woken by the timeout only");
    assert_eq!(join(&mut child), ExitStatus::Signal(libc::SIGKILL));
    // 200 children and one event.
    let e = Event::new();
    let mut kids: Vec<Child> = (0..200)
        .map(|i| {
            fork(move || {
                std::thread::sleep(Duration::from_millis(if i == 150 { 100 } else { 30_000 }));
                0
            })
            .unwrap()
        })
        .collect();
    let mut interests: Vec<Interest<'_>> = vec![Interest::event(&e)];
    interests.extend(kids.iter().map(Interest::child));
    let ready = wait(&interests, Some(WAKE_PATIENCE)).unwrap();
    assert_eq!(ready, [151]);
    drop(interests);
    for k in &mut kids {
        let _ = k.kill();
    }
}

/// Reaps `pid` behind its `Child`'s back, as another part of the program
/// (a SIGCHLD handler, `waitpid(-1)`) would.
fn reap_elsewhere(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid writes the status into `status`, valid for the call.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) == pid as libc::pid_t }
}

#[test]
fn a_child_reaped_by_someone_else_is_reported_ended_and_join_async_does_not_hang() {
    let never = Event::new();
    // Reaped while the wait sleeps.
    let child = common::fork_sleeper(Duration::from_millis(100), 0);
    let pid = child.pid();
    let start = Instant::now();
    std::thread::scope(|s| {
        let reaper = s.spawn(move || reap_elsewhere(pid));
        let ready = wait(
            &[Interest::event(&never), Interest::child(&child)],
            Some(WAKE_PATIENCE),
        )
        .unwrap();
        assert_eq!(ready, [1]);
        assert!(reaper.join().unwrap());
    });
    assert!(start.elapsed() < WAKE_PATIENCE, "woken by the timeout only");
    // Reaped before the wait began.
    let ready = wait(&[Interest::child(&child)], Some(WAKE_PATIENCE)).unwrap();
    assert_eq!(ready, [0]);
    std::mem::forget(child); // its Drop would kill a pid that is no longer ours
    #[cfg(feature = "tokio")]
    {
        let mut other = common::fork_sleeper(Duration::from_millis(100), 0);
        assert!(reap_elsewhere(other.pid()));
        let out = current_thread()
            .block_on(async { tokio::time::timeout(WAKE_PATIENCE, other.join_async()).await });
        assert!(out.is_ok(), "join_async of a child reaped elsewhere hung");
        std::mem::forget(other);
    }
}

#[test]
fn wait_and_join_async_work_in_a_forked_child_of_a_process_that_used_them() {
    // The parent starts its children watcher (and, with tokio, a waiter
    // thread) first.
    let mut warm = fork(|| 0).unwrap();
    assert_eq!(
        wait(&[Interest::child(&warm)], Some(WAKE_PATIENCE)).unwrap(),
        [0]
    );
    assert_eq!(join(&mut warm), ExitStatus::Code(0));
    let (_n, qn) = common::segment_name("atkfork", "q");
    let q = Queue::<u64>::create(&qn, RingConfig::new(4)).unwrap();
    let _ = &q; // used by the async steps only
    #[cfg(feature = "tokio")]
    current_thread().block_on(async {
        let r = tokio::time::timeout(Duration::from_millis(20), q.pop_async()).await;
        assert!(r.is_err());
    });
    let mut child = fork(|| {
        let Ok(q) = Queue::<u64>::open(&qn) else {
            return 2;
        };
        // wait() on a grandchild: the child's own watcher.
        let Ok(grandchild) = fork(|| {
            std::thread::sleep(Duration::from_millis(50));
            4
        }) else {
            return 3;
        };
        match wait(&[Interest::child(&grandchild)], Some(WAKE_PATIENCE)) {
            Ok(r) if r == [0] => {}
            _ => return 5,
        }
        let mut grandchild = grandchild;
        if grandchild.join_timeout(CHILD_TIMEOUT).ok().flatten() != Some(ExitStatus::Code(4)) {
            return 6;
        }
        #[cfg(feature = "tokio")]
        {
            // An async pop woken by the parent, through the child's own
            // waiter thread, then an async join.
            let got = current_thread()
                .block_on(async { tokio::time::timeout(WAKE_PATIENCE, q.pop_async()).await });
            if got != Ok(Ok(7)) {
                return 7;
            }
            let Ok(mut gc) = fork(|| {
                std::thread::sleep(Duration::from_millis(50));
                8
            }) else {
                return 3;
            };
            let st = current_thread()
                .block_on(async { tokio::time::timeout(WAKE_PATIENCE, gc.join_async()).await });
            if !matches!(st, Ok(Ok(ExitStatus::Code(8)))) {
                return 9;
            }
        }
        let _ = &q;
        0
    })
    .unwrap();
    #[cfg(feature = "tokio")]
    {
        std::thread::sleep(Duration::from_millis(300));
        q.push(7).unwrap();
    }
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

// ---------------------------------------------------------------------------
// wait(): peers that died or stopped half-way
// ---------------------------------------------------------------------------

/// A consumer that sleeps in `wait` and then takes with `try_pop`, as the
/// module docs say to, behind a producer killed between its claim and its
/// publish. A blocking `pop` skips the dead claim within an owner-check
/// interval (tests/queue_crash.rs); `wait` reports the queue readable at
/// once, every time, and `try_pop` never gets past the claim: the loop
/// spins and the item behind the claim is never received.
#[test]
fn wait_then_try_pop_gets_the_item_behind_a_dead_producers_claim() {
    let (n, name) = common::segment_name("atkwdead", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let ready = Shared::<Event>::create(&n.name("ready"), ()).unwrap();
    common::kill_a_claiming_producer(&ready, &name);
    q.push(3).unwrap();
    let start = Instant::now();
    let mut empty_reports = 0u64;
    let mut got = None;
    while start.elapsed() < Duration::from_secs(5) {
        let r = wait(&[Interest::readable(&q)], Some(Duration::from_secs(1))).unwrap();
        match q.try_pop() {
            Ok(v) => {
                got = Some(v);
                break;
            }
            Err(PopError::Empty) if r == [0] => empty_reports += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    println!(
        "{empty_reports} wait() calls reported the queue readable while try_pop found \
         nothing, in {:?}",
        start.elapsed()
    );
    assert_eq!(
        got,
        Some(3),
        "wait + try_pop never got past the dead producer's claim \
         ({empty_reports} ready reports with nothing to pop)"
    );
}

// ---------------------------------------------------------------------------
// The async forms
// ---------------------------------------------------------------------------

#[cfg(feature = "tokio")]
fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// A Semaphore release wakes one sleeper. A pending `acquire_async` that
/// is dropped leaves its waiter thread asleep in `futex_waitv` on the
/// semaphore's word (the thread is not told of the removal), so a later
/// release's one wake goes to that thread, which finds nothing registered
/// and passes nothing on: a blocked `acquire` in another process sleeps on
/// with a permit free. Seen only under `strict-wakes` (otherwise the
/// acquirer's periodic re-check takes the permit within 50 ms).
#[cfg(feature = "tokio")]
#[test]
fn a_dropped_acquire_future_does_not_swallow_the_wake_of_a_blocked_acquirer() {
    let (_n, sn) = common::segment_name("atksemstale", "s");
    let sem = Shared::<Semaphore>::create(&sn, no_permits()).unwrap();
    // Registered with this process's waiter thread, then dropped pending.
    current_thread().block_on(async {
        let r = tokio::time::timeout(Duration::from_millis(20), sem.acquire_async()).await;
        assert!(r.is_err(), "no permit was there");
    });
    assert_eq!(sem.counted_sleepers(), 0, "the dropped future is counted");
    let mut child = fork(|| {
        let Ok(s) = Shared::<Semaphore>::open(&sn) else {
            return 2;
        };
        let start = Instant::now();
        if !s.acquire_timeout(WAKE_PATIENCE) {
            return 3;
        }
        // Taken only at the deadline's last look: the wake was lost.
        if start.elapsed() >= WAKE_PATIENCE {
            return 4;
        }
        0
    })
    .unwrap();
    assert!(common::eventually(CHILD_TIMEOUT, || sem.counted_sleepers()
        == 1
        && sleeping(child.pid())));
    std::thread::sleep(Duration::from_millis(50));
    sem.release().unwrap();
    assert_eq!(
        join(&mut child),
        ExitStatus::Code(0),
        "exit 4: the blocked acquirer was not woken by the release"
    );
}

/// The same for a Lock: an unlock wakes one sleeper, and a dropped
/// `lock_async` left its waiter thread asleep on the lock's word.
#[cfg(feature = "tokio")]
#[test]
fn a_dropped_lock_future_does_not_swallow_the_unlock_wake_of_a_blocked_locker() {
    let (_n, ln) = common::segment_name("atklockstale", "l");
    let lock = Shared::<shmipc::Lock>::create(&ln, ()).unwrap();
    let guard = lock.lock().unwrap();
    // From another thread (the lock's owner is a thread), pending, dropped.
    std::thread::scope(|s| {
        s.spawn(|| {
            current_thread().block_on(async {
                let r = tokio::time::timeout(Duration::from_millis(20), lock.lock_async()).await;
                assert!(r.is_err(), "the lock is held");
            });
        })
        .join()
        .unwrap();
    });
    let mut child = fork(|| {
        let Ok(l) = Shared::<shmipc::Lock>::open(&ln) else {
            return 2;
        };
        let start = Instant::now();
        let code = match l.lock_timeout(WAKE_PATIENCE) {
            Ok(_) if start.elapsed() >= WAKE_PATIENCE => 4,
            Ok(_) => 0,
            Err(_) => 3,
        };
        code
    })
    .unwrap();
    assert!(common::eventually(CHILD_TIMEOUT, || sleeping(child.pid())));
    std::thread::sleep(Duration::from_millis(100));
    drop(guard);
    assert_eq!(
        join(&mut child),
        ExitStatus::Code(0),
        "exit 4: the blocked locker was not woken by the unlock"
    );
}

/// A pop future behind a producer that claimed a slot and is slow to fill
/// it: the queue looks readable, `try_pop` finds nothing, so the future
/// waits on no word at all, only for its waiter thread's periodic wake.
/// When the producer publishes, its notify wakes nobody (the future is not
/// registered), and while another future on the same waiter thread keeps
/// it busy (a ping-pong), the periodic wake never comes: the waiter thread
/// starts its 50 ms slice afresh after every registration. (Under
/// `strict-wakes` there is no periodic wake at all, so the future hangs
/// even without the traffic.)
#[cfg(feature = "tokio")]
#[test]
fn a_pop_future_behind_a_slow_claim_wakes_when_it_is_published_despite_other_traffic() {
    let (n, [qn, pingn, pongn]) = common::segment_names("atkslow", ["q", "ping", "pong"]);
    let (claimed_n, go_n) = (n.name("claimed"), n.name("go"));
    let q = Queue::<u64>::create(&qn, RingConfig::new(4)).unwrap();
    let ping = Queue::<u64>::create(&pingn, RingConfig::new(4)).unwrap();
    let pong = Queue::<u64>::create(&pongn, RingConfig::new(4)).unwrap();
    let claimed = Shared::<Event>::create(&claimed_n, ()).unwrap();
    let go = Shared::<Event>::create(&go_n, ()).unwrap();
    let mut producer = fork(|| {
        let (Ok(q), Ok(claimed), Ok(go)) = (
            Queue::<u64>::open(&qn),
            Shared::<Event>::open(&claimed_n),
            Shared::<Event>::open(&go_n),
        ) else {
            return 2;
        };
        let Ok(pos) = q.claim_push_and_stop() else {
            return 3;
        };
        claimed.set();
        if !go.wait_timeout(CHILD_TIMEOUT) {
            return 4;
        }
        q.publish_claimed(pos, 42).map_or(5, |_| 0)
    })
    .unwrap();
    let mut echo = fork(|| {
        let (Ok(ping), Ok(pong)) = (Queue::<u64>::open(&pingn), Queue::<u64>::open(&pongn)) else {
            return 2;
        };
        loop {
            match ping.pop_timeout(CHILD_TIMEOUT) {
                Ok(u64::MAX) => return 0,
                Ok(v) => {
                    std::thread::sleep(Duration::from_millis(2));
                    if pong.push(v).is_err() {
                        return 3;
                    }
                }
                Err(_) => return 4,
            }
        }
    })
    .unwrap();
    assert!(claimed.wait_timeout(CHILD_TIMEOUT));
    let patience = Duration::from_secs(3);
    let (got, rounds) = current_thread().block_on(async {
        let traffic = async {
            // Longer than the pop's patience.
            let end = Instant::now() + patience + Duration::from_secs(1);
            let mut rounds = 0u64;
            while Instant::now() < end {
                ping.push_async(rounds).await.unwrap();
                assert_eq!(pong.pop_async().await, Ok(rounds));
                rounds += 1;
            }
            ping.push_async(u64::MAX).await.unwrap();
            rounds
        };
        let pop = async {
            // Let the future settle on its periodic-wake registration.
            let publish = async {
                tokio::time::sleep(Duration::from_millis(200)).await;
                go.set();
            };
            let (got, ()) = tokio::join!(tokio::time::timeout(patience, q.pop_async()), publish);
            got
        };
        tokio::join!(pop, traffic)
    });
    println!("{rounds} ping-pong rounds meanwhile");
    assert_eq!(join(&mut producer), ExitStatus::Code(0));
    assert_eq!(join(&mut echo), ExitStatus::Code(0));
    assert_eq!(
        got,
        Ok(Ok(42)),
        "the pop future never woke after the slow claim was published"
    );
}

/// A producer killed between its claim and its publish, an item pushed
/// behind the claim: a blocking `pop` skips the dead claim within an
/// owner-check interval (tests/queue_crash.rs); `pop_async` must get the
/// item too.
#[cfg(feature = "tokio")]
#[test]
#[cfg_attr(
    feature = "strict-wakes",
    ignore = "strict-wakes: no periodic wake for a future armed on a word that moves, so no owner check (blocking calls check only at their deadline then); the arm no longer reports the dead claim ready"
)]
fn pop_async_gets_the_item_behind_a_dead_producers_claim() {
    let (n, name) = common::segment_name("atkadead", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let ready = Shared::<Event>::create(&n.name("ready"), ()).unwrap();
    common::kill_a_claiming_producer(&ready, &name);
    q.push(3).unwrap();
    let got = current_thread()
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), q.pop_async()).await });
    assert_eq!(
        got,
        Ok(Ok(3)),
        "pop_async never got past the dead producer's claim"
    );
}

/// A byte-queue writer killed between its reserve and its commit: a
/// blocking `recv` skips the dead record within an owner-check interval
/// (tests/queue_crash.rs); `recv_async` must get the message behind it.
#[cfg(feature = "tokio")]
#[test]
#[cfg_attr(
    feature = "strict-wakes",
    ignore = "strict-wakes: no periodic wake for a future armed on a word that moves, so no owner check (blocking calls check only at their deadline then); the arm no longer reports the dead claim ready"
)]
fn recv_async_gets_the_message_behind_a_dead_writers_reservation() {
    let (n, name) = common::segment_name("atkbdead", "q");
    let q = ByteQueue::create(&name, BytesConfig::new(1024, 64)).unwrap();
    let ready = Shared::<Event>::create(&n.name("ready"), ()).unwrap();
    common::kill_a_reserving_writer(&ready, &name);
    q.send(b"after").unwrap();
    let got = current_thread()
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), q.recv_async()).await });
    match got {
        Ok(Ok(m)) => assert_eq!(m, b"after"),
        Ok(Err(e)) => panic!("{e:?}"),
        Err(_) => panic!("recv_async never got past the dead writer's record"),
    }
    assert_eq!(q.try_recv().err(), Some(RecvError::Empty));
}

/// A holder SIGKILLed while it holds a Lock: a blocking `lock` takes the
/// lock over within an owner-check interval (tests/lock_owner_death.rs);
/// `lock_async` with no blocking locker around must not wait for ever.
#[cfg(feature = "tokio")]
#[test]
#[cfg_attr(
    feature = "strict-wakes",
    ignore = "strict-wakes: no periodic wake for a future armed on a word that moves, so no owner check (blocking calls check only at their deadline then)"
)]
fn lock_async_takes_over_from_a_sigkilled_holder() {
    let (n, ln) = common::segment_name("atklockdead", "l");
    let lock = Shared::<shmipc::Lock>::create(&ln, ()).unwrap();
    let ready = Shared::<Event>::create(&n.name("ready"), ()).unwrap();
    kill_after(&ready, || {
        let l = Shared::<shmipc::Lock>::open(&ln).unwrap();
        std::mem::forget(l.lock().unwrap());
        std::mem::forget(l);
    });
    let out = current_thread().block_on(async {
        match tokio::time::timeout(Duration::from_secs(5), lock.lock_async()).await {
            Ok(Ok(g)) => Some(g.owner_died()),
            Ok(Err(e)) => panic!("{e:?}"),
            Err(_) => None,
        }
    });
    assert_eq!(
        out,
        Some(true),
        "lock_async never took over the dead holder's lock"
    );
}

/// Idle async waiters (futures pending on queues nobody touches) for one
/// second use under 2% of a core, with one future and with 300 (three
/// waiter threads). Every 50 ms each waiter thread used to wake every
/// future it held; each re-polled, re-armed and re-registered, and each
/// registration kicked the thread, which rebuilt its `futex_waitv` set:
/// 66 ms of CPU a second with 300 (debug build). Now the periodic wake
/// goes only to futures a check can help, and these (no sender, nothing
/// in flight) are not among them: about 10 ms.
#[cfg(feature = "tokio")]
#[test]
fn idle_pending_futures_use_under_two_percent_of_a_core() {
    for futures in [1usize, 300] {
        // In a child of its own, so RUSAGE_SELF counts only it.
        let mut child = fork(|| {
            let queues: &'static [Queue<u64>] = Box::leak(
                (0..futures)
                    .map(|_| Queue::anon(RingConfig::new(4)).unwrap())
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            );
            let rt = current_thread();
            let set = tokio::task::LocalSet::new();
            let (used, took) = set.block_on(&rt, async {
                for q in queues {
                    tokio::task::spawn_local(async move {
                        let _ = q.pop_async().await;
                    });
                }
                // Let every future register, then measure.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let (c0, t0) = (common::cpu_time(libc::RUSAGE_SELF), Instant::now());
                tokio::time::sleep(Duration::from_secs(1)).await;
                (common::cpu_time(libc::RUSAGE_SELF) - c0, t0.elapsed())
            });
            println!("{futures} idle futures for {took:?}: {used:?} of CPU");
            if used * 50 > took {
                return 4;
            }
            0
        })
        .unwrap();
        assert_eq!(
            join(&mut child),
            ExitStatus::Code(0),
            "{futures} idle futures used more than 2% of a core"
        );
    }
}

/// A blocked `Event::wait` returns true for a `set` that a `clear`
/// followed (and `wait` reports it: tests/wait.rs); `wait_async` is "the
/// same, as a future", so it must return too. Its waiter thread wakes it
/// for the word's change, but the future then only asks `is_set()`, finds
/// the event clear, and arms again: the pulse is lost and the future
/// waits for the next `set`.
#[cfg(feature = "tokio")]
#[test]
fn an_event_pulse_during_wait_async_is_not_missed() {
    let (_n, name) = common::segment_name("atkpulse", "e");
    let event = Shared::<Event>::create(&name, ()).unwrap();
    let mut child = common::fork_pulse_while_stopped(&name);
    let out = current_thread()
        .block_on(async { tokio::time::timeout(Duration::from_secs(3), event.wait_async()).await });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert!(
        out.is_ok(),
        "the set (then cleared) during wait_async was missed"
    );
}

/// Forks with `libc::fork` and runs `f` in the child, which then `_exit`s
/// with its value (for the steps inside a pid namespace, where
/// `shmipc::fork`'s `Child` would outlive its pid's meaning).
#[cfg(feature = "tokio")]
fn raw_fork(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions; the child runs `f`
    // and ends in `_exit`, never returning into the caller.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Reaps `pid` and returns its exit code (-1 if it was killed or unknown).
#[cfg(feature = "tokio")]
fn reap_code(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid writes into `status`, valid for the call.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r == pid && libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// The async waiter threads belong to "this process", which the code
/// recognises by its pid (`std::process::id()`), and a forked child
/// starts afresh only if its pid differs. A grandchild can be given the
/// pid of a grandparent that has exited (pid reuse; forced here with
/// `ns_last_pid` in a pid namespace of the test's own): it inherits the
/// grandparent's waiter list, whose threads do not exist in it, so its
/// futures are registered with no thread and never woken. Needs root
/// (CLONE_NEWPID); skipped, and says so, otherwise.
#[cfg(feature = "tokio")]
#[test]
fn a_forked_process_that_reuses_an_exited_ancestors_pid_has_a_waiter_thread() {
    // SAFETY: geteuid takes nothing and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("not root: cannot make a pid namespace; nothing tested");
        return;
    }
    let (_n, qn) = common::segment_name("atkpidreuse", "q");
    let q = Queue::<u64>::create(&qn, RingConfig::new(4)).unwrap();
    let result = Shared::<shmipc::sync::AtomicU32>::anon(0).unwrap();
    let mut outer = fork(|| {
        // SAFETY: unshare takes flags; it only changes this process's
        // pid namespace for its future children.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 2;
        }
        // The namespace's init (pid 1).
        let init = raw_fork(|| {
            // A (pid 2): uses async, so it has a waiter thread.
            let a = raw_fork(|| {
                let Ok(q) = Queue::<u64>::open(&qn) else {
                    return 20;
                };
                current_thread().block_on(async {
                    let _ = tokio::time::timeout(Duration::from_millis(20), q.pop_async()).await;
                });
                // B (pid 3): outlives A, then forks G with A's pid.
                let b = raw_fork(|| {
                    // Until A has exited and been reaped (its pid free).
                    // SAFETY: kill with signal 0 only checks the pid.
                    while unsafe { libc::kill(2, 0) } == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    if std::fs::write("/proc/sys/kernel/ns_last_pid", "1").is_err() {
                        return 30;
                    }
                    let g = raw_fork(|| {
                        if std::process::id() != 2 {
                            return 41; // not A's pid: nothing tested
                        }
                        let Ok(q) = Queue::<u64>::open(&qn) else {
                            return 40;
                        };
                        let got = current_thread().block_on(async {
                            tokio::time::timeout(Duration::from_secs(3), q.pop_async()).await
                        });
                        match got {
                            Ok(Ok(7)) => 0,
                            Ok(_) => 42,
                            Err(_) => 43, // never woken
                        }
                    });
                    reap_code(g)
                });
                let _ = b;
                0
            });
            let code_a = reap_code(a);
            // Then B (reparented to us) and report its code.
            let mut code_b = -1;
            loop {
                let mut status = 0;
                // SAFETY: waitpid writes into `status`.
                let r = unsafe { libc::waitpid(-1, &mut status, 0) };
                if r < 0 {
                    break;
                }
                if libc::WIFEXITED(status) {
                    code_b = libc::WEXITSTATUS(status);
                }
            }
            result.store(code_b as u32, shmipc::sync::Ordering::SeqCst);
            code_a
        });
        reap_code(init)
    })
    .unwrap();
    // G sleeps in its pop; the item comes after it has had time to arm.
    std::thread::sleep(Duration::from_millis(500));
    q.push(7).unwrap();
    assert_eq!(join(&mut outer), ExitStatus::Code(0));
    let code = result.load(shmipc::sync::Ordering::SeqCst);
    assert_ne!(code, 41, "the grandchild did not get pid 2: nothing tested");
    assert_eq!(
        code, 0,
        "43: the grandchild with its dead grandparent's pid was never woken \
         (20-42: a setup step failed)"
    );
}

/// `wait` on the SPSC handles (not among the 64 objects of tests/wait.rs):
/// a consumer readable when the producer in another process pushes, a
/// producer writable when the consumer there pops.
#[test]
fn wait_on_spsc_handles_is_woken_by_the_other_process() {
    let (_n, [an, bn]) = common::segment_names("atkspsc", ["a", "b"]);
    let a = SpscQueue::<u64>::create(&an, RingConfig::new(2)).unwrap();
    let b = SpscQueue::<u64>::create(&bn, RingConfig::new(2)).unwrap();
    let rx = a.take_consumer().unwrap();
    let mut tx = b.take_producer().unwrap();
    while tx.try_push(0).is_ok() {}
    let done = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let (Ok(mut p), Ok(mut c)) = (
            SpscQueue::<u64>::producer(&an),
            SpscQueue::<u64>::consumer(&bn),
        ) else {
            return 2;
        };
        std::thread::sleep(Duration::from_millis(100));
        if p.push(5).is_err() {
            return 3;
        }
        std::thread::sleep(Duration::from_millis(200));
        let r = c.pop().map_or(4, |_| 0);
        // Live until told: our exit would leave `rx` without its
        // producer, and end-of-stream makes it readable.
        let _ = done.wait_timeout(CHILD_TIMEOUT);
        r
    })
    .unwrap();
    let never = Event::new();
    let interests = [
        Interest::event(&never),
        Interest::readable(&rx),
        Interest::writable(&tx),
    ];
    let start = Instant::now();
    assert_eq!(wait(&interests, Some(WAKE_PATIENCE)).unwrap(), [1]);
    assert!(start.elapsed() < WAKE_PATIENCE, "woken by the timeout only");
    let mut rx = rx;
    assert_eq!(rx.try_pop(), Ok(5));
    let interests = [
        Interest::event(&never),
        Interest::readable(&rx),
        Interest::writable(&tx),
    ];
    let start = Instant::now();
    assert_eq!(wait(&interests, Some(WAKE_PATIENCE)).unwrap(), [2]);
    assert!(start.elapsed() < WAKE_PATIENCE, "woken by the timeout only");
    done.set();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

/// Without `futex_waitv` (the "older kernels" fallback): a wake on a
/// word that is not the first is still seen, by `wait` and by a future.
#[test]
fn without_futex_waitv_wait_still_wakes_for_any_object() {
    let (_n, qn) = common::segment_name("atknowaitv", "q");
    let q = Queue::<u64>::create(&qn, RingConfig::new(4)).unwrap();
    let armed = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        if !common::forbid_syscall(libc::SYS_futex_waitv) {
            return 2;
        }
        let Ok(q) = Queue::<u64>::open(&qn) else {
            return 3;
        };
        let e = Event::new();
        armed.set();
        let start = Instant::now();
        let r = wait(
            &[Interest::event(&e), Interest::readable(&q)],
            Some(WAKE_PATIENCE),
        );
        if !matches!(r.as_deref(), Ok([1])) {
            return 5;
        }
        if start.elapsed() >= WAKE_PATIENCE {
            return 6;
        }
        #[cfg(feature = "tokio")]
        {
            if q.try_pop() != Ok(1) {
                return 7;
            }
            armed.clear();
            let rt = current_thread();
            let got = rt.block_on(async {
                let pop = tokio::time::timeout(WAKE_PATIENCE, q.pop_async());
                let (got, ()) = tokio::join!(pop, async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    armed.set();
                });
                got
            });
            if got != Ok(Ok(2)) {
                return 8;
            }
        }
        0
    })
    .unwrap();
    assert!(armed.wait_timeout(CHILD_TIMEOUT));
    std::thread::sleep(Duration::from_millis(100));
    q.push(1).unwrap();
    #[cfg(feature = "tokio")]
    {
        assert!(common::eventually(CHILD_TIMEOUT, || !armed.is_set()));
        assert!(armed.wait_timeout(CHILD_TIMEOUT));
        std::thread::sleep(Duration::from_millis(100));
        q.push(2).unwrap();
    }
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

/// Without `futex_waitv`, an idle `wait` and an idle future sleep: under
/// 5% of a core each (the fallback wakes every 2 ms by design). The waiter
/// thread's fallback wakes every future after each 2 ms sleep on its kick
/// word; the woken future registers again, which bumps the kick word, and
/// when that bump lands after the thread read the word, the thread's next
/// sleep returns at once and wakes the future again: measured 16-18% of a
/// core for one idle future (the `wait` fallback: about 2%).
#[test]
fn without_futex_waitv_idle_waiters_sleep() {
    let mut child = fork(|| {
        if !common::forbid_syscall(libc::SYS_futex_waitv) {
            return 2;
        }
        let (e, e2) = (Event::new(), Event::new());
        let (c0, t0) = (common::cpu_time(libc::RUSAGE_SELF), Instant::now());
        let r = wait(
            &[Interest::event(&e), Interest::event(&e2)],
            Some(Duration::from_secs(1)),
        );
        let (used, took) = (common::cpu_time(libc::RUSAGE_SELF) - c0, t0.elapsed());
        println!("fallback: wait() idle for {took:?}: {used:?} of CPU");
        if !matches!(r.as_deref(), Ok([])) {
            return 3;
        }
        if used * 20 > took {
            return 4;
        }
        #[cfg(feature = "tokio")]
        {
            let Ok(q) = Queue::<u64>::anon(RingConfig::new(4)) else {
                return 5;
            };
            let rt = current_thread();
            // Start the waiter thread, then measure one idle future.
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(20), q.pop_async()).await
            });
            let (c0, t0) = (common::cpu_time(libc::RUSAGE_SELF), Instant::now());
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(1), q.pop_async()).await
            });
            let (used, took) = (common::cpu_time(libc::RUSAGE_SELF) - c0, t0.elapsed());
            println!("fallback: one idle async future for {took:?}: {used:?} of CPU");
            if used * 20 > took {
                return 6;
            }
        }
        0
    })
    .unwrap();
    assert_eq!(
        join(&mut child),
        ExitStatus::Code(0),
        "4: the idle wait, 6: the idle future used more than 5% of a core"
    );
}

/// A byte-queue reader SIGKILLed holding a read grant, the queue too full
/// for a message of the largest size: a blocking `send` frees the dead
/// reader's record within an owner-check interval (tests/queue_crash.rs).
/// `wait` for writable and `send_async` must not wait for ever.
#[test]
fn wait_writable_gets_past_a_dead_readers_grant() {
    let (n, name) = common::segment_name("atkgrant", "q");
    let q = shmipc::ByteQueue::create(&name, shmipc::BytesConfig::new(128, 40)).unwrap();
    let ready = Shared::<Event>::create(&n.name("ready"), ()).unwrap();
    q.send(&[1; 40]).unwrap();
    q.send(&[2; 40]).unwrap();
    kill_after(&ready, || {
        let q = shmipc::ByteQueue::open(&name).unwrap();
        std::mem::forget(q.recv().unwrap()); // holds message 1 until killed
    });
    assert_eq!(q.recv_vec().unwrap(), [2; 40]);
    assert_eq!(q.try_send(&[3; 40]), Err(shmipc::SendError::Full));
    let start = Instant::now();
    let ready = wait(&[Interest::writable(&q)], Some(Duration::from_secs(5))).unwrap();
    println!("wait: {ready:?} after {:?}", start.elapsed());
    assert_eq!(
        ready,
        [0],
        "wait never saw the dead reader's record freed (a blocking send frees it)"
    );
}

/// A byte-queue reader SIGKILLed inside the readers' short critical
/// section, holding their lock, with a message waiting: a blocking `recv`
/// takes the lock over at its owner check. `wait` then `try_recv` must
/// get the message too (a `try_` call never takes a lock over; `wait`'s
/// owner check does).
#[test]
fn wait_then_try_recv_gets_past_a_reader_killed_holding_the_side_lock() {
    let (n, name) = common::segment_name("atklock", "q");
    let q = shmipc::ByteQueue::create(&name, shmipc::BytesConfig::new(256, 16)).unwrap();
    let ready = Shared::<Event>::create(&n.name("ready"), ()).unwrap();
    q.send(b"behind the lock").unwrap();
    kill_after(&ready, || {
        let q = shmipc::ByteQueue::open(&name).unwrap();
        q.hold_side_lock(false, || {
            ready.set();
            std::thread::sleep(Duration::from_secs(60));
        })
        .unwrap();
    });
    let start = Instant::now();
    let mut got = None;
    let mut empty_reports = 0u64;
    while start.elapsed() < Duration::from_secs(5) {
        let r = wait(&[Interest::readable(&q)], Some(Duration::from_secs(1))).unwrap();
        match q.try_recv().map(|g| {
            let mut m = vec![0; g.len()];
            g.copy_to(&mut m);
            m
        }) {
            Ok(m) => {
                got = Some(m);
                break;
            }
            Err(shmipc::RecvError::Empty) if r == [0] => empty_reports += 1,
            Err(shmipc::RecvError::Empty) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    println!(
        "{empty_reports} wait() calls reported the queue readable while try_recv found \
         nothing, in {:?}",
        start.elapsed()
    );
    assert_eq!(
        got.as_deref(),
        Some(&b"behind the lock"[..]),
        "wait + try_recv never got past the dead reader's lock \
         ({empty_reports} ready reports with nothing to take)"
    );
}

/// The same for `send_async`.
#[cfg(feature = "tokio")]
#[test]
#[cfg_attr(
    feature = "strict-wakes",
    ignore = "strict-wakes: no periodic wake for a future armed on a word that moves, so no owner check (blocking calls check only at their deadline then)"
)]
fn send_async_gets_past_a_dead_readers_grant() {
    let (_n, q) = common::byte_queue_behind_a_dead_reader("atkagrant");
    let out = current_thread().block_on(async {
        tokio::time::timeout(Duration::from_secs(5), q.send_async(&[3; 40])).await
    });
    assert_eq!(
        out,
        Ok(Ok(())),
        "send_async never got past the dead reader's record"
    );
    assert_eq!(q.recv_vec().unwrap(), [3; 40]);
}

/// Pending futures and a sleeping `wait` end when another process closes
/// the queue (closed counts as ready; the future returns `Closed`).
#[test]
fn a_close_from_another_process_ends_waits_and_pending_futures() {
    let (_n, [qn, bn]) = common::segment_names("atkclose", ["q", "b"]);
    let q = Queue::<u64>::create(&qn, RingConfig::new(4)).unwrap();
    let b = shmipc::ByteQueue::create(&bn, shmipc::BytesConfig::new(256, 16)).unwrap();
    let mut child = fork(|| {
        let (Ok(q), Ok(b)) = (Queue::<u64>::open(&qn), shmipc::ByteQueue::open(&bn)) else {
            return 2;
        };
        std::thread::sleep(Duration::from_millis(200));
        q.close();
        std::thread::sleep(Duration::from_millis(200));
        b.close();
        0
    })
    .unwrap();
    let never = Event::new();
    let start = Instant::now();
    let ready = wait(
        &[Interest::event(&never), Interest::readable(&q)],
        Some(WAKE_PATIENCE),
    )
    .unwrap();
    assert_eq!(ready, [1]);
    assert!(start.elapsed() < WAKE_PATIENCE, "woken by the timeout only");
    assert_eq!(q.try_pop(), Err(PopError::Closed));
    #[cfg(feature = "tokio")]
    {
        let out = current_thread()
            .block_on(async { tokio::time::timeout(WAKE_PATIENCE, b.recv_async()).await });
        assert_eq!(out, Ok(Err(RecvError::Closed)));
        assert!(start.elapsed() < WAKE_PATIENCE, "woken by the timeout only");
    }
    #[cfg(not(feature = "tokio"))]
    {
        let ready = wait(&[Interest::readable(&b)], Some(WAKE_PATIENCE)).unwrap();
        assert_eq!(ready, [0]);
        assert!(start.elapsed() < WAKE_PATIENCE, "woken by the timeout only");
    }
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}
