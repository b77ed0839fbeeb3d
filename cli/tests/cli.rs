//! The `shmipc` binary against real segments: made by this process, by
//! forked children that hold them, and by children killed with SIGKILL.
//!
//! Every name comes from an [`Unlinker`] whose prefix is unique to the
//! test, so `ls` and `gc` run with `--prefix` and never see (or collect)
//! anyone else's segments; the names are unlinked when the test ends,
//! also when it fails.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use shmipc::{
    fork, ByteQueue, BytesConfig, Child, Lock, Named, Pool, Queue, RingConfig, Segment, Shared,
    Unlinker,
};

/// Runs the binary with `args`.
fn shmipc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmipc"))
        .args(args)
        .output()
        .expect("run shmipc")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the binary, expects success, returns its output.
fn ok(args: &[&str]) -> String {
    let o = shmipc(args);
    assert!(
        o.status.success(),
        "shmipc {args:?} failed: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs the binary with `--json` output and parses it.
fn json(args: &[&str]) -> Value {
    let text = ok(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("shmipc {args:?}: {e}:\n{text}"))
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm{name}"))
}

/// The prefix every name of `names` starts with.
fn prefix_of(names: &Unlinker) -> String {
    let probe = names.name("probe");
    probe[..probe.len() - "-0-probe".len()].to_owned()
}

/// A pipe: the child writes one byte when it is ready.
struct Ready {
    read: OwnedFd,
    write: OwnedFd,
}

impl Ready {
    fn new() -> Ready {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe to fill.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just opened and are ours.
        unsafe {
            Ready {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        }
    }

    /// In the child: says it is ready.
    fn signal(&self) {
        use std::io::Write;
        let mut f = std::fs::File::from(self.write.try_clone().expect("dup"));
        f.write_all(b"r").expect("write ready");
    }

    /// In the parent: waits for the child's byte.
    fn wait(&self) {
        let mut f = std::fs::File::from(self.read.try_clone().expect("dup"));
        let mut b = [0u8; 1];
        f.read_exact(&mut b).expect("child never became ready");
    }
}

/// Forks a child that runs `setup`, says it is ready, and then sleeps
/// until it is killed (the returned handle kills it when dropped).
fn holder<T>(setup: impl FnOnce() -> T) -> Child {
    let ready = Ready::new();
    let child = fork(|| {
        let _kept = setup();
        ready.signal();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .expect("fork");
    ready.wait();
    child
}

fn kill_and_reap(child: &mut Child) {
    child.kill().expect("kill");
    let status = child
        .join_timeout(Duration::from_secs(10))
        .expect("join")
        .expect("the killed child did not end");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

#[test]
fn gc_removes_the_segment_of_a_sigkilled_creator() {
    let names = Unlinker::new("cli-gc-dead");
    let prefix = prefix_of(&names);
    let name = names.name("lock");
    let n = name.clone();
    // The child creates the lock and holds it (so it has a peer slot); this
    // process never maps it.
    let mut child = holder(move || {
        let lock = Shared::<Lock>::create(&n, ()).expect("create");
        let guard = lock.lock().expect("lock");
        std::mem::forget(guard);
        lock
    });
    let pid = child.pid();
    // Alive: gc keeps it (it is mapped, and its peer is alive).
    let out = ok(&["gc", "--prefix", &prefix, "--ignore-unreadable"]);
    assert!(
        out.contains(&format!("kept {name}: mapped by pid {pid}")),
        "{out}"
    );
    assert!(path(&name).exists());

    let ls = json(&["ls", "--prefix", &prefix, "--json"]);
    assert_eq!(ls["segments"][0]["creator_attached"], true, "{ls}");

    kill_and_reap(&mut child);
    let ls = json(&["ls", "--prefix", &prefix, "--json"]);
    let seg = &ls["segments"][0];
    assert_eq!(seg["name"], name.as_str());
    assert_eq!(seg["creator_attached"], false, "{ls}");
    assert_eq!(seg["header"]["creator_pid"], pid);
    assert_eq!(seg["peers"][0]["pid"], pid);
    assert_eq!(seg["peers"][0]["fate"]["state"], "dead");
    assert_eq!(seg["mapped_by"].as_array().map(Vec::len), Some(0));

    let dry = ok(&[
        "gc",
        "--dry-run",
        "--prefix",
        &prefix,
        "--ignore-unreadable",
    ]);
    assert!(
        dry.contains(&format!("would remove {name}: no process maps it")),
        "{dry}"
    );
    assert!(path(&name).exists(), "--dry-run removed the segment");

    let out = json(&["gc", "--prefix", &prefix, "--ignore-unreadable", "--json"]);
    assert_eq!(out["removed"][0]["name"], name.as_str(), "{out}");
    let reason = out["removed"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("pid {pid}")), "{reason}");
    assert!(
        !path(&name).exists(),
        "gc did not remove the dead creator's segment"
    );
}

#[test]
fn gc_keeps_a_segment_a_live_process_maps() {
    let names = Unlinker::new("cli-gc-mapped");
    let prefix = prefix_of(&names);
    let name = names.name("bytes");
    // Created here and closed at once: no live peer, nobody maps it...
    drop(Segment::create(&name, 4096).expect("create"));
    // ...until a child maps it by hand (as a program without shmipc
    // would) and keeps it mapped: it claims no peer slot, so only
    // /proc/<pid>/maps shows it.
    let p = path(&name);
    let mut child = holder(move || {
        let file = std::fs::File::open(&p).expect("open");
        // SAFETY: a fresh read-only shared mapping of a file we opened; it
        // is never unmapped (the child is killed holding it).
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        addr as usize
    });
    let pid = child.pid();

    let out = json(&["gc", "--prefix", &prefix, "--ignore-unreadable", "--json"]);
    assert_eq!(out["removed"].as_array().map(Vec::len), Some(0), "{out}");
    let kept = out["kept"][0]["reason"].as_str().unwrap_or_default();
    assert!(kept.starts_with(&format!("mapped by pid {pid}")), "{out}");
    assert!(path(&name).exists(), "gc removed a mapped segment");
    let ls = json(&["ls", "--prefix", &prefix, "--json"]);
    assert_eq!(ls["segments"][0]["mapped_by"][0], pid);

    // Once the mapper is gone, the same gc removes it: the mapping was
    // what kept it.
    kill_and_reap(&mut child);
    let out = ok(&["gc", "--prefix", &prefix, "--ignore-unreadable"]);
    assert!(out.contains(&format!("removed {name}")), "{out}");
    assert!(!path(&name).exists());
}

#[test]
fn inspect_shows_a_held_locks_owner() {
    let names = Unlinker::new("cli-lock");
    let name = names.name("lock");
    let lock = Shared::<Lock>::create(&name, ()).expect("create");
    let n = name.clone();
    let mut child = holder(move || {
        let lock = Shared::<Lock>::open(&n).expect("open");
        let guard = lock.lock().expect("lock");
        std::mem::forget(guard);
        lock
    });
    let pid = child.pid();

    let r = json(&["inspect", &name, "--json"]);
    assert_eq!(r["kind"], "Lock");
    let owner = &r["state"]["owner"];
    assert_eq!(owner["pid"], pid, "{r}");
    assert_eq!(owner["fate"]["state"], "alive", "{r}");
    // A forked child is single-threaded: its thread id is its pid.
    assert_eq!(r["state"]["tid"], pid, "{r}");
    assert_eq!(r["state"]["owner_died"], false);
    assert_eq!(r["state"]["unrecoverable"], false);
    let text = ok(&["inspect", &name]);
    assert!(
        text.contains(&format!("(pid {pid}), alive, thread {pid}")),
        "{text}"
    );

    kill_and_reap(&mut child);
    let r = json(&["inspect", &name, "--json"]);
    assert_eq!(r["state"]["owner"]["pid"], pid);
    assert_eq!(r["state"]["owner"]["fate"]["state"], "dead", "{r}");
    drop(lock);
}

#[test]
fn inspect_shows_a_queues_length() {
    let names = Unlinker::new("cli-queue");
    let name = names.name("queue");
    let q = Queue::<u64>::create(&name, RingConfig::new(16)).expect("create");
    for i in 0..3u64 {
        q.try_push(i).expect("push");
    }
    let r = json(&["inspect", &name, "--json"]);
    assert_eq!(r["kind"], "Queue");
    assert_eq!(r["state"]["len"], 3, "{r}");
    assert_eq!(r["state"]["capacity"], 16);
    assert_eq!(r["state"]["item_size"], 8);
    assert_eq!(r["state"]["closed"], false);
    q.try_pop().expect("pop");
    q.close();
    let text = ok(&["inspect", &name]);
    assert!(text.contains("items: 2 of 16 (8 B each), closed"), "{text}");
}

#[test]
fn a_foreign_file_is_listed_only_with_all_and_refused() {
    let names = Unlinker::new("cli-foreign");
    let prefix = prefix_of(&names);
    let name = names.name("truncated");
    let st = Command::new("truncate")
        .args(["-s", "4096"])
        .arg(path(&name))
        .status()
        .expect("run truncate");
    assert!(st.success());

    let ls = json(&["ls", "--prefix", &prefix, "--json"]);
    assert_eq!(ls["segments"].as_array().map(Vec::len), Some(0), "{ls}");
    let all = json(&["ls", "--all", "--prefix", &prefix, "--json"]);
    assert_eq!(all["segments"][0]["name"], name.as_str());
    assert_eq!(all["segments"][0]["status"], "foreign");
    let text = ok(&["ls", "--all", "--prefix", &prefix]);
    assert!(text.contains("foreign (not a shmipc segment)"), "{text}");

    let o = shmipc(&["inspect", &name]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("was not created by shmipc"),
        "{}",
        stderr(&o)
    );

    let o = shmipc(&["rm", &name]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--force removes it anyway"),
        "{}",
        stderr(&o)
    );
    assert!(
        path(&name).exists(),
        "rm removed a foreign file without --force"
    );

    // gc never touches it either.
    let out = json(&["gc", "--prefix", &prefix, "--ignore-unreadable", "--json"]);
    assert_eq!(out["removed"].as_array().map(Vec::len), Some(0), "{out}");
    assert!(path(&name).exists());

    ok(&["rm", "--force", &name]);
    assert!(!path(&name).exists());
}

#[test]
fn a_corrupted_header_is_refused_with_the_librarys_error() {
    let names = Unlinker::new("cli-corrupt");
    let prefix = prefix_of(&names);
    let name = names.name("event");
    drop(Shared::<shmipc::Event>::create(&name, ()).expect("create"));
    // Zero the peer table's slot count (offset 96).
    let mut bytes = std::fs::read(path(&name)).expect("read");
    bytes[96..100].copy_from_slice(&0u32.to_ne_bytes());
    std::fs::write(path(&name), &bytes).expect("write");

    let o = shmipc(&["inspect", &name]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("corrupted") && err.contains("slot count"),
        "{err}"
    );
    let ls = json(&["ls", "--prefix", &prefix, "--json"]);
    assert_eq!(ls["segments"][0]["status"], "invalid", "{ls}");
    let o = shmipc(&["rm", &name]);
    assert!(!o.status.success());
    assert!(path(&name).exists());
    let out = json(&["gc", "--prefix", &prefix, "--ignore-unreadable", "--json"]);
    assert_eq!(out["removed"].as_array().map(Vec::len), Some(0), "{out}");
    ok(&["rm", "--force", &name]);
    assert!(!path(&name).exists());
}

#[test]
fn looking_changes_no_byte() {
    let names = Unlinker::new("cli-readonly");
    let prefix = prefix_of(&names);
    let lock_name = names.name("lock");
    let queue_name = names.name("queue");
    let lock = Shared::<Lock>::create(&lock_name, ()).expect("create");
    let guard = lock.lock().expect("lock");
    let q = Queue::<u32>::create(&queue_name, RingConfig::new(8)).expect("create");
    q.try_push(7).expect("push");
    let before: Vec<Vec<u8>> = [&lock_name, &queue_name]
        .iter()
        .map(|n| std::fs::read(path(n)).expect("read"))
        .collect();

    for n in [&lock_name, &queue_name] {
        ok(&["inspect", n]);
        ok(&["inspect", n, "--json"]);
        ok(&["watch", n, "--count", "1", "--interval", "0.01"]);
    }
    ok(&["ls", "--all", "--prefix", &prefix]);
    ok(&[
        "gc",
        "--dry-run",
        "--prefix",
        &prefix,
        "--ignore-unreadable",
    ]);

    let after: Vec<Vec<u8>> = [&lock_name, &queue_name]
        .iter()
        .map(|n| std::fs::read(path(n)).expect("read"))
        .collect();
    assert!(before == after, "looking changed the segments' bytes");
    drop(guard);
}

#[test]
fn rm_removes_segments_and_names_missing_ones() {
    let names = Unlinker::new("cli-rm");
    let a = names.name("a");
    let b = names.name("b");
    let missing = names.name("missing");
    drop(Shared::<shmipc::Event>::create(&a, ()).expect("create"));
    drop(Shared::<shmipc::Event>::create(&b, ()).expect("create"));
    let o = shmipc(&["rm", &a, &missing, &b, "--json"]);
    assert!(!o.status.success(), "a missing name must fail the command");
    let v: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["removed"], serde_json::json!([a, b]));
    assert_eq!(v["errors"][0]["name"], missing.as_str());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert!(!path(&a).exists() && !path(&b).exists());
}

#[test]
fn watch_refreshes_inspect() {
    let names = Unlinker::new("cli-watch");
    let name = names.name("queue");
    let _q = Queue::<u64>::create(&name, RingConfig::new(4)).expect("create");
    let out = ok(&["watch", &name, "--interval", "0.05", "--count", "3"]);
    assert_eq!(out.matches("items: 0 of 4").count(), 3, "{out}");
    assert_eq!(out.matches("\x1b[2J").count(), 3);
    let lines = ok(&[
        "watch",
        &name,
        "--interval",
        "0.01",
        "--count",
        "2",
        "--json",
    ]);
    let reports: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON report per line"))
        .collect();
    assert_eq!(reports.len(), 2, "{lines}");
    assert!(reports.iter().all(|r| r["state"]["capacity"] == 4));
    let o = shmipc(&["watch", &name, "--interval", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--interval 0"), "{}", stderr(&o));
}

#[test]
fn gc_collects_temporary_files_once_their_creator_is_gone() {
    let names = Unlinker::new("cli-tmp");
    let prefix = format!("/.shmipc-tmp-{}-clitest", std::process::id());
    let name = format!("{prefix}-0");
    names.adopt(&name);
    std::fs::write(path(&name), [0u8; 256]).expect("make the file");
    // A creator still initialising holds its creator lock byte.
    let p = path(&name);
    let mut child = holder(move || {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .expect("open");
        // SAFETY: flock is plain data; zero is valid for every field.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = shmipc::memory::CREATOR_LOCK as libc::off_t;
        fl.l_len = 1;
        // SAFETY: a valid flock for a descriptor we own.
        let rc =
            unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_OFD_SETLK, &fl) };
        assert_eq!(rc, 0, "F_OFD_SETLK");
        f
    });
    let all = json(&["ls", "--all", "--prefix", &prefix, "--json"]);
    assert_eq!(all["segments"][0]["status"], "temporary", "{all}");
    assert_eq!(all["segments"][0]["creator_alive"], true, "{all}");
    let ls = json(&["ls", "--prefix", &prefix, "--json"]);
    assert_eq!(ls["segments"].as_array().map(Vec::len), Some(0), "{ls}");
    let out = ok(&["gc", "--prefix", &prefix, "--ignore-unreadable"]);
    assert!(
        out.contains(&format!(
            "kept {name}: its creator is still initialising it"
        )),
        "{out}"
    );
    assert!(path(&name).exists());

    kill_and_reap(&mut child);
    let out = ok(&["gc", "--prefix", &prefix, "--ignore-unreadable"]);
    assert!(
        out.contains(&format!("removed {name}: a temporary creation file")),
        "{out}"
    );
    assert!(!path(&name).exists());
}

/// Stops (`SIGSTOP`) a child the test forked.
fn stop(child: &Child) {
    // SAFETY: kill(2) on a pid this test forked and has not reaped.
    let r = unsafe { libc::kill(child.pid() as libc::pid_t, libc::SIGSTOP) };
    assert_eq!(r, 0, "SIGSTOP {}", child.pid());
}

/// The holds `inspect --json` reports for `name`.
fn holds(name: &str) -> Value {
    let r = json(&["inspect", name, "--json"]);
    assert_eq!(r["holds"]["complete"], true, "{r}");
    r["holds"].clone()
}

/// The one hold in `h`: a push claim of `position` by `pid`, judged
/// `state`.
fn assert_one_push_claim(h: &Value, position: u64, pid: u32, state: &str) {
    let items = h["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{h}");
    assert_eq!(items[0]["kind"], "push_claim", "{h}");
    assert_eq!(items[0]["position"], position, "{h}");
    assert_eq!(items[0]["holder"]["pid"], pid, "{h}");
    assert_eq!(items[0]["holder"]["fate"]["state"], state, "{h}");
}

/// As `inspect_shows_a_push_claim_and_whether_its_claimant_lives`, for a
/// queue of 56-byte items, whose slot records (128 bytes:
/// sequence number, owner word, item) are twice those of `u64` items: the
/// claim a stopped, then killed, child holds at position 5 is found in its
/// record, and no other.
#[test]
fn inspect_finds_a_push_claim_on_a_queue_of_56_byte_items() {
    let names = Unlinker::new("cli-claim-wide");
    let name = names.name("queue");
    let q = Queue::<[u64; 7]>::create(&name, RingConfig::new(8)).expect("create");
    for i in 0..5 {
        q.try_push([i; 7]).expect("push");
    }
    assert_eq!(q.try_pop().expect("pop"), [0; 7]);
    let n = name.clone();
    let mut child = holder(move || {
        let q = Queue::<[u64; 7]>::open(&n).expect("open");
        assert_eq!(q.claim_push_and_stop().expect("claim"), 5);
        q
    });
    let pid = child.pid();
    stop(&child);
    assert_one_push_claim(&holds(&name), 5, pid, "alive");
    kill_and_reap(&mut child);
    let h = holds(&name);
    assert_eq!(h["items"][0]["position"], 5, "{h}");
    assert_eq!(h["items"][0]["holder"]["fate"]["state"], "dead", "{h}");
    assert_eq!(h["held_by_dead"], 1, "{h}");
    // The items before the claim are intact and come out in order.
    for i in 1..5 {
        assert_eq!(q.try_pop().expect("pop"), [i; 7]);
    }
}

#[test]
fn inspect_shows_a_push_claim_and_whether_its_claimant_lives() {
    let names = Unlinker::new("cli-claim");
    let name = names.name("queue");
    let q = Queue::<u64>::create(&name, RingConfig::new(8)).expect("create");
    q.try_push(1).expect("push");
    let h = holds(&name);
    assert_eq!(h["items"], serde_json::json!([]), "{h}");
    let n = name.clone();
    // The child claims position 1 and stops before publishing it.
    let mut child = holder(move || {
        let q = Queue::<u64>::open(&n).expect("open");
        assert_eq!(q.claim_push_and_stop().expect("claim"), 1);
        q
    });
    let pid = child.pid();
    stop(&child);

    let h = holds(&name);
    assert_one_push_claim(&h, 1, pid, "alive");
    assert_eq!(h["held_by_dead"], 0, "{h}");

    kill_and_reap(&mut child);
    let h = holds(&name);
    let items = h["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{h}");
    assert_eq!(items[0]["holder"]["pid"], pid, "{h}");
    assert_eq!(items[0]["holder"]["fate"]["state"], "dead", "{h}");
    assert_eq!(h["held_by_dead"], 1, "{h}");
    let text = ok(&["inspect", &name]);
    assert!(text.contains("held: 1, by dead processes: 1"), "{text}");
    assert!(
        text.contains("position 1: push claim (not published), by"),
        "{text}"
    );
    assert!(text.contains(&format!("(pid {pid}), dead")), "{text}");
    // A pop claim of this process shows too, held by a live one.
    let pos = q.claim_pop_and_stop().expect("claim pop");
    let h = holds(&name);
    let items = h["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{h}");
    assert_eq!(items[0]["kind"], "pop_claim", "{h}");
    assert_eq!(items[0]["position"], pos, "{h}");
    assert_eq!(items[0]["holder"]["pid"], std::process::id(), "{h}");
    assert_eq!(items[0]["holder"]["fate"]["state"], "alive", "{h}");
    assert_eq!(q.take_claimed(pos).expect("take"), 1);
    assert_eq!(holds(&name)["items"].as_array().map(Vec::len), Some(1));
}

#[test]
fn inspect_shows_a_reservation_and_whether_its_writer_lives() {
    let names = Unlinker::new("cli-reserve");
    let name = names.name("bytes");
    let q = ByteQueue::create(&name, BytesConfig::new(1024, 100)).expect("create");
    q.try_send(b"hello").expect("send");
    let n = name.clone();
    // The child reserves 40 bytes and never commits them.
    let mut child = holder(move || {
        let q = ByteQueue::open(&n).expect("open");
        let g = q.try_reserve(40).expect("reserve");
        std::mem::forget(g);
        q
    });
    let pid = child.pid();
    stop(&child);

    let h = holds(&name);
    let items = h["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{h}");
    assert_eq!(items[0]["kind"], "reserved", "{h}");
    // After the first record: a 16-byte header and "hello" padded to 16.
    assert_eq!(items[0]["position"], 32, "{h}");
    assert_eq!(items[0]["len"], 40, "{h}");
    assert_eq!(items[0]["holder"]["pid"], pid, "{h}");
    assert_eq!(items[0]["holder"]["fate"]["state"], "alive", "{h}");

    kill_and_reap(&mut child);
    let h = holds(&name);
    let items = h["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{h}");
    assert_eq!(items[0]["holder"]["fate"]["state"], "dead", "{h}");
    assert_eq!(h["held_by_dead"], 1, "{h}");

    // A message this process is reading shows as held, by a live reader.
    let g = q.try_recv().expect("recv");
    assert_eq!(g.len(), 5);
    let h = holds(&name);
    let items = h["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{h}");
    assert_eq!(items[0]["kind"], "reading", "{h}");
    assert_eq!(items[0]["position"], 0, "{h}");
    assert_eq!(items[0]["holder"]["pid"], std::process::id(), "{h}");
    assert_eq!(items[0]["holder"]["fate"]["state"], "alive", "{h}");
    drop(g);
    let text = ok(&["inspect", &name]);
    assert!(text.contains("held: 1, by dead processes: 1"), "{text}");
    assert!(
        text.contains("position 32: reserved (not committed), 40 B, by"),
        "{text}"
    );
}

/// The pool status `inspect --json` reports for `name`, once every worker
/// has recorded its peer token (workers do it as they start).
fn pool_workers(name: &str) -> Vec<Value> {
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = json(&["inspect", name, "--json"]);
        assert_eq!(r["kind"], "PoolStatus", "{r}");
        let workers = r["state"]["workers"].as_array().expect("workers").clone();
        if workers.iter().all(|w| !w["peer"].is_null()) {
            return workers;
        }
        assert!(
            std::time::Instant::now() < until,
            "workers never registered: {r}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pids_of(workers: &[Value]) -> Vec<u64> {
    let mut pids: Vec<u64> = workers
        .iter()
        .map(|w| w["pid"].as_u64().expect("pid"))
        .collect();
    pids.sort_unstable();
    pids
}

#[test]
fn a_pools_status_segment_lists_its_workers_and_their_replacements() {
    let names = Unlinker::new("cli-pool");
    let prefix = prefix_of(&names);
    let name = names.name("status");
    let pool = Pool::builder(3)
        .function(|x: &[u8]| x.to_vec())
        .status_name(&name)
        .build()
        .expect("pool");
    let ls = json(&["ls", "--prefix", &prefix, "--json"]);
    let entry = ls["segments"]
        .as_array()
        .expect("ls")
        .iter()
        .find(|e| e["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} not listed: {ls}"))
        .clone();
    assert_eq!(entry["kind"], "PoolStatus", "{entry}");

    let workers = pool_workers(&name);
    assert_eq!(workers.len(), 3);
    let mut expected: Vec<u64> = pool.pids().into_iter().map(u64::from).collect();
    expected.sort_unstable();
    assert_eq!(pids_of(&workers), expected);
    for w in &workers {
        assert_eq!(w["peer"]["pid"], w["pid"], "{w}");
        assert_eq!(w["peer"]["fate"]["state"], "alive", "{w}");
        assert_eq!(w["starts"], 1, "{w}");
    }
    assert_eq!(pool.apply(b"x").expect("apply"), b"x");

    // Kill one; the pool replaces it, and the status shows the new pid.
    let victim = pool.pids()[0];
    // SAFETY: kill(2) on a worker of this test's pool.
    let r = unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0, "SIGKILL {victim}");
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while pool.restarts() == 0 {
        assert!(
            std::time::Instant::now() < until,
            "the worker was never replaced"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let workers = loop {
        let w = pool_workers(&name);
        if !pids_of(&w).contains(&u64::from(victim)) {
            break w;
        }
        assert!(
            std::time::Instant::now() < until,
            "status still names {victim}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut expected: Vec<u64> = pool.pids().into_iter().map(u64::from).collect();
    expected.sort_unstable();
    assert_eq!(pids_of(&workers), expected);
    assert!(
        workers
            .iter()
            .all(|w| w["peer"]["fate"]["state"] == "alive"),
        "{workers:?}"
    );
    assert_eq!(
        workers.iter().filter(|w| w["starts"] == 2).count(),
        1,
        "{workers:?}"
    );
    let text = ok(&["inspect", &name]);
    assert!(text.contains("PoolStatus (3 workers)"), "{text}");
    assert!(text.contains("workers: 3, dead: 0"), "{text}");

    drop(pool);
    assert!(!path(&name).exists(), "the pool unlinks its status segment");
}

/// The pids `inspect --json` lists for one end of lane `lane`.
fn end_pids(r: &Value, lane: usize, end: &str, fate: &str) -> Vec<u64> {
    let mut pids: Vec<u64> = r["ends"][lane][end][fate]
        .as_array()
        .unwrap_or_else(|| panic!("no ends[{lane}].{end}.{fate} in {r}"))
        .iter()
        .filter_map(|h| h["pid"].as_u64())
        .collect();
    pids.sort_unstable();
    pids
}

/// Like [`holder`], but `setup` runs in a child forked before the caller
/// makes anything (so the child inherits no handle of the caller's):
/// `create` runs in the parent while the child retries `setup` until it
/// succeeds (for at most 10 s).
fn late_holder<T, C, E: std::fmt::Debug>(
    create: impl FnOnce() -> C,
    setup: impl Fn() -> Result<T, E>,
) -> (C, Child) {
    let ready = Ready::new();
    let child = fork(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let _kept = loop {
            match setup() {
                Ok(t) => break t,
                Err(e) if std::time::Instant::now() > deadline => panic!("setup: {e:?}"),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        ready.signal();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    })
    .expect("fork");
    let made = create();
    ready.wait();
    (made, child)
}

#[test]
fn inspect_shows_a_queues_senders_and_receivers_and_whether_they_live() {
    let names = Unlinker::new("cli-ends");
    let name = names.name("queue");
    let q = Queue::<u64>::create(&name, RingConfig::new(8)).expect("create");
    // Two senders, forked before this process records its receiving end
    // (a fork copies a parent's recorded ends: they would hold ours too).
    let sender = |n: String| {
        holder(move || {
            let q = Queue::<u64>::open(&n).expect("open");
            q.try_push(7).expect("push");
            q
        })
    };
    let kept = sender(name.clone());
    let mut killed = sender(name.clone());
    let (kept_pid, killed_pid) = (u64::from(kept.pid()), u64::from(killed.pid()));
    // This process receives (a receive records the receiving end).
    assert_eq!(q.try_pop().expect("pop"), 7);
    let me = u64::from(std::process::id());

    let r = json(&["inspect", &name, "--json"]);
    let mut both = vec![kept_pid, killed_pid];
    both.sort_unstable();
    assert_eq!(end_pids(&r, 0, "senders", "alive"), both, "{r}");
    assert_eq!(r["ends"][0]["senders"]["live_handles"], 2, "{r}");
    assert_eq!(end_pids(&r, 0, "receivers", "alive"), [me], "{r}");

    kill_and_reap(&mut killed);
    let r = json(&["inspect", &name, "--json"]);
    assert_eq!(end_pids(&r, 0, "senders", "alive"), [kept_pid], "{r}");
    assert_eq!(end_pids(&r, 0, "senders", "dead"), [killed_pid], "{r}");
    assert_eq!(r["ends"][0]["senders"]["live_handles"], 1, "{r}");
    assert_eq!(end_pids(&r, 0, "receivers", "alive"), [me], "{r}");
    let text = ok(&["inspect", &name]);
    assert!(
        text.contains(&format!("senders: 1 handle in pid {kept_pid}")),
        "{text}"
    );
    assert!(text.contains(&format!("dead: pid {killed_pid}")), "{text}");
    assert!(
        text.contains(&format!("receivers: 1 handle in pid {me}")),
        "{text}"
    );
    if std::env::var_os("SHMIPC_SHOW").is_some() {
        eprintln!("{text}");
    }
    drop(kept);
    drop(q);
}

#[test]
fn inspect_shows_each_pipe_directions_ends() {
    let names = Unlinker::new("cli-pipe-ends");
    let name = names.name("pipe");
    let n = name.clone();
    let (a, mut b) = late_holder(
        || shmipc::Pipe::create(&name, BytesConfig::new(1024, 64)).expect("create"),
        move || shmipc::Pipe::open(&n),
    );
    let (me, them) = (u64::from(std::process::id()), u64::from(b.pid()));
    let r = json(&["inspect", &name, "--json"]);
    // Lane 0 carries A's sends to B, lane 1 B's sends to A.
    assert_eq!(end_pids(&r, 0, "senders", "alive"), [me], "{r}");
    assert_eq!(end_pids(&r, 0, "receivers", "alive"), [them], "{r}");
    assert_eq!(end_pids(&r, 1, "senders", "alive"), [them], "{r}");
    assert_eq!(end_pids(&r, 1, "receivers", "alive"), [me], "{r}");
    // Its end B killed: both of its lanes' records name it dead.
    kill_and_reap(&mut b);
    let r = json(&["inspect", &name, "--json"]);
    assert_eq!(end_pids(&r, 0, "receivers", "dead"), [them], "{r}");
    assert_eq!(
        end_pids(&r, 0, "receivers", "alive"),
        Vec::<u64>::new(),
        "{r}"
    );
    assert_eq!(end_pids(&r, 1, "senders", "dead"), [them], "{r}");
    let text = ok(&["inspect", &name]);
    assert!(text.contains("  A to B receivers: dead: pid"), "{text}");
    drop(a);
}

/// Runs the binary with `args`, killing it (a process this test started)
/// if it has not ended within `limit`; `None` then.
fn shmipc_within(args: &[&str], limit: Duration) -> Option<Output> {
    let child = Command::new(env!("CARGO_BIN_EXE_shmipc"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shmipc");
    let pid = child.id() as libc::pid_t;
    // Read the output while it runs (a full pipe would stall the tool).
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().expect("output"));
    });
    let out = rx.recv_timeout(limit).ok();
    if out.is_none() {
        // SAFETY: kill(2) of the tool this test started, not yet reaped
        // (the reader thread reaps it after this).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    reader.join().expect("reader");
    out
}

fn read_u64_at(name: &str, offset: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    std::fs::File::open(path(name))
        .expect("open")
        .read_exact_at(&mut b, offset)
        .expect("read");
    u64::from_ne_bytes(b)
}

/// Hostile bytes in the peer table: while a sender lives, another process
/// writes random values into every word of every peer slot (generations,
/// pids, namespaces, arrival times and the ends counts) and into the
/// queue's `ends` word, as fast as it can. `shmipc inspect` (text and
/// JSON) must still answer, successfully, within 10 s each time, and its
/// JSON must parse with an `ends` entry; once the writes stop it answers
/// as well. Checked that it can fail: with `Peer::handles` made to panic
/// on a count above 200 (a local edit of inspect.rs), the tool exits with
/// a panic in the first rounds.
#[test]
fn inspect_answers_with_garbage_in_the_peer_table() {
    const PEERS_OFFSET: u64 = 88;
    const PEER_SLOTS: u64 = 96;
    const OBJECT_OFFSET: u64 = 32;
    const MPMC_ENDS_AT: u64 = 72;
    let names = Unlinker::new("cli-garbage-peers");
    let name = names.name("queue");
    let q = Queue::<u64>::create(&name, RingConfig::new(8)).expect("create");
    let n = name.clone();
    let mut sender = holder(move || {
        let q = Queue::<u64>::open(&n).expect("open");
        q.try_push(7).expect("push");
        q
    });
    assert_eq!(q.try_pop().expect("pop"), 7);
    let table = read_u64_at(&name, PEERS_OFFSET);
    let slots = read_u64_at(&name, PEER_SLOTS);
    let ends = read_u64_at(&name, OBJECT_OFFSET) + MPMC_ENDS_AT;
    assert!(slots > 0 && slots <= 4094, "the header says {slots} slots");
    let n = name.clone();
    let mut hostile = fork(move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path(&n))
            .expect("open for writing");
        let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
        let until = std::time::Instant::now() + Duration::from_secs(4);
        while std::time::Instant::now() < until {
            for at in (0..slots * 4).map(|w| table + 8 * w).chain([ends]) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Now and then a count of 255 or a word of all ones.
                let v = match x % 16 {
                    0 => u64::MAX,
                    1 => 0xff << (8 * (x >> 8 & 7)),
                    _ => x,
                };
                let _ = f.write_at(&v.to_ne_bytes(), at);
            }
        }
        0
    })
    .expect("fork");
    let limit = Duration::from_secs(10);
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(3) {
        for args in [&["inspect", &name][..], &["inspect", &name, "--json"][..]] {
            let o = shmipc_within(args, limit)
                .unwrap_or_else(|| panic!("shmipc {args:?} did not answer within {limit:?}"));
            assert!(
                o.status.success(),
                "shmipc {args:?} failed under garbage: {}\n{}",
                stdout(&o),
                stderr(&o)
            );
            if args.len() == 3 {
                let text = stdout(&o);
                let r: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("shmipc {args:?}: {e}:\n{text}"));
                assert!(r["ends"][0]["senders"].is_object(), "{r}");
            }
        }
        rounds += 1;
    }
    assert!(rounds > 0);
    let status = hostile
        .join_timeout(Duration::from_secs(30))
        .expect("join")
        .expect("the hostile writer did not end");
    assert!(status.success(), "{status:?}");
    ok(&["inspect", &name]);
    json(&["inspect", &name, "--json"]);
    kill_and_reap(&mut sender);
    drop(q);
}

/// A sender that lives in another pid namespace (a container) is pid 1
/// there, and the peer table records the pid as it sees itself. The
/// senders line must not pass that number off as a process of this
/// namespace: it either says the pid is another namespace's, or names the
/// sender itself (it runs this test's program, so its `comm` is ours).
/// Before the fix the line read "1 handle in pid 1 (<this namespace's pid
/// 1>)": the tool looked the number up in its own `/proc`, and the JSON
/// gave `alive: [1]` with no namespace, so a script that acted on it
/// (killed it) hit this namespace's init. The JSON must say the pid is
/// another namespace's too.
#[test]
fn inspect_does_not_pass_off_a_sender_in_another_pid_namespace_as_a_local_process() {
    let names = Unlinker::new("cli-ends-ns");
    let name = names.name("queue");
    let q = Queue::<u64>::create(&name, RingConfig::new(8)).expect("create");
    let outer = Shared::<shmipc::AtomicU32>::anon(0).expect("anon");
    let ready = Ready::new();
    let n = name.clone();
    let (outer_ref, ready_ref) = (&outer, &ready);
    let mut middle = fork(move || {
        // SAFETY: unshare(CLONE_NEWPID) only changes the namespace of the
        // children made from now on.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return 77;
        }
        // SAFETY: this process has one thread; the grandchild ends in
        // _exit or is killed.
        match unsafe { libc::fork() } {
            -1 => 2,
            0 => {
                let tx = Queue::<u64>::open(&n).expect("open");
                tx.try_push(7).expect("push");
                ready_ref.signal();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            g => {
                outer_ref.store(g as u32, std::sync::atomic::Ordering::SeqCst);
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(g, &mut status, 0) };
                0
            }
        }
    })
    .expect("fork");
    ready.wait();
    let g = outer.load(std::sync::atomic::Ordering::SeqCst);
    assert_ne!(g, 0);
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // SAFETY: kill(2) of the grandchild this test forked (its
            // parent, our child, has not reaped it: it waits for it).
            unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
        }
    }
    let guard = KillOnDrop(g);
    assert_eq!(q.try_pop().expect("pop"), 7);
    let text = ok(&["inspect", &name]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("senders:"))
        .unwrap_or_else(|| panic!("no senders line:\n{text}"))
        .to_owned();
    let own_comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
    let names_itself = line.contains(&format!("({})", own_comm.trim()));
    let says_namespace = line.contains("ns ") || line.contains("namespace");
    let by_outer_pid = line.contains(&format!("pid {g}"));
    let r = json(&["inspect", &name, "--json"]);
    let holder = &r["ends"][0]["senders"]["alive"][0];
    assert_eq!(holder["pid"], 1, "{r}");
    assert_eq!(holder["this_pid_namespace"], false, "{r}");
    drop(guard);
    assert_eq!(join_code(&mut middle), 0);
    assert!(
        names_itself || says_namespace || by_outer_pid,
        "the sender (outer pid {g}, pid 1 in its namespace) is named as: {line}"
    );
    drop(q);
}

fn join_code(child: &mut Child) -> i32 {
    child
        .join_timeout(Duration::from_secs(10))
        .expect("join")
        .expect("the child did not end")
        .code()
        .unwrap_or(-1)
}
