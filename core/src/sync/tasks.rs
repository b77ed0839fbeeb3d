//! A count of unfinished tasks and a wait for it to reach zero: the
//! counter behind a `JoinableQueue` (Python's `task_done` / `join`).
//!
//! One 32-bit word:
//!
//! | bits | meaning |
//! |---|---|
//! | 0–30 | the unfinished tasks: raised by each put, lowered by each `task_done` |
//! | 31 (`WAITERS`) | someone may sleep until the count is zero: the last `done` must wake |
//!
//! `done` is a compare-and-swap loop that refuses to go below zero (that is
//! the caller's error, `task_done` called too many times), and the one that
//! reaches zero with `WAITERS` set clears it and wakes every sleeper. A
//! sleeper sets `WAITERS` before it sleeps on the word, so the last `done`
//! either sees the bit or changes the word the sleeper expects (the kernel
//! then refuses the sleep). Sleeps are sliced
//! ([`futex::wait_sliced`]): a `done` whose
//! process dies between its decrement and its wake costs a sleeper one
//! slice, not its whole wait.
//!
//! A consumer that dies holding an item it never marks done leaves the
//! count above zero for ever, as in Python: `wait_until` with a deadline
//! bounds the wait.

use core::fmt;

use crate::futex::{self, Deadline};
use crate::sync::{AtomicU32, Ordering};

/// Set while someone may sleep until the count is zero.
const WAITERS: u32 = 0x8000_0000;
/// The count's bits.
const COUNT: u32 = !WAITERS;

/// The unfinished tasks of a queue, in a word of shared memory. Zero bits
/// are a count of zero.
#[repr(transparent)]
pub struct TaskCount {
    word: AtomicU32,
}

/// Why the count could not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskCountError {
    /// [`TaskCount::done`] with no unfinished task: more `task_done`
    /// calls than items put.
    TooManyDone,
    /// [`TaskCount::add`] at 2^31 - 1 unfinished tasks.
    Overflow,
}

impl fmt::Display for TaskCountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskCountError::TooManyDone => {
                "task_done called more times than items were put (no task is unfinished)"
            }
            TaskCountError::Overflow => "2^31 - 1 tasks are unfinished already",
        })
    }
}

impl core::error::Error for TaskCountError {}

impl TaskCount {
    /// The count that lives in `word` (any value is a valid count).
    pub fn at(word: &AtomicU32) -> &TaskCount {
        // SAFETY: TaskCount is a #[repr(transparent)] AtomicU32, so the
        // reference keeps its layout, alignment and lifetime.
        unsafe { &*(word as *const AtomicU32).cast::<TaskCount>() }
    }

    /// The unfinished tasks now (a snapshot).
    pub fn count(&self) -> u32 {
        self.word.load(Ordering::Relaxed) & COUNT
    }

    /// One more unfinished task (call it before the item is visible, so
    /// its `done` never comes first).
    pub fn add(&self) -> Result<(), TaskCountError> {
        let mut state = self.word.load(Ordering::Relaxed);
        loop {
            if state & COUNT == COUNT {
                return Err(TaskCountError::Overflow);
            }
            // Relaxed: the item's own publication (the queue's commit)
            // orders what the consumer sees.
            match self.word.compare_exchange_weak(
                state,
                state + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(s) => state = s,
            }
        }
    }

    /// One task finished; the one that reaches zero wakes every waiter.
    ///
    /// SYNC POINT: the Release compare-and-swap pairs with the Acquire load
    /// in [`TaskCount::wait_until`], so a waiter that sees zero sees what
    /// every consumer did before its `done`.
    pub fn done(&self) -> Result<(), TaskCountError> {
        let mut state = self.word.load(Ordering::Relaxed);
        loop {
            if state & COUNT == 0 {
                return Err(TaskCountError::TooManyDone);
            }
            let left = (state & COUNT) - 1;
            // The last one clears WAITERS: it wakes everyone.
            let new = if left == 0 { 0 } else { state - 1 };
            // SYNC POINT: Release (paired in the doc comment above).
            match self
                .word
                .compare_exchange_weak(state, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if left == 0 && state & WAITERS != 0 {
                        futex::wake_all(&self.word);
                    }
                    return Ok(());
                }
                Err(s) => state = s,
            }
        }
    }

    /// Waits until the count is zero, at most until `deadline` (`None`:
    /// for ever); returns whether it is.
    ///
    /// SYNC POINT: the Acquire load pairs with the Release in
    /// [`TaskCount::done`].
    pub fn wait_until(&self, deadline: Option<&Deadline>) -> bool {
        loop {
            // SYNC POINT: Acquire (paired in the doc comment above).
            let state = self.word.load(Ordering::Acquire);
            if state & COUNT == 0 {
                return true;
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return false;
            }
            if state & WAITERS == 0
                && self
                    .word
                    .compare_exchange(state, state | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            futex::wait_sliced(&self.word, state | WAITERS, deadline);
        }
    }
}

impl fmt::Debug for TaskCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskCount")
            .field("count", &self.count())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn done_below_zero_is_an_error_and_changes_nothing() {
        let word = AtomicU32::new(0);
        let t = TaskCount::at(&word);
        assert_eq!(t.done(), Err(TaskCountError::TooManyDone));
        t.add().unwrap();
        t.done().unwrap();
        assert_eq!(t.done(), Err(TaskCountError::TooManyDone));
        assert_eq!(t.count(), 0);
    }

    #[test]
    fn a_full_count_refuses_more() {
        let word = AtomicU32::new(COUNT);
        assert_eq!(TaskCount::at(&word).add(), Err(TaskCountError::Overflow));
    }

    #[test]
    fn the_last_done_wakes_a_waiter() {
        let word = AtomicU32::new(0);
        let t = TaskCount::at(&word);
        for _ in 0..3 {
            t.add().unwrap();
        }
        let short = Deadline::after(Duration::from_millis(10));
        assert!(!t.wait_until(Some(&short)));
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..3 {
                    std::thread::sleep(Duration::from_millis(5));
                    t.done().unwrap();
                }
            });
            assert!(t.wait_until(None));
        });
        assert_eq!(word.load(Ordering::Relaxed), 0, "WAITERS is cleared");
    }
}
