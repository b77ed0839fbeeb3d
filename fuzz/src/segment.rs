//! Arbitrary bytes as the contents of a segment file: validating them must
//! give `Ok` or a clear [`Error`], never a panic, and the same answer as
//! opening a real segment with those contents.
//!
//! The first input byte is a control byte, the rest the file:
//!
//! | bits | meaning |
//! |---|---|
//! | 0–2 | the kind the opener expects (and its own checks; 7: whatever kind the header names) |
//! | 3 | hand the validator only the first 100 bytes (a short read) |
//! | 5–7 | all set: also write the bytes to a real `/dev/shm` segment and open it |
//!
//! The pure check is [`validate_header`], the very code `Mapping::open`
//! runs; the real open (one input in eight) adds `shm_open`, `fstat`, the
//! state wait and `mmap`, and the typed openers' own checks, and must agree
//! with it. Every segment it creates is unlinked again.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use shmipc::memory::header::{HeaderSnapshot, Kind, HEADER_SIZE, MAGIC, MAX_ALIGN, READY, VERSION};
use shmipc::memory::{validate_header, Mapping};
use shmipc::sync::Ordering;
use shmipc::{
    AtomicU32, AtomicU64, Error, Event, Lock, Named, Options, Segment, Semaphore, Shared,
};

use crate::support::Input;

/// A header's kind field, if the bytes hold one.
fn kind_field(file: &[u8]) -> u32 {
    file.get(20..24)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// An opener's own checks of a header (`Mapping::open`'s `validate`).
type Check = Box<dyn Fn(&HeaderSnapshot) -> Result<(), Error>>;

/// The kind an opener expects, and its own header checks: those of the
/// typed openers for the kinds this crate defines.
fn expectation(choice: u8, file: &[u8]) -> (Kind, Check) {
    fn fixed<T>(kind: Kind) -> (Kind, Check) {
        let check = move |h: &HeaderSnapshot| {
            h.expect_layout(
                NAME_IN_CHECKS,
                size_of::<T>() as u64,
                align_of::<T>() as u64,
                [0; 4],
            )
        };
        (kind, Box::new(check))
    }
    match choice & 7 {
        0 => (
            Kind::BYTES,
            Box::new(|h: &HeaderSnapshot| {
                if h.params != [0; 4] {
                    return Err(Error::Corrupted {
                        name: NAME_IN_CHECKS.to_owned(),
                        what: "raw byte segments have no parameters",
                    });
                }
                Ok(())
            }),
        ),
        1 => fixed::<Lock>(Kind::LOCK),
        2 => fixed::<Semaphore>(Kind::SEMAPHORE),
        3 => fixed::<Event>(Kind::EVENT),
        4 => fixed::<AtomicU32>(Kind::ATOMIC_U32),
        5 => fixed::<AtomicU64>(Kind::ATOMIC_U64),
        6 => (
            Kind::new(1000),
            Box::new(|h: &HeaderSnapshot| h.expect_layout(NAME_IN_CHECKS, 24, 8, [7, 0, 0, 1])),
        ),
        _ => (
            Kind::new(kind_field(file)),
            Box::new(|_: &HeaderSnapshot| Ok(())),
        ),
    }
}

/// The name the kind checks put in their errors (only their variant is
/// compared).
const NAME_IN_CHECKS: &str = "/shmipc-fuzz";

/// See the module documentation.
pub fn segment_open(data: &[u8]) {
    let mut input = Input::new(data);
    let control = input.u8();
    let file = input.rest();
    let (kind, check) = expectation(control, file);
    let start = if control & 8 != 0 {
        &file[..file.len().min(100)]
    } else {
        file
    };
    let size = file.len() as u64;
    let pure = validate_header(start, size, kind, NAME_IN_CHECKS, &check);
    match &pure {
        Ok(snap) => {
            // Everything open promises about a header it accepts.
            assert!(start.len() >= HEADER_SIZE as usize);
            let mut header = [0u8; HEADER_SIZE as usize];
            header.copy_from_slice(&start[..HEADER_SIZE as usize]);
            assert_eq!(*snap, HeaderSnapshot::from_bytes(&header));
            assert_eq!(
                (snap.magic, snap.version, snap.state),
                (MAGIC, VERSION, READY)
            );
            assert_eq!(snap.kind(), kind);
            assert_eq!(snap.object_offset, HEADER_SIZE);
            assert!(snap.object_align.is_power_of_two() && snap.object_align <= MAX_ALIGN);
            assert!(snap.object_size > 0);
            // The peer table starts at the object's end rounded up to 128
            // and the segment ends with its last slot.
            assert!(snap.peer_slots >= 1 && snap.peer_slots <= shmipc_core::Token::MAX_SLOTS);
            let end = HEADER_SIZE + snap.object_size;
            assert_eq!(snap.peers_offset, (end + 127) & !127);
            assert_eq!(
                Some(snap.total_size),
                snap.peers_offset.checked_add(
                    u64::from(snap.peer_slots) * shmipc_core::peers::PEER_SLOT_SIZE as u64
                )
            );
            assert!(snap.total_size <= size && snap.total_size <= isize::MAX as u64);
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if start.len() < HEADER_SIZE as usize {
                assert!(
                    matches!(e, Error::TooSmall { .. } | Error::NotShmipc { .. }),
                    "a short file: {e:?}"
                );
            }
        }
    }
    if control >> 5 == 7 && control & 8 == 0 {
        // The typed openers run their own kind's checks, which are the
        // harness's only for choices 0-5.
        let typed = control & 7 <= 5;
        open_for_real(file, kind, &check, &pure, typed);
    }
}

/// Removes a file when dropped, so that no segment outlives its input.
struct Unlink(String);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether two outcomes agree: equal snapshots, or errors of the same
/// variant. A header still initialising is `InitTimeout` to the pure check
/// and, to a real opener, `CreatorDied` if no creator holds the file's
/// creator lock (none does, for a file the harness wrote).
fn agree<T>(pure: &Result<HeaderSnapshot, Error>, real: &Result<T, Error>) -> bool {
    match (pure, real) {
        (Ok(_), Ok(_)) => true,
        (Err(Error::InitTimeout { .. }), Err(Error::CreatorDied { .. })) => true,
        (Err(a), Err(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
        _ => false,
    }
}

fn open_for_real(
    file: &[u8],
    kind: Kind,
    check: &dyn Fn(&HeaderSnapshot) -> Result<(), Error>,
    pure: &Result<HeaderSnapshot, Error>,
    typed: bool,
) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "/shmipc-fuzz-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let path = format!("/dev/shm{name}");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("create a scratch segment");
    let unlink = Unlink(path);
    f.write_all(file).expect("write the scratch segment");
    drop(f);

    // No waiting for a creator that never comes: the state check is the
    // same, and the pure one cannot wait either.
    let opts = Options::new().init_timeout(Duration::ZERO);
    let real = Mapping::open(&name, kind, &opts, check).map(|m| (*m.header(), m.object_len()));
    // The typed openers run the same checks, then place the object.
    let typed = match kind {
        _ if !typed => None,
        Kind::BYTES => Some(Segment::open_with(&name, &opts).map(|s| {
            let mut b = vec![0; s.len().min(64)];
            s.read_at(0, &mut b).expect("read inside the payload");
        })),
        Kind::LOCK => Some(Shared::<Lock>::open_with(&name, &opts).map(|l| {
            let _ = l.try_lock().map(drop);
        })),
        Kind::SEMAPHORE => Some(Shared::<Semaphore>::open_with(&name, &opts).map(|s| {
            let _ = s.value();
        })),
        Kind::EVENT => Some(Shared::<Event>::open_with(&name, &opts).map(|e| {
            let _ = e.is_set();
        })),
        Kind::ATOMIC_U32 => Some(Shared::<AtomicU32>::open_with(&name, &opts).map(drop)),
        Kind::ATOMIC_U64 => Some(Shared::<AtomicU64>::open_with(&name, &opts).map(drop)),
        _ => None,
    };
    // The name goes before any check can fail: a failing input leaves no
    // segment behind.
    drop(unlink);

    assert!(
        agree(pure, &real),
        "open {real:?}, validate_header {pure:?}"
    );
    if let (Ok(p), Ok((header, len))) = (pure, &real) {
        assert_eq!(p, header);
        assert_eq!(*len as u64, p.object_size);
    }
    if let Some(typed) = typed {
        assert!(
            agree(pure, &typed),
            "typed open {typed:?}, validate_header {pure:?}"
        );
    }
}
