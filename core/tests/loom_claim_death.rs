//! Loom models of a queue claimant that dies mid-operation: a consumer
//! blocked behind an MPMC slot a dead producer claimed skips it, and two
//! byte-queue readers blocked behind a record a dead writer reserved skip
//! it once between them. A claimant that lives is never skipped.
//!
//! Who is dead is decided by the model: the dying thread stops for good
//! inside its claim (the fault-injection hooks, or a leaked grant) and then
//! raises a flag, and every other thread's `Peers::fate` says `Dead` for
//! its token only once the flag is up. Time is the futex model's clock: a
//! blocked call makes its owner check when a timer (`futex::model::fire`)
//! ends its `OWNER_CHECK_INTERVAL` sleep. Owner checks in queues are off
//! in other loom models (`queue::set_owner_checks`), so these models are a
//! test binary of their own.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmipc-core --release --test loom_claim_death`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use shmipc_core::bytes::ByteQueue;
use shmipc_core::futex::model::{fire, stop_timers};
use shmipc_core::mpmc::Mpmc;
use shmipc_core::queue::set_owner_checks;
use shmipc_core::{BytesConfig, Fate, Peers, PopError, RingConfig, Token};

const fn token(slot: u32) -> Token {
    match Token::new(slot, 1) {
        Some(t) => t,
        None => panic!(),
    }
}

const VICTIM: Token = token(0);

/// A peer as thread `me` sees the others: the victim is dead once `dead`
/// is up, everyone else alive.
struct ModelPeers {
    me: Token,
    dead: &'static AtomicBool,
}

impl Peers for ModelPeers {
    fn me(&self) -> Token {
        self.me
    }

    fn fate(&self, t: Token) -> Fate {
        if t == VICTIM && t != self.me && self.dead.load(Ordering::Acquire) {
            Fate::Dead
        } else {
            Fate::Alive
        }
    }
}

/// Peers that live as long as the model's handles ('static handles need
/// 'static peers; one small leak per execution).
fn peers(me: Token, dead: &'static AtomicBool) -> &'static ModelPeers {
    Box::leak(Box::new(ModelPeers { me, dead }))
}

fn flag() -> &'static AtomicBool {
    Box::leak(Box::new(AtomicBool::new(false)))
}

/// A two-slot MPMC queue and three handles on it, as the victim (dead once
/// the returned flag is up), token 1 and token 2 see it.
fn mpmc_of_three() -> (&'static AtomicBool, [Mpmc<'static, u32>; 3]) {
    let dead = flag();
    let q = Mpmc::<u32>::new_boxed(RingConfig::new(2));
    let victim = q.clone().with_peers(peers(VICTIM, dead));
    let consumer = q.clone().with_peers(peers(token(1), dead));
    let live = q.with_peers(peers(token(2), dead));
    (dead, [victim, consumer, live])
}

#[test]
fn a_consumer_skips_a_slot_claimed_by_a_dead_producer() {
    set_owner_checks(true);
    loom::model(|| {
        let (dead, [victim, consumer, live]) = mpmc_of_three();
        let dying = thread::spawn(move || {
            // Claims a slot and stops for good before publishing it.
            victim.claim_push_and_stop().unwrap();
            dead.store(true, Ordering::Release);
            // One owner-check interval ends after the death.
            fire();
        });
        let c = {
            let consumer = consumer.clone();
            thread::spawn(move || consumer.pop().unwrap())
        };
        live.push(7).unwrap();
        assert_eq!(c.join().unwrap(), 7, "the live producer's item");
        stop_timers();
        dying.join().unwrap();
        // Nothing else arrives: the dead claim never yields an item.
        assert_eq!(consumer.try_pop(), Err(PopError::Empty));
    });
}

/// A consumer claims the item in slot 0 (and moves `dequeue` past it)
/// and dies holding it. A producer blocked on the full queue finds it dead
/// at its owner check, frees the slot (the item is lost: it was being
/// received) and fills it; every other item arrives once, in order.
#[test]
fn a_producer_frees_a_slot_held_by_a_dead_consumer() {
    set_owner_checks(true);
    loom::model(|| {
        let (dead, [victim, consumer, live]) = mpmc_of_three();
        live.push(1).unwrap();
        live.push(2).unwrap();
        victim.claim_pop_and_stop().unwrap();
        dead.store(true, Ordering::Release);
        // One owner-check interval of the producer's sleep ends. (The
        // consumer receives afterwards: a second sleeper could take the
        // model's one timer.)
        let timer = thread::spawn(|| {
            fire();
        });
        let producer = thread::spawn(move || live.push(3).unwrap());
        producer.join().unwrap();
        stop_timers();
        timer.join().unwrap();
        assert_eq!(consumer.try_pop(), Ok(2));
        assert_eq!(consumer.try_pop(), Ok(3));
        assert_eq!(consumer.try_pop(), Err(PopError::Empty));
    });
}

#[test]
fn two_readers_skip_a_dead_writers_record_once() {
    set_owner_checks(true);
    // Four threads: a preemption bound of 1 keeps it to seconds (2 took
    // more than 15 minutes).
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(1);
    builder.check(|| {
        let dead = flag();
        let q = ByteQueue::new_boxed(BytesConfig::new(128, 8));
        let victim = q.clone().with_peers(peers(VICTIM, dead));
        // The writer reserves a record and dies holding it.
        std::mem::forget(victim.reserve(1).unwrap());
        dead.store(true, Ordering::Release);
        let readers: Vec<_> = (1..=2)
            .map(|i| {
                let r = q.clone().with_peers(peers(token(i), dead));
                thread::spawn(move || {
                    let g = r.recv().unwrap();
                    let mut b = [0u8; 1];
                    assert_eq!(g.copy_to(&mut b), 1);
                    g.release();
                    b[0]
                })
            })
            .collect();
        let timer = thread::spawn(|| {
            fire();
        });
        let live = q.with_peers(peers(token(3), dead));
        live.send(b"x").unwrap();
        live.send(b"y").unwrap();
        let mut got: Vec<u8> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, b"xy", "each live message exactly once");
        stop_timers();
        timer.join().unwrap();
    });
}
