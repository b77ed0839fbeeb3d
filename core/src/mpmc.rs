//! A bounded multi-producer multi-consumer queue of [`Pod`] items.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue ("Bounded MPMC
//! queue", 1024cores.net,
//! <https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>),
//! the one crossbeam's `ArrayQueue` also uses. Every slot has a sequence
//! number next to it:
//!
//! | slot `i` sequence | meaning for position `p` with `p & mask == i` |
//! |---|---|
//! | `p` | free: a producer at `p` may claim it |
//! | `p + 1` | full: a consumer at `p` may claim it |
//! | `p + capacity` | freed again, for the producer at `p + capacity` |
//!
//! A producer claims position `p`, copies the item in, and publishes it by
//! storing `p + 1` (Release). A consumer claims `p`, copies the item out,
//! and frees the slot by storing `p + capacity`. No thread ever waits for
//! another except when the queue is full or empty, which is where blocking
//! calls sleep.
//!
//! **Claims name their owner.** Next to each sequence number is an *owner
//! word*, and claiming a position is a compare-and-swap of that word, not
//! (as in Vyukov's original) of `enqueue` / `dequeue`:
//!
//! | bits | owner word |
//! |---|---|
//! | 0–31 | the claimed position, low 32 bits |
//! | 32–61 | the claimant's [`Token`] among the mapping's peers |
//! | 62–63 | 1 producer, 2 consumer, 0 never claimed |
//!
//! A producer at `p` may claim only over the word of the consumer that
//! freed the slot one lap ago (`p - capacity`), a consumer only over the
//! word of the producer that published `p`, so each claim compare-and-swap
//! succeeds for one party per position and lap. The claimant then moves
//! `enqueue` (or `dequeue`) from `p` to `p + 1` with a compare-and-swap
//! that anyone who finds the claim first also makes (helping), so a
//! claimant stopped between its two steps stops nobody. Because the claim
//! and the name are one atomic write, there is no instant at which a slot
//! is claimed by an unknown process.
//!
//! The layout is a control block (header, `closed`, `enqueue` and `dequeue`
//! each on a cache line of its own, two sleep/wake words), then `capacity`
//! 16-byte slot records (sequence number, owner word), then `capacity`
//! slots. Capacity is a power of two and at least 2 (with one slot, "free
//! for `p + 1`" and "full at `p`" would be the same number).
//!
//! **Hostile memory.** A legal sequence number is within `capacity` of the
//! position being tried; anything else is [`PopError::Corrupted`] /
//! [`PushError::Corrupted`]. A sequence number ahead of its position while
//! the position itself did not move is also corruption, so no retry loop can
//! be kept spinning by a stuck value; the loops are bounded besides. A
//! forged owner word can delay recovery or make a waiter check a stranger's
//! liveness, never hand out a slot twice: claims still need the sequence
//! number to agree.
//!
//! # Crashes
//!
//! What a process killed at any instruction costs:
//!
//! | dies | effect | recovered by |
//! |---|---|---|
//! | before its claim CAS | nothing | — |
//! | producer, after claiming `p`, before publishing | consumers find `p` claimed, unpublished: `try_pop` says `Empty` | a blocking consumer checks the named producer once per [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL) of waiting; if it is dead, the consumer claims `p` itself and frees it without an item. The item was never sent. |
//! | consumer, after claiming `p`, before freeing | producers a lap later find the slot full: `try_push` says `Full` | a blocking producer checks the named consumer the same way and frees the slot. The item was being received and is lost. |
//! | after publishing / freeing | nothing | — |
//!
//! So an item is lost only if its producer died before its push returned
//! (it was never sent), or its consumer died before its pop returned (it
//! was being received); nothing is ever delivered twice or torn, since a
//! slot is published by one Release store after the whole copy. Recovery
//! takes one check interval of some caller's blocking wait (timed waits
//! check once more when they time out); `try_` calls never wait, so they
//! never recover — they report `Empty` / `Full` while a dead peer's slot is
//! in the way. A process that is alive but stopped (SIGSTOP, a debugger)
//! holds its slot until it continues, as a live one must. Who is dead is
//! the mapping's [`Peers`]' judgement ([`crate::peers`]): evidence that
//! holds across pid namespaces and pid reuse, and a claimant that cannot
//! be judged counts as alive.
//!
//! The price on the fast path: the owner word shares the slot record's
//! cache line with the sequence number, and each push and each pop makes
//! one more compare-and-swap (the claim) than Vyukov's queue.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use crate::futex::Deadline;
use crate::peers::{self, Peers, Token};
use crate::place::LayoutError;
#[cfg_attr(loom, allow(unused_imports))]
use crate::queue::{
    block_checked, round_up, CachePadded, Cell, Cells, Header, Keep, Kind, Life, PopError,
    PushError, QueueError, RingConfig, Signal,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// What [`Mpmc::skip_dead_producer`] did.
enum Skip {
    /// The producer lives: the slot is still being filled.
    Alive,
    /// The dequeue position moved on (we skipped the slot, or a rival did).
    Moved,
    /// The item was published after all, and we hold it as its consumer.
    Published,
}

/// How many times one push or pop retries after losing a race before it
/// reports corruption. Every retry means another thread made progress, so
/// only a peer rewriting the positions in a loop gets anywhere near this.
const MAX_RETRIES: u32 = 1 << 20;

/// A slot's bookkeeping: its sequence number (Vyukov's) and the owner word
/// of its latest claim (see the module docs).
#[repr(C)]
pub(crate) struct Meta {
    seq: AtomicU64,
    owner: AtomicU64,
}

impl Meta {
    fn new(seq: u64) -> Meta {
        Meta {
            seq: AtomicU64::new(seq),
            owner: AtomicU64::new(0),
        }
    }
}

/// The claimant's role in an owner word (bits 62–63).
const ROLE_MASK: u64 = 3 << 62;
const PRODUCER: u64 = 1 << 62;
const CONSUMER: u64 = 2 << 62;
const POS_MASK: u64 = 0xffff_ffff;

/// The owner word naming `token` as `role` of position `pos`.
#[inline]
fn owner_word(role: u64, pos: u64, token: Token) -> u64 {
    role | u64::from(token.raw()) << 32 | (pos & POS_MASK)
}

/// Whether `w` is the claim of `role` on position `pos`.
#[inline]
fn claims(w: u64, role: u64, pos: u64) -> bool {
    w & ROLE_MASK == role && w & POS_MASK == pos & POS_MASK
}

#[repr(C)]
struct Control {
    header: Header,
    closed: AtomicU32,
    enqueue: CachePadded<AtomicU64>,
    dequeue: CachePadded<AtomicU64>,
    /// Consumers sleep here; pushes notify.
    not_empty: CachePadded<Signal>,
    /// Producers sleep here; pops notify.
    not_full: CachePadded<Signal>,
}

impl Control {
    fn new() -> Control {
        Control {
            header: Header::new(),
            closed: AtomicU32::new(0),
            enqueue: CachePadded(AtomicU64::new(0)),
            dequeue: CachePadded(AtomicU64::new(0)),
            not_empty: CachePadded(Signal::new()),
            not_full: CachePadded(Signal::new()),
        }
    }
}

/// A bounded MPMC queue of `T` in (shared) memory. Handles are cheap to
/// clone; every method takes `&self`.
///
/// ```
/// use shmipc_core::mpmc::Mpmc;
/// use shmipc_core::RingConfig;
///
/// #[repr(C, align(128))]
/// struct Bytes([u8; 2048]);
/// let mut mem = Bytes([0; 2048]);
///
/// let q = Mpmc::<u32>::new_in(&mut mem.0, RingConfig::new(8)).unwrap();
/// std::thread::scope(|s| {
///     for t in 0..2 {
///         let q = q.clone();
///         s.spawn(move || {
///             for i in 0..10 {
///                 q.push(t * 100 + i).unwrap();
///             }
///         });
///     }
///     let mut sum = 0;
///     for _ in 0..20 {
///         sum += q.pop().unwrap();
///     }
///     assert_eq!(sum, 2 * 45 + 100 * 10);
/// });
/// ```
pub struct Mpmc<'a, T> {
    ctrl: &'a Control,
    metas: &'a [Meta],
    cells: Cells<T>,
    /// Trusted copy of the capacity (checked at attach, never re-read).
    cap: u64,
    /// Who we are, and who is dead, among the processes sharing the memory.
    peers: &'a dyn Peers,
    _keep: Keep,
    _life: Life<'a, T>,
}

// SAFETY: every access to the shared memory goes through atomics or through
// slots owned by the claim protocol; items are Pod.
unsafe impl<T: Send> Send for Mpmc<'_, T> {}
// SAFETY: as for Send; all methods take &self and are thread-safe.
unsafe impl<T: Send> Sync for Mpmc<'_, T> {}

impl<T> Clone for Mpmc<'_, T> {
    fn clone(&self) -> Self {
        Mpmc {
            ctrl: self.ctrl,
            metas: self.metas,
            cells: self.cells,
            cap: self.cap,
            peers: self.peers,
            _keep: self._keep.clone(),
            _life: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Mpmc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpmc")
            .field("capacity", &self.cap)
            .field("enqueue", &self.ctrl.enqueue.load(Ordering::Relaxed))
            .field("dequeue", &self.ctrl.dequeue.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Byte offsets of the sequence array and the slots.
fn offsets<T>(cap: usize) -> Option<(usize, usize, usize)> {
    let metas = size_of::<Control>();
    let slots = round_up(
        metas.checked_add(cap.checked_mul(size_of::<Meta>())?)?,
        align_of::<T>(),
    )?;
    let end = round_up(slots.checked_add(cap.checked_mul(size_of::<T>())?)?, 128)?;
    Some((metas, slots, end))
}

impl<'a, T: Pod> Mpmc<'a, T> {
    /// The size and alignment of a queue with `config`.
    ///
    /// Fails with a [`LayoutError::Parameter`] naming what is wrong: a
    /// capacity below 2, not a power of two or above the maximum, a
    /// zero-sized `T` or one aligned to more than 128 bytes, or a size that
    /// overflows.
    pub fn layout(config: RingConfig) -> Result<Layout, LayoutError> {
        config.check_for::<T>(2)?;
        let (_, _, end) = offsets::<T>(config.capacity).ok_or(config.too_large())?;
        crate::queue::layout(end, align_of::<Control>())
    }

    /// Writes a new, empty queue at `ptr` and returns a handle to it.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for reads and writes of `len` bytes for `'a`; nobody
    /// else uses those bytes while this runs; afterwards they are accessed
    /// only through this module's handles (in this or other processes).
    #[cfg(not(loom))]
    pub unsafe fn init_at(
        ptr: *mut u8,
        len: usize,
        config: RingConfig,
    ) -> Result<Self, QueueError> {
        let l = Self::layout(config)?;
        crate::place::check(ptr, len, l.size(), l.align())?;
        let cap = config.capacity;
        let (seqs_off, slots_off, _) = offsets::<T>(cap).ok_or(LayoutError::InvalidParameters)?;
        // SAFETY: aligned and large enough (checked), exclusive (contract).
        unsafe { ptr.cast::<Control>().write(Control::new()) };
        // SAFETY: the slot metadata array is in bounds, 8-aligned (offset
        // is a multiple of 128 from a 128-aligned base), exclusive.
        let metas = unsafe { ptr.add(seqs_off).cast::<Meta>() };
        for i in 0..cap {
            // SAFETY: i < cap, in bounds as above.
            unsafe { metas.add(i).write(Meta::new(i as u64)) };
        }
        // SAFETY: the slot area is in bounds; zeroed, so no slot is ever
        // read uninitialised even if corrupted sequence numbers say so.
        unsafe { ptr.add(slots_off).write_bytes(0, cap * size_of::<T>()) };
        // SAFETY: initialised above; valid for 'a (contract).
        let ctrl: &'a Control = unsafe { &*ptr.cast::<Control>() };
        ctrl.header.publish(
            Kind::Mpmc,
            (size_of::<T>(), align_of::<T>()),
            config.to_words(),
            l.size(),
        );
        // SAFETY: the layout is checked and initialised.
        Ok(unsafe { Self::from_parts(ptr, cap) })
    }

    /// # Safety
    ///
    /// `ptr` starts a checked, initialised layout for `cap`, valid for `'a`.
    #[cfg(not(loom))]
    unsafe fn from_parts(ptr: *mut u8, cap: usize) -> Self {
        // Cannot fail: the layout was computed from the same capacity.
        let (seqs_off, slots_off, _) = offsets::<T>(cap).unwrap_or((0, 0, 0));
        // SAFETY: in bounds of the checked layout (as for the two below),
        // aligned, made of atomics or Pod slots accessed by copy only.
        let ctrl: &'a Control = unsafe { &*ptr.cast::<Control>() };
        // SAFETY: as above.
        let metas = unsafe { core::slice::from_raw_parts(ptr.add(seqs_off).cast::<Meta>(), cap) };
        // SAFETY: as above.
        let cells =
            unsafe { Cells::new(NonNull::new_unchecked(ptr.add(slots_off).cast::<Cell<T>>())) };
        // Publishing pushes and pops check for sleepers with a plain load
        // where the kernel offers heavy barriers (`crate::membarrier`).
        ctrl.not_empty.enable_light();
        ctrl.not_full.enable_light();
        Mpmc {
            ctrl,
            metas,
            cells,
            cap: cap as u64,
            peers: peers::resolve(ptr as usize),
            _keep: Keep,
            _life: PhantomData,
        }
    }

    /// Attaches to a queue another party initialised at `ptr`, after
    /// checking its header (magic, kind, element type, capacity, total size)
    /// against `len`.
    ///
    /// # Safety
    ///
    /// As for [`Mpmc::init_at`], except that the bytes hold a queue already.
    #[cfg(not(loom))]
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Self, QueueError> {
        crate::place::check(ptr, len, size_of::<Control>(), align_of::<Control>())?;
        // SAFETY: aligned and large enough; Control is atomics only.
        let ctrl: &Control = unsafe { &*ptr.cast::<Control>() };
        let info = ctrl
            .header
            .check(Kind::Mpmc, (size_of::<T>(), align_of::<T>()))?;
        let config = RingConfig::from_words(info.words)
            .map_err(|_| QueueError::Corrupted("configuration words"))?;
        let l = Self::layout(config).map_err(|_| QueueError::Corrupted("capacity"))?;
        if info.total != l.size() as u64 {
            return Err(QueueError::Corrupted("total size disagrees with capacity"));
        }
        crate::place::check(ptr, len, l.size(), l.align())?;
        // SAFETY: checked layout, initialised by its creator (contract).
        Ok(unsafe { Self::from_parts(ptr, config.capacity) })
    }

    /// A new queue in bytes the caller owns (single-process use and tests).
    /// The bytes must be aligned to 128 and at least
    /// [`Mpmc::layout`]`(config).size()` long.
    #[cfg(not(loom))]
    pub fn new_in(bytes: &'a mut [u8], config: RingConfig) -> Result<Self, QueueError> {
        let len = bytes.len();
        // SAFETY: the exclusive borrow makes the bytes ours for 'a.
        unsafe { Self::init_at(bytes.as_mut_ptr(), len, config) }
    }

    /// A new queue in boxes, for loom models.
    ///
    /// # Panics
    ///
    /// If `config` is invalid.
    #[cfg(loom)]
    pub fn new_boxed(config: RingConfig) -> Mpmc<'static, T> {
        extern crate std;
        use std::boxed::Box;
        Self::layout(config).expect("invalid config");
        let cap = config.capacity;
        let ctrl = Box::new(Control::new());
        let metas: Box<[Meta]> = (0..cap).map(|i| Meta::new(i as u64)).collect();
        let cells: Box<[Cell<T>]> = (0..cap).map(|_| Cell::new(T::zeroed())).collect();
        // The same self-description as in shared memory (size: the
        // layout a mapping would need).
        ctrl.header.publish(
            Kind::Mpmc,
            (size_of::<T>(), align_of::<T>()),
            config.to_words(),
            Self::layout(config).map_or(0, |l| l.size()),
        );
        let ctrl_ptr: *const Control = &*ctrl;
        let metas_ptr: *const [Meta] = &*metas;
        let cells_ptr = NonNull::from(&cells[0]);
        let keep = Keep(std::sync::Arc::new(crate::queue::Boxed(ctrl, metas, cells)));
        Mpmc {
            // SAFETY: the boxes live as long as `keep`, which the handle
            // (and each clone) holds.
            ctrl: unsafe { &*ctrl_ptr },
            // SAFETY: as above.
            metas: unsafe { &*metas_ptr },
            // SAFETY: `cap` cells, kept alive by `keep`.
            cells: unsafe { Cells::new(cells_ptr) },
            cap: cap as u64,
            peers: &peers::LOCAL,
            _keep: keep,
            _life: PhantomData,
        }
    }

    /// How many items the queue holds when full.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Items in the queue now (a snapshot, clamped to the capacity).
    pub fn len(&self) -> usize {
        let deq = self.ctrl.dequeue.load(Ordering::Acquire);
        let enq = self.ctrl.enqueue.load(Ordering::Acquire);
        enq.saturating_sub(deq).min(self.cap) as usize
    }

    /// Whether the queue is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() == self.cap as usize
    }

    /// Closes the queue: pushes fail from now on, pops drain what is left
    /// and then fail with [`PopError::Closed`], and every sleeper on either
    /// side is woken.
    pub fn close(&self) {
        // SYNC POINT: AcqRel pairs with the Acquire loads of `closed` in
        // `try_push` and `try_pop`.
        self.ctrl.closed.swap(1, Ordering::AcqRel);
        self.ctrl.not_empty.wake_all();
        self.ctrl.not_full.wake_all();
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.ctrl.closed.load(Ordering::Acquire) != 0
    }

    /// This handle, acting as a member of `peers` (tests and models that
    /// decide who is dead); by default a handle uses the peers of the
    /// mapping its memory lies in ([`crate::peers::resolve`]).
    pub fn with_peers(mut self, peers: &'a dyn Peers) -> Self {
        self.peers = peers;
        self
    }

    /// Whether the process an owner word names is dead on evidence.
    #[cold]
    fn claimant_dead(&self, w: u64) -> bool {
        Token::from_raw(((w & !ROLE_MASK) >> 32) as u32)
            .is_some_and(|t| self.peers.fate(t).is_dead())
    }

    #[inline]
    fn meta(&self, pos: u64) -> &Meta {
        &self.metas[(pos & (self.cap - 1)) as usize]
    }

    /// Pushes `item` if there is room now. A slot kept busy by a producer
    /// or consumer that is mid-operation (or died there) reads as full.
    #[inline]
    pub fn try_push(&self, item: T) -> Result<(), PushError> {
        self.push_inner(item, false)
    }

    #[inline]
    fn push_inner(&self, item: T, check: bool) -> Result<(), PushError> {
        let pos = self.claim_push(check)?;
        self.publish(pos, item);
        Ok(())
    }

    /// Fills the slot of the claimed position `pos` and publishes it.
    #[inline]
    fn publish(&self, pos: u64, item: T) {
        let meta = self.meta(pos);
        let i = (pos & (self.cap - 1)) as usize;
        // SAFETY: i < cap; our owner claim on `pos` while the slot read
        // "free for pos" makes it ours alone.
        unsafe { self.cells.write(i, item) };
        // SYNC POINT: Release pairs with the Acquire load of the sequence
        // in `claim_pop`: the item is copied in before the slot reads full.
        meta.seq.store(pos.wrapping_add(1), Ordering::Release);
        self.ctrl.not_empty.notify_light();
    }

    /// Claims the slot of the next enqueue position for this process and
    /// returns the position; the caller fills the slot and publishes it.
    /// With `check`, also frees a slot a dead consumer kept from the last
    /// lap.
    #[inline]
    fn claim_push(&self, check: bool) -> Result<u64, PushError> {
        if self.is_closed() {
            return Err(PushError::Closed);
        }
        let cap = self.cap as i64;
        let me = self.peers.me();
        // SYNC POINT: Acquire (here and on every reload) pairs with the
        // AcqRel advances of `enqueue` by earlier producers, so the slots
        // they claimed are visible to us as claimed: a stale view never
        // looks like corruption.
        let mut pos = self.ctrl.enqueue.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let meta = self.meta(pos);
            // SYNC POINT: Acquire pairs with the Release store of the
            // sequence in `pop_inner` / `recover_pop` (or the AcqRel one in
            // `free_dead_consumer`): the previous item is copied out, and
            // the owner word of that consumer's claim is visible.
            let seq = meta.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as i64;
            if diff == 0 {
                // SYNC POINT: Acquire pairs with the AcqRel owner CAS of
                // the slot's last claimant.
                let owner = meta.owner.load(Ordering::Acquire);
                let prev = pos.wrapping_sub(self.cap);
                if claims(owner, CONSUMER, prev) || (pos < self.cap && owner == 0) {
                    // Free for `pos` and unclaimed: claim it. The owner
                    // CAS is the claim; it names us, so a death from here
                    // on is found by whoever waits on the slot.
                    let mine = owner_word(PRODUCER, pos, me);
                    // SYNC POINT: AcqRel: one claimant per position; pairs
                    // with the Acquire owner loads of other claimants.
                    if meta
                        .owner
                        .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.advance(&self.ctrl.enqueue, pos);
                        return Ok(pos);
                    }
                    continue;
                }
                if claims(owner, PRODUCER, pos) {
                    // Another producer claimed `pos` and may not have
                    // advanced `enqueue` yet: help it, then move on.
                    self.advance(&self.ctrl.enqueue, pos);
                }
                // A newer owner than our view of the slot: `enqueue` has
                // moved (every claim advances it before publishing).
                let p = self.ctrl.enqueue.load(Ordering::Acquire);
                if p == pos {
                    return Err(PushError::Corrupted);
                }
                pos = p;
            } else if diff < 0 {
                // The slot still holds (or is being emptied of) the item
                // from one lap ago: full. Further back is impossible: the
                // producer that claimed `pos - capacity` saw the sequence at
                // `pos - capacity`, and its claim happens before our load.
                if diff < -cap {
                    return Err(PushError::Corrupted);
                }
                // Held from one lap ago by a consumer (seq at `prev + 1`),
                // or being skipped by one (seq still at `prev`, owner a
                // consumer's): if that consumer is dead, finish for it.
                if check
                    && (diff == 1 - cap || diff == -cap)
                    && self.free_dead_consumer(meta, pos, seq)
                {
                    continue;
                }
                return Err(PushError::Full);
            } else {
                // Another producer took `pos` already; `enqueue` must have
                // moved (its claim happens before its sequence store, which
                // we just read with Acquire).
                let p = self.ctrl.enqueue.load(Ordering::Acquire);
                if p == pos {
                    return Err(PushError::Corrupted);
                }
                pos = p;
            }
        }
        Err(PushError::Corrupted)
    }

    /// Moves `word` (a position) from `pos` to `pos + 1` if nobody has yet:
    /// the claimant of `pos` does, and anyone who finds the claim first
    /// helps, so a claimant stopped between its two steps stops nobody.
    #[inline]
    fn advance(&self, word: &AtomicU64, pos: u64) {
        // SYNC POINT: AcqRel pairs with the Acquire loads of the position
        // in `claim_push` / `claim_pop`: whoever sees the new position
        // sees the owner claim that made it.
        let _ = word.compare_exchange(
            pos,
            pos.wrapping_add(1),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// The slot of `pos` is still held for `pos - capacity` by the consumer
    /// its owner word names: it claimed the item there (which is then lost:
    /// it was being received), or was skipping a dead producer's empty
    /// slot. If that consumer is dead, free the slot. Returns whether it
    /// did.
    #[cold]
    fn free_dead_consumer(&self, meta: &Meta, pos: u64, seq: u64) -> bool {
        let prev = pos.wrapping_sub(self.cap);
        // SYNC POINT: Acquire pairs with the consumer's AcqRel owner CAS.
        let owner = meta.owner.load(Ordering::Acquire);
        if !claims(owner, CONSUMER, prev) || !self.claimant_dead(owner) {
            return false;
        }
        // It may have died before advancing `dequeue`; do it for it, so
        // that consumers do not find a freed slot behind their position.
        self.advance(&self.ctrl.dequeue, prev);
        // SYNC POINT: AcqRel pairs with the Acquire sequence load of the
        // producer at `pos` (ourselves, or a rival).
        let freed = meta
            .seq
            .compare_exchange(seq, pos, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if freed {
            self.ctrl.not_full.notify();
        }
        freed
    }

    /// Pops an item if one is ready now. A slot claimed by a producer that
    /// has not published it yet (or died before it could) reads as empty.
    #[inline]
    pub fn try_pop(&self) -> Result<T, PopError> {
        self.pop_inner(false)
    }

    #[inline]
    fn pop_inner(&self, check: bool) -> Result<T, PopError> {
        let pos = self.claim_pop(check)?;
        Ok(self.take(pos))
    }

    /// Copies the item of the claimed position `pos` out and frees its slot.
    #[inline]
    fn take(&self, pos: u64) -> T {
        let meta = self.meta(pos);
        let i = (pos & (self.cap - 1)) as usize;
        // SAFETY: i < cap; our owner claim on `pos` while the slot read
        // "full at pos" makes it ours alone.
        let item = unsafe { self.cells.read(i) };
        // SYNC POINT: Release pairs with the Acquire load of the sequence
        // in `claim_push` one lap later: our copy out is done.
        meta.seq
            .store(pos.wrapping_add(self.cap), Ordering::Release);
        self.ctrl.not_full.notify_light();
        item
    }

    /// Claims the slot of the next dequeue position, which holds a
    /// published item, and returns the position; the caller copies the
    /// item out and frees the slot. With `check`, first skips a slot whose
    /// producer died between claiming and publishing it.
    #[inline]
    fn claim_pop(&self, check: bool) -> Result<u64, PopError> {
        let cap = self.cap as i64;
        let me = self.peers.me();
        // SYNC POINT: Acquire pairs with the AcqRel advances of `dequeue`,
        // as in `claim_push`.
        let mut pos = self.ctrl.dequeue.load(Ordering::Acquire);
        let mut closed_seen = false;
        for _ in 0..MAX_RETRIES {
            let meta = self.meta(pos);
            // SYNC POINT: Acquire pairs with the Release store of `pos + 1`
            // in `push_inner`: the item is fully copied in.
            let seq = meta.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos.wrapping_add(1)) as i64;
            if diff == 0 {
                // SYNC POINT: Acquire pairs with the AcqRel owner CAS of
                // the slot's last claimant.
                let owner = meta.owner.load(Ordering::Acquire);
                if claims(owner, PRODUCER, pos) {
                    let mine = owner_word(CONSUMER, pos, me);
                    // SYNC POINT: AcqRel, as in `claim_push`.
                    if meta
                        .owner
                        .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        self.advance(&self.ctrl.dequeue, pos);
                        return Ok(pos);
                    }
                    continue;
                }
                if claims(owner, CONSUMER, pos) {
                    self.advance(&self.ctrl.dequeue, pos);
                }
                let p = self.ctrl.dequeue.load(Ordering::Acquire);
                if p == pos {
                    return Err(PopError::Corrupted);
                }
                pos = p;
            } else if diff < 0 {
                if diff < -cap {
                    return Err(PopError::Corrupted);
                }
                if diff == -1 {
                    // SYNC POINT: as above.
                    let owner = meta.owner.load(Ordering::Acquire);
                    if claims(owner, PRODUCER, pos) {
                        // Claimed, not yet published: a producer is copying
                        // its item in, or died doing so.
                        match check.then(|| self.skip_dead_producer(meta, pos, owner, me)) {
                            None | Some(Skip::Alive) => return Err(PopError::Empty),
                            Some(Skip::Published) => return Ok(pos),
                            Some(Skip::Moved) => {
                                pos = self.ctrl.dequeue.load(Ordering::Acquire);
                                continue;
                            }
                        }
                    }
                    if claims(owner, CONSUMER, pos) {
                        // A rival is skipping it: help, then move on.
                        self.advance(&self.ctrl.dequeue, pos);
                        pos = self.ctrl.dequeue.load(Ordering::Acquire);
                        continue;
                    }
                }
                // Empty at `pos`. Closed and drained only if no producer
                // has claimed `pos` either (one that has will publish).
                if closed_seen || !self.is_closed() {
                    return Err(PopError::Empty);
                }
                // SYNC POINT: after the Acquire of `closed` (pairs with the
                // AcqRel swap in `close`), pushes finished before the close
                // are visible; look once more.
                closed_seen = true;
                let enq = self.ctrl.enqueue.load(Ordering::Acquire);
                if enq == pos && !claims(meta.owner.load(Ordering::Acquire), PRODUCER, pos) {
                    return Err(PopError::Closed);
                }
                pos = self.ctrl.dequeue.load(Ordering::Acquire);
            } else {
                let p = self.ctrl.dequeue.load(Ordering::Acquire);
                if p == pos {
                    return Err(PopError::Corrupted);
                }
                pos = p;
            }
        }
        Err(PopError::Corrupted)
    }

    /// The slot of `pos` was claimed by the producer `owner` names and not
    /// published. If that producer is dead, take the slot as its consumer
    /// and free it without an item (the item was never sent) — unless it
    /// was published after all, in which case we now hold it as its
    /// consumer, as a normal claim would.
    #[cold]
    fn skip_dead_producer(&self, meta: &Meta, pos: u64, owner: u64, me: Token) -> Skip {
        if !self.claimant_dead(owner) {
            return Skip::Alive;
        }
        let mine = owner_word(CONSUMER, pos, me);
        // SYNC POINT: AcqRel, as in `claim_push`: one consumer takes it.
        if meta
            .owner
            .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Skip::Moved; // a rival took it; look again
        }
        // The producer may have died before advancing `enqueue`.
        self.advance(&self.ctrl.enqueue, pos);
        self.advance(&self.ctrl.dequeue, pos);
        // SYNC POINT: AcqRel pairs with the Acquire sequence load of the
        // producer one lap later (Release side), and with the producer's
        // Release publication (Acquire side). A compare-and-swap, not a
        // store: if the producer published just before it died, the slot
        // is full and ours to pop.
        match meta.seq.compare_exchange(
            pos,
            pos.wrapping_add(self.cap),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => {
                self.ctrl.not_full.notify();
                Skip::Moved
            }
            Err(seq) if seq == pos.wrapping_add(1) => Skip::Published,
            // Hostile bytes: leave the slot; `dequeue` has moved on.
            Err(_) => Skip::Moved,
        }
    }

    /// Test support: [`Mpmc::push_until`] that runs `pause` between
    /// claiming the slot and filling it, so that a test can stop or kill
    /// the process inside that window.
    #[doc(hidden)]
    pub fn push_pausing(
        &self,
        item: T,
        deadline: Option<&Deadline>,
        pause: impl FnOnce(),
    ) -> Result<(), PushError> {
        let pos = block_checked(&self.ctrl.not_full, deadline, |check| {
            match self.claim_push(check) {
                Err(PushError::Full) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(PushError::Timeout))?;
        pause();
        self.publish(pos, item);
        Ok(())
    }

    /// Test support: [`Mpmc::pop_until`] that runs `pause` between claiming
    /// the item and copying it out.
    #[doc(hidden)]
    pub fn pop_pausing(
        &self,
        deadline: Option<&Deadline>,
        pause: impl FnOnce(),
    ) -> Result<T, PopError> {
        let pos = block_checked(&self.ctrl.not_empty, deadline, |check| {
            match self.claim_pop(check) {
                Err(PopError::Empty) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(PopError::Timeout))?;
        pause();
        Ok(self.take(pos))
    }

    /// Test support: claims the next enqueue position as a push would, and
    /// stops before filling and publishing the slot, as a producer killed
    /// at that moment would. Returns the position.
    #[doc(hidden)]
    pub fn claim_push_and_stop(&self) -> Result<u64, PushError> {
        self.claim_push(false)
    }

    /// Test support: claims the next dequeue position as a pop would, and
    /// stops before copying the item out and freeing the slot, as a
    /// consumer killed at that moment would. Returns the position.
    #[doc(hidden)]
    pub fn claim_pop_and_stop(&self) -> Result<u64, PopError> {
        self.claim_pop(false)
    }
    /// Pushes `item`, sleeping while the queue is full.
    #[inline]
    pub fn push(&self, item: T) -> Result<(), PushError> {
        self.push_until(item, None)
    }

    /// Pushes `item`, waiting at most `timeout` for room.
    #[inline]
    pub fn push_timeout(&self, item: T, timeout: Duration) -> Result<(), PushError> {
        match self.try_push(item) {
            Err(PushError::Full) => self.push_until(item, Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pushes `item`, waiting for room until `deadline` (forever if `None`).
    pub fn push_until(&self, item: T, deadline: Option<&Deadline>) -> Result<(), PushError> {
        match self.try_push(item) {
            Err(PushError::Full) => {}
            r => return r,
        }
        block_checked(&self.ctrl.not_full, deadline, |check| {
            match self.push_inner(item, check) {
                Err(PushError::Full) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(PushError::Timeout))
    }

    /// Pops an item, sleeping while the queue is empty.
    #[inline]
    pub fn pop(&self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    /// Pops an item, waiting at most `timeout` for one.
    #[inline]
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_until(Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pops an item, waiting until `deadline` (forever if `None`).
    pub fn pop_until(&self, deadline: Option<&Deadline>) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => {}
            r => return r,
        }
        block_checked(&self.ctrl.not_empty, deadline, |check| {
            match self.pop_inner(check) {
                Err(PopError::Empty) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(PopError::Timeout))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::peers::testing::{TestPeers, DEAD};
    use crate::queue::testbuf::AlignedBuf;
    use std::vec::Vec;

    fn buf<T: Pod>(cap: usize) -> AlignedBuf {
        AlignedBuf::for_layout(Mpmc::<T>::layout(RingConfig::new(cap)).unwrap())
    }

    #[test]
    fn layout_rejects_bad_capacities() {
        for cap in [0, 1, 3, 12, 1 << 33, usize::MAX] {
            assert!(
                matches!(
                    Mpmc::<u64>::layout(RingConfig::new(cap)),
                    Err(LayoutError::Parameter { param: "capacity", value, .. }) if value == cap as u64
                ),
                "capacity {cap}"
            );
        }
        assert!(Mpmc::<[u8; 3]>::layout(RingConfig::new(2)).is_ok());
    }

    #[test]
    fn fifo_single_thread() {
        let mut b = buf::<u32>(4);
        let q = Mpmc::<u32>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        for lap in 0..5 {
            for i in 0..4 {
                q.try_push(lap * 4 + i).unwrap();
            }
            assert_eq!(q.try_push(0), Err(PushError::Full));
            assert!(q.is_full());
            for i in 0..4 {
                assert_eq!(q.try_pop(), Ok(lap * 4 + i));
            }
            assert!(q.is_empty());
        }
    }

    #[test]
    fn every_item_exactly_once() {
        let producers = 3u64;
        let consumers = 3;
        let per = if cfg!(miri) { 30 } else { 50_000 };
        let mut b = buf::<u64>(8);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(8)).unwrap();
        let mut seen: Vec<u64> = std::thread::scope(|s| {
            for p in 0..producers {
                let q = q.clone();
                s.spawn(move || {
                    for i in 0..per {
                        q.push_timeout(p << 32 | i, Duration::from_secs(60))
                            .unwrap();
                    }
                });
            }
            let hs: Vec<_> = (0..consumers)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut got = Vec::new();
                        loop {
                            match q.pop() {
                                Ok(v) => got.push(v),
                                Err(PopError::Closed) => break got,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    })
                })
                .collect();
            // Close once everything has been pushed and taken.
            while q.ctrl.dequeue.load(Ordering::Relaxed) < producers * per
                && !hs.iter().any(|h| h.is_finished())
            {
                std::thread::yield_now();
            }
            q.close();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        seen.sort_unstable();
        let mut want: Vec<u64> = (0..producers)
            .flat_map(|p| (0..per).map(move |i| p << 32 | i))
            .collect();
        want.sort_unstable();
        assert_eq!(seen, want);
    }

    #[test]
    fn per_producer_order_is_kept() {
        let per = if cfg!(miri) { 50 } else { 20_000 };
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        std::thread::scope(|s| {
            for p in 0..2u64 {
                let q = q.clone();
                s.spawn(move || {
                    for i in 0..per {
                        q.push(p << 32 | i).unwrap();
                    }
                });
            }
            let mut last = [None::<u64>; 2];
            for _ in 0..2 * per {
                let v = q.pop().unwrap();
                let p = (v >> 32) as usize;
                let i = v & 0xffff_ffff;
                assert!(last[p].is_none_or(|l| l < i));
                last[p] = Some(i);
            }
        });
    }

    #[test]
    fn timeouts_and_close() {
        let mut b = buf::<u64>(2);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(2)).unwrap();
        assert_eq!(
            q.pop_timeout(Duration::from_millis(10)),
            Err(PopError::Timeout)
        );
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(
            q.push_timeout(3, Duration::from_millis(10)),
            Err(PushError::Timeout)
        );
        q.close();
        assert_eq!(q.push(3), Err(PushError::Closed));
        assert_eq!(q.pop(), Ok(1));
        assert_eq!(q.pop(), Ok(2));
        assert_eq!(q.pop(), Err(PopError::Closed));
        assert_eq!(q.ctrl.not_empty.sleepers(), 0);
        assert_eq!(q.ctrl.not_full.sleepers(), 0);
    }

    #[test]
    fn close_wakes_all_sleepers() {
        let mut b = buf::<u64>(2);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(2)).unwrap();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || q.pop_timeout(Duration::from_secs(30)))
                })
                .collect();
            while q.ctrl.not_empty.sleepers() < 3 {
                std::thread::yield_now();
            }
            q.close();
            for h in hs {
                assert_eq!(h.join().unwrap(), Err(PopError::Closed));
            }
        });
    }

    #[test]
    fn no_wake_when_nobody_sleeps() {
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        for i in 0..50 {
            q.push(i).unwrap();
            assert_eq!(q.pop(), Ok(i));
        }
        assert_eq!(q.ctrl.not_empty.epoch.load(Ordering::Relaxed), 0);
        assert_eq!(q.ctrl.not_full.epoch.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn attach_sees_the_same_queue() {
        let b = buf::<u64>(4);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // SAFETY (below): b outlives the handles; only this test uses it.
        assert_eq!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<u64>::attach(ptr, len) }.err(),
            Some(QueueError::NotAQueue)
        );
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q = unsafe { Mpmc::<u64>::init_at(ptr, len, RingConfig::new(4)) }.unwrap();
        q.push(9).unwrap();
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q2 = unsafe { Mpmc::<u64>::attach(ptr, len) }.unwrap();
        assert_eq!(q2.pop(), Ok(9));
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<i32>::attach(ptr, len) },
            Err(QueueError::Incompatible(_))
        ));
        // A capacity the mapping cannot hold.
        q.ctrl.header.words[0].store(1 << 10, Ordering::Relaxed);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<u64>::attach(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
        q.ctrl.header.words[0].store(3, Ordering::Relaxed);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<u64>::attach(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
    }

    #[test]
    fn corrupted_sequences_are_errors() {
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        q.push(1).unwrap();
        // A sequence far ahead of its position, with the position stuck.
        q.metas[1].seq.store(1000, Ordering::Relaxed);
        assert_eq!(q.try_push(2), Err(PushError::Corrupted));
        assert_eq!(
            q.push_timeout(2, Duration::from_millis(1)),
            Err(PushError::Corrupted)
        );
        // Far behind.
        q.metas[0].seq.store(u64::MAX - 100, Ordering::Relaxed);
        assert_eq!(q.try_pop(), Err(PopError::Corrupted));
        assert_eq!(q.pop(), Err(PopError::Corrupted));
        // Positions that are nonsense.
        q.ctrl.dequeue.store(u64::MAX, Ordering::Relaxed);
        assert!(q.try_pop().is_err());
        assert!(q.len() <= 4);
    }

    #[cfg(not(miri))]
    #[test]
    fn a_producer_dead_between_claim_and_publish_is_skipped() {
        let mut b = buf::<u64>(4);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4))
            .unwrap()
            .with_peers(&judge);
        let pos = q.claim_push_and_stop().unwrap();
        q.push(2).unwrap();
        // Our own claim: we are alive, so it is waited for, never skipped.
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        assert_eq!(
            q.pop_timeout(Duration::from_millis(120)),
            Err(PopError::Timeout)
        );
        // Now say a dead process made it.
        let m = q.meta(pos);
        m.owner
            .store(owner_word(PRODUCER, pos, DEAD), Ordering::Relaxed);
        assert_eq!(q.try_pop(), Err(PopError::Empty), "try_pop never waits");
        let t = std::time::Instant::now();
        assert_eq!(q.pop_timeout(Duration::from_secs(10)), Ok(2));
        assert!(t.elapsed() < Duration::from_secs(5));
        // The ring is consistent: every slot goes round again.
        for i in 0..12 {
            q.push(i).unwrap();
            assert_eq!(q.pop(), Ok(i));
        }
    }

    #[cfg(not(miri))]
    #[test]
    fn a_consumer_dead_holding_a_slot_frees_it_for_producers() {
        let mut b = buf::<u64>(2);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(2))
            .unwrap()
            .with_peers(&judge);
        q.push(1).unwrap();
        q.push(2).unwrap();
        let pos = q.claim_pop_and_stop().unwrap();
        assert_eq!(q.try_push(3), Err(PushError::Full));
        assert_eq!(
            q.push_timeout(3, Duration::from_millis(120)),
            Err(PushError::Timeout),
            "a live holder is waited for"
        );
        q.meta(pos)
            .owner
            .store(owner_word(CONSUMER, pos, DEAD), Ordering::Relaxed);
        q.push_timeout(3, Duration::from_secs(10)).unwrap();
        // Item 1 was being received by the dead consumer: lost, nothing else.
        assert_eq!(q.pop(), Ok(2));
        assert_eq!(q.pop(), Ok(3));
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        for i in 0..8 {
            q.push(i).unwrap();
            assert_eq!(q.pop(), Ok(i));
        }
    }

    #[cfg(not(miri))]
    #[test]
    fn a_consumer_dead_while_skipping_a_dead_producer_is_finished_for() {
        let mut b = buf::<u64>(2);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(2))
            .unwrap()
            .with_peers(&judge);
        // Slot 0: a producer claimed it and died; a consumer took it over
        // to skip it and died too, before freeing it.
        let pos = q.claim_push_and_stop().unwrap();
        q.meta(pos)
            .owner
            .store(owner_word(CONSUMER, pos, DEAD), Ordering::Relaxed);
        q.push(1).unwrap();
        assert_eq!(q.pop_timeout(Duration::from_secs(10)), Ok(1));
        // The next lap's producer finds the slot still at `pos`.
        assert_eq!(q.try_push(2), Err(PushError::Full));
        q.push_timeout(2, Duration::from_secs(10)).unwrap();
        assert_eq!(q.pop(), Ok(2));
        for i in 0..6 {
            q.push(i).unwrap();
            assert_eq!(q.pop(), Ok(i));
        }
    }

    #[cfg(not(miri))]
    #[test]
    fn a_claim_stopped_before_advancing_the_position_is_helped_along() {
        let mut b = buf::<u64>(4);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4))
            .unwrap()
            .with_peers(&judge);
        // A producer that named itself in the slot and died before moving
        // `enqueue`: the next producer helps, consumers skip the slot.
        let m = q.meta(0);
        m.owner
            .store(owner_word(PRODUCER, 0, DEAD), Ordering::Relaxed);
        q.push(7).unwrap();
        assert_eq!(q.ctrl.enqueue.load(Ordering::Relaxed), 2);
        assert_eq!(q.pop_timeout(Duration::from_secs(10)), Ok(7));
        // A consumer likewise: it claimed slot 1's item and died before
        // moving `dequeue`; the item is lost, the slot comes back.
        q.push(8).unwrap();
        q.push(9).unwrap();
        let pos = q.ctrl.dequeue.load(Ordering::Relaxed);
        q.meta(pos)
            .owner
            .store(owner_word(CONSUMER, pos, DEAD), Ordering::Relaxed);
        assert_eq!(q.pop(), Ok(9));
        for i in 0..3 {
            q.push(i).unwrap();
        }
        q.push_timeout(3, Duration::from_secs(10)).unwrap();
        for i in 0..4 {
            assert_eq!(q.pop(), Ok(i));
        }
    }

    #[test]
    fn garbage_never_panics_or_hangs() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let rounds = if cfg!(miri) { 20 } else { 5000 };
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        for _ in 0..rounds {
            let r = rand();
            let small = |x: u64| x % 16;
            let pick = |x: u64, y: u64| if r & 1 == 0 { small(x) } else { y };
            q.ctrl.enqueue.store(pick(r >> 8, r), Ordering::Relaxed);
            q.ctrl
                .dequeue
                .store(pick(r >> 16, rand()), Ordering::Relaxed);
            for m in q.metas {
                m.seq.store(pick(rand(), rand()), Ordering::Relaxed);
                let r = rand();
                m.owner.store(
                    if r & 1 == 0 { r & !POS_MASK } else { r },
                    Ordering::Relaxed,
                );
            }
            let _ = q.try_push(1);
            let _ = q.try_pop();
            let _ = q.pop_timeout(Duration::ZERO);
            let _ = q.push_timeout(1, Duration::ZERO);
        }
    }
}
