//! One hot loop per fast path, for counting instructions with callgrind
//! (which counts the same for the same binary and input whatever else the
//! machine is doing, unlike a clock on a shared VM):
//!
//! ```sh
//! cargo build --release -p shmipc-benches --example instructions
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/instructions bytes 100000
//! callgrind_annotate --inclusive=yes /tmp/cg.out | head -40
//! ```
//!
//! The total divided by the count is the cost of one round of the loop,
//! after subtracting a run with a count of 0 (start-up, about 0.4 M instructions). Loops, all on one thread
//! through an anonymous mapping:
//! - `bytes`: a 64-byte sole send, then a sole receive into a buffer;
//! - `typed`: `typed_small`'s struct built, put by a sole sender, got by a
//!   sole receiver (each side's codec and allocations included);
//! - `mpmc`: a `u64` `try_push` and `try_pop` on the MPMC queue.
//!
//! `BENCHMARKS.md`, "Instructions per operation", has the figures.

use serde::{Deserialize, Serialize};
use shmipc::prelude::*;
use shmipc::{ByteQueue, BytesConfig, Queue, RingConfig, TypedQueue};

#[derive(Serialize, Deserialize)]
struct Small {
    id: u64,
    name: String,
    values: [f32; 8],
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "bytes".into());
    let n: u64 = match args.next().map(|a| a.parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("instructions: the count must be a number: {e}");
            std::process::exit(2);
        }
    };
    let mut sum = 0u64;
    match which.as_str() {
        "bytes" => {
            let q = ByteQueue::anon(BytesConfig::new(65536, 64)).unwrap();
            let (mut tx, mut rx) = (q.sole_sender().unwrap(), q.sole_receiver().unwrap());
            let mut buf = [0u8; 64];
            for i in 0..n {
                let mut m = [1u8; 64];
                m[0] = i as u8;
                tx.try_send(&m).unwrap();
                let k = rx.try_recv_into(&mut buf).unwrap();
                sum = sum.wrapping_add(k as u64 + u64::from(buf[0]));
            }
        }
        "typed" => {
            let q = TypedQueue::<Small>::anon(BytesConfig::new(65536, 128)).unwrap();
            let (mut tx, mut rx) = (q.sole_sender().unwrap(), q.sole_receiver().unwrap());
            for i in 0..n {
                let m = Small {
                    id: i,
                    name: "sixteen-byte-str".to_owned(),
                    values: [i as f32; 8],
                };
                tx.put(&m).unwrap();
                drop(m);
                let r = rx.get().unwrap();
                sum = sum.wrapping_add(r.id + r.name.len() as u64);
            }
        }
        "mpmc" => {
            let q = Queue::<u64>::anon(RingConfig::new(1024)).unwrap();
            for i in 0..n {
                q.try_push(i).unwrap();
                sum = sum.wrapping_add(q.try_pop().unwrap());
            }
        }
        other => {
            eprintln!("instructions: no loop named {other:?} (bytes, typed or mpmc)");
            std::process::exit(2);
        }
    }
    println!("{which}: {n} rounds, checksum {sum}");
}
