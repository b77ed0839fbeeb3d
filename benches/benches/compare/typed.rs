//! `typed_small`: a small struct (a `u64`, a 16-byte `String`, eight
//! `f32`s) one way from one process to another, encoded with serde: shmipc's
//! `TypedQueue` through its sole handles (`shmipc`) and its shared calls
//! (`shmipc_shared`), ipc-channel (serde over its own transport), and the same
//! codec as shmipc (postcard) over a pipe. Every sender builds each
//! message afresh and every receiver decodes an owned value.

use serde::{Deserialize, Serialize};
use shmipc::{BytesConfig, TypedQueue};

use crate::harness::{in_procs, Ctl, Env, Name, CORE_A, CORE_B};
use crate::stats::Sample;
use crate::sys::{close, pipe_fds, size_pipe, write_all, Meter, Scope};

/// The message of `typed_small`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Small {
    id: u64,
    name: String,
    values: [f32; 8],
}

const STOP: u64 = u64::MAX;

fn small(id: u64) -> Small {
    Small {
        id,
        name: "sixteen-byte-str".to_owned(),
        values: [id as f32; 8],
    }
}

/// The bytes every transport gets to buffer messages: as in the byte
/// workloads, 64 KiB.
const BUFFER: usize = 1 << 16;

/// Sends `small(0), small(1), ...` until the run's time is up, then STOP.
fn produce(ctl: &Ctl, dur: std::time::Duration, mut send: impl FnMut(&Small)) {
    ctl.arrive(2);
    let meter = Meter::start(Scope::Process);
    let mut i = 0;
    loop {
        for _ in 0..16 {
            send(&small(i));
            i += 1;
        }
        if ctl.expired(dur) {
            break;
        }
    }
    send(&small(STOP));
    ctl.finish(0, meter.stop());
}

/// Receives until STOP, checking each message.
fn consume(ctl: &Ctl, mut recv: impl FnMut() -> Small) {
    ctl.arrive(2);
    let meter = Meter::start(Scope::Process);
    let mut got = 0;
    loop {
        let m = recv();
        if m.id == STOP {
            break;
        }
        assert_eq!(m.name.len(), 16);
        got += 1;
    }
    ctl.finish(got, meter.stop());
}

/// `TypedQueue`. With `sole` the producer and the consumer hold their
/// side for good (`sole_sender` / `sole_receiver`: no lock per message);
/// otherwise every `put` and `get` takes its side's lock (the shared
/// path, which any number of producers and consumers may share).
pub fn typed_shmipc(env: &Env, sole: bool) -> Sample {
    let name = Name::new(env, if sole { "typed" } else { "typed-shared" });
    let config = BytesConfig::new(BUFFER, 128);
    let _q = TypedQueue::<Small>::create(&name.0, config).unwrap();
    let (dur, n) = (env.dur, &name.0);
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                let q = TypedQueue::<Small>::open(n).unwrap();
                if sole {
                    let mut tx = q.sole_sender().unwrap();
                    produce(ctl, dur, |m| tx.put(m).unwrap());
                } else {
                    produce(ctl, dur, |m| q.put(m).unwrap());
                }
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let q = TypedQueue::<Small>::open(n).unwrap();
                if sole {
                    let mut rx = q.sole_receiver().unwrap();
                    consume(ctl, || rx.get().unwrap());
                } else {
                    consume(ctl, || q.get().unwrap());
                }
            }),
        ),
    ]);
    let mut s = map.ctl().sample(map.ctl().mmsg_per_s());
    if sole {
        s.note = Some("sole_sender / sole_receiver (one producer, one consumer)".into());
    }
    s
}

pub fn typed_ipc_channel(env: &Env) -> Sample {
    let (tx, rx) = ipc_channel::ipc::channel::<Small>().unwrap();
    let dur = env.dur;
    let (tx, rx) = (&tx, &rx);
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| produce(ctl, dur, |m| tx.send(m.clone()).unwrap())),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| consume(ctl, || rx.recv().unwrap())),
        ),
    ]);
    let mut s = map.ctl().sample(map.ctl().mmsg_per_s());
    s.note = Some("IpcSender::send takes the value: one clone per message".into());
    s
}

/// postcard over a pipe of 64 KiB: each message a `u32` length and the
/// encoding, written with one `write`; the reader reads in bulk and
/// decodes from its buffer.
pub fn typed_pipe(env: &Env) -> Sample {
    let (rx, tx) = pipe_fds();
    let pipe = size_pipe(tx, BUFFER);
    let dur = env.dur;
    let map = in_procs(vec![
        (
            CORE_A,
            Box::new(move |ctl: &Ctl| {
                let mut buf = Vec::with_capacity(128);
                produce(ctl, dur, |m| {
                    buf.clear();
                    buf.extend_from_slice(&[0; 4]);
                    buf = postcard::to_extend(m, std::mem::take(&mut buf)).unwrap();
                    let len = (buf.len() - 4) as u32;
                    buf[..4].copy_from_slice(&len.to_le_bytes());
                    write_all(tx, &buf);
                });
            }),
        ),
        (
            CORE_B,
            Box::new(move |ctl: &Ctl| {
                let mut buf = vec![0u8; BUFFER];
                let (mut pos, mut end) = (0usize, 0usize);
                consume(ctl, || loop {
                    if end - pos >= 4 {
                        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap());
                        let len = len as usize;
                        if end - pos >= 4 + len {
                            let m = postcard::from_bytes(&buf[pos + 4..pos + 4 + len]).unwrap();
                            pos += 4 + len;
                            return m;
                        }
                    }
                    buf.copy_within(pos..end, 0);
                    (pos, end) = (0, end - pos);
                    // SAFETY: `buf[end..]` is valid for writes of its length.
                    let n = unsafe { libc::read(rx, buf[end..].as_mut_ptr().cast(), BUFFER - end) };
                    assert!(n > 0, "pipe read: {n}");
                    end += n as usize;
                });
            }),
        ),
    ]);
    close(rx);
    close(tx);
    let mut s = map.ctl().sample(map.ctl().mmsg_per_s());
    s.note = Some(format!(
        "pipe buffer {} KiB, postcard as shmipc",
        pipe / 1024
    ));
    s
}
