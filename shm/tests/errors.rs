//! Every error the crate reports, provoked for real.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{join, off, poke, poke_u32, poke_u64, shm_path};
use shmipc::Unlinker;
use shmipc::{fork, Error, Event, ExitStatus, Kind, Lock, Named, Options, Segment, Shared};

fn expect_invalid(name: &str) {
    let checks: [(&str, shmipc::Result<()>); 4] = [
        (
            "Segment::create",
            Segment::create_with(name, 8, &Options::new()).map(drop),
        ),
        (
            "Segment::open",
            Segment::open_with(name, &Options::new()).map(drop),
        ),
        ("Shared::open", Shared::<Lock>::open(name).map(drop)),
        ("unlink", shmipc::unlink(name)),
    ];
    for (what, result) in checks {
        match result {
            Err(Error::InvalidName { name: n, reason }) => {
                assert_eq!(n, name);
                assert!(!reason.is_empty());
            }
            other => panic!("{what}({name:?}): expected InvalidName, got {other:?}"),
        }
    }
}

#[test]
fn invalid_names() {
    expect_invalid("");
    expect_invalid("/");
    expect_invalid("a/b");
    expect_invalid("/a/b");
    expect_invalid("a\0b");
    expect_invalid(&"x".repeat(256));
    expect_invalid(&format!("/{}", "x".repeat(255)));
    expect_invalid("..");
    let e = Segment::open_with("a/b", &Options::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"a/b\" is not a valid shared memory name: it contains a '/' other than the leading one"
    );
}

#[test]
fn not_found() {
    let (_names, name) = common::segment_name("test", "missing");
    let e = Shared::<Lock>::open(&name).unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { name: n } if *n == name),
        "{e:?}"
    );
    assert!(e.to_string().contains(&name), "{e}");
    assert!(matches!(
        Segment::open_with(&name, &Options::new()),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(shmipc::unlink(&name), Err(Error::NotFound { .. })));
    // Without the leading slash it is the same name.
    assert!(matches!(
        Segment::open_with(&name[1..], &Options::new()),
        Err(Error::NotFound { name: n }) if n == name
    ));
}

#[test]
fn already_exists() {
    let (names, name) = common::segment_name("test", "taken");
    let _lock = Shared::<Lock>::create(&name, ()).unwrap();
    assert!(matches!(
        Shared::<Lock>::create(&name, ()),
        Err(Error::AlreadyExists { name: n }) if n == name
    ));
    // Whatever the kind asked for.
    assert!(matches!(
        Segment::create_with(&name, 100, &Options::new()),
        Err(Error::AlreadyExists { .. })
    ));
    // A foreign file of that name counts too.
    let foreign = names.name("taken-foreign");
    std::fs::write(shm_path(&foreign), b"someone else's").unwrap();
    assert!(matches!(
        Shared::<Event>::create(&foreign, ()),
        Err(Error::AlreadyExists { .. })
    ));
}

/// Drops to the `nobody` user (uid/gid 65534) in the calling (child)
/// process; false if that failed.
fn become_nobody() -> bool {
    // SAFETY: plain system calls on this (forked, single-threaded) process.
    unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(65534) == 0
            && libc::setuid(65534) == 0
            && libc::geteuid() == 65534
    }
}

#[test]
fn permission_denied() {
    let (names, private) = common::segment_name("test", "private");
    let readable = names.name("readable");
    let rlock = names.name("rlock");
    let _seg = Segment::create_with(&private, 64, &Options::new()).unwrap(); // 0600
    let _pub = Segment::create_with(&readable, 64, &Options::new().mode(0o644)).unwrap();
    let _lock = Shared::<Lock>::create_with(&rlock, (), &Options::new().mode(0o644)).unwrap();

    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // Root bypasses file modes, so provoke EACCES from an unprivileged
        // child (which trusts root's segments: by default it would refuse
        // them before trying, as segments of another user).
        let mut child = fork(|| {
            if !become_nobody() {
                return 10;
            }
            let rw = Options::new().trust_owner(0);
            let ro = rw.clone().read_only(true);
            let rw_private = Segment::open_with(&private, &rw);
            let ro_private = Segment::open_with(&private, &ro);
            let rw_public = Segment::open_with(&readable, &rw);
            let ro_public = Segment::open_with(&readable, &ro);
            let typed = Shared::<Lock>::open_with(&rlock, &rw);
            match (rw_private, ro_private, rw_public, ro_public, typed) {
                (
                    Err(Error::PermissionDenied { name: a }),
                    Err(Error::PermissionDenied { .. }),
                    Err(Error::PermissionDenied { .. }),
                    Ok(seg),
                    Err(Error::PermissionDenied { .. }),
                ) if a == private && seg.is_read_only() => 0,
                other => {
                    eprintln!("unexpected: {other:?}");
                    1
                }
            }
        })
        .unwrap();
        assert_eq!(join(&mut child), ExitStatus::Code(0));
    } else {
        // Not root: a mode of 0 locks out even the owner.
        let locked = names.name("mode-0");
        let _s = Segment::create_with(&locked, 64, &Options::new().mode(0)).unwrap();
        assert!(matches!(
            Segment::open_with(&locked, &Options::new()),
            Err(Error::PermissionDenied { .. })
        ));
    }
}

#[test]
fn not_shmipc_for_foreign_segments() {
    let names = Unlinker::new("test");

    // As Python's multiprocessing.shared_memory makes them: shm_open +
    // ftruncate, all zeros.
    let zeros = names.name("zeros");
    let c = std::ffi::CString::new(zeros.clone()).unwrap();
    // SAFETY: a NUL-terminated name; the descriptor is closed below.
    let fd = unsafe {
        libc::shm_open(
            c.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            0o600,
        )
    };
    assert!(fd >= 0);
    // SAFETY: `fd` is the descriptor opened above.
    unsafe {
        assert_eq!(libc::ftruncate(fd, 4096), 0);
        libc::close(fd);
    }
    for result in [
        Segment::open_with(&zeros, &Options::new()).map(drop),
        Shared::<Lock>::open(&zeros).map(drop),
    ] {
        assert!(
            matches!(&result, Err(Error::NotShmipc { name }) if *name == zeros),
            "{result:?}"
        );
    }

    // Garbage written straight into /dev/shm.
    let garbage = names.name("garbage");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(shm_path(&garbage), &bytes).unwrap();
    assert!(matches!(
        Shared::<Event>::open(&garbage),
        Err(Error::NotShmipc { .. })
    ));

    // A short foreign file: not ours, rather than "truncated".
    let short = names.name("short");
    std::fs::write(shm_path(&short), b"hello, world").unwrap();
    assert!(matches!(
        Segment::open_with(&short, &Options::new()),
        Err(Error::NotShmipc { .. })
    ));
    let e = Segment::open_with(&short, &Options::new()).unwrap_err();
    assert!(e.to_string().contains("not created by shmipc"), "{e}");
}

#[test]
fn wrong_kind() {
    let (_names, name) = common::segment_name("test", "a-lock");
    let _lock = Shared::<Lock>::create(&name, ()).unwrap();
    let e = Shared::<Event>::open(&name).unwrap_err();
    match &e {
        Error::WrongKind {
            name: n,
            expected,
            found,
        } => {
            assert_eq!(*n, name);
            assert_eq!(*expected, Kind::EVENT);
            assert_eq!(*found, Kind::LOCK.raw());
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    assert!(e.to_string().contains("holds a Lock, not an Event"), "{e}");
    assert!(matches!(
        Segment::open_with(&name, &Options::new()),
        Err(Error::WrongKind {
            expected: Kind::BYTES,
            ..
        })
    ));
    // A kind nobody knows (a later version's queue, say).
    poke_u32(&name, off::KIND, 4242);
    let e = Shared::<Lock>::open(&name).unwrap_err();
    assert!(matches!(e, Error::WrongKind { found: 4242, .. }));
    assert!(e.to_string().contains("kind 4242"), "{e}");
}

#[test]
fn version_mismatch() {
    let (_names, name) = common::segment_name("test", "v2");
    let _lock = Shared::<Lock>::create(&name, ()).unwrap();
    // Version 1 (no peer table) is what the previous release wrote.
    poke_u32(&name, off::VERSION, 1);
    let e = Shared::<Lock>::open(&name).unwrap_err();
    assert!(
        matches!(
            e,
            Error::VersionMismatch {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("version 1"), "{e}");
}

#[test]
fn too_small_when_truncated() {
    let (_names, name) = common::segment_name("test", "truncated");
    let seg = Segment::create_with(&name, 4096, &Options::new()).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(shm_path(&name))
        .unwrap();

    // Below its total size (the header, 4096 bytes, and the default
    // peer table of 256 32-byte slots): checked before mapping the rest.
    file.set_len(128 + 100).unwrap();
    let e = Segment::open_with(&name, &Options::new()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooSmall {
                required: 12416, // 128 + 4096 + 256 * 32
                actual: 228,
                ..
            }
        ),
        "{e:?}"
    );

    // Below the header, magic intact: truncated, not foreign.
    file.set_len(100).unwrap();
    let e = Segment::open_with(&name, &Options::new()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::TooSmall {
                required: 128,
                actual: 100,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("100 bytes long but needs 128"),
        "{e}"
    );

    file.set_len(0).unwrap();
    assert!(matches!(
        Segment::open_with(&name, &Options::new()),
        Err(Error::TooSmall {
            required: 128,
            actual: 0,
            ..
        })
    ));
    // `seg` still maps the bytes; we never touch them again, since the
    // file is now shorter than the mapping (access would be SIGBUS).
    drop(seg);
}

#[test]
fn corrupted_headers() {
    let names = Unlinker::new("test");
    type Poke = fn(&str);
    let cases: [(&str, Poke); 12] = [
        ("object offset", |n| poke_u64(n, off::OBJECT_OFFSET, 4096)),
        ("object offset", |n| {
            poke_u64(n, off::OBJECT_OFFSET, u64::MAX)
        }),
        ("total size", |n| poke_u64(n, off::OBJECT_SIZE, u64::MAX)),
        ("total size", |n| poke_u64(n, off::TOTAL_SIZE, 1 << 40)),
        // 8 bytes where a Lock has 16: the table still starts at 256.
        ("object size does not match", |n| {
            poke_u64(n, off::OBJECT_SIZE, 8)
        }),
        ("peer table offset", |n| poke_u64(n, off::PEERS_OFFSET, 128)),
        ("slot count", |n| poke_u32(n, off::PEER_SLOTS, 0)),
        ("slot count", |n| poke_u32(n, off::PEER_SLOTS, 5000)),
        ("object size is zero", |n| {
            poke_u64(n, off::OBJECT_SIZE, 0);
            poke_u64(n, off::TOTAL_SIZE, 128);
        }),
        ("alignment", |n| poke_u64(n, off::OBJECT_ALIGN, 3)),
        ("parameters", |n| poke_u64(n, off::PARAMS + 8, 7)),
        ("state word", |n| poke_u32(n, off::STATE, 7)),
    ];
    for (what, damage) in cases {
        let name = names.name("corrupt");
        drop(Shared::<Lock>::create(&name, ()).unwrap());
        damage(&name);
        match Shared::<Lock>::open(&name) {
            Err(Error::Corrupted { name: n, what: w }) => {
                assert_eq!(n, name);
                assert!(w.contains(what), "{what:?} not in {w:?}");
            }
            other => panic!("{what}: expected Corrupted, got {other:?}"),
        }
    }
    // Trailing garbage in the reserved bytes is tolerated.
    let name = names.name("reserved");
    drop(Shared::<Lock>::create(&name, ()).unwrap());
    poke(&name, 100, &[0xff; 20]);
    assert!(Shared::<Lock>::open(&name).is_ok());
}

/// A "slow creator": a forked process that marks an existing segment as
/// still initialising, names itself the creator, holds the creator's lock
/// byte as a real creator does, and sleeps.
fn slow_creator(
    name: &str,
    ready: &Shared<Event>,
    finish_after: Option<Duration>,
) -> shmipc::Child {
    fork(|| {
        let _creating = common::hold_byte(name, shmipc::memory::CREATOR_LOCK);
        poke_u32(name, off::CREATOR_PID, std::process::id());
        poke_u32(name, off::STATE, 1); // INITIALIZING
        ready.set();
        match finish_after {
            Some(d) => {
                std::thread::sleep(d);
                poke_u32(name, off::STATE, 2); // READY
            }
            None => std::thread::sleep(Duration::from_secs(60)),
        }
        0
    })
    .unwrap()
}

#[test]
fn init_timeout_then_creator_died() {
    let (_names, name) = common::segment_name("test", "slow");
    drop(Shared::<Event>::create(&name, ()).unwrap());
    let ready = Shared::<Event>::anon(()).unwrap();
    let mut creator = slow_creator(&name, &ready, None);
    assert!(ready.wait_timeout(Duration::from_secs(30)));

    let timeout = Duration::from_millis(200);
    let opts = Options::new().init_timeout(timeout);
    let start = Instant::now();
    let e = Shared::<Event>::open_with(&name, &opts).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(e, Error::InitTimeout { creator_pid, .. } if creator_pid == creator.pid()),
        "{e:?}"
    );
    assert!(took >= timeout, "gave up after {took:?}");
    assert!(
        took < timeout + Duration::from_secs(2),
        "gave up after {took:?}"
    );

    creator.kill().unwrap();
    assert_eq!(join(&mut creator), ExitStatus::Signal(libc::SIGKILL));
    let e = Shared::<Event>::open_with(&name, &opts).unwrap_err();
    assert!(
        matches!(e, Error::CreatorDied { creator_pid, .. } if creator_pid == creator.pid()),
        "{e:?}"
    );
    assert!(e.to_string().contains("died while initialising"), "{e}");
}

#[test]
fn a_killed_creator_not_yet_reaped_counts_as_dead() {
    let (_names, name) = common::segment_name("test", "zombie-creator");
    drop(Shared::<Event>::create(&name, ()).unwrap());
    let ready = Shared::<Event>::anon(()).unwrap();
    let mut creator = slow_creator(&name, &ready, None);
    assert!(ready.wait_timeout(Duration::from_secs(30)));
    creator.kill().unwrap();
    // Not reaped: the creator is a zombie until we join it. Opening must
    // not wait for the full timeout on it.
    let opts = Options::new().init_timeout(Duration::from_secs(20));
    let start = Instant::now();
    let e = Shared::<Event>::open_with(&name, &opts).unwrap_err();
    assert!(
        matches!(e, Error::CreatorDied { creator_pid, .. } if creator_pid == creator.pid()),
        "{e:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(join(&mut creator), ExitStatus::Signal(libc::SIGKILL));
}

#[test]
fn opener_waits_for_a_slow_creator_to_finish() {
    let (_names, name) = common::segment_name("test", "slow-ok");
    drop(Shared::<Event>::create(&name, ()).unwrap());
    let ready = Shared::<Event>::anon(()).unwrap();
    let mut creator = slow_creator(&name, &ready, Some(Duration::from_millis(300)));
    assert!(ready.wait_timeout(Duration::from_secs(30)));
    let start = Instant::now();
    let opened =
        Shared::<Event>::open_with(&name, &Options::new().init_timeout(Duration::from_secs(20)));
    assert!(opened.is_ok(), "{opened:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "did not wait"
    );
    assert_eq!(join(&mut creator), ExitStatus::Code(0));
}

#[test]
fn read_only_typed_objects_and_writes_are_refused() {
    let (names, name) = common::segment_name("test", "ro");
    let _lock = Shared::<Lock>::create(&name, ()).unwrap();
    assert!(matches!(
        Shared::<Lock>::open_with(&name, &Options::new().read_only(true)),
        Err(Error::ReadOnly { .. })
    ));
    let bytes = names.name("ro-bytes");
    let _seg = Segment::create_with(&bytes, 16, &Options::new()).unwrap();
    let ro = Segment::open_with(&bytes, &Options::new().read_only(true)).unwrap();
    let e = ro.write_at(0, b"x").unwrap_err();
    assert!(
        matches!(&e, Error::ReadOnly { name } if *name == bytes),
        "{e:?}"
    );
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[test]
fn modes_are_exact() {
    let (names, default) = common::segment_name("test", "mode-default");
    let _a = Segment::create_with(&default, 8, &Options::new()).unwrap();
    let mode = |n: &str| std::fs::metadata(shm_path(n)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&default), 0o600);

    // Under a strict umask (set in a child: the umask is per process).
    let custom = names.name("mode-644");
    let open = names.name("mode-666");
    let mut child = fork(|| {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(0o077) };
        let a = Shared::<Lock>::create_with(&custom, (), &Options::new().mode(0o644));
        let b = Segment::create_with(&open, 8, &Options::new().mode(0o666));
        i32::from(a.is_err() || b.is_err())
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(mode(&custom), 0o644);
    assert_eq!(mode(&open), 0o666);
}
