//! Key-value stores: the data behind Spin's `key-value` interfaces.
//!
//! A [`KvStore`] is a cheap, clonable handle around a [`KvBackend`]. The handle
//! enforces the rules that do not depend on the backend (the value size cap)
//! and the backends do the storage: [`KvStore::sqlite`] and [`KvStore::redis`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

mod redis;
mod sqlite;

/// Bytes of keys and values a SQLite-backed store holds at most, unless its runtime config
/// says otherwise (`max_size_mb`).
pub const DEFAULT_STORE_QUOTA: u64 = 1 << 30;

/// Largest value a store accepts, in bytes. Guests get an error above it, so a
/// single call can neither exhaust host memory nor bloat the store.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Longest key a store accepts on write.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// Most bytes one `get_many` or `get_keys` result may hold; past it the call fails
/// instead of the host buffering without bound.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// `get_many` asks the backend for this many distinct keys at a time, checking the
/// running total between batches, so it overshoots the cap by at most one batch.
const GET_MANY_BATCH: usize = 8;

/// Errors of key-value operations. Every message names the store's backend and
/// says what to do; the host maps them all to the guest's `other(string)`.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A write would grow a store past its quota.
    #[error(
        "{store} holds {used} bytes of keys and values; writing key {key:?} would pass its quota of {quota} bytes; delete keys, or raise `max_size_mb` in its runtime-config table"
    )]
    QuotaExceeded {
        /// The store's [`KvStore::describe`] line.
        store: String,
        /// The key being written.
        key: String,
        /// Bytes the store holds.
        used: u64,
        /// Its quota.
        quota: u64,
    },
    /// A value exceeds [`MAX_VALUE_BYTES`].
    #[error(
        "value for key {key:?} in {store} is {size} bytes, over the limit of {max} bytes; store smaller values or split them across keys"
    )]
    ValueTooLarge {
        /// The store's [`KvStore::describe`] line.
        store: String,
        /// The key being written.
        key: String,
        /// Size of the refused value.
        size: usize,
        /// The limit, [`MAX_VALUE_BYTES`].
        max: usize,
    },
    /// Any other failure, with a complete lowercase message.
    #[error("{0}")]
    Other(String),
}

/// Result of a value lookup by key.
pub type Value = Option<Vec<u8>>;

/// A storage backend of a [`KvStore`]. Object safe so the host can hold any
/// backend behind one type; implement it to plug in another kind of storage.
///
/// Semantics every backend must keep: `delete` of a missing key succeeds;
/// `increment` treats a missing key as 0 and stores the result as decimal
/// ASCII text; `increment` and `compare_and_swap` are atomic with respect to
/// every other client of the same storage.
pub trait KvBackend: Send + Sync {
    /// Returns the value of `key`, `None` if absent.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Value, KvError>>;
    /// Writes `value` under `key`, replacing any previous value.
    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<(), KvError>>;
    /// Removes `key`; succeeds when it is absent.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), KvError>>;
    /// Whether `key` has a value.
    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, KvError>>;
    /// All keys of this store.
    fn get_keys(&self) -> BoxFuture<'_, Result<Vec<String>, KvError>>;
    /// Atomically adds `delta` to the integer at `key` and returns the result.
    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64, KvError>>;
    /// Atomically writes `new` if the current value equals `expected`
    /// (`None`: the key is absent); returns whether it wrote.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, KvError>>;
    /// Values of `keys`, in the same order.
    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<(String, Value)>, KvError>>;
    /// Writes all pairs.
    fn set_many(&self, items: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<(), KvError>>;
    /// Removes all `keys`; absent ones are ignored.
    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), KvError>>;
    /// One line naming the backend and its location, without secrets.
    fn describe(&self) -> String;
}

/// A key-value store handle. Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct KvStore {
    backend: Arc<dyn KvBackend>,
}

impl fmt::Debug for KvStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KvStore").field(&self.describe()).finish()
    }
}

impl KvStore {
    /// Wraps any backend.
    pub fn from_backend(backend: Arc<dyn KvBackend>) -> Self {
        Self { backend }
    }

    /// Opens (creating if missing) the SQLite file at `path` and serves the
    /// keys of `store_label` from it. Several labels may share one file, and
    /// several processes may open the same file.
    pub fn sqlite(path: &Path, store_label: &str) -> Result<Self, KvError> {
        Self::sqlite_with_quota(path, store_label, DEFAULT_STORE_QUOTA)
    }

    /// [`KvStore::sqlite`] holding at most `max_bytes` of keys and values: a write that
    /// would grow the store past it fails, naming the store and the quota.
    pub fn sqlite_with_quota(
        path: &Path,
        store_label: &str,
        max_bytes: u64,
    ) -> Result<Self, KvError> {
        let backend = sqlite::SqliteKv::open(path, store_label, max_bytes)?;
        Ok(Self::from_backend(Arc::new(backend)))
    }

    /// Connects to the Redis database of `url` (`redis://[user:pass@]host[:port][/db]`);
    /// the whole database is the store. Fails when the server is unreachable.
    pub async fn redis(url: &str) -> Result<Self, KvError> {
        let backend = redis::RedisKv::open(url).await?;
        Ok(Self::from_backend(Arc::new(backend)))
    }

    /// Returns the value of `key`, `None` if absent.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.backend.get(key).await
    }

    /// Writes `value` under `key`. Refuses values over [`MAX_VALUE_BYTES`].
    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), KvError> {
        self.check_size(key, &value)?;
        self.backend.set(key, value).await
    }

    /// Removes `key`; a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.backend.delete(key).await
    }

    /// Whether `key` has a value.
    pub async fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.backend.exists(key).await
    }

    /// All keys of this store, in no particular order. Fails when they add up to
    /// more than [`MAX_RESULT_BYTES`].
    pub async fn get_keys(&self) -> Result<Vec<String>, KvError> {
        let keys = self.backend.get_keys().await?;
        let total: usize = keys.iter().map(String::len).sum();
        if total > MAX_RESULT_BYTES {
            return Err(KvError::Other(format!(
                "the keys of {} add up to {total} bytes, more than the {MAX_RESULT_BYTES}-byte limit of one listing; use fewer or shorter keys",
                self.describe()
            )));
        }
        Ok(keys)
    }

    /// Atomically adds `delta` to the counter at `key` (missing counts as 0)
    /// and returns the new value. The counter is stored as decimal ASCII text,
    /// like Redis `INCRBY`; a value that is not such an integer is an error.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.check_size(key, &[])?;
        self.backend.increment(key, delta).await
    }

    /// Atomically writes `new` if the current value equals `expected` (`None`
    /// meaning the key is absent). Returns whether the write happened.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Vec<u8>,
    ) -> Result<bool, KvError> {
        self.check_size(key, &new)?;
        self.backend.compare_and_swap(key, expected, new).await
    }

    /// Values of `keys`, paired with their keys in the same order. Each distinct key
    /// is read once; fails when the values add up to more than [`MAX_RESULT_BYTES`].
    pub async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, KvError> {
        let mut distinct: Vec<String> = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut values = std::collections::HashMap::with_capacity(distinct.len());
        let mut total = 0usize;
        for batch in distinct.chunks(GET_MANY_BATCH) {
            for (key, value) in self.backend.get_many(batch.to_vec()).await? {
                total += value.as_ref().map_or(0, Vec::len);
                values.insert(key, value);
            }
            if total > MAX_RESULT_BYTES {
                return Err(KvError::Other(format!(
                    "the values asked for add up to more than the {MAX_RESULT_BYTES}-byte limit of one get-many; ask for fewer keys at a time"
                )));
            }
        }
        // Repeated keys share one read but each gets its own copy; count those too.
        let mut result = Vec::with_capacity(keys.len());
        let mut returned = 0usize;
        for key in keys {
            let value = values.get(&key).cloned().flatten();
            returned += value.as_ref().map_or(0, Vec::len);
            if returned > MAX_RESULT_BYTES {
                return Err(KvError::Other(format!(
                    "the values asked for add up to more than the {MAX_RESULT_BYTES}-byte limit of one get-many; ask for fewer keys at a time"
                )));
            }
            result.push((key, value));
        }
        Ok(result)
    }

    /// Writes all pairs. Refuses the whole batch if any value is too large.
    pub async fn set_many(&self, items: Vec<(String, Vec<u8>)>) -> Result<(), KvError> {
        for (key, value) in &items {
            self.check_size(key, value)?;
        }
        self.backend.set_many(items).await
    }

    /// Removes all `keys`; absent keys are ignored.
    pub async fn delete_many(&self, keys: Vec<String>) -> Result<(), KvError> {
        self.backend.delete_many(keys).await
    }

    /// A start-up summary line such as `sqlite file /data/kv.db (label default)`
    /// or `redis redis://127.0.0.1:6379/0`. Never contains a password.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    fn check_size(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(KvError::Other(format!(
                "a key of {} bytes is longer than the {MAX_KEY_BYTES}-byte limit of {}; use a shorter key (a hash of it, say)",
                key.len(),
                self.describe()
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::ValueTooLarge {
                store: self.describe(),
                key: key.to_owned(),
                size: value.len(),
                max: MAX_VALUE_BYTES,
            });
        }
        Ok(())
    }
}
