//! `close` racing pushes across processes: `Closed` is a line in time.
//!
//! Each round, producer processes (forked) push numbered items into a fresh
//! named queue and set an `acked` bit in a shared bitmap for every push
//! that returned `Ok`. The consumer (the test process) receives a number of
//! items, closes the queue mid-stream, and keeps receiving until it is told
//! `Closed`, setting a `received` bit for each item (a `fetch_or`, so a
//! second delivery is counted). Once the producers have exited, the round
//! checks the promise of DESIGN.md's principle 8: every acknowledged item
//! was received before `Closed`, none twice, none that was not
//! acknowledged, and nothing arrives after `Closed`.
//!
//! The queues: `Queue<u64>` and `ByteQueue` with three producer processes,
//! `ByteQueue` with one sole sender, `SpscQueue<u64>` and a `Pipe` with one (closed from the consumer's
//! side, which is the close that can race a push in flight).
//!
//! Every blocking call waits at most `common::WAKE_PATIENCE`, and a timeout
//! fails the round: built with the `strict-wakes` feature (a step of
//! `.ci/run`), where no periodic re-check rescues a lost wake-up, that is
//! one second, so a single wake-up that a close or a push failed to
//! deliver fails the test.

mod common;

use common::{join, words, Rng};
use shmipc::sync::{AtomicU64, Ordering};
use shmipc::{
    fork, ByteQueue, BytesConfig, ExitStatus, Named, Options, Pipe, PopError, PushError, Queue,
    RecvError, RingConfig, Segment, SendError, SpscQueue, Unlinker,
};

const PER_PRODUCER: u64 = 1500;
const MAX_PRODUCERS: u64 = 3;

/// Exit codes of a producer.
const OK: i32 = 0;
const UNEXPECTED_ERROR: i32 = 2;
const PUSH_AFTER_CLOSED: i32 = 3;

/// The two bitmaps, in shared memory.
struct Books {
    acked: Segment,
    received: Segment,
}

/// Sets `bit`; returns whether it was set already.
fn set_bit(bits: &[AtomicU64], bit: u64) -> bool {
    let mask = 1u64 << (bit % 64);
    bits[(bit / 64) as usize].fetch_or(mask, Ordering::SeqCst) & mask != 0
}

impl Books {
    fn create(names: &Unlinker) -> Books {
        let bytes = (MAX_PRODUCERS * PER_PRODUCER).div_ceil(64) as usize * 8;
        let opts = Options::new();
        Books {
            acked: Segment::create_with(&names.name("acked"), bytes, &opts).unwrap(),
            received: Segment::create_with(&names.name("received"), bytes, &opts).unwrap(),
        }
    }

    fn clear(&self) {
        for w in words(&self.acked).iter().chain(words(&self.received)) {
            w.store(0, Ordering::SeqCst);
        }
    }

    /// Records a push that returned `Ok`.
    fn ack(&self, id: u64) {
        set_bit(words(&self.acked), id);
    }

    /// Records a received item; returns an error for a duplicate or an id
    /// no producer makes.
    fn receive(&self, id: u64) -> Result<(), String> {
        if id >= MAX_PRODUCERS * PER_PRODUCER {
            return Err(format!("received id {id}, which no producer sends"));
        }
        if set_bit(words(&self.received), id) {
            return Err(format!("item {id} received twice"));
        }
        Ok(())
    }

    /// Compares the bitmaps: the ids acknowledged but never received, and
    /// those received but never acknowledged.
    fn compare(&self) -> (Vec<u64>, Vec<u64>) {
        let mut lost = Vec::new();
        let mut unacked = Vec::new();
        for (i, (a, r)) in words(&self.acked)
            .iter()
            .zip(words(&self.received))
            .enumerate()
        {
            let (a, r) = (a.load(Ordering::SeqCst), r.load(Ordering::SeqCst));
            for b in 0..64 {
                let id = i as u64 * 64 + b;
                match (a >> b & 1, r >> b & 1) {
                    (1, 0) => lost.push(id),
                    (0, 1) => unacked.push(id),
                    _ => {}
                }
            }
        }
        (lost, unacked)
    }
}

/// The outcome of one producer push.
enum Pushed {
    Ok,
    Closed,
    Other(String),
}

/// One producer's loop: push its ids until the queue says `Closed`,
/// acknowledging each `Ok`; a push after `Closed` must stay refused.
///
/// Between pushes it spins a random few rounds, so that the consumer keeps
/// up, the queue is mostly empty, and the close lands, as often as not,
/// while some push is in flight.
fn produce(books: &Books, p: u64, mut push: impl FnMut(u64) -> Pushed) -> i32 {
    let mut rng = Rng(Rng::seeded().0 ^ (p + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    for i in 0..PER_PRODUCER {
        let id = p * PER_PRODUCER + i;
        for _ in 0..rng.below(32) {
            std::hint::spin_loop();
        }
        match push(id) {
            Pushed::Ok => books.ack(id),
            Pushed::Closed => {
                return match push(id) {
                    Pushed::Closed => OK,
                    _ => PUSH_AFTER_CLOSED,
                };
            }
            Pushed::Other(e) => {
                eprintln!("producer {p}: {e}");
                return UNEXPECTED_ERROR;
            }
        }
    }
    OK
}

/// What the consumer's side of a round does with the queue.
trait Consumer {
    /// Receives the next item, blocking: `Ok(Some(id))`, `Ok(None)` for
    /// `Closed`, or an error.
    fn recv(&mut self) -> Result<Option<u64>, String>;
    /// A receive that does not wait: `Ok(None)` only for `Closed`.
    fn try_recv(&mut self) -> Result<Option<u64>, String>;
    fn close_queue(&mut self);
}

/// One round: start `producers` producer processes, receive `close_after`
/// items, close, drain until `Closed`, join the producers, and check the
/// books. Returns a description of what went wrong, if anything.
fn round(
    books: &Books,
    producers: u64,
    close_after: u64,
    produce_one: &dyn Fn(u64) -> i32,
    consumer: &mut dyn Consumer,
) -> Result<(), String> {
    books.clear();
    let mut children: Vec<_> = (0..producers)
        .map(|p| fork(|| produce_one(p)).unwrap())
        .collect();
    // A receive whose wake-up was lost can still succeed at its deadline
    // (its last look finds the item): one that took the whole timeout
    // fails the round too.
    let recv = |consumer: &mut dyn Consumer| {
        let t = std::time::Instant::now();
        let r = consumer.recv();
        if t.elapsed() >= common::WAKE_PATIENCE {
            return Err(format!(
                "a receive took {:?}, its whole timeout",
                t.elapsed()
            ));
        }
        r
    };
    let mut outcome = Ok(());
    let mut taken = 0;
    while outcome.is_ok() && taken < close_after {
        match recv(consumer) {
            Ok(Some(id)) => {
                outcome = books.receive(id);
                taken += 1;
            }
            Ok(None) => outcome = Err("Closed before anyone closed".into()),
            Err(e) => outcome = Err(e),
        }
    }
    consumer.close_queue();
    while outcome.is_ok() {
        match recv(consumer) {
            Ok(Some(id)) => outcome = books.receive(id),
            Ok(None) => break,
            Err(e) => outcome = Err(e),
        }
    }
    for (p, child) in children.iter_mut().enumerate() {
        let status = join(child);
        if status != ExitStatus::Code(OK) && outcome.is_ok() {
            outcome = Err(format!("producer {p} ended with {status:?}"));
        }
    }
    outcome?;
    match consumer.try_recv() {
        Ok(None) => {}
        Ok(Some(id)) => return Err(format!("item {id} arrived after Closed")),
        Err(e) => return Err(e),
    }
    let (lost, unacked) = books.compare();
    if !lost.is_empty() {
        return Err(format!(
            "{} acknowledged item(s) never received before Closed, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    if !unacked.is_empty() {
        return Err(format!(
            "{} item(s) received whose push did not return Ok, e.g. {:?}",
            unacked.len(),
            &unacked[..unacked.len().min(5)]
        ));
    }
    Ok(())
}

/// Runs `rounds` rounds and fails with the first bad one (and how many
/// were bad).
fn run(
    label: &str,
    rounds: usize,
    mut one: impl FnMut(&Unlinker, &Books, u64) -> Result<(), String>,
) {
    let names = Unlinker::new(label);
    let books = Books::create(&names);
    let mut rng = Rng::seeded();
    let seed = rng.0;
    let mut bad = Vec::new();
    for r in 0..rounds {
        // Half the rounds close while the producers make their first
        // pushes (whose first steps are slow: pages to touch, a peer slot
        // to claim), half once the stream is well under way.
        let close_after = if r % 2 == 0 {
            rng.below(4)
        } else {
            20 + rng.below(400)
        };
        if let Err(e) = one(&names, &books, close_after) {
            bad.push(format!("round {r} (closing after {close_after}): {e}"));
        }
    }
    assert!(
        bad.is_empty(),
        "seed {seed}: {} of {rounds} rounds broke the promise; first: {}",
        bad.len(),
        bad[0]
    );
}

/// `default` rounds, or `CLOSE_RACE_ROUNDS` if set.
fn rounds(default: usize) -> usize {
    common::env_count("CLOSE_RACE_ROUNDS", default)
}

/// The consumer side of the slot queues (`pop`) and of the byte queues
/// (`recv_into` an 8-byte id): the same calls on each type.
macro_rules! consumers {
    (slots: $($slots:ty),*; bytes: $($bytes:ty),*) => {
        $(impl Consumer for $slots {
            fn recv(&mut self) -> Result<Option<u64>, String> {
                match self.pop_timeout(common::WAKE_PATIENCE) {
                    Ok(v) => Ok(Some(v)),
                    Err(PopError::Closed) => Ok(None),
                    Err(e) => Err(format!("pop: {e}")),
                }
            }
            fn try_recv(&mut self) -> Result<Option<u64>, String> {
                match self.try_pop() {
                    Ok(v) => Ok(Some(v)),
                    Err(PopError::Closed) => Ok(None),
                    Err(e) => Err(format!("try_pop after Closed: {e}")),
                }
            }
            fn close_queue(&mut self) {
                self.close()
            }
        })*
        $(impl Consumer for $bytes {
            fn recv(&mut self) -> Result<Option<u64>, String> {
                let mut buf = [0u8; 8];
                let r = self.recv_into_timeout(&mut buf, common::WAKE_PATIENCE);
                bytes_id(r, &buf)
            }
            fn try_recv(&mut self) -> Result<Option<u64>, String> {
                let mut buf = [0u8; 8];
                let r = self.try_recv_into(&mut buf);
                bytes_id(r, &buf)
            }
            fn close_queue(&mut self) {
                self.close()
            }
        })*
    };
}

consumers!(slots: Queue<u64>, shmipc::SpscConsumer<u64>; bytes: ByteQueue, shmipc::PipeEnd);

fn pushed(r: Result<(), PushError>) -> Pushed {
    match r {
        Ok(()) => Pushed::Ok,
        Err(PushError::Closed) => Pushed::Closed,
        Err(e) => Pushed::Other(format!("push: {e}")),
    }
}

fn sent(r: Result<(), SendError>) -> Pushed {
    match r {
        Ok(()) => Pushed::Ok,
        Err(SendError::Closed) => Pushed::Closed,
        Err(e) => Pushed::Other(format!("send: {e}")),
    }
}

#[test]
fn mpmc_queue_close_loses_no_acknowledged_push() {
    run("close-mpmc", rounds(600), |names, books, close_after| {
        let name = names.name("q");
        let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
        let produce_one = |p: u64| {
            let q = Queue::<u64>::open(&name).unwrap();
            produce(books, p, |id| {
                pushed(q.push_timeout(id, common::WAKE_PATIENCE))
            })
        };
        let r = round(books, MAX_PRODUCERS, close_after, &produce_one, &mut { q });
        Queue::<u64>::unlink(&name).unwrap();
        r
    });
}

fn bytes_id(r: Result<usize, RecvError>, buf: &[u8; 8]) -> Result<Option<u64>, String> {
    match r {
        Ok(8) => Ok(Some(u64::from_le_bytes(*buf))),
        Ok(n) => Err(format!("a {n}-byte message")),
        Err(RecvError::Closed) => Ok(None),
        Err(e) => Err(format!("recv: {e}")),
    }
}

#[test]
fn byte_queue_close_loses_no_acknowledged_send() {
    run("close-bytes", rounds(300), |names, books, close_after| {
        let name = names.name("q");
        let q = ByteQueue::create(&name, BytesConfig::new(256, 8)).unwrap();
        let produce_one = |p: u64| {
            let q = ByteQueue::open(&name).unwrap();
            produce(books, p, |id| {
                sent(q.send_timeout(&id.to_le_bytes(), common::WAKE_PATIENCE))
            })
        };
        let r = round(books, MAX_PRODUCERS, close_after, &produce_one, &mut { q });
        ByteQueue::unlink(&name).unwrap();
        r
    });
}

/// One producer holding the writers' side as a sole sender (whose send
/// publishes `tail` with a plain store, and whose race with `close` is
/// settled by the close's process-wide barrier: module docs of
/// `shmipc_core::bytes::sole`, "Closing").
#[test]
fn byte_queue_close_loses_no_acknowledged_sole_send() {
    run("close-sole", rounds(300), |names, books, close_after| {
        let name = names.name("q");
        let q = ByteQueue::create(&name, BytesConfig::new(256, 8)).unwrap();
        let produce_one = |p: u64| {
            let q = ByteQueue::open(&name).unwrap();
            let mut tx = q.sole_sender().unwrap();
            // The light path is the one under test wherever it can run.
            if q.light_notify() && !tx.is_light() {
                return UNEXPECTED_ERROR;
            }
            produce(books, p, |id| {
                sent(tx.send_timeout(&id.to_le_bytes(), common::WAKE_PATIENCE))
            })
        };
        let r = round(books, 1, close_after, &produce_one, &mut { q });
        ByteQueue::unlink(&name).unwrap();
        r
    });
}

#[test]
fn spsc_queue_consumer_close_loses_no_acknowledged_push() {
    run("close-spsc", rounds(300), |names, books, close_after| {
        let name = names.name("q");
        let q = SpscQueue::<u64>::create(&name, RingConfig::new(2)).unwrap();
        let rx = q.take_consumer().unwrap();
        let produce_one = |p: u64| {
            let mut tx = SpscQueue::<u64>::producer(&name).unwrap();
            produce(books, p, |id| {
                pushed(tx.push_timeout(id, common::WAKE_PATIENCE))
            })
        };
        let r = round(books, 1, close_after, &produce_one, &mut { rx });
        drop(q);
        SpscQueue::<u64>::unlink(&name).unwrap();
        r
    });
}

#[test]
fn pipe_close_loses_no_acknowledged_send() {
    run("close-pipe", rounds(300), |names, books, close_after| {
        let name = names.name("p");
        let a = Pipe::create(&name, BytesConfig::new(256, 8)).unwrap();
        let produce_one = |p: u64| {
            let b = Pipe::open(&name).unwrap();
            produce(books, p, |id| {
                sent(b.send_timeout(&id.to_le_bytes(), common::WAKE_PATIENCE))
            })
        };
        let r = round(books, 1, close_after, &produce_one, &mut { a });
        Pipe::unlink(&name).unwrap();
        r
    });
}
