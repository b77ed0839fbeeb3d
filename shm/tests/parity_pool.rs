//! `Pool` across real worker processes: results, panics, a worker killed
//! mid-task, a large ordered map, terminate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{Named, Pool, Shared, TaskError};

const WAIT: Duration = Duration::from_secs(60);

fn num(v: &[u8]) -> u64 {
    u64::from_le_bytes(v.try_into().expect("8 bytes"))
}

fn task(cmd: u8, n: u64) -> Vec<u8> {
    let mut v = vec![cmd];
    v.extend_from_slice(&n.to_le_bytes());
    v
}

/// `d` doubles, `s` sleeps n ms then doubles, `p` panics, `h` records its
/// pid in `hung` and sleeps a minute.
fn worker(hung: Arc<Shared<AtomicU32>>) -> impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static {
    move |arg: &[u8]| {
        let n = num(&arg[1..]);
        match arg[0] {
            b'd' => (2 * n).to_le_bytes().to_vec(),
            b's' => {
                std::thread::sleep(Duration::from_millis(n));
                (2 * n).to_le_bytes().to_vec()
            }
            b'p' => panic!("task {n} panics on purpose"),
            b'h' => {
                hung.store(std::process::id(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(60));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

fn pool(n: usize) -> (Pool, Arc<Shared<AtomicU32>>) {
    let hung = Arc::new(Shared::<AtomicU32>::anon(0).unwrap());
    (Pool::new(n, worker(hung.clone())).unwrap(), hung)
}

#[test]
fn apply_apply_async_and_their_handles() {
    let (pool, _) = pool(2);
    assert_eq!(pool.processes(), 2);
    assert_eq!(pool.pids().len(), 2);
    assert_eq!(num(&pool.apply(&task(b'd', 21)).unwrap()), 42);

    let slow = pool.apply_async(&task(b's', 300)).unwrap();
    assert!(!slow.ready());
    assert_eq!(
        slow.get_timeout(Duration::from_millis(1)),
        Err(TaskError::Timeout)
    );
    assert!(slow.wait_timeout(WAIT));
    assert!(slow.ready());
    assert_eq!(slow.successful(), Some(true));
    assert_eq!(num(&slow.get().unwrap()), 600);
    // A result can be read again.
    assert_eq!(num(&slow.get_timeout(Duration::ZERO).unwrap()), 600);

    let many: Vec<_> = (0..20)
        .map(|i| pool.apply_async(&task(b'd', i)).unwrap())
        .collect();
    for (i, r) in many.iter().enumerate() {
        r.wait();
        assert_eq!(num(&r.get().unwrap()), 2 * i as u64);
    }
    pool.close();
    assert_eq!(
        pool.apply_async(&task(b'd', 1)).err(),
        Some(TaskError::Closed)
    );
    pool.join();
    assert!(pool.pids().is_empty());
}

#[test]
fn a_panicking_task_reports_an_error_and_the_worker_goes_on() {
    let (pool, _) = pool(1);
    let pid = pool.pids()[0];
    match pool.apply(&task(b'p', 7)) {
        Err(TaskError::Panicked(msg)) => assert!(msg.contains("task 7 panics"), "{msg}"),
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(num(&pool.apply(&task(b'd', 5)).unwrap()), 10);
    assert_eq!(pool.pids(), vec![pid], "the worker survived the panic");
    assert_eq!(pool.restarts(), 0);
    let too_big = vec![0u8; 64 * 1024 + 1];
    match pool.apply(&too_big) {
        Err(TaskError::TooLarge { len, max }) => {
            assert!(len >= too_big.len() && max < len, "{len} > {max}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(pool.apply_with(3, b"x"), Err(TaskError::NoSuchFunction(3)));
}

#[test]
fn the_pool_survives_kill_9_of_a_busy_worker() {
    let (pool, hung) = pool(3);
    let before = pool.pids();
    let doomed = pool.apply_async(&task(b'h', 0)).unwrap();
    let deadline = Instant::now() + WAIT;
    while hung.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the hanging task never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let victim = hung.load(Ordering::SeqCst);
    assert!(before.contains(&victim));
    let others: Vec<_> = (0..30)
        .map(|i| pool.apply_async(&task(b's', i % 5)).unwrap())
        .collect();
    // SAFETY: kill takes a pid and a signal; the victim is a live worker.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);

    match doomed.get_timeout(WAIT) {
        Err(TaskError::WorkerDied { pid, status }) => {
            assert_eq!(pid, victim);
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    for (i, r) in others.iter().enumerate() {
        assert_eq!(num(&r.get_timeout(WAIT).unwrap()), 2 * (i as u64 % 5));
    }
    let after = pool.pids();
    assert_eq!(after.len(), 3, "a replacement was started");
    assert!(!after.contains(&victim));
    assert_eq!(pool.restarts(), 1);
    assert_eq!(num(&pool.apply(&task(b'd', 4)).unwrap()), 8);
    pool.close();
    pool.join();
}

#[test]
fn map_over_ten_thousand_tasks_returns_every_result_in_order() {
    let (pool, _) = pool(3);
    let inputs: Vec<Vec<u8>> = (0..10_000).map(|i| task(b'd', i)).collect();
    let results = pool.map(&inputs).unwrap();
    assert_eq!(results.len(), 10_000);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(num(r), 2 * i as u64, "result {i}");
    }
    // Unordered: every index exactly once.
    let mut seen = vec![false; 500];
    for (i, r) in pool.imap_unordered((0..500).map(|i| task(b'd', i))) {
        assert!(!seen[i], "index {i} twice");
        seen[i] = true;
        assert_eq!(num(&r.unwrap()), 2 * i as u64);
    }
    assert!(seen.iter().all(|&s| s));
    // An error in a map is reported.
    let mixed = vec![task(b'd', 1), task(b'p', 2), task(b'd', 3)];
    match pool.map(&mixed) {
        Err(TaskError::Panicked(msg)) => assert!(msg.contains("task 2 panics"), "{msg}"),
        other => panic!("expected task 2's panic, got {other:?}"),
    }
}

#[test]
fn terminate_stops_workers_and_fails_unfinished_tasks() {
    let (pool, _) = pool(2);
    let pids = pool.pids();
    let long: Vec<_> = (0..4)
        .map(|_| pool.apply_async(&task(b's', 60_000)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    pool.terminate();
    assert!(t.elapsed() < Duration::from_secs(30));
    for r in &long {
        assert_eq!(r.get_timeout(WAIT), Err(TaskError::Terminated));
    }
    for pid in pids {
        // Reaped: the pid no longer names our child.
        // SAFETY: waitpid with WNOHANG on a pid; no memory.
        let r = unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
        assert_eq!(r, -1, "worker {pid} was not reaped");
    }
    assert_eq!(
        pool.apply_async(&task(b'd', 1)).err(),
        Some(TaskError::Closed)
    );
}
