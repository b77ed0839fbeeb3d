//! A bridge with nothing to move costs next to no processor time: its
//! waiters poll for a few microseconds (the queue's wait strategy, or a
//! mapping's `spin_us`), then sleep on the queue's futex, a slice at a
//! time. Measured with `getrusage` (processor time, not the time anything
//! took), over the whole process: the bridge's threads and Zenoh's.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use shmipc::{ByteQueue, BytesConfig, Named, Unlinker};
use shmipc_bridge::{counters, Bridge, Config, Direction, KindName, MappingConfig};

/// This process's user and system time so far, every thread's.
fn cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage for the call's duration.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    assert_eq!(r, 0, "getrusage");
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(u.ru_utime) + t(u.ru_stime)
}

#[test]
fn an_idle_bridge_uses_under_two_percent_of_a_core() {
    let names = Unlinker::new("bridge-idle");
    let prefix = names.name("i-");
    let seg = |n: &str| {
        let s = format!("{prefix}{n}");
        names.adopt(&s);
        s
    };
    let cfg = BytesConfig::for_max_message(64).unwrap();
    let _queues: Vec<ByteQueue> = ["out", "spin", "waits", "in"]
        .iter()
        .map(|n| ByteQueue::create(&seg(n), cfg).unwrap())
        .collect();
    for s in [
        "out.bridge-out",
        "spin.bridge-out",
        "waits.bridge-out",
        "in.bridge-in",
    ] {
        seg(s);
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = format!("shmipc-test/{}/idle", std::process::id());
    let mut config = Config::new(prefix.trim_start_matches('/'));
    config.prefix = prefix.clone();
    config.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
    // Two exports that wait on their empty queue (no subscriber needed),
    // one of them polling 50 µs before each sleep; one that waits for a
    // subscriber that never comes; an import of a key nobody publishes.
    let mut out = MappingConfig::new(Direction::Export, KindName::Bytes, "out", &key);
    out.wait_for_subscriber = false;
    let mut spin = MappingConfig::new(Direction::Export, KindName::Bytes, "spin", &key);
    spin.wait_for_subscriber = false;
    spin.spin_us = Some(50);
    let waits = MappingConfig::new(Direction::Export, KindName::Bytes, "waits", &key);
    let inn = MappingConfig::new(
        Direction::Import,
        KindName::Bytes,
        "in",
        &format!("{key}/in"),
    );
    config.mappings = vec![out, spin, waits, inn];
    let bridge = Bridge::start(config).unwrap();

    // Every mapping has opened its queue and recorded its run.
    let start = Instant::now();
    while (0..4).any(|i| bridge.last_error(i).is_some())
        || counters(&format!("{prefix}out.bridge-out")).map_or(true, |c| c.run == 0)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the mappings never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));

    let (wall, used) = (Instant::now(), cpu());
    std::thread::sleep(Duration::from_secs(1));
    let (wall, used) = (wall.elapsed(), cpu() - used);
    assert!(
        used.as_secs_f64() < 0.02 * wall.as_secs_f64(),
        "an idle bridge with four mappings used {used:?} of processor time in {wall:?}"
    );
    bridge.stop();
}
