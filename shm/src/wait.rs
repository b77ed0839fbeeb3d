//! Waiting on many objects at once: [`wait`], like Python's
//! `multiprocessing.connection.wait`.
//!
//! ```
//! use shmipc::wait::{wait, Interest};
//! use shmipc::{Event, Named, Queue, RingConfig, Shared};
//! use std::time::Duration;
//!
//! let jobs = Queue::<u64>::anon(RingConfig::new(8))?;
//! let stop = Shared::<Event>::anon(())?;
//! jobs.push(7)?;
//! let ready = wait(&[Interest::readable(&jobs), Interest::event(&stop)],
//!                  Some(Duration::from_secs(1)))?;
//! assert_eq!(ready, [0]); // the queue has an item, the event is not set
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it sleeps
//!
//! Every object here sleeps on one 32-bit futex word. [`wait`] arms each
//! object ([`shmipc_core::waitable`]: it registers as a sleeper where the
//! object's wakers look, then re-checks the object), and if none is ready
//! sleeps once in `futex_waitv` (Linux 5.16 and later) on all the words.
//! Whatever wakes any of them wakes the call; it then re-arms every object
//! and reports all that are ready. No busy loop: besides real wake-ups,
//! the sleep ends only every
//! [`OWNER_CHECK_INTERVAL`] (50 ms),
//! the re-check that every blocking call of this crate makes in case a
//! waker was killed between its change and its wake. There, and once
//! when the timeout passes, `wait` also makes the blocking calls' owner
//! check on every queue and pipe end it was given (without taking or
//! sending anything): a dead producer's unpublished claim or a dead
//! writer's reservation is skipped, a dead consumer's slot or a dead
//! reader's record freed, a byte queue side's lock taken over from a
//! holder that died, and the peers are scanned for end-of-stream.
//!
//! # When a queue is ready
//!
//! Ready means that the `try_` call would succeed or give a final answer
//! now: readable when a published item or committed message is at the
//! head (not merely claimed by a producer that may have died), or the
//! object is closed, or every sender is gone (the `try_` receive then
//! returns `Disconnected`); writable when there is room (for a byte queue
//! or pipe: for a message of the largest size), or the object is closed,
//! or a send would fail with `Disconnected` (a pipe whose other end is
//! gone). A byte queue whose side's short lock another process holds at
//! that moment is looked at again within a couple of milliseconds.
//!
//! Child processes have no futex word: each is watched through its pidfd
//! by one watcher thread per process (started by the first `wait` on a
//! child), which sleeps in `poll` on the pidfds of the children being
//! waited for and bumps a process-local futex word when one ends; `wait`
//! sleeps on that word with the others.
//!
//! **Limits.** `futex_waitv` takes at most 128 words. The children of one
//! call share one word, so a call may name any number of children and up
//! to 128 other interests (127 if it names a child); more is
//! [`WaitError::TooMany`], not a silent degradation. Split larger sets
//! over threads.
//!
//! **Older kernels** (no `futex_waitv`, or a seccomp filter that forbids
//! it): the call sleeps on the first word only, in slices of
//! [`FALLBACK_SLICE`], re-checking every object after each; a wake on
//! another word is then seen within one slice. A child without a pidfd
//! (Linux before 5.3) is checked once per slice the same way.
//!
//! Readiness is a snapshot, as in Python: another process may take the
//! item first, so use the object's `try_*` call after `wait` returns.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use bytemuck::Pod;
use shmipc_core::futex::{self, Deadline};
use shmipc_core::queue::Readiness;
use shmipc_core::sync::AtomicU32;
use shmipc_core::waitable::Arm;
use shmipc_core::waitv::{waitv, Waitv, WaitvEntry, WAITV_MAX};
use shmipc_core::{Event, Semaphore, OWNER_CHECK_INTERVAL};

use crate::process::Child;
use crate::{ByteQueue, PipeEnd, ProcessHandle, Queue, SpscConsumer, SpscProducer};
use crate::{TypedPipeEnd, TypedQueue};
use serde::{de::DeserializeOwned, Serialize};

/// How long each sleep lasts where `futex_waitv` is missing (or forbidden):
/// a wake on any word but the first is seen within one slice.
pub const FALLBACK_SLICE: Duration = Duration::from_millis(2);

/// Objects that can be waited on until they hold something to receive (or
/// are closed): the queues and pipe ends.
///
/// The arms may leave the heavy barrier to the caller
/// ([`Arm::needs_barrier`]).
pub trait Readable: sealed::Sealed {
    #[doc(hidden)]
    fn arm_readable(&self) -> Option<Arm<'_>>;
    /// The owner check a blocked receive makes (past a dead sender's
    /// half-made change; a scan for live senders), taking nothing.
    #[doc(hidden)]
    fn check_readable(&self);
}

/// Objects that can be waited on until they have room to send (or are
/// closed): the queues and pipe ends.
pub trait Writable: sealed::Sealed {
    #[doc(hidden)]
    fn arm_writable(&self) -> Option<Arm<'_>>;
    /// The owner check a blocked send makes (past a dead receiver's held
    /// slot or record; a scan for live receivers), sending nothing.
    #[doc(hidden)]
    fn check_writable(&self);
}

mod sealed {
    pub trait Sealed {}
}

impl<T: Pod> sealed::Sealed for Queue<T> {}
impl<T: Pod> Readable for Queue<T> {
    fn arm_readable(&self) -> Option<Arm<'_>> {
        (**self).arm_readable_deferred()
    }
    fn check_readable(&self) {
        self.pop_owner_check();
    }
}
impl<T: Pod> Writable for Queue<T> {
    fn arm_writable(&self) -> Option<Arm<'_>> {
        (**self).arm_writable_deferred()
    }
    fn check_writable(&self) {
        self.push_owner_check();
    }
}

impl sealed::Sealed for ByteQueue {}
impl Readable for ByteQueue {
    fn arm_readable(&self) -> Option<Arm<'_>> {
        (**self).arm_readable_deferred()
    }
    fn check_readable(&self) {
        self.recv_owner_check();
    }
}
impl Writable for ByteQueue {
    fn arm_writable(&self) -> Option<Arm<'_>> {
        (**self).arm_writable_deferred()
    }
    fn check_writable(&self) {
        self.send_owner_check();
    }
}

/// A pipe end is readable when the other end sent it something, writable
/// when its outgoing ring has room for a message of the largest size.
impl sealed::Sealed for PipeEnd {}
impl Readable for PipeEnd {
    fn arm_readable(&self) -> Option<Arm<'_>> {
        self.rings().1.arm_readable_deferred()
    }
    fn check_readable(&self) {
        self.rings().1.recv_owner_check();
    }
}
impl Writable for PipeEnd {
    fn arm_writable(&self) -> Option<Arm<'_>> {
        self.rings().0.arm_writable_deferred()
    }
    fn check_writable(&self) {
        self.rings().0.send_owner_check();
    }
}

impl<T: Pod> sealed::Sealed for SpscConsumer<T> {}
impl<T: Pod> Readable for SpscConsumer<T> {
    fn arm_readable(&self) -> Option<Arm<'_>> {
        shmipc_core::spsc::Consumer::arm_readable_deferred(self)
    }
    fn check_readable(&self) {
        shmipc_core::spsc::Consumer::pop_owner_check(self);
    }
}
impl<T: Pod> sealed::Sealed for SpscProducer<T> {}
impl<T: Pod> Writable for SpscProducer<T> {
    fn arm_writable(&self) -> Option<Arm<'_>> {
        shmipc_core::spsc::Producer::arm_writable_deferred(self)
    }
    fn check_writable(&self) {
        shmipc_core::spsc::Producer::push_owner_check(self);
    }
}

/// A typed queue is readable and writable as the byte queue underneath.
impl<T> sealed::Sealed for TypedQueue<T> {}
impl<T: Serialize + DeserializeOwned> Readable for TypedQueue<T> {
    fn arm_readable(&self) -> Option<Arm<'_>> {
        Readable::arm_readable(self.as_bytes())
    }
    fn check_readable(&self) {
        Readable::check_readable(self.as_bytes());
    }
}
impl<T: Serialize + DeserializeOwned> Writable for TypedQueue<T> {
    fn arm_writable(&self) -> Option<Arm<'_>> {
        Writable::arm_writable(self.as_bytes())
    }
    fn check_writable(&self) {
        Writable::check_writable(self.as_bytes());
    }
}

/// A typed pipe end is readable and writable as the byte end underneath.
impl<T> sealed::Sealed for TypedPipeEnd<T> {}
impl<T: Serialize + DeserializeOwned> Readable for TypedPipeEnd<T> {
    fn arm_readable(&self) -> Option<Arm<'_>> {
        Readable::arm_readable(self.as_bytes())
    }
    fn check_readable(&self) {
        Readable::check_readable(self.as_bytes());
    }
}
impl<T: Serialize + DeserializeOwned> Writable for TypedPipeEnd<T> {
    fn arm_writable(&self) -> Option<Arm<'_>> {
        Writable::arm_writable(self.as_bytes())
    }
    fn check_writable(&self) {
        Writable::check_writable(self.as_bytes());
    }
}

/// One thing [`wait`] waits for.
pub struct Interest<'a>(What<'a>);

enum What<'a> {
    Readable(&'a dyn Readable),
    Writable(&'a dyn Writable),
    Event(&'a Event),
    Semaphore(&'a Semaphore),
    Child(Kid<'a>),
}

/// A child as [`Interest::child`] or [`Interest::process`] names it.
#[derive(Clone, Copy)]
enum Kid<'a> {
    Child(&'a Child),
    Process(&'a ProcessHandle),
}

impl Kid<'_> {
    /// Runs `f` on the child (a process handle's is behind its lock,
    /// held only for `f`).
    fn with<R>(self, f: impl FnOnce(&Child) -> R) -> R {
        match self {
            Kid::Child(c) => f(c),
            Kid::Process(p) => f(&p.child()),
        }
    }
}

impl<'a> Interest<'a> {
    /// Ready when `object` has something to receive, or is closed.
    pub fn readable(object: &'a impl Readable) -> Interest<'a> {
        Interest(What::Readable(object))
    }

    /// Ready when `object` has room to send, or is closed.
    pub fn writable(object: &'a impl Writable) -> Interest<'a> {
        Interest(What::Writable(object))
    }

    /// Ready when the event is set, or was set during the wait (even if
    /// cleared again, as a blocked [`Event::wait`] sees it).
    pub fn event(event: &'a Event) -> Interest<'a> {
        Interest(What::Event(event))
    }

    /// Ready when the semaphore has a permit (it takes none).
    pub fn semaphore(semaphore: &'a Semaphore) -> Interest<'a> {
        Interest(What::Semaphore(semaphore))
    }

    /// Ready when the child has ended (it is not reaped: `join` it after).
    pub fn child(child: &'a Child) -> Interest<'a> {
        Interest(What::Child(Kid::Child(child)))
    }

    /// Ready when the process has ended (see [`Interest::child`]).
    pub fn process(process: &'a ProcessHandle) -> Interest<'a> {
        Interest(What::Child(Kid::Process(process)))
    }

    fn is_child(&self) -> bool {
        matches!(self.0, What::Child(_))
    }

    /// The owner check of a queue or pipe end (see [`wait_until`]);
    /// nothing for the other objects, whose arms need none.
    fn owner_check(&self) {
        match self.0 {
            What::Readable(o) => o.check_readable(),
            What::Writable(o) => o.check_writable(),
            _ => {}
        }
    }

    /// Arms the interest; `Ok(None)` if it is ready now. A child has no
    /// arm: `Err(child)`.
    fn arm(&self) -> Result<Option<Arm<'a>>, Kid<'a>> {
        Ok(match self.0 {
            What::Readable(o) => o.arm_readable(),
            What::Writable(o) => o.arm_writable(),
            What::Event(e) => e.arm(),
            What::Semaphore(s) => s.arm(),
            What::Child(c) => return Err(c),
        })
    }
}

impl fmt::Debug for Interest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.0 {
            What::Readable(_) => "readable",
            What::Writable(_) => "writable",
            What::Event(_) => "event",
            What::Semaphore(_) => "semaphore",
            What::Child(_) => "child",
        };
        f.debug_tuple("Interest").field(&kind).finish()
    }
}

/// Why [`wait`] could not wait.
#[derive(Debug)]
#[non_exhaustive]
pub enum WaitError {
    /// More interests than one `futex_waitv` can sleep on (module docs,
    /// "Limits").
    TooMany {
        /// The interests given that need a futex word of their own (all
        /// but the children).
        words: usize,
        /// How many such interests one call takes.
        limit: usize,
    },
    /// The watcher of child processes could not be started or told
    /// (threads, descriptors: the operating system's error).
    Io(io::Error),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::TooMany { words, limit } => write!(
                f,
                "wait: `objects` names {words} queues, pipe ends, events and semaphores; \
                 one wait sleeps on at most {limit} of them (futex_waitv's limit of \
                 {WAITV_MAX} words, one of which a wait on children uses)"
            ),
            WaitError::Io(e) => write!(f, "wait: watching child processes: {e}"),
        }
    }
}

impl std::error::Error for WaitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WaitError::Io(e) => Some(e),
            WaitError::TooMany { .. } => None,
        }
    }
}

impl From<WaitError> for io::Error {
    fn from(e: WaitError) -> io::Error {
        match e {
            WaitError::Io(e) => e,
            e @ WaitError::TooMany { .. } => io::Error::new(io::ErrorKind::InvalidInput, e),
        }
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (never, if `None`), and returns the indices of every object that is
/// ready, in order; empty only when the timeout passed. One sleep for all
/// of them (module docs).
pub fn wait(objects: &[Interest<'_>], timeout: Option<Duration>) -> Result<Vec<usize>, WaitError> {
    let deadline = timeout.map(Deadline::after);
    wait_until(objects, deadline.as_ref())
}

/// [`wait`] with an absolute deadline.
pub fn wait_until(
    objects: &[Interest<'_>],
    deadline: Option<&Deadline>,
) -> Result<Vec<usize>, WaitError> {
    let children = objects.iter().filter(|o| o.is_child()).count();
    let words = objects.len() - children;
    let limit = WAITV_MAX - usize::from(children > 0);
    if words > limit {
        return Err(WaitError::TooMany { words, limit });
    }
    let mut watch: Option<Watch> = None;
    let mut arms: Vec<(usize, Arm<'_>)> = Vec::with_capacity(words);
    let mut entries: Vec<WaitvEntry> = Vec::with_capacity(words + 1);
    let mut ready: Vec<usize> = Vec::new();
    // The owner check every blocked call makes (module docs, "Peers that
    // die"): once per interval of waiting, and once more when the
    // deadline passes after a sleep (a call that only looks makes none).
    let mut next_check = Deadline::after(OWNER_CHECK_INTERVAL);
    let mut slept = false;
    let mut last_checked = false;
    loop {
        let passed = deadline.is_some_and(Deadline::has_passed);
        if next_check.has_passed() || (passed && slept && !last_checked) {
            last_checked = passed;
            next_check = Deadline::after(OWNER_CHECK_INTERVAL);
            for object in objects {
                object.owner_check();
            }
        }
        // Events set (and maybe cleared) since the last round's arms.
        for (i, arm) in &arms {
            if arm.fired() {
                ready.push(*i);
            }
        }
        arms.clear(); // takes every registration back
                      // Read before the children are checked: an exit after the check
                      // bumps it, so the sleep below returns.
        let children_seen = watch
            .as_ref()
            .map(|w| w.watcher.word.load(Ordering::Acquire));
        let mut unwatched = false;
        for (i, object) in objects.iter().enumerate() {
            match object.arm() {
                Ok(Some(arm)) => arms.push((i, arm)),
                Ok(None) => ready.push(i),
                Err(child) => match child.with(child_ended) {
                    Some(true) => ready.push(i),
                    Some(false) => {}
                    None => unwatched = true,
                },
            }
        }
        // One heavy barrier for every arm that left it to us, then their
        // re-checks (the queue module's protocol, step 4).
        let mut refused = false;
        let mut busy = false;
        if arms.iter().any(|(_, a)| a.needs_barrier()) {
            refused = !shmipc_core::waitable::barrier();
            for (i, a) in &arms {
                if a.needs_barrier() {
                    match a.recheck() {
                        Readiness::Ready => ready.push(*i),
                        Readiness::Busy => busy = true,
                        Readiness::NotReady => {}
                    }
                }
            }
        }
        if !ready.is_empty() {
            ready.sort_unstable();
            ready.dedup();
            return Ok(ready);
        }
        if deadline.is_some_and(Deadline::has_passed) {
            if last_checked || !slept {
                return Ok(ready);
            }
            continue; // one owner check first, as a timed blocking call makes
        }
        if children > 0 && watch.is_none() {
            // Watch, then check the children again before sleeping.
            watch = Some(Watch::start(objects).map_err(WaitError::Io)?);
            continue;
        }
        entries.clear();
        entries.extend(
            arms.iter()
                .map(|(_, a)| WaitvEntry::new(a.word(), a.expected())),
        );
        if let (Some(w), Some(seen)) = (&watch, children_seen) {
            entries.push(WaitvEntry::new(&w.watcher.word, seen));
        }
        let short = unwatched || refused || busy || arms.iter().any(|(_, a)| a.short_sleeps());
        sleep(&entries, &arms, deadline, &next_check, short);
        slept = true;
    }
}

/// One sleep of [`wait_until`]: `futex_waitv` on `entries`, ending at the
/// next owner check (`next_check`) at the latest (`short`: within a
/// millisecond or two).
fn sleep(
    entries: &[WaitvEntry],
    arms: &[(usize, Arm<'_>)],
    deadline: Option<&Deadline>,
    next_check: &Deadline,
    short: bool,
) {
    let fallback_slice = Deadline::after(FALLBACK_SLICE);
    let slice = if short && fallback_slice < *next_check {
        fallback_slice
    } else {
        *next_check
    };
    let until = if futex::STRICT_WAKES && !short {
        deadline
    } else {
        match deadline {
            Some(d) if *d < slice => Some(d),
            _ => Some(&slice),
        }
    };
    if entries.is_empty() {
        // Only children without pidfds: nothing to sleep on but time.
        nap(until);
        return;
    }
    if let Waitv::Unsupported(_) = waitv(entries, until) {
        // No futex_waitv: sleep on the first word, in short slices.
        let fallback = Deadline::after(FALLBACK_SLICE);
        let until = match until {
            Some(d) if *d < fallback => d,
            _ => &fallback,
        };
        match arms.first() {
            Some((_, a)) => {
                futex::wait(a.word(), a.expected(), Some(until));
            }
            None => nap(Some(until)),
        }
    }
}

/// Sleeps until `until` (which is always some deadline here).
fn nap(until: Option<&Deadline>) {
    if let Some(d) = until {
        std::thread::sleep(d.remaining());
    }
}

/// Whether `child` has ended (without reaping it); `None` if it cannot be
/// watched (no pidfd) and is still running, so the caller sleeps in short
/// slices.
fn child_ended(child: &Child) -> Option<bool> {
    if child.status().is_some() {
        return Some(true);
    }
    match child.pidfd() {
        Some(fd) => Some(readable_now(fd.as_raw_fd())),
        None => {
            if exited_unreaped(child.pid()) {
                Some(true)
            } else {
                None
            }
        }
    }
}

/// Whether `fd` polls readable now (a pidfd: its process ended).
pub(crate) fn readable_now(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call; timeout 0 never blocks.
    let r = unsafe { libc::poll(&mut pfd, 1, 0) };
    r > 0 && pfd.revents != 0
}

/// Whether our child `pid` has ended, leaving it unreaped (`WNOWAIT`).
fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data; zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is valid for writing; WNOHANG never blocks and WNOWAIT
    // leaves the child to be reaped by its `Child`.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` (or left it zeroed: si_pid 0).
    r == 0 && unsafe { info.si_pid() } != 0
}

/// The process's watcher of children (module docs): one thread in `poll`
/// on the pidfds being waited for and an eventfd that tells it the set
/// changed; when a pidfd turns readable it bumps [`Watcher::word`] and
/// wakes its sleepers.
pub(crate) struct Watcher {
    /// Bumped (Release) and woken whenever a watched child ends.
    pub(crate) word: AtomicU32,
    /// The [`fork_generation`] it was started in.
    forks: u64,
    kick: OwnedFd,
    fds: Mutex<WatchList>,
    /// Whether its thread runs (started by the first [`Watcher::get`] of
    /// its generation; tried again if that failed).
    started: Mutex<bool>,
}

#[derive(Default)]
struct WatchList {
    next: u64,
    /// Only the watcher thread closes these (it drops removed entries when
    /// it rebuilds its poll set), so it never polls a closed, reused fd.
    entries: Vec<Watched>,
}

struct Watched {
    id: u64,
    fd: OwnedFd,
    removed: bool,
    ended: bool,
}

/// Bumped in every forked child (a `pthread_atfork` child handler): which
/// process a thread-holding state belongs to. Not the pid: a descendant
/// can be given the pid of an ancestor that has exited, and it has none
/// of that ancestor's threads.
static FORKS: shmipc_core::sync::AtomicU64 = shmipc_core::sync::AtomicU64::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// This process's fork generation: differs from every ancestor's (after
/// the first call, which installs the handler before any of this crate's
/// threads exist).
pub(crate) fn fork_generation() -> u64 {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // SAFETY: pthread_atfork only records the handler, a plain
        // function that touches one atomic (async-signal-safe, as a
        // handler run in a forked child must be).
        unsafe { libc::pthread_atfork(None, None, Some(count_fork)) };
    });
    // Relaxed: a process reads its own copy, written before the fork
    // returned in it.
    FORKS.load(Ordering::Relaxed)
}

/// The watcher of this process, started on first use (and again in a
/// forked child, which has no copy of its parent's thread). Found through
/// an atomic pointer rather than behind a global mutex: a child forked
/// while another thread of its parent held such a mutex would find it
/// locked for ever. A child sees its parent's watcher (an older
/// generation), never touches it, and makes its own; the parent's stays
/// leaked.
static WATCHER: std::sync::atomic::AtomicPtr<Watcher> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

impl Watcher {
    pub(crate) fn get() -> io::Result<&'static Watcher> {
        let forks = fork_generation();
        // SYNC POINT: Acquire pairs with the AcqRel exchange below: whoever
        // finds the pointer sees the watcher behind it initialised.
        let mut cur = WATCHER.load(Ordering::Acquire);
        let w = loop {
            // SAFETY: a non-null pointer in WATCHER comes from
            // `Box::into_raw` below (in this process or an ancestor, whose
            // memory the fork copied) and, once published, is never freed.
            if let Some(w) = unsafe { cur.as_ref() } {
                if w.forks == forks {
                    break w;
                }
            }
            // SAFETY: eventfd takes an initial value and flags; it returns
            // a new descriptor or -1 and touches no memory of ours.
            let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor nothing else owns.
            let kick = unsafe { OwnedFd::from_raw_fd(fd) };
            let new = Box::into_raw(Box::new(Watcher {
                word: AtomicU32::new(0),
                forks,
                kick,
                fds: Mutex::new(WatchList::default()),
                started: Mutex::new(false),
            }));
            // SYNC POINT: AcqRel: the Release publishes the new watcher
            // (paired with the Acquire load above); the Acquire of a
            // failure reads another thread's.
            match WATCHER.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                // One per process (and per fork that waits on children):
                // leaked, so its thread and every `Watch` may hold
                // `&'static`.
                // SAFETY: just made by `Box::into_raw`; published, so never
                // freed.
                Ok(_) => break unsafe { &*new },
                Err(other) => {
                    // SAFETY: `new` was never published: ours alone.
                    drop(unsafe { Box::from_raw(new) });
                    cur = other;
                }
            }
        };
        // This generation's own mutex: no thread of an ancestor held it.
        let mut started = w.started.lock().unwrap_or_else(|p| p.into_inner());
        if !*started {
            std::thread::Builder::new()
                .name("shmipc-children".into())
                .spawn(move || w.run())?;
            *started = true;
        }
        Ok(w)
    }

    /// Watches a copy of `fd` until the returned id is unwatched.
    pub(crate) fn watch(&self, fd: BorrowedFd<'_>) -> io::Result<u64> {
        let fd = fd.try_clone_to_owned()?;
        let id = {
            let mut list = self.fds.lock().unwrap_or_else(|p| p.into_inner());
            list.next += 1;
            let id = list.next;
            list.entries.push(Watched {
                id,
                fd,
                removed: false,
                ended: false,
            });
            id
        };
        self.kick();
        Ok(id)
    }

    pub(crate) fn unwatch(&self, id: u64) {
        let mut list = self.fds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = list.entries.iter_mut().find(|e| e.id == id) {
            e.removed = true;
        }
        drop(list);
        self.kick();
    }

    fn kick(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one`, valid for the call, to our
        // eventfd. A full counter (EAGAIN) means a kick is pending anyway.
        unsafe { libc::write(self.kick.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn run(&self) {
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        let mut ids: Vec<u64> = Vec::new();
        loop {
            {
                let mut list = self.fds.lock().unwrap_or_else(|p| p.into_inner());
                list.entries.retain(|e| !e.removed);
                pfds.clear();
                ids.clear();
                pfds.push(libc::pollfd {
                    fd: self.kick.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                for e in list.entries.iter().filter(|e| !e.ended) {
                    pfds.push(libc::pollfd {
                        fd: e.fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    ids.push(e.id);
                }
            }
            // SAFETY: `pfds` is a valid array of pollfds for the call; the
            // descriptors stay open while we poll (only this thread closes
            // them, above).
            let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
            if r <= 0 {
                continue; // EINTR
            }
            if pfds[0].revents != 0 {
                let mut buf = 0u64;
                // SAFETY: reads at most 8 bytes into `buf`; non-blocking.
                unsafe { libc::read(self.kick.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
            }
            let ended: Vec<u64> = pfds[1..]
                .iter()
                .zip(&ids)
                .filter(|(p, _)| p.revents != 0)
                .map(|(_, &id)| id)
                .collect();
            if ended.is_empty() {
                continue;
            }
            {
                let mut list = self.fds.lock().unwrap_or_else(|p| p.into_inner());
                for e in list.entries.iter_mut().filter(|e| ended.contains(&e.id)) {
                    e.ended = true;
                }
            }
            // SYNC POINT: Release pairs with the Acquire load of `word` in
            // `wait_until`: a waiter that reads the bump re-checks its
            // children after it, and the exit is visible to its poll.
            self.word.fetch_add(1, Ordering::Release);
            futex::wake_all(&self.word);
        }
    }
}

/// The children of one [`wait`], watched while it sleeps.
struct Watch {
    watcher: &'static Watcher,
    ids: Vec<u64>,
}

impl Watch {
    fn start(objects: &[Interest<'_>]) -> io::Result<Watch> {
        let watcher = Watcher::get()?;
        let mut watch = Watch {
            watcher,
            ids: Vec::new(),
        };
        for o in objects {
            if let What::Child(kid) = o.0 {
                if let Some(id) = kid.with(|c| c.pidfd().map(|fd| watcher.watch(fd))) {
                    watch.ids.push(id?);
                }
            }
        }
        Ok(watch)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for &id in &self.ids {
            self.watcher.unwatch(id);
        }
    }
}
