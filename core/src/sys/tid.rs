//! Who the caller is: its kernel thread id, a stamp unique to the calling
//! thread, and a counter that tells a forked child from its parent.
//!
//! - [`current`] is the kernel's id of the calling thread, as the caller's
//!   pid namespace numbers it. A [`Lock`](crate::Lock) records it for
//!   people to read (debuggers, `shmipc inspect`); nothing is decided by
//!   it, because another namespace numbers the same thread differently.
//! - [`thread_stamp`] is what decisions use: a per-process random nonce
//!   (new in every forked child) and a per-process thread number. Two
//!   live threads anywhere on the machine share a stamp only if two
//!   processes drew the same 32-bit nonce.
//! - [`fork_generation`] goes up in every forked child, so that state a
//!   child inherited from its parent (a peer slot, say) can be told stale.
//!
//! With the `std` feature the stamp is cached in a thread-local, so taking a
//! lock makes no system call. A `pthread_atfork` child handler (installed on
//! first use) forgets the cached values in a forked child. Children created
//! with a raw `clone`/`vfork` system call that bypasses `pthread_atfork`
//! must not take a lock that their parent thread holds.

use crate::peers::Token;

/// The bits of a lock word that hold an owner (`FUTEX_TID_MASK`).
pub const TID_MASK: u32 = 0x3fff_ffff;

/// The calling thread's kernel id (in the caller's pid namespace): non-zero
/// and within [`TID_MASK`].
#[inline]
pub fn current() -> u32 {
    imp::current()
}

/// A non-zero stamp naming the calling thread: the process's nonce in the
/// high 32 bits, the thread's number within the process in the low 32.
#[inline]
pub fn thread_stamp() -> u64 {
    imp::thread_stamp()
}

/// How many times this process's ancestry has forked since it started
/// (0 in a process that never forked, 1 in its children, ...): a value
/// that differs between a forked child and its parent at the moment of the
/// fork.
#[inline]
pub fn fork_generation() -> u32 {
    imp::fork_generation()
}

/// [`fork_generation`] without making sure the fork handler is installed:
/// one relaxed load, for fast paths that compare it with a value that
/// [`fork_generation`] returned earlier in this process (which installed
/// the handler, so every later fork is counted).
#[inline]
pub(crate) fn fork_generation_seen() -> u32 {
    #[cfg(loom)]
    {
        0
    }
    #[cfg(not(loom))]
    {
        FORKS.load(crate::sync::Ordering::Relaxed)
    }
}

/// The token of the calling process in memory that has no peer table (see
/// [`crate::peers::Local`]).
#[inline]
pub fn local_token() -> Token {
    Token::unjudged((thread_stamp() >> 32) as u32)
}

#[cfg(any(loom, miri))]
fn fresh_id() -> u32 {
    // Loom threads and Miri threads have no kernel ids we can ask for cheaply;
    // any id unique within the process serves the algorithms equally well.
    #[allow(clippy::disallowed_types)]
    static NEXT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);
    let id = NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    (id % TID_MASK).max(1)
}

#[cfg(not(any(loom, miri)))]
fn fresh_id() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
    // Linux thread ids are below PID_MAX_LIMIT (2^22), far inside the mask.
    tid & TID_MASK
}

/// A fresh, non-zero 32-bit nonce for this process.
#[cfg(not(any(loom, miri)))]
fn fresh_nonce() -> u32 {
    let mut n = 0u32;
    // SAFETY: getrandom writes at most 4 bytes into `n`, which is ours.
    let got = unsafe { libc::getrandom((&mut n as *mut u32).cast(), 4, libc::GRND_NONBLOCK) };
    if got != 4 {
        // No entropy yet (very early boot) or no getrandom: mix what we
        // have. Uniqueness is a convenience here (a clash only weakens
        // deadlock detection between two processes), never a safety matter.
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to fill; the clock always exists.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() } as u32;
        n = pid.rotate_left(16) ^ (ts.tv_nsec as u32) ^ (ts.tv_sec as u32).rotate_left(7);
    }
    n.max(1)
}

#[cfg(any(loom, miri))]
fn fresh_nonce() -> u32 {
    0x5eed
}

/// [`install_atfork_once`]'s state for this module's fork handler.
#[cfg(not(loom))]
static ATFORK: crate::sync::AtomicU32 = crate::sync::AtomicU32::new(ATFORK_NONE);
/// This process's nonce; 0 until first asked (and again in a forked
/// child, which is another process).
#[cfg(not(loom))]
static NONCE: crate::sync::AtomicU32 = crate::sync::AtomicU32::new(0);
/// How many forks this process's ancestry has made ([`fork_generation`]).
#[cfg(not(loom))]
static FORKS: crate::sync::AtomicU32 = crate::sync::AtomicU32::new(0);

/// What a forked child forgets of its parent (from the fork handler):
/// the nonce, drawn again on next use; and the fork is counted.
#[cfg(not(loom))]
extern "C" fn forget_parent() {
    NONCE.store(0, crate::sync::Ordering::Relaxed);
    FORKS.fetch_add(1, crate::sync::Ordering::Relaxed);
}

/// The process's nonce ([`NONCE`]), drawn on first use; threads racing
/// here keep whichever nonce won.
#[cfg(not(loom))]
fn nonce() -> u32 {
    use crate::sync::Ordering;
    match NONCE.load(Ordering::Relaxed) {
        0 => {
            let fresh = fresh_nonce();
            match NONCE.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => fresh,
                Err(won) => won,
            }
        }
        n => n,
    }
}

/// [`install_atfork_once`]'s states.
#[cfg(not(loom))]
const ATFORK_NONE: u32 = 0;
#[cfg(not(loom))]
const ATFORK_INSTALLING: u32 = 1;
#[cfg(not(loom))]
const ATFORK_DONE: u32 = 2;

/// Registers `child` with `pthread_atfork`, once per process, and returns
/// only once it is registered: a thread that finds another one
/// registering waits for it, so no thread goes on (and forks) while the
/// handler is not yet there, which would give that child its parent's fork
/// generation and so its parent's token.
///
/// SYNC POINT: the Release store of `ATFORK_DONE` pairs with the Acquire
/// loads here; the flag orders only the registration, which
/// `pthread_atfork` keeps in its own registry.
///
/// Inline, so that the check every fork-generation read makes (one load,
/// once the handler is there) costs no call; the registration is
/// [`install_atfork_slow`].
#[cfg(not(loom))]
#[inline]
fn install_atfork_once(state: &crate::sync::AtomicU32, child: extern "C" fn()) {
    // Miri cannot fork (nor call pthread_atfork).
    if cfg!(miri) || state.load(crate::sync::Ordering::Acquire) == ATFORK_DONE {
        return;
    }
    install_atfork_slow(state, child);
}

/// [`install_atfork_once`] before the handler is known to be there.
#[cfg(not(loom))]
#[cold]
fn install_atfork_slow(state: &crate::sync::AtomicU32, child: extern "C" fn()) {
    use crate::sync::Ordering;
    match state.compare_exchange(
        ATFORK_NONE,
        ATFORK_INSTALLING,
        Ordering::Acquire,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            // SAFETY: `child` is an `extern "C"` function with no
            // arguments, as pthread_atfork expects; the caller's handler
            // is async-signal-safe (atomics and thread-locals only).
            unsafe { libc::pthread_atfork(None, None, Some(child)) };
            state.store(ATFORK_DONE, Ordering::Release);
        }
        Err(_) => {
            // Registration is one short call in another thread: wait for it.
            while state.load(Ordering::Acquire) != ATFORK_DONE {
                core::hint::spin_loop();
            }
        }
    }
}

#[cfg(loom)]
mod imp {
    loom::thread_local! {
        static TID: u32 = super::fresh_id();
    }

    pub fn current() -> u32 {
        TID.with(|t| *t)
    }

    pub fn thread_stamp() -> u64 {
        u64::from(super::fresh_nonce()) << 32 | u64::from(current())
    }

    pub fn fork_generation() -> u32 {
        0
    }
}

#[cfg(all(not(loom), any(feature = "std", test)))]
mod imp {
    extern crate std;

    use core::cell::Cell;

    use crate::sync::{AtomicU32, Ordering};

    std::thread_local! {
        /// The calling thread's kernel id and stamp; 0 until first asked.
        static ID: Cell<(u32, u64)> = const { Cell::new((0, 0)) };
    }

    /// The next thread number to hand out.
    static NEXT_THREAD: AtomicU32 = AtomicU32::new(1);

    extern "C" fn forget_in_child() {
        // Only the forking thread exists in the child, and its cached
        // values are its parent's: drop them so the next use asks again.
        let _ = ID.try_with(|t| t.set((0, 0)));
        super::forget_parent();
    }

    /// Installs the fork handler, once per process
    /// ([`super::install_atfork_once`]). The handler only touches a
    /// thread-local Cell and atomics, which is fine in a freshly forked
    /// child where only the forking thread runs.
    #[inline]
    fn install_atfork() {
        super::install_atfork_once(&super::ATFORK, forget_in_child);
    }

    #[cold]
    fn fetch() -> (u32, u64) {
        install_atfork();
        let id = super::fresh_id();
        let number = NEXT_THREAD.fetch_add(1, Ordering::Relaxed).max(1);
        let stamp = u64::from(super::nonce()) << 32 | u64::from(number);
        let _ = ID.try_with(|t| t.set((id, stamp)));
        (id, stamp)
    }

    #[inline]
    fn get() -> (u32, u64) {
        match ID.try_with(Cell::get) {
            Ok((0, _)) | Err(_) => fetch(),
            Ok(pair) => pair,
        }
    }

    #[inline]
    pub fn current() -> u32 {
        get().0
    }

    #[inline]
    pub fn thread_stamp() -> u64 {
        get().1
    }

    #[inline]
    pub fn fork_generation() -> u32 {
        install_atfork();
        super::fork_generation_seen()
    }
}

#[cfg(all(not(loom), not(any(feature = "std", test))))]
mod imp {
    /// Installs the fork handler, once per process
    /// ([`super::install_atfork_once`]); the handler only stores to atomics.
    #[inline]
    fn install_atfork() {
        super::install_atfork_once(&super::ATFORK, super::forget_parent);
    }

    #[inline]
    pub fn current() -> u32 {
        // Under Miri `fresh_id` counts up on every call, and without
        // thread-locals nothing could remember it; Miri's `pthread_self`
        // numbers its threads, which is stable per thread and distinct
        // among live ones, as the kernel id is.
        #[cfg(miri)]
        {
            // SAFETY: pthread_self has no preconditions and cannot fail.
            let me = unsafe { libc::pthread_self() } as u32;
            (me.wrapping_add(1) & super::TID_MASK).max(1)
        }
        #[cfg(not(miri))]
        {
            super::fresh_id()
        }
    }

    #[inline]
    pub fn thread_stamp() -> u64 {
        install_atfork();
        let nonce = super::nonce();
        // Without thread-locals the kernel id numbers the thread: unique
        // among the process's live threads, which is what a stamp needs.
        u64::from(nonce) << 32 | u64::from(current())
    }

    #[inline]
    pub fn fork_generation() -> u32 {
        install_atfork();
        super::fork_generation_seen()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_per_thread_and_stable() {
        let a = thread_stamp();
        assert_eq!(a, thread_stamp());
        assert_ne!(a, 0);
        let b = std::thread::spawn(thread_stamp).join().unwrap();
        assert_ne!(a, b, "another thread, another stamp");
        assert_eq!(a >> 32, b >> 32, "one process, one nonce");
        assert_eq!(local_token(), local_token());
        assert_eq!(local_token().slot(), None);
    }

    #[cfg(not(miri))]
    #[test]
    fn a_forked_child_is_told_apart() {
        let stamp = thread_stamp();
        let gen = fork_generation();
        // SAFETY: the child only calls async-signal-safe-enough functions
        // of ours (thread-locals and atomics) and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = thread_stamp() != stamp && fork_generation() == gen + 1;
            // SAFETY: ending the child without unwinding into the harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child we just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
