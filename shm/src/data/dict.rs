//! [`SharedDict`], a byte-key byte-value map, and [`SharedList`](crate::SharedList), an
//! append-only list of byte items, in shared memory: what Python's
//! `Manager().dict()` and `Manager().list()` give, without a manager
//! process.
//!
//! The layout and what a writer's death costs are on [`SharedDict`].

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use shmipc_core::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc_core::{LayoutError, Lock, LockError, LockGuard, QueueError, Rule, SharedObject};

use super::{copy_out, in_range, round_up, take, timeout_text};
use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;

/// Where the slots (or a list's items) start.
pub(super) const CONTROL: usize = 64;
/// A dict slot's fixed part, before the key bytes.
const SLOT_HEADER: usize = 32;

const EMPTY: u32 = 0;
const FULL: u32 = 1;
const TOMBSTONE: u32 = 2;

/// Largest capacity, key and value (or list item) accepted (keeps every
/// size in range).
pub(super) const MAX_CAPACITY: usize = 1 << 24;
const MAX_KEY: usize = 1 << 20;
pub(super) const MAX_VALUE: usize = 1 << 26;

/// Why a [`SharedDict`] or [`SharedList`](crate::SharedList) operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DictError {
    /// The dict (or list) holds `capacity` entries already.
    Full {
        /// Its capacity.
        capacity: usize,
    },
    /// A key, value or item is longer than the object was made for.
    TooLarge {
        /// `"key"`, `"value"` or `"item"`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
    /// A list index not below the list's length.
    OutOfBounds {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// The shared bytes hold something no writer of ours writes.
    Corrupted(&'static str),
    /// The lock was not free within the timeout of a `_timeout` call (its
    /// holder is slow, or stopped: a stopped process is alive).
    Timeout {
        /// The segment's name, `"(anonymous)"` for an anonymous one.
        name: String,
    },
    /// The lock could not be taken.
    Lock(LockError),
}

impl fmt::Display for DictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DictError::Full { capacity } => write!(f, "full: it holds {capacity} entries"),
            DictError::TooLarge { what, len, max } => {
                write!(f, "the {what} is {len} bytes long; at most {max} fit")
            }
            DictError::OutOfBounds { index, len } => {
                write!(f, "index {index} is out of bounds for a list of {len}")
            }
            DictError::Corrupted(what) => write!(f, "the shared data is corrupted: {what}"),
            DictError::Timeout { name } => write!(f, "{}", timeout_text(name)),
            DictError::Lock(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DictError {}

impl From<LockError> for DictError {
    fn from(e: LockError) -> Self {
        DictError::Lock(e)
    }
}

/// A copied-out key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The geometry of a [`SharedDict`]: how many entries, and the longest key
/// and value in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictConfig {
    /// How many entries it holds at most (1 ..= 2^24).
    pub capacity: usize,
    /// The longest key in bytes (1 ..= 2^20).
    pub max_key: usize,
    /// The longest value in bytes (0 ..= 2^26).
    pub max_value: usize,
}

impl DictConfig {
    /// A dict of `capacity` entries with keys up to `max_key` bytes and
    /// values up to `max_value`.
    pub const fn new(capacity: usize, max_key: usize, max_value: usize) -> DictConfig {
        DictConfig {
            capacity,
            max_key,
            max_value,
        }
    }
}

/// The checked geometry of a dict.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    capacity: usize,
    slots: usize,
    max_key: usize,
    max_value: usize,
    stride: usize,
    size: usize,
}

impl Geometry {
    fn new(c: DictConfig) -> std::result::Result<Geometry, LayoutError> {
        in_range("capacity", c.capacity, 1, MAX_CAPACITY)?;
        in_range("max_key", c.max_key, 1, MAX_KEY)?;
        in_range("max_value", c.max_value, 0, MAX_VALUE)?;
        let slots = c.capacity + c.capacity / 4 + 1;
        // Within the limits above the table is at most ~2^46 bytes: this
        // fails only where that does not fit the address space.
        Geometry::with_slots(c, slots).ok_or(LayoutError::parameter(
            "capacity",
            c.capacity as u64,
            Rule::Text(
                "with these key and value sizes makes a table larger than the address space",
            ),
        ))
    }

    fn with_slots(c: DictConfig, slots: usize) -> Option<Geometry> {
        let stride = round_up(SLOT_HEADER + c.max_key + c.max_value, 8)?;
        let size = stride
            .checked_mul(slots)?
            .checked_add(CONTROL)
            .filter(|&s| s <= isize::MAX as usize / 2)?;
        Some(Geometry {
            capacity: c.capacity,
            slots,
            max_key: c.max_key,
            max_value: c.max_value,
            stride,
            size,
        })
    }

    fn params(&self) -> [u64; 4] {
        [
            self.capacity as u64,
            self.slots as u64,
            self.max_key as u64,
            self.max_value as u64,
        ]
    }

    fn layout(&self, kind: Kind) -> ObjectLayout {
        ObjectLayout {
            kind,
            size: self.size as u64,
            align: 8,
            params: self.params(),
        }
    }

    /// Decodes a named dict's header parameters.
    fn from_params(name: &str, p: [u64; 4]) -> Result<Geometry> {
        let bad = || Error::corrupted(name, "the dict's parameters are invalid");
        let f = |v: u64| usize::try_from(v).map_err(|_| bad());
        let c = DictConfig::new(f(p[0])?, f(p[2])?, f(p[3])?);
        let expected = Geometry::new(c).map_err(|_| bad())?;
        if expected.slots as u64 != p[1] {
            return Err(bad());
        }
        Ok(expected)
    }
}

/// 64-bit FNV-1a: the same in every process, no seed to share.
fn hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A slot's fixed fields, as atomics.
struct SlotHeader<'a> {
    state: &'a AtomicU32,
    key_len: &'a AtomicU32,
    value_len: &'a AtomicU32,
    hash: &'a AtomicU64,
    seq: &'a AtomicU64,
}

/// The control block of a dict or list: lock, counters.
pub(super) fn control(memory: &Mapping) -> (&Lock, &AtomicU32, &AtomicU32, &AtomicU64) {
    let p = memory.object_ptr();
    // SAFETY: every dict and list object is at least CONTROL bytes,
    // 8-aligned, mapped as long as `memory`; these are atomics (valid for
    // any bits) at offsets 0, 16, 20 and 24, which is how every process
    // lays them out.
    unsafe {
        (
            &*p.cast::<Lock>(),
            &*p.add(16).cast::<AtomicU32>(),
            &*p.add(20).cast::<AtomicU32>(),
            &*p.add(24).cast::<AtomicU64>(),
        )
    }
}

/// Takes the lock of the dict or list in `memory`, waiting at most
/// `timeout` (for ever if `None`); a timeout is [`DictError::Timeout`]
/// naming the segment.
pub(super) fn lock_table(
    memory: &Mapping,
    timeout: Option<Duration>,
) -> std::result::Result<LockGuard<'_>, DictError> {
    take(control(memory).0, timeout).map_err(|e| match e {
        LockError::Timeout => DictError::Timeout {
            name: memory.label().to_owned(),
        },
        e => DictError::Lock(e),
    })
}

/// A map from byte keys to byte values in shared memory, for any number of
/// processes: a fixed-capacity open-addressing table under one [`Lock`]
/// (see *Layout* below, and what a writer's death costs).
///
/// Keys and values are copied in and out; nothing hands out references to
/// the shared bytes.
///
/// ```
/// use shmipc::{fork, DictConfig, DictError, Named, SharedDict};
/// use std::time::Duration;
///
/// let dict = SharedDict::anon(DictConfig::new(16, 32, 64))?;
/// let mut child = fork(|| {
///     dict.insert(b"from-child", b"hello").is_ok() as i32
/// })?;
/// assert_eq!(child.join_timeout(Duration::from_secs(10))?.unwrap().code(), Some(1));
/// assert_eq!(dict.get(b"from-child")?.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(dict.insert(b"from-child", b"again")?.as_deref(), Some(&b"hello"[..]));
/// dict.update(b"hits", |old| {
///     let n = old.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
///     (n + 1).to_le_bytes().to_vec()
/// })?;
/// assert_eq!(dict.len()?, 2);
/// assert!(matches!(dict.insert(&[0; 33], b""), Err(DictError::TooLarge { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Layout
///
/// A fixed-capacity open-addressing table (linear probing, tombstones)
/// under one [`Lock`]:
///
/// | offset | field |
/// |---|---|
/// | 0 | [`Lock`] (16 bytes) |
/// | 16 | `len: u32` — live entries (a hint; recounted on repair) |
/// | 20 | `tombstones: u32` — likewise |
/// | 24 | `next_seq: u64` — write counter |
/// | 64 | `slots` slots of `stride` bytes |
///
/// Each slot: `state: u32` (0 empty, 1 full, 2 tombstone), `key_len: u32`,
/// `value_len: u32`, reserved `u32`, `hash: u64` (FNV-1a of the key),
/// `seq: u64` (when it was written), then `max_key` key bytes and
/// `max_value` value bytes; `stride` is that rounded up to 8. `params` =
/// `[capacity, slots, max_key, max_value]`, with `slots = capacity +
/// capacity / 4 + 1`, so a table holding `capacity` entries always has a
/// free slot and every probe ends.
///
/// **Crash safety.** A new entry is written into a free slot while that
/// slot is still empty (or a tombstone), and only then published by storing
/// `state = full`; replacing a key's value writes the new entry into a free
/// slot first and then turns the old one into a tombstone. So a writer
/// killed at any point leaves every key with its old or its new value —
/// never a torn one — though possibly twice (old and new both full) and
/// with `len` off by one. The next locker is told the owner died
/// ([`LockGuard::owner_died`]) and repairs: slots with an impossible state
/// or length, or whose hash does not match their key, become tombstones;
/// of two entries for one key the one with the higher `seq` stays; `len`
/// and `tombstones` are recounted. Then it marks the lock consistent.
///
/// Lookups never run past `slots` probes, whatever the memory holds.
/// Removing leaves tombstones, which lengthen probes until the table
/// empties (then every slot is reset); a table used as a long-lived cache
/// with much churn pays for that with longer probes, never with a wrong
/// answer.
pub struct SharedDict {
    memory: Mapping,
    geo: Geometry,
}

impl Named for SharedDict {
    const KIND: Kind = Kind::DICT;
    type Config<'a> = DictConfig;
    type Anon = Self;

    fn layout(config: &DictConfig) -> std::result::Result<ObjectLayout, LayoutError> {
        Geometry::new(*config).map(|g| g.layout(Kind::DICT))
    }

    unsafe fn init(ptr: *mut u8, len: usize, _: DictConfig) -> std::result::Result<(), QueueError> {
        // SAFETY: the caller's contract: the object starts 8-aligned, is
        // `len` long and zeroed (every slot empty); the lock comes first.
        unsafe { Lock::init_at(ptr, len, ()) }?;
        Ok(())
    }

    fn check(name: &str, h: &HeaderSnapshot) -> Result<()> {
        let g = Geometry::from_params(name, h.params)?;
        h.expect_layout(name, g.size as u64, 8, h.params)
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        let geo = Geometry::from_params(memory.label(), memory.header().params)?;
        Ok(SharedDict { memory, geo })
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        Self::attach(memory, true)
    }
}

impl SharedDict {
    /// The normalised name, or `None` for an anonymous dict.
    pub fn name(&self) -> Option<&str> {
        self.memory.name()
    }

    /// How many entries it holds at most.
    pub fn capacity(&self) -> usize {
        self.geo.capacity
    }

    /// The longest key, in bytes.
    pub fn max_key(&self) -> usize {
        self.geo.max_key
    }

    /// The longest value, in bytes.
    pub fn max_value(&self) -> usize {
        self.geo.max_value
    }

    fn slot(&self, i: usize) -> (SlotHeader<'_>, *mut u8) {
        debug_assert!(i < self.geo.slots);
        // SAFETY: i < slots, so the slot's `stride` bytes lie inside the
        // object (size = CONTROL + slots * stride, checked); stride and
        // CONTROL are multiples of 8, so the header atomics are aligned.
        // Atomics are valid for any bits; the mapping outlives `self`'s
        // borrow.
        unsafe {
            let p = self.memory.object_ptr().add(CONTROL + i * self.geo.stride);
            (
                SlotHeader {
                    state: &*p.cast::<AtomicU32>(),
                    key_len: &*p.add(4).cast::<AtomicU32>(),
                    value_len: &*p.add(8).cast::<AtomicU32>(),
                    hash: &*p.add(16).cast::<AtomicU64>(),
                    seq: &*p.add(24).cast::<AtomicU64>(),
                },
                p.add(SLOT_HEADER),
            )
        }
    }

    /// Takes the lock (waiting at most `timeout`, for ever if `None`),
    /// repairing the table if the previous owner died.
    fn lock(&self, timeout: Option<Duration>) -> std::result::Result<LockGuard<'_>, DictError> {
        let mut guard = lock_table(&self.memory, timeout)?;
        if guard.owner_died() {
            crate::fault::repaired();
            self.repair();
            guard.mark_consistent();
        }
        Ok(guard)
    }

    /// The key of a full slot, if its lengths and hash check out.
    fn valid_key(&self, i: usize) -> Option<Vec<u8>> {
        let (h, data) = self.slot(i);
        let klen = h.key_len.load(Ordering::Relaxed) as usize;
        let vlen = h.value_len.load(Ordering::Relaxed) as usize;
        if klen > self.geo.max_key || vlen > self.geo.max_value {
            return None;
        }
        // SAFETY: klen <= max_key bytes of key area in the slot.
        let key = unsafe { copy_out(data, klen) };
        (hash(&key) == h.hash.load(Ordering::Relaxed)).then_some(key)
    }

    /// After an owner's death: see *Crash safety* on [`SharedDict`].
    ///
    /// SYNC POINT: the Acquire loads of `state` pair with the Release store
    /// that publishes an entry in [`Self::write_entry`].
    #[cold]
    fn repair(&self) {
        let mut newest: HashMap<Vec<u8>, (u64, usize)> = HashMap::new();
        for i in 0..self.geo.slots {
            let (h, _) = self.slot(i);
            // SYNC POINT: Acquire (paired in the doc comment above).
            match h.state.load(Ordering::Acquire) {
                EMPTY | TOMBSTONE => {}
                FULL => match self.valid_key(i) {
                    Some(key) => {
                        let seq = h.seq.load(Ordering::Relaxed);
                        if let Some(&(s, j)) = newest.get(&key) {
                            let loser = if s >= seq { i } else { j };
                            self.slot(loser).0.state.store(TOMBSTONE, Ordering::Relaxed);
                            if s < seq {
                                newest.insert(key, (seq, i));
                            }
                        } else {
                            newest.insert(key, (seq, i));
                        }
                    }
                    None => h.state.store(TOMBSTONE, Ordering::Relaxed),
                },
                // Not a state we write: unusable, but it may sit inside a
                // probe chain, so a tombstone rather than empty.
                _ => h.state.store(TOMBSTONE, Ordering::Relaxed),
            }
        }
        self.recount();
    }

    /// Recounts `len` and `tombstones` from the slots.
    fn recount(&self) {
        let (_, len, tombs, _) = control(&self.memory);
        let (mut full, mut dead) = (0u32, 0u32);
        for i in 0..self.geo.slots {
            match self.slot(i).0.state.load(Ordering::Relaxed) {
                FULL => full += 1,
                EMPTY => {}
                _ => dead += 1,
            }
        }
        len.store(full, Ordering::Relaxed);
        tombs.store(dead, Ordering::Relaxed);
    }

    /// Probes for `key`: its slot if present, and the first slot a new
    /// entry for it may go to (the first tombstone or empty slot of the
    /// chain; when the key is present, the first one after it counts too).
    /// Call with the lock held.
    fn probe(&self, key: &[u8], h: u64) -> (Option<usize>, Option<usize>) {
        let slots = self.geo.slots;
        let start = (h % slots as u64) as usize;
        let (mut found, mut free) = (None, None);
        for k in 0..slots {
            let i = (start + k) % slots;
            let (hdr, data) = self.slot(i);
            match hdr.state.load(Ordering::Relaxed) {
                EMPTY => {
                    free.get_or_insert(i);
                    break;
                }
                TOMBSTONE => {
                    free.get_or_insert(i);
                }
                FULL if found.is_none() => {
                    let klen = hdr.key_len.load(Ordering::Relaxed) as usize;
                    if klen == key.len() && hdr.hash.load(Ordering::Relaxed) == h {
                        // SAFETY: klen == key.len() <= max_key.
                        if unsafe { copy_out(data, klen) } == key {
                            found = Some(i);
                        }
                    }
                }
                _ => {}
            }
            if found.is_some() && free.is_some() {
                break;
            }
        }
        (found, free)
    }

    /// The value of the full slot `i`.
    fn value_of(&self, i: usize) -> std::result::Result<Vec<u8>, DictError> {
        let (h, data) = self.slot(i);
        let vlen = h.value_len.load(Ordering::Relaxed) as usize;
        if vlen > self.geo.max_value {
            return Err(DictError::Corrupted("a value length exceeds the maximum"));
        }
        // SAFETY: the value area starts max_key bytes into the slot's data
        // and holds max_value >= vlen bytes.
        Ok(unsafe { copy_out(data.add(self.geo.max_key), vlen) })
    }

    /// Writes an entry into non-full slot `i` and publishes it.
    ///
    /// SYNC POINT: the Release store of `state = full` pairs with the
    /// Acquire load of `state` in [`Self::repair`]: a process that finds
    /// the entry published after our death (taking the lock over) finds it
    /// written. Live readers are ordered by the lock.
    fn write_entry(&self, i: usize, key: &[u8], value: &[u8], h: u64) {
        let (_, _, _, next_seq) = control(&self.memory);
        let (hdr, data) = self.slot(i);
        // SAFETY: key.len() <= max_key and value.len() <= max_value
        // (checked by the callers), so both copies stay inside the slot;
        // the sources are our own buffers.
        unsafe {
            std::ptr::copy_nonoverlapping(key.as_ptr(), data, key.len());
            std::ptr::copy_nonoverlapping(value.as_ptr(), data.add(self.geo.max_key), value.len());
        }
        hdr.key_len.store(key.len() as u32, Ordering::Relaxed);
        hdr.value_len.store(value.len() as u32, Ordering::Relaxed);
        hdr.hash.store(h, Ordering::Relaxed);
        hdr.seq
            .store(next_seq.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        crate::fault::pause(crate::fault::Point::DictBeforePublish);
        // SYNC POINT: Release (paired in the doc comment above).
        hdr.state.store(FULL, Ordering::Release);
    }

    fn check_sizes(&self, key: &[u8], value: &[u8]) -> std::result::Result<(), DictError> {
        if key.len() > self.geo.max_key {
            return Err(DictError::TooLarge {
                what: "key",
                len: key.len(),
                max: self.geo.max_key,
            });
        }
        if value.len() > self.geo.max_value {
            return Err(DictError::TooLarge {
                what: "value",
                len: value.len(),
                max: self.geo.max_value,
            });
        }
        Ok(())
    }

    /// Inserts or replaces under the lock; returns the old value.
    fn put(
        &self,
        key: &[u8],
        h: u64,
        found: Option<usize>,
        free: Option<usize>,
        value: &[u8],
    ) -> std::result::Result<Option<Vec<u8>>, DictError> {
        let (_, len, tombs, _) = control(&self.memory);
        let full = DictError::Full {
            capacity: self.geo.capacity,
        };
        let Some(slot) = free else {
            return Err(full);
        };
        let was_tombstone = self.slot(slot).0.state.load(Ordering::Relaxed) == TOMBSTONE;
        match found {
            Some(old) => {
                let previous = self.value_of(old)?;
                self.write_entry(slot, key, value, h);
                crate::fault::pause(crate::fault::Point::DictBeforeTombstone);
                self.slot(old).0.state.store(TOMBSTONE, Ordering::Relaxed);
                if !was_tombstone {
                    tombs.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(previous))
            }
            None => {
                if len.load(Ordering::Relaxed) as usize >= self.geo.capacity {
                    return Err(full);
                }
                self.write_entry(slot, key, value, h);
                if was_tombstone {
                    tombs.fetch_sub(1, Ordering::Relaxed);
                }
                len.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Inserts `key` → `value`; returns the value it replaces, if any.
    /// [`DictError::Full`] when the dict holds `capacity` other keys,
    /// [`DictError::TooLarge`] for a key or value longer than the maximum.
    /// Waits for the lock as long as it takes (see
    /// [`SharedDict::insert_timeout`]).
    pub fn insert(
        &self,
        key: &[u8],
        value: &[u8],
    ) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.insert_inner(key, value, None)
    }

    /// [`SharedDict::insert`], waiting at most `timeout` for the lock
    /// ([`DictError::Timeout`] if a holder keeps it longer).
    pub fn insert_timeout(
        &self,
        key: &[u8],
        value: &[u8],
        timeout: Duration,
    ) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.insert_inner(key, value, Some(timeout))
    }

    fn insert_inner(
        &self,
        key: &[u8],
        value: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.check_sizes(key, value)?;
        let h = hash(key);
        let _guard = self.lock(timeout)?;
        let (found, free) = self.probe(key, h);
        self.put(key, h, found, free, value)
    }

    /// A copy of the value of `key`, if present. Waits for the lock as long
    /// as it takes.
    pub fn get(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.get_inner(key, None)
    }

    /// [`SharedDict::get`], waiting at most `timeout` for the lock.
    pub fn get_timeout(
        &self,
        key: &[u8],
        timeout: Duration,
    ) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.get_inner(key, Some(timeout))
    }

    fn get_inner(
        &self,
        key: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.find(key, timeout, |i| i.map(|i| self.value_of(i)).transpose())
    }

    /// Runs `f` on the slot of `key` (`None` if absent) with the lock held,
    /// waiting at most `timeout` (for ever if `None`) for it. A key too
    /// long to be stored is absent, and the lock is not taken for it.
    fn find<R>(
        &self,
        key: &[u8],
        timeout: Option<Duration>,
        f: impl FnOnce(Option<usize>) -> std::result::Result<R, DictError>,
    ) -> std::result::Result<R, DictError> {
        if key.len() > self.geo.max_key {
            return f(None);
        }
        let h = hash(key);
        let _guard = self.lock(timeout)?;
        f(self.probe(key, h).0)
    }

    /// Whether `key` is present. Waits for the lock as long as it takes.
    pub fn contains_key(&self, key: &[u8]) -> std::result::Result<bool, DictError> {
        self.contains_key_inner(key, None)
    }

    /// [`SharedDict::contains_key`], waiting at most `timeout` for the lock.
    pub fn contains_key_timeout(
        &self,
        key: &[u8],
        timeout: Duration,
    ) -> std::result::Result<bool, DictError> {
        self.contains_key_inner(key, Some(timeout))
    }

    fn contains_key_inner(
        &self,
        key: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<bool, DictError> {
        self.find(key, timeout, |i| Ok(i.is_some()))
    }

    /// Runs `f` on the current value of `key` (`None` if absent) and
    /// stores what it returns, all under the lock: a read-modify-write that
    /// no other process can interleave with. Waits for the lock as long as
    /// it takes.
    pub fn update(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
    ) -> std::result::Result<(), DictError> {
        self.update_inner(key, f, None)
    }

    /// [`SharedDict::update`], waiting at most `timeout` for the lock (`f`
    /// does not run if it times out).
    pub fn update_timeout(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
        timeout: Duration,
    ) -> std::result::Result<(), DictError> {
        self.update_inner(key, f, Some(timeout))
    }

    fn update_inner(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
        timeout: Option<Duration>,
    ) -> std::result::Result<(), DictError> {
        self.check_sizes(key, &[])?;
        let h = hash(key);
        let _guard = self.lock(timeout)?;
        let (found, free) = self.probe(key, h);
        let old = found.map(|i| self.value_of(i)).transpose()?;
        let new = f(old.as_deref());
        self.check_sizes(key, &new)?;
        self.put(key, h, found, free, &new).map(drop)
    }

    /// Removes `key`; returns its value if it was present. Waits for the
    /// lock as long as it takes.
    pub fn remove(&self, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.remove_inner(key, None)
    }

    /// [`SharedDict::remove`], waiting at most `timeout` for the lock.
    pub fn remove_timeout(
        &self,
        key: &[u8],
        timeout: Duration,
    ) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.remove_inner(key, Some(timeout))
    }

    fn remove_inner(
        &self,
        key: &[u8],
        timeout: Option<Duration>,
    ) -> std::result::Result<Option<Vec<u8>>, DictError> {
        self.find(key, timeout, |i| i.map(|i| self.remove_slot(i)).transpose())
    }

    /// Removes the entry of full slot `i` (with the lock held); returns its
    /// value.
    fn remove_slot(&self, i: usize) -> std::result::Result<Vec<u8>, DictError> {
        let (_, len, tombs, _) = control(&self.memory);
        let value = self.value_of(i)?;
        self.slot(i).0.state.store(TOMBSTONE, Ordering::Relaxed);
        tombs.fetch_add(1, Ordering::Relaxed);
        // `len` is only a hint a peer may have damaged: never wrap it.
        let n = len.load(Ordering::Relaxed);
        len.store(n.saturating_sub(1), Ordering::Relaxed);
        if n <= 1 {
            self.reset_if_empty();
        }
        Ok(value)
    }

    /// With no full slot left, makes every slot empty (clearing the
    /// tombstones that lengthen probes).
    fn reset_if_empty(&self) {
        let any_full =
            (0..self.geo.slots).any(|i| self.slot(i).0.state.load(Ordering::Relaxed) == FULL);
        if any_full {
            self.recount();
            return;
        }
        for i in 0..self.geo.slots {
            self.slot(i).0.state.store(EMPTY, Ordering::Relaxed);
        }
        self.recount();
    }

    /// Removes every entry. Waits for the lock as long as it takes.
    pub fn clear(&self) -> std::result::Result<(), DictError> {
        self.clear_inner(None)
    }

    /// [`SharedDict::clear`], waiting at most `timeout` for the lock.
    pub fn clear_timeout(&self, timeout: Duration) -> std::result::Result<(), DictError> {
        self.clear_inner(Some(timeout))
    }

    fn clear_inner(&self, timeout: Option<Duration>) -> std::result::Result<(), DictError> {
        let _guard = self.lock(timeout)?;
        for i in 0..self.geo.slots {
            let (h, _) = self.slot(i);
            if h.state.load(Ordering::Relaxed) == FULL {
                h.state.store(TOMBSTONE, Ordering::Relaxed);
            }
        }
        self.reset_if_empty();
        Ok(())
    }

    /// How many entries it holds. Waits for the lock as long as it takes.
    pub fn len(&self) -> std::result::Result<usize, DictError> {
        self.len_inner(None)
    }

    /// [`SharedDict::len`], waiting at most `timeout` for the lock.
    pub fn len_timeout(&self, timeout: Duration) -> std::result::Result<usize, DictError> {
        self.len_inner(Some(timeout))
    }

    fn len_inner(&self, timeout: Option<Duration>) -> std::result::Result<usize, DictError> {
        let _guard = self.lock(timeout)?;
        let (_, len, ..) = control(&self.memory);
        Ok((len.load(Ordering::Relaxed) as usize).min(self.geo.capacity))
    }

    /// Whether it holds no entry. Waits for the lock as long as it takes.
    pub fn is_empty(&self) -> std::result::Result<bool, DictError> {
        self.len().map(|n| n == 0)
    }

    /// [`SharedDict::is_empty`], waiting at most `timeout` for the lock.
    pub fn is_empty_timeout(&self, timeout: Duration) -> std::result::Result<bool, DictError> {
        self.len_timeout(timeout).map(|n| n == 0)
    }

    /// A copy of every key, taken under the lock (in table order). Waits
    /// for the lock as long as it takes.
    pub fn keys(&self) -> std::result::Result<Vec<Vec<u8>>, DictError> {
        Ok(self.items()?.into_iter().map(|(k, _)| k).collect())
    }

    /// [`SharedDict::keys`], waiting at most `timeout` for the lock.
    pub fn keys_timeout(&self, timeout: Duration) -> std::result::Result<Vec<Vec<u8>>, DictError> {
        Ok(self
            .items_timeout(timeout)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// A copy of every entry, taken under the lock (in table order). Waits
    /// for the lock as long as it takes.
    pub fn items(&self) -> std::result::Result<Vec<Entry>, DictError> {
        self.items_inner(None)
    }

    /// [`SharedDict::items`], waiting at most `timeout` for the lock.
    pub fn items_timeout(&self, timeout: Duration) -> std::result::Result<Vec<Entry>, DictError> {
        self.items_inner(Some(timeout))
    }

    fn items_inner(&self, timeout: Option<Duration>) -> std::result::Result<Vec<Entry>, DictError> {
        let _guard = self.lock(timeout)?;
        let mut out = Vec::new();
        for i in 0..self.geo.slots {
            if self.slot(i).0.state.load(Ordering::Relaxed) != FULL {
                continue;
            }
            let key = self.valid_key(i).ok_or(DictError::Corrupted(
                "an entry's key does not match its hash",
            ))?;
            out.push((key, self.value_of(i)?));
        }
        Ok(out)
    }
}

impl fmt::Debug for SharedDict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedDict")
            .field("name", &self.name())
            .field("capacity", &self.geo.capacity)
            .field("max_key", &self.geo.max_key)
            .field("max_value", &self.geo.max_value)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replace_remove_and_full() {
        let d = SharedDict::anon(DictConfig::new(4, 8, 8)).unwrap();
        for k in 0u8..4 {
            assert_eq!(d.insert(&[k], &[k; 3]).unwrap(), None);
        }
        assert_eq!(d.insert(b"x", b"y"), Err(DictError::Full { capacity: 4 }));
        // Replacing works when full (a free slot is always left).
        assert_eq!(d.insert(&[2], b"two").unwrap(), Some(vec![2; 3]));
        assert_eq!(d.get(&[2]).unwrap(), Some(b"two".to_vec()));
        assert_eq!(d.len().unwrap(), 4);
        assert_eq!(d.remove(&[1]).unwrap(), Some(vec![1; 3]));
        assert_eq!(d.remove(&[1]).unwrap(), None);
        assert_eq!(d.len().unwrap(), 3);
        let mut keys = d.keys().unwrap();
        keys.sort();
        assert_eq!(keys, vec![vec![0], vec![2], vec![3]]);
        d.clear().unwrap();
        assert_eq!(d.len().unwrap(), 0);
        assert!(matches!(
            d.insert(b"123456789", b""),
            Err(DictError::TooLarge { what: "key", .. })
        ));
    }

    #[test]
    fn churn_never_loses_a_key() {
        let d = SharedDict::anon(DictConfig::new(64, 8, 8)).unwrap();
        let mut model = std::collections::HashMap::new();
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = ((x >> 33) % 100).to_le_bytes();
            if x >> 63 == 0 {
                let r = d.insert(&k, &x.to_le_bytes());
                if model.len() < 64 || model.contains_key(&k) {
                    assert_eq!(r.unwrap(), model.insert(k, x.to_le_bytes().to_vec()));
                } else {
                    assert!(matches!(r, Err(DictError::Full { .. })));
                }
            } else {
                assert_eq!(d.remove(&k).unwrap(), model.remove(&k));
            }
            assert_eq!(d.len().unwrap(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(d.get(k).unwrap().as_ref(), Some(v));
        }
    }

    #[test]
    fn repair_keeps_the_newest_duplicate_and_recounts() {
        let d = SharedDict::anon(DictConfig::new(8, 8, 8)).unwrap();
        d.insert(b"a", b"old").unwrap();
        // Simulate a writer killed between publishing the new entry and
        // retiring the old one: two full slots for "a".
        let _g = d.lock(None).unwrap();
        let (found, free) = d.probe(b"a", hash(b"a"));
        d.write_entry(free.unwrap(), b"a", b"new", hash(b"a"));
        let _ = found;
        drop(_g);
        d.repair();
        assert_eq!(d.get(b"a").unwrap(), Some(b"new".to_vec()));
        assert_eq!(d.len().unwrap(), 1);
        // A slot with a garbage state becomes a tombstone.
        d.slot(5).0.state.store(77, Ordering::Relaxed);
        d.repair();
        assert_eq!(d.items().unwrap(), vec![(b"a".to_vec(), b"new".to_vec())]);
    }
}
