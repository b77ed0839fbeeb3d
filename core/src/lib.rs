//! # shmipc-core
//!
//! The algorithms of [shmipc](https://docs.rs/shmipc), free of files, names
//! and processes: `#![no_std]`, no allocation, no system call on a fast path.
//!
//! Every primitive is a `#[repr(C)]` struct of atomics that can live in any
//! suitably aligned bytes — in particular in a shared-memory mapping that
//! several processes use at once:
//!
//! | type | what it is |
//! |---|---|
//! | [`Lock`] | a mutex whose word holds the owner's thread id (robust-futex format) |
//! | [`RLock`] | a re-entrant [`Lock`]: the owning thread takes it again, others wait for its last release |
//! | [`Semaphore`] | a counting semaphore, optionally bounded |
//! | [`Event`] | a manual-reset event, like Python's `Event` |
//! | [`Condition`] | a condition variable with its own lock, like Python's `Condition` |
//! | [`Barrier`] | an n-party barrier, like Python's `Barrier` |
//! | [`spsc::Spsc`] | a single-producer single-consumer ring of `Pod` items, with batch copies |
//! | [`mpmc::Mpmc`] | Vyukov's bounded multi-producer multi-consumer queue of `Pod` items |
//! | [`bytes::ByteQueue`] | variable-length byte messages, many producers and consumers, zero-copy reserve/commit |
//!
//! The queues live in caller-provided bytes of the size
//! `layout(config)` returns: `init_at` writes a fresh queue, `attach` checks
//! one another process wrote (magic, kind, element type, geometry against the
//! mapping's length), and `new_in` does the former over `&mut [u8]` for
//! single-process use. Their blocking calls spin briefly, then sleep on a
//! futex, and make no system call when nobody sleeps (see [`queue`]).
//!
//! Waiting goes through one module, [`futex`]: process-shared futexes with
//! absolute `CLOCK_MONOTONIC` deadlines, after a brief spin.
//!
//! Who holds what is recorded as a [`Token`], a process's identity among
//! the peers of one mapping, and judged by the mapping's [`Peers`] (see
//! [`peers`]): a holder is declared dead only on evidence that holds across
//! pid namespaces and pid reuse, never because a pid looks unfamiliar.
//!
//! Bytes that another process can write are treated as hostile: every state
//! word is validated before it is acted on, and a value that makes no sense
//! gives an error or a timeout, never undefined behaviour.
//!
//! ```
//! use shmipc_core::{Lock, SharedObject};
//!
//! // Any 8-byte aligned 16 bytes can hold a Lock; zeroed bytes are unlocked.
//! let mut bytes = [0u64; 2];
//! let lock = Lock::from_bytes_mut(bytemuck::cast_slice_mut(&mut bytes)).unwrap();
//! let guard = lock.lock().unwrap();
//! assert!(lock.try_lock().is_err());
//! drop(guard);
//! assert!(!lock.is_locked());
//! ```
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(any(test, loom))]
extern crate std;

#[doc(hidden)]
pub mod fault;
pub mod peers;
pub mod place;
pub mod queue;
pub mod sync;
mod sys;
#[cfg(not(loom))]
pub mod waitable;

// The files of the queues and the semaphore name these by their old
// paths until they move into their folders.
pub(crate) use sync::lock;
pub(crate) use sys::{membarrier, tid};

// The queues live in `queue/`, the semaphore in `sync/` and the futex
// calls in `sys/`; these are the paths users know them by.
pub use queue::{bytes, mpmc, spsc};
pub use sync::semaphore;
pub use sys::futex;
#[cfg(not(loom))]
pub use sys::waitv;

pub use bytes::{
    ByteQueue, BytesConfig, ReadGrant, SoleError, SoleReadGrant, SoleReceiver, SoleSender,
    WriteGrant,
};
pub use futex::Deadline;
pub use mpmc::Mpmc;
pub use peers::{End, Fate, Peers, Token};
pub use place::{LayoutError, Rule, SharedObject};
pub use queue::{
    PopError, PushError, QueueError, RecvError, RingConfig, RingState, SendError, WaitStrategy,
};
pub use semaphore::{Semaphore, SemaphoreError};
pub use spsc::Spsc;
pub use sync::barrier::{Barrier, BarrierError};
pub use sync::condition::{CondGuard, Condition};
pub use sync::event::Event;
pub use sync::lock::{Lock, LockError, LockGuard, Owner, OWNER_CHECK_INTERVAL};
pub use sync::rlock::{RLock, RLockGuard};
pub use sync::tasks::{TaskCount, TaskCountError};
