//! Round trips through the [peers] additions: `rt_waitset` (each side
//! sleeps in `shmipc::wait` on its queue and an event, then pops without
//! blocking) and `rt_async` (each side a current-thread tokio runtime
//! awaiting `pop_async`). Both beside `rt_block` shmipc, the plain
//! blocking SPSC round trip.

use shmipc::wait::{wait, Interest};
use shmipc::{Event, Named, Queue, RingConfig, Shared, SpscQueue};

use crate::harness::{echo, initiate, round_trip, CtlMap, Env, Name};
use crate::stats::Sample;

/// A round trip through `wait`: SPSC queues as `rt_block` uses, and an
/// event that never fires beside each (a wait set of two).
pub fn rt_waitset(env: &Env) -> Sample {
    let (ping, pong) = (Name::new(env, "ping"), Name::new(env, "pong"));
    let q_ping = SpscQueue::<u64>::create(&ping.0, RingConfig::new(64)).unwrap();
    let q_pong = SpscQueue::<u64>::create(&pong.0, RingConfig::new(64)).unwrap();
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| {
            let mut rx = SpscQueue::<u64>::consumer(&ping.0).unwrap();
            let mut tx = SpscQueue::<u64>::producer(&pong.0).unwrap();
            let stop = Shared::<Event>::anon(()).unwrap();
            echo(
                ctl,
                || loop {
                    if let Ok(v) = rx.try_pop() {
                        return v;
                    }
                    wait(&[Interest::readable(&rx), Interest::event(&stop)], None).unwrap();
                },
                |v| tx.push(v).unwrap(),
            );
        },
        |ctl| {
            let mut tx = q_ping.take_producer().unwrap();
            let mut rx = q_pong.take_consumer().unwrap();
            let stop = Shared::<Event>::anon(()).unwrap();
            initiate(ctl, env.dur, |i| {
                tx.push(i).unwrap();
                loop {
                    if let Ok(v) = rx.try_pop() {
                        return v;
                    }
                    wait(&[Interest::readable(&rx), Interest::event(&stop)], None).unwrap();
                }
            })
        },
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// A tokio ping-pong: each side a current-thread runtime that awaits
/// `pop_async` on an MPMC `Queue` (the async forms are the `Queue`'s and
/// the byte queues'); the initiator runs one `block_on` per round trip.
pub fn rt_async(env: &Env) -> Sample {
    let (ping, pong) = (Name::new(env, "ping"), Name::new(env, "pong"));
    let q_ping = Queue::<u64>::create(&ping.0, RingConfig::new(64)).unwrap();
    let q_pong = Queue::<u64>::create(&pong.0, RingConfig::new(64)).unwrap();
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| {
            let rx = Queue::<u64>::open(&ping.0).unwrap();
            let tx = Queue::<u64>::open(&pong.0).unwrap();
            let rt = runtime();
            echo(
                ctl,
                || rt.block_on(rx.pop_async()).unwrap(),
                |v| rt.block_on(tx.push_async(v)).unwrap(),
            );
        },
        |ctl| {
            let rt = runtime();
            initiate(ctl, env.dur, |i| {
                rt.block_on(async {
                    q_ping.push_async(i).await.unwrap();
                    q_pong.pop_async().await.unwrap()
                })
            })
        },
    )
}
