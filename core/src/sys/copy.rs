//! Payload copies between private memory and shared memory that a hostile
//! (or buggy) peer may write at any time.
//!
//! A plain copy (`ptr::copy_nonoverlapping`) that races another writer is
//! a data race, which is undefined behaviour in the abstract machine even
//! though the processor only ever yields some bytes. These copies make
//! every access to the shared side a relaxed atomic load or store instead:
//! 8-byte words where the shared address is 8-byte aligned, single bytes
//! at the unaligned ends. A racing writer can then only make us copy
//! bytes it wrote, which a [`Pod`](bytemuck::Pod) payload accepts. Relaxed
//! is enough: the queue protocol's Acquire/Release on its state words
//! orders the payload; these accesses need only be free of races.
//!
//! The private side is written and read plainly. On x86-64 and AArch64 a
//! relaxed load or store is an ordinary move, so the cost is that the
//! compiler cannot widen the copy to vector registers (measured in
//! `BENCHMARKS.md`; see docs/DESIGN.md, "Payload copies").
//!
//! Under loom the queues keep their payloads in loom cells, which loom
//! checks itself; this file is not used there. Under Miri the copies are
//! plain `copy_nonoverlapping`, as they were before this file: Miri's
//! weak-memory emulation cannot hold two atomic accesses that partially
//! overlap (it stops with an internal error), and the garbage tests make
//! payload copies overlap the record headers' 8-byte atomics at any
//! offset. Miri's tests run one thread at a time, so the plain copies
//! race nothing there.

use core::mem::{align_of, size_of, MaybeUninit};

use crate::sync::{AtomicU64, AtomicU8, Ordering};

/// From this many bytes on, x86-64 copies with one `rep movsb` (the
/// string copy that processors with "enhanced rep movsb" run at memcpy
/// speed), below it word by word.
#[cfg(all(target_arch = "x86_64", not(miri)))]
const STRING_COPY_MIN: usize = 256;

/// Copies `len` bytes from `src` to `dst` with one `rep movsb`. Inline
/// assembly is outside the abstract machine; what it does here is what a
/// loop of relaxed atomic byte copies would do (each byte read once and
/// written once, in some order), which is how its race with a hostile
/// writer is justified. Miri cannot run it, and takes the loops instead.
///
/// # Safety
///
/// `src..src + len` is valid for reads and `dst..dst + len` for writes;
/// they do not overlap.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[inline(always)]
unsafe fn string_copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: rcx bytes from rsi to rdi, forwards (the direction flag is
    // clear on entry to inline assembly, as Rust guarantees); the ranges
    // are valid and apart (contract). The flags are not touched.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") len => _,
            inout("rsi") src => _,
            inout("rdi") dst => _,
            options(nostack, preserves_flags)
        )
    };
}

/// Copies the whole range in one go where this build does, and says
/// whether it did: under Miri with a plain copy (see the module docs), on
/// x86-64 with one [`string_copy`] from [`STRING_COPY_MIN`] bytes on.
/// Otherwise the caller copies word by word ([`load`], [`store`]).
///
/// # Safety
///
/// `src..src + len` is valid for reads and `dst..dst + len` for writes;
/// they do not overlap.
#[inline(always)]
unsafe fn copy_at_once(src: *const u8, dst: *mut u8, len: usize) -> bool {
    if cfg!(miri) {
        // SAFETY: the ranges are valid and apart (contract).
        unsafe { core::ptr::copy_nonoverlapping(src, dst, len) };
        return true;
    }
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if len >= STRING_COPY_MIN {
        // SAFETY: the ranges are valid and apart (contract).
        unsafe { string_copy(src, dst, len) };
        return true;
    }
    false
}

/// Copies `len` bytes from shared `src` to private `dst`. `aligned8` says
/// that the caller knows `src` to be 8-byte aligned (a constant for typed
/// slots, so the check folds away).
///
/// # Safety
///
/// `src..src + len` is valid for reads and `dst..dst + len` for writes;
/// they do not overlap; no reference to the `dst` bytes is live.
#[inline(always)]
unsafe fn load(src: *const u8, dst: *mut u8, len: usize, aligned8: bool) {
    // SAFETY: the ranges are valid and apart (contract).
    if unsafe { copy_at_once(src, dst, len) } {
        return;
    }
    let mut i = 0;
    if !aligned8 {
        while i < len && (src as usize + i) % 8 != 0 {
            // SAFETY: i < len: in bounds (contract); a byte is always
            // aligned for AtomicU8, which has the layout of u8.
            let b = unsafe { &*src.add(i).cast::<AtomicU8>() }.load(Ordering::Relaxed);
            // SAFETY: in bounds (contract).
            unsafe { dst.add(i).write(b) };
            i += 1;
        }
    }
    while i + 8 <= len {
        // SAFETY: in bounds (contract); `src + i` is 8-byte aligned (the
        // loop above, or `aligned8`), as AtomicU64 needs.
        let w = unsafe { &*src.add(i).cast::<AtomicU64>() }.load(Ordering::Relaxed);
        // SAFETY: in bounds (contract); the private side may be unaligned.
        unsafe { dst.add(i).cast::<u64>().write_unaligned(w) };
        i += 8;
    }
    while i < len {
        // SAFETY: as in the first loop.
        let b = unsafe { &*src.add(i).cast::<AtomicU8>() }.load(Ordering::Relaxed);
        // SAFETY: in bounds (contract).
        unsafe { dst.add(i).write(b) };
        i += 1;
    }
}

/// Copies `len` bytes from private `src` to shared `dst` (as [`load`], in
/// the other direction; `aligned8` is about `dst`).
///
/// # Safety
///
/// `src..src + len` is valid for reads and `dst..dst + len` for writes;
/// they do not overlap.
#[inline(always)]
unsafe fn store(src: *const u8, dst: *mut u8, len: usize, aligned8: bool) {
    // SAFETY: the ranges are valid and apart (contract).
    if unsafe { copy_at_once(src, dst, len) } {
        return;
    }
    let mut i = 0;
    if !aligned8 {
        while i < len && (dst as usize + i) % 8 != 0 {
            // SAFETY: in bounds (contract).
            let b = unsafe { src.add(i).read() };
            // SAFETY: in bounds (contract); any address is aligned for
            // AtomicU8.
            unsafe { &*dst.add(i).cast::<AtomicU8>() }.store(b, Ordering::Relaxed);
            i += 1;
        }
    }
    while i + 8 <= len {
        // SAFETY: in bounds (contract); the private side may be unaligned.
        let w = unsafe { src.add(i).cast::<u64>().read_unaligned() };
        // SAFETY: in bounds (contract); `dst + i` is 8-byte aligned.
        unsafe { &*dst.add(i).cast::<AtomicU64>() }.store(w, Ordering::Relaxed);
        i += 8;
    }
    while i < len {
        // SAFETY: as in the first loop.
        let b = unsafe { src.add(i).read() };
        // SAFETY: as in the first loop.
        unsafe { &*dst.add(i).cast::<AtomicU8>() }.store(b, Ordering::Relaxed);
        i += 1;
    }
}

/// Copies the bytes `src..src + dst.len()` of shared memory into `dst`.
///
/// # Safety
///
/// The shared range is valid for reads.
#[inline]
pub(crate) unsafe fn load_bytes(src: *const u8, dst: &mut [u8]) {
    // SAFETY: the shared range is valid (contract), `dst` is ours alone, so
    // the two cannot overlap.
    unsafe { load(src, dst.as_mut_ptr(), dst.len(), false) }
}

/// Copies `src` into the shared bytes `dst..dst + src.len()`.
///
/// # Safety
///
/// The shared range is valid for writes.
#[inline]
pub(crate) unsafe fn store_bytes(src: &[u8], dst: *mut u8) {
    // SAFETY: as in `load_bytes`.
    unsafe { store(src.as_ptr(), dst, src.len(), false) }
}

/// The bytes `n` values of `T` take, and whether a `T`-aligned address is
/// aligned for 8-byte words too.
#[inline(always)]
const fn item_span<T>(n: usize) -> (usize, bool) {
    (n * size_of::<T>(), align_of::<T>() % 8 == 0)
}

/// Copies `n` values of `T` out of shared memory at `src` into `dst`
/// (which holds room for them). `T` is plain data: any bytes a racing
/// writer leaves make a valid value.
///
/// # Safety
///
/// `src..src + n` is valid for reads and aligned for `T`; `dst..dst + n`
/// is valid for writes and does not overlap it.
#[inline(always)]
pub(crate) unsafe fn load_items<T: bytemuck::Pod>(src: *const T, dst: *mut T, n: usize) {
    let (len, aligned8) = item_span::<T>(n);
    // SAFETY: contract; `src` is aligned for T, so for 8 bytes if T is.
    unsafe { load(src.cast(), dst.cast(), len, aligned8) }
}

/// One value of `T` out of shared memory at `src` (as [`load_items`]).
///
/// # Safety
///
/// `src` is valid for reads and aligned for `T`.
#[inline(always)]
pub(crate) unsafe fn load_item<T: bytemuck::Pod>(src: *const T) -> T {
    let mut out = MaybeUninit::<T>::uninit();
    // SAFETY: `out` is our own, room for one T.
    unsafe { load_items(src, out.as_mut_ptr(), 1) };
    // SAFETY: every byte was written, and any bytes are a valid T (Pod).
    unsafe { out.assume_init() }
}

/// Copies `n` values of `T` from `src` into shared memory at `dst`.
///
/// # Safety
///
/// `dst..dst + n` is valid for writes and aligned for `T`; `src..src + n`
/// is valid for reads and does not overlap it.
#[inline(always)]
pub(crate) unsafe fn store_items<T: bytemuck::Pod>(src: *const T, dst: *mut T, n: usize) {
    let (len, aligned8) = item_span::<T>(n);
    // SAFETY: contract, as in `load_items`.
    unsafe { store(src.cast(), dst.cast(), len, aligned8) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_at_every_offset_both_ways() {
        let src: [u8; 600] = core::array::from_fn(|i| (i * 7) as u8 ^ 0x5a);
        #[repr(C, align(8))]
        struct Shared([u8; 616]);
        let lens = (0..=32).chain([255, 256, 257, 511, 600]);
        for off in 0..8 {
            for len in lens.clone() {
                let mut shared = Shared([0; 616]);
                // SAFETY: in bounds of `shared`, which nothing else uses.
                unsafe { store_bytes(&src[..len], shared.0.as_mut_ptr().add(off)) };
                assert_eq!(&shared.0[off..off + len], &src[..len], "store {off}+{len}");
                assert!(shared.0[..off].iter().all(|&b| b == 0), "store {off}+{len}");
                assert!(
                    shared.0[off + len..].iter().all(|&b| b == 0),
                    "store {off}+{len}"
                );
                let mut back = [0xffu8; 600];
                // SAFETY: in bounds of `shared`.
                unsafe { load_bytes(shared.0.as_ptr().add(off), &mut back[..len]) };
                assert_eq!(&back[..len], &src[..len], "load {off}+{len}");
                assert!(back[len..].iter().all(|&b| b == 0xff), "load {off}+{len}");
            }
        }
    }

    #[test]
    fn typed_items_round_trip() {
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        #[repr(C)]
        struct Odd([u8; 3]);
        let mut slots = [0u64; 4];
        let items = [1u64, 2, 3, u64::MAX];
        // SAFETY: four aligned u64 slots, ours alone.
        unsafe { store_items(items.as_ptr(), slots.as_mut_ptr(), 4) };
        assert_eq!(slots, items);
        // SAFETY: as above.
        assert_eq!(unsafe { load_item(slots.as_ptr().add(3)) }, u64::MAX);
        let mut odd = [Odd([0; 3]); 5];
        let from = [Odd([1, 2, 3]), Odd([4, 5, 6]), Odd([7, 8, 9])];
        // SAFETY: three slots of `odd` from index 1, ours alone.
        unsafe { store_items(from.as_ptr(), odd.as_mut_ptr().add(1), 3) };
        let mut out = [Odd([0; 3]); 3];
        // SAFETY: as above.
        unsafe { load_items(odd.as_ptr().add(1), out.as_mut_ptr(), 3) };
        assert_eq!(out, from);
        assert_eq!(odd[0], Odd([0; 3]));
        assert_eq!(odd[4], Odd([0; 3]));
    }
}
