//! System tools of the comparison: time, cores, the machine's description,
//! file descriptors with sized buffers, futexes and process-shared C
//! primitives, and the meters of CPU time, system calls and IPIs.

use std::io;
use std::os::fd::RawFd;

use shmipc::sync::{AtomicBool, AtomicU32, Ordering};

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process.
pub fn now_ns() -> u64 {
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
pub fn ncpu() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Pins the calling thread to `core` (modulo the cores there are), or lets
/// it run anywhere with `None`.
pub fn pin(core: Option<usize>) {
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

pub fn check(rc: libc::c_int, what: &str) {
    assert!(rc == 0, "{what}: {}", io::Error::last_os_error());
}

// ---- the machine -------------------------------------------------------------

/// One line naming the CPU (as `lscpu` does: model name, family, model,
/// stepping), the cores, the kernel and the hypervisor, printed with every
/// table.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "?".to_string(), |(_, v)| v.trim().to_string())
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".to_string(), |s| s.trim().to_string());
    let virt = if field("flags").split(' ').any(|f| f == "hypervisor") {
        "virtualised"
    } else {
        "bare metal"
    };
    format!(
        "CPU \"{}\" (family {}, model {}, stepping {}), {} cores online, kernel {}, {}",
        field("model name"),
        field("cpu family"),
        field("model"),
        field("stepping"),
        ncpu(),
        kernel,
        virt
    )
}

// ---- file descriptors ----------------------------------------------------------

pub fn pipe_fds() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe { libc::pipe(fds.as_mut_ptr()) }, "pipe");
    (fds[0], fds[1])
}

pub fn socket_pair() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    check(rc, "socketpair");
    (fds[0], fds[1])
}

pub fn close(fd: RawFd) {
    // SAFETY: we own `fd` and do not use it afterwards.
    unsafe { libc::close(fd) };
}

/// Grows the pipe behind `fd` to at least `bytes` (never shrinks it below
/// the default); returns the size the kernel gave it. As root the kernel
/// lets a pipe pass `/proc/sys/fs/pipe-max-size`; otherwise we ask for at
/// most that.
pub fn size_pipe(fd: RawFd, bytes: usize) -> usize {
    // SAFETY: fcntl on a descriptor we own.
    let now = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    if (now as usize) < bytes {
        let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, want) } < 0 {
            let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
                .ok()
                .and_then(|s| s.trim().parse::<libc::c_int>().ok())
                .unwrap_or(want);
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, want.min(max)) };
        }
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) as usize }
}

fn sockopt(fd: RawFd, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: `v` is a valid c_int for the length we pass.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

fn get_sockopt(fd: RawFd, opt: libc::c_int) -> usize {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of their sizes.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    v as usize
}

/// `SO_SNDBUFFORCE` / `SO_RCVBUFFORCE` (Linux, root only: they pass
/// `net.core.wmem_max` / `rmem_max`).
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;

/// Grows the send buffer of `tx` and the receive buffer of `rx` to at
/// least `bytes` each; returns what the kernel reports (it doubles the
/// figure asked for, for its bookkeeping, and reports the doubled value).
pub fn size_socket(tx: RawFd, rx: RawFd, bytes: usize) -> (usize, usize) {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if get_sockopt(tx, libc::SO_SNDBUF) < 2 * bytes && !sockopt(tx, SO_SNDBUFFORCE, want) {
        sockopt(tx, libc::SO_SNDBUF, want);
    }
    if get_sockopt(rx, libc::SO_RCVBUF) < 2 * bytes && !sockopt(rx, SO_RCVBUFFORCE, want) {
        sockopt(rx, libc::SO_RCVBUF, want);
    }
    (
        get_sockopt(tx, libc::SO_SNDBUF),
        get_sockopt(rx, libc::SO_RCVBUF),
    )
}

pub fn write_all(fd: RawFd, mut buf: &[u8]) {
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
pub fn read_exact(fd: RawFd, buf: &mut [u8], spin: bool) {
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

pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    check(
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) },
        "fcntl",
    );
}

pub fn send_u64(fd: RawFd, v: u64) {
    write_all(fd, &v.to_ne_bytes());
}

pub fn recv_u64(fd: RawFd, spin: bool) -> u64 {
    let mut b = [0; 8];
    read_exact(fd, &mut b, spin);
    u64::from_ne_bytes(b)
}

// ---- futex and process-shared C primitives ---------------------------------

pub fn futex_wait(word: &AtomicU32, expected: u32) {
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

pub fn futex_wake(word: &AtomicU32) {
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
pub fn sem_init(p: *mut u8) -> *mut libc::sem_t {
    let sem = p.cast::<libc::sem_t>();
    // SAFETY: `p` points to 128 writable, 64-aligned shared bytes, more than
    // a sem_t needs; pshared = 1.
    check(unsafe { libc::sem_init(sem, 1, 0) }, "sem_init");
    sem
}

pub fn sem_post(s: *mut libc::sem_t) {
    // SAFETY: `s` was initialised by sem_init and stays mapped.
    check(unsafe { libc::sem_post(s) }, "sem_post");
}

pub fn sem_wait(s: *mut libc::sem_t) {
    // SAFETY: as in sem_post.
    while unsafe { libc::sem_wait(s) } != 0 {
        assert_eq!(
            io::Error::last_os_error().kind(),
            io::ErrorKind::Interrupted
        );
    }
}

pub fn sem_trywait(s: *mut libc::sem_t) -> bool {
    // SAFETY: as in sem_post.
    unsafe { libc::sem_trywait(s) == 0 }
}

/// A process-shared `pthread_mutex_t` of `kind` (`PTHREAD_MUTEX_NORMAL`,
/// `PTHREAD_MUTEX_ADAPTIVE_NP`, ...) at `p` (128 bytes of shared memory).
pub fn pthread_mutex_init(p: *mut u8, kind: libc::c_int) -> *mut libc::pthread_mutex_t {
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
        check(libc::pthread_mutexattr_settype(&mut attr, kind), "settype");
        check(libc::pthread_mutex_init(m, &attr), "pthread_mutex_init");
        libc::pthread_mutexattr_destroy(&mut attr);
    }
    m
}

// ---- meters: CPU time, system calls, IPIs -------------------------------------

/// Set for the counting pass only: then every [`Meter`] also counts its
/// thread's system calls and `membarrier` calls with tracepoint counters.
/// Enabling a `syscalls` tracepoint sends every system call of every
/// process through the kernel's slow path, so the figures of that pass are
/// never used; forked children inherit the flag's value.
pub static COUNTING: AtomicBool = AtomicBool::new(false);

/// Which CPU time a [`Meter`] reads: the whole process (a forked party,
/// helper threads included) or the calling thread (a party that is a
/// thread).
#[derive(Clone, Copy)]
pub enum Scope {
    Process,
    Thread,
}

/// The CPU time (user + system) and system time of `scope`, in ns.
fn cpu_ns(scope: Scope) -> (u64, u64) {
    // SAFETY: rusage is plain data; getrusage fills it.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    let who = match scope {
        Scope::Process => libc::RUSAGE_SELF,
        Scope::Thread => libc::RUSAGE_THREAD,
    };
    // SAFETY: `r` is valid for writes.
    unsafe { libc::getrusage(who, &mut r) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    (ns(r.ru_utime) + ns(r.ru_stime), ns(r.ru_stime))
}

/// The kernel's `perf_event_attr`, as far as we set it (the first 64
/// bytes, `PERF_ATTR_SIZE_VER0`).
#[repr(C)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    rest: [u64; 6],
}

const PERF_TYPE_TRACEPOINT: u32 = 2;

/// A counter of one tracepoint for the calling thread (from now on).
struct Tracepoint(RawFd);

impl Tracepoint {
    fn open(event: &str) -> Option<Tracepoint> {
        let id: u64 = std::fs::read_to_string(format!("/sys/kernel/tracing/events/{event}/id"))
            .or_else(|_| {
                std::fs::read_to_string(format!("/sys/kernel/debug/tracing/events/{event}/id"))
            })
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let attr = PerfEventAttr {
            kind: PERF_TYPE_TRACEPOINT,
            size: size_of::<PerfEventAttr>() as u32,
            config: id,
            rest: [0; 6],
        };
        // SAFETY: `attr` is a valid perf_event_attr of the size it states;
        // pid 0 / cpu -1 = this thread on any CPU, no group, no flags.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                0,
                -1,
                -1,
                0,
            )
        };
        (fd >= 0).then_some(Tracepoint(fd as RawFd))
    }

    fn read(&self) -> u64 {
        let mut v = 0u64;
        // SAFETY: `v` is valid for 8 bytes of writes.
        let n = unsafe { libc::read(self.0, (&mut v as *mut u64).cast(), 8) };
        if n == 8 {
            v
        } else {
            0
        }
    }
}

impl Drop for Tracepoint {
    fn drop(&mut self) {
        close(self.0);
    }
}

/// What one party spent over its measured interval.
#[derive(Default, Clone, Copy)]
pub struct Spent {
    pub cpu_ns: u64,
    pub sys_ns: u64,
    /// System calls and `membarrier` calls (counting pass only).
    pub syscalls: Option<u64>,
    pub membarriers: Option<u64>,
}

/// Started where a party's measured interval starts, stopped where it
/// ends.
pub struct Meter {
    scope: Scope,
    cpu: (u64, u64),
    counters: Option<(Tracepoint, Tracepoint, u64, u64)>,
}

impl Meter {
    pub fn start(scope: Scope) -> Meter {
        let cpu = cpu_ns(scope);
        let counters = if COUNTING.load(Ordering::Relaxed) {
            match (
                Tracepoint::open("raw_syscalls/sys_enter"),
                Tracepoint::open("syscalls/sys_enter_membarrier"),
            ) {
                (Some(s), Some(m)) => {
                    let (s0, m0) = (s.read(), m.read());
                    Some((s, m, s0, m0))
                }
                _ => None,
            }
        } else {
            None
        };
        Meter {
            scope,
            cpu,
            counters,
        }
    }

    pub fn stop(self) -> Spent {
        let (syscalls, membarriers) = match &self.counters {
            // Two of the system calls counted are the meter's own: the
            // read of `m0` above and the read of `s` here (a tracepoint at
            // system-call entry counts the read that reads it).
            Some((s, m, s0, m0)) => {
                let s1 = s.read();
                let m1 = m.read();
                (Some((s1 - s0).saturating_sub(2)), Some(m1 - m0))
            }
            None => (None, None),
        };
        let (cpu, sys) = cpu_ns(self.scope);
        Spent {
            cpu_ns: cpu - self.cpu.0,
            sys_ns: sys - self.cpu.1,
            syscalls,
            membarriers,
        }
    }
}

/// The function-call IPIs (`/proc/interrupts`, line `CAL`, all CPUs):
/// what `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` sends to the other
/// cores. Machine-wide: other processes' IPIs count too.
pub fn call_ipis() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/interrupts").ok()?;
    let line = text.lines().find(|l| l.trim_start().starts_with("CAL:"))?;
    Some(
        line.trim_start()["CAL:".len()..]
            .split_whitespace()
            .map_while(|w| w.parse::<u64>().ok())
            .sum(),
    )
}
