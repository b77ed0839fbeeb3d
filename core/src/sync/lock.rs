//! A futex mutex that works across processes, and survives its owner's
//! death.
//!
//! The lock is 16 bytes:
//!
//! | word | bits | meaning |
//! |---|---|---|
//! | `word` | 0–29 | the owner's [`Token`]: its identity among the peers of the mapping; 0 when unlocked |
//! | `word` | 30 (`OWNER_DIED`) | the previous owner died; the state is being repaired |
//! | `word` | 31 (`WAITERS`) | someone may be asleep on the word: unlock must wake |
//! | `tid` | all | the owner's kernel thread id as its own pid namespace numbers it (for people; 0 when unlocked) |
//! | `stamp` | all | the owner's thread stamp (a per-process random nonce and a per-process thread number, `core/src/sys/tid.rs`); 0 when unlocked |
//!
//! The word keeps the kernel's robust-futex bit layout (`FUTEX_WAITERS`,
//! `FUTEX_OWNER_DIED`, `FUTEX_TID_MASK`), but the owner field holds a
//! token, not a thread id: thread ids differ between pid namespaces and are
//! reused, so they can neither name an owner across a container boundary
//! nor prove it dead. The token comes from the mapping's peers
//! ([`crate::peers`]), found from the lock's own address
//! ([`crate::peers::resolve`]) or passed in (`*_with`).
//!
//! Taking a free lock is one compare-and-swap `0 -> token` and two stores
//! (`tid`, `stamp`); releasing it is two stores and a swap, and a
//! `FUTEX_WAKE` system call only if the `WAITERS` bit was set. A thread that
//! finds the lock held spins briefly, then sets `WAITERS` and sleeps. As in
//! std's futex mutex, a thread that acquires after sleeping keeps `WAITERS`
//! set, because it cannot know whether others still sleep; the price is at
//! most one unneeded wake per contended episode. A waiter that gives up
//! (its timeout passed) after an unlock cleared `WAITERS` passes a wake on,
//! so the sleepers behind it are never stranded.
//!
//! The stamp says which *thread* holds the lock: relocking from the owning
//! thread is [`LockError::Deadlock`] rather than a hang, and only the
//! owning thread's unlock releases it — a forked child that drops a guard
//! it inherited (its stamp is another) releases nothing. The stamp is
//! cleared before the release, and written by the owner only, so no thread
//! ever reads its own stamp for a lock it does not hold.
//!
//! # When the owner dies
//!
//! A sleeper wakes at least every [`OWNER_CHECK_INTERVAL`]. If it was not
//! woken and the word still names the same owner, it asks the peers for
//! the owner's [`Fate`](crate::peers::Fate). Only if the owner is dead on
//! evidence (its peer slot's kernel lock is gone, whatever its pid
//! namespace) does the sleeper take the lock over with `OWNER_DIED` set;
//! its guard says so ([`LockGuard::owner_died`]), as `EOWNERDEAD` does for
//! a robust pthread mutex. An owner that cannot be judged counts as alive.
//! The new owner repairs what the lock protects and calls
//! [`LockGuard::mark_consistent`]. If it releases the lock without doing
//! so, the lock becomes *not recoverable*: every later attempt fails with
//! [`LockError::Unrecoverable`] rather than pretending the data is sound. A
//! thread arriving after the death (no one was waiting) finds out within
//! one interval the same way.
//!
//! Death is a process's: a thread that exits while its process lives, with
//! a guard it leaked (`mem::forget`), leaves the lock held until the
//! process ends.
//!
//! We chose this over the kernel's robust-futex list: that list is per
//! thread and already owned by glibc, and joining it would mean following
//! pointers stored in shared memory, which a hostile peer could aim
//! anywhere. The price is detection latency (one interval, 50 ms).

use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::futex::{self, Deadline, WaitOutcome};
use crate::peers::{self, Peers, Token};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::tid::{self, TID_MASK};

/// Set while someone may sleep on the word (`FUTEX_WAITERS`).
const WAITERS: u32 = 0x8000_0000;
/// Set while the owner who took over from a dead one has not yet marked
/// the state consistent (`FUTEX_OWNER_DIED`).
const OWNER_DIED: u32 = 0x4000_0000;
/// The owner field of a lock that can never be taken again: an owner died,
/// and its successor released the lock without repairing the state. No
/// token is this value (its slot field is reserved).
const NOT_RECOVERABLE: u32 = TID_MASK;
const _: () = assert!(Token::MASK == TID_MASK && Token::from_raw(NOT_RECOVERABLE).is_none());

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
    tid: AtomicU32,
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

/// Who holds a lock, as its words say (a snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// The owner's token among the mapping's peers.
    pub token: Token,
    /// The owner's kernel thread id in its own pid namespace, 0 if not yet
    /// written (the owner has just taken the lock).
    pub tid: u32,
    /// Whether the owner took the lock over from a dead one and has not yet
    /// marked the state consistent.
    pub repairing: bool,
}

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
            tid: AtomicU32::new(0),
            stamp: AtomicU64::new(0),
        }
    }

    /// A new, unlocked lock.
    #[cfg(loom)]
    pub fn new() -> Lock {
        Lock {
            word: AtomicU32::new(0),
            tid: AtomicU32::new(0),
            stamp: AtomicU64::new(0),
        }
    }

    /// The peers of the mapping this lock lives in.
    #[inline]
    fn peers(&self) -> &dyn Peers {
        peers::resolve(self as *const Lock as usize)
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
        self.acquire(self.peers(), None)
    }

    /// Takes the lock, or fails with [`LockError::Timeout`] once `timeout`
    /// has passed. Otherwise as [`Lock::lock`]. `Duration::MAX` waits for
    /// ever.
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> Result<LockGuard<'_>, LockError> {
        self.acquire(self.peers(), Some(&Deadline::after(timeout)))
    }

    /// Takes the lock with an optional absolute deadline.
    #[inline]
    pub fn lock_until(&self, deadline: Option<&Deadline>) -> Result<LockGuard<'_>, LockError> {
        self.acquire(self.peers(), deadline)
    }

    /// [`Lock::lock_until`] as the given peers' member: `peers` says who
    /// the caller is and judges owners, instead of the peers found from the
    /// lock's address.
    #[inline]
    pub fn lock_until_with(
        &self,
        peers: &dyn Peers,
        deadline: Option<&Deadline>,
    ) -> Result<LockGuard<'_>, LockError> {
        self.acquire(peers, deadline)
    }

    /// Takes the lock if that needs no waiting, else fails with
    /// [`LockError::WouldBlock`] (or [`LockError::Deadlock`] if the calling
    /// thread holds it). It does not check whether a holder is alive; the
    /// waiting calls do.
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, LockError> {
        self.try_lock_with(self.peers())
    }

    /// [`Lock::try_lock`] as the given peers' member (see
    /// [`Lock::lock_until_with`]).
    ///
    /// SYNC POINT: its Acquire compare-and-swap pairs with the Release swap
    /// in [`Lock::unlock`] (and in a guard's drop), so everything the
    /// previous owner wrote is visible to the new one.
    #[inline]
    pub fn try_lock_with(&self, peers: &dyn Peers) -> Result<LockGuard<'_>, LockError> {
        self.try_take(peers.me().raw())
    }

    /// Takes the lock if it is free, adding `bits` (the taker's owner id,
    /// and any flag it raises) to the word; else fails as
    /// [`Lock::try_lock`] does.
    ///
    /// SYNC POINT: its Acquire compare-and-swap pairs with the Release swap
    /// in [`Lock::unlock`] (and in a guard's drop), so everything the
    /// previous owner wrote is visible to the new one.
    #[inline]
    fn try_take(&self, bits: u32) -> Result<LockGuard<'_>, LockError> {
        let stamp = tid::thread_stamp();
        let mut state = self.word.load(Ordering::Relaxed);
        loop {
            self.check_held(state, stamp)?;
            if state & TID_MASK != 0 {
                return Err(LockError::WouldBlock);
            }
            // Keep the flag bits: a sleeper's WAITERS bit must survive, or
            // its wake-up would be lost; an OWNER_DIED bit with no owner
            // means the owner died and we inherit the repair.
            // SYNC POINT: Acquire (paired in the doc comment above).
            match self.word.compare_exchange_weak(
                state,
                state | bits,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(self.acquired(stamp, state & OWNER_DIED != 0)),
                Err(s) => state = s,
            }
        }
    }

    /// Errors for a held `state` that waiting cannot cure: not recoverable,
    /// or held by the calling thread itself.
    #[inline]
    fn check_held(&self, state: u32, stamp: u64) -> Result<(), LockError> {
        let owner = state & TID_MASK;
        if owner == NOT_RECOVERABLE {
            return Err(LockError::Unrecoverable);
        }
        // Only the owning thread writes its stamp here, after taking the
        // lock, and clears it before releasing; so our own stamp means we
        // hold it (through whichever mapping).
        if owner != 0 && self.stamp.load(Ordering::Relaxed) == stamp {
            return Err(LockError::Deadlock);
        }
        Ok(())
    }

    /// Takes the lock: the fast path, then [`Self::acquire_contended`].
    ///
    /// SYNC POINT: the Acquire compare-and-swap pairs with the Release
    /// swap in [`Self::release`], so everything the previous owner wrote is
    /// visible to us.
    #[inline]
    fn acquire(
        &self,
        peers: &dyn Peers,
        deadline: Option<&Deadline>,
    ) -> Result<LockGuard<'_>, LockError> {
        let me = peers.me().raw();
        let stamp = tid::thread_stamp();
        // SYNC POINT: Acquire (paired in the doc comment above).
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(self.acquired(stamp, false));
        }
        let owner_died = self.acquire_contended(peers, me, stamp, deadline)?;
        Ok(self.acquired(stamp, owner_died))
    }

    /// Records who we are and builds the guard, once the word is ours.
    #[inline]
    fn acquired(&self, stamp: u64, owner_died: bool) -> LockGuard<'_> {
        self.tid.store(tid::current(), Ordering::Relaxed);
        self.stamp.store(stamp, Ordering::Relaxed);
        LockGuard::new(self, stamp, owner_died)
    }

    /// The slow path; returns whether the previous owner died.
    ///
    /// SYNC POINT: the Acquire compare-and-swap that takes a free lock
    /// pairs with the Release swap in [`Self::release`], as in
    /// [`Self::acquire`]; a takeover's is in [`Self::take_over_from_dead`].
    #[cold]
    fn acquire_contended(
        &self,
        peers: &dyn Peers,
        me: u32,
        stamp: u64,
        deadline: Option<&Deadline>,
    ) -> Result<bool, LockError> {
        let mut state = self.spin();
        loop {
            let owner = state & TID_MASK;
            if owner == 0 {
                // Free. Take it with WAITERS set: we cannot know whether
                // others are still asleep, so our unlock must wake one.
                // SYNC POINT: Acquire (paired in the doc comment above).
                match self.word.compare_exchange(
                    state,
                    me | WAITERS | (state & OWNER_DIED),
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
            self.check_held(state, stamp)?;
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
            // Sleep at most one check interval, so a dead owner is noticed
            // (except under `strict-wakes`, `futex::STRICT_WAKES`).
            let check = Deadline::after(OWNER_CHECK_INTERVAL);
            let slice = futex::sleep_end(deadline, &check);
            let outcome = futex::wait(&self.word, state | WAITERS, slice);
            if deadline.is_some_and(Deadline::has_passed) {
                // One last look: the lock may have been released just now.
                state = self.word.load(Ordering::Relaxed);
                if state & TID_MASK != 0 {
                    self.pass_wake_on(state);
                    return Err(LockError::Timeout);
                }
                continue;
            }
            if outcome == WaitOutcome::TimedOut {
                // Held, unwoken, for a whole interval: is the owner alive?
                let seen = self.word.load(Ordering::Relaxed);
                if seen & TID_MASK == owner {
                    if let Some(died) = self.take_over_from_dead(peers, seen, me) {
                        return Ok(died);
                    }
                }
                state = seen;
                continue;
            }
            state = self.spin();
        }
    }

    /// We give up waiting. If an unlock cleared `WAITERS` and its one wake
    /// came to us, the sleepers behind us would wait for nobody: wake one
    /// of them, so it sets `WAITERS` again when it goes back to sleep.
    #[cold]
    fn pass_wake_on(&self, state: u32) {
        if state & WAITERS == 0 {
            futex::wake_one(&self.word);
        }
    }

    /// If the owner recorded in `state` is dead, takes the lock over with
    /// `OWNER_DIED` set and returns `Some(true)`; `None` if the owner lives
    /// (or cannot be judged) or someone else changed the word first.
    ///
    /// SYNC POINT: the Acquire compare-and-swap pairs with whatever Release
    /// the dead owner made ([`Self::release`] of an earlier round); what it
    /// wrote without one may be half done, which is what the `OWNER_DIED`
    /// report ([`LockGuard::owner_died`]) is for.
    #[cold]
    fn take_over_from_dead(&self, peers: &dyn Peers, state: u32, me: u32) -> Option<bool> {
        let owner = Token::from_raw(state & TID_MASK)?;
        if !peers.fate(owner).is_dead() {
            return None;
        }
        // Keep WAITERS: others may sleep too, and our unlock must wake them.
        // SYNC POINT: Acquire (paired in the doc comment above).
        self.word
            .compare_exchange(
                state,
                me | WAITERS | OWNER_DIED,
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

    /// Releases the lock, if the calling thread holds it. If it was taken
    /// over from a dead owner and not marked consistent, it becomes not
    /// recoverable instead. A thread that does not hold it (a forked child
    /// with a copy of its parent's guard, say) releases nothing.
    ///
    /// # Safety
    ///
    /// The calling thread holds the lock, and the guard that proved it was
    /// forgotten (see [`LockGuard::leak`]).
    #[inline]
    pub unsafe fn unlock(&self) {
        self.release(tid::thread_stamp());
    }

    /// Releases the lock if `stamp` holds it.
    ///
    /// SYNC POINT: the Release swap pairs with the Acquire compare-and-swap
    /// of the next owner in [`Self::acquire`], [`Self::acquire_contended`]
    /// or [`Self::try_lock_with`].
    #[inline]
    fn release(&self, stamp: u64) {
        if self.stamp.load(Ordering::Relaxed) != stamp {
            return;
        }
        // Only the owner clears OWNER_DIED, so this load cannot be stale on
        // that bit; others may only add WAITERS, which the swap below keeps
        // track of.
        if self.word.load(Ordering::Relaxed) & OWNER_DIED != 0 {
            self.make_unrecoverable();
            return;
        }
        self.tid.store(0, Ordering::Relaxed);
        self.stamp.store(0, Ordering::Relaxed);
        // SYNC POINT: Release (paired in the doc comment above).
        let state = self.word.swap(0, Ordering::Release);
        if state & WAITERS != 0 {
            self.wake_waiter();
        }
    }

    /// Marks the lock not recoverable and wakes every waiter.
    ///
    /// SYNC POINT: the Release store orders the cleared `tid` and `stamp`
    /// before the word. It needs no Acquire partner: the waiters that see
    /// the word ([`Self::check_held`], through relaxed loads) only report
    /// [`LockError::Unrecoverable`] and read nothing the releaser wrote.
    #[cold]
    fn make_unrecoverable(&self) {
        self.tid.store(0, Ordering::Relaxed);
        self.stamp.store(0, Ordering::Relaxed);
        // SYNC POINT: Release (see the doc comment above).
        self.word
            .store(NOT_RECOVERABLE | OWNER_DIED, Ordering::Release);
        futex::wake_all(&self.word);
    }

    #[cold]
    fn wake_waiter(&self) {
        futex::wake_one(&self.word);
    }

    /// The `WAITERS` bit (for `crate::waitable`).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) const WAITERS_BIT: u32 = WAITERS;

    /// The futex word (for `crate::waitable`).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn wait_word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Sets `WAITERS` on a held lock's `word` (so its unlock wakes) and
    /// returns the word as it now is, or `None` if the lock is free (or
    /// not recoverable: taking it reports that).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn announce_waiter(word: &AtomicU32) -> Option<u32> {
        futex::announce_waiter(word, WAITERS, Ordering::Relaxed, |state| {
            let owner = state & TID_MASK;
            owner == 0 || owner == NOT_RECOVERABLE
        })
    }

    /// [`Lock::try_lock_woken`], and if the holder is dead, the takeover a
    /// blocked [`Lock::lock`] makes at its owner check (the guard then
    /// reports [`LockGuard::owner_died`]), for a waiter outside the
    /// blocking calls (the async forms).
    pub fn try_lock_checked(&self) -> Result<LockGuard<'_>, LockError> {
        match self.try_lock_woken() {
            Err(LockError::WouldBlock) => {}
            r => return r,
        }
        let peers = self.peers();
        let me = peers.me().raw();
        let seen = self.word.load(Ordering::Relaxed);
        match self.take_over_from_dead(peers, seen, me) {
            Some(died) => Ok(self.acquired(tid::thread_stamp(), died)),
            None => Err(LockError::WouldBlock),
        }
    }

    /// [`Lock::try_lock`] for a waiter that slept on the lock outside
    /// [`Lock::lock`] (an [`Arm`](crate::waitable::Arm) of it): a free lock
    /// is taken with `WAITERS` set, as a woken sleeper takes it, because
    /// others may still sleep and our unlock must wake one.
    ///
    /// SYNC POINT: its Acquire compare-and-swap pairs with the Release swap
    /// in [`Lock::unlock`], as [`Lock::try_lock_with`]'s does.
    pub fn try_lock_woken(&self) -> Result<LockGuard<'_>, LockError> {
        self.try_take(self.peers().me().raw() | WAITERS)
    }

    /// Whether the calling thread holds the lock: only the owner writes its
    /// stamp here (after taking the lock) and clears it (before releasing
    /// it), so finding our own stamp under a held word means we hold it.
    #[inline]
    pub(crate) fn held_by_caller(&self) -> bool {
        let owner = self.word.load(Ordering::Relaxed) & TID_MASK;
        owner != 0
            && owner != NOT_RECOVERABLE
            && self.stamp.load(Ordering::Relaxed) == tid::thread_stamp()
    }

    /// [`LockGuard::mark_consistent`] for a holder whose guard was leaked
    /// (an [`RLock`](crate::RLock)'s first level).
    pub(crate) fn mark_consistent_held(&self) {
        self.word.fetch_and(!OWNER_DIED, Ordering::Relaxed);
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

    /// The current owner, if any (a snapshot; `None` for a free or a not
    /// recoverable lock, and for an owner field no peer writes).
    pub fn owner(&self) -> Option<Owner> {
        let state = self.word.load(Ordering::Relaxed);
        let token = Token::from_raw(state & TID_MASK)?;
        Some(Owner {
            token,
            tid: self.tid.load(Ordering::Relaxed),
            repairing: state & OWNER_DIED != 0,
        })
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
// pattern is a valid lock (an unknown owner token is a held lock, whose
// owner is judged before any takeover; an owner field of all ones is not
// recoverable).
crate::place::shared_object!(Lock, (), |_| Lock::new());

/// Proof that the lock is held; dropping it releases the lock.
///
/// The guard is not `Send`: the lock's stamp names the owning thread, so
/// the thread that took the lock is the one that releases it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    stamp: u64,
    owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing a guard between threads only shares `&Lock`, which is Sync.
unsafe impl Sync for LockGuard<'_> {}

impl<'a> LockGuard<'a> {
    fn new(lock: &'a Lock, stamp: u64, owner_died: bool) -> Self {
        LockGuard {
            lock,
            stamp,
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
            self.lock.mark_consistent_held();
            self.owner_died = false;
        }
    }

    /// Keeps the lock held without a guard; release it later with
    /// [`Lock::unlock`] from the same thread.
    pub fn leak(self) -> &'a Lock {
        let lock = self.lock;
        core::mem::forget(self);
        lock
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // The guard's own stamp, not the thread's: in a forked child the
        // thread's stamp is new, and a copied guard must release nothing.
        if self.stamp == tid::thread_stamp() {
            self.lock.release(self.stamp);
        }
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
    use crate::peers::testing::TestPeers;
    use crate::peers::LOCAL;
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
        let owner = lock.owner().unwrap();
        assert_eq!(owner.token, LOCAL.me());
        assert_eq!(owner.tid, tid::current());
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
        // Even as another peer (the same lock mapped twice, say).
        let other = TestPeers::new(3);
        assert_eq!(lock.try_lock_with(&other).unwrap_err(), LockError::Deadlock);
    }

    #[test]
    fn another_thread_of_the_same_peer_waits_rather_than_deadlocks() {
        let lock = Arc::new(Lock::new());
        let g = lock.lock().unwrap();
        let l2 = lock.clone();
        let r = std::thread::spawn(move || l2.try_lock().map(drop))
            .join()
            .unwrap();
        assert_eq!(r, Err(LockError::WouldBlock));
        drop(g);
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

    /// A lock held by the peer `holder` (on behalf of a thread that is not
    /// ours), as another process would leave it.
    fn held_by(holder: &TestPeers) -> Lock {
        let lock = Lock::new();
        lock.word.store(holder.me.raw(), Ordering::Relaxed);
        lock.tid.store(12345, Ordering::Relaxed);
        lock.stamp.store(0xdead_0000_0001, Ordering::Relaxed);
        lock
    }

    /// A lock [`held_by`] a peer that is dead, and the peers (slot 2) that
    /// judge every other peer dead.
    #[cfg(not(miri))]
    fn held_by_the_dead() -> (Lock, TestPeers) {
        let me = TestPeers::new(2);
        me.kill_others();
        (held_by(&TestPeers::new(1)), me)
    }

    #[test]
    fn a_live_foreign_owner_makes_waiters_time_out() {
        let holder = TestPeers::new(1);
        let me = TestPeers::new(2);
        let lock = held_by(&holder);
        assert_eq!(lock.try_lock_with(&me).unwrap_err(), LockError::WouldBlock);
        let wait = if cfg!(miri) { 5 } else { 120 }; // more than one check interval
        assert_eq!(
            lock.lock_until_with(&me, Some(&Deadline::after(Duration::from_millis(wait))))
                .unwrap_err(),
            LockError::Timeout
        );
        assert_eq!(lock.owner().unwrap().token, holder.me);
        assert_eq!(lock.owner().unwrap().tid, 12345);
    }

    #[test]
    fn an_owner_that_cannot_be_judged_is_never_taken_over() {
        // LOCAL judges every foreign token Unknown: alive.
        let holder = TestPeers::new(1);
        let lock = held_by(&holder);
        let wait = if cfg!(miri) { 5 } else { 120 };
        assert_eq!(
            lock.lock_timeout(Duration::from_millis(wait)).unwrap_err(),
            LockError::Timeout
        );
    }

    #[cfg(not(miri))]
    #[test]
    fn a_dead_owner_is_taken_over_and_repaired() {
        let (lock, me) = held_by_the_dead();
        let deadline = Deadline::after(Duration::from_secs(5));
        let mut guard = lock.lock_until_with(&me, Some(&deadline)).unwrap();
        assert!(guard.owner_died());
        assert_eq!(lock.owner().unwrap().token, me.me);
        assert!(lock.owner().unwrap().repairing);
        guard.mark_consistent();
        assert!(!guard.owner_died());
        drop(guard);
        let guard = lock.try_lock_with(&me).unwrap();
        assert!(!guard.owner_died(), "repaired: the lock is ordinary again");
    }

    #[cfg(not(miri))]
    #[test]
    fn a_takeover_left_unrepaired_makes_the_lock_unrecoverable() {
        let (lock, me) = held_by_the_dead();
        let guard = lock.lock_until_with(&me, None).unwrap();
        assert!(guard.owner_died());
        drop(guard);
        assert!(lock.is_unrecoverable());
        assert_eq!(lock.try_lock().unwrap_err(), LockError::Unrecoverable);
        assert_eq!(lock.lock().unwrap_err(), LockError::Unrecoverable);
        assert_eq!(lock.owner(), None);
    }

    #[test]
    fn a_free_word_with_owner_died_reports_it() {
        // What the kernel's robust-futex cleanup leaves: no owner, OWNER_DIED.
        let lock = Lock::new();
        lock.word.store(OWNER_DIED, Ordering::Relaxed);
        let mut g = lock.try_lock().unwrap();
        assert!(g.owner_died());
        g.mark_consistent();
    }

    #[test]
    fn hostile_not_recoverable_word_is_an_error() {
        let lock = Lock::new();
        lock.word
            .store(NOT_RECOVERABLE | OWNER_DIED | WAITERS, Ordering::Relaxed);
        assert_eq!(lock.try_lock().unwrap_err(), LockError::Unrecoverable);
        assert_eq!(
            lock.lock_timeout(Duration::from_millis(5)).unwrap_err(),
            LockError::Unrecoverable
        );
    }

    #[test]
    fn a_guard_whose_stamp_is_not_the_threads_releases_nothing() {
        // What a forked child holds: a copy of its parent's guard, whose
        // stamp names the parent's thread.
        let lock = Lock::new();
        let g = lock.lock().unwrap();
        let copy = LockGuard::new(&lock, g.stamp ^ 1, false);
        drop(copy);
        assert!(lock.is_locked(), "a stranger's guard released the lock");
        drop(g);
        assert!(!lock.is_locked());
        // Likewise `unlock` from a thread that does not hold it.
        let g = lock.lock().unwrap().leak();
        let l = &lock;
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: deliberately broken contract; the lock must survive it.
                unsafe { l.unlock() }
            });
        });
        assert!(g.is_locked());
        // SAFETY: this thread holds it (leaked above).
        unsafe { g.unlock() };
        assert!(!lock.is_locked());
    }
}
