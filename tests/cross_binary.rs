//! Separate programs attaching by name: the test creates the objects, and
//! `shmipc-peer` processes (started with exec, sharing no memory with the
//! test) open them by name and use them. Some scenarios mix in forked
//! children as well.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmipc::process::{self, Child, ExitStatus};
use shmipc::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc::{
    BytesConfig, Event, Lock, Named, Pipe, Semaphore, SemaphoreConfig, Shared, TypedPipe,
    TypedQueue, Unlinker,
};

const PEER: &str = env!("CARGO_BIN_EXE_shmipc-peer");

fn peer(args: &[&str]) -> Child {
    process::spawn(Command::new(PEER).args(args)).expect("start shmipc-peer")
}

fn finish(mut child: Child) -> ExitStatus {
    let pid = child.pid();
    child
        .join_timeout(Duration::from_secs(60))
        .expect("wait for child")
        .unwrap_or_else(|| panic!("process {pid} still running after 60 s"))
}

#[test]
fn ten_programs_decrement_a_counter_under_a_named_lock() {
    let names = Unlinker::new("xbin-counter");
    let (lock_name, num_name) = (names.name("lock"), names.name("num"));
    let _lock = Shared::<Lock>::create(&lock_name, ()).unwrap();
    let num = Shared::<AtomicU64>::create(&num_name, 10_000).unwrap();
    let peers: Vec<_> = (0..10)
        .map(|_| peer(&["decrement", &lock_name, &num_name, "1000"]))
        .collect();
    for p in peers {
        assert_eq!(finish(p), ExitStatus::Code(0));
    }
    assert_eq!(num.load(Ordering::SeqCst), 0);
}

#[test]
fn forked_children_and_programs_share_one_lock() {
    let names = Unlinker::new("xbin-mixed");
    let (lock_name, num_name) = (names.name("lock"), names.name("num"));
    let lock = Shared::<Lock>::create(&lock_name, ()).unwrap();
    let num = Shared::<AtomicU64>::create(&num_name, 1_000_000).unwrap();
    let mut children = Vec::new();
    for _ in 0..3 {
        children.push(peer(&["decrement", &lock_name, &num_name, "2000"]));
        let (l, n) = (lock_name.clone(), num_name.clone());
        children.push(
            process::fork(move || {
                let lock = Shared::<Lock>::open(&l).unwrap();
                let num = Shared::<AtomicU64>::open(&n).unwrap();
                for _ in 0..2000 {
                    let _g = lock.lock().unwrap();
                    let v = num.load(Ordering::Relaxed);
                    num.store(v + 1, Ordering::Relaxed);
                }
                0
            })
            .unwrap(),
        );
    }
    // The test process joins in too.
    for _ in 0..2000 {
        let _g = lock.lock().unwrap();
        let v = num.load(Ordering::Relaxed);
        num.store(v + 1, Ordering::Relaxed);
    }
    for c in children {
        assert_eq!(finish(c), ExitStatus::Code(0));
    }
    // 3 programs -2000 each, 3 forks and this process +2000 each.
    assert_eq!(num.load(Ordering::SeqCst), 1_002_000);
}

#[test]
fn ten_programs_share_three_seats() {
    let names = Unlinker::new("xbin-seats");
    let (sem, seated, peak) = (names.name("sem"), names.name("seated"), names.name("peak"));
    let seats = Shared::<Semaphore>::create(
        &sem,
        SemaphoreConfig {
            initial: 3,
            max: None,
        },
    )
    .unwrap();
    let _seated = Shared::<AtomicU32>::create(&seated, 0).unwrap();
    let peak_v = Shared::<AtomicU32>::create(&peak, 0).unwrap();
    let peers: Vec<_> = (0..10)
        .map(|_| peer(&["seat", &sem, &seated, &peak, "50"]))
        .collect();
    for p in peers {
        assert_eq!(finish(p), ExitStatus::Code(0));
    }
    assert_eq!(
        peak_v.load(Ordering::SeqCst),
        3,
        "peak of concurrent holders"
    );
    assert_eq!(seats.value(), 3, "every seat was given back");
}

#[test]
fn programs_blocked_on_an_event_all_wake_on_set() {
    let names = Unlinker::new("xbin-event");
    let name = names.name("gate");
    let gate = Shared::<Event>::create(&name, ()).unwrap();
    let mut peers: Vec<_> = (0..4).map(|_| peer(&["wait", &name, "30000"])).collect();
    std::thread::sleep(Duration::from_millis(100));
    for p in &mut peers {
        assert!(p.is_alive(), "a waiter returned before the event was set");
    }
    gate.set();
    for p in peers {
        assert_eq!(finish(p), ExitStatus::Code(0));
    }
}

#[test]
fn a_program_waiting_on_an_unset_event_times_out() {
    let names = Unlinker::new("xbin-event-timeout");
    let name = names.name("gate");
    let _gate = Shared::<Event>::create(&name, ()).unwrap();
    let t = Instant::now();
    let status = finish(peer(&["wait", &name, "300"]));
    assert_eq!(
        status,
        ExitStatus::Code(3),
        "wait_timeout should report false"
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
}

fn open_error(kind: &str, name: &str) -> String {
    let out = Command::new(PEER)
        .args(["open", kind, name])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "opening should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_program_gets_clear_errors_for_missing_and_wrong_objects() {
    let names = Unlinker::new("xbin-errors");
    let missing = names.name("missing");
    let msg = open_error("lock", &missing);
    assert!(
        msg.contains("not found") || msg.contains("does not exist"),
        "{msg}"
    );
    assert!(msg.contains(&missing), "{msg}");

    let lock_name = names.name("lock");
    let _lock = Shared::<Lock>::create(&lock_name, ()).unwrap();
    let msg = open_error("event", &lock_name);
    assert!(msg.to_lowercase().contains("lock"), "{msg}");
    assert!(msg.to_lowercase().contains("event"), "{msg}");
}

/// Message `i` of the ping-pong: its number, then bytes derived from it,
/// of a size that varies from 4 bytes to the pipe's maximum.
fn ping(i: u32, max: usize) -> Vec<u8> {
    let len = match i % 4 {
        0 => 4,
        1 => max,
        _ => 4 + (i as usize).wrapping_mul(2_654_435_761) % (max - 3),
    };
    let mut m = vec![0u8; len];
    m[..4].copy_from_slice(&i.to_le_bytes());
    for (k, b) in m.iter_mut().enumerate().skip(4) {
        *b = (k as u32 ^ i.rotate_left(k as u32 % 32)) as u8;
    }
    m
}

#[test]
fn a_pipe_ping_pong_with_a_separate_program() {
    let names = Unlinker::new("xbin-pipe");
    let name = names.name("pipe");
    let max = 16 * 1024;
    let rounds: u32 = 10_000;
    let a = Pipe::create(&name, BytesConfig::for_max_message(max).unwrap()).unwrap();
    let echo = peer(&["pipe-echo", &name, &rounds.to_string()]);
    let started = Instant::now();
    let mut buf = vec![0u8; max];
    for i in 0..rounds {
        let m = ping(i, max);
        a.send_timeout(&m, Duration::from_secs(30)).unwrap();
        let n = a
            .recv_into_timeout(&mut buf, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("echo {i}: {e}"));
        assert!(buf[..n] == m[..], "echo {i} differs");
    }
    let elapsed = started.elapsed();
    // While the peer holds end B, nobody else gets it.
    assert!(matches!(
        Pipe::open(&name),
        Err(shmipc::Error::RoleTaken { pid, .. }) if pid != std::process::id()
    ));
    a.close();
    assert_eq!(finish(echo), ExitStatus::Code(0), "the peer saw the close");
    eprintln!("{rounds} round trips with a separate program in {elapsed:.2?}");
}

#[test]
fn typed_records_cross_to_a_separate_program_and_back() {
    let names = Unlinker::new("xbin-typed");
    let name = names.name("pipe");
    type Record = (u64, String, Vec<u32>);
    let a =
        TypedPipe::<Record>::create(&name, BytesConfig::for_max_message(4096).unwrap()).unwrap();
    let echo = peer(&["typed-echo", &name]);
    for id in 0..200u64 {
        let nums: Vec<u32> = (0..(id % 50) as u32).collect();
        let text = format!("record {id} ünïcode");
        a.send_timeout(&(id, text.clone(), nums.clone()), Duration::from_secs(30))
            .unwrap();
        let (got_id, upper, sum) = a.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(got_id, id);
        assert_eq!(upper, text.to_uppercase());
        assert_eq!(sum, vec![nums.iter().sum::<u32>()]);
    }
    a.close();
    assert_eq!(finish(echo), ExitStatus::Code(0));

    // A program that asks for another type gets a clear error naming both
    // types: this one by name, the recorded one by what that program knows
    // (it has never seen the tuple type, so its hash).
    let q = names.name("queue");
    let _q = TypedQueue::<Record>::create(&q, BytesConfig::for_max_message(64).unwrap()).unwrap();
    let out = Command::new(PEER)
        .args(["typed-open-u64", &q])
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "opening as u64 should fail");
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains(&q), "{msg}");
    assert!(msg.contains("not u64"), "{msg}");
    assert!(msg.contains("name hash 0x"), "{msg}");
}
