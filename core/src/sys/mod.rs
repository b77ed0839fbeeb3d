//! Machinery under the primitives: the atomics shim (loom's or the real
//! ones), the futex calls, thread identities and the asymmetric memory
//! barrier. Nothing here is an algorithm; everything the primitives ask
//! of the system goes through these files.

pub(crate) mod atomic;
#[cfg(not(loom))]
pub(crate) mod copy;
pub mod futex;
pub(crate) mod membarrier;
pub(crate) mod tid;
#[cfg(not(loom))]
pub mod waitv;
