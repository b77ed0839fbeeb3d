//! The memory a variable-size shared-data object lives in: a named
//! segment's object area, or an anonymous shared mapping for forked
//! children. [`Value`](crate::Value), [`Array`](crate::Array),
//! [`SharedDict`](crate::SharedDict) and [`SharedList`](crate::SharedList)
//! are built on it.

use crate::error::{Error, Result};
use crate::header::{HeaderSnapshot, Kind};
use crate::mapping::{Mapping, ObjectLayout};
use crate::object::AnonMap;
use crate::options::Options;

/// A named segment's object area, or an anonymous shared mapping.
pub(crate) enum Region {
    Named(Mapping),
    Anon(AnonMap),
}

impl Region {
    /// Creates segment `name` for `layout`, running `init` over the zeroed
    /// object bytes before the name appears.
    pub(crate) fn create(
        name: &str,
        layout: &ObjectLayout,
        opts: &Options,
        init: impl FnOnce(*mut u8, usize) -> Result<()>,
    ) -> Result<Region> {
        Ok(Region::Named(Mapping::create(name, layout, opts, init)?))
    }

    /// Opens segment `name` of `kind`; `expected` checks the header's
    /// parameters and returns the object size and alignment they call for,
    /// which must match the header exactly.
    pub(crate) fn open(
        name: &str,
        kind: Kind,
        opts: &Options,
        expected: impl FnOnce(&HeaderSnapshot) -> Result<(u64, u64)>,
    ) -> Result<Region> {
        if opts.read_only {
            return Err(Error::ReadOnly {
                name: name.to_owned(),
            });
        }
        let map = Mapping::open(name, kind, opts, |h| {
            let (size, align) = expected(h)?;
            h.expect_layout(name, size, align, h.params)
        })?;
        Ok(Region::Named(map))
    }

    /// Maps `size` fresh zeroed bytes (page-aligned) and runs `init` over
    /// them.
    pub(crate) fn anon(
        size: usize,
        init: impl FnOnce(*mut u8, usize) -> Result<()>,
    ) -> Result<Region> {
        let map = AnonMap::new(size)?;
        init(map.as_ptr(), map.len())?;
        Ok(Region::Anon(map))
    }

    /// The object's first byte.
    pub(crate) fn ptr(&self) -> *mut u8 {
        match self {
            Region::Named(m) => m.object_ptr(),
            Region::Anon(a) => a.as_ptr(),
        }
    }

    /// The segment's name, if it has one.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Region::Named(m) => Some(m.name()),
            Region::Anon(_) => None,
        }
    }
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

/// Rounds `n` up to a multiple of `align` (a power of two), if it fits.
pub(crate) fn round_up(n: usize, align: usize) -> Option<usize> {
    n.checked_add(align - 1).map(|v| v & !(align - 1))
}
