//! Two "hosts" on this machine, told apart by their segment name prefixes:
//! a producer on host A puts typed orders into its `TypedQueue`, a bridge
//! exports them on a Zenoh key, a second bridge (another Zenoh peer, on
//! 127.0.0.1) imports them into host B's `TypedQueue`, where a consumer
//! gets them. Producer and consumer use only the shmipc API.
//!
//! `cargo run --release --manifest-path bridge/Cargo.toml --example two_hosts`

use std::net::TcpListener;
use std::time::Duration;

use shmipc::serde::{Deserialize, Serialize};
use shmipc::{BytesConfig, TypedQueue, Unlinker};
use shmipc_bridge::{counters, Bridge, Config, Direction, KindName, MappingConfig};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(crate = "shmipc::serde")]
struct Order {
    id: u64,
    item: String,
    quantity: u32,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names = Unlinker::new("two-hosts");
    let (host_a, host_b) = (names.name("a-"), names.name("b-"));
    for n in [
        format!("{host_a}orders"),
        format!("{host_a}orders.bridge-out"),
        format!("{host_b}orders"),
        format!("{host_b}orders.bridge-in"),
    ] {
        names.adopt(&n);
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let key = format!("demo/{}/orders", std::process::id());

    let mut a = Config::new("host-a");
    a.prefix = host_a.clone();
    a.zenoh.listen = vec![format!("tcp/127.0.0.1:{port}")];
    a.mappings.push(MappingConfig::new(
        Direction::Export,
        KindName::Typed,
        "orders",
        &key,
    ));
    let mut b = Config::new("host-b");
    b.prefix = host_b.clone();
    b.zenoh.connect = vec![format!("tcp/127.0.0.1:{port}")];
    b.mappings.push(MappingConfig::new(
        Direction::Import,
        KindName::Typed,
        "orders",
        &key,
    ));

    // Each host's application makes its own queue.
    let cfg = BytesConfig::for_max_message(256)?;
    let outbox = TypedQueue::<Order>::create(&format!("{host_a}orders"), cfg)?;
    let inbox = TypedQueue::<Order>::create(&format!("{host_b}orders"), cfg)?;
    let bridge_a = Bridge::start(a)?;
    let bridge_b = Bridge::start(b)?;

    for id in 0..5 {
        let order = Order {
            id,
            item: format!("widget-{id}"),
            quantity: 10 * id as u32 + 1,
        };
        outbox.put(&order)?;
    }
    for _ in 0..5 {
        let order = inbox.get_timeout(Duration::from_secs(30))?;
        println!("host B got {order:?}");
    }
    let c = counters(&format!("{host_b}orders.bridge-in"))?;
    println!("host B's import: {} messages, {} gaps", c.messages, c.gaps);
    drop((bridge_a, bridge_b));
    Ok(())
}
