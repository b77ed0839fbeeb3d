//! Roles that one process at a time may hold: an SPSC queue's producer and
//! consumer, a pipe's two ends.
//!
//! The object area of an [`SpscQueue`](crate::SpscQueue) or a
//! [`Pipe`](crate::Pipe) starts with this 128-byte block, before the core
//! ring(s), so the rings stay on their own cache lines:
//!
//! | offset | field | meaning |
//! |---|---|---|
//! | 0 | `holders[0]` `u32` | pid holding role 0 (producer / end A); 0 when free |
//! | 4 | `holders[1]` `u32` | pid holding role 1 (consumer / end B); 0 when free |
//! | 8 | `stamps[0]` `u64` | role 0's holder's process stamp (pid, start time) |
//! | 16 | `stamps[1]` `u64` | role 1's holder's process stamp |
//! | 24 | — | zero, reserved |
//!
//! Claiming is one compare-and-swap `0 -> pid`, then a store of the
//! holder's [process stamp](shmipc_core::tid::process_stamp); releasing
//! (when the handle drops) is one compare-and-swap `pid -> 0`, made only by
//! the process that claimed (a forked child dropping an inherited handle
//! releases nothing). A role whose holder is dead is taken over by the same
//! compare-and-swap `dead pid -> pid`, so a crashed holder does not lock a
//! role for ever. Dead means what [`shmipc_core::liveness`] says: the pid
//! no longer exists, or is a zombie (dead, not yet reaped), or now names a
//! process with another start time than the stamp records (the pid was
//! reused). A stamp that does not name the recorded pid (a claimant killed
//! between its two stores) leaves the pid alone to decide.

use shmipc_core::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc_core::{liveness, tid};

use crate::error::{Error, Result};
use crate::queue::Backing;

/// Bytes the role block takes in front of the ring(s).
pub(crate) const ROLES_SIZE: usize = 128;

/// The role block, as it lies in shared memory (atomics only).
#[repr(C, align(128))]
pub(crate) struct Roles {
    holders: [AtomicU32; 2],
    stamps: [AtomicU64; 2],
}

const _: () = assert!(size_of::<Roles>() == ROLES_SIZE);

/// How many times a claim goes round when the word keeps changing under
/// it (a holder releasing while we look, a rival reclaiming a dead pid).
const CLAIM_ROUNDS: usize = 16;

impl Roles {
    /// Writes a block with both roles free.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for writes of [`ROLES_SIZE`] bytes, 128-byte aligned,
    /// and no one else uses them yet.
    pub(crate) unsafe fn init(ptr: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe {
            ptr.cast::<Roles>().write(Roles {
                holders: [AtomicU32::new(0), AtomicU32::new(0)],
                stamps: [AtomicU64::new(0), AtomicU64::new(0)],
            })
        };
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

    /// Claims role `role` (0 or 1) for this process; `name` and
    /// `role_name` are for the error. Returns the pid recorded.
    pub(crate) fn claim(&self, role: usize, name: &str, role_name: &'static str) -> Result<u32> {
        let me = std::process::id();
        let word = &self.holders[role];
        let mut expected = 0;
        for _ in 0..CLAIM_ROUNDS {
            // SYNC POINT: AcqRel pairs with the Release in `release` (and
            // with an earlier claim): the new holder sees everything the
            // previous one did with the role, such as its ring position.
            match word.compare_exchange(expected, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.stamps[role].store(tid::process_stamp(), Ordering::Relaxed);
                    return Ok(me);
                }
                Err(0) => expected = 0,
                Err(holder) if holder != me && self.holder_is_dead(role, holder) => {
                    expected = holder
                }
                Err(holder) => {
                    return Err(Error::RoleTaken {
                        name: name.to_owned(),
                        role: role_name,
                        pid: holder,
                    })
                }
            }
        }
        Err(Error::RoleTaken {
            name: name.to_owned(),
            role: role_name,
            pid: word.load(Ordering::Relaxed),
        })
    }

    /// Whether `holder`, recorded for `role`, is dead (see the module docs).
    fn holder_is_dead(&self, role: usize, holder: u32) -> bool {
        let stamp = self.stamps[role].load(Ordering::Relaxed);
        let stamp = if (stamp >> 32) as u32 == holder {
            stamp
        } else {
            u64::from(holder) << 32
        };
        liveness::process_is_dead(stamp)
    }

    /// Gives role `role` back if `pid` (this process) still holds it.
    pub(crate) fn release(&self, role: usize, pid: u32) {
        if pid != std::process::id() {
            return;
        }
        // SYNC POINT: Release pairs with the AcqRel claim of the next
        // holder. A failure means someone took the role over (it thought
        // us dead); it is theirs then.
        let _ = self.holders[role].compare_exchange(pid, 0, Ordering::Release, Ordering::Relaxed);
    }

    /// The pid holding role `role`, if any (a snapshot).
    pub(crate) fn holder(&self, role: usize) -> Option<u32> {
        match self.holders[role].load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        }
    }
}

/// Releases a claimed role (if any) in the role block at the start of
/// `backing`.
pub(crate) fn release_role(backing: &Backing, role: usize, claim: Option<u32>) {
    if let Some(pid) = claim {
        // SAFETY: the callers built their handles over a backing that
        // starts with a role block (its length checked), and hold the
        // backing alive across this call.
        unsafe { Roles::at(backing.ptr()) }.release(role, pid);
    }
}
