//! A role held by a real process — an SPSC consumer, a pipe's end B — is
//! SIGKILLed, at random moments of a stream and while blocked in a
//! receive; a new process takes the role over and the stream goes on. The
//! parent, which holds the other side and is never killed, checks the loss
//! accounting exactly:
//!
//! - nothing is delivered twice and nothing torn (every item or message is
//!   checked against its sequence number);
//! - each consumer receives a contiguous run of the stream, and the next
//!   one starts where it stopped, except that a consumer killed while
//!   `busy` (from just before a pop or receive until the items it returned
//!   are recorded) may lose what that one call returned: at most `BATCH`
//!   items of an SPSC `pop_slice`, at most one pipe message;
//! - a consumer killed while blocked in a receive on an empty queue loses
//!   nothing: the next one starts exactly at the next item sent;
//! - on the pipe, end B's own sends (an acknowledgement per message) lose
//!   at most the one being sent when it was killed, and arrive in order.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, join, Rng};
use shmipc::sync::{AtomicU64, Ordering};
use shmipc::{
    fork, BytesConfig, Child, ExitStatus, Named, Options, Pipe, PipeEnd, PopError, PushError,
    RecvError, RingConfig, Segment, SendError, SpscProducer, SpscQueue,
};

const WAIT: Duration = Duration::from_secs(30);
/// Consumers killed at random moments of the stream, before the one killed
/// while blocked and the last one, which finishes.
const RANDOM_KILLS: usize = 6;
const GENERATIONS: usize = RANDOM_KILLS + 2;
/// The most items one SPSC `pop_slice` of the consumers returns.
const BATCH: usize = 8;
/// Items (or messages) the stream carries in all.
const TOTAL: u64 = 200_000;

/// The shared accounting, word by word: per consumer generation `g`,
/// `FIRST + g` and `NEXT + g` hold one more than the first and the last
/// sequence number it recorded (0: none yet), `BUSY + g` is 1 from just
/// before each receive until what it returned is recorded, `BLOCKED + g`
/// is 1 while it waits in a blocking receive on an empty queue, `BAD + g`
/// counts what it found out of order or torn. Then a bitmap of received
/// sequence numbers.
const FIRST: usize = 0;
const NEXT: usize = FIRST + GENERATIONS;
const BUSY: usize = NEXT + GENERATIONS;
const BLOCKED: usize = BUSY + GENERATIONS;
const BAD: usize = BLOCKED + GENERATIONS;
const DUPLICATES: usize = BAD + GENERATIONS;
const BITS: usize = DUPLICATES + 1;
const WORDS: usize = BITS + TOTAL as usize / 64 + 1;

struct Books {
    seg: Segment,
}

impl Books {
    fn create(name: &str) -> Books {
        Books {
            seg: Segment::create_with(name, WORDS * 8, &Options::new()).unwrap(),
        }
    }

    fn w(&self, i: usize) -> &AtomicU64 {
        assert!(i < WORDS);
        // SAFETY: the segment's memory is 128-byte aligned, WORDS * 8
        // bytes long, mapped as long as `self`, and used only through
        // these atomics, here and in the forked children.
        unsafe { &*self.seg.as_ptr().cast::<AtomicU64>().add(i) }
    }

    fn get(&self, i: usize) -> u64 {
        self.w(i).load(Ordering::SeqCst)
    }

    fn set(&self, i: usize, v: u64) {
        self.w(i).store(v, Ordering::SeqCst)
    }

    fn received(&self, seq: u64) -> bool {
        let mask = 1u64 << (seq % 64);
        self.get(BITS + (seq / 64) as usize) & mask != 0
    }

    /// Records `seq` as received by generation `g`, checking that it
    /// continues the generation's run.
    fn record(&self, g: usize, seq: u64) {
        let next = self.get(NEXT + g);
        if next == 0 {
            self.set(FIRST + g, seq + 1);
        } else if seq != next {
            self.w(BAD + g).fetch_add(1, Ordering::SeqCst);
        }
        let mask = 1u64 << (seq % 64);
        if self
            .w(BITS + (seq / 64) as usize)
            .fetch_or(mask, Ordering::SeqCst)
            & mask
            != 0
        {
            self.w(DUPLICATES).fetch_add(1, Ordering::SeqCst);
        }
        self.set(NEXT + g, seq + 1);
    }

    /// The loss accounting after the last generation: see the file's
    /// documentation. `bound(g)` is what generation `g`'s death may cost
    /// if it was busy; the last generation was not killed.
    fn check(&self, sent: u64, blocked_gen: usize, bound: u64) {
        assert_eq!(self.get(DUPLICATES), 0, "items delivered twice");
        let (mut lost, mut busy) = (0, 0);
        for g in 0..GENERATIONS {
            assert_eq!(
                self.get(BAD + g),
                0,
                "generation {g} got items out of order or torn"
            );
            let (first, next) = (self.get(FIRST + g), self.get(NEXT + g));
            assert!(first > 0, "generation {g} received nothing");
            if g + 1 == GENERATIONS {
                assert_eq!(next, sent, "the last consumer got everything to the end");
                continue;
            }
            let resume = self.get(FIRST + g + 1) - 1;
            // Killed inside `record`, after the bit and before `NEXT`.
            let next = if next < resume && self.received(next) {
                assert_eq!(self.get(BUSY + g), 1, "a half-recorded item, not busy");
                next + 1
            } else {
                next
            };
            assert!(
                resume >= next,
                "generation {} repeated what {g} recorded",
                g + 1
            );
            let gap = resume - next;
            let allowed = if g == blocked_gen {
                0
            } else if self.get(BUSY + g) == 1 {
                bound
            } else {
                0
            };
            assert!(
                gap <= allowed,
                "generation {g} was killed {} and {gap} items after its last went missing \
                 (allowed {allowed})",
                if self.get(BUSY + g) == 1 {
                    "busy"
                } else {
                    "idle"
                }
            );
            for s in next..resume {
                assert!(
                    !self.received(s),
                    "item {s} in a gap was received after all"
                );
            }
            lost += gap;
            busy += self.get(BUSY + g);
        }
        let received = (0..sent).filter(|&s| self.received(s)).count() as u64;
        assert_eq!(
            received + lost,
            sent,
            "every item received or accounted lost"
        );
        eprintln!(
            "{sent} sent; {RANDOM_KILLS} kills at random moments, {busy} of them (the blocked \
             one included) inside a receive, cost {lost}"
        );
    }
}

/// The state letter of `pid` in `/proc/<pid>/stat` (`S`: asleep in the
/// kernel, here in the futex wait of a blocking receive).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits until consumer `g` (process `child`) has recorded everything
/// sent and sleeps in its blocking receive, then for longer than one
/// liveness slice, so that it is well inside the wait.
fn until_blocked(books: &Books, g: usize, child: &Child, sent: u64) {
    assert!(
        eventually(WAIT, || books.get(NEXT + g) == sent
            && books.get(BLOCKED + g) == 1
            && proc_state(child.pid()) == Some('S')),
        "consumer {g} never blocked on the drained queue"
    );
    std::thread::sleep(Duration::from_millis(120));
    // It wakes briefly once a slice to look for a dead peer: asleep again.
    assert!(
        eventually(WAIT, || proc_state(child.pid()) == Some('S')),
        "still blocked"
    );
    assert_eq!(
        (books.get(NEXT + g), books.get(BLOCKED + g)),
        (sent, 1),
        "nothing more came"
    );
}

fn kill(child: &mut Child) {
    child.kill().unwrap();
    assert_eq!(join(child), ExitStatus::Signal(libc::SIGKILL));
}

/// An SPSC item that carries its own check.
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Item([u64; 4]);

impl Item {
    fn new(seq: u64) -> Item {
        Item([
            seq,
            seq.wrapping_mul(3) + 1,
            !seq,
            seq.rotate_left(17) ^ 0xa5a5,
        ])
    }

    /// The sequence number, if the item is whole.
    fn seq(&self) -> Option<u64> {
        (*self == Item::new(self.0[0])).then_some(self.0[0])
    }
}

/// Consumer generation `g`: takes the role over and records what it pops
/// until the queue is closed and drained. Blocks (with `BLOCKED` set) when
/// the queue is empty.
fn spsc_consume(name: &str, books: &Books, g: usize) -> i32 {
    let mut rx = SpscQueue::<Item>::consumer(name).unwrap();
    let mut out = [Item([0; 4]); BATCH];
    loop {
        books.set(BUSY + g, 1);
        let n = match rx.pop_slice(&mut out) {
            Ok(n) => n,
            Err(PopError::Empty) => {
                books.set(BLOCKED + g, 1);
                let r = rx.pop_timeout(WAIT);
                books.set(BLOCKED + g, 0);
                match r {
                    Ok(item) => {
                        out[0] = item;
                        1
                    }
                    Err(PopError::Closed) => return 0,
                    Err(e) => panic!("consumer {g}: {e}"),
                }
            }
            Err(PopError::Closed) => return 0,
            Err(e) => panic!("consumer {g}: {e}"),
        };
        for item in &out[..n] {
            match item.seq() {
                Some(seq) => books.record(g, seq),
                None => {
                    books.w(BAD + g).fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        books.set(BUSY + g, 0);
    }
}

/// Pushes the stream on until `enough(sent)` (or the stream's end, or `WAIT`
/// passes).
fn push_until(tx: &mut SpscProducer<Item>, sent: &mut u64, mut enough: impl FnMut(u64) -> bool) {
    let give_up = Instant::now() + WAIT;
    while !enough(*sent) && *sent < TOTAL && Instant::now() < give_up {
        match tx.try_push(Item::new(*sent)) {
            Ok(()) => *sent += 1,
            Err(PushError::Full) => std::thread::yield_now(),
            Err(e) => panic!("producer: {e}"),
        }
    }
}

/// How many items generation `g` has recorded.
fn recorded(books: &Books, g: usize) -> u64 {
    // `record` stores FIRST before NEXT: read them the other way round.
    match books.get(NEXT + g) {
        0 => 0,
        next => next + 1 - books.get(FIRST + g),
    }
}

/// A random moment of generation `g`'s stream: after it has recorded
/// 1 to `most` items, and then a few microseconds more.
fn random_moment<'b>(
    rng: &mut Rng,
    books: &'b Books,
    g: usize,
    most: u64,
) -> impl FnMut(u64) -> bool + 'b {
    let target = 1 + rng.below(most);
    let extra = Duration::from_micros(rng.below(300));
    let mut reached: Option<Instant> = None;
    move |_| match reached {
        None if recorded(books, g) >= target => {
            reached = Some(Instant::now());
            false
        }
        None => false,
        Some(t) => t.elapsed() >= extra,
    }
}

#[test]
fn an_spsc_consumer_killed_mid_stream_and_while_blocked_is_replaced() {
    let (names, name) = common::segment_name("kill-spsc-consumer", "q");
    let q = SpscQueue::<Item>::create(&name, RingConfig::new(64)).unwrap();
    let books = Books::create(&names.name("books"));
    let mut tx = q.take_producer().unwrap();
    let mut rng = Rng::seeded();
    eprintln!("seed {}", rng.0);
    let mut sent = 0u64;
    for g in 0..GENERATIONS {
        let mut child = fork(|| spsc_consume(&name, &books, g)).unwrap();
        if g == RANDOM_KILLS {
            // Killed while blocked in pop on the drained queue.
            let stop = sent + 1000;
            push_until(&mut tx, &mut sent, |s| s >= stop);
            until_blocked(&books, g, &child, sent);
            kill(&mut child);
        } else if g + 1 < GENERATIONS {
            // Killed at a random moment of the stream, the producer still
            // pushing.
            let moment = random_moment(&mut rng, &books, g, 20_000);
            push_until(&mut tx, &mut sent, moment);
            kill(&mut child);
        } else {
            // The last one gets the rest of the stream and the close.
            push_until(&mut tx, &mut sent, |_| false);
            assert_eq!(sent, TOTAL);
            tx.close();
            assert_eq!(join(&mut child), ExitStatus::Code(0));
        }
    }
    books.check(sent, RANDOM_KILLS, BATCH as u64);
}

/// Pipe message `seq`: its number, then bytes derived from it, of a
/// length from 8 to `PIPE_MAX`.
fn message(seq: u64) -> Vec<u8> {
    let len = 8 + (seq as usize * 7919) % (PIPE_MAX - 7);
    let mut m = vec![0u8; len];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    for (k, b) in m.iter_mut().enumerate().skip(8) {
        *b = (seq as usize ^ k).wrapping_mul(31) as u8;
    }
    m
}

fn message_seq(m: &[u8]) -> Option<u64> {
    let seq = u64::from_le_bytes(m.get(..8)?.try_into().ok()?);
    (m == message(seq)).then_some(seq)
}

/// End B's acknowledgement of message `seq`, sent by generation `g`.
fn ack(g: usize, seq: u64) -> [u8; 24] {
    let mut a = [0u8; 24];
    a[..8].copy_from_slice(&(g as u64).to_le_bytes());
    a[8..16].copy_from_slice(&seq.to_le_bytes());
    a[16..].copy_from_slice(&(seq ^ 0x5a5a_5a5a_5a5a_5a5a).to_le_bytes());
    a
}

const PIPE_MAX: usize = 300;
/// Messages the pipe's stream carries in all.
const PIPE_TOTAL: u64 = TOTAL / 4;
/// The sequence number that ends the stream (acknowledged, then end B
/// exits).
const STOP: u64 = u64::MAX;

/// End B, generation `g`: takes the end over, records each message and
/// acknowledges it, until the stop message.
fn pipe_end_b(name: &str, books: &Books, g: usize) -> i32 {
    let b = Pipe::open(name).unwrap();
    let mut buf = vec![0u8; PIPE_MAX];
    loop {
        books.set(BUSY + g, 1);
        let n = match b.try_recv_into(&mut buf) {
            Ok(n) => n,
            Err(RecvError::Empty) => {
                books.set(BLOCKED + g, 1);
                let r = b.recv_into_timeout(&mut buf, WAIT);
                books.set(BLOCKED + g, 0);
                r.unwrap_or_else(|e| panic!("end B {g}: {e}"))
            }
            Err(e) => panic!("end B {g}: {e}"),
        };
        let seq = if n == 8 && buf[..8] == STOP.to_le_bytes() {
            STOP
        } else if let Some(seq) = message_seq(&buf[..n]) {
            books.record(g, seq);
            seq
        } else {
            books.w(BAD + g).fetch_add(1, Ordering::SeqCst);
            continue;
        };
        books.set(BUSY + g, 0);
        b.send_timeout(&ack(g, seq), WAIT)
            .unwrap_or_else(|e| panic!("end B {g} acknowledging {seq}: {e}"));
        if seq == STOP {
            return 0;
        }
    }
}

/// What end A has seen of the acknowledgements.
#[derive(Default)]
struct Acks {
    /// Per generation: how many, and the last sequence number.
    count: [u64; GENERATIONS],
    last: [Option<u64>; GENERATIONS],
    stopped: bool,
}

impl Acks {
    fn take(&mut self, m: &[u8], books: &Books) {
        assert_eq!(m.len(), 24, "an acknowledgement is 24 bytes");
        let g = u64::from_le_bytes(m[..8].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(m[8..16].try_into().unwrap());
        assert!(g < GENERATIONS, "generation {g}");
        assert_eq!(m, ack(g, seq), "a torn acknowledgement");
        if seq == STOP {
            self.stopped = true;
            return;
        }
        assert!(books.received(seq), "acknowledged {seq}, never recorded");
        if let Some(prev) = self.last[g] {
            assert_eq!(
                seq,
                prev + 1,
                "generation {g}'s acknowledgements in order, none lost"
            );
        } else {
            assert_eq!(
                seq + 1,
                books.get(FIRST + g),
                "generation {g} acknowledges from its first"
            );
        }
        for h in g + 1..GENERATIONS {
            assert_eq!(
                self.count[h], 0,
                "an acknowledgement of {g} after one of {h}"
            );
        }
        self.last[g] = Some(seq);
        self.count[g] += 1;
    }

    /// Takes the acknowledgements that are there.
    fn drain(&mut self, a: &PipeEnd, buf: &mut [u8], books: &Books) {
        loop {
            match a.try_recv_into(buf) {
                Ok(n) => self.take(&buf[..n], books),
                // Disconnected: end B is dead and not yet claimed again.
                Err(RecvError::Empty | RecvError::Disconnected) => return,
                Err(e) => panic!("end A: {e}"),
            }
        }
    }

    /// Takes acknowledgements until none comes for longer than a liveness
    /// slice: that blocking receive turns a dead end B's unfinished
    /// acknowledgement into a skip.
    fn drain_all(&mut self, a: &PipeEnd, buf: &mut [u8], books: &Books) {
        loop {
            match a.recv_into_timeout(buf, Duration::from_millis(120)) {
                Ok(n) => self.take(&buf[..n], books),
                // Disconnected: end B is dead and not yet claimed again.
                Err(RecvError::Timeout | RecvError::Disconnected) => return,
                Err(e) => panic!("end A: {e}"),
            }
        }
    }
}

/// Sends the stream on until `enough(sent)` (or its end, or `WAIT`
/// passes), draining the
/// acknowledgements as it goes. A send blocks for longer than a liveness
/// slice when the ring is full, so that a dead end B's claim on a record
/// is freed.
fn send_for(
    a: &PipeEnd,
    acks: &mut Acks,
    buf: &mut [u8],
    books: &Books,
    sent: &mut u64,
    mut enough: impl FnMut(u64) -> bool,
) {
    let give_up = Instant::now() + WAIT;
    while !enough(*sent) && *sent < PIPE_TOTAL && Instant::now() < give_up {
        match a.send_timeout(&message(*sent), Duration::from_millis(100)) {
            Ok(()) => *sent += 1,
            Err(SendError::Timeout) => {}
            // The ring is full and end B is dead, its successor not yet
            // there: a broken pipe until it claims the end.
            Err(SendError::Disconnected) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("end A: {e}"),
        }
        acks.drain(a, buf, books);
    }
}

#[test]
fn a_pipe_end_killed_mid_stream_and_while_blocked_is_taken_over() {
    let (names, name) = common::segment_name("kill-pipe-end", "p");
    let a = Pipe::create(&name, BytesConfig::new(4096, PIPE_MAX)).unwrap();
    let books = Books::create(&names.name("books"));
    let mut rng = Rng::seeded();
    eprintln!("seed {}", rng.0);
    let mut acks = Acks::default();
    let mut buf = vec![0u8; PIPE_MAX];
    let mut sent = 0u64;
    for g in 0..GENERATIONS {
        let mut child = fork(|| pipe_end_b(&name, &books, g)).unwrap();
        if g == RANDOM_KILLS {
            let stop = sent + 200;
            send_for(&a, &mut acks, &mut buf, &books, &mut sent, |s| s >= stop);
            until_blocked(&books, g, &child, sent);
            kill(&mut child);
            acks.drain_all(&a, &mut buf, &books);
            assert_eq!(
                acks.count[g],
                sent + 1 - books.get(FIRST + g),
                "blocked: every ack came"
            );
        } else if g + 1 < GENERATIONS {
            let moment = random_moment(&mut rng, &books, g, 4_000);
            send_for(&a, &mut acks, &mut buf, &books, &mut sent, moment);
            kill(&mut child);
            acks.drain_all(&a, &mut buf, &books);
            // Every recorded message was acknowledged, but perhaps the last.
            let recorded = books.get(NEXT + g) + 1 - books.get(FIRST + g);
            assert!(
                acks.count[g] + 1 >= recorded && acks.count[g] <= recorded,
                "generation {g}: {} acknowledgements for {recorded} messages",
                acks.count[g]
            );
        } else {
            send_for(&a, &mut acks, &mut buf, &books, &mut sent, |_| false);
            assert_eq!(sent, PIPE_TOTAL);
            a.send_timeout(&STOP.to_le_bytes(), WAIT).unwrap();
            assert_eq!(join(&mut child), ExitStatus::Code(0));
            acks.drain_all(&a, &mut buf, &books);
            assert!(acks.stopped, "the stop was acknowledged");
            let recorded = books.get(NEXT + g) + 1 - books.get(FIRST + g);
            assert_eq!(
                acks.count[g], recorded,
                "the last end B acknowledged everything"
            );
        }
    }
    books.check(sent, RANDOM_KILLS, 1);
}
