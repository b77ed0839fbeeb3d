//! Each mapping's counters, in a shared-memory [`Array`] of its own (the
//! [status segment](crate::Config::status_name)): any process on the host
//! reads them (`shmipc inspect`, or [`counters`]), and they outlive the
//! bridge, so that a restarted bridge continues its sequence numbers and
//! its gap count where the last one stopped, even after a SIGKILL.

use std::fmt;
use std::time::Duration;

use shmipc::{Array, Named};

/// How long a bridge waits for a status segment's lock before it reports
/// the mapping broken (and reopens it) rather than wait for ever: a
/// process stopped while it reads the counters keeps the lock, and no
/// takeover applies to a live holder.
const LOCK_TIMEOUT: Duration = Duration::from_secs(2);

/// The counters of one mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages taken out and handed to Zenoh (export), or put into the
    /// local object (import).
    pub messages: u64,
    /// Imports: sequence numbers never seen from a source (messages lost
    /// between the hosts, at most once being the promise).
    pub gaps: u64,
    /// Imports with `drop-oldest`: messages taken out of the full local
    /// queue to make room.
    pub dropped_oldest: u64,
    /// Imports: messages in envelopes that carried this bridge's own host
    /// id (the loop guard dropped them).
    pub looped: u64,
    /// Imports: samples that are not an envelope this build reads (one
    /// each, however many messages they claim).
    pub malformed: u64,
    /// Imports: messages in envelopes of the wrong kind or type, or
    /// numbered past `u64::MAX` (no number follows it); messages too long
    /// for the local object; and messages the local object refused
    /// (closed).
    pub rejected: u64,
    /// Imports: times a source's new run started its numbers again below
    /// the ones seen (that source's bridge lost its status segment and
    /// started from 0).
    pub source_restarts: u64,
    /// Imports: messages dropped because they came from an older run of
    /// their source than one already seen (a killed bridge's last
    /// messages, arriving after its successor's first ones), or repeated a
    /// number already seen (of an envelope partly seen, only those). They are among the gaps already counted.
    pub late: u64,
    /// Exports: times the last matching subscriber went away (a lost peer).
    pub peer_losses: u64,
    /// Exports: the sequence number the next message gets.
    pub next_seq: u64,
    /// Exports: whether a subscriber on another host matches the key now.
    pub matching: bool,
    /// Exports: the id of the current (or last) run, in every envelope.
    pub run: u64,
}

pub(crate) const MESSAGES: usize = 0;
pub(crate) const GAPS: usize = 1;
pub(crate) const DROPPED_OLDEST: usize = 2;
pub(crate) const LOOPED: usize = 3;
pub(crate) const MALFORMED: usize = 4;
pub(crate) const REJECTED: usize = 5;
pub(crate) const SOURCE_RESTARTS: usize = 6;
pub(crate) const PEER_LOSSES: usize = 7;
pub(crate) const NEXT_SEQ: usize = 8;
pub(crate) const MATCHING: usize = 9;
pub(crate) const RUN: usize = 10;
pub(crate) const LATE: usize = 11;
/// Imports: where the table of sources starts, triples of (source host id
/// hash, run id, next expected sequence number); a zero id is a free slot.
pub(crate) const SOURCES_AT: usize = 16;
/// Words per entry of the table of sources.
pub(crate) const SOURCE_WORDS: usize = 3;
/// Sources whose expected sequence number survives a restart (more are
/// tracked in memory).
pub(crate) const SOURCE_SLOTS: usize = 8;
/// The status segment's length in words.
pub const WORDS: usize = SOURCES_AT + SOURCE_WORDS * SOURCE_SLOTS;

impl Counters {
    pub(crate) fn from_words(w: &[u64]) -> Counters {
        Counters {
            messages: w[MESSAGES],
            gaps: w[GAPS],
            dropped_oldest: w[DROPPED_OLDEST],
            looped: w[LOOPED],
            malformed: w[MALFORMED],
            rejected: w[REJECTED],
            source_restarts: w[SOURCE_RESTARTS],
            peer_losses: w[PEER_LOSSES],
            next_seq: w[NEXT_SEQ],
            matching: w[MATCHING] != 0,
            run: w[RUN],
            late: w[LATE],
        }
    }
}

/// Why a status segment could not be read.
#[derive(Debug)]
pub enum StatusError {
    /// Opening or creating the segment failed.
    Open(shmipc::Error),
    /// The segment's lock or cells failed.
    Access(String, shmipc::ArrayError),
    /// The array has another length: not a bridge's status segment.
    Length(String, usize),
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::Open(e) => write!(f, "bridge status segment: {e}"),
            StatusError::Access(n, e) => write!(f, "bridge status segment {n}: {e}"),
            StatusError::Length(n, len) => write!(
                f,
                "bridge status segment {n}: an array of {len} words; a bridge's has {WORDS} \
                 (one of 32 is an older bridge's, from before run ids: unlink it)"
            ),
        }
    }
}

impl std::error::Error for StatusError {}

/// Reads the counters in the status segment `name` (see
/// [`Config::status_name`](crate::Config::status_name)).
pub fn counters(name: &str) -> Result<Counters, StatusError> {
    Status::open(name)?.counters()
}

pub(crate) struct Status {
    cells: Array<u64>,
    name: String,
    /// The longest wait for the lock of a write ([`LOCK_TIMEOUT`]).
    timeout: Duration,
}

impl Status {
    fn open(name: &str) -> Result<Status, StatusError> {
        let cells = Array::<u64>::open(name).map_err(StatusError::Open)?;
        Status::checked(cells, name)
    }

    pub(crate) fn open_or_create(name: &str) -> Result<Status, StatusError> {
        let (cells, _) =
            Array::<u64>::open_or_create(name, &[0; WORDS]).map_err(StatusError::Open)?;
        Status::checked(cells, name)
    }

    fn checked(cells: Array<u64>, name: &str) -> Result<Status, StatusError> {
        if cells.len() != WORDS {
            return Err(StatusError::Length(name.to_owned(), cells.len()));
        }
        Ok(Status {
            cells,
            name: name.to_owned(),
            timeout: LOCK_TIMEOUT,
        })
    }

    pub(crate) fn counters(&self) -> Result<Counters, StatusError> {
        let w = self
            .cells
            .snapshot()
            .map_err(|e| StatusError::Access(self.name.clone(), e))?;
        Ok(Counters::from_words(&w))
    }

    pub(crate) fn words(&self) -> Result<Vec<u64>, StatusError> {
        self.cells
            .snapshot()
            .map_err(|e| StatusError::Access(self.name.clone(), e))
    }

    /// Writes the given words, `(index, value)`, under the array's lock:
    /// one lock and the writes, no copy of the rest (a message's cost).
    /// Waits at most [`LOCK_TIMEOUT`] for the lock.
    pub(crate) fn set(&self, writes: &[(usize, u64)]) -> Result<(), StatusError> {
        self.cells
            .set_many_timeout(writes, self.timeout)
            .map_err(|e| StatusError::Access(self.name.clone(), e))
    }

    /// Changes the words under the array's lock (copies them all: for
    /// what does not happen on every message). Waits at most
    /// [`LOCK_TIMEOUT`] for the lock.
    pub(crate) fn update(&self, f: impl FnOnce(&mut [u64])) -> Result<(), StatusError> {
        self.cells
            .update_timeout(f, self.timeout)
            .map_err(|e| StatusError::Access(self.name.clone(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmipc::{ArrayError, Unlinker};
    use std::sync::mpsc;

    #[test]
    fn a_write_behind_a_held_lock_ends_in_an_error_not_a_hang() {
        let names = Unlinker::new("bridge-status");
        let name = names.name("held");
        let mut status = Status::open_or_create(&name).unwrap();
        status.timeout = Duration::from_millis(20);
        let other = Status::open(&name).unwrap();
        let (held, is_held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let other = &other;
        std::thread::scope(|s| {
            s.spawn(move || {
                // Holds the lock (a reader stopped mid-read, say) until told.
                other
                    .cells
                    .update(|_| {
                        held.send(()).unwrap();
                        released.recv().unwrap();
                    })
                    .unwrap();
            });
            is_held.recv().unwrap();
            let timed_out = |r: Result<(), StatusError>| {
                matches!(r, Err(StatusError::Access(_, ArrayError::Timeout { .. })))
            };
            assert!(timed_out(status.set(&[(MESSAGES, 1), (NEXT_SEQ, 1)])));
            assert!(timed_out(status.update(|w| w[GAPS] += 1)));
            release.send(()).unwrap();
        });
        // Nothing of the refused writes landed; a write now goes through.
        assert_eq!(status.counters().unwrap(), Counters::default());
        status.set(&[(MESSAGES, 3)]).unwrap();
        assert_eq!(status.counters().unwrap().messages, 3);
    }
}
