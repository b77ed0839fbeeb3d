//! Value, Array, SharedDict and SharedList shared by many real processes.

mod common;

use std::time::Duration;

use common::{eventually, join, join_all_ok, CHILD_TIMEOUT};
use shmipc::sync::{AtomicU32, Ordering};
use shmipc::{
    fault, fork, Array, ArrayError, DictConfig, DictError, Error, ExitStatus, ListConfig, Named,
    Shared, SharedDict, SharedList, Unlinker, Value,
};

const PROCS: u64 = 8;
const ROUNDS: u64 = 300;

#[test]
fn value_updates_from_many_processes_lose_nothing() {
    let (_names, name) = common::segment_name("par-value", "counter");
    let counter = Value::<u64>::create(&name, 1_000_000).unwrap();
    let mut children = Vec::new();
    for _ in 0..PROCS {
        let name = name.clone();
        children.push(
            fork(move || {
                let Ok(v) = Value::<u64>::open(&name) else {
                    return 1;
                };
                for _ in 0..ROUNDS {
                    if v.update(|n| *n -= 1).is_err() {
                        return 2;
                    }
                }
                0
            })
            .unwrap(),
        );
    }
    join_all_ok(&mut children);
    assert_eq!(counter.get().unwrap(), 1_000_000 - PROCS * ROUNDS);
    counter.set(5).unwrap();
    assert_eq!(Value::<u64>::open(&name).unwrap().get().unwrap(), 5);
    // Wrong type or kind is refused.
    assert!(matches!(
        Value::<u32>::open(&name),
        Err(Error::ElementMismatch { .. })
    ));
    assert!(matches!(
        Array::<u64>::open(&name),
        Err(Error::WrongKind { .. })
    ));
    let (again, created) = Value::<u64>::open_or_create(&name, 0).unwrap();
    assert!(!created);
    assert_eq!(again.get().unwrap(), 5);
}

#[test]
fn array_updates_from_many_processes_lose_nothing() {
    let arr = Array::<u32>::anon(&[0; 16]).unwrap();
    let mut children = Vec::new();
    for p in 0..PROCS as usize {
        let arr = &arr;
        children.push(
            fork(move || {
                for _ in 0..ROUNDS {
                    // Whole-array and single-element updates interleave.
                    if arr.update(|a| a.iter_mut().for_each(|x| *x += 1)).is_err()
                        || arr.update_at(p, |x| *x += 1).is_err()
                    {
                        return 1;
                    }
                }
                0
            })
            .unwrap(),
        );
    }
    join_all_ok(&mut children);
    let snap = arr.snapshot().unwrap();
    for (i, v) in snap.iter().enumerate() {
        let own = if i < PROCS as usize { ROUNDS } else { 0 };
        assert_eq!(u64::from(*v), PROCS * ROUNDS + own, "element {i}");
    }
    let beyond = || ArrayError::OutOfBounds { index: 16, len: 16 };
    assert_eq!(arr.get(16), Err(beyond()));
    assert_eq!(arr.set(16, 0), Err(beyond()));
}

#[test]
fn the_shared_dict_under_concurrent_writers_loses_no_update() {
    let (_names, name) = common::segment_name("par-dict", "dict");
    let dict = SharedDict::create(&name, DictConfig::new(2048, 32, 16)).unwrap();
    let mut children = Vec::new();
    for p in 0..PROCS {
        let name = name.clone();
        children.push(
            fork(move || {
                let Ok(d) = SharedDict::open(&name) else {
                    return 1;
                };
                for i in 0..ROUNDS {
                    // Ten shared counters, read-modify-write.
                    let key = format!("counter-{}", i % 10);
                    let r = d.update(key.as_bytes(), |old| {
                        let n = old.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                        (n + 1).to_le_bytes().to_vec()
                    });
                    if r.is_err() {
                        return 2;
                    }
                    // And keys of its own, some removed again.
                    let own = format!("p{p}-{i}");
                    if d.insert(own.as_bytes(), &i.to_le_bytes()).is_err() {
                        return 3;
                    }
                    if i % 3 == 0 && d.remove(own.as_bytes()) != Ok(Some(i.to_le_bytes().to_vec()))
                    {
                        return 4;
                    }
                }
                0
            })
            .unwrap(),
        );
    }
    join_all_ok(&mut children);
    let mut total = 0;
    for c in 0..10 {
        let v = dict
            .get(format!("counter-{c}").as_bytes())
            .unwrap()
            .unwrap();
        total += u64::from_le_bytes(v.try_into().unwrap());
    }
    assert_eq!(total, PROCS * ROUNDS, "an update was lost");
    for p in 0..PROCS {
        for i in 0..ROUNDS {
            let got = dict.get(format!("p{p}-{i}").as_bytes()).unwrap();
            if i % 3 == 0 {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(i.to_le_bytes().to_vec()), "p{p}-{i}");
            }
        }
    }
    let own = PROCS * (ROUNDS - ROUNDS.div_ceil(3));
    assert_eq!(dict.len().unwrap() as u64, 10 + own);
    assert_eq!(dict.keys().unwrap().len() as u64, 10 + own);
}

#[test]
fn a_full_dict_and_oversized_entries_are_errors() {
    let (names, name) = common::segment_name("par-dict-full", "small");
    let d = SharedDict::create(&name, DictConfig::new(3, 4, 4)).unwrap();
    let other = SharedDict::open(&name).unwrap();
    for k in [b"a", b"b", b"c"] {
        other.insert(k, b"v").unwrap();
    }
    assert_eq!(d.insert(b"d", b"v"), Err(DictError::Full { capacity: 3 }));
    assert_eq!(d.insert(b"a", b"new").unwrap(), Some(b"v".to_vec()));
    assert_eq!(
        d.insert(b"toolong", b""),
        Err(DictError::TooLarge {
            what: "key",
            len: 7,
            max: 4
        })
    );
    assert_eq!(
        d.insert(b"e", b"toolong"),
        Err(DictError::TooLarge {
            what: "value",
            len: 7,
            max: 4
        })
    );
    assert!(matches!(
        SharedDict::create(&name, DictConfig::new(3, 4, 4)),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        SharedDict::create(&names.name("zero"), DictConfig::new(0, 4, 4)),
        Err(Error::Layout { .. })
    ));
}

#[test]
fn a_writer_killed_holding_the_dict_lock_is_repaired_around() {
    let _one = repairing();
    let dict = SharedDict::anon(DictConfig::new(64, 16, 16)).unwrap();
    let inside = Shared::<AtomicU32>::anon(0).unwrap();
    dict.insert(b"kept", b"1").unwrap();
    let mut child = fork(|| {
        // Holds the dict's lock inside the update closure until killed.
        let _ = dict.update(b"kept", |_| {
            inside.store(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(60));
            b"2".to_vec()
        });
        0
    })
    .unwrap();
    assert!(eventually(CHILD_TIMEOUT, || inside.load(Ordering::SeqCst) == 1));
    child.kill().unwrap();
    join(&mut child);
    // The next locker takes the lock over, repairs, and goes on.
    assert_eq!(dict.get(b"kept").unwrap(), Some(b"1".to_vec()));
    dict.insert(b"more", b"x").unwrap();
    assert_eq!(dict.len().unwrap(), 2);
}

/// A dict's table read from its segment file, as the layout on
/// `SharedDict` documents it: the control block's counters and every slot.
struct RawDict {
    len: u32,
    tombstones: u32,
    /// `(state, key, value, seq)` per slot.
    slots: Vec<(u32, Vec<u8>, Vec<u8>, u64)>,
}

const FULL: u32 = 1;
const TOMBSTONE: u32 = 2;

impl RawDict {
    fn read(name: &str, config: (usize, usize, usize)) -> RawDict {
        let (capacity, max_key, max_value) = config;
        let file = std::fs::read(common::shm_path(name)).unwrap();
        let u32_at = |o: usize| u32::from_ne_bytes(file[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(file[o..o + 8].try_into().unwrap());
        let base = u64_at(common::off::OBJECT_OFFSET as usize) as usize;
        let stride = (32 + max_key + max_value).div_ceil(8) * 8;
        let slots = (0..capacity + capacity / 4 + 1)
            .map(|i| {
                let s = base + 64 + i * stride;
                let (klen, vlen) = (u32_at(s + 4) as usize, u32_at(s + 8) as usize);
                let key = file[s + 32..s + 32 + klen.min(max_key)].to_vec();
                let v = s + 32 + max_key;
                (
                    u32_at(s),
                    key,
                    file[v..v + vlen.min(max_value)].to_vec(),
                    u64_at(s + 24),
                )
            })
            .collect();
        RawDict {
            len: u32_at(base + 16),
            tombstones: u32_at(base + 20),
            slots,
        }
    }

    /// The values of the full slots holding `key`.
    fn full(&self, key: &[u8]) -> Vec<&[u8]> {
        let full = self.slots.iter().filter(|s| s.0 == FULL && s.1 == key);
        full.map(|s| &s.2[..]).collect()
    }

    fn count(&self, state: u32) -> u32 {
        self.slots.iter().filter(|s| s.0 == state).count() as u32
    }

    /// Whether the counters agree with the slots.
    fn counted(&self) -> bool {
        let states_known = self.count(0) + self.count(FULL) + self.count(TOMBSTONE);
        assert_eq!(
            states_known as usize,
            self.slots.len(),
            "slot states are 0, 1 or 2"
        );
        self.len == self.count(FULL) && self.tombstones == self.count(TOMBSTONE)
    }
}

/// Held by the tests that take over a dead dict writer's lock:
/// `fault::repairs()` counts for the whole process, and `cargo test` runs
/// the tests of a file as threads of one.
static REPAIRING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn repairing() -> std::sync::MutexGuard<'static, ()> {
    REPAIRING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forks a writer that runs `write` on `dict` with the dict's pause point
/// `point` armed, waits until it reports (through shared memory) that it
/// has reached the point, and SIGKILLs it there.
fn kill_at(dict: &SharedDict, point: fault::Point, write: impl FnOnce(&SharedDict)) {
    let reached = Shared::<AtomicU32>::anon(0).unwrap();
    let mut child = fork(|| {
        // SAFETY: the anonymous mapping outlives this process's use of it (the
        // process is killed while paused, or exits).
        unsafe { fault::arm(point, &*reached) };
        write(dict);
        1 // not reached: the writer pauses until killed
    })
    .unwrap();
    assert!(
        eventually(CHILD_TIMEOUT, || reached.load(Ordering::SeqCst)
            == point as u32),
        "the writer never reached {point:?}"
    );
    child.kill().unwrap();
    assert_eq!(join(&mut child), ExitStatus::Signal(libc::SIGKILL));
}

/// The shape of the dicts the kill tests make: (capacity, largest key,
/// largest value), as [`RawDict::read`] takes it.
const DICT: (usize, usize, usize) = (16, 16, 16);

/// A dict (`label`, of shape [`DICT`]) that held `keys`, each with the
/// value "old", and lost the last of them again (a tombstone).
fn old_dict_less_its_last_key(label: &str, keys: [&[u8]; 3]) -> (Unlinker, String, SharedDict) {
    let (names, name) = common::segment_name(label, "d");
    let dict = SharedDict::create(&name, DictConfig::new(DICT.0, DICT.1, DICT.2)).unwrap();
    for k in keys {
        dict.insert(k, b"old").unwrap();
    }
    dict.remove(keys[2]).unwrap();
    (names, name, dict)
}

#[test]
fn a_dict_writer_killed_before_publishing_a_new_entry_loses_only_it() {
    let _one = repairing();
    let (_names, name, dict) = old_dict_less_its_last_key("dict-kill-publish", [b"a", b"b", b"c"]);
    let config = DICT;
    kill_at(&dict, fault::Point::DictBeforePublish, |d| {
        let _ = d.insert(b"new", b"unpublished");
    });
    // Killed inside the window: the entry's bytes are in a slot that is
    // not published, and the lock names a dead owner.
    let raw = RawDict::read(&name, config);
    let written = raw
        .slots
        .iter()
        .filter(|s| s.1 == b"new" && s.2 == b"unpublished");
    assert_eq!(written.count(), 1, "the entry was written");
    assert!(raw.full(b"new").is_empty(), "and not published");
    let repairs = fault::repairs();
    // The next locker takes over, repairs, and the insert that never
    // returned is all that is missing.
    assert_eq!(dict.get(b"new").unwrap(), None);
    assert_eq!(
        fault::repairs(),
        repairs + 1,
        "the next locker saw owner_died and repaired"
    );
    assert_eq!(dict.len().unwrap(), 2);
    assert_eq!(dict.get(b"a").unwrap().as_deref(), Some(&b"old"[..]));
    let raw = RawDict::read(&name, config);
    assert!(raw.counted(), "len and tombstones recounted");
    dict.insert(b"new", b"again").unwrap();
    assert_eq!(dict.get(b"new").unwrap().as_deref(), Some(&b"again"[..]));
    assert_eq!(fault::repairs(), repairs + 1, "repaired once");
}

#[test]
fn a_dict_writer_killed_between_replacing_and_tombstoning_leaves_a_duplicate_that_is_repaired() {
    let _one = repairing();
    let (_names, name, dict) = old_dict_less_its_last_key("dict-kill-replace", [b"k", b"x", b"y"]);
    let config = DICT;
    kill_at(&dict, fault::Point::DictBeforeTombstone, |d| {
        let _ = d.insert(b"k", b"new");
    });
    // Killed inside the window: the key is in the table twice, old and
    // new, and the counters are behind the slots.
    let raw = RawDict::read(&name, config);
    let mut both = raw.full(b"k");
    both.sort();
    assert_eq!(both, [&b"new"[..], b"old"], "old and new both published");
    assert!(!raw.counted(), "the counters are off");
    let repairs = fault::repairs();
    // The next locker repairs: the newer entry wins, the older becomes a
    // tombstone, the counters are recounted.
    assert_eq!(dict.get(b"k").unwrap().as_deref(), Some(&b"new"[..]));
    assert_eq!(
        fault::repairs(),
        repairs + 1,
        "the next locker saw owner_died and repaired"
    );
    let raw = RawDict::read(&name, config);
    assert_eq!(raw.full(b"k"), [&b"new"[..]], "one entry left, the newest");
    assert!(raw.counted(), "len and tombstones recounted");
    assert_eq!(raw.len, 2);
    assert_eq!(dict.len().unwrap(), 2);
    let mut keys = dict.keys().unwrap();
    keys.sort();
    assert_eq!(keys, [b"k".to_vec(), b"x".to_vec()]);
}

#[test]
fn a_shared_list_collects_appends_from_many_processes() {
    let (_names, name) = common::segment_name("par-list", "list");
    let list = SharedList::create(&name, ListConfig::new(200, 16)).unwrap();
    let mut children = Vec::new();
    for p in 0..10 {
        let name = name.clone();
        children.push(
            fork(move || {
                let Ok(l) = SharedList::open(&name) else {
                    return 1;
                };
                for i in 0..20 {
                    if l.append(format!("{p}-{i}").as_bytes()).is_err() {
                        return 2;
                    }
                }
                0
            })
            .unwrap(),
        );
    }
    join_all_ok(&mut children);
    let mut items: Vec<String> = list
        .to_vec()
        .unwrap()
        .into_iter()
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(items.len(), 200);
    items.sort();
    items.dedup();
    assert_eq!(items.len(), 200, "every append exactly once");
    assert_eq!(list.append(b"x"), Err(DictError::Full { capacity: 200 }));
}

#[test]
fn set_many_from_another_process_is_seen_all_or_none() {
    // A child writes the same number into elements 1 and 14 (far apart)
    // with one set_many per round; every snapshot the parent takes while
    // it runs holds equal values there, and the last round is seen.
    let arr = Array::<u64>::anon(&[0; 16]).unwrap();
    let mut child = {
        let arr = &arr;
        fork(move || {
            for k in 1..=ROUNDS * 10 {
                if arr.set_many(&[(1, k), (14, k)]).is_err() {
                    return 1;
                }
            }
            0
        })
        .unwrap()
    };
    let mut looks = 0u64;
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < CHILD_TIMEOUT, "the child hung");
        let snap = arr.snapshot().unwrap();
        assert_eq!(snap[1], snap[14], "a snapshot saw half a set_many");
        looks += 1;
    };
    assert_eq!(status, ExitStatus::Code(0));
    let snap = arr.snapshot().unwrap();
    assert_eq!(
        (snap[1], snap[14]),
        (ROUNDS * 10, ROUNDS * 10),
        "after {looks} looks"
    );
}

#[test]
fn set_many_refuses_an_out_of_range_index_and_writes_nothing() {
    let arr = Array::<u64>::anon(&[7; 16]).unwrap();
    for bad in [16, usize::MAX] {
        assert_eq!(
            arr.set_many(&[(0, 1), (bad, 2), (15, 3)]),
            Err(ArrayError::OutOfBounds {
                index: bad,
                len: 16
            })
        );
        assert_eq!(arr.snapshot().unwrap(), vec![7; 16], "index {bad} wrote");
    }
    assert_eq!(arr.set_many(&[]), Ok(()));
    // A repeated index: the last write wins, as a loop of set would.
    arr.set_many(&[(3, 1), (3, 2)]).unwrap();
    assert_eq!(arr.get(3), Ok(2));
    let msg = arr.set_many(&[(usize::MAX, 0)]).unwrap_err().to_string();
    assert!(
        msg.contains(&usize::MAX.to_string()) && msg.contains("16"),
        "{msg}"
    );
}
