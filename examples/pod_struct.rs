//! A `Pod` struct through a zero-copy `Queue`, derived with shmipc's
//! re-exports: this example's package does not depend on bytemuck.
//!
//! `cargo run --example pod_struct`

use shmipc::{fork, Named, Queue, RingConfig};

#[derive(Clone, Copy, Debug, PartialEq, shmipc::Pod, shmipc::Zeroable)]
#[bytemuck(crate = "shmipc::bytemuck")]
#[repr(C)]
struct Reading {
    sensor: u32,
    celsius: f32,
    at: [u64; 2],
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::<Reading>::anon(RingConfig::new(64))?;
    let q = &queue;
    let mut child = fork(move || {
        let ok = (0..10u32).all(|i| {
            let r = Reading { sensor: i, celsius: 20.0 + i as f32, at: [i as u64, 0] };
            q.push(r).is_ok()
        });
        i32::from(!ok)
    })?;
    let total: f32 = (0..10).map(|_| queue.pop().map(|r| r.celsius)).sum::<Result<_, _>>()?;
    assert!(child.join()?.success());
    println!("average {:.1} C", total / 10.0);
    Ok(())
}
