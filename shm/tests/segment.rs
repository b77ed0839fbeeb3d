//! Named segments: creation, opening, lifetime.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{join, join_all_ok, shm_path};
use shmipc::memory::{Mapping, ObjectLayout};
use shmipc::{
    fork, AtomicU32, AtomicU64, Child, Error, Event, ExitStatus, Kind, Lock, Named, Options,
    Segment, Shared,
};

#[test]
fn bytes_written_in_one_process_are_read_in_another() {
    let (_names, name) = common::segment_name("test", "bytes");
    let seg = Segment::create_with(&name, 1000, &Options::new()).unwrap();
    assert_eq!(seg.len(), 1000);
    assert_eq!(seg.name(), Some(name.as_str()));
    assert_eq!(seg.creator_pid(), std::process::id());
    assert!(!seg.is_read_only());
    assert_eq!(seg.as_ptr() as usize % 128, 0, "payload is 128-aligned");
    let mut zero = [1u8; 1000];
    seg.read_at(0, &mut zero).unwrap();
    assert!(zero.iter().all(|&b| b == 0), "a new payload is zeroed");

    let mut child = fork(|| {
        let Ok(seg) = Segment::open_with(&name, &Options::new()) else {
            return 1;
        };
        if seg.len() != 1000 || seg.write_at(990, b"0123456789").is_err() {
            return 2;
        }
        0
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    let mut buf = [0u8; 10];
    seg.read_at(990, &mut buf).unwrap();
    assert_eq!(&buf, b"0123456789");
}

#[test]
fn accesses_out_of_bounds_are_errors() {
    let (names, name) = common::segment_name("test", "bounds");
    let seg = Segment::create_with(&name, 16, &Options::new()).unwrap();
    seg.write_at(16, b"").unwrap();
    for (offset, len) in [(0, 17), (16, 1), (15, 2), (usize::MAX, 2)] {
        let e = seg.write_at(offset, &vec![0; len]).unwrap_err();
        assert!(
            matches!(e, Error::OutOfBounds { size: 16, .. }),
            "{offset}+{len}: {e:?}"
        );
        assert!(matches!(
            seg.read_at(offset, &mut vec![0; len]),
            Err(Error::OutOfBounds { .. })
        ));
    }
    assert!(matches!(
        Segment::create_with(&names.name("empty"), 0, &Options::new()),
        Err(Error::Layout {
            source: shmipc::LayoutError::Parameter {
                param: "size",
                value: 0,
                ..
            },
            ..
        })
    ));
}

#[test]
fn open_or_create_creates_once() {
    let (names, name) = common::segment_name("test", "ooc");
    let (a, created) = Shared::<AtomicU64>::open_or_create(&name, 41).unwrap();
    assert!(created);
    let (b, created) = Shared::<AtomicU64>::open_or_create(&name, 99).unwrap();
    assert!(!created);
    b.fetch_add(1, Ordering::SeqCst);
    assert_eq!(a.load(Ordering::SeqCst), 42, "the existing value, not 99");

    let bytes = names.name("ooc-bytes");
    let (s, created) = Segment::open_or_create_with(&bytes, 64, &Options::new()).unwrap();
    assert!(created);
    let (t, created) = Segment::open_or_create_with(&bytes, 4096, &Options::new()).unwrap();
    assert!(!created);
    assert_eq!(
        (s.len(), t.len()),
        (64, 64),
        "an existing segment keeps its size"
    );
}

#[test]
fn open_or_create_race_between_eight_processes_creates_exactly_once() {
    let (_names, name) = common::segment_name("test", "race");
    let creators = Shared::<AtomicU32>::anon(0).unwrap();
    let go = Shared::<Event>::anon(()).unwrap();
    let mut children: Vec<Child> = (0..8)
        .map(|_| {
            fork(|| {
                if !go.wait_timeout(Duration::from_secs(30)) {
                    return 1;
                }
                match Shared::<AtomicU64>::open_or_create(&name, 0) {
                    Ok((counter, created)) => {
                        if created {
                            creators.fetch_add(1, Ordering::SeqCst);
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        0
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        2
                    }
                }
            })
            .unwrap()
        })
        .collect();
    go.set();
    join_all_ok(&mut children);
    assert_eq!(creators.load(Ordering::SeqCst), 1);
    let counter = Shared::<AtomicU64>::open(&name).unwrap();
    assert_eq!(counter.load(Ordering::SeqCst), 8);
}

#[test]
fn a_forked_child_dropping_its_handles_unlinks_nothing() {
    let (names, parents) = common::segment_name("test", "parents");
    let childs = names.name("childs");
    let lock = Shared::<Lock>::create(&parents, ()).unwrap();
    let mut child = fork(|| {
        // Drop a handle it opened, one it inherited, and one it created.
        let opened = Shared::<Lock>::open(&parents).unwrap();
        drop(opened);
        drop(Shared::<Lock>::create(&childs, ()).unwrap());
        let _inherited = &lock;
        0
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert!(shm_path(&parents).exists());
    assert!(shm_path(&childs).exists());
    assert!(Shared::<Lock>::open(&childs).is_ok());

    // Nor does dropping the creator's own handle.
    drop(lock);
    assert!(Shared::<Lock>::open(&parents).is_ok());
}

#[test]
fn an_unlinked_segment_lives_on_for_those_who_map_it() {
    let (_names, name) = common::segment_name("test", "unlinked");
    let a = Shared::<AtomicU64>::create(&name, 7).unwrap();
    let b = Shared::<AtomicU64>::open(&name).unwrap();
    Shared::<AtomicU64>::unlink(&name).unwrap();
    assert!(matches!(
        Shared::<AtomicU64>::open(&name),
        Err(Error::NotFound { .. })
    ));
    a.store(8, Ordering::SeqCst);
    assert_eq!(b.load(Ordering::SeqCst), 8);
    // The name is free again.
    let c = Shared::<AtomicU64>::create(&name, 1).unwrap();
    assert_eq!(c.load(Ordering::SeqCst), 1);
    assert_eq!(a.load(Ordering::SeqCst), 8);
}

#[test]
fn a_creator_killed_during_initialisation_leaves_nothing_behind() {
    let (_names, name) = common::segment_name("test", "killed-creator");
    let initialising = Shared::<Event>::anon(()).unwrap();
    let mut creator = fork(|| {
        let layout = ObjectLayout {
            kind: Kind::new(1000),
            size: 64,
            align: 8,
            params: [0; 4],
        };
        let _ = Mapping::create(&name, &layout, &Options::new(), |_, _| {
            initialising.set();
            std::thread::sleep(Duration::from_secs(60));
            Ok(())
        });
        1
    })
    .unwrap();
    assert!(initialising.wait_timeout(Duration::from_secs(30)));
    // Mid-initialisation: no name yet, so no one sees a half-built segment.
    assert!(matches!(
        Segment::open_with(&name, &Options::new()),
        Err(Error::NotFound { .. })
    ));
    creator.kill().unwrap();
    assert_eq!(join(&mut creator), ExitStatus::Signal(libc::SIGKILL));
    assert!(!shm_path(&name).exists());
    let pid = creator.pid();
    let leftovers: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!(".shmipc-tmp-{pid}-")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And the name can be created normally.
    assert!(Shared::<Event>::create(&name, ()).is_ok());
}

#[test]
fn the_header_is_the_documented_layout() {
    let (_names, name) = common::segment_name("test", "layout");
    let _sem = Shared::<shmipc::Semaphore>::create(&name, common::unbounded(2)).unwrap();
    let raw = std::fs::read(shm_path(&name)).unwrap();
    let u32_at = |o: usize| u32::from_ne_bytes(raw[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_ne_bytes(raw[o..o + 8].try_into().unwrap());
    assert_eq!(&raw[..8], b"\x7fSHMIPC\0");
    assert_eq!(u32_at(8), 2, "version");
    assert_eq!(u32_at(12), 2, "state READY");
    assert_eq!(u32_at(16), std::process::id(), "creator pid");
    assert_eq!(u32_at(20), Kind::SEMAPHORE.raw());
    // The peer table starts at the object's end rounded up to 128 and has
    // the default 256 slots of 32 bytes.
    assert_eq!(u64_at(24), 256 + 256 * 32, "total size");
    assert_eq!(raw.len(), 256 + 256 * 32, "file size");
    assert_eq!(u64_at(32), 128, "object offset");
    assert_eq!(u64_at(40), 24, "object size");
    assert_eq!(u64_at(48), 8, "object align");
    assert!(raw[56..88].iter().all(|&b| b == 0), "params");
    assert_eq!(u64_at(88), 256, "peer table offset");
    assert_eq!(u32_at(96), 256, "peer slots");
    assert!(raw[100..128].iter().all(|&b| b == 0), "reserved");
    assert_eq!(u32_at(128), 2, "the semaphore's count");
    // Our own slot: this handle claimed one when it created the segment,
    // recording its generation (1) and our pid.
    let slots: Vec<(u32, u32)> = (0..256)
        .map(|i| (u32_at(256 + 32 * i), u32_at(256 + 32 * i + 4)))
        .filter(|&(generation, _)| generation != 0)
        .collect();
    assert_eq!(slots, vec![(1, std::process::id())], "one slot claimed");
}
