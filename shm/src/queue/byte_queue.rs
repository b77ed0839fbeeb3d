//! [`ByteQueue`]: the core's byte-message queue in a segment of its own.

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use shmipc_core::bytes::ByteQueue as CoreByteQueue;
use shmipc_core::{BytesConfig, QueueError, RecvError, WaitStrategy};

use super::{check_bytes, object, take_vec};
use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;

/// A queue of variable-length byte messages in shared memory, for any
/// number of producer and consumer processes.
///
/// Messages are copied in with [`send`](CoreByteQueue::send) and out with
/// [`recv_into`](CoreByteQueue::recv_into), or filled and read in place with
/// [`reserve`](CoreByteQueue::reserve) / [`recv`](CoreByteQueue::recv) grants. A
/// message is never torn: a receiver sees all of it or nothing. Every
/// method takes `&self` and is the core byte queue's, which this type
/// dereferences to; see [`shmipc_core::bytes`] for the ring and what a
/// crash costs.
///
/// ```
/// use shmipc::{BytesConfig, ByteQueue, Named, Unlinker};
///
/// let names = Unlinker::new("doc-bytes");
/// let name = names.name("log");
/// let log = ByteQueue::create(&name, BytesConfig::for_max_message(1024).unwrap())?;
/// let reader = ByteQueue::open(&name)?;             // e.g. in another process
///
/// log.send(b"hello")?;
/// let mut grant = log.reserve(5)?;                  // zero-copy: fill in place
/// grant.write_at(0, b"world").unwrap();
/// grant.commit();
///
/// let mut buf = [0u8; 1024];
/// let n = reader.recv_into(&mut buf)?;
/// assert_eq!(&buf[..n], b"hello");
/// assert_eq!(reader.recv_vec()?, b"world");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ByteQueue(CoreByteQueue<'static, Mapping>);

impl Named for ByteQueue {
    const KIND: Kind = Kind::BYTE_QUEUE;
    /// The ring's size and the largest message
    /// ([`BytesConfig::for_max_message`] picks a capacity).
    type Config<'a> = BytesConfig;
    type Anon = Self;

    fn layout(config: &BytesConfig) -> std::result::Result<ObjectLayout, shmipc_core::LayoutError> {
        let l = CoreByteQueue::layout(*config)?;
        Ok(ObjectLayout::new(Self::KIND, l, config.to_words()))
    }

    unsafe fn init(
        ptr: *mut u8,
        len: usize,
        config: BytesConfig,
    ) -> std::result::Result<(), QueueError> {
        // SAFETY: forwarded contract; init_at checks size and alignment.
        unsafe { CoreByteQueue::init_at(ptr, len, config) }.map(drop)
    }

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        check_bytes(name, header, super::PARAMS_INVALID, CoreByteQueue::layout)
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        let (ptr, len) = object(&memory, 0)?;
        // SAFETY: as in `Queue::attach`: the handle and each clone own the
        // mapping the bytes live in.
        let q = unsafe { CoreByteQueue::attach_owned(ptr, len, memory.clone()) }
            .map_err(|e| Error::from_queue(memory.label(), e))?;
        Ok(ByteQueue(q))
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        Self::attach(memory, true)
    }
}

impl Deref for ByteQueue {
    type Target = CoreByteQueue<'static, Mapping>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl ByteQueue {
    /// The memory it lives in (the typed queue keeps its count in the
    /// header).
    pub(crate) fn memory(&self) -> &Mapping {
        self.0.owner()
    }

    /// The normalised name, or `None` for an anonymous queue.
    pub fn name(&self) -> Option<&str> {
        self.0.owner().name()
    }

    /// Whether a send that finds the queue full and no live receiver fails
    /// with [`SendError`](shmipc_core::SendError)`::Disconnected` (`true`)
    /// or keeps waiting for room (`false`, the default: a queue may outlive
    /// its consumers). A receiver is a handle that has received. Only a
    /// send that would block looks.
    pub fn fail_sends_without_receiver(self, on: bool) -> Self {
        ByteQueue(self.0.fail_sends_without_receiver(on))
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

    /// Receives the next message into a new `Vec`, sleeping while there is
    /// none.
    pub fn recv_vec(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.0.recv().and_then(take_vec)
    }

    /// Receives the next message into a new `Vec`, waiting at most
    /// `timeout`.
    pub fn recv_vec_timeout(&self, timeout: Duration) -> std::result::Result<Vec<u8>, RecvError> {
        self.0.recv_timeout(timeout).and_then(take_vec)
    }
}

impl fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteQueue")
            .field("name", &self.name())
            .field("capacity", &self.capacity())
            .field("max_message", &self.max_message())
            .field("closed", &self.is_closed())
            .finish()
    }
}
