//! The async forms (`tokio` feature) across processes: a ping-pong under
//! tokio, cancel-safety, and each kind of future woken by another process.
#![cfg(feature = "tokio")]

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{join, now_ns, CHILD_TIMEOUT, WAKE_PATIENCE};
use shmipc::sync::AtomicBool;
use shmipc::{
    fork, BytesConfig, Event, ExitStatus, Lock, Named, Pipe, Queue, RingConfig, Semaphore,
    SemaphoreConfig, Shared, TypedPipe, TypedQueue, Unlinker,
};

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

const ROUNDS: u64 = 2_000;

#[test]
fn an_async_ping_pong_across_two_processes_under_tokio() {
    let (_n, [ping, pong]) = common::segment_names("aiopp", ["ping", "pong"]);
    let to_child = Queue::<u64>::create(&ping, RingConfig::new(4)).unwrap();
    let to_parent = Queue::<u64>::create(&pong, RingConfig::new(4)).unwrap();
    let mut child = fork(|| {
        let (Ok(rx), Ok(tx)) = (Queue::<u64>::open(&ping), Queue::<u64>::open(&pong)) else {
            return 2;
        };
        current_thread().block_on(async {
            loop {
                match rx.pop_async().await {
                    Ok(v) if v == ROUNDS => return 0,
                    Ok(v) => tx.push_async(v + 1).await.map_or(3, |_| 1),
                    Err(_) => return 4,
                };
            }
        })
    })
    .unwrap();
    let start = Instant::now();
    let rt = multi_thread();
    rt.block_on(async {
        let mut v = 0;
        while v < ROUNDS {
            to_child.push_async(v).await.unwrap();
            let back = tokio::time::timeout(WAKE_PATIENCE, to_parent.pop_async())
                .await
                .expect("lost wake-up: the reply never woke us")
                .unwrap();
            assert_eq!(back, v + 1);
            v = back + 1;
        }
        to_child.push_async(ROUNDS).await.unwrap();
    });
    println!("{} round trips in {:?}", ROUNDS / 2, start.elapsed());
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn an_async_pipe_ping_pong_across_two_processes() {
    let (_n, name) = common::segment_name("aiopipe", "p");
    let a = Pipe::create(&name, BytesConfig::new(1024, 64)).unwrap();
    let mut child = fork(|| {
        let Ok(b) = Pipe::open(&name) else { return 2 };
        current_thread().block_on(async {
            for i in 0..200u32 {
                match b.recv_async().await {
                    Ok(m) if m == i.to_le_bytes() => {}
                    _ => return 3,
                }
                if b.send_async(&(i + 1).to_le_bytes()).await.is_err() {
                    return 4;
                }
            }
            0
        })
    })
    .unwrap();
    current_thread().block_on(async {
        for i in 0..200u32 {
            a.send_async(&i.to_le_bytes()).await.unwrap();
            let m = tokio::time::timeout(WAKE_PATIENCE, a.recv_async())
                .await
                .expect("lost wake-up")
                .unwrap();
            assert_eq!(m, (i + 1).to_le_bytes());
        }
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

const ITEMS: u64 = 500;

#[test]
fn dropping_pending_pop_futures_loses_no_item() {
    let (_n, name) = common::segment_name("aiocancel", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(8)).unwrap();
    let mut child = fork(|| {
        let Ok(q) = Queue::<u64>::open(&name) else {
            return 2;
        };
        for i in 0..ITEMS {
            if q.push(i).is_err() {
                return 3;
            }
            if i % 5 == 0 {
                // Gaps longer than the receiver's timeout (tokio's timer
                // ticks in milliseconds).
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        0
    })
    .unwrap();
    let mut got = Vec::new();
    let mut dropped = 0u32;
    current_thread().block_on(async {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        while (got.len() as u64) < ITEMS && Instant::now() < deadline {
            // A timeout that often fires while the pop is registered and
            // asleep: the future is then dropped.
            match tokio::time::timeout(Duration::from_millis(1), q.pop_async()).await {
                Ok(v) => got.push(v.unwrap()),
                Err(_) => dropped += 1,
            }
        }
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    println!(
        "{} items, {dropped} pop futures dropped while pending",
        got.len()
    );
    assert_eq!(
        got,
        (0..ITEMS).collect::<Vec<_>>(),
        "an item was lost or reordered"
    );
    assert!(
        dropped > 0,
        "no future was dropped while pending: the test tested nothing"
    );
    // Every dropped future took its sleeper registration back.
    assert_eq!(q.counted_sleepers(true), 0);
}

#[test]
fn a_dropped_pending_pop_leaves_the_item_for_the_next_receiver() {
    let q = Queue::<u64>::anon(RingConfig::new(4)).unwrap();
    current_thread().block_on(async {
        let first = tokio::time::timeout(Duration::from_millis(20), q.pop_async()).await;
        assert!(first.is_err(), "nothing was pushed yet");
    });
    assert_eq!(
        q.counted_sleepers(true),
        0,
        "the dropped future is still registered"
    );
    let mut child = fork(|| q.push(9).map_or(1, |_| 0)).unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(q.try_pop(), Ok(9));
}

#[test]
fn event_semaphore_lock_and_join_futures_are_woken_by_another_process() {
    let (_n, [en, sn, ln]) = common::segment_names("aiokinds", ["e", "s", "l"]);
    let event = Shared::<Event>::create(&en, ()).unwrap();
    let sem = Shared::<Semaphore>::create(
        &sn,
        SemaphoreConfig {
            initial: 0,
            max: None,
        },
    )
    .unwrap();
    let lock = Shared::<Lock>::create(&ln, ()).unwrap();
    let held = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let (Ok(e), Ok(s), Ok(l)) = (
            Shared::<Event>::open(&en),
            Shared::<Semaphore>::open(&sn),
            Shared::<Lock>::open(&ln),
        ) else {
            return 2;
        };
        let guard = l.lock().unwrap();
        held.set();
        std::thread::sleep(Duration::from_millis(50));
        e.set();
        std::thread::sleep(Duration::from_millis(20));
        s.release().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        drop(guard);
        std::thread::sleep(Duration::from_millis(100));
        5
    })
    .unwrap();
    assert!(held.wait_timeout(CHILD_TIMEOUT));
    current_thread().block_on(async {
        tokio::time::timeout(WAKE_PATIENCE, event.wait_async())
            .await
            .expect("event: lost wake-up");
        tokio::time::timeout(WAKE_PATIENCE, sem.acquire_async())
            .await
            .expect("semaphore: lost wake-up");
        assert_eq!(sem.value(), 0, "the permit was taken");
        {
            let guard = tokio::time::timeout(WAKE_PATIENCE, lock.lock_async())
                .await
                .expect("lock: lost wake-up")
                .unwrap();
            assert!(!guard.owner_died());
        }
        let status = tokio::time::timeout(WAKE_PATIENCE, child.join_async())
            .await
            .expect("join: lost wake-up")
            .unwrap();
        assert_eq!(status, ExitStatus::Code(5));
    });
}

#[test]
fn more_pending_futures_than_one_waiter_thread_holds_all_wake() {
    // 300 events, 300 tasks waiting on them at once (three waiter
    // threads), set by another process.
    let n = Unlinker::new("aiomany");
    let names: Vec<String> = (0..300).map(|i| n.name(&format!("e{i}"))).collect();
    let events: Vec<Shared<Event>> = names
        .iter()
        .map(|n| Shared::<Event>::create(n, ()).unwrap())
        .collect();
    let go = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let Ok(evs) = names
            .iter()
            .map(|n| Shared::<Event>::open(n))
            .collect::<Result<Vec<_>, _>>()
        else {
            return 2;
        };
        if !go.wait_timeout(CHILD_TIMEOUT) {
            return 3;
        }
        std::thread::sleep(Duration::from_millis(50));
        for e in evs.iter().rev() {
            e.set();
        }
        0
    })
    .unwrap();
    let rt = multi_thread();
    rt.block_on(async {
        let tasks: Vec<_> = events
            .into_iter()
            .map(|e| {
                tokio::spawn(async move {
                    tokio::time::timeout(WAKE_PATIENCE, e.wait_async())
                        .await
                        .is_ok()
                })
            })
            .collect();
        go.set();
        for t in tasks {
            assert!(t.await.unwrap(), "a waiting future was never woken");
        }
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn typed_queue_and_typed_pipe_futures_carry_values_across_processes() {
    let (_n, [qn, pn]) = common::segment_names("aiotyped", ["q", "p"]);
    let config = BytesConfig::new(4096, 256);
    let q = TypedQueue::<String>::create(&qn, config).unwrap();
    let a = TypedPipe::<Vec<u32>>::create(&pn, config).unwrap();
    let mut child = fork(|| {
        let (Ok(q), Ok(b)) = (
            TypedQueue::<String>::open(&qn),
            TypedPipe::<Vec<u32>>::open(&pn),
        ) else {
            return 2;
        };
        current_thread().block_on(async {
            std::thread::sleep(Duration::from_millis(30));
            if q.put_async(&"hello".to_string()).await.is_err() {
                return 3;
            }
            match b.recv_async().await {
                Ok(v) if v == [1, 2, 3] => {}
                _ => return 4,
            }
            b.send_async(&vec![4, 5]).await.map_or(5, |_| 0)
        })
    })
    .unwrap();
    current_thread().block_on(async {
        let s = tokio::time::timeout(WAKE_PATIENCE, q.get_async())
            .await
            .expect("get: lost wake-up")
            .unwrap();
        assert_eq!(s, "hello");
        a.send_async(&vec![1, 2, 3]).await.unwrap();
        let v = tokio::time::timeout(WAKE_PATIENCE, a.recv_async())
            .await
            .expect("recv: lost wake-up")
            .unwrap();
        assert_eq!(v, [4, 5]);
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn a_future_pending_for_a_second_uses_under_two_percent_of_a_core() {
    // In a child of its own, so RUSAGE_SELF counts its runtime and waiter
    // threads only.
    let mut child = fork(|| {
        let q = Queue::<u64>::anon(RingConfig::new(4)).unwrap();
        let event = Shared::<Event>::anon(()).unwrap();
        let rt = current_thread();
        let (cpu0, start) = (common::cpu_time(libc::RUSAGE_SELF), Instant::now());
        let timed_out = rt.block_on(async {
            let both = async { tokio::join!(q.pop_async(), event.wait_async()) };
            tokio::time::timeout(Duration::from_secs(1), both)
                .await
                .is_err()
        });
        let (used, took) = (common::cpu_time(libc::RUSAGE_SELF) - cpu0, start.elapsed());
        println!("two futures pending for {took:?}: {used:?} of CPU");
        if !timed_out {
            return 3;
        }
        if used * 50 > took {
            return 4;
        }
        0
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

/// Forks this many children while another thread of the parent keeps a
/// process-global async lock busy: before the fix about one in 40 to 200
/// children hung for ever in its first async wait.
const FORKS: usize = 300;

/// How long a forked child may take for its one short async wait.
const FORKED_CHILD_BOUND: Duration = Duration::from_secs(10);

/// Forks [`FORKS`] children while `hammer` runs on another thread until
/// told to stop; each child runs `child` and must end with 0 within
/// [`FORKED_CHILD_BOUND`].
fn fork_while(hammer: impl FnOnce(&AtomicBool) + Send, child: fn() -> i32) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let t = s.spawn(|| hammer(&stop));
        let mut failed = None;
        for i in 0..FORKS {
            let mut kid = fork(child).unwrap();
            match kid.join_timeout(FORKED_CHILD_BOUND).unwrap() {
                Some(ExitStatus::Code(0)) => {}
                other => {
                    // Dropping `kid` kills a child that still runs.
                    failed = Some((i, other));
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        if let Some((i, status)) = failed {
            panic!(
                "forked child #{i} ended {status:?} (None: still waiting after {FORKED_CHILD_BOUND:?})"
            );
        }
    });
}

#[test]
fn a_child_forked_while_another_thread_registers_a_future_can_wait_async() {
    fork_while(
        |stop| {
            let q = Queue::<u64>::anon(RingConfig::new(4)).unwrap();
            let rt = current_thread();
            while !stop.load(Ordering::Relaxed) {
                // Polls the pop once (it registers with a waiter thread),
                // then drops it (which takes the registration back).
                rt.block_on(async {
                    tokio::select! {
                        biased;
                        _ = q.pop_async() => {}
                        () = std::future::ready(()) => {}
                    }
                });
            }
        },
        || {
            let q = Queue::<u64>::anon(RingConfig::new(4)).unwrap();
            current_thread().block_on(async {
                let pending = tokio::time::timeout(Duration::from_millis(5), q.pop_async()).await;
                i32::from(pending.is_ok())
            })
        },
    );
}

#[test]
fn a_child_forked_while_another_thread_watches_a_child_can_join_async() {
    fork_while(
        |stop| {
            let sleeper = Shared::<Event>::anon(()).unwrap();
            let mut kid = fork(|| {
                let _ = sleeper.wait_timeout(CHILD_TIMEOUT);
                0
            })
            .unwrap();
            let rt = current_thread();
            while !stop.load(Ordering::Relaxed) {
                // Starts a join (it watches the child's pidfd), then drops
                // it (which stops watching).
                rt.block_on(async {
                    tokio::select! {
                        biased;
                        _ = kid.join_async() => {}
                        () = std::future::ready(()) => {}
                    }
                });
            }
            sleeper.set();
            assert_eq!(join(&mut kid), ExitStatus::Code(0));
        },
        || {
            let Ok(mut grandchild) = fork(|| 0) else {
                return 2;
            };
            current_thread().block_on(async {
                match tokio::time::timeout(CHILD_TIMEOUT, grandchild.join_async()).await {
                    Ok(Ok(ExitStatus::Code(0))) => 0,
                    _ => 3,
                }
            })
        },
    );
}

// ---------------------------------------------------------------------------
// End-of-stream: an async receive whose senders have all gone
// ---------------------------------------------------------------------------

/// The bound on an async end-of-stream latency asserted: the promise is
/// 100 ms (two owner check intervals); this leaves room for a loaded
/// machine. The tests print the figures.
const EOS_BOUND: Duration = Duration::from_secs(1);

/// How long the future waits at most before the test calls it stuck
/// (before the fix, every one of them waited here).
const EOS_PATIENCE: Duration = Duration::from_secs(5);

/// How the peer goes: exits without closing anything, or is SIGKILLed.
#[derive(Clone, Copy, Debug)]
enum Death {
    Exit,
    Kill,
}

/// A peer in a child process: it runs `open` (which opens its ends and
/// may send; the handles stay open until it goes), then goes by `death`
/// 230 ms later (not a multiple of the 50 ms check interval, so that a
/// check that happens to come right after does not flatter the figure).
/// The parent's `recv` future (polled from the peer's start on) must resolve with
/// end-of-stream within [`EOS_BOUND`] of the death; returns its output.
fn peer_goes<H, R>(
    what: &str,
    death: Death,
    open: impl FnOnce() -> Option<H>,
    recv: impl std::future::Future<Output = R>,
) -> R {
    let stamp = Shared::<shmipc::AtomicU64>::anon(0).unwrap();
    let ready = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let Some(_ends) = open() else { return 2 };
        ready.set();
        std::thread::sleep(Duration::from_millis(230));
        if let Death::Exit = death {
            stamp.store(now_ns(), Ordering::SeqCst);
            // SAFETY: _exit ends the process at once, its handles open:
            // no destructor runs, no close.
            unsafe { libc::_exit(0) }
        }
        std::thread::sleep(CHILD_TIMEOUT);
        3
    })
    .unwrap();
    assert!(ready.wait_timeout(CHILD_TIMEOUT), "{what}: peer not ready");
    let out = current_thread().block_on(async {
        let mut fut = std::pin::pin!(tokio::time::timeout(EOS_PATIENCE, recv));
        if let Death::Kill = death {
            tokio::select! {
                r = &mut fut => return r,
                () = tokio::time::sleep(Duration::from_millis(230)) => {}
            }
            stamp.store(now_ns(), Ordering::SeqCst);
            child.kill().unwrap();
        }
        fut.await
    });
    let since = stamp.load(Ordering::SeqCst);
    let Ok(out) = out else {
        panic!("{what}, peer {death:?}: the receive still waited after {EOS_PATIENCE:?}");
    };
    assert_ne!(since, 0, "{what}: the peer recorded no time");
    let d = Duration::from_nanos(now_ns().saturating_sub(since));
    eprintln!(
        "async end-of-stream latency, {what}, peer {death:?}: {:.1} ms",
        d.as_secs_f64() * 1e3
    );
    assert!(
        d < EOS_BOUND,
        "{what}, peer {death:?}: end-of-stream took {d:?}"
    );
    let status = join(&mut child);
    match death {
        Death::Exit => assert_eq!(status, ExitStatus::Code(0), "{what}"),
        Death::Kill => assert!(!status.success(), "{what}: {status:?}"),
    }
    out
}

#[test]
#[cfg_attr(
    feature = "strict-wakes",
    ignore = "strict-wakes: no periodic wake for a future armed on a word that moves, so no check finds a sender that died without leaving"
)]
fn an_async_pipe_receive_ends_when_the_other_end_exits_or_is_killed() {
    for death in [Death::Exit, Death::Kill] {
        let (_n, name) = common::segment_name("aioeospipe", "p");
        let a = Pipe::create(&name, BytesConfig::new(1024, 64)).unwrap();
        let r = peer_goes(
            "Pipe",
            death,
            || {
                let b = Pipe::open(&name).ok()?;
                b.send(b"last").ok()?;
                Some(b)
            },
            async {
                assert_eq!(a.recv_async().await.unwrap(), b"last");
                a.recv_async().await
            },
        );
        assert_eq!(r.err(), Some(shmipc::RecvError::Disconnected), "{death:?}");
    }
}

#[test]
#[cfg_attr(
    feature = "strict-wakes",
    ignore = "strict-wakes: no periodic wake for a future armed on a word that moves, so no check finds a sender that died without leaving"
)]
fn an_async_queue_pop_ends_when_every_producer_exits_or_is_killed() {
    for death in [Death::Exit, Death::Kill] {
        let (_n, name) = common::segment_name("aioeosq", "q");
        let q = Queue::<u64>::create(&name, RingConfig::new(8)).unwrap();
        let r = peer_goes(
            "Queue",
            death,
            || {
                let p = Queue::<u64>::open(&name).ok()?;
                p.push(7).ok()?;
                Some(p)
            },
            async {
                assert_eq!(q.pop_async().await.unwrap(), 7);
                q.pop_async().await
            },
        );
        assert_eq!(r.err(), Some(shmipc::PopError::Disconnected), "{death:?}");
    }
}

#[test]
#[cfg_attr(
    feature = "strict-wakes",
    ignore = "strict-wakes: no periodic wake for a future armed on a word that moves, so no check finds a sender that died without leaving"
)]
fn an_async_byte_queue_receive_ends_when_every_writer_exits_or_is_killed() {
    for death in [Death::Exit, Death::Kill] {
        let (_n, name) = common::segment_name("aioeosbq", "q");
        let q = shmipc::ByteQueue::create(&name, BytesConfig::new(1024, 64)).unwrap();
        let r = peer_goes(
            "ByteQueue",
            death,
            || {
                let p = shmipc::ByteQueue::open(&name).ok()?;
                p.send(b"last").ok()?;
                Some(p)
            },
            async {
                assert_eq!(q.recv_async().await.unwrap(), b"last");
                q.recv_async().await
            },
        );
        assert_eq!(r.err(), Some(shmipc::RecvError::Disconnected), "{death:?}");
    }
}

#[test]
#[cfg_attr(
    feature = "strict-wakes",
    ignore = "strict-wakes: no periodic wake for a future armed on a word that moves, so no check finds a sender that died without leaving"
)]
fn async_typed_receives_end_when_the_peer_exits_or_is_killed() {
    for death in [Death::Exit, Death::Kill] {
        let (n, name) = common::segment_name("aioeostq", "q");
        let q = TypedQueue::<String>::create(&name, BytesConfig::new(1024, 64)).unwrap();
        let r = peer_goes(
            "TypedQueue",
            death,
            || {
                let p = TypedQueue::<String>::open(&name).ok()?;
                p.put(&"last".to_string()).ok()?;
                Some(p)
            },
            async {
                assert_eq!(q.get_async().await.unwrap(), "last");
                q.get_async().await
            },
        );
        let e = r.unwrap_err();
        assert!(e.is_disconnected(), "TypedQueue, {death:?}: {e}");

        let name = n.name("p");
        let a = TypedPipe::<u32>::create(&name, BytesConfig::new(1024, 64)).unwrap();
        let r = peer_goes(
            "TypedPipe",
            death,
            || {
                let b = TypedPipe::<u32>::open(&name).ok()?;
                b.send(&5).ok()?;
                Some(b)
            },
            async {
                assert_eq!(a.recv_async().await.unwrap(), 5);
                a.recv_async().await
            },
        );
        let e = r.unwrap_err();
        assert!(e.is_disconnected(), "TypedPipe, {death:?}: {e}");
    }
}
