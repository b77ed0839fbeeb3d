//! [`Named`]: one set of constructors for every object that lives in a
//! segment of its own, written once.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::memory::{self, HeaderSnapshot, Kind, Mapping, ObjectLayout, Options};
use crate::typed::Fingerprint;

/// An object that lives in a segment of its own: created once by name,
/// opened by name from any process, or made anonymous for forked
/// children.
///
/// Every constructor is provided, over the few items each kind defines:
/// its [`KIND`](Named::KIND), the [`layout`](Named::layout) a
/// configuration calls for, how to [`init`](Named::init) fresh bytes, how
/// to [`check`](Named::check) a header another process wrote, and how to
/// [`attach`](Named::attach) a handle to the memory. Bring the trait into
/// scope (`use shmipc::Named`, or `use shmipc::prelude::*`) to call them:
///
/// ```
/// use shmipc::{Event, Named, Shared, Unlinker};
///
/// let names = Unlinker::new("doc-named");
/// let name = names.name("ready");
/// let (ready, created) = Shared::<Event>::open_or_create(&name, ())?;
/// assert!(created);
/// let again = Shared::<Event>::open(&name)?;        // as another process would
/// ready.set();
/// assert!(again.is_set());
/// # Ok::<(), shmipc::Error>(())
/// ```
///
/// A new kind of object implements the required items and gets the whole
/// set; kinds 192 and above are free for that (see [`Kind`]).
pub trait Named: Sized {
    /// The kind written into the header and expected by every opener.
    const KIND: Kind;

    /// Whether [`Options::read_only`] may open it (only raw bytes: every
    /// operation on any other object writes). Others refuse it with
    /// [`Error::ReadOnly`].
    const READ_ONLY: bool = false;

    /// The message type a typed object records in its header on create
    /// and requires of openers ([`Fingerprint`]); `None`, the default,
    /// records and checks nothing.
    fn fingerprint() -> Option<Fingerprint> {
        None
    }

    /// What a creator chooses: a capacity, an initial value, a number of
    /// parties. An existing object keeps its creator's.
    type Config<'a>: Copy;

    /// What [`anon`](Named::anon) returns: the object itself, or both
    /// ends of an object with two (an SPSC queue, a pipe).
    type Anon;

    /// The object's size, alignment and header parameters for `config`:
    /// an impossible configuration is a [`LayoutError`] naming the
    /// parameter, its value and the rule.
    ///
    /// [`LayoutError`]: shmipc_core::LayoutError
    fn layout(
        config: &Self::Config<'_>,
    ) -> std::result::Result<ObjectLayout, shmipc_core::LayoutError>;

    /// Writes a fresh object from `config` into the `len` zeroed bytes at
    /// `ptr`, which [`layout`](Named::layout) sized and aligned.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for reads and writes of `len` bytes for as long as
    /// the mapping that holds them lives, and no one else can see them
    /// yet.
    unsafe fn init(
        ptr: *mut u8,
        len: usize,
        config: Self::Config<'_>,
    ) -> std::result::Result<(), shmipc_core::QueueError>;

    /// Checks what only this kind knows in a header that passed the common
    /// checks ([`Mapping::open`] lists them): its parameters, and that its
    /// object size and alignment are exactly what they call for
    /// ([`HeaderSnapshot::expect_layout`]). `name` is for the errors.
    fn check(name: &str, header: &HeaderSnapshot) -> Result<()>;

    /// The handle over `memory`, whose header [`check`](Named::check)
    /// accepted (or this process wrote). `created` says whether this
    /// process created it (a pipe's creator holds end A).
    fn attach(memory: Mapping, created: bool) -> Result<Self>;

    /// The handle (or handles) over anonymous memory made by
    /// [`anon`](Named::anon).
    fn attach_anon(memory: Mapping) -> Result<Self::Anon>;

    /// Creates the segment `name` holding a new object made from `config`,
    /// with default [`Options`] (mode `0o600`); [`Error::AlreadyExists`]
    /// if the name is taken, [`Error::Layout`] for an impossible `config`.
    /// The object is complete before the name appears: no process ever
    /// sees it half-made.
    fn create(name: &str, config: Self::Config<'_>) -> Result<Self> {
        Self::create_with(name, config, &Options::default())
    }

    /// [`create`](Named::create) with explicit options (mode, peer slots).
    fn create_with(name: &str, config: Self::Config<'_>, opts: &Options) -> Result<Self> {
        let opts = &with_fingerprint::<Self>(opts);
        let layout = Self::layout(&config).map_err(|e| Error::layout(name, e))?;
        let memory = Mapping::create(name, &layout, opts, |ptr, len| {
            // SAFETY: Mapping::create hands us the object's zeroed bytes,
            // sized and aligned by `layout`, while the segment has no name
            // (so no one else sees them), mapped as long as the mapping.
            unsafe { Self::init(ptr, len, config) }.map_err(|e| Error::from_queue(name, e))
        })?;
        Self::attach(memory, true)
    }

    /// Opens the existing segment `name`, which must hold this kind of
    /// object, with default [`Options`].
    fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`open`](Named::open) with explicit options (`init_timeout`,
    /// trusted owners).
    fn open_with(name: &str, opts: &Options) -> Result<Self> {
        let memory = open_memory::<Self>(name, &with_fingerprint::<Self>(opts))?;
        Self::attach(memory, false)
    }

    /// Opens `name`, or creates it from `config` if it does not exist;
    /// returns whether this call created it. An existing object keeps its
    /// own configuration.
    fn open_or_create(name: &str, config: Self::Config<'_>) -> Result<(Self, bool)> {
        Self::open_or_create_with(name, config, &Options::default())
    }

    /// [`open_or_create`](Named::open_or_create) with explicit options.
    fn open_or_create_with(
        name: &str,
        config: Self::Config<'_>,
        opts: &Options,
    ) -> Result<(Self, bool)> {
        Mapping::open_or_create(
            || Self::open_with(name, opts),
            || Self::create_with(name, config, opts),
        )
    }

    /// A new object in anonymous shared memory: no name, nothing to clean
    /// up, and children forked after it was made share it with their
    /// parent. The memory is a `memfd` mapped shared, with the same header
    /// and peer table as a named segment, so that a lock in it is
    /// recovered from a dead holder the same way.
    fn anon(config: Self::Config<'_>) -> Result<Self::Anon> {
        const ANON: &str = "(anonymous)";
        let layout = Self::layout(&config).map_err(|e| Error::layout(ANON, e))?;
        let memory = Mapping::anon(&layout, &Options::default(), |ptr, len| {
            // SAFETY: as in `create_with`: fresh zeroed bytes no one else
            // sees, mapped as long as the mapping.
            unsafe { Self::init(ptr, len, config) }.map_err(|e| Error::from_queue(ANON, e))
        })?;
        Self::attach_anon(memory)
    }

    /// Removes the name (see [`unlink`](crate::unlink)): processes that
    /// have the object keep using it.
    fn unlink(name: &str) -> Result<()> {
        memory::unlink(name)
    }
}

/// `opts`, with `T`'s fingerprint if it has one.
fn with_fingerprint<T: Named>(opts: &Options) -> Cow<'_, Options> {
    match T::fingerprint() {
        Some(f) => Cow::Owned(opts.clone().fingerprint(f)),
        None => Cow::Borrowed(opts),
    }
}

/// Opens segment `name` as a `T`: refuses [`Options::read_only`] unless
/// `T` allows it, then the common header checks and `T`'s own.
pub(crate) fn open_memory<T: Named>(name: &str, opts: &Options) -> Result<Mapping> {
    if opts.read_only && !T::READ_ONLY {
        return Err(Error::ReadOnly {
            name: name.to_owned(),
        });
    }
    Mapping::open(name, T::KIND, opts, |header| T::check(name, header))
}

/// The element word of a typed object's `params`: `size | align << 32`.
pub(crate) fn elem_word<T>() -> u64 {
    size_of::<T>() as u64 | (align_of::<T>() as u64) << 32
}

/// Checks the element word of a typed object's header.
pub(crate) fn check_elem<T>(name: &str, found: u64) -> Result<()> {
    if found == elem_word::<T>() {
        return Ok(());
    }
    Err(Error::ElementMismatch {
        name: name.to_owned(),
        expected: std::any::type_name::<T>(),
        expected_size: size_of::<T>() as u64,
        expected_align: align_of::<T>() as u64,
        found_size: found & 0xffff_ffff,
        found_align: found >> 32,
    })
}
