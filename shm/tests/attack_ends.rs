//! Attacks on end-of-stream (`Disconnected`): ways to make a receiver
//! believe every sender is gone while one lives (a false end-of-stream,
//! the worst outcome: the consumer stops and what the live sender sends
//! later is never read), across real processes.
//!
//! The fork cases: a handle that the parent recorded (a named pipe end,
//! which records itself when claimed; a queue producer that has pushed; an
//! SPSC producer role) and then hands to a child it forks, the way
//! Python's `Process(target=f, args=(conn,))` followed by the parent's
//! `conn.close()` does. `shmipc::fork(move || ...)` drops the parent's
//! copy of everything the closure captured as soon as `fork` returns in
//! the parent; the child holds the handle and will send, so the stream is
//! not over. Each test then checks the other half of the promise too: once
//! the child has sent and exited, the receiver does see `Disconnected`
//! (so a fix that simply never lets go of the parent's record would fail
//! here as well).

mod common;

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{fork_on, fork_parked, join, off, poke_u64, shm_path, LONG, PATIENCE, SEVERAL_CHECKS};
use shmipc::{
    fork, AtomicU32, BytesConfig, Event, ExitStatus, Named, Pipe, PopError, Queue, RecvError,
    RingConfig, SendError, Shared, SpscQueue, TypedPipe, TypedQueue, Unlinker,
};

fn config() -> BytesConfig {
    BytesConfig::new(4096, 256)
}

/// A named pipe end claimed in the parent (so recorded in the parent's
/// peer slot as sender and receiver) is moved into a forked child, which
/// sends only when told to. The parent's copy is dropped when `fork`
/// returns. The other end must keep waiting: the child holds the end.
#[test]
fn a_named_pipe_end_moved_into_a_forked_child_is_not_end_of_stream() {
    let (_names, name) = common::segment_name("atk-ends-pipe-fork", "p");
    let a = Pipe::create(&name, config()).unwrap();
    let b = Pipe::open(&name).unwrap();
    let go = Shared::<Event>::anon(()).unwrap();
    let mut child = fork_on(&go, move || common::sent_code(b.send(b"from the child"))).unwrap();
    // The closure (and the parent's copy of `b` in it) is gone now.
    assert_eq!(
        a.recv_vec_timeout(SEVERAL_CHECKS).err(),
        Some(RecvError::Timeout),
        "false end-of-stream: the forked child holds end B and has not sent yet"
    );
    go.set();
    assert_eq!(a.recv_vec_timeout(LONG).unwrap(), b"from the child");
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(
        a.recv_vec_timeout(PATIENCE).err(),
        Some(RecvError::Disconnected),
        "the child exited: now the stream is over"
    );
}

/// The same, seen from the sending side: the parent moves its claimed end
/// B into a child that reads only when told to. A's sends that find the
/// ring full must wait for the child, not fail as a broken pipe.
#[test]
fn a_named_pipe_reader_moved_into_a_forked_child_is_not_a_broken_pipe() {
    let (_names, name) = common::segment_name("atk-ends-pipe-fork-rx", "p");
    let a = Pipe::create(&name, config()).unwrap();
    let b = Pipe::open(&name).unwrap();
    let go = Shared::<Event>::anon(()).unwrap();
    let got = Shared::<AtomicU32>::anon(0).unwrap();
    let got_ref = &got;
    let mut child = fork_on(&go, move || {
        while let Ok(m) = b.recv_vec_timeout(LONG) {
            if m == b"end" {
                return 0;
            }
            got_ref.fetch_add(1, SeqCst);
        }
        5
    })
    .unwrap();
    let msg = [7u8; 200];
    let mut sent = 0;
    while a.try_send(&msg).is_ok() {
        sent += 1;
    }
    assert!(sent > 0);
    assert_eq!(
        a.send_timeout(&msg, SEVERAL_CHECKS),
        Err(SendError::Timeout),
        "false broken pipe: the forked child holds end B and will read"
    );
    go.set();
    a.send_timeout(b"end", LONG).unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(got.load(SeqCst), sent);
}

/// A `Queue` producer that has pushed in the parent is moved into a
/// forked child, which pushes again when told to.
#[test]
fn a_queue_producer_moved_into_a_forked_child_is_not_end_of_stream() {
    let (_names, q, tx) = common::queue_and_producer("atk-ends-queue-fork");
    let go = Shared::<Event>::anon(()).unwrap();
    let mut child = fork_on(&go, move || common::sent_code(tx.push(2))).unwrap();
    common::handed_producer_pushes_two(&q, &go, &mut child, "the forked child");
    assert_eq!(q.pop_timeout(PATIENCE), Err(PopError::Disconnected));
}

/// An SPSC producer role taken in the parent (recorded when claimed) is
/// moved into a forked child.
#[test]
fn an_spsc_producer_moved_into_a_forked_child_is_not_end_of_stream() {
    let names = Unlinker::new("atk-ends-spsc-fork");
    let sq = SpscQueue::<u32>::create(&names.name("s"), RingConfig::new(8)).unwrap();
    let mut rx = sq.take_consumer().unwrap();
    let mut tx = sq.take_producer().unwrap();
    let go = Shared::<Event>::anon(()).unwrap();
    let mut child = fork_on(&go, move || common::sent_code(tx.push(9))).unwrap();
    common::held_sender_sends_on_go(
        |t| rx.pop_timeout(t),
        &go,
        "the forked child holds the producer role",
        9,
    );
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(rx.pop_timeout(PATIENCE), Err(PopError::Disconnected));
}

/// The typed layer: a `TypedQueue` producer that has sent, and a claimed
/// `TypedPipe` end, moved into a forked child.
#[test]
fn typed_senders_moved_into_a_forked_child_are_not_end_of_stream() {
    let (_names, [qname, pname]) = common::segment_names("atk-ends-typed-fork", ["q", "p"]);
    let q = TypedQueue::<String>::create(&qname, config()).unwrap();
    let tx = TypedQueue::<String>::open(&qname).unwrap();
    tx.put(&"first".to_string()).unwrap();
    let a = TypedPipe::<String>::create(&pname, config()).unwrap();
    let b = TypedPipe::<String>::open(&pname).unwrap();
    let go = Shared::<Event>::anon(()).unwrap();
    let mut child = fork_on(&go, move || {
        if tx.put(&"second".to_string()).is_err() {
            return 5;
        }
        if b.send(&"piped".to_string()).is_err() {
            return 6;
        }
        0
    })
    .unwrap();
    assert_eq!(q.get_timeout(LONG).unwrap(), "first");
    let r = q.get_timeout(SEVERAL_CHECKS);
    assert!(
        r.as_ref().is_err_and(|e| !e.is_disconnected()),
        "false end-of-stream on the typed queue: {r:?}"
    );
    let r = a.recv_timeout(SEVERAL_CHECKS);
    assert!(
        r.as_ref().is_err_and(|e| !e.is_disconnected()),
        "false end-of-stream on the typed pipe: {r:?}"
    );
    go.set();
    assert_eq!(q.get_timeout(LONG).unwrap(), "second");
    assert_eq!(a.recv_timeout(LONG).unwrap(), "piped");
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert!(q.get_timeout(PATIENCE).is_err_and(|e| e.is_disconnected()));
    assert!(a.recv_timeout(PATIENCE).is_err_and(|e| e.is_disconnected()));
}

// ---------------------------------------------------------------------------
// Guards: attacks that g-ends withstands (they pass there, and must keep
// passing)
// ---------------------------------------------------------------------------

/// A producer that is SIGSTOPped is alive: no end-of-stream while it is
/// stopped, its messages after SIGCONT arrive, and its exit then ends the
/// stream.
#[test]
fn a_stopped_sender_is_not_end_of_stream() {
    let (_names, name) = common::segment_name("atk-ends-stopped", "q");
    let q = Queue::<u32>::create(&name, RingConfig::new(8)).unwrap();
    let ready = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let tx = Queue::<u32>::open(&name).unwrap();
        tx.push(1).unwrap();
        ready.set();
        // SIGSTOP lands in here; after SIGCONT, send once more.
        std::thread::sleep(Duration::from_millis(300));
        common::sent_code(tx.push(2))
    })
    .unwrap();
    assert!(ready.wait_timeout(LONG));
    child.signal(libc::SIGSTOP).unwrap();
    assert_eq!(q.pop_timeout(LONG), Ok(1));
    assert_eq!(
        q.pop_timeout(SEVERAL_CHECKS),
        Err(PopError::Timeout),
        "a stopped producer is alive"
    );
    child.signal(libc::SIGCONT).unwrap();
    assert_eq!(q.pop_timeout(LONG), Ok(2));
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(q.pop_timeout(PATIENCE), Err(PopError::Disconnected));
}

/// 300 producer handles of one queue in one process and one peer slot
/// (core clones: 8-bit count overflow). Dropping 299 of them leaves one
/// that still sends: no end-of-stream (a count that wrapped, or that
/// dropped from a wrapped value to zero, would report one here). Once the process is SIGKILLed, the
/// receiver is told `Disconnected` (the stuck count is judged by the
/// slot's fate).
#[test]
fn many_sender_handles_in_one_process_overflow_safely() {
    let (_names, name) = common::segment_name("atk-ends-many", "q");
    let q = Queue::<u32>::create(&name, RingConfig::new(512)).unwrap();
    let [ready, go] = common::anon_events();
    let mut child = fork(|| {
        let tx = Queue::<u32>::open(&name).unwrap();
        let mut clones: Vec<_> = (0..300).map(|_| (*tx).clone()).collect();
        for (i, c) in clones.iter().enumerate() {
            if c.push(i as u32).is_err() {
                return 5;
            }
        }
        // Keep the last one (it has pushed), drop 299.
        let keep = clones.pop().unwrap();
        drop(clones);
        ready.set();
        if !go.wait_timeout(LONG) {
            return 4;
        }
        if keep.push(1000).is_err() {
            return 6;
        }
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .unwrap();
    assert!(ready.wait_timeout(LONG));
    for i in 0..300 {
        assert_eq!(q.pop_timeout(LONG), Ok(i));
    }
    assert_eq!(
        q.pop_timeout(SEVERAL_CHECKS),
        Err(PopError::Timeout),
        "one producer handle is left"
    );
    go.set();
    assert_eq!(q.pop_timeout(LONG), Ok(1000));
    child.kill().unwrap();
    assert_eq!(q.pop_timeout(PATIENCE), Err(PopError::Disconnected));
    assert_eq!(join(&mut child), ExitStatus::Signal(libc::SIGKILL));
}

/// A producer SIGKILLed between claiming a slot and filling it, and a
/// second producer that pushed behind that claim and exited: the receiver
/// gets the second producer's item (acknowledged by its `Ok`) before it is
/// told `Disconnected`.
#[test]
fn an_item_behind_a_dead_claim_is_delivered_before_end_of_stream() {
    let (_names, name) = common::segment_name("atk-ends-dead-claim", "q");
    let q = Queue::<u32>::create(&name, RingConfig::new(8)).unwrap();
    let claimed = Shared::<Event>::anon(()).unwrap();
    let mut stuck = fork(|| {
        let tx = Queue::<u32>::open(&name).unwrap();
        let _ = tx.push_pausing(1, LONG, || {
            claimed.set();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        7
    })
    .unwrap();
    assert!(claimed.wait_timeout(LONG));
    let mut behind = fork(|| {
        let tx = Queue::<u32>::open(&name).unwrap();
        common::sent_code(tx.push(2))
    })
    .unwrap();
    assert_eq!(join(&mut behind), ExitStatus::Code(0));
    stuck.kill().unwrap();
    assert_eq!(join(&mut stuck), ExitStatus::Signal(libc::SIGKILL));
    assert_eq!(q.pop_timeout(PATIENCE), Ok(2), "pushed with Ok: not lost");
    assert_eq!(q.pop_timeout(PATIENCE), Err(PopError::Disconnected));
}

fn read_u64(name: &str, offset: u64) -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open(shm_path(name))
        .unwrap()
        .read_exact_at(&mut b, offset)
        .unwrap();
    u64::from_ne_bytes(b)
}

/// Where an MPMC queue's `ends` word lies in its segment: after the
/// 64-byte control header and the 4-byte `closed` word, 8-aligned.
const MPMC_ENDS_AT: u64 = 72;
/// Where a peer slot's `ends` word lies in its 32-byte slot.
const SLOT_ENDS_AT: u64 = 24;

/// Hostile bytes in the endpoint words: while a producer lives and keeps
/// its own slot intact, another process writes random values into the
/// queue's `ends` word and into the `ends` word of every other peer slot,
/// as fast as it can. Such garbage can only make senders look present (a
/// count in a slot, "a sender could not be recorded") or unknown, never
/// gone: the receiver must never be told `Disconnected`, must not panic,
/// and each timed receive returns within its timeout plus a second.
#[test]
fn garbage_in_the_ends_words_makes_no_live_sender_look_gone() {
    let (_names, name) = common::segment_name("atk-ends-garbage", "q");
    let q = Queue::<u32>::create(&name, RingConfig::new(8)).unwrap();
    let [ready, done] = common::anon_events();
    let mut producer = fork(|| {
        let tx = Queue::<u32>::open(&name).unwrap();
        tx.push(1).unwrap();
        ready.set();
        if done.wait_timeout(LONG) {
            0
        } else {
            4
        }
    })
    .unwrap();
    assert!(ready.wait_timeout(LONG));
    assert_eq!(q.pop_timeout(LONG), Ok(1));
    let table = read_u64(&name, off::PEERS_OFFSET);
    let slots = read_u64(&name, off::PEER_SLOTS) as u32;
    let object = read_u64(&name, off::OBJECT_OFFSET);
    // The producer's slot: the one that records its pid.
    let pid = producer.pid();
    let theirs: Vec<u64> = (0..u64::from(slots))
        .filter(|i| (read_u64(&name, table + 32 * i) >> 32) as u32 == pid)
        .collect();
    assert_eq!(theirs.len(), 1, "the producer holds one slot");
    // The words are where we think: had a sender and a receiver; one
    // sender handle of lane 0 in the producer's slot.
    assert_eq!(read_u64(&name, object + MPMC_ENDS_AT) & 0xf, 0b11);
    assert_eq!(
        read_u64(&name, table + 32 * theirs[0] + SLOT_ENDS_AT) & 0xffff,
        1
    );
    let mut hostile = fork(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            poke_u64(&name, object + MPMC_ENDS_AT, next());
            for i in 0..u64::from(slots) {
                if !theirs.contains(&i) {
                    poke_u64(&name, table + 32 * i + SLOT_ENDS_AT, next());
                }
            }
        }
        0
    })
    .unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    let mut rounds = 0;
    while Instant::now() < until {
        let t = Duration::from_millis(30);
        let started = Instant::now();
        let r = q.pop_timeout(t);
        assert!(
            started.elapsed() < t + Duration::from_secs(1),
            "a timed pop took {:?}",
            started.elapsed()
        );
        assert_eq!(
            r,
            Err(PopError::Timeout),
            "false end-of-stream from garbage that only adds records"
        );
        rounds += 1;
    }
    assert!(rounds > 0);
    assert_eq!(join(&mut hostile), ExitStatus::Code(0));
    done.set();
    assert_eq!(join(&mut producer), ExitStatus::Code(0));
}

/// Untimed pops on a `Queue` and an `SpscQueue` whose only producer is
/// SIGKILLed while they sleep wake with `Disconnected` (the shipped test
/// covers the pipe and the byte queue). On failure the pops never return
/// and the test fails on the channel's timeout.
#[test]
fn untimed_pops_wake_with_disconnected_after_a_sigkill() {
    let (names, qname) = common::segment_name("atk-ends-untimed", "q");
    let q = Queue::<u32>::create(&qname, RingConfig::new(8)).unwrap();
    let sname = names.name("s");
    let sq = SpscQueue::<u32>::create(&sname, RingConfig::new(8)).unwrap();
    let mut srx = sq.take_consumer().unwrap();
    let mut child = fork_parked(|| {
        let mut stx = SpscQueue::<u32>::open(&sname)
            .unwrap()
            .take_producer()
            .unwrap();
        let tx = Queue::<u32>::open(&qname).unwrap();
        tx.push(1).unwrap();
        stx.push(1).unwrap();
        (stx, tx)
    });
    assert_eq!(q.pop(), Ok(1));
    assert_eq!(srx.pop(), Ok(1));
    let (out, results) = std::sync::mpsc::channel();
    let q = std::sync::Arc::new(q);
    let (q2, out2) = (q.clone(), out.clone());
    std::thread::spawn(move || {
        let _ = out2.send(("Queue", q2.pop().err()));
    });
    std::thread::spawn(move || {
        let _ = out.send(("SpscQueue", srx.pop().err()));
    });
    std::thread::sleep(Duration::from_millis(230));
    child.kill().unwrap();
    let killed = Instant::now();
    for _ in 0..2 {
        let (what, r) = results
            .recv_timeout(PATIENCE)
            .expect("an untimed pop did not wake after its producer was SIGKILLed");
        assert_eq!(r, Some(PopError::Disconnected), "{what}");
        eprintln!(
            "{what}: untimed pop woke {:.1} ms after the SIGKILL",
            killed.elapsed().as_secs_f64() * 1e3
        );
    }
    assert_eq!(join(&mut child), ExitStatus::Signal(libc::SIGKILL));
}
