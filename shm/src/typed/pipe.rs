//! [`TypedPipe`]: any serde type both ways through a [`Pipe`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shmipc_core::{BytesConfig, SendError};

use super::{encode, label, take, typed_opts, MessageError};
use crate::error::Result;
use crate::memory::Mapping;
use crate::named::Named;
use crate::{Options, Pipe, PipeEnd, Side};

/// Makes and finds typed pipes: a [`Pipe`] whose two ends exchange values
/// of type `T` in both directions, like Python's `multiprocessing.Pipe`.
/// The constructors mirror [`Pipe`]'s and return [`TypedPipeEnd<T>`]s.
///
/// ```
/// use shmipc::{fork, BytesConfig, TypedPipe};
/// use std::time::Duration;
///
/// let (parent, child_end) = TypedPipe::<(u32, String)>::anon(BytesConfig::for_max_message(128)?)?;
/// let mut child = fork(move || {
///     let (n, word) = child_end.recv().expect("recv");
///     i32::from(child_end.send(&(n + 1, word.to_uppercase())).is_err())
/// })?;
/// parent.send(&(41, "hello".to_owned()))?;
/// assert!(parent.poll(Duration::from_secs(10)));
/// assert_eq!(parent.recv()?, (42, "HELLO".to_owned()));
/// assert!(child.join()?.success());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedPipe<T>(PhantomData<fn(T) -> T>);

impl<T: Serialize + DeserializeOwned> TypedPipe<T> {
    /// Creates the pipe segment `name` for messages of type `T` and
    /// returns end A (see [`Pipe::create`]).
    pub fn create(name: &str, config: BytesConfig) -> Result<TypedPipeEnd<T>> {
        Self::create_with(name, config, &Options::default())
    }

    /// [`TypedPipe::create`] with explicit options.
    pub fn create_with(name: &str, config: BytesConfig, opts: &Options) -> Result<TypedPipeEnd<T>> {
        Pipe::create_with(name, config, &typed_opts::<T>(opts)).map(TypedPipeEnd::wrap)
    }

    /// Opens the pipe segment `name`, which must have been made for `T`,
    /// and claims end B.
    pub fn open(name: &str) -> Result<TypedPipeEnd<T>> {
        Self::open_end(name, Side::B, &Options::default())
    }

    /// Opens the pipe segment `name` and claims the given end.
    pub fn open_end(name: &str, side: Side, opts: &Options) -> Result<TypedPipeEnd<T>> {
        Pipe::open_end(name, side, &typed_opts::<T>(opts)).map(TypedPipeEnd::wrap)
    }

    /// Claims end B of `name` if it exists, else creates it and takes end
    /// A; returns whether this call created it.
    pub fn open_or_create(name: &str, config: BytesConfig) -> Result<(TypedPipeEnd<T>, bool)> {
        let opts = Options::default();
        Mapping::open_or_create(
            || Self::open_end(name, Side::B, &opts),
            || Self::create_with(name, config, &opts),
        )
    }

    /// Both ends of a new pipe in anonymous shared memory: keep one, fork,
    /// use the other in the child.
    pub fn anon(config: BytesConfig) -> Result<(TypedPipeEnd<T>, TypedPipeEnd<T>)> {
        let (a, b) = Pipe::anon(config)?;
        Ok((TypedPipeEnd::wrap(a), TypedPipeEnd::wrap(b)))
    }

    /// Removes the name (see [`unlink`](crate::unlink)).
    pub fn unlink(name: &str) -> Result<()> {
        crate::unlink(name)
    }
}

/// One end of a [`TypedPipe`]: sends values of type `T` to the other end
/// and receives the values it sends.
pub struct TypedPipeEnd<T> {
    end: PipeEnd,
    _type: PhantomData<fn(T) -> T>,
}

impl<T: Serialize + DeserializeOwned> TypedPipeEnd<T> {
    fn wrap(end: PipeEnd) -> Self {
        TypedPipeEnd {
            end,
            _type: PhantomData,
        }
    }

    /// The byte end underneath.
    pub fn as_bytes(&self) -> &PipeEnd {
        &self.end
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.end.side()
    }

    /// The segment's name; `None` for an anonymous pipe.
    pub fn name(&self) -> Option<&str> {
        self.end.name()
    }

    /// Closes this end's sending direction: the other end drains what was
    /// sent and then gets [`MessageError::is_closed`] errors.
    pub fn close(&self) {
        self.end.close();
    }

    /// Whether this end's sending direction is closed.
    pub fn is_closed(&self) -> bool {
        self.end.is_closed()
    }

    /// Sends `value` to the other end, waiting while its direction is full.
    pub fn send(&self, value: &T) -> std::result::Result<(), MessageError> {
        self.send_with(value, |m| self.end.send(m))
    }

    /// Sends `value`, waiting at most `timeout` for room.
    pub fn send_timeout(
        &self,
        value: &T,
        timeout: Duration,
    ) -> std::result::Result<(), MessageError> {
        self.send_with(value, |m| self.end.send_timeout(m, timeout))
    }

    /// Sends `value` if there is room now.
    pub fn try_send(&self, value: &T) -> std::result::Result<(), MessageError> {
        self.send_with(value, |m| self.end.try_send(m))
    }

    /// Receives the next value from the other end, waiting while there is
    /// none.
    pub fn recv(&self) -> std::result::Result<T, MessageError> {
        take(self.end.recv(), self.end.name())
    }

    /// Receives the next value, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, MessageError> {
        take(self.end.recv_timeout(timeout), self.end.name())
    }

    /// Receives the next value if one is ready now.
    pub fn try_recv(&self) -> std::result::Result<T, MessageError> {
        take(self.end.try_recv(), self.end.name())
    }

    /// Waits at most `timeout` until a receive would not block (a value is
    /// ready, or the other end closed and everything was taken), like
    /// Python's `poll`. Takes nothing.
    pub fn poll(&self, timeout: Duration) -> bool {
        self.end.poll(timeout)
    }

    /// Decodes the value of a received message (or passes its error on).
    #[cfg(feature = "tokio")]
    pub(crate) fn take_grant<K>(
        &self,
        grant: std::result::Result<shmipc_core::ReadGrant<'_, '_, K>, shmipc_core::RecvError>,
    ) -> std::result::Result<T, MessageError> {
        take(grant, self.end.name())
    }

    pub(crate) fn send_with(
        &self,
        value: &T,
        send: impl FnOnce(&[u8]) -> std::result::Result<(), SendError>,
    ) -> std::result::Result<(), MessageError> {
        encode(value, self.end.name(), send)?.map_err(|error| MessageError::Send {
            segment: label(self.end.name()),
            error,
        })
    }
}

impl<T> fmt::Debug for TypedPipe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypedPipe<{}>", std::any::type_name::<T>())
    }
}

impl<T> fmt::Debug for TypedPipeEnd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPipeEnd")
            .field("type", &std::any::type_name::<T>())
            .field("end", &self.end)
            .finish()
    }
}
