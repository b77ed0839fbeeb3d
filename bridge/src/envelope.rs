//! The envelope bridged messages travel in: a fixed 48-byte header in
//! front of one or more messages, little-endian whatever the hosts are.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `SHMB` |
//! | 4 | format version ([`VERSION`]) |
//! | 5 | kind ([`Kind`]) |
//! | 6..8 | count: how many messages follow, at least 1 (u16) |
//! | 8..16 | source host id (a hash of the exporting bridge's `host_id`) |
//! | 16..24 | run id: chosen when the export starts, larger than the last run's |
//! | 24..32 | sequence number, per source and key, from 0, going on across runs |
//! | 32..48 | shape: for a typed queue its type's fingerprint (the name hash, and `size \| align << 32`); for bytes and pipes the source's largest message and 0 |
//! | 48.. | the messages, each a u32 length and its bytes, as the local queue held them (a typed message stays postcard-encoded) |
//!
//! The messages of one envelope have consecutive sequence numbers, the
//! first one's in the header. An export takes what its queue already
//! holds, up to [`BATCH_BYTES`], into one envelope, so that a stream of
//! small messages pays Zenoh's cost per sample once per batch, while a
//! lone message leaves at once, alone.
//!
//! Version 1 had no run id (a 40-byte header, the sequence number at 16);
//! version 2 carried exactly one message, unframed, with bytes 6..8 zero.
//! This build refuses both, as it refuses any version but its own.
//!
//! The run id orders the runs of one source: a bridge killed and started
//! again may still have messages on the way over its dead link when its
//! successor's first ones arrive on the new link, and an import drops
//! those of an older run once it has seen a newer one
//! ([`Counters::late`](crate::Counters::late)), so that the order per
//! source holds.

use std::fmt;

/// The first four bytes of every envelope.
pub const MAGIC: [u8; 4] = *b"SHMB";
/// The envelope format this build writes and reads.
pub const VERSION: u8 = 3;
/// The header's length; the payload starts here.
pub const HEADER_LEN: usize = 48;
/// The length word in front of each message.
pub const FRAME_LEN: usize = 4;
/// An export adds no further message to an envelope once its messages
/// reach this many bytes (the first one goes in whatever its size).
pub const BATCH_BYTES: usize = 16 << 10;

/// What kind of local object a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A [`ByteQueue`](shmipc::ByteQueue) message.
    Bytes = 1,
    /// A [`TypedQueue`](shmipc::TypedQueue) message, still encoded.
    Typed = 2,
    /// A message sent into one direction of a [`Pipe`](shmipc::Pipe).
    Pipe = 3,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Bytes),
            2 => Some(Kind::Typed),
            3 => Some(Kind::Pipe),
            _ => None,
        }
    }

    /// The name used in configuration files and flags.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bytes => "bytes",
            Kind::Typed => "typed",
            Kind::Pipe => "pipe",
        }
    }
}

/// A decoded envelope header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The source's kind of object.
    pub kind: Kind,
    /// How many messages the envelope carries (at least 1).
    pub count: u16,
    /// The exporting bridge's host id hash ([`host_hash`]).
    pub source: u64,
    /// The exporting run's id (larger for a later run of the same source).
    pub run: u64,
    /// The first message's sequence number from that source on that key
    /// (the others follow it one by one).
    pub seq: u64,
    /// The element size or type fingerprint (see the module table).
    pub shape: [u64; 2],
}

/// Why bytes received are not an envelope this build reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Fewer bytes than a header.
    Short(usize),
    /// The first four bytes are not [`MAGIC`].
    Magic([u8; 4]),
    /// A format version this build does not read.
    Version(u8),
    /// An unknown kind byte.
    Kind(u8),
    /// A count of zero messages.
    Empty,
    /// The messages do not fill the payload exactly: `count` said, the
    /// frame at index `index` claims `claims` bytes (`None`: its length
    /// word itself is cut short) where `left` remain.
    Frames {
        /// The header's message count.
        count: u16,
        /// The frame that does not fit, from 0.
        index: u16,
        /// The length its word claims, if the word is whole.
        claims: Option<u32>,
        /// The payload bytes left at that frame.
        left: usize,
    },
    /// Bytes left over after the last of `count` messages.
    Trailing {
        /// The header's message count.
        count: u16,
        /// How many bytes are left over.
        bytes: usize,
    },
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::Short(n) => write!(
                f,
                "envelope of {n} bytes: it must have at least the {HEADER_LEN}-byte header"
            ),
            EnvelopeError::Magic(m) => write!(f, "envelope magic {m:?}: it must be {MAGIC:?}"),
            EnvelopeError::Version(v) => {
                write!(
                    f,
                    "envelope version {v}: this build reads version {VERSION}"
                )
            }
            EnvelopeError::Kind(k) => {
                write!(
                    f,
                    "envelope kind {k}: it must be 1 (bytes), 2 (typed) or 3 (pipe)"
                )
            }
            EnvelopeError::Empty => {
                write!(f, "envelope count 0: it must carry at least one message")
            }
            EnvelopeError::Frames {
                count,
                index,
                claims: Some(n),
                left,
            } => write!(
                f,
                "envelope of {count} messages: message {index} claims {n} bytes, \
                 {left} are left"
            ),
            EnvelopeError::Frames {
                count,
                index,
                claims: None,
                left,
            } => write!(
                f,
                "envelope of {count} messages: message {index}'s {FRAME_LEN}-byte length \
                 is cut short, {left} bytes are left"
            ),
            EnvelopeError::Trailing { count, bytes } => write!(
                f,
                "envelope of {count} messages: {bytes} bytes follow the last one"
            ),
        }
    }
}

impl std::error::Error for EnvelopeError {}

impl Header {
    /// Appends the header's 48 bytes to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.source.to_le_bytes());
        out.extend_from_slice(&self.run.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.shape[0].to_le_bytes());
        out.extend_from_slice(&self.shape[1].to_le_bytes());
    }

    /// Splits `bytes` into a header and its messages, checking that the
    /// messages fill the payload exactly.
    pub fn read(bytes: &[u8]) -> Result<(Header, Messages<'_>), EnvelopeError> {
        if bytes.len() < HEADER_LEN {
            return Err(EnvelopeError::Short(bytes.len()));
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(EnvelopeError::Magic(magic));
        }
        if bytes[4] != VERSION {
            return Err(EnvelopeError::Version(bytes[4]));
        }
        let kind = Kind::from_byte(bytes[5]).ok_or(EnvelopeError::Kind(bytes[5]))?;
        let count = u16::from_le_bytes([bytes[6], bytes[7]]);
        if count == 0 {
            return Err(EnvelopeError::Empty);
        }
        let header = Header {
            kind,
            count,
            source: word(8),
            run: word(16),
            seq: word(24),
            shape: [word(32), word(40)],
        };
        let payload = &bytes[HEADER_LEN..];
        // Walk the frames once before any is handed out, so that a
        // malformed envelope delivers nothing.
        let mut rest = payload;
        for index in 0..count {
            let err = |claims| EnvelopeError::Frames {
                count,
                index,
                claims,
                left: rest.len(),
            };
            let Some((len, after)) = frame(rest) else {
                return Err(err(None));
            };
            let Some(after) = after.get(len as usize..) else {
                return Err(err(Some(len)));
            };
            rest = after;
        }
        if !rest.is_empty() {
            return Err(EnvelopeError::Trailing {
                count,
                bytes: rest.len(),
            });
        }
        Ok((header, Messages { rest: payload }))
    }
}

/// A frame's length word and what follows it, if the word is whole.
fn frame(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<FRAME_LEN>()?;
    Some((u32::from_le_bytes(*len), rest))
}

/// The messages of an envelope [`Header::read`] checked, in order.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Messages<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, after) = frame(self.rest)?;
        let (msg, rest) = after.split_at_checked(len as usize)?;
        self.rest = rest;
        Some(msg)
    }
}

/// Starts a message in an envelope being built: its length word, to be
/// filled by [`end_message`] once the bytes are appended after it.
/// Returns where the word is.
pub fn begin_message(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_LEN]);
    at
}

/// Fills the length word at `at` (from [`begin_message`]) with the
/// length of what follows it.
///
/// # Panics
/// If that is 4 GiB or more (no local queue holds such a message).
pub fn end_message(out: &mut [u8], at: usize) {
    let len = u32::try_from(out.len() - at - FRAME_LEN).expect("a message under 4 GiB");
    out[at..at + FRAME_LEN].copy_from_slice(&len.to_le_bytes());
}

/// Writes `count` into the header at the start of `out`.
pub fn set_count(out: &mut [u8], count: u16) {
    out[6..8].copy_from_slice(&count.to_le_bytes());
}

/// An envelope of `messages` under `header` (its count set to theirs),
/// as a test peer or another implementation would build it.
///
/// # Panics
/// If there are none, more than `u16::MAX`, or one of 4 GiB or more.
pub fn encode(header: &Header, messages: &[&[u8]]) -> Vec<u8> {
    let count = u16::try_from(messages.len()).expect("at most u16::MAX messages");
    assert!(count > 0, "an envelope carries at least one message");
    let mut out = Vec::new();
    Header { count, ..*header }.write(&mut out);
    for m in messages {
        let at = begin_message(&mut out);
        out.extend_from_slice(m);
        end_message(&mut out, at);
    }
    out
}

/// The 64-bit id a `host_id` string travels as (FNV-1a; never zero).
pub fn host_hash(host_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(count: u16) -> Header {
        Header {
            kind: Kind::Typed,
            count,
            source: host_hash("a"),
            run: 0x0102_0304_0506_0708,
            seq: 7,
            shape: [0xdead_beef, 24 | 8 << 32],
        }
    }

    #[test]
    fn round_trip() {
        let msgs: [&[u8]; 3] = [b"payload", b"", b"third"];
        let v = encode(&header(99), &msgs);
        assert_eq!(v.len(), HEADER_LEN + 3 * FRAME_LEN + 12);
        assert_eq!(&v[6..8], &3u16.to_le_bytes());
        assert_eq!(&v[16..24], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&v[24..32], &7u64.to_le_bytes());
        let (h, m) = Header::read(&v).unwrap();
        assert_eq!(h, header(3));
        assert_eq!(m.collect::<Vec<_>>(), msgs);
        // Built a message at a time, as an export does.
        let mut b = Vec::new();
        header(0).write(&mut b);
        for msg in msgs {
            let at = begin_message(&mut b);
            b.extend_from_slice(msg);
            end_message(&mut b, at);
        }
        set_count(&mut b, 3);
        assert_eq!(b, v);
    }

    #[test]
    fn bad_envelopes_are_errors_not_panics() {
        let v = encode(&header(1), &[b"abc", b"de"]);
        for n in 0..HEADER_LEN {
            assert_eq!(Header::read(&v[..n]).err(), Some(EnvelopeError::Short(n)));
        }
        let bad = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = v.clone();
            f(&mut m);
            Header::read(&m).err()
        };
        assert!(matches!(
            bad(&|m| m[0] = b'X'),
            Some(EnvelopeError::Magic(_))
        ));
        // Versions 1 and 2 (one message, unframed) are refused.
        assert_eq!(bad(&|m| m[4] = 1), Some(EnvelopeError::Version(1)));
        assert_eq!(bad(&|m| m[4] = 2), Some(EnvelopeError::Version(2)));
        assert_eq!(bad(&|m| m[5] = 9), Some(EnvelopeError::Kind(9)));
        assert_eq!(bad(&|m| set_count(m, 0)), Some(EnvelopeError::Empty));
        // A count larger than the frames, up to u16::MAX: the walk stops
        // at the first frame missing.
        for count in [3, u16::MAX] {
            assert_eq!(
                bad(&|m| set_count(m, count)),
                Some(EnvelopeError::Frames {
                    count,
                    index: 2,
                    claims: None,
                    left: 0
                })
            );
        }
        assert_eq!(
            bad(&|m| set_count(m, 1)),
            Some(EnvelopeError::Trailing { count: 1, bytes: 6 })
        );
        // A length word claiming more than is left, up to u32::MAX, and
        // one cut short, at every length the envelope can be cut to.
        // Payload: [3] abc [2] de, 13 bytes.
        let claim =
            |c: u32| bad(&|m| m[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&c.to_le_bytes()));
        let frames = |index, claims, left| {
            Some(EnvelopeError::Frames {
                count: 2,
                index,
                claims,
                left,
            })
        };
        assert_eq!(claim(u32::MAX), frames(0, Some(u32::MAX), 13));
        assert_eq!(claim(10), frames(0, Some(10), 13));
        assert_eq!(claim(9), frames(1, None, 0));
        assert_eq!(claim(6), frames(1, None, 3));
        for n in HEADER_LEN..v.len() {
            assert!(
                matches!(
                    Header::read(&v[..n]).err(),
                    Some(EnvelopeError::Frames { .. })
                ),
                "cut to {n} bytes"
            );
        }
        // Every error says what it is.
        for e in [
            bad(&|m| set_count(m, 0)),
            bad(&|m| set_count(m, 3)),
            bad(&|m| set_count(m, 1)),
        ] {
            assert!(e.unwrap().to_string().starts_with("envelope"));
        }
    }
}
