//! Reports as text for people and as JSON for programs.

use std::fmt::Write;

use serde_json::{json, Value};
use shmipc::inspect::{
    BytesState, End, EndHolder, EndReport, Fate, FileInfo, HoldKind, Holder, LockState, Peer,
    QueueState, Report, State, WorkerState,
};
use shmipc::Kind;

use crate::procs::{comm, Mappers};
use crate::Entry;

/// A kind's name without its article ("Lock", "ByteQueue", "kind 200").
pub fn kind_name(k: Kind) -> String {
    match k.name() {
        Some(n) => n
            .strip_prefix("a ")
            .or_else(|| n.strip_prefix("an "))
            .unwrap_or(n)
            .to_owned(),
        None => format!("kind {}", k.raw()),
    }
}

fn fate_word(f: &Fate) -> &'static str {
    match f {
        Fate::Alive => "alive",
        Fate::Dead => "dead",
        Fate::Unknown(_) => "cannot judge",
    }
}

fn fate_json(f: &Fate) -> Value {
    match f {
        Fate::Unknown(why) => json!({"state": "unknown", "why": why}),
        f => json!({"state": fate_word(f)}),
    }
}

/// `pid 12 (cat), pid 13 (sh)`.
pub fn pid_list(pids: &[u32]) -> String {
    pids.iter()
        .map(|&p| match comm(p) {
            Some(c) => format!("pid {p} ({c})"),
            None => format!("pid {p}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: a zeroed passwd is a valid value for getpwuid_r to fill.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use
    // of the strings it receives.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: pw_name points at a NUL-terminated
    // string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

fn owner_text(uid: u32) -> String {
    match user_name(uid) {
        Some(n) => n,
        None => uid.to_string(),
    }
}

fn size_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The kind's parameters in a few words.
pub fn params_text(s: &State) -> String {
    match s {
        State::Queue(q) | State::SpscQueue(q) => {
            format!("capacity {}, item {} B", q.capacity, q.item_size)
        }
        State::ByteQueue(b) => {
            format!("capacity {} B, max message {} B", b.capacity, b.max_message)
        }
        State::Pipe { rings, .. } => format!(
            "capacity {} B, max message {} B",
            rings[0].capacity, rings[0].max_message
        ),
        State::Values { item_size, len, .. } => format!("{len} x {item_size} B"),
        State::Dict { capacity, .. } | State::List { capacity, .. } => {
            format!("capacity {capacity}")
        }
        State::Barrier { parties, .. } => format!("{parties} parties"),
        State::Semaphore { max: Some(m), .. } => format!("max {m}"),
        State::PoolStatus(w) => format!("{} workers", w.len()),
        _ => "-".to_owned(),
    }
}

fn peer_text(p: &Peer) -> String {
    let ns = if p.pidns == 0 {
        String::new()
    } else {
        format!(" ns {}", p.pidns)
    };
    format!("slot {}: pid {}{ns} {}", p.slot, p.pid, fate_word(&p.fate))
}

/// `ls`'s table.
pub fn ls_text(entries: &[&Entry], mappers: &Mappers) -> String {
    let mut rows = vec![[
        "NAME",
        "KIND",
        "PARAMETERS",
        "SIZE",
        "MODE",
        "OWNER",
        "CREATOR",
        "PEERS (SLOT PID)",
        "MAPPED BY",
    ]
    .map(str::to_owned)];
    for e in entries {
        let row = match e {
            Entry::Segment(r) => {
                let f = r.file.unwrap_or(FileInfo {
                    size: 0,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    dev: 0,
                    ino: 0,
                });
                let pids = mappers.of(f.dev, f.ino);
                [
                    r.name.clone(),
                    kind_name(r.header.kind()),
                    params_text(&r.state),
                    size_text(f.size),
                    format!("{:04o}", f.mode),
                    owner_text(f.uid),
                    format!(
                        "{} ({})",
                        r.header.creator_pid,
                        if creator_attached(r) {
                            "attached"
                        } else {
                            "detached"
                        }
                    ),
                    if r.peers.is_empty() {
                        "-".to_owned()
                    } else {
                        r.peers
                            .iter()
                            .map(|p| format!("{} pid {} {}", p.slot, p.pid, fate_word(&p.fate)))
                            .collect::<Vec<_>>()
                            .join("; ")
                    },
                    if pids.is_empty() {
                        "-".to_owned()
                    } else {
                        pids.iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                ]
            }
            Entry::Broken { name, error } => broken_row(name, &format!("invalid: {error}")),
            Entry::Foreign { name, .. } => broken_row(name, "foreign (not a shmipc segment)"),
            Entry::Temp {
                name,
                creator_alive,
            } => broken_row(
                name,
                match creator_alive {
                    Some(true) => "temporary creation file (creator alive)",
                    Some(false) => "temporary creation file (creator gone)",
                    None => "temporary creation file",
                },
            ),
        };
        rows.push(row);
    }
    let mut widths = [0usize; 9];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("(mapped by: processes of this pid namespace only)\n");
    if !mappers.unreadable.is_empty() {
        let _ = writeln!(
            out,
            "(the maps of {} could not be read)",
            pid_list(&mappers.unreadable)
        );
    }
    out
}

fn broken_row(name: &str, what: &str) -> [String; 9] {
    let st = std::fs::metadata(format!("{}{name}", crate::SHM_DIR)).ok();
    use std::os::unix::fs::MetadataExt;
    [
        name.to_owned(),
        what.to_owned(),
        String::new(),
        st.as_ref().map_or_else(String::new, |m| size_text(m.len())),
        st.as_ref()
            .map_or_else(String::new, |m| format!("{:04o}", m.mode() & 0o7777)),
        st.as_ref()
            .map_or_else(String::new, |m| owner_text(m.uid())),
        String::new(),
        String::new(),
        String::new(),
    ]
}

fn holder_text(h: &Option<Holder>) -> String {
    match h {
        None => "none".to_owned(),
        Some(h) => {
            let who = match h.pid {
                Some(pid) => format!("pid {pid}"),
                None => "an unrecorded process".to_owned(),
            };
            let why = match h.fate {
                Fate::Unknown(why) => format!(" ({why})"),
                _ => String::new(),
            };
            format!("{} ({who}), {}{why}", h.token, fate_word(&h.fate))
        }
    }
}

fn lock_text(out: &mut String, label: &str, l: &LockState) {
    match &l.owner {
        None if l.unrecoverable => {
            let _ = writeln!(
                out,
                "{label}: not recoverable (an owner died, the state was never marked consistent)"
            );
        }
        None => {
            let _ = writeln!(out, "{label}: free");
        }
        Some(_) => {
            let _ = writeln!(
                out,
                "{label}: held by {}, thread {}{}",
                holder_text(&l.owner),
                l.tid,
                if l.owner_died {
                    ", OWNER_DIED (being repaired)"
                } else {
                    ""
                }
            );
        }
    }
}

fn ring_text(out: &mut String, label: &str, b: &BytesState) {
    let _ = writeln!(
        out,
        "{label}: {} B pending, {} of {} B in use, max message {} B, {}",
        b.pending_bytes,
        b.used_bytes,
        b.capacity,
        b.max_message,
        if b.ring.closed { "closed" } else { "open" }
    );
    let _ = writeln!(
        out,
        "  sleepers: {} readers, {} writers; writers' lock: {}; readers' lock: {}{}",
        b.ring.consumer_sleepers,
        b.ring.producer_sleepers,
        holder_text(&b.writer_lock),
        holder_text(&b.reader_lock),
        if b.unrecoverable {
            "; a lock is not recoverable"
        } else {
            ""
        }
    );
}

/// Holders of an end: "pid 10 (comm)" for this pid namespace's, "pid 1
/// in pid namespace 4026532999" for another's (its pid means nothing
/// here, so no name is looked up for it).
fn end_holders(hs: &[EndHolder], own_ns: u64) -> String {
    hs.iter()
        .map(|h| {
            if h.pidns != 0 && own_ns != 0 && h.pidns != own_ns {
                format!("pid {} in pid namespace {}", h.pid, h.pidns)
            } else {
                pid_list(&[h.pid])
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One end's holders: "2 handles in pid 10, 11; dead: pid 12".
fn end_text(e: &EndReport, own_ns: u64) -> String {
    let mut parts = Vec::new();
    if !e.alive.is_empty() {
        parts.push(format!(
            "{} handle{} in {}",
            e.live_handles,
            if e.live_handles == 1 { "" } else { "s" },
            end_holders(&e.alive, own_ns)
        ));
    }
    if !e.unknown.is_empty() {
        parts.push(format!("unjudged: {}", end_holders(&e.unknown, own_ns)));
    }
    if !e.dead.is_empty() {
        parts.push(format!("dead: {}", end_holders(&e.dead, own_ns)));
    }
    if parts.is_empty() {
        "none open".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The senders and receivers of lane `lane`, from the peer table.
fn ends_text(out: &mut String, label: &str, r: &Report, lane: u32) {
    let own_ns = shmipc::inspect::own_pid_namespace();
    for (word, end) in [("senders", End::Sender), ("receivers", End::Receiver)] {
        let e = r.end(lane, end);
        let _ = writeln!(out, "{label}{word}: {}", end_text(&e, own_ns));
    }
}

/// Holders as JSON: pid, pid namespace, whether that is this tool's, slot
/// and handles.
fn holders_json(hs: &[EndHolder], own_ns: u64) -> Value {
    hs.iter()
        .map(|h| {
            json!({
                "pid": h.pid,
                "pidns": h.pidns,
                "this_pid_namespace": h.pidns == 0 || h.pidns == own_ns,
                "slot": h.slot,
                "handles": h.handles,
            })
        })
        .collect::<Vec<_>>()
        .into()
}

fn end_json(e: &EndReport) -> Value {
    let own = shmipc::inspect::own_pid_namespace();
    json!({
        "alive": holders_json(&e.alive, own),
        "dead": holders_json(&e.dead, own),
        "unknown": holders_json(&e.unknown, own),
        "live_handles": e.live_handles,
    })
}

/// Every lane's ends, for the kinds that count them.
fn ends_json(r: &Report) -> Value {
    let lanes: u32 = match r.state {
        State::Queue(_) | State::SpscQueue(_) | State::ByteQueue(_) => 1,
        State::Pipe { .. } => 2,
        _ => return Value::Null,
    };
    (0..lanes)
        .map(|lane| {
            json!({
                "lane": lane,
                "senders": end_json(&r.end(lane, End::Sender)),
                "receivers": end_json(&r.end(lane, End::Receiver)),
            })
        })
        .collect::<Vec<_>>()
        .into()
}

fn queue_text(out: &mut String, q: &QueueState) {
    let _ = writeln!(
        out,
        "items: {} of {} ({} B each), {}",
        q.len,
        q.capacity,
        q.item_size,
        if q.ring.closed { "closed" } else { "open" }
    );
    let _ = writeln!(
        out,
        "sleepers: {} consumers, {} producers",
        q.ring.consumer_sleepers, q.ring.producer_sleepers
    );
    if let Some([p, c]) = &q.roles {
        let _ = writeln!(out, "producer: {}", holder_text(p));
        let _ = writeln!(out, "consumer: {}", holder_text(c));
    }
}

/// `inspect`'s report.
pub fn inspect_text(r: &Report, mappers: &Mappers) -> String {
    let mut out = String::new();
    let h = &r.header;
    let params = params_text(&r.state);
    if params == "-" {
        let _ = writeln!(out, "{}: {}", r.name, kind_name(h.kind()));
    } else {
        let _ = writeln!(out, "{}: {} ({params})", r.name, kind_name(h.kind()));
    }
    if let Some(f) = &r.file {
        let _ = writeln!(
            out,
            "file: {} B, mode {:04o}, owner {} (uid {}), inode {}",
            f.size,
            f.mode,
            owner_text(f.uid),
            f.uid,
            f.ino
        );
        let pids = mappers.of(f.dev, f.ino);
        let _ = writeln!(
            out,
            "mapped by: {} (this pid namespace)",
            if pids.is_empty() {
                "no process".to_owned()
            } else {
                pid_list(&pids)
            }
        );
    }
    let _ = writeln!(
        out,
        "header: version {}, creator pid {}, object {} B at {}, {} peer slots at {}",
        h.version, h.creator_pid, h.object_size, h.object_offset, h.peer_slots, h.peers_offset
    );
    if r.peers.is_empty() {
        let _ = writeln!(out, "peers: none attached");
    } else {
        let _ = writeln!(out, "peers:");
        for p in &r.peers {
            let _ = writeln!(out, "  {}", peer_text(p));
        }
    }
    match &r.state {
        State::Bytes => {
            let _ = writeln!(out, "raw bytes: {} B", h.object_size);
        }
        State::Lock(l) => lock_text(&mut out, "lock", l),
        State::Semaphore {
            value,
            max,
            sleepers,
        } => {
            let _ = writeln!(
                out,
                "value: {value}{}, sleepers: {sleepers}",
                max.map_or_else(String::new, |m| format!(" (max {m})"))
            );
        }
        State::Event { set } => {
            let _ = writeln!(out, "set: {}", if *set { "yes" } else { "no" });
        }
        State::AtomicU32(v) => {
            let _ = writeln!(out, "value: {v}");
        }
        State::AtomicU64(v) => {
            let _ = writeln!(out, "value: {v}");
        }
        State::Queue(q) | State::SpscQueue(q) => {
            queue_text(&mut out, q);
            ends_text(&mut out, "", r, 0);
        }
        State::ByteQueue(b) => {
            ring_text(&mut out, "messages", b);
            ends_text(&mut out, "", r, 0);
        }
        State::Pipe { rings, ends } => {
            let _ = writeln!(out, "end A: {}", holder_text(&ends[0]));
            let _ = writeln!(out, "end B: {}", holder_text(&ends[1]));
            ring_text(&mut out, "A to B", &rings[0]);
            ends_text(&mut out, "  A to B ", r, 0);
            ring_text(&mut out, "B to A", &rings[1]);
            ends_text(&mut out, "  B to A ", r, 1);
        }
        State::Values { lock, .. } => lock_text(&mut out, "lock", lock),
        State::Dict {
            lock,
            capacity,
            len,
            tombstones,
        } => {
            let _ = writeln!(
                out,
                "entries: {len} of {capacity}, tombstones: {tombstones}"
            );
            lock_text(&mut out, "lock", lock);
        }
        State::List {
            lock,
            capacity,
            len,
        } => {
            let _ = writeln!(out, "items: {len} of {capacity}");
            lock_text(&mut out, "lock", lock);
        }
        State::Condition { lock, sleepers } => {
            let _ = writeln!(out, "sleepers: {sleepers}");
            lock_text(&mut out, "lock", lock);
        }
        State::Barrier {
            parties,
            waiting,
            generation,
            broken,
        } => {
            let _ = writeln!(
                out,
                "parties: {parties}, waiting: {waiting}, generation: {generation}, broken: {}",
                if *broken { "yes" } else { "no" }
            );
        }
        State::PoolStatus(workers) => {
            let dead = workers
                .iter()
                .filter(|w| w.holder.is_some_and(|h| h.fate.is_dead()))
                .count();
            let _ = writeln!(out, "workers: {}, dead: {dead}", workers.len());
            for w in workers {
                let _ = writeln!(
                    out,
                    "  {}: pid {}, {}, started {} time(s); {}",
                    w.index,
                    w.pid,
                    worker_state_word(w.state),
                    w.starts,
                    holder_text(&w.holder)
                );
            }
        }
        _ => {
            let _ = writeln!(out, "state: not decoded (a kind this build does not know)");
        }
    }
    holds_text(&mut out, r);
    out
}

fn worker_state_word(s: WorkerState) -> String {
    match s {
        WorkerState::Starting => "starting".to_owned(),
        WorkerState::Idle => "idle".to_owned(),
        WorkerState::Busy => "busy".to_owned(),
        WorkerState::Exited => "exited".to_owned(),
        WorkerState::Other(v) => format!("state {v}"),
    }
}

fn hold_kind_word(k: HoldKind) -> &'static str {
    match k {
        HoldKind::PushClaim => "push claim (not published)",
        HoldKind::PopClaim => "pop claim (not freed)",
        HoldKind::Reserved => "reserved (not committed)",
        HoldKind::Reading => "being read (not released)",
    }
}

fn hold_kind_json(k: HoldKind) -> &'static str {
    match k {
        HoldKind::PushClaim => "push_claim",
        HoldKind::PopClaim => "pop_claim",
        HoldKind::Reserved => "reserved",
        HoldKind::Reading => "reading",
    }
}

/// Whether the object is a queue whose slots or records are scanned.
fn has_holds(s: &State) -> bool {
    matches!(
        s,
        State::Queue(_) | State::ByteQueue(_) | State::Pipe { .. }
    )
}

fn holds_text(out: &mut String, r: &Report) {
    if !has_holds(&r.state) {
        return;
    }
    let partial = if r.holds_complete {
        ""
    } else {
        " (scan incomplete)"
    };
    if r.holds.is_empty() {
        let _ = writeln!(out, "held: nothing{partial}");
        return;
    }
    let _ = writeln!(
        out,
        "held: {}, by dead processes: {}{partial}",
        r.holds.len(),
        r.held_by_dead()
    );
    let pipe = matches!(r.state, State::Pipe { .. });
    for h in &r.holds {
        let ring = if pipe {
            if h.ring == 0 {
                "A to B, "
            } else {
                "B to A, "
            }
        } else {
            ""
        };
        let len = h.len.map_or_else(String::new, |l| format!(", {l} B"));
        let _ = writeln!(
            out,
            "  {ring}position {}: {}{len}, by {}",
            h.position,
            hold_kind_word(h.kind),
            holder_text(&h.holder)
        );
    }
}

fn holds_json(r: &Report) -> Value {
    if !has_holds(&r.state) {
        return Value::Null;
    }
    json!({
        "complete": r.holds_complete,
        "held_by_dead": r.held_by_dead(),
        "items": r.holds.iter().map(|h| json!({
            "ring": h.ring,
            "position": h.position,
            "kind": hold_kind_json(h.kind),
            "len": h.len,
            "holder": holder_json(&h.holder),
        })).collect::<Vec<_>>(),
    })
}

fn holder_json(h: &Option<Holder>) -> Value {
    match h {
        None => Value::Null,
        Some(h) => json!({
            "token": h.token.raw(),
            "slot": h.token.slot(),
            "generation": h.token.generation(),
            "pid": h.pid,
            "pidns": h.pidns,
            "fate": fate_json(&h.fate),
        }),
    }
}

fn lock_json(l: &LockState) -> Value {
    json!({
        "owner": holder_json(&l.owner),
        "tid": l.tid,
        "owner_died": l.owner_died,
        "unrecoverable": l.unrecoverable,
    })
}

fn ring_json(b: &BytesState) -> Value {
    json!({
        "capacity": b.capacity,
        "max_message": b.max_message,
        "pending_bytes": b.pending_bytes,
        "used_bytes": b.used_bytes,
        "closed": b.ring.closed,
        "reader_sleepers": b.ring.consumer_sleepers,
        "writer_sleepers": b.ring.producer_sleepers,
        "writer_lock": holder_json(&b.writer_lock),
        "reader_lock": holder_json(&b.reader_lock),
        "unrecoverable": b.unrecoverable,
    })
}

fn queue_json(q: &QueueState) -> Value {
    let mut v = json!({
        "capacity": q.capacity,
        "item_size": q.item_size,
        "item_align": q.item_align,
        "len": q.len,
        "closed": q.ring.closed,
        "consumer_sleepers": q.ring.consumer_sleepers,
        "producer_sleepers": q.ring.producer_sleepers,
    });
    if let Some([p, c]) = &q.roles {
        v["producer"] = holder_json(p);
        v["consumer"] = holder_json(c);
    }
    v
}

fn state_json(s: &State) -> Value {
    match s {
        State::Bytes => json!({}),
        State::Lock(l) => lock_json(l),
        State::Semaphore {
            value,
            max,
            sleepers,
        } => json!({"value": value, "max": max, "sleepers": sleepers}),
        State::Event { set } => json!({"set": set}),
        State::AtomicU32(v) => json!({"value": v}),
        State::AtomicU64(v) => json!({"value": v}),
        State::Queue(q) | State::SpscQueue(q) => queue_json(q),
        State::ByteQueue(b) => ring_json(b),
        State::Pipe { rings, ends } => json!({
            "end_a": holder_json(&ends[0]),
            "end_b": holder_json(&ends[1]),
            "a_to_b": ring_json(&rings[0]),
            "b_to_a": ring_json(&rings[1]),
        }),
        State::Values {
            lock,
            item_size,
            len,
        } => json!({"lock": lock_json(lock), "item_size": item_size, "len": len}),
        State::Dict {
            lock,
            capacity,
            len,
            tombstones,
        } => {
            json!({"lock": lock_json(lock), "capacity": capacity, "len": len, "tombstones": tombstones})
        }
        State::List {
            lock,
            capacity,
            len,
        } => {
            json!({"lock": lock_json(lock), "capacity": capacity, "len": len})
        }
        State::Condition { lock, sleepers } => {
            json!({"lock": lock_json(lock), "sleepers": sleepers})
        }
        State::Barrier {
            parties,
            waiting,
            generation,
            broken,
        } => {
            json!({"parties": parties, "waiting": waiting, "generation": generation, "broken": broken})
        }
        State::PoolStatus(workers) => json!({
            "workers": workers.iter().map(|w| json!({
                "index": w.index,
                "pid": w.pid,
                "state": worker_state_word(w.state),
                "starts": w.starts,
                "peer": holder_json(&w.holder),
            })).collect::<Vec<_>>(),
            "dead": workers.iter().filter(|w| w.holder.is_some_and(|h| h.fate.is_dead())).count(),
        }),
        _ => Value::Null,
    }
}

/// Whether a live peer recorded the creator's pid: the creator (or a
/// process that now has its pid in another namespace, which the pid
/// namespace in the slot tells apart for people) is still attached.
pub fn creator_attached(r: &Report) -> bool {
    r.peers
        .iter()
        .any(|p| p.pid == r.header.creator_pid && p.fate == Fate::Alive)
}

/// One segment's report as JSON.
pub fn report_json(r: &Report, mappers: &Mappers) -> Value {
    let h = &r.header;
    let file = r.file.map(|f| {
        json!({
            "size": f.size,
            "mode": format!("{:04o}", f.mode),
            "uid": f.uid,
            "owner": user_name(f.uid),
            "gid": f.gid,
            "dev": f.dev,
            "inode": f.ino,
        })
    });
    let mapped_by = r.file.map_or_else(Vec::new, |f| mappers.of(f.dev, f.ino));
    json!({
        "name": r.name,
        "status": "shmipc",
        "kind": kind_name(h.kind()),
        "kind_raw": h.kind,
        "parameters": params_text(&r.state),
        "file": file,
        "header": {
            "version": h.version,
            "creator_pid": h.creator_pid,
            "total_size": h.total_size,
            "object_offset": h.object_offset,
            "object_size": h.object_size,
            "object_align": h.object_align,
            "params": h.params,
            "peers_offset": h.peers_offset,
            "peer_slots": h.peer_slots,
        },
        "peers": r.peers.iter().map(|p| json!({
            "slot": p.slot,
            "generation": p.generation,
            "pid": p.pid,
            "pidns": p.pidns,
            "since_ns": p.since_ns,
            "fate": fate_json(&p.fate),
            "ends": p.ends,
        })).collect::<Vec<_>>(),
        "ends": ends_json(r),
        "creator_attached": creator_attached(r),
        "mapped_by": mapped_by,
        "state": state_json(&r.state),
        "holds": holds_json(r),
    })
}

/// One `ls` entry as JSON.
pub fn entry_json(e: &Entry, mappers: &Mappers) -> Value {
    match e {
        Entry::Segment(r) => report_json(r, mappers),
        Entry::Broken { name, error } => {
            json!({"name": name, "status": "invalid", "error": error.to_string()})
        }
        Entry::Foreign { name, error } => {
            json!({"name": name, "status": "foreign", "error": error.to_string()})
        }
        Entry::Temp {
            name,
            creator_alive,
        } => json!({"name": name, "status": "temporary", "creator_alive": creator_alive}),
    }
}
