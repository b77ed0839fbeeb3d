//! Loom models of `close` racing the operations it must not cut short:
//! pushes, pops and sends on every queue, and a Pipe's two rings.
//!
//! The promise checked (DESIGN.md, principle 8): once any consumer has been
//! told `Closed`, no item whose push (or send) returned `Ok` remains in the
//! queue or arrives later. So each model lets every consumer drain until
//! `Closed`, and then checks that the items received are exactly the items
//! whose push returned `Ok`, each once, and that nothing is left.
//!
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p shmipc-core --release --test loom_close`
#![cfg(loom)]

use loom::thread;
use shmipc_core::bytes::{ByteQueue, BytesConfig};
use shmipc_core::mpmc::Mpmc;
use shmipc_core::spsc::Spsc;
use shmipc_core::{PopError, PushError, RecvError, RingConfig, SendError};

/// Pops until `Closed`; any other error fails the model.
fn drain_mpmc(q: &Mpmc<'_, u32>) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        match q.pop() {
            Ok(v) => got.push(v),
            Err(PopError::Closed) => return got,
            Err(e) => panic!("pop: {e}"),
        }
    }
}

fn pushed(r: Result<(), PushError>) -> bool {
    match r {
        Ok(()) => true,
        Err(PushError::Closed) => false,
        Err(e) => panic!("push: {e}"),
    }
}

fn sent(r: Result<(), SendError>) -> bool {
    match r {
        Ok(()) => true,
        Err(SendError::Closed) => false,
        Err(e) => panic!("send: {e}"),
    }
}

/// A producer pushes while another thread closes; the consumer drains
/// until `Closed`. The item was received if and only if its push returned
/// `Ok`, and after `Closed` the queue stays empty.
#[test]
fn mpmc_close_racing_push() {
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        let (q1, q2) = (q.clone(), q.clone());
        let producer = thread::spawn(move || pushed(q1.push(7)));
        let closer = thread::spawn(move || q2.close());
        let got = drain_mpmc(&q);
        let acked = producer.join().unwrap();
        closer.join().unwrap();
        assert_eq!(got, if acked { vec![7] } else { vec![] });
        assert_eq!(q.try_pop(), Err(PopError::Closed), "nothing arrives later");
    });
}

/// Two consumers pop while the producer pushes and closes behind its
/// pushes from another thread: whichever consumer is told `Closed` first,
/// every acknowledged item is received by one of them, once.
#[test]
fn mpmc_close_racing_pops() {
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        let (q1, q2) = (q.clone(), q.clone());
        let producer = thread::spawn(move || {
            let a = pushed(q1.push(1));
            q1.close();
            a
        });
        let consumer = thread::spawn(move || drain_mpmc(&q2));
        let mut got = drain_mpmc(&q);
        got.extend(consumer.join().unwrap());
        let acked = producer.join().unwrap();
        assert_eq!(got, if acked { vec![1] } else { vec![] });
    });
}

/// The consumer closes an SPSC ring while the producer pushes (the race a
/// consumer-side close has with a push in flight); it then drains until
/// `Closed`.
/// A consumer's `try_pop` at position 0 reads slot 0 unclaimed and stops
/// there; meanwhile the slot is reused for position 2 and the queue
/// closed with items 1 and 2 in it. That consumer must not answer
/// `Closed` from a slot whose owner word is a claim of a later position.
/// (An attacker's model: it fails on a design that judged the end from
/// the owner word alone.)
#[test]
fn mpmc_stale_pop_is_not_closed_while_items_remain() {
    loom::model(|| {
        let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
        let q1 = q.clone();
        let consumer = thread::spawn(move || q1.try_pop());
        q.push(0).unwrap();
        q.push(1).unwrap();
        let first = q.try_pop();
        q.push(2).unwrap();
        q.close();
        if consumer.join().unwrap() == Err(PopError::Closed) {
            assert_eq!(
                q.try_pop(),
                Err(PopError::Closed),
                "told Closed with items left (popped here first: {first:?})"
            );
        }
    });
}

#[test]
fn spsc_consumer_close_racing_push() {
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::<u32>::new_boxed(RingConfig::new(2));
        let producer = thread::spawn(move || {
            let a = pushed(tx.push(1));
            let b = pushed(tx.push(2));
            assert!(a || !b, "a push after a refused one went through");
            (a, b)
        });
        rx.close();
        let mut got = Vec::new();
        loop {
            match rx.pop() {
                Ok(v) => got.push(v),
                Err(PopError::Closed) => break,
                Err(e) => panic!("pop: {e}"),
            }
        }
        let (a, b) = producer.join().unwrap();
        let want: Vec<u32> = [(a, 1), (b, 2)]
            .into_iter()
            .filter_map(|(ok, v)| ok.then_some(v))
            .collect();
        assert_eq!(got, want);
        assert_eq!(rx.try_pop(), Err(PopError::Closed), "nothing arrives later");
    });
}

/// A batch push racing a consumer-side close: all of it or none of it is
/// acknowledged, and exactly what was acknowledged is received.
#[test]
fn spsc_consumer_close_racing_push_slice() {
    loom::model(|| {
        let (mut tx, mut rx) = Spsc::<u32>::new_boxed(RingConfig::new(2));
        let producer = thread::spawn(move || match tx.push_slice(&[1, 2]) {
            Ok(n) => n,
            Err(PushError::Closed) => 0,
            Err(e) => panic!("push_slice: {e}"),
        });
        rx.close();
        let mut got = Vec::new();
        let mut out = [0u32; 2];
        loop {
            match rx.pop_slice(&mut out) {
                Ok(n) => got.extend_from_slice(&out[..n]),
                Err(PopError::Empty) => thread::yield_now(),
                Err(PopError::Closed) => break,
                Err(e) => panic!("pop_slice: {e}"),
            }
        }
        let n = producer.join().unwrap();
        assert_eq!(got, [1, 2][..n].to_vec());
    });
}

fn drain_bytes(q: &ByteQueue<'_>) -> Vec<u8> {
    let mut got = Vec::new();
    let mut out = [0u8; 8];
    loop {
        match q.recv_into(&mut out) {
            Ok(1) => got.push(out[0]),
            Ok(n) => panic!("a {n}-byte message"),
            Err(RecvError::Closed) => return got,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// A byte-queue send racing a close from another thread.
#[test]
fn bytes_close_racing_send() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let (q1, q2) = (q.clone(), q.clone());
        let producer = thread::spawn(move || sent(q1.send(&[7])));
        let closer = thread::spawn(move || q2.close());
        let got = drain_bytes(&q);
        let acked = producer.join().unwrap();
        closer.join().unwrap();
        assert_eq!(got, if acked { vec![7] } else { vec![] });
        assert_eq!(q.try_recv().err(), Some(RecvError::Closed));
    });
}

/// A reservation made before the close and committed after it is
/// delivered; one refused by the close never is.
#[test]
fn bytes_close_racing_reserve_and_commit() {
    loom::model(|| {
        let q = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let q1 = q.clone();
        let producer = thread::spawn(move || match q1.reserve(1) {
            Ok(mut g) => {
                g.write_at(0, &[9]).unwrap();
                g.commit();
                true
            }
            Err(SendError::Closed) => false,
            Err(e) => panic!("reserve: {e}"),
        });
        q.close();
        let got = drain_bytes(&q);
        let acked = producer.join().unwrap();
        assert_eq!(got, if acked { vec![9] } else { vec![] });
    });
}

/// A Pipe is two byte rings, one each way; `PipeEnd::close` closes the
/// incoming ring, then the outgoing one. End A sends and closes while end
/// B sends; each end drains what was sent to it. Every acknowledged send
/// is received, and an end whose receive reported `Closed` finds its sends
/// refused.
#[test]
fn pipe_close_racing_sends() {
    loom::model(|| {
        // Ring 0 carries A -> B, ring 1 carries B -> A.
        let a_to_b = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let b_to_a = ByteQueue::new_boxed(BytesConfig::new(64, 8));
        let (tx, rx) = (a_to_b.clone(), b_to_a.clone());
        let end_a = thread::spawn(move || {
            let acked = sent(tx.send(&[1]));
            // PipeEnd::close: incoming first, then outgoing.
            rx.close();
            tx.close();
            (acked, drain_bytes(&rx))
        });
        let b_acked = sent(b_to_a.send(&[2]));
        let b_got = drain_bytes(&a_to_b);
        assert!(
            !sent(b_to_a.send(&[3])),
            "B's receive said Closed, yet its send went through"
        );
        let (a_acked, a_got) = end_a.join().unwrap();
        assert_eq!(b_got, if a_acked { vec![1] } else { vec![] });
        assert_eq!(a_got, if b_acked { vec![2] } else { vec![] });
    });
}
