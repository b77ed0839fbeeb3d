//! Operation sequences on each queue, placed in a buffer and used by one
//! thread, checked after every step against a plain model: the exact FIFO
//! contents, and agreement on every `Full`, `Empty`, `Closed`, `Timeout`
//! and `TooLarge`.
//!
//! The first input byte picks the item type (and so the layout), the next
//! the capacity; every later byte chooses an operation or its argument.

use std::collections::VecDeque;

use shmipc_core::bytes::{ByteQueue, BytesConfig, OutOfBounds, ReadGrant, WriteGrant};
use shmipc_core::mpmc::Mpmc;
use shmipc_core::spsc::Spsc;
use shmipc_core::{PopError, PushError, QueueError, RecvError, RingConfig, SendError};

use crate::support::{byte_queue_buf, byte_queue_handles, AlignedBuf, Elem, Input, MAX_OPS};

/// The SPSC ring against a `VecDeque`.
pub fn spsc_ops(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 4 {
        0 => spsc::<u64>(&mut input),
        1 => spsc::<u8>(&mut input),
        2 => spsc::<u16>(&mut input),
        _ => spsc::<[u32; 3]>(&mut input),
    }
}

/// The MPMC queue, through several handles, against a `VecDeque`.
pub fn mpmc_ops(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 4 {
        0 => mpmc::<u64>(&mut input),
        1 => mpmc::<u8>(&mut input),
        2 => mpmc::<u16>(&mut input),
        _ => mpmc::<[u32; 3]>(&mut input),
    }
}

/// A queue attach that must fail because the bytes hold another queue.
fn incompatible<T>(r: Result<T, QueueError>) -> bool {
    matches!(r, Err(QueueError::Incompatible(_)))
}

/// Checks a push's result against the model (`op` 0 is a try, which
/// finds a full queue `Full`; 1 has a timeout, which finds it `Timeout`),
/// and records the item if it went in.
fn check_push<T: Elem>(
    model: &mut VecDeque<T>,
    cap: usize,
    closed: bool,
    op: u8,
    item: T,
    got: Result<(), PushError>,
) {
    let want = if closed {
        Err(PushError::Closed)
    } else if model.len() == cap {
        Err([PushError::Full, PushError::Timeout][op as usize])
    } else {
        Ok(())
    };
    assert_eq!(got, want, "push");
    if got.is_ok() {
        model.push_back(item);
    }
}

/// Checks a pop's result against the model (`op` as for [`check_push`]:
/// 0 finds an empty queue `Empty`, 1 `Timeout`), and takes the item out.
fn check_pop<T: Elem>(model: &mut VecDeque<T>, closed: bool, op: u8, got: Result<T, PopError>) {
    let want = match model.front() {
        Some(v) => Ok(*v),
        None if closed => Err(PopError::Closed),
        None => Err([PopError::Empty, PopError::Timeout][op as usize]),
    };
    assert_eq!(got, want, "pop");
    if got.is_ok() {
        model.pop_front();
    }
}

/// What is left comes out of `try_pop` in order, then the queue is empty
/// (or closed).
fn check_drain<T: Elem>(
    mut model: VecDeque<T>,
    closed: bool,
    mut try_pop: impl FnMut() -> Result<T, PopError>,
) {
    while let Some(v) = model.pop_front() {
        assert_eq!(try_pop(), Ok(v), "drain");
    }
    let end = if closed {
        PopError::Closed
    } else {
        PopError::Empty
    };
    assert_eq!(try_pop(), Err(end), "drained");
}

fn spsc<T: Elem>(input: &mut Input<'_>) {
    let cap = 1usize << input.below(7);
    let config = RingConfig::new(cap);
    let layout = Spsc::<T>::layout(config).expect("a valid configuration");
    let buf = AlignedBuf::new(layout.size());
    let (ptr, len) = (buf.ptr(), buf.len());
    // SAFETY: `buf` outlives the handles (it is declared first) and nothing
    // but them uses it; there is one producer and one consumer at a time.
    let (mut tx, mut rx) = unsafe { Spsc::<T>::init_at(ptr, len, config) }.expect("init");
    let mut model = VecDeque::new();
    let mut closed = false;
    let mut counter = 0u64;
    let mut next = move || {
        counter += 1;
        T::make(counter)
    };

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.u8() % 12 {
            op @ (0 | 1) => {
                let item = next();
                let got = if op == 0 {
                    tx.try_push(item)
                } else {
                    tx.push_timeout(item, input.timeout())
                };
                check_push(&mut model, cap, closed, op, item, got);
            }
            2 => {
                let items: Vec<T> = (0..input.below(2 * cap + 2)).map(|_| next()).collect();
                let free = cap - model.len();
                let want = if closed {
                    Err(PushError::Closed)
                } else if items.is_empty() {
                    Ok(0)
                } else if free == 0 {
                    Err(PushError::Full)
                } else {
                    Ok(items.len().min(free))
                };
                let got = tx.push_slice(&items);
                assert_eq!(got, want, "push_slice of {}", items.len());
                if let Ok(n) = got {
                    model.extend(&items[..n]);
                }
            }
            op @ (3 | 4) => {
                let got = if op == 3 {
                    rx.try_pop()
                } else {
                    rx.pop_timeout(input.timeout())
                };
                check_pop(&mut model, closed, op - 3, got);
            }
            5 => {
                let mut out = vec![T::zeroed(); input.below(2 * cap + 2)];
                let want = if out.is_empty() {
                    Ok(0)
                } else if !model.is_empty() {
                    Ok(out.len().min(model.len()))
                } else if closed {
                    Err(PopError::Closed)
                } else {
                    Err(PopError::Empty)
                };
                let got = rx.pop_slice(&mut out);
                assert_eq!(got, want, "pop_slice of {}", out.len());
                for v in &out[..got.unwrap_or(0)] {
                    assert_eq!(Some(*v), model.pop_front(), "pop_slice order");
                }
            }
            6 => {
                if input.u8() & 1 == 0 {
                    tx.close();
                } else {
                    rx.close();
                }
                closed = true;
            }
            7 => {
                assert_eq!((tx.capacity(), rx.capacity()), (cap, cap));
                for (len, empty, full, is_closed) in [
                    (tx.len(), tx.is_empty(), tx.is_full(), tx.is_closed()),
                    (rx.len(), rx.is_empty(), rx.is_full(), rx.is_closed()),
                ] {
                    assert_eq!(len, model.len(), "len");
                    assert_eq!(empty, model.is_empty(), "is_empty");
                    assert_eq!(full, model.len() == cap, "is_full");
                    assert_eq!(is_closed, closed, "is_closed");
                }
            }
            8 => {
                // A new producer takes over from the old one, which this
                // assignment discards unused.
                // SAFETY: as for init_at.
                tx = unsafe { Spsc::<T>::attach_producer(ptr, len) }.expect("attach_producer");
            }
            9 => {
                // SAFETY: as for init_at; the old consumer is discarded.
                rx = unsafe { Spsc::<T>::attach_consumer(ptr, len) }.expect("attach_consumer");
            }
            10 => {
                // Attaching as anything else fails (and creates no handle).
                // SAFETY: each call only reads the header, and fails.
                unsafe {
                    assert!(incompatible(Mpmc::<T>::attach(ptr, len)), "as MPMC");
                    assert!(incompatible(ByteQueue::attach(ptr, len)), "as bytes");
                    if size_of::<T>() == 1 {
                        assert!(incompatible(Spsc::<u16>::attach_consumer(ptr, len)));
                    } else {
                        assert!(incompatible(Spsc::<u8>::attach_consumer(ptr, len)));
                    }
                    assert!(matches!(
                        Spsc::<T>::attach_consumer(ptr, len - 1),
                        Err(QueueError::Layout(_))
                    ));
                }
            }
            _ => {
                let _ = format!("{tx:?} {rx:?}");
            }
        }
    }
    check_drain(model, closed, || rx.try_pop());
}

fn mpmc<T: Elem>(input: &mut Input<'_>) {
    let cap = 2usize << input.below(6);
    let config = RingConfig::new(cap);
    let layout = Mpmc::<T>::layout(config).expect("a valid configuration");
    let buf = AlignedBuf::new(layout.size());
    let (ptr, len) = (buf.ptr(), buf.len());
    // SAFETY: `buf` outlives every handle (it is declared first) and nothing
    // but them uses it.
    let q = unsafe { Mpmc::<T>::init_at(ptr, len, config) }.expect("init");
    let mut handles = vec![q];
    let mut model = VecDeque::new();
    let mut closed = false;
    let mut counter = 0u64;

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let pick = (op as usize >> 4) % handles.len();
        let h = &handles[pick];
        match op % 10 {
            op @ (0 | 1) => {
                counter += 1;
                let item = T::make(counter);
                let got = if op == 0 {
                    h.try_push(item)
                } else {
                    h.push_timeout(item, input.timeout())
                };
                check_push(&mut model, cap, closed, op, item, got);
            }
            op @ (2 | 3) => {
                let got = if op == 2 {
                    h.try_pop()
                } else {
                    h.pop_timeout(input.timeout())
                };
                check_pop(&mut model, closed, op - 2, got);
            }
            4 => {
                h.close();
                closed = true;
            }
            5 => {
                assert_eq!(h.capacity(), cap);
                assert_eq!(h.len(), model.len(), "len");
                assert_eq!(h.is_empty(), model.is_empty(), "is_empty");
                assert_eq!(h.is_full(), model.len() == cap, "is_full");
                assert_eq!(h.is_closed(), closed, "is_closed");
                let _ = format!("{h:?}");
            }
            6 if handles.len() < 4 => {
                let h = h.clone();
                handles.push(h);
            }
            7 if handles.len() < 4 => {
                // SAFETY: as for init_at.
                let h = unsafe { Mpmc::<T>::attach(ptr, len) }.expect("attach");
                handles.push(h);
            }
            8 if handles.len() > 1 => {
                handles.swap_remove(pick);
            }
            9 => {
                // SAFETY: each call only reads the header, and fails.
                unsafe {
                    assert!(
                        incompatible(Spsc::<T>::attach_consumer(ptr, len)),
                        "as SPSC"
                    );
                    assert!(incompatible(ByteQueue::attach(ptr, len)), "as bytes");
                    if size_of::<T>() == 1 {
                        assert!(incompatible(Mpmc::<u16>::attach(ptr, len)));
                    } else {
                        assert!(incompatible(Mpmc::<u8>::attach(ptr, len)));
                    }
                    assert!(matches!(
                        Mpmc::<T>::attach(ptr, len - 1),
                        Err(QueueError::Layout(_))
                    ));
                }
            }
            _ => {}
        }
    }
    check_drain(model, closed, || handles[0].try_pop());
}

// ---------------------------------------------------------------------------
// The byte queue
// ---------------------------------------------------------------------------

/// The bytes a record of `len` payload bytes occupies: a 16-byte header
/// (state and owner words) and the payload padded to 16 (the queue's
/// documented record format).
fn record_size(len: usize) -> u64 {
    16 + (len as u64).div_ceil(16) * 16
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reserved, not yet committed.
    Pending,
    /// Committed (or, with `skip`, padding or cancelled).
    Ready,
    /// Handed to a reader, not yet released.
    Claimed,
    /// Released by its reader.
    Freed,
}

#[derive(Debug)]
struct Record {
    pos: u64,
    size: u64,
    skip: bool,
    state: State,
    data: Vec<u8>,
}

/// The byte queue as documented in `core/src/queue/bytes.rs`, kept in plain
/// numbers: the positions `head <= read <= tail` and the records between
/// `head` and `tail`. It predicts exactly when the ring is full, which
/// depends on record sizes, skip records at the wrap, and which records are
/// still held.
struct BytesModel {
    cap: u64,
    max: usize,
    head: u64,
    read: u64,
    tail: u64,
    closed: bool,
    records: VecDeque<Record>,
}

impl BytesModel {
    fn record(&mut self, pos: u64) -> &mut Record {
        self.records
            .iter_mut()
            .find(|r| r.pos == pos)
            .expect("model: a record at this position")
    }

    /// Reserves a record for `len` bytes; returns its position.
    fn reserve(&mut self, len: usize) -> Result<u64, SendError> {
        if len > self.max {
            return Err(SendError::TooLarge);
        }
        if self.closed {
            return Err(SendError::Closed);
        }
        // Reclaim what readers are done with, up to the first held record:
        // lazily, only when less than two of the largest records are free.
        let lazy = self.cap - (self.tail - self.head) >= 2 * record_size(self.max);
        while !lazy && self.head < self.read {
            let r = &self.records[0];
            assert_eq!(r.pos, self.head, "model: records are contiguous");
            match r.state {
                State::Freed => {}
                State::Ready if r.skip => {}
                State::Claimed => break,
                s => panic!("model: a {s:?} record below the read position"),
            }
            self.head += r.size;
            self.records.pop_front();
        }
        let size = record_size(len);
        let room_to_end = self.cap - self.tail % self.cap;
        let pad = if size > room_to_end { room_to_end } else { 0 };
        if self.tail + pad + size - self.head > self.cap {
            return Err(SendError::Full);
        }
        if pad != 0 {
            self.records.push_back(Record {
                pos: self.tail,
                size: pad,
                skip: true,
                state: State::Ready,
                data: Vec::new(),
            });
        }
        let pos = self.tail + pad;
        self.records.push_back(Record {
            pos,
            size,
            skip: false,
            state: State::Pending,
            data: Vec::new(),
        });
        self.tail = pos + size;
        Ok(pos)
    }

    fn commit(&mut self, pos: u64, data: &[u8]) {
        let r = self.record(pos);
        assert_eq!(r.state, State::Pending);
        r.state = State::Ready;
        r.data = data.to_vec();
    }

    fn cancel(&mut self, pos: u64) {
        let r = self.record(pos);
        assert_eq!(r.state, State::Pending);
        r.state = State::Ready;
        r.skip = true;
    }

    /// Claims the next message (refusing one longer than `room`); returns
    /// its position and contents.
    fn claim(&mut self, room: Option<usize>) -> Result<(u64, Vec<u8>), RecvError> {
        let mut closed_seen = false;
        loop {
            if self.read == self.tail {
                if closed_seen || !self.closed {
                    return Err(if closed_seen {
                        RecvError::Closed
                    } else {
                        RecvError::Empty
                    });
                }
                closed_seen = true;
                continue;
            }
            let read = self.read;
            let r = self.record(read);
            match r.state {
                State::Pending => return Err(RecvError::Empty),
                State::Ready if r.skip => self.read += r.size,
                State::Ready => {
                    if room.is_some_and(|room| r.data.len() > room) {
                        return Err(RecvError::BufferTooSmall(r.data.len()));
                    }
                    r.state = State::Claimed;
                    let claim = (r.pos, r.data.clone());
                    self.read += r.size;
                    return Ok(claim);
                }
                s => panic!("model: a {s:?} record at the read position"),
            }
        }
    }

    fn release(&mut self, pos: u64) {
        let r = self.record(pos);
        assert_eq!(r.state, State::Claimed);
        r.state = State::Freed;
    }
}

/// Message `id` of `len` bytes: every byte depends on both, so a torn or
/// misplaced message shows.
fn message(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (id as u8)
                .wrapping_mul(31)
                .wrapping_add((i as u8).wrapping_mul(7))
                ^ (i >> 8) as u8
        })
        .collect()
}

/// Checks everything a read grant offers against the message it must hold.
fn check_read(g: &ReadGrant<'_, '_>, want: &[u8], input: &mut Input<'_>) {
    assert_eq!(g.len(), want.len(), "message length");
    assert_eq!(g.is_empty(), want.is_empty());
    let mut all = vec![0; want.len()];
    g.read_at(0, &mut all).expect("read the whole message");
    assert_eq!(all, want, "message contents");
    let off = input.below(want.len() + 1);
    let mut part = vec![0; input.below(want.len() + 2)];
    match g.read_at(off, &mut part) {
        Ok(()) => assert_eq!(part, want[off..off + part.len()]),
        Err(OutOfBounds) => assert!(off + part.len() > want.len()),
    }
    assert_eq!(g.read_at(usize::MAX, &mut [0]), Err(OutOfBounds));
    let mut short = vec![0; input.below(want.len() + 2)];
    let n = g.copy_to(&mut short);
    assert_eq!(n, short.len().min(want.len()));
    assert_eq!(short[..n], want[..n]);
}

/// The byte queue, through three handles and with grants held across
/// operations, against [`BytesModel`].
pub fn bytes_ops(data: &[u8]) {
    let mut input = Input::new(data);
    let cap = 64usize << input.below(5);
    let max = input.below(cap / 2 - 16 + 1);
    let config = BytesConfig::new(cap, max);
    // `buf` outlives every handle and grant (it is declared first).
    let buf = byte_queue_buf(config);
    let handles = byte_queue_handles(&buf, config);
    let mut model = BytesModel {
        cap: cap as u64,
        max,
        head: 0,
        read: 0,
        tail: 0,
        closed: false,
        records: VecDeque::new(),
    };
    let mut writes: Vec<(WriteGrant<'_, '_>, u64, Vec<u8>)> = Vec::new();
    let mut reads: Vec<(ReadGrant<'_, '_>, u64)> = Vec::new();
    let mut id = 0u64;

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let q = &handles[(op as usize >> 4) % handles.len()];
        match op % 12 {
            op @ (0 | 1) => {
                id += 1;
                let msg = message(id, input.below(max + 2));
                let want = match model.reserve(msg.len()) {
                    Err(SendError::Full) if op == 1 => Err(SendError::Timeout),
                    Err(e) => Err(e),
                    Ok(pos) => {
                        model.commit(pos, &msg);
                        Ok(())
                    }
                };
                let got = if op == 0 {
                    q.try_send(&msg)
                } else {
                    q.send_timeout(&msg, input.timeout())
                };
                assert_eq!(got, want, "send of {} bytes", msg.len());
            }
            2 if writes.len() < 8 => {
                id += 1;
                let msg = message(id, input.below(max + 2));
                let want = model.reserve(msg.len());
                match (q.try_reserve(msg.len()), want) {
                    (Ok(g), Ok(pos)) => {
                        assert_eq!(g.len(), msg.len());
                        assert_eq!(g.is_empty(), msg.is_empty());
                        writes.push((g, pos, msg));
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w, "reserve of {}", msg.len()),
                    (got, want) => panic!("reserve of {}: {got:?}, want {want:?}", msg.len()),
                }
            }
            3 if !writes.is_empty() => {
                let (mut g, pos, msg) = writes.remove(input.below(writes.len()));
                // Fill in two pieces; writes past the end are refused.
                let cut = input.below(msg.len() + 1);
                g.write_at(cut, &msg[cut..]).expect("write the tail");
                g.write_at(0, &msg[..cut]).expect("write the head");
                assert_eq!(g.write_at(msg.len(), &[0]), Err(OutOfBounds));
                assert_eq!(g.write_at(usize::MAX, &[0]), Err(OutOfBounds));
                g.commit();
                model.commit(pos, &msg);
            }
            4 if !writes.is_empty() => {
                let (g, pos, _) = writes.remove(input.below(writes.len()));
                drop(g);
                model.cancel(pos);
            }
            op @ (5 | 6) => {
                let want = match model.claim(None) {
                    Err(RecvError::Empty) if op == 6 => Err(RecvError::Timeout),
                    w => w,
                };
                let got = if op == 5 {
                    q.try_recv()
                } else {
                    q.recv_timeout(input.timeout())
                };
                match (got, want) {
                    (Ok(g), Ok((pos, msg))) => {
                        check_read(&g, &msg, &mut input);
                        if reads.len() < 8 && input.u8() & 1 == 0 {
                            reads.push((g, pos));
                        } else {
                            g.release();
                            model.release(pos);
                        }
                    }
                    (Err(e), Err(w)) => assert_eq!(e, w, "recv"),
                    (got, want) => panic!("recv: {got:?}, want {want:?}"),
                }
            }
            7 if !reads.is_empty() => {
                let (g, pos) = reads.remove(input.below(reads.len()));
                drop(g);
                model.release(pos);
            }
            op @ (8 | 9) => {
                let mut out = vec![0; input.below(max + 2)];
                let want = match model.claim(Some(out.len())) {
                    Err(RecvError::Empty) if op == 9 => Err(RecvError::Timeout),
                    Err(e) => Err(e),
                    Ok((pos, msg)) => {
                        model.release(pos);
                        Ok(msg)
                    }
                };
                let got = if op == 8 {
                    q.try_recv_into(&mut out)
                } else {
                    q.recv_into_timeout(&mut out, input.timeout())
                };
                match (got, want) {
                    (Ok(n), Ok(msg)) => assert_eq!(out[..n], msg, "recv_into"),
                    (Err(e), Err(w)) => assert_eq!(e, w, "recv_into"),
                    (got, want) => panic!("recv_into: {got:?}, want {want:?}"),
                }
            }
            10 => {
                q.close();
                model.closed = true;
            }
            _ => {
                assert_eq!(q.capacity(), cap);
                assert_eq!(q.max_message(), max);
                assert_eq!(q.is_closed(), model.closed, "is_closed");
                assert_eq!(q.is_empty(), model.read >= model.tail, "is_empty");
                assert_eq!(q.used_bytes() as u64, model.tail - model.head, "used_bytes");
                let _ = format!("{q:?}");
            }
        }
    }

    // Give every grant back (uncommitted ones are cancelled), then drain.
    for (g, pos) in reads.drain(..) {
        drop(g);
        model.release(pos);
    }
    for (g, pos, _) in writes.drain(..) {
        drop(g);
        model.cancel(pos);
    }
    let q = &handles[0];
    let mut out = vec![0; max];
    loop {
        let want = model.claim(Some(max));
        let got = q.try_recv_into(&mut out);
        match (got, want) {
            (Ok(n), Ok((pos, msg))) => {
                assert_eq!(out[..n], msg, "drain");
                model.release(pos);
            }
            (Err(e), Err(w)) => {
                assert_eq!(e, w, "drained");
                break;
            }
            (got, want) => panic!("drain: {got:?}, want {want:?}"),
        }
    }
}
