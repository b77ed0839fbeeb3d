//! A condition variable with its own [`Lock`], for threads and processes:
//! Python's `multiprocessing.Condition`.
//!
//! 32 bytes:
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `lock` | the condition's [`Lock`] (16 bytes) |
//! | 16 | `seq` | the futex word: bumped by every notify |
//! | 20 | `sleepers` | how many waiters may be asleep on `seq` |
//! | 24 | reserved | zero |
//!
//! A waiter, holding the lock, counts itself in `sleepers`, reads `seq`,
//! releases the lock and sleeps on `seq` *as it read it*; then it takes the
//! lock again. A notifier bumps `seq` and, only if `sleepers` is not zero,
//! wakes one (or all). Because the waiter read `seq` before it let the lock
//! go, a notify that comes after it released the lock changes `seq`, and
//! the kernel's compare in `FUTEX_WAIT` returns at once: no wake-up is
//! lost. The two `SeqCst` read-modify-write / load pairs (`sleepers` then
//! `seq` in the waiter, `seq` then `sleepers` in the notifier) make sure at
//! least one side sees the other, so skipping the wake when nobody sleeps
//! is safe. As with every condition variable, a wait may also return
//! without a notify; [`CondGuard::wait_while`] loops on the caller's
//! predicate.

use core::fmt;
use core::time::Duration;

use crate::futex::{self, Deadline, WaitOutcome};
use crate::lock::{Lock, LockError, LockGuard};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A condition variable with its own [`Lock`], for threads and processes:
/// Python's `multiprocessing.Condition`.
///
/// Take the lock with [`Condition::lock`]; the guard it returns waits
/// ([`CondGuard::wait`], [`wait_timeout`](CondGuard::wait_timeout),
/// [`wait_while`](CondGuard::wait_while)) by releasing the lock, sleeping
/// until a [`notify_one`](Condition::notify_one) or
/// [`notify_all`](Condition::notify_all), and taking the lock again. The
/// data the condition is about lives beside it (an atomic, or other bytes
/// of the same shared memory); change it while holding the lock, then
/// notify.
///
/// Zeroed bytes are a new `Condition`.
///
/// ```
/// use shmipc_core::sync::{AtomicU32, Ordering};
/// use shmipc_core::Condition;
///
/// let cond = Condition::new();
/// let ready = AtomicU32::new(0);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let guard = cond.lock().unwrap();
///         let _guard = guard
///             .wait_while(|| ready.load(Ordering::Relaxed) == 0)
///             .unwrap();
///         assert_eq!(ready.load(Ordering::Relaxed), 42);
///     });
///     let _guard = cond.lock().unwrap();
///     ready.store(42, Ordering::Relaxed);
///     cond.notify_all();
/// });
/// ```
#[repr(C)]
pub struct Condition {
    lock: Lock,
    seq: AtomicU32,
    sleepers: AtomicU32,
    _reserved: AtomicU64,
}

impl Condition {
    /// The size of a `Condition` in bytes.
    pub const SIZE: usize = size_of::<Condition>();
    /// The alignment a `Condition` needs.
    pub const ALIGN: usize = align_of::<Condition>();

    /// A new condition with an unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> Condition {
        Condition {
            lock: Lock::new(),
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            _reserved: AtomicU64::new(0),
        }
    }

    /// A new condition with an unlocked lock.
    #[cfg(loom)]
    pub fn new() -> Condition {
        Condition {
            lock: Lock::new(),
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            _reserved: AtomicU64::new(0),
        }
    }

    /// Takes the condition's lock (see [`Lock::lock`], including what an
    /// owner's death means), waiting as long as it takes (see
    /// [`Condition::lock_timeout`]).
    pub fn lock(&self) -> Result<CondGuard<'_>, LockError> {
        Ok(CondGuard {
            cond: self,
            guard: self.lock.lock()?,
        })
    }

    /// Takes the lock, or fails with [`LockError::Timeout`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<CondGuard<'_>, LockError> {
        Ok(CondGuard {
            cond: self,
            guard: self.lock.lock_timeout(timeout)?,
        })
    }

    /// The condition's lock itself.
    pub fn raw_lock(&self) -> &Lock {
        &self.lock
    }

    /// How many waiters may be asleep on it now (a snapshot; a waiter
    /// killed while asleep stays counted until a notify finds the count
    /// wrong).
    pub fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed)
    }

    /// Wakes one waiting process (or thread), if any waits. Call it with
    /// the lock held, after changing the state the waiters check.
    ///
    /// SYNC POINT: the SeqCst increment of `seq` and load of `sleepers`
    /// pair with the waiter's SeqCst increment of `sleepers` and load of
    /// `seq` in [`CondGuard::wait`] and [`CondGuard::wait_timeout`]: a
    /// notifier that sees no sleeper is seen by the sleeper's `seq`.
    pub fn notify_one(&self) {
        // SYNC POINT: SeqCst (paired in the doc comment above).
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            futex::wake_one(&self.seq);
        }
    }

    /// Wakes every waiting process (or thread).
    ///
    /// SYNC POINT: as in [`Condition::notify_one`].
    pub fn notify_all(&self) {
        // SYNC POINT: SeqCst (paired in the doc comment above).
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            futex::wake_all(&self.seq);
        }
    }
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("sleepers", &self.sleepers.load(Ordering::Relaxed))
            .finish()
    }
}

// SAFETY: #[repr(C)] and made of atomics only (Lock is itself a
// SharedObject); every bit pattern is valid: any `seq` is a sequence
// number, a wrong `sleepers` costs at most a needless or missing wake call,
// and waits re-check `seq` in the kernel.
crate::place::shared_object!(Condition, (), |_| Condition::new());

/// How long past its deadline a timed wait may take to get its lock back
/// (see [`CondGuard::wait_timeout`]): ample for a holder that is running,
/// short enough to keep the call bounded when it is not.
const RELOCK_GRACE: Duration = Duration::from_millis(50);

/// The lock of a [`Condition`], held; it waits on the condition.
///
/// Dropping it releases the lock. Like [`LockGuard`], it reports whether
/// the previous owner died holding the lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CondGuard<'a> {
    cond: &'a Condition,
    guard: LockGuard<'a>,
}

impl<'a> CondGuard<'a> {
    /// Whether the previous owner died holding the lock (see
    /// [`LockGuard::owner_died`]).
    pub fn owner_died(&self) -> bool {
        self.guard.owner_died()
    }

    /// Declares the protected state repaired after an owner's death.
    pub fn mark_consistent(&mut self) {
        self.guard.mark_consistent()
    }

    /// Releases the lock, sleeps until notified (or spuriously), and takes
    /// the lock again, waiting for both as long as it takes (see
    /// [`CondGuard::wait_timeout`]).
    pub fn wait(self) -> Result<CondGuard<'a>, LockError> {
        self.wait_until(None).map(|(g, _)| g)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; the flag is false if
    /// the timeout passed without a notify (Python's `wait` returning
    /// `False`).
    ///
    /// Taking the lock back is bounded too: by the same deadline, or, once
    /// that has passed, by 50 ms more. A holder that keeps the
    /// lock longer (a process stopped while it holds it, say) makes this
    /// [`LockError::Timeout`], and the lock is not held.
    pub fn wait_timeout(self, timeout: Duration) -> Result<(CondGuard<'a>, bool), LockError> {
        self.wait_until(Some(&Deadline::after(timeout)))
    }

    /// [`CondGuard::wait`] with an optional deadline.
    ///
    /// SYNC POINT: the SeqCst increment of `sleepers` and load of `seq`
    /// pair with the SeqCst `seq` increment and `sleepers` load in
    /// [`Condition::notify_one`] and [`Condition::notify_all`].
    fn wait_until(self, deadline: Option<&Deadline>) -> Result<(CondGuard<'a>, bool), LockError> {
        let cond = self.cond;
        // SYNC POINT: SeqCst (paired in the doc comment above).
        cond.sleepers.fetch_add(1, Ordering::SeqCst);
        let seq = cond.seq.load(Ordering::SeqCst);
        drop(self.guard);
        // Sliced: a notifier killed between its `seq` increment and its
        // wake must not strand us (`futex::wait_sliced`). A slice that
        // ends with `seq` unchanged and time left is slept again.
        let notified = loop {
            let outcome = futex::wait_sliced(&cond.seq, seq, deadline);
            if outcome != WaitOutcome::TimedOut || cond.seq.load(Ordering::SeqCst) != seq {
                break true;
            }
            if deadline.is_some_and(Deadline::has_passed) {
                break false;
            }
        };
        cond.sleepers.fetch_sub(1, Ordering::SeqCst);
        let guard = match deadline {
            None => cond.lock.lock()?,
            Some(d) => {
                let relock = Deadline::after(RELOCK_GRACE).max(*d);
                cond.lock.lock_until(Some(&relock))?
            }
        };
        Ok((CondGuard { cond, guard }, notified))
    }

    /// Waits as long as `condition` returns true (checking it first, with
    /// the lock held each time): Python's `wait_for` with the predicate
    /// negated, std's `Condvar::wait_while`.
    pub fn wait_while(
        mut self,
        mut condition: impl FnMut() -> bool,
    ) -> Result<CondGuard<'a>, LockError> {
        while condition() {
            self = self.wait()?;
        }
        Ok(self)
    }

    /// As [`wait_while`](Self::wait_while), for at most `timeout`; the flag
    /// is true if `condition` became false, false if the time ran out.
    /// Taking the lock back is bounded as in
    /// [`wait_timeout`](Self::wait_timeout).
    pub fn wait_timeout_while(
        mut self,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(CondGuard<'a>, bool), LockError> {
        let deadline = Deadline::after(timeout);
        loop {
            if !condition() {
                return Ok((self, true));
            }
            if deadline.has_passed() {
                return Ok((self, false));
            }
            self = self.wait_until(Some(&deadline))?.0;
        }
    }
}

impl fmt::Debug for CondGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CondGuard")
            .field("owner_died", &self.owner_died())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::place::{LayoutError, SharedObject};
    use std::sync::Arc;

    #[test]
    fn zeroed_bytes_are_a_new_condition_of_32_bytes() {
        assert_eq!(Condition::SIZE, 32);
        assert_eq!(Condition::ALIGN, 8);
        let mut buf = [0u64; 4];
        let cond = Condition::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        let g = cond.lock().unwrap();
        assert!(cond.raw_lock().is_locked());
        drop(g);
        let mut short = [0u64; 4];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut short);
        assert!(matches!(
            Condition::from_bytes_mut(&mut bytes[..31]),
            Err(LayoutError::TooSmall {
                required: 32,
                available: 31
            })
        ));
    }

    #[test]
    fn condition_between_threads() {
        let c = Arc::new(Condition::new());
        let flag = Arc::new(AtomicU32::new(0));
        let (c2, f2) = (c.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            let g = c2.lock().unwrap();
            let _g = g.wait_while(|| f2.load(Ordering::Relaxed) == 0).unwrap();
        });
        std::thread::sleep(Duration::from_millis(20));
        {
            let _g = c.lock().unwrap();
            flag.store(1, Ordering::Relaxed);
            c.notify_one();
        }
        t.join().unwrap();
        let g = c.lock().unwrap();
        let (g, notified) = g.wait_timeout(Duration::from_millis(10)).unwrap();
        assert!(!notified);
        let (_g, became_false) = g
            .wait_timeout_while(Duration::from_millis(10), || true)
            .unwrap();
        assert!(!became_false);
    }
}
