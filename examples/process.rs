//! Processes: a target with arguments and its exit code, terminate a
//! sleeper (is_alive before and after), current_process, active_children
//! and cpu_count, and a daemon child that ends with its parent (even one
//! killed by SIGKILL). Python's original: `examples/python/process.py`.
//!
//! `cargo run --release --example process`

use std::time::{Duration, Instant};

use shmipc::{active_children, cpu_count, current_process, BytesConfig, Process};
use shmipc::{TypedQueue, Unlinker};

fn work((name, sizes): (String, Vec<u32>)) {
    let me = current_process();
    println!("  [{} {}] {name}: {}", me.name(), me.pid(), sizes.iter().sum::<u32>());
    std::process::exit(3);
}

fn nap(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

fn parent(pids: String) {
    let daemon = Process::new("daemon").daemon(true).start(nap, 30).expect("start");
    TypedQueue::<u32>::open(&pids).expect("open").put(&daemon.pid()).expect("put");
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|s| s.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let worker = Process::new("worker").start(work, ("ada".to_owned(), vec![1, 2, 3]))?;
    worker.join()?;
    println!("1. {} (pid {}) exitcode {:?}", worker.name(), worker.pid(), worker.exitcode());
    let sleeper = Process::new("sleeper").start(nap, 60)?;
    let active: Vec<String> = active_children().iter().map(|c| c.name().to_owned()).collect();
    println!("2. {} is_alive: {}; active: {active:?}", sleeper.name(), sleeper.is_alive());
    sleeper.terminate()?;
    sleeper.join()?;
    let (alive_now, code) = (sleeper.is_alive(), sleeper.exitcode());
    println!("   after terminate: is_alive: {alive_now}, exitcode {code:?}");
    let names = Unlinker::new("example-process");
    let pids = TypedQueue::<u32>::create(&names.name("pids"), BytesConfig::for_max_message(8)?)?;
    let p = Process::new("parent").start(parent, pids.name().unwrap_or("").to_owned())?;
    let daemon = pids.get()?;
    p.join()?;
    let t = Instant::now();
    while alive(daemon) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(2)); // the kernel's SIGKILL, then the reaper
    }
    println!(
        "3. parent ended with {:?}; its daemon {daemon} alive: {}",
        p.exitcode(),
        alive(daemon)
    );
    println!("{} CPUs; this is {}", cpu_count(), current_process().name());
    assert!(!alive(daemon));
    Ok(())
}
