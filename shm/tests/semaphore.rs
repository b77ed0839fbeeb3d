//! A Semaphore(3) lets exactly three of ten processes in at once.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::join_all_ok;
use shmipc::{fork, AtomicU32, Child, Event, Named, Semaphore, SemaphoreConfig, Shared};

const PROCESSES: usize = 10;
const PERMITS: u32 = 3;
const ROUNDS: usize = 5;

#[test]
fn semaphore_of_three_admits_exactly_three_of_ten_processes() {
    let (names, sem_name) = common::segment_name("test", "sem");
    let holders_name = names.name("holders");
    let peak_name = names.name("peak");
    let go_name = names.name("go");
    let sem = Shared::<Semaphore>::create(&sem_name, common::unbounded(PERMITS)).unwrap();
    let holders = Shared::<AtomicU32>::create(&holders_name, 0).unwrap();
    let peak = Shared::<AtomicU32>::create(&peak_name, 0).unwrap();
    let go = Shared::<Event>::create(&go_name, ()).unwrap();

    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|_| {
            fork(|| {
                let (Ok(sem), Ok(holders), Ok(peak), Ok(go)) = (
                    Shared::<Semaphore>::open(&sem_name),
                    Shared::<AtomicU32>::open(&holders_name),
                    Shared::<AtomicU32>::open(&peak_name),
                    Shared::<Event>::open(&go_name),
                ) else {
                    return 1;
                };
                if !go.wait_timeout(Duration::from_secs(30)) {
                    return 2;
                }
                for _ in 0..ROUNDS {
                    sem.acquire();
                    let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst); // the most holders at once
                                                           // Hold long enough that the others pile up behind us.
                    std::thread::sleep(Duration::from_millis(3));
                    holders.fetch_sub(1, Ordering::SeqCst);
                    if sem.release().is_err() {
                        return 3;
                    }
                }
                0
            })
            .unwrap()
        })
        .collect();
    go.set();
    join_all_ok(&mut children);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        PERMITS,
        "peak number of holders"
    );
    assert_eq!(holders.load(Ordering::SeqCst), 0);
    assert_eq!(sem.value(), PERMITS);
}

#[test]
fn a_bounded_semaphore_keeps_its_bound_across_processes() {
    let (_names, name) = common::segment_name("test", "bounded");
    let sem = Shared::<Semaphore>::create(
        &name,
        SemaphoreConfig {
            initial: 1,
            max: std::num::NonZeroU32::new(1),
        },
    )
    .unwrap();
    let mut child = fork(|| {
        let sem = Shared::<Semaphore>::open(&name).unwrap();
        assert_eq!(sem.max(), Some(1));
        assert!(sem.try_acquire());
        assert!(!sem.try_acquire());
        0
    })
    .unwrap();
    assert_eq!(common::join(&mut child), shmipc::ExitStatus::Code(0));
    // The child took the only permit and exited without releasing it.
    assert!(!sem.try_acquire());
    sem.release().unwrap();
    assert_eq!(sem.release(), Err(shmipc::SemaphoreError::Overflow));
}
