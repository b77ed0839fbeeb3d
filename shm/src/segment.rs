//! Raw named byte segments, like Python's
//! `multiprocessing.shared_memory.SharedMemory`.

use shmipc_core::QueueError;

use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::Named;

/// A named segment of raw bytes that several processes map (or anonymous
/// bytes that forked children share, [`Named::anon`]).
///
/// The payload starts 128 bytes into the segment, after the shmipc header
/// (so at a 128-byte aligned address), and is zeroed on creation. It is
/// not synchronised: pair it with a [`Lock`](crate::Lock) or an
/// [`Event`](crate::Event), and treat what you read as untrusted — another
/// process may write it at any time.
///
/// ```
/// use shmipc::{Named, Options, Segment};
///
/// let name = format!("/shmipc-doc-segment-{}", std::process::id());
/// let seg = Segment::create(&name, 64)?;
/// seg.write_at(8, b"hello")?;
///
/// let reader = Segment::open_with(&name, &Options::new().read_only(true))?;
/// let mut buf = [0u8; 5];
/// reader.read_at(8, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// assert!(reader.write_at(0, b"x").is_err());
///
/// Segment::unlink(&name)?;
/// # Ok::<(), shmipc::Error>(())
/// ```
#[derive(Debug)]
pub struct Segment {
    memory: Mapping,
}

impl Named for Segment {
    const KIND: Kind = Kind::BYTES;
    const READ_ONLY: bool = true;
    /// The payload size in bytes (not zero).
    type Config<'a> = usize;
    type Anon = Self;

    fn layout(size: &usize) -> std::result::Result<ObjectLayout, shmipc_core::LayoutError> {
        Ok(ObjectLayout {
            kind: Kind::BYTES,
            size: *size as u64,
            align: 1,
            params: [0; 4],
        })
    }

    unsafe fn init(_: *mut u8, _: usize, _: usize) -> std::result::Result<(), QueueError> {
        // The payload is already zero (a fresh file): nothing to write.
        Ok(())
    }

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        // Any size and alignment the common checks allow; no parameters.
        if header.params != [0; 4] {
            return Err(Error::corrupted(
                name,
                "raw byte segments have no parameters",
            ));
        }
        Ok(())
    }

    fn attach(memory: Mapping, _created: bool) -> Result<Self> {
        Ok(Segment { memory })
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        Ok(Segment { memory })
    }
}

impl Segment {
    /// The normalised name, with its leading slash, or `None` for
    /// anonymous bytes.
    pub fn name(&self) -> Option<&str> {
        self.memory.name()
    }

    /// The payload size in bytes.
    pub fn len(&self) -> usize {
        self.memory.object_len()
    }

    /// Whether the payload is empty (never, for segments shmipc creates).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first payload byte. Valid for [`len`](Segment::len) bytes while
    /// `self` lives; writing through it on a read-only segment faults.
    /// Other processes may read and write these bytes at any moment, so
    /// never make a `&`/`&mut` reference to them — copy in and out.
    pub fn as_ptr(&self) -> *mut u8 {
        self.memory.object_ptr()
    }

    /// Copies `buf.len()` payload bytes starting at `offset` into `buf`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_bounds(offset, buf.len())?;
        // SAFETY: the source range is inside the mapped payload (checked
        // above) and `buf` is valid for writes of its length; `copy` is a
        // memmove, so even a `buf` built from `as_ptr` may overlap. The
        // bytes are plain `u8`s: whatever a peer writes concurrently, we
        // copy some valid bytes.
        unsafe { std::ptr::copy(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the payload starting at `offset`.
    /// [`Error::ReadOnly`] on a segment opened read-only.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::ReadOnly {
                name: self.memory.label().to_owned(),
            });
        }
        self.check_bounds(offset, data.len())?;
        // SAFETY: the destination range is inside the payload (checked
        // above) of a writable mapping (not read-only, checked above);
        // `copy` is a memmove, so overlap with `data` is fine.
        unsafe { std::ptr::copy(data.as_ptr(), self.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Whether the segment was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.memory.is_read_only()
    }

    /// The process id the header names as the creator.
    pub fn creator_pid(&self) -> u32 {
        self.memory.header().creator_pid
    }

    fn check_bounds(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::OutOfBounds {
                name: self.memory.label().to_owned(),
                offset: offset as u64,
                len: len as u64,
                size: self.len() as u64,
            }),
        }
    }
}
