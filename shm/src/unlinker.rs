//! Unique segment names that are unlinked when their owner is done.

use std::sync::Mutex;

use crate::sync::{AtomicU64, Ordering};

/// Hands out names unique to this process and unlinks every one of them
/// when dropped — also when the owner unwinds from a panic.
///
/// Only the process that made the `Unlinker` unlinks: a forked child that
/// happens to drop a copy leaves its parent's segments alone.
///
/// ```
/// use shmipc::{Event, Named, Shared, Unlinker};
///
/// let names = Unlinker::new("doc");
/// let name = names.name("ready");            // "/shmipc-doc-<pid>-<n>-0-ready"
/// let ready = Shared::<Event>::create(&name, ())?;
/// ready.set();
/// drop(names);                               // the name is gone now
/// assert!(Shared::<Event>::open(&name).is_err());
/// # Ok::<(), shmipc::Error>(())
/// ```
#[derive(Debug)]
pub struct Unlinker {
    prefix: String,
    owner_pid: u32,
    names: Mutex<Vec<String>>,
}

impl Unlinker {
    /// A new set of names starting `/shmipc-<label>-<pid>-<n>`, where `n`
    /// makes every `Unlinker` of this process distinct.
    pub fn new(label: &str) -> Unlinker {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        Unlinker {
            prefix: format!("/shmipc-{label}-{pid}-{n}"),
            owner_pid: pid,
            names: Mutex::new(Vec::new()),
        }
    }

    /// A fresh name `<prefix>-<k>-<label>` (`k` counts the names handed
    /// out, so every call gives a new name), unlinked when `self` drops.
    pub fn name(&self, label: &str) -> String {
        let mut names = self
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = format!("{}-{}-{label}", self.prefix, names.len());
        names.push(name.clone());
        name
    }

    /// Takes responsibility for unlinking `name` too.
    pub fn adopt(&self, name: &str) {
        self.names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(name.to_owned());
    }
}

impl Drop for Unlinker {
    fn drop(&mut self) {
        if std::process::id() != self.owner_pid {
            return;
        }
        let names = self
            .names
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for name in names.drain(..) {
            // Already gone (or never created) is fine: the goal is its absence.
            let _ = crate::unlink(&name);
        }
    }
}
