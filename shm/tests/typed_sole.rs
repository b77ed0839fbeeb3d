//! Sole handles of a typed queue across real processes
//! (`TypedQueue::sole_sender` / `sole_receiver`): a sole sender in a child
//! feeding a sole receiver in the parent, sole and shared handles mixed
//! (with `qsize` right throughout), a side held by one process refusing or
//! making wait another, a forked copy of a handle refused, hostile bytes
//! decoded as an error, and a sole receiver killed inside a receive (its
//! message is delivered again).

mod common;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmipc::{
    fork, ByteQueue, BytesConfig, Error, Event, ExitStatus, MessageError, Named, RecvError,
    SendError, Shared, SoleError, TypedQueue,
};

use common::{join, kill_after};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Job {
    id: u64,
    owner: String,
    sizes: Vec<u32>,
}

fn job(id: u64) -> Job {
    Job {
        id,
        owner: format!("worker-{id}-{}", "x".repeat((id % 11) as usize)),
        sizes: (0..(id % 7) as u32).map(|i| i * 1000).collect(),
    }
}

/// A small ring (a few dozen jobs), so that a long run wraps it many
/// times and the sender sleeps on a full ring.
fn config() -> BytesConfig {
    BytesConfig::new(2048, 128)
}

#[test]
fn a_sole_sender_in_a_child_feeds_a_sole_receiver_in_the_parent_in_order() {
    let (_names, name) = common::segment_name("typed-sole", "jobs");
    let q = TypedQueue::<Job>::create(&name, config()).unwrap();
    const N: u64 = 5000;
    let child_name = name.clone();
    let mut child = fork(move || {
        // Opened by name, as an unrelated process would.
        let q = TypedQueue::<Job>::open(&child_name).expect("open");
        let Ok(mut tx) = q.sole_sender() else {
            return 2;
        };
        for id in 0..N {
            // The three forms, by both names.
            let r = match id % 4 {
                0 => tx.put(&job(id)),
                1 => tx.push(&job(id)),
                2 => tx.put_timeout(&job(id), Duration::from_secs(30)),
                _ => tx.push_timeout(&job(id), Duration::MAX),
            };
            if r.is_err() {
                return 1;
            }
        }
        0
    })
    .unwrap();
    let mut rx = q.sole_receiver().unwrap();
    for id in 0..N {
        let got = match id % 3 {
            0 => rx.get(),
            1 => rx.pop_timeout(Duration::from_secs(30)),
            _ => rx.get_timeout(Duration::from_secs(30)),
        };
        assert_eq!(got.unwrap(), job(id), "message {id}");
    }
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    // Counted on both sides: nothing is left.
    assert_eq!(q.qsize(), 0);
    // The child is gone with its end: end of stream, as for shared gets
    // (the `_nowait` form says so too).
    assert!(rx.get_nowait().unwrap_err().is_disconnected());
    assert!(rx
        .get_timeout(Duration::from_secs(30))
        .unwrap_err()
        .is_disconnected());
}

#[test]
fn sole_and_shared_handles_mix_and_qsize_counts_both() {
    let (_names, name) = common::segment_name("typed-sole-mix", "jobs");
    let q = TypedQueue::<Job>::create(&name, config()).unwrap();
    for id in 0..3 {
        q.put(&job(id)).unwrap();
    }
    assert_eq!(q.qsize(), 3);
    // A child: four by a sole sender, then one taken by a shared get.
    let child_name = name.clone();
    let mut child = fork(move || {
        let q = TypedQueue::<Job>::open(&child_name).expect("open");
        {
            let mut tx = q.sole_sender().expect("sole sender");
            for id in 10..14 {
                if tx.put_nowait(&job(id)).is_err() {
                    return 1;
                }
            }
        }
        match q.get_nowait() {
            Ok(j) if j == job(0) => 0,
            _ => 2,
        }
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(q.qsize(), 3 + 4 - 1);
    {
        let mut rx = q.sole_receiver().unwrap();
        assert_eq!(rx.get_nowait().unwrap(), job(1));
        assert_eq!(rx.try_pop().unwrap(), job(2));
        assert_eq!(q.qsize(), 4);
        // A shared send meanwhile (the other side is free).
        q.push(&job(20)).unwrap();
        assert_eq!(q.qsize(), 5);
    }
    assert_eq!(q.get().unwrap(), job(10));
    assert_eq!(q.qsize(), 4);
    let mut rx = q.sole_receiver().unwrap();
    let mut tx = q.sole_sender().unwrap();
    tx.try_push(&job(21)).unwrap();
    assert_eq!(q.qsize(), 5);
    for id in [11, 12, 13, 20, 21] {
        assert_eq!(rx.pop().unwrap(), job(id));
    }
    assert_eq!(q.qsize(), 0);
    assert!(q.empty());
}

#[test]
fn a_held_side_refuses_other_processes_and_makes_them_wait() {
    let (_names, name) = common::segment_name("typed-sole-held", "jobs");
    let q = TypedQueue::<Job>::create(&name, config()).unwrap();
    let mut tx = q.sole_sender().unwrap();
    let rx = q.sole_receiver().unwrap();
    // The same thread cannot take a side twice.
    let e = q.try_sole_sender().unwrap_err();
    assert!(
        matches!(
            e,
            Error::SideHeld {
                reason: SoleError::Deadlock,
                side: "senders'",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains(&name), "{e}");
    assert!(e.to_string().contains("already holds"), "{e}");
    // What another process gets meanwhile, as exit codes.
    let report = TypedQueue::<String>::anon(BytesConfig::for_max_message(1024).unwrap()).unwrap();
    let go = Shared::<Event>::anon(()).unwrap();
    let child_name = name.clone();
    let (report_c, go_c) = (&report, &go);
    let mut child = fork(move || {
        let q = TypedQueue::<Job>::open(&child_name).expect("open");
        let say = |s: String| report_c.put(&s).is_ok();
        let held = |e: &Error| {
            matches!(
                e,
                Error::SideHeld {
                    reason: SoleError::Held,
                    ..
                }
            )
        };
        let e = q.try_sole_sender().unwrap_err();
        let e2 = q
            .sole_sender_timeout(Duration::from_millis(20))
            .unwrap_err();
        let e3 = q.try_sole_receiver().unwrap_err();
        let e4 = q.sole_receiver_timeout(Duration::ZERO).unwrap_err();
        if !(held(&e) && held(&e2) && held(&e3) && held(&e4)) {
            return 1;
        }
        // Shared calls see the side taken: full, empty.
        let full = q.put_nowait(&job(99)).unwrap_err();
        let empty = q.try_pop().unwrap_err();
        if !(full.is_empty_or_full() && empty.is_empty_or_full()) {
            return 2;
        }
        if !(say(e.to_string()) && say(e3.to_string())) {
            return 3;
        }
        go_c.set();
        // Waits until the parent drops its sole sender.
        let Ok(mut tx) = q.sole_sender() else {
            return 4;
        };
        i32::from(tx.put(&job(2)).is_err()) * 5
    })
    .unwrap();
    let e = report.get_timeout(Duration::from_secs(60)).unwrap();
    assert!(e.contains(&name) && e.contains("senders'"), "{e}");
    assert!(e.contains("held by another handle"), "{e}");
    let e = report.get_timeout(Duration::from_secs(60)).unwrap();
    assert!(e.contains(&name) && e.contains("receivers'"), "{e}");
    assert!(go.wait_timeout(Duration::from_secs(60)));
    tx.put(&job(1)).unwrap();
    drop(tx);
    // The child's send came after ours: it had to wait for the side.
    let mut rx = rx;
    assert_eq!(rx.get_timeout(Duration::from_secs(60)).unwrap(), job(1));
    assert_eq!(rx.get_timeout(Duration::from_secs(60)).unwrap(), job(2));
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn a_forked_copy_of_a_sole_handle_is_refused_and_touches_nothing() {
    let q = TypedQueue::<Job>::anon(config()).unwrap();
    let mut tx = q.sole_sender().unwrap();
    let mut rx = q.sole_receiver().unwrap();
    tx.put(&job(1)).unwrap();
    let (txc, rxc) = (&mut tx, &mut rx);
    let mut child = fork(move || {
        // The copies name the parent's locks: refused, nothing sent or
        // taken.
        let sent = txc.put(&job(2));
        let got = rxc.get_nowait();
        let corrupted_send = matches!(
            sent,
            Err(MessageError::Send {
                error: SendError::Corrupted,
                ..
            })
        );
        let corrupted_recv = matches!(
            got,
            Err(MessageError::Recv {
                error: RecvError::Corrupted,
                ..
            })
        );
        i32::from(!(corrupted_send && corrupted_recv))
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(q.qsize(), 1);
    assert_eq!(rx.get_nowait().unwrap(), job(1));
    assert!(rx.get_nowait().unwrap_err().is_empty_or_full());
}

#[test]
fn hostile_bytes_are_decode_errors_naming_the_type_for_a_sole_receiver() {
    let (_names, name) = common::segment_name("typed-sole-hostile", "q");
    let q = TypedQueue::<Job>::create(&name, config()).unwrap();
    let hostile: Vec<Vec<u8>> = vec![
        vec![],                                   // nothing at all
        vec![0xff; 12],                           // a varint that never ends
        vec![1, 200, 1, b'a'],                    // a string longer than the message
        vec![1, 2, 0xc3, 0x28, 0],                // invalid UTF-8
        vec![1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f], // a huge Vec length
    ];
    let mut child = {
        let hostile = hostile.clone();
        let name = name.clone();
        fork(move || {
            // A peer that writes raw bytes into the typed queue.
            let raw = ByteQueue::open(&name).expect("open raw");
            i32::from(!hostile.iter().all(|m| raw.send(m).is_ok()))
        })
        .unwrap()
    };
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    let mut tx = q.sole_sender().unwrap();
    tx.put(&job(1)).unwrap();
    let mut rx = q.sole_receiver().unwrap();
    for (i, m) in hostile.iter().enumerate() {
        common::expect_decode_error(
            rx.get_timeout(Duration::from_secs(5)),
            &name,
            "typed_sole::Job",
            i,
            m,
        );
    }
    // The queue goes on: the good message behind the hostile ones arrives.
    assert_eq!(rx.get().unwrap(), job(1));
    assert!(rx.try_pop().unwrap_err().is_empty_or_full());
}

/// A sole receiver killed between marking its message taken and moving
/// the read position past it (the core's fault hook parks it there): the
/// message was not received, and the parent's sole receiver gets it whole
/// (at least once, as the docs say).
#[test]
fn a_sole_receiver_killed_inside_a_receive_leaves_the_message_to_the_next() {
    let (_names, name) = common::segment_name("typed-sole-kill", "jobs");
    let q = TypedQueue::<Job>::create(&name, config()).unwrap();
    {
        let mut tx = q.sole_sender().unwrap();
        for id in 0..3 {
            tx.put(&job(id)).unwrap();
        }
    }
    let ready = Shared::<Event>::anon(()).unwrap();
    let ready_c = &ready;
    let child_name = name.clone();
    kill_after(&ready, move || {
        let q = TypedQueue::<Job>::open(&child_name).expect("open");
        let mut rx = q.as_bytes().sole_receiver().expect("sole receiver");
        let mut buf = [0u8; 128];
        let _ = rx.try_recv_into_pausing(&mut buf, || {
            ready_c.set();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    });
    // Taking the side over waits out an owner-check interval.
    let mut rx = q.sole_receiver().unwrap();
    for id in 0..3 {
        assert_eq!(rx.get_timeout(Duration::from_secs(30)).unwrap(), job(id));
    }
    assert!(rx.try_pop().unwrap_err().is_empty_or_full());
}
