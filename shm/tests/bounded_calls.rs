//! Every public call that can block has a bounded form.
//!
//! The promise (README, DESIGN principle 9) is that a stopped or hostile
//! peer costs a timeout, never a hang: each blocking call `X` has `X_timeout`,
//! `X_until` or `try_X` beside it on the same type. This test reads the
//! sources of both crates (`api_scan`: every `pub fn` of every inherent
//! `impl Type` block, wherever the type's methods live) and checks that
//! promise for every call that can block:
//!
//! - a call whose name starts with a verb that waits (`lock`, `wait`,
//!   `push`, `recv`, `get`, `join`, ...; [`BLOCKING_VERBS`]), and
//! - every method of the types whose every access takes a lock
//!   ([`LOCKED_TYPES`]: `Value`, `Array`, `SharedDict`, `SharedList`),
//!
//! unless it is a bounded form itself (named `*_timeout*`, `*_until`,
//! `try_*`, or taking a `Duration` or `Deadline`), test support
//! (`#[doc(hidden)]`), or listed in [`NON_BLOCKING`] with the reason it
//! cannot block. A new blocking call without a bounded form, or a new
//! name that starts with one of the verbs, fails here until it gets a
//! bounded form or an entry (with its reason) in the list.

mod api_scan;

use std::collections::BTreeSet;

use api_scan::PubFn;

/// Name prefixes (the part before the first `_`) of calls that may wait.
/// Copies (`read_at`, `write_at`) and builders are not here: they never
/// wait in this API.
const BLOCKING_VERBS: &[&str] = &[
    "acquire", "append", "apply", "claim", "clear", "commit", "contains", "get", "insert", "items",
    "join", "keys", "lock", "map", "next", "poll", "pop", "push", "put", "recv", "remove",
    "reserve", "send", "snapshot", "take", "update", "wait",
];

/// Types whose every method (taking `self`) takes the object's lock, and so
/// can wait for a holder: `(crate, type)`.
const LOCKED_TYPES: &[(&str, &str)] = &[
    ("shm", "Value"),
    ("shm", "Array"),
    ("shm", "SharedDict"),
    ("shm", "SharedList"),
];

/// Calls that match the rules above but cannot block: `(crate, type, name,
/// why)`. Type `"*"` matches any type of that crate.
const NON_BLOCKING: &[(&str, &str, &str, &str)] = &[
    (
        "core",
        "ByteQueue",
        "recv_ready",
        "a readiness snapshot for `wait`: a few loads (a byte queue tries its side's lock once, never waiting)",
    ),
    (
        "core",
        "ByteQueue",
        "send_ready",
        "a readiness snapshot for `wait`: a few loads (a byte queue tries its side's lock once, never waiting)",
    ),
    (
        "core",
        "Mpmc",
        "pop_ready",
        "a readiness snapshot for `wait`: a few loads (a byte queue tries its side's lock once, never waiting)",
    ),
    (
        "core",
        "Mpmc",
        "push_ready",
        "a readiness snapshot for `wait`: a few loads (a byte queue tries its side's lock once, never waiting)",
    ),
    (
        "core",
        "Producer",
        "push_ready",
        "a readiness snapshot for `wait`: a few loads (a byte queue tries its side's lock once, never waiting)",
    ),
    (
        "core",
        "Consumer",
        "pop_ready",
        "a readiness snapshot for `wait`: a few loads (a byte queue tries its side's lock once, never waiting)",
    ),
    (
        "core",
        "ByteQueue",
        "recv_owner_check",
        "`wait`'s owner check: one pass over the slot or record at the head, never waiting (a byte queue tries its side's lock once)",
    ),
    (
        "core",
        "ByteQueue",
        "send_owner_check",
        "`wait`'s owner check: one pass over the slot or record at the head, never waiting (a byte queue tries its side's lock once)",
    ),
    (
        "core",
        "Mpmc",
        "pop_owner_check",
        "`wait`'s owner check: one pass over the slot or record at the head, never waiting (a byte queue tries its side's lock once)",
    ),
    (
        "core",
        "Mpmc",
        "push_owner_check",
        "`wait`'s owner check: one pass over the slot or record at the head, never waiting (a byte queue tries its side's lock once)",
    ),
    (
        "core",
        "Producer",
        "push_owner_check",
        "`wait`'s owner check: one pass over the slot or record at the head, never waiting (a byte queue tries its side's lock once)",
    ),
    (
        "core",
        "Consumer",
        "pop_owner_check",
        "`wait`'s owner check: one pass over the slot or record at the head, never waiting (a byte queue tries its side's lock once)",
    ),
    (
        "shm",
        "*",
        "wait_strategy",
        "returns the handle's wait-strategy setting",
    ),
    (
        "core",
        "PeerTable",
        "remove_end",
        "a compare-and-swap on one word of the caller's own peer slot; never waits",
    ),
    (
        "core",
        "PeerTable",
        "claim",
        "tries each slot's lock once without waiting (F_OFD_SETLK, not SETLKW)",
    ),
    // Accessors of the locked types that read only the handle's own copy
    // of the geometry, or hand out the lock itself.
    ("shm", "Value", "name", "the handle's own name"),
    (
        "shm",
        "Value",
        "get_lock",
        "returns the lock; taking it is the caller's call",
    ),
    ("shm", "Array", "name", "the handle's own name"),
    (
        "shm",
        "Array",
        "len",
        "the handle's checked copy of the length",
    ),
    (
        "shm",
        "Array",
        "is_empty",
        "the handle's checked copy of the length",
    ),
    (
        "shm",
        "Array",
        "get_lock",
        "returns the lock; taking it is the caller's call",
    ),
    ("shm", "SharedDict", "name", "the handle's own name"),
    (
        "shm",
        "SharedDict",
        "capacity",
        "the handle's checked geometry",
    ),
    (
        "shm",
        "SharedDict",
        "max_key",
        "the handle's checked geometry",
    ),
    (
        "shm",
        "SharedDict",
        "max_value",
        "the handle's checked geometry",
    ),
    ("shm", "SharedList", "name", "the handle's own name"),
    (
        "shm",
        "SharedList",
        "capacity",
        "the handle's checked geometry",
    ),
    (
        "shm",
        "SharedList",
        "max_item",
        "the handle's checked geometry",
    ),
    // Calls that start with a waiting verb but never wait.
    ("core", "Event", "clear", "one atomic AND"),
    (
        "core",
        "LockGuard",
        "lock",
        "returns the lock the guard holds",
    ),
    (
        "core",
        "RLockGuard",
        "lock",
        "returns the lock the guard holds a level of",
    ),
    (
        "core",
        "WriteGrant",
        "commit",
        "one compare-and-swap and a wake; the space is already held",
    ),
    (
        "core",
        "WriteGrant",
        "commit_checked",
        "one compare-and-swap and a wake; the space is already held",
    ),
    (
        "core",
        "Producer",
        "push_slice",
        "pushes what fits now (Full if nothing does)",
    ),
    (
        "core",
        "Consumer",
        "pop_slice",
        "pops what is ready now (Empty if nothing is)",
    ),
    (
        "shm",
        "SpscQueue",
        "take_producer",
        "a role claim: RoleTaken at once if held",
    ),
    (
        "shm",
        "SpscQueue",
        "take_consumer",
        "a role claim: RoleTaken at once if held",
    ),
    (
        "shm",
        "TypedQueue",
        "put_nowait",
        "Python's name for try_push: never waits",
    ),
    (
        "shm",
        "TypedQueue",
        "get_nowait",
        "Python's name for try_pop: never waits",
    ),
    (
        "shm",
        "TypedSoleSender",
        "put_nowait",
        "Python's name for try_push: never waits",
    ),
    (
        "shm",
        "TypedSoleReceiver",
        "get_nowait",
        "Python's name for try_pop: never waits",
    ),
    (
        "shm",
        "JoinableQueue",
        "put_nowait",
        "Python's name for a put that never waits",
    ),
    (
        "shm",
        "TypedPool",
        "apply_async",
        "queues the tasks; the handle waits, with get_timeout",
    ),
    (
        "shm",
        "TypedPool",
        "apply_async_then",
        "queues the tasks; the handle waits, with get_timeout",
    ),
    (
        "shm",
        "TypedPool",
        "map_async",
        "queues the tasks; the handle waits, with get_timeout",
    ),
    (
        "shm",
        "TypedPool",
        "map_async_then",
        "queues the tasks; the handle waits, with get_timeout",
    ),
    (
        "shm",
        "Pool",
        "apply_async",
        "queues the task; the handle waits, with get_timeout",
    ),
    (
        "shm",
        "Pool",
        "apply_async_with",
        "queues the task; the handle waits, with get_timeout",
    ),    (
        "shm",
        "*",
        "pop_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "push_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "recv_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "send_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "get_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "put_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "wait_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "acquire_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "lock_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
    (
        "shm",
        "*",
        "join_async",
        "a future (the tokio feature): it never blocks a thread, and the caller bounds it with its executor's timeout (tokio::time::timeout), which is cancel-safe",
    ),
];

/// Whether `f` is a bounded form by its name or its parameters.
fn is_bounded_form(f: &PubFn) -> bool {
    let n = f.name.as_str();
    n.starts_with("try_") || n.ends_with("_until") || n.contains("_timeout") || f.takes_time()
}

/// Whether the rules call `f` a call that may block.
fn may_block(f: &PubFn) -> bool {
    let verb = f.name.split('_').next().unwrap_or("");
    let locked =
        f.ty.as_deref()
            .is_some_and(|t| LOCKED_TYPES.iter().any(|&(k, lt)| k == f.krate && lt == t))
            && f.is_method();
    BLOCKING_VERBS.contains(&verb) || locked
}

fn allowed(f: &PubFn) -> bool {
    let ty = f.ty.as_deref().unwrap_or("");
    NON_BLOCKING
        .iter()
        .any(|&(k, t, n, _)| k == f.krate && (t == ty || t == "*") && n == f.name)
}

/// The bounded forms that would do for `name`: `name_timeout`,
/// `name_until`, `try_name`, and for `a_b` also `a_timeout_b`
/// (`wait_while` / `wait_timeout_while`).
fn bounded_names(name: &str) -> Vec<String> {
    let mut v = vec![
        format!("{name}_timeout"),
        format!("{name}_until"),
        format!("try_{name}"),
    ];
    if let Some((a, b)) = name.split_once('_') {
        v.push(format!("{a}_timeout_{b}"));
        v.push(format!("{a}_until_{b}"));
    }
    v
}

#[test]
fn every_public_blocking_call_has_a_bounded_form() {
    let (fns, pub_types) = api_scan::scan();
    // The scanner must see the API it is meant to check: a few calls
    // known to exist, with their bounded forms.
    let seen: BTreeSet<String> = fns.iter().map(PubFn::path).collect();
    for known in [
        "core::Lock::lock",
        "core::Lock::lock_timeout",
        "core::Semaphore::acquire",
        // shm's queues are the core's handles (Queue dereferences to Mpmc).
        "core::Mpmc::push",
        "core::Mpmc::push_timeout",
        "shm::Value::get",
        "shm::SharedDict::insert",
        "shm::Child::join_timeout",
        "shm::Pool::apply",
        "core::CondGuard::wait_timeout",
    ] {
        assert!(
            seen.contains(known),
            "the scan missed {known}; it saw {seen:#?}"
        );
    }

    let mut missing = Vec::new();
    let mut checked = 0;
    for f in &fns {
        let public_type = match &f.ty {
            Some(t) => pub_types[f.krate].contains(t),
            None => true,
        };
        if !public_type || f.hidden || is_bounded_form(f) || !may_block(f) || allowed(f) {
            continue;
        }
        checked += 1;
        let has_bounded = fns.iter().any(|g| {
            g.krate == f.krate && g.ty == f.ty && bounded_names(&f.name).contains(&g.name)
        });
        if !has_bounded {
            missing.push(format!("{} ({})", f.path(), f.file));
        }
    }
    assert!(
        checked > 40,
        "only {checked} blocking calls found: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "{} public calls that can block have no `_timeout`, `_until` or `try_` form \
         (or, if they cannot block, no entry in NON_BLOCKING):\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

/// The allow-list names only calls that exist, so it cannot hide one that
/// was renamed.
#[test]
fn the_non_blocking_list_is_current() {
    let (fns, _) = api_scan::scan();
    for &(k, t, n, why) in NON_BLOCKING {
        assert!(!why.is_empty());
        assert!(
            fns.iter()
                .any(|f| f.krate == k && (t == "*" || f.ty.as_deref() == Some(t)) && f.name == n),
            "NON_BLOCKING names {k}::{t}::{n}, which no longer exists"
        );
    }
}
