//! Ten processes fill a TypedDict (a word count and their own entries)
//! under one Lock; no update is lost. Python's original:
//! `examples/python/dict.py`.
//!
//! `cargo run --release --example dict`

use shmipc::{fork, DictConfig, Lock, Named, Shared, TypedDict};

const TEXT: &str = "the quick brown fox jumps over the lazy dog the end";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let words = TypedDict::<String, u32>::anon(DictConfig::new(64, 32, 8))?;
    let pids = TypedDict::<String, u32>::anon(DictConfig::new(16, 32, 8))?;
    let lock = Shared::<Lock>::anon(())?;
    let count = |p: u32| {
        for word in TEXT.split(' ').map(str::to_owned) {
            let _held = lock.lock().unwrap();
            let n = words.get(&word).unwrap().unwrap_or(0);
            words.insert(&word, &(n + 1)).unwrap();
        }
        pids.insert(&format!("pid-of-{p}"), &std::process::id()).unwrap();
        0
    };
    let mut children: Vec<_> = (0..10).map(|p| fork(move || count(p))).collect::<Result<_, _>>()?;
    children.iter_mut().try_for_each(|c| c.join().map(drop))?;
    for (word, n) in words.items()? {
        let expected = 10 * TEXT.split(' ').filter(|w| *w == word).count() as u32;
        assert_eq!(n, expected);
        println!("  {word:<10} -> {n} (expected {expected})");
    }
    for (key, pid) in pids.items()? {
        println!("  {key:<10} -> {pid}");
    }
    println!("no update was lost");
    Ok(())
}
