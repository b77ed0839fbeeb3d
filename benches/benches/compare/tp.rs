//! One-way throughput of small fixed-size items: SPSC and MPMC queues.

use crossbeam_queue::ArrayQueue;
use shmipc::{Named, Queue, RingConfig, SpscQueue};

use crate::harness::{
    consume, in_procs, in_threads, produce, spin_until, Ctl, Env, Job, Msg, Name, ProcJob, CORE_A,
    CORE_B,
};
use crate::stats::Sample;
use crate::sys::{close, pipe_fds, size_pipe, Scope};

/// Items in every ring of these workloads.
pub const RING: usize = 1024;

/// The core of producer `p` (`producer`) or consumer `p`, when pinned:
/// producers from core 0 up, consumers from core 1 up (modulo the cores),
/// so that with two cores each holds one producer and one consumer.
fn core_of(i: u32, producer: bool, pinned: bool) -> Option<usize> {
    pinned.then_some(i as usize + usize::from(!producer))
}

fn sample(ctl: &Ctl) -> Sample {
    ctl.sample(ctl.mmsg_per_s())
}

/// shmipc's SPSC queue across two processes.
pub fn tp_shmipc_spsc<M: Msg + bytemuck::Pod>(env: &Env, capacity: usize) -> Sample {
    let name = Name::new(env, "spsc");
    let _q = SpscQueue::<M>::create(&name.0, RingConfig::new(capacity)).unwrap();
    let dur = env.dur;
    let n = &name.0;
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                let mut tx = SpscQueue::<M>::producer(n).unwrap();
                produce(ctl, 2, dur, Scope::Process, |m| {
                    spin_until(|| tx.try_push(m).ok())
                });
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let mut rx = SpscQueue::<M>::consumer(n).unwrap();
                consume(ctl, 2, 1, 1, Scope::Process, || rx.try_pop().ok());
            }),
        ),
    ]);
    sample(map.ctl())
}

/// shmipc's SPSC queue between two threads of one process (an anonymous
/// mapping), as rtrb runs.
pub fn tp_shmipc_spsc_threads(env: &Env) -> Sample {
    let (mut tx, mut rx) = SpscQueue::<u64>::anon(RingConfig::new(RING)).unwrap();
    let dur = env.dur;
    let map = in_threads(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                produce(ctl, 2, dur, Scope::Thread, |m| {
                    spin_until(|| tx.try_push(m).ok())
                });
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| consume(ctl, 2, 1, 1, Scope::Thread, || rx.try_pop().ok())),
        ),
    ]);
    sample(map.ctl())
}

pub fn tp_rtrb(env: &Env) -> Sample {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(RING);
    let dur = env.dur;
    let map = in_threads(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                produce(ctl, 2, dur, Scope::Thread, |m| {
                    spin_until(|| tx.push(m).ok())
                });
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| consume(ctl, 2, 1, 1, Scope::Thread, || rx.pop().ok())),
        ),
    ]);
    sample(map.ctl())
}

pub fn tp_crossbeam(env: &Env, producers: u32, consumers: u32, pinned: bool) -> Sample {
    let q = ArrayQueue::<u64>::new(RING);
    let q = &q;
    let dur = env.dur;
    let parties = producers + consumers;
    let mut jobs: Vec<Job<'_>> = Vec::new();
    for p in 0..producers {
        jobs.push((
            core_of(p, true, pinned),
            Box::new(move |ctl: &Ctl| {
                produce(ctl, parties, dur, Scope::Thread, |m| {
                    spin_until(|| q.push(m).ok())
                });
            }),
        ));
    }
    for c in 0..consumers {
        jobs.push((
            core_of(c, false, pinned),
            Box::new(move |ctl: &Ctl| {
                consume(ctl, parties, producers, consumers, Scope::Thread, || {
                    q.pop()
                })
            }),
        ));
    }
    sample(in_threads(jobs).ctl())
}

pub fn tp_shmipc_mpmc(env: &Env, producers: u32, consumers: u32, pinned: bool) -> Sample {
    let name = Name::new(env, "mpmc");
    let _q = Queue::<u64>::create(&name.0, RingConfig::new(RING)).unwrap();
    let dur = env.dur;
    let n = &name.0;
    let parties = producers + consumers;
    let mut jobs: Vec<ProcJob<'_>> = Vec::new();
    for p in 0..producers {
        jobs.push((
            core_of(p, true, pinned),
            Box::new(move |ctl: &Ctl| {
                let q = Queue::<u64>::open(n).unwrap();
                produce(ctl, parties, dur, Scope::Process, |m| {
                    spin_until(|| q.try_push(m).ok())
                });
            }),
        ));
    }
    for c in 0..consumers {
        jobs.push((
            core_of(c, false, pinned),
            Box::new(move |ctl: &Ctl| {
                let q = Queue::<u64>::open(n).unwrap();
                consume(ctl, parties, producers, consumers, Scope::Process, || {
                    q.try_pop().ok()
                });
            }),
        ));
    }
    sample(in_procs(jobs).ctl())
}

/// `u64`s through a pipe at least as large as shmipc's ring of them (the
/// default 64 KiB already is).
pub fn tp_pipe(env: &Env) -> Sample {
    let (rx, tx) = pipe_fds();
    let pipe = size_pipe(tx, RING * 8);
    let dur = env.dur;
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                produce(ctl, 2, dur, Scope::Process, |m: u64| {
                    crate::sys::send_u64(tx, m)
                })
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                // Read in bulk: writes of 8 bytes are atomic and 4096 is a
                // multiple of 8, so every read returns whole messages.
                let mut buf = [0u8; 4096];
                let (mut pos, mut len) = (0, 0);
                consume(ctl, 2, 1, 1, Scope::Process, || {
                    if pos == len {
                        // SAFETY: `buf` is valid for writes of its length.
                        let n = unsafe { libc::read(rx, buf.as_mut_ptr().cast(), buf.len()) };
                        assert!(n > 0 && n % 8 == 0, "pipe read: {n}");
                        (pos, len) = (0, n as usize);
                    }
                    pos += 8;
                    Some(u64::from_ne_bytes(buf[pos - 8..pos].try_into().unwrap()))
                });
            }),
        ),
    ]);
    close(rx);
    close(tx);
    let mut s = sample(map.ctl());
    s.note = Some(format!(
        "pipe buffer {} KiB (shmipc's ring: {} KiB)",
        pipe / 1024,
        RING * 8 / 1024
    ));
    s
}
