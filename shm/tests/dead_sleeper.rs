//! A process SIGKILLed while it sleeps in a blocking call leaves its
//! registration in the sleeper count behind. The count must recover: after
//! a bounded number of wake system calls that find nobody, later notifies
//! make none (`shmipc_core::queue`, "A sleeper that dies").
//!
//! Each case forks a child that blocks (pop on an empty MPMC queue, SPSC
//! ring or byte queue; acquire on an empty semaphore), waits until the
//! child is inside `futex` (`/proc/<pid>/syscall`), kills it, and then runs
//! push+pop (or release+acquire) pairs in this process, counting this
//! process's `FUTEX_WAKE` system calls (the core's `counters` feature).
//! Without recovery every pair makes one; with it, the first batch makes at
//! most `MISS_LIMIT` plus the wipe's own, and a second batch makes none.
//!
//! One test in its own binary: the wake counter is per process, and other
//! tests running in parallel threads would add to it.

mod common;

use std::time::Duration;

use shmipc::{
    fork, ByteQueue, BytesConfig, Child, ExitStatus, Named, Queue, RingConfig, Semaphore, Shared,
    SpscQueue, Unlinker,
};
use shmipc_core::futex::wake_calls;
use shmipc_core::queue::MISS_LIMIT;

const PAIRS: u64 = 1000;

/// Whether `pid`'s main thread is inside the `futex` system call now.
fn in_futex(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .is_some_and(|nr| nr == libc::SYS_futex.to_string())
}

/// Waits until `child` sleeps in `futex`, then SIGKILLs and reaps it.
fn kill_asleep(child: &mut Child, what: &str) {
    let pid = child.pid();
    assert!(
        common::eventually(Duration::from_secs(20), || in_futex(pid)),
        "{what}: child {pid} never slept in futex"
    );
    child.kill().unwrap();
    assert_eq!(
        common::join(child),
        ExitStatus::Signal(libc::SIGKILL),
        "{what}: the child was not the one killed"
    );
}

/// Runs `batch` twice and checks the wake system calls each made; the
/// complaint, if any.
fn check_recovery(what: &str, mut batch: impl FnMut()) -> Option<String> {
    let before = wake_calls();
    batch();
    let first = wake_calls() - before;
    let before = wake_calls();
    batch();
    let second = wake_calls() - before;
    // The wipe itself wakes twice (a bump for the notify, one for the wipe).
    let bound = u64::from(MISS_LIMIT) + 2;
    if first > bound || second != 0 {
        return Some(format!(
            "{what}: {first} FUTEX_WAKE calls in {PAIRS} pairs after a sleeper died \
             (at most {bound} expected), then {second} in {PAIRS} more (0 expected)"
        ));
    }
    None
}

#[test]
fn a_sleeper_killed_while_blocked_stops_costing_wake_calls() {
    let names = Unlinker::new("dead-sleeper");
    let mut complaints = Vec::new();
    // MPMC: a consumer killed asleep in pop.
    let name = names.name("mpmc");
    let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let mut child = fork(|| {
        let q = Queue::<u64>::open(&name).unwrap();
        q.pop().map_or(1, |_| 2)
    })
    .unwrap();
    kill_asleep(&mut child, "Queue::pop");
    complaints.extend(check_recovery("Queue", || {
        for i in 0..PAIRS {
            q.push(i).unwrap();
            assert_eq!(q.pop(), Ok(i));
        }
    }));

    // SPSC: the consumer killed asleep in pop; this process then takes the
    // consumer role over from the dead holder (which alone does not repair
    // the count).
    let name = names.name("spsc");
    let spsc = SpscQueue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let mut tx = spsc.take_producer().unwrap();
    let mut child = fork(|| {
        let mut rx = SpscQueue::<u64>::consumer(&name).unwrap();
        rx.pop().map_or(1, |_| 2)
    })
    .unwrap();
    kill_asleep(&mut child, "SpscConsumer::pop");
    let mut rx = spsc.take_consumer().unwrap();
    complaints.extend(check_recovery("SpscQueue", || {
        for i in 0..PAIRS {
            tx.push(i).unwrap();
            assert_eq!(rx.pop(), Ok(i));
        }
    }));

    // Byte queue: a reader killed asleep in recv.
    let name = names.name("bytes");
    let bq = ByteQueue::create(&name, BytesConfig::new(256, 8)).unwrap();
    let mut child = fork(|| {
        let bq = ByteQueue::open(&name).unwrap();
        let mut buf = [0u8; 8];
        bq.recv_into(&mut buf).map_or(1, |_| 2)
    })
    .unwrap();
    kill_asleep(&mut child, "ByteQueue::recv_into");
    complaints.extend(check_recovery("ByteQueue", || {
        let mut buf = [0u8; 8];
        for i in 0..PAIRS {
            bq.send(&i.to_le_bytes()).unwrap();
            assert_eq!(bq.recv_into(&mut buf), Ok(8));
        }
    }));

    // Semaphore: an acquirer killed asleep in acquire.
    let name = names.name("sem");
    let sem = Shared::<Semaphore>::create(&name, common::unbounded(0)).unwrap();
    let mut child = fork(|| {
        let sem = Shared::<Semaphore>::open(&name).unwrap();
        sem.acquire();
        2
    })
    .unwrap();
    kill_asleep(&mut child, "Semaphore::acquire");
    complaints.extend(check_recovery("Semaphore", || {
        for _ in 0..PAIRS {
            sem.release().unwrap();
            assert!(sem.try_acquire());
        }
    }));
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}
