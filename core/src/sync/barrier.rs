//! A barrier for a fixed number of threads or processes: Python's
//! `multiprocessing.Barrier`.
//!
//! 16 bytes:
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `state` | the futex word: bits 0–15 the parties arrived, bits 16–30 the generation, bit 31 *broken* |
//! | 4 | `parties` | how many parties a round needs |
//! | 8 | reserved | zero |
//!
//! Arriving is a compare-and-swap adding one; the last party instead resets
//! the count and advances the generation in the same compare-and-swap (it
//! is the leader), then wakes everyone sleeping on the word. A waiter sleeps
//! until the generation moves (passed) or the broken bit appears. A waiter
//! whose deadline passes sets the broken bit (if its generation is still
//! current) and wakes everyone: all of them get [`BarrierError::Broken`],
//! itself [`BarrierError::Timeout`], and so does every later arrival until
//! [`Barrier::reset`], which advances the generation by two (so that a
//! process still waiting in the old one can tell a reset from a release).
//!
//! (This is the n-party barrier; the asymmetric memory fence the queues use
//! is machinery, in `core/src/sys/membarrier.rs`.)

use core::fmt;
use core::time::Duration;

use crate::futex::{self, Deadline};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

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

impl core::error::Error for BarrierError {}

const ARRIVED_MASK: u32 = 0xffff;
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0x7fff;
const BROKEN: u32 = 0x8000_0000;

fn generation(state: u32) -> u32 {
    (state >> GEN_SHIFT) & GEN_MASK
}

/// A barrier for a fixed number of threads or processes: Python's
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
/// use shmipc_core::{Barrier, BarrierError};
/// use std::time::Duration;
///
/// let barrier = Barrier::new(3); // three parties
/// let leaders: u32 = std::thread::scope(|s| {
///     let others: Vec<_> = (0..2).map(|_| s.spawn(|| barrier.wait().unwrap())).collect();
///     let me = barrier.wait().unwrap();
///     others.into_iter().map(|t| t.join().unwrap() as u32).sum::<u32>() + me as u32
/// });
/// assert_eq!(leaders, 1); // exactly one leader
///
/// // Alone at the barrier: the timeout breaks it.
/// assert_eq!(barrier.wait_timeout(Duration::from_millis(10)), Err(BarrierError::Timeout));
/// assert_eq!(barrier.wait(), Err(BarrierError::Broken));
/// barrier.reset();
/// assert!(!barrier.is_broken());
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
    /// and are refused when the barrier is placed in shared memory).
    #[cfg(not(loom))]
    pub const fn new(parties: u32) -> Barrier {
        Barrier {
            state: AtomicU32::new(0),
            parties: AtomicU32::new(parties),
            _reserved: AtomicU64::new(0),
        }
    }

    /// A barrier for `parties` parties (see the non-loom `new`).
    #[cfg(loom)]
    pub fn new(parties: u32) -> Barrier {
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

    /// The round it is in (a snapshot; 15 bits that wrap): bumped when a
    /// round passes, by two when it is reset.
    pub fn generation(&self) -> u32 {
        generation(self.state.load(Ordering::Relaxed))
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
    ///
    /// SYNC POINT: each arrival is an AcqRel compare-and-swap on `state`,
    /// so the arrivals form one release sequence: the leader's (the last
    /// arrival's) Acquire sees what every earlier party wrote, and its
    /// Release of the new generation pairs with the waiters' Acquire loads
    /// of `state` in this function, so they see what all wrote. A timeout's
    /// AcqRel compare-and-swap of `BROKEN` (here), [`Barrier::abort`] and
    /// [`Barrier::reset`] are read by the same Acquire loads; they carry
    /// no data, only the verdict.
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
                // SYNC POINT: AcqRel, the leader's (see the doc comment).
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
            // SYNC POINT: AcqRel, an arrival (see the doc comment).
            match self
                .state
                .compare_exchange(state, state + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break gen,
                Err(s) => state = s,
            }
        };
        loop {
            // SYNC POINT: Acquire of the leader's Release (see the doc
            // comment).
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
                // SYNC POINT: AcqRel, breaking (see the doc comment).
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
            // Sliced: a leader killed between its release and its wake
            // must not strand us (`futex::wait_sliced`).
            futex::wait_sliced(&self.state, now, deadline);
        }
    }

    /// Breaks the barrier: every waiting party, and every later arrival,
    /// gets [`BarrierError::Broken`] until [`reset`](Barrier::reset).
    ///
    /// SYNC POINT: the AcqRel `fetch_or` is read by the Acquire loads in
    /// [`Barrier::wait_until`]; it carries no data.
    pub fn abort(&self) {
        // SYNC POINT: AcqRel (paired in the doc comment above).
        self.state.fetch_or(BROKEN, Ordering::AcqRel);
        futex::wake_all(&self.state);
    }

    /// Makes the barrier whole and empty again (a new generation). Parties
    /// waiting at that moment get [`BarrierError::Broken`].
    ///
    /// SYNC POINT: the AcqRel compare-and-swap is read by the Acquire
    /// loads in [`Barrier::wait_until`]; it carries no data.
    pub fn reset(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let next = ((generation(state) + 2) & GEN_MASK) << GEN_SHIFT;
            // SYNC POINT: AcqRel (paired in the doc comment above).
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
crate::place::shared_object!(
    Barrier,
    /** The number of parties. */ u32,
    |parties| Barrier::new(parties),
    fn check_config(parties: &u32) -> Result<(), crate::place::LayoutError> {
        if (1..=Barrier::MAX_PARTIES).contains(parties) {
            return Ok(());
        }
        let rule = crate::place::Rule::Range {
            min: 1,
            max: Barrier::MAX_PARTIES.into(),
        };
        Err(crate::place::LayoutError::parameter(
            "parties",
            (*parties).into(),
            rule,
        ))
    }
);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::place::SharedObject;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn barrier_rounds_between_threads() {
        let rounds = if cfg!(miri) { 5 } else { 50 };
        let b = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    (0..rounds).map(|_| b.wait().unwrap() as u32).sum::<u32>()
                })
            })
            .collect();
        let mine: u32 = (0..rounds).map(|_| b.wait().unwrap() as u32).sum();
        let total: u32 = mine + handles.into_iter().map(|h| h.join().unwrap()).sum::<u32>();
        assert_eq!(total, rounds, "one leader per round");
    }

    #[test]
    fn zeroed_bytes_are_a_barrier_of_no_parties_which_is_an_error() {
        assert_eq!(size_of::<Barrier>(), 16);
        let mut buf = [0u64; 2];
        let b = Barrier::from_bytes_mut(bytemuck::cast_slice_mut(&mut buf)).unwrap();
        assert_eq!(b.wait(), Err(BarrierError::InvalidParties(0)));
        let mut buf = [0u64; 2];
        let b = Barrier::init_in(bytemuck::cast_slice_mut(&mut buf), 1).unwrap();
        assert_eq!(b.wait(), Ok(true), "a party of one leads every round");
        let b = Barrier::new(Barrier::MAX_PARTIES + 1);
        assert_eq!(
            b.wait(),
            Err(BarrierError::InvalidParties(Barrier::MAX_PARTIES + 1))
        );
    }

    #[test]
    fn abort_breaks_and_reset_mends() {
        let b = Barrier::new(2);
        b.abort();
        assert!(b.is_broken());
        assert_eq!(b.wait(), Err(BarrierError::Broken));
        b.reset();
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    }
}
