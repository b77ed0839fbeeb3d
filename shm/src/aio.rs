//! Async forms of the blocking calls (the `tokio` feature): `pop_async`,
//! `push_async` (`Queue`), `recv_async`, `send_async` (`ByteQueue`,
//! `PipeEnd`, `TypedPipeEnd`), `get_async`, `put_async` (`TypedQueue`),
//! `lock_async`, `acquire_async`, `wait_async` and `join_async`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shmipc::{Named, Queue, RingConfig};
//!
//! let q = Queue::<u64>::anon(RingConfig::new(8))?;
//! let mut child = shmipc::fork(|| {
//!     q.push(42).unwrap();
//!     0
//! })?;
//! assert_eq!(q.pop_async().await?, 42);
//! assert!(child.join_async().await?.success());
//! # Ok(())
//! # }
//! ```
//!
//! # How they sleep
//!
//! No thread per waiting future. A future first tries the call's
//! non-blocking form; if that would block, it arms the object (as
//! [`wait`](crate::wait) does: it registers as a sleeper where the
//! object's wakers look, [`shmipc_core::waitable`]) and hands the arm and
//! its `Waker` to a waiter thread of this process. Each waiter thread
//! sleeps in one `futex_waitv` on the words of up to 127 registered
//! futures plus a process-local word that registrations bump to make it
//! look again; when a word moves it wakes that future's `Waker`, which
//! tries again. A process has one waiter thread per 127 futures waiting at
//! once (started when first needed, kept for later ones). Every
//! [`OWNER_CHECK_INTERVAL`](shmipc_core::OWNER_CHECK_INTERVAL) (50 ms, on
//! one schedule that wakes and registrations do not put off) the threads
//! wake the futures that the periodic re-check every blocking call of this
//! crate makes can help
//! ([`Arm::check_may_help`](shmipc_core::waitable::Arm::check_may_help):
//! a receive from a queue with senders that could die or a claim in
//! flight, a send waiting for room, a lock); an idle future (a receive
//! from an empty queue that never had a sender, a semaphore, an event)
//! sleeps on, costing nothing.
//!
//! The futures need no particular runtime: they use only `Waker`s, so they
//! run under tokio (the feature's name: what the tests and benchmarks
//! use), or any other executor.
//!
//! **Cancel-safe.** A future takes its message, permit or lock only in
//! the `poll` that returns `Ready`; dropping it before takes its
//! registration back and loses nothing.
//!
//! A blocked call of this crate also takes over from peers that died
//! holding a claim, a grant or a lock, at its owner check; a future makes
//! the same check once per interval of waiting (the periodic wake brings
//! it back), so it gets past such a peer too. With `strict-wakes` only a
//! future that waits for the periodic wake alone gets it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytemuck::Pod;
use shmipc_core::futex::{self, Deadline};
use shmipc_core::sync::AtomicU32;
use shmipc_core::waitable::Arm;
use shmipc_core::waitv::{waitv, Waitv, WaitvEntry, WAITV_MAX};
use shmipc_core::{
    Event, Lock, LockError, LockGuard, PopError, PushError, RecvError, Semaphore, SendError,
    OWNER_CHECK_INTERVAL,
};

use crate::memory::Mapping;
use crate::process::Child;
use crate::wait::Watcher;
use crate::{ByteQueue, ExitStatus, PipeEnd, ProcessHandle, Queue, Shared};
use crate::{MessageError, TypedPipeEnd, TypedQueue};
use serde::{de::DeserializeOwned, Serialize};

/// Futures one waiter thread holds: `futex_waitv`'s limit, less the word
/// that registrations bump.
const PER_THREAD: usize = WAITV_MAX - 1;

/// One registered future.
struct Entry {
    id: u64,
    /// Declared (so dropped) before `_keep`: the arm points into it.
    arm: Arm<'static>,
    waker: Waker,
    /// Waits for the periodic wake alone (its word never moves): woken by
    /// it even with `strict-wakes`.
    periodic: bool,
    _keep: Keep,
}

/// What keeps an arm's word mapped while a waiter thread holds it.
enum Keep {
    Mapping(#[allow(dead_code)] Mapping),
    Static,
}

struct Waiter {
    /// Bumped by every registration and removal: the thread looks again.
    kick: AtomicU32,
    entries: Mutex<Vec<Entry>>,
    /// The words of entries whose futures were dropped, until the thread
    /// is out of the sleep that may still be on them (`Waiter::remove`).
    ghosts: Mutex<Vec<Ghost>>,
}

/// A dropped future's word, which the thread may still be asleep on.
struct Ghost {
    word: &'static AtomicU32,
    expected: u32,
    _keep: Keep,
}

/// The waiter threads of one process (one fork generation).
struct Waiters {
    /// The fork generation (`crate::wait::fork_generation`) it was made in.
    forks: u64,
    threads: Mutex<Threads>,
}

struct Threads {
    next: u64,
    threads: Vec<&'static Waiter>,
}

/// This process's [`Waiters`], found through an atomic pointer rather than
/// behind a global mutex: a child forked while another thread of its
/// parent held such a mutex would find it locked for ever. A child sees
/// its parent's (an older generation), never touches it, and makes its
/// own; the parent's stays leaked.
static WAITERS: AtomicPtr<Waiters> = AtomicPtr::new(std::ptr::null_mut());

impl Waiters {
    /// This process's waiters, made on first use in each fork generation.
    fn get() -> &'static Waiters {
        let forks = crate::wait::fork_generation();
        // SYNC POINT: Acquire pairs with the AcqRel exchange below: whoever
        // finds the pointer sees the `Waiters` behind it initialised.
        let mut cur = WAITERS.load(Ordering::Acquire);
        loop {
            // SAFETY: a non-null pointer in WAITERS comes from
            // `Box::into_raw` below (in this process or an ancestor, whose
            // memory the fork copied) and, once published, is never freed.
            if let Some(w) = unsafe { cur.as_ref() } {
                if w.forks == forks {
                    return w;
                }
            }
            let new = Box::into_raw(Box::new(Waiters {
                forks,
                threads: Mutex::new(Threads {
                    next: 0,
                    threads: Vec::new(),
                }),
            }));
            // SYNC POINT: AcqRel: the Release publishes the new `Waiters`
            // (paired with the Acquire load above); the Acquire of a
            // failure reads another thread's.
            match WAITERS.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                // SAFETY: just made by `Box::into_raw`; published, so
                // never freed (leaked).
                Ok(_) => return unsafe { &*new },
                Err(other) => {
                    // SAFETY: `new` was never published: ours alone.
                    drop(unsafe { Box::from_raw(new) });
                    cur = other;
                }
            }
        }
    }
}

/// Where a future's registration is: which thread, which entry.
struct Ticket {
    waiter: &'static Waiter,
    id: u64,
}

impl Waiter {
    fn kick(&self) {
        // SYNC POINT: Release pairs with the Acquire load of `kick` in
        // `run`: the thread that reads the bump sees the entry list's
        // change (which the mutex orders anyway).
        self.kick.fetch_add(1, Ordering::Release);
        futex::wake_all(&self.kick);
    }

    /// Takes entry `id` back (if the thread has not woken it already);
    /// returns whether it was still there.
    ///
    /// The registration goes at once (dropping the arm, which passes on a
    /// wake it was given: `shmipc_core::waitable`). But the thread may
    /// still be asleep in `futex_waitv` on the word, and a release or an
    /// unlock that wakes one sleeper could pick the thread instead of a
    /// peer. So the word stays as a ghost and the thread is kicked: once
    /// out of its sleep, it passes on a wake for every ghost whose word
    /// moved ([`Waiter::bury`]).
    fn remove(&self, id: u64) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(i) = entries.iter().position(|e| e.id == id) else {
            return false;
        };
        let Entry { arm, _keep, .. } = entries.swap_remove(i);
        drop(entries);
        let ghost = Ghost {
            word: arm.word(),
            expected: arm.expected(),
            _keep,
        };
        drop(arm); // takes the registration back
        self.ghosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ghost);
        self.kick();
        true
    }

    /// Out of the sleep: passes on the wakes the thread may have taken on
    /// the words of dropped futures (one `FUTEX_WAKE` per word that moved;
    /// a spare one wakes a sleeper that re-checks and sleeps again).
    fn bury(&self) {
        let ghosts = std::mem::take(&mut *self.ghosts.lock().unwrap_or_else(|p| p.into_inner()));
        for g in &ghosts {
            if g.word.load(Ordering::Acquire) != g.expected {
                futex::wake_one(g.word);
            }
        }
    }

    /// Replaces the waker of entry `id`; false if it is gone (woken).
    fn update(&self, id: u64, waker: &Waker) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                if !e.waker.will_wake(waker) {
                    e.waker = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    fn run(&'static self) {
        let mut words: Vec<WaitvEntry> = Vec::with_capacity(WAITV_MAX);
        let mut wake: Vec<Waker> = Vec::new();
        // One periodic deadline, moved on only when it passes: wakes and
        // registrations (which come all the time under traffic) do not
        // put it off.
        let mut tick = Deadline::after(OWNER_CHECK_INTERVAL);
        let mut unsupported = false;
        loop {
            // SYNC POINT: Acquire pairs with the Release bump in `kick`.
            let seen = self.kick.load(Ordering::Acquire);
            let (mut short, mut periodic) = (false, false);
            {
                let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                words.clear();
                words.push(WaitvEntry::new(&self.kick, seen));
                for e in entries.iter() {
                    words.push(WaitvEntry::new(e.arm.word(), e.arm.expected()));
                    short |= e.arm.short_sleeps();
                    periodic |= e.periodic;
                }
            }
            let slice = Deadline::after(crate::wait::FALLBACK_SLICE).min(tick);
            // Nothing registered: sleep until a registration. Otherwise
            // until the periodic wake (with `strict-wakes`, only if a
            // future waits for nothing but it), or a short slice.
            let until = if words.len() == 1 {
                None
            } else if short || unsupported {
                Some(&slice)
            } else if futex::STRICT_WAKES && !periodic {
                None
            } else {
                Some(&tick)
            };
            if !unsupported {
                if let Waitv::Unsupported(_) = waitv(&words, until) {
                    unsupported = true;
                }
            }
            if unsupported {
                // No futex_waitv: sleep on the kick word in short slices,
                // and wake the futures whose words moved after each.
                let until = if words.len() == 1 { None } else { Some(&slice) };
                futex::wait(&self.kick, seen, until);
            }
            self.bury();
            let ticked = tick.has_passed();
            if ticked {
                tick = Deadline::after(OWNER_CHECK_INTERVAL);
            }
            let mut gone = Vec::new();
            {
                let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                let mut i = 0;
                while i < entries.len() {
                    let e = &entries[i];
                    // A short sleeper may have missed its wake: it looks
                    // after every slice. The periodic wake goes only to
                    // futures it can help (the owner check or the
                    // end-of-stream check could find something, or the
                    // object is ready without a wake): an idle future
                    // stays asleep, with no re-poll, re-arm or kick.
                    let due = e.arm.moved()
                        || e.arm.short_sleeps()
                        || (ticked
                            && (e.periodic || (!futex::STRICT_WAKES && e.arm.check_may_help())));
                    if due {
                        let e = entries.swap_remove(i);
                        wake.push(e.waker.clone());
                        gone.push(e);
                    } else {
                        i += 1;
                    }
                }
            }
            gone.clear(); // registrations back, outside the lock
            for w in wake.drain(..) {
                w.wake();
            }
        }
    }
}

/// Registers `arm` (kept alive by `keep`) to wake `waker` when its word
/// moves. If no waiter thread can be started, sleeps the calling thread
/// one short slice on the word instead and wakes `waker` itself (a
/// degraded, blocking poll; never a spin), returning `None`.
fn register(arm: Arm<'_>, keep: Keep, waker: &Waker) -> Option<Ticket> {
    match try_register(arm, keep, waker) {
        Ok(t) => Some(t),
        Err(entry) => {
            let d = Deadline::after(crate::wait::FALLBACK_SLICE);
            futex::wait(entry.arm.word(), entry.arm.expected(), Some(&d));
            waker.wake_by_ref();
            None
        }
    }
}

fn try_register(arm: Arm<'_>, keep: Keep, waker: &Waker) -> Result<Ticket, Box<Entry>> {
    // SAFETY: `keep` holds the mapping the arm's word lies in (or the word
    // is static), and the entry drops the arm before `keep`.
    let arm = unsafe { arm.detach() };
    // A forked child (which has none of its parent's threads, even with
    // an ancestor's pid) gets waiters of its own.
    let mut all = Waiters::get()
        .threads
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    all.next += 1;
    let id = all.next;
    let periodic = std::ptr::eq(arm.word(), &NEVER);
    let entry = Entry {
        id,
        arm,
        waker: waker.clone(),
        periodic,
        _keep: keep,
    };
    for &w in &all.threads {
        let mut entries = w.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() < PER_THREAD {
            entries.push(entry);
            drop(entries);
            w.kick();
            return Ok(Ticket { waiter: w, id });
        }
    }
    let w: &'static Waiter = Box::leak(Box::new(Waiter {
        kick: AtomicU32::new(0),
        entries: Mutex::new(Vec::with_capacity(PER_THREAD)),
        ghosts: Mutex::new(Vec::new()),
    }));
    if std::thread::Builder::new()
        .name("shmipc-waiter".into())
        .spawn(move || w.run())
        .is_err()
    {
        return Err(Box::new(entry));
    }
    w.entries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(entry);
    w.kick();
    all.threads.push(w);
    Ok(Ticket { waiter: w, id })
}

/// How often a future retries at once (yielding to the executor between)
/// when its object looks ready but the call still finds nothing (another
/// process took it, or a peer is half-way through its change), before it
/// waits for the waiter thread's periodic wake instead.
const READY_RETRIES: u32 = 16;

/// The one future behind every async call: `attempt` tries the call
/// without blocking, `arm` arms its object.
struct Op<'a, R, A, M> {
    attempt: A,
    arm: M,
    keep: Option<&'a Mapping>,
    ticket: Option<Ticket>,
    retries: u32,
    /// When the next attempt makes the owner check (past a peer that died
    /// mid-way), as a blocked call makes it once per interval of waiting.
    next_check: Deadline,
    _out: std::marker::PhantomData<fn() -> R>,
}

impl<'a, R, A, M> Op<'a, R, A, M>
where
    A: FnMut(bool) -> Option<R>,
    M: Fn() -> Option<Arm<'a>>,
{
    fn new(keep: Option<&'a Mapping>, attempt: A, arm: M) -> Self {
        Op {
            attempt,
            arm,
            keep,
            ticket: None,
            retries: 0,
            next_check: Deadline::after(OWNER_CHECK_INTERVAL),
            _out: std::marker::PhantomData,
        }
    }

    fn keep(&self) -> Keep {
        match self.keep {
            Some(m) => Keep::Mapping(m.clone()),
            None => Keep::Static,
        }
    }
}

impl<'a, R, A, M> Future for Op<'a, R, A, M>
where
    A: FnMut(bool) -> Option<R> + Unpin,
    M: Fn() -> Option<Arm<'a>> + Unpin,
{
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this = self.get_mut();
        if let Some(t) = &this.ticket {
            // Still registered and not woken: nothing changed, but the
            // executor may hand us a new waker.
            if t.waiter.update(t.id, cx.waker()) {
                return Poll::Pending;
            }
            this.ticket = None;
        }
        // The waiter thread's periodic wake brings the future here at
        // least once per interval while it waits.
        let check = this.next_check.has_passed();
        if check {
            this.next_check = Deadline::after(OWNER_CHECK_INTERVAL);
        }
        if let Some(r) = (this.attempt)(check) {
            return Poll::Ready(r);
        }
        match (this.arm)() {
            Some(arm) => {
                // Armed, and the object was not ready after registering:
                // whatever makes it ready moves the word.
                this.ticket = register(arm, this.keep(), cx.waker());
                this.retries = 0;
                Poll::Pending
            }
            None if this.retries < READY_RETRIES => {
                // Looks ready, but the call found nothing: try again soon.
                this.retries += 1;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None => {
                // Looks ready for a while, yet nothing to take (a peer
                // stopped half-way): wait for the periodic wake.
                this.retries = 0;
                let forced = Arm::on_word(&NEVER, 0);
                this.ticket = register(forced, Keep::Static, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl<R, A, M> Drop for Op<'_, R, A, M> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            t.waiter.remove(t.id);
        }
    }
}

/// A word nobody changes: a future waiting only for the periodic wake.
static NEVER: AtomicU32 = AtomicU32::new(0);

fn some_unless<T, E: PartialEq>(r: Result<T, E>, would_block: E) -> Option<Result<T, E>> {
    match r {
        Err(e) if e == would_block => None,
        r => Some(r),
    }
}

impl<T: Pod> Queue<T> {
    /// [`pop`](shmipc_core::Mpmc::pop), as a future: the next item, or
    /// [`PopError::Closed`] once the queue is closed and drained.
    pub async fn pop_async(&self) -> Result<T, PopError> {
        let op = Op::new(
            Some(self.owner()),
            |check| some_unless(self.try_pop_woken(check), PopError::Empty),
            || self.arm_readable(),
        );
        op.await
    }

    /// [`push`](shmipc_core::Mpmc::push), as a future: waits for room.
    pub async fn push_async(&self, item: T) -> Result<(), PushError> {
        let op = Op::new(
            Some(self.owner()),
            |check| some_unless(self.try_push_woken(item, check), PushError::Full),
            || self.arm_writable(),
        );
        op.await
    }
}

/// Copies a granted message out and releases its space.
fn take(g: shmipc_core::ReadGrant<'_, '_, impl Sized>) -> Result<Vec<u8>, RecvError> {
    let mut v = vec![0; g.len()];
    g.copy_to(&mut v);
    g.release_checked()?;
    Ok(v)
}

impl ByteQueue {
    /// The next message, copied out, as a future.
    pub async fn recv_async(&self) -> Result<Vec<u8>, RecvError> {
        let op = Op::new(
            Some(self.owner()),
            |check| some_unless(self.try_recv_woken(check).and_then(take), RecvError::Empty),
            || self.arm_readable(),
        );
        op.await
    }

    /// Sends `msg` as one message, as a future that waits for room.
    pub async fn send_async(&self, msg: &[u8]) -> Result<(), SendError> {
        let op = Op::new(
            Some(self.owner()),
            |check| some_unless(self.try_send_woken(msg, check), SendError::Full),
            || self.arm_writable(),
        );
        op.await
    }
}

impl PipeEnd {
    /// The next message from the other end, copied out, as a future.
    pub async fn recv_async(&self) -> Result<Vec<u8>, RecvError> {
        let (_, rx, memory) = self.rings();
        let op = Op::new(
            Some(memory),
            |check| some_unless(rx.try_recv_woken(check).and_then(take), RecvError::Empty),
            || rx.arm_readable(),
        );
        op.await
    }

    /// Sends `msg` to the other end, as a future that waits for room.
    pub async fn send_async(&self, msg: &[u8]) -> Result<(), SendError> {
        let (tx, _, memory) = self.rings();
        let op = Op::new(
            Some(memory),
            |check| some_unless(tx.try_send_woken(msg, check), SendError::Full),
            || tx.arm_writable(),
        );
        op.await
    }
}

/// A typed call's "would block" (nothing now, or no room now).
fn typed_some<T>(r: Result<T, MessageError>) -> Option<Result<T, MessageError>> {
    match r {
        Err(e) if e.is_empty_or_full() => None,
        r => Some(r),
    }
}

impl<T: Serialize + DeserializeOwned> TypedQueue<T> {
    /// [`get`](TypedQueue::get), as a future: the next value.
    pub async fn get_async(&self) -> Result<T, MessageError> {
        let q = self.as_bytes();
        Op::new(
            Some(q.owner()),
            |check| typed_some(self.take(q.try_recv_woken(check))),
            || q.arm_readable(),
        )
        .await
    }

    /// [`put`](TypedQueue::put), as a future that waits for room.
    pub async fn put_async(&self, item: &T) -> Result<(), MessageError> {
        let q = self.as_bytes();
        Op::new(
            Some(q.owner()),
            |check| typed_some(self.send_with(item, |m| q.try_send_woken(m, check))),
            || q.arm_writable(),
        )
        .await
    }
}

impl<T: Serialize + DeserializeOwned> TypedPipeEnd<T> {
    /// [`recv`](TypedPipeEnd::recv), as a future: the next value.
    pub async fn recv_async(&self) -> Result<T, MessageError> {
        let (_, rx, memory) = self.as_bytes().rings();
        Op::new(
            Some(memory),
            |check| typed_some(self.take_grant(rx.try_recv_woken(check))),
            || rx.arm_readable(),
        )
        .await
    }

    /// [`send`](TypedPipeEnd::send), as a future that waits for room.
    pub async fn send_async(&self, value: &T) -> Result<(), MessageError> {
        let (tx, _, memory) = self.as_bytes().rings();
        Op::new(
            Some(memory),
            |check| typed_some(self.send_with(value, |m| tx.try_send_woken(m, check))),
            || tx.arm_writable(),
        )
        .await
    }
}

impl Shared<Event> {
    /// [`Event::wait`], as a future: ready once the event is set.
    ///
    /// A `set` that a `clear` followed while the future waited counts, as
    /// for a blocked [`Event::wait`]: the future keeps the event's state of
    /// its first arm and asks whether it was set since.
    pub async fn wait_async(&self) {
        // The first arm's state (above u32::MAX: not armed yet); an atomic,
        // not a Cell, so that the future stays Send.
        let first = shmipc_core::sync::AtomicU64::new(u64::MAX);
        let op = Op::new(
            Some(self.memory()),
            |_| {
                let fired = match u32::try_from(first.load(Ordering::Relaxed)) {
                    Ok(armed) => self.set_since(armed),
                    Err(_) => self.is_set(),
                };
                fired.then_some(())
            },
            || {
                let arm = self.arm()?;
                // Relaxed: only this future's own polls read it.
                let _ = first.compare_exchange(
                    u64::MAX,
                    u64::from(arm.expected()),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                Some(arm)
            },
        );
        op.await
    }
}

impl Shared<Semaphore> {
    /// [`Semaphore::acquire`], as a future: takes a permit.
    pub async fn acquire_async(&self) {
        let op = Op::new(
            Some(self.memory()),
            |_| self.try_acquire().then_some(()),
            || self.arm(),
        );
        op.await
    }
}

impl Shared<Lock> {
    /// [`Lock::lock`], as a future. The guard is not `Send` (only the
    /// thread that took the lock can release it), so hold it in a task
    /// that stays on its thread (a current-thread runtime, or
    /// `spawn_local`), or drop it before the next `.await`.
    pub async fn lock_async(&self) -> Result<LockGuard<'_>, LockError> {
        let op = Op::new(
            Some(self.memory()),
            |check| match if check {
                self.try_lock_checked()
            } else {
                self.try_lock_woken()
            } {
                Err(LockError::WouldBlock) => None,
                r => Some(r),
            },
            || self.arm(),
        );
        op.await
    }
}

impl Child {
    /// [`Child::join`], as a future: the exit status once the child ends
    /// (reaping it). Watched through its pidfd by the process's children
    /// watcher thread ([`wait`](crate::wait), "How it sleeps"); without a
    /// pidfd (Linux before 5.3), looked at in the periodic wakes.
    pub async fn join_async(&mut self) -> io::Result<ExitStatus> {
        let pidfd = self.pidfd().map(|fd| fd.try_clone_to_owned()).transpose()?;
        join_watched(pidfd, || self.try_wait()).await
    }
}

/// A child's join as a future: `try_wait` reaps it once it ended; `pidfd`
/// (a copy of the child's, if it has one) is what the children watcher
/// watches.
async fn join_watched(
    pidfd: Option<std::os::fd::OwnedFd>,
    mut try_wait: impl FnMut() -> io::Result<Option<ExitStatus>>,
) -> io::Result<ExitStatus> {
    use std::os::fd::AsFd;
    if let Some(s) = try_wait()? {
        return Ok(s);
    }
    let watched = match &pidfd {
        Some(fd) => {
            let watcher = Watcher::get()?;
            let id = watcher.watch(fd.as_fd())?;
            Some((Unwatch(watcher, id), fd_raw(fd.as_fd())))
        }
        None => None,
    };
    let watch = watched.as_ref().map(|(u, fd)| (u.0, *fd));
    let op = Op::new(
        None,
        |_| try_wait().transpose(),
        move || match watch {
            Some((watcher, pidfd)) => {
                // SYNC POINT: Acquire pairs with the watcher's Release
                // bump: read before the pidfd is looked at.
                let seen = watcher.word.load(Ordering::Acquire);
                if crate::wait::readable_now(pidfd) {
                    return None;
                }
                Some(Arm::on_word(&watcher.word, seen))
            }
            None => Some(Arm::on_word(&NEVER, 0)),
        },
    );
    let out = op.await;
    drop(watched);
    drop(pidfd);
    out
}

/// Stops watching a pidfd when dropped.
struct Unwatch(&'static Watcher, u64);

impl Drop for Unwatch {
    fn drop(&mut self) {
        self.0.unwatch(self.1);
    }
}

fn fd_raw(fd: std::os::fd::BorrowedFd<'_>) -> std::os::fd::RawFd {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

impl ProcessHandle {
    /// [`ProcessHandle::join`], as a future (see [`Child::join_async`]).
    pub async fn join_async(&mut self) -> io::Result<ExitStatus> {
        let pidfd = self
            .child()
            .pidfd()
            .map(|fd| fd.try_clone_to_owned())
            .transpose()?;
        // The handle's lock is taken for each look, never across an await.
        join_watched(pidfd, || self.child().try_wait()).await
    }
}
