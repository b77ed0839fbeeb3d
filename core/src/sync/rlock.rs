//! A re-entrant lock (Python's `RLock`): a [`Lock`] plus a depth.
//!
//! | field | meaning |
//! |---|---|
//! | `lock` | the [`Lock`]: its word names the owning process, its stamp the owning thread |
//! | `depth` | how many guards the owning thread holds; written by the owner only, 0 when free |
//!
//! The owning thread is recognised by the lock's thread stamp, which only
//! the owner writes (after taking the lock) and clears (before releasing
//! it): a thread that finds its own stamp there holds the lock, so it only
//! increments `depth`, and no other thread ever does. Every other thread,
//! and every other process, takes the inner lock and waits for the last
//! release.
//!
//! `depth` needs no ordering of its own: the owner writes it between the
//! inner lock's Acquire (taking it) and Release (freeing it), and the next
//! owner writes it again only after its own Acquire.
//!
//! An owner that dies holding the lock, at any depth, is taken over as the
//! [`Lock`] takes over a dead owner: the new owner's guard reports
//! [`owner_died`](RLockGuard::owner_died) at depth 1 (the dead owner's
//! depth is forgotten), and the lock is not recoverable if that guard's
//! hold ends without [`mark_consistent`](RLockGuard::mark_consistent).
//! A forked child that inherits guards holds nothing: its thread stamp is
//! another, so its copies release nothing and its own attempts wait.

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::futex::Deadline;
use crate::peers::{self, Peers};
use crate::sync::lock::{Lock, LockError, LockGuard, Owner};
use crate::sync::{AtomicU32, Ordering};
use crate::tid;

/// A re-entrant mutual-exclusion lock that lives in (shared) memory.
///
/// Zeroed bytes are a free `RLock`. The thread that holds it may take it
/// again; it is free once every guard is dropped.
///
/// ```
/// use shmipc_core::{LockError, RLock};
///
/// let lock = RLock::new();
/// let outer = lock.lock().unwrap();
/// let inner = lock.lock().unwrap(); // the same thread: no deadlock
/// assert_eq!(inner.depth(), 2);
/// std::thread::scope(|s| {
///     s.spawn(|| assert_eq!(lock.try_lock().unwrap_err(), LockError::WouldBlock));
/// });
/// drop(inner);
/// drop(outer);
/// assert!(!lock.is_locked());
/// ```
#[repr(C)]
pub struct RLock {
    lock: Lock,
    depth: AtomicU32,
    _reserved: AtomicU32,
}

impl RLock {
    /// The size of an `RLock` in bytes.
    pub const SIZE: usize = size_of::<RLock>();
    /// The alignment an `RLock` needs.
    pub const ALIGN: usize = align_of::<RLock>();

    /// A new, free lock.
    #[cfg(not(loom))]
    pub const fn new() -> RLock {
        RLock {
            lock: Lock::new(),
            depth: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }

    /// A new, free lock.
    #[cfg(loom)]
    pub fn new() -> RLock {
        RLock {
            lock: Lock::new(),
            depth: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }

    /// Takes the lock, sleeping as long as it takes; the owning thread
    /// takes it again at once. As [`Lock::lock`] otherwise (a dead owner is
    /// taken over, [`LockError::Unrecoverable`] after an unrepaired
    /// takeover).
    #[inline]
    pub fn lock(&self) -> Result<RLockGuard<'_>, LockError> {
        self.lock_until(None)
    }

    /// Takes the lock, or fails with [`LockError::Timeout`] once `timeout`
    /// has passed. `Duration::MAX` waits for ever.
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RLockGuard<'_>, LockError> {
        self.lock_until(Some(&Deadline::after(timeout)))
    }

    /// Takes the lock with an optional absolute deadline.
    #[inline]
    pub fn lock_until(&self, deadline: Option<&Deadline>) -> Result<RLockGuard<'_>, LockError> {
        self.lock_until_with(self.peers(), deadline)
    }

    /// [`RLock::lock_until`] as the given peers' member (see
    /// [`Lock::lock_until_with`]).
    pub fn lock_until_with(
        &self,
        peers: &dyn Peers,
        deadline: Option<&Deadline>,
    ) -> Result<RLockGuard<'_>, LockError> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        let guard = self.lock.lock_until_with(peers, deadline)?;
        Ok(self.first(guard))
    }

    /// Takes the lock if that needs no waiting (or the calling thread holds
    /// it), else fails with [`LockError::WouldBlock`].
    #[inline]
    pub fn try_lock(&self) -> Result<RLockGuard<'_>, LockError> {
        if let Some(g) = self.reenter() {
            return Ok(g);
        }
        let guard = self.lock.try_lock_with(self.peers())?;
        Ok(self.first(guard))
    }

    fn peers(&self) -> &dyn Peers {
        peers::resolve(self as *const RLock as usize)
    }

    /// If the calling thread holds the lock: one level deeper.
    #[inline]
    fn reenter(&self) -> Option<RLockGuard<'_>> {
        if !self.lock.held_by_caller() {
            return None;
        }
        // Only the owner writes `depth` (see the module documentation). A
        // hostile peer's value saturates rather than wraps: the lock then
        // stays held by us, which that peer could cause anyway.
        let d = self.depth.load(Ordering::Relaxed);
        self.depth.store(d.saturating_add(1), Ordering::Relaxed);
        Some(RLockGuard::new(self, false))
    }

    /// The first level, once the inner lock is ours: its guard is leaked
    /// (the last level's release unlocks it).
    #[inline]
    fn first(&self, inner: LockGuard<'_>) -> RLockGuard<'_> {
        let owner_died = inner.owner_died();
        inner.leak();
        self.depth.store(1, Ordering::Relaxed);
        RLockGuard::new(self, owner_died)
    }

    /// One level less; at the last, releases the inner lock.
    #[inline]
    fn release(&self) {
        let d = self.depth.load(Ordering::Relaxed);
        if d > 1 {
            self.depth.store(d - 1, Ordering::Relaxed);
            return;
        }
        self.depth.store(0, Ordering::Relaxed);
        // SAFETY: the caller (a guard whose stamp is this thread's) holds
        // the inner lock, whose guard was leaked in `lock_until_with` or
        // `try_lock`.
        unsafe { self.lock.unlock() };
    }

    /// Whether someone holds the lock (a snapshot; a lock that is not
    /// recoverable counts as held).
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// Whether the lock can never be taken again (see
    /// [`LockError::Unrecoverable`]).
    pub fn is_unrecoverable(&self) -> bool {
        self.lock.is_unrecoverable()
    }

    /// The current owner, if any (a snapshot; see [`Lock::owner`]).
    pub fn owner(&self) -> Option<Owner> {
        self.lock.owner()
    }
}

impl Default for RLock {
    fn default() -> Self {
        RLock::new()
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock")
            .field("owner", &self.owner())
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .finish()
    }
}

// SAFETY: RLock is #[repr(C)] and made of atomics only, and every bit
// pattern is a valid lock: the inner Lock accepts any bits (see its
// impl), and any depth is one its owner counts down from.
#[cfg(not(loom))]
unsafe impl crate::place::SharedObject for RLock {
    type Config = ();

    unsafe fn init(this: *mut Self, _config: ()) {
        // SAFETY: the caller guarantees `this` is valid and exclusive.
        unsafe { this.write(RLock::new()) };
    }
}

/// One level of an [`RLock`]'s hold; dropping the last releases the lock.
///
/// Not `Send`: the thread that took the lock releases it.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    lock: &'a RLock,
    stamp: u64,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard between threads only shares `&RLock`, which is Sync.
unsafe impl Sync for RLockGuard<'_> {}

impl<'a> RLockGuard<'a> {
    fn new(lock: &'a RLock, owner_died: bool) -> Self {
        RLockGuard {
            lock,
            stamp: tid::thread_stamp(),
            owner_died,
            _not_send: PhantomData,
        }
    }

    /// The lock this guard holds a level of.
    pub fn lock(&self) -> &'a RLock {
        self.lock
    }

    /// How many levels the owning thread holds now.
    pub fn depth(&self) -> u32 {
        self.lock.depth.load(Ordering::Relaxed)
    }

    /// Whether this guard took the lock over from an owner that died
    /// holding it (only the first level can). Repair the protected state,
    /// then call [`mark_consistent`](Self::mark_consistent); if the hold
    /// ends first, the lock becomes not recoverable.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }

    /// Declares the protected state repaired after an owner's death. Does
    /// nothing if the previous owner did not die.
    pub fn mark_consistent(&mut self) {
        if self.owner_died {
            self.lock.lock.mark_consistent_held();
            self.owner_died = false;
        }
    }
}

impl Drop for RLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // The guard's own stamp, as for a LockGuard: a forked child's copy
        // releases nothing.
        if self.stamp == tid::thread_stamp() && self.lock.lock.held_by_caller() {
            self.lock.release();
        }
    }
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("depth", &self.depth())
            .field("owner_died", &self.owner_died)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::peers::testing::TestPeers;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn zeroed_bytes_are_a_free_rlock() {
        use crate::place::SharedObject;
        let mut buf = [0u64; 3];
        let lock = RLock::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        assert!(!lock.is_locked());
        let g = lock.try_lock().unwrap();
        assert_eq!(g.depth(), 1);
    }

    #[test]
    fn depth_counts_levels_and_the_last_release_frees_it() {
        let lock = RLock::new();
        let guards: Vec<_> = (0..5).map(|_| lock.lock().unwrap()).collect();
        assert_eq!(guards[4].depth(), 5);
        let mut guards = guards;
        while let Some(g) = guards.pop() {
            assert!(lock.is_locked());
            drop(g);
        }
        assert!(!lock.is_locked());
        assert_eq!(lock.depth.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn threads_exclude_each_other_while_reentering() {
        const ROUNDS: u32 = if cfg!(miri) { 20 } else { 500 };
        let lock = Arc::new(RLock::new());
        let counter = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        let _a = lock.lock().unwrap();
                        let v = counter.load(Ordering::Relaxed);
                        let _b = lock.lock().unwrap();
                        std::thread::yield_now();
                        counter.store(v + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 4 * ROUNDS);
    }

    #[cfg(not(miri))]
    #[test]
    fn a_dead_owner_at_depth_three_is_taken_over_at_depth_one() {
        let holder = TestPeers::new(1);
        let lock = RLock::new();
        for _ in 0..3 {
            lock.lock_until_with(&holder, None).unwrap().leak_for_test();
        }
        assert_eq!(lock.depth.load(Ordering::Relaxed), 3);
        // Another thread, of a peer that sees the holder dead, takes over.
        std::thread::scope(|s| {
            s.spawn(|| {
                let me = TestPeers::new(2);
                me.kill_others();
                let deadline = Deadline::after(Duration::from_secs(5));
                let mut g = lock.lock_until_with(&me, Some(&deadline)).unwrap();
                assert!(g.owner_died());
                assert_eq!(g.depth(), 1);
                let inner = lock.try_lock().unwrap();
                assert!(!inner.owner_died());
                assert_eq!(inner.depth(), 2);
                drop(inner);
                g.mark_consistent();
            });
        });
        assert!(!lock.is_locked());
        assert!(!lock.is_unrecoverable());
    }

    impl RLockGuard<'_> {
        fn leak_for_test(self) {
            core::mem::forget(self);
        }
    }
}
