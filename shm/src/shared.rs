//! [`Shared<T>`]: one of the core's fixed-size objects (a lock, a
//! semaphore, an event, a condition, a barrier, an atomic) in a segment of
//! its own, or in anonymous memory for forked children.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use shmipc_core::sync::{AtomicU32, AtomicU64};
use shmipc_core::{Barrier, Condition, Event, Lock, QueueError, RLock, Semaphore, SharedObject};

use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;

/// A fixed-size [`SharedObject`] that can be a named segment of its own:
/// it has a [`Kind`] for the header, so that opening a segment as the wrong
/// type is an error.
pub trait ShmObject: SharedObject {
    /// The kind written into and expected in the header.
    const KIND: Kind;
}

/// `impl ShmObject` for each type, with its kind (and any docs).
macro_rules! shm_objects {
    ($($(#[$doc:meta])* $t:ty => $kind:ident;)*) => {
        $($(#[$doc])* impl ShmObject for $t {
            const KIND: Kind = Kind::$kind;
        })*
    };
}

shm_objects! {
    Lock => LOCK;
    /// An [`RLock`] in a segment of its own, or in anonymous memory
    /// ([`Shared::anon`]): the thread that holds it takes it again, every
    /// other thread and process waits for its last release, and a holder
    /// that dies (at any depth) is taken over as a [`Lock`]'s is:
    ///
    /// ```
    /// use shmipc::{fork, LockError, Named, RLock, Shared};
    /// use std::time::Duration;
    ///
    /// let lock = Shared::<RLock>::anon(())?;
    /// let outer = lock.lock()?;
    /// let inner = lock.lock()?;
    /// assert_eq!(inner.depth(), 2);
    /// let mut child = fork(|| (lock.try_lock().unwrap_err() == LockError::WouldBlock) as i32)?;
    /// assert_eq!(child.join_timeout(Duration::from_secs(10))?.unwrap().code(), Some(1));
    /// drop((inner, outer));
    /// assert!(!lock.is_locked());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    RLock => RLOCK;
    Semaphore => SEMAPHORE;
    Event => EVENT;
    AtomicU32 => ATOMIC_U32;
    AtomicU64 => ATOMIC_U64;
    /// A [`Condition`] in a segment of its own, or in anonymous memory
    /// ([`Shared::anon`]), so that processes wait on it:
    ///
    /// ```
    /// use shmipc::sync::{AtomicU32, Ordering};
    /// use shmipc::{fork, Condition, Named, Shared};
    /// use std::time::Duration;
    ///
    /// let cond = Shared::<Condition>::anon(())?;
    /// let ready = Shared::<AtomicU32>::anon(0)?;
    /// let mut child = fork(|| {
    ///     let guard = cond.lock().unwrap();
    ///     let guard = guard.wait_while(|| ready.load(Ordering::Relaxed) == 0).unwrap();
    ///     drop(guard);
    ///     ready.load(Ordering::Relaxed) as i32            // 42
    /// })?;
    /// {
    ///     let _guard = cond.lock()?;
    ///     ready.store(42, Ordering::Relaxed);
    ///     cond.notify_all();
    /// }
    /// assert_eq!(child.join_timeout(Duration::from_secs(10))?.unwrap().code(), Some(42));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Condition => CONDITION;
    /// A [`Barrier`] in a segment of its own, or in anonymous memory
    /// ([`Shared::anon`]), so that processes meet at it; its config is the
    /// number of parties:
    ///
    /// ```
    /// use shmipc::{fork, Barrier, BarrierError, Named, Shared};
    /// use std::time::Duration;
    ///
    /// let barrier = Shared::<Barrier>::anon(3)?;              // three parties
    /// let mut children = Vec::new();
    /// for _ in 0..2 {
    ///     children.push(fork(|| match barrier.wait() {
    ///         Ok(leader) => leader as i32,
    ///         Err(_) => 99,
    ///     })?);
    /// }
    /// let leader = barrier.wait()?;
    /// let leaders: i32 = children
    ///     .iter_mut()
    ///     .map(|c| c.join_timeout(Duration::from_secs(10)).unwrap().unwrap().code().unwrap())
    ///     .sum::<i32>()
    ///     + leader as i32;
    /// assert_eq!(leaders, 1);                               // exactly one leader
    ///
    /// // Alone at the barrier: the timeout breaks it.
    /// assert_eq!(barrier.wait_timeout(Duration::from_millis(10)), Err(BarrierError::Timeout));
    /// assert_eq!(barrier.wait(), Err(BarrierError::Broken));
    /// barrier.reset();
    /// assert!(!barrier.is_broken());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Barrier => BARRIER;
}

/// A `T` in shared memory of its own: a named segment that other
/// processes open by name, or anonymous memory that children forked after
/// it was made share with their parent ([`Named::anon`]).
///
/// Dereferences to `T`. Dropping it unmaps the memory; nothing ever
/// unlinks the name except [`Named::unlink`] (or [`unlink`](crate::unlink)),
/// so a forked child that drops its handle leaves the segment in place.
///
/// ```
/// use shmipc::{fork, AtomicU64, Event, Named, Shared};
/// use std::sync::atomic::Ordering;
/// use std::time::Duration;
///
/// let name = format!("/shmipc-doc-shared-{}", std::process::id());
/// let done = Shared::<Event>::create(&name, ())?;
/// let seen_elsewhere = Shared::<Event>::open(&name)?; // as another process would
/// done.set();
/// assert!(seen_elsewhere.is_set());
/// Shared::<Event>::unlink(&name)?;
///
/// // Anonymous: no name, shared with forked children.
/// let hits = Shared::<AtomicU64>::anon(0)?;
/// let mut child = fork(|| {
///     hits.fetch_add(1, Ordering::Relaxed);
///     0
/// })?;
/// assert!(child.join_timeout(Duration::from_secs(10))?.expect("child hangs").success());
/// assert_eq!(hits.load(Ordering::Relaxed), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Shared<T: ShmObject> {
    object: NonNull<T>,
    memory: Mapping,
    _owns: PhantomData<T>,
}

// SAFETY: a Shared<T> hands out only `&T`; T: SharedObject is Sync (and made
// of atomics), and the mapping is not tied to the thread that made it.
unsafe impl<T: ShmObject> Send for Shared<T> {}
// SAFETY: as above: shared access is `&T` to a Sync T.
unsafe impl<T: ShmObject> Sync for Shared<T> {}

impl<T: ShmObject> Named for Shared<T> {
    const KIND: Kind = T::KIND;
    type Config<'a> = T::Config;
    type Anon = Self;

    fn layout(config: &T::Config) -> std::result::Result<ObjectLayout, shmipc_core::LayoutError> {
        T::check_config(config)?;
        Ok(ObjectLayout::of::<T>(T::KIND))
    }

    unsafe fn init(
        ptr: *mut u8,
        len: usize,
        config: T::Config,
    ) -> std::result::Result<(), QueueError> {
        // SAFETY: the caller's contract; init_at checks size and alignment.
        unsafe { T::init_at(ptr, len, config) }?;
        Ok(())
    }

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        header.expect_layout(name, size_of::<T>() as u64, align_of::<T>() as u64, [0; 4])
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        // SAFETY: the object bytes stay mapped as long as `memory`, which
        // we keep beside the reference's only use (Deref borrows self).
        // They are only accessed atomically, through T's methods.
        let object: &T = unsafe { T::from_ptr(memory.object_ptr(), memory.object_len()) }
            .map_err(|e| Error::layout(memory.label(), e))?;
        Ok(Shared {
            object: NonNull::from(object),
            memory,
            _owns: PhantomData,
        })
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        Self::attach(memory, true)
    }
}

impl<T: ShmObject> Shared<T> {
    /// The normalised name, with its leading slash, or `None` for anonymous
    /// memory.
    pub fn name(&self) -> Option<&str> {
        self.memory.name()
    }

    /// The process id the header names as the creator.
    pub fn creator_pid(&self) -> u32 {
        self.memory.header().creator_pid
    }
}

impl<T: ShmObject> Shared<T> {
    /// The mapping (for `wait` and the async waiters, which keep it alive).
    #[allow(dead_code)]
    pub(crate) fn memory(&self) -> &Mapping {
        &self.memory
    }
}

impl<T: ShmObject> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `object` points into `self.memory`, which lives as long as
        // self; size and alignment were checked in `attach`.
        unsafe { self.object.as_ref() }
    }
}

impl<T: ShmObject> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name())
            .field("kind", &T::KIND)
            .finish()
    }
}
