//! [`SharedList`], an append-only list of byte items in shared memory,
//! for any number of processes: what Python's `Manager().list()` gives,
//! without a manager process.

use std::fmt;
use std::time::Duration;

use shmipc_core::sync::{AtomicU32, Ordering};
use shmipc_core::{LayoutError, Lock, LockGuard, QueueError, Rule, SharedObject};

use super::dict::{control, lock_table, DictError, CONTROL, MAX_CAPACITY, MAX_VALUE};
use super::{copy_out, in_range, round_up};
use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;

/// A list item's fixed part, before its bytes.
const ITEM_HEADER: usize = 8;

/// The geometry of a [`SharedList`]: how many items, and the longest item
/// in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListConfig {
    /// How many items it holds at most (1 ..= 2^24).
    pub capacity: usize,
    /// The longest item in bytes (0 ..= 2^26).
    pub max_item: usize,
}

impl ListConfig {
    /// A list of `capacity` items of up to `max_item` bytes each.
    pub const fn new(capacity: usize, max_item: usize) -> ListConfig {
        ListConfig { capacity, max_item }
    }
}

/// An append-only list of byte items in shared memory, for any number of
/// processes: `capacity` slots of up to `max_item` bytes under one
/// [`Lock`].
///
/// Layout: the lock, `len: u32` at offset 16, then from offset 64
/// `capacity` items of `len: u32`, 4 reserved bytes and `max_item` bytes
/// (the stride rounded up to 8); `params` = `[capacity, max_item, 0, 0]`.
/// An item is written first and counted (`len += 1`) last, so an appender
/// killed half-way leaves the list as it was; a `len` a dead or hostile
/// process left beyond `capacity` is clamped on the next takeover.
///
/// ```
/// use shmipc::{fork, ListConfig, Named, SharedList};
/// use std::time::Duration;
///
/// let log = SharedList::anon(ListConfig::new(100, 64))?;
/// let mut child = fork(|| log.append(b"child was here").is_ok() as i32)?;
/// assert_eq!(child.join_timeout(Duration::from_secs(10))?.unwrap().code(), Some(1));
/// log.append(b"parent too")?;
/// assert_eq!(log.to_vec()?, vec![b"child was here".to_vec(), b"parent too".to_vec()]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedList {
    memory: Mapping,
    capacity: usize,
    max_item: usize,
    stride: usize,
}

/// The item stride and object size of a list of `c`.
fn geometry(c: ListConfig) -> std::result::Result<(usize, usize), LayoutError> {
    in_range("capacity", c.capacity, 1, MAX_CAPACITY)?;
    in_range("max_item", c.max_item, 0, MAX_VALUE)?;
    let too_large = LayoutError::parameter(
        "capacity",
        c.capacity as u64,
        Rule::Text("with this item size makes a list larger than the address space"),
    );
    let stride = round_up(ITEM_HEADER + c.max_item, 8).ok_or(too_large)?;
    let size = stride
        .checked_mul(c.capacity)
        .and_then(|b| b.checked_add(CONTROL))
        .filter(|&s| s <= isize::MAX as usize / 2)
        .ok_or(too_large)?;
    Ok((stride, size))
}

/// The configuration a list header's parameters say, if they are valid.
fn config_in(name: &str, h: &HeaderSnapshot) -> Result<(ListConfig, usize, usize)> {
    let bad = || Error::corrupted(name, "the list's parameters are invalid");
    let capacity = usize::try_from(h.params[0]).map_err(|_| bad())?;
    let max_item = usize::try_from(h.params[1]).map_err(|_| bad())?;
    if h.params[2] != 0 || h.params[3] != 0 {
        return Err(bad());
    }
    let c = ListConfig::new(capacity, max_item);
    let (stride, size) = geometry(c).map_err(|_| bad())?;
    Ok((c, stride, size))
}

impl Named for SharedList {
    const KIND: Kind = Kind::LIST;
    type Config<'a> = ListConfig;
    type Anon = Self;

    fn layout(c: &ListConfig) -> std::result::Result<ObjectLayout, LayoutError> {
        let (_, size) = geometry(*c)?;
        Ok(ObjectLayout {
            kind: Kind::LIST,
            size: size as u64,
            align: 8,
            params: [c.capacity as u64, c.max_item as u64, 0, 0],
        })
    }

    unsafe fn init(ptr: *mut u8, len: usize, _: ListConfig) -> std::result::Result<(), QueueError> {
        // SAFETY: the caller's contract: 8-aligned zeroed bytes (an empty
        // list) that start with the lock.
        unsafe { Lock::init_at(ptr, len, ()) }?;
        Ok(())
    }

    fn check(name: &str, h: &HeaderSnapshot) -> Result<()> {
        let (_, _, size) = config_in(name, h)?;
        h.expect_layout(name, size as u64, 8, h.params)
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        let (c, stride, _) = config_in(memory.label(), memory.header())?;
        Ok(SharedList {
            memory,
            capacity: c.capacity,
            max_item: c.max_item,
            stride,
        })
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        Self::attach(memory, true)
    }
}

impl SharedList {
    /// The normalised name, or `None` for an anonymous list.
    pub fn name(&self) -> Option<&str> {
        self.memory.name()
    }

    /// How many items it holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The longest item, in bytes.
    pub fn max_item(&self) -> usize {
        self.max_item
    }

    /// Takes the lock (waiting at most `timeout`, for ever if `None`),
    /// clamping `len` if the previous owner died.
    ///
    /// SYNC POINT: on a takeover, the Acquire load of `len` pairs with the
    /// Release store of the count in [`Self::append_inner`]: a counted item
    /// is a written item. Live appenders are ordered by the lock.
    fn lock(&self, timeout: Option<Duration>) -> std::result::Result<LockGuard<'_>, DictError> {
        let (_, len, ..) = control(&self.memory);
        let mut guard = lock_table(&self.memory, timeout)?;
        if guard.owner_died() {
            // SYNC POINT: Acquire (paired in the doc comment above).
            if len.load(Ordering::Acquire) as usize > self.capacity {
                len.store(self.capacity as u32, Ordering::Relaxed);
            }
            guard.mark_consistent();
        }
        Ok(guard)
    }

    fn item(&self, i: usize) -> (&AtomicU32, *mut u8) {
        debug_assert!(i < self.capacity);
        // SAFETY: i < capacity, so the item lies inside the object; stride
        // and CONTROL are multiples of 8; the length word is an atomic.
        unsafe {
            let p = self.memory.object_ptr().add(CONTROL + i * self.stride);
            (&*p.cast::<AtomicU32>(), p.add(ITEM_HEADER))
        }
    }

    fn len_locked(&self) -> usize {
        let (_, len, ..) = control(&self.memory);
        (len.load(Ordering::Relaxed) as usize).min(self.capacity)
    }

    fn read(&self, i: usize) -> std::result::Result<Vec<u8>, DictError> {
        let (len, data) = self.item(i);
        let n = len.load(Ordering::Relaxed) as usize;
        if n > self.max_item {
            return Err(DictError::Corrupted("an item's length exceeds the maximum"));
        }
        // SAFETY: n <= max_item bytes of the item's area.
        Ok(unsafe { copy_out(data, n) })
    }

    /// Appends `item`; returns its index. [`DictError::Full`] when the list
    /// holds `capacity` items, [`DictError::TooLarge`] past `max_item`.
    /// Waits for the lock as long as it takes (see
    /// [`SharedList::append_timeout`]).
    pub fn append(&self, item: &[u8]) -> std::result::Result<usize, DictError> {
        self.append_inner(item, None)
    }

    /// [`SharedList::append`], waiting at most `timeout` for the lock
    /// ([`DictError::Timeout`] if a holder keeps it longer).
    pub fn append_timeout(
        &self,
        item: &[u8],
        timeout: Duration,
    ) -> std::result::Result<usize, DictError> {
        self.append_inner(item, Some(timeout))
    }

    /// [`SharedList::append`] with an optional timeout.
    ///
    /// SYNC POINT: the Release store of the count pairs with the Acquire
    /// load of `len` in [`Self::lock`] after our death.
    fn append_inner(
        &self,
        item: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<usize, DictError> {
        if item.len() > self.max_item {
            return Err(DictError::TooLarge {
                what: "item",
                len: item.len(),
                max: self.max_item,
            });
        }
        let _guard = self.lock(timeout)?;
        let n = self.len_locked();
        if n >= self.capacity {
            return Err(DictError::Full {
                capacity: self.capacity,
            });
        }
        let (len, data) = self.item(n);
        // SAFETY: item.len() <= max_item bytes fit the item's area; the
        // source is our own buffer.
        unsafe { std::ptr::copy_nonoverlapping(item.as_ptr(), data, item.len()) };
        len.store(item.len() as u32, Ordering::Relaxed);
        let (_, count, ..) = control(&self.memory);
        // SYNC POINT: Release (paired in the doc comment above).
        count.store(n as u32 + 1, Ordering::Release);
        Ok(n)
    }

    /// A copy of item `index`. Waits for the lock as long as it takes.
    pub fn get(&self, index: usize) -> std::result::Result<Vec<u8>, DictError> {
        self.get_inner(index, None)
    }

    /// [`SharedList::get`], waiting at most `timeout` for the lock.
    pub fn get_timeout(
        &self,
        index: usize,
        timeout: Duration,
    ) -> std::result::Result<Vec<u8>, DictError> {
        self.get_inner(index, Some(timeout))
    }

    fn get_inner(
        &self,
        index: usize,
        timeout: Option<Duration>,
    ) -> std::result::Result<Vec<u8>, DictError> {
        let _guard = self.lock(timeout)?;
        let len = self.len_locked();
        if index >= len {
            return Err(DictError::OutOfBounds { index, len });
        }
        self.read(index)
    }

    /// How many items it holds. Waits for the lock as long as it takes.
    pub fn len(&self) -> std::result::Result<usize, DictError> {
        let _guard = self.lock(None)?;
        Ok(self.len_locked())
    }

    /// [`SharedList::len`], waiting at most `timeout` for the lock.
    pub fn len_timeout(&self, timeout: Duration) -> std::result::Result<usize, DictError> {
        let _guard = self.lock(Some(timeout))?;
        Ok(self.len_locked())
    }

    /// Whether it holds no item. Waits for the lock as long as it takes.
    pub fn is_empty(&self) -> std::result::Result<bool, DictError> {
        self.len().map(|n| n == 0)
    }

    /// [`SharedList::is_empty`], waiting at most `timeout` for the lock.
    pub fn is_empty_timeout(&self, timeout: Duration) -> std::result::Result<bool, DictError> {
        self.len_timeout(timeout).map(|n| n == 0)
    }

    /// A copy of every item, in order, taken under the lock. Waits for the
    /// lock as long as it takes.
    pub fn to_vec(&self) -> std::result::Result<Vec<Vec<u8>>, DictError> {
        let _guard = self.lock(None)?;
        (0..self.len_locked()).map(|i| self.read(i)).collect()
    }

    /// [`SharedList::to_vec`], waiting at most `timeout` for the lock.
    pub fn to_vec_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<Vec<Vec<u8>>, DictError> {
        let _guard = self.lock(Some(timeout))?;
        (0..self.len_locked()).map(|i| self.read(i)).collect()
    }
}

impl fmt::Debug for SharedList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedList")
            .field("name", &self.memory.name())
            .field("capacity", &self.capacity)
            .field("max_item", &self.max_item)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_appends_in_order_until_full() {
        let l = SharedList::anon(ListConfig::new(3, 4)).unwrap();
        assert_eq!(l.append(b"a").unwrap(), 0);
        assert_eq!(l.append(b"bb").unwrap(), 1);
        assert_eq!(l.append(b"").unwrap(), 2);
        assert_eq!(l.append(b"x"), Err(DictError::Full { capacity: 3 }));
        assert!(matches!(
            l.append(b"12345"),
            Err(DictError::TooLarge { .. })
        ));
        assert_eq!(l.get(1).unwrap(), b"bb");
        assert_eq!(l.get(3), Err(DictError::OutOfBounds { index: 3, len: 3 }));
        assert_eq!(l.to_vec().unwrap().len(), 3);
    }
}
