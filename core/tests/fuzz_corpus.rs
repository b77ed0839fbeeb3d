//! Replays the committed fuzz inputs of the core's targets — seeds and
//! crash reproducers — through the harnesses the fuzzer runs (`fuzz/src/`,
//! included as they are), so that a stable `cargo test` keeps every finding
//! fixed. Fuzzing itself: see docs/DESIGN.md, "Fuzzing".
//!
//! Not under loom (these are no models) nor Miri (its isolation forbids
//! reading the corpus files; the fuzzer runs the harnesses under
//! AddressSanitizer instead).
#![cfg(not(any(loom, miri)))]

#[allow(dead_code)]
#[path = "../../fuzz/src/hostile.rs"]
mod hostile;
#[allow(dead_code)]
#[path = "../../fuzz/src/queues.rs"]
mod queues;
#[allow(dead_code)]
#[path = "../../fuzz/src/support.rs"]
mod support;
#[allow(dead_code)]
#[path = "../../fuzz/src/sync.rs"]
mod sync;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    support::replay(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz"),
        target,
        run,
    );
}

#[test]
fn spsc_ops() {
    replay("spsc_ops", queues::spsc_ops);
}

#[test]
fn mpmc_ops() {
    replay("mpmc_ops", queues::mpmc_ops);
}

#[test]
fn bytes_ops() {
    replay("bytes_ops", queues::bytes_ops);
}

#[test]
fn bytes_hostile() {
    replay("bytes_hostile", hostile::bytes_hostile);
}

#[test]
fn ring_hostile() {
    replay("ring_hostile", hostile::ring_hostile);
}

#[test]
fn sync_words() {
    replay("sync_words", sync::sync_words);
}
