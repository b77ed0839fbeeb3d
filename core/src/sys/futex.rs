//! Process-shared futex wait and wake, with absolute `CLOCK_MONOTONIC`
//! deadlines.
//!
//! Every blocking operation in this crate sleeps here and nowhere else. The
//! rules it keeps:
//!
//! - **Process-shared.** The futex word may live in memory that several
//!   processes map, so we never pass `FUTEX_PRIVATE_FLAG`: a private futex is
//!   keyed by the (process-local) virtual address and would never see a wake
//!   from another process.
//! - **Absolute deadlines.** `FUTEX_WAIT_BITSET` takes an absolute
//!   `CLOCK_MONOTONIC` time, so a wait that is interrupted and retried never
//!   stretches its timeout, and wall-clock jumps do not move it.
//! - **Callers re-check.** [`wait`] returns on a wake, on a signal (`EINTR`),
//!   when the word no longer holds the expected value, or spuriously. Every
//!   caller loops and re-checks its own condition, which is also how `EINTR`
//!   is retried.
//! - **Spin first.** A futex round trip costs microseconds on a virtual
//!   machine; [`spin_until`] polls briefly with a growing back-off before the
//!   caller commits to sleeping.
//!
//! Under `cfg(loom)` the syscall is replaced by a model (see `model`): a
//! waiter checks the word and joins a list of sleepers under one global
//! mutex, and a waker takes the mutex and marks as many sleepers *of that
//! word* as it wakes — exactly one for [`wake_one`] — which is the atomicity
//! the kernel gives (it compares the word under the hash-bucket lock). A
//! sleeper returns only when it was marked or its deadline passed, so a
//! missed wake-up shows up in loom as a deadlock. Time is a modelled clock
//! that stands still until a thread of the model moves it
//! (`model::advance`); a sleeper whose deadline the clock passes returns
//! [`WaitOutcome::TimedOut`], which is how loom models reach the timeout
//! and owner-check paths.

use core::time::Duration;

use crate::sync::AtomicU32;

/// Why [`wait`] returned. Either way the caller re-checks its condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken, interrupted, or the word no longer held the expected value.
    Retry,
    /// The deadline passed.
    TimedOut,
}

/// An absolute point on the `CLOCK_MONOTONIC` clock.
///
/// Blocking calls turn their `Duration` into a deadline once, up front, so
/// that spinning, spurious wake-ups and `EINTR` retries all count against the
/// same budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    secs: i64,
    nanos: i64,
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Deadline {
    /// The current time on `CLOCK_MONOTONIC` (under loom, on the model's
    /// clock: see `model::now`).
    pub fn now() -> Deadline {
        #[cfg(loom)]
        return model::now();
        #[cfg(not(loom))]
        {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC
            // always exists on Linux, so the call cannot fail.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            // time_t and c_long are i64 on 64-bit Linux but not everywhere.
            #[allow(clippy::useless_conversion)]
            Deadline {
                secs: i64::from(ts.tv_sec),
                nanos: i64::from(ts.tv_nsec),
            }
        }
    }

    /// This time in nanoseconds since the clock's origin (0 for a time
    /// before it, saturating past `u64::MAX`).
    pub fn as_nanos(&self) -> u64 {
        let ns = i128::from(self.secs) * i128::from(NANOS_PER_SEC) + i128::from(self.nanos);
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// The deadline `timeout` from now. A timeout too large to represent
    /// saturates (it is, for every purpose, "never").
    pub fn after(timeout: Duration) -> Deadline {
        let now = Deadline::now();
        let add_secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        let mut secs = now.secs.saturating_add(add_secs);
        let mut nanos = now.nanos + i64::from(timeout.subsec_nanos());
        if nanos >= NANOS_PER_SEC {
            nanos -= NANOS_PER_SEC;
            secs = secs.saturating_add(1);
        }
        Deadline { secs, nanos }
    }

    /// Whether the deadline is already behind us.
    pub fn has_passed(&self) -> bool {
        Deadline::now() >= *self
    }

    /// The deadline as a `timespec` (for system calls that take one).
    #[cfg(not(loom))]
    pub(crate) fn timespec(&self) -> libc::timespec {
        libc::timespec {
            tv_sec: self.secs.max(0) as libc::time_t,
            tv_nsec: self.nanos as _,
        }
    }

    /// The time left until the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        let now = Deadline::now();
        if now >= *self {
            return Duration::ZERO;
        }
        let mut secs = self.secs - now.secs;
        let mut nanos = self.nanos - now.nanos;
        if nanos < 0 {
            nanos += NANOS_PER_SEC;
            secs -= 1;
        }
        Duration::new(secs as u64, nanos as u32)
    }
}

/// Converts an optional timeout into an optional deadline.
#[inline]
pub fn deadline_after(timeout: Option<Duration>) -> Option<Deadline> {
    timeout.map(Deadline::after)
}

/// How many rounds of back-off [`spin_until`] makes: round `k` spins `2^k`
/// times, so three rounds are 7 pause instructions and four looks at the
/// condition.
///
/// Why so few: a pause costs ~10 ns on older bare-metal x86, ~40 ns on
/// Skylake and later, and ~100 ns on the 2-core AMD EPYC virtual machine
/// our benchmarks ran on, where the 127 pauses of seven rounds came to
/// 12–17 µs. That is longer than a whole futex wake-up there (~5 µs with
/// both parties on one core), so in a blocking round trip (`compare`'s
/// `rt_block`, `sem_pingpong`, measured with both parties on one core) every
/// wait spun the full budget and then slept anyway: 13.6 µs per round trip
/// against 6.0 µs for a bare futex pair. With three rounds the spin stays
/// well under one wake-up on any of these machines (shmipc 5.7 µs, futex
/// 6.2 µs in the same run), and a partner that answers within a few hundred
/// nanoseconds (a lock held for a short critical section) is still caught
/// without a system call.
#[cfg(not(loom))]
const SPIN_ROUNDS: u32 = 3;

/// Polls `ready` with a growing back-off, and returns whether it became true
/// before the spin budget ran out. Callers spin before they sleep, so a
/// partner that answers within a microsecond or two is seen without any
/// system call.
#[inline]
pub fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    #[cfg(not(loom))]
    for round in 0..SPIN_ROUNDS {
        for _ in 0..(1u32 << round) {
            crate::sync::spin_loop();
        }
        if ready() {
            return true;
        }
    }
    false
}

/// How long [`wait`] sleeps, in plain time, when the kernel refuses to
/// wait on a futex at all (a seccomp filter that forbids `futex`, say).
pub const FALLBACK_SLICE: Duration = Duration::from_millis(1);

/// Whether this build has the `strict-wakes` feature (for tests only):
/// sleeps that would also end at the next periodic owner check, or in
/// short slices because the kernel refused a heavy barrier, end only when
/// woken or at their caller's deadline. A wake-up the protocol fails to
/// deliver then costs the whole timeout instead of one slice, so a test
/// that treats a timeout as a failure sees every lost wake. Dead peers are
/// then noticed only when a caller's deadline passes.
#[doc(hidden)]
pub const STRICT_WAKES: bool = cfg!(feature = "strict-wakes");

/// When a sleep that also watches for a dead peer ends: at the earlier of
/// the caller's `deadline` and the next owner `check`, or, with
/// [`STRICT_WAKES`], at the caller's deadline only (`None`: when woken).
#[inline]
pub(crate) fn sleep_end<'a>(
    deadline: Option<&'a Deadline>,
    check: &'a Deadline,
) -> Option<&'a Deadline> {
    match deadline {
        _ if STRICT_WAKES => deadline,
        Some(d) if d < check => Some(d),
        _ => Some(check),
    }
}

/// Sleeps while `word` holds `expected`, until woken or `deadline` passes.
///
/// Returns at once (with [`WaitOutcome::Retry`]) if the word already differs.
/// May return spuriously; the caller re-checks its condition and calls again.
/// If the kernel refuses the futex (`ENOSYS`, `EPERM`, `EINVAL`, ...), it
/// sleeps [`FALLBACK_SLICE`] instead of returning at once, so no caller
/// spins.
#[inline]
pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> WaitOutcome {
    imp::wait(word, expected, deadline)
}

/// [`wait`], but for at most one
/// [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL) (or until
/// `deadline`, if that is sooner). For sleepers whose waker changes the
/// word's state first and wakes after (a set, a release, a notify): a waker
/// killed or stopped between the two never wakes anyone, and a sleeper that
/// slept on would sleep for ever although the state says to go on. With
/// slices, it re-reads its state within one interval.
///
/// Returns [`WaitOutcome::TimedOut`] when the slice ends too: callers
/// decide "timed out" by their own deadline, not by the outcome. With
/// [`STRICT_WAKES`] there are no slices. Under loom it is [`wait`] (the models kill no one, and extra timed waits multiply
/// the interleavings they explore).
#[inline]
pub fn wait_sliced(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> WaitOutcome {
    #[cfg(loom)]
    return wait(word, expected, deadline);
    #[cfg(not(loom))]
    {
        let slice = Deadline::after(crate::lock::OWNER_CHECK_INTERVAL);
        // With `STRICT_WAKES` no slice: a wake lost by the protocol then
        // costs the caller's whole timeout, which strict tests see.
        wait(word, expected, sleep_end(deadline, &slice))
    }
}

/// Raises the `waiters` bit on `word`, so that the next change that makes
/// a sleeper's condition true also wakes it, and returns the word as it
/// now is (the value to sleep on); `None`, raising nothing, once
/// `ready(word)` says there is nothing to wait for. `order` orders every
/// load of the word, as the caller's protocol asks.
#[inline]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn announce_waiter(
    word: &AtomicU32,
    waiters: u32,
    order: crate::sync::Ordering,
    ready: impl Fn(u32) -> bool,
) -> Option<u32> {
    let mut state = word.load(order);
    loop {
        if ready(state) {
            return None;
        }
        if state & waiters != 0 {
            return Some(state);
        }
        match word.compare_exchange_weak(state, state | waiters, order, order) {
            Ok(_) => return Some(state | waiters),
            Err(s) => state = s,
        }
    }
}

/// Wakes at most one process or thread sleeping on `word`. Returns how many
/// were woken.
#[inline]
pub fn wake_one(word: &AtomicU32) -> usize {
    imp::wake(word, 1)
}

/// Wakes every process and thread sleeping on `word`. Returns how many were
/// woken.
#[inline]
pub fn wake_all(word: &AtomicU32) -> usize {
    imp::wake(word, i32::MAX)
}

/// With the `counters` feature (for tests): how many `FUTEX_WAKE` system
/// calls this process has made, so that a test can assert that a path
/// makes none (or few), rather than time it.
#[cfg(all(feature = "counters", not(loom)))]
pub fn wake_calls() -> u64 {
    imp::WAKE_CALLS.load(crate::sync::Ordering::Relaxed)
}

#[cfg(all(not(loom), target_os = "linux"))]
mod imp {
    use super::{Deadline, WaitOutcome};
    use crate::sync::AtomicU32;

    /// Match any waiter: we use the bitset variant only for its absolute
    /// `CLOCK_MONOTONIC` timeout.
    const BITSET_MATCH_ANY: u32 = 0xffff_ffff;

    #[cold]
    pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> WaitOutcome {
        let ts;
        let ts_ptr = match deadline {
            Some(d) => {
                if d.secs < 0 {
                    return WaitOutcome::TimedOut;
                }
                ts = libc::timespec {
                    tv_sec: d.secs as libc::time_t,
                    tv_nsec: d.nanos as _,
                };
                &ts as *const libc::timespec
            }
            None => core::ptr::null(),
        };
        // SAFETY: `word` is a live AtomicU32, so its address is valid and
        // 4-byte aligned for the kernel to read; `ts_ptr` is null or points at
        // `ts`, which outlives the call. FUTEX_WAIT_BITSET without
        // FUTEX_CLOCK_REALTIME measures the absolute timeout on
        // CLOCK_MONOTONIC. No FUTEX_PRIVATE_FLAG: the word may be shared
        // between processes.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT_BITSET,
                expected,
                ts_ptr,
                core::ptr::null::<u32>(),
                BITSET_MATCH_ANY,
            )
        };
        if r == 0 {
            return WaitOutcome::Retry;
        }
        match errno() {
            libc::ETIMEDOUT => WaitOutcome::TimedOut,
            // The value changed, or a signal came: the caller re-checks
            // and, if it must, waits again.
            libc::EAGAIN | libc::EINTR => WaitOutcome::Retry,
            // The kernel will not sleep on this word at all (ENOSYS or
            // EPERM from a seccomp filter, EINVAL, EFAULT). Returning at
            // once would make every caller spin; sleep a short slice of
            // plain time instead, so waits stay bounded and cheap, and
            // wake-ups are late (at most one slice), never lost: callers
            // re-check after every return.
            _ => sleep_instead(deadline),
        }
    }

    /// What `wait` does when futexes fail: sleep until the deadline or for
    /// [`FALLBACK_SLICE`](super::FALLBACK_SLICE), whichever comes first.
    #[cold]
    fn sleep_instead(deadline: Option<&Deadline>) -> WaitOutcome {
        let slice = Deadline::after(super::FALLBACK_SLICE);
        let (until, last) = match deadline {
            Some(d) if *d <= slice => (*d, true),
            _ => (slice, false),
        };
        let ts = libc::timespec {
            tv_sec: until.secs as libc::time_t,
            tv_nsec: until.nanos as _,
        };
        // SAFETY: `ts` is a valid timespec that outlives the call; a null
        // remainder is allowed with TIMER_ABSTIME. EINTR just ends the
        // sleep early, which callers tolerate.
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                core::ptr::null_mut(),
            )
        };
        if last && until.has_passed() {
            WaitOutcome::TimedOut
        } else {
            WaitOutcome::Retry
        }
    }

    /// `FUTEX_WAKE` calls made by this process (the `counters` feature).
    #[cfg(feature = "counters")]
    pub static WAKE_CALLS: crate::sync::AtomicU64 = crate::sync::AtomicU64::new(0);

    #[inline]
    pub fn wake(word: &AtomicU32, count: i32) -> usize {
        #[cfg(feature = "counters")]
        WAKE_CALLS.fetch_add(1, crate::sync::Ordering::Relaxed);
        // SAFETY: `word` is a live, aligned AtomicU32; FUTEX_WAKE only uses
        // its address as a key and does not dereference anything else.
        let r = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE,
                count,
                core::ptr::null::<libc::timespec>(),
            )
        };
        if r < 0 {
            0
        } else {
            r as usize
        }
    }

    #[inline]
    fn errno() -> i32 {
        // SAFETY: __errno_location returns the calling thread's errno slot,
        // which is always valid to read.
        unsafe { *libc::__errno_location() }
    }
}

#[cfg(loom)]
mod imp {
    pub use super::model::{wait, wake};
}

/// The futex and the clock as loom sees them (only under `cfg(loom)`).
///
/// **Futex.** One global loom mutex stands for the kernel's hash-bucket
/// lock. [`wait`](super::wait) compares the word under it and, if the word
/// still holds the expected value, appends itself to a list of sleepers and
/// sleeps on a loom condition variable; it returns [`WaitOutcome::Retry`]
/// only once a waker has marked *it* woken, and [`WaitOutcome::TimedOut`]
/// once the clock has passed its deadline. A wake marks at most `count`
/// unmarked sleepers of the same word, oldest first, as `FUTEX_WAKE`
/// does; [`wake_one`](super::wake_one) really wakes one, so a protocol that
/// needs a woken thread to pass the wake on is checked for it. Loom has
/// no spurious wake-ups, so neither does this model: a wake-up the code
/// forgets is a deadlock in loom, not a late return.
///
/// **Clock.** Every [`Deadline`] is measured on a clock that starts at zero
/// in each execution and moves only when a thread of the model moves it:
/// [`advance`] by a given step, or [`fire`], a timer that waits until some
/// thread sleeps with a deadline and then moves the clock to that deadline.
/// Either makes every sleeper re-check its deadline, as the kernel's timer
/// would. A model that never moves the clock has deadlines that never
/// pass. One that moves it past
/// [`OWNER_CHECK_INTERVAL`](crate::lock::OWNER_CHECK_INTERVAL) lets a
/// Lock's sleepers make their owner check, and past a caller's timeout
/// lets that timeout expire, at whichever point of the other threads' work
/// loom chooses. The clock is kept under the model's mutex, so every
/// reading is the latest time, as with a real clock.
///
/// A model moves the clock a bounded number of times: a thread that moved
/// it in a loop until the others were done would give loom schedules of
/// unbounded length.
#[cfg(loom)]
pub mod model {
    use core::time::Duration;
    use std::vec::Vec;

    use super::{Deadline, WaitOutcome, NANOS_PER_SEC};
    use crate::sync::{AtomicU32, Ordering};
    use loom::sync::{Condvar, Mutex};

    struct Sleeper {
        id: u64,
        word: usize,
        deadline: Option<Deadline>,
        woken: bool,
    }

    #[derive(Default)]
    struct Bucket {
        sleepers: Vec<Sleeper>,
        next_id: u64,
        /// Set by [`stop_timers`]: [`fire`] returns at once.
        stopped: bool,
        /// The clock: nanoseconds since the execution began.
        clock: u64,
    }

    loom::lazy_static! {
        static ref BUCKET: (Mutex<Bucket>, Condvar) = (Mutex::new(Bucket::default()), Condvar::new());
    }

    fn from_nanos(n: u64) -> Deadline {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        Deadline {
            secs: n / NANOS_PER_SEC,
            nanos: n % NANOS_PER_SEC,
        }
    }

    /// The model's current time. The clock lives under the bucket's mutex,
    /// so every reading is the latest time, as with a real clock (an atomic
    /// could, in loom, be read at an old value again and again).
    pub fn now() -> Deadline {
        from_nanos(BUCKET.0.lock().unwrap().clock)
    }

    /// Moves the model's clock on by `by`, and makes every sleeper whose
    /// deadline that passes return [`WaitOutcome::TimedOut`].
    pub fn advance(by: Duration) {
        let (lock, cvar) = &*BUCKET;
        let mut bucket = lock.lock().unwrap();
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        bucket.clock = bucket.clock.saturating_add(by);
        cvar.notify_all();
    }

    fn to_nanos(d: &Deadline) -> u64 {
        let n = d.secs.saturating_mul(NANOS_PER_SEC).saturating_add(d.nanos);
        u64::try_from(n).unwrap_or(0)
    }

    /// A timer going off: waits until some thread sleeps with a deadline
    /// still ahead (or [`stop_timers`] is called), then moves the clock to
    /// the earliest such deadline, so that sleeper (and any other with that
    /// deadline) times out. Returns false if it was stopped instead.
    ///
    /// Unlike [`advance`], it cannot go off before anyone waits for it, so
    /// a model with a fixed number of timers still lets every one of them
    /// end a sleep; and unlike a thread that advances the clock in a loop,
    /// it blocks rather than spins, which loom needs to stay finite.
    pub fn fire() -> bool {
        let (lock, cvar) = &*BUCKET;
        let mut bucket = lock.lock().unwrap();
        loop {
            if bucket.stopped {
                return false;
            }
            // Sleepers whose deadline has passed are timing out already:
            // this timer ends a sleep that would otherwise go on.
            let now = bucket.clock;
            let earliest = bucket
                .sleepers
                .iter()
                .filter(|s| !s.woken)
                .filter_map(|s| s.deadline.as_ref().map(to_nanos))
                .filter(|&at| at > now)
                .min();
            if let Some(at) = earliest {
                bucket.clock = at;
                cvar.notify_all();
                return true;
            }
            bucket = cvar.wait(bucket).unwrap();
        }
    }

    /// Blocks until at least `n` threads sleep in `wait` (on any word), so a
    /// model can make sure a waiter is asleep before it acts.
    pub fn until_sleeping(n: usize) {
        let (lock, cvar) = &*BUCKET;
        let mut bucket = lock.lock().unwrap();
        while bucket.sleepers.iter().filter(|s| !s.woken).count() < n {
            bucket = cvar.wait(bucket).unwrap();
        }
    }

    /// Makes every [`fire`], waiting or to come, return false: the model is
    /// done with its timers.
    pub fn stop_timers() {
        let (lock, cvar) = &*BUCKET;
        let mut bucket = lock.lock().unwrap();
        bucket.stopped = true;
        cvar.notify_all();
    }

    fn passed(bucket: &Bucket, deadline: Option<&Deadline>) -> bool {
        deadline.is_some_and(|d| bucket.clock >= to_nanos(d))
    }

    /// The model of `FUTEX_WAIT_BITSET` with an absolute deadline.
    pub fn wait(word: &AtomicU32, expected: u32, deadline: Option<&Deadline>) -> WaitOutcome {
        let (lock, cvar) = &*BUCKET;
        let mut bucket = lock.lock().unwrap();
        // The kernel compares under its bucket lock; so do we.
        if word.load(Ordering::SeqCst) != expected {
            return WaitOutcome::Retry;
        }
        if passed(&bucket, deadline) {
            return WaitOutcome::TimedOut;
        }
        let id = bucket.next_id;
        bucket.next_id += 1;
        bucket.sleepers.push(Sleeper {
            id,
            word: word as *const AtomicU32 as usize,
            deadline: deadline.copied(),
            woken: false,
        });
        // A timer, or `until_sleeping`, may be waiting for a sleeper.
        cvar.notify_all();
        loop {
            bucket = cvar.wait(bucket).unwrap();
            let i = bucket
                .sleepers
                .iter()
                .position(|s| s.id == id)
                .expect("a sleeper leaves the list only itself");
            if bucket.sleepers[i].woken {
                bucket.sleepers.remove(i);
                return WaitOutcome::Retry;
            }
            if passed(&bucket, deadline) {
                bucket.sleepers.remove(i);
                return WaitOutcome::TimedOut;
            }
        }
    }

    /// The model of `FUTEX_WAKE`: wakes at most `count` sleepers of `word`.
    pub fn wake(word: &AtomicU32, count: i32) -> usize {
        let (lock, cvar) = &*BUCKET;
        let mut bucket = lock.lock().unwrap();
        let addr = word as *const AtomicU32 as usize;
        let mut woken = 0;
        for s in bucket.sleepers.iter_mut() {
            if woken == count.max(0) as usize {
                break;
            }
            if s.word == addr && !s.woken {
                s.woken = true;
                woken += 1;
            }
        }
        if woken > 0 {
            cvar.notify_all();
        }
        woken
    }
}

#[cfg(all(not(loom), not(target_os = "linux")))]
compile_error!("shmipc-core needs Linux futexes");
