//! A child blocks on an Event until its parent sets it. Python's original:
//! `examples/python/event.py`.
//!
//! `cargo run --release --example event`

use std::time::{Duration, Instant};

use shmipc::{fork, Event, Named, Shared};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (go, started) = (Shared::<Event>::anon(())?, Instant::now());
    let mut child = fork(|| {
        println!("  child:  waiting for the event");
        assert!(go.wait_timeout(Duration::from_secs(30)));
        println!("  child:  the event is set after {:.0?}; off I go", started.elapsed());
        0
    })?;
    std::thread::sleep(Duration::from_millis(300));
    println!("  parent: setting the event after {:.0?}", started.elapsed());
    go.set();
    println!("child ended: {}", child.join()?);
    Ok(())
}
