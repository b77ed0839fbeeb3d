//! The one error type of this crate.

use std::fmt;
use std::io;

use crate::memory::{Kind, SHM_DIR};

/// Everything that can go wrong when creating, opening or using a named
/// segment. Every variant that concerns a segment carries its (normalised)
/// name, so the message alone says which segment is at fault.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The name cannot name a POSIX shared-memory segment.
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No segment has this name.
    NotFound {
        /// The segment's name.
        name: String,
    },
    /// A segment of this name already exists (exclusive creation).
    AlreadyExists {
        /// The segment's name.
        name: String,
    },
    /// The segment exists, but its permissions do not let us open it.
    PermissionDenied {
        /// The segment's name.
        name: String,
    },
    /// The segment was not made by shmipc: its magic number is wrong (for
    /// example a segment from Python's `multiprocessing.shared_memory`, or
    /// a file of zeros).
    NotShmipc {
        /// The segment's name.
        name: String,
    },
    /// The segment holds a different kind of object than the one asked for.
    WrongKind {
        /// The segment's name.
        name: String,
        /// The kind the caller asked for.
        expected: Kind,
        /// The raw kind found in the header.
        found: u32,
    },
    /// The segment was made by an incompatible version of the layout.
    VersionMismatch {
        /// The segment's name.
        name: String,
        /// The header version this build understands.
        expected: u32,
        /// The version found in the header.
        found: u32,
    },
    /// The segment is shorter than its header says it must be (it was
    /// truncated). Checked before the bytes are touched.
    TooSmall {
        /// The segment's name.
        name: String,
        /// The bytes required.
        required: u64,
        /// The bytes the segment has.
        actual: u64,
    },
    /// The segment's creator has not finished initialising it within
    /// [`Options::init_timeout`](crate::Options::init_timeout).
    InitTimeout {
        /// The segment's name.
        name: String,
        /// The process id the header names as the creator.
        creator_pid: u32,
    },
    /// The segment is still marked as being initialised, and the process
    /// that was initialising it no longer exists.
    CreatorDied {
        /// The segment's name.
        name: String,
        /// The process id the header names as the creator.
        creator_pid: u32,
    },
    /// The header's fields contradict each other or the kind's layout, or
    /// the object's own description (a queue's control block) does.
    Corrupted {
        /// The segment's name.
        name: String,
        /// Which field is wrong.
        what: &'static str,
    },
    /// An access outside the segment's payload.
    OutOfBounds {
        /// The segment's name.
        name: String,
        /// The first byte of the access.
        offset: u64,
        /// The length of the access.
        len: u64,
        /// The payload size.
        size: u64,
    },
    /// A write to a segment that was opened read-only, or a typed object
    /// requested read-only (typed objects always need write access).
    ReadOnly {
        /// The segment's name.
        name: String,
    },
    /// The segment holds elements of another type than the one asked for
    /// (opening a `Queue<u64>` as a `Queue<u32>`, or a `Value<u64>` as a
    /// `Value<u32>`, say). Only the size and alignment are recorded, so
    /// types that agree in both are not told apart.
    ElementMismatch {
        /// The segment's name.
        name: String,
        /// The element type the caller asked for.
        expected: &'static str,
        /// Its size in bytes.
        expected_size: u64,
        /// Its alignment.
        expected_align: u64,
        /// The element size recorded in the segment.
        found_size: u64,
        /// The element alignment recorded in the segment.
        found_align: u64,
    },
    /// A typed segment was made for another message type than the one
    /// asked for (see [`Fingerprint`](crate::typed::Fingerprint) for what
    /// it can and cannot tell apart), or has no recorded type at all.
    TypeMismatch {
        /// The segment's name.
        name: String,
        /// The message type the caller asked for.
        expected: &'static str,
        /// The recorded type's name, when this process knows it.
        found: Option<&'static str>,
        /// The recorded type's name hash: zero for a segment made without
        /// a type (a plain `ByteQueue`, say).
        found_hash: u64,
        /// The recorded type's size.
        found_size: u64,
        /// The recorded type's alignment.
        found_align: u64,
    },
    /// A role (an SPSC queue's producer or consumer, a pipe's end) is
    /// already held by a live process: each role has one holder at a time.
    RoleTaken {
        /// The segment's name.
        name: String,
        /// The role, such as `"producer"` or `"pipe end B"`.
        role: &'static str,
        /// The pid the holder recorded, as its own pid namespace numbers
        /// it (0 if unknown); for people, not for decisions.
        pid: u32,
        /// Who holds it and whether that holder is alive, dead or cannot
        /// be judged.
        holder: String,
    },
    /// A sole handle ([`TypedQueue::sole_sender`](crate::TypedQueue::sole_sender),
    /// [`TypedQueue::sole_receiver`](crate::TypedQueue::sole_receiver))
    /// could not take its side of the queue: a sole handle holds the
    /// side's lock for its whole life, so there is one at a time per side
    /// and none while another handle is inside a send (receive).
    SideHeld {
        /// The segment's name, `"(anonymous)"` for an anonymous one.
        name: String,
        /// `"senders'"` or `"receivers'"`.
        side: &'static str,
        /// Why: [`SoleError::Held`](shmipc_core::SoleError::Held) (by
        /// another handle: a `try_` call, or the timeout passed) or
        /// [`SoleError::Deadlock`](shmipc_core::SoleError::Deadlock) (by
        /// this thread).
        reason: shmipc_core::SoleError,
    },
    /// The requested object cannot be made: a size, capacity or count
    /// breaks its rule (the [`LayoutError`](shmipc_core::LayoutError) says
    /// which parameter, its value and the rule). Nothing was created.
    Layout {
        /// The segment's name; `"(anonymous)"` for an anonymous mapping,
        /// `"(pool)"` for a [`Pool`](crate::Pool).
        name: String,
        /// What is wrong.
        source: shmipc_core::LayoutError,
    },
    /// `/dev/shm` has too little free space for a new segment. Checked,
    /// and the memory reserved, when the segment is created, so that a
    /// segment that exists is backed: touching it never raises `SIGBUS`.
    /// Nothing was created.
    NoSpace {
        /// The segment's name.
        name: String,
        /// The bytes the segment needs.
        needed: u64,
        /// The bytes free for it when creation failed.
        free: u64,
    },
    /// The segment belongs to another user, who may have made it to be
    /// joined by this process (a squatter): refused unless
    /// [`Options::trust_owner`](crate::Options::trust_owner) or
    /// [`Options::trust_any_owner`](crate::Options::trust_any_owner) says
    /// to trust that owner.
    UntrustedOwner {
        /// The segment's name.
        name: String,
        /// The uid that owns the segment's file.
        owner: u32,
        /// That user's name, if the system knows it.
        owner_name: Option<String>,
        /// This process's effective uid.
        euid: u32,
    },
    /// Any other operating-system error.
    Io {
        /// The operation that failed, such as `"ftruncate"`.
        op: &'static str,
        /// The segment's name.
        name: String,
        /// The operating system's error.
        source: io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => {
                write!(f, "{name:?} is not a valid shared memory name: {reason}")
            }
            Error::NotFound { name } => {
                write!(f, "shared memory segment {name:?} does not exist")
            }
            Error::AlreadyExists { name } => {
                write!(f, "shared memory segment {name:?} already exists")
            }
            Error::PermissionDenied { name } => write!(
                f,
                "permission denied: the mode of shared memory segment {name:?} does not let this process open it"
            ),
            Error::NotShmipc { name } => write!(
                f,
                "shared memory segment {name:?} was not created by shmipc (its header has no shmipc magic number)"
            ),
            Error::WrongKind {
                name,
                expected,
                found,
            } => write!(
                f,
                "shared memory segment {name:?} holds {}, not {expected}",
                Kind::new(*found)
            ),
            Error::VersionMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "shared memory segment {name:?} has header version {found}, but this build of shmipc understands only version {expected}"
            ),
            Error::TooSmall {
                name,
                required,
                actual,
            } => write!(
                f,
                "shared memory segment {name:?} is {actual} bytes long but needs {required} (was it truncated?)"
            ),
            Error::InitTimeout { name, creator_pid } => write!(
                f,
                "timed out waiting for process {creator_pid} to finish initialising shared memory segment {name:?}"
            ),
            Error::CreatorDied { name, creator_pid } => write!(
                f,
                "process {creator_pid} died while initialising shared memory segment {name:?}; unlink it and create it again"
            ),
            Error::Corrupted { name, what } => write!(
                f,
                "shared memory segment {name:?} is corrupted: {what}"
            ),
            Error::OutOfBounds {
                name,
                offset,
                len,
                size,
            } => write!(
                f,
                "access of {len} bytes at offset {offset} is outside the {size} bytes of shared memory segment {name:?}"
            ),
            Error::ReadOnly { name } => write!(
                f,
                "shared memory segment {name:?} is opened read-only and cannot be written"
            ),
            Error::ElementMismatch {
                name,
                expected,
                expected_size,
                expected_align,
                found_size,
                found_align,
            } => write!(
                f,
                "shared memory segment {name:?} holds elements of {found_size} bytes aligned to {found_align}, not {expected} ({expected_size} bytes aligned to {expected_align})"
            ),
            Error::TypeMismatch {
                name,
                expected,
                found_hash: 0,
                ..
            } => write!(
                f,
                "shared memory segment {name:?} records no message type (it was not made as a typed object), so it cannot be opened for messages of type {expected}"
            ),
            Error::TypeMismatch {
                name,
                expected,
                found,
                found_hash,
                found_size,
                found_align,
            } => {
                write!(f, "shared memory segment {name:?} was made for messages of ")?;
                match found {
                    Some(t) => write!(f, "type {t}")?,
                    None => write!(f, "another type (name hash {found_hash:#018x})")?,
                }
                write!(
                    f,
                    " ({found_size} bytes aligned to {found_align}), not {expected}"
                )
            }
            Error::RoleTaken {
                name, role, holder, ..
            } => write!(
                f,
                "the {role} of shared memory segment {name:?} is already held by {holder}"
            ),
            Error::SideHeld { name, side, reason } => match reason {
                shmipc_core::SoleError::Deadlock => write!(
                    f,
                    "this thread already holds the {side} side of shared memory segment \
                     {name:?}: a sole handle takes its side alone, one at a time, so a thread \
                     cannot take it twice"
                ),
                _ => write!(
                    f,
                    "the {side} side of shared memory segment {name:?} is held by another \
                     handle (a sole handle, which takes its side alone and keeps it until \
                     dropped, or a call in progress)"
                ),
            },
            Error::Layout { name, source } => match name.as_str() {
                "(anonymous)" => write!(f, "cannot make the anonymous shared object: {source}"),
                "(pool)" => write!(f, "cannot start the pool: {source}"),
                _ => write!(f, "cannot create shared memory segment {name:?}: {source}"),
            },
            Error::NoSpace { name, needed, free } => write!(
                f,
                "cannot create shared memory segment {name:?}: it needs {needed} bytes, \
                 and {SHM_DIR} has {free} free"
            ),
            Error::UntrustedOwner {
                name,
                owner,
                owner_name,
                euid,
            } => {
                let who = match owner_name {
                    Some(n) => format!("uid {owner} ({n})"),
                    None => format!("uid {owner}"),
                };
                write!(
                    f,
                    "shared memory segment {name:?} is owned by {who}, not by this process's \
                     user (uid {euid}), so another user may have made it; to join it anyway, \
                     open it with Options::trust_owner({owner}) or Options::trust_any_owner()"
                )
            }
            Error::Io { op, name, source } => write!(
                f,
                "{op} failed for shared memory segment {name:?}: {source}"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Layout { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// An error from an operation that takes the segment's name (open,
    /// unlink, link): `errno` values that concern the name get their own
    /// variants.
    pub(crate) fn from_name_op(op: &'static str, name: &str, source: io::Error) -> Error {
        let name = name.to_owned();
        match source.raw_os_error() {
            Some(libc::ENAMETOOLONG) => Error::InvalidName {
                name,
                reason: "the system says it is too long",
            },
            Some(libc::EINVAL) => Error::InvalidName {
                name,
                reason: "the system rejects it",
            },
            _ => Error::from_io(op, &name, source),
        }
    }

    /// An error from any other operation on the segment.
    pub(crate) fn from_io(op: &'static str, name: &str, source: io::Error) -> Error {
        let name = name.to_owned();
        match source.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound { name },
            Some(libc::EEXIST) => Error::AlreadyExists { name },
            Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied { name },
            _ => Error::Io { op, name, source },
        }
    }

    /// An object that cannot be made (see [`Error::Layout`]).
    pub(crate) fn layout(name: &str, source: shmipc_core::LayoutError) -> Error {
        Error::Layout {
            name: name.to_owned(),
            source,
        }
    }

    /// An error from the core's checks of a queue in a segment.
    pub(crate) fn from_queue(name: &str, e: shmipc_core::QueueError) -> Error {
        use shmipc_core::QueueError;
        match e {
            QueueError::Layout(l) => Error::layout(name, l),
            QueueError::NotAQueue => {
                Error::corrupted(name, "the object holds no initialised queue")
            }
            QueueError::Incompatible(what) | QueueError::Corrupted(what) => {
                Error::corrupted(name, what)
            }
        }
    }

    /// A sole handle that could not be made (see [`Error::SideHeld`]);
    /// `sender` says which side.
    pub(crate) fn from_sole(name: Option<&str>, sender: bool, e: shmipc_core::SoleError) -> Error {
        let name = name.unwrap_or("(anonymous)");
        match e {
            shmipc_core::SoleError::Corrupted => Error::corrupted(
                name,
                "a side of the byte queue is inconsistent, or its lock is not recoverable",
            ),
            reason => Error::SideHeld {
                name: name.to_owned(),
                side: if sender { "senders'" } else { "receivers'" },
                reason,
            },
        }
    }

    pub(crate) fn corrupted(name: &str, what: &'static str) -> Error {
        Error::Corrupted {
            name: name.to_owned(),
            what,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_threads_and_name_their_segment() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Error>();
        let e = Error::from_io(
            "ftruncate",
            "/jobs",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(matches!(
            e,
            Error::Io {
                op: "ftruncate",
                ..
            }
        ));
        assert!(e
            .to_string()
            .starts_with("ftruncate failed for shared memory segment \"/jobs\""));
        assert!(std::error::Error::source(&e).is_some());
        let os = io::Error::from_raw_os_error;
        let e = Error::from_io("shm_open", "/jobs", os(libc::EPERM));
        assert!(matches!(e, Error::PermissionDenied { .. }));
        let name_op = |errno| Error::from_name_op("shm_open", "/jobs", os(errno));
        assert!(matches!(name_op(libc::EINVAL), Error::InvalidName { .. }));
        assert!(matches!(
            name_op(libc::ENAMETOOLONG),
            Error::InvalidName { .. }
        ));
        assert!(matches!(name_op(libc::EEXIST), Error::AlreadyExists { .. }));
    }
}
