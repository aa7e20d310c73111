//! Key-value store in a SQLite file, one table shared by all labels.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt;
use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Semaphore;

use super::{KvBackend, KvError, Value};
use crate::sqlite_open::{open_file, prepare_path};

/// Connections (and blocking threads) one store uses at most. More than one so
/// WAL readers run in parallel; few, because writers serialize anyway.
const MAX_CONNECTIONS: usize = 4;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS wisp_key_value (
    store TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (store, key)
)";

const UPSERT: &str = "INSERT INTO wisp_key_value (store, key, value) VALUES (?1, ?2, ?3)
    ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";
const SELECT: &str = "SELECT value FROM wisp_key_value WHERE store = ?1 AND key = ?2";
const DELETE: &str = "DELETE FROM wisp_key_value WHERE store = ?1 AND key = ?2";

pub(super) struct SqliteKv {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    label: String,
    description: String,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    /// Bytes of keys and values the store may hold.
    quota: u64,
    /// Bytes of keys and values it holds: counted at open, then kept by every write
    /// of this process (writes serialize on SQLite's write lock).
    used: AtomicU64,
}

/// Why an operation failed, before it gets the store's context.
enum Failure {
    Sql(rusqlite::Error),
    Quota(String),
    NotInteger(String),
    Overflow(String),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sql(err)
    }
}

impl SqliteKv {
    pub(super) fn open(path: &Path, label: &str, quota: u64) -> Result<Self, KvError> {
        let path = prepare_path(path).map_err(|err| {
            KvError::Other(format!(
                "cannot create the directory of sqlite key-value file {}: {err}; check the path and its permissions",
                path.display()
            ))
        })?;
        let description = format!("sqlite file {} (label {label})", path.display());
        let conn = open_file(&path)
            .and_then(|conn| conn.execute(SCHEMA, []).map(|_| conn))
            .map_err(|err| {
                KvError::Other(format!(
                    "cannot open {description}: {err}; check that the path is a writable sqlite file"
                ))
            })?;
        let used: i64 = conn
            .query_row(
                "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0) \
                 FROM wisp_key_value WHERE store = ?1",
                params![label],
                |row| row.get(0),
            )
            .map_err(|err| KvError::Other(format!("cannot measure {description}: {err}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                label: label.to_owned(),
                description,
                idle: Mutex::new(vec![conn]),
                permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                quota,
                used: AtomicU64::new(u64::try_from(used).unwrap_or(0)),
            }),
        })
    }

    /// Runs `op` on a pooled connection on the blocking pool. `what` names the
    /// operation in errors.
    fn run<T, F>(&self, what: String, op: F) -> BoxFuture<'static, Result<T, KvError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T, Failure> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        async move {
            // The semaphore bounds connections and blocking threads; it is
            // never closed, so acquiring cannot fail.
            let permit = Arc::clone(&inner.permits)
                .acquire_owned()
                .await
                .map_err(|_| inner.error(&what, "the store was closed"))?;
            let task_inner = Arc::clone(&inner);
            let result = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let inner = task_inner;
                let pooled = inner
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop();
                let mut conn = match pooled {
                    Some(conn) => conn,
                    None => open_file(&inner.path).map_err(Failure::Sql)?,
                };
                let result = op(&mut conn, &inner);
                // A connection is reusable after any error: rusqlite rolls
                // back an unfinished transaction when it is dropped.
                inner
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(conn);
                result
            })
            .await;
            match result {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(failure)) => Err(inner.failure(&what, failure)),
                Err(join) => Err(inner.error(&what, &format!("the worker thread failed: {join}"))),
            }
        }
        .boxed()
    }
}

impl Inner {
    fn error(&self, what: &str, detail: &str) -> KvError {
        KvError::Other(format!("{what} in {} failed: {detail}", self.description))
    }

    fn failure(&self, what: &str, failure: Failure) -> KvError {
        match failure {
            Failure::Sql(err) => {
                let hint = match err.sqlite_error_code() {
                    Some(
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked,
                    ) => {
                        "; another writer kept the file locked past the 5 s busy timeout, retry later"
                    }
                    Some(rusqlite::ErrorCode::DiskFull) => "; free some disk space",
                    Some(
                        rusqlite::ErrorCode::ReadOnly
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::PermissionDenied,
                    ) => "; check that the file and its directory are writable",
                    Some(
                        rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase,
                    ) => "; the file is damaged or not a sqlite database, restore or remove it",
                    _ => "",
                };
                self.error(what, &format!("{err}{hint}"))
            }
            Failure::Quota(key) => KvError::QuotaExceeded {
                store: self.description.clone(),
                key,
                used: self.used.load(Ordering::Relaxed),
                quota: self.quota,
            },
            Failure::NotInteger(key) => KvError::Other(format!(
                "cannot increment key {key:?} in {}: its value is not a decimal integer; \
                 set it to a number or delete it first",
                self.description
            )),
            Failure::Overflow(key) => KvError::Other(format!(
                "cannot increment key {key:?} in {}: the result does not fit in a 64-bit integer",
                self.description
            )),
        }
    }
}

fn read(conn: &Connection, label: &str, key: &str) -> rusqlite::Result<Value> {
    conn.prepare_cached(SELECT)?
        .query_row(params![label, key], |row| row.get(0))
        .optional()
}

/// Bytes `key` takes in the store now (its key and value), 0 if absent.
fn stored_size(conn: &Connection, label: &str, key: &str) -> rusqlite::Result<u64> {
    let size: Option<i64> = conn
        .prepare_cached(
            "SELECT length(CAST(key AS BLOB)) + length(value) FROM wisp_key_value \
             WHERE store = ?1 AND key = ?2",
        )?
        .query_row(params![label, key], |row| row.get(0))
        .optional()?;
    Ok(size.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
}

/// Writes `key` inside a write transaction, refusing growth past the quota; `growth` sums
/// the change in bytes, which the caller adds to `used` once the transaction commits.
fn write(
    conn: &Connection,
    inner: &Inner,
    key: &str,
    value: &[u8],
    growth: &mut i64,
) -> Result<(), Failure> {
    let before = stored_size(conn, &inner.label, key)?;
    let after = (key.len() + value.len()) as u64;
    let used = inner.used.load(Ordering::Acquire);
    let projected = used.saturating_add_signed(*growth);
    if after > before && projected.saturating_add(after - before) > inner.quota {
        return Err(Failure::Quota(key.to_owned()));
    }
    conn.prepare_cached(UPSERT)?
        .execute(params![inner.label, key, value])?;
    *growth += after as i64 - before as i64;
    Ok(())
}

/// Deletes `key` inside a write transaction, adding the bytes freed to `growth`.
fn remove(conn: &Connection, inner: &Inner, key: &str, growth: &mut i64) -> Result<(), Failure> {
    let before = stored_size(conn, &inner.label, key)?;
    conn.prepare_cached(DELETE)?
        .execute(params![inner.label, key])?;
    *growth -= before as i64;
    Ok(())
}

impl Inner {
    /// Records a committed change in the store's size.
    fn grew(&self, growth: i64) {
        if growth >= 0 {
            self.used.fetch_add(growth as u64, Ordering::AcqRel);
        } else {
            let _ = self
                .used
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    Some(used.saturating_sub(growth.unsigned_abs()))
                });
        }
    }
}

impl KvBackend for SqliteKv {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Value, KvError>> {
        let key = key.to_owned();
        self.run(format!("get of key {key:?}"), move |conn, inner| {
            Ok(read(conn, &inner.label, &key)?)
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, Result<(), KvError>> {
        let key = key.to_owned();
        self.run(format!("set of key {key:?}"), move |conn, inner| {
            // IMMEDIATE: the size read and the write see the same row.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut growth = 0;
            write(&tx, inner, &key, &value, &mut growth)?;
            tx.commit()?;
            inner.grew(growth);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        let key = key.to_owned();
        self.run(format!("delete of key {key:?}"), move |conn, inner| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut growth = 0;
            remove(&tx, inner, &key, &mut growth)?;
            tx.commit()?;
            inner.grew(growth);
            Ok(())
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, KvError>> {
        let key = key.to_owned();
        self.run(format!("exists of key {key:?}"), move |conn, inner| {
            let found = conn
                .prepare_cached("SELECT 1 FROM wisp_key_value WHERE store = ?1 AND key = ?2")?
                .exists(params![inner.label, key])?;
            Ok(found)
        })
    }

    fn get_keys(&self) -> BoxFuture<'_, Result<Vec<String>, KvError>> {
        self.run("listing keys".to_owned(), |conn, inner| {
            let mut stmt = conn
                .prepare_cached("SELECT key FROM wisp_key_value WHERE store = ?1 ORDER BY key")?;
            let keys = stmt
                .query_map(params![inner.label], |row| row.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(keys)
        })
    }

    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> BoxFuture<'a, Result<i64, KvError>> {
        let key = key.to_owned();
        self.run(format!("increment of key {key:?}"), move |conn, inner| {
            // IMMEDIATE takes the write lock before reading, so no other
            // connection (or process) can change the value in between.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = match read(&tx, &inner.label, &key)? {
                None => 0,
                Some(bytes) => std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or_else(|| Failure::NotInteger(key.clone()))?,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| Failure::Overflow(key.clone()))?;
            let mut growth = 0;
            write(&tx, inner, &key, next.to_string().as_bytes(), &mut growth)?;
            tx.commit()?;
            inner.grew(growth);
            Ok(next)
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<&'a [u8]>,
        new: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, KvError>> {
        let key = key.to_owned();
        let expected = expected.map(<[u8]>::to_vec);
        self.run(
            format!("compare-and-swap of key {key:?}"),
            move |conn, inner| {
                // See `increment` for why IMMEDIATE.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if read(&tx, &inner.label, &key)? != expected {
                    return Ok(false);
                }
                let mut growth = 0;
                write(&tx, inner, &key, &new, &mut growth)?;
                tx.commit()?;
                inner.grew(growth);
                Ok(true)
            },
        )
    }

    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<Vec<(String, Value)>, KvError>> {
        self.run(format!("get of {} keys", keys.len()), move |conn, inner| {
            // One read transaction gives a consistent snapshot of the batch.
            let tx = conn.transaction()?;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let value = read(&tx, &inner.label, &key)?;
                out.push((key, value));
            }
            tx.commit()?;
            Ok(out)
        })
    }

    fn set_many(&self, items: Vec<(String, Vec<u8>)>) -> BoxFuture<'_, Result<(), KvError>> {
        self.run(
            format!("set of {} keys", items.len()),
            move |conn, inner| {
                // All or nothing, and one fsync instead of one per key.
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut growth = 0;
                for (key, value) in &items {
                    write(&tx, inner, key, value, &mut growth)?;
                }
                tx.commit()?;
                inner.grew(growth);
                Ok(())
            },
        )
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), KvError>> {
        self.run(
            format!("delete of {} keys", keys.len()),
            move |conn, inner| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut growth = 0;
                for key in &keys {
                    remove(&tx, inner, key, &mut growth)?;
                }
                tx.commit()?;
                inner.grew(growth);
                Ok(())
            },
        )
    }

    fn describe(&self) -> String {
        self.inner.description.clone()
    }
}
