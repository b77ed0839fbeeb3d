//! shmipc-bridge: named shmipc queues and pipes on one host, bridged to
//! Zenoh key expressions so that processes on other hosts get them, with
//! no broker (Zenoh in peer mode) and no network code in shmipc itself.
//!
//! A [`Bridge`] runs [mappings](MappingConfig): an **export** takes
//! messages out of a named [`ByteQueue`](shmipc::ByteQueue),
//! [`TypedQueue`](shmipc::TypedQueue) or one direction of a
//! [`Pipe`](shmipc::Pipe) and publishes each on a key; an **import**
//! subscribes to a key and puts what arrives into a named queue or pipe
//! end. Producers and consumers use only the shmipc API.
//!
//! # Semantics
//! - **At most once** across hosts: a message taken out of a local queue
//!   and lost on the way (a bridge or a peer dies, a link drops) is not
//!   sent again.
//! - **Order per source:** messages from one exporting bridge on one key
//!   arrive in the order its queue gave them; sources are not ordered
//!   against each other. That holds across a restart too: every export
//!   run has its own run id in the [envelope], larger than the last
//!   run's, and once an import has seen a run's message it drops any
//!   still arriving from an older run (a killed bridge's last messages,
//!   held up behind a full queue, coming in after its successor's first
//!   ones), counting them in [`Counters::late`] (they are among the gaps
//!   already counted). The sequence numbers go on across runs, so what a
//!   killed bridge lost is counted as gaps when its successor's first
//!   message arrives.
//! - **Gaps counted:** every [envelope] carries a sequence number per
//!   source; an import adds the numbers it never saw to
//!   [`Counters::gaps`]. The numbers and the expected ones live in each
//!   mapping's status segment, so they survive a restart, even after a
//!   SIGKILL. An importing bridge killed between putting an envelope's
//!   messages into its queue and recording their numbers counts those it
//!   delivered as gaps too, so `received + gaps` is the number sent or up
//!   to one envelope more. An exporting bridge killed between taking
//!   messages out of its queue and numbering them loses those uncounted
//!   (at most one envelope: [`envelope::BATCH_BYTES`] of payload).
//! - **Batches:** an export puts into one envelope the message it waited
//!   for and whatever else its queue holds at that moment (up to
//!   [`envelope::BATCH_BYTES`]), numbered in turn; the counters below
//!   count messages, not envelopes.
//! - **Backpressure per mapping:** an import either blocks (the wait
//!   reaches back through Zenoh to the exporting bridge, whose queue
//!   fills, whose producer waits) or drops the oldest message of the full
//!   local queue ([`Counters::dropped_oldest`]). A block holds the
//!   stream back for at most `block_timeout_ms` (10 s by default): Zenoh
//!   closes a link whose sender waited that long, what was in flight is
//!   lost (and counted as gaps), and the link is dialled again. An export waits, by
//!   default, until a subscriber on another host matches its key, so that
//!   nobody listening backs the producer up rather than losing messages.
//! - **Lost peers:** Zenoh dials a lost peer again every `retry_ms`
//!   (doubling up to eight times that); the bridge carries on when it is
//!   back ([`Counters::peer_losses`] counts the losses an export saw).
//! - **No Lock, Semaphore, Condition or Barrier across hosts:** those need
//!   every party to agree on one state (who holds the lock, how many
//!   permits are left) while any of them may be cut off, which is
//!   distributed consensus, a different tool. Only messages cross.
//! - **Loop guard:** an import drops envelopes carrying its own bridge's
//!   host id ([`Counters::looped`]), and subscribes to remote
//!   publications only; one bridge may not export and import the same
//!   queue.

mod bridge;
pub mod config;
pub mod envelope;
mod local;
pub mod status;

pub use bridge::{Bridge, BridgeError};
pub use config::{
    Backpressure, Config, ConfigError, Direction, End, KindName, MappingConfig, MAX_SPIN_US,
};
pub use status::{counters, Counters, StatusError};
