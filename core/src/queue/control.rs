//! The self-description every queue control block starts with, and the one
//! function that checks it: [`attach`], where bytes another process wrote
//! (hostile until proven otherwise) become a queue.

#[cfg(not(loom))]
use core::alloc::Layout;

use super::QueueError;
#[cfg(not(loom))]
use crate::place::LayoutError;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// The first word of every queue control block: `b"SHMIPCQ1"`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMIPCQ1");
/// The layout version of the control blocks in this file. 2: MPMC slots
/// carry an owner word next to their sequence number, byte-queue records
/// a 16-byte header (state word and owner word). 3: `CLOSED` lives in the
/// word a claim must change (MPMC `enqueue`, byte-queue `tail`, the SPSC
/// ring's `not_empty` sleeper word) and the sleeper counts have
/// generations. 4: a byte queue's close is a handshake with light sole
/// senders (`closing`, `light`, `busy` on the writers' line), which a
/// close by an older build (one `fetch_or`) would break. 5: an MPMC slot is
/// one record (sequence number, owner word, item), not an entry in each of
/// two arrays.
pub(crate) const VERSION: u32 = 5;
/// Positions (items or bytes ever passed through a queue) stay below this;
/// a larger one read from shared memory is corruption. At 2^62 there is
/// room to add any capacity without overflow, and no real queue gets there.
pub(crate) const MAX_POS: u64 = 1 << 62;

/// Which queue a control block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum QueueKind {
    Spsc = 1,
    Mpmc = 2,
    Bytes = 3,
}

/// The self-description at the start of every queue control block. The
/// creator writes `magic` last (Release); an attacher reads it first
/// (Acquire) and then checks every other field against what it expects.
#[repr(C)]
pub(crate) struct ControlHeader {
    magic: AtomicU64,
    kind: AtomicU32,
    version: AtomicU32,
    elem_size: AtomicU32,
    elem_align: AtomicU32,
    pub(crate) words: [AtomicU64; 4],
    pub(crate) total: AtomicU64,
}

/// What an attacher found in a header that passed its checks.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) struct HeaderInfo {
    pub(crate) words: [u64; 4],
    pub(crate) total: u64,
}

impl ControlHeader {
    /// Under loom only: elsewhere the block is zeroed in place (zero bytes are
    /// this value; see `init_at`).
    #[cfg(loom)]
    pub(crate) fn new() -> ControlHeader {
        ControlHeader {
            magic: AtomicU64::new(0),
            kind: AtomicU32::new(0),
            version: AtomicU32::new(0),
            elem_size: AtomicU32::new(0),
            elem_align: AtomicU32::new(0),
            words: [
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
            ],
            total: AtomicU64::new(0),
        }
    }

    /// Fills in the description; `magic` last.
    pub(crate) fn publish(
        &self,
        kind: QueueKind,
        elem: (usize, usize),
        words: [u64; 4],
        total: usize,
    ) {
        self.kind.store(kind as u32, Ordering::Relaxed);
        self.version.store(VERSION, Ordering::Relaxed);
        self.elem_size.store(elem.0 as u32, Ordering::Relaxed);
        self.elem_align.store(elem.1 as u32, Ordering::Relaxed);
        for (w, v) in self.words.iter().zip(words) {
            w.store(v, Ordering::Relaxed);
        }
        self.total.store(total as u64, Ordering::Relaxed);
        // SYNC POINT: Release pairs with the Acquire load of `magic` in
        // `ControlHeader::check`: whoever sees the magic sees the whole queue
        // initialised.
        self.magic.store(MAGIC, Ordering::Release);
    }

    #[cfg_attr(loom, allow(dead_code))]
    /// Checks magic, kind, version and element type; returns the config
    /// words and total size for the caller to validate further.
    pub(crate) fn check(
        &self,
        kind: QueueKind,
        elem: (usize, usize),
    ) -> Result<HeaderInfo, QueueError> {
        // SYNC POINT: Acquire pairs with the Release store in `publish`.
        if self.magic.load(Ordering::Acquire) != MAGIC {
            return Err(QueueError::NotAQueue);
        }
        if self.version.load(Ordering::Relaxed) != VERSION {
            return Err(QueueError::Incompatible("layout version differs"));
        }
        if self.kind.load(Ordering::Relaxed) != kind as u32 {
            return Err(QueueError::Incompatible("a different kind of queue"));
        }
        if self.elem_size.load(Ordering::Relaxed) as usize != elem.0
            || self.elem_align.load(Ordering::Relaxed) as usize != elem.1
        {
            return Err(QueueError::Incompatible(
                "element size or alignment differs",
            ));
        }
        let words = core::array::from_fn(|i| self.words[i].load(Ordering::Relaxed));
        Ok(HeaderInfo {
            words,
            total: self.total.load(Ordering::Relaxed),
        })
    }
}

/// Whether the control block at the start of `control` (a copy of a
/// queue's bytes) says it is a queue of `kind` in this build's layout
/// ([`VERSION`]): only then may a tool locate what lies past the control
/// block by this build's arithmetic. Decodes words only.
#[cfg(not(loom))]
pub(crate) fn is_current(control: &[u8], kind: QueueKind) -> bool {
    use core::mem::offset_of;
    let u32_at = |off: usize| {
        control
            .get(off..off + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    super::word_at(control, offset_of!(ControlHeader, magic)) == Some(MAGIC)
        && u32_at(offset_of!(ControlHeader, kind)) == Some(kind as u32)
        && u32_at(offset_of!(ControlHeader, version)) == Some(VERSION)
}

/// Finds the queue another party wrote at `ptr`, checking everything a
/// hostile or mistaken writer could have got wrong before the caller
/// touches it: that `len` bytes can hold a `C` at an aligned address; the
/// header's magic, version, kind and element type
/// ([`ControlHeader::check`]); that its configuration words decode (with
/// `decode`); that the layout they call for (`layout`) is exactly the
/// total the header records; and that the whole layout fits in `len`.
/// Every queue attaches through here. Returns the control block and its
/// configuration; the caller checks its own positions.
///
/// # Safety
///
/// `ptr` is valid for reads and writes of `len` bytes for `'a`, and `C` is
/// made of atomics only (any bytes are a valid value), with the header
/// `header` returns inside it.
#[cfg(not(loom))]
pub(crate) unsafe fn attach<'a, C, G: Copy>(
    ptr: *mut u8,
    len: usize,
    header: fn(&C) -> &ControlHeader,
    kind: QueueKind,
    elem: (usize, usize),
    decode: fn([u64; 4]) -> Result<G, LayoutError>,
    layout: fn(G) -> Result<Layout, LayoutError>,
) -> Result<(&'a C, G), QueueError> {
    crate::place::check(ptr, len, size_of::<C>(), align_of::<C>())?;
    // SAFETY: aligned and large enough for a `C`, which is made of atomics
    // only (contract), so any bytes are a valid value; valid for 'a.
    let ctrl: &'a C = unsafe { &*ptr.cast::<C>() };
    let info = header(ctrl).check(kind, elem)?;
    let config = decode(info.words).map_err(|_| QueueError::Corrupted("configuration words"))?;
    // A configuration that decodes but has no layout: the slot queues'
    // capacity, or the byte queue's geometry (capacity and message size).
    let what = match kind {
        QueueKind::Bytes => "geometry",
        QueueKind::Spsc | QueueKind::Mpmc => "capacity",
    };
    let l = layout(config).map_err(|_| QueueError::Corrupted(what))?;
    if info.total != l.size() as u64 {
        return Err(QueueError::Corrupted("total size disagrees with capacity"));
    }
    crate::place::check(ptr, len, l.size(), l.align())?;
    Ok((ctrl, config))
}
