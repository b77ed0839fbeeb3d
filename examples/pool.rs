//! A TypedPool of three worker processes runs five tasks given with
//! `apply_async`, then is closed and joined. Python's original:
//! `examples/python/pool.py`.
//!
//! `cargo run --release --example pool`

use std::time::Duration;

use shmipc::TypedPool;

fn sum_of_squares(n: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(50));
    ((0..n).map(|i| i * i).sum(), std::process::id())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = TypedPool::new(3)?;
    let inputs = [10u64, 100, 1_000, 10_000, 100_000];
    let pending = inputs.map(|n| pool.apply_async(sum_of_squares, n));
    println!("{} tasks submitted with apply_async", pending.len());
    for (n, handle) in inputs.iter().zip(pending) {
        let (total, pid) = handle?.get_timeout(Duration::from_secs(30))?;
        assert_eq!(total, (0..*n).map(|i| i * i).sum::<u64>());
        println!("  sum of squares below {n:>6} = {total:>15}  (worker {pid})");
    }
    pool.close();
    pool.join();
    println!("closed and joined: every worker exited");
    Ok(())
}
