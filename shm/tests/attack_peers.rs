//! Attacks on the liveness evidence: a hostile process that can write the
//! segment (every peer can) rewrites the peer table, and a live holder must
//! still never be judged dead. The kernel's lock on the holder's slot is
//! the only evidence that cannot be forged; nothing written in shared
//! memory may turn "alive" into "dead".
//!
//! Each test forks a holder that takes something and keeps it (it stays
//! alive until the test lets it go), then forges the peer table from the
//! test process with plain writes to the segment's file, as a hostile or
//! buggy peer would, and then waits several owner-check intervals: a waiter
//! that judged the live holder dead takes over in that time.

mod common;

use std::time::Duration;

use common::{join, off, peek_u32, peek_u64, poke_u32, LONG, SEVERAL_CHECKS};
use shmipc::{fork, Event, ExitStatus, Lock, LockError, Named, Queue, RingConfig, Shared};

/// The hostile write: every slot's generation word (the first 4 bytes of
/// each 32-byte slot) moves on by one, as if each slot had a new holder.
/// Returns how many slots had been claimed (a non-zero generation).
fn bump_every_generation(name: &str) -> u32 {
    let table = peek_u64(name, off::PEERS_OFFSET);
    let slots = peek_u32(name, off::PEER_SLOTS);
    assert!(slots > 0 && table > 0, "a segment has a peer table");
    let mut claimed = 0;
    for i in 0..u64::from(slots) {
        let at = table + 32 * i;
        let g = peek_u32(name, at);
        if g != 0 {
            claimed += 1;
        }
        poke_u32(name, at, g.wrapping_add(1));
    }
    claimed
}

#[test]
fn a_forged_generation_does_not_make_a_live_lock_holder_dead() {
    let (_names, name) = common::segment_name("atk-gen-lock", "lock");
    let lock = Shared::<Lock>::create(&name, ()).unwrap();
    let [held, release] = common::anon_events();
    let mut child = fork(|| {
        let guard = lock.lock().unwrap();
        held.set();
        if !release.wait_timeout(LONG) {
            return 4;
        }
        drop(guard);
        0
    })
    .unwrap();
    assert!(held.wait_timeout(LONG));
    assert!(
        bump_every_generation(&name) >= 1,
        "the holder claimed a slot"
    );
    let verdict = match lock.lock_timeout(SEVERAL_CHECKS) {
        Err(LockError::Timeout) => None,
        Ok(g) => Some(format!(
            "took the lock from a live holder (owner_died = {})",
            g.owner_died()
        )),
        Err(e) => Some(format!("{e}")),
    };
    release.set();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    if let Some(v) = verdict {
        panic!("{v}: a forged generation word counted as evidence of death");
    }
    let g = lock.lock_timeout(LONG).unwrap();
    assert!(!g.owner_died(), "the holder released it normally");
}

#[test]
fn a_forged_generation_does_not_recover_a_live_producers_claim() {
    let (_names, name) = common::segment_name("atk-gen-mpmc", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let [claimed, release] = common::anon_events();
    let mut child = fork(|| {
        let q = Queue::<u64>::open(&name).unwrap();
        // Claims position 0 and stops before publishing, alive.
        let r = q.push_pausing(7, LONG, || {
            claimed.set();
            assert!(release.wait_timeout(LONG));
        });
        if r.is_ok() {
            0
        } else {
            5
        }
    })
    .unwrap();
    assert!(claimed.wait_timeout(LONG));
    assert!(bump_every_generation(&name) >= 1);
    // A consumer that judged the producer dead skips its claim; the item
    // it then publishes is lost (or its push fails).
    let r = q.pop_timeout(SEVERAL_CHECKS);
    release.set();
    let code = join(&mut child);
    assert_eq!(
        code,
        ExitStatus::Code(0),
        "5: the live producer's push failed: its claim was taken from it"
    );
    assert!(
        r.is_err(),
        "popped {r:?} before the producer published anything"
    );
    assert_eq!(
        q.pop_timeout(LONG),
        Ok(7),
        "the live producer's item arrives"
    );
}

/// A full peer table: a process that finds every slot held by a live one
/// still attaches and works (its token names no slot, so it is never
/// judged dead); nothing hangs, and a slot that frees up is used by the
/// next process to attach.
#[test]
fn a_full_peer_table_refuses_no_one_and_hangs_nothing() {
    const SLOTS: u32 = 4;
    let (_names, name) = common::segment_name("atk-full", "q");
    let opts = shmipc::Options::default().peer_slots(SLOTS);
    let q = Queue::<u64>::create_with(&name, RingConfig::new(8), &opts).unwrap();
    // The creator holds one slot; these hold the rest.
    let mut others: Vec<_> = (1..SLOTS)
        .map(|_| Queue::<u64>::open(&name).unwrap())
        .collect();
    for (i, o) in others.iter().enumerate() {
        o.push(i as u64).unwrap();
    }
    let run = |first: u64| {
        let name = name.clone();
        fork(move || {
            let Ok(q) = Queue::<u64>::open(&name) else {
                return 2;
            };
            if q.push_timeout(first, LONG).is_err() {
                return 3;
            }
            0
        })
        .unwrap()
    };
    let mut child = run(100);
    assert_eq!(
        join(&mut child),
        ExitStatus::Code(0),
        "an attacher beyond the table"
    );
    // A slot frees up: the next attacher gets it.
    others.pop();
    let mut child = run(101);
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    let got: Vec<u64> = (0..SLOTS as usize + 1)
        .map(|_| q.pop_timeout(LONG).unwrap())
        .collect();
    assert_eq!(got, [0, 1, 2, 100, 101]);
}

/// `exec` ends the program that held the slot: its slot-lock description
/// is close-on-exec, so the lock it held is taken over (with `owner_died`)
/// while the process itself, now another program, lives on.
#[test]
fn a_holder_that_execs_is_taken_over() {
    let (_names, name) = common::segment_name("atk-exec", "lock");
    let lock = Shared::<Lock>::create(&name, ()).unwrap();
    let held = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let guard = lock.lock().unwrap();
        std::mem::forget(guard);
        held.set();
        let prog = c"/bin/sleep";
        let args = [prog.as_ptr(), c"30".as_ptr(), std::ptr::null()];
        // SAFETY: NUL-terminated strings and a NULL-terminated argv that
        // outlive the call; execv returns only on failure.
        unsafe { libc::execv(prog.as_ptr(), args.as_ptr()) };
        9
    })
    .unwrap();
    assert!(held.wait_timeout(LONG));
    let r = lock.lock_timeout(Duration::from_secs(10));
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = join(&mut child);
    assert!(alive, "the exec'd program was still running");
    let g = r.expect("the lock of a holder that exec'd is taken over");
    assert!(g.owner_died());
}
