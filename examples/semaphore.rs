//! Ten diners, three seats: a Semaphore(3) lets at most three processes
//! eat at once.
//!
//! `cargo run --release --example semaphore`

use std::time::{Duration, Instant};

use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{fork, Named, Semaphore, SemaphoreConfig, Shared};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seats = Shared::<Semaphore>::anon(SemaphoreConfig {
        initial: 3,
        max: std::num::NonZeroU32::new(3),
    })?;
    let seated = Shared::<AtomicU32>::anon(0)?;
    let peak = Shared::<AtomicU32>::anon(0)?;
    let started = Instant::now();
    let mut diners = Vec::new();
    for diner in 0..10 {
        let (seats, seated, peak) = (&seats, &seated, &peak);
        diners.push(fork(move || {
            if !seats.acquire_timeout(Duration::from_secs(30)) {
                return 1;
            }
            let now = seated.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst); // the most seated at once
            println!("  {:>4.0?}  diner {diner} sits down ({now} seated)", started.elapsed());
            std::thread::sleep(Duration::from_millis(100));
            seated.fetch_sub(1, Ordering::SeqCst);
            println!("  {:>4.0?}  diner {diner} leaves", started.elapsed());
            if seats.release().is_err() {
                return 2;
            }
            0
        })?);
    }
    for mut d in diners {
        let status = d.join_timeout(Duration::from_secs(60))?.ok_or("a diner hangs")?;
        if !status.success() {
            return Err(format!("a diner ended with {status}").into());
        }
    }
    let peak = peak.load(Ordering::SeqCst);
    println!("at most {peak} diners sat at once; all 10 ate in {:.0?}", started.elapsed());
    if peak > 3 {
        return Err("more diners than seats".into());
    }
    Ok(())
}
