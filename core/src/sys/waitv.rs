//! `futex_waitv` (Linux 5.16 and later): one sleep on up to
//! [`WAITV_MAX`] futex words at once, until any of them is woken or no
//! longer holds its expected value.
//!
//! This is what a waiter on many objects (`shmipc::wait`, the async waiter
//! thread) sleeps in. Like [`futex::wait`](super::futex::wait) it passes no
//! `FUTEX_PRIVATE_FLAG` (the words may be shared between processes) and
//! takes an absolute `CLOCK_MONOTONIC` deadline, so retries never stretch
//! a timeout. Callers re-check their objects after every return.

use crate::futex::Deadline;
use crate::sync::AtomicU32;

/// The kernel's limit on the words of one call (`FUTEX_WAITV_MAX`).
pub const WAITV_MAX: usize = 128;

/// `FUTEX2_SIZE_U32`: each word is 32 bits.
const FUTEX2_SIZE_U32: u32 = 0x02;

/// One word of a [`waitv`] call, laid out as the kernel's
/// `struct futex_waitv`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WaitvEntry {
    val: u64,
    uaddr: u64,
    flags: u32,
    reserved: u32,
}

impl WaitvEntry {
    /// Sleep while `word` holds `expected`. The entry keeps only the
    /// word's address: the caller keeps the word alive (mapped) until the
    /// [`waitv`] call that uses the entry has returned.
    pub fn new(word: &AtomicU32, expected: u32) -> WaitvEntry {
        WaitvEntry {
            val: u64::from(expected),
            uaddr: word.as_ptr() as usize as u64,
            flags: FUTEX2_SIZE_U32,
            reserved: 0,
        }
    }
}

/// Why [`waitv`] returned. Every outcome but [`Waitv::Unsupported`] means
/// "re-check your objects"; none of them says an object is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waitv {
    /// The word at this index was woken.
    Woken(usize),
    /// Some word no longer held its expected value when the call began, or
    /// a signal interrupted the sleep.
    Retry,
    /// The deadline passed.
    TimedOut,
    /// The kernel has no `futex_waitv` (`ENOSYS`, before 5.16), refused it
    /// (`EPERM` from a seccomp filter), or rejected the arguments (more
    /// than [`WAITV_MAX`] entries, none, or an address it cannot read):
    /// the caller must sleep some other way.
    Unsupported(i32),
}

/// Sleeps until one of `entries` is woken, one of them no longer holds its
/// expected value, or `deadline` passes (never, if `None`).
#[cfg(not(loom))]
pub fn waitv(entries: &[WaitvEntry], deadline: Option<&Deadline>) -> Waitv {
    if entries.is_empty() || entries.len() > WAITV_MAX {
        return Waitv::Unsupported(libc::EINVAL);
    }
    let ts;
    let ts_ptr = match deadline {
        Some(d) => {
            if d.has_passed() {
                return Waitv::TimedOut;
            }
            ts = d.timespec();
            &ts as *const libc::timespec
        }
        None => core::ptr::null(),
    };
    // SAFETY: `entries` is a valid array of `entries.len()` (1..=128)
    // `struct futex_waitv`s (repr(C), same layout) that outlives the call;
    // the words they name are kept alive by the caller (`WaitvEntry::new`);
    // `ts_ptr` is null or points at `ts`, alive for the call. Flags 0; the
    // timeout is absolute on CLOCK_MONOTONIC.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex_waitv,
            entries.as_ptr(),
            entries.len() as libc::c_uint,
            0 as libc::c_uint,
            ts_ptr,
            libc::CLOCK_MONOTONIC,
        )
    };
    if r >= 0 {
        return Waitv::Woken(r as usize);
    }
    // SAFETY: __errno_location returns the calling thread's errno slot.
    match unsafe { *libc::__errno_location() } {
        libc::ETIMEDOUT => Waitv::TimedOut,
        libc::EAGAIN | libc::EINTR => Waitv::Retry,
        e => Waitv::Unsupported(e),
    }
}

#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn a_moved_word_returns_at_once_and_a_still_one_times_out() {
        let a = AtomicU32::new(1);
        let b = AtomicU32::new(2);
        let moved = [WaitvEntry::new(&a, 1), WaitvEntry::new(&b, 3)];
        assert_eq!(waitv(&moved, None), Waitv::Retry);
        let still = [WaitvEntry::new(&a, 1), WaitvEntry::new(&b, 2)];
        let d = Deadline::after(Duration::from_millis(5));
        assert_eq!(waitv(&still, Some(&d)), Waitv::TimedOut);
    }

    #[test]
    fn a_wake_on_the_second_word_reports_its_index() {
        use crate::sync::Ordering;
        static A: AtomicU32 = AtomicU32::new(0);
        static B: AtomicU32 = AtomicU32::new(0);
        let t = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            B.store(1, Ordering::Release);
            crate::futex::wake_all(&B);
        });
        let e = [WaitvEntry::new(&A, 0), WaitvEntry::new(&B, 0)];
        let d = Deadline::after(Duration::from_secs(10));
        let out = waitv(&e, Some(&d));
        t.join().unwrap();
        // Woken, or B had moved before the call began.
        assert!(matches!(out, Waitv::Woken(1) | Waitv::Retry), "{out:?}");
    }

    #[test]
    fn too_many_entries_are_refused() {
        let a = AtomicU32::new(0);
        let e = [WaitvEntry::new(&a, 0); WAITV_MAX + 1];
        assert_eq!(waitv(&e, None), Waitv::Unsupported(libc::EINVAL));
        assert_eq!(waitv(&[], None), Waitv::Unsupported(libc::EINVAL));
    }
}
