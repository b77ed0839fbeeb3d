//! `Lock`, `Semaphore` and `Event` placed over arbitrary bytes, then a
//! short sequence of calls that never wait long (`try_*`, tiny timeouts),
//! with hostile writes in between.
//!
//! Every bit pattern is a valid value of these types, so every call must
//! return, nothing may panic, and what follows from the calls alone must
//! hold whatever the bytes were: a lock we just took is locked; a
//! semaphore's `try_acquire` succeeds exactly when its value is not zero
//! and takes one permit; `release` fails with `Overflow` exactly at the
//! bound (or `u32::MAX`) and adds one permit otherwise; after `set` an event
//! is set, after `clear` it is not, and a `wait_timeout` by the only thread
//! there is returns whether it was set.
//!
//! The lock's layout is the lock module's business: this harness knows only
//! `Lock::SIZE`, `Lock::ALIGN`, `SharedObject::from_bytes_mut` and the
//! public calls. Stronger lock checks apply from zeroed bytes, which are
//! documented to be an unlocked lock.
//!
//! **Takeovers.** Now and then (op 12) the harness waits for the lock as a
//! member of peers whose verdict on every other token the input chooses
//! (dead, alive, or cannot be judged), long enough for an owner check:
//! whatever the bytes, a lock whose owner field names a token judged dead
//! must be taken over (`owner_died()`), and one whose owner is alive, cannot
//! be judged, or is no token at all must not be (a timeout). These waits
//! last one owner-check interval (50 ms), so the input has to ask for them.

use std::time::{Duration, Instant};

use shmipc_core::peers::{Fate, Peers, Token};
use shmipc_core::sync::{AtomicU32, Ordering};
use shmipc_core::{
    Deadline, Event, Lock, LockError, LockGuard, Semaphore, SemaphoreError, SharedObject,
};

/// Peers whose caller is [`FuzzPeers::ME`] and whose verdict on every other
/// token the input sets.
struct FuzzPeers {
    /// 0 alive, 1 dead, 2 cannot be judged.
    verdict: AtomicU32,
}

impl FuzzPeers {
    const ME: Token = match Token::new(0, 1) {
        Some(t) => t,
        None => panic!(),
    };
}

impl Peers for FuzzPeers {
    fn me(&self) -> Token {
        FuzzPeers::ME
    }

    fn fate(&self, token: Token) -> Fate {
        if token == FuzzPeers::ME {
            return Fate::Alive;
        }
        match self.verdict.load(Ordering::Relaxed) {
            1 => Fate::Dead,
            2 => Fate::Unknown("the fuzz input says so"),
            _ => Fate::Alive,
        }
    }
}

use crate::support::{AlignedBuf, Input, MAX_OPS};

/// See the module documentation.
pub fn sync_words(data: &[u8]) {
    let mut input = Input::new(data);
    let mut lock_buf = AlignedBuf::with_bytes(Lock::SIZE, input.bytes(Lock::SIZE));
    let mut sem_buf = AlignedBuf::with_bytes(Semaphore::SIZE, input.bytes(Semaphore::SIZE));
    let mut event_buf = AlignedBuf::with_bytes(Event::SIZE, input.bytes(Event::SIZE));
    const { assert!(Lock::ALIGN <= 128 && Semaphore::ALIGN <= 128 && Event::ALIGN <= 128) };

    let mut ops = 0;
    // Each round views the three objects over their bytes as they are now,
    // runs calls until the input asks for a hostile write, then ends every
    // view and borrow before making it.
    while ops < MAX_OPS && !input.is_empty() {
        // Zeroed bytes are an unlocked lock; from there the lock is ours to
        // reason about until the next hostile write.
        let clean = lock_buf.bytes_mut().iter().all(|&b| b == 0);
        let lock = Lock::from_bytes_mut(lock_buf.bytes_mut()).expect("room for a Lock");
        let sem = Semaphore::from_bytes_mut(sem_buf.bytes_mut()).expect("room for a Semaphore");
        let event = Event::from_bytes_mut(event_buf.bytes_mut()).expect("room for an Event");
        let mut guard: Option<LockGuard<'_>> = None;
        let target = loop {
            if ops >= MAX_OPS || input.is_empty() {
                break None;
            }
            ops += 1;
            match input.u8() % 16 {
                op @ (0 | 1) => {
                    let r = if op == 0 {
                        lock.try_lock()
                    } else {
                        lock.lock_timeout(input.timeout())
                    };
                    check_lock(lock, r, clean, &mut guard);
                }
                2 => {
                    guard = None;
                    if clean {
                        assert!(!lock.is_locked(), "still locked after the guard went");
                    }
                }
                3 => {
                    if guard.is_some() {
                        assert!(lock.is_locked(), "our guard's lock reads unlocked");
                    }
                    let _ = format!("{lock:?}");
                }
                op @ (4 | 5) => {
                    let before = sem.value();
                    let got = if op == 4 {
                        sem.try_acquire()
                    } else {
                        sem.acquire_timeout(input.timeout())
                    };
                    assert_eq!(got, before != 0, "acquire with {before} permits");
                    assert_eq!(sem.value(), before - got as u32, "permits after acquire");
                }
                6 => {
                    let before = sem.value();
                    let at_bound = before == u32::MAX || sem.max().is_some_and(|m| before >= m);
                    match sem.release() {
                        Ok(()) => {
                            assert!(!at_bound, "release past the bound");
                            assert_eq!(sem.value(), before + 1, "permits after release");
                        }
                        Err(SemaphoreError::Overflow) => {
                            assert!(at_bound, "overflow below the bound");
                            assert_eq!(sem.value(), before, "permits after a refused release");
                        }
                        Err(e) => panic!("release: {e}"),
                    }
                }
                7 => {
                    let _ = (sem.value(), sem.max(), format!("{sem:?}"));
                }
                8 => {
                    event.set();
                    assert!(event.is_set(), "not set after set");
                }
                9 => {
                    event.clear();
                    assert!(!event.is_set(), "set after clear");
                }
                10 => {
                    let was = event.is_set();
                    assert_eq!(event.wait_timeout(input.timeout()), was, "wait_timeout");
                }
                11 => {
                    let _ = (event.is_set(), format!("{event:?}"));
                }
                // Rare on purpose: each costs an owner-check interval.
                12 if input.u8() == 0xa5 => {
                    let verdict = u32::from(input.u8() % 3);
                    takeover(lock, verdict, &mut guard);
                }
                12 => {}
                _ => break Some(input.below(3)),
            }
        };
        drop(guard);
        match target {
            Some(0) => lock_buf.poke(&mut input),
            Some(1) => sem_buf.poke(&mut input),
            Some(_) => event_buf.poke(&mut input),
            None => {}
        }
    }
}

/// Waits for `lock` as a member of peers that judge every other token by
/// `verdict` (see [`FuzzPeers`]), long enough for one owner check, and
/// checks the outcome against what the lock's public state says.
fn takeover<'a>(lock: &'a Lock, verdict: u32, guard: &mut Option<LockGuard<'a>>) {
    let peers = FuzzPeers {
        verdict: AtomicU32::new(verdict),
    };
    // What decides the outcome, read before the call (nothing else writes
    // the lock meanwhile).
    let unrecoverable = lock.is_unrecoverable();
    let held = lock.is_locked();
    let owner = lock.owner().map(|o| o.token);
    let ours = guard.is_some();
    let dead = held && !ours && owner.is_some_and(|t| peers.fate(t).is_dead());
    // A dead owner is taken over after one check interval (50 ms): give it
    // plenty. Any other held lock must be waited for until the deadline,
    // past one check.
    let wait = if dead {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(60)
    };
    let start = Instant::now();
    let r = lock.lock_until_with(&peers, Some(&Deadline::after(wait)));
    let took = start.elapsed();
    match r {
        Err(LockError::Unrecoverable) => assert!(unrecoverable, "Unrecoverable, but it was not"),
        Err(LockError::Deadlock) => assert!(ours, "Deadlock on a lock we do not hold"),
        Err(LockError::Timeout) => {
            assert!(
                held && !ours && !dead && !unrecoverable,
                "timed out on a lock whose owner {owner:?} is judged dead (verdict {verdict}) \
                 or that was free, after {took:?}"
            );
            assert!(took >= wait, "timed out early, after {took:?}");
        }
        Err(e) => panic!("lock_until_with: {e}"),
        Ok(g) => {
            assert!(
                !ours && !unrecoverable,
                "took a lock we hold, or a dead one"
            );
            if held {
                assert!(dead, "took over a live or unjudgeable owner {owner:?}");
                assert!(
                    g.owner_died(),
                    "a takeover that does not say the owner died"
                );
            }
            assert_eq!(lock.owner().map(|o| o.token), Some(FuzzPeers::ME));
            // Repair, so the lock stays usable for the rest of the input.
            let mut g = g;
            g.mark_consistent();
            *guard = Some(g);
        }
    }
}

/// Checks the outcome of taking `lock` and keeps the guard.
fn check_lock<'a>(
    lock: &'a Lock,
    r: Result<LockGuard<'a>, LockError>,
    clean: bool,
    guard: &mut Option<LockGuard<'a>>,
) {
    match r {
        Ok(g) => {
            assert!(guard.is_none(), "took a lock we already hold");
            assert!(lock.is_locked(), "a lock we just took reads unlocked");
            *guard = Some(g);
        }
        Err(e) => {
            if clean {
                // From zeroed bytes only this thread ever took the lock.
                if guard.is_some() {
                    assert_eq!(e, LockError::Deadlock, "relocking from the owner");
                } else {
                    panic!("a free lock refused: {e}");
                }
            }
        }
    }
}
