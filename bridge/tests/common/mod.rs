//! What the bridge tests share: a free port, a bridge configuration that
//! listens on it under a name prefix of the test's own, and a test Zenoh
//! peer that connects to it (127.0.0.1 only, no multicast scouting).
#![allow(dead_code)]

use std::net::TcpListener;

use shmipc::Unlinker;
use shmipc_bridge::Config;
use zenoh::Wait;

/// A port nobody listens on now (the kernel's pick).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A name prefix of the test's own (`names` unlinks what `seg` names) and
/// a bridge configuration under it that listens on `port`.
pub fn listening(names: &Unlinker, label: &str, port: u16) -> (String, Config) {
    let prefix = names.name(label);
    let mut config = Config::new(prefix.trim_start_matches('/'));
    config.prefix = prefix.clone();
    config.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
    (prefix, config)
}

/// The segment `name` under `prefix`, adopted by `names` for unlinking.
pub fn seg(names: &Unlinker, prefix: &str, name: &str) -> String {
    let s = format!("{prefix}{name}");
    names.adopt(&s);
    s
}

/// A Zenoh peer of the test's, connected to a bridge listening on `port`.
pub fn peer(port: u16) -> zenoh::Session {
    let mut zc = zenoh::Config::default();
    zc.insert_json5("mode", "\"peer\"").unwrap();
    zc.insert_json5("listen/endpoints", "[]").unwrap();
    zc.insert_json5("connect/endpoints", &format!("[\"tcp/127.0.0.1:{port}\"]"))
        .unwrap();
    zc.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    zenoh::open(zc).wait().unwrap()
}
