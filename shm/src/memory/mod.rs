//! The memory every object lives in (machinery): a [`Mapping`] of a named
//! segment or of anonymous memory, with the validated [`header`] and the
//! peer table, created and opened as described below. A `Mapping` is the
//! one owner of an object's bytes: cheap to clone, and the bytes stay
//! mapped until the last clone drops.
//!
//! This is also the extension point for new kinds of object: pick a
//! [`Kind`], compute the object's size, alignment and parameters into an
//! [`ObjectLayout`], and implement [`Named`](crate::Named), whose provided
//! constructors build on [`Mapping::create`], [`Mapping::open`] and
//! [`Mapping::anon`].
//!
//! # Creation is published by `link`
//!
//! A creator never lets anyone see a half-built segment:
//!
//! 1. it creates the file *unnamed*, with
//!    `open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, mode)`;
//! 2. `fchmod`s it to exactly the requested mode (so the umask cannot
//!    change it), `ftruncate`s it to its full size, reserves that size
//!    (`fstatvfs`, then `posix_fallocate`: a size `/dev/shm` cannot hold is
//!    [`Error::NoSpace`] now, not a `SIGBUS` when a page is first touched)
//!    and maps it;
//! 3. writes the header with state [`INITIALIZING`] and its own pid, then
//!    initialises the object;
//! 4. stores [`READY`] (Release) and wakes any futex waiters on the state;
//! 5. and only then gives the file its name, with
//!    `linkat(AT_FDCWD, "/proc/self/fd/<fd>", AT_FDCWD, "/dev/shm/<name>",
//!    AT_SYMLINK_FOLLOW)`. If the name is taken, `linkat` fails with
//!    `EEXIST` and we report [`Error::AlreadyExists`]; the unnamed file
//!    vanishes when its descriptor closes.
//!
//! So a creator killed at any instruction leaves nothing behind, and an
//! opener always finds a `READY` header — unless some other program wrote
//! the bytes, which is why openers still check everything.
//!
//! **Fallback.** Where `O_TMPFILE` is unsupported (`EOPNOTSUPP`, `EISDIR`,
//! `EINVAL`) or `/proc` is not mounted, the creator `shm_open`s a unique
//! temporary name (`/.shmipc-tmp-<pid>-<counter>-<nanos>`, `O_CREAT |
//! O_EXCL`), does the same steps, publishes with `link()` inside `/dev/shm`
//! and `shm_unlink`s the temporary name, also on every error path. A
//! creator *killed* during this fallback leaves its temporary name behind
//! (never the real name); such `.shmipc-tmp-*` files can be removed by hand.
//!
//! # Opening
//!
//! `shm_open`, then `fstat`: a file another user owns is
//! [`Error::UntrustedOwner`] unless [`Options::trusted_owners`] (or
//! [`Options::trust_any_owner`]) says to trust that owner — anyone can
//! create a name in `/dev/shm` first. A file shorter than the header is
//! [`Error::TooSmall`] (or [`Error::NotShmipc`] if its first 8 bytes are
//! not our magic), checked before anything is mapped, so no access can run
//! past the end of the file. Then the header alone is mapped and checked:
//! magic, version, and the state — if it is not yet `READY` the opener
//! waits on the state futex (re-checking every few milliseconds) up to
//! [`Options::init_timeout`], reporting [`Error::CreatorDied`] if no one
//! holds the file's [`CREATOR_LOCK`] byte any more (the creator died: the
//! kernel dropped its lock) and [`Error::InitTimeout`] otherwise.
//! Finally every field is validated ([`Mapping::open`] lists the checks)
//! before the whole segment is mapped.
//!
//! A peer that shrinks (`ftruncate`s) a segment *after* others mapped it
//! makes their next access fault with `SIGBUS`; that is the nature of
//! shared files, and no check at open time can prevent it.

// The names the documentation above links to.
#[cfg(doc)]
use crate::Error;
#[cfg(doc)]
use header::{INITIALIZING, READY};

pub mod header;
mod mapping;
mod name;
mod options;
pub(crate) mod presence;

pub use header::{HeaderSnapshot, Kind};
pub(crate) use mapping::{fstat, owned, SHM_DIR};
pub use mapping::{unlink, validate_header, Mapping, ObjectLayout};
pub(crate) use name::Name;
pub use name::MAX_LEN as MAX_NAME_LEN;
pub use options::Options;
pub use presence::{CREATOR_LOCK, DEFAULT_PEER_SLOTS, SLOT_LOCK_BASE, STAMP_LOCK_BASE};
