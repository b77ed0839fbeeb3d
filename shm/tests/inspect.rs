//! `shmipc::inspect` against a real segment of every kind: what the
//! report says is what the object's own handles say.

use std::num::NonZeroU32;

use shmipc::inspect::{Fate, Report, State};
use shmipc::{
    Barrier, ByteQueue, BytesConfig, Condition, DictConfig, Event, ListConfig, Named, Pipe,
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
