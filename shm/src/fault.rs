//! Pause points for crash tests (the `fault-injection` feature; hidden, and
//! never part of a release build).
//!
//! A test forks a process, arms one [`Point`] in it with `arm`, and has
//! it run an operation: when the operation reaches the point, the process
//! stores the point's number into the test's shared word and sleeps there
//! until it is killed. So a SIGKILL lands exactly inside the window, and
//! the test knows it did. `repairs` counts the repairs this process ran
//! after finding a dead owner's lock.
//!
//! Without the feature the calls the library makes compile to nothing.

/// Where an operation may pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Point {
    /// `SharedDict`: a new entry is written into its slot, the slot's
    /// `state = full` store that publishes it is not made yet.
    DictBeforePublish = 1,
    /// `SharedDict`: a replaced key's new entry is published, the old
    /// entry is not yet a tombstone.
    DictBeforeTombstone = 2,
}

#[cfg(feature = "fault-injection")]
mod imp {
    use shmipc_core::sync::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

    use super::Point;

    static ARMED: AtomicU32 = AtomicU32::new(0);
    static REACHED: AtomicUsize = AtomicUsize::new(0);
    static REPAIRS: AtomicU64 = AtomicU64::new(0);

    /// Arms `point` in this process: the operation that reaches it stores
    /// `point as u32` into `reached` and sleeps for ever.
    ///
    /// # Safety
    ///
    /// `reached` stays valid for as long as this process may reach the
    /// point (shared memory the test maps, say).
    pub unsafe fn arm(point: Point, reached: *const AtomicU32) {
        REACHED.store(reached as usize, Ordering::SeqCst);
        ARMED.store(point as u32, Ordering::SeqCst);
    }

    /// How many times this process repaired a structure after taking over
    /// a dead owner's lock.
    pub fn repairs() -> u64 {
        REPAIRS.load(Ordering::SeqCst)
    }

    pub(crate) fn pause(point: Point) {
        if ARMED.load(Ordering::SeqCst) != point as u32 {
            return;
        }
        let reached = REACHED.load(Ordering::SeqCst) as *const AtomicU32;
        // SAFETY: `arm`'s contract.
        unsafe { &*reached }.store(point as u32, Ordering::SeqCst);
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }

    pub(crate) fn repaired() {
        REPAIRS.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(feature = "fault-injection")]
pub use imp::{arm, repairs};
#[cfg(feature = "fault-injection")]
pub(crate) use imp::{pause, repaired};

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn pause(_: Point) {}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn repaired() {}
