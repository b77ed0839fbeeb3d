//! [`SpscQueue<T>`]: the core's SPSC ring in a segment of its own, with
//! its producer and consumer roles claimed by one process each.

use std::alloc::Layout;
use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;
use shmipc_core::spsc::{Consumer, Producer};
use shmipc_core::{RingConfig, Spsc, Token};

use super::roles::{HeldRole, Roles, ROLES_SIZE};
use super::{check_typed, object, typed_layout};
use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;

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
/// [`SpscProducer`] or [`SpscConsumer`] (the core's handles, owning the
/// mapping and the claim: a [`HeldRole`]) gives the role back, and a role
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
/// use shmipc::{fork, Named, RingConfig, SpscQueue, Unlinker};
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
    memory: Mapping,
    _items: PhantomData<fn() -> T>,
}

/// The producer role of an [`SpscQueue`]: the core's producer, owning the
/// mapping and the role. Dropping it gives the role back, and the
/// consumer, once drained, gets `PopError::Disconnected` (end-of-stream, as
/// when the producer dies) until another producer claims the role.
pub type SpscProducer<T> = Producer<'static, T, HeldRole>;

/// The consumer role of an [`SpscQueue`]: the core's consumer, owning the
/// mapping and the role. Dropping it gives the role back.
pub type SpscConsumer<T> = Consumer<'static, T, HeldRole>;

impl<T: Pod> Named for SpscQueue<T> {
    const KIND: Kind = Kind::SPSC_QUEUE;
    /// The capacity: a power of two.
    type Config<'a> = RingConfig;
    /// Both ends: keep one and hand the other to a child you fork (and do
    /// not use it in the parent any more). Anonymous queues have no role
    /// claims.
    type Anon = (SpscProducer<T>, SpscConsumer<T>);

    fn layout(config: &RingConfig) -> std::result::Result<ObjectLayout, shmipc_core::LayoutError> {
        let (whole, _) = Self::layouts(*config)?;
        Ok(typed_layout::<T>(Self::KIND, whole, *config))
    }

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

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        check_typed::<T>(name, header, |c| Self::layouts(c).map(|(whole, _)| whole))
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        object(&memory, ROLES_SIZE)?;
        Ok(SpscQueue {
            memory,
            _items: PhantomData,
        })
    }

    fn attach_anon(memory: Mapping) -> Result<Self::Anon> {
        let q = Self::attach(memory, true)?;
        Ok((q.producer_handle(None)?, q.consumer_handle(None)?))
    }
}

impl<T: Pod> SpscQueue<T> {
    /// The object layout (role block, then the ring) and the ring's.
    fn layouts(
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

    /// Opens `name` (without claiming a role: see [`Named::open`]) and
    /// claims its producer role.
    pub fn producer(name: &str) -> Result<SpscProducer<T>> {
        Self::open(name)?.take_producer()
    }

    /// Opens `name` and claims its consumer role.
    pub fn consumer(name: &str) -> Result<SpscConsumer<T>> {
        Self::open(name)?.take_consumer()
    }

    fn roles(&self) -> &Roles {
        // SAFETY: the object area is at least ROLES_SIZE bytes (checked in
        // attach), 128-byte aligned, mapped while `self.memory`
        // lives, and the role block is only accessed atomically.
        unsafe { Roles::at(self.memory.object_ptr()) }
    }

    fn ring(&self) -> (*mut u8, usize) {
        // SAFETY: in bounds: the object area is at least ROLES_SIZE bytes.
        let ptr = unsafe { self.memory.object_ptr().add(ROLES_SIZE) };
        (ptr, self.memory.object_len() - ROLES_SIZE)
    }

    fn label(&self) -> &str {
        self.memory.label()
    }

    /// Claims the producer role for this process.
    pub fn take_producer(&self) -> Result<SpscProducer<T>> {
        let token =
            self.roles()
                .claim(PRODUCER, self.memory.presence(), self.label(), "producer")?;
        self.producer_handle(Some(token))
    }

    /// Claims the consumer role for this process.
    pub fn take_consumer(&self) -> Result<SpscConsumer<T>> {
        let token =
            self.roles()
                .claim(CONSUMER, self.memory.presence(), self.label(), "consumer")?;
        self.consumer_handle(Some(token))
    }

    /// The producer handle, holding `claim` (given back when it drops,
    /// also when this fails).
    fn producer_handle(&self, claim: Option<Token>) -> Result<SpscProducer<T>> {
        let (ptr, len) = self.ring();
        let held = HeldRole::new(self.memory.clone(), PRODUCER, claim);
        // SAFETY: the ring stays mapped while the handle's clone of the
        // mapping (in `held`) lives; the role claim makes this the only
        // producer. The core checks the control block.
        let p = unsafe { Spsc::<T>::attach_producer_owned(ptr, len, held) }
            .map_err(|e| Error::from_queue(self.label(), e))?;
        // A claimed producer is known to the consumer at once (so that its
        // death is end-of-stream even if it sent nothing); an anonymous
        // one, which a parent hands to a child, from its first push.
        if claim.is_some() {
            p.declare();
        }
        Ok(p)
    }

    /// The consumer handle, holding `claim` (as for the producer).
    fn consumer_handle(&self, claim: Option<Token>) -> Result<SpscConsumer<T>> {
        let (ptr, len) = self.ring();
        let held = HeldRole::new(self.memory.clone(), CONSUMER, claim);
        // SAFETY: as in producer_handle, for the one consumer.
        let c = unsafe { Spsc::<T>::attach_consumer_owned(ptr, len, held) }
            .map_err(|e| Error::from_queue(self.label(), e))?;
        if claim.is_some() {
            c.declare();
        }
        Ok(c)
    }

    /// The normalised name, or `None` for an anonymous queue.
    pub fn name(&self) -> Option<&str> {
        self.memory.name()
    }

    /// The pid of the process holding the producer role, as that process
    /// numbers itself (another pid namespace numbers it differently), if
    /// the role is held (a snapshot).
    pub fn producer_pid(&self) -> Option<u32> {
        let t = self.roles().holder(PRODUCER)?;
        self.memory.presence().peer_pid(t)
    }

    /// The pid of the process holding the consumer role (see
    /// [`SpscQueue::producer_pid`]).
    pub fn consumer_pid(&self) -> Option<u32> {
        let t = self.roles().holder(CONSUMER)?;
        self.memory.presence().peer_pid(t)
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
