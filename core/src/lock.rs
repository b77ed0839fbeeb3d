//! A futex mutex that works across processes.
//!
//! The lock is one 32-bit word in the kernel's robust-futex format, so that
//! the owner of a held lock is known by its thread id:
//!
//! | bits | meaning |
//! |---|---|
//! | 0–29 (`TID_MASK`) | thread id of the owner; 0 when unlocked |
//! | 30 (`OWNER_DIED`) | reserved for owner-death recovery |
//! | 31 (`WAITERS`) | someone may be asleep on the word: unlock must wake |
//!
//! Taking a free lock is one compare-and-swap; releasing it is one swap, and
//! a `FUTEX_WAKE` system call only if the `WAITERS` bit was set. A thread
//! that finds the lock held spins briefly, then sets `WAITERS` and sleeps.
//! As in std's futex mutex, a thread that acquires after sleeping keeps
//! `WAITERS` set, because it cannot know whether others still sleep; the
//! price is at most one unneeded wake per contended episode.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::futex::{self, Deadline, WaitOutcome};
use crate::sync::{AtomicU32, Ordering};
use crate::tid::{self, TID_MASK};

/// Set while someone may sleep on the word (`FUTEX_WAITERS`).
const WAITERS: u32 = 0x8000_0000;

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
///     let _guard = lock.lock().unwrap();
///     // Taking it again from the same thread is reported, not a hang.
///     assert!(lock.lock_timeout(Duration::from_millis(10)).is_err());
/// }
/// assert!(lock.try_lock().is_ok());
/// ```
#[repr(C)]
pub struct Lock {
    word: AtomicU32,
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
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockError::WouldBlock => "the lock is held by another thread or process",
            LockError::Timeout => "timed out waiting for the lock",
            LockError::Deadlock => "the calling thread already holds this lock",
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
        }
    }

    /// A new, unlocked lock.
    #[cfg(loom)]
    pub fn new() -> Lock {
        Lock {
            word: AtomicU32::new(0),
        }
    }

    /// Takes the lock, sleeping as long as it takes.
    ///
    /// Fails only with [`LockError::Deadlock`] if the calling thread already
    /// holds it.
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError> {
        self.acquire(None)
    }

    /// Takes the lock, or fails with [`LockError::Timeout`] once `timeout`
    /// has passed.
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockError> {
        self.acquire(Some(&Deadline::after(timeout)))
    }

    /// Takes the lock if that needs no waiting, else fails with
    /// [`LockError::WouldBlock`] (or [`LockError::Deadlock`] if the calling
    /// thread holds it).
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, LockError> {
        let tid = tid::current();
        let mut state = self.word.load(Ordering::Relaxed);
        loop {
            if state & TID_MASK == tid {
                return Err(LockError::Deadlock);
            }
            if state & TID_MASK != 0 {
                return Err(LockError::WouldBlock);
            }
            // Keep whatever flag bits are set (a sleeper's WAITERS bit must
            // survive, or its wake-up would be lost).
            match self.word.compare_exchange_weak(
                state,
                state | tid,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(LockGuard::new(self)),
                Err(s) => state = s,
            }
        }
    }

    /// Takes the lock with an optional absolute deadline.
    #[inline]
    pub fn lock_until(&self, deadline: Option<&Deadline>) -> Result<LockGuard<'_>, LockError> {
        self.acquire(deadline)
    }

    #[inline]
    fn acquire(&self, deadline: Option<&Deadline>) -> Result<LockGuard<'_>, LockError> {
        let tid = tid::current();
        // SYNC POINT: this Acquire pairs with the Release swap in `unlock`,
        // so everything the previous owner wrote is visible to us.
        if self
            .word
            .compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.acquire_contended(tid, deadline)?;
        }
        Ok(LockGuard::new(self))
    }

    #[cold]
    fn acquire_contended(&self, tid: u32, deadline: Option<&Deadline>) -> Result<(), LockError> {
        let mut state = self.spin();
        loop {
            let owner = state & TID_MASK;
            if owner == 0 {
                // Free. Take it with WAITERS set: we cannot know whether
                // others are still asleep, so our unlock must wake one.
                // SYNC POINT: Acquire pairs with the Release in `unlock`.
                match self.word.compare_exchange(
                    state,
                    tid | WAITERS | (state & !TID_MASK),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(()),
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
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
            if futex::wait(&self.word, state | WAITERS, deadline) == WaitOutcome::TimedOut {
                return Err(LockError::Timeout);
            }
            if deadline.is_some_and(Deadline::has_passed) {
                // One last look: the lock may have been released just now.
                state = self.word.load(Ordering::Relaxed);
                if state & TID_MASK != 0 {
                    return Err(LockError::Timeout);
                }
                continue;
            }
            state = self.spin();
        }
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

    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// The calling thread holds the lock, and the guard that proved it was
    /// forgotten (see [`LockGuard::leak`]).
    #[inline]
    pub unsafe fn unlock(&self) {
        // SYNC POINT: Release pairs with the Acquire compare-and-swap of the
        // next owner in `acquire`, `acquire_contended` or `try_lock`.
        let state = self.word.swap(0, Ordering::Release);
        if state & WAITERS != 0 {
            self.wake_waiter();
        }
    }

    #[cold]
    fn wake_waiter(&self) {
        futex::wake_one(&self.word);
    }

    /// Whether someone holds the lock right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) & TID_MASK != 0
    }

    /// The thread id of the current owner, if any (a snapshot).
    pub fn owner(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & TID_MASK {
            0 => None,
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
            .finish()
    }
}

// SAFETY: Lock is #[repr(C)], a single AtomicU32, and every u32 is a valid
// lock word (an unknown owner id is just a held lock).
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
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard between threads only shares `&Lock`, which is Sync.
unsafe impl Sync for LockGuard<'_> {}

impl<'a> LockGuard<'a> {
    fn new(lock: &'a Lock) -> Self {
        LockGuard {
            lock,
            _not_send: PhantomData,
        }
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
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
        f.debug_struct("LockGuard").finish_non_exhaustive()
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
        let mut buf = [0u32; 2];
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
        let mut buf = [0u32; 2];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        assert!(matches!(
            Lock::from_bytes_mut(&mut bytes[1..]),
            Err(LayoutError::Misaligned { required: 4, .. })
        ));
        assert!(matches!(
            Lock::from_bytes_mut(&mut bytes[..3]),
            Err(LayoutError::TooSmall {
                required: 4,
                available: 3
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

    #[test]
    fn hostile_word_with_a_foreign_owner_times_out() {
        let mut buf = [0u32; 1];
        buf[0] = 0x3fff_fffe; // an owner that is not us
        let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        assert_eq!(
            lock.lock_timeout(Duration::from_millis(5)).unwrap_err(),
            LockError::Timeout
        );
        assert_eq!(lock.try_lock().unwrap_err(), LockError::WouldBlock);
    }
}
