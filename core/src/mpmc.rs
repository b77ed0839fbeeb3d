//! A bounded multi-producer multi-consumer queue of [`Pod`] items.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue ("Bounded MPMC
//! queue", 1024cores.net,
//! <https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>),
//! the one crossbeam's `ArrayQueue` also uses. Every slot has a sequence
//! number next to it:
//!
//! | slot `i` sequence | meaning for position `p` with `p & mask == i` |
//! |---|---|
//! | `p` | free: a producer at `p` may claim it |
//! | `p + 1` | full: a consumer at `p` may claim it |
//! | `p + capacity` | freed again, for the producer at `p + capacity` |
//!
//! A producer claims position `p` with a compare-and-swap on `enqueue`,
//! copies the item in, and publishes it by storing `p + 1` (Release). A
//! consumer claims `p` on `dequeue`, copies the item out, and frees the slot
//! by storing `p + capacity`. No thread ever waits for another except when
//! the queue is full or empty, which is where blocking calls sleep.
//!
//! The layout is a control block (header, `closed`, `enqueue` and `dequeue`
//! each on a cache line of its own, two sleep/wake words), then `capacity`
//! 64-bit sequence numbers, then `capacity` slots. Capacity is a power of two
//! and at least 2 (with one slot, "free for `p + 1`" and "full at `p`" would
//! be the same number).
//!
//! **Hostile memory.** A legal sequence number is within `capacity` of the
//! position being tried; anything else is [`PopError::Corrupted`] /
//! [`PushError::Corrupted`]. A sequence number ahead of its position while
//! the position itself did not move is also corruption, so no retry loop can
//! be kept spinning by a stuck value; the loops are bounded besides.
//!
//! **Crashes.** A producer that dies between claim and publish leaves its
//! slot unpublished: consumers see the queue as empty at that position from
//! then on (a timeout, not a hang, for timed calls). A consumer that dies
//! between claim and free costs one slot for every later lap, which likewise
//! stalls producers at that position. Vyukov's queue trades this for having
//! no lock at all; use the byte queue or SPSC rings where that matters.

use core::alloc::Layout;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use core::time::Duration;

use bytemuck::Pod;

use crate::futex::Deadline;
use crate::place::LayoutError;
#[cfg_attr(loom, allow(unused_imports))]
use crate::queue::{
    block, round_up, CachePadded, Cell, Cells, Header, Keep, Kind, Life, PopError, PushError,
    QueueError, RingConfig, Signal,
};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// How many times one push or pop retries after losing a race before it
/// reports corruption. Every retry means another thread made progress, so
/// only a peer rewriting the positions in a loop gets anywhere near this.
const MAX_RETRIES: u32 = 1 << 20;

#[repr(C)]
struct Control {
    header: Header,
    closed: AtomicU32,
    enqueue: CachePadded<AtomicU64>,
    dequeue: CachePadded<AtomicU64>,
    /// Consumers sleep here; pushes notify.
    not_empty: CachePadded<Signal>,
    /// Producers sleep here; pops notify.
    not_full: CachePadded<Signal>,
}

impl Control {
    fn new() -> Control {
        Control {
            header: Header::new(),
            closed: AtomicU32::new(0),
            enqueue: CachePadded(AtomicU64::new(0)),
            dequeue: CachePadded(AtomicU64::new(0)),
            not_empty: CachePadded(Signal::new()),
            not_full: CachePadded(Signal::new()),
        }
    }
}

/// A bounded MPMC queue of `T` in (shared) memory. Handles are cheap to
/// clone; every method takes `&self`.
///
/// ```
/// use shmipc_core::mpmc::Mpmc;
/// use shmipc_core::RingConfig;
///
/// #[repr(C, align(128))]
/// struct Bytes([u8; 2048]);
/// let mut mem = Bytes([0; 2048]);
///
/// let q = Mpmc::<u32>::new_in(&mut mem.0, RingConfig::new(8)).unwrap();
/// std::thread::scope(|s| {
///     for t in 0..2 {
///         let q = q.clone();
///         s.spawn(move || {
///             for i in 0..10 {
///                 q.push(t * 100 + i).unwrap();
///             }
///         });
///     }
///     let mut sum = 0;
///     for _ in 0..20 {
///         sum += q.pop().unwrap();
///     }
///     assert_eq!(sum, 2 * 45 + 100 * 10);
/// });
/// ```
pub struct Mpmc<'a, T> {
    ctrl: &'a Control,
    seqs: &'a [AtomicU64],
    cells: Cells<T>,
    /// Trusted copy of the capacity (checked at attach, never re-read).
    cap: u64,
    _keep: Keep,
    _life: Life<'a, T>,
}

// SAFETY: every access to the shared memory goes through atomics or through
// slots owned by the claim protocol; items are Pod.
unsafe impl<T: Send> Send for Mpmc<'_, T> {}
// SAFETY: as for Send; all methods take &self and are thread-safe.
unsafe impl<T: Send> Sync for Mpmc<'_, T> {}

impl<T> Clone for Mpmc<'_, T> {
    fn clone(&self) -> Self {
        Mpmc {
            ctrl: self.ctrl,
            seqs: self.seqs,
            cells: self.cells,
            cap: self.cap,
            _keep: self._keep.clone(),
            _life: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Mpmc<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpmc")
            .field("capacity", &self.cap)
            .field("enqueue", &self.ctrl.enqueue.load(Ordering::Relaxed))
            .field("dequeue", &self.ctrl.dequeue.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Byte offsets of the sequence array and the slots.
fn offsets<T>(cap: usize) -> Option<(usize, usize, usize)> {
    let seqs = size_of::<Control>();
    let slots = round_up(seqs.checked_add(cap.checked_mul(8)?)?, align_of::<T>())?;
    let end = round_up(slots.checked_add(cap.checked_mul(size_of::<T>())?)?, 128)?;
    Some((seqs, slots, end))
}

impl<'a, T: Pod> Mpmc<'a, T> {
    /// The size and alignment of a queue with `config`.
    ///
    /// Fails with [`LayoutError::InvalidParameters`] for a capacity below 2,
    /// not a power of two or above 2^32, a zero-sized `T` or one aligned to
    /// more than 128 bytes, or a size that overflows.
    pub fn layout(config: RingConfig) -> Result<Layout, LayoutError> {
        config.check(2)?;
        if size_of::<T>() == 0 || align_of::<T>() > 128 {
            return Err(LayoutError::InvalidParameters);
        }
        let (_, _, end) = offsets::<T>(config.capacity).ok_or(LayoutError::InvalidParameters)?;
        crate::queue::layout(end, align_of::<Control>())
    }

    /// Writes a new, empty queue at `ptr` and returns a handle to it.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for reads and writes of `len` bytes for `'a`; nobody
    /// else uses those bytes while this runs; afterwards they are accessed
    /// only through this module's handles (in this or other processes).
    #[cfg(not(loom))]
    pub unsafe fn init_at(
        ptr: *mut u8,
        len: usize,
        config: RingConfig,
    ) -> Result<Self, QueueError> {
        let l = Self::layout(config)?;
        crate::place::check(ptr, len, l.size(), l.align())?;
        let cap = config.capacity;
        let (seqs_off, slots_off, _) = offsets::<T>(cap).ok_or(LayoutError::InvalidParameters)?;
        // SAFETY: aligned and large enough (checked), exclusive (contract).
        unsafe { ptr.cast::<Control>().write(Control::new()) };
        // SAFETY: the sequence array is in bounds, 8-aligned (offset is a
        // multiple of 128 from a 128-aligned base), exclusive.
        let seqs = unsafe { ptr.add(seqs_off).cast::<AtomicU64>() };
        for i in 0..cap {
            // SAFETY: i < cap, in bounds as above.
            unsafe { seqs.add(i).write(AtomicU64::new(i as u64)) };
        }
        // SAFETY: the slot area is in bounds; zeroed, so no slot is ever
        // read uninitialised even if corrupted sequence numbers say so.
        unsafe { ptr.add(slots_off).write_bytes(0, cap * size_of::<T>()) };
        // SAFETY: initialised above; valid for 'a (contract).
        let ctrl: &'a Control = unsafe { &*ptr.cast::<Control>() };
        ctrl.header.publish(
            Kind::Mpmc,
            (size_of::<T>(), align_of::<T>()),
            config.to_words(),
            l.size(),
        );
        // SAFETY: the layout is checked and initialised.
        Ok(unsafe { Self::from_parts(ptr, cap) })
    }

    /// # Safety
    ///
    /// `ptr` starts a checked, initialised layout for `cap`, valid for `'a`.
    #[cfg(not(loom))]
    unsafe fn from_parts(ptr: *mut u8, cap: usize) -> Self {
        // Cannot fail: the layout was computed from the same capacity.
        let (seqs_off, slots_off, _) = offsets::<T>(cap).unwrap_or((0, 0, 0));
        // SAFETY: in bounds of the checked layout (as for the two below),
        // aligned, made of atomics or Pod slots accessed by copy only.
        let ctrl: &'a Control = unsafe { &*ptr.cast::<Control>() };
        // SAFETY: as above.
        let seqs =
            unsafe { core::slice::from_raw_parts(ptr.add(seqs_off).cast::<AtomicU64>(), cap) };
        // SAFETY: as above.
        let cells =
            unsafe { Cells::new(NonNull::new_unchecked(ptr.add(slots_off).cast::<Cell<T>>())) };
        Mpmc {
            ctrl,
            seqs,
            cells,
            cap: cap as u64,
            _keep: Keep,
            _life: PhantomData,
        }
    }

    /// Attaches to a queue another party initialised at `ptr`, after
    /// checking its header (magic, kind, element type, capacity, total size)
    /// against `len`.
    ///
    /// # Safety
    ///
    /// As for [`Mpmc::init_at`], except that the bytes hold a queue already.
    #[cfg(not(loom))]
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<Self, QueueError> {
        crate::place::check(ptr, len, size_of::<Control>(), align_of::<Control>())?;
        // SAFETY: aligned and large enough; Control is atomics only.
        let ctrl: &Control = unsafe { &*ptr.cast::<Control>() };
        let info = ctrl
            .header
            .check(Kind::Mpmc, (size_of::<T>(), align_of::<T>()))?;
        let config = RingConfig::from_words(info.words)
            .map_err(|_| QueueError::Corrupted("configuration words"))?;
        let l = Self::layout(config).map_err(|_| QueueError::Corrupted("capacity"))?;
        if info.total != l.size() as u64 {
            return Err(QueueError::Corrupted("total size disagrees with capacity"));
        }
        crate::place::check(ptr, len, l.size(), l.align())?;
        // SAFETY: checked layout, initialised by its creator (contract).
        Ok(unsafe { Self::from_parts(ptr, config.capacity) })
    }

    /// A new queue in bytes the caller owns (single-process use and tests).
    /// The bytes must be aligned to 128 and at least
    /// [`Mpmc::layout`]`(config).size()` long.
    #[cfg(not(loom))]
    pub fn new_in(bytes: &'a mut [u8], config: RingConfig) -> Result<Self, QueueError> {
        let len = bytes.len();
        // SAFETY: the exclusive borrow makes the bytes ours for 'a.
        unsafe { Self::init_at(bytes.as_mut_ptr(), len, config) }
    }

    /// A new queue in boxes, for loom models.
    ///
    /// # Panics
    ///
    /// If `config` is invalid.
    #[cfg(loom)]
    pub fn new_boxed(config: RingConfig) -> Mpmc<'static, T> {
        extern crate std;
        use std::boxed::Box;
        Self::layout(config).expect("invalid config");
        let cap = config.capacity;
        let ctrl = Box::new(Control::new());
        let seqs: Box<[AtomicU64]> = (0..cap).map(|i| AtomicU64::new(i as u64)).collect();
        let cells: Box<[Cell<T>]> = (0..cap).map(|_| Cell::new(T::zeroed())).collect();
        // The same self-description as in shared memory (size: the
        // layout a mapping would need).
        ctrl.header.publish(
            Kind::Mpmc,
            (size_of::<T>(), align_of::<T>()),
            config.to_words(),
            Self::layout(config).map_or(0, |l| l.size()),
        );
        let ctrl_ptr: *const Control = &*ctrl;
        let seqs_ptr: *const [AtomicU64] = &*seqs;
        let cells_ptr = NonNull::from(&cells[0]);
        let keep = Keep(std::sync::Arc::new(crate::queue::Boxed(ctrl, seqs, cells)));
        Mpmc {
            // SAFETY: the boxes live as long as `keep`, which the handle
            // (and each clone) holds.
            ctrl: unsafe { &*ctrl_ptr },
            // SAFETY: as above.
            seqs: unsafe { &*seqs_ptr },
            // SAFETY: `cap` cells, kept alive by `keep`.
            cells: unsafe { Cells::new(cells_ptr) },
            cap: cap as u64,
            _keep: keep,
            _life: PhantomData,
        }
    }

    /// How many items the queue holds when full.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Items in the queue now (a snapshot, clamped to the capacity).
    pub fn len(&self) -> usize {
        let deq = self.ctrl.dequeue.load(Ordering::Acquire);
        let enq = self.ctrl.enqueue.load(Ordering::Acquire);
        enq.saturating_sub(deq).min(self.cap) as usize
    }

    /// Whether the queue is empty now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is full now (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() == self.cap as usize
    }

    /// Closes the queue: pushes fail from now on, pops drain what is left
    /// and then fail with [`PopError::Closed`], and every sleeper on either
    /// side is woken.
    pub fn close(&self) {
        // SYNC POINT: AcqRel pairs with the Acquire loads of `closed` in
        // `try_push` and `try_pop`.
        self.ctrl.closed.swap(1, Ordering::AcqRel);
        self.ctrl.not_empty.wake_all();
        self.ctrl.not_full.wake_all();
    }

    /// Whether the queue has been closed.
    pub fn is_closed(&self) -> bool {
        self.ctrl.closed.load(Ordering::Acquire) != 0
    }

    #[inline]
    fn seq(&self, pos: u64) -> &AtomicU64 {
        &self.seqs[(pos & (self.cap - 1)) as usize]
    }

    /// Pushes `item` if there is room now.
    pub fn try_push(&self, item: T) -> Result<(), PushError> {
        if self.is_closed() {
            return Err(PushError::Closed);
        }
        let cap = self.cap as i64;
        // SYNC POINT: Acquire (here, on the reload below and on a failed
        // claim) pairs with the AcqRel claims of earlier producers, so the
        // sequence numbers they saw are the oldest we can see: a stale view
        // never looks like corruption.
        let mut pos = self.ctrl.enqueue.load(Ordering::Acquire);
        for _ in 0..MAX_RETRIES {
            let slot = self.seq(pos);
            // SYNC POINT: Acquire pairs with the Release store of
            // `pos + capacity - ...` in `try_pop`: the previous item's copy
            // out is finished before we overwrite the slot.
            let seq = slot.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as i64;
            if diff == 0 {
                match self.ctrl.enqueue.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let i = (pos & (self.cap - 1)) as usize;
                        // SAFETY: i < cap; winning the claim on `pos` while
                        // the slot read "free for pos" makes it ours alone.
                        unsafe { self.cells.write(i, item) };
                        // SYNC POINT: Release pairs with the Acquire load
                        // of the sequence in `try_pop`: the item is copied
                        // in before the slot reads full.
                        slot.store(pos.wrapping_add(1), Ordering::Release);
                        self.ctrl.not_empty.notify();
                        return Ok(());
                    }
                    Err(p) => pos = p,
                }
            } else if diff < 0 {
                // The slot still holds (or is being emptied of) the item
                // from one lap ago: full. Further back is impossible: the
                // producer that claimed `pos - capacity` saw the sequence at
                // `pos - capacity`, and its claim happens before our load.
                return if diff >= -cap {
                    Err(PushError::Full)
                } else {
                    Err(PushError::Corrupted)
                };
            } else {
                // Another producer took `pos` already; `enqueue` must have
                // moved (its claim happens before its sequence store, which
                // we just read with Acquire).
                let p = self.ctrl.enqueue.load(Ordering::Acquire);
                if p == pos {
                    return Err(PushError::Corrupted);
                }
                pos = p;
            }
        }
        Err(PushError::Corrupted)
    }

    /// Pops an item if one is ready now.
    pub fn try_pop(&self) -> Result<T, PopError> {
        let cap = self.cap as i64;
        // SYNC POINT: Acquire pairs with the AcqRel claims of earlier
        // consumers, as in `try_push`.
        let mut pos = self.ctrl.dequeue.load(Ordering::Acquire);
        let mut closed_seen = false;
        for _ in 0..MAX_RETRIES {
            let slot = self.seq(pos);
            // SYNC POINT: Acquire pairs with the Release store of `pos + 1`
            // in `try_push`: the item is fully copied in.
            let seq = slot.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos.wrapping_add(1)) as i64;
            if diff == 0 {
                match self.ctrl.dequeue.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let i = (pos & (self.cap - 1)) as usize;
                        // SAFETY: i < cap; winning the claim on `pos` while
                        // the slot read "full at pos" makes it ours alone.
                        let item = unsafe { self.cells.read(i) };
                        // SYNC POINT: Release pairs with the Acquire load of
                        // the sequence in `try_push` one lap later.
                        slot.store(pos.wrapping_add(self.cap), Ordering::Release);
                        self.ctrl.not_full.notify();
                        return Ok(item);
                    }
                    Err(p) => pos = p,
                }
            } else if diff < 0 {
                if diff < -cap {
                    return Err(PopError::Corrupted);
                }
                // Empty at `pos`. Closed and drained only if no producer
                // has claimed `pos` either (one that has will publish).
                if closed_seen || !self.is_closed() {
                    return Err(PopError::Empty);
                }
                // SYNC POINT: after the Acquire of `closed` (pairs with the
                // AcqRel swap in `close`), pushes finished before the close
                // are visible; look once more.
                closed_seen = true;
                let enq = self.ctrl.enqueue.load(Ordering::Acquire);
                if enq == pos {
                    return Err(PopError::Closed);
                }
                pos = self.ctrl.dequeue.load(Ordering::Acquire);
            } else {
                let p = self.ctrl.dequeue.load(Ordering::Acquire);
                if p == pos {
                    return Err(PopError::Corrupted);
                }
                pos = p;
            }
        }
        Err(PopError::Corrupted)
    }

    /// Pushes `item`, sleeping while the queue is full.
    #[inline]
    pub fn push(&self, item: T) -> Result<(), PushError> {
        self.push_until(item, None)
    }

    /// Pushes `item`, waiting at most `timeout` for room.
    #[inline]
    pub fn push_timeout(&self, item: T, timeout: Duration) -> Result<(), PushError> {
        match self.try_push(item) {
            Err(PushError::Full) => self.push_until(item, Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pushes `item`, waiting for room until `deadline` (forever if `None`).
    pub fn push_until(&self, item: T, deadline: Option<&Deadline>) -> Result<(), PushError> {
        match self.try_push(item) {
            Err(PushError::Full) => {}
            r => return r,
        }
        block(&self.ctrl.not_full, deadline, || {
            match self.try_push(item) {
                Err(PushError::Full) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(PushError::Timeout))
    }

    /// Pops an item, sleeping while the queue is empty.
    #[inline]
    pub fn pop(&self) -> Result<T, PopError> {
        self.pop_until(None)
    }

    /// Pops an item, waiting at most `timeout` for one.
    #[inline]
    pub fn pop_timeout(&self, timeout: Duration) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => self.pop_until(Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Pops an item, waiting until `deadline` (forever if `None`).
    pub fn pop_until(&self, deadline: Option<&Deadline>) -> Result<T, PopError> {
        match self.try_pop() {
            Err(PopError::Empty) => {}
            r => return r,
        }
        block(&self.ctrl.not_empty, deadline, || match self.try_pop() {
            Err(PopError::Empty) => None,
            r => Some(r),
        })
        .unwrap_or(Err(PopError::Timeout))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::queue::testbuf::AlignedBuf;
    use std::vec::Vec;

    fn buf<T: Pod>(cap: usize) -> AlignedBuf {
        AlignedBuf::for_layout(Mpmc::<T>::layout(RingConfig::new(cap)).unwrap())
    }

    #[test]
    fn layout_rejects_bad_capacities() {
        for cap in [0, 1, 3, 12, 1 << 33, usize::MAX] {
            assert_eq!(
                Mpmc::<u64>::layout(RingConfig::new(cap)),
                Err(LayoutError::InvalidParameters),
                "capacity {cap}"
            );
        }
        assert!(Mpmc::<[u8; 3]>::layout(RingConfig::new(2)).is_ok());
    }

    #[test]
    fn fifo_single_thread() {
        let mut b = buf::<u32>(4);
        let q = Mpmc::<u32>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        assert_eq!(q.try_pop(), Err(PopError::Empty));
        for lap in 0..5 {
            for i in 0..4 {
                q.try_push(lap * 4 + i).unwrap();
            }
            assert_eq!(q.try_push(0), Err(PushError::Full));
            assert!(q.is_full());
            for i in 0..4 {
                assert_eq!(q.try_pop(), Ok(lap * 4 + i));
            }
            assert!(q.is_empty());
        }
    }

    #[test]
    fn every_item_exactly_once() {
        let producers = 3u64;
        let consumers = 3;
        let per = if cfg!(miri) { 30 } else { 50_000 };
        let mut b = buf::<u64>(8);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(8)).unwrap();
        let mut seen: Vec<u64> = std::thread::scope(|s| {
            for p in 0..producers {
                let q = q.clone();
                s.spawn(move || {
                    for i in 0..per {
                        q.push_timeout(p << 32 | i, Duration::from_secs(60))
                            .unwrap();
                    }
                });
            }
            let hs: Vec<_> = (0..consumers)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || {
                        let mut got = Vec::new();
                        loop {
                            match q.pop() {
                                Ok(v) => got.push(v),
                                Err(PopError::Closed) => break got,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    })
                })
                .collect();
            // Close once everything has been pushed and taken.
            while q.ctrl.dequeue.load(Ordering::Relaxed) < producers * per
                && !hs.iter().any(|h| h.is_finished())
            {
                std::thread::yield_now();
            }
            q.close();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        seen.sort_unstable();
        let mut want: Vec<u64> = (0..producers)
            .flat_map(|p| (0..per).map(move |i| p << 32 | i))
            .collect();
        want.sort_unstable();
        assert_eq!(seen, want);
    }

    #[test]
    fn per_producer_order_is_kept() {
        let per = if cfg!(miri) { 50 } else { 20_000 };
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        std::thread::scope(|s| {
            for p in 0..2u64 {
                let q = q.clone();
                s.spawn(move || {
                    for i in 0..per {
                        q.push(p << 32 | i).unwrap();
                    }
                });
            }
            let mut last = [None::<u64>; 2];
            for _ in 0..2 * per {
                let v = q.pop().unwrap();
                let p = (v >> 32) as usize;
                let i = v & 0xffff_ffff;
                assert!(last[p].is_none_or(|l| l < i));
                last[p] = Some(i);
            }
        });
    }

    #[test]
    fn timeouts_and_close() {
        let mut b = buf::<u64>(2);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(2)).unwrap();
        assert_eq!(
            q.pop_timeout(Duration::from_millis(10)),
            Err(PopError::Timeout)
        );
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(
            q.push_timeout(3, Duration::from_millis(10)),
            Err(PushError::Timeout)
        );
        q.close();
        assert_eq!(q.push(3), Err(PushError::Closed));
        assert_eq!(q.pop(), Ok(1));
        assert_eq!(q.pop(), Ok(2));
        assert_eq!(q.pop(), Err(PopError::Closed));
        assert_eq!(q.ctrl.not_empty.sleepers(), 0);
        assert_eq!(q.ctrl.not_full.sleepers(), 0);
    }

    #[test]
    fn close_wakes_all_sleepers() {
        let mut b = buf::<u64>(2);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(2)).unwrap();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let q = q.clone();
                    s.spawn(move || q.pop_timeout(Duration::from_secs(30)))
                })
                .collect();
            while q.ctrl.not_empty.sleepers() < 3 {
                std::thread::yield_now();
            }
            q.close();
            for h in hs {
                assert_eq!(h.join().unwrap(), Err(PopError::Closed));
            }
        });
    }

    #[test]
    fn no_wake_when_nobody_sleeps() {
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        for i in 0..50 {
            q.push(i).unwrap();
            assert_eq!(q.pop(), Ok(i));
        }
        assert_eq!(q.ctrl.not_empty.epoch.load(Ordering::Relaxed), 0);
        assert_eq!(q.ctrl.not_full.epoch.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn attach_sees_the_same_queue() {
        let b = buf::<u64>(4);
        let (ptr, len) = (b.as_mut_ptr(), b.len());
        // SAFETY (below): b outlives the handles; only this test uses it.
        assert_eq!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<u64>::attach(ptr, len) }.err(),
            Some(QueueError::NotAQueue)
        );
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q = unsafe { Mpmc::<u64>::init_at(ptr, len, RingConfig::new(4)) }.unwrap();
        q.push(9).unwrap();
        // SAFETY: the buffer outlives every handle; only this test uses it.
        let q2 = unsafe { Mpmc::<u64>::attach(ptr, len) }.unwrap();
        assert_eq!(q2.pop(), Ok(9));
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<i32>::attach(ptr, len) },
            Err(QueueError::Incompatible(_))
        ));
        // A capacity the mapping cannot hold.
        q.ctrl.header.words[0].store(1 << 10, Ordering::Relaxed);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<u64>::attach(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
        q.ctrl.header.words[0].store(3, Ordering::Relaxed);
        assert!(matches!(
            // SAFETY: the buffer outlives every handle; only this test uses it.
            unsafe { Mpmc::<u64>::attach(ptr, len) },
            Err(QueueError::Corrupted(_))
        ));
    }

    #[test]
    fn corrupted_sequences_are_errors() {
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        q.push(1).unwrap();
        // A sequence far ahead of its position, with the position stuck.
        q.seqs[1].store(1000, Ordering::Relaxed);
        assert_eq!(q.try_push(2), Err(PushError::Corrupted));
        assert_eq!(
            q.push_timeout(2, Duration::from_millis(1)),
            Err(PushError::Corrupted)
        );
        // Far behind.
        q.seqs[0].store(u64::MAX - 100, Ordering::Relaxed);
        assert_eq!(q.try_pop(), Err(PopError::Corrupted));
        assert_eq!(q.pop(), Err(PopError::Corrupted));
        // Positions that are nonsense.
        q.ctrl.dequeue.store(u64::MAX, Ordering::Relaxed);
        assert!(q.try_pop().is_err());
        assert!(q.len() <= 4);
    }

    #[test]
    fn garbage_never_panics_or_hangs() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let rounds = if cfg!(miri) { 20 } else { 5000 };
        let mut b = buf::<u64>(4);
        let q = Mpmc::<u64>::new_in(b.bytes(), RingConfig::new(4)).unwrap();
        for _ in 0..rounds {
            let r = rand();
            let small = |x: u64| x % 16;
            let pick = |x: u64, y: u64| if r & 1 == 0 { small(x) } else { y };
            q.ctrl.enqueue.store(pick(r >> 8, r), Ordering::Relaxed);
            q.ctrl
                .dequeue
                .store(pick(r >> 16, rand()), Ordering::Relaxed);
            for s in q.seqs {
                s.store(pick(rand(), rand()), Ordering::Relaxed);
            }
            let _ = q.try_push(1);
            let _ = q.try_pop();
            let _ = q.pop_timeout(Duration::ZERO);
            let _ = q.push_timeout(1, Duration::ZERO);
        }
    }
}
