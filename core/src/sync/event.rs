//! A manual-reset event that works across processes, like Python's
//! `multiprocessing.Event`.
//!
//! One 32-bit word:
//!
//! | bits | meaning |
//! |---|---|
//! | 0 (`SET`) | the flag |
//! | 1 (`WAITERS`) | someone may be asleep on the word: `set` must wake |
//! | 2–31 | generation: bumped by every `set` that raises the flag |
//!
//! The generation is what makes a wake-up impossible to lose. A waiter
//! remembers the generation it saw while the flag was down; if the word
//! later shows a different generation, a `set` happened in between, and the
//! waiter returns `true` even if a `clear` already lowered the flag again —
//! as Python's `Event.wait` returns `True` for everyone waiting when `set`
//! was called.

use core::fmt;
use core::time::Duration;

use crate::futex::{self, Deadline};
use crate::sync::{AtomicU32, Ordering};

const SET: u32 = 1;
const WAITERS: u32 = 2;
const GENERATION: u32 = 4;

/// A flag that processes can wait for.
///
/// Zeroed bytes are an unset `Event`.
///
/// ```
/// use shmipc_core::Event;
/// use std::time::Duration;
///
/// let ready = Event::new();
/// assert!(!ready.wait_timeout(Duration::from_millis(1)));
/// ready.set();
/// assert!(ready.is_set());
/// ready.wait(); // returns at once
/// ready.clear();
/// assert!(!ready.is_set());
/// ```
#[repr(C)]
pub struct Event {
    word: AtomicU32,
}

impl Event {
    /// The size of an `Event` in bytes.
    pub const SIZE: usize = size_of::<Event>();
    /// The alignment an `Event` needs.
    pub const ALIGN: usize = align_of::<Event>();

    /// A new, unset event.
    #[cfg(not(loom))]
    pub const fn new() -> Event {
        Event {
            word: AtomicU32::new(0),
        }
    }

    /// A new, unset event.
    #[cfg(loom)]
    pub fn new() -> Event {
        Event {
            word: AtomicU32::new(0),
        }
    }

    /// Raises the flag and wakes every waiter. Setting a set event does
    /// nothing.
    ///
    /// SYNC POINT: the Release compare-and-swap pairs with the Acquire
    /// loads in [`Event::wait_until`] and [`Event::is_set`], so what the
    /// setter wrote before `set` is visible to whoever sees the flag.
    pub fn set(&self) {
        let mut state = self.word.load(Ordering::Relaxed);
        loop {
            if state & SET != 0 {
                return;
            }
            // New generation, flag up, WAITERS cleared: everyone asleep now
            // is woken below, and later sleepers set the bit again.
            let next = (state & !WAITERS).wrapping_add(GENERATION) | SET;
            // SYNC POINT: Release (paired in the doc comment above).
            match self
                .word
                .compare_exchange_weak(state, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(s) => state = s,
            }
        }
        if state & WAITERS != 0 {
            futex::wake_all(&self.word);
        }
    }

    /// Lowers the flag. Waiters that were already woken by a `set` still
    /// return `true`.
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Whether the flag is up (a snapshot).
    pub fn is_set(&self) -> bool {
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Waits until the flag is raised.
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// Waits until the flag is raised or `timeout` passes. Returns `true` if
    /// the flag was raised, `false` on timeout.
    #[must_use = "false means the wait timed out"]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.is_set() || self.wait_until(Some(&Deadline::after(timeout)))
    }

    /// Waits until the flag is raised or `deadline` passes (forever if
    /// `None`). Returns `true` if the flag was raised.
    #[must_use = "false means the wait timed out"]
    pub fn wait_until(&self, deadline: Option<&Deadline>) -> bool {
        let mut state = self.word.load(Ordering::Acquire);
        if state & SET != 0 {
            return true;
        }
        let generation = state & !(SET | WAITERS);
        let fired = |s: u32| s & SET != 0 || s & !(SET | WAITERS) != generation;
        if futex::spin_until(|| {
            state = self.word.load(Ordering::Acquire);
            fired(state)
        }) {
            return true;
        }
        loop {
            if fired(state) {
                return true;
            }
            if state & WAITERS == 0 {
                if let Err(s) = self.word.compare_exchange_weak(
                    state,
                    state | WAITERS,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    state = s;
                    continue;
                }
            }
            // Sliced: a setter killed between its compare-and-swap and its
            // wake must not strand us (`futex::wait_sliced`).
            futex::wait_sliced(&self.word, state | WAITERS, deadline);
            state = self.word.load(Ordering::Acquire);
            if deadline.is_some_and(Deadline::has_passed) {
                return fired(state);
            }
        }
    }
}

/// For waiters on many objects (`crate::waitable`).
#[cfg_attr(loom, allow(dead_code))]
impl Event {
    pub(crate) fn wait_word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Sets `WAITERS` on `word` (so the next `set` wakes) and returns the
    /// word as it now is, or `None` if the flag is up.
    pub(crate) fn announce_waiter(word: &AtomicU32) -> Option<u32> {
        // SYNC POINT: Acquire pairs with the Release compare-and-swap in
        // `set`, as in `wait_until`.
        futex::announce_waiter(word, WAITERS, Ordering::Acquire, |state| state & SET != 0)
    }

    /// Whether the event is set, or was set (even if cleared again) since
    /// an arm of it ([`crate::waitable::Arm`]) expected `armed`: the test
    /// a blocked [`Event::wait`] makes, for a waiter that re-arms (an
    /// async one keeps its first arm's [`expected`](crate::waitable::Arm::expected)).
    pub fn set_since(&self, armed: u32) -> bool {
        Event::fired_since(&self.word, armed)
    }

    /// Whether the event was set since `word` read `armed` (flag up, or a
    /// new generation), as `wait_until` decides.
    pub(crate) fn fired_since(word: &AtomicU32, armed: u32) -> bool {
        let s = word.load(Ordering::Acquire);
        s & SET != 0 || s & !(SET | WAITERS) != armed & !(SET | WAITERS)
    }
}

impl Default for Event {
    fn default() -> Self {
        Event::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

// SAFETY: #[repr(C)], one AtomicU32; every bit pattern is a valid state.
crate::place::shared_object!(Event, (), |_| Event::new());

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn set_clear_and_timeout() {
        let e = Event::new();
        assert!(!e.is_set());
        assert!(!e.wait_timeout(Duration::from_millis(5)));
        e.set();
        e.set();
        assert!(e.is_set());
        assert!(e.wait_timeout(Duration::ZERO));
        e.clear();
        assert!(!e.is_set());
        assert!(!e.wait_timeout(Duration::from_millis(5)));
    }

    #[test]
    fn set_wakes_every_waiter() {
        let e = Arc::new(Event::new());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || e.wait_timeout(Duration::from_secs(30)))
            })
            .collect();
        e.set();
        for w in waiters {
            assert!(w.join().unwrap());
        }
    }

    #[test]
    fn a_set_then_clear_still_releases_a_sleeping_waiter() {
        let e = Arc::new(Event::new());
        let e2 = e.clone();
        let t = std::thread::spawn(move || e2.wait_timeout(Duration::from_secs(30)));
        // Wait until the waiter has announced itself (it is about to sleep or
        // asleep), then pulse the event: set and at once clear.
        while e.word.load(Ordering::Acquire) & WAITERS == 0 {
            std::thread::yield_now();
        }
        e.set();
        e.clear();
        assert!(!e.is_set());
        assert!(t.join().unwrap(), "a set that raced a clear was lost");
    }
}
