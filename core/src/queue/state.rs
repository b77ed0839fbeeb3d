//! Looking at a control block without attaching: decoders over a *copy*
//! of its bytes, for tools (`shmipc inspect`).

/// What a queue's control block says, decoded from a *copy* of its bytes
/// ([`mpmc::state_of`](crate::mpmc::state_of),
/// [`spsc::state_of`](crate::spsc::state_of),
/// [`bytes::state_of`](crate::bytes::state_of)): for tools that look at a
/// queue in shared memory without attaching to it or writing a byte.
///
/// The positions are the raw counters (items for the typed queues, bytes
/// for a byte queue), as any peer may have written them: nothing in here
/// is trusted, and a copy taken while the queue runs may mix moments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingState {
    /// The producers' position: the next one a push (or reservation)
    /// claims, without the closed bit.
    pub tail: u64,
    /// The consumers' position: the next one a pop (or receive) claims.
    pub head: u64,
    /// Whether the queue has been closed.
    pub closed: bool,
    /// Sleepers counted on the consumers' side (waiting for items).
    pub consumer_sleepers: u64,
    /// Sleepers counted on the producers' side (waiting for room).
    pub producer_sleepers: u64,
}

impl RingState {
    /// Items (or bytes) between the consumers and the producers, clamped
    /// to `capacity`: what `len()` on a handle would say.
    pub fn len(&self, capacity: u64) -> u64 {
        self.tail.saturating_sub(self.head).min(capacity)
    }
}

/// The native-endian `u64` at `off` of `bytes`, if it lies inside.
#[cfg(not(loom))]
pub(crate) fn word_at(bytes: &[u8], off: usize) -> Option<u64> {
    let w = bytes.get(off..off.checked_add(8)?)?;
    Some(u64::from_ne_bytes(w.try_into().ok()?))
}
