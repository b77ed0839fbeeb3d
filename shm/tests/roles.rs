//! Roles held by one process at a time: SPSC producer and consumer, pipe
//! ends. Claimed across processes, given back on drop, taken over from a
//! holder that was killed.

mod common;

use std::time::Duration;

use common::{fork_parked, join};
use shmipc::{
    fork, BytesConfig, Error, Event, ExitStatus, Named, Pipe, RingConfig, Shared, Side, SpscQueue,
};

fn role_taken(r: Result<impl std::fmt::Debug, Error>) -> (&'static str, u32, String) {
    match r {
        Err(e @ Error::RoleTaken { role, pid, .. }) => (role, pid, e.to_string()),
        other => panic!("expected RoleTaken, got {other:?}"),
    }
}

#[test]
fn a_second_producer_is_refused_until_the_first_drops() {
    let (_names, name) = common::segment_name("roles-second", "q");
    let q = SpscQueue::<u64>::create(&name, RingConfig::new(16)).unwrap();
    let me = std::process::id();

    let mut tx = q.take_producer().unwrap();
    assert_eq!(q.producer_pid(), Some(me));
    let (role, pid, msg) = role_taken(SpscQueue::<u64>::producer(&name));
    assert_eq!((role, pid), ("producer", me));
    assert!(msg.contains("producer") && msg.contains(&name), "{msg}");
    assert!(msg.contains("this process"), "{msg}");
    // The other role is free.
    let mut rx = SpscQueue::<u64>::consumer(&name).unwrap();
    assert_eq!(role_taken(q.take_consumer()).0, "consumer");

    tx.push(7).unwrap();
    drop(tx);
    assert_eq!(q.producer_pid(), None, "dropping gives the role back");
    let mut tx = SpscQueue::<u64>::producer(&name).unwrap();
    // The new producer carries on where the first stopped.
    tx.push(8).unwrap();
    assert_eq!(rx.pop(), Ok(7));
    assert_eq!(rx.pop(), Ok(8));
}

#[test]
fn a_role_held_by_another_process_is_refused_with_its_pid() {
    let (_names, [name, held_n, release_n]) =
        common::segment_names("roles-other", ["q", "held", "release"]);
    let q = SpscQueue::<u32>::create(&name, RingConfig::new(16)).unwrap();
    let held = Shared::<Event>::create(&held_n, ()).unwrap();
    let release = Shared::<Event>::create(&release_n, ()).unwrap();
    let mut child = fork(|| {
        let Ok(mut tx) = SpscQueue::<u32>::producer(&name) else {
            return 1;
        };
        tx.push(42).unwrap();
        held.set();
        if !release.wait_timeout(Duration::from_secs(30)) {
            return 2;
        }
        drop(tx);
        0
    })
    .unwrap();
    assert!(held.wait_timeout(Duration::from_secs(30)));
    let (role, pid, msg) = role_taken(q.take_producer());
    assert_eq!((role, pid), ("producer", child.pid()));
    assert!(msg.contains(&child.pid().to_string()), "{msg}");
    release.set();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    let _tx = q
        .take_producer()
        .expect("released when the child dropped it");
    assert_eq!(q.take_consumer().unwrap().pop(), Ok(42));
}

#[test]
fn a_role_whose_holder_was_killed_can_be_claimed_again() {
    let (_names, name) = common::segment_name("roles-killed", "q");
    let q = SpscQueue::<u64>::create(&name, RingConfig::new(16)).unwrap();
    let mut child = fork_parked(|| SpscQueue::<u64>::consumer(&name).unwrap());
    assert_eq!(role_taken(q.take_consumer()).1, child.pid());
    child.kill().unwrap();
    assert_eq!(join(&mut child).signal(), Some(libc::SIGKILL));
    // The dead (and reaped) holder's claim is taken over.
    let mut rx = q.take_consumer().expect("a dead holder's role is free");
    assert_eq!(q.consumer_pid(), Some(std::process::id()));
    let mut tx = q.take_producer().unwrap();
    tx.push(9).unwrap();
    assert_eq!(rx.pop(), Ok(9));
}

#[test]
fn a_role_whose_holder_is_a_zombie_can_be_claimed_again() {
    let (_names, name) = common::segment_name("roles-zombie", "q");
    let q = SpscQueue::<u64>::create(&name, RingConfig::new(16)).unwrap();
    let mut child = fork_parked(|| SpscQueue::<u64>::producer(&name).unwrap());
    child.kill().unwrap();
    // Killed, not yet reaped: a zombie, which can never use its role.
    let pid = child.pid() as libc::pid_t;
    assert!(common::eventually(Duration::from_secs(30), || {
        common::proc_state(pid) == Some('Z')
    }));
    let _tx = q.take_producer().expect("a zombie holder's role is free");
    assert_eq!(q.producer_pid(), Some(std::process::id()));
    assert_eq!(join(&mut child).signal(), Some(libc::SIGKILL));
}

#[test]
fn a_third_pipe_end_is_refused() {
    let (_names, name) = common::segment_name("roles-pipe", "p");
    let a = Pipe::create(&name, BytesConfig::new(256, 64)).unwrap();
    assert_eq!(a.side(), Side::A);
    let b = Pipe::open(&name).unwrap();
    assert_eq!(b.side(), Side::B);
    let (role, pid, _) = role_taken(Pipe::open(&name));
    assert_eq!((role, pid), ("pipe end B", std::process::id()));
    let (role, _, _) = role_taken(Pipe::open_end(&name, Side::A, &shmipc::Options::new()));
    assert_eq!(role, "pipe end A");

    // In another process too; then B is given back and claimed there.
    drop(b);
    let mut child = fork(|| {
        let Ok(b) = Pipe::open(&name) else {
            return 1;
        };
        match b.recv_vec_timeout(Duration::from_secs(30)) {
            Ok(m) if m == b"hi" => 0,
            _ => 2,
        }
    })
    .unwrap();
    a.send(b"hi").unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    // The child's end dropped when its closure returned: B is free again.
    let _b = Pipe::open(&name).unwrap();
}

#[test]
fn open_or_create_makes_the_first_comer_end_a() {
    let (_names, name) = common::segment_name("roles-pipe-ooc", "p");
    let config = BytesConfig::new(256, 64);
    let (first, created) = Pipe::open_or_create(&name, config).unwrap();
    assert!(created);
    assert_eq!(first.side(), Side::A);
    let (second, created) = Pipe::open_or_create(&name, config).unwrap();
    assert!(!created);
    assert_eq!(second.side(), Side::B);
    assert!(matches!(
        Pipe::open_or_create(&name, config),
        Err(Error::RoleTaken { .. })
    ));
}
