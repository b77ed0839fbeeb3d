//! Pipes: conversations between a parent and a forked child (anonymous and
//! named), closing, polling.

mod common;

use std::time::{Duration, Instant};

use common::{join, LONG};
use shmipc::{fork, BytesConfig, ExitStatus, Named, Pipe, RecvError, SendError};

/// Message `i` of a conversation: its number, then bytes derived from it,
/// of a length that cycles through small, large and empty-ish sizes.
fn question(i: u32, max: usize) -> Vec<u8> {
    let len = match i % 5 {
        0 => 4,
        1 => 100,
        2 => max,
        3 => (i as usize * 7919) % max + 4,
        _ => 17,
    }
    .min(max);
    let mut m = vec![0u8; len];
    m[..4].copy_from_slice(&i.to_le_bytes());
    for (k, b) in m.iter_mut().enumerate().skip(4) {
        *b = (i as usize ^ k).wrapping_mul(31) as u8;
    }
    m
}

/// The child's answer: the question reversed.
fn answer(q: &[u8]) -> Vec<u8> {
    q.iter().rev().copied().collect()
}

#[test]
fn a_parent_and_a_forked_child_talk_through_an_anonymous_pipe() {
    let max = 8 * 1024;
    let rounds = 2_000;
    let (parent, child_end) = Pipe::anon(BytesConfig::for_max_message(max).unwrap()).unwrap();
    let mut child = fork(move || {
        let me = child_end;
        let mut n = 0;
        loop {
            match me.recv_vec_timeout(LONG) {
                Ok(q) => {
                    me.send(&answer(&q)).unwrap();
                    n += 1;
                }
                Err(RecvError::Closed) => break,
                Err(e) => panic!("child recv: {e}"),
            }
        }
        // The parent closed after its last question: our sends fail now.
        if me.send(b"late") != Err(SendError::Closed) {
            return 3;
        }
        (n != rounds) as i32
    })
    .unwrap();
    let mut buf = vec![0u8; max];
    for i in 0..rounds {
        let q = question(i as u32, max);
        parent.send(&q).unwrap();
        let n = parent.recv_into_timeout(&mut buf, LONG).unwrap();
        assert_eq!(buf[..n], answer(&q), "answer {i}");
    }
    parent.close();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn a_named_pipe_carries_both_directions_at_once() {
    let (_names, name) = common::segment_name("pipe-duplex", "p");
    let max = 1000;
    let a = Pipe::create(&name, BytesConfig::new(4096, max)).unwrap();
    let count = 5_000u32;
    // Both sides send everything before reading anything back: only a
    // pipe that really is two independent rings, with blocking sends that
    // the other side's receives wake, gets through this.
    let mut child = fork(|| {
        let b = Pipe::open(&name).unwrap();
        let sender = std::thread::scope(|s| {
            let t = s.spawn(|| {
                for i in 0..count {
                    b.send(&question(i, max)).unwrap();
                }
            });
            for i in 0..count {
                let m = b.recv_vec_timeout(LONG).unwrap();
                assert_eq!(m, question(i + 1_000_000, max), "B got {i}");
            }
            t.join().is_ok()
        });
        (!sender) as i32
    })
    .unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..count {
                a.send(&question(i + 1_000_000, max)).unwrap();
            }
        });
        for i in 0..count {
            let m = a.recv_vec_timeout(LONG).unwrap();
            assert_eq!(m, question(i, max), "A got {i}");
        }
    });
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn close_lets_the_peer_drain_then_reports_closed() {
    let (_names, name) = common::segment_name("pipe-close", "p");
    let a = Pipe::create(&name, BytesConfig::new(1024, 64)).unwrap();
    let b = Pipe::open(&name).unwrap();
    for m in [&b"one"[..], b"two", b""] {
        a.send(m).unwrap();
    }
    a.close();
    assert!(a.is_closed() && b.is_closed());
    assert_eq!(a.send(b"x"), Err(SendError::Closed));
    assert_eq!(b.send(b"x"), Err(SendError::Closed));
    assert_eq!(b.recv_vec().unwrap(), b"one");
    assert_eq!(b.recv_vec().unwrap(), b"two");
    assert_eq!(b.recv_vec().unwrap(), b"");
    assert!(matches!(b.recv_vec(), Err(RecvError::Closed)));
    assert!(matches!(a.recv_vec(), Err(RecvError::Closed)));
}

#[test]
fn close_wakes_a_peer_sleeping_in_another_process() {
    let (_names, name) = common::segment_name("pipe-close-wakes", "p");
    let a = Pipe::create(&name, BytesConfig::new(1024, 64)).unwrap();
    let mut child = fork(|| {
        let b = Pipe::open(&name).unwrap();
        let t = Instant::now();
        let closed = matches!(
            b.recv_vec_timeout(common::SLEEPER_PATIENCE),
            Err(RecvError::Closed)
        );
        // Before the deadline: a lost wake-up also ends in `Closed`, but
        // only at the deadline's last look.
        (!(closed && t.elapsed() < common::SLEEPER_PATIENCE)) as i32
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.is_alive(), "the peer returned before the close");
    a.close();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn poll_says_whether_a_receive_would_block() {
    let (a, b) = Pipe::anon(BytesConfig::new(1024, 64)).unwrap();
    assert!(!b.poll(Duration::ZERO));
    let t = Instant::now();
    assert!(!b.poll(Duration::from_millis(100)));
    assert!(t.elapsed() >= Duration::from_millis(100));

    // A message sent from another process wakes a polling receiver.
    let mut child = fork(|| {
        std::thread::sleep(Duration::from_millis(50));
        a.send(b"ready").map_or(1, |()| 0)
    })
    .unwrap();
    assert!(b.poll(LONG));
    assert!(b.poll(Duration::ZERO), "polling takes nothing");
    let mut small = [0u8; 2];
    assert_eq!(
        b.try_recv_into(&mut small),
        Err(RecvError::BufferTooSmall(5))
    );
    assert_eq!(b.recv_vec().unwrap(), b"ready", "a refused message stays");
    assert_eq!(join(&mut child), ExitStatus::Code(0));

    a.close();
    assert!(
        b.poll(Duration::ZERO),
        "at end of file a receive does not block"
    );
    assert!(matches!(b.try_recv(), Err(RecvError::Closed)));
}

#[test]
fn zero_copy_sends_and_receives() {
    let (a, b) = Pipe::anon(BytesConfig::new(1024, 100)).unwrap();
    let mut g = a.reserve(10).unwrap();
    g.write_at(0, b"0123456789").unwrap();
    g.commit();
    drop(a.reserve_timeout(5, LONG).unwrap()); // cancelled: never delivered
    let g = b.recv_timeout(LONG).unwrap();
    let mut out = [0u8; 4];
    g.read_at(6, &mut out).unwrap();
    assert_eq!(&out, b"6789");
    drop(g);
    assert!(matches!(b.try_recv(), Err(RecvError::Empty)));
}
