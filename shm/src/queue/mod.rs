//! Named (and anonymous) queues: the core's queues, each in a segment of
//! its own, created and opened by name through [`Named`](crate::Named)
//! like every other object. Each type is the core's handle owning its
//! [`Mapping`] (or a thin handle over one), so every queue method is the
//! core's.
//!
//! | type | kind | object area | `params` |
//! |---|---|---|---|
//! | [`Queue<T>`] | [`Kind::QUEUE`](crate::Kind::QUEUE) (64) | the core [`Mpmc`](shmipc_core::Mpmc) | `[capacity, 0, 0, elem]` |
//! | [`SpscQueue<T>`] | [`Kind::SPSC_QUEUE`](crate::Kind::SPSC_QUEUE) (65) | role block, then the core [`Spsc`](shmipc_core::Spsc) | `[capacity, 0, 0, elem]` |
//! | [`ByteQueue`] | [`Kind::BYTE_QUEUE`](crate::Kind::BYTE_QUEUE) (66) | the core byte queue | `[capacity, max_message, 0, 0]` |
//! | [`Pipe`] | [`Kind::PIPE`](crate::Kind::PIPE) (67) | role block, then two core byte queues | `[capacity, max_message, 0, 0]` |
//!
//! `params` holds the core configuration's own words
//! ([`RingConfig::to_words`](shmipc_core::RingConfig::to_words), [`BytesConfig::to_words`](shmipc_core::BytesConfig::to_words)); typed queues put
//! their element type in the last word as `size | align << 32`, so that
//! opening a `Queue<u64>` as a `Queue<u32>` is [`Error::ElementMismatch`].
//! An opener checks kind, element type and parameters in the header, that
//! the object size is exactly what the parameters need, and then the core
//! checks its own control block (magic, kind, element type, geometry)
//! against the mapping's length. Only then is the queue used.

use std::alloc::Layout;

use shmipc_core::bytes::ByteQueue as CoreByteQueue;
use shmipc_core::{BytesConfig, ReadGrant, RecvError, RingConfig};

use crate::error::{Error, Result};
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::named::{check_elem, elem_word};

mod byte_queue;
mod pipe;
#[allow(clippy::module_inception)] // `Queue` is found in `queue/queue.rs`.
mod queue;
mod roles;
mod spsc_queue;

pub use byte_queue::ByteQueue;
pub use pipe::{Pipe, PipeEnd, Side};
pub use queue::Queue;
pub use roles::HeldRole;
pub use spsc_queue::{SpscConsumer, SpscProducer, SpscQueue};

/// The header of a typed queue whose object area has layout `l`: the
/// ring's words, with the element type in the last one.
fn typed_layout<T>(kind: Kind, l: Layout, config: RingConfig) -> ObjectLayout {
    let [a, b, c, _] = config.to_words();
    ObjectLayout::new(kind, l, [a, b, c, elem_word::<T>()])
}

/// Checks the element type recorded in a typed queue's header, decodes its
/// ring configuration, and checks that the object has exactly the layout
/// `layout` gives for it.
fn check_typed<T>(
    name: &str,
    h: &HeaderSnapshot,
    layout: impl FnOnce(RingConfig) -> std::result::Result<Layout, shmipc_core::LayoutError>,
) -> Result<()> {
    check_elem::<T>(name, h.params[3])?;
    let [a, b, c, _] = h.params;
    let config =
        RingConfig::from_words([a, b, c, 0]).map_err(|_| Error::corrupted(name, PARAMS_INVALID))?;
    let l =
        layout(config).map_err(|_| Error::corrupted(name, "the queue's capacity is invalid"))?;
    expect(name, h, l)
}

/// Decodes a byte queue's (or pipe's) configuration from its header and
/// checks that the object has exactly the layout `layout` gives for it
/// (`bad_layout`: the error text if it gives none).
fn check_bytes(
    name: &str,
    h: &HeaderSnapshot,
    bad_layout: &'static str,
    layout: impl FnOnce(BytesConfig) -> std::result::Result<Layout, shmipc_core::LayoutError>,
) -> Result<()> {
    let bad = |what| move |_| Error::corrupted(name, what);
    let config = BytesConfig::from_words(h.params).map_err(bad(PARAMS_INVALID))?;
    CoreByteQueue::layout(config).map_err(bad(PARAMS_INVALID))?;
    expect(name, h, layout(config).map_err(bad(bad_layout))?)
}

/// What a byte queue's header with parameters no queue has is.
const PARAMS_INVALID: &str = "the queue's parameters are invalid";

/// Checks that the object in `h` has exactly the layout `l`.
fn expect(name: &str, h: &HeaderSnapshot, l: Layout) -> Result<()> {
    h.expect_layout(name, l.size() as u64, l.align() as u64, h.params)
}

/// The object area of `memory`, which must be at least `min` bytes (a
/// role block) before the core checks what follows.
fn object(memory: &Mapping, min: usize) -> Result<(*mut u8, usize)> {
    let len = memory.object_len();
    if len < min {
        return Err(Error::corrupted(memory.label(), "the object is too small"));
    }
    Ok((memory.object_ptr(), len))
}

/// Copies a borrowed message out.
pub(crate) fn to_vec<K>(g: &ReadGrant<'_, '_, K>) -> Vec<u8> {
    let mut v = vec![0; g.len()];
    g.copy_to(&mut v);
    v
}

/// Copies a borrowed message out and releases it; `Corrupted` if the
/// record was taken from us meanwhile (see [`ReadGrant::release_checked`]):
/// the copy may be torn.
fn take_vec<K>(g: ReadGrant<'_, '_, K>) -> std::result::Result<Vec<u8>, RecvError> {
    let v = to_vec(&g);
    g.release_checked()?;
    Ok(v)
}
