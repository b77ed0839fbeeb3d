//! A segment's bytes are what the layout says, never the creating
//! process's memory. A typed write of a control block copies the struct's
//! padding from the stack, and so wrote this process's addresses into the
//! file, for any reader of `/dev/shm` to see (and breaking "reserved bytes
//! are zero"). Each queue is created here, and every aligned 8-byte word of
//! its file is checked against this process's own mappings
//! (`/proc/self/maps`): none may point into them.

mod common;

use shmipc::{ByteQueue, BytesConfig, Named, Pipe, Queue, RingConfig, SpscQueue, Unlinker};

/// This process's mapped address ranges.
fn mappings() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let range = l.split_whitespace().next()?;
            let (a, b) = range.split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// The offsets and values of the words of `name`'s file that point into
/// this process's memory.
fn leaks(name: &str) -> Vec<(usize, u64)> {
    let bytes = std::fs::read(common::shm_path(name)).unwrap();
    let maps = mappings();
    bytes
        .chunks_exact(8)
        .enumerate()
        .filter_map(|(i, w)| {
            let v = u64::from_le_bytes(w.try_into().unwrap());
            maps.iter()
                .any(|&(a, b)| (a..b).contains(&v))
                .then_some((i * 8, v))
        })
        .collect()
}

#[test]
fn no_queue_file_holds_an_address_of_its_creator() {
    let names = Unlinker::new("no-leak");
    let ring = RingConfig::new(4);
    let bytes = BytesConfig::new(256, 16);
    let mut complaints = Vec::new();

    let n = names.name("mpmc");
    let _q = Queue::<u64>::create(&n, ring).unwrap();
    complaints.push(("Queue", leaks(&n)));
    let n = names.name("spsc");
    let _s = SpscQueue::<u64>::create(&n, ring).unwrap();
    complaints.push(("SpscQueue", leaks(&n)));
    let n = names.name("bytes");
    let _b = ByteQueue::create(&n, bytes).unwrap();
    complaints.push(("ByteQueue", leaks(&n)));
    let n = names.name("pipe");
    let _p = Pipe::create(&n, bytes).unwrap();
    complaints.push(("Pipe", leaks(&n)));

    complaints.retain(|(_, l)| !l.is_empty());
    assert!(
        complaints.is_empty(),
        "words pointing into the creator's memory (offset, value): {complaints:x?}"
    );
}
