//! Late messages, made on purpose: a test peer publishes envelopes (of one
//! message and of several) on a key the bridge imports, from a source
//! whose run restarts, and the import must drop exactly the messages of an
//! older run after a newer one (and numbers of the current run already
//! seen), counting each in `Counters::late`, while delivering the rest in
//! order. The two-host
//! test can only allow `late > 0` (which link's thread delivers first is
//! the scheduler's choice); here the order is the test's.

mod common;

use std::time::{Duration, Instant};

use shmipc::{ByteQueue, BytesConfig, Named, Unlinker};
use shmipc_bridge::envelope::{encode, host_hash, Header, Kind};
use shmipc_bridge::{counters, Bridge, Counters, Direction, KindName, MappingConfig};
use zenoh::Wait;

const MAX: usize = 64;

fn envelope(source: u64, run: u64, seq: u64, payload: &[u8]) -> Vec<u8> {
    batch(source, run, seq, &[payload])
}

/// An envelope of several messages, numbered from `seq`.
fn batch(source: u64, run: u64, seq: u64, messages: &[&[u8]]) -> Vec<u8> {
    let h = Header {
        kind: Kind::Bytes,
        count: u16::try_from(messages.len()).unwrap(),
        source,
        run,
        seq,
        shape: [MAX as u64, 0],
    };
    encode(&h, messages)
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
    // Envelopes of one message and of several: a batch wholly seen, or
    // of an older run, is late whole; one partly seen delivers its new
    // messages only.
    let script: [(u64, u64, &[&[u8]]); 8] = [
        (2, 0, &[b"run 2, #0"]),
        (2, 1, &[b"run 2, #1", b"run 2, #2"]),
        (1, 3, &[b"run 1, #3: an older run after a newer one"]),
        (2, 1, &[b"run 2, #1 again: a number already seen"]),
        (
            1,
            4,
            &[b"run 1, #4: older again", b"run 1, #5: older again"],
        ),
        (
            2,
            0,
            &[b"run 2, #0 again", b"run 2, #1 again", b"run 2, #2 again"],
        ),
        (
            2,
            2,
            &[b"run 2, #2 again, in a batch", b"run 2, #3", b"run 2, #4"],
        ),
        (2, 5, &[b"run 2, #5"]),
    ];
    for (run, seq, messages) in script {
        publisher
            .put(batch(source, run, seq, messages))
            .wait()
            .unwrap();
    }
    let want = [
        "run 2, #0",
        "run 2, #1",
        "run 2, #2",
        "run 2, #3",
        "run 2, #4",
        "run 2, #5",
    ];
    let mut got = Vec::new();
    eventually("the six messages in turn", || {
        while let Ok(len) = inq.try_recv_into(&mut buf) {
            if &buf[..len] != b"probe" {
                got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
        }
        (got.len() >= want.len()).then_some(())
    });
    assert_eq!(got, want);
    let c: Counters = eventually("the counters", || {
        counters(&status)
            .ok()
            .filter(|c| c.late == 1 + 1 + 2 + 3 + 1)
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
