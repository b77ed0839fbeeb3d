//! [`Value<T>`]: one `Pod` value in shared memory under a lock of its own,
//! like Python's `multiprocessing.Value`, and [`Values`], the layout it
//! shares with [`Array<T>`](crate::Array).
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
//! middle of [`Array::update`](crate::Array::update)'s write-back may leave some elements new and
//! some old, or (for a `T` wider than a machine word) one element torn. The
//! next locker takes the lock over, accepts the bytes as they are (they are
//! valid `Pod` values) and marks the lock consistent: the data stays
//! usable, as a Python `Value` would after a `kill -9`.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;
use shmipc_core::{LayoutError, Lock, LockError, LockGuard, QueueError, Rule, SharedObject};

use super::{take, timeout_text};
use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;
use crate::named::{check_elem, elem_word};

/// Where the values start in the object.
const DATA_OFFSET: usize = 64;

/// The lock and `len` values of `T` in shared memory: the layout of a
/// [`Value`] (`len` 1) and of an [`Array`](crate::Array).
pub(super) struct Values<T: Pod> {
    memory: Mapping,
    len: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Values<T> {
    /// The layout of `len` values of object kind `kind`.
    pub(super) fn layout(kind: Kind, len: usize) -> std::result::Result<ObjectLayout, LayoutError> {
        let bad = |param, value: usize, rule| LayoutError::parameter(param, value as u64, rule);
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
    /// `ptr` is valid for `len` writable bytes, laid out by
    /// [`Values::layout`] for `initial.len()` values, and no one else uses
    /// them yet.
    pub(super) unsafe fn init(
        ptr: *mut u8,
        len: usize,
        initial: &[T],
    ) -> std::result::Result<(), QueueError> {
        // SAFETY: the caller's contract; init_at checks size and alignment.
        unsafe { Lock::init_at(ptr, len, ()) }?;
        for (i, v) in initial.iter().enumerate() {
            // SAFETY: the layout holds `initial.len()` values after
            // DATA_OFFSET, which is a multiple of T's alignment.
            unsafe { ptr.add(DATA_OFFSET).cast::<T>().add(i).write_volatile(*v) };
        }
        Ok(())
    }

    /// The length a header of kind `kind` says, if its parameters are
    /// those of `T`s.
    fn len_in(name: &str, kind: Kind, h: &HeaderSnapshot) -> Result<usize> {
        check_elem::<T>(name, h.params[0])?;
        let n = usize::try_from(h.params[1])
            .map_err(|_| Error::corrupted(name, "the length does not fit in memory"))?;
        if h.params[2] != 0 || h.params[3] != 0 || (kind == Kind::VALUE && n != 1) {
            return Err(Error::corrupted(name, "the object parameters are invalid"));
        }
        Ok(n)
    }

    /// [`Named::check`] for values of kind `kind`.
    pub(super) fn check(name: &str, kind: Kind, h: &HeaderSnapshot) -> Result<()> {
        let n = Self::len_in(name, kind, h)?;
        let l = Self::layout(kind, n)
            .map_err(|_| Error::corrupted(name, "the length is impossible"))?;
        h.expect_layout(name, l.size, l.align, h.params)
    }

    /// The values in `memory`, whose header was checked.
    pub(super) fn attach(memory: Mapping, kind: Kind) -> Result<Self> {
        let len = Self::len_in(memory.label(), kind, memory.header())?;
        Ok(Values {
            memory,
            len,
            _t: PhantomData,
        })
    }

    /// The normalised name, or `None` for anonymous memory.
    pub(super) fn name(&self) -> Option<&str> {
        self.memory.name()
    }

    /// How many values.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn lock_ref(&self) -> &Lock {
        // SAFETY: the object starts with a Lock (checked layout: at least
        // DATA_OFFSET bytes, aligned), mapped as long as `self`, and the
        // Lock is made of atomics, valid for any bytes.
        unsafe { &*self.memory.object_ptr().cast::<Lock>() }
    }

    /// Takes the lock, waiting at most `timeout` (for ever if `None`); a
    /// takeover from a dead owner is accepted as is (see the module
    /// documentation). A timeout is `Err(None)`.
    pub(super) fn lock(
        &self,
        timeout: Option<Duration>,
    ) -> std::result::Result<LockGuard<'_>, Option<LockError>> {
        let mut guard = match take(self.lock_ref(), timeout) {
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
    pub(super) fn label(&self) -> &str {
        self.memory.label()
    }

    fn slot(&self, i: usize) -> *mut T {
        debug_assert!(i < self.len);
        // SAFETY: i < len, and the object holds len values after
        // DATA_OFFSET (checked on create/open).
        unsafe { self.memory.object_ptr().add(DATA_OFFSET).cast::<T>().add(i) }
    }

    /// Copies value `i` out. Call with the lock held and `i < len`.
    pub(super) fn read(&self, i: usize) -> T {
        // SAFETY: `slot(i)` is in bounds and aligned; any bits are a valid
        // T (Pod); a copy, never a reference.
        unsafe { self.slot(i).read_volatile() }
    }

    /// Copies `v` into value `i`. Call with the lock held and `i < len`.
    pub(super) fn write(&self, i: usize, v: T) {
        // SAFETY: as in `read`.
        unsafe { self.slot(i).write_volatile(v) }
    }

    pub(super) fn snapshot(&self) -> Vec<T> {
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
/// use shmipc::{fork, Named, Value};
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
    cells: Values<T>,
}

impl<T: Pod> Named for Value<T> {
    const KIND: Kind = Kind::VALUE;
    /// The initial value.
    type Config<'a> = T;
    type Anon = Self;

    fn layout(_: &T) -> std::result::Result<ObjectLayout, LayoutError> {
        Values::<T>::layout(Kind::VALUE, 1)
    }

    unsafe fn init(ptr: *mut u8, len: usize, initial: T) -> std::result::Result<(), QueueError> {
        // SAFETY: forwarded contract; the layout holds one value.
        unsafe { Values::init(ptr, len, &[initial]) }
    }

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        Values::<T>::check(name, Kind::VALUE, header)
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        Values::attach(memory, Kind::VALUE).map(|cells| Value { cells })
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        Self::attach(memory, true)
    }
}

impl<T: Pod> Value<T> {
    /// The normalised name, or `None` for an anonymous value.
    pub fn name(&self) -> Option<&str> {
        self.cells.name()
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
