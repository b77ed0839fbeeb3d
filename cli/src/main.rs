//! `shmipc`: see, inspect and clean what shmipc left in `/dev/shm`.
//!
//! ```text
//! shmipc ls [--all] [--prefix P] [--json]     every shmipc segment, its peers and mappers
//! shmipc inspect NAME [--json]                the live state of one segment (read-only)
//! shmipc rm NAME... [--force] [--json]        unlink segments (foreign files only with --force)
//! shmipc gc [--dry-run] [--prefix P] [--json] unlink segments nobody maps and no live peer holds
//! shmipc watch NAME [--interval S]            inspect again every S seconds
//! ```
//!
//! Everything it knows about a segment comes from the library's read-only
//! inspection API, [`shmipc::inspect`], so it refuses foreign and
//! corrupted files with the library's own errors.

mod procs;
mod render;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use shmipc::inspect::{self, Report};
use shmipc::Error;

use procs::Mappers;

/// Where POSIX shared memory lives.
const SHM_DIR: &str = "/dev/shm";
/// The prefix of the creation fallback's temporary names.
const TMP_PREFIX: &str = ".shmipc-tmp-";

#[derive(Parser)]
#[command(
    name = "shmipc",
    version,
    about = "See, inspect and clean shmipc segments in /dev/shm"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every shmipc segment: kind, parameters, size, mode, owner,
    /// creator, peers and the processes that map it.
    Ls {
        /// Also list foreign files and temporary creation files.
        #[arg(long)]
        all: bool,
        /// Only names that start with this (with or without the slash).
        #[arg(long)]
        prefix: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the live state of one segment. Reads only; changes nothing.
    Inspect {
        /// The segment's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unlink segments by name.
    Rm {
        /// The segments' names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Also remove files that are not (valid) shmipc segments.
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Unlink segments that no live process maps and whose peers are all
    /// dead, and temporary creation files whose creator is gone.
    Gc {
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only names that start with this (with or without the slash).
        #[arg(long)]
        prefix: Option<String>,
        /// Count processes whose maps cannot be read (other users', or
        /// those outside this user namespace) as mapping nothing. Without
        /// it, one such process keeps every segment.
        #[arg(long)]
        ignore_unreadable: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show `inspect` again every interval, until interrupted.
    Watch {
        /// The segment's name.
        name: String,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many refreshes (default: never).
        #[arg(long)]
        count: Option<u64>,
        /// Print one JSON report per refresh, one per line, instead of
        /// redrawing the screen.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ok = match cli.command {
        Command::Ls { all, prefix, json } => ls(all, prefix.as_deref(), json),
        Command::Inspect { name, json } => inspect_one(&name, json),
        Command::Rm { names, force, json } => rm(&names, force, json),
        Command::Gc {
            dry_run,
            prefix,
            ignore_unreadable,
            json,
        } => gc(dry_run, prefix.as_deref(), ignore_unreadable, json),
        Command::Watch {
            name,
            interval,
            count,
            json,
        } => watch(&name, interval, count, json),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What one file in /dev/shm is.
pub enum Entry {
    /// A shmipc segment that passed every check.
    Segment(Box<Report>),
    /// A file that looks like shmipc's but fails a check (corrupted, another
    /// layout version, still initialising...).
    Broken {
        /// Its name.
        name: String,
        /// What the library says is wrong.
        error: Error,
    },
    /// A file shmipc did not make.
    Foreign {
        /// Its name.
        name: String,
        /// What the library says it is.
        error: Error,
    },
    /// A temporary creation file (`.shmipc-tmp-*`).
    Temp {
        /// Its name.
        name: String,
        /// Whether its creator still holds the creator lock (`None`: could
        /// not be asked).
        creator_alive: Option<bool>,
    },
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Segment(r) => &r.name,
            Entry::Broken { name, .. } | Entry::Foreign { name, .. } | Entry::Temp { name, .. } => {
                name
            }
        }
    }
}

/// Whether the library's error says the file is not shmipc's at all.
fn is_foreign(e: &Error) -> bool {
    matches!(e, Error::NotShmipc { .. } | Error::TooSmall { .. })
}

/// Classifies the file `name` (with its slash).
fn classify(name: &str) -> Entry {
    if name.trim_start_matches('/').starts_with(TMP_PREFIX) {
        return Entry::Temp {
            name: name.to_owned(),
            creator_alive: inspect::creator_lock_held(name).ok(),
        };
    }
    match Report::open(name) {
        Ok(r) => Entry::Segment(Box::new(r)),
        Err(error) if is_foreign(&error) => Entry::Foreign {
            name: name.to_owned(),
            error,
        },
        Err(error) => Entry::Broken {
            name: name.to_owned(),
            error,
        },
    }
}

fn normalise(prefix: Option<&str>) -> Option<String> {
    prefix.map(|p| format!("/{}", p.trim_start_matches('/')))
}

/// Every file in /dev/shm whose name starts with `prefix`, classified, in
/// name order.
fn scan(prefix: Option<&str>) -> std::io::Result<Vec<Entry>> {
    let prefix = normalise(prefix);
    let mut names: Vec<String> = std::fs::read_dir(SHM_DIR)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(|n| format!("/{n}")))
        .filter(|n| prefix.as_ref().map_or(true, |p| n.starts_with(p.as_str())))
        .collect();
    names.sort();
    Ok(names.iter().map(|n| classify(n)).collect())
}

fn fail(msg: impl std::fmt::Display) -> bool {
    eprintln!("shmipc: {msg}");
    false
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn ls(all: bool, prefix: Option<&str>, json: bool) -> bool {
    let entries = match scan(prefix) {
        Ok(e) => e,
        Err(e) => return fail(format_args!("cannot list {SHM_DIR}: {e}")),
    };
    let mappers = Mappers::scan();
    let shown: Vec<&Entry> = entries
        .iter()
        .filter(|e| all || matches!(e, Entry::Segment(_) | Entry::Broken { .. }))
        .collect();
    if json {
        let list: Vec<Value> = shown
            .iter()
            .map(|e| render::entry_json(e, &mappers))
            .collect();
        print_json(&json!({
            "segments": list,
            "unreadable_processes": mappers.unreadable,
            "note": "only processes in this pid namespace are visible in /proc",
        }));
    } else {
        print!("{}", render::ls_text(&shown, &mappers));
    }
    true
}

fn inspect_one(name: &str, json: bool) -> bool {
    match Report::open(name) {
        Ok(r) => {
            let mappers = Mappers::scan();
            if json {
                print_json(&render::report_json(&r, &mappers));
            } else {
                print!("{}", render::inspect_text(&r, &mappers));
            }
            true
        }
        Err(e) => fail(e),
    }
}

fn rm(names: &[String], force: bool, json: bool) -> bool {
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let check = Report::open(name);
        let refusal = match &check {
            Ok(_) => None,
            Err(e @ (Error::NotFound { .. } | Error::InvalidName { .. })) => {
                errors.push((name.clone(), e.to_string()));
                continue;
            }
            Err(e) if force => {
                let _ = e;
                None
            }
            Err(e) => Some(format!("{e}; not removed (--force removes it anyway)")),
        };
        if let Some(why) = refusal {
            errors.push((name.clone(), why));
            continue;
        }
        match shmipc::unlink(name) {
            Ok(()) => removed.push(name.clone()),
            Err(e) => errors.push((name.clone(), e.to_string())),
        }
    }
    if json {
        print_json(&json!({
            "removed": removed,
            "errors": errors.iter().map(|(n, e)| json!({"name": n, "error": e})).collect::<Vec<_>>(),
        }));
    } else {
        for n in &removed {
            println!("removed {n}");
        }
    }
    for (n, e) in &errors {
        eprintln!("shmipc: rm {n}: {e}");
    }
    errors.is_empty()
}

/// Why `gc` keeps or removes one entry: `Ok(reason to remove)` or
/// `Err(reason to keep)`.
fn gc_verdict(
    e: &Entry,
    mappers: &Mappers,
    ignore_unreadable: bool,
) -> Option<Result<String, String>> {
    let unreadable = if ignore_unreadable {
        &[][..]
    } else {
        &mappers.unreadable[..]
    };
    match e {
        Entry::Segment(r) => {
            let file = r.file?;
            let pids = mappers.of(file.dev, file.ino);
            if !pids.is_empty() {
                return Some(Err(format!("mapped by {}", render::pid_list(&pids))));
            }
            if let Some(p) = r.peers.iter().find(|p| !p.fate.is_dead()) {
                return Some(Err(format!(
                    "peer slot {} (pid {}) is {}",
                    p.slot, p.pid, p.fate
                )));
            }
            if !unreadable.is_empty() {
                return Some(Err(unreadable_reason(unreadable)));
            }
            Some(Ok(if r.peers.is_empty() {
                "no process maps it and no peer ever attached".to_owned()
            } else {
                format!(
                    "no process maps it and {} dead ({})",
                    match r.peers.len() {
                        1 => "its one peer is".to_owned(),
                        n => format!("all its {n} peers are"),
                    },
                    r.peers
                        .iter()
                        .map(|p| format!("slot {} pid {}", p.slot, p.pid))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }))
        }
        Entry::Temp {
            name,
            creator_alive,
        } => {
            let Ok(st) = std::fs::metadata(format!("{SHM_DIR}{name}")) else {
                return None;
            };
            use std::os::unix::fs::MetadataExt;
            let pids = mappers.of(st.dev(), st.ino());
            if !pids.is_empty() {
                return Some(Err(format!("mapped by {}", render::pid_list(&pids))));
            }
            match creator_alive {
                Some(false) if unreadable.is_empty() => Some(Ok(
                    "a temporary creation file whose creator is gone (its creator lock is free)"
                        .to_owned(),
                )),
                Some(false) => Some(Err(unreadable_reason(unreadable))),
                Some(true) => Some(Err("its creator is still initialising it".to_owned())),
                None => Some(Err("its creator lock could not be asked".to_owned())),
            }
        }
        Entry::Broken { error, .. } => Some(Err(format!("not removed automatically: {error}"))),
        Entry::Foreign { .. } => None,
    }
}

/// Why an unreadable process keeps a segment.
fn unreadable_reason(pids: &[u32]) -> String {
    format!(
        "the maps of {} could not be read, and it may map it (--ignore-unreadable counts \
         such processes as mapping nothing)",
        render::pid_list(pids)
    )
}

fn gc(dry_run: bool, prefix: Option<&str>, ignore_unreadable: bool, json: bool) -> bool {
    let entries = match scan(prefix) {
        Ok(e) => e,
        Err(e) => return fail(format_args!("cannot list {SHM_DIR}: {e}")),
    };
    let mappers = Mappers::scan();
    let mut removed = Vec::new();
    let mut kept = Vec::new();
    let mut errors = Vec::new();
    for e in &entries {
        let name = e.name().to_owned();
        match gc_verdict(e, &mappers, ignore_unreadable) {
            None => {}
            Some(Err(why)) => kept.push((name, why)),
            Some(Ok(why)) => {
                if !dry_run {
                    // Look once more right before the unlink: a peer may
                    // have attached since the scan.
                    let again = classify(&name);
                    match gc_verdict(&again, &Mappers::scan(), ignore_unreadable) {
                        Some(Ok(_)) => {}
                        Some(Err(now)) => {
                            kept.push((name, now));
                            continue;
                        }
                        None => continue,
                    }
                    if let Err(err) = shmipc::unlink(&name) {
                        errors.push((name, err.to_string()));
                        continue;
                    }
                }
                removed.push((name, why));
            }
        }
    }
    let pairs = |v: &[(String, String)]| {
        v.iter()
            .map(|(n, r)| json!({"name": n, "reason": r}))
            .collect::<Vec<_>>()
    };
    if json {
        print_json(&json!({
            "dry_run": dry_run,
            "removed": pairs(&removed),
            "kept": pairs(&kept),
            "errors": pairs(&errors),
        }));
    } else {
        let verb = if dry_run { "would remove" } else { "removed" };
        for (n, r) in &removed {
            println!("{verb} {n}: {r}");
        }
        for (n, r) in &kept {
            println!("kept {n}: {r}");
        }
        if removed.is_empty() && kept.is_empty() {
            println!("nothing to collect");
        }
    }
    for (n, e) in &errors {
        eprintln!("shmipc: gc {n}: {e}");
    }
    errors.is_empty()
}

fn watch(name: &str, interval: f64, count: Option<u64>, json: bool) -> bool {
    if !(interval.is_finite() && interval > 0.0 && interval <= 86_400.0) {
        return fail(format_args!(
            "--interval {interval}: must be a number of seconds above 0 and at most 86400"
        ));
    }
    let interval = Duration::from_secs_f64(interval);
    let mut n = 0u64;
    loop {
        let report = match Report::open(name) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let mappers = Mappers::scan();
        if json {
            println!("{}", render::report_json(&report, &mappers));
        } else {
            // Clear the screen and home the cursor, then the report.
            print!("\x1b[2J\x1b[H{}", render::inspect_text(&report, &mappers));
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return true;
        }
        std::thread::sleep(interval);
    }
}
