//! [`TypedSoleSender`] / [`TypedSoleReceiver`]: one side of a
//! [`TypedQueue`] held by one handle, over the byte queue's sole handles
//! ([`SoleSender`], [`SoleReceiver`]); see the docs of
//! [`typed`](crate::typed), "Sole handles".

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shmipc_core::{SendError, SoleError, SoleReceiver, SoleSender};

use super::{encode, label, take_sole, MessageError, TypedQueue};
use crate::error::{Error, Result};
use crate::memory::Mapping;

impl<T: Serialize + DeserializeOwned> TypedQueue<T> {
    /// The senders' side for one handle alone: waits for the writers' lock
    /// (taking it over from a holder that died) and keeps it until the
    /// [`TypedSoleSender`] is dropped. Meanwhile every other sender of the
    /// queue, in any process, waits (a `put_nowait`: full). Not `Send`:
    /// the lock belongs to the calling thread. A second sole sender in the
    /// same thread is [`Error::SideHeld`].
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use shmipc::{fork, BytesConfig, TypedQueue, Unlinker};
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct Tick {
    ///     seq: u64,
    ///     symbol: String,
    /// }
    ///
    /// let names = Unlinker::new("doc-typed-sole");
    /// let name = names.name("ticks");
    /// let q = TypedQueue::<Tick>::create(&name, BytesConfig::for_max_message(128)?)?;
    /// let mut child = fork(move || {
    ///     let q = TypedQueue::<Tick>::open(&name).expect("open");
    ///     let mut tx = q.sole_sender().expect("the senders' side");
    ///     for seq in 0..100 {
    ///         tx.put(&Tick { seq, symbol: "ABC".into() }).expect("put");
    ///     }
    ///     0
    /// })?;
    /// let mut rx = q.sole_receiver()?;
    /// for seq in 0..100 {
    ///     assert_eq!(rx.get()?, Tick { seq, symbol: "ABC".into() });
    /// }
    /// assert!(child.join()?.success());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sole_sender(&self) -> Result<TypedSoleSender<'_, T>> {
        self.sole_sender_from(self.as_bytes().sole_sender())
    }

    /// [`TypedQueue::sole_sender`] if the writers' lock is free now
    /// ([`Error::SideHeld`] otherwise, also when its holder died: only a
    /// waiting call takes a lock over).
    pub fn try_sole_sender(&self) -> Result<TypedSoleSender<'_, T>> {
        self.sole_sender_from(self.as_bytes().try_sole_sender())
    }

    /// [`TypedQueue::sole_sender`], waiting at most `timeout` for the lock
    /// ([`Error::SideHeld`] when it passes).
    pub fn sole_sender_timeout(&self, timeout: Duration) -> Result<TypedSoleSender<'_, T>> {
        self.sole_sender_from(self.as_bytes().sole_sender_timeout(timeout))
    }

    /// The receivers' side for one handle alone, as
    /// [`TypedQueue::sole_sender`] takes the senders': every other
    /// receiver waits (a `get_nowait`: empty) until the
    /// [`TypedSoleReceiver`] is dropped.
    pub fn sole_receiver(&self) -> Result<TypedSoleReceiver<'_, T>> {
        self.sole_receiver_from(self.as_bytes().sole_receiver())
    }

    /// [`TypedQueue::sole_receiver`] if the readers' lock is free now.
    pub fn try_sole_receiver(&self) -> Result<TypedSoleReceiver<'_, T>> {
        self.sole_receiver_from(self.as_bytes().try_sole_receiver())
    }

    /// [`TypedQueue::sole_receiver`], waiting at most `timeout` for the
    /// lock.
    pub fn sole_receiver_timeout(&self, timeout: Duration) -> Result<TypedSoleReceiver<'_, T>> {
        self.sole_receiver_from(self.as_bytes().sole_receiver_timeout(timeout))
    }

    fn sole_sender_from<'q>(
        &'q self,
        tx: std::result::Result<SoleSender<'q, 'static, Mapping>, SoleError>,
    ) -> Result<TypedSoleSender<'q, T>> {
        match tx {
            // Counting, in the writers' own sole word: `qsize` stays right
            // beside shared handles' counts.
            Ok(tx) => Ok(TypedSoleSender {
                q: self,
                tx: tx.counting(true),
            }),
            Err(e) => Err(Error::from_sole(self.name(), true, e)),
        }
    }

    fn sole_receiver_from<'q>(
        &'q self,
        rx: std::result::Result<SoleReceiver<'q, 'static, Mapping>, SoleError>,
    ) -> Result<TypedSoleReceiver<'q, T>> {
        match rx {
            Ok(rx) => Ok(TypedSoleReceiver {
                q: self,
                rx: rx.counting(true),
            }),
            Err(e) => Err(Error::from_sole(self.name(), false, e)),
        }
    }

    /// The result of a sole send: the codec's error, or the queue's.
    fn sent(
        &self,
        r: std::result::Result<std::result::Result<(), SendError>, MessageError>,
    ) -> std::result::Result<(), MessageError> {
        r?.map_err(|error| MessageError::Send {
            segment: label(self.name()),
            error,
        })
    }
}

/// The senders' side of a [`TypedQueue`], held by this handle alone (see
/// [`TypedQueue::sole_sender`] and [the module docs](crate::typed#sole-handles)). Its calls
/// are [`TypedQueue`]'s, with the same errors and deadlines; it needs
/// `&mut self`, and is not `Send`.
pub struct TypedSoleSender<'q, T> {
    q: &'q TypedQueue<T>,
    tx: SoleSender<'q, 'static, Mapping>,
}

impl<'q, T: Serialize + DeserializeOwned> TypedSoleSender<'q, T> {
    /// The queue this handle sends to.
    pub fn queue(&self) -> &'q TypedQueue<T> {
        self.q
    }

    /// Sends `item`, waiting while the queue has no room.
    pub fn put(&mut self, item: &T) -> std::result::Result<(), MessageError> {
        let tx = &mut self.tx;
        self.q.sent(encode(item, self.q.name(), |m| tx.send(m)))
    }

    /// Sends `item`, waiting at most `timeout` for room.
    pub fn put_timeout(
        &mut self,
        item: &T,
        timeout: Duration,
    ) -> std::result::Result<(), MessageError> {
        let tx = &mut self.tx;
        self.q
            .sent(encode(item, self.q.name(), |m| tx.send_timeout(m, timeout)))
    }

    /// Sends `item` if there is room now.
    pub fn put_nowait(&mut self, item: &T) -> std::result::Result<(), MessageError> {
        let tx = &mut self.tx;
        self.q.sent(encode(item, self.q.name(), |m| tx.try_send(m)))
    }

    /// [`put`](Self::put), by its Rust name.
    pub fn push(&mut self, item: &T) -> std::result::Result<(), MessageError> {
        self.put(item)
    }

    /// [`put_timeout`](Self::put_timeout), by its Rust name.
    pub fn push_timeout(
        &mut self,
        item: &T,
        timeout: Duration,
    ) -> std::result::Result<(), MessageError> {
        self.put_timeout(item, timeout)
    }

    /// [`put_nowait`](Self::put_nowait), by its Rust name.
    pub fn try_push(&mut self, item: &T) -> std::result::Result<(), MessageError> {
        self.put_nowait(item)
    }
}

impl<T> fmt::Debug for TypedSoleSender<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSoleSender")
            .field("queue", self.q)
            .finish()
    }
}

/// The receivers' side of a [`TypedQueue`], held by this handle alone
/// (see [`TypedQueue::sole_receiver`] and [the module docs](crate::typed#sole-handles)). Each
/// message is copied out of shared memory and the copy decoded, as a
/// shared `get` does. If the process dies while it copies a message out,
/// the message is not taken: the next receiver gets it (at least once).
pub struct TypedSoleReceiver<'q, T> {
    q: &'q TypedQueue<T>,
    rx: SoleReceiver<'q, 'static, Mapping>,
}

impl<'q, T: Serialize + DeserializeOwned> TypedSoleReceiver<'q, T> {
    /// The queue this handle receives from.
    pub fn queue(&self) -> &'q TypedQueue<T> {
        self.q
    }

    /// Receives the next value, waiting while there is none.
    pub fn get(&mut self) -> std::result::Result<T, MessageError> {
        take_sole(self.rx.recv(), self.q.name())
    }

    /// Receives the next value, waiting at most `timeout`.
    pub fn get_timeout(&mut self, timeout: Duration) -> std::result::Result<T, MessageError> {
        take_sole(self.rx.recv_timeout(timeout), self.q.name())
    }

    /// Receives the next value if one is ready now.
    pub fn get_nowait(&mut self) -> std::result::Result<T, MessageError> {
        take_sole(self.rx.try_recv(), self.q.name())
    }

    /// [`get`](Self::get), by its Rust name.
    pub fn pop(&mut self) -> std::result::Result<T, MessageError> {
        self.get()
    }

    /// [`get_timeout`](Self::get_timeout), by its Rust name.
    pub fn pop_timeout(&mut self, timeout: Duration) -> std::result::Result<T, MessageError> {
        self.get_timeout(timeout)
    }

    /// [`get_nowait`](Self::get_nowait), by its Rust name.
    pub fn try_pop(&mut self) -> std::result::Result<T, MessageError> {
        self.get_nowait()
    }
}

impl<T> fmt::Debug for TypedSoleReceiver<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSoleReceiver")
            .field("queue", self.q)
            .finish()
    }
}
