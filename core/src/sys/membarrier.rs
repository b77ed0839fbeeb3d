//! Asymmetric memory barriers: a cheap side and a heavy side.
//!
//! A notifier that publishes an item and then checks for sleepers needs a
//! store-then-load barrier between the two, or a sleeper that registered
//! just then could miss the item and sleep through it. A full barrier costs
//! little in itself, but placed right after the publishing store it stalls
//! until that store's cache line comes back from the other core — on every
//! item. For the SPSC queue that was most of its cost (about 40 million
//! items a second across processes, against close to 300 million without).
//!
//! The kernel offers a way to move that cost to the rare side:
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` makes every running thread
//! of every process that registered for it execute a full barrier before
//! the call returns. So a notifier whose process has registered
//! ([`register`]) may check for sleepers with a plain load after a compiler
//! fence, and a sleeper calls [`heavy`] after it registers as a sleeper and
//! before it re-checks the queue: either the sleeper's re-check sees the
//! item, or the notifier's load sees the sleeper.
//!
//! Where `membarrier` is missing or forbidden (old kernels, some seccomp
//! profiles), [`register`] fails and notifiers keep their full barrier; a
//! sleeper whose [`heavy`] fails sleeps in short slices instead, so a wake-up
//! can be late but never lost. Loom and Miri cannot model `membarrier`:
//! there, [`register`] always fails and the full-barrier protocol is what
//! they check.

#[cfg(not(any(loom, miri)))]
use crate::sync::{AtomicU8, Ordering};

/// Whether this process is registered: 0 not yet tried, 1 yes, 2 no.
#[cfg(not(any(loom, miri)))]
static STATE: AtomicU8 = AtomicU8::new(0);

#[cfg(not(any(loom, miri)))]
const CMD_GLOBAL_EXPEDITED: libc::c_long = 1 << 1;
#[cfg(not(any(loom, miri)))]
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_long = 1 << 2;

#[cfg(not(any(loom, miri)))]
fn membarrier(cmd: libc::c_long) -> bool {
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) == 0 }
}

#[cfg(not(any(loom, miri)))]
extern "C" fn reregister_in_child() {
    // A forked child is a new process; make sure it is a target too, and if
    // it cannot be, its notifiers fall back to the full barrier.
    let ok = membarrier(CMD_REGISTER_GLOBAL_EXPEDITED);
    STATE.store(if ok { 1 } else { 2 }, Ordering::Relaxed);
}

/// Registers this process as a target of [`heavy`] barriers, once; returns
/// whether its notifiers may use the cheap side ([`registered`]).
pub fn register() -> bool {
    #[cfg(any(loom, miri))]
    return false;
    #[cfg(not(any(loom, miri)))]
    {
        match STATE.load(Ordering::Relaxed) {
            1 => return true,
            2 => return false,
            _ => {}
        }
        let ok = membarrier(CMD_REGISTER_GLOBAL_EXPEDITED);
        if ok && STATE.swap(1, Ordering::Relaxed) == 0 {
            // SAFETY: the handler only makes a system call and stores to a
            // static, which is fine in a freshly forked child.
            unsafe { libc::pthread_atfork(None, None, Some(reregister_in_child)) };
        } else if !ok {
            STATE.store(2, Ordering::Relaxed);
        }
        ok
    }
}

/// Whether this process is registered, so that its notifiers may check for
/// sleepers with a plain load. One relaxed load of a process-local static.
#[inline]
pub fn registered() -> bool {
    #[cfg(any(loom, miri))]
    return false;
    #[cfg(not(any(loom, miri)))]
    return STATE.load(Ordering::Relaxed) == 1;
}

/// Makes every running thread of every registered process execute a full
/// memory barrier; returns false if the kernel will not.
pub fn heavy() -> bool {
    #[cfg(any(loom, miri))]
    return false;
    #[cfg(not(any(loom, miri)))]
    return membarrier(CMD_GLOBAL_EXPEDITED);
}
