//! Death is judged right or not at all: holders that are alive are never
//! taken over, wherever they run, and holders that died are.
//!
//! The cases that a pid-based check gets wrong, each across real
//! processes: a holder in another pid namespace (a container sharing
//! `/dev/shm`), in both directions; a holder whose main thread has exited
//! (its leader is a zombie while its other threads run); a new holder that
//! got a dead holder's pid; a forked child dropping a guard it inherited;
//! and a kernel that refuses futexes.
//!
//! The namespace tests need root (`unshare(CLONE_NEWPID)` needs
//! `CAP_SYS_ADMIN`); run as another user they say so and skip. CI runs as
//! root, where a failing `unshare` fails the test.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{in_new_pid_namespace, join, LONG, SEVERAL_CHECKS};
use shmipc::{
    fork, AtomicU32, ByteQueue, BytesConfig, Child, Error, Event, ExitStatus, Lock, LockError,
    Named, Pipe, PopError, Queue, RecvError, RingConfig, Shared, Side, SpscQueue,
};

/// Runs `hold` (which takes something and returns the handles to keep) as
/// pid 1 of a new pid namespace, then SIGKILLs that process and reaps it:
/// a holder that died inside the namespace. `false` if this user cannot
/// make namespaces (see [`in_new_pid_namespace`]).
fn holder_killed_in_new_pid_namespace<K>(hold: impl FnOnce() -> K) -> bool {
    let held = Shared::<Event>::anon(()).unwrap();
    let inner = Shared::<AtomicU32>::anon(0).unwrap();
    let Some(mut child) = in_new_pid_namespace(&inner, || {
        let _kept = hold();
        held.set();
        std::thread::sleep(LONG);
        0
    }) else {
        return false;
    };
    assert!(held.wait_timeout(LONG));
    kill_grandchild(&inner);
    assert_eq!(join(&mut child), ExitStatus::Code(128 + libc::SIGKILL));
    true
}

/// SIGKILLs the grandchild [`in_new_pid_namespace`] made.
fn kill_grandchild(inner: &Shared<AtomicU32>) {
    let pid = inner.load(SeqCst) as libc::pid_t;
    assert!(pid > 0);
    // SAFETY: the grandchild we made, by the pid our namespace gives it;
    // its parent (our child) has not reaped it, so the pid is still its.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// Two fresh anonymous events: "the child holds it" and "let it go".
fn held_and_release() -> (Shared<Event>, Shared<Event>) {
    (
        Shared::<Event>::anon(()).unwrap(),
        Shared::<Event>::anon(()).unwrap(),
    )
}

/// A child's part: claims a slot of `q` for 7, says so (`claimed`), and
/// publishes once `release` is set. Exits 0 if the push succeeded.
fn claim_until_released(q: &Queue<u64>, claimed: &Event, release: &Event) -> i32 {
    let r = q.push_pausing(7, LONG, || {
        claimed.set();
        assert!(release.wait_timeout(LONG));
    });
    i32::from(r.is_err())
}

/// The parent's part once the child claimed: a pop waits for the live
/// claimant (`what` it is, if it fails) instead of skipping its slot;
/// released, its item arrives and the ring stays consistent.
fn claim_is_kept(q: &Queue<u64>, child: &mut Child, release: &Event, what: &str) {
    assert_eq!(
        q.pop_timeout(SEVERAL_CHECKS),
        Err(PopError::Timeout),
        "the claimed slot of {what} was skipped"
    );
    release.set();
    assert_eq!(join(child), ExitStatus::Code(0));
    assert_eq!(q.pop_timeout(LONG), Ok(7), "its item arrives");
    for i in 0..12 {
        q.push(i).unwrap();
        assert_eq!(q.pop(), Ok(i), "the ring stays consistent");
    }
}

/// A child's part: reserves a record of `q`, writes "early" into it, says
/// so (`reserved`), and commits once `release` is set (exit code 4 if it
/// never is).
fn reserve_until_released(q: &ByteQueue, reserved: &Event, release: &Event) -> i32 {
    let mut g = q.reserve(5).unwrap();
    g.write_at(0, b"early").unwrap();
    reserved.set();
    if !release.wait_timeout(LONG) {
        return 4;
    }
    g.commit();
    0
}

/// The parent's part once the child reserved: a receive waits for the
/// live writer (`what` it is, if it fails) instead of skipping its
/// record; released, "early" arrives.
fn reservation_is_kept(q: &ByteQueue, child: &mut Child, release: &Event, what: &str) {
    let mut buf = [0u8; 64];
    assert_eq!(
        q.recv_into_timeout(&mut buf, SEVERAL_CHECKS),
        Err(RecvError::Timeout),
        "the reservation of {what} was skipped"
    );
    release.set();
    assert_eq!(join(child), ExitStatus::Code(0));
    assert_eq!(q.recv_into_timeout(&mut buf, LONG), Ok(5));
    assert_eq!(&buf[..5], b"early");
}

#[test]
fn a_lock_held_in_another_pid_namespace_is_not_taken_over() {
    let (_names, name) = common::segment_name("ns-lock-in", "lock");
    let lock = Shared::<Lock>::create(&name, ()).unwrap();
    let (held, release) = held_and_release();
    let inner = Shared::<AtomicU32>::anon(0).unwrap();
    let Some(mut child) = in_new_pid_namespace(&inner, || {
        let lock = Shared::<Lock>::open(&name).unwrap();
        let guard = lock.lock().unwrap();
        held.set();
        if !release.wait_timeout(LONG) {
            return 4;
        }
        drop(guard);
        0
    }) else {
        return;
    };
    assert!(held.wait_timeout(LONG));
    match lock.lock_timeout(SEVERAL_CHECKS) {
        Err(LockError::Timeout) => {}
        Ok(g) => panic!(
            "took over a live holder in another pid namespace (owner_died = {})",
            g.owner_died()
        ),
        Err(e) => panic!("{e}"),
    }
    release.set();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    let g = lock.lock_timeout(LONG).unwrap();
    assert!(!g.owner_died(), "the holder released it normally");
}

#[test]
fn a_lock_held_outside_is_not_taken_over_from_inside_a_pid_namespace() {
    let (_names, name) = common::segment_name("ns-lock-out", "lock");
    let lock = Shared::<Lock>::create(&name, ()).unwrap();
    let guard = lock.lock().unwrap();
    let inner = Shared::<AtomicU32>::anon(0).unwrap();
    let Some(mut child) = in_new_pid_namespace(&inner, || {
        let lock = Shared::<Lock>::open(&name).unwrap();
        let code = match lock.lock_timeout(SEVERAL_CHECKS) {
            Err(LockError::Timeout) => 0,
            Ok(_) => 5, // took over a live holder outside its namespace
            Err(_) => 6,
        };
        code
    }) else {
        return;
    };
    assert_eq!(
        join(&mut child),
        ExitStatus::Code(0),
        "5: the holder outside the namespace was taken over"
    );
    assert!(!guard.owner_died());
    drop(guard);
}

#[test]
fn a_holder_killed_inside_a_pid_namespace_is_taken_over_outside() {
    let (_names, name) = common::segment_name("ns-lock-killed", "lock");
    let lock = Shared::<Lock>::create(&name, ()).unwrap();
    let held = holder_killed_in_new_pid_namespace(|| {
        let lock = Shared::<Lock>::open(&name).unwrap();
        lock.lock().unwrap().leak();
        lock
    });
    if !held {
        return;
    }
    let mut g = lock.lock_timeout(LONG).unwrap();
    assert!(g.owner_died(), "the dead holder's lock was taken over");
    g.mark_consistent();
}

#[test]
fn a_queue_slot_claimed_in_another_pid_namespace_is_not_recovered_while_it_lives() {
    let (_names, name) = common::segment_name("ns-mpmc", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let (claimed, release) = held_and_release();
    let inner = Shared::<AtomicU32>::anon(0).unwrap();
    let Some(mut child) = in_new_pid_namespace(&inner, || {
        claim_until_released(&Queue::<u64>::open(&name).unwrap(), &claimed, &release)
    }) else {
        return;
    };
    assert!(claimed.wait_timeout(LONG));
    claim_is_kept(&q, &mut child, &release, "a live producer");
}

#[test]
fn a_byte_grant_held_in_another_pid_namespace_is_not_skipped_while_it_lives() {
    let (_names, name) = common::segment_name("ns-bytes", "q");
    let q = ByteQueue::create(&name, BytesConfig::new(1024, 64)).unwrap();
    let (reserved, release) = held_and_release();
    let inner = Shared::<AtomicU32>::anon(0).unwrap();
    let Some(mut child) = in_new_pid_namespace(&inner, || {
        reserve_until_released(&ByteQueue::open(&name).unwrap(), &reserved, &release)
    }) else {
        return;
    };
    assert!(reserved.wait_timeout(LONG));
    q.send(b"later").unwrap();
    reservation_is_kept(&q, &mut child, &release, "a live writer");
    let mut buf = [0u8; 64];
    assert_eq!(q.recv_into_timeout(&mut buf, LONG), Ok(5));
    assert_eq!(&buf[..5], b"later");
}

#[test]
fn roles_held_in_another_pid_namespace_are_refused_not_taken_over() {
    let (_names, [qname, pname]) = common::segment_names("ns-roles", ["spsc", "pipe"]);
    let _q = SpscQueue::<u32>::create(&qname, RingConfig::new(8)).unwrap();
    let _a = Pipe::create(&pname, BytesConfig::new(1024, 64)).unwrap();
    let (held, release) = held_and_release();
    let inner = Shared::<AtomicU32>::anon(0).unwrap();
    let Some(mut child) = in_new_pid_namespace(&inner, || {
        let tx = SpscQueue::<u32>::producer(&qname).unwrap();
        let b = Pipe::open(&pname).unwrap();
        held.set();
        if !release.wait_timeout(LONG) {
            return 4;
        }
        drop((tx, b));
        0
    }) else {
        return;
    };
    assert!(held.wait_timeout(LONG));
    // Give a wrong judgement time to happen (roles are judged at once).
    std::thread::sleep(Duration::from_millis(100));
    match SpscQueue::<u32>::producer(&qname) {
        Err(Error::RoleTaken { .. }) => {}
        other => panic!("expected RoleTaken, got {other:?}"),
    }
    match Pipe::open(&pname) {
        Err(Error::RoleTaken { .. }) => {}
        other => panic!("expected RoleTaken for {:?}, got {other:?}", Side::B),
    }
    release.set();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert!(SpscQueue::<u32>::producer(&qname).is_ok());
    assert!(Pipe::open(&pname).is_ok());
}

#[test]
fn a_new_holder_with_a_dead_holders_pid_takes_the_role_over() {
    // Pid reuse on demand: the first process of a new pid namespace is
    // always pid 1.
    let (_names, name) = common::segment_name("ns-reuse", "spsc");
    let _q = SpscQueue::<u32>::create(&name, RingConfig::new(8)).unwrap();
    if !holder_killed_in_new_pid_namespace(|| SpscQueue::<u32>::producer(&name).unwrap()) {
        return;
    }
    let inner2 = Shared::<AtomicU32>::anon(0).unwrap();
    let mut second = in_new_pid_namespace(&inner2, || {
        match SpscQueue::<u32>::producer(&name) {
            Ok(_) => 0,
            Err(Error::RoleTaken { .. }) => 5, // refused: "held" by its own pid
            Err(_) => 6,
        }
    })
    .expect("made one a moment ago");
    assert_eq!(
        join(&mut second),
        ExitStatus::Code(0),
        "5: the dead holder's pid, reused, kept the role"
    );
}

/// The state letter of `/proc/<pid>/stat` (the process's leader thread).
fn leader_state(pid: u32) -> Option<u8> {
    let s = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = s.iter().rposition(|&b| b == b')')?;
    s.get(close + 2).copied()
}

/// Forks a child whose main thread exits (leaving a zombie leader) while a
/// second thread runs `work`, then ends the process with `work`'s code.
fn child_with_exited_main_thread(work: impl FnOnce() -> i32 + Send + 'static) -> Child {
    fork(|| {
        std::thread::spawn(move || {
            let code = work();
            // SAFETY: ends the whole process (exit_group).
            unsafe { libc::_exit(code) }
        });
        // SAFETY: SYS_exit ends only the calling thread, without unwinding;
        // the process lives on in the thread spawned above.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        unreachable!("the main thread has exited")
    })
    .expect("fork")
}

#[test]
fn a_producer_whose_main_thread_exited_keeps_its_claim() {
    let (names, name) = common::segment_name("zombie-leader-mpmc", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let (n, c, r) = (name.clone(), names.name("claimed"), names.name("release"));
    let claimed = Shared::<Event>::create(&c, ()).unwrap();
    let release = Shared::<Event>::create(&r, ()).unwrap();
    let mut child = child_with_exited_main_thread(move || {
        let q = Queue::<u64>::open(&n).unwrap();
        let (claimed, release) = (
            Shared::<Event>::open(&c).unwrap(),
            Shared::<Event>::open(&r).unwrap(),
        );
        claim_until_released(&q, &claimed, &release)
    });
    assert!(claimed.wait_timeout(LONG));
    // The main thread's exit may still be under way when the claim is.
    assert!(
        common::eventually(LONG, || leader_state(child.pid()) == Some(b'Z')),
        "the scenario: the leader is a zombie, the process alive"
    );
    let what = "a live process with an exited main thread";
    claim_is_kept(&q, &mut child, &release, what);
}

#[test]
fn a_writer_whose_main_thread_exited_keeps_its_reservation() {
    let (names, name) = common::segment_name("zombie-leader-bytes", "q");
    let q = ByteQueue::create(&name, BytesConfig::new(1024, 64)).unwrap();
    let (n, c, r) = (name.clone(), names.name("reserved"), names.name("release"));
    let reserved = Shared::<Event>::create(&c, ()).unwrap();
    let release = Shared::<Event>::create(&r, ()).unwrap();
    let mut child = child_with_exited_main_thread(move || {
        let q = ByteQueue::open(&n).unwrap();
        let (reserved, release) = (
            Shared::<Event>::open(&c).unwrap(),
            Shared::<Event>::open(&r).unwrap(),
        );
        reserve_until_released(&q, &reserved, &release)
    });
    assert!(reserved.wait_timeout(LONG));
    assert!(common::eventually(LONG, || leader_state(child.pid()) == Some(b'Z')));
    let what = "a live process with an exited main thread";
    reservation_is_kept(&q, &mut child, &release, what);
}

#[test]
fn a_forked_child_dropping_an_inherited_guard_releases_nothing() {
    let (_names, name) = common::segment_name("inherited-guard", "lock");
    let lock = Shared::<Lock>::create(&name, ()).unwrap();
    let guard = lock.lock().unwrap();
    let held = &guard;
    let mut child = fork(|| {
        // The child's copy of the parent's guard, dropped here.
        // SAFETY: a bitwise copy of a guard in the child's copy of our
        // memory; the parent's own guard is untouched.
        drop(unsafe { std::ptr::read(held) });
        0
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert!(lock.is_locked(), "the child's drop released our lock");
    // Another process must still find it held.
    let mut probe = fork(|| {
        let l = Shared::<Lock>::open(&name).unwrap();
        let refused = matches!(l.try_lock(), Err(LockError::WouldBlock));
        i32::from(!refused)
    })
    .unwrap();
    assert_eq!(join(&mut probe), ExitStatus::Code(0));
    drop(guard);
    assert!(!lock.is_locked());
}

#[test]
fn a_refused_futex_makes_waits_sleep_not_spin() {
    let (_names, name) = common::segment_name("no-futex", "lock");
    let lock = Shared::<Lock>::create(&name, ()).unwrap();
    let _guard = lock.lock().unwrap();
    let mut child = fork(|| {
        let lock = Shared::<Lock>::open(&name).unwrap();
        if !common::forbid_syscall(libc::SYS_futex) {
            return 10;
        }
        let (cpu, wall) = (common::cpu_time(libc::RUSAGE_SELF), Instant::now());
        let r = lock.lock_timeout(Duration::from_millis(500));
        let (cpu, wall) = (common::cpu_time(libc::RUSAGE_SELF) - cpu, wall.elapsed());
        if r.err() != Some(LockError::Timeout) {
            return 11;
        }
        if wall > Duration::from_secs(5) {
            return 12; // not bounded
        }
        // A spinning wait burns the whole 500 ms; a sleeping one, a few.
        if cpu > Duration::from_millis(250) {
            return 13;
        }
        0
    })
    .unwrap();
    assert_eq!(
        join(&mut child),
        ExitStatus::Code(0),
        "10: no seccomp; 11: not a timeout; 12: unbounded; 13: it spun"
    );
}
