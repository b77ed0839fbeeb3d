//! The blocking primitives, one file each, and the atomics they are made
//! of.
//!
//! | type | module | what it is |
//! |---|---|---|
//! | [`Lock`](crate::Lock) | [`lock`] | a mutex whose word names its owner, taken over from a dead one |
//! | [`RLock`](crate::RLock) | [`rlock`] | a re-entrant lock: a [`Lock`](crate::Lock) and its owner's depth |
//! | [`Semaphore`](crate::Semaphore) | [`semaphore`] | a counting semaphore, optionally bounded |
//! | [`Event`](crate::Event) | [`event`] | a manual-reset event, like Python's `Event` |
//! | [`Condition`](crate::Condition) | [`condition`] | a condition variable with its own lock |
//! | [`Barrier`](crate::Barrier) | [`barrier`] | an n-party barrier |
//! | [`TaskCount`](crate::TaskCount) | [`tasks`] | unfinished tasks and a wait for none, behind a `JoinableQueue` |
//!
//! The atomic types here ([`AtomicU32`], [`AtomicU64`], ...) are the ones
//! every algorithm of the workspace uses: `#[repr(transparent)]` wrappers
//! over `core`'s atomics, or loom's under `cfg(loom)` (see
//! `core/src/sys/atomic.rs`).

pub mod barrier;
pub mod condition;
pub mod event;
pub mod lock;
pub mod rlock;
pub mod semaphore;
pub mod tasks;

pub use crate::sys::atomic::*;
