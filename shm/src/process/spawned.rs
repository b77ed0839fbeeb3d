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

/// The environment variable that makes a process run a [`Process`]'s
/// target ([`Process::target_command`]).
///
/// [`Process`]: crate::Process
/// [`Process::target_command`]: crate::Process::target_command
pub(crate) const TARGET_ENV: &str = "SHMIPC_PROCESS_TARGET";

/// The signature of a target's trampoline: the target's address and its
/// encoded arguments in; `Err` if they do not decode.
pub(crate) type TargetTrampoline = fn(usize, &[u8]) -> Result<(), String>;

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

/// The command that runs `target` (through `trampoline`) with the encoded
/// `args` in a new process of this executable, named `name`.
pub(crate) fn target_command(
    name: &str,
    daemon: bool,
    trampoline: TargetTrampoline,
    target: usize,
    args: &[u8],
) -> Command {
    let env = format!(
        "{} {} {} {} {} {}",
        exe_identity(),
        offset_of(trampoline as usize),
        offset_of(target),
        u8::from(daemon),
        hex(name.as_bytes()),
        hex(args),
    );
    let mut cmd = Command::new("/proc/self/exe");
    cmd.env(TARGET_ENV, env);
    cmd
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("{TARGET_ENV} holds a field that is not hex: {s:?}");
    if s.len() % 2 != 0 {
        return Err(bad());
    }
    (0..s.len() / 2)
        .map(|i| {
            s.get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

/// In a process that [`target_command`] started: runs the target and
/// exits with 0, or 1 if it panicked, or [`WRONG_BINARY_EXIT`] if it
/// cannot be found. Elsewhere returns at once.
fn run_if_target() {
    let Some(env) = std::env::var_os(TARGET_ENV) else {
        return;
    };
    std::env::remove_var(TARGET_ENV);
    let code = match parse_target(&env.to_string_lossy()) {
        Ok((name, trampoline, target, args)) => super::process::run_target(&name, || {
            if let Err(why) = trampoline(target, &args) {
                panic!("{why}");
            }
        }),
        Err(why) => {
            report(&format!("shmipc process target: {why}"));
            WRONG_BINARY_EXIT
        }
    };
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // SAFETY: _exit ends the process at once; it ran nothing of the
    // program's own but the target, whose output is flushed above.
    unsafe { libc::_exit(code) }
}

type Target = (String, TargetTrampoline, usize, Vec<u8>);

fn parse_target(env: &str) -> Result<Target, String> {
    let f: Vec<&str> = env.split(' ').collect();
    if f.len() != 6 {
        return Err(format!("{TARGET_ENV} has {} fields, not 6", f.len()));
    }
    let identity = exe_identity();
    if f[0] != identity {
        return Err(format!(
            "this executable ({identity}) is not the one that started the target ({}): \
             a spawned target must run in its parent's own binary",
            f[0]
        ));
    }
    let num = |i: usize| {
        f[i].parse::<u64>()
            .map_err(|_| format!("{TARGET_ENV} field {i} is not a number: {:?}", f[i]))
    };
    let (trampoline, target) = (address_at(num(1)?), address_at(num(2)?));
    let daemon = num(3)? != 0;
    let name = String::from_utf8_lossy(&unhex(f[4])?).into_owned();
    let args = unhex(f[5])?;
    // SAFETY: the parent, running this same executable (checked above by
    // its identity), wrote the offset of a `TargetTrampoline`; adding this
    // image's base gives that function here.
    let trampoline =
        unsafe { std::mem::transmute::<*const (), TargetTrampoline>(trampoline as *const ()) };
    super::process::become_child(name.clone(), daemon);
    Ok((name, trampoline, target, args))
}

/// In a process that [`start`] started, serves as a pool worker and exits;
/// in one that [`target_command`] started, runs the target and exits;
/// elsewhere returns at once.
pub(crate) fn serve_if_worker() {
    run_if_target();
    let Some(env) = std::env::var_os(ENV) else {
        return;
    };
    // Not passed on: a program a task starts is not a worker of this pool.
    // (Called first thing in `main`, before the program has threads.)
    std::env::remove_var(ENV);
    let code = match parse(&env.to_string_lossy()) {
        Ok(config) => serve(config),
        Err(why) => {
            report(&format!("shmipc pool worker: {why}"));
            WRONG_BINARY_EXIT
        }
    };
    // SAFETY: _exit ends the process at once; a worker has nothing of the
    // program's to flush or destroy (it never ran the program's own code).
    unsafe { libc::_exit(code) }
}

/// Writes `why` and a newline to stderr without the std machinery (the
/// process may be in any state).
pub(crate) fn report(why: &str) {
    if let Ok(msg) = CString::new(format!("{why}\n")) {
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
