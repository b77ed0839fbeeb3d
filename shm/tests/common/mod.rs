//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use shmipc::{
    fork, ByteQueue, BytesConfig, Child, Event, ExitStatus, Named, PopError, Queue, Shared,
    Unlinker,
};

/// xorshift64*: [`Rng::seeded`] from the clock (report `rng.0` with a
/// failure, so that [`Rng`]`(seed)` repeats the run), [`Rng::new`] for a
/// fixed sequence.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng(t | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A semaphore with `initial` permits and no bound.
pub fn unbounded(initial: u32) -> shmipc::SemaphoreConfig {
    shmipc::SemaphoreConfig { initial, max: None }
}

/// How long any child may take before the test calls it hung.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a receive that must end in `Disconnected` may wait at most
/// before the test calls it a failure (code that misses the end times out
/// here).
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Several owner check intervals (50 ms each): a receiver that would
/// wrongly report end-of-stream (or a waiter that judged a live holder
/// dead) has done so by then.
pub const SEVERAL_CHECKS: Duration = Duration::from_millis(400);

/// How long a call that must succeed (a peer's message, its readiness)
/// may take before the test calls it hung.
pub const LONG: Duration = Duration::from_secs(30);

/// The timeout of each blocking call in the wake and close tests: with the
/// `strict-wakes` feature, where a lost wake-up is not rescued by a
/// periodic re-check, one second (ample for a wake-up, and a timeout fails
/// the test); otherwise [`CHILD_TIMEOUT`].
pub const WAKE_PATIENCE: Duration = if cfg!(feature = "strict-wakes") {
    Duration::from_secs(1)
} else {
    CHILD_TIMEOUT
};

/// How long a sleeper that a close must wake waits, in the close tests
/// that let it fall asleep first (for a few hundred milliseconds): with
/// `strict-wakes`, three seconds, so that a close whose wake-up is lost
/// ends the sleep in a timeout, which the test reports; otherwise
/// thirty.
pub const SLEEPER_PATIENCE: Duration = if cfg!(feature = "strict-wakes") {
    Duration::from_secs(3)
} else {
    Duration::from_secs(30)
};

/// The file behind a segment name.
pub fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm{name}"))
}

/// A test's [`Unlinker`] (`label`, as in [`Unlinker::new`]) and the names
/// of its first segments (`labels`, as in [`Unlinker::name`]).
pub fn segment_names<const N: usize>(label: &str, labels: [&str; N]) -> (Unlinker, [String; N]) {
    let names = Unlinker::new(label);
    let made = labels.map(|l| names.name(l));
    (names, made)
}

/// [`segment_names`] for one segment.
pub fn segment_name(label: &str, first: &str) -> (Unlinker, String) {
    let (names, [name]) = segment_names(label, [first]);
    (names, name)
}

/// The count in environment variable `var`, or `default` if it is unset
/// or not a number.
pub fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Joins `child`, failing the test (and killing the child, by dropping it)
/// if it does not end within [`CHILD_TIMEOUT`].
pub fn join(child: &mut Child) -> ExitStatus {
    let pid = child.pid();
    child
        .join_timeout(CHILD_TIMEOUT)
        .expect("waitpid failed")
        .unwrap_or_else(|| panic!("child {pid} did not finish within {CHILD_TIMEOUT:?}"))
}

/// Forks a child that runs `step`, sets `ready`, and then sleeps until it
/// is killed, keeping what `step` returned: its handles stay open, so the
/// test sees a live peer until it kills (or stops) the child. Returns once
/// the child is ready; one that is not within [`CHILD_TIMEOUT`] fails the
/// test (and is killed, by dropping it).
pub fn fork_parked_on<T>(ready: &Shared<Event>, step: impl FnOnce() -> T) -> Child {
    let child = fork(|| {
        let _held = step();
        ready.set();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .expect("fork");
    assert!(
        ready.wait_timeout(CHILD_TIMEOUT),
        "child {} never got ready",
        child.pid()
    );
    child
}

/// [`fork_parked_on`] with an event of its own.
pub fn fork_parked<T>(step: impl FnOnce() -> T) -> Child {
    fork_parked_on(&Shared::<Event>::anon(()).expect("anon event"), step)
}

/// Forks a child that runs `step`, sets `ready`, and waits to be killed;
/// SIGKILLs it once it is ready and reaps it: it dies right after `step`
/// (or inside it, where `step` sets `ready` itself and then blocks).
pub fn kill_after(ready: &Shared<Event>, step: impl FnOnce()) {
    let mut child = fork_parked_on(ready, step);
    child.kill().expect("kill");
    assert_eq!(join(&mut child), ExitStatus::Signal(libc::SIGKILL));
}

/// Forks a child that waits for `go` (and exits with code 4 if it is not
/// set within [`CHILD_TIMEOUT`]), then exits with what `act` returns.
/// `act` is moved into the child: the parent's copy of what it owns (an
/// end handed to the child) is dropped when `fork` returns.
pub fn fork_on(go: &Shared<Event>, act: impl FnOnce() -> i32) -> std::io::Result<Child> {
    fork(move || {
        if !go.wait_timeout(CHILD_TIMEOUT) {
            return 4;
        }
        act()
    })
}

/// A byte queue (`label`; a ring of 128 bytes, messages of up to 40) whose
/// way is blocked by a dead reader: two messages were sent, a reader in
/// another process took the first and was killed holding its record, and
/// the second has been received here.
pub fn byte_queue_behind_a_dead_reader(label: &str) -> (Unlinker, ByteQueue) {
    let (names, name) = segment_name(label, "q");
    let q = ByteQueue::create(&name, BytesConfig::new(128, 40)).unwrap();
    let ready = Shared::<Event>::create(&names.name("ready"), ()).unwrap();
    q.send(&[1; 40]).unwrap();
    q.send(&[2; 40]).unwrap();
    kill_after(&ready, || {
        let q = ByteQueue::open(&name).unwrap();
        std::mem::forget(q.recv().unwrap()); // holds message 1 until killed
    });
    assert_eq!(q.recv_vec().unwrap(), [2; 40]);
    (names, q)
}

/// Kills a producer of the queue `name` (items of `u64`) that has claimed
/// a slot and stopped before publishing it ([`kill_after`] on `ready`).
pub fn kill_a_claiming_producer(ready: &Shared<Event>, name: &str) {
    kill_after(ready, || {
        Queue::<u64>::open(name)
            .unwrap()
            .claim_push_and_stop()
            .unwrap();
    });
}

/// Kills a writer of the byte queue `name` that has reserved 40 bytes and
/// written some of them, before it commits ([`kill_after`] on `ready`).
pub fn kill_a_reserving_writer(ready: &Shared<Event>, name: &str) {
    kill_after(ready, || {
        let q = ByteQueue::open(name).unwrap();
        let mut g = q.reserve(40).unwrap();
        g.write_at(0, b"half a mess").unwrap();
        std::mem::forget(g); // dies before commit
    });
}

/// `N` anonymous events, for a test and its children to signal each
/// other with.
pub fn anon_events<const N: usize>() -> [Shared<Event>; N] {
    std::array::from_fn(|_| Shared::<Event>::anon(()).unwrap())
}

/// Forks a child that sleeps for `nap` and then exits with `code`.
pub fn fork_sleeper(nap: Duration, code: i32) -> Child {
    fork(move || {
        std::thread::sleep(nap);
        code
    })
    .unwrap()
}

/// A forked child's exit code for a send or push: 0 if it went through,
/// 5 if not.
pub fn sent_code<E>(r: Result<(), E>) -> i32 {
    if r.is_ok() {
        0
    } else {
        5
    }
}

/// The receiving half of a sender held by another process that sends
/// `item` once `go` is set: `pop` (a timed pop) is not told end-of-stream
/// while `holder` holds the sender, and returns `item` once `go` is set.
pub fn held_sender_sends_on_go<T: PartialEq + std::fmt::Debug>(
    mut pop: impl FnMut(Duration) -> Result<T, PopError>,
    go: &Shared<Event>,
    holder: &str,
    item: T,
) {
    assert_eq!(
        pop(SEVERAL_CHECKS),
        Err(PopError::Timeout),
        "false end-of-stream: {holder}"
    );
    go.set();
    assert_eq!(pop(LONG), Ok(item));
}

/// A queue (`label`; 8 items of `u32`) and a second handle on it that has
/// pushed 1: a producer, in a peer slot of its own, to hand to a child.
pub fn queue_and_producer(label: &str) -> (Unlinker, Queue<u32>, Queue<u32>) {
    let (names, name) = segment_name(label, "q");
    let q = Queue::<u32>::create(&name, shmipc::RingConfig::new(8)).unwrap();
    let tx = Queue::<u32>::open(&name).unwrap();
    tx.push(1).unwrap();
    (names, q, tx)
}

/// The parent's half of a queue producer handed over to `child` (forked
/// with [`fork_on`] on `go`), which pushes 2 when told: `q` pops the 1 the
/// producer pushed before, then [`held_sender_sends_on_go`] (`holder`
/// holds the producer), and the child exits 0.
pub fn handed_producer_pushes_two(
    q: &Queue<u32>,
    go: &Shared<Event>,
    child: &mut Child,
    holder: &str,
) {
    assert_eq!(q.pop_timeout(LONG), Ok(1));
    held_sender_sends_on_go(
        |t| q.pop_timeout(t),
        go,
        &format!("{holder} holds the producer"),
        2,
    );
    assert_eq!(join(child), ExitStatus::Code(0));
}

/// The exit code of an intermediate process whose `unshare` failed.
pub const NO_NAMESPACE: i32 = 77;

/// Runs `f` as the first process (pid 1) of a new pid namespace: a
/// grandchild, since `unshare(CLONE_NEWPID)` applies to the caller's later
/// children. Returns the intermediate child, whose exit code is `f`'s (or
/// 128 + the signal that ended it), and stores the grandchild's pid as the
/// parent's namespace numbers it in `inner`. `None` if this user cannot
/// make namespaces (not root); as root that is a failure.
pub fn in_new_pid_namespace(
    inner: &Shared<shmipc::AtomicU32>,
    f: impl FnOnce() -> i32,
) -> Option<Child> {
    let mut child = fork(|| {
        // SAFETY: unshare(CLONE_NEWPID) only changes the namespace of
        // children made from now on.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return NO_NAMESPACE;
        }
        // SAFETY: this process has one thread; the grandchild runs `f` and
        // ends in _exit.
        match unsafe { libc::fork() } {
            -1 => 2,
            0 => {
                // SAFETY: getpid cannot fail.
                let code = if unsafe { libc::getpid() } != 1 {
                    3 // not in a new namespace after all
                } else {
                    f()
                };
                // SAFETY: ends the grandchild without running the parent's
                // destructors.
                unsafe { libc::_exit(code) }
            }
            g => {
                inner.store(g as u32, SeqCst);
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(g, &mut status, 0) };
                if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                }
            }
        }
    })
    .expect("fork");
    // Wait until the grandchild exists, or the intermediate gave up.
    let start = Instant::now();
    while inner.load(SeqCst) == 0 && start.elapsed() < LONG {
        if let Some(status) = child.try_wait().expect("waitpid") {
            assert_eq!(status, ExitStatus::Code(NO_NAMESPACE));
            // SAFETY: geteuid cannot fail.
            if unsafe { libc::geteuid() } == 0 {
                panic!("running as root, but unshare(CLONE_NEWPID) failed");
            }
            eprintln!("skipped: unshare(CLONE_NEWPID) needs root (CAP_SYS_ADMIN)");
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Some(child)
}

/// Joins every child and asserts each exited with code 0.
pub fn join_all_ok(children: &mut [Child]) {
    for (i, child) in children.iter_mut().enumerate() {
        assert_eq!(join(child), ExitStatus::Code(0), "child #{i}");
    }
}

/// Reads `buf.len()` raw bytes of a segment's file at `offset`.
pub fn peek(name: &str, offset: u64, buf: &mut [u8]) {
    std::fs::File::open(shm_path(name))
        .unwrap()
        .read_exact_at(buf, offset)
        .unwrap();
}

pub fn peek_u32(name: &str, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    peek(name, offset, &mut b);
    u32::from_ne_bytes(b)
}

pub fn peek_u64(name: &str, offset: u64) -> u64 {
    let mut b = [0u8; 8];
    peek(name, offset, &mut b);
    u64::from_ne_bytes(b)
}

/// A segment's payload (a [`shmipc::Segment`]) as atomic words: a shared
/// bitmap or a set of counters, accessed only through these atomics.
pub fn words(seg: &shmipc::Segment) -> &[shmipc::sync::AtomicU64] {
    // SAFETY: the payload is 128-byte aligned, `len` bytes long, mapped as
    // long as `seg` lives (which the slice borrows), and accessed only
    // through these atomics, here and in forked children.
    unsafe { std::slice::from_raw_parts(seg.as_ptr().cast(), seg.len() / 8) }
}

/// Writes raw bytes into a segment's file at `offset`, as a hostile or
/// buggy peer would.
pub fn poke(name: &str, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(name))
        .expect("open segment file");
    file.write_all_at(bytes, offset)
        .expect("write segment file");
}

pub fn poke_u32(name: &str, offset: u64, value: u32) {
    poke(name, offset, &value.to_ne_bytes());
}

pub fn poke_u64(name: &str, offset: u64, value: u64) {
    poke(name, offset, &value.to_ne_bytes());
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Header offsets (see `shmipc::header`).
pub mod off {
    pub const VERSION: u64 = 8;
    pub const STATE: u64 = 12;
    pub const CREATOR_PID: u64 = 16;
    pub const KIND: u64 = 20;
    pub const TOTAL_SIZE: u64 = 24;
    pub const OBJECT_OFFSET: u64 = 32;
    pub const OBJECT_SIZE: u64 = 40;
    pub const OBJECT_ALIGN: u64 = 48;
    pub const PARAMS: u64 = 56;
    pub const PEERS_OFFSET: u64 = 88;
    pub const PEER_SLOTS: u64 = 96;
}

/// Takes the write lock on byte `at` of the segment's file through a
/// description of its own (`F_OFD_SETLK`), as a creator or a peer does;
/// the lock lasts as long as the returned file is open.
pub fn hold_byte(name: &str, at: i64) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(shm_path(name))
        .expect("open segment file");
    // SAFETY: flock is plain data; zero is valid for every field.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = at;
    fl.l_len = 1;
    // SAFETY: a valid flock for the call.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    assert_eq!(r, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
    file
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process, so a
/// child's stamp and the parent's reading compare.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The word of the Event in segment `name`, read through its file.
pub fn event_word(name: &str) -> u32 {
    let file = std::fs::File::open(shm_path(name)).unwrap();
    let mut b = [0u8; 8];
    file.read_exact_at(&mut b, off::OBJECT_OFFSET).unwrap();
    let at = u64::from_ne_bytes(b);
    let mut w = [0u8; 4];
    file.read_exact_at(&mut w, at).unwrap();
    u32::from_ne_bytes(w)
}

/// The state letter of process `pid` in `/proc/<pid>/stat` (`R`, `S`,
/// `T` stopped, `Z` zombie, ...), or `None` if it cannot be read.
pub fn proc_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// Forks a child that pulses the Event in segment `name` (sets it, then
/// clears it) once a waiter has armed it (its WAITERS bit, 2, is up), with
/// this process stopped meanwhile, so that nothing here can look between
/// the set and the clear: only the event's generation tells a waiter a
/// set came. The child exits 0, or 2 (no open), 3 (never armed) or 4
/// (this process was not seen stopped).
pub fn fork_pulse_while_stopped(name: &str) -> Child {
    fork(|| {
        let Ok(e) = Shared::<Event>::open(name) else {
            return 2;
        };
        if !eventually(CHILD_TIMEOUT, || event_word(name) & 2 != 0) {
            return 3;
        }
        // SAFETY: getppid and kill take plain integers.
        let parent = unsafe { libc::getppid() };
        // SAFETY: as above; the parent is the test process, resumed below.
        unsafe { libc::kill(parent, libc::SIGSTOP) };
        let stopped = eventually(CHILD_TIMEOUT, || proc_state(parent) == Some('T'));
        e.set();
        e.clear();
        // SAFETY: as above.
        unsafe { libc::kill(parent, libc::SIGCONT) };
        if stopped {
            0
        } else {
            4
        }
    })
    .unwrap()
}

/// CPU time (user + system) of `who` (`RUSAGE_SELF`, `RUSAGE_THREAD`).
pub fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is valid for writing.
    assert_eq!(unsafe { libc::getrusage(who, &mut u) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Makes system call `nr` fail with `ENOSYS` in the calling thread and the
/// threads it starts later (a seccomp filter, as some sandboxes, or a
/// kernel too old for the call, do); returns whether the filter is in
/// place. The process must be one the test may spoil: a forked child.
pub fn forbid_syscall(nr: libc::c_long) -> bool {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let filter = [
        insn(LD_W_ABS, 0, 0, 0), // the system call number (seccomp_data.nr)
        insn(JEQ_K, 0, 1, nr as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with plain integers, then a pointer to `prog`, valid
    // for the call (the kernel copies the program).
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) == 0
    }
}

/// Checks that a typed receive of the hostile message `m` (the `i`-th)
/// from segment `name` failed to decode, naming the segment, a type whose
/// name ends with `type_suffix`, the message's length and a reason.
pub fn expect_decode_error<T: std::fmt::Debug>(
    r: Result<T, shmipc::MessageError>,
    name: &str,
    type_suffix: &str,
    i: usize,
    m: &[u8],
) {
    match r {
        Err(shmipc::MessageError::Decode {
            segment,
            type_name,
            len,
            reason,
        }) => {
            assert_eq!(segment, name);
            assert!(type_name.ends_with(type_suffix), "{type_name}");
            assert_eq!(len, m.len(), "message {i}");
            assert!(!reason.is_empty());
        }
        other => panic!("hostile message {i} ({m:?}) gave {other:?}"),
    }
}
