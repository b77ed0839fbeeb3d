//! Typed messages: any `Serialize + DeserializeOwned` value through the
//! byte queues, the pipe and the shared dict, like Python's
//! `multiprocessing` sends any picklable object.
//!
//! | type | over | like |
//! |---|---|---|
//! | [`TypedQueue<T>`] | a [`ByteQueue`](crate::ByteQueue) | `multiprocessing.Queue` |
//! | [`TypedSoleSender<T>`] / [`TypedSoleReceiver<T>`] | one side of a [`TypedQueue`], held alone | (a faster single producer / consumer) |
//! | [`JoinableQueue<T>`] | a [`TypedQueue`] and a task count in its header | `multiprocessing.JoinableQueue` |
//! | [`TypedPipe`] / [`TypedPipeEnd<T>`] | a [`Pipe`](crate::Pipe) | `multiprocessing.Pipe` |
//! | [`TypedDict<K, V>`] | a [`SharedDict`](crate::SharedDict) | a manager's `dict` |
//! | [`EncodedQueue`] | a typed queue's segment, its messages left encoded | (for gateways) |
//!
//! Values are encoded with [postcard](https://docs.rs/postcard) (serde's
//! compact binary format) into a buffer of the calling thread's, reused
//! from call to call, and copied into the queue; a receiver copies the
//! message out of shared memory first and decodes the copy, never the
//! shared bytes in place (a hostile peer could change them meanwhile).
//! Once the buffers have grown to the largest message, sending and
//! receiving allocate nothing but what the value itself holds (a decoded
//! `String` is an allocation of its own).
//!
//! Every typed segment records its message type in its header
//! ([`Fingerprint`]), so opening it with another type is
//! [`Error::TypeMismatch`](crate::Error::TypeMismatch); a message that
//! does not decode as the type is [`MessageError::Decode`], naming the
//! type and the segment.
//!
//! # Sole handles
//!
//! A shared [`TypedQueue::put`] takes the queue's writers' lock for each
//! message (and a `get` the readers'), and counts it for `qsize` with a
//! locked instruction. For one producer (consumer) at a high rate,
//! [`TypedQueue::sole_sender`] ([`TypedQueue::sole_receiver`]) takes the
//! side's lock once and keeps it until the [`TypedSoleSender`]
//! ([`TypedSoleReceiver`]) is dropped: a message then costs the codec, a
//! copy in (out) and no locked instruction but the send's publication of
//! the ring's tail. The count stays on, in words only sole handles write,
//! so [`TypedQueue::qsize`] stays right when sole and shared handles mix.
//! Messages, errors and deadlines are the shared calls'.
//!
//! The price: while a sole handle lives, every other sender (receiver) of
//! the queue, in any process, waits (a `_nowait` call finds the queue
//! full, or empty), and another sole handle of that side is
//! [`Error::SideHeld`](crate::Error::SideHeld). A sole receiver that dies
//! while it copies a message out has not taken it: the next receiver gets
//! it again (at least once, where a shared receiver that dies holding a
//! message loses it: at most once). A sole sender that dies inside a
//! `put` sent the message whole or not at all; either may leave `qsize`
//! off by that one message. The handles are not `Send` (the
//! lock is the thread's), and a forked child's copies refuse to work
//! (`Corrupted`): a child makes its own once the parent's are dropped.
//!
//! The zero-copy path stays: [`Queue<T>`](crate::Queue) and
//! [`SpscQueue<T>`](crate::SpscQueue) move [`Pod`](crate::Pod) items with
//! no encoding at all. Pick those for fixed-size numeric records at the
//! highest rates; pick the typed ones for anything with a `String`, a
//! `Vec`, an `enum` or an `Option` in it.

mod codec;
mod dict;
mod encoded;
mod fingerprint;
mod joinable;
mod pipe;
mod queue;
mod sole;

pub use dict::TypedDict;
pub use encoded::EncodedQueue;
pub use fingerprint::Fingerprint;
pub use joinable::{JoinableQueue, TaskDoneError};
pub use pipe::{TypedPipe, TypedPipeEnd};
pub use queue::TypedQueue;
pub use sole::{TypedSoleReceiver, TypedSoleSender};

pub(crate) use codec::{decode, encode, encode_key, take, take_sole};

use std::fmt;

use shmipc_core::{RecvError, SendError};

use crate::DictError;

/// Why a typed send or receive failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// The queue or pipe refused the encoded message: full (a `try_`
    /// call), closed, timed out, larger than its maximum message, or
    /// corrupted.
    Send {
        /// The segment's name, `"(anonymous)"` for an anonymous one.
        segment: String,
        /// Why.
        error: SendError,
    },
    /// Nothing could be received: empty (a `try_` call), closed and
    /// drained, timed out, or corrupted.
    Recv {
        /// The segment's name.
        segment: String,
        /// Why.
        error: RecvError,
    },
    /// A dict operation failed (full, too large, lock timeout...).
    Dict(DictError),
    /// A [`JoinableQueue`] refused to count one more unfinished task (2^31
    /// - 1 are unfinished already); nothing was sent.
    Tasks {
        /// The segment's name.
        segment: String,
        /// Why.
        error: shmipc_core::TaskCountError,
    },
    /// The value could not be encoded (a `Serialize` impl that fails,
    /// a map of unknown length...).
    Encode {
        /// The segment's name.
        segment: String,
        /// The type being sent.
        type_name: &'static str,
        /// The codec's reason.
        reason: String,
    },
    /// A message was taken but does not decode as the expected type: a
    /// peer built with another version of the type, or one that wrote
    /// bytes of its own. The message is consumed; the next one is not
    /// affected.
    Decode {
        /// The segment's name.
        segment: String,
        /// The type the message should have been.
        type_name: &'static str,
        /// The message's length in bytes.
        len: usize,
        /// The codec's reason.
        reason: String,
    },
}

impl MessageError {
    /// Whether a `_timeout` call ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            MessageError::Send {
                error: SendError::Timeout,
                ..
            } | MessageError::Recv {
                error: RecvError::Timeout,
                ..
            } | MessageError::Dict(DictError::Timeout { .. })
        )
    }

    /// Whether the queue or pipe is closed (and, for a receive, drained).
    pub fn is_closed(&self) -> bool {
        matches!(
            self,
            MessageError::Send {
                error: SendError::Closed,
                ..
            } | MessageError::Recv {
                error: RecvError::Closed,
                ..
            }
        )
    }

    /// Whether the other side is gone: a receive found the queue or pipe
    /// empty with every sender gone (end of stream, Python's `EOFError`),
    /// or a send found no receiver left.
    pub fn is_disconnected(&self) -> bool {
        matches!(
            self,
            MessageError::Send {
                error: SendError::Disconnected,
                ..
            } | MessageError::Recv {
                error: RecvError::Disconnected,
                ..
            }
        )
    }

    /// Whether a `try_` (or `_nowait`) call found nothing to take, or no
    /// room.
    pub fn is_empty_or_full(&self) -> bool {
        matches!(
            self,
            MessageError::Send {
                error: SendError::Full,
                ..
            } | MessageError::Recv {
                error: RecvError::Empty,
                ..
            }
        )
    }
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Send { segment, error } => write!(f, "{segment:?}: {error}"),
            MessageError::Recv { segment, error } => write!(f, "{segment:?}: {error}"),
            MessageError::Dict(e) => write!(f, "{e}"),
            MessageError::Tasks { segment, error } => {
                write!(f, "{segment:?}: nothing was sent: {error}")
            }
            MessageError::Encode {
                segment,
                type_name,
                reason,
            } => write!(
                f,
                "{segment:?}: a value of type {type_name} could not be encoded: {reason}"
            ),
            MessageError::Decode {
                segment,
                type_name,
                len,
                reason,
            } => write!(
                f,
                "{segment:?}: a message of {len} bytes does not decode as {type_name}: {reason}"
            ),
        }
    }
}

impl std::error::Error for MessageError {}

impl From<DictError> for MessageError {
    fn from(e: DictError) -> Self {
        MessageError::Dict(e)
    }
}

/// The name errors give a segment: its own, or `"(anonymous)"`.
pub(crate) fn label(name: Option<&str>) -> String {
    name.unwrap_or("(anonymous)").to_owned()
}

/// `opts` asking for (or recording) messages of type `T`.
pub(crate) fn typed_opts<T>(opts: &crate::Options) -> crate::Options {
    opts.clone().fingerprint(Fingerprint::of::<T>())
}
