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

/// Why bytes could not hold a primitive, or why its parameters describe
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The requested parameters describe no valid object, without saying
    /// which (prefer [`LayoutError::Parameter`], which does).
    InvalidParameters,
    /// A parameter breaks its rule: `"capacity 3 must be a power of two
    /// from 2 to 2^31"`.
    Parameter {
        /// The parameter, as the caller names it (`"capacity"`).
        param: &'static str,
        /// The value it was given.
        value: u64,
        /// What it must be.
        rule: Rule,
    },
}

/// What a parameter must be (see [`LayoutError::Parameter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rule {
    /// A power of two from `min` to `max`, both included.
    PowerOfTwo {
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// From `min` to `max`, both included.
    Range {
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
    /// At most `max`, for the reason given.
    AtMost {
        /// The largest allowed.
        max: u64,
        /// Why, as a phrase (`"half the ring, less a record header"`).
        why: &'static str,
    },
    /// A rule in words, read after the value (`"makes the queue larger
    /// than the address space"`).
    Text(&'static str),
}

impl LayoutError {
    /// A [`LayoutError::Parameter`].
    pub const fn parameter(param: &'static str, value: u64, rule: Rule) -> LayoutError {
        LayoutError::Parameter { param, value, rule }
    }
}

/// A number as a reader wants it in a rule: powers of two from 2^16 on as
/// `2^k`.
struct Num(u64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_power_of_two() && self.0 >= 1 << 16 {
            write!(f, "2^{}", self.0.trailing_zeros())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Rule::PowerOfTwo { min, max } => write!(
                f,
                "must be a power of two from {} to {}",
                Num(min),
                Num(max)
            ),
            Rule::Range { min, max } => write!(f, "must be from {} to {}", Num(min), Num(max)),
            Rule::AtMost { max, why } => write!(f, "must be at most {} ({why})", Num(max)),
            Rule::Text(text) => f.write_str(text),
        }
    }
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
            LayoutError::Parameter { param, value, rule } => write!(f, "{param} {value} {rule}"),
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
/// `size_of::<Self>()` bytes is a valid value of the type. They have no
/// padding either: every byte lies in an atomic (or another `UnsafeCell`),
/// since a peer may write any byte while a `&Self` lives, and over plain
/// padding that write would be undefined behaviour (an explicit reserved
/// atomic fills a gap).
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

    /// Checks `config` before anything is written: a configuration that
    /// describes no valid object (a barrier of zero parties, say) is a
    /// [`LayoutError::Parameter`] here rather than a failure later. The
    /// default accepts every configuration.
    fn check_config(config: &Self::Config) -> Result<(), LayoutError> {
        let _ = config;
        Ok(())
    }

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

    /// Checks `config` ([`SharedObject::check_config`]), initialises a new
    /// object at `ptr` (see [`SharedObject::init`]) and returns a reference
    /// to it.
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
        Self::check_config(&config)?;
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

/// `unsafe impl SharedObject for $t` whose new object is `$make` (over
/// the config bound to `$arg`) written in place: what every object of the
/// workspace does. The `// SAFETY:` comment goes at the call site: why `$t`
/// meets the trait's contract (atomics only, no padding, every bit
/// pattern valid).
/// Further items (a `check_config`) follow the closure.
macro_rules! shared_object {
    ($t:ty, $(#[$doc:meta])* $config:ty, |$arg:pat_param| $make:expr $(, $more:item)*) => {
        // SAFETY: the call site's comment says why `$t` meets the contract.
        #[cfg(not(loom))]
        unsafe impl $crate::place::SharedObject for $t {
            $(#[$doc])*
            type Config = $config;

            unsafe fn init(this: *mut Self, $arg: $config) {
                // SAFETY: the caller guarantees `this` is valid, aligned and
                // exclusive.
                unsafe { this.write($make) };
            }

            $($more)*
        }
    };
}
pub(crate) use shared_object;

// SAFETY: `sync::AtomicU32` is `#[repr(transparent)]` over the `core`
// atomic, which has the size and alignment of `u32`; every bit pattern is a
// valid value and all access goes through atomic operations.
shared_object!(crate::sync::AtomicU32, /** The initial value. */ u32, |initial| {
    crate::sync::AtomicU32::new(initial)
});

// SAFETY: as for `AtomicU32`: `#[repr(transparent)]` over the `core` atomic,
// which has the size and alignment of `u64`; every bit pattern is valid.
shared_object!(crate::sync::AtomicU64, /** The initial value. */ u64, |initial| {
    crate::sync::AtomicU64::new(initial)
});

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

    /// A peer may write any byte of an object while we hold a reference
    /// to it. Over a field that is no undefined behaviour (the fields are
    /// atomics), but over padding it would be: a shared reference asserts
    /// that bytes outside an `UnsafeCell` do not change. So no object of
    /// the crate has padding; Miri checks this test, and fails it for an
    /// object with a gap between two fields.
    #[test]
    fn a_peer_writing_every_byte_of_a_shared_object_is_no_undefined_behaviour() {
        use crate::queue::testbuf::AlignedBuf;
        use crate::semaphore::SemaphoreConfig;
        use crate::{Barrier, Condition, Event, Lock, RLock, Semaphore};
        fn scribble<T: SharedObject, R>(config: T::Config, using: impl Fn(&T) -> R) {
            let b = AlignedBuf::new(size_of::<T>());
            // SAFETY: the buffer outlives the reference; only this test uses it.
            let t = unsafe { T::init_at(b.as_mut_ptr(), b.len(), config) }.unwrap();
            core::hint::black_box(using(t));
            // SAFETY: inside the buffer: a peer's write while `t` lives.
            unsafe { b.as_mut_ptr().write_bytes(0x5a, size_of::<T>()) };
            core::hint::black_box(using(t));
        }
        scribble::<Lock, _>((), |l| l.is_locked());
        scribble::<RLock, _>((), |l| l.is_locked());
        scribble::<Event, _>((), |e| e.is_set());
        scribble::<Condition, _>((), |c| c.sleepers());
        scribble::<Barrier, _>(2, |b| b.parties());
        let config = SemaphoreConfig {
            initial: 1,
            max: None,
        };
        scribble::<Semaphore, _>(config, |s| s.value());
        scribble::<AtomicU32, _>(7, |a| a.load(Ordering::Relaxed));
        scribble::<AtomicU64, _>(7, |a| a.load(Ordering::Relaxed));
    }

    #[test]
    fn parameter_errors_say_the_parameter_its_value_and_the_rule() {
        use std::string::ToString;
        let e = LayoutError::parameter(
            "capacity",
            3,
            Rule::PowerOfTwo {
                min: 2,
                max: 1 << 31,
            },
        );
        assert_eq!(
            e.to_string(),
            "capacity 3 must be a power of two from 2 to 2^31"
        );
        let e = LayoutError::parameter("parties", 0, Rule::Range { min: 1, max: 65535 });
        assert_eq!(e.to_string(), "parties 0 must be from 1 to 65535");
        let e = LayoutError::parameter(
            "max_message",
            100,
            Rule::AtMost {
                max: 16,
                why: "half the ring, less a record header",
            },
        );
        assert_eq!(
            e.to_string(),
            "max_message 100 must be at most 16 (half the ring, less a record header)"
        );
    }
}
