//! The harnesses behind shmipc's fuzz targets.
//!
//! Each public function takes the fuzzer's bytes and panics only when it
//! finds a bug. They use nothing fuzzing-specific, so the root workspace's
//! tests include these files with `#[path]` and replay every committed seed
//! and regression on stable Rust (`core/tests/fuzz_corpus.rs`,
//! `shm/tests/fuzz_corpus.rs`).
//!
//! Module paths are the same here and in those tests (`crate::support`),
//! which is why the files refer to each other through `crate::`.

pub mod hostile;
pub mod inspect;
pub mod queues;
pub mod segment;
pub mod support;
pub mod sync;
