//! shmipc side by side with its peers, in one run.
//!
//! ```sh
//! cargo bench -p shmipc-benches --bench compare             # the full run
//! cargo bench -p shmipc-benches --bench compare -- --quick  # a short one (CI)
//! ```
//!
//! Every workload runs each implementation several times; the repetitions
//! are interleaved (repetition `r` starts at a different case) so that noise
//! from the machine hits every implementation alike, and each figure is the
//! median. Two-party workloads pin the parties to different cores. The
//! output is a table with ratios against shmipc, one
//! `RESULT <workload> <implementation> <value> <unit>` line per figure, and
//! the target ratios from the issue with whether they held in this run
//! (informational: nothing here fails on a timing).
//!
//! Every shmipc name comes from an [`Unlinker`], so it is unlinked even if
//! the run panics; iceoryx2 gets its own root directory and file prefix,
//! which are removed the same way.

use std::hint::black_box;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use shmipc::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc::{
    ByteQueue, BytesConfig, Child, Event, Lock, Queue, RingConfig, Semaphore, SemaphoreConfig,
    Shared, SpscQueue, Unlinker,
};

/// The value that ends a stream of `u64` messages.
/// (Not `u64::MAX`: the spin workload sends `i + 1`.)
const STOP: u64 = u64::MAX - 1;

// ---------------------------------------------------------------------------
// Small tools: time, cores, shared control memory, processes, file descriptors
// ---------------------------------------------------------------------------

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The cores online. Not `available_parallelism`: that follows the
/// calling thread's affinity, which is one core once we pinned ourselves.
fn ncpu() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Pins the calling thread to `core` (modulo the cores there are), or lets
/// it run anywhere with `None`.
fn pin(core: Option<usize>) {
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let n = ncpu();
    for c in 0..n {
        if core.is_none_or(|k| k % n == c) {
            // SAFETY: `c` is below CPU_SETSIZE (1024) on any machine we run on.
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; 0 = this thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    check(rc, "sched_setaffinity");
}

/// Cores for the two parties of a two-party workload.
const CORE_A: Option<usize> = Some(0);
const CORE_B: Option<usize> = Some(1);

/// One cache line pair of its own for each field, so that the fields of
/// [`Ctl`] never share a line.
#[repr(C, align(128))]
struct Pad<T>(T);

/// The control block every case shares between its processes or threads.
/// It lives in an anonymous shared mapping: all-zero bytes are a fresh one.
#[repr(C)]
struct Ctl {
    ready: Pad<AtomicU32>,
    go: Pad<AtomicU32>,
    start_ns: Pad<AtomicU64>,
    end_ns: Pad<AtomicU64>,
    count: Pad<AtomicU64>,
    stops: Pad<AtomicU32>,
    ping: Pad<AtomicU64>,
    pong: Pad<AtomicU64>,
    fping: Pad<AtomicU32>,
    fpong: Pad<AtomicU32>,
    counter: Pad<AtomicU64>,
    /// Room for process-shared C objects (`sem_t`, `pthread_mutex_t`).
    raw: [Pad<[u8; 128]>; 2],
}

/// An anonymous shared mapping holding one zeroed [`Ctl`]; forked children
/// inherit it.
struct CtlMap {
    ptr: *mut Ctl,
}

impl CtlMap {
    fn new() -> CtlMap {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size_of::<Ctl>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(
            ptr,
            libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        CtlMap { ptr: ptr.cast() }
    }

    fn ctl(&self) -> &Ctl {
        // SAFETY: page-aligned, zero-filled, mapped for our lifetime; Ctl is
        // atomics and bytes, for which zero is a valid value, and its plain
        // bytes are only reached through raw pointers.
        unsafe { &*self.ptr }
    }

    fn raw(&self, i: usize) -> *mut u8 {
        // SAFETY: in bounds of the mapping; a raw pointer, no reference made.
        unsafe { std::ptr::addr_of_mut!((*self.ptr).raw[i].0).cast() }
    }
}

impl Drop for CtlMap {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range; nothing borrows it any more.
        unsafe { libc::munmap(self.ptr.cast(), size_of::<Ctl>()) };
    }
}

impl Ctl {
    /// A party is set up: announce it and wait until all `n` have; the last
    /// to arrive starts the clock.
    fn arrive(&self, n: u32) {
        if self.ready.0.fetch_add(1, Ordering::AcqRel) + 1 == n {
            self.start_ns.0.store(now_ns(), Ordering::Relaxed);
            // SYNC POINT: Release pairs with the Acquire load below.
            self.go.0.store(1, Ordering::Release);
        }
        while self.go.0.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
    }

    fn finish(&self, count: u64) {
        self.count.0.fetch_add(count, Ordering::AcqRel);
        let now = now_ns();
        self.end_ns.0.fetch_max(now, Ordering::AcqRel);
    }

    /// Whether a producer that started at `start_ns` should stop now.
    fn expired(&self, dur: Duration) -> bool {
        now_ns() - self.start_ns.0.load(Ordering::Relaxed) >= dur.as_nanos() as u64
    }

    fn elapsed_ns(&self) -> f64 {
        (self.end_ns.0.load(Ordering::Acquire) - self.start_ns.0.load(Ordering::Acquire)) as f64
    }

    fn mmsg_per_s(&self) -> f64 {
        self.count.0.load(Ordering::Acquire) as f64 / self.elapsed_ns() * 1e3
    }
}

/// Forks a child pinned to `core` that runs `f`.
fn child(core: Option<usize>, f: impl FnOnce()) -> Child {
    shmipc::fork(|| {
        pin(core);
        f();
        0
    })
    .expect("fork")
}

/// Waits for every child and insists that each succeeded.
fn join(children: Vec<Child>) {
    for mut c in children {
        let status = c
            .join_timeout(Duration::from_secs(60))
            .expect("join")
            .expect("a benchmark child hung for a minute");
        assert!(status.success(), "a benchmark child failed: {status}");
    }
}

fn check(rc: libc::c_int, what: &str) {
    assert!(rc == 0, "{what}: {}", io::Error::last_os_error());
}

fn pipe_fds() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) }, "pipe");
    (fds[0], fds[1])
}

fn socket_pair() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    check(rc, "socketpair");
    (fds[0], fds[1])
}

fn close(fd: RawFd) {
    // SAFETY: we own `fd` and do not use it afterwards.
    unsafe { libc::close(fd) };
}

fn write_all(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            assert_eq!(e.kind(), io::ErrorKind::Interrupted, "write: {e}");
            continue;
        }
        buf = &buf[n as usize..];
    }
}

/// Reads exactly `buf.len()` bytes; with `spin`, the descriptor is
/// non-blocking and we poll it.
fn read_exact(fd: RawFd, buf: &mut [u8], spin: bool) {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is valid for writes of its length.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n <= 0 {
            let e = io::Error::last_os_error();
            assert!(n < 0, "read: end of file");
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ),
                "read: {e}"
            );
            if spin {
                std::hint::spin_loop();
            }
            continue;
        }
        got += n as usize;
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    check(
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) },
        "fcntl",
    );
}

fn send_u64(fd: RawFd, v: u64) {
    write_all(fd, &v.to_ne_bytes());
}

fn recv_u64(fd: RawFd, spin: bool) -> u64 {
    let mut b = [0; 8];
    read_exact(fd, &mut b, spin);
    u64::from_ne_bytes(b)
}

// ---- futex and process-shared C primitives ---------------------------------

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 (the shim is transparent) for
    // the call; a shared (not private) futex, as the word is shared.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            (word as *const AtomicU32).cast::<u32>(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: as in futex_wait.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            (word as *const AtomicU32).cast::<u32>(),
            libc::FUTEX_WAKE,
            1,
        )
    };
}

/// A process-shared `sem_t` at `p` (128 bytes of shared memory).
fn sem_init(p: *mut u8) -> *mut libc::sem_t {
    let sem = p.cast::<libc::sem_t>();
    // SAFETY: `p` points to 128 writable, 64-aligned shared bytes, more than
    // a sem_t needs; pshared = 1.
    check(unsafe { libc::sem_init(sem, 1, 0) }, "sem_init");
    sem
}

fn sem_post(s: *mut libc::sem_t) {
    // SAFETY: `s` was initialised by sem_init and stays mapped.
    check(unsafe { libc::sem_post(s) }, "sem_post");
}

fn sem_wait(s: *mut libc::sem_t) {
    // SAFETY: as in sem_post.
    while unsafe { libc::sem_wait(s) } != 0 {
        assert_eq!(
            io::Error::last_os_error().kind(),
            io::ErrorKind::Interrupted
        );
    }
}

/// A process-shared `pthread_mutex_t` at `p` (128 bytes of shared memory).
fn pthread_mutex_init(p: *mut u8) -> *mut libc::pthread_mutex_t {
    let m = p.cast::<libc::pthread_mutex_t>();
    // SAFETY: attr is initialised before use and destroyed after; `p` has
    // room for a pthread_mutex_t (40 bytes) and is suitably aligned.
    unsafe {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        check(libc::pthread_mutexattr_init(&mut attr), "mutexattr_init");
        check(
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
            "setpshared",
        );
        check(libc::pthread_mutex_init(m, &attr), "pthread_mutex_init");
        libc::pthread_mutexattr_destroy(&mut attr);
    }
    m
}

// ---------------------------------------------------------------------------
// The measurement protocols
// ---------------------------------------------------------------------------

/// Round trips made before the clock starts.
const WARMUP: u64 = 200;

/// The initiating side of a round-trip workload: `rt(i)` sends `i` and
/// returns the echo. Returns nanoseconds per round trip, then stops the echo.
fn initiate(dur: Duration, mut rt: impl FnMut(u64) -> u64) -> f64 {
    for i in 0..WARMUP {
        assert_eq!(rt(i), i);
    }
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < dur {
        for _ in 0..32 {
            let v = rt(n);
            assert_eq!(v, n, "the echo came back wrong");
            n += 1;
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(rt(STOP), STOP);
    ns
}

/// The echoing side: receives and sends back until [`STOP`] (which it
/// echoes too).
fn echo(mut recv: impl FnMut() -> u64, mut send: impl FnMut(u64)) {
    loop {
        let v = recv();
        send(v);
        if v == STOP {
            return;
        }
    }
}

/// A round trip with the initiator here on core A and the echo in a child
/// on core B.
fn round_trip(echo_side: impl FnOnce(), initiator: impl FnOnce() -> f64) -> f64 {
    pin(CORE_A);
    let c = child(CORE_B, echo_side);
    let ns = initiator();
    join(vec![c]);
    ns
}

/// A message type for the throughput workloads.
trait Msg: Copy + Send + 'static {
    fn make(i: u64) -> Self;
    fn is_stop(&self) -> bool;
}

impl Msg for u64 {
    fn make(i: u64) -> u64 {
        i
    }
    fn is_stop(&self) -> bool {
        *self == STOP
    }
}

impl<const N: usize> Msg for [u8; N] {
    fn make(i: u64) -> Self {
        let mut m = [0; N];
        m[..8].copy_from_slice(&i.to_ne_bytes());
        m
    }
    fn is_stop(&self) -> bool {
        self[..8] == STOP.to_ne_bytes()
    }
}

/// A producer among `parties`: sends `make(0), make(1), ...` until `dur`
/// has passed since the start, then a STOP. `push` must not lose a message.
fn produce<M: Msg>(ctl: &Ctl, parties: u32, dur: Duration, mut push: impl FnMut(M)) {
    ctl.arrive(parties);
    let mut i = 0;
    loop {
        for _ in 0..64 {
            push(M::make(i));
            i += 1;
        }
        if ctl.expired(dur) {
            break;
        }
    }
    push(M::make(STOP));
}

/// A consumer among `parties`, of `producers` producers: pops until every
/// producer's STOP was seen (counted in `ctl.stops` across consumers) and
/// the queue is empty. `pop` returns `None` when nothing is there now; a
/// blocking `pop` (never `None`) is fine for a lone consumer, which stops at
/// the last STOP since nothing can follow it.
fn consume<M: Msg>(
    ctl: &Ctl,
    parties: u32,
    producers: u32,
    consumers: u32,
    mut pop: impl FnMut() -> Option<M>,
) {
    ctl.arrive(parties);
    let mut got = 0;
    loop {
        match pop() {
            Some(m) if m.is_stop() => {
                let seen = ctl.stops.0.fetch_add(1, Ordering::AcqRel) + 1;
                if seen == producers && consumers == 1 {
                    break;
                }
            }
            Some(m) => {
                black_box(m);
                got += 1;
            }
            None => {
                if ctl.stops.0.load(Ordering::Acquire) == producers {
                    break;
                }
                std::hint::spin_loop();
            }
        }
    }
    ctl.finish(got);
}

/// A byte-message producer: messages of `size` bytes, the first byte 1,
/// until `dur` has passed; then one whose first byte is 2.
fn produce_bytes(ctl: &Ctl, dur: Duration, size: usize, mut send: impl FnMut(&[u8])) {
    let mut buf = vec![1u8; size];
    ctl.arrive(2);
    loop {
        for _ in 0..16 {
            send(&buf);
        }
        if ctl.expired(dur) {
            break;
        }
    }
    buf[0] = 2;
    send(&buf);
}

/// A byte-message consumer: `recv` receives one message and returns its
/// first byte.
fn consume_bytes(ctl: &Ctl, mut recv: impl FnMut() -> u8) {
    ctl.arrive(2);
    let mut got = 0;
    while recv() != 2 {
        got += 1;
    }
    ctl.finish(got);
}

type Job<'a> = (Option<usize>, Box<dyn FnOnce(&Ctl) + Send + 'a>);
type ProcJob<'a> = (Option<usize>, Box<dyn FnOnce(&Ctl) + 'a>);

/// Runs each job in a forked child pinned as asked; returns the control
/// block for the figures.
fn in_procs(jobs: Vec<ProcJob<'_>>) -> CtlMap {
    let map = CtlMap::new();
    let ctl = map.ctl();
    let children = jobs
        .into_iter()
        .map(|(core, job)| child(core, || job(ctl)))
        .collect();
    join(children);
    map
}

/// Runs each job in a thread of this process pinned as asked.
fn in_threads(jobs: Vec<Job<'_>>) -> CtlMap {
    let map = CtlMap::new();
    let ctl = map.ctl();
    std::thread::scope(|s| {
        for (core, job) in jobs {
            s.spawn(move || {
                pin(core);
                job(ctl);
            });
        }
    });
    map
}

fn spin_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// iceoryx2: its own root directory and file prefix, removed at the end
// ---------------------------------------------------------------------------

/// Where iceoryx2 keeps its files for this run; dropping it removes them
/// (also when the run panics).
struct Iox {
    root: String,
    prefix: String,
}

impl Iox {
    fn new() -> Iox {
        let pid = std::process::id();
        Iox {
            root: format!("/tmp/shmipc-bench-iox2-{pid}/"),
            prefix: format!("shmipcbench{pid}_"),
        }
    }

    fn config(&self) -> iceoryx2::config::Config {
        use iceoryx2::prelude::{FileName, Path, SemanticString};
        let mut c = iceoryx2::config::Config::default();
        c.global.prefix = FileName::new(self.prefix.as_bytes()).expect("prefix");
        c.global
            .set_root_path(&Path::new(self.root.as_bytes()).expect("root path"));
        c
    }

    fn node(&self) -> iceoryx2::node::Node<iceoryx2::service::ipc::Service> {
        use iceoryx2::prelude::*;
        NodeBuilder::new()
            .config(&self.config())
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .expect("iceoryx2 node")
    }

    fn service_name(&self, what: &str) -> iceoryx2::prelude::ServiceName {
        format!("{}/{what}", self.prefix)
            .as_str()
            .try_into()
            .expect("service name")
    }
}

impl Drop for Iox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
        if let Ok(dir) = std::fs::read_dir("/dev/shm") {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&self.prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// One side of the iceoryx2 round trip: subscribes to `rx`, publishes on
/// `tx`, and runs `body` with a send and a (busy-polling) receive.
fn iox_side(
    env: &Env,
    ctl: &Ctl,
    rx: &str,
    tx: &str,
    first: bool,
    body: impl FnOnce(&mut dyn FnMut(u64), &mut dyn FnMut() -> u64),
) {
    use iceoryx2::port::update_connections::UpdateConnections;
    use iceoryx2::prelude::PortFactory;
    // The echo side (`first`) creates the services; the initiator opens
    // them once it has, so the two never race to create one.
    if !first {
        while ctl.fping.0.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
    }
    let node = env.iox.node();
    let open = |what: &str| {
        node.service_builder(&env.iox.service_name(what))
            .publish_subscribe::<u64>()
            .open_or_create()
            .expect("iceoryx2 service")
    };
    let (rs, ts) = (open(rx), open(tx));
    let sub = rs.subscriber_builder().create().expect("subscriber");
    let publ = ts.publisher_builder().create().expect("publisher");
    if first {
        ctl.fping.0.store(1, Ordering::Release);
    }
    // Both ports must know their peers before the first sample, or it is
    // lost: wait until each service sees the other side, connect, and
    // meet once more.
    while ts.dynamic_config().number_of_subscribers() == 0
        || rs.dynamic_config().number_of_publishers() == 0
    {
        std::thread::yield_now();
    }
    publ.update_connections().expect("connections");
    sub.update_connections().expect("connections");
    ctl.arrive(2);
    body(
        &mut |v| {
            publ.send_copy(v).expect("send");
        },
        &mut || spin_until(|| sub.receive().expect("receive").map(|s| *s)),
    );
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    Ns,
    Mmsg,
    Gbs,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Mmsg => "Mmsg/s",
            Unit::Gbs => "GB/s",
        }
    }
}

struct Env {
    dur: Duration,
    names: Unlinker,
    iox: Iox,
}

type Run = Box<dyn Fn(&Env) -> f64>;

struct Case {
    /// The workloads this figure is reported under (usually one).
    workloads: &'static [&'static str],
    imp: &'static str,
    unit: Unit,
    run: Run,
    samples: Vec<f64>,
}

fn case(workloads: &'static [&'static str], imp: &'static str, unit: Unit, run: Run) -> Case {
    Case {
        workloads,
        imp,
        unit,
        run,
        samples: Vec::new(),
    }
}

/// A fresh name for this run, removed again when the run is over (and by
/// the `Unlinker` in any case).
struct Name(String);

impl Name {
    fn new(env: &Env, label: &str) -> Name {
        Name(env.names.name(label))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmipc::unlink(&self.0);
    }
}

// ---- round trips ------------------------------------------------------------

fn rt_shmipc(env: &Env, busy: bool) -> f64 {
    let (ping, pong) = (Name::new(env, "ping"), Name::new(env, "pong"));
    let q_ping = SpscQueue::<u64>::create(&ping.0, RingConfig::new(64)).unwrap();
    let q_pong = SpscQueue::<u64>::create(&pong.0, RingConfig::new(64)).unwrap();
    round_trip(
        || {
            let mut rx = SpscQueue::<u64>::consumer(&ping.0).unwrap();
            let mut tx = SpscQueue::<u64>::producer(&pong.0).unwrap();
            if busy {
                echo(
                    || spin_until(|| rx.try_pop().ok()),
                    |v| tx.try_push(v).unwrap(),
                );
            } else {
                echo(|| rx.pop().unwrap(), |v| tx.push(v).unwrap());
            }
        },
        || {
            let mut tx = q_ping.take_producer().unwrap();
            let mut rx = q_pong.take_consumer().unwrap();
            if busy {
                initiate(env.dur, |i| {
                    tx.try_push(i).unwrap();
                    spin_until(|| rx.try_pop().ok())
                })
            } else {
                initiate(env.dur, |i| {
                    tx.push(i).unwrap();
                    rx.pop().unwrap()
                })
            }
        },
    )
}

fn rt_spin(env: &Env) -> f64 {
    let map = CtlMap::new();
    let ctl = map.ctl();
    round_trip(
        || {
            let mut last = 0;
            echo(
                || {
                    let v = spin_until(|| {
                        let v = ctl.ping.0.load(Ordering::Acquire);
                        (v != last).then_some(v)
                    });
                    last = v;
                    v - 1
                },
                |v| ctl.pong.0.store(v + 1, Ordering::Release),
            );
        },
        || {
            initiate(env.dur, |i| {
                ctl.ping.0.store(i + 1, Ordering::Release);
                while ctl.pong.0.load(Ordering::Acquire) != i + 1 {
                    std::hint::spin_loop();
                }
                i
            })
        },
    )
}

fn rt_iceoryx2(env: &Env) -> f64 {
    let map = CtlMap::new();
    let ctl = map.ctl();
    round_trip(
        || {
            iox_side(env, ctl, "ping", "pong", true, |send, recv| {
                echo(recv, send)
            })
        },
        || {
            let mut ns = 0.0;
            iox_side(env, ctl, "pong", "ping", false, |send, recv| {
                ns = initiate(env.dur, |i| {
                    send(i);
                    recv()
                });
            });
            ns
        },
    )
}

/// Round trips over two file-descriptor channels: `(a_rx, a_tx)` here,
/// `(b_rx, b_tx)` in the child.
fn rt_fds(env: &Env, busy: bool, here: (RawFd, RawFd), there: (RawFd, RawFd)) -> f64 {
    round_trip(
        || {
            if busy {
                set_nonblocking(there.0);
            }
            echo(|| recv_u64(there.0, busy), |v| send_u64(there.1, v));
        },
        || {
            if busy {
                set_nonblocking(here.0);
            }
            initiate(env.dur, |i| {
                send_u64(here.1, i);
                recv_u64(here.0, busy)
            })
        },
    )
}

fn rt_pipe(env: &Env, busy: bool) -> f64 {
    let (a_rx, b_tx) = pipe_fds();
    let (b_rx, a_tx) = pipe_fds();
    let ns = rt_fds(env, busy, (a_rx, a_tx), (b_rx, b_tx));
    [a_rx, a_tx, b_rx, b_tx].into_iter().for_each(close);
    ns
}

fn rt_uds(env: &Env, busy: bool) -> f64 {
    let (a, b) = socket_pair();
    let ns = rt_fds(env, busy, (a, a), (b, b));
    [a, b].into_iter().for_each(close);
    ns
}

fn rt_event(env: &Env) -> f64 {
    let map = CtlMap::new();
    let ctl = map.ctl();
    let (ping, pong) = (Name::new(env, "ping"), Name::new(env, "pong"));
    let e_ping = Shared::<Event>::create(&ping.0, ()).unwrap();
    let e_pong = Shared::<Event>::create(&pong.0, ()).unwrap();
    round_trip(
        || {
            let e_ping = Shared::<Event>::open(&ping.0).unwrap();
            let e_pong = Shared::<Event>::open(&pong.0).unwrap();
            echo(
                || {
                    e_ping.wait();
                    e_ping.clear();
                    ctl.ping.0.load(Ordering::Relaxed)
                },
                |v| {
                    ctl.pong.0.store(v, Ordering::Relaxed);
                    e_pong.set();
                },
            );
        },
        || {
            initiate(env.dur, |i| {
                ctl.ping.0.store(i, Ordering::Relaxed);
                e_ping.set();
                e_pong.wait();
                e_pong.clear();
                ctl.pong.0.load(Ordering::Relaxed)
            })
        },
    )
}

fn rt_futex(env: &Env) -> f64 {
    let map = CtlMap::new();
    let ctl = map.ctl();
    // Sleep on `word` until it differs from `seen`; returns the new value.
    let wait_change = |word: &AtomicU32, seen: u32| loop {
        let v = word.load(Ordering::Acquire);
        if v != seen {
            return v;
        }
        futex_wait(word, seen);
    };
    round_trip(
        || {
            let seq = std::cell::Cell::new(0);
            echo(
                || {
                    seq.set(wait_change(&ctl.fping.0, seq.get()));
                    ctl.ping.0.load(Ordering::Relaxed)
                },
                |v| {
                    ctl.pong.0.store(v, Ordering::Relaxed);
                    ctl.fpong.0.store(seq.get(), Ordering::Release);
                    futex_wake(&ctl.fpong.0);
                },
            );
        },
        || {
            let mut seq = 0u32;
            initiate(env.dur, |i| {
                ctl.ping.0.store(i, Ordering::Relaxed);
                let before = seq;
                seq = seq.wrapping_add(1);
                ctl.fping.0.store(seq, Ordering::Release);
                futex_wake(&ctl.fping.0);
                wait_change(&ctl.fpong.0, before);
                ctl.pong.0.load(Ordering::Relaxed)
            })
        },
    )
}

fn rt_posix_sem(env: &Env) -> f64 {
    let map = CtlMap::new();
    let ctl = map.ctl();
    let (a, b) = (sem_init(map.raw(0)), sem_init(map.raw(1)));
    // Shared mappings of the same process tree: the addresses hold there.
    let (a, b) = (a as usize, b as usize);
    let ns = round_trip(
        || {
            let (a, b) = (a as *mut libc::sem_t, b as *mut libc::sem_t);
            echo(
                || {
                    sem_wait(a);
                    ctl.ping.0.load(Ordering::Relaxed)
                },
                |v| {
                    ctl.pong.0.store(v, Ordering::Relaxed);
                    sem_post(b);
                },
            );
        },
        || {
            let (a, b) = (a as *mut libc::sem_t, b as *mut libc::sem_t);
            initiate(env.dur, |i| {
                ctl.ping.0.store(i, Ordering::Relaxed);
                sem_post(a);
                sem_wait(b);
                ctl.pong.0.load(Ordering::Relaxed)
            })
        },
    );
    // SAFETY: both semaphores were initialised above; no process uses them now.
    unsafe {
        libc::sem_destroy(a as *mut libc::sem_t);
        libc::sem_destroy(b as *mut libc::sem_t);
    }
    ns
}

fn rt_ipc_channel(env: &Env) -> f64 {
    let (a_tx, b_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
    let (b_tx, a_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
    round_trip(
        || echo(|| b_rx.recv().unwrap(), |v| b_tx.send(v).unwrap()),
        || {
            initiate(env.dur, |i| {
                a_tx.send(i).unwrap();
                a_rx.recv().unwrap()
            })
        },
    )
}

fn sem_shmipc(env: &Env) -> f64 {
    let map = CtlMap::new();
    let ctl = map.ctl();
    let (ping, pong) = (Name::new(env, "ping"), Name::new(env, "pong"));
    let zero = SemaphoreConfig {
        initial: 0,
        max: None,
    };
    let s_ping = Shared::<Semaphore>::create(&ping.0, zero).unwrap();
    let s_pong = Shared::<Semaphore>::create(&pong.0, zero).unwrap();
    round_trip(
        || {
            let s_ping = Shared::<Semaphore>::open(&ping.0).unwrap();
            let s_pong = Shared::<Semaphore>::open(&pong.0).unwrap();
            echo(
                || {
                    s_ping.acquire();
                    ctl.ping.0.load(Ordering::Relaxed)
                },
                |v| {
                    ctl.pong.0.store(v, Ordering::Relaxed);
                    s_pong.release().unwrap();
                },
            );
        },
        || {
            initiate(env.dur, |i| {
                ctl.ping.0.store(i, Ordering::Relaxed);
                s_ping.release().unwrap();
                s_pong.acquire();
                ctl.pong.0.load(Ordering::Relaxed)
            })
        },
    )
}

// ---- throughput of small messages -------------------------------------------

fn tp_shmipc_spsc<M: Msg + bytemuck::Pod>(env: &Env, capacity: usize) -> f64 {
    let name = Name::new(env, "spsc");
    let _q = SpscQueue::<M>::create(&name.0, RingConfig::new(capacity)).unwrap();
    let dur = env.dur;
    let n = &name.0;
    in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                let mut tx = SpscQueue::<M>::producer(n).unwrap();
                produce(ctl, 2, dur, |m| spin_until(|| tx.try_push(m).ok()));
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let mut rx = SpscQueue::<M>::consumer(n).unwrap();
                consume(ctl, 2, 1, 1, || rx.try_pop().ok());
            }),
        ),
    ])
    .ctl()
    .mmsg_per_s()
}

fn tp_rtrb(env: &Env) -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(1024);
    let dur = env.dur;
    in_threads(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                produce(ctl, 2, dur, |m| spin_until(|| tx.push(m).ok()));
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| consume(ctl, 2, 1, 1, || rx.pop().ok())),
        ),
    ])
    .ctl()
    .mmsg_per_s()
}

fn tp_crossbeam(env: &Env, producers: u32, consumers: u32, pinned: bool) -> f64 {
    let q = ArrayQueue::<u64>::new(1024);
    let q = &q;
    let dur = env.dur;
    let parties = producers + consumers;
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for p in 0..producers {
        let core = if pinned { Some(p as usize) } else { None };
        jobs.push((
            core,
            Box::new(move |ctl: &Ctl| {
                produce(ctl, parties, dur, |m| spin_until(|| q.push(m).ok()));
            }),
        ));
    }
    for c in 0..consumers {
        let core = if pinned { Some(c as usize + 1) } else { None };
        jobs.push((
            core,
            Box::new(move |ctl: &Ctl| consume(ctl, parties, producers, consumers, || q.pop())),
        ));
    }
    in_threads(jobs).ctl().mmsg_per_s()
}

fn tp_shmipc_mpmc(env: &Env, producers: u32, consumers: u32) -> f64 {
    let name = Name::new(env, "mpmc");
    let _q = Queue::<u64>::create(&name.0, RingConfig::new(1024)).unwrap();
    let dur = env.dur;
    let n = &name.0;
    let parties = producers + consumers;
    let mut jobs: Vec<ProcJob<'_>> = Vec::new();
    for _ in 0..producers {
        jobs.push((
            None,
            Box::new(move |ctl: &Ctl| {
                let q = Queue::<u64>::open(n).unwrap();
                produce(ctl, parties, dur, |m| spin_until(|| q.try_push(m).ok()));
            }),
        ));
    }
    for _ in 0..consumers {
        jobs.push((
            None,
            Box::new(move |ctl: &Ctl| {
                let q = Queue::<u64>::open(n).unwrap();
                consume(ctl, parties, producers, consumers, || q.try_pop().ok());
            }),
        ));
    }
    in_procs(jobs).ctl().mmsg_per_s()
}

fn tp_pipe(env: &Env) -> f64 {
    let (rx, tx) = pipe_fds();
    let dur = env.dur;
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| produce(ctl, 2, dur, |m: u64| send_u64(tx, m))),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                // Read in bulk: writes of 8 bytes are atomic and 4096 is a
                // multiple of 8, so every read returns whole messages.
                let mut buf = [0u8; 4096];
                let (mut pos, mut len) = (0, 0);
                consume(ctl, 2, 1, 1, || {
                    if pos == len {
                        // SAFETY: `buf` is valid for writes of its length.
                        let n = unsafe { libc::read(rx, buf.as_mut_ptr().cast(), buf.len()) };
                        assert!(n > 0 && n % 8 == 0, "pipe read: {n}");
                        (pos, len) = (0, n as usize);
                    }
                    pos += 8;
                    Some(u64::from_ne_bytes(buf[pos - 8..pos].try_into().unwrap()))
                });
            }),
        ),
    ]);
    close(rx);
    close(tx);
    map.ctl().mmsg_per_s()
}

// ---- byte messages ---------------------------------------------------------

fn gbs(ctl: &Ctl, size: usize) -> f64 {
    ctl.count.0.load(Ordering::Acquire) as f64 * size as f64 / ctl.elapsed_ns()
}

fn bytes_shmipc(env: &Env, size: usize) -> f64 {
    let name = Name::new(env, "bytes");
    let capacity = (16 * (size + 8)).next_power_of_two().max(1 << 16);
    let _q = ByteQueue::create(&name.0, BytesConfig::new(capacity, size)).unwrap();
    let (dur, n) = (env.dur, &name.0);
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                let q = ByteQueue::open(n).unwrap();
                produce_bytes(ctl, dur, size, |m| q.send(m).unwrap());
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let q = ByteQueue::open(n).unwrap();
                let mut buf = vec![0u8; size];
                consume_bytes(ctl, || {
                    q.recv_into(&mut buf).unwrap();
                    buf[0]
                });
            }),
        ),
    ]);
    gbs(map.ctl(), size)
}

fn bytes_fds(env: &Env, size: usize, rx: RawFd, tx: RawFd) -> f64 {
    let dur = env.dur;
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| produce_bytes(ctl, dur, size, |m| write_all(tx, m))),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let mut buf = vec![0u8; size];
                consume_bytes(ctl, || {
                    read_exact(rx, &mut buf, false);
                    buf[0]
                });
            }),
        ),
    ]);
    gbs(map.ctl(), size)
}

fn bytes_pipe(env: &Env, size: usize) -> f64 {
    let (rx, tx) = pipe_fds();
    let v = bytes_fds(env, size, rx, tx);
    close(rx);
    close(tx);
    v
}

fn bytes_uds(env: &Env, size: usize) -> f64 {
    let (a, b) = socket_pair();
    let v = bytes_fds(env, size, b, a);
    close(a);
    close(b);
    v
}

fn bytes_ipc_channel(env: &Env, size: usize) -> f64 {
    let (tx, rx) = ipc_channel::ipc::bytes_channel().unwrap();
    let dur = env.dur;
    let (tx, rx) = (&tx, &rx);
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| produce_bytes(ctl, dur, size, |m| tx.send(m).unwrap())),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| consume_bytes(ctl, || rx.recv().unwrap()[0])),
        ),
    ]);
    gbs(map.ctl(), size)
}

/// The page-aligned `size` bytes inside `buf` (which has 4096 spare).
fn page_aligned(buf: &mut [u8], size: usize) -> &mut [u8] {
    let skip = buf.as_ptr().align_offset(4096);
    &mut buf[skip..skip + size]
}

fn bytes_memcpy(env: &Env, size: usize) -> f64 {
    pin(CORE_A);
    // Both buffers page-aligned: with two plain `Vec`s, glibc's `rep movsb`
    // on this AMD machine ran at 2 GB/s for 64 KiB whenever the destination
    // sat a few bytes past the source modulo 4096 (43 GB/s otherwise), and
    // the limit would have measured the allocator's luck.
    let (mut a, mut b) = (vec![1u8; size + 4096], vec![0u8; size + 4096]);
    let src = page_aligned(&mut a, size);
    let dst = page_aligned(&mut b, size);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < env.dur {
        for _ in 0..64 {
            dst.copy_from_slice(black_box(&*src));
            black_box(&mut *dst);
        }
        n += 64;
    }
    n as f64 * size as f64 / start.elapsed().as_nanos() as f64
}

// ---- locks -----------------------------------------------------------------

/// Nanoseconds per `op()` on one thread (core A).
fn per_op(dur: Duration, mut op: impl FnMut()) -> f64 {
    pin(CORE_A);
    for _ in 0..10_000 {
        op();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        for _ in 0..1024 {
            op();
        }
        n += 1024;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn raw_sync_mutex(map: &CtlMap) -> Box<dyn raw_sync::locks::LockImpl> {
    use raw_sync::locks::{LockInit, Mutex};
    // SAFETY: raw(0) has 128 shared bytes for the pthread mutex inside;
    // the data pointer (raw(1)) is never dereferenced by us.
    unsafe { Mutex::new(map.raw(0), map.raw(1)) }
        .expect("raw_sync mutex")
        .0
}

fn lock_unc_shmipc(env: &Env) -> f64 {
    let name = Name::new(env, "lock");
    let lock = Shared::<Lock>::create(&name.0, ()).unwrap();
    per_op(env.dur, || drop(black_box(lock.lock().unwrap())))
}

fn lock_unc_pthread(env: &Env) -> f64 {
    let map = CtlMap::new();
    let m = pthread_mutex_init(map.raw(0));
    per_op(env.dur, || {
        // SAFETY: an initialised mutex, locked and unlocked by this thread.
        unsafe {
            libc::pthread_mutex_lock(m);
            libc::pthread_mutex_unlock(m);
        }
    })
}

fn lock_unc_raw_sync(env: &Env) -> f64 {
    let map = CtlMap::new();
    let m = raw_sync_mutex(&map);
    per_op(env.dur, || drop(black_box(m.lock().unwrap())))
}

/// Two processes (cores A and B) increment one counter under a lock;
/// nanoseconds per increment, over both. `with_lock(f)` runs `f` locked.
fn contended(dur: Duration, with_lock: &(dyn Fn(&mut dyn FnMut()) + Sync)) -> f64 {
    let job = |ctl: &Ctl| {
        ctl.arrive(2);
        let mut n = 0;
        loop {
            for _ in 0..64 {
                with_lock(&mut || {
                    let c = ctl.counter.0.load(Ordering::Relaxed);
                    ctl.counter.0.store(c + 1, Ordering::Relaxed);
                });
            }
            n += 64;
            if ctl.expired(dur) {
                break;
            }
        }
        ctl.finish(n);
    };
    let map = in_procs(vec![(CORE_A, Box::new(job)), (CORE_B, Box::new(job))]);
    let ctl = map.ctl();
    let total = ctl.count.0.load(Ordering::Acquire);
    assert_eq!(
        ctl.counter.0.load(Ordering::Acquire),
        total,
        "the lock let increments through"
    );
    ctl.elapsed_ns() / total as f64
}

fn lock_cont_shmipc(env: &Env) -> f64 {
    let name = Name::new(env, "lock");
    // The children use the mapping they inherit: the Lock records the
    // thread id, which a forked child learns afresh.
    let lock = Shared::<Lock>::create(&name.0, ()).unwrap();
    contended(env.dur, &|f| {
        let _g = lock.lock().unwrap();
        f();
    })
}

fn lock_cont_pthread(env: &Env) -> f64 {
    let map = CtlMap::new();
    let m = pthread_mutex_init(map.raw(0)) as usize;
    contended(env.dur, &|f| {
        let m = m as *mut libc::pthread_mutex_t;
        // SAFETY: an initialised process-shared mutex in a shared mapping.
        unsafe { libc::pthread_mutex_lock(m) };
        f();
        // SAFETY: locked by this thread just above.
        unsafe { libc::pthread_mutex_unlock(m) };
    })
}

fn lock_cont_raw_sync(env: &Env) -> f64 {
    let map = CtlMap::new();
    let m = raw_sync_mutex(&map);
    let m = SendPtr(&*m);
    contended(env.dur, &|f| {
        let _g = m.get().lock().unwrap();
        f();
    })
}

/// raw_sync's `LockImpl` is not `Sync`; each process uses its own copy
/// (after the fork), never two threads at once.
struct SendPtr<'a>(&'a dyn raw_sync::locks::LockImpl);
// SAFETY: see the type's docs: one thread per process uses it.
unsafe impl Sync for SendPtr<'_> {}
impl SendPtr<'_> {
    fn get(&self) -> &dyn raw_sync::locks::LockImpl {
        self.0
    }
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

fn cases() -> Vec<Case> {
    use Unit::*;
    let mut v = vec![
        case(&["rt_busy"], "shmipc", Ns, Box::new(|e| rt_shmipc(e, true))),
        case(&["rt_busy"], "spin_limit", Ns, Box::new(rt_spin)),
        case(&["rt_busy"], "iceoryx2", Ns, Box::new(rt_iceoryx2)),
        case(&["rt_busy"], "uds", Ns, Box::new(|e| rt_uds(e, true))),
        case(&["rt_busy"], "pipe", Ns, Box::new(|e| rt_pipe(e, true))),
        case(
            &["rt_block"],
            "shmipc",
            Ns,
            Box::new(|e| rt_shmipc(e, false)),
        ),
        case(&["rt_block"], "shmipc_event", Ns, Box::new(rt_event)),
        case(&["rt_block"], "futex", Ns, Box::new(rt_futex)),
        case(
            &["rt_block", "sem_pingpong"],
            "posix_sem",
            Ns,
            Box::new(rt_posix_sem),
        ),
        case(&["rt_block"], "pipe", Ns, Box::new(|e| rt_pipe(e, false))),
        case(&["rt_block"], "uds", Ns, Box::new(|e| rt_uds(e, false))),
        case(&["rt_block"], "ipc_channel", Ns, Box::new(rt_ipc_channel)),
        case(
            &["tp_spsc_u64"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp_shmipc_spsc::<u64>(e, 1024)),
        ),
        case(&["tp_spsc_u64"], "rtrb", Mmsg, Box::new(tp_rtrb)),
        case(
            &["tp_spsc_u64"],
            "crossbeam",
            Mmsg,
            Box::new(|e| tp_crossbeam(e, 1, 1, true)),
        ),
        case(&["tp_spsc_u64"], "pipe", Mmsg, Box::new(tp_pipe)),
        case(
            &["tp_mpmc_u64"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp_shmipc_mpmc(e, 2, 2)),
        ),
        case(
            &["tp_mpmc_u64"],
            "crossbeam",
            Mmsg,
            Box::new(|e| tp_crossbeam(e, 2, 2, false)),
        ),
    ];
    for (w, size) in [("bytes_64", 64), ("bytes_4k", 4096), ("bytes_64k", 65536)] {
        let w: &'static [&'static str] = Box::leak(Box::new([w]));
        v.push(case(
            w,
            "shmipc",
            Gbs,
            Box::new(move |e| bytes_shmipc(e, size)),
        ));
        v.push(case(w, "pipe", Gbs, Box::new(move |e| bytes_pipe(e, size))));
        v.push(case(w, "uds", Gbs, Box::new(move |e| bytes_uds(e, size))));
        v.push(case(
            w,
            "ipc_channel",
            Gbs,
            Box::new(move |e| bytes_ipc_channel(e, size)),
        ));
        v.push(case(
            w,
            "memcpy",
            Gbs,
            Box::new(move |e| bytes_memcpy(e, size)),
        ));
    }
    v.extend([
        case(
            &["lock_uncontended"],
            "shmipc",
            Ns,
            Box::new(lock_unc_shmipc),
        ),
        case(
            &["lock_uncontended"],
            "pthread_mutex",
            Ns,
            Box::new(lock_unc_pthread),
        ),
        case(
            &["lock_uncontended"],
            "raw_sync",
            Ns,
            Box::new(lock_unc_raw_sync),
        ),
        case(
            &["lock_contended"],
            "shmipc",
            Ns,
            Box::new(lock_cont_shmipc),
        ),
        case(
            &["lock_contended"],
            "pthread_mutex",
            Ns,
            Box::new(lock_cont_pthread),
        ),
        case(
            &["lock_contended"],
            "raw_sync",
            Ns,
            Box::new(lock_cont_raw_sync),
        ),
        case(&["sem_pingpong"], "shmipc", Ns, Box::new(sem_shmipc)),
    ]);
    // Scaling: shmipc alone, reported in a table of its own.
    v.extend([
        case(
            &["scaling"],
            "spsc, 8 B items, capacity 1024",
            Mmsg,
            Box::new(|e| tp_shmipc_spsc::<u64>(e, 1024)),
        ),
        case(
            &["scaling"],
            "spsc, 64 B items, capacity 1024",
            Mmsg,
            Box::new(|e| tp_shmipc_spsc::<[u8; 64]>(e, 1024)),
        ),
        case(
            &["scaling"],
            "spsc, 512 B items, capacity 1024",
            Mmsg,
            Box::new(|e| tp_shmipc_spsc::<[u8; 512]>(e, 1024)),
        ),
        case(
            &["scaling"],
            "spsc, 8 B items, capacity 16",
            Mmsg,
            Box::new(|e| tp_shmipc_spsc::<u64>(e, 16)),
        ),
        case(
            &["scaling"],
            "spsc, 8 B items, capacity 256",
            Mmsg,
            Box::new(|e| tp_shmipc_spsc::<u64>(e, 256)),
        ),
        case(
            &["scaling"],
            "spsc, 8 B items, capacity 16384",
            Mmsg,
            Box::new(|e| tp_shmipc_spsc::<u64>(e, 16384)),
        ),
        case(
            &["scaling"],
            "mpmc, 1 producer, 1 consumer",
            Mmsg,
            Box::new(|e| tp_shmipc_mpmc(e, 1, 1)),
        ),
        case(
            &["scaling"],
            "mpmc, 2 producers, 1 consumer",
            Mmsg,
            Box::new(|e| tp_shmipc_mpmc(e, 2, 1)),
        ),
        case(
            &["scaling"],
            "mpmc, 4 producers, 1 consumer",
            Mmsg,
            Box::new(|e| tp_shmipc_mpmc(e, 4, 1)),
        ),
    ]);
    v
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The median of `imp` under `workload`, if it was measured.
fn figure(cases: &[Case], workload: &str, imp: &str) -> Option<f64> {
    cases
        .iter()
        .find(|c| c.imp == imp && c.workloads.contains(&workload))
        .map(|c| median(&c.samples))
}

/// A target from the issue: `shmipc <op> factor × other`, where lower is
/// better for `ns` and higher for rates.
struct Target {
    workload: &'static str,
    other: &'static str,
    factor: f64,
}

const TARGETS: &[Target] = &[
    Target {
        workload: "rt_busy",
        other: "spin_limit",
        factor: 1.5,
    },
    Target {
        workload: "rt_busy",
        other: "iceoryx2",
        factor: 0.3,
    },
    Target {
        workload: "rt_block",
        other: "futex",
        factor: 1.0,
    },
    Target {
        workload: "rt_block",
        other: "posix_sem",
        factor: 1.0,
    },
    Target {
        workload: "tp_spsc_u64",
        other: "rtrb",
        factor: 1.0,
    },
    Target {
        workload: "tp_mpmc_u64",
        other: "crossbeam",
        factor: 1.0,
    },
    Target {
        workload: "bytes_64k",
        other: "memcpy",
        factor: 0.5,
    },
    Target {
        workload: "bytes_64k",
        other: "uds",
        factor: 5.0,
    },
    Target {
        workload: "lock_uncontended",
        other: "pthread_mutex",
        factor: 1.0,
    },
    Target {
        workload: "lock_contended",
        other: "pthread_mutex",
        factor: 1.0,
    },
    Target {
        workload: "sem_pingpong",
        other: "posix_sem",
        factor: 1.0,
    },
];

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let verbose = std::env::args().any(|a| a == "--verbose");
    let (reps, dur) = if quick {
        (3, Duration::from_millis(50))
    } else {
        (7, Duration::from_millis(250))
    };
    iceoryx2::prelude::set_log_level(iceoryx2::prelude::LogLevel::Error);
    let env = Env {
        dur,
        names: Unlinker::new("bench"),
        iox: Iox::new(),
    };
    remove_leftovers();
    // SHMIPC_BENCH_FILTER=text keeps only the cases whose workload or
    // implementation contains `text`.
    let filter = std::env::var("SHMIPC_BENCH_FILTER").unwrap_or_default();
    let mut cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.imp.contains(&filter) || c.workloads.iter().any(|w| w.contains(&filter)))
        .collect();
    let n = cases.len();
    println!(
        "shmipc compare: {} cases x {reps} repetitions of {} ms{}, on {} cores",
        n,
        dur.as_millis(),
        if quick { " (--quick)" } else { "" },
        ncpu()
    );
    let begun = Instant::now();
    for rep in 0..reps {
        // Interleave: each repetition starts at another case, and goes the
        // other way every second time.
        let offset = rep * n / reps;
        for k in 0..n {
            let i = if rep % 2 == 0 {
                (offset + k) % n
            } else {
                (offset + n - k) % n
            };
            let c = &mut cases[i];
            if verbose {
                eprintln!("  {} {}", c.workloads[0], c.imp);
            }
            let v = (c.run)(&env);
            c.samples.push(v);
        }
        eprintln!(
            "  repetition {}/{reps} done after {:.1} s",
            rep + 1,
            begun.elapsed().as_secs_f64()
        );
    }
    pin(None);
    report(&cases);
}

/// Removes what earlier runs that were killed (so never ran their
/// destructors) left behind: their shmipc names and iceoryx2 files. Only
/// names of processes that no longer exist are touched.
fn remove_leftovers() {
    let dead = |pid: &str| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = if let Some(rest) = name.strip_prefix("shmipcbench") {
                rest.split('_').next()
            } else if let Some(rest) = name.strip_prefix("shmipc-bench-") {
                rest.split('-').next()
            } else {
                None
            };
            if pid
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && dead(p))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/tmp") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(p) = name.strip_prefix("shmipc-bench-iox2-") {
                if p.bytes().all(|b| b.is_ascii_digit()) && dead(p) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

fn report(cases: &[Case]) {
    let mut workloads: Vec<&str> = Vec::new();
    for c in cases {
        for w in c.workloads {
            if !workloads.contains(w) && *w != "scaling" {
                workloads.push(w);
            }
        }
    }
    println!();
    println!(
        "{:<18} {:<14} {:>12} {:<7} {:>9}  spread (min..max)",
        "workload", "implementation", "median", "unit", "vs shmipc"
    );
    let mut results = Vec::new();
    for w in &workloads {
        let base = figure(cases, w, "shmipc");
        for c in cases.iter().filter(|c| c.workloads.contains(w)) {
            let m = median(&c.samples);
            let lo = c.samples.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = c.samples.iter().copied().fold(0.0, f64::max);
            // How many times better shmipc is (>1: shmipc wins).
            let ratio = base.map(|b| match c.unit {
                Unit::Ns => m / b,
                _ => b / m,
            });
            println!(
                "{:<18} {:<14} {:>12.3} {:<7} {:>9}  {:.3}..{:.3}",
                w,
                c.imp,
                m,
                c.unit.name(),
                ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                lo,
                hi
            );
            results.push(format!("RESULT {w} {} {m:.3} {}", c.imp, c.unit.name()));
        }
    }
    println!("(vs shmipc: how many times better shmipc is; above 1 shmipc wins)");

    println!("\nscaling (shmipc across processes, one-way throughput):");
    println!("{:<36} {:>10} {:>10}", "configuration", "Mmsg/s", "GB/s");
    for c in cases.iter().filter(|c| c.workloads.contains(&"scaling")) {
        let m = median(&c.samples);
        let size: f64 = if c.imp.contains("512 B") {
            512.0
        } else if c.imp.contains("64 B") {
            64.0
        } else {
            8.0
        };
        println!("{:<36} {:>10.2} {:>10.3}", c.imp, m, m * size / 1e3);
    }

    println!("\ntargets from the issue (informational):");
    for t in TARGETS {
        let (Some(s), Some(o)) = (
            figure(cases, t.workload, "shmipc"),
            figure(cases, t.workload, t.other),
        ) else {
            println!(
                "  {:<17} shmipc vs {:<13} not measured",
                t.workload, t.other
            );
            continue;
        };
        let unit = cases
            .iter()
            .find(|c| c.workloads.contains(&t.workload))
            .map_or(Unit::Ns, |c| c.unit);
        let (held, rel) = match unit {
            Unit::Ns => (s <= t.factor * o, "<="),
            _ => (s >= t.factor * o, ">="),
        };
        println!(
            "  {:<17} shmipc {rel} {:.1}x {:<13} {}  (shmipc {s:.3}, {} {o:.3} {})",
            t.workload,
            t.factor,
            t.other,
            if held { "HELD  " } else { "MISSED" },
            t.other,
            unit.name()
        );
    }
    println!();
    for r in results {
        println!("{r}");
    }
}
