//! A tour of shmipc: each scenario runs across real processes that meet in
//! named shared memory, and prints what happened.
//!
//! Run it with `cargo run --release --example tour`.
//!
//! The tour starts its helper processes two ways: by `fork` (the child
//! inherits nothing but the names it is told), and by starting this very
//! program again as a separate binary (`tour attach ...`) that finds the
//! objects by name, as an unrelated program would.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use shmipc::process::{self, Child};
use shmipc::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc::{
    Barrier, BytesConfig, Condition, DictConfig, Event, Lock, Named, Options, Pipe, Pool, PopError,
    Process, Queue, RecvError, RingConfig, Segment, Semaphore, SemaphoreConfig, Shared, SharedDict,
    TaskError, Unlinker, Value,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("attach") {
        return attach(&args[1..]);
    }
    match tour() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tour failed: {e}");
            ExitCode::FAILURE
        }
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn tour() -> Res<()> {
    println!("shmipc tour: processes meeting in named shared memory\n");
    let names = Unlinker::new("tour");
    counter_under_lock(&names)?;
    seats_with_semaphore(&names)?;
    event_gate(&names)?;
    queue_workers(&names)?;
    pipe_conversation()?;
    pool_survives_a_killed_worker()?;
    daemon_dies_with_parent()?;
    value_and_dict(&names)?;
    condition_and_barrier(&names)?;
    println!("\nEvery scenario ran across real processes; every segment is unlinked.");
    Ok(())
}

/// Ten processes decrement one shared number 1,000 times each, under a
/// named Lock — the shared `num.txt` of the seeds, without the file.
fn counter_under_lock(names: &Unlinker) -> Res<()> {
    println!("1. Ten processes decrement a shared counter under a named Lock");
    let lock_name = names.name("counter-lock");
    let num_name = names.name("counter-num");
    let _lock = Shared::<Lock>::create(&lock_name, ())?;
    let num = Shared::<AtomicU64>::create(&num_name, 10_000)?;
    println!("   start: {}", num.load(Ordering::SeqCst));

    let started = Instant::now();
    let mut children: Vec<Child> = Vec::new();
    // Five forked children and five separate programs that attach by name.
    for _ in 0..5 {
        let (lock_name, num_name) = (lock_name.clone(), num_name.clone());
        children.push(process::fork(move || {
            decrement(&lock_name, &num_name, 1_000).map_or(1, |()| 0)
        })?);
    }
    for _ in 0..5 {
        children.push(process::spawn(Command::new(std::env::current_exe()?).args([
            "attach",
            "decrement",
            &lock_name,
            &num_name,
            "1000",
        ]))?);
    }
    join_all(children)?;
    let end = num.load(Ordering::SeqCst);
    println!(
        "   end:   {end} after 10 x 1,000 decrements in {:.1?} ({})",
        started.elapsed(),
        if end == 0 { "exact" } else { "WRONG" }
    );
    if end != 0 {
        return Err(format!("counter ended at {end}, not 0").into());
    }
    Ok(())
}

/// Opens the lock and the number by name and decrements it `times` times,
/// reading and writing in two steps so that only the lock keeps it exact.
fn decrement(lock_name: &str, num_name: &str, times: u32) -> Res<()> {
    let lock = Shared::<Lock>::open(lock_name)?;
    let num = Shared::<AtomicU64>::open(num_name)?;
    for _ in 0..times {
        let _guard = lock.lock()?;
        let v = num.load(Ordering::Relaxed);
        num.store(v - 1, Ordering::Relaxed);
    }
    Ok(())
}

/// Three seats, ten diners: a named Semaphore(3) lets at most three
/// processes in at once.
fn seats_with_semaphore(names: &Unlinker) -> Res<()> {
    println!("\n2. Ten diners share three seats through a named Semaphore(3)");
    let sem_name = names.name("seats");
    let seated_name = names.name("seated");
    let peak_name = names.name("peak");
    let _seats = Shared::<Semaphore>::create(&sem_name, SemaphoreConfig { initial: 3, max: None })?;
    let _seated = Shared::<AtomicU32>::create(&seated_name, 0)?;
    let peak = Shared::<AtomicU32>::create(&peak_name, 0)?;

    let mut children = Vec::new();
    for diner in 0..10 {
        let (s, n, p) = (sem_name.clone(), seated_name.clone(), peak_name.clone());
        children.push(process::fork(move || dine(diner, &s, &n, &p).map_or(1, |()| 0))?);
    }
    join_all(children)?;
    let peak = peak.load(Ordering::SeqCst);
    println!("   at most {peak} diners were seated at once (3 seats)");
    if peak != 3 {
        return Err(format!("peak of {peak} seated diners, expected 3").into());
    }
    Ok(())
}

fn dine(diner: u32, sem_name: &str, seated_name: &str, peak_name: &str) -> Res<()> {
    let seats = Shared::<Semaphore>::open(sem_name)?;
    let seated = Shared::<AtomicU32>::open(seated_name)?;
    let peak = Shared::<AtomicU32>::open(peak_name)?;
    if !seats.acquire_timeout(Duration::from_secs(30)) {
        return Err("no seat within 30 s".into());
    }
    let now = seated.fetch_add(1, Ordering::SeqCst) + 1;
    peak.fetch_max(now, Ordering::SeqCst); // the most seated at once
    println!("   diner {diner} sits down ({now} seated)");
    std::thread::sleep(Duration::from_millis(30));
    seated.fetch_sub(1, Ordering::SeqCst);
    seats.release()?;
    Ok(())
}

/// Four processes wait at a gate (a named Event) until the parent opens it.
fn event_gate(names: &Unlinker) -> Res<()> {
    println!("\n3. Four processes wait at a named Event until the parent sets it");
    let gate_name = names.name("gate");
    let gate = Shared::<Event>::create(&gate_name, ())?;
    let mut children = Vec::new();
    for i in 0..4 {
        let name = gate_name.clone();
        children.push(process::fork(move || {
            let Ok(gate) = Shared::<Event>::open(&name) else {
                return 1;
            };
            let t = Instant::now();
            if gate.wait_timeout(Duration::from_secs(30)) {
                println!("   waiter {i} passed the gate after {:.0?}", t.elapsed());
                0
            } else {
                2
            }
        })?);
    }
    std::thread::sleep(Duration::from_millis(200));
    println!("   parent sets the event");
    gate.set();
    join_all(children)?;
    gate.clear();
    let t = Instant::now();
    let woke = gate.wait_timeout(Duration::from_millis(100));
    println!("   after clear, wait_timeout(100ms) returned {woke} after {:.0?}", t.elapsed());
    Ok(())
}

const WRITERS: u64 = 3;
const READERS: usize = 2;
const ITEMS_PER_WRITER: u64 = 100_000;

/// Three writers and two readers share one named Queue (the seeds'
/// `multiprocessing.Queue` scenario). Each reader marks what it gets in a
/// shared bitmap, so the parent can tell that every item came exactly once.
fn queue_workers(names: &Unlinker) -> Res<()> {
    println!("\n4. Three writers and two readers share a named Queue of 64 slots");
    let queue_name = names.name("queue");
    let bits_name = names.name("queue-bits");
    let stats_name = names.name("queue-stats");
    let queue = Queue::<u64>::create(&queue_name, RingConfig::new(64))?;
    let bits = Segment::create_with(
        &bits_name,
        (WRITERS * ITEMS_PER_WRITER).div_ceil(64) as usize * 8,
        &Options::new(),
    )?;
    // Per reader: items received; then duplicates seen.
    let stats = Segment::create_with(&stats_name, 8 * (READERS + 1), &Options::new())?;

    let started = Instant::now();
    let mut readers = Vec::new();
    // One reader is a forked child, the other a separate program.
    let (q, b, st) = (queue_name.clone(), bits_name.clone(), stats_name.clone());
    readers.push(process::fork(move || read_queue(&q, &b, &st, 0).map_or(1, |()| 0))?);
    readers.push(process::spawn(Command::new(std::env::current_exe()?).args([
        "attach",
        "read-queue",
        &queue_name,
        &bits_name,
        &stats_name,
        "1",
    ]))?);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let q = queue_name.clone();
        writers.push(process::fork(move || {
            let Ok(queue) = Queue::<u64>::open(&q) else {
                return 1;
            };
            for i in 0..ITEMS_PER_WRITER {
                if queue.push(w << 32 | i).is_err() {
                    return 2;
                }
            }
            0
        })?);
    }
    join_all(writers)?;
    // Everything is in: the readers drain the rest, then see the writers
    // gone (end-of-stream) or the close.
    queue.close();
    join_all(readers)?;

    let counts: Vec<u64> = (0..READERS).map(|r| word(&stats, r).load(Ordering::SeqCst)).collect();
    let duplicates = word(&stats, READERS).load(Ordering::SeqCst);
    let distinct: u64 = (0..bits.len() / 8)
        .map(|k| u64::from(word(&bits, k).load(Ordering::SeqCst).count_ones()))
        .sum();
    for (r, n) in counts.iter().enumerate() {
        println!("   reader {r} got {n} items");
    }
    let total = WRITERS * ITEMS_PER_WRITER;
    let exact = distinct == total && duplicates == 0 && counts.iter().sum::<u64>() == total;
    println!(
        "   {total} items in {:.1?}: {}",
        started.elapsed(),
        if exact { "every item exactly once" } else { "ITEMS LOST OR DUPLICATED" }
    );
    if !exact {
        return Err(format!("{distinct} distinct items, {duplicates} duplicates").into());
    }
    Ok(())
}

/// Word `k` of a segment's payload, as an atomic.
fn word(seg: &Segment, k: usize) -> &AtomicU64 {
    assert!(k < seg.len() / 8);
    // SAFETY: the payload is 128-byte aligned and holds word k (asserted),
    // it stays mapped while `seg` (which the result borrows) lives, and the
    // tour accesses these words only atomically.
    unsafe { &*seg.as_ptr().cast::<AtomicU64>().add(k) }
}

/// A reader: pops until the queue is closed and drained, marking each item.
fn read_queue(queue: &str, bits: &str, stats: &str, reader: usize) -> Res<()> {
    let queue = Queue::<u64>::open(queue)?;
    let bits = Segment::open_with(bits, &Options::new())?;
    let stats = Segment::open_with(stats, &Options::new())?;
    let mut got = 0;
    loop {
        match queue.pop() {
            Ok(v) => {
                let bit = (v >> 32) * ITEMS_PER_WRITER + (v & 0xffff_ffff);
                let mask = 1u64 << (bit % 64);
                if word(&bits, (bit / 64) as usize).fetch_or(mask, Ordering::Relaxed) & mask != 0 {
                    word(&stats, READERS).fetch_add(1, Ordering::Relaxed);
                }
                got += 1;
            }
            Err(PopError::Closed | PopError::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    word(&stats, reader).store(got, Ordering::SeqCst);
    Ok(())
}

/// A parent and the child it forks talk through a Pipe (Python's `Pipe()`).
fn pipe_conversation() -> Res<()> {
    println!("\n5. A parent and its child talk through a Pipe");
    let (parent, child_end) = Pipe::anon(BytesConfig::for_max_message(1024)?)?;
    let child = process::fork(move || {
        let me = child_end;
        loop {
            match me.recv_vec_timeout(Duration::from_secs(30)) {
                Ok(question) => {
                    let q = String::from_utf8_lossy(&question);
                    let answer = match q.split_once(" x ") {
                        Some((a, b)) => match (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                            (Ok(a), Ok(b)) => format!("{}", a * b),
                            _ => "I cannot multiply that".to_owned(),
                        },
                        None => format!("you said {q:?}"),
                    };
                    if me.send(answer.as_bytes()).is_err() {
                        return 1;
                    }
                }
                Err(RecvError::Closed) => {
                    println!("   child:  the pipe is closed; goodbye");
                    return 0;
                }
                Err(_) => return 2,
            }
        }
    })?;
    for question in ["6 x 7", "12 x 12", "hello", "1234 x 5678"] {
        parent.send(question.as_bytes())?;
        let answer = parent.recv_vec_timeout(Duration::from_secs(30))?;
        println!("   parent: {question:<12} child: {}", String::from_utf8_lossy(&answer));
    }
    let rounds = 10_000;
    let t_rounds = Instant::now();
    let mut buf = [0u8; 64];
    for i in 0..rounds {
        parent.send(format!("{i} x 2").as_bytes())?;
        let n = parent.recv_into_timeout(&mut buf, Duration::from_secs(30))?;
        if buf[..n] != *format!("{}", i * 2).as_bytes() {
            return Err(format!("wrong answer to {i} x 2").into());
        }
    }
    println!(
        "   then {rounds} more questions and answers in {:.1?} ({:.1?} per round trip)",
        t_rounds.elapsed(),
        t_rounds.elapsed() / rounds
    );
    parent.close();
    join_all(vec![child])?;
    Ok(())
}

/// A Pool of three: results of apply_async, then a worker killed in the
/// middle of a task — its task fails, a replacement starts, the rest finish.
fn pool_survives_a_killed_worker() -> Res<()> {
    println!("\n6. A Pool of three workers; one is killed (SIGKILL) in the middle of a task");
    let hung = std::sync::Arc::new(Shared::<AtomicU32>::anon(0)?);
    let hung_in_worker = hung.clone();
    let pool = Pool::new(3, move |arg: &[u8]| {
        if arg == b"hang" {
            hung_in_worker.store(std::process::id(), Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(30));
        }
        arg.iter().rev().copied().collect()
    })?;
    println!("   workers {:?}", pool.pids());
    let doomed = pool.apply_async(b"hang")?;
    let words: Vec<_> = ["stressed", "drawer", "live", "reward", "diaper"]
        .iter()
        .map(|w| pool.apply_async(w.as_bytes()))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    while hung.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let victim = hung.load(Ordering::SeqCst);
    // SAFETY: kill takes a pid and a signal number; `victim` is a live worker.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    match doomed.get_timeout(Duration::from_secs(30)) {
        Err(e @ TaskError::WorkerDied { .. }) => println!("   the hanging task: {e}"),
        other => return Err(format!("expected WorkerDied, got {other:?}").into()),
    }
    for r in &words {
        let w = r.get_timeout(Duration::from_secs(30))?;
        print!("   {}", String::from_utf8_lossy(&w));
    }
    println!();
    println!("   the others finished; workers now {:?} ({} restart)", pool.pids(), pool.restarts());
    pool.close();
    pool.join();
    Ok(())
}

/// A daemon child dies with its parent, even when the parent is SIGKILLed.
fn daemon_dies_with_parent() -> Res<()> {
    println!("\n7. A daemon child dies with its SIGKILLed parent");
    let pid = Shared::<AtomicU32>::anon(0)?;
    let parent = Process::new("parent").fork(|| {
        let Ok(d) = Process::new("daemon").daemon(true).fork(|| {
            std::thread::sleep(Duration::from_secs(30));
            0
        }) else {
            return 1;
        };
        pid.store(d.pid(), Ordering::SeqCst);
        std::thread::sleep(Duration::from_secs(30));
        0
    })?;
    let t = Instant::now();
    while pid.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let daemon = pid.load(Ordering::SeqCst);
    parent.kill()?;
    parent.join_timeout(Duration::from_secs(30))?;
    let t = Instant::now();
    let gone = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.is_empty() || stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z'))
    };
    while !gone(daemon) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    if !gone(daemon) {
        return Err(format!("daemon {daemon} outlived its parent").into());
    }
    println!(
        "   parent {} killed; its daemon {daemon} was gone {:.0?} later",
        parent.pid(),
        t.elapsed()
    );
    Ok(())
}

/// Five processes update a Value and a SharedDict by read-modify-write.
fn value_and_dict(names: &Unlinker) -> Res<()> {
    println!("\n8. Five processes update a shared Value<u64> and a SharedDict");
    let value_name = names.name("value");
    let dict_name = names.name("dict");
    let total = Value::<u64>::create(&value_name, 0)?;
    let dict = SharedDict::create(&dict_name, DictConfig::new(32, 16, 8))?;
    let mut children = Vec::new();
    for p in 0..5u64 {
        let (v, d) = (value_name.clone(), dict_name.clone());
        children.push(process::fork(move || {
            let (Ok(v), Ok(d)) = (Value::<u64>::open(&v), SharedDict::open(&d)) else {
                return 1;
            };
            for i in 0..200u64 {
                let key = format!("key-{}", i % 4);
                let ok = v.update(|n| *n += 1).is_ok()
                    && d.update(key.as_bytes(), |old| {
                        let n =
                            old.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
                        (n + p).to_le_bytes().to_vec()
                    })
                    .is_ok();
                if !ok {
                    return 2;
                }
            }
            0
        })?);
    }
    join_all(children)?;
    let mut sum = 0;
    for (k, v) in dict.items()? {
        let n = u64::from_le_bytes(v.as_slice().try_into()?);
        sum += n;
        println!("   {} = {n}", String::from_utf8_lossy(&k));
    }
    let count = total.get()?;
    println!("   the Value counted {count} updates (1000 expected), the dict sums to {sum} (2000 expected)");
    if count != 1000 || sum != 2000 {
        return Err("an update was lost".into());
    }
    Ok(())
}

/// Four processes meet at a Barrier three times; then a Condition hands
/// a value from the parent to a waiting child.
fn condition_and_barrier(names: &Unlinker) -> Res<()> {
    println!("\n9. Four processes meet at a Barrier, three rounds; a Condition wakes a waiter");
    let barrier_name = names.name("barrier");
    let barrier = Shared::<Barrier>::create(&barrier_name, 4)?;
    let mut children = Vec::new();
    for p in 1..4 {
        let name = barrier_name.clone();
        children.push(process::fork(move || {
            let Ok(b) = Shared::<Barrier>::open(&name) else {
                return 1;
            };
            for round in 0..3 {
                std::thread::sleep(Duration::from_millis(10 * p));
                match b.wait_timeout(Duration::from_secs(30)) {
                    Ok(true) => println!("   round {round}: process {p} arrived last (the leader)"),
                    Ok(false) => {}
                    Err(_) => return 2,
                }
            }
            0
        })?);
    }
    for round in 0..3 {
        if barrier.wait_timeout(Duration::from_secs(30))? {
            println!("   round {round}: the parent arrived last (the leader)");
        }
    }
    join_all(children)?;
    let t = Instant::now();
    let broken = barrier.wait_timeout(Duration::from_millis(50));
    println!(
        "   alone at the barrier: {broken:?} after {:.0?}; now broken: {}",
        t.elapsed(),
        barrier.is_broken()
    );

    let cond = Shared::<Condition>::anon(())?;
    let answer = Shared::<AtomicU32>::anon(0)?;
    let child = process::fork(|| {
        let Ok(guard) = cond.lock() else {
            return 1;
        };
        let Ok(guard) = guard.wait_while(|| answer.load(Ordering::SeqCst) == 0) else {
            return 2;
        };
        drop(guard);
        println!("   child: woken with the answer {}", answer.load(Ordering::SeqCst));
        0
    })?;
    std::thread::sleep(Duration::from_millis(50));
    {
        let _guard = cond.lock()?;
        answer.store(42, Ordering::SeqCst);
        cond.notify_all();
    }
    join_all(vec![child])?;
    Ok(())
}

fn join_all(children: Vec<Child>) -> Res<()> {
    for mut child in children {
        let pid = child.pid();
        match child.join_timeout(Duration::from_secs(60))? {
            Some(status) if status.success() => {}
            Some(status) => return Err(format!("process {pid} ended with {status}").into()),
            None => return Err(format!("process {pid} did not finish within 60 s").into()),
        }
    }
    Ok(())
}

/// The tour started again as a separate program: attach by name and work.
fn attach(args: &[String]) -> ExitCode {
    let result = match args {
        [what, lock, num, times] if what == "decrement" => times
            .parse()
            .map_err(|e| format!("bad count {times}: {e}").into())
            .and_then(|t| decrement(lock, num, t)),
        [what, queue, bits, stats, reader] if what == "read-queue" => reader
            .parse()
            .map_err(|e| format!("bad reader {reader}: {e}").into())
            .and_then(|r| read_queue(queue, bits, stats, r)),
        _ => Err(format!("unknown attach command {args:?}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tour attach: {e}");
            ExitCode::FAILURE
        }
    }
}
