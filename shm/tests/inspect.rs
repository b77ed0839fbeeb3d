//! `shmipc::inspect` against a real segment of every kind: what the
//! report says is what the object's own handles say.

use std::num::NonZeroU32;

use shmipc::inspect::{Fate, HoldKind, Report, State};
use shmipc::{
    Barrier, ByteQueue, BytesConfig, Condition, DictConfig, Event, ListConfig, Named, Pipe, Queue,
    RingConfig, Semaphore, SemaphoreConfig, Shared, SharedDict, SharedList, SpscQueue, Unlinker,
    Value,
};

#[test]
fn every_kind_is_decoded() -> Result<(), Box<dyn std::error::Error>> {
    let names = Unlinker::new("inspect-kinds");
    let me = std::process::id();

    let n = names.name("sem");
    let sem = Shared::<Semaphore>::create(
        &n,
        SemaphoreConfig {
            initial: 2,
            max: NonZeroU32::new(5),
        },
    )?;
    assert!(sem.try_acquire());
    assert_eq!(
        Report::open(&n)?.state,
        State::Semaphore {
            value: 1,
            max: Some(5),
            sleepers: 0
        }
    );

    let n = names.name("event");
    let ev = Shared::<Event>::create(&n, ())?;
    assert_eq!(Report::open(&n)?.state, State::Event { set: false });
    ev.set();
    assert_eq!(Report::open(&n)?.state, State::Event { set: true });

    let n = names.name("barrier");
    let _b = Shared::<Barrier>::create(&n, 3)?;
    assert_eq!(
        Report::open(&n)?.state,
        State::Barrier {
            parties: 3,
            waiting: 0,
            generation: 0,
            broken: false
        }
    );

    let n = names.name("cond");
    let c = Shared::<Condition>::create(&n, ())?;
    let g = c.lock()?;
    match Report::open(&n)?.state {
        State::Condition { lock, sleepers } => {
            assert_eq!(sleepers, 0);
            let owner = lock.owner.expect("the condition's lock is held");
            assert_eq!(owner.pid, Some(me));
            assert_eq!(owner.fate, Fate::Alive);
        }
        s => panic!("{s:?}"),
    }
    drop(g);

    let n = names.name("spsc");
    let q = SpscQueue::<u32>::create(&n, RingConfig::new(8))?;
    let mut p = q.take_producer()?;
    p.push(1)?;
    p.push(2)?;
    match Report::open(&n)?.state {
        State::SpscQueue(s) => {
            assert_eq!((s.len, s.capacity, s.item_size), (2, 8, 4));
            let [prod, cons] = s.roles.expect("an SPSC queue has roles");
            assert_eq!(prod.and_then(|h| h.pid), Some(me));
            assert_eq!(prod.map(|h| h.fate), Some(Fate::Alive));
            assert!(cons.is_none());
        }
        s => panic!("{s:?}"),
    }

    let n = names.name("bytes");
    let bq = ByteQueue::create(&n, BytesConfig::new(1024, 100))?;
    bq.try_send(b"hello")?;
    match Report::open(&n)?.state {
        State::ByteQueue(b) => {
            assert_eq!((b.capacity, b.max_message), (1024, 100));
            assert!(b.pending_bytes >= 5, "{b:?}");
            assert!(b.writer_lock.is_none() && b.reader_lock.is_none());
            assert!(!b.ring.closed);
        }
        s => panic!("{s:?}"),
    }
    bq.close();
    match Report::open(&n)?.state {
        State::ByteQueue(b) => assert!(b.ring.closed),
        s => panic!("{s:?}"),
    }

    let n = names.name("pipe");
    let a = Pipe::create(&n, BytesConfig::new(1024, 100))?;
    a.try_send(b"to b")?;
    match Report::open(&n)?.state {
        State::Pipe { rings, ends } => {
            assert_eq!(ends[0].and_then(|h| h.pid), Some(me));
            assert!(ends[1].is_none());
            assert!(rings[0].pending_bytes > 0 && rings[1].pending_bytes == 0);
        }
        s => panic!("{s:?}"),
    }

    let n = names.name("dict");
    let d = SharedDict::create(&n, DictConfig::new(10, 8, 8))?;
    d.insert(b"a", b"1")?;
    d.insert(b"b", b"2")?;
    d.remove(b"a")?;
    match Report::open(&n)?.state {
        State::Dict {
            capacity,
            len,
            tombstones,
            lock,
        } => {
            assert_eq!((capacity, len, tombstones), (10, 1, 1));
            assert!(lock.owner.is_none());
        }
        s => panic!("{s:?}"),
    }

    let n = names.name("list");
    let l = SharedList::create(&n, ListConfig::new(4, 8))?;
    l.append(b"x")?;
    assert!(matches!(
        Report::open(&n)?.state,
        State::List {
            capacity: 4,
            len: 1,
            ..
        }
    ));

    let n = names.name("value");
    let _v = Value::<u64>::create(&n, 7)?;
    assert!(matches!(
        Report::open(&n)?.state,
        State::Values {
            item_size: 8,
            len: 1,
            ..
        }
    ));

    let r = Report::open(&n)?;
    let file = r.file.expect("a file");
    assert_eq!(file.size, r.header.total_size);
    assert!(r.peers.iter().all(|p| p.slot < r.header.peer_slots));
    Ok(())
}

/// A 56-byte item: its record (16 bytes of bookkeeping, then the item) is
/// 128 bytes, not the 64 of a `u64` queue.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C)]
struct Wide([u64; 7]);

/// An item aligned to 128 bytes: its record is 256 bytes, the item at 128.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(128))]
struct Aligned([u8; 128]);

/// The push and pop claims `Report::open` lists for the queue `name`.
fn claims(name: &str) -> Vec<(u64, HoldKind, Option<u32>)> {
    let r = Report::open(name).expect("inspect");
    assert!(r.holds_complete, "{r:?}");
    r.holds
        .iter()
        .map(|h| (h.position, h.kind, h.holder.and_then(|h| h.pid)))
        .collect()
}

/// Claims a push (position 1) and a pop (position 0) on a queue of `T`
/// and checks that the report finds both where this item's records put
/// them.
fn claims_are_found<T: bytemuck::Pod>(names: &Unlinker, label: &str, item: T) {
    let me = Some(std::process::id());
    let n = names.name(label);
    let q = Queue::<T>::create(&n, RingConfig::new(8)).expect("create");
    q.try_push(item).expect("push");
    assert_eq!(claims(&n), [], "{label}");
    assert_eq!(q.claim_push_and_stop().expect("claim push"), 1, "{label}");
    assert_eq!(claims(&n), [(1, HoldKind::PushClaim, me)], "{label}");
    let pos = q.claim_pop_and_stop().expect("claim pop");
    assert_eq!(pos, 0, "{label}");
    assert_eq!(
        claims(&n),
        [(0, HoldKind::PopClaim, me), (1, HoldKind::PushClaim, me)],
        "{label}"
    );
}

#[test]
fn claims_are_found_on_queues_of_any_item_size_and_alignment() {
    let names = Unlinker::new("inspect-wide");
    claims_are_found(&names, "u8", 7u8);
    claims_are_found(&names, "u64", 7u64);
    claims_are_found(&names, "wide", Wide([7; 7]));
    claims_are_found(&names, "aligned", Aligned([7; 128]));
}

/// A queue written by a build of layout version 4 (sequence numbers and
/// owner words in one array of 16-byte records, the items in a second),
/// made from this build's queue of `u64` items with a push claim held at
/// position 1: the report either finds that claim or says its list is not
/// complete; it never reads the old layout with the new stride and reports
/// "no claims, complete".
#[test]
fn a_queue_of_an_older_layout_is_not_misread() {
    use shmipc_core::mpmc::{RECORDS_OFFSET, RECORD_HEADER};
    let names = Unlinker::new("inspect-v4");
    let n = names.name("queue");
    let cap = 8;
    let q = Queue::<u64>::create(&n, RingConfig::new(cap)).expect("create");
    q.try_push(7).expect("push");
    assert_eq!(q.claim_push_and_stop().expect("claim"), 1);
    let r = Report::open(&n).expect("inspect");
    assert_eq!(r.holds.len(), 1, "{r:?}");
    let mut file = std::fs::read(format!("/dev/shm{n}")).expect("read the segment");
    let obj = r.header.object_offset as usize;
    let stride = shmipc_core::mpmc::record_size(8, 8).expect("a record size");
    let records = obj + RECORDS_OFFSET;
    let v5 = file[records..records + cap * stride].to_vec();
    // Version 4: the control block is the same but for its version word
    // (after the magic and the kind); then the array of bookkeeping
    // records, then the items.
    file[obj + 12..obj + 16].copy_from_slice(&4u32.to_ne_bytes());
    let end = obj + r.header.object_size as usize;
    file[records..end].fill(0);
    for (i, rec) in v5.chunks_exact(stride).enumerate() {
        let meta = records + i * RECORD_HEADER;
        file[meta..meta + RECORD_HEADER].copy_from_slice(&rec[..RECORD_HEADER]);
        let item = records + cap * RECORD_HEADER + i * 8;
        file[item..item + 8].copy_from_slice(&rec[RECORD_HEADER..RECORD_HEADER + 8]);
    }
    match shmipc::inspect::decode(&n, &file) {
        Err(_) => {}
        Ok(old) => assert!(
            !old.holds_complete || old.holds.iter().any(|h| h.position == 1),
            "a version-4 queue read with version-5 records: {old:?}"
        ),
    }
}

/// A hostile header's item size and alignment (the last parameter word,
/// `size | align << 32`) and capacity (the first): decoding never panics,
/// and a geometry no queue has locates no claims.
#[test]
fn hostile_item_geometry_in_the_header_locates_nothing_and_never_panics() {
    let names = Unlinker::new("inspect-geom");
    let n = names.name("queue");
    let q = Queue::<u64>::create(&n, RingConfig::new(8)).expect("create");
    q.try_push(7).expect("push");
    assert_eq!(q.claim_push_and_stop().expect("claim"), 1);
    let file = std::fs::read(format!("/dev/shm{n}")).expect("read the segment");
    let elem = |size: u64, align: u64| size | align << 32;
    let geometries = [
        (8, elem(0, 8)),
        (8, elem(8, 0)),
        (8, elem(8, 3)),
        (8, elem(u32::MAX.into(), 8)),
        (8, elem(8, 1 << 31)),
        (8, elem(u32::MAX.into(), 1 << 31)),
        (8, u64::MAX),
        (1 << 31, elem(8, 8)),
        (u64::MAX, elem(8, 8)),
    ];
    for (cap, word) in geometries {
        let mut bad = file.clone();
        bad[56..64].copy_from_slice(&cap.to_ne_bytes());
        bad[80..88].copy_from_slice(&word.to_ne_bytes());
        if let Ok(r) = shmipc::inspect::decode(&n, &bad) {
            assert!(
                r.holds.iter().all(|h| h.position == 1),
                "cap {cap}, elem {word:#x}: {:?}",
                r.holds
            );
        }
    }
}
