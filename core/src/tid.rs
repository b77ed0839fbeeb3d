//! The calling thread's kernel thread id, which a held [`Lock`](crate::Lock)
//! records in its word.
//!
//! The id is what the kernel's robust-futex protocol stores in a lock word
//! (`FUTEX_TID_MASK`), and it is unique across every process on the machine
//! at any one time, so it names an owner across process boundaries.
//!
//! With the `std` feature the id is cached in a thread-local, so taking a
//! lock makes no system call. A forked child starts with a copy of its
//! parent's thread-locals, so a `pthread_atfork` handler (installed on first
//! use) forgets the cached id in the child. Children created with a raw
//! `clone`/`vfork` system call that bypasses `pthread_atfork` must not take a
//! lock that their parent thread holds.

/// The bits of a lock word that hold a thread id (`FUTEX_TID_MASK`).
pub const TID_MASK: u32 = 0x3fff_ffff;

/// The calling thread's id: non-zero and within [`TID_MASK`].
#[inline]
pub fn current() -> u32 {
    imp::current()
}

/// The calling thread's liveness stamp (see [`crate::liveness`]): its id and
/// the low 32 bits of its start time, or 0 where the start time is not
/// cached (no `std`, Miri, loom).
#[inline]
pub fn current_stamp() -> u64 {
    imp::current_stamp()
}

/// The calling process's liveness stamp: `pid << 32 | start_low32` of the
/// process (its main thread's start time), or `pid << 32` where the start
/// time is not known. Queues record it where a peer may have to ask whether
/// the process that reserved or claimed something still lives: a process,
/// not a thread, because a grant may move between threads of one process.
/// Under loom and Miri it is a fixed stamp naming process 1.
#[inline]
pub fn process_stamp() -> u64 {
    imp::process_stamp()
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

#[cfg(loom)]
mod imp {
    loom::thread_local! {
        static TID: u32 = super::fresh_id();
    }

    pub fn current() -> u32 {
        TID.with(|t| *t)
    }

    pub fn current_stamp() -> u64 {
        0
    }

    pub fn process_stamp() -> u64 {
        1 << 32
    }
}

#[cfg(all(not(loom), any(feature = "std", test)))]
mod imp {
    extern crate std;

    use core::cell::Cell;

    use crate::sync::{AtomicBool, AtomicU64, Ordering};

    std::thread_local! {
        /// The calling thread's id and liveness stamp; 0 until first asked.
        static ID: Cell<(u32, u64)> = const { Cell::new((0, 0)) };
    }

    static ATFORK_INSTALLED: AtomicBool = AtomicBool::new(false);

    /// The process's stamp; 0 until first asked (and again in a forked
    /// child, which is another process).
    static PROCESS: AtomicU64 = AtomicU64::new(0);

    extern "C" fn forget_in_child() {
        // Only the forking thread exists in the child, and its cached id is
        // the parent's thread's id: drop it so the next lock asks again.
        let _ = ID.try_with(|t| t.set((0, 0)));
        PROCESS.store(0, Ordering::Relaxed);
    }

    fn install_atfork() {
        if !ATFORK_INSTALLED.swap(true, Ordering::AcqRel) {
            // SAFETY: registering a child handler that only touches a
            // thread-local Cell and an atomic is async-signal-safe enough
            // for the post-fork child, where only the forking thread runs.
            unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
        }
    }

    #[inline]
    pub fn process_stamp() -> u64 {
        // A relaxed cache: every thread computes the same value.
        match PROCESS.load(Ordering::Relaxed) {
            0 => fetch_process(),
            s => s,
        }
    }

    #[cold]
    fn fetch_process() -> u64 {
        install_atfork();
        let pid = own_pid();
        let stamp = own_process_start().map_or(u64::from(pid) << 32, |t| {
            crate::liveness::make_stamp(pid, t)
        });
        PROCESS.store(stamp, Ordering::Relaxed);
        stamp
    }

    #[cfg(not(miri))]
    fn own_pid() -> u32 {
        // SAFETY: getpid takes no arguments and cannot fail.
        (unsafe { libc::getpid() }) as u32 & super::TID_MASK
    }

    #[cfg(miri)]
    fn own_pid() -> u32 {
        1
    }

    #[cfg(not(miri))]
    fn own_process_start() -> Option<u64> {
        crate::liveness::read_stat(b"/proc/self/stat\0").map(|(_, start)| start)
    }

    #[cfg(miri)]
    fn own_process_start() -> Option<u64> {
        None
    }

    #[cold]
    fn fetch() -> (u32, u64) {
        install_atfork();
        let id = super::fresh_id();
        let stamp = own_start_ticks().map_or(0, |t| crate::liveness::make_stamp(id, t));
        let _ = ID.try_with(|t| t.set((id, stamp)));
        (id, stamp)
    }

    #[cfg(not(miri))]
    fn own_start_ticks() -> Option<u64> {
        crate::liveness::read_stat(b"/proc/thread-self/stat\0").map(|(_, start)| start)
    }

    #[cfg(miri)]
    fn own_start_ticks() -> Option<u64> {
        None
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
    pub fn current_stamp() -> u64 {
        get().1
    }
}

#[cfg(all(not(loom), not(any(feature = "std", test))))]
mod imp {
    #[inline]
    pub fn current() -> u32 {
        super::fresh_id()
    }

    #[inline]
    pub fn current_stamp() -> u64 {
        0
    }

    #[inline]
    pub fn process_stamp() -> u64 {
        // SAFETY: getpid takes no arguments and cannot fail.
        u64::from((unsafe { libc::getpid() }) as u32 & super::TID_MASK) << 32
    }
}
