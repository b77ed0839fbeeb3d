//! `shmipc::wait` across processes: a wait on many objects of every kind
//! reports exactly the ready ones, wakes for a child's exit, and sleeps
//! without burning the processor.

mod common;

use std::time::{Duration, Instant};

use common::{join, CHILD_TIMEOUT, WAKE_PATIENCE};
use shmipc::wait::{wait, Interest, WaitError};
use shmipc::{
    fork, ByteQueue, BytesConfig, Event, ExitStatus, Named, Pipe, PipeEnd, Queue, RingConfig,
    Semaphore, SemaphoreConfig, Shared, Unlinker,
};

const QUEUES: usize = 14;
const FULL: usize = 2;
const BYTES: usize = 12;
const PIPES: usize = 12;
const EVENTS: usize = 12;
const SEMS: usize = 12;
const ALL: usize = QUEUES + FULL + BYTES + PIPES + EVENTS + SEMS;
const _: () = assert!(ALL == 64);

/// The 64 objects, as either process holds them (the child opens them by
/// name; it holds the other end of each pipe).
struct Objects {
    queues: Vec<Queue<u64>>,
    full: Vec<Queue<u64>>,
    bytes: Vec<ByteQueue>,
    pipes: Vec<PipeEnd>,
    events: Vec<Shared<Event>>,
    sems: Vec<Shared<Semaphore>>,
}

fn names(n: &Unlinker, kind: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| n.name(&format!("{kind}{i}"))).collect()
}

struct Names {
    queues: Vec<String>,
    full: Vec<String>,
    bytes: Vec<String>,
    pipes: Vec<String>,
    events: Vec<String>,
    sems: Vec<String>,
}

impl Names {
    fn new(n: &Unlinker) -> Names {
        Names {
            queues: names(n, "q", QUEUES),
            full: names(n, "f", FULL),
            bytes: names(n, "b", BYTES),
            pipes: names(n, "p", PIPES),
            events: names(n, "e", EVENTS),
            sems: names(n, "s", SEMS),
        }
    }

    fn create(&self) -> Objects {
        let ring = RingConfig::new(4);
        let o = Objects {
            queues: self
                .queues
                .iter()
                .map(|n| Queue::create(n, ring).unwrap())
                .collect(),
            full: self
                .full
                .iter()
                .map(|n| Queue::create(n, ring).unwrap())
                .collect(),
            bytes: self
                .bytes
                .iter()
                .map(|n| ByteQueue::create(n, BytesConfig::new(1024, 64)).unwrap())
                .collect(),
            pipes: self
                .pipes
                .iter()
                .map(|n| Pipe::create(n, BytesConfig::new(1024, 64)).unwrap())
                .collect(),
            events: self
                .events
                .iter()
                .map(|n| Shared::create(n, ()).unwrap())
                .collect(),
            sems: self
                .sems
                .iter()
                .map(|n| {
                    Shared::create(
                        n,
                        SemaphoreConfig {
                            initial: 0,
                            max: None,
                        },
                    )
                    .unwrap()
                })
                .collect(),
        };
        for q in &o.full {
            while q.try_push(0).is_ok() {}
        }
        o
    }

    fn open(&self) -> shmipc::Result<Objects> {
        Ok(Objects {
            queues: self
                .queues
                .iter()
                .map(|n| Queue::open(n))
                .collect::<Result<_, _>>()?,
            full: self
                .full
                .iter()
                .map(|n| Queue::open(n))
                .collect::<Result<_, _>>()?,
            bytes: self
                .bytes
                .iter()
                .map(|n| ByteQueue::open(n))
                .collect::<Result<_, _>>()?,
            pipes: self
                .pipes
                .iter()
                .map(|n| Pipe::open(n))
                .collect::<Result<_, _>>()?,
            events: self
                .events
                .iter()
                .map(|n| Shared::open(n))
                .collect::<Result<_, _>>()?,
            sems: self
                .sems
                .iter()
                .map(|n| Shared::open(n))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl Objects {
    /// The 64 interests, in the order of the indices below.
    fn interests(&self) -> Vec<Interest<'_>> {
        let mut v = Vec::with_capacity(ALL);
        v.extend(self.queues.iter().map(Interest::readable));
        v.extend(self.full.iter().map(Interest::writable));
        v.extend(self.bytes.iter().map(Interest::readable));
        v.extend(self.pipes.iter().map(Interest::readable));
        v.extend(self.events.iter().map(|e| Interest::event(e)));
        v.extend(self.sems.iter().map(|s| Interest::semaphore(s)));
        v
    }

    /// Makes interest `i` ready (the child's side).
    fn make_ready(&self, i: usize) {
        let mut i = i;
        if i < QUEUES {
            return self.queues[i].push(i as u64).unwrap();
        }
        i -= QUEUES;
        if i < FULL {
            self.full[i].pop().unwrap();
            return;
        }
        i -= FULL;
        if i < BYTES {
            return self.bytes[i].send(b"hello").unwrap();
        }
        i -= BYTES;
        if i < PIPES {
            return self.pipes[i].send(b"hello").unwrap();
        }
        i -= PIPES;
        if i < EVENTS {
            return self.events[i].set();
        }
        i -= EVENTS;
        self.sems[i].release().unwrap()
    }

    /// Makes interest `i` not ready again (the parent's side).
    fn reset(&self, i: usize) {
        let mut i = i;
        if i < QUEUES {
            self.queues[i].try_pop().unwrap();
            return;
        }
        i -= QUEUES;
        if i < FULL {
            return self.full[i].try_push(0).unwrap();
        }
        i -= FULL;
        if i < BYTES {
            return drop(self.bytes[i].try_recv().unwrap());
        }
        i -= BYTES;
        if i < PIPES {
            return drop(self.pipes[i].try_recv().unwrap());
        }
        i -= PIPES;
        if i < EVENTS {
            return self.events[i].clear();
        }
        i -= EVENTS;
        assert!(self.sems[i].try_acquire());
    }
}

/// One interest of each kind, then five at once; the child makes them
/// ready while the parent waits on all 64.
const SINGLES: [usize; 6] = [3, QUEUES + 1, QUEUES + FULL + 5, 30, 45, 63];
const BATCH: [usize; 5] = [0, 15, 29, 50, 60];
const BATCH_ROUND: u64 = u64::MAX;

#[test]
fn a_wait_on_64_objects_of_every_kind_reports_exactly_the_ready_ones() {
    let n = Unlinker::new("wait64");
    let names = Names::new(&n);
    let objects = names.create();
    let cmd_name = n.name("cmd");
    let ack_name = n.name("ack");
    let cmd = Queue::<u64>::create(&cmd_name, RingConfig::new(8)).unwrap();
    let ack = Queue::<u64>::create(&ack_name, RingConfig::new(8)).unwrap();
    let mut child = fork(|| {
        let (Ok(o), Ok(cmd), Ok(ack)) = (
            names.open(),
            Queue::<u64>::open(&cmd_name),
            Queue::<u64>::open(&ack_name),
        ) else {
            return 2;
        };
        loop {
            match cmd.pop_timeout(CHILD_TIMEOUT) {
                Ok(BATCH_ROUND) => {
                    for &i in &BATCH {
                        o.make_ready(i);
                    }
                    ack.push(1).unwrap();
                }
                Ok(i) if (i as usize) < ALL => {
                    // Let the parent fall asleep first, so the change
                    // has to wake it.
                    std::thread::sleep(Duration::from_millis(20));
                    o.make_ready(i as usize);
                }
                Ok(_) => return 0,
                Err(_) => return 3,
            }
        }
    })
    .unwrap();
    let interests = objects.interests();
    assert_eq!(interests.len(), 64);
    // Nothing is ready: a short wait times out with an empty set.
    assert_eq!(
        wait(&interests, Some(Duration::from_millis(10))).unwrap(),
        Vec::<usize>::new()
    );
    for &i in &SINGLES {
        cmd.push(i as u64).unwrap();
        let start = Instant::now();
        let ready = wait(&interests, Some(WAKE_PATIENCE)).unwrap();
        assert_eq!(ready, [i], "the child made only #{i} ready");
        // Ready, but only found at the timeout: the wake-up was lost (with
        // `strict-wakes`, nothing else ends the sleep earlier).
        assert!(
            start.elapsed() < WAKE_PATIENCE,
            "#{i}: woken by the timeout only"
        );
        objects.reset(i);
    }
    cmd.push(BATCH_ROUND).unwrap();
    assert_eq!(ack.pop_timeout(CHILD_TIMEOUT), Ok(1));
    let ready = wait(&interests, Some(WAKE_PATIENCE)).unwrap();
    assert_eq!(ready, BATCH, "the child made exactly these ready");
    for &i in &BATCH {
        objects.reset(i);
    }
    assert_eq!(
        wait(&interests, Some(Duration::from_millis(10))).unwrap(),
        Vec::<usize>::new()
    );
    cmd.push(ALL as u64).unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
fn an_event_set_and_cleared_again_during_the_wait_is_reported() {
    let (_n, name) = common::segment_name("waitpulse", "e");
    let event = Shared::<Event>::create(&name, ()).unwrap();
    let other = Shared::<Event>::anon(()).unwrap();
    let mut child = common::fork_pulse_while_stopped(&name);
    let start = Instant::now();
    let ready = wait(
        &[Interest::event(&other), Interest::event(&event)],
        Some(WAKE_PATIENCE),
    );
    assert_eq!(join(&mut child), ExitStatus::Code(0));
    assert_eq!(ready.unwrap(), [1], "the pulse during the wait was missed");
    assert!(start.elapsed() < WAKE_PATIENCE, "woken by the timeout only");
    assert!(!event.is_set());
}

#[test]
fn wait_wakes_when_a_child_exits() {
    let never = Shared::<Event>::anon(()).unwrap();
    let q = Queue::<u64>::anon(RingConfig::new(4)).unwrap();
    let mut sleeper = common::fork_sleeper(Duration::from_secs(30), 0);
    let mut quick = common::fork_sleeper(Duration::from_millis(200), 7);
    let start = Instant::now();
    let ready = wait(
        &[
            Interest::event(&never),
            Interest::child(&sleeper),
            Interest::readable(&q),
            Interest::child(&quick),
        ],
        Some(WAKE_PATIENCE),
    )
    .unwrap();
    let took = start.elapsed();
    println!("woke {took:?} after the start for the child's exit (it sleeps 200 ms)");
    assert!(took < WAKE_PATIENCE, "woken by the timeout only");
    assert_eq!(ready, [3]);
    // Not reaped by the wait: join reports the code.
    assert_eq!(join(&mut quick), ExitStatus::Code(7));
    // A child that has already ended is ready at once.
    let mut done = fork(|| 0).unwrap();
    let ready = wait(
        &[Interest::child(&sleeper), Interest::child(&done)],
        Some(WAKE_PATIENCE),
    );
    assert_eq!(ready.unwrap(), [1]);
    assert_eq!(join(&mut done), ExitStatus::Code(0));
    sleeper.kill().unwrap();
    let ready = wait(&[Interest::child(&sleeper)], Some(WAKE_PATIENCE)).unwrap();
    assert_eq!(ready, [0]);
}

#[test]
fn more_words_than_futex_waitv_takes_are_an_error_that_says_so() {
    let events: Vec<Event> = (0..129).map(|_| Event::new()).collect();
    let interests: Vec<Interest<'_>> = events.iter().map(Interest::event).collect();
    match wait(&interests, Some(Duration::ZERO)) {
        Err(WaitError::TooMany {
            words: 129,
            limit: 128,
        }) => {}
        other => panic!("{other:?}"),
    }
    let text = wait(&interests, None).unwrap_err().to_string();
    assert!(text.contains("129") && text.contains("128"), "{text}");
    // 128 is fine.
    assert_eq!(
        wait(&interests[..128], Some(Duration::ZERO)).unwrap(),
        Vec::<usize>::new()
    );
}

#[test]
fn a_waiter_blocked_for_a_second_uses_under_two_percent_of_a_core() {
    // In a child of its own, so RUSAGE_SELF counts the waiter and the
    // children watcher only, not the other tests' threads.
    let mut child = fork(|| {
        let objects: Vec<Queue<u64>> = (0..60)
            .map(|_| Queue::anon(RingConfig::new(4)).unwrap())
            .collect();
        let event = Shared::<Event>::anon(()).unwrap();
        let Ok(mut grandchild) = fork(|| {
            std::thread::sleep(Duration::from_secs(30));
            0
        }) else {
            return 2;
        };
        let mut interests: Vec<Interest<'_>> = objects.iter().map(Interest::readable).collect();
        interests.push(Interest::event(&event));
        interests.push(Interest::child(&grandchild));
        let (self0, thread0, start) = (
            common::cpu_time(libc::RUSAGE_SELF),
            common::cpu_time(libc::RUSAGE_THREAD),
            Instant::now(),
        );
        let ready = wait(&interests, Some(Duration::from_secs(1)));
        let (self1, thread1, took) = (
            common::cpu_time(libc::RUSAGE_SELF),
            common::cpu_time(libc::RUSAGE_THREAD),
            start.elapsed(),
        );
        drop(interests);
        let _ = grandchild.kill();
        let used = self1 - self0;
        println!(
            "blocked {took:?}: process {used:?}, waiting thread {:?} of CPU",
            thread1 - thread0
        );
        if !matches!(ready.as_deref(), Ok([])) || took < Duration::from_secs(1) {
            return 3;
        }
        // 2% of the time it was blocked.
        if used * 50 > took {
            return 4;
        }
        0
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}

#[test]
#[cfg(target_arch = "x86_64")]
fn without_futex_waitv_wait_falls_back_to_short_slices() {
    let mut child = fork(|| {
        let event = Event::new();
        let q = Queue::<u64>::anon(RingConfig::new(4)).unwrap();
        if !common::forbid_syscall(libc::SYS_futex_waitv) {
            return 2;
        }
        // The filter works: the call is refused.
        let e = [shmipc_core::waitv::WaitvEntry::new(
            &shmipc::AtomicU32::new(0),
            0,
        )];
        let d = shmipc::Deadline::after(Duration::from_millis(1));
        if shmipc_core::waitv::waitv(&e, Some(&d))
            != shmipc_core::waitv::Waitv::Unsupported(libc::ENOSYS)
        {
            return 3;
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                q.push(1).unwrap();
            });
            // The queue is not the first word: only the re-check after a
            // slice on the event's word can see it.
            let (start, cpu0) = (Instant::now(), common::cpu_time(libc::RUSAGE_THREAD));
            let ready = wait(
                &[Interest::event(&event), Interest::readable(&q)],
                Some(WAKE_PATIENCE),
            );
            let (took, used) = (
                start.elapsed(),
                common::cpu_time(libc::RUSAGE_THREAD) - cpu0,
            );
            println!("without futex_waitv: {ready:?} after {took:?}, {used:?} of CPU");
            match ready {
                // Sleeps, not a spin: under a tenth of the time on the CPU
                // (a spin takes all it is given).
                Ok(r) if r == [1] && took < WAKE_PATIENCE && used * 10 < took => 0,
                Ok(r) if r == [1] && took < WAKE_PATIENCE => 5,
                _ => 4,
            }
        })
    })
    .unwrap();
    assert_eq!(join(&mut child), ExitStatus::Code(0));
}
