//! The blocking primitives, one file each, and the atomics they are made
//! of.
//!
//! | type | module | what it is |
//! |---|---|---|
//! | [`Lock`](crate::Lock) | [`lock`] | a mutex whose word names its owner, taken over from a dead one |
//! | [`Semaphore`](crate::Semaphore) | [`semaphore`] | a counting semaphore, optionally bounded |
//! | [`Event`](crate::Event) | [`event`] | a manual-reset event, like Python's `Event` |
//! | [`Condition`](crate::Condition) | [`condition`] | a condition variable with its own lock |
//! | [`Barrier`](crate::Barrier) | [`barrier`] | an n-party barrier |
//!
//! The atomic types here ([`AtomicU32`], [`AtomicU64`], ...) are the ones
//! every algorithm of the workspace uses: `#[repr(transparent)]` wrappers
//! over `core`'s atomics, or loom's under `cfg(loom)` (see
//! `core/src/sys/atomic.rs`).

pub mod barrier;
pub mod condition;
pub mod event;
pub mod lock;
pub mod semaphore;

pub use crate::sys::atomic::*;
