//! Opening SQLite files the same way for key-value stores and databases.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

/// How long a connection waits for another writer before giving up with
/// `SQLITE_BUSY`; bounds every lock wait of a host call.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the parent directory of `path` and returns an absolute form of it,
/// so start-up summaries and errors name the file unambiguously.
pub(crate) fn prepare_path(path: &Path) -> std::io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    if let Some(parent) = absolute.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(absolute)
}

/// Opens (creating if missing) a database file with the settings every
/// connection needs: WAL so readers never block the writer, and a busy timeout
/// so concurrent writers wait instead of failing at once.
pub(crate) fn open_file(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // `journal_mode` is stored in the file; setting it again on an already-WAL
    // file is a no-op that takes no lock.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "sqlite file did not switch to WAL mode");
    }
    // In WAL mode NORMAL still never corrupts the file; it only may lose the
    // last commits on power loss, which is the usual trade for a server.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}
