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
    BytesConfig, Event, Lock, Options, Pipe, PopError, Queue, RecvError, RingConfig, Segment,
    Semaphore, SemaphoreConfig, Shared, Unlinker,
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
        children.push(process::spawn(
            Command::new(std::env::current_exe()?).args([
                "attach",
                "decrement",
                &lock_name,
                &num_name,
                "1000",
            ]),
        )?);
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
    let _seats = Shared::<Semaphore>::create(
        &sem_name,
        SemaphoreConfig {
            initial: 3,
            max: None,
        },
    )?;
    let _seated = Shared::<AtomicU32>::create(&seated_name, 0)?;
    let peak = Shared::<AtomicU32>::create(&peak_name, 0)?;

    let mut children = Vec::new();
    for diner in 0..10 {
        let (s, n, p) = (sem_name.clone(), seated_name.clone(), peak_name.clone());
        children.push(process::fork(move || {
            dine(diner, &s, &n, &p).map_or(1, |()| 0)
        })?);
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
    let mut seen = peak.load(Ordering::SeqCst);
    while now > seen {
        match peak.compare_exchange(seen, now, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => break,
            Err(p) => seen = p,
        }
    }
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
    println!(
        "   after clear, wait_timeout(100ms) returned {woke} after {:.0?}",
        t.elapsed()
    );
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
    let bits = Segment::create(
        &bits_name,
        (WRITERS * ITEMS_PER_WRITER).div_ceil(64) as usize * 8,
        &Options::new(),
    )?;
    // Per reader: items received; then duplicates seen.
    let stats = Segment::create(&stats_name, 8 * (READERS + 1), &Options::new())?;

    let started = Instant::now();
    let mut readers = Vec::new();
    // One reader is a forked child, the other a separate program.
    let (q, b, st) = (queue_name.clone(), bits_name.clone(), stats_name.clone());
    readers.push(process::fork(move || {
        read_queue(&q, &b, &st, 0).map_or(1, |()| 0)
    })?);
    readers.push(process::spawn(
        Command::new(std::env::current_exe()?).args([
            "attach",
            "read-queue",
            &queue_name,
            &bits_name,
            &stats_name,
            "1",
        ]),
    )?);
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
    // Everything is in: the readers drain the rest, then see the close.
    queue.close();
    join_all(readers)?;

    let counts: Vec<u64> = (0..READERS)
        .map(|r| word(&stats, r).load(Ordering::SeqCst))
        .collect();
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
        if exact {
            "every item exactly once"
        } else {
            "ITEMS LOST OR DUPLICATED"
        }
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
    let bits = Segment::open(bits, &Options::new())?;
    let stats = Segment::open(stats, &Options::new())?;
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
            Err(PopError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    word(&stats, reader).store(got, Ordering::SeqCst);
    Ok(())
}

/// A parent and the child it forks talk through a Pipe (Python's `Pipe()`).
fn pipe_conversation() -> Res<()> {
    println!("\n5. A parent and its child talk through a Pipe");
    let (parent, child_end) = Pipe::anon(BytesConfig::for_max_message(1024).ok_or("config")?)?;
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
        println!(
            "   parent: {question:<12} child: {}",
            String::from_utf8_lossy(&answer)
        );
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
