//! Every call is bounded, even when a byte queue's side lock is held by a
//! live process that does not let go (DESIGN.md, principle 9): a child
//! takes the writers' or the readers' lock (as a reservation or a claim
//! does) and is stopped with SIGSTOP while it holds it.
//!
//! - every `_timeout` call returns `Timeout` within its timeout plus a
//!   scheduling slice (bounded generously here: half a second);
//! - every `try_*` call returns at once, reporting the lock as "not now"
//!   (`Full` on the writers' side, `Empty` on the readers'), without
//!   sleeping (again bounded at half a second; it used to sleep a second).
//!
//! The stopped child is continued and killed at the end, also when an
//! assertion fails (a guard's `Drop`).

mod common;

use std::time::{Duration, Instant};

use shmipc::{fork, ByteQueue, BytesConfig, Child, Named, RecvError, SendError};

const TIMEOUT: Duration = Duration::from_millis(50);
const SLACK: Duration = Duration::from_millis(500);

/// A child that holds a side lock of the queue `name`, stopped; continued
/// and killed on drop.
struct StoppedHolder(Child);

impl StoppedHolder {
    fn start(name: &str, writers: bool) -> StoppedHolder {
        let child = fork(|| {
            let q = ByteQueue::open(name).unwrap();
            let held = q.hold_side_lock(writers, || {
                // SAFETY: raise only sends a signal to this process.
                unsafe { libc::raise(libc::SIGSTOP) };
            });
            i32::from(held.is_err())
        })
        .unwrap();
        let holder = StoppedHolder(child);
        let pid = holder.0.pid();
        assert!(
            common::eventually(Duration::from_secs(20), || stopped(pid)),
            "the lock holder {pid} never stopped"
        );
        holder
    }
}

impl Drop for StoppedHolder {
    fn drop(&mut self) {
        let _ = self.0.signal(libc::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.join_timeout(common::CHILD_TIMEOUT);
    }
}

/// Whether `pid` is stopped (state `T` in `/proc/<pid>/stat`).
fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rfind(')')?;
            s[after + 1..].split_whitespace().next().map(str::to_owned)
        })
        .is_some_and(|state| state == "T")
}

/// Runs `call`, returning its result and how long it took.
fn timed<R>(call: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = call();
    (r, t.elapsed())
}

#[test]
fn writers_lock_held_by_a_stopped_process() {
    let (_names, name) = common::segment_name("busy-writers", "q");
    let q = ByteQueue::create(&name, BytesConfig::new(256, 8)).unwrap();
    let _holder = StoppedHolder::start(&name, true);
    let mut complaints = Vec::new();

    let (r, took) = timed(|| q.send_timeout(b"x", TIMEOUT));
    if r != Err(SendError::Timeout) || took > TIMEOUT + SLACK {
        complaints.push(format!("send_timeout(50 ms): {r:?} after {took:?}"));
    }
    let (r, took) = timed(|| q.reserve_timeout(1, TIMEOUT).map(drop));
    if r != Err(SendError::Timeout) || took > TIMEOUT + SLACK {
        complaints.push(format!("reserve_timeout(50 ms): {r:?} after {took:?}"));
    }
    let (r, took) = timed(|| q.try_send(b"x"));
    if r != Err(SendError::Full) || took > SLACK {
        complaints.push(format!("try_send: {r:?} after {took:?}"));
    }
    let (r, took) = timed(|| q.try_reserve(1).map(drop));
    if r != Err(SendError::Full) || took > SLACK {
        complaints.push(format!("try_reserve: {r:?} after {took:?}"));
    }
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}

#[test]
fn readers_lock_held_by_a_stopped_process() {
    let (_names, name) = common::segment_name("busy-readers", "q");
    let q = ByteQueue::create(&name, BytesConfig::new(256, 8)).unwrap();
    q.send(b"waiting").unwrap();
    let _holder = StoppedHolder::start(&name, false);
    let mut complaints = Vec::new();
    let mut buf = [0u8; 8];

    let (r, took) = timed(|| q.recv_timeout(TIMEOUT).map(|g| g.len()));
    if r != Err(RecvError::Timeout) || took > TIMEOUT + SLACK {
        complaints.push(format!("recv_timeout(50 ms): {r:?} after {took:?}"));
    }
    let (r, took) = timed(|| q.recv_into_timeout(&mut buf, TIMEOUT));
    if r != Err(RecvError::Timeout) || took > TIMEOUT + SLACK {
        complaints.push(format!("recv_into_timeout(50 ms): {r:?} after {took:?}"));
    }
    let (r, took) = timed(|| q.recv_vec_timeout(TIMEOUT));
    if r != Err(RecvError::Timeout) || took > TIMEOUT + SLACK {
        complaints.push(format!("recv_vec_timeout(50 ms): {r:?} after {took:?}"));
    }
    let (r, took) = timed(|| q.poll_timeout(TIMEOUT));
    if r != Err(RecvError::Timeout) || took > TIMEOUT + SLACK {
        complaints.push(format!("poll_timeout(50 ms): {r:?} after {took:?}"));
    }
    let (r, took) = timed(|| q.try_recv().map(|g| g.len()));
    if r != Err(RecvError::Empty) || took > SLACK {
        complaints.push(format!("try_recv: {r:?} after {took:?}"));
    }
    let (r, took) = timed(|| q.try_recv_into(&mut buf));
    if r != Err(RecvError::Empty) || took > SLACK {
        complaints.push(format!("try_recv_into: {r:?} after {took:?}"));
    }
    assert!(complaints.is_empty(), "{}", complaints.join("\n"));
}
