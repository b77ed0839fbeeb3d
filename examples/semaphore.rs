//! Ten diners, three seats: a Semaphore bounded at 3 lets at most three
//! processes eat at once. Python's original: `examples/python/semaphore.py`.
//!
//! `cargo run --release --example semaphore`

use std::num::NonZeroU32;
use std::time::Duration;

use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{fork, Named, Semaphore, SemaphoreConfig, Shared};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = SemaphoreConfig { initial: 3, max: NonZeroU32::new(3) };
    let seats = Shared::<Semaphore>::anon(config)?;
    let (seated, peak) = (Shared::<AtomicU32>::anon(0)?, Shared::<AtomicU32>::anon(0)?);
    let dine = |diner| {
        assert!(seats.acquire_timeout(Duration::from_secs(30)));
        let now = seated.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst); // the most seated at once
        println!("  diner {diner} sits down ({now} seated)");
        std::thread::sleep(Duration::from_millis(100));
        seated.fetch_sub(1, Ordering::SeqCst);
        println!("  diner {diner} leaves");
        seats.release().unwrap();
        0
    };
    let mut diners = (0..10).map(|d| fork(move || dine(d))).collect::<Result<Vec<_>, _>>()?;
    diners.iter_mut().try_for_each(|d| d.join().map(drop))?;
    let peak = peak.load(Ordering::SeqCst);
    println!("at most {peak} diners sat at once");
    assert!(peak <= 3);
    Ok(())
}
