//! Locks: uncontended (lock + unlock on one thread) and contended (two
//! processes on two cores incrementing one counter under the lock), with
//! how the increments split between the two and how often the lock
//! passed from one to the other.

use std::time::{Duration, Instant};

use shmipc::sync::Ordering;
use shmipc::{Lock, Named, Shared};

use crate::harness::{in_procs, Ctl, CtlMap, Env, Name, CORE_A, CORE_B};
use crate::stats::Sample;
use crate::sys::{pin, pthread_mutex_init, Meter, Scope};

/// Nanoseconds per `op()` on one thread (core A).
///
/// No `black_box` around the guards: locking is an atomic read-modify-write
/// the compiler keeps anyway, and forcing a 16-byte guard through memory
/// costs a store-forwarding stall (~10 ns here) that some guards' code
/// paths pay and others do not (see BENCHMARKS.md on raw_sync).
fn per_op(dur: Duration, mut op: impl FnMut()) -> Sample {
    pin(CORE_A);
    for _ in 0..10_000 {
        op();
    }
    let meter = Meter::start(Scope::Thread);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        for _ in 0..1024 {
            op();
        }
        n += 1024;
    }
    let value = start.elapsed().as_nanos() as f64 / n as f64;
    let spent = meter.stop();
    Sample {
        value,
        ops: n,
        cpu_ns: spent.cpu_ns,
        sys_ns: spent.sys_ns,
        syscalls: spent.syscalls,
        membarriers: spent.membarriers,
        ..Sample::default()
    }
}

fn raw_sync_mutex(map: &CtlMap) -> Box<dyn raw_sync::locks::LockImpl> {
    use raw_sync::locks::{LockInit, Mutex};
    // SAFETY: raw(0) has 128 shared bytes for the pthread mutex inside;
    // the data pointer (raw(1)) is never dereferenced by us.
    unsafe { Mutex::new(map.raw(0), map.raw(1)) }
        .expect("raw_sync mutex")
        .0
}

pub fn unc_shmipc(env: &Env) -> Sample {
    let name = Name::new(env, "lock");
    let lock = Shared::<Lock>::create(&name.0, ()).unwrap();
    per_op(env.dur, || drop(lock.lock().unwrap()))
}

/// A process-shared glibc mutex of `kind`, locked and unlocked directly.
pub fn unc_pthread(env: &Env, kind: libc::c_int) -> Sample {
    let map = CtlMap::new();
    let m = pthread_mutex_init(map.raw(0), kind);
    per_op(env.dur, || {
        // SAFETY: an initialised mutex, locked and unlocked by this thread.
        unsafe {
            libc::pthread_mutex_lock(m);
            libc::pthread_mutex_unlock(m);
        }
    })
}

pub fn unc_raw_sync(env: &Env) -> Sample {
    let map = CtlMap::new();
    let m = raw_sync_mutex(&map);
    per_op(env.dur, || drop(m.lock().unwrap()))
}

/// Two processes (cores A and B) increment one counter under a lock;
/// nanoseconds per increment, over both. `with_lock(f)` runs `f` locked.
fn contended(dur: Duration, with_lock: &(dyn Fn(&mut dyn FnMut()) + Sync)) -> Sample {
    let job = |me: usize| {
        move |ctl: &Ctl| {
            ctl.arrive(2);
            let meter = Meter::start(Scope::Process);
            let (mut n, mut handoffs) = (0, 0u64);
            let id = me as u32 + 1;
            loop {
                for _ in 0..64 {
                    with_lock(&mut || {
                        let c = ctl.counter.0.load(Ordering::Relaxed);
                        ctl.counter.0.store(c + 1, Ordering::Relaxed);
                        if ctl.owner.0.load(Ordering::Relaxed) != id {
                            ctl.owner.0.store(id, Ordering::Relaxed);
                            handoffs += 1;
                        }
                    });
                }
                n += 64;
                if ctl.expired(dur) {
                    break;
                }
            }
            ctl.split[me].0.store(n, Ordering::Release);
            ctl.handoffs.0.fetch_add(handoffs, Ordering::AcqRel);
            ctl.finish(n, meter.stop());
        }
    };
    let map = in_procs(vec![(CORE_A, Box::new(job(0))), (CORE_B, Box::new(job(1)))]);
    let ctl = map.ctl();
    let total = ctl.count.0.load(Ordering::Acquire);
    assert_eq!(
        ctl.counter.0.load(Ordering::Acquire),
        total,
        "the lock let increments through"
    );
    let mut s = ctl.sample(ctl.elapsed_ns() / total as f64);
    s.split = Some([
        ctl.split[0].0.load(Ordering::Acquire),
        ctl.split[1].0.load(Ordering::Acquire),
    ]);
    s.handoffs = Some(ctl.handoffs.0.load(Ordering::Acquire));
    s
}

pub fn cont_shmipc(env: &Env) -> Sample {
    let name = Name::new(env, "lock");
    // The children use the mapping they inherit: the Lock records the
    // thread id, which a forked child learns afresh.
    let lock = Shared::<Lock>::create(&name.0, ()).unwrap();
    contended(env.dur, &|f| {
        let _g = lock.lock().unwrap();
        f();
    })
}

pub fn cont_pthread(env: &Env, kind: libc::c_int) -> Sample {
    let map = CtlMap::new();
    let m = pthread_mutex_init(map.raw(0), kind) as usize;
    contended(env.dur, &|f| {
        let m = m as *mut libc::pthread_mutex_t;
        // SAFETY: an initialised process-shared mutex in a shared mapping.
        unsafe { libc::pthread_mutex_lock(m) };
        f();
        // SAFETY: locked by this thread just above.
        unsafe { libc::pthread_mutex_unlock(m) };
    })
}

pub fn cont_raw_sync(env: &Env) -> Sample {
    let map = CtlMap::new();
    let m = raw_sync_mutex(&map);
    let m = SendPtr(&*m);
    contended(env.dur, &|f| {
        let _g = m.get().lock().unwrap();
        f();
    })
}

/// raw_sync's `LockImpl` is not `Sync`; each process uses its own copy
/// (after the fork), never two threads at once.
struct SendPtr<'a>(&'a dyn raw_sync::locks::LockImpl);
// SAFETY: see the type's docs: one thread per process uses it.
unsafe impl Sync for SendPtr<'_> {}
impl SendPtr<'_> {
    fn get(&self) -> &dyn raw_sync::locks::LockImpl {
        self.0
    }
}
