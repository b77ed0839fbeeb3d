//! Named (and anonymous) queues: the core's MPMC queue and byte-message
//! queue, each in a segment of its own, created and opened by name like
//! [`Shared<T>`](crate::Shared).
//!
//! | type | kind | object area | `params` |
//! |---|---|---|---|
//! | [`Queue<T>`] | [`Kind::QUEUE`] (64) | the core [`Mpmc`] | `[capacity, 0, 0, elem]` |
//! | [`SpscQueue<T>`](crate::SpscQueue) | [`Kind::SPSC_QUEUE`] (65) | role block, then the core [`Spsc`](shmipc_core::Spsc) | `[capacity, 0, 0, elem]` |
//! | [`ByteQueue`] | [`Kind::BYTE_QUEUE`] (66) | the core byte queue | `[capacity, max_message, 0, 0]` |
//! | [`Pipe`](crate::Pipe) | [`Kind::PIPE`] (67) | role block, then two core byte queues | `[capacity, max_message, 0, 0]` |
//!
//! `params` holds the core configuration's own words
//! ([`RingConfig::to_words`], [`BytesConfig::to_words`]); typed queues put
//! their element type in the last word as `size | align << 32`, so that
//! opening a `Queue<u64>` as a `Queue<u32>` is [`Error::ElementMismatch`].
//! An opener checks kind, element type and parameters in the header, that
//! the object size is exactly what the parameters need, and then the core
//! checks its own control block (magic, kind, element type, geometry)
//! against the mapping's length. Only then is the queue used.

use std::fmt;
use std::time::Duration;

use bytemuck::Pod;
use shmipc_core::bytes::ByteQueue as RawByteQueue;
use shmipc_core::{
    BytesConfig, Deadline, Mpmc, PopError, PushError, QueueError, ReadGrant, RecvError, RingConfig,
    SendError, WriteGrant,
};

use crate::error::{Error, Result};
use crate::memory::{self, HeaderSnapshot, Kind, Mapping, ObjectLayout, Options};

/// The memory a queue lives in (its one owner: see [`Mapping`]).
pub(crate) type Backing = Mapping;

/// The element word of a typed queue's `params`: `size | align << 32`.
fn elem_word<T>() -> u64 {
    size_of::<T>() as u64 | (align_of::<T>() as u64) << 32
}

/// `params` of a typed queue: the ring's words with the element type in
/// the last one.
pub(crate) fn typed_params<T>(config: RingConfig) -> Result<[u64; 4]> {
    let w = config.to_words();
    if w[3] != 0 {
        return Err(Error::layout(
            "(unnamed)",
            shmipc_core::LayoutError::InvalidParameters,
        ));
    }
    Ok([w[0], w[1], w[2], elem_word::<T>()])
}

/// Checks the element type recorded in a typed queue's header and decodes
/// its ring configuration.
pub(crate) fn typed_config<T>(name: &str, h: &HeaderSnapshot) -> Result<RingConfig> {
    let found = h.params[3];
    if found != elem_word::<T>() {
        return Err(Error::ElementMismatch {
            name: name.to_owned(),
            expected: std::any::type_name::<T>(),
            expected_size: size_of::<T>() as u64,
            expected_align: align_of::<T>() as u64,
            found_size: found & 0xffff_ffff,
            found_align: found >> 32,
        });
    }
    let [a, b, c, _] = h.params;
    RingConfig::from_words([a, b, c, 0])
        .map_err(|_| Error::corrupted(name, "the queue's parameters are invalid"))
}

/// Decodes a byte queue's (or pipe's) configuration from its header.
pub(crate) fn bytes_config(name: &str, h: &HeaderSnapshot) -> Result<BytesConfig> {
    let config = BytesConfig::from_words(h.params)
        .map_err(|_| Error::corrupted(name, "the queue's parameters are invalid"))?;
    RawByteQueue::layout(config)
        .map_err(|_| Error::corrupted(name, "the queue's parameters are invalid"))?;
    Ok(config)
}

/// Creates segment `name` of `kind` whose object has `layout` and
/// `params`, initialised by `init` before the name appears.
pub(crate) fn create_segment(
    name: &str,
    kind: Kind,
    layout: std::alloc::Layout,
    params: [u64; 4],
    opts: &Options,
    init: impl FnOnce(*mut u8, usize) -> std::result::Result<(), QueueError>,
) -> Result<Backing> {
    let object = ObjectLayout {
        kind,
        size: layout.size() as u64,
        align: layout.align() as u64,
        params,
    };
    Mapping::create(name, &object, opts, |ptr, len| {
        init(ptr, len).map_err(|e| Error::from_queue(name, e))
    })
}

/// Opens segment `name` of `kind`; `validate` checks the header and
/// returns the object layout its parameters call for, which must match the
/// header's size and alignment exactly.
pub(crate) fn open_segment(
    name: &str,
    kind: Kind,
    opts: &Options,
    validate: impl FnOnce(&HeaderSnapshot) -> Result<std::alloc::Layout>,
) -> Result<Backing> {
    if opts.read_only {
        return Err(Error::ReadOnly {
            name: name.to_owned(),
        });
    }
    Mapping::open(name, kind, opts, |h| {
        let l = validate(h)?;
        h.expect_layout(name, l.size() as u64, l.align() as u64, h.params)
    })
}

/// Maps anonymous shared memory for `layout` and runs `init` over it.
pub(crate) fn anon_backing(
    layout: std::alloc::Layout,
    init: impl FnOnce(*mut u8, usize) -> std::result::Result<(), QueueError>,
) -> Result<Backing> {
    let object = ObjectLayout {
        kind: Kind::BYTES,
        size: layout.size().max(1) as u64,
        align: 128,
        params: [0; 4],
    };
    Mapping::anon(&object, &Options::default(), |ptr, len| {
        init(ptr, len).map_err(|e| Error::from_queue("(anonymous)", e))
    })
}

// ---------------------------------------------------------------------------
// Queue<T>
// ---------------------------------------------------------------------------

/// A bounded multi-producer multi-consumer queue of `Pod` items in shared
/// memory: Python's `multiprocessing.Queue`, for any number of processes
/// that open it by name (or inherit an anonymous one through `fork`).
///
/// Every method takes `&self`; share one handle between threads with an
/// `Arc`, or open the name again. The algorithm is the core's
/// [`Mpmc`] (Vyukov's bounded queue, with claims that name their owner):
/// lock-free, no system call unless someone sleeps. A process killed in
/// the middle of a push or pop loses only that item; the slot it held is
/// skipped or freed by the next blocking call that waits on it, within
/// about 50 ms (see [`shmipc_core::mpmc`]).
///
/// ```
/// use shmipc::{fork, Queue, RingConfig, Unlinker};
/// use std::time::Duration;
///
/// let names = Unlinker::new("doc-queue");
/// let name = names.name("jobs");
/// let jobs = Queue::<u64>::create(&name, RingConfig::new(64))?;
///
/// let mut worker = fork(|| {
///     let jobs = Queue::<u64>::open(&name).unwrap();
///     let mut sum = 0;
///     while let Ok(job) = jobs.pop() {               // Closed once drained
///         sum += job;
///     }
///     (sum == 5050) as i32
/// })?;
/// for job in 1..=100 {
///     jobs.push(job)?;                               // sleeps while full
/// }
/// jobs.close();
/// assert_eq!(worker.join_timeout(Duration::from_secs(10))?.unwrap().code(), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T: Pod> {
    // Declared (so dropped) before the memory it points into.
    q: Mpmc<'static, T>,
    backing: Backing,
}

impl<T: Pod> Queue<T> {
    /// Creates the queue segment `name` holding `config.capacity` items (a
    /// power of two, at least 2), with default [`Options`];
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, config: RingConfig) -> Result<Self> {
        Self::create_with(name, config, &Options::default())
    }

    /// [`Queue::create`] with explicit options.
    pub fn create_with(name: &str, config: RingConfig, opts: &Options) -> Result<Self> {
        let layout = Mpmc::<T>::layout(config).map_err(|e| Error::layout(name, e))?;
        let params = typed_params::<T>(config)?;
        let backing = create_segment(name, Kind::QUEUE, layout, params, opts, |ptr, len| {
            // SAFETY: the bytes are ours alone until the segment is named
            // (Mapping::create's contract) and stay mapped while the
            // mapping lives; init_at checks size and alignment.
            unsafe { Mpmc::<T>::init_at(ptr, len, config) }.map(drop)
        })?;
        Self::attach(backing)
    }

    /// Opens the existing queue segment `name`, which must hold `T`s.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Queue::open`] with explicit options ([`Options::read_only`] is
    /// refused: every queue operation writes).
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        let backing = open_segment(name, Kind::QUEUE, opts, |h| {
            let config = typed_config::<T>(name, h)?;
            Mpmc::<T>::layout(config)
                .map_err(|_| Error::corrupted(name, "the queue's capacity is invalid"))
        })?;
        Self::attach(backing)
    }

    /// Opens `name`, or creates it with `config` if it does not exist.
    /// Returns whether this call created it. An existing queue keeps its
    /// own capacity.
    pub fn open_or_create(name: &str, config: RingConfig) -> Result<(Self, bool)> {
        Self::open_or_create_with(name, config, &Options::default())
    }

    /// [`Queue::open_or_create`] with explicit options.
    pub fn open_or_create_with(
        name: &str,
        config: RingConfig,
        opts: &Options,
    ) -> Result<(Self, bool)> {
        Mapping::open_or_create(
            || Self::open_with(name, opts),
            || Self::create_with(name, config, opts),
        )
    }

    /// A queue in an anonymous shared mapping: no name, and children forked
    /// after it was made share it with their parent.
    pub fn anon(config: RingConfig) -> Result<Self> {
        let layout = Mpmc::<T>::layout(config).map_err(|e| Error::layout("(anonymous)", e))?;
        let backing = anon_backing(layout, |ptr, len| {
            // SAFETY: a fresh mapping of `len` bytes that no one else sees
            // yet, kept alive by the backing; init_at checks the layout.
            unsafe { Mpmc::<T>::init_at(ptr, len, config) }.map(drop)
        })?;
        Self::attach(backing)
    }

    /// Removes the name (see [`unlink`](crate::unlink)).
    pub fn unlink(name: &str) -> Result<()> {
        memory::unlink(name)
    }

    fn attach(backing: Backing) -> Result<Self> {
        // SAFETY: the object bytes stay mapped as long as `backing`, which
        // the returned value owns and drops after `q`; `q` is never handed
        // out, so nothing outlives the mapping. The core checks the control
        // block against the length before it is used.
        let q = unsafe { Mpmc::<T>::attach(backing.object_ptr(), backing.object_len()) }
            .map_err(|e| Error::from_queue(backing.label(), e))?;
        Ok(Queue { q, backing })
    }

    /// The normalised name, or `None` for an anonymous queue.
    pub fn name(&self) -> Option<&str> {
        self.backing.name()
    }

    /// How many items the queue holds when full.
    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// Items in the queue now (a snapshot).
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether the queue is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Whether the queue is full now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.q.is_full()
    }

    /// Closes the queue for every process: pushes fail with
    /// [`PushError::Closed`], pops drain what is left and then fail with
    /// [`PopError::Closed`], and every sleeper on either side wakes.
    pub fn close(&self) {
        self.q.close()
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.q.is_closed()
    }

    /// Pushes `item` if there is room now.
    pub fn try_push(&self, item: T) -> std::result::Result<(), PushError> {
        self.q.try_push(item)
    }

    /// Pushes `item`, sleeping while the queue is full.
    pub fn push(&self, item: T) -> std::result::Result<(), PushError> {
        self.q.push(item)
    }

    /// Pushes `item`, waiting at most `timeout` for room.
    pub fn push_timeout(&self, item: T, timeout: Duration) -> std::result::Result<(), PushError> {
        self.q.push_timeout(item, timeout)
    }

    /// Pushes `item`, waiting for room until `deadline` (forever if `None`).
    pub fn push_until(
        &self,
        item: T,
        deadline: Option<&Deadline>,
    ) -> std::result::Result<(), PushError> {
        self.q.push_until(item, deadline)
    }

    /// Pops an item if one is ready now.
    pub fn try_pop(&self) -> std::result::Result<T, PopError> {
        self.q.try_pop()
    }

    /// Pops an item, sleeping while the queue is empty.
    pub fn pop(&self) -> std::result::Result<T, PopError> {
        self.q.pop()
    }

    /// Pops an item, waiting at most `timeout`.
    pub fn pop_timeout(&self, timeout: Duration) -> std::result::Result<T, PopError> {
        self.q.pop_timeout(timeout)
    }

    /// Pops an item, waiting until `deadline` (forever if `None`).
    pub fn pop_until(&self, deadline: Option<&Deadline>) -> std::result::Result<T, PopError> {
        self.q.pop_until(deadline)
    }

    /// Test support: a push that runs `pause` between claiming its slot
    /// and filling it (a window for tests to kill the process in).
    #[doc(hidden)]
    pub fn push_pausing(
        &self,
        item: T,
        timeout: Duration,
        pause: impl FnOnce(),
    ) -> std::result::Result<(), PushError> {
        self.q
            .push_pausing(item, Some(&Deadline::after(timeout)), pause)
    }

    /// Test support: a pop that runs `pause` between claiming its item and
    /// copying it out.
    #[doc(hidden)]
    pub fn pop_pausing(
        &self,
        timeout: Duration,
        pause: impl FnOnce(),
    ) -> std::result::Result<T, PopError> {
        self.q.pop_pausing(Some(&Deadline::after(timeout)), pause)
    }

    /// Test support: claims a slot as a push would and stops before
    /// publishing it, as a producer killed at that moment would.
    /// Test support: whether this handle's notifies use the light side of
    /// the asymmetric barrier (`shmipc_core::Mpmc::light_notify`).
    #[doc(hidden)]
    pub fn light_notify(&self) -> bool {
        self.q.light_notify()
    }

    #[doc(hidden)]
    pub fn claim_push_and_stop(&self) -> std::result::Result<u64, PushError> {
        self.q.claim_push_and_stop()
    }

    /// Test support: claims an item as a pop would and stops before
    /// copying it out, as a consumer killed at that moment would.
    #[doc(hidden)]
    pub fn claim_pop_and_stop(&self) -> std::result::Result<u64, PopError> {
        self.q.claim_pop_and_stop()
    }
}

impl<T: Pod> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// ByteQueue
// ---------------------------------------------------------------------------

/// A queue of variable-length byte messages in shared memory, for any
/// number of producer and consumer processes.
///
/// Messages are copied in with [`send`](ByteQueue::send) and out with
/// [`recv_into`](ByteQueue::recv_into), or filled and read in place with
/// [`reserve`](ByteQueue::reserve) / [`recv`](ByteQueue::recv) grants. A
/// message is never torn: a receiver sees all of it or nothing. See
/// [`shmipc_core::bytes`] for the ring and what a crash costs.
///
/// ```
/// use shmipc::{BytesConfig, ByteQueue, Unlinker};
///
/// let names = Unlinker::new("doc-bytes");
/// let name = names.name("log");
/// let log = ByteQueue::create(&name, BytesConfig::for_max_message(1024).unwrap())?;
/// let reader = ByteQueue::open(&name)?;             // e.g. in another process
///
/// log.send(b"hello")?;
/// let mut grant = log.reserve(5)?;                  // zero-copy: fill in place
/// grant.write_at(0, b"world").unwrap();
/// grant.commit();
///
/// let mut buf = [0u8; 1024];
/// let n = reader.recv_into(&mut buf)?;
/// assert_eq!(&buf[..n], b"hello");
/// assert_eq!(reader.recv_vec()?, b"world");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ByteQueue {
    // Declared (so dropped) before the memory it points into.
    q: RawByteQueue<'static>,
    backing: Backing,
}

impl ByteQueue {
    /// Creates the byte-queue segment `name` with default [`Options`]
    /// ([`BytesConfig::for_max_message`] picks a capacity);
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, config: BytesConfig) -> Result<Self> {
        Self::create_with(name, config, &Options::default())
    }

    /// [`ByteQueue::create`] with explicit options.
    pub fn create_with(name: &str, config: BytesConfig, opts: &Options) -> Result<Self> {
        let layout = RawByteQueue::layout(config).map_err(|e| Error::layout(name, e))?;
        let backing = create_segment(
            name,
            Kind::BYTE_QUEUE,
            layout,
            config.to_words(),
            opts,
            |ptr, len| {
                // SAFETY: as in `Queue::create_with`.
                unsafe { RawByteQueue::init_at(ptr, len, config) }.map(drop)
            },
        )?;
        Self::attach(backing)
    }

    /// Opens the existing byte-queue segment `name`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`ByteQueue::open`] with explicit options ([`Options::read_only`]
    /// is refused).
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        let backing = open_segment(name, Kind::BYTE_QUEUE, opts, |h| {
            let config = bytes_config(name, h)?;
            RawByteQueue::layout(config)
                .map_err(|_| Error::corrupted(name, "the queue's parameters are invalid"))
        })?;
        Self::attach(backing)
    }

    /// Opens `name`, or creates it with `config` if it does not exist.
    /// Returns whether this call created it.
    pub fn open_or_create(name: &str, config: BytesConfig) -> Result<(Self, bool)> {
        Self::open_or_create_with(name, config, &Options::default())
    }

    /// [`ByteQueue::open_or_create`] with explicit options.
    pub fn open_or_create_with(
        name: &str,
        config: BytesConfig,
        opts: &Options,
    ) -> Result<(Self, bool)> {
        Mapping::open_or_create(
            || Self::open_with(name, opts),
            || Self::create_with(name, config, opts),
        )
    }

    /// A byte queue in an anonymous shared mapping, shared with children
    /// forked after it was made.
    pub fn anon(config: BytesConfig) -> Result<Self> {
        let layout = RawByteQueue::layout(config).map_err(|e| Error::layout("(anonymous)", e))?;
        let backing = anon_backing(layout, |ptr, len| {
            // SAFETY: as in `Queue::anon`.
            unsafe { RawByteQueue::init_at(ptr, len, config) }.map(drop)
        })?;
        Self::attach(backing)
    }

    /// Removes the name (see [`unlink`](crate::unlink)).
    pub fn unlink(name: &str) -> Result<()> {
        memory::unlink(name)
    }

    fn attach(backing: Backing) -> Result<Self> {
        // SAFETY: as in `Queue::attach`: the handle never leaves `self`,
        // which drops it before the mapping.
        let q = unsafe { RawByteQueue::attach(backing.object_ptr(), backing.object_len()) }
            .map_err(|e| Error::from_queue(backing.label(), e))?;
        Ok(ByteQueue { q, backing })
    }

    /// The normalised name, or `None` for an anonymous queue.
    pub fn name(&self) -> Option<&str> {
        self.backing.name()
    }

    /// Bytes in the data ring.
    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }

    /// The largest message the queue takes.
    pub fn max_message(&self) -> usize {
        self.q.max_message()
    }

    /// Whether no message is waiting now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Bytes of the ring in use (a snapshot; see the core's `used_bytes`).
    pub fn used_bytes(&self) -> usize {
        self.q.used_bytes()
    }

    /// Closes the queue for every process: sends fail, receivers drain
    /// what was sent and then get [`RecvError::Closed`], and every sleeper
    /// wakes.
    pub fn close(&self) {
        self.q.close()
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.q.is_closed()
    }

    /// Copies `msg` in as one message if there is room now.
    pub fn try_send(&self, msg: &[u8]) -> std::result::Result<(), SendError> {
        self.q.try_send(msg)
    }

    /// Copies `msg` in as one message, sleeping while the queue is full.
    pub fn send(&self, msg: &[u8]) -> std::result::Result<(), SendError> {
        self.q.send(msg)
    }

    /// Copies `msg` in, waiting at most `timeout` for room.
    pub fn send_timeout(
        &self,
        msg: &[u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendError> {
        self.q.send_timeout(msg, timeout)
    }

    /// Reserves room for a message of `len` bytes if there is room now;
    /// fill it and [`commit`](WriteGrant::commit) it (dropping cancels).
    pub fn try_reserve(&self, len: usize) -> std::result::Result<WriteGrant<'_, '_>, SendError> {
        self.q.try_reserve(len)
    }

    /// Reserves room for `len` bytes, sleeping while the queue is full.
    pub fn reserve(&self, len: usize) -> std::result::Result<WriteGrant<'_, '_>, SendError> {
        self.q.reserve(len)
    }

    /// Reserves room for `len` bytes, waiting at most `timeout`.
    pub fn reserve_timeout(
        &self,
        len: usize,
        timeout: Duration,
    ) -> std::result::Result<WriteGrant<'_, '_>, SendError> {
        self.q.reserve_timeout(len, timeout)
    }

    /// Borrows the next message if one is ready now; dropping the grant
    /// gives its space back.
    pub fn try_recv(&self) -> std::result::Result<ReadGrant<'_, '_>, RecvError> {
        self.q.try_recv()
    }

    /// Borrows the next message, sleeping while there is none.
    pub fn recv(&self) -> std::result::Result<ReadGrant<'_, '_>, RecvError> {
        self.q.recv()
    }

    /// Borrows the next message, waiting at most `timeout`.
    pub fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ReadGrant<'_, '_>, RecvError> {
        self.q.recv_timeout(timeout)
    }

    /// Copies the next message into `buf` if one is ready now; returns its
    /// length. A message longer than `buf` stays in the queue
    /// ([`RecvError::BufferTooSmall`]).
    pub fn try_recv_into(&self, buf: &mut [u8]) -> std::result::Result<usize, RecvError> {
        self.q.try_recv_into(buf)
    }

    /// Copies the next message into `buf`, sleeping while there is none.
    pub fn recv_into(&self, buf: &mut [u8]) -> std::result::Result<usize, RecvError> {
        self.q.recv_into(buf)
    }

    /// Copies the next message into `buf`, waiting at most `timeout`.
    pub fn recv_into_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::result::Result<usize, RecvError> {
        self.q.recv_into_timeout(buf, timeout)
    }

    /// Receives the next message into a new `Vec`, sleeping while there is
    /// none.
    pub fn recv_vec(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.q.recv().and_then(take_vec)
    }

    /// Receives the next message into a new `Vec`, waiting at most
    /// `timeout`.
    pub fn recv_vec_timeout(&self, timeout: Duration) -> std::result::Result<Vec<u8>, RecvError> {
        self.q.recv_timeout(timeout).and_then(take_vec)
    }

    /// Test support: takes the writers' (`true`) or the readers' (`false`)
    /// lock of the ring, runs `while_held` (a test stops or kills the
    /// process there), and lets go.
    #[doc(hidden)]
    pub fn hold_side_lock(
        &self,
        writers: bool,
        while_held: impl FnOnce(),
    ) -> std::result::Result<(), shmipc_core::LockError> {
        self.q.hold_side_lock(writers, while_held)
    }

    /// Waits at most `timeout` for a message to be ready, without taking
    /// it, and returns its length ([`RecvError::Timeout`] if none came,
    /// [`RecvError::Closed`] once closed and drained). Another consumer may
    /// take it first.
    pub fn poll_timeout(&self, timeout: Duration) -> std::result::Result<usize, RecvError> {
        self.q.poll_timeout(timeout)
    }

    /// The memory it lives in (the typed queue keeps its count in the
    /// header).
    pub(crate) fn memory(&self) -> &Mapping {
        &self.backing
    }
}

/// Copies a borrowed message out.
pub(crate) fn to_vec(g: &ReadGrant<'_, '_>) -> Vec<u8> {
    let mut v = vec![0; g.len()];
    g.copy_to(&mut v);
    v
}

/// Copies a borrowed message out and releases it; `Corrupted` if the
/// record was taken from us meanwhile (see [`ReadGrant::release_checked`]):
/// the copy may be torn.
pub(crate) fn take_vec(g: ReadGrant<'_, '_>) -> std::result::Result<Vec<u8>, RecvError> {
    let v = to_vec(&g);
    g.release_checked()?;
    Ok(v)
}

impl fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteQueue")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .field("max_message", &self.max_message())
            .field("closed", &self.is_closed())
            .finish()
    }
}
