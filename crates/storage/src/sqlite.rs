//! SQLite databases: the data behind Spin's `sqlite` interfaces.
//!
//! A [`SqliteDatabase`] is what a label in `runtime-config.toml` resolves to:
//! a file, or a private in-memory database. Each guest `open` becomes a
//! [`SqliteConnection`], a real SQLite connection of its own, so
//! `last-insert-rowid` and `changes` keep SQLite's per-connection meaning.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, InterruptHandle, ToSql};

use crate::sqlite_open::{BUSY_TIMEOUT, open_file, prepare_path};

/// Most bytes of cell data one query may return.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;
/// Most rows one query may return.
pub const MAX_RESULT_ROWS: usize = 1_000_000;
/// Connections open to one database at once, across every instance of every component
/// using it, unless changed with [`SqliteDatabase::with_max_connections`]: each holds a
/// file descriptor and its own page cache. An `open` past it fails with a message saying so.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Bytes a database may grow to through guest connections, unless changed with
/// [`SqliteDatabase::with_max_size`] (`max_size_mb` in the runtime config); past it a
/// write fails with [`SqliteError::DatabaseFull`].
pub const DEFAULT_MAX_SIZE: u64 = 10 << 30;
/// How long one statement may run before it is interrupted, unless changed
/// with [`SqliteDatabase::with_statement_timeout`].
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of SQLite operations, shaped like Spin's `sqlite` `error` variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqliteError {
    /// The database or the disk is full (`SQLITE_FULL`).
    #[error(
        "the database is full (its size limit, `max_size_mb` in the runtime config, or the disk); delete data or raise the limit"
    )]
    DatabaseFull,
    /// Any other failure. For errors raised by SQLite the string is SQLite's
    /// own message, e.g. `near "SELEC": syntax error`.
    #[error("{0}")]
    Io(String),
}

/// A value bound to a parameter or read from a cell, with SQLite's dynamic
/// type.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
    /// SQL NULL.
    Null,
}

/// The result of one statement. Statements that return no rows (INSERT
/// without RETURNING, DDL, ...) give empty `columns` and `rows`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryResult {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<SqlValue>>,
}

/// A SQLite database on disk or in memory. Cheap to clone; clones are the
/// same database.
#[derive(Clone)]
pub struct SqliteDatabase {
    inner: Arc<DatabaseInner>,
    statement_timeout: Duration,
    max_size: u64,
}

struct DatabaseInner {
    target: Target,
    description: String,
    /// One permit per open guest connection.
    connections: Arc<tokio::sync::Semaphore>,
    max_connections: usize,
}

enum Target {
    File {
        path: PathBuf,
        _keep_alive: Mutex<Connection>,
    },
    Memory {
        uri: String,
        /// An in-memory database lives as long as one connection to it does;
        /// this one keeps it alive while the `SqliteDatabase` does.
        _keep_alive: Mutex<Connection>,
    },
}

impl std::fmt::Debug for SqliteDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SqliteDatabase")
            .field(&self.inner.description)
            .finish()
    }
}

impl SqliteDatabase {
    /// Opens (creating if missing, with its parent directories) the database
    /// file at `path`, in WAL mode so readers and a writer run concurrently.
    pub fn file(path: &Path) -> Result<Self, SqliteError> {
        let path = prepare_path(path).map_err(|err| {
            SqliteError::Io(format!(
                "cannot create the directory of sqlite database {}: {err}; check the path and its permissions",
                path.display()
            ))
        })?;
        let keep_alive = open_file(&path).map_err(|err| {
            SqliteError::Io(format!(
                "cannot open sqlite database {}: {err}; check that the path is a writable sqlite file",
                path.display()
            ))
        })?;
        Ok(Self::new(
            format!("sqlite file {}", path.display()),
            Target::File {
                path,
                // Closing the last connection checkpoints the WAL and removes its
                // files; one idle connection keeps that off the request path.
                _keep_alive: Mutex::new(keep_alive),
            },
        ))
    }

    /// Creates a fresh in-memory database, shared by all connections of this
    /// `SqliteDatabase` (and its clones) and by nothing else. It disappears
    /// when the last clone and connection are dropped.
    pub fn in_memory() -> Result<Self, SqliteError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        // The `memdb` VFS with a name starting with '/' is one database shared
        // by every connection of this process that opens the same name, and it
        // uses ordinary locking, so the busy timeout works as for files
        // (unlike shared-cache mode, which fails with SQLITE_LOCKED at once).
        let uri = format!("file:/wisp-memory-{}-{id}?vfs=memdb", std::process::id());
        let keep_alive = open_memory(&uri).map_err(|err| {
            SqliteError::Io(format!("cannot create an in-memory sqlite database: {err}"))
        })?;
        Ok(Self::new(
            "sqlite in-memory database".to_owned(),
            Target::Memory {
                uri,
                _keep_alive: Mutex::new(keep_alive),
            },
        ))
    }

    fn new(description: String, target: Target) -> Self {
        Self::with_inner(description, target, DEFAULT_MAX_CONNECTIONS)
    }

    fn with_inner(description: String, target: Target, max_connections: usize) -> Self {
        Self {
            inner: Arc::new(DatabaseInner {
                target,
                description,
                connections: Arc::new(tokio::sync::Semaphore::new(max_connections)),
                max_connections,
            }),
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            max_size: DEFAULT_MAX_SIZE,
        }
    }

    /// Returns a handle whose connections may grow the database to `bytes` at most (SQLite's
    /// `max_page_count`; a database already larger stays as it is but cannot grow).
    #[must_use]
    pub fn with_max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// Returns the database with at most `max` guest connections open at once (call it
    /// before connecting: the cap belongs to the handle and its clones).
    #[must_use]
    pub fn with_max_connections(self, max: usize) -> Self {
        let (statement_timeout, max_size) = (self.statement_timeout, self.max_size);
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => Self {
                statement_timeout,
                max_size,
                ..Self::with_inner(inner.description, inner.target, max)
            },
            // Shared already: keep the cap it has.
            Err(inner) => Self {
                inner,
                statement_timeout,
                max_size,
            },
        }
    }

    /// Returns a handle whose connections interrupt any statement running
    /// longer than `timeout`.
    #[must_use]
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// A start-up summary line such as `sqlite file /data/app.db`.
    pub fn describe(&self) -> String {
        self.inner.description.clone()
    }

    /// Opens a new connection to this database; fails at once when
    /// [`DEFAULT_MAX_CONNECTIONS`] (or the handle's own cap) are open.
    pub async fn connect(&self) -> Result<SqliteConnection, SqliteError> {
        let permit = Arc::clone(&self.inner.connections)
            .try_acquire_owned()
            .map_err(|_| {
                SqliteError::Io(format!(
                    "{} has {} connections open, its limit; close connections (drop them when \
                     done) or try again later",
                    self.inner.description, self.inner.max_connections
                ))
            })?;
        let db = Arc::clone(&self.inner);
        let max_size = self.max_size;
        let conn = tokio::task::spawn_blocking(move || {
            let conn = match &db.target {
                Target::File { path, .. } => open_file(path),
                Target::Memory { uri, .. } => open_memory(uri),
            }
            .and_then(|mut conn| restrict(&mut conn, max_size).map(|()| conn));
            conn.map_err(|err| {
                SqliteError::Io(format!("cannot connect to {}: {err}", db.description))
            })
            .map(|conn| (conn, db))
        })
        .await
        .map_err(|err| SqliteError::Io(format!("connecting failed: {err}")))?;
        let (conn, db) = conn?;
        Ok(SqliteConnection {
            inner: Arc::new(ConnectionInner {
                gate: tokio::sync::Mutex::new(()),
                interrupt: conn.get_interrupt_handle(),
                conn: Mutex::new(conn),
                last_insert_rowid: AtomicI64::new(0),
                changes: AtomicU64::new(0),
                _db: db,
                _permit: permit,
            }),
            statement_timeout: self.statement_timeout,
        })
    }
}

/// Limits for connections that run guest SQL: no `ATTACH` (which would reach other
/// files, other labels' databases and the key-value stores; it also rules out
/// `VACUUM`), and no string or blob longer than a whole result may be.
fn restrict(conn: &mut Connection, max_size: u64) -> rusqlite::Result<()> {
    use rusqlite::limits::Limit;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    let pages = max_size / u64::try_from(page_size.max(512)).unwrap_or(4096);
    conn.query_row(
        &format!("PRAGMA max_page_count = {}", pages.max(1)),
        [],
        |_| Ok(()),
    )?;
    // The guest may read the limit but not change it.
    conn.authorizer(Some(
        |context: rusqlite::hooks::AuthContext<'_>| match context.action {
            rusqlite::hooks::AuthAction::Pragma {
                pragma_name,
                pragma_value: Some(_),
            } if pragma_name.eq_ignore_ascii_case("max_page_count") => {
                rusqlite::hooks::Authorization::Deny
            }
            _ => rusqlite::hooks::Authorization::Allow,
        },
    ))?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_LENGTH,
        i32::try_from(MAX_RESULT_BYTES).unwrap_or(i32::MAX),
    )?;
    Ok(())
}

fn open_memory(uri: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(uri)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// One connection to a [`SqliteDatabase`].
pub struct SqliteConnection {
    inner: Arc<ConnectionInner>,
    statement_timeout: Duration,
}

struct ConnectionInner {
    /// Queues statements of one connection before they take a blocking thread, so a
    /// guest issuing many concurrent statements cannot fill tokio's blocking pool.
    gate: tokio::sync::Mutex<()>,
    conn: Mutex<Connection>,
    interrupt: InterruptHandle,
    // Updated after every statement, so reading them never waits for a
    // statement running on another task.
    last_insert_rowid: AtomicI64,
    changes: AtomicU64,
    /// Keeps an in-memory database alive while a connection to it exists.
    _db: Arc<DatabaseInner>,
    /// This connection's place under the database's connection cap.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl std::fmt::Debug for SqliteConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SqliteConnection")
            .field(&self.inner._db.description)
            .finish()
    }
}

impl SqliteConnection {
    /// Runs one statement with `params` bound positionally (`?`, `?1`, ...)
    /// and returns its rows (empty for statements that return none).
    pub async fn execute(
        &self,
        statement: String,
        params: Vec<SqlValue>,
    ) -> Result<QueryResult, SqliteError> {
        let _turn = self.inner.gate.lock().await;
        let inner = Arc::clone(&self.inner);
        let mut task = tokio::task::spawn_blocking(move || inner.run(&statement, &params));
        let joined = match tokio::time::timeout(self.statement_timeout, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                // sqlite3_interrupt only stops a statement that is running, so
                // repeat it until the task (maybe still waiting for the
                // connection) has finished.
                let joined = loop {
                    self.inner.interrupt.interrupt();
                    match tokio::time::timeout(Duration::from_millis(50), &mut task).await {
                        Ok(joined) => break joined,
                        Err(_) => continue,
                    }
                };
                // A statement that still finished wins; an error now is the
                // interruption.
                if let Ok(Err(_)) = joined {
                    return Err(SqliteError::Io(format!(
                        "the statement ran longer than {:?} and was interrupted; make it cheaper (add an index, limit the rows)",
                        self.statement_timeout
                    )));
                }
                joined
            }
        };
        joined.map_err(|err| SqliteError::Io(format!("the statement failed: {err}")))?
    }

    /// Runs every statement of `sql` in order (a migration file), without parameters or
    /// results; stops at the first that fails.
    pub async fn execute_batch(&self, sql: String) -> Result<(), SqliteError> {
        let _turn = self.inner.gate.lock().await;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            conn.execute_batch(&sql).map_err(map_error)
        })
        .await
        .map_err(|err| SqliteError::Io(format!("the statements failed: {err}")))?
    }

    /// Row id of the latest successful INSERT on this connection (0 if none).
    pub async fn last_insert_rowid(&self) -> i64 {
        self.inner.last_insert_rowid.load(Ordering::Acquire)
    }

    /// Rows changed by the latest INSERT, UPDATE or DELETE on this connection.
    pub async fn changes(&self) -> u64 {
        self.inner.changes.load(Ordering::Acquire)
    }
}

impl ConnectionInner {
    /// Blocking: prepares, binds and steps one statement.
    fn run(&self, statement: &str, params: &[SqlValue]) -> Result<QueryResult, SqliteError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let result = query(&conn, statement, params);
        self.last_insert_rowid
            .store(conn.last_insert_rowid(), Ordering::Release);
        self.changes.store(conn.changes(), Ordering::Release);
        result
    }
}

fn query(
    conn: &Connection,
    statement: &str,
    params: &[SqlValue],
) -> Result<QueryResult, SqliteError> {
    let mut stmt = conn.prepare_cached(statement).map_err(map_error)?;
    let expected = stmt.parameter_count();
    if params.len() != expected {
        return Err(SqliteError::Io(format!(
            "the statement has {expected} parameters but {} values were given",
            params.len()
        )));
    }
    for (index, value) in params.iter().enumerate() {
        stmt.raw_bind_parameter(index + 1, value)
            .map_err(map_error)?;
    }
    let columns: Vec<String> = stmt.column_names().map(String::from).collect();
    if columns.is_empty() {
        stmt.raw_execute().map_err(map_error)?;
        return Ok(QueryResult::default());
    }
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next().map_err(map_error)? {
        if rows.len() == MAX_RESULT_ROWS {
            return Err(SqliteError::Io(format!(
                "the query returns more than {MAX_RESULT_ROWS} rows; add a LIMIT and page through the results"
            )));
        }
        let mut values = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            let value = match row.get_ref(index).map_err(map_error)? {
                ValueRef::Null => SqlValue::Null,
                ValueRef::Integer(int) => SqlValue::Integer(int),
                ValueRef::Real(real) => SqlValue::Real(real),
                ValueRef::Text(text) => SqlValue::Text(String::from_utf8_lossy(text).into_owned()),
                ValueRef::Blob(blob) => SqlValue::Blob(blob.to_vec()),
            };
            bytes += match &value {
                SqlValue::Text(text) => text.len(),
                SqlValue::Blob(blob) => blob.len(),
                _ => 8,
            };
            values.push(value);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(SqliteError::Io(format!(
                "the query returns more than {} MiB of data; select fewer rows or columns",
                MAX_RESULT_BYTES / (1024 * 1024)
            )));
        }
        rows.push(values);
    }
    Ok(QueryResult { columns, rows })
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Self::Integer(int) => ValueRef::Integer(*int),
            Self::Real(real) => ValueRef::Real(*real),
            Self::Text(text) => ValueRef::Text(text.as_bytes()),
            Self::Blob(blob) => ValueRef::Blob(blob),
            Self::Null => ValueRef::Null,
        }))
    }
}

/// Keeps SQLite's own message, which guests match on.
fn map_error(err: rusqlite::Error) -> SqliteError {
    if err.sqlite_error_code() == Some(ErrorCode::DiskFull) {
        return SqliteError::DatabaseFull;
    }
    match err {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => SqliteError::Io(msg),
        rusqlite::Error::SqlInputError { msg, .. } => SqliteError::Io(msg),
        rusqlite::Error::MultipleStatement => SqliteError::Io(
            "the text holds more than one statement; execute them one at a time".to_owned(),
        ),
        rusqlite::Error::Empty => SqliteError::Io("the statement is empty".to_owned()),
        other => SqliteError::Io(other.to_string()),
    }
}
