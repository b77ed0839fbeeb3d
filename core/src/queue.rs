//! What the three queues share: errors, the control-block header, the
//! sleep/wake protocol, and the storage that slot payloads live in.
//!
//! # The sleep/wake protocol
//!
//! Each side of a queue that can wait ("not empty" for consumers, "not
//! full" for producers) has a `Signal`: two 32-bit words, `epoch` (the
//! futex word) and `sleepers`.
//!
//! | step | sleeper | notifier |
//! |---|---|---|
//! | 1 | `sleepers += 1` (AcqRel RMW) | publish the data (Release) |
//! | 2 | `seen = epoch` (Acquire) | `s = sleepers + 0` (AcqRel RMW) |
//! | 3 | re-check the queue | if `s != 0`: `epoch += 1` (Release), `FUTEX_WAKE` all |
//! | 4 | `FUTEX_WAIT(epoch, seen)` | |
//!
//! Both step-2 RMWs of the notifier and step-1 RMW of the sleeper act on the
//! same word, so they are totally ordered. If the notifier's comes first, the
//! sleeper's increment reads from it (a release sequence), so the published
//! data is visible to the sleeper's re-check in step 3. If the sleeper's
//! comes first, the notifier sees `s != 0` and bumps the epoch; the sleeper
//! then either read the new epoch in step 2 (and with it the data) or the
//! kernel finds `epoch != seen` in step 4 and does not sleep. No wake-up is
//! lost, and a notifier makes no system call while nobody sleeps. This uses
//! only acquire/release read-modify-writes, which loom models exactly.
//!
//! Wakes are broadcast. The slots of these queues are handed out in order, so
//! the one waiter a `FUTEX_WAKE(1)` picks may find its slot still busy (a
//! slower peer holds the one before it) and go back to sleep, while the wake
//! that would have let another waiter proceed is gone. Waking every sleeper
//! costs a herd only when many sleep, and never costs anything when none do.

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
/// a 16-byte header (state word and owner word).
pub(crate) const VERSION: u32 = 2;
/// The largest capacity (slots or bytes) a queue may have. Keeps every
/// position difference far from overflow and every index inside `u32`.
pub(crate) const MAX_CAPACITY: u64 = 1 << 32;
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
        /// The shared control block holds values no correct peer writes.
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
        /// The shared control block holds values no correct peer writes.
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
        /// The shared control block holds values no correct peer writes.
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
    /// The shared memory holds values no correct peer writes.
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

/// One side's futex word and sleeper count (see the module docs).
#[repr(C)]
pub(crate) struct Signal {
    /// Bumped by every notifier that sees a sleeper; the futex word.
    pub(crate) epoch: AtomicU32,
    /// How many threads are in the slow path of a blocking call on this side.
    sleepers: AtomicU32,
    /// Non-zero once a notifier of this side may use the cheap side of an
    /// asymmetric barrier ([`Signal::notify_light`]): sleepers must then make
    /// the heavy side ([`crate::membarrier::heavy`]) before they re-check.
    light: AtomicU32,
}

impl Signal {
    pub(crate) fn new() -> Signal {
        Signal {
            epoch: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            light: AtomicU32::new(0),
        }
    }

    /// Lets this process's notifiers of this side use
    /// [`notify_light`](Signal::notify_light), if it can register for heavy
    /// barriers. Call before the first notify.
    pub(crate) fn enable_light(&self) {
        if crate::membarrier::register() {
            // SYNC POINT: this SeqCst write and the sleeper's SeqCst
            // increment of `sleepers` then load of `light` (in
            // `block_checked`) are ordered in the single SeqCst order: a
            // sleeper that read 0 here registered before this write, and our
            // later plain loads of `sleepers` see it.
            self.light.fetch_or(1, Ordering::SeqCst);
        }
    }

    /// [`notify`](Signal::notify) for a notifier that called
    /// [`enable_light`](Signal::enable_light): if this process is registered
    /// for heavy barriers, a plain load of `sleepers` replaces the
    /// read-modify-write, because every sleeper makes the heavy barrier
    /// between registering and re-checking (`crate::membarrier`).
    #[inline]
    pub(crate) fn notify_light(&self) {
        if !crate::membarrier::registered() {
            return self.notify();
        }
        // Keep the compiler from moving the publishing store after this
        // load; the processor's reordering is what the sleeper's heavy
        // barrier takes care of.
        crate::sync::compiler_fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            self.wake_all();
        }
    }

    /// Called after the notifier has published its change: wakes every
    /// sleeper, if there is one. No system call when nobody sleeps.
    #[inline]
    pub(crate) fn notify(&self) {
        // SYNC POINT: this AcqRel read-modify-write pairs with the AcqRel
        // increment of `sleepers` in `block` (same word, so one reads the
        // other): either we see the sleeper, or it sees our published data.
        if self.sleepers.fetch_add(0, Ordering::AcqRel) != 0 {
            self.wake_all();
        }
    }

    /// Wakes every sleeper unconditionally (used by `close`).
    #[cold]
    pub(crate) fn wake_all(&self) {
        // SYNC POINT: Release pairs with the Acquire load of `epoch` in
        // `block`: a sleeper that reads the new epoch also sees what we
        // published before it.
        self.epoch.fetch_add(1, Ordering::Release);
        futex::wake_all(&self.epoch);
    }

    /// Whether any thread is in the slow path (a snapshot, for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn sleepers(&self) -> u32 {
        self.sleepers.load(Ordering::Relaxed)
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
    // SYNC POINT: pairs with the AcqRel read of `sleepers` in `notify`, and
    // (SeqCst) with the write of `light` in `enable_light`.
    signal.sleepers.fetch_add(1, Ordering::SeqCst);
    // A notifier may check for us with a plain load: make the heavy side of
    // the barrier, so that either our re-check below sees its item or its
    // load sees us. If the kernel will not, sleep in short slices instead.
    let slice_cap = if signal.light.load(Ordering::SeqCst) != 0 && !crate::membarrier::heavy() {
        Some(core::time::Duration::from_millis(1))
    } else {
        None
    };
    let out = loop {
        // SYNC POINT: Acquire pairs with the Release bump in `wake_all`.
        let seen = signal.epoch.load(Ordering::Acquire);
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
        let mut slice = match deadline {
            Some(d) if *d < next_check => d,
            _ => &next_check,
        };
        if let Some(cap) = slice_cap {
            capped = Deadline::after(cap);
            if capped < *slice {
                slice = &capped;
            }
        }
        if futex::wait(&signal.epoch, seen, Some(slice)) == WaitOutcome::TimedOut
            && deadline.is_some_and(Deadline::has_passed)
        {
            // A wake-up may have come with the deadline: take what it
            // offers rather than strand it, and look for a dead peer once.
            break attempt(cfg!(not(loom)));
        }
    };
    signal.sleepers.fetch_sub(1, Ordering::AcqRel);
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

impl<T: Copy> Cells<T> {
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
        // SAFETY: in bounds, aligned (the array is aligned for T), and T is
        // Pod, so any bytes are a valid value.
        return unsafe { cell.read() };
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
        // SAFETY: in bounds, aligned, owned by the caller.
        unsafe {
            cell.write(v)
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
            core::ptr::copy_nonoverlapping(self.base.as_ptr().add(i), dst.as_mut_ptr(), dst.len())
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
            core::ptr::copy_nonoverlapping(src.as_ptr(), self.base.as_ptr().add(i), src.len())
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
