//! A single-producer single-consumer ring of [`Pod`] items.
//!
//! The queue is a control block followed by `capacity` slots (a power of
//! two):
//!
//! | field | written by | meaning |
//! |---|---|---|
//! | `header` | creator | magic, kind, element size/alignment, capacity, total size |
//! | `closed` | anyone | non-zero once a close is done: a hint (the flag below is the truth) |
//! | `line` | producer or consumer, once | where the close ended the queue (below) |
//! | `tail` | producer | items ever pushed (a `u64` position, never wraps) |
//! | `head` | consumer | items ever popped |
//! | `not_empty`, `not_full` | both | sleep/wake words (see [`crate::queue`]); `not_empty`'s flag bit is `CLOSED` |
//!
//! `tail` and `head` sit on cache lines of their own. As in rtrb, each handle
//! keeps its own index and a cached copy of the other side's, and reads the
//! shared one only when the cached copy says full (or empty). Slot `i` of
//! position `p` is `p & (capacity - 1)`.
//!
//! Nothing inside the shared layout is a pointer, so the queue works at any
//! address in any process. Each handle keeps its own copy of the geometry,
//! checked once when it attaches; indices read from shared memory are
//! checked against it on every read (a position going backwards, or more
//! items than slots, is [`PushError::Corrupted`] / [`PopError::Corrupted`]).
//!
//! # Closing
//!
//! Once the consumer has been told `Closed`, no push that returned `Ok` may
//! be left in the ring or arrive later. The producer's push is a plain
//! store of `tail`, with no read-modify-write on the fast path, so a close
//! (from the consumer, typically) cannot stop a push that already looked
//! and found the queue open. Instead the push finds out afterwards, at no
//! cost: `CLOSED` is the flag bit of the `not_empty` sleeper word, which
//! every push reads right after publishing, to see whether to wake the
//! consumer.
//!
//! - `close` sets the flag with a SeqCst read-modify-write, as a sleeper
//!   registers. The consumer, before it decides "closed and drained", does
//!   the same (and the heavy barrier, where pushes read the word with a
//!   plain load: the sleep/wake handshake of [`crate::queue`], unchanged).
//!   So for every push in flight, either the consumer's re-read of `tail`
//!   sees it, or the push's read of the word sees the flag.
//! - A push that sees the flag *arbitrates*: it compare-and-swaps `line`
//!   from "undecided" to its own `tail`. The consumer decides the same way,
//!   with the `tail` it read. The first to write `line` wins: a push whose
//!   items lie below the line returns `Ok` (the consumer drains them before
//!   it reports `Closed`), one whose items lie beyond it returns `Closed`,
//!   and the consumer never hands out an item at or beyond the line.
//!
//! | push's read of the word | consumer's re-read of `tail` | line | push returns |
//! |---|---|---|---|
//! | no flag | sees the push (handshake) | includes it | `Ok` |
//! | flag, wins the arbitration | — | its `tail` | `Ok` |
//! | flag, loses to a consumer that saw it | sees the push | includes it | `Ok` |
//! | flag, loses to a consumer that did not | not yet | below it | `Closed` |
//!
//! A push that looks once the close is done refuses at once (it checks a
//! `closed` hint on a line nobody writes, set after the flag), and so does
//! every push of a producer that has arbitrated once: a line the producer
//! drew is its own last `tail`, so no item beyond it is ever published and
//! the consumer need not look for that line. The line is in shared memory,
//! so a consumer (or producer) taking the role over later keeps it.
//!
//! # Crashes
//!
//! A process killed mid-push or mid-pop costs nothing but what that call
//! was moving: [`Producer::push_slice`] copies the whole batch in and then
//! publishes it with a single Release store of `tail`, so the consumer
//! sees all of it or none of it, never a torn item; [`Consumer::pop_slice`]
//! likewise frees its batch with one store of `head` after copying out, so
//! a consumer killed mid-pop leaves the batch in the ring for the next
//! consumer. Who may be the one producer and the one consumer is decided
//! outside the core (the `shmipc` crate's role claims, which a dead holder
//! does not keep).

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use crate::futex::Deadline;
use crate::peers::{self, End, Peers};
use crate::place::LayoutError;
use crate::queue::WaitStrategy;
#[cfg_attr(loom, allow(unused_imports))]
use crate::queue::{
    block_checked, control, heavy_if_light, round_up, wake_others, CachePadded, Cell, Cells,
    ControlHeader, Ends, Keep, Life, PopError, PushError, QueueError, QueueKind, RingConfig,
    Signal, MAX_POS, SIGNAL_FLAG,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

#[repr(C)]
struct Control {
    /// The header and the words written rarely, on the first lines.
    lead: CachePadded<Lead>,
    tail: CachePadded<AtomicU64>,
    head: CachePadded<AtomicU64>,
    /// Consumers sleep here; pushes notify.
    not_empty: CachePadded<Signal>,
    /// Producers sleep here; pops notify.
    not_full: CachePadded<Signal>,
}

/// The first fields of [`Control`], padded to lines of their own like the
/// rest, so that every byte of the block lies in a [`CachePadded`].
#[repr(C)]
struct Lead {
    header: ControlHeader,
    /// Non-zero once a close has set `CLOSED` (the flag of `not_empty`'s
    /// sleeper word): a hint on a line nobody writes, so that a push's
    /// check before it copies costs no more than it did before `CLOSED`
    /// moved into the sleeper word.
    closed: AtomicU32,
    /// The gap before `line`, as an atomic nothing touches rather than
    /// padding: a peer may write it while a `&Lead` lives (the union of
    /// [`CachePadded`] covers the block, not the `&Lead` its deref gives).
    _gap: AtomicU32,
    /// Where the close put the end of the queue: 0 while undecided, else
    /// the last position that counts, plus one (module docs, "Closing").
    line: AtomicU64,
    /// Endpoint flags and departures (`queue/ends.rs`), in what was
    /// padding before `tail`.
    ends: AtomicU64,
}

// The layout of existing segments: `_gap` fills what was padding.
#[cfg(not(loom))]
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Lead, closed) == 64 && offset_of!(Lead, _gap) == 68);
    assert!(offset_of!(Lead, line) == 72 && offset_of!(Lead, ends) == 80);
    assert!(size_of::<Lead>() == 88 && size_of::<Control>() == 5 * 128);
};

impl Control {
    /// Under loom only: elsewhere the block is zeroed in place (zero bytes are
    /// this value; see `init_at`).
    #[cfg(loom)]
    fn new() -> Control {
        Control {
            lead: CachePadded::new(Lead {
                header: ControlHeader::new(),
                closed: AtomicU32::new(0),
                _gap: AtomicU32::new(0),
                line: AtomicU64::new(0),
                ends: AtomicU64::new(0),
            }),
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            not_empty: CachePadded::new(Signal::new()),
            not_full: CachePadded::new(Signal::new()),
        }
    }

    fn close(&self) {
        // SYNC POINT: a SeqCst read-modify-write of the word every push
        // reads after publishing (module docs, "Closing"); the flag also
        // pairs with the Acquire loads in `Producer::free` and
        // `Consumer::available`.
        self.not_empty.set_flag();
        // SYNC POINT: Release pairs with the Acquire load in `closed_hint`:
        // whoever sees the hint sees the flag.
        self.lead.closed.store(1, Ordering::Release);
        self.not_empty.wake_all();
        self.not_full.wake_all();
    }

    fn is_closed(&self) -> bool {
        self.not_empty.flag()
    }

    /// Whether a close has finished setting the flag (see `closed`).
    #[inline]
    fn closed_hint(&self) -> bool {
        self.lead.closed.load(Ordering::Acquire) != 0
    }

    /// The line as recorded: `None` while undecided.
    fn line(&self) -> Option<u64> {
        // SYNC POINT: Acquire pairs with the AcqRel compare-and-swaps that
        // decide it (`Producer::arbitrate`, `Consumer::decide_closed`).
        self.lead.line.load(Ordering::Acquire).checked_sub(1)
    }

    /// Items in the queue now (a snapshot, clamped to `cap`).
    fn len(&self, cap: u64) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        tail.saturating_sub(head).min(cap) as usize
    }
}

/// What both handles of the ring tell about it, and how either closes it:
/// written once, for [`Producer`] and [`Consumer`] alike.
macro_rules! ring_state {
    () => {
        /// How many items the queue holds when full.
        pub fn capacity(&self) -> usize {
            self.cap as usize
        }

        /// Items in the queue now (a snapshot).
        pub fn len(&self) -> usize {
            self.ctrl.len(self.cap)
        }

        /// Whether the queue is empty now (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the queue is full now (a snapshot).
        pub fn is_full(&self) -> bool {
            self.len() == self.cap as usize
        }

        /// Closes the queue: pushes fail from now on, pops drain what is left,
        /// and every sleeper on either side is woken.
        pub fn close(&self) {
            self.ctrl.close()
        }

        /// Whether the queue has been closed.
        pub fn is_closed(&self) -> bool {
            self.ctrl.is_closed()
        }

        dead_sleeper_hooks!();
    };
}

/// The SPSC ring's constructors; the queue itself is used through its two
/// handles, [`Producer`] and [`Consumer`].
///
/// ```
/// use shmipc_core::spsc::Spsc;
/// use shmipc_core::RingConfig;
///
/// #[repr(C, align(128))]
/// struct Bytes([u8; 2048]);
/// let mut mem = Bytes([0; 2048]);
///
/// let config = RingConfig::new(16);
/// assert!(Spsc::<u64>::layout(config).unwrap().size() <= 2048);
/// let (mut tx, mut rx) = Spsc::<u64>::new_in(&mut mem.0, config).unwrap();
/// tx.push(7).unwrap();
/// assert_eq!(tx.push_slice(&[8, 9]).unwrap(), 2);
/// assert_eq!(rx.pop().unwrap(), 7);
/// let mut out = [0u64; 4];
/// assert_eq!(rx.pop_slice(&mut out).unwrap(), 2);
/// assert_eq!(&out[..2], &[8, 9]);
/// tx.close();
/// assert!(rx.try_pop().is_err());
/// ```
pub struct Spsc<T>(PhantomData<T>);

impl<T: Pod> Spsc<T> {
    fn slots_offset() -> usize {
        // Control is a multiple of 128 bytes; T's alignment is checked to be
        // at most 128 in `layout`, so this is exact.
        size_of::<Control>()
    }

    /// The size and alignment of a queue with `config`.
    ///
    /// Fails with a [`LayoutError::Parameter`] naming what is wrong: a
    /// capacity that is zero, not a power of two or above the maximum, a
    /// zero-sized `T` or one aligned to more than 128 bytes, or a size that
    /// overflows.
    pub fn layout(config: RingConfig) -> Result<Layout, LayoutError> {
        config.check_for::<T>(1)?;
        let size = config
            .capacity
            .checked_mul(size_of::<T>())
            .and_then(|s| s.checked_add(Self::slots_offset()))
            .and_then(|s| round_up(s, 128))
            .ok_or(config.too_large())?;
        crate::queue::layout(size, align_of::<Control>())
    }

    /// Writes a new, empty queue at `ptr` and returns its two handles.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for reads and writes of `len` bytes for `'a`; nobody
    /// else uses those bytes while this runs; afterwards they are accessed
    /// only through this module's handles (in this or other processes), and
    /// at most one [`Producer`] and one [`Consumer`] exist at a time.
    #[cfg(not(loom))]
    pub unsafe fn init_at<'a>(
        ptr: *mut u8,
        len: usize,
        config: RingConfig,
    ) -> Result<(Producer<'a, T>, Consumer<'a, T>), QueueError> {
        let l = Self::layout(config)?;
        crate::place::check(ptr, len, l.size(), l.align())?;
        let ctrl = ptr.cast::<Control>();
        // SAFETY: aligned and large enough (checked), exclusive (contract).
        // Zeroed, not written as a struct: every field of `Control::new()`
        // is an atomic holding 0, so zero bytes are that value, and a typed
        // write would copy the struct's padding from the stack into shared
        // memory (this process's addresses, for any reader to see).
        unsafe { ptr.write_bytes(0, size_of::<Control>()) };
        // SAFETY: the slot area lies inside the checked length; zeroing it
        // means no slot is ever read uninitialised, even by a pop that a
        // corrupted index sends to a slot never written.
        unsafe {
            ptr.add(Self::slots_offset())
                .write_bytes(0, config.capacity * size_of::<T>())
        };
        // SAFETY: initialised just above; valid for 'a (contract).
        let ctrl: &'a Control = unsafe { &*ctrl };
        ctrl.lead.header.publish(
            QueueKind::Spsc,
            (size_of::<T>(), align_of::<T>()),
            config.to_words(),
            l.size(),
        );
        // SAFETY: as above, the slot area is in bounds and aligned for T.
        let cells = unsafe { Self::cells(ptr) };
        let cap = config.capacity as u64;
        Ok((
            Producer::new(ctrl, cells, cap, Keep),
            Consumer::new(ctrl, cells, cap, Keep),
        ))
    }

    /// # Safety
    ///
    /// `ptr` starts a checked layout.
    #[cfg(not(loom))]
    unsafe fn cells(ptr: *mut u8) -> Cells<T> {
        // SAFETY: in bounds of the checked layout (contract), non-null.
        unsafe {
            Cells::new(NonNull::new_unchecked(
                ptr.add(Self::slots_offset()).cast::<Cell<T>>(),
            ))
        }
    }

    /// Checks the queue someone initialised at `ptr` (magic, kind, element
    /// type, capacity and total size against `len`), builds one of its
    /// handles with `end`, and checks the positions (head, tail) the handle
    /// read with `positions`: the one body of both `attach_*_owned`.
    ///
    /// # Safety
    ///
    /// As for [`Spsc::init_at`], except that the bytes were initialised.
    #[cfg(not(loom))]
    unsafe fn attach_end<'a, E>(
        ptr: *mut u8,
        len: usize,
        end: impl FnOnce(&'a Control, Cells<T>, u64) -> E,
        positions: impl FnOnce(&E) -> (u64, u64),
    ) -> Result<E, QueueError> {
        // SAFETY: forwarded contract; Control is made of atomics only.
        let (ctrl, config) = unsafe {
            control::attach(
                ptr,
                len,
                |c: &Control| &c.lead.header,
                QueueKind::Spsc,
                (size_of::<T>(), align_of::<T>()),
                RingConfig::from_words,
                Self::layout,
            )?
        };
        let cap = config.capacity as u64;
        // SAFETY: the whole layout is in bounds (checked just above).
        let e = end(ctrl, unsafe { Self::cells(ptr) }, cap);
        let (head, tail) = positions(&e);
        if tail.wrapping_sub(head) > cap || head > tail || tail > MAX_POS {
            return Err(QueueError::Corrupted("head and tail"));
        }
        Ok(e)
    }

    /// Attaches the producing side of a queue another party initialised.
    ///
    /// # Safety
    ///
    /// As for [`Spsc::init_at`], except that the bytes hold a queue already.
    #[cfg(not(loom))]
    pub unsafe fn attach_producer<'a>(
        ptr: *mut u8,
        len: usize,
    ) -> Result<Producer<'a, T>, QueueError> {
        // SAFETY: forwarded contract.
        unsafe { Self::attach_producer_owned(ptr, len, Keep) }
    }

    /// [`Spsc::attach_producer`] for a handle that owns its memory: `owner`
    /// (a mapping, with the role it holds) keeps the bytes alive, and the
    /// handle holds it, so it can be moved anywhere and live as long as it
    /// likes.
    ///
    /// # Safety
    ///
    /// As for [`Spsc::attach_producer`], with the bytes valid for as long
    /// as `owner` lives, instead of for `'a`.
    #[cfg(not(loom))]
    pub unsafe fn attach_producer_owned<'a, K>(
        ptr: *mut u8,
        len: usize,
        owner: K,
    ) -> Result<Producer<'a, T, K>, QueueError> {
        let end = |c, s, n| Producer::new(c, s, n, owner);
        // SAFETY: forwarded contract.
        unsafe { Self::attach_end(ptr, len, end, |p| (p.head, p.tail)) }
    }

    /// Attaches the consuming side of a queue another party initialised.
    ///
    /// # Safety
    ///
    /// As for [`Spsc::attach_producer`].
    #[cfg(not(loom))]
    pub unsafe fn attach_consumer<'a>(
        ptr: *mut u8,
        len: usize,
    ) -> Result<Consumer<'a, T>, QueueError> {
        // SAFETY: forwarded contract.
        unsafe { Self::attach_consumer_owned(ptr, len, Keep) }
    }

    /// [`Spsc::attach_consumer`] for a handle that owns its memory (see
    /// [`Spsc::attach_producer_owned`]).
    ///
    /// # Safety
    ///
    /// As for [`Spsc::attach_producer_owned`].
    #[cfg(not(loom))]
    pub unsafe fn attach_consumer_owned<'a, K>(
        ptr: *mut u8,
        len: usize,
        owner: K,
    ) -> Result<Consumer<'a, T, K>, QueueError> {
        let end = |c, s, n| Consumer::new(c, s, n, owner);
        // SAFETY: forwarded contract.
        unsafe { Self::attach_end(ptr, len, end, |c| (c.head, c.tail)) }
    }

    /// A new queue in bytes the caller owns (single-process use and tests).
    /// The bytes must be aligned to 128 and at least
    /// [`Spsc::layout`]`(config).size()` long.
    #[cfg(not(loom))]
    pub fn new_in(
        bytes: &mut [u8],
        config: RingConfig,
    ) -> Result<(Producer<'_, T>, Consumer<'_, T>), QueueError> {
        let len = bytes.len();
        // SAFETY: the exclusive borrow makes the bytes ours for its lifetime,
        // and both handles borrow from it, so nothing else touches them.
        unsafe { Self::init_at(bytes.as_mut_ptr(), len, config) }
    }

    /// A new queue in boxes, for loom models.
    ///
    /// # Panics
    ///
    /// If `config` is invalid.
    #[cfg(loom)]
    pub fn new_boxed(config: RingConfig) -> (Producer<'static, T>, Consumer<'static, T>) {
        extern crate std;
        use std::boxed::Box;
        Self::layout(config).expect("invalid config");
        let ctrl = Box::new(Control::new());
        let cells: Box<[Cell<T>]> = (0..config.capacity)
            .map(|_| Cell::new(T::zeroed()))
            .collect();
        // The same self-description as in shared memory (size: the
        // layout a mapping would need).
        ctrl.lead.header.publish(
            QueueKind::Spsc,
            (size_of::<T>(), align_of::<T>()),
            config.to_words(),
            Self::layout(config).map_or(0, |l| l.size()),
        );
        let ctrl_ptr: *const Control = &*ctrl;
        let cells_ptr = NonNull::from(&cells[0]);
        let keep = Keep(std::sync::Arc::new(crate::queue::Boxed(ctrl, cells, ())));
        // SAFETY: the boxes live as long as `keep`, which each handle holds.
        let ctrl: &'static Control = unsafe { &*ctrl_ptr };
        // SAFETY: `capacity` cells, kept alive by `keep`.
        let cells = unsafe { Cells::new(cells_ptr) };
        let cap = config.capacity as u64;
        (
            Producer::new(ctrl, cells, cap, keep.clone()),
            Consumer::new(ctrl, cells, cap, keep),
        )
    }
}

/// The pushing half of an [`Spsc`] queue.
pub struct Producer<'a, T, K = Keep> {
    ctrl: &'a Control,
    cells: Cells<T>,
    cap: u64,
    /// Our own position (trusted: only we write the shared tail).
    tail: u64,
    /// The consumer's position as last read; never ahead of the real one.
    head: u64,
    /// Set once this handle has seen the close after publishing (and
    /// arbitrated), or found the line drawn when it attached: no push of
    /// it may publish again, since a line the producer drew is one the
    /// consumer does not look at (module docs, "Closing").
    ended: bool,
    /// The peers of the memory (`queue/ends.rs`).
    peers: &'a dyn Peers,
    /// Which end this handle holds, once recorded (`queue/ends.rs`).
    ends: Ends,
    /// How this handle's blocking calls wait.
    wait: WaitStrategy,
    /// What keeps the memory alive (see [`Keep`]).
    _keep: K,
    _life: Life<'a, T>,
}

// SAFETY: the handle owns the right to push; the memory it points at is
// shared through atomics, and the items are Pod, hence Send.
unsafe impl<T: Send, K: Send> Send for Producer<'_, T, K> {}

impl<'a, T: Pod, K> Producer<'a, T, K> {
    /// What keeps the memory alive: [`Keep`] for a handle that borrows
    /// it, the owner given to an `attach_owned` constructor otherwise.
    pub fn owner(&self) -> &K {
        &self._keep
    }

    fn new(ctrl: &'a Control, cells: Cells<T>, cap: u64, keep: K) -> Self {
        ctrl.not_empty.enable_light();
        Producer {
            ctrl,
            cells,
            cap,
            tail: ctrl.tail.load(Ordering::Relaxed),
            head: ctrl.head.load(Ordering::Acquire),
            ended: ctrl.line().is_some(),
            peers: peers::resolve(ctrl as *const Control as usize),
            ends: Ends::new(),
            wait: WaitStrategy::DEFAULT,
            _keep: keep,
            _life: PhantomData,
        }
    }

    ring_state!();

    wait_strategy_methods!();

    /// Test support: whether this handle's notifies check for sleepers
    /// with a plain load (the light side of the asymmetric barrier,
    /// `crate::membarrier`).
    #[doc(hidden)]
    pub fn light_notify(&self) -> bool {
        crate::membarrier::registered() && self.ctrl.not_empty.is_light()
    }

    /// Re-reads the consumer's position.
    #[inline]
    fn refresh(&mut self) -> Result<(), PushError> {
        // SYNC POINT: Acquire pairs with the Release store of `head` in
        // `Consumer::advance`: the consumer is done with the slots it freed.
        let head = self.ctrl.head.load(Ordering::Acquire);
        if head < self.head || head > self.tail {
            return Err(PushError::Corrupted);
        }
        self.head = head;
        Ok(())
    }

    /// Free slots, re-reading the consumer's position if fewer than `want`.
    #[inline]
    fn free(&mut self, want: u64) -> Result<u64, PushError> {
        // The hint is a shortcut: a push racing the close is caught after
        // it publishes (module docs, "Closing").
        if self.ended || self.ctrl.closed_hint() {
            return Err(PushError::Closed);
        }
        let mut free = self.cap - (self.tail - self.head);
        if free < want {
            self.refresh()?;
            free = self.cap - (self.tail - self.head);
        }
        Ok(free)
    }

    /// Publishes `n` more items with one store of `tail`. Fails with
    /// `Closed` if a close came while they were being pushed and the
    /// consumer drew the line below them (they will never be received).
    #[inline]
    fn advance(&mut self, n: u64) -> Result<(), PushError> {
        self.tail += n;
        // SYNC POINT: Release pairs with the Acquire load of `tail` in
        // `Consumer::refresh`: the items are copied in before they show.
        self.ctrl.tail.store(self.tail, Ordering::Release);
        // SYNC POINT: the read of the sleeper word after the publishing
        // store (a read-modify-write, or a plain load behind the heavy
        // barrier) pairs with the SeqCst read-modify-writes of sleepers
        // registering and of `close` / `Consumer::decide_closed` setting
        // the flag: either they see our tail, or we see them.
        let word = self.ctrl.not_empty.notify_light();
        if word & SIGNAL_FLAG != 0 {
            return self.arbitrate();
        }
        Ok(())
    }

    /// A close came while our last items were in flight, and the consumer
    /// may already have drawn the line without them: whoever writes `line`
    /// first decides (module docs, "Closing").
    #[cold]
    fn arbitrate(&mut self) -> Result<(), PushError> {
        self.ended = true;
        // SYNC POINT: AcqRel pairs with the consumer's compare-and-swap
        // of `line` in `decide_closed`, and with its Acquire loads.
        match self.ctrl.lead.line.compare_exchange(
            0,
            self.tail + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            // The consumer saw our tail before it drew the line.
            Err(line) if line > self.tail => Ok(()),
            Err(_) => Err(PushError::Closed),
        }
    }

    /// Pushes `item` if there is room now. Full with the consumer gone, on
    /// a handle that
    /// [fails sends without a receiver](Producer::fail_sends_without_receiver):
    /// [`PushError::Disconnected`].
    #[inline]
    pub fn try_push(&mut self, item: T) -> Result<(), PushError> {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
        if self.free(1)? == 0 {
            if self.ends.fail_sends
                && self
                    .ends
                    .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, false)
            {
                return Err(PushError::Disconnected);
            }
            return Err(PushError::Full);
        }
        let i = (self.tail & (self.cap - 1)) as usize;
        // SAFETY: i < cap; the slot is free (between tail and head + cap),
        // so the consumer does not touch it until we publish it.
        unsafe { self.cells.write(i, item) };
        self.advance(1)
    }

    /// Pushes `item`, sleeping while the queue is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), PushError> {
        self.push_until(item, None)
    }

    /// Pushes `item`, waiting at most `timeout` for room.
    #[inline]
    pub fn push_timeout(&mut self, item: T, timeout: Duration) -> Result<(), PushError> {
        match self.try_push(item) {
            Err(PushError::Full) => self.push_until(item, Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pushes `item`, waiting for room until `deadline` (forever if `None`).
    pub fn push_until(&mut self, item: T, deadline: Option<&Deadline>) -> Result<(), PushError> {
        match self.try_push(item) {
            Err(PushError::Full) => {}
            r => return r,
        }
        let (ctrl, peers) = (self.ctrl, self.peers);
        block_checked(&ctrl.not_full, self.wait, deadline, |check| {
            match self.try_push(item) {
                Err(PushError::Full)
                    if self.ends.fail_sends
                        && self.ends.gone(End::Receiver, &ctrl.lead.ends, peers, check) =>
                {
                    Some(Err(PushError::Disconnected))
                }
                Err(PushError::Full) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(PushError::Timeout))
    }

    /// Copies as many of `items` as fit now (possibly across the wrap) and
    /// publishes them at once. Returns how many were pushed; fails with
    /// [`PushError::Full`] only if none fit and `items` is not empty.
    pub fn push_slice(&mut self, items: &[T]) -> Result<usize, PushError> {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
        let free = self.free(items.len() as u64)?;
        let n = (items.len() as u64).min(free) as usize;
        if n == 0 {
            return if items.is_empty() {
                Ok(0)
            } else {
                Err(PushError::Full)
            };
        }
        let start = (self.tail & (self.cap - 1)) as usize;
        let first = n.min(self.cap as usize - start);
        // SAFETY: start + first <= cap and n - first <= start, so both
        // ranges are in bounds; all n slots are free (n <= free).
        unsafe {
            self.cells.write_slice(start, &items[..first]);
            self.cells.write_slice(0, &items[first..n]);
        }
        self.advance(n as u64)?;
        Ok(n)
    }
}

impl<T: Pod, K> Producer<'_, T, K> {
    /// Records this handle as the queue's producer now, rather than at its
    /// first push (see [`PopError::Disconnected`]).
    pub fn declare(&self) {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
    }

    /// Whether a push that finds the queue full and the consumer gone
    /// fails with [`PushError::Disconnected`] (`true`) or keeps waiting
    /// for room (`false`, the default). Only a push that would block
    /// looks.
    pub fn fail_sends_without_receiver(mut self, on: bool) -> Self {
        self.ends.fail_sends = on;
        self
    }
}

impl<T, K> Drop for Producer<'_, T, K> {
    /// Gives back the end this handle held and wakes the other side, so
    /// that the consumer blocked on a queue whose producer this was sees
    /// end-of-stream at once.
    fn drop(&mut self) {
        let held = self.ends.release(&self.ctrl.lead.ends, self.peers);
        wake_others(held, &self.ctrl.not_empty, &self.ctrl.not_full);
    }
}

impl<T, K> fmt::Debug for Producer<'_, T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Producer")
            .field("capacity", &self.cap)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

/// The popping half of an [`Spsc`] queue.
pub struct Consumer<'a, T, K = Keep> {
    ctrl: &'a Control,
    cells: Cells<T>,
    cap: u64,
    /// Our own position (trusted: only we write the shared head).
    head: u64,
    /// The producer's position as last read, cut at `line`; never ahead of
    /// the real one.
    tail: u64,
    /// The close's line once decided (`u64::MAX` before): items at or
    /// beyond it are never handed out.
    line: u64,
    /// The peers of the memory (`queue/ends.rs`).
    peers: &'a dyn Peers,
    /// Which end this handle holds, once recorded (`queue/ends.rs`).
    ends: Ends,
    /// How this handle's blocking calls wait.
    wait: WaitStrategy,
    /// What keeps the memory alive (see [`Keep`]).
    _keep: K,
    _life: Life<'a, T>,
}

// SAFETY: as for Producer.
unsafe impl<T: Send, K: Send> Send for Consumer<'_, T, K> {}

impl<'a, T: Pod, K> Consumer<'a, T, K> {
    /// What keeps the memory alive: [`Keep`] for a handle that borrows
    /// it, the owner given to an `attach_owned` constructor otherwise.
    pub fn owner(&self) -> &K {
        &self._keep
    }

    fn new(ctrl: &'a Control, cells: Cells<T>, cap: u64, keep: K) -> Self {
        ctrl.not_full.enable_light();
        let line = ctrl.line().unwrap_or(u64::MAX);
        Consumer {
            ctrl,
            cells,
            cap,
            head: ctrl.head.load(Ordering::Relaxed),
            tail: ctrl.tail.load(Ordering::Acquire).min(line),
            line,
            peers: peers::resolve(ctrl as *const Control as usize),
            ends: Ends::new(),
            wait: WaitStrategy::DEFAULT,
            _keep: keep,
            _life: PhantomData,
        }
    }

    ring_state!();

    wait_strategy_methods!();

    /// Re-reads the producer's position (cut at the close's line).
    #[inline]
    fn refresh(&mut self) -> Result<(), PopError> {
        // SYNC POINT: Acquire pairs with the Release store of `tail` in
        // `Producer::advance`: the items below it are fully copied in.
        let tail = self.ctrl.tail.load(Ordering::Acquire);
        if tail < self.tail || tail - self.head > self.cap {
            return Err(PopError::Corrupted);
        }
        self.tail = tail.min(self.line);
        Ok(())
    }

    /// Items ready to pop, re-reading the producer's position if fewer
    /// than `want`; `Closed` once closed and drained.
    #[inline]
    fn available(&mut self, want: u64) -> Result<u64, PopError> {
        let n = self.tail - self.head;
        if n >= want {
            return Ok(n);
        }
        self.refresh()?;
        if self.tail != self.head {
            return Ok(self.tail - self.head);
        }
        if !self.ctrl.closed_hint() {
            // (A close still setting it wakes every sleeper after.)
            return Err(PopError::Empty);
        }
        self.decide_closed()
    }

    /// Closed, and nothing left below our view of `tail`: draws the line
    /// (module docs, "Closing") if nobody has, and reports what is left
    /// below it, or `Closed`.
    #[cold]
    fn decide_closed(&mut self) -> Result<u64, PopError> {
        if self.line == u64::MAX {
            // Make ourselves a party to the handshake a push makes after
            // publishing, as a sleeper does: a SeqCst read-modify-write of
            // the word it reads, then the heavy barrier if pushes read it
            // with a plain load. After that, a push in flight either shows
            // in our re-read of `tail` or sees the flag and arbitrates.
            self.ctrl.not_empty.set_flag();
            if !heavy_if_light(&self.ctrl.not_empty) {
                // The kernel refused the barrier: we cannot tell yet
                // whether a push is in flight. Look again later.
                return Err(PopError::Empty);
            }
            self.refresh()?;
            // SYNC POINT: AcqRel pairs with the producer's compare-and-swap
            // in `Producer::arbitrate`: the first to write `line` decides.
            let line = match self.ctrl.lead.line.compare_exchange(
                0,
                self.tail + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => self.tail,
                // The producer decided first, at its own tail, which it
                // stored before: our next re-read sees it.
                Err(l) if l > self.head && l - 1 - self.head <= self.cap => l - 1,
                Err(_) => return Err(PopError::Corrupted),
            };
            self.line = line;
        }
        self.refresh()?;
        match self.tail - self.head {
            0 => Err(PopError::Closed),
            n => Ok(n),
        }
    }

    #[inline]
    fn advance(&mut self, n: u64) {
        self.head += n;
        // SYNC POINT: Release pairs with the Acquire load of `head` in
        // `Producer::refresh`: our copies out finish before the slots are
        // reused.
        self.ctrl.head.store(self.head, Ordering::Release);
        self.ctrl.not_full.notify_light();
    }

    /// Pops an item if one is ready now. Empty with the producer gone
    /// (end-of-stream, `queue/ends.rs`): [`PopError::Disconnected`].
    #[inline]
    pub fn try_pop(&mut self) -> Result<T, PopError> {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
        match self.available(1) {
            Err(PopError::Empty) => {
                if !self
                    .ends
                    .gone(End::Sender, &self.ctrl.lead.ends, self.peers, false)
                {
                    return Err(PopError::Empty);
                }
                // Its last item is published before it leaves: look again.
                if let Err(e) = self.available(1) {
                    return Err(match e {
                        PopError::Empty => PopError::Disconnected,
                        e => e,
                    });
                }
            }
            r => {
                r?;
            }
        }
        let i = (self.head & (self.cap - 1)) as usize;
        // SAFETY: i < cap, and the slot lies between head and tail: the
        // producer published it and does not touch it until we advance.
        let item = unsafe { self.cells.read(i) };
        self.advance(1);
        Ok(item)
    }

    /// Pops an item, sleeping while the queue is empty.
    #[inline]
    pub fn pop(&mut self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    /// Pops an item, waiting at most `timeout` for one.
    #[inline]
    pub fn pop_timeout(&mut self, timeout: Duration) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_until(Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pops an item, waiting until `deadline` (forever if `None`).
    pub fn pop_until(&mut self, deadline: Option<&Deadline>) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => {}
            r => return r,
        }
        // Before sleeping, after a departure and at each owner check: is
        // the producer gone? Then look once more (its last item is
        // published before it leaves).
        let (ctrl, peers) = (self.ctrl, self.peers);
        block_checked(&ctrl.not_empty, self.wait, deadline, |check| {
            match self.try_pop() {
                Err(PopError::Empty)
                    if self.ends.gone(End::Sender, &ctrl.lead.ends, peers, check) =>
                {
                    match self.try_pop() {
                        Err(PopError::Empty) => Some(Err(PopError::Disconnected)),
                        r => Some(r),
                    }
                }
                Err(PopError::Empty) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(PopError::Timeout))
    }

    /// Copies out as many items as are ready (up to `out.len()`) and frees
    /// their slots at once. Returns how many; fails with
    /// [`PopError::Empty`] only if none were ready and `out` is not empty.
    pub fn pop_slice(&mut self, out: &mut [T]) -> Result<usize, PopError> {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
        if out.is_empty() {
            return Ok(0);
        }
        let ready = self.available(out.len() as u64)?;
        let n = (out.len() as u64).min(ready) as usize;
        let start = (self.head & (self.cap - 1)) as usize;
        let first = n.min(self.cap as usize - start);
        let (a, b) = out[..n].split_at_mut(first);
        // SAFETY: both ranges are in bounds (as in push_slice) and hold
        // published items that only we read until we advance.
        unsafe {
            self.cells.read_slice(start, a);
            self.cells.read_slice(0, b);
        }
        self.advance(n as u64);
        Ok(n)
    }
}

impl<T: Pod, K> Consumer<'_, T, K> {
    /// Records this handle as the queue's consumer now, rather than at its
    /// first pop (see [`PopError::Disconnected`]).
    pub fn declare(&self) {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
    }
}

impl<T, K> Drop for Consumer<'_, T, K> {
    /// Gives back the end this handle held and wakes the other side, so
    /// that a producer set to fail without a consumer sees it at once.
    fn drop(&mut self) {
        let held = self.ends.release(&self.ctrl.lead.ends, self.peers);
        wake_others(held, &self.ctrl.not_empty, &self.ctrl.not_full);
    }
}

impl<T, K> fmt::Debug for Consumer<'_, T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Consumer")
            .field("capacity", &self.cap)
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// For waiters on many objects (`crate::waitable`, `shmipc::wait`): whether
/// a `try_` call would succeed or give a final answer now, and the owner
/// check a blocked call makes (an SPSC ring has no claims to repair: only
/// the scan for a live peer).
impl<T: Pod, K> Producer<'_, T, K> {
    /// Whether `try_push` would succeed or give a final answer now: room,
    /// closed, or (with
    /// [`fail_sends_without_receiver`](Producer::fail_sends_without_receiver))
    /// the consumer gone. A snapshot.
    pub fn push_ready(&self) -> bool {
        !self.is_full()
            || self.is_closed()
            || (self.ends.fail_sends
                && self
                    .ends
                    .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, false))
    }

    /// The owner check of a blocked `push`: a scan for a live consumer
    /// (with `fail_sends_without_receiver`), so that a death is seen.
    pub fn push_owner_check(&self) {
        if self.ends.fail_sends {
            let _ = self
                .ends
                .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, true);
        }
    }
}

impl<T: Pod, K> Consumer<'_, T, K> {
    /// Whether `try_pop` would return an item or a final answer now: an
    /// item, closed, or the producer gone (end-of-stream). A snapshot.
    pub fn pop_ready(&self) -> bool {
        !self.is_empty()
            || self.is_closed()
            || self
                .ends
                .gone(End::Sender, &self.ctrl.lead.ends, self.peers, false)
    }

    /// The owner check of a blocked `pop`: a scan for a live producer, so
    /// that its death is end-of-stream.
    pub fn pop_owner_check(&self) {
        let _ = self
            .ends
            .gone(End::Sender, &self.ctrl.lead.ends, self.peers, true);
    }
}

/// For waiters on many objects (`crate::waitable`): the signal each handle
/// sleeps on.
#[cfg_attr(loom, allow(dead_code))]
impl<T, K> Producer<'_, T, K> {
    pub(crate) fn wait_signal(&self) -> &Signal {
        &self.ctrl.not_full
    }
}

#[cfg_attr(loom, allow(dead_code))]
impl<T, K> Consumer<'_, T, K> {
    pub(crate) fn wait_signal(&self) -> &Signal {
        &self.ctrl.not_empty
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::queue::testbuf::AlignedBuf;
    use std::vec::Vec;

    fn buf(cap: usize) -> AlignedBuf {
        AlignedBuf::for_layout(Spsc::<u64>::layout(RingConfig::new(cap)).unwrap())
    }

    /// Writes 0x5a over every byte of the control block at `base` that no
    /// field holds, as a peer may.
    fn scribble_padding(base: *mut u8) {
        crate::queue::testbuf::scribble_control_padding!(
            base,
            lead {
                header,
                closed,
                line,
                ends
            },
            tail,
            head,
            not_empty,
            not_full
        );
    }

    /// As the MPMC test of the same name: a peer writing the control
    /// block's padding is no undefined behaviour (Miri checks this test).
    #[test]
    fn a_peer_writing_the_control_blocks_padding_is_no_undefined_behaviour() {
        let b = buf(4);
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let (mut tx, mut rx) =
            unsafe { Spsc::<u64>::init_at(b.as_mut_ptr(), b.len(), RingConfig::new(4)) }.unwrap();
        tx.try_push(1).unwrap();
        scribble_padding(b.as_mut_ptr());
        tx.try_push(2).unwrap();
        assert_eq!(rx.try_pop(), Ok(1));
        tx.close();
        assert_eq!(rx.try_pop(), Ok(2));
        assert_eq!(rx.try_pop(), Err(PopError::Closed));
    }

    /// As above, with the write made while the consumer sleeps in a
    /// blocking pop, so inside calls that hold references into the block
    /// as protected arguments (Miri checks this test).
    #[test]
    fn a_peer_writing_the_padding_during_a_blocking_pop_is_no_undefined_behaviour() {
        let b = buf(4);
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let (mut tx, mut rx) =
            unsafe { Spsc::<u64>::init_at(b.as_mut_ptr(), b.len(), RingConfig::new(4)) }.unwrap();
        std::thread::scope(|s| {
            let popper = s.spawn(move || rx.pop());
            for _ in 0..4 {
                std::thread::sleep(core::time::Duration::from_millis(5));
                scribble_padding(b.as_mut_ptr());
            }
            tx.push(7).unwrap();
            assert_eq!(popper.join().unwrap(), Ok(7));
        });
    }

    #[test]
    fn layout_rejects_bad_capacities() {
        for cap in [0, 3, 6, 1 << 33, usize::MAX] {
            assert!(
                matches!(
                    Spsc::<u64>::layout(RingConfig::new(cap)),
                    Err(LayoutError::Parameter { param: "capacity", value, .. }) if value == cap as u64
                ),
                "capacity {cap}"
            );
        }
        assert!(matches!(
            Spsc::<()>::layout(RingConfig::new(4)),
            Err(LayoutError::Parameter {
                param: "item size",
                ..
            })
        ));
        let l = Spsc::<u64>::layout(RingConfig::new(4)).unwrap();
        assert_eq!(l.align(), 128);
        assert!(l.size() >= 4 * 8 + size_of::<Control>());
    }

    #[test]
    fn config_words_round_trip() {
        let c = RingConfig::new(64);
        assert_eq!(RingConfig::from_words(c.to_words()), Ok(c));
        assert!(RingConfig::from_words([64, 1, 0, 0]).is_err());
    }

    #[test]
    fn push_pop_fill_and_drain() {
        let mut b = buf(4);
        let (mut tx, mut rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        assert_eq!(rx.try_pop(), Err(PopError::Empty));
        for round in 0..3u64 {
            for i in 0..4 {
                tx.try_push(round * 10 + i).unwrap();
            }
            assert!(tx.is_full());
            assert_eq!(tx.try_push(99), Err(PushError::Full));
            assert_eq!(rx.len(), 4);
            for i in 0..4 {
                assert_eq!(rx.try_pop(), Ok(round * 10 + i));
            }
            assert!(rx.is_empty());
        }
        assert_eq!(tx.capacity(), 4);
    }

    #[test]
    fn slices_wrap_around() {
        let mut b = buf(8);
        let (mut tx, mut rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(8)).unwrap();
        let mut next = 0u64;
        let mut expect = 0u64;
        let mut out = [0u64; 5];
        for _ in 0..20 {
            let items: Vec<u64> = (next..next + 5).collect();
            let n = tx.push_slice(&items).unwrap();
            next += n as u64;
            let m = rx.pop_slice(&mut out).unwrap();
            for v in &out[..m] {
                assert_eq!(*v, expect);
                expect += 1;
            }
        }
        assert_eq!(tx.push_slice(&[]), Ok(0));
        assert_eq!(rx.pop_slice(&mut []), Ok(0));
    }

    #[test]
    fn threads_keep_order() {
        let n: u64 = if cfg!(miri) { 300 } else { 200_000 };
        let mut b = buf(16);
        let (mut tx, mut rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(16)).unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut i = 0;
                while i < n {
                    if i % 3 == 0 {
                        let batch: Vec<u64> = (i..(i + 4).min(n)).collect();
                        let k = tx.push_slice(&batch).unwrap_or(0);
                        i += k as u64;
                        if k == 0 {
                            tx.push(i).unwrap();
                            i += 1;
                        }
                    } else {
                        tx.push(i).unwrap();
                        i += 1;
                    }
                }
                tx.close();
            });
            let mut expect = 0;
            let mut out = [0u64; 3];
            loop {
                if expect % 2 == 0 {
                    match rx.pop() {
                        Ok(v) => {
                            assert_eq!(v, expect);
                            expect += 1;
                        }
                        Err(PopError::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    match rx.pop_slice(&mut out) {
                        Ok(k) => {
                            for v in &out[..k] {
                                assert_eq!(*v, expect);
                                expect += 1;
                            }
                        }
                        Err(PopError::Empty) => {}
                        Err(PopError::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            assert_eq!(expect, n);
        });
    }

    #[test]
    fn timeouts_on_empty_and_full() {
        let mut b = buf(2);
        let (mut tx, mut rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(2)).unwrap();
        assert_eq!(
            rx.pop_timeout(Duration::from_millis(10)),
            Err(PopError::Timeout)
        );
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        assert_eq!(
            tx.push_timeout(3, Duration::from_millis(10)),
            Err(PushError::Timeout)
        );
        assert_eq!(rx.ctrl.not_empty.sleepers(), 0);
        assert_eq!(rx.pop(), Ok(1));
    }

    #[test]
    fn close_drains_then_fails_and_wakes_sleepers() {
        let mut b = buf(4);
        let (mut tx, mut rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        tx.push(5).unwrap();
        tx.close();
        assert_eq!(tx.try_push(6), Err(PushError::Closed));
        assert_eq!(rx.pop(), Ok(5));
        assert_eq!(rx.pop(), Err(PopError::Closed));

        // A consumer asleep on an empty queue is woken by close.
        let mut b = buf(4);
        let (tx, mut rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        std::thread::scope(|s| {
            let h = s.spawn(move || rx.pop_timeout(Duration::from_secs(30)));
            std::thread::sleep(Duration::from_millis(20));
            tx.close();
            assert_eq!(h.join().unwrap(), Err(PopError::Closed));
        });

        // A producer asleep on a full queue is woken by close.
        let mut b = buf(1);
        let (mut tx, rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(1)).unwrap();
        tx.push(1).unwrap();
        std::thread::scope(|s| {
            let h = s.spawn(move || tx.push_timeout(2, Duration::from_secs(30)));
            std::thread::sleep(Duration::from_millis(20));
            rx.close();
            assert_eq!(h.join().unwrap(), Err(PushError::Closed));
        });
    }

    #[test]
    fn no_wake_when_nobody_sleeps() {
        let mut b = buf(4);
        let (mut tx, mut rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        for i in 0..100 {
            tx.push(i).unwrap();
            assert_eq!(rx.pop(), Ok(i));
        }
        // The epoch moves only when a notifier saw a sleeper.
        assert_eq!(rx.ctrl.not_empty.epoch.load(Ordering::Relaxed), 0);
        assert_eq!(rx.ctrl.not_full.epoch.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn attach_checks_the_header() {
        let cfg = RingConfig::new(8);
        let b = buf(8);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // SAFETY: b outlives the handles; this test is the only user.
        let r = unsafe { Spsc::<u64>::attach_consumer(ptr, len) };
        assert_eq!(r.err(), Some(QueueError::NotAQueue));
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let (mut tx, _rx) = unsafe { Spsc::<u64>::init_at(ptr, len, cfg) }.unwrap();
        tx.push(42).unwrap();
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let mut rx2 = unsafe { Spsc::<u64>::attach_consumer(ptr, len) }.unwrap();
        assert_eq!(rx2.pop(), Ok(42));
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let tx2 = unsafe { Spsc::<u64>::attach_producer(ptr, len) }.unwrap();
        assert_eq!(tx2.capacity(), 8);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Spsc::<u32>::attach_consumer(ptr, len) },
            Err(QueueError::Incompatible(_))
        ));
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { crate::mpmc::Mpmc::<u64>::attach(ptr, len) },
            Err(QueueError::Incompatible(_))
        ));
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Spsc::<u64>::attach_consumer(ptr, len - 8) },
            Err(QueueError::Layout(LayoutError::TooSmall { .. }))
        ));
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Spsc::<u64>::attach_consumer(ptr.add(8), len - 8) },
            Err(QueueError::Layout(LayoutError::Misaligned { .. }))
        ));
    }

    #[test]
    fn corrupted_control_blocks_are_errors() {
        let cfg = RingConfig::new(8);
        let b = buf(8);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // SAFETY: b outlives the handles; only this test uses it.
        let (mut tx, mut rx) = unsafe { Spsc::<u64>::init_at(ptr, len, cfg) }.unwrap();
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        let ctrl = tx.ctrl;
        assert_eq!(rx.try_pop(), Ok(1));

        // Tail far ahead of head: more items than slots.
        ctrl.tail.store(1000, Ordering::Relaxed);
        assert_eq!(rx.try_pop(), Ok(2)); // cached, still fine
        assert_eq!(rx.try_pop(), Err(PopError::Corrupted));
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Spsc::<u64>::attach_consumer(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
        // Tail going backwards.
        ctrl.tail.store(1, Ordering::Relaxed);
        assert_eq!(rx.try_pop(), Err(PopError::Corrupted));
        assert_eq!(
            rx.pop_timeout(Duration::from_millis(1)),
            Err(PopError::Corrupted)
        );
        // Head ahead of the producer's tail.
        for _ in 0..6 {
            tx.push(0).unwrap();
        }
        ctrl.head.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(tx.try_push(0), Err(PushError::Corrupted));
        assert_eq!(tx.push_slice(&[0; 3]), Err(PushError::Corrupted));

        // Geometry that disagrees with the mapping.
        ctrl.lead.header.words[0].store(1 << 20, Ordering::Relaxed);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Spsc::<u64>::attach_producer(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
        ctrl.lead.header.words[0].store(5, Ordering::Relaxed);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Spsc::<u64>::attach_producer(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
        ctrl.lead.header.words[0].store(8, Ordering::Relaxed);
        ctrl.lead.header.total.store(1, Ordering::Relaxed);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Spsc::<u64>::attach_producer(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
    }

    /// A push that looked before the close and publishes after it: what
    /// `try_push` does past its check for `Closed`.
    fn push_in_flight(tx: &mut Producer<'_, u64>, item: u64) -> Result<(), PushError> {
        let i = (tx.tail & (tx.cap - 1)) as usize;
        // SAFETY: i < cap and the slot is free (the ring is not full here).
        unsafe { tx.cells.write(i, item) };
        tx.advance(1)
    }

    #[test]
    fn a_push_in_flight_after_the_consumer_drew_the_line_is_refused() {
        let b = buf(4);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let (mut tx, mut rx) =
            unsafe { Spsc::<u64>::init_at(ptr, len, RingConfig::new(4)) }.unwrap();
        tx.push(1).unwrap();
        rx.close();
        assert_eq!(rx.pop(), Ok(1));
        assert_eq!(rx.pop(), Err(PopError::Closed), "the line is drawn at 1");
        // A push that had found the ring open lands now: it sees the close
        // after publishing and loses the arbitration, so it says Closed and
        // its item is never handed out.
        assert_eq!(push_in_flight(&mut tx, 2), Err(PushError::Closed));
        assert_eq!(rx.try_pop(), Err(PopError::Closed));
        // A consumer taking the role over keeps the line.
        // SAFETY: as above.
        let mut rx2 = unsafe { Spsc::<u64>::attach_consumer(ptr, len) }.unwrap();
        assert_eq!(rx2.try_pop(), Err(PopError::Closed));
        assert_eq!(tx.try_push(3), Err(PushError::Closed));
    }

    #[test]
    fn a_push_in_flight_that_draws_the_line_first_is_delivered() {
        let mut b = buf(4);
        let (mut tx, mut rx) = Spsc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        rx.close();
        // The push lands before the consumer looks: it wins, its item is
        // below the line and is received before Closed.
        assert_eq!(push_in_flight(&mut tx, 7), Ok(()));
        assert_eq!(rx.pop(), Ok(7));
        assert_eq!(rx.pop(), Err(PopError::Closed));
        assert_eq!(tx.try_push(8), Err(PushError::Closed));
    }

    #[test]
    fn capacities_stop_at_2_to_the_31() {
        assert!(Spsc::<u8>::layout(RingConfig::new(1 << 31)).is_ok());
        assert!(matches!(
            Spsc::<u8>::layout(RingConfig::new(1 << 32)),
            Err(LayoutError::Parameter {
                param: "capacity",
                ..
            })
        ));
    }

    #[test]
    fn garbage_gives_allowed_answers_and_a_reset_queue_works() {
        // Random control words: every call returns one of the answers a
        // hostile ring may give, lengths stay within the geometry, and once
        // the words are sound again the ring works.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let rounds = if cfg!(miri) { 20 } else { 2000 };
        let b = buf(4);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        let (mut tx, mut rx) =
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Spsc::<u64>::init_at(ptr, len, RingConfig::new(4)) }.unwrap();
        let ctrl = tx.ctrl;
        let mut seen = [0u32; 4]; // an Ok push, pop, and a Corrupted each side
        for _ in 0..rounds {
            let r = rand();
            ctrl.tail
                .store(if r & 1 == 0 { r >> 60 } else { r }, Ordering::Relaxed);
            ctrl.head.store(
                if r & 2 == 0 { (r >> 56) & 7 } else { rand() },
                Ordering::Relaxed,
            );
            match tx.try_push(1) {
                Ok(()) => seen[0] += 1,
                Err(PushError::Full) => {}
                Err(PushError::Corrupted) => seen[2] += 1,
                Err(e) => panic!("try_push gave {e:?}"),
            }
            match tx.push_slice(&[1, 2, 3]) {
                Ok(n) => assert!((1..=3).contains(&n), "pushed {n} of 3"),
                Err(PushError::Full | PushError::Corrupted) => {}
                Err(e) => panic!("push_slice gave {e:?}"),
            }
            // Only 1, 2 and 3 are ever pushed; the slots start zeroed.
            match rx.try_pop() {
                Ok(v) => {
                    assert!(v <= 3, "popped {v}, which nobody pushed");
                    seen[1] += 1;
                }
                Err(PopError::Empty) => {}
                Err(PopError::Corrupted) => seen[3] += 1,
                Err(e) => panic!("try_pop gave {e:?}"),
            }
            let mut out = [9u64; 3];
            match rx.pop_slice(&mut out) {
                Ok(n) => {
                    assert!((1..=3).contains(&n), "popped {n} into 3");
                    assert!(out[..n].iter().all(|&v| v <= 3), "{out:?}");
                }
                Err(PopError::Empty | PopError::Corrupted) => {}
                Err(e) => panic!("pop_slice gave {e:?}"),
            }
            assert!(rx.len() <= 4);
            // SAFETY: as above.
            match unsafe { Spsc::<u64>::attach_consumer(ptr, len) } {
                Ok(c) => assert!(c.tail - c.head <= 4),
                Err(QueueError::Corrupted(_)) => {}
                Err(e) => panic!("attach gave {e:?}"),
            }
        }
        assert!(
            seen.iter().all(|&n| n > 0),
            "the garbage never reached some outcome: {seen:?}"
        );
        // Sound words again, and fresh handles (each keeps its own copy of
        // its position): the ring works.
        ctrl.tail.store(0, Ordering::Relaxed);
        ctrl.head.store(0, Ordering::Relaxed);
        let _ = (tx, rx);
        // SAFETY: as above.
        let mut tx = unsafe { Spsc::<u64>::attach_producer(ptr, len) }.unwrap();
        // SAFETY: as above.
        let mut rx = unsafe { Spsc::<u64>::attach_consumer(ptr, len) }.unwrap();
        for lap in 0..3u64 {
            for i in 0..4 {
                tx.try_push(lap * 4 + i).unwrap();
            }
            assert_eq!(tx.try_push(0), Err(PushError::Full));
            for i in 0..4 {
                assert_eq!(rx.try_pop(), Ok(lap * 4 + i));
            }
            assert_eq!(rx.try_pop(), Err(PopError::Empty));
        }
    }
}

/// What the SPSC control block at the start of `control` (a copy of a
/// ring's bytes, at least its control block) says; `None` if `control` is
/// too short to hold one. Decodes words only: nothing is checked or
/// trusted, and no memory but the copy is read.
#[cfg(not(loom))]
pub fn state_of(control: &[u8]) -> Option<crate::queue::RingState> {
    use crate::queue::{signal_word_at, sleeping, word_at, SIGNAL_FLAG};
    use core::mem::offset_of;
    if control.len() < size_of::<Control>() {
        return None;
    }
    let not_empty = signal_word_at(control, offset_of!(Control, not_empty))?;
    Some(crate::queue::RingState {
        tail: word_at(control, offset_of!(Control, tail))?,
        head: word_at(control, offset_of!(Control, head))?,
        closed: not_empty & SIGNAL_FLAG != 0,
        consumer_sleepers: sleeping(not_empty),
        producer_sleepers: sleeping(signal_word_at(control, offset_of!(Control, not_full))?),
    })
}
