//! [`JoinableQueue<T>`]: a [`TypedQueue`] whose consumers mark each item
//! done, so a producer can wait until every item put has been handled
//! (Python's `JoinableQueue`).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shmipc_core::{BytesConfig, Deadline, TaskCount};

use super::{label, MessageError, TypedQueue};
use crate::error::Result;
use crate::named::Named;
use crate::{ByteQueue, Options};

/// The type a joinable segment's fingerprint is taken of: not `T`'s, so a
/// plain [`TypedQueue<T>`] (whose puts would not count) cannot open it,
/// nor this type a plain queue's.
struct Joinable<T>(PhantomData<T>);

/// A typed multi-producer multi-consumer queue with Python's `task_done`
/// and `join`: each [`put`](Self::put) adds an unfinished task, each
/// [`task_done`](Self::task_done) (a consumer's, once it has handled an
/// item it got) removes one, and [`join`](Self::join) waits until none is
/// left. The count lives in the queue segment's header, so every process
/// that opens the queue shares it.
///
/// Reading (`get`, `qsize`, `empty`, `close`, ...) is the [`TypedQueue`]'s,
/// through `Deref`; sending goes through the `put` calls here, which count.
/// A consumer that dies before its `task_done` leaves its task unfinished
/// for ever, as in Python: [`join_timeout`](Self::join_timeout) bounds the
/// wait.
///
/// ```
/// use shmipc::{fork, BytesConfig, JoinableQueue};
/// use std::time::Duration;
///
/// let q = JoinableQueue::<String>::anon(BytesConfig::for_max_message(64)?)?;
/// for word in ["one", "two", "three"] {
///     q.put(&word.to_owned())?;
/// }
/// let mut worker = fork(|| {
///     while let Ok(word) = q.get_timeout(Duration::from_millis(100)) {
///         assert!(!word.is_empty());
///         q.task_done().expect("one task_done per item");
///     }
///     0
/// })?;
/// assert!(q.join_timeout(Duration::from_secs(10)));
/// assert_eq!(q.unfinished_tasks(), 0);
/// worker.join()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T> {
    q: TypedQueue<T>,
}

/// [`JoinableQueue::task_done`] called more times than items were put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDoneError {
    /// The segment's name, `"(anonymous)"` for an anonymous queue.
    pub segment: String,
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task_done on the joinable queue {}: called more times than items were put \
             (no task is unfinished)",
            self.segment
        )
    }
}

impl std::error::Error for TaskDoneError {}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// Creates the queue segment `name` (see [`TypedQueue::create`]).
    pub fn create(name: &str, config: BytesConfig) -> Result<Self> {
        Self::create_with(name, config, &Options::default())
    }

    /// [`JoinableQueue::create`] with explicit options.
    pub fn create_with(name: &str, config: BytesConfig, opts: &Options) -> Result<Self> {
        ByteQueue::create_with(name, config, &joinable_opts::<T>(opts)).map(Self::wrap)
    }

    /// Opens the joinable queue segment `name`, made for `T`
    /// ([`Error::TypeMismatch`](crate::Error::TypeMismatch) otherwise, also
    /// for a plain [`TypedQueue`]'s segment).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`JoinableQueue::open`] with explicit options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        ByteQueue::open_with(name, &joinable_opts::<T>(opts)).map(Self::wrap)
    }

    /// Opens `name`, or creates it from `config`; returns whether this
    /// call created it.
    pub fn open_or_create(name: &str, config: BytesConfig) -> Result<(Self, bool)> {
        ByteQueue::open_or_create_with(name, config, &joinable_opts::<T>(&Options::default()))
            .map(|(q, c)| (Self::wrap(q), c))
    }

    /// A queue in anonymous shared memory, shared with children forked
    /// after it was made.
    pub fn anon(config: BytesConfig) -> Result<Self> {
        ByteQueue::anon(config).map(Self::wrap)
    }

    /// Removes the name (see [`unlink`](crate::unlink)).
    pub fn unlink(name: &str) -> Result<()> {
        crate::unlink(name)
    }

    fn wrap(q: ByteQueue) -> Self {
        JoinableQueue {
            q: TypedQueue::wrap(q),
        }
    }

    fn tasks(&self) -> &TaskCount {
        TaskCount::at(self.q.as_bytes().memory().task_word())
    }

    /// Puts `item`, waiting while the queue has no room; one more
    /// unfinished task.
    pub fn put(&self, item: &T) -> std::result::Result<(), MessageError> {
        self.counted(|| self.q.put(item))
    }

    /// [`put`](Self::put), waiting at most `timeout` for room.
    pub fn put_timeout(
        &self,
        item: &T,
        timeout: Duration,
    ) -> std::result::Result<(), MessageError> {
        self.counted(|| self.q.put_timeout(item, timeout))
    }

    /// [`put`](Self::put) if there is room now.
    pub fn put_nowait(&self, item: &T) -> std::result::Result<(), MessageError> {
        self.counted(|| self.q.put_nowait(item))
    }

    /// Counts the task before the item is visible (so its `task_done`
    /// cannot come first), and takes it back if the put fails.
    fn counted(
        &self,
        put: impl FnOnce() -> std::result::Result<(), MessageError>,
    ) -> std::result::Result<(), MessageError> {
        if let Err(error) = self.tasks().add() {
            return Err(MessageError::Tasks {
                segment: label(self.q.name()),
                error,
            });
        }
        let r = put();
        if r.is_err() {
            // Ours was counted above, so the count is not zero.
            let _ = self.tasks().done();
        }
        r
    }

    /// Marks one item that was got as handled (Python's `task_done`); the
    /// last one wakes every [`join`](Self::join). More calls than items put
    /// are a [`TaskDoneError`] and change nothing.
    pub fn task_done(&self) -> std::result::Result<(), TaskDoneError> {
        self.tasks().done().map_err(|_| TaskDoneError {
            segment: label(self.q.name()),
        })
    }

    /// The items put and not yet marked done, in every process.
    pub fn unfinished_tasks(&self) -> u32 {
        self.tasks().count()
    }

    /// Waits until every item put has been marked done, as long as it
    /// takes (see [`join_timeout`](Self::join_timeout)).
    pub fn join(&self) {
        self.tasks().wait_until(None);
    }

    /// Waits at most `timeout` until every item put has been marked done;
    /// returns whether it has. `Duration::MAX` waits for ever.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.tasks().wait_until(Some(&Deadline::after(timeout)))
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = TypedQueue<T>;

    fn deref(&self) -> &TypedQueue<T> {
        &self.q
    }
}

fn joinable_opts<T>(opts: &Options) -> Options {
    super::typed_opts::<Joinable<T>>(opts)
}

impl<T: Serialize + DeserializeOwned> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.q)
            .field("unfinished_tasks", &self.unfinished_tasks())
            .finish()
    }
}
