//! Named queues across real processes: every item exactly once through an
//! MPMC queue, order through an SPSC ring, intact byte messages, blocking
//! and waking, and closing.

mod common;

use std::time::{Duration, Instant};

use common::{join, join_all_ok, words, Rng};
use shmipc::{
    fork, AtomicU64, ByteQueue, BytesConfig, Child, End, ExitStatus, Named, PopError, PushError,
    Queue, RecvError, RingConfig, Segment, SendError, SpscQueue, Unlinker,
};
use shmipc::{Options, Segment as Seg};
use std::sync::atomic::Ordering;

fn open_words(name: &str) -> Seg {
    Segment::open_with(name, &Options::new()).expect("open segment")
}

/// Sets bit `bit`; returns whether it was set already.
fn set_bit(bits: &[AtomicU64], bit: u64) -> bool {
    let mask = 1u64 << (bit % 64);
    bits[(bit / 64) as usize].fetch_or(mask, Ordering::Relaxed) & mask != 0
}

fn count_bits(bits: &[AtomicU64]) -> u64 {
    bits.iter()
        .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
        .sum()
}

// ---------------------------------------------------------------------------
// MPMC: every item exactly once
// ---------------------------------------------------------------------------

const MPMC_PRODUCERS: u64 = 3;
const MPMC_CONSUMERS: usize = 2;
const MPMC_ITEMS: u64 = 1_000_000;

// Counters in the stats segment.
const DUPLICATES: usize = 0;
const INVALID: usize = 1;
const RECEIVED: usize = 2; // + consumer index

#[test]
fn three_producers_two_consumers_move_every_item_exactly_once() {
    let per = MPMC_ITEMS.div_ceil(MPMC_PRODUCERS);
    let (_names, [qn, bitsn, statsn]) = common::segment_names("mpmc-once", ["q", "bits", "stats"]);
    let q = Queue::<u64>::create(&qn, RingConfig::new(64)).unwrap();
    // The parent counts as a producer until it closes the queue, so the
    // consumers wait for the close (not for end-of-stream, which they would
    // see in any moment when every forked producer is gone).
    q.declare(End::Sender);
    let bits_seg = Segment::create_with(
        &bitsn,
        (MPMC_PRODUCERS * per).div_ceil(64) as usize * 8,
        &Options::new(),
    )
    .unwrap();
    let stats_seg = Segment::create_with(&statsn, 8 * 8, &Options::new()).unwrap();

    let started = Instant::now();
    let mut consumers: Vec<Child> = (0..MPMC_CONSUMERS)
        .map(|c| {
            let (qn, bitsn, statsn) = (&qn, &bitsn, &statsn);
            fork(move || {
                let q = Queue::<u64>::open(qn).unwrap();
                let (bits_seg, stats_seg) = (open_words(bitsn), open_words(statsn));
                let (bits, stats) = (words(&bits_seg), words(&stats_seg));
                let mut got = 0;
                loop {
                    match q.pop() {
                        Ok(v) => {
                            got += 1;
                            let (p, i) = (v >> 32, v & 0xffff_ffff);
                            if p >= MPMC_PRODUCERS || i >= per {
                                stats[INVALID].fetch_add(1, Ordering::Relaxed);
                            } else if set_bit(bits, p * per + i) {
                                stats[DUPLICATES].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(PopError::Closed) => break,
                        Err(e) => panic!("pop: {e}"),
                    }
                }
                stats[RECEIVED + c].store(got, Ordering::Relaxed);
                0
            })
            .unwrap()
        })
        .collect();
    let mut producers: Vec<Child> = (0..MPMC_PRODUCERS)
        .map(|p| {
            let qn = &qn;
            fork(move || {
                let q = Queue::<u64>::open(qn).unwrap();
                for i in 0..per {
                    q.push(p << 32 | i).unwrap();
                }
                0
            })
            .unwrap()
        })
        .collect();
    join_all_ok(&mut producers);
    // Every item is in; the consumers drain what is left, then see Closed.
    q.close();
    join_all_ok(&mut consumers);

    let (bits, stats) = (words(&bits_seg), words(&stats_seg));
    let received: Vec<u64> = (0..MPMC_CONSUMERS)
        .map(|c| stats[RECEIVED + c].load(Ordering::Relaxed))
        .collect();
    eprintln!(
        "{} items through a 64-slot queue in {:.2?}; per consumer {received:?}",
        MPMC_PRODUCERS * per,
        started.elapsed()
    );
    assert_eq!(stats[INVALID].load(Ordering::Relaxed), 0, "invalid items");
    assert_eq!(stats[DUPLICATES].load(Ordering::Relaxed), 0, "duplicates");
    assert_eq!(
        count_bits(bits),
        MPMC_PRODUCERS * per,
        "distinct items seen"
    );
    assert_eq!(
        received.iter().sum::<u64>(),
        MPMC_PRODUCERS * per,
        "items received"
    );
    assert!(q.is_empty());
}

// ---------------------------------------------------------------------------
// SPSC: order
// ---------------------------------------------------------------------------

const SPSC_ITEMS: u64 = 10_000_000;

#[test]
fn spsc_keeps_order_for_ten_million_items_across_processes() {
    let (_names, qn) = common::segment_name("spsc-order", "q");
    let q = SpscQueue::<u64>::create(&qn, RingConfig::new(1024)).unwrap();
    let started = Instant::now();
    let mut consumer = fork(|| {
        let mut rx = SpscQueue::<u64>::consumer(&qn).unwrap();
        let mut expected = 0u64;
        // The first half one by one, the rest in batches.
        while expected < SPSC_ITEMS / 2 {
            let v = rx.pop().unwrap();
            if v != expected {
                eprintln!("got {v}, expected {expected}");
                return 1;
            }
            expected += 1;
        }
        let mut buf = [0u64; 300];
        loop {
            match rx.pop_slice(&mut buf) {
                Ok(n) => {
                    for &v in &buf[..n] {
                        if v != expected {
                            eprintln!("got {v}, expected {expected}");
                            return 1;
                        }
                        expected += 1;
                    }
                }
                Err(PopError::Empty) => {
                    // Sleep until the next item (or the close).
                    match rx.pop() {
                        Ok(v) if v == expected => expected += 1,
                        Ok(v) => {
                            eprintln!("got {v}, expected {expected}");
                            return 1;
                        }
                        Err(PopError::Closed) => break,
                        Err(e) => panic!("pop: {e}"),
                    }
                }
                Err(PopError::Closed) => break,
                Err(e) => panic!("pop_slice: {e}"),
            }
        }
        if expected == SPSC_ITEMS {
            0
        } else {
            eprintln!("{expected} items, not {SPSC_ITEMS}");
            2
        }
    })
    .unwrap();
    let mut producer = fork(|| {
        let mut tx = SpscQueue::<u64>::producer(&qn).unwrap();
        let mut next = 0u64;
        while next < SPSC_ITEMS / 3 {
            tx.push(next).unwrap();
            next += 1;
        }
        let mut batch = [0u64; 256];
        while next < SPSC_ITEMS {
            let n = (SPSC_ITEMS - next).min(256) as usize;
            for (k, b) in batch[..n].iter_mut().enumerate() {
                *b = next + k as u64;
            }
            let mut done = 0;
            while done < n {
                match tx.push_slice(&batch[done..n]) {
                    Ok(k) => done += k,
                    // Sleep until there is room for one, then go on.
                    Err(PushError::Full) => {
                        tx.push(batch[done]).unwrap();
                        done += 1;
                    }
                    Err(e) => panic!("push_slice: {e}"),
                }
            }
            next += n as u64;
        }
        tx.close();
        0
    })
    .unwrap();
    assert_eq!(join(&mut producer), ExitStatus::Code(0), "producer");
    assert_eq!(join(&mut consumer), ExitStatus::Code(0), "consumer");
    eprintln!("{SPSC_ITEMS} items in order in {:.2?}", started.elapsed());
    // Both roles were given back when the children's handles dropped.
    assert_eq!(q.producer_pid(), None);
    assert_eq!(q.consumer_pid(), None);
}

// ---------------------------------------------------------------------------
// Byte messages: intact, exactly once
// ---------------------------------------------------------------------------

const MAX_MESSAGE: usize = 64 * 1024;
const BYTE_PRODUCERS: u64 = 2;
const BYTE_CONSUMERS: usize = 2;
const MESSAGES: u64 = 1500;

// Counters in the stats segment.
const B_BAD: usize = 0;
const B_DUPLICATES: usize = 1;
const B_SENT_SHORT: usize = 2;
const B_RECV_SHORT: usize = 3;
const B_SENT_BYTES: usize = 4;
const B_RECV_BYTES: usize = 5;
const B_SENT_SUM: usize = 6;
const B_RECV_SUM: usize = 7;
const B_SENT_MAX: usize = 8;
const B_SENT_EMPTY: usize = 9;

/// The content of a message of `len` bytes with id `id`: the id in the
/// first 8 bytes (if there is room), then bytes derived from id and length.
/// Messages shorter than 8 bytes carry no id; their bytes derive from the
/// length alone.
fn fill(id: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    let (seed, start) = if len >= 8 {
        out.extend_from_slice(&id.to_le_bytes());
        (id ^ (len as u64) << 40, 8)
    } else {
        (len as u64, 0)
    };
    let mut rng = Rng::new(seed);
    let mut i = start;
    while i < len {
        let w = rng.next().to_le_bytes();
        let n = (len - i).min(8);
        out.extend_from_slice(&w[..n]);
        i += n;
    }
}

/// FNV-1a, the per-message checksum summed on both sides.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The length of message `seq` of producer `p`: every size class, with
/// exact maximum and empty messages among them.
fn message_len(rng: &mut Rng, seq: u64) -> usize {
    match seq % 50 {
        0 => MAX_MESSAGE,
        1 => 0,
        2 => 8,
        _ => match rng.next() % 3 {
            0 => (rng.next() % 16) as usize,
            1 => (rng.next() % 2048) as usize,
            _ => (rng.next() % (MAX_MESSAGE as u64 + 1)) as usize,
        },
    }
}

#[test]
fn byte_messages_of_every_size_arrive_intact_exactly_once() {
    let (_names, [qn, bitsn, statsn]) =
        common::segment_names("bytes-intact", ["q", "bits", "stats"]);
    let config = BytesConfig::for_max_message(MAX_MESSAGE).unwrap();
    let q = ByteQueue::create(&qn, config).unwrap();
    // The parent counts as a producer until it closes the queue, so the
    // consumers wait for the close (not for end-of-stream, which they would
    // see in any moment when every forked producer is gone).
    q.declare(End::Sender);
    let _bits = Segment::create_with(
        &bitsn,
        (BYTE_PRODUCERS * MESSAGES).div_ceil(64) as usize * 8,
        &Options::new(),
    )
    .unwrap();
    let stats_seg = Segment::create_with(&statsn, 16 * 8, &Options::new()).unwrap();

    let started = Instant::now();
    let mut consumers: Vec<Child> = (0..BYTE_CONSUMERS)
        .map(|c| {
            let (qn, bitsn, statsn) = (&qn, &bitsn, &statsn);
            fork(move || {
                let q = ByteQueue::open(qn).unwrap();
                let (bits_seg, stats_seg) = (open_words(bitsn), open_words(statsn));
                let (bits, stats) = (words(&bits_seg), words(&stats_seg));
                let mut buf = vec![0u8; MAX_MESSAGE];
                let mut expected = Vec::with_capacity(MAX_MESSAGE);
                let mut k = 0u64;
                loop {
                    // Alternate copying out and reading a borrowed grant.
                    k += 1;
                    let len = if (k + c as u64) % 2 == 0 {
                        match q.recv_into(&mut buf) {
                            Ok(n) => n,
                            Err(RecvError::Closed) => break,
                            Err(e) => panic!("recv_into: {e}"),
                        }
                    } else {
                        match q.recv() {
                            Ok(g) => {
                                let n = g.len();
                                g.read_at(0, &mut buf[..n]).unwrap();
                                n
                            }
                            Err(RecvError::Closed) => break,
                            Err(e) => panic!("recv: {e}"),
                        }
                    };
                    let msg = &buf[..len];
                    let id = if len >= 8 {
                        u64::from_le_bytes(msg[..8].try_into().unwrap())
                    } else {
                        0
                    };
                    fill(id, len, &mut expected);
                    if msg != &expected[..] {
                        eprintln!("message of {len} bytes (id {id:#x}) is not intact");
                        stats[B_BAD].fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if len >= 8 {
                        let (p, seq) = (id >> 32, id & 0xffff_ffff);
                        if p >= BYTE_PRODUCERS || seq >= MESSAGES {
                            stats[B_BAD].fetch_add(1, Ordering::Relaxed);
                        } else if set_bit(bits, p * MESSAGES + seq) {
                            stats[B_DUPLICATES].fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        stats[B_RECV_SHORT].fetch_add(1, Ordering::Relaxed);
                    }
                    stats[B_RECV_BYTES].fetch_add(len as u64, Ordering::Relaxed);
                    stats[B_RECV_SUM].fetch_add(fnv(msg), Ordering::Relaxed);
                }
                0
            })
            .unwrap()
        })
        .collect();
    let mut producers: Vec<Child> = (0..BYTE_PRODUCERS)
        .map(|p| {
            let (qn, statsn) = (&qn, &statsn);
            fork(move || {
                let q = ByteQueue::open(qn).unwrap();
                let stats_seg = open_words(statsn);
                let stats = words(&stats_seg);
                let mut rng = Rng::new(p + 1);
                let mut msg = Vec::with_capacity(MAX_MESSAGE);
                for seq in 0..MESSAGES {
                    let len = message_len(&mut rng, seq);
                    fill(p << 32 | seq, len, &mut msg);
                    if seq % 7 == 3 {
                        // Zero-copy: reserve, fill in two parts, commit.
                        let mut g = q.reserve(len).unwrap();
                        let half = len / 2;
                        g.write_at(half, &msg[half..]).unwrap();
                        g.write_at(0, &msg[..half]).unwrap();
                        g.commit();
                    } else {
                        q.send(&msg).unwrap();
                    }
                    if len < 8 {
                        stats[B_SENT_SHORT].fetch_add(1, Ordering::Relaxed);
                    }
                    if len == 0 {
                        stats[B_SENT_EMPTY].fetch_add(1, Ordering::Relaxed);
                    }
                    if len == MAX_MESSAGE {
                        stats[B_SENT_MAX].fetch_add(1, Ordering::Relaxed);
                    }
                    stats[B_SENT_BYTES].fetch_add(len as u64, Ordering::Relaxed);
                    stats[B_SENT_SUM].fetch_add(fnv(&msg), Ordering::Relaxed);
                }
                0
            })
            .unwrap()
        })
        .collect();
    join_all_ok(&mut producers);
    q.close();
    join_all_ok(&mut consumers);

    let stats = words(&stats_seg);
    let s = |i: usize| stats[i].load(Ordering::Relaxed);
    eprintln!(
        "{} messages, {} bytes, in {:.2?}",
        BYTE_PRODUCERS * MESSAGES,
        s(B_SENT_BYTES),
        started.elapsed()
    );
    assert_eq!(s(B_BAD), 0, "torn, corrupted or unknown messages");
    assert_eq!(s(B_DUPLICATES), 0, "duplicated messages");
    assert!(
        s(B_SENT_MAX) > 0 && s(B_SENT_EMPTY) > 0,
        "the edge sizes were sent"
    );
    assert!(
        s(B_SENT_BYTES) > 8 * config.capacity as u64,
        "the ring wrapped many times"
    );
    let bits_seg = open_words(&bitsn);
    let long = BYTE_PRODUCERS * MESSAGES - s(B_SENT_SHORT);
    assert_eq!(
        count_bits(words(&bits_seg)),
        long,
        "messages with an id, each once"
    );
    assert_eq!(
        s(B_RECV_SHORT),
        s(B_SENT_SHORT),
        "messages too short for an id"
    );
    assert_eq!(s(B_RECV_BYTES), s(B_SENT_BYTES), "bytes");
    assert_eq!(s(B_RECV_SUM), s(B_SENT_SUM), "checksums");
}

// ---------------------------------------------------------------------------
// Blocking, timeouts and closing
// ---------------------------------------------------------------------------

#[test]
fn consumers_sleeping_on_an_empty_queue_wake_on_push() {
    let (_names, qn) = common::segment_name("wake-on-push", "q");
    let q = Queue::<u64>::create(&qn, RingConfig::new(8)).unwrap();
    let mut children: Vec<Child> = (0..3)
        .map(|_| {
            fork(|| {
                let q = Queue::<u64>::open(&qn).unwrap();
                match q.pop_timeout(Duration::from_secs(30)) {
                    Ok(v) => v as i32,
                    Err(_) => 100,
                }
            })
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for c in &mut children {
        assert!(c.is_alive(), "a consumer returned from an empty queue");
    }
    for v in 1..=3 {
        q.push(v).unwrap();
    }
    let mut codes: Vec<i32> = children
        .iter_mut()
        .map(|c| join(c).code().unwrap())
        .collect();
    codes.sort_unstable();
    assert_eq!(codes, [1, 2, 3]);
}

#[test]
fn timeouts_wait_at_least_their_duration() {
    let names = Unlinker::new("timeouts");
    let timeout = Duration::from_millis(150);

    let q = Queue::<u32>::create(&names.name("q"), RingConfig::new(2)).unwrap();
    let t = Instant::now();
    assert_eq!(q.pop_timeout(timeout), Err(PopError::Timeout));
    assert!(
        t.elapsed() >= timeout,
        "pop_timeout after {:?}",
        t.elapsed()
    );
    q.push(1).unwrap();
    q.push(2).unwrap();
    let t = Instant::now();
    assert_eq!(q.push_timeout(3, timeout), Err(PushError::Timeout));
    assert!(
        t.elapsed() >= timeout,
        "push_timeout after {:?}",
        t.elapsed()
    );

    let b = ByteQueue::create(&names.name("b"), BytesConfig::new(128, 48)).unwrap();
    let t = Instant::now();
    assert!(matches!(b.recv_timeout(timeout), Err(RecvError::Timeout)));
    assert!(
        t.elapsed() >= timeout,
        "recv_timeout after {:?}",
        t.elapsed()
    );
    b.send(&[1; 48]).unwrap();
    b.send(&[1; 48]).unwrap();
    let t = Instant::now();
    assert_eq!(b.send_timeout(&[2; 48], timeout), Err(SendError::Timeout));
    assert!(
        t.elapsed() >= timeout,
        "send_timeout after {:?}",
        t.elapsed()
    );

    let mut rx = SpscQueue::<u8>::create(&names.name("s"), RingConfig::new(4))
        .unwrap()
        .take_consumer()
        .unwrap();
    let t = Instant::now();
    assert_eq!(rx.pop_timeout(timeout), Err(PopError::Timeout));
    assert!(
        t.elapsed() >= timeout,
        "spsc pop_timeout after {:?}",
        t.elapsed()
    );
}

/// Exit codes of the sleepers below.
const GOT_CLOSED: i32 = 0;
const GOT_SOMETHING_ELSE: i32 = 1;

#[test]
fn close_wakes_every_sleeping_producer_and_consumer_in_other_processes() {
    let (names, [empty_n, full_n]) = common::segment_names("close-wakes", ["empty", "full"]);
    let (bempty_n, bfull_n) = (names.name("bytes-empty"), names.name("bytes-full"));
    let empty = Queue::<u64>::create(&empty_n, RingConfig::new(4)).unwrap();
    let full = Queue::<u64>::create(&full_n, RingConfig::new(2)).unwrap();
    full.push(1).unwrap();
    full.push(2).unwrap();
    let bempty = ByteQueue::create(&bempty_n, BytesConfig::new(128, 48)).unwrap();
    let bfull = ByteQueue::create(&bfull_n, BytesConfig::new(128, 48)).unwrap();
    bfull.send(&[0; 48]).unwrap();
    bfull.send(&[0; 48]).unwrap();
    assert_eq!(bfull.try_send(&[0; 48]), Err(SendError::Full));

    let long = common::SLEEPER_PATIENCE;
    // `Closed`, and before the sleeper's own deadline: a wake-up that the
    // close failed to deliver can still end in `Closed` (the last look at
    // the deadline finds the close), but only once the timeout has run.
    let code = |closed: bool, started: Instant| {
        if closed && started.elapsed() < long {
            GOT_CLOSED
        } else {
            GOT_SOMETHING_ELSE
        }
    };
    let mut sleepers = Vec::new();
    for _ in 0..2 {
        sleepers.push(
            fork(|| {
                let q = Queue::<u64>::open(&empty_n).unwrap();
                let t = Instant::now();
                code(q.pop_timeout(long) == Err(PopError::Closed), t)
            })
            .unwrap(),
        );
        sleepers.push(
            fork(|| {
                let q = Queue::<u64>::open(&full_n).unwrap();
                let t = Instant::now();
                code(q.push_timeout(3, long) == Err(PushError::Closed), t)
            })
            .unwrap(),
        );
        sleepers.push(
            fork(|| {
                let q = ByteQueue::open(&bempty_n).unwrap();
                let t = Instant::now();
                let closed = matches!(q.recv_timeout(long), Err(RecvError::Closed));
                code(closed, t)
            })
            .unwrap(),
        );
        sleepers.push(
            fork(|| {
                let q = ByteQueue::open(&bfull_n).unwrap();
                let t = Instant::now();
                code(q.send_timeout(&[1; 40], long) == Err(SendError::Closed), t)
            })
            .unwrap(),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    for s in &mut sleepers {
        assert!(s.is_alive(), "a sleeper returned before the close");
    }
    let t = Instant::now();
    empty.close();
    full.close();
    bempty.close();
    bfull.close();
    join_all_ok(&mut sleepers);
    assert!(t.elapsed() < Duration::from_secs(20), "the close woke them");
    // What was in the full queues still drains after the close.
    assert_eq!(full.pop(), Ok(1));
    assert_eq!(full.pop(), Ok(2));
    assert_eq!(full.pop(), Err(PopError::Closed));
    assert_eq!(bfull.recv_vec().unwrap().len(), 48);
    assert_eq!(bfull.recv_vec().unwrap().len(), 48);
    assert!(matches!(bfull.recv_vec(), Err(RecvError::Closed)));
}

#[test]
fn anonymous_queues_are_shared_with_forked_children() {
    let q = Queue::<u32>::anon(RingConfig::new(16)).unwrap();
    let b = ByteQueue::anon(BytesConfig::for_max_message(100).unwrap()).unwrap();
    assert_eq!(q.name(), None);
    let mut child = fork(|| {
        for i in 0..100 {
            q.push(i).unwrap();
        }
        b.send(b"done").unwrap();
        0
    })
    .unwrap();
    let mut sum = 0;
    for _ in 0..100 {
        sum += q.pop_timeout(Duration::from_secs(30)).unwrap();
    }
    assert_eq!(sum, 4950);
    assert_eq!(
        b.recv_vec_timeout(Duration::from_secs(30)).unwrap(),
        b"done"
    );
    assert_eq!(join(&mut child), ExitStatus::Code(0));

    let (mut tx, mut rx) = SpscQueue::<u64>::anon(RingConfig::new(8)).unwrap();
    let mut child = fork(move || {
        for i in 0..1000 {
            tx.push(i).unwrap();
        }
        tx.close();
        0
    })
    .unwrap();
    for i in 0..1000 {
        assert_eq!(rx.pop_timeout(Duration::from_secs(30)), Ok(i));
    }
    assert_eq!(
        rx.pop_timeout(Duration::from_secs(30)),
        Err(PopError::Closed)
    );
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn open_or_create_creates_once() {
    let (names, name) = common::segment_name("queue-ooc", "q");
    let (a, created_a) = Queue::<u64>::open_or_create(&name, RingConfig::new(8)).unwrap();
    let (b, created_b) = Queue::<u64>::open_or_create(&name, RingConfig::new(32)).unwrap();
    assert!(created_a && !created_b);
    assert_eq!(b.capacity(), 8, "the existing queue keeps its capacity");
    a.push(5).unwrap();
    assert_eq!(b.pop(), Ok(5));
    let bname = names.name("b");
    let (_, c1) = ByteQueue::open_or_create(&bname, BytesConfig::new(256, 64)).unwrap();
    let (_, c2) = ByteQueue::open_or_create(&bname, BytesConfig::new(256, 64)).unwrap();
    assert!(c1 && !c2);
    assert!(matches!(
        Queue::<u64>::create(&name, RingConfig::new(8)),
        Err(shmipc::Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        Queue::<u64>::create(&names.name("bad"), RingConfig::new(3)),
        Err(shmipc::Error::Layout { .. })
    ));
}

#[test]
fn handles_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Queue<u64>>();
    send_sync::<ByteQueue>();
    send_sync::<shmipc::PipeEnd>();
    send_sync::<SpscQueue<u64>>();
    send::<shmipc::SpscProducer<u64>>();
    send::<shmipc::SpscConsumer<u64>>();
}
