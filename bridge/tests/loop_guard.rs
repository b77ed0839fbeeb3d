//! The loop guard: a bridge's own exports, echoed back to it by another
//! Zenoh peer on a key it imports, are dropped and counted, never put
//! into its queue.

mod common;

use std::time::{Duration, Instant};

use shmipc::{ByteQueue, BytesConfig, Named, Unlinker};
use shmipc_bridge::{counters, Bridge, Direction, KindName, MappingConfig};
use zenoh::sample::Locality;
use zenoh::Wait;

#[test]
fn own_exports_echoed_back_are_not_reimported() {
    let names = Unlinker::new("bridge-loop");
    let port = common::free_port();
    let (prefix, mut config) = common::listening(&names, "a-", port);
    let seg = |n: &str| common::seg(&names, &prefix, n);
    let out = ByteQueue::create(&seg("out"), BytesConfig::for_max_message(64).unwrap()).unwrap();
    let back = ByteQueue::create(&seg("back"), BytesConfig::for_max_message(64).unwrap()).unwrap();
    let (s_out, s_back) = (seg("out.bridge-out"), seg("back.bridge-in"));
    let key = format!("shmipc-test/{}/loop", std::process::id());
    config.zenoh.retry_ms = 100;
    config.mappings.push(MappingConfig::new(
        Direction::Export,
        KindName::Bytes,
        "out",
        &key,
    ));
    config.mappings.push(MappingConfig::new(
        Direction::Import,
        KindName::Bytes,
        "back",
        &key,
    ));
    let bridge = Bridge::start(config).unwrap();

    // The echo: another peer that publishes every sample on `key` again,
    // unchanged, to the others (never to itself).
    let echo = common::peer(port);
    let publisher = echo
        .declare_publisher(key.clone())
        .allowed_destination(Locality::Remote)
        .wait()
        .unwrap();
    let subscriber = echo.declare_subscriber(key.clone()).wait().unwrap();

    const N: u64 = 20;
    for i in 0..N {
        out.send_timeout(&i.to_le_bytes(), Duration::from_secs(30))
            .unwrap();
    }
    // The bridge may batch several messages into one sample, so echo
    // samples until the importer has counted all N messages as looped.
    let start = Instant::now();
    let mut samples = 0;
    let looped = loop {
        let c = counters(&s_back).unwrap();
        if c.looped >= N {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "looped {} of {N} after {samples} samples echoed",
            c.looped
        );
        if let Ok(Some(s)) = subscriber.recv_timeout(Duration::from_millis(20)) {
            publisher.put(s.payload().clone()).wait().unwrap();
            samples += 1;
        }
    };
    assert_eq!(looped.looped, N, "each message counted once");
    assert!((1..=N).contains(&samples));
    assert_eq!(looped.messages, 0);
    assert!(back.try_recv().is_err(), "an own export was imported");
    assert_eq!(counters(&s_out).unwrap().messages, N);
    drop(bridge);
}
