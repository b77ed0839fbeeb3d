//! The 128-byte header at the start of every shmipc segment (layout
//! version 2).
//!
//! | offset | field | type | meaning |
//! |---|---|---|---|
//! | 0 | `magic` | u64 | [`MAGIC`]: the bytes `\x7fSHMIPC\0` |
//! | 8 | `version` | u32 | [`VERSION`] |
//! | 12 | `state` | u32 | [`INITIALIZING`] or [`READY`]; a futex word |
//! | 16 | `creator_pid` | u32 | the process that created the segment |
//! | 20 | `kind` | u32 | what the object is ([`Kind`]) |
//! | 24 | `total_size` | u64 | header + object + peer table |
//! | 32 | `object_offset` | u64 | where the object starts: [`HEADER_SIZE`] |
//! | 40 | `object_size` | u64 | the object's bytes |
//! | 48 | `object_align` | u64 | the object's alignment: a power of two ≤ [`MAX_ALIGN`] |
//! | 56 | `params` | [u64; 4] | kind-specific (a capacity, say); zero for fixed-size kinds |
//! | 88 | `peers_offset` | u64 | where the peer table starts: the object's end rounded up to 128 |
//! | 96 | `peer_slots` | u32 | the peer table's slots (1 to [`Token::MAX_SLOTS`](shmipc_core::Token::MAX_SLOTS)), 32 bytes each |
//! | 100 | `tasks` | u32 | a JoinableQueue's unfinished tasks; zero elsewhere |
//! | 104 | `type_hash` | u64 | a typed segment's message type: the hash of its name ([`Fingerprint`](crate::typed::Fingerprint)); zero for the others |
//! | 112 | `type_layout` | u64 | that type's `size \| align << 32`; zero for untyped segments |
//! | 120 | `messages` | u64 | reserved, zero (a typed queue counted its `qsize` here before the counts moved to its byte queue's writer and reader lines) |
//!
//! After the object comes the segment's *peer table*
//! ([`shmipc_core::peers`]): one 32-byte slot per process attached to the
//! segment, each tied to a byte-range lock on the segment's file that the
//! kernel drops when the process dies. It is what owner tokens in lock
//! words, queue claims and role blocks name, and what a waiter asks
//! whether a holder is dead.
//!
//! All integers are native-endian (every process on one machine shares the
//! byte order). The header lives in memory that any process with access can
//! write at any time, so it is only ever touched through atomics, and an
//! opener reads it once into a [`HeaderSnapshot`] that it then validates.

use std::fmt;

use shmipc_core::sync::{AtomicU32, AtomicU64, Ordering};

/// The magic number at offset 0: `u64::from_le_bytes(*b"\x7fSHMIPC\0")`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"\x7fSHMIPC\0");
/// The header layout version this build writes and understands. 2: a peer
/// table follows the object, and owners are recorded as peer tokens.
pub const VERSION: u32 = 2;
/// The size of the header; the object starts right after it.
pub const HEADER_SIZE: u64 = 128;
/// The largest object alignment a segment can have (the object starts at
/// offset [`HEADER_SIZE`] of a page-aligned mapping).
pub const MAX_ALIGN: u64 = HEADER_SIZE;
/// `state`: the creator is still writing the header and object.
pub const INITIALIZING: u32 = 1;
/// `state`: the segment is ready for use.
pub const READY: u32 = 2;

/// What a segment holds.
///
/// An open set: the constants below are the kinds this crate defines, and
/// higher layers add their own with [`Kind::new`]. Values below 64 are
/// reserved for this crate's fixed-size objects, 64–127 for its queues and
/// 128–191 for its shared data and synchronisation types (`Value`, `Array`,
/// `SharedDict`, `SharedList`, `Condition`, `Barrier`) and a `Pool`'s
/// status; use 192 and above
/// for kinds of your own.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kind(u32);

impl Kind {
    /// Raw bytes ([`Segment`](crate::Segment)).
    pub const BYTES: Kind = Kind(1);
    /// A [`Lock`](crate::Lock).
    pub const LOCK: Kind = Kind(2);
    /// A [`Semaphore`](crate::Semaphore).
    pub const SEMAPHORE: Kind = Kind(3);
    /// An [`Event`](crate::Event).
    pub const EVENT: Kind = Kind(4);
    /// An [`AtomicU32`].
    pub const ATOMIC_U32: Kind = Kind(5);
    /// An [`AtomicU64`].
    pub const ATOMIC_U64: Kind = Kind(6);
    /// An [`RLock`](crate::RLock): a re-entrant lock.
    pub const RLOCK: Kind = Kind(7);
    /// A [`Queue<T>`](crate::Queue): a multi-producer multi-consumer queue
    /// of `Pod` items. The first kind of the queue range (64 and above).
    pub const QUEUE: Kind = Kind(64);
    /// An [`SpscQueue<T>`](crate::SpscQueue): a single-producer
    /// single-consumer ring whose two roles are claimed.
    pub const SPSC_QUEUE: Kind = Kind(65);
    /// A [`ByteQueue`](crate::ByteQueue) of variable-length messages.
    pub const BYTE_QUEUE: Kind = Kind(66);
    /// A [`Pipe`](crate::Pipe): two byte rings and two claimed ends.
    pub const PIPE: Kind = Kind(67);
    /// A [`Value<T>`](crate::Value): one `Pod` value under a lock. The
    /// first kind of the shared-data range (128 and above).
    pub const VALUE: Kind = Kind(128);
    /// An [`Array<T>`](crate::Array): a fixed-length array of `Pod` values
    /// under one lock.
    pub const ARRAY: Kind = Kind(129);
    /// A [`SharedDict`](crate::SharedDict): a byte-key, byte-value map.
    pub const DICT: Kind = Kind(130);
    /// A [`SharedList`](crate::SharedList): an append-only list of byte
    /// items.
    pub const LIST: Kind = Kind(131);
    /// A [`Condition`](crate::Condition) variable with its own lock.
    pub const CONDITION: Kind = Kind(132);
    /// A [`Barrier`](crate::Barrier) for a fixed number of parties.
    pub const BARRIER: Kind = Kind(133);
    /// A [`Pool`](crate::Pool)'s status: its workers' pids and states
    /// ([`PoolBuilder::status_name`](crate::PoolBuilder::status_name)).
    pub const POOL_STATUS: Kind = Kind(134);

    /// The kind with raw value `raw`.
    pub const fn new(raw: u32) -> Kind {
        Kind(raw)
    }

    /// The raw value stored in the header.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// A human name for the kinds this crate knows.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Kind::BYTES => "raw bytes",
            Kind::LOCK => "a Lock",
            Kind::SEMAPHORE => "a Semaphore",
            Kind::EVENT => "an Event",
            Kind::ATOMIC_U32 => "an AtomicU32",
            Kind::ATOMIC_U64 => "an AtomicU64",
            Kind::RLOCK => "an RLock",
            Kind::QUEUE => "a Queue",
            Kind::SPSC_QUEUE => "an SpscQueue",
            Kind::BYTE_QUEUE => "a ByteQueue",
            Kind::PIPE => "a Pipe",
            Kind::VALUE => "a Value",
            Kind::ARRAY => "an Array",
            Kind::DICT => "a SharedDict",
            Kind::LIST => "a SharedList",
            Kind::POOL_STATUS => "a PoolStatus",
            Kind::CONDITION => "a Condition",
            Kind::BARRIER => "a Barrier",
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "an object of kind {}", self.0),
        }
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({}: {self})", self.0)
    }
}

/// The header as it lies in shared memory. Atomics only: a peer may write
/// any field at any time.
#[repr(C)]
pub(crate) struct RawHeader {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    pub(crate) state: AtomicU32,
    pub(crate) creator_pid: AtomicU32,
    pub(crate) kind: AtomicU32,
    pub(crate) total_size: AtomicU64,
    pub(crate) object_offset: AtomicU64,
    pub(crate) object_size: AtomicU64,
    pub(crate) object_align: AtomicU64,
    pub(crate) params: [AtomicU64; 4],
    pub(crate) peers_offset: AtomicU64,
    pub(crate) peer_slots: AtomicU32,
    pub(crate) tasks: AtomicU32,
    pub(crate) type_hash: AtomicU64,
    pub(crate) type_layout: AtomicU64,
    pub(crate) messages: AtomicU64,
}

const _: () = {
    assert!(size_of::<RawHeader>() == HEADER_SIZE as usize);
    assert!(align_of::<RawHeader>() == 8);
    assert!(std::mem::offset_of!(RawHeader, version) == 8);
    assert!(std::mem::offset_of!(RawHeader, state) == 12);
    assert!(std::mem::offset_of!(RawHeader, creator_pid) == 16);
    assert!(std::mem::offset_of!(RawHeader, kind) == 20);
    assert!(std::mem::offset_of!(RawHeader, total_size) == 24);
    assert!(std::mem::offset_of!(RawHeader, object_offset) == 32);
    assert!(std::mem::offset_of!(RawHeader, object_size) == 40);
    assert!(std::mem::offset_of!(RawHeader, object_align) == 48);
    assert!(std::mem::offset_of!(RawHeader, params) == 56);
    assert!(std::mem::offset_of!(RawHeader, peers_offset) == 88);
    assert!(std::mem::offset_of!(RawHeader, peer_slots) == 96);
    assert!(std::mem::offset_of!(RawHeader, type_hash) == 104);
    assert!(std::mem::offset_of!(RawHeader, type_layout) == 112);
    assert!(std::mem::offset_of!(RawHeader, messages) == 120);
};

/// A copy of a segment's header, read once after the segment was seen
/// [`READY`]. Nothing in it has been trusted yet except what
/// [`Mapping::open`](crate::memory::Mapping::open) documents it checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSnapshot {
    /// The magic number.
    pub magic: u64,
    /// The layout version.
    pub version: u32,
    /// The initialisation state.
    pub state: u32,
    /// The creator's process id.
    pub creator_pid: u32,
    /// The raw kind.
    pub kind: u32,
    /// The size of header and object together.
    pub total_size: u64,
    /// Where the object starts.
    pub object_offset: u64,
    /// The object's size.
    pub object_size: u64,
    /// The object's alignment.
    pub object_align: u64,
    /// Kind-specific parameters.
    pub params: [u64; 4],
    /// Where the peer table starts.
    pub peers_offset: u64,
    /// The peer table's number of slots.
    pub peer_slots: u32,
    /// A typed segment's message type name hash (zero if untyped).
    pub type_hash: u64,
    /// That type's `size | align << 32` (zero if untyped).
    pub type_layout: u64,
}

impl RawHeader {
    /// Copies every field (Relaxed: the caller ordered itself after the
    /// creator with an Acquire load of `state` first).
    pub(crate) fn snapshot(&self) -> HeaderSnapshot {
        HeaderSnapshot {
            magic: self.magic.load(Ordering::Relaxed),
            version: self.version.load(Ordering::Relaxed),
            state: self.state.load(Ordering::Relaxed),
            creator_pid: self.creator_pid.load(Ordering::Relaxed),
            kind: self.kind.load(Ordering::Relaxed),
            total_size: self.total_size.load(Ordering::Relaxed),
            object_offset: self.object_offset.load(Ordering::Relaxed),
            object_size: self.object_size.load(Ordering::Relaxed),
            object_align: self.object_align.load(Ordering::Relaxed),
            params: [
                self.params[0].load(Ordering::Relaxed),
                self.params[1].load(Ordering::Relaxed),
                self.params[2].load(Ordering::Relaxed),
                self.params[3].load(Ordering::Relaxed),
            ],
            peers_offset: self.peers_offset.load(Ordering::Relaxed),
            peer_slots: self.peer_slots.load(Ordering::Relaxed),
            type_hash: self.type_hash.load(Ordering::Relaxed),
            type_layout: self.type_layout.load(Ordering::Relaxed),
        }
    }
}

impl HeaderSnapshot {
    /// Decodes a header from a copy of its 128 bytes (native-endian, as
    /// every process on the machine writes it). Every byte string is some
    /// snapshot; [`validate_header`](crate::memory::validate_header) says
    /// whether it is a valid one.
    pub fn from_bytes(bytes: &[u8; HEADER_SIZE as usize]) -> HeaderSnapshot {
        let u32_at = |off: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[off..off + 4]);
            u32::from_ne_bytes(w)
        };
        let u64_at = |off: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[off..off + 8]);
            u64::from_ne_bytes(w)
        };
        HeaderSnapshot {
            magic: u64_at(0),
            version: u32_at(8),
            state: u32_at(12),
            creator_pid: u32_at(16),
            kind: u32_at(20),
            total_size: u64_at(24),
            object_offset: u64_at(32),
            object_size: u64_at(40),
            object_align: u64_at(48),
            params: [u64_at(56), u64_at(64), u64_at(72), u64_at(80)],
            peers_offset: u64_at(88),
            peer_slots: u32_at(96),
            type_hash: u64_at(104),
            type_layout: u64_at(112),
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        Kind(self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_is_the_documented_bytes() {
        assert_eq!(&MAGIC.to_le_bytes(), b"\x7fSHMIPC\0");
    }

    #[test]
    fn kinds_have_names() {
        assert_eq!(Kind::LOCK.to_string(), "a Lock");
        assert_eq!(Kind::new(6), Kind::ATOMIC_U64);
        assert_eq!(Kind::new(1000).to_string(), "an object of kind 1000");
        assert_eq!(Kind::new(1000).name(), None);
        assert_eq!(format!("{:?}", Kind::EVENT), "Kind(4: an Event)");
    }
}
