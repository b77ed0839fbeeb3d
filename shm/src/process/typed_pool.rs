//! [`TypedPool`]: any `fn(A) -> R` over serde types, chosen per call, run
//! by the worker processes of a [`Pool`].
//!
//! # How a function crosses
//!
//! A task names its function by two offsets from one known function of
//! this binary (the anchor in `spawned.rs`): the offset of the function itself, and the
//! offset of a *trampoline*, `call_chunk::<A, R>` (monomorphised for the
//! task's types), that decodes the arguments, calls the function and
//! encodes the results. Offsets rather than addresses, so that they mean
//! the same in any process that runs this same binary wherever the loader
//! put it (a position-independent executable moves every function by the
//! same base): a forked worker, whose image is the parent's, or a worker
//! started from the same executable ([`TypedPoolBuilder::spawn`], which
//! checks that it is the same file). The byte pool's one function,
//! `dispatch`, turns the offsets back into the two function pointers.
//!
//! The limits, which the types enforce where they can: functions only, no
//! capturing closures (a closure that captures nothing coerces to a `fn`);
//! `A` and `R` serde types; the workers run this same binary.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use shmipc_core::futex::Deadline;

use super::pool::{Callback, Pool, PoolBuilder, TaskError};
use super::spawned::{self, address_at, offset_of, SpawnSpec};
use crate::error::Result;
use crate::typed::decode;

type TaskResult = std::result::Result<Vec<u8>, TaskError>;

/// The signature every trampoline has: the task function's address and
/// the encoded arguments in, the encoded results (or why not) out.
type Trampoline = fn(usize, &[u8]) -> std::result::Result<Vec<u8>, String>;

/// Task header: the trampoline's offset and the function's, 8 bytes each.
const HEADER: usize = 16;
/// Result status: the results follow.
const OK: u8 = 0;
/// Result status: a message (a codec error) follows.
const FAILED: u8 = 1;

/// Decodes a chunk of `A`s, calls `f` on each, encodes the `R`s.
fn call_chunk<A: DeserializeOwned, R: Serialize>(
    f: usize,
    args: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    // SAFETY: `f` is the address of a `fn(A) -> R`: the parent took the
    // offset of exactly such a function in `TypedPool::submit`, together
    // with the offset of this trampoline monomorphised for the same `A`
    // and `R`, and `dispatch` added both to this image's base (see the
    // module documentation for why the image is the parent's).
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(f as *const ()) };
    let items: Vec<A> = decode(args, Some("(pool task)")).map_err(|e| e.to_string())?;
    let out: Vec<R> = items.into_iter().map(f).collect();
    postcard::to_allocvec(&out).map_err(|e| {
        format!(
            "a result of type {} could not be encoded: {e}",
            std::any::type_name::<R>()
        )
    })
}

/// [`call_chunk`] for two-argument functions (`starmap`).
fn call_star<A: DeserializeOwned, B: DeserializeOwned, R: Serialize>(
    f: usize,
    args: &[u8],
) -> std::result::Result<Vec<u8>, String> {
    // SAFETY: as in `call_chunk`, for a `fn(A, B) -> R` and this
    // trampoline monomorphised for the same types.
    let f = unsafe { std::mem::transmute::<*const (), fn(A, B) -> R>(f as *const ()) };
    let items: Vec<(A, B)> = decode(args, Some("(pool task)")).map_err(|e| e.to_string())?;
    let out: Vec<R> = items.into_iter().map(|(a, b)| f(a, b)).collect();
    postcard::to_allocvec(&out).map_err(|e| {
        format!(
            "a result of type {} could not be encoded: {e}",
            std::any::type_name::<R>()
        )
    })
}

/// The byte pool's function: finds the trampoline and the task function
/// from their offsets and runs them. A worker panic in the task function
/// unwinds through here to the byte pool, which reports its message.
fn dispatch(msg: &[u8]) -> Vec<u8> {
    let (out, status) = match run(msg) {
        Ok(v) => (v, OK),
        Err(e) => (e.into_bytes(), FAILED),
    };
    let mut reply = Vec::with_capacity(1 + out.len());
    reply.push(status);
    reply.extend_from_slice(&out);
    reply
}

fn run(msg: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let word = |i: usize| {
        msg.get(i * 8..i * 8 + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
            .ok_or_else(|| format!("a task of {} bytes has no header", msg.len()))
    };
    let (t, f) = (word(0)?, word(1)?);
    // SAFETY: the inbox this task came from is written by the pool's
    // supervisor only (anonymous shared memory that only the parent and
    // this worker map, or, for a spawned worker, a segment of the parent's
    // user, mode 0600), which wrote the offsets of a trampoline of type
    // `Trampoline` and of the function it expects, in this same binary.
    // (A process that can write that segment could as well ptrace us.)
    let trampoline =
        unsafe { std::mem::transmute::<*const (), Trampoline>(address_at(t as u64) as *const ()) };
    trampoline(address_at(f as u64), &msg[HEADER..])
}

/// Builds a [`TypedPool`].
pub struct TypedPoolBuilder {
    pool: PoolBuilder,
    initializer: Option<fn()>,
    spawn: Option<Vec<String>>,
}

impl TypedPoolBuilder {
    /// Runs `f` in each worker when it starts (Python's `initializer`).
    pub fn initializer(mut self, f: fn()) -> TypedPoolBuilder {
        self.initializer = Some(f);
        self
    }

    /// Starts the workers as new processes of this same executable (the
    /// file this process was started from), run with `args`, instead of
    /// forking them: Python's `spawn` start method. The program must call
    /// [`TypedPool::serve_if_worker`] first thing in `main` (a test
    /// binary: first thing in the test, with `args` selecting that test);
    /// a worker checks that it runs the same binary (device, inode, size
    /// and modification time of `/proc/self/exe`) and exits with code 7
    /// and a message on stderr otherwise. Its segments are named
    /// (`/shmipc-pool-...`): the doorbell's name lives as long as the pool,
    /// each worker's until it has opened them.
    pub fn spawn<I, S>(mut self, args: I) -> TypedPoolBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.spawn = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Each worker exits after `n` tasks (chunks, for the `map` family)
    /// and is replaced (Python's `maxtasksperchild`).
    pub fn max_tasks_per_child(mut self, n: u64) -> TypedPoolBuilder {
        self.pool = self.pool.max_tasks_per_child(n);
        self
    }

    /// The largest encoded task (a chunk of arguments) or result, in bytes
    /// (64 KiB by default).
    pub fn max_message(mut self, bytes: usize) -> TypedPoolBuilder {
        self.pool = self.pool.max_message(bytes);
        self
    }

    /// Publishes the workers in a named status segment, for `shmipc ls`
    /// and `shmipc inspect` (see [`PoolBuilder::status_name`]); spawned
    /// workers ([`spawn`](TypedPoolBuilder::spawn)) are listed with their
    /// pids but cannot be judged alive or dead.
    pub fn status_name(mut self, name: &str) -> TypedPoolBuilder {
        self.pool = self.pool.status_name(name);
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<TypedPool> {
        let pool = match self.spawn {
            Some(args) => self.pool.spawned(SpawnSpec {
                function: dispatch,
                initializer: self.initializer,
                args,
            }),
            None => match self.initializer {
                Some(f) => self.pool.initializer(f),
                None => self.pool,
            },
        };
        Ok(TypedPool {
            pool: pool.build()?,
        })
    }
}

impl fmt::Debug for TypedPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPoolBuilder")
            .field("pool", &self.pool)
            .field("spawn", &self.spawn)
            .finish()
    }
}

/// A pool of worker processes that run any `fn(A) -> R` whose argument
/// and result are serde types, chosen per call, like Python's
/// `multiprocessing.Pool`. Non-capturing closures coerce to `fn`.
///
/// ```
/// use shmipc::{TaskError, TypedPool};
///
/// fn word_count(text: String) -> usize {
///     text.split_whitespace().count()
/// }
///
/// let pool = TypedPool::new(2)?;
/// assert_eq!(pool.apply(word_count, "three little words".to_owned())?, 3);
/// let squares = pool.map(|x: u64| x * x, 1..=5, 0)?;
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// let sums = pool.starmap(|a: u32, b: u32| a + b, vec![(1, 2), (3, 4)], 0)?;
/// assert_eq!(sums, [3, 7]);
/// let err = pool.apply(|_: ()| -> u8 { panic!("no luck") }, ()).unwrap_err();
/// assert!(matches!(err, TaskError::Panicked(msg) if msg == "no luck"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `chunksize` (the last argument of the `map` family) sends that many
/// inputs per task; `0` picks one as Python does (a quarter of an even
/// share per worker for `map` and `starmap`, 1 for `imap`). A chunk is one
/// task: a panic fails every item in it, and each chunk, encoded, must fit
/// [`TypedPoolBuilder::max_message`].
///
/// The workers, their supervision, what a worker's death costs and how the
/// pool ends are [`Pool`]'s: a `TypedPool` is a `Pool` whose one function
/// runs the function each task names, by its offset from a known function
/// of the binary, so that it means the same in another process. The
/// workers are forked, or, with [`TypedPoolBuilder::spawn`], started from
/// this same executable (Python's `spawn`). Dropping the pool terminates
/// it.
pub struct TypedPool {
    pool: Pool,
}

/// Where a [`TypedAsyncResult`] waits.
struct Wait<T> {
    value: Mutex<Option<T>>,
    done: Condvar,
}

impl<T> Wait<T> {
    fn new() -> Arc<Self> {
        Arc::new(Wait {
            value: Mutex::new(None),
            done: Condvar::new(),
        })
    }

    fn put(&self, v: T) {
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        self.done.notify_all();
    }

    /// Waits until a value is in, at most until `deadline` (`None`: for
    /// ever); returns whether one is.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut v = self.value.lock().unwrap_or_else(|p| p.into_inner());
        while v.is_none() {
            v = match deadline {
                None => self.done.wait(v).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.done
                        .wait_timeout(v, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        true
    }

    fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        f(self
            .value
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref())
    }
}

/// `now + timeout`, or `None` (for ever) when that is past what an
/// `Instant` holds.
fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The results of one task in a reply of the byte pool.
fn results<R: DeserializeOwned>(reply: &TaskResult) -> std::result::Result<Vec<R>, TaskError> {
    let bytes = reply.as_ref().map_err(Clone::clone)?;
    match bytes.split_first() {
        Some((&OK, rest)) => {
            decode(rest, Some("(pool result)")).map_err(|e| TaskError::Message(e.to_string()))
        }
        Some((_, rest)) => Err(TaskError::Message(
            String::from_utf8_lossy(rest).into_owned(),
        )),
        None => Err(TaskError::Message("an empty reply".to_owned())),
    }
}

/// Python's default chunk size for `map`: inputs spread over four chunks
/// per worker.
fn auto_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(processes * 4).max(1)
}

impl TypedPool {
    /// Starts `processes` workers (1 to 4096), forked from this process.
    pub fn new(processes: usize) -> Result<TypedPool> {
        TypedPool::builder(processes).build()
    }

    /// A builder for a pool of `processes` workers.
    pub fn builder(processes: usize) -> TypedPoolBuilder {
        TypedPoolBuilder {
            pool: Pool::builder(processes).function(dispatch),
            initializer: None,
            spawn: None,
        }
    }

    /// In a worker that a spawned pool started ([`TypedPoolBuilder::spawn`]),
    /// serves the pool and exits the process; anywhere else returns at once.
    /// Call it first thing in `main` of a program that spawns pools.
    pub fn serve_if_worker() {
        spawned::serve_if_worker();
    }

    /// The byte pool underneath (its workers' pids, restarts).
    pub fn as_bytes(&self) -> &Pool {
        &self.pool
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.pool.processes()
    }

    /// Queues one task: `trampoline` over `items`, encoded; `then` gets the
    /// reply.
    fn submit<T: Serialize>(
        &self,
        trampoline: Trampoline,
        f: usize,
        items: &[T],
        then: Callback,
    ) -> std::result::Result<(), TaskError> {
        let mut msg = Vec::with_capacity(HEADER + 64);
        msg.extend_from_slice(&offset_of(trampoline as usize).to_le_bytes());
        msg.extend_from_slice(&offset_of(f).to_le_bytes());
        let msg = match postcard::to_extend(items, msg) {
            Ok(m) => m,
            Err(e) => {
                let e = TaskError::Message(format!(
                    "an argument of type {} could not be encoded: {e}",
                    std::any::type_name::<T>()
                ));
                then(Err(e.clone()));
                return Err(e);
            }
        };
        self.pool.apply_then(0, &msg, then)
    }

    /// Runs `f(arg)` in a worker and waits for the result, as long as it
    /// takes (see [`TypedPool::apply_timeout`]).
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> std::result::Result<R, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// Runs `f(arg)` in a worker and waits at most `timeout` for the
    /// result ([`TaskError::Timeout`]; the task goes on).
    pub fn apply_timeout<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        timeout: Duration,
    ) -> std::result::Result<R, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, arg)?.get_timeout(timeout)
    }

    /// Queues `f(arg)`; the handle gets the result.
    pub fn apply_async<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
    ) -> std::result::Result<TypedAsyncResult<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async_then(f, arg, |_| {}, |_| {})
    }

    /// Queues `f(arg)`; when it is done, `callback` gets the result or
    /// `error_callback` the error (Python's `callback` and
    /// `error_callback`), on the pool's supervisor thread: they should
    /// return quickly. The handle gets the result too, before the callback
    /// runs.
    pub fn apply_async_then<A, R>(
        &self,
        f: fn(A) -> R,
        arg: A,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(TaskError) + Send + 'static,
    ) -> std::result::Result<TypedAsyncResult<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let wait = Wait::new();
        let w = wait.clone();
        let then: Callback = Box::new(move |reply: TaskResult| {
            // The handle is ready before the callback runs, so a callback
            // (or whoever it signals) finds the result there.
            let outcome = one::<R>(&reply);
            w.put(vec![reply]);
            match outcome {
                Ok(r) => callback(r),
                Err(e) => error_callback(e),
            }
        });
        self.submit(call_chunk::<A, R>, f as usize, &[arg], then)?;
        Ok(TypedAsyncResult {
            wait,
            decode: first::<R>,
        })
    }

    /// Splits `items` into chunks of `chunksize` and queues each, with the
    /// callback `then(chunk index)` makes; returns the chunk lengths.
    fn submit_chunks<T: Serialize>(
        &self,
        trampoline: Trampoline,
        f: usize,
        items: Vec<T>,
        chunksize: usize,
        mut then: impl FnMut(usize) -> Callback,
    ) -> Vec<usize> {
        let mut lens = Vec::new();
        for (i, chunk) in items.chunks(chunksize).enumerate() {
            lens.push(chunk.len());
            // A refused chunk has sent its error to its callback already.
            let _ = self.submit(trampoline, f, chunk, then(i));
        }
        lens
    }

    /// Runs `f` on every input and returns the results in input order, or
    /// the first error by input order; waits as long as it takes (see
    /// [`TypedPool::map_timeout`]). `chunksize` 0 picks one.
    pub fn map<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> std::result::Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, inputs, chunksize).get()
    }

    /// [`TypedPool::map`], waiting at most `timeout` for every result
    /// ([`TaskError::Timeout`]; the tasks go on).
    pub fn map_timeout<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
        timeout: Duration,
    ) -> std::result::Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async(f, inputs, chunksize).get_timeout(timeout)
    }

    /// Queues `f` on every input; the handle gets the results in order.
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> TypedMapResult<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async_then(f, inputs, chunksize, |_| {}, |_| {})
    }

    /// [`TypedPool::map_async`] with Python's `callback` (all the results,
    /// in order) and `error_callback` (the first error by input order),
    /// called on the pool's supervisor thread once every chunk is in.
    pub fn map_async_then<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(TaskError) + Send + 'static,
    ) -> TypedMapResult<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items = inputs.into_iter().collect();
        self.collect(
            call_chunk::<A, R>,
            f as usize,
            items,
            chunksize,
            callback,
            error_callback,
        )
    }

    /// Runs `f(a, b)` for every pair and returns the results in input
    /// order (Python's `starmap`, for two arguments); waits as long as it
    /// takes (see [`TypedPool::starmap_timeout`]).
    pub fn starmap<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
        chunksize: usize,
    ) -> std::result::Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.starmap_async(f, inputs, chunksize).get()
    }

    /// [`TypedPool::starmap`], waiting at most `timeout`.
    pub fn starmap_timeout<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
        chunksize: usize,
        timeout: Duration,
    ) -> std::result::Result<Vec<R>, TaskError>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.starmap_async(f, inputs, chunksize)
            .get_timeout(timeout)
    }

    /// Queues `f(a, b)` for every pair (Python's `starmap_async`).
    pub fn starmap_async<A, B, R>(
        &self,
        f: fn(A, B) -> R,
        inputs: impl IntoIterator<Item = (A, B)>,
        chunksize: usize,
    ) -> TypedMapResult<R>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let items = inputs.into_iter().collect();
        self.collect(
            call_star::<A, B, R>,
            f as usize,
            items,
            chunksize,
            |_| {},
            |_| {},
        )
    }

    /// Queues `items` in chunks of `chunksize` (0: Python's choice) and
    /// gathers every chunk's reply for the handle and the callbacks.
    fn collect<T: Serialize, R: DeserializeOwned + 'static>(
        &self,
        trampoline: Trampoline,
        f: usize,
        items: Vec<T>,
        chunksize: usize,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(TaskError) + Send + 'static,
    ) -> TypedMapResult<R> {
        let wait = Wait::new();
        let chunksize = match chunksize {
            0 => auto_chunksize(items.len(), self.pool.processes()),
            n => n,
        };
        let n_chunks = items.len().div_ceil(chunksize);
        let gather = Arc::new(Mutex::new(Gather {
            replies: (0..n_chunks).map(|_| None).collect(),
            missing: n_chunks,
            then: Some(Box::new(move |all: &[TaskResult]| {
                match gathered::<R>(all) {
                    Ok(v) => callback(v),
                    Err(e) => error_callback(e),
                }
            })),
        }));
        if n_chunks == 0 {
            wait.put(Vec::new());
            if let Some(then) = gather.lock().unwrap_or_else(|p| p.into_inner()).then.take() {
                then(&[]);
            }
        }
        self.submit_chunks(trampoline, f, items, chunksize, |i| {
            let (gather, wait) = (gather.clone(), wait.clone());
            Box::new(move |reply| {
                let mut g = gather.lock().unwrap_or_else(|p| p.into_inner());
                if g.replies[i].is_none() {
                    g.missing -= 1;
                }
                g.replies[i] = Some(reply);
                if g.missing == 0 {
                    let all: Vec<TaskResult> =
                        g.replies.iter_mut().filter_map(Option::take).collect();
                    let then = g.then.take();
                    drop(g);
                    // The handle is ready before the callback runs.
                    let copy = then.as_ref().map(|_| all.clone());
                    wait.put(all);
                    if let (Some(then), Some(all)) = (then, copy) {
                        then(&all);
                    }
                }
            })
        });
        TypedMapResult {
            wait,
            decode: gathered::<R>,
        }
    }

    /// Runs `f` on every input and yields the results in input order as
    /// they become available (Python's `imap`). `chunksize` 0 means 1.
    pub fn imap<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> TypedImap<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.stream(f, inputs.into_iter().collect(), chunksize, true)
    }

    /// Runs `f` on every input and yields each chunk's results as soon as
    /// it is done, in no particular order (Python's `imap_unordered`).
    /// `chunksize` 0 means 1.
    pub fn imap_unordered<A, R>(
        &self,
        f: fn(A) -> R,
        inputs: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> TypedImapUnordered<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.stream(f, inputs.into_iter().collect(), chunksize, false)
    }

    /// Queues `items` in chunks of `chunksize` (0 means 1); the iterator
    /// gets each chunk's reply.
    fn stream<A, R>(
        &self,
        f: fn(A) -> R,
        items: Vec<A>,
        chunksize: usize,
        ordered: bool,
    ) -> TypedImap<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let lens = self.submit_chunks(
            call_chunk::<A, R>,
            f as usize,
            items,
            chunksize.max(1),
            |i| {
                let tx = tx.clone();
                Box::new(move |reply| {
                    let _ = tx.send((i, reply));
                })
            },
        );
        TypedImap {
            rx,
            lens,
            ordered,
            early: BTreeMap::new(),
            taken: 0,
            ready: VecDeque::new(),
            _type: PhantomData,
        }
    }

    /// Accepts no more tasks; the queued ones still run (see
    /// [`Pool::close`]).
    pub fn close(&self) {
        self.pool.close();
    }

    /// Stops the workers now; unfinished tasks fail with
    /// [`TaskError::Terminated`] (see [`Pool::terminate`]).
    pub fn terminate(&self) {
        self.pool.terminate();
    }

    /// Closes the pool and waits for the workers to exit, as long as it
    /// takes (see [`TypedPool::join_timeout`]).
    pub fn join(&self) {
        self.pool.join();
    }

    /// [`TypedPool::join`], waiting at most `timeout`; returns whether
    /// the workers have exited.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.pool.join_timeout(timeout)
    }
}

impl fmt::Debug for TypedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPool")
            .field("pool", &self.pool)
            .finish()
    }
}

/// The one result of a one-item reply.
fn one<R: DeserializeOwned>(reply: &TaskResult) -> std::result::Result<R, TaskError> {
    results::<R>(reply)?
        .pop()
        .ok_or_else(|| TaskError::Message("a reply without its result".to_owned()))
}

/// The one result of a one-task reply list.
fn first<R: DeserializeOwned>(all: &[TaskResult]) -> std::result::Result<R, TaskError> {
    all.first().map_or(Err(TaskError::Terminated), one::<R>)
}

/// Every chunk's results in order, or the first error.
fn gathered<R: DeserializeOwned>(all: &[TaskResult]) -> std::result::Result<Vec<R>, TaskError> {
    let mut out = Vec::new();
    for reply in all {
        out.extend(results::<R>(reply)?);
    }
    Ok(out)
}

type Then = Box<dyn FnOnce(&[TaskResult]) + Send>;

/// A map's chunk replies as they come in.
struct Gather {
    replies: Vec<Option<TaskResult>>,
    missing: usize,
    then: Option<Then>,
}

/// The pending result of [`TypedPool::apply_async`] (an `R`) or of the
/// `map_async` family (a `Vec<R>`, see [`TypedMapResult`]): Python's
/// `AsyncResult`.
pub struct TypedAsyncResult<V> {
    /// Every chunk's reply, once all are in.
    wait: Arc<Wait<Vec<TaskResult>>>,
    /// The value (or the first error) from the replies.
    decode: fn(&[TaskResult]) -> std::result::Result<V, TaskError>,
}

/// The pending results of [`TypedPool::map_async`] and
/// [`TypedPool::starmap_async`], in input order.
pub type TypedMapResult<R> = TypedAsyncResult<Vec<R>>;

impl<V> TypedAsyncResult<V> {
    /// Waits for the result, as long as it takes (see
    /// [`TypedAsyncResult::get_timeout`]): for a map, every result in input
    /// order, or the first error by input order.
    pub fn get(&self) -> std::result::Result<V, TaskError> {
        self.wait.wait(None);
        self.wait
            .with(|r| r.map_or(Err(TaskError::Terminated), |all| (self.decode)(all)))
    }

    /// Waits at most `timeout`: [`TaskError::Timeout`] if the result is not
    /// in by then (ask again later).
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<V, TaskError> {
        if !self.wait_timeout(timeout) {
            return Err(TaskError::Timeout);
        }
        self.get()
    }

    /// Waits until the result is in, as long as it takes.
    pub fn wait(&self) {
        self.wait.wait(None);
    }

    /// Waits at most `timeout`; returns whether the result is in.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait.wait(deadline(timeout))
    }

    /// Whether the result is in.
    pub fn ready(&self) -> bool {
        self.wait.with(|r| r.is_some())
    }

    /// Whether the task succeeded (`None` while it runs).
    pub fn successful(&self) -> Option<bool> {
        self.wait.with(|r| r.map(|all| (self.decode)(all).is_ok()))
    }
}

impl<V> fmt::Debug for TypedAsyncResult<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedAsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

/// A chunk's results as items: each result, or the chunk's error once per
/// input.
fn items_of<R: DeserializeOwned>(
    reply: &TaskResult,
    len: usize,
) -> VecDeque<std::result::Result<R, TaskError>> {
    match results::<R>(reply) {
        Ok(v) => v.into_iter().map(Ok).collect(),
        Err(e) => (0..len).map(|_| Err(e.clone())).collect(),
    }
}

/// Results of [`TypedPool::imap`] (in input order) and of
/// [`TypedPool::imap_unordered`] (as each chunk comes in).
pub struct TypedImap<R> {
    rx: mpsc::Receiver<(usize, TaskResult)>,
    lens: Vec<usize>,
    /// Whether results come in input order (`imap`).
    ordered: bool,
    /// Ordered: chunks that came in before their turn.
    early: BTreeMap<usize, TaskResult>,
    /// How many chunks have been turned into `ready` items.
    taken: usize,
    ready: VecDeque<std::result::Result<R, TaskError>>,
    _type: PhantomData<fn() -> R>,
}

/// Results of [`TypedPool::imap_unordered`]: a [`TypedImap`] that yields
/// each chunk's results as soon as it is done.
pub type TypedImapUnordered<R> = TypedImap<R>;

impl<R: DeserializeOwned> TypedImap<R> {
    /// The next result, waiting at most `timeout` for it: `Ok(None)` at
    /// the end, [`TaskError::Timeout`] if it is not in yet (ask again;
    /// nothing is lost).
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> std::result::Result<Option<std::result::Result<R, TaskError>>, TaskError> {
        let deadline = Deadline::after(timeout);
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(Some(r));
            }
            if self.taken >= self.lens.len() {
                return Ok(None);
            }
            if let Some(reply) = self.early.remove(&self.taken) {
                self.ready = items_of(&reply, self.lens[self.taken]);
                self.taken += 1;
                continue;
            }
            match self.rx.recv_timeout(deadline.remaining()) {
                Ok((i, reply)) if self.ordered => {
                    self.early.insert(i, reply);
                }
                Ok((i, reply)) => {
                    self.ready = items_of(&reply, self.lens[i]);
                    self.taken += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(TaskError::Timeout),
                // Every chunk replies once; a lost one is the pool's end.
                Err(mpsc::RecvTimeoutError::Disconnected) if self.ordered => {
                    self.early.insert(self.taken, Err(TaskError::Terminated));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.taken = self.lens.len();
                    return Ok(Some(Err(TaskError::Terminated)));
                }
            }
        }
    }
}

impl<R: DeserializeOwned> Iterator for TypedImap<R> {
    type Item = std::result::Result<R, TaskError>;

    /// The next result, waiting as long as it takes.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_timeout(Duration::MAX).unwrap_or(None)
    }
}

impl<R> fmt::Debug for TypedImap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedImap")
            .field("ordered", &self.ordered)
            .field("chunks", &self.lens.len())
            .field("taken", &self.taken)
            .finish()
    }
}
