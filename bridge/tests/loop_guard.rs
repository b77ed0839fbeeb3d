//! The loop guard: a bridge's own exports, echoed back to it by another
//! Zenoh peer on a key it imports, are dropped and counted, never put
//! into its queue.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use shmipc::{ByteQueue, BytesConfig, Named, Unlinker};
use shmipc_bridge::{counters, Bridge, Config, Direction, KindName, MappingConfig};
use zenoh::sample::Locality;
use zenoh::Wait;

#[test]
fn own_exports_echoed_back_are_not_reimported() {
    let names = Unlinker::new("bridge-loop");
    let prefix = names.name("a-");
    let seg = |n: &str| {
        let s = format!("{prefix}{n}");
        names.adopt(&s);
        s
    };
    let out = ByteQueue::create(&seg("out"), BytesConfig::for_max_message(64).unwrap()).unwrap();
    let back = ByteQueue::create(&seg("back"), BytesConfig::for_max_message(64).unwrap()).unwrap();
    let (s_out, s_back) = (seg("out.bridge-out"), seg("back.bridge-in"));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = format!("shmipc-test/{}/loop", std::process::id());

    let mut config = Config::new(prefix.trim_start_matches('/'));
    config.prefix = prefix.clone();
    config.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
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
    let mut zc = zenoh::Config::default();
    zc.insert_json5("mode", "\"peer\"").unwrap();
    zc.insert_json5("listen/endpoints", "[]").unwrap();
    zc.insert_json5("connect/endpoints", &format!("[\"tcp/127.0.0.1:{port}\"]"))
        .unwrap();
    zc.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    let echo = zenoh::open(zc).wait().unwrap();
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
    let start = Instant::now();
    let mut echoed = 0;
    while echoed < N {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "echoed only {echoed}"
        );
        if let Ok(Some(s)) = subscriber.recv_timeout(Duration::from_millis(100)) {
            publisher.put(s.payload().clone()).wait().unwrap();
            echoed += 1;
        }
    }
    let looped = loop {
        let c = counters(&s_back).unwrap();
        if c.looped == N {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "looped {} of {N}",
            c.looped
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(looped.messages, 0);
    assert!(back.try_recv().is_err(), "an own export was imported");
    assert_eq!(counters(&s_out).unwrap().messages, N);
    drop(bridge);
}
