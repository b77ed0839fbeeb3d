//! The queues while a hostile peer writes into their memory between
//! operations: control block, sequence numbers, record headers, payload —
//! anywhere (see [`AlignedBuf::poke`]).
//!
//! Nothing here is checked against a model: every operation may fail. What
//! must hold is what the design promises for hostile memory: every call
//! returns (blocking calls use tiny deadlines, and the byte queue's `_until`
//! variants, so that a lock word left "held" costs a tiny wait instead of
//! the one-second patience of `try_*`), nothing panics, nothing is read or
//! written outside the queue's bytes (AddressSanitizer under the fuzzer, a
//! guard area in the replay tests), and the numbers a handle reports stay
//! within what its own trusted geometry allows.

use shmipc_core::bytes::{ByteQueue, BytesConfig, ReadGrant, WriteGrant};
use shmipc_core::mpmc::Mpmc;
use shmipc_core::spsc::Spsc;
use shmipc_core::{Deadline, RecvError, RingConfig};

use crate::support::{AlignedBuf, Elem, Input, MAX_OPS};

/// The SPSC ring or the MPMC queue (the first byte chooses, and the item
/// type) under hostile writes.
pub fn ring_hostile(data: &[u8]) {
    let mut input = Input::new(data);
    match input.u8() % 8 {
        0 => spsc::<u64>(&mut input),
        1 => spsc::<u8>(&mut input),
        2 => spsc::<u16>(&mut input),
        3 => spsc::<[u32; 3]>(&mut input),
        4 => mpmc::<u64>(&mut input),
        5 => mpmc::<u8>(&mut input),
        6 => mpmc::<u16>(&mut input),
        _ => mpmc::<[u32; 3]>(&mut input),
    }
}

fn spsc<T: Elem>(input: &mut Input<'_>) {
    let cap = 1usize << input.below(5);
    let config = RingConfig::new(cap);
    let layout = Spsc::<T>::layout(config).expect("a valid configuration");
    let buf = AlignedBuf::new(layout.size());
    let (ptr, len) = (buf.ptr(), buf.len());
    // SAFETY: `buf` outlives the handles (it is declared first); only they
    // and the harness's pokes use it, one producer and one consumer.
    let (tx, rx) = unsafe { Spsc::<T>::init_at(ptr, len, config) }.expect("init");
    let (mut tx, mut rx) = (Some(tx), Some(rx));
    let mut counter = 0u64;

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        counter += 1;
        match input.u8() % 14 {
            0..=3 => buf.poke(input),
            4 => {
                if let Some(tx) = &mut tx {
                    let _ = tx.try_push(T::make(counter));
                }
            }
            5 => {
                if let Some(tx) = &mut tx {
                    let _ = tx.push_timeout(T::make(counter), input.timeout());
                }
            }
            6 => {
                let items: Vec<T> = (0..input.below(2 * cap + 2))
                    .map(|i| T::make(counter + i as u64))
                    .collect();
                if let Some(tx) = &mut tx {
                    if let Ok(n) = tx.push_slice(&items) {
                        assert!(n <= items.len());
                    }
                }
            }
            7 => {
                if let Some(rx) = &mut rx {
                    let _ = rx.try_pop();
                }
            }
            8 => {
                if let Some(rx) = &mut rx {
                    let _ = rx.pop_timeout(input.timeout());
                }
            }
            9 => {
                let mut out = vec![T::zeroed(); input.below(2 * cap + 2)];
                if let Some(rx) = &mut rx {
                    if let Ok(n) = rx.pop_slice(&mut out) {
                        assert!(n <= out.len());
                    }
                }
            }
            10 => {
                // A re-attached handle may have found a smaller queue that
                // a hostile header describes: its own capacity is the bound.
                if let Some(tx) = &tx {
                    assert!(tx.len() <= tx.capacity());
                    let _ = (tx.is_empty(), tx.is_full(), tx.is_closed());
                    tx.close();
                }
            }
            11 => {
                if let Some(rx) = &rx {
                    assert!(rx.len() <= rx.capacity());
                    let _ = (rx.is_empty(), rx.is_full(), rx.is_closed());
                    let _ = format!("{rx:?}");
                }
            }
            12 => {
                let _ = tx.take();
                // SAFETY: as for init_at; the old producer is gone.
                tx = unsafe { Spsc::<T>::attach_producer(ptr, len) }.ok();
                if let Some(tx) = &tx {
                    let l = Spsc::<T>::layout(RingConfig::new(tx.capacity()));
                    assert!(
                        l.is_ok_and(|l| l.size() <= len),
                        "attached beyond the bytes"
                    );
                }
            }
            _ => {
                let _ = rx.take();
                // SAFETY: as for init_at; the old consumer is gone.
                rx = unsafe { Spsc::<T>::attach_consumer(ptr, len) }.ok();
                if let Some(rx) = &rx {
                    let l = Spsc::<T>::layout(RingConfig::new(rx.capacity()));
                    assert!(
                        l.is_ok_and(|l| l.size() <= len),
                        "attached beyond the bytes"
                    );
                }
            }
        }
    }
}

fn mpmc<T: Elem>(input: &mut Input<'_>) {
    let cap = 2usize << input.below(5);
    let config = RingConfig::new(cap);
    let layout = Mpmc::<T>::layout(config).expect("a valid configuration");
    let buf = AlignedBuf::new(layout.size());
    let (ptr, len) = (buf.ptr(), buf.len());
    // SAFETY: `buf` outlives every handle (it is declared first); only they
    // and the harness's pokes use it.
    let q = unsafe { Mpmc::<T>::init_at(ptr, len, config) }.expect("init");
    let mut handles = vec![q];
    let mut counter = 0u64;

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        counter += 1;
        let op = input.u8();
        let pick = (op as usize >> 4) % handles.len();
        let h = &handles[pick];
        match op % 10 {
            0..=3 => buf.poke(input),
            4 => {
                let _ = h.try_push(T::make(counter));
            }
            5 => {
                let _ = h.push_timeout(T::make(counter), input.timeout());
            }
            6 => {
                let _ = h.try_pop();
            }
            7 => {
                let _ = h.pop_timeout(input.timeout());
            }
            8 => {
                let c = h.capacity();
                assert!(h.len() <= c);
                let _ = (h.is_empty(), h.is_full(), h.is_closed(), format!("{h:?}"));
                if op & 0x80 != 0 {
                    h.close();
                }
            }
            _ => {
                // SAFETY: as for init_at.
                if let Ok(h) = unsafe { Mpmc::<T>::attach(ptr, len) } {
                    let l = Mpmc::<T>::layout(RingConfig::new(h.capacity()));
                    assert!(
                        l.is_ok_and(|l| l.size() <= len),
                        "attached beyond the bytes"
                    );
                    if handles.len() < 4 {
                        handles.push(h);
                    } else {
                        handles[pick] = h;
                    }
                }
            }
        }
    }
}

/// The byte queue under hostile writes, with grants held across them.
pub fn bytes_hostile(data: &[u8]) {
    let mut input = Input::new(data);
    let cap = 64usize << input.below(4);
    let max = input.below(cap / 2 - 16 + 1);
    let config = BytesConfig::new(cap, max);
    let layout = ByteQueue::layout(config).expect("a valid configuration");
    let buf = AlignedBuf::new(layout.size());
    let (ptr, len) = (buf.ptr(), buf.len());
    // SAFETY: `buf` outlives every handle and grant (it is declared first);
    // only they and the harness's pokes use it.
    let q = unsafe { ByteQueue::init_at(ptr, len, config) }.expect("init");
    // SAFETY: as for init_at.
    let attached = unsafe { ByteQueue::attach(ptr, len) }.expect("attach");
    let handles = [q.clone(), attached, q];
    let mut writes: Vec<WriteGrant<'_, '_>> = Vec::new();
    let mut reads: Vec<ReadGrant<'_, '_>> = Vec::new();

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.u8();
        let q = &handles[(op as usize >> 4) % handles.len()];
        let deadline = Deadline::after(input.timeout());
        match op % 12 {
            0..=3 => buf.poke(&mut input),
            4 => {
                let msg = vec![op; input.below(max + 2)];
                let _ = q.send_until(&msg, Some(&deadline));
            }
            5 if writes.len() < 4 => {
                if let Ok(mut g) = q.reserve_until(input.below(max + 2), Some(&deadline)) {
                    assert!(g.len() <= max);
                    let n = g.len();
                    g.write_at(0, &vec![op; n]).expect("write within the grant");
                    writes.push(g);
                }
            }
            6 if !writes.is_empty() => {
                let g = writes.swap_remove(input.below(writes.len()));
                if op & 0x80 != 0 {
                    g.commit();
                }
            }
            7 => {
                if let Ok(g) = q.recv_until(Some(&deadline)) {
                    assert!(g.len() <= max, "a message longer than the queue allows");
                    let mut all = vec![0; g.len()];
                    g.read_at(0, &mut all).expect("read within the grant");
                    if reads.len() < 4 && op & 0x80 != 0 {
                        reads.push(g);
                    }
                }
            }
            8 if !reads.is_empty() => {
                reads.swap_remove(input.below(reads.len())).release();
            }
            9 => {
                let mut out = vec![0; input.below(max + 2)];
                match q.recv_into_until(&mut out, Some(&deadline)) {
                    Ok(n) => assert!(n <= out.len() && n <= max),
                    Err(RecvError::BufferTooSmall(n)) => assert!(n > out.len() && n <= max),
                    Err(_) => {}
                }
            }
            10 => {
                assert!(q.used_bytes() <= cap);
                assert_eq!((q.capacity(), q.max_message()), (cap, max));
                let _ = (q.is_empty(), q.is_closed(), format!("{q:?}"));
                if op & 0x80 != 0 {
                    q.close();
                }
            }
            _ => {
                // SAFETY: as for init_at; the handle is dropped at once.
                if let Ok(h) = unsafe { ByteQueue::attach(ptr, len) } {
                    let l = ByteQueue::layout(BytesConfig::new(h.capacity(), h.max_message()));
                    assert!(
                        l.is_ok_and(|l| l.size() <= len),
                        "attached beyond the bytes"
                    );
                }
            }
        }
    }
    // Grants go back (cancelled or released) while the memory is hostile.
    drop(reads);
    drop(writes);
}
