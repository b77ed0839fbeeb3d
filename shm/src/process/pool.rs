//! [`Pool`]: N forked worker processes that run tasks, like Python's
//! `multiprocessing.Pool` — except that a worker killed mid-task does not
//! hang the pool.
//!
//! The design, and what a worker's death costs, are on [`Pool`].

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shmipc_core::futex::{self, Deadline};
use shmipc_core::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc_core::{BytesConfig, RecvError};

use shmipc_core::{LayoutError, Rule};

use super::pool_status::{PoolStatus, BUSY, EXITED, IDLE};
use super::process::{die_with_parent, ORPHANED_EXIT_CODE};
use super::spawned::{self, SpawnSpec, WorkerNames};
use crate::error::{Error, Result};
use crate::named::Named;
use crate::process::{self, Child, ExitStatus};
use crate::queue::{to_vec, ByteQueue};
use crate::shared::Shared;
use crate::unlinker::Unlinker;

/// A task function: argument bytes in, result bytes out.
pub type TaskFn = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static>;

/// The default largest argument or result, in bytes.
const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// Task header: id (8), function (4).
const TASK_HEADER: usize = 12;
/// Result header: id (8), status (1).
const RESULT_HEADER: usize = 9;
/// Tasks handed to one worker at a time.
const DEPTH: usize = 2;
/// How often the supervisor reaps at the latest.
const REAP_INTERVAL: Duration = Duration::from_millis(10);
/// The most workers a pool may have: far more than cores on any machine,
/// and few enough that a mistaken count does not fork without end.
pub(crate) const MAX_PROCESSES: usize = 4096;

const STATUS_OK: u8 = 0;
const STATUS_PANICKED: u8 = 1;
const STATUS_TOO_LARGE: u8 = 2;
const STATUS_NO_FUNCTION: u8 = 3;

/// Why a task gave no result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The task function panicked; the panic message.
    Panicked(String),
    /// The worker running the task died (it was killed, say).
    WorkerDied {
        /// The worker's process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The pool was terminated before the task finished.
    Terminated,
    /// The pool was closed (or terminated) before the task was submitted.
    Closed,
    /// The arguments or the result are longer than the pool's maximum
    /// message.
    TooLarge {
        /// Their length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// No function has this index.
    NoSuchFunction(usize),
    /// A `_timeout` call ([`AsyncResult::get_timeout`],
    /// [`Pool::apply_timeout`], [`Pool::map_timeout`], ...): not ready in
    /// time (the task goes on; its result is dropped if nobody waits).
    Timeout,
    /// The pool could not start a worker process.
    Spawn(String),
    /// A typed task's argument or result did not encode or decode (see
    /// [`TypedPool`](crate::TypedPool)); the codec's reason, naming the
    /// type.
    Message(String),
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(msg) => write!(f, "the task panicked: {msg}"),
            TaskError::WorkerDied { pid, status } => {
                write!(f, "worker process {pid} died running the task ({status})")
            }
            TaskError::Terminated => f.write_str("the pool was terminated"),
            TaskError::Closed => f.write_str("the pool is closed"),
            TaskError::TooLarge { len, max } => {
                write!(f, "{len} bytes do not fit a pool message of at most {max}")
            }
            TaskError::NoSuchFunction(i) => write!(f, "the pool has no function {i}"),
            TaskError::Timeout => f.write_str("the task's result is not ready yet"),
            TaskError::Spawn(e) => write!(f, "the pool could not start a worker: {e}"),
            TaskError::Message(e) => write!(f, "the task's data did not cross: {e}"),
        }
    }
}

impl std::error::Error for TaskError {}

type TaskResult = std::result::Result<Vec<u8>, TaskError>;

/// Where a handle waits for a result.
struct Slot {
    result: Mutex<Option<TaskResult>>,
    done: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A function the supervisor thread calls with a task's result.
pub(crate) type Callback = Box<dyn FnOnce(TaskResult) + Send>;

/// Where a task's result goes.
enum Reply {
    Slot(Arc<Slot>),
    Channel(usize, mpsc::Sender<(usize, TaskResult)>),
    /// Called on the supervisor thread, like the callbacks of Python's
    /// result-handler thread: it should return quickly.
    Call(Callback),
}

impl Reply {
    fn send(self, result: TaskResult) {
        match self {
            Reply::Slot(slot) => {
                *lock(&slot.result) = Some(result);
                slot.done.notify_all();
            }
            Reply::Channel(index, tx) => {
                let _ = tx.send((index, result));
            }
            Reply::Call(f) => {
                // A panicking callback must not take the supervisor down.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| f(result)));
            }
        }
    }
}

struct Task {
    id: u64,
    /// The message: id, function, arguments.
    message: Vec<u8>,
    reply: Reply,
}

/// The pending result of [`Pool::apply_async`] (Python's `AsyncResult`).
pub struct AsyncResult {
    slot: Arc<Slot>,
}

impl AsyncResult {
    /// Waits for the result, as long as it takes, and returns a copy of it
    /// (see [`AsyncResult::get_timeout`]).
    pub fn get(&self) -> TaskResult {
        let r = lock(&self.slot.result);
        let r = self.slot.done.wait_while(r, |r| r.is_none());
        let r = r.unwrap_or_else(|poisoned| poisoned.into_inner());
        r.clone().unwrap_or(Err(TaskError::Terminated))
    }

    /// Waits at most `timeout`; [`TaskError::Timeout`] if the result is
    /// not ready by then (the task goes on; ask again later).
    pub fn get_timeout(&self, timeout: Duration) -> TaskResult {
        if self.wait_timeout(timeout) {
            self.get()
        } else {
            Err(TaskError::Timeout)
        }
    }

    /// Whether the result is ready.
    pub fn ready(&self) -> bool {
        lock(&self.slot.result).is_some()
    }

    /// Whether the task is done and succeeded (`None` while not ready).
    pub fn successful(&self) -> Option<bool> {
        lock(&self.slot.result).as_ref().map(|r| r.is_ok())
    }

    /// Waits until the result is ready, as long as it takes.
    pub fn wait(&self) {
        let _ = self.get();
    }

    /// Waits at most `timeout` for the result; returns whether it is ready.
    /// `Duration::MAX` waits for ever.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if Instant::now().checked_add(timeout).is_none() {
            self.wait();
            return true;
        }
        let r = lock(&self.slot.result);
        let (r, _) = (self
            .slot
            .done
            .wait_timeout_while(r, timeout, |r| r.is_none()))
        .unwrap_or_else(|poisoned| poisoned.into_inner());
        r.is_some()
    }
}

impl fmt::Debug for AsyncResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

/// Results of [`Pool::imap_unordered`] as they come: `(input index,
/// result)`.
pub struct ImapUnordered {
    rx: mpsc::Receiver<(usize, TaskResult)>,
    remaining: usize,
}

impl ImapUnordered {
    /// The next result, waiting at most `timeout` for it: `Ok(None)` once
    /// every input has yielded, [`TaskError::Timeout`] if no result came in
    /// time (ask again later; nothing is lost).
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Option<(usize, TaskResult)>, TaskError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        match self.rx.recv_timeout(timeout) {
            Ok(item) => {
                self.remaining -= 1;
                Ok(Some(item))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(TaskError::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
        }
    }
}

impl Iterator for ImapUnordered {
    type Item = (usize, TaskResult);

    /// Waits for the next result as long as it takes (see
    /// [`ImapUnordered::next_timeout`]).
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        // Every submitted task gets exactly one reply (a result, or an
        // error when the pool is terminated or dropped), so this ends.
        let item = self.rx.recv().ok()?;
        self.remaining -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl fmt::Debug for ImapUnordered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("remaining", &self.remaining)
            .finish()
    }
}

/// The parent's bookkeeping, shared by the handle and the supervisor
/// (empty and open to begin with).
#[derive(Default)]
struct State {
    pending: VecDeque<Task>,
    next_id: u64,
    closed: bool,
    terminate: bool,
    pids: Vec<u32>,
    restarts: u64,
}

struct Inner {
    /// The named status segment, if the builder asked for one.
    status: Option<PoolStatus>,
    state: Mutex<State>,
    /// Rung by workers after each result and by the parent on submit.
    doorbell: Shared<AtomicU32>,
    functions: Vec<TaskFn>,
    max_message: usize,
    initializer: Option<Initializer>,
    max_tasks_per_child: Option<u64>,
    /// Spawned workers: what they run, and the doorbell's name (which
    /// `names` unlinks when the pool is gone).
    spawn: Option<(SpawnSpec, String)>,
    _names: Option<Unlinker>,
}

/// What each worker runs once before its first task.
pub type Initializer = Arc<dyn Fn() + Send + Sync + 'static>;

impl Inner {
    /// Rings the supervisor's doorbell (a task queued, a result sent, the
    /// pool closing).
    ///
    /// SYNC POINT: the Release increment pairs with the Acquire load of the
    /// doorbell in [`Supervisor::supervise`] before it scans; a ring after
    /// that load makes its futex wait return at once.
    fn ring(&self) {
        // SYNC POINT: Release (paired in the doc comment above).
        self.doorbell.fetch_add(1, Ordering::Release);
        futex::wake_all(&self.doorbell);
    }
}

/// Builds a [`Pool`] with several functions or a larger message size.
///
/// ```
/// use shmipc::Pool;
///
/// let pool = Pool::builder(2)
///     .function(|x: &[u8]| x.iter().rev().copied().collect())   // 0: reverse
///     .function(|x: &[u8]| x.to_ascii_uppercase())              // 1: shout
///     .max_message(1024)
///     .build()?;
/// assert_eq!(pool.apply_with(0, b"abc")?, b"cba");
/// assert_eq!(pool.apply_with(1, b"abc")?, b"ABC");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PoolBuilder {
    processes: usize,
    functions: Vec<TaskFn>,
    max_message: usize,
    initializer: Option<Initializer>,
    max_tasks_per_child: Option<u64>,
    spawn: Option<SpawnSpec>,
    status_name: Option<String>,
}

impl PoolBuilder {
    /// Adds a task function; its index is the number added before it.
    pub fn function<F>(mut self, f: F) -> PoolBuilder
    where
        F: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    {
        self.functions.push(Arc::new(f));
        self
    }

    /// The largest arguments and result of one task, in bytes (64 KiB by
    /// default). Each worker's two queues hold two such messages.
    pub fn max_message(mut self, bytes: usize) -> PoolBuilder {
        self.max_message = bytes;
        self
    }

    /// Runs `f` in each worker when it starts, before its first task
    /// (Python's `initializer`). A worker whose initializer panics exits;
    /// it is replaced like any dead worker.
    pub fn initializer<F>(mut self, f: F) -> PoolBuilder
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.initializer = Some(Arc::new(f));
        self
    }

    /// Each worker exits after `n` tasks (at least 1) and is replaced by a
    /// fresh one (Python's `maxtasksperchild`): for functions that leak.
    pub fn max_tasks_per_child(mut self, n: u64) -> PoolBuilder {
        self.max_tasks_per_child = Some(n);
        self
    }

    /// Publishes the workers' pids and states in a named status segment
    /// `name` (kind [`Kind::POOL_STATUS`](crate::Kind::POOL_STATUS)), for
    /// tools: `shmipc ls` lists it and `shmipc inspect` shows each worker
    /// with its pid, its state (idle, busy, exited) and whether it is
    /// alive. The pool creates it (an existing name is
    /// [`Error::AlreadyExists`]) and unlinks it when it is dropped. The
    /// pool's queues stay anonymous. The layout is in the
    /// `process::pool_status` source.
    ///
    /// ```
    /// use shmipc::inspect::{Report, State};
    /// use shmipc::Pool;
    ///
    /// let name = format!("/shmipc-doc-pool-status-{}", std::process::id());
    /// let pool = Pool::builder(2)
    ///     .function(|x: &[u8]| x.to_vec())
    ///     .status_name(&name)
    ///     .build()?;
    /// let report = Report::open(&name)?;
    /// let State::PoolStatus(workers) = &report.state else { panic!() };
    /// let mut pids: Vec<u32> = workers.iter().map(|w| w.pid).collect();
    /// let mut expected = pool.pids();
    /// pids.sort();
    /// expected.sort();
    /// assert_eq!(pids, expected);
    /// drop(pool);
    /// assert!(Report::open(&name).is_err(), "unlinked with the pool");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn status_name(mut self, name: &str) -> PoolBuilder {
        self.status_name = Some(name.to_owned());
        self
    }

    /// Starts the workers as new processes of this executable, run with
    /// `spec.args`, instead of forking them (see [`spawned`]).
    pub(crate) fn spawned(mut self, spec: SpawnSpec) -> PoolBuilder {
        self.spawn = Some(spec);
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<Pool> {
        Pool::start(self)
    }
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("functions", &self.functions.len())
            .field("max_message", &self.max_message)
            .field("max_tasks_per_child", &self.max_tasks_per_child)
            .field("status_name", &self.status_name)
            .finish()
    }
}

/// A pool of worker processes: Python's `multiprocessing.Pool`, whose
/// workers run a fixed function on argument bytes (see *Design* below for
/// how, and what happens when a worker dies).
///
/// ```
/// use shmipc::{Pool, TaskError};
/// use std::time::Duration;
///
/// // The function is fixed before the workers are forked; tasks are bytes.
/// let pool = Pool::new(3, |arg: &[u8]| {
///     let n = u64::from_le_bytes(arg.try_into().unwrap());
///     if n == 13 {
///         panic!("unlucky");
///     }
///     (n * n).to_le_bytes().to_vec()
/// })?;
/// let square = |r: Vec<u8>| u64::from_le_bytes(r.try_into().unwrap());
///
/// assert_eq!(square(pool.apply(&7u64.to_le_bytes())?), 49);
/// let pending = pool.apply_async(&9u64.to_le_bytes())?;
/// assert_eq!(square(pending.get_timeout(Duration::from_secs(10))?), 81);
/// assert!(matches!(pool.apply(&13u64.to_le_bytes()), Err(TaskError::Panicked(_))));
///
/// let inputs: Vec<[u8; 8]> = (1..=5u64).map(u64::to_le_bytes).collect();
/// let squares: Vec<u64> = pool.map(&inputs)?.into_iter().map(square).collect();
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
///
/// pool.close();
/// pool.join();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Design
///
/// **What a task is.** Closures cannot cross a `fork` made after the pool
/// started, so the pool's *functions* are fixed when it is built:
/// `Pool::new(n, f)` with `f: Fn(&[u8]) -> Vec<u8>` (or several, by
/// [`PoolBuilder::function`], chosen per task by index). The workers are
/// forked after that, so each inherits the functions as they are. A task is
/// then `(task id, function index, argument bytes)` and a result `(task
/// id, status, result bytes)`; encode what you need into bytes (for `Pod`
/// data, `bytemuck::bytes_of` / `pod_read_unaligned` does it).
///
/// **Transport.** Every worker has two anonymous [`ByteQueue`]s of its
/// own: an inbox of tasks and an outbox of results, and an
/// [`AtomicU64`] slot in shared memory that holds the id
/// (plus one) of the task it is running, zero between tasks. Per-worker
/// queues (rather than one shared task queue) mean a worker killed in the
/// middle of a queue operation damages only its own queues, which are
/// thrown away with it, and that the parent always knows which tasks each
/// worker holds.
///
/// **The supervisor.** A background thread of the parent owns the workers.
/// It hands each worker at most two tasks at a time (one running, one
/// queued behind it, so a worker never waits for the parent between tasks),
/// moves results from the outboxes to the [`AsyncResult`] handles, and
/// sleeps on a *doorbell* futex word that workers ring after each result and
/// the parent rings when it submits, waking at least every 10 ms to reap.
///
/// **A worker's death.** The supervisor reaps workers with `waitpid`
/// (WNOHANG, by pid). When one has died it first takes whatever complete
/// results are in the dead worker's outbox, then looks at the worker's
/// shared slot: the task named there had started, so its handle gets
/// [`TaskError::WorkerDied`] (with the pid and how it ended); a task still
/// queued behind it had not started, so it goes back to the front of the
/// pending tasks. (The worker writes the slot before calling the function,
/// so a task that is not named there has not run any of it.) A replacement
/// worker with fresh queues is forked, and the other tasks go on.
///
/// **Lifetime.** Workers are forked by the supervisor thread and ask for
/// `SIGKILL` when it dies (`PR_SET_PDEATHSIG`), so they die with the
/// parent, even if it is killed. [`Pool::close`] lets the queued tasks
/// finish and the workers exit; [`Pool::terminate`] stops them at once
/// (`SIGTERM`, then `SIGKILL`), failing unfinished tasks with
/// [`TaskError::Terminated`]; dropping the pool terminates it.
///
/// # Workers and the parent's locks
///
/// As after any `fork` in a program with threads, a worker inherits only
/// the forking thread: functions that take a lock another thread of the
/// parent might hold (the stdout lock of a `println!` in progress, say)
/// can deadlock in a worker. Workers should compute and use shmipc objects.
pub struct Pool {
    inner: Arc<Inner>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    processes: usize,
}

impl Pool {
    /// Starts `processes` workers (1 to 4096) that run `f` on each task's
    /// argument bytes.
    pub fn new<F>(processes: usize, f: F) -> Result<Pool>
    where
        F: Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
    {
        Pool::builder(processes).function(f).build()
    }

    /// A builder for a pool of `processes` workers.
    pub fn builder(processes: usize) -> PoolBuilder {
        PoolBuilder {
            processes,
            functions: Vec::new(),
            max_message: DEFAULT_MAX_MESSAGE,
            initializer: None,
            max_tasks_per_child: None,
            spawn: None,
            status_name: None,
        }
    }

    fn start(b: PoolBuilder) -> Result<Pool> {
        let invalid = |param, value: usize, rule| {
            Error::layout("(pool)", LayoutError::parameter(param, value as u64, rule))
        };
        if !(1..=MAX_PROCESSES).contains(&b.processes) {
            let rule = Rule::Range {
                min: 1,
                max: MAX_PROCESSES as u64,
            };
            return Err(invalid("processes", b.processes, rule));
        }
        if b.functions.is_empty() || b.functions.len() > u32::MAX as usize {
            let rule = Rule::Range {
                min: 1,
                max: u32::MAX.into(),
            };
            return Err(invalid("functions", b.functions.len(), rule));
        }
        queue_config(b.max_message).map_err(|e| Error::layout("(pool)", e))?;
        if b.max_tasks_per_child == Some(0) {
            let rule = Rule::Range {
                min: 1,
                max: u64::MAX,
            };
            return Err(Error::layout(
                "(pool)",
                LayoutError::parameter("max_tasks_per_child", 0, rule),
            ));
        }
        if b.spawn.is_some() && std::env::var_os(spawned::ENV).is_some() {
            return Err(pool_io("start a spawned pool")(std::io::Error::other(
                "this process was started as a pool worker: call TypedPool::serve_if_worker() before anything else",
            )));
        }
        let (doorbell, names, spawn) = match b.spawn {
            None => (Shared::<AtomicU32>::anon(0)?, None, None),
            Some(spec) => {
                let names = Unlinker::new("pool");
                let name = names.name("doorbell");
                let doorbell = Shared::<AtomicU32>::create(&name, 0)?;
                (doorbell, Some(names), Some((spec, name)))
            }
        };
        let status = match &b.status_name {
            Some(name) => Some(PoolStatus::create(name, b.processes)?),
            None => None,
        };
        let inner = Arc::new(Inner {
            status,
            state: Mutex::default(),
            doorbell,
            functions: b.functions,
            max_message: b.max_message,
            initializer: b.initializer,
            max_tasks_per_child: b.max_tasks_per_child,
            spawn,
            _names: names,
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let for_thread = inner.clone();
        let processes = b.processes;
        let handle = std::thread::Builder::new()
            .name("shmipc-pool".to_owned())
            .spawn(move || Supervisor::run(for_thread, processes, ready_tx))
            .map_err(pool_io("spawn the pool's supervisor thread"))?;
        let started = ready_rx.recv().unwrap_or_else(|_| {
            Err(pool_io("start the pool")(std::io::Error::other(
                "the supervisor thread ended",
            )))
        });
        if let Err(e) = started {
            let _ = handle.join();
            return Err(e);
        }
        Ok(Pool {
            inner,
            supervisor: Mutex::new(Some(handle)),
            processes,
        })
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The process ids of the current workers.
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.inner.state).pids.clone()
    }

    /// How many workers have been replaced after dying.
    pub fn restarts(&self) -> u64 {
        lock(&self.inner.state).restarts
    }

    /// Queues a task; `Err` if it cannot be (closed, too large, no such
    /// function).
    fn submit(&self, func: usize, args: &[u8], reply: Reply) -> std::result::Result<(), TaskError> {
        let checked = (|| {
            if func >= self.inner.functions.len() {
                return Err(TaskError::NoSuchFunction(func));
            }
            if args.len() > self.inner.max_message {
                return Err(TaskError::TooLarge {
                    len: args.len(),
                    max: self.inner.max_message,
                });
            }
            Ok(())
        })();
        let mut st = lock(&self.inner.state);
        let checked = checked.and_then(|()| {
            if st.closed || st.terminate {
                Err(TaskError::Closed)
            } else {
                Ok(())
            }
        });
        if let Err(e) = checked {
            drop(st);
            reply.send(Err(e.clone()));
            return Err(e);
        }
        let id = st.next_id;
        st.next_id += 1;
        let mut message = Vec::with_capacity(TASK_HEADER + args.len());
        message.extend_from_slice(&id.to_le_bytes());
        message.extend_from_slice(&(func as u32).to_le_bytes());
        message.extend_from_slice(args);
        st.pending.push_back(Task { id, message, reply });
        drop(st);
        self.inner.ring();
        Ok(())
    }

    /// Runs function 0 on `args` and waits for its result, as long as it
    /// takes (see [`Pool::apply_timeout`]).
    pub fn apply(&self, args: &[u8]) -> TaskResult {
        self.apply_async(args)?.get()
    }

    /// Runs function 0 on `args` and waits at most `timeout` for its
    /// result: [`TaskError::Timeout`] if it is not ready by then (the task
    /// goes on; its result is dropped).
    pub fn apply_timeout(&self, args: &[u8], timeout: Duration) -> TaskResult {
        self.apply_async(args)?.get_timeout(timeout)
    }

    /// Runs function `func` on `args` and waits for its result, as long as
    /// it takes.
    pub fn apply_with(&self, func: usize, args: &[u8]) -> TaskResult {
        self.apply_async_with(func, args)?.get()
    }

    /// Runs function `func` on `args` and waits at most `timeout` for its
    /// result (see [`Pool::apply_timeout`]).
    pub fn apply_with_timeout(&self, func: usize, args: &[u8], timeout: Duration) -> TaskResult {
        self.apply_async_with(func, args)?.get_timeout(timeout)
    }

    /// Queues function 0 on `args`; the handle gets the result.
    pub fn apply_async(&self, args: &[u8]) -> std::result::Result<AsyncResult, TaskError> {
        self.apply_async_with(0, args)
    }

    /// Queues function `func` on `args`; `then` gets the result, on the
    /// pool's supervisor thread (or at once, on this one, if the task is
    /// refused, which is also returned).
    pub(crate) fn apply_then(
        &self,
        func: usize,
        args: &[u8],
        then: Callback,
    ) -> std::result::Result<(), TaskError> {
        self.submit(func, args, Reply::Call(then))
    }

    /// Queues function `func` on `args`; the handle gets the result.
    pub fn apply_async_with(
        &self,
        func: usize,
        args: &[u8],
    ) -> std::result::Result<AsyncResult, TaskError> {
        let slot = Arc::new(Slot {
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        self.submit(func, args, Reply::Slot(slot.clone()))?;
        Ok(AsyncResult { slot })
    }

    /// Runs function 0 on every input and returns the results in input
    /// order, or the first error (by input order). Waits as long as it
    /// takes (see [`Pool::map_timeout`]).
    pub fn map<I>(&self, inputs: I) -> std::result::Result<Vec<Vec<u8>>, TaskError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.map_inner(inputs, None)
    }

    /// [`Pool::map`], waiting at most `timeout` for all the results:
    /// [`TaskError::Timeout`] if they are not all in by then (the tasks go
    /// on; their results are dropped).
    pub fn map_timeout<I>(
        &self,
        inputs: I,
        timeout: Duration,
    ) -> std::result::Result<Vec<Vec<u8>>, TaskError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.map_inner(inputs, Some(Deadline::after(timeout)))
    }

    fn map_inner<I>(
        &self,
        inputs: I,
        deadline: Option<Deadline>,
    ) -> std::result::Result<Vec<Vec<u8>>, TaskError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut results: Vec<Option<TaskResult>> = Vec::new();
        let mut it = self.imap_unordered(inputs);
        results.resize_with(it.remaining, || None);
        loop {
            let next = match &deadline {
                None => it.next(),
                Some(d) => it.next_timeout(d.remaining())?,
            };
            let Some((i, r)) = next else { break };
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(TaskError::Terminated)))
            .collect()
    }

    /// Runs function 0 on every input; yields `(input index, result)` in the
    /// order the results come in (Python's `imap_unordered`, with the
    /// index). Every input yields exactly one item.
    pub fn imap_unordered<I>(&self, inputs: I) -> ImapUnordered
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let (tx, rx) = mpsc::channel();
        let mut n = 0;
        for (i, input) in inputs.into_iter().enumerate() {
            // A refused task has already sent its error to the channel.
            let _ = self.submit(0, input.as_ref(), Reply::Channel(i, tx.clone()));
            n += 1;
        }
        ImapUnordered { rx, remaining: n }
    }

    /// Accepts no more tasks; the queued ones still run, then the workers
    /// exit. See [`Pool::join`].
    pub fn close(&self) {
        lock(&self.inner.state).closed = true;
        self.inner.ring();
    }

    /// Stops the workers now (`SIGTERM`, then `SIGKILL` after a second) and
    /// waits for them; unfinished tasks get [`TaskError::Terminated`].
    pub fn terminate(&self) {
        lock(&self.inner.state).terminate = true;
        self.inner.ring();
        self.join();
    }

    /// Waits until the workers have exited: after [`close`](Pool::close),
    /// once every queued task is done. Closes the pool if it is still open
    /// (Python requires `close` first). Waits as long as it takes (see
    /// [`Pool::join_timeout`]).
    pub fn join(&self) {
        self.close();
        let handle = lock(&self.supervisor).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// [`Pool::join`], waiting at most `timeout`; returns whether the
    /// workers have exited (if not, the pool stays closed and a later
    /// `join` or `terminate` finishes it).
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.close();
        let deadline = Deadline::after(timeout);
        let mut nap = Duration::from_micros(100);
        loop {
            let mut slot = lock(&self.supervisor);
            match slot.take() {
                None => return true,
                Some(h) if h.is_finished() => {
                    drop(slot);
                    let _ = h.join();
                    return true;
                }
                Some(h) => *slot = Some(h),
            }
            drop(slot);
            let left = deadline.remaining();
            if left.is_zero() {
                return false;
            }
            // The supervisor thread has no timed join: look again soon.
            std::thread::sleep(nap.min(left));
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("pids", &self.pids())
            .finish()
    }
}

/// Each queue holds DEPTH (two) of the largest messages, with room to spare
/// for the ring's wrap-around.
fn queue_config(max_message: usize) -> std::result::Result<BytesConfig, LayoutError> {
    fitting_config(max_message).ok_or_else(|| {
        let rule = Rule::AtMost {
            max: largest_message() as u64,
            why: "each worker's two queues hold two tasks of it",
        };
        LayoutError::parameter("max_message", max_message as u64, rule)
    })
}

/// [`queue_config`], if there is one.
fn fitting_config(max_message: usize) -> Option<BytesConfig> {
    let c = BytesConfig::for_max_message(max_message.checked_add(TASK_HEADER)?).ok()?;
    let c = BytesConfig::new(c.capacity.checked_mul(2)?, c.max_message);
    shmipc_core::ByteQueue::layout(c).ok().map(|_| c)
}

/// The largest `max_message` a pool accepts, found by bisection on
/// `fitting_config` itself (so that it follows the byte queue's limits),
/// for the error message.
fn largest_message() -> usize {
    let (mut lo, mut hi) = (0usize, 1usize << 40);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fitting_config(mid).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The error for the system call (or step) `op` of the pool failing.
fn pool_io(op: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io {
        op,
        name: "(pool)".to_owned(),
        source,
    }
}

/// One worker as the supervisor sees it.
struct Worker {
    child: Child,
    inbox: ByteQueue,
    outbox: ByteQueue,
    /// Id + 1 of the task the worker runs; 0 between tasks.
    current: Shared<AtomicU64>,
    assigned: VecDeque<Task>,
    /// Its entry in the status segment (0 to `processes - 1`).
    entry: usize,
    /// A spawned worker's segment names, unlinked when it is dropped (the
    /// worker unlinks them itself once it has opened them).
    _names: Option<Unlinker>,
}

/// The background thread that owns the workers.
struct Supervisor {
    inner: Arc<Inner>,
    workers: Vec<Worker>,
    processes: usize,
}

impl Supervisor {
    fn run(inner: Arc<Inner>, processes: usize, ready: mpsc::Sender<Result<()>>) {
        let mut sup = Supervisor {
            inner,
            workers: Vec::new(),
            processes,
        };
        for _ in 0..processes {
            match sup.start_worker() {
                Ok(w) => sup.workers.push(w),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    sup.stop_workers();
                    return;
                }
            }
        }
        sup.publish_pids(0);
        let _ = ready.send(Ok(()));
        sup.supervise();
    }

    /// The status entry no current worker holds (the first).
    fn free_entry(&self) -> usize {
        (0..self.processes)
            .find(|e| !self.workers.iter().any(|w| w.entry == *e))
            .unwrap_or(0)
    }

    fn start_worker(&self) -> Result<Worker> {
        let entry = self.free_entry();
        let status = self.inner.status.as_ref();
        if let Some(s) = status {
            s.starting(entry);
        }
        let w = self.start_worker_at(entry);
        if let Some(s) = status {
            match &w {
                Ok(w) => s.started(entry, w.child.pid()),
                Err(_) => s.set_state(entry, EXITED),
            }
        }
        w
    }

    /// Starts the worker of status entry `entry`: forked over anonymous
    /// queues, or (a spawning pool) this executable run again over named
    /// ones, which are unlinked when the worker is dropped.
    fn start_worker_at(&self, entry: usize) -> Result<Worker> {
        let config =
            queue_config(self.inner.max_message).map_err(|e| Error::layout("(pool)", e))?;
        let (child, inbox, outbox, current, names) = match &self.inner.spawn {
            None => {
                let inbox = ByteQueue::anon(config)?;
                let outbox = ByteQueue::anon(config)?;
                let current = Shared::<AtomicU64>::anon(0)?;
                let child = self.fork_worker(entry, &inbox, &outbox, &current);
                let child = child.map_err(pool_io("fork a pool worker"))?;
                (child, inbox, outbox, current, None)
            }
            Some((spec, doorbell)) => {
                let names = Unlinker::new("pool-worker");
                let (inbox_name, outbox_name, current_name) =
                    (names.name("in"), names.name("out"), names.name("current"));
                let inbox = ByteQueue::create(&inbox_name, config)?;
                let outbox = ByteQueue::create(&outbox_name, config)?;
                let current = Shared::<AtomicU64>::create(&current_name, 0)?;
                let worker_names = WorkerNames {
                    doorbell,
                    inbox: &inbox_name,
                    outbox: &outbox_name,
                    current: &current_name,
                    max_message: self.inner.max_message,
                    max_tasks_per_child: self.inner.max_tasks_per_child,
                };
                let child = spawned::start(spec, &worker_names);
                let child = child.map_err(pool_io("spawn a pool worker"))?;
                (child, inbox, outbox, current, Some(names))
            }
        };
        Ok(Worker {
            child,
            inbox,
            outbox,
            current,
            assigned: VecDeque::new(),
            entry,
            _names: names,
        })
    }

    /// Forks a worker of status entry `entry` over these queues.
    fn fork_worker(
        &self,
        entry: usize,
        inbox: &ByteQueue,
        outbox: &ByteQueue,
        current: &Shared<AtomicU64>,
    ) -> std::io::Result<Child> {
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let inner = &*self.inner;
        process::fork(|| {
            if !die_with_parent(parent) {
                return ORPHANED_EXIT_CODE;
            }
            if let Some(s) = &inner.status {
                s.register_self(entry);
            }
            worker_main(inner, inbox, outbox, current)
        })
    }

    fn publish_pids(&self, restarted: u64) {
        let pids = self.workers.iter().map(|w| w.child.pid()).collect();
        let mut st = lock(&self.inner.state);
        st.pids = pids;
        st.restarts += restarted;
    }

    /// The supervisor's loop: drain results, reap and replace dead
    /// workers, dispatch tasks, sleep on the doorbell.
    ///
    /// SYNC POINT: the Acquire load of the doorbell pairs with the Release
    /// increments in [`Inner::ring`] (by the pool's callers and by the
    /// workers): what they did before ringing is seen by the scan after.
    fn supervise(&mut self) {
        let inner = self.inner.clone();
        let mut last_reap = Instant::now();
        loop {
            // SYNC POINT: Acquire (paired in the doc comment above).
            let seen = self.inner.doorbell.load(Ordering::Acquire);
            for i in 0..self.workers.len() {
                drain(&mut self.workers[i], self.inner.max_message);
            }
            if last_reap.elapsed() >= REAP_INTERVAL {
                last_reap = Instant::now();
                self.reap();
            }
            let mut st = lock(&inner.state);
            if st.terminate {
                fail_pending(st, TaskError::Terminated);
                self.stop_workers();
                return;
            }
            if self.workers.is_empty() {
                // No worker could be started: fail what waits.
                fail_pending(st, TaskError::Spawn("no worker is running".into()));
                if lock(&self.inner.state).closed {
                    return;
                }
            } else {
                self.dispatch(&mut st);
                if let Some(s) = &self.inner.status {
                    for w in &self.workers {
                        s.set_state(w.entry, if w.assigned.is_empty() { IDLE } else { BUSY });
                    }
                }
                let idle = self.workers.iter().all(|w| w.assigned.is_empty());
                if st.closed && st.pending.is_empty() && idle {
                    drop(st);
                    self.finish();
                    return;
                }
                drop(st);
            }
            let slice = Deadline::after(REAP_INTERVAL);
            futex::wait(&self.inner.doorbell, seen, Some(&slice));
        }
    }

    /// Hands pending tasks to workers with room, one round at a time so
    /// that every worker gets one before any gets two.
    fn dispatch(&mut self, st: &mut MutexGuard<'_, State>) {
        for depth in 1..=DEPTH {
            for w in &mut self.workers {
                if w.assigned.len() >= depth {
                    continue;
                }
                let Some(task) = st.pending.pop_front() else {
                    return;
                };
                // The inbox holds DEPTH messages of the largest size, and
                // the worker has at most DEPTH; should it still be full,
                // the task waits for the next round.
                match w.inbox.try_send(&task.message) {
                    Ok(()) => w.assigned.push_back(task),
                    Err(_) => st.pending.push_front(task),
                }
            }
        }
    }

    /// Reaps dead workers, settles their tasks and replaces them.
    fn reap(&mut self) {
        let mut i = 0;
        let mut restarted = 0;
        while i < self.workers.len() {
            let status = match self.workers[i].child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => {
                    i += 1;
                    continue;
                }
                Err(_) => ExitStatus::Signal(0),
            };
            let mut dead = self.workers.swap_remove(i);
            if let Some(s) = &self.inner.status {
                s.set_state(dead.entry, EXITED);
            }
            drain(&mut dead, self.inner.max_message);
            let running = dead.current.load(Ordering::SeqCst);
            let mut not_started = Vec::new();
            for task in dead.assigned.drain(..) {
                if running == task.id + 1 {
                    task.reply.send(Err(TaskError::WorkerDied {
                        pid: dead.child.pid(),
                        status,
                    }));
                } else {
                    not_started.push(task);
                }
            }
            let terminating = {
                let mut st = lock(&self.inner.state);
                for task in not_started.into_iter().rev() {
                    st.pending.push_front(task);
                }
                st.terminate
            };
            if terminating {
                continue;
            }
            restarted += 1;
        }
        // Replace the dead (and any worker that could not be started
        // before). A failure is tried again at the next reap; with no
        // worker left, `supervise` fails the pending tasks meanwhile.
        if restarted > 0 || self.workers.len() < self.processes {
            let terminating = lock(&self.inner.state).terminate;
            while !terminating && self.workers.len() < self.processes {
                match self.start_worker() {
                    Ok(w) => self.workers.push(w),
                    Err(_) => break,
                }
            }
        }
        if restarted > 0 || self.workers.len() != lock(&self.inner.state).pids.len() {
            self.publish_pids(restarted);
        }
    }

    /// After `close`: every task is done; let the workers exit.
    fn finish(&mut self) {
        for w in &self.workers {
            w.inbox.close();
        }
        self.end_workers(Duration::from_secs(10), false);
    }

    /// Terminates every worker and fails what they held.
    fn stop_workers(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.terminate();
        }
        self.end_workers(Duration::from_secs(1), true);
    }

    /// Joins every worker, killing one that has not exited within
    /// `patience`; with `fail`, settles the results it sent and fails the
    /// tasks it still held with [`TaskError::Terminated`]. Then the pool
    /// has no workers.
    fn end_workers(&mut self, patience: Duration, fail: bool) {
        for w in &mut self.workers {
            if !matches!(w.child.join_timeout(patience), Ok(Some(_))) {
                let _ = w.child.kill();
                let _ = w.child.join();
            }
            if fail {
                drain(w, self.inner.max_message);
                for task in w.assigned.drain(..) {
                    task.reply.send(Err(TaskError::Terminated));
                }
            }
            if let Some(s) = &self.inner.status {
                s.set_state(w.entry, EXITED);
            }
        }
        self.workers.clear();
        lock(&self.inner.state).pids.clear();
    }
}

/// Fails every pending task with `e` (after letting go of the state).
fn fail_pending(mut st: MutexGuard<'_, State>, e: TaskError) {
    let pending: Vec<Task> = st.pending.drain(..).collect();
    drop(st);
    for t in pending {
        t.reply.send(Err(e.clone()));
    }
}

/// The little-endian `u64` that `bytes` starts with, if it has 8 bytes.
fn le_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Moves the complete results out of a worker's outbox to their handles.
fn drain(w: &mut Worker, max: usize) {
    while let Ok(grant) = w.outbox.try_recv() {
        let msg = to_vec(&grant);
        drop(grant);
        let (Some(id), Some(&status)) = (le_u64(&msg), msg.get(8)) else {
            continue;
        };
        let Some(pos) = w.assigned.iter().position(|t| t.id == id) else {
            continue;
        };
        let Some(task) = w.assigned.remove(pos) else {
            continue;
        };
        let payload = &msg[RESULT_HEADER..];
        let result = match status {
            STATUS_OK => Ok(payload.to_vec()),
            STATUS_PANICKED => Err(TaskError::Panicked(
                String::from_utf8_lossy(payload).into_owned(),
            )),
            STATUS_TOO_LARGE => Err(TaskError::TooLarge {
                len: le_u64(payload).map_or(0, |n| n as usize),
                max,
            }),
            STATUS_NO_FUNCTION => Err(TaskError::NoSuchFunction(usize::MAX)),
            _ => Err(TaskError::Panicked(
                "the worker sent an unknown status".into(),
            )),
        };
        task.reply.send(result);
    }
}

/// What a spawned worker was told to open and run.
pub(crate) struct ServeConfig {
    pub(crate) function: fn(&[u8]) -> Vec<u8>,
    pub(crate) initializer: Option<fn()>,
    pub(crate) doorbell: String,
    pub(crate) inbox: String,
    pub(crate) outbox: String,
    pub(crate) current: String,
    pub(crate) max_message: usize,
    pub(crate) max_tasks_per_child: Option<u64>,
}

/// A spawned worker: opens its segments by name (and unlinks the names
/// only it needed), then runs [`worker_main`] like a forked one.
pub(crate) fn serve(c: ServeConfig) -> i32 {
    let opened = (|| -> Result<_> {
        let doorbell = Shared::<AtomicU32>::open(&c.doorbell)?;
        let inbox = ByteQueue::open(&c.inbox)?;
        let outbox = ByteQueue::open(&c.outbox)?;
        let current = Shared::<AtomicU64>::open(&c.current)?;
        Ok((doorbell, inbox, outbox, current))
    })();
    let Ok((doorbell, inbox, outbox, current)) = opened else {
        return spawned::WRONG_BINARY_EXIT;
    };
    for name in [&c.inbox, &c.outbox, &c.current] {
        let _ = crate::unlink(name);
    }
    let init = c.initializer;
    let inner = Inner {
        // The pool's status segment is the parent's (a spawned worker has
        // no mapping of it, and must not unlink it).
        status: None,
        state: Mutex::default(),
        doorbell,
        functions: vec![Arc::new(c.function)],
        max_message: c.max_message,
        initializer: init.map(|f| Arc::new(f) as Initializer),
        max_tasks_per_child: c.max_tasks_per_child,
        spawn: None,
        _names: None,
    };
    worker_main(&inner, &inbox, &outbox, &current)
}

/// A worker process: run tasks from the inbox until it is closed.
///
/// SYNC POINT: the SeqCst stores of `current` (which task runs) need no
/// Acquire partner: the supervisor reads them in [`Supervisor::reap`] only
/// after `waitpid` reaped this process, which orders all of its stores
/// before the call returns.
fn worker_main(inner: &Inner, inbox: &ByteQueue, outbox: &ByteQueue, current: &AtomicU64) -> i32 {
    let max = inner.max_message;
    if let Some(init) = &inner.initializer {
        if panic::catch_unwind(AssertUnwindSafe(|| init())).is_err() {
            return 6;
        }
    }
    let mut done: u64 = 0;
    loop {
        if inner.max_tasks_per_child.is_some_and(|n| done >= n) {
            // Retired: the supervisor replaces it, and gives a task it
            // had queued here (not started: `current` is 0) to another.
            return 0;
        }
        let msg = match inbox.recv_vec() {
            Ok(m) => m,
            Err(RecvError::Closed) => return 0,
            Err(_) => return 3,
        };
        if msg.len() < TASK_HEADER {
            return 4;
        }
        let (Some(id), Ok(f)) = (le_u64(&msg), msg[8..12].try_into()) else {
            return 4;
        };
        let func = u32::from_le_bytes(f) as usize;
        // SYNC POINT: SeqCst, before the function runs (see the doc
        // comment above).
        current.store(id + 1, Ordering::SeqCst);
        let (status, payload) = match inner.functions.get(func) {
            None => (STATUS_NO_FUNCTION, Vec::new()),
            Some(f) => match panic::catch_unwind(AssertUnwindSafe(|| f(&msg[TASK_HEADER..]))) {
                Ok(out) if out.len() <= max => (STATUS_OK, out),
                Ok(out) => (STATUS_TOO_LARGE, (out.len() as u64).to_le_bytes().to_vec()),
                Err(p) => {
                    let mut text = panic_message(&*p).into_bytes();
                    text.truncate(max);
                    (STATUS_PANICKED, text)
                }
            },
        };
        let mut reply = Vec::with_capacity(RESULT_HEADER + payload.len());
        reply.extend_from_slice(&id.to_le_bytes());
        reply.push(status);
        reply.extend_from_slice(&payload);
        if outbox.send(&reply).is_err() {
            return 5;
        }
        current.store(0, Ordering::SeqCst);
        done += 1;
        inner.ring();
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
