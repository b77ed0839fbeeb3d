//! Benchmarks of shmipc: see `benches/primitives.rs` (criterion) and
//! `benches/compare.rs` (side by side against the peers). This library is
//! empty; the package exists so that benchmark-only dependencies stay out of
//! the rest of the workspace.
