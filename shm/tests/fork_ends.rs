//! End-of-stream across `fork`, beyond `attack_ends.rs`: a handle recorded
//! in the parent and dropped by the parent right after the fork is counted
//! for the child before the fork returns — through a raw `libc::fork` too
//! (the copy is made by `pthread_atfork` handlers, not by `shmipc::fork`),
//! through a grandchild, and, when the peer table has no slot left for the
//! child, by the parent's count staying (late end-of-stream, never a false
//! one).

mod common;

use common::{fork_on, join, LONG, PATIENCE, SEVERAL_CHECKS};
use shmipc::{
    fork, Event, ExitStatus, Named, Options, Pipe, PopError, Queue, RecvError, RingConfig, Shared,
};

/// Waits for a raw-forked child and returns its exit code (-1 if it did
/// not exit normally).
fn wait_raw(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: our own child; `status` is ours to fill.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid({pid})");
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// A named pipe end (recorded when opened) in a child made by a raw
/// `libc::fork`; the parent drops its copy at once.
#[test]
fn a_pipe_end_handed_over_by_a_raw_fork_is_not_end_of_stream() {
    let (_names, name) = common::segment_name("fork-ends-raw", "p");
    let a = Pipe::create(&name, shmipc::BytesConfig::new(4096, 256)).unwrap();
    let b = Pipe::open(&name).unwrap();
    let go = Shared::<Event>::anon(()).unwrap();
    // SAFETY: the child only waits on shared memory, sends and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = if !go.wait_timeout(LONG) {
            4
        } else if b.send(b"raw").is_err() {
            5
        } else {
            0
        };
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    drop(b);
    assert_eq!(
        a.recv_vec_timeout(SEVERAL_CHECKS).err(),
        Some(RecvError::Timeout),
        "false end-of-stream: the raw-forked child holds end B"
    );
    go.set();
    assert_eq!(a.recv_vec_timeout(LONG).unwrap(), b"raw");
    assert_eq!(wait_raw(pid), 0);
    assert_eq!(
        a.recv_vec_timeout(PATIENCE).err(),
        Some(RecvError::Disconnected),
        "the child exited: now the stream is over"
    );
}

/// A producer that pushed in the parent goes to a child, which hands it on
/// to a grandchild without using it and keeps running: only the
/// grandchild holds it then (the child's count went with its drop).
#[test]
fn a_producer_handed_on_to_a_grandchild_is_not_end_of_stream() {
    let (_names, q, tx) = common::queue_and_producer("fork-ends-grand");
    let go = Shared::<Event>::anon(()).unwrap();
    let handed = Shared::<Event>::anon(()).unwrap();
    let (go_ref, handed_ref) = (&go, &handed);
    let mut child = fork(move || {
        let grandchild = fork_on(go_ref, move || common::sent_code(tx.push(2)));
        let Ok(mut grandchild) = grandchild else {
            return 6;
        };
        // The child's copy of `tx` is dropped now.
        handed_ref.set();
        match grandchild.join() {
            Ok(ExitStatus::Code(c)) => c,
            _ => 7,
        }
    })
    .unwrap();
    assert!(handed.wait_timeout(LONG));
    common::handed_producer_pushes_two(&q, &go, &mut child, "the grandchild");
    assert_eq!(q.pop_timeout(PATIENCE), Err(PopError::Disconnected));
}

/// A full peer table leaves no slot to copy the parent's counts into for
/// its child: the parent's count must then stay, so the consumer waits
/// (for as long as the parent lives: late, never false).
#[test]
fn with_no_slot_for_the_child_the_parents_count_stays() {
    const SLOTS: u32 = 2;
    let (_names, name) = common::segment_name("fork-ends-full", "q");
    let opts = Options::default().peer_slots(SLOTS);
    // The creator's handle and the producer's hold both slots.
    let q = Queue::<u32>::create_with(&name, RingConfig::new(8), &opts).unwrap();
    let tx = Queue::<u32>::open(&name).unwrap();
    tx.push(1).unwrap();
    let go = Shared::<Event>::anon(()).unwrap();
    let mut child = fork_on(&go, move || common::sent_code(tx.push(2))).unwrap();
    common::handed_producer_pushes_two(&q, &go, &mut child, "the child");
}

/// The price, as with inherited Unix descriptors: the child also holds its
/// copy of the end the parent kept, so the parent's drop alone does not
/// end the child's stream (the child's copy counts until it exits); the
/// parent's `close()` does, at once.
#[test]
fn a_child_counts_the_end_its_parent_kept_until_the_parent_closes() {
    let (_names, [n1, n2]) = common::segment_names("fork-ends-kept", ["p1", "p2"]);
    let config = shmipc::BytesConfig::new(4096, 256);
    let (a1, b1) = (Pipe::create(&n1, config).unwrap(), Pipe::open(&n1).unwrap());
    let (a2, b2) = (Pipe::create(&n2, config).unwrap(), Pipe::open(&n2).unwrap());
    let go = Shared::<Event>::anon(()).unwrap();
    let mut child = fork_on(&go, move || {
        // a1 was dropped by the parent, but the child's own copy of it
        // (inherited, unreachable) still counts.
        if b1.recv_vec_timeout(SEVERAL_CHECKS).err() != Some(RecvError::Timeout) {
            return 5;
        }
        // a2 was closed by the parent.
        if b2.recv_vec_timeout(PATIENCE).err() != Some(RecvError::Closed) {
            return 6;
        }
        0
    })
    .unwrap();
    drop(a1);
    a2.close();
    go.set();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}
