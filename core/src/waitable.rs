//! Sleeping on many objects at once: what each blocking object offers a
//! waiter that is not one of its own calls (`shmipc::wait`, an async
//! waiter thread).
//!
//! Every object here sleeps on one 32-bit futex word. An [`Arm`] is a
//! waiter's half of that object's sleep protocol, made without blocking:
//! it registers the waiter where the object's wakers look for sleepers
//! (the sleeper count of a queue side or a [`Semaphore`], the `WAITERS`
//! bit of an [`Event`] or a [`Lock`]), re-checks the object, and hands
//! back the word with the value that means "still not ready". The waiter
//! may then sleep on any number of such words in one `futex_waitv`
//! ([`crate::futex::waitv`](crate::waitv)): whichever object becomes
//! ready changes or wakes its word, because its waker saw the
//! registration. Dropping the `Arm` takes the registration back.
//!
//! Each `arm_*` function returns `None` when the object is ready already
//! (the check is made after registering, as every blocking call of the
//! object makes it, so no wake-up can fall between the check and the
//! sleep). After waking, the waiter drops its arms and arms again: that is
//! its re-check, and it also registers anew where a wipe of a sleeper count
//! ([`crate::queue`], "A sleeper that dies") dropped it.
//!
//! Readiness is a cheap, non-consuming test: a queue side is *readable*
//! when its `try_` receive would return an item or a final answer (a
//! published slot or committed record at the head, closed, end-of-stream:
//! [`Mpmc::pop_ready`], [`ByteQueue::recv_ready`], [`Consumer::pop_ready`]),
//! *writable* when its `try_` send would succeed or fail for good (room,
//! closed, no receiver left where sends fail without one), an event when
//! it is set (or was set since the arm: [`Arm::fired`]), a semaphore when
//! it has a permit, a lock when it is free. A byte queue side whose short
//! lock is held at that moment is neither ([`Readiness::Busy`]): its arm
//! asks for short sleeps ([`Arm::short_sleeps`]). It is a snapshot:
//! another process may take the item first, so a waiter then uses the
//! object's `try_*` call. The owner check a blocked call makes past a dead
//! peer is the waiter's to make (`Mpmc::pop_owner_check` and the like,
//! once per check interval): an arm makes none.
//!
//! Two objects wake one sleeper, not all: a [`Semaphore`] release and a
//! [`Lock`] unlock. A waiter that was woken by one and then takes nothing
//! would leave the object's other sleepers asleep with a permit free, so
//! dropping such an arm passes the wake on (one `FUTEX_WAKE`), as a
//! `Lock` waiter that times out does; [`Arm::consume`] says the waiter
//! took what it was woken for.

use crate::bytes::ByteQueue;
use crate::mpmc::Mpmc;
use crate::queue::{heavy_if_light, register, sleeping, unregister, Readiness, Signal};
use crate::spsc::{Consumer, Producer};
use crate::sync::event::Event;
use crate::sync::lock::Lock;
use crate::sync::semaphore::Semaphore;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{futex, queue};

#[derive(Clone, Copy)]
enum Undo<'a> {
    /// A registration in a queue side's sleeper count.
    Signal(&'a AtomicU64, queue::Registration),
    /// A registration in a semaphore's count; its wakes wake one.
    Semaphore(&'a AtomicU64, queue::Registration),
    /// An event's `WAITERS` bit: nothing to take back (the next `set`
    /// clears it).
    Event,
    /// A lock's `WAITERS` bit; its unlocks wake one.
    Lock,
    /// A plain word ([`Arm::on_word`]).
    Plain,
}

/// A waiter's registration with one object, and the futex word to sleep on
/// (module docs). Dropping it takes the registration back.
#[must_use = "dropping an Arm takes the registration back at once"]
pub struct Arm<'a> {
    word: &'a AtomicU32,
    expected: u32,
    undo: Undo<'a>,
    short: bool,
    consumed: bool,
    /// For an arm made without its barrier ([`Arm::needs_barrier`]): the
    /// object's readiness test, on the object.
    recheck: Option<Erased<Readiness>>,
    /// [`Arm::check_may_help`]'s test, where the object has one.
    hint: Option<Hint>,
}

/// A test `fn(&O) -> R` bound to its `&O`, with `O` erased, made later.
#[derive(Clone, Copy)]
pub(crate) struct Erased<R> {
    test: fn(*const ()) -> R,
    at: *const (),
}

/// A test on an object's shared words (its control block, never a
/// handle, which need not outlive a detached arm): [`Arm::check_may_help`].
pub(crate) type Hint = Erased<bool>;

impl<R> Erased<R> {
    /// `test(at)`, to be made later with [`Erased::call`]. `at` must stay
    /// alive while the arm that keeps this lives: the object an arm
    /// borrows, or the object's shared memory, which stays mapped while
    /// the arm lives (the contract of [`Arm::detach`]).
    pub(crate) fn new<O>(at: &O, test: fn(&O) -> R) -> Erased<R> {
        // SAFETY: `fn(&O) -> R` and `fn(*const ()) -> R` are ABI-compatible
        // (a reference and a raw pointer to a Sized type; see the `fn`
        // primitive's docs), and `call` passes only `at`, alive while the
        // arm lives.
        let test = unsafe { core::mem::transmute::<fn(&O) -> R, fn(*const ()) -> R>(test) };
        Erased {
            test,
            at: at as *const O as *const (),
        }
    }

    fn call(&self) -> R {
        (self.test)(self.at)
    }
}

// SAFETY: an Arm holds shared references to atomics (Sync) and, in
// `recheck`, a pointer to a Sync object it only reads through `&`, as the
// `&'a` it was made from would.
unsafe impl Send for Arm<'_> {}
// SAFETY: as above; every method takes `&self` and only reads atomics.
unsafe impl Sync for Arm<'_> {}

impl<'a> Arm<'a> {
    /// An arm on a word of the caller's own, whose changer always wakes
    /// it (a watcher's counter): sleep while `word` holds `expected`.
    pub fn on_word(word: &'a AtomicU32, expected: u32) -> Arm<'a> {
        Arm {
            word,
            expected,
            undo: Undo::Plain,
            short: false,
            consumed: false,
            recheck: None,
            hint: None,
        }
    }

    /// The futex word to sleep on.
    pub fn word(&self) -> &'a AtomicU32 {
        self.word
    }

    /// The value of [`Arm::word`] that means "not ready yet": sleep while
    /// the word holds it.
    pub fn expected(&self) -> u32 {
        self.expected
    }

    /// Whether the word has moved on since the arm (a wake-up, or a change
    /// the waiter should look at).
    pub fn moved(&self) -> bool {
        self.word.load(Ordering::Acquire) != self.expected
    }

    /// Whether the arm was made without the heavy side of its object's
    /// asymmetric barrier (an `arm_*_deferred` call): the waiter must then
    /// make [`barrier`] once (for all such arms), and test each with
    /// [`Arm::ready_now`], before it sleeps.
    pub fn needs_barrier(&self) -> bool {
        self.recheck.is_some()
    }

    /// The object's readiness test, made again (for the arms that
    /// [`need a barrier`](Arm::needs_barrier), after [`barrier`]).
    pub fn ready_now(&self) -> bool {
        self.recheck() == Readiness::Ready
    }

    /// [`Arm::ready_now`], telling "not ready" from "the side's short lock
    /// is held now" ([`Readiness::Busy`]: look again within a millisecond
    /// or two). `NotReady` for an arm made with its barrier.
    pub fn recheck(&self) -> Readiness {
        self.recheck.map_or(Readiness::NotReady, |r| r.call())
    }

    /// True if the waiter must not sleep longer than a millisecond or so
    /// at a time: the object's wakers may look for sleepers with a plain
    /// load, and the kernel refused the barrier that makes such a load see
    /// this registration (`crate::membarrier`); or the object's side lock
    /// was held when it was armed ([`Readiness::Busy`]), whose holder
    /// wakes nobody when it lets go.
    pub fn short_sleeps(&self) -> bool {
        self.short
    }

    /// For an event: whether it was set since this arm, even if it has
    /// been cleared again (as a blocked [`Event::wait`] returns true for a
    /// `set` that a `clear` followed). False for other objects.
    pub fn fired(&self) -> bool {
        matches!(self.undo, Undo::Event) && Event::fired_since(self.word, self.expected)
    }

    /// Whether the periodic wake of a waiter that holds this arm long
    /// could help the call it waits for, although the word has not moved:
    /// its owner check or end-of-stream check could find something now (a
    /// claim or a record in flight, senders a scan could find gone, a held
    /// lock, a push or send waiting for room that a dead receiver may
    /// hold), or the object is ready (a wake that never came). False where
    /// no check can help: an idle, empty queue side with no sender to lose,
    /// a semaphore without a permit, an event not set since the arm, a
    /// word of the caller's own. A snapshot: a waiter asks again at each
    /// periodic wake.
    pub fn check_may_help(&self) -> bool {
        if let Some(h) = &self.hint {
            return h.call();
        }
        match self.undo {
            Undo::Signal(..) | Undo::Lock => true,
            Undo::Event => self.fired(),
            Undo::Semaphore(..) | Undo::Plain => false,
        }
    }

    /// Says the waiter took what it was woken for (a permit, the lock), so
    /// that dropping the arm passes no wake on (module docs).
    pub fn consume(mut self) {
        self.consumed = true;
    }

    /// This arm with its borrow erased, for a waiter that keeps arms beyond
    /// the borrow of the object (an async waiter thread that holds the
    /// object's mapping alive by other means).
    ///
    /// # Safety
    ///
    /// The object's memory stays mapped, at the same address, until the
    /// returned arm is dropped.
    pub unsafe fn detach(self) -> Arm<'static> {
        // SAFETY: the caller keeps every word the arm points at alive for
        // as long as the arm lives; `Arm` has no other borrow.
        unsafe { core::mem::transmute::<Arm<'a>, Arm<'static>>(self) }
    }
}

impl Drop for Arm<'_> {
    fn drop(&mut self) {
        match self.undo {
            Undo::Signal(sleepers, reg) => unregister(sleepers, reg),
            Undo::Semaphore(sleepers, reg) => {
                unregister(sleepers, reg);
                // Woken (maybe by a release's one wake) and taking nothing:
                // pass the wake on if anyone else sleeps there.
                if !self.consumed && self.moved() && sleeping(sleepers.load(Ordering::Relaxed)) != 0
                {
                    futex::wake_one(self.word);
                }
            }
            Undo::Event | Undo::Plain => {}
            Undo::Lock => {
                // An unlock clears WAITERS and wakes one sleeper; if that
                // was us and we take nothing, wake the next (as a timed-out
                // `Lock` waiter does).
                if !self.consumed && self.word.load(Ordering::Relaxed) & Lock::WAITERS_BIT == 0 {
                    futex::wake_one(self.word);
                }
            }
        }
    }
}

impl core::fmt::Debug for Arm<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Arm")
            .field("word", &(self.word as *const AtomicU32))
            .field("expected", &self.expected)
            .finish()
    }
}

/// The heavy side of the asymmetric barrier, once for every arm made with
/// an `arm_*_deferred` call ([`Arm::needs_barrier`]). False if the kernel
/// refused it: the waiter then sleeps in short slices (as a blocked queue
/// call does).
pub fn barrier() -> bool {
    crate::membarrier::heavy()
}

/// The sleeper's side of a queue signal (the `queue` module's protocol):
/// read the epoch, register, make the heavy barrier if notifiers may use
/// the light one (or, `deferred`, leave it to the caller: [`barrier`]),
/// then re-check with `ready(object)`.
fn arm_signal<'a, O>(
    signal: &'a Signal,
    object: &'a O,
    ready: fn(&O) -> Readiness,
    hint: Option<Hint>,
    deferred: bool,
) -> Option<Arm<'a>> {
    // SYNC POINT: Acquire pairs with the Release epoch bumps of the
    // notifiers (`Signal::wake`), as in `queue::block_checked`; read before
    // registering, so a notifier that sees us bumps it after this read.
    let seen = signal.epoch.load(Ordering::Acquire);
    // SYNC POINT: the registration is the sleeper's SeqCst RMW that pairs
    // with the notifiers' reads of the sleeper word (`Signal::notify`).
    let reg = register(signal.sleepers_word());
    let defer = deferred && signal.is_light();
    let mut short = !defer && !heavy_if_light(signal);
    // The arm borrows `object` for 'a: alive while the arm lives.
    let recheck = defer.then(|| Erased::new(object, ready));
    let mut arm = Arm {
        word: &signal.epoch,
        expected: seen,
        undo: Undo::Signal(signal.sleepers_word(), reg),
        short: false,
        consumed: false,
        recheck,
        hint,
    };
    match ready(object) {
        Readiness::Ready => return None, // drops `arm`: unregisters
        Readiness::Busy => short = true,
        Readiness::NotReady => {}
    }
    arm.short = short;
    Some(arm)
}

/// `arm_readable`, `arm_writable` and their `_deferred` forms (which leave
/// the barrier to the caller: [`Arm::needs_barrier`]).
macro_rules! arms {
    ($(#[$doc:meta])* $name:ident, $deferred:ident, $signal:ident, $ready:expr) => {
        arms!($(#[$doc])* $name, $deferred, $signal, $ready, |_: &Self| None);
    };
    ($(#[$doc:meta])* $name:ident, $deferred:ident, $signal:ident, $ready:expr, $hint:expr) => {
        $(#[$doc])*
        pub fn $name(&self) -> Option<Arm<'_>> {
            arm_signal(self.$signal(), self, $ready, ($hint)(self), false)
        }

        /// The same arm, without the barrier ([`Arm::needs_barrier`]), for
        /// a waiter that arms many objects and makes [`barrier`] once.
        pub fn $deferred(&self) -> Option<Arm<'_>> {
            arm_signal(self.$signal(), self, $ready, ($hint)(self), true)
        }
    };
}

impl<T: bytemuck::Pod, K> Mpmc<'_, T, K> {
    arms!(
        /// Arms for "`try_pop` would give an item or a final answer"
        /// ([`Mpmc::pop_ready`]: published, closed, end-of-stream); `None`
        /// if so now.
        arm_readable, arm_readable_deferred,
        readable_signal,
        |q: &Self| Readiness::from(q.pop_ready()),
        |q: &Self| Some(q.pop_hint())
    );
    arms!(
        /// Arms for "`try_push` would succeed or give a final answer"
        /// ([`Mpmc::push_ready`]); `None` if so now.
        arm_writable, arm_writable_deferred,
        writable_signal,
        |q: &Self| Readiness::from(q.push_ready())
    );
}

impl<T: bytemuck::Pod, K> Consumer<'_, T, K> {
    arms!(
        /// Arms for "an item to pop, closed, or end-of-stream"
        /// ([`Consumer::pop_ready`]); `None` if so now.
        arm_readable, arm_readable_deferred,
        wait_signal,
        |q: &Self| Readiness::from(q.pop_ready())
    );
}

impl<T: bytemuck::Pod, K> Producer<'_, T, K> {
    arms!(
        /// Arms for "room to push, or closed, or no consumer left"
        /// ([`Producer::push_ready`]); `None` if so now.
        arm_writable, arm_writable_deferred,
        wait_signal,
        |q: &Self| Readiness::from(q.push_ready())
    );
}

impl<K> ByteQueue<'_, K> {
    arms!(
        /// Arms for "a committed message to receive, closed, or
        /// end-of-stream" ([`ByteQueue::recv_ready`]); `None` if so now.
        arm_readable, arm_readable_deferred,
        readable_signal,
        ByteQueue::recv_ready,
        |q: &Self| Some(q.recv_hint())
    );
    arms!(
        /// Arms for "room for a message of the largest size, or closed, or
        /// no receiver left" ([`ByteQueue::send_ready`]); `None` if so now.
        /// A smaller message may fit earlier: a waiter for one sends with
        /// `try_send` after any wake.
        arm_writable, arm_writable_deferred,
        writable_signal,
        ByteQueue::send_ready
    );
}

impl Semaphore {
    /// Arms for "a permit to take"; `None` if one is there now.
    pub fn arm(&self) -> Option<Arm<'_>> {
        let (count, epoch, sleepers) = self.wait_words();
        // SYNC POINT: the semaphore's handshake (its module docs): register
        // in `sleepers`, read `epoch` (Acquire, paired with the Release
        // bumps in `wake`), then read `count` with a read-modify-write.
        let reg = register(sleepers);
        let seen = epoch.load(Ordering::Acquire);
        let arm = Arm {
            word: epoch,
            expected: seen,
            undo: Undo::Semaphore(sleepers, reg),
            short: false,
            consumed: false,
            recheck: None,
            // A permit free although no wake came.
            hint: Some(Hint::new(count, |c: &AtomicU32| {
                c.load(Ordering::Relaxed) > 0
            })),
        };
        if count.fetch_add(0, Ordering::AcqRel) > 0 {
            let mut arm = arm;
            arm.consumed = true; // not woken: nothing to pass on
            return None;
        }
        Some(arm)
    }
}

impl Event {
    /// Arms for "set"; `None` if it is set now.
    pub fn arm(&self) -> Option<Arm<'_>> {
        let word = self.wait_word();
        let state = Event::announce_waiter(word)?;
        Some(Arm {
            word,
            expected: state,
            undo: Undo::Event,
            short: false,
            consumed: false,
            recheck: None,
            hint: None,
        })
    }
}

impl Lock {
    /// Arms for "free" (set `WAITERS`, so the unlock wakes); `None` if it
    /// is free now. Take it then with [`Lock::try_lock_woken`].
    pub fn arm(&self) -> Option<Arm<'_>> {
        let word = self.wait_word();
        let state = Lock::announce_waiter(word)?;
        Some(Arm {
            word,
            expected: state,
            undo: Undo::Lock,
            short: false,
            consumed: false,
            recheck: None,
            hint: None,
        })
    }
}
