//! Replays the committed fuzz inputs of the core's targets — seeds and
//! crash reproducers — through the harnesses the fuzzer runs (`fuzz/src/`,
//! included as they are), so that a stable `cargo test` keeps every finding
//! fixed. Fuzzing itself: see docs/DESIGN.md, "Fuzzing".
#![cfg(not(loom))]

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

// Hostile writes mix plain and atomic accesses to one word, which Miri's
// weak-memory emulation cannot take (see `bytes.rs`); natively they run.
#[test]
#[cfg_attr(miri, ignore)]
fn bytes_hostile() {
    replay("bytes_hostile", hostile::bytes_hostile);
}

#[test]
#[cfg_attr(miri, ignore)]
fn ring_hostile() {
    replay("ring_hostile", hostile::ring_hostile);
}

#[test]
fn sync_words() {
    replay("sync_words", sync::sync_words);
}
