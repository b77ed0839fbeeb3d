//! Sole handles: one side of a [`ByteQueue`] held by one handle for its
//! whole life ([`ByteQueue::sole_sender`], [`ByteQueue::sole_receiver`]).
//!
//! ```
//! use shmipc_core::bytes::{ByteQueue, BytesConfig};
//!
//! #[repr(C, align(128))]
//! struct Bytes([u8; 4096]);
//! let mut mem = Bytes([0; 4096]);
//! let q = ByteQueue::new_in(&mut mem.0, BytesConfig::new(2048, 512)).unwrap();
//!
//! let mut tx = q.sole_sender().unwrap();
//! // While `tx` lives, every other sender waits (a `try_` send: Full).
//! assert!(q.try_send(b"shared").is_err());
//! tx.send(b"one").unwrap();
//! tx.send(b"two").unwrap();
//!
//! // Shared receivers read what a sole sender sent, and the other way round.
//! let mut buf = [0u8; 512];
//! assert_eq!(q.recv_into(&mut buf), Ok(3));
//! let mut rx = q.sole_receiver().unwrap();
//! let n = rx.recv_into(&mut buf).unwrap();
//! assert_eq!(&buf[..n], b"two");
//! ```
//!
//! # What is promised
//!
//! A sole handle takes its side's lock once, when it is made, and keeps
//! it until it is dropped, so that no other handle of that side (shared
//! or sole, in any process) runs a critical section meanwhile: the other
//! senders (receivers) wait for the lock, or report `Full` (`Empty`) from
//! a `try_` call. Messages, errors, closing, deadlines and wake-ups are
//! those of the shared calls; handles of the two kinds mix freely across
//! the two sides. With the section open for good, a message costs no lock
//! and no commit:
//!
//! - **A sole send** checks the room as a reservation does (reclaiming
//!   lazily, as there), copies the payload in beyond `tail`, writes the
//!   record's `READY` header there (the record is never `PENDING`, and no
//!   owner word is needed), and then publishes the new `tail` with a plain
//!   Release store: no locked instruction (see "Closing" below). Where the
//!   kernel offers no process-wide barrier (or under loom and Miri), it
//!   publishes with a compare-and-swap from the value it read instead, as
//!   a shared reservation does.
//! - **A sole receive** looks at the record at `read` as a peek does
//!   (stepping over skips, and at an owner check over dead writers),
//!   copies the payload out, stores `FREED` in the header, and then stores
//!   the new `read`: two Release stores, no locked instruction.
//!
//! # Closing
//!
//! A sole sender made in a process registered for `membarrier` (the
//! queue registers on attach) is *light*: it marks the side (`light`) for
//! its life, and each send stores its token in `busy`, looks at `closing`,
//! then stores `tail`, clears `busy` and looks at `closing` once more.
//! [`ByteQueue::close`] marks `closing`, runs the process-wide barrier,
//! and sets `CLOSED` only if `busy` then reads 0; a sender it found busy
//! sets the bit itself right after its store. The proof is in the module
//! docs of [`super`], "Closing". What a send racing a close returns is as
//! for a shared send: `Ok` if its look came before the close (the message
//! is received before `Closed`), `Closed` if not (nobody receives it).
//! The price is the close's: one `membarrier` call (tens of
//! microseconds) while a light sole sender holds the side.
//!
//! # Crashes
//!
//! The receive takes effect at its `read` store. A sole receiver that dies
//! before it has not received the message (its call never returned it):
//! the next reader delivers it again, whether the header still reads
//! `READY` or already `FREED`. That is sound because writers reclaim only
//! records *below* `read` (the reclaim walks `head` up to the `read` it
//! acquired), so the bytes of the record at `read` are never reused while
//! it is there; a claim that finds `FREED` at `read` (which no live reader
//! leaves: a shared claim advances `read` before the release) writes
//! `READY` back and claims it as usual. A message held in a
//! [`SoleReadGrant`] when its holder dies is likewise delivered again (at
//! least once), where a shared [`ReadGrant`](super::ReadGrant) held by a
//! dead reader is lost (at most once).
//!
//! A sole sender that dies before its `tail` store (or compare-and-swap)
//! sent nothing (what it wrote beyond `tail` is never read); after it, the
//! message is sent and `READY`. One that dies between marking `busy` and
//! clearing it leaves the mark; a later close takes the side over from
//! it (the writers' lock, as below) to set `CLOSED`, and every takeover
//! clears the marks. Either way the lock it held is taken over
//! by the next locker of the side (shared call or new sole handle) within
//! an owner-check interval, which re-validates the positions as after any
//! death inside a section.
//!
//! A counting handle ([`SoleSender::counting`]) counts a message after
//! the store that makes its send (receive) take effect: `tail` (`read`).
//! A holder that dies between the two leaves that one message uncounted,
//! so [`ByteQueue::messages_sent_minus_taken`] is off by at most one per
//! such death (low after a sender's, high after a receiver's). A receiver
//! that dies before its `read` store counted nothing, and the message is
//! delivered, and counted, again.
//!
//! # Fork
//!
//! A forked child inherits a copy of its parent's sole handles (their
//! memory: a `fork` closure may capture them) but not the side's locks,
//! which name the parent's thread. Were the copies to work, parent and
//! child would write beyond the same `tail`, or take the same record, with
//! no lock between them. So each handle keeps the fork generation it took
//! its lock in, and every send, receive, poll and take compares it with
//! the process's (one relaxed load): in a child they fail with
//! [`SendError::Corrupted`] / [`RecvError::Corrupted`] and touch nothing,
//! and a [`SoleReadGrant`] dropped there takes nothing. The child makes
//! sole handles of its own once the parent's are dropped.
//!
//! # The price
//!
//! The side is the handle's alone: a second sender (receiver) of the side
//! waits until the sole one is dropped, in any process, and a shared call
//! from the holding thread itself fails with `Corrupted` (the lock is its
//! own) rather than wait for ever. A receiver that dies holding a message
//! makes it be delivered twice (at least once, where the shared path is at
//! most once). The handles are not `Send`: the lock belongs to the thread
//! that made them.

use core::fmt;
use core::time::Duration;

use super::{encode, record_size, take, ByteQueue, Room, Wait, ALIGN, FREED, HEADER, READY};
use crate::futex::Deadline;
use crate::lock::{LockError, LockGuard};
use crate::peers::End;
use crate::queue::{block_checked, Keep, RecvError, SendError};
use crate::sync::{AtomicU64, Ordering};
use crate::sys::tid;

/// Why a sole handle could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoleError {
    /// The side's lock is held by another handle (a `try_` form), or the
    /// timeout passed while it was.
    Held,
    /// The calling thread already holds the side's lock (it has a sole
    /// handle of that side already).
    Deadlock,
    /// The side's state is inconsistent (hostile or garbled memory), or
    /// its lock was left not recoverable.
    Corrupted,
}

impl fmt::Display for SoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SoleError::Held => "the side's lock is held by another handle",
            SoleError::Deadlock => "this thread already holds the side's lock",
            SoleError::Corrupted => "the queue's state is corrupted",
        })
    }
}

impl core::error::Error for SoleError {}

impl From<LockError> for SoleError {
    fn from(e: LockError) -> SoleError {
        match e {
            LockError::WouldBlock | LockError::Timeout => SoleError::Held,
            LockError::Deadlock => SoleError::Deadlock,
            LockError::Unrecoverable => SoleError::Corrupted,
        }
    }
}

impl<'a, K> ByteQueue<'a, K> {
    /// The writers' side for this handle alone: takes the writers' lock
    /// (waiting for it, and taking it over from a holder that died) and
    /// keeps it until the [`SoleSender`] is dropped. Meanwhile every other
    /// send on the queue, from any handle, waits (or reports `Full`).
    /// Not `Send`: the lock belongs to the calling thread. A shared send
    /// from that same thread meanwhile finds the lock its own and fails
    /// with [`SendError::Corrupted`] rather than wait for ever.
    ///
    /// ```
    /// use shmipc_core::bytes::{ByteQueue, BytesConfig};
    ///
    /// #[repr(C, align(128))]
    /// struct Bytes([u8; 4096]);
    /// let mut mem = Bytes([0; 4096]);
    /// let q = ByteQueue::new_in(&mut mem.0, BytesConfig::new(2048, 512)).unwrap();
    ///
    /// let mut tx = q.sole_sender().unwrap();
    /// let mut rx = q.sole_receiver().unwrap();
    /// tx.send(b"hello").unwrap();
    /// let mut buf = [0u8; 512];
    /// let n = rx.recv_into(&mut buf).unwrap();
    /// assert_eq!(&buf[..n], b"hello");
    /// ```
    pub fn sole_sender(&self) -> Result<SoleSender<'_, 'a, K>, SoleError> {
        self.sole_sender_with(Wait::Until(None))
    }

    /// [`ByteQueue::sole_sender`] if the writers' lock is free now
    /// ([`SoleError::Held`] otherwise, also when its holder died: only a
    /// waiting call takes a lock over).
    pub fn try_sole_sender(&self) -> Result<SoleSender<'_, 'a, K>, SoleError> {
        self.sole_sender_with(Wait::Never)
    }

    /// [`ByteQueue::sole_sender`], waiting at most `timeout` for the lock.
    pub fn sole_sender_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SoleSender<'_, 'a, K>, SoleError> {
        self.sole_sender_with(Wait::Until(Some(&Deadline::after(timeout))))
    }

    fn sole_sender_with(&self, wait: Wait<'_>) -> Result<SoleSender<'_, 'a, K>, SoleError> {
        self.ends
            .note(End::Sender, &self.ctrl.lead.ends, self.peers);
        let mut guard = take(&self.ctrl.writer.lock, self.peers, wait)?;
        if guard.owner_died() {
            // As after any takeover (module docs of `bytes`, "Crashes"):
            // every state a dead writer leaves is consistent once the
            // positions check.
            self.clear_sole_marks();
            match self.writer_positions() {
                Ok(_) | Err(SendError::Closed) => guard.mark_consistent(),
                Err(_) => return Err(SoleError::Corrupted),
            }
        }
        // Light only where a close can fence us (module docs, "Closing").
        let light = super::light_possible();
        if light {
            // SYNC POINT: the swap and a SeqCst fence pair with `close`'s
            // store of `closing`, fence and load of `light`: a close that
            // read 0 there is seen by our first look at `closing`.
            self.ctrl.writer.light.swap(1, Ordering::SeqCst);
            crate::sync::fence(Ordering::SeqCst);
        }
        Ok(SoleSender {
            q: self,
            _guard: guard,
            forks: tid::fork_generation(),
            counting: false,
            light,
            me: u64::from(self.peers.me().raw()),
        })
    }

    /// The readers' side for this handle alone: takes the readers' lock
    /// (as [`ByteQueue::sole_sender`] takes the writers') and keeps it
    /// until the [`SoleReceiver`] is dropped.
    pub fn sole_receiver(&self) -> Result<SoleReceiver<'_, 'a, K>, SoleError> {
        self.sole_receiver_with(Wait::Until(None))
    }

    /// [`ByteQueue::sole_receiver`] if the readers' lock is free now.
    pub fn try_sole_receiver(&self) -> Result<SoleReceiver<'_, 'a, K>, SoleError> {
        self.sole_receiver_with(Wait::Never)
    }

    /// [`ByteQueue::sole_receiver`], waiting at most `timeout` for the lock.
    pub fn sole_receiver_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SoleReceiver<'_, 'a, K>, SoleError> {
        self.sole_receiver_with(Wait::Until(Some(&Deadline::after(timeout))))
    }

    fn sole_receiver_with(&self, wait: Wait<'_>) -> Result<SoleReceiver<'_, 'a, K>, SoleError> {
        self.ends
            .note(End::Receiver, &self.ctrl.lead.ends, self.peers);
        let mut guard = take(&self.ctrl.reader.lock, self.peers, wait)?;
        if guard.owner_died() {
            // A peek re-validates the positions (and gives a record a dead
            // sole receiver marked FREED at `read` back, see above).
            match self.claim_locked(Room::Peek, false) {
                Err(RecvError::Corrupted) => return Err(SoleError::Corrupted),
                _ => guard.mark_consistent(),
            }
        }
        Ok(SoleReceiver {
            q: self,
            _guard: guard,
            forks: tid::fork_generation(),
            counting: false,
        })
    }
}

/// Counts one message in a side's sole count (`sole_sent`, `sole_taken`):
/// a plain load and store, no locked instruction. Only the holder of the
/// side's lock for good writes the word (a layer's `count_sent` /
/// `count_taken`, which run outside the lock, keep words of their own),
/// and the lock orders one holder's last store before the next holder's
/// first load, so no count is lost (core/tests/loom_bytes.rs,
/// `sole_counts_do_not_lose_a_layers_count`). Relaxed, as `count_sent`: a
/// count publishes nothing. Wrapping: the word may hold anything a
/// hostile peer wrote.
#[inline]
fn bump(count: &AtomicU64) {
    count.store(
        count.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Whether a sole handle made in fork generation `forks` is in its own
/// process (module docs, "Fork").
#[inline]
fn forks_match(forks: u32) -> bool {
    // `fork_generation` ran when the handle was made, which installed the
    // fork handler: every later fork is counted.
    tid::fork_generation_seen() == forks
}

/// The writers' side of a [`ByteQueue`], held by this handle alone (see
/// [`ByteQueue::sole_sender`] and the [module docs](self)): a send is a
/// copy, a header store and a plain store of `tail` (a compare-and-swap
/// where the kernel has no process-wide barrier).
///
/// Errors, deadlines and wake-ups are those of the shared sends
/// ([`ByteQueue::send`] and its forms).
pub struct SoleSender<'q, 'a, K = Keep> {
    q: &'q ByteQueue<'a, K>,
    /// The writers' lock, held for the handle's life; makes the handle
    /// not `Send`.
    _guard: LockGuard<'q>,
    /// The fork generation the lock was taken in (module docs, "Fork").
    forks: u32,
    counting: bool,
    /// Whether sends publish `tail` with a plain store (module docs,
    /// "Closing").
    light: bool,
    /// Our token, for `busy`.
    me: u64,
}

impl<'q, 'a, K> SoleSender<'q, 'a, K> {
    /// The queue this handle sends to.
    pub fn queue(&self) -> &'q ByteQueue<'a, K> {
        self.q
    }

    /// Whether each successful send also counts the message for
    /// [`ByteQueue::messages_sent_minus_taken`] (as a layer calling
    /// [`ByteQueue::count_sent`] after each send would), in a word that
    /// only sole senders write: a plain load and store per send, no locked
    /// instruction. Off by default. A sole sender that dies right after a
    /// send may leave that message uncounted (module docs, "Crashes").
    pub fn counting(mut self, on: bool) -> Self {
        self.counting = on;
        self
    }

    /// Test support: whether this handle's sends publish `tail` with a
    /// plain store (module docs, "Closing"); where the kernel has no
    /// process-wide barrier, they make a compare-and-swap instead.
    #[doc(hidden)]
    pub fn is_light(&self) -> bool {
        self.light
    }

    /// Copies `msg` in as one message if there is room now; never sleeps.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.woken(msg, false)
    }

    /// Copies `msg` in, sleeping while the queue is full.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.send_until(msg, None)
    }

    /// Copies `msg` in, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), SendError> {
        match self.try_send(msg) {
            Err(SendError::Full) => self.send_until(msg, Some(&Deadline::after(timeout))),
            r => r,
        }
    }

    /// Copies `msg` in, waiting for room until `deadline` (forever if
    /// `None`).
    pub fn send_until(&mut self, msg: &[u8], deadline: Option<&Deadline>) -> Result<(), SendError> {
        match self.woken(msg, false) {
            Err(SendError::Full) => {}
            r => return r,
        }
        let q = self.q;
        block_checked(&q.ctrl.not_full, q.wait, deadline, |check| {
            match self.woken(msg, check) {
                Err(SendError::Full) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(SendError::Timeout))
    }

    /// One attempt; on a full queue, if sends fail without a receiver,
    /// the check that one is left (as `ByteQueue::reserve_woken`).
    fn woken(&mut self, msg: &[u8], check: bool) -> Result<(), SendError> {
        let q = self.q;
        match self.put(msg, check, || {}) {
            Err(SendError::Full)
                if q.ends.fail_sends
                    && q.ends
                        .gone(End::Receiver, &q.ctrl.lead.ends, q.peers, check) =>
            {
                Err(SendError::Disconnected)
            }
            r => r,
        }
    }

    /// Test support: [`SoleSender::try_send`] that runs `pause` after the
    /// record (payload and `READY` header) is written beyond `tail` and
    /// before `tail` is published, so that a test can kill the process
    /// there.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn try_send_pausing(&mut self, msg: &[u8], pause: impl FnOnce()) -> Result<(), SendError> {
        self.put(msg, false, pause)
    }

    /// The send: room, record, `tail`. Under the writers' lock, which we
    /// hold for good.
    #[inline]
    fn put(&mut self, msg: &[u8], check: bool, pause: impl FnOnce()) -> Result<(), SendError> {
        let q = self.q;
        if !forks_match(self.forks) {
            return Err(SendError::Corrupted);
        }
        let len = msg.len() as u64;
        if len > q.max {
            return Err(SendError::TooLarge);
        }
        let w = &q.ctrl.writer;
        let super::Space { tail, pos, size } = q.space_locked(len, check)?;
        // As in `try_reserve_inner`: under Miri, overwrite every word of
        // the record body whole before the byte copies.
        #[cfg(miri)]
        for k in 0..(size - HEADER) / 8 {
            // SAFETY: inside the record, beyond `tail`: ours alone.
            unsafe { q.ring.write(pos + HEADER + 8 * k, &[0; 8]) };
        }
        let tail_pad = size - HEADER - len;
        debug_assert!(tail_pad < ALIGN);
        // SAFETY: the record lies beyond the published `tail` and inside
        // the room just checked (not crossing the end of the ring): no
        // reader looks at it and no other writer runs (we hold the lock).
        unsafe {
            q.ring.write(pos + HEADER, msg);
            q.ring
                .write(pos + HEADER + len, &[0; 16][..tail_pad as usize]);
        }
        q.ring
            .header(pos)
            .store(encode(pos, READY, len), Ordering::Relaxed);
        if self.light {
            // Module docs, "Closing". Mark ourselves busy, then look at
            // `closing`: a close whose barrier came after our look finds
            // `busy` set (or our `tail` stored), and one before it is seen.
            w.busy.store(self.me, Ordering::Relaxed);
            super::light_fence();
            if w.closing.load(Ordering::Relaxed) != 0 {
                // SYNC POINT: Release, as below.
                w.busy.store(0, Ordering::Release);
                // We hold the side and publish nothing: finish the close.
                q.set_closed();
                return Err(SendError::Closed);
            }
            pause();
            // SYNC POINT: Release pairs with the Acquire load of `tail` in
            // [`ByteQueue::claim_locked`]: a reader that sees the new tail
            // sees the record written above.
            w.tail.store(pos + size, Ordering::Release);
            // SYNC POINT: Release pairs with the Acquire load of `busy` in
            // `finish_close`: whoever reads 0 reads our `tail`.
            w.busy.store(0, Ordering::Release);
            super::light_fence();
            // A close that found us busy left the bit to us; this look
            // comes after its barrier, so it sees the close.
            if w.closing.load(Ordering::Relaxed) != 0 {
                q.set_closed();
            }
        } else {
            pause();
            // Sent once `tail` moves; not at all if a close came first
            // ([`ByteQueue::publish_tail`]).
            q.publish_tail(tail, pos + size)?;
        }
        if self.counting {
            bump(&w.sole_sent);
        }
        q.ctrl.not_empty.notify_light();
        Ok(())
    }
}

impl<K> Drop for SoleSender<'_, '_, K> {
    fn drop(&mut self) {
        if !self.light || !forks_match(self.forks) {
            return;
        }
        let w = &self.q.ctrl.writer;
        // A close that got no barrier from the kernel waits for us to let
        // go of the side (module docs, "Closing"): finish it. Holding the
        // side, with no send in progress, setting the bit is safe.
        if w.closing.load(Ordering::Acquire) != 0 {
            self.q.set_closed();
        }
        // SYNC POINT: SeqCst, as the other accesses of `light`.
        w.light.store(0, Ordering::SeqCst);
    }
}

impl<K> fmt::Debug for SoleSender<'_, '_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoleSender").field("queue", self.q).finish()
    }
}

/// The readers' side of a [`ByteQueue`], held by this handle alone (see
/// [`ByteQueue::sole_receiver`] and the [module docs](self)): a receive
/// is a copy and two Release stores.
///
/// Errors, deadlines and wake-ups are those of the shared receives
/// ([`ByteQueue::recv`] and its forms).
pub struct SoleReceiver<'q, 'a, K = Keep> {
    q: &'q ByteQueue<'a, K>,
    /// The readers' lock, held for the handle's life.
    _guard: LockGuard<'q>,
    /// The fork generation the lock was taken in (module docs, "Fork").
    forks: u32,
    counting: bool,
}

impl<'q, 'a, K> SoleReceiver<'q, 'a, K> {
    /// The queue this handle receives from.
    pub fn queue(&self) -> &'q ByteQueue<'a, K> {
        self.q
    }

    /// Whether each message taken is also counted for
    /// [`ByteQueue::messages_sent_minus_taken`] (as
    /// [`ByteQueue::count_taken`] would), in a word of its own as in
    /// [`SoleSender::counting`]: a plain load and store per receive. Off
    /// by default. A sole receiver that dies right after a receive may
    /// leave that message uncounted (module docs, "Crashes").
    pub fn counting(mut self, on: bool) -> Self {
        self.counting = on;
        self
    }

    /// Borrows the next message if one is ready now; never sleeps.
    /// Dropping the grant takes the message (see [`SoleReadGrant`]).
    pub fn try_recv(&mut self) -> Result<SoleReadGrant<'_, 'q, 'a, K>, RecvError> {
        let c = self.woken(None, false)?;
        Ok(self.grant(c))
    }

    /// Borrows the next message, sleeping while there is none.
    pub fn recv(&mut self) -> Result<SoleReadGrant<'_, 'q, 'a, K>, RecvError> {
        self.recv_until(None)
    }

    /// Borrows the next message, waiting at most `timeout`.
    pub fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<SoleReadGrant<'_, 'q, 'a, K>, RecvError> {
        let c = self.look_for(None, Some(timeout), None)?;
        Ok(self.grant(c))
    }

    /// Borrows the next message, waiting until `deadline` (forever if
    /// `None`).
    pub fn recv_until(
        &mut self,
        deadline: Option<&Deadline>,
    ) -> Result<SoleReadGrant<'_, 'q, 'a, K>, RecvError> {
        let c = self.look_for(None, None, deadline)?;
        Ok(self.grant(c))
    }

    /// Copies the next message into `buf` if one is ready now; returns its
    /// length. A message longer than `buf` stays in the queue
    /// ([`RecvError::BufferTooSmall`]).
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let c = self.woken(Some(buf.len()), false)?;
        Ok(self.copy_out(c, buf, || {}))
    }

    /// Copies the next message into `buf`, sleeping while there is none.
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_into_until(buf, None)
    }

    /// Copies the next message into `buf`, waiting at most `timeout`.
    pub fn recv_into_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, RecvError> {
        let c = self.look_for(Some(buf.len()), Some(timeout), None)?;
        Ok(self.copy_out(c, buf, || {}))
    }

    /// Copies the next message into `buf`, waiting until `deadline`
    /// (forever if `None`).
    pub fn recv_into_until(
        &mut self,
        buf: &mut [u8],
        deadline: Option<&Deadline>,
    ) -> Result<usize, RecvError> {
        let c = self.look_for(Some(buf.len()), None, deadline)?;
        Ok(self.copy_out(c, buf, || {}))
    }

    /// The length of the next message if one is ready now, without taking
    /// it.
    pub fn try_poll(&mut self) -> Result<usize, RecvError> {
        self.woken(None, false).map(|(_, len)| len as usize)
    }

    /// Test support: [`SoleReceiver::try_recv_into`] that runs `pause`
    /// between the record's `FREED` store and the store of `read`, so that
    /// a test can kill the process there.
    #[cfg(any(test, feature = "fault-injection"))]
    #[doc(hidden)]
    pub fn try_recv_into_pausing(
        &mut self,
        buf: &mut [u8],
        pause: impl FnOnce(),
    ) -> Result<usize, RecvError> {
        let c = self.woken(Some(buf.len()), false)?;
        Ok(self.copy_out(c, buf, pause))
    }

    /// Waits for the next message as the shared calls do: at once, then
    /// (if empty) until the deadline, which `timeout` sets from now.
    fn look_for(
        &mut self,
        room: Option<usize>,
        timeout: Option<Duration>,
        deadline: Option<&Deadline>,
    ) -> Result<(u64, u64), RecvError> {
        match self.woken(room, false) {
            Err(RecvError::Empty) => {}
            r => return r,
        }
        let after;
        let deadline = match timeout {
            Some(t) => {
                after = Deadline::after(t);
                Some(&after)
            }
            None => deadline,
        };
        let q = self.q;
        block_checked(&q.ctrl.not_empty, q.wait, deadline, |check| {
            match self.woken(room, check) {
                Err(RecvError::Empty) => None,
                r => Some(r),
            }
        })
        .unwrap_or(Err(RecvError::Timeout))
    }

    /// One look (as `ByteQueue::claim_woken`): on an empty queue whose
    /// senders are all gone, one more look past dead writers, then
    /// [`RecvError::Disconnected`].
    fn woken(&mut self, room: Option<usize>, check: bool) -> Result<(u64, u64), RecvError> {
        let q = self.q;
        match self.look(room, check) {
            Err(RecvError::Empty)
                if q.ends.gone(End::Sender, &q.ctrl.lead.ends, q.peers, check) =>
            {
                match self.look(room, true) {
                    Err(RecvError::Empty) => Err(RecvError::Disconnected),
                    r => r,
                }
            }
            r => r,
        }
    }

    /// Under the readers' lock, which we hold for good: the next message
    /// at `read`, not yet taken (a peek, which steps over skip records and
    /// with `check` over dead writers' ones).
    #[inline]
    fn look(&mut self, room: Option<usize>, check: bool) -> Result<(u64, u64), RecvError> {
        if !forks_match(self.forks) {
            return Err(RecvError::Corrupted);
        }
        let (pos, len) = self.q.claim_locked(Room::Peek, check)?;
        match room {
            Some(room) if len > room as u64 => Err(RecvError::BufferTooSmall(len as usize)),
            _ => Ok((pos, len)),
        }
    }

    fn grant(&mut self, (pos, len): (u64, u64)) -> SoleReadGrant<'_, 'q, 'a, K> {
        SoleReadGrant {
            rx: self,
            pos,
            len: len as usize,
        }
    }

    fn copy_out(&mut self, (pos, len): (u64, u64), buf: &mut [u8], pause: impl FnOnce()) -> usize {
        let n = len as usize;
        // SAFETY: the record at `read`, `READY` and checked to lie inside
        // the ring by `claim_locked`; no writer reuses it before `read`
        // passes it, which only we can make happen. `n <= buf.len()` was
        // checked by `look`.
        unsafe { self.q.ring.read(pos + super::HEADER, &mut buf[..n]) };
        self.take_at(pos, len, pause);
        n
    }

    /// Takes the message at `pos` (= `read`), whose bytes are read out:
    /// `FREED`, then `read` past it.
    #[inline]
    fn take_at(&mut self, pos: u64, len: u64, pause: impl FnOnce()) {
        if !forks_match(self.forks) {
            // A grant dropped in a forked child (moved into the child's
            // closure): the message is not taken there (module docs, "Fork").
            return;
        }
        let q = self.q;
        let r = &q.ctrl.reader;
        // SYNC POINT: Release pairs with the Acquire header load in
        // [`ByteQueue::record`] (via [`ByteQueue::reclaim`]): our copy out
        // is finished before a writer reuses the bytes.
        q.ring
            .header(pos)
            .store(encode(pos, FREED, len), Ordering::Release);
        pause();
        // SYNC POINT: Release pairs with the Acquire load of `read` in
        // [`ByteQueue::reclaim`]: a writer that sees the new `read` sees
        // the `FREED` header above.
        r.read.store(pos + record_size(len), Ordering::Release);
        if self.counting {
            bump(&r.sole_taken);
        }
        q.ctrl.not_full.notify_light();
    }
}

impl<K> fmt::Debug for SoleReceiver<'_, '_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoleReceiver")
            .field("queue", self.q)
            .finish()
    }
}

/// A message at the read position of a [`SoleReceiver`]'s queue. Read it
/// with [`read_at`](SoleReadGrant::read_at) or
/// [`copy_to`](SoleReadGrant::copy_to); dropping the grant takes the
/// message. If the process dies while it holds the grant, the message is
/// not taken: the next reader gets it (module docs).
#[must_use = "dropping a grant takes the message unread"]
pub struct SoleReadGrant<'r, 'q, 'a, K = Keep> {
    rx: &'r mut SoleReceiver<'q, 'a, K>,
    pos: u64,
    len: usize,
}

impl<K> SoleReadGrant<'_, '_, '_, K> {
    /// The message's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `dst.len()` bytes of the message from `offset` into `dst`.
    pub fn read_at(&self, offset: usize, dst: &mut [u8]) -> Result<(), super::OutOfBounds> {
        match offset.checked_add(dst.len()) {
            Some(end) if end <= self.len => {}
            _ => return Err(super::OutOfBounds),
        }
        // SAFETY: inside the record at `read`, which only our receiver can
        // move past (see `SoleReceiver::copy_out`).
        unsafe { self.rx.q.ring.read(self.pos + HEADER + offset as u64, dst) };
        Ok(())
    }

    /// Copies as much of the message as fits into `dst`; returns how much.
    pub fn copy_to(&self, dst: &mut [u8]) -> usize {
        let n = self.len.min(dst.len());
        // SAFETY: the first n bytes of the record, as in `read_at`.
        unsafe { self.rx.q.ring.read(self.pos + HEADER, &mut dst[..n]) };
        n
    }

    /// A raw pointer to the message's first byte, for reading in place
    /// (see [`ReadGrant::as_ptr`](super::ReadGrant::as_ptr)).
    #[cfg(not(loom))]
    pub fn as_ptr(&self) -> *const u8 {
        self.rx.q.ring.ptr(self.pos + HEADER)
    }

    /// Takes the message (the same as dropping the grant).
    pub fn release(self) {}
}

impl<K> Drop for SoleReadGrant<'_, '_, '_, K> {
    fn drop(&mut self) {
        self.rx.take_at(self.pos, self.len as u64, || {});
    }
}

impl<K> fmt::Debug for SoleReadGrant<'_, '_, '_, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoleReadGrant")
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::tests::{buf, check, make};
    use super::super::ByteQueue;
    use super::*;
    use crate::BytesConfig;

    #[test]
    fn sole_handles_deliver_in_order_across_wraps_and_skips() {
        let cfg = BytesConfig::new(256, 100);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut tx = q.sole_sender().unwrap();
        let mut rx = q.sole_receiver().unwrap();
        let mut out = [0u8; 100];
        let n = if cfg!(miri) { 60 } else { 2000 };
        let (mut sent, mut got) = (0u64, 0u64);
        while got < n {
            // Fill until Full (lengths vary, so records wrap with skips),
            // then drain a few, alternating between copy and grant forms.
            while sent < n {
                match tx.try_send(&make(sent, 8 + (sent as usize * 13) % 93)) {
                    Ok(()) => sent += 1,
                    Err(SendError::Full) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            for _ in 0..3 {
                let id = if got % 2 == 0 {
                    match rx.try_recv_into(&mut out) {
                        Ok(len) => check(&out[..len]),
                        Err(RecvError::Empty) => break,
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    match rx.try_recv() {
                        Ok(g) => {
                            let len = g.copy_to(&mut out);
                            assert_eq!(len, g.len());
                            check(&out[..len])
                        }
                        Err(RecvError::Empty) => break,
                        Err(e) => panic!("{e}"),
                    }
                };
                assert_eq!(id, got);
                got += 1;
            }
        }
        assert_eq!(rx.try_recv_into(&mut out), Err(RecvError::Empty));
        assert!(q.is_empty());
    }

    #[test]
    fn sole_and_shared_handles_mix() {
        let cfg = BytesConfig::new(512, 64);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut out = [0u8; 64];
        {
            let mut tx = q.sole_sender().unwrap();
            for i in 0..5 {
                tx.send(&make(i, 20)).unwrap();
            }
            // Other senders are kept out while the sole one lives.
            std::thread::scope(|s| {
                s.spawn(|| {
                    assert_eq!(q.try_send(b"shared"), Err(SendError::Full));
                    assert_eq!(q.try_sole_sender().err(), Some(SoleError::Held));
                });
            });
            // Shared receivers read what a sole sender sent.
            let g = q.try_recv().unwrap();
            let n = g.copy_to(&mut out);
            g.release_checked().unwrap();
            assert_eq!(check(&out[..n]), 0);
        }
        // Dropped: the side is free again.
        q.send(&make(5, 30)).unwrap();
        let mut rx = q.sole_receiver().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(q.try_recv().err(), Some(RecvError::Empty)));
        });
        for i in 1..6 {
            let n = rx.recv_into(&mut out).unwrap();
            assert_eq!(check(&out[..n]), i);
        }
        drop(rx);
        assert_eq!(q.try_recv().err(), Some(RecvError::Empty));
    }

    #[test]
    fn sole_errors_are_the_shared_ones() {
        let cfg = BytesConfig::new(128, 40);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut tx = q.sole_sender().unwrap();
        let mut rx = q.sole_receiver().unwrap();
        // The same thread cannot take a side twice.
        assert_eq!(q.sole_sender().err(), Some(SoleError::Deadlock));
        assert_eq!(tx.try_send(&[0; 41]), Err(SendError::TooLarge));
        let mut out = [0u8; 40];
        assert_eq!(rx.try_recv_into(&mut out), Err(RecvError::Empty));
        assert_eq!(
            rx.recv_into_timeout(&mut out, Duration::from_millis(5)),
            Err(RecvError::Timeout)
        );
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(5)).err(),
            Some(RecvError::Timeout)
        );
        tx.send_timeout(&[1; 40], Duration::MAX).unwrap();
        tx.send(&[2; 40]).unwrap();
        assert_eq!(tx.try_send(&[3; 40]), Err(SendError::Full));
        assert_eq!(
            tx.send_timeout(&[3; 40], Duration::from_millis(5)),
            Err(SendError::Timeout)
        );
        // Too long for the buffer: the message stays.
        assert_eq!(
            rx.try_recv_into(&mut out[..10]),
            Err(RecvError::BufferTooSmall(40))
        );
        assert_eq!(rx.try_poll(), Ok(40));
        assert_eq!(rx.recv_into_timeout(&mut out, Duration::MAX), Ok(40));
        assert_eq!(out, [1; 40]);
        // Closing: what was sent before is received, then Closed.
        q.close();
        assert_eq!(tx.try_send(&[4; 8]), Err(SendError::Closed));
        assert_eq!(tx.send(&[4; 8]), Err(SendError::Closed));
        let g = rx.recv().unwrap();
        let mut o = [0u8; 40];
        g.read_at(0, &mut o).unwrap();
        assert_eq!(g.read_at(1, &mut o), Err(super::super::OutOfBounds));
        g.release();
        assert_eq!(o, [2; 40]);
        assert_eq!(rx.recv_into(&mut out), Err(RecvError::Closed));
        assert_eq!(rx.try_recv().err(), Some(RecvError::Closed));
    }

    #[test]
    fn sole_handles_count_when_asked() {
        let cfg = BytesConfig::new(512, 64);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let mut tx = q.sole_sender().unwrap().counting(true);
        let mut rx = q.sole_receiver().unwrap().counting(true);
        for _ in 0..3 {
            tx.send(b"x").unwrap();
        }
        assert_eq!(q.messages_sent_minus_taken(), 3);
        rx.recv().unwrap().release();
        let mut out = [0u8; 8];
        rx.recv_into(&mut out).unwrap();
        assert_eq!(q.messages_sent_minus_taken(), 1);
        // Not counting: the count stays.
        let mut rx = rx.counting(false);
        rx.recv_into(&mut out).unwrap();
        assert_eq!(q.messages_sent_minus_taken(), 1);
        drop((tx, rx));
        // The next sole handles go on from the last ones' counts, and a
        // layer's counts of shared calls add in.
        q.send(b"y").unwrap();
        q.count_sent();
        q.sole_sender().unwrap().counting(true).send(b"z").unwrap();
        assert_eq!(q.messages_sent_minus_taken(), 3);
        let mut rx = q.sole_receiver().unwrap().counting(true);
        rx.recv_into(&mut out).unwrap();
        drop(rx);
        q.recv_into(&mut out).unwrap();
        q.count_taken();
        assert_eq!(q.messages_sent_minus_taken(), 1);
    }

    #[test]
    fn sleepers_are_woken_across_sole_and_shared_handles() {
        let cfg = BytesConfig::new(128, 40);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        let q = &q;
        // A shared receiver asleep is woken by a sole sender.
        std::thread::scope(|s| {
            let h = s.spawn(|| q.recv_timeout(Duration::from_secs(30)).map(|g| g.len()));
            while q.ctrl.not_empty.sleepers() == 0 {
                std::thread::yield_now();
            }
            q.sole_sender().unwrap().send(&[7; 33]).unwrap();
            assert_eq!(h.join().unwrap(), Ok(33));
        });
        // A sole receiver asleep is woken by a shared sender.
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let mut out = [0u8; 40];
                q.sole_receiver()
                    .unwrap()
                    .recv_into_timeout(&mut out, Duration::from_secs(30))
            });
            while q.ctrl.not_empty.sleepers() == 0 {
                std::thread::yield_now();
            }
            q.send(&[8; 12]).unwrap();
            assert_eq!(h.join().unwrap(), Ok(12));
        });
        // A sole sender asleep on a full ring is woken by a shared receive,
        // and a shared sender waiting for the side's lock gets it when the
        // sole sender is dropped.
        let mut full = 0;
        while q.try_send(&[1; 40]).is_ok() {
            full += 1;
        }
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                q.sole_sender()
                    .unwrap()
                    .send_timeout(&[3; 40], Duration::from_secs(30))
            });
            while q.ctrl.not_full.sleepers() == 0 {
                std::thread::yield_now();
            }
            let mut out = [0u8; 40];
            assert_eq!(q.recv_into(&mut out), Ok(40));
            assert_eq!(h.join().unwrap(), Ok(()));
        });
        // A sole receiver asleep is woken by close.
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let mut rx = q.sole_receiver().unwrap();
                let mut out = [0u8; 40];
                let mut n = 0;
                loop {
                    match rx.recv_into_timeout(&mut out, Duration::from_secs(30)) {
                        Ok(_) => n += 1,
                        Err(e) => return (n, e),
                    }
                }
            });
            while q.ctrl.not_empty.sleepers() == 0 {
                std::thread::yield_now();
            }
            q.close();
            assert_eq!(h.join().unwrap(), (full, RecvError::Closed));
        });
    }

    /// A receive cut off between its `FREED` store and its `read` store
    /// (here by a panic, which releases the lock as a takeover would find
    /// it): the message was not taken, and the next reader, shared or
    /// sole, gets it whole; nothing is Corrupted, and writers do not reuse
    /// its bytes meanwhile.
    #[test]
    fn a_receive_cut_off_before_read_advances_is_delivered_again() {
        extern crate std;
        use std::panic::{catch_unwind, AssertUnwindSafe};
        let cfg = BytesConfig::new(256, 64);
        let mut b = buf(cfg);
        let q = ByteQueue::new_in(b.bytes(), cfg).unwrap();
        for i in 0..3 {
            q.send(&make(i, 50)).unwrap();
        }
        let mut out = [0u8; 64];
        for next in [false, true] {
            let cut = catch_unwind(AssertUnwindSafe(|| {
                let mut rx = q.sole_receiver().unwrap();
                let _ = rx.try_recv_into_pausing(&mut out, || panic!("cut off"));
            }));
            assert!(cut.is_err());
            // Writers fill what room there is: none of it is that record's.
            while q.try_send(&make(99, 60)).is_ok() {}
            let id = if next {
                let n = q.sole_receiver().unwrap().try_recv_into(&mut out).unwrap();
                check(&out[..n])
            } else {
                let g = q.try_recv().unwrap();
                let n = g.copy_to(&mut out);
                g.release_checked().unwrap();
                check(&out[..n])
            };
            assert_eq!(id, u64::from(next));
        }
        // A send cut off before `tail` is published sent nothing.
        let mut rx = q.sole_receiver().unwrap();
        while rx.try_recv_into(&mut out).is_ok() {}
        let cut = catch_unwind(AssertUnwindSafe(|| {
            let mut tx = q.sole_sender().unwrap();
            let _ = tx.try_send_pausing(&make(7, 10), || panic!("cut off"));
        }));
        assert!(cut.is_err());
        assert_eq!(rx.try_recv_into(&mut out), Err(RecvError::Empty));
        q.sole_sender().unwrap().send(&make(8, 10)).unwrap();
        let n = rx.try_recv_into(&mut out).unwrap();
        assert_eq!(check(&out[..n]), 8);
    }
}
