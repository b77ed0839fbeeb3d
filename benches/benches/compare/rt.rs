//! Round trips across two processes on two cores: `rt_busy` (both sides
//! poll), `rt_block` and `sem_pingpong` (both sides sleep when there is
//! nothing to do), `rt_adaptive` (shmipc's blocking calls with a wait
//! strategy that spins, then yields, then sleeps). Every figure is a whole round trip: two messages, one
//! each way.

use std::os::fd::RawFd;

use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{
    Event, Named, RingConfig, Semaphore, SemaphoreConfig, Shared, SpscQueue, WaitStrategy,
};

use crate::harness::{echo, initiate, round_trip, spin_until, CtlMap, Env, Name};
use crate::stats::Sample;
use crate::sys::{
    futex_wait, futex_wake, pipe_fds, recv_u64, sem_init, sem_post, sem_trywait, sem_wait,
    send_u64, set_nonblocking, socket_pair,
};

/// shmipc's SPSC round trip: polling with `try_` calls (`wait` `None`),
/// or through the blocking calls with the wait strategy `wait` on all four
/// handles.
pub fn rt_shmipc(env: &Env, wait: Option<WaitStrategy>) -> Sample {
    let (ping, pong) = (Name::new(env, "ping"), Name::new(env, "pong"));
    let q_ping = SpscQueue::<u64>::create(&ping.0, RingConfig::new(64)).unwrap();
    let q_pong = SpscQueue::<u64>::create(&pong.0, RingConfig::new(64)).unwrap();
    let map = CtlMap::new();
    let strategy = wait.unwrap_or_default();
    round_trip(
        &map,
        |ctl| {
            let mut rx = SpscQueue::<u64>::consumer(&ping.0)
                .unwrap()
                .with_wait_strategy(strategy);
            let mut tx = SpscQueue::<u64>::producer(&pong.0)
                .unwrap()
                .with_wait_strategy(strategy);
            if wait.is_none() {
                echo(
                    ctl,
                    || spin_until(|| rx.try_pop().ok()),
                    |v| tx.try_push(v).unwrap(),
                );
            } else {
                echo(ctl, || rx.pop().unwrap(), |v| tx.push(v).unwrap());
            }
        },
        |ctl| {
            let mut tx = q_ping.take_producer().unwrap().with_wait_strategy(strategy);
            let mut rx = q_pong.take_consumer().unwrap().with_wait_strategy(strategy);
            if wait.is_none() {
                initiate(ctl, env.dur, |i| {
                    tx.try_push(i).unwrap();
                    spin_until(|| rx.try_pop().ok())
                })
            } else {
                initiate(ctl, env.dur, |i| {
                    tx.push(i).unwrap();
                    rx.pop().unwrap()
                })
            }
        },
    )
}

/// The limit of a busy round trip: one cache line each way, nothing else.
pub fn rt_spin(env: &Env) -> Sample {
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| {
            let mut last = 0;
            echo(
                ctl,
                || {
                    let v = spin_until(|| {
                        let v = ctl.ping.0.load(Ordering::Acquire);
                        (v != last).then_some(v)
                    });
                    last = v;
                    v - 1
                },
                |v| ctl.pong.0.store(v + 1, Ordering::Release),
            );
        },
        |ctl| {
            initiate(ctl, env.dur, |i| {
                ctl.ping.0.store(i + 1, Ordering::Release);
                while ctl.pong.0.load(Ordering::Acquire) != i + 1 {
                    std::hint::spin_loop();
                }
                i
            })
        },
    )
}

/// Round trips over two file-descriptor channels: `here` = (rx, tx) in
/// this process, `there` in the child.
fn rt_fds(env: &Env, busy: bool, here: (RawFd, RawFd), there: (RawFd, RawFd)) -> Sample {
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| {
            if busy {
                set_nonblocking(there.0);
            }
            echo(ctl, || recv_u64(there.0, busy), |v| send_u64(there.1, v));
        },
        |ctl| {
            if busy {
                set_nonblocking(here.0);
            }
            initiate(ctl, env.dur, |i| {
                send_u64(here.1, i);
                recv_u64(here.0, busy)
            })
        },
    )
}

pub fn rt_pipe(env: &Env, busy: bool) -> Sample {
    let (a_rx, b_tx) = pipe_fds();
    let (b_rx, a_tx) = pipe_fds();
    let s = rt_fds(env, busy, (a_rx, a_tx), (b_rx, b_tx));
    [a_rx, a_tx, b_rx, b_tx]
        .into_iter()
        .for_each(crate::sys::close);
    s
}

pub fn rt_uds(env: &Env, busy: bool) -> Sample {
    let (a, b) = socket_pair();
    let s = rt_fds(env, busy, (a, a), (b, b));
    [a, b].into_iter().for_each(crate::sys::close);
    s
}

pub fn rt_event(env: &Env) -> Sample {
    let (ping, pong) = (Name::new(env, "ping"), Name::new(env, "pong"));
    let e_ping = Shared::<Event>::create(&ping.0, ()).unwrap();
    let e_pong = Shared::<Event>::create(&pong.0, ()).unwrap();
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| {
            let e_ping = Shared::<Event>::open(&ping.0).unwrap();
            let e_pong = Shared::<Event>::open(&pong.0).unwrap();
            echo(
                ctl,
                || {
                    e_ping.wait();
                    e_ping.clear();
                    ctl.ping.0.load(Ordering::Relaxed)
                },
                |v| {
                    ctl.pong.0.store(v, Ordering::Relaxed);
                    e_pong.set();
                },
            );
        },
        |ctl| {
            initiate(ctl, env.dur, |i| {
                ctl.ping.0.store(i, Ordering::Relaxed);
                e_ping.set();
                e_pong.wait();
                e_pong.clear();
                ctl.pong.0.load(Ordering::Relaxed)
            })
        },
    )
}

/// Sleeps until `word` differs from `seen`; returns the new value.
///
/// Plain (`spin` false): look, then `FUTEX_WAIT`. Spinning: first poll
/// with shmipc's own spin budget (`shmipc_core::futex::spin_until`, the
/// function shmipc's queues, lock, semaphore and event call before they
/// sleep), then count ourselves in `waiters` so that the notifier can skip
/// the wake-up system call when nobody sleeps, as shmipc does.
fn wait_change(word: &AtomicU32, waiters: &AtomicU32, seen: u32, spin: bool) -> u32 {
    if spin {
        if shmipc_core::futex::spin_until(|| word.load(Ordering::Acquire) != seen) {
            return word.load(Ordering::Acquire);
        }
        // SYNC POINT: SeqCst, with the SeqCst load of `word` below and the
        // SeqCst store / load in `notify`: either we see the new value or
        // the notifier sees us and wakes us.
        waiters.fetch_add(1, Ordering::SeqCst);
        let v = loop {
            let v = word.load(Ordering::SeqCst);
            if v != seen {
                break v;
            }
            futex_wait(word, seen);
        };
        waiters.fetch_sub(1, Ordering::Relaxed);
        return v;
    }
    loop {
        let v = word.load(Ordering::Acquire);
        if v != seen {
            return v;
        }
        futex_wait(word, seen);
    }
}

/// Publishes `v` in `word` and wakes its sleeper (spinning: only if one
/// is counted).
fn notify(word: &AtomicU32, waiters: &AtomicU32, v: u32, spin: bool) {
    if spin {
        // SYNC POINT: see wait_change.
        word.store(v, Ordering::SeqCst);
        if waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(word);
        }
    } else {
        // SYNC POINT: Release pairs with the Acquire load in wait_change.
        word.store(v, Ordering::Release);
        futex_wake(word);
    }
}

/// A bare futex pair: the payload in `ping` / `pong`, a sequence number
/// in the futex words.
pub fn rt_futex(env: &Env, spin: bool) -> Sample {
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| {
            let seq = std::cell::Cell::new(0);
            echo(
                ctl,
                || {
                    seq.set(wait_change(&ctl.fping.0, &ctl.wping.0, seq.get(), spin));
                    ctl.ping.0.load(Ordering::Relaxed)
                },
                |v| {
                    ctl.pong.0.store(v, Ordering::Relaxed);
                    notify(&ctl.fpong.0, &ctl.wpong.0, seq.get(), spin);
                },
            );
        },
        |ctl| {
            let mut seq = 0u32;
            initiate(ctl, env.dur, |i| {
                ctl.ping.0.store(i, Ordering::Relaxed);
                let before = seq;
                seq = seq.wrapping_add(1);
                notify(&ctl.fping.0, &ctl.wping.0, seq, spin);
                wait_change(&ctl.fpong.0, &ctl.wpong.0, before, spin);
                ctl.pong.0.load(Ordering::Relaxed)
            })
        },
    )
}

/// Waits on a `sem_t`; spinning, first with shmipc's spin budget of
/// `sem_trywait`s (glibc's `sem_post` already skips the wake-up when
/// nobody sleeps).
fn sem_wait_maybe_spin(s: *mut libc::sem_t, spin: bool) {
    if spin && shmipc_core::futex::spin_until(|| sem_trywait(s)) {
        return;
    }
    sem_wait(s);
}

pub fn rt_posix_sem(env: &Env, spin: bool) -> Sample {
    let map = CtlMap::new();
    let (a, b) = (sem_init(map.raw(0)), sem_init(map.raw(1)));
    // Shared mappings of the same process tree: the addresses hold there.
    let (a, b) = (a as usize, b as usize);
    let s = round_trip(
        &map,
        |ctl| {
            let (a, b) = (a as *mut libc::sem_t, b as *mut libc::sem_t);
            echo(
                ctl,
                || {
                    sem_wait_maybe_spin(a, spin);
                    ctl.ping.0.load(Ordering::Relaxed)
                },
                |v| {
                    ctl.pong.0.store(v, Ordering::Relaxed);
                    sem_post(b);
                },
            );
        },
        |ctl| {
            let (a, b) = (a as *mut libc::sem_t, b as *mut libc::sem_t);
            initiate(ctl, env.dur, |i| {
                ctl.ping.0.store(i, Ordering::Relaxed);
                sem_post(a);
                sem_wait_maybe_spin(b, spin);
                ctl.pong.0.load(Ordering::Relaxed)
            })
        },
    );
    // SAFETY: both semaphores were initialised above; no process uses them now.
    unsafe {
        libc::sem_destroy(a as *mut libc::sem_t);
        libc::sem_destroy(b as *mut libc::sem_t);
    }
    s
}

pub fn rt_ipc_channel(env: &Env) -> Sample {
    let (a_tx, b_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
    let (b_tx, a_rx) = ipc_channel::ipc::channel::<u64>().unwrap();
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| echo(ctl, || b_rx.recv().unwrap(), |v| b_tx.send(v).unwrap()),
        |ctl| {
            initiate(ctl, env.dur, |i| {
                a_tx.send(i).unwrap();
                a_rx.recv().unwrap()
            })
        },
    )
}

pub fn sem_shmipc(env: &Env) -> Sample {
    let (ping, pong) = (Name::new(env, "ping"), Name::new(env, "pong"));
    let zero = SemaphoreConfig {
        initial: 0,
        max: None,
    };
    let s_ping = Shared::<Semaphore>::create(&ping.0, zero).unwrap();
    let s_pong = Shared::<Semaphore>::create(&pong.0, zero).unwrap();
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| {
            let s_ping = Shared::<Semaphore>::open(&ping.0).unwrap();
            let s_pong = Shared::<Semaphore>::open(&pong.0).unwrap();
            echo(
                ctl,
                || {
                    s_ping.acquire();
                    ctl.ping.0.load(Ordering::Relaxed)
                },
                |v| {
                    ctl.pong.0.store(v, Ordering::Relaxed);
                    s_pong.release().unwrap();
                },
            );
        },
        |ctl| {
            initiate(ctl, env.dur, |i| {
                ctl.ping.0.store(i, Ordering::Relaxed);
                s_ping.release().unwrap();
                s_pong.acquire();
                ctl.pong.0.load(Ordering::Relaxed)
            })
        },
    )
}
