//! The envelope every bridged message travels in: a fixed 48-byte header
//! in front of the payload, little-endian whatever the hosts are.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `SHMB` |
//! | 4 | format version ([`VERSION`]) |
//! | 5 | kind ([`Kind`]) |
//! | 6..8 | zero (reserved) |
//! | 8..16 | source host id (a hash of the exporting bridge's `host_id`) |
//! | 16..24 | run id: chosen when the export starts, larger than the last run's |
//! | 24..32 | sequence number, per source and key, from 0, going on across runs |
//! | 32..48 | shape: for a typed queue its type's fingerprint (the name hash, and `size \| align << 32`); for bytes and pipes the source's largest message and 0 |
//! | 48.. | the message, as the local queue held it (a typed message stays postcard-encoded) |
//!
//! Version 1 had no run id (a 40-byte header, the sequence number at 16);
//! this build refuses it, as it refuses any version but its own.
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
pub const VERSION: u8 = 2;
/// The header's length; the payload starts here.
pub const HEADER_LEN: usize = 48;

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
    /// The exporting bridge's host id hash ([`host_hash`]).
    pub source: u64,
    /// The exporting run's id (larger for a later run of the same source).
    pub run: u64,
    /// The message's sequence number from that source on that key.
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
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.source.to_le_bytes());
        out.extend_from_slice(&self.run.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.shape[0].to_le_bytes());
        out.extend_from_slice(&self.shape[1].to_le_bytes());
    }

    /// Splits `bytes` into a header and its payload.
    pub fn read(bytes: &[u8]) -> Result<(Header, &[u8]), EnvelopeError> {
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
        let header = Header {
            kind,
            source: word(8),
            run: word(16),
            seq: word(24),
            shape: [word(32), word(40)],
        };
        Ok((header, &bytes[HEADER_LEN..]))
    }
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

    #[test]
    fn round_trip() {
        let h = Header {
            kind: Kind::Typed,
            source: host_hash("a"),
            run: 0x0102_0304_0506_0708,
            seq: 7,
            shape: [0xdead_beef, 24 | 8 << 32],
        };
        let mut v = Vec::new();
        h.write(&mut v);
        assert_eq!(v.len(), HEADER_LEN);
        assert_eq!(&v[16..24], &h.run.to_le_bytes());
        assert_eq!(&v[24..32], &7u64.to_le_bytes());
        v.extend_from_slice(b"payload");
        assert_eq!(Header::read(&v), Ok((h, &b"payload"[..])));
    }

    #[test]
    fn bad_envelopes_are_errors_not_panics() {
        let mut v = Vec::new();
        Header {
            kind: Kind::Bytes,
            source: 1,
            run: 1,
            seq: 0,
            shape: [0, 0],
        }
        .write(&mut v);
        for n in 0..HEADER_LEN {
            assert_eq!(Header::read(&v[..n]), Err(EnvelopeError::Short(n)));
        }
        let mut m = v.clone();
        m[0] = b'X';
        assert!(matches!(Header::read(&m), Err(EnvelopeError::Magic(_))));
        let mut m = v.clone();
        m[4] = 1;
        assert_eq!(Header::read(&m), Err(EnvelopeError::Version(1)));
        let mut m = v.clone();
        m[5] = 9;
        assert_eq!(Header::read(&m), Err(EnvelopeError::Kind(9)));
    }
}
