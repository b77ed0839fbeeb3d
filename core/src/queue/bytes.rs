//! A queue of variable-length byte messages, for many producers and many
//! consumers, with zero-copy reserve/commit and borrow/release.
//!
//! # Layout
//!
//! A control block, then a data ring of `capacity` bytes (a power of two).
//! Messages are records in the ring, each a 16-byte header (a state word
//! and an owner word) followed by the payload padded to 16 bytes. A record never wraps: when one does not fit
//! before the end of the ring, a *skip* record fills the rest and the
//! message starts at offset 0. Positions are `u64` byte counts that never
//! wrap; offset = position & (capacity - 1).
//!
//! | control field | guarded by | meaning |
//! |---|---|---|
//! | `writer.lock` | — | serialises reservations |
//! | `writer.tail` | writer lock | end of the last reserved record; bit 63 is `CLOSED` (set by `close`, without the lock, when safe: "Closing") |
//! | `writer.closing`, `writer.light`, `writer.busy` | — | a close begun; a light sole sender holds the side; it is inside a send ("Closing") |
//! | `writer.head` | writer lock | start of the oldest record not yet reclaimed |
//! | `reader.lock` | — | serialises claims |
//! | `reader.read` | reader lock | start of the oldest record no reader has claimed |
//!
//! `head <= read <= tail <= head + capacity` always holds.
//!
//! The owner word names the process (its [`Token`] among the mapping's
//! peers, see [`crate::peers`]) that reserved the
//! record, from reservation to commit, and then the one that claimed it,
//! from claim to release. The state word of a record at position `p`:
//!
//! | bits | meaning |
//! |---|---|
//! | 0–31 | payload length |
//! | 32–33 | state: 1 `PENDING` (reserved), 2 `READY` (committed), 3 `FREED` (released) |
//! | 34 | `SKIP`: padding or a cancelled reservation, never delivered |
//! | 35–63 | `(p / 8) mod 2^29`, a tag that catches headers in the wrong place |
//!
//! # Why a short lock on each side
//!
//! A record's header must be valid before anyone can look at it: readers
//! decide from it where the next record starts, so a stale or forged header
//! (old payload bytes can look like anything) must never be read as the
//! current one. The writer therefore writes the `PENDING` header *before*
//! it publishes the new `tail`, and a reader only reads headers below
//! `tail`. With many writers that order needs them serialised for a moment;
//! a lock-free claim (CAS on `tail`, header written afterwards) opens exactly
//! the window in which a reader can take leftover payload bytes for a
//! committed header and hand out a torn message. Likewise, on the reader
//! side the lock makes "read the header, then advance past the record"
//! atomic, so no reader ever loads a header whose bytes a writer may already
//! be reusing as payload (which a lock-free CAS claim would allow, as a data
//! race in the language's memory model).
//!
//! Both critical sections are a handful of loads and stores: no copying, no
//! system call, no waiting for space. Payload copies happen outside the
//! locks, so many producers fill their reservations and many consumers read
//! their messages in parallel. Committing is one Release store of the
//! header; releasing is one Release store of `FREED` (both compare-and-swaps
//! from the header the grant holds, below). Space is reclaimed by
//! writers, under the writer lock, by advancing `head` over freed records,
//! so readers never contend with each other to give space back.
//!
//! **Who reads whose line.** Writers keep `tail` and `head` busy, readers
//! `read`; neither side loads the other's on every message. A reader
//! handle keeps the last `tail` it acquired (`seen`, in the handle, under
//! the reader lock) and loads `tail` again only when `read` has caught up
//! with it: the records below a tail once acquired stay published, and
//! `read` only grows, so the copy never points at a header not yet
//! written. (`Closed` is decided on a fresh load.) Writers reclaim
//! lazily: only when the free room (`capacity - (tail - head)`) falls
//! below two of the largest records do they load `read` and walk the
//! freed records; a record plus the skip record before it is less than
//! that, so a reservation with that much room fits without reclaiming,
//! and `Full` is reported only after a reclaim. So `head` may lag behind
//! records already released: [`ByteQueue::used_bytes`] counts those
//! until the next reclaim.
//!
//! Per-producer rings were the alternative: no writer lock, but consumers
//! would need a fair scan over N rings and the memory is fixed per producer.
//!
//! **The locks never stretch a call.** A `try_` call takes a side's lock
//! only if it is free (after a brief spin, never a sleep): a holder that is
//! inside its critical section at that moment, or stopped or dead there,
//! makes the call report `Full` (sending) or `Empty` (receiving), as "not
//! now". Timed and blocking calls wait for the lock within their own
//! deadline (and take it over from a holder that died).
//!
//! # Closing
//!
//! `CLOSED` is bit 63 of `writer.tail`, the word every reservation must
//! change. `close` sets it with one read-modify-write, without the writer
//! lock; a reservation publishes its new `tail` with a compare-and-swap
//! from the value it read, which the bit makes fail. The two are ordered in
//! `tail`'s modification order, so a reservation either took effect before
//! the close (its message is received before `Closed`, whenever it is
//! committed) or never does (the send returns `Closed`; the headers it
//! wrote beyond `tail` are never read). A reader reports `Closed` only when
//! `read` has reached the frozen `tail`: every record below it committed and
//! claimed, or skipped (cancelled, or recovered from a dead writer). So once
//! any reader is told `Closed`, no message whose send returned `Ok` is left
//! or arrives later. A reservation made before the close and committed
//! after it is delivered; readers wait for it (`Empty`) as for any.
//!
//! A close first marks `writer.closing` (`CLOSE_ASKED`), and a writer that
//! holds the lock and finds the mark sets `CLOSED` itself. That matters
//! for one writer that does not publish with a compare-and-swap: a
//! *light* sole sender ([`sole`], "Closing"), which stores `tail` plainly,
//! because a locked instruction after the record's stores waits for their
//! cache lines to come over from the reader's core (without it, the
//! compare bench's `bytes_64` row went from 0.30 to 0.50–0.53 GB/s on one
//! machine: BENCHMARKS.md). A plain store could wipe out a
//! `CLOSED` bit set between its load of `tail` and its store, so a close
//! sets the bit only when no light send can be between the two:
//!
//! - no light sole sender holds the side: the close stores `closing`,
//!   runs a `SeqCst` fence and reads `writer.light` 0; a sender makes
//!   itself light with a swap of `light` and a `SeqCst` fence before its
//!   first look at `closing`, so one of the two sees the other;
//! - or after a process-wide barrier (`membarrier`, `core/src/sys/membarrier.rs`),
//!   `writer.busy` reads 0. A light send stores its token in `busy`, then
//!   looks at `closing`, then (if it said 0) stores `tail` and clears
//!   `busy`. The barrier runs a full fence in every registered thread
//!   after the close's store of `closing`, so a send whose look said 0 has
//!   its `busy` store visible once the barrier returns, and one whose look
//!   comes later sees the close and publishes nothing. So `busy` = 0 after
//!   the barrier means every light send still to publish sees the close.
//!   The close then stores `closing` = `CLOSE_FENCED` (Release, after its
//!   load of `busy`), so that a reader who helps later (below) and reads
//!   FENCED reads `busy` no older than the close did;
//! - or the closer (or a helper) gets the writers' lock: free, or taken
//!   over from a light sender that died with `busy` set.
//!
//! A live light send that a close found busy sets the bit itself: it looks
//! at `closing` again after clearing `busy`, and that look comes after the
//! barrier. Until the bit is set the queue reads closed to senders
//! (`is_closed`, and every send fails), and readers drain and then report
//! `Empty`, helping the close to finish (one bounded try) whenever they
//! find the queue drained; a helper that finds `closing` not yet FENCED
//! (its closer died before its barrier, or the kernel refused it there)
//! makes the close's decision itself, barrier included. A close can stay
//! unfinished only while a light sole sender is stopped (SIGSTOP) inside
//! a send, or, where the kernel refuses the barrier to the closer and to
//! every helper, while a light sole sender holds the side and sends
//! nothing: it finishes the close at its next send or when dropped. Forged
//! words can hold a close up, never make it lose a message: a forged
//! owner word of the writers' lock delays the takeover as it delays any
//! recovery (a forged `busy` alone does not: with the side free, the lock
//! is had). Loom cannot run `membarrier`:
//! its models make every sole sender light and put `SeqCst` fences where
//! the barrier acts (`core/tests/loom_bytes.rs`,
//! `light_sole_sends_against_close`).
//!
//! # Crashes and hostile memory
//!
//! A process may die at any instruction. What that costs:
//!
//! | dies | effect | recovered by |
//! |---|---|---|
//! | writer, between reserve and commit | a `PENDING` record: readers deliver everything before it, then report `Empty` | a blocking reader checks the record's owner once per [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL) of waiting; if it is dead, the record becomes a skip. The message was never sent. |
//! | reader, holding a [`ReadGrant`] (between claim and release) | its record cannot be reclaimed; writers eventually find the ring full | a blocking writer checks the owner of the record at `head` the same way and frees it. The message was being received; it is lost. |
//! | anyone, inside a side's critical section | that side's [`Lock`] stays held | the next locker takes the lock over (within one interval) and marks it consistent, after the section re-validates the positions (below) |
//!
//! **Why no critical section needs repair.** The writer's section reads
//! `tail`, `head` and `read`, moves `head` over freed and skip records (a
//! store that may or may not have landed: either value keeps `head <= read`
//! and covers only reclaimable records), writes a skip header and the new
//! record's `PENDING` header and owner word *beyond* the published `tail`
//! (invisible to readers, overwritten by the next writer), and then
//! publishes `tail` with one store: before it, nothing was reserved; after
//! it, the record is a `PENDING` one with its owner named, which readers
//! recover as above. The reader's section reads the header at `read`,
//! writes the owner word (of a record it has not yet claimed, so harmless),
//! and advances `read` with one store: before it, the record is unclaimed;
//! after it, it is held by the dead reader, which writers recover as above.
//! So a takeover finds one of these states; the section it then runs
//! checks `head <= read <= tail <= head + capacity` and alignment as every
//! section does, and only if they hold does the new owner call
//! [`LockGuard::mark_consistent`]; otherwise the side reports `Corrupted`
//! and the lock becomes not recoverable. (What the dead owner stored is all
//! visible to the next one: it can no longer store anything, and its exit
//! went through the kernel.)
//!
//! So a message is lost only if its writer died before committing it (it
//! was never sent) or its reader died while holding it (it was being
//! received). Nothing is delivered twice, and nothing torn: a record is
//! handed out only after the Release compare-and-swap of its `READY`
//! header, which follows the whole copy in.
//!
//! **A holder wrongly judged dead** (which takes forged peer bookkeeping:
//! judgements are made on evidence) finds out: committing and releasing are
//! compare-and-swaps from the header its grant holds, so a writer whose
//! record was skipped meanwhile gets [`SendError::Corrupted`] from its send
//! (or [`WriteGrant::commit_checked`]) and its message is not delivered, and
//! a reader whose record was freed gets [`RecvError::Corrupted`] (from
//! `recv_into`, `recv_vec`, [`ReadGrant::release_checked`]) instead of bytes
//! that may be torn; the ring's state is left as the recovering party made
//! it. What it cannot undo: payload bytes it copied into a record a writer
//! had already reused.
//!
//! Recovery needs a blocking (or timed) call to
//! wait: `try_` calls never wait and never recover. A dropped
//! [`WriteGrant`] becomes a skip at once; only a real death costs an
//! interval. A process alive but stopped (SIGSTOP) keeps what it holds. A
//! forged owner word can delay recovery (it names a live process) or make a
//! record be skipped or freed early, never be read out of bounds.
//!
//! Every position, header, length and state read from the shared memory is
//! checked against the handle's own copy of the geometry before use; a bad
//! value yields `Corrupted`, never an out-of-bounds access or a torn
//! message, and every loop is bounded by the ring's size.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::time::Duration;

use crate::futex::Deadline;
use crate::lock::{Lock, LockError, LockGuard};
use crate::peers::{self, End, Peers, Token};
use crate::place::{LayoutError, Rule};
#[cfg_attr(loom, allow(unused_imports))]
use crate::queue::{
    block_checked, control, round_up, wake_others, CachePadded, ControlHeader, Ends, Keep,
    QueueError, QueueKind, RecvError, SendError, Signal, MAX_CAPACITY, MAX_POS,
};
use crate::queue::{Readiness, WaitStrategy};
use crate::sync::{AtomicU64, Ordering};

pub mod sole;
pub use sole::{SoleError, SoleReadGrant, SoleReceiver, SoleSender};

const PENDING: u64 = 1;
const READY: u64 = 2;
const FREED: u64 = 3;
const SKIP: u64 = 1 << 34;
const TAG_SHIFT: u32 = 35;
const TAG_MASK: u64 = (1 << 29) - 1;
/// A record's header: the state word, then the owner word.
const HEADER: u64 = 16;
/// Records start on 16-byte boundaries (so that a skip record always has
/// room for its header).
const ALIGN: u64 = 16;

/// `writer.tail`'s bit 63: the queue is closed. `close` sets it with one
/// read-modify-write, and every reservation publishes its new `tail` with
/// a compare-and-swap from the value it read, which the bit makes fail: so
/// a reservation either took effect before the close or never does.
const CLOSED: u64 = 1 << 63;

/// Whether sole senders made here may publish `tail` with a plain store
/// (module docs, "Closing"): where `close` can fence them with
/// `membarrier`. Under loom always, with a `SeqCst` fence on both sides
/// standing in for the barrier ([`light_fence`], [`light_barrier`]): the
/// models check the handshake, given what `membarrier` promises.
pub(super) fn light_possible() -> bool {
    cfg!(loom) || crate::membarrier::registered()
}

/// The sender's side of the barrier, between its store and its look: a
/// compiler fence (the heavy side makes it a full one when it runs), or
/// under loom a `SeqCst` fence.
#[inline]
pub(super) fn light_fence() {
    #[cfg(loom)]
    crate::sync::fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    crate::sync::compiler_fence(Ordering::SeqCst);
}

/// The close's side: `membarrier`, or under loom a `SeqCst` fence.
fn light_barrier() -> bool {
    #[cfg(loom)]
    {
        crate::sync::fence(Ordering::SeqCst);
        true
    }
    #[cfg(not(loom))]
    crate::membarrier::heavy()
}

/// `writer.closing`: a close has begun (it is final once `CLOSED` is set).
const CLOSE_ASKED: u64 = 1;
/// `writer.closing`: and its process-wide barrier has run, so that a
/// `writer.busy` of 0 read from now on means no light sole send can still
/// publish (module docs, "Closing").
const CLOSE_FENCED: u64 = 2;

#[inline]
fn encode(pos: u64, state: u64, len: u64) -> u64 {
    ((pos >> 3) & TAG_MASK) << TAG_SHIFT | state << 32 | len
}

/// The bytes a record of `len` payload bytes occupies.
#[inline]
fn record_size(len: u64) -> u64 {
    HEADER + ((len + ALIGN - 1) & !(ALIGN - 1))
}

/// A decoded header.
#[derive(Clone, Copy)]
struct Rec {
    len: u64,
    state: u64,
    skip: bool,
    size: u64,
}

/// What a new [`ByteQueue`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BytesConfig {
    /// Bytes in the data ring: a power of two from 64 to 2^32, at least
    /// twice the largest record (a 16-byte header, then `max_message`
    /// rounded up to 16).
    pub capacity: usize,
    /// The largest message, in bytes.
    pub max_message: usize,
}

impl BytesConfig {
    /// A ring of `capacity` bytes for messages of up to `max_message`.
    pub const fn new(capacity: usize, max_message: usize) -> BytesConfig {
        BytesConfig {
            capacity,
            max_message,
        }
    }

    /// The smallest valid configuration for messages of up to
    /// `max_message` bytes: a ring that holds two of the largest records
    /// (at least 64 bytes). A `max_message` too large for the largest ring
    /// (2^31 bytes less a record header, with rings of at most 2^32) is a
    /// [`LayoutError::Parameter`] naming it.
    pub fn for_max_message(max_message: usize) -> Result<BytesConfig, LayoutError> {
        let largest = MAX_CAPACITY / 2 - HEADER;
        let max = max_message as u64;
        if max > largest {
            return Err(LayoutError::parameter(
                "max_message",
                max,
                Rule::AtMost {
                    max: largest,
                    why:
                        "the largest ring must hold two records of 16 header bytes and the message",
                },
            ));
        }
        // No overflow: max <= 2^31, so the record is at most 2^31 + 16.
        let record = record_size(max);
        let capacity = usize::try_from((record * 2).next_power_of_two().max(64)).map_err(|_| {
            LayoutError::parameter(
                "max_message",
                max,
                Rule::Text("needs a ring larger than this platform's address space"),
            )
        })?;
        let c = BytesConfig::new(capacity, max_message);
        c.check().map(|()| c)
    }

    /// Encodes the configuration as four words: `[capacity, max_message, 0, 0]`.
    pub const fn to_words(&self) -> [u64; 4] {
        [self.capacity as u64, self.max_message as u64, 0, 0]
    }

    /// Decodes [`BytesConfig::to_words`]; the values are checked by
    /// [`ByteQueue::layout`].
    pub fn from_words(words: [u64; 4]) -> Result<BytesConfig, LayoutError> {
        if words[2..] != [0, 0] {
            return Err(LayoutError::InvalidParameters);
        }
        let capacity = usize::try_from(words[0]).map_err(|_| LayoutError::InvalidParameters)?;
        let max_message = usize::try_from(words[1]).map_err(|_| LayoutError::InvalidParameters)?;
        Ok(BytesConfig::new(capacity, max_message))
    }

    fn check(&self) -> Result<(), LayoutError> {
        let cap = self.capacity as u64;
        if !self.capacity.is_power_of_two() || !(64..=MAX_CAPACITY).contains(&cap) {
            return Err(LayoutError::parameter(
                "capacity",
                cap,
                Rule::PowerOfTwo {
                    min: 64,
                    max: MAX_CAPACITY,
                },
            ));
        }
        // A record is the header plus the message padded to ALIGN; two of
        // the largest must fit. `cap / 2 - HEADER` is a multiple of ALIGN,
        // so this is exactly `record_size(max) <= cap / 2`, without the
        // overflow `record_size` would risk for a huge `max_message`.
        let largest = cap / 2 - HEADER;
        let max = self.max_message as u64;
        if max > largest {
            return Err(LayoutError::parameter(
                "max_message",
                max,
                Rule::AtMost {
                    max: largest,
                    why: "two records of 16 header bytes and the message must fit in the ring",
                },
            ));
        }
        Ok(())
    }
}

#[repr(C)]
struct WriterSide {
    lock: Lock,
    tail: AtomicU64,
    head: AtomicU64,
    /// Messages sent, as counted by [`ByteQueue::count_sent`] (a typed
    /// layer's `qsize`); in what was padding, so 0 in older segments.
    sent: AtomicU64,
    /// 0, or [`CLOSE_ASKED`] once `close` has begun, or [`CLOSE_FENCED`]
    /// once its process-wide barrier has run (module docs, "Closing").
    /// In what was padding, as the next two.
    closing: AtomicU64,
    /// 1 while a sole sender that publishes `tail` with a plain store
    /// holds the side (module docs of [`sole`], "Closing"), else 0.
    light: AtomicU64,
    /// The token of that sole sender while it is between its look at
    /// `closing` and its store of `tail`, else 0.
    busy: AtomicU64,
    /// Messages sent by counting sole senders ([`SoleSender::counting`]):
    /// written only by the holder of the writers' lock for good, with a
    /// plain load and store (the lock orders one holder's stores before
    /// the next one's loads), so no locked instruction. In padding too.
    sole_sent: AtomicU64,
}

#[repr(C)]
struct ReaderSide {
    lock: Lock,
    read: AtomicU64,
    /// Messages taken, as counted by [`ByteQueue::count_taken`]; in what
    /// was padding, so 0 in older segments.
    taken: AtomicU64,
    /// Messages taken by counting sole receivers
    /// ([`SoleReceiver::counting`]), as `WriterSide::sole_sent`.
    sole_taken: AtomicU64,
}

// The counters must stay inside each side's padding: the layout of
// existing segments does not change (loom's atomics are larger).
#[cfg(not(loom))]
const _: () = assert!(size_of::<WriterSide>() <= 128 && size_of::<ReaderSide>() <= 128);

#[repr(C)]
struct Control {
    /// The header and the words written rarely, on the first lines.
    lead: CachePadded<Lead>,
    writer: CachePadded<WriterSide>,
    reader: CachePadded<ReaderSide>,
    /// Readers sleep here; commits (and cancels) notify.
    not_empty: CachePadded<Signal>,
    /// Writers sleep here; releases (and skipped records) notify.
    not_full: CachePadded<Signal>,
}

/// The first fields of [`Control`], padded to lines of their own like the
/// rest, so that every byte of the block lies in a [`CachePadded`].
#[repr(C)]
struct Lead {
    header: ControlHeader,
    /// Endpoint flags and departures (`queue/ends.rs`), in what was the
    /// header's padding.
    ends: AtomicU64,
}

#[cfg(not(loom))]
impl Control {
    /// Whether a receive's owner check or end-of-stream check could find
    /// something now: a record reserved or waiting (its writer may have
    /// died inside it), a reader inside its section (it may have died
    /// there), or senders a scan could find gone. A snapshot.
    fn recv_check_may_help(&self) -> bool {
        let read = self.reader.read.load(Ordering::Relaxed);
        let tail = self.writer.tail.load(Ordering::Relaxed) & !CLOSED;
        read < tail
            || self.reader.lock.is_locked()
            || crate::queue::judgeable(&self.lead.ends, End::Sender)
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
                ends: AtomicU64::new(0),
            }),
            writer: CachePadded::new(WriterSide {
                lock: Lock::new(),
                tail: AtomicU64::new(0),
                head: AtomicU64::new(0),
                sent: AtomicU64::new(0),
                closing: AtomicU64::new(0),
                light: AtomicU64::new(0),
                busy: AtomicU64::new(0),
                sole_sent: AtomicU64::new(0),
            }),
            reader: CachePadded::new(ReaderSide {
                lock: Lock::new(),
                read: AtomicU64::new(0),
                taken: AtomicU64::new(0),
                sole_taken: AtomicU64::new(0),
            }),
            not_empty: CachePadded::new(Signal::new()),
            not_full: CachePadded::new(Signal::new()),
        }
    }
}

/// The data ring: headers are atomics, payloads are copied in and out
/// through raw pointers (or loom cells).
#[derive(Clone, Copy)]
struct Ring<'a> {
    #[cfg(not(loom))]
    base: core::ptr::NonNull<u8>,
    #[cfg(loom)]
    headers: &'a [AtomicU64],
    #[cfg(loom)]
    data: crate::queue::Cells<u8>,
    mask: u64,
    _life: PhantomData<&'a ()>,
}

impl<'a> Ring<'a> {
    /// The header word of the record at `pos` (a multiple of 8).
    #[inline]
    fn header(&self, pos: u64) -> &'a AtomicU64 {
        let off = (pos & self.mask & !7) as usize;
        #[cfg(not(loom))]
        // SAFETY: off + 8 <= capacity (8-aligned offset in a ring whose size
        // is a multiple of 8), the ring base is 128-aligned, and the ring is
        // valid for 'a; an AtomicU64 may be viewed over any 8 aligned bytes.
        return unsafe { &*self.base.as_ptr().add(off).cast::<AtomicU64>() };
        #[cfg(loom)]
        return &self.headers[off / 8];
    }

    /// Copies `src` to the ring at `pos`.
    ///
    /// # Safety
    ///
    /// `pos & mask + src.len() <= capacity`, and the bytes belong to the
    /// caller's reservation.
    #[inline]
    unsafe fn write(&self, pos: u64, src: &[u8]) {
        let off = (pos & self.mask) as usize;
        #[cfg(not(loom))]
        // SAFETY: in bounds and owned (contract); `src` is the caller's own
        // memory, so the ranges do not overlap.
        unsafe {
            crate::sys::copy::store_bytes(src, self.base.as_ptr().add(off))
        };
        #[cfg(loom)]
        // SAFETY: as above.
        unsafe {
            self.data.write_slice(off, src)
        };
    }

    /// Copies bytes at `pos` out to `dst`.
    ///
    /// # Safety
    ///
    /// `pos & mask + dst.len() <= capacity`, and the bytes belong to a
    /// message the caller holds.
    #[inline]
    unsafe fn read(&self, pos: u64, dst: &mut [u8]) {
        let off = (pos & self.mask) as usize;
        #[cfg(not(loom))]
        // SAFETY: as in `write`, in the other direction.
        unsafe {
            crate::sys::copy::load_bytes(self.base.as_ptr().add(off), dst)
        };
        #[cfg(loom)]
        // SAFETY: as above.
        unsafe {
            self.data.read_slice(off, dst)
        };
    }

    #[cfg(not(loom))]
    #[inline]
    fn ptr(&self, pos: u64) -> *mut u8 {
        // SAFETY: the offset is below the capacity.
        unsafe { self.base.as_ptr().add((pos & self.mask) as usize) }
    }
}

/// A queue of byte messages in (shared) memory. Handles are cheap to clone
/// and every method takes `&self`.
///
/// ```
/// use shmipc_core::bytes::{ByteQueue, BytesConfig};
///
/// #[repr(C, align(128))]
/// struct Bytes([u8; 4096]);
/// let mut mem = Bytes([0; 4096]);
///
/// let q = ByteQueue::new_in(&mut mem.0, BytesConfig::new(2048, 512)).unwrap();
/// q.send(b"hello").unwrap();
///
/// // Zero-copy: reserve, fill in place, commit.
/// let mut grant = q.reserve(3).unwrap();
/// grant.write_at(0, b"abc").unwrap();
/// grant.commit();
///
/// let mut buf = [0u8; 512];
/// let n = q.recv_into(&mut buf).unwrap();
/// assert_eq!(&buf[..n], b"hello");
/// let msg = q.recv().unwrap();
/// let mut out = [0u8; 3];
/// msg.read_at(0, &mut out).unwrap();
/// assert_eq!(&out, b"abc");
/// msg.release();
/// ```
pub struct ByteQueue<'a, K = Keep> {
    ctrl: &'a Control,
    ring: Ring<'a>,
    /// Trusted copies of the geometry (checked at attach, never re-read).
    cap: u64,
    max: u64,
    /// Who we are, and who is dead, among the processes sharing the memory.
    peers: &'a dyn Peers,
    /// Which ends of the queue this handle holds (`queue/ends.rs`).
    ends: Ends,
    /// How this handle's blocking calls wait.
    wait: WaitStrategy,
    /// The last `tail` (without `CLOSED`) this handle's readers acquired,
    /// read and written only under the reader lock: while `read` is below
    /// it, the records up to it are known to be published, and readers
    /// need not load `tail`, the writers' busiest word (module docs,
    /// "Who reads whose line"). Our own memory, so trusted; a copy of the
    /// handle starts with none.
    seen: AtomicU64,
    /// What keeps the memory alive (see [`Keep`]).
    _keep: K,
}

// SAFETY: every shared access goes through atomics, the two locks, or
// payload bytes owned by a grant under the protocol above.
unsafe impl<K: Send> Send for ByteQueue<'_, K> {}
// SAFETY: as for Send.
unsafe impl<K: Sync> Sync for ByteQueue<'_, K> {}

impl<K: Clone> Clone for ByteQueue<'_, K> {
    fn clone(&self) -> Self {
        ByteQueue {
            ctrl: self.ctrl,
            ring: self.ring,
            cap: self.cap,
            max: self.max,
            peers: self.peers,
            ends: self.ends.clone(),
            wait: self.wait,
            seen: AtomicU64::new(0),
            _keep: self._keep.clone(),
        }
    }
}

impl<K> Drop for ByteQueue<'_, K> {
    /// Gives back the ends this handle held and wakes the other side, so
    /// that a receiver blocked on a queue whose last sender this was sees
    /// end-of-stream at once.
    fn drop(&mut self) {
        let held = self.ends.release(&self.ctrl.lead.ends, self.peers);
        wake_others(held, &self.ctrl.not_empty, &self.ctrl.not_full);
    }
}

impl<K> fmt::Debug for ByteQueue<'_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteQueue")
            .field("capacity", &self.cap)
            .field("max_message", &self.max)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// An out-of-range offset or length given to a grant's copy methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds;

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("range outside the message")
    }
}

impl core::error::Error for OutOfBounds {}

/// A lock error as a send error. A lock held by someone else is "not now":
/// `Full` for a call that does not wait (`WouldBlock`), `Timeout` for one
/// whose deadline passed.
fn lock_error_send(e: LockError) -> SendError {
    match e {
        LockError::WouldBlock => SendError::Full,
        LockError::Timeout => SendError::Timeout,
        _ => SendError::Corrupted,
    }
}

/// As [`lock_error_send`]: `Empty` for a call that does not wait.
fn lock_error_recv(e: LockError) -> RecvError {
    match e {
        LockError::WouldBlock => RecvError::Empty,
        LockError::Timeout => RecvError::Timeout,
        _ => RecvError::Corrupted,
    }
}

/// How long a side's lock may be waited for.
#[derive(Clone, Copy)]
enum Wait<'d> {
    /// Not at all: a brief spin, never a sleep (`try_` calls).
    Never,
    /// Until the deadline (for ever if `None`).
    Until(Option<&'d Deadline>),
}

/// Takes `lock` at once if free, else as `wait` allows: `Never` spins
/// briefly (a holder is inside a critical section of a few loads and
/// stores) and then gives up with `WouldBlock`; `Until` sleeps until the
/// deadline, and takes the lock over from a holder that died.
fn take<'l>(lock: &'l Lock, peers: &dyn Peers, wait: Wait<'_>) -> Result<LockGuard<'l>, LockError> {
    let mut r = lock.try_lock_with(peers);
    match wait {
        Wait::Never => {
            if matches!(r, Err(LockError::WouldBlock)) {
                crate::futex::spin_until(|| {
                    r = lock.try_lock_with(peers);
                    !matches!(r, Err(LockError::WouldBlock))
                });
            }
            r
        }
        Wait::Until(deadline) => match r {
            Err(LockError::WouldBlock) => lock.lock_until_with(peers, deadline),
            r => r,
        },
    }
}

impl<'a> ByteQueue<'a> {
    /// The size and alignment of a queue with `config`: a control block
    /// plus `capacity` bytes, aligned to 128.
    ///
    /// Fails with a [`LayoutError::Parameter`] naming `capacity` if it is
    /// not a power of two in `64..=2^32`, or `max_message` if two of the
    /// largest records (16 + `max_message` rounded up to 16) do not fit.
    pub fn layout(config: BytesConfig) -> Result<Layout, LayoutError> {
        config.check()?;
        let size = size_of::<Control>()
            .checked_add(config.capacity)
            .and_then(|s| round_up(s, 128))
            .ok_or(LayoutError::InvalidParameters)?;
        crate::queue::layout(size, align_of::<Control>())
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
        config: BytesConfig,
    ) -> Result<Self, QueueError> {
        let l = Self::layout(config)?;
        crate::place::check(ptr, len, l.size(), l.align())?;
        // SAFETY: aligned and large enough (checked), exclusive (contract).
        // Zeroed, not written as a struct: every field of `Control::new()`
        // is an atomic holding 0, so zero bytes are that value, and a typed
        // write would copy the struct's padding from the stack into shared
        // memory (this process's addresses, for any reader to see).
        unsafe { ptr.write_bytes(0, size_of::<Control>()) };
        // SAFETY: the ring lies inside the checked layout. Zeroed, so no
        // header or payload byte is ever read uninitialised.
        unsafe {
            ptr.add(size_of::<Control>())
                .write_bytes(0, config.capacity)
        };
        // SAFETY: initialised above, valid for 'a.
        let ctrl: &'a Control = unsafe { &*ptr.cast::<Control>() };
        ctrl.lead
            .header
            .publish(QueueKind::Bytes, (1, 1), config.to_words(), l.size());
        // SAFETY: checked layout, initialised.
        Ok(unsafe { Self::from_parts(ptr, config) })
    }

    /// # Safety
    ///
    /// `ptr` starts a checked, initialised layout for `config`, valid for `'a`.
    #[cfg(not(loom))]
    unsafe fn from_parts(ptr: *mut u8, config: BytesConfig) -> Self {
        // SAFETY: in bounds and aligned; Control is atomics only.
        let ctrl: &'a Control = unsafe { &*ptr.cast::<Control>() };
        // SAFETY: the ring starts inside the layout; non-null.
        let base = unsafe { core::ptr::NonNull::new_unchecked(ptr.add(size_of::<Control>())) };
        // Commits, releases and reclaims check for sleepers with a plain
        // load where the kernel offers heavy barriers (`crate::membarrier`).
        ctrl.not_empty.enable_light();
        ctrl.not_full.enable_light();
        ByteQueue {
            ctrl,
            ring: Ring {
                base,
                mask: config.capacity as u64 - 1,
                _life: PhantomData,
            },
            cap: config.capacity as u64,
            max: config.max_message as u64,
            peers: peers::resolve(ptr as usize),
            ends: Ends::new(),
            wait: WaitStrategy::DEFAULT,
            seen: AtomicU64::new(0),
            _keep: Keep,
        }
    }

    /// Attaches to a queue another party initialised at `ptr`, after
    /// checking its header against `len`.
    ///
    /// # Safety
    ///
    /// As for [`ByteQueue::init_at`], except that the bytes hold a queue.
    #[cfg(not(loom))]
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Self, QueueError> {
        // SAFETY: forwarded contract; Control is made of atomics only.
        let (_, config) = unsafe {
            control::attach(
                ptr,
                len,
                |c: &Control| &c.lead.header,
                QueueKind::Bytes,
                (1, 1),
                BytesConfig::from_words,
                Self::layout,
            )?
        };
        // SAFETY: checked layout, initialised by its creator (contract).
        Ok(unsafe { Self::from_parts(ptr, config) })
    }

    /// A new queue in bytes the caller owns (single-process use and tests).
    /// The bytes must be aligned to 128 and at least
    /// [`ByteQueue::layout`]`(config).size()` long.
    #[cfg(not(loom))]
    pub fn new_in(bytes: &'a mut [u8], config: BytesConfig) -> Result<Self, QueueError> {
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
    pub fn new_boxed(config: BytesConfig) -> ByteQueue<'static> {
        extern crate std;
        use crate::queue::Cell;
        use std::boxed::Box;
        Self::layout(config).expect("invalid config");
        let cap = config.capacity;
        let ctrl = Box::new(Control::new());
        let headers: Box<[AtomicU64]> = (0..cap / 8).map(|_| AtomicU64::new(0)).collect();
        let data: Box<[Cell<u8>]> = (0..cap).map(|_| Cell::new(0)).collect();
        // The same self-description as in shared memory (size: the
        // layout a mapping would need).
        ctrl.lead.header.publish(
            QueueKind::Bytes,
            (1, 1),
            config.to_words(),
            Self::layout(config).map_or(0, |l| l.size()),
        );
        let ctrl_ptr: *const Control = &*ctrl;
        let headers_ptr: *const [AtomicU64] = &*headers;
        let data_ptr = core::ptr::NonNull::from(&data[0]);
        let keep = Keep(std::sync::Arc::new(crate::queue::Boxed(
            ctrl, headers, data,
        )));
        ByteQueue {
            // SAFETY: the boxes live as long as `keep`, which every clone
            // of the handle holds.
            ctrl: unsafe { &*ctrl_ptr },
            ring: Ring {
                // SAFETY: as above.
                headers: unsafe { &*headers_ptr },
                // SAFETY: `cap` cells kept alive by `keep`.
                data: unsafe { crate::queue::Cells::new(data_ptr) },
                mask: cap as u64 - 1,
                _life: PhantomData,
            },
            cap: cap as u64,
            max: config.max_message as u64,
            peers: &peers::LOCAL,
            ends: Ends::new(),
            wait: WaitStrategy::DEFAULT,
            seen: AtomicU64::new(0),
            _keep: keep,
        }
    }

    /// [`ByteQueue::attach`] for a handle that owns its memory: `owner` (a
    /// mapping) keeps the bytes alive, and the handle and each clone hold
    /// it, so they can be moved anywhere and live as long as they like.
    ///
    /// # Safety
    ///
    /// As for [`ByteQueue::attach`], with the bytes valid for as long as
    /// `owner` or any clone of it lives, instead of for `'a`.
    #[cfg(not(loom))]
    pub unsafe fn attach_owned<K>(
        ptr: *mut u8,
        len: usize,
        owner: K,
    ) -> Result<ByteQueue<'a, K>, QueueError> {
        // SAFETY: forwarded contract.
        let q = unsafe { Self::attach(ptr, len)? };
        Ok(ByteQueue {
            ctrl: q.ctrl,
            ring: q.ring,
            cap: q.cap,
            max: q.max,
            peers: q.peers,
            ends: Ends::new(),
            wait: q.wait,
            seen: AtomicU64::new(0),
            _keep: owner,
        })
    }
}

impl<'a, K> ByteQueue<'a, K> {
    /// What keeps the memory alive: [`Keep`] for a handle that borrows
    /// it, the owner given to an `attach_owned` constructor otherwise.
    pub fn owner(&self) -> &K {
        &self._keep
    }

    wait_strategy_methods!();

    /// Bytes in the data ring.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The largest message the queue takes.
    pub fn max_message(&self) -> usize {
        self.max as usize
    }

    /// Whether no message is waiting to be claimed now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.ctrl.reader.read.load(Ordering::Acquire)
            >= self.ctrl.writer.tail.load(Ordering::Acquire) & !CLOSED
    }

    /// Counts one message sent, for [`messages_sent_minus_taken`]; a layer
    /// that keeps a message count calls it after each successful send. The
    /// count lives on the writers' own cache line.
    ///
    /// [`messages_sent_minus_taken`]: ByteQueue::messages_sent_minus_taken
    #[inline]
    pub fn count_sent(&self) {
        // Relaxed: a count, which publishes nothing.
        self.ctrl.writer.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one message taken (after each successful receive); on the
    /// readers' own cache line.
    #[inline]
    pub fn count_taken(&self) {
        // Relaxed: as in `count_sent`.
        self.ctrl.reader.taken.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages counted sent minus those counted taken, 0 if fewer were
    /// sent (a snapshot that lags the calls in flight, and only as good
    /// as the peers that keep the counts). The counts are those of
    /// [`count_sent`](ByteQueue::count_sent) /
    /// [`count_taken`](ByteQueue::count_taken) plus those of counting sole
    /// handles ([`SoleSender::counting`]), which keep their own words.
    pub fn messages_sent_minus_taken(&self) -> u64 {
        // Relaxed: four counts; the taken ones first, so that a snapshot
        // taken while they move errs towards more rather than fewer.
        let (r, w) = (&self.ctrl.reader, &self.ctrl.writer);
        let load = |count: &AtomicU64| count.load(Ordering::Relaxed);
        let taken = load(&r.taken).wrapping_add(load(&r.sole_taken));
        let sent = load(&w.sent).wrapping_add(load(&w.sole_sent));
        sent.saturating_sub(taken)
    }

    /// Bytes of the ring in use (records reserved, waiting or held, plus
    /// headers and padding), as of the last reservation (a snapshot).
    /// Released records count until writers reclaim them, which they do
    /// lazily: when the free room falls below two of the largest records
    /// (module docs, "Who reads whose line").
    pub fn used_bytes(&self) -> usize {
        let head = self.ctrl.writer.head.load(Ordering::Relaxed);
        let tail = self.ctrl.writer.tail.load(Ordering::Relaxed) & !CLOSED;
        tail.saturating_sub(head).min(self.cap) as usize
    }

    /// Closes the queue: sends fail from now on, receivers drain what is
    /// committed (and what outstanding grants still commit), then get
    /// [`RecvError::Closed`]. Every sleeper is woken. A send racing the
    /// close either reserved its record before the line (it returns `Ok`,
    /// and receivers get the message before they are told `Closed`) or did
    /// not (it returns `Closed`, and nobody ever receives the message).
    pub fn close(&self) {
        let w = &self.ctrl.writer;
        // SYNC POINT: the store of `closing` and the load of `light`, with
        // a SeqCst fence between, pair with a light sole sender's swap of
        // `light`, fence and loads of `closing` (module docs, "Closing"):
        // either we see it light, or its every look sees the close.
        let first = w
            .closing
            .compare_exchange(0, CLOSE_ASKED, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok();
        if first {
            self.decide_close();
        } else {
            // Another close began first; help it finish.
            self.finish_close();
        }
        self.ctrl.not_empty.wake_all();
        self.ctrl.not_full.wake_all();
    }

    /// The close's decision, made after `closing` is marked by the close
    /// that marked it, or by a helper that finds the mark without the
    /// barrier's FENCED (that closer died before its barrier, or the kernel
    /// refused it there): without it, nobody but the sole sender's next
    /// send could finish the close. Bounded: a fence, at most one barrier,
    /// one try of the lock.
    #[cold]
    fn decide_close(&self) {
        let w = &self.ctrl.writer;
        // SYNC POINT: as in `close` (a helper read `closing` Acquire).
        crate::sync::fence(Ordering::SeqCst);
        if w.light.load(Ordering::Relaxed) == 0 {
            // Every publication to come is a compare-and-swap (which
            // the bit makes fail), or a light send that sees the close.
            self.set_closed();
        } else if light_barrier() {
            // Every light sole sender has run a full barrier since the
            // store of `closing`: one whose look at it said 0 has its
            // `busy` visible to us now; any later look sees the close.
            // SYNC POINT: Acquire pairs with the Release stores of
            // `busy` in the sole send (0 after its `tail` store).
            let busy = w.busy.load(Ordering::Acquire);
            // Release, after that load: whoever reads FENCED reads
            // `busy` no older than we did (`finish_close`).
            w.closing.store(CLOSE_FENCED, Ordering::Release);
            if busy == 0 {
                self.set_closed();
            } else {
                // A dead sender's side is taken over; a live one mid-send
                // holds the lock and looks at `closing` again after its
                // `tail` store, past the barrier, and sets the bit then.
                // A forged `busy` with nobody holding the side: the lock
                // is free.
                self.close_under_lock();
            }
        } else {
            self.close_under_lock();
        }
    }

    /// Sets `CLOSED` in `tail` for a close that has begun, if that is safe
    /// now (module docs, "Closing"): after the close's barrier, if no light
    /// sole send is between its look at `closing` and its store of `tail`
    /// (a live one that is finishes the close itself, right after that
    /// store), or if the writers' lock can be had (free, or taken over from
    /// a sole sender that died mid-send). Otherwise the close stays begun:
    /// sends fail, receivers drain and report `Empty` until the holder
    /// finishes it (a sole sender that is stopped, or one whose close got
    /// no barrier from the kernel and which sends nothing more: at its next
    /// send or when it is dropped). A close whose barrier has not run
    /// (not FENCED) is decided here as `close` decides it
    /// (`decide_close`). Bounded: a few loads, at most one barrier and one
    /// try of the lock, never a wait.
    #[cold]
    fn finish_close(&self) {
        let w = &self.ctrl.writer;
        // SYNC POINT: Acquire pairs with the AcqRel `fetch_or`s of
        // `CLOSED` (and the Release stores of `tail`).
        if w.tail.load(Ordering::Acquire) & CLOSED != 0 {
            return;
        }
        // SYNC POINT: Acquire pairs with `close`'s Release store of FENCED,
        // made after its barrier and its load of `busy`: our load of
        // `busy` below reads that value or a later one, so 0 means what it
        // meant to the close (no light send still to publish misses it).
        let closing = w.closing.load(Ordering::Acquire);
        if closing == 0 {
            return;
        }
        if closing != CLOSE_FENCED {
            // The close's barrier has not run: its closer is before it,
            // died there, or was refused it. Decide as the close does.
            self.decide_close();
            return;
        }
        // SYNC POINT: as in `decide_close`.
        if w.busy.load(Ordering::Acquire) == 0 {
            self.set_closed();
        } else {
            // As in `decide_close`: a live sender mid-send holds the lock
            // and finishes the close itself; a dead one is taken over; a
            // forged `busy` with the side free does not hold the close up.
            self.close_under_lock();
        }
    }

    /// One try of the writers' lock (taking it over from a holder that
    /// died); holding it, nobody else publishes, so set `CLOSED`. A live
    /// holder finishes the close itself: a shared writer or a sole sender
    /// at its next look at `closing`.
    #[cold]
    fn close_under_lock(&self) {
        if let Ok(mut guard) = self.ctrl.writer.lock.try_lock_checked() {
            self.writer_taken(&mut guard);
            self.set_closed();
        }
    }

    /// Sets `CLOSED` (when it is safe: see `finish_close`) and wakes every
    /// sleeper, as `close` does: readers may be asleep on a close that
    /// waited for a light send.
    pub(super) fn set_closed(&self) {
        // SYNC POINT: AcqRel read-modify-write of `tail`, ordered with the
        // compare-and-swap that publishes every reservation (module docs,
        // "Closing"); pairs with the Acquire loads of `tail` in
        // `reserve_locked` and `claim_locked`.
        self.ctrl.writer.tail.fetch_or(CLOSED, Ordering::AcqRel);
        self.ctrl.not_empty.wake_all();
        self.ctrl.not_full.wake_all();
    }

    /// Under the writers' lock, just taken: a takeover from a sole sender
    /// that died leaves its `light` and `busy` marks; clear them (we hold
    /// the side: no light send is in progress), and make the guard
    /// consistent once the positions check.
    fn writer_taken(&self, guard: &mut LockGuard<'_>) {
        if guard.owner_died() {
            self.clear_sole_marks();
            if !matches!(self.writer_positions(), Err(SendError::Corrupted)) {
                guard.mark_consistent();
            }
        }
    }

    /// Under the writers' lock, taken over from a holder that died: the
    /// marks a light sole sender leaves (module docs, "Closing") are
    /// stale; we hold the side, so no light send is in progress.
    pub(super) fn clear_sole_marks(&self) {
        let w = &self.ctrl.writer;
        w.busy.store(0, Ordering::Release);
        // SYNC POINT: SeqCst, as the other accesses of `light`.
        w.light.store(0, Ordering::SeqCst);
    }

    /// Whether the queue has been closed (or a close has begun: sends
    /// fail from then on).
    pub fn is_closed(&self) -> bool {
        self.ctrl.writer.tail.load(Ordering::Acquire) & CLOSED != 0
            || self.ctrl.writer.closing.load(Ordering::Acquire) != 0
    }

    dead_sleeper_hooks!();

    /// Test support: whether this handle's notifies check for sleepers
    /// with a plain load (the light side of the asymmetric barrier,
    /// `crate::membarrier`) on both sides.
    #[doc(hidden)]
    pub fn light_notify(&self) -> bool {
        crate::membarrier::registered()
            && self.ctrl.not_empty.is_light()
            && self.ctrl.not_full.is_light()
    }

    /// Test support: takes the writers' (`true`) or the readers' (`false`)
    /// lock, as a reservation or a claim does, runs `while_held` (a test
    /// stops or kills the process there), and lets go.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn hold_side_lock(
        &self,
        writers: bool,
        while_held: impl FnOnce(),
    ) -> Result<(), LockError> {
        let lock = if writers {
            &self.ctrl.writer.lock
        } else {
            &self.ctrl.reader.lock
        };
        let guard = lock.lock_until_with(self.peers, None)?;
        while_held();
        drop(guard);
        Ok(())
    }

    /// This handle, acting as a member of `peers` (tests and models that
    /// decide who is dead); by default a handle uses the peers of the
    /// mapping its memory lies in ([`crate::peers::resolve`]).
    pub fn with_peers(mut self, peers: &'a dyn Peers) -> Self {
        self.peers = peers;
        self
    }

    /// Records this handle as a holder of `end` now, rather than at its
    /// first send or receive: for handles with a fixed role (a pipe end),
    /// so that the other side knows of it before it sends anything. See
    /// [`RecvError::Disconnected`].
    pub fn declare(&self, end: End) {
        self.ends.note(end, &self.ctrl.lead.ends, self.peers);
    }

    /// Which lane of its mapping's endpoint records this queue uses
    /// (below [`MAX_LANES`](crate::peers::MAX_LANES); 0 by default):
    /// objects with several queues in one mapping, like a pipe's two
    /// rings, give each its own. Set it before the handle's first use.
    pub fn set_lane(&mut self, lane: u32) {
        self.ends.set_lane(lane);
    }

    /// Whether a send that finds no room and no live receiver fails with
    /// [`SendError::Disconnected`] (`true`) or keeps waiting for room
    /// (`false`, the default: a queue may outlive its consumers). Only a
    /// send that would block looks: one that finds room succeeds.
    pub fn fail_sends_without_receiver(mut self, on: bool) -> Self {
        self.ends.fail_sends = on;
        self
    }

    /// Whether the process a record's owner word names is dead on evidence.
    #[cold]
    fn holder_dead(&self, owner: u64) -> bool {
        u32::try_from(owner)
            .ok()
            .and_then(Token::from_raw)
            .is_some_and(|t| !crate::fault::claim_recovery_off() && self.peers.fate(t).is_dead())
    }

    /// Decodes and checks the header of the record at `pos`, which must lie
    /// entirely below `limit` and not cross the end of the ring.
    fn record(&self, pos: u64, limit: u64) -> Option<Rec> {
        // SYNC POINT: Acquire pairs with the Release stores of the header
        // in `WriteGrant::finish` (READY, SKIP), `ReadGrant::finish` and
        // [`SoleReceiver::take_at`](sole) (FREED): the payload behind it is
        // written / read out.
        let h = self.ring.header(pos).load(Ordering::Acquire);
        let len = h & 0xffff_ffff;
        let state = (h >> 32) & 3;
        let skip = h & SKIP != 0;
        if h >> TAG_SHIFT != (pos >> 3) & TAG_MASK || state == 0 || (!skip && len > self.max) {
            return None;
        }
        let size = record_size(len);
        if size > limit - pos || (pos & self.ring.mask) + size > self.cap {
            return None;
        }
        Some(Rec {
            len,
            state,
            skip,
            size,
        })
    }

    // -- writing ----------------------------------------------------------

    /// Under the writer lock: the writers' `head` and `tail` (without the
    /// closed bit), checked to hold together; `Closed` if the queue is.
    fn writer_positions(&self) -> Result<(u64, u64), SendError> {
        let w = &self.ctrl.writer;
        // Written only under the writer lock, which we hold, and by
        // `close`, whose bit we look at here (SYNC POINT: Acquire pairs
        // with its AcqRel) and again in the publishing compare-and-swap.
        let tail = w.tail.load(Ordering::Acquire);
        if tail & CLOSED != 0 {
            return Err(SendError::Closed);
        }
        // A close has begun and perhaps not finished (module docs,
        // "Closing"): we hold the side, so no light sole send can publish;
        // finish it. SYNC POINT: Acquire pairs with `close`'s stores.
        if w.closing.load(Ordering::Acquire) != 0 {
            self.set_closed();
            return Err(SendError::Closed);
        }
        // Only written under the writer lock, which we hold.
        let head = w.head.load(Ordering::Relaxed);
        if head > tail
            || tail - head > self.cap
            || tail > MAX_POS
            || (head | tail) & (ALIGN - 1) != 0
        {
            return Err(SendError::Corrupted);
        }
        Ok((head, tail))
    }

    /// Under the writer lock: the room for a record of `len` bytes, after
    /// `tail` and (if the record would cross the end of the ring) a skip
    /// record written there. Reclaims lazily: only when the free room
    /// falls below two of the largest records (or a blocked writer checks
    /// for dead readers), so that writers read the readers' `read` line
    /// and the freed headers once per batch of messages, not per message.
    /// Two are enough: a record and the skip record before it take less
    /// than two of the largest, so with that much room this one fits
    /// without reclaiming, and `Full` is only ever reported after a
    /// reclaim. Shared by [`ByteQueue::reserve_locked`] and the sole
    /// sender's send.
    pub(super) fn space_locked(&self, len: u64, check: bool) -> Result<Space, SendError> {
        let (mut head, tail) = self.writer_positions()?;
        if check || self.cap - (tail - head) < 2 * record_size(self.max) {
            head = self.reclaim(head, tail, check)?;
        }
        let (pad, size) = self.place(tail, len);
        if tail + pad + size - head > self.cap {
            return Err(SendError::Full);
        }
        if pad != 0 {
            self.ring
                .header(tail)
                .store(encode(tail, READY, pad - HEADER) | SKIP, Ordering::Relaxed);
        }
        Ok(Space {
            tail,
            pos: tail + pad,
            size,
        })
    }

    /// Publishes a writer's records up to `to` by moving `tail` from the
    /// value `tail` it read under the lock. A compare-and-swap, so that a
    /// close since then (which set `CLOSED` in the same word) makes it
    /// fail: then nothing was sent, and what was written beyond `tail` is
    /// never read.
    pub(super) fn publish_tail(&self, tail: u64, to: u64) -> Result<(), SendError> {
        // SYNC POINT: Release pairs with the Acquire load of `tail` in
        // [`ByteQueue::claim_locked`]: a reader that sees the new tail sees
        // the headers (and, for a sole send, the payload) written before.
        match self
            .ctrl
            .writer
            .tail
            .compare_exchange(tail, to, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(now) if now == tail | CLOSED => Err(SendError::Closed),
            Err(_) => Err(SendError::Corrupted),
        }
    }

    /// Under the writer lock: reclaims freed records, then reserves a
    /// record for `len` bytes. Returns its position.
    fn reserve_locked(&self, len: u64, check: bool) -> Result<u64, SendError> {
        let Space { tail, pos, size } = self.space_locked(len, check)?;
        self.ring
            .header(pos)
            .store(encode(pos, PENDING, len), Ordering::Relaxed);
        // Name ourselves, so that readers stuck behind this record can
        // tell whether we died before committing it.
        self.ring
            .header(pos + 8)
            .store(u64::from(self.peers.me().raw()), Ordering::Relaxed);
        // Nothing is reserved if a close came first (`publish_tail`).
        self.publish_tail(tail, pos + size)?;
        Ok(pos)
    }

    /// Under the writer lock, for [`reserve_locked`](Self::reserve_locked):
    /// moves `head` (read as `head`; `tail` as read there) over the freed
    /// and skip records below `read`, with `check` also freeing the
    /// records of dead readers. Returns the new `head`.
    fn reclaim(&self, mut head: u64, tail: u64, check: bool) -> Result<u64, SendError> {
        // SYNC POINT: Acquire pairs with the Release store of `read` in
        // `claim_locked` and in [`SoleReceiver::take_at`](sole) (which
        // stores FREED in the header first).
        let read = self.ctrl.reader.read.load(Ordering::Acquire);
        if head > read || read > tail || read & (ALIGN - 1) != 0 {
            return Err(SendError::Corrupted);
        }
        let start = head;
        // The last reader asked about, and whether it was dead.
        let mut asked = (0, false);
        // Bounded: every step advances by at least 16 bytes, up to `read`.
        while head < read {
            let rec = self.record(head, read).ok_or(SendError::Corrupted)?;
            match (rec.state, rec.skip) {
                (FREED, _) | (READY, true) => head += rec.size,
                (READY, false) if check => {
                    // Claimed (it is below `read`) and not yet released:
                    // is the reader that holds it alive?
                    // SYNC POINT: the owner word was written before the
                    // claim's Release store of `read`, which we acquired.
                    let owner = self.ring.header(head + 8).load(Ordering::Relaxed);
                    if asked.0 != owner || owner == 0 {
                        asked = (owner, self.holder_dead(owner));
                    }
                    if !asked.1 || !self.free_dead_reader(head, rec) {
                        break;
                    }
                    head += rec.size;
                }
                (READY, false) => break,
                _ => return Err(SendError::Corrupted),
            }
        }
        if head != start {
            self.ctrl.writer.head.store(head, Ordering::Relaxed);
        }
        Ok(head)
    }

    /// The reader that claimed the record at `pos` (a `READY` record
    /// below `read`) is dead: release the record for it. The message was
    /// being received; it is lost. Returns whether the header was still
    /// the one we decoded.
    #[cold]
    fn free_dead_reader(&self, pos: u64, rec: Rec) -> bool {
        // SYNC POINT: Release pairs with the Acquire header loads in
        // `record`, as in `ReadGrant::drop`; a compare-and-swap so that a
        // header that changed under us is left alone.
        self.ring
            .header(pos)
            .compare_exchange(
                encode(pos, READY, rec.len),
                encode(pos, FREED, rec.len),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    fn try_reserve_inner(
        &self,
        len: usize,
        wait: Wait<'_>,
        check: bool,
    ) -> Result<WriteGrant<'_, 'a, K>, SendError> {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
        if len as u64 > self.max {
            return Err(SendError::TooLarge);
        }
        let mut guard = take(&self.ctrl.writer.lock, self.peers, wait).map_err(lock_error_send)?;
        let pos = self.reserve_locked(len as u64, check);
        // After a takeover from a writer that died inside the section: every
        // state it can leave is consistent (see "Crashes" in the module
        // docs), so once `reserve_locked` has re-validated the positions
        // the section is sound again.
        if guard.owner_died() && pos != Err(SendError::Corrupted) {
            self.clear_sole_marks();
            guard.mark_consistent();
        }
        drop(guard);
        let pos = pos?;
        // Miri's weak-memory emulation crashes (an internal error, not a
        // finding) when an 8-byte word last written atomically, such as an
        // old record header, is partly overwritten non-atomically and then
        // written atomically again. Under Miri only, write the whole record
        // body once so that every word is overwritten whole.
        #[cfg(miri)]
        for k in 0..(record_size(len as u64) - HEADER) / 8 {
            // SAFETY: inside the record we just reserved.
            unsafe { self.ring.write(pos + HEADER + 8 * k, &[0; 8]) };
        }
        Ok(WriteGrant { q: self, pos, len })
    }

    /// Reserves room for a message of `len` bytes if there is room now.
    /// Fill it with [`WriteGrant::write_at`] and publish it with
    /// [`WriteGrant::commit`]; dropping the grant cancels it.
    ///
    /// Never sleeps: if another process is inside the writers' short
    /// critical section at this moment (or stopped, or died, there), this
    /// reports [`SendError::Full`], as for a full ring: there is no room
    /// *now*. The blocking and timed forms wait for the lock instead, within
    /// their deadline, and take it over from a holder that died.
    ///
    /// No room and every receiver gone, on a handle that
    /// [fails sends without a receiver](ByteQueue::fail_sends_without_receiver):
    /// [`SendError::Disconnected`].
    pub fn try_reserve(&self, len: usize) -> Result<WriteGrant<'_, 'a, K>, SendError> {
        self.reserve_woken(len, Wait::Never, false)
    }

    /// Reserves room for `len` bytes, sleeping while the queue is full.
    pub fn reserve(&self, len: usize) -> Result<WriteGrant<'_, 'a, K>, SendError> {
        self.reserve_until(len, None)
    }

    /// Reserves room for `len` bytes, waiting at most `timeout`.
    pub fn reserve_timeout(
        &self,
        len: usize,
        timeout: Duration,
    ) -> Result<WriteGrant<'_, 'a, K>, SendError> {
        match self.try_reserve(len) {
            Err(SendError::Full) => self.reserve_until(len, Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Reserves room for `len` bytes, waiting until `deadline` (forever if
    /// `None`).
    pub fn reserve_until(
        &self,
        len: usize,
        deadline: Option<&Deadline>,
    ) -> Result<WriteGrant<'_, 'a, K>, SendError> {
        match self.try_reserve_inner(len, Wait::Until(deadline), false) {
            Err(SendError::Full) => {}
            r => return r,
        }
        block_checked(
            &self.ctrl.not_full,
            self.wait,
            deadline,
            |check| match self.reserve_woken(len, Wait::Until(deadline), check) {
                Err(SendError::Full) => None,
                r => Some(r),
            },
        )
        .unwrap_or(Err(SendError::Timeout))
    }

    /// Only if asked to: is every receiver gone?
    fn reserve_woken(
        &self,
        len: usize,
        wait: Wait<'_>,
        check: bool,
    ) -> Result<WriteGrant<'_, 'a, K>, SendError> {
        match self.try_reserve_inner(len, wait, check) {
            Err(SendError::Full)
                if self.ends.fail_sends
                    && self
                        .ends
                        .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, check) =>
            {
                Err(SendError::Disconnected)
            }
            r => r,
        }
    }

    /// Copies `msg` in as one message if there is room now (never sleeps:
    /// see [`ByteQueue::try_reserve`]).
    pub fn try_send(&self, msg: &[u8]) -> Result<(), SendError> {
        let mut g = self.try_reserve(msg.len())?;
        g.fill(msg);
        g.commit_checked()
    }

    /// The attempt a blocked `send` makes after each wake (see
    /// [`ByteQueue::try_recv_woken`]): [`ByteQueue::try_send`], and on a
    /// full queue, if sends fail without a receiver, the check that one is
    /// left.
    pub fn try_send_woken(&self, msg: &[u8], check: bool) -> Result<(), SendError> {
        let mut g = self.reserve_woken(msg.len(), Wait::Never, check)?;
        g.fill(msg);
        g.commit_checked()
    }

    /// Copies `msg` in as one message, sleeping while the queue is full.
    pub fn send(&self, msg: &[u8]) -> Result<(), SendError> {
        self.send_until(msg, None)
    }

    /// Copies `msg` in, waiting at most `timeout` for room.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        let mut g = self.reserve_timeout(msg.len(), timeout)?;
        g.fill(msg);
        g.commit_checked()
    }

    /// Copies `msg` in, waiting for room until `deadline` (forever if
    /// `None`).
    pub fn send_until(&self, msg: &[u8], deadline: Option<&Deadline>) -> Result<(), SendError> {
        let mut g = self.reserve_until(msg.len(), deadline)?;
        g.fill(msg);
        g.commit_checked()
    }

    // -- reading ----------------------------------------------------------

    /// Under the reader lock: claims the next ready message, stepping over
    /// skip records. `room` refuses (without claiming) a message longer
    /// than it; so does [`Room::Peek`], which only looks.
    fn claim_locked(&self, room: Room, check: bool) -> Result<(u64, u64), RecvError> {
        let r = &self.ctrl.reader;
        let mut skipped = false;
        let mut dead_writer = false;
        let mut helped = false;
        let result = loop {
            // Only written under the reader lock, which we hold.
            let read = r.read.load(Ordering::Relaxed);
            // Ours, and (like `read`) only touched under the reader lock:
            // the tail some reader of this handle acquired before us.
            let seen = self.seen.load(Ordering::Relaxed);
            let fresh = !(read < seen && seen - read <= self.cap);
            let word = if fresh {
                // SYNC POINT: Acquire pairs with the Release
                // compare-and-swap of `tail` in [`ByteQueue::publish_tail`]
                // (from `reserve_locked` and a sole send: headers below it,
                // and a sole send's payload, are written) and with the
                // AcqRel `fetch_or` in `close`. Only when our copy says empty, so a reader that
                // keeps up loads the writers' line once per batch, not
                // per message; `Closed` is decided on a fresh load only.
                self.ctrl.writer.tail.load(Ordering::Acquire)
            } else {
                // The headers below `seen` are visible to us: the reader
                // that acquired them released the reader lock we hold.
                seen
            };
            let tail = word & !CLOSED;
            if read > tail
                || tail - read > self.cap
                || (read | tail) & (ALIGN - 1) != 0
                || tail > MAX_POS
            {
                break Err(RecvError::Corrupted);
            }
            if fresh {
                // Checked above: only a sound tail is kept.
                self.seen.store(tail, Ordering::Relaxed);
            }
            if read == tail
                && word & CLOSED == 0
                && !helped
                && self.ctrl.writer.closing.load(Ordering::Relaxed) != 0
            {
                // A close has begun but not set the bit: help it finish
                // (module docs, "Closing"), once, and look again.
                helped = true;
                self.finish_close();
                continue;
            }
            if read == tail {
                // Closed and drained only if the close froze `tail` here:
                // no reservation takes effect after it, and every one
                // before it has been claimed (or skipped).
                break Err(if word & CLOSED != 0 {
                    RecvError::Closed
                } else {
                    RecvError::Empty
                });
            }
            let Some(rec) = self.record(read, tail) else {
                break Err(RecvError::Corrupted);
            };
            match (rec.state, rec.skip) {
                (PENDING, false) if check && self.skip_dead_writer(read, rec) => {
                    skipped = true;
                    dead_writer = true;
                    // SYNC POINT: as below.
                    r.read.store(read + rec.size, Ordering::Release);
                }
                (PENDING, false) => break Err(RecvError::Empty),
                (FREED, false) => {
                    // Only a sole receiver killed between its `FREED`
                    // store and its store of `read` leaves this (a shared
                    // claim advances `read` before the release): the
                    // message was not taken, and writers reclaim only
                    // below `read`, so its bytes are intact. Deliver it
                    // (module docs of [`sole`], "A sole receive"). We hold the reader
                    // lock, the only one that touches the record at
                    // `read`; look again, now at a READY record.
                    self.ring
                        .header(read)
                        .store(encode(read, READY, rec.len), Ordering::Relaxed);
                    continue;
                }
                (READY, true) => {
                    skipped = true;
                    // SYNC POINT: Release pairs with the Acquire load of
                    // `read` in `reserve_locked`.
                    r.read.store(read + rec.size, Ordering::Release);
                    // Bounded: each step advances `read` towards `tail`,
                    // which is at most `capacity` ahead.
                }
                (READY, false) => {
                    match room {
                        Room::Any => {}
                        Room::Upto(room) if rec.len <= room as u64 => {}
                        Room::Upto(_) => break Err(RecvError::BufferTooSmall(rec.len as usize)),
                        Room::Peek => break Ok((read, rec.len)),
                    }
                    // Name ourselves as the record's holder, so that
                    // writers can release it if we die holding it.
                    self.ring
                        .header(read + 8)
                        .store(u64::from(self.peers.me().raw()), Ordering::Relaxed);
                    // SYNC POINT: as above; also publishes the owner word
                    // to writers, who read it after acquiring `read`.
                    r.read.store(read + rec.size, Ordering::Release);
                    break Ok((read, rec.len));
                }
                _ => break Err(RecvError::Corrupted),
            }
        };
        if skipped {
            // Skipped records become reclaimable: a writer may be waiting.
            self.ctrl.not_full.notify_light();
        }
        if dead_writer {
            // Messages committed behind the dead writer's record woke
            // readers that found that record first and slept again; with
            // it gone they must look again, or they would sleep until
            // their own next owner check (core/tests/loom_claim_death.rs).
            self.ctrl.not_empty.wake_all();
        }
        result
    }

    /// The record at `pos` is `PENDING`: if the writer that reserved it is
    /// dead, turn it into a skip record (the message was never sent).
    /// Returns whether it did.
    #[cold]
    fn skip_dead_writer(&self, pos: u64, rec: Rec) -> bool {
        // SYNC POINT: the owner word was written before the Release store
        // of `tail` that made this record visible, which we acquired.
        let owner = self.ring.header(pos + 8).load(Ordering::Relaxed);
        if !self.holder_dead(owner) {
            return false;
        }
        // A compare-and-swap: if the writer committed just before it died,
        // the message is delivered, not skipped.
        // SYNC POINT: Release pairs with the Acquire header loads in
        // `record` (the writers' reclaiming loop).
        self.ring
            .header(pos)
            .compare_exchange(
                encode(pos, PENDING, rec.len),
                encode(pos, READY, rec.len) | SKIP,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    fn try_claim(&self, room: Room, wait: Wait<'_>, check: bool) -> Result<(u64, u64), RecvError> {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
        let mut guard = take(&self.ctrl.reader.lock, self.peers, wait).map_err(lock_error_recv)?;
        let r = self.claim_locked(room, check);
        // After a takeover from a reader that died inside the section: as
        // for writers, every state it can leave is consistent, and
        // `claim_locked` has just re-validated the positions.
        if guard.owner_died() && r != Err(RecvError::Corrupted) {
            guard.mark_consistent();
        }
        drop(guard);
        r
    }

    fn claim_until(
        &self,
        room: Room,
        deadline: Option<&Deadline>,
    ) -> Result<(u64, u64), RecvError> {
        match self.try_claim(room, Wait::Until(deadline), false) {
            Err(RecvError::Empty) => {}
            r => return r,
        }
        block_checked(
            &self.ctrl.not_empty,
            self.wait,
            deadline,
            |check| match self.claim_woken(room, Wait::Until(deadline), check) {
                Err(RecvError::Empty) => None,
                r => Some(r),
            },
        )
        .unwrap_or(Err(RecvError::Timeout))
    }

    /// Before sleeping, after a departure and at each owner check: are the
    /// senders all gone? Then look once more (a last message is published
    /// before its sender leaves), dead writers skipped.
    fn claim_woken(
        &self,
        room: Room,
        wait: Wait<'_>,
        check: bool,
    ) -> Result<(u64, u64), RecvError> {
        match self.try_claim(room, wait, check) {
            Err(RecvError::Empty)
                if self
                    .ends
                    .gone(End::Sender, &self.ctrl.lead.ends, self.peers, check) =>
            {
                match self.try_claim(room, wait, true) {
                    Err(RecvError::Empty) => Err(RecvError::Disconnected),
                    r => r,
                }
            }
            r => r,
        }
    }

    fn grant(&self, (pos, len): (u64, u64)) -> ReadGrant<'_, 'a, K> {
        ReadGrant {
            q: self,
            pos,
            len: len as usize,
        }
    }

    /// Borrows the next message if one is ready now. Read it with
    /// [`ReadGrant::read_at`]; dropping the grant releases its space.
    ///
    /// Never sleeps: if another process is inside the readers' short
    /// critical section at this moment (or stopped, or died, there), this
    /// reports [`RecvError::Empty`]: nothing can be taken *now*. The
    /// blocking and timed forms wait for the lock instead, within their
    /// deadline, and take it over from a holder that died.
    ///
    /// Nothing to take and every sender gone (end-of-stream,
    /// `queue/ends.rs`): [`RecvError::Disconnected`].
    pub fn try_recv(&self) -> Result<ReadGrant<'_, 'a, K>, RecvError> {
        self.claim_woken(Room::Any, Wait::Never, false)
            .map(|c| self.grant(c))
    }

    /// The attempt a blocked `recv` makes after each wake, for waiters
    /// outside the blocking calls (the async forms): [`ByteQueue::try_recv`],
    /// and on an empty queue the end-of-stream check
    /// ([`RecvError::Disconnected`] once every sender has gone). With
    /// `check` (what a blocked `recv` does once per
    /// [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL)), it
    /// first gets past a writer or reader that died mid-way, and looks for
    /// dead senders even if none has left. Never sleeps;
    /// [`RecvError::Empty`] means "wait and try again".
    pub fn try_recv_woken(&self, check: bool) -> Result<ReadGrant<'_, 'a, K>, RecvError> {
        self.claim_woken(Room::Any, Wait::Never, check)
            .map(|c| self.grant(c))
    }

    /// Borrows the next message, sleeping while there is none.
    pub fn recv(&self) -> Result<ReadGrant<'_, 'a, K>, RecvError> {
        self.recv_until(None)
    }

    /// Borrows the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<ReadGrant<'_, 'a, K>, RecvError> {
        match self.try_recv() {
            Err(RecvError::Empty) => self.recv_until(Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Borrows the next message, waiting until `deadline` (forever if
    /// `None`).
    pub fn recv_until(
        &self,
        deadline: Option<&Deadline>,
    ) -> Result<ReadGrant<'_, 'a, K>, RecvError> {
        self.claim_until(Room::Any, deadline).map(|c| self.grant(c))
    }

    /// Copies the claimed message into `buf` and releases it; `Corrupted`
    /// if the record was taken from us meanwhile (see
    /// [`ReadGrant::release_checked`]): the bytes copied may be torn.
    fn copy_out(&self, claim: (u64, u64), buf: &mut [u8]) -> Result<usize, RecvError> {
        let g = self.grant(claim);
        let n = g.len;
        // `claim_locked` refused messages longer than `buf`.
        g.copy_to(buf);
        g.release_checked()?;
        Ok(n)
    }

    /// Copies the next message into `buf` if one is ready now; returns its
    /// length. A message longer than `buf` stays in the queue
    /// ([`RecvError::BufferTooSmall`]). Never sleeps (see
    /// [`ByteQueue::try_recv`]).
    pub fn try_recv_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let c = self.claim_woken(Room::Upto(buf.len()), Wait::Never, false)?;
        self.copy_out(c, buf)
    }

    /// Copies the next message into `buf`, sleeping while there is none.
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_into_until(buf, None)
    }

    /// Copies the next message into `buf`, waiting at most `timeout`.
    pub fn recv_into_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, RecvError> {
        match self.try_recv_into(buf) {
            Err(RecvError::Empty) => self.recv_into_until(buf, Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Copies the next message into `buf`, waiting until `deadline`
    /// (forever if `None`).
    pub fn recv_into_until(
        &self,
        buf: &mut [u8],
        deadline: Option<&Deadline>,
    ) -> Result<usize, RecvError> {
        let c = self.claim_until(Room::Upto(buf.len()), deadline)?;
        self.copy_out(c, buf)
    }

    /// The length of the next message if one is ready now, without taking
    /// it: [`RecvError::Empty`] if none is (or the readers' lock is held at
    /// this moment, see [`ByteQueue::try_recv`]), [`RecvError::Closed`] once
    /// the queue is closed and drained. Another consumer may take the
    /// message before this caller receives it.
    pub fn try_poll(&self) -> Result<usize, RecvError> {
        self.claim_woken(Room::Peek, Wait::Never, false)
            .map(|(_, len)| len as usize)
    }

    /// Waits at most `timeout` for a message to be ready (see
    /// [`ByteQueue::try_poll`]); [`RecvError::Timeout`] if none came.
    pub fn poll_timeout(&self, timeout: Duration) -> Result<usize, RecvError> {
        match self.try_poll() {
            Err(RecvError::Empty) => self.poll_until(Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Waits until `deadline` (forever if `None`) for a message to be ready
    /// (see [`ByteQueue::try_poll`]).
    pub fn poll_until(&self, deadline: Option<&Deadline>) -> Result<usize, RecvError> {
        self.claim_until(Room::Peek, deadline)
            .map(|(_, len)| len as usize)
    }
}

/// For waiters on many objects (`crate::waitable`, `shmipc::wait`): whether
/// a `try_` call would succeed or give a final answer now, and the owner
/// check a blocked call makes, without taking or sending a message. Each
/// takes the side's lock once, never spinning or sleeping on it: held by
/// someone else, the answer is [`Readiness::Busy`].
impl<K> ByteQueue<'_, K> {
    /// Whether [`ByteQueue::try_recv`] would return a message or a final
    /// answer now: a committed record at the read position (not merely a
    /// reserved one: a writer that died before committing leaves one that
    /// `try_recv` reads as empty), or closed and drained, or every sender
    /// gone (end-of-stream).
    pub fn recv_ready(&self) -> Readiness {
        match self.peek_locked(false) {
            Some(Err(RecvError::Empty)) => Readiness::from(self.ends.gone(
                End::Sender,
                &self.ctrl.lead.ends,
                self.peers,
                false,
            )),
            None => Readiness::Busy,
            Some(_) => Readiness::Ready,
        }
    }

    /// Whether [`ByteQueue::try_send`] of a message of the largest size
    /// would succeed or give a final answer now: room for it once freed
    /// records are reclaimed, or closed, or (with
    /// [`fail_sends_without_receiver`](ByteQueue::fail_sends_without_receiver))
    /// every receiver gone. A smaller message may fit earlier.
    pub fn send_ready(&self) -> Readiness {
        match self.room_for_max(false) {
            Some(Ok(true)) => Readiness::Ready,
            Some(Ok(false)) => Readiness::from(
                self.ends.fail_sends
                    && self
                        .ends
                        .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, false),
            ),
            None => Readiness::Busy,
            Some(Err(_)) => Readiness::Ready,
        }
    }

    /// The owner check a blocked `recv` makes once per
    /// [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL), without
    /// receiving: skips the record at the read position if the writer
    /// that reserved it died before committing, and scans for live senders
    /// (so that `recv_ready` and `try_recv` see end-of-stream after a
    /// death).
    pub fn recv_owner_check(&self) {
        let _ = self
            .ends
            .gone(End::Sender, &self.ctrl.lead.ends, self.peers, true);
        let _ = self.peek_locked(true);
    }

    /// The owner check a blocked `send` makes, without sending: frees the
    /// records of readers that died holding them, and (with
    /// `fail_sends_without_receiver`) scans for live receivers.
    pub fn send_owner_check(&self) {
        if self.ends.fail_sends {
            let _ = self
                .ends
                .gone(End::Receiver, &self.ctrl.lead.ends, self.peers, true);
        }
        let _ = self.room_for_max(true);
    }

    /// One try of a side's `lock`, never waiting; with `check` (an owner
    /// check), a holder that died is taken over, as a blocked call takes
    /// it over at its owner check.
    fn side_lock<'l>(&self, lock: &'l Lock, check: bool) -> Result<LockGuard<'l>, LockError> {
        match lock.try_lock_with(self.peers) {
            Err(LockError::WouldBlock) if check => lock.try_lock_checked(),
            r => r,
        }
    }

    /// One try of the readers' lock, then a peek at the next message (with
    /// `check`, past a dead writer's record, and past a dead holder of the
    /// lock); `None` if the lock is held.
    fn peek_locked(&self, check: bool) -> Option<Result<(u64, u64), RecvError>> {
        let mut guard = match self.side_lock(&self.ctrl.reader.lock, check) {
            Ok(g) => g,
            Err(LockError::WouldBlock) => return None,
            Err(e) => return Some(Err(lock_error_recv(e))),
        };
        let r = self.claim_locked(Room::Peek, check);
        // As in `try_claim`: the positions are re-validated.
        if guard.owner_died() && r != Err(RecvError::Corrupted) {
            guard.mark_consistent();
        }
        Some(r)
    }

    /// One try of the writers' lock, then: would a message of the largest
    /// size fit once freed records are reclaimed (with `check`, also those
    /// of dead readers)? `None` if the lock is held. Reclaims as a
    /// reservation does (the same steps as `reserve_locked`, which this
    /// leaves alone), reserving nothing.
    fn room_for_max(&self, check: bool) -> Option<Result<bool, SendError>> {
        let mut guard = match self.side_lock(&self.ctrl.writer.lock, check) {
            Ok(g) => g,
            Err(LockError::WouldBlock) => return None,
            Err(e) => return Some(Err(lock_error_send(e))),
        };
        let r = self.room_locked(self.max, check);
        if guard.owner_died() && r != Err(SendError::Corrupted) {
            self.clear_sole_marks();
            guard.mark_consistent();
        }
        Some(r)
    }

    /// Under the writer lock: reclaims freed records, then says whether a
    /// record for `len` bytes fits (`Closed` if the queue is closed).
    fn room_locked(&self, len: u64, check: bool) -> Result<bool, SendError> {
        let (start, tail) = self.writer_positions()?;
        let head = self.reclaim(start, tail, check)?;
        if head != start {
            // Freed room: writers asleep may now fit.
            self.ctrl.not_full.notify_light();
        }
        let (pad, size) = self.place(tail, len);
        Ok(tail + pad + size - head <= self.cap)
    }

    /// A record of `len` bytes written at `tail`: the skip padding before
    /// it (the room left to the end of the ring, if the record would cross
    /// it; else 0) and its size.
    fn place(&self, tail: u64, len: u64) -> (u64, u64) {
        let size = record_size(len);
        let room_to_end = self.cap - (tail & self.ring.mask);
        (if size > room_to_end { room_to_end } else { 0 }, size)
    }
}

/// Where a writer's next record goes ([`ByteQueue::space_locked`]).
pub(super) struct Space {
    /// `tail` as read under the writers' lock.
    pub(super) tail: u64,
    /// The record's position: `tail`, or past the skip record.
    pub(super) pos: u64,
    /// The record's size, header and padding included.
    pub(super) size: u64,
}

/// What a claim may take: any message, one that fits a buffer, or none
/// (a peek, which reports the next message's length).
#[derive(Clone, Copy)]
enum Room {
    Any,
    Upto(usize),
    Peek,
}

/// Room for one message, reserved in the ring. Fill it, then
/// [`commit`](WriteGrant::commit); dropping it uncommitted cancels it (the
/// record becomes a skip that readers step over).
#[must_use = "dropping a grant cancels the message"]
pub struct WriteGrant<'q, 'a, K = Keep> {
    q: &'q ByteQueue<'a, K>,
    /// Position of the record's header.
    pos: u64,
    len: usize,
}

impl<K> WriteGrant<'_, '_, K> {
    /// The message's length, as reserved.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `src` into the message at `offset`.
    pub fn write_at(&mut self, offset: usize, src: &[u8]) -> Result<(), OutOfBounds> {
        match offset.checked_add(src.len()) {
            Some(end) if end <= self.len => {}
            _ => return Err(OutOfBounds),
        }
        // SAFETY: the range is inside our reserved record, which does not
        // cross the end of the ring.
        unsafe { self.q.ring.write(self.pos + HEADER + offset as u64, src) };
        Ok(())
    }

    /// Copies the whole message in, and zeroes the padding after it, so
    /// that every 8-byte word of the record is written whole (no stale bytes
    /// of an older message linger in the padding).
    fn fill(&mut self, src: &[u8]) {
        let pad = record_size(self.len as u64) - HEADER - self.len as u64;
        debug_assert!(pad < ALIGN);
        // SAFETY: `src.len() == self.len`; the message and its padding lie
        // inside our reserved record.
        unsafe {
            self.q.ring.write(self.pos + HEADER, src);
            self.q.ring.write(
                self.pos + HEADER + self.len as u64,
                &[0; 16][..pad as usize],
            );
        }
    }

    /// A raw pointer to the message's first byte, for filling it in place.
    /// Writing `len()` bytes from it is sound as long as the grant lives;
    /// never create a reference to these bytes if another process could
    /// write them (a hostile peer can write anywhere in shared memory).
    #[cfg(not(loom))]
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.q.ring.ptr(self.pos + HEADER)
    }

    /// Turns our `PENDING` record into a `READY` one (`state` 0) or a skip
    /// (`SKIP`). A compare-and-swap from the header we wrote, not a store:
    /// if a reader judged us dead and turned the record into a skip
    /// meanwhile (which takes forged peer bookkeeping), the record is no
    /// longer ours and we leave it alone. Returns whether it was ours.
    fn finish(&self, state: u64) -> bool {
        // SYNC POINT: Release pairs with the Acquire load of the header in
        // `ByteQueue::record` (via `claim_locked`): the payload is in place
        // before the record reads READY.
        let ours = self
            .q
            .ring
            .header(self.pos)
            .compare_exchange(
                encode(self.pos, PENDING, self.len as u64),
                encode(self.pos, READY, self.len as u64) | state,
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok();
        self.q.ctrl.not_empty.notify_light();
        ours
    }

    /// Publishes the message.
    ///
    /// If this process was judged dead while it held the grant (which takes
    /// forged peer bookkeeping: judgements are made on evidence) and a
    /// reader skipped the record, the message is not delivered; use
    /// [`commit_checked`](WriteGrant::commit_checked) to be told.
    pub fn commit(self) {
        let _ = self.commit_checked();
    }

    /// Publishes the message, or fails with [`SendError::Corrupted`] if
    /// the record was no longer ours to publish (see
    /// [`commit`](WriteGrant::commit)): the message is then not delivered.
    pub fn commit_checked(self) -> Result<(), SendError> {
        let ours = self.finish(0);
        core::mem::forget(self);
        if ours {
            Ok(())
        } else {
            Err(SendError::Corrupted)
        }
    }
}

impl<K> Drop for WriteGrant<'_, '_, K> {
    fn drop(&mut self) {
        self.finish(SKIP);
    }
}

impl<K> fmt::Debug for WriteGrant<'_, '_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteGrant")
            .field("len", &self.len)
            .finish()
    }
}

/// A message borrowed from the ring. Read it with
/// [`read_at`](ReadGrant::read_at) or [`copy_to`](ReadGrant::copy_to);
/// dropping (or [`release`](ReadGrant::release)-ing) the grant gives its
/// space back.
#[must_use = "dropping a grant releases the message unread"]
pub struct ReadGrant<'q, 'a, K = Keep> {
    q: &'q ByteQueue<'a, K>,
    pos: u64,
    len: usize,
}

impl<K> ReadGrant<'_, '_, K> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `dst.len()` bytes of the message from `offset` into `dst`.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), OutOfBounds> {
        match offset.checked_add(dst.len()) {
            Some(end) if end <= self.len => {}
            _ => return Err(OutOfBounds),
        }
        // SAFETY: the range is inside our claimed record, which does not
        // cross the end of the ring.
        unsafe { self.q.ring.read(self.pos + HEADER + offset as u64, dst) };
        Ok(())
    }

    /// Copies as much of the message as fits into `dst`; returns how much.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = self.len.min(dst.len());
        // SAFETY: the first n bytes of our claimed record.
        unsafe { self.q.ring.read(self.pos + HEADER, &mut dst[..n]) };
        n
    }

    /// A raw pointer to the message's first byte, for reading in place.
    /// Reading `len()` bytes from it is sound as long as the grant lives;
    /// prefer copying: a reference to shared bytes is unsound if a hostile
    /// process could write them meanwhile.
    #[cfg(not(loom))]
    pub fn as_ptr(&self) -> *const u8 {
        self.q.ring.ptr(self.pos + HEADER)
    }

    /// Gives the message's space back (the same as dropping the grant).
    pub fn release(self) {}

    /// Gives the message's space back, or fails with
    /// [`RecvError::Corrupted`] if it had been taken from us already: a
    /// writer judged this process dead (which takes forged peer
    /// bookkeeping) and freed the record, so the bytes read from it may
    /// have been overwritten meanwhile and must not be trusted.
    pub fn release_checked(self) -> Result<(), RecvError> {
        let ours = self.finish();
        core::mem::forget(self);
        if ours {
            Ok(())
        } else {
            Err(RecvError::Corrupted)
        }
    }

    /// Marks our `READY` record `FREED`: a compare-and-swap from the header
    /// we claimed, not a store, so that a record a writer freed for us (and
    /// perhaps reused) is left alone. Returns whether it was still ours.
    fn finish(&self) -> bool {
        // SYNC POINT: Release pairs with the Acquire header load in
        // `ByteQueue::record` (via `reserve_locked`): our copies out are
        // finished before a writer reuses the bytes.
        let ours = self
            .q
            .ring
            .header(self.pos)
            .compare_exchange(
                encode(self.pos, READY, self.len as u64),
                encode(self.pos, FREED, self.len as u64),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok();
        self.q.ctrl.not_full.notify_light();
        ours
    }
}

impl<K> Drop for ReadGrant<'_, '_, K> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<K> fmt::Debug for ReadGrant<'_, '_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadGrant").field("len", &self.len).finish()
    }
}

/// For waiters on many objects (`crate::waitable`): the signals readers and
/// writers sleep on.
#[cfg_attr(loom, allow(dead_code))]
impl<K> ByteQueue<'_, K> {
    pub(crate) fn readable_signal(&self) -> &Signal {
        &self.ctrl.not_empty
    }

    /// [`Arm::check_may_help`](crate::waitable::Arm::check_may_help) for
    /// a receive, read from the control block alone.
    #[cfg(not(loom))]
    pub(crate) fn recv_hint(&self) -> crate::waitable::Hint {
        crate::waitable::Hint::new(self.ctrl, Control::recv_check_may_help)
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
    use std::vec;
    use std::vec::Vec;

    pub(super) fn buf(config: BytesConfig) -> AlignedBuf {
        AlignedBuf::for_layout(ByteQueue::layout(config).unwrap())
    }

    /// A message that carries its own check: id, length, then bytes derived
    /// from both.
    pub(super) fn make(id: u64, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len.max(8)];
        m[..8].copy_from_slice(&id.to_le_bytes());
        for (i, b) in m.iter_mut().enumerate().skip(8) {
            *b = (id as usize).wrapping_mul(31).wrapping_add(i * 7) as u8;
        }
        m
    }

    pub(super) fn check(m: &[u8]) -> u64 {
        let id = u64::from_le_bytes(m[..8].try_into().unwrap());
        assert_eq!(m, make(id, m.len()), "torn or corrupted message {id}");
        id
    }

    /// Writes 0x5a over every byte of the control block at `base` that no
    /// field holds, as a peer may.
    fn scribble_padding(base: *mut u8) {
        crate::queue::testbuf::scribble_control_padding!(
            base,
            lead { header, ends },
            writer,
            reader,
            not_empty,
            not_full
        );
    }

    /// As the MPMC test of the same name: a peer writing the control
    /// block's padding is no undefined behaviour, through the shared calls
    /// and the sole handles (Miri checks this test).
    #[test]
    fn a_peer_writing_the_control_blocks_padding_is_no_undefined_behaviour() {
        let config = BytesConfig::new(1024, 64);
        let b = buf(config);
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q = unsafe { ByteQueue::init_at(b.as_mut_ptr(), b.len(), config) }.unwrap();
        q.try_send(&make(1, 16)).unwrap();
        scribble_padding(b.as_mut_ptr());
        let mut out = [0u8; 64];
        q.try_send(&make(2, 16)).unwrap();
        let n = q.try_recv_into(&mut out).unwrap();
        assert_eq!(check(&out[..n]), 1);
        {
            let (mut tx, mut rx) = (q.sole_sender().unwrap(), q.sole_receiver().unwrap());
            tx.try_send(&make(3, 24)).unwrap();
            for id in [2, 3] {
                let n = rx.try_recv_into(&mut out).unwrap();
                assert_eq!(check(&out[..n]), id);
            }
        }
        q.close();
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Closed));
    }

    /// As above, with the writes made while a receiver sleeps in a
    /// blocking receive, so inside calls that hold references into the
    /// block (Miri checks this test).
    #[test]
    fn a_peer_writing_the_padding_during_a_blocking_receive_is_no_undefined_behaviour() {
        let config = BytesConfig::new(1024, 64);
        let b = buf(config);
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q = unsafe { ByteQueue::init_at(b.as_mut_ptr(), b.len(), config) }.unwrap();
        // Through the shared calls, then through the sole handles (a sole
        // receiver asleep, a sole sender waking it).
        for (sole, id) in [(false, 7), (true, 8)] {
            std::thread::scope(|s| {
                let receiver = s.spawn(|| {
                    let mut out = [0u8; 64];
                    let n = if sole {
                        q.sole_receiver().unwrap().recv_into(&mut out).unwrap()
                    } else {
                        q.recv_into(&mut out).unwrap()
                    };
                    check(&out[..n])
                });
                for _ in 0..4 {
                    std::thread::sleep(core::time::Duration::from_millis(5));
                    scribble_padding(b.as_mut_ptr());
                }
                if sole {
                    q.sole_sender().unwrap().send(&make(id, 16)).unwrap();
                } else {
                    q.send(&make(id, 16)).unwrap();
                }
                assert_eq!(receiver.join().unwrap(), id);
            });
        }
    }

    #[test]
    fn record_of_decodes_headers_and_refuses_stale_ones() {
        let t = Token::new(3, 1).unwrap();
        let mut h = [0u8; RECORD_HEADER];
        let set = |h: &mut [u8; RECORD_HEADER], word: u64, owner: u64| {
            h[..8].copy_from_slice(&word.to_ne_bytes());
            h[8..].copy_from_slice(&owner.to_ne_bytes());
        };
        set(&mut h, encode(64, PENDING, 40), u64::from(t.raw()));
        assert_eq!(
            record_of(&h, 64, 100),
            Some(RecordInfo {
                len: 40,
                state: RecordState::Pending,
                skip: false,
                size: 64,
                token: Some(t),
            })
        );
        // At another position (a stale header), too long, no state, short.
        assert_eq!(record_of(&h, 128, 100), None);
        assert_eq!(record_of(&h, 64, 39), None);
        set(&mut h, encode(64, 0, 40), 0);
        assert_eq!(record_of(&h, 64, 100), None);
        assert_eq!(record_of(&h[..8], 64, 100), None);
        // A skip record may cover more than the largest message.
        set(&mut h, encode(64, READY, 200) | SKIP, 0);
        let r = record_of(&h, 64, 100).unwrap();
        assert!(r.skip && r.token.is_none() && r.size == 224);
        // Hostile headers never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            set(&mut h, x, x.rotate_left(17));
            let _ = record_of(&h, x.rotate_left(3), x % 1000);
        }
    }

    #[test]
    fn config_checks() {
        for c in [
            BytesConfig::new(0, 0),
            BytesConfig::new(32, 0),
            BytesConfig::new(1000, 10),
            BytesConfig::new(128, 57),
            BytesConfig::new(1 << 40, 8),
            BytesConfig::new(1 << 32, 8),
        ] {
            assert!(
                matches!(ByteQueue::layout(c), Err(LayoutError::Parameter { .. })),
                "{c:?}"
            );
        }
        assert!(ByteQueue::layout(BytesConfig::new(128, 48)).is_ok());
        assert!(ByteQueue::layout(BytesConfig::new(128, 49)).is_err());
        let c = BytesConfig::for_max_message(64 * 1024).unwrap();
        assert_eq!(c.capacity, 256 * 1024);
        assert_eq!(BytesConfig::from_words(c.to_words()), Ok(c));
        assert!(BytesConfig::from_words([128, 8, 1, 0]).is_err());
    }

    #[test]
    fn notifiers_use_the_light_path_where_the_kernel_allows() {
        // Whether the kernel offers heavy barriers (registering is
        // idempotent; the queue's attach registers too).
        let supported = crate::membarrier::register();
        let cfg = BytesConfig::new(256, 100);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        assert_eq!(q.ctrl.not_empty.is_light(), supported, "not_empty");
        assert_eq!(q.ctrl.not_full.is_light(), supported, "not_full");
        assert_eq!(q.light_notify(), supported);
    }

    #[test]
    fn message_counts_are_sent_minus_taken_clamped_at_zero() {
        let cfg = BytesConfig::new(256, 100);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        assert_eq!(q.messages_sent_minus_taken(), 0);
        q.count_sent();
        q.count_sent();
        q.count_taken();
        assert_eq!(q.messages_sent_minus_taken(), 1);
        q.count_taken();
        q.count_taken();
        assert_eq!(q.messages_sent_minus_taken(), 0, "more taken than sent");
    }

    #[test]
    fn send_recv_and_sizes() {
        let cfg = BytesConfig::new(256, 100);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        assert_eq!(q.try_recv().err(), Some(RecvError::Empty));
        q.send(b"").unwrap();
        q.send(b"0123456789").unwrap();
        assert_eq!(q.send(&[0; 101]), Err(SendError::TooLarge));
        let mut small = [0u8; 4];
        assert_eq!(q.recv_into(&mut small), Ok(0));
        assert_eq!(q.recv_into(&mut small), Err(RecvError::BufferTooSmall(10)));
        let mut big = [0u8; 16];
        assert_eq!(q.recv_into(&mut big), Ok(10));
        assert_eq!(&big[..10], b"0123456789");
        assert!(q.is_empty());
    }

    #[test]
    fn poll_reports_the_next_length_without_taking_it() {
        let cfg = BytesConfig::new(256, 100);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        assert_eq!(q.try_poll(), Err(RecvError::Empty));
        assert_eq!(
            q.poll_timeout(Duration::from_millis(1)),
            Err(RecvError::Timeout)
        );
        // A cancelled reservation is never reported.
        drop(q.reserve(5).unwrap());
        assert_eq!(q.try_poll(), Err(RecvError::Empty));
        q.send(b"abc").unwrap();
        q.send(b"").unwrap();
        assert_eq!(q.try_poll(), Ok(3));
        assert_eq!(q.poll_until(None), Ok(3), "polling twice takes nothing");
        let mut out = [0u8; 8];
        assert_eq!(q.recv_into(&mut out), Ok(3));
        assert_eq!(q.try_poll(), Ok(0));
        q.close();
        assert_eq!(q.try_poll(), Ok(0), "closed, but not drained");
        assert_eq!(q.recv_into(&mut out), Ok(0));
        assert_eq!(q.try_poll(), Err(RecvError::Closed));
        assert_eq!(q.poll_until(None), Err(RecvError::Closed));
    }

    #[test]
    fn wraps_with_skip_records() {
        let cfg = BytesConfig::new(256, 100);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut out = [0u8; 100];
        let rounds = if cfg!(miri) { 60 } else { 2000 };
        let mut id = 0u64;
        for r in 0..rounds {
            // Up to three messages in flight, of lengths that do not divide
            // the ring, so records land everywhere and skips are needed.
            let k = 1 + r % 3;
            let mut sent = 0;
            for j in 0..k {
                let len = 8 + (r * 13 + j * 29) % 93;
                match q.try_send(&make(id + sent, len)) {
                    Ok(()) => sent += 1,
                    Err(SendError::Full) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            for _ in 0..sent {
                let n = q.try_recv_into(&mut out).unwrap();
                assert_eq!(check(&out[..n]), id);
                id += 1;
            }
        }
        assert!(id > rounds as u64);
        // Everything is reclaimed by the next reservation.
        q.send(b"x").unwrap();
        assert!(q.used_bytes() <= 16 + 256 / 2);
    }

    #[test]
    fn zero_copy_out_of_order_commit_and_cancel() {
        let cfg = BytesConfig::new(512, 64);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut a = q.try_reserve(5).unwrap();
        let mut c = q.try_reserve(3).unwrap();
        let d = q.try_reserve(7).unwrap();
        assert_eq!(a.write_at(3, b"xyz"), Err(OutOfBounds));
        c.write_at(0, b"ccc").unwrap();
        c.commit();
        // `a` is still pending: nothing may be delivered past it.
        assert_eq!(q.try_recv().err(), Some(RecvError::Empty));
        a.write_at(0, b"aaaaa").unwrap();
        a.commit();
        drop(d); // cancelled: becomes a skip
        let m1 = q.try_recv().unwrap();
        let m2 = q.try_recv().unwrap();
        assert_eq!(q.try_recv().err(), Some(RecvError::Empty));
        let mut x = [0u8; 5];
        m1.read_at(0, &mut x).unwrap();
        assert_eq!(&x, b"aaaaa");
        assert_eq!(m2.len(), 3);
        assert_eq!(m2.read_at(1, &mut x[..3]), Err(OutOfBounds));
        // Release out of order; space comes back once both are released.
        drop(m2);
        m1.release();
        for _ in 0..20 {
            q.send(&[1; 64]).unwrap();
            assert_eq!(q.recv().unwrap().len(), 64);
        }
    }

    #[test]
    fn large_messages() {
        let max = if cfg!(miri) { 3000 } else { 70_000 };
        let cfg = BytesConfig::for_max_message(max).unwrap();
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut out = vec![0u8; max];
        for i in 0..5u64 {
            let m = make(i, max - i as usize * 7);
            q.send(&m).unwrap();
            let n = q.recv_into(&mut out).unwrap();
            assert_eq!(check(&out[..n]), i);
        }
    }

    #[test]
    fn many_producers_many_consumers() {
        let producers = 3u64;
        let consumers = 3;
        let per = if cfg!(miri) { 25 } else { 20_000 };
        let cfg = BytesConfig::new(1024, 200);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut seen: Vec<u64> = std::thread::scope(|s| {
            let ps: Vec<_> = (0..producers)
                .map(|p| {
                    let q = q.clone();
                    s.spawn(move || {
                        for i in 0..per {
                            let id = p << 32 | i;
                            let len = 8 + (id.wrapping_mul(2_654_435_761) % 192) as usize;
                            if i % 2 == 0 {
                                q.send(&make(id, len)).unwrap();
                            } else {
                                let m = make(id, len);
                                let mut g = q.reserve(len).unwrap();
                                g.write_at(0, &m).unwrap();
                                g.commit();
                            }
                        }
                    })
                })
                .collect();
            let hs: Vec<_> = (0..consumers)
                .map(|c| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut got = Vec::new();
                        let mut out = [0u8; 200];
                        loop {
                            let r = if c == 0 {
                                q.recv_timeout(Duration::from_secs(60)).map(|g| {
                                    let n = g.copy_to(&mut out);
                                    check(&out[..n])
                                })
                            } else {
                                q.recv_into_timeout(&mut out, Duration::from_secs(60))
                                    .map(|n| check(&out[..n]))
                            };
                            match r {
                                Ok(id) => got.push(id),
                                Err(RecvError::Closed) => break got,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    })
                })
                .collect();
            // Close once every producer is done: consumers drain what is
            // left, then see Closed.
            for h in ps {
                h.join().unwrap();
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
    fn timeouts_close_and_wakeups() {
        let cfg = BytesConfig::new(128, 40);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        assert_eq!(
            q.recv_timeout(Duration::from_millis(10)).err(),
            Some(RecvError::Timeout)
        );
        q.send(&[1; 40]).unwrap();
        q.send(&[2; 40]).unwrap();
        assert_eq!(q.try_send(&[3; 40]), Err(SendError::Full));
        assert_eq!(
            q.send_timeout(&[3; 40], Duration::from_millis(10)),
            Err(SendError::Timeout)
        );
        // A sleeping sender is woken by a release.
        std::thread::scope(|s| {
            let h = s.spawn(|| q.send_timeout(&[3; 40], Duration::from_secs(30)));
            while q.ctrl.not_full.sleepers() == 0 {
                std::thread::yield_now();
            }
            let mut out = [0u8; 40];
            assert_eq!(q.recv_into(&mut out), Ok(40));
            assert_eq!(h.join().unwrap(), Ok(()));
        });
        q.close();
        assert_eq!(q.send(b"late"), Err(SendError::Closed));
        assert_eq!(q.recv().unwrap().len(), 40);
        assert_eq!(q.recv().unwrap().len(), 40);
        assert_eq!(q.recv().err(), Some(RecvError::Closed));

        // A sleeping receiver is woken by close.
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        std::thread::scope(|s| {
            let h = s.spawn(|| q.recv_timeout(Duration::from_secs(30)).map(|g| g.len()));
            while q.ctrl.not_empty.sleepers() == 0 {
                std::thread::yield_now();
            }
            q.close();
            assert_eq!(h.join().unwrap(), Err(RecvError::Closed));
        });
    }

    #[test]
    fn no_wake_when_nobody_sleeps() {
        let cfg = BytesConfig::new(256, 64);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut out = [0u8; 64];
        for i in 0..50 {
            q.send(&[i as u8; 33]).unwrap();
            assert_eq!(q.recv_into(&mut out), Ok(33));
        }
        assert_eq!(q.ctrl.not_empty.epoch.load(Ordering::Relaxed), 0);
        assert_eq!(q.ctrl.not_full.epoch.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn attach_and_corruption() {
        let cfg = BytesConfig::new(256, 64);
        let b = buf(cfg);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // SAFETY: b outlives the handles; only this test uses it.
        assert_eq!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { ByteQueue::attach(ptr, len) }.err(),
            Some(QueueError::NotAQueue)
        );
        // SAFETY: as above.
        let q = unsafe { ByteQueue::init_at(ptr, len, cfg) }.unwrap();
        q.send(b"hello").unwrap();
        // SAFETY: as above.
        let q2 = unsafe { ByteQueue::attach(ptr, len) }.unwrap();
        assert_eq!(q2.max_message(), 64);
        assert_eq!(q2.recv().unwrap().len(), 5);
        // SAFETY: as above.
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { crate::Spsc::<u8>::attach_consumer(ptr, len) },
            Err(QueueError::Incompatible(_))
        ));

        // A record whose length runs past the end of the ring.
        q.send(b"abc").unwrap();
        let pos = q.ctrl.reader.read.load(Ordering::Relaxed);
        let hdr = q.ring.header(pos);
        let good = hdr.load(Ordering::Relaxed);
        hdr.store(encode(pos, READY, 60), Ordering::Relaxed);
        // (60 is within max_message but its record would not fit below tail)
        assert_eq!(q.try_recv().err(), Some(RecvError::Corrupted));
        hdr.store(encode(pos, READY, 1 << 31), Ordering::Relaxed);
        assert_eq!(q.try_recv().err(), Some(RecvError::Corrupted));
        hdr.store(good ^ (1 << 40), Ordering::Relaxed); // wrong tag
        assert_eq!(q.try_recv().err(), Some(RecvError::Corrupted));
        hdr.store(good, Ordering::Relaxed);
        assert_eq!(q.try_recv().unwrap().len(), 3);

        // Positions that make no sense.
        q.ctrl.writer.tail.store(1 << 40, Ordering::Relaxed);
        assert_eq!(q.try_recv().err(), Some(RecvError::Corrupted));
        assert_eq!(q.recv().err(), Some(RecvError::Corrupted));
        assert_eq!(q.try_send(b"x"), Err(SendError::Corrupted));
        assert_eq!(q.send(b"x"), Err(SendError::Corrupted));
        q.ctrl.writer.tail.store(13, Ordering::Relaxed);
        assert_eq!(q.try_recv().err(), Some(RecvError::Corrupted));

        // A lock word naming us: reported, not a deadlock.
        q.ctrl.writer.tail.store(
            q.ctrl.reader.read.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let g = q.ctrl.writer.lock.try_lock().unwrap();
        assert_eq!(q.try_send(b"x"), Err(SendError::Corrupted));
        drop(g);

        // Geometry that disagrees with the mapping.
        q.ctrl.lead.header.words[0].store(1 << 20, Ordering::Relaxed);
        // SAFETY: as above.
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { ByteQueue::attach(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
        q.ctrl.lead.header.words[0].store(256, Ordering::Relaxed);
        q.ctrl.lead.header.words[1].store(200, Ordering::Relaxed);
        // SAFETY: as above.
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { ByteQueue::attach(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
    }

    #[cfg(not(miri))]
    #[test]
    fn a_writer_dead_between_reserve_and_commit_is_skipped() {
        let cfg = BytesConfig::new(256, 64);
        let mut b = buf(cfg);
        let judge = TestPeers::new(0);
        let q = ByteQueue::new_in(b.bytes(), cfg)
            .unwrap()
            .with_peers(&judge);
        let g = q.reserve(5).unwrap();
        let pos = g.pos;
        core::mem::forget(g); // never committed, never cancelled
        q.send(b"after").unwrap();
        // Reserved by us, alive: waited for, never skipped.
        assert_eq!(q.try_recv().err(), Some(RecvError::Empty));
        assert_eq!(
            q.recv_timeout(Duration::from_millis(120)).err(),
            Some(RecvError::Timeout)
        );
        q.ring
            .header(pos + 8)
            .store(u64::from(DEAD.raw()), Ordering::Relaxed);
        assert_eq!(
            q.try_recv().err(),
            Some(RecvError::Empty),
            "try never waits"
        );
        let mut out = [0u8; 64];
        let t = std::time::Instant::now();
        assert_eq!(
            q.recv_into_timeout(&mut out, Duration::from_secs(10)),
            Ok(5)
        );
        assert_eq!(&out[..5], b"after");
        assert!(t.elapsed() < Duration::from_secs(5));
        // The space comes back.
        for i in 0..20u8 {
            q.send(&[i; 64]).unwrap();
            assert_eq!(q.recv_into(&mut out), Ok(64));
        }
    }

    #[cfg(not(miri))]
    #[test]
    fn a_reader_dead_holding_a_grant_is_released_for_writers() {
        let cfg = BytesConfig::new(128, 40);
        let mut b = buf(cfg);
        let judge = TestPeers::new(0);
        let q = ByteQueue::new_in(b.bytes(), cfg)
            .unwrap()
            .with_peers(&judge);
        q.send(&[1; 40]).unwrap();
        q.send(&[2; 40]).unwrap();
        let g = q.recv().unwrap();
        let pos = g.pos;
        core::mem::forget(g); // held for ever
        let mut out = [0u8; 40];
        assert_eq!(q.recv_into(&mut out), Ok(40));
        assert_eq!(out, [2; 40]);
        assert_eq!(q.try_send(&[3; 40]), Err(SendError::Full));
        assert_eq!(
            q.send_timeout(&[3; 40], Duration::from_millis(120)),
            Err(SendError::Timeout),
            "a live holder is waited for"
        );
        q.ring
            .header(pos + 8)
            .store(u64::from(DEAD.raw()), Ordering::Relaxed);
        q.send_timeout(&[3; 40], Duration::from_secs(10)).unwrap();
        assert_eq!(q.recv_into(&mut out), Ok(40));
        assert_eq!(out, [3; 40]);
    }

    #[cfg(not(miri))]
    #[test]
    fn a_side_whose_lock_holder_died_is_repaired_not_unrecoverable() {
        let cfg = BytesConfig::new(256, 64);
        let mut b = buf(cfg);
        let judge = TestPeers::new(0);
        let q = ByteQueue::new_in(b.bytes(), cfg)
            .unwrap()
            .with_peers(&judge);
        q.send(b"one").unwrap();
        // A process that takes each side's lock and dies holding it.
        let doomed = TestPeers::doomed();
        std::thread::scope(|s| {
            s.spawn(|| {
                q.ctrl
                    .writer
                    .lock
                    .lock_until_with(&doomed, None)
                    .unwrap()
                    .leak()
            });
            s.spawn(|| {
                q.ctrl
                    .reader
                    .lock
                    .lock_until_with(&doomed, None)
                    .unwrap()
                    .leak()
            });
        });
        q.send_timeout(b"two", Duration::from_secs(10)).unwrap();
        let mut out = [0u8; 8];
        assert_eq!(
            q.recv_into_timeout(&mut out, Duration::from_secs(10)),
            Ok(3)
        );
        assert_eq!(&out[..3], b"one");
        assert!(!q.ctrl.writer.lock.is_unrecoverable());
        assert!(!q.ctrl.reader.lock.is_unrecoverable());
        assert_eq!(q.try_recv_into(&mut out), Ok(3));
        assert_eq!(&out[..3], b"two");
        q.try_send(b"three").unwrap();
    }

    /// Writes hostile values (small ones half the time) into the
    /// positions and the record headers of a 128-byte queue.
    fn garble(q: &ByteQueue<'_>, r: u64, rand: &mut impl FnMut() -> u64) {
        let pick = |small: u64, big: u64| if r & 1 == 0 { small } else { big };
        q.ctrl
            .writer
            .tail
            .store(pick((r >> 8) % 256, rand()), Ordering::Relaxed);
        q.ctrl
            .writer
            .head
            .store(pick((r >> 16) % 128, rand()), Ordering::Relaxed);
        q.ctrl
            .reader
            .read
            .store(pick((r >> 24) % 192, rand()), Ordering::Relaxed);
        for i in 0..16 {
            let h = rand();
            let pos = i * 8;
            let forged = encode(pos, (h >> 8) % 4, h % 48) | (h & SKIP);
            q.ring
                .header(pos)
                .store(if h & 1 == 0 { forged } else { h }, Ordering::Relaxed);
        }
    }

    #[test]
    fn garbage_gives_allowed_answers_and_a_reset_queue_works() {
        let mut seen = [0u32; 4]; // an Ok send, receive, and each kind of error
        let mut seed = 0xdead_beef_cafe_f00du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let rounds = if cfg!(miri) { 30 } else { 5000 };
        let cfg = BytesConfig::new(128, 40);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut out = [0u8; 40];
        for _ in 0..rounds {
            let r = rand();
            if r % 8 == 0 {
                // Now and then a sound queue, for the calls to work on.
                reset(&q);
            } else {
                garble(&q, r, &mut rand);
            }
            // Only 20-byte messages of 7s and 9-byte ones of 1s are ever
            // sent, so a message handed out is one of those, or bytes of
            // the ring that a forged header pointed at, within the
            // geometry (at most `max_message` long).
            let sent = |r: Result<(), SendError>, timed: bool| match r {
                Ok(()) => Some(0),
                Err(SendError::Full) if !timed => None,
                Err(SendError::Timeout) if timed => None,
                Err(SendError::Closed | SendError::Corrupted) => Some(2),
                Err(e) => panic!("send gave {e:?}"),
            };
            let got = |r: Result<usize, RecvError>, timed: bool| match r {
                Ok(n) => {
                    assert!(n <= 40, "a {n}-byte message from a 40-byte queue");
                    Some(1)
                }
                Err(RecvError::Empty) if !timed => None,
                Err(RecvError::Timeout) if timed => None,
                Err(RecvError::Closed | RecvError::Corrupted) => Some(3),
                Err(e) => panic!("recv gave {e:?}"),
            };
            let outcomes = [
                sent(q.try_send(&[7; 20]), false),
                got(q.try_recv_into(&mut out), false),
                got(q.try_recv().map(|g| g.copy_to(&mut out)), false),
                sent(q.send_timeout(&[1; 9], Duration::ZERO), true),
                got(q.recv_into_timeout(&mut out, Duration::ZERO), true),
            ];
            for k in outcomes.into_iter().flatten() {
                seen[k] += 1;
            }
            assert!(q.used_bytes() <= 128);
        }
        assert!(
            seen.iter().all(|&n| n > 0),
            "the garbage never reached some outcome: {seen:?}"
        );
        reset(&q);
        for i in 0..20u8 {
            q.send(&[i; 40]).unwrap();
            q.send(&[i; 9]).unwrap();
            assert_eq!(q.try_recv_into(&mut out), Ok(40));
            assert_eq!(out, [i; 40]);
            assert_eq!(q.try_recv_into(&mut out), Ok(9));
            assert_eq!(out[..9], [i; 9]);
        }
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
    }

    /// Writers reclaim only when the free room falls below two of the
    /// largest records, and a reader takes what the tail it last acquired
    /// covers without loading `tail` again; no send to a ring whose
    /// readers keep up ever finds it full. (Before: `head` moved on every
    /// reservation, and readers loaded `tail` for every message.)
    #[test]
    fn reclaims_lazily_and_keeps_room_for_two_of_the_largest() {
        let cfg = BytesConfig::new(1024, 64);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let (cap, two) = (1024, 2 * record_size(64));
        let w = &q.ctrl.writer;
        let mut out = [0u8; 64];
        // 16-byte messages (32-byte records) sent and received one by one:
        // a plain model of where `head` must be.
        let (mut head, mut tail) = (0u64, 0u64);
        let mut reclaims = 0;
        for i in 0..100u8 {
            if cap - (tail - head) < two {
                head = tail; // everything before it was received
                reclaims += 1;
            }
            q.try_send(&[i; 16]).unwrap();
            tail += 32;
            assert_eq!(w.head.load(Ordering::Relaxed), head, "message {i}");
            assert_eq!(w.tail.load(Ordering::Relaxed), tail);
            assert_eq!(q.try_recv_into(&mut out), Ok(16));
            assert_eq!(out[..16], [i; 16]);
        }
        assert!(reclaims >= 3, "{reclaims} reclaims");
        // Below two of the largest free: the next reservation reclaims
        // first, and both of the largest go in.
        let room = |head: u64| cap - (w.tail.load(Ordering::Relaxed) - head);
        while room(w.head.load(Ordering::Relaxed)) >= two {
            q.try_send(&[1; 16]).unwrap();
            assert_eq!(q.try_recv_into(&mut out), Ok(16));
        }
        let before = w.head.load(Ordering::Relaxed);
        q.try_send(&[2; 64]).unwrap();
        assert!(w.head.load(Ordering::Relaxed) > before, "no reclaim");
        q.try_send(&[3; 64]).unwrap();
        assert_eq!(q.try_recv_into(&mut out), Ok(64));
        assert_eq!(out, [2; 64]);
        assert_eq!(q.try_recv_into(&mut out), Ok(64));
        assert_eq!(out, [3; 64]);
        // Held records are never reclaimed: with none received, the ring
        // fills (up to a skip record at the wrap) and then is full.
        let mut n = 0;
        while q.try_send(&[4; 64]).is_ok() {
            n += 1;
        }
        assert!(n >= (cap - record_size(64)) / record_size(64), "{n} fit");
        for _ in 0..n {
            assert_eq!(q.try_recv_into(&mut out), Ok(64));
        }
        assert_eq!(q.try_send(&[5; 64]), Ok(()));
        assert_eq!(q.try_recv_into(&mut out), Ok(64));
        // Readers: two messages, one received, so the reader's copy of
        // `tail` covers the second. A forged `tail` is not looked at until
        // the copy says empty; then it is caught.
        q.try_send(&[6; 8]).unwrap();
        q.try_send(&[7; 8]).unwrap();
        assert_eq!(q.try_recv_into(&mut out), Ok(8));
        let real = w.tail.load(Ordering::Relaxed);
        w.tail.store(u64::MAX >> 1, Ordering::Relaxed);
        assert_eq!(q.try_recv_into(&mut out), Ok(8));
        assert_eq!(out[..8], [7; 8]);
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Corrupted));
        w.tail.store(real, Ordering::Relaxed);
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
        q.try_send(&[8; 8]).unwrap();
        assert_eq!(q.try_recv_into(&mut out), Ok(8));
    }

    /// Puts a 128-byte queue back to a fresh one's state, as `init_at`
    /// leaves it.
    fn reset(q: &ByteQueue<'_>) {
        // And the handle's own copy of `tail`, which only the queue's real
        // history can make true: a fresh queue has a fresh handle.
        q.seen.store(0, Ordering::Relaxed);
        q.ctrl.writer.tail.store(0, Ordering::Relaxed);
        q.ctrl.writer.head.store(0, Ordering::Relaxed);
        q.ctrl.reader.read.store(0, Ordering::Relaxed);
        for i in 0..16 {
            q.ring.header(i * 8).store(0, Ordering::Relaxed);
        }
    }

    /// Peers for a live handle (slot 0) and for a judge that (wrongly)
    /// finds every other peer dead, as a forged peer table would make it.
    #[cfg(not(miri))]
    fn live_and_judge() -> [TestPeers; 2] {
        let judge = TestPeers::new(0);
        judge.kill_others();
        [TestPeers::new(1), judge]
    }

    /// A new queue in `b`: the live handle, and the judge's.
    #[cfg(not(miri))]
    fn live_and_judged<'a>(
        b: &'a AlignedBuf,
        cfg: BytesConfig,
        [live, judge]: &'a [TestPeers; 2],
    ) -> (ByteQueue<'a>, ByteQueue<'a>) {
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let live_q = unsafe { ByteQueue::init_at(ptr, len, cfg) }.unwrap();
        // SAFETY: as above.
        let q = unsafe { ByteQueue::attach(ptr, len) }.unwrap();
        (live_q.with_peers(live), q.with_peers(judge))
    }

    #[cfg(not(miri))]
    #[test]
    fn a_live_writer_judged_dead_cannot_corrupt_the_ring() {
        let cfg = BytesConfig::new(256, 64);
        let (b, peers) = (buf(cfg), live_and_judge());
        let (writer, q) = live_and_judged(&b, cfg, &peers);
        let mut g = writer.reserve(5).unwrap();
        q.send(b"after").unwrap();
        let mut out = [0u8; 64];
        // The judge's blocking receive skips the "dead" writer's record.
        assert_eq!(
            q.recv_into_timeout(&mut out, Duration::from_secs(10)),
            Ok(5)
        );
        assert_eq!(&out[..5], b"after");
        // The writer was only slow: its late commit fails and changes
        // nothing.
        g.write_at(0, b"late!").unwrap();
        assert_eq!(g.commit_checked(), Err(SendError::Corrupted));
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
        for i in 0..20u64 {
            let m = make(i, 8 + (i as usize * 7) % 56);
            q.try_send(&m).unwrap();
            let n = q.try_recv_into(&mut out).unwrap();
            assert_eq!(check(&out[..n]), i);
        }
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
    }

    #[cfg(not(miri))]
    #[test]
    fn a_live_reader_judged_dead_cannot_corrupt_the_ring() {
        let cfg = BytesConfig::new(128, 40);
        let (b, peers) = (buf(cfg), live_and_judge());
        let (reader, q) = live_and_judged(&b, cfg, &peers);
        q.send(&[1; 40]).unwrap();
        q.send(&[2; 40]).unwrap();
        let g = reader.recv().unwrap();
        let mut out = [0u8; 40];
        assert_eq!(q.recv_into(&mut out), Ok(40));
        assert_eq!(out, [2; 40]);
        // The judge's blocking send frees the "dead" reader's record and
        // reuses its bytes.
        q.send_timeout(&[3; 40], Duration::from_secs(10)).unwrap();
        // The reader was only slow: its late release fails (what it read
        // may be torn) and changes nothing.
        assert_eq!(g.release_checked(), Err(RecvError::Corrupted));
        assert_eq!(q.try_recv_into(&mut out), Ok(40));
        assert_eq!(out, [3; 40]);
        for i in 4..30u8 {
            q.try_send(&[i; 40]).unwrap();
            assert_eq!(q.try_recv_into(&mut out), Ok(40));
            assert_eq!(out, [i; 40]);
        }
        assert_eq!(q.try_recv_into(&mut out), Err(RecvError::Empty));
    }

    /// A close whose closer died (SIGKILL) right after marking
    /// `writer.closing`, before its barrier, while a live light sole
    /// sender holds the side and sends nothing more: the memory is as that
    /// closer left it (`CLOSE_ASKED`, no `CLOSED`). Receivers find the
    /// queue drained and help the close (module docs, "Closing"); the
    /// close must complete there, not wait for the idle sender's next
    /// send, since nobody is stopped mid-send.
    #[test]
    fn a_close_whose_closer_died_before_its_barrier_completes_at_a_receiver() {
        crate::membarrier::register();
        let cfg = BytesConfig::new(1024, 64);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let (sent_tx, sent_rx) = std::sync::mpsc::channel::<bool>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let q = &q;
            s.spawn(move || {
                let mut tx = q.sole_sender().unwrap();
                tx.send(&make(0, 20)).unwrap();
                sent_tx.send(tx.is_light()).unwrap();
                // Idle, holding the side, until the receiver is done.
                done_rx.recv().unwrap();
            });
            let light = sent_rx.recv().unwrap();
            // What `close` leaves if it dies right after its first step.
            q.ctrl.writer.closing.store(CLOSE_ASKED, Ordering::SeqCst);
            assert!(q.is_closed());
            let mut out = [0u8; 64];
            let n = q.try_recv_into(&mut out).unwrap();
            assert_eq!(check(&out[..n]), 0);
            let r = q.try_recv_into(&mut out);
            done_tx.send(()).unwrap();
            assert_eq!(r, Err(RecvError::Closed), "light sender: {light}");
        });
    }

    /// Hostile memory: `writer.light` and `writer.busy` hold garbage while
    /// no sole sender holds the side (the writers' lock is free). A close
    /// then must still complete (the writers' lock can be had), not leave
    /// receivers reporting `Empty` for ever.
    #[test]
    fn garbage_in_busy_does_not_keep_a_close_from_completing() {
        crate::membarrier::register();
        let cfg = BytesConfig::new(1024, 64);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        q.send(&make(0, 20)).unwrap();
        q.ctrl.writer.light.store(1, Ordering::SeqCst);
        q.ctrl.writer.busy.store(0x5eed_0000_1234, Ordering::SeqCst);
        q.close();
        assert!(q.is_closed());
        let mut out = [0u8; 64];
        let n = q.try_recv_into(&mut out).unwrap();
        assert_eq!(check(&out[..n]), 0);
        let r = q.try_recv_into(&mut out);
        assert!(
            matches!(r, Err(RecvError::Closed | RecvError::Corrupted)),
            "{r:?}"
        );
    }
}

/// What a byte queue's control block says, decoded from a copy of its
/// bytes ([`state_of`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteRingState {
    /// Positions (in bytes), closed flag and sleepers; `tail - head` is
    /// what is committed or reserved and not yet claimed by a reader.
    pub ring: crate::queue::RingState,
    /// Where the oldest record still held lies (bytes before it are free):
    /// `tail - released` is the ring's bytes in use.
    pub released: u64,
    /// Who holds the writers' lock (a reservation in progress), if anyone.
    pub writer_lock: Option<crate::lock::Owner>,
    /// Who holds the readers' lock (a claim in progress), if anyone.
    pub reader_lock: Option<crate::lock::Owner>,
    /// Whether either side's lock is not recoverable.
    pub unrecoverable: bool,
}

/// What the byte-queue control block at the start of `control` (a copy of
/// a queue's bytes, at least its control block) says; `None` if `control`
/// is too short to hold one. Decodes words only: nothing is checked or
/// trusted, and no memory but the copy is read.
#[cfg(not(loom))]
pub fn state_of(control: &[u8]) -> Option<ByteRingState> {
    use crate::place::SharedObject;
    use crate::queue::{signal_word_at, sleeping, word_at};
    use core::mem::offset_of;
    if control.len() < size_of::<Control>() {
        return None;
    }
    let writer = offset_of!(Control, writer);
    let reader = offset_of!(Control, reader);
    let tail = word_at(control, writer + offset_of!(WriterSide, tail))?;
    // A private, aligned copy of each side's lock, read through the lock's
    // own accessors (every bit pattern is a lock state).
    let lock_at = |off: usize| {
        let mut words = [0u64; 2];
        let src = control.get(off..off + Lock::SIZE)?;
        bytemuck::cast_slice_mut::<u64, u8>(&mut words).copy_from_slice(src);
        let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut words)).ok()?;
        Some((lock.owner(), lock.is_unrecoverable()))
    };
    let (writer_lock, w_dead) = lock_at(writer + offset_of!(WriterSide, lock))?;
    let (reader_lock, r_dead) = lock_at(reader + offset_of!(ReaderSide, lock))?;
    Some(ByteRingState {
        ring: crate::queue::RingState {
            tail: tail & !CLOSED,
            head: word_at(control, reader + offset_of!(ReaderSide, read))?,
            closed: tail & CLOSED != 0,
            consumer_sleepers: sleeping(signal_word_at(control, offset_of!(Control, not_empty))?),
            producer_sleepers: sleeping(signal_word_at(control, offset_of!(Control, not_full))?),
        },
        released: word_at(control, writer + offset_of!(WriterSide, head))?,
        writer_lock,
        reader_lock,
        unrecoverable: w_dead || r_dead,
    })
}

/// Where a record stands, as its header says ([`record_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Reserved, not yet committed: its owner word names the writer.
    Pending,
    /// Committed: unclaimed, or (below the readers' position) claimed and
    /// held by the reader its owner word names.
    Ready,
    /// Released by its reader, waiting to be reclaimed.
    Freed,
}

/// A record header, decoded by [`record_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// The payload's length in bytes.
    pub len: u64,
    /// Its state.
    pub state: RecordState,
    /// A skip record (padding or a cancelled reservation), never delivered.
    pub skip: bool,
    /// The bytes the record occupies, header included: the next record
    /// starts this far on.
    pub size: u64,
    /// Who its owner word names: the writer while `Pending`, then the
    /// reader that claimed it (0 in the word: `None`).
    pub token: Option<Token>,
}

/// Where the data ring starts, in bytes from the queue's start; the record
/// at position `p` lies at `DATA_OFFSET + (p & (capacity - 1))`.
#[cfg(not(loom))]
pub const DATA_OFFSET: usize = size_of::<Control>();
/// The size of a record header (state word, owner word).
pub const RECORD_HEADER: usize = HEADER as usize;

/// The record header whose *copy* is `header` (its [`RECORD_HEADER`]
/// bytes), read at position `pos` of a ring for messages of up to
/// `max_message` bytes; `None` if it is too short, or its bits do not make
/// a header for `pos` (the position tag disagrees, no state, a length
/// above `max_message`): a stale or hostile header, which a walk over the
/// ring must stop at. Decodes words only; no memory but the copy is read.
/// For tools (`shmipc inspect`), which judge the token themselves.
#[cfg(not(loom))]
pub fn record_of(header: &[u8], pos: u64, max_message: u64) -> Option<RecordInfo> {
    use crate::queue::word_at;
    let word = word_at(header, 0)?;
    let owner = word_at(header, 8)?;
    if word >> TAG_SHIFT != (pos >> 3) & TAG_MASK {
        return None;
    }
    let state = match (word >> 32) & 3 {
        PENDING => RecordState::Pending,
        READY => RecordState::Ready,
        FREED => RecordState::Freed,
        _ => return None,
    };
    let len = word & 0xffff_ffff;
    let skip = word & SKIP != 0;
    // A skip record's length is the padding it covers, which may exceed
    // the largest message (up to the ring's end).
    if !skip && len > max_message {
        return None;
    }
    Some(RecordInfo {
        len,
        state,
        skip,
        size: record_size(len),
        token: u32::try_from(owner).ok().and_then(Token::from_raw),
    })
}
