//! Attacks on the typed additions (issue 11 items 4 and 5): `RLock`,
//! `JoinableQueue` and `Process` with a typed target, across real
//! processes (fork, SIGSTOP/SIGCONT, SIGKILL) and hostile header words.

mod common;

use shmipc::sync::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{join, poke_u32, CHILD_TIMEOUT};
use shmipc::{
    active_children, fork, BytesConfig, ExitStatus, JoinableQueue, LockError, Named, Process,
    RLock, Shared, Unlinker,
};

fn nap(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

/// A child forked while another thread of its parent is inside
/// `active_children` (holding the list's lock) must still be able to start
/// and list children of its own: the lock it inherited is held by a thread
/// that does not exist in the child.
#[test]
fn a_child_forked_while_another_thread_lists_children_can_list_its_own() {
    // Children to list make each `active_children` call hold the lock for
    // a while (one waitpid each), so most forks land inside it.
    let sleepers: Vec<_> = (0..16)
        .map(|_| Process::new("sleeper").start(nap, 60).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let lister = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = active_children();
            }
        })
    };
    let mut hung = 0;
    for _ in 0..10 {
        let p = Process::new("lists")
            .fork(|| {
                let mine = active_children();
                let grandchild = Process::new("grandchild").fork(|| 0);
                i32::from(!(mine.is_empty() && grandchild.is_ok()))
            })
            .unwrap();
        match p.join_timeout(Duration::from_secs(5)).unwrap() {
            Some(status) => assert_eq!(status, ExitStatus::Code(0)),
            None => hung += 1, // dropping the handle kills it
        }
    }
    stop.store(true, Ordering::Relaxed);
    lister.join().unwrap();
    drop(sleepers);
    assert_eq!(
        hung, 0,
        "forked children that hung in active_children / Process::fork (an inherited held lock)"
    );
}

/// A forked child inherits its parent's hold on an RLock (its memory is a
/// copy, guards and thread-local stamp included) but must not be able to
/// re-enter it as the owner.
#[test]
fn a_forked_child_cannot_reenter_its_parents_rlock() {
    let lock = Shared::<RLock>::anon(()).unwrap();
    let _g = lock.lock().unwrap();
    let _g2 = lock.lock().unwrap();
    let mut child = fork(|| {
        let a = matches!(lock.try_lock(), Err(LockError::WouldBlock));
        let b = matches!(
            lock.lock_timeout(Duration::from_millis(100)),
            Err(LockError::Timeout)
        );
        let c = matches!(lock.lock_timeout(Duration::ZERO), Err(LockError::Timeout));
        i32::from(!a) | i32::from(!b) << 1 | i32::from(!c) << 2
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert!(lock.is_locked());
}

/// A child stopped by SIGSTOP has not ended: `exitcode` stays `None` (and
/// `active_children` lists it) through SIGSTOP and SIGCONT, and becomes
/// -9 once it is killed.
#[test]
fn a_stopped_and_continued_child_has_no_exitcode_until_it_ends() {
    let p = Process::new("stopped").start(nap, 60).unwrap();
    let pid = p.pid() as libc::pid_t;
    // SAFETY: our own unreaped child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    assert!(common::eventually(CHILD_TIMEOUT, || {
        common::proc_state(pid) == Some('T')
    }));
    assert_eq!(p.exitcode(), None);
    assert!(active_children().iter().any(|c| c.pid() == p.pid()));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_eq!(p.exitcode(), None);
    assert!(p.is_alive());
    p.kill().unwrap();
    assert_eq!(
        p.join_timeout(CHILD_TIMEOUT).unwrap(),
        Some(ExitStatus::Signal(libc::SIGKILL))
    );
    assert_eq!(p.exitcode(), Some(-libc::SIGKILL));
}

/// A hostile `tasks` word (offset 100 of the header) at the count's limit:
/// a put is refused with an error that says why (the unfinished tasks),
/// not that the queue — which is empty — is full; join stays bounded and
/// task_done works down from the hostile value without panicking.
#[test]
fn a_hostile_task_count_is_refused_with_an_error_naming_the_tasks() {
    let (_names, name) = common::segment_name("attack-typed-hostile", "q");
    let q = JoinableQueue::<u32>::create(&name, BytesConfig::for_max_message(16).unwrap()).unwrap();
    poke_u32(&name, 100, 0x7fff_ffff);
    let err = q.put(&1).unwrap_err().to_string();
    assert!(
        err.contains("unfinished"),
        "a put refused for the task count says so: {err}"
    );
    assert!(q.empty());
    assert!(!q.join_timeout(Duration::from_millis(10)));
    q.task_done().unwrap();
    assert_eq!(q.unfinished_tasks(), 0x7fff_fffe);
    // WAITERS and a count of 0 from a hostile peer: join returns, a put
    // counts one and its task_done brings it back to zero.
    poke_u32(&name, 100, 0x8000_0000);
    assert!(q.join_timeout(Duration::from_secs(1)));
    q.put(&2).unwrap();
    assert_eq!(q.unfinished_tasks(), 1);
    assert_eq!(q.get().unwrap(), 2);
    q.task_done().unwrap();
    assert!(q.join_timeout(Duration::ZERO));
}

/// Encodes (the `None` is skipped) but does not decode with postcard,
/// which has no field names to notice the gap.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Lopsided {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    first: Option<u32>,
    second: u32,
}

fn never_runs(_: Lopsided) {
    panic!("the target ran with arguments that do not decode");
}

fn stderr_of(p: &shmipc::ProcessHandle) -> String {
    use std::io::Read;
    let mut err = String::new();
    let stderr = p.child().std().and_then(|c| c.stderr.take()).unwrap();
    std::io::BufReader::new(stderr)
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// Spawns `proc` as `cmd`, a process that runs only the test named
/// `test`, with its stderr captured; returns the process, once it has
/// ended, and what it wrote there.
fn run_exact(
    proc: Process,
    cmd: &mut std::process::Command,
    test: &str,
) -> (shmipc::ProcessHandle, String) {
    cmd.args(["--exact", test])
        .stderr(std::process::Stdio::piped());
    let p = proc.spawn(cmd).unwrap();
    let err = stderr_of(&p);
    p.join_timeout(CHILD_TIMEOUT).unwrap().expect("it ends");
    (p, err)
}

/// Arguments that encode but do not decode: either `target_command`
/// refuses them, or the spawned child fails without running the target,
/// naming the process and the type.
#[test]
fn a_spawned_target_whose_arguments_do_not_decode_fails_naming_the_type() {
    Process::serve_if_child();
    let proc = Process::new("lopsided");
    let args = Lopsided {
        first: None,
        second: 5,
    };
    let mut cmd = match proc.target_command(never_runs, args) {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("Lopsided") && msg.contains("lopsided"),
                "{msg}"
            );
            return;
        }
        Ok(cmd) => cmd,
    };
    let (p, err) = run_exact(
        proc,
        &mut cmd,
        "a_spawned_target_whose_arguments_do_not_decode_fails_naming_the_type",
    );
    assert_ne!(p.exitcode(), Some(0));
    assert!(
        err.contains("Lopsided") && err.contains("lopsided") && !err.contains("the target ran"),
        "stderr: {err:?}"
    );
}

/// A target command run by another binary (a copy of this one: another
/// inode, so another identity) must refuse to jump to offsets taken in
/// this one: exit code 7 and a message, never the target.
#[test]
fn a_target_command_run_by_another_binary_refuses_to_run() {
    Process::serve_if_child();
    let names = Unlinker::new("attack-typed-copy");
    let copy = std::env::temp_dir().join(names.name("exe"));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    std::fs::copy("/proc/self/exe", &copy).unwrap();
    let _remove = Remove(copy.clone());
    let proc = Process::new("elsewhere");
    let cmd = proc.target_command(never_runs_u32, 3).unwrap();
    let mut other = std::process::Command::new(&copy);
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            other.env(k, v);
        }
    }
    let (p, err) = run_exact(
        proc,
        &mut other,
        "a_target_command_run_by_another_binary_refuses_to_run",
    );
    assert_eq!(p.exitcode(), Some(7), "stderr: {err:?}");
    assert!(
        !err.contains("the target ran in another"),
        "stderr: {err:?}"
    );
}

fn never_runs_u32(_: u32) {
    panic!("the target ran in another binary");
}

/// A hostile peer that writes the RLock's depth word (the last 8 bytes of
/// the object are `depth` and a reserved word) while the owner holds it:
/// no panic, no wrap, the owner's guards stay bounded, and a depth of 0
/// makes the next release free the lock (the others then release nothing).
#[test]
fn a_hostile_rlock_depth_neither_panics_nor_wraps() {
    let (_names, name) = common::segment_name("attack-typed-rdepth", "lock");
    let lock = Shared::<RLock>::create(&name, ()).unwrap();
    let depth_at = 128 + RLock::SIZE as u64 - 8;
    {
        let g1 = lock.lock().unwrap();
        poke_u32(&name, depth_at, u32::MAX);
        let g2 = lock.lock().unwrap();
        assert_eq!(g2.depth(), u32::MAX, "saturates");
        drop(g2);
        drop(g1);
        assert_eq!(common::peek_u32(&name, depth_at), u32::MAX - 2);
        // Still ours (the hostile peer could have held it anyway): the
        // owner re-enters, another thread cannot take it.
        let again = lock.try_lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| assert!(matches!(lock.try_lock(), Err(LockError::WouldBlock))));
        });
        poke_u32(&name, depth_at, 1);
        drop(again);
    }
    assert!(!lock.is_locked());
    let g1 = lock.lock().unwrap();
    let g2 = lock.lock().unwrap();
    poke_u32(&name, depth_at, 0);
    drop(g2);
    assert!(!lock.is_locked(), "a release at depth 0 frees it");
    drop(g1);
    assert!(!lock.is_locked());
    assert_eq!(common::peek_u32(&name, depth_at), 0);
}
