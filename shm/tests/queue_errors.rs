//! Opening a queue as the wrong kind, with the wrong element type, or
//! over a foreign or corrupted segment gives a clear error.

mod common;

use common::{off, poke, poke_u64};
use shmipc::{
    ByteQueue, BytesConfig, Error, Kind, Lock, Named, Options, Pipe, Queue, RingConfig, Segment,
    Shared, SpscQueue, Unlinker,
};

fn message(r: Result<impl std::fmt::Debug, Error>) -> (Error, String) {
    let e = r.expect_err("opening should fail");
    let m = e.to_string();
    (e, m)
}

#[test]
fn a_queue_opened_as_another_kind_is_wrong_kind() {
    let (_names, [qn, bn, sn, pn, ln, segn]) = common::segment_names(
        "qerr-kind",
        ["queue", "bytes", "spsc", "pipe", "lock", "segment"],
    );
    let _q = Queue::<u64>::create(&qn, RingConfig::new(8)).unwrap();
    let _b = ByteQueue::create(&bn, BytesConfig::new(256, 64)).unwrap();
    let _s = SpscQueue::<u64>::create(&sn, RingConfig::new(8)).unwrap();
    let _p = Pipe::create(&pn, BytesConfig::new(256, 64)).unwrap();
    let _l = Shared::<Lock>::create(&ln, ()).unwrap();
    let _seg = Segment::create_with(&segn, 4096, &Options::new()).unwrap();

    let (e, m) = message(ByteQueue::open(&qn));
    assert!(
        matches!(
            e,
            Error::WrongKind {
                expected: Kind::BYTE_QUEUE,
                found: 64,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(m.contains("holds a Queue, not a ByteQueue"), "{m}");
    let (e, m) = message(Queue::<u64>::open(&sn));
    assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
    assert!(m.contains("holds an SpscQueue, not a Queue"), "{m}");
    let (_, m) = message(SpscQueue::<u64>::producer(&pn));
    assert!(m.contains("holds a Pipe, not an SpscQueue"), "{m}");
    let (_, m) = message(Pipe::open(&bn));
    assert!(m.contains("holds a ByteQueue, not a Pipe"), "{m}");
    let (_, m) = message(Queue::<u64>::open(&ln));
    assert!(m.contains("holds a Lock, not a Queue"), "{m}");
    let (_, m) = message(ByteQueue::open(&segn));
    assert!(m.contains("holds raw bytes, not a ByteQueue"), "{m}");
    // And the other way round.
    let (_, m) = message(Shared::<Lock>::open(&qn));
    assert!(m.contains("holds a Queue, not a Lock"), "{m}");
}

#[test]
fn a_queue_opened_with_another_element_type_is_element_mismatch() {
    let (_names, [qn, sn]) = common::segment_names("qerr-elem", ["queue", "spsc"]);
    let _q = Queue::<u64>::create(&qn, RingConfig::new(8)).unwrap();
    let _s = SpscQueue::<[u8; 3]>::create(&sn, RingConfig::new(8)).unwrap();

    let (e, m) = message(Queue::<u32>::open(&qn));
    assert!(
        matches!(
            e,
            Error::ElementMismatch {
                expected_size: 4,
                expected_align: 4,
                found_size: 8,
                found_align: 8,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        m.contains("elements of 8 bytes") && m.contains("u32"),
        "{m}"
    );
    let (_, m) = message(SpscQueue::<[u8; 4]>::consumer(&sn));
    assert!(m.contains("elements of 3 bytes aligned to 1"), "{m}");
    // Same size, other alignment.
    let (e, _) = message(Queue::<[u32; 2]>::open(&qn));
    assert!(matches!(e, Error::ElementMismatch { .. }), "{e:?}");
    assert!(Queue::<u64>::open(&qn).is_ok());
}

#[test]
fn a_foreign_segment_is_not_shmipc() {
    let (names, name) = common::segment_name("qerr-foreign", "foreign");
    std::fs::write(common::shm_path(&name), vec![0x5a; 4096]).unwrap();
    let (e, m) = message(Queue::<u64>::open(&name));
    assert!(matches!(e, Error::NotShmipc { .. }), "{e:?}");
    assert!(m.contains("not created by shmipc"), "{m}");
    assert!(matches!(Pipe::open(&name), Err(Error::NotShmipc { .. })));
    assert!(matches!(
        ByteQueue::open(&names.name("missing")),
        Err(Error::NotFound { .. })
    ));
}

/// The object area starts right after the 128-byte header.
const OBJECT: u64 = 128;

#[test]
fn corrupted_queue_headers_and_control_blocks_are_refused() {
    let names = Unlinker::new("qerr-corrupt");

    // A capacity in the header that is not a power of two.
    let n = names.name("cap");
    let _q = Queue::<u64>::create(&n, RingConfig::new(8)).unwrap();
    poke_u64(&n, off::PARAMS, 7);
    let (e, m) = message(Queue::<u64>::open(&n));
    assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
    assert!(m.contains("parameters") || m.contains("capacity"), "{m}");

    // A capacity that is valid but disagrees with the object size.
    let n = names.name("cap2");
    let _q = Queue::<u64>::create(&n, RingConfig::new(8)).unwrap();
    poke_u64(&n, off::PARAMS, 16);
    let (e, _) = message(Queue::<u64>::open(&n));
    assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");

    // An element word rewritten.
    let n = names.name("elem");
    let _q = Queue::<u64>::create(&n, RingConfig::new(8)).unwrap();
    poke_u64(&n, off::PARAMS + 24, 2 | 2 << 32);
    let (e, _) = message(Queue::<u64>::open(&n));
    assert!(
        matches!(e, Error::ElementMismatch { found_size: 2, .. }),
        "{e:?}"
    );

    // The core control block's magic wiped: the object holds no queue.
    let n = names.name("magic");
    let _b = ByteQueue::create(&n, BytesConfig::new(256, 64)).unwrap();
    poke(&n, OBJECT, &[0; 8]);
    let (e, m) = message(ByteQueue::open(&n));
    assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
    assert!(m.contains("no initialised queue"), "{m}");

    // A pipe's second ring wiped (its control block starts after the role
    // block and the first ring).
    let n = names.name("pipe");
    let config = BytesConfig::new(256, 64);
    let p = Pipe::create(&n, config).unwrap();
    drop(p);
    let ring = shmipc_core::bytes::ByteQueue::layout(config)
        .unwrap()
        .size() as u64;
    poke(&n, OBJECT + 128 + ring, &[0; 8]);
    let (e, _) = message(Pipe::open(&n));
    assert!(matches!(e, Error::Corrupted { .. }), "{e:?}");
    // The failed open gave its claim back: both holder words (the first
    // 8 bytes of the role block) are zero again.
    let bytes = std::fs::read(common::shm_path(&n)).unwrap();
    let holders = &bytes[OBJECT as usize..OBJECT as usize + 8];
    assert_eq!(holders, [0; 8], "role block after a failed open");
}

#[test]
fn queues_refuse_read_only() {
    let (_names, n) = common::segment_name("qerr-ro", "q");
    let _q = Queue::<u64>::create(&n, RingConfig::new(8)).unwrap();
    assert!(matches!(
        Queue::<u64>::open_with(&n, &Options::new().read_only(true)),
        Err(Error::ReadOnly { .. })
    ));
}
