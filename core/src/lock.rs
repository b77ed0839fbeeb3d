//! A futex mutex that works across processes, and survives its owner's
//! death.
//!
//! The lock word is a 32-bit value in the kernel's robust-futex format, so
//! that the owner of a held lock is known by its thread id:
//!
//! | bits | meaning |
//! |---|---|
//! | 0–29 (`TID_MASK`) | thread id of the owner; 0 when unlocked |
//! | 30 (`OWNER_DIED`) | the previous owner died; the state is being repaired |
//! | 31 (`WAITERS`) | someone may be asleep on the word: unlock must wake |
//!
//! A second word holds the owner's *stamp* (its id and start time, see
//! [`crate::liveness`]), written right after the lock is taken.
//!
//! Taking a free lock is one compare-and-swap plus the stamp store;
//! releasing it is a load and a swap, and a `FUTEX_WAKE` system call only if
//! the `WAITERS` bit was set. A thread that finds the lock held spins
//! briefly, then sets `WAITERS` and sleeps. As in std's futex mutex, a thread
//! that acquires after sleeping keeps `WAITERS` set, because it cannot know
//! whether others still sleep; the price is at most one unneeded wake per
//! contended episode.
//!
//! # When the owner dies
//!
//! A sleeper wakes at least every [`OWNER_CHECK_INTERVAL`]. If it was not
//! woken and the lock is still held by the same thread, it asks
//! [`liveness::is_dead`] about the owner. If the
//! owner is gone, the sleeper takes the lock over with `OWNER_DIED` set
//! and its guard says so ([`LockGuard::owner_died`]), as `EOWNERDEAD` does
//! for a robust pthread mutex. The new owner repairs what the lock protects
//! and calls [`LockGuard::mark_consistent`]. If it releases the lock
//! without doing so, the lock becomes *not recoverable*: every later
//! attempt fails with [`LockError::Unrecoverable`] rather than pretending
//! the data is sound. A thread arriving after the death (no one was
//! waiting) finds out within one interval the same way.
//!
//! We chose this over the kernel's robust-futex list: that list is per
//! thread and already owned by glibc, and joining it would mean following
//! pointers stored in shared memory, which a hostile peer could aim
//! anywhere. The price is detection latency (one interval, 50 ms) and the
//! limits listed in [`crate::liveness`].

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::futex::{self, Deadline, WaitOutcome};
use crate::liveness;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::tid::{self, TID_MASK};

/// Set while someone may sleep on the word (`FUTEX_WAITERS`).
const WAITERS: u32 = 0x8000_0000;
/// Set while the owner who took over from a dead one has not yet marked
/// the state consistent (`FUTEX_OWNER_DIED`).
const OWNER_DIED: u32 = 0x4000_0000;
/// The owner field of a lock that can never be taken again: an owner died,
/// and its successor released the lock without repairing the state. No
/// thread id is this large (Linux ids stay below 2^22).
const NOT_RECOVERABLE: u32 = TID_MASK;

/// How long a sleeper waits before asking whether the owner is still alive.
/// Recovery from a dead owner takes at most about this long.
pub const OWNER_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// A mutual-exclusion lock that lives in (shared) memory.
///
/// Zeroed bytes are an unlocked `Lock`. It protects nothing by itself, like
/// Python's `multiprocessing.Lock`: the data it guards lives beside it.
///
/// ```
/// use shmipc_core::Lock;
/// use std::time::Duration;
///
/// let lock = Lock::new();
/// {
///     let guard = lock.lock().unwrap();
///     assert!(!guard.owner_died());
///     // Taking it again from the same thread is reported, not a hang.
///     assert!(lock.lock_timeout(Duration::from_millis(10)).is_err());
/// }
/// assert!(lock.try_lock().is_ok());
/// ```
#[repr(C)]
pub struct Lock {
    word: AtomicU32,
    _reserved: AtomicU32,
    stamp: AtomicU64,
}

/// Why a lock could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// `try_lock` found the lock held.
    WouldBlock,
    /// The timeout passed while the lock was held by someone else.
    Timeout,
    /// The calling thread already holds this lock; waiting would never end.
    Deadlock,
    /// An owner died holding the lock and the thread that took over released
    /// it without marking the protected state consistent.
    Unrecoverable,
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::WouldBlock => "the lock is held by another thread or process",
            LockError::Timeout => "timed out waiting for the lock",
            LockError::Deadlock => "the calling thread already holds this lock",
            LockError::Unrecoverable => {
                "the lock is not recoverable: its owner died and the state it \
                 protects was never marked consistent"
            }
        })
    }
}

impl core::error::Error for LockError {}

impl Lock {
    /// The size of a `Lock` in bytes.
    pub const SIZE: usize = size_of::<Lock>();
    /// The alignment a `Lock` needs.
    pub const ALIGN: usize = align_of::<Lock>();

    /// A new, unlocked lock.
    #[cfg(not(loom))]
    pub const fn new() -> Lock {
        Lock {
            word: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            stamp: AtomicU64::new(0),
        }
    }

    /// A new, unlocked lock.
    #[cfg(loom)]
    pub fn new() -> Lock {
        Lock {
            word: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            stamp: AtomicU64::new(0),
        }
    }

    /// Takes the lock, sleeping as long as it takes.
    ///
    /// If the previous owner died holding it, this thread takes it over and
    /// the guard's [`owner_died`](LockGuard::owner_died) is true. Fails
    /// with [`LockError::Deadlock`] if the calling thread already holds it,
    /// and [`LockError::Unrecoverable`] if an earlier takeover was never
    /// marked consistent.
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError> {
        self.acquire(None)
    }

    /// Takes the lock, or fails with [`LockError::Timeout`] once `timeout`
    /// has passed. Otherwise as [`Lock::lock`].
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockError> {
        self.acquire(Some(&Deadline::after(timeout)))
    }

    /// Takes the lock with an optional absolute deadline.
    #[inline]
    pub fn lock_until(&self, deadline: Option<&Deadline>) -> Result<LockGuard<'_>, LockError> {
        self.acquire(deadline)
    }

    /// Takes the lock if that needs no waiting, else fails with
    /// [`LockError::WouldBlock`] (or [`LockError::Deadlock`] if the calling
    /// thread holds it). It does not check whether a holder is alive; the
    /// waiting calls do.
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, LockError> {
        let tid = tid::current();
        let mut state = self.word.load(Ordering::Relaxed);
        loop {
            let owner = state & TID_MASK;
            if owner == NOT_RECOVERABLE {
                return Err(LockError::Unrecoverable);
            }
            if owner == tid {
                return Err(LockError::Deadlock);
            }
            if owner != 0 {
                return Err(LockError::WouldBlock);
            }
            // Keep the flag bits: a sleeper's WAITERS bit must survive, or
            // its wake-up would be lost; an OWNER_DIED bit with no owner
            // means the owner died and we inherit the repair.
            // SYNC POINT: Acquire pairs with the Release in `unlock`.
            match self.word.compare_exchange_weak(
                state,
                state | tid,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(self.acquired(state & OWNER_DIED != 0)),
                Err(s) => state = s,
            }
        }
    }

    #[inline]
    fn acquire(&self, deadline: Option<&Deadline>) -> Result<LockGuard<'_>, LockError> {
        let tid = tid::current();
        // SYNC POINT: this Acquire pairs with the Release swap in `unlock`,
        // so everything the previous owner wrote is visible to us.
        if self
            .word
            .compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(self.acquired(false));
        }
        let owner_died = self.acquire_contended(tid, deadline)?;
        Ok(self.acquired(owner_died))
    }

    /// Records our stamp and builds the guard, once the word is ours.
    #[inline]
    fn acquired(&self, owner_died: bool) -> LockGuard<'_> {
        self.stamp.store(tid::current_stamp(), Ordering::Relaxed);
        LockGuard::new(self, owner_died)
    }

    /// The slow path; returns whether the previous owner died.
    #[cold]
    fn acquire_contended(&self, tid: u32, deadline: Option<&Deadline>) -> Result<bool, LockError> {
        let mut state = self.spin();
        loop {
            let owner = state & TID_MASK;
            if owner == 0 {
                // Free. Take it with WAITERS set: we cannot know whether
                // others are still asleep, so our unlock must wake one.
                // SYNC POINT: Acquire pairs with the Release in `unlock`.
                match self.word.compare_exchange(
                    state,
                    tid | WAITERS | (state & OWNER_DIED),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(state & OWNER_DIED != 0),
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if owner == NOT_RECOVERABLE {
                return Err(LockError::Unrecoverable);
            }
            if owner == tid {
                return Err(LockError::Deadlock);
            }
            if state & WAITERS == 0 {
                // Announce that we are about to sleep, so the owner's unlock
                // wakes us. If the word moved meanwhile, look again.
                if let Err(s) = self.word.compare_exchange(
                    state,
                    state | WAITERS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    state = s;
                    continue;
                }
            }
            // Sleep at most one check interval, so a dead owner is noticed.
            let check = Deadline::after(OWNER_CHECK_INTERVAL);
            let slice = match deadline {
                Some(d) if *d < check => d,
                _ => &check,
            };
            let outcome = futex::wait(&self.word, state | WAITERS, Some(slice));
            if deadline.is_some_and(Deadline::has_passed) {
                // One last look: the lock may have been released just now.
                state = self.word.load(Ordering::Relaxed);
                if state & TID_MASK != 0 {
                    return Err(LockError::Timeout);
                }
                continue;
            }
            if outcome == WaitOutcome::TimedOut {
                // Held, unwoken, for a whole interval: is the owner alive?
                let seen = self.word.load(Ordering::Relaxed);
                if seen & TID_MASK == owner {
                    if let Some(died) = self.take_over_from_dead(seen, tid) {
                        return Ok(died);
                    }
                }
                state = seen;
                continue;
            }
            state = self.spin();
        }
    }

    /// If the owner recorded in `state` is dead, takes the lock over with
    /// `OWNER_DIED` set and returns `Some(true)`; `None` if the owner lives
    /// or someone else changed the word first.
    #[cold]
    fn take_over_from_dead(&self, state: u32, tid: u32) -> Option<bool> {
        let owner = state & TID_MASK;
        if owner == 0 || owner == NOT_RECOVERABLE {
            return None;
        }
        if !liveness::is_dead(owner, self.stamp.load(Ordering::Relaxed)) {
            return None;
        }
        // Keep WAITERS: others may sleep too, and our unlock must wake them.
        // SYNC POINT: Acquire pairs with whatever Release the dead owner
        // made; what it wrote without one may be half done, which is what
        // the OWNER_DIED report is for.
        self.word
            .compare_exchange(
                state,
                tid | WAITERS | OWNER_DIED,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| true)
    }

    /// Spins while the lock is held and nobody sleeps on it yet; returns the
    /// last state seen.
    #[inline]
    fn spin(&self) -> u32 {
        let mut state = self.word.load(Ordering::Relaxed);
        futex::spin_until(|| {
            state = self.word.load(Ordering::Relaxed);
            state & TID_MASK == 0 || state & WAITERS != 0
        });
        state
    }

    /// Releases the lock. If it was taken over from a dead owner and not
    /// marked consistent, it becomes not recoverable instead.
    ///
    /// # Safety
    ///
    /// The calling thread holds the lock, and the guard that proved it was
    /// forgotten (see [`LockGuard::leak`]).
    #[inline]
    pub unsafe fn unlock(&self) {
        // Only the owner clears OWNER_DIED, so this load cannot be stale on
        // that bit; others may only add WAITERS, which the swap below keeps
        // track of.
        if self.word.load(Ordering::Relaxed) & OWNER_DIED != 0 {
            self.make_unrecoverable();
            return;
        }
        // SYNC POINT: Release pairs with the Acquire compare-and-swap of the
        // next owner in `acquire`, `acquire_contended` or `try_lock`.
        let state = self.word.swap(0, Ordering::Release);
        if state & WAITERS != 0 {
            self.wake_waiter();
        }
    }

    #[cold]
    fn make_unrecoverable(&self) {
        // SYNC POINT: Release pairs with the Acquire loads of waiters that
        // then report Unrecoverable.
        self.word
            .store(NOT_RECOVERABLE | OWNER_DIED, Ordering::Release);
        futex::wake_all(&self.word);
    }

    #[cold]
    fn wake_waiter(&self) {
        futex::wake_one(&self.word);
    }

    /// Whether someone holds the lock right now (a snapshot). A lock that is
    /// not recoverable counts as held.
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & TID_MASK != 0
    }

    /// Whether the lock can never be taken again (see
    /// [`LockError::Unrecoverable`]).
    pub fn is_unrecoverable(&self) -> bool {
        self.word.load(Ordering::Relaxed) & TID_MASK == NOT_RECOVERABLE
    }

    /// The thread id of the current owner, if any (a snapshot).
    pub fn owner(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & TID_MASK {
            0 | NOT_RECOVERABLE => None,
            tid => Some(tid),
        }
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("owner", &self.owner())
            .field("unrecoverable", &self.is_unrecoverable())
            .finish()
    }
}

// SAFETY: Lock is #[repr(C)] and made of atomics only, and every bit
// pattern is a valid lock (an unknown owner id is a held lock, whose owner
// is checked for liveness; an owner id of all ones is not recoverable).
#[cfg(not(loom))]
unsafe impl crate::place::SharedObject for Lock {
    type Config = ();

    unsafe fn init(this: *mut Self, _config: ()) {
        // SAFETY: the caller guarantees `this` is valid and exclusive.
        unsafe { this.write(Lock::new()) };
    }
}

/// Proof that the lock is held; dropping it releases the lock.
///
/// The guard is not `Send`: the lock word names the owning thread, so the
/// thread that took the lock is the one that releases it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard between threads only shares `&Lock`, which is Sync.
unsafe impl Sync for LockGuard<'_> {}

impl<'a> LockGuard<'a> {
    fn new(lock: &'a Lock, owner_died: bool) -> Self {
        LockGuard {
            lock,
            owner_died,
            _not_send: PhantomData,
        }
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }

    /// Whether the previous owner died holding the lock (`EOWNERDEAD`).
    ///
    /// The state the lock protects may be half-updated. Repair it, then call
    /// [`mark_consistent`](Self::mark_consistent); if this guard is dropped
    /// first, the lock becomes not recoverable.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Declares the protected state repaired after an owner's death, so the
    /// lock stays usable once this guard is dropped. Does nothing if the
    /// previous owner did not die.
    pub fn mark_consistent(&mut self) {
        if self.owner_died {
            self.lock.word.fetch_and(!OWNER_DIED, Ordering::Relaxed);
            self.owner_died = false;
        }
    }

    /// Keeps the lock held without a guard; release it later with
    /// [`Lock::unlock`].
    pub fn leak(self) -> &'a Lock {
        let lock = self.lock;
        core::mem::forget(self);
        lock
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard exists only while this thread holds the lock.
        unsafe { self.lock.unlock() };
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("owner_died", &self.owner_died)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::place::{LayoutError, SharedObject};
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn zeroed_bytes_are_an_unlocked_lock() {
        let mut buf = [0u64; 2];
        let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        assert!(!lock.is_locked());
        let g = lock.try_lock().unwrap();
        assert!(lock.is_locked());
        assert_eq!(lock.owner(), Some(tid::current()));
        drop(g);
        assert_eq!(lock.owner(), None);
    }

    #[test]
    fn misaligned_or_short_bytes_are_errors() {
        let mut buf = [0u64; 3];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        assert!(matches!(
            Lock::from_bytes_mut(&mut bytes[4..]),
            Err(LayoutError::Misaligned { required: 8, .. })
        ));
        assert!(matches!(
            Lock::from_bytes_mut(&mut bytes[..15]),
            Err(LayoutError::TooSmall {
                required: 16,
                available: 15
            })
        ));
    }

    #[test]
    fn relocking_from_the_owner_is_a_deadlock_error() {
        let lock = Lock::new();
        let _g = lock.lock().unwrap();
        assert_eq!(lock.try_lock().unwrap_err(), LockError::Deadlock);
        assert_eq!(lock.lock().unwrap_err(), LockError::Deadlock);
    }

    #[test]
    fn timeout_while_another_thread_holds_it() {
        let lock = Arc::new(Lock::new());
        let g = lock.lock().unwrap();
        let l2 = lock.clone();
        let r = std::thread::spawn(move || l2.lock_timeout(Duration::from_millis(20)).map(drop))
            .join()
            .unwrap();
        assert_eq!(r, Err(LockError::Timeout));
        drop(g);
    }

    #[test]
    fn threads_exclude_each_other() {
        let threads = 4;
        let rounds = if cfg!(miri) { 50 } else { 20_000 };
        let lock = Arc::new(Lock::new());
        // A plain counter in a Cell-like word updated with relaxed
        // load+store: correct only under mutual exclusion.
        let counter = Arc::new(crate::sync::AtomicU32::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        let _g = lock.lock().unwrap();
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(v + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), threads * rounds);
        assert!(!lock.is_locked());
    }

    /// Bytes holding a lock word that names `owner` (and its stamp).
    fn lock_word(owner: u32, stamp: u64) -> [u64; 2] {
        [u64::from(owner), stamp]
    }

    #[test]
    fn a_live_foreign_owner_makes_waiters_time_out() {
        // A thread that stays alive while we look at its "held" lock.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (id_tx, id_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            id_tx.send((tid::current(), tid::current_stamp())).unwrap();
            rx.recv().unwrap();
        });
        let (owner, stamp) = id_rx.recv().unwrap();
        let mut buf = lock_word(owner, stamp);
        let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        assert_eq!(lock.try_lock().unwrap_err(), LockError::WouldBlock);
        let wait = if cfg!(miri) { 5 } else { 120 }; // more than one check interval
        assert_eq!(
            lock.lock_timeout(Duration::from_millis(wait)).unwrap_err(),
            LockError::Timeout
        );
        assert_eq!(lock.owner(), Some(owner));
        tx.send(()).unwrap();
        holder.join().unwrap();
    }

    #[cfg(not(miri))]
    fn dead_thread() -> (u32, u64) {
        std::thread::spawn(|| (tid::current(), tid::current_stamp()))
            .join()
            .unwrap()
    }

    #[cfg(not(miri))]
    #[test]
    fn a_dead_owner_is_taken_over_and_repaired() {
        let (owner, stamp) = dead_thread();
        let mut buf = lock_word(owner, stamp);
        let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        let mut guard = lock.lock_timeout(Duration::from_secs(5)).unwrap();
        assert!(guard.owner_died());
        assert_eq!(lock.owner(), Some(tid::current()));
        guard.mark_consistent();
        assert!(!guard.owner_died());
        drop(guard);
        let guard = lock.try_lock().unwrap();
        assert!(!guard.owner_died(), "repaired: the lock is ordinary again");
    }

    #[cfg(not(miri))]
    #[test]
    fn a_takeover_left_unrepaired_makes_the_lock_unrecoverable() {
        let (owner, stamp) = dead_thread();
        let mut buf = lock_word(owner, stamp);
        let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        let guard = lock.lock().unwrap();
        assert!(guard.owner_died());
        drop(guard);
        assert!(lock.is_unrecoverable());
        assert_eq!(lock.try_lock().unwrap_err(), LockError::Unrecoverable);
        assert_eq!(lock.lock().unwrap_err(), LockError::Unrecoverable);
        assert_eq!(lock.owner(), None);
    }

    #[cfg(not(miri))]
    #[test]
    fn a_reused_thread_id_does_not_pass_for_the_dead_owner() {
        // The word names a live thread (us, from another "incarnation"),
        // but the stamp's start time is not ours: the recorded owner is a
        // different, dead thread that happened to have our id.
        let me = tid::current();
        let forged = crate::liveness::make_stamp(me, (tid::current_stamp() & 0xffff_ffff) + 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let mut buf = lock_word(me, forged);
            let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
            let got = lock
                .lock_timeout(Duration::from_secs(5))
                .map(|g| g.owner_died());
            tx.send(got).unwrap();
        });
        assert_eq!(rx.recv().unwrap(), Ok(true));
        t.join().unwrap();
    }

    #[test]
    fn a_free_word_with_owner_died_reports_it() {
        // What the kernel's robust-futex cleanup leaves: no owner, OWNER_DIED.
        let mut buf = lock_word(OWNER_DIED, 0);
        let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        let mut g = lock.try_lock().unwrap();
        assert!(g.owner_died());
        g.mark_consistent();
    }

    #[test]
    fn hostile_not_recoverable_word_is_an_error() {
        let mut buf = lock_word(NOT_RECOVERABLE | OWNER_DIED | WAITERS, 0);
        let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        assert_eq!(lock.try_lock().unwrap_err(), LockError::Unrecoverable);
        assert_eq!(
            lock.lock_timeout(Duration::from_millis(5)).unwrap_err(),
            LockError::Unrecoverable
        );
    }
}
