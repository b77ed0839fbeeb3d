//! Throughput and latency through two bridges (host A's queue → bridge A
//! → Zenoh over 127.0.0.1 → bridge B → host B's queue), against a direct
//! Zenoh publish-subscribe between two sessions of the same payloads, in
//! the same run. Both sides run in this process; only loopback is used.
//!
//! `cargo run --release --example bench [-- --quick]`

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
fn bridged(key: &str, max: usize) -> Bridged {
    let names = Unlinker::new("bridge-bench");
    let (pa, pb) = (names.name("a-"), names.name("b-"));
    let cfg = BytesConfig::for_max_message(max).unwrap();
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, rt) = if quick {
        (20_000u64, 1_000usize)
    } else {
        (200_000, 10_000)
    };
    let base = format!("shmipc-bench/{}", std::process::id());
    let p = port();
    let (za, zb) = (
        Arc::new(session(Some(p), None)),
        Arc::new(session(None, Some(p))),
    );
    println!("{n} messages per throughput run, {rt} round trips per latency run");
    println!(
        "{:>6}  {:>12} {:>12} {:>6}  {:>10} {:>10} {:>10} {:>10} {:>6}",
        "bytes",
        "direct msg/s",
        "bridge msg/s",
        "ratio",
        "direct p50",
        "bridge p50",
        "direct p99",
        "bridge p99",
        "ratio"
    );
    for (i, size) in [8usize, 64, 1024, 16384].into_iter().enumerate() {
        let br = bridged(&format!("{base}/b{i}"), size.max(64));
        // Warm both paths up.
        direct_throughput(&za, &zb, &format!("{base}/w{i}"), size, 2_000);
        bridged_throughput(&br, size, 2_000);
        let dt = direct_throughput(&za, &zb, &format!("{base}/t{i}"), size, n);
        let bt = bridged_throughput(&br, size, n);
        let mut dl = direct_latency(&za, &zb, &format!("{base}/l{i}"), size, rt);
        let mut bl = bridged_latency(&br, size, rt);
        let (d50, b50) = (pct(&mut dl, 0.5), pct(&mut bl, 0.5));
        let (d99, b99) = (pct(&mut dl, 0.99), pct(&mut bl, 0.99));
        println!(
            "{size:>6}  {dt:>12.0} {bt:>12.0} {:>5.2}x  {:>8.1}us {:>8.1}us {:>8.1}us {:>8.1}us {:>5.2}x",
            dt / bt,
            d50.as_secs_f64() * 1e6 / 2.0,
            b50.as_secs_f64() * 1e6 / 2.0,
            d99.as_secs_f64() * 1e6 / 2.0,
            b99.as_secs_f64() * 1e6 / 2.0,
            b50.as_secs_f64() / d50.as_secs_f64(),
        );
    }
    println!(
        "(latency: half the median / 99th-percentile round trip; ratios: bridge cost over direct)"
    );
}
