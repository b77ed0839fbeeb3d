//! Queue peers killed with SIGKILL: at chosen points of a push or a pop
//! (recovery happens, and what it costs is exactly what the docs say), and
//! at random moments of a stress run with several producer and consumer
//! processes (nothing duplicated or torn, every completed push received
//! unless its receiver died holding it, and the survivors finish).
//!
//! # The accounting the stress runs assert
//!
//! Producers set a `done` bit for an item after its push returned; consumers
//! set a `received` bit after the pop returned (a `fetch_or`, so a second
//! delivery is counted as a duplicate), and keep a per-consumer `busy` word
//! at 1 from just before each pop until the item is recorded. Then:
//!
//! - no item is received twice, and every received item is intact (every
//!   byte checked against its id);
//! - `done && !received` items number at most the consumers killed while
//!   `busy` (each was inside one pop, or had popped and not yet recorded:
//!   one item each, and nothing else is ever lost);
//! - `received && !done` items number at most the producers killed (each
//!   can die after its last push returned and before recording it);
//! - every process not killed exits normally, within a bound.
//!
//! # Proof that the kills hit
//!
//! Each process keeps a `window` word at 1 while it is certainly inside a
//! dangerous window: an MPMC claim not yet published or freed (set and
//! cleared inside the `push_pausing`/`pop_pausing` pause), a byte-queue
//! reservation not yet committed, a read grant not yet released (set after
//! the call that returned the reservation or grant, cleared before the
//! commit or release). A killed process whose word reads 1 died inside
//! one. A stress test fails if none of its kills did (it runs up to three
//! times its iterations to find one). And the same stress runs with
//! dead-claimant recovery turned off (`shmipc_core::fault`, in a forked
//! child with short timeouts) must fail, after a kill inside a window.

mod common;

use std::time::{Duration, Instant};

use common::{join, kill_after, words, Rng};
use shmipc::sync::{AtomicU64, Ordering};
use shmipc::{
    fork, ByteQueue, BytesConfig, Child, End, Event, ExitStatus, Named, Options, PopError,
    PushError, Queue, RecvError, RingConfig, Segment, SendError, Shared, SpscQueue, Unlinker,
};

const ITERATIONS: usize = 30;

/// How long any blocking call of a stress run waits, in milliseconds: 30 s,
/// or less in the run with recovery turned off, which is expected to
/// time out. Process-wide, so forked processes inherit it.
static WAIT_MS: AtomicU64 = AtomicU64::new(30_000);

fn wait() -> Duration {
    Duration::from_millis(WAIT_MS.load(Ordering::Relaxed))
}

fn set_bit(bits: &[AtomicU64], bit: u64) -> bool {
    let mask = 1u64 << (bit % 64);
    bits[(bit / 64) as usize].fetch_or(mask, Ordering::SeqCst) & mask != 0
}

fn get_bit(bits: &[AtomicU64], bit: u64) -> bool {
    bits[(bit / 64) as usize].load(Ordering::SeqCst) & (1 << (bit % 64)) != 0
}

fn join_within(child: &mut Child, what: &str) -> ExitStatus {
    let pid = child.pid();
    child
        .join_timeout(Duration::from_secs(30) + wait())
        .expect("waitpid")
        .unwrap_or_else(|| panic!("{what} {pid} hung"))
}

// ---------------------------------------------------------------------------
// The stress runs
// ---------------------------------------------------------------------------

const PRODUCERS: u64 = 3;
const CONSUMERS: usize = 2;
const MAX_CONSUMERS: usize = CONSUMERS * 2;
const PER_PRODUCER: u64 = 2000;

// Words of the stats segment.
const DUPLICATES: usize = 0;
const INVALID: usize = 1;
const BUSY: usize = 2; // + consumer slot
const PRODUCER_WINDOW: usize = BUSY + MAX_CONSUMERS; // + producer
const CONSUMER_WINDOW: usize = PRODUCER_WINDOW + PRODUCERS as usize; // + consumer slot
const STATS: usize = CONSUMER_WINDOW + MAX_CONSUMERS;

/// One run's shared bookkeeping.
struct Books {
    done: Segment,
    received: Segment,
    stats: Segment,
}

impl Books {
    fn create(names: &Unlinker) -> Books {
        let bits = (PRODUCERS * PER_PRODUCER).div_ceil(64) as usize * 8;
        let opts = Options::new();
        Books {
            done: Segment::create_with(&names.name("done"), bits, &opts).unwrap(),
            received: Segment::create_with(&names.name("received"), bits, &opts).unwrap(),
            stats: Segment::create_with(&names.name("stats"), 8 * STATS, &opts).unwrap(),
        }
    }

    fn done(&self) -> &[AtomicU64] {
        words(&self.done)
    }

    fn received(&self) -> &[AtomicU64] {
        words(&self.received)
    }

    fn stats(&self) -> &[AtomicU64] {
        words(&self.stats)
    }

    /// Producer `p`'s window word (module docs).
    fn producer_window(&self, p: u64) -> &AtomicU64 {
        &self.stats()[PRODUCER_WINDOW + p as usize]
    }

    /// The window word of the consumer in `slot`.
    fn consumer_window(&self, slot: usize) -> &AtomicU64 {
        &self.stats()[CONSUMER_WINDOW + slot]
    }

    /// Records a received id (or an invalid item).
    fn receive(&self, id: Option<u64>) {
        match id {
            Some(id) if id < PRODUCERS * PER_PRODUCER => {
                if set_bit(self.received(), id) {
                    self.stats()[DUPLICATES].fetch_add(1, Ordering::SeqCst);
                }
            }
            _ => {
                self.stats()[INVALID].fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// What one kind of queue offers the stress run: a producer's and a
/// consumer's main loop, and closing.
trait Subject: Sync {
    fn produce(&self, books: &Books, p: u64) -> i32;
    fn consume(&self, books: &Books, slot: usize) -> i32;
    fn close(&self);
}

/// One stress iteration: start everyone, kill some at a random moment,
/// replace the killed consumers, let the rest finish, check the books.
/// Returns how many producers were killed before they finished, how many
/// completed pushes were lost with a killed consumer, and how many kills
/// landed inside a dangerous window; adds the last to `hits` as soon as it
/// knows them (before its checks, which may fail).
fn stress_once(
    subject: &dyn Subject,
    books: &Books,
    rng: &mut Rng,
    seed: u64,
    hits: &AtomicU64,
) -> (usize, usize, usize) {
    let mut producers: Vec<Child> = (0..PRODUCERS)
        .map(|p| fork(|| subject.produce(books, p)).unwrap())
        .collect();
    let mut consumers: Vec<(usize, Child)> = (0..CONSUMERS)
        .map(|c| (c, fork(|| subject.consume(books, c)).unwrap()))
        .collect();
    std::thread::sleep(Duration::from_micros(rng.below(20_000)));

    // Kill each with probability 1/3, at least one process.
    let victims = loop {
        let v = rng.next();
        if v & 0x1f != 0 {
            break v;
        }
    };
    let mut killed_producers = 0;
    let mut in_window = 0;
    let mut lost_budget = 0;
    let mut next_slot = CONSUMERS;
    for (i, child) in producers.iter_mut().enumerate() {
        if (victims >> (2 * i)) & 3 == 0 {
            child.kill().unwrap();
            match join_within(child, "killed producer") {
                ExitStatus::Signal(libc::SIGKILL) => {
                    killed_producers += 1;
                    if books.producer_window(i as u64).load(Ordering::SeqCst) != 0 {
                        in_window += 1;
                    }
                }
                ExitStatus::Code(0) => {} // it had finished already
                other => panic!("seed {seed}: producer ended with {other:?}"),
            }
        }
    }
    let mut survivors = Vec::new();
    for (k, (slot, mut child)) in consumers.drain(..).enumerate() {
        if (victims >> (2 * (PRODUCERS as usize + k))) & 3 == 0 {
            child.kill().unwrap();
            let status = join_within(&mut child, "killed consumer");
            assert_eq!(status, ExitStatus::Signal(libc::SIGKILL), "seed {seed}");
            if books.stats()[BUSY + slot].load(Ordering::SeqCst) != 0 {
                lost_budget += 1;
            }
            if books.consumer_window(slot).load(Ordering::SeqCst) != 0 {
                in_window += 1;
            }
            let s = next_slot;
            next_slot += 1;
            survivors.push((s, fork(|| subject.consume(books, s)).unwrap()));
        } else {
            survivors.push((slot, child));
        }
    }
    hits.fetch_add(in_window as u64, Ordering::SeqCst);
    for child in producers.iter_mut() {
        let status = join_within(child, "producer");
        assert!(
            matches!(
                status,
                ExitStatus::Code(0) | ExitStatus::Signal(libc::SIGKILL)
            ),
            "seed {seed}: producer ended with {status:?}"
        );
    }
    subject.close();
    for (slot, child) in survivors.iter_mut() {
        assert_eq!(
            join_within(child, "consumer"),
            ExitStatus::Code(0),
            "seed {seed}: consumer slot {slot}"
        );
    }

    let stats = books.stats();
    assert_eq!(stats[DUPLICATES].load(Ordering::SeqCst), 0, "seed {seed}");
    assert_eq!(stats[INVALID].load(Ordering::SeqCst), 0, "seed {seed}");
    let (mut missing, mut unrecorded) = (0, 0);
    for id in 0..PRODUCERS * PER_PRODUCER {
        match (get_bit(books.done(), id), get_bit(books.received(), id)) {
            (true, false) => missing += 1,
            (false, true) => unrecorded += 1,
            _ => {}
        }
    }
    assert!(
        missing <= lost_budget,
        "seed {seed}: {missing} completed pushes never received, but only \
         {lost_budget} consumers died inside a pop"
    );
    assert!(
        unrecorded <= killed_producers,
        "seed {seed}: {unrecorded} received items never recorded as pushed, \
         with {killed_producers} producers killed"
    );
    (killed_producers, missing as usize, in_window)
}

/// Runs [`ITERATIONS`] stress iterations, and up to twice as many more
/// until a kill has landed inside a dangerous window; fails if none did.
/// Counts those kills in `hits`.
fn stress(prefix: &str, make: impl Fn(&Unlinker) -> Box<dyn Subject>, hits: &AtomicU64) {
    let mut rng = Rng::seeded();
    let seed = rng.0;
    let started = Instant::now();
    let (mut kp, mut kc) = (0, 0);
    let mut iterations = 0;
    while iterations < ITERATIONS
        || (hits.load(Ordering::SeqCst) == 0 && iterations < 3 * ITERATIONS)
    {
        let names = Unlinker::new(prefix);
        let books = Books::create(&names);
        let subject = make(&names);
        let (p, c, _) = stress_once(&*subject, &books, &mut rng, seed, hits);
        kp += p;
        kc += c;
        iterations += 1;
    }
    let hit = hits.load(Ordering::SeqCst);
    eprintln!(
        "{prefix}: {iterations} iterations in {:?} (seed {seed}); producers killed mid-run: \
         {kp}, kills inside a claim or commit window: {hit}, completed pushes lost with a \
         killed consumer: {kc}",
        started.elapsed()
    );
    assert!(
        hit > 0,
        "seed {seed}: none of the kills of {iterations} iterations landed inside a claim or \
         commit window, so the run proved nothing about recovery"
    );
}

/// Runs [`stress`] in a forked child with dead-claimant recovery turned
/// off and two-second timeouts, and asserts that it fails (the child
/// panics, exit code 101) after at least one kill inside a window: the
/// stress can tell a queue that recovers from one that does not.
fn stress_fails_without_recovery(prefix: &str, make: impl Fn(&Unlinker) -> Box<dyn Subject>) {
    let names = Unlinker::new(prefix);
    let report = Segment::create_with(&names.name("hits"), 8, &Options::new()).unwrap();
    let hits = &words(&report)[0];
    let mut child = fork(|| {
        shmipc_core::fault::disable_claim_recovery();
        WAIT_MS.store(2_000, Ordering::Relaxed);
        stress(prefix, &make, hits);
        0
    })
    .unwrap();
    let status = child
        .join_timeout(Duration::from_secs(150))
        .expect("waitpid")
        .unwrap_or_else(|| panic!("the run without recovery hung past its own timeouts"));
    let hit = hits.load(Ordering::SeqCst);
    assert_eq!(
        status,
        ExitStatus::Code(shmipc::process::PANIC_EXIT_CODE),
        "the stress run with claim recovery off must fail ({hit} kills inside a window)"
    );
    assert!(hit > 0, "it failed, but no kill landed inside a window");
}

// -- MPMC Queue<u64> ---------------------------------------------------------

/// An item: id in the low 32 bits, a check derived from it in the high 32.
fn mpmc_item(id: u64) -> u64 {
    (id.wrapping_mul(0x9e37_79b9) ^ 0x5bd1_e995) << 32 | id
}

fn mpmc_id(v: u64) -> Option<u64> {
    let id = v & 0xffff_ffff;
    (mpmc_item(id) == v).then_some(id)
}

struct Mpmc {
    name: String,
    q: Queue<u64>,
}

impl Subject for Mpmc {
    fn produce(&self, books: &Books, p: u64) -> i32 {
        let q = Queue::<u64>::open(&self.name).unwrap();
        for seq in 0..PER_PRODUCER {
            let id = p * PER_PRODUCER + seq;
            // Every 8th push pauses between claiming its slot and
            // publishing it (a test hook), so that kills land inside that
            // window often, not once in a blue moon.
            let r = if seq % 8 == 0 {
                q.push_pausing(mpmc_item(id), wait(), || pause(books.producer_window(p)))
            } else {
                q.push_timeout(mpmc_item(id), wait())
            };
            if r.is_err() {
                return 2;
            }
            set_bit(books.done(), id);
        }
        0
    }

    fn consume(&self, books: &Books, slot: usize) -> i32 {
        let q = Queue::<u64>::open(&self.name).unwrap();
        let busy = &books.stats()[BUSY + slot];
        for k in 0.. {
            busy.store(1, Ordering::SeqCst);
            // Likewise, every 8th pop pauses holding its claim.
            let r = if k % 8 == 0 {
                q.pop_pausing(wait(), || pause(books.consumer_window(slot)))
            } else {
                q.pop_timeout(wait())
            };
            match r {
                Ok(v) => books.receive(mpmc_id(v)),
                Err(PopError::Closed) => return 0,
                Err(_) => return 3,
            }
            busy.store(0, Ordering::SeqCst);
        }
        unreachable!()
    }

    fn close(&self) {
        self.q.close();
    }
}

/// The pause inside a claimed slot, marked in the process's window word.
fn pause(window: &AtomicU64) {
    window.store(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_micros(200));
    window.store(0, Ordering::SeqCst);
}

fn mpmc_subject(names: &Unlinker) -> Box<dyn Subject> {
    let name = names.name("q");
    let q = Queue::<u64>::create(&name, RingConfig::new(8)).unwrap();
    // The test counts as a producer until it closes the queue: consumers
    // run until the close, through moments with every producer killed.
    q.declare(End::Sender);
    Box::new(Mpmc { name, q })
}

#[test]
fn mpmc_producers_and_consumers_killed_at_random() {
    stress("crash-mpmc", mpmc_subject, &AtomicU64::new(0));
}

#[test]
fn mpmc_stress_fails_with_claim_recovery_off() {
    stress_fails_without_recovery("crash-mpmc-norec", mpmc_subject);
}

// -- ByteQueue ---------------------------------------------------------------

const MAX_MESSAGE: usize = 200;

/// A message for `id`: its length depends on the id; bytes 0..8 hold the
/// id, 8..12 the length, 12..16 a checksum of the rest, which is derived
/// from the id byte by byte.
fn message(id: u64) -> Vec<u8> {
    let len = 16 + (id.wrapping_mul(2_654_435_761) % (MAX_MESSAGE as u64 - 15)) as usize;
    let mut m = vec![0u8; len];
    m[..8].copy_from_slice(&id.to_le_bytes());
    m[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    for (i, b) in m.iter_mut().enumerate().skip(16) {
        *b = (id as usize).wrapping_mul(131).wrapping_add(i * 7) as u8;
    }
    let sum = m[16..].iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    m[12..16].copy_from_slice(&sum.to_le_bytes());
    m
}

/// The id of an intact message, or `None` if any byte is off.
fn message_id(m: &[u8]) -> Option<u64> {
    if m.len() < 16 {
        return None;
    }
    let id = u64::from_le_bytes(m[..8].try_into().unwrap());
    (id < PRODUCERS * PER_PRODUCER && message(id) == m).then_some(id)
}

struct Bytes {
    name: String,
    q: ByteQueue,
}

impl Subject for Bytes {
    fn produce(&self, books: &Books, p: u64) -> i32 {
        let q = ByteQueue::open(&self.name).unwrap();
        for seq in 0..PER_PRODUCER {
            let id = p * PER_PRODUCER + seq;
            let m = message(id);
            if seq % 2 == 0 {
                if q.send_timeout(&m, wait()).is_err() {
                    return 2;
                }
            } else {
                // Zero-copy, in two halves: a kill in between leaves a
                // half-written reservation.
                let Ok(mut g) = q.reserve_timeout(m.len(), wait()) else {
                    return 2;
                };
                let window = books.producer_window(p);
                window.store(1, Ordering::SeqCst);
                let half = m.len() / 2;
                g.write_at(0, &m[..half]).unwrap();
                std::hint::black_box(&g);
                if seq % 8 == 1 {
                    // Every 8th reservation stays open a while, so that
                    // kills land inside one often.
                    std::thread::sleep(Duration::from_micros(200));
                }
                g.write_at(half, &m[half..]).unwrap();
                window.store(0, Ordering::SeqCst);
                g.commit();
            }
            set_bit(books.done(), id);
        }
        0
    }

    fn consume(&self, books: &Books, slot: usize) -> i32 {
        let q = ByteQueue::open(&self.name).unwrap();
        let busy = &books.stats()[BUSY + slot];
        let mut buf = [0u8; MAX_MESSAGE];
        for k in 0.. {
            busy.store(1, Ordering::SeqCst);
            let r = if k % 2 == 0 {
                q.recv_into_timeout(&mut buf, wait())
            } else {
                // Borrowed in place, read in pieces, then released.
                q.recv_timeout(wait()).map(|g| {
                    let window = books.consumer_window(slot);
                    window.store(1, Ordering::SeqCst);
                    let n = g.len().min(MAX_MESSAGE);
                    for i in 0..n {
                        g.read_at(i, &mut buf[i..=i]).unwrap();
                    }
                    window.store(0, Ordering::SeqCst);
                    n
                })
            };
            match r {
                Ok(n) => books.receive(message_id(&buf[..n])),
                Err(RecvError::Closed) => return 0,
                Err(_) => return 3,
            }
            busy.store(0, Ordering::SeqCst);
        }
        unreachable!()
    }

    fn close(&self) {
        self.q.close();
    }
}

fn bytes_subject(names: &Unlinker) -> Box<dyn Subject> {
    let name = names.name("q");
    let q = ByteQueue::create(&name, BytesConfig::new(2048, MAX_MESSAGE)).unwrap();
    // As for the MPMC subject.
    q.declare(End::Sender);
    Box::new(Bytes { name, q })
}

#[test]
fn byte_queue_writers_and_readers_killed_at_random() {
    stress("crash-bytes", bytes_subject, &AtomicU64::new(0));
}

#[test]
fn byte_queue_stress_fails_with_claim_recovery_off() {
    stress_fails_without_recovery("crash-bytes-norec", bytes_subject);
}

// ---------------------------------------------------------------------------
// Kills at chosen points
// ---------------------------------------------------------------------------

#[test]
fn mpmc_producer_killed_between_claim_and_publish() {
    let (names, name) = common::segment_name("crash-mpmc-claim", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(4)).unwrap();
    let ready = Shared::<Event>::create(&names.name("ready"), ()).unwrap();
    q.push(1).unwrap();
    common::kill_a_claiming_producer(&ready, &name);
    q.push(3).unwrap();
    assert_eq!(q.try_pop(), Ok(1));
    assert_eq!(
        q.try_pop(),
        Err(PopError::Empty),
        "the dead claim is in the way"
    );
    let t = Instant::now();
    assert_eq!(q.pop_timeout(wait()), Ok(3), "skipped within an interval");
    eprintln!("dead producer's slot skipped after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(5));
    for i in 10..30 {
        q.push(i).unwrap();
        assert_eq!(q.pop(), Ok(i));
    }
}

#[test]
fn mpmc_consumer_killed_between_claim_and_free() {
    let (names, name) = common::segment_name("crash-mpmc-pop", "q");
    let q = Queue::<u64>::create(&name, RingConfig::new(2)).unwrap();
    let ready = Shared::<Event>::create(&names.name("ready"), ()).unwrap();
    q.push(1).unwrap();
    q.push(2).unwrap();
    kill_after(&ready, || {
        Queue::<u64>::open(&name)
            .unwrap()
            .claim_pop_and_stop()
            .unwrap();
    });
    assert_eq!(q.try_pop(), Ok(2));
    // The next push goes to the slot the dead consumer claimed.
    assert_eq!(
        q.try_push(3),
        Err(PushError::Full),
        "the dead consumer's slot is in the way"
    );
    let t = Instant::now();
    q.push_timeout(3, wait()).unwrap();
    eprintln!("dead consumer's slot freed after {:?}", t.elapsed());
    q.push(4).unwrap();
    // Item 1 was being received by the dead consumer: lost, and only it.
    assert_eq!(q.pop(), Ok(3));
    assert_eq!(q.pop(), Ok(4));
    assert_eq!(q.try_pop(), Err(PopError::Empty));
}

#[test]
fn byte_writer_killed_between_reserve_and_commit() {
    let (names, name) = common::segment_name("crash-bytes-reserve", "q");
    let q = ByteQueue::create(&name, BytesConfig::new(1024, 64)).unwrap();
    let ready = Shared::<Event>::create(&names.name("ready"), ()).unwrap();
    q.send(b"before").unwrap();
    common::kill_a_reserving_writer(&ready, &name);
    q.send(b"after").unwrap();
    assert_eq!(q.recv_vec_timeout(wait()).unwrap(), b"before");
    assert_eq!(q.try_recv().err(), Some(RecvError::Empty));
    let t = Instant::now();
    assert_eq!(q.recv_vec_timeout(wait()).unwrap(), b"after");
    eprintln!("dead writer's record skipped after {:?}", t.elapsed());
    assert_eq!(q.try_recv().err(), Some(RecvError::Empty));
}

#[test]
fn byte_reader_killed_holding_a_grant() {
    let (_names, q) = common::byte_queue_behind_a_dead_reader("crash-bytes-grant");
    assert_eq!(
        q.try_send(&[3; 40]),
        Err(SendError::Full),
        "the held record is in the way"
    );
    let t = Instant::now();
    q.send_timeout(&[3; 40], wait()).unwrap();
    eprintln!("dead reader's record freed after {:?}", t.elapsed());
    assert_eq!(q.recv_vec().unwrap(), [3; 40]);
}

/// An SPSC item that carries its own check.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Item([u64; 4]);

impl Item {
    fn new(generation: u64, seq: u64) -> Item {
        let v = generation << 48 | seq;
        Item([v, v.wrapping_mul(3) + 1, !v, v.rotate_left(17) ^ 0xa5a5])
    }
}

#[test]
fn spsc_producer_killed_mid_stream_then_replaced() {
    let (_names, name) = common::segment_name("crash-spsc", "q");
    let q = SpscQueue::<Item>::create(&name, RingConfig::new(64)).unwrap();
    let mut rx = q.take_consumer().unwrap();
    let mut rng = Rng::seeded();
    let produce = |generation: u64| -> i32 {
        let mut tx = SpscQueue::<Item>::producer(&name).unwrap();
        let mut seq = 0u64;
        let mut batch = Vec::new();
        loop {
            batch.clear();
            batch.extend((0..1 + seq % 7).map(|k| Item::new(generation, seq + k)));
            match tx.push_slice(&batch) {
                Ok(n) => seq += n as u64,
                Err(PushError::Full) => std::thread::yield_now(),
                Err(e) => panic!("producer {generation}: {e}"),
            }
        }
    };
    let mut child = fork(|| produce(1)).unwrap();
    let mut expected = 0u64;
    let mut out = [Item([0; 4]); 16];
    // Take a while of the stream, then kill the producer mid-push.
    let until = Instant::now() + Duration::from_millis(20 + rng.below(30));
    while Instant::now() < until {
        if let Ok(n) = rx.pop_slice(&mut out) {
            for item in &out[..n] {
                assert_eq!(*item, Item::new(1, expected), "whole items, in order");
                expected += 1;
            }
        }
    }
    child.kill().unwrap();
    assert_eq!(join(&mut child), ExitStatus::Signal(libc::SIGKILL));
    // Drain what it published; nothing torn, nothing out of order.
    while let Ok(item) = rx.try_pop() {
        assert_eq!(item, Item::new(1, expected));
        expected += 1;
    }
    assert!(expected > 0);
    // A new producer reclaims the role and carries on.
    let mut child = fork(|| produce(2)).unwrap();
    let mut next = 0u64;
    while next < 1000 {
        // Until the new producer has claimed the role, the queue has no
        // producer: end of stream, which a consumer expecting a
        // replacement waits through.
        let item = match rx.pop_timeout(wait()) {
            Err(PopError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            r => r.expect("the new producer streams"),
        };
        assert_eq!(item, Item::new(2, next));
        next += 1;
    }
    child.kill().unwrap();
    join(&mut child);
}
