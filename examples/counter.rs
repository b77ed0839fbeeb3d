//! Ten processes decrement one shared counter 1,000 times each: a
//! `Value<u64>` whose own lock keeps every read-modify-write whole, opened
//! by name in each child. Python's original: `examples/python/counter.py`.
//!
//! `cargo run --release --example counter`

use shmipc::{Named, Process, Unlinker, Value};

fn decrement(name: String) {
    let num = Value::<u64>::open(&name).expect("open the counter");
    for _ in 0..1_000 {
        num.update(|n| *n -= 1).expect("update");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let names = Unlinker::new("example-counter");
    let num = Value::<u64>::create(&names.name("num"), 10_000)?;
    println!("start: {}", num.get()?);
    let name = num.name().ok_or("a named counter")?.to_owned();
    let start = |_| Process::new("decrementer").start(decrement, name.clone());
    let mut children = (0..10).map(start).collect::<Result<Vec<_>, _>>()?;
    children.iter_mut().try_for_each(|c| c.join().map(drop))?;
    println!("end: {} after 10 x 1,000 decrements", num.get()?);
    assert_eq!(num.get()?, 0);
    Ok(())
}
