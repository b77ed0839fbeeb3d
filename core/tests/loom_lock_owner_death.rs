//! Loom models of a Lock whose owner dies: a waiter takes a dead owner's
//! lock over (and is told so), and never a live one's.
//!
//! Who is dead is decided by the model itself: each thread acts as a peer
//! whose `Peers::fate` says `Dead` for the owner's token only once the
//! owner's thread has "died" — stopped for good while holding the lock (it
//! leaks its guard and raises a flag). Time is the futex model's clock: a
//! waiter makes its owner check when a timer (`futex::model::fire`) ends its
//! `OWNER_CHECK_INTERVAL` sleep, or the clock is moved past it
//! (`futex::model::advance`), at whatever point of the other threads' work
//! loom chooses.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p shmipc-core --release --test 'loom_*'`.
#![cfg(loom)]

mod loom_support;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_support::model_with_preemptions;
use shmipc_core::futex::model::{advance, fire, stop_timers};
use shmipc_core::sync::lock::OWNER_CHECK_INTERVAL;
use shmipc_core::{Fate, Lock, Peers, Token};

/// What the owner's peers say about it while it lives.
#[derive(Clone, Copy, PartialEq)]
enum WhileAlive {
    Alive,
    Unknown,
}

/// The lock, the data it guards, and the facts the model controls.
struct World {
    lock: Lock,
    value: UnsafeCell<u32>,
    /// The owner has stopped for good while holding the lock.
    owner_dead: AtomicBool,
    while_alive: WhileAlive,
}

// SAFETY: `value` is only touched while `lock` is held (or by a thread that
// took it over from a dead owner, whose writes the death flag orders before
// the takeover); loom reports any access that is not so ordered.
unsafe impl Sync for World {}

const OWNER: Token = match Token::new(0, 1) {
    Some(t) => t,
    None => panic!(),
};
const WAITER: Token = match Token::new(1, 1) {
    Some(t) => t,
    None => panic!(),
};
const OTHER_WAITER: Token = match Token::new(2, 1) {
    Some(t) => t,
    None => panic!(),
};

/// A peer of the mapping, as the model's thread `me` sees the others.
struct ModelPeers {
    me: Token,
    world: Arc<World>,
}

impl Peers for ModelPeers {
    fn me(&self) -> Token {
        self.me
    }

    fn fate(&self, token: Token) -> Fate {
        if token == self.me || token != OWNER {
            return Fate::Alive;
        }
        if self.world.owner_dead.load(Ordering::Acquire) {
            return Fate::Dead;
        }
        match self.world.while_alive {
            WhileAlive::Alive => Fate::Alive,
            WhileAlive::Unknown => Fate::Unknown("the model cannot tell"),
        }
    }
}

fn world(while_alive: WhileAlive) -> Arc<World> {
    Arc::new(World {
        lock: Lock::new(),
        value: UnsafeCell::new(0),
        owner_dead: AtomicBool::new(false),
        while_alive,
    })
}

fn peers(me: Token, world: &Arc<World>) -> ModelPeers {
    ModelPeers {
        me,
        world: world.clone(),
    }
}

/// A timer: ends one sleep, unless the model is done first.
fn timer() -> thread::JoinHandle<()> {
    thread::spawn(|| {
        fire();
    })
}

/// A waiter that must end up with the lock taken over from the dead owner.
fn take_over(world: Arc<World>, me: Token) -> impl FnOnce() -> bool {
    move || {
        let peers = peers(me, &world);
        let mut guard = world.lock.lock_until_with(&peers, None).unwrap();
        let died = guard.owner_died();
        assert!(
            !died || world.owner_dead.load(Ordering::Relaxed),
            "took the lock over from a live owner"
        );
        // SAFETY: we hold the lock (or took it over from a dead owner).
        world.value.with_mut(|v| unsafe { *v += 10 });
        guard.mark_consistent();
        drop(guard);
        died
    }
}

#[test]
fn a_waiter_takes_over_a_dead_owners_lock() {
    // The owner (this thread) takes the lock, works, and dies holding it,
    // while a waiter blocks on it and time passes. The waiter must get the
    // lock with `owner_died()`, see the dead owner's writes, and leave the
    // lock repaired.
    model_with_preemptions(3, || {
        let world = world(WhileAlive::Alive);
        let mine = peers(OWNER, &world);
        let guard = world.lock.lock_until_with(&mine, None).unwrap();
        let waiter = thread::spawn(take_over(world.clone(), WAITER));
        // One check interval may end before the death, or after it.
        let before = timer();
        // SAFETY: we hold the lock.
        world.value.with_mut(|v| unsafe { *v += 1 });
        // Die: never release, and let the peers say so.
        let _ = guard.leak();
        world.owner_dead.store(true, Ordering::Release);
        // Time goes on after the death: one more interval ends.
        let after = timer();
        let died = waiter.join().unwrap();
        stop_timers();
        before.join().unwrap();
        after.join().unwrap();
        assert!(died, "the waiter was never told the owner died");
        // SAFETY: every other thread has been joined.
        assert_eq!(world.value.with(|v| unsafe { *v }), 11);
        assert!(!world.lock.is_locked());
        assert!(!world.lock.is_unrecoverable());
        let again = world.lock.try_lock_with(&peers(WAITER, &world)).unwrap();
        assert!(!again.owner_died(), "repaired: the lock is ordinary again");
    });
}

#[test]
fn two_waiters_one_takeover() {
    // Two waiters block on a dead owner's lock: exactly one of them takes
    // it over; the other gets it after the repair, as an ordinary lock.
    loom::model(|| {
        let world = world(WhileAlive::Alive);
        let mine = peers(OWNER, &world);
        let _ = world.lock.lock_until_with(&mine, None).unwrap().leak();
        world.owner_dead.store(true, Ordering::Release);
        let a = thread::spawn(take_over(world.clone(), WAITER));
        let b = thread::spawn(take_over(world.clone(), OTHER_WAITER));
        let t = timer();
        let takeovers = a.join().unwrap() as u32 + b.join().unwrap() as u32;
        stop_timers();
        t.join().unwrap();
        assert_eq!(takeovers, 1);
        // SAFETY: every other thread has been joined.
        assert_eq!(world.value.with(|v| unsafe { *v }), 20);
        assert!(!world.lock.is_locked());
    });
}

fn live_owner_is_never_taken_over(while_alive: WhileAlive) {
    // The owner holds the lock while the waiter's owner checks come and go
    // (the clock passes two check intervals), then releases it. The waiter
    // must wait for the release: a takeover would race the owner's write to
    // the value (a loom error) and report `owner_died()`.
    model_with_preemptions(3, move || {
        let world = world(while_alive);
        let mine = peers(OWNER, &world);
        let guard = world.lock.lock_until_with(&mine, None).unwrap();
        let w = world.clone();
        let waiter = thread::spawn(move || {
            let peers = peers(WAITER, &w);
            let guard = w.lock.lock_until_with(&peers, None).unwrap();
            assert!(!guard.owner_died(), "took the lock over from a live owner");
            // SAFETY: we hold the lock.
            w.value.with_mut(|v| unsafe { *v += 10 });
        });
        let clock = thread::spawn(|| {
            advance(OWNER_CHECK_INTERVAL);
            advance(OWNER_CHECK_INTERVAL);
        });
        clock.join().unwrap();
        // SAFETY: we hold the lock.
        world.value.with_mut(|v| unsafe { *v += 1 });
        drop(guard);
        waiter.join().unwrap();
        // SAFETY: every other thread has been joined.
        assert_eq!(world.value.with(|v| unsafe { *v }), 11);
    });
}

#[test]
fn a_live_owner_is_never_taken_over() {
    live_owner_is_never_taken_over(WhileAlive::Alive);
}

#[test]
fn an_owner_that_cannot_be_judged_is_never_taken_over() {
    live_owner_is_never_taken_over(WhileAlive::Unknown);
}
