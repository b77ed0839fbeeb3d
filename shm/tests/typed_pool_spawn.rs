//! The typed pool with spawned workers: this test binary run again (each
//! test selects itself with `--exact` and serves first thing), so that
//! functions cross `exec` and address-space randomisation by offset.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{TaskError, TypedPool};

const LONG: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Where {
    pid: u32,
    ppid: u32,
    /// Whether the worker's memory is a fresh image: a forked worker
    /// would see the MARK this process set before building the pool.
    spawned: bool,
    /// Whether the pool's variable is still in the worker's environment
    /// (it must not be: programs a task starts are not workers).
    leaked_env: bool,
    /// This function's address in the worker.
    addr: usize,
    setting: u32,
    text: String,
}

static SETTING: AtomicU32 = AtomicU32::new(0);
static MARK: AtomicU32 = AtomicU32::new(0);

fn setup() {
    SETTING.store(7, Ordering::SeqCst);
}

fn where_am_i(text: String) -> Where {
    Where {
        pid: std::process::id(),
        // SAFETY: getppid has no preconditions.
        ppid: unsafe { libc::getppid() } as u32,
        spawned: MARK.load(Ordering::SeqCst) == 0,
        leaked_env: std::env::var_os("SHMIPC_POOL_WORKER").is_some(),
        addr: where_am_i as fn(String) -> Where as usize,
        setting: SETTING.load(Ordering::SeqCst),
        text: text.to_uppercase(),
    }
}

fn explode(i: u32) -> u32 {
    if i == 3 {
        panic!("spawned boom {i}");
    }
    i * 2
}

fn aslr_on() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/randomize_va_space")
        .map(|s| s.trim() != "0")
        .unwrap_or(false)
}

#[test]
fn spawned_workers_run_any_function_across_exec() {
    TypedPool::serve_if_worker();
    MARK.store(1, Ordering::SeqCst);
    let pool = TypedPool::builder(2)
        .spawn([
            "--exact",
            "spawned_workers_run_any_function_across_exec",
            "--nocapture",
        ])
        .initializer(setup)
        .build()
        .unwrap();
    let w = pool.apply(where_am_i, "hello".to_owned()).unwrap();
    assert!(w.spawned, "the worker was not spawned");
    assert!(!w.leaked_env, "the worker kept the pool's variable");
    assert_eq!(w.ppid, std::process::id());
    assert_ne!(w.pid, std::process::id());
    assert_eq!(w.text, "HELLO");
    assert_eq!(w.setting, 7, "the initializer did not run in the worker");
    assert_eq!(SETTING.load(Ordering::SeqCst), 0);
    if aslr_on() {
        // The same function lives at another address there: only its
        // offset could name it.
        let here = where_am_i as fn(String) -> Where as usize;
        let others: BTreeSet<usize> = (0..4)
            .map(|_| pool.apply(where_am_i, String::new()).unwrap().addr)
            .collect();
        assert!(others.iter().any(|&a| a != here), "{here:#x} {others:x?}");
    }
    assert_eq!(pool.map(explode, 0..3, 1).unwrap(), [0, 2, 4]);
    assert_eq!(
        pool.apply(explode, 3),
        Err(TaskError::Panicked("spawned boom 3".into()))
    );
    let ordered: Vec<u32> = pool.imap(explode, 4..10, 2).map(Result::unwrap).collect();
    assert_eq!(ordered, [8, 10, 12, 14, 16, 18]);
    assert_eq!(
        pool.starmap(|a: String, n: usize| a.repeat(n), [("ab".to_owned(), 2)], 0)
            .unwrap(),
        ["abab"]
    );
    let pids = pool.as_bytes().pids();
    pool.close();
    assert!(pool.join_timeout(LONG));
    for pid in pids {
        // SAFETY: signal 0 only asks whether the (reaped) pid exists.
        assert!(unsafe { libc::kill(pid as libc::pid_t, 0) } != 0);
    }
}

#[test]
fn spawned_workers_are_replaced_after_max_tasks() {
    TypedPool::serve_if_worker();
    let pool = TypedPool::builder(1)
        .spawn([
            "--exact",
            "spawned_workers_are_replaced_after_max_tasks",
            "--nocapture",
        ])
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: Vec<u32> = (0..6)
        .map(|_| {
            pool.apply_timeout(where_am_i, String::new(), LONG)
                .unwrap()
                .pid
        })
        .collect();
    let distinct: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
    assert!(pool.as_bytes().restarts() >= 2);
}

#[test]
fn a_worker_running_another_binary_refuses() {
    TypedPool::serve_if_worker();
    // What the pool would pass, but with the identity of another file.
    let env = format!("{} 1:2:3:4.5 0 0 0 /d /i /o /c 1024 0", std::process::id());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_worker_running_another_binary_refuses",
            "--nocapture",
        ])
        .env("SHMIPC_POOL_WORKER", env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not the one the pool runs"),
        "stderr: {stderr}"
    );
    // A worker's process may not build spawned pools of its own.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "nested_spawned_pools_are_refused", "--nocapture"])
        .env("SHMIPC_NESTED_CHECK", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn nested_spawned_pools_are_refused() {
    // Run by the test above in a child: with the worker variable set but
    // never served, building a spawned pool is an error, not a fork bomb.
    if std::env::var_os("SHMIPC_NESTED_CHECK").is_none() {
        // In this process: a spawned pool builds (and is dropped).
        TypedPool::serve_if_worker();
        let pool = TypedPool::builder(1)
            .spawn(["--exact", "nested_spawned_pools_are_refused"])
            .build()
            .unwrap();
        assert_eq!(pool.apply(explode, 1), Ok(2));
        return;
    }
    std::env::set_var("SHMIPC_POOL_WORKER", "x");
    let e = TypedPool::builder(1)
        .spawn(["--exact", "nested"])
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("serve_if_worker"), "{e}");
}
