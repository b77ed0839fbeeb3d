//! The bridge's configuration: a JSON5 file (the format Zenoh's own
//! configuration uses), flags on top of it, and the checks both pass.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::envelope::Kind;

/// Which way a mapping moves messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Take messages out of the local object and publish them.
    Export,
    /// Subscribe and put what arrives into the local object.
    Import,
}

/// What an import does when the local queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backpressure {
    /// Wait for room. The wait reaches back to the publisher: the import
    /// puts each message into the local queue in Zenoh's receiving
    /// thread, so that link's reading stops, the socket buffers fill,
    /// the exporting bridge's `put` blocks, and its local queue fills.
    #[default]
    Block,
    /// Take the oldest message out of the local queue (counted in
    /// `dropped_oldest`) and put the new one in. Queues only: a pipe's
    /// sending end cannot take from its own direction.
    DropOldest,
}

/// The pipe end a pipe mapping claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    /// The creator's end.
    A,
    /// The opener's end.
    B,
}

/// The kind of local object, as the configuration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    /// A [`ByteQueue`](shmipc::ByteQueue).
    Bytes,
    /// A [`TypedQueue`](shmipc::TypedQueue).
    Typed,
    /// One end of a [`Pipe`](shmipc::Pipe): an export takes what the other
    /// end sends to it, an import sends from it to the other end.
    Pipe,
}

impl From<KindName> for Kind {
    fn from(k: KindName) -> Kind {
        match k {
            KindName::Bytes => Kind::Bytes,
            KindName::Typed => Kind::Typed,
            KindName::Pipe => Kind::Pipe,
        }
    }
}

/// One local object bridged to one key expression in one direction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Export or import.
    pub direction: Direction,
    /// The local object's kind.
    pub kind: KindName,
    /// The segment name, after the bridge's `prefix`.
    pub name: String,
    /// The Zenoh key expression (an import may use wildcards).
    pub key: String,
    /// Pipes only: the end the bridge claims.
    #[serde(default)]
    pub end: Option<End>,
    /// Imports only: block or drop the oldest when the queue is full.
    #[serde(default)]
    pub backpressure: Backpressure,
    /// Exports only: take messages out of the local queue only while at
    /// least one subscriber on another host matches the key, so that a
    /// missing importer backs the producer up instead of losing messages
    /// into the void. On by default.
    #[serde(default = "default_true")]
    pub wait_for_subscriber: bool,
    /// How long, in microseconds, the mapping's blocking calls on the local
    /// object (an export's receive, a `block` import's send) poll it before
    /// they sleep on its futex: a message that comes within it costs no
    /// wake-up, and an idle wait costs that much processor time per look
    /// (a look every 50 ms when nothing comes). `None`: the queue's
    /// default ([`WaitStrategy::DEFAULT`](shmipc::WaitStrategy::DEFAULT),
    /// 20 µs of polling, then yielding up to 100 µs); 0 sleeps at once.
    /// Flag option `spin=N`. At most [`MAX_SPIN_US`] (10 ms): a longer
    /// spin would keep an idle mapping's thread on a core most of the time
    /// (a spin as long as the 50 ms look never sleeps at all).
    #[serde(default)]
    pub spin_us: Option<u64>,
}

/// The largest [`MappingConfig::spin_us`] a bridge accepts, in
/// microseconds (10 ms: an idle mapping with it uses a fifth of a core).
pub const MAX_SPIN_US: u64 = 10_000;

/// The wait strategy of a mapping's `spin_us`: poll that long, then sleep
/// (no yielding phase); 0 sleeps at once. Any value is safe to build (the
/// durations saturate), though [`Config::check`] refuses ones above
/// [`MAX_SPIN_US`].
pub(crate) fn wait_strategy(spin_us: u64) -> shmipc::WaitStrategy {
    let d = Duration::from_micros(spin_us);
    shmipc::WaitStrategy::Adaptive { spin: d, window: d }
}

fn default_true() -> bool {
    true
}

/// The Zenoh side: peer mode, no router.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZenohConfig {
    /// Endpoints to listen on (`tcp/127.0.0.1:7450`).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Peers to connect to; a lost one is dialled again every
    /// `retry_ms` (doubling up to 8 times that).
    #[serde(default)]
    pub connect: Vec<String>,
    /// Find peers by UDP multicast too. Off by default: a bridge talks
    /// to the peers it is told about.
    #[serde(default)]
    pub multicast_scouting: bool,
    /// The first reconnect delay, in milliseconds.
    #[serde(default = "default_retry_ms")]
    pub retry_ms: u64,
    /// How long a blocked import may hold the stream back, in
    /// milliseconds: Zenoh closes a link whose sender waited this long for
    /// room (and the link's lease is at least this long, since a blocked
    /// receiver reads no keep-alives). A longer stall loses what was in
    /// flight (counted as gaps) and the link is dialled again.
    #[serde(default = "default_block_timeout_ms")]
    pub block_timeout_ms: u64,
}

fn default_block_timeout_ms() -> u64 {
    10_000
}

fn default_retry_ms() -> u64 {
    500
}

impl Default for ZenohConfig {
    fn default() -> Self {
        ZenohConfig {
            listen: Vec::new(),
            connect: Vec::new(),
            multicast_scouting: false,
            retry_ms: default_retry_ms(),
            block_timeout_ms: default_block_timeout_ms(),
        }
    }
}

/// A whole bridge.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This bridge's identity in every envelope it sends, and what its
    /// loop guard drops when it comes back. Give every bridge its own.
    pub host_id: String,
    /// Put in front of every mapping's segment name (`/hosta-` makes
    /// `jobs` the segment `/hosta-jobs`); empty by default.
    #[serde(default)]
    pub prefix: String,
    /// The Zenoh session.
    #[serde(default)]
    pub zenoh: ZenohConfig,
    /// The mappings.
    #[serde(default)]
    pub mappings: Vec<MappingConfig>,
}

/// A configuration the bridge cannot run: what, where, and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// A configuration with no mappings yet.
    pub fn new(host_id: &str) -> Config {
        Config {
            host_id: host_id.to_owned(),
            prefix: String::new(),
            zenoh: ZenohConfig::default(),
            mappings: Vec::new(),
        }
    }

    /// Reads and checks a JSON5 file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
        Config::from_json5(&text)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))
    }

    /// Parses and checks JSON5 text.
    pub fn from_json5(text: &str) -> Result<Config, ConfigError> {
        let c: Config = json5::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    /// The segment name of mapping `m`: the prefix, then its name.
    pub fn segment(&self, m: &MappingConfig) -> String {
        if self.prefix.is_empty() {
            m.name.clone()
        } else {
            format!("{}{}", self.prefix, m.name.trim_start_matches('/'))
        }
    }

    /// The checks [`Bridge::start`](crate::Bridge::start) makes.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.host_id.is_empty() {
            return Err(ConfigError(
                "host_id is empty: every bridge needs its own".into(),
            ));
        }
        let mut seen = Vec::new();
        for (i, m) in self.mappings.iter().enumerate() {
            let at = format!("mapping {i} ({} {:?})", m.kind_name(), m.name);
            if m.name.trim_start_matches('/').is_empty() {
                return Err(ConfigError(format!("{at}: name is empty")));
            }
            if m.key.is_empty() {
                return Err(ConfigError(format!("{at}: key is empty")));
            }
            if m.direction == Direction::Export && (m.key.contains('*') || m.key.contains('$')) {
                return Err(ConfigError(format!(
                    "{at}: export key {:?} has a wildcard: a publication needs one key",
                    m.key
                )));
            }
            if let Some(us) = m.spin_us.filter(|&us| us > MAX_SPIN_US) {
                return Err(ConfigError(format!(
                    "{at}: spin_us {us} is above {MAX_SPIN_US} (10 ms): a longer spin keeps an \
                     idle mapping on a core; use a smaller one, or 0 to sleep at once"
                )));
            }
            match (m.kind, m.end) {
                (KindName::Pipe, None) => {
                    return Err(ConfigError(format!(
                        "{at}: a pipe mapping needs `end` (a or b)"
                    )))
                }
                (KindName::Bytes | KindName::Typed, Some(_)) => {
                    return Err(ConfigError(format!("{at}: `end` is for pipes only")))
                }
                _ => {}
            }
            if m.kind == KindName::Pipe
                && m.direction == Direction::Import
                && m.backpressure == Backpressure::DropOldest
            {
                return Err(ConfigError(format!(
                    "{at}: backpressure drop-oldest needs a queue: a pipe end cannot take \
                     back what it sent; use block"
                )));
            }
            let status = self.status_name(m);
            if status.len() > shmipc::MAX_NAME_LEN {
                return Err(ConfigError(format!(
                    "{at}: status segment name {status:?} is {} bytes, above {}: shorten the \
                     prefix or the name",
                    status.len(),
                    shmipc::MAX_NAME_LEN
                )));
            }
            if seen.contains(&status) {
                return Err(ConfigError(format!(
                    "{at}: a second {:?} mapping of the same object: one per direction",
                    m.direction
                )));
            }
            seen.push(status);
            let both = self.mappings.iter().any(|o| {
                o.direction != m.direction
                    && o.kind != KindName::Pipe
                    && self.segment(o) == self.segment(m)
            });
            if m.kind != KindName::Pipe && both {
                return Err(ConfigError(format!(
                    "{at}: exported and imported by the same bridge: it would send out again \
                     what it put in (a loop); bridge two queues, one each way"
                )));
            }
        }
        Ok(())
    }

    /// The name of mapping `m`'s status segment, where its counters live:
    /// the segment name, then `.bridge-out` or `.bridge-in` (and the pipe
    /// end). It outlives the bridge, so a restarted bridge goes on with
    /// the sequence numbers and the gap count where the last one stopped.
    pub fn status_name(&self, m: &MappingConfig) -> String {
        let dir = match m.direction {
            Direction::Export => "out",
            Direction::Import => "in",
        };
        let end = match m.end {
            Some(End::A) => "-a",
            Some(End::B) => "-b",
            None => "",
        };
        format!("{}.bridge-{dir}{end}", self.segment(m))
    }

    /// How long the bridge waits between two tries to open a segment that
    /// is not there yet, and between two reconnects at first.
    pub fn retry(&self) -> Duration {
        Duration::from_millis(self.zenoh.retry_ms.max(1))
    }
}

impl MappingConfig {
    /// A mapping with the defaults: block, wait for a subscriber.
    pub fn new(direction: Direction, kind: KindName, name: &str, key: &str) -> MappingConfig {
        MappingConfig {
            direction,
            kind,
            name: name.to_owned(),
            key: key.to_owned(),
            end: None,
            backpressure: Backpressure::Block,
            wait_for_subscriber: true,
            spin_us: None,
        }
    }

    /// Parses the flag form `KIND:NAME=KEY[,OPTION]...`, options being
    /// `block`, `drop-oldest`, `end=a`, `end=b` and `no-wait`.
    pub fn parse(direction: Direction, spec: &str) -> Result<MappingConfig, ConfigError> {
        let bad = |why: &str| {
            ConfigError(format!(
                "mapping {spec:?}: {why} (the form is KIND:NAME=KEY[,OPTION]..., KIND one of \
                 bytes, typed, pipe)"
            ))
        };
        let (kind, rest) = spec
            .split_once(':')
            .ok_or_else(|| bad("no `:` after the kind"))?;
        let kind = match kind {
            "bytes" => KindName::Bytes,
            "typed" => KindName::Typed,
            "pipe" => KindName::Pipe,
            _ => return Err(bad(&format!("unknown kind {kind:?}"))),
        };
        let mut parts = rest.split(',');
        let main = parts.next().unwrap_or_default();
        let (name, key) = main
            .split_once('=')
            .ok_or_else(|| bad("no `=` before the key"))?;
        let mut m = MappingConfig::new(direction, kind, name, key);
        for opt in parts {
            match opt {
                "block" => m.backpressure = Backpressure::Block,
                "drop-oldest" => m.backpressure = Backpressure::DropOldest,
                "end=a" => m.end = Some(End::A),
                "end=b" => m.end = Some(End::B),
                "no-wait" => m.wait_for_subscriber = false,
                o if o.starts_with("spin=") => {
                    let us = o["spin=".len()..]
                        .parse()
                        .map_err(|_| bad(&format!("{o:?}: spin= takes microseconds")))?;
                    m.spin_us = Some(us);
                }
                _ => return Err(bad(&format!("unknown option {opt:?}"))),
            }
        }
        Ok(m)
    }

    fn kind_name(&self) -> &'static str {
        Kind::from(self.kind).name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_parses_and_defaults_fill_in() {
        let c = Config::from_json5(
            r#"{
                host_id: "a",
                prefix: "/hosta-",
                zenoh: { listen: ["tcp/127.0.0.1:7450"] },
                mappings: [
                    { direction: "export", kind: "bytes", name: "/jobs", key: "demo/jobs" },
                    { direction: "import", kind: "typed", name: "orders", key: "demo/*",
                      backpressure: "drop-oldest" },
                ],
            }"#,
        )
        .unwrap();
        assert_eq!(c.segment(&c.mappings[0]), "/hosta-jobs");
        assert_eq!(c.status_name(&c.mappings[1]), "/hosta-orders.bridge-in");
        assert!(c.mappings[0].wait_for_subscriber);
        assert_eq!(c.mappings[1].backpressure, Backpressure::DropOldest);
        assert!(!c.zenoh.multicast_scouting);
    }

    #[test]
    fn bad_configs_say_what_and_why() {
        let err = |text: &str| Config::from_json5(text).unwrap_err().0;
        assert!(err("{ host_id: \"\" }").contains("host_id is empty"));
        assert!(err(
            "{ host_id: \"a\", mappings: [{ direction: \"export\", kind: \"bytes\", name: \"q\", key: \"k/*\" }] }"
        )
        .contains("wildcard"));
        assert!(err(
            "{ host_id: \"a\", mappings: [{ direction: \"import\", kind: \"pipe\", name: \"p\", key: \"k\", end: \"a\", backpressure: \"drop-oldest\" }] }"
        )
        .contains("drop-oldest needs a queue"));
        assert!(err(
            "{ host_id: \"a\", mappings: [{ direction: \"import\", kind: \"pipe\", name: \"p\", key: \"k\" }] }"
        )
        .contains("needs `end`"));
        assert!(err("{ host_id: \"a\", colour: 1 }").contains("colour"));
        // `buffer` went with the channel between Zenoh and the import.
        assert!(err(
            "{ host_id: \"a\", mappings: [{ direction: \"import\", kind: \"bytes\", name: \"q\", key: \"k\", buffer: 8 }] }"
        )
        .contains("buffer"));
    }

    #[test]
    fn flags_parse() {
        let m = MappingConfig::parse(Direction::Import, "pipe:/p=k/p,end=b").unwrap();
        assert_eq!(m.end, Some(End::B));
        assert!(MappingConfig::parse(Direction::Import, "bytes:/p=k,buffer=4").is_err());
        assert!(MappingConfig::parse(Direction::Import, "queue:/p=k").is_err());
        assert!(MappingConfig::parse(Direction::Import, "bytes:/p").is_err());
        assert!(MappingConfig::parse(Direction::Import, "bytes:/p=k,fast").is_err());
        let m = MappingConfig::parse(Direction::Export, "bytes:/p=k,spin=5").unwrap();
        assert_eq!(m.spin_us, Some(5));
        assert!(MappingConfig::parse(Direction::Export, "bytes:/p=k,spin=x").is_err());
    }

    #[test]
    fn spin_us_is_bounded_and_its_extremes_do_not_panic() {
        let with = |spin: u64| {
            let mut c = Config::new("a");
            let mut m = MappingConfig::new(Direction::Export, KindName::Bytes, "q", "k");
            m.spin_us = Some(spin);
            c.mappings = vec![m];
            c.check()
        };
        assert!(with(0).is_ok());
        assert!(with(MAX_SPIN_US).is_ok());
        for huge in [MAX_SPIN_US + 1, u64::MAX / 1000, u64::MAX] {
            let e = with(huge).unwrap_err().0;
            assert!(
                e.contains("spin_us") && e.contains(&huge.to_string()),
                "{e}"
            );
        }
        // A flag too large for u64 is refused as a number, not wrapped.
        assert!(
            MappingConfig::parse(Direction::Export, "bytes:/p=k,spin=18446744073709551616")
                .is_err()
        );
        // The strategy made of any value, even one the check refuses, is
        // built without overflow, and a wait with it ends at its deadline.
        for spin in [0, 1, MAX_SPIN_US, u64::MAX] {
            let w = wait_strategy(spin);
            let cfg = shmipc::BytesConfig::for_max_message(8).unwrap();
            let mut q = <shmipc::ByteQueue as shmipc::Named>::anon(cfg).unwrap();
            q.set_wait_strategy(w);
            let got = q.recv_vec_timeout(Duration::from_millis(2));
            assert_eq!(got, Err(shmipc::RecvError::Timeout), "spin {spin}");
        }
    }
}
