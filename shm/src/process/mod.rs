//! Starting, waiting for and stopping child processes, like Python's
//! `multiprocessing.Process`.
//!
//! [`fork`] runs a closure in a forked child; [`spawn`] starts a
//! [`Command`](std::process::Command). Either way a [`Child`] is returned,
//! which reaps the process exactly once: only `waitpid` on its own pid,
//! never on "any child", so it cannot steal another handle's status. Signals
//! are sent by pid, and only while the child is unreaped, so the pid cannot
//! have been reused by an unrelated process.
//!
//! A `Child` that is dropped while its process still runs **kills it with
//! `SIGKILL` and reaps it**, so a failing test or an early return never
//! leaks processes. [`Child::detach`] opts out.
//!
//! On top of these: [`Process`], a named child that can be a daemon, and
//! [`Pool`], worker processes that run tasks, and [`TypedPool`], which runs
//! any `fn(A) -> R` of serde types on them (each in the file named after
//! it).

mod pool;
pub(crate) mod pool_status;
#[allow(clippy::module_inception)] // the file is named after the type it holds
mod process;
mod spawned;
mod typed_pool;

pub use pool::{AsyncResult, ImapUnordered, Initializer, Pool, PoolBuilder, TaskError, TaskFn};
pub use process::{
    active_children, cpu_count, current_process, ActiveChild, CurrentProcess, Process,
    ProcessHandle, MAX_TARGET_ARGS, ORPHANED_EXIT_CODE, TARGET_PANIC_EXIT_CODE,
};
pub use typed_pool::{
    TypedAsyncResult, TypedImap, TypedImapUnordered, TypedMapResult, TypedPool, TypedPoolBuilder,
};

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code (0–255).
    Code(i32),
    /// A signal with this number killed it.
    Signal(i32),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            ExitStatus::Signal(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExitStatus::Signal(s) => Some(*s),
            ExitStatus::Code(_) => None,
        }
    }

    fn from_wait_status(status: libc::c_int) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => match signal_name(*s) {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return None,
    })
}

/// The exit code of a forked child whose closure panicked (Rust's own
/// exit code for a panicking `main`).
pub const PANIC_EXIT_CODE: i32 = 101;

/// Runs `f` in a forked child process and returns a handle to it.
///
/// The child runs `f` inside `catch_unwind` and ends with
/// `_exit(f())`, or `_exit(101)` if `f` panics. It never returns into the
/// caller's code, and never runs `atexit` handlers or the destructors of
/// anything the parent owned (a `Shared` it inherited is not dropped, let
/// alone unlinked). Output that `f` left in a buffer without flushing is
/// lost (`println!` flushes at each newline).
///
/// As after any `fork`, only the calling thread exists in the child: a
/// process-local lock another thread of the parent held at the moment of
/// the fork stays locked for ever in the child. Keep the child's work to
/// shmipc objects and simple code (`malloc` is safe: glibc prepares it for
/// `fork`), or [`spawn`] a fresh program instead.
pub fn fork<F: FnOnce() -> i32>(f: F) -> io::Result<Child> {
    // SAFETY: fork has no memory-safety preconditions of its own; the child
    // branch below never returns into the caller and ends in `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let code = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(code) => code,
            Err(_) => PANIC_EXIT_CODE,
        };
        // SAFETY: _exit ends the process at once, without running atexit
        // handlers or destructors, which belong to the parent's state.
        unsafe { libc::_exit(code) };
    }
    Ok(Child::new(pid, None))
}

/// Starts `cmd` as a child process and returns a handle to it.
///
/// The `std::process::Child` is kept inside the handle, so piped stdio
/// stays open while the handle lives (reach it with [`Child::std`]); but
/// reap the process through this handle, not through `std`'s.
pub fn spawn(cmd: &mut std::process::Command) -> io::Result<Child> {
    let child = cmd.spawn()?;
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "pid out of range"))?;
    Ok(Child::new(pid, Some(child)))
}

/// A child process made by [`fork`] or [`spawn`].
///
/// Dropping a `Child` whose process has not been reaped sends it `SIGKILL`
/// and reaps it; [`Child::detach`] lets it run on instead.
pub struct Child {
    pid: libc::pid_t,
    /// A pidfd for sleeping until the exit (None where pidfd_open is
    /// missing: Linux < 5.3, or seccomp).
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
    std: Option<std::process::Child>,
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .finish()
    }
}

impl Child {
    fn new(pid: libc::pid_t, std: Option<std::process::Child>) -> Child {
        Child {
            pid,
            pidfd: pidfd_open(pid),
            status: None,
            std,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The child's pidfd, while it is unreaped and one could be opened (for
    /// `wait` and the async `join`).
    pub(crate) fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// The `std` handle of a [`spawn`]ed child (for its piped stdio).
    pub fn std(&mut self) -> Option<&mut std::process::Child> {
        self.std.as_mut()
    }

    /// Waits for the child to end, as long as it takes, and returns how it
    /// ended (see [`Child::join_timeout`]). Returns the same status again
    /// on later calls.
    pub fn join(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        loop {
            if let Some(status) = self.wait(0)? {
                return Ok(status);
            }
        }
    }

    /// Waits at most `timeout` for the child to end. `Ok(None)` if it still
    /// runs. `Duration::MAX` (or any timeout past the end of the clock)
    /// waits for ever, as [`Child::join`] does.
    ///
    /// Sleeps in `poll` on a pidfd, so there is no busy loop; where pidfds
    /// are unavailable it polls `waitpid(WNOHANG)` with short sleeps.
    pub fn join_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let Some(deadline) = Instant::now().checked_add(timeout) else {
            return self.join().map(Some);
        };
        let mut nap = Duration::from_micros(100);
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            match &self.pidfd {
                Some(fd) => poll_readable(fd, left)?,
                None => {
                    std::thread::sleep(nap.min(left));
                    nap = (nap * 2).min(Duration::from_millis(10));
                }
            }
        }
    }

    /// Reaps the child if it has ended, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        self.wait(libc::WNOHANG)
    }

    /// Whether the child still runs (reaping it if it has ended).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// How the child ended, once it has been reaped (by `join`,
    /// `join_timeout`, `try_wait` or `is_alive`).
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Asks the child to stop: `SIGTERM`. Does nothing once it is reaped.
    pub fn terminate(&mut self) -> io::Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Kills the child: `SIGKILL`. Does nothing once it is reaped.
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends `sig` to the child. Does nothing once it is reaped (its pid
    /// may belong to someone else by then).
    pub fn signal(&mut self, sig: i32) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        // SAFETY: `pid` is positive and names our own unreaped child (a
        // zombie at worst), so it cannot have been reused.
        if unsafe { libc::kill(self.pid, sig) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Lets the child run on unsupervised: the handle no longer kills it
    /// when dropped, and nothing reaps it (it stays a zombie after it ends
    /// until this process exits). Returns its pid.
    pub fn detach(mut self) -> u32 {
        let pid = self.pid();
        // Close what we hold, then skip Drop (which would kill the child).
        self.pidfd = None;
        self.std = None;
        std::mem::forget(self);
        pid
    }

    /// One `waitpid` on our pid, retrying `EINTR`.
    fn wait(&mut self, flags: libc::c_int) -> io::Result<Option<ExitStatus>> {
        loop {
            let mut raw: libc::c_int = 0;
            // SAFETY: `raw` is a valid place for the status; we wait only
            // for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut raw, flags) };
            if r == self.pid {
                let status = ExitStatus::from_wait_status(raw);
                self.status = Some(status);
                self.pidfd = None;
                return Ok(Some(status));
            }
            if r == 0 {
                return Ok(None);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => {
                    // Someone else reaped it (SIGCHLD ignored, or a stray
                    // waitpid(-1)); its status is lost.
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "child {} was reaped elsewhere (is SIGCHLD ignored?)",
                            self.pid
                        ),
                    ));
                }
                _ => return Err(e),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        // SAFETY: as in `signal`: our own unreaped child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.join();
    }
}

fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let raw = libc::c_int::try_from(r).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sleeps until `fd` is readable (a pidfd: the process ended) or `timeout`
/// passes. Interruptions return early; the caller loops.
fn poll_readable(fd: &OwnedFd, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up, so a sub-millisecond remainder does not spin at 0 ms.
    let ms = timeout
        .as_micros()
        .div_ceil(1000)
        .min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut pfd, 1, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    Ok(())
}
