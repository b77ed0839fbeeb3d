//! Every sizing constructor and configuration, given 0, 1 and the largest
//! value of its type (and a few other bad values), returns `Ok` or an error
//! whose message names the segment (where there is one), the parameter,
//! its value and the rule — and never panics. A refused creation leaves no
//! name behind.
//!
//! The rules' upper limits come from the library's constants; where one
//! may change (the queues' largest capacity), the expected text stops at
//! the limit (`"... from 2 to 2^"`).

mod common;

use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};

use shmipc::{
    Array, Barrier, ByteQueue, BytesConfig, DictConfig, Error, ListConfig, Named, Options, Pipe,
    Pool, Queue, RingConfig, Segment, Semaphore, SemaphoreConfig, Shared, SharedDict, SharedList,
    SpscQueue, Unlinker, Value,
};

const MAX: usize = usize::MAX;
const MAX_TEXT: &str = "18446744073709551615";

/// What a row expects: success, or an error whose message contains every
/// fragment.
enum Expect {
    Ok,
    Err(&'static [&'static str]),
}

struct Table {
    names: Unlinker,
    failures: Vec<String>,
    rows: usize,
}

impl Table {
    fn new() -> Table {
        Table {
            names: Unlinker::new("config"),
            failures: Vec::new(),
            rows: 0,
        }
    }

    /// A fresh segment name for a row.
    fn name(&self) -> String {
        self.names.name("row")
    }

    /// Runs `make` and checks its outcome against `expect`. `name` is the
    /// segment the row tries to create, if any: it must appear in the
    /// message, and must not exist after a refusal.
    fn row<E: std::fmt::Display>(
        &mut self,
        what: &str,
        name: Option<&str>,
        expect: Expect,
        make: impl FnOnce() -> Result<(), E>,
    ) {
        self.rows += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| make().map_err(|e| e.to_string())));
        let fail = |why: String| format!("{what}: {why}");
        match (outcome, expect) {
            (Err(_), _) => self.failures.push(fail("panicked".into())),
            (Ok(Ok(())), Expect::Ok) => {}
            (Ok(Ok(())), Expect::Err(_)) => self.failures.push(fail("succeeded".into())),
            (Ok(Err(m)), Expect::Ok) => self.failures.push(fail(format!("failed: {m}"))),
            (Ok(Err(m)), Expect::Err(fragments)) => {
                for f in fragments {
                    if !m.contains(f) {
                        self.failures
                            .push(fail(format!("{m:?} does not say {f:?}")));
                    }
                }
                if let Some(n) = name {
                    if !m.contains(n) {
                        self.failures.push(fail(format!("{m:?} does not name {n}")));
                    }
                    if common::shm_path(n).exists() {
                        self.failures
                            .push(fail(format!("{n} exists after the refusal")));
                    }
                }
            }
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} failures in {} rows:\n  {}",
            self.failures.len(),
            self.rows,
            self.failures.join("\n  ")
        );
    }
}

#[test]
fn ring_configs() {
    let mut t = Table::new();
    const ANON: &str = "cannot make the anonymous shared object";
    for (cap, expect) in [
        (
            0,
            Expect::Err(&["capacity 0 must be a power of two from 2 to 2^"]),
        ),
        (
            1,
            Expect::Err(&["capacity 1 must be a power of two from 2 to 2^"]),
        ),
        (2, Expect::Ok),
        (
            3,
            Expect::Err(&["capacity 3 must be a power of two from 2 to 2^"]),
        ),
        (
            MAX,
            Expect::Err(&[MAX_TEXT, "must be a power of two from 2 to 2^"]),
        ),
    ] {
        let n = t.name();
        let what = format!("Queue::<u64>::create(capacity {cap})");
        let ok = matches!(expect, Expect::Ok);
        t.row(&what, Some(&n), expect, || {
            Queue::<u64>::create(&n, RingConfig::new(cap)).map(drop)
        });
        let expect = if ok {
            Expect::Ok
        } else {
            Expect::Err(&["cannot make the anonymous shared object: capacity"])
        };
        t.row(
            &format!("Queue::<u64>::anon(capacity {cap})"),
            None,
            expect,
            || Queue::<u64>::anon(RingConfig::new(cap)).map(drop),
        );
    }
    for (cap, expect) in [
        (
            0,
            Expect::Err(&["capacity 0 must be a power of two from 1 to 2^"]),
        ),
        (1, Expect::Ok),
        (
            6,
            Expect::Err(&["capacity 6 must be a power of two from 1 to 2^"]),
        ),
        (
            MAX,
            Expect::Err(&[MAX_TEXT, "must be a power of two from 1 to 2^"]),
        ),
    ] {
        let n = t.name();
        let what = format!("SpscQueue::<u64>::create(capacity {cap})");
        t.row(&what, Some(&n), expect, || {
            SpscQueue::<u64>::create(&n, RingConfig::new(cap)).map(drop)
        });
    }
    t.row(
        "SpscQueue::<u64>::anon(capacity 0)",
        None,
        Expect::Err(&[ANON, "capacity 0 must be a power of two from 1 to 2^"]),
        || SpscQueue::<u64>::anon(RingConfig::new(0)).map(drop),
    );
    // Zero-sized items: the element type is the parameter.
    let n = t.name();
    t.row(
        "Queue::<()>::create",
        Some(&n),
        Expect::Err(&["item size 0 must be at least 1 byte"]),
        || Queue::<()>::create(&n, RingConfig::new(2)).map(drop),
    );
    t.finish();
}

#[test]
fn byte_queue_and_pipe_configs() {
    let mut t = Table::new();
    const CAP_RULE: &str = "must be a power of two from 64 to 2^";
    const MSG_RULE: &str = "max_message 17 must be at most 16 (two records of 16 header bytes and the message must fit in the ring)";
    for (config, expect) in [
        (
            BytesConfig::new(0, 0),
            Expect::Err(&["capacity 0 ", CAP_RULE]),
        ),
        (
            BytesConfig::new(1, 0),
            Expect::Err(&["capacity 1 ", CAP_RULE]),
        ),
        (
            BytesConfig::new(100, 0),
            Expect::Err(&["capacity 100 ", CAP_RULE]),
        ),
        (BytesConfig::new(MAX, 0), Expect::Err(&[MAX_TEXT, CAP_RULE])),
        (BytesConfig::new(64, 0), Expect::Ok),
        (BytesConfig::new(64, 1), Expect::Ok),
        (BytesConfig::new(64, 16), Expect::Ok),
        (BytesConfig::new(64, 17), Expect::Err(&[MSG_RULE])),
        (
            BytesConfig::new(64, MAX),
            Expect::Err(&["max_message 18446744073709551615 must be at most 16"]),
        ),
    ] {
        let ok = matches!(expect, Expect::Ok);
        let n = t.name();
        let what = format!("ByteQueue::create({config:?})");
        t.row(&what, Some(&n), expect, || {
            ByteQueue::create(&n, config).map(drop)
        });
        let n = t.name();
        let what = format!("Pipe::create({config:?})");
        let expect = if ok {
            Expect::Ok
        } else {
            Expect::Err(&["cannot create shared memory segment"])
        };
        t.row(&what, Some(&n), expect, || {
            Pipe::create(&n, config).map(drop)
        });
        let expect = if ok {
            Expect::Ok
        } else {
            Expect::Err(&["cannot make the anonymous shared object"])
        };
        let what = format!("ByteQueue::anon({config:?})");
        t.row(&what, None, expect, || ByteQueue::anon(config).map(drop));
    }
    for (max, expect) in [
        (0, Expect::Ok),
        (1, Expect::Ok),
        (64 * 1024, Expect::Ok),
        (
            MAX,
            Expect::Err(&["max_message 18446744073709551615 must be at most"]),
        ),
    ] {
        t.row(
            &format!("BytesConfig::for_max_message({max})"),
            None,
            expect,
            || BytesConfig::for_max_message(max).map(drop),
        );
    }
    // What for_max_message picks is accepted.
    let c = BytesConfig::for_max_message(1000).unwrap();
    assert!(c.max_message == 1000 && ByteQueue::anon(c).is_ok());
    t.finish();
}

#[test]
fn data_configs() {
    let mut t = Table::new();
    let dict = [
        (
            (0, 1, 0),
            Expect::Err(&["capacity 0 must be from 1 to 2^24"]),
        ),
        ((1, 1, 0), Expect::Ok),
        (
            (MAX, 1, 0),
            Expect::Err(&["capacity 18446744073709551615 must be from 1 to 2^24"]),
        ),
        (
            (1, 0, 0),
            Expect::Err(&["max_key 0 must be from 1 to 2^20"]),
        ),
        (
            (1, MAX, 0),
            Expect::Err(&["max_key 18446744073709551615 must be from 1 to 2^20"]),
        ),
        ((1, 1, 1), Expect::Ok),
        (
            (1, 1, MAX),
            Expect::Err(&["max_value 18446744073709551615 must be from 0 to 2^26"]),
        ),
    ];
    for ((capacity, max_key, max_value), expect) in dict {
        let ok = matches!(expect, Expect::Ok);
        let config = DictConfig::new(capacity, max_key, max_value);
        let n = t.name();
        let what = format!("SharedDict::create({config:?})");
        t.row(&what, Some(&n), expect, || {
            SharedDict::create(&n, config).map(drop)
        });
        let expect = if ok {
            Expect::Ok
        } else {
            Expect::Err(&["cannot make the anonymous shared object"])
        };
        t.row(
            &format!("SharedDict::anon({config:?})"),
            None,
            expect,
            || SharedDict::anon(config).map(drop),
        );
    }
    for ((capacity, max_item), expect) in [
        ((0, 4), Expect::Err(&["capacity 0 must be from 1 to 2^24"])),
        ((1, 4), Expect::Ok),
        (
            (MAX, 4),
            Expect::Err(&["capacity 18446744073709551615 must be from 1 to 2^24"]),
        ),
        ((1, 0), Expect::Ok),
        ((1, 1), Expect::Ok),
        (
            (1, MAX),
            Expect::Err(&["max_item 18446744073709551615 must be from 0 to 2^26"]),
        ),
    ] {
        let n = t.name();
        let what = format!("SharedList::create({capacity}, {max_item})");
        t.row(&what, Some(&n), expect, || {
            SharedList::create(&n, ListConfig::new(capacity, max_item)).map(drop)
        });
    }
    t.row(
        "SharedList::anon(ListConfig::new(0, 4))",
        None,
        Expect::Err(&["cannot make the anonymous shared object: capacity 0 must be from 1 to"]),
        || SharedList::anon(ListConfig::new(0, 4)).map(drop),
    );

    let n = t.name();
    t.row(
        "Array::<u32>::create(&[])",
        Some(&n),
        Expect::Err(&["length 0 must be from 1 to "]),
        || Array::<u32>::create(&n, &[]).map(drop),
    );
    let n = t.name();
    t.row("Array::<u32>::create(&[0])", Some(&n), Expect::Ok, || {
        Array::<u32>::create(&n, &[0]).map(drop)
    });
    t.row("Array::<u8>::anon(1 MiB)", None, Expect::Ok, || {
        Array::<u8>::anon(&vec![0; 1 << 20]).map(drop)
    });
    // The longest slice there is: of a zero-sized type.
    t.row(
        "Array::<()>::anon(usize::MAX elements)",
        None,
        Expect::Err(&["element size 0 must be at least 1 byte"]),
        || Array::<()>::anon(&[(); MAX]).map(drop),
    );
    let n = t.name();
    t.row(
        "Value::<()>::create",
        Some(&n),
        Expect::Err(&["element size 0 must be at least 1 byte"]),
        || Value::<()>::create(&n, ()).map(drop),
    );
    t.finish();
}

#[test]
fn segment_sync_and_pool_configs() {
    let mut t = Table::new();
    for (size, expect) in [
        (0, Expect::Err(&["size 0 must be from 1 to "])),
        (1, Expect::Ok),
        (
            MAX,
            Expect::Err(&["size 18446744073709551615 must be from 1 to "]),
        ),
    ] {
        let n = t.name();
        t.row(
            &format!("Segment::create({size})"),
            Some(&n),
            expect,
            || Segment::create_with(&n, size, &Options::new()).map(drop),
        );
    }

    const PARTIES: &str = "parties 0 must be from 1 to 65535";
    t.row(
        "Shared::<Barrier>::anon(0)",
        None,
        Expect::Err(&["cannot make the anonymous shared object", PARTIES]),
        || Shared::<Barrier>::anon(0).map(drop),
    );
    t.row("Shared::<Barrier>::anon(1)", None, Expect::Ok, || {
        Shared::<Barrier>::anon(1).map(drop)
    });
    t.row(
        "Shared::<Barrier>::anon(u32::MAX)",
        None,
        Expect::Err(&["parties 4294967295 must be from 1 to 65535"]),
        || Shared::<Barrier>::anon(u32::MAX).map(drop),
    );
    let n = t.name();
    t.row(
        "Shared::<Barrier>::create(0)",
        Some(&n),
        Expect::Err(&[PARTIES]),
        || Shared::<Barrier>::create(&n, 0).map(drop),
    );

    // A semaphore takes any count; an initial count above the bound is
    // clamped to the bound (documented on `Semaphore::with_config`).
    for initial in [0, 1, u32::MAX] {
        for max in [None, NonZeroU32::new(1), NonZeroU32::new(u32::MAX)] {
            let config = SemaphoreConfig { initial, max };
            t.row(
                &format!("Shared::<Semaphore>::anon({config:?})"),
                None,
                Expect::Ok,
                || {
                    let s = Shared::<Semaphore>::anon(config)?;
                    let bound = max.map_or(u32::MAX, NonZeroU32::get);
                    assert_eq!(s.value(), initial.min(bound));
                    Ok::<_, Error>(())
                },
            );
        }
    }

    const POOL_RULE: &str = "cannot start the pool: processes";
    for (processes, expect) in [
        (
            0,
            Expect::Err(&[POOL_RULE, "processes 0 must be from 1 to 4096"]),
        ),
        (1, Expect::Ok),
        (
            MAX,
            Expect::Err(&[POOL_RULE, "18446744073709551615 must be from 1 to 4096"]),
        ),
    ] {
        t.row(&format!("Pool::new({processes})"), None, expect, || {
            Pool::new(processes, |x: &[u8]| x.to_vec()).map(drop)
        });
    }
    t.row(
        "Pool::builder(1).build() with no function",
        None,
        Expect::Err(&["functions 0 must be from 1 to 4294967295"]),
        || Pool::builder(1).build().map(drop),
    );
    for (max, expect) in [
        (0, Expect::Ok),
        (1, Expect::Ok),
        (
            MAX,
            Expect::Err(&[
                "cannot start the pool: max_message 18446744073709551615 must be at most ",
                "(each worker's two queues hold two tasks of it)",
            ]),
        ),
    ] {
        t.row(&format!("Pool max_message {max}"), None, expect, || {
            Pool::builder(1)
                .function(|x: &[u8]| x.to_vec())
                .max_message(max)
                .build()
                .map(drop)
        });
    }
    t.finish();
}

/// The limit a pool's error names is the real one: one more is refused,
/// with the same limit in the message.
#[test]
fn the_pool_message_limit_named_is_exact() {
    let pool = |m: usize| {
        Pool::builder(1)
            .function(|x: &[u8]| x.to_vec())
            .max_message(m)
            .build()
    };
    let e = pool(usize::MAX).unwrap_err().to_string();
    let largest: usize = e
        .split("must be at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no limit in {e:?}"));
    assert!(largest > 1 << 20, "{largest}");
    let e = pool(largest + 1).unwrap_err().to_string();
    let says = format!("max_message {} must be at most {largest} ", largest + 1);
    assert!(e.contains(&says), "{e}");
    // (A pool that large maps two rings of 2^32 bytes per worker, so it is
    // not built here.)
}

/// Opening a segment with the wrong element type says what it holds.
#[test]
fn element_mismatch_names_the_types() {
    let (_names, n) = common::segment_name("config", "value");
    let _v = Value::<u64>::create(&n, 1).unwrap();
    let e = Value::<u32>::open(&n).unwrap_err().to_string();
    assert!(
        e.contains(&n)
            && e.contains("holds elements of 8 bytes aligned to 8, not u32 (4 bytes aligned to 4)"),
        "{e}"
    );
    assert!(!e.contains("queue"), "{e}");
}
