//! A duplex message channel with two ends, like Python's
//! `multiprocessing.Pipe()`: two byte rings in one segment.

use std::alloc::Layout;
use std::fmt;
use std::time::Duration;

use shmipc_core::bytes::ByteQueue as CoreByteQueue;
use shmipc_core::{
    BytesConfig, End, QueueError, ReadGrant, RecvError, SendError, Token, WaitStrategy, WriteGrant,
};

use super::roles::{release_role, Roles, ROLES_SIZE};
use super::{check_bytes, object, take_vec};
use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout, Options};
use crate::named::{open_memory, Named};

/// Which end of a [`Pipe`]: A (made by [`Pipe::create`]) or B (claimed by
/// [`Pipe::open`]). A sends on ring 0 and receives on ring 1; B the other
/// way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The creator's end.
    A,
    /// The opener's end.
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    fn role(self) -> &'static str {
        match self {
            Side::A => "pipe end A",
            Side::B => "pipe end B",
        }
    }

    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// A duplex channel of byte messages between two processes, in one
/// segment: Python's `multiprocessing.Pipe()`.
///
/// The segment holds a role block and two byte rings, one per direction.
/// Each end is claimed by one process at a time, like the roles of an
/// [`SpscQueue`](crate::SpscQueue): [`Pipe::create`] makes the segment and
/// returns end A, [`Pipe::open`] claims end B, and a third claimant gets
/// [`Error::RoleTaken`]. Dropping a [`PipeEnd`] gives its end back and
/// ends the stream: the other end, once it has received everything, gets
/// [`RecvError::Disconnected`] (as when the holder dies or is killed), and
/// its sends that would block get [`SendError::Disconnected`]; the rings
/// stay open, and an end given back, or whose holder died, can be claimed
/// again.
///
/// [`Pipe::anon`] makes both ends at once in an anonymous mapping, for a
/// parent and the child it forks. A pipe is made and found through
/// [`Named`], like every object; `Pipe` names the type for that, and what
/// each constructor returns is a [`PipeEnd`] (the same type).
///
/// ```
/// use shmipc::{BytesConfig, Named, Pipe, Unlinker};
/// use std::time::Duration;
///
/// let names = Unlinker::new("doc-pipe");
/// let name = names.name("chat");
/// let a = Pipe::create(&name, BytesConfig::for_max_message(4096).unwrap())?;
/// let b = Pipe::open(&name)?;                        // e.g. in another process
/// assert!(Pipe::open(&name).is_err());               // two ends only
///
/// a.send(b"ping")?;
/// assert!(b.poll(Duration::from_secs(1)));
/// assert_eq!(b.recv_vec()?, b"ping");
/// b.send(b"pong")?;
/// let mut buf = [0u8; 4096];
/// let n = a.recv_into(&mut buf)?;
/// assert_eq!(&buf[..n], b"pong");
///
/// a.close();                                         // b drains, then gets Closed
/// assert!(b.recv_vec().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Pipe = PipeEnd;

impl Named for PipeEnd {
    const KIND: Kind = Kind::PIPE;
    /// Both directions carry messages of up to `max_message` bytes.
    type Config<'a> = BytesConfig;
    /// Both ends, unclaimed: keep one, fork, and use the other in the
    /// child (and drop it in the parent).
    type Anon = (PipeEnd, PipeEnd);

    fn layout(config: &BytesConfig) -> std::result::Result<ObjectLayout, shmipc_core::LayoutError> {
        let (whole, _) = Self::layouts(*config)?;
        Ok(ObjectLayout::new(Self::KIND, whole, config.to_words()))
    }

    unsafe fn init(
        ptr: *mut u8,
        len: usize,
        config: BytesConfig,
    ) -> std::result::Result<(), QueueError> {
        let (whole, offsets) = Self::layouts(config)?;
        shmipc_core::place::check(ptr, len, whole.size(), whole.align())?;
        let ring = (whole.size() - ROLES_SIZE) / 2;
        // SAFETY: the role block is the first ROLES_SIZE bytes (in bounds,
        // checked), ours alone (contract).
        unsafe { Roles::init(ptr) };
        for off in offsets {
            // SAFETY: each ring lies inside the checked length; init_at
            // checks its size and alignment. The handles own nothing.
            unsafe { CoreByteQueue::init_at(ptr.add(off), ring, config) }.map(drop)?;
        }
        Ok(())
    }

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        check_bytes(name, header, "the pipe's parameters are invalid", |c| {
            Self::layouts(c).map(|(whole, _)| whole)
        })
    }

    /// The creator takes end A, an opener end B.
    fn attach(memory: Mapping, created: bool) -> Result<Self> {
        let side = if created { Side::A } else { Side::B };
        PipeEnd::claim(memory, side, true)
    }

    fn attach_anon(memory: Mapping) -> Result<Self::Anon> {
        Ok((
            PipeEnd::claim(memory.clone(), Side::A, false)?,
            PipeEnd::claim(memory, Side::B, false)?,
        ))
    }
}

impl PipeEnd {
    /// The object layout (role block, ring 0, ring 1) and the offset of
    /// each ring.
    fn layouts(
        config: BytesConfig,
    ) -> std::result::Result<(Layout, [usize; 2]), shmipc_core::LayoutError> {
        let ring = CoreByteQueue::layout(config)?;
        let bad = || {
            shmipc_core::LayoutError::parameter(
                "capacity",
                config.capacity as u64,
                shmipc_core::Rule::Text("makes the pipe larger than the address space"),
            )
        };
        let second = ROLES_SIZE.checked_add(ring.size()).ok_or_else(bad)?;
        let size = second.checked_add(ring.size()).ok_or_else(bad)?;
        let whole =
            Layout::from_size_align(size, ring.align().max(ROLES_SIZE)).map_err(|_| bad())?;
        Ok((whole, [ROLES_SIZE, second]))
    }

    /// Opens the pipe segment `name` and claims the given end (end A again,
    /// say, after its creator gave it up).
    pub fn open_end(name: &str, side: Side, opts: &Options) -> Result<PipeEnd> {
        let memory = open_memory::<Self>(name, opts)?;
        PipeEnd::claim(memory, side, true)
    }
}

/// One end of a [`Pipe`]: sends messages to the other end and receives
/// the other end's. Every method takes `&self`.
pub struct PipeEnd {
    // Declared (so dropped) before the memory they point into.
    tx: CoreByteQueue<'static>,
    rx: CoreByteQueue<'static>,
    side: Side,
    claim: Option<Token>,
    memory: Mapping,
}

impl PipeEnd {
    /// Claims `side` of the pipe in `memory` (if `claim`) and attaches its
    /// two rings.
    fn claim(memory: Mapping, side: Side, claim: bool) -> Result<PipeEnd> {
        let label = memory.label().to_owned();
        let (base, len) = object(&memory, ROLES_SIZE)?;
        // The two rings have the same size: the object minus the role
        // block, halved (the header check made the size exact).
        let ring = (len - ROLES_SIZE) / 2;
        let claim = if claim {
            // SAFETY: the object starts with the role block (len checked),
            // mapped while `memory` lives, accessed only atomically.
            let roles = unsafe { Roles::at(base) };
            Some(roles.claim(side.index(), memory.presence(), &label, side.role())?)
        } else {
            None
        };
        let attach = |i: usize| {
            // SAFETY: ring `i` lies inside the object (offsets computed from
            // its length), mapped while the end's clone of the mapping lives,
            // and the end drops its rings first. The core checks each
            // control block against the length.
            unsafe { CoreByteQueue::attach(base.add(ROLES_SIZE + i * ring), ring) }
                .map_err(|e| Error::from_queue(&label, e))
        };
        let rings = attach(0).and_then(|r0| Ok((r0, attach(1)?)));
        let (r0, r1) = match rings {
            Ok(r) => r,
            Err(e) => {
                release_role(&memory, side.index(), claim);
                return Err(e);
            }
        };
        let (tx, rx) = match side {
            Side::A => (r0, r1),
            Side::B => (r1, r0),
        };
        // Each ring is a lane of the mapping's endpoint records: ring 0
        // carries A's sends, ring 1 B's. A send with nobody left to receive
        // is a broken pipe; a claimed end is known to the other at once,
        // an anonymous one (which a parent hands to the child it forks)
        // from its first send or receive.
        let (mut tx, mut rx) = (tx.fail_sends_without_receiver(true), rx);
        tx.set_lane(side.index() as u32);
        rx.set_lane(side.other().index() as u32);
        if claim.is_some() {
            tx.declare(End::Sender);
            rx.declare(End::Receiver);
        }
        Ok(PipeEnd {
            tx,
            rx,
            side,
            claim,
            memory,
        })
    }

    /// The ring this end sends on and the one it receives from, and the
    /// mapping they lie in (for `wait` and the async waiters).
    #[allow(dead_code)]
    pub(crate) fn rings(&self) -> (&CoreByteQueue<'static>, &CoreByteQueue<'static>, &Mapping) {
        (&self.tx, &self.rx, &self.memory)
    }

    /// Which end this is.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The segment's normalised name, or `None` for an anonymous pipe.
    pub fn name(&self) -> Option<&str> {
        self.memory.name()
    }

    /// The largest message either end may send.
    pub fn max_message(&self) -> usize {
        self.tx.max_message()
    }

    /// How this handle's blocking calls wait
    /// ([`WaitStrategy::DEFAULT`] until set).
    pub fn wait_strategy(&self) -> WaitStrategy {
        self.tx.wait_strategy()
    }

    /// Sets how this handle's blocking calls wait (see [`WaitStrategy`]);
    /// other handles of the same pipe (its sends and its receives alike) keep theirs.
    pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
        self.tx.set_wait_strategy(strategy);
        self.rx.set_wait_strategy(strategy);
    }

    /// Closes the pipe, both ways: sends from either end fail with
    /// [`SendError::Closed`], and each end receives what was already sent
    /// to it, then [`RecvError::Closed`] (Python's `EOFError`). Sleepers at
    /// both ends wake. Dropping an end (or its holder's death) does not
    /// close the rings, but the other end then sees end-of-stream:
    /// [`RecvError::Disconnected`] once drained.
    pub fn close(&self) {
        // Incoming first: a peer that sees our outgoing ring closed (its
        // receive reports Closed) then also finds its own sends refused.
        self.rx.close();
        self.tx.close();
    }

    /// Whether the pipe has been closed (by either end).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.rx.is_closed()
    }

    /// Sends `msg` to the other end if there is room now.
    pub fn try_send(&self, msg: &[u8]) -> std::result::Result<(), SendError> {
        self.tx.try_send(msg)
    }

    /// Sends `msg` to the other end, sleeping while its ring is full.
    pub fn send(&self, msg: &[u8]) -> std::result::Result<(), SendError> {
        self.tx.send(msg)
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    pub fn send_timeout(
        &self,
        msg: &[u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendError> {
        self.tx.send_timeout(msg, timeout)
    }

    /// Reserves room for a message of `len` bytes to fill in place, sleeping
    /// while the ring is full; [`commit`](WriteGrant::commit) sends it.
    pub fn reserve(&self, len: usize) -> std::result::Result<WriteGrant<'_, '_>, SendError> {
        self.tx.reserve(len)
    }

    /// Reserves room for `len` bytes, waiting at most `timeout`.
    pub fn reserve_timeout(
        &self,
        len: usize,
        timeout: Duration,
    ) -> std::result::Result<WriteGrant<'_, '_>, SendError> {
        self.tx.reserve_timeout(len, timeout)
    }

    /// Borrows the next message if one is ready now.
    pub fn try_recv(&self) -> std::result::Result<ReadGrant<'_, '_>, RecvError> {
        self.rx.try_recv()
    }

    /// Borrows the next message, sleeping while there is none.
    pub fn recv(&self) -> std::result::Result<ReadGrant<'_, '_>, RecvError> {
        self.rx.recv()
    }

    /// Borrows the next message, waiting at most `timeout`.
    pub fn recv_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ReadGrant<'_, '_>, RecvError> {
        self.rx.recv_timeout(timeout)
    }

    /// Copies the next message into `buf` if one is ready now; returns its
    /// length. A longer message stays ([`RecvError::BufferTooSmall`]).
    pub fn try_recv_into(&self, buf: &mut [u8]) -> std::result::Result<usize, RecvError> {
        self.rx.try_recv_into(buf)
    }

    /// Copies the next message into `buf`, sleeping while there is none.
    pub fn recv_into(&self, buf: &mut [u8]) -> std::result::Result<usize, RecvError> {
        self.rx.recv_into(buf)
    }

    /// Copies the next message into `buf`, waiting at most `timeout`.
    pub fn recv_into_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::result::Result<usize, RecvError> {
        self.rx.recv_into_timeout(buf, timeout)
    }

    /// Receives the next message into a new `Vec`, sleeping while there is
    /// none.
    pub fn recv_vec(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.rx.recv().and_then(take_vec)
    }

    /// Receives the next message into a new `Vec`, waiting at most
    /// `timeout`.
    pub fn recv_vec_timeout(&self, timeout: Duration) -> std::result::Result<Vec<u8>, RecvError> {
        self.rx.recv_timeout(timeout).and_then(take_vec)
    }

    /// Waits at most `timeout` until a receive would not block: a message
    /// is ready, or the pipe is closed and drained (then the receive
    /// reports [`RecvError::Closed`], as Python's `poll` is true at end of
    /// file), or the other end is gone and everything is received
    /// ([`RecvError::Disconnected`]; a zero timeout does not look for
    /// that). Takes nothing. A zero timeout just looks.
    pub fn poll(&self, timeout: Duration) -> bool {
        !matches!(
            self.rx.poll_timeout(timeout),
            Err(RecvError::Timeout | RecvError::Empty)
        )
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        release_role(&self.memory, self.side.index(), self.claim);
    }
}

impl fmt::Debug for PipeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipeEnd")
            .field("name", &self.name())
            .field("side", &self.side)
            .field("closed", &self.is_closed())
            .finish()
    }
}
