//! # shmipc
//!
//! Python's `multiprocessing` toolkit for Rust processes, meeting in named
//! POSIX shared memory instead of a manager process, pipes and pickles.
//!
//! | type | what it is |
//! |---|---|
//! | [`Shared<T>`] | a [`Lock`], [`RLock`], [`Semaphore`], [`Event`], [`Condition`], [`Barrier`], [`AtomicU32`] or [`AtomicU64`] in shared memory of its own |
//! | [`Queue<T>`] | a multi-producer multi-consumer queue of `Pod` items, like `multiprocessing.Queue` |
//! | [`SpscQueue<T>`] | a single-producer single-consumer ring whose two roles processes claim |
//! | [`ByteQueue`] | variable-length byte messages, many producers and consumers |
//! | [`Pipe`] | a duplex message channel with two ends, like `multiprocessing.Pipe` |
//! | [`Segment`] | raw named bytes, like `multiprocessing.shared_memory.SharedMemory` |
//! | [`fork`], [`spawn`], [`Child`] | starting, joining and stopping processes |
//! | [`Process`] | a named child, forked or spawned, optionally a daemon that dies with its parent |
//! | [`Pool`] | N worker processes running tasks, surviving a worker's death, like `multiprocessing.Pool` |
//! | [`TypedPool`] | any `fn(A) -> R` of serde types, chosen per call, run by a [`Pool`]'s workers |
//! | [`Value<T>`], [`Array<T>`] | `Pod` data under a lock of its own, like `multiprocessing.Value` / `Array` |
//! | [`SharedDict`], [`SharedList`] | a byte-key byte-value map and an append-only list for many processes |
//! | [`TypedQueue<T>`], [`TypedPipe`], [`TypedDict<K, V>`] | any serde type as messages, keys and values ([`typed`]) |
//! | [`JoinableQueue<T>`] | a typed queue with `task_done` and `join`, like `multiprocessing.JoinableQueue` |
//! | [`Unlinker`] | unique names that are unlinked when their owner is done |
//! | [`memory`] | the validated-header layer the others are built on, for new kinds |
//! | [`inspect`] | a read-only look at any segment: header, peers, live state |
//!
//! Every object is made and found the same way, through the [`Named`]
//! trait: `create`, `create_with`, `open`, `open_with`, `open_or_create`,
//! `open_or_create_with`, `anon` (anonymous memory, shared with children
//! forked after it was made) and `unlink`. `use shmipc::prelude::*` brings
//! the trait in with the types.
//!
//! Every segment starts with a 128-byte header (see [`memory::header`])
//! that the creator writes before the segment gets its name, and every opener
//! validates: opening a segment of another kind, another layout version, or
//! one shmipc did not make is an [`Error`], never undefined behaviour.
//! Names are never unlinked behind your back: call [`unlink`] (or
//! [`Named::unlink`]) when the segment's work is done.
//!
//! ```
//! use shmipc::{fork, Lock, Named, Shared};
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

#[cfg(feature = "tokio")]
pub mod aio;
mod data;
mod error;
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
mod fault;
pub mod inspect;
pub mod memory;
mod named;
pub mod prelude;
pub mod process;
mod queue;
mod segment;
mod shared;
pub mod typed;
mod unlinker;
pub mod wait;

pub use data::{
    Array, ArrayError, DictConfig, DictError, Entry, ListConfig, SharedDict, SharedList,
};
pub use data::{Value, ValueError};
pub use error::{Error, Result};
pub use memory::{Kind, Options, MAX_NAME_LEN};
pub use named::Named;
pub use process::{
    active_children, cpu_count, current_process, ActiveChild, CurrentProcess, Process,
    ProcessHandle, MAX_TARGET_ARGS, ORPHANED_EXIT_CODE, TARGET_PANIC_EXIT_CODE,
};
pub use process::{fork, spawn, Child, ExitStatus};
pub use process::{AsyncResult, ImapUnordered, Pool, PoolBuilder, TaskError, TaskFn};
pub use process::{
    TypedAsyncResult, TypedImap, TypedImapUnordered, TypedMapResult, TypedPool, TypedPoolBuilder,
};
pub use queue::{ByteQueue, HeldRole, Pipe, PipeEnd, Queue, Side};
pub use queue::{SpscConsumer, SpscProducer, SpscQueue};
pub use segment::Segment;
pub use shared::{Shared, ShmObject};
pub use typed::{
    JoinableQueue, MessageError, TaskDoneError, TypedDict, TypedPipe, TypedPipeEnd, TypedQueue,
    TypedSoleReceiver, TypedSoleSender,
};
pub use unlinker::Unlinker;
pub use wait::{wait, Interest, WaitError};

/// serde, re-exported: derive `Serialize` and `Deserialize` for the typed
/// objects without a serde dependency of your own, with
/// `#[serde(crate = "shmipc::serde")]`.
pub use serde;

/// The `bytemuck` crate, re-exported so that the derives below need no
/// dependency of your own: add `#[bytemuck(crate = "shmipc::bytemuck")]`
/// beside `#[derive(shmipc::Pod, shmipc::Zeroable)]`.
pub use bytemuck;
/// Plain old data, the items of [`Queue`], [`SpscQueue`], [`Value`] and
/// [`Array`]: both the trait and its derive. Deriving from a crate that
/// does not depend on bytemuck itself takes the crate path:
///
/// ```
/// use shmipc::Named;
///
/// #[derive(Clone, Copy, shmipc::Pod, shmipc::Zeroable)]
/// #[bytemuck(crate = "shmipc::bytemuck")]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
/// let q = shmipc::Queue::<Point>::anon(shmipc::RingConfig::new(4))?;
/// q.push(Point { x: 1.0, y: 2.0 })?;
/// assert_eq!(q.pop()?.y, 2.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub use bytemuck::Pod;
/// Types whose all-zero bytes are a valid value: the trait and its derive
/// (see [`Pod`]).
pub use bytemuck::Zeroable;

pub use shmipc_core::semaphore::SemaphoreConfig;
pub use shmipc_core::sync;
pub use shmipc_core::sync::{AtomicU32, AtomicU64};
pub use shmipc_core::{
    Barrier, BarrierError, BytesConfig, CondGuard, Condition, Deadline, End, Event, LayoutError,
    Lock, LockError, LockGuard, PopError, PushError, RLock, RLockGuard, ReadGrant, RecvError,
    RingConfig, Semaphore, SemaphoreError, SendError, SharedObject, SoleError, SoleReadGrant,
    SoleReceiver, SoleSender, WaitStrategy, WriteGrant,
};

/// Removes the segment name `name` (with or without its leading slash).
///
/// Processes that have the segment mapped keep using it; its memory is
/// freed when the last of them unmaps it. [`Error::NotFound`] if there is
/// no such name.
pub fn unlink(name: &str) -> Result<()> {
    memory::unlink(name)
}

// The README's examples run as doctests, so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
