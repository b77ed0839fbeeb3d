//! Placing a primitive in caller-provided bytes, and viewing one that is
//! already there.
//!
//! Every fixed-size primitive ([`Lock`](crate::Lock),
//! [`Semaphore`](crate::Semaphore), [`Event`](crate::Event),
//! [`Condition`](crate::Condition), [`Barrier`](crate::Barrier)) is a
//! `#[repr(C)]` struct of atomics for which every bit pattern is a valid
//! value. That is what makes it sound to look at bytes that another process
//! maps and may scribble on: the worst a hostile peer can do is put the
//! object in a state its methods report as an error or a timeout.
//!
//! Misaligned or too-short memory is an error ([`LayoutError`]), never
//! undefined behaviour.

use core::fmt;

/// Why bytes could not hold a primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The address is not a multiple of the type's alignment.
    Misaligned {
        /// The alignment the type needs.
        required: usize,
        /// The address that was offered.
        address: usize,
    },
    /// Fewer bytes than the type needs.
    TooSmall {
        /// The bytes the type needs.
        required: usize,
        /// The bytes that were offered.
        available: usize,
    },
    /// The requested parameters describe no valid object (for example a
    /// queue capacity of zero, or one whose size overflows).
    InvalidParameters,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Misaligned { required, address } => write!(
                f,
                "address {address:#x} is not aligned to the {required} bytes the object needs"
            ),
            LayoutError::TooSmall {
                required,
                available,
            } => write!(
                f,
                "{available} bytes offered where the object needs {required}"
            ),
            LayoutError::InvalidParameters => f.write_str("the object's parameters are invalid"),
        }
    }
}

impl core::error::Error for LayoutError {}

/// Checks that `len` bytes at `ptr` can hold something of `size` bytes
/// aligned to `align`.
#[inline]
pub fn check(ptr: *const u8, len: usize, size: usize, align: usize) -> Result<(), LayoutError> {
    let address = ptr as usize;
    if align == 0 || address % align != 0 {
        return Err(LayoutError::Misaligned {
            required: align,
            address,
        });
    }
    if len < size {
        return Err(LayoutError::TooSmall {
            required: size,
            available: len,
        });
    }
    Ok(())
}

/// A fixed-size primitive that can live in shared bytes.
///
/// # Safety
///
/// Implementors are `#[repr(C)]`, contain only atomics (no pointers, no
/// plain fields a peer could tear), and every bit pattern of
/// `size_of::<Self>()` bytes is a valid value of the type.
pub unsafe trait SharedObject: Sized + Sync {
    /// What the creator chooses when it initialises one (a semaphore's
    /// count, say). `()` where there is nothing to choose.
    type Config: Copy;

    /// Writes the initial state described by `config` at `this`.
    ///
    /// # Safety
    ///
    /// `this` is valid for writes of `size_of::<Self>()` bytes, aligned, and
    /// no other thread or process uses the object yet.
    unsafe fn init(this: *mut Self, config: Self::Config);

    /// Views an object that already lives at `ptr`, checking alignment and
    /// size first.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for reads and writes of `len` bytes for all of `'a`,
    /// and those bytes are only ever accessed atomically (by this type's
    /// methods, in this or another process) while the reference lives.
    unsafe fn from_ptr<'a>(ptr: *mut u8, len: usize) -> Result<&'a Self, LayoutError> {
        check(ptr, len, size_of::<Self>(), align_of::<Self>())?;
        // SAFETY: aligned and large enough (checked above); valid for 'a by
        // the caller's contract; every bit pattern is a valid Self (trait
        // contract), and Self is made of atomics, so shared access is sound.
        Ok(unsafe { &*ptr.cast::<Self>() })
    }

    /// Initialises a new object at `ptr` (see [`SharedObject::init`]) and
    /// returns a reference to it.
    ///
    /// # Safety
    ///
    /// As for [`SharedObject::from_ptr`], and no one else uses the bytes
    /// while they are being initialised.
    unsafe fn init_at<'a>(
        ptr: *mut u8,
        len: usize,
        config: Self::Config,
    ) -> Result<&'a Self, LayoutError> {
        check(ptr, len, size_of::<Self>(), align_of::<Self>())?;
        // SAFETY: checked aligned and large enough; exclusive during init
        // by the caller's contract.
        unsafe { Self::init(ptr.cast::<Self>(), config) };
        // SAFETY: as in from_ptr; the bytes now hold an initialised object.
        Ok(unsafe { &*ptr.cast::<Self>() })
    }

    /// Views an object in bytes the caller owns exclusively. Zeroed bytes
    /// are the default state (an unlocked lock, an unset event, a semaphore
    /// with no permits).
    fn from_bytes_mut(bytes: &mut [u8]) -> Result<&Self, LayoutError> {
        let len = bytes.len();
        // SAFETY: the exclusive borrow guarantees validity for the returned
        // lifetime and that nothing else accesses the bytes non-atomically.
        unsafe { Self::from_ptr(bytes.as_mut_ptr(), len) }
    }

    /// Initialises an object in bytes the caller owns exclusively.
    fn init_in(bytes: &mut [u8], config: Self::Config) -> Result<&Self, LayoutError> {
        let len = bytes.len();
        // SAFETY: as in from_bytes_mut; exclusivity covers initialisation.
        unsafe { Self::init_at(bytes.as_mut_ptr(), len, config) }
    }
}

// SAFETY: `sync::AtomicU32` is `#[repr(transparent)]` over the `core`
// atomic, which has the size and alignment of `u32`; every bit pattern is a
// valid value and all access goes through atomic operations.
#[cfg(not(loom))]
unsafe impl SharedObject for crate::sync::AtomicU32 {
    /// The initial value.
    type Config = u32;

    unsafe fn init(this: *mut Self, initial: u32) {
        // SAFETY: the caller guarantees `this` is valid, aligned and exclusive.
        unsafe { this.write(crate::sync::AtomicU32::new(initial)) };
    }
}

// SAFETY: as for `AtomicU32`: `#[repr(transparent)]` over the `core` atomic,
// which has the size and alignment of `u64`; every bit pattern is valid.
#[cfg(not(loom))]
unsafe impl SharedObject for crate::sync::AtomicU64 {
    /// The initial value.
    type Config = u64;

    unsafe fn init(this: *mut Self, initial: u64) {
        // SAFETY: the caller guarantees `this` is valid, aligned and exclusive.
        unsafe { this.write(crate::sync::AtomicU64::new(initial)) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::{AtomicU32, AtomicU64, Ordering};

    #[test]
    fn atomics_are_shared_objects_with_an_initial_value() {
        let mut buf = [0u64; 2];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
        let a = AtomicU64::init_in(&mut bytes[..8], 42).unwrap();
        assert_eq!(a.load(Ordering::Relaxed), 42);
        let b = AtomicU32::init_in(&mut bytes[8..12], 7).unwrap();
        assert_eq!(b.load(Ordering::Relaxed), 7);
        assert!(matches!(
            AtomicU64::from_bytes_mut(&mut bytes[4..12]),
            Err(LayoutError::Misaligned { required: 8, .. })
        ));
    }
}
