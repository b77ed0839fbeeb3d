//! The queues while a hostile peer writes into their memory: control
//! block, sequence numbers, record headers, payload — anywhere (see
//! [`Hostile::write`]) — between operations, and from a second thread
//! while they run.
//!
//! The first input byte picks the queue (and item type) in its low bits
//! and a mode in two more:
//!
//! - **concurrent** (`0b01` of the mode): the input supplies a script of
//!   hostile writes that a second thread works through, over and over,
//!   while the operations run ([`Hostile::run`]; in the stable replay
//!   tests it makes one write between operations instead, so that a
//!   replay is deterministic).
//! - **payload only** (`0b10`): every hostile write, the script's and the
//!   ones between operations, goes to bytes that hold items or message
//!   payload (found by filling the queue, [`Hostile::payload_only`]).
//!   Then the queue must behave exactly like a plain model in everything
//!   but the items' contents: every `Ok`, `Full`, `Empty`, `Closed`,
//!   `Timeout`, `TooLarge` and `BufferTooSmall`, every count, length and
//!   re-attach. A queue that ever reads a position, length or state out of
//!   its payload fails this.
//!
//! Mode 0 (all committed seeds from before the modes) is the original
//! target: writes between operations, anywhere. Once control words may be
//! hit, only the weaker promises for hostile memory hold, and they are
//! checked in every mode: every call returns (blocking calls use tiny
//! deadlines, and the byte queue's `_until` variants, so that a lock word
//! left "held" costs a tiny wait), nothing panics, nothing is read or
//! written outside the queue's bytes (AddressSanitizer under the fuzzer, a
//! guard area in the replay tests), and the numbers a handle reports stay
//! within what its own trusted geometry allows.

use shmipc_core::bytes::{ByteQueue, BytesConfig, ReadGrant, WriteGrant};
use shmipc_core::mpmc::Mpmc;
use shmipc_core::spsc::Spsc;
use shmipc_core::{Deadline, PopError, PushError, RecvError, RingConfig, SendError};

use crate::support::{
    byte_queue_buf, byte_queue_handles, AlignedBuf, Elem, Hostile, Input, MAX_OPS,
};

/// The mode bits of the first byte.
const CONCURRENT: u8 = 0b01;
const PAYLOAD_ONLY: u8 = 0b10;

/// An item made of the byte `m` only.
fn filled<T: Elem>(m: u8) -> T {
    let mut t = T::zeroed();
    bytemuck::bytes_of_mut(&mut t).fill(m);
    t
}

/// The script of a concurrent writer: up to 128 bytes of the input.
fn script<'a>(input: &mut Input<'a>, mode: u8) -> &'a [u8] {
    if mode & CONCURRENT == 0 {
        return &[];
    }
    let n = 4 + input.below(125);
    input.bytes(n)
}

/// The SPSC ring or the MPMC queue (the first byte's low three bits
/// choose, and the item type; the next two the mode) under hostile writes.
pub fn ring_hostile(data: &[u8]) {
    let mut input = Input::new(data);
    let first = input.u8();
    let mode = (first >> 3) & 3;
    match first % 8 {
        0 => spsc::<u64>(&mut input, mode),
        1 => spsc::<u8>(&mut input, mode),
        2 => spsc::<u16>(&mut input, mode),
        3 => spsc::<[u32; 3]>(&mut input, mode),
        4 => mpmc::<u64>(&mut input, mode),
        5 => mpmc::<u8>(&mut input, mode),
        6 => mpmc::<u16>(&mut input, mode),
        _ => mpmc::<[u32; 3]>(&mut input, mode),
    }
}

/// The count-only model of a slot queue whose payload alone is hostile.
struct Counts {
    cap: usize,
    len: usize,
    closed: bool,
}

impl Counts {
    /// An empty, open queue of `cap` items.
    fn new(cap: usize) -> Counts {
        Counts {
            cap,
            len: 0,
            closed: false,
        }
    }

    fn push(&self, blocking: bool) -> Result<(), PushError> {
        if self.closed {
            Err(PushError::Closed)
        } else if self.len == self.cap {
            Err(if blocking {
                PushError::Timeout
            } else {
                PushError::Full
            })
        } else {
            Ok(())
        }
    }

    fn pop(&self, blocking: bool) -> Result<(), PopError> {
        if self.len > 0 {
            Ok(())
        } else if self.closed {
            Err(PopError::Closed)
        } else if blocking {
            Err(PopError::Timeout)
        } else {
            Err(PopError::Empty)
        }
    }
}

impl Counts {
    /// In payload-only mode (`model`), checks a push's result and counts
    /// it.
    fn pushed(&mut self, model: bool, blocking: bool, got: Result<(), PushError>) {
        if model {
            assert_eq!(got, self.push(blocking), "push");
            self.len += got.is_ok() as usize;
        }
    }

    /// In payload-only mode (`model`), checks a pop's result and counts it.
    fn popped<T>(&mut self, model: bool, blocking: bool, got: Result<T, PopError>) {
        if model {
            let got = got.map(|_| ());
            assert_eq!(got, self.pop(blocking), "pop");
            self.len -= got.is_ok() as usize;
        }
    }

    /// Checks a handle's `(len, is_empty, is_full, is_closed)`: within its
    /// own capacity `own_cap` always, and (payload-only mode) the model's.
    fn check_state(&self, model: bool, own_cap: usize, state: (usize, bool, bool, bool)) {
        assert!(state.0 <= own_cap);
        if model {
            let c = self;
            assert_eq!(state, (c.len, c.len == 0, c.len == c.cap, c.closed));
        }
    }

    /// What is left comes out of `try_pop`, then the queue is empty (or
    /// closed).
    fn drain<T>(&mut self, mut try_pop: impl FnMut() -> Result<T, PopError>) {
        for _ in 0..self.len {
            assert!(try_pop().is_ok(), "drain");
        }
        self.len = 0;
        assert_eq!(try_pop().map(|_| ()), self.pop(false), "drained");
    }
}

/// Payload-only mode: finds where a fresh slot queue of `cap` items keeps
/// its items, by filling it with `push` and emptying it with `pop`.
fn find_payload<T: Elem>(
    hostile: &mut Hostile,
    cap: usize,
    mut push: impl FnMut(T) -> Result<(), PushError>,
    mut pop: impl FnMut() -> Result<T, PopError>,
) {
    let found = hostile.payload_only(|m, snap| {
        for _ in 0..cap {
            push(filled(m)).expect("fill a fresh queue");
        }
        snap();
        for _ in 0..cap {
            assert_eq!(pop(), Ok(filled(m)), "empty it again");
        }
    });
    assert!(found, "items have payload bytes");
}

/// Checks that a re-attached handle of capacity `attached` fits the bytes
/// (`layout` of its capacity, at most `len`), and in payload-only mode
/// (`model`) that it found the capacity `cap` made.
fn check_attached(
    attached: Option<usize>,
    layout: impl FnOnce(usize) -> Option<usize>,
    len: usize,
    model: bool,
    cap: usize,
) {
    if let Some(c) = attached {
        assert!(
            layout(c).is_some_and(|l| l <= len),
            "attached beyond the bytes"
        );
    }
    if model {
        assert_eq!(attached, Some(cap), "re-attach");
    }
}

fn spsc<T: Elem>(input: &mut Input<'_>, mode: u8) {
    let cap = 1usize << input.below(5);
    let config = RingConfig::new(cap);
    let layout = Spsc::<T>::layout(config).expect("a valid configuration");
    let buf = AlignedBuf::new(layout.size());
    let (ptr, len) = (buf.ptr(), buf.len());
    // SAFETY: `buf` outlives the handles (it is declared first); only they
    // and the hostile writer use it, one producer and one consumer.
    let (tx, rx) = unsafe { Spsc::<T>::init_at(ptr, len, config) }.expect("init");
    let (mut tx, mut rx) = (Some(tx), Some(rx));
    // SAFETY: `buf` outlives the writer too; nothing references its bytes.
    let mut hostile = unsafe { Hostile::new(ptr, len) };
    if mode & PAYLOAD_ONLY != 0 {
        let (t, r) = (tx.as_mut().unwrap(), rx.as_mut().unwrap());
        find_payload(&mut hostile, cap, |v| t.try_push(v), || r.try_pop());
    }
    let model = hostile.is_payload_only();
    let mut counts = Counts::new(cap);
    let script = script(input, mode);
    let mut counter = 0u64;

    hostile.run(script, |between| {
        for _ in 0..MAX_OPS {
            if input.is_empty() {
                break;
            }
            between();
            counter += 1;
            match input.u8() % 14 {
                0..=3 => hostile.write(input),
                op @ (4 | 5) => {
                    if let Some(tx) = &mut tx {
                        let got = if op == 4 {
                            tx.try_push(T::make(counter))
                        } else {
                            tx.push_timeout(T::make(counter), input.timeout())
                        };
                        counts.pushed(model, op == 5, got);
                    }
                }
                6 => {
                    let items: Vec<T> = (0..input.below(2 * cap + 2))
                        .map(|i| T::make(counter + i as u64))
                        .collect();
                    if let Some(tx) = &mut tx {
                        let got = tx.push_slice(&items);
                        if let Ok(n) = got {
                            assert!(n <= items.len());
                        }
                        if model {
                            let want = match counts.push(false) {
                                Err(PushError::Full) if items.is_empty() => Ok(0),
                                Err(e) => Err(e),
                                Ok(()) => Ok(items.len().min(cap - counts.len)),
                            };
                            assert_eq!(got, want, "push_slice of {}", items.len());
                            counts.len += got.unwrap_or(0);
                        }
                    }
                }
                op @ (7 | 8) => {
                    if let Some(rx) = &mut rx {
                        let got = if op == 7 {
                            rx.try_pop()
                        } else {
                            rx.pop_timeout(input.timeout())
                        };
                        counts.popped(model, op == 8, got);
                    }
                }
                9 => {
                    let mut out = vec![T::zeroed(); input.below(2 * cap + 2)];
                    if let Some(rx) = &mut rx {
                        let got = rx.pop_slice(&mut out);
                        if let Ok(n) = got {
                            assert!(n <= out.len());
                        }
                        if model {
                            let want = match counts.pop(false) {
                                _ if out.is_empty() => Ok(0),
                                Err(e) => Err(e),
                                Ok(()) => Ok(out.len().min(counts.len)),
                            };
                            assert_eq!(got, want, "pop_slice of {}", out.len());
                            counts.len -= got.unwrap_or(0);
                        }
                    }
                }
                10 => {
                    // A re-attached handle may have found a smaller queue
                    // that a hostile header describes: its own capacity is
                    // the bound.
                    if let Some(tx) = &tx {
                        let state = (tx.len(), tx.is_empty(), tx.is_full(), tx.is_closed());
                        counts.check_state(model, tx.capacity(), state);
                        tx.close();
                        counts.closed = true;
                    }
                }
                11 => {
                    if let Some(rx) = &rx {
                        let state = (rx.len(), rx.is_empty(), rx.is_full(), rx.is_closed());
                        counts.check_state(model, rx.capacity(), state);
                        let _ = format!("{rx:?}");
                    }
                }
                12 => {
                    let _ = tx.take();
                    // SAFETY: as for init_at; the old producer is gone.
                    tx = unsafe { Spsc::<T>::attach_producer(ptr, len) }.ok();
                    let c = tx.as_ref().map(|t| t.capacity());
                    check_attached(c, spsc_size::<T>, len, model, cap);
                }
                _ => {
                    let _ = rx.take();
                    // SAFETY: as for init_at; the old consumer is gone.
                    rx = unsafe { Spsc::<T>::attach_consumer(ptr, len) }.ok();
                    let c = rx.as_ref().map(|r| r.capacity());
                    check_attached(c, spsc_size::<T>, len, model, cap);
                }
            }
        }
    });
    if model {
        let rx = rx.as_mut().expect("the consumer re-attached");
        counts.drain(|| rx.try_pop());
    }
}

/// The bytes an SPSC ring of `cap` items of `T` takes, if that is a
/// valid capacity.
fn spsc_size<T: Elem>(cap: usize) -> Option<usize> {
    Spsc::<T>::layout(RingConfig::new(cap))
        .ok()
        .map(|l| l.size())
}

fn mpmc<T: Elem>(input: &mut Input<'_>, mode: u8) {
    let cap = 2usize << input.below(5);
    let config = RingConfig::new(cap);
    let layout = Mpmc::<T>::layout(config).expect("a valid configuration");
    let buf = AlignedBuf::new(layout.size());
    let (ptr, len) = (buf.ptr(), buf.len());
    // SAFETY: `buf` outlives every handle (it is declared first); only they
    // and the hostile writer use it.
    let q = unsafe { Mpmc::<T>::init_at(ptr, len, config) }.expect("init");
    // SAFETY: `buf` outlives the writer too; nothing references its bytes.
    let mut hostile = unsafe { Hostile::new(ptr, len) };
    if mode & PAYLOAD_ONLY != 0 {
        find_payload(&mut hostile, cap, |v| q.try_push(v), || q.try_pop());
    }
    let model = hostile.is_payload_only();
    let mut counts = Counts::new(cap);
    let script = script(input, mode);
    let mut handles = vec![q];
    let mut counter = 0u64;

    hostile.run(script, |between| {
        for _ in 0..MAX_OPS {
            if input.is_empty() {
                break;
            }
            between();
            counter += 1;
            let op = input.u8();
            let pick = (op as usize >> 4) % handles.len();
            let h = &handles[pick];
            match op % 10 {
                0..=3 => hostile.write(input),
                k @ (4 | 5) => {
                    let got = if k == 4 {
                        h.try_push(T::make(counter))
                    } else {
                        h.push_timeout(T::make(counter), input.timeout())
                    };
                    counts.pushed(model, k == 5, got);
                }
                k @ (6 | 7) => {
                    let got = if k == 6 {
                        h.try_pop()
                    } else {
                        h.pop_timeout(input.timeout())
                    };
                    counts.popped(model, k == 7, got);
                }
                8 => {
                    let state = (h.len(), h.is_empty(), h.is_full(), h.is_closed());
                    counts.check_state(model, h.capacity(), state);
                    let _ = format!("{h:?}");
                    if op & 0x80 != 0 {
                        h.close();
                        counts.closed = true;
                    }
                }
                _ => {
                    // SAFETY: as for init_at.
                    let attached = unsafe { Mpmc::<T>::attach(ptr, len) };
                    let c = attached.as_ref().map(|h| h.capacity()).ok();
                    let size = |c| Mpmc::<T>::layout(RingConfig::new(c)).ok().map(|l| l.size());
                    check_attached(c, size, len, model, cap);
                    if let Ok(h) = attached {
                        if handles.len() < 4 {
                            handles.push(h);
                        } else {
                            handles[pick] = h;
                        }
                    }
                }
            }
        }
    });
    if model {
        counts.drain(|| handles[0].try_pop());
    }
}

/// The byte queue under hostile writes, with grants held across them (the
/// first byte's low two bits choose the capacity, the next two the mode).
///
/// In payload-only mode every message has one length, chosen so that its
/// record's size divides the capacity: records then sit at fixed places,
/// no skip record is ever needed, and the model is a count of messages
/// against `capacity / record size`. Reserving is followed at once by a
/// commit and grants are not held across operations, so the model stays a
/// count; other modes hold up to four grants of each kind across hostile
/// writes, and cancel some.
pub fn bytes_hostile(data: &[u8]) {
    let mut input = Input::new(data);
    let first = input.u8();
    let mode = (first >> 2) & 3;
    let cap = 64usize << (first % 4);
    let max = input.below(cap / 2 - 16 + 1);
    let config = BytesConfig::new(cap, max);
    // `buf` outlives every handle and grant (it is declared first).
    let buf = byte_queue_buf(config);
    let (ptr, len) = (buf.ptr(), buf.len());
    let handles = byte_queue_handles(&buf, config);
    // SAFETY: `buf` outlives the writer too; nothing references its bytes.
    let mut hostile = unsafe { Hostile::new(ptr, len) };

    // Payload-only mode: one message length, whose record size (measured,
    // not assumed) divides the capacity.
    let mut fixed = None;
    if mode & PAYLOAD_ONLY != 0 {
        let q = &handles[0];
        let want = input.below(max + 1);
        q.try_send(&vec![0; want]).expect("a first message");
        let record = q.used_bytes();
        assert_eq!(q.try_recv_into(&mut vec![0; want]), Ok(want));
        if record > 0 && cap % record == 0 {
            let room = cap / record;
            let found = hostile.payload_only(|m, snap| {
                for _ in 0..room {
                    q.try_send(&vec![m; want]).expect("fill the queue");
                }
                assert_eq!(q.try_send(&vec![m; want]), Err(SendError::Full));
                assert_eq!(q.used_bytes(), cap);
                snap();
                for _ in 0..room {
                    let mut out = vec![0; want];
                    assert_eq!(q.try_recv_into(&mut out), Ok(want));
                    assert!(out.iter().all(|&b| b == m), "what was sent");
                }
            });
            if found {
                fixed = Some((want, record, room));
            }
        }
    }
    let (mut queued, mut closed) = (0usize, false);
    let script = script(&mut input, mode);
    let mut writes: Vec<WriteGrant<'_, '_>> = Vec::new();
    let mut reads: Vec<ReadGrant<'_, '_>> = Vec::new();

    hostile.run(script, |between| {
        for _ in 0..MAX_OPS {
            if input.is_empty() {
                break;
            }
            between();
            let op = input.u8();
            let q = &handles[(op as usize >> 4) % handles.len()];
            let deadline = Deadline::after(input.timeout());
            // The model's answer to a send of `n` bytes.
            let send = |n: usize, queued: usize| -> Result<(), SendError> {
                match fixed {
                    _ if n > max => Err(SendError::TooLarge),
                    _ if closed => Err(SendError::Closed),
                    Some((_, _, room)) if queued == room => Err(SendError::Timeout),
                    _ => Ok(()),
                }
            };
            let recv = |queued: usize| -> Result<(), RecvError> {
                if queued > 0 {
                    Ok(())
                } else if closed {
                    Err(RecvError::Closed)
                } else {
                    Err(RecvError::Timeout)
                }
            };
            // A message length: the fixed one, now and then one too long.
            let msg_len = |input: &mut Input<'_>| match fixed {
                Some((n, ..)) if input.u8() % 16 != 0 => n,
                Some(_) => max + 1,
                None => input.below(max + 2),
            };
            match op % 12 {
                0..=3 => hostile.write(&mut input),
                4 => {
                    let msg = vec![op; msg_len(&mut input)];
                    let got = q.send_until(&msg, Some(&deadline));
                    if fixed.is_some() {
                        assert_eq!(got, send(msg.len(), queued), "send of {}", msg.len());
                        queued += got.is_ok() as usize;
                    }
                }
                5 if fixed.is_some() || writes.len() < 4 => {
                    let n = msg_len(&mut input);
                    let got = q.reserve_until(n, Some(&deadline));
                    if fixed.is_some() {
                        assert_eq!(got.as_ref().map(|_| ()).map_err(|e| *e), send(n, queued));
                    }
                    if let Ok(mut g) = got {
                        assert!(g.len() <= max);
                        let n = g.len();
                        g.write_at(0, &vec![op; n]).expect("write within the grant");
                        if fixed.is_none() {
                            writes.push(g);
                        } else {
                            // (A cancel would leave a skip record that
                            // takes room until a reader passes it.)
                            g.commit();
                            queued += 1;
                        }
                    }
                }
                6 if !writes.is_empty() => {
                    let g = writes.swap_remove(input.below(writes.len()));
                    if op & 0x80 != 0 {
                        g.commit();
                    }
                }
                7 => {
                    let got = q.recv_until(Some(&deadline));
                    if let Some((n, ..)) = fixed {
                        assert_eq!(got.as_ref().map(|_| ()).map_err(|e| *e), recv(queued));
                        assert!(got.as_ref().map_or(true, |g| g.len() == n), "length");
                        queued -= got.is_ok() as usize;
                    }
                    if let Ok(g) = got {
                        assert!(g.len() <= max, "a message longer than the queue allows");
                        let mut all = vec![0; g.len()];
                        g.read_at(0, &mut all).expect("read within the grant");
                        if fixed.is_none() && reads.len() < 4 && op & 0x80 != 0 {
                            reads.push(g);
                        }
                    }
                }
                8 if !reads.is_empty() => {
                    reads.swap_remove(input.below(reads.len())).release();
                }
                9 => {
                    let mut out = vec![0; input.below(max + 2)];
                    let got = q.recv_into_until(&mut out, Some(&deadline));
                    match got {
                        Ok(n) => assert!(n <= out.len() && n <= max),
                        Err(RecvError::BufferTooSmall(n)) => assert!(n > out.len() && n <= max),
                        Err(_) => {}
                    }
                    if let Some((n, ..)) = fixed {
                        let want = match recv(queued) {
                            Ok(()) if out.len() < n => Err(RecvError::BufferTooSmall(n)),
                            Ok(()) => Ok(n),
                            Err(e) => Err(e),
                        };
                        assert_eq!(got, want, "recv_into of {}", out.len());
                        queued -= got.is_ok() as usize;
                    }
                }
                10 => {
                    assert!(q.used_bytes() <= cap);
                    assert_eq!((q.capacity(), q.max_message()), (cap, max));
                    let state = (q.is_empty(), q.is_closed());
                    if let Some((_, record, _)) = fixed {
                        // As of the last reservation: what was received
                        // since still counts.
                        assert!(q.used_bytes() >= queued * record, "used bytes");
                        assert_eq!(state, (queued == 0, closed));
                    }
                    let _ = format!("{q:?}");
                    if op & 0x80 != 0 {
                        q.close();
                        closed = true;
                    }
                }
                _ => {
                    // SAFETY: as for init_at; the handle is dropped at once.
                    let attached = unsafe { ByteQueue::attach(ptr, len) };
                    if fixed.is_some() {
                        let geometry = attached.as_ref().map(|h| (h.capacity(), h.max_message()));
                        assert_eq!(geometry.ok(), Some((cap, max)), "re-attach");
                    }
                    if let Ok(h) = attached {
                        let l = ByteQueue::layout(BytesConfig::new(h.capacity(), h.max_message()));
                        assert!(
                            l.is_ok_and(|l| l.size() <= len),
                            "attached beyond the bytes"
                        );
                    }
                }
            }
        }
        // Grants go back (cancelled or released) while the memory is
        // hostile.
        reads.clear();
        writes.clear();
    });
    if let Some((n, ..)) = fixed {
        let q = &handles[0];
        for _ in 0..queued {
            assert_eq!(q.try_recv_into(&mut vec![0; n]), Ok(n), "drain");
        }
        let end = if closed {
            RecvError::Closed
        } else {
            RecvError::Empty
        };
        assert_eq!(q.try_recv_into(&mut vec![0; n]).err(), Some(end), "drained");
    }
}
