//! How segments are created and opened.

use std::time::Duration;

use crate::typed::Fingerprint;

/// How to create or open a segment.
///
/// The fields are public for reading; set them with the builder methods of
/// the same name:
///
/// ```
/// use shmipc::Options;
/// use std::time::Duration;
///
/// let opts = Options::new().mode(0o644).init_timeout(Duration::from_millis(500));
/// assert_eq!(opts.mode, 0o644);
/// assert!(!opts.read_only);
/// // Join segments that root made, too (not only our own user's).
/// let opts = opts.trust_owner(0);
/// assert_eq!(opts.trusted_owners, [0]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Permission bits of a new segment (only the low nine bits, `0o777`,
    /// are used). Applied exactly: the process umask does not change them.
    /// Default `0o600`: only the creating user may open it.
    pub mode: u32,
    /// How long an opener waits for a segment whose creator is still
    /// initialising it. Default 2 seconds.
    pub init_timeout: Duration,
    /// Open a raw byte [`Segment`](crate::Segment) read-only (a read-only
    /// `mmap`). Creation always maps read-write, and typed objects refuse
    /// it with [`Error::ReadOnly`](crate::Error::ReadOnly): every operation
    /// on a lock, semaphore or event writes. Default `false`.
    pub read_only: bool,
    /// How many processes (or openings) a new segment's peer table holds:
    /// each attached handle that takes a lock, claims a queue slot or holds
    /// a role needs one, and a handle beyond it works with an owner token
    /// no one can judge (never taken over after its death). 1 to 4094;
    /// default 256 (8 KiB of table).
    pub peer_slots: u32,
    /// Owners, other than this process's effective user, whose segments
    /// `open` (and `open_or_create`) joins. Empty by default: a segment
    /// owned by another user is refused with
    /// [`Error::UntrustedOwner`](crate::Error::UntrustedOwner), because
    /// anyone can create a name in `/dev/shm` before you do (mode 0666, a
    /// valid header) and read or forge everything you exchange through it.
    pub trusted_owners: Vec<u32>,
    /// Join segments of any owner (see [`Options::trusted_owners`]).
    /// Default `false`.
    pub trust_any_owner: bool,
    /// The message type of a typed segment: a creator records it in the
    /// header, an opener requires it there
    /// ([`Error::TypeMismatch`](crate::Error::TypeMismatch) otherwise).
    /// The typed constructors ([`typed`](crate::typed)) set it; `None`
    /// (the default) records nothing and checks nothing.
    pub fingerprint: Option<Fingerprint>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: 0o600,
            init_timeout: Duration::from_secs(2),
            read_only: false,
            peer_slots: super::presence::DEFAULT_PEER_SLOTS,
            trusted_owners: Vec::new(),
            trust_any_owner: false,
            fingerprint: None,
        }
    }
}

impl Options {
    /// The defaults: mode `0o600`, a 2 s initialisation timeout,
    /// read-write, and only segments of this process's own user are opened.
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets the permission bits of a new segment (see [`Options::mode`]).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Options {
        self.mode = mode;
        self
    }

    /// Sets how long to wait for a creator that is still initialising.
    #[must_use]
    pub fn init_timeout(mut self, timeout: Duration) -> Options {
        self.init_timeout = timeout;
        self
    }

    /// Sets how many slots a new segment's peer table has (see
    /// [`Options::peer_slots`]).
    #[must_use]
    pub fn peer_slots(mut self, slots: u32) -> Options {
        self.peer_slots = slots;
        self
    }

    /// Opens raw byte segments read-only.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }

    /// Also opens segments owned by the user `uid` (root is `0`). By
    /// default only segments of this process's effective user are opened;
    /// call this once for each other owner you trust.
    #[must_use]
    pub fn trust_owner(mut self, uid: u32) -> Options {
        if !self.trusted_owners.contains(&uid) {
            self.trusted_owners.push(uid);
        }
        self
    }

    /// Opens segments whatever user owns them: for names only trusted
    /// users can create (a private `/dev/shm`, say), or when the protocol
    /// on top authenticates its peers.
    #[must_use]
    pub fn trust_any_owner(mut self) -> Options {
        self.trust_any_owner = true;
        self
    }

    /// Records (on create) and requires (on open) the message type `f`
    /// (see [`Options::fingerprint`]).
    #[must_use]
    pub fn fingerprint(mut self, f: Fingerprint) -> Options {
        self.fingerprint = Some(f);
        self
    }

    /// Whether a segment owned by `owner` may be opened by a process whose
    /// effective uid is `euid`.
    pub(crate) fn trusts(&self, owner: u32, euid: u32) -> bool {
        owner == euid || self.trust_any_owner || self.trusted_owners.contains(&owner)
    }
}
