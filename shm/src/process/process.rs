//! [`Process`]: Python's `multiprocessing.Process` — a named child, forked
//! to run a closure or started as a separate program, optionally a
//! *daemon* that dies with its parent.

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::spawned;
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
        let (daemon, name) = (self.daemon, self.name.clone());
        let child = process::fork(move || {
            if daemon && !die_with_parent(parent) {
                return ORPHANED_EXIT_CODE;
            }
            become_child(name, daemon);
            f()
        })?;
        Ok(self.handle(child))
    }

    /// Forks a child that runs `target(args)` (Python's `Process(target=,
    /// args=).start()`): its exit code is 0 when `target` returns, and 1
    /// when it panics, with a line on stderr naming the process and the
    /// panic message (Python's traceback). In the child,
    /// [`current_process`] has this process's name.
    ///
    /// The arguments are serde types, as for a spawned child
    /// ([`Process::target_command`]), so that one target serves both; a
    /// forked child gets them without encoding (its memory is a copy).
    /// Non-capturing closures coerce to `fn`.
    ///
    /// ```
    /// use shmipc::{current_process, Process};
    ///
    /// fn greet(who: (String, Vec<u32>)) {
    ///     assert_eq!(current_process().name(), "greeter");
    ///     assert_eq!(who.1.len(), 2);
    /// }
    /// let mut p = Process::new("greeter").start(greet, ("ada".to_owned(), vec![1, 2]))?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start<A>(self, target: fn(A), args: A) -> io::Result<ProcessHandle>
    where
        A: Serialize + DeserializeOwned,
    {
        let name = self.name.clone();
        self.fork(move || run_target(&name, || target(args)))
    }

    /// A command that runs `target(args)` in a new process of this same
    /// executable (Python's `spawn` start method): pass it to
    /// [`Process::spawn`] (after adding the program's own arguments or
    /// stdio). The program must call [`Process::serve_if_child`] first
    /// thing in `main` (a test binary: first thing in the test, with
    /// `--exact <test>` among the arguments), which runs the target and
    /// exits there.
    ///
    /// The target crosses `exec` and address-space randomisation as a
    /// [`TypedPool`](crate::TypedPool)'s functions do: by its offset from a
    /// known function of the binary, with a trampoline monomorphised for
    /// `A` that decodes the arguments; the child checks that it runs the
    /// same binary (exit code 7 and a message on stderr otherwise). The
    /// arguments travel encoded (postcard, hex) in an environment variable,
    /// so they are limited to [`MAX_TARGET_ARGS`] bytes encoded; larger
    /// ones are an error naming the process and both sizes.
    pub fn target_command<A>(&self, target: fn(A), args: A) -> io::Result<std::process::Command>
    where
        A: Serialize + DeserializeOwned,
    {
        let bad = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("process {:?}: {why}", self.name),
            )
        };
        let bytes = postcard::to_allocvec(&args).map_err(|e| {
            bad(format!(
                "its arguments of type {} could not be encoded: {e}",
                std::any::type_name::<A>()
            ))
        })?;
        if bytes.len() > MAX_TARGET_ARGS {
            return Err(bad(format!(
                "its arguments encode to {} bytes, more than the {MAX_TARGET_ARGS} bytes \
                 a spawned target can be passed (send larger data through a queue)",
                bytes.len()
            )));
        }
        Ok(spawned::target_command(
            &self.name,
            self.daemon,
            call_target::<A> as spawned::TargetTrampoline,
            target as usize,
            &bytes,
        ))
    }

    /// In a process that [`Process::target_command`] started, runs the
    /// target and exits; in a pool worker a spawned
    /// [`TypedPool`](crate::TypedPool) started, serves the pool and exits;
    /// anywhere else returns at once. Call it first thing in `main`.
    pub fn serve_if_child() {
        spawned::serve_if_worker();
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
        Ok(self.handle(child))
    }

    /// The handle of a started child, listed for [`active_children`].
    fn handle(self, child: Child) -> ProcessHandle {
        let pid = child.pid();
        let tracked = Arc::new(Tracked {
            name: self.name,
            daemon: self.daemon,
            pid,
            child: Mutex::new(child),
        });
        let mut list = registry();
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&tracked));
        ProcessHandle { tracked }
    }
}

/// The longest a [`ProcessHandle`] waits in one go while it holds its
/// lock (see [`ProcessHandle::join_timeout`]).
const JOIN_SLICE: Duration = Duration::from_millis(50);

/// The largest encoded arguments [`Process::target_command`] passes
/// (postcard bytes; they travel as hex in one environment variable, which
/// Linux limits to 128 KiB).
pub const MAX_TARGET_ARGS: usize = 32 * 1024;

/// The exit code of a target that panicked (Python's exit code for an
/// uncaught exception).
pub const TARGET_PANIC_EXIT_CODE: i32 = 1;

/// Runs a target in the child: 0 when it returns, 1 with a line on stderr
/// when it panics.
pub(crate) fn run_target(name: &str, f: impl FnOnce()) -> i32 {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => 0,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(a panic without a message)".to_owned());
            spawned::report(&format!(
                "process {name:?} (pid {}) failed: {msg}",
                std::process::id()
            ));
            TARGET_PANIC_EXIT_CODE
        }
    }
}

/// The trampoline of a spawned target: decodes an `A` and calls the
/// `fn(A)` at address `f`.
fn call_target<A: DeserializeOwned>(f: usize, args: &[u8]) -> Result<(), String> {
    // SAFETY: `f` is the address of a `fn(A)`: the parent took the offset
    // of exactly such a function in `Process::target_command`, together
    // with the offset of this trampoline monomorphised for the same `A`,
    // and the child (which checked it runs the same binary) added both to
    // its image's base.
    let f = unsafe { std::mem::transmute::<*const (), fn(A)>(f as *const ()) };
    let args: A =
        crate::typed::decode(args, Some("(process target)")).map_err(|e| e.to_string())?;
    f(args);
    Ok(())
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
    tracked: Arc<Tracked>,
}

/// A started child as its handle and [`active_children`] share it.
struct Tracked {
    name: String,
    daemon: bool,
    pid: u32,
    child: Mutex<Child>,
}

impl Tracked {
    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("name", &self.tracked.name)
            .field("pid", &self.tracked.pid)
            .field("daemon", &self.tracked.daemon)
            .field("status", &self.exit_status())
            .finish()
    }
}

impl ProcessHandle {
    /// The name it was given.
    pub fn name(&self) -> &str {
        &self.tracked.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.tracked.pid
    }

    /// Whether it dies with its parent.
    pub fn is_daemon(&self) -> bool {
        self.tracked.daemon
    }

    /// Waits for it to end; see [`Child::join`].
    pub fn join(&self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.join_timeout(Duration::MAX)? {
                return Ok(status);
            }
        }
    }

    /// Waits at most `timeout`; `Ok(None)` if it still runs.
    ///
    /// It waits in slices of at most 50 ms, taking the handle's
    /// lock for each, so that another thread's [`kill`](Self::kill) or
    /// [`active_children`] gets in meanwhile.
    pub fn join_timeout(&self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = shmipc_core::Deadline::after(timeout);
        loop {
            let slice = deadline.remaining().min(JOIN_SLICE);
            if let Some(status) = self.tracked.child().join_timeout(slice)? {
                return Ok(Some(status));
            }
            if deadline.has_passed() {
                return Ok(None);
            }
        }
    }

    /// Whether it still runs (reaping it if it has ended).
    pub fn is_alive(&self) -> bool {
        self.tracked.child().is_alive()
    }

    /// How it ended, once reaped: an exit code or a signal.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.tracked.child().status()
    }

    /// Python's `exitcode`: `None` while it runs, its exit code once it
    /// has ended (reaping it), or minus the number of the signal that
    /// killed it (`-9` for `SIGKILL`). A target that panicked exits with 1.
    pub fn exitcode(&self) -> Option<i32> {
        match self.tracked.child().try_wait() {
            Ok(Some(ExitStatus::Code(c))) => Some(c),
            Ok(Some(ExitStatus::Signal(s))) => Some(-s),
            _ => None,
        }
    }

    /// Asks it to stop: `SIGTERM`.
    pub fn terminate(&self) -> io::Result<()> {
        self.tracked.child().terminate()
    }

    /// Kills it: `SIGKILL`.
    pub fn kill(&self) -> io::Result<()> {
        self.tracked.child().kill()
    }

    /// The underlying [`Child`] (locked: [`active_children`] may look at it
    /// from another thread, and the other calls here wait for the lock).
    pub fn child(&self) -> MutexGuard<'_, Child> {
        self.tracked.child()
    }

    /// Gives up the name and returns the underlying [`Child`] (it is no
    /// longer listed by [`active_children`]).
    pub fn into_child(self) -> Child {
        let mut list = registry();
        list.retain(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.tracked)));
        // The list held the only other reference, a weak one, and
        // `active_children` upgrades only under the registry's lock.
        match Arc::try_unwrap(self.tracked) {
            Ok(t) => t.child.into_inner().unwrap_or_else(PoisonError::into_inner),
            Err(_) => unreachable!("a ProcessHandle is its child's only owner"),
        }
    }
}

/// The children one process started through [`Process`], for
/// [`active_children`].
struct Registry {
    /// The process whose list this is.
    owner: u32,
    list: Mutex<Vec<Weak<Tracked>>>,
}

/// This process's [`Registry`]: a leaked, never freed `Box`. A forked
/// child finds its parent's (another `owner`) and puts a fresh one in its
/// place without touching the old one's mutex, which another thread of
/// the parent may have held at the fork (in the child nobody would ever
/// release it).
static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(std::ptr::null_mut());

/// This process's list of children, locked.
///
/// SYNC POINT: the Acquire loads pair with the Release of the successful
/// compare-and-swap, so a thread that sees a registry's pointer sees the
/// registry it points to.
fn registry() -> MutexGuard<'static, Vec<Weak<Tracked>>> {
    let me = std::process::id();
    // SYNC POINT: Acquire (paired in the doc comment above).
    let mut cur = REGISTRY.load(Ordering::Acquire);
    loop {
        // SAFETY: a non-null `REGISTRY` points at a leaked, never freed
        // box, published by the Release compare-and-swap below.
        if let Some(reg) = unsafe { cur.as_ref() } {
            if reg.owner == me {
                return reg.list.lock().unwrap_or_else(PoisonError::into_inner);
            }
        }
        // None yet, or a forked child's copy of its parent's: the old one
        // is leaked, never locked (its list names the parent's children).
        let fresh = Box::into_raw(Box::new(Registry {
            owner: me,
            list: Mutex::new(Vec::new()),
        }));
        // SYNC POINT: Release on success (paired in the doc comment above),
        // Acquire on failure.
        match REGISTRY.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => cur = fresh,
            Err(won) => {
                // SAFETY: `fresh` was never published; it is still ours.
                drop(unsafe { Box::from_raw(fresh) });
                cur = won;
            }
        }
    }
}

/// A live child, as [`active_children`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveChild {
    name: String,
    pid: u32,
    daemon: bool,
}

impl ActiveChild {
    /// The name it was given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it dies with its parent.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// The children this process started through [`Process`] that still run,
/// like Python's `active_children()`: as a side effect, the ones that have
/// ended are reaped (their handles keep the status). Children whose handle
/// is gone, or was turned [`into_child`](ProcessHandle::into_child), are
/// not listed; nor are a pool's workers. A child that another thread is
/// joining right now counts as running.
///
/// In a forked child the list starts empty: its parent's children are not
/// its own.
pub fn active_children() -> Vec<ActiveChild> {
    let mut list = registry();
    let mut live = Vec::new();
    list.retain(|w| {
        let Some(t) = w.upgrade() else {
            return false;
        };
        let running = match t.child.try_lock() {
            Ok(mut c) => matches!(c.try_wait(), Ok(None)),
            // Someone joins it: it runs until that join returns.
            Err(_) => true,
        };
        if running {
            live.push(ActiveChild {
                name: t.name.clone(),
                pid: t.pid,
                daemon: t.daemon,
            });
        }
        running
    });
    live
}

/// This process as [`current_process`] describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentProcess {
    name: String,
    pid: u32,
    parent: u32,
    daemon: bool,
}

impl CurrentProcess {
    /// `"MainProcess"`, or the name of the [`Process`] this process was
    /// started as (forked, or spawned with [`Process::target_command`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Python's `ident`: the process id.
    pub fn ident(&self) -> u32 {
        self.pid
    }

    /// Its parent's process id (now: 1 or a subreaper if the parent died).
    pub fn parent_pid(&self) -> u32 {
        self.parent
    }

    /// Whether it was started as a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// Who this process is among the [`Process`]es, set in a child before its
/// target runs. A process-local pointer (never in shared memory), so the
/// loom shim has nothing to model here; a leaked `Box`, swapped without a
/// lock because a forked child must not wait on a lock another thread of
/// its parent held.
static ME: AtomicPtr<(String, bool)> = AtomicPtr::new(std::ptr::null_mut());

/// In a freshly started child: records its name for [`current_process`].
///
/// SYNC POINT: the Release swap pairs with the Acquire load in
/// [`current_process`], so a thread that sees the pointer sees the box it
/// points to.
pub(crate) fn become_child(name: String, daemon: bool) {
    let new = Box::into_raw(Box::new((name, daemon)));
    // The old one (the parent's, copied by fork) is leaked, never freed:
    // a reader that loaded it may still be reading it.
    // SYNC POINT: Release (paired in the doc comment above).
    ME.swap(new, Ordering::AcqRel);
}

/// This process, like Python's `current_process()`: its name (see
/// [`CurrentProcess::name`]), pid, parent and daemon flag.
pub fn current_process() -> CurrentProcess {
    // SYNC POINT: Acquire, paired with the Release in [`become_child`].
    let me = ME.load(Ordering::Acquire);
    // SAFETY: a non-null `ME` points at a leaked, never freed, never
    // mutated box written before the Release swap in `become_child`.
    let (name, daemon) = match unsafe { me.as_ref() } {
        Some((name, daemon)) => (name.clone(), *daemon),
        None => ("MainProcess".to_owned(), false),
    };
    CurrentProcess {
        name,
        pid: std::process::id(),
        // SAFETY: getppid has no preconditions and cannot fail.
        parent: unsafe { libc::getppid() } as u32,
        daemon,
    }
}

/// The number of CPUs this process may run on (its affinity mask,
/// `sched_getaffinity`), like Python's `os.process_cpu_count()`; where
/// that fails, [`std::thread::available_parallelism`]; at least 1.
pub fn cpu_count() -> usize {
    // SAFETY: an all-zero cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid out-parameter of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r == 0 {
        // SAFETY: `set` was filled in by the kernel above.
        let n = unsafe { libc::CPU_COUNT(&set) };
        if n > 0 {
            return n as usize;
        }
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}
