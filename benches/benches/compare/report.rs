//! The report: peers and limits apart, paired ratios with their spread,
//! percentiles, costs, lock fairness, scaling, targets and RESULT lines.
//! Every table is printed with the machine it ran on.

use std::time::Duration;

use crate::harness::{Case, Kind, Unit};
use crate::stats::{median, min_max, Hist, Sample};
use crate::{bytes_workload, PRODUCERS, SIZES};

pub struct Context {
    pub machine: String,
    pub reps: usize,
    pub dur: Duration,
    pub quick: bool,
    pub load_before: String,
    pub load_after: String,
    pub clock_ns: f64,
    pub seconds: f64,
}

/// The workloads of the main tables, in order.
const MAIN: &[&str] = &[
    "rt_busy",
    "rt_adaptive",
    "rt_block",
    "rt_waitset",
    "rt_async",
    "sem_pingpong",
    "tp_spsc_u64",
    "tp_spsc_threads",
    "tp_spsc_64b",
    "tp_mpmc_u64",
    "tp_mpmc_1p1c",
    "tp_mpmc_2p2c_pinned",
    "bytes_64",
    "bytes_4k",
    "bytes_64k",
    "typed_small",
    "lock_uncontended",
    "lock_contended",
];

/// What each main workload is, for the report.
const ABOUT: &[(&str, &str)] = &[
    ("rt_busy", "round trip of a u64, both sides poll; 2 processes, 2 cores"),
    ("rt_adaptive", "round trip of a u64 through the blocking calls, waiting adaptively (spin, yield, then sleep); 2 processes, 2 cores"),
    ("rt_block", "round trip of a u64, both sides sleep when idle (WaitStrategy::Park); 2 processes, 2 cores"),
    ("rt_waitset", "rt_block's round trip, each side sleeping in shmipc::wait on its queue and an event; 2 processes, 2 cores"),
    ("rt_async", "round trip of a u64 through MPMC queues, each side a current-thread tokio runtime awaiting pop_async; 2 processes, 2 cores"),
    ("sem_pingpong", "round trip through two semaphores; 2 processes, 2 cores"),
    ("tp_spsc_u64", "one-way u64s, 1 producer / 1 consumer pinned; shmipc across processes, rtrb and crossbeam between threads"),
    ("tp_spsc_threads", "one-way u64s between 2 pinned threads of one process: shmipc (anonymous mapping) against rtrb"),
    ("tp_spsc_64b", "one-way [u8; 64] items through shmipc's SPSC queue, 2 processes"),
    ("tp_mpmc_u64", "one-way u64s, 2 producers / 2 consumers, unpinned (4 parties on 2 cores); crossbeam between threads"),
    ("tp_mpmc_1p1c", "one-way u64s through the MPMC queues, 1 producer / 1 consumer pinned"),
    ("tp_mpmc_2p2c_pinned", "one-way u64s, 2 producers / 2 consumers, one of each pinned to each core"),
    ("bytes_64", "one-way 64-byte messages, copied in and out, 2 processes pinned"),
    ("bytes_4k", "as bytes_64, 4 KiB messages"),
    ("bytes_64k", "as bytes_64, 64 KiB messages"),
    ("typed_small", "one-way serde structs (u64, 16-byte String, 8 f32s) built and decoded afresh, 2 processes pinned"),
    ("lock_uncontended", "lock + unlock on one thread"),
    ("lock_contended", "2 processes on 2 cores increment one counter under the lock; ns per increment"),
];

fn header(ctx: &Context, title: &str) {
    println!("\n== {title}");
    println!("   {}", ctx.machine);
}

fn in_w<'a>(cases: &'a [Case], w: &'a str) -> impl Iterator<Item = &'a Case> + 'a {
    cases.iter().filter(move |c| c.in_workload(w))
}

fn find<'a>(cases: &'a [Case], w: &str, imp: &str) -> Option<&'a Case> {
    cases.iter().find(|c| c.imp == imp && c.in_workload(w))
}

/// Per repetition: how many times better shmipc (`base`) did than
/// `other` (above 1: shmipc better).
fn better(base: &Case, other: &Case) -> Vec<f64> {
    base.samples
        .iter()
        .zip(&other.samples)
        .map(|(b, o)| {
            if base.unit.lower_is_better() {
                o.value / b.value
            } else {
                b.value / o.value
            }
        })
        .collect()
}

fn spread(xs: &[f64]) -> String {
    let (lo, hi) = min_max(xs);
    format!("{}..{}", num(lo), num(hi))
}

/// A figure with three significant digits or so.
fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn ratio_cell(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "-".into();
    }
    format!("{:.2}x ({})", median(xs), spread(xs))
}

/// Wall-clock nanoseconds per operation of a sample.
fn ns_per_op(c: &Case, s: &Sample) -> f64 {
    match c.unit {
        Unit::Rt | Unit::Op => s.value,
        Unit::Mmsg => 1e3 / s.value,
        Unit::Gbs => c.size as f64 / s.value,
    }
}

pub fn report(cases: &[Case], ctx: &Context) {
    let mains: Vec<&str> = MAIN
        .iter()
        .copied()
        .filter(|w| cases.iter().any(|c| c.in_workload(w)))
        .collect();

    header(ctx, "run");
    println!(
        "   {} repetitions of {} ms per case{}, interleaved; {:.0} s in all; load average before {}, after {}",
        ctx.reps,
        ctx.dur.as_millis(),
        if ctx.quick { " (--quick)" } else { "" },
        ctx.seconds,
        ctx.load_before,
        ctx.load_after
    );
    println!("   ns/rt = nanoseconds per ROUND TRIP (two messages, one each way); iceoryx2's own benchmarks print half a round trip.");
    println!("   ratios are paired: shmipc against the peer within each repetition; shown as median (min..max over the repetitions).");
    for w in &mains {
        if let Some((_, about)) = ABOUT.iter().find(|(x, _)| x == w) {
            println!("   {w:<20} {about}");
        }
    }

    header(
        ctx,
        "competitors (vs shmipc: how many times better shmipc is; above 1 shmipc wins)",
    );
    println!(
        "{:<20} {:<17} {:>10} {:<7} {:>21}  vs shmipc, paired",
        "workload", "implementation", "median", "unit", "spread"
    );
    for w in &mains {
        let base = find(cases, w, "shmipc");
        for c in in_w(cases, w).filter(|c| c.kind != Kind::Limit) {
            let v = c.values();
            let r = match base {
                Some(b) if b.kind == Kind::Ours && c.kind == Kind::Peer => {
                    ratio_cell(&better(b, c))
                }
                _ => "".into(),
            };
            println!(
                "{:<20} {:<17} {:>10} {:<7} {:>21}  {}",
                w,
                c.imp,
                num(median(&v)),
                c.unit.name(),
                spread(&v),
                r
            );
        }
    }

    header(ctx, "limits (not competitors: what no implementation beats here; shmipc as a fraction of the limit)");
    println!(
        "{:<20} {:<12} {:>10} {:<7} {:>21}  shmipc's fraction of the limit, paired",
        "workload", "limit", "median", "unit", "spread"
    );
    println!("   spin_limit: one cache line each way, nothing else. memcpy: ONE copy, hot in cache, on ONE core.");
    println!("   two_copy: the copies a queue makes, across cores: a slot ring with one Release store per message each way, no headers or checks.");
    for w in mains
        .iter()
        .chain(["bytes_8", "bytes_512", "bytes_256k", "bytes_1m"].iter())
    {
        let base = find(cases, w, "shmipc");
        for c in in_w(cases, w).filter(|c| c.kind == Kind::Limit) {
            let v = c.values();
            let frac = base.map_or_else(|| "".into(), |b| ratio_cell(&better(b, c)));
            println!(
                "{:<20} {:<12} {:>10} {:<7} {:>21}  {}",
                w,
                c.imp,
                num(median(&v)),
                c.unit.name(),
                spread(&v),
                frac
            );
        }
    }

    latency(cases, ctx);
    costs(cases, ctx, &mains);
    fairness(cases, ctx);
    scaling(cases, ctx);
    notes(cases, ctx);
    targets(cases, ctx);

    println!();
    for c in cases {
        for w in &c.workloads {
            println!(
                "RESULT {w} {} {} {}",
                c.imp,
                num(median(&c.values())),
                c.unit.name()
            );
        }
    }
}

fn latency(cases: &[Case], ctx: &Context) {
    header(
        ctx,
        "latency per ROUND TRIP, ns (percentiles over every timed round trip of all repetitions)",
    );
    println!(
        "   the mean is the figure of the tables (back-to-back round trips); each timed round trip also includes one clock read, ~{:.0} ns here",
        ctx.clock_ns
    );
    println!(
        "{:<14} {:<17} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "workload", "implementation", "mean", "p50", "p99", "p99.9", "timed"
    );
    for w in [
        "rt_busy",
        "rt_block",
        "rt_waitset",
        "rt_async",
        "sem_pingpong",
    ] {
        for c in in_w(cases, w) {
            let mut h = Hist::new();
            for s in &c.samples {
                if let Some(x) = &s.hist {
                    h.merge(x);
                }
            }
            if h.count() == 0 {
                continue;
            }
            println!(
                "{:<14} {:<17} {:>9} {:>9} {:>9} {:>10} {:>9}",
                w,
                c.imp,
                num(median(&c.values())),
                num(h.quantile(0.5)),
                num(h.quantile(0.99)),
                num(h.quantile(0.999)),
                h.count()
            );
        }
    }
}

fn costs(cases: &[Case], ctx: &Context, mains: &[&str]) {
    header(ctx, "cost per operation (round trip, message or lock op)");
    println!("   cpu: getrusage (user + system) of every party over its measured interval, divided by the operations; cores: that CPU time over the wall time");
    println!("   IPIs: function-call interrupts (/proc/interrupts CAL, all CPUs, machine-wide: other work on the machine counts too) over the measured interval;");
    println!("   membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) sends one to every other core running a registered process, and waking a task on");
    println!("   another core is one too (so every blocking transport shows ~1 per wake-up). syscalls and membarrier calls:");
    println!("   counted with tracepoint counters (raw_syscalls:sys_enter, syscalls:sys_enter_membarrier) on every party's thread, in a separate pass");
    println!(
        "   whose figures are not used anywhere else (the tracepoint slows every system call)."
    );
    println!(
        "{:<20} {:<17} {:>10} {:>6} {:>6} {:>9} {:>10} {:>11}",
        "workload",
        "implementation",
        "cpu ns/op",
        "sys%",
        "cores",
        "IPIs/op",
        "syscalls",
        "membarrier"
    );
    for w in mains {
        for c in in_w(cases, w) {
            let per = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
                c.samples
                    .iter()
                    .filter(|s| s.ops > 0)
                    .filter_map(f)
                    .collect()
            };
            let cpu = per(&|s| Some(s.cpu_ns as f64 / s.ops as f64));
            let sys = per(&|s| (s.cpu_ns > 0).then(|| 100.0 * s.sys_ns as f64 / s.cpu_ns as f64));
            let cores = per(&|s| Some(s.cpu_ns as f64 / (s.ops as f64 * ns_per_op(c, s))));
            let ipis = per(&|s| s.ipis.map(|i| i as f64 / s.ops as f64));
            let counted = |f: fn(&Sample) -> Option<u64>| {
                c.counted
                    .as_ref()
                    .filter(|s| s.ops > 0)
                    .and_then(|s| f(s).map(|v| num(v as f64 / s.ops as f64)))
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "{:<20} {:<17} {:>10} {:>6} {:>6} {:>9} {:>10} {:>11}",
                w,
                c.imp,
                num(median(&cpu)),
                if sys.is_empty() {
                    "-".into()
                } else {
                    format!("{:.0}", median(&sys))
                },
                num(median(&cores)),
                if ipis.is_empty() {
                    "-".into()
                } else {
                    num(median(&ipis))
                },
                counted(|s| s.syscalls),
                counted(|s| s.membarriers),
            );
        }
    }
}

fn fairness(cases: &[Case], ctx: &Context) {
    let locks: Vec<&Case> = in_w(cases, "lock_contended").collect();
    if locks.is_empty() {
        return;
    }
    header(
        ctx,
        "lock_contended: how the increments split between the two processes",
    );
    println!("   share: increments made by the process on core 0 (50% is an even split); hand-offs: increments after which the other process held the lock next, per 1000");
    println!(
        "{:<17} {:>10} {:>18} {:>13}",
        "implementation", "ns/op", "share of core 0", "hand-offs/1k"
    );
    for c in locks {
        let share: Vec<f64> = c
            .samples
            .iter()
            .filter_map(|s| s.split)
            .map(|[a, b]| 100.0 * a as f64 / (a + b).max(1) as f64)
            .collect();
        let hand: Vec<f64> = c
            .samples
            .iter()
            .filter_map(|s| s.handoffs.map(|h| 1000.0 * h as f64 / s.ops.max(1) as f64))
            .collect();
        let (lo, hi) = min_max(&share);
        println!(
            "{:<17} {:>10} {:>7.0}% ({:.0}..{:.0}) {:>13}",
            c.imp,
            num(median(&c.values())),
            median(&share),
            lo,
            hi,
            num(median(&hand))
        );
    }
}

fn scaling(cases: &[Case], ctx: &Context) {
    let med = |w: &str, imp: &str| find(cases, w, imp).map(|c| median(&c.values()));
    let cell = |v: Option<f64>| v.map_or_else(|| "-".into(), num);

    if cases
        .iter()
        .any(|c| c.workloads[0].starts_with("scale_mpmc"))
    {
        header(ctx, "scaling: producers, one consumer, unpinned (OVERSUBSCRIBED: P + 1 parties on the cores above)");
        println!(
            "{:>10} {:>14} {:>14} {:>22} {:>16}",
            "producers", "shmipc mpmc", "crossbeam", "shmipc vs crossbeam", "shmipc bytes_64"
        );
        println!(
            "{:>10} {:>14} {:>14} {:>22} {:>16}",
            "", "Mmsg/s", "Mmsg/s", "paired", "Mmsg/s"
        );
        for p in PRODUCERS {
            let w = format!("scale_mpmc_{p}p");
            let r = match (find(cases, &w, "shmipc"), find(cases, &w, "crossbeam")) {
                (Some(a), Some(b)) => ratio_cell(&better(a, b)),
                _ => "-".into(),
            };
            let bw = if p == 1 {
                "bytes_64".to_string()
            } else {
                format!("scale_bytes_{p}p")
            };
            // P = 1: the shared path (bytes_64's `shmipc` row holds sole
            // handles, which no second producer could share).
            let imp = if p == 1 { "shmipc_shared" } else { "shmipc" };
            let bytes = med(&bw, imp).map(|gbs| gbs * 1e3 / 64.0);
            println!(
                "{:>10} {:>14} {:>14} {:>22} {:>16}",
                p,
                cell(med(&w, "shmipc")),
                cell(med(&w, "crossbeam")),
                r,
                cell(bytes)
            );
        }
    }

    let imps = [
        "shmipc",
        "shmipc_shared",
        "pipe",
        "uds",
        "ipc_channel",
        "iceoryx2",
        "py_mp",
        "two_copy",
        "memcpy",
    ];
    if SIZES
        .iter()
        .any(|s| find(cases, &bytes_workload(*s), "shmipc").is_some())
    {
        header(
            ctx,
            "scaling: message size, one-way byte messages, GB/s (medians)",
        );
        print!("{:>10}", "size");
        for i in imps {
            print!(" {i:>11}");
        }
        println!();
        for s in SIZES {
            let w = bytes_workload(s);
            print!("{:>10}", w.trim_start_matches("bytes_"));
            for i in imps {
                print!(" {:>11}", cell(med(&w, i)));
            }
            println!();
        }
        println!("   the same, shmipc against each (paired median; peers: how many times better shmipc is; limits: shmipc's fraction)");
        print!("{:>10}", "size");
        for i in &imps[1..] {
            print!(" {i:>11}");
        }
        println!();
        for s in SIZES {
            let w = bytes_workload(s);
            print!("{:>10}", w.trim_start_matches("bytes_"));
            for i in &imps[1..] {
                let r = match (find(cases, &w, "shmipc"), find(cases, &w, i)) {
                    (Some(a), Some(b)) => format!("{:.2}x", median(&better(a, b))),
                    _ => "-".into(),
                };
                print!(" {r:>11}");
            }
            println!();
        }
    }

    let spsc = [
        ("8 B items, capacity 1024", "tp_spsc_u64", 8.0),
        ("64 B items, capacity 1024", "tp_spsc_64b", 64.0),
        ("512 B items, capacity 1024", "scale_spsc_512b", 512.0),
        ("8 B items, capacity 16", "scale_spsc_cap16", 8.0),
        ("8 B items, capacity 256", "scale_spsc_cap256", 8.0),
        ("8 B items, capacity 16384", "scale_spsc_cap16384", 8.0),
    ];
    if spsc
        .iter()
        .any(|(_, w, _)| w.starts_with("scale") && med(w, "shmipc").is_some())
    {
        header(
            ctx,
            "scaling: shmipc's SPSC queue across processes, item size and capacity",
        );
        println!("{:<30} {:>10} {:>10}", "configuration", "Mmsg/s", "GB/s");
        for (what, w, size) in spsc {
            if let Some(m) = med(w, "shmipc") {
                println!("{what:<30} {:>10} {:>10}", num(m), num(m * size / 1e3));
            }
        }
    }
}

fn notes(cases: &[Case], ctx: &Context) {
    let with: Vec<&Case> = cases
        .iter()
        .filter(|c| c.samples.iter().any(|s| s.note.is_some()))
        .collect();
    if with.is_empty() {
        return;
    }
    header(
        ctx,
        "buffers the peers were given (matched to shmipc's ring)",
    );
    for c in with {
        if let Some(n) = c.samples.iter().find_map(|s| s.note.as_ref()) {
            println!("   {:<12} {:<12} {n}", c.workloads[0], c.imp);
        }
    }
}

/// A target of the issue: `workload`'s shmipc `op` `factor` × `other`
/// (`other_workload`'s, if it is another workload: then both are compared
/// as message rates).
struct Target {
    workload: &'static str,
    other: &'static str,
    other_workload: Option<&'static str>,
    factor: f64,
}

const fn t(workload: &'static str, other: &'static str, factor: f64) -> Target {
    Target {
        workload,
        other,
        other_workload: None,
        factor,
    }
}

/// Issue 15 ([speed]).
const TARGETS: &[Target] = &[
    t("tp_mpmc_u64", "crossbeam", 1.0),
    t("tp_mpmc_2p2c_pinned", "crossbeam", 1.0),
    t("bytes_64", "pipe", 10.0),
    Target {
        workload: "bytes_64",
        other: "shmipc",
        other_workload: Some("tp_spsc_64b"),
        factor: 0.5,
    },
    t("bytes_4k", "memcpy", 0.25),
    t("bytes_64k", "memcpy", 0.5),
    t("bytes_64k", "uds", 5.0),
    Target {
        workload: "rt_adaptive",
        other: "shmipc",
        other_workload: Some("rt_busy"),
        factor: 3.0,
    },
];

/// Issue 11 ([typed]).
const TYPED: &[Target] = &[
    t("typed_small", "ipc_channel", 5.0),
    t("typed_small", "pipe", 5.0),
    t("typed_small", "py_mp", 50.0),
];

/// Issue 12 ([peers]): a round trip through `wait` and through tokio, each
/// against the plain blocking round trip of the same run.
const PEERS: &[Target] = &[
    Target {
        workload: "rt_waitset",
        other: "shmipc",
        other_workload: Some("rt_block"),
        factor: 1.5,
    },
    Target {
        workload: "rt_async",
        other: "shmipc",
        other_workload: Some("rt_block"),
        factor: 1.5,
    },
];

/// Earlier targets, kept as regression checks, with the fair peers beside
/// the ones they were first set against.
const EARLIER: &[Target] = &[
    t("rt_busy", "spin_limit", 1.5),
    t("rt_busy", "iceoryx2", 0.3),
    t("rt_block", "futex", 1.0),
    t("rt_block", "futex_spin", 1.0),
    t("rt_block", "posix_sem", 1.0),
    t("rt_block", "posix_sem_spin", 1.0),
    t("tp_spsc_u64", "rtrb", 1.0),
    t("tp_spsc_threads", "rtrb", 1.0),
    t("tp_mpmc_1p1c", "crossbeam", 1.0),
    t("lock_uncontended", "pthread_mutex", 1.0),
    t("lock_uncontended", "pthread_adaptive", 1.0),
    t("lock_contended", "pthread_mutex", 1.0),
    t("lock_contended", "pthread_adaptive", 1.0),
    t("sem_pingpong", "posix_sem", 1.0),
    t("sem_pingpong", "posix_sem_spin", 1.0),
];

/// A sample as a message rate (Mmsg/s) where the case is a stream of
/// messages of known size, else as is.
fn as_rate(c: &Case, s: &Sample) -> f64 {
    match c.unit {
        Unit::Gbs if c.size > 0 => s.value * 1e3 / c.size as f64,
        _ => s.value,
    }
}

fn target_lines(cases: &[Case], ctx: &Context, list: &[Target]) {
    let need = (5 * ctx.reps).div_ceil(7);
    for t in list {
        let ow = t.other_workload.unwrap_or(t.workload);
        let (Some(s), Some(o)) = (find(cases, t.workload, "shmipc"), find(cases, ow, t.other))
        else {
            continue;
        };
        let lower = s.unit.lower_is_better();
        // shmipc / other, per repetition (for ns: below 1 is better).
        let ratios: Vec<f64> = s
            .samples
            .iter()
            .zip(&o.samples)
            .map(|(a, b)| as_rate(s, a) / as_rate(o, b))
            .collect();
        let cleared = ratios
            .iter()
            .filter(|r| {
                if lower {
                    **r <= t.factor
                } else {
                    **r >= t.factor
                }
            })
            .count();
        let other = match t.other_workload {
            Some(w) => format!("{w} {}", t.other),
            None => t.other.to_string(),
        };
        let kind = if o.kind == Kind::Limit {
            " (limit)"
        } else {
            ""
        };
        println!(
            "  {:<20} shmipc {} {:>4}x {:<26} {}  cleared in {cleared}/{} repetitions; shmipc/{} = {} ({})",
            t.workload,
            if lower { "<=" } else { ">=" },
            t.factor,
            format!("{other}{kind}"),
            if cleared >= need { "HELD  " } else { "MISSED" },
            ratios.len(),
            t.other_workload.unwrap_or(t.other),
            num(median(&ratios)),
            spread(&ratios)
        );
    }
}

fn targets(cases: &[Case], ctx: &Context) {
    header(
        ctx,
        "targets (informational; HELD when at least 5 of 7 repetitions clear it)",
    );
    println!("  issue 15 [speed]:");
    target_lines(cases, ctx, TARGETS);
    println!("  {:<20} idle waiter <= 2% of a core: a test, not a benchmark (shm/tests/wait_strategy.rs)", "");
    println!("  issue 11 [typed]:");
    target_lines(cases, ctx, TYPED);
    println!("  issue 12 [peers]:");
    target_lines(cases, ctx, PEERS);
    println!("  earlier targets, with the fair peers beside the first ones:");
    target_lines(cases, ctx, EARLIER);
}
