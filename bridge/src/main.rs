//! `shmipc-bridge`: runs a [`Bridge`] from a configuration file and flags
//! until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shmipc_bridge::{Bridge, Config, Direction, MappingConfig};

/// Bridges named shmipc queues and pipes on this host to Zenoh key
/// expressions (peer mode, no router).
#[derive(Parser, Debug)]
#[command(name = "shmipc-bridge", version)]
struct Args {
    /// A JSON5 configuration file (host_id, prefix, zenoh, mappings).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// This bridge's host id (overrides the file's).
    #[arg(long)]
    host_id: Option<String>,
    /// Put in front of every segment name (overrides the file's).
    #[arg(long)]
    prefix: Option<String>,
    /// A Zenoh endpoint to listen on, e.g. tcp/127.0.0.1:7450 (adds to
    /// the file's).
    #[arg(long)]
    listen: Vec<String>,
    /// A peer's endpoint to connect to (adds to the file's).
    #[arg(long)]
    connect: Vec<String>,
    /// Find peers by UDP multicast too.
    #[arg(long)]
    multicast_scouting: bool,
    /// The first reconnect delay in milliseconds (overrides the file's).
    #[arg(long)]
    retry_ms: Option<u64>,
    /// Export KIND:NAME=KEY[,OPTION]... (KIND bytes, typed or pipe;
    /// options end=a|b, no-wait, spin=MICROSECONDS).
    #[arg(long, value_name = "SPEC")]
    export: Vec<String>,
    /// Import KIND:NAME=KEY[,OPTION]... (options block, drop-oldest,
    /// end=a|b, spin=MICROSECONDS).
    #[arg(long, value_name = "SPEC")]
    import: Vec<String>,
}

fn config(args: Args) -> Result<Config, String> {
    let mut c = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::new(""),
    };
    if let Some(h) = args.host_id {
        c.host_id = h;
    }
    if let Some(p) = args.prefix {
        c.prefix = p;
    }
    c.zenoh.listen.extend(args.listen);
    c.zenoh.connect.extend(args.connect);
    c.zenoh.multicast_scouting |= args.multicast_scouting;
    if let Some(r) = args.retry_ms {
        c.zenoh.retry_ms = r;
    }
    for (dir, specs) in [
        (Direction::Export, args.export),
        (Direction::Import, args.import),
    ] {
        for s in specs {
            c.mappings
                .push(MappingConfig::parse(dir, &s).map_err(|e| e.to_string())?);
        }
    }
    if c.host_id.is_empty() {
        return Err("no host id: give --host-id or host_id in the config file".into());
    }
    c.check().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Blocks SIGINT and SIGTERM in every thread (the mask is inherited by the
/// threads started after it), so that `wait_for_signal` takes them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset write only the set they are given,
    // which is a valid, owned sigset_t; pthread_sigmask reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Whether SIGINT or SIGTERM arrived within `timeout`.
fn signalled(set: &libc::sigset_t, timeout: Duration) -> bool {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is a valid signal set and `ts` a valid timespec; a
    // null info pointer is allowed.
    unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) > 0 }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shmipc-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let set = block_signals();
    let names: Vec<String> = config.mappings.iter().map(|m| config.segment(m)).collect();
    let bridge = match Bridge::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shmipc-bridge: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("shmipc-bridge: running {} mapping(s)", names.len());
    let mut shown: Vec<Option<String>> = vec![None; names.len()];
    while !signalled(&set, Duration::from_millis(500)) {
        for (i, seen) in shown.iter_mut().enumerate() {
            let now = bridge.last_error(i);
            if now != *seen {
                match &now {
                    Some(e) => eprintln!("shmipc-bridge: {}: {e}", names[i]),
                    None => eprintln!("shmipc-bridge: {}: running", names[i]),
                }
                *seen = now;
            }
        }
    }
    bridge.stop();
    ExitCode::SUCCESS
}
