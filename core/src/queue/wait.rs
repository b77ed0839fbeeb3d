//! Sleeping and waking: the [`Signal`] each waiting side of a queue has,
//! and the wipeable sleeper count the [`Semaphore`](crate::Semaphore)
//! shares (the protocol is in the [`queue`](super) module docs).

use core::time::Duration;

use crate::futex::{self, Deadline, WaitOutcome};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// The `sleepers` word of a [`Signal`]: the count of registered sleepers
/// (bits 0–31), the generation of the count (bits 32–62, see "A sleeper
/// that dies" in the module docs), and one flag bit (63) that the queue may
/// use for its own purposes (the SPSC ring keeps its `CLOSED` bit there, so
/// that a push's notify also tells it whether a close came).
const COUNT_MASK: u64 = 0xffff_ffff;
const GEN_ONE: u64 = 1 << 32;
const GEN_MASK: u64 = 0x7fff_ffff << 32;
/// The flag bit of a [`Signal`]'s word, kept across wipes.
pub(crate) const SIGNAL_FLAG: u64 = 1 << 63;

/// How many notifies must wake nobody, although the count says someone
/// sleeps, before the count is wiped.
pub const MISS_LIMIT: u32 = 64;

/// [`MISS_LIMIT`], or under loom the limit a model set with
/// `set_miss_limit` (none by default: wipes multiply the interleavings a
/// model explores, so only the models about them turn them on).
#[inline]
fn miss_limit() -> u32 {
    #[cfg(not(loom))]
    return MISS_LIMIT;
    #[cfg(loom)]
    return LOOM_MISS_LIMIT.load(std::sync::atomic::Ordering::Relaxed);
}

#[cfg(loom)]
#[allow(clippy::disallowed_types)]
static LOOM_MISS_LIMIT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Loom models only: wipe sleeper counts after `n` missed wakes (the
/// models about wipes set a small one; the default is never). The setting
/// is process-wide and outside the model, so the models that use it live
/// in a test binary of their own.
#[cfg(loom)]
#[doc(hidden)]
pub fn set_miss_limit(n: u32) {
    LOOM_MISS_LIMIT.store(n, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(loom)]
#[allow(clippy::disallowed_types)]
static LOOM_OWNER_CHECKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Loom models only: let blocked queue calls make their periodic owner
/// checks (dead claimants, dead grant holders) when the model's clock
/// passes [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL).
/// Off by default: the check reads the clock on every round, which
/// multiplies the interleavings the other models explore. Process-wide and
/// outside the model, so the models that use it live in a test binary of
/// their own.
#[cfg(loom)]
#[doc(hidden)]
pub fn set_owner_checks(on: bool) {
    LOOM_OWNER_CHECKS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether blocked calls make owner checks: always, except in loom models
/// that did not ask (`set_owner_checks`).
#[inline]
fn owner_checks() -> bool {
    #[cfg(not(loom))]
    return true;
    #[cfg(loom)]
    return LOOM_OWNER_CHECKS.load(std::sync::atomic::Ordering::Relaxed);
}

/// The sleeper count (bits 0–31) of a sleepers word.
#[inline]
pub(crate) const fn sleeping(word: u64) -> u64 {
    word & COUNT_MASK
}

/// One registration in a wipeable sleeper count: the generation it was
/// counted in. Shared by [`Signal`] and the [`Semaphore`](crate::Semaphore).
#[derive(Clone, Copy)]
pub(crate) struct Registration(u64);

/// Registers a sleeper in `word`. The read-modify-write is SeqCst: it is the
/// sleeper's half of every Dekker handshake its notifiers make.
#[inline]
pub(crate) fn register(word: &AtomicU64) -> Registration {
    // SYNC POINT: pairs with the notifiers' read-modify-writes (or, on the
    // light path, their loads behind the heavy barrier) of the same word.
    Registration(word.fetch_add(1, Ordering::SeqCst) & GEN_MASK)
}

/// Whether `reg` still counts in `word` (no wipe since it was made).
#[inline]
pub(crate) fn counted(word: &AtomicU64, reg: Registration) -> bool {
    word.load(Ordering::Acquire) & GEN_MASK == reg.0
}

/// Takes `reg` back out of `word`, unless a wipe already did.
pub(crate) fn unregister(word: &AtomicU64, reg: Registration) {
    let mut w = word.load(Ordering::Relaxed);
    // Bounded: each failure means someone else changed the word; a
    // hostile writer can at worst leave our registration counted (a
    // spurious wake per notify until the next wipe).
    for _ in 0..64 {
        if w & GEN_MASK != reg.0 || sleeping(w) == 0 {
            return;
        }
        match word.compare_exchange_weak(w, w - 1, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => w = now,
        }
    }
}

/// Counts a notify that found `word` saying someone sleeps and then woke
/// nobody (`woken == 0`), in `misses`; after [`MISS_LIMIT`] of them, wipes
/// the count (new generation, count 0, flag kept) and returns true: the
/// caller must then bump its futex word and wake everyone, so that every
/// live sleeper sees the wipe and registers again.
#[inline]
pub(crate) fn count_miss(word: &AtomicU64, misses: &AtomicU32, woken: usize) -> bool {
    // (Under loom, a model that never wipes does not count either.)
    woken == 0 && (cfg!(not(loom)) || miss_limit() != u32::MAX) && wipe_after_misses(word, misses)
}

#[cold]
fn wipe_after_misses(word: &AtomicU64, misses: &AtomicU32) -> bool {
    if misses.fetch_add(1, Ordering::Relaxed).saturating_add(1) < miss_limit() {
        return false;
    }
    misses.store(0, Ordering::Relaxed);
    let mut w = word.load(Ordering::Relaxed);
    for _ in 0..64 {
        let wiped = (w & SIGNAL_FLAG) | (w.wrapping_add(GEN_ONE) & GEN_MASK);
        // SYNC POINT: SeqCst, as a registration is: a sleeper registering
        // after the wipe is counted in the new generation; one registered
        // before it sees the new generation once it acquires the futex
        // word's bump that the caller makes next (Release), and registers
        // again before it re-checks and sleeps.
        match word.compare_exchange_weak(w, wiped, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(now) => w = now,
        }
    }
    false
}

/// One side's futex word and sleeper count (see the module docs).
#[repr(C)]
pub(crate) struct Signal {
    /// Bumped by every notifier that sees a sleeper; the futex word.
    pub(crate) epoch: AtomicU32,
    /// Notifies that found a sleeper counted and woke nobody, since the
    /// last wipe.
    misses: AtomicU32,
    /// Non-zero once a notifier of this side may use the cheap side of an
    /// asymmetric barrier ([`Signal::notify_light`]): sleepers must then make
    /// the heavy side ([`crate::membarrier::heavy`]) before they re-check.
    light: AtomicU32,
    _pad: AtomicU32,
    /// Generation and count of the sleepers, and the flag bit (see
    /// [`SIGNAL_FLAG`]).
    sleepers: AtomicU64,
}

impl Signal {
    /// Under loom only: elsewhere the block is zeroed in place (zero bytes are
    /// this value; see `init_at`).
    #[cfg(loom)]
    pub(crate) fn new() -> Signal {
        Signal {
            epoch: AtomicU32::new(0),
            misses: AtomicU32::new(0),
            light: AtomicU32::new(0),
            _pad: AtomicU32::new(0),
            sleepers: AtomicU64::new(0),
        }
    }

    /// Lets this process's notifiers of this side use
    /// [`notify_light`](Signal::notify_light), if it can register for heavy
    /// barriers. Call before the first notify.
    pub(crate) fn enable_light(&self) {
        if crate::membarrier::register() {
            // SYNC POINT: this SeqCst write and the sleeper's SeqCst
            // registration in `sleepers` then load of `light` (in
            // `block_checked`) are ordered in the single SeqCst order: a
            // sleeper that read 0 here registered before this write, and our
            // later plain loads of `sleepers` see it.
            self.light.fetch_or(1, Ordering::SeqCst);
        }
    }

    /// Whether notifiers may check this side with a plain load, so that
    /// whoever must be seen by them makes the heavy barrier.
    #[inline]
    pub(crate) fn is_light(&self) -> bool {
        self.light.load(Ordering::SeqCst) != 0
    }

    /// [`notify`](Signal::notify) for a notifier that called
    /// [`enable_light`](Signal::enable_light): if this process is registered
    /// for heavy barriers, a plain load of `sleepers` replaces the
    /// read-modify-write, because every sleeper makes the heavy barrier
    /// between registering and re-checking (`crate::membarrier`). Returns the
    /// word it read.
    #[inline]
    pub(crate) fn notify_light(&self) -> u64 {
        if !crate::membarrier::registered() {
            return self.notify();
        }
        // Keep the compiler from moving the publishing store after this
        // load; the processor's reordering is what the sleeper's heavy
        // barrier takes care of.
        crate::sync::compiler_fence(Ordering::SeqCst);
        let w = self.sleepers.load(Ordering::SeqCst);
        if sleeping(w) != 0 {
            self.wake(true);
        }
        w
    }

    /// Called after the notifier has published its change: wakes every
    /// sleeper, if there is one. No system call when nobody sleeps. Returns
    /// the word it read.
    #[inline]
    pub(crate) fn notify(&self) -> u64 {
        // SYNC POINT: this AcqRel read-modify-write pairs with the SeqCst
        // registration in `block_checked` (same word, so one reads the
        // other): either we see the sleeper, or it sees our published data.
        let w = self.sleepers.fetch_add(0, Ordering::AcqRel);
        if sleeping(w) != 0 {
            self.wake(true);
        }
        w
    }

    /// Wakes every sleeper unconditionally (used by `close`).
    #[cold]
    pub(crate) fn wake_all(&self) {
        self.wake(false);
    }

    /// Bumps the epoch and wakes every sleeper. With `counted` (a notifier
    /// that saw the count non-zero), a wake that finds nobody asleep counts
    /// towards a wipe of the count (module docs).
    #[cold]
    fn wake(&self, counted: bool) {
        // SYNC POINT: Release pairs with the Acquire load of `epoch` in
        // `block_checked`: a sleeper that reads the new epoch also sees what
        // we published (or wiped) before it.
        self.epoch.fetch_add(1, Ordering::Release);
        let woken = futex::wake_all(&self.epoch);
        if counted && count_miss(&self.sleepers, &self.misses, woken) {
            // Wiped: wake everyone again, so that every live sleeper sees
            // the new generation and registers again (module docs).
            self.epoch.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.epoch);
        }
    }

    /// Sets the flag bit with a SeqCst read-modify-write (a sleeper's
    /// registration, as far as the Dekker handshakes go) and returns the
    /// word as it was.
    #[inline]
    pub(crate) fn set_flag(&self) -> u64 {
        // SYNC POINT: SeqCst RMW, paired like a registration with the
        // notifiers' read of the word after their publishing store.
        self.sleepers.fetch_or(SIGNAL_FLAG, Ordering::SeqCst)
    }

    /// Whether the flag bit is set (Acquire: pairs with `set_flag`).
    #[inline]
    pub(crate) fn flag(&self) -> bool {
        self.sleepers.load(Ordering::Acquire) & SIGNAL_FLAG != 0
    }

    /// How many sleepers are counted now (a snapshot, for tests).
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn sleepers(&self) -> u64 {
        sleeping(self.sleepers.load(Ordering::Relaxed))
    }

    /// Test support: counts a sleeper that never sleeps and never leaves,
    /// as a process killed while blocked leaves its registration.
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn register_and_stop(&self) {
        register(&self.sleepers);
    }
}

/// What a queue side's readiness test found (`pop_ready`, `recv_ready`, ...,
/// for waiters on many objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The `try_` call would succeed or give a final answer now.
    Ready,
    /// It would block (empty, full).
    NotReady,
    /// The side's short lock is held at this moment (a byte queue), so the
    /// `try_` call would report empty / full: look again in a millisecond
    /// or two rather than spin or sleep long.
    Busy,
}

impl From<bool> for Readiness {
    fn from(ready: bool) -> Readiness {
        if ready {
            Readiness::Ready
        } else {
            Readiness::NotReady
        }
    }
}

/// How a blocked queue call waits for its condition (room, an item, a
/// grant), chosen per handle (`set_wait`). Every strategy honours the
/// caller's deadline and makes the periodic owner checks (dead claimants,
/// dead grant holders) that sleeping waiters make.
///
/// The numbers behind the [default](WaitStrategy::DEFAULT) are in
/// `BENCHMARKS.md` ("Wait strategies"): a blocking round trip that parks
/// costs two wake-ups (tens of microseconds on a virtual machine), one
/// that catches its partner while spinning costs what a polling round
/// trip costs (a few hundred nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Poll, with a pause instruction between looks, and never sleep:
    /// the lowest latency, and a whole core for as long as the wait lasts.
    Spin,
    /// Poll for `spin`, then yield the processor between looks
    /// (`sched_yield`) until `window` has passed since the wait began, then
    /// sleep on the futex until woken. A waiter left idle costs `window`
    /// of processor time and then nothing.
    Adaptive {
        /// How long to poll with pause instructions.
        spin: Duration,
        /// How long, counted from the start of the wait, before sleeping
        /// (a window shorter than `spin` means `spin`).
        window: Duration,
    },
    /// Sleep on the futex after one more look: no processor time while
    /// waiting, a wake-up per wait.
    Park,
}

impl WaitStrategy {
    /// The default of every handle: [`Adaptive`](WaitStrategy::Adaptive)
    /// with a 20 µs spin and a 100 µs window (chosen by measurement; see
    /// `BENCHMARKS.md`, "Wait strategies").
    pub const DEFAULT: WaitStrategy = WaitStrategy::Adaptive {
        spin: Duration::from_micros(20),
        window: Duration::from_micros(100),
    };
}

impl Default for WaitStrategy {
    fn default() -> WaitStrategy {
        WaitStrategy::DEFAULT
    }
}

/// How many looks at the condition the polling phase makes between two
/// readings of the clock (a reading costs about as much as a look and a
/// pause here; the phase ends late by at most this many looks).
#[cfg(not(loom))]
const LOOKS_PER_CLOCK: u32 = 8;

/// The polling phase of a wait, before any sleep: `Some(r)` if it ended it
/// (`r` is `None` when `deadline` passed), `None` if the caller must now
/// sleep. Under loom it polls once (a model has no time to spin in).
#[inline]
fn poll_phase<R>(
    strategy: WaitStrategy,
    deadline: Option<&Deadline>,
    attempt: &mut impl FnMut(bool) -> Option<R>,
) -> Option<Option<R>> {
    if let Some(r) = attempt(false) {
        return Some(Some(r));
    }
    #[cfg(loom)]
    {
        let _ = (strategy, deadline);
        None
    }
    #[cfg(not(loom))]
    {
        let (spin, window) = match strategy {
            WaitStrategy::Park => return None,
            WaitStrategy::Spin => (None, None),
            WaitStrategy::Adaptive { spin, window } => {
                if window.is_zero() && spin.is_zero() {
                    return None;
                }
                (
                    Some(Deadline::after(spin)),
                    Some(Deadline::after(window.max(spin))),
                )
            }
        };
        let interval = crate::lock::OWNER_CHECK_INTERVAL;
        let mut next_check = Deadline::after(interval);
        let mut yielding = false;
        loop {
            for _ in 0..LOOKS_PER_CLOCK {
                if yielding {
                    // SAFETY: sched_yield takes no arguments and cannot
                    // fail on Linux.
                    unsafe { libc::sched_yield() };
                } else {
                    crate::sync::spin_loop();
                }
                if let Some(r) = attempt(false) {
                    return Some(Some(r));
                }
            }
            let now = Deadline::now();
            if owner_checks() && now >= next_check {
                next_check = Deadline::after(interval);
                if let Some(r) = attempt(true) {
                    return Some(Some(r));
                }
            }
            if deadline.is_some_and(|d| now >= *d) {
                return Some(attempt(owner_checks()));
            }
            if window.is_some_and(|w| now >= w) {
                return None;
            }
            yielding = spin.is_some_and(|s| now >= s);
        }
    }
}

/// Makes the heavy side of the asymmetric barrier if `signal`'s notifiers
/// may use the light side; returns whether a notifier that checks with a
/// plain load is now sure to see what we wrote before (false if the kernel
/// refused the barrier).
#[inline]
pub(crate) fn heavy_if_light(signal: &Signal) -> bool {
    !signal.is_light() || crate::membarrier::heavy()
}

/// Runs `attempt` until it returns `Some` or `deadline` passes (`None`):
/// polling first as `strategy` says, then sleeping on `signal` between
/// attempts. `attempt` returns `None` for "would block" (full or empty);
/// `attempt(true)` also looks for a dead peer that keeps
/// the queue stuck (and repairs what it left). Such a check costs a system
/// call or two, so it is made at most once per
/// [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL) of waiting,
/// counted from when this call started to poll (the `strategy`'s polling
/// phase) and again from when it started to sleep, so that wake-ups from
/// other peers' progress cannot postpone it; sleeps are cut to end at the
/// next check. It is also made once when the caller's deadline passes, so
/// that short timed waits in a loop still recover. Under loom no check is
/// ever made (the models have no dead peers, and wall-clock time would
/// make executions differ).
#[cold]
pub(crate) fn block_checked<R>(
    signal: &Signal,
    strategy: WaitStrategy,
    deadline: Option<&Deadline>,
    mut attempt: impl FnMut(bool) -> Option<R>,
) -> Option<R> {
    if let Some(out) = poll_phase(strategy, deadline, &mut attempt) {
        return out;
    }
    let interval = crate::lock::OWNER_CHECK_INTERVAL;
    let mut next_check = Deadline::after(interval);
    // SYNC POINT: Acquire pairs with the Release bumps in `wake` (and the
    // wipe's): a sleeper that reads a bump sees what came before it, a wipe
    // included. Read before registering: a notifier that sees us bumps the
    // epoch after this read, so our wait below returns at once.
    let mut seen = signal.epoch.load(Ordering::Acquire);
    // SYNC POINT: pairs with the AcqRel read of `sleepers` in `notify`, and
    // (SeqCst) with the write of `light` in `enable_light`.
    let mut reg = register(&signal.sleepers);
    // A notifier may check for us with a plain load: make the heavy side of
    // the barrier, so that either our re-check below sees its item or its
    // load sees us. If the kernel will not, sleep in short slices instead.
    let mut slice_cap = !heavy_if_light(signal);
    let mut first = true;
    let out = loop {
        if !first {
            // SYNC POINT: as above.
            seen = signal.epoch.load(Ordering::Acquire);
            // A wipe since we registered bumped the epoch after it (so not
            // before `seen` of our first round, which we read before
            // registering): only later rounds need to look.
            if !counted(&signal.sleepers, reg) {
                // Wiped by notifiers that kept waking nobody: register
                // again, and make the barrier again, before re-checking
                // (module docs).
                reg = register(&signal.sleepers);
                slice_cap |= !heavy_if_light(signal);
            }
        }
        first = false;
        let check = owner_checks() && next_check.has_passed();
        if check {
            next_check = Deadline::after(interval);
        }
        if let Some(r) = attempt(check) {
            break Some(r);
        }
        if deadline.is_some_and(Deadline::has_passed) {
            break None;
        }
        let capped;
        let mut slice = futex::sleep_end(deadline, &next_check);
        if slice_cap && !futex::STRICT_WAKES {
            capped = Deadline::after(core::time::Duration::from_millis(1));
            if slice.map_or(true, |s| capped < *s) {
                slice = Some(&capped);
            }
        }
        if futex::wait(&signal.epoch, seen, slice) == WaitOutcome::TimedOut
            && deadline.is_some_and(Deadline::has_passed)
        {
            // A wake-up may have come with the deadline: take what it
            // offers rather than strand it, and look for a dead peer once.
            break attempt(owner_checks());
        }
    };
    unregister(&signal.sleepers, reg);
    out
}

/// The sleeper word of the [`Signal`] at `off` of `bytes`.
#[cfg(not(loom))]
pub(crate) fn signal_word_at(bytes: &[u8], off: usize) -> Option<u64> {
    super::word_at(
        bytes,
        off.checked_add(core::mem::offset_of!(Signal, sleepers))?,
    )
}

/// For waiters on many objects (`crate::waitable`): the sleeper word.
#[cfg_attr(loom, allow(dead_code))]
impl Signal {
    pub(crate) fn sleepers_word(&self) -> &AtomicU64 {
        &self.sleepers
    }
}
