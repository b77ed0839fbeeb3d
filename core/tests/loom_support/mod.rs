//! What the loom models share.

/// Runs `f` under loom with a preemption bound of at least `n`, whatever
/// `LOOM_MAX_PREEMPTIONS` says: for models small enough that a deeper
/// search costs at most a few seconds (measured when the bound was set).
pub fn model_with_preemptions<F>(n: usize, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.map_or(n, |p| p.max(n)));
    builder.check(f);
}
