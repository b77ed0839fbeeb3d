//! A segment that exists is backed: creation reserves its memory, so a
//! size the file system cannot hold fails at `create` with an error that
//! says what is needed and what is free, leaving nothing behind, instead
//! of a `SIGBUS` later when a process touches the pages.
//!
//! The decisive case runs in a forked child with a private mount of a small
//! tmpfs (64 MiB) on `/dev/shm` (a new mount namespace: needs root, or
//! `CAP_SYS_ADMIN`; skipped with a message otherwise): two segments of
//! 40 MiB each fit one at a time but not together. Sparse files would
//! accept both, and touching the second would kill the toucher with
//! `SIGBUS`.

mod common;

use std::ffi::CString;
use std::time::Duration;

use shmipc::{fork, Error, ExitStatus, Named, Options, Segment};

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

/// The exit code of a child that could not set up its private tmpfs.
const NO_MOUNT: i32 = 77;

/// Bytes free in `/dev/shm` (for an unprivileged writer).
fn free_in_dev_shm() -> u64 {
    let path = CString::new("/dev/shm").unwrap();
    // SAFETY: a zeroed statvfs is valid for statvfs to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
    #[allow(clippy::useless_conversion)]
    let free = u64::from(st.f_bavail) * u64::from(st.f_frsize);
    free
}

/// Every entry of `/dev/shm`, dotfiles included.
fn dev_shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

/// Forks a child that writes one byte in every page of segment `name`;
/// returns how it ended (a `SIGBUS` if the pages are not backed).
fn touch_every_page(name: &str) -> ExitStatus {
    let mut child = fork(|| {
        let seg = match Segment::open_with(name, &Options::new()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("open {name}: {e}");
                return 2;
            }
        };
        let p = seg.as_ptr();
        for off in (0..seg.len()).step_by(PAGE) {
            // SAFETY: in bounds of the mapped payload; nobody else uses
            // these bytes.
            unsafe { p.add(off).write_volatile(1) };
        }
        0
    })
    .unwrap();
    common::join(&mut child)
}

/// The numbers in an [`Error::NoSpace`] message: needed, free.
fn numbers(message: &str) -> (u64, u64) {
    let after = |key: &str| -> u64 {
        message
            .split(key)
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no number after {key:?} in {message:?}"))
    };
    (after("it needs "), after(" has "))
}

/// The bytes a raw segment of `size` payload bytes takes: the header, the
/// payload rounded up to 128, and the default peer table (256 slots of 32
/// bytes).
fn segment_bytes(size: u64) -> u64 {
    ((128 + size + 127) & !127) + 256 * 32
}

#[test]
fn a_segment_larger_than_the_free_space_is_refused_and_leaves_nothing() {
    let (_names, name) = common::segment_name("reserve", "huge");
    // More than is free (the 1 TiB, or more on a huge /dev/shm).
    let size = (free_in_dev_shm() as usize + (1 << 30)).max(1 << 40);
    let r = Segment::create_with(&name, size, &Options::new());
    let e = r.expect_err("a segment larger than /dev/shm's free space was created");
    let m = e.to_string();
    assert!(matches!(e, Error::NoSpace { .. }), "{e:?}");
    assert!(m.contains(&name) && m.contains("/dev/shm has"), "{m}");
    let (needed, free) = numbers(&m);
    assert_eq!(needed, segment_bytes(size as u64), "{m}");
    assert!(free < needed, "{m}");
    // Nothing behind: not the name, not a temporary file (dotfiles too).
    let pid = std::process::id().to_string();
    let ours: Vec<String> = dev_shm_entries()
        .into_iter()
        .filter(|n| n.contains(&name[1..]) || n.starts_with(&format!(".shmipc-tmp-{pid}-")))
        .collect();
    assert_eq!(ours, Vec::<String>::new());
}

#[test]
fn a_large_segment_that_fits_is_backed() {
    let (_names, name) = common::segment_name("reserve", "large");
    let _seg = Segment::create_with(&name, 64 * MIB, &Options::new()).unwrap();
    // The file's blocks are allocated at creation, not on first touch.
    let blocks = std::fs::metadata(common::shm_path(&name)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        blocks.blocks() * 512 >= 64 * MIB as u64,
        "only {} bytes allocated",
        blocks.blocks() * 512
    );
    assert_eq!(touch_every_page(&name), ExitStatus::Code(0));
}

/// In a private mount namespace: mounts a 64 MiB tmpfs on /dev/shm.
/// Returns false if that is not allowed here.
fn private_small_dev_shm() -> bool {
    let c = |s: &str| CString::new(s).unwrap();
    let (root, shm, tmpfs, size) = (c("/"), c("/dev/shm"), c("tmpfs"), c("size=64m"));
    // SAFETY: plain system calls in a single-threaded forked child; the
    // strings outlive the calls.
    unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == 0
            && libc::mount(
                tmpfs.as_ptr(),
                shm.as_ptr(),
                tmpfs.as_ptr(),
                0,
                size.as_ptr().cast(),
            ) == 0
    }
}

#[test]
fn two_segments_that_do_not_fit_together_fail_at_create_not_with_sigbus() {
    let mut child = fork(|| {
        if !private_small_dev_shm() {
            return NO_MOUNT;
        }
        // This /dev/shm is ours alone and starts empty.
        let (a, b) = ("/reserve-a", "/reserve-b");
        let _first = match Segment::create_with(a, 40 * MIB, &Options::new()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("the first segment: {e}");
                return 1;
            }
        };
        if touch_every_page(a) != ExitStatus::Code(0) {
            eprintln!("touching the first segment failed");
            return 2;
        }
        match Segment::create_with(b, 40 * MIB, &Options::new()) {
            Err(e @ Error::NoSpace { .. }) => {
                let m = e.to_string();
                let (needed, free) = numbers(&m);
                if !m.contains(b) || needed != segment_bytes(40 * MIB as u64) || free >= needed {
                    eprintln!("unclear: {m}");
                    return 3;
                }
            }
            Err(e) => {
                eprintln!("the second segment: another error: {e}");
                return 4;
            }
            Ok(_) => {
                let touched = touch_every_page(b);
                eprintln!(
                    "the second segment was created, though it does not fit; \
                     touching it: {touched}"
                );
                return 5;
            }
        }
        // Nothing left of the refused one, dotfiles included.
        let left = dev_shm_entries();
        if left != ["reserve-a"] {
            eprintln!("/dev/shm holds {left:?}");
            return 6;
        }
        0
    })
    .unwrap();
    let status = child
        .join_timeout(Duration::from_secs(120))
        .unwrap()
        .expect("the child hangs");
    if status == ExitStatus::Code(NO_MOUNT) {
        eprintln!(
            "skipped: cannot mount a private tmpfs on /dev/shm here (needs root \
             or CAP_SYS_ADMIN); the rest of this file still ran"
        );
        return;
    }
    assert_eq!(status, ExitStatus::Code(0));
}
