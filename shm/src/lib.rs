//! shmipc: named shared-memory IPC.
pub use shmipc_core::*;
