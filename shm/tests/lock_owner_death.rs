//! A process that dies holding a Lock: SIGKILL at a moment the test chooses,
//! with processes waiting and with none, then recovery and repair.

mod common;

use std::time::{Duration, Instant};

use common::join;
use shmipc::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc::{fork, Child, ExitStatus, Lock, LockError, Named, Shared, Unlinker};

/// The state the lock protects: `a` and `b` are equal whenever the lock is
/// free. A holder that dies between its two writes leaves them unequal.
struct Pair {
    lock: Shared<Lock>,
    a: Shared<AtomicU64>,
    b: Shared<AtomicU64>,
}

impl Pair {
    fn create(names: &Unlinker) -> (Pair, [String; 3]) {
        let n = [names.name("lock"), names.name("a"), names.name("b")];
        let pair = Pair {
            lock: Shared::create(&n[0], ()).unwrap(),
            a: Shared::create(&n[1], 0).unwrap(),
            b: Shared::create(&n[2], 0).unwrap(),
        };
        (pair, n)
    }

    fn open(n: &[String; 3]) -> Pair {
        Pair {
            lock: Shared::open(&n[0]).unwrap(),
            a: Shared::open(&n[1]).unwrap(),
            b: Shared::open(&n[2]).unwrap(),
        }
    }
}

/// Forks a child that takes the lock, does half an update, says so on a
/// `holding` flag, and then hangs until it is killed; returns once it
/// holds the lock.
fn holder_that_dies_mid_update(names: &Unlinker, n: &[String; 3]) -> Child {
    let n = n.clone();
    let holding_name = names.name("holding");
    let holding = Shared::<AtomicU32>::create(&holding_name, 0).unwrap();
    let holder = fork(move || {
        let p = Pair::open(&n);
        let holding = Shared::<AtomicU32>::open(&holding_name).unwrap();
        let _guard = p.lock.lock().unwrap();
        p.a.fetch_add(1, Ordering::SeqCst); // half of the update ...
        holding.store(1, Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1)); // ... and never the rest
        }
    })
    .unwrap();
    wait_until("the holder holds the lock", || {
        holding.load(Ordering::SeqCst) == 1
    });
    holder
}

/// [`holder_that_dies_mid_update`], SIGKILLed and reaped.
fn dead_holder(names: &Unlinker, n: &[String; 3]) {
    let mut holder = holder_that_dies_mid_update(names, n);
    holder.kill().unwrap();
    join(&mut holder);
}

/// A [`Pair`] whose holder died mid-update ([`dead_holder`]), with no
/// process waiting.
fn pair_after_a_dead_holder() -> (Unlinker, Pair, [String; 3]) {
    let names = Unlinker::new("test");
    let (pair, n) = Pair::create(&names);
    dead_holder(&names, &n);
    (names, pair, n)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Takes the lock, repairing after a dead owner; then does `rounds` whole
/// updates. Exits 10 if it was the one that saw the owner die, 0 otherwise.
fn worker(n: &[String; 3], rounds: u32) -> i32 {
    let p = Pair::open(n);
    let mut saw_death = false;
    for _ in 0..rounds {
        let mut g = match p.lock.lock_timeout(Duration::from_secs(30)) {
            Ok(g) => g,
            Err(_) => return 2,
        };
        if g.owner_died() {
            saw_death = true;
            let a = p.a.load(Ordering::SeqCst);
            p.b.store(a, Ordering::SeqCst); // repair: finish the dead one's update
            g.mark_consistent();
        }
        if p.a.load(Ordering::SeqCst) != p.b.load(Ordering::SeqCst) {
            return 3; // saw half an update without being told
        }
        let a = p.a.load(Ordering::Relaxed);
        p.a.store(a + 1, Ordering::Relaxed);
        let b = p.b.load(Ordering::Relaxed);
        p.b.store(b + 1, Ordering::Relaxed);
    }
    if saw_death {
        10
    } else {
        0
    }
}

#[test]
fn sigkill_of_the_holder_while_two_wait_is_recovered_and_repaired() {
    let names = Unlinker::new("test");
    let (pair, n) = Pair::create(&names);
    let mut holder = holder_that_dies_mid_update(&names, &n);
    let waiters: Vec<Child> = (0..2)
        .map(|_| {
            let n = n.clone();
            fork(move || worker(&n, 100)).unwrap()
        })
        .collect();
    // Let both waiters go to sleep on the lock, then kill the holder.
    std::thread::sleep(Duration::from_millis(100));
    assert!(pair.lock.is_locked());
    let killed_at = Instant::now();
    holder.kill().unwrap();
    assert_eq!(join(&mut holder), ExitStatus::Signal(libc::SIGKILL));

    let mut codes = Vec::new();
    for mut w in waiters {
        codes.push(join(&mut w));
    }
    let recovered_in = killed_at.elapsed();
    codes.sort_by_key(|s| s.code());
    assert_eq!(
        codes,
        [ExitStatus::Code(0), ExitStatus::Code(10)],
        "exactly one waiter is told the owner died; neither sees a torn update"
    );
    // 1 (the dead holder's half update, repaired) + 2 x 100 whole updates.
    assert_eq!(pair.a.load(Ordering::SeqCst), 201);
    assert_eq!(pair.b.load(Ordering::SeqCst), 201);
    assert!(!pair.lock.is_locked());
    // Not a timing test: a generous bound that only a hang would break.
    assert!(recovered_in < Duration::from_secs(10), "{recovered_in:?}");
    eprintln!("two waiters recovered from a SIGKILLed holder in {recovered_in:?}");
}

#[test]
fn a_process_arriving_after_the_death_is_told_too() {
    let (_names, pair, n) = pair_after_a_dead_holder();
    // Nobody was waiting. A new process comes along later.
    let mut late = fork({
        let n = n.clone();
        move || worker(&n, 1)
    })
    .unwrap();
    assert_eq!(join(&mut late), ExitStatus::Code(10));
    assert_eq!(pair.a.load(Ordering::SeqCst), 2);
    assert_eq!(pair.b.load(Ordering::SeqCst), 2);
    // And this process too, after the repair, gets an ordinary lock.
    let g = pair.lock.lock_timeout(Duration::from_secs(5)).unwrap();
    assert!(!g.owner_died());
}

#[test]
fn a_takeover_that_is_not_repaired_leaves_the_lock_unrecoverable_for_everyone() {
    let (_names, pair, n) = pair_after_a_dead_holder();
    // A careless process takes over and ignores owner_died().
    let mut careless = fork({
        let n = n.clone();
        move || {
            let p = Pair::open(&n);
            let code = match p.lock.lock_timeout(Duration::from_secs(10)) {
                Ok(g) if g.owner_died() => 0, // and drops the guard unrepaired
                Ok(_) => 1,
                Err(_) => 2,
            };
            code
        }
    })
    .unwrap();
    assert_eq!(join(&mut careless), ExitStatus::Code(0));
    assert_eq!(
        pair.lock.lock_timeout(Duration::from_secs(1)).unwrap_err(),
        LockError::Unrecoverable
    );
    let mut other = fork({
        let n = n.clone();
        move || {
            let p = Pair::open(&n);
            let code = match p.lock.try_lock() {
                Err(LockError::Unrecoverable) => 0,
                _ => 1,
            };
            code
        }
    })
    .unwrap();
    assert_eq!(join(&mut other), ExitStatus::Code(0));
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_process_waiting_on_a_live_holder_sleeps_rather_than_spins() {
    let names = Unlinker::new("test");
    let (pair, n) = Pair::create(&names);
    let guard = pair.lock.lock().unwrap();
    let mut waiter = fork({
        let n = n.clone();
        move || {
            let p = Pair::open(&n);
            let code = match p.lock.lock_timeout(Duration::from_millis(1500)) {
                Err(LockError::Timeout) => 0,
                _ => 1,
            };
            code
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    // One second of waiting (20 liveness checks) costs a few milliseconds
    // of CPU; a spinning waiter would have used ~100 ticks. Allow 20.
    let used = cpu_ticks(waiter.pid());
    assert!(used <= 20, "the waiter used {used} ticks of CPU in 1 s");
    assert_eq!(join(&mut waiter), ExitStatus::Code(0));
    drop(guard);
}
