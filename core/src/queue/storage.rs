//! Where slot payloads live and what keeps them alive: cache-line padding,
//! the payload cells (plain memory, or loom's cells under a model), and
//! the layout helpers of the three queues.

use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use crate::place::LayoutError;

/// Keeps `T` on its own pair of cache lines (128 bytes: adjacent-line
/// prefetchers pull lines in pairs), as crossbeam's `CachePadded` does.
///
/// A union, so that all 128 bytes (the padding after `T`, and any inside
/// it) lie inside an `UnsafeCell`. They are shared memory that no field of
/// ours holds, and a peer may write them while we hold a
/// `&CachePadded<T>`; a shared reference asserts nothing about bytes under
/// an `UnsafeCell`, where over plain padding that write would be undefined
/// behaviour. The tests named
/// `a_peer_writing_the_control_blocks_padding_is_no_undefined_behaviour`
/// (one per queue, run under Miri) check it. A control block is a row of
/// these and nothing else, so every byte of it is covered.
///
/// `T` fits in the 128 bytes outside loom (whose atomics are larger and
/// which has no peers); a larger one would have bytes past the 128 that
/// only `T`'s own cells cover, so `deref` fails to build for one.
#[repr(C, align(128))]
pub(crate) union CachePadded<T> {
    value: ManuallyDrop<T>,
    // The real `UnsafeCell`, not the sync shim's: nothing reads or writes
    // these bytes through it, so there is nothing for loom to track.
    #[allow(clippy::disallowed_types)]
    _line: ManuallyDrop<core::cell::UnsafeCell<[u8; 128]>>,
}

impl<T> CachePadded<T> {
    /// Under loom only: elsewhere control blocks are zeroed in place.
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> CachePadded<T> {
        CachePadded {
            value: ManuallyDrop::new(value),
        }
    }
}

// SAFETY: only `value` is ever accessed (see `deref`); the bytes of
// `_line` are never read or written through it, so sharing or sending a
// `CachePadded<T>` is sharing or sending a `T`.
unsafe impl<T: Sync> Sync for CachePadded<T> {}
// SAFETY: as for `Sync`.
unsafe impl<T: Send> Send for CachePadded<T> {}
// The `UnsafeCell` would take this from every handle; no code unwinds
// with `_line` half-written, since none writes it.
impl<T: core::panic::RefUnwindSafe> core::panic::RefUnwindSafe for CachePadded<T> {}

impl<T> core::ops::Deref for CachePadded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // Every `T` fits in `_line` (see the type's docs), checked when
        // this is built for that `T`.
        #[cfg(not(loom))]
        const {
            assert!(core::mem::size_of::<T>() <= 128)
        };
        // SAFETY: `value` is the only field anything reads or writes as a
        // value: a `CachePadded` is made by `new` or lies in a control
        // block that `init_at` zeroed and set up field by field, and the
        // `T`s here are atomics (and structs of them), valid for any bytes.
        unsafe { &self.value }
    }
}

impl<T> Drop for CachePadded<T> {
    fn drop(&mut self) {
        // SAFETY: `value` holds a `T` (as in `deref`), dropped once, here.
        unsafe { ManuallyDrop::drop(&mut self.value) }
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two), or `None` on
/// overflow.
#[inline]
pub(crate) fn round_up(n: usize, align: usize) -> Option<usize> {
    Some(n.checked_add(align - 1)? & !(align - 1))
}

/// Builds a `Layout`, mapping failure to `InvalidParameters`.
pub(crate) fn layout(size: usize, align: usize) -> Result<core::alloc::Layout, LayoutError> {
    core::alloc::Layout::from_size_align(size, align).map_err(|_| LayoutError::InvalidParameters)
}

/// One slot's storage: plain memory in a mapping, or a loom cell so that the
/// model sees every payload access.
#[cfg(not(loom))]
pub(crate) type Cell<T> = T;
/// One slot's storage: plain memory in a mapping, or a loom cell so that the
/// model sees every payload access.
#[cfg(loom)]
pub(crate) type Cell<T> = crate::sync::UnsafeCell<T>;

/// An array of `len` payload slots, accessed only by copying in and out
/// through raw pointers: no reference to a slot is ever formed, because a
/// peer may write any slot at any time.
pub(crate) struct Cells<T> {
    base: NonNull<Cell<T>>,
}

impl<T> Clone for Cells<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Cells<T> {}

impl<T: bytemuck::Pod> Cells<T> {
    /// # Safety
    ///
    /// `base` points at `len` slots that stay valid while this value (and
    /// its copies) are used; the caller of each method keeps `i` in bounds.
    pub(crate) unsafe fn new(base: NonNull<Cell<T>>) -> Self {
        Cells { base }
    }

    /// Copies slot `i` out.
    ///
    /// # Safety
    ///
    /// `i` is in bounds, and the queue protocol gives the caller the slot.
    #[inline]
    pub(crate) unsafe fn read(&self, i: usize) -> T {
        // SAFETY: in bounds and owned by the caller (contract).
        let cell = unsafe { self.base.as_ptr().add(i) };
        #[cfg(not(loom))]
        // SAFETY: in bounds, aligned (the array is aligned for T); a racing
        // writer can only leave bytes, a valid T (Pod) (`sys::copy`).
        return unsafe { crate::sys::copy::load_item(cell) };
        #[cfg(loom)]
        // SAFETY: as above; loom checks the access.
        return unsafe { (*cell).with(|p| p.read()) };
    }

    /// Copies `v` into slot `i`.
    ///
    /// # Safety
    ///
    /// As for [`Cells::read`].
    #[inline]
    pub(crate) unsafe fn write(&self, i: usize, v: T) {
        // SAFETY: in bounds and owned by the caller (contract).
        let cell = unsafe { self.base.as_ptr().add(i) };
        #[cfg(not(loom))]
        // SAFETY: in bounds, aligned, owned by the caller; `v` is ours.
        unsafe {
            crate::sys::copy::store_items(&v, cell, 1)
        };
        #[cfg(loom)]
        // SAFETY: as above; loom checks the access.
        unsafe {
            (*cell).with_mut(|p| p.write(v))
        };
    }

    /// Copies `dst.len()` slots starting at `i` out.
    ///
    /// # Safety
    ///
    /// `i..i + dst.len()` is in bounds and owned by the caller.
    #[inline]
    pub(crate) unsafe fn read_slice(&self, i: usize, dst: &mut [T]) {
        #[cfg(not(loom))]
        // SAFETY: the source range is in bounds and owned by the caller; the
        // destination is a distinct, caller-owned slice, so they do not
        // overlap.
        unsafe {
            crate::sys::copy::load_items(self.base.as_ptr().add(i), dst.as_mut_ptr(), dst.len())
        };
        #[cfg(loom)]
        for (k, d) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds and owned (contract).
            *d = unsafe { self.read(i + k) };
        }
    }

    /// Copies `src` into the slots starting at `i`.
    ///
    /// # Safety
    ///
    /// As for [`Cells::read_slice`].
    #[inline]
    pub(crate) unsafe fn write_slice(&self, i: usize, src: &[T]) {
        #[cfg(not(loom))]
        // SAFETY: as in read_slice, in the other direction.
        unsafe {
            crate::sys::copy::store_items(src.as_ptr(), self.base.as_ptr().add(i), src.len())
        };
        #[cfg(loom)]
        for (k, s) in src.iter().enumerate() {
            // SAFETY: in bounds and owned (contract).
            unsafe { self.write(i + k, *s) };
        }
    }
}

/// The owner of a queue handle's memory when the handle does not own it:
/// nothing for caller-provided bytes (the lifetime keeps them alive), a
/// reference count for loom's boxed models. The handles' last type
/// parameter defaults to it; a handle made by an `attach_owned`
/// constructor holds its owner there instead (shmipc's mapping), and can
/// then be moved anywhere and live as long as it likes.
#[cfg(not(loom))]
#[derive(Clone, Copy, Debug, Default)]
pub struct Keep;

/// The owner of a queue handle's memory when the handle does not own it:
/// nothing for caller-provided bytes (the lifetime keeps them alive), a
/// reference count for loom's boxed models.
#[cfg(loom)]
#[derive(Clone)]
pub struct Keep(#[allow(dead_code)] pub(crate) std::sync::Arc<dyn Send + Sync>);

/// Loom's stand-in for a mapping: boxes it owns, declared shareable because
/// every access goes through loom's atomics and cells.
#[cfg(loom)]
pub(crate) struct Boxed<C, A, B>(pub(crate) C, pub(crate) A, pub(crate) B);

// SAFETY: the contents are accessed only through loom atomics and loom
// UnsafeCells under the queue protocols, which loom itself checks.
#[cfg(loom)]
unsafe impl<C, A, B> Send for Boxed<C, A, B> {}
// SAFETY: as for Send.
#[cfg(loom)]
unsafe impl<C, A, B> Sync for Boxed<C, A, B> {}

/// Marks a type as tied to lifetime `'a` and not automatically Send/Sync.
pub(crate) type Life<'a, T> = PhantomData<(&'a (), *const T)>;

#[cfg(all(test, not(loom)))]
pub(crate) mod testbuf {
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    pub(crate) struct AlignedBuf {
        ptr: *mut u8,
        layout: Layout,
    }

    impl AlignedBuf {
        pub(crate) fn new(len: usize) -> AlignedBuf {
            let layout = Layout::from_size_align(len.max(1), 128).unwrap();
            // SAFETY: the layout has non-zero size.
            let ptr = unsafe { alloc_zeroed(layout) };
            assert!(!ptr.is_null());
            AlignedBuf { ptr, layout }
        }

        pub(crate) fn for_layout(l: core::alloc::Layout) -> AlignedBuf {
            assert!(l.align() <= 128);
            AlignedBuf::new(l.size())
        }

        pub(crate) fn as_mut_ptr(&self) -> *mut u8 {
            self.ptr
        }

        pub(crate) fn len(&self) -> usize {
            self.layout.size()
        }

        pub(crate) fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: ptr is valid for len bytes, zero-initialised, owned.
            unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
        }
    }

    /// Writes `0x5a` over every byte of `base..base + end` outside
    /// `fields`, as a peer scribbling over a control block's padding would.
    /// `base..base + end` must be valid for writes.
    pub(crate) fn write_padding(base: *mut u8, fields: &[core::ops::Range<usize>], end: usize) {
        for k in (0..end).filter(|k| !fields.iter().any(|f| f.contains(k))) {
            // SAFETY: inside `base..base + end` (contract).
            unsafe { base.add(k).write(0x5a) };
        }
    }

    /// [`write_padding`] over the module's `Control` at `$base`: every byte
    /// but those of the named fields, `Lead`'s (inside `lead`) and then
    /// `Control`'s own (each the value inside its `CachePadded`). The
    /// sizes come from the fields' types, so a field named here cannot be
    /// given a wrong one.
    macro_rules! scribble_control_padding {
        ($base:expr, lead { $($l:ident),* }, $($f:ident),*) => {{
            use core::mem::{offset_of, size_of};
            fn size_of_target<F>(_: fn(&Control) -> &F) -> usize {
                size_of::<F>()
            }
            let lead = offset_of!(Control, lead);
            let at = |off: usize, len: usize| off..off + len;
            $crate::queue::testbuf::write_padding(
                $base,
                &[
                    $(at(lead + offset_of!(Lead, $l), size_of_target(|c| &c.lead.$l)),)*
                    $(at(offset_of!(Control, $f), size_of_target(|c| &*c.$f)),)*
                ],
                size_of::<Control>(),
            )
        }};
    }
    pub(crate) use scribble_control_padding;

    impl Drop for AlignedBuf {
        fn drop(&mut self) {
            // SAFETY: allocated in `new` with this layout.
            unsafe { dealloc(self.ptr, self.layout) }
        }
    }

    // SAFETY: a plain owned allocation.
    unsafe impl Send for AlignedBuf {}
    // SAFETY: shared use goes through the queues' atomics.
    unsafe impl Sync for AlignedBuf {}
}
