//! The codec: postcard into a reused per-thread buffer, out of a copy.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shmipc_core::{ReadGrant, RecvError, SoleReadGrant};

use super::{label, MessageError};

thread_local! {
    /// Where this thread encodes; it keeps the length of the largest
    /// message so far, so a warm sender allocates nothing.
    static ENCODE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where this thread encodes a dict key (beside its value in ENCODE).
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where this thread copies a message out of shared memory to decode it.
    static DECODE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` over this thread's buffer `cell`, or over a fresh one if a
/// `Serialize` or `Deserialize` impl re-entered us while it is in use.
fn with_buffer<R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    cell.with(|c| match c.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut Vec::new()),
    })
}

/// Encodes `value` and hands its bytes to `send`; `name` is the segment's,
/// for the error.
pub(crate) fn encode<T: Serialize + ?Sized, R>(
    value: &T,
    name: Option<&str>,
    send: impl FnOnce(&[u8]) -> R,
) -> Result<R, MessageError> {
    encode_in(&ENCODE, value, name, send)
}

/// [`encode`] for a dict key, in a buffer of its own so that the value can
/// be encoded while the key's bytes are held.
pub(crate) fn encode_key<T: Serialize + ?Sized, R>(
    key: &T,
    name: Option<&str>,
    send: impl FnOnce(&[u8]) -> R,
) -> Result<R, MessageError> {
    encode_in(&KEY, key, name, send)
}

fn encode_in<T: Serialize + ?Sized, R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    value: &T,
    name: Option<&str>,
    send: impl FnOnce(&[u8]) -> R,
) -> Result<R, MessageError> {
    with_buffer(cell, |buf| {
        // Into a slice of the buffer's whole length (a slice writer checks
        // one bound per write, an extending one grows per byte); a value
        // too large for it is encoded again into one twice as long, so the
        // buffer settles at the largest message so far, and a warm sender
        // encodes once.
        if buf.is_empty() {
            buf.resize(FIRST_BUFFER, 0);
        }
        loop {
            match postcard::to_slice(value, buf).map(|bytes| bytes.len()) {
                Ok(n) => return Ok(send(&buf[..n])),
                Err(postcard::Error::SerializeBufferFull)
                    if buf.len() <= isize::MAX as usize / 2 =>
                {
                    buf.resize(buf.len() * 2, 0);
                }
                Err(e) => {
                    return Err(MessageError::Encode {
                        segment: label(name),
                        type_name: std::any::type_name::<T>(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    })
}

/// The length an encode buffer starts at: most messages fit at once.
const FIRST_BUFFER: usize = 256;

/// Decodes `bytes` (a private copy) as exactly one `T`.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    name: Option<&str>,
) -> Result<T, MessageError> {
    let reason = match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => return Ok(value),
        Ok((_, rest)) => format!("{} bytes are left over after the value", rest.len()),
        Err(e) => e.to_string(),
    };
    Err(MessageError::Decode {
        segment: label(name),
        type_name: std::any::type_name::<T>(),
        len: bytes.len(),
        reason,
    })
}

/// Copies the message `grant` holds into this thread's buffer, gives its
/// space back, and decodes the copy.
pub(crate) fn take<T: DeserializeOwned, K>(
    grant: Result<ReadGrant<'_, '_, K>, RecvError>,
    name: Option<&str>,
) -> Result<T, MessageError> {
    let grant = grant.map_err(|e| recv_error(name, e))?;
    decode_copy(grant.len(), name, |buf| {
        let n = grant.copy_to(buf);
        // The copy may be torn if the record was taken from us meanwhile.
        grant.release_checked().map_err(|e| recv_error(name, e))?;
        Ok(n)
    })
}

/// [`take`] for a sole receiver's grant: copies the message into this
/// thread's buffer, takes it (dropping the grant), and decodes the copy.
/// No check after the copy: only the sole receiver moves past the record,
/// so no one takes it from under us (and a hostile peer that rewrites it
/// meanwhile gets its bytes decoded, and checked, as any others).
pub(crate) fn take_sole<T: DeserializeOwned, K>(
    grant: Result<SoleReadGrant<'_, '_, '_, K>, RecvError>,
    name: Option<&str>,
) -> Result<T, MessageError> {
    let grant = grant.map_err(|e| recv_error(name, e))?;
    decode_copy(grant.len(), name, |buf| {
        let n = grant.copy_to(buf);
        grant.release();
        Ok(n)
    })
}

fn recv_error(name: Option<&str>, error: RecvError) -> MessageError {
    MessageError::Recv {
        segment: label(name),
        error,
    }
}

/// Runs `copy_out` over this thread's decode buffer, at least `len` long
/// (it copies a message in, gives its space back, and returns its
/// length), and decodes the copy.
fn decode_copy<T: DeserializeOwned>(
    len: usize,
    name: Option<&str>,
    copy_out: impl FnOnce(&mut [u8]) -> Result<usize, MessageError>,
) -> Result<T, MessageError> {
    with_buffer(&DECODE, |buf| {
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let n = copy_out(buf)?;
        decode(&buf[..n], name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_larger_than_the_buffer_grow_it_and_encode_as_postcard_does() {
        for len in [0usize, 10, 255, 256, 300, 10_000, 100] {
            let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let expected = postcard::to_allocvec(&value).unwrap();
            let got = encode(&value, None, |m| m.to_vec()).unwrap();
            assert_eq!(got, expected, "len {len}");
            assert_eq!(decode::<Vec<u8>>(&got, None).unwrap(), value);
        }
        // A value that cannot be encoded is the codec's error, not a loop.
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        assert!(matches!(
            encode(&Bad, Some("/q"), |_| ()),
            Err(MessageError::Encode { .. })
        ));
    }
}
