//! Attacks on the promises of issue [peers] #12 as implemented: end-of-stream
//! (`Disconnected` once every sender is gone, nothing acknowledged lost
//! before it), no false end-of-stream, and `shmipc::wait` across real
//! processes.
//!
//! Tests that pass are guards (each says how it was checked that it can
//! fail); tests marked `#[ignore = "known defect: ..."]` show a broken
//! promise of the current code.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use common::{join, Rng, LONG, PATIENCE, SEVERAL_CHECKS};
use shmipc::wait::{wait, Interest};
use shmipc::{
    fork, AtomicU64, ByteQueue, BytesConfig, Child, Event, ExitStatus, Named, Pipe, PopError,
    Queue, RecvError, RingConfig, Shared, SpscQueue, TypedPipe, TypedQueue, Unlinker,
};

/// The bound asserted on the time from the last SIGKILL to `Disconnected`
/// (the promise is about 50 ms, "within 100 ms" in the issue; this leaves
/// room for a loaded 2-core machine; the worst figure is printed).
const EOS_BOUND: Duration = Duration::from_millis(1000);

fn config() -> BytesConfig {
    BytesConfig::new(1024, 64)
}

/// The six kinds of object that report end-of-stream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Pipe,
    Queue,
    Bytes,
    Spsc,
    TypedQueue,
    TypedPipe,
}

const KINDS: [Kind; 6] = [
    Kind::Pipe,
    Kind::Queue,
    Kind::Bytes,
    Kind::Spsc,
    Kind::TypedQueue,
    Kind::TypedPipe,
];

impl Kind {
    /// How many processes may send at once (one for the one-to-one kinds).
    fn senders(self) -> usize {
        match self {
            Kind::Queue | Kind::Bytes | Kind::TypedQueue => 3,
            Kind::Pipe | Kind::Spsc | Kind::TypedPipe => 1,
        }
    }
}

/// What a receive returned, reduced to what the tests judge.
#[derive(Debug, PartialEq)]
enum Got {
    Item(u64),
    Timeout,
    Disconnected,
    Other(String),
}

/// The receiving end of one object of each kind.
enum Rx {
    Pipe(Pipe),
    Queue(Queue<u64>),
    Bytes(ByteQueue),
    Spsc(shmipc::SpscConsumer<u64>),
    TypedQueue(TypedQueue<u64>),
    TypedPipe(shmipc::TypedPipeEnd<u64>),
}

fn bytes_item(r: Result<Vec<u8>, RecvError>) -> Got {
    match r {
        Ok(v) => match <[u8; 8]>::try_from(v.as_slice()) {
            Ok(b) => Got::Item(u64::from_ne_bytes(b)),
            Err(_) => Got::Other(format!("a message of {} bytes", v.len())),
        },
        Err(RecvError::Timeout) => Got::Timeout,
        Err(RecvError::Disconnected) => Got::Disconnected,
        Err(e) => Got::Other(format!("{e:?}")),
    }
}

fn pop_item(r: Result<u64, PopError>) -> Got {
    match r {
        Ok(v) => Got::Item(v),
        Err(PopError::Timeout) => Got::Timeout,
        Err(PopError::Disconnected) => Got::Disconnected,
        Err(e) => Got::Other(format!("{e:?}")),
    }
}

fn typed_item(r: Result<u64, shmipc::MessageError>) -> Got {
    match r {
        Ok(v) => Got::Item(v),
        Err(e) if e.is_timeout() => Got::Timeout,
        Err(e) if e.is_disconnected() => Got::Disconnected,
        Err(e) => Got::Other(format!("{e}")),
    }
}

impl Rx {
    fn create(kind: Kind, name: &str) -> Rx {
        match kind {
            Kind::Pipe => Rx::Pipe(Pipe::create(name, config()).unwrap()),
            Kind::Queue => Rx::Queue(Queue::create(name, RingConfig::new(16)).unwrap()),
            Kind::Bytes => Rx::Bytes(ByteQueue::create(name, config()).unwrap()),
            Kind::Spsc => Rx::Spsc(
                SpscQueue::<u64>::create(name, RingConfig::new(16))
                    .unwrap()
                    .take_consumer()
                    .unwrap(),
            ),
            Kind::TypedQueue => Rx::TypedQueue(TypedQueue::create(name, config()).unwrap()),
            Kind::TypedPipe => Rx::TypedPipe(TypedPipe::create(name, config()).unwrap()),
        }
    }

    fn recv(&mut self, t: Duration) -> Got {
        match self {
            Rx::Pipe(p) => bytes_item(p.recv_vec_timeout(t)),
            Rx::Queue(q) => pop_item(q.pop_timeout(t)),
            Rx::Bytes(q) => bytes_item(q.recv_vec_timeout(t)),
            Rx::Spsc(c) => pop_item(c.pop_timeout(t)),
            Rx::TypedQueue(q) => typed_item(q.get_timeout(t)),
            Rx::TypedPipe(p) => typed_item(p.recv_timeout(t)),
        }
    }

    fn interest(&self) -> Interest<'_> {
        match self {
            Rx::Pipe(p) => Interest::readable(p),
            Rx::Queue(q) => Interest::readable(q),
            Rx::Bytes(q) => Interest::readable(q),
            Rx::Spsc(c) => Interest::readable(c),
            Rx::TypedQueue(q) => Interest::readable(q),
            Rx::TypedPipe(p) => Interest::readable(p),
        }
    }
}

/// Opens the sending end of `kind` by name in a child and sends `first`,
/// `first + 1`, ... for ever, storing after each acknowledged send how
/// many were acknowledged. Returns only on an error (an exit code).
fn send_for_ever(kind: Kind, name: &str, first: u64, acked: &AtomicU64) -> i32 {
    let mut i = first;
    macro_rules! each {
        ($send:expr) => {
            loop {
                if $send(i).is_err() {
                    return 5;
                }
                i += 1;
                acked.store(i - first, SeqCst);
            }
        };
    }
    match kind {
        Kind::Pipe => {
            let b = Pipe::open(name).unwrap();
            each!(|v: u64| b.send(&v.to_ne_bytes()))
        }
        Kind::Queue => {
            let q = Queue::<u64>::open(name).unwrap();
            each!(|v: u64| q.push(v))
        }
        Kind::Bytes => {
            let q = ByteQueue::open(name).unwrap();
            each!(|v: u64| q.send(&v.to_ne_bytes()))
        }
        Kind::Spsc => {
            let mut p = SpscQueue::<u64>::producer(name).unwrap();
            each!(|v: u64| p.push(v))
        }
        Kind::TypedQueue => {
            let q = TypedQueue::<u64>::open(name).unwrap();
            each!(|v: u64| q.put(&v))
        }
        Kind::TypedPipe => {
            let b = TypedPipe::<u64>::open(name).unwrap();
            each!(|v: u64| b.send(&v))
        }
    }
}

/// Where sender `k`'s numbers start: the high bits name the sender.
fn base(k: usize) -> u64 {
    (k as u64) << 40
}

/// One round of the SIGKILL attack on `kind`: the senders send as fast as
/// they can while this process receives; after a random 1-40 ms every
/// sender is SIGKILLed (wherever it is: mid-send, between reserve and
/// commit, asleep on a full ring). The receiver must then get every
/// acknowledged message of each sender, in order with no gap and no
/// duplicate, then `Disconnected` within [`EOS_BOUND`] of the last kill.
/// Returns the time from the last kill to `Disconnected`.
fn kill_round(kind: Kind, rng: &mut Rng) -> Duration {
    let (_names, name) = common::segment_name("atk-peos-kill", "o");
    let mut rx = Rx::create(kind, &name);
    let n = kind.senders();
    let acked: Vec<Shared<AtomicU64>> = (0..n)
        .map(|_| Shared::<AtomicU64>::anon(0).unwrap())
        .collect();
    let mut children: Vec<Child> = (0..n)
        .map(|k| {
            let (name, acked) = (&name, &acked[k]);
            fork(move || send_for_ever(kind, name, base(k), acked)).unwrap()
        })
        .collect();
    let pids: Vec<i32> = children.iter().map(|c| c.pid() as i32).collect();
    // Kill only once every sender has sent (a sender counts from then, or
    // from its claim: one killed before would leave nothing to end), then
    // after a random 0-20 ms, and the first one alone a little earlier, so
    // that the others' messages may lie behind its dead claim.
    let delay = Duration::from_micros(rng.below(20_000));
    let stagger = Duration::from_micros(rng.below(2_000));
    let acked_ref = &acked;
    let mut next: Vec<u64> = (0..n).map(base).collect();
    let next_ref = &mut next;
    let (end, done, (killed, exited)) = std::thread::scope(|scope| {
        let killer = scope.spawn(move || {
            for a in acked_ref {
                let until = Instant::now() + LONG;
                while a.load(SeqCst) == 0 && Instant::now() < until {
                    std::thread::yield_now();
                }
            }
            std::thread::sleep(delay);
            let mut first = true;
            for &pid in &pids {
                // SAFETY: plain kill(2) of our own child, not yet reaped (the
                // main thread joins them only after this thread returns).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                if std::mem::take(&mut first) {
                    std::thread::sleep(stagger);
                }
            }
            let killed = Instant::now();
            for &pid in &pids {
                // SAFETY: waits, without reaping (WNOWAIT), until our own
                // child has exited (its descriptors, and so its slot's
                // lock, closed); `info` is a valid siginfo_t to fill.
                unsafe {
                    let mut info: libc::siginfo_t = std::mem::zeroed();
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    );
                }
            }
            (killed, Instant::now())
        });
        let end = loop {
            match rx.recv(PATIENCE) {
                Got::Item(v) => {
                    let k = (v >> 40) as usize;
                    assert!(k < n, "{kind:?}: a message from no sender: {v:#x}");
                    assert_eq!(
                    v, next_ref[k],
                    "{kind:?}: sender {k} out of order (a gap is a lost message, a repeat a duplicate)"
                );
                    next_ref[k] += 1;
                }
                other => break other,
            }
        };
        let done = Instant::now();
        let killed = killer.join().unwrap();
        (end, done, killed)
    });
    assert_eq!(
        end,
        Got::Disconnected,
        "{kind:?}: after every sender was SIGKILLed"
    );
    for (k, child) in children.iter_mut().enumerate() {
        assert_eq!(
            join(child),
            ExitStatus::Signal(libc::SIGKILL),
            "{kind:?}: sender {k} ended before its kill"
        );
        let acknowledged = acked[k].load(SeqCst);
        let got = next[k] - base(k);
        assert!(
            got >= acknowledged,
            "{kind:?}: sender {k}: {acknowledged} sends returned Ok, only {got} received before Disconnected"
        );
    }
    let latency = done.saturating_duration_since(killed);
    if latency > Duration::from_millis(100) {
        let got: Vec<u64> = (0..n).map(|k| next[k] - base(k)).collect();
        eprintln!(
            "{kind:?}: Disconnected {latency:?} after the last SIGKILL, {:?} after the senders had exited (received per sender: {got:?})",
            done.saturating_duration_since(exited)
        );
    }
    assert!(
        latency < EOS_BOUND,
        "{kind:?}: Disconnected {latency:?} after the last SIGKILL"
    );
    latency
}

/// Runs `round` for each of `kinds`, `ATK_ROUNDS` times (default 8), and
/// prints the worst latency it returned: the `what` that long after
/// `since`.
fn worst_of_rounds(
    kinds: impl IntoIterator<Item = Kind>,
    what: &str,
    since: &str,
    mut round: impl FnMut(Kind, &mut Rng) -> Duration,
) {
    let rounds = common::env_count("ATK_ROUNDS", 8);
    let mut rng = Rng::seeded();
    for kind in kinds {
        let mut worst = Duration::ZERO;
        for _ in 0..rounds {
            worst = worst.max(round(kind, &mut rng));
        }
        eprintln!(
            "{kind:?}: {rounds} rounds, worst {what} {:.1} ms after {since}",
            worst.as_secs_f64() * 1e3
        );
    }
}

/// Every kind, many rounds (`ATK_ROUNDS`, default 8): senders SIGKILLed
/// at random instants while sending flat out. Checked that it can fail:
/// with `Ends::gone` always answering "gone" (a local edit of ends.rs, not
/// committed) the first round fails (a pipe sender is told its receiver
/// is gone, a queue receiver reports `Disconnected` with acknowledged
/// messages unreceived); with it always answering "present", every round
/// ends in `Timeout`. (Skipping the receiver's last look behind dead
/// claims in mpmc.rs was not caught in 30 rounds: a kill rarely lands
/// between claim and publish; `attack_ends.rs` covers that path
/// deterministically.)
#[test]
fn senders_sigkilled_mid_send_lose_nothing_acknowledged_and_end_the_stream() {
    worst_of_rounds(KINDS, "end-of-stream", "the last SIGKILL", kill_round);
}

/// `wait` on a receiving end whose senders are all gone: a receive there
/// returns `Disconnected` at once, so a `wait(readable)` that does not
/// report the object ready leaves a `wait` + `try_*` loop (the README's
/// pattern) asleep for ever after its peer died: Python's
/// `multiprocessing.connection.wait` reports a connection whose other end
/// closed as ready (its `recv` raises `EOFError`), and a Unix pipe with
/// no writer left polls readable (`POLLHUP`).
#[test]
fn wait_reports_an_object_whose_senders_are_gone_as_readable() {
    let mut failures = Vec::new();
    for kind in KINDS {
        let (_names, name) = common::segment_name("atk-peos-wait-eos", "o");
        let mut rx = Rx::create(kind, &name);
        let (name_ref, acked) = (&name, Shared::<AtomicU64>::anon(0).unwrap());
        let acked_ref = &acked;
        let mut child = fork(move || {
            // One message, then exit without close (the process ends and
            // its handles go with it).
            match kind {
                Kind::Pipe => Pipe::open(name_ref)
                    .unwrap()
                    .send(&7u64.to_ne_bytes())
                    .is_ok(),
                Kind::Queue => Queue::<u64>::open(name_ref).unwrap().push(7).is_ok(),
                Kind::Bytes => ByteQueue::open(name_ref)
                    .unwrap()
                    .send(&7u64.to_ne_bytes())
                    .is_ok(),
                Kind::Spsc => SpscQueue::<u64>::producer(name_ref)
                    .unwrap()
                    .push(7)
                    .is_ok(),
                Kind::TypedQueue => TypedQueue::<u64>::open(name_ref).unwrap().put(&7).is_ok(),
                Kind::TypedPipe => TypedPipe::<u64>::open(name_ref).unwrap().send(&7).is_ok(),
            };
            acked_ref.store(1, SeqCst);
            0
        })
        .unwrap();
        assert_eq!(rx.recv(LONG), Got::Item(7), "{kind:?}");
        assert_eq!(join(&mut child), ExitStatus::Code(0), "{kind:?}");
        let started = Instant::now();
        let ready = wait(&[rx.interest()], Some(Duration::from_secs(1))).unwrap();
        let waited = started.elapsed();
        // What a receive says now: the stream is over.
        assert_eq!(rx.recv(PATIENCE), Got::Disconnected, "{kind:?}");
        if ready != [0] {
            failures.push(format!(
                "{kind:?}: wait returned {ready:?} after {waited:?}, yet a receive returns Disconnected"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// End A of a pipe (`label`) whose end B was claimed by a child process,
/// which has exited.
fn pipe_whose_reader_left(label: &str) -> (Unlinker, Pipe) {
    let (names, name) = common::segment_name(label, "p");
    let a = Pipe::create(&name, config()).unwrap();
    let mut child = fork(|| {
        let b = Pipe::open(&name).unwrap();
        drop(b.recv_vec_timeout(Duration::from_millis(1)));
        0
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    (names, a)
}

/// A pipe end whose reader is gone and whose ring is full: a send there
/// returns `Disconnected` at once (the README's table), so
/// `wait(writable)` must report it ready rather than sleep to its timeout.
#[test]
fn wait_reports_a_full_pipe_whose_reader_is_gone_as_writable() {
    let (_names, a) = pipe_whose_reader_left("atk-peos-wait-broken");
    // Fill A's outgoing ring (the peer is gone: nothing drains it).
    let mut sent = 0;
    while a.try_send(&[0u8; 60]).is_ok() {
        sent += 1;
    }
    assert!(sent > 0);
    let ready = wait(&[Interest::writable(&a)], Some(Duration::from_secs(1))).unwrap();
    assert!(
        matches!(
            a.send_timeout(&[0u8; 60], PATIENCE),
            Err(shmipc::SendError::Disconnected)
        ),
        "a send on the full pipe with no reader is Disconnected"
    );
    assert_eq!(ready, [0], "wait(writable) on a pipe a send reports broken");
}

/// SIGKILLs an orphaned grandchild (a pid this test made) when the test
/// fails, so that it does not linger; on success it has exited already.
struct KillIfPanicking(i32);

impl Drop for KillIfPanicking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: kill(2) of a process this test forked.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// A sender that forks a child, hands it its (recorded) producer and exits
/// at once: the child holds the producer, so no end-of-stream while it
/// lives; its send later arrives, and its exit ends the stream. Checked
/// that it can fail: with the fork handlers' copy of the ends word skipped
/// (a local edit of presence.rs), the receiver is told `Disconnected` as
/// soon as the first sender exits.
#[test]
fn a_sender_that_forks_and_exits_leaves_its_child_holding_the_stream() {
    for _ in 0..5 {
        let (_names, name) = common::segment_name("atk-peos-orphan", "q");
        let q = Queue::<u64>::create(&name, RingConfig::new(8)).unwrap();
        let go = Shared::<Event>::anon(()).unwrap();
        let grandchild_pid = Shared::<AtomicU64>::anon(0).unwrap();
        let (name_ref, go_ref, gpid) = (&name, &go, &grandchild_pid);
        let mut middle = fork(move || {
            let tx = Queue::<u64>::open(name_ref).unwrap();
            if tx.push(1).is_err() {
                return 5;
            }
            let Ok(child) = fork(move || {
                if !go_ref.wait_timeout(LONG) {
                    return 4;
                }
                common::sent_code(tx.push(2))
            }) else {
                return 6;
            };
            gpid.store(u64::from(child.pid()), SeqCst);
            // Exit at once, leaving the child to run on (orphaned).
            std::mem::forget(child);
            // SAFETY: ends this process without destructors.
            unsafe { libc::_exit(0) }
        })
        .unwrap();
        assert_eq!(join(&mut middle), ExitStatus::Code(0));
        assert_ne!(grandchild_pid.load(SeqCst), 0);
        let _orphan = KillIfPanicking(grandchild_pid.load(SeqCst) as i32);
        assert_eq!(q.pop_timeout(LONG), Ok(1));
        common::held_sender_sends_on_go(
            |t| q.pop_timeout(t),
            &go,
            "the orphaned child holds the producer",
            2,
        );
        assert_eq!(q.pop_timeout(PATIENCE), Err(PopError::Disconnected));
    }
}

/// A sender whose peer slot is taken over, after its death, by a
/// newcomer (a table of 2 slots: the receiver's and one more, so the
/// newcomer must land in the dead sender's slot): the dead sender's count
/// must not survive into the newcomer's tenure (the newcomer has not sent
/// yet, so the stream is over), and the newcomer, once it sends, must not
/// be judged gone while it lives. Both children are forked before this
/// process records its receiving end, so no fork copies a record into a
/// slot of the child's (which would fill the table). Checked that it can
/// fail: with the newcomer's first `open` moved before the first
/// `Disconnected` is asserted and the dead count kept (a local edit of
/// `PeerTable::claim` that skips `ends.store(0)`), the first
/// `Disconnected` times out.
#[test]
fn a_dead_senders_slot_reused_by_a_newcomer() {
    for _ in 0..5 {
        let (_names, name) = common::segment_name("atk-peos-reuse", "q");
        let q = Queue::<u64>::create_with(
            &name,
            RingConfig::new(8),
            &shmipc::Options::default().peer_slots(2),
        )
        .unwrap();
        let mut first = fork(|| {
            let tx = Queue::<u64>::open(&name).unwrap();
            let code = if tx.push(1).is_ok() { 0 } else { 5 };
            // Dies holding its count (no drop), as a killed sender does.
            // SAFETY: ends this process without destructors.
            unsafe { libc::_exit(code) }
        })
        .unwrap();
        assert_eq!(join(&mut first), ExitStatus::Code(0));
        let [open, opened, go, pushed] = [(); 4].map(|()| Shared::<Event>::anon(()).unwrap());
        let (name_ref, open_ref, opened_ref, go_ref, pushed_ref) =
            (&name, &open, &opened, &go, &pushed);
        let mut newcomer = fork(move || {
            if !open_ref.wait_timeout(LONG) {
                return 4;
            }
            // Takes the dead sender's slot (the only free one).
            let tx = Queue::<u64>::open(name_ref).unwrap();
            opened_ref.set();
            if !go_ref.wait_timeout(LONG) {
                return 4;
            }
            if tx.push(2).is_err() {
                return 5;
            }
            pushed_ref.set();
            std::thread::sleep(Duration::from_millis(600));
            common::sent_code(tx.push(3))
        })
        .unwrap();
        assert_eq!(q.pop_timeout(LONG), Ok(1));
        assert_eq!(q.pop_timeout(PATIENCE), Err(PopError::Disconnected));
        open.set();
        assert!(opened.wait_timeout(LONG));
        assert_eq!(
            q.pop_timeout(PATIENCE),
            Err(PopError::Disconnected),
            "the only sender is dead; the new holder of its slot has not sent"
        );
        // A sender counts from its first send (README "End of stream"):
        // receive only once it has sent.
        go.set();
        assert!(pushed.wait_timeout(LONG));
        assert_eq!(q.pop_timeout(LONG), Ok(2));
        assert_eq!(
            q.pop_timeout(SEVERAL_CHECKS),
            Err(PopError::Timeout),
            "false end-of-stream: the newcomer lives"
        );
        assert_eq!(q.pop_timeout(LONG), Ok(3));
        assert_eq!(join(&mut newcomer), ExitStatus::Code(0));
        assert_eq!(q.pop_timeout(PATIENCE), Err(PopError::Disconnected));
    }
}

/// What a send with no live receiver reports, reduced to what the tests
/// judge: `None` for an acknowledged send, else the error's name.
fn send_outcome<E: std::fmt::Debug>(r: Result<(), E>) -> Option<String> {
    r.err().map(|e| format!("{e:?}"))
}

/// One round of the SIGKILL attack on the receiving side: a child receives
/// flat out (holding a read grant much of the time) and is SIGKILLed at a
/// random instant after its first receive, while this process sends flat
/// out with a long timeout. Every send then fails with `Disconnected` once
/// the ring is full (a `Pipe`; a `Queue` or `ByteQueue` set to
/// `fail_sends_without_receiver`), within [`EOS_BOUND`] of the kill, and
/// never with `Timeout`. Returns the time from the kill to the failure.
fn kill_reader_round(kind: Kind, rng: &mut Rng) -> Duration {
    let (_names, name) = common::segment_name("atk-peos-kill-rx", "o");
    enum Tx {
        Pipe(Pipe),
        Queue(Queue<u64>),
        Bytes(ByteQueue),
        TypedPipe(shmipc::TypedPipeEnd<u64>),
    }
    let tx = match kind {
        Kind::Pipe => Tx::Pipe(Pipe::create(&name, config()).unwrap()),
        Kind::Queue => Tx::Queue(
            Queue::create(&name, RingConfig::new(16))
                .unwrap()
                .fail_sends_without_receiver(true),
        ),
        Kind::Bytes => Tx::Bytes(
            ByteQueue::create(&name, config())
                .unwrap()
                .fail_sends_without_receiver(true),
        ),
        Kind::TypedPipe => Tx::TypedPipe(TypedPipe::create(&name, config()).unwrap()),
        _ => unreachable!(),
    };
    let received = Shared::<AtomicU64>::anon(0).unwrap();
    let (name_ref, received_ref) = (&name, &received);
    let mut child = fork(move || {
        let mut rx = match kind {
            Kind::Pipe => Rx::Pipe(Pipe::open(name_ref).unwrap()),
            Kind::Queue => Rx::Queue(Queue::open(name_ref).unwrap()),
            Kind::Bytes => Rx::Bytes(ByteQueue::open(name_ref).unwrap()),
            Kind::TypedPipe => Rx::TypedPipe(TypedPipe::open(name_ref).unwrap()),
            _ => unreachable!(),
        };
        loop {
            match rx.recv(LONG) {
                Got::Item(_) => {
                    received_ref.fetch_add(1, SeqCst);
                }
                _ => return 5,
            }
        }
    })
    .unwrap();
    let pid = child.pid() as i32;
    let delay = Duration::from_micros(rng.below(20_000));
    let (outcome, failed, killed) = std::thread::scope(|scope| {
        let killer = scope.spawn(|| {
            let until = Instant::now() + LONG;
            while received.load(SeqCst) == 0 && Instant::now() < until {
                std::thread::yield_now();
            }
            std::thread::sleep(delay);
            // SAFETY: kill(2) of our own child, reaped only after this
            // thread is joined.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            Instant::now()
        });
        let mut i = 0u64;
        let outcome = loop {
            let r = match &tx {
                Tx::Pipe(p) => send_outcome(p.send_timeout(&i.to_ne_bytes(), PATIENCE)),
                Tx::Queue(q) => send_outcome(q.push_timeout(i, PATIENCE)),
                Tx::Bytes(q) => send_outcome(q.send_timeout(&i.to_ne_bytes(), PATIENCE)),
                Tx::TypedPipe(p) => send_outcome(p.send_timeout(&i, PATIENCE)),
            };
            if let Some(e) = r {
                break e;
            }
            i += 1;
        };
        (outcome, Instant::now(), killer.join().unwrap())
    });
    assert_eq!(
        join(&mut child),
        ExitStatus::Signal(libc::SIGKILL),
        "{kind:?}"
    );
    assert!(
        outcome.contains("Disconnected"),
        "{kind:?}: a send with no live receiver failed with {outcome}"
    );
    let latency = failed.saturating_duration_since(killed);
    assert!(
        latency < EOS_BOUND,
        "{kind:?}: the send failed {latency:?} after the receiver's SIGKILL"
    );
    latency
}

/// The receiving side SIGKILLed at random instants (mid-receive, holding
/// a read grant, asleep): the sender is told `Disconnected`, not left to
/// its timeout. Checked that it can fail: with `Ends::gone` always
/// answering "present" (a local edit), every round ends in `Timeout`.
#[test]
fn a_receiver_sigkilled_mid_receive_breaks_the_senders_pipe() {
    worst_of_rounds(
        [Kind::Pipe, Kind::Queue, Kind::Bytes, Kind::TypedPipe],
        "broken send",
        "the receiver's SIGKILL",
        kill_reader_round,
    );
}

/// 64 queues and a child process in one `wait`, 20 rounds: each round a
/// new child makes a random subset of the queues readable, one at a time
/// in a random order with random pauses, and exits. Every index a wait
/// reports is one the child made ready (or the child, once it ended),
/// each queue made ready is reported, and once all is consumed a zero
/// timeout reports nothing. Timeouts rotate through `None`,
/// `Duration::MAX`, a huge one and a plain one. Checked that it can fail:
/// with the readiness test of MPMC arms inverted (a local edit of
/// waitable.rs), the first round reports queues the child never touched.
#[test]
fn a_wait_on_64_queues_and_a_child_reports_only_what_became_ready() {
    const N: usize = 64;
    let queues: Vec<Queue<u64>> = (0..N)
        .map(|_| Queue::<u64>::anon(RingConfig::new(4)).unwrap())
        .collect();
    // This process sends too (a push records the sending end), so no queue
    // is ever at end-of-stream when a round's child exits: end-of-stream
    // is a final answer `wait` reports as readable.
    for q in &queues {
        q.try_push(u64::MAX).unwrap();
        assert_eq!(q.try_pop(), Ok(u64::MAX));
    }
    let mut rng = Rng::seeded();
    let timeouts = [
        None,
        Some(Duration::MAX),
        Some(Duration::from_secs(u64::MAX / 4)),
        Some(LONG),
    ];
    for round in 0..20u64 {
        let mask = rng.next() & rng.next() | 1 << rng.below(N as u64);
        let mut order: Vec<usize> = (0..N).filter(|i| mask >> i & 1 != 0).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let pauses: Vec<u64> = order.iter().map(|_| rng.below(3000)).collect();
        let (queues_ref, order_ref) = (&queues, &order);
        let mut child = fork(move || {
            for (&i, &p) in order_ref.iter().zip(&pauses) {
                std::thread::sleep(Duration::from_micros(p));
                if queues_ref[i].push(round).is_err() {
                    return 5;
                }
            }
            0
        })
        .unwrap();
        let mut seen = 0u64;
        let mut ended = false;
        let timeout = timeouts[round as usize % timeouts.len()];
        while seen != mask || !ended {
            let ready = {
                let mut interests: Vec<Interest<'_>> =
                    queues.iter().map(Interest::readable).collect();
                if !ended {
                    interests.push(Interest::child(&child));
                }
                wait(&interests, timeout).unwrap()
            };
            assert!(!ready.is_empty(), "round {round}: a wait timed out");
            for i in ready {
                if i == N {
                    ended = true;
                    continue;
                }
                assert!(
                    mask >> i & 1 != 0,
                    "round {round}: queue {i} reported ready; the child never pushed there"
                );
                assert!(
                    seen >> i & 1 == 0,
                    "round {round}: queue {i} reported again after its item was taken"
                );
                // Ready means published: `try_pop` gets it.
                assert_eq!(queues[i].try_pop(), Ok(round), "round {round}, queue {i}");
                seen |= 1 << i;
            }
        }
        assert_eq!(join(&mut child), ExitStatus::Code(0));
        let interests: Vec<Interest<'_>> = queues.iter().map(Interest::readable).collect();
        assert_eq!(
            wait(&interests, Some(Duration::ZERO)).unwrap(),
            Vec::<usize>::new(),
            "round {round}: everything was taken"
        );
    }
}

/// Sends `v` once through a sending end of `kind` opened by name.
fn open_and_send(kind: Kind, name: &str, v: u64) -> Box<dyn FnMut(u64) -> bool> {
    match kind {
        Kind::Pipe => {
            let b = Pipe::open(name).unwrap();
            let ok = b.send(&v.to_ne_bytes()).is_ok();
            Box::new(move |v: u64| ok && b.send(&v.to_ne_bytes()).is_ok())
        }
        Kind::Queue => {
            let q = Queue::<u64>::open(name).unwrap();
            let ok = q.push(v).is_ok();
            Box::new(move |v| ok && q.push(v).is_ok())
        }
        Kind::Bytes => {
            let q = ByteQueue::open(name).unwrap();
            let ok = q.send(&v.to_ne_bytes()).is_ok();
            Box::new(move |v: u64| ok && q.send(&v.to_ne_bytes()).is_ok())
        }
        Kind::Spsc => {
            let mut p = SpscQueue::<u64>::producer(name).unwrap();
            let ok = p.push(v).is_ok();
            Box::new(move |v| ok && p.push(v).is_ok())
        }
        Kind::TypedQueue => {
            let q = TypedQueue::<u64>::open(name).unwrap();
            let ok = q.put(&v).is_ok();
            Box::new(move |v| ok && q.put(&v).is_ok())
        }
        Kind::TypedPipe => {
            let b = TypedPipe::<u64>::open(name).unwrap();
            let ok = b.send(&v).is_ok();
            Box::new(move |v| ok && b.send(&v).is_ok())
        }
    }
}

/// A sender SIGSTOPped for a full second (twenty owner check intervals)
/// while the receiver is blocked on the empty object: it is alive, so the
/// receive returns its next message after SIGCONT, not `Disconnected`;
/// its exit then ends the stream. Every kind. Checked that it can fail:
/// with `Ends::gone` always answering "gone", the blocked receive returns
/// `Disconnected` during the stop.
#[test]
fn a_sender_stopped_for_a_second_is_not_end_of_stream() {
    for kind in KINDS {
        let (_names, name) = common::segment_name("atk-peos-stop", "o");
        let mut rx = Rx::create(kind, &name);
        let [ready, go] = common::anon_events();
        let (name_ref, ready_ref, go_ref) = (&name, &ready, &go);
        let mut child = fork(move || {
            let mut send = open_and_send(kind, name_ref, 1);
            ready_ref.set();
            // SIGSTOP lands while this waits; `go` is set during the stop.
            if !go_ref.wait_timeout(LONG) {
                return 4;
            }
            if send(2) {
                0
            } else {
                5
            }
        })
        .unwrap();
        assert!(ready.wait_timeout(LONG));
        assert_eq!(rx.recv(LONG), Got::Item(1), "{kind:?}");
        child.signal(libc::SIGSTOP).unwrap();
        go.set();
        let pid = child.pid() as i32;
        let resumer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            // SAFETY: kill(2) of our own child, reaped only later.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        });
        assert_eq!(
            rx.recv(LONG),
            Got::Item(2),
            "{kind:?}: a receive blocked through the sender's stop"
        );
        resumer.join().unwrap();
        assert_eq!(join(&mut child), ExitStatus::Code(0), "{kind:?}");
        assert_eq!(rx.recv(PATIENCE), Got::Disconnected, "{kind:?}");
    }
}

/// A sender that starts a long-lived program (`sleep 30`, through
/// `std::process::Command`, both the `posix_spawn` path and, with a
/// `pre_exec` hook, the fork path, which runs the fork handlers that copy
/// the sender's counts into a slot for the child) and then exits: the
/// program runs on, but holds nothing of the stream (its slot's lock went
/// with `exec`, the descriptors being close-on-exec), so the receiver is
/// told `Disconnected` promptly, not when the program ends. Checked that
/// it can fail: with `O_CLOEXEC` dropped from the slot reopen (a local
/// edit of presence.rs), the receive times out while `sleep` lives.
#[test]
fn a_program_a_sender_started_does_not_hold_the_stream_after_exec() {
    use std::os::unix::process::CommandExt;
    for fork_path in [false, true] {
        let (_names, name) = common::segment_name("atk-peos-exec", "q");
        let q = Queue::<u64>::create(&name, RingConfig::new(8)).unwrap();
        let spawned = Shared::<AtomicU64>::anon(0).unwrap();
        let (name_ref, spawned_ref) = (&name, &spawned);
        let mut sender = fork(move || {
            let tx = Queue::<u64>::open(name_ref).unwrap();
            if tx.push(1).is_err() {
                return 5;
            }
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("30");
            if fork_path {
                // SAFETY: the hook does nothing (it only forces fork+exec).
                unsafe { cmd.pre_exec(|| Ok(())) };
            }
            let Ok(child) = cmd.spawn() else {
                return 6;
            };
            spawned_ref.store(u64::from(child.id()), SeqCst);
            // Exit without waiting for it (and without dropping `tx`).
            // SAFETY: ends this process without destructors.
            unsafe { libc::_exit(0) }
        })
        .unwrap();
        assert_eq!(join(&mut sender), ExitStatus::Code(0));
        let pid = spawned.load(SeqCst);
        assert_ne!(pid, 0);
        let _sleep = KillOnDrop(pid as i32);
        assert_eq!(q.pop_timeout(LONG), Ok(1));
        let started = Instant::now();
        assert_eq!(
            q.pop_timeout(PATIENCE),
            Err(PopError::Disconnected),
            "fork path {fork_path}: the exec'd program was taken for a sender"
        );
        assert!(
            started.elapsed() < EOS_BOUND,
            "fork path {fork_path}: Disconnected only after {:?}",
            started.elapsed()
        );
        // SAFETY: signal 0 only asks whether the program still runs.
        let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
        assert!(alive, "the program runs on");
    }
}

/// SIGKILLs a process this test started (indirectly) when dropped.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) of a process this test started; it is
        // `sleep 30`, an orphan reaped by init, killed at once here.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// The async receives on an object whose only sender exited after one
/// message: the message arrives, then the stream is over, as a blocking
/// receive reports (`Disconnected`); an async receive that never returns
/// leaves an async consumer hanging for ever after its producer died
/// (issue #12 asks for async `recv().await` beside end-of-stream). Each
/// receive is given 3 s (60 owner check intervals).
#[cfg(feature = "tokio")]
#[test]
fn async_receives_report_end_of_stream() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for kind in [
        Kind::Pipe,
        Kind::Queue,
        Kind::Bytes,
        Kind::TypedQueue,
        Kind::TypedPipe,
    ] {
        let (_names, name) = common::segment_name("atk-peos-async", "o");
        let mut rx = Rx::create(kind, &name);
        let mut child = fork(|| {
            let _send = open_and_send(kind, &name, 7);
            0
        })
        .unwrap();
        assert_eq!(join(&mut child), ExitStatus::Code(0), "{kind:?}");
        let patience = Duration::from_secs(3);
        let (first, second) = rt.block_on(async {
            macro_rules! twice {
                ($f:expr, $map:expr) => {{
                    let a = tokio::time::timeout(patience, $f).await.map($map);
                    let b = tokio::time::timeout(patience, $f).await.map($map);
                    (a.map_err(|_| ()), b.map_err(|_| ()))
                }};
            }
            match &rx {
                Rx::Pipe(p) => twice!(p.recv_async(), bytes_item),
                Rx::Queue(q) => twice!(q.pop_async(), pop_item),
                Rx::Bytes(q) => twice!(q.recv_async(), bytes_item),
                Rx::TypedQueue(q) => twice!(q.get_async(), typed_item),
                Rx::TypedPipe(p) => twice!(p.recv_async(), typed_item),
                Rx::Spsc(_) => unreachable!(),
            }
        });
        assert_eq!(first, Ok(Got::Item(7)), "{kind:?}: the message sent");
        if second != Ok(Got::Disconnected) {
            failures.push(format!(
                "{kind:?}: the async receive after the sender exited gave {second:?} (Err(()) = still pending after {patience:?})"
            ));
        }
        // What a blocking receive says.
        assert_eq!(rx.recv(PATIENCE), Got::Disconnected, "{kind:?}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `send_async` on a full pipe whose reader exited: a blocking send
/// reports `Disconnected` there (the README's table); the async send must
/// too, not stay pending for ever.
#[cfg(feature = "tokio")]
#[test]
fn async_send_on_a_broken_pipe_reports_disconnected() {
    let (_names, a) = pipe_whose_reader_left("atk-peos-async-broken");
    while a.try_send(&[0u8; 60]).is_ok() {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let got = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), a.send_async(&[0u8; 60])).await
    });
    assert!(
        matches!(
            a.send_timeout(&[0u8; 60], PATIENCE),
            Err(shmipc::SendError::Disconnected)
        ),
        "a blocking send on the full pipe with no reader is Disconnected"
    );
    assert!(
        matches!(got, Ok(Err(shmipc::SendError::Disconnected))),
        "send_async gave {got:?} (Err(Elapsed) = still pending after 3 s)"
    );
}

/// Hostile bytes in the whole peer table (every word of every slot: the
/// generations, pids and `ends` counts, the live sender's slot included)
/// while a live sender keeps a pipe, an SPSC queue and a typed queue
/// open: such garbage may make the sender look gone or present (DESIGN
/// "Endpoints": no more than closing the queue could do), but every timed
/// receive and send must return within its timeout plus a second, with no
/// panic, and the receives must answer `Timeout` or `Disconnected`, never
/// an error or an item nobody sent. Checked that it can fail: with a
/// spin of some seconds in `PeerTable::end_alive` (a local edit of peers.rs, standing
/// for a scan that garbage makes endless) the bound fails.
#[test]
fn garbage_in_the_peer_table_leaves_every_timed_call_bounded() {
    let names = Unlinker::new("atk-peos-garbage");
    let kinds = [Kind::Pipe, Kind::Spsc, Kind::TypedQueue];
    let objects: Vec<String> = kinds.iter().map(|_| names.name("o")).collect();
    let mut rxs: Vec<Rx> = kinds
        .iter()
        .zip(&objects)
        .map(|(&k, n)| Rx::create(k, n))
        .collect();
    let [ready, done] = common::anon_events();
    let (objects_ref, ready_ref, done_ref) = (&objects, &ready, &done);
    let mut sender = fork(move || {
        let _senders: Vec<_> = kinds
            .iter()
            .zip(objects_ref)
            .map(|(&k, n)| open_and_send(k, n, 1))
            .collect();
        ready_ref.set();
        if done_ref.wait_timeout(LONG) {
            0
        } else {
            4
        }
    })
    .unwrap();
    assert!(ready.wait_timeout(LONG));
    for (rx, k) in rxs.iter_mut().zip(kinds) {
        assert_eq!(rx.recv(LONG), Got::Item(1), "{k:?}");
    }
    let tables: Vec<(u64, u64)> = objects
        .iter()
        .map(|n| {
            (
                common::peek_u64(n, common::off::PEERS_OFFSET),
                common::peek_u64(n, common::off::PEER_SLOTS),
            )
        })
        .collect();
    let mut hostile = fork(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
        let until = Instant::now() + Duration::from_millis(2500);
        while Instant::now() < until {
            for (n, &(table, slots)) in objects.iter().zip(&tables) {
                for w in 0..slots * 4 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let v = match x % 8 {
                        0 => 0,
                        1 => u64::MAX,
                        _ => x,
                    };
                    common::poke_u64(n, table + 8 * w, v);
                }
            }
        }
        0
    })
    .unwrap();
    let until = Instant::now() + Duration::from_millis(2500);
    let mut seen = std::collections::BTreeMap::new();
    while Instant::now() < until {
        for (rx, k) in rxs.iter_mut().zip(kinds) {
            let t = Duration::from_millis(30);
            let started = Instant::now();
            let r = rx.recv(t);
            let took = started.elapsed();
            assert!(
                took < t + Duration::from_secs(1),
                "{k:?}: a timed receive took {took:?}"
            );
            assert!(
                matches!(r, Got::Timeout | Got::Disconnected),
                "{k:?}: {r:?}"
            );
            *seen.entry(format!("{k:?} {r:?}")).or_insert(0u32) += 1;
        }
        // The pipe's other direction: a timed send from this end.
        if let Rx::Pipe(a) = &rxs[0] {
            let t = Duration::from_millis(30);
            let started = Instant::now();
            let _ = a.send_timeout(b"x", t);
            assert!(started.elapsed() < t + Duration::from_secs(1));
        }
    }
    eprintln!("answers under garbage: {seen:?}");
    assert_eq!(join(&mut hostile), ExitStatus::Code(0));
    done.set();
    assert_eq!(join(&mut sender), ExitStatus::Code(0));
}
