//! Every public call that takes a timeout accepts every `Duration`:
//! `Duration::ZERO` and a small timeout on something that is not ready give
//! the call's timeout result at once (or after the small wait), and
//! `Duration::MAX` means "for ever": on something that is, or becomes,
//! ready it succeeds, and it never panics (as `Instant + Duration::MAX`
//! does).
//!
//! The calls are enumerated from the sources (`api_scan`): the last test
//! fails if a public function taking a `Duration` is not called here.

mod api_scan;
mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use shmipc::sync::Ordering;
use shmipc::{
    fork, Array, Barrier, BarrierError, ByteQueue, BytesConfig, Condition, DictConfig, Event,
    ListConfig, Lock, LockError, Named, Options, Pipe, Pool, PopError, Process, PushError, Queue,
    RLock, RecvError, RingConfig, Semaphore, SendError, Shared, SharedDict, SharedList, SpscQueue,
    TaskError, Value,
};
use shmipc::{JoinableQueue, MessageError, TypedDict, TypedPipe, TypedPool, TypedQueue};

const SMALL: Duration = Duration::from_millis(10);
/// How long a not-ready call with [`SMALL`] may take, generously.
const LATE: Duration = Duration::from_secs(5);

thread_local! {
    static COVERED: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
}

/// Runs `call` and checks that it did not panic and that `ok` accepts what
/// it returned; records `path` as covered.
#[track_caller]
fn check<R: Debug>(
    path: &str,
    d: Duration,
    call: impl FnOnce(Duration) -> R,
    ok: impl Fn(&R) -> bool,
) {
    COVERED.with(|c| c.borrow_mut().insert(path.to_owned()));
    let start = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| call(d)));
    let took = start.elapsed();
    let r = r.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        panic!("{path}({d:?}) panicked: {msg}")
    });
    assert!(ok(&r), "{path}({d:?}) returned {r:?}");
    if d != Duration::MAX {
        assert!(took <= d + LATE, "{path}({d:?}) took {took:?}");
    }
}

fn is_ok<T, E>(r: &Result<T, E>) -> bool {
    r.is_ok()
}

/// `call` on something not ready, with zero and a small timeout: `timed_out`
/// must accept both results.
#[track_caller]
fn not_ready<R: Debug>(
    path: &str,
    mut call: impl FnMut(Duration) -> R,
    timed_out: impl Fn(&R) -> bool,
) {
    check(path, Duration::ZERO, &mut call, &timed_out);
    check(path, SMALL, &mut call, &timed_out);
}

/// `call` with `Duration::MAX` on something that is (or becomes) ready.
#[track_caller]
fn ready_max<R: Debug>(path: &str, call: impl FnOnce(Duration) -> R, ok: impl Fn(&R) -> bool) {
    check(path, Duration::MAX, call, ok);
}

/// `timed` on a lock that another thread holds (`hold`) for 300 ms: it
/// times out with zero and a small timeout, and succeeds with
/// `Duration::MAX` once the holder lets go.
fn held_elsewhere<G>(
    path: &str,
    hold: impl Fn() -> G + Sync,
    timed: impl Fn(Duration) -> Result<(), LockError>,
) {
    std::thread::scope(|s| {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let hold = &hold;
        let holder = s.spawn(move || {
            let _g = hold();
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        held_rx.recv().unwrap();
        not_ready(path, &timed, |r| *r == Err(LockError::Timeout));
        // Becomes free while we wait for ever.
        ready_max(path, &timed, |r| r.is_ok());
        holder.join().unwrap();
    });
}

/// The calls that `ByteQueue` and `PipeEnd` share, on a ring of 64 bytes
/// (two records of 16-byte messages fill it): `$rx` receives what `$tx`
/// sends. `$poll` names the channel's readiness probe and `$call` calls it;
/// `$none` accepts what the probe returns on the empty channel, `$some`
/// what it returns once a 3-byte message waits.
macro_rules! byte_channel_takes_any_timeout {
    ($ty:literal, $tx:expr, $rx:expr, $poll:literal: $call:expr, $none:expr, $some:expr) => {{
        let (tx, rx) = (&$tx, &$rx);
        let empty = |r: &RecvError| *r == RecvError::Timeout;
        let full = |r: &SendError| *r == SendError::Timeout;
        let path = |call: &str| format!("shm::{}::{call}", $ty);
        not_ready(&path($poll), $call, $none);
        not_ready(
            &path("recv_timeout"),
            |t| rx.recv_timeout(t).map(drop),
            |r| r.as_ref().err().is_some_and(empty),
        );
        not_ready(
            &path("recv_into_timeout"),
            |t| rx.recv_into_timeout(&mut [0; 16], t),
            |r| r.as_ref().err().is_some_and(empty),
        );
        not_ready(
            &path("recv_vec_timeout"),
            |t| rx.recv_vec_timeout(t),
            |r| r.as_ref().err().is_some_and(empty),
        );
        ready_max(
            &path("send_timeout"),
            |t| tx.send_timeout(b"one", t),
            |r| r.is_ok(),
        );
        ready_max(
            &path("reserve_timeout"),
            |t| {
                tx.reserve_timeout(3, t).map(|mut g| {
                    g.write_at(0, b"two").unwrap();
                    g.commit();
                })
            },
            |r| r.is_ok(),
        );
        // Full now.
        not_ready(
            &path("send_timeout"),
            |t| tx.send_timeout(b"x", t),
            |r| r.as_ref().err().is_some_and(full),
        );
        not_ready(
            &path("reserve_timeout"),
            |t| tx.reserve_timeout(1, t).map(drop),
            |r| r.as_ref().err().is_some_and(full),
        );
        ready_max(&path($poll), $call, $some);
        ready_max(
            &path("recv_timeout"),
            |t| rx.recv_timeout(t).map(|g| g.len()),
            |r| *r == Ok(3),
        );
        ready_max(
            &path("recv_into_timeout"),
            |t| rx.recv_into_timeout(&mut [0; 16], t),
            |r| *r == Ok(3),
        );
        tx.send(b"three").unwrap();
        ready_max(
            &path("recv_vec_timeout"),
            |t| rx.recv_vec_timeout(t),
            |r| r.as_deref() == Ok(&b"three"[..]),
        );
    }};
}

#[test]
fn sync_primitives_take_any_timeout() {
    // Lock and RLock: held by another thread, then released.
    let lock = Shared::<Lock>::anon(()).unwrap();
    held_elsewhere(
        "core::Lock::lock_timeout",
        || lock.lock().unwrap(),
        |t| lock.lock_timeout(t).map(drop),
    );
    let rlock = Shared::<RLock>::anon(()).unwrap();
    held_elsewhere(
        "core::RLock::lock_timeout",
        || (rlock.lock().unwrap(), rlock.lock().unwrap()),
        |t| rlock.lock_timeout(t).map(drop),
    );

    let sem = Shared::<Semaphore>::anon(common::unbounded(0)).unwrap();
    not_ready(
        "core::Semaphore::acquire_timeout",
        |t| sem.acquire_timeout(t),
        |r| !r,
    );
    sem.release().unwrap();
    ready_max(
        "core::Semaphore::acquire_timeout",
        |t| sem.acquire_timeout(t),
        |r| *r,
    );

    let event = Shared::<Event>::anon(()).unwrap();
    not_ready(
        "core::Event::wait_timeout",
        |t| event.wait_timeout(t),
        |r| !r,
    );
    event.set();
    ready_max(
        "core::Event::wait_timeout",
        |t| event.wait_timeout(t),
        |r| *r,
    );

    let cond = Shared::<Condition>::anon(()).unwrap();
    ready_max(
        "core::Condition::lock_timeout",
        |t| cond.lock_timeout(t).map(drop),
        |r| r.is_ok(),
    );
    {
        let _held = cond.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                not_ready(
                    "core::Condition::lock_timeout",
                    |t| cond.lock_timeout(t).map(drop),
                    |r| *r == Err(LockError::Timeout),
                );
            });
        });
    }
    not_ready(
        "core::CondGuard::wait_timeout",
        |t| {
            cond.lock()
                .unwrap()
                .wait_timeout(t)
                .map(|(_, notified)| notified)
        },
        |r| *r == Ok(false),
    );
    not_ready(
        "core::CondGuard::wait_timeout_while",
        |t| {
            cond.lock()
                .unwrap()
                .wait_timeout_while(t, || true)
                .map(|(_, done)| done)
        },
        |r| *r == Ok(false),
    );
    // Waits for ever, until another process notifies.
    let flag = Shared::<shmipc::AtomicU32>::anon(0).unwrap();
    for path in [
        "core::CondGuard::wait_timeout",
        "core::CondGuard::wait_timeout_while",
    ] {
        flag.store(0, Ordering::SeqCst);
        let guard = cond.lock().unwrap();
        let mut child = fork(|| {
            let _g = cond.lock().unwrap();
            flag.store(1, Ordering::SeqCst);
            cond.notify_all();
            0
        })
        .unwrap();
        if path.ends_with("while") {
            ready_max(
                path,
                |t| {
                    guard
                        .wait_timeout_while(t, || flag.load(Ordering::SeqCst) == 0)
                        .map(|(_, done)| done)
                },
                |r| *r == Ok(true),
            );
        } else {
            ready_max(
                path,
                |t| {
                    // A spurious return is allowed; loop as a caller would.
                    let mut g = guard;
                    loop {
                        let (next, _) = g.wait_timeout(t)?;
                        if flag.load(Ordering::SeqCst) == 1 {
                            return Ok::<_, LockError>(());
                        }
                        g = next;
                    }
                },
                |r| r.is_ok(),
            );
        }
        assert!(common::join(&mut child).success());
    }

    let barrier = Shared::<Barrier>::anon(2).unwrap();
    check(
        "core::Barrier::wait_timeout",
        Duration::ZERO,
        |t| barrier.wait_timeout(t),
        |r| *r == Err(BarrierError::Timeout),
    );
    barrier.reset();
    check(
        "core::Barrier::wait_timeout",
        SMALL,
        |t| barrier.wait_timeout(t),
        |r| *r == Err(BarrierError::Timeout),
    );
    barrier.reset();
    let mut child = fork(|| barrier.wait().map_or(9, |_| 0)).unwrap();
    ready_max(
        "core::Barrier::wait_timeout",
        |t| barrier.wait_timeout(t),
        |r| r.is_ok(),
    );
    assert!(common::join(&mut child).success());
}

#[test]
fn queues_take_any_timeout() {
    let q = Queue::<u64>::anon(RingConfig::new(2)).unwrap();
    not_ready(
        "shm::Queue::pop_timeout",
        |t| q.pop_timeout(t),
        |r| *r == Err(PopError::Timeout),
    );
    ready_max(
        "shm::Queue::push_timeout",
        |t| q.push_timeout(1, t),
        |r| r.is_ok(),
    );
    ready_max(
        "shm::Queue::push_timeout",
        |t| q.push_timeout(2, t),
        |r| r.is_ok(),
    );
    not_ready(
        "shm::Queue::push_timeout",
        |t| q.push_timeout(3, t),
        |r| *r == Err(PushError::Timeout),
    );
    ready_max(
        "shm::Queue::pop_timeout",
        |t| q.pop_timeout(t),
        |r| *r == Ok(1),
    );
    ready_max(
        "shm::Queue::pop_timeout",
        |t| q.pop_timeout(t),
        |r| *r == Ok(2),
    );

    let (mut p, mut c) = SpscQueue::<u64>::anon(RingConfig::new(1)).unwrap();
    not_ready(
        "shm::SpscConsumer::pop_timeout",
        |t| c.pop_timeout(t),
        |r| *r == Err(PopError::Timeout),
    );
    ready_max(
        "shm::SpscProducer::push_timeout",
        |t| p.push_timeout(1, t),
        |r| r.is_ok(),
    );
    not_ready(
        "shm::SpscProducer::push_timeout",
        |t| p.push_timeout(2, t),
        |r| *r == Err(PushError::Timeout),
    );
    ready_max(
        "shm::SpscConsumer::pop_timeout",
        |t| c.pop_timeout(t),
        |r| *r == Ok(1),
    );

    let b = ByteQueue::anon(BytesConfig::new(64, 16)).unwrap();
    byte_channel_takes_any_timeout!(
        "ByteQueue",
        b,
        b,
        "poll_timeout": |t| b.poll_timeout(t),
        |r| *r == Err(RecvError::Timeout),
        |r| *r == Ok(3)
    );
    let (a, z) = Pipe::anon(BytesConfig::new(64, 16)).unwrap();
    byte_channel_takes_any_timeout!(
        "PipeEnd",
        a,
        z,
        "poll": |t| z.poll(t),
        |r| !r,
        |r| *r
    );
    sole_handles_take_any_timeout();
}

/// The sole handles of a byte queue (`shmipc_core::bytes::sole`): taking
/// a side another thread holds for 300 ms, and their sends and receives.
fn sole_handles_take_any_timeout() {
    use shmipc::SoleError;
    let b = ByteQueue::anon(BytesConfig::new(64, 16)).unwrap();
    let b = &b;
    std::thread::scope(|s| {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = s.spawn(move || {
            let tx = b.sole_sender().unwrap();
            let rx = b.sole_receiver().unwrap();
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop((tx, rx));
        });
        held_rx.recv().unwrap();
        let held = |r: &Result<(), SoleError>| *r == Err(SoleError::Held);
        not_ready(
            "core::ByteQueue::sole_sender_timeout",
            |t| b.sole_sender_timeout(t).map(drop),
            held,
        );
        not_ready(
            "core::ByteQueue::sole_receiver_timeout",
            |t| b.sole_receiver_timeout(t).map(drop),
            held,
        );
        // Become free while we wait for ever.
        ready_max(
            "core::ByteQueue::sole_sender_timeout",
            |t| b.sole_sender_timeout(t).map(drop),
            is_ok,
        );
        ready_max(
            "core::ByteQueue::sole_receiver_timeout",
            |t| b.sole_receiver_timeout(t).map(drop),
            is_ok,
        );
        holder.join().unwrap();
    });
    let mut tx = b.sole_sender().unwrap();
    let mut rx = b.sole_receiver().unwrap();
    let empty = |r: &RecvError| *r == RecvError::Timeout;
    not_ready(
        "core::SoleReceiver::recv_timeout",
        |t| rx.recv_timeout(t).map(drop),
        |r| r.as_ref().err().is_some_and(empty),
    );
    not_ready(
        "core::SoleReceiver::recv_into_timeout",
        |t| rx.recv_into_timeout(&mut [0; 16], t),
        |r| r.as_ref().err().is_some_and(empty),
    );
    ready_max(
        "core::SoleSender::send_timeout",
        |t| tx.send_timeout(b"one", t),
        is_ok,
    );
    ready_max(
        "core::SoleSender::send_timeout",
        |t| tx.send_timeout(b"two", t),
        is_ok,
    );
    // Full now.
    not_ready(
        "core::SoleSender::send_timeout",
        |t| tx.send_timeout(b"x", t),
        |r| *r == Err(SendError::Timeout),
    );
    ready_max(
        "core::SoleReceiver::recv_timeout",
        |t| rx.recv_timeout(t).map(|g| g.len()),
        |r| *r == Ok(3),
    );
    ready_max(
        "core::SoleReceiver::recv_into_timeout",
        |t| rx.recv_into_timeout(&mut [0; 16], t),
        |r| *r == Ok(3),
    );
}

#[test]
fn typed_objects_take_any_timeout() {
    // Two records of 16-byte messages fit a ring of 64 bytes.
    let q = TypedQueue::<String>::anon(BytesConfig::new(64, 16)).unwrap();
    let timed_out = |r: &Result<String, MessageError>| r.as_ref().is_err_and(|e| e.is_timeout());
    // JoinableQueue: full, then made room in; unfinished, then done.
    let jq = JoinableQueue::<String>::anon(BytesConfig::new(64, 16)).unwrap();
    let one = "one".to_owned();
    jq.put(&one).unwrap();
    jq.put(&one).unwrap();
    not_ready(
        "shm::JoinableQueue::put_timeout",
        |t| jq.put_timeout(&one, t),
        |r| r.as_ref().is_err_and(|e| e.is_timeout()),
    );
    not_ready(
        "shm::JoinableQueue::join_timeout",
        |t| jq.join_timeout(t),
        |r| !r,
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(SMALL);
            jq.get().unwrap();
            jq.task_done().unwrap();
        });
        ready_max(
            "shm::JoinableQueue::put_timeout",
            |t| jq.put_timeout(&one, t),
            is_ok,
        );
    });
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(SMALL);
            for _ in 0..2 {
                jq.get().unwrap();
                jq.task_done().unwrap();
            }
        });
        ready_max(
            "shm::JoinableQueue::join_timeout",
            |t| jq.join_timeout(t),
            |r| *r,
        );
    });
    not_ready(
        "shm::TypedQueue::get_timeout",
        |t| q.get_timeout(t),
        timed_out,
    );
    not_ready(
        "shm::TypedQueue::pop_timeout",
        |t| q.pop_timeout(t),
        timed_out,
    );
    let one = "one".to_owned();
    ready_max(
        "shm::TypedQueue::put_timeout",
        |t| q.put_timeout(&one, t),
        is_ok,
    );
    ready_max(
        "shm::TypedQueue::push_timeout",
        |t| q.push_timeout(&one, t),
        is_ok,
    );
    let full = |r: &Result<(), MessageError>| r.as_ref().is_err_and(|e| e.is_timeout());
    not_ready(
        "shm::TypedQueue::put_timeout",
        |t| q.put_timeout(&one, t),
        full,
    );
    not_ready(
        "shm::TypedQueue::push_timeout",
        |t| q.push_timeout(&one, t),
        full,
    );
    let got_one = |r: &Result<String, MessageError>| r.as_ref().is_ok_and(|s| s == "one");
    ready_max(
        "shm::TypedQueue::get_timeout",
        |t| q.get_timeout(t),
        got_one,
    );
    ready_max(
        "shm::TypedQueue::pop_timeout",
        |t| q.pop_timeout(t),
        got_one,
    );

    typed_sole_handles_take_any_timeout();

    // EncodedQueue (a typed queue's segment opened without its type, for
    // the bridge): empty, two records fill it, then full.
    let (_names, name) = common::segment_name("extreme-encoded", "q");
    let _typed = TypedQueue::<String>::create(&name, BytesConfig::new(64, 16)).unwrap();
    let eq = shmipc::typed::EncodedQueue::open(&name).unwrap();
    not_ready(
        "shm::EncodedQueue::recv_vec_timeout",
        |t| eq.recv_vec_timeout(t),
        |r| *r == Err(RecvError::Timeout),
    );
    ready_max(
        "shm::EncodedQueue::send_timeout",
        |t| eq.send_timeout(b"one", t),
        is_ok,
    );
    ready_max(
        "shm::EncodedQueue::send_timeout",
        |t| eq.send_timeout(b"two", t),
        is_ok,
    );
    not_ready(
        "shm::EncodedQueue::send_timeout",
        |t| eq.send_timeout(b"three", t),
        |r| *r == Err(SendError::Timeout),
    );
    ready_max(
        "shm::EncodedQueue::recv_vec_timeout",
        |t| eq.recv_vec_timeout(t),
        |r| r.as_deref() == Ok(&b"one"[..]),
    );

    let (a, b) = TypedPipe::<u64>::anon(BytesConfig::new(64, 16)).unwrap();
    let timed_out = |r: &Result<u64, MessageError>| r.as_ref().is_err_and(|e| e.is_timeout());
    not_ready(
        "shm::TypedPipeEnd::recv_timeout",
        |t| b.recv_timeout(t),
        timed_out,
    );
    not_ready("shm::TypedPipeEnd::poll", |t| b.poll(t), |r| !r);
    ready_max(
        "shm::TypedPipeEnd::send_timeout",
        |t| a.send_timeout(&7, t),
        is_ok,
    );
    ready_max(
        "shm::TypedPipeEnd::send_timeout",
        |t| a.send_timeout(&8, t),
        is_ok,
    );
    let full = |r: &Result<(), MessageError>| r.as_ref().is_err_and(|e| e.is_timeout());
    not_ready(
        "shm::TypedPipeEnd::send_timeout",
        |t| a.send_timeout(&9, t),
        full,
    );
    ready_max("shm::TypedPipeEnd::poll", |t| b.poll(t), |r| *r);
    ready_max(
        "shm::TypedPipeEnd::recv_timeout",
        |t| b.recv_timeout(t),
        |r| *r == Ok(7),
    );

    let d = TypedDict::<String, u32>::anon(DictConfig::new(4, 8, 8)).unwrap();
    let k = "k".to_owned();
    for t in [Duration::ZERO, SMALL, Duration::MAX] {
        let p = "shm::TypedDict::";
        check(
            &format!("{p}insert_timeout"),
            t,
            |t| d.insert_timeout(&k, &1, t),
            is_ok,
        );
        check(
            &format!("{p}get_timeout"),
            t,
            |t| d.get_timeout(&k, t),
            |r| *r == Ok(Some(1)),
        );
        check(
            &format!("{p}contains_key_timeout"),
            t,
            |t| d.contains_key_timeout(&k, t),
            is_ok,
        );
        check(
            &format!("{p}len_timeout"),
            t,
            |t| d.len_timeout(t),
            |r| *r == Ok(1),
        );
        check(
            &format!("{p}is_empty_timeout"),
            t,
            |t| d.is_empty_timeout(t),
            is_ok,
        );
        check(&format!("{p}keys_timeout"), t, |t| d.keys_timeout(t), is_ok);
        check(
            &format!("{p}items_timeout"),
            t,
            |t| d.items_timeout(t),
            is_ok,
        );
        check(
            &format!("{p}remove_timeout"),
            t,
            |t| d.remove_timeout(&k, t),
            |r| *r == Ok(Some(1)),
        );
        check(
            &format!("{p}clear_timeout"),
            t,
            |t| d.clear_timeout(t),
            is_ok,
        );
    }
}

/// The sole handles of a typed queue: taking a side another thread holds
/// for 300 ms, and their puts and gets on an empty, then full, queue.
fn typed_sole_handles_take_any_timeout() {
    let q = TypedQueue::<String>::anon(BytesConfig::new(64, 16)).unwrap();
    let q = &q;
    std::thread::scope(|s| {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = s.spawn(move || {
            let tx = q.sole_sender().unwrap();
            let rx = q.sole_receiver().unwrap();
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop((tx, rx));
        });
        held_rx.recv().unwrap();
        let held = |r: &Result<(), shmipc::Error>| {
            matches!(
                r,
                Err(shmipc::Error::SideHeld {
                    reason: shmipc::SoleError::Held,
                    ..
                })
            )
        };
        not_ready(
            "shm::TypedQueue::sole_sender_timeout",
            |t| q.sole_sender_timeout(t).map(drop),
            held,
        );
        not_ready(
            "shm::TypedQueue::sole_receiver_timeout",
            |t| q.sole_receiver_timeout(t).map(drop),
            held,
        );
        // Become free while we wait for ever.
        ready_max(
            "shm::TypedQueue::sole_sender_timeout",
            |t| q.sole_sender_timeout(t).map(drop),
            is_ok,
        );
        ready_max(
            "shm::TypedQueue::sole_receiver_timeout",
            |t| q.sole_receiver_timeout(t).map(drop),
            is_ok,
        );
        holder.join().unwrap();
    });
    let mut tx = q.sole_sender().unwrap();
    let mut rx = q.sole_receiver().unwrap();
    let timed_out = |r: &Result<String, MessageError>| r.as_ref().is_err_and(|e| e.is_timeout());
    not_ready(
        "shm::TypedSoleReceiver::get_timeout",
        |t| rx.get_timeout(t),
        timed_out,
    );
    not_ready(
        "shm::TypedSoleReceiver::pop_timeout",
        |t| rx.pop_timeout(t),
        timed_out,
    );
    let one = "one".to_owned();
    ready_max(
        "shm::TypedSoleSender::put_timeout",
        |t| tx.put_timeout(&one, t),
        is_ok,
    );
    ready_max(
        "shm::TypedSoleSender::push_timeout",
        |t| tx.push_timeout(&one, t),
        is_ok,
    );
    // Full now (two records of 16-byte messages fill 64 bytes).
    let full = |r: &Result<(), MessageError>| r.as_ref().is_err_and(|e| e.is_timeout());
    not_ready(
        "shm::TypedSoleSender::put_timeout",
        |t| tx.put_timeout(&one, t),
        full,
    );
    not_ready(
        "shm::TypedSoleSender::push_timeout",
        |t| tx.push_timeout(&one, t),
        full,
    );
    let got_one = |r: &Result<String, MessageError>| r.as_ref().is_ok_and(|s| s == "one");
    ready_max(
        "shm::TypedSoleReceiver::get_timeout",
        |t| rx.get_timeout(t),
        got_one,
    );
    ready_max(
        "shm::TypedSoleReceiver::pop_timeout",
        |t| rx.pop_timeout(t),
        got_one,
    );
    assert_eq!(q.qsize(), 0);
}

fn slow(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn typed_pools_take_any_timeout() {
    let pool = TypedPool::new(2).unwrap();
    let timed_out = |r: &Result<u64, TaskError>| *r == Err(TaskError::Timeout);
    let all_timed_out = |r: &Result<Vec<u64>, TaskError>| *r == Err(TaskError::Timeout);
    let p = "shm::TypedPool::";
    not_ready(
        &format!("{p}apply_timeout"),
        |t| pool.apply_timeout(slow, 200, t),
        timed_out,
    );
    ready_max(
        &format!("{p}apply_timeout"),
        |t| pool.apply_timeout(slow, 1, t),
        |r| *r == Ok(1),
    );
    not_ready(
        &format!("{p}map_timeout"),
        |t| pool.map_timeout(slow, [200], 1, t),
        all_timed_out,
    );
    ready_max(
        &format!("{p}map_timeout"),
        |t| pool.map_timeout(slow, [1, 2], 1, t),
        |r| *r == Ok(vec![1, 2]),
    );
    let star = |a: u64, b: u64| slow(a + b);
    not_ready(
        &format!("{p}starmap_timeout"),
        |t| pool.starmap_timeout(star, [(100, 100)], 1, t),
        all_timed_out,
    );
    ready_max(
        &format!("{p}starmap_timeout"),
        |t| pool.starmap_timeout(star, [(1, 1)], 1, t),
        |r| *r == Ok(vec![2]),
    );

    let r = pool.apply_async(slow, 300).unwrap();
    not_ready(
        "shm::TypedAsyncResult::get_timeout",
        |t| r.get_timeout(t),
        timed_out,
    );
    not_ready(
        "shm::TypedAsyncResult::wait_timeout",
        |t| r.wait_timeout(t),
        |r| !r,
    );
    ready_max(
        "shm::TypedAsyncResult::wait_timeout",
        |t| r.wait_timeout(t),
        |r| *r,
    );
    ready_max(
        "shm::TypedAsyncResult::get_timeout",
        |t| r.get_timeout(t),
        |r| *r == Ok(300),
    );
    let m = pool.map_async(slow, [300], 1);
    not_ready(
        "shm::TypedMapResult::get_timeout",
        |t| m.get_timeout(t),
        all_timed_out,
    );
    not_ready(
        "shm::TypedMapResult::wait_timeout",
        |t| m.wait_timeout(t),
        |r| !r,
    );
    ready_max(
        "shm::TypedMapResult::wait_timeout",
        |t| m.wait_timeout(t),
        |r| *r,
    );
    ready_max(
        "shm::TypedMapResult::get_timeout",
        |t| m.get_timeout(t),
        |r| *r == Ok(vec![300]),
    );

    let none_yet =
        |r: &Result<Option<Result<u64, TaskError>>, TaskError>| *r == Err(TaskError::Timeout);
    let mut it = pool.imap(slow, [300], 1);
    not_ready(
        "shm::TypedImap::next_timeout",
        |t| it.next_timeout(t),
        none_yet,
    );
    ready_max(
        "shm::TypedImap::next_timeout",
        |t| it.next_timeout(t),
        |r| *r == Ok(Some(Ok(300))),
    );
    ready_max(
        "shm::TypedImap::next_timeout",
        |t| it.next_timeout(t),
        |r| *r == Ok(None),
    );
    let mut it = pool.imap_unordered(slow, [300], 1);
    not_ready(
        "shm::TypedImapUnordered::next_timeout",
        |t| it.next_timeout(t),
        none_yet,
    );
    ready_max(
        "shm::TypedImapUnordered::next_timeout",
        |t| it.next_timeout(t),
        |r| *r == Ok(Some(Ok(300))),
    );
    ready_max(
        "shm::TypedImapUnordered::next_timeout",
        |t| it.next_timeout(t),
        |r| *r == Ok(None),
    );

    let _busy = pool.apply_async(slow, 300).unwrap();
    not_ready(
        "shm::TypedPool::join_timeout",
        |t| pool.join_timeout(t),
        |r| !r,
    );
    ready_max(
        "shm::TypedPool::join_timeout",
        |t| pool.join_timeout(t),
        |r| *r,
    );
}

#[test]
fn shared_data_takes_any_timeout() {
    // Free locks: every call succeeds, whatever the timeout. (A held lock
    // and the timeouts are in `stopped_holder.rs`.)
    let v = Value::<u64>::anon(1).unwrap();
    let a = Array::<u32>::anon(&[1, 2]).unwrap();
    let d = SharedDict::anon(DictConfig::new(4, 4, 4)).unwrap();
    let l = SharedList::anon(ListConfig::new(4, 4)).unwrap();
    for t in [Duration::ZERO, SMALL, Duration::MAX] {
        check("shm::Value::get_timeout", t, |t| v.get_timeout(t), is_ok);
        check("shm::Value::set_timeout", t, |t| v.set_timeout(2, t), is_ok);
        check(
            "shm::Value::update_timeout",
            t,
            |t| v.update_timeout(|x| *x += 1, t),
            is_ok,
        );
        check(
            "shm::Array::get_timeout",
            t,
            |t| a.get_timeout(1, t),
            |r| *r == Ok(2),
        );
        check(
            "shm::Array::set_timeout",
            t,
            |t| a.set_timeout(0, 5, t),
            |r| r.is_ok(),
        );
        check(
            "shm::Array::set_many_timeout",
            t,
            |t| a.set_many_timeout(&[(0, 7), (1, 2)], t),
            |r| r.is_ok(),
        );
        check(
            "shm::Array::update_at_timeout",
            t,
            |t| a.update_at_timeout(0, |x| *x += 1, t),
            |r| r.is_ok(),
        );
        check(
            "shm::Array::update_timeout",
            t,
            |t| a.update_timeout(|all| all[1] = 2, t),
            |r| r.is_ok(),
        );
        check(
            "shm::Array::snapshot_timeout",
            t,
            |t| a.snapshot_timeout(t),
            |r| r.is_ok(),
        );
        check(
            "shm::SharedDict::insert_timeout",
            t,
            |t| d.insert_timeout(b"k", b"v", t),
            is_ok,
        );
        check(
            "shm::SharedDict::get_timeout",
            t,
            |t| d.get_timeout(b"k", t),
            is_ok,
        );
        check(
            "shm::SharedDict::contains_key_timeout",
            t,
            |t| d.contains_key_timeout(b"k", t),
            is_ok,
        );
        check(
            "shm::SharedDict::update_timeout",
            t,
            |t| d.update_timeout(b"k", |_| b"w".to_vec(), t),
            is_ok,
        );
        check(
            "shm::SharedDict::len_timeout",
            t,
            |t| d.len_timeout(t),
            is_ok,
        );
        check(
            "shm::SharedDict::is_empty_timeout",
            t,
            |t| d.is_empty_timeout(t),
            is_ok,
        );
        check(
            "shm::SharedDict::keys_timeout",
            t,
            |t| d.keys_timeout(t),
            is_ok,
        );
        check(
            "shm::SharedDict::items_timeout",
            t,
            |t| d.items_timeout(t),
            is_ok,
        );
        check(
            "shm::SharedDict::remove_timeout",
            t,
            |t| d.remove_timeout(b"k", t),
            is_ok,
        );
        check(
            "shm::SharedDict::clear_timeout",
            t,
            |t| d.clear_timeout(t),
            is_ok,
        );
        check(
            "shm::SharedList::append_timeout",
            t,
            |t| l.append_timeout(b"i", t),
            is_ok,
        );
        check(
            "shm::SharedList::get_timeout",
            t,
            |t| l.get_timeout(0, t),
            is_ok,
        );
        check(
            "shm::SharedList::len_timeout",
            t,
            |t| l.len_timeout(t),
            is_ok,
        );
        check(
            "shm::SharedList::is_empty_timeout",
            t,
            |t| l.is_empty_timeout(t),
            is_ok,
        );
        check(
            "shm::SharedList::to_vec_timeout",
            t,
            |t| l.to_vec_timeout(t),
            is_ok,
        );
    }

    // An opener's wait for a creator: any timeout, on a ready segment.
    let (_names, name) = common::segment_name("extreme", "event");
    let _e = Shared::<Event>::create(&name, ()).unwrap();
    for t in [Duration::ZERO, SMALL, Duration::MAX] {
        check(
            "shm::Options::init_timeout",
            t,
            |t| Shared::<Event>::open_with(&name, &Options::new().init_timeout(t)).map(drop),
            |r| r.is_ok(),
        );
    }
}

#[test]
fn processes_and_pools_take_any_timeout() {
    let mut sleeper = common::fork_sleeper(Duration::from_millis(200), 3);
    not_ready(
        "shm::Child::join_timeout",
        |t| sleeper.join_timeout(t).map_err(drop),
        |r| *r == Ok(None),
    );
    // Ends while we wait for ever.
    ready_max(
        "shm::Child::join_timeout",
        |t| sleeper.join_timeout(t).map_err(drop),
        |r| matches!(r, Ok(Some(s)) if s.code() == Some(3)),
    );

    let named = Process::new("sleeper")
        .fork(|| {
            std::thread::sleep(Duration::from_millis(200));
            4
        })
        .unwrap();
    not_ready(
        "shm::ProcessHandle::join_timeout",
        |t| named.join_timeout(t).map_err(drop),
        |r| *r == Ok(None),
    );
    ready_max(
        "shm::ProcessHandle::join_timeout",
        |t| named.join_timeout(t).map_err(drop),
        |r| matches!(r, Ok(Some(s)) if s.code() == Some(4)),
    );

    // Function 0 returns at once, function 1 after 200 ms.
    let pool = Pool::builder(2)
        .function(|x: &[u8]| x.to_vec())
        .function(|_: &[u8]| {
            std::thread::sleep(Duration::from_millis(200));
            b"slow".to_vec()
        })
        .build()
        .unwrap();
    let timed_out = |r: &Result<Vec<u8>, TaskError>| *r == Err(TaskError::Timeout);
    not_ready(
        "shm::Pool::apply_with_timeout",
        |t| pool.apply_with_timeout(1, b"", t),
        timed_out,
    );
    ready_max(
        "shm::Pool::apply_with_timeout",
        |t| pool.apply_with_timeout(1, b"", t),
        |r| r.as_deref() == Ok(&b"slow"[..]),
    );
    ready_max(
        "shm::Pool::apply_timeout",
        |t| pool.apply_timeout(b"a", t),
        |r| r.as_deref() == Ok(&b"a"[..]),
    );
    check(
        "shm::Pool::apply_timeout",
        Duration::ZERO,
        |t| pool.apply_timeout(b"a", t),
        |r| r.is_ok() || *r == Err(TaskError::Timeout),
    );
    let pending = pool.apply_async_with(1, b"").unwrap();
    not_ready(
        "shm::AsyncResult::get_timeout",
        |t| pending.get_timeout(t),
        timed_out,
    );
    not_ready(
        "shm::AsyncResult::wait_timeout",
        |t| pending.wait_timeout(t),
        |r| !r,
    );
    ready_max(
        "shm::AsyncResult::get_timeout",
        |t| pending.get_timeout(t),
        |r| r.is_ok(),
    );
    ready_max(
        "shm::AsyncResult::wait_timeout",
        |t| pending.wait_timeout(t),
        |r| *r,
    );

    let mut it = pool.imap_unordered([b"x"]);
    ready_max(
        "shm::ImapUnordered::next_timeout",
        |t| it.next_timeout(t),
        |r| matches!(r, Ok(Some((0, Ok(v)))) if v == b"x"),
    );
    check(
        "shm::ImapUnordered::next_timeout",
        SMALL,
        |t| it.next_timeout(t),
        |r| matches!(r, Ok(None)),
    );
    let mut slow = pool.imap_unordered([b""; 0]);
    check(
        "shm::ImapUnordered::next_timeout",
        Duration::ZERO,
        |t| slow.next_timeout(t),
        |r| matches!(r, Ok(None)),
    );
    check(
        "shm::Pool::map_timeout",
        Duration::ZERO,
        |t| pool.map_timeout([b"a"], t),
        |r| r.is_ok() || *r == Err(TaskError::Timeout),
    );
    ready_max(
        "shm::Pool::map_timeout",
        |t| pool.map_timeout([b"a", b"b"], t),
        |r| *r == Ok(vec![b"a".to_vec(), b"b".to_vec()]),
    );
    check(
        "shm::Pool::map_timeout",
        SMALL,
        |t| pool.map_timeout([b"c"], t),
        |r| r.is_ok() || *r == Err(TaskError::Timeout),
    );

    // A slow task keeps the workers busy after `close`.
    let _slow = pool.apply_async_with(1, b"").unwrap();
    not_ready("shm::Pool::join_timeout", |t| pool.join_timeout(t), |r| !r);
    ready_max("shm::Pool::join_timeout", |t| pool.join_timeout(t), |r| *r);
}

/// Every public function that takes a `Duration` is called above (core's
/// queue, lock, semaphore and event calls through the shm types that
/// forward to them, or directly where shm hands out the core type).
#[test]
fn every_public_timeout_is_covered() {
    // Run the other tests' calls here too, to collect what they cover (the
    // tests run on threads of their own, so their records are not shared).
    sync_primitives_take_any_timeout();
    queues_take_any_timeout();
    shared_data_takes_any_timeout();
    processes_and_pools_take_any_timeout();
    typed_objects_take_any_timeout();
    typed_pools_take_any_timeout();
    let covered = COVERED.with(|c| c.borrow().clone());
    // Core calls that shm forwards, covered by the shm call named.
    let through = |path: &str| -> Option<&'static str> {
        Some(match path {
            "core::Mpmc::push_timeout" => "shm::Queue::push_timeout",
            "core::Mpmc::pop_timeout" => "shm::Queue::pop_timeout",
            "core::Producer::push_timeout" => "shm::SpscProducer::push_timeout",
            "core::Consumer::pop_timeout" => "shm::SpscConsumer::pop_timeout",
            "core::ByteQueue::send_timeout" => "shm::ByteQueue::send_timeout",
            "core::ByteQueue::reserve_timeout" => "shm::ByteQueue::reserve_timeout",
            "core::ByteQueue::recv_timeout" => "shm::ByteQueue::recv_timeout",
            "core::ByteQueue::recv_into_timeout" => "shm::ByteQueue::recv_into_timeout",
            "core::ByteQueue::poll_timeout" => "shm::ByteQueue::poll_timeout",
            // Turns a timeout into a deadline (saturating): every call
            // above goes through it.
            "core::Deadline::after" => "core::Lock::lock_timeout",
            _ => return None,
        })
    };
    let (fns, pub_types) = api_scan::scan();
    let mut missing = BTreeSet::new();
    for f in &fns {
        let public =
            f.ty.as_ref()
                .map_or(true, |t| pub_types[f.krate].contains(t));
        // Free functions (`futex::deadline_after`) take an Option and are
        // plumbing under the methods checked here.
        if !public || f.hidden || f.ty.is_none() || !f.params.contains("Duration") {
            continue;
        }
        let path = f.path();
        let via = through(&path).unwrap_or(&path);
        if !covered.contains(via) {
            missing.insert(path);
        }
    }
    assert!(
        missing.is_empty(),
        "public functions taking a Duration that no test here calls with ZERO, a small \
         value and Duration::MAX:\n  {}",
        missing.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}
