//! Key-value store in a SQLite file, one table shared by all labels.

use std::path::{Path, PathBuf};
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

/// Bytes of keys and values each store holds, kept in the file so that every process
/// writing the store counts against the same quota (a node and its worker process share
/// an app's stores): read and updated inside each write's IMMEDIATE transaction, which
/// holds SQLite's write lock.
const USAGE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS wisp_key_value_usage (
    store TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL
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
}

/// Why an operation failed, before it gets the store's context.
enum Failure {
    Sql(rusqlite::Error),
    /// The key refused, and the bytes the store held.
    Quota(String, u64),
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
        let mut conn = open_file(&path)
            .and_then(|conn| {
                conn.execute(SCHEMA, [])?;
                conn.execute(USAGE_SCHEMA, [])?;
                Ok(conn)
            })
            .map_err(|err| {
                KvError::Other(format!(
                    "cannot open {description}: {err}; check that the path is a writable sqlite file"
                ))
            })?;
        measure(&mut conn, label)
            .map_err(|err| KvError::Other(format!("cannot measure {description}: {err}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                label: label.to_owned(),
                description,
                idle: Mutex::new(vec![conn]),
                permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
                quota,
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
            Failure::Quota(key, used) => KvError::QuotaExceeded {
                store: self.description.clone(),
                key,
                used,
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

/// Counts what store `label` holds and records it as its usage: at open, so that a usage
/// row that is missing, or stale after a version of Wisp that did not keep one wrote the
/// file, is set right.
fn measure(conn: &mut Connection, label: &str) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO wisp_key_value_usage (store, bytes) \
         SELECT ?1, COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0) \
         FROM wisp_key_value WHERE store = ?1 \
         ON CONFLICT (store) DO UPDATE SET bytes = excluded.bytes",
        params![label],
    )?;
    tx.commit()
}

/// A write transaction's view of the store's size: what it held when the transaction
/// began, and the change so far.
struct Usage {
    at_start: u64,
    growth: i64,
}

impl Usage {
    /// Reads the store's usage inside a write transaction (IMMEDIATE: no other connection
    /// or process writes until it ends).
    fn read(tx: &Connection, label: &str) -> rusqlite::Result<Self> {
        let bytes: Option<i64> = tx
            .prepare_cached("SELECT bytes FROM wisp_key_value_usage WHERE store = ?1")?
            .query_row(params![label], |row| row.get(0))
            .optional()?;
        Ok(Self {
            at_start: bytes.map_or(0, |b| u64::try_from(b).unwrap_or(0)),
            growth: 0,
        })
    }

    fn now(&self) -> u64 {
        self.at_start.saturating_add_signed(self.growth)
    }

    /// Records the change in the file, before the transaction commits.
    fn save(&self, tx: &Connection, label: &str) -> rusqlite::Result<()> {
        if self.growth != 0 {
            tx.prepare_cached(
                "INSERT INTO wisp_key_value_usage (store, bytes) VALUES (?1, ?2) \
                 ON CONFLICT (store) DO UPDATE SET bytes = excluded.bytes",
            )?
            .execute(params![
                label,
                i64::try_from(self.now()).unwrap_or(i64::MAX)
            ])?;
        }
        Ok(())
    }
}

/// Runs `change` in an IMMEDIATE transaction (SQLite's write lock, which holds across
/// processes, is taken before anything is read) with the store's usage, then records the
/// usage and commits.
fn writing<T>(
    conn: &mut Connection,
    label: &str,
    change: impl FnOnce(&Connection, &mut Usage) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut usage = Usage::read(&tx, label)?;
    let result = change(&tx, &mut usage)?;
    usage.save(&tx, label)?;
    tx.commit()?;
    Ok(result)
}

/// Writes `key` inside a write transaction, refusing growth past the quota.
fn write(
    conn: &Connection,
    inner: &Inner,
    key: &str,
    value: &[u8],
    usage: &mut Usage,
) -> Result<(), Failure> {
    let before = stored_size(conn, &inner.label, key)?;
    let after = (key.len() + value.len()) as u64;
    if after > before && usage.now().saturating_add(after - before) > inner.quota {
        return Err(Failure::Quota(key.to_owned(), usage.now()));
    }
    conn.prepare_cached(UPSERT)?
        .execute(params![inner.label, key, value])?;
    usage.growth += after as i64 - before as i64;
    Ok(())
}

/// Deletes `key` inside a write transaction, counting the bytes freed.
fn remove(conn: &Connection, inner: &Inner, key: &str, usage: &mut Usage) -> Result<(), Failure> {
    let before = stored_size(conn, &inner.label, key)?;
    conn.prepare_cached(DELETE)?
        .execute(params![inner.label, key])?;
    usage.growth -= before as i64;
    Ok(())
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
            writing(conn, &inner.label, |tx, usage| {
                write(tx, inner, &key, &value, usage)
            })
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), KvError>> {
        let key = key.to_owned();
        self.run(format!("delete of key {key:?}"), move |conn, inner| {
            writing(conn, &inner.label, |tx, usage| {
                remove(tx, inner, &key, usage)
            })
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
            // The write lock is taken before reading, so no other connection (or
            // process) can change the value in between.
            writing(conn, &inner.label, |tx, usage| {
                let current = match read(tx, &inner.label, &key)? {
                    None => 0,
                    Some(bytes) => std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|text| text.parse::<i64>().ok())
                        .ok_or_else(|| Failure::NotInteger(key.clone()))?,
                };
                let next = current
                    .checked_add(delta)
                    .ok_or_else(|| Failure::Overflow(key.clone()))?;
                write(tx, inner, &key, next.to_string().as_bytes(), usage)?;
                Ok(next)
            })
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
                // See `increment` for why the write lock comes first.
                writing(conn, &inner.label, |tx, usage| {
                    if read(tx, &inner.label, &key)? != expected {
                        return Ok(false);
                    }
                    write(tx, inner, &key, &new, usage)?;
                    Ok(true)
                })
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
                writing(conn, &inner.label, |tx, usage| {
                    for (key, value) in &items {
                        write(tx, inner, key, value, usage)?;
                    }
                    Ok(())
                })
            },
        )
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'_, Result<(), KvError>> {
        self.run(
            format!("delete of {} keys", keys.len()),
            move |conn, inner| {
                writing(conn, &inner.label, |tx, usage| {
                    for key in &keys {
                        remove(tx, inner, key, usage)?;
                    }
                    Ok(())
                })
            },
        )
    }

    fn describe(&self) -> String {
        self.inner.description.clone()
    }
}
