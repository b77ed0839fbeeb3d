//! The message type a typed segment was made for, recorded in its header
//! so that opening it with another type is an error instead of a stream of
//! decode failures (or, worse, of values that happen to decode).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// A message type's fingerprint: a hash of its name
/// ([`std::any::type_name`]) with its size and alignment.
///
/// The creator of a typed segment writes it into the header (words 104
/// and 112, see [`memory::header`](crate::memory::header)); an opener that
/// asks for a type ([`Options::fingerprint`](crate::Options::fingerprint),
/// which every typed constructor sets) compares it and fails with
/// [`Error::TypeMismatch`](crate::Error::TypeMismatch), naming both types
/// where this process knows the other one's name.
///
/// What it cannot see: a struct edited between two builds but kept under
/// the same path with the same size (a field renamed, two fields of one
/// type swapped, an `enum` variant added), or the same type name meaning
/// different types in two unrelated programs. Decoding still checks every
/// message, so most such edits surface as decode errors naming the type;
/// a swap of two same-typed fields does not. `type_name` is not promised
/// to be stable across compiler versions, so build every program that
/// shares a typed segment with the same toolchain.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    name: &'static str,
    hash: u64,
    size: u32,
    align: u32,
}

/// Type names this process has fingerprinted, by hash: what lets an error
/// name the type another process recorded, when this one knows it too.
static NAMES: Mutex<Option<HashMap<u64, &'static str>>> = Mutex::new(None);

impl Fingerprint {
    /// The fingerprint of `T`.
    pub fn of<T>() -> Fingerprint {
        let name = std::any::type_name::<T>();
        let hash = fnv1a(name.as_bytes());
        if let Ok(mut names) = NAMES.lock() {
            names.get_or_insert_with(HashMap::new).insert(hash, name);
        }
        Fingerprint {
            name,
            hash,
            // Sizes above 4 GiB saturate: they still differ from all others.
            size: u32::try_from(size_of::<T>()).unwrap_or(u32::MAX),
            align: align_of::<T>() as u32,
        }
    }

    /// The type's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The hash of the type's name (FNV-1a, 64 bits); never zero, which
    /// marks a segment with no recorded type.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The type's size in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The type's alignment.
    pub fn align(&self) -> u32 {
        self.align
    }

    /// The two header words: the name hash, and `size | align << 32`.
    pub(crate) fn words(&self) -> [u64; 2] {
        [
            self.hash,
            u64::from(self.size) | u64::from(self.align) << 32,
        ]
    }

    /// The name of the type whose hash is `hash`, if this process has
    /// fingerprinted it.
    pub(crate) fn known_name(hash: u64) -> Option<&'static str> {
        NAMES.lock().ok()?.as_ref()?.get(&hash).copied()
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Fingerprint({}: {:#018x}, {} bytes aligned to {})",
            self.name, self.hash, self.size, self.align
        )
    }
}

/// FNV-1a over `bytes`, with 0 (an untyped segment's word) moved to 1.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}
