//! [`Queue<T>`]: the core's MPMC queue in a segment of its own.

use std::fmt;
use std::ops::Deref;
#[cfg(feature = "fault-injection")]
use std::time::Duration;

use bytemuck::Pod;
#[cfg(feature = "fault-injection")]
use shmipc_core::{Deadline, PopError, PushError};
use shmipc_core::{Mpmc, QueueError, RingConfig, WaitStrategy};

use super::{check_typed, object, typed_layout};
use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;

/// A bounded multi-producer multi-consumer queue of `Pod` items in shared
/// memory: Python's `multiprocessing.Queue`, for any number of processes
/// that open it by name (or inherit an anonymous one through `fork`).
///
/// Every method takes `&self` and is the core [`Mpmc`]'s, which the queue
/// dereferences to; share one handle between threads with an `Arc`, or
/// open the name again. The algorithm (Vyukov's bounded queue, with claims
/// that name their owner) is lock-free and makes no system call unless
/// someone sleeps. A process killed in
/// the middle of a push or pop loses only that item; the slot it held is
/// skipped or freed by the next blocking call that waits on it, within
/// about 50 ms (see [`shmipc_core::mpmc`]).
///
/// ```
/// use shmipc::{fork, Named, Queue, RingConfig, Unlinker};
/// use std::time::Duration;
///
/// let names = Unlinker::new("doc-queue");
/// let name = names.name("jobs");
/// let jobs = Queue::<u64>::create(&name, RingConfig::new(64))?;
///
/// let mut worker = fork(|| {
///     let jobs = Queue::<u64>::open(&name).unwrap();
///     let mut sum = 0;
///     while let Ok(job) = jobs.pop() {               // Closed once drained
///         sum += job;
///     }
///     (sum == 5050) as i32
/// })?;
/// for job in 1..=100 {
///     jobs.push(job)?;                               // sleeps while full
/// }
/// jobs.close();
/// assert_eq!(worker.join_timeout(Duration::from_secs(10))?.unwrap().code(), Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T: Pod>(Mpmc<'static, T, Mapping>);

impl<T: Pod> Named for Queue<T> {
    const KIND: Kind = Kind::QUEUE;
    /// The capacity: a power of two, at least 2.
    type Config<'a> = RingConfig;
    type Anon = Self;

    fn layout(config: &RingConfig) -> std::result::Result<ObjectLayout, shmipc_core::LayoutError> {
        let l = Mpmc::<T>::layout(*config)?;
        Ok(typed_layout::<T>(Self::KIND, l, *config))
    }

    unsafe fn init(
        ptr: *mut u8,
        len: usize,
        config: RingConfig,
    ) -> std::result::Result<(), QueueError> {
        // SAFETY: forwarded contract; init_at checks size and alignment.
        // The handle it returns borrows and is dropped at once.
        unsafe { Mpmc::<T>::init_at(ptr, len, config) }.map(drop)
    }

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        check_typed::<T>(name, header, Mpmc::<T>::layout)
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        let (ptr, len) = object(&memory, 0)?;
        // SAFETY: the object bytes stay mapped as long as the mapping,
        // which the handle (and each clone of it) owns. The core checks the
        // control block against the length before it is used.
        let q = unsafe { Mpmc::<T>::attach_owned(ptr, len, memory.clone()) }
            .map_err(|e| Error::from_queue(memory.label(), e))?;
        Ok(Queue(q))
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        Self::attach(memory, true)
    }
}

impl<T: Pod> Deref for Queue<T> {
    type Target = Mpmc<'static, T, Mapping>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<T: Pod> Queue<T> {
    /// The normalised name, or `None` for an anonymous queue.
    pub fn name(&self) -> Option<&str> {
        self.0.owner().name()
    }

    /// Whether a push that finds the queue full and no live consumer fails
    /// with [`PushError`](shmipc_core::PushError)`::Disconnected` (`true`)
    /// or keeps waiting for room (`false`, the default: a queue may outlive
    /// its consumers, and one may come later). A consumer is a handle that
    /// has popped. Only a push that would block looks.
    pub fn fail_sends_without_receiver(self, on: bool) -> Self {
        Queue(self.0.fail_sends_without_receiver(on))
    }

    /// How this handle's blocking calls wait
    /// ([`WaitStrategy::DEFAULT`] until set).
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.0.wait_strategy()
    }

    /// Sets how this handle's blocking calls wait (see [`WaitStrategy`]);
    /// other handles of the same queue keep theirs.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.0.set_wait_strategy(strategy);
    }

    /// Test support: a push that runs `pause` between claiming its slot
    /// and filling it (a window for tests to kill the process in).
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn push_pausing(
        &self,
        item: T,
        timeout: Duration,
        pause: impl FnOnce(),
    ) -> std::result::Result<(), PushError> {
        self.0
            .push_pausing(item, Some(&Deadline::after(timeout)), pause)
    }

    /// Test support: a pop that runs `pause` between claiming its item and
    /// copying it out.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn pop_pausing(
        &self,
        timeout: Duration,
        pause: impl FnOnce(),
    ) -> std::result::Result<T, PopError> {
        self.0.pop_pausing(Some(&Deadline::after(timeout)), pause)
    }
}

impl<T: Pod> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}
