//! [`TypedQueue<T>`]: any serde type through a [`ByteQueue`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shmipc_core::{BytesConfig, RecvError, SendError};

use super::{encode, label, take, typed_opts, MessageError};
use crate::error::Result;
use crate::named::Named;
use crate::{ByteQueue, Options};

/// A multi-producer multi-consumer queue of any `Serialize +
/// DeserializeOwned` values, like Python's `multiprocessing.Queue`: each
/// message is a value encoded with postcard (see [`typed`](crate::typed))
/// in a [`ByteQueue`] segment that records `T`'s [`Fingerprint`](super::Fingerprint).
///
/// Python's names and Rust's: `put` / `push`, `get` / `pop`, each with a
/// `_timeout` form and a non-blocking one (`put_nowait` / `try_push`,
/// `get_nowait` / `try_pop`).
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use shmipc::{fork, BytesConfig, TypedQueue, Unlinker};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// struct Job {
///     id: u64,
///     path: String,
///     sizes: Vec<u32>,
/// }
///
/// let names = Unlinker::new("doc-typed-queue");
/// let name = names.name("jobs");
/// let jobs = TypedQueue::<Job>::create(&name, BytesConfig::for_max_message(256)?)?;
/// let mut child = fork(move || {
///     let jobs = TypedQueue::<Job>::open(&name).expect("open");
///     let job = Job { id: 7, path: "/tmp/a".into(), sizes: vec![1, 2, 3] };
///     i32::from(jobs.put(&job).is_err())
/// })?;
/// assert_eq!(jobs.get()?, Job { id: 7, path: "/tmp/a".into(), sizes: vec![1, 2, 3] });
/// assert!(child.join()?.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedQueue<T> {
    q: ByteQueue,
    // No `T` is ever held, only its encoding: the queue is Send and Sync
    // whatever `T` is.
    _type: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> TypedQueue<T> {
    /// Creates the queue segment `name` for messages of type `T`
    /// ([`BytesConfig::for_max_message`] sizes it for the largest encoded
    /// message); [`Error::AlreadyExists`](crate::Error::AlreadyExists) if
    /// the name is taken.
    pub fn create(name: &str, config: BytesConfig) -> Result<Self> {
        Self::create_with(name, config, &Options::default())
    }

    /// [`TypedQueue::create`] with explicit options.
    pub fn create_with(name: &str, config: BytesConfig, opts: &Options) -> Result<Self> {
        ByteQueue::create_with(name, config, &typed_opts::<T>(opts)).map(Self::wrap)
    }

    /// Opens the queue segment `name`, which must have been made for `T`
    /// ([`Error::TypeMismatch`](crate::Error::TypeMismatch) otherwise).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`TypedQueue::open`] with explicit options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        ByteQueue::open_with(name, &typed_opts::<T>(opts)).map(Self::wrap)
    }

    /// Opens `name`, or creates it from `config`; returns whether this
    /// call created it.
    pub fn open_or_create(name: &str, config: BytesConfig) -> Result<(Self, bool)> {
        Self::open_or_create_with(name, config, &Options::default())
    }

    /// [`TypedQueue::open_or_create`] with explicit options.
    pub fn open_or_create_with(
        name: &str,
        config: BytesConfig,
        opts: &Options,
    ) -> Result<(Self, bool)> {
        ByteQueue::open_or_create_with(name, config, &typed_opts::<T>(opts))
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

    pub(super) fn wrap(q: ByteQueue) -> Self {
        TypedQueue {
            q,
            _type: PhantomData,
        }
    }

    /// The byte queue underneath (for its geometry, or to reach it with
    /// tools that read raw messages).
    pub fn as_bytes(&self) -> &ByteQueue {
        &self.q
    }

    /// The segment's name; `None` for an anonymous queue.
    pub fn name(&self) -> Option<&str> {
        self.q.name()
    }

    /// The longest encoded message it takes.
    pub fn max_message(&self) -> usize {
        self.q.max_message()
    }

    /// About how many messages are in the queue, like Python's `qsize`:
    /// a count each `put` raises after its message is in and each `get`
    /// lowers after its message is out, so it lags the queue by the calls
    /// in flight (and is only as good as the peers that keep it).
    pub fn qsize(&self) -> usize {
        usize::try_from(self.q.messages_sent_minus_taken()).unwrap_or(usize::MAX)
    }

    /// Whether no message is ready now (Python's `empty`).
    pub fn empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Whether a message of [`max_message`](Self::max_message) bytes might
    /// not fit now (Python's `full`; like it, a hint that may be stale by
    /// the time it returns). Space released by receivers counts as used
    /// until the next send reclaims it (writers reclaim lazily: see
    /// `ByteQueue::used_bytes` in `shmipc-core`), so it can say `true`
    /// where that send would fit.
    pub fn full(&self) -> bool {
        // A record is a 16-byte header and the payload padded to 16.
        let largest = 16 + self.q.max_message().div_ceil(16) * 16;
        self.q.capacity().saturating_sub(self.q.used_bytes()) < largest
    }

    /// Closes the queue for every process: sends fail with
    /// [`SendError::Closed`], receives drain what is left and then fail
    /// with [`RecvError::Closed`].
    pub fn close(&self) {
        self.q.close();
    }

    /// Whether it has been closed.
    pub fn is_closed(&self) -> bool {
        self.q.is_closed()
    }

    /// Sends `item`, waiting while the queue has no room.
    pub fn put(&self, item: &T) -> std::result::Result<(), MessageError> {
        self.send_with(item, |m| self.q.send(m))
    }

    /// Sends `item`, waiting at most `timeout` for room.
    pub fn put_timeout(
        &self,
        item: &T,
        timeout: Duration,
    ) -> std::result::Result<(), MessageError> {
        self.send_with(item, |m| self.q.send_timeout(m, timeout))
    }

    /// Sends `item` if there is room now.
    pub fn put_nowait(&self, item: &T) -> std::result::Result<(), MessageError> {
        self.send_with(item, |m| self.q.try_send(m))
    }

    /// Receives the next value, waiting while there is none.
    pub fn get(&self) -> std::result::Result<T, MessageError> {
        self.take(self.q.recv())
    }

    /// Receives the next value, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, MessageError> {
        self.take(self.q.recv_timeout(timeout))
    }

    /// Receives the next value if one is ready now.
    pub fn get_nowait(&self) -> std::result::Result<T, MessageError> {
        self.take(self.q.try_recv())
    }

    /// [`put`](Self::put), by its Rust name.
    pub fn push(&self, item: &T) -> std::result::Result<(), MessageError> {
        self.put(item)
    }

    /// [`put_timeout`](Self::put_timeout), by its Rust name.
    pub fn push_timeout(
        &self,
        item: &T,
        timeout: Duration,
    ) -> std::result::Result<(), MessageError> {
        self.put_timeout(item, timeout)
    }

    /// [`put_nowait`](Self::put_nowait), by its Rust name.
    pub fn try_push(&self, item: &T) -> std::result::Result<(), MessageError> {
        self.put_nowait(item)
    }

    /// [`get`](Self::get), by its Rust name.
    pub fn pop(&self) -> std::result::Result<T, MessageError> {
        self.get()
    }

    /// [`get_timeout`](Self::get_timeout), by its Rust name.
    pub fn pop_timeout(&self, timeout: Duration) -> std::result::Result<T, MessageError> {
        self.get_timeout(timeout)
    }

    /// [`get_nowait`](Self::get_nowait), by its Rust name.
    pub fn try_pop(&self) -> std::result::Result<T, MessageError> {
        self.get_nowait()
    }

    pub(crate) fn send_with(
        &self,
        item: &T,
        send: impl FnOnce(&[u8]) -> std::result::Result<(), SendError>,
    ) -> std::result::Result<(), MessageError> {
        encode(item, self.q.name(), send)?.map_err(|error| MessageError::Send {
            segment: label(self.q.name()),
            error,
        })?;
        // For `qsize`, on the writers' own cache line.
        self.q.count_sent();
        Ok(())
    }

    pub(crate) fn take(
        &self,
        grant: std::result::Result<
            shmipc_core::ReadGrant<'_, '_, crate::memory::Mapping>,
            RecvError,
        >,
    ) -> std::result::Result<T, MessageError> {
        let taken = grant.is_ok();
        let r = take(grant, self.q.name());
        if taken {
            // The message is out, decoded or not; on the readers' line.
            self.q.count_taken();
        }
        r
    }
}

impl<T> fmt::Debug for TypedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedQueue")
            .field("type", &std::any::type_name::<T>())
            .field("name", &self.q.name())
            .field("max_message", &self.q.max_message())
            .field("closed", &self.q.is_closed())
            .finish()
    }
}
