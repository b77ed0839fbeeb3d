//! `shmipc-peer`: a separate program that the cross-binary tests start. It
//! attaches to shmipc objects by name only — no inherited memory, no shared
//! code path with the test beyond the library — and does one job.
//!
//! Exit codes: 0 done, 2 an error (printed to stderr), 3 a timeout.

use std::process::ExitCode;
use std::time::Duration;

use shmipc::sync::{AtomicU32, AtomicU64, Ordering};
use shmipc::{Event, Lock, Named, Pipe, RecvError, Semaphore, Shared, TypedPipe, TypedQueue};

/// The typed peer's message: no derive needed (tuples of std types are
/// serde types already).
type Record = (u64, String, Vec<u32>);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("shmipc-peer: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[&str]) -> Res<u8> {
    match args {
        // Decrement a shared u64 `times` times under a lock, in two steps
        // (load, then store) so that only the lock keeps the count exact.
        ["decrement", lock, num, times] => {
            let lock = Shared::<Lock>::open(lock)?;
            let num = Shared::<AtomicU64>::open(num)?;
            for _ in 0..times.parse::<u32>()? {
                let _guard = lock.lock()?;
                let v = num.load(Ordering::Relaxed);
                num.store(v.wrapping_sub(1), Ordering::Relaxed);
            }
            Ok(0)
        }
        // Take a seat, note how many are seated (and the peak), hold it for
        // `hold_ms`, leave.
        ["seat", sem, seated, peak, hold_ms] => {
            let sem = Shared::<Semaphore>::open(sem)?;
            let seated = Shared::<AtomicU32>::open(seated)?;
            let peak = Shared::<AtomicU32>::open(peak)?;
            if !sem.acquire_timeout(Duration::from_secs(30)) {
                return Ok(3);
            }
            let now = seated.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst); // the most seated at once
            std::thread::sleep(Duration::from_millis(hold_ms.parse()?));
            seated.fetch_sub(1, Ordering::SeqCst);
            sem.release()?;
            Ok(0)
        }
        // Wait for an event; say (in the exit code) whether it was set.
        ["wait", event, timeout_ms] => {
            let event = Shared::<Event>::open(event)?;
            let set = event.wait_timeout(Duration::from_millis(timeout_ms.parse()?));
            Ok(if set { 0 } else { 3 })
        }
        // Claim end B of a pipe, echo `rounds` messages back, then expect
        // the other end to close it (exit code 4 if it does not).
        ["pipe-echo", name, rounds] => {
            let end = Pipe::open(name)?;
            let wait = Duration::from_secs(30);
            for _ in 0..rounds.parse::<u32>()? {
                match end.recv_vec_timeout(wait) {
                    Ok(m) => end.send(&m)?,
                    Err(RecvError::Timeout) => return Ok(3),
                    Err(e) => return Err(e.into()),
                }
            }
            match end.recv_vec_timeout(wait) {
                Err(RecvError::Closed) => Ok(0),
                Err(RecvError::Timeout) => Ok(3),
                _ => Ok(4),
            }
        }
        // Claim end B of a typed pipe of Records and answer each with the
        // record's id, its text upper-cased and its numbers summed, until
        // the other end closes it.
        ["typed-echo", name] => {
            let end = TypedPipe::<Record>::open(name)?;
            loop {
                match end.recv_timeout(Duration::from_secs(30)) {
                    Ok((id, text, nums)) => {
                        let sum = nums.iter().sum::<u32>();
                        end.send(&(id, text.to_uppercase(), vec![sum]))?;
                    }
                    Err(e) if e.is_closed() => return Ok(0),
                    Err(e) if e.is_timeout() => return Ok(3),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Open a typed queue of u64s: how a program with the wrong type
        // sees a typed segment.
        ["typed-open-u64", name] => {
            drop(TypedQueue::<u64>::open(name)?);
            Ok(0)
        }
        // Open an object of the given kind and report the error, if any, on
        // stderr: how a separate program sees a wrong name or kind.
        ["open", kind, name] => {
            match *kind {
                "lock" => drop(Shared::<Lock>::open(name)?),
                "event" => drop(Shared::<Event>::open(name)?),
                "semaphore" => drop(Shared::<Semaphore>::open(name)?),
                other => return Err(format!("unknown kind {other}").into()),
            }
            Ok(0)
        }
        _ => Err(format!("unknown command {args:?}").into()),
    }
}
