//! Who shares a piece of memory, and whether each of them still lives.
//!
//! A lock word, a queue slot's owner word and a role block all record *who*
//! holds something, so that a waiter can ask whether the holder died and
//! take over. The record is a [`Token`]: a process's identity among the
//! processes attached to one mapping, not a pid. Pids are no good for this:
//! they differ between pid namespaces (a process in a container sees other
//! numbers than one outside, and `kill(pid, 0)` across the boundary names
//! the wrong process or none), and they are reused.
//!
//! A token names a *slot* of the mapping's peer table and the slot's
//! *generation*. The `shmipc` crate gives every attached process a slot and
//! ties it to a lock that the kernel drops when the process dies, whatever
//! its namespace (an open-file-description byte-range lock on the
//! segment's file); the generation goes up each time the slot changes
//! hands, so a token of a process that died is never confused with the
//! slot's next holder. The holder also keeps a second kernel lock, the
//! *stamp* of its (slot, generation) pair, and the stamp alone decides its
//! fate: the generation word is shared memory, which any peer can rewrite,
//! and a rewritten word must not turn a live holder into a dead one. This module has the pieces that need no operating
//! system: the token format, the [`Fate`] a judgement returns, the
//! [`Peers`] trait the algorithms ask, the shared [`PeerSlot`] records, and
//! the claim and judgement logic over a [`SlotLocks`] implementation that
//! the caller provides.
//!
//! **Evidence, or nothing.** A peer is [`Fate::Dead`] only on evidence: the
//! kernel lock of its token's stamp is free (it let go of its slot, which
//! only death or detaching does). Nothing in shared memory counts.
//! Anything that cannot be judged — a token from memory that has no peer
//! table, a slot number beyond the table, a failed system call — is
//! [`Fate::Unknown`] with the reason, and every caller treats it as alive:
//! it keeps waiting, and a timeout bounds the wait.

use core::fmt;

use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Who the calling process is, for the implementors of [`Peers`]: how
/// often its ancestry forked (a forked child's inherited slot is not its
/// own), and its token where there is no peer table.
pub use crate::sys::tid::{fork_generation, local_token};

/// A process's identity among the processes attached to one mapping: a
/// slot of the mapping's peer table and that slot's generation.
///
/// It fits in the 30 owner bits of a [`Lock`](crate::Lock) word
/// (`FUTEX_TID_MASK`) and is never 0:
///
/// | bits | meaning |
/// |---|---|
/// | 0–11 | slot index + 1; 0 for a token that names no slot (unjudgeable) |
/// | 12–29 | the slot's generation when its holder claimed it (18 bits) |
///
/// Slot field 4095 is never issued, so the all-ones owner field keeps its
/// meaning of "not recoverable" in a lock word.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Token(u32);

impl Token {
    /// Bits of the slot field.
    pub const SLOT_BITS: u32 = 12;
    /// Bits of the generation field.
    pub const GEN_BITS: u32 = 18;
    /// The largest number of slots a peer table can have.
    pub const MAX_SLOTS: u32 = (1 << Token::SLOT_BITS) - 2;
    /// The mask of a token's bits in a word (`FUTEX_TID_MASK`).
    pub const MASK: u32 = (1 << (Token::SLOT_BITS + Token::GEN_BITS)) - 1;
    const SLOT_MASK: u32 = (1 << Token::SLOT_BITS) - 1;
    const GEN_MASK: u32 = (1 << Token::GEN_BITS) - 1;

    /// The token of the holder of slot `slot` (0-based, below
    /// [`Token::MAX_SLOTS`]) at generation `generation` (its low 18 bits
    /// count).
    pub const fn new(slot: u32, generation: u32) -> Option<Token> {
        if slot >= Token::MAX_SLOTS {
            return None;
        }
        Some(Token(
            (slot + 1) | (generation & Token::GEN_MASK) << Token::SLOT_BITS,
        ))
    }

    /// A token that names no slot, for memory without a peer table: it is
    /// never judged dead. `nonce` (its low 18 bits, made non-zero) tells
    /// such tokens apart.
    pub const fn unjudged(nonce: u32) -> Token {
        let g = nonce & Token::GEN_MASK;
        Token((if g == 0 { 1 } else { g }) << Token::SLOT_BITS)
    }

    /// The token stored as `raw`, if `raw` is one: non-zero, within
    /// [`Token::MASK`], and not the reserved slot field.
    pub const fn from_raw(raw: u32) -> Option<Token> {
        if raw == 0 || raw & !Token::MASK != 0 || raw & Token::SLOT_MASK == Token::SLOT_MASK {
            return None;
        }
        Some(Token(raw))
    }

    /// The token as stored in a word.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// The 0-based slot this token names, or `None` for an unjudged one.
    pub const fn slot(self) -> Option<u32> {
        match self.0 & Token::SLOT_MASK {
            0 => None,
            s => Some(s - 1),
        }
    }

    /// The generation the token records (18 bits).
    pub const fn generation(self) -> u32 {
        self.0 >> Token::SLOT_BITS
    }

    /// Whether `generation` (a slot's full counter) is the one this token
    /// records.
    pub const fn matches_generation(self, generation: u32) -> bool {
        generation & Token::GEN_MASK == self.generation()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot() {
            Some(s) => write!(f, "Token(slot {s}, generation {})", self.generation()),
            None => write!(f, "Token(unjudged {})", self.generation()),
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot() {
            Some(s) => write!(f, "peer slot {s} (generation {})", self.generation()),
            None => f.write_str("a peer without a slot"),
        }
    }
}

/// What the evidence says about the process a [`Token`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It is attached and alive (its slot's kernel lock is held).
    Alive,
    /// It is gone: the kernel lock of its token's stamp is free. Whatever
    /// it held may be taken over.
    Dead,
    /// It cannot be judged, for the reason given; it counts as alive.
    Unknown(&'static str),
}

impl Fate {
    /// Whether the peer is dead on evidence. `Unknown` is not.
    pub const fn is_dead(self) -> bool {
        matches!(self, Fate::Dead)
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fate::Alive => f.write_str("alive"),
            Fate::Dead => f.write_str("dead"),
            Fate::Unknown(why) => write!(f, "cannot be judged ({why}), so it counts as alive"),
        }
    }
}

/// The peers of one mapping, as the algorithms see them: who the caller is,
/// and whether the holder of a token lives.
///
/// The `shmipc` crate implements it for every segment and anonymous
/// mapping; [`LOCAL`] serves memory with no peer table; tests and loom
/// models implement it to decide who is dead.
pub trait Peers: Sync {
    /// The calling process's token in this mapping. Cheap: called on fast
    /// paths (taking a lock, claiming a queue slot).
    fn me(&self) -> Token;

    /// What evidence says about `token`'s holder. Called on slow paths only
    /// (after a waiter has been blocked for a check interval).
    fn fate(&self, token: Token) -> Fate;

    /// Records in the caller's peer slot that it holds one more `end` of
    /// lane `lane` (below [`MAX_LANES`]) of the mapping's object. Returns
    /// whether it could be recorded: peers without a table (the default)
    /// cannot, and then nobody may ever judge that end gone.
    fn add_end(&self, lane: u32, end: End) -> bool {
        let _ = (lane, end);
        false
    }

    /// Takes back one [`Peers::add_end`] of the caller.
    fn remove_end(&self, lane: u32, end: End) {
        let _ = (lane, end);
    }

    /// Whether some process still holds `end` of lane `lane`: a slot that
    /// records it and whose holder is alive or cannot be judged. A scan of
    /// the peer table with one kernel question per recording slot: slow
    /// paths only. The default (no table) says yes.
    fn end_alive(&self, lane: u32, end: End) -> bool {
        let _ = (lane, end);
        true
    }

    /// Whether a handle's record made in fork generation `generation`
    /// (`fork_generation() + 1`, as a handle keeps it) is counted in the
    /// caller's slot now: true for records of an ancestor that forked us
    /// if its counts were copied into our slot at the fork. The default
    /// (no table) says no.
    fn inherited(&self, generation: u64) -> bool {
        let _ = generation;
        false
    }

    /// Enters a change of the caller's end records (a count and the
    /// handle's own word that says it is counted), which a fork must not
    /// split: a fork that copies the counts into its child waits until
    /// every change has [left](Peers::ends_exit). The default does nothing.
    fn ends_enter(&self) {}

    /// Leaves what [`Peers::ends_enter`] entered.
    fn ends_exit(&self) {}
}

/// One end of a queue (of one lane of a mapping's object, see
/// [`Peers::add_end`]): who sends into it, or who receives from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum End {
    /// A handle that sends (pushes) into the queue.
    Sender,
    /// A handle that receives (pops) from it.
    Receiver,
}

impl End {
    /// The other end.
    pub const fn other(self) -> End {
        match self {
            End::Sender => End::Receiver,
            End::Receiver => End::Sender,
        }
    }
}

/// How many lanes a peer slot's `ends` word records: the queues of one
/// mapping that keep endpoint counts apart (a pipe's two rings use two).
pub const MAX_LANES: u32 = 4;

/// Where the 8-bit count of (`lane`, `end`) sits in a slot's `ends` word,
/// if the lane is recorded.
const fn end_shift(lane: u32, end: End) -> Option<u32> {
    if lane >= MAX_LANES {
        return None;
    }
    let role = match end {
        End::Sender => 0,
        End::Receiver => 1,
    };
    Some((lane * 2 + role) * 8)
}

/// Applies `f` to `word` with an AcqRel compare-and-swap loop, until it
/// succeeds or `f` declines (returns `None`).
fn update(word: &AtomicU64, f: impl Fn(u64) -> Option<u64>) {
    let mut w = word.load(Ordering::Relaxed);
    while let Some(new) = f(w) {
        // SYNC POINT: AcqRel, for the callers (`add_end`, `remove_end`),
        // whose comments name the Acquire it pairs with.
        match word.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => w = now,
        }
    }
}

/// A count that reached this stays: its holder counts as present for as
/// long as it lives (late, never wrong).
const END_COUNT_STUCK: u64 = 0xff;

/// The peers of memory that has no peer table (a [`Lock`](crate::Lock) on
/// the stack, a queue in a `Vec`, a mapping `shmipc` did not make): the
/// caller's token names no slot, and no one is ever judged dead.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

/// The one [`Local`].
pub static LOCAL: Local = Local;

impl Peers for Local {
    #[inline]
    fn me(&self) -> Token {
        crate::tid::local_token()
    }

    fn fate(&self, token: Token) -> Fate {
        if token == self.me() {
            Fate::Alive
        } else {
            Fate::Unknown("the memory has no peer table")
        }
    }
}

/// Finds the peers of the mapping that holds an address: for an address
/// inside a mapping the resolver knows, that mapping's peers and the
/// mapping's address range (`start..end`), which callers may cache.
///
/// The `shmipc` crate installs one ([`set_resolver`]) that knows every
/// segment and anonymous mapping it made, so that a [`Lock`](crate::Lock)
/// anywhere inside one (on its own, inside a `Value`, at an offset of raw
/// segment bytes) is taken under that mapping's token and judged by its
/// peer table, with no argument to pass.
pub type Resolver = fn(usize) -> Option<(usize, usize, &'static dyn Peers)>;

#[cfg(not(loom))]
static RESOLVER: crate::sync::AtomicUsize = crate::sync::AtomicUsize::new(0);
#[cfg(not(loom))]
static EPOCH: AtomicU64 = AtomicU64::new(1);

/// Installs the process's resolver (see [`Resolver`]). Later calls replace
/// it.
///
/// SYNC POINT: the Release store pairs with the Acquire load of the
/// resolver in [`resolve`] (on a cache miss): whoever finds the resolver
/// sees what was written before it was installed.
pub fn set_resolver(resolver: Resolver) {
    #[cfg(not(loom))]
    {
        // SYNC POINT: Release (paired in the doc comment above).
        RESOLVER.store(resolver as usize, Ordering::Release);
        mappings_changed();
    }
    #[cfg(loom)]
    let _ = resolver;
}

/// Tells [`resolve`] that a mapping appeared or went away, so that cached
/// answers are asked again. The resolver's owner calls it after every
/// change (and before the memory of a removed mapping is reused).
///
/// SYNC POINT: the AcqRel bump needs no Acquire partner. [`resolve`]'s
/// cache reads the epoch relaxed and only compares it; a thread can hold
/// an address in a new mapping only through something that happens after
/// the mapping's registration and so after this bump, and coherence then
/// shows it the new epoch.
pub fn mappings_changed() {
    // SYNC POINT: AcqRel (see the doc comment above).
    #[cfg(not(loom))]
    EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// The peers of the memory at `addr`: those of the mapping that holds it,
/// if the installed [`Resolver`] knows one, else [`LOCAL`].
///
/// With the `std` feature the last answer is cached per thread, so a
/// repeated lookup in the same mapping costs a few compares.
///
/// The returned reference is valid while the mapping that holds `addr`
/// stays mapped, which a caller holding a reference into that mapping
/// guarantees; do not keep it beyond.
#[inline]
pub fn resolve(addr: usize) -> &'static dyn Peers {
    #[cfg(not(loom))]
    {
        cache::resolve(addr)
    }
    #[cfg(loom)]
    {
        let _ = addr;
        &LOCAL
    }
}

/// Asks the installed resolver, if any.
///
/// SYNC POINT: the Acquire load pairs with the Release store in
/// [`set_resolver`].
#[cfg(not(loom))]
fn resolve_uncached(addr: usize) -> Option<(usize, usize, &'static dyn Peers)> {
    // SYNC POINT: Acquire (paired in the doc comment above).
    let raw = RESOLVER.load(Ordering::Acquire);
    if raw == 0 {
        return None;
    }
    // SAFETY: only `set_resolver` stores here, and it stores a `Resolver`
    // (a function pointer, the size of a usize); 0 was ruled out above.
    let resolver: Resolver = unsafe { core::mem::transmute::<usize, Resolver>(raw) };
    resolver(addr)
}

#[cfg(all(not(loom), any(feature = "std", test)))]
mod cache {
    extern crate std;
    use super::{Peers, EPOCH, LOCAL};
    use crate::sync::Ordering;
    use core::cell::Cell;

    /// The last answer: epoch, start, end, peers.
    type Entry = Option<(u64, usize, usize, *const dyn Peers)>;

    std::thread_local! {
        static LAST: Cell<Entry> = const { Cell::new(None) };
    }

    #[inline]
    pub(super) fn resolve(addr: usize) -> &'static dyn Peers {
        let epoch = EPOCH.load(Ordering::Relaxed);
        if let Ok(Some((e, start, end, peers))) = LAST.try_with(Cell::get) {
            if e == epoch && start <= addr && addr < end {
                // SAFETY: cached from the resolver under the current epoch,
                // so the mapping is still there (see `resolve`'s contract).
                return unsafe { &*peers };
            }
        }
        miss(addr, epoch)
    }

    #[cold]
    fn miss(addr: usize, epoch: u64) -> &'static dyn Peers {
        match super::resolve_uncached(addr) {
            Some((start, end, peers)) => {
                let _ = LAST.try_with(|c| c.set(Some((epoch, start, end, peers as *const _))));
                peers
            }
            None => &LOCAL,
        }
    }
}

#[cfg(all(not(loom), not(any(feature = "std", test))))]
mod cache {
    use super::{Peers, LOCAL};

    #[inline]
    pub(super) fn resolve(addr: usize) -> &'static dyn Peers {
        match super::resolve_uncached(addr) {
            Some((_, _, peers)) => peers,
            None => &LOCAL,
        }
    }
}

/// One slot of a peer table, in shared memory (32 bytes, atomics only).
///
/// | field | meaning |
/// |---|---|
/// | `generation` | bumped by each new holder, right after it took the slot's kernel lock |
/// | `pid` | the holder's pid as it sees itself (for people: another namespace numbers it differently) |
/// | `pidns` | the holder's pid namespace (the inode of `/proc/self/ns/pid`), 0 if unknown |
/// | `since` | when the holder claimed the slot (`CLOCK_MONOTONIC` nanoseconds) |
/// | `ends` | how many handles of each end the holder keeps: 8-bit counts, one per (lane, end), at bits `(lane · 2 + end) · 8` (sender 0, receiver 1); zeroed by each new holder |
#[repr(C)]
pub struct PeerSlot {
    generation: AtomicU32,
    pid: AtomicU32,
    pidns: AtomicU64,
    since: AtomicU64,
    ends: AtomicU64,
}

/// The bytes one [`PeerSlot`] takes.
pub const PEER_SLOT_SIZE: usize = 32;
#[cfg(not(loom))]
const _: () = assert!(size_of::<PeerSlot>() == PEER_SLOT_SIZE);

/// What a process records about itself when it claims a slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its pid, as it sees itself.
    pub pid: u32,
    /// Its pid namespace's inode, 0 if unknown.
    pub pidns: u64,
    /// When it claimed the slot (`CLOCK_MONOTONIC` nanoseconds).
    pub since: u64,
}

impl PeerSlot {
    /// The slot's generation counter now.
    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many handles of `end` of lane `lane` the slot's holder recorded
    /// (see [`Peers::add_end`]); 0 for a lane beyond [`MAX_LANES`].
    pub fn end_count(&self, lane: u32, end: End) -> u32 {
        match end_shift(lane, end) {
            // SYNC POINT: Acquire pairs with the AcqRel updates in
            // `PeerTable::add_end` / `remove_end`: whoever sees a holder's
            // count sees what it did before recording it.
            Some(sh) => ((self.ends.load(Ordering::Acquire) >> sh) & END_COUNT_STUCK) as u32,
            None => 0,
        }
    }

    /// What the slot's latest holder recorded about itself (a snapshot;
    /// the holder may be gone).
    pub fn info(&self) -> PeerInfo {
        PeerInfo {
            pid: self.pid.load(Ordering::Relaxed),
            pidns: self.pidns.load(Ordering::Relaxed),
            since: self.since.load(Ordering::Relaxed),
        }
    }
}

/// The operating system's half of a peer table: one lock per slot, and one
/// per (slot, generation) *stamp*, that the kernel drops when the holder
/// dies.
///
/// `shmipc` implements it with open-file-description locks (`F_OFD_SETLK`)
/// on one byte per slot and one byte per stamp of the segment's file,
/// through a file description of the caller's own, so that a lock is held
/// by exactly one attached process and vanishes with it.
pub trait SlotLocks {
    /// Takes slot `slot`'s lock for the caller if no one holds it: `Ok(true)`
    /// if taken, `Ok(false)` if someone else holds it, `Err(errno)` if the
    /// system refused.
    fn try_take(&self, slot: u32) -> Result<bool, i32>;

    /// Takes the stamp lock of `slot` at `generation` (a token's 18-bit
    /// generation) for the caller, which holds the slot's lock: `Ok(true)`
    /// if taken, `Ok(false)` if someone else holds it, `Err(errno)` if the
    /// system refused.
    fn try_stamp(&self, slot: u32, generation: u32) -> Result<bool, i32>;

    /// Whether someone other than the caller holds the stamp lock of `slot`
    /// at `generation`, or `Err(errno)` if the system cannot tell.
    fn stamp_held_by_other(&self, slot: u32, generation: u32) -> Result<bool, i32>;
}

/// Why no slot could be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// Every slot is held by a live process.
    Full {
        /// The table's number of slots.
        slots: u32,
    },
    /// The system refused to take a lock (`errno`).
    System(i32),
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Full { slots } => {
                write!(f, "all {slots} peer slots are held by live processes")
            }
            ClaimError::System(errno) => {
                write!(f, "the kernel refused a slot lock (errno {errno})")
            }
        }
    }
}

impl core::error::Error for ClaimError {}

/// A peer table: an array of [`PeerSlot`]s in shared memory, with a trusted
/// slot count (checked once by whoever found the table).
#[derive(Clone, Copy)]
pub struct PeerTable<'a> {
    slots: &'a [PeerSlot],
}

impl fmt::Debug for PeerTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTable")
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl<'a> PeerTable<'a> {
    /// The bytes a table of `slots` slots takes.
    pub const fn size(slots: u32) -> usize {
        slots as usize * PEER_SLOT_SIZE
    }

    /// Views the table of `slots` slots at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is 8-byte aligned and valid for reads and writes of
    /// [`PeerTable::size`]`(slots)` bytes for `'a`, which are only ever
    /// accessed atomically. (Any bytes are a valid table: it is made of
    /// atomics, and every value is checked before it is used.)
    pub unsafe fn from_ptr(ptr: *mut u8, slots: u32) -> PeerTable<'a> {
        let n = slots.min(Token::MAX_SLOTS) as usize;
        // SAFETY: aligned, valid and atomics-only for 'a (contract); at most
        // `slots` records.
        let slots = unsafe { core::slice::from_raw_parts(ptr.cast::<PeerSlot>(), n) };
        PeerTable { slots }
    }

    /// The number of slots.
    pub fn len(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Whether the table has no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slot `i`, if the table has one.
    pub fn slot(&self, i: u32) -> Option<&'a PeerSlot> {
        self.slots.get(i as usize)
    }

    /// Claims a free slot for the caller, trying slots from `start` on
    /// (round the table once), and returns the caller's new token.
    ///
    /// The slot's kernel lock is taken first, so one process at a time
    /// holds the slot and bumps its generation; then the stamp of the new
    /// (slot, generation) pair is locked, before the token is returned, so
    /// the stamp is held for as long as anyone can know the token. (The
    /// stamp of a token 2^18 generations old is the same byte: such a token
    /// reads as alive while the slot's holder lives — late, never wrong.)
    ///
    /// SYNC POINT: the AcqRel bump of the generation pairs with the
    /// Acquire load in [`PeerSlot::generation`] (a judge's, in
    /// [`PeerTable::fate`]): whoever sees the new generation judges by it.
    pub fn claim(
        &self,
        locks: &impl SlotLocks,
        start: u32,
        info: PeerInfo,
    ) -> Result<Token, ClaimError> {
        let n = self.len();
        if n == 0 {
            return Err(ClaimError::Full { slots: 0 });
        }
        for k in 0..n {
            let i = (start.wrapping_add(k)) % n;
            match locks.try_take(i) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return Err(ClaimError::System(e)),
            }
            let slot = &self.slots[i as usize];
            // SYNC POINT: AcqRel (paired in the doc comment above).
            let generation = slot
                .generation
                .fetch_add(1, Ordering::AcqRel)
                .wrapping_add(1);
            slot.pid.store(info.pid, Ordering::Relaxed);
            slot.pidns.store(info.pidns, Ordering::Relaxed);
            slot.since.store(info.since, Ordering::Relaxed);
            slot.ends.store(0, Ordering::Relaxed);
            let token = Token::new(i, generation).expect("slot is below the table's length");
            // Ok(false): someone else holds this stamp's byte (a hostile
            // peer, nothing of ours); our token then reads as alive, which
            // it is.
            if let Err(e) = locks.try_stamp(i, token.generation()) {
                return Err(ClaimError::System(e));
            }
            return Ok(token);
        }
        Err(ClaimError::Full { slots: n })
    }

    /// Counts one more handle of `end` of lane `lane` in slot `slot` (the
    /// caller's own). Returns whether it is recorded: not for a lane or
    /// slot beyond the table. A count at 255 stays there.
    ///
    /// SYNC POINT: the AcqRel update pairs with the Acquire load in
    /// [`PeerSlot::end_count`].
    pub fn add_end(&self, slot: u32, lane: u32, end: End) -> bool {
        let (Some(s), Some(sh)) = (self.slot(slot), end_shift(lane, end)) else {
            return false;
        };
        // SYNC POINT: AcqRel (paired in the doc comment above).
        update(&s.ends, |w| {
            let c = (w >> sh) & END_COUNT_STUCK;
            (c < END_COUNT_STUCK).then(|| w + (1 << sh))
        });
        true
    }

    /// Takes one handle of `end` of lane `lane` off slot `slot`'s count (a
    /// count at 0 or stuck at 255 stays).
    ///
    /// SYNC POINT: as in [`PeerTable::add_end`]; the Release half makes
    /// what the handle did (its last message) visible to whoever sees the
    /// count drop.
    pub fn remove_end(&self, slot: u32, lane: u32, end: End) {
        let (Some(s), Some(sh)) = (self.slot(slot), end_shift(lane, end)) else {
            return;
        };
        // SYNC POINT: AcqRel (paired in the doc comment above).
        update(&s.ends, |w| {
            let c = (w >> sh) & END_COUNT_STUCK;
            (c != 0 && c < END_COUNT_STUCK).then(|| w - (1 << sh))
        });
    }

    /// Slot `slot`'s whole `ends` word (every lane's counts), 0 for a slot
    /// beyond the table.
    ///
    /// SYNC POINT: Acquire, paired as in [`PeerSlot::end_count`].
    pub fn ends_word(&self, slot: u32) -> u64 {
        // SYNC POINT: Acquire (paired in the doc comment above).
        self.slot(slot)
            .map_or(0, |s| s.ends.load(Ordering::Acquire))
    }

    /// Sets slot `slot`'s whole `ends` word (the caller's own, just
    /// claimed: a forked child's copy of its parent's counts).
    ///
    /// SYNC POINT: Release, paired with the Acquire load in
    /// [`PeerSlot::end_count`].
    pub fn set_ends_word(&self, slot: u32, ends: u64) {
        if let Some(s) = self.slot(slot) {
            // SYNC POINT: Release (paired in the doc comment above).
            s.ends.store(ends, Ordering::Release);
        }
    }

    /// Sets the pid slot `slot` records (the caller's own slot, claimed
    /// for it by the parent that forked it).
    pub fn set_pid(&self, slot: u32, pid: u32) {
        if let Some(s) = self.slot(slot) {
            s.pid.store(pid, Ordering::Relaxed);
        }
    }

    /// Whether some slot records a handle of `end` of lane `lane` whose
    /// holder lives or cannot be judged ([`PeerTable::fate`] of the slot's
    /// current generation). `mine` is the caller's token, as for `fate`:
    /// its own slot counts as alive without a question to the kernel.
    ///
    /// A slot's generation and count are shared memory: a peer that
    /// rewrites them can make an end look gone, which is no more than it
    /// could do by closing the queue.
    pub fn end_alive(
        &self,
        locks: &impl SlotLocks,
        mine: Option<Token>,
        lane: u32,
        end: End,
    ) -> bool {
        let my_slot = mine.and_then(Token::slot);
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.end_count(lane, end) == 0 {
                continue;
            }
            let i = i as u32;
            if my_slot == Some(i) {
                return true;
            }
            let Some(token) = Token::new(i, slot.generation()) else {
                return true;
            };
            if !self.fate(locks, mine, token).is_dead() {
                return true;
            }
        }
        false
    }

    /// Judges `token`, a holder recorded in this table's mapping. `mine` is
    /// the caller's own token, if it has claimed one (a token is alive if it
    /// is the caller's; the caller's own slot under an older generation is
    /// dead, since the caller took it over).
    pub fn fate(&self, locks: &impl SlotLocks, mine: Option<Token>, token: Token) -> Fate {
        let Some(i) = token.slot() else {
            return Fate::Unknown("the holder attached without a peer slot");
        };
        if mine == Some(token) {
            return Fate::Alive;
        }
        if mine.and_then(Token::slot) == Some(i) {
            return Fate::Dead;
        }
        if self.slot(i).is_none() {
            return Fate::Unknown("the token names a slot beyond the peer table");
        }
        // Only the kernel's word counts: the slot's generation word is
        // shared memory, which any peer can rewrite.
        match locks.stamp_held_by_other(i, token.generation()) {
            Ok(true) => Fate::Alive,
            Ok(false) => {
                // Free. Its holder locked the stamp before anyone could
                // know the token, and keeps it until its description
                // closes: it died (or detached, holding nothing).
                Fate::Dead
            }
            Err(_) => Fate::Unknown("the kernel would not report the slot's lock"),
        }
    }
}

/// Peers that unit tests control.
#[cfg(all(test, not(loom)))]
pub(crate) mod testing {
    use super::{Fate, Peers, Token};
    use crate::sync::{AtomicBool, Ordering};

    /// A token that [`TestPeers`] always judge dead.
    pub(crate) const DEAD: Token = match Token::new(77, 1) {
        Some(t) => t,
        None => panic!(),
    };

    /// The caller is `me`; [`DEAD`] is dead; every other token is alive,
    /// until [`TestPeers::kill_others`] makes all of them dead.
    pub(crate) struct TestPeers {
        pub(crate) me: Token,
        others_dead: AtomicBool,
    }

    impl TestPeers {
        pub(crate) fn new(slot: u32) -> TestPeers {
            TestPeers {
                me: Token::new(slot, 1).unwrap(),
                others_dead: AtomicBool::new(false),
            }
        }

        /// Peers whose caller is the always-dead [`DEAD`]: what a process
        /// that is about to die did its work as.
        pub(crate) fn doomed() -> TestPeers {
            TestPeers {
                me: DEAD,
                others_dead: AtomicBool::new(false),
            }
        }

        pub(crate) fn kill_others(&self) {
            self.others_dead.store(true, Ordering::Relaxed);
        }
    }

    impl Peers for TestPeers {
        fn me(&self) -> Token {
            self.me
        }

        fn fate(&self, token: Token) -> Fate {
            if token == self.me {
                Fate::Alive
            } else if token == DEAD || self.others_dead.load(Ordering::Relaxed) {
                Fate::Dead
            } else {
                Fate::Alive
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::vec;
    use std::vec::Vec;

    /// Slot locks that a test holds and drops by hand: `held[i]` names who
    /// holds slot i (0 = nobody, 1 = the caller, 2 = someone else), and
    /// `stamps` who holds the stamp of (slot, generation) the same way
    /// (absent = nobody).
    struct Stub {
        held: RefCell<Vec<u8>>,
        stamps: RefCell<Vec<(u32, u32, u8)>>,
        fail: bool,
    }

    impl Stub {
        fn new(held: Vec<u8>, fail: bool) -> Stub {
            Stub {
                held: RefCell::new(held),
                stamps: RefCell::new(Vec::new()),
                fail,
            }
        }

        /// Who holds `token`'s stamp from now on (0 = nobody), and its slot.
        fn set(&self, token: Token, who: u8) {
            let (slot, generation) = (token.slot().unwrap(), token.generation());
            self.held.borrow_mut()[slot as usize] = who;
            let mut st = self.stamps.borrow_mut();
            st.retain(|&(s, g, _)| (s, g) != (slot, generation));
            if who != 0 {
                st.push((slot, generation, who));
            }
        }
    }

    impl SlotLocks for Stub {
        fn try_take(&self, slot: u32) -> Result<bool, i32> {
            if self.fail {
                return Err(22);
            }
            let mut h = self.held.borrow_mut();
            if h[slot as usize] == 0 {
                h[slot as usize] = 1;
                Ok(true)
            } else {
                Ok(false)
            }
        }

        fn try_stamp(&self, slot: u32, generation: u32) -> Result<bool, i32> {
            if self.fail {
                return Err(22);
            }
            let mut st = self.stamps.borrow_mut();
            if st.iter().any(|&(s, g, _)| (s, g) == (slot, generation)) {
                return Ok(false);
            }
            st.push((slot, generation, 1));
            Ok(true)
        }

        fn stamp_held_by_other(&self, slot: u32, generation: u32) -> Result<bool, i32> {
            if self.fail {
                return Err(22);
            }
            Ok(self
                .stamps
                .borrow()
                .iter()
                .any(|&(s, g, who)| (s, g, who) == (slot, generation, 2)))
        }
    }

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let t = Token::new(5, 0x4_0007).unwrap();
        assert_eq!(t.slot(), Some(5));
        assert_eq!(t.generation(), 7, "18 bits of the generation");
        assert_eq!(Token::from_raw(t.raw()), Some(t));
        assert!(t.raw() <= Token::MASK);
        assert_eq!(Token::new(Token::MAX_SLOTS, 1), None);
        assert_eq!(Token::from_raw(0), None);
        assert_eq!(Token::from_raw(1 << 30), None);
        assert_eq!(
            Token::from_raw(Token::MASK),
            None,
            "the reserved slot field"
        );
        let u = Token::unjudged(0);
        assert_eq!(u.slot(), None);
        assert_ne!(u.raw(), 0);
        assert_eq!(Token::from_raw(u.raw()), Some(u));
    }

    /// A peer may write any byte of the table while a `PeerTable` (a
    /// `&[PeerSlot]`) lives; a slot has no padding, so that is no undefined
    /// behaviour (Miri checks this test; a gap in `PeerSlot` fails it).
    #[test]
    fn a_peer_writing_every_byte_of_the_table_is_no_undefined_behaviour() {
        let mut mem = vec![0u64; 4 * PEER_SLOT_SIZE / 8];
        let p = mem.as_mut_ptr().cast::<u8>();
        // SAFETY: the Vec is aligned, large enough and outlives the table.
        let table = unsafe { PeerTable::from_ptr(p, 4) };
        let locks = Stub::new(vec![0, 0, 0, 0], false);
        let info = PeerInfo {
            pid: 42,
            pidns: 7,
            since: 1,
        };
        let t = table.claim(&locks, 0, info).unwrap();
        // SAFETY: inside the Vec: a peer's write while `table` lives.
        unsafe { p.write_bytes(0x5a, 4 * PEER_SLOT_SIZE) };
        assert_ne!(table.slot(0).unwrap().info(), info);
        let _ = table.fate(&locks, Some(t), t);
        assert!(table.claim(&locks, 0, info).is_ok());
    }

    #[test]
    fn claims_take_free_slots_and_bump_generations() {
        let mut mem = vec![0u64; 4 * PEER_SLOT_SIZE / 8];
        // SAFETY: the Vec is aligned, large enough and outlives the table.
        let table = unsafe { PeerTable::from_ptr(mem.as_mut_ptr().cast(), 4) };
        let locks = Stub::new(vec![2, 0, 0, 2], false);
        let info = PeerInfo {
            pid: 42,
            pidns: 7,
            since: 1,
        };
        let t = table.claim(&locks, 3, info).unwrap();
        assert_eq!(t.slot(), Some(1), "slots 3 and 0 are held");
        assert_eq!(t.generation(), 1);
        assert_eq!(table.slot(1).unwrap().info(), info);
        let t2 = table.claim(&locks, 0, info).unwrap();
        assert_eq!(t2.slot(), Some(2));
        assert_eq!(
            table.claim(&locks, 0, info),
            Err(ClaimError::Full { slots: 4 })
        );
        let failing = Stub::new(vec![0; 4], true);
        assert_eq!(table.claim(&failing, 0, info), Err(ClaimError::System(22)));
    }

    /// A table of four slots over `mem` in which this process claimed slot
    /// 1 (`mine`) and another live process holds slot 0 (`other`).
    fn mine_and_another(mem: &mut [u64]) -> (PeerTable<'_>, Stub, Token, Token) {
        assert_eq!(mem.len(), 4 * PEER_SLOT_SIZE / 8);
        // SAFETY: the slice is aligned, large enough and outlives the table.
        let table = unsafe { PeerTable::from_ptr(mem.as_mut_ptr().cast(), 4) };
        let locks = Stub::new(vec![0, 0, 0, 0], false);
        let info = PeerInfo::default();
        let other = table.claim(&locks, 0, info).unwrap();
        let mine = table.claim(&locks, 1, info).unwrap();
        // `other` is slot 0; pretend another process holds it.
        locks.set(other, 2);
        (table, locks, other, mine)
    }

    #[test]
    fn judgement_needs_evidence() {
        let mut mem = vec![0u64; 4 * PEER_SLOT_SIZE / 8];
        let (table, locks, other, mine) = mine_and_another(&mut mem);
        let info = PeerInfo::default();
        assert_eq!(table.fate(&locks, Some(mine), other), Fate::Alive);
        assert_eq!(table.fate(&locks, Some(mine), mine), Fate::Alive);
        // A forged generation word is no evidence: still alive.
        let g = &table.slot(0).unwrap().generation;
        g.fetch_add(5, Ordering::Relaxed);
        assert_eq!(table.fate(&locks, Some(mine), other), Fate::Alive);
        g.fetch_sub(5, Ordering::Relaxed);
        // It lets go: dead.
        locks.set(other, 0);
        assert_eq!(table.fate(&locks, Some(mine), other), Fate::Dead);
        // Someone new holds slot 0 now, at a newer generation: the old
        // token is dead even though the slot's lock is held.
        let newer = table.claim(&locks, 0, info).unwrap();
        locks.set(newer, 2);
        assert_eq!(newer.slot(), Some(0));
        assert_eq!(table.fate(&locks, Some(mine), other), Fate::Dead);
        assert_eq!(table.fate(&locks, Some(mine), newer), Fate::Alive);
        // Our own slot under an older generation: we took it over.
        let old_mine = Token::new(1, mine.generation().wrapping_sub(1)).unwrap();
        assert_eq!(table.fate(&locks, Some(mine), old_mine), Fate::Dead);
        // Things that cannot be judged count as alive.
        assert!(matches!(
            table.fate(&locks, Some(mine), Token::unjudged(3)),
            Fate::Unknown(_)
        ));
        assert!(matches!(
            table.fate(&locks, Some(mine), Token::new(9, 1).unwrap()),
            Fate::Unknown(_)
        ));
        let failing = Stub::new(vec![0; 4], true);
        assert!(matches!(
            table.fate(&failing, Some(mine), newer),
            Fate::Unknown(_)
        ));
        assert!(!Fate::Unknown("x").is_dead());
    }

    #[test]
    fn end_counts_are_judged_by_their_holders_fate() {
        let mut mem = vec![0u64; 4 * PEER_SLOT_SIZE / 8];
        let (table, locks, other, mine) = mine_and_another(&mut mem);
        let info = PeerInfo::default();
        let (o, m) = (other.slot().unwrap(), mine.slot().unwrap());
        assert!(
            !table.end_alive(&locks, Some(mine), 1, End::Sender),
            "nobody yet"
        );
        assert!(table.add_end(o, 1, End::Sender));
        assert!(table.add_end(o, 1, End::Sender));
        assert_eq!(table.slot(o).unwrap().end_count(1, End::Sender), 2);
        assert_eq!(table.slot(o).unwrap().end_count(1, End::Receiver), 0);
        assert_eq!(table.slot(o).unwrap().end_count(0, End::Sender), 0);
        assert!(table.end_alive(&locks, Some(mine), 1, End::Sender));
        assert!(
            !table.end_alive(&locks, Some(mine), 0, End::Sender),
            "another lane"
        );
        table.remove_end(o, 1, End::Sender);
        assert!(
            table.end_alive(&locks, Some(mine), 1, End::Sender),
            "one left"
        );
        // Its holder dies with a count recorded: gone.
        locks.set(other, 0);
        assert!(!table.end_alive(&locks, Some(mine), 1, End::Sender));
        // Our own count needs no question.
        assert!(table.add_end(m, 1, End::Sender));
        assert!(table.end_alive(&failing_locks(), Some(mine), 1, End::Sender));
        table.remove_end(m, 1, End::Sender);
        table.remove_end(m, 1, End::Sender);
        assert_eq!(
            table.slot(m).unwrap().end_count(1, End::Sender),
            0,
            "no wrap"
        );
        // A holder that cannot be judged counts as present.
        let newer = table.claim(&locks, 0, info).unwrap();
        assert_eq!(
            table.slot(o).unwrap().end_count(1, End::Sender),
            0,
            "a new holder starts at zero"
        );
        locks.set(newer, 2);
        assert!(table.add_end(o, 1, End::Sender));
        assert!(table.end_alive(&failing_locks(), Some(mine), 1, End::Sender));
        // A count at 255 stays.
        for _ in 0..300 {
            table.add_end(m, 2, End::Receiver);
        }
        table.remove_end(m, 2, End::Receiver);
        assert_eq!(table.slot(m).unwrap().end_count(2, End::Receiver), 255);
        assert!(!table.add_end(m, MAX_LANES, End::Sender), "no such lane");
        assert!(!table.add_end(9, 0, End::Sender), "no such slot");
    }

    fn failing_locks() -> Stub {
        Stub::new(vec![0; 4], true)
    }

    #[test]
    fn local_peers_never_judge_anyone_dead() {
        let me = LOCAL.me();
        assert_eq!(me.slot(), None);
        assert_eq!(LOCAL.fate(me), Fate::Alive);
        assert!(matches!(
            LOCAL.fate(Token::new(0, 1).unwrap()),
            Fate::Unknown(_)
        ));
    }
}
