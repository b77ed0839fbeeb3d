//! The typed pool across real (forked) worker processes: any `fn(A) -> R`
//! of serde types per call, the map family with chunks, callbacks,
//! initializer, maxtasksperchild, panics and timeouts.

use shmipc::sync::{AtomicU32, Ordering};
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmipc::{TaskError, TypedPool};

const LONG: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Doc {
    title: String,
    words: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Summary {
    title: String,
    longest: String,
    pid: u32,
}

fn summarize(d: Doc) -> Summary {
    let longest = d
        .words
        .iter()
        .max_by_key(|w| w.len())
        .cloned()
        .unwrap_or_default();
    Summary {
        title: d.title.to_uppercase(),
        longest,
        pid: std::process::id(),
    }
}

fn doc(i: usize) -> Doc {
    Doc {
        title: format!("doc {i}"),
        words: (0..=i % 4).map(|k| "w".repeat(k + 1)).collect(),
    }
}

#[test]
fn apply_runs_any_function_in_a_worker_process() {
    let pool = TypedPool::new(2).unwrap();
    let s = pool.apply(summarize, doc(3)).unwrap();
    assert_eq!(s.title, "DOC 3");
    assert_eq!(s.longest, "wwww");
    assert_ne!(s.pid, std::process::id(), "ran in this process");
    assert!(pool.as_bytes().pids().contains(&s.pid));
    // Another function, other types, same pool; a closure that captures
    // nothing coerces.
    assert_eq!(
        pool.apply(|v: Vec<u32>| v.iter().sum::<u32>(), vec![1, 2, 3])
            .unwrap(),
        6
    );
    assert_eq!(
        pool.apply(
            |s: String| s.chars().rev().collect::<String>(),
            "abc".into()
        )
        .unwrap(),
        "cba"
    );
    let r = pool
        .apply_async(
            |x: (u8, Option<String>)| x.1.map(|s| s.len() + x.0 as usize),
            (2, Some("xyz".into())),
        )
        .unwrap();
    assert_eq!(r.get_timeout(LONG).unwrap(), Some(5));
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
}

#[test]
fn map_keeps_input_order_for_every_chunksize() {
    let pool = TypedPool::new(3).unwrap();
    let inputs: Vec<Doc> = (0..40).map(doc).collect();
    let want: Vec<String> = inputs.iter().map(|d| d.title.to_uppercase()).collect();
    for chunksize in [0, 1, 3, 7, 100] {
        let got = pool.map(summarize, inputs.clone(), chunksize).unwrap();
        let titles: Vec<String> = got.into_iter().map(|s| s.title).collect();
        assert_eq!(titles, want, "chunksize {chunksize}");
    }
    let pids: BTreeSet<u32> = pool
        .map(summarize, inputs.clone(), 1)
        .unwrap()
        .into_iter()
        .map(|s| s.pid)
        .collect();
    assert!(!pids.contains(&std::process::id()));
    assert!(pool.map(summarize, Vec::new(), 0).unwrap().is_empty());
    let sums = pool
        .starmap(
            |a: u64, b: String| a + b.len() as u64,
            (0..10).map(|i| (i, "ab".repeat(i as usize))),
            3,
        )
        .unwrap();
    assert_eq!(sums, (0..10).map(|i| 3 * i).collect::<Vec<_>>());
    let r = pool.map_async(|x: i32| -x, 0..5, 2);
    assert_eq!(r.get_timeout(LONG).unwrap(), [0, -1, -2, -3, -4]);
    assert!(r.ready());
}

/// Sleeps longer for earlier inputs, so later results come in first.
fn slow_first(i: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(30 * (5 - i.min(5))));
    i * 10
}

#[test]
fn imap_yields_in_input_order_and_imap_unordered_yields_all() {
    let pool = TypedPool::new(3).unwrap();
    let got: Vec<u64> = pool.imap(slow_first, 0..6, 1).map(Result::unwrap).collect();
    assert_eq!(got, [0, 10, 20, 30, 40, 50]);
    let got: Vec<u64> = pool.imap(slow_first, 0..6, 4).map(Result::unwrap).collect();
    assert_eq!(got, [0, 10, 20, 30, 40, 50]);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(slow_first, 0..6, 0)
        .map(Result::unwrap)
        .collect();
    // With three workers, the last inputs (no sleep) finish first.
    assert_ne!(unordered, [0, 10, 20, 30, 40, 50], "came in input order");
    unordered.sort();
    assert_eq!(unordered, [0, 10, 20, 30, 40, 50]);
    let mut it = pool.imap(slow_first, [0], 1);
    assert_eq!(it.next_timeout(Duration::ZERO), Err(TaskError::Timeout));
    assert_eq!(it.next_timeout(LONG), Ok(Some(Ok(0))));
    assert_eq!(it.next_timeout(LONG), Ok(None));
}

fn explode(i: u32) -> u32 {
    if i == 7 {
        panic!("boom at {i}");
    }
    i
}

#[test]
fn a_panic_is_an_error_carrying_its_message() {
    let pool = TypedPool::new(2).unwrap();
    assert_eq!(
        pool.apply(explode, 7),
        Err(TaskError::Panicked("boom at 7".into()))
    );
    assert_eq!(pool.apply(explode, 6), Ok(6));
    // In a map, the first error by input order.
    assert_eq!(
        pool.map(explode, 0..20, 2),
        Err(TaskError::Panicked("boom at 7".into()))
    );
    // In imap, the failed chunk's items are errors; the others arrive.
    let items: Vec<_> = pool.imap(explode, 5..10, 2).collect();
    assert_eq!(items[0], Ok(5));
    assert_eq!(items[1], Ok(6));
    assert_eq!(items[2], Err(TaskError::Panicked("boom at 7".into())));
    assert_eq!(items[3], Err(TaskError::Panicked("boom at 7".into())));
    assert_eq!(items[4], Ok(9));
}

#[test]
fn callbacks_and_error_callbacks_get_the_outcome() {
    let pool = TypedPool::new(2).unwrap();
    let (tx, rx) = mpsc::channel::<Result<u32, TaskError>>();
    // `explode(x)`, its outcome sent to `rx` by the callback or the error
    // callback.
    let then = |x: u32| {
        let (ok, err) = (tx.clone(), tx.clone());
        pool.apply_async_then(
            explode,
            x,
            move |v| ok.send(Ok(v)).unwrap(),
            move |e| err.send(Err(e)).unwrap(),
        )
        .unwrap()
    };
    let r = then(3);
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Ok(3));
    assert_eq!(r.get().unwrap(), 3);
    let r = then(7);
    assert_eq!(
        rx.recv_timeout(LONG).unwrap(),
        Err(TaskError::Panicked("boom at 7".into()))
    );
    assert_eq!(r.successful(), Some(false));
    let (all_tx, all_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    let m = pool.map_async_then(
        |x: u32| x + 1,
        0..10,
        3,
        move |v| all_tx.send(v).unwrap(),
        move |e| err_tx.send(e).unwrap(),
    );
    assert_eq!(
        all_rx.recv_timeout(LONG).unwrap(),
        (1..=10).collect::<Vec<u32>>()
    );
    assert!(m.wait_timeout(LONG));
    assert!(err_rx.try_recv().is_err());
    let (all_tx, all_rx) = mpsc::channel::<Vec<u32>>();
    let (err_tx, err_rx) = mpsc::channel();
    pool.map_async_then(
        explode,
        0..10,
        3,
        move |v| all_tx.send(v).unwrap(),
        move |e| err_tx.send(e).unwrap(),
    )
    .wait();
    assert_eq!(
        err_rx.recv_timeout(LONG).unwrap(),
        TaskError::Panicked("boom at 7".into())
    );
    assert!(all_rx.try_recv().is_err());
}

static SETTING: AtomicU32 = AtomicU32::new(0);

fn setup() {
    SETTING.store(42, Ordering::SeqCst);
}

fn read_setting(_: ()) -> u32 {
    SETTING.load(Ordering::SeqCst)
}

#[test]
fn the_initializer_runs_in_each_worker() {
    let pool = TypedPool::builder(2).initializer(setup).build().unwrap();
    assert_eq!(pool.map(read_setting, vec![(); 8], 1).unwrap(), vec![42; 8]);
    // Not here, and not in the workers of a pool without it.
    assert_eq!(SETTING.load(Ordering::SeqCst), 0);
    let plain = TypedPool::new(1).unwrap();
    assert_eq!(plain.apply(read_setting, ()).unwrap(), 0);
}

fn pid(_: u32) -> u32 {
    std::process::id()
}

#[test]
fn max_tasks_per_child_replaces_workers() {
    let pool = TypedPool::builder(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..6).map(|i| pool.apply(pid, i).unwrap()).collect();
    let distinct: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "pids {pids:?}");
    assert_eq!(pids[0], pids[1]);
    assert_eq!(pids[2], pids[3]);
    // Without it, one worker runs them all.
    let pool = TypedPool::new(1).unwrap();
    let distinct: BTreeSet<u32> = (0..6).map(|i| pool.apply(pid, i).unwrap()).collect();
    assert_eq!(distinct.len(), 1);
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn every_wait_has_a_timeout() {
    let pool = TypedPool::new(2).unwrap();
    let start = Instant::now();
    assert_eq!(
        pool.apply_timeout(nap, 5_000, Duration::from_millis(50)),
        Err(TaskError::Timeout)
    );
    assert_eq!(
        pool.map_timeout(nap, [5_000, 1], 1, Duration::from_millis(50)),
        Err(TaskError::Timeout)
    );
    assert_eq!(
        pool.starmap_timeout(
            |a: u64, b: u64| nap(a + b),
            [(4_000, 1000)],
            1,
            Duration::from_millis(50)
        ),
        Err(TaskError::Timeout)
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let r = pool.apply_async(nap, 20).unwrap();
    assert!(!r.wait_timeout(Duration::ZERO));
    assert_eq!(r.get_timeout(LONG), Ok(20));
    pool.terminate();
    assert!(pool.join_timeout(LONG));
    assert_eq!(pool.apply(nap, 1), Err(TaskError::Closed));
}

#[test]
fn dropping_the_pool_ends_its_workers() {
    let pool = TypedPool::new(2).unwrap();
    let r = pool.apply_async(nap, 60_000).unwrap();
    let pids = pool.as_bytes().pids();
    assert_eq!(pids.len(), 2);
    drop(pool);
    assert_eq!(r.get_timeout(LONG), Err(TaskError::Terminated));
    for pid in pids {
        // SAFETY: signal 0 only asks whether the (reaped) pid exists.
        let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        assert!(!alive, "worker {pid} outlived its pool");
    }
}
