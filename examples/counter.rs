//! Ten processes decrement one shared counter 1,000 times each: a
//! `Value<u64>` whose own lock keeps every read-modify-write whole (the
//! seeds' shared `num.txt`, without the file).
//!
//! `cargo run --release --example counter`

use std::time::{Duration, Instant};

use shmipc::{fork, Named, Unlinker, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names = Unlinker::new("example-counter");
    let name = names.name("num");
    let num = Value::<u64>::create(&name, 10_000)?;
    println!("start: {}", num.get()?);
    let started = Instant::now();
    let mut children = Vec::new();
    for i in 0..10 {
        let name = name.clone();
        children.push(fork(move || {
            // Each child opens the counter by name, as any program could.
            let Ok(num) = Value::<u64>::open(&name) else {
                return 1;
            };
            for _ in 0..1_000 {
                if num.update(|n| *n -= 1).is_err() {
                    return 2;
                }
            }
            println!("  process {i} ({}) done", std::process::id());
            0
        })?);
    }
    for mut c in children {
        let status = c
            .join_timeout(Duration::from_secs(60))?
            .ok_or("a child hangs")?;
        if !status.success() {
            return Err(format!("a child ended with {status}").into());
        }
    }
    let end = num.get()?;
    println!(
        "end: {end} after 10 x 1,000 decrements in {:.0?} ({})",
        started.elapsed(),
        if end == 0 { "exact" } else { "WRONG" }
    );
    if end != 0 {
        return Err("updates were lost".into());
    }
    Ok(())
}
