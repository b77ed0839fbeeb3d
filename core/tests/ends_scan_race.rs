//! A receiver's scan for live senders racing senders that attach and
//! leave (`queue/ends.rs`, "A scan racing an arrival"), forced
//! deterministically: the peer table here is scanned slot by slot, and the
//! test runs a step of its own (a handle that declares itself, drops, or
//! whose process dies) just before the scan reads a given slot of a given
//! scan. A single scan reports end-of-stream while a sender lives in each
//! of these interleavings (the last test is the guard); the receiver must
//! not.

#![cfg(not(loom))]

use shmipc_core::sync::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::boxed::Box;
use std::sync::Mutex;
use std::vec::Vec;

use shmipc_core::peers::{End, Fate, Peers, Token};
use shmipc_core::{Mpmc, PopError, RingConfig};

const SLOTS: usize = 4;

/// What the tests leak (the handles are `'static`, so their peers and
/// memory must be), kept reachable from here so that Miri's leak check
/// does not count it.
static KEPT: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

struct Kept(#[allow(dead_code)] *const u8);
// SAFETY: never dereferenced; only keeps the address reachable.
unsafe impl Send for Kept {}

fn leak<T>(b: Box<T>) -> &'static mut T {
    let r = Box::leak(b);
    KEPT.lock().unwrap().push(Kept(r as *const T as *const u8));
    r
}

/// A step to run before scan `scan` (counted from 1) reads slot `slot`.
struct Hook {
    scan: u32,
    slot: usize,
    step: Box<dyn FnOnce() + Send>,
}

/// A peer table: per slot, how many sender handles it records and whether
/// its process is dead; and the hooks of the interleaving under test.
struct Table {
    senders: [AtomicU32; SLOTS],
    dead: [AtomicBool; SLOTS],
    scans: AtomicU32,
    hooks: Mutex<Vec<Hook>>,
}

impl Table {
    fn new() -> &'static Table {
        leak(Box::new(Table {
            senders: std::array::from_fn(|_| AtomicU32::new(0)),
            dead: std::array::from_fn(|_| AtomicBool::new(false)),
            scans: AtomicU32::new(0),
            hooks: Mutex::new(Vec::new()),
        }))
    }

    /// Runs `step` just before scan `scan` (from now on, counted from 1)
    /// reads slot `slot`.
    fn before(&self, scan: u32, slot: usize, step: impl FnOnce() + Send + 'static) {
        let scan = self.scans.load(SeqCst) + scan;
        self.hooks.lock().unwrap().push(Hook {
            scan,
            slot,
            step: Box::new(step),
        });
    }

    /// Fails unless every step ran (a test whose interleaving never
    /// happened proves nothing).
    fn all_ran(&self) {
        assert!(
            self.hooks.lock().unwrap().is_empty(),
            "a step of the interleaving never ran"
        );
    }

    fn run_hooks(&self, scan: u32, slot: usize) {
        loop {
            let step = {
                let mut hooks = self.hooks.lock().unwrap();
                match hooks.iter().position(|h| h.scan == scan && h.slot == slot) {
                    Some(i) => hooks.remove(i).step,
                    None => return,
                }
            };
            step();
        }
    }
}

/// One process of the table, in slot `slot`.
struct Peer {
    table: &'static Table,
    slot: usize,
}

fn peer(table: &'static Table, slot: usize) -> &'static Peer {
    leak(Box::new(Peer { table, slot }))
}

impl Peers for Peer {
    fn me(&self) -> Token {
        Token::new(self.slot as u32, 1).unwrap()
    }

    fn fate(&self, t: Token) -> Fate {
        match t.slot() {
            Some(s) if (s as usize) < SLOTS && self.table.dead[s as usize].load(SeqCst) => {
                Fate::Dead
            }
            _ => Fate::Alive,
        }
    }

    fn add_end(&self, _lane: u32, end: End) -> bool {
        if end == End::Sender {
            self.table.senders[self.slot].fetch_add(1, SeqCst);
        }
        true
    }

    fn remove_end(&self, _lane: u32, end: End) {
        if end == End::Sender {
            self.table.senders[self.slot].fetch_sub(1, SeqCst);
        }
    }

    /// The scan, slot by slot, with the test's steps in between.
    fn end_alive(&self, _lane: u32, end: End) -> bool {
        assert_eq!(end, End::Sender, "these tests only ask about senders");
        let scan = self.table.scans.fetch_add(1, SeqCst) + 1;
        for slot in 0..SLOTS {
            self.table.run_hooks(scan, slot);
            if self.table.senders[slot].load(SeqCst) > 0 && !self.table.dead[slot].load(SeqCst) {
                return true;
            }
        }
        false
    }
}

type Queue = Mpmc<'static, u64>;

/// A queue in leaked memory, and a handle on it for each slot of the
/// table (the receiver's is slot 0).
fn queue(table: &'static Table) -> [Queue; SLOTS] {
    #[repr(C, align(128))]
    struct Mem([u8; 4096]);
    let mem = leak(Box::new(Mem([0; 4096])));
    let q = Mpmc::<u64>::new_in(&mut mem.0, RingConfig::new(4)).unwrap();
    std::array::from_fn(|slot| q.clone().with_peers(peer(table, slot)))
}

/// A handle that stays attached for the rest of the test.
fn kept(q: Queue) -> &'static Queue {
    leak(Box::new(q))
}

/// A look that must find a sender alive.
fn present(rx: &Queue) {
    assert_eq!(rx.try_pop(), Err(PopError::Empty), "a sender lives");
}

/// Slots: the receiver 0, a new sender 1 (behind the scan once it reads
/// slot 2), the old sender 3 (ahead of it). Just before the first scan
/// reads slot 2, the new sender records itself and the old one drops.
#[test]
fn a_sender_recorded_behind_the_scan_while_the_last_one_drops_ahead_of_it() {
    let table = Table::new();
    let [rx, new, _, old] = queue(table);
    old.declare(End::Sender);
    let new = kept(new);
    // The receiver's first empty look scans.
    table.before(1, 2, move || {
        new.declare(End::Sender);
        drop(old);
    });
    assert_eq!(
        rx.try_pop(),
        Err(PopError::Empty),
        "end-of-stream reported while the new sender lives"
    );
    table.all_ran();
    // And the new sender's items arrive.
    new.try_push(7).unwrap();
    assert_eq!(rx.try_pop(), Ok(7));
}

/// The same with the old sender's process dying (no departure to see).
#[test]
fn a_sender_recorded_behind_the_scan_while_the_last_one_dies_ahead_of_it() {
    let table = Table::new();
    let [rx, new, _, old] = queue(table);
    old.declare(End::Sender);
    let _old = kept(old);
    let new = kept(new);
    table.before(1, 2, move || {
        new.declare(End::Sender);
        table.dead[3].store(true, SeqCst);
    });
    assert_eq!(
        rx.try_pop(),
        Err(PopError::Empty),
        "end-of-stream reported while the new sender lives"
    );
    table.all_ran();
}

/// Three senders, and both scans miss a live one: during the first scan
/// one records itself behind it (slot 1) while the old one (slot 3) dies
/// ahead of it; during the second, another records itself behind it (in
/// the receiver's own process, slot 0) while the one of slot 1 drops ahead
/// of it. Only the counts tell.
#[test]
fn two_scans_each_missing_a_sender_that_came_while_another_left() {
    let table = Table::new();
    let [rx, second, _, old] = queue(table);
    let third = rx.clone();
    old.declare(End::Sender);
    let _old = kept(old);
    let third = kept(third);
    let second: &'static Dropper = leak(Box::new(Dropper(Mutex::new(Some(second)))));
    table.before(1, 2, move || {
        if let Some(q) = second.0.lock().unwrap().as_ref() {
            q.declare(End::Sender);
        }
        table.dead[3].store(true, SeqCst);
    });
    table.before(2, 1, move || {
        third.declare(End::Sender);
        drop(second.0.lock().unwrap().take());
    });
    assert_eq!(
        rx.try_pop(),
        Err(PopError::Empty),
        "end-of-stream reported while the third sender lives"
    );
    table.all_ran();
    third.try_push(8).unwrap();
    assert_eq!(rx.try_pop(), Ok(8));
}

/// The guard: with every sender gone, end-of-stream is still reported.
#[test]
fn every_sender_gone_is_still_end_of_stream() {
    let table = Table::new();
    let [rx, a, b, _] = queue(table);
    a.declare(End::Sender);
    b.declare(End::Sender);
    present(&rx);
    a.try_push(1).unwrap();
    drop(a);
    assert_eq!(rx.try_pop(), Ok(1));
    present(&rx);
    drop(b);
    assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
    // A process's death, found by the owner check, likewise.
    let table = Table::new();
    let [rx, a, _, _] = queue(table);
    a.declare(End::Sender);
    let _a = kept(a);
    present(&rx);
    table.dead[1].store(true, SeqCst);
    rx.pop_owner_check();
    assert_eq!(rx.try_pop(), Err(PopError::Disconnected));
}

/// Lets a hook drop a handle the test made.
struct Dropper(Mutex<Option<Queue>>);
