//! A counting semaphore that works across processes.
//!
//! Five words:
//!
//! | field | meaning |
//! |---|---|
//! | `count` | permits available now |
//! | `max` | the bound for `release`, or 0 for an unbounded semaphore |
//! | `epoch` | bumped by a release that sees a sleeper; the futex word sleepers wait on |
//! | `misses` | releases since the last wipe whose wake found nobody asleep |
//! | `sleepers` | how many acquirers are in the slow path (may sleep), and the count's generation |
//!
//! A release adds a permit and then, only if `sleepers` counts someone,
//! bumps `epoch` and wakes one sleeper. An acquirer that must wait first
//! registers in `sleepers`, then reads `epoch`, then re-reads `count`, then
//! sleeps on `epoch`. That is a store-then-load handshake on two words
//! (Dekker's pattern), where at least one side must see the other's store.
//! The sleeper re-reads `count` with a read-modify-write (`fetch_add(0)`),
//! and the releaser updates it with one, so the two are ordered in
//! `count`'s modification order: if the release comes first, the sleeper
//! reads the permit; if the sleeper comes first, the releaser's acquire
//! compare-and-swap synchronises with it (a release sequence) and sees the
//! registration, and its `epoch` bump comes after the sleeper read `epoch`,
//! so the sleeper's `FUTEX_WAIT` returns at once. This needs acquire/release
//! only — no `SeqCst`, which loom models as acquire/release and so could
//! not check.
//!
//! **A sleeper that dies** (killed while blocked in `acquire`) never takes
//! its registration back. The count has a generation and is wiped by
//! releasers whose wakes keep finding nobody asleep, exactly as the queues'
//! sleeper counts are ([`crate::queue`], "A sleeper that dies"): a dead
//! sleeper costs at most [`MISS_LIMIT`](crate::queue::MISS_LIMIT) wake
//! system calls, then releases make none again. That is why sleepers wait
//! on `epoch` and not on `count`: the wiper must be able to wake, with one
//! bump, every live sleeper, so that each registers again.

use core::fmt;
use core::num::NonZeroU32;
use core::time::Duration;

use crate::futex::{self, Deadline};
use crate::queue::{count_miss, counted, register, sleeping, unregister};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// A counting semaphore that lives in (shared) memory.
///
/// Zeroed bytes are an unbounded semaphore with no permits.
///
/// ```
/// use shmipc_core::Semaphore;
/// use std::num::NonZeroU32;
/// use std::time::Duration;
///
/// let seats = Semaphore::new(2);
/// seats.acquire();
/// assert!(seats.try_acquire());
/// assert!(!seats.acquire_timeout(Duration::from_millis(1)));
/// seats.release().unwrap();
/// assert_eq!(seats.value(), 1);
///
/// // Like Python's BoundedSemaphore: releasing past the bound is an error.
/// let bounded = Semaphore::bounded(NonZeroU32::new(1).unwrap());
/// assert!(bounded.release().is_err());
/// ```
#[repr(C)]
pub struct Semaphore {
    count: AtomicU32,
    max: AtomicU32,
    epoch: AtomicU32,
    misses: AtomicU32,
    sleepers: AtomicU64,
}

/// Why a semaphore operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SemaphoreError {
    /// `release` would raise the count above the semaphore's bound (or past
    /// `u32::MAX`).
    Overflow,
}

impl fmt::Display for SemaphoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SemaphoreError::Overflow => {
                f.write_str("semaphore released more times than it was acquired")
            }
        }
    }
}

impl core::error::Error for SemaphoreError {}

/// What a new semaphore starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemaphoreConfig {
    /// Permits available at the start.
    pub initial: u32,
    /// The most permits it may hold; `None` for no bound.
    pub max: Option<NonZeroU32>,
}

impl Semaphore {
    /// The size of a `Semaphore` in bytes.
    pub const SIZE: usize = size_of::<Semaphore>();
    /// The alignment a `Semaphore` needs.
    pub const ALIGN: usize = align_of::<Semaphore>();

    /// An unbounded semaphore with `initial` permits.
    pub fn new(initial: u32) -> Semaphore {
        Semaphore::with_config(SemaphoreConfig { initial, max: None })
    }

    /// A bounded semaphore holding `value` permits, which is also its bound
    /// (Python's `BoundedSemaphore(value)`).
    pub fn bounded(value: NonZeroU32) -> Semaphore {
        Semaphore::with_config(SemaphoreConfig {
            initial: value.get(),
            max: Some(value),
        })
    }

    /// A semaphore as `config` describes. An initial count above the bound
    /// is clamped to the bound.
    pub fn with_config(config: SemaphoreConfig) -> Semaphore {
        let max = config.max.map_or(0, NonZeroU32::get);
        let initial = match config.max {
            Some(m) => config.initial.min(m.get()),
            None => config.initial,
        };
        Semaphore {
            count: AtomicU32::new(initial),
            max: AtomicU32::new(max),
            epoch: AtomicU32::new(0),
            misses: AtomicU32::new(0),
            sleepers: AtomicU64::new(0),
        }
    }

    /// Takes a permit, sleeping until one is available.
    #[inline]
    pub fn acquire(&self) {
        if !self.try_acquire() {
            self.acquire_slow(None);
        }
    }

    /// Takes a permit if one is available now.
    #[inline]
    #[must_use = "the permit may not have been taken"]
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_from(self.count.load(Ordering::Relaxed))
    }

    /// Takes a permit, starting from `count` as the last value seen.
    #[inline]
    fn try_acquire_from(&self, mut count: u32) -> bool {
        while count != 0 {
            // SYNC POINT: Acquire pairs with the Release compare-and-swap in
            // `release`, so what the releaser wrote before is visible to us.
            match self.count.compare_exchange_weak(
                count,
                count - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(c) => count = c,
            }
        }
        false
    }

    /// Takes a permit, waiting at most `timeout`. Returns whether it did.
    #[inline]
    #[must_use = "the permit may not have been taken"]
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.try_acquire() || self.acquire_slow(Some(&Deadline::after(timeout)))
    }

    /// Takes a permit, waiting until `deadline` (forever if `None`).
    #[must_use = "the permit may not have been taken"]
    pub fn acquire_until(&self, deadline: Option<&Deadline>) -> bool {
        self.try_acquire() || self.acquire_slow(deadline)
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<&Deadline>) -> bool {
        if futex::spin_until(|| self.try_acquire()) {
            return true;
        }
        // SYNC POINT: the handshake with `release` (module docs): we
        // register in `sleepers`, read `epoch`, then read `count` with a
        // read-modify-write; `release` bumps `count` with a
        // read-modify-write, then reads `sleepers` and bumps `epoch`.
        let mut reg = register(&self.sleepers);
        let acquired = loop {
            // SYNC POINT: Acquire pairs with the Release bumps of `epoch`
            // in `release` and in a wipe: after one, we see the wipe.
            let seen = self.epoch.load(Ordering::Acquire);
            if !counted(&self.sleepers, reg) {
                // Wiped by releasers that kept waking nobody: register
                // again before re-reading `count` (module docs).
                reg = register(&self.sleepers);
            }
            if self.try_acquire_from(self.count.fetch_add(0, Ordering::AcqRel)) {
                break true;
            }
            // Sliced: a releaser killed between its permit and its wake
            // must not strand us (`futex::wait_sliced`); we re-read `count`.
            futex::wait_sliced(&self.epoch, seen, deadline);
            if deadline.is_some_and(Deadline::has_passed) {
                // A wake-up meant for us may have arrived with the deadline;
                // take the permit rather than strand it.
                break self.try_acquire();
            }
        };
        unregister(&self.sleepers, reg);
        acquired
    }

    /// Returns a permit, waking one sleeper if there is one.
    ///
    /// Fails with [`SemaphoreError::Overflow`] if the count is already at
    /// the bound (or at `u32::MAX`); the count is then unchanged.
    pub fn release(&self) -> Result<(), SemaphoreError> {
        let max = self.max.load(Ordering::Relaxed);
        let mut count = self.count.load(Ordering::Relaxed);
        loop {
            if count == u32::MAX || (max != 0 && count >= max) {
                return Err(SemaphoreError::Overflow);
            }
            // SYNC POINT: Release pairs with the Acquire compare-and-swap in
            // `try_acquire_from`; Acquire is the releaser's half of the
            // handshake with `acquire_slow`.
            match self.count.compare_exchange_weak(
                count,
                count + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(c) => count = c,
            }
        }
        // Our compare-and-swap either came after the sleeper's
        // read-modify-write of `count` (then it acquired that write, and the
        // sleeper's earlier registration is visible here) or before it (then
        // the sleeper reads our permit and does not sleep).
        if sleeping(self.sleepers.load(Ordering::Relaxed)) != 0 {
            self.wake();
        }
        Ok(())
    }

    /// Wakes one sleeper; counts a wake that found nobody, and after enough
    /// of them wipes the sleeper count and wakes everyone, so that each
    /// live sleeper registers again (module docs).
    #[cold]
    fn wake(&self) {
        // SYNC POINT: Release pairs with the Acquire load of `epoch` in
        // `acquire_slow`.
        self.epoch.fetch_add(1, Ordering::Release);
        let woken = futex::wake_one(&self.epoch);
        if count_miss(&self.sleepers, &self.misses, woken) {
            // SYNC POINT: as above; a sleeper that reads this bump sees
            // the wipe before it.
            self.epoch.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.epoch);
        }
    }

    /// For waiters on many objects (`crate::waitable`): `count`, `epoch`
    /// and `sleepers`.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn wait_words(&self) -> (&AtomicU32, &AtomicU32, &AtomicU64) {
        (&self.count, &self.epoch, &self.sleepers)
    }

    /// Test support: registers an acquirer that never sleeps and never
    /// leaves, as a process killed while blocked in `acquire` leaves it.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn register_dead_sleeper(&self) {
        register(&self.sleepers);
    }

    /// How many sleepers are counted now (a snapshot, for tools such as
    /// `shmipc inspect`; a count may include a sleeper that died, until
    /// the count's next wipe).
    pub fn sleepers(&self) -> u64 {
        sleeping(self.sleepers.load(Ordering::Relaxed))
    }

    /// Test support: [`Semaphore::sleepers`].
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn counted_sleepers(&self) -> u64 {
        self.sleepers()
    }

    /// The number of permits available now (a snapshot).
    pub fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// The bound set at creation, if any.
    pub fn max(&self) -> Option<u32> {
        match self.max.load(Ordering::Relaxed) {
            0 => None,
            m => Some(m),
        }
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("max", &self.max())
            .finish()
    }
}

// SAFETY: #[repr(C)], four AtomicU32s and an AtomicU64; every bit pattern
// is a valid state (a hostile count or bound only changes which calls
// succeed; a hostile sleeper word costs wake-ups, never a lost one).
crate::place::shared_object!(Semaphore, SemaphoreConfig, |config| Semaphore::with_config(
    config
));

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::place::SharedObject;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn counts_permits() {
        let s = Semaphore::new(2);
        assert!(s.try_acquire());
        assert!(s.try_acquire());
        assert!(!s.try_acquire());
        s.release().unwrap();
        assert_eq!(s.value(), 1);
        assert_eq!(s.max(), None);
    }

    #[test]
    fn bounded_rejects_extra_release() {
        let s = Semaphore::bounded(NonZeroU32::new(2).unwrap());
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
        s.acquire();
        s.release().unwrap();
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
        assert_eq!(s.value(), 2);
    }

    #[test]
    fn unbounded_stops_at_u32_max() {
        let s = Semaphore::new(u32::MAX);
        assert_eq!(s.release(), Err(SemaphoreError::Overflow));
    }

    #[test]
    fn timeout_when_empty() {
        let s = Semaphore::new(0);
        assert!(!s.acquire_timeout(Duration::from_millis(10)));
        assert_eq!(s.value(), 0);
    }

    #[test]
    fn zeroed_bytes_are_empty_and_unbounded() {
        let mut buf = [0u64; 3];
        let s = Semaphore::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        assert_eq!(s.value(), 0);
        assert_eq!(s.max(), None);
        s.release().unwrap();
        assert!(s.try_acquire());
    }

    #[test]
    fn init_in_writes_the_config() {
        let mut buf = [u64::MAX; 3];
        let s = Semaphore::init_in(
            bytemuck::cast_slice_mut(&mut buf),
            SemaphoreConfig {
                initial: 5,
                max: NonZeroU32::new(3),
            },
        )
        .unwrap();
        assert_eq!(s.value(), 3);
        assert_eq!(s.max(), Some(3));
    }

    #[test]
    fn sleepers_are_woken_by_release() {
        let threads = 3;
        let rounds = if cfg!(miri) { 20 } else { 5_000 };
        let s = Arc::new(Semaphore::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        s.acquire();
                    }
                })
            })
            .collect();
        for _ in 0..threads * rounds {
            s.release().unwrap();
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.value(), 0);
    }
}
