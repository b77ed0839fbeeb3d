//! iceoryx2, set up as its authors' own benchmarks set it up
//! (`benchmarks/publish-subscribe` and `benchmarks/event` in
//! eclipse-iceoryx/iceoryx2): one publisher and one subscriber per
//! direction, no history, a subscriber buffer of one sample with safe
//! overflow, the next sample loaned before waiting for the reply, and a
//! tight polling loop. Their programs print *half* a round trip
//! ("Latency" = time / (2 × iterations)); ours are whole round trips.
//!
//! The stream workloads (`bytes_*`) cannot use a buffer of one with safe
//! overflow, which drops samples: there the subscriber buffer holds as many
//! messages as shmipc's ring does, overflow is off and the publisher
//! retries until delivered (iceoryx2's default back-pressure strategy).
//!
//! iceoryx2 gets its own root directory and file prefix for the run, which
//! are removed at the end, on a panic, or by the next run.

use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;
use shmipc::sync::Ordering;

use crate::harness::{
    consume_bytes, echo, in_procs, initiate, produce_bytes, round_trip, spin_until, Ctl, CtlMap,
    Env, CORE_A, CORE_B,
};
use crate::stats::Sample;

/// Where iceoryx2 keeps its files for this run; dropping it removes them
/// (also when the run panics).
pub struct Iox {
    root: String,
    prefix: String,
}

impl Iox {
    pub fn new() -> Iox {
        let pid = std::process::id();
        Iox {
            root: format!("/tmp/shmipc-bench-iox2-{pid}/"),
            prefix: format!("shmipcbench{pid}_"),
        }
    }

    fn config(&self) -> Config {
        let mut c = Config::default();
        c.global.prefix = FileName::new(self.prefix.as_bytes()).expect("prefix");
        c.global
            .set_root_path(&Path::new(self.root.as_bytes()).expect("root path"));
        c
    }

    fn node(&self) -> Node<ipc::Service> {
        NodeBuilder::new()
            .config(&self.config())
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .expect("iceoryx2 node")
    }

    fn service_name(&self, what: &str) -> ServiceName {
        format!("{}/{what}", self.prefix)
            .as_str()
            .try_into()
            .expect("service name")
    }
}

impl Drop for Iox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
        if let Ok(dir) = std::fs::read_dir("/dev/shm") {
            for e in dir.flatten() {
                if e.file_name().to_string_lossy().starts_with(&self.prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// The side that creates the services (`first`) announces it in
/// `ctl.fping`; the other waits for that before opening them, so the two
/// never race to create one.
fn creator_first(ctl: &Ctl, first: bool) {
    if !first {
        while ctl.fping.0.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
    }
}

fn created(ctl: &Ctl, first: bool) {
    if first {
        // SYNC POINT: Release pairs with the Acquire load in creator_first.
        ctl.fping.0.store(1, Ordering::Release);
    }
}

/// A publish-subscribe service of `u64` as the authors' latency benchmark
/// configures it.
fn pubsub_u64(
    node: &Node<ipc::Service>,
    name: &ServiceName,
) -> iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, u64, ()> {
    node.service_builder(name)
        .publish_subscribe::<u64>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(1)
        .enable_safe_overflow(true)
        .open_or_create()
        .expect("iceoryx2 service")
}

fn event(
    node: &Node<ipc::Service>,
    name: &ServiceName,
) -> iceoryx2::service::port_factory::event::PortFactory<ipc::Service> {
    node.service_builder(name)
        .event()
        .max_notifiers(1)
        .max_listeners(1)
        .open_or_create()
        .expect("iceoryx2 event service")
}

/// One side of an iceoryx2 round trip: subscribes to `rx`, publishes on
/// `tx`; with `wake`, also notifies on `tx`'s event and sleeps on `rx`'s
/// listener instead of polling. `body` gets the round-trip steps: `send`
/// (writes the sample loaned in advance, sends it, and loans the next)
/// and `recv`.
fn iox_side<R>(
    env: &Env,
    ctl: &Ctl,
    (rx, tx): (&str, &str),
    first: bool,
    wake: Wake,
    body: impl FnOnce(&mut dyn FnMut(u64), &mut dyn FnMut() -> u64) -> R,
) -> R {
    let wake_up = wake != Wake::Poll;
    creator_first(ctl, first);
    let node = env.iox.node();
    let (rs, ts) = (
        pubsub_u64(&node, &env.iox.service_name(rx)),
        pubsub_u64(&node, &env.iox.service_name(tx)),
    );
    let events = wake_up.then(|| {
        (
            event(&node, &env.iox.service_name(&format!("{rx}-event"))),
            event(&node, &env.iox.service_name(&format!("{tx}-event"))),
        )
    });
    let sub = rs.subscriber_builder().create().expect("subscriber");
    let publ = ts.publisher_builder().create().expect("publisher");
    let ports = events.as_ref().map(|(re, te)| {
        (
            re.listener_builder().create().expect("listener"),
            te.notifier_builder().create().expect("notifier"),
        )
    });
    created(ctl, first);
    // Both ports must know their peers before the first sample, or it is
    // lost: wait until each service sees the other side, connect, and
    // meet once more.
    while ts.dynamic_config().number_of_subscribers() == 0
        || rs.dynamic_config().number_of_publishers() == 0
        || events.as_ref().is_some_and(|(re, te)| {
            te.dynamic_config().number_of_listeners() == 0
                || re.dynamic_config().number_of_notifiers() == 0
        })
    {
        std::thread::yield_now();
    }
    publ.update_connections().expect("connections");
    sub.update_connections().expect("connections");
    ctl.arrive(2);
    // With `Wake::WaitSet`, the receiver sleeps in a wait set its
    // listener is attached to (what `rt_waitset` measures of shmipc's
    // `wait`), not in the listener itself.
    let waitset = (wake == Wake::WaitSet).then(|| {
        WaitSetBuilder::new()
            .create::<ipc::Service>()
            .expect("waitset")
    });
    let _attached = match (&waitset, &ports) {
        (Some(ws), Some((listener, _))) => Some(ws.attach_notification(listener).expect("attach")),
        _ => None,
    };
    // The authors' loop: loan the next sample before waiting for the reply.
    let mut next = Some(publ.loan_uninit().expect("loan"));
    body(
        &mut |v| {
            let s = next.take().expect("a loaned sample");
            s.write_payload(v).send().expect("send");
            if let Some((_, notifier)) = &ports {
                notifier.notify().expect("notify");
            }
            next = Some(publ.loan_uninit().expect("loan"));
        },
        &mut || match &ports {
            None => spin_until(|| sub.receive().expect("receive").map(|s| *s)),
            Some((listener, _)) => loop {
                if let Some(s) = sub.receive().expect("receive") {
                    break *s;
                }
                match &waitset {
                    Some(ws) => {
                        ws.wait_and_process_once(|_| CallbackProgression::Stop)
                            .expect("wait");
                        listener.try_wait(|_| {}).expect("drain");
                    }
                    None => {
                        listener.blocking_wait(|_| {}).expect("wait");
                    }
                }
            },
        },
    )
}

/// A round trip through two publish-subscribe services: polled tightly
/// (`rt_busy`) or, with `wake`, sleeping on an event listener and woken by
/// a notifier after each sample (`rt_block`).
/// How an iceoryx2 receiver waits for the next sample.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Wake {
    /// Polls the subscriber (`rt_busy`).
    Poll,
    /// Sleeps on an event listener (`rt_block`).
    Listener,
    /// Sleeps in a WaitSet the listener is attached to (`rt_waitset`).
    WaitSet,
}

pub fn rt_iceoryx2(env: &Env, wake: Wake) -> Sample {
    let map = CtlMap::new();
    round_trip(
        &map,
        |ctl| {
            iox_side(env, ctl, ("ping", "pong"), true, wake, |send, recv| {
                echo(ctl, recv, send)
            })
        },
        |ctl| {
            iox_side(env, ctl, ("pong", "ping"), false, wake, |send, recv| {
                initiate(ctl, env.dur, |v| {
                    send(v);
                    recv()
                })
            })
        },
    )
}

/// Byte messages of `size` one way through a publish-subscribe service of
/// `[u8]`, copied into a loaned sample and out of the received one (the
/// two copies shmipc's `send` / `recv_into` make). The subscriber buffer
/// holds `depth` samples (what shmipc's ring holds of this size).
pub fn bytes_iceoryx2(env: &Env, size: usize, depth: usize) -> Sample {
    let service = |ctl: &Ctl, first: bool| {
        creator_first(ctl, first);
        let node = env.iox.node();
        let s = node
            .service_builder(&env.iox.service_name("bytes"))
            .publish_subscribe::<[u8]>()
            .max_publishers(1)
            .max_subscribers(1)
            .history_size(0)
            .subscriber_max_buffer_size(depth)
            .enable_safe_overflow(false)
            .open_or_create()
            .expect("iceoryx2 service");
        (node, s)
    };
    let connect = |ctl: &Ctl,
                   s: &iceoryx2::service::port_factory::publish_subscribe::PortFactory<
        ipc::Service,
        [u8],
        (),
    >| {
        while s.dynamic_config().number_of_subscribers() == 0
            || s.dynamic_config().number_of_publishers() == 0
        {
            std::thread::yield_now();
        }
        let _ = ctl;
    };
    let dur = env.dur;
    let map = in_procs(vec![
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let (_node, s) = service(ctl, true);
                let sub = s
                    .subscriber_builder()
                    .buffer_size(depth)
                    .create()
                    .expect("subscriber");
                created(ctl, true);
                connect(ctl, &s);
                sub.update_connections().expect("connections");
                let mut buf = vec![0u8; size];
                consume_bytes(ctl, 1, || {
                    let sample = spin_until(|| sub.receive().expect("receive"));
                    buf.copy_from_slice(sample.payload());
                    buf[0]
                });
            }),
        ),
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                let (_node, s) = service(ctl, false);
                let publ = s
                    .publisher_builder()
                    .initial_max_slice_len(size)
                    .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                    .create()
                    .expect("publisher");
                connect(ctl, &s);
                publ.update_connections().expect("connections");
                produce_bytes(ctl, 2, dur, size, |m| {
                    let s = publ.loan_slice_uninit(size).expect("loan");
                    s.write_from_slice(m).send().expect("send");
                });
            }),
        ),
    ]);
    map.ctl().sample(map.ctl().gb_per_s(size))
}
