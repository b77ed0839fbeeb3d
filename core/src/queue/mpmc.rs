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
//! | 62–63 | 1 producer, 2 consumer, 3 abandoned (below), 0 never claimed |
//!
//! A producer at `p` may claim only over the word of the consumer that
//! freed the slot one lap ago (`p - capacity`), a consumer only over the
//! word of the producer that published `p`, so each claim compare-and-swap
//! succeeds for one party per position and lap. A producer then moves
//! `enqueue` from `p` to `p + 1` with a compare-and-swap; producers that
//! find a producer's claim first help with that step, so a producer
//! stopped between its two steps stops nobody. A consumer moves `dequeue`
//! to `p + 1` with a plain Release store: no rival moves it off `p` while
//! the claim stands ("Consumers wait for each other", below), so a pop
//! makes two locked instructions (the claim and the freeing), not three.
//! Because the claim and the name are one atomic write, there is no
//! instant at which a slot is claimed by an unknown process.
//!
//! **32 bits of a position.** The owner word has room for 32 bits of the
//! position, so a claimant that stood still for 2^32 positions between
//! reading the slot and its compare-and-swap could find the word it read
//! back in place, written by a later lap. Every claimant therefore re-reads
//! the sequence number (all 64 bits) right after its compare-and-swap: it
//! must still say "free for `p`" (producer) or "full at `p`" (consumer). If
//! it does not, the claim was a mistake. A producer's mistaken word reads
//! as a claim of the slot's next position, which producers may already have
//! helped past, so it cannot be taken back; the producer turns it into an
//! *abandoned* claim (role 3, keeping the token of the consumer that may
//! still hold the slot, so that its death stays detectable), which
//! consumers skip at once, and pushes again. A consumer's mistaken word is
//! put back as it was: no one acts on a consumer's claim but its owner
//! (next paragraph). The capacity is at most 2^31 (`MAX_CAPACITY`), so
//! that positions one lap apart differ in those 32 bits.
//!
//! **Consumers wait for each other.** A consumer that finds a rival
//! consumer's claim of the item at `dequeue` (a rival between its claim
//! and its advance, a few instructions) spins briefly, then gives its core
//! away (`sched_yield`: a rival still there after a spin was most likely
//! preempted, and with more parties than cores it runs only if someone
//! yields), a few times, and if the rival is still there reports `Empty`
//! rather than advance `dequeue` for it; a
//! blocking caller sleeps and looks again, and after a check interval
//! advances it for a rival that died. Helping would let a consumer's claim
//! be acted on before its owner knows the claim is good, and then a
//! mistaken claim (above) could not be taken back.
//!
//! **A late store of `dequeue`.** A consumer wrongly judged dead between
//! its claim and its store (forged peer bookkeeping) has had `dequeue`
//! advanced for it, and others may have consumed on; its late store then
//! moves `dequeue` back behind slots already consumed. A consumer that
//! finds the slot at `dequeue` freed at a later lap (its sequence number a
//! lap or more ahead) while `dequeue` has not moved knows this happened —
//! nothing else leaves that state — and moves `dequeue` on with a
//! compare-and-swap (`dequeue_behind`) to just past the last position that
//! slot saw consumed, until it reaches an item or the end: about a lap of
//! such steps, however many laps back the store put it. No item is handed
//! out twice: a claim still needs the slot to read full at exactly its
//! position.
//!
//! **Closing.** `enqueue`'s bit 63 is `CLOSED`. `close` sets it with one
//! read-modify-write of `enqueue`; every claim takes effect only by
//! advancing `enqueue` past its position (a compare-and-swap from the
//! position, which the bit makes fail), so the two are ordered in
//! `enqueue`'s modification order:
//!
//! | a producer that claimed `p` finds its advance | so | it |
//! |---|---|---|
//! | succeeded, or `enqueue` already past `p` (a helper) | the claim took effect before the close | publishes, returns `Ok` |
//! | failed on `p \| CLOSED` | the close came first: `enqueue` is frozen at `p` for good | never publishes, returns `Closed` |
//!
//! A consumer reports `Closed` only at a position `p` whose slot holds no
//! published item and where it reads `enqueue == p | CLOSED`: every claim
//! below `p` took effect and has been taken by a consumer (`dequeue` is at
//! `p`), and none at `p` or later ever will. A claim below the line whose
//! producer is slow keeps consumers waiting (`Empty`); one whose producer
//! died is skipped. So once any consumer is told `Closed`, no item whose
//! push returned `Ok` is left in the queue or arrives later.
//!
//! **Publishing and freeing are compare-and-swaps** from the sequence
//! number the claim saw (`p` to `p + 1`, and `p + 1` to `p + capacity`),
//! not stores: a claimant that was wrongly judged dead (which takes forged
//! peer bookkeeping: judgements are made on evidence) and whose slot was
//! skipped or freed meanwhile finds the slot changed, and its push or pop
//! returns `Corrupted` — the item undelivered, or (a pop) not handed out,
//! since the copy may be torn — instead of overwriting the slot's state.
//! What it cannot undo: a payload copy it made into a slot that a later
//! lap's producer already filled.
//!
//! The layout is a control block (header, `enqueue` and `dequeue` each on a
//! cache line of its own, two sleep/wake words), then `capacity` slot
//! records, each its sequence number, its owner word and its item (see
//! **Records** below; [`record_size`] gives their stride).
//! Capacity is a power of two from 2 to 2^31 (with one slot, "free for
//! `p + 1`" and "full at `p`" would be the same number).
//!
//! **Hostile memory.** A legal sequence number is within `capacity` of the
//! position being tried; anything else is [`PopError::Corrupted`] /
//! [`PushError::Corrupted`]. A sequence number ahead of its position while
//! the position itself did not move is also corruption, so no retry loop can
//! be kept spinning by a stuck value; the loops are bounded besides. A
//! forged owner word can delay recovery or make a waiter check a stranger's
//! liveness, never hand out a slot twice: claims still need the sequence
//! number to agree. A forged `CLOSED` bit closes the queue.
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
//! slot is published by one Release compare-and-swap after the whole copy.
//! A consumer killed between its claim and its advance of `dequeue` holds
//! up other consumers until a blocking one finds it dead. Recovery
//! takes one check interval of some caller's blocking wait (timed waits
//! check once more when they time out); `try_` calls never wait, so they
//! never recover — they report `Empty` / `Full` while a dead peer's slot is
//! in the way. A process that is alive but stopped (SIGSTOP, a debugger)
//! holds its slot until it continues, as a live one must. Who is dead is
//! the mapping's [`Peers`]' judgement ([`crate::peers`]): evidence that
//! holds across pid namespaces and pid reuse, and a claimant that cannot
//! be judged counts as alive.
//!
//! **Records.** Each slot is one record: its sequence number, its owner
//! word, then its item (`Record`, 64-byte aligned), so that handing an
//! item from core to core moves one cache line, not one line of
//! bookkeeping and another of items.
//!
//! The price on the fast path: the owner word shares the slot record's
//! cache line with the sequence number; each push and each pop makes one
//! more compare-and-swap (the claim) than Vyukov's queue, publishes or
//! frees with a compare-and-swap instead of a store, and re-reads the
//! sequence number once (a load of the line it just wrote). A pop makes
//! two locked instructions (claim, free), as many as Vyukov's; a push
//! three (claim, advance of `enqueue`, publish).

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use crate::futex::Deadline;
use crate::peers::{self, End, Peers, Token};
use crate::place::LayoutError;
use crate::queue::WaitStrategy;
#[cfg_attr(loom, allow(unused_imports))]
use crate::queue::{
    block_checked, control, round_up, wake_others, CachePadded, Cells, ControlHeader, Ends, Keep,
    Life, PopError, PushError, QueueError, QueueKind, RingConfig, Signal,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// What [`Mpmc::skip_unpublished`] did.
enum Skip {
    /// The producer lives: the slot is still being filled.
    Alive,
    /// The dequeue position moved on (we skipped the slot, or a rival did).
    Moved,
    /// The item was published after all, and we hold it as its consumer.
    Published,
}

/// What a claim compare-and-swap came to.
enum Claim {
    /// The position is ours.
    Taken,
    /// A rival changed the owner word first: look again.
    Lost,
    /// Our view of the slot was a lap (2^32 positions) old; the claim was
    /// given up or put back (module docs): look again, afresh.
    Stale,
}

/// The errors a claim can end a push or a pop with ([`Mpmc::claim_at`]
/// serves both).
trait ClaimFailure {
    /// The queue's memory broke a rule.
    const CORRUPTED: Self;
    /// The close came before the claim took effect.
    const CLOSED: Self;
}

impl ClaimFailure for PushError {
    const CORRUPTED: Self = PushError::Corrupted;
    const CLOSED: Self = PushError::Closed;
}

impl ClaimFailure for PopError {
    const CORRUPTED: Self = PopError::Corrupted;
    const CLOSED: Self = PopError::Closed;
}

/// How many times one push or pop retries after losing a race before it
/// reports corruption. Every retry means another thread made progress, so
/// only a peer rewriting the positions in a loop gets anywhere near this.
const MAX_RETRIES: u32 = 1 << 20;

#[cfg(all(test, not(loom)))]
std::thread_local! {
    /// How many times this thread's `dequeue_behind` ran (tests only).
    static BEHIND_STEPS: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

/// How long a consumer spins for a rival that claimed the item before it
/// (and has not yet advanced `dequeue`), per look, and how many looks it
/// takes before it reports `Empty` (a blocking caller then sleeps).
/// (One of each under loom, where a spin is a yield to the model.)
const RIVAL_SPINS: u32 = if cfg!(loom) { 1 } else { 64 };
const RIVAL_WAITS: u32 = if cfg!(loom) { 1 } else { 4 };

/// A slot's bookkeeping: its sequence number (Vyukov's) and the owner word
/// of its latest claim (see the module docs).
#[repr(C)]
pub(crate) struct Meta {
    seq: AtomicU64,
    owner: AtomicU64,
}

#[cfg(loom)]
impl Meta {
    fn new(seq: u64) -> Meta {
        Meta {
            seq: AtomicU64::new(seq),
            owner: AtomicU64::new(0),
        }
    }
}

/// One slot of the ring: its bookkeeping, then its item, in one record.
///
/// Side by side, a push or a pop moves one cache line of the ring between
/// the producer's and the consumer's cores, not two (the sequence numbers
/// and the items were once two arrays: in `tp_mpmc_1p1c`, Intel model 207,
/// this layout took shmipc from 0.23-0.31x crossbeam to 0.39-0.48x in
/// paired runs). Records are aligned to a cache line (64 bytes), so that
/// two slots next to each other, which a producer and a consumer work on
/// at once, never share one: against 32-byte records this was as fast in
/// 1P/1C and faster in the unpinned 2P/2C row in every run (0.36-0.51x
/// against 0.21-0.31x crossbeam; BENCHMARKS.md, "MPMC records"), at the
/// price of 64 bytes a slot for items up to 48 bytes.
#[repr(C, align(64))]
pub(crate) struct Record<T> {
    meta: Meta,
    cell: crate::sync::UnsafeCell<T>,
}

impl<T: Pod> Record<T> {
    /// The item's cell of the record at `r`, for one copy in or out.
    /// Reached through the raw pointer: a `&Record` would cover the
    /// record's padding, bytes outside any `UnsafeCell` that a peer may
    /// write.
    ///
    /// # Safety
    ///
    /// `r` points at a live record.
    #[inline]
    unsafe fn item(r: *const Record<T>) -> Cells<T> {
        // Outside loom a cell of `Cells` is the item itself, reached
        // through the `UnsafeCell`'s pointer; under loom it is the cell.
        #[cfg(not(loom))]
        // SAFETY: a live record (contract); the reference is to the cell only.
        let cell = unsafe { (*r).cell.with_mut(|p| p) };
        #[cfg(loom)]
        // SAFETY: a live record (contract); no reference is made.
        let cell = unsafe { core::ptr::addr_of!((*r).cell) }.cast_mut();
        // SAFETY: `cell` lies in a live record, so it is not null; it is
        // one valid cell, which lives as long as the record; the callers
        // keep to index 0 and to the claim protocol.
        unsafe { Cells::new(NonNull::new_unchecked(cell)) }
    }
}

/// The claimant's role in an owner word (bits 62–63).
const ROLE_MASK: u64 = 3 << 62;
const PRODUCER: u64 = 1 << 62;
const CONSUMER: u64 = 2 << 62;
/// A producer's claim that will never be published: a claimant found,
/// after its compare-and-swap, that its view of the slot was a lap (2^32
/// positions) old, and gave the position up. Consumers skip it at once.
const ABANDONED: u64 = 3 << 62;
const POS_MASK: u64 = 0xffff_ffff;
const TOKEN_MASK: u64 = !ROLE_MASK & !POS_MASK;

/// `enqueue`'s bit 63: the queue is closed. `close` sets it with one
/// read-modify-write of `enqueue`, the word every claim must advance, so
/// from then on no claim can take effect: the positions below it are the
/// last that will ever hold items (module docs, "Closing").
const CLOSED: u64 = 1 << 63;

/// Moves a slot's sequence number from `from` (what our claim saw) to `to`
/// with Release ordering, only if it is still `from`; returns whether it
/// was. Publishing and freeing use it (module docs).
///
/// Under loom it is a plain Release store: the models never judge anyone
/// dead, so no slot is ever taken from its claimant and the swap would
/// always succeed; a store synchronises no more than the swap does (it
/// starts no release sequence of other writers), so a model that passes
/// with the store passes with the swap, and it explores far fewer
/// interleavings. The unit tests check the failing swap.
#[inline]
fn hand_on(seq: &AtomicU64, from: u64, to: u64) -> bool {
    #[cfg(not(loom))]
    return seq
        .compare_exchange(from, to, Ordering::Release, Ordering::Relaxed)
        .is_ok();
    #[cfg(loom)]
    {
        let _ = from;
        seq.store(to, Ordering::Release);
        true
    }
}

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
    /// The header and the words written rarely, on the first lines.
    lead: CachePadded<Lead>,
    /// The next position to claim for a push; bit 63 is [`CLOSED`].
    enqueue: CachePadded<AtomicU64>,
    dequeue: CachePadded<AtomicU64>,
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
    /// Non-zero once `close` has set [`CLOSED`] in `enqueue`: a hint that
    /// lets consumers on an empty slot skip the load of `enqueue` (a line
    /// producers keep busy) until there is a close to look for.
    closed: AtomicU32,
    /// The gap before `ends`, as an atomic nothing touches rather than
    /// padding: a peer may write it while a `&Lead` lives (the union of
    /// [`CachePadded`] covers the block, not the `&Lead` its deref gives).
    _gap: AtomicU32,
    /// Endpoint flags and departures (`queue/ends.rs`), in what was
    /// padding before `enqueue`.
    ends: AtomicU64,
}

// The layout of existing segments: `_gap` fills what was padding.
#[cfg(not(loom))]
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Lead, closed) == 64 && offset_of!(Lead, _gap) == 68);
    assert!(offset_of!(Lead, ends) == 72 && size_of::<Lead>() == 80);
    assert!(size_of::<Control>() == 5 * 128);
};

#[cfg(not(loom))]
impl Control {
    /// Whether a pop's owner check or end-of-stream check could find
    /// something now: a claim in flight (its producer may have died inside
    /// it), or producers a scan could find gone. A snapshot.
    fn pop_check_may_help(&self) -> bool {
        let deq = self.dequeue.load(Ordering::Relaxed);
        let enq = self.enqueue.load(Ordering::Relaxed) & !CLOSED;
        enq != deq || crate::queue::judgeable(&self.lead.ends, End::Sender)
    }
}

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
                ends: AtomicU64::new(0),
            }),
            enqueue: CachePadded::new(AtomicU64::new(0)),
            dequeue: CachePadded::new(AtomicU64::new(0)),
            not_empty: CachePadded::new(Signal::new()),
            not_full: CachePadded::new(Signal::new()),
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
pub struct Mpmc<'a, T, K = Keep> {
    ctrl: &'a Control,
    /// `cap` records, valid for `'a`; reached by raw pointer and never as
    /// `&Record` (see [`Record::item`]): only their atomics and items are
    /// ever referenced.
    records: NonNull<Record<T>>,
    /// Trusted copy of the capacity (checked at attach, never re-read).
    cap: u64,
    /// Who we are, and who is dead, among the processes sharing the memory.
    peers: &'a dyn Peers,
    /// Which ends of the queue this handle holds (`queue/ends.rs`).
    ends: Ends,
    /// How this handle's blocking calls wait.
    wait: WaitStrategy,
    /// What keeps the memory alive (see [`Keep`]).
    _keep: K,
    _life: Life<'a, T>,
}

// SAFETY: every access to the shared memory goes through atomics or through
// slots owned by the claim protocol; items are Pod.
unsafe impl<T: Send, K: Send> Send for Mpmc<'_, T, K> {}
// SAFETY: as for Send; all methods take &self and are thread-safe.
unsafe impl<T: Send, K: Sync> Sync for Mpmc<'_, T, K> {}

impl<T, K: Clone> Clone for Mpmc<'_, T, K> {
    fn clone(&self) -> Self {
        Mpmc {
            ctrl: self.ctrl,
            records: self.records,
            cap: self.cap,
            peers: self.peers,
            ends: self.ends.clone(),
            wait: self.wait,
            _keep: self._keep.clone(),
            _life: PhantomData,
        }
    }
}

impl<T, K> Drop for Mpmc<'_, T, K> {
    /// Gives back the ends this handle held and wakes the other side, so
    /// that a consumer blocked on a queue whose last producer this was sees
    /// end-of-stream at once.
    fn drop(&mut self) {
        let held = self.ends.release(&self.ctrl.lead.ends, self.peers);
        wake_others(held, &self.ctrl.not_empty, &self.ctrl.not_full);
    }
}

impl<T, K> fmt::Debug for Mpmc<'_, T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpmc")
            .field("capacity", &self.cap)
            .field("enqueue", &self.ctrl.enqueue.load(Ordering::Relaxed))
            .field("dequeue", &self.ctrl.dequeue.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Byte offsets of the records and of the end of the queue.
fn offsets<T>(cap: usize) -> Option<(usize, usize)> {
    let records = round_up(size_of::<Control>(), align_of::<Record<T>>())?;
    let end = round_up(
        records.checked_add(cap.checked_mul(size_of::<Record<T>>())?)?,
        128,
    )?;
    Some((records, end))
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
        let (_, end) = offsets::<T>(config.capacity).ok_or(config.too_large())?;
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
        let (records_off, _) = offsets::<T>(cap).ok_or(LayoutError::InvalidParameters)?;
        // SAFETY: aligned and large enough (checked), exclusive (contract).
        // Zeroed, not written as structs: every field of `Control::new()`
        // is an atomic holding 0, so zero bytes are that value, and a typed
        // write would copy the struct's padding from the stack into shared
        // memory (this process's addresses, for any reader to see). The
        // records too: zero is a valid owner word and a valid (Pod) item,
        // so no slot is ever read uninitialised even if corrupted sequence
        // numbers say so; the sequence numbers are set below.
        unsafe { ptr.write_bytes(0, records_off + cap * size_of::<Record<T>>()) };
        // SAFETY: the records are in bounds, aligned (their offset is a
        // multiple of their alignment from a 128-aligned base), zeroed
        // (valid), exclusive.
        let records = unsafe { ptr.add(records_off).cast::<Record<T>>() };
        for i in 0..cap {
            // SAFETY: i < cap, in bounds and valid as above.
            unsafe {
                (*records.add(i))
                    .meta
                    .seq
                    .store(i as u64, Ordering::Relaxed)
            };
        }
        // SAFETY: initialised above; valid for 'a (contract).
        let ctrl: &'a Control = unsafe { &*ptr.cast::<Control>() };
        ctrl.lead.header.publish(
            QueueKind::Mpmc,
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
        let (records_off, _) = offsets::<T>(cap).unwrap_or((0, 0));
        // SAFETY: in bounds of the checked layout (as for the records),
        // aligned, made of atomics.
        let ctrl: &'a Control = unsafe { &*ptr.cast::<Control>() };
        // SAFETY: as above (so not null); a record is atomics and a Pod
        // item in an `UnsafeCell`, accessed by copy only.
        let records = unsafe { NonNull::new_unchecked(ptr.add(records_off).cast::<Record<T>>()) };
        // Publishing pushes and pops check for sleepers with a plain load
        // where the kernel offers heavy barriers (`crate::membarrier`).
        ctrl.not_empty.enable_light();
        ctrl.not_full.enable_light();
        Mpmc {
            ctrl,
            records,
            cap: cap as u64,
            peers: peers::resolve(ptr as usize),
            ends: Ends::new(),
            wait: WaitStrategy::DEFAULT,
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
        // SAFETY: forwarded contract; Control is made of atomics only.
        let (_, config) = unsafe {
            control::attach(
                ptr,
                len,
                |c: &Control| &c.lead.header,
                QueueKind::Mpmc,
                (size_of::<T>(), align_of::<T>()),
                RingConfig::from_words,
                Self::layout,
            )?
        };
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
        let records: Box<[Record<T>]> = (0..cap)
            .map(|i| Record {
                meta: Meta::new(i as u64),
                cell: crate::sync::UnsafeCell::new(T::zeroed()),
            })
            .collect();
        // The same self-description as in shared memory (size: the
        // layout a mapping would need).
        ctrl.lead.header.publish(
            QueueKind::Mpmc,
            (size_of::<T>(), align_of::<T>()),
            config.to_words(),
            Self::layout(config).map_or(0, |l| l.size()),
        );
        let ctrl_ptr: *const Control = &*ctrl;
        let records_ptr = NonNull::from(&*records).cast::<Record<T>>();
        let keep = Keep(std::sync::Arc::new(crate::queue::Boxed(ctrl, records, ())));
        Mpmc {
            // SAFETY: the boxes live as long as `keep`, which the handle
            // (and each clone) holds.
            ctrl: unsafe { &*ctrl_ptr },
            // As above.
            records: records_ptr,
            cap: cap as u64,
            peers: &peers::LOCAL,
            ends: Ends::new(),
            wait: WaitStrategy::DEFAULT,
            _keep: keep,
            _life: PhantomData,
        }
    }

    /// [`Mpmc::attach`] for a handle that owns its memory: `owner` (a
    /// mapping) keeps the bytes alive, and the handle and each clone hold
    /// it, so they can be moved anywhere and live as long as they like.
    ///
    /// # Safety
    ///
    /// As for [`Mpmc::attach`], with the bytes valid for as long as `owner`
    /// or any clone of it lives, instead of for `'a`.
    #[cfg(not(loom))]
    pub unsafe fn attach_owned<K>(
        ptr: *mut u8,
        len: usize,
        owner: K,
    ) -> Result<Mpmc<'a, T, K>, QueueError> {
        // SAFETY: forwarded contract.
        let q = unsafe { Self::attach(ptr, len)? };
        Ok(Mpmc {
            ctrl: q.ctrl,
            records: q.records,
            cap: q.cap,
            peers: q.peers,
            ends: Ends::new(),
            wait: q.wait,
            _keep: owner,
            _life: PhantomData,
        })
    }
}

impl<'a, T: Pod, K> Mpmc<'a, T, K> {
    /// What keeps the memory alive: [`Keep`] for a handle that borrows
    /// it, the owner given to an `attach_owned` constructor otherwise.
    pub fn owner(&self) -> &K {
        &self._keep
    }

    wait_strategy_methods!();

    /// How many items the queue holds when full.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Items in the queue now (a snapshot, clamped to the capacity).
    pub fn len(&self) -> usize {
        let deq = self.ctrl.dequeue.load(Ordering::Acquire);
        let enq = self.ctrl.enqueue.load(Ordering::Acquire) & !CLOSED;
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
    /// side is woken. A push racing the close either lands before the line
    /// (it returns `Ok`, and consumers receive the item before they are
    /// told `Closed`) or after it (it returns `Closed`, and nobody ever
    /// receives the item).
    pub fn close(&self) {
        // SYNC POINT: AcqRel read-modify-write of `enqueue`, ordered with
        // every claim's advance of the same word (module docs, "Closing"),
        // and paired with the Acquire loads of `enqueue` in `claim_push`
        // and `claim_pop`.
        self.ctrl.enqueue.fetch_or(CLOSED, Ordering::AcqRel);
        // SYNC POINT: Release pairs with the Acquire load in `closed_at`:
        // whoever sees the hint sees the bit.
        self.ctrl.lead.closed.store(1, Ordering::Release);
        self.ctrl.not_empty.wake_all();
        self.ctrl.not_full.wake_all();
    }

    /// Whether the close froze `enqueue` at `pos`: then no claim at `pos`
    /// or later ever takes effect (module docs, "Closing").
    #[inline]
    fn closed_at(&self, pos: u64) -> bool {
        // SYNC POINT: Acquire pairs with the Release store of the hint in
        // `close`, and the Acquire load of `enqueue` with `close`'s AcqRel
        // `fetch_or` and the claims' AcqRel advances.
        self.ctrl.lead.closed.load(Ordering::Acquire) != 0
            && self.ctrl.enqueue.load(Ordering::Acquire) == pos | CLOSED
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.ctrl.enqueue.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Records this handle as a holder of `end` now, rather than at its
    /// first push or pop (see [`PopError::Disconnected`]).
    pub fn declare(&self, end: End) {
        self.ends.note(end, &self.ctrl.lead.ends, self.peers);
    }

    /// Whether a push that finds the queue full and no live consumer fails
    /// with [`PushError::Disconnected`] (`true`) or keeps waiting for room
    /// (`false`, the default: a queue may outlive its consumers, and a
    /// consumer may come later). Only a push that would block looks: one
    /// that finds room succeeds.
    pub fn fail_sends_without_receiver(mut self, on: bool) -> Self {
        self.ends.fail_sends = on;
        self
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
        Token::from_raw(((w & TOKEN_MASK) >> 32) as u32)
            .is_some_and(|t| !crate::fault::claim_recovery_off() && self.peers.fate(t).is_dead())
    }

    /// The record of position `pos`'s slot.
    #[inline]
    fn record(&self, pos: u64) -> *const Record<T> {
        // SAFETY: the index is below `cap`, so inside the records.
        unsafe { self.records.as_ptr().add((pos & (self.cap - 1)) as usize) }
    }

    #[inline]
    fn meta(&self, pos: u64) -> &Meta {
        // SAFETY: a live record (for 'a); the reference is to its atomics
        // only, not to its padding.
        unsafe { &(*self.record(pos)).meta }
    }

    /// Pushes `item` if there is room now. A slot kept busy by a producer
    /// or consumer that is mid-operation (or died there) reads as full.
    /// Full with every consumer gone, on a handle that
    /// [fails sends without a receiver](Mpmc::fail_sends_without_receiver):
    /// [`PushError::Disconnected`].
    #[inline]
    pub fn try_push(&self, item: T) -> Result<(), PushError> {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
        self.push_woken(item, false)
    }

    #[inline]
    fn push_inner(&self, item: T, check: bool) -> Result<(), PushError> {
        let pos = self.claim_push(check)?;
        self.publish(pos, item)
    }

    /// Fills the slot of the claimed position `pos` and publishes it.
    ///
    /// The publication is a compare-and-swap from the sequence our claim
    /// saw, not a store: if a consumer judged us dead and skipped the slot
    /// meanwhile (which needs forged peer bookkeeping: the judgement is made
    /// on evidence), the slot is no longer ours, and we report `Corrupted`
    /// with the item undelivered instead of overwriting the slot's state.
    #[inline]
    fn publish(&self, pos: u64, item: T) -> Result<(), PushError> {
        let meta = self.meta(pos);
        // SAFETY: a live record (for 'a); index 0 of its one cell; our
        // owner claim on `pos` while the slot read "free for pos" makes it ours
        // alone.
        unsafe { Record::item(self.record(pos)).write(0, item) };
        // SYNC POINT: Release pairs with the Acquire load of the sequence
        // in `claim_pop`: the item is copied in before the slot reads full.
        if !hand_on(&meta.seq, pos, pos.wrapping_add(1)) {
            return Err(PushError::Corrupted);
        }
        self.ctrl.not_empty.notify_light();
        Ok(())
    }

    /// Claims the slot of the next enqueue position for this process and
    /// returns the position; the caller fills the slot and publishes it.
    /// With `check`, also frees a slot a dead consumer kept from the last
    /// lap.
    #[inline]
    fn claim_push(&self, check: bool) -> Result<u64, PushError> {
        let cap = self.cap as i64;
        let me = self.peers.me();
        // SYNC POINT: Acquire (here and on every reload) pairs with the
        // AcqRel advances of `enqueue` by earlier producers, so the slots
        // they claimed are visible to us as claimed: a stale view never
        // looks like corruption. It also pairs with `close`'s AcqRel.
        let mut pos = self.ctrl.enqueue.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            if pos & CLOSED != 0 {
                return Err(PushError::Closed);
            }
            let meta = self.meta(pos);
            // SYNC POINT: Acquire pairs with the Release compare-and-swap
            // of the sequence in `take` (or the AcqRel ones in
            // `free_dead_consumer` and `skip_unpublished`): the previous
            // item is copied out, and the owner word of that consumer's
            // claim is visible.
            let seq = meta.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as i64;
            if diff == 0 {
                // SYNC POINT: Acquire pairs with the AcqRel owner CAS of
                // the slot's last claimant.
                let owner = meta.owner.load(Ordering::Acquire);
                let prev = pos.wrapping_sub(self.cap);
                if claims(owner, CONSUMER, prev) || (pos < self.cap && owner == 0) {
                    // Free for `pos` and unclaimed: claim it.
                    match self.claim_at(PRODUCER, meta, pos, owner, me)? {
                        Claim::Taken => return Ok(pos),
                        Claim::Lost => continue,
                        Claim::Stale => {
                            pos = self.ctrl.enqueue.load(Ordering::Acquire);
                            continue;
                        }
                    }
                }
                if claims(owner, PRODUCER, pos) || claims(owner, ABANDONED, pos) {
                    // Another producer claimed `pos` (or gave it up) and
                    // may not have advanced `enqueue` yet: help it, then
                    // move on.
                    let _ = self.advance(&self.ctrl.enqueue, pos);
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

    /// Claims position `pos` for `role` ([`PRODUCER`]: the slot read free
    /// for `pos`; [`CONSUMER`]: it read full at `pos`), its owner word
    /// read as `owner`. The owner CAS is the claim; it names us, so a death
    /// from here on is found by whoever waits on the slot. One routine for
    /// both sides: they differ only in the sequence the claim must still
    /// see, how a stale claim is undone, and which position it advances.
    #[inline]
    fn claim_at<E: ClaimFailure>(
        &self,
        role: u64,
        meta: &Meta,
        pos: u64,
        owner: u64,
        me: Token,
    ) -> Result<Claim, E> {
        let push = role == PRODUCER;
        let mine = owner_word(role, pos, me);
        // SYNC POINT: AcqRel: one claimant per position and lap; pairs
        // with the Acquire owner loads of other claimants.
        if meta
            .owner
            .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Ok(Claim::Lost);
        }
        // The owner word keeps 32 bits of the position: if we stood still
        // for 2^32 positions between reading the sequence and our CAS, the
        // word we replaced may be a later lap's. The sequence has all 64
        // bits: it must still say "free for pos" (a producer) or "full at
        // pos" (a consumer). (Not under loom: its models never come near
        // 2^32 positions, and every extra load multiplies the
        // interleavings it explores.)
        let expected = if push { pos } else { pos.wrapping_add(1) };
        if cfg!(not(loom)) && meta.seq.load(Ordering::Acquire) != expected {
            if push {
                self.abandon(meta, owner, mine)?;
            } else {
                self.unclaim(meta, owner, mine)?;
            }
            return Ok(Claim::Stale);
        }
        if !push {
            // SYNC POINT: Release pairs with the Acquire loads of `dequeue`
            // in `claim_pop`: whoever sees `pos + 1` sees our claim. A
            // store, not a read-modify-write: no one else moves `dequeue`
            // off `pos` while our claim stands (rivals wait for it, module
            // docs), except a consumer or producer that judged us dead. If
            // that judgement was wrong, this late store can move `dequeue`
            // back behind slots consumed meanwhile; `dequeue_behind` moves
            // it on again.
            self.ctrl
                .dequeue
                .store(pos.wrapping_add(1), Ordering::Release);
            return Ok(Claim::Taken);
        }
        match self.advance(&self.ctrl.enqueue, pos) {
            Ok(()) => Ok(Claim::Taken),
            // The close came before our claim could take effect: the queue
            // ends below `pos`, and our claim is void (we never publish it).
            Err(now) if now == pos | CLOSED => Err(E::CLOSED),
            // Someone who saw our claim moved `enqueue` past it for us,
            // before any close.
            Err(now) if now & !CLOSED > pos => Ok(Claim::Taken),
            Err(_) => Err(E::CORRUPTED),
        }
    }

    /// Our claim CAS replaced `was` by `mine`, but the slot had moved on
    /// while we stood still: `mine` now reads as a producer's claim of a
    /// position 2^32·k later, which no one will fill. Turn it into an
    /// [`ABANDONED`] claim (keeping `was`'s token: the consumer that may
    /// still hold the slot from the lap before, whose death must stay
    /// detectable), which consumers skip at once and producers step over.
    #[cold]
    fn abandon<E: ClaimFailure>(&self, meta: &Meta, was: u64, mine: u64) -> Result<(), E> {
        let given_up = ABANDONED | (was & TOKEN_MASK) | (mine & POS_MASK);
        // SYNC POINT: AcqRel, as the claim itself.
        meta.owner
            .compare_exchange(mine, given_up, Ordering::AcqRel, Ordering::Relaxed)
            .map_err(|_| E::CORRUPTED)?;
        // Consumers may be waiting for this slot to be filled.
        self.ctrl.not_empty.notify();
        Ok(())
    }

    /// Moves `word` (a position) from `pos` to `pos + 1` if nobody has yet:
    /// the claimant of `pos` does, and anyone who finds the claim first
    /// helps, so a claimant stopped between its two steps stops nobody.
    /// Fails (with the word's value) if the word is not `pos`: someone
    /// moved it already, or (`enqueue` only) the queue was closed at `pos`.
    #[inline]
    fn advance(&self, word: &AtomicU64, pos: u64) -> Result<(), u64> {
        // SYNC POINT: AcqRel pairs with the Acquire loads of the position
        // in `claim_push` / `claim_pop`: whoever sees the new position
        // sees the owner claim that made it. On `enqueue` it is also
        // ordered with `close`'s read-modify-write (module docs).
        word.compare_exchange(
            pos,
            pos.wrapping_add(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .map(drop)
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
        // An abandoned claim of `pos` keeps the token of the consumer that
        // held the slot before it (see `abandon`).
        let named = claims(owner, CONSUMER, prev) || claims(owner, ABANDONED, pos);
        if !named || !self.claimant_dead(owner) {
            return false;
        }
        // It may have died before advancing `dequeue`; do it for it, so
        // that consumers do not find a freed slot behind their position.
        let _ = self.advance(&self.ctrl.dequeue, prev);
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
    /// Empty with every producer gone (end-of-stream, `queue/ends.rs`):
    /// [`PopError::Disconnected`].
    #[inline]
    pub fn try_pop(&self) -> Result<T, PopError> {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
        self.pop_woken(false)
    }

    #[inline]
    fn pop_inner(&self, check: bool) -> Result<T, PopError> {
        let pos = self.claim_pop(check)?;
        self.take(pos)
    }

    /// Copies the item of the claimed position `pos` out and frees its slot.
    ///
    /// Freeing is a compare-and-swap from "full at `pos`": if a producer
    /// judged us dead and freed the slot meanwhile (forged peer
    /// bookkeeping), the slot may already hold the next lap's item and our
    /// copy may be torn, so we report `Corrupted` rather than hand it out,
    /// and leave the slot as the producer left it.
    #[inline]
    fn take(&self, pos: u64) -> Result<T, PopError> {
        let meta = self.meta(pos);
        // SAFETY: a live record (for 'a); index 0 of its one cell; our
        // owner claim on `pos` while the slot read "full at pos" makes it ours
        // alone.
        let item = unsafe { Record::item(self.record(pos)).read(0) };
        // SYNC POINT: Release pairs with the Acquire load of the sequence
        // in `claim_push` one lap later: our copy out is done.
        if !hand_on(&meta.seq, pos.wrapping_add(1), pos.wrapping_add(self.cap)) {
            return Err(PopError::Corrupted);
        }
        self.ctrl.not_full.notify_light();
        Ok(item)
    }

    /// Claims the slot of the next dequeue position, which holds a
    /// published item, and returns the position; the caller copies the
    /// item out and frees the slot. With `check`, first skips a slot whose
    /// producer died between claiming and publishing it.
    #[inline]
    fn claim_pop(&self, check: bool) -> Result<u64, PopError> {
        let cap = self.cap as i64;
        let me = self.peers.me();
        // SYNC POINT: Acquire pairs with the claimants' Release stores of
        // `dequeue` (and the AcqRel advances of recovery), as in
        // `claim_push`.
        let mut pos = self.ctrl.dequeue.load(Ordering::Acquire);
        let mut waits = 0;
        for _ in 0..MAX_RETRIES {
            let meta = self.meta(pos);
            // SYNC POINT: Acquire pairs with the Release compare-and-swap
            // to `pos + 1` in `publish`: the item is fully copied in.
            let seq = meta.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos.wrapping_add(1)) as i64;
            if diff == 0 {
                // SYNC POINT: Acquire pairs with the AcqRel owner CAS of
                // the slot's last claimant.
                let owner = meta.owner.load(Ordering::Acquire);
                if claims(owner, PRODUCER, pos) {
                    match self.claim_at(CONSUMER, meta, pos, owner, me)? {
                        Claim::Taken => return Ok(pos),
                        Claim::Lost => continue,
                        Claim::Stale => {
                            pos = self.ctrl.dequeue.load(Ordering::Acquire);
                            continue;
                        }
                    }
                }
                if claims(owner, CONSUMER, pos) {
                    // A rival claimed the item and is about to advance
                    // `dequeue`. We wait for it rather than help (see
                    // "Consumers wait for each other" in the module docs).
                    match self.wait_for_rival(meta, pos, owner, check, &mut waits) {
                        Some(p) => pos = p,
                        None => return Err(PopError::Empty),
                    }
                    continue;
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
                    let abandoned = claims(owner, ABANDONED, pos);
                    if claims(owner, PRODUCER, pos) || abandoned {
                        // Claimed, not yet published: a producer is copying
                        // its item in, or died doing so, or gave the
                        // position up — or the claim came too late, and the
                        // close froze `enqueue` at it: then the queue ends
                        // here.
                        if self.closed_at(pos) {
                            return Err(PopError::Closed);
                        }
                        if !abandoned && !check {
                            return Err(PopError::Empty);
                        }
                        match self.skip_unpublished(meta, pos, owner, me, abandoned)? {
                            Skip::Alive => return Err(PopError::Empty),
                            Skip::Published => return Ok(pos),
                            Skip::Moved => {
                                pos = self.ctrl.dequeue.load(Ordering::Acquire);
                                continue;
                            }
                        }
                    }
                    if claims(owner, CONSUMER, pos) {
                        // A rival is skipping it: as above.
                        match self.wait_for_rival(meta, pos, owner, check, &mut waits) {
                            Some(p) => pos = p,
                            None => return Err(PopError::Empty),
                        }
                        continue;
                    }
                }
                // Empty at `pos`. Closed and drained only if the close
                // froze `enqueue` at `pos`: then no claim at `pos` or later
                // ever takes effect, and every one below it has been taken.
                return if self.closed_at(pos) {
                    Err(PopError::Closed)
                } else {
                    Err(PopError::Empty)
                };
            } else {
                let p = self.ctrl.dequeue.load(Ordering::Acquire);
                if p == pos {
                    // The slot was freed past `pos`, yet `dequeue` still
                    // says `pos`: a late store moved it back.
                    if !self.dequeue_behind(pos, seq) {
                        return Err(PopError::Corrupted);
                    }
                    pos = self.ctrl.dequeue.load(Ordering::Acquire);
                    continue;
                }
                pos = p;
            }
        }
        Err(PopError::Corrupted)
    }

    /// `dequeue` reads `pos`, but the slot of `pos` reads `seq`, freed by
    /// the consumer of `pos` or of a later lap's position: the late store
    /// of a consumer wrongly judged dead (its advance of `dequeue`, made
    /// after others had advanced it for it and moved on, perhaps many laps)
    /// put `dequeue` back behind consumed slots. Returns `true`, having
    /// moved `dequeue` on, if that is what the words say: `seq` at a later
    /// lap of `pos` (free there, or full), and the position it moves to not
    /// past `enqueue`. Anything else is corruption.
    ///
    /// The slot says how far to go: free for `pos + k * cap`, or full
    /// there, means the item at `pos + (k - 1) * cap` was consumed, so
    /// `dequeue` once stood past it (it only moves forward, but for such
    /// late stores), and it moves there in one step. The slots after it
    /// are then at most a lap or so ahead, so one `claim_pop` gets back to
    /// the front after about a lap of these calls however far back the
    /// store put it, and hostile sequences that all read "laps later" end
    /// in `Corrupted` just as soon: not after the retry bound.
    #[cold]
    fn dequeue_behind(&self, pos: u64, seq: u64) -> bool {
        #[cfg(all(test, not(loom)))]
        BEHIND_STEPS.with(|n| n.set(n.get() + 1));
        let ahead = seq.wrapping_sub(pos);
        if ahead < self.cap || ahead & (self.cap - 1) > 1 {
            return false;
        }
        let to = pos.wrapping_add((ahead & !(self.cap - 1)) - self.cap + 1);
        let enq = self.ctrl.enqueue.load(Ordering::Acquire) & !CLOSED;
        if (enq.wrapping_sub(to) as i64) < 0 {
            return false;
        }
        // SYNC POINT: AcqRel, as in `advance`: whoever reads `to` sees
        // what we read to move it there.
        let _ = self
            .ctrl
            .dequeue
            .compare_exchange(pos, to, Ordering::AcqRel, Ordering::Acquire);
        true
    }

    /// A rival consumer's claim of `pos` stands in the slot and `dequeue`
    /// is still at `pos`: it is between its claim and its advance (a few
    /// instructions), or it died there. Spins briefly for it; with `check`,
    /// advances `dequeue` for a dead one. Returns the position to look at
    /// next, or `None` (report `Empty`: a blocking caller sleeps and looks
    /// again).
    #[cold]
    fn wait_for_rival(
        &self,
        meta: &Meta,
        pos: u64,
        owner: u64,
        check: bool,
        waits: &mut u32,
    ) -> Option<u64> {
        for _ in 0..RIVAL_SPINS {
            let p = self.ctrl.dequeue.load(Ordering::Acquire);
            if p != pos || meta.owner.load(Ordering::Acquire) != owner {
                return Some(p);
            }
            crate::sync::spin_loop();
        }
        if check && self.claimant_dead(owner) {
            let _ = self.advance(&self.ctrl.dequeue, pos);
            return Some(self.ctrl.dequeue.load(Ordering::Acquire));
        }
        *waits += 1;
        if *waits > RIVAL_WAITS {
            return None;
        }
        // The rival is still between its claim and its advance after a
        // spin: with more runnable parties than cores it was most likely
        // preempted there, and spinning on cannot let it run. Give the core
        // away once per look, as crossbeam's `Backoff::snooze` does, before
        // looking again.
        #[cfg(not(any(loom, miri)))]
        // SAFETY: sched_yield takes no arguments and cannot fail on Linux.
        unsafe {
            libc::sched_yield()
        };
        Some(pos)
    }

    /// Our claim CAS replaced the producer's word `was` by `mine`, but the
    /// slot is at another lap: we stood still for 2^32 positions, and
    /// `was` is a later producer's claim that merely looks like the one we
    /// saw. Put it back. Nobody acted on our word meanwhile: consumers wait
    /// for a rival's claim rather than help it, and producers never read
    /// a consumer's claim of a published slot. Consumers waiting for us
    /// are woken.
    #[cold]
    fn unclaim<E: ClaimFailure>(&self, meta: &Meta, was: u64, mine: u64) -> Result<(), E> {
        // SYNC POINT: AcqRel, as the claim.
        meta.owner
            .compare_exchange(mine, was, Ordering::AcqRel, Ordering::Relaxed)
            .map_err(|_| E::CORRUPTED)?;
        self.ctrl.not_empty.notify();
        Ok(())
    }

    /// The slot of `pos` was claimed by the producer `owner` names and not
    /// published (or the claim was [`ABANDONED`]). If the claim took effect
    /// (it is below `enqueue`) and its producer is dead (or gave it up),
    /// take the slot as its consumer and free it without an item (the item
    /// was never sent) — unless it was published after all, in which case
    /// we now hold it as its consumer, as a normal claim would. A claim the
    /// close made void ends the queue here: `Closed`.
    #[cold]
    fn skip_unpublished(
        &self,
        meta: &Meta,
        pos: u64,
        owner: u64,
        me: Token,
        abandoned: bool,
    ) -> Result<Skip, PopError> {
        if !abandoned && !self.claimant_dead(owner) {
            return Ok(Skip::Alive);
        }
        // The claimant may have died (or given up) before advancing
        // `enqueue`: do it for it. If the close came first, its claim is
        // void, and the queue is closed and drained at `pos`.
        match self.advance(&self.ctrl.enqueue, pos) {
            Err(now) if now == pos | CLOSED => return Err(PopError::Closed),
            _ => {}
        }
        let mine = owner_word(CONSUMER, pos, me);
        // SYNC POINT: AcqRel, as in `claim_at`: one consumer takes it.
        if meta
            .owner
            .compare_exchange(owner, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Ok(Skip::Moved); // a rival took it; look again
        }
        // As after every claim: the slot must be at this lap.
        let seq = meta.seq.load(Ordering::Acquire);
        if seq != pos && seq != pos.wrapping_add(1) {
            self.unclaim(meta, owner, mine)?;
            return Ok(Skip::Moved);
        }
        let _ = self.advance(&self.ctrl.dequeue, pos);
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
                // Consumers behind us waited while our claim stood.
                self.ctrl.not_empty.notify();
                Ok(Skip::Moved)
            }
            Err(seq) if seq == pos.wrapping_add(1) => Ok(Skip::Published),
            // Hostile bytes: leave the slot; `dequeue` has moved on.
            Err(_) => Ok(Skip::Moved),
        }
    }

    /// Test support: [`Mpmc::push_until`] that runs `pause` between
    /// claiming the slot and filling it, so that a test can stop or kill
    /// the process inside that window.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn push_pausing(
        &self,
        item: T,
        deadline: Option<&Deadline>,
        pause: impl FnOnce(),
    ) -> Result<(), PushError> {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
        let pos = block_checked(&self.ctrl.not_full, self.wait, deadline, |check| match self
            .claim_push(check)
        {
            Err(PushError::Full) => None,
            r => Some(r),
        })
        .unwrap_or(Err(PushError::Timeout))?;
        pause();
        self.publish(pos, item)
    }

    /// Test support: [`Mpmc::pop_until`] that runs `pause` between claiming
    /// the item and copying it out.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn pop_pausing(
        &self,
        deadline: Option<&Deadline>,
        pause: impl FnOnce(),
    ) -> Result<T, PopError> {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
        let pos = block_checked(
            &self.ctrl.not_empty,
            self.wait,
            deadline,
            |check| match self.claim_pop(check) {
                Err(PopError::Empty) => None,
                r => Some(r),
            },
        )
        .unwrap_or(Err(PopError::Timeout))?;
        pause();
        self.take(pos)
    }

    /// Test support: whether this handle's notifies check for sleepers
    /// with a plain load (the light side of the asymmetric barrier,
    /// `crate::membarrier`) on both sides.
    #[doc(hidden)]
    pub fn light_notify(&self) -> bool {
        crate::membarrier::registered()
            && self.ctrl.not_empty.is_light()
            && self.ctrl.not_full.is_light()
    }

    /// Test support: claims the next enqueue position as a push would, and
    /// stops before filling and publishing the slot, as a producer killed
    /// at that moment would. Returns the position.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn claim_push_and_stop(&self) -> Result<u64, PushError> {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
        self.claim_push(false)
    }

    /// Test support: the rest of a push whose claim
    /// [`claim_push_and_stop`](Mpmc::claim_push_and_stop) made: fills and
    /// publishes position `pos`, as a claimant that was only slow (not
    /// dead) finally would.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn publish_claimed(&self, pos: u64, item: T) -> Result<(), PushError> {
        self.publish(pos, item)
    }

    /// Test support: claims the next dequeue position as a pop would, and
    /// stops before copying the item out and freeing the slot, as a
    /// consumer killed at that moment would. Returns the position.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn claim_pop_and_stop(&self) -> Result<u64, PopError> {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
        self.claim_pop(false)
    }

    /// Test support: the rest of a pop whose claim
    /// [`claim_pop_and_stop`](Mpmc::claim_pop_and_stop) made.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn take_claimed(&self, pos: u64) -> Result<T, PopError> {
        self.take(pos)
    }

    dead_sleeper_hooks!();

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
        block_checked(&self.ctrl.not_full, self.wait, deadline, |check| match self
            .push_woken(item, check)
        {
            Err(PushError::Full) => None,
            r => Some(r),
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
        // Before sleeping, after a departure and at each owner check: are
        // the producers all gone? Then look once more, dead claims skipped
        // (a last item is published before its producer leaves).
        block_checked(
            &self.ctrl.not_empty,
            self.wait,
            deadline,
            |check| match self.pop_woken(check) {
                Err(PopError::Empty) => None,
                r => Some(r),
            },
        )
        .unwrap_or(Err(PopError::Timeout))
    }
}

/// For waiters outside the blocking calls (the async forms): the attempt a
/// blocked call makes at its owner check.
impl<T: Pod, K> Mpmc<'_, T, K> {
    /// The attempt a blocked `pop` makes after each wake: [`Mpmc::try_pop`],
    /// and on an empty queue the end-of-stream check
    /// ([`PopError::Disconnected`] once every producer has gone). With
    /// `check` (what a blocked `pop` does once per
    /// [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL)), it
    /// first skips a slot whose producer died between claiming and
    /// publishing it, and looks for dead producers even if none has left.
    /// Never sleeps; [`PopError::Empty`] means "wait and try again".
    pub fn try_pop_woken(&self, check: bool) -> Result<T, PopError> {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
        self.pop_woken(check)
    }

    /// The attempt a blocked `push` makes after each wake (see
    /// [`Mpmc::try_pop_woken`]): [`Mpmc::try_push`], and on a full queue,
    /// if sends fail without a receiver, the check that one is left.
    pub fn try_push_woken(&self, item: T, check: bool) -> Result<(), PushError> {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
        self.push_woken(item, check)
    }

    /// Before sleeping, after a departure and at each owner check: are the
    /// producers all gone? Then look once more, dead claims skipped (a last
    /// item is published before its producer leaves).
    fn pop_woken(&self, check: bool) -> Result<T, PopError> {
        match self.pop_inner(check) {
            Err(PopError::Empty)
                if self
                    .ends
                    .gone(End::Sender, &self.ctrl.lead.ends, self.peers, check) =>
            {
                match self.pop_inner(true) {
                    Err(PopError::Empty) => Err(PopError::Disconnected),
                    r => r,
                }
            }
            r => r,
        }
    }

    /// Only if asked to: is every receiver gone (`queue/ends.rs`)?
    fn push_woken(&self, item: T, check: bool) -> Result<(), PushError> {
        match self.push_inner(item, check) {
            Err(PushError::Full)
                if self.ends.fail_sends
                    && self
                        .ends
                        .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, check) =>
            {
                Err(PushError::Disconnected)
            }
            r => r,
        }
    }
}

/// For waiters on many objects (`crate::waitable`, `shmipc::wait`): whether
/// a `try_` call would succeed or give a final answer now, and the owner
/// check a blocked call makes, without taking or giving an item.
impl<T: Pod, K> Mpmc<'_, T, K> {
    /// Whether [`Mpmc::try_pop`] would return an item or a final answer
    /// now: the slot at the dequeue position is published (not merely
    /// claimed: the queue's length counts a dead producer's unpublished
    /// claim, which `try_pop` reads as empty), or the queue is closed, or
    /// every producer is gone (end-of-stream). A snapshot.
    pub fn pop_ready(&self) -> bool {
        // SYNC POINT: Acquire, as in `claim_pop`.
        let pos = self.ctrl.dequeue.load(Ordering::Acquire);
        // SYNC POINT: Acquire pairs with the Release publication in
        // `publish`, as in `claim_pop`.
        let seq = self.meta(pos).seq.load(Ordering::Acquire);
        seq == pos.wrapping_add(1)
            || self.is_closed()
            || self
                .ends
                .gone(End::Sender, &self.ctrl.lead.ends, self.peers, false)
    }

    /// Whether [`Mpmc::try_push`] would succeed or give a final answer
    /// now: the slot at the enqueue position is free for it, or the queue
    /// is closed, or (with
    /// [`fail_sends_without_receiver`](Mpmc::fail_sends_without_receiver))
    /// every consumer is gone. A snapshot.
    pub fn push_ready(&self) -> bool {
        // SYNC POINT: Acquire, as in `claim_push`.
        let pos = self.ctrl.enqueue.load(Ordering::Acquire);
        if pos & CLOSED != 0 {
            return true;
        }
        // SYNC POINT: Acquire pairs with the Release freeing in `take`.
        self.meta(pos).seq.load(Ordering::Acquire) == pos
            || (self.ends.fail_sends
                && self
                    .ends
                    .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, false))
    }

    /// The owner check a blocked `pop` makes once per
    /// [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL), without
    /// popping: skips the slot at the dequeue position if the producer
    /// that claimed it died before publishing (or a consumer died between
    /// its claim and its advance), and scans for live producers (so that
    /// [`Mpmc::pop_ready`] and `try_pop` see end-of-stream after a death).
    pub fn pop_owner_check(&self) {
        let _ = self
            .ends
            .gone(End::Sender, &self.ctrl.lead.ends, self.peers, true);
        let me = self.peers.me();
        // Bounded: a few dead claims in a row at most are worth skipping
        // here; the next check skips the rest.
        for _ in 0..4 {
            // SYNC POINT: Acquire loads as in `claim_pop`.
            let pos = self.ctrl.dequeue.load(Ordering::Acquire);
            let meta = self.meta(pos);
            if meta.seq.load(Ordering::Acquire) != pos {
                return; // published (or being freed): nothing to skip
            }
            let owner = meta.owner.load(Ordering::Acquire);
            if claims(owner, CONSUMER, pos) {
                // A consumer between its claim and its advance: if it is
                // dead, advance for it.
                if self.claimant_dead(owner) {
                    let _ = self.advance(&self.ctrl.dequeue, pos);
                    continue;
                }
                return;
            }
            let abandoned = claims(owner, ABANDONED, pos);
            if !(claims(owner, PRODUCER, pos) || abandoned) || self.closed_at(pos) {
                return;
            }
            if !abandoned && !self.claimant_dead(owner) {
                return;
            }
            // Dead on evidence, so it stores nothing more: if the slot is
            // still unpublished now, the skip below frees it empty.
            if meta.seq.load(Ordering::Acquire) != pos {
                return;
            }
            match self.skip_unpublished(meta, pos, owner, me, abandoned) {
                Ok(Skip::Moved) => continue,
                // Published after all, which a dead producer cannot do
                // after the load above: only forged bytes get here. We
                // hold the slot as its consumer; free it (the item is
                // dropped) rather than leave it held for ever.
                Ok(Skip::Published) => {
                    let _ = self.take(pos);
                    return;
                }
                Ok(Skip::Alive) | Err(_) => return,
            }
        }
    }

    /// The owner check a blocked `push` makes, without pushing: frees the
    /// slot at the enqueue position if a consumer died holding it from the
    /// last lap, and (with
    /// [`fail_sends_without_receiver`](Mpmc::fail_sends_without_receiver))
    /// scans for live consumers.
    pub fn push_owner_check(&self) {
        if self.ends.fail_sends {
            let _ = self
                .ends
                .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, true);
        }
        let cap = self.cap as i64;
        // SYNC POINT: Acquire loads as in `claim_push`.
        let pos = self.ctrl.enqueue.load(Ordering::Acquire);
        if pos & CLOSED != 0 {
            return;
        }
        let meta = self.meta(pos);
        let seq = meta.seq.load(Ordering::Acquire);
        let diff = seq.wrapping_sub(pos) as i64;
        if diff == 1 - cap || diff == -cap {
            let _ = self.free_dead_consumer(meta, pos, seq);
        }
    }
}

/// For waiters on many objects (`crate::waitable`): the signals consumers
/// and producers sleep on.
#[cfg_attr(loom, allow(dead_code))]
impl<T, K> Mpmc<'_, T, K> {
    pub(crate) fn readable_signal(&self) -> &Signal {
        &self.ctrl.not_empty
    }

    /// [`Arm::check_may_help`](crate::waitable::Arm::check_may_help) for
    /// a pop, read from the control block alone.
    #[cfg(not(loom))]
    pub(crate) fn pop_hint(&self) -> crate::waitable::Hint {
        crate::waitable::Hint::new(self.ctrl, Control::pop_check_may_help)
    }

    pub(crate) fn writable_signal(&self) -> &Signal {
        &self.ctrl.not_full
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
        q.ctrl.lead.header.words[0].store(1 << 10, Ordering::Relaxed);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<u64>::attach(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
        q.ctrl.lead.header.words[0].store(3, Ordering::Relaxed);
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
        q.meta(1).seq.store(1000, Ordering::Relaxed);
        assert_eq!(q.try_push(2), Err(PushError::Corrupted));
        assert_eq!(
            q.push_timeout(2, Duration::from_millis(1)),
            Err(PushError::Corrupted)
        );
        // Far behind.
        q.meta(0).seq.store(u64::MAX - 100, Ordering::Relaxed);
        assert_eq!(q.try_pop(), Err(PopError::Corrupted));
        assert_eq!(q.pop(), Err(PopError::Corrupted));
        // Positions that are nonsense.
        q.ctrl.dequeue.store(u64::MAX, Ordering::Relaxed);
        assert!(q.try_pop().is_err());
        assert!(q.len() <= 4);
    }

    /// A copy of slot `i`'s record header, as a tool reads it.
    fn record_copy<T: Pod>(q: &Mpmc<'_, T>, i: usize) -> [u8; RECORD_HEADER] {
        let m = q.meta(i as u64);
        let mut r = [0u8; RECORD_HEADER];
        r[..8].copy_from_slice(&m.seq.load(Ordering::Relaxed).to_ne_bytes());
        r[8..].copy_from_slice(&m.owner.load(Ordering::Relaxed).to_ne_bytes());
        r
    }

    #[test]
    fn slot_claim_decodes_held_claims_only() {
        let mut b = buf::<u64>(4);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4))
            .unwrap()
            .with_peers(&judge);
        let me = judge.me();
        let none = |q: &Mpmc<'_, u64>| {
            (0..4).all(|i| slot_claim(&record_copy(q, i), i as u64, 4).is_none())
        };
        assert!(none(&q), "a new queue holds no claims");
        q.push(1).unwrap();
        assert!(none(&q), "a published push holds none");
        let pos = q.claim_push_and_stop().unwrap();
        assert_eq!(
            slot_claim(&record_copy(&q, 1), 1, 4),
            Some(SlotClaim {
                position: pos,
                role: ClaimRole::Producer,
                token: me
            })
        );
        // The wrong slot index, a bad capacity, a short record: nothing.
        assert_eq!(slot_claim(&record_copy(&q, 1), 2, 4), None);
        assert_eq!(slot_claim(&record_copy(&q, 1), 1, 3), None);
        assert_eq!(slot_claim(&record_copy(&q, 1)[..12], 1, 4), None);
        q.publish_claimed(pos, 2).unwrap();
        let pos = q.claim_pop_and_stop().unwrap();
        assert_eq!(
            slot_claim(&record_copy(&q, 0), 0, 4),
            Some(SlotClaim {
                position: pos,
                role: ClaimRole::Consumer,
                token: me
            })
        );
        q.take_claimed(pos).unwrap();
        assert!(none(&q), "freed and published slots hold none");
        // Hostile records never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut r = [0u8; RECORD_HEADER];
            r[..8].copy_from_slice(&x.rotate_left(7).to_ne_bytes());
            r[8..].copy_from_slice(&x.to_ne_bytes());
            let _ = slot_claim(&r, x % 8, 1 << (x % 40));
        }
    }

    /// A peer writes the bytes of each record that are neither bookkeeping
    /// nor item (the padding up to the record's 64-byte size) while this
    /// process holds handles, as a hostile or buggy process may: the
    /// queue's references must cover none of them (under Miri, a write to
    /// bytes a shared reference covers outside an `UnsafeCell` is undefined
    /// behaviour).
    #[test]
    fn a_peer_writing_a_records_padding_is_no_undefined_behaviour() {
        let b = buf::<u64>(4);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q = unsafe { Mpmc::<u64>::init_at(ptr, len, RingConfig::new(4)) }.unwrap();
        q.push(1).unwrap();
        let stride = record_size(8, 8).unwrap();
        for i in 0..4 {
            let start = RECORDS_OFFSET + i * stride;
            for k in start + RECORD_HEADER + 8..start + stride {
                // SAFETY: in bounds of the buffer; a byte no item or
                // bookkeeping word holds, written as a peer would.
                unsafe { ptr.add(k).write(0x5a) };
            }
        }
        q.push(2).unwrap();
        assert_eq!(q.pop(), Ok(1));
        assert_eq!(q.pop(), Ok(2));
    }

    /// Writes 0x5a over every byte of the control block at `base` that no
    /// field holds, as a peer may.
    fn scribble_padding(base: *mut u8) {
        crate::queue::testbuf::scribble_control_padding!(
            base,
            lead {
                header,
                closed,
                ends
            },
            enqueue,
            dequeue,
            not_empty,
            not_full
        );
    }

    /// A peer may write any byte of the control block that no field
    /// holds: the padding that keeps the hot words on lines of their own,
    /// and the gap inside the first line. Holding the block while it does
    /// is no undefined behaviour (Miri checks this test).
    #[test]
    fn a_peer_writing_the_control_blocks_padding_is_no_undefined_behaviour() {
        let b = buf::<u64>(4);
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q =
            unsafe { Mpmc::<u64>::init_at(b.as_mut_ptr(), b.len(), RingConfig::new(4)) }.unwrap();
        q.push(1).unwrap();
        scribble_padding(b.as_mut_ptr());
        q.push(2).unwrap();
        assert_eq!(q.pop(), Ok(1));
        q.close();
        assert_eq!(q.pop(), Ok(2));
        assert_eq!(q.pop(), Err(PopError::Closed));
        // SAFETY: as above; the block passes its checks again.
        let again = unsafe { Mpmc::<u64>::attach(b.as_mut_ptr(), b.len()) }.unwrap();
        assert!(again.is_closed());
    }

    /// As above, with the writes made while a consumer sleeps in a
    /// blocking pop, so inside calls that hold references into the block
    /// (Miri checks this test).
    #[test]
    fn a_peer_writing_the_padding_during_a_blocking_pop_is_no_undefined_behaviour() {
        let b = buf::<u64>(4);
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q =
            unsafe { Mpmc::<u64>::init_at(b.as_mut_ptr(), b.len(), RingConfig::new(4)) }.unwrap();
        std::thread::scope(|s| {
            let popper = s.spawn(|| q.pop());
            for _ in 0..4 {
                std::thread::sleep(core::time::Duration::from_millis(5));
                scribble_padding(b.as_mut_ptr());
            }
            q.push(7).unwrap();
            assert_eq!(popper.join().unwrap(), Ok(7));
        });
    }

    #[test]
    fn record_size_is_the_records_stride() {
        fn check<T: Pod>() {
            assert_eq!(
                record_size(size_of::<T>(), align_of::<T>()),
                Some(size_of::<Record<T>>()),
                "{}",
                core::any::type_name::<T>()
            );
            let mut b = buf::<T>(4);
            let q = Mpmc::<T>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
            let base = q.records.as_ptr() as usize - q.ctrl as *const Control as usize;
            assert_eq!(base, RECORDS_OFFSET);
        }
        #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
        #[repr(C, align(128))]
        struct Wide([u8; 128]);
        check::<u8>();
        check::<u32>();
        check::<u64>();
        check::<[u64; 2]>();
        check::<[u8; 17]>();
        check::<[u8; 64]>();
        check::<Wide>();
        assert_eq!(record_size(8, 8), Some(64));
        assert_eq!(record_size(48, 8), Some(64));
        assert_eq!(record_size(49, 1), Some(128));
        assert_eq!(record_size(8, 3), None);
        assert_eq!(record_size(usize::MAX, 8), None);
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

    /// A consumer claims position 0 and stops (SIGSTOP) before its store
    /// of `dequeue`; the others judge it dead, advance `dequeue` for it,
    /// consume on, and a producer frees its slot and refills it. Then it
    /// resumes, and its late store puts `dequeue` back behind two consumed
    /// slots, one refilled a lap later. Consumers must move past them and
    /// deliver every other item once, in order. (Before: `Corrupted`.)
    #[test]
    fn a_dequeue_moved_back_behind_consumed_slots_is_moved_on() {
        let mut b = buf::<u64>(4);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4))
            .unwrap()
            .with_peers(&judge);
        for i in 1..=4 {
            q.push(i).unwrap();
        }
        // The stopped consumer's claim of position 0, as its owner CAS
        // left it, in the name of a peer the judge finds dead.
        q.meta(0)
            .owner
            .store(owner_word(CONSUMER, 0, DEAD), Ordering::Relaxed);
        // Checked calls do what a blocked one does at its owner check
        // (and never sleep, so this runs under Miri too).
        assert_eq!(q.try_pop_woken(true), Ok(2));
        assert_eq!(q.try_pop_woken(true), Ok(3));
        // The next lap's producers: one frees the "dead" consumer's slot.
        assert_eq!(q.try_push_woken(5, true), Ok(()));
        assert_eq!(q.try_push_woken(6, true), Ok(()));
        assert_eq!(q.ctrl.dequeue.load(Ordering::Relaxed), 3);
        // The claimant resumes: its store of `dequeue` for position 0.
        q.ctrl.dequeue.store(1, Ordering::Release);
        assert_eq!(q.try_pop(), Ok(4));
        assert_eq!(q.try_pop(), Ok(5));
        assert_eq!(q.try_pop(), Ok(6));
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        assert_eq!(q.len(), 0);
        // And the same where the slot behind is only freed, not refilled.
        q.push(7).unwrap();
        q.push(8).unwrap();
        assert_eq!(q.try_pop(), Ok(7));
        q.ctrl.dequeue.store(6, Ordering::Release);
        assert_eq!(q.try_pop(), Ok(8));
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        holds_exactly(&q, 4, 10);
        holds_exactly(&q, 4, 20);
    }

    /// A late store put `dequeue` many laps back (the "dead" consumer
    /// stayed stopped while the queue went round 250 times). One call
    /// gets it back to the front, looking at about one lap of positions,
    /// not one per position skipped.
    #[test]
    fn a_dequeue_moved_back_many_laps_is_moved_on_in_about_a_lap() {
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        for i in 0..1000 {
            q.push(i).unwrap();
            assert_eq!(q.try_pop(), Ok(i));
        }
        q.push(1000).unwrap();
        q.ctrl.dequeue.store(1, Ordering::Release);
        BEHIND_STEPS.with(|n| n.set(0));
        assert_eq!(q.try_pop(), Ok(1000));
        let steps = BEHIND_STEPS.with(|n| n.get());
        assert!(
            steps <= 2 * 4,
            "{steps} positions looked at, for 999 skipped"
        );
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        holds_exactly(&q, 4, 2000);
    }

    /// Hostile slot records that all read "freed laps later", with
    /// `enqueue` far ahead: `try_pop` says `Corrupted` after looking at a
    /// lap or two of positions, not after its retry bound (a million
    /// positions: the fuzzer's 10 s timeout, over 256 such calls).
    #[test]
    fn slots_forged_freed_laps_ahead_are_corruption_found_quickly() {
        let mut b = buf::<u64>(2);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(2)).unwrap();
        for far in [1u64 << 40, 1 << 62, u64::MAX / 2] {
            q.ctrl.enqueue.store(far, Ordering::Relaxed);
            q.ctrl.dequeue.store(0, Ordering::Relaxed);
            for m in (0..q.cap).map(|i| q.meta(i)) {
                m.seq.store(far, Ordering::Relaxed);
            }
            BEHIND_STEPS.with(|n| n.set(0));
            assert_eq!(q.try_pop(), Err(PopError::Corrupted));
            let steps = BEHIND_STEPS.with(|n| n.get());
            assert!(steps <= 2 * 2 + 1, "{steps} positions looked at");
        }
    }

    /// Puts the control block and slot records of a `cap`-slot queue back
    /// to a fresh queue's, as after `init_at`.
    fn reset(q: &Mpmc<'_, u64>) {
        q.ctrl.enqueue.store(0, Ordering::Relaxed);
        q.ctrl.dequeue.store(0, Ordering::Relaxed);
        q.ctrl.lead.closed.store(0, Ordering::Relaxed);
        for (i, m) in (0..q.cap).map(|i| q.meta(i)).enumerate() {
            m.seq.store(i as u64, Ordering::Relaxed);
            m.owner.store(0, Ordering::Relaxed);
        }
    }

    /// Fills the queue to its capacity, checks it is then full, and
    /// empties it in order: a ring that lost or duplicated a slot fails.
    fn holds_exactly(q: &Mpmc<'_, u64>, cap: u64, base: u64) {
        for i in 0..cap {
            assert_eq!(q.try_push(base + i), Ok(()), "slot {i} of {cap}");
        }
        assert_eq!(q.try_push(0), Err(PushError::Full), "more than {cap} slots");
        for i in 0..cap {
            assert_eq!(q.try_pop(), Ok(base + i));
        }
        assert_eq!(q.try_pop(), Err(PopError::Empty));
    }

    /// Writes hostile values (small ones half the time) into every word
    /// of the control block and the slot records.
    fn garble(q: &Mpmc<'_, u64>, r: u64, rand: &mut impl FnMut() -> u64) {
        let small = |x: u64| x % 16;
        let pick = |x: u64, y: u64| if r & 1 == 0 { small(x) } else { y };
        q.ctrl.enqueue.store(pick(r >> 8, r), Ordering::Relaxed);
        q.ctrl
            .dequeue
            .store(pick(r >> 16, rand()), Ordering::Relaxed);
        q.ctrl
            .lead
            .closed
            .store((r >> 40) as u32 & 1, Ordering::Relaxed);
        for m in (0..q.cap).map(|i| q.meta(i)) {
            m.seq.store(pick(rand(), rand()), Ordering::Relaxed);
            let r = rand();
            m.owner.store(
                if r & 1 == 0 { r & !POS_MASK } else { r },
                Ordering::Relaxed,
            );
        }
    }

    #[test]
    fn garbage_gives_allowed_answers_and_a_reset_queue_works() {
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
        let mut seen = [0u32; 4]; // an Ok push, pop, and each kind of error
        for _ in 0..rounds {
            let r = rand();
            if r % 8 == 0 {
                // Now and then a sound queue, for the calls to work on.
                reset(&q);
            } else {
                garble(&q, r, &mut rand);
            }
            // The only items ever written are 1s; the slots start zeroed.
            // Which counter of `seen` a pop's answer bumps, if any.
            let item = |r: Result<u64, PopError>, timed: bool| match r {
                Ok(v) => {
                    assert!(v <= 1, "popped {v}, which nobody pushed");
                    Some(1)
                }
                Err(PopError::Empty) if !timed => None,
                Err(PopError::Timeout) if timed => None,
                Err(PopError::Closed | PopError::Corrupted) => Some(3),
                Err(e) => panic!("pop gave {e:?}"),
            };
            match q.try_push(1) {
                Ok(()) => seen[0] += 1,
                Err(PushError::Full) => {}
                Err(PushError::Closed | PushError::Corrupted) => seen[2] += 1,
                Err(e) => panic!("try_push gave {e:?}"),
            }
            for k in [
                item(q.try_pop(), false),
                item(q.pop_timeout(Duration::ZERO), true),
            ]
            .into_iter()
            .flatten()
            {
                seen[k] += 1;
            }
            match q.push_timeout(1, Duration::ZERO) {
                Ok(()) => seen[0] += 1,
                Err(PushError::Timeout | PushError::Closed | PushError::Corrupted) => {}
                Err(e) => panic!("push_timeout gave {e:?}"),
            }
            assert!(q.len() <= 4);
        }
        assert!(
            seen.iter().all(|&n| n > 0),
            "the garbage never reached some outcome: {seen:?}"
        );
        reset(&q);
        holds_exactly(&q, 4, 100);
        holds_exactly(&q, 4, 200);
    }

    #[test]
    fn capacities_stop_at_2_to_the_31() {
        assert!(Mpmc::<u8>::layout(RingConfig::new(1 << 31)).is_ok());
        assert!(matches!(
            Mpmc::<u8>::layout(RingConfig::new(1 << 32)),
            Err(LayoutError::Parameter {
                param: "capacity",
                ..
            })
        ));
    }

    /// Makes a 4-slot queue look as it does at position `base` after
    /// whole laps of pushes and pops by `me`: enqueue = dequeue = base,
    /// every slot free for its next position, each owner word naming the
    /// consumer that freed it a lap before.
    fn forge_lap(q: &Mpmc<'_, u64>, base: u64, me: Token) {
        q.ctrl.enqueue.store(base, Ordering::Relaxed);
        q.ctrl.dequeue.store(base, Ordering::Relaxed);
        for p in base..base + 4 {
            let m = q.meta(p);
            m.seq.store(p, Ordering::Relaxed);
            m.owner
                .store(owner_word(CONSUMER, p - 4, me), Ordering::Relaxed);
        }
    }

    /// 2^32 positions: a lap of the owner word's position field.
    const LAP: u64 = 1 << 32;

    #[test]
    fn a_producer_stalled_for_2_32_positions_does_not_misclaim() {
        let mut b = buf::<u64>(4);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4))
            .unwrap()
            .with_peers(&judge);
        holds_exactly(&q, 4, 0); // every slot one lap on: positions 4..8
                                 // A producer reads slot 0 free for position 4, and the owner word of
                                 // the consumer that freed it; then it stands still.
        let meta = q.meta(4);
        let owner = meta.owner.load(Ordering::Relaxed);
        assert_eq!(meta.seq.load(Ordering::Relaxed), 4);
        // 2^32 positions later the slot is free again, with the same word.
        forge_lap(&q, 4 + LAP, judge.me);
        assert_eq!(meta.owner.load(Ordering::Relaxed), owner);
        match q.claim_at::<PushError>(PRODUCER, meta, 4, owner, judge.me) {
            Ok(Claim::Taken) => {
                // What a claim that goes on does: publish at position 4.
                let _ = q.publish(4, 99);
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        // Nothing of that claim shows, and the ring still has 4 slots: the
        // given-up position costs one slot's turn, no item.
        assert_eq!(q.ctrl.enqueue.load(Ordering::Relaxed), 4 + LAP);
        for i in 0..3 {
            assert_eq!(q.try_push(i), Ok(()));
        }
        for i in 0..3 {
            assert_eq!(q.try_pop(), Ok(i), "the stale claim's item leaked in");
        }
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        holds_exactly(&q, 4, 10);
        holds_exactly(&q, 4, 20);
    }

    #[test]
    fn a_consumer_stalled_for_2_32_positions_does_not_misclaim() {
        let mut b = buf::<u64>(4);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4))
            .unwrap()
            .with_peers(&judge);
        holds_exactly(&q, 4, 0);
        // A consumer reads slot 0 full at position 4, with its producer's
        // claim word; then it stands still.
        q.try_push(5).unwrap();
        let meta = q.meta(4);
        let owner = meta.owner.load(Ordering::Relaxed);
        assert_eq!(q.try_pop(), Ok(5));
        // The queue moves on by 2^32 positions; there the same producer
        // claims slot 0 again (the same claim word) and is still copying
        // its item in.
        forge_lap(&q, 4 + LAP, judge.me);
        let pos = q.claim_push_and_stop().unwrap();
        assert_eq!(pos, 4 + LAP);
        assert_eq!(meta.owner.load(Ordering::Relaxed), owner);
        match q.claim_at::<PopError>(CONSUMER, meta, 4, owner, judge.me) {
            Ok(Claim::Taken) => panic!("a claim of an item not yet published"),
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        // The producer publishes; its item is received once, at its place.
        assert_eq!(q.publish_claimed(pos, 77), Ok(()));
        assert_eq!(q.try_pop(), Ok(77));
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        holds_exactly(&q, 4, 10);
    }

    #[test]
    fn a_consumer_stalled_for_2_32_positions_leaves_a_published_item_alone() {
        let mut b = buf::<u64>(4);
        let judge = TestPeers::new(0);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4))
            .unwrap()
            .with_peers(&judge);
        holds_exactly(&q, 4, 0);
        q.try_push(5).unwrap();
        let meta = q.meta(4);
        let owner = meta.owner.load(Ordering::Relaxed);
        assert_eq!(q.try_pop(), Ok(5));
        forge_lap(&q, 4 + LAP, judge.me);
        // This time the producer of the later lap has published already.
        q.try_push(77).unwrap();
        assert_eq!(meta.owner.load(Ordering::Relaxed), owner);
        match q.claim_at::<PopError>(CONSUMER, meta, 4, owner, judge.me) {
            Ok(Claim::Taken) => {
                // What a claim that goes on does: take position 4's item.
                let _ = q.take(4);
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        assert_eq!(q.try_pop(), Ok(77), "the item went to a stale claim");
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        holds_exactly(&q, 4, 10);
    }

    #[cfg(not(miri))]
    #[test]
    fn a_live_producer_judged_dead_cannot_corrupt_the_ring() {
        let b = buf::<u64>(4);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // The claimant, and a judge that (wrongly) finds every other peer
        // dead, as a forged peer table would make it.
        let claimant_peers = TestPeers::new(1);
        let judge = TestPeers::new(0);
        judge.kill_others();
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let claimant = unsafe { Mpmc::<u64>::init_at(ptr, len, RingConfig::new(4)) }
            .unwrap()
            .with_peers(&claimant_peers);
        // SAFETY: as above.
        let q = unsafe { Mpmc::<u64>::attach(ptr, len) }
            .unwrap()
            .with_peers(&judge);
        let pos = claimant.claim_push_and_stop().unwrap();
        q.push(2).unwrap();
        // The judge's blocking pop skips the "dead" claimant's slot.
        assert_eq!(q.pop_timeout(Duration::from_secs(10)), Ok(2));
        // The claimant was only slow: its late publication must fail and
        // change nothing.
        assert_eq!(claimant.publish_claimed(pos, 1), Err(PushError::Corrupted));
        assert_eq!(q.try_pop(), Err(PopError::Empty), "the late item arrived");
        holds_exactly(&q, 4, 10);
        holds_exactly(&q, 4, 20);
    }

    #[cfg(not(miri))]
    #[test]
    fn a_live_consumer_judged_dead_cannot_corrupt_the_ring() {
        let b = buf::<u64>(4);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        let claimant_peers = TestPeers::new(1);
        let judge = TestPeers::new(0);
        judge.kill_others();
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let claimant = unsafe { Mpmc::<u64>::init_at(ptr, len, RingConfig::new(4)) }
            .unwrap()
            .with_peers(&claimant_peers);
        // SAFETY: as above.
        let q = unsafe { Mpmc::<u64>::attach(ptr, len) }
            .unwrap()
            .with_peers(&judge);
        for i in 1..=4 {
            q.push(i).unwrap();
        }
        let pos = claimant.claim_pop_and_stop().unwrap();
        // The judge's blocking push frees the "dead" consumer's slot (item
        // 1 counts as lost with it) and fills it.
        q.push_timeout(5, Duration::from_secs(10)).unwrap();
        // The consumer was only slow: it must not hand out what the slot
        // holds now (item 5, which would then be received twice), nor free
        // it again.
        assert_eq!(claimant.take_claimed(pos), Err(PopError::Corrupted));
        for i in 2..=5 {
            assert_eq!(q.try_pop(), Ok(i));
        }
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        holds_exactly(&q, 4, 10);
        holds_exactly(&q, 4, 20);
    }
}

/// What the MPMC control block at the start of `control` (a copy of a
/// queue's bytes, at least its control block) says; `None` if `control`
/// is too short to hold one. Decodes words only: nothing is checked or
/// trusted, and no memory but the copy is read.
#[cfg(not(loom))]
pub fn state_of(control: &[u8]) -> Option<crate::queue::RingState> {
    use crate::queue::{signal_word_at, sleeping, word_at};
    use core::mem::offset_of;
    if control.len() < size_of::<Control>() {
        return None;
    }
    let enq = word_at(control, offset_of!(Control, enqueue))?;
    Some(crate::queue::RingState {
        tail: enq & !CLOSED,
        head: word_at(control, offset_of!(Control, dequeue))?,
        closed: enq & CLOSED != 0,
        consumer_sleepers: sleeping(signal_word_at(control, offset_of!(Control, not_empty))?),
        producer_sleepers: sleeping(signal_word_at(control, offset_of!(Control, not_full))?),
    })
}

/// Whose claim a slot's owner word records ([`slot_claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRole {
    /// A producer claimed the position and has not published it yet.
    Producer,
    /// A consumer claimed the item at the position and has not freed the
    /// slot yet.
    Consumer,
}

/// A claim still held on a slot, decoded by [`slot_claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotClaim {
    /// The claimed position (the slot is `position & (capacity - 1)`).
    pub position: u64,
    /// The claimant's role.
    pub role: ClaimRole,
    /// The claimant's token among the mapping's peers.
    pub token: Token,
}

/// Where the slot records start, in bytes from the queue's start; record
/// `i` is at `RECORDS_OFFSET + i * record_size(..)` ([`record_size`]).
#[cfg(not(loom))]
pub const RECORDS_OFFSET: usize = size_of::<Control>();
/// The bytes of a record that [`slot_claim`] reads: its sequence number and
/// owner word, at its start.
#[cfg(not(loom))]
pub const RECORD_HEADER: usize = size_of::<Meta>();

/// The size of one slot record in a queue of items of `item_size` bytes
/// aligned to `item_align` (as its header states them): the sequence number
/// and the owner word (16 bytes), the item after them at its alignment, the
/// whole rounded up to a multiple of 64 bytes or of the item's alignment if
/// larger. `None` for an alignment that is not a power of two, or a size
/// that overflows.
#[cfg(not(loom))]
pub fn record_size(item_size: usize, item_align: usize) -> Option<usize> {
    if !item_align.is_power_of_two() {
        return None;
    }
    let item = round_up(RECORD_HEADER, item_align)?;
    round_up(
        item.checked_add(item_size)?,
        item_align.max(align_of::<Record<u8>>()),
    )
}

/// Whether the MPMC control block at the start of `control` (a copy of a
/// queue's bytes) is of this build's layout, so that [`RECORDS_OFFSET`]
/// and [`record_size`] locate its records: a queue made by a build of
/// another layout version (one of two arrays, before version 5) keeps its
/// slots' words elsewhere. Decodes words only. For tools.
#[cfg(not(loom))]
pub fn records_located(control: &[u8]) -> bool {
    control::is_current(control, QueueKind::Mpmc)
}

/// The claim that slot `index`'s record (`record`: a *copy* of its first
/// [`RECORD_HEADER`] bytes, or more) holds in a queue of `capacity` slots, if any: a
/// producer's claim whose position is not yet published (the sequence
/// number still reads "free for it"), or a consumer's claim whose item is
/// not yet freed (the sequence number still reads "full at it"). `None`
/// for anything else — no claim, a finished one, an abandoned one, a
/// record too short, bits that do not agree (hostile or torn: the owner
/// word's position, the sequence number and the slot index must all name
/// the same position). Decodes words only; no memory but the copy is
/// read. For tools (`shmipc inspect`), which judge the token themselves.
#[cfg(not(loom))]
pub fn slot_claim(record: &[u8], index: u64, capacity: u64) -> Option<SlotClaim> {
    use crate::queue::word_at;
    use core::mem::offset_of;
    if !capacity.is_power_of_two() || index >= capacity {
        return None;
    }
    let seq = word_at(record, offset_of!(Meta, seq))?;
    let owner = word_at(record, offset_of!(Meta, owner))?;
    let (role, position) = match owner & ROLE_MASK {
        PRODUCER => (ClaimRole::Producer, seq),
        CONSUMER => (ClaimRole::Consumer, seq.checked_sub(1)?),
        _ => return None,
    };
    if !claims(owner, owner & ROLE_MASK, position) || position & (capacity - 1) != index {
        return None;
    }
    let token = Token::from_raw(((owner & TOKEN_MASK) >> 32) as u32)?;
    Some(SlotClaim {
        position,
        role,
        token,
    })
}
