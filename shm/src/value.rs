//! [`Value<T>`] and [`Array<T>`]: `Pod` data in shared memory under a lock
//! of its own, like Python's `multiprocessing.Value` and `Array`.
//!
//! Layout of the object area (named segment or anonymous mapping):
//!
//! | offset | field |
//! |---|---|
//! | 0 | [`Lock`] (16 bytes) |
//! | 16 | zero, reserved |
//! | 64 | `len` values of `T`, packed |
//!
//! `params` = `[size | align << 32 of T, len, 0, 0]`. The values are plain
//! bytes that are only touched under the lock, and always by copy
//! (`read_volatile` / `write_volatile` of a whole `T`): no reference to them
//! is ever handed out, because another process may write them. Any bit
//! pattern is a valid `T` (`Pod`), so a peer that scribbles on them gives
//! wrong numbers, never undefined behaviour.
//!
//! **Owner death.** Writes copy whole values in; a process killed in the
//! middle of [`Array::update`]'s write-back may leave some elements new and
//! some old, or (for a `T` wider than a machine word) one element torn. The
//! next locker takes the lock over, accepts the bytes as they are (they are
//! valid `Pod` values) and marks the lock consistent: the data stays
//! usable, as a Python `Value` would after a `kill -9`.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;
use shmipc_core::{LayoutError, Lock, LockError, LockGuard, Rule, SharedObject};

use crate::error::{Error, Result};
use crate::header::Kind;
use crate::mapping::{self, Mapping, ObjectLayout};
use crate::options::Options;
use crate::region::{check_elem, elem_word, Region};

/// Where the values start in the object.
const DATA_OFFSET: usize = 64;

/// The name errors give an anonymous value or array.
const ANON: &str = "(anonymous)";

/// The lock and `len` values of `T` in a region.
struct Cells<T: Pod> {
    region: Region,
    len: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Cells<T> {
    /// The layout of `len` values; `name` is for the error.
    fn object_layout(name: &str, kind: Kind, len: usize) -> Result<ObjectLayout> {
        let bad = |param, value: usize, rule| {
            Error::layout(name, LayoutError::parameter(param, value as u64, rule))
        };
        if size_of::<T>() == 0 {
            return Err(bad(
                "element size",
                0,
                Rule::Text("must be at least 1 byte"),
            ));
        }
        if align_of::<T>() > DATA_OFFSET {
            let why = "the values start 64 bytes into the object";
            let rule = Rule::AtMost {
                max: DATA_OFFSET as u64,
                why,
            };
            return Err(bad("element alignment", align_of::<T>(), rule));
        }
        // Half the address space at most, and a length the header can say.
        let most = (isize::MAX as usize / 2 - DATA_OFFSET) / size_of::<T>();
        if kind == Kind::ARRAY && !(1..=most).contains(&len) {
            let rule = Rule::Range {
                min: 1,
                max: most as u64,
            };
            return Err(bad("length", len, rule));
        }
        let size = size_of::<T>() * len + DATA_OFFSET;
        Ok(ObjectLayout {
            kind,
            size: size as u64,
            align: align_of::<T>().max(Lock::ALIGN) as u64,
            params: [elem_word::<T>(), len as u64, 0, 0],
        })
    }

    /// Writes a fresh lock and `initial` at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for `len` writable bytes, aligned to the layout's
    /// alignment, and no one else uses them yet.
    unsafe fn init(ptr: *mut u8, len: usize, initial: &[T]) -> Result<()> {
        // SAFETY: the caller's contract; init_at checks size and alignment.
        unsafe { Lock::init_at(ptr, len, ()) }.map_err(|e| Error::layout(ANON, e))?;
        for (i, v) in initial.iter().enumerate() {
            // SAFETY: the layout holds `initial.len()` values after
            // DATA_OFFSET, which is a multiple of T's alignment.
            unsafe { ptr.add(DATA_OFFSET).cast::<T>().add(i).write_volatile(*v) };
        }
        Ok(())
    }

    fn create(name: &str, kind: Kind, initial: &[T], opts: &Options) -> Result<Self> {
        let layout = Self::object_layout(name, kind, initial.len())?;
        let region = Region::create(name, &layout, opts, |ptr, len| {
            // SAFETY: the bytes are ours alone until the segment is named
            // (Mapping::create's contract), sized and aligned by `layout`.
            unsafe { Self::init(ptr, len, initial) }
        })?;
        Ok(Cells {
            region,
            len: initial.len(),
            _t: PhantomData,
        })
    }

    fn open(name: &str, kind: Kind, opts: &Options) -> Result<Self> {
        let mut len = 0;
        let region = Region::open(name, kind, opts, |h| {
            check_elem::<T>(name, h.params[0])?;
            let n = usize::try_from(h.params[1])
                .map_err(|_| Error::corrupted(name, "the length does not fit in memory"))?;
            if h.params[2] != 0 || h.params[3] != 0 || (kind == Kind::VALUE && n != 1) {
                return Err(Error::corrupted(name, "the object parameters are invalid"));
            }
            let l = Self::object_layout(name, kind, n)
                .map_err(|_| Error::corrupted(name, "the length is impossible"))?;
            len = n;
            Ok((l.size, l.align))
        })?;
        Ok(Cells {
            region,
            len,
            _t: PhantomData,
        })
    }

    fn anon(kind: Kind, initial: &[T]) -> Result<Self> {
        let layout = Self::object_layout(ANON, kind, initial.len())?;
        let region = Region::anon(layout.size as usize, |ptr, len| {
            // SAFETY: a fresh page-aligned mapping that no one else sees.
            unsafe { Self::init(ptr, len, initial) }
        })?;
        Ok(Cells {
            region,
            len: initial.len(),
            _t: PhantomData,
        })
    }

    fn lock_ref(&self) -> &Lock {
        // SAFETY: the region starts with a Lock (checked layout: at least
        // DATA_OFFSET bytes, aligned), is mapped as long as `self`, and the
        // Lock is made of atomics, valid for any bytes.
        unsafe { &*self.region.ptr().cast::<Lock>() }
    }

    /// Takes the lock, waiting at most `timeout` (for ever if `None`); a
    /// takeover from a dead owner is accepted as is (see the module
    /// documentation). A timeout is `Err(None)`.
    fn lock(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<LockGuard<'_>, Option<LockError>> {
        let lock = self.lock_ref();
        let r = match timeout {
            None => lock.lock(),
            Some(t) => lock.lock_timeout(t),
        };
        let mut guard = match r {
            Ok(g) => g,
            Err(LockError::Timeout) => return Err(None),
            Err(e) => return Err(Some(e)),
        };
        if guard.owner_died() {
            guard.mark_consistent();
        }
        Ok(guard)
    }

    /// The name for errors.
    fn label(&self) -> &str {
        self.region.name().unwrap_or(ANON)
    }

    fn slot(&self, i: usize) -> *mut T {
        debug_assert!(i < self.len);
        // SAFETY: i < len, and the region holds len values after
        // DATA_OFFSET (checked on create/open).
        unsafe { self.region.ptr().add(DATA_OFFSET).cast::<T>().add(i) }
    }

    /// Copies value `i` out. Call with the lock held and `i < len`.
    fn read(&self, i: usize) -> T {
        // SAFETY: `slot(i)` is in bounds and aligned; any bits are a valid
        // T (Pod); a copy, never a reference.
        unsafe { self.slot(i).read_volatile() }
    }

    /// Copies `v` into value `i`. Call with the lock held and `i < len`.
    fn write(&self, i: usize, v: T) {
        // SAFETY: as in `read`.
        unsafe { self.slot(i).write_volatile(v) }
    }

    fn snapshot(&self) -> Vec<T> {
        (0..self.len).map(|i| self.read(i)).collect()
    }
}

/// One `Pod` value in shared memory with a lock of its own: Python's
/// `multiprocessing.Value`.
///
/// Every access takes the lock and copies: [`get`](Value::get) copies the
/// value out, [`set`](Value::set) copies one in, and
/// [`update`](Value::update) runs a closure on a copy and writes it back
/// before the lock is released — so read-modify-write from many processes
/// loses nothing. A closure that panics leaves the value unchanged.
///
/// ```
/// use shmipc::{fork, Value};
/// use std::time::Duration;
///
/// let counter = Value::<u64>::anon(0)?;             // inherited by forked children
/// let mut children = Vec::new();
/// for _ in 0..4 {
///     children.push(fork(|| {
///         for _ in 0..100 {
///             counter.update(|n| *n += 1).unwrap();
///         }
///         0
///     })?);
/// }
/// for mut c in children {
///     assert!(c.join_timeout(Duration::from_secs(30))?.unwrap().success());
/// }
/// assert_eq!(counter.get()?, 400);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Value<T: Pod> {
    cells: Cells<T>,
}

impl<T: Pod> Value<T> {
    /// Creates the segment `name` holding `initial`;
    /// [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, initial: T) -> Result<Self> {
        Self::create_with(name, initial, &Options::default())
    }

    /// [`Value::create`] with explicit options.
    pub fn create_with(name: &str, initial: T, opts: &Options) -> Result<Self> {
        Cells::create(name, Kind::VALUE, &[initial], opts).map(|cells| Value { cells })
    }

    /// Opens the existing value `name`, which must hold a `T` (same size
    /// and alignment, else [`Error::ElementMismatch`]).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Value::open`] with explicit options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Cells::open(name, Kind::VALUE, opts).map(|cells| Value { cells })
    }

    /// Opens `name`, or creates it holding `initial`. Returns whether this
    /// call created it.
    pub fn open_or_create(name: &str, initial: T) -> Result<(Self, bool)> {
        let opts = Options::default();
        Mapping::open_or_create(
            || Self::open_with(name, &opts),
            || Self::create_with(name, initial, &opts),
        )
    }

    /// A value in an anonymous shared mapping, shared with children forked
    /// after it was made.
    pub fn anon(initial: T) -> Result<Self> {
        Cells::anon(Kind::VALUE, &[initial]).map(|cells| Value { cells })
    }

    /// Removes the name (see [`unlink`](crate::unlink)).
    pub fn unlink(name: &str) -> Result<()> {
        mapping::unlink(name)
    }

    /// The normalised name, or `None` for an anonymous value.
    pub fn name(&self) -> Option<&str> {
        self.cells.region.name()
    }

    fn lock(&self, timeout: Option<Duration>) -> std::result::Result<LockGuard<'_>, ValueError> {
        self.cells.lock(timeout).map_err(|e| match e {
            None => ValueError::Timeout {
                name: self.cells.label().to_owned(),
            },
            Some(e) => ValueError::Lock(e),
        })
    }

    /// A copy of the value. Waits for the lock as long as it takes (see
    /// [`Value::get_timeout`]).
    pub fn get(&self) -> std::result::Result<T, ValueError> {
        let _guard = self.lock(None)?;
        Ok(self.cells.read(0))
    }

    /// A copy of the value, waiting at most `timeout` for the lock
    /// ([`ValueError::Timeout`] if a holder keeps it longer, such as a
    /// process stopped while it holds it).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, ValueError> {
        let _guard = self.lock(Some(timeout))?;
        Ok(self.cells.read(0))
    }

    /// Replaces the value. Waits for the lock as long as it takes.
    pub fn set(&self, v: T) -> std::result::Result<(), ValueError> {
        let _guard = self.lock(None)?;
        self.cells.write(0, v);
        Ok(())
    }

    /// Replaces the value, waiting at most `timeout` for the lock.
    pub fn set_timeout(&self, v: T, timeout: Duration) -> std::result::Result<(), ValueError> {
        let _guard = self.lock(Some(timeout))?;
        self.cells.write(0, v);
        Ok(())
    }

    /// Runs `f` on a copy of the value and writes the copy back, all under
    /// the lock; returns what `f` returns. Waits for the lock as long as
    /// it takes. Calling this value's methods inside `f` fails with
    /// [`LockError::Deadlock`].
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> std::result::Result<R, ValueError> {
        self.update_inner(None, f)
    }

    /// [`Value::update`], waiting at most `timeout` for the lock (`f` does
    /// not run if it times out).
    pub fn update_timeout<R>(
        &self,
        f: impl FnOnce(&mut T) -> R,
        timeout: Duration,
    ) -> std::result::Result<R, ValueError> {
        self.update_inner(Some(timeout), f)
    }

    fn update_inner<R>(
        &self,
        timeout: Option<Duration>,
        f: impl FnOnce(&mut T) -> R,
    ) -> std::result::Result<R, ValueError> {
        let _guard = self.lock(timeout)?;
        let mut v = self.cells.read(0);
        let r = f(&mut v);
        self.cells.write(0, v);
        Ok(r)
    }

    /// The lock that guards the value (Python's `get_lock()`), to make
    /// several values change together. The value's own methods take it
    /// too, so do not call them while holding it.
    pub fn get_lock(&self) -> &Lock {
        self.cells.lock_ref()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("name", &self.name())
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// Why a [`Value`] access failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueError {
    /// The lock was not free within the timeout of a `_timeout` call (its
    /// holder is slow, or stopped: a stopped process is alive).
    Timeout {
        /// The segment's name, `"(anonymous)"` for an anonymous value.
        name: String,
    },
    /// The value's lock could not be taken (see [`LockError`]).
    Lock(LockError),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Timeout { name } => write!(f, "{}", timeout_text(name)),
            ValueError::Lock(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ValueError {}

impl From<LockError> for ValueError {
    fn from(e: LockError) -> Self {
        ValueError::Lock(e)
    }
}

/// The message of a lock timeout on the object in segment `name`.
pub(crate) fn timeout_text(name: &str) -> String {
    if name.starts_with('(') {
        "timed out waiting for the lock of an anonymous shared object".to_owned()
    } else {
        format!("timed out waiting for the lock of shared memory segment {name:?}")
    }
}

/// Why an [`Array`] access failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArrayError {
    /// The index is not below the array's length.
    OutOfBounds {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// The lock was not free within the timeout of a `_timeout` call (its
    /// holder is slow, or stopped: a stopped process is alive).
    Timeout {
        /// The segment's name, `"(anonymous)"` for an anonymous array.
        name: String,
    },
    /// The array's lock could not be taken.
    Lock(LockError),
}

impl fmt::Display for ArrayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArrayError::OutOfBounds { index, len } => {
                write!(f, "index {index} is out of bounds for an array of {len}")
            }
            ArrayError::Timeout { name } => write!(f, "{}", timeout_text(name)),
            ArrayError::Lock(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ArrayError {}

impl From<LockError> for ArrayError {
    fn from(e: LockError) -> Self {
        ArrayError::Lock(e)
    }
}

/// A fixed-length array of `Pod` values in shared memory under one lock:
/// Python's `multiprocessing.Array`.
///
/// As with [`Value`], every access copies under the lock;
/// [`snapshot`](Array::snapshot) copies the whole array out at one instant
/// and [`update`](Array::update) changes several elements at once.
///
/// ```
/// use shmipc::{Array, Unlinker};
///
/// let names = Unlinker::new("doc-array");
/// let name = names.name("scores");
/// let scores = Array::<u32>::create(&name, &[0; 4])?;
/// let other = Array::<u32>::open(&name)?;           // e.g. in another process
/// other.set(2, 7)?;
/// scores.update(|all| all.iter_mut().for_each(|s| *s += 1))?;
/// assert_eq!(scores.snapshot()?, vec![1, 1, 8, 1]);
/// assert!(scores.get(4).is_err());                  // out of bounds
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Array<T: Pod> {
    cells: Cells<T>,
}

impl<T: Pod> Array<T> {
    /// Creates the segment `name` holding a copy of `initial` (at least one
    /// element); [`Error::AlreadyExists`] if the name is taken.
    pub fn create(name: &str, initial: &[T]) -> Result<Self> {
        Self::create_with(name, initial, &Options::default())
    }

    /// [`Array::create`] with explicit options.
    pub fn create_with(name: &str, initial: &[T], opts: &Options) -> Result<Self> {
        Cells::create(name, Kind::ARRAY, initial, opts).map(|cells| Array { cells })
    }

    /// Opens the existing array `name`, which must hold `T`s; its length is
    /// the creator's.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Array::open`] with explicit options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Cells::open(name, Kind::ARRAY, opts).map(|cells| Array { cells })
    }

    /// Opens `name`, or creates it from `initial`. Returns whether this call
    /// created it; an existing array keeps its own length.
    pub fn open_or_create(name: &str, initial: &[T]) -> Result<(Self, bool)> {
        let opts = Options::default();
        Mapping::open_or_create(
            || Self::open_with(name, &opts),
            || Self::create_with(name, initial, &opts),
        )
    }

    /// An array in an anonymous shared mapping, shared with children forked
    /// after it was made.
    pub fn anon(initial: &[T]) -> Result<Self> {
        Cells::anon(Kind::ARRAY, initial).map(|cells| Array { cells })
    }

    /// Removes the name (see [`unlink`](crate::unlink)).
    pub fn unlink(name: &str) -> Result<()> {
        mapping::unlink(name)
    }

    /// The normalised name, or `None` for an anonymous array.
    pub fn name(&self) -> Option<&str> {
        self.cells.region.name()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len
    }

    /// Always false: an array has at least one element.
    pub fn is_empty(&self) -> bool {
        self.cells.len == 0
    }

    fn check(&self, index: usize) -> std::result::Result<(), ArrayError> {
        if index < self.cells.len {
            Ok(())
        } else {
            Err(ArrayError::OutOfBounds {
                index,
                len: self.cells.len,
            })
        }
    }

    fn lock(&self, timeout: Option<Duration>) -> std::result::Result<LockGuard<'_>, ArrayError> {
        self.cells.lock(timeout).map_err(|e| match e {
            None => ArrayError::Timeout {
                name: self.cells.label().to_owned(),
            },
            Some(e) => ArrayError::Lock(e),
        })
    }

    /// A copy of element `index`. Waits for the lock as long as it takes
    /// (see [`Array::get_timeout`]).
    pub fn get(&self, index: usize) -> std::result::Result<T, ArrayError> {
        self.get_inner(index, None)
    }

    /// A copy of element `index`, waiting at most `timeout` for the lock
    /// ([`ArrayError::Timeout`] if a holder keeps it longer).
    pub fn get_timeout(
        &self,
        index: usize,
        timeout: Duration,
    ) -> std::result::Result<T, ArrayError> {
        self.get_inner(index, Some(timeout))
    }

    fn get_inner(
        &self,
        index: usize,
        timeout: Option<Duration>,
    ) -> std::result::Result<T, ArrayError> {
        self.check(index)?;
        let _guard = self.lock(timeout)?;
        Ok(self.cells.read(index))
    }

    /// Replaces element `index`. Waits for the lock as long as it takes.
    pub fn set(&self, index: usize, v: T) -> std::result::Result<(), ArrayError> {
        self.set_inner(index, v, None)
    }

    /// Replaces element `index`, waiting at most `timeout` for the lock.
    pub fn set_timeout(
        &self,
        index: usize,
        v: T,
        timeout: Duration,
    ) -> std::result::Result<(), ArrayError> {
        self.set_inner(index, v, Some(timeout))
    }

    fn set_inner(
        &self,
        index: usize,
        v: T,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), ArrayError> {
        self.check(index)?;
        let _guard = self.lock(timeout)?;
        self.cells.write(index, v);
        Ok(())
    }

    /// Runs `f` on a copy of element `index` and writes it back, under the
    /// lock. Waits for the lock as long as it takes.
    pub fn update_at<R>(
        &self,
        index: usize,
        f: impl FnOnce(&mut T) -> R,
    ) -> std::result::Result<R, ArrayError> {
        self.update_at_inner(index, f, None)
    }

    /// [`Array::update_at`], waiting at most `timeout` for the lock.
    pub fn update_at_timeout<R>(
        &self,
        index: usize,
        f: impl FnOnce(&mut T) -> R,
        timeout: Duration,
    ) -> std::result::Result<R, ArrayError> {
        self.update_at_inner(index, f, Some(timeout))
    }

    fn update_at_inner<R>(
        &self,
        index: usize,
        f: impl FnOnce(&mut T) -> R,
        timeout: Option<Duration>,
    ) -> std::result::Result<R, ArrayError> {
        self.check(index)?;
        let _guard = self.lock(timeout)?;
        let mut v = self.cells.read(index);
        let r = f(&mut v);
        self.cells.write(index, v);
        Ok(r)
    }

    /// Runs `f` on a copy of the whole array and writes back the elements
    /// that changed, under the lock. Waits for the lock as long as it
    /// takes.
    pub fn update<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> std::result::Result<R, ArrayError> {
        self.update_inner(f, None)
    }

    /// [`Array::update`], waiting at most `timeout` for the lock.
    pub fn update_timeout<R>(
        &self,
        f: impl FnOnce(&mut [T]) -> R,
        timeout: Duration,
    ) -> std::result::Result<R, ArrayError> {
        self.update_inner(f, Some(timeout))
    }

    fn update_inner<R>(
        &self,
        f: impl FnOnce(&mut [T]) -> R,
        timeout: Option<Duration>,
    ) -> std::result::Result<R, ArrayError> {
        let _guard = self.lock(timeout)?;
        let before = self.cells.snapshot();
        let mut after = before.clone();
        let r = f(&mut after);
        for (i, (old, new)) in before.iter().zip(&after).enumerate() {
            if bytemuck::bytes_of(old) != bytemuck::bytes_of(new) {
                self.cells.write(i, *new);
            }
        }
        Ok(r)
    }

    /// A copy of the whole array, taken under the lock. Waits for the lock
    /// as long as it takes.
    pub fn snapshot(&self) -> std::result::Result<Vec<T>, ArrayError> {
        let _guard = self.lock(None)?;
        Ok(self.cells.snapshot())
    }

    /// A copy of the whole array, waiting at most `timeout` for the lock.
    pub fn snapshot_timeout(&self, timeout: Duration) -> std::result::Result<Vec<T>, ArrayError> {
        let _guard = self.lock(Some(timeout))?;
        Ok(self.cells.snapshot())
    }

    /// The lock that guards the array (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        self.cells.lock_ref()
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("name", &self.name())
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len())
            .finish()
    }
}
