//! Is the thread that holds a lock still alive?
//!
//! A lock word records its owner's thread id. When a waiter has slept a
//! while without being woken, it asks whether that thread still exists; if
//! not, the owner died holding the lock and the waiter may take it over.
//!
//! Thread ids are reused (the default `pid_max` is 32768), so an id alone
//! could name an unrelated, newer thread. The owner therefore also records a
//! *stamp*: its id and the low 32 bits of its start time (in clock ticks
//! since boot, field 22 of `/proc/<tid>/stat`). A thread with the right id
//! but another start time is a different thread, and the owner is dead.
//!
//! This is the one place where the core looks at files: `/proc/<tid>/stat`,
//! read only in the slow path of a lock that has been held, unwoken, for a
//! whole check interval. Limits, documented for users: a thread in another
//! pid namespace (a container) cannot be seen and counts as alive; without
//! the `std` feature there is no cached stamp, so reuse is not guarded
//! against; a thread stopped by a debugger or `SIGSTOP` is alive.

/// The stamp of the calling thread: `tid << 32 | start_time_low32`, or 0 if
/// its start time is not known.
#[inline]
pub fn current_stamp() -> u64 {
    crate::tid::current_stamp()
}

/// Builds a stamp from a thread id and that thread's start time.
pub fn make_stamp(tid: u32, start_ticks: u64) -> u64 {
    (u64::from(tid) << 32) | (start_ticks & 0xffff_ffff)
}

/// Whether the thread `tid` is gone (exited, a zombie, or its id now names
/// a thread with another start time than `stamp` records).
///
/// Errs on the side of "alive": when it cannot tell, the lock keeps waiting
/// (and a caller's timeout still bounds the wait).
pub fn is_dead(tid: u32, stamp: u64) -> bool {
    let start = if (stamp >> 32) as u32 == tid {
        stamp & 0xffff_ffff
    } else {
        0
    };
    imp::is_dead(tid, start, 0xffff_ffff)
}

/// Whether the process a [process stamp](crate::tid::process_stamp) names
/// is gone: exited, a zombie, or its pid now names a process with another
/// start time. A stamp of 0 names nobody and is never dead.
pub fn process_is_dead(stamp: u64) -> bool {
    is_dead((stamp >> 32) as u32, stamp)
}

/// [`is_dead`] for an owner record that keeps only the low bits of the
/// start time: `start_bits` are compared with the live thread's start
/// time under `mask` (a value of 0 means "not recorded"). Fewer bits make
/// a reused id more likely to pass for the dead owner (1 in `mask + 1`),
/// which only delays recovery: it never makes a live owner look dead.
pub fn is_dead_masked(tid: u32, start_bits: u64, mask: u64) -> bool {
    imp::is_dead(tid, start_bits & mask, mask)
}

/// The start time (clock ticks since boot) of `/proc/<path>/stat`'s thread,
/// and its state letter.
#[cfg(not(any(loom, miri)))]
pub(crate) fn read_stat(path: &[u8]) -> Option<(u8, u64)> {
    let mut buf = [0u8; 1024];
    // SAFETY: `path` is NUL-terminated (callers build it so); open reads it
    // and returns a descriptor we close below.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut len = 0usize;
    while len < buf.len() {
        // SAFETY: the destination is the unfilled tail of `buf`.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: `fd` is the descriptor we opened and have not closed.
    unsafe { libc::close(fd) };
    parse_stat(&buf[..len])
}

/// Parses the state letter (field 3) and start time (field 22) out of a
/// `/proc/<tid>/stat` line. The command name (field 2) is in parentheses
/// and may itself contain spaces and parentheses, so parsing starts after
/// the last `)`.
#[cfg_attr(any(loom, miri), allow(dead_code))]
pub(crate) fn parse_stat(line: &[u8]) -> Option<(u8, u64)> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let mut fields = line[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    // Fields 4..=21 come next; field 22 is the 19th after the state.
    let start = fields.nth(18)?;
    let mut ticks: u64 = 0;
    for &d in start {
        if !d.is_ascii_digit() {
            return None;
        }
        ticks = ticks.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some((state, ticks))
}

#[cfg(not(any(loom, miri)))]
mod imp {
    /// `start` is the recorded start time under `mask`, 0 if unknown.
    pub fn is_dead(tid: u32, start: u64, mask: u64) -> bool {
        if tid == 0 || tid > crate::tid::TID_MASK {
            return false;
        }
        // SAFETY: signal 0 only checks that the target exists; `tid` is in
        // 1..2^30, so this never addresses a process group or every process.
        let r = unsafe { libc::kill(tid as libc::pid_t, 0) };
        // SAFETY: reading the calling thread's errno slot.
        if r != 0 && unsafe { *libc::__errno_location() } == libc::ESRCH {
            return true;
        }
        let mut path = [0u8; 32];
        let len = format_path(&mut path, tid);
        let Some((state, now_start)) = super::read_stat(&path[..len]) else {
            // Existed a moment ago; unreadable now means it just went away,
            // or /proc is unavailable. Only the first is death.
            // SAFETY: as above.
            let gone = unsafe { libc::kill(tid as libc::pid_t, 0) } != 0
                // SAFETY: reading the calling thread's errno slot.
                && unsafe { *libc::__errno_location() } == libc::ESRCH;
            return gone;
        };
        if matches!(state, b'Z' | b'X' | b'x') {
            return true;
        }
        start != 0 && (now_start & mask) != start
    }

    /// Writes `/proc/<tid>/stat\0` into `buf`; returns its length with the NUL.
    fn format_path(buf: &mut [u8; 32], tid: u32) -> usize {
        let mut digits = [0u8; 10];
        let mut n = tid;
        let mut k = 0;
        loop {
            digits[k] = b'0' + (n % 10) as u8;
            k += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut len = 0;
        for &b in b"/proc/" {
            buf[len] = b;
            len += 1;
        }
        while k > 0 {
            k -= 1;
            buf[len] = digits[k];
            len += 1;
        }
        for &b in b"/stat\0" {
            buf[len] = b;
            len += 1;
        }
        len
    }
}

#[cfg(any(loom, miri))]
mod imp {
    /// Loom and Miri threads never die holding a lock in our tests, and
    /// neither can look at /proc.
    pub fn is_dead(_tid: u32, _start: u64, _mask: u64) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_hostile_command_name() {
        let line = b"4242 (evil) (name) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(line), Some((b'S', 987654)));
        assert_eq!(parse_stat(b"garbage"), None);
        assert_eq!(parse_stat(b"1 (x) Z 1 2"), None);
    }

    #[test]
    fn stamps_hold_id_and_start() {
        assert_eq!(make_stamp(7, 0x1_0000_0005), (7u64 << 32) | 5);
    }

    #[cfg(not(miri))]
    #[test]
    fn the_calling_thread_is_alive_and_a_wrong_stamp_means_reuse() {
        let tid = crate::tid::current();
        let stamp = current_stamp();
        assert_eq!((stamp >> 32) as u32, tid);
        assert!(!is_dead(tid, stamp));
        assert!(!is_dead(tid, 0), "no stamp: the id alone decides");
        // The same id with another start time is another thread.
        assert!(is_dead(tid, make_stamp(tid, (stamp & 0xffff_ffff) + 1)));
        // The same through a masked record (start time low bits only).
        assert!(!is_dead_masked(tid, stamp, 0xff));
        assert!(is_dead_masked(tid, (stamp & 0xff) ^ 1, 0xff) || stamp & 0xff == 1);
    }

    #[cfg(not(miri))]
    #[test]
    fn this_process_is_alive_and_its_stamp_names_it() {
        let stamp = crate::tid::process_stamp();
        // SAFETY: getpid cannot fail.
        let pid = unsafe { libc::getpid() } as u32;
        assert_eq!((stamp >> 32) as u32, pid);
        assert_ne!(stamp & 0xffff_ffff, 0, "the start time is known");
        assert!(!process_is_dead(stamp));
        assert!(!process_is_dead(0));
        assert!(process_is_dead(make_stamp(pid, (stamp & 0xffff_ffff) + 1)));
    }

    #[cfg(not(miri))]
    #[test]
    fn an_exited_thread_is_dead() {
        let (tid, stamp) = std::thread::spawn(|| (crate::tid::current(), current_stamp()))
            .join()
            .unwrap();
        // Joined threads are reaped; the id no longer exists (or has been
        // reused by a thread with another start time).
        assert!(is_dead(tid, stamp));
    }
}
