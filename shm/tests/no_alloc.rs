//! Nothing on the hot path allocates: after setup, push/pop, send/recv,
//! lock/unlock, acquire/release and set/wait make no heap allocation.
//!
//! A counting global allocator counts the allocations of the calling thread
//! while a measured section runs (other test threads do not disturb it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use shmipc::{
    ByteQueue, BytesConfig, Event, Lock, Named, Pipe, Queue, RingConfig, Semaphore,
    SemaphoreConfig, Shared, SpscQueue, Unlinker,
};

struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // try_with: the thread-locals may be gone while a thread exits.
    let _ = MEASURING.try_with(|m| {
        if m.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How many allocations `f` made on this thread, over `rounds` calls.
fn allocations(rounds: usize, mut f: impl FnMut()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    MEASURING.with(|m| m.set(true));
    for _ in 0..rounds {
        f();
    }
    MEASURING.with(|m| m.set(false));
    ALLOCATIONS.with(|a| a.get())
}

fn assert_no_alloc(what: &str, f: impl FnMut()) {
    let n = allocations(1000, f);
    assert_eq!(n, 0, "{what} allocated {n} times in 1000 rounds");
}

#[test]
fn the_counter_counts() {
    // Without this, a broken counter would make every other test pass.
    let n = allocations(10, || drop(black_box(vec![1u8; 16])));
    assert_eq!(n, 10);
}

#[test]
fn slot_queues_do_not_allocate() {
    let names = Unlinker::new("noalloc");
    let name = names.name("spsc");
    let q = SpscQueue::<u64>::create(&name, RingConfig::new(64)).unwrap();
    let mut tx = q.take_producer().unwrap();
    let mut rx = q.take_consumer().unwrap();
    let mut items = [0u64; 8];
    assert_no_alloc("named SPSC push/pop", || {
        tx.try_push(black_box(1)).unwrap();
        tx.push(2).unwrap();
        tx.push_timeout(3, Duration::from_secs(1)).unwrap();
        assert_eq!(tx.push_slice(&[4, 5]).unwrap(), 2);
        assert_eq!(rx.try_pop().unwrap(), 1);
        assert_eq!(rx.pop().unwrap(), 2);
        assert_eq!(rx.pop_timeout(Duration::from_secs(1)).unwrap(), 3);
        assert_eq!(rx.pop_slice(&mut items).unwrap(), 2);
    });

    let (mut tx, mut rx) = SpscQueue::<[u8; 64]>::anon(RingConfig::new(64)).unwrap();
    assert_no_alloc("anonymous SPSC push/pop", || {
        tx.push([7; 64]).unwrap();
        black_box(rx.pop().unwrap());
    });

    let q = Queue::<u64>::create(&names.name("mpmc"), RingConfig::new(64)).unwrap();
    assert_no_alloc("MPMC push/pop", || {
        q.try_push(black_box(1)).unwrap();
        q.push(2).unwrap();
        q.push_timeout(3, Duration::from_secs(1)).unwrap();
        assert_eq!(q.try_pop().unwrap(), 1);
        assert_eq!(q.pop().unwrap(), 2);
        assert_eq!(q.pop_timeout(Duration::from_secs(1)).unwrap(), 3);
    });
}

#[test]
fn byte_queues_and_pipes_do_not_allocate() {
    let names = Unlinker::new("noalloc");
    let q = ByteQueue::create(&names.name("bytes"), BytesConfig::new(1 << 19, 65536)).unwrap();
    let mut buf = vec![0u8; 65536];
    for size in [0usize, 64, 4096, 65536] {
        let msg = vec![3u8; size];
        assert_no_alloc("byte queue send/recv", || {
            q.try_send(&msg).unwrap();
            q.send(&msg).unwrap();
            q.send_timeout(&msg, Duration::from_secs(1)).unwrap();
            let mut grant = q.reserve(size).unwrap();
            grant.write_at(0, &msg).unwrap();
            grant.commit();
            assert_eq!(q.try_recv_into(&mut buf).unwrap(), size);
            assert_eq!(q.recv_into(&mut buf).unwrap(), size);
            assert_eq!(q.recv_timeout(Duration::from_secs(1)).unwrap().len(), size);
            let grant = q.recv().unwrap();
            assert_eq!(grant.copy_to(&mut buf), size);
            grant.release();
        });
    }

    let (a, b) = Pipe::anon(BytesConfig::new(1 << 16, 4096)).unwrap();
    let msg = [5u8; 100];
    assert_no_alloc("pipe send/recv", || {
        a.send(&msg).unwrap();
        b.try_send(&msg).unwrap();
        assert_eq!(b.recv_into(&mut buf).unwrap(), 100);
        assert_eq!(a.try_recv_into(&mut buf).unwrap(), 100);
        assert!(!a.poll(Duration::ZERO), "nothing is waiting for end A");
        b.send(&msg).unwrap();
        assert!(a.poll(Duration::ZERO), "a message is waiting for end A");
        assert!(a.poll(Duration::ZERO), "poll takes nothing");
        assert_eq!(a.try_recv_into(&mut buf).unwrap(), 100);
        assert!(!a.poll(Duration::ZERO), "end A was drained");
    });
}

#[test]
fn sync_primitives_do_not_allocate() {
    let names = Unlinker::new("noalloc");
    let lock = Shared::<Lock>::create(&names.name("lock"), ()).unwrap();
    // The first lock caches the thread's id and stamp: setup, not hot path.
    drop(lock.lock().unwrap());
    assert_no_alloc("lock/unlock", || {
        drop(black_box(lock.lock().unwrap()));
        drop(lock.try_lock().unwrap());
        drop(lock.lock_timeout(Duration::from_secs(1)).unwrap());
    });

    let sem = Shared::<Semaphore>::anon(SemaphoreConfig {
        initial: 1,
        max: None,
    })
    .unwrap();
    assert_no_alloc("semaphore acquire/release", || {
        sem.acquire();
        sem.release().unwrap();
        assert!(sem.try_acquire());
        sem.release().unwrap();
        assert!(sem.acquire_timeout(Duration::from_secs(1)));
        sem.release().unwrap();
    });

    let event = Shared::<Event>::create(&names.name("event"), ()).unwrap();
    assert_no_alloc("event set/wait/clear", || {
        event.set();
        event.wait();
        assert!(event.wait_timeout(Duration::from_secs(1)));
        event.clear();
        assert!(!event.wait_timeout(Duration::ZERO));
    });
}

#[test]
fn typed_queues_and_pipes_do_not_allocate_once_warm() {
    // Values that own no heap memory: what remains is the codec's, and
    // its buffers are reused once they have grown.
    type Sample = (u64, [f32; 8], Option<u16>);
    let names = Unlinker::new("noalloc");
    let q = shmipc::TypedQueue::<Sample>::create(
        &names.name("typed"),
        BytesConfig::for_max_message(128).unwrap(),
    )
    .unwrap();
    let v: Sample = (u64::MAX, [1.5; 8], Some(7));
    q.put(&v).unwrap();
    q.get().unwrap();
    assert_no_alloc("typed queue put/get", || {
        q.put(black_box(&v)).unwrap();
        q.put_timeout(&v, Duration::from_secs(1)).unwrap();
        assert_eq!(q.get().unwrap(), v);
        assert_eq!(q.get_timeout(Duration::from_secs(1)).unwrap(), v);
    });
    let (a, b) =
        shmipc::TypedPipe::<Sample>::anon(BytesConfig::for_max_message(128).unwrap()).unwrap();
    a.send(&v).unwrap();
    b.recv().unwrap();
    assert_no_alloc("typed pipe send/recv", || {
        a.send(black_box(&v)).unwrap();
        assert_eq!(b.recv().unwrap(), v);
    });
}
