//! # shmipc
//!
//! Python's `multiprocessing` toolkit for Rust processes, meeting in named
//! POSIX shared memory instead of a manager process, pipes and pickles.
//!
//! | type | what it is |
//! |---|---|
//! | [`Shared<T>`] | a [`Lock`], [`Semaphore`], [`Event`], [`AtomicU32`] or [`AtomicU64`] in a named segment of its own |
//! | [`Anon<T>`] | the same in an anonymous shared mapping, for forked children |
//! | [`Queue<T>`] | a multi-producer multi-consumer queue of `Pod` items, like `multiprocessing.Queue` |
//! | [`SpscQueue<T>`] | a single-producer single-consumer ring whose two roles processes claim |
//! | [`ByteQueue`] | variable-length byte messages, many producers and consumers |
//! | [`Pipe`] | a duplex message channel with two ends, like `multiprocessing.Pipe` |
//! | [`Segment`] | raw named bytes, like `multiprocessing.shared_memory.SharedMemory` |
//! | [`fork`], [`spawn`], [`Child`] | starting, joining and stopping processes |
//! | [`Process`] | a named child, forked or spawned, optionally a daemon that dies with its parent |
//! | [`Pool`] | N worker processes running tasks, surviving a worker's death, like `multiprocessing.Pool` |
//! | [`Value<T>`], [`Array<T>`] | `Pod` data under a lock of its own, like `multiprocessing.Value` / `Array` |
//! | [`SharedDict`], [`SharedList`] | a byte-key byte-value map and an append-only list for many processes |
//! | [`Condition`], [`Barrier`] | a condition variable with its lock, and an n-party barrier |
//! | [`Unlinker`] | unique names that are unlinked when their owner is done |
//! | [`mapping`] | the validated-header layer the others are built on, for new kinds |
//!
//! Every segment starts with a 128-byte header (see [`header`]) that the
//! creator writes before the segment gets its name, and every opener
//! validates: opening a segment of another kind, another layout version, or
//! one shmipc did not make is an [`Error`], never undefined behaviour.
//! Names are never unlinked behind your back: call [`unlink`] (or
//! `Shared::unlink`) when the segment's work is done.
//!
//! ```
//! use shmipc::{fork, Lock, Shared};
//! use std::time::Duration;
//!
//! let name = format!("/shmipc-doc-lock-{}", std::process::id());
//! let lock = Shared::<Lock>::create(&name, ())?;
//!
//! // Another process opens the same lock by name.
//! let mut child = fork(|| {
//!     let lock = Shared::<Lock>::open(&name).expect("open");
//!     let _guard = lock.lock().expect("lock");
//!     0
//! })?;
//! assert!(child.join_timeout(Duration::from_secs(10))?.unwrap().success());
//!
//! let guard = lock.lock()?;
//! drop(guard);
//! shmipc::unlink(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!("shmipc needs Linux (futexes, /dev/shm, O_TMPFILE)");

mod dict;
mod error;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
mod fault;
pub mod header;
pub mod mapping;
mod name;
mod object;
mod options;
mod pipe;
mod pool;
mod presence;
pub mod process;
mod process_builder;
mod queue;
mod region;
mod roles;
mod segment;
mod spsc;
mod unlinker;
mod value;

pub use dict::{DictConfig, DictError, Entry, SharedDict, SharedList};
pub use error::{Error, Result};
pub use header::Kind;
pub use name::MAX_LEN as MAX_NAME_LEN;
pub use object::{Anon, Shared, ShmObject};
pub use options::Options;
pub use pipe::{Pipe, PipeEnd, Side};
pub use pool::{AsyncResult, ImapUnordered, Pool, PoolBuilder, TaskError, TaskFn};
pub use process::{fork, spawn, Child, ExitStatus};
pub use process_builder::{Process, ProcessHandle, ORPHANED_EXIT_CODE};
pub use queue::{ByteQueue, Queue};
pub use segment::Segment;
pub use spsc::{SpscConsumer, SpscProducer, SpscQueue};
pub use unlinker::Unlinker;
pub use value::{Array, ArrayError, Value, ValueError};

pub use shmipc_core::semaphore::SemaphoreConfig;
pub use shmipc_core::sync;
pub use shmipc_core::sync::{AtomicU32, AtomicU64};
pub use shmipc_core::{
    Barrier, BarrierError, BytesConfig, CondGuard, Condition, Deadline, Event, LayoutError, Lock,
    LockError, LockGuard, PopError, PushError, ReadGrant, RecvError, RingConfig, Semaphore,
    SemaphoreError, SendError, SharedObject, WriteGrant,
};

/// Removes the segment name `name` (with or without its leading slash).
///
/// Processes that have the segment mapped keep using it; its memory is
/// freed when the last of them unmaps it. [`Error::NotFound`] if there is
/// no such name.
pub fn unlink(name: &str) -> Result<()> {
    mapping::unlink(name)
}

// The README's examples run as doctests, so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
