//! A process's presence in a mapping: its peer slot, held by a lock the
//! kernel drops when the process dies.
//!
//! Every [`Mapping`](crate::memory::Mapping) (named segment or anonymous
//! memory) ends in a peer table ([`shmipc_core::peers`]). The first time a
//! process needs a token in a mapping (to take a lock, claim a queue slot,
//! hold a role), it opens a file description of its own on the mapping's
//! file (`open("/proc/self/fd/<fd>")`: a new description, even for an
//! unlinked file or a memfd) and takes an **open-file-description lock**
//! (`F_OFD_SETLK`, write lock) on one byte per slot, at
//! [`SLOT_LOCK_BASE`]` + slot`, far past the file's end. Then it bumps the
//! slot's generation; its token is (slot, generation), and it locks that
//! token's *stamp* byte too, at [`STAMP_LOCK_BASE`]` + slot · 2^18 +
//! generation` (18 bits of it), through the same description.
//!
//! Why this lock: the kernel releases it when the last descriptor of the
//! description closes, which a process's death does, whatever its pid
//! namespace, and it is visible to every process that has the file open —
//! in a container, outside one, across pid reuse. A judge asks with
//! `F_OFD_GETLK` through a description of its own about the token's stamp:
//! a held byte is a live peer, a free one a dead one. There is no pid
//! anywhere in the verdict, and nothing from shared memory either: a peer
//! that rewrites the slot's generation word cannot make a live holder look
//! dead.
//!
//! **Fork.** A forked child shares its parent's descriptions, so the
//! inherited lock would keep a dead parent looking alive for as long as the
//! child lives. A `pthread_atfork` child handler therefore closes every
//! slot-lock descriptor in the child (they are listed in a fixed table,
//! [`FORK_CLOSE`]); the child claims a slot of its own the first time it
//! needs one — unless the parent's slot counts queue ends, in which case
//! the prepare step claimed the child's slot for it, with a copy of those
//! counts (see "End counts a forked child inherits" below). A descriptor is opened and listed, and unlisted and closed,
//! under the registry lock that the handler's prepare step takes too, so
//! a fork in another thread never lands between the two. Descriptors are `O_CLOEXEC`, so `exec` drops them too. A
//! child made by a raw `clone` that skips `pthread_atfork` keeps its
//! parent's locks alive until it execs or exits (a parent that dies
//! meanwhile is not recovered from until then: late, never wrong).
//!
//! **The resolver.** Every mapping registers its address range here
//! ([`register`]), so that [`shmipc_core::peers::resolve`] finds its
//! presence from the address of any object inside it: a `Lock` inside a
//! segment is taken under that segment's token with no argument.
//!
//! **What cannot be judged.** If the process cannot open a description
//! (no `/proc`), every slot is held, or the kernel refuses the lock, it
//! uses a token that names no slot: it works, but no one can ever judge it
//! dead, and [`Presence::claim_problem`] says why.

use std::os::fd::RawFd;
use std::time::Duration;

use shmipc_core::peers::{self, ClaimError, PeerInfo, PeerTable, SlotLocks};
use shmipc_core::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use shmipc_core::{End, Fate, Peers, Token};

/// Where the slot locks start in the file's byte range: past any file this
/// crate makes (segments are far smaller than a tebibyte), so the locks
/// never cover bytes anyone reads or writes.
pub const SLOT_LOCK_BASE: i64 = 1 << 40;
/// The byte a creator holds locked while it initialises a segment, so that
/// an opener can tell a creator that died from one that is slow.
pub const CREATOR_LOCK: i64 = SLOT_LOCK_BASE - 1;
/// Where the stamp locks start: the stamp of slot `s` at generation `g`
/// (the 18 bits a token keeps) is byte `STAMP_LOCK_BASE + s · 2^18 + g`,
/// past every slot lock.
pub const STAMP_LOCK_BASE: i64 = SLOT_LOCK_BASE + (1 << 32);

/// The byte of the stamp lock of `slot` at `generation`.
pub(crate) fn stamp_byte(slot: u32, generation: u32) -> i64 {
    let generation = generation & ((1 << Token::GEN_BITS) - 1);
    STAMP_LOCK_BASE + (i64::from(slot) << Token::GEN_BITS) + i64::from(generation)
}

/// The peer table's default number of slots: how many handles (processes,
/// or one process's several openings) may be attached to one segment at
/// once with a judgeable token.
pub const DEFAULT_PEER_SLOTS: u32 = 256;

/// `flock` for one byte at `start`.
fn one_byte(kind: libc::c_int, start: i64) -> libc::flock {
    // SAFETY: flock is plain data; zero is a valid value for every field.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = 1;
    fl
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Takes the write lock on byte `at` through `fd`: `Ok(true)` if taken,
/// `Ok(false)` if another description holds it.
pub(crate) fn ofd_try_lock(fd: RawFd, at: i64) -> Result<bool, i32> {
    let fl = one_byte(libc::F_WRLCK, at);
    // SAFETY: `fl` is a valid flock that outlives the call; fcntl reads it.
    if unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) } == 0 {
        return Ok(true);
    }
    match errno() {
        libc::EAGAIN | libc::EACCES => Ok(false),
        e => Err(e),
    }
}

/// Releases byte `at`'s lock held through `fd`.
pub(crate) fn ofd_unlock(fd: RawFd, at: i64) {
    let fl = one_byte(libc::F_UNLCK, at);
    // SAFETY: as in `ofd_try_lock`.
    unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) };
}

/// Whether a description other than `fd`'s holds a lock on byte `at`.
pub(crate) fn ofd_held_by_other(fd: RawFd, at: i64) -> Result<bool, i32> {
    let mut fl = one_byte(libc::F_WRLCK, at);
    // SAFETY: `fl` is a valid, writable flock; F_OFD_GETLK fills it in.
    if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) } != 0 {
        return Err(errno());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// A new file description of the file behind `fd` (not a `dup`, which
/// would share the description and its locks). Allocation-free: it runs
/// on a queue's first operation in a forked child.
pub(crate) fn reopen(fd: RawFd, writable: bool) -> Result<RawFd, i32> {
    let mut path = [0u8; 32];
    let prefix = b"/proc/self/fd/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut n, mut k) = (fd.max(0) as u32, 0);
    loop {
        digits[k] = b'0' + (n % 10) as u8;
        k += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut len = prefix.len();
    while k > 0 {
        k -= 1;
        path[len] = digits[k];
        len += 1;
    }
    // path[len] is already 0: the terminating NUL.
    let mode = if writable {
        libc::O_RDWR
    } else {
        libc::O_RDONLY
    };
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let new = unsafe { libc::open(path.as_ptr().cast(), mode | libc::O_CLOEXEC) };
    if new < 0 {
        Err(errno())
    } else {
        Ok(new)
    }
}

struct FdLocks(RawFd);

impl SlotLocks for FdLocks {
    fn try_take(&self, slot: u32) -> Result<bool, i32> {
        ofd_try_lock(self.0, SLOT_LOCK_BASE + i64::from(slot))
    }

    fn try_stamp(&self, slot: u32, generation: u32) -> Result<bool, i32> {
        ofd_try_lock(self.0, stamp_byte(slot, generation))
    }

    fn stamp_held_by_other(&self, slot: u32, generation: u32) -> Result<bool, i32> {
        ofd_held_by_other(self.0, stamp_byte(slot, generation))
    }
}

/// What this process records about itself in a slot it claims.
fn my_info() -> PeerInfo {
    // SAFETY: a zeroed stat is a valid value for stat to overwrite; the
    // path is a NUL-terminated literal.
    let pidns = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::stat(c"/proc/self/ns/pid".as_ptr(), &mut st) == 0 {
            st.st_ino
        } else {
            0
        }
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let since = (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64);
    PeerInfo {
        pid: std::process::id(),
        pidns,
        since,
    }
}

/// A process's presence in one mapping (see the module docs).
pub(crate) struct Presence {
    table: PeerTable<'static>,
    /// The mapping's own descriptor (owned by the mapping, which outlives
    /// us): the file to open descriptions of.
    map_fd: RawFd,
    writable: bool,
    /// `(fork generation + 1) << 32 | token`, 0 before the first claim.
    state: AtomicU64,
    /// Our slot-lock description + 1 (0: none), valid in the fork
    /// generation `state` records.
    lock_fd: AtomicU32,
    /// Whether `lock_fd` is listed in [`FORK_CLOSE`] (so a forked child
    /// has it closed for it).
    listed: AtomicU32,
    /// A description for judging when we hold no slot: `(fork generation
    /// + 1) << 32 | fd + 1`, 0 if none.
    query: AtomicU64,
    /// Serialises claims in this process: `fork generation + 1` of the
    /// claimer, 0 when free. A holder from an older generation is a thread
    /// of the parent that does not exist in this child.
    claiming: AtomicU32,
    /// Why the last claim failed: 0, or a [`ClaimProblem`] code.
    problem: AtomicU64,
    /// `(fork generation + 1) << 32 | base`: in that generation, handle
    /// records made in generations `base..=` it (each `+ 1`) are counted
    /// in our slot, because each fork since `base` copied its parent's
    /// counts into the child's slot (see [`fork_prepare`]); 0 if none.
    inherit: AtomicU64,
    /// The fork generation + 1 in which our counts stopped going down: a
    /// fork found no slot to copy them into for its child, which may hold
    /// any of our handles (0: never). Late end-of-stream, never a false one.
    pinned: AtomicU32,
}

// SAFETY: the table is atomics in shared memory; every other field is an
// atomic.
unsafe impl Sync for Presence {}
// SAFETY: as above; nothing is tied to a thread.
unsafe impl Send for Presence {}

/// Why a process holds no slot of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimProblem {
    /// A new description of the file could not be opened (errno).
    Reopen(i32),
    /// Every slot is held by a live process.
    Full(u32),
    /// The kernel refused the slot lock (errno).
    Refused(i32),
}

impl std::fmt::Display for ClaimProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClaimProblem::Reopen(e) => write!(
                f,
                "could not open /proc/self/fd/N for a lock description: {}",
                std::io::Error::from_raw_os_error(*e)
            ),
            ClaimProblem::Full(n) => write!(f, "all {n} peer slots are held by live processes"),
            ClaimProblem::Refused(e) => write!(
                f,
                "the kernel refused an F_OFD_SETLK lock: {}",
                std::io::Error::from_raw_os_error(*e)
            ),
        }
    }
}

impl ClaimProblem {
    fn code(self) -> u64 {
        match self {
            ClaimProblem::Reopen(e) => 1 << 32 | e as u32 as u64,
            ClaimProblem::Full(n) => 2 << 32 | u64::from(n),
            ClaimProblem::Refused(e) => 3 << 32 | e as u32 as u64,
        }
    }

    fn from_code(c: u64) -> Option<ClaimProblem> {
        let v = c as u32;
        match c >> 32 {
            1 => Some(ClaimProblem::Reopen(v as i32)),
            2 => Some(ClaimProblem::Full(v)),
            3 => Some(ClaimProblem::Refused(v as i32)),
            _ => None,
        }
    }
}

impl Presence {
    /// A presence over the peer table at `table` (of `slots` slots, which
    /// the caller validated against the mapping), for the file `map_fd`.
    ///
    /// # Safety
    ///
    /// `table` is valid for the whole table, inside a mapping that outlives
    /// the presence; `map_fd` stays open as long.
    pub(crate) unsafe fn new(table: *mut u8, slots: u32, map_fd: RawFd, writable: bool) -> Self {
        Presence {
            // SAFETY: forwarded contract; the 'static stands for "as long
            // as the mapping", which owns us.
            table: unsafe { PeerTable::from_ptr(table, slots) },
            map_fd,
            writable,
            state: AtomicU64::new(0),
            lock_fd: AtomicU32::new(0),
            listed: AtomicU32::new(0),
            query: AtomicU64::new(0),
            claiming: AtomicU32::new(0),
            problem: AtomicU64::new(0),
            inherit: AtomicU64::new(0),
            pinned: AtomicU32::new(0),
        }
    }

    /// Our token, if we claimed one in this fork generation.
    fn claimed(&self) -> Option<Token> {
        let s = self.state.load(Ordering::Acquire);
        let gen = u64::from(peers::fork_generation()) + 1;
        if s >> 32 == gen {
            Token::from_raw(s as u32)
        } else {
            None
        }
    }

    /// Our token, if this process has claimed one here (never claims).
    pub(crate) fn claimed_token(&self) -> Option<Token> {
        self.claimed()
    }

    /// The pid the holder of `token`'s slot recorded (as its own pid
    /// namespace numbers it), if the token names a slot.
    pub(crate) fn peer_pid(&self, token: Token) -> Option<u32> {
        self.table.slot(token.slot()?).map(|s| s.info().pid)
    }

    /// A description of `token`'s holder for people: its slot, the pid and
    /// pid namespace it recorded, and its fate.
    pub(crate) fn describe(&self, token: Token) -> String {
        if self.claimed() == Some(token) {
            return match self.claim_problem() {
                None => format!("{token} (this process)"),
                Some(p) => format!("this process, which holds no peer slot ({p})"),
            };
        }
        let fate = self.fate(token);
        match token.slot().and_then(|i| self.table.slot(i)) {
            Some(slot) => {
                let info = slot.info();
                let mine = my_info();
                if fate == Fate::Alive && info.pid == mine.pid && info.pidns == mine.pidns {
                    return format!("{token} (this process, through another handle)");
                }
                let ns = if info.pidns == 0 {
                    String::new()
                } else {
                    format!(" in pid namespace {}", info.pidns)
                };
                format!("{token}: pid {}{ns}, {fate}", info.pid)
            }
            None => format!("{token}, {fate}"),
        }
    }

    /// Why this process has no judgeable token here, if it has none.
    pub(crate) fn claim_problem(&self) -> Option<ClaimProblem> {
        ClaimProblem::from_code(self.problem.load(Ordering::Relaxed))
    }

    /// Claims this process's slot, under the process-local claim lock
    /// (`claiming`), unless another thread of it just did.
    ///
    /// SYNC POINT: the AcqRel compare-and-swap that takes `claiming` pairs
    /// with the Release store that frees it (here, in the previous
    /// claimer), so each claimer sees what the one before it did.
    #[cold]
    fn claim(&self) -> Token {
        let gen = peers::fork_generation() + 1;
        // Take the process-local claim lock (see `claiming`).
        loop {
            let cur = self.claiming.load(Ordering::Acquire);
            if cur == gen {
                std::thread::sleep(Duration::from_micros(50));
                if let Some(t) = self.claimed() {
                    return t;
                }
                continue;
            }
            // SYNC POINT: AcqRel (paired in the doc comment above).
            if self
                .claiming
                .compare_exchange(cur, gen, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
        }
        let token = match self.claimed() {
            Some(t) => t,
            None => self.claim_locked(gen),
        };
        // SYNC POINT: Release (paired in the doc comment above).
        self.claiming.store(0, Ordering::Release);
        token
    }

    /// Claims a slot for fork generation `gen`, with `claiming` held.
    ///
    /// SYNC POINT: the Release store of `state` pairs with the Acquire load
    /// in [`Self::claimed`]: whoever sees the token sees the slot and the
    /// descriptor behind it.
    fn claim_locked(&self, gen: u32) -> Token {
        let old = self.state.load(Ordering::Relaxed);
        if old != 0 && old >> 32 != u64::from(gen) {
            // Claimed in an ancestor of this process. If its description
            // was not closed by the fork handler, close our copy now (it
            // is ours to close: the number was not reused, since the
            // handler only closes what it lists).
            let fd = self.lock_fd.load(Ordering::Relaxed);
            if fd != 0 && self.listed.load(Ordering::Relaxed) == 0 {
                // SAFETY: an inherited descriptor nobody else in this
                // process uses.
                unsafe { libc::close(fd as RawFd - 1) };
            }
            self.lock_fd.store(0, Ordering::Relaxed);
            self.listed.store(0, Ordering::Relaxed);
        }
        let result = self.try_claim();
        let token = match result {
            Ok(t) => {
                self.problem.store(0, Ordering::Relaxed);
                t
            }
            Err(p) => {
                self.problem.store(p.code(), Ordering::Relaxed);
                peers::local_token()
            }
        };
        // SYNC POINT: Release (paired in the doc comment above).
        self.state.store(
            u64::from(gen) << 32 | u64::from(token.raw()),
            Ordering::Release,
        );
        token
    }

    fn try_claim(&self) -> Result<Token, ClaimProblem> {
        if !self.writable {
            return Err(ClaimProblem::Refused(libc::EBADF));
        }
        let (fd, listed) = open_listed(self.map_fd)?;
        let start = std::process::id().wrapping_mul(2654435761) % self.table.len().max(1);
        match self.table.claim(&FdLocks(fd), start, my_info()) {
            Ok(token) => {
                self.lock_fd.store(fd as u32 + 1, Ordering::Relaxed);
                self.listed.store(u32::from(listed), Ordering::Relaxed);
                Ok(token)
            }
            Err(e) => {
                close_listed(fd, listed);
                Err(match e {
                    ClaimError::Full { slots } => ClaimProblem::Full(slots),
                    ClaimError::System(errno) => ClaimProblem::Refused(errno),
                })
            }
        }
    }

    /// A description to judge through: our slot-lock one if we hold a slot
    /// in this fork generation, else a lock-free one opened for the
    /// purpose.
    ///
    /// SYNC POINT: the query descriptor is published by the AcqRel
    /// compare-and-swap of `query`, which pairs with the Acquire load of
    /// `query` here in another thread (and with the swap in
    /// [`Self::release`]): whoever reads the number sees the descriptor
    /// opened.
    fn judge_fd(&self) -> Result<RawFd, i32> {
        if self.claimed().is_some() {
            let fd = self.lock_fd.load(Ordering::Relaxed);
            if fd != 0 {
                return Ok(fd as RawFd - 1);
            }
        }
        let gen = u64::from(peers::fork_generation()) + 1;
        let q = self.query.load(Ordering::Acquire);
        if q >> 32 == gen && q as u32 != 0 {
            return Ok((q as u32 - 1) as RawFd);
        }
        // A description with no locks: inherited from the parent is fine
        // too, but a fresh one costs nothing on this slow path.
        let fd = reopen(self.map_fd, self.writable)?;
        let new = gen << 32 | u64::from(fd as u32 + 1);
        // SYNC POINT: AcqRel (paired in the doc comment above).
        match self
            .query
            .compare_exchange(q, new, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                if q as u32 != 0 {
                    // An ancestor's query description, inherited: our copy
                    // holds no locks, and closing it is ours to do.
                    // SAFETY: an inherited descriptor we just replaced.
                    unsafe { libc::close((q as u32 - 1) as RawFd) };
                }
                Ok(fd)
            }
            Err(won) => {
                // SAFETY: ours, unused.
                unsafe { libc::close(fd) };
                Ok((won as u32 - 1) as RawFd)
            }
        }
    }

    /// Releases our slot (the mapping is going away), unless our counts
    /// are pinned: then its description stays open (and the slot ours)
    /// for as long as this process lives, since a child we forked may
    /// hold any of our handles and only this slot counts them.
    pub(crate) fn release(&self) {
        let s = self.state.load(Ordering::Acquire);
        if s != 0 && self.claimed().is_none() && self.listed.load(Ordering::Relaxed) == 0 {
            // Claimed by an ancestor and not closed by the fork handler:
            // our inherited copy keeps the ancestor looking alive; drop it.
            let fd = self.lock_fd.swap(0, Ordering::Relaxed);
            if fd != 0 {
                // SAFETY: an inherited descriptor nobody else here uses.
                unsafe { libc::close(fd as RawFd - 1) };
            }
        }
        let pinned = self.pinned.load(Ordering::Relaxed) == peers::fork_generation() + 1;
        if self.claimed().is_some() && !pinned {
            let fd = self.lock_fd.swap(0, Ordering::Relaxed);
            if fd != 0 {
                // Closing the description drops its lock: we are gone.
                close_listed(fd as RawFd - 1, self.listed.load(Ordering::Relaxed) != 0);
            }
        }
        // SYNC POINT: AcqRel: takes the query descriptor from under the
        // Acquire load in `judge_fd` (paired in its doc comment).
        let q = self.query.swap(0, Ordering::AcqRel);
        if q >> 32 == u64::from(peers::fork_generation()) + 1 && q as u32 != 0 {
            // SAFETY: our own descriptor.
            unsafe { libc::close((q as u32 - 1) as RawFd) };
        }
    }
}

impl Peers for Presence {
    #[inline]
    fn me(&self) -> Token {
        match self.claimed() {
            Some(t) => t,
            None => self.claim(),
        }
    }

    fn fate(&self, token: Token) -> Fate {
        let mine = self.claimed();
        match self.judge_fd() {
            Ok(fd) => self.table.fate(&FdLocks(fd), mine, token),
            Err(_) => {
                if mine == Some(token) {
                    Fate::Alive
                } else {
                    Fate::Unknown("no file description to ask the kernel about slot locks")
                }
            }
        }
    }

    /// Counts the end in our own slot (claiming one first if this process
    /// has none here yet); not recorded without a judgeable slot.
    fn add_end(&self, lane: u32, end: End) -> bool {
        match self.me().slot() {
            Some(slot) => self.table.add_end(slot, lane, end),
            None => false,
        }
    }

    /// Takes one count off our slot, unless a fork could not copy our
    /// counts for its child (see `pinned`).
    fn remove_end(&self, lane: u32, end: End) {
        if self.pinned.load(Ordering::Relaxed) == peers::fork_generation() + 1 {
            return;
        }
        if let Some(slot) = self.claimed().and_then(Token::slot) {
            self.table.remove_end(slot, lane, end);
        }
    }

    fn inherited(&self, generation: u64) -> bool {
        let gen = u64::from(peers::fork_generation()) + 1;
        let i = self.inherit.load(Ordering::Relaxed);
        i >> 32 == gen
            && self.claimed().is_some()
            && (u64::from(i as u32)..=gen).contains(&generation)
    }

    fn ends_enter(&self) {
        ends_gate_enter();
    }

    fn ends_exit(&self) {
        ends_gate_exit();
    }

    /// A scan of the table: one `F_OFD_GETLK` per other slot that records
    /// the end. Without a description to ask through, every recording slot
    /// counts as alive.
    fn end_alive(&self, lane: u32, end: End) -> bool {
        let mine = self.claimed();
        match self.judge_fd() {
            Ok(fd) => self.table.end_alive(&FdLocks(fd), mine, lane, end),
            Err(_) => (0..self.table.len()).any(|i| {
                self.table
                    .slot(i)
                    .is_some_and(|s| s.end_count(lane, end) != 0)
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// Descriptors a forked child must close
// ---------------------------------------------------------------------------

/// How many slot-lock descriptors the fork handler can know of. A process
/// with more (a mapping more) still works; a child it forks keeps those
/// extra parents' locks alive until it execs or exits.
const FORK_CLOSE_LEN: usize = 4096;

/// Slot-lock descriptors (`fd + 1`; 0 is a free entry) that a forked child
/// closes (see the module docs).
static FORK_CLOSE: [AtomicU32; FORK_CLOSE_LEN] = [const { AtomicU32::new(0) }; FORK_CLOSE_LEN];

fn install_fork_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handlers only use atomics and close/raw memory
        // operations, which is fine around fork.
        unsafe {
            libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(in_forked_child))
        };
    });
}

extern "C" fn in_forked_child() {
    for e in &FORK_CLOSE {
        let v = e.swap(0, Ordering::Relaxed);
        if v != 0 {
            // SAFETY: an inherited slot-lock descriptor; the child's copy
            // is its own to close, and close is async-signal-safe.
            unsafe { libc::close(v as RawFd - 1) };
        }
    }
    adopt_in_child();
    registry_unlock_after_fork();
    // The forking thread is the only one here, and it is in no change.
    ENDS_GATE.store(0, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// End counts a forked child inherits
// ---------------------------------------------------------------------------
//
// A handle recorded in the parent's slot is in the child's memory too; the
// parent may drop its copy as soon as `fork` returns (`shmipc::fork(move
// || ..)` does). So that no receiver sees the end gone in between, the
// child's copies are counted before the fork: the prepare handler claims a
// fresh slot for the child through a new description, copies the parent's
// `ends` word into it, and the child handler adopts that slot as its own
// (the parent handler closes the parent's copy of the description, so the
// slot's locks live exactly as long as the child). Inherited handles then
// count as recorded in the child (`Peers::inherited`), and dropping them
// there takes the counts off the child's slot.

/// The child is being forked: set while the prepare handler copies.
const FORKING: u32 = 1 << 31;

/// [`FORKING`], plus how many threads are changing end records now.
static ENDS_GATE: AtomicU32 = AtomicU32::new(0);

/// Enters a change of end records; waits while a fork copies them.
///
/// SYNC POINT: the Acquire compare-and-swap pairs with the Release
/// `fetch_and` in [`fork_parent`] (a change after a fork sees what the
/// fork did) and the Release `fetch_sub` in [`ends_gate_exit`] pairs with
/// the Acquire loads in [`fork_prepare`] (the copy sees every finished
/// change).
fn ends_gate_enter() {
    loop {
        let v = ENDS_GATE.load(Ordering::Relaxed);
        if v & FORKING != 0 {
            std::thread::yield_now();
            continue;
        }
        // SYNC POINT: Acquire (paired in the doc comment above).
        if ENDS_GATE
            .compare_exchange_weak(v, v + 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

fn ends_gate_exit() {
    // SYNC POINT: Release (paired in `ends_gate_enter`'s doc comment).
    ENDS_GATE.fetch_sub(1, Ordering::Release);
}

/// How many mappings' counts one fork can copy. Beyond it (and when the
/// table has no free slot) the parent's counts are pinned instead (see
/// `Presence::pinned`), and the child's handles count from their first
/// use.
const PENDING_LEN: usize = 1024;

/// A slot claimed for the child being forked.
struct Pending {
    presence: AtomicUsize,
    /// The new description (open in the parent until the parent handler).
    fd: AtomicU32,
    token: AtomicU32,
    /// The parent's fork generation + 1.
    gen: AtomicU32,
    /// The child's first generation (+ 1) whose records count in the slot.
    base: AtomicU32,
}

static PENDING: [Pending; PENDING_LEN] = [const {
    Pending {
        presence: AtomicUsize::new(0),
        fd: AtomicU32::new(0),
        token: AtomicU32::new(0),
        gen: AtomicU32::new(0),
        base: AtomicU32::new(0),
    }
}; PENDING_LEN];
static PENDING_USED: AtomicUsize = AtomicUsize::new(0);

/// The prepare handler: no end record changes from here to the parent
/// (child) handler, the registry is held, and every registered presence
/// whose slot counts ends gets a slot for the child with a copy of them.
///
/// SYNC POINT: the Acquire loads of the gate pair with the Release in
/// [`ends_gate_exit`] (paired in `ends_gate_enter`'s doc comment).
extern "C" fn fork_prepare() {
    ENDS_GATE.fetch_or(FORKING, Ordering::Relaxed);
    // SYNC POINT: Acquire (paired in the doc comment above).
    while ENDS_GATE.load(Ordering::Acquire) & !FORKING != 0 {
        std::thread::yield_now();
    }
    registry_lock();
    let len = REGISTRY_LEN_USED.load(Ordering::Relaxed);
    let mut used = 0;
    for e in &REGISTRY[..len] {
        let p = e.presence.load(Ordering::Relaxed);
        if p == 0 {
            continue;
        }
        // SAFETY: a registered presence is valid until unregistered, which
        // takes the registry lock we hold.
        let presence: &Presence = unsafe { &*(p as *const Presence) };
        if let Some((fd, token, gen, base)) = presence.copy_for_child(used < PENDING_LEN) {
            let slot = &PENDING[used];
            slot.presence.store(p, Ordering::Relaxed);
            slot.fd.store(fd as u32, Ordering::Relaxed);
            slot.token.store(token.raw(), Ordering::Relaxed);
            slot.gen.store(gen, Ordering::Relaxed);
            slot.base.store(base, Ordering::Relaxed);
            used += 1;
        }
    }
    PENDING_USED.store(used, Ordering::Relaxed);
}

/// The parent handler: the child has its copies (or the fork failed):
/// close our descriptions of the child's slots, free the registry and let
/// end records change again.
///
/// SYNC POINT: the Release `fetch_and` pairs with the Acquire
/// compare-and-swap in [`ends_gate_enter`].
extern "C" fn fork_parent() {
    let used = PENDING_USED.swap(0, Ordering::Relaxed);
    for slot in &PENDING[..used] {
        // SAFETY: the description the prepare handler opened; the child
        // has its own copy.
        unsafe { libc::close(slot.fd.load(Ordering::Relaxed) as RawFd) };
    }
    registry_unlock_after_fork();
    // SYNC POINT: Release (paired in the doc comment above).
    ENDS_GATE.fetch_and(!FORKING, Ordering::Release);
}

/// In the child: adopt the slots the prepare handler claimed for us.
fn adopt_in_child() {
    let used = PENDING_USED.swap(0, Ordering::Relaxed);
    for slot in &PENDING[..used] {
        let p = slot.presence.load(Ordering::Relaxed);
        // SAFETY: registered when the prepare handler ran, and nothing of
        // the parent's unregistering can run in the child.
        let presence: &Presence = unsafe { &*(p as *const Presence) };
        presence.adopt(
            slot.fd.load(Ordering::Relaxed) as RawFd,
            slot.token.load(Ordering::Relaxed),
            slot.gen.load(Ordering::Relaxed),
            slot.base.load(Ordering::Relaxed),
        );
    }
}

impl Presence {
    /// In the prepare handler: if our slot counts ends, claims a slot for
    /// the child through a new description and copies the counts into it.
    /// Returns `(fd, token, our generation + 1, the child's base)`; `None`
    /// if there is nothing to copy, or no slot to copy into (`room` is
    /// false, the table is full, the kernel refused): then our counts are
    /// pinned (never go down while we live), and the child's handles count
    /// from their first use there.
    fn copy_for_child(&self, room: bool) -> Option<(RawFd, Token, u32, u32)> {
        let s = self.state.load(Ordering::Acquire);
        if s == 0 || !self.writable {
            return None;
        }
        // A claimed state means the fork handlers of `tid` are installed,
        // so asking for the generation registers nothing.
        let gen = peers::fork_generation() + 1;
        if s >> 32 != u64::from(gen) {
            return None;
        }
        let mine = Token::from_raw(s as u32)?.slot()?;
        let ends = self.table.ends_word(mine);
        if ends == 0 {
            return None;
        }
        let pin = || {
            self.pinned.store(gen, Ordering::Relaxed);
            None
        };
        if !room {
            return pin();
        }
        let Ok(fd) = reopen(self.map_fd, true) else {
            return pin();
        };
        let start = (mine + 1) % self.table.len().max(1);
        match self.table.claim(&FdLocks(fd), start, my_info()) {
            Ok(token) => {
                let Some(slot) = token.slot() else {
                    // SAFETY: ours, unused.
                    unsafe { libc::close(fd) };
                    return pin();
                };
                self.table.set_ends_word(slot, ends);
                let i = self.inherit.load(Ordering::Relaxed);
                let base = if i >> 32 == u64::from(gen) {
                    i as u32
                } else {
                    gen
                };
                Some((fd, token, gen, base))
            }
            Err(_) => {
                // SAFETY: ours, unused.
                unsafe { libc::close(fd) };
                pin()
            }
        }
    }

    /// In the child handler: make the slot the prepare handler claimed
    /// through `fd` ours (`gen` is the parent's generation + 1).
    ///
    /// SYNC POINT: the Release store of `state`, as in
    /// [`Self::claim_locked`].
    fn adopt(&self, fd: RawFd, token: u32, gen: u32, base: u32) {
        let old = self.lock_fd.load(Ordering::Relaxed);
        if old != 0 && self.listed.load(Ordering::Relaxed) == 0 {
            // The parent's slot description, unlisted (so not closed by
            // the loop before us): our copy would keep the parent alive.
            // SAFETY: an inherited descriptor nobody else here uses;
            // close is async-signal-safe.
            unsafe { libc::close(old as RawFd - 1) };
        }
        self.lock_fd.store(fd as u32 + 1, Ordering::Relaxed);
        self.listed
            .store(u32::from(fork_close_add(fd)), Ordering::Relaxed);
        if let Some(slot) = Token::from_raw(token).and_then(Token::slot) {
            // SAFETY: getpid cannot fail.
            self.table.set_pid(slot, unsafe { libc::getpid() } as u32);
        }
        self.problem.store(0, Ordering::Relaxed);
        let child = u64::from(gen) + 1;
        self.inherit
            .store(child << 32 | u64::from(base), Ordering::Relaxed);
        // SYNC POINT: Release (paired in `claim_locked`'s doc comment).
        self.state
            .store(child << 32 | u64::from(token), Ordering::Release);
    }
}

/// Opens a new description of `map_fd`'s file for slot locks, and lists it
/// in [`FORK_CLOSE`] (if there is room): `(fd, listed)`.
///
/// Both happen under the registry lock, which the fork handler's prepare
/// step takes too, so no fork lands between them: a child forked in that
/// gap would hold a copy of the description unknown to its handler, and
/// with it every lock we then take through it (a dead parent would look
/// alive for as long as the child lives).
fn open_listed(map_fd: RawFd) -> Result<(RawFd, bool), ClaimProblem> {
    // First, outside the lock: installing takes the C library's fork
    // lock, which a fork in another thread holds while its prepare step
    // waits for ours.
    install_fork_handlers();
    registry_lock();
    let r = reopen(map_fd, true).map(|fd| (fd, fork_close_add(fd)));
    registry_unlock();
    r.map_err(ClaimProblem::Reopen)
}

/// Unlists (if `listed`) and closes a slot-lock description, under the
/// registry lock for the reason [`open_listed`] gives: a fork between the
/// two would hand the child a copy its handler no longer knows of.
fn close_listed(fd: RawFd, listed: bool) {
    if !listed {
        // SAFETY: our own descriptor, unused elsewhere.
        unsafe { libc::close(fd) };
        return;
    }
    registry_lock();
    fork_close_remove(fd);
    // SAFETY: our own descriptor, unused elsewhere.
    unsafe { libc::close(fd) };
    registry_unlock();
}

fn fork_close_add(fd: RawFd) -> bool {
    install_fork_handlers();
    let v = fd as u32 + 1;
    FORK_CLOSE.iter().any(|e| {
        e.compare_exchange(0, v, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    })
}

fn fork_close_remove(fd: RawFd) {
    let v = fd as u32 + 1;
    for e in &FORK_CLOSE {
        if e.compare_exchange(v, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// The registry behind `shmipc_core::peers::resolve`
// ---------------------------------------------------------------------------

/// How many mappings a process can register. Mappings beyond it still
/// work, but objects in them resolve to no peers (owners are not judged,
/// so never taken over: late, never wrong).
const REGISTRY_LEN: usize = 8192;

/// One registered mapping: its address range and presence (0 when free).
/// Atomics, but only touched while [`REGISTRY_LOCK`] is held.
struct Entry {
    start: AtomicUsize,
    end: AtomicUsize,
    presence: AtomicUsize,
}

/// 1 while a thread (or a fork in progress) holds the registry.
static REGISTRY_LOCK: AtomicU32 = AtomicU32::new(0);
/// How many entries are in use (a prefix of [`REGISTRY`]).
static REGISTRY_LEN_USED: AtomicUsize = AtomicUsize::new(0);
static REGISTRY: [Entry; REGISTRY_LEN] = [const {
    Entry {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        presence: AtomicUsize::new(0),
    }
}; REGISTRY_LEN];

/// Whether the resolver was installed (once per process).
static INSTALLED: AtomicUsize = AtomicUsize::new(0);

fn registry_lock() {
    while REGISTRY_LOCK
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::thread::yield_now();
    }
}

/// Frees the registry.
///
/// SYNC POINT: the Release store pairs with the Acquire compare-and-swap
/// in [`registry_lock`], so the next holder sees the entries as we left
/// them.
fn registry_unlock() {
    // SYNC POINT: Release (paired in the doc comment above).
    REGISTRY_LOCK.store(0, Ordering::Release);
}

extern "C" fn registry_unlock_after_fork() {
    if REGISTRY_LOCK.load(Ordering::Relaxed) != 0 {
        registry_unlock();
    }
}

fn set(e: &Entry, start: usize, end: usize, presence: usize) {
    e.start.store(start, Ordering::Relaxed);
    e.end.store(end, Ordering::Relaxed);
    e.presence.store(presence, Ordering::Relaxed);
}

/// Registers the mapping `start..end` with its presence, so that objects
/// inside it resolve to it. Returns whether there was room.
///
/// # Safety
///
/// `presence` stays valid until [`unregister`] is called with the same
/// `start`, which happens before the mapping goes away.
pub(crate) unsafe fn register(start: usize, end: usize, presence: *const Presence) -> bool {
    install_fork_handlers();
    // SYNC POINT: AcqRel, a once-flag that carries no data: the resolver
    // itself is published by `set_resolver`'s own Release.
    if INSTALLED.swap(1, Ordering::AcqRel) == 0 {
        shmipc_core::peers::set_resolver(resolve);
    }
    registry_lock();
    let len = REGISTRY_LEN_USED.load(Ordering::Relaxed);
    let ok = len < REGISTRY_LEN;
    if ok {
        set(&REGISTRY[len], start, end, presence as usize);
        REGISTRY_LEN_USED.store(len + 1, Ordering::Relaxed);
    }
    registry_unlock();
    shmipc_core::peers::mappings_changed();
    ok
}

/// Removes the mapping that starts at `start`.
pub(crate) fn unregister(start: usize) {
    registry_lock();
    let len = REGISTRY_LEN_USED.load(Ordering::Relaxed);
    if let Some(i) = REGISTRY[..len]
        .iter()
        .position(|e| e.start.load(Ordering::Relaxed) == start)
    {
        let last = &REGISTRY[len - 1];
        set(
            &REGISTRY[i],
            last.start.load(Ordering::Relaxed),
            last.end.load(Ordering::Relaxed),
            last.presence.load(Ordering::Relaxed),
        );
        set(last, 0, 0, 0);
        REGISTRY_LEN_USED.store(len - 1, Ordering::Relaxed);
    }
    registry_unlock();
    shmipc_core::peers::mappings_changed();
}

fn resolve(addr: usize) -> Option<(usize, usize, &'static dyn Peers)> {
    registry_lock();
    let len = REGISTRY_LEN_USED.load(Ordering::Relaxed);
    let found = REGISTRY[..len].iter().find_map(|e| {
        let (start, end) = (
            e.start.load(Ordering::Relaxed),
            e.end.load(Ordering::Relaxed),
        );
        (start <= addr && addr < end).then(|| (start, end, e.presence.load(Ordering::Relaxed)))
    });
    registry_unlock();
    found.map(|(start, end, p)| {
        // SAFETY: registered presences live until unregistered (the
        // contract of `register`), and the caller holds a reference into
        // the mapping (the contract of `shmipc_core::peers::resolve`).
        let p: &'static Presence = unsafe { &*(p as *const Presence) };
        (start, end, p as &'static dyn Peers)
    })
}
