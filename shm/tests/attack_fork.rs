//! Attack on the fork rule: a forked child must never keep a parent's
//! slot lock alive (it would make a dead parent look alive for as long as
//! the child lives). The `pthread_atfork` child handler closes the
//! slot-lock descriptors it knows of; the attack forks while another
//! thread of the parent is attaching (opening the description and locking
//! its slot) or detaching (unlisting and closing it), so that some forks
//! land between the descriptor's opening and its listing, or between its
//! unlisting and its closing.
//!
//! Each child looks at its own descriptors in `/proc/self/fdinfo`, where
//! the kernel lists the locks each open file description holds
//! (`OFDLCK`): after the fork handler, a child holds none.

use shmipc::sync::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmipc::{AtomicU32, Named, Shared, Unlinker};

/// How many forks the attack makes (at most; it also stops after
/// `BUDGET`).
const FORKS: u32 = 3000;
const BUDGET: Duration = Duration::from_secs(5);

/// Whether this process holds any open-file-description lock. Runs in a
/// forked child of a multi-threaded parent: it only reads files.
fn holds_ofd_locks() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return false;
    };
    dir.flatten()
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|s| s.contains("OFDLCK")))
}

#[test]
fn a_fork_during_attach_or_detach_inherits_no_slot_lock() {
    let names = Unlinker::new("atk-fork");
    let name = names.name("w");
    let _keep = Shared::<AtomicU32>::create(&name, 0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let attacher = {
        let (stop, name) = (stop.clone(), name.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let h = Shared::<AtomicU32>::open(&name).unwrap();
                h.fetch_add(1, Ordering::Relaxed);
                drop(h);
                n += 1;
            }
            n
        })
    };
    let start = Instant::now();
    let (mut forks, mut leaks) = (0u32, 0u32);
    while forks < FORKS && start.elapsed() < BUDGET {
        // SAFETY: the child only reads /proc and ends in _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = i32::from(holds_ofd_locks());
            // SAFETY: ends the child without running the parent's
            // destructors or its other threads' work.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        if libc::WEXITSTATUS(status) != 0 {
            leaks += 1;
        }
        forks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let attaches = attacher.join().unwrap();
    assert!(attaches > 0 && forks > 0);
    assert_eq!(
        leaks, 0,
        "{leaks} of {forks} children (forked during {attaches} attaches and detaches) \
         inherited a description holding the parent's slot lock"
    );
}
