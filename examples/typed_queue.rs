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
    let config = BytesConfig::for_max_message(256)?;
    let jobs = TypedQueue::<Job>::anon(config)?;
    let results = TypedQueue::<(u64, String, u64)>::anon(config)?;
    let produce = |p: u64| {
        let (owner, jobs) = (format!("user-{p}"), &jobs);
        let job =
            move |i| Job { id: p * 1000 + i, owner: owner.clone(), sizes: vec![i, i + 1, i + 2] };
        move || i32::from((0..1000).any(|i| jobs.put(&job(i)).is_err()))
    };
    let consume = || {
        while let Ok(job) = jobs.get() {
            results.put(&(job.id, job.owner, job.sizes.iter().sum())).unwrap();
        }
        0 // the queue is closed and drained
    };
    let mut producers = [fork(produce(0))?, fork(produce(1))?];
    let mut consumers = [fork(consume)?, fork(consume)?];
    let got: Vec<(u64, String, u64)> =
        (0..2000).map(|_| results.get()).collect::<Result<_, _>>()?;
    producers.iter_mut().try_for_each(|w| w.join().map(drop))?;
    jobs.close();
    consumers.iter_mut().try_for_each(|w| w.join().map(drop))?;
    assert_eq!(got.iter().map(|g| g.0).collect::<BTreeSet<_>>().len(), 2000);
    let total: u64 = got.iter().map(|g| g.2).sum();
    println!("jobs: {} total size: {total}", got.len());
    Ok(())
}
