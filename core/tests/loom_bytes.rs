//! Loom models of the byte-message queue.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmipc-core --release --test loom_bytes`
#![cfg(loom)]

use loom::thread;
use shmipc_core::bytes::{ByteQueue, BytesConfig};
use shmipc_core::RecvError;

fn msg(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

/// One writer, one reader, across the wrap: a 64-byte ring, records of 32,
/// 16 and 32 bytes (16-byte headers, payloads padded to 16), so the third
/// needs a skip record and the space of the first (the writer sleeps until
/// the reader releases it).
#[test]
fn across_the_wrap() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 16));
        let q2 = q.clone();
        let t = thread::spawn(move || {
            q2.send(&msg(1, 16)).unwrap();
            q2.send(&msg(2, 0)).unwrap();
            q2.send(&msg(3, 16)).unwrap();
        });
        let mut out = [0u8; 16];
        for (tag, len) in [(1, 16), (2, 0), (3, 16)] {
            let n = q.recv_into(&mut out).unwrap();
            assert_eq!(&out[..n], &msg(tag, len)[..]);
        }
        t.join().unwrap();
    });
}

/// Two writers, one reader: each message arrives whole, exactly once, and
/// the reader (asleep on empty) is woken by the commits.
#[test]
fn two_writers() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let writers: Vec<_> = (0..2u8)
            .map(|w| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut g = q.reserve(3).unwrap();
                    g.write_at(0, &msg(w * 10, 3)).unwrap();
                    g.commit();
                })
            })
            .collect();
        let mut seen = Vec::new();
        let mut out = [0u8; 8];
        for _ in 0..2 {
            let n = q.recv_into(&mut out).unwrap();
            assert_eq!(n, 3);
            assert_eq!(&out[..3], &msg(out[0], 3)[..]);
            seen.push(out[0]);
        }
        for w in writers {
            w.join().unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 10]);
    });
}

/// A cancelled reservation is skipped; close after it still drains.
#[test]
fn cancel_then_close() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let q2 = q.clone();
        let t = thread::spawn(move || {
            drop(q2.reserve(5).unwrap());
            q2.send(b"ok").unwrap();
            q2.close();
        });
        let g = q.recv().unwrap();
        let mut out = [0u8; 2];
        g.read_at(0, &mut out).unwrap();
        assert_eq!(&out, b"ok");
        drop(g);
        assert_eq!(q.recv().err(), Some(RecvError::Closed));
        t.join().unwrap();
    });
}

/// A sole sender and a sole receiver across the wrap (as `across_the_wrap`):
/// the payload is visible once the sender's `tail` compare-and-swap is,
/// and the reader's copy out is finished before the writer reuses the
/// first record's bytes (its `FREED` and `read` stores against the
/// writer's reclaim).
#[test]
fn sole_handles_across_the_wrap() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 16));
        let q2 = q.clone();
        let t = thread::spawn(move || {
            let mut tx = q2.sole_sender().unwrap();
            tx.send(&msg(1, 16)).unwrap();
            tx.send(&msg(2, 0)).unwrap();
            tx.send(&msg(3, 16)).unwrap();
        });
        let mut rx = q.sole_receiver().unwrap();
        let mut out = [0u8; 16];
        for (tag, len) in [(1, 16), (2, 0), (3, 16)] {
            let n = rx.recv_into(&mut out).unwrap();
            assert_eq!(&out[..n], &msg(tag, len)[..]);
        }
        drop(rx);
        t.join().unwrap();
    });
}

/// A sole send racing a close: either the message is received before
/// `Closed`, or the send reports `Closed`; never both, never neither.
#[test]
fn sole_send_against_close() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let q2 = q.clone();
        let t = thread::spawn(move || q2.sole_sender().unwrap().send(b"ok"));
        q.close();
        let mut out = [0u8; 8];
        let got = q.recv_into(&mut out);
        let sent = t.join().unwrap();
        match sent {
            Ok(()) => assert_eq!(got, Ok(2)),
            Err(e) => {
                assert_eq!(e, shmipc_core::SendError::Closed);
                assert_eq!(got, Err(RecvError::Closed));
            }
        }
    });
}

/// Closes `q`, drains it until `Closed`, and checks the two sends of
/// `sender` (of `b"1"` and `b"2"`): those that returned `Ok` came first
/// and were received, in order, before `Closed`; the rest returned
/// `Closed` and were never received.
fn close_and_check(
    q: &ByteQueue<'static>,
    sender: thread::JoinHandle<[Result<(), shmipc_core::SendError>; 2]>,
) {
    q.close();
    let mut got = Vec::new();
    let mut out = [0u8; 8];
    loop {
        match q.recv_into(&mut out) {
            Ok(1) => got.push(out[0]),
            Err(RecvError::Closed) => break,
            r => panic!("{r:?}"),
        }
    }
    let sent = sender.join().unwrap();
    let acked: Vec<u8> = sent
        .iter()
        .zip([b'1', b'2'])
        .take_while(|(r, _)| r.is_ok())
        .map(|(_, m)| m)
        .collect();
    assert_eq!(got, acked, "{sent:?}");
    for r in sent.iter().skip(acked.len()) {
        assert_eq!(*r, Err(shmipc_core::SendError::Closed));
    }
}

/// Two light sole sends (under loom every sole sender is light, with
/// `SeqCst` fences standing in for `membarrier`: module docs of
/// `shmipc_core::bytes`, "Closing") against a close, with the reader
/// draining after it: each send that returned `Ok` is received, in order,
/// before `Closed`; a send that returned `Closed` is never received, nor
/// any after it; and the reader is not left asleep (a close that waited
/// for a send is finished, and the reader woken, by that send).
#[test]
fn light_sole_sends_against_close() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let q2 = q.clone();
        let t = thread::spawn(move || {
            let mut tx = q2.sole_sender().unwrap();
            [tx.send(b"1"), tx.send(b"2")]
        });
        close_and_check(&q, t);
    });
}

/// A light sole send, then the sender let go of the side and a shared send
/// after it, against a close (the sender's `Drop` finishes a close it
/// finds begun; the shared send publishes with a compare-and-swap): the
/// messages whose sends returned `Ok` are received, in order, before
/// `Closed`, nothing after a `Closed`, and the reader is not left asleep.
#[test]
fn light_sole_sender_dropped_then_shared_send_against_close() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let q2 = q.clone();
        let t = thread::spawn(move || {
            let first = q2.sole_sender().unwrap().send(b"1");
            [first, q2.send(b"2")]
        });
        close_and_check(&q, t);
    });
}

/// Counting sole handles of each side in two threads, one after the
/// other (the second waits for the side's lock), against a layer that
/// counts a shared send and receive outside the lock meanwhile. The sole
/// counts are a plain load and store into words only sole holders write
/// (`sole_sent`, `sole_taken`): the side's lock must order one holder's
/// store before the next one's load, and the layer's read-modify-writes
/// of `sent` / `taken` must not be lost either.
#[test]
fn sole_counts_do_not_lose_a_layers_count() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(128, 8));
        let mut out = [0u8; 8];
        q.send(b"a").unwrap();
        assert_eq!(q.recv_into(&mut out), Ok(1));
        let q2 = q.clone();
        let t = thread::spawn(move || {
            // The layer's counts of the shared send and receive above, late.
            q2.count_sent();
            q2.count_taken();
            q2.sole_sender().unwrap().counting(true).send(b"b").unwrap();
            let mut out = [0u8; 8];
            let mut rx = q2.sole_receiver().unwrap().counting(true);
            assert_eq!(rx.recv_into(&mut out), Ok(1));
        });
        q.sole_sender().unwrap().counting(true).send(b"c").unwrap();
        let mut rx = q.sole_receiver().unwrap().counting(true);
        assert_eq!(rx.recv_into(&mut out), Ok(1));
        drop(rx);
        t.join().unwrap();
        // Three counted sent (`a` by the layer, `b`, `c`), three taken.
        assert_eq!(q.messages_sent_minus_taken(), 0);
        q.sole_sender().unwrap().counting(true).send(b"d").unwrap();
        q.count_sent();
        assert_eq!(q.messages_sent_minus_taken(), 2);
    });
}
