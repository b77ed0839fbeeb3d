//! [`Mapping`]: a mapped segment (named or anonymous) with a validated
//! header, and how it is created and opened (see the [module
//! documentation](crate::memory)).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use shmipc_core::futex::{self, Deadline};
use shmipc_core::sync::{AtomicU32, AtomicU64, Ordering};

use shmipc_core::peers::PEER_SLOT_SIZE;
use shmipc_core::{Peers, Token};

use super::header::{
    HeaderSnapshot, Kind, RawHeader, HEADER_SIZE, INITIALIZING, MAGIC, MAX_ALIGN, READY, VERSION,
};
use super::name::Name;
use super::options::Options;
use super::presence::{self, Presence, CREATOR_LOCK};
use crate::error::{Error, Result};
use crate::typed::Fingerprint;

/// What messages call anonymous memory, which has no name.
pub(crate) const ANON: &str = "(anonymous)";

/// Where glibc's `shm_open` keeps its files.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// How often a waiting opener re-checks whether the creator still lives.
const CREATOR_POLL: Duration = Duration::from_millis(10);

/// How many times `open_or_create` goes round when it keeps losing races
/// against other creators and unlinkers.
const OPEN_OR_CREATE_ROUNDS: usize = 16;

/// What a creator asks for: the object's kind, size, alignment and
/// kind-specific parameters (stored in the header's `params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLayout {
    /// The kind written into the header.
    pub kind: Kind,
    /// The object's size in bytes (not zero).
    pub size: u64,
    /// The object's alignment: a power of two, at most
    /// [`MAX_ALIGN`].
    pub align: u64,
    /// Kind-specific parameters, such as a capacity; zero if unused.
    pub params: [u64; 4],
}

impl ObjectLayout {
    /// The layout of an object of kind `kind` whose bytes have layout `l`,
    /// with header parameters `params`.
    pub fn new(kind: Kind, l: std::alloc::Layout, params: [u64; 4]) -> ObjectLayout {
        ObjectLayout {
            kind,
            size: l.size() as u64,
            align: l.align() as u64,
            params,
        }
    }

    /// The layout of a fixed-size `T` of kind `kind`, with zero parameters.
    pub fn of<T>(kind: Kind) -> ObjectLayout {
        ObjectLayout::new(kind, std::alloc::Layout::new::<T>(), [0; 4])
    }

    /// Where the peer table of `peer_slots` slots starts and the total size
    /// of a segment holding this object, if the layout is possible.
    fn sizes(&self, peer_slots: u32) -> std::result::Result<(u64, u64), shmipc_core::LayoutError> {
        use shmipc_core::{LayoutError, Rule};
        let largest = isize::MAX as u64 - HEADER_SIZE;
        let range = |min, max| Rule::Range { min, max };
        let slots = u64::from(peer_slots);
        if self.size == 0 || self.size > largest {
            return Err(LayoutError::parameter("size", self.size, range(1, largest)));
        }
        if !self.align.is_power_of_two() || self.align > MAX_ALIGN {
            let rule = Rule::PowerOfTwo {
                min: 1,
                max: MAX_ALIGN,
            };
            return Err(LayoutError::parameter("alignment", self.align, rule));
        }
        if peer_slots == 0 || peer_slots > Token::MAX_SLOTS {
            let rule = range(1, u64::from(Token::MAX_SLOTS));
            return Err(LayoutError::parameter("peer_slots", slots, rule));
        }
        let most = largest - slots * PEER_SLOT_SIZE as u64 - 127;
        segment_sizes(self.size, peer_slots).ok_or(LayoutError::parameter(
            "size",
            self.size,
            range(1, most),
        ))
    }
}

impl HeaderSnapshot {
    /// Checks that the object in the header has exactly this size,
    /// alignment and parameters (for fixed-size kinds), reporting
    /// [`Error::Corrupted`] otherwise.
    pub fn expect_layout(&self, name: &str, size: u64, align: u64, params: [u64; 4]) -> Result<()> {
        let checks = [
            (
                self.object_size == size,
                "the object size does not match its kind",
            ),
            (
                self.object_align == align,
                "the object alignment does not match its kind",
            ),
            (
                self.params == params,
                "the object parameters do not match its kind",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(Error::corrupted(name, why)),
            None => Ok(()),
        }
    }
}

/// Where the peer table starts (the object's end, rounded up to 128) and
/// the segment's total size, for an object of `object_size` bytes and a
/// table of `peer_slots` slots; `None` on overflow or past `isize::MAX`.
fn segment_sizes(object_size: u64, peer_slots: u32) -> Option<(u64, u64)> {
    let end = HEADER_SIZE.checked_add(object_size)?;
    let peers = end.checked_add(127)? & !127;
    let total = peers.checked_add(u64::from(peer_slots) * PEER_SLOT_SIZE as u64)?;
    (total <= isize::MAX as u64).then_some((peers, total))
}

/// A mapped segment whose header has been written (by us) or validated
/// (by [`Mapping::open`]): a named one, or anonymous memory for forked
/// children ([`Mapping::anon`]).
///
/// It is the one owner of an object's bytes: every handle keeps the
/// mapping it lives in, and clones are cheap (they share one mapping).
/// The mapping keeps the file open, and with it this process's presence in
/// the segment's peer table (see [`shmipc_core::peers`]). When the last
/// clone drops, the presence is released and the segment unmapped; the
/// name is never unlinked.
#[derive(Clone)]
pub struct Mapping(Arc<Mapped>);

/// What a [`Mapping`] shares between its clones.
struct Mapped {
    map: MmapRaw,
    name: Option<Name>,
    header: HeaderSnapshot,
    read_only: bool,
    presence: Presence,
    /// The segment's file, kept open: the presence opens descriptions of
    /// its own from it (`/proc/self/fd/N`) when it claims a slot.
    _file: OwnedFd,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        presence::unregister(self.map.as_ptr() as usize);
        self.presence.release();
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("name", &self.name())
            .field("kind", &self.0.header.kind())
            .field("object_size", &self.0.header.object_size)
            .field("read_only", &self.0.read_only)
            .finish()
    }
}

impl Mapping {
    /// Creates the segment `name` holding the object described by `layout`,
    /// exclusively (an existing name is [`Error::AlreadyExists`]).
    ///
    /// `init` receives a pointer to the object's bytes (at offset 128 of a
    /// page-aligned mapping, so aligned to `layout.align`) and their length,
    /// which are zeroed. It runs while the segment has no name yet, so no
    /// other process can see the bytes until it returned `Ok`. If `init`
    /// fails, nothing is left behind and its error is returned.
    ///
    /// The segment's memory is reserved before `init` runs: a size that
    /// `/dev/shm` cannot hold is [`Error::NoSpace`] (naming the bytes
    /// needed and free), and nothing is left behind.
    pub fn create(
        name: &str,
        layout: &ObjectLayout,
        opts: &Options,
        init: impl FnOnce(*mut u8, usize) -> Result<()>,
    ) -> Result<Mapping> {
        Mapping::create_impl(name, layout, opts, init, false)
    }

    /// [`Mapping::create`], optionally forcing the temporary-name fallback.
    fn create_impl(
        name: &str,
        layout: &ObjectLayout,
        opts: &Options,
        init: impl FnOnce(*mut u8, usize) -> Result<()>,
        force_fallback: bool,
    ) -> Result<Mapping> {
        let name = Name::new(name)?;
        // Check the layout before anything is made.
        layout
            .sizes(opts.peer_slots)
            .map_err(|e| Error::layout(name.as_str(), e))?;
        let staging = Staging::new(&name, opts.mode & 0o777, force_fallback)?;
        let fd = staging.fd();
        // Held while we build the segment, so that an opener who finds it
        // not yet READY (only possible through the fallback's temporary
        // name, or a hostile write) can tell a slow creator from a dead
        // one; the kernel drops it if we die. Best effort: without it an
        // opener just waits for its timeout.
        let _ = presence::ofd_try_lock(fd, CREATOR_LOCK);
        let (map, snapshot) = build(fd, name.as_str(), layout, opts, init)?;
        staging.publish(&name)?;
        presence::ofd_unlock(fd, CREATOR_LOCK);
        let fd = dup_fd(fd, &name)?;
        Ok(Mapping::assemble(map, fd, Some(name), snapshot, false))
    }

    /// Maps fresh anonymous shared memory (a `memfd`, so that the peer
    /// table's locks have a file to live on) holding the object `layout`
    /// describes, with the same header and peer table as a named segment.
    /// Children forked while it lives share it; nothing has to be cleaned
    /// up. `init` runs over the zeroed object bytes before anyone can see
    /// them.
    pub fn anon(
        layout: &ObjectLayout,
        opts: &Options,
        init: impl FnOnce(*mut u8, usize) -> Result<()>,
    ) -> Result<Mapping> {
        layout
            .sizes(opts.peer_slots)
            .map_err(|e| Error::layout(ANON, e))?;
        // SAFETY: the name is a NUL-terminated literal; memfd_create
        // returns a fresh descriptor or -1.
        let fd = owned(unsafe { libc::memfd_create(c"shmipc-anon".as_ptr(), libc::MFD_CLOEXEC) })
            .map_err(|e| Error::from_io("memfd_create", ANON, e))?;
        // Anonymous memory is reserved too, so that touching it never
        // raises SIGBUS.
        let (map, snapshot) = build(fd.as_raw_fd(), ANON, layout, opts, init)?;
        Ok(Mapping::assemble(map, fd, None, snapshot, false))
    }

    /// Builds the value once the header is written or validated: sets up
    /// the presence over the peer table and registers the mapping with the
    /// resolver.
    fn assemble(
        map: MmapRaw,
        fd: OwnedFd,
        name: Option<Name>,
        header: HeaderSnapshot,
        read_only: bool,
    ) -> Mapping {
        let base = map.as_mut_ptr();
        // SAFETY: the header's peer table lies inside the mapping (checked
        // on open, made so on create: peers_offset + slots * 32 =
        // total_size = the mapping's length), which the presence does not
        // outlive (both are fields of one `Mapped`); `fd` is kept beside it.
        let presence = unsafe {
            Presence::new(
                base.add(header.peers_offset as usize),
                header.peer_slots,
                fd.as_raw_fd(),
                !read_only,
            )
        };
        let mapped = Arc::new(Mapped {
            map,
            name,
            header,
            read_only,
            presence,
            _file: fd,
        });
        // SAFETY: the presence lives inside the Arc (its address is stable)
        // and is unregistered in `Mapped::drop` before it is freed.
        unsafe {
            presence::register(
                base as usize,
                base as usize + mapped.map.len(),
                &mapped.presence as *const Presence,
            )
        };
        if !read_only {
            // Claim our slot now, not on the first operation: the cost (an
            // open and a lock or two) belongs to attaching, and from here on
            // the segment's peer table shows us. A forked child claims its
            // own on first use.
            let _ = mapped.presence.me();
        }
        Mapping(mapped)
    }
}

/// Makes the new, empty file `fd` a segment holding the object `layout`
/// describes (with a peer table of `peer_slots`): sizes it, reserves its
/// memory, maps it, writes the header (state INITIALIZING), runs `init`
/// over the zeroed object bytes, then marks it READY. `label` names it in
/// errors.
///
/// SYNC POINT: the Release store of READY pairs with the Acquire load of
/// `state` in [`wait_ready`]: an opener that sees READY sees the header
/// fields and the initialised object.
fn build(
    fd: libc::c_int,
    label: &str,
    layout: &ObjectLayout,
    opts: &Options,
    init: impl FnOnce(*mut u8, usize) -> Result<()>,
) -> Result<(MmapRaw, HeaderSnapshot)> {
    let peer_slots = opts.peer_slots;
    let (peers_offset, total) = layout
        .sizes(peer_slots)
        .map_err(|e| Error::layout(label, e))?;
    // Fits: `sizes` keeps it at most isize::MAX.
    let total_off = total as libc::off_t;
    // SAFETY: `fd` is an open descriptor; ftruncate touches no memory of
    // ours.
    if unsafe { libc::ftruncate(fd, total_off) } != 0 {
        return Err(Error::from_io("ftruncate", label, last_error()));
    }
    reserve(fd, total, label)?;
    let map = map_fd(fd, total as usize, false, label)?;
    let header = write_header(
        &map,
        layout,
        peers_offset,
        peer_slots,
        total,
        opts.fingerprint.as_ref(),
    );
    // SAFETY: `total` bytes are mapped, and the object's bytes start at
    // HEADER_SIZE, inside them.
    let object = unsafe { map.as_mut_ptr().add(HEADER_SIZE as usize) };
    init(object, layout.size as usize)?;
    // SYNC POINT: Release (paired in the doc comment above).
    header.state.store(READY, Ordering::Release);
    futex::wake_all(&header.state);
    let snapshot = header.snapshot();
    Ok((map, snapshot))
}

/// Writes a new segment's header (state INITIALIZING) into `map`.
fn write_header<'m>(
    map: &'m MmapRaw,
    layout: &ObjectLayout,
    peers_offset: u64,
    peer_slots: u32,
    total: u64,
    fingerprint: Option<&Fingerprint>,
) -> &'m RawHeader {
    // SAFETY: the mapping is page-aligned and at least HEADER_SIZE bytes,
    // so it can hold a RawHeader, which is made of atomics for which every
    // bit pattern (here: zeros) is valid. It lives as long as `map`.
    let header = unsafe { &*map.as_mut_ptr().cast::<RawHeader>() };
    {
        header.magic.store(MAGIC, Ordering::Relaxed);
        header.version.store(VERSION, Ordering::Relaxed);
        header.state.store(INITIALIZING, Ordering::Relaxed);
        header
            .creator_pid
            .store(std::process::id(), Ordering::Relaxed);
        header.kind.store(layout.kind.raw(), Ordering::Relaxed);
        header.total_size.store(total, Ordering::Relaxed);
        header.object_offset.store(HEADER_SIZE, Ordering::Relaxed);
        header.object_size.store(layout.size, Ordering::Relaxed);
        header.object_align.store(layout.align, Ordering::Relaxed);
        for (slot, value) in header.params.iter().zip(layout.params) {
            slot.store(value, Ordering::Relaxed);
        }
        header.peers_offset.store(peers_offset, Ordering::Relaxed);
        header.peer_slots.store(peer_slots, Ordering::Relaxed);
        header.tasks.store(0, Ordering::Relaxed);
        let [hash, type_layout] = fingerprint.map_or([0, 0], |f| f.words());
        header.type_hash.store(hash, Ordering::Relaxed);
        header.type_layout.store(type_layout, Ordering::Relaxed);
        header.messages.store(0, Ordering::Relaxed);
    }
    header
}

/// A second descriptor of `fd`'s file, for the mapping to keep.
fn dup_fd(fd: libc::c_int, name: &Name) -> Result<OwnedFd> {
    // SAFETY: `fd` is open; F_DUPFD_CLOEXEC returns a fresh descriptor.
    owned(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })
        .map_err(|e| Error::from_io("dup", name.as_str(), e))
}

/// `raw`, the descriptor a call just returned, as one we own; -1 is the
/// call's error (`errno`).
pub(crate) fn owned(raw: libc::c_int) -> io::Result<OwnedFd> {
    if raw < 0 {
        return Err(last_error());
    }
    // SAFETY: a fresh descriptor the call returned, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

impl Mapping {
    /// Opens the segment `name`, which must hold an object of `kind`.
    ///
    /// Checks, in order: the file's owner is this process's effective user
    /// or one `opts` trusts (else [`Error::UntrustedOwner`]); the file is
    /// at least a header long (else
    /// [`Error::TooSmall`], or [`Error::NotShmipc`] if it does not start
    /// with the magic); magic ([`Error::NotShmipc`]); version
    /// ([`Error::VersionMismatch`]); state, waiting for `READY` as the
    /// module documentation describes; kind ([`Error::WrongKind`]);
    /// `object_offset` is 128, `object_align` a power of two ≤ 128,
    /// `object_size` not zero, `total_size` = 128 + `object_size`
    /// ([`Error::Corrupted`]); then `validate`, which checks what only the
    /// kind knows (size, alignment, parameters — see
    /// [`HeaderSnapshot::expect_layout`]); and last that the file holds
    /// `total_size` bytes ([`Error::TooSmall`]). If `opts` asks for a
    /// message type ([`Options::fingerprint`]), the one recorded in the
    /// header must be it ([`Error::TypeMismatch`]).
    ///
    /// With [`Options::read_only`] the segment is opened and mapped
    /// read-only.
    pub fn open(
        name: &str,
        kind: Kind,
        opts: &Options,
        validate: impl FnOnce(&HeaderSnapshot) -> Result<()>,
    ) -> Result<Mapping> {
        let name = Name::new(name)?;
        let n = name.as_str();
        let read_only = opts.read_only;
        let flags = if read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        // SAFETY: the name is a NUL-terminated C string that outlives the call.
        let fd = owned(unsafe { libc::shm_open(name.as_c().as_ptr(), flags | libc::O_CLOEXEC, 0) })
            .map_err(|e| Error::from_name_op("shm_open", n, e))?;
        check_owner(&fd, &name, opts)?;

        let size = file_size(&fd, &name)?;
        if size < HEADER_SIZE {
            return Err(too_small(n, size, first_word(&fd, size)));
        }

        let header_map = map_fd(fd.as_raw_fd(), HEADER_SIZE as usize, read_only, n)?;
        // SAFETY: the mapping is page-aligned, HEADER_SIZE bytes long (the
        // file holds at least that many, checked above), and lives until
        // the end of this function, longer than `header`. RawHeader is made
        // of atomics, so whatever a peer writes is a valid value and we only
        // ever access it atomically.
        let header = unsafe { &*header_map.as_ptr().cast::<RawHeader>() };
        check_identity(
            n,
            header.magic.load(Ordering::Relaxed),
            header.version.load(Ordering::Relaxed),
        )?;
        wait_ready(header, &name, opts.init_timeout, fd.as_raw_fd())?;

        // From here on we use the snapshot only: a peer changing the header
        // later cannot make us use a size we did not check.
        let snap = header.snapshot();
        // Fresh size: the file may have been truncated while we waited.
        check_ready(&snap, kind, n, validate, || file_size(&fd, &name))?;
        check_fingerprint(&snap, opts.fingerprint.as_ref(), n)?;
        let map = map_fd(fd.as_raw_fd(), snap.total_size as usize, read_only, n)?;
        drop(header_map);
        Ok(Mapping::assemble(map, fd, Some(name), snap, read_only))
    }

    /// Opens `name` if it exists, else creates it, going round (a bounded
    /// number of times) when another process creates or unlinks it
    /// in between. Returns whether this call created it.
    ///
    /// `create` and `open` are the two halves, such as closures over
    /// [`Mapping::create`] and [`Mapping::open`].
    pub fn open_or_create<T>(
        mut open: impl FnMut() -> Result<T>,
        mut create: impl FnMut() -> Result<T>,
    ) -> Result<(T, bool)> {
        let mut round = 0;
        loop {
            round += 1;
            match open() {
                Ok(t) => return Ok((t, false)),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            match create() {
                Ok(t) => return Ok((t, true)),
                Err(Error::AlreadyExists { .. }) if round < OPEN_OR_CREATE_ROUNDS => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The segment's normalised name (with its leading slash), or `None`
    /// for anonymous memory ([`Mapping::anon`]).
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_ref().map(Name::as_str)
    }

    /// The name for messages: the segment's, or `"(anonymous)"`.
    pub(crate) fn label(&self) -> &str {
        self.name().unwrap_or(ANON)
    }

    /// This process's presence in the segment: its peer slot, and the
    /// judge of other peers' tokens.
    pub(crate) fn presence(&self) -> &Presence {
        &self.0.presence
    }

    /// The header as written (by us) or validated (on open).
    pub fn header(&self) -> &HeaderSnapshot {
        &self.0.header
    }

    /// The header's `tasks` word: a [`JoinableQueue`]'s unfinished
    /// tasks ([`TaskCount`](shmipc_core::TaskCount)); 0 elsewhere.
    ///
    /// [`JoinableQueue`]: crate::JoinableQueue
    pub(crate) fn task_word(&self) -> &AtomicU32 {
        // SAFETY: every mapping starts with its page-aligned 128-byte
        // header, which lives as long as `self`; RawHeader is atomics
        // only, valid whatever a peer writes.
        let header = unsafe { &*self.0.map.as_ptr().cast::<RawHeader>() };
        &header.tasks
    }

    /// The object's first byte, aligned to `header().object_align`.
    pub fn object_ptr(&self) -> *mut u8 {
        // SAFETY: the mapping holds total_size >= HEADER_SIZE + object_size
        // bytes (checked on open, made so on create).
        unsafe { self.0.map.as_mut_ptr().add(HEADER_SIZE as usize) }
    }

    /// The object's size in bytes.
    pub fn object_len(&self) -> usize {
        // Fits: total_size <= isize::MAX was checked.
        self.0.header.object_size as usize
    }

    /// Whether the segment is mapped read-only.
    pub fn is_read_only(&self) -> bool {
        self.0.read_only
    }
}

/// Removes the name `name`. Processes that have the segment mapped keep
/// using it; the memory is freed when the last of them unmaps it.
pub fn unlink(name: &str) -> Result<()> {
    let name = Name::new(name)?;
    // SAFETY: the name is a NUL-terminated C string that outlives the call.
    if unsafe { libc::shm_unlink(name.as_c().as_ptr()) } != 0 {
        return Err(Error::from_name_op(
            "shm_unlink",
            name.as_str(),
            last_error(),
        ));
    }
    Ok(())
}

/// Waits until `header.state` is READY. The creator holds the
/// [`CREATOR_LOCK`] byte of the file while it builds the segment: if no one
/// holds it, the creator died (or never held it: a hostile writer); that
/// judgement holds across pid namespaces, unlike the recorded pid, which
/// is only reported.
///
/// SYNC POINT: the Acquire loads of `state` pair with the creator's Release
/// store of READY in [`build`]: seeing READY, we see the header and the
/// object it initialised.
fn wait_ready(header: &RawHeader, name: &Name, timeout: Duration, fd: libc::c_int) -> Result<()> {
    let deadline = Deadline::after(timeout);
    loop {
        // SYNC POINT: Acquire (paired in the doc comment above).
        if is_ready(name.as_str(), header.state.load(Ordering::Acquire))? {
            return Ok(());
        }
        let creator_pid = header.creator_pid.load(Ordering::Relaxed);
        if presence::ofd_held_by_other(fd, CREATOR_LOCK) == Ok(false) {
            // It may have finished just before it let go.
            if header.state.load(Ordering::Acquire) == READY {
                continue;
            }
            return Err(Error::CreatorDied {
                name: name.as_str().to_owned(),
                creator_pid,
            });
        }
        if deadline.has_passed() {
            return Err(Error::InitTimeout {
                name: name.as_str().to_owned(),
                creator_pid,
            });
        }
        // Sleep until woken or the next poll: a creator that dies never
        // wakes us, so we look at its lock again every CREATOR_POLL.
        let slice = Deadline::after(CREATOR_POLL).min(deadline);
        futex::wait(&header.state, INITIALIZING, Some(&slice));
    }
}

/// Validates a segment's header without opening anything: the checks
/// [`Mapping::open`] makes, in the same order and with the same errors, on a
/// copy of the file's first bytes and its size. `open` itself is built from
/// the same pieces, so this is what fuzzing and tests exercise.
///
/// `start` holds the file's first bytes: its whole header if the file has
/// one (bytes past the header are ignored). If `start` is shorter than
/// `min(file_size, 128)`, the file is judged by the bytes given, as if it
/// were only `start.len()` bytes long. `name` is used in error messages
/// only.
///
/// The one difference from `open` is the state word: `open` waits (up to
/// [`Options::init_timeout`]) for a header still marked `INITIALIZING`;
/// here there is nothing to wait for, and such a header is the
/// [`Error::InitTimeout`] `open` reports if the creator never finishes.
///
/// ```
/// use shmipc::memory::validate_header;
/// use shmipc::{Error, Kind};
///
/// let zeros = [0u8; 256];
/// let r = validate_header(&zeros, 256, Kind::LOCK, "/x", |_| Ok(()));
/// assert!(matches!(r, Err(Error::NotShmipc { .. })));
/// // Our magic, then the file ends: a truncated segment.
/// let r = validate_header(b"\x7fSHMIPC\0\x01", 9, Kind::LOCK, "/x", |_| Ok(()));
/// assert!(matches!(r, Err(Error::TooSmall { actual: 9, .. })));
/// ```
pub fn validate_header(
    start: &[u8],
    file_size: u64,
    kind: Kind,
    name: &str,
    validate: impl FnOnce(&HeaderSnapshot) -> Result<()>,
) -> Result<HeaderSnapshot> {
    let visible = file_size.min(start.len() as u64);
    let header = match start.first_chunk::<{ HEADER_SIZE as usize }>() {
        Some(header) if visible >= HEADER_SIZE => header,
        _ => {
            let word = match start.first_chunk::<8>() {
                Some(word) if visible >= 8 => Some(u64::from_ne_bytes(*word)),
                _ => None,
            };
            return Err(too_small(name, visible, word));
        }
    };
    let snap = HeaderSnapshot::from_bytes(header);
    check_identity(name, snap.magic, snap.version)?;
    if !is_ready(name, snap.state)? {
        return Err(Error::InitTimeout {
            name: name.to_owned(),
            creator_pid: snap.creator_pid,
        });
    }
    check_ready(&snap, kind, name, validate, || Ok(file_size))?;
    Ok(snap)
}

/// What a file shorter than a header is: [`Error::NotShmipc`] if it has a
/// first 8-byte word (`first_word`) and that is not our magic, else
/// [`Error::TooSmall`].
fn too_small(name: &str, size: u64, first_word: Option<u64>) -> Error {
    match first_word {
        Some(word) if word != MAGIC => Error::NotShmipc {
            name: name.to_owned(),
        },
        _ => Error::TooSmall {
            name: name.to_owned(),
            required: HEADER_SIZE,
            actual: size,
        },
    }
}

/// The checks before the state word: magic, then version.
fn check_identity(name: &str, magic: u64, version: u32) -> Result<()> {
    if magic != MAGIC {
        return Err(Error::NotShmipc {
            name: name.to_owned(),
        });
    }
    if version != VERSION {
        return Err(Error::VersionMismatch {
            name: name.to_owned(),
            expected: VERSION,
            found: version,
        });
    }
    Ok(())
}

/// Whether the state word says READY (`true`) or INITIALIZING (`false`);
/// anything else is [`Error::Corrupted`].
fn is_ready(name: &str, state: u32) -> Result<bool> {
    match state {
        READY => Ok(true),
        INITIALIZING => Ok(false),
        _ => Err(Error::corrupted(
            name,
            "the state word is neither INITIALIZING nor READY",
        )),
    }
}

/// The checks on a READY header's snapshot: the common ones, then the
/// kind's own (`validate`), then that the file (whose size `file_size`
/// reports, asked only now) holds the whole object.
fn check_ready(
    snap: &HeaderSnapshot,
    kind: Kind,
    name: &str,
    validate: impl FnOnce(&HeaderSnapshot) -> Result<()>,
    file_size: impl FnOnce() -> Result<u64>,
) -> Result<()> {
    check_common(snap, kind, name)?;
    validate(snap)?;
    let file_size = file_size()?;
    if snap.total_size > file_size {
        return Err(Error::TooSmall {
            name: name.to_owned(),
            required: snap.total_size,
            actual: file_size,
        });
    }
    Ok(())
}

/// Checks the message type a typed opener asks for (none: no check)
/// against the one the creator recorded; see [`Fingerprint`].
fn check_fingerprint(snap: &HeaderSnapshot, want: Option<&Fingerprint>, name: &str) -> Result<()> {
    let Some(want) = want else {
        return Ok(());
    };
    if want.words() == [snap.type_hash, snap.type_layout] {
        return Ok(());
    }
    Err(Error::TypeMismatch {
        name: name.to_owned(),
        expected: want.name(),
        found: Fingerprint::known_name(snap.type_hash),
        found_hash: snap.type_hash,
        found_size: snap.type_layout & 0xffff_ffff,
        found_align: snap.type_layout >> 32,
    })
}

/// The checks every kind shares; see [`Mapping::open`].
fn check_common(snap: &HeaderSnapshot, kind: Kind, name: &str) -> Result<()> {
    check_identity(name, snap.magic, snap.version)?;
    if snap.kind != kind.raw() {
        return Err(Error::WrongKind {
            name: name.to_owned(),
            expected: kind,
            found: snap.kind,
        });
    }
    if snap.object_offset != HEADER_SIZE {
        return Err(Error::corrupted(name, "the object offset is not 128"));
    }
    if snap.peer_slots == 0 || snap.peer_slots > Token::MAX_SLOTS {
        return Err(Error::corrupted(
            name,
            "the peer table's slot count is not between 1 and 4094",
        ));
    }
    if !snap.object_align.is_power_of_two() || snap.object_align > MAX_ALIGN {
        return Err(Error::corrupted(
            name,
            "the object alignment is not a power of two of at most 128",
        ));
    }
    if snap.object_size == 0 {
        return Err(Error::corrupted(name, "the object size is zero"));
    }
    match segment_sizes(snap.object_size, snap.peer_slots) {
        Some((peers, total)) if peers == snap.peers_offset && total == snap.total_size => {}
        _ => {
            return Err(Error::corrupted(
                name,
                "the peer table offset or the total size disagrees with the object size \
                 (the table must start at the object's end rounded up to 128, and the \
                 segment end right after its slots)",
            ))
        }
    }
    Ok(())
}

/// The size of the file behind `fd`.
fn file_size(fd: &OwnedFd, name: &Name) -> Result<u64> {
    Ok(u64::try_from(fstat(fd, name.as_str())?.st_size).unwrap_or(0))
}

/// What `fstat` says about the file behind `fd` (`name` for the error).
pub(crate) fn fstat(fd: &OwnedFd, name: &str) -> Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid, writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::from_io("fstat", name, last_error()));
    }
    Ok(st)
}

/// Refuses a segment whose file another user owns, unless `opts` trusts
/// that owner (see [`Options::trusted_owners`]).
fn check_owner(fd: &OwnedFd, name: &Name, opts: &Options) -> Result<()> {
    let st = fstat(fd, name.as_str())?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if opts.trusts(st.st_uid, euid) {
        return Ok(());
    }
    Err(Error::UntrustedOwner {
        name: name.as_str().to_owned(),
        owner: st.st_uid,
        owner_name: user_name(st.st_uid),
        euid,
    })
}

/// The name of user `uid`, if the system knows it (`getpwuid_r`).
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: zeroed is a valid passwd for getpwuid_r to overwrite.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` holds
        // `buf.len()` bytes for the strings `pwd` will point into.
        let r = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
        if r == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if r != 0 || found.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success `pw_name` is a NUL-terminated string in `buf`,
        // which outlives this borrow.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

/// Reserves the `total` bytes of a new segment's file, so that touching
/// them later cannot fault with `SIGBUS` for want of space: first a check
/// of the free space (so that an impossible size fails at once, without
/// filling the file system first), then `posix_fallocate`. Either failure
/// is [`Error::NoSpace`], with the space that is free.
fn reserve(fd: libc::c_int, total: u64, name: &str) -> Result<()> {
    let no_space = || Error::NoSpace {
        name: name.to_owned(),
        needed: total,
        free: free_bytes(fd).unwrap_or(0),
    };
    if free_bytes(fd).is_some_and(|free| free < total) {
        return Err(no_space());
    }
    loop {
        // SAFETY: `fd` is an open descriptor we own; total fits off_t
        // (at most isize::MAX, checked by total_size).
        let r = unsafe { libc::posix_fallocate(fd, 0, total as libc::off_t) };
        match r {
            0 => return Ok(()),
            libc::EINTR => continue,
            libc::ENOSPC | libc::EFBIG => return Err(no_space()),
            // A file system that cannot preallocate at all: nothing to
            // reserve with, as before.
            libc::EOPNOTSUPP => return Ok(()),
            e => {
                return Err(Error::Io {
                    op: "posix_fallocate",
                    name: name.to_owned(),
                    source: io::Error::from_raw_os_error(e),
                })
            }
        }
    }
}

/// The bytes free for an unprivileged writer on the file system of `fd`.
fn free_bytes(fd: libc::c_int) -> Option<u64> {
    // SAFETY: a zeroed statvfs is a valid value for fstatvfs to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open and `st` is a valid, writable statvfs.
    if unsafe { libc::fstatvfs(fd, &mut st) } != 0 {
        return None;
    }
    // A file system that reports no blocks at all (some pseudo file
    // systems) tells us nothing about its space.
    if st.f_blocks == 0 {
        return None;
    }
    #[allow(clippy::useless_conversion)]
    Some(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// The first 8-byte word of a file too short for a header, if it has one
/// (to tell a foreign file from a truncated segment). Read with `pread`,
/// which cannot fault however short the file is.
fn first_word(fd: &OwnedFd, size: u64) -> Option<u64> {
    if size < 8 {
        return None;
    }
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of 8 bytes; `fd` is open.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8, 0) };
    (n == 8).then(|| u64::from_ne_bytes(buf))
}

/// Maps `len` bytes of `fd` shared, read-write or read-only.
fn map_fd(fd: libc::c_int, len: usize, read_only: bool, name: &str) -> Result<MmapRaw> {
    let mut options = MmapOptions::new();
    options.len(len);
    let map = if read_only {
        options.map_raw_read_only(fd)
    } else {
        options.map_raw(fd)
    };
    map.map_err(|e| Error::from_io("mmap", name, e))
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// A new segment before it has its name: an unnamed `O_TMPFILE`, or (the
/// fallback) a temporary name that is removed on drop.
enum Staging {
    Unnamed(OwnedFd),
    Temporary { fd: OwnedFd, temp: CString },
}

impl Staging {
    /// A new, empty file with exactly `mode`.
    fn new(name: &Name, mode: u32, force_fallback: bool) -> Result<Staging> {
        let n = name.as_str();
        let unnamed = if force_fallback {
            Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
        } else {
            Staging::unnamed(mode)
        };
        let staging = match unnamed {
            Ok(fd) => Staging::Unnamed(fd),
            Err(e) if needs_fallback(&e) => Staging::temporary(name, mode)?,
            Err(e) => return Err(Error::from_io("open(O_TMPFILE)", n, e)),
        };
        // The umask trimmed the mode at creation; set it exactly.
        // SAFETY: the descriptor is open; fchmod touches no memory of ours.
        if unsafe { libc::fchmod(staging.fd(), mode as libc::mode_t) } != 0 {
            return Err(Error::from_io("fchmod", n, last_error()));
        }
        Ok(staging)
    }

    fn unnamed(mode: u32) -> io::Result<OwnedFd> {
        // linkat through /proc/self/fd needs /proc; without it, take the
        // fallback from the start.
        if !std::path::Path::new("/proc/self/fd").exists() {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let dir = CString::new(SHM_DIR).unwrap_or_default();
        let flags = libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC;
        // SAFETY: `dir` is a NUL-terminated path that outlives the call.
        owned(unsafe { libc::open(dir.as_ptr(), flags, mode as libc::c_uint) })
    }

    fn temporary(name: &Name, mode: u32) -> Result<Staging> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut tries = 0;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let temp = format!(
                "/.shmipc-tmp-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let temp = CString::new(temp).unwrap_or_default();
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
            // SAFETY: `temp` is a NUL-terminated name that outlives the call.
            let e = match owned(unsafe {
                libc::shm_open(temp.as_ptr(), flags, mode as libc::mode_t)
            }) {
                Ok(fd) => return Ok(Staging::Temporary { fd, temp }),
                Err(e) => e,
            };
            tries += 1;
            if e.raw_os_error() != Some(libc::EEXIST) || tries >= 16 {
                return Err(Error::Io {
                    op: "shm_open(temporary name)",
                    name: name.as_str().to_owned(),
                    source: e,
                });
            }
        }
    }

    fn fd(&self) -> libc::c_int {
        match self {
            Staging::Unnamed(fd) | Staging::Temporary { fd, .. } => fd.as_raw_fd(),
        }
    }

    /// Gives the file its name; fails with AlreadyExists if it is taken.
    fn publish(&self, name: &Name) -> Result<()> {
        let target = name.dev_shm_path();
        let r = match self {
            Staging::Unnamed(fd) => {
                let source =
                    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
                // SAFETY: both paths are NUL-terminated and outlive the call.
                unsafe {
                    libc::linkat(
                        libc::AT_FDCWD,
                        source.as_ptr(),
                        libc::AT_FDCWD,
                        target.as_ptr(),
                        libc::AT_SYMLINK_FOLLOW,
                    )
                }
            }
            Staging::Temporary { temp, .. } => {
                let source = CString::new(format!("{SHM_DIR}{}", temp.to_string_lossy()))
                    .unwrap_or_default();
                // SAFETY: both paths are NUL-terminated and outlive the call.
                unsafe { libc::link(source.as_ptr(), target.as_ptr()) }
            }
        };
        if r == 0 {
            return Ok(());
        }
        let e = last_error();
        let n = name.as_str().to_owned();
        Err(match e.raw_os_error() {
            Some(libc::EEXIST) => Error::AlreadyExists { name: n },
            Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied { name: n },
            Some(libc::ENAMETOOLONG) => Error::InvalidName {
                name: n,
                reason: "the system says it is too long",
            },
            _ => Error::Io {
                op: "link",
                name: n,
                source: e,
            },
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Staging::Temporary { temp, .. } = self {
            // Published or not, the temporary name goes.
            // SAFETY: `temp` is a NUL-terminated name that outlives the call.
            unsafe { libc::shm_unlink(temp.as_ptr()) };
        }
    }
}

/// Whether `open(O_TMPFILE)` failed because the feature is missing.
fn needs_fallback(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL | libc::ENOENT)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique(label: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "/shmipc-unit-{}-{}-{label}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn layout() -> ObjectLayout {
        ObjectLayout {
            kind: Kind::new(1000),
            size: 24,
            align: 8,
            params: [7, 0, 0, 1],
        }
    }

    fn temp_names() -> Vec<String> {
        let prefix = format!(".shmipc-tmp-{}-", std::process::id());
        std::fs::read_dir(SHM_DIR)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// The tests that look for temporary names run one at a time.
    static FALLBACK: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_fallback_publishes_and_removes_its_temporary_name() {
        let _one = FALLBACK.lock().unwrap_or_else(|p| p.into_inner());
        let name = unique("fallback");
        let m = Mapping::create_impl(
            &name,
            &layout(),
            &Options::new().mode(0o640),
            |ptr, len| {
                assert_eq!(len, 24);
                assert_eq!(ptr as usize % 8, 0);
                Ok(())
            },
            true,
        )
        .unwrap();
        assert_eq!(m.header().params, [7, 0, 0, 1]);
        let opened = Mapping::open(&name, Kind::new(1000), &Options::new(), |h| {
            h.expect_layout(&name, 24, 8, [7, 0, 0, 1])
        })
        .unwrap();
        assert_eq!(opened.header(), m.header());
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(format!("{SHM_DIR}{name}")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);

        // A taken name: AlreadyExists, and no temporary left behind.
        let again = Mapping::create_impl(&name, &layout(), &Options::new(), |_, _| Ok(()), true);
        assert!(
            matches!(again, Err(Error::AlreadyExists { .. })),
            "{again:?}"
        );
        // A failing init: its error, and nothing left behind.
        let other = unique("fallback-init-fails");
        let failed = Mapping::create_impl(
            &other,
            &layout(),
            &Options::new(),
            |_, _| Err(Error::corrupted("x", "init failed")),
            true,
        );
        assert!(matches!(failed, Err(Error::Corrupted { .. })), "{failed:?}");
        assert!(matches!(unlink(&other), Err(Error::NotFound { .. })));
        assert_eq!(temp_names(), Vec::<String>::new());
        unlink(&name).unwrap();
    }

    #[test]
    fn a_size_that_does_not_fit_is_no_space_and_leaves_nothing() {
        let _one = FALLBACK.lock().unwrap_or_else(|p| p.into_inner());
        let name = unique("no-space");
        let huge = ObjectLayout {
            size: 1 << 50,
            ..layout()
        };
        for fallback in [false, true] {
            let r = Mapping::create_impl(&name, &huge, &Options::new(), |_, _| Ok(()), fallback);
            assert!(
                // The header, the object, and the default peer table.
                matches!(&r, Err(Error::NoSpace { needed, .. }) if *needed == (1 << 50) + 128 + 256 * 32),
                "fallback {fallback}: {r:?}"
            );
        }
        assert!(matches!(unlink(&name), Err(Error::NotFound { .. })));
        assert_eq!(temp_names(), Vec::<String>::new());
    }

    #[test]
    fn validate_header_agrees_with_open() {
        let name = unique("validate");
        let m = Mapping::create(&name, &layout(), &Options::new(), |_, _| Ok(())).unwrap();
        let file = std::fs::read(format!("{SHM_DIR}{name}")).unwrap();
        let size = file.len() as u64;
        let expect = |h: &HeaderSnapshot| h.expect_layout(&name, 24, 8, [7, 0, 0, 1]);
        let snap = validate_header(&file, size, Kind::new(1000), &name, expect).unwrap();
        assert_eq!(&snap, m.header());
        // The decoder reads the fields where RawHeader has them.
        // SAFETY: the mapping is page-aligned and holds a whole header.
        let raw = unsafe { &*m.0.map.as_ptr().cast::<RawHeader>() };
        assert_eq!(raw.snapshot(), snap);

        let v = |start: &[u8], size: u64, kind: Kind| {
            validate_header(start, size, kind, &name, expect).map(|_| ())
        };
        assert!(matches!(
            v(&file, size, Kind::LOCK),
            Err(Error::WrongKind { found: 1000, .. })
        ));
        assert!(matches!(
            v(&file, size - 1, Kind::new(1000)),
            Err(Error::TooSmall {
                required,
                actual,
                ..
            }) if required == size && actual == size - 1
        ));
        assert!(matches!(
            v(&file[..100], size, Kind::new(1000)),
            Err(Error::TooSmall { actual: 100, .. })
        ));
        assert!(matches!(
            v(&file[..7], 7, Kind::new(1000)),
            Err(Error::TooSmall { actual: 7, .. })
        ));
        assert!(matches!(
            v(&[0; 8], 8, Kind::new(1000)),
            Err(Error::NotShmipc { .. })
        ));
        let mut bad = file.clone();
        bad[8] = 1;
        assert!(matches!(
            v(&bad, size, Kind::new(1000)),
            Err(Error::VersionMismatch { found: 1, .. })
        ));
        let mut bad = file.clone();
        bad[12] = INITIALIZING as u8;
        assert!(matches!(
            v(&bad, size, Kind::new(1000)),
            Err(Error::InitTimeout { .. })
        ));
        bad[12] = 9;
        assert!(matches!(
            v(&bad, size, Kind::new(1000)),
            Err(Error::Corrupted { .. })
        ));
        let mut bad = file.clone();
        bad[56] = 8;
        assert!(matches!(
            v(&bad, size, Kind::new(1000)),
            Err(Error::Corrupted { .. })
        ));
        drop(m);
        unlink(&name).unwrap();
    }

    #[test]
    fn impossible_layouts_are_refused_before_anything_is_created() {
        let name = unique("bad-layout");
        for bad in [
            ObjectLayout {
                size: 0,
                ..layout()
            },
            ObjectLayout {
                align: 3,
                ..layout()
            },
            ObjectLayout {
                align: 256,
                ..layout()
            },
            ObjectLayout {
                size: u64::MAX - 64,
                ..layout()
            },
        ] {
            let r = Mapping::create(&name, &bad, &Options::new(), |_, _| Ok(()));
            assert!(
                matches!(
                    &r,
                    Err(Error::Layout {
                        name: n,
                        source: shmipc_core::LayoutError::Parameter { .. }
                    }) if *n == name
                ),
                "{bad:?}: {r:?}"
            );
        }
        assert!(matches!(unlink(&name), Err(Error::NotFound { .. })));
    }

    #[test]
    fn open_or_create_goes_round_a_lost_race() {
        // open: NotFound, create: AlreadyExists (someone else won), open: Ok.
        let mut opens = 0;
        let r = Mapping::open_or_create(
            || {
                opens += 1;
                if opens == 1 {
                    Err(Error::NotFound { name: "/x".into() })
                } else {
                    Ok("theirs")
                }
            },
            || Err(Error::AlreadyExists { name: "/x".into() }),
        );
        assert_eq!(r.unwrap(), ("theirs", false));
        // Endless AlreadyExists/NotFound ping-pong ends with an error.
        let r: Result<((), bool)> = Mapping::open_or_create(
            || Err(Error::NotFound { name: "/x".into() }),
            || Err(Error::AlreadyExists { name: "/x".into() }),
        );
        assert!(matches!(r, Err(Error::AlreadyExists { .. })));
    }
}
