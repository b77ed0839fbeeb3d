//! fork / spawn / Child.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::join;
use shmipc::{fork, spawn, ExitStatus, Named};

#[test]
fn exit_codes_come_back() {
    let mut ok = fork(|| 0).unwrap();
    let mut seven = fork(|| 7).unwrap();
    assert_ne!(ok.pid(), seven.pid());
    assert_eq!(join(&mut ok), ExitStatus::Code(0));
    assert!(ok.status().unwrap().success());
    assert_eq!(join(&mut seven), ExitStatus::Code(7));
    assert!(!ExitStatus::Code(7).success());
    // Joining again gives the same status.
    assert_eq!(seven.join().unwrap(), ExitStatus::Code(7));
    assert_eq!(
        seven.join_timeout(Duration::ZERO).unwrap(),
        Some(ExitStatus::Code(7))
    );
}

#[test]
fn a_panic_exits_101() {
    let mut child = fork(|| panic!("deliberate panic in a forked child")).unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(101));
}

#[test]
fn kill_and_terminate_report_their_signals() {
    let mut killed = common::fork_sleeper(Duration::from_secs(60), 0);
    let mut terminated = common::fork_sleeper(Duration::from_secs(60), 0);
    killed.kill().unwrap();
    terminated.terminate().unwrap();
    let k = join(&mut killed);
    let t = join(&mut terminated);
    assert_eq!(k, ExitStatus::Signal(9));
    assert_eq!(t, ExitStatus::Signal(15));
    assert_eq!(k.to_string(), "killed by signal 9 (SIGKILL)");
    assert_eq!(t.signal(), Some(libc::SIGTERM));
    assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
    // Once reaped, signals are not sent (the pid may be someone else's).
    killed.kill().unwrap();
}

#[test]
fn join_timeout_and_is_alive_on_a_sleeping_child() {
    let mut child = common::fork_sleeper(Duration::from_secs(60), 0);
    assert!(child.is_alive());
    assert_eq!(child.status(), None);
    let start = Instant::now();
    assert_eq!(
        child.join_timeout(Duration::from_millis(100)).unwrap(),
        None
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(child.is_alive());
    child.kill().unwrap();
    assert!(common::eventually(Duration::from_secs(30), || !child.is_alive()));
    assert_eq!(child.status(), Some(ExitStatus::Signal(9)));
}

#[test]
fn join_timeout_returns_as_soon_as_the_child_exits() {
    let mut child = common::fork_sleeper(Duration::from_millis(50), 4);
    let start = Instant::now();
    let status = child.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(status, Some(ExitStatus::Code(4)));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn spawned_commands() {
    let mut three = spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap();
    assert_eq!(join(&mut three), ExitStatus::Code(3));
    let mut sleeper = spawn(Command::new("sleep").arg("60")).unwrap();
    assert!(sleeper.is_alive());
    sleeper.terminate().unwrap();
    assert_eq!(join(&mut sleeper), ExitStatus::Signal(15));
    let missing = spawn(&mut Command::new("/nonexistent/shmipc-no-such-program"));
    assert_eq!(
        missing.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::NotFound)
    );
}

/// Whether `pid` is still our unreaped child.
fn is_unreaped_child(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: WNOHANG waitpid on one pid; `status` is writable.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    r == 0
}

#[test]
fn dropping_a_running_child_kills_and_reaps_it() {
    let child = common::fork_sleeper(Duration::from_secs(60), 0);
    let pid = child.pid();
    assert!(is_unreaped_child(pid));
    let start = Instant::now();
    drop(child);
    assert!(start.elapsed() < Duration::from_secs(10));
    // Reaped: no longer our child at all.
    let mut status = 0;
    // SAFETY: as above.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ECHILD)
    );
}

#[test]
fn a_detached_child_runs_on() {
    let child = common::fork_sleeper(Duration::from_millis(100), 5);
    let pid = child.detach();
    // Not killed by the handle's drop: it exits on its own, with its code.
    let mut status = 0;
    // SAFETY: blocking waitpid on our own (detached) child.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    assert_eq!(r, pid as libc::pid_t);
    assert!(libc::WIFEXITED(status));
    assert_eq!(libc::WEXITSTATUS(status), 5);
}

/// Address of a shared counter that `count_exit` bumps (0: none).
static EXIT_COUNTER: shmipc_core::sync::AtomicUsize = shmipc_core::sync::AtomicUsize::new(0);

extern "C" fn count_exit() {
    let p = EXIT_COUNTER.load(std::sync::atomic::Ordering::SeqCst);
    if p != 0 {
        // SAFETY: `p` is the address of a live Shared<AtomicU32> while it is
        // non-zero (the test resets it before dropping the mapping).
        unsafe { &*(p as *const shmipc::AtomicU32) }
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_child_runs_neither_atexit_handlers_nor_the_parents_destructors() {
    use std::sync::atomic::Ordering::SeqCst;
    struct Loud<'a>(&'a shmipc::AtomicU32);
    impl Drop for Loud<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let exits = shmipc::Shared::<shmipc::AtomicU32>::anon(0).unwrap();
    let drops = shmipc::Shared::<shmipc::AtomicU32>::anon(0).unwrap();
    EXIT_COUNTER.store(&*exits as *const shmipc::AtomicU32 as usize, SeqCst);
    // SAFETY: registers a plain extern "C" function.
    assert_eq!(unsafe { libc::atexit(count_exit) }, 0);
    let witness = Loud(&drops);

    let mut quiet = fork(|| 0).unwrap();
    assert_eq!(join(&mut quiet), ExitStatus::Code(0));
    let mut panicking = fork(|| panic!("deliberate")).unwrap();
    assert_eq!(join(&mut panicking), ExitStatus::Code(101));
    assert_eq!(exits.load(SeqCst), 0, "a forked child ran atexit handlers");
    assert_eq!(
        drops.load(SeqCst),
        0,
        "a forked child dropped the parent's value"
    );

    // The counter does see a child that exits the ordinary way.
    let mut ordinary = fork(|| {
        // SAFETY: ends the child through libc's exit, running atexit.
        unsafe { libc::exit(0) }
    })
    .unwrap();
    assert_eq!(join(&mut ordinary), ExitStatus::Code(0));
    assert_eq!(exits.load(SeqCst), 1);

    EXIT_COUNTER.store(0, SeqCst);
    drop(witness);
    assert_eq!(drops.load(SeqCst), 1);
}
