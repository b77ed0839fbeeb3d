//! Endpoints: which processes send into a queue and which receive from it,
//! so that a receive on an empty queue whose senders have all gone reports
//! end-of-stream ([`RecvError::Disconnected`](super::RecvError)), and a
//! send with no receiver left can report a broken pipe.
//!
//! Two records, in two places:
//!
//! - **Per process, in its peer slot** ([`Peers::add_end`]): how many
//!   handles of each end (sender, receiver) of each *lane* it keeps. A lane
//!   is one queue of the mapping's object (a pipe's two rings are lanes 0
//!   and 1; every other queue is lane 0). The kernel drops the slot's
//!   stamp lock at the holder's death, so a dead holder's counts stop
//!   counting, whatever its pid namespace.
//! - **Per queue, in its control block** (the `ends` word, in padding that
//!   was zero before): whether it ever had a sender (a receiver), so that
//!   a consumer that starts before any producer waits instead of being told
//!   end-of-stream; whether some handle could not be recorded (no peer
//!   table, or a full one: then that end is never judged gone); a count
//!   of arrivals, which a handle bumps once it is counted in its slot;
//!   and a count of departures, which a handle bumps when it drops so
//!   that blocked receivers look again at once.
//!
//! | bits of `ends` | meaning |
//! |---|---|
//! | 0 | a sender was recorded once |
//! | 1 | a receiver was recorded once |
//! | 2 | a sender could not be recorded: senders are never judged gone |
//! | 3 | a receiver could not be recorded: likewise |
//! | 8–31 | arrivals (handles recorded), wrapping (a carry into bit 32 only costs a scan) |
//! | 32–63 | departures (handles dropped), wrapping |
//!
//! A handle records itself on creation for fixed roles (the shm layer
//! calls `declare`: pipe ends, SPSC roles) and otherwise on its first
//! send or receive — a fast-path check of one handle-local word. Nothing
//! else on a fast path: the table scan runs only when a blocking call
//! finds the queue empty (full) before it sleeps, after a wake-up that
//! follows a departure, and at each owner check interval while blocked.
//!
//! Under loom all of this is switched off: the models have no peer table,
//! so nothing could be recorded, and extra atomics would only widen their
//! search.
//!
//! **A scan racing an arrival.** The table scan reads one slot after the
//! other, so on its own it can miss a sender that records itself in a slot
//! the scan has passed while the last sender it has not reached yet
//! leaves: "no live sender", with one alive. So an end is judged gone only
//! after two scans that both find nobody, with the arrivals and departures
//! unchanged from before the first to after the second. A sender that the
//! first scan missed recorded itself after that scan began; the second
//! finds it (it recorded itself before the second began) unless it left
//! again, which bumps the departures (or the arrivals, recorded between
//! the scans' reads of the word), or it recorded itself after the second
//! scan passed its slot. A sender found by neither is then only possible
//! if every sender before it left while the scans ran, and their
//! arrivals (after the first scan began) or departures change the counts.
//! What is left is a sender killed in the few instructions between
//! counting itself in its slot and bumping the arrivals, in that same
//! window: end-of-stream may then be early for one that attached
//! meanwhile. `core/tests/ends_scan_race.rs` forces the interleavings.
//!
//! **Ordering.** A receiver that judges every sender gone looks at the
//! queue once more, with dead claims skipped, before it reports
//! `Disconnected`: a sender's last message is published before its count
//! drops (Release, paired with the scan's Acquire) or before its death
//! (which the kernel reports after every store of the process), so it is
//! received, never lost.

use crate::peers::{End, Peers};
use crate::sync::lock::OWNER_CHECK_INTERVAL;
use crate::sync::{AtomicU64, Ordering};

const HAD: [u64; 2] = [1 << 0, 1 << 1];
const UNRECORDED: [u64; 2] = [1 << 2, 1 << 3];
const ARRIVAL: u64 = 1 << 8;
const DEPARTURE: u64 = 1 << 32;
/// The arrival and departure counts of an `ends` word.
const COUNTS: u64 = !0xff;

const fn index(end: End) -> usize {
    match end {
        End::Sender => 0,
        End::Receiver => 1,
    }
}

/// What one handle holds of its queue's ends (handle-local, not shared).
pub(crate) struct Ends {
    /// `(fork generation + 1) << 8 | bits`: bit 0 sender, bit 1 receiver,
    /// recorded in this fork generation's peer slot; 0 for nothing. A
    /// forked child's inherited handle counts as recorded in the child's
    /// slot if the fork copied its parent's counts there
    /// ([`Peers::inherited`]); otherwise it records itself again on first
    /// use, and gives back nothing of its parent's.
    held: AtomicU64,
    /// The lane of the queue in its mapping (see the module docs).
    lane: u32,
    /// Whether a send that finds no room and no receiver reports
    /// `Disconnected` (else it keeps waiting for room).
    pub(crate) fail_sends: bool,
    /// Departures + 1 when this handle's last scan found the other end
    /// present; 0 if it has not, or found it gone.
    present_at: AtomicU64,
    /// Unforced calls of [`Ends::gone`] that skipped their scan, wrapping
    /// (plain loads and stores: a lost count only delays a rescan).
    skipped: AtomicU64,
    /// `CLOCK_MONOTONIC` nanoseconds of this handle's last scan that found
    /// the other end present.
    present_since: AtomicU64,
}

impl Clone for Ends {
    /// A clone holds nothing yet: it records itself on its own first use.
    fn clone(&self) -> Self {
        Ends {
            held: AtomicU64::new(0),
            lane: self.lane,
            fail_sends: self.fail_sends,
            present_at: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            present_since: AtomicU64::new(0),
        }
    }
}

#[inline]
fn generation() -> u64 {
    u64::from(crate::sys::tid::fork_generation()) + 1
}

impl Ends {
    pub(crate) fn new() -> Ends {
        Ends {
            held: AtomicU64::new(0),
            lane: 0,
            fail_sends: false,
            present_at: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            present_since: AtomicU64::new(0),
        }
    }

    /// Sets the lane (see the module docs); a lane beyond
    /// [`MAX_LANES`](crate::peers::MAX_LANES) is never recorded, so its
    /// ends are never judged gone.
    pub(crate) fn set_lane(&mut self, lane: u32) {
        self.lane = lane;
    }

    /// Makes sure this handle is recorded as holding `end`: the fast-path
    /// check, one load of a handle-local word and one of the fork counter.
    #[inline]
    pub(crate) fn note(&self, end: End, word: &AtomicU64, peers: &dyn Peers) {
        if cfg!(loom) {
            // Loom models have no peer table (nothing could be recorded),
            // and atomics they need not see would only widen the search.
            return;
        }
        let h = self.held.load(Ordering::Relaxed);
        // A held bit was set with `generation()`, which installed the fork
        // handler: the uninstalled read of the counter is enough here.
        if h & (1 << index(end)) != 0
            && h >> 8 == u64::from(crate::sys::tid::fork_generation_seen()) + 1
        {
            return;
        }
        self.record(end, word, peers);
    }

    /// Records `end` in our peer slot, then in the queue's `ends` word.
    ///
    /// SYNC POINT: the Release `fetch_or` of `word` pairs with the Acquire
    /// load in [`Ends::gone`]: whoever sees "had a sender" sees the count
    /// recorded before it.
    ///
    /// A record the handle made in an ancestor that forked us is ours if
    /// the fork copied its counts into our slot ([`Peers::inherited`]):
    /// the handle is then marked as recorded in this generation. The whole
    /// change is made between [`Peers::ends_enter`] and
    /// [`Peers::ends_exit`], so a fork never copies a count without the
    /// handle's mark or the other way round.
    #[cold]
    fn record(&self, end: End, word: &AtomicU64, peers: &dyn Peers) {
        peers.ends_enter();
        self.record_entered(end, word, peers);
        peers.ends_exit();
    }

    fn record_entered(&self, end: End, word: &AtomicU64, peers: &dyn Peers) {
        let gen = generation();
        let bit = 1u64 << index(end);
        loop {
            let h = self.held.load(Ordering::Relaxed);
            let ours = h >> 8 == gen || (h != 0 && peers.inherited(h >> 8));
            let cur = if ours { h & 0xff } else { 0 };
            if cur & bit != 0 {
                if h >> 8 != gen {
                    // Inherited and counted in our slot: mark it as this
                    // generation's, so the fast path finds it.
                    let _ = self.held.compare_exchange(
                        h,
                        gen << 8 | cur,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    continue;
                }
                return;
            }
            // Count first, then show the handle as counted: a thread that
            // sees the bit may rely on the count.
            let recorded = peers.add_end(self.lane, end);
            let flags = if recorded {
                HAD[index(end)]
            } else {
                HAD[index(end)] | UNRECORDED[index(end)]
            };
            // SYNC POINT: Release (paired in the doc comment above).
            word.fetch_or(flags, Ordering::Release);
            // Counted: say so to scans under way (module docs, "A scan
            // racing an arrival").
            // SYNC POINT: SeqCst, as the scans' loads of `word` in `gone`:
            // one order for the counts and the slot writes before them.
            word.fetch_add(ARRIVAL, Ordering::SeqCst);
            if self
                .held
                .compare_exchange(
                    h,
                    gen << 8 | cur | bit,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return;
            }
            // Another thread of ours changed the handle's record meanwhile:
            // take our count back and look again.
            if recorded {
                peers.remove_end(self.lane, end);
            }
        }
    }

    /// Gives back everything this handle recorded (in this fork
    /// generation) and bumps the departures; returns the ends it held, for
    /// the caller to wake the other side of each.
    ///
    /// SYNC POINT: the Release bump of `word` pairs with the Acquire load
    /// in [`Ends::gone`] (a receiver that sees the departure sees the count
    /// dropped, and the messages sent before).
    pub(crate) fn release(&self, word: &AtomicU64, peers: &dyn Peers) -> [bool; 2] {
        if cfg!(loom) {
            return [false; 2];
        }
        if self.held.load(Ordering::Relaxed) == 0 {
            return [false; 2];
        }
        // Between enter and exit, so a fork copies the counts with the
        // handle's mark (see `record`).
        peers.ends_enter();
        let h = self.held.swap(0, Ordering::Relaxed);
        if h == 0 || (h >> 8 != generation() && !peers.inherited(h >> 8)) {
            peers.ends_exit();
            return [false; 2];
        }
        let mut out = [false; 2];
        for end in [End::Sender, End::Receiver] {
            if h & (1 << index(end)) != 0 {
                peers.remove_end(self.lane, end);
                out[index(end)] = true;
            }
        }
        peers.ends_exit();
        // SYNC POINT: Release (paired in the doc comment above).
        word.fetch_add(DEPARTURE, Ordering::Release);
        out
    }

    /// Whether `end` of the queue is gone: it was recorded once, every
    /// handle of it was recorded, and none is held by a live process (a
    /// table scan: slow paths only). Unless `force` (an owner check, or a
    /// deadline), the scan is skipped while no handle has departed since
    /// this handle's last scan found the end present: a drop bumps the
    /// departures, and a death is found by the next owner check, 50 ms
    /// into a wait at most. So a receiver in a ping-pong pays for one scan,
    /// not one per message. A handle polled only with `try_` calls makes no
    /// owner check, and a kill counts no departure: every
    /// [`RESCAN_EVERY`] skipped scans it reads the clock, and scans again
    /// once [`OWNER_CHECK_INTERVAL`] has passed since the last scan found
    /// the end present (so a loop of `try_` calls sees a killed sender gone
    /// as a blocked call does, within about one interval).
    ///
    /// SYNC POINT: the Acquire load pairs with the Release updates in
    /// [`Ends::record`] and [`Ends::release`].
    pub(crate) fn gone(&self, end: End, word: &AtomicU64, peers: &dyn Peers, force: bool) -> bool {
        if cfg!(loom) {
            return false;
        }
        // SYNC POINT: Acquire (paired in the doc comment above); SeqCst
        // with the arrivals' bumps (module docs).
        let w = word.load(Ordering::SeqCst);
        let mark = (w >> 32) + 1;
        if !force && self.present_at.load(Ordering::Relaxed) == mark && !self.rescan_due() {
            return false;
        }
        if w & HAD[index(end)] == 0 || w & UNRECORDED[index(end)] != 0 {
            return false;
        }
        if peers.end_alive(self.lane, end) {
            self.present_at.store(mark, Ordering::Relaxed);
            self.present_since.store(now_nanos(), Ordering::Relaxed);
            return false;
        }
        // Nobody found: make sure no arrival slipped past the scan (module
        // docs, "A scan racing an arrival"). Remember only "present":
        // after anything else, the next call looks again at once.
        self.present_at.store(0, Ordering::Relaxed);
        if peers.end_alive(self.lane, end) {
            return false;
        }
        // SYNC POINT: SeqCst, as the load of `w` above.
        word.load(Ordering::SeqCst) & COUNTS == w & COUNTS
    }
}

/// How many skipped scans [`Ends::gone`] counts before it reads the
/// clock to see whether a rescan is due: a `try_` loop on an empty queue
/// pays a plain load and store per call, and a clock read per this many.
pub(crate) const RESCAN_EVERY: u64 = 64;

impl Ends {
    /// Counts one skipped scan; every [`RESCAN_EVERY`], whether the last
    /// scan that found the other end present is an owner check interval
    /// old (then [`Ends::gone`] scans again).
    #[inline]
    fn rescan_due(&self) -> bool {
        // Relaxed load and store, not an RMW: handle-local bookkeeping.
        let n = self.skipped.load(Ordering::Relaxed).wrapping_add(1);
        self.skipped.store(n, Ordering::Relaxed);
        if n % RESCAN_EVERY != 0 {
            return false;
        }
        let since = self.present_since.load(Ordering::Relaxed);
        now_nanos().saturating_sub(since) >= OWNER_CHECK_INTERVAL.as_nanos() as u64
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
fn now_nanos() -> u64 {
    crate::sys::futex::Deadline::now().as_nanos()
}

/// Whether a scan could find `end` gone now: it was recorded once and
/// every handle of it was (the cheap part of [`Ends::gone`], read from
/// the queue's word alone). For a waiter's periodic wake, which makes a
/// scan only where one can find something; a hint (Relaxed), which the
/// next wake reads again.
#[cfg(not(loom))]
pub(crate) fn judgeable(word: &AtomicU64, end: End) -> bool {
    let w = word.load(Ordering::Relaxed);
    w & HAD[index(end)] != 0 && w & UNRECORDED[index(end)] == 0
}

/// Wakes the sleepers of the other side of each end a dropping handle held:
/// receivers (`not_empty`) for a sender, senders (`not_full`) for a
/// receiver, so that they look at the ends at once.
pub(crate) fn wake_others(
    held: [bool; 2],
    not_empty: &super::wait::Signal,
    not_full: &super::wait::Signal,
) {
    if held[index(End::Sender)] {
        not_empty.notify();
    }
    if held[index(End::Receiver)] {
        not_full.notify();
    }
}
