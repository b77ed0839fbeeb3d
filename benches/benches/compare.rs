//! shmipc side by side with its peers, in one run.
//!
//! ```sh
//! cargo bench -p shmipc-benches --bench compare             # the full run
//! cargo bench -p shmipc-benches --bench compare -- --quick  # a short one (CI)
//! SHMIPC_BENCH_FILTER=rt_block cargo bench -p shmipc-benches --bench compare
//! ```
//!
//! Every workload runs each implementation several times; the repetitions
//! are interleaved (repetition `r` starts at a different case, every
//! second one runs backwards) so that noise from the machine hits every
//! implementation alike. Ratios are *paired*: shmipc against a peer within
//! the same repetition, so that each repetition gives one ratio, and the
//! report shows their median and spread. A target counts as held when at
//! least 5 of 7 repetitions clear it. Limits (what no implementation can
//! beat here) are reported apart from the peers, as fractions.
//!
//! Besides the figure, each case reports the CPU time both parties spent
//! per operation (getrusage over the measured interval), the function-call
//! IPIs the machine took meanwhile (`/proc/interrupts`), per-round-trip
//! percentiles for the round trips, and, in one extra counting pass whose
//! figures are not used, system calls and `membarrier` calls per operation
//! (tracepoint counters, which slow every system call while enabled).
//!
//! Every shmipc name comes from an [`Unlinker`](shmipc::Unlinker), so it
//! is unlinked even if the run panics; iceoryx2 gets its own root
//! directory and file prefix, which are removed the same way.

#[path = "compare/bytes.rs"]
mod bytes;
#[path = "compare/harness.rs"]
mod harness;
#[path = "compare/iox.rs"]
mod iox;
#[path = "compare/locks.rs"]
mod locks;
#[path = "compare/peers.rs"]
mod peers;
#[path = "compare/py.rs"]
mod py;
#[path = "compare/report.rs"]
mod report;
#[path = "compare/rt.rs"]
mod rt;
#[path = "compare/stats.rs"]
mod stats;
#[path = "compare/sys.rs"]
mod sys;
#[path = "compare/tp.rs"]
mod tp;
#[path = "compare/typed.rs"]
mod typed;

use std::time::{Duration, Instant};

use shmipc::sync::Ordering;
use shmipc::{Unlinker, WaitStrategy};

use harness::{Case, Env, Unit};

/// The message sizes of the byte workloads: `bytes_64`, `bytes_4k` and
/// `bytes_64k` are the main table's; all of them make the size table.
pub const SIZES: [usize; 7] = [8, 64, 512, 4096, 65536, 1 << 18, 1 << 20];

/// `bytes_64`, `bytes_4k`, `bytes_1m`, ...
pub fn bytes_workload(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("bytes_{}m", s >> 20),
        s if s >= 1024 => format!("bytes_{}k", s >> 10),
        s => format!("bytes_{s}"),
    }
}

/// Producer counts of the scaling table.
pub const PRODUCERS: [u32; 4] = [1, 2, 4, 8];

/// The adaptive wait strategy with a spin of `spin` µs and a window of
/// `window` µs.
fn adaptive_us(spin: u64, window: u64) -> WaitStrategy {
    WaitStrategy::Adaptive {
        spin: Duration::from_micros(spin),
        window: Duration::from_micros(window),
    }
}

fn cases(env: &Env) -> Vec<Case> {
    use Unit::*;
    let py = env.python.is_some();
    let mut v = vec![
        // ---- busy round trips
        Case::new(
            &["rt_busy"],
            "shmipc",
            Rt,
            Box::new(|e| rt::rt_shmipc(e, None)),
        ),
        Case::new(
            &["rt_busy"],
            "iceoryx2",
            Rt,
            Box::new(|e| iox::rt_iceoryx2(e, iox::Wake::Poll)),
        ),
        Case::new(&["rt_busy"], "uds", Rt, Box::new(|e| rt::rt_uds(e, true))),
        Case::new(&["rt_busy"], "pipe", Rt, Box::new(|e| rt::rt_pipe(e, true))),
        Case::new(&["rt_busy"], "spin_limit", Rt, Box::new(rt::rt_spin)).limit(),
        // ---- blocking round trips with the adaptive wait strategy: the
        // default, and two other windows to choose it by
        Case::new(
            &["rt_adaptive"],
            "shmipc",
            Rt,
            Box::new(|e| rt::rt_shmipc(e, Some(WaitStrategy::DEFAULT))),
        ),
        Case::new(
            &["rt_adaptive"],
            "shmipc_5us_20us",
            Rt,
            Box::new(|e| rt::rt_shmipc(e, Some(adaptive_us(5, 20)))),
        ),
        Case::new(
            &["rt_adaptive"],
            "shmipc_yield_100us",
            Rt,
            Box::new(|e| rt::rt_shmipc(e, Some(adaptive_us(0, 100)))),
        ),
        Case::new(
            &["rt_adaptive"],
            "shmipc_spin",
            Rt,
            Box::new(|e| rt::rt_shmipc(e, Some(WaitStrategy::Spin))),
        ),
        // ---- blocking round trips
        Case::new(
            &["rt_block"],
            "shmipc",
            Rt,
            Box::new(|e| rt::rt_shmipc(e, Some(WaitStrategy::Park))),
        ),
        Case::new(&["rt_block"], "shmipc_event", Rt, Box::new(rt::rt_event)),
        // ---- the same round trip through `wait` and through tokio
        Case::new(&["rt_waitset"], "shmipc", Rt, Box::new(peers::rt_waitset)),
        Case::new(
            &["rt_waitset"],
            "iceoryx2",
            Rt,
            Box::new(|e| iox::rt_iceoryx2(e, iox::Wake::WaitSet)),
        ),
        Case::new(&["rt_async"], "shmipc", Rt, Box::new(peers::rt_async)),
        Case::new(
            &["rt_block"],
            "futex",
            Rt,
            Box::new(|e| rt::rt_futex(e, false)),
        ),
        Case::new(
            &["rt_block"],
            "futex_spin",
            Rt,
            Box::new(|e| rt::rt_futex(e, true)),
        ),
        Case::new(
            &["rt_block", "sem_pingpong"],
            "posix_sem",
            Rt,
            Box::new(|e| rt::rt_posix_sem(e, false)),
        ),
        Case::new(
            &["rt_block", "sem_pingpong"],
            "posix_sem_spin",
            Rt,
            Box::new(|e| rt::rt_posix_sem(e, true)),
        ),
        Case::new(
            &["rt_block"],
            "pipe",
            Rt,
            Box::new(|e| rt::rt_pipe(e, false)),
        ),
        Case::new(&["rt_block"], "uds", Rt, Box::new(|e| rt::rt_uds(e, false))),
        Case::new(
            &["rt_block"],
            "ipc_channel",
            Rt,
            Box::new(rt::rt_ipc_channel),
        ),
        Case::new(
            &["rt_block"],
            "iceoryx2",
            Rt,
            Box::new(|e| iox::rt_iceoryx2(e, iox::Wake::Listener)),
        ),
        Case::new(&["sem_pingpong"], "shmipc", Rt, Box::new(rt::sem_shmipc)),
        // ---- small items
        Case::new(
            &["tp_spsc_u64"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_spsc::<u64>(e, tp::RING)),
        ),
        Case::new(
            &["tp_spsc_u64", "tp_spsc_threads"],
            "rtrb",
            Mmsg,
            Box::new(tp::tp_rtrb),
        ),
        Case::new(
            &["tp_spsc_u64", "tp_mpmc_1p1c"],
            "crossbeam",
            Mmsg,
            Box::new(|e| tp::tp_crossbeam(e, 1, 1, true)),
        ),
        Case::new(&["tp_spsc_u64"], "pipe", Mmsg, Box::new(tp::tp_pipe)),
        Case::new(
            &["tp_spsc_threads"],
            "shmipc",
            Mmsg,
            Box::new(tp::tp_shmipc_spsc_threads),
        ),
        Case::new(
            &["tp_spsc_64b"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_spsc::<[u8; 64]>(e, tp::RING)),
        )
        .bytes(64),
        Case::new(
            &["tp_mpmc_u64"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_mpmc(e, 2, 2, false)),
        ),
        Case::new(
            &["tp_mpmc_u64"],
            "crossbeam",
            Mmsg,
            Box::new(|e| tp::tp_crossbeam(e, 2, 2, false)),
        ),
        Case::new(
            &["tp_mpmc_1p1c"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_mpmc(e, 1, 1, true)),
        ),
        Case::new(
            &["tp_mpmc_2p2c_pinned"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_mpmc(e, 2, 2, true)),
        ),
        Case::new(
            &["tp_mpmc_2p2c_pinned"],
            "crossbeam",
            Mmsg,
            Box::new(|e| tp::tp_crossbeam(e, 2, 2, true)),
        ),
    ];
    // ---- byte messages, every size
    for size in SIZES {
        let w = bytes_workload(size);
        let w = [w.as_str()];
        let mut sized = vec![
            Case::new(
                &w,
                "shmipc",
                Gbs,
                Box::new(move |e| bytes::bytes_shmipc(e, size, 1, true)),
            ),
            Case::new(
                &w,
                "shmipc_shared",
                Gbs,
                Box::new(move |e| bytes::bytes_shmipc(e, size, 1, false)),
            ),
            Case::new(
                &w,
                "pipe",
                Gbs,
                Box::new(move |e| bytes::bytes_pipe(e, size)),
            ),
            Case::new(&w, "uds", Gbs, Box::new(move |e| bytes::bytes_uds(e, size))),
            Case::new(
                &w,
                "ipc_channel",
                Gbs,
                Box::new(move |e| bytes::bytes_ipc_channel(e, size)),
            ),
            Case::new(
                &w,
                "iceoryx2",
                Gbs,
                Box::new(move |e| iox::bytes_iceoryx2(e, size, bytes::ring_messages(size))),
            ),
            Case::new(
                &w,
                "two_copy",
                Gbs,
                Box::new(move |e| bytes::bytes_two_copy(e, size)),
            )
            .limit(),
            Case::new(
                &w,
                "memcpy",
                Gbs,
                Box::new(move |e| bytes::bytes_memcpy(e, size)),
            )
            .limit(),
        ];
        if py && size == 64 {
            sized.push(Case::new(
                &w,
                "py_mp",
                Gbs,
                Box::new(move |e| py::bytes(e, size)),
            ));
        }
        v.extend(sized.into_iter().map(|c| c.bytes(size)));
    }
    if py {
        v.push(Case::new(
            &["rt_block"],
            "py_mp",
            Rt,
            Box::new(py::rt_block),
        ));
    }
    // ---- typed messages (serde)
    v.extend([
        Case::new(
            &["typed_small"],
            "shmipc",
            Mmsg,
            Box::new(|e| typed::typed_shmipc(e, true)),
        ),
        Case::new(
            &["typed_small"],
            "shmipc_shared",
            Mmsg,
            Box::new(|e| typed::typed_shmipc(e, false)),
        ),
        Case::new(
            &["typed_small"],
            "ipc_channel",
            Mmsg,
            Box::new(typed::typed_ipc_channel),
        ),
        Case::new(&["typed_small"], "pipe", Mmsg, Box::new(typed::typed_pipe)),
    ]);
    if py {
        v.push(Case::new(
            &["typed_small"],
            "py_mp",
            Mmsg,
            Box::new(py::typed_small),
        ));
    }
    // ---- locks
    v.extend([
        Case::new(
            &["lock_uncontended"],
            "shmipc",
            Op,
            Box::new(locks::unc_shmipc),
        ),
        Case::new(
            &["lock_uncontended"],
            "pthread_mutex",
            Op,
            Box::new(|e| locks::unc_pthread(e, libc::PTHREAD_MUTEX_NORMAL)),
        ),
        Case::new(
            &["lock_uncontended"],
            "pthread_adaptive",
            Op,
            Box::new(|e| locks::unc_pthread(e, libc::PTHREAD_MUTEX_ADAPTIVE_NP)),
        ),
        Case::new(
            &["lock_uncontended"],
            "raw_sync",
            Op,
            Box::new(locks::unc_raw_sync),
        ),
        Case::new(
            &["lock_contended"],
            "shmipc",
            Op,
            Box::new(locks::cont_shmipc),
        ),
        Case::new(
            &["lock_contended"],
            "pthread_mutex",
            Op,
            Box::new(|e| locks::cont_pthread(e, libc::PTHREAD_MUTEX_NORMAL)),
        ),
        Case::new(
            &["lock_contended"],
            "pthread_adaptive",
            Op,
            Box::new(|e| locks::cont_pthread(e, libc::PTHREAD_MUTEX_ADAPTIVE_NP)),
        ),
        Case::new(
            &["lock_contended"],
            "raw_sync",
            Op,
            Box::new(locks::cont_raw_sync),
        ),
    ]);
    // ---- scaling: producers (1 consumer); P = 1 of the byte queue is
    // bytes_64's shmipc_shared case (its shmipc case holds sole handles).
    for p in PRODUCERS {
        let w = format!("scale_mpmc_{p}p");
        let w = [w.as_str()];
        v.push(Case::new(
            &w,
            "shmipc",
            Mmsg,
            Box::new(move |e| tp::tp_shmipc_mpmc(e, p, 1, false)),
        ));
        v.push(Case::new(
            &w,
            "crossbeam",
            Mmsg,
            Box::new(move |e| tp::tp_crossbeam(e, p, 1, false)),
        ));
        if p > 1 {
            let w = format!("scale_bytes_{p}p");
            v.push(
                Case::new(
                    &[w.as_str()],
                    "shmipc",
                    Gbs,
                    Box::new(move |e| bytes::bytes_shmipc(e, 64, p, false)),
                )
                .bytes(64),
            );
        }
    }
    // ---- scaling: SPSC item size and capacity (shmipc alone)
    v.extend([
        Case::new(
            &["scale_spsc_512b"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_spsc::<[u8; 512]>(e, tp::RING)),
        ),
        Case::new(
            &["scale_spsc_cap16"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_spsc::<u64>(e, 16)),
        ),
        Case::new(
            &["scale_spsc_cap256"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_spsc::<u64>(e, 256)),
        ),
        Case::new(
            &["scale_spsc_cap16384"],
            "shmipc",
            Mmsg,
            Box::new(|e| tp::tp_shmipc_spsc::<u64>(e, 16384)),
        ),
    ]);
    for c in v.iter_mut() {
        if c.size == 0 && c.unit != Unit::Rt && c.unit != Unit::Op {
            c.size = 8;
        }
    }
    v
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// What one `Instant::now()` costs here (each timed round trip includes
/// one).
fn clock_cost_ns() -> f64 {
    let start = Instant::now();
    let mut last = start;
    for _ in 0..100_000 {
        last = std::hint::black_box(Instant::now());
    }
    (last - start).as_nanos() as f64 / 100_000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let verbose = std::env::args().any(|a| a == "--verbose");
    let (reps, dur) = if quick {
        (3, Duration::from_millis(50))
    } else {
        (7, Duration::from_millis(250))
    };
    iceoryx2::prelude::set_log_level(iceoryx2::prelude::LogLevel::Error);
    let env = Env {
        dur,
        names: Unlinker::new("bench"),
        iox: iox::Iox::new(),
        python: py::find(),
    };
    remove_leftovers();
    // SHMIPC_BENCH_FILTER=text keeps only the cases whose workload or
    // implementation contains `text`.
    // Several texts, comma-separated, keep the cases any of them keeps.
    let filter = std::env::var("SHMIPC_BENCH_FILTER").unwrap_or_default();
    let filters: Vec<&str> = filter.split(',').collect();
    let mut cases: Vec<Case> = cases(&env)
        .into_iter()
        .filter(|c| {
            filters
                .iter()
                .any(|f| c.imp.contains(f) || c.workloads.iter().any(|w| w.contains(f)))
        })
        .collect();
    let n = cases.len();
    let machine = sys::machine();
    let load_before = load_average();
    println!(
        "shmipc compare: {n} cases x {reps} repetitions of {} ms{}",
        dur.as_millis(),
        if quick { " (--quick)" } else { "" },
    );
    println!("{machine}");
    match &env.python {
        Some(_) => println!("py_mp: {}", py::version()),
        None => println!("py_mp: skipped (no python3 with multiprocessing)"),
    }
    let begun = Instant::now();
    for rep in 0..reps {
        // Interleave: each repetition starts at another case, and goes the
        // other way every second time.
        let offset = rep * n / reps;
        for k in 0..n {
            let i = if rep % 2 == 0 {
                (offset + k) % n
            } else {
                (offset + n - k) % n
            };
            let c = &mut cases[i];
            if verbose {
                eprintln!("  {} {}", c.workloads[0], c.imp);
            }
            let s = (c.run)(&env);
            c.samples.push(s);
        }
        eprintln!(
            "  repetition {}/{reps} done after {:.1} s",
            rep + 1,
            begun.elapsed().as_secs_f64()
        );
    }
    // The counting pass: once more, with system calls counted. Python
    // counts nothing of the kind, so it sits this one out.
    sys::COUNTING.store(true, Ordering::Relaxed);
    for c in cases.iter_mut().filter(|c| c.imp != "py_mp") {
        if verbose {
            eprintln!("  counting: {} {}", c.workloads[0], c.imp);
        }
        c.counted = Some((c.run)(&env));
    }
    sys::COUNTING.store(false, Ordering::Relaxed);
    eprintln!(
        "  counting pass done after {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    sys::pin(None);
    let context = report::Context {
        machine,
        reps,
        dur,
        quick,
        load_before,
        load_after: load_average(),
        clock_ns: clock_cost_ns(),
        seconds: begun.elapsed().as_secs_f64(),
    };
    report::report(&cases, &context);
}

/// Removes what earlier runs that were killed (so never ran their
/// destructors) left behind: their shmipc names and iceoryx2 files. Only
/// names of processes that no longer exist are touched.
fn remove_leftovers() {
    let dead = |pid: &str| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = if let Some(rest) = name.strip_prefix("shmipcbench") {
                rest.split('_').next()
            } else if let Some(rest) = name.strip_prefix("shmipc-bench-") {
                rest.split('-').next()
            } else {
                None
            };
            if pid
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && dead(p))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/tmp") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(p) = name.strip_prefix("shmipc-bench-iox2-") {
                if p.bytes().all(|b| b.is_ascii_digit()) && dead(p) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}
