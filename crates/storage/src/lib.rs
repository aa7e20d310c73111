//! Storage backends behind Wisp's key-value stores and SQLite databases.
//!
//! The host glue (the WIT bindings for `fermyon:spin/key-value`,
//! `spin:key-value`, `wasi:keyvalue` and `spin:sqlite`) resolves a store or
//! database label from the app's `runtime-config.toml` to one of the handles
//! defined here and forwards each guest call to it. This crate knows nothing
//! about wasmtime or WIT: it is plain async Rust, so it can be tested directly.
//!
//! - [`kv::KvStore`]: a key-value store backed by a SQLite file (several labels
//!   may share one file) or by a Redis database.
//! - [`sqlite::SqliteDatabase`]: a SQLite database on disk or in memory, handing
//!   out independent [`sqlite::SqliteConnection`]s.
//!
//! Every blocking SQLite call runs on tokio's blocking pool, every wait on a
//! lock or a server is bounded by a timeout, and values and query results are
//! size-capped so a guest cannot exhaust host memory.

pub mod kv;
pub mod sqlite;

mod sqlite_open;

pub use kv::{KvError, KvStore, MAX_KEY_BYTES, MAX_RESULT_BYTES, MAX_VALUE_BYTES};
pub use sqlite::{QueryResult, SqlValue, SqliteConnection, SqliteDatabase, SqliteError};
