//! [`EncodedQueue`]: a typed queue's segment opened without its type, for
//! a process that moves encoded messages on without decoding them.

use std::fmt;
use std::time::Duration;

use shmipc_core::{RecvError, SendError};

use crate::error::Result;
use crate::named::Named;
use crate::{ByteQueue, Options};

/// The segment of a [`TypedQueue<T>`](super::TypedQueue), opened by a
/// process that does not know `T`: a gateway (the Zenoh bridge, say) that
/// takes encoded messages out and puts encoded messages in, keeping the
/// count behind [`TypedQueue::qsize`](super::TypedQueue::qsize) right.
///
/// It checks nothing about the bytes: a message put in here is decoded
/// (and checked) by the `TypedQueue<T>` that takes it out. Compare
/// [`fingerprint`](Self::fingerprint) with the sender's before putting.
pub struct EncodedQueue {
    q: ByteQueue,
}

impl EncodedQueue {
    /// Opens the queue segment `name`, whatever type it records (none, for
    /// a plain [`ByteQueue`]'s segment).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`EncodedQueue::open`] with explicit options (a fingerprint among
    /// them is checked, as for a typed open).
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        ByteQueue::open_with(name, opts).map(|q| EncodedQueue { q })
    }

    /// The byte queue underneath.
    pub fn as_bytes(&self) -> &ByteQueue {
        &self.q
    }

    /// Sets how this handle's blocking calls wait (see
    /// [`WaitStrategy`](crate::WaitStrategy)), as
    /// [`ByteQueue::set_wait_strategy`] does.
    pub fn set_wait_strategy(&mut self, strategy: crate::WaitStrategy) {
        self.q.set_wait_strategy(strategy);
    }

    /// The segment's name.
    pub fn name(&self) -> Option<&str> {
        self.q.name()
    }

    /// The two header words of the message type the segment was made for
    /// (the name hash, and `size | align << 32`, as
    /// [`Fingerprint`](super::Fingerprint) has them), or `None` if it
    /// records no type.
    pub fn fingerprint(&self) -> Option<[u64; 2]> {
        let h = self.q.memory().header();
        (h.type_hash != 0).then_some([h.type_hash, h.type_layout])
    }

    /// Puts one encoded message if there is room now.
    pub fn try_send(&self, msg: &[u8]) -> std::result::Result<(), SendError> {
        self.q.try_send(msg)?;
        self.q.count_sent();
        Ok(())
    }

    /// Puts one encoded message, waiting at most `timeout` for room.
    pub fn send_timeout(
        &self,
        msg: &[u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendError> {
        self.q.send_timeout(msg, timeout)?;
        self.q.count_sent();
        Ok(())
    }

    /// Takes the next encoded message if one is ready now.
    pub fn try_recv_vec(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.recv_vec_timeout(Duration::ZERO)
    }

    /// Takes the next encoded message, waiting at most `timeout`.
    pub fn recv_vec_timeout(&self, timeout: Duration) -> std::result::Result<Vec<u8>, RecvError> {
        let msg = self.q.recv_vec_timeout(timeout)?;
        self.q.count_taken();
        Ok(msg)
    }
}

impl fmt::Debug for EncodedQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedQueue")
            .field("name", &self.q.name())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}
