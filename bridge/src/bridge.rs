//! The running bridge: one Zenoh session in peer mode, one thread per
//! mapping (an import's thread only watches: its messages go into the
//! local object in the subscriber's callback).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use shmipc::sync::{AtomicBool, Ordering};
use shmipc::{RecvError, SendError};
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample};
use zenoh::{Session, Wait};

use crate::config::{Backpressure, Config, ConfigError, Direction, MappingConfig};
use crate::envelope::{self, host_hash, Header, Kind, BATCH_BYTES, HEADER_LEN};
use crate::local::{Local, Pipes};
use crate::status::{self, Counters, Status, StatusError};

/// How long a mapping's thread sleeps in one wait before it looks at the
/// stop flag again.
const SLICE: Duration = Duration::from_millis(50);

/// Why a bridge did not start.
#[derive(Debug)]
pub enum BridgeError {
    /// The configuration breaks a rule.
    Config(ConfigError),
    /// Zenoh refused the session or a declaration.
    Zenoh(String),
    /// A status segment could not be made.
    Status(StatusError),
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeError::Config(e) => write!(f, "{e}"),
            BridgeError::Zenoh(e) => write!(f, "zenoh: {e}"),
            BridgeError::Status(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BridgeError {}

/// A bridge between this host's named shmipc objects and Zenoh.
///
/// [`Bridge::start`] opens a Zenoh session in peer mode (no router) and
/// starts one thread per mapping; each waits for its segment to exist,
/// then moves messages until the bridge is stopped or dropped. Every
/// message travels in an [envelope](crate::envelope); the semantics
/// (at most once, order per source, gaps counted, backpressure) are in
/// the crate documentation.
pub struct Bridge {
    session: Option<Session>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    mappings: Vec<Arc<MappingState>>,
}

/// What the bridge and a mapping's thread share.
struct MappingState {
    status: Status,
    /// The last error the mapping met (cleared when it runs again).
    error: Mutex<Option<String>>,
}

impl MappingState {
    fn fail(&self, e: impl fmt::Display) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(e.to_string());
        }
    }

    fn clear(&self) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = None;
        }
    }
}

impl Bridge {
    /// Checks `config`, opens the session, creates (or reopens) each
    /// mapping's status segment and starts the mappings.
    pub fn start(config: Config) -> Result<Bridge, BridgeError> {
        config.check().map_err(BridgeError::Config)?;
        let session = zenoh::open(zenoh_config(&config)?)
            .wait()
            .map_err(|e| BridgeError::Zenoh(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let pipes: Pipes = Arc::default();
        let source = host_hash(&config.host_id);
        let mut bridge = Bridge {
            session: None,
            stop: stop.clone(),
            threads: Vec::new(),
            mappings: Vec::new(),
        };
        for m in &config.mappings {
            let state = Arc::new(MappingState {
                status: Status::open_or_create(&config.status_name(m))
                    .map_err(BridgeError::Status)?,
                error: Mutex::new(None),
            });
            bridge.mappings.push(state.clone());
            let job = Job {
                m: m.clone(),
                segment: config.segment(m),
                retry: config.retry(),
                session: session.clone(),
                stop: stop.clone(),
                pipes: pipes.clone(),
                state,
                source,
            };
            let thread = std::thread::Builder::new()
                .name(format!("bridge {}", job.segment))
                .spawn(move || job.run())
                .map_err(|e| BridgeError::Zenoh(format!("spawning a mapping thread: {e}")))?;
            bridge.threads.push(thread);
        }
        bridge.session = Some(session);
        Ok(bridge)
    }

    /// Mapping `i`'s counters (in configuration order).
    pub fn counters(&self, i: usize) -> Option<Result<Counters, StatusError>> {
        self.mappings.get(i).map(|m| m.status.counters())
    }

    /// Mapping `i`'s last error, if it is failing now (a segment not there
    /// yet, a type mismatch, a Zenoh declaration refused).
    pub fn last_error(&self, i: usize) -> Option<String> {
        self.mappings.get(i)?.error.lock().ok()?.clone()
    }

    /// Stops the mappings and closes the session.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(s) = self.session.take() {
            let _ = s.close().wait();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn zenoh_config(config: &Config) -> Result<zenoh::Config, BridgeError> {
    let list = |v: &[String]| {
        let quoted: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", quoted.join(","))
    };
    let retry = config.zenoh.retry_ms.max(1);
    let block = config.zenoh.block_timeout_ms.max(1);
    let retry_policy = format!(
        "{{ period_init_ms: {retry}, period_max_ms: {}, period_increase_factor: 2 }}",
        retry * 8
    );
    let mut zc = zenoh::Config::default();
    let settings = [
        ("mode", "\"peer\"".to_owned()),
        ("listen/endpoints", list(&config.zenoh.listen)),
        ("connect/endpoints", list(&config.zenoh.connect)),
        (
            "scouting/multicast/enabled",
            config.zenoh.multicast_scouting.to_string(),
        ),
        (
            "transport/link/tx/queue/congestion_control/block/wait_before_close",
            (block * 1000).to_string(),
        ),
        ("transport/link/tx/lease", block.max(10_000).to_string()),
        ("connect/retry", retry_policy.clone()),
        ("listen/retry", retry_policy),
    ];
    for (key, value) in settings {
        zc.insert_json5(key, &value)
            .map_err(|e| BridgeError::Zenoh(format!("config {key} = {value}: {e}")))?;
    }
    Ok(zc)
}

/// One mapping's thread.
struct Job {
    m: MappingConfig,
    segment: String,
    retry: Duration,
    session: Session,
    stop: Arc<AtomicBool>,
    pipes: Pipes,
    state: Arc<MappingState>,
    source: u64,
}

impl Job {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn pause(&self) {
        let mut left = self.retry;
        while !self.stopped() && !left.is_zero() {
            let step = left.min(SLICE);
            std::thread::sleep(step);
            left -= step;
        }
    }

    fn run(self) {
        // The segment may not exist yet (its application starts later),
        // or may go away and come back: open it again until it works.
        while !self.stopped() {
            let wait = self.m.spin_us.map(crate::config::wait_strategy);
            let local = match Local::open(self.m.kind, &self.segment, self.m.end, &self.pipes, wait)
            {
                Ok(l) => l,
                Err(e) => {
                    self.state.fail(format!("{} (retrying)", e));
                    self.pause();
                    continue;
                }
            };
            self.state.clear();
            let r = match self.m.direction {
                Direction::Export => self.export(&local),
                Direction::Import => self.import(local),
            };
            if let Err(e) = r {
                self.state.fail(e);
                self.pause();
            }
        }
    }

    fn export(&self, local: &Local) -> Result<(), String> {
        let zerr =
            |e: zenoh::Error| format!("{}: publisher on {:?}: {e}", self.segment, self.m.key);
        let publisher = self
            .session
            .declare_publisher(self.m.key.clone())
            .congestion_control(CongestionControl::Block)
            .allowed_destination(Locality::Remote)
            .wait()
            .map_err(zerr)?;
        let matching = Arc::new(AtomicBool::new(false));
        let flag = matching.clone();
        let _listener = publisher
            .matching_listener()
            .callback(move |s| flag.store(s.matching(), Ordering::Relaxed))
            .wait()
            .map_err(zerr)?;
        if publisher.matching_status().wait().map_err(zerr)?.matching() {
            matching.store(true, Ordering::Relaxed);
        }
        let kind = Kind::from(self.m.kind);
        let shape = local.shape();
        // A killed predecessor may have left `matching` set. This run gets
        // an id above the last one's, and goes on with its numbers.
        let mut seq = 0;
        let mut run = 0;
        let mut messages = 0;
        self.state
            .status
            .update(|w| {
                w[status::MATCHING] = 0;
                run = next_run(w[status::RUN]);
                w[status::RUN] = run;
                seq = w[status::NEXT_SEQ];
                messages = w[status::MESSAGES];
            })
            .map_err(|e| e.to_string())?;
        let mut was_matching = false;
        // The last envelope's length: the next buffer is made that large,
        // so that a stream of like batches is copied out of the queue
        // once, without the vector growing (and copying) on the way.
        let mut hint = local.max_message().min(4096);
        while !self.stopped() {
            let now = matching.load(Ordering::Relaxed);
            if was_matching != now {
                self.state
                    .status
                    .update(|w| {
                        w[status::MATCHING] = u64::from(now);
                        w[status::PEER_LOSSES] += u64::from(!now);
                    })
                    .map_err(|e| e.to_string())?;
            }
            was_matching = now;
            if self.m.wait_for_subscriber && !now {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let mut msg = Vec::with_capacity(HEADER_LEN + hint);
            Header {
                kind,
                count: 0,
                source: self.source,
                run,
                seq,
                shape,
            }
            .write(&mut msg);
            let at = envelope::begin_message(&mut msg);
            match local.recv_append(&mut msg, SLICE) {
                Ok(()) => envelope::end_message(&mut msg, at),
                Err(RecvError::Empty | RecvError::Timeout) => continue,
                Err(RecvError::Disconnected) => {
                    // Every local sender left (end-of-stream); a queue may
                    // get new ones, so wait for them, a slice at a time.
                    std::thread::sleep(SLICE);
                    continue;
                }
                Err(RecvError::Closed) => {
                    // Nothing more will come; wait to be stopped.
                    self.state
                        .fail(format!("{} is closed and drained", self.segment));
                    std::thread::sleep(SLICE);
                    continue;
                }
                Err(e) => return Err(format!("{}: receive: {e}", self.segment)),
            }
            // What the queue holds already goes into the same envelope,
            // without waiting: a burst pays for one sample, a lone
            // message leaves now. Any error here (empty, end-of-stream, a
            // broken queue) ends the batch; the next receive above sees it.
            let mut count: u16 = 1;
            while count < u16::MAX && msg.len() - HEADER_LEN < BATCH_BYTES {
                let at = envelope::begin_message(&mut msg);
                if local.try_recv_append(&mut msg).is_err() {
                    msg.truncate(at);
                    break;
                }
                envelope::end_message(&mut msg, at);
                count += 1;
            }
            envelope::set_count(&mut msg, count);
            hint = msg.len() - HEADER_LEN;
            // The numbers are spent before the messages leave: a bridge
            // killed now loses them, and its successor's next envelope
            // shows the gap.
            // Only this thread writes the two words, so it keeps them and
            // writes them, not the whole segment (one lock, two stores,
            // once per envelope).
            seq += u64::from(count);
            messages += u64::from(count);
            self.state
                .status
                .set(&[(status::NEXT_SEQ, seq), (status::MESSAGES, messages)])
                .map_err(|e| e.to_string())?;
            publisher.put(msg).wait().map_err(zerr)?;
        }
        Ok(())
    }

    fn import(&self, local: Local) -> Result<(), String> {
        let zerr =
            |e: zenoh::Error| format!("{}: subscriber on {:?}: {e}", self.segment, self.m.key);
        // The latest run and next expected sequence number per source;
        // the first slots are kept in the status segment too.
        let words = self.state.status.words().map_err(|e| e.to_string())?;
        let mut sources = HashMap::new();
        for slot in 0..status::SOURCE_SLOTS {
            let at = status::SOURCES_AT + status::SOURCE_WORDS * slot;
            if words[at] != 0 {
                let track = Track {
                    run: words[at + 1],
                    next: words[at + 2],
                };
                sources.insert(
                    words[at],
                    Source {
                        track,
                        at: Some(at),
                    },
                );
            }
        }
        let table = Table {
            sources,
            messages: words[status::MESSAGES],
            dropped: words[status::DROPPED_OLDEST],
        };
        let import = Arc::new(Import {
            want_kind: Kind::from(self.m.kind),
            want_shape: local.shape(),
            max: local.max_message(),
            local,
            backpressure: self.m.backpressure,
            segment: self.segment.clone(),
            stop: self.stop.clone(),
            state: self.state.clone(),
            source: self.source,
            table: Mutex::new(table),
            broken: Mutex::new(None),
        });
        // Each sample is put into the local object in Zenoh's receiving
        // thread, with no channel between: a `block` import that waits
        // holds that link's reading back, which is the backpressure.
        let cb = import.clone();
        let sub = self
            .session
            .declare_subscriber(self.m.key.clone())
            .allowed_origin(Locality::Remote)
            .callback(move |sample| cb.take(&sample))
            .wait()
            .map_err(zerr)?;
        while !self.stopped() {
            let broken = import.broken.lock().ok().and_then(|mut b| b.take());
            if let Some(e) = broken {
                let _ = sub.undeclare().wait();
                return Err(e);
            }
            std::thread::sleep(SLICE);
        }
        sub.undeclare().wait().map_err(zerr)
    }
}

/// An import's state, shared with its subscriber's callback.
struct Import {
    local: Local,
    want_kind: Kind,
    want_shape: [u64; 2],
    max: usize,
    backpressure: Backpressure,
    segment: String,
    stop: Arc<AtomicBool>,
    state: Arc<MappingState>,
    source: u64,
    /// The sources and the counters written on every message. Held while
    /// a message is delivered, so that samples of two links (two sources,
    /// or a dead and a new run of one) go in one at a time.
    table: Mutex<Table>,
    /// An error that needs the local object opened again (the mapping's
    /// thread takes it, drops the subscriber and reopens).
    broken: Mutex<Option<String>>,
}

impl Import {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The subscriber's callback.
    fn take(&self, sample: &Sample) {
        if let Err(e) = self.import(sample) {
            self.state.fail(&e);
            if let Ok(mut b) = self.broken.lock() {
                *b = Some(e);
            }
        }
    }

    fn add(&self, word: usize, n: u64) -> Result<(), String> {
        self.state
            .status
            .update(|w| w[word] = w[word].saturating_add(n))
            .map_err(|e| e.to_string())
    }

    fn import(&self, sample: &Sample) -> Result<(), String> {
        let bytes = sample.payload().to_bytes();
        let (h, msgs) = match Header::read(&bytes) {
            Ok(x) => x,
            Err(e) => {
                self.state
                    .fail(format!("{} from {}: {e}", self.segment, sample.key_expr()));
                return self.add(status::MALFORMED, 1);
            }
        };
        // From here on the counters count messages, not envelopes.
        let n = u64::from(h.count);
        if h.source == self.source {
            return self.add(status::LOOPED, n);
        }
        if let Some(why) = mismatch(&h, self.want_kind, self.want_shape) {
            self.state.fail(format!(
                "{}: an envelope from {} refused: {why}",
                self.segment,
                sample.key_expr()
            ));
            return self.add(status::REJECTED, n);
        }
        let mut table = self
            .table
            .lock()
            .map_err(|_| format!("{}: the table of sources is poisoned", self.segment))?;
        let seen = table.sources.get(&h.source).copied();
        // An envelope whose first numbers were seen already (a replay:
        // an exporter's own envelopes follow each other) delivers only
        // the rest, and counts the others late.
        let skip = seen.map_or(0, |s| overlap(s.track, &h));
        let rest = Header {
            seq: h.seq + skip,
            ..h
        };
        let Some(step) = track(seen.map(|s| s.track), &rest) else {
            return self.add(status::LATE, n);
        };
        let mut refused = 0;
        // At most u16::MAX messages: `skip` is below the count.
        for msg in msgs.skip(skip as usize) {
            if msg.len() > self.max {
                self.state.fail(format!(
                    "{}: a message of {} bytes from {} refused: the local object takes at \
                     most {}",
                    self.segment,
                    msg.len(),
                    sample.key_expr(),
                    self.max
                ));
                refused += 1;
                continue;
            }
            match self.deliver(msg)? {
                Delivered::Yes { dropped } => {
                    table.messages += 1;
                    table.dropped += dropped;
                }
                Delivered::Refused => refused += 1,
            }
        }
        let t = Track {
            run: h.run,
            // At most u64::MAX: `mismatch` refuses an envelope whose
            // numbers run past it.
            next: h.seq + n,
        };
        let (messages, dropped) = (table.messages, table.dropped);
        let err = |e: StatusError| e.to_string();
        // The common case, messages in turn from a known source: only the
        // words that change, under one lock (this import alone writes
        // them, and keeps them), rather than a copy of the whole segment.
        if let Some(Source { at, .. }) =
            seen.filter(|_| refused == 0 && skip == 0 && step == Step::IN_TURN)
        {
            table.sources.insert(h.source, Source { track: t, at });
            let counts = [
                (status::MESSAGES, messages),
                (status::DROPPED_OLDEST, dropped),
            ];
            return match at {
                Some(at) => {
                    let mut w = [(0, 0); 4];
                    w[..2].copy_from_slice(&counts);
                    w[2..].copy_from_slice(&[(at + 1, t.run), (at + 2, t.next)]);
                    self.state.status.set(&w)
                }
                None => self.state.status.set(&counts),
            }
            .map_err(err);
        }
        let mut at = None;
        self.state
            .status
            .update(|w| {
                w[status::MESSAGES] = messages;
                w[status::DROPPED_OLDEST] = dropped;
                w[status::REJECTED] = w[status::REJECTED].saturating_add(refused);
                w[status::LATE] = w[status::LATE].saturating_add(skip);
                add_gap(w, step.gap);
                w[status::SOURCE_RESTARTS] += u64::from(step.restart);
                at = remember(w, h.source, t);
            })
            .map_err(err)?;
        table.sources.insert(h.source, Source { track: t, at });
        Ok(())
    }

    /// Puts one message into the local object, as the backpressure says.
    fn deliver(&self, payload: &[u8]) -> Result<Delivered, String> {
        let local = &self.local;
        let mut dropped = 0;
        loop {
            let r = match self.backpressure {
                Backpressure::Block => local.send_timeout(payload, SLICE),
                Backpressure::DropOldest => local.try_send(payload),
            };
            match r {
                Ok(()) => return Ok(Delivered::Yes { dropped }),
                Err(SendError::Timeout) if !self.stopped() => {}
                Err(SendError::Full) => {
                    if local.drop_oldest() {
                        dropped += 1;
                    }
                }
                Err(SendError::Timeout) => return Ok(Delivered::Refused),
                Err(e @ (SendError::Closed | SendError::TooLarge | SendError::Disconnected)) => {
                    self.state.fail(format!("{}: {e}", self.segment));
                    return Ok(Delivered::Refused);
                }
                Err(e) => return Err(format!("{}: send: {e}", self.segment)),
            }
        }
    }
}

/// What an import knows of its sources, and the counters it writes on
/// every message (kept here, so that a message writes them, not reads).
struct Table {
    sources: HashMap<u64, Source>,
    messages: u64,
    dropped: u64,
}

/// One source's track, and where the status segment's table of sources
/// keeps it (`None` when the table was full).
#[derive(Debug, Clone, Copy)]
struct Source {
    track: Track,
    at: Option<usize>,
}

enum Delivered {
    Yes { dropped: u64 },
    Refused,
}

/// Why an envelope does not fit the local object, if it does not (the
/// length of each message is checked as it is delivered).
fn mismatch(h: &Header, kind: Kind, shape: [u64; 2]) -> Option<String> {
    let raw = |k: Kind| matches!(k, Kind::Bytes | Kind::Pipe);
    if (kind == Kind::Typed) != (h.kind == Kind::Typed) || !(raw(kind) || kind == h.kind) {
        return Some(format!(
            "kind {} into a {} mapping",
            h.kind.name(),
            kind.name()
        ));
    }
    if h.seq.checked_add(u64::from(h.count)).is_none() {
        return Some(format!(
            "sequence numbers {} and {} more: they run past u64::MAX (no number follows it)",
            h.seq,
            h.count - 1
        ));
    }
    if kind == Kind::Typed && h.shape != shape {
        return Some(format!(
            "type fingerprint {:#018x}/{:#x}, the local queue's is {:#018x}/{:#x}",
            h.shape[0], h.shape[1], shape[0], shape[1]
        ));
    }
    None
}

/// An export run's id: the time in nanoseconds since 1970, or one more
/// than the last run's if the clock says less (it went back, or two runs
/// started within its resolution).
fn next_run(last: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    now.max(last.saturating_add(1))
}

/// Where an import is with one source: its latest run seen, and the
/// sequence number it expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Track {
    run: u64,
    next: u64,
}

/// What a message that is not late adds to the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    gap: u64,
    restart: bool,
}

impl Step {
    /// The next number of the run seen, or a newer run going on from it.
    const IN_TURN: Step = Step {
        gap: 0,
        restart: false,
    };
}

/// Whether an envelope from a source last at `seen` is delivered (and
/// what it adds to the counters), or is late and dropped (`None`): of an
/// older run than one seen, or a number of the current run already
/// seen. A newer run goes on with the numbers of the last (the exporting
/// bridge keeps them in its status segment), so the numbers between are
/// gaps; if it starts below them, the source lost its status and began
/// again (a restart, its gap unknown).
fn track(seen: Option<Track>, h: &Header) -> Option<Step> {
    let Some(t) = seen else {
        return Some(Step {
            gap: 0,
            restart: false,
        });
    };
    if h.run < t.run || (h.run == t.run && h.seq < t.next) {
        return None;
    }
    Some(match h.seq.checked_sub(t.next) {
        Some(gap) => Step {
            gap,
            restart: false,
        },
        None => Step {
            gap: 0,
            restart: true,
        },
    })
}

/// How many of `h`'s first messages the track has seen already, when it
/// has seen some but not all (an envelope seen whole is late, for
/// [`track`]).
fn overlap(t: Track, h: &Header) -> u64 {
    let seen = t.next.saturating_sub(h.seq);
    if h.run == t.run && seen < u64::from(h.count) {
        seen
    } else {
        0
    }
}

/// Adds `gap` to the status words' gap count, saturating (a hostile
/// source's numbers may jump by almost 2^64).
fn add_gap(w: &mut [u64], gap: u64) {
    w[status::GAPS] = w[status::GAPS].saturating_add(gap);
}

/// Records `src`'s run and next expected number in the persisted table
/// (a free slot, or the one it had; when all are taken, the table keeps
/// the first eight sources and the rest are tracked in memory only), and
/// says where (the entry's first word), if it did.
fn remember(w: &mut [u64], src: u64, t: Track) -> Option<usize> {
    let mut free = None;
    for slot in 0..status::SOURCE_SLOTS {
        let at = status::SOURCES_AT + status::SOURCE_WORDS * slot;
        if w[at] == src {
            w[at + 1] = t.run;
            w[at + 2] = t.next;
            return Some(at);
        }
        if w[at] == 0 && free.is_none() {
            free = Some(at);
        }
    }
    if let Some(at) = free {
        w[at] = src;
        w[at + 1] = t.run;
        w[at + 2] = t.next;
    }
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(run: u64, seq: u64) -> Header {
        Header {
            kind: Kind::Bytes,
            count: 1,
            source: 7,
            run,
            seq,
            shape: [64, 0],
        }
    }

    const GO: Option<Step> = Some(Step {
        gap: 0,
        restart: false,
    });

    #[test]
    fn a_run_is_tracked_in_order_and_a_newer_one_takes_over() {
        let t = |run, next| Some(Track { run, next });
        assert_eq!(track(None, &h(5, 9)), GO);
        assert_eq!(track(t(5, 10), &h(5, 10)), GO);
        assert_eq!(track(t(5, 10), &h(5, 13)).map(|s| s.gap), Some(3));
        // A repeat of the current run, and the old run after the new one.
        assert_eq!(track(t(5, 10), &h(5, 9)), None);
        assert_eq!(track(t(6, 20), &h(5, 19)), None);
        // The new run goes on with the numbers; those skipped are gaps.
        assert_eq!(track(t(5, 10), &h(6, 14)).map(|s| s.gap), Some(4));
        // A new run below the numbers seen: the source began again.
        assert_eq!(
            track(t(5, 10), &h(6, 0)),
            Some(Step {
                gap: 0,
                restart: true
            })
        );
    }

    #[test]
    fn an_envelope_partly_seen_delivers_only_its_new_messages() {
        let t = Track { run: 5, next: 10 };
        let many = |run, seq, count| Header {
            count,
            ..h(run, seq)
        };
        // Numbers 8..12 where 10 is next: 8 and 9 were seen.
        assert_eq!(overlap(t, &many(5, 8, 4)), 2);
        // In turn, ahead, wholly seen, or of another run: nothing to skip
        // (`track` decides those).
        assert_eq!(overlap(t, &many(5, 10, 4)), 0);
        assert_eq!(overlap(t, &many(5, 12, 4)), 0);
        assert_eq!(overlap(t, &many(5, 6, 4)), 0);
        assert_eq!(track(Some(t), &many(5, 6, 4)), None);
        assert_eq!(overlap(t, &many(6, 8, 4)), 0);
        assert_eq!(overlap(t, &many(4, 8, 4)), 0);
        // The largest envelope, all but its last message seen.
        let t = Track {
            run: 5,
            next: u64::from(u16::MAX) - 1,
        };
        assert_eq!(overlap(t, &many(5, 0, u16::MAX)), u64::from(u16::MAX) - 1);
    }

    #[test]
    fn hostile_numbers_are_refused_or_saturate_never_overflow() {
        // No number follows u64::MAX: refused, not wrapped to 0 (or a
        // panic in a debug build).
        assert!(mismatch(&h(5, u64::MAX), Kind::Bytes, [64, 0]).is_some());
        assert!(mismatch(&h(5, u64::MAX - 1), Kind::Bytes, [64, 0]).is_none());
        // An envelope of many: its last number must be below u64::MAX too.
        let many = |seq, count| Header { count, ..h(5, seq) };
        assert!(mismatch(&many(u64::MAX - 3, 3), Kind::Bytes, [64, 0]).is_none());
        assert!(mismatch(&many(u64::MAX - 3, 4), Kind::Bytes, [64, 0]).is_some());
        assert!(mismatch(&many(u64::MAX, u16::MAX), Kind::Bytes, [64, 0]).is_some());
        // The largest gap there can be is added without overflow.
        let step = track(Some(Track { run: 5, next: 0 }), &h(5, u64::MAX - 1)).unwrap();
        let mut w = vec![0u64; status::WORDS];
        w[status::GAPS] = 7;
        add_gap(&mut w, step.gap);
        assert_eq!(w[status::GAPS], u64::MAX);
    }

    #[test]
    fn run_ids_grow_even_when_the_clock_does_not() {
        let a = next_run(0);
        assert!(a > 0);
        assert!(next_run(a) > a);
        assert_eq!(next_run(u64::MAX - 1), u64::MAX);
    }
}
