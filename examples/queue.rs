//! Three producers and two consumers share one Queue of `u64` (the
//! zero-copy `Pod` path); every item arrives exactly once. Python's
//! original: `examples/python/queue.py`.
//!
//! `cargo run --release --example queue`

use shmipc::{fork, BytesConfig, Named, Queue, RingConfig, TypedQueue};

const PRODUCERS: u64 = 3;
const CONSUMERS: usize = 2;
const ITEMS: u64 = 50_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::<u64>::anon(RingConfig::new(256))?;
    let tally = TypedQueue::<(u64, u64)>::anon(BytesConfig::for_max_message(32)?)?;
    let consume = |c| {
        let (mut n, mut total) = (0, 0);
        while let Ok(v) = queue.pop() {
            (n, total) = (n + 1, total + v);
        }
        println!("  consumer {c}: {n} items");
        i32::from(tally.put(&(n, total)).is_err())
    };
    let produce = |p| {
        let ok = (0..ITEMS).all(|i| queue.push(p * ITEMS + i).is_ok());
        println!("  producer {p}: {ITEMS} items pushed");
        i32::from(!ok)
    };
    let mut consumers =
        (0..CONSUMERS).map(|c| fork(move || consume(c))).collect::<Result<Vec<_>, _>>()?;
    let mut producers =
        (0..PRODUCERS).map(|p| fork(move || produce(p))).collect::<Result<Vec<_>, _>>()?;
    producers.iter_mut().try_for_each(|w| w.join().map(drop))?;
    queue.close(); // the consumers drain what is left, then see Closed
    let results = (0..CONSUMERS).map(|_| tally.get()).collect::<Result<Vec<_>, _>>()?;
    consumers.iter_mut().try_for_each(|w| w.join().map(drop))?;
    let (n, total) = results.iter().fold((0, 0), |(n, t), r| (n + r.0, t + r.1));
    let count = PRODUCERS * ITEMS;
    assert!(n == count && total == count * (count - 1) / 2);
    println!("{n} items received; the sum matches the sum sent");
    Ok(())
}
