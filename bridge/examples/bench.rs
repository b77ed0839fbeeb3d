//! Throughput and latency through two bridges (host A's queue → bridge A
//! → Zenoh over 127.0.0.1 → bridge B → host B's queue), against a direct
//! Zenoh publish-subscribe between two sessions of the same payloads, in
//! the same run. Both sides run in this process; only loopback is used.
//!
//! Fairness: every queue's ring holds 256 of the largest messages (the
//! direct subscriber's channel holds 256 too); the two paths take turns,
//! alternating which goes first, and each figure is the median over the
//! turns; CPU is this process's (all four sessions and both bridges) per
//! message, from `CLOCK_PROCESS_CPUTIME_ID`.
//!
//! `cargo run --release --example bench [-- --quick] [--spin MICROSECONDS]`

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmipc::{ByteQueue, BytesConfig, Named, Unlinker};
use shmipc_bridge::{Bridge, Config, Direction, KindName, MappingConfig};
use zenoh::handlers::FifoChannel;
use zenoh::qos::CongestionControl;
use zenoh::sample::Locality;
use zenoh::{Session, Wait};

const PATIENCE: Duration = Duration::from_secs(60);

fn port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn session(listen: Option<u16>, connect: Option<u16>) -> Session {
    let mut zc = zenoh::Config::default();
    let ep = |p: Option<u16>| match p {
        Some(p) => format!("[\"tcp/127.0.0.1:{p}\"]"),
        None => "[]".to_owned(),
    };
    zc.insert_json5("mode", "\"peer\"").unwrap();
    zc.insert_json5("listen/endpoints", &ep(listen)).unwrap();
    zc.insert_json5("connect/endpoints", &ep(connect)).unwrap();
    zc.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    zenoh::open(zc).wait().unwrap()
}

fn payload(size: usize, i: u64) -> Vec<u8> {
    let mut m = vec![0u8; size.max(8)];
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

fn index(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

/// This process's CPU time so far (every thread's).
fn cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call's duration.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A ring for 256 messages of up to `max` bytes (16-byte record headers,
/// records 8-byte aligned).
fn roomy(max: usize) -> BytesConfig {
    let record = (max + 16).next_multiple_of(8);
    BytesConfig::new((256 * record).next_power_of_two(), max)
}

/// Direct Zenoh: messages per second, one-way, publisher to subscriber.
fn direct_throughput(a: &Session, b: &Session, key: &str, size: usize, n: u64) -> f64 {
    let sub = b
        .declare_subscriber(key.to_owned())
        .with(FifoChannel::new(256))
        .wait()
        .unwrap();
    let publ = a
        .declare_publisher(key.to_owned())
        .congestion_control(CongestionControl::Block)
        .allowed_destination(Locality::Remote)
        .wait()
        .unwrap();
    while !publ.matching_status().wait().unwrap().matching() {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let rx = std::thread::spawn(move || {
        for i in 0..n {
            let s = sub
                .recv_timeout(PATIENCE)
                .unwrap()
                .expect("direct: a message");
            assert_eq!(index(&s.payload().to_bytes()), i, "direct: order");
        }
    });
    for i in 0..n {
        publ.put(payload(size, i)).wait().unwrap();
    }
    rx.join().unwrap();
    n as f64 / start.elapsed().as_secs_f64()
}

/// Direct Zenoh: round trips (ping on one key, pong on another).
fn direct_latency(a: &Session, b: &Session, key: &str, size: usize, n: usize) -> Vec<Duration> {
    let (ping, pong) = (format!("{key}/ping"), format!("{key}/pong"));
    let b_sub = b.declare_subscriber(ping.clone()).wait().unwrap();
    let b_pub = b.declare_publisher(pong.clone()).wait().unwrap();
    let a_sub = a.declare_subscriber(pong).wait().unwrap();
    let a_pub = a.declare_publisher(ping).wait().unwrap();
    while !a_pub.matching_status().wait().unwrap().matching()
        || !b_pub.matching_status().wait().unwrap().matching()
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let echo = std::thread::spawn(move || {
        for _ in 0..n {
            let s = b_sub.recv_timeout(PATIENCE).unwrap().expect("direct: ping");
            b_pub.put(s.payload().clone()).wait().unwrap();
        }
    });
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        a_pub.put(payload(size, i)).wait().unwrap();
        let s = a_sub.recv_timeout(PATIENCE).unwrap().expect("direct: pong");
        rtts.push(t.elapsed());
        assert_eq!(index(&s.payload().to_bytes()), i);
    }
    echo.join().unwrap();
    rtts
}

struct Bridged {
    _names: Unlinker,
    _bridges: [Bridge; 2],
    a_out: ByteQueue,
    a_in: ByteQueue,
    b_in: ByteQueue,
    b_out: ByteQueue,
}

/// Two bridges, each exporting one queue and importing another:
/// A's `out` → B's `in` and B's `out` → A's `in`.
fn bridged(key: &str, max: usize, spin_us: Option<u64>) -> Bridged {
    let names = Unlinker::new("bridge-bench");
    let (pa, pb) = (names.name("a-"), names.name("b-"));
    let cfg = roomy(max);
    let mk = |prefix: &str, n: &str| {
        let s = format!("{prefix}{n}");
        names.adopt(&s);
        names.adopt(&format!("{s}.bridge-in"));
        names.adopt(&format!("{s}.bridge-out"));
        ByteQueue::create(&s, cfg).unwrap()
    };
    let (a_out, a_in, b_in, b_out) = (mk(&pa, "out"), mk(&pa, "in"), mk(&pb, "in"), mk(&pb, "out"));
    let port = port();
    let config = |id: &str, prefix: &str, listen: bool| {
        let mut c = Config::new(id);
        c.prefix = prefix.to_owned();
        if listen {
            c.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
        } else {
            c.zenoh.connect = vec![format!("tcp/127.0.0.1:{port}")];
        }
        let (o, i) = if listen { ("ab", "ba") } else { ("ba", "ab") };
        c.mappings.push(MappingConfig::new(
            Direction::Export,
            KindName::Bytes,
            "out",
            &format!("{key}/{o}"),
        ));
        c.mappings.push(MappingConfig::new(
            Direction::Import,
            KindName::Bytes,
            "in",
            &format!("{key}/{i}"),
        ));
        for m in &mut c.mappings {
            m.spin_us = spin_us;
        }
        c
    };
    let a = Bridge::start(config(&pa, &pa, true)).unwrap();
    let b = Bridge::start(config(&pb, &pb, false)).unwrap();
    Bridged {
        _names: names,
        _bridges: [a, b],
        a_out,
        a_in,
        b_in,
        b_out,
    }
}

fn bridged_throughput(br: &Bridged, size: usize, n: u64) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..n {
                let m = br
                    .b_in
                    .recv_vec_timeout(PATIENCE)
                    .expect("bridged: a message");
                assert_eq!(index(&m), i, "bridged: order");
            }
        });
        for i in 0..n {
            br.a_out.send_timeout(&payload(size, i), PATIENCE).unwrap();
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

fn bridged_latency(br: &Bridged, size: usize, n: usize) -> Vec<Duration> {
    let mut rtts = Vec::with_capacity(n);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..n {
                let m = br.b_in.recv_vec_timeout(PATIENCE).expect("bridged: ping");
                br.b_out.send_timeout(&m, PATIENCE).unwrap();
            }
        });
        for i in 0..n as u64 {
            let t = Instant::now();
            br.a_out.send_timeout(&payload(size, i), PATIENCE).unwrap();
            let m = br.a_in.recv_vec_timeout(PATIENCE).expect("bridged: pong");
            rtts.push(t.elapsed());
            assert_eq!(index(&m), i);
        }
    });
    rtts
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One path's figures over the turns.
#[derive(Default)]
struct Turns {
    rate: Vec<f64>,
    cpu_ns: Vec<f64>,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
}

impl Turns {
    fn throughput(&mut self, n: u64, run: impl FnOnce() -> f64) {
        let c = cpu();
        self.rate.push(run());
        self.cpu_ns.push((cpu() - c).as_nanos() as f64 / n as f64);
    }

    fn latency(&mut self, mut rtts: Vec<Duration>) {
        // One way: half the round trip.
        self.p50_us
            .push(pct(&mut rtts, 0.5).as_secs_f64() * 1e6 / 2.0);
        self.p99_us
            .push(pct(&mut rtts, 0.99).as_secs_f64() * 1e6 / 2.0);
    }

    fn medians(&mut self) -> [f64; 4] {
        [
            median(&mut self.rate),
            median(&mut self.cpu_ns),
            median(&mut self.p50_us),
            median(&mut self.p99_us),
        ]
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--spin N`: every mapping's `spin_us` (how long the bridge's export
    // polls its queue before it sleeps); unset keeps the queue's default.
    let spin_us = args
        .iter()
        .position(|a| a == "--spin")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse::<u64>().expect("--spin takes microseconds"));
    let (turns, budget, cap, rt) = if quick {
        (3, 16usize << 20, 20_000u64, 500usize)
    } else {
        (5, 128 << 20, 100_000, 2_000)
    };
    let base = format!("shmipc-bench/{}", std::process::id());
    let p = port();
    let (za, zb) = (
        Arc::new(session(Some(p), None)),
        Arc::new(session(None, Some(p))),
    );
    println!(
        "CPU: {} ({} threads available)",
        cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{turns} alternating turns per size, medians; up to {cap} messages ({} MiB) per \
         throughput turn, {rt} round trips per latency turn; mappings' spin_us: {}",
        budget >> 20,
        spin_us.map_or("default".to_owned(), |us| us.to_string())
    );
    println!(
        "{:>6}  {:>10} {:>10} {:>5}  {:>8} {:>8} {:>5}  {:>8} {:>8} {:>5}  {:>8} {:>8}",
        "bytes",
        "direct/s",
        "bridge/s",
        "x",
        "d cpu ns",
        "b cpu ns",
        "x",
        "d p50 us",
        "b p50 us",
        "x",
        "d p99 us",
        "b p99 us"
    );
    for (i, size) in [8usize, 64, 1024, 16384].into_iter().enumerate() {
        let n = ((budget / size.max(64)) as u64).min(cap);
        let br = bridged(&format!("{base}/b{i}"), size.max(64), spin_us);
        // Warm both paths up.
        direct_throughput(&za, &zb, &format!("{base}/w{i}"), size, 2_000);
        bridged_throughput(&br, size, 2_000);
        let (mut d, mut b) = (Turns::default(), Turns::default());
        for t in 0..turns {
            let direct = |d: &mut Turns| {
                d.throughput(n, || {
                    direct_throughput(&za, &zb, &format!("{base}/t{i}-{t}"), size, n)
                });
                d.latency(direct_latency(
                    &za,
                    &zb,
                    &format!("{base}/l{i}-{t}"),
                    size,
                    rt,
                ));
            };
            let bridge = |b: &mut Turns| {
                b.throughput(n, || bridged_throughput(&br, size, n));
                b.latency(bridged_latency(&br, size, rt));
            };
            if t % 2 == 0 {
                direct(&mut d);
                bridge(&mut b);
            } else {
                bridge(&mut b);
                direct(&mut d);
            }
        }
        let ([dt, dc, d50, d99], [bt, bc, b50, b99]) = (d.medians(), b.medians());
        println!(
            "{size:>6}  {dt:>10.0} {bt:>10.0} {:>4.2}x  {dc:>8.0} {bc:>8.0} {:>4.2}x  \
             {d50:>8.1} {b50:>8.1} {:>4.2}x  {d99:>8.1} {b99:>8.1}",
            dt / bt,
            bc / dc,
            b50 / d50,
        );
    }
    println!(
        "(x: bridge over direct; throughput one way; CPU of the whole process per message; \
         latency half the round trip)"
    );
}
