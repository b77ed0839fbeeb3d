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

use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;

use crate::futex::{self, Deadline, WaitOutcome};
use crate::place::LayoutError;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// The first word of every queue control block: `b"SHMIPCQ1"`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMIPCQ1");
/// The layout version of the control blocks in this file. 2: MPMC slots
/// carry an owner word next to their sequence number, byte-queue records
/// a 16-byte header (state word and owner word). 3: `CLOSED` lives in the
/// word a claim must change (MPMC `enqueue`, byte-queue `tail`, the SPSC
/// ring's `not_empty` sleeper word) and the sleeper counts have
/// generations.
pub(crate) const VERSION: u32 = 3;
/// The largest capacity (slots or bytes) a queue may have: 2^31. Keeps
/// every position difference far from overflow and every index inside
/// `u32`, and keeps an MPMC slot's owner word unambiguous: it records 32
/// bits of a position, and positions one lap apart must differ there
/// ([`crate::mpmc`]). The one place that rule lives.
pub const MAX_CAPACITY: u64 = 1 << 31;
/// Positions (items or bytes ever passed through a queue) stay below this;
/// a larger one read from shared memory is corruption. At 2^62 there is
/// room to add any capacity without overflow, and no real queue gets there.
pub(crate) const MAX_POS: u64 = 1 << 62;

/// Which queue a control block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Kind {
    Spsc = 1,
    Mpmc = 2,
    Bytes = 3,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

macro_rules! simple_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $msg:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $($name::$variant => $msg,)*
                })
            }
        }

        impl core::error::Error for $name {}
    };
}

simple_error!(
    /// Why an item could not be pushed. The item is `Copy` (it is
    /// [`bytemuck::Pod`]), so the caller still has it.
    PushError {
        /// The queue is full (`try_push`).
        Full => "the queue is full",
        /// The queue was closed; it takes nothing more.
        Closed => "the queue is closed",
        /// The queue stayed full until the deadline.
        Timeout => "timed out waiting for room in the queue",
        /// The shared control block holds values no correct peer writes,
        /// or this process's claim was taken from it because its peers
        /// judged it dead (which takes forged peer bookkeeping); the item
        /// was then not delivered.
        Corrupted => "the queue's shared memory is corrupted",
    }
);

simple_error!(
    /// Why an item could not be popped.
    PopError {
        /// The queue is empty (`try_pop`).
        Empty => "the queue is empty",
        /// The queue was closed and everything in it has been taken.
        Closed => "the queue is closed and drained",
        /// The queue stayed empty until the deadline.
        Timeout => "timed out waiting for an item",
        /// The shared control block holds values no correct peer writes,
        /// or this process's claim was taken from it because its peers
        /// judged it dead (which takes forged peer bookkeeping); the item
        /// was then not delivered.
        Corrupted => "the queue's shared memory is corrupted",
    }
);

simple_error!(
    /// Why a message could not be sent (or space for it reserved).
    SendError {
        /// The message is longer than the queue's maximum message size.
        TooLarge => "the message is larger than the queue's maximum",
        /// There is no room for the message now (`try_send`).
        Full => "the queue has no room for the message",
        /// The queue was closed; it takes nothing more.
        Closed => "the queue is closed",
        /// No room appeared before the deadline.
        Timeout => "timed out waiting for room in the queue",
        /// The shared control block holds values no correct peer writes,
        /// or this process's claim was taken from it because its peers
        /// judged it dead (which takes forged peer bookkeeping); the item
        /// was then not delivered.
        Corrupted => "the queue's shared memory is corrupted",
    }
);

/// Why a message could not be received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// No message is ready (`try_recv`).
    Empty,
    /// The queue was closed and every message in it has been taken.
    Closed,
    /// No message arrived before the deadline.
    Timeout,
    /// The shared memory holds values no correct peer writes, or this
    /// process's claim was taken from it because its peers judged it dead
    /// (which takes forged peer bookkeeping); nothing was handed out.
    Corrupted,
    /// The next message is longer than the buffer offered to
    /// `recv_into`; it stays in the queue. Holds the message's length.
    BufferTooSmall(usize),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("the queue is empty"),
            RecvError::Closed => f.write_str("the queue is closed and drained"),
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::Corrupted => f.write_str("the queue's shared memory is corrupted"),
            RecvError::BufferTooSmall(n) => {
                write!(
                    f,
                    "the next message has {n} bytes, more than the buffer holds"
                )
            }
        }
    }
}

impl core::error::Error for RecvError {}

/// Why a queue could not be placed in, or found in, a stretch of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The bytes are misaligned or too short, or the parameters are invalid.
    Layout(LayoutError),
    /// The bytes do not start with a queue's magic number (not initialised,
    /// or not a queue at all).
    NotAQueue,
    /// A queue is there, but a different kind, layout version or element
    /// type than the one asked for.
    Incompatible(&'static str),
    /// The control block holds values no correct peer writes.
    Corrupted(&'static str),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Layout(e) => write!(f, "cannot place the queue: {e}"),
            QueueError::NotAQueue => f.write_str("the bytes hold no initialised queue"),
            QueueError::Incompatible(what) => write!(f, "incompatible queue: {what}"),
            QueueError::Corrupted(what) => write!(f, "corrupted queue: {what}"),
        }
    }
}

impl core::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            QueueError::Layout(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LayoutError> for QueueError {
    fn from(e: LayoutError) -> Self {
        QueueError::Layout(e)
    }
}

// ---------------------------------------------------------------------------
// Layout helpers
// ---------------------------------------------------------------------------

/// Keeps `T` on its own pair of cache lines (128 bytes: adjacent-line
/// prefetchers pull lines in pairs), as crossbeam's `CachePadded` does.
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two), or `None` on
/// overflow.
#[inline]
pub(crate) fn round_up(n: usize, align: usize) -> Option<usize> {
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// Builds a `Layout`, mapping failure to `InvalidParameters`.
pub(crate) fn layout(size: usize, align: usize) -> Result<core::alloc::Layout, LayoutError> {
    core::alloc::Layout::from_size_align(size, align).map_err(|_| LayoutError::InvalidParameters)
}

// ---------------------------------------------------------------------------
// The header every control block starts with
// ---------------------------------------------------------------------------

/// The self-description at the start of every queue control block. The
/// creator writes `magic` last (Release); an attacher reads it first
/// (Acquire) and then checks every other field against what it expects.
#[repr(C)]
pub(crate) struct Header {
    magic: AtomicU64,
    kind: AtomicU32,
    version: AtomicU32,
    elem_size: AtomicU32,
    elem_align: AtomicU32,
    pub(crate) words: [AtomicU64; 4],
    pub(crate) total: AtomicU64,
}

/// What an attacher found in a header that passed its checks.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct HeaderInfo {
    pub(crate) words: [u64; 4],
    pub(crate) total: u64,
}

impl Header {
    /// Under loom only: elsewhere the block is zeroed in place (zero bytes are
    /// this value; see `init_at`).
    #[cfg(loom)]
    pub(crate) fn new() -> Header {
        Header {
            magic: AtomicU64::new(0),
            kind: AtomicU32::new(0),
            version: AtomicU32::new(0),
            elem_size: AtomicU32::new(0),
            elem_align: AtomicU32::new(0),
            words: [
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
            ],
            total: AtomicU64::new(0),
        }
    }

    /// Fills in the description; `magic` last.
    pub(crate) fn publish(&self, kind: Kind, elem: (usize, usize), words: [u64; 4], total: usize) {
        self.kind.store(kind as u32, Ordering::Relaxed);
        self.version.store(VERSION, Ordering::Relaxed);
        self.elem_size.store(elem.0 as u32, Ordering::Relaxed);
        self.elem_align.store(elem.1 as u32, Ordering::Relaxed);
        for (w, v) in self.words.iter().zip(words) {
            w.store(v, Ordering::Relaxed);
        }
        self.total.store(total as u64, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load of `magic` in
        // `Header::check`: whoever sees the magic sees the whole queue
        // initialised.
        self.magic.store(MAGIC, Ordering::Release);
    }

    #[cfg_attr(loom, allow(dead_code))]
    /// Checks magic, kind, version and element type; returns the config
    /// words and total size for the caller to validate further.
    pub(crate) fn check(&self, kind: Kind, elem: (usize, usize)) -> Result<HeaderInfo, QueueError> {
        // SYNC POINT: Acquire pairs with the Release store in `publish`.
        if self.magic.load(Ordering::Acquire) != MAGIC {
            return Err(QueueError::NotAQueue);
        }
        if self.version.load(Ordering::Relaxed) != VERSION {
            return Err(QueueError::Incompatible("layout version differs"));
        }
        if self.kind.load(Ordering::Relaxed) != kind as u32 {
            return Err(QueueError::Incompatible("a different kind of queue"));
        }
        if self.elem_size.load(Ordering::Relaxed) as usize != elem.0
            || self.elem_align.load(Ordering::Relaxed) as usize != elem.1
        {
            return Err(QueueError::Incompatible(
                "element size or alignment differs",
            ));
        }
        let words = core::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
        Ok(HeaderInfo {
            words,
            total: self.total.load(Ordering::Relaxed),
        })
    }
}

// ---------------------------------------------------------------------------
// Sleeping and waking
// ---------------------------------------------------------------------------

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
    pub(crate) fn sleepers(&self) -> u64 {
        sleeping(self.sleepers.load(Ordering::Relaxed))
    }

    /// Test support: counts a sleeper that never sleeps and never leaves,
    /// as a process killed while blocked leaves its registration.
    pub(crate) fn register_and_stop(&self) {
        register(&self.sleepers);
    }
}

/// Runs `attempt` until it returns `Some` or `deadline` passes (`None`):
/// first as is, then in a brief spin, then sleeping on `signal` between
/// attempts. `attempt` returns `None` for "would block" (full or empty).
#[cold]
pub(crate) fn block<R>(
    signal: &Signal,
    deadline: Option<&Deadline>,
    mut attempt: impl FnMut() -> Option<R>,
) -> Option<R> {
    block_checked(signal, deadline, |_| attempt())
}

/// Makes the heavy side of the asymmetric barrier if `signal`'s notifiers
/// may use the light side; returns whether a notifier that checks with a
/// plain load is now sure to see what we wrote before (false if the kernel
/// refused the barrier).
#[inline]
pub(crate) fn heavy_if_light(signal: &Signal) -> bool {
    !signal.is_light() || crate::membarrier::heavy()
}

/// [`block`], where `attempt(true)` also looks for a dead peer that keeps
/// the queue stuck (and repairs what it left). Such a check costs a system
/// call or two, so it is made at most once per
/// [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL) of waiting,
/// counted from when this call started to sleep, so that wake-ups from
/// other peers' progress cannot postpone it; sleeps are cut to end at the
/// next check. It is also made once when the caller's deadline passes, so
/// that short timed waits in a loop still recover. Under loom no check is
/// ever made (the models have no dead peers, and wall-clock time would
/// make executions differ).
#[cold]
pub(crate) fn block_checked<R>(
    signal: &Signal,
    deadline: Option<&Deadline>,
    mut attempt: impl FnMut(bool) -> Option<R>,
) -> Option<R> {
    let mut out = None;
    if futex::spin_until(|| {
        out = attempt(false);
        out.is_some()
    }) {
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
        let check = cfg!(not(loom)) && next_check.has_passed();
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
            break attempt(cfg!(not(loom)));
        }
    };
    unregister(&signal.sleepers, reg);
    out
}

// ---------------------------------------------------------------------------
// Slot storage
// ---------------------------------------------------------------------------

/// One slot's storage: plain memory in a mapping, or a loom cell so that the
/// model sees every payload access.
#[cfg(not(loom))]
pub(crate) type Cell<T> = T;
/// One slot's storage: plain memory in a mapping, or a loom cell so that the
/// model sees every payload access.
#[cfg(loom)]
pub(crate) type Cell<T> = crate::sync::UnsafeCell<T>;

/// An array of `len` payload slots, accessed only by copying in and out
/// through raw pointers: no reference to a slot is ever formed, because a
/// peer may write any slot at any time.
pub(crate) struct Cells<T> {
    base: NonNull<Cell<T>>,
}

impl<T> Clone for Cells<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Cells<T> {}

impl<T: bytemuck::Pod> Cells<T> {
    /// # Safety
    ///
    /// `base` points at `len` slots that stay valid while this value (and
    /// its copies) are used; the caller of each method keeps `i` in bounds.
    pub(crate) unsafe fn new(base: NonNull<Cell<T>>) -> Self {
        Cells { base }
    }

    /// Copies slot `i` out.
    ///
    /// # Safety
    ///
    /// `i` is in bounds, and the queue protocol gives the caller the slot.
    #[inline]
    pub(crate) unsafe fn read(&self, i: usize) -> T {
        // SAFETY: in bounds and owned by the caller (contract).
        let cell = unsafe { self.base.as_ptr().add(i) };
        #[cfg(not(loom))]
        // SAFETY: in bounds, aligned (the array is aligned for T); a racing
        // writer can only leave bytes, a valid T (Pod) (`sys::copy`).
        return unsafe { crate::sys::copy::load_item(cell) };
        #[cfg(loom)]
        // SAFETY: as above; loom checks the access.
        return unsafe { (*cell).with(|p| p.read()) };
    }

    /// Copies `v` into slot `i`.
    ///
    /// # Safety
    ///
    /// As for [`Cells::read`].
    #[inline]
    pub(crate) unsafe fn write(&self, i: usize, v: T) {
        // SAFETY: in bounds and owned by the caller (contract).
        let cell = unsafe { self.base.as_ptr().add(i) };
        #[cfg(not(loom))]
        // SAFETY: in bounds, aligned, owned by the caller; `v` is ours.
        unsafe {
            crate::sys::copy::store_items(&v, cell, 1)
        };
        #[cfg(loom)]
        // SAFETY: as above; loom checks the access.
        unsafe {
            (*cell).with_mut(|p| p.write(v))
        };
    }

    /// Copies `dst.len()` slots starting at `i` out.
    ///
    /// # Safety
    ///
    /// `i..i + dst.len()` is in bounds and owned by the caller.
    #[inline]
    pub(crate) unsafe fn read_slice(&self, i: usize, dst: &mut [T]) {
        #[cfg(not(loom))]
        // SAFETY: the source range is in bounds and owned by the caller; the
        // destination is a distinct, caller-owned slice, so they do not
        // overlap.
        unsafe {
            crate::sys::copy::load_items(self.base.as_ptr().add(i), dst.as_mut_ptr(), dst.len())
        };
        #[cfg(loom)]
        for (k, d) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds and owned (contract).
            *d = unsafe { self.read(i + k) };
        }
    }

    /// Copies `src` into the slots starting at `i`.
    ///
    /// # Safety
    ///
    /// As for [`Cells::read_slice`].
    #[inline]
    pub(crate) unsafe fn write_slice(&self, i: usize, src: &[T]) {
        #[cfg(not(loom))]
        // SAFETY: as in read_slice, in the other direction.
        unsafe {
            crate::sys::copy::store_items(src.as_ptr(), self.base.as_ptr().add(i), src.len())
        };
        #[cfg(loom)]
        for (k, s) in src.iter().enumerate() {
            // SAFETY: in bounds and owned (contract).
            unsafe { self.write(i + k, *s) };
        }
    }
}

/// What keeps a queue's memory alive: nothing for caller-provided bytes
/// (the lifetime does it), a reference count for loom's boxed models.
#[cfg(not(loom))]
#[derive(Clone, Default)]
pub(crate) struct Keep;

/// What keeps a queue's memory alive: nothing for caller-provided bytes
/// (the lifetime does it), a reference count for loom's boxed models.
#[cfg(loom)]
#[derive(Clone)]
pub(crate) struct Keep(#[allow(dead_code)] pub(crate) std::sync::Arc<dyn Send + Sync>);

/// Loom's stand-in for a mapping: boxes it owns, declared shareable because
/// every access goes through loom's atomics and cells.
#[cfg(loom)]
pub(crate) struct Boxed<C, A, B>(pub(crate) C, pub(crate) A, pub(crate) B);

// SAFETY: the contents are accessed only through loom atomics and loom
// UnsafeCells under the queue protocols, which loom itself checks.
#[cfg(loom)]
unsafe impl<C, A, B> Send for Boxed<C, A, B> {}
// SAFETY: as for Send.
#[cfg(loom)]
unsafe impl<C, A, B> Sync for Boxed<C, A, B> {}

/// Marks a type as tied to lifetime `'a` and not automatically Send/Sync.
pub(crate) type Life<'a, T> = PhantomData<(&'a (), *const T)>;

// ---------------------------------------------------------------------------
// Configuration shared by the slot queues
// ---------------------------------------------------------------------------

/// What a new [`Spsc`](crate::spsc::Spsc) or [`Mpmc`](crate::mpmc::Mpmc)
/// queue holds: its capacity in items, a power of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// How many items the queue holds when full (a power of two).
    pub capacity: usize,
}

impl RingConfig {
    /// A configuration for `capacity` items.
    pub const fn new(capacity: usize) -> RingConfig {
        RingConfig { capacity }
    }

    /// Encodes the configuration as four words, for a wrapper to store in
    /// its own header: `[capacity, 0, 0, 0]`.
    pub const fn to_words(&self) -> [u64; 4] {
        [self.capacity as u64, 0, 0, 0]
    }

    /// Decodes [`RingConfig::to_words`]. Unknown non-zero words, or a
    /// capacity that does not fit `usize`, are `InvalidParameters`; the
    /// capacity itself is checked by the queue's `layout`.
    pub fn from_words(words: [u64; 4]) -> Result<RingConfig, LayoutError> {
        if words[1..] != [0, 0, 0] {
            return Err(LayoutError::InvalidParameters);
        }
        let capacity = usize::try_from(words[0]).map_err(|_| LayoutError::InvalidParameters)?;
        Ok(RingConfig { capacity })
    }

    /// Checks the capacity: a power of two in `min..=MAX_CAPACITY`.
    pub(crate) fn check(&self, min: usize) -> Result<(), LayoutError> {
        let c = self.capacity;
        if c < min || !c.is_power_of_two() || c as u64 > MAX_CAPACITY {
            return Err(LayoutError::parameter(
                "capacity",
                c as u64,
                crate::place::Rule::PowerOfTwo {
                    min: min as u64,
                    max: MAX_CAPACITY,
                },
            ));
        }
        Ok(())
    }

    /// [`RingConfig::check`], and that `T` can be a slot: not zero-sized,
    /// aligned to at most 128.
    pub(crate) fn check_for<T>(&self, min: usize) -> Result<(), LayoutError> {
        self.check(min)?;
        if size_of::<T>() == 0 {
            return Err(LayoutError::parameter(
                "item size",
                0,
                crate::place::Rule::Text("must be at least 1 byte"),
            ));
        }
        if align_of::<T>() > 128 {
            return Err(LayoutError::parameter(
                "item alignment",
                align_of::<T>() as u64,
                crate::place::Rule::AtMost {
                    max: 128,
                    why: "a slot starts on a 128-byte boundary",
                },
            ));
        }
        Ok(())
    }

    /// The error for a capacity whose slots do not fit the address space.
    pub(crate) fn too_large(&self) -> LayoutError {
        LayoutError::parameter(
            "capacity",
            self.capacity as u64,
            crate::place::Rule::Text("makes the queue larger than the address space"),
        )
    }
}

/// Test support: zeroed, 128-byte aligned heap bytes.
#[cfg(all(test, not(loom)))]
pub(crate) mod testbuf {
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    pub(crate) struct AlignedBuf {
        ptr: *mut u8,
        layout: Layout,
    }

    impl AlignedBuf {
        pub(crate) fn new(len: usize) -> AlignedBuf {
            let layout = Layout::from_size_align(len.max(1), 128).unwrap();
            // SAFETY: the layout has non-zero size.
            let ptr = unsafe { alloc_zeroed(layout) };
            assert!(!ptr.is_null());
            AlignedBuf { ptr, layout }
        }

        pub(crate) fn for_layout(l: core::alloc::Layout) -> AlignedBuf {
            assert!(l.align() <= 128);
            AlignedBuf::new(l.size())
        }

        pub(crate) fn as_mut_ptr(&self) -> *mut u8 {
            self.ptr
        }

        pub(crate) fn len(&self) -> usize {
            self.layout.size()
        }

        pub(crate) fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: ptr is valid for len bytes, zero-initialised, owned.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
        }
    }

    impl Drop for AlignedBuf {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.ptr, self.layout) }
        }
    }

    // SAFETY: a plain owned allocation.
    unsafe impl Send for AlignedBuf {}
    // SAFETY: shared use goes through the queues' atomics.
    unsafe impl Sync for AlignedBuf {}
}

// ---------------------------------------------------------------------------
// Looking at a control block without attaching
// ---------------------------------------------------------------------------

/// What a queue's control block says, decoded from a *copy* of its bytes
/// ([`mpmc::state_of`](crate::mpmc::state_of),
/// [`spsc::state_of`](crate::spsc::state_of),
/// [`bytes::state_of`](crate::bytes::state_of)): for tools that look at a
/// queue in shared memory without attaching to it or writing a byte.
///
/// The positions are the raw counters (items for the typed queues, bytes
/// for a byte queue), as any peer may have written them: nothing in here
/// is trusted, and a copy taken while the queue runs may mix moments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingState {
    /// The producers' position: the next one a push (or reservation)
    /// claims, without the closed bit.
    pub tail: u64,
    /// The consumers' position: the next one a pop (or receive) claims.
    pub head: u64,
    /// Whether the queue has been closed.
    pub closed: bool,
    /// Sleepers counted on the consumers' side (waiting for items).
    pub consumer_sleepers: u64,
    /// Sleepers counted on the producers' side (waiting for room).
    pub producer_sleepers: u64,
}

impl RingState {
    /// Items (or bytes) between the consumers and the producers, clamped
    /// to `capacity`: what `len()` on a handle would say.
    pub fn len(&self, capacity: u64) -> u64 {
        self.tail.saturating_sub(self.head).min(capacity)
    }
}

/// The native-endian `u64` at `off` of `bytes`, if it lies inside.
#[cfg(not(loom))]
pub(crate) fn word_at(bytes: &[u8], off: usize) -> Option<u64> {
    let w = bytes.get(off..off.checked_add(8)?)?;
    Some(u64::from_ne_bytes(w.try_into().ok()?))
}

/// The sleeper word of the [`Signal`] at `off` of `bytes`.
#[cfg(not(loom))]
pub(crate) fn signal_word_at(bytes: &[u8], off: usize) -> Option<u64> {
    word_at(
        bytes,
        off.checked_add(core::mem::offset_of!(Signal, sleepers))?,
    )
}
