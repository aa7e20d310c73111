//! SQLite: `fermyon:spin/sqlite@2.0.0`, `spin:sqlite@3.1.0` (which also serves
//! `@3.0.0` imports, and adds WASI 0.3 async forms) and Spin 1.x's unversioned
//! `fermyon:spin/sqlite` (connections as `u32` handles). A database label the component's
//! `sqlite_databases` does not grant gets `access-denied`; SQL errors come back as the
//! `io` variant carrying SQLite's own message.

use crate::bindings::fermyon::spin::sqlite as v2;
use crate::bindings::spin::sqlite::sqlite as v3;
use crate::capability::{AppContext, Capability, Prepared, RuntimeConfigTable};
use crate::runtime_config::RawStore;
use crate::spin1_bindings::fermyon::spin::sqlite as v1;
use crate::{AppPaths, Capabilities, CapabilitiesCtx, CapabilitiesView, HostError, RuntimeConfig};
use futures::future::BoxFuture;
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{Accessor, FutureReader, Linker, Resource, StreamReader};
use wisp_storage::{SqlValue, SqliteConnection, SqliteDatabase, SqliteError};

/// The SQLite capability: `[sqlite_database.<label>]` tables, the databases each
/// component's `sqlite_databases` names, and the interfaces above.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sqlite;

/// An SQLite database's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqliteDatabaseConfig {
    /// `type = "spin"` with `path`: a file; without `path`: an in-memory database that
    /// lives as long as the process. Guests may grow it to `max_size` bytes
    /// (`max_size_mb`).
    File {
        path: Option<PathBuf>,
        max_size: u64,
    },
}

#[derive(Deserialize)]
struct Tables {
    #[serde(default)]
    sqlite_database: IndexMap<String, RawStore>,
}

/// A component's grant: the databases its `sqlite_databases` names, opened.
struct Databases(HashMap<String, SqliteDatabase>);

impl Sqlite {
    /// The `[sqlite_database.<label>]` tables of `config`, checked.
    pub fn databases(
        config: &RuntimeConfig,
    ) -> Result<IndexMap<String, SqliteDatabaseConfig>, HostError> {
        let tables: Tables = config.section()?;
        let mut databases = IndexMap::new();
        for (label, database) in tables.sqlite_database {
            let database = match database {
                RawStore::Spin { path, max_size_mb } => SqliteDatabaseConfig::File {
                    path: path.map(|p| config.path(p)),
                    max_size: crate::runtime_config::max_size(
                        config,
                        &format!("sqlite_database.{label}"),
                        max_size_mb,
                        wisp_storage::sqlite::DEFAULT_MAX_SIZE,
                    )?,
                },
                RawStore::Redis { .. } => {
                    return Err(config.invalid(format!(
                        "[sqlite_database.{label}] cannot be of type \"redis\"; use type = \"spin\" with a `path`"
                    )));
                }
            };
            databases.insert(label, database);
        }
        Ok(databases)
    }
}

impl Sqlite {
    /// Runs `sql` (one statement, or a file's statements with `batch`) against the
    /// database `label` as the app's components would open it, before the app serves
    /// (`wisp up --sqlite`, as `spin up --sqlite`). An in-memory database is refused: what
    /// ran here would be gone before the app opened it.
    pub async fn seed(
        config: &RuntimeConfig,
        paths: &AppPaths,
        label: &str,
        sql: &str,
        batch: bool,
    ) -> Result<(), HostError> {
        let configured = Self::databases(config)?;
        let failed = |message: String| HostError::Database {
            label: label.to_owned(),
            message,
        };
        if label != "default" && !configured.contains_key(label) {
            return Err(failed(format!(
                "no such database; add a [sqlite_database.{label}] table to the runtime config file"
            )));
        }
        if let Some(SqliteDatabaseConfig::File { path: None, .. }) = configured.get(label) {
            return Err(failed(
                "it is in memory, so statements run before the app starts would be lost; give it a `path` in the runtime config".to_owned(),
            ));
        }
        let database = open_database(label, "--sqlite", configured.get(label), paths)?;
        let connection = database
            .connect()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let result = match batch {
            true => connection.execute_batch(sql.to_owned()).await,
            false => connection
                .execute(sql.to_owned(), Vec::new())
                .await
                .map(drop),
        };
        result.map_err(|e| failed(e.to_string()))
    }
}

impl Capability for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn runtime_config_tables(&self) -> &'static [RuntimeConfigTable] {
        &[RuntimeConfigTable {
            key: "sqlite_database",
            syntax: "[sqlite_database.<label>]",
        }]
    }

    fn check_runtime_config(&self, config: &RuntimeConfig) -> Result<(), HostError> {
        Self::databases(config).map(drop)
    }

    /// Opens each database some component is granted, once, and checks that every
    /// granted label has a backend.
    fn prepare<'a>(
        &'a self,
        app: &'a AppContext<'a>,
    ) -> BoxFuture<'a, Result<Prepared, HostError>> {
        Box::pin(async move {
            let configured = Self::databases(app.runtime_config)?;
            let mut prepared = Prepared::default();
            let mut databases: HashMap<String, SqliteDatabase> = HashMap::new();
            for component in &app.locked.components {
                let mut granted = HashMap::new();
                for label in &component.metadata.databases {
                    if !databases.contains_key(label) {
                        let database =
                            open_database(label, &component.id, configured.get(label), app.paths)?;
                        prepared.summary(format!(
                            "SQLite database `{label}`: {}",
                            database.describe()
                        ));
                        databases.insert(label.clone(), database);
                    }
                    granted.insert(label.clone(), databases[label].clone());
                }
                if !granted.is_empty() {
                    prepared.grant(&component.id, Databases(granted));
                }
            }
            Ok(prepared)
        })
    }

    fn add_to_linker<T: CapabilitiesView + 'static>(
        linker: &mut Linker<T>,
    ) -> wasmtime::Result<()> {
        v2::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v3::add_to_linker::<T, Capabilities>(linker, crate::view)?;
        v1::add_to_linker::<T, Capabilities>(linker, crate::view)
    }
}

fn open_database(
    label: &str,
    component: &str,
    config: Option<&SqliteDatabaseConfig>,
    paths: &AppPaths,
) -> Result<SqliteDatabase, HostError> {
    let backend_error = |e: wisp_storage::SqliteError| HostError::Database {
        label: label.to_owned(),
        message: e.to_string(),
    };
    match config {
        Some(SqliteDatabaseConfig::File {
            path: Some(path),
            max_size,
        }) => SqliteDatabase::file(path)
            .map(|db| db.with_max_size(*max_size))
            .map_err(backend_error),
        Some(SqliteDatabaseConfig::File {
            path: None,
            max_size,
        }) => SqliteDatabase::in_memory()
            .map(|db| db.with_max_size(*max_size))
            .map_err(backend_error),
        None if label == "default" => {
            SqliteDatabase::file(&paths.state_dir.join("sqlite_db.db")).map_err(backend_error)
        }
        None => Err(HostError::UnknownDatabase {
            component: component.to_owned(),
            label: label.to_owned(),
        }),
    }
}

/// An open connection; shared with in-flight async calls.
pub struct OpenConnection {
    connection: Arc<SqliteConnection>,
}

enum OpenError {
    AccessDenied,
    TableFull,
    Backend(SqliteError),
}

impl CapabilitiesCtx<'_> {
    /// Finds the granted database; connecting happens outside the borrow.
    fn database(&mut self, label: &str) -> Result<SqliteDatabase, OpenError> {
        let granted = self.state.caps.grant::<Databases>();
        match granted.and_then(|databases| databases.0.get(label)) {
            Some(database) => Ok(database.clone()),
            None => {
                tracing::debug!(component = %self.state.caps.id, "SQLite database `{label}` is not granted");
                Err(OpenError::AccessDenied)
            }
        }
    }

    fn push_connection(
        &mut self,
        connection: SqliteConnection,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, OpenError>> {
        if !self.state.reserve_handle() {
            return Ok(Err(OpenError::TableFull));
        }
        Ok(Ok(self.table.push(OpenConnection {
            connection: Arc::new(connection),
        })?))
    }

    fn connection_of(
        &self,
        handle: &Resource<OpenConnection>,
    ) -> wasmtime::Result<Arc<SqliteConnection>> {
        Ok(self.table.get(handle)?.connection.clone())
    }

    fn close_connection(&mut self, handle: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.state.release_handle();
        Ok(())
    }

    async fn open_connection(
        &mut self,
        label: &str,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, OpenError>> {
        let database = match self.database(label) {
            Ok(database) => database,
            Err(e) => return Ok(Err(e)),
        };
        match database.connect().await {
            Ok(connection) => self.push_connection(connection),
            Err(e) => Ok(Err(OpenError::Backend(e))),
        }
    }
}

/// Conversions between the storage types and one version's generated WIT types (the
/// two versions declare identical but distinct types).
macro_rules! conversions {
    ($wit:ident) => {
        pub(super) fn to_wit(value: SqlValue) -> $wit::Value {
            match value {
                SqlValue::Integer(i) => $wit::Value::Integer(i),
                SqlValue::Real(f) => $wit::Value::Real(f),
                SqlValue::Text(s) => $wit::Value::Text(s),
                SqlValue::Blob(b) => $wit::Value::Blob(b),
                SqlValue::Null => $wit::Value::Null,
            }
        }

        pub(super) fn from_wit(value: $wit::Value) -> SqlValue {
            match value {
                $wit::Value::Integer(i) => SqlValue::Integer(i),
                $wit::Value::Real(f) => SqlValue::Real(f),
                $wit::Value::Text(s) => SqlValue::Text(s),
                $wit::Value::Blob(b) => SqlValue::Blob(b),
                $wit::Value::Null => SqlValue::Null,
            }
        }

        pub(super) fn error(error: SqliteError) -> $wit::Error {
            match error {
                SqliteError::DatabaseFull => $wit::Error::DatabaseFull,
                other => $wit::Error::Io(other.to_string()),
            }
        }

        pub(super) fn open_error(open: super::OpenError) -> $wit::Error {
            match open {
                super::OpenError::AccessDenied => $wit::Error::AccessDenied,
                super::OpenError::TableFull => $wit::Error::Io(format!(
                    "this instance already holds {} open connections; drop some first",
                    crate::MAX_OPEN_HANDLES
                )),
                super::OpenError::Backend(e) => error(e),
            }
        }

        pub(super) async fn execute(
            connection: &SqliteConnection,
            statement: String,
            parameters: Vec<$wit::Value>,
        ) -> Result<(Vec<String>, Vec<$wit::RowResult>), $wit::Error> {
            let parameters = parameters.into_iter().map(from_wit).collect();
            let result = connection
                .execute(statement, parameters)
                .await
                .map_err(error)?;
            let rows = result
                .rows
                .into_iter()
                .map(|row| $wit::RowResult {
                    values: row.into_iter().map(to_wit).collect(),
                })
                .collect();
            Ok((result.columns, rows))
        }
    };
}

mod convert_v2 {
    use super::*;
    conversions!(v2);
}

mod convert_v3 {
    use super::*;
    conversions!(v3);
}

mod convert_v1 {
    use super::*;
    conversions!(v1);
}

impl v1::Host for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<v1::Connection, v1::Error>> {
        Ok(self
            .open_connection(&database)
            .await?
            .map(|handle| handle.rep())
            .map_err(convert_v1::open_error))
    }

    async fn execute(
        &mut self,
        connection: v1::Connection,
        statement: String,
        parameters: Vec<v1::Value>,
    ) -> wasmtime::Result<Result<v1::QueryResult, v1::Error>> {
        // A number naming no connection (or another kind of handle) is the interface's
        // `invalid-connection`, not a trap.
        let handle = Resource::<OpenConnection>::new_borrow(connection);
        let Ok(connection) = self.connection_of(&handle) else {
            return Ok(Err(v1::Error::InvalidConnection));
        };
        self.state.metrics().sqlite_statement();
        let _span = sqlite_span(self.state);
        Ok(convert_v1::execute(&connection, statement, parameters)
            .await
            .map(|(columns, rows)| v1::QueryResult { columns, rows }))
    }

    async fn close(&mut self, connection: v1::Connection) -> wasmtime::Result<()> {
        let handle = Resource::<OpenConnection>::new_own(connection);
        if self.connection_of(&handle).is_ok() {
            self.close_connection(handle)?;
        }
        Ok(())
    }
}

impl v2::Host for CapabilitiesCtx<'_> {}

impl v2::HostConnection for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, v2::Error>> {
        Ok(self
            .open_connection(&database)
            .await?
            .map_err(convert_v2::open_error))
    }

    async fn execute(
        &mut self,
        connection: Resource<OpenConnection>,
        statement: String,
        parameters: Vec<v2::Value>,
    ) -> wasmtime::Result<Result<v2::QueryResult, v2::Error>> {
        let connection = self.connection_of(&connection)?;
        self.state.metrics().sqlite_statement();
        let _span = sqlite_span(self.state);
        Ok(convert_v2::execute(&connection, statement, parameters)
            .await
            .map(|(columns, rows)| v2::QueryResult { columns, rows }))
    }

    async fn drop(&mut self, connection: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.close_connection(connection)
    }
}

impl v3::Host for CapabilitiesCtx<'_> {}

impl v3::HostConnection for CapabilitiesCtx<'_> {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, v3::Error>> {
        Ok(self
            .open_connection(&database)
            .await?
            .map_err(convert_v3::open_error))
    }

    async fn execute(
        &mut self,
        connection: Resource<OpenConnection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<Result<v3::QueryResult, v3::Error>> {
        let connection = self.connection_of(&connection)?;
        self.state.metrics().sqlite_statement();
        let _span = sqlite_span(self.state);
        Ok(convert_v3::execute(&connection, statement, parameters)
            .await
            .map(|(columns, rows)| v3::QueryResult { columns, rows }))
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<OpenConnection>,
    ) -> wasmtime::Result<i64> {
        let connection = self.connection_of(&connection)?;
        Ok(connection.last_insert_rowid().await)
    }

    async fn changes(&mut self, connection: Resource<OpenConnection>) -> wasmtime::Result<u64> {
        let connection = self.connection_of(&connection)?;
        Ok(connection.changes().await)
    }

    async fn drop(&mut self, connection: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.close_connection(connection)
    }
}

fn v3_connection<T>(
    accessor: &Accessor<T, Capabilities>,
    handle: &Resource<OpenConnection>,
) -> wasmtime::Result<Arc<SqliteConnection>> {
    accessor.with(|mut access| access.get().connection_of(handle))
}

impl<T> v3::HostConnectionWithStore<T> for Capabilities {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, v3::Error>> {
        let database = match accessor.with(|mut access| access.get().database(&database)) {
            Ok(database) => database,
            Err(e) => return Ok(Err(convert_v3::open_error(e))),
        };
        let connection = match database.connect().await {
            Ok(connection) => connection,
            Err(e) => return Ok(Err(convert_v3::open_error(OpenError::Backend(e)))),
        };
        Ok(accessor
            .with(|mut access| access.get().push_connection(connection))?
            .map_err(convert_v3::open_error))
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<OpenConnection>,
        statement: String,
        parameters: Vec<v3::Value>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<String>,
                StreamReader<v3::RowResult>,
                FutureReader<Result<(), v3::Error>>,
            ),
            v3::Error,
        >,
    > {
        let connection = v3_connection(accessor, &connection)?;
        let _span = accessor.with(|mut access| {
            let state = access.get().state;
            state.metrics().sqlite_statement();
            sqlite_span(state)
        });
        let (columns, rows) = match convert_v3::execute(&connection, statement, parameters).await {
            Ok(result) => result,
            Err(e) => return Ok(Err(e)),
        };
        accessor.with(|mut access| {
            let rows = StreamReader::new(&mut access, rows)?;
            let done = FutureReader::new(&mut access, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((columns, rows, done)))
        })
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<OpenConnection>,
    ) -> wasmtime::Result<i64> {
        Ok(v3_connection(accessor, &connection)?
            .last_insert_rowid()
            .await)
    }

    async fn changes_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<OpenConnection>,
    ) -> wasmtime::Result<u64> {
        Ok(v3_connection(accessor, &connection)?.changes().await)
    }
}

/// The span of one statement, when the request is traced (it ends when dropped).
fn sqlite_span(state: &crate::InstanceState) -> Option<wisp_telemetry::Span> {
    state.span("sqlite").map(|mut span| {
        span.set("db.system.name", "sqlite");
        span.set("db.operation.name", "execute");
        span
    })
}
