//! What the three queues share: errors, the control-block header, the
//! sleep/wake protocol, and the storage that slot payloads live in.
//!
//! # The sleep/wake protocol
//!
//! Each side of a queue that can wait ("not empty" for consumers, "not
//! full" for producers) has a `Signal`: `epoch` (the 32-bit futex word) and
//! `sleepers`, a 64-bit word holding the number of registered sleepers
//! (bits 0–31) and the *generation* of that count (bits 32–62).
//!
//! | step | sleeper | notifier |
//! |---|---|---|
//! | 1 | register: `sleepers += 1` (SeqCst RMW), remember the generation | publish the data (Release) |
//! | 2 | `seen = epoch` (Acquire) | `s = sleepers + 0` (AcqRel RMW) |
//! | 3 | if the generation moved on: register again | if `s` counts a sleeper: `epoch += 1` (Release), `FUTEX_WAKE` all |
//! | 4 | re-check the queue | |
//! | 5 | `FUTEX_WAIT(epoch, seen)`, then back to 2 | |
//!
//! Both step-2 RMWs of the notifier and every registration of the sleeper
//! act on the same word, so they are totally ordered. If the notifier's
//! comes first, the sleeper's registration reads from it (a release
//! sequence), so the published data is visible to the sleeper's re-check.
//! If the sleeper's comes first, the notifier sees it and bumps the epoch;
//! the sleeper then either read the new epoch in step 2 (and with it the
//! data) or the kernel finds `epoch != seen` in step 5 and does not sleep.
//! No wake-up is lost, and a notifier makes no system call while nobody
//! sleeps. This uses only acquire/release read-modify-writes, which loom
//! models exactly.
//!
//! Wakes are broadcast. The slots of these queues are handed out in order, so
//! the one waiter a `FUTEX_WAKE(1)` picks may find its slot still busy (a
//! slower peer holds the one before it) and go back to sleep, while the wake
//! that would have let another waiter proceed is gone. Waking every sleeper
//! costs a herd only when many sleep, and never costs anything when none do.
//!
//! ## A sleeper that dies
//!
//! A sleeper killed while registered never takes its registration back, so
//! the count would say "someone sleeps" for ever and every later notify
//! would make a `FUTEX_WAKE` system call (an SPSC push and pop went from
//! 13 ns to ~300 ns that way). The count therefore recovers by itself:
//!
//! - A notifier whose `FUTEX_WAKE` woke nobody although the count said
//!   someone sleeps counts a *miss* in a per-side word. At the
//!   [`MISS_LIMIT`]th miss it *wipes* the count: one compare-and-swap to
//!   (generation + 1, count 0), then `epoch += 1` (Release) and
//!   `FUTEX_WAKE` all, and the misses start again from 0. (Misses are not
//!   reset by wakes that find someone: that would cost a write on every
//!   wake, and a wipe that comes early only wakes the live sleepers once.)
//! - A sleeper checks, after each read of `epoch` (step 3), that its
//!   registration's generation is still the word's; if not, it registers
//!   again (and makes the heavy barrier again, see below) before it
//!   re-checks and sleeps. Leaving takes the registration back only if its
//!   generation is still current (a compare-and-swap).
//!
//! Why no wake-up is lost: a live sleeper's registration disappears only in
//! a wipe, and the wiper bumps `epoch` after it. A sleeper that read `epoch`
//! before that bump has its `FUTEX_WAIT` refused or woken by the wiper's
//! wake; one that read it after acquired the bump, so it sees the new
//! generation in step 3. Either way it registers again and re-checks before
//! it sleeps, and the handshake above applies to the new registration. A
//! notifier that saw the count at 0 only because of a wipe is covered by the
//! same argument: the sleeper it would have woken registers again after the
//! wipe, so its re-check sees the notifier's data. Too high a count is only
//! extra system calls (and is wiped again); too low a count cannot arise.
//! A dead sleeper's registration, which nobody ever re-makes, is gone after
//! the first wipe: a dead sleeper costs at most [`MISS_LIMIT`] wake system
//! calls, and nothing on the fast path. A false wipe (sleepers that were
//! registered but not yet asleep when the wakes came) costs every live
//! sleeper one spurious wake-up. The generation has 31 bits, so a
//! registration could be mistaken for a current one only after 2^31 wipes
//! while its sleeper stood still between two instructions.
//!
//! The count's bit 63 is a flag the queue may use: the SPSC ring keeps its
//! `CLOSED` bit there ([`crate::spsc`]), so that the read a push makes to
//! look for sleepers also tells it whether a close came. Wipes keep it.

/// The wait-strategy accessors, written once for the handles of the three
/// queues (each has a `wait: WaitStrategy` field that its blocking calls
/// pass to `block_checked`).
macro_rules! wait_strategy_methods {
    () => {
        /// How this handle's blocking calls wait for their condition
        /// ([`WaitStrategy::DEFAULT`](crate::WaitStrategy::DEFAULT) until
        /// set).
        pub fn wait_strategy(&self) -> $crate::queue::WaitStrategy {
            self.wait
        }

        /// Sets how this handle's blocking calls wait (see
        /// [`WaitStrategy`](crate::WaitStrategy)); other handles of the
        /// same queue keep theirs.
        pub fn set_wait_strategy(&mut self, strategy: $crate::queue::WaitStrategy) {
            self.wait = strategy;
        }

        /// This handle with `strategy` as its [wait
        /// strategy](Self::set_wait_strategy).
        #[must_use]
        pub fn with_wait_strategy(mut self, strategy: $crate::queue::WaitStrategy) -> Self {
            self.wait = strategy;
            self
        }
    };
}

/// The test hooks that fake a sleeper killed while it waited, written once
/// for the three queues (each has a `ctrl` with `not_empty` and
/// `not_full` signals): `register_dead_sleeper(true)` registers one on the
/// side that waits for items (consumers, readers), `false` on the side
/// that waits for room; `counted_sleepers` says how many that side counts.
macro_rules! dead_sleeper_hooks {
    () => {
        /// Test support: registers a sleeper on the side that waits for
        /// items (`true`: consumers, readers) or for room (`false`) that
        /// never sleeps and never leaves, as a process killed while blocked
        /// leaves it.
        #[cfg(any(test, feature = "fault-injection"))]
        #[doc(hidden)]
        pub fn register_dead_sleeper(&self, consumers: bool) {
            self.dead_sleeper_signal(consumers).register_and_stop();
        }

        /// Test support: how many sleepers the side that waits for items
        /// (`true`) or for room (`false`) counts now.
        #[cfg(any(test, feature = "fault-injection"))]
        #[doc(hidden)]
        pub fn counted_sleepers(&self, consumers: bool) -> u64 {
            self.dead_sleeper_signal(consumers).sleepers()
        }

        #[cfg(any(test, feature = "fault-injection"))]
        fn dead_sleeper_signal(&self, consumers: bool) -> &$crate::queue::Signal {
            if consumers {
                &self.ctrl.not_empty
            } else {
                &self.ctrl.not_full
            }
        }
    };
}

pub mod bytes;
mod config;
mod control;
mod ends;
mod error;
pub mod mpmc;
pub mod spsc;
mod state;
mod storage;
mod wait;

pub use config::{RingConfig, MAX_CAPACITY};
pub use error::{PopError, PushError, QueueError, RecvError, SendError};
#[cfg(not(loom))]
pub(crate) use state::word_at;
pub use state::RingState;
pub use storage::Keep;
#[cfg(loom)]
#[doc(hidden)]
pub use wait::set_miss_limit;
#[cfg(loom)]
#[doc(hidden)]
pub use wait::set_owner_checks;
#[cfg(not(loom))]
pub(crate) use wait::signal_word_at;
pub use wait::{Readiness, WaitStrategy, MISS_LIMIT};

pub(crate) use control::{ControlHeader, QueueKind, MAX_POS};
#[cfg(not(loom))]
pub(crate) use ends::judgeable;
pub(crate) use ends::{wake_others, Ends};
#[cfg(all(test, not(loom)))]
pub(crate) use storage::testbuf;
#[cfg(loom)]
pub(crate) use storage::Boxed;
pub(crate) use storage::{layout, round_up, CachePadded, Cell, Cells, Life};
#[cfg(not(loom))]
pub(crate) use wait::Registration;
pub(crate) use wait::{
    block_checked, count_miss, counted, heavy_if_light, register, sleeping, unregister, Signal,
    SIGNAL_FLAG,
};
