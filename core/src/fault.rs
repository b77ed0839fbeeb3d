//! Test hooks for crash tests (the `fault-injection` feature; hidden, and
//! never part of a release build).
//!
//! `disable_claim_recovery` turns off, in the calling process (and the
//! children it forks afterwards), the recovery of what a dead claimant
//! left in a queue: an MPMC slot claimed and never published or freed, a
//! byte-queue record reserved and never committed, a read grant never
//! released. The peers are still judged; the verdict is only not acted
//! on. A crash test runs its stress with recovery off to show that the
//! stress can tell: it must fail there. Lock takeovers are not affected.
//!
//! Without the feature the check compiles to `false`.

#[cfg(all(feature = "fault-injection", not(loom)))]
#[allow(clippy::disallowed_types)] // process-local, outside any model
static CLAIM_RECOVERY_OFF: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Turns off dead-claimant recovery in the queues of this process (module
/// docs). For crash tests only.
#[cfg(all(feature = "fault-injection", not(loom)))]
pub fn disable_claim_recovery() {
    CLAIM_RECOVERY_OFF.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Whether a queue must leave a dead claimant's claim alone.
#[inline]
pub(crate) fn claim_recovery_off() -> bool {
    #[cfg(all(feature = "fault-injection", not(loom)))]
    return CLAIM_RECOVERY_OFF.load(core::sync::atomic::Ordering::Relaxed);
    #[cfg(not(all(feature = "fault-injection", not(loom))))]
    return false;
}
