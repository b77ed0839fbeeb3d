//! Two producers and two consumers share one TypedQueue of jobs (a struct
//! with a String and a Vec); every job is summed exactly once. Python's
//! original: `examples/python/typed_queue.py`.
//!
//! `cargo run --release --example typed_queue`

use shmipc::serde::{Deserialize, Serialize};
use shmipc::{fork, BytesConfig, TypedQueue};
use std::collections::BTreeSet;

#[derive(Serialize, Deserialize)]
#[serde(crate = "shmipc::serde")]
struct Job {
    id: u64,
    owner: String,
    sizes: Vec<u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs = TypedQueue::<Job>::anon(BytesConfig::for_max_message(256)?)?;
    let results = TypedQueue::<(u64, String, u64)>::anon(BytesConfig::for_max_message(256)?)?;
    let (j, r) = (&jobs, &results);
    let mut producers = Vec::new();
    for p in 0..2 {
        producers.push(fork(move || {
            let job = |i| Job {
                id: p * 1000 + i,
                owner: format!("user-{p}"),
                sizes: vec![i, i + 1, i + 2],
            };
            i32::from((0..1000).any(|i| j.put(&job(i)).is_err()))
        })?);
    }
    let consume = move || {
        while let Ok(job) = j.get() {
            r.put(&(job.id, job.owner, job.sizes.iter().sum())).unwrap();
        }
        0 // the queue is closed and drained
    };
    let mut consumers = [fork(consume)?, fork(consume)?];
    let got: Vec<(u64, String, u64)> =
        (0..2000).map(|_| results.get()).collect::<Result<_, _>>()?;
    producers.iter_mut().try_for_each(|w| w.join().map(drop))?;
    jobs.close();
    consumers.iter_mut().try_for_each(|w| w.join().map(drop))?;
    assert_eq!(got.iter().map(|g| g.0).collect::<BTreeSet<_>>().len(), 2000);
    println!(
        "jobs: {} total size: {}",
        got.len(),
        got.iter().map(|g| g.2).sum::<u64>()
    );
    Ok(())
}
