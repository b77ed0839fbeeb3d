//! [`Array<T>`]: a fixed-length array of `Pod` values in shared memory
//! under one lock, like Python's `multiprocessing.Array` (the layout is
//! [`Value`](crate::Value)'s, with `len` values).

use std::fmt;
use std::time::Duration;

use bytemuck::Pod;
use shmipc_core::{LayoutError, Lock, LockError, LockGuard, QueueError};

use super::timeout_text;
use super::value::Values;
use crate::error::Result;
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;

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
/// As with [`Value`](crate::Value), every access copies under the lock;
/// [`snapshot`](Array::snapshot) copies the whole array out at one instant
/// and [`update`](Array::update) changes several elements at once.
///
/// ```
/// use shmipc::{Array, Named, Unlinker};
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
    cells: Values<T>,
}

impl<T: Pod> Named for Array<T> {
    const KIND: Kind = Kind::ARRAY;
    /// The initial values (at least one); an existing array keeps its own
    /// length.
    type Config<'a> = &'a [T];
    type Anon = Self;

    fn layout(initial: &&[T]) -> std::result::Result<ObjectLayout, LayoutError> {
        Values::<T>::layout(Kind::ARRAY, initial.len())
    }

    unsafe fn init(ptr: *mut u8, len: usize, initial: &[T]) -> std::result::Result<(), QueueError> {
        // SAFETY: forwarded contract; the layout holds `initial.len()`.
        unsafe { Values::init(ptr, len, initial) }
    }

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        Values::<T>::check(name, Kind::ARRAY, header)
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        Values::attach(memory, Kind::ARRAY).map(|cells| Array { cells })
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        Self::attach(memory, true)
    }
}

impl<T: Pod> Array<T> {
    /// The normalised name, or `None` for an anonymous array.
    pub fn name(&self) -> Option<&str> {
        self.cells.name()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Always false: an array has at least one element.
    pub fn is_empty(&self) -> bool {
        self.cells.len() == 0
    }

    fn check_index(&self, index: usize) -> std::result::Result<(), ArrayError> {
        if index < self.cells.len() {
            Ok(())
        } else {
            Err(ArrayError::OutOfBounds {
                index,
                len: self.cells.len(),
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
        self.check_index(index)?;
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
        self.check_index(index)?;
        let _guard = self.lock(timeout)?;
        self.cells.write(index, v);
        Ok(())
    }

    /// Replaces several elements, `(index, value)`, under one lock: a
    /// reader's [`snapshot`](Array::snapshot) sees all or none of them.
    /// Unlike [`update`](Array::update) it copies nothing else, so it
    /// costs one lock and the writes. Every index is checked first; one out
    /// of bounds writes nothing and is reported as
    /// [`ArrayError::OutOfBounds`]. A repeated index keeps the last value.
    /// Waits for the lock as long as it takes.
    ///
    /// ```
    /// # use shmipc::{Array, Named};
    /// let a = Array::<u64>::anon(&[0; 4])?;
    /// a.set_many(&[(1, 5), (3, 9)])?;
    /// assert_eq!(a.snapshot()?, vec![0, 5, 0, 9]);
    /// // An index out of range (here == len, or usize::MAX) is refused,
    /// // and nothing of the call is written.
    /// assert!(a.set_many(&[(0, 1), (4, 1)]).is_err());
    /// assert!(a.set_many(&[(0, 1), (usize::MAX, 1)]).is_err());
    /// assert_eq!(a.get(0)?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_many(&self, writes: &[(usize, T)]) -> std::result::Result<(), ArrayError> {
        self.set_many_inner(writes, None)
    }

    /// [`set_many`](Array::set_many), waiting at most `timeout` for the
    /// lock ([`ArrayError::Timeout`] if a holder keeps it longer; nothing
    /// is written then).
    pub fn set_many_timeout(
        &self,
        writes: &[(usize, T)],
        timeout: Duration,
    ) -> std::result::Result<(), ArrayError> {
        self.set_many_inner(writes, Some(timeout))
    }

    fn set_many_inner(
        &self,
        writes: &[(usize, T)],
        timeout: Option<Duration>,
    ) -> std::result::Result<(), ArrayError> {
        for &(i, _) in writes {
            self.check_index(i)?;
        }
        let _guard = self.lock(timeout)?;
        for &(i, v) in writes {
            self.cells.write(i, v);
        }
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
        self.check_index(index)?;
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
