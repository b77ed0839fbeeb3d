//! The measurement protocols every case shares: the control block in
//! shared memory, processes and threads pinned to cores, round trips with
//! per-round-trip latencies, streams of messages, and the cases' table.

use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use shmipc::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc::{Child, Unlinker};

use crate::iox::Iox;
use crate::stats::{Hist, Sample};
use crate::sys::{call_ipis, now_ns, pin, Meter, Scope, Spent};

/// The value that ends a stream of `u64` messages.
/// (Not `u64::MAX`: the spin workload sends `i + 1`.)
pub const STOP: u64 = u64::MAX - 1;

/// Set in the values a round trip sends once the measured interval has
/// begun, so that the echoing side knows when to start its meter.
pub const MEASURED: u64 = 1 << 62;

/// Cores for the two parties of a two-party workload.
pub const CORE_A: Option<usize> = Some(0);
pub const CORE_B: Option<usize> = Some(1);

/// One cache line pair of its own for each field, so that the fields of
/// [`Ctl`] never share a line.
#[repr(C, align(128))]
pub struct Pad<T>(pub T);

/// The control block every case shares between its processes or threads.
/// It lives in an anonymous shared mapping: all-zero bytes are a fresh one.
#[repr(C)]
pub struct Ctl {
    ready: Pad<AtomicU32>,
    go: Pad<AtomicU32>,
    finished: Pad<AtomicU32>,
    pub start_ns: Pad<AtomicU64>,
    end_ns: Pad<AtomicU64>,
    pub count: Pad<AtomicU64>,
    pub stops: Pad<AtomicU32>,
    pub ping: Pad<AtomicU64>,
    pub pong: Pad<AtomicU64>,
    pub fping: Pad<AtomicU32>,
    pub fpong: Pad<AtomicU32>,
    /// Sleepers on `fping` / `fpong` (the spinning futex pair).
    pub wping: Pad<AtomicU32>,
    pub wpong: Pad<AtomicU32>,
    pub counter: Pad<AtomicU64>,
    /// The lock workload: which process made the last increment, and how
    /// many each made.
    pub owner: Pad<AtomicU32>,
    pub split: [Pad<AtomicU64>; 2],
    pub handoffs: Pad<AtomicU64>,
    cpu_ns: Pad<AtomicU64>,
    sys_ns: Pad<AtomicU64>,
    counted: Pad<AtomicU32>,
    syscalls: Pad<AtomicU64>,
    membarriers: Pad<AtomicU64>,
    /// `/proc/interrupts` CAL at the start and the end, plus one (0: not
    /// read).
    ipi_start: Pad<AtomicU64>,
    ipi_end: Pad<AtomicU64>,
    /// Room for process-shared C objects (`sem_t`, `pthread_mutex_t`).
    raw: [Pad<[u8; 128]>; 2],
}

/// An anonymous shared mapping holding one zeroed [`Ctl`]; forked children
/// inherit it.
pub struct CtlMap {
    ptr: *mut Ctl,
}

impl CtlMap {
    pub fn new() -> CtlMap {
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

    pub fn ctl(&self) -> &Ctl {
        // SAFETY: page-aligned, zero-filled, mapped for our lifetime; Ctl is
        // atomics and bytes, for which zero is a valid value, and its plain
        // bytes are only reached through raw pointers.
        unsafe { &*self.ptr }
    }

    pub fn raw(&self, i: usize) -> *mut u8 {
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

fn ipi_mark(slot: &AtomicU64) {
    if let Some(v) = call_ipis() {
        slot.store(v + 1, Ordering::Release);
    }
}

impl Ctl {
    /// A party is set up: announce it and wait until all `n` have; the last
    /// to arrive reads the IPI count and starts the clock.
    pub fn arrive(&self, n: u32) {
        if self.ready.0.fetch_add(1, Ordering::AcqRel) + 1 == n {
            ipi_mark(&self.ipi_start.0);
            self.start_ns.0.store(now_ns(), Ordering::Relaxed);
            // SYNC POINT: Release pairs with the Acquire load below.
            self.go.0.store(1, Ordering::Release);
        }
        while self.go.0.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
    }

    /// A party's measured interval is over: `count` operations, and what
    /// it spent. The last of the parties that arrived reads the IPIs.
    pub fn finish(&self, count: u64, spent: Spent) {
        self.count.0.fetch_add(count, Ordering::AcqRel);
        let now = now_ns();
        self.end_ns.0.fetch_max(now, Ordering::AcqRel);
        self.add_spent(spent);
        let n = self.ready.0.load(Ordering::Acquire);
        if self.finished.0.fetch_add(1, Ordering::AcqRel) + 1 == n {
            ipi_mark(&self.ipi_end.0);
        }
    }

    pub fn add_spent(&self, s: Spent) {
        self.cpu_ns.0.fetch_add(s.cpu_ns, Ordering::AcqRel);
        self.sys_ns.0.fetch_add(s.sys_ns, Ordering::AcqRel);
        if let (Some(c), Some(m)) = (s.syscalls, s.membarriers) {
            self.counted.0.fetch_add(1, Ordering::AcqRel);
            self.syscalls.0.fetch_add(c, Ordering::AcqRel);
            self.membarriers.0.fetch_add(m, Ordering::AcqRel);
        }
    }

    /// Whether a producer that started at `start_ns` should stop now.
    pub fn expired(&self, dur: Duration) -> bool {
        now_ns() - self.start_ns.0.load(Ordering::Relaxed) >= dur.as_nanos() as u64
    }

    pub fn elapsed_ns(&self) -> f64 {
        (self.end_ns.0.load(Ordering::Acquire) - self.start_ns.0.load(Ordering::Acquire)) as f64
    }

    pub fn mmsg_per_s(&self) -> f64 {
        self.count.0.load(Ordering::Acquire) as f64 / self.elapsed_ns() * 1e3
    }

    pub fn gb_per_s(&self, size: usize) -> f64 {
        self.count.0.load(Ordering::Acquire) as f64 * size as f64 / self.elapsed_ns()
    }

    /// The sample of a stream workload (`count` operations, what the
    /// parties spent, the IPIs between the marks), with figure `value`.
    pub fn sample(&self, value: f64) -> Sample {
        let mut s = Sample {
            value,
            ops: self.count.0.load(Ordering::Acquire),
            ..Sample::default()
        };
        self.fill(&mut s);
        let (a, b) = (
            self.ipi_start.0.load(Ordering::Acquire),
            self.ipi_end.0.load(Ordering::Acquire),
        );
        if a > 0 && b > 0 {
            s.ipis = Some(b.saturating_sub(a));
        }
        s
    }

    /// Adds what the parties spent to `s`.
    pub fn fill(&self, s: &mut Sample) {
        s.cpu_ns += self.cpu_ns.0.load(Ordering::Acquire);
        s.sys_ns += self.sys_ns.0.load(Ordering::Acquire);
        if self.counted.0.load(Ordering::Acquire) > 0 {
            s.syscalls = Some(self.syscalls.0.load(Ordering::Acquire));
            s.membarriers = Some(self.membarriers.0.load(Ordering::Acquire));
        }
    }
}

/// Forks a child pinned to `core` that runs `f`.
pub fn child(core: Option<usize>, f: impl FnOnce()) -> Child {
    shmipc::fork(|| {
        pin(core);
        f();
        0
    })
    .expect("fork")
}

/// Waits for every child and insists that each succeeded.
pub fn join(children: Vec<Child>) {
    for mut c in children {
        let status = c
            .join_timeout(Duration::from_secs(60))
            .expect("join")
            .expect("a benchmark child hung for a minute");
        assert!(status.success(), "a benchmark child failed: {status}");
    }
}

pub type Job<'a> = (Option<usize>, Box<dyn FnOnce(&Ctl) + Send + 'a>);
pub type ProcJob<'a> = (Option<usize>, Box<dyn FnOnce(&Ctl) + 'a>);

/// Runs each job in a forked child pinned as asked; returns the control
/// block for the figures.
pub fn in_procs(jobs: Vec<ProcJob<'_>>) -> CtlMap {
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
pub fn in_threads(jobs: Vec<Job<'_>>) -> CtlMap {
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

pub fn spin_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(v) = f() {
            return v;
        }
        std::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

/// Round trips made before the measured interval.
const WARMUP: u64 = 200;

/// The initiating side of a round-trip workload: `rt(v)` sends `v` and
/// returns the echo. The measured interval has two halves: in the first,
/// round trips run back to back and give the mean (the figure); in the
/// second, each round trip is timed on its own (one clock read each) for
/// the percentiles. CPU time and IPIs cover both halves. Stops the echo.
pub fn initiate(ctl: &Ctl, dur: Duration, mut rt: impl FnMut(u64) -> u64) -> Sample {
    for i in 0..WARMUP {
        assert_eq!(rt(i), i, "the echo came back wrong");
    }
    let ipi0 = call_ipis();
    let meter = Meter::start(Scope::Thread);
    let half = dur / 2;
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < half {
        for _ in 0..32 {
            let v = MEASURED | n;
            assert_eq!(rt(v), v, "the echo came back wrong");
            n += 1;
        }
    }
    let mean = start.elapsed().as_nanos() as f64 / n as f64;
    let mut hist = Hist::new();
    let mut prev = Instant::now();
    let end = prev + half;
    loop {
        let v = MEASURED | n;
        assert_eq!(rt(v), v, "the echo came back wrong");
        n += 1;
        let now = Instant::now();
        hist.record((now - prev).as_nanos() as u64);
        prev = now;
        if now >= end {
            break;
        }
    }
    let spent = meter.stop();
    let ipi1 = call_ipis();
    assert_eq!(rt(STOP), STOP);
    ctl.add_spent(spent);
    Sample {
        value: mean,
        ops: n,
        ipis: ipi0.zip(ipi1).map(|(a, b)| b.saturating_sub(a)),
        hist: Some(hist),
        ..Sample::default()
    }
}

/// The echoing side: receives and sends back until [`STOP`] (which it
/// echoes too); meters itself from the first measured value to the STOP.
pub fn echo(ctl: &Ctl, mut recv: impl FnMut() -> u64, mut send: impl FnMut(u64)) {
    let mut meter = None;
    loop {
        let v = recv();
        if v == STOP {
            if let Some(m) = meter.take() {
                ctl.add_spent(Meter::stop(m));
            }
            send(v);
            return;
        }
        if meter.is_none() && v & MEASURED != 0 {
            meter = Some(Meter::start(Scope::Process));
        }
        send(v);
    }
}

/// A round trip with the initiator here on core A and the echo in a child
/// on core B, sharing `map`'s control block.
pub fn round_trip(
    map: &CtlMap,
    echo_side: impl FnOnce(&Ctl),
    initiator: impl FnOnce(&Ctl) -> Sample,
) -> Sample {
    let ctl = map.ctl();
    pin(CORE_A);
    let c = child(CORE_B, || echo_side(ctl));
    let mut s = initiator(ctl);
    join(vec![c]);
    // The initiator added its own share already; add the echo's.
    s.cpu_ns = 0;
    s.sys_ns = 0;
    ctl.fill(&mut s);
    s
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// A message type for the throughput workloads.
pub trait Msg: Copy + Send + 'static {
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
pub fn produce<M: Msg>(
    ctl: &Ctl,
    parties: u32,
    dur: Duration,
    scope: Scope,
    mut push: impl FnMut(M),
) {
    ctl.arrive(parties);
    let meter = Meter::start(scope);
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
    ctl.finish(0, meter.stop());
}

/// A consumer among `parties`, of `producers` producers: pops until every
/// producer's STOP was seen (counted in `ctl.stops` across consumers) and
/// the queue is empty. `pop` returns `None` when nothing is there now; a
/// blocking `pop` (never `None`) is fine for a lone consumer, which stops at
/// the last STOP since nothing can follow it.
pub fn consume<M: Msg>(
    ctl: &Ctl,
    parties: u32,
    producers: u32,
    consumers: u32,
    scope: Scope,
    mut pop: impl FnMut() -> Option<M>,
) {
    ctl.arrive(parties);
    let meter = Meter::start(scope);
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
    ctl.finish(got, meter.stop());
}

/// A byte-message producer among `parties`: messages of `size` bytes, the
/// first byte 1, until `dur` has passed; then one whose first byte is 2.
pub fn produce_bytes(
    ctl: &Ctl,
    parties: u32,
    dur: Duration,
    size: usize,
    mut send: impl FnMut(&[u8]),
) {
    let mut buf = vec![1u8; size];
    ctl.arrive(parties);
    let meter = Meter::start(Scope::Process);
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
    ctl.finish(0, meter.stop());
}

/// The one consumer of `producers` byte-message producers: `recv`
/// receives one message and returns its first byte.
pub fn consume_bytes(ctl: &Ctl, producers: u32, mut recv: impl FnMut() -> u8) {
    ctl.arrive(producers + 1);
    let meter = Meter::start(Scope::Process);
    let (mut got, mut stops) = (0, 0);
    while stops < producers {
        if recv() == 2 {
            stops += 1;
        } else {
            got += 1;
        }
    }
    ctl.finish(got, meter.stop());
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
pub enum Unit {
    /// Nanoseconds per round trip (two messages, one each way).
    Rt,
    /// Nanoseconds per operation (a lock and unlock, an increment).
    Op,
    Mmsg,
    Gbs,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Rt => "ns/rt",
            Unit::Op => "ns/op",
            Unit::Mmsg => "Mmsg/s",
            Unit::Gbs => "GB/s",
        }
    }

    /// Whether a smaller figure is better.
    pub fn lower_is_better(self) -> bool {
        matches!(self, Unit::Rt | Unit::Op)
    }
}

pub struct Env {
    pub dur: Duration,
    pub names: Unlinker,
    pub iox: Iox,
    /// `python3` and the path of `py_mp.py`, when Python is there.
    pub python: Option<(String, String)>,
}

pub type Run = Box<dyn Fn(&Env) -> Sample>;

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// shmipc itself (the base of every ratio in its workload).
    Ours,
    /// A competitor: what a user could pick instead.
    Peer,
    /// A limit: what no implementation of the workload can beat on this
    /// machine; reported as "fraction of the limit", apart from the peers.
    Limit,
}

pub struct Case {
    /// The workloads this figure is reported under (usually one).
    pub workloads: Vec<String>,
    pub imp: &'static str,
    pub unit: Unit,
    pub kind: Kind,
    /// Bytes per message (0: not a message workload).
    pub size: usize,
    pub run: Run,
    pub samples: Vec<Sample>,
    /// The sample of the counting pass, if it ran.
    pub counted: Option<Sample>,
}

impl Case {
    pub fn new(workloads: &[&str], imp: &'static str, unit: Unit, run: Run) -> Case {
        Case {
            workloads: workloads.iter().map(|w| w.to_string()).collect(),
            imp,
            unit,
            kind: if imp.starts_with("shmipc") {
                Kind::Ours
            } else {
                Kind::Peer
            },
            size: 0,
            run,
            samples: Vec::new(),
            counted: None,
        }
    }

    pub fn limit(mut self) -> Case {
        self.kind = Kind::Limit;
        self
    }

    pub fn bytes(mut self, size: usize) -> Case {
        self.size = size;
        self
    }

    pub fn in_workload(&self, w: &str) -> bool {
        self.workloads.iter().any(|x| x == w)
    }

    pub fn values(&self) -> Vec<f64> {
        self.samples.iter().map(|s| s.value).collect()
    }
}

/// A fresh name for this run, removed again when the run is over (and by
/// the `Unlinker` in any case).
pub struct Name(pub String);

impl Name {
    pub fn new(env: &Env, label: &str) -> Name {
        Name(env.names.name(label))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmipc::unlink(&self.0);
    }
}
