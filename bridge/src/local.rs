//! The local end of a mapping: a byte queue, a typed queue's segment or a
//! pipe end, opened by name, moving raw messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shmipc::typed::EncodedQueue;
use shmipc::{
    ByteQueue, Named, Options, PipeEnd, ReadGrant, RecvError, SendError, Side, WaitStrategy,
};

use crate::config::{End, KindName};

pub(crate) enum Local {
    Bytes(ByteQueue),
    Typed(EncodedQueue),
    Pipe(Arc<PipeEnd>),
}

/// Pipe ends claimed by this bridge, shared by the export and the import
/// mapping of one end (an end is claimed once per process).
pub(crate) type Pipes = Arc<Mutex<HashMap<(String, End), Arc<PipeEnd>>>>;

impl Local {
    /// Opens the object; `wait`, if given, is how its blocking calls wait
    /// (a pipe end shared by two mappings takes the first one's).
    pub(crate) fn open(
        kind: KindName,
        name: &str,
        end: Option<End>,
        pipes: &Pipes,
        wait: Option<WaitStrategy>,
    ) -> Result<Local, String> {
        match kind {
            KindName::Bytes => {
                let mut q = ByteQueue::open(name).map_err(|e| e.to_string())?;
                if let Some(w) = wait {
                    q.set_wait_strategy(w);
                }
                Ok(Local::Bytes(q))
            }
            KindName::Typed => {
                let mut q = EncodedQueue::open(name).map_err(|e| e.to_string())?;
                if let Some(w) = wait {
                    q.set_wait_strategy(w);
                }
                if q.fingerprint().is_none() {
                    return Err(format!(
                        "{name} records no message type: a typed mapping needs a TypedQueue's \
                         segment (use kind bytes for a ByteQueue)"
                    ));
                }
                Ok(Local::Typed(q))
            }
            KindName::Pipe => {
                let end = end.unwrap_or(End::A);
                let mut pipes = pipes.lock().map_err(|_| "pipe table poisoned".to_owned())?;
                if let Some(p) = pipes.get(&(name.to_owned(), end)) {
                    return Ok(Local::Pipe(p.clone()));
                }
                let side = match end {
                    End::A => Side::A,
                    End::B => Side::B,
                };
                let mut p = PipeEnd::open_end(name, side, &Options::default())
                    .map_err(|e| e.to_string())?;
                if let Some(w) = wait {
                    p.set_wait_strategy(w);
                }
                let p = Arc::new(p);
                pipes.insert((name.to_owned(), end), p.clone());
                Ok(Local::Pipe(p))
            }
        }
    }

    /// The envelope's shape words: the type's fingerprint, or the largest
    /// message and 0.
    pub(crate) fn shape(&self) -> [u64; 2] {
        match self {
            Local::Typed(q) => q.fingerprint().unwrap_or([0, 0]),
            _ => [self.max_message() as u64, 0],
        }
    }

    pub(crate) fn max_message(&self) -> usize {
        match self {
            Local::Bytes(q) => q.max_message(),
            Local::Typed(q) => q.as_bytes().max_message(),
            Local::Pipe(p) => p.max_message(),
        }
    }

    /// Appends the next message to `out`, waiting at most `timeout`.
    pub(crate) fn recv_append(
        &self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<(), RecvError> {
        match self {
            Local::Bytes(q) => append(out, q.recv_timeout(timeout)?),
            Local::Typed(q) => {
                out.extend_from_slice(&q.recv_vec_timeout(timeout)?);
                Ok(())
            }
            Local::Pipe(p) => append(out, p.recv_timeout(timeout)?),
        }
    }

    /// Appends the next message to `out` if one is ready now.
    pub(crate) fn try_recv_append(&self, out: &mut Vec<u8>) -> Result<(), RecvError> {
        match self {
            Local::Bytes(q) => append(out, q.try_recv()?),
            Local::Typed(q) => {
                out.extend_from_slice(&q.try_recv_vec()?);
                Ok(())
            }
            Local::Pipe(p) => append(out, p.try_recv()?),
        }
    }

    pub(crate) fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        match self {
            Local::Bytes(q) => q.send_timeout(msg, timeout),
            Local::Typed(q) => q.send_timeout(msg, timeout),
            Local::Pipe(p) => p.send_timeout(msg, timeout),
        }
    }

    pub(crate) fn try_send(&self, msg: &[u8]) -> Result<(), SendError> {
        match self {
            Local::Bytes(q) => q.try_send(msg),
            Local::Typed(q) => q.try_send(msg),
            Local::Pipe(p) => p.try_send(msg),
        }
    }

    /// Takes the oldest message out of a queue (drop-oldest); whether
    /// there was one. A pipe end cannot (the configuration refuses it).
    pub(crate) fn drop_oldest(&self) -> bool {
        match self {
            Local::Bytes(q) => q.try_recv().is_ok(),
            Local::Typed(q) => q.try_recv_vec().is_ok(),
            Local::Pipe(_) => false,
        }
    }
}

/// Copies a borrowed message to the end of `out` and releases it
/// (`Corrupted` if it was taken over meanwhile: the copy may be torn).
fn append<K>(out: &mut Vec<u8>, g: ReadGrant<'_, '_, K>) -> Result<(), RecvError> {
    let start = out.len();
    out.resize(start + g.len(), 0);
    g.copy_to(&mut out[start..]);
    g.release_checked()
}
