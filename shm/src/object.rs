//! Typed objects in shared memory: named ([`Shared`]) and anonymous
//! ([`Anon`], for forked children).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use shmipc_core::sync::{AtomicU32, AtomicU64};
use shmipc_core::{Barrier, Condition, Event, Lock, Semaphore, SharedObject};

use crate::error::{Error, Result};
use crate::header::Kind;
use crate::mapping::{self, Mapping, ObjectLayout};
use crate::options::Options;

/// A fixed-size [`SharedObject`] that can be a named segment of its own:
/// it has a [`Kind`] for the header, so that opening a segment as the wrong
/// type is an error.
pub trait ShmObject: SharedObject {
    /// The kind written into and expected in the header.
    const KIND: Kind;
}

impl ShmObject for Lock {
    const KIND: Kind = Kind::LOCK;
}

impl ShmObject for Semaphore {
    const KIND: Kind = Kind::SEMAPHORE;
}

impl ShmObject for Event {
    const KIND: Kind = Kind::EVENT;
}

impl ShmObject for AtomicU32 {
    const KIND: Kind = Kind::ATOMIC_U32;
}

impl ShmObject for AtomicU64 {
    const KIND: Kind = Kind::ATOMIC_U64;
}

/// A [`Condition`] in a segment of its own ([`Shared`]) or in an anonymous
/// mapping ([`Anon`]), so that processes wait on it:
///
/// ```
/// use shmipc::sync::{AtomicU32, Ordering};
/// use shmipc::{fork, Anon, Condition};
/// use std::time::Duration;
///
/// let cond = Anon::<Condition>::new(())?;
/// let ready = Anon::<AtomicU32>::new(0)?;
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
impl ShmObject for Condition {
    const KIND: Kind = Kind::CONDITION;
}

/// A [`Barrier`] in a segment of its own ([`Shared`]) or in an anonymous
/// mapping ([`Anon`]), so that processes meet at it; its config is the
/// number of parties:
///
/// ```
/// use shmipc::{fork, Anon, Barrier, BarrierError};
/// use std::time::Duration;
///
/// let barrier = Anon::<Barrier>::new(3)?;              // three parties
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
impl ShmObject for Barrier {
    const KIND: Kind = Kind::BARRIER;
}

/// A `T` in a named segment of its own, which other processes open by name.
///
/// Dereferences to `T`. Dropping it unmaps the segment; nothing ever
/// unlinks the name except [`Shared::unlink`] (or [`unlink`](crate::unlink)),
/// so a forked child that drops its handle leaves the segment in place.
///
/// ```
/// use shmipc::{Event, Shared};
///
/// let name = format!("/shmipc-doc-shared-{}", std::process::id());
/// let done = Shared::<Event>::create(&name, ())?;
/// let seen_elsewhere = Shared::<Event>::open(&name)?; // as another process would
/// done.set();
/// assert!(seen_elsewhere.is_set());
/// Shared::<Event>::unlink(&name)?;
/// # Ok::<(), shmipc::Error>(())
/// ```
pub struct Shared<T: ShmObject> {
    map: Mapping,
    object: NonNull<T>,
    _owns: PhantomData<T>,
}

// SAFETY: a Shared<T> hands out only `&T`; T: SharedObject is Sync (and made
// of atomics), and the mapping is not tied to the thread that made it.
unsafe impl<T: ShmObject> Send for Shared<T> {}
// SAFETY: as above: shared access is `&T` to a Sync T.
unsafe impl<T: ShmObject> Sync for Shared<T> {}

impl<T: ShmObject> Shared<T> {
    /// Creates the segment `name` holding a new `T` made from `config`,
    /// with default [`Options`]; [`Error::AlreadyExists`] if the name is
    /// taken.
    pub fn create(name: &str, config: T::Config) -> Result<Self> {
        Self::create_with(name, config, &Options::default())
    }

    /// [`Shared::create`] with explicit options (mode, say).
    pub fn create_with(name: &str, config: T::Config, opts: &Options) -> Result<Self> {
        let layout = ObjectLayout::of::<T>(T::KIND);
        let map = Mapping::create(name, &layout, opts, |ptr, len| {
            // SAFETY: the bytes are ours alone while the segment is unnamed
            // (Mapping::create's contract), valid for `len` bytes for as
            // long as the mapping lives; init_at checks size and alignment.
            unsafe { T::init_at(ptr, len, config) }.map_err(|e| Error::layout(name, e))?;
            Ok(())
        })?;
        Self::from_mapping(map)
    }

    /// Opens the existing segment `name`, which must hold a `T`, with
    /// default [`Options`].
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Shared::open`] with explicit options (`init_timeout`, say).
    /// [`Options::read_only`] is refused with [`Error::ReadOnly`].
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        if opts.read_only {
            return Err(Error::ReadOnly {
                name: name.to_owned(),
            });
        }
        let map = Mapping::open(name, T::KIND, opts, |header| {
            header.expect_layout(name, size_of::<T>() as u64, align_of::<T>() as u64, [0; 4])
        })?;
        Self::from_mapping(map)
    }

    /// Opens `name`, or creates it from `config` if it does not exist.
    /// Returns whether this call created it.
    pub fn open_or_create(name: &str, config: T::Config) -> Result<(Self, bool)> {
        Self::open_or_create_with(name, config, &Options::default())
    }

    /// [`Shared::open_or_create`] with explicit options.
    pub fn open_or_create_with(
        name: &str,
        config: T::Config,
        opts: &Options,
    ) -> Result<(Self, bool)> {
        Mapping::open_or_create(
            || Self::open_with(name, opts),
            || Self::create_with(name, config, opts),
        )
    }

    /// Removes the name (see [`unlink`](crate::unlink)).
    pub fn unlink(name: &str) -> Result<()> {
        mapping::unlink(name)
    }

    /// The normalised name, with its leading slash.
    pub fn name(&self) -> &str {
        self.map.name()
    }

    /// The process id the header names as the creator.
    pub fn creator_pid(&self) -> u32 {
        self.map.header().creator_pid
    }

    fn from_mapping(map: Mapping) -> Result<Self> {
        // SAFETY: the mapping's object bytes stay mapped as long as `map`,
        // which we keep beside the reference's only use (Deref borrows
        // self). They are only accessed atomically, through T's methods.
        let object: &T = unsafe { T::from_ptr(map.object_ptr(), map.object_len()) }
            .map_err(|e| Error::layout(map.name(), e))?;
        Ok(Shared {
            object: NonNull::from(object),
            map,
            _owns: PhantomData,
        })
    }
}

impl<T: ShmObject> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `object` points into `self.map`, which lives as long as
        // self; size and alignment were checked in `from_mapping`.
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

/// A `T` in anonymous shared memory: no name, nothing to clean up, and
/// children forked after it was made share it with their parent.
///
/// The memory is a `memfd` mapped shared (not `MAP_PRIVATE`, whose pages a
/// forked child would copy on write), with a peer table like a named
/// segment's, so that a `Lock` in it is recovered from a dead holder the
/// same way.
///
/// ```
/// use shmipc::{fork, Anon, AtomicU64};
/// use std::sync::atomic::Ordering;
/// use std::time::Duration;
///
/// let hits = Anon::<AtomicU64>::new(0)?;
/// let mut child = fork(|| {
///     hits.fetch_add(1, Ordering::Relaxed);
///     0
/// })?;
/// let status = child.join_timeout(Duration::from_secs(10))?.expect("child hangs");
/// assert!(status.success());
/// assert_eq!(hits.load(Ordering::Relaxed), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Anon<T: SharedObject> {
    object: NonNull<T>,
    _map: AnonMap,
}

// SAFETY: Anon<T> hands out only `&T`, and T: SharedObject is Sync; the
// mapping belongs to no thread.
unsafe impl<T: SharedObject> Send for Anon<T> {}
// SAFETY: as above.
unsafe impl<T: SharedObject> Sync for Anon<T> {}

impl<T: SharedObject> Anon<T> {
    /// Maps fresh shared memory and initialises a `T` from `config` in it.
    pub fn new(config: T::Config) -> Result<Anon<T>> {
        let map = AnonMap::new(size_of::<T>())?;
        // SAFETY: the mapping is fresh, page-aligned, `len` bytes, and no
        // one else can see it yet; init_at checks size and alignment. The
        // object lives as long as `map`, which `Anon` keeps.
        let object = unsafe { T::init_at(map.as_ptr(), map.len(), config) }
            .map_err(|e| Error::layout("(anonymous)", e))?;
        Ok(Anon {
            object: NonNull::from(object),
            _map: map,
        })
    }
}

/// Zeroed anonymous shared memory, unmapped on drop: an anonymous
/// [`Mapping`] (a `memfd` with the same header and peer table as a named
/// segment, so that owners in it are judged the same way). The bytes start
/// 128-byte aligned; children forked while it lives share it.
pub(crate) struct AnonMap(Mapping);

impl AnonMap {
    /// Maps `len` (at least 1) fresh, zeroed bytes.
    pub(crate) fn new(len: usize) -> Result<AnonMap> {
        let layout = ObjectLayout {
            kind: Kind::BYTES,
            size: len.max(1) as u64,
            align: 128,
            params: [0; 4],
        };
        Ok(AnonMap(Mapping::anon(
            &layout,
            &Options::default(),
            |_, _| Ok(()),
        )?))
    }

    /// The first byte (128-byte aligned).
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.0.object_ptr()
    }

    /// The bytes' length.
    pub(crate) fn len(&self) -> usize {
        self.0.object_len()
    }

    /// The mapping behind the bytes.
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.0
    }
}

impl<T: SharedObject> Deref for Anon<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the mapping lives until drop; the object was initialised
        // in `new`, and T is accessed only through its atomic methods.
        unsafe { self.object.as_ref() }
    }
}

impl<T: SharedObject + fmt::Debug> fmt::Debug for Anon<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Anon").field(&**self).finish()
    }
}
