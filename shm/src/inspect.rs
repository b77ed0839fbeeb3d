//! Looking at a segment without touching it: its header, its peer table,
//! and the live state of the object it holds, as a typed [`Report`].
//!
//! This is what the `shmipc` command-line tool (`ls`, `inspect`, `gc`)
//! is built on, and it refuses what the library refuses with the same
//! errors: a file that is not a shmipc segment is [`Error::NotShmipc`] or
//! [`Error::TooSmall`], a header that does not hold together is
//! [`Error::Corrupted`], and so on — the header goes through the very
//! [`crate::memory::validate_header`] every opener uses.
//!
//! **It changes nothing.** [`Report::open`] opens the file read-only
//! (`O_RDONLY | O_NOFOLLOW`, and `O_NOATIME` where the caller owns the
//! file), reads the bytes it needs with `pread`, and judges each peer with
//! `F_OFD_GETLK` through its own description, which asks the kernel about a
//! lock without taking one. It does not map the segment: reading through
//! the descriptor gives the same bytes a read-only mapping would, and a
//! peer that shrinks the file meanwhile makes a short read (reported as
//! [`Error::Corrupted`]) rather than a `SIGBUS`. It claims no peer slot,
//! takes no lock, wakes no one.
//!
//! **Hostile bytes.** Every number is decoded from a private copy of the
//! bytes, never from a reference into shared memory, and every read stays
//! inside the geometry the validated header states ([`decode`] runs the
//! same decoder on bytes in memory, which is what the fuzz target drives).
//! The objects' own accessors do the decoding where they can: a copy of a
//! lock's 16 bytes is made into a private [`Lock`] whose
//! [`owner`](Lock::owner) says who holds it, and the queues decode their
//! control blocks with [`shmipc_core::mpmc::state_of`] and its siblings. A
//! report taken while the object is in use mixes moments: it is a
//! snapshot for people, not a basis for synchronisation.
//!
//! ```
//! use shmipc::inspect::{Report, State};
//! use shmipc::{Named, Shared, Lock};
//!
//! let name = format!("/shmipc-doc-inspect-{}", std::process::id());
//! let lock = Shared::<Lock>::create(&name, ())?;
//! let guard = lock.lock()?;
//! let report = Report::open(&name)?;
//! match &report.state {
//!     State::Lock(l) => {
//!         let owner = l.owner.as_ref().expect("held");
//!         assert_eq!(owner.pid, Some(std::process::id()));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! drop(guard);
//! shmipc::unlink(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use shmipc_core::bytes::ByteQueue as RawByteQueue;
use shmipc_core::peers::{PeerTable, SlotLocks, MAX_LANES, PEER_SLOT_SIZE};
use shmipc_core::sync::{AtomicU32, AtomicU64};
use shmipc_core::{
    Barrier, BytesConfig, Condition, Event, Lock, RingConfig, Semaphore, SharedObject,
};

pub use shmipc_core::peers::{End, Fate, Token};
pub use shmipc_core::RingState;

use crate::error::{Error, Result};
use crate::memory::header::HEADER_SIZE;
use crate::memory::presence::{ofd_held_by_other, stamp_byte};
use crate::memory::{validate_header, HeaderSnapshot, Kind};

/// How many bytes of an object's start are read to decode its state: more
/// than any control block (the largest, a byte queue's, is under 1 KiB).
const CONTROL_READ: u64 = 4096;
/// The most slots (of an MPMC queue) or records (of a byte ring) a report
/// looks at for [`Report::holds`]: the positions nearest the producers'.
pub const MAX_SCAN: u64 = 1 << 16;
/// The role block in front of an SPSC queue's ring and a pipe's rings.
const ROLES_SIZE: u64 = 128;
/// Where a dict's or list's slots start (after its lock and counters).
const DATA_CONTROL: u64 = 64;

/// The file behind a segment name, as `fstat` saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// The device it lives on (`st_dev`), to match `/proc/*/maps` against.
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
}

/// One used slot of a segment's peer table: a process that attached (and
/// may since have gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The slot's index.
    pub slot: u32,
    /// The slot's generation: how many times it changed hands.
    pub generation: u32,
    /// The pid its latest holder recorded, as that holder's own pid
    /// namespace numbers it.
    pub pid: u32,
    /// The holder's pid namespace (inode of `/proc/self/ns/pid`), 0 if it
    /// could not tell.
    pub pidns: u64,
    /// When it claimed the slot (`CLOCK_MONOTONIC` nanoseconds).
    pub since_ns: u64,
    /// Whether it is alive: its slot's kernel lock is held (judged with
    /// `F_OFD_GETLK`), or [`Fate::Unknown`] and why.
    pub fate: Fate,
    /// How many handles of each end of each lane it recorded as open
    /// (`ends[lane][0]` senders, `ends[lane][1]` receivers; see
    /// [`Peer::handles`]). What end-of-stream is judged by: a dead peer's
    /// counts no longer count.
    pub ends: [[u32; 2]; LANES],
}

/// How many lanes [`Peer::ends`] covers: the queues of one object whose
/// endpoints are counted apart. A pipe's ring from end A to end B is lane
/// 0 and its ring from B to A lane 1; every other queue is lane 0.
pub const LANES: usize = MAX_LANES as usize;

impl Peer {
    /// How many handles of `end` of lane `lane` this peer keeps open
    /// (0 for a lane beyond [`LANES`]).
    pub fn handles(&self, lane: u32, end: End) -> u32 {
        self.ends
            .get(lane as usize)
            .map_or(0, |e| e[end_index(end)])
    }
}

const fn end_index(end: End) -> usize {
    match end {
        End::Sender => 0,
        End::Receiver => 1,
    }
}

/// One process holding an end open ([`EndReport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndHolder {
    /// Its peer slot.
    pub slot: u32,
    /// Its pid, as its own pid namespace numbers it: in another namespace
    /// (a container) this is not the pid this namespace knows it by.
    pub pid: u32,
    /// Its pid namespace (inode of `/proc/self/ns/pid`), 0 if it could not
    /// tell; compare with [`own_pid_namespace`] before using `pid` here.
    pub pidns: u64,
    /// How many handles of the end it keeps open.
    pub handles: u32,
}

/// The processes that hold one end of one lane open, from the peer table
/// ([`Report::end`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndReport {
    /// Live holders (judged alive by the kernel).
    pub alive: Vec<EndHolder>,
    /// Holders judged dead: their handles no longer count.
    pub dead: Vec<EndHolder>,
    /// Holders whose fate could not be judged.
    pub unknown: Vec<EndHolder>,
    /// Handles the live holders keep open.
    pub live_handles: u32,
}

/// This process's pid namespace (inode of `/proc/self/ns/pid`), 0 if it
/// cannot tell: what [`Peer::pidns`] and [`EndHolder::pidns`] are compared
/// with before a recorded pid is taken for one of this namespace.
pub fn own_pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Who holds something (a lock, a role), as the token in the object's
/// words names it, with what the peer table says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// The token the object records.
    pub token: Token,
    /// The pid the token's slot recorded, if the token names a slot of
    /// the table and the slot is still at the token's generation.
    pub pid: Option<u32>,
    /// That holder's pid namespace, likewise (0: unknown).
    pub pidns: Option<u64>,
    /// The holder's fate.
    pub fate: Fate,
}

/// A [`Lock`]'s state (also the lock inside a `Value`, `Array`, dict,
/// list and `Condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockState {
    /// Who holds it, if anyone (`None` also for a not recoverable lock).
    pub owner: Option<Holder>,
    /// The owning thread's kernel id in its own pid namespace (0 if not
    /// yet written, or no owner).
    pub tid: u32,
    /// Whether the owner took it over from a dead one and has not marked
    /// the state consistent yet (`OWNER_DIED`).
    pub owner_died: bool,
    /// Whether it can never be taken again.
    pub unrecoverable: bool,
}

/// A typed queue's state ([`Queue`](crate::Queue),
/// [`SpscQueue`](crate::SpscQueue)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Items it holds when full (from the header's parameters).
    pub capacity: u64,
    /// The size of one item in bytes.
    pub item_size: u64,
    /// The alignment of one item.
    pub item_align: u64,
    /// Items in it now (clamped to `capacity`).
    pub len: u64,
    /// Positions, closed flag and sleepers.
    pub ring: RingState,
    /// For an SPSC queue: the producer's and the consumer's holders.
    pub roles: Option<[Option<Holder>; 2]>,
}

/// A byte ring's state ([`ByteQueue`](crate::ByteQueue), each direction
/// of a [`Pipe`](crate::Pipe)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BytesState {
    /// Bytes in the ring.
    pub capacity: u64,
    /// The largest message.
    pub max_message: u64,
    /// Bytes reserved or committed and not yet claimed by a reader
    /// (clamped to `capacity`).
    pub pending_bytes: u64,
    /// Bytes of the ring in use, held records included (clamped).
    pub used_bytes: u64,
    /// Positions, closed flag and sleepers.
    pub ring: RingState,
    /// Who holds the writers' lock (a reservation being made).
    pub writer_lock: Option<Holder>,
    /// Who holds the readers' lock (a message being claimed).
    pub reader_lock: Option<Holder>,
    /// Whether either lock is not recoverable.
    pub unrecoverable: bool,
}

/// What a [`Hold`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// An MPMC [`Queue`](crate::Queue) slot a producer claimed and has not
    /// published.
    PushClaim,
    /// An MPMC queue slot a consumer claimed and has not freed.
    PopClaim,
    /// A byte-ring record reserved and not committed (a
    /// [`WriteGrant`](crate::WriteGrant) or a send in progress).
    Reserved,
    /// A byte-ring record a reader claimed and has not released (a
    /// [`ReadGrant`](crate::ReadGrant) or a receive in progress).
    Reading,
}

/// A claim or grant some process holds inside a queue: a slot of an MPMC
/// queue, a record of a byte ring. Held by a dead process, it is what a
/// blocking call of a live peer recovers (the queues' crash tables); held
/// by a stopped one, it stays in the way until that one continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// Which ring: 0, or for a [`Pipe`](crate::Pipe) 0 (A to B) or 1.
    pub ring: u8,
    /// The claimed position (items for a queue, bytes for a byte ring).
    pub position: u64,
    /// What is held.
    pub kind: HoldKind,
    /// For a byte-ring record, its payload length.
    pub len: Option<u64>,
    /// Who holds it, as the slot's or record's owner word names it
    /// (`None`: the word names no one).
    pub holder: Option<Holder>,
}

/// What a [`Pool`](crate::Pool)'s worker is doing, as its status entry
/// says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Being started.
    Starting,
    /// Running no task.
    Idle,
    /// Holding a task (running one, or one queued behind).
    Busy,
    /// Ended, and not (yet) replaced.
    Exited,
    /// A value no pool writes.
    Other(u64),
}

/// One worker of a [`Pool`](crate::Pool)'s status segment
/// ([`PoolBuilder::status_name`](crate::PoolBuilder::status_name)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolWorker {
    /// Its entry (0 to the worker count less one).
    pub index: u32,
    /// Its pid, as the supervisor recorded it (0: none yet).
    pub pid: u32,
    /// What it is doing.
    pub state: WorkerState,
    /// How many workers have held this entry (replacements add one).
    pub starts: u64,
    /// The worker's own peer slot in the segment, judged (`None`: it
    /// recorded no token, e.g. a spawned worker, or not yet).
    pub holder: Option<Holder>,
}

/// The live state of a segment's object, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Raw bytes ([`Segment`](crate::Segment)): nothing to decode.
    Bytes,
    /// A [`Lock`].
    Lock(LockState),
    /// A [`Semaphore`].
    Semaphore {
        /// Permits available.
        value: u32,
        /// Its bound, if it has one.
        max: Option<u32>,
        /// Acquirers counted as asleep.
        sleepers: u64,
    },
    /// An [`Event`].
    Event {
        /// Whether it is set.
        set: bool,
    },
    /// An [`AtomicU32`].
    AtomicU32(u32),
    /// An [`AtomicU64`].
    AtomicU64(u64),
    /// A [`Queue`](crate::Queue).
    Queue(QueueState),
    /// An [`SpscQueue`](crate::SpscQueue).
    SpscQueue(QueueState),
    /// A [`ByteQueue`](crate::ByteQueue).
    ByteQueue(BytesState),
    /// A [`Pipe`](crate::Pipe): its two directions (end A to end B, and
    /// back) and the holders of its two ends.
    Pipe {
        /// Ring 0 (A sends, B receives) and ring 1 (B sends, A receives).
        rings: Box<[BytesState; 2]>,
        /// Who holds end A and end B.
        ends: [Option<Holder>; 2],
    },
    /// A [`Value`](crate::Value) or an [`Array`](crate::Array).
    Values {
        /// Its lock.
        lock: LockState,
        /// The size of one element.
        item_size: u64,
        /// How many elements (1 for a `Value`).
        len: u64,
    },
    /// A [`SharedDict`](crate::SharedDict).
    Dict {
        /// Its lock.
        lock: LockState,
        /// Entries it holds when full.
        capacity: u64,
        /// Live entries (the dict's own count, clamped to `capacity`).
        len: u64,
        /// Removed entries still occupying slots (clamped to the slots).
        tombstones: u64,
    },
    /// A [`SharedList`](crate::SharedList).
    List {
        /// Its lock.
        lock: LockState,
        /// Items it holds when full.
        capacity: u64,
        /// Items in it (clamped to `capacity`).
        len: u64,
    },
    /// A [`Condition`].
    Condition {
        /// Its lock.
        lock: LockState,
        /// Waiters counted as asleep.
        sleepers: u32,
    },
    /// A [`Barrier`].
    Barrier {
        /// Parties a round needs.
        parties: u32,
        /// Parties waiting now.
        waiting: u32,
        /// The round's number (15 bits that wrap).
        generation: u32,
        /// Whether it is broken.
        broken: bool,
    },
    /// A [`Pool`](crate::Pool)'s status: its workers.
    PoolStatus(Vec<PoolWorker>),
    /// A kind this build does not know (one a higher layer defined).
    Unknown,
}

/// What [`Report::open`] (or [`decode`]) found in a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The segment's name, with its leading slash.
    pub name: String,
    /// The file, as `fstat` saw it (`None` for [`decode`]d bytes).
    pub file: Option<FileInfo>,
    /// The validated header.
    pub header: HeaderSnapshot,
    /// The peer table's used slots (generation above 0), in slot order.
    pub peers: Vec<Peer>,
    /// The object's live state.
    pub state: State,
    /// Claims and grants held inside a queue's slots or records (empty for
    /// other kinds), in ring and position order.
    pub holds: Vec<Hold>,
    /// Whether [`holds`](Report::holds) covers every slot or record that
    /// may be held: `false` when the scan stopped at its bound
    /// ([`MAX_SCAN`] slots or records) or at a record header that does not
    /// decode (stale or hostile bytes).
    pub holds_complete: bool,
}

impl Report {
    /// Who holds `end` of lane `lane` of the object open (see
    /// [`Peer::ends`]), and whether they live. A queue whose senders are
    /// all dead or gone, once it had one, reports end-of-stream to its
    /// receivers when it is empty.
    pub fn end(&self, lane: u32, end: End) -> EndReport {
        let mut r = EndReport::default();
        for p in &self.peers {
            let n = p.handles(lane, end);
            if n == 0 {
                continue;
            }
            let h = EndHolder {
                slot: p.slot,
                pid: p.pid,
                pidns: p.pidns,
                handles: n,
            };
            match p.fate {
                Fate::Alive => {
                    r.alive.push(h);
                    r.live_handles += n;
                }
                Fate::Dead => r.dead.push(h),
                Fate::Unknown(_) => r.unknown.push(h),
            }
        }
        r
    }

    /// How many [`holds`](Report::holds) are held by a process judged dead.
    pub fn held_by_dead(&self) -> usize {
        self.holds
            .iter()
            .filter(|h| h.holder.is_some_and(|o| o.fate.is_dead()))
            .count()
    }
}

impl Report {
    /// Inspects the segment `name` (with or without its leading slash)
    /// without changing anything (see the module docs).
    ///
    /// Errors as [`Named::open`](crate::Named::open) would give them for
    /// the same file (not found, not shmipc, too small, another layout
    /// version, corrupted, still initialising), plus
    /// [`Error::Corrupted`] if the object is too small for its kind or the
    /// file shrank while it was read.
    pub fn open(name: &str) -> Result<Report> {
        let name = crate::memory::Name::new(name)?;
        let path = name.dev_shm_path();
        let fd = open_read_only(&path, name.as_str())?;
        let file = fstat(&fd, name.as_str())?;
        let source = FileSource {
            fd: &fd,
            size: file.size,
        };
        let mut report = inspect(name.as_str(), &source, Some(fd.as_raw_fd()))?;
        report.file = Some(file);
        Ok(report)
    }
}

/// Whether some process holds the creator's lock byte
/// ([`CREATOR_LOCK`](crate::memory::CREATOR_LOCK)) of the file `name`: a
/// creator still initialising it. What a `.shmipc-tmp-*` file left by the
/// creation fallback is judged by (free: its creator died or gave up).
/// Asked with `F_OFD_GETLK` through a read-only description of our own,
/// which takes no lock.
pub fn creator_lock_held(name: &str) -> Result<bool> {
    let name = crate::memory::Name::new(name)?;
    let fd = open_read_only(&name.dev_shm_path(), name.as_str())?;
    fstat(&fd, name.as_str())?;
    ofd_held_by_other(fd.as_raw_fd(), crate::memory::CREATOR_LOCK).map_err(|e| {
        Error::from_io(
            "fcntl(F_OFD_GETLK)",
            name.as_str(),
            std::io::Error::from_raw_os_error(e),
        )
    })
}

/// Decodes `bytes` as the whole file of a segment named `name`: the
/// decoder [`Report::open`] uses, on bytes in memory (for the fuzz target
/// and for tests). There is no file to ask the kernel about, so every
/// peer's fate is [`Fate::Unknown`].
pub fn decode(name: &str, bytes: &[u8]) -> Result<Report> {
    inspect(name, &SliceSource(bytes), None)
}

/// Where the decoder reads from.
trait Source {
    /// The file's size.
    fn size(&self) -> u64;
    /// Fills `buf` from offset `off`; `false` if the file has fewer bytes.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> bool;
}

struct SliceSource<'a>(&'a [u8]);

impl Source for SliceSource<'_> {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> bool {
        let Ok(start) = usize::try_from(off) else {
            return false;
        };
        match start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

struct FileSource<'a> {
    fd: &'a OwnedFd,
    size: u64,
}

impl Source for FileSource<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, off: u64, buf: &mut [u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let Ok(at) = libc::off_t::try_from(off + done as u64) else {
                return false;
            };
            let rest = &mut buf[done..];
            // SAFETY: `rest` is valid for writes of its length; the
            // descriptor is open.
            let n = unsafe {
                libc::pread(
                    self.fd.as_raw_fd(),
                    rest.as_mut_ptr().cast(),
                    rest.len(),
                    at,
                )
            };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                return false;
            }
            done += n as usize;
        }
        true
    }
}

fn open_read_only(path: &CString, name: &str) -> Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // O_NOATIME keeps even the access time as it was; only the file's
    // owner (or CAP_FOWNER) may ask for it, so fall back without it.
    for extra in [libc::O_NOATIME, 0] {
        // SAFETY: `path` is NUL-terminated and outlives the call.
        let err = match crate::memory::owned(unsafe { libc::open(path.as_ptr(), flags | extra) }) {
            Ok(fd) => return Ok(fd),
            Err(err) => err,
        };
        if extra != 0 && err.raw_os_error() == Some(libc::EPERM) {
            continue;
        }
        return Err(Error::from_name_op("open", name, err));
    }
    Err(Error::from_name_op(
        "open",
        name,
        std::io::Error::from_raw_os_error(libc::EPERM),
    ))
}

fn fstat(fd: &OwnedFd, name: &str) -> Result<FileInfo> {
    let st = crate::memory::fstat(fd, name)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Error::NotShmipc {
            name: name.to_owned(),
        });
    }
    Ok(FileInfo {
        size: u64::try_from(st.st_size).unwrap_or(0),
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// The decoder: header, peer table, object.
fn inspect(name: &str, src: &dyn Source, fd: Option<RawFd>) -> Result<Report> {
    let size = src.size();
    let mut head = [0u8; HEADER_SIZE as usize];
    let got = (size.min(HEADER_SIZE)) as usize;
    if !src.read_at(0, &mut head[..got]) {
        return Err(shrank(name));
    }
    // The header's own kind: this is an inspector, it takes any kind, and
    // validate_header then checks everything else the library checks.
    let kind = HeaderSnapshot::from_bytes(&head).kind();
    let header = validate_header(&head[..got], size, kind, name, |_| Ok(()))?;

    // The peer table: validate_header checked that it lies inside the
    // file, with 1 to Token::MAX_SLOTS slots.
    let slots = header.peer_slots;
    let mut table_words = vec![0u64; PeerTable::size(slots) / 8];
    if !src.read_at(
        header.peers_offset,
        bytemuck::cast_slice_mut(&mut table_words),
    ) {
        return Err(shrank(name));
    }
    let judge = Judge::new(&mut table_words, slots, fd);
    let peers = judge.peers();

    let obj = Object {
        name,
        src,
        start: header.object_offset,
        size: header.object_size,
    };
    let state = decode_state(&header, &obj, &judge)?;
    let mut holds = Vec::new();
    let holds_complete = decode_holds(&header, &obj, &state, &judge, &mut holds)?;
    Ok(Report {
        name: name.to_owned(),
        file: None,
        header,
        peers,
        state,
        holds,
        holds_complete,
    })
}

fn shrank(name: &str) -> Error {
    Error::corrupted(
        name,
        "the file is shorter than its header says (it shrank while it was read)",
    )
}

fn too_small_for_kind(name: &str) -> Error {
    Error::corrupted(name, "the object is too small for its kind")
}

fn bad_params(name: &str) -> Error {
    Error::corrupted(name, "the object's parameters are invalid")
}

/// The object's bytes, read on demand within its stated size.
struct Object<'a> {
    name: &'a str,
    src: &'a dyn Source,
    start: u64,
    size: u64,
}

impl Object<'_> {
    /// `len` bytes at `off` of the object, which must lie inside it.
    fn read(&self, off: u64, len: u64) -> Result<Vec<u8>> {
        let end = off
            .checked_add(len)
            .ok_or_else(|| too_small_for_kind(self.name))?;
        if end > self.size {
            return Err(too_small_for_kind(self.name));
        }
        let len = usize::try_from(len).map_err(|_| too_small_for_kind(self.name))?;
        let mut buf = vec![0u8; len];
        if !self.src.read_at(self.start + off, &mut buf) {
            return Err(shrank(self.name));
        }
        Ok(buf)
    }

    /// The object's first bytes, up to [`CONTROL_READ`] from `off`.
    fn control(&self, off: u64) -> Result<Vec<u8>> {
        let avail = self
            .size
            .checked_sub(off)
            .ok_or_else(|| too_small_for_kind(self.name))?;
        self.read(off, avail.min(CONTROL_READ))
    }

    /// A private, aligned copy of the `T` at `off`, read through the
    /// type's own accessors by `f` (every bit pattern is a state of these
    /// atomics-only types, and the copy is ours alone).
    fn with<T: SharedObject, R>(&self, off: u64, f: impl FnOnce(&T) -> R) -> Result<R> {
        let bytes = self.read(off, size_of::<T>() as u64)?;
        with_copy::<T, R>(&bytes, f).ok_or_else(|| too_small_for_kind(self.name))
    }
}

/// `f` applied to a private, aligned copy of the `T` whose bytes start
/// `bytes`; `None` if `bytes` is too short.
fn with_copy<T: SharedObject, R>(bytes: &[u8], f: impl FnOnce(&T) -> R) -> Option<R> {
    let mut words = [0u64; 8];
    let n = size_of::<T>();
    if n > size_of_val(&words) || align_of::<T>() > 8 {
        return None;
    }
    let dst = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..n];
    dst.copy_from_slice(bytes.get(..n)?);
    let obj = T::from_bytes_mut(dst).ok()?;
    Some(f(obj))
}

/// Judges tokens against a private copy of the peer table.
struct Judge<'a> {
    table: PeerTable<'a>,
    fd: Option<RawFd>,
}

/// `F_OFD_GETLK` on the slot bytes through the inspector's own
/// description, which holds no locks.
struct GetLk(RawFd);

impl SlotLocks for GetLk {
    fn try_take(&self, _slot: u32) -> std::result::Result<bool, i32> {
        // The inspector never claims a slot.
        Err(libc::EBADF)
    }

    fn try_stamp(&self, _slot: u32, _generation: u32) -> std::result::Result<bool, i32> {
        // Nor a stamp.
        Err(libc::EBADF)
    }

    fn stamp_held_by_other(&self, slot: u32, generation: u32) -> std::result::Result<bool, i32> {
        ofd_held_by_other(self.0, stamp_byte(slot, generation))
    }
}

impl<'a> Judge<'a> {
    fn new(words: &'a mut [u64], slots: u32, fd: Option<RawFd>) -> Judge<'a> {
        let slots = slots.min((words.len() * 8 / PEER_SLOT_SIZE) as u32);
        // SAFETY: `words` is ours alone for 'a, 8-aligned and holds
        // `slots` slots (clamped just above); a peer table is atomics
        // only, valid for any bytes.
        let table = unsafe { PeerTable::from_ptr(words.as_mut_ptr().cast(), slots) };
        Judge { table, fd }
    }

    fn fate(&self, token: Token) -> Fate {
        match self.fd {
            Some(fd) => self.table.fate(&GetLk(fd), None, token),
            None => Fate::Unknown("decoded from bytes: there is no file to ask the kernel"),
        }
    }

    fn peers(&self) -> Vec<Peer> {
        (0..self.table.len())
            .filter_map(|i| {
                let slot = self.table.slot(i)?;
                let generation = slot.generation();
                if generation == 0 {
                    return None;
                }
                let info = slot.info();
                let token = Token::new(i, generation)?;
                Some(Peer {
                    slot: i,
                    generation,
                    pid: info.pid,
                    pidns: info.pidns,
                    since_ns: info.since,
                    fate: self.fate(token),
                    ends: core::array::from_fn(|lane| {
                        [End::Sender, End::Receiver].map(|e| slot.end_count(lane as u32, e))
                    }),
                })
            })
            .collect()
    }

    fn holder(&self, token: Token) -> Holder {
        let info = token
            .slot()
            .and_then(|i| self.table.slot(i))
            .filter(|s| token.matches_generation(s.generation()))
            .map(|s| s.info());
        Holder {
            token,
            pid: info.map(|i| i.pid),
            pidns: info.map(|i| i.pidns),
            fate: self.fate(token),
        }
    }

    /// The holder a role word (a raw token, 0 when free) names.
    fn role(&self, raw: u32) -> Option<Holder> {
        Token::from_raw(raw).map(|t| self.holder(t))
    }

    fn lock(&self, lock: &Lock) -> LockState {
        let owner = lock.owner();
        LockState {
            owner: owner.map(|o| self.holder(o.token)),
            tid: owner.map_or(0, |o| o.tid),
            owner_died: owner.is_some_and(|o| o.repairing),
            unrecoverable: lock.is_unrecoverable(),
        }
    }
}

fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        bytes.get(off..off + 4)?.try_into().ok()?,
    ))
}

fn decode_state(h: &HeaderSnapshot, obj: &Object<'_>, judge: &Judge<'_>) -> Result<State> {
    let name = obj.name;
    Ok(match h.kind() {
        Kind::BYTES => State::Bytes,
        Kind::LOCK => State::Lock(obj.with::<Lock, _>(0, |l| judge.lock(l))?),
        Kind::SEMAPHORE => obj.with::<Semaphore, _>(0, |s| State::Semaphore {
            value: s.value(),
            max: s.max(),
            sleepers: s.sleepers(),
        })?,
        Kind::EVENT => obj.with::<Event, _>(0, |e| State::Event { set: e.is_set() })?,
        Kind::ATOMIC_U32 => obj.with::<AtomicU32, _>(0, |a| {
            State::AtomicU32(a.load(shmipc_core::sync::Ordering::Relaxed))
        })?,
        Kind::ATOMIC_U64 => obj.with::<AtomicU64, _>(0, |a| {
            State::AtomicU64(a.load(shmipc_core::sync::Ordering::Relaxed))
        })?,
        Kind::QUEUE => State::Queue(queue_state(name, h, || {
            Ok((shmipc_core::mpmc::state_of(&obj.control(0)?), None))
        })?),
        Kind::SPSC_QUEUE => State::SpscQueue(queue_state(name, h, || {
            let roles = roles(obj, judge)?;
            let ring = shmipc_core::spsc::state_of(&obj.control(ROLES_SIZE)?);
            Ok((ring, Some(roles)))
        })?),
        Kind::BYTE_QUEUE => {
            let config = bytes_config(name, h)?;
            State::ByteQueue(byte_ring(obj, 0, config, judge)?)
        }
        Kind::PIPE => {
            let config = bytes_config(name, h)?;
            let ring_size = ring_size(name, config)?;
            let ends = roles(obj, judge)?;
            State::Pipe {
                rings: Box::new([
                    byte_ring(obj, ROLES_SIZE, config, judge)?,
                    byte_ring(obj, ROLES_SIZE + ring_size, config, judge)?,
                ]),
                ends,
            }
        }
        Kind::VALUE | Kind::ARRAY => State::Values {
            lock: obj.with::<Lock, _>(0, |l| judge.lock(l))?,
            item_size: h.params[0] & 0xffff_ffff,
            len: h.params[1],
        },
        Kind::DICT | Kind::LIST => {
            let control = obj.read(0, DATA_CONTROL)?;
            let lock = obj.with::<Lock, _>(0, |l| judge.lock(l))?;
            let capacity = h.params[0];
            let len = u64::from(u32_at(&control, 16).unwrap_or(0)).min(capacity);
            if h.kind() == Kind::DICT {
                State::Dict {
                    lock,
                    capacity,
                    len,
                    tombstones: u64::from(u32_at(&control, 20).unwrap_or(0)).min(h.params[1]),
                }
            } else {
                State::List {
                    lock,
                    capacity,
                    len,
                }
            }
        }
        Kind::CONDITION => obj.with::<Condition, _>(0, |c| State::Condition {
            lock: judge.lock(c.raw_lock()),
            sleepers: c.sleepers(),
        })?,
        Kind::BARRIER => obj.with::<Barrier, _>(0, |b| State::Barrier {
            parties: b.parties(),
            waiting: b.n_waiting(),
            generation: b.generation(),
            broken: b.is_broken(),
        })?,
        Kind::POOL_STATUS => State::PoolStatus(pool_workers(h, obj, judge)?),
        _ => State::Unknown,
    })
}

/// A pool status segment's worker entries (see `process::pool_status`):
/// as many as the header's count says, each inside the object.
fn pool_workers(
    h: &HeaderSnapshot,
    obj: &Object<'_>,
    judge: &Judge<'_>,
) -> Result<Vec<PoolWorker>> {
    use crate::process::pool_status::{STATUS_ENTRY, STATUS_HEADER};
    let n = h.params[0];
    if n == 0 || n > crate::process::pool_status::MAX_WORKERS || h.params[1..] != [0, 0, 0] {
        return Err(bad_params(obj.name));
    }
    let entry = STATUS_ENTRY as u64;
    let bytes = obj.read(STATUS_HEADER as u64, n * entry)?;
    let word = |e: &[u8], w: usize| {
        e.get(w * 8..w * 8 + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    };
    Ok(bytes
        .chunks_exact(STATUS_ENTRY)
        .enumerate()
        .map(|(i, e)| PoolWorker {
            index: i as u32,
            pid: u32::try_from(word(e, 0)).unwrap_or(u32::MAX),
            state: match word(e, 1) {
                0 => WorkerState::Starting,
                1 => WorkerState::Idle,
                2 => WorkerState::Busy,
                3 => WorkerState::Exited,
                v => WorkerState::Other(v),
            },
            holder: u32::try_from(word(e, 2))
                .ok()
                .and_then(Token::from_raw)
                .map(|t| judge.holder(t)),
            starts: word(e, 3),
        })
        .collect())
}

/// A typed queue's state: its capacity, item size and item alignment from
/// the header's parameters (`[capacity, 0, 0, size | align << 32]`), then
/// what `read` decodes from the object: the ring (`None`: too small) and
/// the role holders.
fn queue_state(
    name: &str,
    h: &HeaderSnapshot,
    read: impl FnOnce() -> Result<(Option<RingState>, Option<[Option<Holder>; 2]>)>,
) -> Result<QueueState> {
    let [a, b, c, elem] = h.params;
    let config = RingConfig::from_words([a, b, c, 0]).map_err(|_| bad_params(name))?;
    let (ring, roles) = read()?;
    let ring = ring.ok_or_else(|| too_small_for_kind(name))?;
    let capacity = config.capacity as u64;
    Ok(QueueState {
        capacity,
        item_size: elem & 0xffff_ffff,
        item_align: elem >> 32,
        len: ring.len(capacity),
        ring,
        roles,
    })
}

/// The holders of the two roles of the role block an SPSC queue or a pipe
/// starts with.
fn roles(obj: &Object<'_>, judge: &Judge<'_>) -> Result<[Option<Holder>; 2]> {
    let words = obj.read(0, 8)?;
    Ok([0, 4].map(|at| judge.role(u32_at(&words, at).unwrap_or(0))))
}

/// The bytes one ring of a pipe takes.
fn ring_size(name: &str, config: BytesConfig) -> Result<u64> {
    let l = RawByteQueue::layout(config).map_err(|_| bad_params(name))?;
    Ok(l.size() as u64)
}

/// A byte queue's configuration, checked as the library checks it.
fn bytes_config(name: &str, h: &HeaderSnapshot) -> Result<BytesConfig> {
    let config = BytesConfig::from_words(h.params).map_err(|_| bad_params(name))?;
    RawByteQueue::layout(config).map_err(|_| bad_params(name))?;
    Ok(config)
}

fn byte_ring(
    obj: &Object<'_>,
    off: u64,
    config: BytesConfig,
    judge: &Judge<'_>,
) -> Result<BytesState> {
    let s = shmipc_core::bytes::state_of(&obj.control(off)?)
        .ok_or_else(|| too_small_for_kind(obj.name))?;
    let capacity = config.capacity as u64;
    Ok(BytesState {
        capacity,
        max_message: config.max_message as u64,
        pending_bytes: s.ring.len(capacity),
        used_bytes: s.ring.tail.saturating_sub(s.released).min(capacity),
        ring: s.ring,
        writer_lock: s.writer_lock.map(|o| judge.holder(o.token)),
        reader_lock: s.reader_lock.map(|o| judge.holder(o.token)),
        unrecoverable: s.unrecoverable,
    })
}

/// Fills `holds` from the slots or records of a queue (nothing for other
/// kinds); returns whether the scan covered all that may be held.
fn decode_holds(
    h: &HeaderSnapshot,
    obj: &Object<'_>,
    state: &State,
    judge: &Judge<'_>,
    holds: &mut Vec<Hold>,
) -> Result<bool> {
    match state {
        State::Queue(q) => mpmc_claims(obj, q, judge, holds),
        State::ByteQueue(b) => {
            let config = bytes_config(obj.name, h)?;
            byte_holds(obj, 0, 0, config, b, judge, holds)
        }
        State::Pipe { rings, .. } => {
            let config = bytes_config(obj.name, h)?;
            let ring_size = ring_size(obj.name, config)?;
            let a = byte_holds(obj, 0, ROLES_SIZE, config, &rings[0], judge, holds)?;
            let b = byte_holds(
                obj,
                1,
                ROLES_SIZE + ring_size,
                config,
                &rings[1],
                judge,
                holds,
            )?;
            Ok(a && b)
        }
        _ => Ok(true),
    }
}

/// An MPMC queue's held claims. Every claim still held lies within one lap
/// below the producers' position, so with more than [`MAX_SCAN`] slots the
/// scan takes the `MAX_SCAN` positions ending there.
fn mpmc_claims(
    obj: &Object<'_>,
    q: &QueueState,
    judge: &Judge<'_>,
    holds: &mut Vec<Hold>,
) -> Result<bool> {
    use shmipc_core::mpmc::{
        record_size, records_located, slot_claim, ClaimRole, RECORDS_OFFSET, RECORD_HEADER,
    };
    let cap = q.capacity;
    // A capacity read from a hostile file: no claims can be located in a
    // geometry no queue has (and the offsets below must not overflow).
    if cap == 0 || !cap.is_power_of_two() || cap > shmipc_core::queue::MAX_CAPACITY {
        return Ok(false);
    }
    // A queue of another layout version (an older build's) keeps its
    // records elsewhere: locate nothing rather than misread them.
    if !records_located(&obj.control(0)?) {
        return Ok(false);
    }
    let n = cap.min(MAX_SCAN);
    // The item's size and alignment from the same hostile header: a record
    // size no queue has locates nothing.
    let (Ok(size), Ok(align)) = (usize::try_from(q.item_size), usize::try_from(q.item_align))
    else {
        return Ok(false);
    };
    let Some(record_len) = record_size(size, align) else {
        return Ok(false);
    };
    let record = record_len as u64;
    // Slot indexes first..first + n, wrapping at `cap`: at most two reads.
    let first = if n == cap {
        0
    } else {
        q.ring.tail.wrapping_sub(n - 1) & (cap - 1)
    };
    let runs = if first + n <= cap {
        [(first, n), (0, 0)]
    } else {
        [(first, cap - first), (0, first + n - cap)]
    };
    // Whole records are read a chunk at a time, and of a record larger
    // than a chunk only its bookkeeping: what a report takes does not grow
    // with the item size (a hostile header's may be 4 GiB).
    const CHUNK: u64 = 1 << 16;
    let header = RECORD_HEADER as u64;
    let per = (CHUNK / record).max(1);
    for (start, len) in runs {
        if len == 0 {
            continue;
        }
        let (Some(off), Some(size)) = (
            start
                .checked_mul(record)
                .and_then(|o| o.checked_add(RECORDS_OFFSET as u64)),
            len.checked_mul(record),
        ) else {
            return Ok(false);
        };
        // Every record of the run lies inside the object, as when the run
        // was read whole.
        if !off.checked_add(size).is_some_and(|end| end <= obj.size) {
            return Err(too_small_for_kind(obj.name));
        }
        let mut i = 0;
        while i < len {
            let k = per.min(len - i);
            let at = off + i * record;
            let bytes = obj.read(at, if per == 1 { header } else { k * record })?;
            for (j, rec) in bytes.chunks(record_len).enumerate() {
                let Some(c) = slot_claim(rec, start + i + j as u64, cap) else {
                    continue;
                };
                holds.push(Hold {
                    ring: 0,
                    position: c.position,
                    kind: match c.role {
                        ClaimRole::Producer => HoldKind::PushClaim,
                        ClaimRole::Consumer => HoldKind::PopClaim,
                    },
                    len: None,
                    holder: Some(judge.holder(c.token)),
                });
            }
            i += k;
        }
    }
    holds.sort_by_key(|h| h.position);
    Ok(n == cap)
}

/// A byte ring's held records: a walk from the oldest record not yet
/// reclaimed to the producers' position, header by header (each checked
/// by [`shmipc_core::bytes::record_of`]), at most [`MAX_SCAN`] records.
#[allow(clippy::too_many_arguments)]
fn byte_holds(
    obj: &Object<'_>,
    ring: u8,
    off: u64,
    config: BytesConfig,
    b: &BytesState,
    judge: &Judge<'_>,
    holds: &mut Vec<Hold>,
) -> Result<bool> {
    use shmipc_core::bytes::{record_of, RecordState, DATA_OFFSET, RECORD_HEADER};
    let cap = config.capacity as u64;
    let read = b.ring.head;
    let tail = b.ring.tail;
    let mut pos = tail.saturating_sub(b.used_bytes);
    let header = RECORD_HEADER as u64;
    for _ in 0..MAX_SCAN {
        if pos >= tail {
            return Ok(true);
        }
        let at = pos & (cap - 1);
        if pos % 16 != 0 || at + header > cap {
            return Ok(false);
        }
        let bytes = obj.read(off + DATA_OFFSET as u64 + at, header)?;
        let Some(rec) = record_of(&bytes, pos, config.max_message as u64) else {
            return Ok(false);
        };
        if at + rec.size > cap {
            return Ok(false);
        }
        let kind = match rec.state {
            _ if rec.skip => None,
            RecordState::Pending => Some(HoldKind::Reserved),
            RecordState::Ready if pos < read => Some(HoldKind::Reading),
            _ => None,
        };
        if let Some(kind) = kind {
            holds.push(Hold {
                ring,
                position: pos,
                kind,
                len: Some(rec.len),
                holder: rec.token.map(|t| judge.holder(t)),
            });
        }
        pos += rec.size;
    }
    Ok(pos >= tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_refuses_foreign_and_short_bytes() {
        assert!(matches!(
            decode("/x", &[0u8; 4096]),
            Err(Error::NotShmipc { .. })
        ));
        assert!(matches!(decode("/x", &[]), Err(Error::TooSmall { .. })));
        assert!(matches!(
            decode("/x", &crate::memory::header::MAGIC.to_ne_bytes()),
            Err(Error::TooSmall { .. })
        ));
    }

    #[test]
    fn u_at_stays_inside() {
        assert_eq!(u32_at(&[1, 0, 0, 0], 0), Some(1));
        assert_eq!(u32_at(&[1, 0, 0, 0], 1), None);
    }
}
