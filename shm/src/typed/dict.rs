//! [`TypedDict<K, V>`]: serde keys and values in a [`SharedDict`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shmipc_core::{LayoutError, QueueError};

use super::{decode, encode, encode_key, Fingerprint, MessageError};
use crate::data::DictConfig;
use crate::error::Result;
use crate::memory::{HeaderSnapshot, Kind, Mapping, ObjectLayout};
use crate::{Named, SharedDict};

type R<T> = std::result::Result<T, MessageError>;

/// What a dict of `K` to `V` is about (it holds neither, only encodings:
/// Send and Sync whatever they are).
type Entries<K, V> = fn((K, V)) -> (K, V);

/// A map from `K` to `V` for many processes, like a
/// `multiprocessing.Manager().dict()` without the manager: a
/// [`SharedDict`] whose keys and values are postcard encodings, in a
/// segment that records the pair's [`Fingerprint`]. Made and found
/// through [`Named`].
///
/// [`DictConfig`]'s `max_key` and `max_value` bound the *encoded* sizes
/// (a `String` key of n bytes takes n + 1 to n + 5). Keys are looked up
/// by their encoding, so a key type must encode one value one way (every
/// serde type of std does; a `HashMap` used as a key would not).
///
/// ```
/// use shmipc::{fork, DictConfig, Named, TypedDict};
///
/// let scores = TypedDict::<String, Vec<u32>>::anon(DictConfig::new(16, 32, 64))?;
/// let mut child = fork(|| {
///     i32::from(scores.insert(&"ada".to_owned(), &vec![3, 1, 4]).is_err())
/// })?;
/// assert!(child.join()?.success());
/// assert_eq!(scores.get(&"ada".to_owned())?, Some(vec![3, 1, 4]));
/// assert_eq!(scores.len()?, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedDict<K, V> {
    dict: SharedDict,
    _types: PhantomData<Entries<K, V>>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> Named for TypedDict<K, V> {
    const KIND: Kind = Kind::DICT;
    type Config<'a> = DictConfig;
    type Anon = Self;

    fn fingerprint() -> Option<Fingerprint> {
        Some(Fingerprint::of::<(K, V)>())
    }

    fn layout(config: &DictConfig) -> std::result::Result<ObjectLayout, LayoutError> {
        SharedDict::layout(config)
    }

    unsafe fn init(
        ptr: *mut u8,
        len: usize,
        config: DictConfig,
    ) -> std::result::Result<(), QueueError> {
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { SharedDict::init(ptr, len, config) }
    }

    fn check(name: &str, header: &HeaderSnapshot) -> Result<()> {
        SharedDict::check(name, header)
    }

    fn attach(memory: Mapping, created: bool) -> Result<Self> {
        SharedDict::attach(memory, created).map(Self::wrap)
    }

    fn attach_anon(memory: Mapping) -> Result<Self> {
        SharedDict::attach_anon(memory).map(Self::wrap)
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> TypedDict<K, V> {
    fn wrap(dict: SharedDict) -> Self {
        TypedDict {
            dict,
            _types: PhantomData,
        }
    }

    /// The byte dict underneath.
    pub fn as_bytes(&self) -> &SharedDict {
        &self.dict
    }

    /// The segment's name; `None` for an anonymous dict.
    pub fn name(&self) -> Option<&str> {
        self.dict.name()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&self, key: &K, value: &V) -> R<Option<V>> {
        self.insert_with(key, value, None)
    }

    /// [`TypedDict::insert`], waiting at most `timeout` for the lock.
    pub fn insert_timeout(&self, key: &K, value: &V, timeout: Duration) -> R<Option<V>> {
        self.insert_with(key, value, Some(timeout))
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> R<Option<V>> {
        self.get_with(key, None)
    }

    /// [`TypedDict::get`], waiting at most `timeout` for the lock.
    pub fn get_timeout(&self, key: &K, timeout: Duration) -> R<Option<V>> {
        self.get_with(key, Some(timeout))
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &K) -> R<bool> {
        self.contains_key_with(key, None)
    }

    /// [`TypedDict::contains_key`], waiting at most `timeout` for the lock.
    pub fn contains_key_timeout(&self, key: &K, timeout: Duration) -> R<bool> {
        self.contains_key_with(key, Some(timeout))
    }

    /// Removes `key`; returns its value, if it had one.
    pub fn remove(&self, key: &K) -> R<Option<V>> {
        self.remove_with(key, None)
    }

    /// [`TypedDict::remove`], waiting at most `timeout` for the lock.
    pub fn remove_timeout(&self, key: &K, timeout: Duration) -> R<Option<V>> {
        self.remove_with(key, Some(timeout))
    }

    /// Removes every entry.
    pub fn clear(&self) -> R<()> {
        Ok(self.dict.clear()?)
    }

    /// [`TypedDict::clear`], waiting at most `timeout` for the lock.
    pub fn clear_timeout(&self, timeout: Duration) -> R<()> {
        Ok(self.dict.clear_timeout(timeout)?)
    }

    /// The number of entries.
    pub fn len(&self) -> R<usize> {
        Ok(self.dict.len()?)
    }

    /// [`TypedDict::len`], waiting at most `timeout` for the lock.
    pub fn len_timeout(&self, timeout: Duration) -> R<usize> {
        Ok(self.dict.len_timeout(timeout)?)
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> R<bool> {
        Ok(self.dict.is_empty()?)
    }

    /// [`TypedDict::is_empty`], waiting at most `timeout` for the lock.
    pub fn is_empty_timeout(&self, timeout: Duration) -> R<bool> {
        Ok(self.dict.is_empty_timeout(timeout)?)
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> R<Vec<K>> {
        self.keys_with(None)
    }

    /// [`TypedDict::keys`], waiting at most `timeout` for the lock.
    pub fn keys_timeout(&self, timeout: Duration) -> R<Vec<K>> {
        self.keys_with(Some(timeout))
    }

    /// Every entry, in no particular order.
    pub fn items(&self) -> R<Vec<(K, V)>> {
        self.items_with(None)
    }

    /// [`TypedDict::items`], waiting at most `timeout` for the lock.
    pub fn items_timeout(&self, timeout: Duration) -> R<Vec<(K, V)>> {
        self.items_with(Some(timeout))
    }

    fn value(&self, bytes: Option<Vec<u8>>) -> R<Option<V>> {
        bytes.map(|b| decode(&b, self.name())).transpose()
    }

    fn insert_with(&self, key: &K, value: &V, timeout: Option<Duration>) -> R<Option<V>> {
        let old = encode_key(key, self.name(), |k| {
            encode(value, self.name(), |v| match timeout {
                Some(t) => self.dict.insert_timeout(k, v, t),
                None => self.dict.insert(k, v),
            })
        })???;
        self.value(old)
    }

    fn get_with(&self, key: &K, timeout: Option<Duration>) -> R<Option<V>> {
        let bytes = encode_key(key, self.name(), |k| match timeout {
            Some(t) => self.dict.get_timeout(k, t),
            None => self.dict.get(k),
        })??;
        self.value(bytes)
    }

    fn contains_key_with(&self, key: &K, timeout: Option<Duration>) -> R<bool> {
        Ok(encode_key(key, self.name(), |k| match timeout {
            Some(t) => self.dict.contains_key_timeout(k, t),
            None => self.dict.contains_key(k),
        })??)
    }

    fn remove_with(&self, key: &K, timeout: Option<Duration>) -> R<Option<V>> {
        let bytes = encode_key(key, self.name(), |k| match timeout {
            Some(t) => self.dict.remove_timeout(k, t),
            None => self.dict.remove(k),
        })??;
        self.value(bytes)
    }

    fn keys_with(&self, timeout: Option<Duration>) -> R<Vec<K>> {
        let keys = match timeout {
            Some(t) => self.dict.keys_timeout(t),
            None => self.dict.keys(),
        }?;
        keys.iter().map(|k| decode(k, self.name())).collect()
    }

    fn items_with(&self, timeout: Option<Duration>) -> R<Vec<(K, V)>> {
        let items = match timeout {
            Some(t) => self.dict.items_timeout(t),
            None => self.dict.items(),
        }?;
        items
            .iter()
            .map(|(k, v)| Ok((decode(k, self.name())?, decode(v, self.name())?)))
            .collect()
    }
}

impl<K, V> fmt::Debug for TypedDict<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedDict")
            .field("key", &std::any::type_name::<K>())
            .field("value", &std::any::type_name::<V>())
            .field("dict", &self.dict)
            .finish()
    }
}
