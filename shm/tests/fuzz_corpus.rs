//! Replays the committed fuzz inputs of `segment_open` and `inspect` —
//! seeds and crash reproducers — through the harnesses the fuzzer runs
//! (`fuzz/src/segment.rs`, `fuzz/src/inspect.rs`, included as they are),
//! so that a stable
//! `cargo test` keeps every finding fixed. Fuzzing itself: see
//! docs/DESIGN.md, "Fuzzing".

#[allow(dead_code)]
#[path = "../../fuzz/src/inspect.rs"]
mod inspect;
#[allow(dead_code)]
#[path = "../../fuzz/src/segment.rs"]
mod segment;
#[allow(dead_code)]
#[path = "../../fuzz/src/support.rs"]
mod support;

use std::path::Path;

#[test]
fn segment_open() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    support::replay(&fuzz, "segment_open", segment::segment_open);
}

#[test]
fn inspect() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    support::replay(&fuzz, "inspect", inspect::inspect);
}
