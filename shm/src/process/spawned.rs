//! Pool workers started as new processes of this same executable rather
//! than forked: how a function is named so that it means the same after
//! `exec` and ASLR, how a worker checks that it runs the same binary, and
//! the worker's side of the start.
//!
//! The parent runs `/proc/self/exe` (the very file it was started from,
//! even if it has been replaced on disk since) with arguments the pool's
//! user chose, and the environment variable [`ENV`] naming the worker's
//! segments. The program's `main` (or, for a test binary, the test that
//! builds the pool) calls [`TypedPool::serve_if_worker`] first: in a
//! worker it serves and exits, elsewhere it returns at once.
//!
//! [`TypedPool::serve_if_worker`]: crate::TypedPool::serve_if_worker

use std::ffi::CString;
use std::fmt::Write as _;
use std::io;
use std::process::{Command, Stdio};

use super::pool::{serve, ServeConfig};
use super::process::die_with_parent;
use super::{spawn, Child};

/// The environment variable that makes a process a pool worker.
pub(crate) const ENV: &str = "SHMIPC_POOL_WORKER";

/// Exit code of a spawned worker that finds it runs another binary than
/// its pool, or cannot read its start-up variable.
pub(crate) const WRONG_BINARY_EXIT: i32 = 7;

/// The known point every function offset is taken from. It is only ever
/// compared against, never called; `#[inline(never)]` keeps it a function
/// of its own.
#[inline(never)]
fn anchor() {}

fn base() -> usize {
    anchor as fn() as usize
}

/// The offset of code address `addr` from the anchor: the same in every
/// process running this binary, wherever the loader put it.
pub(crate) fn offset_of(addr: usize) -> u64 {
    addr.wrapping_sub(base()) as u64
}

/// The code address at `offset` from the anchor in this process.
pub(crate) fn address_at(offset: u64) -> usize {
    base().wrapping_add(offset as usize)
}

/// What a parent tells a spawned pool to run.
#[derive(Clone)]
pub(crate) struct SpawnSpec {
    /// The pool's one function (the typed pool's dispatcher).
    pub(crate) function: fn(&[u8]) -> Vec<u8>,
    /// Run once in each worker before its first task.
    pub(crate) initializer: Option<fn()>,
    /// The arguments the executable gets.
    pub(crate) args: Vec<String>,
}

/// The identity of the running executable: the device, inode, size and
/// modification time of `/proc/self/exe`.
pub(crate) fn exe_identity() -> String {
    let path = c"/proc/self/exe";
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated; `st` is a valid out-pointer.
    if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
        return "unknown".to_owned();
    }
    format!(
        "{}:{}:{}:{}.{}",
        st.st_dev, st.st_ino, st.st_size, st.st_mtime, st.st_mtime_nsec
    )
}

/// The segments and settings of one spawned worker.
pub(crate) struct WorkerNames<'a> {
    pub(crate) doorbell: &'a str,
    pub(crate) inbox: &'a str,
    pub(crate) outbox: &'a str,
    pub(crate) current: &'a str,
    pub(crate) max_message: usize,
    pub(crate) max_tasks_per_child: Option<u64>,
}

/// Starts one worker: this executable, with `spec.args` and [`ENV`].
pub(crate) fn start(spec: &SpawnSpec, names: &WorkerNames<'_>) -> io::Result<Child> {
    let mut env = String::new();
    let _ = write!(
        env,
        "{} {} {} {} {} {} {} {} {} {} {}",
        std::process::id(),
        exe_identity(),
        offset_of(anchor as fn() as usize),
        offset_of(spec.function as usize),
        spec.initializer.map_or(0, |f| offset_of(f as usize)),
        names.doorbell,
        names.inbox,
        names.outbox,
        names.current,
        names.max_message,
        names.max_tasks_per_child.unwrap_or(0),
    );
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(&spec.args).env(ENV, env).stdin(Stdio::null());
    spawn(&mut cmd)
}

/// In a process that [`start`] started, serves as a pool worker and exits;
/// elsewhere returns at once.
pub(crate) fn serve_if_worker() {
    let Some(env) = std::env::var_os(ENV) else {
        return;
    };
    // Not passed on: a program a task starts is not a worker of this pool.
    // (Called first thing in `main`, before the program has threads.)
    std::env::remove_var(ENV);
    let code = match parse(&env.to_string_lossy()) {
        Ok(config) => serve(config),
        Err(why) => {
            report(&why);
            WRONG_BINARY_EXIT
        }
    };
    // SAFETY: _exit ends the process at once; a worker has nothing of the
    // program's to flush or destroy (it never ran the program's own code).
    unsafe { libc::_exit(code) }
}

/// Writes `why` to stderr without the std machinery (the worker may be in
/// any state).
fn report(why: &str) {
    if let Ok(msg) = CString::new(format!("shmipc pool worker: {why}\n")) {
        let bytes = msg.as_bytes();
        // SAFETY: writes `bytes.len()` bytes from a live buffer to fd 2.
        let _ = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
    }
}

fn parse(env: &str) -> Result<ServeConfig, String> {
    let f: Vec<&str> = env.split(' ').collect();
    if f.len() != 11 {
        return Err(format!("{ENV} has {} fields, not 11", f.len()));
    }
    let num = |i: usize| {
        f[i].parse::<u64>()
            .map_err(|_| format!("{ENV} field {i} is not a number: {:?}", f[i]))
    };
    let parent = num(0)?;
    let identity = exe_identity();
    if f[1] != identity {
        return Err(format!(
            "this executable ({identity}) is not the one the pool runs ({}): a spawned pool's workers must run its own binary",
            f[1]
        ));
    }
    // The anchor's offset from itself is zero in any binary; what it checks
    // is that both sides agree on the field layout.
    if num(2)? != 0 {
        return Err(format!("{ENV} names an anchor offset of {}", f[2]));
    }
    let function = address_at(num(3)?);
    let initializer = match num(4)? {
        0 => None,
        off => Some(address_at(off)),
    };
    if !die_with_parent(parent as libc::pid_t) {
        return Err(format!("the pool's process {parent} is gone"));
    }
    // SAFETY: the parent, running this same executable (checked above by
    // its identity), wrote the offset of a `fn(&[u8]) -> Vec<u8>`; adding
    // this image's base gives that function here.
    let function =
        unsafe { std::mem::transmute::<*const (), fn(&[u8]) -> Vec<u8>>(function as *const ()) };
    let initializer = initializer.map(|a| {
        // SAFETY: as above, for the offset of a `fn()`.
        unsafe { std::mem::transmute::<*const (), fn()>(a as *const ()) }
    });
    Ok(ServeConfig {
        function,
        initializer,
        doorbell: f[5].to_owned(),
        inbox: f[6].to_owned(),
        outbox: f[7].to_owned(),
        current: f[8].to_owned(),
        max_message: num(9)? as usize,
        max_tasks_per_child: Some(num(10)?).filter(|&n| n > 0),
    })
}
