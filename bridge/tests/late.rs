//! Late messages, made on purpose: a test peer publishes envelopes on a
//! key the bridge imports, from a source whose run restarts, and the
//! import must drop exactly those of an older run after a newer one (and a
//! number of the current run already seen), counting each in
//! `Counters::late`, while delivering the rest in order. The two-host
//! test can only allow `late > 0` (which link's thread delivers first is
//! the scheduler's choice); here the order is the test's.

mod common;

use std::time::{Duration, Instant};

use shmipc::{ByteQueue, BytesConfig, Named, Unlinker};
use shmipc_bridge::envelope::{host_hash, Header, Kind};
use shmipc_bridge::{counters, Bridge, Counters, Direction, KindName, MappingConfig};
use zenoh::Wait;

const MAX: usize = 64;

fn envelope(source: u64, run: u64, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Header {
        kind: Kind::Bytes,
        source,
        run,
        seq,
        shape: [MAX as u64, 0],
    }
    .write(&mut out);
    out.extend_from_slice(payload);
    out
}

/// Waits up to 60 s for `f` to give something.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_older_run_after_a_newer_one_and_a_repeat_are_late_and_dropped() {
    let names = Unlinker::new("bridge-late");
    let port = common::free_port();
    let (prefix, mut config) = common::listening(&names, "b-", port);
    let inq = ByteQueue::create(
        &common::seg(&names, &prefix, "in"),
        BytesConfig::for_max_message(MAX).unwrap(),
    )
    .unwrap();
    let status = common::seg(&names, &prefix, "in.bridge-in");
    let key = format!("shmipc-test/{}/late", std::process::id());
    config.zenoh.retry_ms = 100;
    config.mappings.push(MappingConfig::new(
        Direction::Import,
        KindName::Bytes,
        "in",
        &key,
    ));
    let bridge = Bridge::start(config).unwrap();
    let peer = common::peer(port);
    let publisher = peer.declare_publisher(key.clone()).wait().unwrap();

    // Until the bridge's subscription has reached us, puts are dropped:
    // probe from a source of its own, with numbers in turn (never late),
    // until one arrives.
    let probe = host_hash("late-test-probe");
    let mut buf = [0u8; MAX];
    let mut n = 0;
    eventually("a probe crosses", || {
        publisher
            .put(envelope(probe, 1, n, b"probe"))
            .wait()
            .unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
        let mut got = None;
        while let Ok(len) = inq.try_recv_into(&mut buf) {
            assert_eq!(&buf[..len], b"probe");
            got = Some(());
        }
        got
    });
    // Probes still on their way are delivered too; drain them below.

    let source = host_hash("late-test-source");
    let script: [(u64, u64, &[u8]); 6] = [
        (2, 0, b"run 2, #0"),
        (2, 1, b"run 2, #1"),
        (1, 2, b"run 1, #2: an older run after a newer one"),
        (2, 1, b"run 2, #1 again: a number already seen"),
        (1, 3, b"run 1, #3: older again"),
        (2, 2, b"run 2, #2"),
    ];
    for (run, seq, payload) in script {
        publisher
            .put(envelope(source, run, seq, payload))
            .wait()
            .unwrap();
    }
    let want = ["run 2, #0", "run 2, #1", "run 2, #2"];
    let mut got = Vec::new();
    eventually("the three messages in turn", || {
        while let Ok(len) = inq.try_recv_into(&mut buf) {
            if &buf[..len] != b"probe" {
                got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
        }
        (got.len() >= want.len()).then_some(())
    });
    assert_eq!(got, want);
    let c: Counters = eventually("the counters", || {
        counters(&status).ok().filter(|c| c.late == 3)
    });
    assert_eq!(c.gaps, 0, "{c:?}");
    assert_eq!(c.source_restarts, 0, "{c:?}");
    // Nothing else arrives (only late probes may).
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(len) = inq.try_recv_into(&mut buf) {
        assert_eq!(&buf[..len], b"probe", "a late message was delivered");
    }
    drop(bridge);
}
