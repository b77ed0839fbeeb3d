//! A [`Pool`](super::Pool)'s optional status segment
//! ([`PoolBuilder::status_name`](super::PoolBuilder::status_name)): a
//! named segment of kind [`Kind::POOL_STATUS`] that says, for tools
//! (`shmipc ls`, `shmipc inspect`), which processes are the pool's
//! workers and what each is doing. The pool's own queues are anonymous, so
//! without it a tool sees nothing of the pool.
//!
//! Layout of the object (all words `u64`, native-endian), `n` workers:
//!
//! | offset | word |
//! |---|---|
//! | 0 | `n` (also the header's first parameter) |
//! | 8 … 63 | zero |
//! | 64 + 32·i | worker `i`'s pid (0: none started yet) |
//! | 64 + 32·i + 8 | its state: 0 starting, 1 idle, 2 busy, 3 exited |
//! | 64 + 32·i + 16 | its [`Token`](shmipc_core::Token) among this segment's peers (0: not yet claimed) |
//! | 64 + 32·i + 24 | how many workers have held entry `i` (1 for the first, more after replacements) |
//!
//! The supervisor writes pid, state and count; each forked worker claims a
//! slot of the segment's peer table (the mapping it inherited) and writes
//! its token, so a tool can judge it alive or dead by evidence, as it
//! judges any peer. A spawned worker
//! ([`TypedPoolBuilder::spawn`](crate::TypedPoolBuilder::spawn)) is started
//! from a fresh executable without the mapping: its token stays 0 and a
//! tool cannot judge it. The words are a report for people, written with
//! relaxed stores: nothing synchronises on them.

use shmipc_core::sync::{AtomicU64, Ordering};
use shmipc_core::Peers;

use crate::error::Result;
use crate::memory::{Kind, Mapping, ObjectLayout, Options, DEFAULT_PEER_SLOTS};

/// The most workers an entry table may list (a pool's most processes).
pub(crate) const MAX_WORKERS: u64 = super::pool::MAX_PROCESSES as u64;
/// The bytes before the first worker entry.
pub const STATUS_HEADER: usize = 64;
/// The bytes of one worker entry.
pub const STATUS_ENTRY: usize = 32;

/// A worker entry's state word.
pub(crate) const STARTING: u64 = 0;
/// Running no task.
pub(crate) const IDLE: u64 = 1;
/// Holding a task (running one, or with one queued).
pub(crate) const BUSY: u64 = 2;
/// Ended (until a replacement takes the entry over).
pub(crate) const EXITED: u64 = 3;

/// The status segment, unlinked when it is dropped (with the pool).
pub(crate) struct PoolStatus {
    memory: Mapping,
    name: String,
    workers: usize,
}

impl PoolStatus {
    /// Creates the status segment `name` for `workers` workers.
    pub(crate) fn create(name: &str, workers: usize) -> Result<PoolStatus> {
        let size = STATUS_HEADER + STATUS_ENTRY * workers;
        let layout = ObjectLayout {
            kind: Kind::POOL_STATUS,
            size: size as u64,
            align: 8,
            params: [workers as u64, 0, 0, 0],
        };
        // Room for every worker and its replacements' slots to be reused.
        let slots = u32::try_from(2 * workers + 16)
            .unwrap_or(u32::MAX)
            .clamp(DEFAULT_PEER_SLOTS, shmipc_core::Token::MAX_SLOTS);
        let opts = Options::new().peer_slots(slots);
        let memory = Mapping::create(name, &layout, &opts, |ptr, len| {
            if len >= 8 {
                // SAFETY: `ptr` is valid for `len` zeroed bytes, 8-aligned,
                // and no one else can see them yet.
                unsafe { ptr.cast::<u64>().write(workers as u64) };
            }
            Ok(())
        })?;
        let name = memory.name().unwrap_or(name).to_owned();
        Ok(PoolStatus {
            memory,
            name,
            workers,
        })
    }

    /// Word `w` of worker `i`'s entry, if `i` is a worker.
    fn word(&self, i: usize, w: usize) -> Option<&AtomicU64> {
        if i >= self.workers || w >= STATUS_ENTRY / 8 {
            return None;
        }
        let off = STATUS_HEADER + STATUS_ENTRY * i + 8 * w;
        // SAFETY: `off + 8` lies inside the object (checked just above
        // against the size we created it with), 8-aligned (the object is,
        // and so is `off`); the mapping lives as long as `self`; every bit
        // pattern is a valid AtomicU64.
        Some(unsafe { &*self.memory.object_ptr().add(off).cast::<AtomicU64>() })
    }

    /// Before worker `i`'s process starts: clears the entry's pid and
    /// token (a predecessor's), counts one more holder, state "starting".
    pub(crate) fn starting(&self, i: usize) {
        for (w, v) in [(0, 0), (1, STARTING), (2, 0)] {
            if let Some(word) = self.word(i, w) {
                word.store(v, Ordering::Relaxed);
            }
        }
        if let Some(word) = self.word(i, 3) {
            word.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Worker `i`'s process started as `pid`.
    pub(crate) fn started(&self, i: usize, pid: u32) {
        if let Some(word) = self.word(i, 0) {
            word.store(u64::from(pid), Ordering::Relaxed);
        }
        self.set_state(i, IDLE);
    }

    /// Worker `i`'s state word (`IDLE`, `BUSY`, `EXITED`).
    pub(crate) fn set_state(&self, i: usize, state: u64) {
        if let Some(word) = self.word(i, 1) {
            // Compared first: the supervisor calls this on every turn of
            // its loop, and a store would dirty the line each time.
            if word.load(Ordering::Relaxed) != state {
                word.store(state, Ordering::Relaxed);
            }
        }
    }

    /// In worker `i`'s own (forked) process: claims a slot of the peer
    /// table and records its token in the entry.
    pub(crate) fn register_self(&self, i: usize) {
        let token = self.memory.presence().me();
        if let Some(word) = self.word(i, 2) {
            word.store(u64::from(token.raw()), Ordering::Relaxed);
        }
    }
}

impl Drop for PoolStatus {
    fn drop(&mut self) {
        // Best effort: someone may have unlinked it already.
        let _ = crate::memory::unlink(&self.name);
    }
}
