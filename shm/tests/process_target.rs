//! `Process` with a typed target: serde arguments into forked and spawned
//! children (this test binary run again, selecting its test with
//! `--exact`), `exitcode` (negative for a signal, 1 for a panic, with the
//! message on stderr), `current_process`, `active_children` and
//! `cpu_count`.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use common::{eventually, CHILD_TIMEOUT};
use serde::{Deserialize, Serialize};
use shmipc::{
    active_children, cpu_count, current_process, BytesConfig, Process, ProcessHandle, TypedQueue,
};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Job {
    owner: String,
    sizes: Vec<u32>,
    /// The queue the child reports to.
    reply: String,
}

/// What a child saw of itself.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Seen {
    owner: String,
    total: u64,
    name: String,
    pid: u32,
    parent: u32,
    daemon: bool,
    children: usize,
    /// The target's own address in the child (moves under ASLR after exec).
    addr: usize,
}

fn config() -> BytesConfig {
    BytesConfig::for_max_message(512).unwrap()
}

fn work(job: Job) {
    let me = current_process();
    let seen = Seen {
        owner: job.owner.to_uppercase(),
        total: job.sizes.iter().map(|&s| u64::from(s)).sum(),
        name: me.name().to_owned(),
        pid: me.pid(),
        parent: me.parent_pid(),
        daemon: me.is_daemon(),
        children: active_children().len(),
        addr: work as fn(Job) as usize,
    };
    let q = TypedQueue::<Seen>::open(&job.reply).expect("open the reply queue");
    q.put(&seen).expect("put");
}

fn job(reply: &str) -> Job {
    Job {
        owner: "ada".to_owned(),
        sizes: vec![1, 2, 3, 400],
        reply: reply.to_owned(),
    }
}

/// What `work` in child `p` reported, once `p` has exited with 0: checked
/// to be its own pid, this process as its parent, and `job`'s results.
fn reply_of(q: &TypedQueue<Seen>, p: &ProcessHandle) -> Seen {
    let seen = q.get_timeout(CHILD_TIMEOUT).unwrap();
    p.join_timeout(CHILD_TIMEOUT).unwrap().expect("it ends");
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!((seen.owner.as_str(), seen.total), ("ADA", 406));
    assert_eq!((seen.pid, seen.parent), (p.pid(), std::process::id()));
    seen
}

#[test]
fn a_forked_target_gets_typed_arguments_and_its_name() {
    let (_names, reply) = common::segment_name("ptarget-fork", "reply");
    let q = TypedQueue::<Seen>::create(&reply, config()).unwrap();
    let p = Process::new("summer")
        .daemon(true)
        .start(work, job(&reply))
        .unwrap();
    let seen = reply_of(&q, &p);
    assert_eq!(seen.name, "summer");
    assert!(seen.daemon);
    // The parent's children are not the child's.
    assert_eq!(seen.children, 0);
}

#[test]
fn the_main_process_is_called_main_process() {
    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id());
    assert_eq!(me.ident(), std::process::id());
    // SAFETY: getppid has no preconditions.
    assert_eq!(me.parent_pid(), unsafe { libc::getppid() } as u32);
    assert!(!me.is_daemon());
}

/// Points stderr at `fd`, then panics.
fn panic_to(fd: i32) {
    // SAFETY: dup2 onto stderr of a descriptor this child inherited.
    unsafe { libc::dup2(fd, 2) };
    panic!("target failed on purpose");
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out-array of two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: two fresh descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn nap(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

#[test]
fn exitcode_is_one_for_a_panic_and_minus_the_signal_for_a_kill() {
    let (r, w) = pipe();
    let p = Process::new("panicker")
        .start(panic_to, w.as_raw_fd())
        .unwrap();
    drop(w);
    let mut err = String::new();
    std::fs::File::from(r).read_to_string(&mut err).unwrap();
    p.join_timeout(CHILD_TIMEOUT).unwrap().expect("it ends");
    assert_eq!(p.exitcode(), Some(1));
    assert!(
        err.contains("target failed on purpose") && err.contains("panicker"),
        "stderr: {err:?}"
    );

    let sleeper = Process::new("sleeper").start(nap, 60).unwrap();
    assert_eq!(sleeper.exitcode(), None);
    sleeper.kill().unwrap();
    sleeper
        .join_timeout(CHILD_TIMEOUT)
        .unwrap()
        .expect("it ends");
    assert_eq!(sleeper.exitcode(), Some(-libc::SIGKILL));
}

#[test]
fn active_children_lists_the_live_ones_and_reaps_the_rest() {
    let a = Process::new("a").start(nap, 60).unwrap();
    let b = Process::new("b").start(nap, 60).unwrap();
    let quick = Process::new("quick").start(nap, 0).unwrap();
    let (pa, pb, pq) = (a.pid(), b.pid(), quick.pid());
    // The quick one ends; active_children reaps it and stops listing it.
    assert!(eventually(CHILD_TIMEOUT, || active_children()
        .iter()
        .all(|c| c.pid() != pq)));
    let live: Vec<(u32, String)> = active_children()
        .iter()
        .map(|c| (c.pid(), c.name().to_owned()))
        .collect();
    assert!(live.contains(&(pa, "a".to_owned())), "{live:?}");
    assert!(live.contains(&(pb, "b".to_owned())), "{live:?}");
    assert!(!live.iter().any(|(p, _)| *p == pq), "{live:?}");
    // Reaped by active_children, its status is kept for its handle.
    assert_eq!(quick.exitcode(), Some(0));
    assert_eq!(
        quick
            .join_timeout(Duration::ZERO)
            .unwrap()
            .map(|s| s.code()),
        Some(Some(0))
    );
    // A dropped handle (which kills its child) is not listed; a killed one
    // is not either.
    drop(b);
    a.kill().unwrap();
    assert!(eventually(CHILD_TIMEOUT, || active_children()
        .iter()
        .all(|c| c.pid() != pa && c.pid() != pb)));
    assert_eq!(a.exitcode(), Some(-libc::SIGKILL));
}

fn report_cpus(reply: String) {
    let q = TypedQueue::<usize>::open(&reply).expect("open");
    q.put(&cpu_count()).expect("put");
}

#[test]
fn cpu_count_follows_the_affinity_mask() {
    let out = std::process::Command::new("nproc").output().unwrap();
    let nproc: usize = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(cpu_count(), nproc);
    assert!(cpu_count() >= 1);

    // A child pinned to one CPU counts one.
    let (_names, reply) = common::segment_name("ptarget-cpus", "reply");
    let q = TypedQueue::<usize>::create(&reply, config()).unwrap();
    let p = Process::new("pinned")
        .start(
            |reply: String| {
                // SAFETY: an all-zero cpu_set_t is an empty set.
                let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
                // SAFETY: CPU 0 is within the set's size.
                unsafe { libc::CPU_SET(0, &mut set) };
                // SAFETY: pins this process to the valid set above.
                let r = unsafe {
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
                };
                assert_eq!(r, 0);
                report_cpus(reply);
            },
            reply.clone(),
        )
        .unwrap();
    assert_eq!(q.get_timeout(CHILD_TIMEOUT).unwrap(), 1);
    p.join_timeout(CHILD_TIMEOUT).unwrap().expect("it ends");
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn a_spawned_target_runs_in_a_fresh_image_of_this_binary() {
    Process::serve_if_child();
    let (_names, reply) = common::segment_name("ptarget-spawn", "reply");
    let q = TypedQueue::<Seen>::create(&reply, config()).unwrap();
    let proc = Process::new("fresh");
    let mut cmd = proc.target_command(work, job(&reply)).unwrap();
    cmd.args([
        "--exact",
        "a_spawned_target_runs_in_a_fresh_image_of_this_binary",
    ]);
    let p = proc.spawn(&mut cmd).unwrap();
    let seen = reply_of(&q, &p);
    assert_eq!(seen.name, "fresh");
    assert!(!seen.daemon);
    let aslr = std::fs::read_to_string("/proc/sys/kernel/randomize_va_space")
        .is_ok_and(|s| s.trim() != "0");
    if aslr {
        // The function was found by its offset, not by its address.
        assert_ne!(seen.addr, work as fn(Job) as usize);
    }
}

fn panics(why: String) {
    panic!("{why}");
}

#[test]
fn a_spawned_target_that_panics_exits_with_one_and_says_why() {
    Process::serve_if_child();
    let proc = Process::new("doomed");
    let mut cmd = proc
        .target_command(panics, "spawned target gave up".to_owned())
        .unwrap();
    cmd.args([
        "--exact",
        "a_spawned_target_that_panics_exits_with_one_and_says_why",
    ])
    .stderr(Stdio::piped());
    let p = proc.spawn(&mut cmd).unwrap();
    let mut err = String::new();
    let stderr = p.child().std().and_then(|c| c.stderr.take()).unwrap();
    std::io::BufReader::new(stderr)
        .read_to_string(&mut err)
        .unwrap();
    p.join_timeout(CHILD_TIMEOUT).unwrap().expect("it ends");
    assert_eq!(p.exitcode(), Some(1));
    assert!(
        err.contains("spawned target gave up") && err.contains("doomed"),
        "stderr: {err:?}"
    );
}

#[test]
fn a_target_command_refuses_arguments_too_large_to_pass() {
    let err = Process::new("big")
        .target_command(panics, "x".repeat(1 << 20))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("big") && msg.contains("bytes"), "{msg}");
}
