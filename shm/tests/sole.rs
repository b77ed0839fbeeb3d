//! Sole handles of a byte queue across processes (`shmipc_core::bytes`,
//! "sole handles"): a sole sender feeding shared receivers in other
//! processes, and sole holders SIGKILLed at the worst instants, after
//! which the next sender or receiver (sole or shared) takes the side over:
//! nothing acknowledged is lost, nothing torn, nothing `Corrupted`.
//!
//! The kills land exactly where the test wants them: the hidden
//! `fault-injection` hooks (`try_send_pausing`, `try_recv_into_pausing`)
//! park the child between two stores, where it is killed.

mod common;

use std::time::Duration;

use common::{join, kill_after, Rng};
use shmipc::sync::{AtomicU64, Ordering};
use shmipc::{fork, ByteQueue, BytesConfig, Event, ExitStatus, Named, RecvError, Shared};

/// A message that carries its own check: its id, then bytes derived from
/// the id and the length.
fn make(id: u64, len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len.max(8)];
    m[..8].copy_from_slice(&id.to_le_bytes());
    for (i, b) in m.iter_mut().enumerate().skip(8) {
        *b = (id as usize).wrapping_mul(31).wrapping_add(i * 7) as u8;
    }
    m
}

/// The id of a whole message; fails the test on a torn one.
fn check(m: &[u8]) -> u64 {
    let id = u64::from_le_bytes(m[..8].try_into().unwrap());
    assert_eq!(m, make(id, m.len()), "torn or corrupted message {id}");
    id
}

fn parked_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_sole_sender_feeds_shared_receivers_in_other_processes() {
    let q = ByteQueue::anon(BytesConfig::new(4096, 200)).unwrap();
    let n: u64 = 20_000;
    let sum = Shared::<AtomicU64>::anon(0).unwrap();
    let count = Shared::<AtomicU64>::anon(0).unwrap();
    let mut receivers: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                let mut buf = [0u8; 200];
                let mut last = None;
                loop {
                    match q.recv_into_timeout(&mut buf, WAIT) {
                        Ok(len) => {
                            let id = check(&buf[..len]);
                            // One sender: each receiver sees ids in order.
                            if last.is_some_and(|l| l >= id) {
                                return 2;
                            }
                            last = Some(id);
                            sum.fetch_add(id, Ordering::Relaxed);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(RecvError::Closed) => return 0,
                        Err(_) => return 3,
                    }
                }
            })
            .unwrap()
        })
        .collect();
    let mut tx = q.sole_sender().unwrap();
    for id in 0..n {
        tx.send_timeout(&make(id, 8 + (id as usize * 17) % 190), WAIT)
            .unwrap();
    }
    drop(tx);
    q.close();
    for r in &mut receivers {
        assert_eq!(join(r), ExitStatus::Code(0));
    }
    assert_eq!(count.load(Ordering::Relaxed), n);
    assert_eq!(sum.load(Ordering::Relaxed), n * (n - 1) / 2);
}

/// Sends `0..5` with a shared sender; a child sole receiver takes `0`
/// and `1`, then is killed between its `FREED` store of `2` and its store
/// of `read`. Writers then fill every byte they may; the next receiver
/// gets `2` whole, then the rest.
#[test]
fn a_sole_receiver_killed_between_its_two_stores_leaves_the_message() {
    for next_is_sole in [true, false] {
        let q = ByteQueue::anon(BytesConfig::new(1024, 100)).unwrap();
        for id in 0..5 {
            q.send(&make(id, 90)).unwrap();
        }
        let acked = Shared::<AtomicU64>::anon(0).unwrap();
        let ready = Shared::<Event>::anon(()).unwrap();
        kill_after(&ready, || {
            let mut rx = q.sole_receiver().unwrap();
            let mut buf = [0u8; 100];
            for _ in 0..2 {
                let len = rx.recv_into(&mut buf).unwrap();
                check(&buf[..len]);
                acked.fetch_add(1, Ordering::Relaxed);
            }
            let _ = rx.try_recv_into_pausing(&mut buf, || {
                ready.set();
                parked_forever()
            });
        });
        assert_eq!(acked.load(Ordering::Relaxed), 2);
        // Writers may reuse only what lies below `read`.
        while q.try_send(&make(99, 90)).is_ok() {}
        let mut buf = [0u8; 100];
        let mut got = Vec::new();
        if next_is_sole {
            // Takes the dead receiver's lock over (within an owner-check
            // interval).
            let mut rx = q.sole_receiver_timeout(WAIT).unwrap();
            while let Ok(len) = rx.try_recv_into(&mut buf) {
                got.push(check(&buf[..len]));
            }
        } else {
            while let Ok(len) = q.recv_into_timeout(&mut buf, Duration::from_millis(500)) {
                got.push(check(&buf[..len]));
            }
        }
        assert_eq!(got[..3], [2, 3, 4], "next is sole: {next_is_sole}");
        assert!(got[3..].iter().all(|&id| id == 99));
    }
}

/// A child sole sender sends `0` and `1`, then is killed after writing
/// `2` beyond `tail` and before publishing it: `2` was never sent. The
/// next sender, sole or shared, takes the side over.
#[test]
fn a_sole_sender_killed_before_publishing_hands_the_side_over() {
    for next_is_sole in [true, false] {
        let q = ByteQueue::anon(BytesConfig::new(1024, 100)).unwrap();
        let ready = Shared::<Event>::anon(()).unwrap();
        kill_after(&ready, || {
            let mut tx = q.sole_sender().unwrap();
            tx.send(&make(0, 50)).unwrap();
            tx.send(&make(1, 60)).unwrap();
            let _ = tx.try_send_pausing(&make(2, 70), || {
                ready.set();
                parked_forever()
            });
        });
        if next_is_sole {
            let mut tx = q.sole_sender_timeout(WAIT).unwrap();
            tx.send(&make(3, 80)).unwrap();
        } else {
            q.send_timeout(&make(3, 80), WAIT).unwrap();
        }
        let mut buf = [0u8; 100];
        let mut got = Vec::new();
        let mut rx = q.sole_receiver().unwrap();
        while let Ok(len) = rx.try_recv_into(&mut buf) {
            got.push(check(&buf[..len]));
        }
        assert_eq!(got, [0, 1, 3], "next is sole: {next_is_sole}");
    }
}

/// A sole receiver killed at a random moment of a stream, again and again:
/// each new receiver's first message is the one after the last
/// acknowledged (or that one again, if the kill came before the receive
/// took effect, or one later if it came after the receive returned but
/// before the acknowledgement); never torn, never `Corrupted`.
#[test]
fn sole_receivers_killed_mid_stream_lose_nothing_acknowledged() {
    let q = ByteQueue::anon(BytesConfig::new(2048, 100)).unwrap();
    let acked = Shared::<AtomicU64>::anon(0).unwrap();
    let total: u64 = 30_000;
    let mut sender = fork(|| {
        let mut tx = q.sole_sender().unwrap();
        for id in 0..total {
            if tx
                .send_timeout(&make(id, 8 + (id as usize) % 90), WAIT)
                .is_err()
            {
                return 1;
            }
        }
        0
    })
    .unwrap();
    let mut rng = Rng::seeded();
    let mut kills = 0;
    while acked.load(Ordering::Relaxed) < total {
        let mut child = fork(|| {
            let mut rx = q.sole_receiver_timeout(WAIT).unwrap();
            let mut buf = [0u8; 100];
            let mut want = acked.load(Ordering::Relaxed);
            loop {
                match rx.recv_into_timeout(&mut buf, WAIT) {
                    Ok(len) => {
                        if check(&buf[..len]) != want {
                            return 2;
                        }
                        want += 1;
                        acked.store(want, Ordering::Relaxed);
                        if want == total {
                            return 0;
                        }
                    }
                    Err(_) => return 3,
                }
            }
        })
        .unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        let _ = child.kill();
        match join(&mut child) {
            ExitStatus::Signal(libc::SIGKILL) => kills += 1,
            ExitStatus::Code(0) => {}
            other => panic!("receiver ended with {other:?}"),
        }
        // A receiver killed after a receive returned and before its
        // acknowledgement: the message is gone with it, so the next
        // receiver starts one later. Look at what comes next.
        let a = acked.load(Ordering::Relaxed);
        if a == total {
            break;
        }
        let mut rx = q.sole_receiver_timeout(WAIT).unwrap();
        let next = {
            let g = rx.recv_timeout(WAIT).unwrap();
            let mut buf = vec![0u8; g.len()];
            g.copy_to(&mut buf);
            // Not taken: dropped through `forget` it stays for the next
            // receiver, as if this one had been killed holding it.
            std::mem::forget(g);
            check(&buf)
        };
        assert!(
            next == a || next == a + 1,
            "after {a} acknowledged, the next message is {next}"
        );
        acked.store(next, Ordering::Relaxed);
    }
    assert_eq!(join(&mut sender), ExitStatus::Code(0));
    assert!(kills > 0, "no receiver was killed mid-stream");
}

/// A forked child inherits a copy of its parent's sole handles, but not
/// the side's locks, which stay its parent's: were the copies to work,
/// parent and child would write beyond the same `tail` (or take the same
/// record) with no lock between them. In the child they fail with
/// `Corrupted` and touch nothing; the parent's handles go on as before,
/// and a sole handle the child makes of its own (once the parent's is
/// dropped) works.
#[test]
fn sole_handles_inherited_by_a_forked_child_do_nothing_there() {
    use shmipc::SendError;
    let q = ByteQueue::anon(BytesConfig::new(1024, 100)).unwrap();
    let mut tx = q.sole_sender().unwrap();
    let mut rx = q.sole_receiver().unwrap();
    tx.send(&make(0, 40)).unwrap();
    tx.send(&make(1, 40)).unwrap();
    let mut child = fork(|| {
        let mut buf = [0u8; 100];
        let sent = tx.try_send(&make(9, 40));
        let got = rx.try_recv_into(&mut buf);
        let polled = rx.try_poll();
        match (sent, got, polled) {
            (Err(SendError::Corrupted), Err(RecvError::Corrupted), Err(RecvError::Corrupted)) => 0,
            _ => 1,
        }
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    // Nothing of the child's is in the queue, and nothing was taken.
    tx.send(&make(2, 40)).unwrap();
    let mut buf = [0u8; 100];
    let mut got = Vec::new();
    while let Ok(len) = rx.try_recv_into(&mut buf) {
        got.push(check(&buf[..len]));
    }
    assert_eq!(got, [0, 1, 2]);
    drop((tx, rx));
    let mut child = fork(|| {
        let Ok(mut tx) = q.sole_sender_timeout(WAIT) else {
            return 2;
        };
        match tx.send(&make(3, 40)) {
            Ok(()) => 0,
            Err(_) => 1,
        }
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    let n = q.sole_receiver().unwrap().try_recv_into(&mut buf).unwrap();
    assert_eq!(check(&buf[..n]), 3);
}

/// A close that lands while a sole sender is between its look at
/// `closing` and its store of `tail` (parked there by the pausing hook,
/// running or stopped with SIGSTOP): the send looked before the close, so
/// it may still publish, and the close must not set `CLOSED` under it.
/// Receivers drain, see `Empty` (not `Closed`) while the send is in
/// flight, then its message, then `Closed`, while the sender, its send
/// returned `Ok`, sits idle holding the side: the send itself finished
/// the close. (Where the kernel has no process-wide barrier, sole sends
/// make a compare-and-swap instead, and the close wins at once: the send
/// returns `Closed`.)
#[test]
fn a_close_during_a_sole_send_waits_for_that_send() {
    for stop_it in [false, true] {
        let q = ByteQueue::anon(BytesConfig::new(1024, 100)).unwrap();
        let light = q.light_notify();
        let ready = Shared::<Event>::anon(()).unwrap();
        let go = Shared::<Event>::anon(()).unwrap();
        let done = Shared::<Event>::anon(()).unwrap();
        let outcome = Shared::<AtomicU64>::anon(0).unwrap();
        let mut child = fork(|| {
            let mut tx = q.sole_sender().unwrap();
            tx.send(&make(0, 50)).unwrap();
            tx.send(&make(1, 60)).unwrap();
            let r = tx.try_send_pausing(&make(2, 70), || {
                ready.set();
                assert!(go.wait_timeout(WAIT));
            });
            let code = match r {
                Ok(()) => 1,
                Err(shmipc::SendError::Closed) => 2,
                Err(_) => 3,
            };
            outcome.store(code + 10 * u64::from(tx.is_light()), Ordering::SeqCst);
            done.set();
            // Idle, holding the side, until killed.
            parked_forever()
        })
        .unwrap();
        assert!(ready.wait_timeout(WAIT));
        let pid = child.pid() as libc::pid_t;
        if stop_it {
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            assert!(common::eventually(WAIT, || common::proc_state(pid) == Some('T')));
        }
        q.close();
        assert!(q.is_closed());
        let mut buf = [0u8; 100];
        for id in 0..2 {
            let len = q.recv_into_timeout(&mut buf, WAIT).unwrap();
            assert_eq!(check(&buf[..len]), id);
        }
        if light {
            // The send in flight looked before the close: not `Closed` yet.
            assert_eq!(
                q.recv_into_timeout(&mut buf, Duration::from_millis(50)),
                Err(RecvError::Timeout),
                "stopped: {stop_it}"
            );
            assert_eq!(q.try_recv_into(&mut buf), Err(RecvError::Empty));
        }
        if stop_it {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        go.set();
        assert!(done.wait_timeout(WAIT));
        if light {
            assert_eq!(outcome.load(Ordering::SeqCst), 11, "stopped: {stop_it}");
            let len = q.recv_into_timeout(&mut buf, WAIT).unwrap();
            assert_eq!(check(&buf[..len]), 2);
        } else {
            assert_eq!(outcome.load(Ordering::SeqCst), 2, "stopped: {stop_it}");
        }
        assert_eq!(q.recv_into_timeout(&mut buf, WAIT), Err(RecvError::Closed));
        assert_eq!(q.try_recv_into(&mut buf), Err(RecvError::Closed));
        child.kill().unwrap();
        assert_eq!(join(&mut child), ExitStatus::Signal(libc::SIGKILL));
    }
}

/// A sole sender SIGKILLed between its look at `closing` and its store of
/// `tail` leaves itself marked busy; a close after that still completes
/// (the writers' side is taken over from the dead sender), by the close
/// itself or by the receiver that finds the queue drained: receivers get
/// everything it sent, then `Closed`, never a timeout.
#[test]
fn a_close_after_a_sole_sender_died_mid_send_completes() {
    for close_first in [true, false] {
        let q = ByteQueue::anon(BytesConfig::new(1024, 100)).unwrap();
        let ready = Shared::<Event>::anon(()).unwrap();
        kill_after(&ready, || {
            let mut tx = q.sole_sender().unwrap();
            tx.send(&make(0, 50)).unwrap();
            let _ = tx.try_send_pausing(&make(1, 70), || {
                ready.set();
                parked_forever()
            });
        });
        let mut buf = [0u8; 100];
        if !close_first {
            let len = q.recv_into_timeout(&mut buf, WAIT).unwrap();
            assert_eq!(check(&buf[..len]), 0);
        }
        q.close();
        if close_first {
            let len = q.recv_into_timeout(&mut buf, WAIT).unwrap();
            assert_eq!(check(&buf[..len]), 0);
        }
        assert_eq!(
            q.recv_into_timeout(&mut buf, WAIT),
            Err(RecvError::Closed),
            "close first: {close_first}"
        );
        assert_eq!(q.send(&make(2, 10)), Err(shmipc::SendError::Closed));
    }
}

/// A close that found a live sole sender between its look at `closing`
/// and its store of `tail` leaves the bit to that send; the sender is then
/// SIGKILLed before the store. Nobody is stopped, so the close must still
/// complete: a receiver already asleep in `recv` (since before the kill)
/// gets the first message and then `Closed`, not a timeout, and the
/// message in flight is never received.
#[test]
fn a_sole_sender_killed_mid_send_after_a_close_found_it_busy_lets_the_close_complete() {
    let q = ByteQueue::anon(BytesConfig::new(1024, 100)).unwrap();
    let ready = Shared::<Event>::anon(()).unwrap();
    let mut child = fork(|| {
        let mut tx = q.sole_sender().unwrap();
        tx.send(&make(0, 50)).unwrap();
        let _ = tx.try_send_pausing(&make(1, 70), || {
            ready.set();
            parked_forever()
        });
        parked_forever()
    })
    .unwrap();
    assert!(ready.wait_timeout(WAIT));
    q.close();
    assert!(q.is_closed());
    let mut buf = [0u8; 100];
    let len = q.recv_into_timeout(&mut buf, WAIT).unwrap();
    assert_eq!(check(&buf[..len]), 0);
    let tid = AtomicU64::new(0);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            // SAFETY: gettid takes nothing and cannot fail.
            tid.store(unsafe { libc::gettid() } as u64, Ordering::SeqCst);
            let mut buf = [0u8; 100];
            q.recv_into_timeout(&mut buf, WAIT)
        });
        // Let the reader go to sleep (if it is not asleep yet, or asleep
        // elsewhere, the outcome below is the same), then kill the sender.
        assert!(common::eventually(WAIT, || {
            let t = tid.load(Ordering::SeqCst);
            t != 0 && common::proc_state(t as libc::pid_t) == Some('S')
        }));
        child.kill().unwrap();
        assert_eq!(join(&mut child), ExitStatus::Signal(libc::SIGKILL));
        assert_eq!(reader.join().unwrap(), Err(RecvError::Closed));
    });
    assert_eq!(q.try_recv_into(&mut buf), Err(RecvError::Closed));
    assert_eq!(q.send(&make(2, 10)), Err(shmipc::SendError::Closed));
}

/// A close made in a process where the kernel refuses `membarrier` (a
/// seccomp filter, as some sandboxes have) leaves the close begun
/// (`CLOSE_ASKED`: its barrier failed) while a live light sole sender in
/// another process holds the side and sends nothing more. A receiver in a
/// process that may make the barrier finds the queue drained and helps:
/// the close must complete there (`Closed`), not wait for the idle
/// sender's next send. (Where sole sends are not light, the close sets
/// the bit at once.)
#[test]
fn a_close_refused_its_barrier_is_finished_by_a_receiver_that_can_make_it() {
    let q = ByteQueue::anon(BytesConfig::new(1024, 100)).unwrap();
    let light = q.light_notify();
    let ready = Shared::<Event>::anon(()).unwrap();
    let mut sender = fork(|| {
        let mut tx = q.sole_sender().unwrap();
        tx.send(&make(0, 50)).unwrap();
        ready.set();
        // Idle, holding the side, until killed.
        parked_forever()
    })
    .unwrap();
    assert!(ready.wait_timeout(WAIT));
    let mut closer = fork(|| {
        if !common::forbid_syscall(libc::SYS_membarrier) {
            return 2;
        }
        q.close();
        i32::from(!q.is_closed())
    })
    .unwrap();
    assert_eq!(join(&mut closer), ExitStatus::Code(0));
    let mut buf = [0u8; 100];
    let len = q.recv_into_timeout(&mut buf, WAIT).unwrap();
    assert_eq!(check(&buf[..len]), 0);
    let r = q.try_recv_into(&mut buf);
    sender.kill().unwrap();
    assert_eq!(join(&mut sender), ExitStatus::Signal(libc::SIGKILL));
    assert_eq!(r, Err(RecvError::Closed), "light: {light}");
}
