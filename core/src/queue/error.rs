//! The errors of the queues: one small enum per operation, and
//! [`QueueError`] for placing or finding a queue in bytes.

use core::fmt;

use crate::place::LayoutError;

macro_rules! simple_error {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $msg:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $($name::$variant => $msg,)*
                })
            }
        }

        impl core::error::Error for $name {}
    };
}

simple_error!(
    /// Why an item could not be pushed. The item is `Copy` (it is
    /// [`bytemuck::Pod`]), so the caller still has it.
    PushError {
        /// The queue is full (`try_push`).
        Full => "the queue is full",
        /// The queue was closed; it takes nothing more.
        Closed => "the queue is closed",
        /// The queue stayed full until the deadline.
        Timeout => "timed out waiting for room in the queue",
        /// The queue is full and no receiver is left to make room: every
        /// process that received from it has dropped its handle or died
        /// (reported only by handles set to, see
        /// `Mpmc::fail_sends_without_receiver`).
        Disconnected => "no receiver is left (broken pipe)",
        /// The shared control block holds values no correct peer writes,
        /// or this process's claim was taken from it because its peers
        /// judged it dead (which takes forged peer bookkeeping); the item
        /// was then not delivered.
        Corrupted => "the queue's shared memory is corrupted",
    }
);

simple_error!(
    /// Why an item could not be popped.
    PopError {
        /// The queue is empty (`try_pop`).
        Empty => "the queue is empty",
        /// The queue was closed and everything in it has been taken.
        Closed => "the queue is closed and drained",
        /// The queue stayed empty until the deadline.
        Timeout => "timed out waiting for an item",
        /// End of stream: the queue is empty and every process that ever
        /// sent to it has dropped its handle or died (Python's `EOFError`).
        Disconnected => "end of stream: the queue is empty and every sender is gone",
        /// The shared control block holds values no correct peer writes,
        /// or this process's claim was taken from it because its peers
        /// judged it dead (which takes forged peer bookkeeping); the item
        /// was then not delivered.
        Corrupted => "the queue's shared memory is corrupted",
    }
);

simple_error!(
    /// Why a message could not be sent (or space for it reserved).
    SendError {
        /// The message is longer than the queue's maximum message size.
        TooLarge => "the message is larger than the queue's maximum",
        /// There is no room for the message now (`try_send`).
        Full => "the queue has no room for the message",
        /// The queue was closed; it takes nothing more.
        Closed => "the queue is closed",
        /// No room appeared before the deadline.
        Timeout => "timed out waiting for room in the queue",
        /// There is no room and no receiver is left to make room: every
        /// process that received from the queue dropped its handle or
        /// died (a `Pipe`'s default; a byte queue's if set to).
        Disconnected => "no receiver is left (broken pipe)",
        /// The shared control block holds values no correct peer writes,
        /// or this process's claim was taken from it because its peers
        /// judged it dead (which takes forged peer bookkeeping); the item
        /// was then not delivered.
        Corrupted => "the queue's shared memory is corrupted",
    }
);

/// Why a message could not be received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvError {
    /// No message is ready (`try_recv`).
    Empty,
    /// The queue was closed and every message in it has been taken.
    Closed,
    /// No message arrived before the deadline.
    Timeout,
    /// End of stream: the queue is empty and every process that ever sent
    /// to it has dropped its handle or died (Python's `EOFError`).
    Disconnected,
    /// The shared memory holds values no correct peer writes, or this
    /// process's claim was taken from it because its peers judged it dead
    /// (which takes forged peer bookkeeping); nothing was handed out.
    Corrupted,
    /// The next message is longer than the buffer offered to
    /// `recv_into`; it stays in the queue. Holds the message's length.
    BufferTooSmall(usize),
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Empty => f.write_str("the queue is empty"),
            RecvError::Closed => f.write_str("the queue is closed and drained"),
            RecvError::Timeout => f.write_str("timed out waiting for a message"),
            RecvError::Disconnected => {
                f.write_str("end of stream: the queue is empty and every sender is gone")
            }
            RecvError::Corrupted => f.write_str("the queue's shared memory is corrupted"),
            RecvError::BufferTooSmall(n) => {
                write!(
                    f,
                    "the next message has {n} bytes, more than the buffer holds"
                )
            }
        }
    }
}

impl core::error::Error for RecvError {}

/// Why a queue could not be placed in, or found in, a stretch of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The bytes are misaligned or too short, or the parameters are invalid.
    Layout(LayoutError),
    /// The bytes do not start with a queue's magic number (not initialised,
    /// or not a queue at all).
    NotAQueue,
    /// A queue is there, but a different kind, layout version or element
    /// type than the one asked for.
    Incompatible(&'static str),
    /// The control block holds values no correct peer writes.
    Corrupted(&'static str),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Layout(e) => write!(f, "cannot place the queue: {e}"),
            QueueError::NotAQueue => f.write_str("the bytes hold no initialised queue"),
            QueueError::Incompatible(what) => write!(f, "incompatible queue: {what}"),
            QueueError::Corrupted(what) => write!(f, "corrupted queue: {what}"),
        }
    }
}

impl core::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            QueueError::Layout(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LayoutError> for QueueError {
    fn from(e: LayoutError) -> Self {
        QueueError::Layout(e)
    }
}
