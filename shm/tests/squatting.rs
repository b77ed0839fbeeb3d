//! A segment another user made at our name (a squatter: mode 0666, a valid
//! header) is refused by `open` and `open_or_create`, with an error that
//! names the owner and the option to trust it; trusted explicitly, it
//! opens.
//!
//! Making a segment as another user needs root (CI runs as root): a forked
//! child drops to `nobody` (65534) with `setresuid` and creates it. Not
//! root, those parts are skipped with a message; the rest runs.

mod common;

use std::time::Duration;

use shmipc::{fork, Error, Event, ExitStatus, Named, Options, Queue, RingConfig, Shared};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Drops the calling (forked, single-threaded) process to `nobody` for
/// good: real, effective and saved ids.
fn become_nobody() -> bool {
    // SAFETY: plain system calls on this process.
    unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setresgid(NOBODY, NOBODY, NOBODY) == 0
            && libc::setresuid(NOBODY, NOBODY, NOBODY) == 0
            && libc::geteuid() == NOBODY
    }
}

/// Runs `f` as `nobody` in a forked child; its exit code.
fn as_nobody(f: impl FnOnce() -> i32) -> ExitStatus {
    let mut child = fork(|| if become_nobody() { f() } else { 100 }).unwrap();
    let status = child
        .join_timeout(Duration::from_secs(60))
        .unwrap()
        .expect("the child hangs");
    assert_ne!(status, ExitStatus::Code(100), "could not become nobody");
    status
}

/// The user name `uid` has on this system, if any.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_owned())
    })
}

#[test]
fn a_squatted_segment_is_refused_unless_its_owner_is_trusted() {
    if !is_root() {
        eprintln!("skipped: making a segment as another user needs root");
        return;
    }
    let (_names, [event, queue]) = common::segment_names("squat", ["event", "queue"]);
    // The squatter, first at our names.
    let status = as_nobody(|| {
        let open = Options::new().mode(0o666);
        let e = Shared::<Event>::create_with(&event, (), &open);
        let q = Queue::<u64>::create_with(&queue, RingConfig::new(8), &open);
        match (e, q) {
            (Ok(_), Ok(_)) => 0,
            other => {
                eprintln!("the squatter could not create its segments: {other:?}");
                1
            }
        }
    });
    assert_eq!(status, ExitStatus::Code(0));

    // Refused by default, with an error that says who owns it and how to
    // trust them.
    let e = Shared::<Event>::open(&event).unwrap_err();
    assert!(
        matches!(
            e,
            Error::UntrustedOwner {
                owner: NOBODY,
                euid: 0,
                ..
            }
        ),
        "{e:?}"
    );
    let m = e.to_string();
    assert!(m.contains(&event), "{m}");
    assert!(m.contains("owned by uid 65534"), "{m}");
    if let Some(user) = user_name(NOBODY) {
        assert!(m.contains(&format!("uid 65534 ({user})")), "{m}");
    }
    assert!(m.contains("Options::trust_owner(65534)"), "{m}");
    assert!(m.contains("Options::trust_any_owner()"), "{m}");

    // open_or_create does not join it either (nor replace it).
    let r = Shared::<Event>::open_or_create(&event, ());
    assert!(matches!(r, Err(Error::UntrustedOwner { .. })), "{r:?}");
    let r = Queue::<u64>::open_or_create(&queue, RingConfig::new(8));
    assert!(matches!(r, Err(Error::UntrustedOwner { .. })), "{r:?}");
    let r = Queue::<u64>::open(&queue);
    assert!(matches!(r, Err(Error::UntrustedOwner { .. })), "{r:?}");

    // Trusting another owner is not trusting this one.
    let r = Shared::<Event>::open_with(&event, &Options::new().trust_owner(1234));
    assert!(matches!(r, Err(Error::UntrustedOwner { .. })), "{r:?}");

    // Trusted by uid, or all owners: it opens, and it is the squatter's.
    let trusted = Options::new().trust_owner(NOBODY);
    let e = Shared::<Event>::open_with(&event, &trusted).unwrap();
    assert!(!e.is_set());
    let q = Queue::<u64>::open_or_create_with(&queue, RingConfig::new(8), &trusted).unwrap();
    assert!(!q.1, "joined, not created");
    let any = Options::new().trust_any_owner();
    assert!(Shared::<Event>::open_with(&event, &any).is_ok());
}

#[test]
fn another_users_process_refuses_our_segment_by_default() {
    if !is_root() {
        eprintln!("skipped: running as another user needs root");
        return;
    }
    let (_names, name) = common::segment_name("squat", "roots");
    let _ours = Shared::<Event>::create_with(&name, (), &Options::new().mode(0o666)).unwrap();
    let status = as_nobody(|| {
        let refused = matches!(
            Shared::<Event>::open(&name),
            Err(Error::UntrustedOwner {
                owner: 0,
                euid: NOBODY,
                ..
            })
        );
        let trusted = Shared::<Event>::open_with(&name, &Options::new().trust_owner(0)).is_ok();
        match (refused, trusted) {
            (true, true) => 0,
            (r, t) => {
                eprintln!("refused by default: {r}, opened when trusted: {t}");
                1
            }
        }
    });
    assert_eq!(status, ExitStatus::Code(0));
}

#[test]
fn our_own_segments_open_without_options() {
    let (_names, name) = common::segment_name("squat", "own");
    let _e = Shared::<Event>::create(&name, ()).unwrap();
    assert!(Shared::<Event>::open(&name).is_ok());
    let (_, created) = Shared::<Event>::open_or_create(&name, ()).unwrap();
    assert!(!created);
    // Trusting ourselves explicitly changes nothing.
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    assert!(Shared::<Event>::open_with(&name, &Options::new().trust_owner(me)).is_ok());
}
