//! A named single-producer single-consumer ring whose producer and
//! consumer roles are claimed by one process each.

use std::alloc::Layout;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;
use shmipc_core::spsc::{Consumer, Producer};
use shmipc_core::{Deadline, PopError, PushError, RingConfig, Spsc};

use crate::error::{Error, Result};
use crate::memory::{self, Kind, Mapping, Options};
use crate::queue::{
    anon_backing, create_segment, open_segment, typed_config, typed_params, Backing,
};
use crate::roles::{release_role, Roles, ROLES_SIZE};
use shmipc_core::Token;

const PRODUCER: usize = 0;
const CONSUMER: usize = 1;

/// A single-producer single-consumer ring of `Pod` items in a named
/// segment: the fastest way to stream items from one process to another,
/// with batch copies ([`SpscProducer::push_slice`],
/// [`SpscConsumer::pop_slice`]).
///
/// The queue has two roles, and a process must claim one to use it:
/// [`SpscQueue::producer`] / [`SpscQueue::consumer`] open the segment and
/// claim a role in one step (or [`take_producer`](SpscQueue::take_producer)
/// / [`take_consumer`](SpscQueue::take_consumer) on a handle). A role has
/// one holder at a time, across all processes: a second claimant gets
/// [`Error::RoleTaken`], naming the holder's pid. Dropping the
/// [`SpscProducer`] or [`SpscConsumer`] gives the role back, and a role
/// whose holder died (even if not yet reaped: a zombie) can be claimed
/// again. A producer killed in the middle of a push publishes nothing of
/// it: items become visible through one store of the ring's tail, made
/// after the whole batch is copied in, so the consumer sees whole items in
/// order, and the next producer carries on after the last one published.
///
/// The claim words live in a 128-byte block at the start of the object
/// area, before the core ring (see `docs/DESIGN.md`). A claim names a
/// process, not a handle: a child forked while its parent holds a role
/// inherits the handle's bytes but must not use them while the parent
/// does (a fork child drops nothing it inherited, so the claim stays the
/// parent's).
///
/// ```
/// use shmipc::{fork, RingConfig, SpscQueue, Unlinker};
/// use std::time::Duration;
///
/// let names = Unlinker::new("doc-spsc");
/// let name = names.name("ticks");
/// let queue = SpscQueue::<u64>::create(&name, RingConfig::new(1024))?;
/// let mut tx = queue.take_producer()?;
/// assert!(SpscQueue::<u64>::producer(&name).is_err()); // one producer only
///
/// let mut reader = fork(|| {
///     let mut rx = SpscQueue::<u64>::consumer(&name).unwrap();
///     let mut expected = 0;
///     while let Ok(v) = rx.pop() {
///         assert_eq!(v, expected);
///         expected += 1;
///     }
///     (expected == 10_000) as i32
/// })?;
/// for i in 0..10_000 {
///     tx.push(i)?;
/// }
/// tx.close();
/// assert_eq!(reader.join_timeout(Duration::from_secs(10))?.unwrap().code(), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SpscQueue<T: Pod> {
    backing: Backing,
    _items: PhantomData<fn() -> T>,
}

impl<T: Pod> SpscQueue<T> {
    fn layout(
        config: RingConfig,
    ) -> std::result::Result<(Layout, Layout), shmipc_core::LayoutError> {
        let ring = Spsc::<T>::layout(config)?;
        let too_large = shmipc_core::LayoutError::parameter(
            "capacity",
            config.capacity as u64,
            shmipc_core::Rule::Text("makes the queue larger than the address space"),
        );
        let size = ROLES_SIZE.checked_add(ring.size()).ok_or(too_large)?;
        let whole =
            Layout::from_size_align(size, ring.align().max(ROLES_SIZE)).map_err(|_| too_large)?;
        Ok((whole, ring))
    }

    /// # Safety
    ///
    /// `ptr` is valid for `len` bytes, 128-byte aligned, and no one else
    /// sees them yet.
    unsafe fn init(
        ptr: *mut u8,
        len: usize,
        config: RingConfig,
    ) -> std::result::Result<(), shmipc_core::QueueError> {
        if len < ROLES_SIZE {
            return Err(shmipc_core::LayoutError::InvalidParameters.into());
        }
        // SAFETY: the first ROLES_SIZE bytes are ours (contract).
        unsafe { Roles::init(ptr) };
        // SAFETY: the rest is ours too; init_at checks size and alignment.
        // The handles it returns are dropped at once (they own nothing).
        unsafe { Spsc::<T>::init_at(ptr.add(ROLES_SIZE), len - ROLES_SIZE, config) }.map(drop)
    }

    /// Creates the SPSC queue segment `name` holding `config.capacity` items
    /// (a power of two), with both roles free; [`Error::AlreadyExists`] if
    /// the name is taken.
    pub fn create(name: &str, config: RingConfig) -> Result<Self> {
        Self::create_with(name, config, &Options::default())
    }

    /// [`SpscQueue::create`] with explicit options.
    pub fn create_with(name: &str, config: RingConfig, opts: &Options) -> Result<Self> {
        let (layout, _) = Self::layout(config).map_err(|e| Error::layout(name, e))?;
        let params = typed_params::<T>(config)?;
        let backing = create_segment(name, Kind::SPSC_QUEUE, layout, params, opts, |p, n| {
            // SAFETY: Mapping::create hands us the unnamed, zeroed object
            // bytes, 128-byte aligned, ours alone until the name appears.
            unsafe { Self::init(p, n, config) }
        })?;
        Self::from_backing(backing)
    }

    /// Opens the existing SPSC queue segment `name`, which must hold `T`s,
    /// without claiming a role.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`SpscQueue::open`] with explicit options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        let backing = open_segment(name, Kind::SPSC_QUEUE, opts, |h| {
            let config = typed_config::<T>(name, h)?;
            Self::layout(config)
                .map(|(whole, _)| whole)
                .map_err(|_| Error::corrupted(name, "the queue's capacity is invalid"))
        })?;
        Self::from_backing(backing)
    }

    /// Opens `name`, or creates it with `config` if it does not exist.
    /// Returns whether this call created it.
    pub fn open_or_create(name: &str, config: RingConfig) -> Result<(Self, bool)> {
        let opts = Options::default();
        Mapping::open_or_create(
            || Self::open_with(name, &opts),
            || Self::create_with(name, config, &opts),
        )
    }

    /// Opens `name` and claims its producer role.
    pub fn producer(name: &str) -> Result<SpscProducer<T>> {
        Self::open(name)?.take_producer()
    }

    /// Opens `name` and claims its consumer role.
    pub fn consumer(name: &str) -> Result<SpscConsumer<T>> {
        Self::open(name)?.take_consumer()
    }

    /// An SPSC queue in an anonymous shared mapping, as its two ends: keep
    /// one and hand the other to a child you fork (and do not use it in the
    /// parent any more). Anonymous queues have no role claims.
    pub fn anon(config: RingConfig) -> Result<(SpscProducer<T>, SpscConsumer<T>)> {
        let (layout, _) = Self::layout(config).map_err(|e| Error::layout("(anonymous)", e))?;
        let backing = anon_backing(layout, |p, n| {
            // SAFETY: a fresh anonymous mapping, page-aligned, unseen.
            unsafe { Self::init(p, n, config) }
        })?;
        let q = Self::from_backing(backing)?;
        Ok((q.producer_handle(None)?, q.consumer_handle(None)?))
    }

    /// Removes the name (see [`unlink`](crate::unlink)).
    pub fn unlink(name: &str) -> Result<()> {
        memory::unlink(name)
    }

    fn from_backing(backing: Backing) -> Result<Self> {
        if backing.object_len() < ROLES_SIZE {
            return Err(Error::corrupted(backing.label(), "the object is too small"));
        }
        Ok(SpscQueue {
            backing,
            _items: PhantomData,
        })
    }

    fn roles(&self) -> &Roles {
        // SAFETY: the object area is at least ROLES_SIZE bytes (checked in
        // from_backing), 128-byte aligned, mapped while `self.backing`
        // lives, and the role block is only accessed atomically.
        unsafe { Roles::at(self.backing.object_ptr()) }
    }

    fn ring(&self) -> (*mut u8, usize) {
        // SAFETY: in bounds: the object area is at least ROLES_SIZE bytes.
        let ptr = unsafe { self.backing.object_ptr().add(ROLES_SIZE) };
        (ptr, self.backing.object_len() - ROLES_SIZE)
    }

    fn label(&self) -> &str {
        self.backing.label()
    }

    /// Claims the producer role for this process.
    pub fn take_producer(&self) -> Result<SpscProducer<T>> {
        let token =
            self.roles()
                .claim(PRODUCER, self.backing.presence(), self.label(), "producer")?;
        // On error the handle is not built; give the role back.
        self.producer_handle(Some(token)).inspect_err(|_| {
            self.roles()
                .release(PRODUCER, self.backing.presence(), token);
        })
    }

    /// Claims the consumer role for this process.
    pub fn take_consumer(&self) -> Result<SpscConsumer<T>> {
        let token =
            self.roles()
                .claim(CONSUMER, self.backing.presence(), self.label(), "consumer")?;
        self.consumer_handle(Some(token)).inspect_err(|_| {
            self.roles()
                .release(CONSUMER, self.backing.presence(), token);
        })
    }

    fn producer_handle(&self, claim: Option<Token>) -> Result<SpscProducer<T>> {
        let (ptr, len) = self.ring();
        // SAFETY: the ring stays mapped while the handle's clone of the
        // mapping lives, and the handle drops `p` first; the role claim
        // makes this the only producer. The core checks the control block.
        let p = unsafe { Spsc::<T>::attach_producer(ptr, len) }
            .map_err(|e| Error::from_queue(self.label(), e))?;
        Ok(SpscProducer {
            p,
            claim,
            backing: self.backing.clone(),
        })
    }

    fn consumer_handle(&self, claim: Option<Token>) -> Result<SpscConsumer<T>> {
        let (ptr, len) = self.ring();
        // SAFETY: as in producer_handle, for the one consumer.
        let c = unsafe { Spsc::<T>::attach_consumer(ptr, len) }
            .map_err(|e| Error::from_queue(self.label(), e))?;
        Ok(SpscConsumer {
            c,
            claim,
            backing: self.backing.clone(),
        })
    }

    /// The normalised name, or `None` for an anonymous queue.
    pub fn name(&self) -> Option<&str> {
        self.backing.name()
    }

    /// The pid of the process holding the producer role, as that process
    /// numbers itself (another pid namespace numbers it differently), if
    /// the role is held (a snapshot).
    pub fn producer_pid(&self) -> Option<u32> {
        let t = self.roles().holder(PRODUCER)?;
        self.backing.presence().peer_pid(t)
    }

    /// The pid of the process holding the consumer role (see
    /// [`SpscQueue::producer_pid`]).
    pub fn consumer_pid(&self) -> Option<u32> {
        let t = self.roles().holder(CONSUMER)?;
        self.backing.presence().peer_pid(t)
    }
}

impl<T: Pod> fmt::Debug for SpscQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscQueue")
            .field("name", &self.name())
            .field("producer_pid", &self.producer_pid())
            .field("consumer_pid", &self.consumer_pid())
            .finish()
    }
}

/// The producer role of an [`SpscQueue`]: pushes items. Dropping it gives
/// the role back.
pub struct SpscProducer<T: Pod> {
    // Declared (so dropped) before the memory it points into.
    p: Producer<'static, T>,
    /// The pid recorded in the role block, for named queues.
    claim: Option<Token>,
    backing: Backing,
}

impl<T: Pod> SpscProducer<T> {
    /// Test support: whether this producer's notifies use the light side
    /// of the asymmetric barrier (`shmipc_core::spsc::Producer::light_notify`).
    #[doc(hidden)]
    pub fn light_notify(&self) -> bool {
        self.p.light_notify()
    }

    /// How many items the queue holds when full.
    pub fn capacity(&self) -> usize {
        self.p.capacity()
    }

    /// Items in the queue now (a snapshot).
    pub fn len(&self) -> usize {
        self.p.len()
    }

    /// Whether the queue is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.p.is_empty()
    }

    /// Whether the queue is full now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.p.is_full()
    }

    /// Closes the queue: pushes fail, the consumer drains what is left and
    /// then gets [`PopError::Closed`]; sleepers wake.
    pub fn close(&self) {
        self.p.close()
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.p.is_closed()
    }

    /// Pushes `item` if there is room now.
    pub fn try_push(&mut self, item: T) -> std::result::Result<(), PushError> {
        self.p.try_push(item)
    }

    /// Pushes `item`, sleeping while the queue is full.
    pub fn push(&mut self, item: T) -> std::result::Result<(), PushError> {
        self.p.push(item)
    }

    /// Pushes `item`, waiting at most `timeout` for room.
    pub fn push_timeout(
        &mut self,
        item: T,
        timeout: Duration,
    ) -> std::result::Result<(), PushError> {
        self.p.push_timeout(item, timeout)
    }

    /// Pushes `item`, waiting until `deadline` (forever if `None`).
    pub fn push_until(
        &mut self,
        item: T,
        deadline: Option<&Deadline>,
    ) -> std::result::Result<(), PushError> {
        self.p.push_until(item, deadline)
    }

    /// Copies as many of `items` as fit now and publishes them at once;
    /// returns how many. [`PushError::Full`] only if none fit.
    pub fn push_slice(&mut self, items: &[T]) -> std::result::Result<usize, PushError> {
        self.p.push_slice(items)
    }
}

impl<T: Pod> Drop for SpscProducer<T> {
    fn drop(&mut self) {
        release_role(&self.backing, PRODUCER, self.claim);
    }
}

impl<T: Pod> fmt::Debug for SpscProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscProducer")
            .field("name", &self.backing.name())
            .field("producer", &self.p)
            .finish()
    }
}

/// The consumer role of an [`SpscQueue`]: pops items. Dropping it gives
/// the role back.
pub struct SpscConsumer<T: Pod> {
    // Declared (so dropped) before the memory it points into.
    c: Consumer<'static, T>,
    claim: Option<Token>,
    backing: Backing,
}

impl<T: Pod> SpscConsumer<T> {
    /// How many items the queue holds when full.
    pub fn capacity(&self) -> usize {
        self.c.capacity()
    }

    /// Items in the queue now (a snapshot).
    pub fn len(&self) -> usize {
        self.c.len()
    }

    /// Whether the queue is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.c.is_empty()
    }

    /// Closes the queue (see [`SpscProducer::close`]).
    pub fn close(&self) {
        self.c.close()
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.c.is_closed()
    }

    /// Pops an item if one is ready now.
    pub fn try_pop(&mut self) -> std::result::Result<T, PopError> {
        self.c.try_pop()
    }

    /// Pops an item, sleeping while the queue is empty.
    pub fn pop(&mut self) -> std::result::Result<T, PopError> {
        self.c.pop()
    }

    /// Pops an item, waiting at most `timeout`.
    pub fn pop_timeout(&mut self, timeout: Duration) -> std::result::Result<T, PopError> {
        self.c.pop_timeout(timeout)
    }

    /// Pops an item, waiting until `deadline` (forever if `None`).
    pub fn pop_until(&mut self, deadline: Option<&Deadline>) -> std::result::Result<T, PopError> {
        self.c.pop_until(deadline)
    }

    /// Copies up to `out.len()` ready items into `out` at once; returns
    /// how many. [`PopError::Empty`] only if none are ready.
    pub fn pop_slice(&mut self, out: &mut [T]) -> std::result::Result<usize, PopError> {
        self.c.pop_slice(out)
    }
}

impl<T: Pod> Drop for SpscConsumer<T> {
    fn drop(&mut self) {
        release_role(&self.backing, CONSUMER, self.claim);
    }
}

impl<T: Pod> fmt::Debug for SpscConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpscConsumer")
            .field("name", &self.backing.name())
            .field("consumer", &self.c)
            .finish()
    }
}
