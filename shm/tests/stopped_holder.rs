//! A peer that holds a lock and is stopped (`SIGSTOP`) never makes a
//! `_timeout` call hang: every bounded form of `Value`, `Array`,
//! `SharedDict`, `SharedList`, `Condition` and `Pool` returns its timeout
//! error within the timeout plus a second.
//!
//! The holder is a forked child that takes the object's lock through the
//! core `Lock` API (on its own mapping of the segment's file, at the
//! object's offset: every one of these objects starts with its `Lock`),
//! says so, and stops itself. A stopped process is alive, so no owner-death
//! recovery applies: only the deadline can end the wait. A watchdog kills
//! the holder if a call has not returned after a long while, so that a
//! broken bound fails the test instead of hanging it.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{
    fork, Array, ArrayError, Child, Condition, DictConfig, DictError, ListConfig, Lock, LockError,
    Named, Pool, Shared, SharedDict, SharedList, SharedObject, TaskError, Value, ValueError,
};

/// The timeout every bounded call gets here.
const TIMEOUT: Duration = Duration::from_millis(200);
/// How much later than its timeout a call may return.
const SLACK: Duration = Duration::from_secs(1);
/// After this long the watchdog kills the holder (the test then fails on
/// the late return).
const WATCHDOG: Duration = Duration::from_secs(20);

/// A forked process that holds a lock and is stopped. Dropping it
/// continues and kills it, and reaps it.
struct StoppedHolder {
    child: Option<Child>,
    holding: Shared<AtomicU32>,
    watchdog: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl StoppedHolder {
    /// Forks a child that runs `take` (which takes a lock and keeps it),
    /// says so, and stops itself. Returns at once; see
    /// [`StoppedHolder::wait_stopped`].
    fn spawn(take: impl FnOnce()) -> StoppedHolder {
        let holding = Shared::<AtomicU32>::anon(0).unwrap();
        let child = fork(|| {
            take();
            holding.store(1, Ordering::SeqCst);
            // SAFETY: raise has no preconditions.
            unsafe { libc::raise(libc::SIGSTOP) };
            // Continued only to be killed.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
        .unwrap();
        let pid = child.pid();
        let (tx, rx) = mpsc::channel::<()>();
        let dog = std::thread::spawn(move || {
            if rx.recv_timeout(WATCHDOG) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!("watchdog: a call is still blocked after {WATCHDOG:?}; killing {pid}");
                // SAFETY: `pid` is our unreaped child (reaped only after
                // this thread is joined), so it names no other process.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        });
        StoppedHolder {
            child: Some(child),
            holding,
            watchdog: Some((tx, dog)),
        }
    }

    /// Waits until the holder has its lock and is stopped.
    fn wait_stopped(&self) {
        let pid = self.pid();
        assert!(
            common::eventually(Duration::from_secs(30), || self
                .holding
                .load(Ordering::SeqCst)
                == 1
                && proc_state(pid) == Some('T')),
            "the holder {pid} never took the lock and stopped"
        );
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::pid)
    }

    /// A stopped holder of the lock at the start of the object of segment
    /// `name`.
    fn of_segment(name: &str) -> StoppedHolder {
        let name = name.to_owned();
        let h = StoppedHolder::spawn(move || {
            let guard = raw_lock(&name).lock().expect("the holder takes the lock");
            std::mem::forget(guard);
        });
        h.wait_stopped();
        h
    }
}

impl Drop for StoppedHolder {
    fn drop(&mut self) {
        if let Some((tx, dog)) = self.watchdog.take() {
            let _ = tx.send(());
            let _ = dog.join();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.signal(libc::SIGCONT);
            let _ = child.kill();
            let _ = child.join_timeout(common::CHILD_TIMEOUT);
        }
    }
}

/// The state letter of process `pid` (`/proc/<pid>/stat`): `T` stopped,
/// `S` sleeping, ...
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The `Lock` at the start of the object of segment `name`, in a fresh
/// mapping of it (leaked: the holder keeps it until it dies). Mapped
/// through shmipc, whatever its kind, so that the lock is taken as a
/// member of the segment's peers: a lock taken through memory shmipc does
/// not know (a plain `mmap` of the file) has an owner no one can judge,
/// and is never taken over when that owner dies.
fn raw_lock(name: &str) -> &'static Lock {
    let mut kind = [0u8; 4];
    std::fs::File::open(common::shm_path(name))
        .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut kind, 20))
        .expect("read the segment's kind");
    let kind = shmipc::Kind::new(u32::from_ne_bytes(kind));
    let map = shmipc::memory::Mapping::open(name, kind, &shmipc::Options::new(), |_| Ok(()))
        .expect("map the segment");
    let map: &'static shmipc::memory::Mapping = Box::leak(Box::new(map));
    // SAFETY: the mapping lives for ever (leaked); the Lock's bytes are only
    // used through its atomics, as every other process does.
    unsafe { Lock::from_ptr(map.object_ptr(), map.object_len()) }
        .expect("a Lock at the object's start")
}

/// Runs `call`, which should give up after [`TIMEOUT`], and checks that it
/// returned `Err` no earlier than the timeout and no later than
/// [`SLACK`] after it; `is_timeout` says whether the error is the timeout.
#[track_caller]
fn bounded<T: std::fmt::Debug, E: std::fmt::Debug>(
    what: &str,
    call: impl FnOnce() -> Result<T, E>,
    is_timeout: impl FnOnce(&E) -> bool,
) {
    let start = Instant::now();
    let r = call();
    let took = start.elapsed();
    match &r {
        Err(e) if is_timeout(e) => {}
        other => panic!("{what}: expected a timeout, got {other:?} after {took:?}"),
    }
    assert!(
        took >= TIMEOUT,
        "{what}: returned after {took:?}, before its timeout"
    );
    assert!(
        took <= TIMEOUT + SLACK,
        "{what}: returned after {took:?}, more than {SLACK:?} past its timeout"
    );
}

#[test]
fn value_and_array_calls_time_out_behind_a_stopped_holder() {
    let (_names, [vn, an]) = common::segment_names("stopped", ["value", "array"]);
    let value = Value::<u64>::create(&vn, 7).unwrap();
    let array = Array::<u32>::create(&an, &[1, 2, 3]).unwrap();
    let _v = StoppedHolder::of_segment(&vn);
    let _a = StoppedHolder::of_segment(&an);

    let vt = |e: &ValueError| matches!(e, ValueError::Timeout { name } if *name == vn);
    bounded("Value::get_timeout", || value.get_timeout(TIMEOUT), vt);
    bounded("Value::set_timeout", || value.set_timeout(8, TIMEOUT), vt);
    bounded(
        "Value::update_timeout",
        || value.update_timeout(|v| *v += 1, TIMEOUT),
        vt,
    );
    let at = |e: &ArrayError| matches!(e, ArrayError::Timeout { name } if *name == an);
    bounded("Array::get_timeout", || array.get_timeout(0, TIMEOUT), at);
    bounded(
        "Array::set_timeout",
        || array.set_timeout(0, 9, TIMEOUT),
        at,
    );
    bounded(
        "Array::update_at_timeout",
        || array.update_at_timeout(1, |v| *v += 1, TIMEOUT),
        at,
    );
    bounded(
        "Array::update_timeout",
        || array.update_timeout(|all| all[2] = 0, TIMEOUT),
        at,
    );
    bounded(
        "Array::set_many_timeout",
        || array.set_many_timeout(&[(0, 9), (2, 9)], TIMEOUT),
        at,
    );
    bounded(
        "Array::snapshot_timeout",
        || array.snapshot_timeout(TIMEOUT),
        at,
    );

    // The message names the segment.
    let e = value.get_timeout(Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains(&vn), "{e}");
    let e = array.snapshot_timeout(Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains(&an), "{e}");
}

#[test]
fn dict_and_list_calls_time_out_behind_a_stopped_holder() {
    let (_names, [dn, ln]) = common::segment_names("stopped", ["dict", "list"]);
    let dict = SharedDict::create(&dn, DictConfig::new(8, 8, 8)).unwrap();
    dict.insert(b"k", b"v").unwrap();
    let list = SharedList::create(&ln, ListConfig::new(8, 8)).unwrap();
    list.append(b"x").unwrap();
    let _d = StoppedHolder::of_segment(&dn);
    let _l = StoppedHolder::of_segment(&ln);

    let dt = |e: &DictError| matches!(e, DictError::Timeout { name } if *name == dn);
    bounded(
        "SharedDict::insert_timeout",
        || dict.insert_timeout(b"a", b"b", TIMEOUT),
        dt,
    );
    bounded(
        "SharedDict::get_timeout",
        || dict.get_timeout(b"k", TIMEOUT),
        dt,
    );
    bounded(
        "SharedDict::contains_key_timeout",
        || dict.contains_key_timeout(b"k", TIMEOUT),
        dt,
    );
    bounded(
        "SharedDict::update_timeout",
        || dict.update_timeout(b"k", |_| b"w".to_vec(), TIMEOUT),
        dt,
    );
    bounded(
        "SharedDict::remove_timeout",
        || dict.remove_timeout(b"k", TIMEOUT),
        dt,
    );
    bounded(
        "SharedDict::clear_timeout",
        || dict.clear_timeout(TIMEOUT),
        dt,
    );
    bounded("SharedDict::len_timeout", || dict.len_timeout(TIMEOUT), dt);
    bounded(
        "SharedDict::is_empty_timeout",
        || dict.is_empty_timeout(TIMEOUT),
        dt,
    );
    bounded(
        "SharedDict::keys_timeout",
        || dict.keys_timeout(TIMEOUT),
        dt,
    );
    bounded(
        "SharedDict::items_timeout",
        || dict.items_timeout(TIMEOUT),
        dt,
    );

    let lt = |e: &DictError| matches!(e, DictError::Timeout { name } if *name == ln);
    bounded(
        "SharedList::append_timeout",
        || list.append_timeout(b"y", TIMEOUT),
        lt,
    );
    bounded(
        "SharedList::get_timeout",
        || list.get_timeout(0, TIMEOUT),
        lt,
    );
    bounded("SharedList::len_timeout", || list.len_timeout(TIMEOUT), lt);
    bounded(
        "SharedList::is_empty_timeout",
        || list.is_empty_timeout(TIMEOUT),
        lt,
    );
    bounded(
        "SharedList::to_vec_timeout",
        || list.to_vec_timeout(TIMEOUT),
        lt,
    );
    let e = dict.len_timeout(Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains(&dn), "{e}");
}

#[test]
fn condition_calls_time_out_behind_a_stopped_holder() {
    let (_names, cn) = common::segment_name("stopped", "cond");
    let cond = Shared::<Condition>::create(&cn, ()).unwrap();
    let lock_timeout = |e: &LockError| *e == LockError::Timeout;

    // Taking the lock.
    {
        let _h = StoppedHolder::of_segment(&cn);
        bounded(
            "Condition::lock_timeout",
            || cond.lock_timeout(TIMEOUT),
            lock_timeout,
        );
    }

    // A timed wait whose lock is taken, while it sleeps, by a process that
    // notifies and then stops: the wait must not hang taking the lock back.
    let wait_for = Duration::from_secs(2);
    for variant in ["CondGuard::wait_timeout", "CondGuard::wait_timeout_while"] {
        let mut guard = cond.lock().unwrap();
        if guard.owner_died() {
            // The last holder was killed holding the lock: nothing to repair.
            guard.mark_consistent();
        }
        let cn2 = cn.clone();
        let asking = Shared::<AtomicU32>::anon(0).unwrap();
        let holder = StoppedHolder::spawn(|| {
            let c = Shared::<Condition>::open(&cn2).unwrap();
            asking.store(1, Ordering::SeqCst);
            // Blocks until the parent's wait releases the lock.
            let g = c.lock().expect("the holder takes the lock");
            c.notify_all();
            std::mem::forget(g);
            std::mem::forget(c);
        });
        // The holder sleeps on the lock before we wait (sleeping `S`).
        assert!(common::eventually(Duration::from_secs(30), || {
            asking.load(Ordering::SeqCst) == 1 && proc_state(holder.pid()) == Some('S')
        }));
        let start = Instant::now();
        let r = if variant.ends_with("while") {
            guard.wait_timeout_while(wait_for, || true).map(drop)
        } else {
            guard.wait_timeout(wait_for).map(drop)
        };
        let took = start.elapsed();
        assert!(
            took <= wait_for + SLACK,
            "{variant}: returned {r:?} after {took:?}, more than {SLACK:?} past its timeout"
        );
        assert_eq!(r, Err(LockError::Timeout), "{variant}: after {took:?}");
        holder.wait_stopped();
    }
}

#[test]
fn pool_calls_time_out_behind_a_stuck_task() {
    let (_names, vn) = common::segment_name("stopped", "value");
    let _value = Value::<u64>::create(&vn, 0).unwrap();
    let _h = StoppedHolder::of_segment(&vn);
    // Every task waits for the value's lock, which the stopped holder has.
    let vn2 = vn.clone();
    let pool = Pool::builder(1)
        .function(move |_: &[u8]| {
            let v = Value::<u64>::open(&vn2).unwrap();
            let _ = v.get();
            Vec::new()
        })
        .build()
        .unwrap();
    let tt = |e: &TaskError| *e == TaskError::Timeout;
    bounded(
        "Pool::apply_timeout",
        || pool.apply_timeout(b"x", TIMEOUT),
        tt,
    );
    bounded(
        "Pool::apply_with_timeout",
        || pool.apply_with_timeout(0, b"x", TIMEOUT),
        tt,
    );
    bounded(
        "Pool::map_timeout",
        || pool.map_timeout([b"a", b"b"], TIMEOUT),
        tt,
    );
    let pending = pool.apply_async(b"y").unwrap();
    bounded(
        "AsyncResult::get_timeout",
        || pending.get_timeout(TIMEOUT),
        tt,
    );
    let mut it = pool.imap_unordered([b"c"]);
    bounded(
        "ImapUnordered::next_timeout",
        || it.next_timeout(TIMEOUT),
        tt,
    );

    pool.close();
    let start = Instant::now();
    assert!(
        !pool.join_timeout(TIMEOUT),
        "the workers cannot have exited"
    );
    let took = start.elapsed();
    assert!(
        took >= TIMEOUT && took <= TIMEOUT + SLACK,
        "Pool::join_timeout took {took:?}"
    );
    pool.terminate();
}
