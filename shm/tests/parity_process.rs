//! `Process`: names, exit statuses, terminate, and daemons that die with a
//! parent killed by SIGKILL.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use common::{eventually, CHILD_TIMEOUT};
use shmipc::sync::{AtomicU64, Ordering};
use shmipc::{fork, ExitStatus, Named, Process, Shared};

fn join(p: &mut shmipc::ProcessHandle) -> ExitStatus {
    p.join_timeout(CHILD_TIMEOUT)
        .expect("waitpid")
        .unwrap_or_else(|| panic!("{} did not finish", p.name()))
}

#[test]
fn names_exit_codes_and_signals() {
    let mut ok = Process::new("ok").fork(|| 0).unwrap();
    let mut three = Process::new("three").fork(|| 3).unwrap();
    let mut panics = Process::new("panics")
        .fork(|| panic!("deliberate"))
        .unwrap();
    assert_eq!(ok.name(), "ok");
    assert!(!ok.is_daemon());
    assert_eq!(join(&mut ok), ExitStatus::Code(0));
    assert_eq!(join(&mut three), ExitStatus::Code(3));
    assert_eq!(three.exit_status(), Some(ExitStatus::Code(3)));
    assert_eq!(join(&mut panics), ExitStatus::Code(101));

    let mut sleeper = Process::new("sleeper")
        .fork(|| {
            std::thread::sleep(Duration::from_secs(60));
            0
        })
        .unwrap();
    assert!(sleeper.is_alive());
    assert_eq!(
        sleeper.join_timeout(Duration::from_millis(20)).unwrap(),
        None
    );
    assert_eq!(sleeper.exit_status(), None);
    sleeper.terminate().unwrap();
    assert_eq!(join(&mut sleeper), ExitStatus::Signal(libc::SIGTERM));
    assert!(!sleeper.is_alive());

    let mut killed = Process::new("killed")
        .daemon(true)
        .fork(|| {
            std::thread::sleep(Duration::from_secs(60));
            0
        })
        .unwrap();
    assert!(killed.is_daemon());
    killed.kill().unwrap();
    assert_eq!(join(&mut killed), ExitStatus::Signal(libc::SIGKILL));
}

#[test]
fn spawned_programs_have_names_and_statuses() {
    let mut t = Process::new("true")
        .daemon(true)
        .spawn(&mut Command::new("true"))
        .unwrap();
    assert_eq!(t.name(), "true");
    assert_eq!(join(&mut t), ExitStatus::Code(0));
    let mut f = Process::new("exit-4")
        .spawn(Command::new("sh").args(["-c", "exit 4"]))
        .unwrap();
    assert_eq!(join(&mut f), ExitStatus::Code(4));
    let mut s = Process::new("sleep")
        .daemon(true)
        .spawn(Command::new("sleep").arg("60"))
        .unwrap();
    assert!(s.is_alive());
    s.terminate().unwrap();
    assert_eq!(join(&mut s), ExitStatus::Signal(libc::SIGTERM));
}

fn pidfd(pid: u32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and touches no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Whether the process behind `fd` has exited, waiting at most `timeout`.
fn exited_within(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call.
    let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    r == 1
}

#[test]
fn a_daemon_dies_with_its_sigkilled_parent_and_a_non_daemon_survives() {
    // word: daemon pid | non-daemon pid << 32, written by the middle process.
    let pids = Shared::<AtomicU64>::anon(0).unwrap();
    let mut middle = fork(|| {
        let nap = || {
            std::thread::sleep(Duration::from_secs(60));
            0
        };
        let Ok(daemon) = Process::new("daemon").daemon(true).fork(nap) else {
            return 1;
        };
        let Ok(plain) = Process::new("plain").fork(nap) else {
            return 2;
        };
        pids.store(
            u64::from(daemon.pid()) | u64::from(plain.pid()) << 32,
            Ordering::SeqCst,
        );
        // Killed here, handles and all.
        std::thread::sleep(Duration::from_secs(60));
        0
    })
    .unwrap();
    assert!(
        eventually(CHILD_TIMEOUT, || pids.load(Ordering::SeqCst) != 0),
        "the middle process never reported its children"
    );
    let word = pids.load(Ordering::SeqCst);
    let (daemon_pid, plain_pid) = (word as u32, (word >> 32) as u32);
    let daemon = pidfd(daemon_pid);
    let plain = pidfd(plain_pid);
    assert!(!exited_within(&daemon, Duration::ZERO));

    middle.kill().unwrap();
    assert_eq!(common::join(&mut middle), ExitStatus::Signal(libc::SIGKILL));
    assert!(
        exited_within(&daemon, Duration::from_secs(10)),
        "daemon {daemon_pid} outlived its SIGKILLed parent"
    );
    assert!(
        !exited_within(&plain, Duration::from_millis(200)),
        "the non-daemon {plain_pid} died with its parent"
    );
    // Clean up the orphan, by its pidfd (no pid reuse race).
    // SAFETY: a valid pidfd, a signal number, no info pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            plain.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    assert_eq!(r, 0);
    assert!(exited_within(&plain, Duration::from_secs(10)));
}
