//! The control-block decoders (`mpmc::state_of`, `spsc::state_of`,
//! `bytes::state_of`) read what the queues' own handles report, from a
//! copy of the bytes, and refuse copies too short to hold a control block.
#![cfg(not(loom))]

use shmipc_core::bytes::ByteQueue;
use shmipc_core::mpmc::Mpmc;
use shmipc_core::spsc::Spsc;
use shmipc_core::{BytesConfig, RingConfig};

#[repr(C, align(128))]
#[derive(Clone, Copy)]
struct Line([u8; 128]);

fn buffer(size: usize) -> Vec<Line> {
    vec![Line([0; 128]); size.div_ceil(128)]
}

fn bytes(buf: &mut [Line]) -> &mut [u8] {
    // SAFETY: `Line` is 128 plain bytes with no padding.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast(), buf.len() * 128) }
}

#[test]
fn mpmc_state_matches_the_handle() {
    let config = RingConfig::new(8);
    let mut buf = buffer(Mpmc::<u64>::layout(config).unwrap().size());
    {
        let q = Mpmc::<u64>::new_in(bytes(&mut buf), config).unwrap();
        for i in 0..5 {
            q.try_push(i).unwrap();
        }
        q.try_pop().unwrap();
        q.close();
    }
    let copy = bytes(&mut buf).to_vec();
    let s = shmipc_core::mpmc::state_of(&copy).unwrap();
    assert_eq!((s.tail, s.head, s.closed), (5, 1, true));
    assert_eq!(s.len(8), 4);
    assert_eq!((s.consumer_sleepers, s.producer_sleepers), (0, 0));
    assert!(shmipc_core::mpmc::state_of(&copy[..100]).is_none());
}

#[test]
fn spsc_state_matches_the_handles() {
    let config = RingConfig::new(4);
    let mut buf = buffer(Spsc::<u32>::layout(config).unwrap().size());
    {
        let (mut p, mut c) = Spsc::<u32>::new_in(bytes(&mut buf), config).unwrap();
        p.push(1).unwrap();
        p.push(2).unwrap();
        p.push(3).unwrap();
        c.pop().unwrap();
        p.register_dead_sleeper(true);
    }
    let copy = bytes(&mut buf).to_vec();
    let s = shmipc_core::spsc::state_of(&copy).unwrap();
    assert_eq!((s.tail, s.head, s.closed), (3, 1, false));
    assert_eq!(s.consumer_sleepers, 1);
    assert!(shmipc_core::spsc::state_of(&copy[..64]).is_none());
}

#[test]
fn byte_queue_state_matches_the_handle() {
    let config = BytesConfig::new(256, 32);
    let mut buf = buffer(ByteQueue::layout(config).unwrap().size());
    let used;
    {
        let q = ByteQueue::new_in(bytes(&mut buf), config).unwrap();
        q.try_send(b"hello").unwrap();
        q.try_send(b"world!").unwrap();
        used = q.used_bytes() as u64;
        q.close();
    }
    let copy = bytes(&mut buf).to_vec();
    let s = shmipc_core::bytes::state_of(&copy).unwrap();
    assert!(s.ring.closed);
    assert_eq!(s.ring.tail - s.released, used);
    assert!(s.ring.len(256) > 0);
    assert!(s.writer_lock.is_none() && s.reader_lock.is_none() && !s.unrecoverable);
    assert!(shmipc_core::bytes::state_of(&copy[..200]).is_none());
}
