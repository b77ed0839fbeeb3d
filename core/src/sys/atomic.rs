//! The one place that names the atomics.
//!
//! Every algorithm in the workspace takes its atomics from here, so that
//! `RUSTFLAGS="--cfg loom"` swaps them for loom's model-checked ones. The
//! types are `#[repr(transparent)]` wrappers rather than re-exports, which is
//! what lets `clippy.toml` (`disallowed-types`) forbid the real atomics
//! everywhere else: a re-export would resolve to the very type it forbids.
//!
//! Outside loom each wrapper has exactly the layout of the `core` atomic it
//! wraps (and so of the plain integer), which is what lets the primitives
//! live in shared memory.
#![allow(clippy::disallowed_types)]

pub use core::sync::atomic::Ordering;

#[cfg(not(loom))]
use core::sync::atomic as imp;
#[cfg(loom)]
use loom::sync::atomic as imp;

/// A memory fence (see [`core::sync::atomic::fence`]).
#[inline]
pub fn fence(order: Ordering) {
    imp::fence(order)
}

/// A compiler-only fence (see [`core::sync::atomic::compiler_fence`]).
#[inline]
pub fn compiler_fence(order: Ordering) {
    core::sync::atomic::compiler_fence(order)
}

/// A hint that we are spinning. Under loom it yields to the model's scheduler,
/// which otherwise could not make progress in a spin loop.
#[inline]
pub fn spin_loop() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Methods that pass their arguments on to the wrapped atomic's method
/// of the same name.
macro_rules! forward {
    ($($op:ident($($arg:ident: $t:ty),*) -> $ret:ty;)*) => {
        $(
            /// See the `core` atomic of the same name.
            #[inline]
            pub fn $op(&self, $($arg: $t),*) -> $ret {
                self.0.$op($($arg),*)
            }
        )*
    };
}

macro_rules! atomic_int {
    ($(#[$doc:meta])* $name:ident, $int:ty) => {
        $(#[$doc])*
        #[repr(transparent)]
        #[derive(Default)]
        pub struct $name(imp::$name);

        impl $name {
            /// A new atomic holding `v`.
            #[cfg(not(loom))]
            #[inline]
            pub const fn new(v: $int) -> Self {
                Self(imp::$name::new(v))
            }

            /// A new atomic holding `v`.
            #[cfg(loom)]
            #[inline]
            pub fn new(v: $int) -> Self {
                Self(imp::$name::new(v))
            }

            forward! {
                load(order: Ordering) -> $int;
                store(v: $int, order: Ordering) -> ();
                swap(v: $int, order: Ordering) -> $int;
                compare_exchange(current: $int, new: $int, success: Ordering, failure: Ordering)
                    -> Result<$int, $int>;
                compare_exchange_weak(current: $int, new: $int, success: Ordering, failure: Ordering)
                    -> Result<$int, $int>;
                fetch_add(v: $int, order: Ordering) -> $int;
                fetch_sub(v: $int, order: Ordering) -> $int;
                fetch_and(v: $int, order: Ordering) -> $int;
                fetch_or(v: $int, order: Ordering) -> $int;
                fetch_max(v: $int, order: Ordering) -> $int;
                fetch_min(v: $int, order: Ordering) -> $int;
            }

            /// A raw pointer to the integer (for the futex system call).
            #[cfg(not(loom))]
            #[inline]
            pub const fn as_ptr(&self) -> *mut $int {
                self.0.as_ptr()
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(&self.load(Ordering::Relaxed), f)
            }
        }
    };
}

atomic_int!(
    /// An atomic `u8`.
    AtomicU8, u8
);
atomic_int!(
    /// An atomic `u32`; also the futex word type.
    AtomicU32, u32
);
atomic_int!(
    /// An atomic `i32`.
    AtomicI32, i32
);
atomic_int!(
    /// An atomic `u64`.
    AtomicU64, u64
);
atomic_int!(
    /// An atomic `usize`.
    AtomicUsize, usize
);

/// An atomic `bool`.
#[repr(transparent)]
#[derive(Default, Debug)]
pub struct AtomicBool(imp::AtomicBool);

impl AtomicBool {
    /// A new atomic holding `v`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn new(v: bool) -> Self {
        Self(imp::AtomicBool::new(v))
    }

    /// A new atomic holding `v`.
    #[cfg(loom)]
    #[inline]
    pub fn new(v: bool) -> Self {
        Self(imp::AtomicBool::new(v))
    }

    forward! {
        load(order: Ordering) -> bool;
        store(v: bool, order: Ordering) -> ();
        swap(v: bool, order: Ordering) -> bool;
    }
}

/// Interior mutability that loom can track (see `loom::cell::UnsafeCell`).
/// Outside loom, `with`/`with_mut` hand out the raw pointer directly.
/// Transparent: a cell has its value's size and alignment, which the MPMC
/// record layout (`mpmc::record_size`) counts on.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T>(
    #[cfg(not(loom))] core::cell::UnsafeCell<T>,
    #[cfg(loom)] loom::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    /// A new cell holding `v`.
    #[cfg(not(loom))]
    #[inline]
    pub const fn new(v: T) -> Self {
        Self(core::cell::UnsafeCell::new(v))
    }

    /// A new cell holding `v`.
    #[cfg(loom)]
    #[inline]
    pub fn new(v: T) -> Self {
        Self(loom::cell::UnsafeCell::new(v))
    }

    /// Runs `f` with a const pointer to the contents.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.0.get());
        #[cfg(loom)]
        return self.0.with(f);
    }

    /// Runs `f` with a mut pointer to the contents.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        return f(self.0.get());
        #[cfg(loom)]
        return self.0.with_mut(f);
    }
}
