//! Typed messages across real processes: serde values through the typed
//! queue, pipe and dict; a wrong type on open; hostile bytes in a typed
//! queue.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmipc::{
    fork, ByteQueue, BytesConfig, DictConfig, End, Error, MessageError, Named, Pipe, RecvError,
    SharedDict, TypedDict, TypedPipe, TypedQueue,
};

use common::{join, join_all_ok};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Job {
    id: u64,
    owner: String,
    sizes: Vec<u32>,
    note: Option<String>,
}

fn job(id: u64) -> Job {
    Job {
        id,
        owner: format!("worker-{id}-{}", "x".repeat((id % 7) as usize)),
        sizes: (0..(id % 5) as u32).collect(),
        note: (id % 2 == 0).then(|| "even".to_owned()),
    }
}

fn config() -> BytesConfig {
    BytesConfig::for_max_message(256).unwrap()
}

#[test]
fn structs_with_strings_and_vecs_cross_forked_processes() {
    let (names, name) = common::segment_name("typed-mpmc", "jobs");
    let jobs = TypedQueue::<Job>::create(&name, config()).unwrap();
    // The parent counts as a producer until it closes the queue, so the
    // consumers wait for the close (not for end-of-stream, which they would
    // see in any moment when every forked producer is gone).
    jobs.as_bytes().declare(End::Sender);
    let results = TypedQueue::<(u64, String)>::create(&names.name("results"), config()).unwrap();
    const PER: u64 = 500;
    let mut producers = Vec::new();
    for p in 0..2u64 {
        let name = name.clone();
        producers.push(
            fork(move || {
                // Opened by name in the child, as an unrelated process would.
                let jobs = TypedQueue::<Job>::open(&name).expect("open");
                let ok = (0..PER).all(|i| jobs.put(&job(p * PER + i)).is_ok());
                i32::from(!ok)
            })
            .unwrap(),
        );
    }
    let mut consumers = Vec::new();
    for _ in 0..2 {
        let (jobs, results) = (&jobs, &results);
        consumers.push(
            fork(move || loop {
                match jobs.get_timeout(Duration::from_secs(30)) {
                    Ok(j) if j == job(j.id) => {
                        if results.put(&(j.id, j.owner)).is_err() {
                            return 2;
                        }
                    }
                    Ok(_) => return 3,
                    Err(e) if e.is_closed() => return 0,
                    Err(_) => return 1,
                }
            })
            .unwrap(),
        );
    }
    // Drained while the others run: both queues are small.
    let mut seen = BTreeSet::new();
    for _ in 0..2 * PER {
        let (id, owner) = results.get_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(owner, job(id).owner);
        assert!(seen.insert(id), "{id} arrived twice");
    }
    join_all_ok(&mut producers);
    jobs.close();
    join_all_ok(&mut consumers);
    assert_eq!(seen.len() as u64, 2 * PER);
    assert!(results.empty());
}

#[test]
fn qsize_empty_full_close_and_timeouts() {
    let q = TypedQueue::<String>::anon(BytesConfig::new(256, 64)).unwrap();
    assert!(q.empty() && !q.full());
    assert_eq!(q.qsize(), 0);
    q.put(&"a".to_owned()).unwrap();
    q.push(&"b".to_owned()).unwrap();
    q.put_timeout(&"c".to_owned(), Duration::from_secs(1))
        .unwrap();
    assert_eq!(q.qsize(), 3);
    // A forked child sees the same count and takes one.
    let mut child = fork(|| match q.get() {
        Ok(s) if s == "a" => 0,
        _ => 1,
    })
    .unwrap();
    assert_eq!(join(&mut child), shmipc::ExitStatus::Code(0));
    assert_eq!(q.qsize(), 2);
    // Fill it: 256 bytes of ring take three records of 64-byte messages.
    let big = "z".repeat(60);
    let mut n = 0;
    while q.put_nowait(&big).is_ok() {
        n += 1;
        assert!(n < 100);
    }
    assert!(q.full());
    let e = q.try_push(&big).unwrap_err();
    assert!(e.is_empty_or_full(), "{e}");
    let start = Instant::now();
    let e = q.put_timeout(&big, Duration::from_millis(50)).unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(q.get().unwrap(), "b");
    assert_eq!(q.pop_timeout(Duration::from_secs(1)).unwrap(), "c");
    for _ in 0..n {
        assert_eq!(q.try_pop().unwrap(), big);
    }
    assert_eq!(q.qsize(), 0);
    assert!(q.get_nowait().unwrap_err().is_empty_or_full());
    assert!(q
        .get_timeout(Duration::from_millis(20))
        .unwrap_err()
        .is_timeout());
    q.put(&"last".to_owned()).unwrap();
    q.close();
    assert!(q.put(&"late".to_owned()).unwrap_err().is_closed());
    assert_eq!(q.get().unwrap(), "last");
    assert!(q.get().unwrap_err().is_closed());
}

#[test]
fn a_message_too_large_is_a_send_error() {
    let q = TypedQueue::<Vec<u8>>::anon(BytesConfig::new(1024, 64)).unwrap();
    let e = q.put(&vec![1; 100]).unwrap_err();
    assert!(
        matches!(
            e,
            MessageError::Send {
                error: shmipc::SendError::TooLarge,
                ..
            }
        ),
        "{e:?}"
    );
    q.put(&vec![1; 60]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1; 60]);
}

/// The error a forked child gets opening `open` (which fails), as text.
fn child_error(open: impl FnOnce() -> Result<(), Error>) -> String {
    let pipe = TypedQueue::<String>::anon(BytesConfig::for_max_message(1024).unwrap()).unwrap();
    let mut child = fork(|| {
        let msg = match open() {
            Ok(()) => "opened".to_owned(),
            Err(e) => e.to_string(),
        };
        i32::from(pipe.put(&msg).is_err())
    })
    .unwrap();
    assert_eq!(join(&mut child), shmipc::ExitStatus::Code(0));
    pipe.get().unwrap()
}

#[test]
fn opening_with_another_type_names_both_types() {
    let (names, name) = common::segment_name("typed-wrong", "q");
    let _q = TypedQueue::<Job>::create(&name, config()).unwrap();
    let e = child_error(|| TypedQueue::<String>::open(&name).map(drop));
    assert!(e.contains(&name), "{e}");
    assert!(e.contains("alloc::string::String"), "{e}");
    assert!(e.contains("typed::Job"), "{e}");
    // The right type opens.
    assert_eq!(
        child_error(|| TypedQueue::<Job>::open(&name).map(drop)),
        "opened"
    );
    // A same-size type of another name is still another type.
    let name = names.name("q64");
    let _q = TypedQueue::<u64>::create(&name, config()).unwrap();
    let e = TypedQueue::<i64>::open(&name).unwrap_err();
    assert!(matches!(e, Error::TypeMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("i64"), "{e}");
    assert!(e.to_string().contains("type u64"), "{e}");

    // Pipes and dicts record their types too.
    let name = names.name("pipe");
    let _a = TypedPipe::<Job>::create(&name, config()).unwrap();
    let e = child_error(|| TypedPipe::<u32>::open(&name).map(drop));
    assert!(e.contains("u32") && e.contains("typed::Job"), "{e}");
    let name = names.name("dict");
    let _d = TypedDict::<String, u64>::create(&name, DictConfig::new(4, 16, 16)).unwrap();
    let e = child_error(|| TypedDict::<String, u32>::open(&name).map(drop));
    assert!(
        e.contains("(alloc::string::String, u32)") && e.contains("(alloc::string::String, u64)"),
        "{e}"
    );
    assert_eq!(
        child_error(|| TypedDict::<String, u64>::open(&name).map(drop)),
        "opened"
    );

    // An untyped segment is not a typed one.
    let name = names.name("raw");
    let _raw = ByteQueue::create(&name, config()).unwrap();
    let e = TypedQueue::<Job>::open(&name).unwrap_err();
    assert!(
        matches!(e, Error::TypeMismatch { found_hash: 0, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("records no message type"), "{e}");
    let name = names.name("rawdict");
    let _raw = SharedDict::create(&name, DictConfig::new(4, 16, 16)).unwrap();
    assert!(matches!(
        TypedDict::<u8, u8>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
    // ... while the byte types still open typed segments (tools may read
    // raw messages).
    let name = names.name("typed-as-raw");
    let _q = TypedQueue::<Job>::create(&name, config()).unwrap();
    ByteQueue::open(&name).unwrap();
}

#[test]
fn hostile_bytes_are_decode_errors_naming_the_type() {
    let (_names, name) = common::segment_name("typed-hostile", "q");
    let q = TypedQueue::<Job>::create(&name, config()).unwrap();
    let hostile: Vec<Vec<u8>> = vec![
        vec![],                                   // nothing at all
        vec![0xff; 12],                           // a varint that never ends
        vec![1, 200, 1, b'a'],                    // a string longer than the message
        vec![1, 2, 0xc3, 0x28, 0, 0],             // invalid UTF-8
        vec![1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f], // a huge Vec length
        vec![1, 0, 0, 7],                         // an Option tag of 7
    ];
    let mut good = postcard_like(&job(5));
    good.extend_from_slice(&[9, 9]); // a valid value, then trailing bytes
    let mut child = {
        let hostile = hostile.clone();
        let good = good.clone();
        let name = name.clone();
        fork(move || {
            // A peer that writes raw bytes into the typed queue.
            let raw = ByteQueue::open(&name).expect("open raw");
            let ok = hostile.iter().all(|m| raw.send(m).is_ok()) && raw.send(&good).is_ok();
            i32::from(!ok)
        })
        .unwrap()
    };
    assert_eq!(join(&mut child), shmipc::ExitStatus::Code(0));
    q.put(&job(1)).unwrap();
    for (i, m) in hostile.iter().enumerate() {
        common::expect_decode_error(
            q.get_timeout(Duration::from_secs(5)),
            &name,
            "typed::Job",
            i,
            m,
        );
    }
    let e = q.get().unwrap_err();
    let text = e.to_string();
    assert!(text.contains("left over") && text.contains("Job"), "{text}");
    // The queue goes on: the good message behind the hostile ones arrives.
    assert_eq!(q.get().unwrap(), job(1));
    assert!(matches!(
        q.try_pop(),
        Err(MessageError::Recv {
            error: RecvError::Empty,
            ..
        })
    ));
}

/// `value` encoded as the typed queue encodes it, through a raw queue.
fn postcard_like(value: &Job) -> Vec<u8> {
    let q = TypedQueue::<Job>::anon(config()).unwrap();
    q.put(value).unwrap();
    q.as_bytes().recv_vec().unwrap()
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Msg {
    Work { id: u32, text: String },
    Done(Vec<String>),
    Stop,
}

#[test]
fn a_typed_pipe_carries_enums_both_ways_between_processes() {
    let (names, name) = common::segment_name("typed-pipe", "p");
    let a = TypedPipe::<Msg>::create(&name, config()).unwrap();
    let child_name = name.clone();
    let mut child = fork(move || {
        let b = TypedPipe::<Msg>::open(&child_name).expect("open end B");
        let mut done = Vec::new();
        loop {
            match b.recv_timeout(Duration::from_secs(30)) {
                Ok(Msg::Work { id, text }) => done.push(format!("{id}:{}", text.to_uppercase())),
                Ok(Msg::Stop) => break,
                _ => return 1,
            }
        }
        i32::from(b.send(&Msg::Done(done)).is_err())
    })
    .unwrap();
    assert!(!a.poll(Duration::ZERO));
    for id in 0..20 {
        a.send(&Msg::Work {
            id,
            text: format!("item {id}"),
        })
        .unwrap();
    }
    a.try_send(&Msg::Stop).unwrap();
    assert!(a.poll(Duration::from_secs(30)));
    let Msg::Done(done) = a.recv().unwrap() else {
        panic!("not Done")
    };
    assert_eq!(done.len(), 20);
    assert_eq!(done[7], "7:ITEM 7");
    assert_eq!(join(&mut child), shmipc::ExitStatus::Code(0));
    // The child has exited, so its end is gone: end of stream (the
    // `try_` form says so too).
    assert!(a.try_recv().unwrap_err().is_disconnected());
    assert!(a
        .recv_timeout(Duration::from_secs(10))
        .unwrap_err()
        .is_disconnected());
    // The raw pipe of another type is refused: it records no type.
    let raw = names.name("raw");
    let _raw = Pipe::create(&raw, config()).unwrap();
    assert!(matches!(
        TypedPipe::<Msg>::open(&raw),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn a_typed_dict_is_shared_by_processes() {
    let (_names, name) = common::segment_name("typed-dict", "d");
    let d = TypedDict::<String, Job>::create(&name, DictConfig::new(64, 32, 128)).unwrap();
    let mut children = Vec::new();
    for c in 0..3u64 {
        let name = name.clone();
        children.push(
            fork(move || {
                let d = TypedDict::<String, Job>::open(&name).expect("open");
                let ok = (0..10).all(|i| {
                    let id = c * 10 + i;
                    d.insert(&format!("job-{id}"), &job(id)).is_ok()
                });
                i32::from(!ok)
            })
            .unwrap(),
        );
    }
    join_all_ok(&mut children);
    assert_eq!(d.len().unwrap(), 30);
    assert!(!d.is_empty().unwrap());
    assert_eq!(d.get(&"job-17".to_owned()).unwrap(), Some(job(17)));
    assert_eq!(d.get(&"job-99".to_owned()).unwrap(), None);
    assert!(d.contains_key(&"job-3".to_owned()).unwrap());
    let old = d.insert(&"job-3".to_owned(), &job(300)).unwrap();
    assert_eq!(old, Some(job(3)));
    assert_eq!(d.remove(&"job-3".to_owned()).unwrap(), Some(job(300)));
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys.len(), 29);
    assert!(!keys.contains(&"job-3".to_owned()));
    let items = d.items().unwrap();
    assert!(items.iter().all(|(k, v)| *k == format!("job-{}", v.id)));
    // A value that encodes too large is the dict's error, nothing stored.
    let mut huge = job(1);
    huge.owner = "o".repeat(500);
    assert!(matches!(
        d.insert(&"huge".to_owned(), &huge),
        Err(MessageError::Dict(shmipc::DictError::TooLarge { .. }))
    ));
    // Hostile bytes under a key decode as an error naming the value type.
    d.as_bytes()
        .insert(&[4, b'b', b'a', b'd', b'!'], &[0xff; 8])
        .unwrap();
    let e = d.get(&"bad!".to_owned()).unwrap_err();
    assert!(
        matches!(&e, MessageError::Decode { type_name, .. } if type_name.ends_with("Job")),
        "{e:?}"
    );
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
}
