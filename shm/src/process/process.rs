//! [`Process`]: Python's `multiprocessing.Process` — a named child, forked
//! to run a closure or started as a separate program, optionally a
//! *daemon* that dies with its parent.

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use crate::process::{self, Child, ExitStatus};

/// A recipe for a child process: its name and whether it is a daemon.
/// [`fork`](Process::fork) or [`spawn`](Process::spawn) starts it.
///
/// A **daemon** child is killed (`SIGKILL`) when its parent dies — also
/// when the parent is itself killed by `SIGKILL` and has no chance to clean
/// up. The child asks the kernel for this with
/// `prctl(PR_SET_PDEATHSIG, SIGKILL)` right after `fork`, then checks that
/// its parent is still the process that forked it: if the parent died
/// before the `prctl`, the child exits at once instead of running on
/// orphaned.
///
/// The kernel ties the death signal to the parent *thread* that forked the
/// child: start daemons from a thread that lives as long as they should
/// (the main thread, typically).
///
/// A non-daemon child outlives a parent that is killed; like every
/// [`Child`], its handle kills and reaps it when dropped while it still
/// runs (call [`ProcessHandle::join`] to wait for it instead).
///
/// ```
/// use shmipc::{ExitStatus, Process};
/// use std::time::Duration;
///
/// let mut worker = Process::new("worker").daemon(true).fork(|| 7)?;
/// assert_eq!(worker.name(), "worker");
/// assert_eq!(worker.join_timeout(Duration::from_secs(10))?, Some(ExitStatus::Code(7)));
///
/// let mut sleeper = Process::new("sleeper").spawn(std::process::Command::new("sleep").arg("30"))?;
/// assert!(sleeper.is_alive());
/// sleeper.terminate()?;
/// let status = sleeper.join_timeout(Duration::from_secs(10))?.expect("it ends");
/// assert_eq!(status.signal(), Some(libc::SIGTERM));
/// assert!(!sleeper.is_alive());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Process {
    name: String,
    daemon: bool,
}

impl Process {
    /// A process called `name` (just a label, like Python's `name`), not a
    /// daemon.
    pub fn new(name: impl Into<String>) -> Process {
        Process {
            name: name.into(),
            daemon: false,
        }
    }

    /// Whether the child dies with its parent (see the type's
    /// documentation).
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = daemon;
        self
    }

    /// Forks a child that runs `f` and exits with the code it returns (101
    /// if it panics); see [`process::fork`](crate::fork) for what the
    /// child inherits.
    pub fn fork<F: FnOnce() -> i32>(self, f: F) -> io::Result<ProcessHandle> {
        let parent = current_pid();
        let daemon = self.daemon;
        let child = process::fork(move || {
            if daemon && !die_with_parent(parent) {
                return ORPHANED_EXIT_CODE;
            }
            f()
        })?;
        Ok(ProcessHandle {
            name: self.name,
            daemon: self.daemon,
            child,
        })
    }

    /// Starts `cmd` as the child. A daemon's death signal is set between
    /// `fork` and `exec` (it survives `exec`, except into set-user-ID
    /// programs).
    pub fn spawn(self, cmd: &mut std::process::Command) -> io::Result<ProcessHandle> {
        if self.daemon {
            let parent = current_pid();
            // SAFETY: the hook runs in the forked child before exec and
            // calls only async-signal-safe functions (prctl, getppid),
            // allocating nothing and taking no lock.
            unsafe {
                cmd.pre_exec(move || {
                    if die_with_parent(parent) {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(libc::ESRCH))
                    }
                })
            };
        }
        let child = process::spawn(cmd)?;
        Ok(ProcessHandle {
            name: self.name,
            daemon: self.daemon,
            child,
        })
    }
}

/// The exit code of a daemon child whose parent had died before the child
/// could ask to die with it.
pub const ORPHANED_EXIT_CODE: i32 = 111;

fn current_pid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// In a freshly forked child: asks for SIGKILL when the parent dies, then
/// checks the parent is still `parent` (it may have died before the
/// prctl). Returns false if it already has. Async-signal-safe.
pub(crate) fn die_with_parent(parent: libc::pid_t) -> bool {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no
    // memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no preconditions and cannot fail.
    r == 0 && unsafe { libc::getppid() } == parent
}

/// A started [`Process`]: a [`Child`] with a name.
///
/// Dropping it while the process runs kills and reaps it (see [`Child`]);
/// [`ProcessHandle::into_child`] and [`Child::detach`] let it run on.
pub struct ProcessHandle {
    name: String,
    daemon: bool,
    child: Child,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("name", &self.name)
            .field("pid", &self.child.pid())
            .field("daemon", &self.daemon)
            .field("status", &self.child.status())
            .finish()
    }
}

impl ProcessHandle {
    /// The child (for `wait`, which only looks).
    pub(crate) fn child_ref(&self) -> &Child {
        &self.child
    }

    /// The name it was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Whether it dies with its parent.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Waits for it to end; see [`Child::join`].
    pub fn join(&mut self) -> io::Result<ExitStatus> {
        self.child.join()
    }

    /// Waits at most `timeout`; `Ok(None)` if it still runs.
    pub fn join_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        self.child.join_timeout(timeout)
    }

    /// Whether it still runs (reaping it if it has ended).
    pub fn is_alive(&mut self) -> bool {
        self.child.is_alive()
    }

    /// How it ended, once reaped: an exit code or a signal (Python's
    /// `exitcode`, which is negative for a signal).
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child.status()
    }

    /// Asks it to stop: `SIGTERM`.
    pub fn terminate(&mut self) -> io::Result<()> {
        self.child.terminate()
    }

    /// Kills it: `SIGKILL`.
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.kill()
    }

    /// The underlying [`Child`].
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Gives up the name and returns the underlying [`Child`].
    pub fn into_child(self) -> Child {
        self.child
    }
}
