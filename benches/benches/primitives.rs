//! Criterion micro-benchmarks of each primitive's uncontended fast path, in
//! one process and one thread: what an operation costs when nobody waits.
//!
//! ```sh
//! cargo bench -p shmipc-benches --bench primitives
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shmipc::{
    ByteQueue, BytesConfig, Event, Lock, Named, Queue, RingConfig, Semaphore, SemaphoreConfig,
    Shared, SpscQueue, TypedQueue,
};

fn sync_primitives(c: &mut Criterion) {
    let lock = Shared::<Lock>::anon(()).unwrap();
    c.bench_function("lock+unlock", |b| {
        b.iter(|| drop(black_box(lock.lock().unwrap())))
    });

    let sem = Shared::<Semaphore>::anon(SemaphoreConfig {
        initial: 0,
        max: None,
    })
    .unwrap();
    c.bench_function("semaphore release+acquire", |b| {
        b.iter(|| {
            sem.release().unwrap();
            sem.acquire();
        })
    });

    let event = Shared::<Event>::anon(()).unwrap();
    c.bench_function("event set+wait (already set)", |b| {
        b.iter(|| {
            event.set();
            event.wait();
        })
    });
}

fn queues(c: &mut Criterion) {
    let (mut tx, mut rx) = SpscQueue::<u64>::anon(RingConfig::new(1024)).unwrap();
    c.bench_function("spsc push+pop", |b| {
        b.iter(|| {
            tx.try_push(black_box(7)).unwrap();
            black_box(rx.try_pop().unwrap());
        })
    });

    let q = Queue::<u64>::anon(RingConfig::new(1024)).unwrap();
    c.bench_function("mpmc push+pop", |b| {
        b.iter(|| {
            q.try_push(black_box(7)).unwrap();
            black_box(q.try_pop().unwrap());
        })
    });

    let mut g = c.benchmark_group("byte queue send+recv");
    for size in [64usize, 4096, 65536] {
        let q = ByteQueue::anon(BytesConfig::new(4 * 65536, 65536)).unwrap();
        let msg = vec![1u8; size];
        let mut buf = vec![0u8; 65536];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                q.try_send(black_box(&msg)).unwrap();
                black_box(q.try_recv_into(&mut buf).unwrap());
            })
        });
    }
    g.finish();

    // The sole handles: one side each for good (no side lock per call).
    let q = ByteQueue::anon(BytesConfig::new(65536, 64)).unwrap();
    let (mut tx, mut rx) = (q.sole_sender().unwrap(), q.sole_receiver().unwrap());
    let msg = [1u8; 64];
    let mut buf = [0u8; 64];
    c.bench_function("byte queue sole send+recv/64", |b| {
        b.iter(|| {
            tx.try_send(black_box(&msg)).unwrap();
            black_box(rx.try_recv_into(&mut buf).unwrap());
        })
    });
    drop((tx, rx));

    // typed_small's message, through the shared calls and the sole handles.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Small {
        id: u64,
        name: String,
        values: [f32; 8],
    }
    let small = Small {
        id: 7,
        name: "sixteen-byte-str".to_owned(),
        values: [1.0; 8],
    };
    let q = TypedQueue::<Small>::anon(BytesConfig::new(65536, 128)).unwrap();
    c.bench_function("typed put+get (small struct)", |b| {
        b.iter(|| {
            q.put(black_box(&small)).unwrap();
            black_box(q.get().unwrap());
        })
    });
    let (mut tx, mut rx) = (q.sole_sender().unwrap(), q.sole_receiver().unwrap());
    c.bench_function("typed sole put+get (small struct)", |b| {
        b.iter(|| {
            tx.put(black_box(&small)).unwrap();
            black_box(rx.get().unwrap());
        })
    });
}

criterion_group!(benches, sync_primitives, queues);
criterion_main!(benches);
