//! The configuration of the slot queues ([`Spsc`](super::spsc::Spsc) and
//! [`Mpmc`](super::mpmc::Mpmc)).

use crate::place::LayoutError;

/// The largest capacity (slots or bytes) a queue may have: 2^31. Keeps
/// every position difference far from overflow and every index inside
/// `u32`, and keeps an MPMC slot's owner word unambiguous: it records 32
/// bits of a position, and positions one lap apart must differ there
/// ([`crate::mpmc`]). The one place that rule lives.
pub const MAX_CAPACITY: u64 = 1 << 31;

/// What a new [`Spsc`](crate::spsc::Spsc) or [`Mpmc`](crate::mpmc::Mpmc)
/// queue holds: its capacity in items, a power of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// How many items the queue holds when full (a power of two).
    pub capacity: usize,
}

impl RingConfig {
    /// A configuration for `capacity` items.
    pub const fn new(capacity: usize) -> RingConfig {
        RingConfig { capacity }
    }

    /// Encodes the configuration as four words, for a wrapper to store in
    /// its own header: `[capacity, 0, 0, 0]`.
    pub const fn to_words(&self) -> [u64; 4] {
        [self.capacity as u64, 0, 0, 0]
    }

    /// Decodes [`RingConfig::to_words`]. Unknown non-zero words, or a
    /// capacity that does not fit `usize`, are `InvalidParameters`; the
    /// capacity itself is checked by the queue's `layout`.
    pub fn from_words(words: [u64; 4]) -> Result<RingConfig, LayoutError> {
        if words[1..] != [0, 0, 0] {
            return Err(LayoutError::InvalidParameters);
        }
        let capacity = usize::try_from(words[0]).map_err(|_| LayoutError::InvalidParameters)?;
        Ok(RingConfig { capacity })
    }

    /// Checks the capacity: a power of two in `min..=MAX_CAPACITY`.
    pub(crate) fn check(&self, min: usize) -> Result<(), LayoutError> {
        let c = self.capacity;
        if c < min || !c.is_power_of_two() || c as u64 > MAX_CAPACITY {
            return Err(LayoutError::parameter(
                "capacity",
                c as u64,
                crate::place::Rule::PowerOfTwo {
                    min: min as u64,
                    max: MAX_CAPACITY,
                },
            ));
        }
        Ok(())
    }

    /// [`RingConfig::check`], and that `T` can be a slot: not zero-sized,
    /// aligned to at most 128.
    pub(crate) fn check_for<T>(&self, min: usize) -> Result<(), LayoutError> {
        self.check(min)?;
        if size_of::<T>() == 0 {
            return Err(LayoutError::parameter(
                "item size",
                0,
                crate::place::Rule::Text("must be at least 1 byte"),
            ));
        }
        if align_of::<T>() > 128 {
            return Err(LayoutError::parameter(
                "item alignment",
                align_of::<T>() as u64,
                crate::place::Rule::AtMost {
                    max: 128,
                    why: "a slot starts on a 128-byte boundary",
                },
            ));
        }
        Ok(())
    }

    /// The error for a capacity whose slots do not fit the address space.
    pub(crate) fn too_large(&self) -> LayoutError {
        LayoutError::parameter(
            "capacity",
            self.capacity as u64,
            crate::place::Rule::Text("makes the queue larger than the address space"),
        )
    }
}
