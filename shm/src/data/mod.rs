//! Shared data under a lock of its own, like Python's `Value`, `Array` and
//! a manager's `dict` and `list`, one file each:
//!
//! | type | file |
//! |---|---|
//! | [`Value<T>`](crate::Value) | `value.rs` (with the layout `Array` shares) |
//! | [`Array<T>`](crate::Array) | `array.rs` |
//! | [`SharedDict`] | `dict.rs` |
//! | [`SharedList`] | `list.rs` |
//!
//! Every access takes the object's [`Lock`], copies, and lets go; every
//! call has a `_timeout` form. A process that dies holding the lock leaves
//! it to the next locker, which repairs what the death can have left
//! (see each type).

use std::time::Duration;

use shmipc_core::{LayoutError, Lock, LockError, LockGuard, Rule};

mod array;
mod dict;
mod list;
mod value;

pub use array::{Array, ArrayError};
pub use dict::{DictConfig, DictError, Entry, SharedDict};
pub use list::{ListConfig, SharedList};
pub use value::{Value, ValueError};

/// Takes `lock`, waiting at most `timeout` (for ever if `None`).
fn take(lock: &Lock, timeout: Option<Duration>) -> std::result::Result<LockGuard<'_>, LockError> {
    match timeout {
        None => lock.lock(),
        Some(t) => lock.lock_timeout(t),
    }
}

/// The message of a lock timeout on the object in segment `name`.
fn timeout_text(name: &str) -> String {
    if name.starts_with('(') {
        "timed out waiting for the lock of an anonymous shared object".to_owned()
    } else {
        format!("timed out waiting for the lock of shared memory segment {name:?}")
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two), if it fits.
fn round_up(n: usize, align: usize) -> Option<usize> {
    n.checked_add(align - 1).map(|v| v & !(align - 1))
}

/// Checks `value` against `min..=max`, as the parameter `param`.
fn in_range(
    param: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> std::result::Result<(), LayoutError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let rule = Rule::Range {
        min: min as u64,
        max: max as u64,
    };
    Err(LayoutError::parameter(param, value as u64, rule))
}

/// Copies `len` shared bytes at `src` out.
///
/// # Safety
///
/// `src` is valid for reads of `len` bytes.
unsafe fn copy_out(src: *const u8, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    // SAFETY: the caller's contract; `v` holds `len` bytes and cannot
    // overlap shared memory.
    unsafe { std::ptr::copy_nonoverlapping(src, v.as_mut_ptr(), len) };
    v
}
