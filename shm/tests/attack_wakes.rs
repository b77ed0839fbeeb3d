//! Attacks on wake-ups: a peer killed (or stopped) between changing a
//! primitive's state and making the `FUTEX_WAKE` that tells the sleepers.
//!
//! Every releasing operation here is "change the word, then wake": an
//! `Event::set` raises the flag and then wakes, a `Semaphore::release`
//! adds a permit and then wakes, the last party of a `Barrier` moves the
//! generation on and then wakes, a `Condition` notify bumps its sequence
//! and then wakes. A SIGKILL between the two steps leaves the state saying
//! "proceed" while the sleepers, already inside `FUTEX_WAIT`, are never
//! woken: an untimed wait would then sleep for ever, although anyone who
//! looked would see the flag, the permit or the new generation.
//!
//! The tests make exactly that state across processes: a forked child
//! goes to sleep in the untimed call, and when it is asleep the test
//! writes the word the dying peer would have left (a plain write to the
//! segment's file, which wakes no futex), as a peer that died right after
//! its compare-and-swap. The sleeper must notice within a few seconds.

mod common;

use std::time::Duration;

use common::{eventually, join, off, peek_u32, peek_u64, poke_u32};
use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{fork, Barrier, Child, Condition, Event, ExitStatus, Named, Semaphore, Shared};

/// How long a stranded sleeper may take to notice (generous: a few
/// owner-check intervals would do).
const NOTICE: Duration = Duration::from_secs(3);
/// How long the child is given to fall asleep before the word is written.
const FALL_ASLEEP: Duration = Duration::from_millis(300);

/// Where the segment's object starts.
fn object(name: &str) -> u64 {
    peek_u64(name, off::OBJECT_OFFSET)
}

/// The marks a [`sleeper`] sets, both still 0: that it entered the
/// blocking call, and that the call returned.
fn entered_and_returned() -> (Shared<AtomicU32>, Shared<AtomicU32>) {
    (
        Shared::<AtomicU32>::anon(0).unwrap(),
        Shared::<AtomicU32>::anon(0).unwrap(),
    )
}

/// Forks a child that marks `entered`, runs `sleep` (an untimed call
/// that only returns once the state says so) and marks `returned`.
fn sleeper(
    entered: &Shared<AtomicU32>,
    returned: &Shared<AtomicU32>,
    sleep: impl FnOnce(),
) -> Child {
    fork(|| {
        entered.store(1, Ordering::SeqCst);
        sleep();
        returned.store(1, Ordering::SeqCst);
        0
    })
    .unwrap()
}

/// Waits for the child to be asleep, makes the dying peer's write, and
/// checks that the child returns. Kills the child if it does not.
fn expect_noticed(
    mut child: Child,
    returned: &Shared<AtomicU32>,
    what: &str,
    write: impl FnOnce(),
) {
    std::thread::sleep(FALL_ASLEEP);
    assert_eq!(returned.load(Ordering::SeqCst), 0, "{what}: returned early");
    write();
    let noticed = eventually(NOTICE, || returned.load(Ordering::SeqCst) == 1);
    if !noticed {
        let _ = child.kill();
    }
    let status = join(&mut child);
    assert!(
        noticed,
        "{what}: the sleeper was still asleep {NOTICE:?} after the state said to go on \
         (a peer killed between its state change and its wake strands it for ever)"
    );
    assert_eq!(status, ExitStatus::Code(0));
}

#[test]
fn an_event_set_whose_setter_died_before_waking_wakes_its_waiter() {
    let (_names, name) = common::segment_name("atk-wake-event", "ev");
    let ev = Shared::<Event>::create(&name, ()).unwrap();
    let (entered, returned) = entered_and_returned();
    let child = sleeper(&entered, &returned, || ev.wait());
    let at = object(&name);
    // The waiter announces itself with the WAITERS bit (2) before it sleeps.
    assert!(eventually(NOTICE, || peek_u32(&name, at) & 2 != 0));
    expect_noticed(child, &returned, "Event::wait", || {
        // `set`'s compare-and-swap: next generation, WAITERS cleared, SET.
        let w = peek_u32(&name, at);
        poke_u32(&name, at, ((w & !2).wrapping_add(4)) | 1);
    });
    assert!(ev.is_set());
}

#[test]
fn a_permit_whose_releaser_died_before_waking_reaches_the_sleeper() {
    let (_names, name) = common::segment_name("atk-wake-sem", "sem");
    let sem = Shared::<Semaphore>::create(&name, common::unbounded(0)).unwrap();
    let (entered, returned) = entered_and_returned();
    let child = sleeper(&entered, &returned, || sem.acquire());
    assert!(eventually(NOTICE, || sem.counted_sleepers() == 1));
    let at = object(&name); // `count` is the semaphore's first word
    expect_noticed(child, &returned, "Semaphore::acquire", || {
        // `release`'s compare-and-swap of `count`, 0 to 1.
        poke_u32(&name, at, 1);
    });
    assert_eq!(sem.value(), 0, "the sleeper took the permit");
}

#[test]
fn a_barrier_whose_last_party_died_before_waking_releases_the_others() {
    let (_names, name) = common::segment_name("atk-wake-barrier", "b");
    let _barrier = Shared::<Barrier>::create(&name, 2).unwrap();
    let (entered, returned) = entered_and_returned();
    let opener = name.clone();
    let child = sleeper(&entered, &returned, move || {
        let b = Shared::<Barrier>::open(&opener).unwrap();
        assert_eq!(b.wait(), Ok(false), "released, not the leader");
    });
    let at = object(&name); // `state`: bits 0-15 arrived, 16-30 generation
    assert!(eventually(NOTICE, || peek_u32(&name, at) & 0xffff == 1));
    expect_noticed(child, &returned, "Barrier::wait", || {
        // The leader's compare-and-swap: next generation, none arrived.
        let w = peek_u32(&name, at);
        let generation = (w >> 16) & 0x7fff;
        poke_u32(&name, at, ((generation + 1) & 0x7fff) << 16);
    });
}

#[test]
fn a_notify_whose_notifier_died_before_waking_reaches_the_waiter() {
    let (_names, name) = common::segment_name("atk-wake-cond", "c");
    let cond = Shared::<Condition>::create(&name, ()).unwrap();
    let (entered, returned) = entered_and_returned();
    let child = sleeper(&entered, &returned, || {
        let g = cond.lock().unwrap();
        drop(g.wait().unwrap());
    });
    // `seq` follows the condition's lock (16 bytes), `sleepers` after it.
    let at = object(&name) + 16;
    assert!(eventually(NOTICE, || peek_u32(&name, at + 4) == 1));
    expect_noticed(child, &returned, "CondGuard::wait", || {
        // A notify's increment of `seq`.
        let w = peek_u32(&name, at);
        poke_u32(&name, at, w.wrapping_add(1));
    });
}
