//! A child blocks on an Event until its parent sets it.
//!
//! `cargo run --release --example event`

use std::time::{Duration, Instant};

use shmipc::{fork, Event, Named, Shared, Unlinker};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names = Unlinker::new("example-event");
    let name = names.name("go");
    let go = Shared::<Event>::create(&name, ())?;
    let started = Instant::now();
    let mut child = fork(|| {
        let Ok(go) = Shared::<Event>::open(&name) else {
            return 1;
        };
        println!("  child:  waiting for the event");
        if !go.wait_timeout(Duration::from_secs(30)) {
            return 2;
        }
        println!("  child:  the event is set after {:.0?}; off I go", started.elapsed());
        0
    })?;
    std::thread::sleep(Duration::from_millis(300));
    println!("  parent: setting the event after {:.0?}", started.elapsed());
    go.set();
    let status = child.join_timeout(Duration::from_secs(30))?.ok_or("the child hangs")?;
    println!("child ended: {status}");
    if !status.success() {
        return Err("the child did not see the event".into());
    }
    Ok(())
}
