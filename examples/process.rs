//! Processes: join an exit code, terminate a sleeper (is_alive before and
//! after), and a daemon child that dies with its SIGKILLed parent while a
//! non-daemon sibling lives on.
//!
//! `cargo run --release --example process`

use std::time::{Duration, Instant};

use shmipc::sync::{AtomicU64, Ordering};
use shmipc::{Named, Process, Shared};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn alive(pid: u32) -> bool {
    // A zombie still "exists"; ask /proc for its state too.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

fn main() -> Res<()> {
    let wait = Duration::from_secs(30);

    let mut worker = Process::new("worker").fork(|| {
        println!("  [worker {}] working, then exiting with 3", std::process::id());
        3
    })?;
    let status = worker.join_timeout(wait)?.ok_or("worker hangs")?;
    println!("1. {} (pid {}) ended: {status}", worker.name(), worker.pid());

    let mut sleeper = Process::new("sleeper").fork(|| {
        std::thread::sleep(Duration::from_secs(60));
        0
    })?;
    let alive_now = sleeper.is_alive();
    println!("2. {} is_alive: {alive_now}", sleeper.name());
    sleeper.terminate()?;
    let status = sleeper.join_timeout(wait)?.ok_or("sleeper ignores SIGTERM")?;
    println!("   after terminate: is_alive: {}, {status}", sleeper.is_alive());

    // A parent that starts a daemon and a plain child, then is SIGKILLed.
    let pids = Shared::<AtomicU64>::anon(0)?;
    let mut parent = Process::new("parent").fork(|| {
        let nap = || {
            std::thread::sleep(Duration::from_secs(30));
            0
        };
        let (Ok(daemon), Ok(plain)) =
            (Process::new("daemon").daemon(true).fork(nap), Process::new("plain").fork(nap))
        else {
            return 1;
        };
        pids.store(u64::from(daemon.pid()) | u64::from(plain.pid()) << 32, Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(30));
        0
    })?;
    let t = Instant::now();
    while pids.load(Ordering::SeqCst) == 0 {
        if t.elapsed() > wait {
            return Err("the parent never started its children".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let word = pids.load(Ordering::SeqCst);
    let (daemon, plain) = (word as u32, (word >> 32) as u32);
    println!("3. parent {} started daemon {daemon} and plain child {plain}", parent.pid());
    parent.kill()?;
    let status = parent.join_timeout(wait)?.ok_or("parent survived SIGKILL")?;
    let t = Instant::now();
    while alive(daemon) && t.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(2));
    }
    println!(
        "   parent {status}; daemon alive: {} (gone after {:.0?}), plain child alive: {}",
        alive(daemon),
        t.elapsed(),
        alive(plain)
    );
    let (daemon_alive, plain_alive) = (alive(daemon), alive(plain));
    // Clean up the orphan. It is no longer our child, but it cannot have
    // been reaped and its pid reused: we checked it alive just now.
    // SAFETY: kill takes a pid and a signal number.
    unsafe { libc::kill(plain as i32, libc::SIGKILL) };
    if daemon_alive || !plain_alive {
        return Err("the daemon outlived its parent, or the plain child did not".into());
    }
    Ok(())
}
