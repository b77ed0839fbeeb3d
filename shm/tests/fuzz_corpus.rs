//! Replays the committed fuzz inputs of `segment_open` — seeds and crash
//! reproducers — through the harness the fuzzer runs
//! (`fuzz/src/segment.rs`, included as it is), so that a stable
//! `cargo test` keeps every finding fixed. Fuzzing itself: see
//! docs/DESIGN.md, "Fuzzing".

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
