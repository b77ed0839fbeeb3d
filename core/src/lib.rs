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
//! | [`Semaphore`] | a counting semaphore, optionally bounded |
//! | [`Event`] | a manual-reset event, like Python's `Event` |
//!
//! Waiting goes through one module, [`futex`]: process-shared futexes with
//! absolute `CLOCK_MONOTONIC` deadlines, after a brief spin.
//!
//! Bytes that another process can write are treated as hostile: every state
//! word is validated before it is acted on, and a value that makes no sense
//! gives an error or a timeout, never undefined behaviour.
//!
//! ```
//! use shmipc_core::{Lock, SharedObject};
//!
//! // Any 4-byte aligned bytes can hold a Lock; zeroed bytes are unlocked.
//! let mut bytes = [0u32; 1];
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

pub mod event;
pub mod futex;
pub mod lock;
pub mod place;
pub mod semaphore;
pub mod sync;
pub mod tid;

pub use event::Event;
pub use futex::Deadline;
pub use lock::{Lock, LockError, LockGuard};
pub use place::{LayoutError, SharedObject};
pub use semaphore::{Semaphore, SemaphoreError};
