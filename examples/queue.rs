//! Three producers and two consumers share one Queue; every item arrives
//! exactly once.
//!
//! `cargo run --release --example queue`

use std::time::{Duration, Instant};

use shmipc::{fork, Array, Named, PopError, Queue, RingConfig};

const PRODUCERS: u64 = 3;
const CONSUMERS: usize = 2;
const ITEMS: u64 = 50_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::<u64>::anon(RingConfig::new(256))?;
    // Per consumer: items received and their sum.
    let tally = Array::<u64>::anon(&[0; 2 * CONSUMERS])?;
    let started = Instant::now();
    let mut consumers = Vec::new();
    for c in 0..CONSUMERS {
        let (queue, tally) = (&queue, &tally);
        consumers.push(fork(move || {
            let (mut n, mut sum) = (0u64, 0u64);
            loop {
                match queue.pop() {
                    Ok(v) => {
                        n += 1;
                        sum += v;
                    }
                    Err(PopError::Closed) => break,
                    Err(_) => return 1,
                }
            }
            let ok = tally.set(2 * c, n).is_ok() && tally.set(2 * c + 1, sum).is_ok();
            println!("  consumer {c}: {n} items");
            if ok {
                0
            } else {
                2
            }
        })?);
    }
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let queue = &queue;
        producers.push(fork(move || {
            for i in 0..ITEMS {
                if queue.push(p * ITEMS + i).is_err() {
                    return 1;
                }
            }
            println!("  producer {p}: {ITEMS} items pushed");
            0
        })?);
    }
    for mut c in producers {
        let s = c.join_timeout(Duration::from_secs(60))?.ok_or("a producer hangs")?;
        if !s.success() {
            return Err(format!("a producer ended with {s}").into());
        }
    }
    queue.close(); // consumers drain what is left, then see Closed
    for mut c in consumers {
        let s = c.join_timeout(Duration::from_secs(60))?.ok_or("a consumer hangs")?;
        if !s.success() {
            return Err(format!("a consumer ended with {s}").into());
        }
    }
    let t = tally.snapshot()?;
    let (n, sum): (u64, u64) = (t.iter().step_by(2).sum(), t.iter().skip(1).step_by(2).sum());
    let total = PRODUCERS * ITEMS;
    let expected = total * (total - 1) / 2;
    println!(
        "{n} items received in {:.0?}; sum {} the sum sent",
        started.elapsed(),
        if sum == expected { "matches" } else { "DIFFERS FROM" }
    );
    if n != total || sum != expected {
        return Err("items were lost or duplicated".into());
    }
    Ok(())
}
