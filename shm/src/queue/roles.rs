//! Roles that one process at a time may hold: an SPSC queue's producer and
//! consumer, a pipe's two ends.
//!
//! The object area of an [`SpscQueue`](crate::SpscQueue) or a
//! [`Pipe`](crate::Pipe) starts with this 128-byte block, before the core
//! ring(s), so the rings stay on their own cache lines:
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `holders[0]` `u32` | the [`Token`] holding role 0 (producer / end A); 0 when free |
//! | 4 | `holders[1]` `u32` | the token holding role 1 (consumer / end B); 0 when free |
//! | 8 | — | zero, reserved |
//!
//! A token is the holder's identity in the segment's peer table
//! ([`crate::memory::presence`]). Claiming is one compare-and-swap `0 -> token`;
//! releasing (when the handle drops) is one compare-and-swap `token -> 0`,
//! made only by the process that claimed (a forked child dropping an
//! inherited handle has another token, and releases nothing). A role whose
//! holder is dead is taken over by the same compare-and-swap `dead token
//! -> token`, so a crashed holder does not lock a role for ever. Dead means
//! what the peer table says on evidence — the kernel lock on the holder's
//! token stamp is gone — which holds across pid namespaces and pid reuse
//! and cannot be forged by writing shared memory; a holder that cannot be
//! judged keeps the role, and the error says so.

use std::fmt;

use shmipc_core::sync::{AtomicU32, Ordering};
use shmipc_core::{Fate, Peers, Token};

use crate::error::{Error, Result};
use crate::memory::presence::Presence;
use crate::memory::Mapping;

/// Bytes the role block takes in front of the ring(s).
pub(crate) const ROLES_SIZE: usize = 128;

/// The role block, as it lies in shared memory (atomics only).
#[repr(C, align(128))]
pub(crate) struct Roles {
    holders: [AtomicU32; 2],
    /// The reserved bytes, as atomics nothing touches rather than padding:
    /// a peer may write them while a `&Roles` lives (during a claim, say),
    /// and a shared reference asserts that bytes outside an `UnsafeCell`
    /// do not change.
    _reserved: [AtomicU32; 30],
}

const _: () = {
    assert!(size_of::<Roles>() == ROLES_SIZE);
    assert!(align_of::<Roles>() == 128);
    assert!(std::mem::offset_of!(Roles, holders) == 0);
    assert!(std::mem::offset_of!(Roles, _reserved) == 8);
};

/// How many times a claim goes round when the word keeps changing under
/// it (a holder releasing while we look, a rival reclaiming a dead one).
const CLAIM_ROUNDS: usize = 16;

impl Roles {
    /// Writes a block with both roles free.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for writes of [`ROLES_SIZE`] bytes, 128-byte aligned,
    /// and no one else uses them yet.
    pub(crate) unsafe fn init(ptr: *mut u8) {
        // SAFETY: forwarded contract. Zero bytes are both roles free (the
        // holders are atomics holding 0) and the reserved words zero.
        unsafe { ptr.write_bytes(0, ROLES_SIZE) };
    }

    /// Views the block at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for reads and writes of [`ROLES_SIZE`] bytes for
    /// `'a`, 128-byte aligned, and accessed only atomically. (Any bytes are
    /// a valid `Roles`: it is made of atomics.)
    pub(crate) unsafe fn at<'a>(ptr: *mut u8) -> &'a Roles {
        // SAFETY: forwarded contract.
        unsafe { &*ptr.cast::<Roles>() }
    }

    /// Claims role `role` (0 or 1) for this process, as `presence`'s
    /// member; `name` and `role_name` are for the error. Returns the token
    /// recorded.
    ///
    /// SYNC POINT: the AcqRel compare-and-swap pairs with the Release in
    /// [`Roles::release`] (and with an earlier claim, for a takeover): the
    /// new holder sees everything the previous one did with the role, such
    /// as its ring position.
    pub(crate) fn claim(
        &self,
        role: usize,
        presence: &Presence,
        name: &str,
        role_name: &'static str,
    ) -> Result<Token> {
        let me = presence.me();
        let word = &self.holders[role];
        let mut expected = 0;
        for _ in 0..CLAIM_ROUNDS {
            // SYNC POINT: AcqRel (paired in the doc comment above).
            match word.compare_exchange(expected, me.raw(), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(me),
                Err(0) => expected = 0,
                Err(holder) if holder != me.raw() && holder_fate(presence, holder).is_dead() => {
                    expected = holder
                }
                Err(holder) => return Err(taken(presence, name, role_name, holder)),
            }
        }
        Err(taken(
            presence,
            name,
            role_name,
            word.load(Ordering::Relaxed),
        ))
    }

    /// Gives role `role` back if `token` still holds it and is this
    /// process's token (a forked child's differs).
    ///
    /// SYNC POINT: the Release compare-and-swap pairs with the AcqRel claim
    /// of the next holder in [`Roles::claim`].
    pub(crate) fn release(&self, role: usize, presence: &Presence, token: Token) {
        if presence.claimed_token() != Some(token) {
            return;
        }
        // SYNC POINT: Release (paired in the doc comment above). A failure
        // means someone took the role over (it judged us dead); it is
        // theirs then.
        let _ = self.holders[role].compare_exchange(
            token.raw(),
            0,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// The token holding role `role`, if any (a snapshot).
    pub(crate) fn holder(&self, role: usize) -> Option<Token> {
        Token::from_raw(self.holders[role].load(Ordering::Acquire))
    }
}

/// What the peer table says about the role holder `raw` (a value from
/// shared memory: a garbage one cannot be judged).
fn holder_fate(presence: &Presence, raw: u32) -> Fate {
    match Token::from_raw(raw) {
        Some(t) => presence.fate(t),
        None => Fate::Unknown("the role word holds no valid token"),
    }
}

/// The error for role `role_name` held by `raw`.
fn taken(presence: &Presence, name: &str, role_name: &'static str, raw: u32) -> Error {
    let (pid, holder) = match Token::from_raw(raw) {
        Some(t) => (presence.peer_pid(t).unwrap_or(0), presence.describe(t)),
        None => (
            0,
            format!("a value that is no token ({raw:#x}), which cannot be judged"),
        ),
    };
    Error::RoleTaken {
        name: name.to_owned(),
        role: role_name,
        pid,
        holder,
    }
}

/// The memory a handle that holds a role lives in: the mapping, and the
/// claim it gives back when dropped (none for anonymous memory, whose
/// roles nobody claims). An [`SpscProducer`](crate::SpscProducer) or
/// [`SpscConsumer`](crate::SpscConsumer) is the core's handle owning one
/// of these, so dropping the handle gives its role back.
pub struct HeldRole {
    memory: Mapping,
    role: usize,
    claim: Option<Token>,
}

impl HeldRole {
    /// Holds `claim` of `role` in the role block at the start of `memory`
    /// (whose object area the caller checked to be large enough).
    pub(crate) fn new(memory: Mapping, role: usize, claim: Option<Token>) -> HeldRole {
        HeldRole {
            memory,
            role,
            claim,
        }
    }

    /// The segment's normalised name, or `None` for anonymous memory.
    pub fn name(&self) -> Option<&str> {
        self.memory.name()
    }
}

impl HeldRole {
    /// The mapping the role lies in (for the async waiters).
    #[allow(dead_code)]
    pub(crate) fn memory(&self) -> &Mapping {
        &self.memory
    }
}

impl Drop for HeldRole {
    fn drop(&mut self) {
        release_role(&self.memory, self.role, self.claim);
    }
}

impl fmt::Debug for HeldRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldRole")
            .field("name", &self.name())
            .field("role", &self.role)
            .finish()
    }
}

/// Releases a claimed role (if any) in the role block at the start of
/// `backing`.
pub(crate) fn release_role(backing: &Mapping, role: usize, claim: Option<Token>) {
    if let Some(token) = claim {
        // SAFETY: the callers built their handles over a backing that
        // starts with a role block (its length checked), and hold the
        // backing alive across this call.
        unsafe { Roles::at(backing.object_ptr()) }.release(role, backing.presence(), token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer may write the block's reserved bytes while a `&Roles` lives
    /// (during a claim, say). Over padding that would be undefined
    /// behaviour; Miri checks this test.
    #[test]
    fn a_peer_writing_the_role_blocks_reserved_bytes_is_no_undefined_behaviour() {
        let layout = std::alloc::Layout::from_size_align(ROLES_SIZE, 128).unwrap();
        // SAFETY: the layout has non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!p.is_null());
        // SAFETY: valid for ROLES_SIZE bytes, 128-byte aligned, ours alone.
        unsafe { Roles::init(p) };
        // SAFETY: as above, until the dealloc below; the only other access
        // is the peer's write.
        let roles = unsafe { Roles::at(p) };
        assert_eq!(roles.holder(0), None);
        let fields = size_of::<[AtomicU32; 2]>();
        // SAFETY: inside the block: a peer's write while `roles` lives.
        unsafe { p.add(fields).write_bytes(0x5a, ROLES_SIZE - fields) };
        assert_eq!(roles.holder(0), None);
        assert_eq!(roles.holder(1), None);
        // SAFETY: allocated above with this layout; `roles` is not used again.
        unsafe { std::alloc::dealloc(p, layout) };
    }
}
