//! JoinableQueue across real processes: consumers mark each item done,
//! `join` returns once every item put is done (and not before), extra
//! `task_done` calls are an error naming the segment, and the segment is
//! not a plain TypedQueue's.

mod common;

use std::time::Duration;

use common::{join, CHILD_TIMEOUT};
use serde::{Deserialize, Serialize};
use shmipc::sync::{AtomicU64, Ordering};
use shmipc::{fork, BytesConfig, Error, ExitStatus, JoinableQueue, Named, Shared, TypedQueue};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Chunk {
    path: String,
    lines: Vec<u32>,
}

fn config() -> BytesConfig {
    BytesConfig::for_max_message(256).unwrap()
}

#[test]
fn join_waits_for_every_task_done_in_other_processes() {
    let (_names, name) = common::segment_name("joinable", "work");
    // Room for every item, so that all are put before any consumer runs.
    let q = JoinableQueue::<Chunk>::create(&name, BytesConfig::new(64 * 1024, 256)).unwrap();
    let sum = Shared::<AtomicU64>::anon(0).unwrap();
    const ITEMS: u32 = 200;
    for i in 0..ITEMS {
        let c = Chunk {
            path: format!("/data/{i}"),
            lines: vec![i, 1],
        };
        q.put(&c).unwrap();
    }
    assert_eq!(q.unfinished_tasks(), ITEMS);
    // Nothing is done yet: join times out.
    assert!(!q.join_timeout(Duration::from_millis(20)));
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            let name = name.clone();
            let sum = &sum;
            fork(move || {
                let q = JoinableQueue::<Chunk>::open(&name).expect("open");
                while let Ok(c) = q.get_timeout(Duration::from_millis(200)) {
                    // Slow enough that the parent's join is asleep by now.
                    std::thread::sleep(Duration::from_micros(200));
                    sum.fetch_add(u64::from(c.lines.iter().sum::<u32>()), Ordering::SeqCst);
                    if q.task_done().is_err() {
                        return 2;
                    }
                }
                0
            })
            .unwrap()
        })
        .collect();
    assert!(q.join_timeout(CHILD_TIMEOUT), "join did not return");
    // Every item's work is visible once join returns.
    let expected: u64 = (0..u64::from(ITEMS)).map(|i| i + 1).sum();
    assert_eq!(sum.load(Ordering::SeqCst), expected);
    assert_eq!(q.unfinished_tasks(), 0);
    for w in &mut workers {
        assert_eq!(join(w), ExitStatus::Code(0));
    }
}

#[test]
fn task_done_more_than_put_is_an_error_naming_the_segment() {
    let (_names, name) = common::segment_name("joinable-extra", "q");
    let q = JoinableQueue::<String>::create(&name, config()).unwrap();
    q.put(&"one".to_owned()).unwrap();
    assert_eq!(q.get().unwrap(), "one");
    q.task_done().unwrap();
    let err = q.task_done().unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
    assert!(err.to_string().contains("task_done"), "{err}");
    assert_eq!(q.unfinished_tasks(), 0);
    // join returns at once with nothing unfinished.
    assert!(q.join_timeout(Duration::ZERO));
    q.join();
}

#[test]
fn a_failed_put_leaves_no_unfinished_task() {
    // Two 16-byte records fit a ring of 64 bytes.
    let q = JoinableQueue::<String>::anon(BytesConfig::new(64, 16)).unwrap();
    q.put(&"a".to_owned()).unwrap();
    q.put(&"b".to_owned()).unwrap();
    assert!(q.put_nowait(&"c".to_owned()).is_err());
    assert!(
        q.put(&"x".repeat(100)).is_err(),
        "larger than the largest message"
    );
    assert_eq!(q.unfinished_tasks(), 2);
}

#[test]
fn a_joinable_segment_is_not_a_plain_typed_queue() {
    let (names, name) = common::segment_name("joinable-kind", "q");
    let _q = JoinableQueue::<String>::create(&name, config()).unwrap();
    // A plain TypedQueue would put without counting; it is refused.
    assert!(matches!(
        TypedQueue::<String>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
    let plain = names.name("plain");
    let _p = TypedQueue::<String>::create(&plain, config()).unwrap();
    assert!(matches!(
        JoinableQueue::<String>::open(&plain),
        Err(Error::TypeMismatch { .. })
    ));
}
