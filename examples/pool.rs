//! A Pool of three worker processes runs five tasks given with
//! `apply_async`, then is closed and joined (Python's `Pool` example).
//!
//! `cargo run --release --example pool`

use std::time::{Duration, Instant};

use shmipc::Pool;

/// The task: sum of the squares below `n`; the result carries the pid of
/// the worker that ran it.
fn sum_of_squares(arg: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(arg.try_into().unwrap_or_default());
    std::thread::sleep(Duration::from_millis(50));
    let sum: u64 = (0..n).map(|i| i * i).sum();
    let mut out = sum.to_le_bytes().to_vec();
    out.extend_from_slice(&std::process::id().to_le_bytes());
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let pool = Pool::new(3, sum_of_squares)?;
    println!(
        "a pool of {} workers: pids {:?}",
        pool.processes(),
        pool.pids()
    );
    let inputs = [10u64, 100, 1_000, 10_000, 100_000];
    let pending: Vec<_> = inputs
        .iter()
        .map(|n| pool.apply_async(&n.to_le_bytes()))
        .collect::<Result<_, _>>()?;
    println!("{} tasks submitted with apply_async", pending.len());
    for (n, handle) in inputs.iter().zip(&pending) {
        let out = handle.get_timeout(Duration::from_secs(30))?;
        let sum = u64::from_le_bytes(out[..8].try_into()?);
        let pid = u32::from_le_bytes(out[8..12].try_into()?);
        let expected = (0..*n).map(|i| i * i).sum::<u64>();
        println!("  sum of squares below {n:>6} = {sum:>15}  (worker {pid})");
        if sum != expected {
            return Err(format!("wrong sum for {n}").into());
        }
    }
    pool.close();
    pool.join();
    println!(
        "closed and joined: every worker exited ({:.0?} in all)",
        started.elapsed()
    );
    Ok(())
}
