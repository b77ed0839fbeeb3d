//! One-way streams of byte messages of one size, and the two limits of
//! such a stream: one copy on one core, and two copies across cores.

use std::hint::black_box;
use std::os::fd::RawFd;
use std::time::Instant;

use shmipc::sync::{AtomicU64, Ordering};
use shmipc::{ByteQueue, BytesConfig, Named};

use crate::harness::{
    consume_bytes, in_procs, produce_bytes, Ctl, Env, Name, Pad, ProcJob, CORE_A, CORE_B,
};
use crate::stats::Sample;
use crate::sys::{
    close, pin, pipe_fds, read_exact, size_pipe, size_socket, socket_pair, write_all,
};

/// The bytes of shmipc's ring for messages of `size`: room for 16 of them,
/// and at least 64 KiB. Every peer that has a buffer gets one as large.
pub fn ring_bytes(size: usize) -> usize {
    (16 * (size + 8)).next_power_of_two().max(1 << 16)
}

/// How many messages of `size` shmipc's ring holds (a record is a 16-byte
/// header and the message rounded up to 16 bytes).
pub fn ring_messages(size: usize) -> usize {
    ring_bytes(size) / (16 + size.next_multiple_of(16))
}

fn sample(ctl: &Ctl, size: usize) -> Sample {
    ctl.sample(ctl.gb_per_s(size))
}

/// shmipc's byte queue: `producers` processes (pinned to core A when
/// there is one, else left to the scheduler) and one consumer (core B).
/// With `sole` (one producer only) the producer and the consumer hold
/// their side for good (`sole_sender` / `sole_receiver`); otherwise every
/// message goes through the shared path (each send and receive takes its
/// side's lock).
pub fn bytes_shmipc(env: &Env, size: usize, producers: u32, sole: bool) -> Sample {
    assert!(!sole || producers == 1, "a sole sender is one producer");
    let name = Name::new(env, "bytes");
    let _q = ByteQueue::create(&name.0, BytesConfig::new(ring_bytes(size), size)).unwrap();
    let (dur, n) = (env.dur, &name.0);
    let parties = producers + 1;
    let mut jobs: Vec<ProcJob<'_>> = Vec::new();
    for _ in 0..producers {
        jobs.push((
            if producers == 1 { CORE_A } else { None },
            Box::new(move |ctl: &Ctl| {
                let q = ByteQueue::open(n).unwrap();
                if sole {
                    let mut tx = q.sole_sender().unwrap();
                    produce_bytes(ctl, parties, dur, size, |m| tx.send(m).unwrap());
                } else {
                    produce_bytes(ctl, parties, dur, size, |m| q.send(m).unwrap());
                }
            }),
        ));
    }
    jobs.push((
        if producers == 1 { CORE_B } else { None },
        Box::new(move |ctl: &Ctl| {
            let q = ByteQueue::open(n).unwrap();
            let mut buf = vec![0u8; size];
            if sole {
                let mut rx = q.sole_receiver().unwrap();
                consume_bytes(ctl, producers, || {
                    rx.recv_into(&mut buf).unwrap();
                    buf[0]
                });
            } else {
                consume_bytes(ctl, producers, || {
                    q.recv_into(&mut buf).unwrap();
                    buf[0]
                });
            }
        }),
    ));
    sample(in_procs(jobs).ctl(), size)
}

fn bytes_fds(env: &Env, size: usize, rx: RawFd, tx: RawFd) -> Sample {
    let dur = env.dur;
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| produce_bytes(ctl, 2, dur, size, |m| write_all(tx, m))),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let mut buf = vec![0u8; size];
                consume_bytes(ctl, 1, || {
                    read_exact(rx, &mut buf, false);
                    buf[0]
                });
            }),
        ),
    ]);
    sample(map.ctl(), size)
}

fn kib(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{} KiB", b >> 10)
    }
}

/// A pipe grown to shmipc's ring (`F_SETPIPE_SZ`). At 64 KiB messages the
/// default pipe (64 KiB) holds exactly one message.
pub fn bytes_pipe(env: &Env, size: usize) -> Sample {
    let (rx, tx) = pipe_fds();
    let got = size_pipe(tx, ring_bytes(size));
    let mut s = bytes_fds(env, size, rx, tx);
    close(rx);
    close(tx);
    s.note = Some(format!(
        "pipe buffer {} (shmipc's ring {})",
        kib(got),
        kib(ring_bytes(size))
    ));
    s
}

/// A Unix stream socket pair whose send and receive buffers are as large
/// as shmipc's ring.
pub fn bytes_uds(env: &Env, size: usize) -> Sample {
    let (a, b) = socket_pair();
    let (snd, rcv) = size_socket(a, b, ring_bytes(size));
    let mut s = bytes_fds(env, size, b, a);
    close(a);
    close(b);
    s.note = Some(format!(
        "SO_SNDBUF {} / SO_RCVBUF {} as the kernel reports them (it doubles what is asked; asked: shmipc's ring {})",
        kib(snd),
        kib(rcv),
        kib(ring_bytes(size))
    ));
    s
}

pub fn bytes_ipc_channel(env: &Env, size: usize) -> Sample {
    let (tx, rx) = ipc_channel::ipc::bytes_channel().unwrap();
    let dur = env.dur;
    let (tx, rx) = (&tx, &rx);
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| produce_bytes(ctl, 2, dur, size, |m| tx.send(m).unwrap())),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| consume_bytes(ctl, 1, || rx.recv().unwrap()[0])),
        ),
    ]);
    sample(map.ctl(), size)
}

/// The page-aligned `size` bytes inside `buf` (which has 4096 spare).
fn page_aligned(buf: &mut [u8], size: usize) -> &mut [u8] {
    let skip = buf.as_ptr().align_offset(4096);
    &mut buf[skip..skip + size]
}

/// The one-copy limit: `copy_from_slice` between two page-aligned buffers
/// hot in the cache of one core. No queue can beat it, and a queue makes
/// two copies on two cores, so it is a loose limit.
pub fn bytes_memcpy(env: &Env, size: usize) -> Sample {
    pin(CORE_A);
    // Both buffers page-aligned: with two plain `Vec`s, glibc's `rep movsb`
    // on an AMD machine ran at 2 GB/s for 64 KiB whenever the destination
    // sat a few bytes past the source modulo 4096 (43 GB/s otherwise), and
    // the limit would have measured the allocator's luck.
    let (mut a, mut b) = (vec![1u8; size + 4096], vec![0u8; size + 4096]);
    let src = page_aligned(&mut a, size);
    let dst = page_aligned(&mut b, size);
    let meter = crate::sys::Meter::start(crate::sys::Scope::Thread);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < env.dur {
        for _ in 0..64 {
            dst.copy_from_slice(black_box(&*src));
            black_box(&mut *dst);
        }
        n += 64;
    }
    let value = n as f64 * size as f64 / start.elapsed().as_nanos() as f64;
    let spent = meter.stop();
    Sample {
        value,
        ops: n,
        cpu_ns: spent.cpu_ns,
        sys_ns: spent.sys_ns,
        syscalls: spent.syscalls,
        membarriers: spent.membarriers,
        ..Sample::default()
    }
}

/// The ring of the two-copy limit: two cache-line-padded indices, then
/// `slots` slots of `stride` bytes, in an anonymous shared mapping.
struct SlotRing {
    base: *mut u8,
    len: usize,
    slots: u64,
    stride: usize,
}

#[repr(C)]
struct Indices {
    head: Pad<AtomicU64>,
    tail: Pad<AtomicU64>,
}

const HEAD_ROOM: usize = 4096;

impl SlotRing {
    fn new(slots: usize, size: usize) -> SlotRing {
        let stride = size.next_multiple_of(64);
        let len = HEAD_ROOM + slots * stride;
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap");
        SlotRing {
            base: base.cast(),
            len,
            slots: slots as u64,
            stride,
        }
    }

    fn indices(&self) -> &Indices {
        // SAFETY: the first page of the mapping, zero-filled (a valid pair
        // of atomics), only accessed atomically.
        unsafe { &*self.base.cast::<Indices>() }
    }

    fn slot(&self, i: u64) -> *mut u8 {
        // SAFETY: `i % slots` is in bounds of the slot area.
        unsafe {
            self.base
                .add(HEAD_ROOM + (i % self.slots) as usize * self.stride)
        }
    }
}

impl Drop for SlotRing {
    fn drop(&mut self) {
        // SAFETY: we mapped exactly this range; the children have exited.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The two-copy limit of a stream across cores: the producer (core A)
/// copies each message from its own buffer into a slot of a shared ring
/// and publishes it with one Release store of an index; the consumer (core
/// B) copies it out into its own buffer and frees the slot the same way.
/// Each side caches the other's index and re-reads it only when the ring
/// looks full or empty. No headers, lengths, checks or wake-ups: what a
/// byte queue that makes the same two copies cannot beat. The ring holds
/// as many messages as shmipc's.
pub fn bytes_two_copy(env: &Env, size: usize) -> Sample {
    let ring = SlotRing::new(ring_messages(size).max(2), size);
    let ring = &ring;
    let dur = env.dur;
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                let ix = ring.indices();
                let (mut head, mut tail) = (0u64, 0u64);
                produce_bytes(ctl, 2, dur, size, |m| {
                    while head - tail == ring.slots {
                        // SYNC POINT: Acquire pairs with the consumer's
                        // Release store of `tail`: the slot is free.
                        tail = ix.tail.0.load(Ordering::Acquire);
                        std::hint::spin_loop();
                    }
                    // SAFETY: the slot is ours until we publish it, and
                    // `m` has `size` bytes, as the slot has room for.
                    unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), ring.slot(head), size) };
                    head += 1;
                    // SYNC POINT: Release pairs with the consumer's Acquire
                    // load of `head`.
                    ix.head.0.store(head, Ordering::Release);
                });
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let ix = ring.indices();
                let (mut head, mut tail) = (0u64, 0u64);
                let mut buf = vec![0u8; size + 4096];
                let dst = page_aligned(&mut buf, size);
                consume_bytes(ctl, 1, || {
                    while tail == head {
                        // SYNC POINT: Acquire pairs with the producer's
                        // Release store of `head`.
                        head = ix.head.0.load(Ordering::Acquire);
                        std::hint::spin_loop();
                    }
                    // SAFETY: the slot was published and stays ours until
                    // we move `tail` past it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ring.slot(tail), dst.as_mut_ptr(), size)
                    };
                    tail += 1;
                    // SYNC POINT: Release pairs with the producer's Acquire
                    // load of `tail`.
                    ix.tail.0.store(tail, Ordering::Release);
                    dst[0]
                });
            }),
        ),
    ]);
    sample(map.ctl(), size)
}
