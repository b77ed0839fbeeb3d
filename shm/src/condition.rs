//! [`Condition`] and [`Barrier`]: Python's `multiprocessing.Condition`
//! and `multiprocessing.Barrier`, as fixed-size objects of atomics that
//! live in a named segment ([`Shared`](crate::Shared)) or an anonymous
//! mapping ([`Anon`](crate::Anon)).
//!
//! # Condition
//!
//! `lock: Lock` (16 bytes), then `seq: u32` (the futex word) and
//! `sleepers: u32`, 8 reserved bytes. A waiter, holding the lock, reads
//! `seq`, counts itself in `sleepers`, releases the lock and sleeps on
//! `seq` *as it read it*; then it takes the lock again. A notifier bumps
//! `seq` and, only if `sleepers` is not zero, wakes one (or all). Because the
//! waiter read `seq` before it let the lock go, a notify that comes after
//! it released the lock changes `seq`, and the kernel's compare in
//! `FUTEX_WAIT` returns at once: no wake-up is lost. The two `SeqCst`
//! read-modify-write / load pairs (`sleepers` then `seq` in the waiter,
//! `seq` then `sleepers` in the notifier) make sure at least one side sees
//! the other, so skipping the wake when nobody sleeps is safe. As with
//! every condition variable, a wait may also return without a notify;
//! [`CondGuard::wait_while`] loops on the caller's predicate.
//!
//! # Barrier
//!
//! One state word — bits 0–15 the parties arrived, bits 16–30 the
//! generation, bit 31 *broken* — and `parties`. Arriving is a
//! compare-and-swap adding one; the last party instead resets the count and
//! advances the generation in the same compare-and-swap (it is the leader),
//! then wakes everyone sleeping on the word. A waiter sleeps until the
//! generation moves (passed) or the broken bit appears. A waiter whose
//! deadline passes sets the broken bit (if its generation is still
//! current) and wakes everyone: all of them get [`BarrierError::Broken`],
//! itself [`BarrierError::Timeout`], and so does every later arrival until
//! [`Barrier::reset`], which advances the generation by two (so that a
//! process still waiting in the old one can tell a reset from a release).

use std::fmt;
use std::time::Duration;

use shmipc_core::futex::{self, Deadline, WaitOutcome};
use shmipc_core::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc_core::{LayoutError, Lock, LockError, LockGuard, Rule, SharedObject};

use crate::header::Kind;
use crate::object::ShmObject;

/// A condition variable with its own [`Lock`], for processes: Python's
/// `multiprocessing.Condition`.
///
/// Take the lock with [`Condition::lock`]; the guard it returns waits
/// ([`CondGuard::wait`], [`wait_timeout`](CondGuard::wait_timeout),
/// [`wait_while`](CondGuard::wait_while)) by releasing the lock, sleeping
/// until a [`notify_one`](Condition::notify_one) or
/// [`notify_all`](Condition::notify_all), and taking the lock again. The
/// data the condition is about lives elsewhere in shared memory (an atomic,
/// a [`Value`](crate::Value), a [`Segment`](crate::Segment)); change it
/// while holding the lock, then notify.
///
/// ```
/// use shmipc::sync::{AtomicU32, Ordering};
/// use shmipc::{fork, Anon, Condition};
/// use std::time::Duration;
///
/// let cond = Anon::<Condition>::new(())?;
/// let ready = Anon::<AtomicU32>::new(0)?;
/// let mut child = fork(|| {
///     let guard = cond.lock().unwrap();
///     let guard = guard.wait_while(|| ready.load(Ordering::Relaxed) == 0).unwrap();
///     drop(guard);
///     ready.load(Ordering::Relaxed) as i32            // 42
/// })?;
/// {
///     let _guard = cond.lock()?;
///     ready.store(42, Ordering::Relaxed);
///     cond.notify_all();
/// }
/// assert_eq!(child.join_timeout(Duration::from_secs(10))?.unwrap().code(), Some(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
pub struct Condition {
    lock: Lock,
    seq: AtomicU32,
    sleepers: AtomicU32,
    _reserved: AtomicU64,
}

impl Condition {
    /// A new condition with an unlocked lock.
    pub const fn new() -> Condition {
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

    /// Wakes one waiting process (or thread), if any waits. Call it with
    /// the lock held, after changing the state the waiters check.
    pub fn notify_one(&self) {
        // SYNC POINT: SeqCst, paired with the waiter's SeqCst increment of
        // `sleepers` and load of `seq` (module documentation).
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            futex::wake_one(&self.seq);
        }
    }

    /// Wakes every waiting process (or thread).
    pub fn notify_all(&self) {
        // SYNC POINT: as in notify_one.
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
unsafe impl SharedObject for Condition {
    type Config = ();

    unsafe fn init(this: *mut Self, _config: ()) {
        // SAFETY: the caller guarantees `this` is valid and exclusive.
        unsafe { this.write(Condition::new()) };
    }
}

impl ShmObject for Condition {
    const KIND: Kind = Kind::CONDITION;
}

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

    fn wait_until(self, deadline: Option<&Deadline>) -> Result<(CondGuard<'a>, bool), LockError> {
        let cond = self.cond;
        // SYNC POINT: SeqCst, paired with notify's SeqCst `seq` increment
        // and `sleepers` load.
        cond.sleepers.fetch_add(1, Ordering::SeqCst);
        let seq = cond.seq.load(Ordering::SeqCst);
        drop(self.guard);
        let outcome = futex::wait(&cond.seq, seq, deadline);
        cond.sleepers.fetch_sub(1, Ordering::SeqCst);
        let notified = outcome != WaitOutcome::TimedOut || cond.seq.load(Ordering::SeqCst) != seq;
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

/// Why [`Barrier::wait`] did not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken: a party timed out, [`Barrier::abort`] was
    /// called, or [`Barrier::reset`] ran while this party waited (Python's
    /// `BrokenBarrierError`). It stays broken until `reset`.
    Broken,
    /// This party's timeout passed; it broke the barrier for everyone.
    Timeout,
    /// The barrier's party count is zero or above [`Barrier::MAX_PARTIES`].
    InvalidParties(u32),
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("the barrier is broken"),
            BarrierError::Timeout => {
                f.write_str("timed out waiting at the barrier, which is now broken")
            }
            BarrierError::InvalidParties(n) => write!(
                f,
                "a barrier of {n} parties is invalid (1 to {} allowed)",
                Barrier::MAX_PARTIES
            ),
        }
    }
}

impl std::error::Error for BarrierError {}

const ARRIVED_MASK: u32 = 0xffff;
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0x7fff;
const BROKEN: u32 = 0x8000_0000;

fn generation(state: u32) -> u32 {
    (state >> GEN_SHIFT) & GEN_MASK
}

/// A barrier for a fixed number of processes: Python's
/// `multiprocessing.Barrier`.
///
/// Each party calls [`wait`](Barrier::wait); all are released together
/// when the last one arrives, which is told it is the *leader* (`true`).
/// The barrier then serves the next round (generation) at once. A party
/// whose [`wait_timeout`](Barrier::wait_timeout) runs out *breaks* the
/// barrier: every party waiting, and every later arrival, gets
/// [`BarrierError::Broken`] until [`reset`](Barrier::reset).
///
/// ```
/// use shmipc::{fork, Anon, Barrier, BarrierError};
/// use std::time::Duration;
///
/// let barrier = Anon::<Barrier>::new(3)?;              // three parties
/// let mut children = Vec::new();
/// for _ in 0..2 {
///     children.push(fork(|| match barrier.wait() {
///         Ok(leader) => leader as i32,
///         Err(_) => 99,
///     })?);
/// }
/// let leader = barrier.wait()?;
/// let leaders: i32 = children
///     .iter_mut()
///     .map(|c| c.join_timeout(Duration::from_secs(10)).unwrap().unwrap().code().unwrap())
///     .sum::<i32>()
///     + leader as i32;
/// assert_eq!(leaders, 1);                               // exactly one leader
///
/// // Alone at the barrier: the timeout breaks it.
/// assert_eq!(barrier.wait_timeout(Duration::from_millis(10)), Err(BarrierError::Timeout));
/// assert_eq!(barrier.wait(), Err(BarrierError::Broken));
/// barrier.reset();
/// assert!(!barrier.is_broken());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[repr(C)]
pub struct Barrier {
    state: AtomicU32,
    parties: AtomicU32,
    _reserved: AtomicU64,
}

impl Barrier {
    /// The most parties a barrier can have.
    pub const MAX_PARTIES: u32 = ARRIVED_MASK;

    /// A barrier for `parties` parties (1 to [`Barrier::MAX_PARTIES`]; other
    /// counts make every wait fail with [`BarrierError::InvalidParties`],
    /// and are refused when the barrier is placed in shared memory by
    /// [`Shared`](crate::Shared) or [`Anon`](crate::Anon)).
    pub const fn new(parties: u32) -> Barrier {
        Barrier {
            state: AtomicU32::new(0),
            parties: AtomicU32::new(parties),
            _reserved: AtomicU64::new(0),
        }
    }

    /// How many parties it waits for.
    pub fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed)
    }

    /// How many parties wait now (a snapshot).
    pub fn n_waiting(&self) -> u32 {
        self.state.load(Ordering::Relaxed) & ARRIVED_MASK
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.state.load(Ordering::Relaxed) & BROKEN != 0
    }

    /// Waits until all parties have arrived, as long as it takes (see
    /// [`Barrier::wait_timeout`]); returns whether this party is the
    /// leader (the last to arrive; exactly one per round).
    pub fn wait(&self) -> Result<bool, BarrierError> {
        self.wait_until(None)
    }

    /// As [`wait`](Barrier::wait), for at most `timeout`; running out
    /// breaks the barrier for every party.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, BarrierError> {
        self.wait_until(Some(&Deadline::after(timeout)))
    }

    /// As [`wait`](Barrier::wait), until `deadline` (forever if `None`).
    pub fn wait_until(&self, deadline: Option<&Deadline>) -> Result<bool, BarrierError> {
        let parties = self.parties();
        if parties == 0 || parties > Self::MAX_PARTIES {
            return Err(BarrierError::InvalidParties(parties));
        }
        let mut state = self.state.load(Ordering::Acquire);
        let mine = loop {
            if state & BROKEN != 0 {
                return Err(BarrierError::Broken);
            }
            let arrived = state & ARRIVED_MASK;
            let gen = generation(state);
            if arrived + 1 >= parties {
                // The last party: release this generation.
                let next = ((gen + 1) & GEN_MASK) << GEN_SHIFT;
                // SYNC POINT: AcqRel: Acquire pairs with every earlier
                // party's Release arrival (we see what they wrote), Release
                // pairs with the waiters' Acquire loads of the new
                // generation (they see what we all wrote).
                match self
                    .state
                    .compare_exchange(state, next, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        futex::wake_all(&self.state);
                        return Ok(true);
                    }
                    Err(s) => state = s,
                }
                continue;
            }
            // SYNC POINT: AcqRel, pairing with the leader as above.
            match self
                .state
                .compare_exchange(state, state + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break gen,
                Err(s) => state = s,
            }
        };
        loop {
            // SYNC POINT: Acquire pairs with the leader's Release.
            let now = self.state.load(Ordering::Acquire);
            let gen = generation(now);
            if gen != mine {
                // Released (one step on), or reset (two steps) meanwhile.
                return if gen == (mine + 1) & GEN_MASK {
                    Ok(false)
                } else {
                    Err(BarrierError::Broken)
                };
            }
            if now & BROKEN != 0 {
                return Err(BarrierError::Broken);
            }
            if deadline.is_some_and(Deadline::has_passed) {
                if self
                    .state
                    .compare_exchange(now, now | BROKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    futex::wake_all(&self.state);
                    return Err(BarrierError::Timeout);
                }
                continue;
            }
            futex::wait(&self.state, now, deadline);
        }
    }

    /// Breaks the barrier: every waiting party, and every later arrival,
    /// gets [`BarrierError::Broken`] until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        self.state.fetch_or(BROKEN, Ordering::AcqRel);
        futex::wake_all(&self.state);
    }

    /// Makes the barrier whole and empty again (a new generation). Parties
    /// waiting at that moment get [`BarrierError::Broken`].
    pub fn reset(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let next = ((generation(state) + 2) & GEN_MASK) << GEN_SHIFT;
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(s) => state = s,
            }
        }
        futex::wake_all(&self.state);
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

// SAFETY: #[repr(C)], atomics only; every bit pattern is valid: any state
// decodes to a count, a generation and a flag, and a party count out of
// range is reported as InvalidParties.
unsafe impl SharedObject for Barrier {
    /// The number of parties.
    type Config = u32;

    unsafe fn init(this: *mut Self, parties: u32) {
        // SAFETY: the caller guarantees `this` is valid and exclusive.
        unsafe { this.write(Barrier::new(parties)) };
    }

    fn check_config(parties: &u32) -> Result<(), LayoutError> {
        if (1..=Barrier::MAX_PARTIES).contains(parties) {
            return Ok(());
        }
        let rule = Rule::Range {
            min: 1,
            max: Barrier::MAX_PARTIES.into(),
        };
        Err(LayoutError::parameter("parties", (*parties).into(), rule))
    }
}

impl ShmObject for Barrier {
    const KIND: Kind = Kind::BARRIER;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn barrier_rounds_between_threads() {
        let b = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..50).map(|_| b.wait().unwrap() as u32).sum::<u32>())
            })
            .collect();
        let mine: u32 = (0..50).map(|_| b.wait().unwrap() as u32).sum();
        let total: u32 = mine + handles.into_iter().map(|h| h.join().unwrap()).sum::<u32>();
        assert_eq!(total, 50, "one leader per round");
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
        let (_g, notified) = g.wait_timeout(Duration::from_millis(10)).unwrap();
        assert!(!notified);
    }
}
