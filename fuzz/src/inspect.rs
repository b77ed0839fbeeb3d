//! Arbitrary bytes as the whole file of a segment, through the inspector's
//! decoder ([`shmipc::inspect::decode`], the code `shmipc inspect` runs on
//! what it reads): it must give a report or a clear [`Error`], never a
//! panic or a read past the bytes, and every number in a report must lie
//! within the header's own geometry.

use shmipc::inspect::{decode, BytesState, Holder, LockState, Report, State};
use shmipc::Error;

const NAME: &str = "/fuzz-inspect";

/// The harness: decode `file`, check the report.
pub fn inspect(file: &[u8]) {
    match decode(NAME, file) {
        Ok(report) => check(&report, file.len() as u64),
        Err(e) => check_error(&e),
    }
}

fn check_error(e: &Error) {
    // Every refusal names the segment.
    let text = e.to_string();
    assert!(
        text.contains(NAME),
        "an error that does not name the segment: {text}"
    );
}

fn check(r: &Report, file_len: u64) {
    let h = &r.header;
    assert_eq!(r.name, NAME);
    assert!(r.file.is_none());
    assert!(
        h.total_size <= file_len,
        "a report for a file shorter than its header says"
    );
    assert!(h.object_offset + h.object_size <= h.peers_offset);
    assert!(h.peers_offset + u64::from(h.peer_slots) * 32 <= h.total_size);
    assert!(r.peers.len() <= h.peer_slots as usize);
    let mut last = None;
    for p in &r.peers {
        assert!(
            p.slot < h.peer_slots,
            "peer slot {} beyond {} slots",
            p.slot,
            h.peer_slots
        );
        assert!(p.generation != 0);
        assert!(last < Some(p.slot), "peers out of slot order");
        last = Some(p.slot);
        // Nothing can be judged from bytes alone.
        assert!(!p.fate.is_dead());
    }
    let holder = |o: &Option<Holder>| {
        if let Some(hd) = o {
            if hd.pid.is_some() {
                let slot = hd.token.slot().expect("a recorded pid comes from a slot");
                assert!(slot < h.peer_slots);
            }
            assert!(!hd.fate.is_dead());
        }
    };
    let lock = |l: &LockState| {
        holder(&l.owner);
        if l.owner.is_none() {
            assert_eq!(l.tid, 0);
            assert!(!l.owner_died);
        }
    };
    let ring = |b: &BytesState| {
        assert!(b.pending_bytes <= b.capacity && b.used_bytes <= b.capacity);
        assert!(b.max_message <= b.capacity);
        holder(&b.writer_lock);
        holder(&b.reader_lock);
    };
    match &r.state {
        State::Lock(l) => lock(l),
        State::Queue(q) | State::SpscQueue(q) => {
            assert!(q.len <= q.capacity);
            if let Some(roles) = &q.roles {
                roles.iter().for_each(holder);
            }
        }
        State::ByteQueue(b) => ring(b),
        State::Pipe { rings, ends } => {
            rings.iter().for_each(ring);
            ends.iter().for_each(holder);
        }
        State::Values { lock: l, .. } => lock(l),
        State::Dict {
            lock: l,
            capacity,
            len,
            tombstones,
        } => {
            lock(l);
            assert!(len <= capacity);
            assert!(*tombstones <= h.params[1]);
        }
        State::List {
            lock: l,
            capacity,
            len,
        } => {
            lock(l);
            assert!(len <= capacity);
        }
        State::Condition { lock: l, .. } => lock(l),
        State::Barrier {
            waiting,
            generation,
            ..
        } => {
            assert!(*waiting <= 0xffff);
            assert!(*generation <= 0x7fff);
        }
        _ => {}
    }
}
